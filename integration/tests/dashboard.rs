//! The Grafana dashboard (`docs/grafana/checkraft.json`) and the metric
//! reference (`docs/metrics.md`) against the live `/metrics` of real
//! processes: three nodes bootstrapped with `raftctl init`, one gateway,
//! a few websocket and HTTP writes so the histograms have samples.
//!
//! - every metric an `expr` (or a template query) of the dashboard names
//!   is a sample name of the live exposition (`X_total` of a counter,
//!   `X_bucket` / `X_sum` / `X_count` of a histogram, `X` of a gauge), and
//!   is used as its type allows: counters and histogram parts only under
//!   `rate` / `irate` / `increase`, buckets only under
//!   `histogram_quantile` with `le` kept, gauges never under `rate`;
//!   selector labels are `job`, `instance` or labels the metric has;
//! - every exported family is in `docs/metrics.md` with its type, and
//!   every name documented there is exported;
//! - the new gauges and histograms report what happened (checked boxes,
//!   Set→Ack latency, subscriptions, connections), and a subscriber that
//!   stops reading shows as a full send queue (`ws_send_queue_max_messages`
//!   at the cap) while its updates are dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use checkraft_integration::{
    eventually, raftctl_init, Cluster, GatewayClient, GatewayProcess, Router, WsClient,
};
use checkraft_proto::ws::{AckStatus, ClientMessage, ServerMessage};

const TOKEN: &str = "dashboard-test-token";
const BOXES: u64 = 40_000;
const SHARDS: u64 = 4;
const WS_SETS: u32 = 10;
const HTTP_SETS: u64 = 5;
const WAIT: Duration = Duration::from_secs(20);
/// The gateway's per-connection send queue cap in this test.
const SEND_QUEUE: usize = 8;
/// Chunks of 4096 boxes in the grid.
const CHUNKS: u32 = 10;
const TEST_LIMIT: Duration = Duration::from_secs(240);

/// Functions whose argument must be a counter (or a histogram part).
const RATE_FUNCTIONS: &[&str] = &["rate", "irate", "increase"];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// One metric family of an exposition.
#[derive(Debug, Default, Clone)]
struct Family {
    /// `counter`, `gauge`, `histogram`, ...
    kind: String,
    /// Label names seen on its samples (`le` excluded).
    labels: BTreeSet<String>,
    /// Label values seen, except `le` and `shard`'s: `(label, value)`.
    values: BTreeSet<(String, String)>,
    /// Whether any sample was exported.
    sampled: bool,
}

/// The families of one `/metrics` body, by name.
#[derive(Debug, Default)]
struct Exposition {
    families: BTreeMap<String, Family>,
}

/// The sample-name suffixes a family of `kind` exports.
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total"],
        "histogram" => &["_bucket", "_sum", "_count"],
        _ => &[""],
    }
}

impl Exposition {
    /// Parses OpenMetrics text: `# TYPE` lines name the families, and
    /// every sample must belong to one of them.
    fn parse(text: &str) -> Self {
        assert!(text.ends_with("# EOF\n"), "no # EOF terminator:\n{text}");
        let mut exp = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
                let old = exp.families.insert(
                    name.to_string(),
                    Family {
                        kind: kind.to_string(),
                        ..Family::default()
                    },
                );
                assert!(old.is_none(), "family {name} declared twice");
            }
        }
        let samples = exp.sample_names();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..end];
            let family = samples
                .get(name)
                .unwrap_or_else(|| panic!("sample {line:?} belongs to no declared family"))
                .0
                .clone();
            let f = exp.families.get_mut(&family).unwrap();
            f.sampled = true;
            if line[end..].starts_with('{') {
                let close = line.rfind('}').expect("closed labels");
                for pair in line[end + 1..close].split(',') {
                    let (key, value) = pair.split_once('=').expect("label pair");
                    if key != "le" {
                        f.labels.insert(key.to_string());
                    }
                    if key != "le" && key != "shard" {
                        let value = value.trim_matches('"').to_string();
                        f.values.insert((key.to_string(), value));
                    }
                }
            }
        }
        exp
    }

    /// Sample name → (family, type).
    fn sample_names(&self) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for (name, f) in &self.families {
            for s in suffixes(&f.kind) {
                out.insert(format!("{name}{s}"), (name.clone(), f.kind.clone()));
            }
        }
        out
    }

    /// The name `docs/metrics.md` uses for each family: `X_total` for a
    /// counter, the family name otherwise.
    fn documented_names(&self) -> BTreeMap<String, &Family> {
        self.families
            .iter()
            .map(|(name, f)| {
                let doc = if f.kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.clone()
                };
                (doc, f)
            })
            .collect()
    }
}

