//! Scenarios 1 and 2, max replicated write throughput and the same-run
//! redis comparison: our measured phases (rate limits lifted, closed
//! loop), one per `--sweep` depth of Sets in flight per client (1, 16, 64,
//! 256 by default: 1 and 16 match redis-benchmark's unpipelined and `-P 16`
//! runs); then, with our cluster stopped, redis-benchmark with the same
//! client count, and each redis figure gets its ours/redis ratios.

use anyhow::{Context, Result};

use super::args::{BenchArgs, Settings};
use super::launcher::LocalCluster;
use super::procfs::Machine;
use super::redis;
use super::report::{Report, SweepRow};
use super::run::measure;

/// Runs one measured phase per sweep depth on `cluster`: the best
/// phase's report, with every phase's row.
pub async fn sweep(
    settings: &Settings,
    args: &BenchArgs,
    cluster: &mut LocalCluster,
    machine: Machine,
    date: String,
) -> Result<Report> {
    let mut rows = Vec::new();
    let mut best: Option<Report> = None;
    for &depth in &settings.sweep {
        let phase = Settings {
            inflight: depth,
            ..settings.clone()
        };
        eprintln!("phase: {depth} Sets in flight per client");
        let report = measure(&phase, args, cluster, machine.clone(), date.clone()).await?;
        rows.push(SweepRow::of(&report));
        if best
            .as_ref()
            .is_none_or(|b| report.sets.acked_per_s > b.sets.acked_per_s)
        {
            best = Some(report);
        }
    }
    let mut report = best.ok_or_else(|| anyhow::anyhow!("--sweep is empty"))?;
    report.sweep = Some(rows);
    Ok(report)
}

/// Adds the redis comparison to `report` (unless `--no-redis`).
pub async fn add_redis(report: &mut Report, args: &BenchArgs) -> Result<()> {
    if args.no_redis {
        return Ok(());
    }
    let dir = tempfile::Builder::new()
        .prefix("checkraft-bench-redis-")
        .tempdir()
        .context("creating redis's temporary directory")?;
    eprintln!(
        "running redis-benchmark with {} clients (~{}s per run, 4 runs)",
        report.settings.clients, args.redis_seconds
    );
    let ours: Vec<(u32, f64)> = match &report.sweep {
        Some(rows) => rows.iter().map(|r| (r.inflight, r.acked_per_s)).collect(),
        None => vec![(report.settings.inflight, report.sets.acked_per_s)],
    };
    let comparison = redis::compare(
        report.settings.clients,
        args.redis_seconds,
        &ours,
        dir.path(),
    )
    .await;
    let _ = dir.close();
    report.redis = Some(comparison?);
    Ok(())
}
