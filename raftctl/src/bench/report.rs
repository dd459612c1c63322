//! The report of a run: built from the workers' final reports and the
//! gateway snapshots, written as `report.json`, `report.md` and the
//! charts ([`charts`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::args::{Scenario, Settings};
use super::charts;
use super::elections::ElectionSummary;
use super::failover::FailoverSummary;
use super::latency::{Latency, LatencySummary};
use super::lines::{Counts, WorkerFinal};
use super::procfs::Machine;
use super::projection::{self, Measured, Projection};
use super::redis::RedisComparison;
use super::reshard::ReshardSummary;
use super::restart::RestartSummary;
use super::scrape::GatewaySnapshot;
use super::timeline::RatePoint;

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The command line that produced it.
    pub command: String,
    /// When it started (UTC).
    pub date: String,
    /// Where it ran.
    pub machine: Machine,
    /// The settings, defaults filled in.
    pub settings: Settings,
    /// Connections.
    pub clients: ClientsSummary,
    /// The measured phase, seconds (longest worker view).
    pub window_s: f64,
    /// When the measured phase started (`CLOCK_MONOTONIC` ns): time zero
    /// of `timeline` and of the charts' markers.
    pub start_ns: u64,
    /// Acknowledged sets per second over the measured phase.
    pub timeline: Vec<RatePoint>,
    /// Writes.
    pub sets: SetsSummary,
    /// What the clients received.
    pub delivery: DeliverySummary,
    /// Gateway processes: memory and CPU.
    pub gateways: GatewaySummary,
    /// Errors, rejections and events by reason: the workers' view
    /// (`ack ...`, `close ...`, `connect: ...`, `resync ...`) and the
    /// gateways' rejection and resync counters over the run
    /// (`gateway ...`).
    pub errors: BTreeMap<String, u64>,
    /// Every phase of a `throughput` sweep (the figures above are the
    /// best phase's).
    pub sweep: Option<Vec<SweepRow>>,
    /// The redis-benchmark comparison (`throughput`).
    pub redis: Option<RedisComparison>,
    /// Leader kills (`failover`).
    pub failover: Option<FailoverSummary>,
    /// Node restarts (`restart`).
    pub restart: Option<RestartSummary>,
    /// Elections and leader changes over the whole run (all phases),
    /// spurious ones apart.
    pub elections: Option<ElectionSummary>,
    /// Splits and merges under load (`reshard`).
    pub reshard: Option<ReshardSummary>,
    /// Per-connection costs projected to one server's worth of
    /// connections (`c10m`).
    pub projection: Option<Projection>,
}

/// One phase of a `throughput` sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// Sets in flight per client.
    pub inflight: u32,
    /// Acknowledged sets per second.
    pub acked_per_s: f64,
    /// Set→Ack latency.
    pub ack_latency: LatencySummary,
    /// Set→seen latency.
    pub seen_latency: LatencySummary,
    /// Gateway CPU, cores.
    pub gateway_cpu_cores: f64,
    /// Load-generator CPU (all workers), cores.
    pub worker_cpu_cores: f64,
    /// When the phase started (`CLOCK_MONOTONIC` ns).
    pub start_ns: u64,
    /// Acknowledged sets per second over the phase.
    pub timeline: Vec<RatePoint>,
}

impl SweepRow {
    /// The row of a phase's report.
    pub fn of(r: &Report) -> Self {
        Self {
            inflight: r.settings.inflight,
            acked_per_s: r.sets.acked_per_s,
            ack_latency: r.sets.ack_latency.clone(),
            seen_latency: r.sets.seen_latency.clone(),
            gateway_cpu_cores: r.gateways.cpu_cores,
            worker_cpu_cores: r.gateways.worker_cpu_cores,
            start_ns: r.start_ns,
            timeline: r.timeline.clone(),
        }
    }
}

/// Connection counts.
#[derive(Debug, Serialize)]
pub struct ClientsSummary {
    /// Clients asked for.
    pub requested: u64,
    /// Clients whose handshake completed.
    pub connected: u64,
    /// Clients that failed to connect.
    pub connect_failed: u64,
    /// Connections that ended before the run did.
    pub dropped: u64,
    /// Seconds from the first worker start until all were connected.
    pub connect_s: f64,
}

