//! `raftctl node add|remove|handover`.
//!
//! `add` registers a running node that has no id yet: the metadata group
//! allocates one, the node is told its id, and it joins the metadata group
//! as a learner (so it can serve the map).
//!
//! `remove` drains a node and retires it, recorded in the map as a
//! `RemoveNode` operation so that a rerun after a crash resumes it: mark
//! the node draining; move every replica it holds to another Up node (new
//! replica as a learner, then one joint-consensus change swapping it in
//! for the old one, so writes keep flowing and the old replica never goes
//! before the new one votes); hand its metadata vote to a learner; remove
//! it from the metadata group; mark it removed. Every step first checks the
//! current membership, so rerunning a step that already happened is a
//! no-op.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use checkraft_proto::{
    AssignId, Handover, MetaCommand, NodeId, NodeState, OperationKind, ShardDescriptor, ShardId,
    ShardMap, META_GROUP,
};
use serde::Serialize;

use super::cluster::{
    add_learner, create_replica, describe_operation, drop_replica, id_list, initialized_map,
    lead_elsewhere, node_status, out, print_json, propose, record_replicas, refresh_leader_hints,
    remove_member, set_voters, state_name, via, ClusterView, GroupInfo, Progress, META_VOTERS,
};
use super::placement::{check_addr, choose_target, replicas_after};
use crate::client::ClusterClient;

// ------------------------------------------------------------------ handover

/// `raftctl node handover ID`: the node hands over every group it leads
/// (`POST /admin/leadership/handover`) and says where each went.
pub async fn handover(client: &ClusterClient, id: NodeId, json: bool) -> Result<()> {
    let view = ClusterView::load(client).await?;
    let addr = view.addr(id)?;
    let handover: Handover = client
        .post_json(addr, "/admin/leadership/handover", &serde_json::json!({}))
        .await
        .with_context(|| format!("node {id} at {addr} did not hand over"))?;
    if json {
        return print_json(&handover);
    }
    if handover.moved.is_empty() && handover.kept.is_empty() {
        out(format!("node {id} leads no group"));
    }
    for (group, to) in &handover.moved {
        out(format!("group {group}: now led by node {to}"));
    }
    for (group, why) in &handover.kept {
        out(format!("group {group}: still led by node {id} ({why})"));
    }
    if !handover.kept.is_empty() {
        bail!("node {id} still leads {} group(s)", handover.kept.len());
    }
    Ok(())
}

// ------------------------------------------------------------------ add

/// `raftctl node add ADDR`: prints the allocated id.
pub async fn add(client: &ClusterClient, addr: &str, json: bool) -> Result<()> {
    check_addr(addr)?;
    let progress = Progress::new(json);
    let view = ClusterView::load(client).await?;
    let id = register(client, &view, addr, &progress).await?;
    let meta = GroupInfo::fetch_led(client, META_GROUP, &view.group_addrs(META_GROUP)).await?;
    if meta.is_member(id) {
        bail!("node at {addr} already has id {id} (and is part of the cluster)");
    }
    progress.say(format!(
        "node {id} at {addr} joins the metadata group as a learner"
    ));
    create_replica(client, addr, &ShardDescriptor::meta(), None).await?;
    add_learner(client, &meta, id, addr).await?;
    if json {
        return print_json(&serde_json::json!({ "id": id }));
    }
    out(format!("{id}"));
    Ok(())
}

/// Gives the node at `addr` an id: a new one from the metadata group, or
/// the one an interrupted earlier `node add` already registered for it.
async fn register(
    client: &ClusterClient,
    view: &ClusterView,
    addr: &str,
    progress: &Progress,
) -> Result<NodeId> {
    let status = node_status(client, addr)
        .await
        .with_context(|| format!("the node at {addr} does not answer"))?;
    let registered = view
        .map
        .nodes
        .values()
        .find(|n| n.addr == addr && n.state != NodeState::Removed)
        .map(|n| n.id);
    match (status.node_id, registered) {
        (0, None) => {
            let add = MetaCommand::AddNode {
                addr: addr.to_string(),
            };
            let outcome = propose(client, &add).await?;
            let id = outcome
                .allocated
                .context("the metadata group allocated no id for AddNode")?;
            progress.say(format!("registered {addr} as node {id}"));
            assign_id(client, addr, id).await
        }
        (0, Some(id)) => {
            progress.say(format!(
                "{addr} is already registered as node {id}; finishing its setup"
            ));
            assign_id(client, addr, id).await
        }
        (id, Some(known)) if id == known => {
            progress.say(format!(
                "node {id} at {addr} is already registered; finishing its setup"
            ));
            Ok(id)
        }
        (id, _) => bail!(
            "node at {addr} already has id {id}; `node add` is for nodes started without --id"
        ),
    }
}

