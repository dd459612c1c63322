//! `raftctl leader balance`: spread shard leaders evenly over the Up nodes.
//!
//! Counts the leaders the nodes report, plans moves so that no Up node
//! leads more than `ceil(shards / up nodes)` (see
//! [`super::placement::plan_balance`]), then asks each chosen replica to
//! campaign and waits (bounded) until it leads. Finally records the
//! leaders as hints in the map.

use anyhow::{bail, Result};
use serde::Serialize;

use super::cluster::{
    move_leader, out, print_json, print_table, refresh_leader_hints, ClusterView, Progress,
};
use super::placement::{plan_balance, LeaderMove};
use crate::client::ClusterClient;

/// One attempted move.
#[derive(Debug, Serialize)]
struct MoveResult {
    #[serde(flatten)]
    planned: LeaderMove,
    /// Whether the new leader took over.
    moved: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `raftctl leader balance`.
pub async fn balance(client: &ClusterClient, json: bool) -> Result<()> {
    let progress = Progress::new(json);
    let view = ClusterView::load(client).await?;
    let up = view.up_nodes();
    if up.is_empty() {
        bail!("no Up node answers /status; nothing can lead");
    }
    let replicas = view
        .map
        .shards
        .iter()
        .map(|(id, s)| (*id, s.replicas.clone()))
        .collect();
    let plan = plan_balance(&view.leaders(), &replicas, &up);
    progress.say(format!(
        "{} leader moves planned over {} Up nodes",
        plan.len(),
        up.len()
    ));
    let mut results = Vec::new();
    for mv in plan {
        progress.say(format!(
            "shard {}: leader {} -> {}",
            mv.shard, mv.from, mv.to
        ));
        let outcome = match view.addr(mv.to) {
            Ok(addr) => move_leader(client, mv.shard, mv.to, addr).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            progress.warn(format!("{e:#}"));
        }
        results.push(MoveResult {
            planned: mv,
            moved: outcome.is_ok(),
            error: outcome.err().map(|e| format!("{e:#}")),
        });
    }
    refresh_leader_hints(client, &progress).await;
    print(&results, json)?;
    let failed = results.iter().filter(|r| !r.moved).count();
    if failed > 0 {
        bail!(
            "{failed} of {} leader moves failed; run `raftctl leader balance` again",
            results.len()
        );
    }
    Ok(())
}

fn print(results: &[MoveResult], json: bool) -> Result<()> {
    if json {
        return print_json(&results);
    }
    if results.is_empty() {
        out("leaders are balanced; nothing to move");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let outcome = match &r.error {
                None => "moved".to_string(),
                Some(e) => format!("failed: {e}"),
            };
            vec![
                r.planned.shard.to_string(),
                r.planned.from.to_string(),
                r.planned.to.to_string(),
                outcome,
            ]
        })
        .collect();
    print_table(&["SHARD", "FROM", "TO", "RESULT"], &rows);
    Ok(())
}
