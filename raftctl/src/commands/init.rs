//! `raftctl init`: bootstrap a new cluster.
//!
//! 1. Parse and check `--nodes` and the layout; every node must answer
//!    `/status`, carry the given id (a node started without `--id` gets it
//!    assigned), and no node may hold an initialized map.
//! 2. Create the metadata group (group 0): voters are the first three
//!    nodes, the rest join as learners.
//! 3. Create every shard group on its replicas, initialized from its
//!    intended leader, and wait until each has a leader.
//! 4. Record the cluster in the metadata group (`MetaCommand::Init`). This
//!    is the commit point: it comes after the groups exist, so an
//!    interrupted `init` can simply be run again (creating a group is
//!    idempotent), and the map never names a group that does not exist.
//! 5. Move each shard's leadership to its intended leader (leaders are
//!    spread round-robin) and record the leaders as hints in the map.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use checkraft_proto::{
    AssignId, Grid, MetaCommand, NodeId, NodeRecord, NodeState, ShardDescriptor, ShardId, ShardMap,
    ShardRecord, META_GROUP,
};
use futures::StreamExt;
use serde::Serialize;

use super::cluster::{
    add_learner, create_replica, fetch_led, move_leader, node_statuses, out, print_json,
    print_table, refresh_leader_hints, reported_leader, via, wait_for_leader, wait_until, Progress,
    LEADER_TIMEOUT, META_VOTERS,
};
use super::placement::{initial_shards, parse_nodes, validate_layout, NodeSpec};
use crate::cli::InitArgs;
use crate::client::ClusterClient;

/// Shard groups created (or leaders moved) concurrently.
const PARALLEL: usize = 8;

/// What `init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The map version after initialization.
    pub version: u64,
    /// The grid.
    pub grid: Grid,
    /// The founding nodes.
    pub nodes: Vec<NodeRecord>,
    /// Voters of the metadata group.
    pub meta_voters: Vec<NodeId>,
    /// Learners of the metadata group.
    pub meta_learners: Vec<NodeId>,
    /// The shards created.
    pub shards: Vec<InitShard>,
    /// How many shards each node leads.
    pub leaders_per_node: BTreeMap<NodeId, usize>,
}

/// One shard in an [`InitReport`].
#[derive(Debug, Clone, Serialize)]
pub struct InitShard {
    /// The shard id.
    pub shard: ShardId,
    /// First box (inclusive).
    pub start: u64,
    /// One past the last box.
    pub end: u64,
    /// Its replicas, intended leader first.
    pub replicas: Vec<NodeId>,
    /// Its leader when `init` finished.
    pub leader: Option<NodeId>,
}

/// `raftctl init`: bootstraps and prints the report.
pub async fn run(client: &ClusterClient, args: &InitArgs, json: bool) -> Result<()> {
    let report = bootstrap(client, args, &Progress::new(json)).await?;
    if json {
        return print_json(&report);
    }
    print_summary(&report);
    Ok(())
}

/// Bootstraps a cluster (see the module docs), with progress on stderr.
pub async fn init_cluster(client: &ClusterClient, args: &InitArgs) -> Result<InitReport> {
    bootstrap(client, args, &Progress::new(false)).await
}

/// The checked arguments: who, what grid, which shards where.
struct Plan {
    nodes: Vec<NodeSpec>,
    grid: Grid,
    shards: Vec<ShardRecord>,
}

impl Plan {
    fn new(args: &InitArgs) -> Result<Self> {
        let nodes = parse_nodes(&args.nodes)?;
        validate_layout(
            args.boxes,
            args.shards,
            args.chunk_size,
            args.replicas,
            nodes.len(),
        )?;
        if args.chunk_size == 0 {
            bail!("--chunk-size must be at least 1");
        }
        let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
        Ok(Self {
            grid: Grid {
                boxes: args.boxes,
                chunk_size: args.chunk_size,
            },
            shards: initial_shards(
                args.boxes,
                args.shards,
                args.chunk_size,
                args.replicas,
                &ids,
            ),
            nodes,
        })
    }

