//! `raftctl snapshot SHARD|all`: build a raft snapshot of one shard (or of
//! every shard) now, and print its id, the last log index it covers and
//! its size.
//!
//! The request goes to the shard's leader first; any replica can build
//! one, so on failure it tries the others in turn.

use anyhow::{bail, Context, Result};
use checkraft_proto::{NodeId, ShardId, SnapshotInfo, META_GROUP};
use futures::StreamExt;
use serde::Serialize;

use super::cluster::{print_json, print_table, ClusterView};
use crate::client::ClusterClient;

/// Snapshots built concurrently.
const PARALLEL: usize = 4;

/// One snapshot taken (a row of the output).
#[derive(Debug, Serialize)]
struct Taken {
    shard: ShardId,
    /// The replica that built it.
    node: NodeId,
    snapshot_id: String,
    last_log_index: Option<u64>,
    /// The shard's change number it reflects.
    seq: u64,
    bytes: u64,
}

/// `raftctl snapshot SHARD|all`.
pub async fn run(client: &ClusterClient, target: &str, json: bool) -> Result<()> {
    let view = ClusterView::load(client).await?;
    let shards = targets(&view, target)?;
    let results: Vec<Result<Taken>> = futures::stream::iter(&shards)
        .map(|s| snapshot_shard(client, &view, *s))
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut taken = Vec::new();
    let mut failed = Vec::new();
    for result in results {
        match result {
            Ok(t) => taken.push(t),
            Err(e) => failed.push(e),
        }
    }
    print(&taken, json)?;
    for e in &failed {
        eprintln!("error: {e:#}");
    }
    if !failed.is_empty() {
        bail!("{} of {} snapshots failed", failed.len(), shards.len());
    }
    Ok(())
}

/// The shards `target` names: one id (0 is the metadata group) or `all`.
fn targets(view: &ClusterView, target: &str) -> Result<Vec<ShardId>> {
    if target == "all" {
        return Ok(view.map.shards.keys().copied().collect());
    }
    let id: ShardId = target
        .parse()
        .with_context(|| format!("snapshot target must be a shard id or `all`, not {target:?}"))?;
    if id != META_GROUP {
        view.shard(id)?;
    }
    Ok(vec![id])
}

/// Snapshots `shard` on its leader, else on the first replica that can.
async fn snapshot_shard(
    client: &ClusterClient,
    view: &ClusterView,
    shard: ShardId,
) -> Result<Taken> {
    let path = format!("/admin/groups/{shard}/snapshot");
    let mut errors = Vec::new();
    for (node, addr) in view.group_nodes(shard) {
        match client
            .post_json::<_, SnapshotInfo>(&addr, &path, &serde_json::json!({}))
            .await
        {
            Ok(info) => {
                return Ok(Taken {
                    shard,
                    node,
                    snapshot_id: info.snapshot_id,
                    last_log_index: info.last_log_id.map(|l| l.index),
                    seq: info.seq,
                    bytes: info.bytes,
                })
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        bail!("shard {shard}: no reachable replica");
    }
    bail!(
        "shard {shard}: no replica built a snapshot: {}",
        errors.join("; ")
    )
}

fn print(taken: &[Taken], json: bool) -> Result<()> {
    if json {
        return print_json(&taken);
    }
    let rows: Vec<Vec<String>> = taken
        .iter()
        .map(|t| {
            let index = t
                .last_log_index
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into());
            vec![
                t.shard.to_string(),
                t.snapshot_id.clone(),
                index,
                t.bytes.to_string(),
                t.node.to_string(),
            ]
        })
        .collect();
    print_table(
        &["SHARD", "SNAPSHOT_ID", "LAST_LOG_INDEX", "BYTES", "NODE"],
        &rows,
    );
    Ok(())
}
