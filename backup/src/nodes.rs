//! [`Nodes`]: how this crate reaches the cluster's nodes. The crate does
//! no HTTP itself: `raftctl` implements it with its operator token, the
//! node with its signed peer client, and tests with a fake.

use std::future::Future;

use checkraft_proto::{NodeStatus, ShardId, SnapshotDownload};

/// The two calls a backup makes to a node at `HOST:PORT`. An `Err` is a
/// message naming what failed (unreachable, an HTTP status and the node's
/// message); the caller tries another replica.
pub trait Nodes: Sync {
    /// `GET /status`: the node's groups and whom it believes leads them.
    fn status(&self, addr: &str) -> impl Future<Output = Result<NodeStatus, String>> + Send;

    /// `POST /admin/groups/{shard}/snapshot` (build a fresh snapshot) then
    /// `GET` the same path (download the current one), on that node.
    fn snapshot(
        &self,
        addr: &str,
        shard: ShardId,
    ) -> impl Future<Output = Result<SnapshotDownload, String>> + Send;
}
