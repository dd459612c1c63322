//! Splits and merges, run by the metadata group's leader (see
//! `docs/resharding.md`).
//!
//! An operator (or `raftctl reshard`) records the intent with
//! `BeginOperation { Split | Merge }` in the metadata group. Whichever
//! node leads the metadata group runs it ([`drive`]): every step is
//! decided from what the shards and the map say now, so a new leader
//! resumes an operation its predecessor started, and a step repeated
//! after a crash does nothing twice. The operation ends with
//! `FinishOperation`, which keeps its outcome in the map.
//!
//! - `split`: propose `Split` to the parent, wait until the child
//!   serves, record the split in the map.
//! - `merge`: freeze the right shard, record the point of no return
//!   (step `committing`), absorb it into the left, record the merge,
//!   delete the right's replicas. Before `committing` the merge rolls back
//!   by thawing the right shard.

mod call;
mod merge;
mod split;

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use checkraft_proto::{MetaCommand, Operation, OperationKind, WriteOutcome, META_GROUP};

use crate::error::{Error, Result};
use crate::node::Node;

/// How an operation's run ended (a transient failure is an `Err`, and
/// the next round runs it again).
pub(crate) enum Finished {
    /// It did what it should.
    Done(String),
    /// It was refused, or rolled back; nothing changed in the end.
    Refused(String),
}

/// How often the metadata leader looks for an operation to run, at the
/// latest (a change of the map wakes it sooner).
const ROUND: Duration = Duration::from_millis(200);

/// Labels of the operation metrics: `kind` (`split`, `merge`) and, for
/// the counter, `outcome` (`done`, `refused`).
type Labels = Vec<(&'static str, &'static str)>;

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// What this node's runs of splits and merges did (`/metrics`).
#[derive(Clone)]
pub struct Stats {
    /// Operations this node finished, by kind and outcome.
    pub finished: Family<Labels, Counter>,
    /// Their duration from when this node took them up, by kind.
    pub seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Stats {
    fn default() -> Self {
        let stats = Self {
            finished: Family::default(),
            seconds: Family::new_with_constructor(seconds),
        };
        // Every series exists from the start (at 0), so dashboards and
        // alerts see it before the first split or merge.
        for kind in ["split", "merge"] {
            for outcome in ["done", "refused"] {
                let _ = stats
                    .finished
                    .get_or_create(&vec![("kind", kind), ("outcome", outcome)]);
            }
            let _ = stats.seconds.get_or_create(&vec![("kind", kind)]);
        }
        stats
    }
}

fn kind_name(kind: &OperationKind) -> &'static str {
    match kind {
        OperationKind::Split { .. } => "split",
        OperationKind::Merge { .. } => "merge",
        _ => "other",
    }
}

/// Runs recorded splits and merges while this node leads the metadata
/// group. Stops when the node is dropped.
pub async fn drive(node: Weak<Node>) {
    let mut failures = 0u32;
    // When this node took each operation up (for the duration metric).
    let mut taken: HashMap<u64, Instant> = HashMap::new();
    let mut versions: Option<tokio::sync::watch::Receiver<u64>> = None;
    loop {
        match versions.as_mut() {
            Some(rx) => {
                let _ = tokio::time::timeout(ROUND, rx.changed()).await;
            }
            None => tokio::time::sleep(ROUND).await,
        }
        let Some(node) = node.upgrade() else { return };
        let Ok(meta) = node.group(META_GROUP) else {
            continue;
        };
        if versions.is_none() {
            versions = Some(meta.shard.watch_version());
        }
        if !meta.is_leader() {
            continue;
        }
        let Ok(map) = meta.map() else { continue };
        let Some(op) = map.operation.clone() else {
            failures = 0;
            continue;
        };
        let since = *taken.entry(op.id).or_insert_with(Instant::now);
        let run = match &op.kind {
            OperationKind::Split { .. } => split::run(&node, &op).await,
            OperationKind::Merge { .. } => merge::run(&node, &op).await,
            _ => continue,
        };
        let (ok, outcome) = match run {
            Ok(Finished::Done(outcome)) => (true, outcome),
            Ok(Finished::Refused(outcome)) => (false, outcome),
            Err(e) => {
                failures += 1;
                if failures % 25 == 1 {
                    tracing::warn!(operation = op.id, error = %e, "reshape step failed; retrying");
                }
                continue;
            }
        };
        failures = 0;
        tracing::info!(operation = op.id, ok, %outcome, "operation finished");
        let finish = MetaCommand::FinishOperation {
            id: op.id,
            ok,
            outcome,
        };
        match node.propose_meta(finish).await {
            Ok(_) => {
                let kind = kind_name(&op.kind);
                let stats = node.reshape_stats();
                let outcome = if ok { "done" } else { "refused" };
                stats
                    .finished
                    .get_or_create(&vec![("kind", kind), ("outcome", outcome)])
                    .inc();
                stats
                    .seconds
                    .get_or_create(&vec![("kind", kind)])
                    .observe(since.elapsed().as_secs_f64());
                taken.remove(&op.id);
            }
            Err(e) => {
                tracing::warn!(operation = op.id, error = %e, "could not record the end; retrying")
            }
        }
    }
}

/// Records `step` as the operation's progress note.
pub(crate) async fn note(node: &Node, op: &Operation, step: &str) -> Result<()> {
    if op.step == step {
        return Ok(());
    }
    meta_ok(
        node.propose_meta(MetaCommand::OperationStep {
            id: op.id,
            step: step.into(),
        })
        .await?,
    )
}

/// A metadata write that must apply.
pub(crate) fn meta_ok(outcome: WriteOutcome) -> Result<()> {
    match outcome {
        WriteOutcome::MetaApplied { .. } => Ok(()),
        other => Err(Error::Unavailable(format!("metadata write: {other:?}"))),
    }
}

/// The current map from this node's metadata replica.
pub(crate) fn current_map(node: &Node) -> Result<checkraft_proto::ShardMap> {
    node.group(META_GROUP)?.map()
}
