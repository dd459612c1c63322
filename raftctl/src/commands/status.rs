//! `raftctl status`: the cluster at a glance.
//!
//! Reads the shard map from the entry node and `/status` from every
//! registered, non-removed node (an unreachable node is shown as not
//! reachable, not an error), then prints nodes, shards (range, epoch,
//! leader, replicas, applied index per replica, lag), the map version and
//! any operation in progress, as tables or as one JSON document. From the
//! metadata leader (`GET /meta/health`) it adds each node's last report
//! and disk use, and the control plane's recent decisions. The
//! gateways come from the metadata leader's live registry (`GET
//! /meta/gateways`): endpoint, connections, load and the age of the last
//! report; a registry that cannot be read is shown as such, not an error.

use std::collections::BTreeMap;

use anyhow::Result;
use checkraft_proto::{
    ClusterHealth, GatewayList, Grid, NodeId, NodeState, Operation, RegisteredGateway, ShardId,
    META_GROUP,
};
use serde::Serialize;

use super::cluster::{
    describe_operation, id_list, out, print_json, print_table, state_name, ClusterView,
};
use crate::client::ClusterClient;

/// The whole `status` document (the `--json` output).
#[derive(Debug, Serialize)]
struct StatusReport {
    version: u64,
    grid: Option<Grid>,
    meta: MetaStatus,
    nodes: Vec<NodeRow>,
    shards: Vec<ShardRow>,
    operation: Option<Operation>,
    /// The last operations that ended (newest first, at most 5).
    finished: Vec<checkraft_proto::FinishedOperation>,
    /// What the metadata leader knows of the nodes (last reports, write
    /// rates, its recent decisions); `None` when no leader answered.
    health: Option<ClusterHealth>,
    /// The gateways registered with the metadata leader (reported within
    /// its `gateway_down_after_ms`).
    gateways: Vec<RegisteredGateway>,
    /// Why the gateway registry could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    gateways_error: Option<String>,
}

/// The metadata group.
#[derive(Debug, Serialize)]
struct MetaStatus {
    /// Its leader, as reported by the nodes.
    leader: Option<NodeId>,
    /// Nodes hosting a replica.
    replicas: Vec<NodeId>,
}

/// One node.
#[derive(Debug, Serialize)]
struct NodeRow {
    id: NodeId,
    addr: String,
    state: NodeState,
    reachable: bool,
    /// Why it is not reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Shards listing it as a voting replica in the map.
    replicas: usize,
    /// Shards it leads, per the nodes' statuses.
    leaders: usize,
    /// Groups it does not serve, with the reason (a damaged replica, a
    /// full disk).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    failed: BTreeMap<u64, String>,
}

/// One shard.
#[derive(Debug, Serialize)]
struct ShardRow {
    shard: ShardId,
    start: u64,
    end: u64,
    epoch: u64,
    /// The leader a node confirms, else the map's hint, else null.
    leader: Option<NodeId>,
    /// False when `leader` is only the map's hint.
    leader_confirmed: bool,
    replicas: Vec<NodeId>,
    /// Applied log index per reachable replica.
    applied: BTreeMap<NodeId, u64>,
    /// Max minus min applied index over the reachable replicas.
    lag: Option<u64>,
}

/// `raftctl status`.
pub async fn run(client: &ClusterClient, json: bool) -> Result<()> {
    let view = ClusterView::load(client).await?;
    let mut report = build(&view);
    report.health = client
        .get_json_from_meta_leader::<ClusterHealth>("/meta/health")
        .await
        .ok();
    match client
        .get_json_from_meta_leader::<GatewayList>("/meta/gateways")
        .await
    {
        Ok(list) => report.gateways = list.gateways,
        Err(e) => report.gateways_error = Some(format!("{e:#}")),
    }
    if json {
        return print_json(&report);
    }
    print_text(&report);
    Ok(())
}

fn build(view: &ClusterView) -> StatusReport {
    // In grid order: after splits and merges, ids no longer are.
    let mut ids: Vec<&ShardId> = view.map.shards.keys().collect();
    ids.sort_by_key(|id| view.map.shards[id].descriptor.start);
    let shards: Vec<ShardRow> = ids.into_iter().map(|s| shard_row(view, *s)).collect();
    let nodes = view
        .map
        .nodes
        .values()
        .map(|n| NodeRow {
            id: n.id,
            addr: n.addr.clone(),
            state: n.state,
            reachable: view.status(n.id).is_some(),
            error: view
                .statuses
                .get(&n.id)
                .and_then(|s| s.as_ref().err().cloned()),
            replicas: shards.iter().filter(|s| s.replicas.contains(&n.id)).count(),
            leaders: shards
                .iter()
                .filter(|s| s.leader_confirmed && s.leader == Some(n.id))
                .count(),
            failed: view
                .status(n.id)
                .map(|s| s.failed.clone())
                .unwrap_or_default(),
        })
        .collect();
    let meta_replicas = view
        .statuses
        .iter()
        .filter(|(_, s)| s.as_ref().is_ok_and(|s| s.groups.contains_key(&META_GROUP)))
        .map(|(id, _)| *id)
        .collect();
    StatusReport {
        version: view.map.version,
        grid: view.map.grid,
        meta: MetaStatus {
            leader: view.leader(META_GROUP),
            replicas: meta_replicas,
        },
        nodes,
        shards,
        operation: view.map.operation.clone(),
        finished: view.map.finished.iter().rev().take(5).cloned().collect(),
        health: None,
        gateways: Vec::new(),
        gateways_error: None,
    }
}

