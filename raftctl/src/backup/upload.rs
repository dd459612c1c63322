//! The cluster side of a restore: the operation record in the map, and one
//! raft `Restore` command per target shard.

use anyhow::{bail, Context, Result};
use checkraft_proto::{
    codec, MetaCommand, OperationKind, Rejection, Restore, ShardDescriptor, ShardMap, WriteOutcome,
};
use croaring::{Bitmap, Portable};

use checkraft_backup::check::show;
use checkraft_backup::Routes;

use crate::client::ClusterClient;

/// Records the restore in the map; returns the operation's id.
pub async fn begin(client: &ClusterClient, backup_created_ms: u64) -> Result<u64> {
    let kind = OperationKind::Restore { backup_created_ms };
    let outcome = client
        .propose_meta(&MetaCommand::BeginOperation { kind })
        .await
        .context("recording the restore operation; nothing was changed")?;
    outcome
        .allocated
        .context("the metadata group did not answer an operation id; nothing was changed")
}

/// Notes progress in the operation record (best effort: a failure is
/// logged, not fatal).
pub async fn step(client: &ClusterClient, id: u64, step: String) {
    if let Err(e) = client
        .propose_meta(&MetaCommand::OperationStep { id, step })
        .await
    {
        tracing::warn!(operation = id, error = %format!("{e:#}"), "could not record progress");
    }
}

/// Clears the operation record.
pub async fn end(client: &ClusterClient, id: u64) -> Result<()> {
    client
        .propose_meta(&MetaCommand::EndOperation { id })
        .await
        .map(|_| ())
        .with_context(|| format!("clearing the restore's operation record {id}"))
}

/// Replaces `target`'s state with `bitmap`. A stale epoch means the map
/// changed since it was read: re-read it and retry once, provided the
/// shard's range is unchanged.
pub async fn shard(
    client: &ClusterClient,
    routes: &Routes,
    map: &ShardMap,
    target: &ShardDescriptor,
    bitmap: &Bitmap,
) -> Result<()> {
    let mut copy = bitmap.clone();
    copy.run_optimize();
    let restore = Restore {
        epoch: target.epoch,
        bitmap: copy.serialize::<Portable>(),
    };
    let what = || format!("restoring {}", show(target));
    let rejection = send(client, routes, map, &restore, target.shard)
        .await
        .with_context(what)?;
    match rejection {
        None => Ok(()),
        Some(Rejection::StaleEpoch { .. }) => retry(client, routes, target, restore)
            .await
            .with_context(what),
        Some(rejection) => bail!("{}: the shard refused: {rejection}", what()),
    }
}

/// The retry after a stale epoch, with the shard's epoch from a fresh map.
async fn retry(
    client: &ClusterClient,
    routes: &Routes,
    target: &ShardDescriptor,
    restore: Restore,
) -> Result<()> {
    let map = client
        .map()
        .await
        .context("re-reading the shard map after a stale epoch")?;
    let Some(now) = map.shards.get(&target.shard).map(|r| r.descriptor.clone()) else {
        bail!("the shard left the map during the restore; run restore again");
    };
    if (now.start, now.end) != (target.start, target.end) {
        bail!(
            "its range changed to [{}, {}) during the restore; run restore again",
            now.start,
            now.end
        );
    }
    let restore = Restore {
        epoch: now.epoch,
        ..restore
    };
    match send(client, routes, &map, &restore, now.shard).await? {
        None => Ok(()),
        Some(rejection) => bail!(
            "the shard refused (epoch {} from a fresh map): {rejection}",
            now.epoch
        ),
    }
}

/// One `Restore` at the shard's leader: `None` once applied, or the
/// rejection. Tries the next candidate when one cannot be reached.
async fn send(
    client: &ClusterClient,
    routes: &Routes,
    map: &ShardMap,
    restore: &Restore,
    shard: u64,
) -> Result<Option<Rejection>> {
    let record = map
        .shards
        .get(&shard)
        .context("the shard is not in the map")?;
    let body = codec::encode(restore);
    let path = format!("/shards/{shard}/restore");
    let mut failures = Vec::new();
    for addr in routes.candidates(map, record)? {
        match client.shard_call(&addr, &path, body.clone()).await {
            Ok(WriteOutcome::Applied { .. }) => return Ok(None),
            Ok(WriteOutcome::Rejected { rejection }) => return Ok(Some(rejection)),
            Ok(other) => bail!("unexpected answer from {addr}: {other:?}"),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    bail!("no replica accepted it ({})", failures.join("; "))
}
