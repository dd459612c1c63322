//! Moving one replica of a shard from one node to another while writes
//! go on: a new replica joins as a learner and catches up, then one
//! joint-consensus change swaps it in for the old one, so the group never
//! has fewer voters than before. Each step first looks at the current
//! membership, so a move interrupted by a crash (or a change of metadata
//! leader) resumes where it stopped and never does a step twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkraft_client::Members;
use checkraft_proto::{MetaCommand, NodeId, NodeState, ShardId, ShardMap};

use crate::error::{Error, Result};
use crate::node::Node;
use crate::reshape::{current_map, meta_ok};

/// How a move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// The replica now lives on this node.
    To(NodeId),
    /// The old replica did not vote (a leftover learner): it was dropped.
    Dropped,
    /// No live node is free to take it (each holds the shard already).
    NoTarget,
}

/// Replicas per node in the map, for nodes that may take more: Up nodes
/// in `live` (those reporting).
pub(crate) fn replica_load(map: &ShardMap, live: &BTreeSet<NodeId>) -> BTreeMap<NodeId, usize> {
    let mut load: BTreeMap<NodeId, usize> = map
        .nodes
        .values()
        .filter(|n| n.state == NodeState::Up && live.contains(&n.id))
        .map(|n| (n.id, 0))
        .collect();
    for s in map.shards.values() {
        for r in &s.replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    load
}

/// The least loaded node of `load` outside `holding` (ties: lowest id).
pub(crate) fn least_loaded(
    load: &BTreeMap<NodeId, usize>,
    holding: &BTreeSet<NodeId>,
) -> Option<NodeId> {
    load.iter()
        .filter(|(n, _)| !holding.contains(n))
        .min_by_key(|(n, c)| (**c, **n))
        .map(|(n, _)| *n)
}

/// The map's replica list after a change to `voters`: survivors keep their
/// order, newcomers go last.
pub(crate) fn replicas_after(old: &[NodeId], voters: &BTreeSet<NodeId>) -> Vec<NodeId> {
    let mut out: Vec<NodeId> = old.iter().copied().filter(|r| voters.contains(r)).collect();
    out.extend(voters.iter().copied().filter(|v| !old.contains(v)));
    out
}

/// Where the replica on `from` goes, given the map's `listed` replicas
/// and the group's membership `m`:
/// 1. the target an interrupted run left behind: a learner, or a voter
///    the map does not list (its membership change stopped between the
///    joint and the final configuration), when live and (if `to` is
///    given) `to`;
/// 2. else `to`;
/// 3. else the least loaded node of `load` that holds no copy.
///
/// `None` when the choice already votes as a listed replica (nothing to
/// move to).
fn choose_target(
    listed: &[NodeId],
    m: &Members,
    from: NodeId,
    to: Option<NodeId>,
    live: &BTreeSet<NodeId>,
    load: &BTreeMap<NodeId, usize>,
) -> Option<NodeId> {
    let unlisted = |n: &NodeId| !listed.contains(n);
    let resumed = m
        .learners
        .iter()
        .chain(m.voters.iter().filter(|v| unlisted(v)))
        .copied()
        .find(|l| *l != from && live.contains(l) && to.is_none_or(|t| t == *l));
    let holding: BTreeSet<NodeId> = listed.iter().chain(&m.voters).copied().collect();
    resumed
        .or(to)
        .or_else(|| least_loaded(load, &holding))
        .filter(|t| !m.voters.contains(t) || unlisted(t))
}

async fn record_replicas(node: &Node, shard: ShardId, replicas: Vec<NodeId>) -> Result<()> {
    let map = current_map(node)?;
    if map
        .shards
        .get(&shard)
        .is_none_or(|s| s.replicas == replicas)
    {
        return Ok(());
    }
    meta_ok(
        node.propose_meta(MetaCommand::SetReplicas { shard, replicas })
            .await?,
    )
}

/// Deletes `from`'s replica of `shard` once it is out of the group. Best
/// effort: a node that is down keeps its copy until it returns, when
/// the scheduler deletes it as stale.
async fn drop_old(node: &Node, map: &ShardMap, shard: ShardId, from: NodeId) {
    let Some(addr) = map.addr(from) else { return };
    if let Err(e) = node.delete_remote_group(addr, shard).await {
        tracing::debug!(shard_id = shard, from, error = %e, "old replica not deleted (yet)");
    }
}

/// Moves `shard`'s replica off `from`, to `to` when given, else to the
/// least loaded node of `live` that does not hold the shard.
pub(crate) async fn move_replica(
    node: &Node,
    shard: ShardId,
    from: NodeId,
    to: Option<NodeId>,
    live: &BTreeSet<NodeId>,
) -> Result<Moved> {
    let map = current_map(node)?;
    let Some(record) = map.shards.get(&shard).cloned() else {
        return Ok(Moved::Dropped); // merged away meanwhile
    };
    let probes: Vec<String> = record
        .leader
        .into_iter()
        .chain(record.replicas.iter().copied())
        .filter(|n| *n != from || live.contains(n))
        .filter_map(|n| map.addr(n).map(String::from))
        .collect();
    let m = node.members(shard, &probes).await?;
    if m.leader.is_none() {
        return Err(Error::Unavailable(format!("shard {shard} has no leader")));
    }
    if !m.voters.contains(&from) {
        // Not voting (any more, after an interrupted run): drop a learner
        // and bring the map up to date.
        node.remove_member_at(&m, from).await?;
        record_replicas(node, shard, replicas_after(&record.replicas, &m.voters)).await?;
        drop_old(node, &map, shard, from).await;
        let added = m.voters.iter().find(|v| !record.replicas.contains(v));
        return Ok(added.map_or(Moved::Dropped, |n| Moved::To(*n)));
    }
    let mut load = replica_load(&map, live);
    load.remove(&from);
    let Some(target) = choose_target(&record.replicas, &m, from, to, live, &load) else {
        return Ok(Moved::NoTarget);
    };
    let addr = map
        .addr(target)
        .ok_or_else(|| Error::Conflict(format!("node {target} has no address in the map")))?
        .to_string();
    tracing::info!(shard_id = shard, from, to = target, "moving a replica");
    node.create_remote(&addr, &record.descriptor).await?;
    node.add_learner_at(&m, target, &addr).await?;
    let mut m = node
        .members(shard, &m.addrs.values().cloned().collect::<Vec<_>>())
        .await?;
    if m.leader == Some(from) {
        // Hand leadership to another voter first, so that the swap does
        // not cost the group an election timeout. Best effort.
        if let Some(other) = m.voters.iter().find(|v| **v != from && live.contains(v)) {
            let _ = node.transfer_at(&m, *other).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            m = node
                .members(shard, &m.addrs.values().cloned().collect::<Vec<_>>())
                .await?;
        }
    }
    let voters: BTreeSet<NodeId> = m
        .voters
        .iter()
        .copied()
        .filter(|v| *v != from)
        .chain([target])
        .collect();
    node.set_voters_at(&m, &voters).await?;
    let replicas: Vec<NodeId> = record
        .replicas
        .iter()
        .map(|r| if *r == from { target } else { *r })
        .collect();
    record_replicas(node, shard, replicas_after(&replicas, &voters)).await?;
    if live.contains(&from) {
        drop_old(node, &map, shard, from).await;
    }
    Ok(Moved::To(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_skips_holders_and_breaks_ties_by_id() {
        let load = BTreeMap::from([(1, 3), (2, 1), (3, 1), (4, 0)]);
        assert_eq!(least_loaded(&load, &BTreeSet::from([4])), Some(2));
        assert_eq!(least_loaded(&load, &BTreeSet::new()), Some(4));
        assert_eq!(least_loaded(&load, &BTreeSet::from([1, 2, 3, 4])), None);
    }

    fn members(voters: &[NodeId], learners: &[NodeId]) -> Members {
        Members {
            group: 5,
            leader: voters.first().copied(),
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            addrs: BTreeMap::new(),
        }
    }

    #[test]
    fn a_move_resumes_with_the_target_its_interrupted_run_left() {
        let live = BTreeSet::from([1, 2, 4]);
        // Every live node holds a copy: 4 as a voter the map does not
        // list, left by a run stopped between the joint and the final
        // configuration. The move resumes with it (it used to find no
        // free node and be retried forever).
        let load = BTreeMap::from([(1, 2), (2, 2), (4, 1)]);
        let joint = members(&[1, 2, 3, 4], &[]);
        assert_eq!(
            choose_target(&[1, 2, 3], &joint, 3, None, &live, &load),
            Some(4)
        );
        // Or a learner it had added.
        let learner = members(&[1, 2, 3], &[4]);
        assert_eq!(
            choose_target(&[1, 2, 3], &learner, 3, None, &live, &load),
            Some(4)
        );
        // A fresh move goes to the least loaded node without a copy.
        let live = BTreeSet::from([1, 2, 4, 5]);
        let load = BTreeMap::from([(1, 2), (2, 2), (4, 1), (5, 0)]);
        let settled = members(&[1, 2, 3], &[]);
        assert_eq!(
            choose_target(&[1, 2, 3], &settled, 3, None, &live, &load),
            Some(5)
        );
        // A given `to` is kept, but not one that already votes as a listed
        // replica; a leftover target that is not `to` is not taken.
        assert_eq!(
            choose_target(&[1, 2, 3], &settled, 3, Some(4), &live, &load),
            Some(4)
        );
        assert_eq!(
            choose_target(&[1, 2, 3], &settled, 3, Some(2), &live, &load),
            None
        );
        assert_eq!(
            choose_target(&[1, 2, 3], &joint, 3, Some(5), &live, &load),
            Some(5)
        );
        // No live node is free: nothing to move to.
        let live = BTreeSet::from([1, 2]);
        let load = BTreeMap::from([(1, 2), (2, 2)]);
        assert_eq!(
            choose_target(&[1, 2, 3], &settled, 3, None, &live, &load),
            None
        );
    }

    #[test]
    fn replicas_keep_their_order() {
        assert_eq!(
            replicas_after(&[3, 1, 2], &BTreeSet::from([1, 2, 5])),
            vec![1, 2, 5]
        );
    }
}
