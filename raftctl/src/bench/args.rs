//! The command-line arguments of `raftctl bench` and of the hidden
//! `raftctl bench-worker`, and their per-scenario defaults.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// `c10m`'s write rate per user, Sets per second: the original site's
/// (about one click per user every 17 minutes).
pub const C10M_SETS_PER_USER_PER_S: f64 = 0.001;

/// The benchmark scenarios (see `docs/benchmarks.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Max replicated write throughput (rate limits lifted, closed loop),
    /// then redis-benchmark SETBIT with the same concurrency.
    Throughput,
    /// An original-site-like day: many mostly idle viewers on a hot-spot
    /// grid with a realistic total write rate and realistic rate limits.
    Day,
    /// Connection capacity: as many idle websockets as the machine holds,
    /// over several gateway and worker processes.
    Connections,
    /// Failover under load: kill -9 the leader of the hot shard, restart
    /// it, repeat.
    Failover,
    /// Restart time: a 2^32-box grid under write load; kill -9 a node,
    /// restart it on its data, time until it serves again, repeat.
    Restart,
    /// Online resharding under load: `raftctl reshard` from `--shards` to
    /// `--reshard-to` shards and back, after a steady-state period.
    Reshard,
    /// A slice of the C10M target this machine can hold: 200,000 users at
    /// the original site's per-user write rate (0.001 Sets/s), half of the
    /// viewports in the first 16 chunks, realistic rate limits; reports
    /// per-connection costs and their projection to 2.5M connections on
    /// one server (see `docs/benchmarks.md`).
    C10m,
}

impl Scenario {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Day => "day",
            Scenario::Connections => "connections",
            Scenario::Failover => "failover",
            Scenario::Restart => "restart",
            Scenario::Reshard => "reshard",
            Scenario::C10m => "c10m",
        }
    }
}

/// `raftctl bench`.
///
/// Every option left out takes the scenario's default, printed in the
/// report's `settings`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Measured phase, in seconds (after every client has connected); for
    /// `failover`, at least until the kills are done and the shard serves
    /// again; for `reshard`, the steady state before the change (the
    /// phase lasts until the change is over, plus 2 s).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Websocket clients in all.
    #[arg(long, alias = "connections")]
    pub clients: Option<u64>,
    /// Gateway processes (clients are spread round-robin over them).
    #[arg(long)]
    pub gateways: Option<u32>,
    /// Load-generator worker processes (default: one per 15,000 clients,
    /// at least one; two for `throughput`).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Total Sets per second over all clients; 0 for idle clients; left
    /// out for as fast as `--inflight` allows (closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Sets a client may have awaiting their Ack. For `throughput`, one
    /// value instead of the `--sweep`.
    #[arg(long)]
    pub inflight: Option<u32>,
    /// `throughput`: one measured phase per `--inflight` value (fresh
    /// connections each, same cluster); the report's main figures are the
    /// best phase's, and redis pipelines are compared with the phase of the
    /// same depth.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub sweep: Vec<u32>,
    /// Chunks each client subscribes to (its viewport).
    #[arg(long)]
    pub viewport: Option<u32>,
    /// Share of clients whose viewport starts in the hot area (the top of
    /// the grid); the others start anywhere, uniformly.
    #[arg(long)]
    pub hot_fraction: Option<f64>,
    /// Size of the hot area, in chunks from chunk 0.
    #[arg(long)]
    pub hot_chunks: Option<u32>,
    /// Clients per loopback source address (127.10.x.y). The gateway's
    /// per-address limits apply to each address.
    #[arg(long, default_value_t = 50)]
    pub per_address: u32,
    /// Boxes in the grid of the benchmark cluster (default 1,000,000;
    /// 2^32 for `restart`).
    #[arg(long)]
    pub boxes: Option<u64>,
    /// Shards of the benchmark cluster.
    #[arg(long, default_value_t = 16)]
    pub shards: u64,
    /// Boxes per chunk.
    #[arg(long, default_value_t = 4096)]
    pub chunk_size: u32,
    /// Extra gateway settings, `FIELD=VALUE` (set as
    /// `CHECKRAFT_GATEWAY_FIELD`), applied after the scenario's own.
    #[arg(long = "gateway-env", value_name = "FIELD=VALUE")]
    pub gateway_env: Vec<String>,
    /// Node settings, `FIELD=VALUE` (set as `CHECKRAFT_NODE_FIELD`, e.g.
    /// `heartbeat_ms=50`); the nodes' defaults otherwise.
    #[arg(long = "node-env", value_name = "FIELD=VALUE")]
    pub node_env: Vec<String>,
    /// How long all clients may take to connect, in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub connect_timeout: f64,
    /// Write `report.json`, `report.md` and the charts (SVG: latency
    /// percentiles, acknowledged sets/s over time with kills and leader
    /// changes marked) into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `throughput`: skip the redis-benchmark comparison.
    #[arg(long)]
    pub no_redis: bool,
    /// `throughput`: seconds per redis-benchmark run (approximately).
    #[arg(long, default_value_t = 5.0)]
    pub redis_seconds: f64,
    /// The kill options of `failover` and `restart` (boxed: it keeps
    /// the `raftctl` command enum small).
    #[command(flatten)]
    pub faults: Box<FaultArgs>,
}

