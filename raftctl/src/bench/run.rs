//! One benchmark run, whatever the scenario: start the cluster, snapshot
//! the idle gateways, start the workers and wait for every connection,
//! snapshot again, run the measured phase (with the failover kills or
//! the reshard when asked), snapshot, collect the workers' reports, stop
//! everything, and report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use tokio::signal::unix::{signal, SignalKind};

use super::args::{BenchArgs, Scenario, Settings};
use super::failover;
use super::fleet::{progress_bar, Fleet, GAP_THRESHOLD_MS};
use super::latency::now_ns;
use super::launcher::LocalCluster;
use super::plan::ShardRange;
use super::procfs::Machine;
use super::report::{utc_now, Report, Snapshots};
use super::reshard;
use super::scrape::GatewaySnapshot;
use super::throughput;

/// Runs `raftctl bench`; with `json`, prints `report.json` instead of
/// the markdown summary.
pub async fn run(args: BenchArgs, json: bool) -> Result<()> {
    let settings = Settings::resolve(&args)?;
    let machine = Machine::describe();
    let date = utc_now();
    eprintln!(
        "bench {}: starting 3 nodes and {} gateway(s)",
        settings.scenario.name(),
        settings.gateways
    );
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let stopped = async {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    };
    tokio::pin!(stopped);
    let mut cluster = tokio::select! {
        started = LocalCluster::start(&settings) => started?,
        name = &mut stopped => bail!("{name} while starting the cluster"),
    };
    // On a signal the phase is dropped (workers are killed with it) and
    // the cluster still stopped and its directory removed.
    let measured = tokio::select! {
        measured = async {
            if settings.sweep.is_empty() {
                measure(&settings, &args, &mut cluster, machine, date).await
            } else {
                throughput::sweep(&settings, &args, &mut cluster, machine, date).await
            }
        } => measured,
        name = &mut stopped => Err(anyhow!("{name}: stopped before the end")),
    };
    cluster.stop().await;
    let mut report = measured?;
    if settings.scenario == Scenario::Throughput {
        tokio::select! {
            done = throughput::add_redis(&mut report, &args) => done?,
            name = &mut stopped => bail!("{name} during the redis comparison"),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.markdown());
    }
    if let Some(dir) = &args.out {
        report.write(dir)?;
        eprintln!("wrote {0}/report.json and {0}/report.md", dir.display());
    }
    Ok(())
}

/// Everything between a healthy cluster and the report of one measured
/// phase (workers are started for it and stopped after it).
pub async fn measure(
    settings: &Settings,
    args: &BenchArgs,
    cluster: &mut LocalCluster,
    machine: Machine,
    date: String,
) -> Result<Report> {
    let reshard_to = args.reshard_to.unwrap_or(4 * settings.shards);
    let shards: Vec<ShardRange> = match settings.scenario {
        Scenario::Reshard => reshard::cells(&cluster.map, reshard_to),
        _ => cluster
            .map
            .shards
            .values()
            .map(|s| ShardRange {
                id: s.descriptor.shard,
                start: s.descriptor.start,
                end: s.descriptor.end,
            })
            .collect(),
    };
    let hot_shard = shards.iter().find(|s| s.start == 0).map_or(1, |s| s.id);
    let gateways = cluster.gateways.clone();
    let pids = cluster.gateway_pids();
    let before = GatewaySnapshot::take(&gateways, &pids, &cluster.node_pids()).await;
    let bar = progress_bar(settings.duration_s);
    let began = Instant::now();
    let mut fleet = Fleet::spawn(settings, &gateways, shards.clone(), cluster.dir())?;
    fleet
        .wait_connected(Duration::from_secs_f64(settings.connect_timeout_s), &bar)
        .await?;
    let connect_s = began.elapsed().as_secs_f64();
    // Let allocations settle before reading the connected RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = GatewaySnapshot::take(&gateways, &pids, &cluster.node_pids()).await;
    let start_ns = now_ns();
    fleet.start().await?;
    let mut change = None;
    let kills = if settings.scenario == Scenario::Failover {
        let acks = fleet.shard_acks();
        let done = AtomicBool::new(false);
        let kill = async {
            let kills = failover::kill_loop(
                cluster,
                acks,
                hot_shard,
                args.kills,
                args.kill_every,
                Duration::from_secs_f64(args.restart_delay),
            )
            .await;
            done.store(true, Ordering::Relaxed);
            kills
        };
        let (shown, kills) = tokio::join!(
            show_progress(&mut fleet, &bar, settings.duration_s, None, Some(&done)),
            kill
        );
        shown?;
        Some(kills?)
    } else {
        show_progress(&mut fleet, &bar, settings.duration_s, Some(cluster), None).await?;
        if settings.scenario == Scenario::Reshard {
            let (from, to) = (settings.shards, reshard_to);
            change = Some(reshard::change(&mut fleet, cluster, &bar, from, to).await?);
        }
        None
    };
    let stop = GatewaySnapshot::take(&gateways, &pids, &cluster.node_pids()).await;
    bar.finish_and_clear();
    let finals = fleet.finish().await?;
    let snaps = Snapshots {
        before,
        start,
        stop,
    };
    let mut report = Report::build(settings, machine, date, &finals, &snaps, connect_s);
    if let Some(kills) = kills {
        report.failover = Some(failover::summarize(
            hot_shard,
            GAP_THRESHOLD_MS,
            &kills,
            &finals,
            start_ns,
        ));
    }
    if let Some(change) = change {
        report.reshard = Some(reshard::summarize(&change, &shards, &finals, start_ns));
    }
    Ok(report)
}

/// Updates the bar every 500 ms for `seconds`, and then until `done` is
/// set if given; fails if a worker (or, when given, a cluster process)
/// dies.
pub(super) async fn show_progress(
    fleet: &mut Fleet,
    bar: &ProgressBar,
    seconds: f64,
    mut cluster: Option<&mut LocalCluster>,
    done: Option<&AtomicBool>,
) -> Result<()> {
    let began = Instant::now();
    let end = began + Duration::from_secs_f64(seconds);
    let waiting = || done.is_some_and(|d| !d.load(Ordering::Relaxed));
    while Instant::now() < end || waiting() {
        let left = end.saturating_duration_since(Instant::now());
        let pause = match left.is_zero() {
            true => Duration::from_millis(500),
            false => left.min(Duration::from_millis(500)),
        };
        tokio::time::sleep(pause).await;
        bar.set_position(began.elapsed().as_secs());
        bar.set_message(fleet.rates_message());
        fleet.check_alive()?;
        if let Some(c) = cluster.as_deref_mut() {
            c.check_alive()?;
        }
    }
    Ok(())
}