/// Write figures.
#[derive(Debug, Serialize)]
pub struct SetsSummary {
    /// Sets sent in the measured phase.
    pub sent: u64,
    /// Sets not sent because a client's window was full.
    pub skipped: u64,
    /// Acks `applied` in the measured phase.
    pub applied: u64,
    /// Acks with another status in the measured phase.
    pub rejected: u64,
    /// Sets without an Ack after the drain.
    pub unacked: u64,
    /// `applied / window_s`: acknowledged (replicated, fsynced) sets per
    /// second.
    pub acked_per_s: f64,
    /// Set→Ack latency.
    pub ack_latency: LatencySummary,
    /// Set→seen-by-another-client latency (one sample per observing
    /// client in the writer's worker).
    pub seen_latency: LatencySummary,
}

/// Delivery figures.
#[derive(Debug, Serialize)]
pub struct DeliverySummary {
    /// Update entries (box changes) received per second, all clients.
    pub updates_per_s: f64,
    /// Websocket messages received per second, all clients.
    pub frames_per_s: f64,
    /// Payload bytes received per connected client per second (client
    /// side).
    pub client_bytes_per_client_per_s: f64,
    /// `ws_bytes_out_total` delta over the window, per connected client
    /// per second (gateway side; payload bytes, no framing or TCP).
    pub gateway_bytes_per_client_per_s: Option<f64>,
}

/// Gateway process figures.
#[derive(Debug, Serialize)]
pub struct GatewaySummary {
    /// Gateway processes.
    pub count: u32,
    /// Their summed RSS before any client connected, bytes.
    pub rss_before_bytes: u64,
    /// Their summed RSS with all clients connected, bytes.
    pub rss_connected_bytes: u64,
    /// `(rss_connected - rss_before) / connected`, bytes.
    pub rss_per_connection_bytes: f64,
    /// Kernel memory growth (slab and TCP buffers, machine-wide, both
    /// socket ends) per connection, bytes.
    pub kernel_per_connection_bytes: f64,
    /// Gateway CPU seconds per second during the window.
    pub cpu_cores: f64,
    /// Gateway CPU per connection: microseconds per second.
    pub cpu_us_per_connection_per_s: f64,
    /// Load-generator RSS per client (workers' own memory), bytes.
    pub worker_rss_per_client_bytes: f64,
    /// Load-generator CPU (all `bench-worker` processes) during the
    /// window, cores.
    pub worker_cpu_cores: f64,
    /// [`Self::worker_cpu_cores`] as a share of the machine's cores (0 to
    /// 1): near 1, the load generator is the bottleneck.
    pub worker_cpu_share: f64,
    /// Nodes' CPU during the window, cores (not meaningful in `failover`,
    /// where node processes are replaced).
    pub node_cpu_cores: f64,
}

/// The gateway snapshots of a run.
pub struct Snapshots {
    /// Before the workers started.
    pub before: GatewaySnapshot,
    /// All connected, at `start`.
    pub start: GatewaySnapshot,
    /// At `stop`.
    pub stop: GatewaySnapshot,
}