async fn assign_id(client: &ClusterClient, addr: &str, id: NodeId) -> Result<NodeId> {
    let _: serde_json::Value = client
        .post_json(addr, "/admin/node/id", &AssignId { id })
        .await
        .with_context(|| format!("assigning id {id} to the node at {addr}"))?;
    Ok(id)
}

// --------------------------------------------------------------- remove

/// What `node remove` did.
#[derive(Debug, Default, Serialize)]
struct RemoveReport {
    node: NodeId,
    /// `(shard, new replica)` for every replica moved.
    moved: Vec<MovedReplica>,
    /// The learner promoted to metadata voter in its place, if any.
    meta_replacement: Option<NodeId>,
}

#[derive(Debug, Serialize)]
struct MovedReplica {
    shard: ShardId,
    /// The node holding the new replica; `None` when the node only had a
    /// non-voting replica, which was dropped.
    to: Option<NodeId>,
}

/// `raftctl node remove ID`.
pub async fn remove(client: &ClusterClient, id: NodeId, json: bool) -> Result<()> {
    let progress = Progress::new(json);
    let mut view = ClusterView::load(client).await?;
    let record = view
        .map
        .nodes
        .get(&id)
        .with_context(|| format!("node {id} is not registered in the shard map"))?;
    if record.state == NodeState::Removed && view.map.operation.is_none() {
        bail!("node {id} is already removed");
    }
    // Talk to the cluster through another node: this one is going away.
    let client = &entry_avoiding(client, &view, id)?;
    if let Err(e) = check_targets(&view, id) {
        abort(client, &view, id, &progress).await;
        return Err(e);
    }
    let op = begin(client, &view.map, id, &progress).await?;
    let report = drain(client, &mut view, id, op, &progress)
        .await
        .with_context(|| {
            format!(
                "removing node {id} stopped part-way; operation #{op} stays recorded: fix the \
                 cause, then run `raftctl node remove {id}` again to resume"
            )
        })?;
    refresh_leader_hints(client, &progress).await;
    finish(&report, json)
}

/// The steps of `node remove` after the operation is recorded.
async fn drain(
    client: &ClusterClient,
    view: &mut ClusterView,
    id: NodeId,
    op: u64,
    progress: &Progress,
) -> Result<RemoveReport> {
    if view.map.nodes.get(&id).map(|n| n.state) != Some(NodeState::Removed) {
        set_state(client, &view.map, id, NodeState::Draining).await?;
    }
    view.reload(client).await?;
    let mut report = RemoveReport {
        node: id,
        ..Default::default()
    };
    let shards = shards_on(view, id);
    for (done, shard) in shards.iter().enumerate() {
        let to = move_replica(client, view, *shard, id, progress).await?;
        report.moved.push(MovedReplica { shard: *shard, to });
        step(
            client,
            op,
            &format!(
                "moved {}/{} replicas (last: shard {shard})",
                done + 1,
                shards.len()
            ),
        )
        .await?;
        view.reload(client).await?;
    }
    report.meta_replacement = leave_meta_group(client, view, id, progress).await?;
    step(client, op, "left the metadata group").await?;
    set_state(client, &view.map, id, NodeState::Removed).await?;
    propose(client, &MetaCommand::EndOperation { id: op }).await?;
    Ok(report)
}

/// Checks, before anything changes, that every voting replica on `id`
/// has somewhere to go.
fn check_targets(view: &ClusterView, id: NodeId) -> Result<()> {
    let up: Vec<NodeId> = view.up_nodes().into_iter().filter(|n| *n != id).collect();
    let load = view.replica_load();
    let stuck: Vec<ShardId> = view
        .map
        .shards
        .values()
        .filter(|s| s.replicas.contains(&id) && choose_target(&s.replicas, &up, &load).is_none())
        .map(|s| s.descriptor.shard)
        .collect();
    if stuck.is_empty() {
        return Ok(());
    }
    bail!(
        "cannot remove node {id}: no reachable Up node is free to take the replicas of shards \
         {} (each already holds them); add a node first (`raftctl node add`)",
        id_list(&stuck)
    )
}

