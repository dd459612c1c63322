//! `raftctl bench-worker`: one load-generator process. It connects its
//! clients (a bounded number of handshakes at a time), writes a
//! [`WorkerLine::Progress`] line every 250 ms, starts sending on `start`,
//! starts a new latency period on each `mark`,
//! and on `stop` (or stdin's end) stops sending, drains the Acks for up to
//! [`DRAIN`], writes its [`WorkerLine::Final`] and exits.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{watch, Semaphore};

use super::args::WorkerArgs;
use super::client::{self, Phase};
use super::latency::now_ns;
use super::lines::{WorkerFinal, WorkerLine, MARK, START, STOP};
use super::plan::WorkerPlan;
use super::procfs;
use super::shared::Shared;

/// How long Sets sent before `stop` may take to be acknowledged.
const DRAIN: Duration = Duration::from_secs(5);
/// Period of progress lines.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Runs the worker to completion.
pub async fn run(args: WorkerArgs) -> Result<()> {
    let plan: WorkerPlan = serde_json::from_str(&args.plan).context("parsing --plan")?;
    let shared = Arc::new(Shared::new(plan));
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let handshakes = Arc::new(Semaphore::new(shared.plan.connect_concurrency.max(1)));
    let first = shared.plan.first_client;
    let mut tasks = tokio::task::JoinSet::new();
    for id in first..first + shared.plan.clients {
        tasks.spawn(client::run(
            shared.clone(),
            id,
            phase_rx.clone(),
            handshakes.clone(),
        ));
    }
    let progress = tokio::spawn(report_progress(shared.clone()));

    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut start = None;
    let mut stop = None;
    let (mut start_cpu, mut stop_cpu) = (0.0, 0.0);
    while let Some(line) = stdin.next_line().await? {
        match line.trim() {
            START if start.is_none() => {
                shared.recording.store(true, Relaxed);
                start_cpu = procfs::cpu_seconds(std::process::id()).unwrap_or(0.0);
                start = Some((now_ns(), shared.c.snapshot()));
                let _ = phase_tx.send(Phase::Running);
            }
            MARK => shared.mark(now_ns()),
            STOP => {
                stop_cpu = procfs::cpu_seconds(std::process::id()).unwrap_or(0.0);
                stop = Some((now_ns(), shared.c.snapshot()));
                break;
            }
            _ => {}
        }
    }
    let _ = phase_tx.send(Phase::Draining);
    let deadline = tokio::time::Instant::now() + DRAIN;
    while shared.c.outstanding.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unacked = shared.c.outstanding.load(Relaxed);
    shared.recording.store(false, Relaxed);
    let (stop_ns, stop_counts) = stop.unwrap_or_else(|| (now_ns(), shared.c.snapshot()));
    let (start_ns, start_counts) = start.unwrap_or((stop_ns, stop_counts));
    let total = shared.c.snapshot();
    let last = WorkerFinal {
        window: stop_counts.since(&start_counts),
        window_s: (stop_ns - start_ns) as f64 / 1e9,
        total,
        errors: shared.errors(),
        ack_latency: shared.ack_buckets(),
        seen_latency: shared.seen_buckets(),
        ack_latency_by_mark: shared.marked_buckets(),
        gaps: shared.gaps(),
        last_ack: shared.last_acks(),
        unacked,
        rss_bytes: procfs::rss_bytes(std::process::id()).unwrap_or(0),
        cpu_seconds: (stop_cpu - start_cpu).max(0.0),
    };
    progress.abort();
    emit(&WorkerLine::Final(Box::new(last)))?;
    let _ = phase_tx.send(Phase::Done);
    // Clients close by dropping their sockets; don't wait long for them.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Writes a progress line every [`PROGRESS_EVERY`].
async fn report_progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tick.tick().await;
        let line = WorkerLine::Progress {
            counts: shared.c.snapshot(),
            last_ack: shared.last_acks(),
        };
        if emit(&line).is_err() {
            return;
        }
    }
}

/// One JSON line on stdout.
fn emit(line: &WorkerLine) -> Result<()> {
    let mut text = serde_json::to_string(line)?;
    text.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
