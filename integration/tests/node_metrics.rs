//! `GET /metrics` on a real three-node cluster: one shard on all three
//! nodes, a few hundred sets and a snapshot through the leader, then both
//! the leader's and a follower's scrape must parse as Prometheus text
//! exposition and report the shard's raft state, apply counters, snapshot
//! and the process's flush histograms.

use std::collections::BTreeMap;
use std::time::Duration;

use checkraft_integration::{eventually, Cluster, NodeClient};
use checkraft_proto::{SetBatch, ShardDescriptor, WriteOutcome};

const SHARD: u64 = 1;
const TEST_LIMIT: Duration = Duration::from_secs(120);
const PATIENCE: Duration = Duration::from_secs(30);
const BATCHES: u64 = 40;
const SETS_PER_BATCH: u64 = 5;

/// True for a valid Prometheus metric or label name.
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses exposition text into `series → value`, where a series is
/// `name` or `name{labels}` exactly as written. Panics on any sample line
/// that is not `name{labels} value`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.find('{') {
            Some(open) => {
                let close = line
                    .rfind('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                assert!(valid_name(&line[..open]), "bad metric name: {line:?}");
                for pair in line[open + 1..close].split(',') {
                    let (key, value) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(valid_name(key), "bad label name {key:?} in {line:?}");
                    assert!(
                        value.len() >= 2 && value.starts_with('"') && value.ends_with('"'),
                        "unquoted label value {value:?} in {line:?}"
                    );
                }
                let rest = &line[close + 1..];
                let value = rest
                    .strip_prefix(' ')
                    .unwrap_or_else(|| panic!("no space before the value: {line:?}"));
                (&line[..=close], value)
            }
            None => {
                let (name, value) = line
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("no value: {line:?}"));
                assert!(valid_name(name), "bad metric name: {line:?}");
                (name, value)
            }
        };
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("value {value:?} is not a number ({e}): {line:?}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "duplicate series: {line:?}"
        );
    }
    samples
}

async fn scrape(client: &NodeClient) -> (String, BTreeMap<String, f64>) {
    let resp = client
        .http()
        .get(client.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert!(resp.status().is_success(), "status {}", resp.status());
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "content type {content_type:?}"
    );
    let text = resp.text().await.expect("metrics body");
    assert!(text.ends_with("# EOF\n"), "no # EOF terminator:\n{text}");
    let samples = parse(&text);
    (text, samples)
}

fn value(samples: &BTreeMap<String, f64>, text: &str, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
}

fn shard_series(name: &str) -> String {
    format!("checkraft_node_{name}{{shard=\"{SHARD}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_raft_apply_snapshot_and_flush() {
    tokio::time::timeout(TEST_LIMIT, async {
        let cluster = Cluster::start(3, &[]).await;
        let members = cluster.members();
        let descriptor = ShardDescriptor {
            shard: SHARD,
            start: 0,
            end: 100_000,
            epoch: 1,
        };
        cluster.create_shard(&descriptor).await;
        let leader_id = cluster.shard_leader(SHARD).await;
        let leader = cluster.client(leader_id);

        let mut last_seq = 0;
        for b in 0..BATCHES {
            let batch = SetBatch {
                epoch: 1,
                sets: (0..SETS_PER_BATCH)
                    .map(|i| (u32::try_from(b * SETS_PER_BATCH + i).unwrap(), true))
                    .collect(),
            };
            last_seq = eventually(PATIENCE, "a write to apply", || {
                let (leader, batch) = (leader.clone(), batch.clone());
                async move {
                    match leader.write(SHARD, &batch).await {
                        Ok(WriteOutcome::Applied { seq, .. }) => Some(seq),
                        _ => None,
                    }
                }
            })
            .await;
        }
        assert_eq!(last_seq, BATCHES);
        let snapshot = leader.snapshot(SHARD).await.expect("snapshot");
        assert!(snapshot.bytes > 0);

        let (text, samples) = scrape(&leader).await;
        let get = |series: &str| value(&samples, &text, series);
        assert_eq!(get(&shard_series("raft_is_leader")), 1.0, "{text}");
        assert_eq!(get(&shard_series("raft_leader_id")), leader_id as f64);
        assert!(get(&shard_series("raft_term")) >= 1.0);
        let applied = get(&shard_series("raft_applied_index"));
        assert!(
            applied >= BATCHES as f64,
            "applied index {applied}:\n{text}"
        );
        assert!(get(&shard_series("raft_commit_index")) >= applied, "{text}");
        assert!(
            get(&shard_series("raft_last_log_index")) >= applied,
            "{text}"
        );
        assert!(get(&shard_series("raft_snapshot_index")) > 0.0, "{text}");
        assert_eq!(get(&shard_series("shard_seq")), BATCHES as f64);
        assert!(get(&shard_series("entries_applied_total")) >= BATCHES as f64);
        assert_eq!(
            get(&shard_series("set_batches_applied_total")),
            BATCHES as f64,
            "{text}"
        );
        assert_eq!(
            get(&shard_series("sets_applied_total")),
            (BATCHES * SETS_PER_BATCH) as f64,
            "{text}"
        );
        assert!(get(&shard_series("snapshots_built_total")) >= 1.0, "{text}");
        assert_eq!(
            get(&shard_series("snapshot_last_bytes")),
            snapshot.bytes as f64,
            "{text}"
        );
        assert!(get("checkraft_node_flushes_total") > 0.0, "{text}");
        assert!(get("checkraft_node_flush_waiters_total") > 0.0, "{text}");
        let flushes = get("checkraft_node_flush_latency_seconds_count");
        assert!(flushes > 0.0, "{text}");
        assert!(
            get("checkraft_node_flush_batch_waiters_count") > 0.0,
            "{text}"
        );
        assert!(
            get("checkraft_node_flush_latency_seconds_bucket{le=\"+Inf\"}") == flushes,
            "{text}"
        );
        assert_eq!(get("checkraft_node_groups"), 1.0, "{text}");

        // A follower reports the same shard: not leading, knows the leader,
        // and (once the entries replicate) the same sets applied.
        let follower_id = *members.keys().find(|id| **id != leader_id).unwrap();
        let follower = cluster.client(follower_id);
        let (text, samples) = eventually(PATIENCE, "the follower to apply every set", || {
            let follower = follower.clone();
            async move {
                let (text, samples) = scrape(&follower).await;
                let sets = samples.get(&shard_series("sets_applied_total")).copied();
                (sets == Some((BATCHES * SETS_PER_BATCH) as f64)).then_some((text, samples))
            }
        })
        .await;
        let get = |series: &str| value(&samples, &text, series);
        assert_eq!(get(&shard_series("raft_is_leader")), 0.0, "{text}");
        assert_eq!(get(&shard_series("raft_leader_id")), leader_id as f64);
        assert!(get(&shard_series("raft_applied_index")) >= BATCHES as f64);
        assert_eq!(get(&shard_series("shard_seq")), BATCHES as f64);
        assert!(get("checkraft_node_flush_latency_seconds_count") > 0.0);
        anyhow::Ok(())
    })
    .await
    .expect("test timed out")
    .expect("request failed");
}