impl Report {
    /// Combines the workers' reports and the snapshots.
    pub fn build(
        settings: &Settings,
        machine: Machine,
        date: String,
        finals: &[WorkerFinal],
        snaps: &Snapshots,
        connect_s: f64,
    ) -> Self {
        let mut window = Counts::default();
        let mut total = Counts::default();
        let mut ack = Latency::default();
        let mut seen = Latency::default();
        let mut errors = BTreeMap::new();
        let mut unacked = 0;
        let mut worker_rss = 0;
        let mut worker_cpu = 0.0;
        let mut window_s: f64 = 0.0;
        for f in finals {
            window.add(&f.window);
            total.add(&f.total);
            ack.merge(&f.ack_latency);
            seen.merge(&f.seen_latency);
            for (k, v) in &f.errors {
                *errors.entry(k.clone()).or_insert(0) += v;
            }
            unacked += f.unacked;
            worker_rss += f.rss_bytes;
            worker_cpu += f.cpu_seconds;
            window_s = window_s.max(f.window_s);
        }
        for (name, value) in &snaps.stop.metrics {
            let labelled = name.starts_with("checkraft_gateway_ws_rejections_total{")
                || name.starts_with("checkraft_gateway_ws_resyncs_total{");
            let before = snaps.before.metrics.get(name).copied().unwrap_or(0.0);
            if labelled && value - before > 0.0 {
                let short = name
                    .trim_start_matches("checkraft_gateway_ws_")
                    .replace("_total", "");
                errors.insert(format!("gateway {short}"), (value - before) as u64);
            }
        }
        let secs = window_s.max(1e-9);
        let connected = total.connected.max(1) as f64;
        let per_client_s = |v: f64| v / connected / secs;
        let rss_growth = snaps.start.rss_bytes as f64 - snaps.before.rss_bytes as f64;
        let kernel_growth =
            snaps.start.kernel_socket_bytes as f64 - snaps.before.kernel_socket_bytes as f64;
        let cpu = (snaps.stop.cpu_seconds - snaps.start.cpu_seconds).max(0.0);
        let cpus = machine.cpus.max(1) as f64;
        let mut report = Report {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            date,
            machine,
            settings: settings.clone(),
            clients: ClientsSummary {
                requested: settings.clients,
                connected: total.connected,
                connect_failed: total.connect_failed,
                dropped: total.dropped,
                connect_s,
            },
            window_s,
            start_ns: 0,
            timeline: Vec::new(),
            sets: SetsSummary {
                sent: window.sets_sent,
                skipped: window.sets_skipped,
                applied: window.acks_applied,
                rejected: window.acks_rejected,
                unacked,
                acked_per_s: window.acks_applied as f64 / secs,
                ack_latency: ack.summary(),
                seen_latency: seen.summary(),
            },
            delivery: DeliverySummary {
                updates_per_s: window.updates as f64 / secs,
                frames_per_s: window.frames as f64 / secs,
                client_bytes_per_client_per_s: per_client_s(window.bytes_in as f64),
                gateway_bytes_per_client_per_s: snaps
                    .stop
                    .delta(&snaps.start, "checkraft_gateway_ws_bytes_out_total")
                    .map(per_client_s),
            },
            gateways: GatewaySummary {
                count: settings.gateways,
                rss_before_bytes: snaps.before.rss_bytes,
                rss_connected_bytes: snaps.start.rss_bytes,
                rss_per_connection_bytes: rss_growth / connected,
                kernel_per_connection_bytes: kernel_growth / connected,
                cpu_cores: cpu / secs,
                cpu_us_per_connection_per_s: cpu * 1e6 / secs / connected,
                worker_rss_per_client_bytes: worker_rss as f64 / connected,
                worker_cpu_cores: worker_cpu / secs,
                worker_cpu_share: worker_cpu / secs / cpus,
                node_cpu_cores: (snaps.stop.node_cpu_seconds - snaps.start.node_cpu_seconds)
                    .max(0.0)
                    / secs,
            },
            errors,
            sweep: None,
            redis: None,
            failover: None,
            restart: None,
            elections: None,
            reshard: None,
            projection: None,
        };
        if settings.scenario == Scenario::C10m {
            let m = report.measured(&window, snaps);
            report.projection = Some(projection::project(&m, projection::TARGET_CONNECTIONS));
        }
        report
    }

