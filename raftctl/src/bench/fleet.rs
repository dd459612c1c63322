//! The worker processes of one run: spawning them (this executable again,
//! as `raftctl bench-worker`), reading their JSON lines, sending them
//! `start`/`stop`, and the live progress bar.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use super::args::{Scenario, Settings};
use super::lines::{Counts, WorkerFinal, WorkerLine, MARK, START, STOP};
use super::plan::{ShardRange, WorkerPlan};
use crate::supervisor::die_with_parent;

/// How long workers get to drain and report after `stop`.
const FINAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Ack gaps shorter than this are not reported by workers, in ms.
pub const GAP_THRESHOLD_MS: u64 = 20;

/// Each worker's latest progress: counters and per-shard last Ack times.
type Latest = Arc<Mutex<Vec<(Counts, Vec<(u64, u64)>)>>>;

/// The workers' latest per-shard Ack times, readable while the fleet runs.
#[derive(Clone)]
pub struct ShardAcks(Latest);

impl ShardAcks {
    /// The latest applied Ack for `shard` in any worker (`CLOCK_MONOTONIC`
    /// ns; 0: none).
    pub fn last(&self, shard: u64) -> u64 {
        let latest = self.0.lock().unwrap_or_else(|e| e.into_inner());
        latest
            .iter()
            .flat_map(|(_, acks)| acks.iter())
            .filter(|(s, _)| *s == shard)
            .map(|(_, t)| *t)
            .max()
            .unwrap_or(0)
    }
}

/// One worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    reader: JoinHandle<Result<WorkerFinal>>,
}

/// The running workers.
pub struct Fleet {
    workers: Vec<Worker>,
    latest: Latest,
    /// Clients over all workers.
    pub clients: u64,
    last: (Instant, Counts),
}

