//! `raftctl bench` on tiny runs (`throughput`, `day`, `restart`,
//! `reshard`, `c10m`): it starts its own cluster, drives it over the websocket
//! protocol, reports well-formed numbers in `report.json` (fields present,
//! counts positive where they must be, latencies finite and ordered),
//! writes its SVG charts, and stops by itself within its bound. Nothing
//! here depends on how fast the machine is.

use std::path::Path;
use std::time::{Duration, Instant};

use checkraft_integration::bin_dir;
use serde_json::Value;

/// A tiny run must be over well within this.
const BOUND: Duration = Duration::from_secs(150);

/// Runs `raftctl bench ARGS --out <tmp>` (killed after [`BOUND`]) and
/// returns the parsed `report.json` and stdout.
async fn bench(args: &[&str]) -> (Value, String) {
    let out = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let run = tokio::process::Command::new(bin_dir().join("raftctl"))
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(out.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BOUND, run)
        .await
        .unwrap_or_else(|_| panic!("raftctl bench {args:?} did not stop within {BOUND:?}"))
        .expect("spawn raftctl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "raftctl bench {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    eprintln!("raftctl bench {args:?} took {:?}", began.elapsed());
    let report = read_json(&out.path().join("report.json"));
    for chart in [
        "ack-latency.svg",
        "seen-latency.svg",
        "acked-per-second.svg",
    ] {
        let svg = std::fs::read_to_string(out.path().join(chart))
            .unwrap_or_else(|e| panic!("{chart} not written: {e}"));
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{chart}: {svg}"
        );
    }
    num(&report, "elections.spurious_leader_changes");
    assert!(num(&report, "elections.scrapes") > 0.0, "{report:#}");
    let md = std::fs::read_to_string(out.path().join("report.md")).expect("report.md written");
    assert!(md.contains("acknowledged sets/s"), "report.md: {md}");
    assert!(
        stdout.contains("acknowledged sets/s"),
        "markdown on stdout: {stdout}"
    );
    (report, stdout)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("report.json written");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report.json is not JSON ({e}): {text}"))
}

/// `v[path]` as a finite number, panicking with the report otherwise.
fn num(v: &Value, path: &str) -> f64 {
    let mut at = v;
    for key in path.split('.') {
        at = &at[key];
    }
    let n = at
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"));
    assert!(n.is_finite(), "{path} = {n}");
    n
}

/// A latency summary with samples, ordered percentiles.
fn assert_latency(report: &Value, path: &str) {
    let count = num(report, &format!("{path}.count"));
    assert!(count > 0.0, "{path} has no samples");
    let p: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]
        .iter()
        .map(|q| num(report, &format!("{path}.{q}")))
        .collect();
    assert!(p[0] > 0.0, "{path}.p50_ms is {}", p[0]);
    assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "{path} not ordered: {p:?}"
    );
}

/// The parts every scenario reports.
fn assert_common(report: &Value, scenario: &str, clients: u64) {
    assert_eq!(report["settings"]["scenario"], scenario);
    assert_eq!(num(report, "clients.requested") as u64, clients);
    assert_eq!(
        num(report, "clients.connected") as u64,
        clients,
        "every client connects: {report:#}"
    );
    assert_eq!(num(report, "clients.dropped"), 0.0, "{report:#}");
    assert!(num(report, "window_s") > 0.5);
    assert!(num(report, "sets.applied") > 0.0, "{report:#}");
    assert!(num(report, "sets.acked_per_s") > 0.0);
    assert_latency(report, "sets.ack_latency");
    assert!(num(report, "delivery.frames_per_s") > 0.0);
    assert!(num(report, "delivery.client_bytes_per_client_per_s") > 0.0);
    assert!(num(report, "delivery.gateway_bytes_per_client_per_s") > 0.0);
    assert!(num(report, "gateways.rss_connected_bytes") > 0.0);
    num(report, "gateways.rss_per_connection_bytes");
    assert!(report["errors"].is_object());
    assert!(report["machine"]["cpus"].as_u64().unwrap() > 0);
    assert!(report["command"].as_str().unwrap().contains("bench"));
    // Issue 16: the load generator's CPU in every report.
    assert!(num(report, "gateways.worker_cpu_cores") > 0.0, "{report:#}");
    let share = num(report, "gateways.worker_cpu_share");
    assert!(share > 0.0 && share <= 1.0, "{report:#}");
}

#[tokio::test]
async fn throughput_reports_ours_and_redis() {
    let redis = which("redis-server") && which("redis-benchmark");
    let mut args = vec![
        "throughput",
        "--clients",
        "8",
        "--workers",
        "2",
        "--duration",
        "3",
        "--boxes",
        "40000",
        "--shards",
        "4",
        "--redis-seconds",
        "0.5",
        "--sweep",
        "1,16",
    ];
    if !redis {
        eprintln!("redis-server or redis-benchmark missing: running without the comparison");
        args.push("--no-redis");
    }
    let (report, stdout) = bench(&args).await;
    assert_common(&report, "throughput", 8);
    assert_eq!(
        num(&report, "sets.rejected"),
        0.0,
        "rate limits are lifted: {report:#}"
    );
    let sweep = report["sweep"].as_array().expect("sweep rows");
    assert_eq!(sweep.len(), 2, "one phase per --sweep depth");
    for row in sweep {
        assert!(num(row, "acked_per_s") > 0.0, "{row:#}");
        assert!(num(row, "ack_latency.p50_ms") <= num(row, "ack_latency.p99_ms"));
    }
    if redis {
        let runs = report["redis"]["runs"].as_array().expect("redis runs");
        assert_eq!(runs.len(), 4, "two persistence modes x two pipelines");
        for r in runs {
            assert!(num(r, "rps") > 0.0, "{r:#}");
            assert!(num(r, "ours_over_redis") > 0.0, "{r:#}");
            assert!(
                num(r, "same_depth_ratio") > 0.0,
                "pipelines 1 and 16 were swept: {r:#}"
            );
            assert!(num(r, "p50_ms") <= num(r, "p99_ms"), "{r:#}");
        }
        assert!(stdout.contains("ours / redis"), "{stdout}");
    }
}