/// The kill options of `failover` and `restart`.
#[derive(Args, Debug, Clone)]
pub struct FaultArgs {
    /// `failover`: leader kills (default 10); `restart`: node restarts
    /// (default 3).
    #[arg(long)]
    pub kills: Option<u32>,
    /// `failover`: seconds between kills (the restarted node must be back
    /// in time, or the next kill can cost the quorum); `restart`: seconds
    /// between a restarted node serving again and the next kill.
    #[arg(long, default_value_t = 6.0)]
    pub kill_every: f64,
    /// `failover`, `restart`: seconds between killing a node and
    /// restarting it (default 0 for `failover`, 5 for `restart`).
    #[arg(long)]
    pub restart_delay: Option<f64>,
    /// `restart`: seconds of write load before the first kill, so that
    /// every group has a long log and several snapshots.
    #[arg(long, default_value_t = 60.0)]
    pub warmup: f64,
    /// `reshard`: the shard count to reshard to, before going back to
    /// `--shards` (default: 4 × `--shards`).
    #[arg(long)]
    pub reshard_to: Option<u64>,
}

/// `raftctl bench-worker` (hidden): one load-generator process, started
/// by `raftctl bench`. Reads `start`/`stop` lines on stdin and writes
/// JSON lines on stdout.
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The worker's plan as JSON (see `bench::plan::WorkerPlan`).
    #[arg(long)]
    pub plan: String,
}

/// The settings of a run: the arguments with the scenario's defaults
/// filled in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// The scenario.
    pub scenario: Scenario,
    /// Measured phase, seconds.
    pub duration_s: f64,
    /// Clients.
    pub clients: u64,
    /// Gateway processes.
    pub gateways: u32,
    /// Worker processes.
    pub workers: u32,
    /// Total Sets per second (`None`: closed loop).
    pub rate: Option<f64>,
    /// Sets awaiting an Ack per client at most.
    pub inflight: u32,
    /// `throughput`: the `inflight` values measured in turn (empty:
    /// just `inflight`).
    pub sweep: Vec<u32>,
    /// Chunks per viewport.
    pub viewport: u32,
    /// Share of hot viewports.
    pub hot_fraction: f64,
    /// Hot area, chunks.
    pub hot_chunks: u32,
    /// Clients per source address.
    pub per_address: u32,
    /// Grid boxes.
    pub boxes: u64,
    /// Shards.
    pub shards: u64,
    /// Chunk size.
    pub chunk_size: u32,
    /// Gateway environment (`CHECKRAFT_GATEWAY_*`), as passed.
    pub gateway_env: Vec<(String, String)>,
    /// Node environment (`CHECKRAFT_NODE_*`), as passed.
    pub node_env: Vec<(String, String)>,
    /// Connect timeout, seconds.
    pub connect_timeout_s: f64,
    /// `failover`: leader kills; `restart`: node restarts; else 0.
    pub kills: u32,
    /// `failover`, `restart`: seconds a killed node stays down.
    pub restart_delay_s: f64,
    /// `restart`: seconds of load before the first kill.
    pub warmup_s: f64,
}

