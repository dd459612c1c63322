//! The control plane: the metadata leader's scheduling loop ([`drive`]).
//!
//! Every node runs the loop; it acts only while the node leads the
//! metadata group. Each round (at least every 200 ms, sooner when the
//! map changes) it either runs the recorded operation one more time, or,
//! when none is recorded, makes one decision ([`schedule`]) from the map
//! and the nodes' reports ([`liveness`]).
//!
//! - Operations are state in the metadata group (`BeginOperation`,
//!   `OperationStep`, `FinishOperation`), and every step is decided from
//!   what the map and the groups say now: a new metadata leader resumes
//!   its predecessor's operation, and a repeated step does nothing twice.
//! - Splits and merges live in [`crate::reshape`]; replica moves, repairs
//!   and node removal in `repair.rs` and `moves.rs`.
//! - Reports are kept in memory ([`liveness::Liveness`]); a new leader
//!   waits `down_after_ms` before it calls anyone down.
//! - `raftctl` only records intent and watches.
//!
//! Caveat: one operation at a time across the cluster, so rebalancing is
//! one replica move at a time, and it never starves user writes; a
//! large cluster rebalances slowly.

pub mod group_call;
pub mod liveness;
mod moves;
mod repair;
pub mod report;
pub mod schedule;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Weak;
use std::time::{Duration, Instant};

use checkraft_proto::{
    GroupId, MetaCommand, NodeId, NodeReport, NodeState, OperationKind, ShardId, ShardMap,
    META_GROUP,
};

use crate::node::Node;
use crate::reshape::{self, meta_ok, Finished};
use schedule::{Action, Facts};

/// How often the metadata leader looks at the cluster, at the latest.
const ROUND: Duration = Duration::from_millis(200);
/// A report at most this old (or three report intervals, if longer)
/// makes a node fresh: it may take replicas and leaderships.
const FRESH_FLOOR: Duration = Duration::from_secs(2);
/// How long leaders must stay uneven before the first one moves.
const LEAD_HOLD: Duration = Duration::from_secs(15);
/// Pause after a leadership move before the next one (it takes an
/// election round trip, and the next report, to show).
const LEAD_PAUSE: Duration = Duration::from_secs(3);

/// The loop's memory between rounds.
#[derive(Default)]
struct Rounds {
    /// Consecutive failed runs of the current operation.
    failures: u32,
    /// When this node took each operation up (for the duration metric).
    taken: HashMap<u64, Instant>,
    /// Since when each replica has looked stale.
    stale_since: HashMap<(NodeId, GroupId), Instant>,
    /// Since when each shard has been written too fast.
    hot_since: HashMap<ShardId, Instant>,
    /// No leadership move before this.
    lead_pause_until: Option<Instant>,
    /// Since when leaders have been uneven (with nothing more urgent).
    lead_imbalance_since: Option<Instant>,
}

/// Runs the control plane while this node leads the metadata group.
/// Stops when the node is dropped.
pub async fn drive(node: Weak<Node>) {
    let mut rounds = Rounds::default();
    let mut leading = false;
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
            if leading {
                node.liveness().stepped_down();
                leading = false;
            }
            continue;
        }
        if !leading {
            node.liveness().took_over();
            rounds = Rounds::default();
            leading = true;
        }
        let Ok(map) = meta.map() else { continue };
        if map.grid.is_none() {
            continue;
        }
        let down_after = Duration::from_millis(node.config.down_after_ms);
        let fresh_within = Duration::from_millis(3 * node.config.report_ms).max(FRESH_FLOOR);
        let views: BTreeMap<NodeId, _> = map
            .nodes
            .values()
            .filter(|n| n.state != NodeState::Removed)
            .map(|n| (n.id, node.liveness().view(n.id, down_after, fresh_within)))
            .collect();
        let me = node.id().unwrap_or(0);
        let reports: BTreeMap<NodeId, NodeReport> = views
            .iter()
            .filter(|(_, v)| v.fresh)
            .filter_map(|(id, v)| v.report.clone().map(|r| (*id, r)))
            .collect();
        let live: BTreeSet<NodeId> = reports.keys().copied().chain([me]).collect();
        match map.operation.clone() {
            Some(op) => run_operation(&node, &mut rounds, op, &live).await,
            None => {
                let silent = views
                    .iter()
                    .filter(|(id, v)| v.silent && **id != me)
                    .map(|(id, _)| *id)
                    .collect();
                let lagging = views.iter().any(|(id, v)| {
                    !v.fresh
                        && *id != me
                        && map.nodes.get(id).is_some_and(|n| n.state == NodeState::Up)
                });
                decide(&node, &mut rounds, &map, reports, silent, lagging).await;
            }
        }
    }
}