/// A metric named in a PromQL expression, with where it stands.
#[derive(Debug, Clone, PartialEq)]
struct MetricRef {
    name: String,
    /// Enclosing function and aggregation names, outermost first.
    functions: Vec<String>,
    /// Label names of the selector right after the name.
    selector_labels: Vec<String>,
}

/// What a PromQL scan found.
#[derive(Debug, Default)]
struct Scan {
    metrics: Vec<MetricRef>,
    /// `histogram_quantile` calls that keep no `le` in a `by` list.
    quantiles_without_le: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A small PromQL scanner: enough to find metric names (identifiers
/// starting with `checkraft_`), their enclosing functions, selector
/// labels and `by`/`on` label lists. Strings, `[ranges]` and `$variables`
/// are skipped.
fn scan(expr: &str) -> Scan {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Scan::default();
    // (name, saw `le` in a label list inside)
    let mut stack: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '{' || chars[i] == '}') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            if LABEL_LISTS.contains(&word.as_str()) && chars.get(next) == Some(&'(') {
                let close = chars[next..]
                    .iter()
                    .position(|c| *c == ')')
                    .map(|p| next + p)
                    .expect("closed label list");
                let list: String = chars[next + 1..close].iter().collect();
                if list.split(',').any(|l| l.trim() == "le") {
                    for frame in stack.iter_mut() {
                        frame.1 = true;
                    }
                }
                i = close + 1;
            } else if chars.get(next) == Some(&'(') {
                stack.push((word, false));
                i = next + 1;
            } else if word.starts_with("checkraft_") {
                let mut selector_labels = Vec::new();
                if chars.get(next) == Some(&'{') {
                    let mut j = next + 1;
                    while j < chars.len() && chars[j] != '}' {
                        let k = skip_ws(j);
                        let key_start = k;
                        let mut k = k;
                        while k < chars.len() && is_ident(chars[k]) {
                            k += 1;
                        }
                        selector_labels.push(chars[key_start..k].iter().collect());
                        // Past the operator and the quoted value.
                        while k < chars.len() && chars[k] != '"' {
                            k += 1;
                        }
                        k += 1;
                        while k < chars.len() && chars[k] != '"' {
                            k += if chars[k] == '\\' { 2 } else { 1 };
                        }
                        j = skip_ws(k + 1);
                        if chars.get(j) == Some(&',') {
                            j += 1;
                        }
                    }
                    i = j + 1;
                }
                out.metrics.push(MetricRef {
                    name: word,
                    functions: stack.iter().map(|f| f.0.clone()).collect(),
                    selector_labels,
                });
            }
        } else if c == '(' {
            stack.push((String::new(), false));
            i += 1;
        } else if c == ')' {
            if let Some((name, saw_le)) = stack.pop() {
                if name == "histogram_quantile" && !saw_le {
                    out.quantiles_without_le += 1;
                }
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Problems with one expression against the exposition's sample names
/// and families; empty when it is right.
fn check_expr(
    expr: &str,
    samples: &BTreeMap<String, (String, String)>,
    families: &BTreeMap<String, Family>,
) -> Vec<String> {
    let scan = scan(expr);
    let mut problems = Vec::new();
    if scan.quantiles_without_le > 0 {
        problems.push(format!(
            "histogram_quantile without `le` in a by list: {expr}"
        ));
    }
    if expr.contains("checkraft_") && scan.metrics.is_empty() {
        problems.push(format!("no metric found in {expr}"));
    }
    for m in &scan.metrics {
        let Some((family, kind)) = samples.get(&m.name) else {
            problems.push(format!("{} is not exported (in {expr})", m.name));
            continue;
        };
        let under_rate = m
            .functions
            .iter()
            .any(|f| RATE_FUNCTIONS.contains(&f.as_str()));
        let under_quantile = m.functions.iter().any(|f| f == "histogram_quantile");
        let counting = kind == "counter" || kind == "histogram";
        if counting && !under_rate {
            problems.push(format!(
                "{} is a {kind} sample used without rate/increase: {expr}",
                m.name
            ));
        }
        if !counting && under_rate {
            problems.push(format!("{} is a {kind} under rate: {expr}", m.name));
        }
        if m.name.ends_with("_bucket") != under_quantile && kind == "histogram" {
            problems.push(format!(
                "{}: buckets go (only) under histogram_quantile: {expr}",
                m.name
            ));
        }
        let f = &families[family];
        for label in &m.selector_labels {
            let known = TARGET_LABELS.contains(&label.as_str()) || f.labels.contains(label);
            if f.sampled && !known {
                problems.push(format!("{} has no label {label:?}: {expr}", m.name));
            }
        }
    }
    problems
}

/// Every PromQL string of the dashboard: panel target exprs (rows
/// included) and template variable queries.
fn dashboard_queries(dash: &serde_json::Value) -> Vec<String> {
    fn panels(list: &serde_json::Value, out: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            if panel["type"] != "row" {
                assert_eq!(
                    panel["datasource"]["uid"], "${DS_PROMETHEUS}",
                    "panel {} has another data source",
                    panel["title"]
                );
                let targets = panel["targets"].as_array().expect("panel targets");
                assert!(
                    !targets.is_empty(),
                    "panel {} has no target",
                    panel["title"]
                );
                for t in targets {
                    let expr = t["expr"].as_str().expect("target expr");
                    out.push(expr.to_string());
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dash["panels"], &mut out);
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if var["type"] == "query" {
            let q = &var["query"];
            let q = q["query"].as_str().or(q.as_str()).expect("variable query");
            out.push(q.to_string());
        }
    }
    out
}

/// `name → (type, whole row)` of every metric documented in
/// `docs/metrics.md` tables (first cell a backticked `checkraft_` name,
/// second cell the type).
fn documented(md: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for line in md.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with("`checkraft_") {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        assert!(
            out.insert(name.clone(), (cells[2].to_string(), line.to_string()))
                .is_none(),
            "{name} documented twice"
        );
    }
    out
}

/// Problems between what `docs/metrics.md` documents under `prefix` and
/// the exposition: names, types, and label values (each must appear
/// backticked in the metric's row).
fn check_docs(
    docs: &BTreeMap<String, (String, String)>,
    exp: &Exposition,
    prefix: &str,
) -> Vec<String> {
    let exported = exp.documented_names();
    let mut problems = Vec::new();
    for (name, f) in &exported {
        let kind = &f.kind;
        let Some((doc, row)) = docs.get(name) else {
            problems.push(format!("{name} ({kind}) is exported but not documented"));
            continue;
        };
        if doc != kind {
            problems.push(format!("{name} is a {kind}, documented as {doc}"));
        }
        for (label, value) in &f.values {
            if !row.contains(&format!("`{value}`")) {
                problems.push(format!("{name}: {label}={value:?} is not documented"));
            }
        }
    }
    for name in docs.keys().filter(|n| n.starts_with(prefix)) {
        if !exported.contains_key(name) {
            problems.push(format!("{name} is documented but not exported"));
        }
    }
    problems
}

async fn scrape(http: &reqwest::Client, url: String) -> (String, Exposition) {
    let resp = http.get(&url).send().await.expect("GET /metrics");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let text = resp.text().await.expect("metrics body");
    let exp = Exposition::parse(&text);
    (text, exp)
}

/// The value of the one sample `series` (name with its labels as
/// written).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn ws_set(client: &mut WsClient, request_id: u32, index: u32) -> AckStatus {
    client
        .send(&ClientMessage::Set {
            request_id,
            index,
            checked: true,
        })
        .await
        .expect("send Set");
    client
        .wait_for(WAIT, |m| match m {
            ServerMessage::Ack {
                request_id: r,
                status,
                ..
            } if *r == request_id => Some(*status),
            _ => None,
        })
        .await
        .expect("ack")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_docs_match_live_metrics() {
    tokio::time::timeout(TEST_LIMIT, live_test())
        .await
        .expect("dashboard test exceeded its bound");
}

async fn live_test() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("docs/grafana/checkraft.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    assert!(dash["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "no DS_PROMETHEUS data source variable"
    );
    let queries = dashboard_queries(&dash);
    let docs = documented(
        &std::fs::read_to_string(repo_file("docs/metrics.md")).expect("docs/metrics.md"),
    );

    let cluster = Cluster::start(3, &[("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN)]).await;
    let out = raftctl_init(&cluster, TOKEN, BOXES, SHARDS).await;
    assert!(out.ok, "init failed:\n{}\n{}", out.stdout, out.stderr);
    let queue = SEND_QUEUE.to_string();
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[
            ("CHECKRAFT_GATEWAY_WS_SEND_QUEUE", queue.as_str()),
            // The slow consumer below must fill its queue: with a byte
            // budget its Updates would be held per chunk instead.
            ("CHECKRAFT_GATEWAY_WS_BUDGET_BYTES_PER_SECOND", "0"),
        ],
    )
    .await;

    // Writes: websocket Sets (one per request, so every one is sampled)
    // and HTTP PUTs, spread over the shards.
    let mut ws = WsClient::connect(&gw.addr).await.expect("connect /ws");
    ws.wait_for(WAIT, |m| {
        matches!(m, ServerMessage::Hello { .. }).then_some(())
    })
    .await
    .expect("hello");
    ws.send(&ClientMessage::Subscribe {
        first_chunk: 0,
        count: 1,
    })
    .await
    .expect("subscribe");
    for i in 0..WS_SETS {
        let status = ws_set(&mut ws, i + 1, i * 3_001).await;
        assert_eq!(status, AckStatus::Applied, "Set {i}");
    }
    let gwc = gw.client();
    for i in 0..HTTP_SETS {
        let (status, body) = gwc.put_box(7 + i * 9_000, true).await.expect("PUT");
        assert_eq!(status, 200, "{body}");
    }
    let total = f64::from(WS_SETS) + HTTP_SETS as f64;

    // Node 1's scrape, once every replica it holds has applied every set.
    let node = cluster.client(1);
    let (node_text, node_exp) = eventually(WAIT, "node 1 to apply every set", || {
        let node = node.clone();
        async move {
            let (text, exp) = scrape(node.http(), node.url("/metrics")).await;
            let checked: f64 = text
                .lines()
                .filter(|l| l.starts_with("checkraft_node_shard_checked_boxes{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            (checked == total).then_some((text, exp))
        }
    })
    .await;
    let (gw_text, gw_exp) = scrape(gwc.http(), gwc.url("/metrics")).await;
    println!("----- node 1 /metrics -----\n{node_text}");
    println!("----- gateway /metrics -----\n{gw_text}");

    // Dashboard against both expositions.
    let mut samples = node_exp.sample_names();
    samples.extend(gw_exp.sample_names());
    let mut families = node_exp.families.clone();
    families.extend(gw_exp.families.clone());
    let mut problems: Vec<String> = queries
        .iter()
        .flat_map(|q| check_expr(q, &samples, &families))
        .collect();
    // Docs against both expositions.
    problems.extend(check_docs(&docs, &node_exp, "checkraft_node_"));
    problems.extend(check_docs(&docs, &gw_exp, "checkraft_gateway_"));
    for name in docs.keys() {
        if !name.starts_with("checkraft_node_") && !name.starts_with("checkraft_gateway_") {
            problems.push(format!("{name}: documented with an unknown prefix"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The new metrics report what happened.
    let gw_value = |series: &str| {
        value(&gw_text, series).unwrap_or_else(|| panic!("{series} missing:\n{gw_text}"))
    };
    assert_eq!(
        gw_value("checkraft_gateway_ws_set_latency_seconds_count"),
        f64::from(WS_SETS)
    );
    assert!(gw_value("checkraft_gateway_write_latency_seconds_count") >= 1.0);
    assert_eq!(gw_value("checkraft_gateway_ws_connections"), 1.0);
    assert_eq!(gw_value("checkraft_gateway_ws_subscriptions"), 1.0);
    let queued = gw_value("checkraft_gateway_ws_send_queue_messages");
    let longest = gw_value("checkraft_gateway_ws_send_queue_max_messages");
    assert!(longest <= queued && queued >= 0.0, "{queued} {longest}");
    assert_eq!(gw_value("checkraft_gateway_ws_fanout_lags_total"), 0.0);
    assert!(value(&node_text, "checkraft_node_flush_latency_seconds_count").unwrap() > 0.0);
    assert!(
        value(&node_text, "checkraft_node_flush_entries_total").unwrap() > 0.0,
        "log appends count their entries per flush"
    );

    println!(
        "checked {} dashboard queries and {} documented metrics",
        queries.len(),
        docs.len()
    );

    slow_consumer(&cluster, &gw).await;
    drop(ws);
}

/// The gauges of a gateway scrape: `(queued, longest, dropped)`.
async fn queue_gauges(gw: &GatewayClient) -> (f64, f64, f64) {
    let text = gw
        .http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    let get = |series: &str| value(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));
    (
        get("checkraft_gateway_ws_send_queue_messages"),
        get("checkraft_gateway_ws_send_queue_max_messages"),
        get("checkraft_gateway_ws_dropped_updates_total"),
    )
}

/// A subscriber of every chunk with a 4 KiB receive buffer stops reading
/// while large batches go to the shards: its send queue fills to the cap,
/// and the scrape shows it.
async fn slow_consumer(cluster: &Cluster, gw: &GatewayProcess) {
    let mut silent = WsClient::connect_with_recv_buffer(&gw.addr, 4096)
        .await
        .expect("connect /ws");
    silent
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::Hello { .. }).then_some(())
        })
        .await
        .expect("hello");
    silent
        .send(&ClientMessage::Subscribe {
            first_chunk: 0,
            count: CHUNKS,
        })
        .await
        .expect("subscribe");
    silent
        .send(&ClientMessage::Ping { nonce: 9 })
        .await
        .expect("ping");
    silent
        .wait_for(WAIT, |m| {
            (*m == ServerMessage::Pong { nonce: 9 }).then_some(())
        })
        .await
        .expect("pong");

    let mut router = Router::new(cluster.members().into_values().collect())
        .await
        .expect("router");
    let gwc = gw.client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut round = 0u32;
    let (queued, longest, dropped) = loop {
        // Every box flips each round: every chunk's Update is ~8 KB.
        round += 1;
        let sets: Vec<(u32, bool)> = (0..BOXES as u32).map(|i| (i, round % 2 == 1)).collect();
        router.write(&sets).await.expect("write round");
        let (queued, longest, dropped) = queue_gauges(&gwc).await;
        if longest == SEND_QUEUE as f64 && dropped > 0.0 {
            break (queued, longest, dropped);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no full send queue after {round} rounds: queued {queued}, longest {longest}, dropped {dropped}"
        );
    };
    assert!(queued >= longest, "queued {queued} < longest {longest}");
    println!(
        "slow consumer: after {round} rounds, queued {queued}, longest {longest}, dropped {dropped}"
    );
    drop(silent);
}

/// The checks themselves catch what they are meant to, without processes.
#[test]
fn checks_catch_misuse() {
    let exp = Exposition::parse(
        "# TYPE checkraft_x_requests counter\n\
         checkraft_x_requests_total{reason=\"a\"} 1\n\
         checkraft_x_requests_total{reason=\"b\"} 1\n\
         # TYPE checkraft_x_depth gauge\n\
         checkraft_x_depth 3\n\
         # TYPE checkraft_x_seconds histogram\n\
         checkraft_x_seconds_bucket{le=\"+Inf\"} 1\n\
         checkraft_x_seconds_sum 0.5\n\
         checkraft_x_seconds_count 1\n\
         # EOF\n",
    );
    let samples = exp.sample_names();
    let check = |expr: &str| check_expr(expr, &samples, &exp.families);
    let good = [
        "sum by (reason) (rate(checkraft_x_requests_total{job=~\"$job\", reason!=\"b\"}[$__rate_interval]))",
        "histogram_quantile(0.99, sum by (le, instance) (rate(checkraft_x_seconds_bucket{instance=~\"$i\"}[5m])))",
        "max by (instance) (checkraft_x_depth) - on (instance) group_right checkraft_x_depth",
        "rate(checkraft_x_seconds_sum[5m]) / rate(checkraft_x_seconds_count[5m])",
        "label_values(checkraft_x_depth{job=~\"$job\"}, instance)",
    ];
    for expr in good {
        assert_eq!(check(expr), Vec::<String>::new(), "{expr}");
    }
    let bad = [
        "rate(checkraft_x_request_total[5m])", // renamed
        "sum(checkraft_x_requests_total)",     // counter without rate
        "rate(checkraft_x_depth[5m])",         // gauge under rate
        "histogram_quantile(0.9, sum (rate(checkraft_x_seconds_bucket[5m])))", // no le
        "sum(rate(checkraft_x_seconds_bucket[5m]))", // bucket without quantile
        "rate(checkraft_x_seconds[5m])",       // bare histogram name
        "checkraft_x_depth{shard=\"1\"}",      // unknown label
    ];
    for expr in bad {
        assert!(!check(expr).is_empty(), "{expr} passed");
    }
    let docs = documented(
        "| `checkraft_x_requests_total` | counter | reasons `a` |\n\
         | `checkraft_x_depth` | counter | d |\n\
         | `checkraft_x_gone` | gauge | g |\n",
    );
    let problems = check_docs(&docs, &exp, "checkraft_x_");
    // reason b, depth's type, seconds missing, gone
    assert_eq!(problems.len(), 4, "{problems:?}");
}
