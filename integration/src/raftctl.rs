//! Running the real `raftctl` binary.

use std::time::Duration;

use crate::cluster::{bin_dir, Cluster};
use crate::partition::Partition;

/// What a `raftctl` run printed, and whether it succeeded.
#[derive(Debug)]
pub struct RaftctlOutput {
    /// Exit status was zero.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl RaftctlOutput {
    /// Parses stdout as JSON, panicking with both streams on failure.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        assert!(
            self.ok,
            "raftctl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "raftctl stdout is not JSON ({e}):\n{}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `raftctl ARGS` (bounded to 5 minutes) and captures its output.
pub async fn raftctl(args: &[&str]) -> RaftctlOutput {
    let binary = bin_dir().join("raftctl");
    assert!(
        binary.exists(),
        "{} is missing: build it first",
        binary.display()
    );
    let run = tokio::process::Command::new(binary)
        .args(args)
        .env_remove("CHECKRAFT_TOKEN")
        .env_remove("CHECKRAFT_CLUSTER")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("raftctl {args:?} ran for more than 5 minutes"))
        .expect("spawn raftctl");
    RaftctlOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `raftctl init` over every node of `cluster` (entry: node 1), with
/// three replicas per shard. Returns the (failed or not) output.
pub async fn raftctl_init(
    cluster: &Cluster,
    token: &str,
    boxes: u64,
    shards: u64,
) -> RaftctlOutput {
    let members = cluster.members();
    let nodes: Vec<String> = members
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    let (boxes, shards) = (boxes.to_string(), shards.to_string());
    raftctl(&[
        "init",
        "--cluster",
        &members[&1],
        "--token",
        token,
        "--nodes",
        &nodes.join(","),
        "--boxes",
        &boxes,
        "--shards",
        &shards,
        "--replicas",
        "3",
    ])
    .await
}

/// Three nodes with admin token `token` (leader hints reported every
/// 200 ms), initialized by `raftctl init` with `boxes` boxes in `shards`
/// shards: the usual start of a test that needs a serving cluster.
pub async fn initialized_cluster(token: &str, boxes: u64, shards: u64) -> Cluster {
    let cluster = Cluster::start(3, &node_env(token)).await;
    init(&cluster, token, boxes, shards).await;
    cluster
}

/// [`initialized_cluster`] with each node under its own uid, and an empty
/// [`Partition`] to cut them apart: the start of a network-fault test.
/// `None` (a reason printed) where iptables or per-node uids need root.
pub async fn initialized_cluster_as_users(
    token: &str,
    boxes: u64,
    shards: u64,
) -> Option<(Partition, Cluster)> {
    let partition = Partition::new()?;
    let cluster = Cluster::start_as_users(3, &node_env(token)).await?;
    init(&cluster, token, boxes, shards).await;
    Some((partition, cluster))
}

fn node_env(token: &str) -> [(&'static str, &str); 2] {
    [
        ("CHECKRAFT_NODE_ADMIN_TOKEN", token),
        ("CHECKRAFT_NODE_REPORT_MS", "200"),
    ]
}

async fn init(cluster: &Cluster, token: &str, boxes: u64, shards: u64) {
    let out = raftctl_init(cluster, token, boxes, shards).await;
    assert!(out.ok, "init failed:\n{}\n{}", out.stdout, out.stderr);
}
