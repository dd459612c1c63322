//! Starting, killing and restarting real node processes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::NodeClient;
use crate::eventually;

/// Where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CHECKRAFT_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// One node of a test cluster.
pub struct NodeSpec {
    /// Node id (for a node started without `--id`, the harness's own key).
    pub id: u64,
    /// Whether `--id` is passed (false: the node takes its id from the
    /// cluster via `raftctl node add`, then from its data dir).
    pub pass_id: bool,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A set of real `checkraft-node` processes under one temp dir.
pub struct Cluster {
    dir: tempfile::TempDir,
    nodes: BTreeMap<u64, NodeSpec>,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts nodes `1..=n` with test-friendly raft timings plus `env`
    /// (`CHECKRAFT_NODE_*` overrides), and waits until each answers.
    pub async fn start(n: u64, extra_env: &[(&str, &str)]) -> Self {
        let defaults = [
            ("CHECKRAFT_NODE_HEARTBEAT_MS", "100"),
            ("CHECKRAFT_NODE_ELECTION_MIN_MS", "500"),
            ("CHECKRAFT_NODE_ELECTION_MAX_MS", "1000"),
        ];
        // Later entries win when a test overrides a default.
        let env = defaults
            .iter()
            .chain(extra_env)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cluster = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            nodes: BTreeMap::new(),
            env,
        };
        for id in 1..=n {
            cluster.add_node(id).await;
        }
        cluster
    }

    /// Starts a new node with id `id` on a fresh port and directory.
    pub async fn add_node(&mut self, id: u64) -> NodeClient {
        self.spawn_new(id, true).await
    }

    /// Starts a new node without `--id` (it waits for `raftctl node add`),
    /// known to the harness as `key`.
    pub async fn add_unassigned_node(&mut self, key: u64) -> NodeClient {
        self.spawn_new(key, false).await
    }

    async fn spawn_new(&mut self, id: u64, pass_id: bool) -> NodeClient {
        let spec = NodeSpec {
            id,
            pass_id,
            addr: format!("127.0.0.1:{}", crate::free_port()),
            data_dir: self.dir.path().join(format!("node-{id}")),
            log: self.dir.path().join(format!("node-{id}.log")),
            child: None,
        };
        self.nodes.insert(id, spec);
        self.restart(id).await
    }

    /// The client of node `id`.
    pub fn client(&self, id: u64) -> NodeClient {
        NodeClient::new(&self.nodes[&id].addr)
    }

    /// The temp dir holding every node's data and logs (for test files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every node's id and address.
    pub fn members(&self) -> BTreeMap<u64, String> {
        self.nodes
            .values()
            .map(|n| (n.id, n.addr.clone()))
            .collect()
    }

    /// Ids of nodes currently running.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// SIGKILLs node `id` (kill -9) and reaps it.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut child) = node.child.take() {
            child.kill().expect("SIGKILL node");
            child.wait().expect("reap node");
        }
    }

    /// (Re)starts node `id` on its port and data dir; waits for `/health`.
    pub async fn restart(&mut self, id: u64) -> NodeClient {
        let node = self.nodes.get_mut(&id).expect("known node");
        assert!(node.child.is_none(), "node {id} is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let binary = bin_dir().join("checkraft-node");
        assert!(
            binary.exists(),
            "{} is missing: build it first (integration/run-tests does)",
            binary.display()
        );
        let mut command = Command::new(binary);
        if node.pass_id {
            command.arg("--id").arg(id.to_string());
        }
        let child = command
            .arg("--listen")
            .arg(&node.addr)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("CHECKRAFT_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn checkraft-node");
        node.child = Some(child);
        let client = NodeClient::new(&node.addr);
        let probe = client.clone();
        eventually(
            Duration::from_secs(20),
            &format!("node {id} to answer /health"),
            || {
                let probe = probe.clone();
                async move { probe.health().await.then_some(()) }
            },
        )
        .await;
        client
    }

    /// The node leading `shard` per the map's hint (read from node 1),
    /// confirmed by that node's own metrics (admin calls with `token`).
    pub async fn confirmed_shard_leader(&self, shard: u64, token: &str) -> u64 {
        let members = self.members();
        let entry = NodeClient::new(&members[&1]);
        eventually(Duration::from_secs(30), "a confirmed shard leader", || {
            let entry = entry.clone();
            let members = members.clone();
            async move {
                let url = entry.url(&format!("/meta/shards/{shard}"));
                let loc: checkraft_proto::ShardLocation =
                    entry.http().get(url).send().await.ok()?.json().await.ok()?;
                let leader = loc.shard.leader?;
                let status = NodeClient::new(&members[&leader])
                    .with_token(token)
                    .metrics(shard)
                    .await
                    .ok()?;
                (status.raft.current_leader == Some(leader)).then_some(leader)
            }
        })
        .await
    }

    /// The last `lines` lines of node `id`'s log.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let Ok(f) = File::open(&self.nodes[&id].log) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        if std::thread::panicking() {
            for id in &ids {
                eprintln!("----- node {id} log tail -----\n{}", self.log_tail(*id, 40));
            }
        }
        for id in ids {
            self.kill(id);
        }
        // For post-mortems: keep a failed test's data dirs and logs.
        if std::thread::panicking() {
            if let Ok(keep) = std::env::var("CHECKRAFT_KEEP_FAILED") {
                let dest = Path::new(&keep).join(format!("cluster-{}", std::process::id()));
                let copied = Command::new("cp")
                    .arg("-a")
                    .arg(self.dir.path())
                    .arg(&dest)
                    .status();
                eprintln!(
                    "kept the failed cluster's files at {} ({copied:?})",
                    dest.display()
                );
            }
        }
    }
}