fn shard_row(view: &ClusterView, shard: ShardId) -> ShardRow {
    let record = &view.map.shards[&shard];
    let confirmed = view.leader(shard);
    let applied: BTreeMap<NodeId, u64> = record
        .replicas
        .iter()
        .filter_map(|r| {
            view.status(*r)?
                .groups
                .get(&shard)
                .map(|g| (*r, g.applied_index))
        })
        .collect();
    let lag = applied
        .values()
        .max()
        .zip(applied.values().min())
        .map(|(max, min)| max - min);
    ShardRow {
        shard,
        start: record.descriptor.start,
        end: record.descriptor.end,
        epoch: record.descriptor.epoch,
        leader: confirmed.or(record.leader),
        leader_confirmed: confirmed.is_some(),
        replicas: record.replicas.clone(),
        applied,
        lag,
    }
}

fn print_text(report: &StatusReport) {
    let grid = report
        .grid
        .map(|g| format!("{} boxes, chunks of {}", g.boxes, g.chunk_size))
        .unwrap_or_default();
    out(format!("map version {}; grid: {grid}", report.version));
    let meta_leader = report
        .meta
        .leader
        .map(|l| l.to_string())
        .unwrap_or_else(|| "none".into());
    out(format!(
        "metadata group: leader {meta_leader}, replicas on nodes {}",
        id_list(&report.meta.replicas)
    ));
    match &report.operation {
        Some(op) => out(format!(
            "operation in progress: #{} {}: {}",
            op.id,
            describe_operation(&op.kind),
            op.step
        )),
        None => out("no operation in progress"),
    }
    for f in &report.finished {
        out(format!(
            "  ended #{} {}: {}{}",
            f.operation.id,
            describe_operation(&f.operation.kind),
            if f.ok { "" } else { "NOT DONE: " },
            f.outcome
        ));
    }
    out("");
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|n| node_cells(n, report.health.as_ref()))
        .collect();
    print_table(
        &[
            "NODE",
            "ADDR",
            "STATE",
            "REACHABLE",
            "REPLICAS",
            "LEADS",
            "LAST REPORT",
            "DISK",
        ],
        &rows,
    );
    if let Some(h) = &report.health {
        out(format!(
            "control plane: node {} leads for {:.0} s; nodes are down after {:.0} s of silence",
            h.leader,
            h.leading_ms as f64 / 1000.0,
            h.down_after_ms as f64 / 1000.0
        ));
        for d in h.decisions.iter().rev().take(5) {
            out(format!("  decided: {}", d.what));
        }
    }
    for n in &report.nodes {
        if let (Some(e), false) = (&n.error, n.state == NodeState::Removed) {
            out(format!("node {} is unreachable: {e}", n.id));
        }
        for (group, reason) in &n.failed {
            out(format!(
                "node {} does not serve group {group}: {reason}",
                n.id
            ));
        }
    }
    out("");
    let rows: Vec<Vec<String>> = report.shards.iter().map(shard_cells).collect();
    print_table(
        &[
            "SHARD", "RANGE", "EPOCH", "LEADER", "REPLICAS", "APPLIED", "LAG",
        ],
        &rows,
    );
    out("");
    print_gateways(report);
}

fn print_gateways(report: &StatusReport) {
    if let Some(e) = &report.gateways_error {
        out(format!("gateways: the registry could not be read: {e}"));
        return;
    }
    if report.gateways.is_empty() {
        out("gateways: none registered (gateways without public_endpoint are not listed)");
        return;
    }
    let rows: Vec<Vec<String>> = report.gateways.iter().map(gateway_cells).collect();
    print_table(
        &["GATEWAY", "ENDPOINT", "CONNECTIONS", "LOAD", "LAST REPORT"],
        &rows,
    );
}

fn gateway_cells(g: &RegisteredGateway) -> Vec<String> {
    vec![
        g.gateway_id.to_string(),
        g.endpoint.clone(),
        format!("{}/{}", g.connections, g.max_connections),
        format!("{:.1}%", f64::from(g.load_permille) / 10.0),
        format!("{:.1} s ago", g.last_report_ms as f64 / 1000.0),
    ]
}