impl Settings {
    /// Fills in the scenario defaults.
    pub fn resolve(a: &BenchArgs) -> anyhow::Result<Self> {
        use Scenario::*;
        let s = a.scenario;
        let clients = a.clients.unwrap_or(match s {
            Throughput => 256,
            Day => 15_000,
            Connections => 100_000,
            Failover => 128,
            Restart => 256,
            Reshard => 1024,
            C10m => 200_000,
        });
        let gateways = a.gateways.unwrap_or(match s {
            Connections | C10m => clients.div_ceil(15_000).max(1) as u32,
            Day => clients.div_ceil(18_000).max(1) as u32,
            _ => 1,
        });
        let workers = a.workers.unwrap_or(match s {
            Throughput | Restart => 2,
            _ => clients.div_ceil(15_000).max(1) as u32,
        });
        let rate = match a.rate {
            Some(r) if r < 0.0 || !r.is_finite() => anyhow::bail!("--rate must be >= 0"),
            Some(r) => Some(r),
            None => match s {
                Throughput => None,
                Day => Some(300.0),
                Connections => Some(0.0),
                Failover => Some(1000.0),
                Restart => Some(20_000.0),
                Reshard => Some(2000.0),
                C10m => Some(clients as f64 * C10M_SETS_PER_USER_PER_S),
            },
        };
        let hot_fraction = a.hot_fraction.unwrap_or(match s {
            Throughput | Restart | Reshard => 0.0,
            C10m => 0.5,
            _ => 0.8,
        });
        anyhow::ensure!(
            (0.0..=1.0).contains(&hot_fraction),
            "--hot-fraction must be between 0 and 1"
        );
        anyhow::ensure!(clients > 0, "--clients must be positive");
        anyhow::ensure!(
            gateways > 0 && workers > 0,
            "--gateways and --workers must be positive"
        );
        anyhow::ensure!(
            clients.div_ceil(u64::from(workers)) <= 19_000,
            "{clients} clients over {workers} workers exceeds ~19k sockets per process: add --workers"
        );
        anyhow::ensure!(a.per_address > 0, "--per-address must be positive");
        let mut gateway_env = scenario_gateway_env(s, clients, gateways, a.per_address);
        for kv in &a.gateway_env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--gateway-env {kv}: expected FIELD=VALUE"))?;
            let key = format!("CHECKRAFT_GATEWAY_{}", k.to_uppercase());
            gateway_env.retain(|(old, _)| *old != key);
            gateway_env.push((key, v.to_string()));
        }
        let node_env = a
            .node_env
            .iter()
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--node-env {kv}: expected FIELD=VALUE"))?;
                Ok((
                    format!("CHECKRAFT_NODE_{}", k.to_uppercase()),
                    v.to_string(),
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let kills = a.faults.kills.unwrap_or(match s {
            Failover => 10,
            Restart => 3,
            _ => 0,
        });
        let restart_delay_s = a.faults.restart_delay.unwrap_or(match s {
            Restart => 5.0,
            _ => 0.0,
        });
        anyhow::ensure!(
            restart_delay_s >= 0.0 && a.faults.warmup >= 0.0 && a.faults.kill_every >= 0.0,
            "--restart-delay, --warmup and --kill-every must be >= 0"
        );
        Ok(Self {
            scenario: s,
            duration_s: a.duration.unwrap_or(match s {
                Throughput => 30.0,
                Day => 60.0,
                Connections => 20.0,
                Failover => f64::from(kills) * a.faults.kill_every + 1.5,
                // At least; the phase lasts until the last restart served.
                Restart => {
                    a.faults.warmup + f64::from(kills) * (restart_delay_s + a.faults.kill_every)
                }
                Reshard => 20.0,
                C10m => 60.0,
            }),
            clients,
            gateways,
            workers,
            rate,
            inflight: a.inflight.unwrap_or(match s {
                Throughput => 16,
                _ => 32,
            }),
            sweep: match (s, a.inflight) {
                (Throughput, None) => a.sweep.iter().map(|d| (*d).max(1)).collect(),
                _ => Vec::new(),
            },
            viewport: a.viewport.unwrap_or(1),
            hot_fraction,
            hot_chunks: a.hot_chunks.unwrap_or(match s {
                C10m => 16,
                _ => 4,
            }),
            per_address: a.per_address,
            boxes: a.boxes.unwrap_or(match s {
                Restart => 1 << 32,
                _ => 1_000_000,
            }),
            shards: a.shards,
            chunk_size: a.chunk_size,
            gateway_env,
            node_env,
            connect_timeout_s: a.connect_timeout,
            kills,
            restart_delay_s,
            warmup_s: a.faults.warmup,
        })
    }
}

/// The gateway settings each scenario sets explicitly, whatever the
/// gateway's defaults are: rate limits lifted where raw capacity is
/// measured, realistic ones elsewhere.
fn scenario_gateway_env(
    s: Scenario,
    clients: u64,
    gateways: u32,
    per_address: u32,
) -> Vec<(String, String)> {
    let per_gateway = clients.div_ceil(u64::from(gateways));
    let max_connections = (per_gateway + 100).max(1000).to_string();
    let per_ip = per_address.max(256).to_string();
    let lifted = "1000000";
    let mut env: Vec<(&str, String)> = vec![
        ("WS_MAX_CONNECTIONS", max_connections),
        ("WS_MAX_CONNECTIONS_PER_IP", per_ip),
        ("BATCH_TICK_MS", "5".into()),
        ("WS_FANOUT_TICK_MS", "20".into()),
        ("WS_STATS_INTERVAL_MS", "5000".into()),
    ];
    match s {
        Scenario::Throughput | Scenario::Failover | Scenario::Restart | Scenario::Reshard => env
            .extend([
                ("WS_SETS_PER_SECOND", lifted.into()),
                ("WS_SETS_BURST", lifted.into()),
                ("WS_IP_SETS_PER_SECOND", lifted.into()),
                ("WS_IP_SETS_BURST", lifted.into()),
            ]),
        Scenario::Day | Scenario::Connections | Scenario::C10m => env.extend([
            ("WS_SETS_PER_SECOND", "7".into()),
            ("WS_SETS_BURST", "10".into()),
            ("WS_IP_SETS_PER_SECOND", "7".into()),
            ("WS_IP_SETS_BURST", "10".into()),
        ]),
    }
    env.into_iter()
        .map(|(k, v)| (format!("CHECKRAFT_GATEWAY_{k}"), v))
        .collect()
}
