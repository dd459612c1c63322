//! What the control plane does when no operation is recorded: one
//! decision per round, from the map and the nodes' reports, in this
//! order of urgency.
//!
//! 1. A node silent for `down_after_ms` is marked down.
//! 2. A down node's replicas are rebuilt elsewhere (`RepairNode`), when
//!    some live node is free to take one.
//! 3. A live node's stale replicas (groups the map does not place there,
//!    seen that way for [`STALE_GRACE`]) are deleted: a node that returns
//!    after it was replaced is never merged back.
//! 4. A down node that reports again, once clean, is taken back (Up, and
//!    a learner of the metadata group).
//! 5. Replicas, then leaders, are evened out across live nodes, one move
//!    at a time (`rebalance`).
//! 6. A shard written faster than `split_writes_per_second` for
//!    `split_hold_ms` is split in the middle.
//!
//! [`plan`] is pure: it takes the facts and answers one [`Action`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkraft_proto::{GroupId, NodeId, NodeReport, NodeState, ShardId, ShardMap, META_GROUP};

use super::moves::{least_loaded, replica_load};

/// How long a replica must look stale before it is deleted.
pub const STALE_GRACE: Duration = Duration::from_secs(10);

/// What the scheduler knows at the start of a round.
pub struct Facts<'a> {
    /// The map as applied on the metadata leader.
    pub map: &'a ShardMap,
    /// Last reports of the nodes that report (fresh ones).
    pub reports: BTreeMap<NodeId, NodeReport>,
    /// Registered nodes silent for `down_after` (never the leader).
    pub silent: BTreeSet<NodeId>,
    /// Voters of the metadata group.
    pub meta_voters: BTreeSet<NodeId>,
    /// Learners of the metadata group.
    pub meta_learners: BTreeSet<NodeId>,
    /// Replicas that have looked stale for [`STALE_GRACE`].
    pub stale: BTreeSet<(NodeId, GroupId)>,
    /// Nodes with a replica that looks stale now (for any time).
    pub unclean: BTreeSet<NodeId>,
    /// Shards written too fast for long enough (load-based split).
    pub hot: BTreeSet<ShardId>,
    /// Even out replicas and leaders (off while an Up node's reports
    /// lag: it may be dying, and must not be a target).
    pub rebalance: bool,
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record that the node is down.
    MarkDown(NodeId),
    /// Record a `RepairNode` operation.
    Repair(NodeId),
    /// Delete these replicas on the node.
    DeleteStale(NodeId, Vec<GroupId>),
    /// Take a returned node back: Up, and a metadata learner.
    Readmit(NodeId),
    /// Record a `MoveReplica` operation.
    Move {
        /// The shard.
        shard: ShardId,
        /// Its most loaded holder.
        from: NodeId,
        /// The least loaded node.
        to: NodeId,
    },
    /// Ask `to` (a voter) to take the shard's leadership.
    Lead {
        /// The shard.
        shard: ShardId,
        /// The voter that campaigns.
        to: NodeId,
    },
    /// Record a `Split` operation at `at`.
    Split {
        /// The shard.
        shard: ShardId,
        /// The middle chunk boundary.
        at: u64,
    },
}

/// Replicas the reports show that the map does not place there.
pub fn stale_replicas(
    map: &ShardMap,
    reports: &BTreeMap<NodeId, NodeReport>,
) -> BTreeSet<(NodeId, GroupId)> {
    let mut out = BTreeSet::new();
    for (id, report) in reports {
        for group in report.groups.keys() {
            if *group == META_GROUP {
                continue;
            }
            let placed = map
                .shards
                .get(group)
                .is_some_and(|s| s.replicas.contains(id));
            if !placed {
                out.insert((*id, *group));
            }
        }
    }
    out
}

fn state(map: &ShardMap, id: NodeId) -> Option<NodeState> {
    map.nodes.get(&id).map(|n| n.state)
}

/// The middle chunk boundary of a shard, if it has one inside.
fn middle(map: &ShardMap, shard: ShardId) -> Option<u64> {
    let grid = map.grid?;
    let d = &map.shards.get(&shard)?.descriptor;
    let chunk = u64::from(grid.chunk_size.max(1));
    let at = (d.start + (d.end - d.start) / 2) / chunk * chunk;
    (at > d.start && at < d.end).then_some(at)
}