/// Runs the recorded operation once more; records its end when it ends.
async fn run_operation(
    node: &Node,
    rounds: &mut Rounds,
    op: checkraft_proto::Operation,
    live: &BTreeSet<NodeId>,
) {
    let since = *rounds.taken.entry(op.id).or_insert_with(Instant::now);
    let run = match &op.kind {
        OperationKind::Split { .. } => reshape::split::run(node, &op).await,
        OperationKind::Merge { .. } => reshape::merge::run(node, &op).await,
        OperationKind::RepairNode { node: gone } => repair::repair(node, &op, *gone, live).await,
        OperationKind::RemoveNode { node: gone } => repair::remove(node, &op, *gone, live).await,
        OperationKind::MoveReplica { shard, from, to } => {
            repair::move_one(node, *shard, *from, *to, live).await
        }
        // Restores are run by `raftctl restore`.
        OperationKind::Restore { .. } => return,
    };
    let (ok, outcome) = match run {
        Ok(Finished::Done(outcome)) => (true, outcome),
        Ok(Finished::Refused(outcome)) => (false, outcome),
        Err(e) => {
            rounds.failures += 1;
            if rounds.failures % 25 == 1 {
                tracing::warn!(operation = op.id, error = %e, "operation step failed; retrying");
            }
            return;
        }
    };
    rounds.failures = 0;
    tracing::info!(operation = op.id, ok, %outcome, "operation finished");
    node.liveness()
        .decided(format!("operation #{} finished: {outcome}", op.id));
    let finish = MetaCommand::FinishOperation {
        id: op.id,
        ok,
        outcome,
    };
    match node.propose_meta(finish).await {
        Ok(_) => {
            node.operation_stats()
                .finished_one(stats::kind_name(&op.kind), ok, since.elapsed());
            rounds.taken.remove(&op.id);
        }
        Err(e) => {
            tracing::warn!(operation = op.id, error = %e, "could not record the end; retrying")
        }
    }
}

/// One decision when no operation is recorded.
async fn decide(
    node: &Node,
    rounds: &mut Rounds,
    map: &ShardMap,
    reports: BTreeMap<NodeId, NodeReport>,
    silent: BTreeSet<NodeId>,
    lagging: bool,
) {
    let now = Instant::now();
    // Stale replicas and hot shards must stay so for a while.
    let stale_now = schedule::stale_replicas(map, &reports);
    rounds.stale_since.retain(|k, _| stale_now.contains(k));
    for k in &stale_now {
        rounds.stale_since.entry(*k).or_insert(now);
    }
    let stale = rounds
        .stale_since
        .iter()
        .filter(|(_, t)| now.duration_since(**t) >= schedule::STALE_GRACE)
        .map(|(k, _)| *k)
        .collect();
    let threshold = node.config.split_writes_per_second as f64;
    let rates = node.liveness().write_rates();
    rounds
        .hot_since
        .retain(|s, _| threshold > 0.0 && rates.get(s).is_some_and(|r| *r > threshold));
    if threshold > 0.0 {
        for (s, r) in &rates {
            if *r > threshold {
                rounds.hot_since.entry(*s).or_insert(now);
            }
        }
    }
    let hold = Duration::from_millis(node.config.split_hold_ms);
    let hot = rounds
        .hot_since
        .iter()
        .filter(|(_, t)| now.duration_since(**t) >= hold)
        .map(|(s, _)| *s)
        .collect();
    let Ok(meta) = node.group(META_GROUP) else {
        return;
    };
    let membership = meta.membership();
    let facts = Facts {
        unclean: stale_now.iter().map(|(n, _)| *n).collect(),
        map,
        reports,
        silent,
        meta_voters: membership.voter_ids().collect(),
        meta_learners: membership.learner_ids().collect(),
        stale,
        hot,
        rebalance: node.config.rebalance && !lagging,
    };
    let Some(mut action) = schedule::plan(&facts) else {
        rounds.lead_imbalance_since = None;
        return;
    };
    if let Action::Lead { .. } = action {
        // Leaders move only once the imbalance has lasted, so that a node
        // back from a short absence does not make its groups change leader
        // at once (and twice), and then one at a time.
        let since = *rounds.lead_imbalance_since.get_or_insert(now);
        if now.duration_since(since) < LEAD_HOLD || rounds.lead_pause_until.is_some_and(|t| now < t)
        {
            return;
        }
        rounds.lead_pause_until = Some(now + LEAD_PAUSE);
    } else {
        rounds.lead_imbalance_since = None;
    }
    if let Action::Split { shard, .. } = &mut action {
        rounds.hot_since.remove(shard);
    }
    let what = describe(&action);
    match act(node, map, &action).await {
        Ok(()) => {
            rounds.failures = 0;
            node.liveness().decided(what)
        }
        Err(e) => {
            rounds.failures += 1;
            if rounds.failures % 25 == 1 {
                tracing::warn!(decision = %what, error = %e, "control plane action failed; retrying");
            }
        }
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::MarkDown(n) => format!("node {n} is silent: marked down"),
        Action::Repair(n) => format!("node {n} is down: rebuilding its replicas elsewhere"),
        Action::DeleteStale(n, g) => format!("node {n}: cleaned up stale replicas of groups {g:?}"),
        Action::Readmit(n) => format!("node {n} reports again: taken back (Up)"),
        Action::Move { shard, from, to } => {
            format!("rebalancing: moving shard {shard}'s replica from node {from} to node {to}")
        }
        Action::Lead { shard, to } => {
            format!("rebalancing: node {to} takes the lead of shard {shard}")
        }
        Action::Split { shard, at } => format!("shard {shard} is hot: splitting it at box {at}"),
    }
}

