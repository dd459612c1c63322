//! Taking a backup of a live cluster: [`take`] snapshots every shard of
//! the map; one shard's snapshot comes from `POST
//! /admin/groups/{id}/snapshot` on a replica (the best candidate of
//! [`Routes`] first, the others on failure), then `GET` from that same
//! node, checked against the map.

use checkraft_proto::{Grid, ShardDescriptor, ShardId, ShardMap, ShardRecord, SnapshotDownload};

use crate::check::{self, show};
use crate::contents::{Backup, ShardBackup};
use crate::error::{Context, Error, Result};
use crate::format::decode_bitmap;
use crate::nodes::Nodes;
use crate::route::Routes;

/// The `ShardSnapshot` format version this code understands (it reads
/// version 1 too: version 2 only added what splits leave behind).
const SNAPSHOT_VERSION: u32 = checkraft_proto::ShardSnapshot::VERSION;

/// Where [`take`] is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// About to snapshot this shard.
    Start(ShardId),
    /// This shard's snapshot is in.
    Done(ShardId),
}

/// Snapshots every shard of `map` (the cluster's current map, read by the
/// caller when the backup started at `created_ms`) into a [`Backup`], in
/// shard id order; `progress` hears of each shard. Refuses a map without a
/// grid or whose layout does not tile it; an operation in progress is only
/// logged (the backup may catch it half-done).
pub async fn take(
    client: &impl Nodes,
    map: ShardMap,
    created_ms: u64,
    mut progress: impl FnMut(Step),
) -> Result<Backup> {
    let grid = source_grid(&map)?;
    if let Some(op) = &map.operation {
        let (id, kind, step) = (op.id, &op.kind, &op.step);
        let note = "an operation is in progress; the backup may catch it half-done";
        tracing::warn!(id, ?kind, %step, "{note}");
    }
    let routes = Routes::probe(client, &map).await;
    let mut shards = Vec::with_capacity(map.shards.len());
    for record in map.shards.values() {
        progress(Step::Start(record.descriptor.shard));
        shards.push(shard(client, &routes, &map, record).await?);
        progress(Step::Done(record.descriptor.shard));
    }
    shards.sort_by_key(|s| s.descriptor.start);
    Ok(Backup {
        created_ms,
        grid,
        map: ShardMap {
            operation: None,
            ..map
        },
        shards,
    })
}

/// The grid of a cluster about to be backed up, whose layout must be one
/// a backup file can hold.
fn source_grid(map: &ShardMap) -> Result<Grid> {
    let grid = map.grid.ok_or_else(|| {
        Error::Cluster("the cluster is not initialized: its map has no grid".into())
    })?;
    let descriptors = sorted_descriptors(map)?;
    check::layout(&descriptors, grid.boxes)
        .map_err(|e| Error::Cluster(e.to_string()))
        .context("the cluster's shard map is inconsistent; nothing was written")?;
    Ok(grid)
}

/// The map's shard descriptors, each valid, sorted by range start.
pub fn sorted_descriptors(map: &ShardMap) -> Result<Vec<ShardDescriptor>> {
    let mut out = Vec::with_capacity(map.shards.len());
    for (id, record) in &map.shards {
        let d = &record.descriptor;
        if d.shard != *id {
            return Err(Error::Cluster(format!(
                "the map files shard {} under id {id}",
                d.shard
            )));
        }
        d.validate()
            .map_err(|e| Error::Cluster(format!("shard {id}: {e}")))?;
        out.push(d.clone());
    }
    out.sort_by_key(|d| d.start);
    Ok(out)
}

/// A fresh snapshot of `record`'s shard, checked against the map.
async fn shard(
    client: &impl Nodes,
    routes: &Routes,
    map: &ShardMap,
    record: &ShardRecord,
) -> Result<ShardBackup> {
    let id = record.descriptor.shard;
    let mut failures = Vec::new();
    for addr in routes.candidates(map, record)? {
        match client.snapshot(&addr, id).await {
            Ok(download) => {
                return to_shard(download, record)
                    .with_context(|| format!("snapshot of shard {id} from {addr}"))
            }
            Err(error) => {
                tracing::warn!(shard_id = id, %addr, %error, "snapshot failed; trying the next one");
                failures.push(format!("{addr}: {error}"));
            }
        }
    }
    Err(Error::Cluster(format!(
        "shard {id}: no replica produced a snapshot ({})",
        failures.join("; ")
    )))
}

/// Checks a download against the map and decodes its bitmap.
fn to_shard(download: SnapshotDownload, record: &ShardRecord) -> Result<ShardBackup> {
    let snap = download.snapshot;
    let (got, want) = (&snap.descriptor, &record.descriptor);
    if snap.version != SNAPSHOT_VERSION && snap.version != 1 {
        return Err(Error::Cluster(format!(
            "unknown snapshot version {} (this code reads {SNAPSHOT_VERSION})",
            snap.version
        )));
    }
    if (got.shard, got.start, got.end) != (want.shard, want.start, want.end) {
        return Err(Error::Cluster(format!(
            "the snapshot covers {} but the map says {}: \
             the layout changed during the backup; run it again",
            show(got),
            show(want)
        )));
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
