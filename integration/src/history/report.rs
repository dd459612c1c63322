//! What the checker found: [`Anomaly`] and [`Report`].

use std::collections::BTreeMap;
use std::fmt;

/// The class of an [`Anomaly`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// An acknowledged write is missing from a final state, or a box is
    /// set that no write set.
    LostWrite,
    /// A read missed a write its API promises it sees, or saw a value no
    /// write could have produced.
    StaleRead,
    /// Replicas disagree by content at an equal applied index or `seq`, or
    /// did not converge at the end.
    Divergence,
    /// Anything else a test adds ([`Report::push`]).
    Other,
}

/// One violation, described for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// Its class.
    pub kind: AnomalyKind,
    /// What happened, with boxes, values, nodes and times.
    pub description: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.description)
    }
}

/// The result of [`super::History::check`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every violation found.
    pub anomalies: Vec<Anomaly>,
    /// Box sets acknowledged.
    pub writes_acked: usize,
    /// Box sets with an unknown outcome.
    pub writes_indeterminate: usize,
    /// Box sets certainly not applied.
    pub writes_failed: usize,
    /// Read operations recorded, by API label.
    pub reads: BTreeMap<String, usize>,
    /// (read, box) pairs checked for staleness, by API label.
    pub read_checks: BTreeMap<String, usize>,
    /// Replica states compared (every node read).
    pub replica_states: usize,
    /// Distinct (shard, applied index) points seen.
    pub applied_points: usize,
    /// (final replica state, box) pairs checked for lost writes.
    pub final_boxes_checked: usize,
    /// Final replica states recorded.
    pub final_states: usize,
}

impl Report {
    /// True when no anomaly was found.
    pub fn ok(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// How many anomalies of `kind`.
    pub fn count(&self, kind: AnomalyKind) -> usize {
        self.anomalies.iter().filter(|a| a.kind == kind).count()
    }

    /// Adds an anomaly found outside the checker.
    pub fn push(&mut self, kind: AnomalyKind, description: impl Into<String>) {
        self.anomalies.push(Anomaly {
            kind,
            description: description.into(),
        });
    }

    /// A multi-line summary: counts, then the first `max_listed` anomalies
    /// of each kind.
    pub fn summary(&self, max_listed: usize) -> String {
        let mut s = format!(
            "writes: {} acknowledged, {} indeterminate, {} failed\n",
            self.writes_acked, self.writes_indeterminate, self.writes_failed
        );
        for (api, n) in &self.reads {
            let checks = self.read_checks.get(api).copied().unwrap_or(0);
            s += &format!("reads: {n} {api} ({checks} box observations checked)\n");
        }
        s += &format!(
            "replica states compared: {} ({} distinct applied indices); final states: {} ({} boxes checked)\n",
            self.replica_states, self.applied_points, self.final_states, self.final_boxes_checked
        );
        s += &format!(
            "anomalies: {} (lost writes {}, stale reads {}, divergences {}, other {})\n",
            self.anomalies.len(),
            self.count(AnomalyKind::LostWrite),
            self.count(AnomalyKind::StaleRead),
            self.count(AnomalyKind::Divergence),
            self.count(AnomalyKind::Other),
        );
        for kind in [
            AnomalyKind::LostWrite,
            AnomalyKind::StaleRead,
            AnomalyKind::Divergence,
            AnomalyKind::Other,
        ] {
            let all = self.count(kind);
            for a in self
                .anomalies
                .iter()
                .filter(|a| a.kind == kind)
                .take(max_listed)
            {
                s += &format!("  - {a}\n");
            }
            if all > max_listed {
                s += &format!("  ... and {} more {kind:?}\n", all - max_listed);
            }
        }
        s
    }
}