async fn act(node: &Node, map: &ShardMap, action: &Action) -> crate::error::Result<()> {
    let begin = |kind| MetaCommand::BeginOperation { kind };
    match action {
        Action::MarkDown(n) => meta_ok(
            node.propose_meta(MetaCommand::SetNodeState {
                node: *n,
                state: NodeState::Down,
            })
            .await?,
        ),
        Action::Repair(n) => meta_ok(
            node.propose_meta(begin(OperationKind::RepairNode { node: *n }))
                .await?,
        ),
        Action::Move { shard, from, to } => meta_ok(
            node.propose_meta(begin(OperationKind::MoveReplica {
                shard: *shard,
                from: *from,
                to: *to,
            }))
            .await?,
        ),
        Action::Split { shard, at } => meta_ok(
            node.propose_meta(begin(OperationKind::Split {
                shard: *shard,
                at: *at,
                child: 0,
            }))
            .await?,
        ),
        Action::DeleteStale(n, groups) => {
            let addr = map
                .addr(*n)
                .ok_or_else(|| crate::error::Error::NotFound(format!("node {n}'s address")))?;
            for g in groups {
                // The map is the placement, but a membership change whose
                // operation was aborted may not be in it: never delete a
                // replica its group still counts as a member.
                if let Some(record) = map.shards.get(g) {
                    let probes: Vec<String> = record
                        .replicas
                        .iter()
                        .filter_map(|r| map.addr(*r).map(String::from))
                        .collect();
                    let m = node.members(*g, &probes).await?;
                    if m.leader.is_none() {
                        return Err(crate::error::Error::Unavailable(format!(
                            "group {g} has no leader"
                        )));
                    }
                    if m.voters.contains(n) {
                        // The map lags the group: record what it is.
                        let replicas = moves::replicas_after(&record.replicas, &m.voters);
                        return meta_ok(
                            node.propose_meta(MetaCommand::SetReplicas {
                                shard: *g,
                                replicas,
                            })
                            .await?,
                        );
                    }
                    node.remove_member_at(&m, *n).await?;
                }
                node.delete_remote_group(addr, *g).await?;
            }
            Ok(())
        }
        Action::Readmit(n) => {
            let addr = map
                .addr(*n)
                .ok_or_else(|| crate::error::Error::NotFound(format!("node {n}'s address")))?;
            let meta = node.group(META_GROUP)?;
            let member = meta.membership().get_node(n).is_some();
            if !member {
                meta.add_learner(checkraft_proto::AddLearner {
                    node_id: *n,
                    addr: addr.to_string(),
                })
                .await?;
            }
            meta_ok(
                node.propose_meta(MetaCommand::SetNodeState {
                    node: *n,
                    state: NodeState::Up,
                })
                .await?,
            )
        }
        Action::Lead { shard, to } => {
            let probes: Vec<String> = map
                .shards
                .get(shard)
                .map(|s| {
                    s.replicas
                        .iter()
                        .filter_map(|r| map.addr(*r).map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let m = node.members(*shard, &probes).await?;
            node.transfer_at(&m, *to).await
        }
    }
}
