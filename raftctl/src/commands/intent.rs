//! Recording an operation in the metadata group and watching the
//! metadata leader run it: what every command that changes the cluster's
//! shape does (`node remove`, `shard split|merge`, `reshard`). The tool
//! holds no state: interrupted and rerun, it finds its operation in the
//! map and keeps watching; one the control plane started by itself (a
//! repair, a rebalancing move) is waited for first.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use checkraft_proto::{FinishedOperation, MetaCommand, OperationKind};
use indicatif::ProgressBar;

use super::cluster::{describe_operation, initialized_map, Progress};
use crate::client::ClusterClient;

/// How long one operation may take before the tool gives up watching
/// (the metadata leader keeps running it).
const STEP_LIMIT: Duration = Duration::from_secs(300);
/// How many automatic operations in a row the tool waits out.
const AUTOMATIC_WAITS: usize = 20;
/// Pause before looking at the map again when it lags the leader's.
const LAGGING_MAP_PAUSE: Duration = Duration::from_millis(250);

/// Records `kind` and watches it to its end: its outcome, or an error when
/// it was refused or rolled back.
pub async fn run_operation(
    client: &ClusterClient,
    kind: OperationKind,
    progress: &Progress,
) -> Result<FinishedOperation> {
    let what = describe_operation(&kind);
    let mut waited = 0;
    let (id, version) = loop {
        let (id, version) = match client
            .propose_meta(&MetaCommand::BeginOperation { kind: kind.clone() })
            .await
        {
            Ok(outcome) => (
                outcome.allocated.context("no operation id allocated")?,
                outcome.version,
            ),
            Err(e) => {
                let map = initialized_map(client).await?;
                match &map.operation {
                    // The same operation recorded by an earlier, interrupted
                    // run: keep watching it.
                    Some(op) if same(&op.kind, &kind) => (op.id, map.version),
                    // One the control plane started by itself (a repair, a
                    // rebalancing move): wait for it, then record ours.
                    Some(op) if automatic(&op.kind) && waited < AUTOMATIC_WAITS => {
                        progress.say(format!(
                            "waiting for operation {} ({}) to finish first",
                            op.id,
                            describe_operation(&op.kind)
                        ));
                        let _ = watch(client, op.id, map.version, &ProgressBar::hidden()).await;
                        waited += 1;
                        continue;
                    }
                    // Refused for an operation this node's copy of the map
                    // does not show yet (it lags the leader's): look again.
                    None if format!("{e:#}").contains("in progress")
                        && waited < AUTOMATIC_WAITS =>
                    {
                        tokio::time::sleep(LAGGING_MAP_PAUSE).await;
                        waited += 1;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
        };
        break (id, version);
    };
    progress.say(format!("operation {id}: {what}"));
    let bar = ProgressBar::hidden();
    let finished = watch(client, id, version, &bar).await?;
    if !finished.ok {
        bail!("{what}: {}", finished.outcome);
    }
    Ok(finished)
}

/// Operations the control plane records by itself.
fn automatic(kind: &OperationKind) -> bool {
    matches!(
        kind,
        OperationKind::MoveReplica { .. }
            | OperationKind::RepairNode { .. }
            | OperationKind::Split { .. }
    )
}

fn same(a: &OperationKind, b: &OperationKind) -> bool {
    match (a, b) {
        (
            OperationKind::Split { shard, at, .. },
            OperationKind::Split {
                shard: s2, at: a2, ..
            },
        ) => shard == s2 && at == a2,
        (
            OperationKind::Merge { left, right, .. },
            OperationKind::Merge {
                left: l2,
                right: r2,
                ..
            },
        ) => left == l2 && right == r2,
        (OperationKind::RemoveNode { node }, OperationKind::RemoveNode { node: n2 }) => node == n2,
        _ => false,
    }
}

/// Follows the map until operation `id` (recorded at map version `seen`
/// or earlier) ends; shows its steps on `bar`. The entry node's copy of
/// the map may lag the metadata leader's: copies older than `seen` say
/// nothing about the operation.
pub async fn watch(
    client: &ClusterClient,
    id: u64,
    seen: u64,
    bar: &ProgressBar,
) -> Result<FinishedOperation> {
    let deadline = Instant::now() + STEP_LIMIT;
    let mut version = seen.saturating_sub(1);
    let mut step = String::new();
    while Instant::now() < deadline {
        let map = match client.wait_map(version, Duration::from_secs(5)).await {
            Ok(map) => map,
            Err(e) => {
                tracing::debug!(error = %e, "map read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        version = map.version;
        if map.version < seen {
            continue;
        }
        if let Some(done) = map.finished.iter().rev().find(|f| f.operation.id == id) {
            return Ok(done.clone());
        }
        match &map.operation {
            Some(op) if op.id == id => {
                if op.step != step {
                    step = op.step.clone();
                    bar.set_message(format!("{}: {step}", describe_operation(&op.kind)));
                }
            }
            _ => bail!("operation {id} ended without a recorded outcome (aborted?)"),
        }
    }
    bail!(
        "operation {id} did not finish within {STEP_LIMIT:?}; the metadata leader keeps running \
         it: watch `raftctl operation show`, and rerun this command to follow it again"
    )
}