/// Clears a recorded removal of `id` that cannot proceed, and makes the
/// node a regular member again. Best effort.
async fn abort(client: &ClusterClient, view: &ClusterView, id: NodeId, progress: &Progress) {
    let Some(op) = &view.map.operation else {
        return;
    };
    if op.kind != (OperationKind::RemoveNode { node: id }) {
        return;
    }
    let state = if view.status(id).is_some() {
        NodeState::Up
    } else {
        NodeState::Down
    };
    let result = async {
        propose(client, &MetaCommand::EndOperation { id: op.id }).await?;
        set_state(client, &view.map, id, state).await
    };
    match result.await {
        Ok(()) => progress.warn(format!(
            "aborted operation #{} (removing node {id}); node {id} is {} again",
            op.id,
            state_name(state)
        )),
        Err(e) => progress.warn(format!("could not abort operation #{}: {e:#}", op.id)),
    }
}

fn finish(report: &RemoveReport, json: bool) -> Result<()> {
    if json {
        return print_json(report);
    }
    for m in &report.moved {
        match m.to {
            Some(to) => out(format!(
                "shard {}: replica moved from node {} to node {to}",
                m.shard, report.node
            )),
            None => out(format!(
                "shard {}: non-voting replica on node {} dropped",
                m.shard, report.node
            )),
        }
    }
    if let Some(r) = report.meta_replacement {
        out(format!(
            "metadata group: node {r} votes in place of node {}",
            report.node
        ));
    }
    out(format!("node {} removed", report.node));
    Ok(())
}

/// A client whose entry node is not `id` (when it was).
fn entry_avoiding(client: &ClusterClient, view: &ClusterView, id: NodeId) -> Result<ClusterClient> {
    if view.map.addr(id) != Some(client.entry.as_str()) {
        return Ok(client.clone());
    }
    let other = view
        .up_nodes()
        .into_iter()
        .find(|n| *n != id)
        .with_context(|| {
            format!("no other reachable Up node to work through while removing node {id}")
        })?;
    Ok(via(client, view.addr(other)?))
}

/// Records the operation, or resumes the one recorded for this node.
/// Answers its id.
async fn begin(
    client: &ClusterClient,
    map: &ShardMap,
    id: NodeId,
    progress: &Progress,
) -> Result<u64> {
    let wanted = OperationKind::RemoveNode { node: id };
    match &map.operation {
        Some(op) if op.kind == wanted => {
            progress.say(format!(
                "resuming operation #{} (removing node {id}; last step: {})",
                op.id, op.step
            ));
            Ok(op.id)
        }
        Some(op) => bail!(
            "another operation is in progress: #{} {} (last step: {}); let it finish first",
            op.id,
            describe_operation(&op.kind),
            op.step
        ),
        None => {
            let outcome = propose(client, &MetaCommand::BeginOperation { kind: wanted }).await?;
            let op = outcome
                .allocated
                .context("the metadata group allocated no operation id")?;
            progress.say(format!("removing node {id} (operation #{op})"));
            Ok(op)
        }
    }
}

async fn step(client: &ClusterClient, op: u64, note: &str) -> Result<()> {
    propose(
        client,
        &MetaCommand::OperationStep {
            id: op,
            step: note.to_string(),
        },
    )
    .await?;
    Ok(())
}

async fn set_state(
    client: &ClusterClient,
    map: &ShardMap,
    node: NodeId,
    state: NodeState,
) -> Result<()> {
    if map.nodes.get(&node).is_some_and(|n| n.state == state) {
        return Ok(());
    }
    propose(client, &MetaCommand::SetNodeState { node, state }).await?;
    Ok(())
}

