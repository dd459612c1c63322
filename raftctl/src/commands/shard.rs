//! `raftctl shard add-learner|promote|remove SHARD NODE`: change one
//! shard's replicas by hand.
//!
//! - `add-learner`: host the shard on NODE and add it as a learner at the
//!   leader, which answers once the learner has caught up.
//! - `promote`: make a learner a voter (joint consensus) and record the
//!   new voters in the map.
//! - `remove`: take NODE out of the group (voter or learner; never the
//!   last voter), record the voters, and delete its data there.
//!
//! Each checks the current membership first, so rerunning one is a no-op.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use checkraft_proto::{NodeId, NodeState, ShardId};
use serde::Serialize;

use super::cluster::{
    add_learner as join_as_learner, create_replica, drop_replica, fetch_led, id_list,
    lead_elsewhere, out, print_json, record_replicas, refetch, refresh_leader_hints, remove_member,
    set_voters, state_name, ClusterView, Progress,
};
use super::placement::replicas_after;
use crate::client::ClusterClient;

/// The shard's membership after a command (the `--json` output).
#[derive(Debug, Serialize)]
struct ShardMembers {
    shard: ShardId,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    leader: Option<NodeId>,
}

/// `raftctl shard add-learner SHARD NODE`.
pub async fn add_learner(
    client: &ClusterClient,
    shard: ShardId,
    node: NodeId,
    json: bool,
) -> Result<()> {
    let progress = Progress::new(json);
    let view = ClusterView::load(client).await?;
    let (record, addr) = (view.shard(shard)?, view.addr(node)?);
    require_up(&view, node)?;
    let info = fetch_led(client, shard, &view.group_addrs(shard)).await?;
    if info.has(node) {
        progress.say(format!("node {node} is already a member of shard {shard}"));
    } else {
        progress.say(format!(
            "shard {shard}: adding node {node} as a learner (waits until it caught up)"
        ));
        create_replica(client, addr, &record.descriptor, None).await?;
        join_as_learner(client, &info, node, addr).await?;
    }
    finish(client, &info, json).await
}

/// `raftctl shard promote SHARD NODE`.
pub async fn promote(
    client: &ClusterClient,
    shard: ShardId,
    node: NodeId,
    json: bool,
) -> Result<()> {
    let progress = Progress::new(json);
    let view = ClusterView::load(client).await?;
    let record = view.shard(shard)?;
    let info = fetch_led(client, shard, &view.group_addrs(shard)).await?;
    if !info.has(node) {
        bail!(
            "node {node} is not a learner of shard {shard}: run \
             `raftctl shard add-learner {shard} {node}` first"
        );
    }
    let voters: BTreeSet<NodeId> = info.voters.iter().copied().chain([node]).collect();
    progress.say(format!("shard {shard}: voters become {}", id_list(&voters)));
    set_voters(client, &info, &voters).await?;
    record_replicas(
        client,
        &view.map,
        shard,
        replicas_after(&record.replicas, &voters),
    )
    .await?;
    finish(client, &info, json).await
}

/// `raftctl shard remove SHARD NODE`.
pub async fn remove(
    client: &ClusterClient,
    shard: ShardId,
    node: NodeId,
    json: bool,
) -> Result<()> {
    let progress = Progress::new(json);
    let view = ClusterView::load(client).await?;
    let record = view.shard(shard)?;
    let info = fetch_led(client, shard, &view.group_addrs(shard)).await?;
    if info.voters.contains(&node) && info.voters.len() == 1 {
        bail!("refusing to remove node {node} from shard {shard}: it is the shard's last voter");
    }
    if info.has(node) {
        progress.say(format!("shard {shard}: removing node {node}"));
        lead_elsewhere(client, &info, node, &progress).await;
        remove_member(client, &refetch(client, &info).await?, node).await?;
    } else {
        progress.say(format!(
            "node {node} is not a member of shard {shard}; cleaning up"
        ));
    }
    let voters: BTreeSet<NodeId> = info.voters.iter().copied().filter(|v| *v != node).collect();
    record_replicas(
        client,
        &view.map,
        shard,
        replicas_after(&record.replicas, &voters),
    )
    .await?;
    drop_replica(client, &view, shard, node, &progress).await;
    refresh_leader_hints(client, &progress).await;
    finish(client, &info, json).await
}

/// Refuses nodes that may not receive replicas.
fn require_up(view: &ClusterView, node: NodeId) -> Result<()> {
    match view.map.nodes.get(&node).map(|n| n.state) {
        Some(NodeState::Up) => Ok(()),
        Some(state) => bail!(
            "node {node} is {}: it may not receive new replicas",
            state_name(state)
        ),
        None => bail!("node {node} is not registered in the shard map"),
    }
}

/// Prints the shard's membership as it is now.
async fn finish(
    client: &ClusterClient,
    before: &checkraft_client::Members,
    json: bool,
) -> Result<()> {
    let info = refetch(client, before).await?;
    let members = ShardMembers {
        shard: info.group,
        voters: info.voters,
        learners: info.learners,
        leader: info.leader,
    };
    if json {
        return print_json(&members);
    }
    let leader = members
        .leader
        .map(|l| l.to_string())
        .unwrap_or_else(|| "none".into());
    out(format!(
        "shard {}: voters {}; learners {}; leader {leader}",
        members.shard,
        id_list(&members.voters),
        id_list(&members.learners)
    ));
    Ok(())
}
