//! The metadata leader's live view of the nodes: their last reports, who
//! is silent, write rates, and the scheduler's recent decisions.
//!
//! Held in memory only. Every node keeps one, but only the metadata
//! leader's fills (others answer reports with a forward). A node that
//! becomes leader starts empty and counts silence from its own start
//! ([`Liveness::took_over`]), so a new leader never calls a node down
//! before it could have heard from it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checkraft_proto::{
    ClusterHealth, Decision, GroupId, NodeHealth, NodeId, NodeReport, ShardMap, META_GROUP,
};
use std::sync::{Mutex, MutexGuard};

/// Decisions kept for `raftctl status`.
const DECISIONS_KEPT: usize = 20;

/// One node's latest report, and the one before it (for write rates).
struct Seen {
    at: Instant,
    report: NodeReport,
    /// Change numbers of the groups it led at the previous report, and
    /// when that was.
    previous: Option<(Instant, BTreeMap<GroupId, u64>)>,
}

#[derive(Default)]
struct Inner {
    /// When this node last became the metadata leader.
    since: Option<Instant>,
    seen: HashMap<NodeId, Seen>,
    decisions: VecDeque<Decision>,
}

/// See the module docs.
#[derive(Default)]
pub struct Liveness {
    inner: Mutex<Inner>,
}

/// What the scheduler reads of one node.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Its last report, when one arrived since this leader took over.
    pub report: Option<NodeReport>,
    /// True when it has been silent for `down_after`.
    pub silent: bool,
    /// True when its last report is recent (within a few report
    /// intervals): only such nodes take new replicas or leaderships.
    pub fresh: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Liveness {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node just became the metadata leader: forget what an earlier
    /// term saw, and count silence from now.
    pub fn took_over(&self) {
        let mut inner = self.lock();
        inner.since = Some(Instant::now());
        inner.seen.clear();
    }

    /// This node stopped leading the metadata group.
    pub fn stepped_down(&self) {
        let mut inner = self.lock();
        inner.since = None;
        inner.seen.clear();
    }

    /// Records a node's report.
    pub fn record(&self, report: NodeReport) {
        let now = Instant::now();
        let mut inner = self.lock();
        let led = |r: &NodeReport| -> BTreeMap<GroupId, u64> {
            r.groups
                .iter()
                .filter(|(g, s)| **g != META_GROUP && s.leader == Some(r.node_id))
                .map(|(g, s)| (*g, s.seq))
                .collect()
        };
        let previous = inner
            .seen
            .get(&report.node_id)
            .map(|s| (s.at, led(&s.report)));
        inner.seen.insert(
            report.node_id,
            Seen {
                at: now,
                report,
                previous,
            },
        );
    }

    /// Keeps `what` among the recent decisions (and logs it).
    pub fn decided(&self, what: String) {
        tracing::info!(decision = %what, "control plane");
        let mut inner = self.lock();
        inner.decisions.push_back(Decision {
            at_ms: now_ms(),
            what,
        });
        while inner.decisions.len() > DECISIONS_KEPT {
            inner.decisions.pop_front();
        }
    }

    /// How long this node has led the metadata group (`None`: it does
    /// not).
    pub fn leading(&self) -> Option<Duration> {
        self.lock().since.map(|s| s.elapsed())
    }

    /// The scheduler's view of `node`.
    pub fn view(&self, node: NodeId, down_after: Duration, fresh_within: Duration) -> NodeView {
        let inner = self.lock();
        let since = inner.since.unwrap_or_else(Instant::now);
        let seen = inner.seen.get(&node);
        let last = seen.map(|s| s.at).unwrap_or(since).max(since);
        NodeView {
            report: seen.map(|s| s.report.clone()),
            silent: last.elapsed() >= down_after,
            fresh: seen.is_some_and(|s| s.at.elapsed() < fresh_within),
        }
    }

    /// Sets per second of every shard whose leader reported twice.
    pub fn write_rates(&self) -> BTreeMap<GroupId, f64> {
        let inner = self.lock();
        let mut rates = BTreeMap::new();
        for seen in inner.seen.values() {
            let Some((then, before)) = &seen.previous else {
                continue;
            };
            let secs = seen.at.duration_since(*then).as_secs_f64();
            if secs <= 0.0 {
                continue;
            }
            let me = seen.report.node_id;
            for (group, summary) in &seen.report.groups {
                if *group == META_GROUP || summary.leader != Some(me) {
                    continue;
                }
                if let Some(old) = before.get(group) {
                    rates.insert(*group, summary.seq.saturating_sub(*old) as f64 / secs);
                }
            }
        }
        rates
    }

    /// The answer of `GET /meta/health` (`leader`: this node's id).
    pub fn health(&self, leader: NodeId, map: &ShardMap, down_after: Duration) -> ClusterHealth {
        let rates = self.write_rates();
        let inner = self.lock();
        let since = inner.since.unwrap_or_else(Instant::now);
        let mut nodes = BTreeMap::new();
        let ids = map
            .nodes
            .values()
            .filter(|n| n.state != checkraft_proto::NodeState::Removed)
            .map(|n| n.id)
            .chain(inner.seen.keys().copied());
        for id in ids {
            let seen = inner.seen.get(&id);
            let last = seen.map(|s| s.at).unwrap_or(since).max(since);
            let report = seen.map(|s| &s.report);
            nodes.insert(
                id,
                NodeHealth {
                    last_report_ms: seen.map(|s| s.at.elapsed().as_millis() as u64),
                    silent: last.elapsed() >= down_after,
                    groups: report.map(|r| r.groups.len()).unwrap_or(0),
                    leaders: report
                        .map(|r| {
                            r.groups
                                .iter()
                                .filter(|(g, s)| **g != META_GROUP && s.leader == Some(id))
                                .count()
                        })
                        .unwrap_or(0),
                    disk_bytes: report.map(|r| r.disk_bytes).unwrap_or(0),
                    failed: report.map(|r| r.failed.clone()).unwrap_or_default(),
                },
            );
        }
        ClusterHealth {
            leader,
            leading_ms: since.elapsed().as_millis() as u64,
            down_after_ms: down_after.as_millis() as u64,
            nodes,
            write_rates: rates,
            decisions: inner.decisions.iter().cloned().collect(),
        }
    }
}
