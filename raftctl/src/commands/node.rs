//! `raftctl node add|remove|handover`.
//!
//! `add` registers a running node that has no id yet: the metadata group
//! allocates one, the node is told its id, and it joins the metadata group
//! as a learner (so it can serve the map).
//!
//! `remove` records a `RemoveNode` operation and watches the metadata
//! leader run it (`checkraft_node::control`): the node is marked
//! draining; every replica it holds moves to another Up node (a learner
//! first, then one joint-consensus change swapping it in, so writes keep
//! flowing); its metadata vote goes to a learner; it is marked removed.
//! The metadata group refuses a removal that would leave a shard without
//! a free node to move to, and an unknown or removed node.

use anyhow::{bail, Context, Result};
use checkraft_proto::{
    AssignId, Handover, MetaCommand, NodeId, NodeState, OperationKind, ShardDescriptor, ShardMap,
    META_GROUP,
};

use super::cluster::{
    add_learner, create_replica, fetch_led, initialized_map, node_status, out, print_json, propose,
    via, ClusterView, Progress,
};
use super::intent::run_operation;
use super::placement::check_addr;
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
    let meta = fetch_led(client, META_GROUP, &view.group_addrs(META_GROUP)).await?;
    if meta.has(id) {
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

/// `raftctl node remove ID`: records the removal and watches the
/// metadata leader drain the node (its replicas move to other Up nodes,
/// it leaves the metadata group, it is marked removed). Rerun after an
/// interruption, it keeps watching the same operation.
pub async fn remove(client: &ClusterClient, id: NodeId, json: bool) -> Result<()> {
    let progress = Progress::new(json);
    let map = initialized_map(client).await?;
    let record = map
        .nodes
        .get(&id)
        .with_context(|| format!("node {id} is not registered in the shard map"))?;
    if record.state == NodeState::Removed {
        bail!("node {id} is already removed");
    }
    // Talk to the cluster through another node: this one is going away.
    let client = &entry_avoiding(client, &map, id)?;
    let kind = OperationKind::RemoveNode { node: id };
    let finished = run_operation(client, kind, &progress)
        .await
        .with_context(|| format!("removing node {id}"))?;
    if json {
        return print_json(&finished);
    }
    out(&finished.outcome);
    Ok(())
}

/// A client whose entry node is not `id` (when it was).
fn entry_avoiding(client: &ClusterClient, map: &ShardMap, id: NodeId) -> Result<ClusterClient> {
    if map.addr(id) != Some(client.entry.as_str()) {
        return Ok(client.clone());
    }
    let other = map
        .nodes
        .values()
        .find(|n| n.id != id && n.state == NodeState::Up)
        .with_context(|| format!("no other Up node to work through while removing node {id}"))?;
    Ok(via(client, &other.addr))
}