    /// The per-connection figures of the measured phase, for the
    /// projection (`window`: the clients' counters over it).
    fn measured(&self, window: &Counts, snaps: &Snapshots) -> Measured {
        let connected = self.clients.connected;
        let per_conn_s = |v: f64| v / connected.max(1) as f64 / self.window_s.max(1e-9);
        let gateway = |metric: &str| {
            snaps
                .stop
                .delta(&snaps.start, &format!("checkraft_gateway_{metric}"))
                .map(per_conn_s)
        };
        let g = &self.gateways;
        Measured {
            connections: connected,
            gateway_cpu_us_per_s: g.cpu_us_per_connection_per_s,
            rss_bytes: g.rss_per_connection_bytes,
            kernel_bytes_both_ends: g.kernel_per_connection_bytes,
            payload_out: gateway("ws_bytes_out_total")
                .unwrap_or(self.delivery.client_bytes_per_client_per_s),
            frames_out: gateway("ws_messages_out_total")
                .unwrap_or_else(|| per_conn_s(window.frames as f64)),
            flushes_out: gateway("ws_flushes_total")
                .unwrap_or_else(|| per_conn_s(window.frames as f64)),
            header_bytes_out: (window.header_bytes_in > 0)
                .then(|| per_conn_s(window.header_bytes_in as f64)),
            payload_in: gateway("ws_bytes_in_total").unwrap_or(0.0),
            frames_in: gateway("ws_messages_in_total")
                .unwrap_or_else(|| per_conn_s(self.sets.sent as f64)),
            node_cores: g.node_cpu_cores,
            seen_p99_ms: self.sets.seen_latency.p99_ms,
            seen_samples: self.sets.seen_latency.count,
        }
    }