/// This round's decision, if any.
pub fn plan(f: &Facts) -> Option<Action> {
    let map = f.map;
    // 1. Silent Up nodes are down.
    if let Some(id) = f
        .silent
        .iter()
        .find(|id| state(map, **id) == Some(NodeState::Up))
    {
        return Some(Action::MarkDown(*id));
    }
    let live: BTreeSet<NodeId> = f.reports.keys().copied().collect();
    let load = replica_load(map, &live);
    // 2. Down nodes' replicas are rebuilt, where a live node is free.
    for id in &f.silent {
        if state(map, *id) != Some(NodeState::Down) {
            continue;
        }
        let movable = map.shards.values().any(|s| {
            s.replicas.contains(id)
                && least_loaded(&load, &s.replicas.iter().copied().collect()).is_some()
        });
        let meta_replaceable =
            f.meta_voters.contains(id) && f.meta_learners.iter().any(|l| live.contains(l));
        if movable || meta_replaceable {
            return Some(Action::Repair(*id));
        }
    }
    // 3. Stale replicas on live nodes go.
    let mut stale: BTreeMap<NodeId, Vec<GroupId>> = BTreeMap::new();
    for (node, group) in &f.stale {
        if live.contains(node) {
            stale.entry(*node).or_default().push(*group);
        }
    }
    if let Some((node, groups)) = stale.into_iter().next() {
        return Some(Action::DeleteStale(node, groups));
    }
    // 4. Returned nodes come back once clean.
    // (Replicas the map still places there, for want of a free node
    // during the repair, simply catch up through raft.)
    if let Some(id) = live
        .iter()
        .find(|id| state(map, **id) == Some(NodeState::Down) && !f.unclean.contains(id))
    {
        return Some(Action::Readmit(*id));
    }
    if !f.rebalance || !f.silent.is_empty() {
        return hot_split(f);
    }
    // 5a. Replicas within ±1 of even.
    if let (Some((&max_node, &max)), Some((_, &min))) = (
        load.iter()
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n))),
        load.iter().min_by_key(|(n, c)| (**c, **n)),
    ) {
        if max >= min + 2 {
            // The first shard on the most loaded node whose replica can
            // go to a node at least two below it.
            let shard = map.shards.values().find_map(|s| {
                if !s.replicas.contains(&max_node) {
                    return None;
                }
                let holding = s.replicas.iter().copied().collect();
                least_loaded(&load, &holding)
                    .filter(|to| load[to] + 2 <= max)
                    .map(|to| (s.descriptor.shard, to))
            });
            if let Some((shard, to)) = shard {
                return Some(Action::Move {
                    shard,
                    from: max_node,
                    to,
                });
            }
        }
    }
    // 5b. Leaders within ±1 of even, by the nodes' own reports.
    let mut leads: BTreeMap<NodeId, Vec<ShardId>> = load.keys().map(|n| (*n, Vec::new())).collect();
    for (id, report) in &f.reports {
        for (group, summary) in &report.groups {
            if *group != META_GROUP && summary.leader == Some(*id) && map.shards.contains_key(group)
            {
                if let Some(v) = leads.get_mut(id) {
                    v.push(*group);
                }
            }
        }
    }
    let most = leads
        .iter()
        .max_by_key(|(n, v)| (v.len(), std::cmp::Reverse(**n)));
    let fewest = leads.iter().min_by_key(|(n, v)| (v.len(), **n));
    if let (Some((_, most)), Some((&to, fewest))) = (most, fewest) {
        if most.len() >= fewest.len() + 2 {
            let shard = most
                .iter()
                .find(|g| map.shards.get(g).is_some_and(|s| s.replicas.contains(&to)));
            if let Some(shard) = shard {
                return Some(Action::Lead { shard: *shard, to });
            }
        }
    }
    hot_split(f)
}