fn node_cells(n: &NodeRow, health: Option<&ClusterHealth>) -> Vec<String> {
    let seen = health.and_then(|h| h.nodes.get(&n.id));
    let last = match seen.and_then(|s| s.last_report_ms) {
        Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
        None => "-".to_string(),
    };
    let disk = seen
        .map(|s| format!("{:.1} MB", s.disk_bytes as f64 / 1e6))
        .unwrap_or_else(|| "-".to_string());
    let reachable = match &n.error {
        _ if n.state == NodeState::Removed => "-".to_string(),
        None => "yes".to_string(),
        Some(_) => "no".to_string(),
    };
    vec![
        n.id.to_string(),
        n.addr.clone(),
        state_name(n.state),
        reachable,
        n.replicas.to_string(),
        n.leaders.to_string(),
        last,
        disk,
    ]
}

fn shard_cells(s: &ShardRow) -> Vec<String> {
    let leader = match (s.leader, s.leader_confirmed) {
        (Some(l), true) => l.to_string(),
        (Some(l), false) => format!("{l}?"),
        (None, _) => "-".to_string(),
    };
    let applied = s
        .replicas
        .iter()
        .map(|r| {
            format!(
                "{r}:{}",
                s.applied
                    .get(r)
                    .map(u64::to_string)
                    .unwrap_or_else(|| "?".into())
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        s.shard.to_string(),
        format!("[{}, {})", s.start, s.end),
        s.epoch.to_string(),
        leader,
        id_list(&s.replicas),
        applied,
        s.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::{
        GroupSummary, NodeRecord, NodeStatus, ShardDescriptor, ShardMap, ShardRecord,
    };

    fn status(id: NodeId, groups: &[(ShardId, Option<NodeId>, u64)]) -> NodeStatus {
        let summary = |(g, leader, applied): &(ShardId, Option<NodeId>, u64)| {
            let descriptor = ShardDescriptor {
                shard: *g,
                start: 0,
                end: 10,
                epoch: 1,
            };
            (
                *g,
                GroupSummary {
                    descriptor,
                    seq: 0,
                    term: 1,
                    leader: *leader,
                    applied_index: *applied,
                },
            )
        };
        NodeStatus {
            node_id: id,
            addr: format!("n{id}:1"),
            groups: groups.iter().map(summary).collect(),
            failed: Default::default(),
        }
    }

    fn view() -> ClusterView {
        let mut map = ShardMap {
            version: 7,
            ..Default::default()
        };
        for id in 1..=3 {
            map.nodes.insert(
                id,
                NodeRecord {
                    id,
                    addr: format!("n{id}:1"),
                    state: NodeState::Up,
                },
            );
        }
        let descriptor = |shard| ShardDescriptor {
            shard,
            start: (shard - 1) * 10,
            end: shard * 10,
            epoch: 1,
        };
        map.shards.insert(
            1,
            ShardRecord {
                descriptor: descriptor(1),
                replicas: vec![1, 2, 3],
                leader: Some(1),
            },
        );
        map.shards.insert(
            2,
            ShardRecord {
                descriptor: descriptor(2),
                replicas: vec![2, 3, 1],
                leader: Some(2),
            },
        );
        let statuses = BTreeMap::from([
            (1, Ok(status(1, &[(1, Some(1), 10), (2, None, 4)]))),
            (2, Ok(status(2, &[(1, Some(1), 8), (2, None, 5)]))),
            (3, Err("connection refused".to_string())),
        ]);
        ClusterView { map, statuses }
    }

    #[test]
    fn shard_rows_confirm_leaders_and_compute_lag() {
        let report = build(&view());
        let one = &report.shards[0];
        assert_eq!((one.leader, one.leader_confirmed), (Some(1), true));
        assert_eq!(one.applied, BTreeMap::from([(1, 10), (2, 8)]));
        assert_eq!(one.lag, Some(2));
        let two = &report.shards[1];
        assert_eq!(
            (two.leader, two.leader_confirmed),
            (Some(2), false),
            "falls back to the map's hint"
        );
        assert_eq!(shard_cells(two)[3], "2?");
        assert_eq!(shard_cells(two)[5], "2:5 3:? 1:4");
    }

    #[test]
    fn node_rows_count_replicas_and_leaders() {
        let report = build(&view());
        let counts: Vec<(NodeId, bool, usize, usize)> = report
            .nodes
            .iter()
            .map(|n| (n.id, n.reachable, n.replicas, n.leaders))
            .collect();
        assert_eq!(
            counts,
            vec![(1, true, 2, 1), (2, true, 2, 0), (3, false, 2, 0)]
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["shards"][1]["leader"], 2);
        assert_eq!(json["shards"][0]["applied"]["1"], 10);
        assert_eq!(json["nodes"][2]["state"], "up");
        assert_eq!(json["version"], 7);
        assert_eq!(json["gateways"], serde_json::json!([]));
    }

    #[test]
    fn gateway_rows_show_load_and_age() {
        let g = RegisteredGateway {
            gateway_id: 2,
            endpoint: "ws://127.0.0.1:8082/ws".into(),
            connections: 15,
            max_connections: 20_000,
            load_permille: 7,
            last_report_ms: 1_250,
        };
        assert_eq!(
            gateway_cells(&g),
            vec![
                "2",
                "ws://127.0.0.1:8082/ws",
                "15/20000",
                "0.7%",
                "1.2 s ago"
            ]
        );
    }
}
