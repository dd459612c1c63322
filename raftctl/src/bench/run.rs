//! One benchmark run, whatever the scenario: start the cluster, wait
//! until every group has settled and start watching elections, snapshot
//! the idle gateways, start the workers and wait for every connection,
//! snapshot again, run the measured phase (with the failover kills or
//! the node restarts or the reshard when asked), snapshot, collect the
//! workers' reports, stop the election watch and everything else, and
//! report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use tokio::signal::unix::{signal, SignalKind};

use super::args::{BenchArgs, Scenario, Settings};
use super::elections::{self, Downtime, ElectionWatch};
use super::failover;
use super::fleet::{progress_bar, Fleet, GAP_THRESHOLD_MS};
use super::latency::now_ns;
use super::launcher::LocalCluster;
use super::plan::ShardRange;
use super::procfs::Machine;
use super::report::{utc_now, Report, Snapshots};
use super::reshard;
use super::restart;
use super::scrape::GatewaySnapshot;
use super::throughput;
use super::timeline::Timeline;

/// Applied-index spread under which every group counts as settled
/// before the election watch starts.
const SETTLED_LAG: u64 = 50;

/// Time between progress updates and timeline samples (the workers
/// report every 250 ms).
const SAMPLE: Duration = Duration::from_millis(250);

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
            cluster.wait_all_settled(SETTLED_LAG).await?;
            let watch = ElectionWatch::spawn(cluster.nodes.clone());
            let report = if settings.sweep.is_empty() {
                measure(&settings, &args, &mut cluster, machine, date).await
            } else {
                throughput::sweep(&settings, &args, &mut cluster, machine, date).await
            };
            let watched = watch.finish().await;
            report.map(|mut r| {
                r.elections = Some(elections::summarize(watched, &downtimes(&r)));
                r
            })
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
        let files = report.write(dir)?;
        eprintln!("wrote {} into {}", files.join(", "), dir.display());
    }
    Ok(())
}

/// When killed nodes were down in `r` (kill to restart, the restart
/// taken as the moment the new process answered or served).
fn downtimes(r: &Report) -> Vec<Downtime> {
    let delay = (r.settings.restart_delay_s * 1e9) as u64;
    let mut out = Vec::new();
    if let Some(f) = &r.failover {
        out.extend(f.kills.iter().map(|k| Downtime {
            from_ns: k.at_ns,
            to_ns: k.at_ns + delay + (k.restart_s * 1e9) as u64,
        }));
    }
    if let Some(rs) = &r.restart {
        out.extend(rs.restarts.iter().map(|k| {
            Downtime {
                from_ns: k.killed_ns,
                to_ns: k
                    .serving_s
                    .map_or(u64::MAX, |s| k.restarted_ns + (s * 1e9) as u64),
            }
        }));
    }
    out
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
    let reshard_to = args.faults.reshard_to.unwrap_or(4 * settings.shards);
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
    let mut timeline = Timeline::new(start_ns, fleet.totals().acks_applied);
    fleet.start().await?;
    let delay = Duration::from_secs_f64(settings.restart_delay_s);
    let done = AtomicBool::new(false);
    let mut kills = None;
    let mut restarts = None;
    let mut change = None;
    match settings.scenario {
        Scenario::Failover => {
            let acks = fleet.shard_acks();
            let kill = async {
                let kills = failover::kill_loop(
                    cluster,
                    acks,
                    hot_shard,
                    settings.kills,
                    args.faults.kill_every,
                    delay,
                )
                .await;
                done.store(true, Ordering::Relaxed);
                kills
            };
            let (shown, killed) = tokio::join!(
                show_progress(
                    &mut fleet,
                    &bar,
                    settings.duration_s,
                    None,
                    Some(&done),
                    &mut timeline
                ),
                kill
            );
            shown?;
            kills = Some(killed?);
        }
        Scenario::Restart => {
            let restart = async {
                let records = restart::restart_loop(
                    cluster,
                    settings.kills,
                    Duration::from_secs_f64(settings.warmup_s),
                    Duration::from_secs_f64(args.faults.kill_every),
                    delay,
                )
                .await;
                done.store(true, Ordering::Relaxed);
                records
            };
            let (shown, restarted) = tokio::join!(
                show_progress(
                    &mut fleet,
                    &bar,
                    settings.duration_s,
                    None,
                    Some(&done),
                    &mut timeline
                ),
                restart
            );
            shown?;
            restarts = Some(restarted?);
        }
        _ => {
            show_progress(
                &mut fleet,
                &bar,
                settings.duration_s,
                Some(&mut *cluster),
                None,
                &mut timeline,
            )
            .await?;
            if settings.scenario == Scenario::Reshard {
                let (from, to) = (settings.shards, reshard_to);
                change = Some(
                    reshard::change(&mut fleet, cluster, &bar, from, to, &mut timeline).await?,
                );
            }
        }
    }
    let stop = GatewaySnapshot::take(&gateways, &pids, &cluster.node_pids()).await;
    bar.finish_and_clear();
    let finals = fleet.finish().await?;
    let snaps = Snapshots {
        before,
        start,
        stop,
    };
    let mut report = Report::build(settings, machine, date, &finals, &snaps, connect_s);
    report.start_ns = start_ns;
    report.timeline = timeline.points().to_vec();
    if let Some(records) = restarts {
        report.restart = Some(restart::summarize(
            settings.boxes,
            settings.restart_delay_s,
            records,
        ));
    }
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

/// Updates the bar and samples the acknowledged sets into `timeline`
/// every [`SAMPLE`] for `seconds`, and then until `done` is set if given;
/// fails if a worker (or, when given, a cluster process) dies.
pub(super) async fn show_progress(
    fleet: &mut Fleet,
    bar: &ProgressBar,
    seconds: f64,
    mut cluster: Option<&mut LocalCluster>,
    done: Option<&AtomicBool>,
    timeline: &mut Timeline,
) -> Result<()> {
    let began = Instant::now();
    let end = began + Duration::from_secs_f64(seconds);
    let waiting = || done.is_some_and(|d| !d.load(Ordering::Relaxed));
    while Instant::now() < end || waiting() {
        let left = end.saturating_duration_since(Instant::now());
        let pause = match left.is_zero() {
            true => SAMPLE,
            false => left.min(SAMPLE),
        };
        tokio::time::sleep(pause).await;
        timeline.sample(now_ns(), fleet.totals().acks_applied);
        bar.set_position(began.elapsed().as_secs());
        bar.set_message(fleet.rates_message());
        fleet.check_alive()?;
        if let Some(c) = cluster.as_deref_mut() {
            c.check_alive()?;
        }
    }
    Ok(())
}
