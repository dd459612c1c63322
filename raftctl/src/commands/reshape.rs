//! `raftctl shard split|merge` and `raftctl reshard --shards N`: record a
//! split or merge in the metadata group and watch the metadata leader run
//! it (see `docs/resharding.md`). The tool holds no state: interrupted and
//! rerun, it finds the operation in the map and keeps watching, and
//! `reshard` plans again from the layout the map records.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use checkraft_proto::{FinishedOperation, OperationKind, ShardDescriptor, ShardMap};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::cluster::{describe_operation, initialized_map, out, print_json, Progress};
use super::intent::{run_operation, watch};
use super::reshard_plan::{middle, next_step, plan, Step};
use crate::client::ClusterClient;

/// `raftctl shard split SHARD [--at BOX]`.
pub async fn split(client: &ClusterClient, shard: u64, at: Option<u64>, json: bool) -> Result<()> {
    let map = initialized_map(client).await?;
    let record = map
        .shards
        .get(&shard)
        .with_context(|| format!("no shard {shard} in the map"))?;
    let chunk = map.grid.map_or(1, |g| g.chunk_size);
    let d = &record.descriptor;
    let at = match at {
        Some(at) => at,
        None => middle(d.start, d.end, chunk).with_context(|| {
            format!(
                "shard {shard} [{}, {}) holds one chunk of {chunk} boxes: it cannot be split",
                d.start, d.end
            )
        })?,
    };
    let progress = Progress::new(json);
    let kind = OperationKind::Split {
        shard,
        at,
        child: 0,
    };
    let finished = run_operation(client, kind, &progress).await?;
    report(&finished, json)
}

/// `raftctl shard merge LEFT RIGHT`.
pub async fn merge(client: &ClusterClient, left: u64, right: u64, json: bool) -> Result<()> {
    let progress = Progress::new(json);
    let kind = OperationKind::Merge {
        left,
        right,
        right_replicas: Vec::new(),
    };
    let finished = run_operation(client, kind, &progress).await?;
    report(&finished, json)
}

fn report(finished: &FinishedOperation, json: bool) -> Result<()> {
    if json {
        return print_json(finished);
    }
    out(&finished.outcome);
    Ok(())
}

/// One step of a reshard, as `--json` reports it.
#[derive(Debug, Serialize)]
pub struct StepReport {
    /// The split or merge.
    pub step: Step,
    /// From recording the operation to its recorded outcome.
    pub millis: u128,
    /// The outcome the metadata leader recorded.
    pub outcome: String,
    /// When the step began (not in the JSON; `raftctl bench reshard`
    /// places the step on its own clock with it).
    #[serde(skip)]
    pub began: Instant,
}

/// A whole reshard, as `--json` reports it.
#[derive(Debug, Serialize)]
pub struct ReshardReport {
    /// The shard count asked for.
    pub target: usize,
    /// The shard count at the end.
    pub shards: usize,
    /// The steps planned at the start.
    pub plan: Vec<Step>,
    /// The steps run, in order.
    pub steps: Vec<StepReport>,
    /// The whole change, from the first plan to the last outcome.
    pub millis: u128,
}

/// `raftctl reshard --shards N`.
pub async fn reshard(client: &ClusterClient, target: usize, json: bool) -> Result<()> {
    let report = run_reshard(client, target, json).await?;
    if json {
        return print_json(&report);
    }
    out(format!(
        "{} shards ({} steps in {:.1} s)",
        report.shards,
        report.steps.len(),
        report.millis as f64 / 1000.0
    ));
    Ok(())
}

/// Runs `raftctl reshard --shards N` to its end, showing progress unless
/// `json`, and returns what `--json` prints.
pub async fn run_reshard(
    client: &ClusterClient,
    target: usize,
    json: bool,
) -> Result<ReshardReport> {
    if target == 0 {
        bail!("--shards must be at least 1");
    }
    let map = initialized_map(client).await?;
    let chunk = map.grid.map_or(1, |g| g.chunk_size);
    let planned = plan(&descriptors(&map), target, chunk);
    let progress = Progress::new(json);
    let bar = if json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(planned.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {elapsed} {msg}")
                .expect("a valid template"),
        );
        bar
    };
    progress.say(format!(
        "{} shards -> {target}: {} steps planned",
        map.shards.len(),
        planned.len()
    ));
    let started = Instant::now();
    let mut done = Vec::new();
    loop {
        let map = initialized_map(client).await?;
        if let Some(op) = &map.operation {
            // One we (or an earlier run) started: see it through first.
            bar.set_message(format!("waiting for {}", describe_operation(&op.kind)));
            let finished = watch(client, op.id, map.version, &bar).await?;
            if !finished.ok {
                bail!(
                    "{} did not complete: {}",
                    describe_operation(&finished.operation.kind),
                    finished.outcome
                );
            }
            continue;
        }
        let Some(step) = next_step(&descriptors(&map), target, chunk) else {
            break;
        };
        bar.set_message(step.to_string());
        let kind = match &step {
            Step::Split { shard, at, .. } => OperationKind::Split {
                shard: *shard,
                at: *at,
                child: 0,
            },
            Step::Merge { left, right, .. } => OperationKind::Merge {
                left: *left,
                right: *right,
                right_replicas: Vec::new(),
            },
        };
        let began = Instant::now();
        let finished = run_operation(client, kind, &Progress::new(true)).await?;
        bar.inc(1);
        bar.println(format!(
            "{step}: {} ({} ms)",
            finished.outcome,
            began.elapsed().as_millis()
        ));
        done.push(StepReport {
            step,
            millis: began.elapsed().as_millis(),
            outcome: finished.outcome,
            began,
        });
    }
    bar.finish_and_clear();
    let map = initialized_map(client).await?;
    Ok(ReshardReport {
        target,
        shards: map.shards.len(),
        plan: planned,
        steps: done,
        millis: started.elapsed().as_millis(),
    })
}

fn descriptors(map: &ShardMap) -> Vec<ShardDescriptor> {
    map.shards.values().map(|r| r.descriptor.clone()).collect()
}