impl Fleet {
    /// Starts `settings.workers` workers against `gateways`, their stderr
    /// going to `worker-<n>.log` in `log_dir`.
    pub fn spawn(
        settings: &Settings,
        gateways: &[String],
        shards: Vec<ShardRange>,
        log_dir: &std::path::Path,
    ) -> Result<Self> {
        let exe = std::env::current_exe().context("locating raftctl for the workers")?;
        let n = u64::from(settings.workers);
        let latest: Latest = Arc::new(Mutex::new(vec![Default::default(); n as usize]));
        let mut workers = Vec::new();
        let mut first = 0;
        for w in 0..n {
            let clients = settings.clients / n + u64::from(w < settings.clients % n);
            let plan = WorkerPlan {
                worker: w as u32,
                workers: n as u32,
                gateways: gateways.to_vec(),
                first_client: first,
                clients,
                per_address: settings.per_address,
                boxes: settings.boxes,
                chunk_size: settings.chunk_size,
                viewport: settings.viewport,
                hot_fraction: settings.hot_fraction,
                hot_chunks: settings.hot_chunks,
                rate_per_client: settings.rate.map(|r| r / settings.clients as f64),
                inflight: settings.inflight.max(1),
                shards: shards.clone(),
                gap_threshold_ms: match settings.scenario {
                    Scenario::Reshard => super::reshard::GAP_THRESHOLD_MS,
                    _ => GAP_THRESHOLD_MS,
                },
                connect_concurrency: 64,
            };
            first += clients;
            let log = std::fs::File::create(log_dir.join(format!("worker-{w}.log")))?;
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("bench-worker")
                .arg("--plan")
                .arg(serde_json::to_string(&plan)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log)
                .kill_on_drop(true);
            die_with_parent(&mut cmd);
            let mut child = cmd.spawn().context("starting a bench worker")?;
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let latest = latest.clone();
            let reader = tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Some(line) = lines.next_line().await? {
                    match serde_json::from_str::<WorkerLine>(&line) {
                        Ok(WorkerLine::Progress { counts, last_ack }) => {
                            let mut latest = latest.lock().unwrap_or_else(|e| e.into_inner());
                            latest[w as usize] = (counts, last_ack);
                        }
                        Ok(WorkerLine::Final(f)) => return Ok(*f),
                        Err(e) => bail!("worker {w} wrote a bad line ({e}): {line}"),
                    }
                }
                bail!("worker {w} exited without its final report; see worker-{w}.log")
            });
            workers.push(Worker {
                child,
                stdin,
                reader,
            });
        }
        Ok(Self {
            workers,
            latest,
            clients: settings.clients,
            last: (Instant::now(), Counts::default()),
        })
    }

    /// The latest counters summed over workers.
    pub fn totals(&self) -> Counts {
        let mut sum = Counts::default();
        for (c, _) in self.latest.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            sum.add(c);
        }
        sum
    }

    /// A handle on the workers' latest per-shard Ack times.
    pub fn shard_acks(&self) -> ShardAcks {
        ShardAcks(self.latest.clone())
    }

    /// Waits until every client has connected or failed to (or
    /// `timeout`), showing progress; fails if a worker died.
    pub async fn wait_connected(&mut self, timeout: Duration, bar: &ProgressBar) -> Result<Counts> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.totals();
            bar.set_message(format!(
                "connecting: {} open, {} failed of {}",
                t.open, t.connect_failed, self.clients
            ));
            if t.connected + t.connect_failed >= self.clients {
                return Ok(t);
            }
            if Instant::now() > deadline {
                eprintln!(
                    "warning: after {}s only {} of {} clients connected; measuring those",
                    timeout.as_secs(),
                    t.connected,
                    self.clients
                );
                return Ok(t);
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails if a worker process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for (w, worker) in self.workers.iter_mut().enumerate() {
            if let Some(status) = worker.child.try_wait()? {
                bail!("bench worker {w} exited early ({status}); see worker-{w}.log");
            }
        }
        Ok(())
    }

    /// Begins the measured phase in every worker.
    pub async fn start(&mut self) -> Result<()> {
        self.last = (Instant::now(), self.totals());
        self.command(START).await
    }

    /// Starts a new latency period in every worker (see [`MARK`]).
    pub async fn mark(&mut self) -> Result<()> {
        self.command(MARK).await
    }

    async fn command(&mut self, cmd: &str) -> Result<()> {
        for w in &mut self.workers {
            w.stdin
                .write_all(format!("{cmd}\n").as_bytes())
                .await
                .context("writing to a bench worker")?;
            w.stdin.flush().await?;
        }
        Ok(())
    }

    /// A one-line summary of the rates since the last call.
    pub fn rates_message(&mut self) -> String {
        let now = (Instant::now(), self.totals());
        let secs = now.0.duration_since(self.last.0).as_secs_f64().max(1e-3);
        let d = now.1.since(&self.last.1);
        self.last = now;
        format!(
            "{} open | {:.0} acked/s | {:.0} updates/s | {:.0} frames/s | {} rejected, {} dropped",
            now.1.open,
            d.acks_applied as f64 / secs,
            d.updates as f64 / secs,
            d.frames as f64 / secs,
            now.1.acks_rejected,
            now.1.dropped,
        )
    }

    /// Ends the measured phase and collects every worker's final report;
    /// the workers then exit (or are killed).
    pub async fn finish(mut self) -> Result<Vec<WorkerFinal>> {
        let sent = self.command(STOP).await;
        let mut finals = Vec::new();
        let mut failure = sent.err();
        for (w, worker) in self.workers.iter_mut().enumerate() {
            match tokio::time::timeout(FINAL_TIMEOUT, &mut worker.reader).await {
                Ok(Ok(Ok(f))) => finals.push(f),
                Ok(Ok(Err(e))) => failure = Some(e),
                Ok(Err(e)) => failure = Some(anyhow!("worker {w} reader: {e}")),
                Err(_) => failure = Some(anyhow!("worker {w} sent no final report in time")),
            }
        }
        for worker in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(5), worker.child.wait())
                .await
                .is_err()
            {
                let _ = worker.child.kill().await;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(finals),
        }
    }
}

/// The live progress bar over the measured phase.
pub fn progress_bar(seconds: f64) -> ProgressBar {
    let bar = ProgressBar::new(seconds.ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:25}] {pos}/{len}s {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
