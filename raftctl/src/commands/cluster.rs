//! Shared I/O helpers of the cluster-management commands: a snapshot of
//! the cluster ([`ClusterView`]: the shard map plus every node's
//! `/status`), one raft group's membership (`checkraft_client::Members`), the group
//! operations every command composes (create a replica, add a learner,
//! change voters, remove a member, move leadership, delete a replica),
//! bounded waiting, leader hints, and output (progress lines, tables,
//! JSON).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use checkraft_client::{Budget, Members};
use checkraft_proto::{
    CreateGroup, GroupCreated, GroupId, MetaCommand, MetaOutcome, NodeId, NodeState, NodeStatus,
    OperationKind, ShardDescriptor, ShardId, ShardMap, ShardRecord,
};
use serde::Serialize;

use crate::client::ClusterClient;

/// Pause between two polls of a [`wait_until`].
const POLL: Duration = Duration::from_millis(200);
/// How long one node gets to answer `/status` before it counts as down.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a group may take to elect a leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a leadership transfer may take, per attempt.
const ELECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Campaign attempts of a leadership transfer.
const ELECT_ATTEMPTS: usize = 3;
/// Voters of the metadata group; further nodes host learners.
pub const META_VOTERS: usize = 3;
/// How long the entry node's map copy may take to catch up with a change.
const MAP_CATCH_UP: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- output

/// Progress lines on stderr, silenced for `--json`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    /// Progress that prints unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self { quiet }
    }

    /// Prints one progress line.
    pub fn say(&self, msg: impl Display) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// Prints a warning (always: warnings matter with `--json` too).
    pub fn warn(&self, msg: impl Display) {
        eprintln!("warning: {msg}");
    }
}

