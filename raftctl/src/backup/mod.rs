//! Backups: the file format, and the `backup`, `restore` and `verify`
//! commands.
//!
//! - [`backup`] snapshots every shard (`POST` then `GET
//!   /admin/groups/{id}/snapshot` on one replica: the leader its reachable
//!   replicas report, else the map's hint, else another replica) and
//!   writes them, with the shard map, to one file: `FILE.tmp`, fsynced,
//!   read back through every check, then renamed over `FILE`.
//! - [`verify`] checks a file completely, offline.
//! - [`restore`] checks the file, maps its ranges onto the target cluster's
//!   current layout (which may have other shard counts and boundaries),
//!   records a `Restore` operation in the map, replaces every target
//!   shard's state with one raft `Restore` command, and clears the record.
//!
//! ## File format, version 1
//!
//! All fixed-width integers are little-endian; "crc32" is CRC-32/ISO-HDLC
//! (the zlib/PNG CRC, as computed by `crc32fast`).
//!
//! | size | field |
//! |---|---|
//! | 8 | magic `b"CKRFTBK\0"` |
//! | 4 | format version, u32 = 1 |
//! | … | the header section |
//! | … | one shard section per shard of the header's map, in ascending range order |
//! | 4 | crc32 of every byte before it, from the magic on |
//!
//! Nothing may follow the final crc32.
//!
//! A **section** is `len: u32`, then `len` bytes of body, then `crc: u32`,
//! the crc32 of the four `len` bytes followed by the body. A header body
//! is at most 16 MiB and a shard body at most
//! [`checkraft_proto::codec::DECODE_LIMIT`] (64 MiB). Bodies are
//! [`checkraft_proto::codec`] encodings (bincode 2, standard configuration:
//! varint integers, length-prefixed strings, vectors and maps, fields in
//! declaration order) of:
//!
//! - header: `{ created_ms: u64, tool: String, map: ShardMap }`, where
//!   `created_ms` is when the backup started (ms since the Unix epoch),
//!   `tool` names the writer (`raftctl 0.1.0`) and `map` is the source
//!   cluster's [`checkraft_proto::ShardMap`] (grid, nodes, shards), with
//!   `operation` always `None`. The number of shard sections is the number
//!   of shards in this map.
//! - shard: `{ descriptor: ShardDescriptor, seq: u64, snapshot_id: String,
//!   last_log_index: u64, bitmap: Vec<u8> }`: the shard's descriptor as its
//!   snapshot recorded it, the change number and raft log index the
//!   snapshot reflects (index 0 when it covers no entry), openraft's
//!   snapshot id, and the checked boxes as croaring `Portable` bytes of
//!   **absolute** indices, run-optimized.
//!
//! ## Validity
//! A reader ([`format::read`]) accepts a file only when all of this holds,
//! and otherwise names what failed: the magic; version 1; no truncation;
//! every section's length within its limit and its crc32 matching; the
//! final crc32 matching; no trailing bytes; bodies that decode; a map with
//! a grid; one section per map shard, each with a valid descriptor whose id
//! and range match the map's record for it, no id twice; sections sorted by
//! range start, not overlapping, covering exactly `[0, grid.boxes)`; every
//! bitmap decoding (`try_deserialize`, which validates) with all its bits
//! in its shard's range. Lengths are checked before anything is allocated,
//! and bodies are read only as far as the file actually goes.
//!
//! ## Caveats
//! - A backup is consistent per shard (each shard at its own snapshot's
//!   `seq`), not across shards: writes that land while it runs are in
//!   some shards' snapshots and not in others.
//! - A restore that fails part-way leaves the shards before the failing
//!   one restored and the rest unchanged; it clears its operation record
//!   so that it can simply be run again (a restore is absolute).
//! - When a shard's leader cannot be reached, its snapshot comes from a
//!   follower, which may not have applied the very last acknowledged
//!   writes yet.
//! - Snapshots and restores travel in one HTTP body each: a shard's bitmap
//!   must fit the node's body limit (16 MiB by default) to be restored.
//!
//! ## Files
//! - [`contents`]: the in-memory [`contents::Backup`].
//! - [`format`](mod@format): bytes ↔ sections, checksums; [`check`]: what makes a
//!   decoded backup valid; [`file`](mod@file): atomic writes and reads.
//! - [`mapping`]: backup ranges → target ranges.
//! - [`route`]: which node to ask first; [`download`], [`upload`]: the
//!   snapshot and restore calls.
//! - [`progress`], [`summary`]: what the operator sees.

mod check;
mod contents;
mod download;
mod file;
mod format;
mod mapping;
mod progress;
mod route;
mod summary;
mod upload;

#[cfg(test)]
mod fake_cluster;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use checkraft_proto::{Grid, ShardDescriptor, ShardMap};
use croaring::Bitmap;

use crate::client::ClusterClient;
use contents::{Backup, ShardBackup};
use progress::Progress;
use route::Routes;
use summary::{BackupSummary, RestoreSummary, VerifySummary};

/// `raftctl backup --out FILE`: snapshots every shard into `out`.
pub async fn backup(client: &ClusterClient, out: &Path, json: bool) -> Result<()> {
    let created_ms = now_ms();
    let map = client.map().await.context("reading the shard map")?;
    let grid = source_grid(&map)?;
    if let Some(op) = &map.operation {
        let (id, kind, step) = (op.id, &op.kind, &op.step);
        let note = "an operation is in progress; the backup may catch it half-done";
        tracing::warn!(id, ?kind, %step, "{note}");
    }
    let shards = download_all(client, &map, json).await?;
    let map = ShardMap {
        operation: None,
        ..map
    };
    let backup = Backup {
        created_ms,
        grid,
        map,
        shards,
    };
    let bytes = file::save(out, &backup)?;
    summary::print(&BackupSummary::new(out, &backup, bytes), json)
}

