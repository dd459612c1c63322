//! [`ClusterClient`] as the [`checkraft_backup::Nodes`] a backup calls:
//! the operator's token, JSON status, bincode snapshots.

use checkraft_backup::Nodes;
use checkraft_proto::{NodeStatus, ShardId, SnapshotDownload, SnapshotInfo};

use crate::client::ClusterClient;

impl Nodes for ClusterClient {
    async fn status(&self, addr: &str) -> Result<NodeStatus, String> {
        self.node_status(addr).await.map_err(|e| format!("{e:#}"))
    }

    async fn snapshot(&self, addr: &str, shard: ShardId) -> Result<SnapshotDownload, String> {
        let path = format!("/admin/groups/{shard}/snapshot");
        let built: SnapshotInfo = self
            .post_json(addr, &path, &())
            .await
            .map_err(|e| format!("{e:#}"))?;
        let download: SnapshotDownload = self
            .get_bincode(addr, &path)
            .await
            .map_err(|e| format!("{e:#}"))?;
        if download.info.snapshot_id != built.snapshot_id {
            let (built, got) = (&built.snapshot_id, &download.info.snapshot_id);
            tracing::debug!(shard_id = shard, %built, %got, "a newer snapshot replaced ours");
        }
        Ok(download)
    }
}
