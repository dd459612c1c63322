//! The node's Prometheus metrics (`GET /metrics`, OpenMetrics text).
//!
//! Nothing here is updated on the hot path except the flush metrics
//! (in [`crate::storage::Flusher`]) and the apply / snapshot counters (in
//! [`crate::state_machine::ShardStats`]). Per-group gauges (term, leader,
//! commit and applied index, `seq`) are read from each group's
//! `raft.metrics()` and state when `/metrics` is scraped, by a collector
//! over the groups hosted at that moment. Every per-group metric carries the
//! label `shard` (the group id; `shard="0"` is the metadata group).
//!
//! Names, types and meanings are listed in `docs/metrics.md`.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use openraft::async_runtime::WatchReceiver;

use crate::group::ShardGroup;
use crate::node::Node;
use crate::state_machine::GroupState;

/// Content type of the metrics body.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric name.
pub const PREFIX: &str = "checkraft_node";

/// One group's values, read at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSample {
    /// The group (shard) id.
    pub shard: u64,
    /// The raft term this replica is in.
    pub term: u64,
    /// Whether this replica leads the group.
    pub is_leader: bool,
    /// The leader this replica knows of (0: none).
    pub leader_id: u64,
    /// The commit index this replica knows.
    pub commit_index: u64,
    /// The last applied log index.
    pub applied_index: u64,
    /// The last log index in this replica's log.
    pub last_log_index: u64,
    /// The log index the latest snapshot covers.
    pub snapshot_index: u64,
    /// The shard's `seq` (the map version for the metadata group).
    pub seq: u64,
    /// Entries applied since the process started.
    pub entries_applied: u64,
    /// `SetBatch` entries applied since the process started.
    pub set_batches_applied: u64,
    /// Sets in those entries.
    pub sets_applied: u64,
    /// Snapshots built by this replica.
    pub snapshots_built: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Size of the latest snapshot, in bytes.
    pub last_snapshot_bytes: u64,
    /// Boxes checked in the shard's state on this replica (0 for the
    /// metadata group).
    pub checked_boxes: u64,
}

impl GroupSample {
    /// Reads one group's values.
    pub fn of(group: &ShardGroup) -> Self {
        let m = group.raft.metrics().borrow_watched().clone();
        let (seq, applied, checked_boxes) = {
            let core = group.shard.lock();
            let checked = match &core.state {
                GroupState::Shard(s) => s.bitmap.cardinality(),
                GroupState::Meta(_) => 0,
            };
            (
                core.state.seq(),
                core.last_applied.map(|l| l.index),
                checked,
            )
        };
        let stats = &group.shard.stats;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Self {
            shard: group.id,
            term: m.current_term,
            is_leader: m.current_leader == Some(m.id) && m.state == openraft::ServerState::Leader,
            leader_id: m.current_leader.unwrap_or(0),
            commit_index: group.committed_index().unwrap_or(0),
            applied_index: applied.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            seq,
            entries_applied: get(&stats.entries_applied),
            set_batches_applied: get(&stats.set_batches_applied),
            sets_applied: get(&stats.sets_applied),
            snapshots_built: get(&stats.snapshots_built),
            snapshots_installed: get(&stats.snapshots_installed),
            last_snapshot_bytes: get(&stats.last_snapshot_bytes),
            checked_boxes,
        }
    }
}

/// The process-wide flush metrics (see [`crate::storage::Flusher`]).
#[derive(Debug, Clone)]
pub struct FlushSample {
    /// Flushes run.
    pub flushes: u64,
    /// Waiters completed by flushes.
    pub waiters: u64,
    /// Flush duration histogram, in seconds.
    pub latency: Histogram,
    /// Waiters per flush histogram.
    pub batch: Histogram,
    /// Log entries made durable by flushes.
    pub entries: u64,
    /// Log entries per flush histogram.
    pub batch_entries: Histogram,
}

/// Encodes the per-group metrics over the groups sampled at scrape time.
#[derive(Debug)]
struct GroupCollector {
    groups: Vec<GroupSample>,
}

type Field = fn(&GroupSample) -> u64;

/// Per-group gauges: name, help, value.
const GROUP_GAUGES: &[(&str, &str, Field)] = &[
    ("raft_term", "Raft term of this replica", |g| g.term),
    (
        "raft_is_leader",
        "1 if this node leads the group, else 0",
        |g| g.is_leader as u64,
    ),
    (
        "raft_leader_id",
        "Leader this replica knows of (0: none)",
        |g| g.leader_id,
    ),
    (
        "raft_commit_index",
        "Commit index known to this replica",
        |g| g.commit_index,
    ),
    (
        "raft_applied_index",
        "Last log index applied to the state machine",
        |g| g.applied_index,
    ),
    (
        "raft_last_log_index",
        "Last log index in this replica's log",
        |g| g.last_log_index,
    ),
    (
        "raft_snapshot_index",
        "Log index covered by the latest snapshot",
        |g| g.snapshot_index,
    ),
    (
        "shard_seq",
        "Shard change sequence number (map version for group 0)",
        |g| g.seq,
    ),
    (
        "snapshot_last_bytes",
        "Size of the latest stored snapshot in bytes",
        |g| g.last_snapshot_bytes,
    ),
    (
        "shard_checked_boxes",
        "Boxes checked in this replica's shard state (0 for group 0)",
        |g| g.checked_boxes,
    ),
];

