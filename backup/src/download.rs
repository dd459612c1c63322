//! Taking one shard's snapshot for a backup: `POST
//! /admin/groups/{id}/snapshot` on a replica (the leader hint first, the
//! others on failure), then `GET` the snapshot from that same node.

use anyhow::{anyhow, bail, Context, Result};
use checkraft_proto::{ShardMap, ShardRecord, SnapshotDownload, SnapshotInfo};

use super::check::{self, show};
use super::contents::ShardBackup;
use super::format::decode_bitmap;
use super::route::Routes;
use crate::client::ClusterClient;

/// The `ShardSnapshot` format version this code understands (it reads
/// version 1 too: version 2 only added what splits leave behind).
const SNAPSHOT_VERSION: u32 = checkraft_proto::ShardSnapshot::VERSION;

/// A fresh snapshot of `record`'s shard, checked against the map.
pub async fn shard(
    client: &ClusterClient,
    routes: &Routes,
    map: &ShardMap,
    record: &ShardRecord,
) -> Result<ShardBackup> {
    let id = record.descriptor.shard;
    let mut failures = Vec::new();
    for addr in routes.candidates(map, record)? {
        match snapshot_at(client, &addr, id).await {
            Ok(download) => {
                return to_shard(download, record)
                    .with_context(|| format!("snapshot of shard {id} from {addr}"))
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(shard = id, %addr, %error, "snapshot failed; trying the next one");
                failures.push(format!("{addr}: {e:#}"));
            }
        }
    }
    Err(anyhow!(
        "shard {id}: no replica produced a snapshot ({})",
        failures.join("; ")
    ))
}

/// Triggers a snapshot on `addr` and downloads it from there.
async fn snapshot_at(client: &ClusterClient, addr: &str, id: u64) -> Result<SnapshotDownload> {
    let path = format!("/admin/groups/{id}/snapshot");
    let info: SnapshotInfo = client.post_json(addr, &path, &()).await?;
    let download: SnapshotDownload = client.get_bincode(addr, &path).await?;
    if download.info.snapshot_id != info.snapshot_id {
        let (built, got) = (&info.snapshot_id, &download.info.snapshot_id);
        tracing::debug!(shard = id, %built, %got, "a newer snapshot replaced ours");
    }
    Ok(download)
}

/// Checks a download against the map and decodes its bitmap.
fn to_shard(download: SnapshotDownload, record: &ShardRecord) -> Result<ShardBackup> {
    let snap = download.snapshot;
    let (got, want) = (&snap.descriptor, &record.descriptor);
    if snap.version != SNAPSHOT_VERSION && snap.version != 1 {
        bail!(
            "unknown snapshot version {} (this raftctl reads {SNAPSHOT_VERSION})",
            snap.version
        );
    }
    if (got.shard, got.start, got.end) != (want.shard, want.start, want.end) {
        bail!(
            "the snapshot covers {} but the map says {}: \
             the layout changed during the backup; run it again",
            show(got),
            show(want)
        );
    }
    let bitmap = decode_bitmap(&snap.bitmap).context("bitmap")?;
    check::within(&bitmap, got).context("bitmap")?;
    Ok(ShardBackup {
        descriptor: snap.descriptor,
        seq: snap.seq,
        snapshot_id: download.info.snapshot_id,
        last_log_index: download.info.last_log_id.map(|l| l.index).unwrap_or(0),
        bitmap,
    })
}
