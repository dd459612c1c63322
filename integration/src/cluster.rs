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
    /// Whether each node runs under its own uid ([`Cluster::node_uid`]),
    /// so that [`crate::Partition`] can cut its traffic by owner.
    users: bool,
}

/// The uid node `id` runs as under [`Cluster::start_as_users`].
pub fn node_uid(id: u64) -> u32 {
    61_000 + id as u32
}

impl Cluster {
    /// Starts nodes `1..=n` with test-friendly raft timings plus `env`
    /// (`CHECKRAFT_NODE_*` overrides), and waits until each answers.
    pub async fn start(n: u64, extra_env: &[(&str, &str)]) -> Self {
        Self::start_with(n, Self::env(extra_env), false).await
    }

    /// Test-friendly raft timings and the harness's secrets, then
    /// `extra_env` (later entries win when a test overrides a default).
    fn env(extra_env: &[(&str, &str)]) -> Vec<(String, String)> {
        let defaults = [
            ("CHECKRAFT_NODE_HEARTBEAT_MS", "100"),
            ("CHECKRAFT_NODE_ELECTION_MIN_MS", "500"),
            ("CHECKRAFT_NODE_ELECTION_MAX_MS", "1000"),
            ("CHECKRAFT_NODE_CLUSTER_SECRET", crate::TEST_CLUSTER_SECRET),
            ("CHECKRAFT_NODE_GATEWAY_SECRET", crate::TEST_GATEWAY_SECRET),
        ];
        defaults
            .iter()
            .chain(extra_env)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Like [`Cluster::start`], with each node running under its own uid
    /// ([`node_uid`]), which [`crate::Partition`] needs. Needs root: `None`,
    /// with the reason printed, otherwise.
    pub async fn start_as_users(n: u64, extra_env: &[(&str, &str)]) -> Option<Self> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: running nodes under their own uids needs root (CI runs as root)");
            return None;
        }
        Some(Self::start_with(n, Self::env(extra_env), true).await)
    }

    async fn start_with(n: u64, env: Vec<(String, String)>, users: bool) -> Self {
        let mut cluster = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            nodes: BTreeMap::new(),
            env,
            users,
        };
        if users {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(cluster.dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("open the cluster dir to the node users");
        }
        for id in 1..=n {
            cluster.add_node(id).await;
        }
        cluster
    }

    /// Whether nodes run under their own uids.
    pub fn runs_as_users(&self) -> bool {
        self.users
    }

    /// Node `id`'s listen port.
    pub fn port(&self, id: u64) -> u16 {
        let addr = &self.nodes[&id].addr;
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("HOST:PORT")
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

    /// Node `id`'s data dir.
    pub fn data_dir(&self, id: u64) -> &Path {
        &self.nodes[&id].data_dir
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

    /// Sends `signal` to node `id` (SIGSTOP/SIGCONT pause and resume it).
    pub fn signal(&self, id: u64, signal: nix::sys::signal::Signal) {
        let node = self.nodes.get(&id).expect("known node");
        let child = node.child.as_ref().expect("node is running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signal node");
    }

    /// Waits up to `limit` until nodes `1..=n` (every node of a fresh
    /// cluster) hold shard `shard` at the same `seq` with the same bitmap
    /// bytes, and returns their reads (in node order). Panics, naming the
    /// shard, when they do not agree in time.
    pub async fn replicas_agree(
        &self,
        shard: u64,
        limit: Duration,
    ) -> Vec<checkraft_proto::ShardRead> {
        let ids: Vec<u64> = self.members().into_keys().collect();
        eventually(
            limit,
            &format!("replicas of shard {shard} to agree"),
            || {
                let ids = ids.clone();
                async move {
                    let mut reads = Vec::new();
                    for id in ids {
                        reads.push(self.client(id).read(shard, false).await.ok()?);
                    }
                    reads
                        .windows(2)
                        .all(|w| (w[0].seq, &w[0].bitmap) == (w[1].seq, &w[1].bitmap))
                        .then_some(reads)
                }
            },
        )
        .await
    }

    /// Pauses node `id` (SIGSTOP): it holds its connections and answers
    /// nothing, like a stalled VM or a long GC pause.
    pub fn pause(&self, id: u64) {
        self.signal(id, nix::sys::signal::Signal::SIGSTOP);
    }

    /// Resumes node `id` after [`Cluster::pause`] (SIGCONT).
    pub fn resume(&self, id: u64) {
        self.signal(id, nix::sys::signal::Signal::SIGCONT);
    }

    /// Waits up to `limit` for node `id` to exit (after a signal, or by
    /// itself) and answers its exit status, or `None` if it still runs.
    pub async fn wait_exit(
        &mut self,
        id: u64,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let node = self.nodes.get_mut(&id).expect("known node");
            let child = node.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("poll node process") {
                node.child = None;
                return Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (Re)starts node `id` on its port and data dir; waits for `/health`.
    pub async fn restart(&mut self, id: u64) -> NodeClient {
        self.spawn(id);
        let client = NodeClient::new(&self.nodes[&id].addr);
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

    /// Restarts node `id` expecting it to refuse to start (damaged data
    /// dir, bad config): waits up to `limit` for the process to exit and
    /// answers its exit status and what it printed (stdout and stderr) in
    /// this run. Panics, after killing it, if it still runs by then.
    pub async fn restart_expecting_exit(
        &mut self,
        id: u64,
        limit: Duration,
    ) -> (std::process::ExitStatus, String) {
        let printed_before = self.log_bytes(id).len();
        self.spawn(id);
        let deadline = tokio::time::Instant::now() + limit;
        let status = loop {
            let child = self.nodes.get_mut(&id).and_then(|n| n.child.as_mut());
            let child = child.expect("just spawned");
            if let Some(status) = child.try_wait().expect("poll node process") {
                self.nodes.get_mut(&id).expect("known node").child = None;
                break status;
            }
            if tokio::time::Instant::now() > deadline {
                self.kill(id);
                panic!(
                    "node {id} still runs {limit:?} after its start; it printed:\n{}",
                    String::from_utf8_lossy(&self.log_bytes(id)[printed_before..])
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let printed = String::from_utf8_lossy(&self.log_bytes(id)[printed_before..]).into_owned();
        (status, printed)
    }

    /// (Re)starts node `id` without waiting for `/health` (for a node that
    /// is expected to report itself unhealthy).
    pub fn restart_process(&mut self, id: u64) {
        self.spawn(id);
    }

    /// Spawns node `id`'s process, its output appended to its log file.
    fn spawn(&mut self, id: u64) {
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
        let mut command = if self.users {
            // Its own uid, so that a partition can match its packets.
            let uid = node_uid(id).to_string();
            std::fs::create_dir_all(&node.data_dir).expect("data dir");
            let owned = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{uid}"))
                .arg(&node.data_dir)
                .status()
                .expect("run chown");
            assert!(owned.success(), "chown {}", node.data_dir.display());
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(binary);
            c
        } else {
            Command::new(binary)
        };
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
    }

    /// Creates the shard group `descriptor` on every member, node 1 last
    /// and initializing it, so that the first election finds every peer
    /// ready. Panics, naming the node, when a creation fails or finds the
    /// group already there.
    pub async fn create_shard(&self, descriptor: &checkraft_proto::ShardDescriptor) {
        let members = self.members();
        for &id in members.keys().rev() {
            let created = self
                .client(id)
                .create_group(descriptor.clone(), members.clone(), id == 1)
                .await
                .unwrap_or_else(|e| panic!("create shard {} on node {id}: {e}", descriptor.shard));
            assert!(
                created.created,
                "shard {} already existed on node {id}",
                descriptor.shard
            );
        }
    }

    /// The node leading `shard`, as a running node reports of itself
    /// (`GET /status`; no map needed). Waits up to 30 s for one; a node
    /// that does not answer is skipped.
    pub async fn shard_leader(&self, shard: u64) -> u64 {
        let running = self.running();
        let clients: Vec<NodeClient> = running.iter().map(|&id| self.client(id)).collect();
        eventually(
            Duration::from_secs(30),
            &format!("a running node to lead shard {shard}"),
            || {
                let clients = clients.clone();
                async move {
                    for c in &clients {
                        let Ok(s) = c.status().await else { continue };
                        let lead = s.groups.get(&shard).and_then(|g| g.leader);
                        if lead == Some(s.node_id) {
                            return lead;
                        }
                    }
                    None
                }
            },
        )
        .await
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
                let loc: checkraft_proto::ShardLocation = entry
                    .send(entry.http().get(url))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
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

    /// Everything node `id` printed (stdout and stderr, every run, in
    /// order); ANSI colour codes included.
    pub fn log(&self, id: u64) -> String {
        String::from_utf8_lossy(&self.log_bytes(id)).into_owned()
    }

    fn log_bytes(&self, id: u64) -> Vec<u8> {
        std::fs::read(&self.nodes[&id].log).unwrap_or_default()
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