    fn addr(&self, id: NodeId) -> &str {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr.as_str())
            .expect("planned replicas are given nodes")
    }

    fn members(&self, ids: &[NodeId]) -> BTreeMap<NodeId, String> {
        ids.iter()
            .map(|id| (*id, self.addr(*id).to_string()))
            .collect()
    }

    fn pairs(&self) -> Vec<(NodeId, String)> {
        self.nodes.iter().map(|n| (n.id, n.addr.clone())).collect()
    }
}

async fn bootstrap(
    client: &ClusterClient,
    args: &InitArgs,
    progress: &Progress,
) -> Result<InitReport> {
    let plan = Plan::new(args)?;
    check_nodes(client, &plan.nodes, progress).await?;
    progress.say(format!(
        "initializing {} boxes in {} shards x {} replicas over {} nodes",
        plan.grid.boxes,
        plan.shards.len(),
        args.replicas,
        plan.nodes.len()
    ));
    let meta_addr = create_meta_group(client, &plan.nodes, progress).await?;
    create_shards(client, &plan, progress).await?;
    let leaders = wait_for_shard_leaders(client, &plan).await?;
    let meta_client = via(client, &meta_addr);
    let version = record_cluster(&meta_client, &plan).await?;
    progress.say(format!(
        "recorded the cluster in the metadata group (map version {version})"
    ));
    place_leaders(client, &plan, &leaders, progress).await;
    refresh_leader_hints(&meta_client, progress).await;
    report(&meta_client, &plan).await
}

/// Every node answers with the right id (assigning it where missing), and
/// none holds an initialized map. Nothing changes unless all checks pass.
async fn check_nodes(
    client: &ClusterClient,
    nodes: &[NodeSpec],
    progress: &Progress,
) -> Result<()> {
    let statuses = node_statuses(client, nodes.iter().map(|n| (n.id, n.addr.clone()))).await;
    let mut unassigned = Vec::new();
    for n in nodes {
        let status = match &statuses[&n.id] {
            Ok(status) => status,
            Err(e) => bail!(
                "node {} at {} does not answer: {e}\nstart it (or fix --nodes) and run init again",
                n.id,
                n.addr
            ),
        };
        match status.node_id {
            0 => unassigned.push(n),
            id if id == n.id => {}
            other => bail!(
                "the node at {} has id {other}, but --nodes gives it id {}: fix --nodes, \
                 or start that node with a fresh --data-dir",
                n.addr,
                n.id
            ),
        }
        if status.addr != n.addr {
            progress.warn(format!(
                "node {} advertises {} but --nodes says {}; peers will use {}",
                n.id, status.addr, n.addr, n.addr
            ));
        }
    }
    refuse_if_initialized(client, nodes).await?;
    for n in unassigned {
        progress.say(format!("assigning id {} to the node at {}", n.id, n.addr));
        let body = AssignId { id: n.id };
        let _: serde_json::Value = client.post_json(&n.addr, "/admin/node/id", &body).await?;
    }
    Ok(())
}

/// Refuses when any node's metadata replica holds an initialized map.
async fn refuse_if_initialized(client: &ClusterClient, nodes: &[NodeSpec]) -> Result<()> {
    let maps = futures::future::join_all(
        nodes
            .iter()
            .map(|n| client.get_json::<ShardMap>(&n.addr, "/meta/map")),
    )
    .await;
    if let Some(map) = maps.into_iter().flatten().find(ShardMap::initialized) {
        bail!(
            "cluster is already initialized (map version {}); refusing to initialize it again",
            map.version
        );
    }
    Ok(())
}

