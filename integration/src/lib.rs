//! # checkraft-integration: real processes, real disks, loopback only
//!
//! The harness behind every multi-process test. [`Cluster`] starts real
//! `checkraft-node` binaries, each with its own sled directory in a temp
//! dir and its own free port on 127.0.0.1, and can `kill` (SIGKILL, the
//! kill -9 of the chaos tests) and `restart` them. Dropping the cluster
//! kills every process it started; if the test is panicking, it first
//! prints the tail of each node's log.
//!
//! [`NodeClient`] speaks the node's HTTP API with the shared wire types
//! from `checkraft-proto`, signing every call with the cluster secret
//! ([`TEST_CLUSTER_SECRET`], which every harness node gets; gateways get
//! [`TEST_GATEWAY_SECRET`]), so tests see what a peer sees; [`Router`] writes and reads boxes through the
//! shard map, following leaders; [`raftctl`] runs the real `raftctl`
//! binary.
//!
//! [`GatewayProcess`] and [`WsClient`] do the same for gateways and their
//! websocket protocol; [`initialized_cluster`] is the usual start of a test
//! that needs a serving cluster. Ports come from [`free_port`], below the
//! kernel's ephemeral range, so no running node's outgoing connection can
//! take a port between the check and the new process's bind.
//!
//! Faults beyond kill -9: [`Cluster::start_as_users`] runs each node under
//! its own uid so that [`Partition`] can cut it off from its peers
//! (`isolate(n)`), or two nodes from each other (`partition(a, b)`), with
//! iptables (gateways and the test still reach it), and `heal()`;
//! [`Cluster::pause`] and [`Cluster::resume`] stop and continue a node
//! (SIGSTOP/SIGCONT); [`SmallDisk`] puts a data dir on a small tmpfs;
//! [`damage::flip`] flips bytes of a stopped node's files. Each removes what it set up when dropped, and
//! skips with a printed reason where it needs root. [`history`] records
//! what a workload wrote and read and checks it (no lost acknowledged
//! write, no stale read where the API promises none, no replica
//! divergence); `tests/chaos_random.rs` drives it with random faults.
//! [`workload`] writes boxes through an HTTP front (a gateway or Caddy)
//! into a history and runs the end-of-run replica check
//! (`tests/up_supervisor.rs`: `raftctl up` under kill -9 and `node
//! stop|start`; `tests/multi_host.rs`).
//!
//! Beyond loopback: [`Hosts`] makes network namespaces that act as
//! separate machines on one bridge (own addresses, a link to cut for a
//! partition), and [`DelayRelay`] adds latency to a TCP link (this kernel
//! has no `netem`); `tests/multi_host.rs` runs nodes, gateways and Caddy
//! on such hosts, each node advertising a relay's address.
//!
//! The binaries are looked up in `$CHECKRAFT_BIN_DIR`, else in the
//! workspace's `target/debug`; `integration/run-tests` builds them first.
//! The browser tests live beside this crate, in `integration/e2e/`
//! (playwright-core driving Debian's Chromium through Caddy, with their own
//! process harness in `e2e/lib/cluster.mjs`).

mod client;
mod cluster;
pub mod damage;
mod gateway;
pub mod history;
mod netns;
mod partition;
mod prometheus;
mod pulse;
mod raftctl;
mod relay;
mod router;
mod small_disk;
pub mod workload;
mod ws_client;

pub use client::{ChangeStream, NodeClient};

/// The cluster secret every harness node gets (`CHECKRAFT_NODE_CLUSTER_SECRET`),
/// and with which [`NodeClient`] signs its calls, as a node would.
pub const TEST_CLUSTER_SECRET: &str = "integration-test-cluster-secret";
/// The gateway secret every harness node and gateway gets.
pub const TEST_GATEWAY_SECRET: &str = "integration-test-gateway-secret";
pub use cluster::{bin_dir, node_uid, Cluster, NodeSpec};
pub use gateway::{ChunkReply, GatewayClient, GatewayProcess};
pub use history::{History, Report};
pub use netns::{Host, Hosts};
pub use partition::Partition;
pub use prometheus::metric_sum;
pub use pulse::{longest_pause, Pulse};
pub use raftctl::{
    initialized_cluster, initialized_cluster_as_users, raftctl, raftctl_init, RaftctlOutput,
};
pub use relay::DelayRelay;
pub use router::Router;
pub use small_disk::SmallDisk;
pub use ws_client::{ack_many_outcomes, ChunkMirror, MirrorAction, WsClient, WsEvent};

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// A loopback port for a process the harness is about to start: free now,
/// never handed out before in this test process, and below Linux's
/// ephemeral range (32768 and up). A port from `bind(0)` comes from that
/// range, so a running node's outgoing connection could take it between
/// this check and the new process's bind; these cannot.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    // Start from a spot that differs per test process, then walk.
    let seed = std::process::id() as usize * 7919;
    for step in 0..12_000usize {
        let port = 20_000 + ((seed + step * 31) % 12_000) as u16;
        if handed.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit`
/// with `what` in the message.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