    /// The markdown summary.
    pub fn markdown(&self) -> String {
        let s = &self.settings;
        let mut md = String::new();
        let _ = writeln!(md, "## `raftctl bench {}`\n", s.scenario.name());
        let _ = writeln!(md, "- command: `{}`", self.command);
        let _ = writeln!(
            md,
            "- date: {}; machine: {} CPUs ({}), {} GiB, kernel {}, load at start {}",
            self.date,
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.memory_gib,
            self.machine.kernel,
            self.machine.load_at_start
        );
        let rate = match s.rate {
            None => format!("closed loop, {} in flight per client", s.inflight),
            Some(0.0) => "idle (no Sets)".into(),
            Some(r) => format!(
                "{r} Sets/s in all (Poisson), at most {} in flight per client",
                s.inflight
            ),
        };
        let _ = writeln!(
            md,
            "- load: {} clients ({} connected, {} failed) over {} gateway(s) and {} worker(s), {} per source address; {rate}; viewport {} chunk(s), {:.0}% in the first {} chunks; {:.1} s measured",
            s.clients,
            self.clients.connected,
            self.clients.connect_failed,
            s.gateways,
            s.workers,
            s.per_address,
            s.viewport,
            s.hot_fraction * 100.0,
            s.hot_chunks,
            self.window_s
        );
        let env = |env: &[(String, String)], prefix: &str| {
            env.iter()
                .map(|(k, v)| format!("`{}={v}`", k.trim_start_matches(prefix)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let node_env = match s.node_env.is_empty() {
            true => "defaults".to_string(),
            false => env(&s.node_env, "CHECKRAFT_NODE_"),
        };
        let _ = writeln!(
            md,
            "- cluster: 3 nodes (fsync on), {} boxes, {} shards, chunk {}; node env: {node_env}; gateway env: {}\n",
            s.boxes,
            s.shards,
            s.chunk_size,
            env(&s.gateway_env, "CHECKRAFT_GATEWAY_")
        );
        let a = &self.sets.ack_latency;
        let v = &self.sets.seen_latency;
        let d = &self.delivery;
        let g = &self.gateways;
        let _ = writeln!(md, "| figure | value |\n|---|---|");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(md, "| {k} | {v} |");
        };
        row(
            "acknowledged sets/s",
            format!("{:.0}", self.sets.acked_per_s),
        );
        row(
            "sets sent / applied / rejected / unacked",
            format!(
                "{} / {} / {} / {}",
                self.sets.sent, self.sets.applied, self.sets.rejected, self.sets.unacked
            ),
        );
        row(
            "set→ack p50 / p99 / p999 / max",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} ms ({} samples)",
                a.p50_ms, a.p99_ms, a.p999_ms, a.max_ms, a.count
            ),
        );
        row(
            "set→seen by another client p50 / p99",
            format!("{:.2} / {:.2} ms ({} samples)", v.p50_ms, v.p99_ms, v.count),
        );
        row("updates delivered/s", format!("{:.0}", d.updates_per_s));
        row("frames delivered/s", format!("{:.0}", d.frames_per_s));
        row(
            "bytes per client per s (gateway ws_bytes_out / client payload)",
            format!(
                "{} / {:.1}",
                d.gateway_bytes_per_client_per_s
                    .map_or("n/a".into(), |b| format!("{b:.1}")),
                d.client_bytes_per_client_per_s
            ),
        );
        row(
            "gateway RSS per connection",
            format!(
                "{:.0} B ({:.1} MB before, {:.1} MB connected)",
                g.rss_per_connection_bytes,
                g.rss_before_bytes as f64 / 1e6,
                g.rss_connected_bytes as f64 / 1e6
            ),
        );
        row(
            "kernel memory per connection (slab + TCP buffers, both ends)",
            format!("{:.0} B", g.kernel_per_connection_bytes),
        );
        row(
            "gateway CPU",
            format!(
                "{:.2} cores, {:.2} µs/s per connection",
                g.cpu_cores, g.cpu_us_per_connection_per_s
            ),
        );
        row(
            &format!(
                "CPU cores: gateways / nodes / load generator (of {})",
                self.machine.cpus
            ),
            format!(
                "{:.2} / {:.2} / {:.2}",
                g.cpu_cores, g.node_cpu_cores, g.worker_cpu_cores
            ),
        );
        row(
            &format!("load-generator CPU ({} bench-worker processes)", s.workers),
            format!(
                "{:.2} cores, {:.0}% of the machine's {} cores",
                g.worker_cpu_cores,
                g.worker_cpu_share * 100.0,
                self.machine.cpus
            ),
        );
        row(
            "load-generator RSS per client",
            format!("{:.0} B", g.worker_rss_per_client_bytes),
        );
        row("connect time", format!("{:.1} s", self.clients.connect_s));
        if !self.errors.is_empty() {
            let _ = writeln!(md, "\nErrors, rejections and events by reason:\n");
            for (k, v) in &self.errors {
                let _ = writeln!(md, "- {k}: {v}");
            }
        }
        if let Some(rows) = &self.sweep {
            let _ = writeln!(
                md,
                "\nSweep (the figures above are the best phase's):\n\n\
                 | in flight per client | acknowledged sets/s | set→ack p50 / p99 ms | set→seen p50 / p99 ms | gateway CPU cores | load-generator CPU cores |\n|---|---|---|---|---|---|"
            );
            for r in rows {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} | {:.2} |",
                    r.inflight,
                    r.acked_per_s,
                    r.ack_latency.p50_ms,
                    r.ack_latency.p99_ms,
                    r.seen_latency.p50_ms,
                    r.seen_latency.p99_ms,
                    r.gateway_cpu_cores,
                    r.worker_cpu_cores
                );
            }
        }
        if let Some(r) = &self.redis {
            md.push('\n');
            md.push_str(&r.markdown());
        }
        if let Some(f) = &self.failover {
            md.push('\n');
            md.push_str(&f.markdown());
        }
        if let Some(r) = &self.restart {
            md.push('\n');
            md.push_str(&r.markdown());
        }
        if let Some(e) = &self.elections {
            md.push('\n');
            md.push_str(&e.markdown());
        }
        if let Some(r) = &self.reshard {
            md.push('\n');
            md.push_str(&r.markdown());
        }
        if let Some(p) = &self.projection {
            md.push('\n');
            md.push_str(&p.markdown());
        }
        md
    }

    /// Writes `report.json`, `report.md` and the charts into `dir`;
    /// returns the names of the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<&'static str>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)
            .context("writing report.json")?;
        std::fs::write(dir.join("report.md"), self.markdown()).context("writing report.md")?;
        let mut files = vec!["report.json", "report.md"];
        files.extend(charts::write(self, dir)?);
        Ok(files)
    }
}

/// The current UTC time, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_now_is_well_formed() {
        let t = super::utc_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
