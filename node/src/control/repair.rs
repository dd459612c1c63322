//! The operations that move replicas, run by the metadata leader:
//! `RepairNode` (a node is down: rebuild its replicas on live nodes),
//! `RemoveNode` (drain a live node, then retire it) and `MoveReplica`
//! (one move, from rebalancing or an operator).
//!
//! Like splits and merges, each run starts from what the map and the
//! groups say now, so a new metadata leader resumes a predecessor's run.

use std::collections::BTreeSet;

use checkraft_proto::{
    ChangeMembership, MetaCommand, NodeId, NodeState, Operation, ShardId, ShardMap, META_GROUP,
};

use super::moves::{move_replica, Moved};
use crate::error::{Error, Result};
use crate::node::Node;
use crate::reshape::{current_map, meta_ok, note, Finished};

/// Shards whose map replicas include `node`.
fn shards_on(map: &ShardMap, node: NodeId) -> Vec<ShardId> {
    map.shards
        .values()
        .filter(|s| s.replicas.contains(&node))
        .map(|s| s.descriptor.shard)
        .collect()
}

async fn set_state(node: &Node, id: NodeId, state: NodeState) -> Result<()> {
    let map = current_map(node)?;
    if map.nodes.get(&id).is_none_or(|n| n.state == state) {
        return Ok(());
    }
    meta_ok(
        node.propose_meta(MetaCommand::SetNodeState { node: id, state })
            .await?,
    )
}

/// Moves every replica off `gone`; answers (moved, kept for lack of a
/// free node).
async fn empty(
    node: &Node,
    op: &Operation,
    gone: NodeId,
    live: &BTreeSet<NodeId>,
) -> Result<(usize, Vec<ShardId>)> {
    let shards = shards_on(&current_map(node)?, gone);
    let mut moved = 0;
    let mut kept = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        match move_replica(node, *shard, gone, None, live).await? {
            Moved::To(_) | Moved::Dropped => moved += 1,
            Moved::NoTarget => kept.push(*shard),
        }
        note(
            node,
            op,
            &format!(
                "moved {}/{} replicas (last: shard {shard})",
                i + 1,
                shards.len()
            ),
        )
        .await?;
    }
    Ok((moved, kept))
}

/// Takes `gone` out of the metadata group (this node leads it): a voter
/// is replaced by a live learner when there is one; a learner is
/// dropped. Answers the promoted node.
async fn leave_meta(node: &Node, gone: NodeId, live: &BTreeSet<NodeId>) -> Result<Option<NodeId>> {
    let meta = node.group(META_GROUP)?;
    if node.id() == Some(gone) {
        // The leader is the node leaving: hand the group over first; the
        // next leader resumes the operation.
        crate::handover::hand_over(node, std::time::Duration::from_secs(3)).await;
        return Err(Error::Unavailable(
            "the metadata leader is the node leaving; handing over".into(),
        ));
    }
    let membership = meta.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    if voters.contains(&gone) {
        let Some(r) = membership
            .learner_ids()
            .find(|l| *l != gone && live.contains(l))
        else {
            return Ok(None);
        };
        let voters = voters
            .iter()
            .copied()
            .filter(|v| *v != gone)
            .chain([r])
            .collect();
        meta.change_membership(ChangeMembership {
            voters,
            retain: false,
        })
        .await?;
        return Ok(Some(r));
    }
    if membership.learner_ids().any(|l| l == gone) {
        meta.remove_node(gone).await?;
    }
    Ok(None)
}

/// `RepairNode { node }`: `gone` is down; rebuild its replicas on live
/// nodes. It stays registered (state Down); if it returns, the scheduler
/// deletes its stale replicas and takes it back.
pub(crate) async fn repair(
    node: &Node,
    op: &Operation,
    gone: NodeId,
    live: &BTreeSet<NodeId>,
) -> Result<Finished> {
    if live.contains(&gone) {
        return Ok(Finished::Refused(format!(
            "node {gone} reports again; nothing to repair"
        )));
    }
    let (moved, kept) = empty(node, op, gone, live).await?;
    let promoted = leave_meta(node, gone, live).await?;
    let mut outcome = format!("rebuilt {moved} replica(s) of node {gone} on live nodes");
    if let Some(r) = promoted {
        outcome.push_str(&format!(
            "; node {r} votes in the metadata group in its place"
        ));
    }
    if !kept.is_empty() {
        outcome.push_str(&format!(
            "; shards {kept:?} keep fewer replicas: no other live node is free"
        ));
    }
    Ok(Finished::Done(outcome))
}

/// `RemoveNode { node }`: drain a node and retire it.
pub(crate) async fn remove(
    node: &Node,
    op: &Operation,
    gone: NodeId,
    live: &BTreeSet<NodeId>,
) -> Result<Finished> {
    let map = current_map(node)?;
    if map.nodes.get(&gone).map(|n| n.state) != Some(NodeState::Removed) {
        set_state(node, gone, NodeState::Draining).await?;
    }
    let mut targets = live.clone();
    targets.remove(&gone);
    let (moved, kept) = empty(node, op, gone, &targets_with(live, gone)).await?;
    if !kept.is_empty() {
        // Checked when the operation was recorded; a node died meanwhile.
        return Err(Error::Unavailable(format!(
            "shards {kept:?} have no live node free to take node {gone}'s replica; waiting"
        )));
    }
    let promoted = leave_meta(node, gone, &targets).await?;
    note(node, op, "left the metadata group").await?;
    set_state(node, gone, NodeState::Removed).await?;
    let mut outcome = format!("moved {moved} replica(s) off node {gone}; node {gone} removed");
    if let Some(r) = promoted {
        outcome.push_str(&format!(
            "; node {r} votes in the metadata group in its place"
        ));
    }
    Ok(Finished::Done(outcome))
}

/// Live nodes, counting `gone` as live too (it is drained while it runs:
/// its old replicas are deleted, and it may lead), but never a target
/// (its state is Draining).
fn targets_with(live: &BTreeSet<NodeId>, gone: NodeId) -> BTreeSet<NodeId> {
    let mut out = live.clone();
    out.insert(gone);
    out
}

/// `MoveReplica { shard, from, to }`.
pub(crate) async fn move_one(
    node: &Node,
    shard: ShardId,
    from: NodeId,
    to: NodeId,
    live: &BTreeSet<NodeId>,
) -> Result<Finished> {
    if !live.contains(&to) {
        return Ok(Finished::Refused(format!("node {to} is not live")));
    }
    Ok(
        match move_replica(node, shard, from, Some(to), live).await? {
            Moved::To(n) => Finished::Done(format!(
                "shard {shard}: replica moved from node {from} to node {n}"
            )),
            Moved::Dropped => {
                Finished::Done(format!("shard {shard}: node {from} held no voting replica"))
            }
            Moved::NoTarget => {
                Finished::Refused(format!("shard {shard}: node {to} holds it already"))
            }
        },
    )
}