#[tokio::test]
async fn day_reports_click_to_visible() {
    let (report, _) = bench(&[
        "day",
        "--clients",
        "30",
        "--rate",
        "30",
        "--duration",
        "4",
        "--boxes",
        "40000",
        "--shards",
        "4",
        "--per-address",
        "5",
    ])
    .await;
    assert_common(&report, "day", 30);
    // 80% of 30 viewports share 4 chunks: others see most writes.
    assert_latency(&report, "sets.seen_latency");
    assert!(num(&report, "delivery.updates_per_s") > 0.0);
    assert_eq!(
        report["settings"]["gateway_env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv[0] == "CHECKRAFT_GATEWAY_WS_SETS_PER_SECOND")
            .map(|kv| kv[1].clone()),
        Some(Value::from("7")),
        "the day keeps realistic rate limits"
    );
}

#[tokio::test]
async fn restart_times_a_node_of_a_2_pow_32_grid() {
    let (report, stdout) = bench(&[
        "restart",
        "--clients",
        "8",
        "--rate",
        "200",
        "--warmup",
        "2",
        "--kills",
        "1",
        "--restart-delay",
        "1",
        "--kill-every",
        "0",
        "--per-address",
        "4",
    ])
    .await;
    assert_common(&report, "restart", 8);
    assert_eq!(num(&report, "settings.boxes"), 4_294_967_296.0);
    let r = &report["restart"]["restarts"][0];
    let serving = num(r, "serving_s");
    for step in ["health_s", "ready_s", "reads_s", "caught_up_s"] {
        assert!(num(r, step) <= serving, "{step} after serving: {r:#}");
    }
    assert!(num(r, "log.max_log_index") > 0.0, "{r:#}");
    assert!(stdout.contains("serving again after"), "{stdout}");
}

#[tokio::test]
async fn reshard_reports_steps_stretches_and_p99() {
    // 4 shards of 10,000 boxes (chunks of 4096) -> 8 -> 4.
    let (report, stdout) = bench(&[
        "reshard",
        "--clients",
        "40",
        "--rate",
        "200",
        "--duration",
        "2",
        "--boxes",
        "40000",
        "--shards",
        "4",
        "--reshard-to",
        "8",
        "--per-address",
        "10",
    ])
    .await;
    assert_common(&report, "reshard", 40);
    let r = &report["reshard"];
    assert_eq!(num(r, "splits.count"), 4.0, "{r:#}");
    assert_eq!(num(r, "merges.count"), 4.0, "{r:#}");
    for step in r["steps"].as_array().expect("steps") {
        assert!(num(step, "millis") > 0.0, "{step:#}");
        assert_eq!(step["exact"], true, "steps cut at cell edges: {step:#}");
    }
    assert_latency(r, "steady_ack");
    assert_latency(r, "change_ack");
    assert!(num(r, "p99_ratio") > 0.0);
    assert!(stdout.contains("Reshard: 4 → 8 → 4"), "{stdout}");
}

#[tokio::test]
async fn c10m_projects_per_connection_costs() {
    // 300 users over 2 gateways and 2 workers; the per-user rate of the
    // real scenario (0.3 Sets/s here) would leave too few Sets in 4 s.
    let (report, stdout) = bench(&[
        "c10m",
        "--clients",
        "300",
        "--gateways",
        "2",
        "--workers",
        "2",
        "--rate",
        "30",
        "--duration",
        "4",
        "--boxes",
        "80000",
        "--shards",
        "4",
        "--per-address",
        "10",
    ])
    .await;
    assert_common(&report, "c10m", 300);
    assert_eq!(num(&report, "settings.hot_fraction"), 0.5);
    assert_eq!(num(&report, "settings.hot_chunks"), 16.0);
    assert_latency(&report, "sets.seen_latency");
    let p = &report["projection"];
    assert_eq!(num(p, "target_connections"), 2_500_000.0, "{report:#}");
    assert_eq!(num(p, "measured.connections"), 300.0);
    assert!(num(p, "measured.gateway_cpu_us_per_s") > 0.0, "{p:#}");
    assert!(num(p, "measured.header_bytes_out") > 0.0, "{p:#}");
    assert!(num(p, "measured.flushes_out") > 0.0, "{p:#}");
    let w = &p["wire"];
    assert!(num(w, "segments") > 0.0, "{p:#}");
    assert!(
        num(w, "outbound") > num(w, "payload") + num(w, "ws_headers"),
        "TCP/IP overhead on top: {p:#}"
    );
    // RAM: a few hundred connections' growth is within the machine's
    // noise (kernel memory is machine-wide), so only its presence.
    num(p, "ram_gib.value");
    for figure in [
        "gateway_cores",
        "outbound_gbit_per_s",
        "inbound_gbit_per_s",
        "click_to_visible_p99_ms",
    ] {
        assert!(num(p, &format!("{figure}.value")) > 0.0, "{figure}: {p:#}");
        assert!(num(p, &format!("{figure}.budget")) > 0.0, "{figure}: {p:#}");
        assert!(p[figure]["fits"].is_boolean(), "{figure}: {p:#}");
    }
    assert!(p["fits"].is_boolean());
    assert!(
        stdout.contains("### Projection to 2,500,000 connections on one server"),
        "{stdout}"
    );
    assert!(stdout.contains("load-generator CPU"), "{stdout}");
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}
