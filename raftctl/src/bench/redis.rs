//! The peer in the same run: Debian's `redis-server`, loaded by
//! `redis-benchmark` with SETBIT at random indices under 1M, with the same
//! client count as our run, unpipelined and with pipeline 16, without
//! persistence and with `appendfsync always` (the durable peer).
//!
//! Caveat: `redis-benchmark` 7 replaces `__rand_int__` by a 12-digit
//! zero-padded number, which SETBIT refuses as an offset ("bit offset is
//! not an integer"), so the random index goes into the key:
//! `SETBIT b:__rand_int__ 0 1` (up to 1M one-bit keys). Same command and
//! reply; the per-operation work is comparable.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::supervisor::{find_binary, Supervisor};

/// One redis-benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct RedisRun {
    /// `none` (`--save '' --appendonly no`) or `aof_always`
    /// (`--appendonly yes --appendfsync always`).
    pub persistence: String,
    /// `-P`.
    pub pipeline: u32,
    /// `-c`.
    pub clients: u64,
    /// `-n`.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// The redis-benchmark command line.
    pub command: String,
    /// Our acknowledged sets/s with as many Sets in flight per client as
    /// this run's pipeline depth, if measured.
    pub ours_same_depth: Option<f64>,
    /// `ours_same_depth / rps`.
    pub same_depth_ratio: Option<f64>,
    /// Our best acknowledged sets/s divided by `rps`.
    pub ours_over_redis: f64,
}

/// All redis runs of a throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct RedisComparison {
    /// `redis-server --version`.
    pub version: String,
    /// Our best acknowledged sets/s.
    pub ours_best: f64,
    /// The runs.
    pub runs: Vec<RedisRun>,
}

impl RedisComparison {
    /// The markdown table.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "Same-run peer: {} (`SETBIT b:__rand_int__ 0 1`, `-r 1000000`), after our cluster stopped. \
             Ours at the same depth = our phase with as many Sets in flight per client as the pipeline; \
             ours best = {:.0} acknowledged sets/s.\n\n\
             | redis persistence | pipeline | clients | redis ops/s | redis p50 / p99 ms | ours, same depth | ours / redis, same depth | ours best / redis |\n\
             |---|---|---|---|---|---|---|---|\n",
            self.version, self.ours_best
        );
        for r in &self.runs {
            md += &format!(
                "| {} | {} | {} | {:.0} | {:.2} / {:.2} | {} | {} | {:.3} |\n",
                r.persistence,
                r.pipeline,
                r.clients,
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.ours_same_depth
                    .map_or("n/a".into(), |o| format!("{o:.0}")),
                r.same_depth_ratio
                    .map_or("n/a".into(), |o| format!("{o:.3}")),
                r.ours_over_redis
            );
        }
        md
    }
}

/// Runs the four redis-benchmark runs, each roughly `seconds` long,
/// against a fresh redis-server per persistence mode in `dir`. `ours` is
/// our acknowledged sets/s by Sets in flight per client.
pub async fn compare(
    clients: u64,
    seconds: f64,
    ours: &[(u32, f64)],
    dir: &Path,
) -> Result<RedisComparison> {
    let best = ours.iter().map(|o| o.1).fold(0.0, f64::max);
    let server = find_binary("redis-server")
        .context("the comparison needs Debian's redis-server (apt-get install redis-server), or pass --no-redis")?;
    let bench = find_binary("redis-benchmark")?;
    let version = tokio::process::Command::new(&server)
        .arg("--version")
        .output()
        .await?;
    let version = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mut runs = Vec::new();
    for (id, persistence) in [(1, "none"), (2, "aof_always")] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data = dir.join(format!("redis-{persistence}"));
        std::fs::create_dir_all(&data)?;
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
            "--save",
            "",
            "--dir",
            &data.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(
            match persistence {
                "none" => vec!["--appendonly", "no"],
                _ => vec!["--appendonly", "yes", "--appendfsync", "always"],
            }
            .into_iter()
            .map(String::from),
        );
        let mut sup = Supervisor::default();
        let addr = format!("127.0.0.1:{port}");
        sup.spawn(&server, "redis", id, &addr, dir, &args, &[])?;
        let outcome = async {
            wait_port(&addr).await?;
            let mut out = Vec::new();
            for pipeline in [1u32, 16] {
                // A short calibration run sizes -n for about `seconds`.
                let probe = (clients * 100).max(5_000);
                let (rps, ..) = run_benchmark(&bench, port, clients, probe, pipeline).await?;
                let requests = ((rps * seconds) as u64).max(probe);
                let (rps, p50, p99, command) =
                    run_benchmark(&bench, port, clients, requests, pipeline).await?;
                let same = ours.iter().find(|o| o.0 == pipeline).map(|o| o.1);
                out.push(RedisRun {
                    persistence: persistence.into(),
                    pipeline,
                    clients,
                    requests,
                    rps,
                    p50_ms: p50,
                    p99_ms: p99,
                    command,
                    ours_same_depth: same,
                    same_depth_ratio: same.map(|o| o / rps),
                    ours_over_redis: best / rps,
                });
            }
            anyhow::Ok(out)
        }
        .await;
        sup.stop().await;
        runs.extend(outcome?);
    }
    Ok(RedisComparison {
        version,
        ours_best: best,
        runs,
    })
}

async fn wait_port(addr: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("redis-server did not listen on {addr} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One redis-benchmark run: `(rps, p50_ms, p99_ms, command line)`.
async fn run_benchmark(
    bench: &Path,
    port: u16,
    clients: u64,
    requests: u64,
    pipeline: u32,
) -> Result<(f64, f64, f64, String)> {
    let args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-c",
        &clients.to_string(),
        "-n",
        &requests.to_string(),
        "-P",
        &pipeline.to_string(),
        "-r",
        "1000000",
        "--csv",
        "setbit",
        "b:__rand_int__",
        "0",
        "1",
    ]
    .map(String::from)
    .to_vec();
    let command = format!("redis-benchmark {}", args.join(" "));
    let run = tokio::process::Command::new(bench)
        .args(&args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .context("redis-benchmark ran for over 5 minutes")??;
    let text = String::from_utf8_lossy(&out.stdout);
    let (rps, p50, p99) = parse_csv(&text).with_context(|| {
        format!(
            "unexpected redis-benchmark output for `{command}`: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((rps, p50, p99, command))
}

/// `(rps, p50_ms, p99_ms)` from redis-benchmark's `--csv` output.
fn parse_csv(text: &str) -> Option<(f64, f64, f64)> {
    let mut lines = text.lines().filter(|l| l.starts_with('"'));
    let header: Vec<String> = lines
        .next()?
        .split(',')
        .map(|f| f.replace('"', ""))
        .collect();
    let row: Vec<String> = lines
        .next()?
        .split(',')
        .map(|f| f.replace('"', ""))
        .collect();
    let field = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| h == name)?;
        row.get(i)?.parse().ok()
    };
    Some((
        field("rps")?,
        field("p50_latency_ms")?,
        field("p99_latency_ms")?,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"setbit b:__rand_int__ 0 1\",\"51759.83\",\"0.646\",\"0.120\",\"0.591\",\"1.039\",\"1.847\",\"18.991\"\n";
        assert_eq!(super::parse_csv(text), Some((51759.83, 0.591, 1.847)));
    }
}