/// `raftctl verify --from FILE`: checks `from` completely, offline.
pub fn verify(from: &Path, json: bool) -> Result<()> {
    let (backup, bytes) = file::load(from)?;
    summary::print(&VerifySummary::new(from, &backup, bytes), json)
}

/// `raftctl restore --from FILE`: sets every shard of the cluster to the
/// state `from` holds, mapped onto the cluster's current layout.
pub async fn restore(client: &ClusterClient, from: &Path, json: bool) -> Result<()> {
    let (backup, _) = file::load(from)?;
    let map = client.map().await.context("reading the shard map")?;
    let (grid, targets) = target_layout(&map)?;
    mapping::check_fits(&backup, &grid)?;
    let bitmaps = mapping::remap(&backup.shards, &targets);
    mapping::check_preserved(&backup, &bitmaps)?;
    let op = upload::begin(client, backup.created_ms).await?;
    let done = restore_all(client, &map, &targets, &bitmaps, op, json).await;
    finish(client, op, done).await?;
    let boxes_checked = backup.boxes_checked();
    summary::print(
        &RestoreSummary {
            shards_restored: targets.len(),
            boxes_checked,
        },
        json,
    )
}

/// Snapshots every shard of `map`, in id order, into range order.
async fn download_all(
    client: &ClusterClient,
    map: &ShardMap,
    json: bool,
) -> Result<Vec<ShardBackup>> {
    let routes = Routes::probe(client, map).await;
    let progress = Progress::new("backup", map.shards.len(), json);
    let mut shards = Vec::with_capacity(map.shards.len());
    for record in map.shards.values() {
        progress.start_shard(record.descriptor.shard);
        shards.push(download::shard(client, &routes, map, record).await?);
        progress.done_shard();
    }
    shards.sort_by_key(|s| s.descriptor.start);
    Ok(shards)
}

/// Sends every target shard its new state, in id order.
async fn restore_all(
    client: &ClusterClient,
    map: &ShardMap,
    targets: &[ShardDescriptor],
    bitmaps: &[Bitmap],
    op: u64,
    json: bool,
) -> Result<()> {
    let routes = Routes::probe(client, map).await;
    let progress = Progress::new("restore", targets.len(), json);
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&i| targets[i].shard);
    for (done, &i) in order.iter().enumerate() {
        progress.start_shard(targets[i].shard);
        upload::shard(client, &routes, map, &targets[i], &bitmaps[i]).await?;
        progress.done_shard();
        let note = format!("restored {} of {} shards", done + 1, targets.len());
        upload::step(client, op, note).await;
    }
    Ok(())
}

/// Clears the operation record whether or not the restore succeeded, so
/// that a failed restore can be rerun; explains a failure.
async fn finish(client: &ClusterClient, op: u64, done: Result<()>) -> Result<()> {
    let ended = upload::end(client, op).await;
    match (done, ended) {
        (Ok(()), ended) => ended,
        (Err(e), Ok(())) => Err(e.context(
            "restore stopped part-way: the shards restored before this one hold \
             the backup's state, the others are unchanged; run restore again",
        )),
        (Err(e), Err(end)) => Err(e.context(format!(
            "restore stopped part-way, and clearing its operation record {op} failed \
             too ({end:#}); the record blocks other operations until cleared"
        ))),
    }
}

/// The grid of a cluster about to be backed up, whose layout must be one
/// a backup file can hold.
fn source_grid(map: &ShardMap) -> Result<Grid> {
    let grid = map
        .grid
        .context("the cluster is not initialized: its map has no grid")?;
    let descriptors = sorted_descriptors(map)?;
    check::layout(&descriptors, grid.boxes)
        .context("the cluster's shard map is inconsistent; nothing was written")?;
    Ok(grid)
}

/// The target cluster's shards in range order, once checked: initialized,
/// no operation in progress, and a layout covering its grid.
fn target_layout(map: &ShardMap) -> Result<(Grid, Vec<ShardDescriptor>)> {
    let Some(grid) = map.grid else {
        bail!(
            "the target cluster is not initialized (run `raftctl init` first); nothing was changed"
        );
    };
    if let Some(op) = &map.operation {
        bail!(
            "operation {} ({:?}, step: {:?}) is in progress in the target cluster; \
             refusing to restore, nothing was changed",
            op.id,
            op.kind,
            op.step
        );
    }
    let descriptors = sorted_descriptors(map)?;
    check::layout(&descriptors, grid.boxes)
        .context("the target cluster's shard map is inconsistent; nothing was changed")?;
    Ok((grid, descriptors))
}

/// The map's shard descriptors, each valid, sorted by range start.
fn sorted_descriptors(map: &ShardMap) -> Result<Vec<ShardDescriptor>> {
    let mut out = Vec::with_capacity(map.shards.len());
    for (id, record) in &map.shards {
        let d = &record.descriptor;
        if d.shard != *id {
            bail!("the map files shard {} under id {id}", d.shard);
        }
        d.validate()
            .map_err(|e| anyhow::anyhow!("shard {id}: {e}"))?;
        out.push(d.clone());
    }
    out.sort_by_key(|d| d.start);
    Ok(out)
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