/// Creates group 0 on every node (voters: the first three, initialized
/// from the first; the rest become learners) and waits until its leader
/// serves the map. Answers the leader's address.
async fn create_meta_group(
    client: &ClusterClient,
    nodes: &[NodeSpec],
    progress: &Progress,
) -> Result<String> {
    let voters: Vec<(NodeId, String)> = nodes
        .iter()
        .take(META_VOTERS)
        .map(|n| (n.id, n.addr.clone()))
        .collect();
    let voter_ids: Vec<NodeId> = voters.iter().map(|(id, _)| *id).collect();
    progress.say(format!(
        "creating the metadata group (voters {voter_ids:?})"
    ));
    let meta = ShardDescriptor::meta();
    for n in &nodes[1..] {
        create_replica(client, &n.addr, &meta, None).await?;
    }
    let members: BTreeMap<NodeId, String> = voters.iter().cloned().collect();
    create_replica(client, &nodes[0].addr, &meta, Some(&members)).await?;
    let leader = wait_for_leader(client, META_GROUP, &voters).await?;
    let leader_addr = members[&leader].clone();
    wait_until(
        "the metadata leader to serve /meta/map",
        LEADER_TIMEOUT,
        || async {
            Ok(client
                .get_json::<ShardMap>(&leader_addr, "/meta/map")
                .await
                .ok()
                .map(|_| ()))
        },
    )
    .await?;
    let addrs: Vec<String> = voters.iter().map(|(_, a)| a.clone()).collect();
    let info = fetch_led(client, META_GROUP, &addrs).await?;
    for n in nodes.iter().skip(META_VOTERS) {
        progress.say(format!(
            "  node {} joins the metadata group as a learner",
            n.id
        ));
        add_learner(client, &info, n.id, &n.addr).await?;
    }
    Ok(leader_addr)
}

/// Creates every shard group on its replicas, initialized from the
/// intended leader (the first replica).
async fn create_shards(client: &ClusterClient, plan: &Plan, progress: &Progress) -> Result<()> {
    progress.say(format!("creating {} shard groups", plan.shards.len()));
    let mut created = futures::stream::iter(&plan.shards)
        .map(|s| create_shard(client, plan, s))
        .buffer_unordered(PARALLEL);
    while let Some(result) = created.next().await {
        result?;
    }
    Ok(())
}

async fn create_shard(client: &ClusterClient, plan: &Plan, shard: &ShardRecord) -> Result<()> {
    let (first, others) = shard
        .replicas
        .split_first()
        .expect("layouts have at least one replica");
    for other in others {
        create_replica(client, plan.addr(*other), &shard.descriptor, None).await?;
    }
    let members = plan.members(&shard.replicas);
    create_replica(client, plan.addr(*first), &shard.descriptor, Some(&members)).await?;
    Ok(())
}

/// Waits (bounded) until every shard reports a leader; answers them.
async fn wait_for_shard_leaders(
    client: &ClusterClient,
    plan: &Plan,
) -> Result<BTreeMap<ShardId, NodeId>> {
    wait_until("every shard to elect a leader", LEADER_TIMEOUT, || async {
        let leaders = shard_leaders(client, plan).await;
        let missing: Vec<ShardId> = plan
            .shards
            .iter()
            .map(|s| s.descriptor.shard)
            .filter(|s| !leaders.contains_key(s))
            .collect();
        if missing.is_empty() {
            Ok(Some(leaders))
        } else {
            bail!("shards {missing:?} have no leader yet")
        }
    })
    .await
}

/// The leader each shard's replicas report, for the shards that have one.
async fn shard_leaders(client: &ClusterClient, plan: &Plan) -> BTreeMap<ShardId, NodeId> {
    let statuses = node_statuses(client, plan.pairs()).await;
    plan.shards
        .iter()
        .filter_map(|s| {
            reported_leader(&statuses, s.descriptor.shard).map(|l| (s.descriptor.shard, l))
        })
        .collect()
}