/// 6. The first hot shard that can be split.
fn hot_split(f: &Facts) -> Option<Action> {
    f.hot
        .iter()
        .find_map(|s| middle(f.map, *s).map(|at| Action::Split { shard: *s, at }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::{Grid, GroupSummary, NodeRecord, ShardDescriptor, ShardRecord};

    fn map(nodes: &[(NodeId, NodeState)], shards: &[(ShardId, &[NodeId])]) -> ShardMap {
        let mut m = ShardMap {
            grid: Some(Grid {
                boxes: 1 << 20,
                chunk_size: 4096,
            }),
            ..Default::default()
        };
        for (id, state) in nodes {
            m.nodes.insert(
                *id,
                NodeRecord {
                    id: *id,
                    addr: format!("127.0.0.1:{}", 7000 + id),
                    state: *state,
                },
            );
        }
        let width = (1u64 << 20) / shards.len() as u64;
        for (i, (id, replicas)) in shards.iter().enumerate() {
            m.shards.insert(
                *id,
                ShardRecord {
                    descriptor: ShardDescriptor {
                        shard: *id,
                        start: i as u64 * width,
                        end: (i as u64 + 1) * width,
                        epoch: 1,
                    },
                    replicas: replicas.to_vec(),
                    leader: None,
                },
            );
        }
        m
    }

    fn report(map: &ShardMap, id: NodeId, leads: &[ShardId]) -> NodeReport {
        let groups = map
            .shards
            .values()
            .filter(|s| s.replicas.contains(&id))
            .map(|s| {
                let leader = if leads.contains(&s.descriptor.shard) {
                    Some(id)
                } else {
                    None
                };
                (
                    s.descriptor.shard,
                    GroupSummary {
                        descriptor: s.descriptor.clone(),
                        seq: 0,
                        term: 1,
                        leader,
                        applied_index: 1,
                    },
                )
            })
            .collect();
        NodeReport {
            node_id: id,
            addr: String::new(),
            groups,
            failed: BTreeMap::new(),
            disk_bytes: 0,
        }
    }

    fn facts<'a>(m: &'a ShardMap, live: &[(NodeId, &[ShardId])], silent: &[NodeId]) -> Facts<'a> {
        let reports: BTreeMap<NodeId, NodeReport> = live
            .iter()
            .map(|(id, l)| (*id, report(m, *id, l)))
            .collect();
        let stale = stale_replicas(m, &reports);
        Facts {
            map: m,
            unclean: stale.iter().map(|(n, _)| *n).collect(),
            stale,
            reports,
            silent: silent.iter().copied().collect(),
            meta_voters: BTreeSet::from([1, 2, 3]),
            meta_learners: BTreeSet::from([4]),
            hot: BTreeSet::new(),
            rebalance: true,
        }
    }

    const UP: NodeState = NodeState::Up;
    const DOWN: NodeState = NodeState::Down;

    #[test]
    fn a_silent_node_is_marked_down_then_repaired() {
        let m = map(
            &[(1, UP), (2, UP), (3, UP), (4, UP)],
            &[(10, &[1, 2, 3]), (11, &[2, 3, 4])],
        );
        let f = facts(&m, &[(1, &[10]), (2, &[11]), (4, &[])], &[3]);
        assert_eq!(plan(&f), Some(Action::MarkDown(3)));
        let m = map(
            &[(1, UP), (2, UP), (3, DOWN), (4, UP)],
            &[(10, &[1, 2, 3]), (11, &[2, 3, 4])],
        );
        let f = facts(&m, &[(1, &[10]), (2, &[11]), (4, &[])], &[3]);
        assert_eq!(plan(&f), Some(Action::Repair(3)));
    }

    #[test]
    fn no_repair_without_a_free_node() {
        let m = map(&[(1, UP), (2, UP), (3, DOWN)], &[(10, &[1, 2, 3])]);
        let mut f = facts(&m, &[(1, &[10]), (2, &[])], &[3]);
        f.meta_learners.clear();
        assert_eq!(plan(&f), None);
    }

    #[test]
    fn a_returned_node_is_cleaned_then_taken_back() {
        // Node 3 was replaced by 4 while down, and reports its old copy.
        let m = map(&[(1, UP), (2, UP), (3, DOWN), (4, UP)], &[(10, &[1, 2, 4])]);
        let mut f = facts(&m, &[(1, &[10]), (2, &[]), (4, &[])], &[]);
        let mut old = report(&map(&[], &[(10, &[3])]), 3, &[]);
        old.node_id = 3;
        f.reports.insert(3, old);
        f.stale = stale_replicas(&m, &f.reports);
        f.unclean.insert(3);
        assert_eq!(plan(&f), Some(Action::DeleteStale(3, vec![10])));
        // Not back while a copy looks stale, even before the grace.
        f.stale.clear();
        assert_eq!(plan(&f), None);
        f.reports.get_mut(&3).unwrap().groups.clear();
        f.unclean.clear();
        assert_eq!(plan(&f), Some(Action::Readmit(3)));
    }

    #[test]
    fn a_returned_node_that_kept_its_replicas_is_taken_back() {
        // Three nodes: node 3's replicas had nowhere to go while it was
        // down, so the map still places them there.
        let m = map(&[(1, UP), (2, UP), (3, DOWN)], &[(10, &[1, 2, 3])]);
        let f = facts(&m, &[(1, &[10]), (2, &[]), (3, &[])], &[]);
        assert_eq!(plan(&f), Some(Action::Readmit(3)));
    }

    #[test]
    fn replicas_then_leaders_are_evened_out() {
        let shards: Vec<(ShardId, &[NodeId])> = (10..16).map(|s| (s, &[1u64, 2, 3][..])).collect();
        let m = map(&[(1, UP), (2, UP), (3, UP), (4, UP), (5, UP)], &shards);
        let f = facts(
            &m,
            &[
                (1, &[10, 11, 12, 13, 14, 15]),
                (2, &[]),
                (3, &[]),
                (4, &[]),
                (5, &[]),
            ],
            &[],
        );
        // 6/6/6/0/0: move from the most loaded (lowest id on ties) to 4.
        assert_eq!(
            plan(&f),
            Some(Action::Move {
                shard: 10,
                from: 1,
                to: 4
            })
        );
        // 5/5/6/1/1: node 3's first shard is on 4 and 5 already; its
        // second one moves.
        let partly: Vec<(ShardId, &[NodeId])> = vec![
            (10, &[3, 4, 5]),
            (11, &[1, 2, 3]),
            (12, &[1, 2, 3]),
            (13, &[1, 2, 3]),
            (14, &[1, 2, 3]),
            (15, &[1, 2, 3]),
        ];
        let m = map(&[(1, UP), (2, UP), (3, UP), (4, UP), (5, UP)], &partly);
        let f = facts(&m, &[(1, &[]), (2, &[]), (3, &[]), (4, &[]), (5, &[])], &[]);
        assert_eq!(
            plan(&f),
            Some(Action::Move {
                shard: 11,
                from: 3,
                to: 4
            })
        );
        // Balanced replicas (4/4/4/3/3), unbalanced leaders.
        let spread: Vec<(ShardId, &[NodeId])> = vec![
            (10, &[1, 2, 3]),
            (11, &[1, 2, 4]),
            (12, &[1, 3, 5]),
            (13, &[1, 4, 5]),
            (14, &[2, 3, 4]),
            (15, &[2, 3, 5]),
        ];
        let m = map(&[(1, UP), (2, UP), (3, UP), (4, UP), (5, UP)], &spread);
        let f = facts(
            &m,
            &[
                (1, &[10, 11, 12, 13]),
                (2, &[14, 15]),
                (3, &[]),
                (4, &[]),
                (5, &[]),
            ],
            &[],
        );
        assert_eq!(plan(&f), Some(Action::Lead { shard: 10, to: 3 }));
        // Even: nothing to do.
        let f = facts(
            &m,
            &[
                (1, &[10]),
                (2, &[14]),
                (3, &[15]),
                (4, &[11]),
                (5, &[12, 13]),
            ],
            &[],
        );
        assert_eq!(plan(&f), None);
    }

    #[test]
    fn a_hot_shard_splits_in_the_middle_of_its_chunks() {
        let m = map(&[(1, UP), (2, UP), (3, UP)], &[(10, &[1, 2, 3])]);
        let mut f = facts(&m, &[(1, &[10]), (2, &[]), (3, &[])], &[]);
        f.hot.insert(10);
        assert_eq!(
            plan(&f),
            Some(Action::Split {
                shard: 10,
                at: 1 << 19
            })
        );
    }
}