/// Per-group counters: name (without `_total`), help, value.
const GROUP_COUNTERS: &[(&str, &str, Field)] = &[
    (
        "entries_applied",
        "Raft entries applied since the process started",
        |g| g.entries_applied,
    ),
    (
        "set_batches_applied",
        "SetBatch entries applied since the process started",
        |g| g.set_batches_applied,
    ),
    (
        "sets_applied",
        "Box sets carried by applied SetBatch entries",
        |g| g.sets_applied,
    ),
    ("snapshots_built", "Snapshots built by this replica", |g| {
        g.snapshots_built
    }),
    (
        "snapshots_installed",
        "Snapshots installed from a leader",
        |g| g.snapshots_installed,
    ),
];

impl Collector for GroupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels: Vec<Vec<(&str, String)>> = self
            .groups
            .iter()
            .map(|g| vec![("shard", g.shard.to_string())])
            .collect();
        for (name, help, field) in GROUP_GAUGES {
            let gauge = ConstGauge::new(0i64);
            let mut metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for (g, labels) in self.groups.iter().zip(&labels) {
                let value = i64::try_from(field(g)).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(metric.encode_family(labels)?)?;
            }
        }
        for (name, help, field) in GROUP_COUNTERS {
            let counter = ConstCounter::new(0u64);
            let mut metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for (g, labels) in self.groups.iter().zip(&labels) {
                ConstCounter::new(field(g)).encode(metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// Encodes the process-wide counters.
#[derive(Debug)]
struct ProcessCollector {
    groups: usize,
    flushes: u64,
    waiters: u64,
    entries: u64,
    /// Calls refused for their credential: (401s, 403s).
    refusals: (u64, u64),
    /// Groups whose stored state failed to load.
    failed_groups: usize,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let groups = ConstGauge::new(self.groups as i64);
        groups.encode(encoder.encode_descriptor(
            "groups",
            "Groups hosted by this node (shards and the metadata group)",
            None,
            groups.metric_type(),
        )?)?;
        let failed = ConstGauge::new(self.failed_groups as i64);
        failed.encode(encoder.encode_descriptor(
            "failed_groups",
            "Groups not served because their stored state failed to load (see /health)",
            None,
            failed.metric_type(),
        )?)?;
        let flushes = ConstCounter::new(self.flushes);
        flushes.encode(encoder.encode_descriptor(
            "flushes",
            "sled flushes run by the group-commit flusher",
            None,
            flushes.metric_type(),
        )?)?;
        let waiters = ConstCounter::new(self.waiters);
        waiters.encode(encoder.encode_descriptor(
            "flush_waiters",
            "Waiters (log appends and awaited flushes) completed by flushes",
            None,
            waiters.metric_type(),
        )?)?;
        let entries = ConstCounter::new(self.entries);
        entries.encode(encoder.encode_descriptor(
            "flush_entries",
            "Raft log entries made durable by flushes",
            None,
            entries.metric_type(),
        )?)?;
        let counter = ConstCounter::new(0u64);
        let mut refusals = encoder.encode_descriptor(
            "auth_refusals",
            "Calls refused for their credential: 401 (none or invalid) or 403 (not allowed for the role)",
            None,
            counter.metric_type(),
        )?;
        for (reason, count) in [
            ("unauthorized", self.refusals.0),
            ("forbidden", self.refusals.1),
        ] {
            ConstCounter::new(count).encode(refusals.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}

/// The OpenMetrics text for `groups` and `flush`.
pub fn render_samples(
    groups: Vec<GroupSample>,
    flush: FlushSample,
    refusals: (u64, u64),
    failed_groups: usize,
    operations: &crate::control::stats::Stats,
    backups: &crate::backup_schedule::Stats,
) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(ProcessCollector {
        groups: groups.len(),
        flushes: flush.flushes,
        waiters: flush.waiters,
        entries: flush.entries,
        refusals,
        failed_groups,
    }));
    registry.register(
        "flush_latency_seconds",
        "Duration of each sled flush",
        flush.latency,
    );
    registry.register(
        "flush_batch_waiters",
        "Waiters completed per flush (group-commit batch size)",
        flush.batch,
    );
    registry.register(
        "flush_batch_entries",
        "Raft log entries made durable per flush",
        flush.batch_entries,
    );
    registry.register(
        "operations",
        "Operations (splits, merges, repairs, removals, moves) this node finished as metadata leader, by kind and outcome",
        operations.finished.clone(),
    );
    registry.register(
        "operation_duration_seconds",
        "Duration of each operation this node finished, from when it took it up",
        operations.seconds.clone(),
    );
    registry.register(
        "backups",
        "Scheduled backups this node attempted as metadata leader, by outcome",
        backups.backups.clone(),
    );
    registry.register(
        "backup_last_success_timestamp_seconds",
        "When this node's last successful scheduled backup started (Unix seconds; 0: none)",
        backups.last_success.clone(),
    );
    let mut groups = groups;
    groups.sort_by_key(|g| g.shard);
    registry.register_collector(Box::new(GroupCollector { groups }));
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// The OpenMetrics text of every metric of `node`.
pub fn render(node: &Node) -> String {
    let groups = node.groups().iter().map(|g| GroupSample::of(g)).collect();
    let stats = node.storage().flusher().stats();
    let flush = FlushSample {
        flushes: stats.flushes.load(Ordering::Relaxed),
        waiters: stats.waiters.load(Ordering::Relaxed),
        latency: stats.latency.clone(),
        batch: stats.batch.clone(),
        entries: stats.entries.load(Ordering::Relaxed),
        batch_entries: stats.batch_entries.clone(),
    };
    render_samples(
        groups,
        flush,
        node.refusals().counts(),
        node.failed_groups().len(),
        node.operation_stats(),
        node.backup_stats(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;

    #[test]
    fn renders_every_metric() {
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        latency.observe(0.002);
        let batch = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        batch.observe(5.0);
        let batch_entries = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        batch_entries.observe(9.0);
        let groups = vec![
            GroupSample {
                shard: 7,
                term: 3,
                is_leader: true,
                leader_id: 2,
                commit_index: 12,
                applied_index: 11,
                seq: 9,
                entries_applied: 11,
                sets_applied: 40,
                set_batches_applied: 8,
                last_snapshot_bytes: 1234,
                checked_boxes: 33,
                ..Default::default()
            },
            GroupSample {
                shard: 0,
                ..Default::default()
            },
        ];
        let text = render_samples(
            groups,
            FlushSample {
                flushes: 1,
                waiters: 5,
                latency,
                batch,
                entries: 9,
                batch_entries,
            },
            (3, 4),
            1,
            &{
                let stats = crate::control::stats::Stats::default();
                stats
                    .finished
                    .get_or_create(&vec![("kind", "split"), ("outcome", "done")])
                    .inc();
                stats
            },
            &crate::backup_schedule::Stats::default(),
        );
        for line in [
            "checkraft_node_groups 2",
            "checkraft_node_flushes_total 1",
            "checkraft_node_flush_waiters_total 5",
            "checkraft_node_flush_latency_seconds_count 1",
            "checkraft_node_flush_batch_waiters_count 1",
            "checkraft_node_flush_entries_total 9",
            "checkraft_node_flush_batch_entries_count 1",
            "checkraft_node_operations_total{kind=\"split\",outcome=\"done\"} 1",
            "checkraft_node_backups_total{outcome=\"ok\"} 0",
            "checkraft_node_backups_total{outcome=\"failed\"} 0",
            "checkraft_node_backup_last_success_timestamp_seconds 0",
            "checkraft_node_flush_batch_entries_sum 9.0",
            "checkraft_node_shard_checked_boxes{shard=\"7\"} 33",
            "checkraft_node_shard_checked_boxes{shard=\"0\"} 0",
            "checkraft_node_raft_term{shard=\"7\"} 3",
            "checkraft_node_raft_is_leader{shard=\"7\"} 1",
            "checkraft_node_raft_leader_id{shard=\"7\"} 2",
            "checkraft_node_raft_commit_index{shard=\"7\"} 12",
            "checkraft_node_raft_applied_index{shard=\"7\"} 11",
            "checkraft_node_raft_applied_index{shard=\"0\"} 0",
            "checkraft_node_raft_last_log_index{shard=\"7\"} 0",
            "checkraft_node_raft_snapshot_index{shard=\"7\"} 0",
            "checkraft_node_shard_seq{shard=\"7\"} 9",
            "checkraft_node_snapshot_last_bytes{shard=\"7\"} 1234",
            "checkraft_node_entries_applied_total{shard=\"7\"} 11",
            "checkraft_node_set_batches_applied_total{shard=\"7\"} 8",
            "checkraft_node_sets_applied_total{shard=\"7\"} 40",
            "checkraft_node_snapshots_built_total{shard=\"7\"} 0",
            "checkraft_node_snapshots_installed_total{shard=\"7\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
