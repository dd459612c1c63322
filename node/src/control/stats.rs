//! What this node's control plane did, for `/metrics`: operations
//! finished while it led the metadata group, by kind and outcome, and
//! their durations.

use std::time::Duration;

use checkraft_proto::OperationKind;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Labels of the operation metrics: `kind` (see [`kind_name`]) and, for
/// the counter, `outcome` (`done`, `refused`).
type Labels = Vec<(&'static str, &'static str)>;

/// Operation kinds the control plane runs (metric labels).
const KINDS: [&str; 5] = ["split", "merge", "repair", "remove", "move"];

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// What this node's runs of operations did (`/metrics`).
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
        // alerts see it before the first operation.
        for kind in KINDS {
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

impl Stats {
    /// Counts one finished operation of `kind` that took `took`.
    pub(crate) fn finished_one(&self, kind: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "done" } else { "refused" };
        self.finished
            .get_or_create(&vec![("kind", kind), ("outcome", outcome)])
            .inc();
        self.seconds
            .get_or_create(&vec![("kind", kind)])
            .observe(took.as_secs_f64());
    }
}

/// The `kind` label of an operation.
pub(crate) fn kind_name(kind: &OperationKind) -> &'static str {
    match kind {
        OperationKind::Split { .. } => "split",
        OperationKind::Merge { .. } => "merge",
        OperationKind::RepairNode { .. } => "repair",
        OperationKind::RemoveNode { .. } => "remove",
        OperationKind::MoveReplica { .. } => "move",
        OperationKind::Restore { .. } => "restore",
    }
}