/// Writes one line to stdout. When stdout is closed (`raftctl status |
/// head`), the line is dropped instead of panicking.
pub fn out(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    out(serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header with left-aligned, padded columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out(padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `[1, 2, 3]` as `1,2,3`; an empty list as `-`.
pub fn id_list<'a>(ids: impl IntoIterator<Item = &'a NodeId>) -> String {
    let list: Vec<String> = ids.into_iter().map(|i| i.to_string()).collect();
    if list.is_empty() {
        return "-".into();
    }
    list.join(",")
}

/// A node state as the map spells it (`up`, `draining`, ...).
pub fn state_name(state: NodeState) -> String {
    let value = serde_json::to_value(state).ok();
    value
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// An operation kind in words.
pub fn describe_operation(kind: &OperationKind) -> String {
    match kind {
        OperationKind::RemoveNode { node } => format!("remove node {node}"),
        OperationKind::MoveReplica { shard, from, to } => {
            format!("move shard {shard}'s replica from node {from} to node {to}")
        }
        OperationKind::Restore { backup_created_ms } => {
            format!("restore the backup made at {backup_created_ms} ms since the epoch")
        }
        OperationKind::Split { shard, at, child } => {
            format!("split shard {shard} at box {at} (child {child})")
        }
        OperationKind::Merge { left, right, .. } => {
            format!("merge shard {right} into shard {left}")
        }
        OperationKind::RepairNode { node } => {
            format!("rebuild node {node}'s replicas on live nodes")
        }
    }
}

// --------------------------------------------------------------- waiting

/// Polls `probe` until it yields `Some`, for at most `timeout`. Errors of
/// the probe count as "not yet"; the last one is reported on timeout.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            let why = last_error
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!(
                "timed out after {}s waiting for {what}{why}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

// ------------------------------------------------------- nodes and maps

/// A copy of `client` entering the cluster at `addr`.
pub fn via(client: &ClusterClient, addr: &str) -> ClusterClient {
    let mut c = client.clone();
    c.entry = addr.to_string();
    c
}

/// `/status` of `addr`, given at most [`STATUS_TIMEOUT`].
pub async fn node_status(client: &ClusterClient, addr: &str) -> Result<NodeStatus> {
    match tokio::time::timeout(STATUS_TIMEOUT, client.node_status(addr)).await {
        Ok(result) => result,
        Err(_) => bail!(
            "{addr}/status did not answer within {}s",
            STATUS_TIMEOUT.as_secs()
        ),
    }
}

/// `/status` of several nodes at once; an unreachable node maps to its
/// error message.
pub async fn node_statuses(
    client: &ClusterClient,
    nodes: impl IntoIterator<Item = (NodeId, String)>,
) -> BTreeMap<NodeId, Result<NodeStatus, String>> {
    let calls = nodes.into_iter().map(|(id, addr)| async move {
        (
            id,
            node_status(client, &addr)
                .await
                .map_err(|e| format!("{e:#}")),
        )
    });
    futures::future::join_all(calls).await.into_iter().collect()
}

/// The shard map from the entry node, which must be initialized.
pub async fn initialized_map(client: &ClusterClient) -> Result<ShardMap> {
    let map = client.map().await.with_context(|| {
        format!(
            "reading the shard map from {} (is the node running, and is --cluster one of \
             its nodes?)",
            client.entry
        )
    })?;
    if !map.initialized() {
        bail!(
            "the cluster at {} is not initialized yet: run `raftctl init` first",
            client.entry
        );
    }
    Ok(map)
}

/// The node leading `group` according to the nodes' own `statuses`: one
/// that reports itself as leader (the highest term wins if a deposed
/// leader has not noticed yet).
pub fn reported_leader(
    statuses: &BTreeMap<NodeId, Result<NodeStatus, String>>,
    group: GroupId,
) -> Option<NodeId> {
    statuses
        .values()
        .filter_map(|s| s.as_ref().ok())
        .filter_map(|s| s.groups.get(&group).map(|g| (s.node_id, g)))
        .filter(|(id, g)| g.leader == Some(*id))
        .max_by_key(|(_, g)| g.term)
        .map(|(id, _)| id)
}

/// The shard map plus the `/status` of every registered, non-removed node.
pub struct ClusterView {
    /// The shard map, from the entry node.
    pub map: ShardMap,
    /// `/status` of every node not marked removed; `Err` holds why it did
    /// not answer.
    pub statuses: BTreeMap<NodeId, Result<NodeStatus, String>>,
}

impl ClusterView {
    /// Reads the map from the entry node and the status of every node.
    pub async fn load(client: &ClusterClient) -> Result<Self> {
        let map = initialized_map(client).await?;
        let mut view = Self {
            map,
            statuses: BTreeMap::new(),
        };
        view.refresh_statuses(client).await;
        Ok(view)
    }

    /// Re-reads every node's status (the map stays as it was).
    pub async fn refresh_statuses(&mut self, client: &ClusterClient) {
        let nodes = self
            .map
            .nodes
            .values()
            .filter(|n| n.state != NodeState::Removed)
            .map(|n| (n.id, n.addr.clone()));
        self.statuses = node_statuses(client, nodes).await;
    }

    /// The status of node `id`, when it answered.
    pub fn status(&self, id: NodeId) -> Option<&NodeStatus> {
        self.statuses.get(&id).and_then(|s| s.as_ref().ok())
    }

    /// The address of node `id`.
    pub fn addr(&self, id: NodeId) -> Result<&str> {
        self.map
            .addr(id)
            .ok_or_else(|| anyhow!("node {id} is not registered in the shard map"))
    }

    /// The map's record of shard `id`.
    pub fn shard(&self, id: ShardId) -> Result<&ShardRecord> {
        self.map.shards.get(&id).ok_or_else(|| {
            let known = id_list(self.map.shards.keys());
            anyhow!("shard {id} is not in the shard map (shards: {known})")
        })
    }

    /// The node currently leading `group`, per [`reported_leader`].
    pub fn leader(&self, group: GroupId) -> Option<NodeId> {
        reported_leader(&self.statuses, group)
    }

    /// The confirmed leader of every shard in the map that has one.
    pub fn leaders(&self) -> BTreeMap<ShardId, NodeId> {
        self.map
            .shards
            .keys()
            .filter_map(|s| self.leader(*s).map(|l| (*s, l)))
            .collect()
    }

    /// Nodes in state Up that answered `/status`.
    pub fn up_nodes(&self) -> Vec<NodeId> {
        self.map
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Up && self.status(n.id).is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Nodes to reach `group` at, with their addresses: its leader first,
    /// then its replicas in the map, then any other node hosting it.
    pub fn group_nodes(&self, group: GroupId) -> Vec<(NodeId, String)> {
        let hosts = self
            .statuses
            .iter()
            .filter(|(_, s)| s.as_ref().is_ok_and(|s| s.groups.contains_key(&group)));
        let replicas = self
            .map
            .shards
            .get(&group)
            .map(|s| s.replicas.clone())
            .unwrap_or_default();
        let ids = self
            .leader(group)
            .into_iter()
            .chain(replicas)
            .chain(hosts.map(|(id, _)| *id));
        let mut nodes: Vec<(NodeId, String)> = Vec::new();
        for id in ids {
            if let Some(addr) = self.map.addr(id) {
                if !nodes.iter().any(|(n, _)| *n == id) {
                    nodes.push((id, addr.to_string()));
                }
            }
        }
        nodes
    }

    /// The addresses of [`ClusterView::group_nodes`].
    pub fn group_addrs(&self, group: GroupId) -> Vec<String> {
        self.group_nodes(group)
            .into_iter()
            .map(|(_, addr)| addr)
            .collect()
    }
}

// ------------------------------------------------------------ one group

/// The membership of `group` as seen by the first of `probes` that
/// answers, preferring the leader's own view (asked for directly when a
/// follower names it).
pub async fn fetch_members(
    client: &ClusterClient,
    group: GroupId,
    probes: &[String],
) -> Result<Members> {
    client
        .api()
        .members(group, probes, None)
        .await
        .with_context(|| {
            format!(
                "no replica of group {group} answered /admin/groups/{group}/metrics (tried {})",
                probes.join(", ")
            )
        })
}

/// Like [`fetch_members`], waiting (bounded) until a leader is known.
pub async fn fetch_led(
    client: &ClusterClient,
    group: GroupId,
    probes: &[String],
) -> Result<Members> {
    wait_until(
        &format!("group {group} to have a leader"),
        LEADER_TIMEOUT,
        || async {
            let info = fetch_members(client, group, probes).await?;
            Ok(info.leader.is_some().then_some(info))
        },
    )
    .await
}

/// The membership of `info`'s group right now, from the same members
/// (after a change).
pub async fn refetch(client: &ClusterClient, info: &Members) -> Result<Members> {
    fetch_led(client, info.group, &info.leader_first()).await
}

// ------------------------------------------------------ group operations

/// How membership changes retry over a group's members (leader first): 10
/// passes, 250 ms apart.
const AT_LEADER: Budget = Budget {
    rounds: 10,
    forwards: 0,
    pause: Duration::from_millis(250),
    total: None,
    attempt: None,
};

/// `POST /admin/groups` on `addr`: host `descriptor` there, initializing
/// the raft group with `members` when given.
pub async fn create_replica(
    client: &ClusterClient,
    addr: &str,
    descriptor: &ShardDescriptor,
    members: Option<&BTreeMap<NodeId, String>>,
) -> Result<GroupCreated> {
    let body = CreateGroup {
        descriptor: descriptor.clone(),
        members: members.cloned().unwrap_or_default(),
        initialize: members.is_some(),
    };
    client
        .api()
        .create_group(addr, &body, None)
        .await
        .with_context(|| format!("creating group {} on {addr}", descriptor.shard))
}

/// Makes `node` (reachable at `addr`) a learner of the group at its leader
/// and waits until it caught up. A no-op for an existing member.
pub async fn add_learner(
    client: &ClusterClient,
    info: &Members,
    node: NodeId,
    addr: &str,
) -> Result<()> {
    client
        .api()
        .add_learner(info, node, addr, &AT_LEADER)
        .await
        .with_context(|| format!("adding node {node} as a learner of group {}", info.group))?;
    Ok(())
}

/// Sets the group's voters to exactly `voters` (joint consensus, at the
/// leader). A no-op when they already are.
pub async fn set_voters(
    client: &ClusterClient,
    info: &Members,
    voters: &BTreeSet<NodeId>,
) -> Result<()> {
    client
        .api()
        .change_membership(info, voters, &AT_LEADER)
        .await
        .with_context(|| {
            format!(
                "changing the voters of group {} to {}",
                info.group,
                id_list(voters)
            )
        })?;
    Ok(())
}

/// Removes `node` (voter or learner) from the group, at the leader. A
/// no-op when it is not a member.
pub async fn remove_member(client: &ClusterClient, info: &Members, node: NodeId) -> Result<()> {
    client
        .api()
        .remove_member(info, node, &AT_LEADER)
        .await
        .with_context(|| format!("removing node {node} from group {}", info.group))?;
    Ok(())
}

/// `DELETE /admin/groups/{group}` on `addr`: drop that replica's data.
pub async fn delete_replica(client: &ClusterClient, addr: &str, group: GroupId) -> Result<()> {
    client
        .delete(addr, &format!("/admin/groups/{group}"))
        .await
        .with_context(|| format!("deleting group {group}'s replica on {addr}"))
}

/// Deletes `node`'s replica of `group` once it is out of the membership.
/// Best effort (the node may be down): a failure is a warning.
pub async fn drop_replica(
    client: &ClusterClient,
    view: &ClusterView,
    group: GroupId,
    node: NodeId,
    progress: &Progress,
) {
    let Ok(addr) = view.addr(node) else { return };
    let status = node_status(client, addr).await;
    if status.is_ok_and(|s| !s.groups.contains_key(&group)) {
        return; // Nothing left there.
    }
    if let Err(e) = delete_replica(client, addr, group).await {
        progress.warn(format!(
            "{e:#} (node {node} is out of the group; its data there is unused)"
        ));
    }
}

/// True when the node at `addr` reports that it leads `group`.
async fn leads(client: &ClusterClient, addr: &str, group: GroupId) -> Result<bool> {
    let status = node_status(client, addr).await?;
    Ok(status
        .groups
        .get(&group)
        .is_some_and(|g| g.leader == Some(status.node_id)))
}

/// Makes node `to` (at `addr`) the leader of `group`: it campaigns, and
/// this waits (bounded, a few attempts) until it reports leading.
pub async fn move_leader(
    client: &ClusterClient,
    group: GroupId,
    to: NodeId,
    addr: &str,
) -> Result<()> {
    let path = format!("/admin/groups/{group}/elect");
    for _ in 0..ELECT_ATTEMPTS {
        if leads(client, addr, group).await.unwrap_or(false) {
            return Ok(());
        }
        let _: serde_json::Value = client
            .post_json(addr, &path, &serde_json::json!({}))
            .await
            .with_context(|| format!("asking node {to} to campaign for group {group}"))?;
        let waited = wait_until("the new leader", ELECT_TIMEOUT, || async {
            Ok(leads(client, addr, group).await?.then_some(()))
        })
        .await;
        if waited.is_ok() {
            return Ok(());
        }
    }
    bail!("node {to} did not become leader of group {group} after {ELECT_ATTEMPTS} campaigns")
}

/// Waits until one of `members` (id, address) reports leading `group`;
/// answers its id.
pub async fn wait_for_leader(
    client: &ClusterClient,
    group: GroupId,
    members: &[(NodeId, String)],
) -> Result<NodeId> {
    wait_until(
        &format!("group {group} to elect a leader"),
        LEADER_TIMEOUT,
        || async {
            let statuses = node_statuses(client, members.iter().cloned()).await;
            Ok(reported_leader(&statuses, group))
        },
    )
    .await
}

/// If `node` leads the group, hands leadership to another voter first, so
/// that removing `node` does not stall writes for an election timeout.
/// Best effort: a failure only costs that election.
pub async fn lead_elsewhere(
    client: &ClusterClient,
    info: &Members,
    node: NodeId,
    progress: &Progress,
) {
    if info.leader != Some(node) {
        return;
    }
    let Some((to, addr)) = info
        .voters
        .iter()
        .filter(|v| **v != node)
        .find_map(|v| info.addrs.get(v).map(|a| (*v, a)))
    else {
        return;
    };
    progress.say(format!(
        "  moving leadership of group {} from node {node} to node {to}",
        info.group
    ));
    if let Err(e) = move_leader(client, info.group, to, addr).await {
        progress.warn(format!(
            "{e:#}; continuing (the group will elect a new leader by itself)"
        ));
    }
}

// ---------------------------------------------------------- map updates

/// Proposes a metadata command at the meta leader, then waits (bounded,
/// best effort) until the entry node's copy of the map includes it, so
/// that the next map read sees the change.
pub async fn propose(client: &ClusterClient, command: &MetaCommand) -> Result<MetaOutcome> {
    let outcome = client.propose_meta(command).await?;
    let since = outcome.version.saturating_sub(1);
    if let Err(e) = client.wait_map(since, MAP_CATCH_UP).await {
        tracing::debug!(error = %e, "the entry node's map did not catch up");
    }
    Ok(outcome)
}

/// Records in the map the leaders the nodes report, where the hints are
/// stale. Best effort (hints are only hints): failures are warnings.
pub async fn refresh_leader_hints(client: &ClusterClient, progress: &Progress) {
    let result = async {
        let view = ClusterView::load(client).await?;
        let hints: Vec<(ShardId, NodeId)> = view
            .leaders()
            .into_iter()
            .filter(|(shard, leader)| {
                view.map
                    .shards
                    .get(shard)
                    .is_some_and(|s| s.leader != Some(*leader))
            })
            .collect();
        if !hints.is_empty() {
            propose(client, &MetaCommand::LeaderHints { hints }).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        progress.warn(format!(
            "could not update the leader hints in the map: {e:#}"
        ));
    }
}

/// Records `replicas` as the shard's voters in the map, unless it already
/// says so.
pub async fn record_replicas(
    client: &ClusterClient,
    map: &ShardMap,
    shard: ShardId,
    replicas: Vec<NodeId>,
) -> Result<()> {
    if map
        .shards
        .get(&shard)
        .is_some_and(|s| s.replicas == replicas)
    {
        return Ok(());
    }
    propose(client, &MetaCommand::SetReplicas { shard, replicas })
        .await
        .with_context(|| format!("recording shard {shard}'s new replicas in the map"))?;
    Ok(())
}
