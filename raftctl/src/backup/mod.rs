//! `backup`, `backup list`, `restore` and `verify`: the command-line glue
//! around `checkraft-backup`, which holds the file format (specified in
//! its crate docs), its checks, atomic files and taking a backup.
//!
//! - [`backup`] takes a backup ([`checkraft_backup::take`]: every shard's
//!   snapshot from one replica, the leader first) and saves it
//!   ([`checkraft_backup::file::save`]: `FILE.tmp`, fsynced, read back
//!   through every check, renamed over `FILE`), with a progress bar.
//! - [`list`] shows the scheduled backups the metadata leader wrote into
//!   the nodes' `backup_dir` ([`scheduled`]).
//! - [`verify`] checks a file completely, offline.
//! - [`restore`] checks the backup (a file, or a scheduled backup by name,
//!   downloaded from a node that holds it), maps its ranges onto the
//!   target cluster's current layout (which may have other shard counts
//!   and boundaries), records a `Restore` operation in the map, replaces
//!   every target shard's state with one raft `Restore` command, and
//!   clears the record.
//!
//! ## Caveats
//! - A backup is consistent per shard, not across shards (see
//!   `checkraft-backup`).
//! - A restore that fails part-way leaves the shards before the failing
//!   one restored and the rest unchanged; it clears its operation record
//!   so that it can simply be run again (a restore is absolute).
//! - Restores travel in one HTTP body per shard: a shard's bitmap must fit
//!   the node's body limit (16 MiB by default).
//!
//! ## Files
//! - [`mapping`]: backup ranges → target ranges; [`upload`]: the restore
//!   calls.
//! - [`nodes`]: the client as the backup crate's `Nodes`; [`scheduled`]:
//!   `backup list` and fetching a backup by name.
//! - [`progress`], [`summary`]: what the operator sees.

mod mapping;
mod nodes;
mod progress;
mod scheduled;
mod summary;
mod upload;

#[cfg(test)]
mod fake_cluster;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use checkraft_backup::download::sorted_descriptors;
use checkraft_backup::{check, dir, file, Backup, Step};
use checkraft_proto::{Grid, ShardDescriptor, ShardMap};
use croaring::Bitmap;

use crate::cli::BackupCommand;
use crate::client::ClusterClient;
use checkraft_backup::Routes;
use progress::Progress;
use summary::{BackupSummary, RestoreSummary, VerifySummary};

/// The writer named in the files this tool writes.
const TOOL: &str = concat!("raftctl ", env!("CARGO_PKG_VERSION"));

/// `raftctl backup --out FILE` or `raftctl backup list`.
pub async fn command(
    client: &ClusterClient,
    out: Option<&Path>,
    action: Option<BackupCommand>,
    json: bool,
) -> Result<()> {
    match (out, action) {
        (_, Some(BackupCommand::List)) => list(client, json).await,
        (Some(out), None) => backup(client, out, json).await,
        (None, None) => bail!("say where to write the backup (--out FILE), or `backup list`"),
    }
}

/// `raftctl backup --out FILE`: snapshots every shard into `out`.
pub async fn backup(client: &ClusterClient, out: &Path, json: bool) -> Result<()> {
    let created_ms = now_ms();
    let map = client.map().await.context("reading the shard map")?;
    let progress = Progress::new("backup", map.shards.len(), json);
    let backup = checkraft_backup::take(client, map, created_ms, |step| match step {
        Step::Start(id) => progress.start_shard(id),
        Step::Done(_) => progress.done_shard(),
    })
    .await?;
    drop(progress);
    let bytes = file::save(out, &backup, TOOL)?;
    summary::print(&BackupSummary::new(out, &backup, bytes), json)
}

/// `raftctl backup list`: the scheduled backups on the nodes' disks.
pub async fn list(client: &ClusterClient, json: bool) -> Result<()> {
    summary::print(&scheduled::list(client).await?, json)
}

/// `raftctl verify --from FILE`: checks `from` completely, offline.
pub fn verify(from: &Path, json: bool) -> Result<()> {
    let (backup, bytes) = file::load(from)?;
    summary::print(&VerifySummary::new(from, &backup, bytes), json)
}

/// The backup `from` names: a file when one exists at that path (or the
/// name is not a scheduled backup's), else the scheduled backup of that
/// name, downloaded from a node that holds it.
async fn load(client: &ClusterClient, from: &Path) -> Result<Backup> {
    let name = from.to_str().filter(|n| dir::parse_name(n).is_ok());
    match name {
        Some(name) if !from.exists() => scheduled::fetch(client, name).await,
        _ => Ok(file::load(from)?.0),
    }
}

/// `raftctl restore --from FILE|NAME`: sets every shard of the cluster to
/// the state the backup holds, mapped onto the cluster's current layout.
pub async fn restore(client: &ClusterClient, from: &Path, json: bool) -> Result<()> {
    let backup = load(client, from).await?;
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

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