/// Shards with a replica on `id`: voters in the map, plus any group the
/// node itself reports hosting (a leftover learner).
fn shards_on(view: &ClusterView, id: NodeId) -> Vec<ShardId> {
    let in_map = view
        .map
        .shards
        .values()
        .filter(|s| s.replicas.contains(&id))
        .map(|s| s.descriptor.shard);
    let hosted = view
        .status(id)
        .map(|s| s.groups.keys().copied().collect::<Vec<_>>())
        .unwrap_or_default();
    let hosted = hosted
        .into_iter()
        .filter(|g| *g != META_GROUP && view.map.shards.contains_key(g));
    in_map
        .chain(hosted)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Moves `shard`'s replica off `from`; answers the node that took over
/// (`None` when `from` did not vote and was only dropped).
async fn move_replica(
    client: &ClusterClient,
    view: &ClusterView,
    shard: ShardId,
    from: NodeId,
    progress: &Progress,
) -> Result<Option<NodeId>> {
    let record = view.shard(shard)?;
    let info = GroupInfo::fetch_led(client, shard, &view.group_addrs(shard)).await?;
    if !info.voters.contains(&from) {
        // Not (or no longer, after an interrupted run) voting: drop any
        // learner and bring the map up to date.
        remove_member(client, &info, from).await?;
        let replicas = replicas_after(&record.replicas, &info.voters);
        record_replicas(client, &view.map, shard, replicas).await?;
        drop_replica(client, view, shard, from, progress).await;
        let added = info.voters.iter().find(|v| !record.replicas.contains(v));
        return Ok(added.copied());
    }
    let to = pick_target(view, &info, &record.replicas, from)?;
    progress.say(format!(
        "shard {shard}: moving the replica on node {from} to node {to}"
    ));
    let to_addr = view.addr(to)?;
    create_replica(client, to_addr, &record.descriptor, None).await?;
    add_learner(client, &info, to, to_addr).await?;
    lead_elsewhere(client, &info, from, progress).await;
    let info = info.refetch(client).await?;
    let voters: BTreeSet<NodeId> = info
        .voters
        .iter()
        .copied()
        .filter(|v| *v != from)
        .chain([to])
        .collect();
    set_voters(client, &info, &voters).await?;
    let replicas = record
        .replicas
        .iter()
        .map(|r| if *r == from { to } else { *r })
        .collect::<Vec<_>>();
    record_replicas(client, &view.map, shard, replicas_after(&replicas, &voters)).await?;
    drop_replica(client, view, shard, from, progress).await;
    Ok(Some(to))
}

/// The new home of a replica: a member already added by an interrupted
/// earlier run, else the least loaded Up node not holding the shard.
fn pick_target(
    view: &ClusterView,
    info: &GroupInfo,
    replicas: &[NodeId],
    from: NodeId,
) -> Result<NodeId> {
    let up = view.up_nodes();
    let resumed = info
        .learners
        .iter()
        .copied()
        .find(|l| *l != from && up.contains(l));
    let current: BTreeSet<NodeId> = replicas
        .iter()
        .chain(&info.voters)
        .chain(&info.learners)
        .copied()
        .collect();
    let current: Vec<NodeId> = current.into_iter().collect();
    resumed
        .or_else(|| choose_target(&current, &up, &view.replica_load()))
        .with_context(|| {
            format!(
                "no Up node can take shard {}'s replica: it is on {} already; add a \
                 node (`raftctl node add`) first",
                info.group,
                id_list(&current)
            )
        })
}

/// Takes `id` out of the metadata group, promoting an Up learner in its
/// place when it votes. Answers the promoted node.
async fn leave_meta_group(
    client: &ClusterClient,
    view: &ClusterView,
    id: NodeId,
    progress: &Progress,
) -> Result<Option<NodeId>> {
    let info = GroupInfo::fetch_led(client, META_GROUP, &view.group_addrs(META_GROUP)).await?;
    // Hand over leadership while the group has its usual three voters: a
    // campaign needs the old leader's vote, since the other voters' leader
    // leases refuse theirs (so it fails with more than three voters).
    lead_elsewhere(client, &info, id, progress).await;
    let info = info.refetch(client).await?;
    let mut replacement = None;
    // Promote a learner only if the group would drop below its usual voter
    // count (an interrupted earlier run may have promoted one already).
    if info.voters.contains(&id) && info.voters.len() <= META_VOTERS {
        let up = view.up_nodes();
        replacement = info
            .learners
            .iter()
            .copied()
            .find(|l| *l != id && up.contains(l));
        let remaining = info.voters.len() - 1 + usize::from(replacement.is_some());
        if remaining == 0 {
            bail!(
                "node {id} is the only voter of the metadata group; add a node first \
                 (`raftctl node add`)"
            );
        }
        match replacement {
            Some(r) => {
                progress.say(format!(
                    "metadata group: promoting node {r} to voter in place of node {id}"
                ));
                let voters = info.voters.iter().copied().chain([r]).collect();
                set_voters(client, &info, &voters).await?;
            }
            None => progress.warn(format!(
                "no Up learner can replace node {id} as a metadata voter; the metadata \
                 group shrinks to {remaining} voters (add a node with `raftctl node add` \
                 to restore fault tolerance)"
            )),
        }
    }
    remove_member(client, &info.refetch(client).await?, id).await?;
    drop_replica(client, view, META_GROUP, id, progress).await;
    // The map must still be readable from the client's entry node.
    initialized_map(client).await?;
    Ok(replacement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::{GroupSummary, NodeRecord, NodeStatus, ShardRecord};
    use std::collections::BTreeMap;

    fn view(states: &[(NodeId, NodeState)], shards: &[(ShardId, Vec<NodeId>)]) -> ClusterView {
        let mut map = ShardMap::default();
        for (id, state) in states {
            map.nodes.insert(
                *id,
                NodeRecord {
                    id: *id,
                    addr: format!("n{id}:1"),
                    state: *state,
                },
            );
        }
        for (shard, replicas) in shards {
            let descriptor = ShardDescriptor {
                shard: *shard,
                start: *shard,
                end: shard + 1,
                epoch: 1,
            };
            map.shards.insert(
                *shard,
                ShardRecord {
                    descriptor,
                    replicas: replicas.clone(),
                    leader: None,
                },
            );
        }
        let statuses = states
            .iter()
            .map(|(id, _)| {
                (
                    *id,
                    Ok(NodeStatus {
                        node_id: *id,
                        addr: format!("n{id}:1"),
                        groups: BTreeMap::new(),
                        failed: Default::default(),
                    }),
                )
            })
            .collect();
        ClusterView { map, statuses }
    }

    fn info(voters: &[NodeId], learners: &[NodeId]) -> GroupInfo {
        GroupInfo {
            group: 1,
            leader: voters.first().copied(),
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            addrs: BTreeMap::new(),
        }
    }

    #[test]
    fn target_is_the_least_loaded_up_node_off_the_shard() {
        let up = NodeState::Up;
        let v = view(
            &[(1, up), (2, up), (3, up), (4, up), (5, NodeState::Draining)],
            &[(1, vec![1, 2, 3]), (2, vec![2, 3, 4]), (3, vec![3, 4, 1])],
        );
        // Node 4 holds two replicas but is the only Up node off shard 1.
        assert_eq!(
            pick_target(&v, &info(&[1, 2, 3], &[]), &[1, 2, 3], 1).unwrap(),
            4
        );
        // Node 5 is draining: it never receives replicas.
        assert_eq!(
            pick_target(&v, &info(&[2, 3, 4], &[]), &[2, 3, 4], 2).unwrap(),
            1
        );
    }

    #[test]
    fn target_resumes_a_learner_added_by_an_earlier_run() {
        let up = NodeState::Up;
        let v = view(
            &[(1, up), (2, up), (3, up), (4, up), (5, up)],
            &[(1, vec![1, 2, 3])],
        );
        assert_eq!(
            pick_target(&v, &info(&[1, 2, 3], &[5]), &[1, 2, 3], 1).unwrap(),
            5
        );
        assert_eq!(
            pick_target(&v, &info(&[1, 2, 3], &[]), &[1, 2, 3], 1).unwrap(),
            4
        );
    }

    #[test]
    fn no_target_when_every_up_node_holds_the_shard() {
        let up = NodeState::Up;
        let v = view(&[(1, up), (2, up), (3, up)], &[(1, vec![1, 2, 3])]);
        let err = pick_target(&v, &info(&[1, 2, 3], &[]), &[1, 2, 3], 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no Up node can take shard 1"), "{err}");
    }

    #[test]
    fn removal_is_refused_up_front_when_a_replica_has_nowhere_to_go() {
        let up = NodeState::Up;
        let full = view(&[(1, up), (2, up), (3, up)], &[(1, vec![1, 2, 3])]);
        let err = check_targets(&full, 1).unwrap_err().to_string();
        assert!(err.contains("shards 1"), "{err}");
        let draining = NodeState::Draining;
        let spare_draining = view(
            &[(1, up), (2, up), (3, up), (4, draining)],
            &[(1, vec![1, 2, 3])],
        );
        assert!(check_targets(&spare_draining, 1).is_err());
        let spare = view(&[(1, up), (2, up), (3, up), (4, up)], &[(1, vec![1, 2, 3])]);
        assert!(check_targets(&spare, 1).is_ok());
        assert!(check_targets(&full, 9).is_ok(), "a node without replicas");
    }

    #[test]
    fn shards_on_includes_leftover_learners() {
        let up = NodeState::Up;
        let mut v = view(
            &[(1, up), (2, up)],
            &[(1, vec![1]), (2, vec![2]), (3, vec![2])],
        );
        let summary = GroupSummary {
            descriptor: ShardDescriptor {
                shard: 3,
                start: 3,
                end: 4,
                epoch: 1,
            },
            seq: 0,
            term: 1,
            leader: Some(2),
            applied_index: 1,
        };
        if let Some(Ok(s)) = v.statuses.get_mut(&1) {
            s.groups.insert(3, summary.clone());
            s.groups.insert(META_GROUP, summary);
        }
        assert_eq!(shards_on(&v, 1), vec![1, 3]);
    }
}