/// Proposes `Init`; answers the map version.
async fn record_cluster(client: &ClusterClient, plan: &Plan) -> Result<u64> {
    let nodes = plan
        .nodes
        .iter()
        .map(|n| NodeRecord {
            id: n.id,
            addr: n.addr.clone(),
            state: NodeState::Up,
        })
        .collect();
    let init = MetaCommand::Init {
        grid: plan.grid,
        nodes,
        shards: plan.shards.clone(),
    };
    match client.propose_meta(&init).await {
        Ok(outcome) => Ok(outcome.version),
        Err(e) if format!("{e:#}").contains("already initialized") => {
            let version = client
                .map()
                .await
                .map(|m| m.version.to_string())
                .unwrap_or_else(|_| "unknown".into());
            bail!(
                "cluster is already initialized (map version {version}); refusing to \
                 initialize it again"
            )
        }
        Err(e) => Err(e.context("recording the cluster in the metadata group")),
    }
}

/// Moves each shard's leadership to its intended leader where another
/// replica won the first election. Best effort: failures are warnings.
async fn place_leaders(
    client: &ClusterClient,
    plan: &Plan,
    leaders: &BTreeMap<ShardId, NodeId>,
    progress: &Progress,
) {
    let misplaced: Vec<(ShardId, NodeId)> = plan
        .shards
        .iter()
        .map(|s| (s.descriptor.shard, s.replicas[0]))
        .filter(|(shard, intended)| leaders.get(shard) != Some(intended))
        .collect();
    if misplaced.is_empty() {
        return;
    }
    progress.say(format!(
        "moving {} shard leaders to their intended nodes",
        misplaced.len()
    ));
    let mut moves = futures::stream::iter(&misplaced)
        .map(|(shard, to)| async move { move_leader(client, *shard, *to, plan.addr(*to)).await })
        .buffer_unordered(PARALLEL);
    while let Some(result) = moves.next().await {
        if let Err(e) = result {
            progress.warn(format!("{e:#} (`raftctl leader balance` can retry)"));
        }
    }
}

/// The report, from the map and the leaders the nodes report now.
async fn report(client: &ClusterClient, plan: &Plan) -> Result<InitReport> {
    let map = client.map().await?;
    let leaders = shard_leaders(client, plan).await;
    let mut leaders_per_node: BTreeMap<NodeId, usize> =
        plan.nodes.iter().map(|n| (n.id, 0)).collect();
    for leader in leaders.values() {
        *leaders_per_node.entry(*leader).or_default() += 1;
    }
    let ids: Vec<NodeId> = plan.nodes.iter().map(|n| n.id).collect();
    Ok(InitReport {
        version: map.version,
        grid: plan.grid,
        nodes: map.nodes.values().cloned().collect(),
        meta_voters: ids.iter().copied().take(META_VOTERS).collect(),
        meta_learners: ids.iter().copied().skip(META_VOTERS).collect(),
        shards: plan
            .shards
            .iter()
            .map(|s| InitShard {
                shard: s.descriptor.shard,
                start: s.descriptor.start,
                end: s.descriptor.end,
                replicas: s.replicas.clone(),
                leader: leaders.get(&s.descriptor.shard).copied(),
            })
            .collect(),
        leaders_per_node,
    })
}

fn print_summary(report: &InitReport) {
    out(format!(
        "initialized: {} boxes (chunks of {}) in {} shards over {} nodes; map version {}",
        report.grid.boxes,
        report.grid.chunk_size,
        report.shards.len(),
        report.nodes.len(),
        report.version
    ));
    out(format!(
        "metadata group: voters {:?}, learners {:?}",
        report.meta_voters, report.meta_learners
    ));
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| {
            let led = report.leaders_per_node.get(&n.id).copied().unwrap_or(0);
            let replicas = report
                .shards
                .iter()
                .filter(|s| s.replicas.contains(&n.id))
                .count();
            vec![
                n.id.to_string(),
                n.addr.clone(),
                replicas.to_string(),
                led.to_string(),
            ]
        })
        .collect();
    print_table(&["NODE", "ADDR", "REPLICAS", "LEADS"], &rows);
}
