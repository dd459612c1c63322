//! Scenario 6, restart time: on a 2^32-box grid under write load (the
//! `throughput` load, spread over the whole grid), wait `--warmup`
//! seconds so that every group has a long log and several snapshots,
//! then `--kills` times: kill -9 one node (nodes 1, 2, 3 in turn), leave
//! it down `--restart-delay` seconds while the others keep committing,
//! start it again on its data, and time how long it takes to serve:
//!
//! - **health**: `/health` answers 200 (the process is up and its stored
//!   groups loaded);
//! - **ready**: `/ready` answers exactly `ready` (every group it hosts
//!   knows a leader);
//! - **reads**: a (local, non-linearizable) read of every shard it hosts
//!   answers 200, with the replica's applied index;
//! - **caught up**: every group's applied index (the reads' for shards,
//!   `/metrics` for the metadata group) reached the highest applied index
//!   the other two nodes had when it was started again, so it serves
//!   everything committed while it was down.
//!
//! **Serving again** is the first moment all four hold at once, measured
//! from the start of the new process; polled every [`POLL`]. Before each
//! kill the node's log is described: entries in its logs, in its
//! snapshots, snapshots built, and its data directory's size.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use checkraft_proto::{ShardRead, META_GROUP};
use serde::Serialize;

use super::latency::now_ns;
use super::launcher::LocalCluster;
use super::node_metrics::{self, NodeGauges};

/// Time between the checks of a restarted node.
const POLL: Duration = Duration::from_millis(20);
/// How long a restarted node may take to serve.
const SERVING_TIMEOUT: Duration = Duration::from_secs(120);
/// Boxes read from each shard by the read check.
const READ_BOXES: u64 = 4096;

/// The killed node's log, just before the kill.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogShape {
    /// Groups it hosted.
    pub groups: usize,
    /// Highest last log index over its groups.
    pub max_log_index: u64,
    /// Sum over groups of the entries after the snapshot (what a restart
    /// replays).
    pub entries_after_snapshot: u64,
    /// Sum over groups of the log index their snapshot covers.
    pub entries_in_snapshots: u64,
    /// Snapshots this process built (since its own start).
    pub snapshots_built: u64,
    /// Size of its data directory, bytes.
    pub data_bytes: u64,
}

/// One restart.
#[derive(Debug, Clone, Serialize)]
pub struct RestartRecord {
    /// The node.
    pub node: u64,
    /// Its log before the kill.
    pub log: LogShape,
    /// The kill (`CLOCK_MONOTONIC` ns).
    pub killed_ns: u64,
    /// The start of the new process.
    pub restarted_ns: u64,
    /// Seconds from the start to `/health` 200.
    pub health_s: Option<f64>,
    /// ... to `/ready` `ready`.
    pub ready_s: Option<f64>,
    /// ... to every shard answering a read.
    pub reads_s: Option<f64>,
    /// ... to every group caught up with what was committed while down.
    pub caught_up_s: Option<f64>,
    /// ... to all of these at once: serving again (`None`: not within
    /// the timeout).
    pub serving_s: Option<f64>,
}

/// The restart figures.
#[derive(Debug, Clone, Serialize)]
pub struct RestartSummary {
    /// Boxes in the grid.
    pub boxes: u64,
    /// Seconds the node stayed down.
    pub restart_delay_s: f64,
    /// Every restart.
    pub restarts: Vec<RestartRecord>,
    /// Median time to serve again over the restarts that did, seconds.
    pub p50_serving_s: f64,
    /// Longest of those.
    pub max_serving_s: f64,
    /// Restarts that did not serve within the timeout.
    pub not_serving: usize,
}

/// Kills and restarts nodes `kills` times: the first after `warmup`, the
/// next `every` seconds after the previous one served again.
pub async fn restart_loop(
    cluster: &mut LocalCluster,
    kills: u32,
    warmup: Duration,
    every: Duration,
    restart_delay: Duration,
) -> Result<Vec<RestartRecord>> {
    let http = node_metrics::http();
    let mut out = Vec::new();
    tokio::time::sleep(warmup).await;
    for i in 0..kills {
        let (node, addr) = cluster.nodes[i as usize % cluster.nodes.len()].clone();
        let mut log = match node_metrics::scrape(&http, &addr).await {
            Some(g) => shape(&g),
            None => LogShape::default(),
        };
        log.data_bytes = dir_bytes(&cluster.node_dir(node));
        let killed_ns = now_ns();
        cluster.kill_node(node).await?;
        eprintln!(
            "restart {}: killed node {node} (max log index {}, {} snapshots built, {:.1} MB on disk)",
            i + 1,
            log.max_log_index,
            log.snapshots_built,
            log.data_bytes as f64 / 1e6
        );
        tokio::time::sleep(restart_delay).await;
        let mut targets: BTreeMap<u64, u64> = BTreeMap::new();
        for (id, a) in &cluster.nodes {
            if *id == node {
                continue;
            }
            for (g, v) in node_metrics::scrape(&http, a).await.unwrap_or_default() {
                let t = targets.entry(g).or_default();
                *t = (*t).max(v.applied_index);
            }
        }
        let restarted_ns = now_ns();
        cluster.start_node(node)?;
        let mut record = watch_restart(cluster, node, &addr, &targets, &http).await;
        record.log = log;
        record.killed_ns = killed_ns;
        record.restarted_ns = restarted_ns;
        eprintln!(
            "restart {}: node {node} serving again after {}",
            i + 1,
            record
                .serving_s
                .map_or("(timed out)".into(), |s| format!("{s:.2} s"))
        );
        out.push(record);
        cluster.check_alive()?;
        if i + 1 < kills {
            tokio::time::sleep(every).await;
        }
    }
    Ok(out)
}

/// Polls the restarted node until it serves (or [`SERVING_TIMEOUT`]).
async fn watch_restart(
    cluster: &LocalCluster,
    node: u64,
    addr: &str,
    targets: &BTreeMap<u64, u64>,
    http: &reqwest::Client,
) -> RestartRecord {
    let began = Instant::now();
    let mut r = RestartRecord {
        node,
        log: LogShape::default(),
        killed_ns: 0,
        restarted_ns: 0,
        health_s: None,
        ready_s: None,
        reads_s: None,
        caught_up_s: None,
        serving_s: None,
    };
    let shards: Vec<(u64, u64, u64)> = cluster
        .map
        .shards
        .values()
        .map(|s| (s.descriptor.shard, s.descriptor.start, s.descriptor.end))
        .collect();
    while began.elapsed() < SERVING_TIMEOUT {
        let t = || Some(began.elapsed().as_secs_f64());
        let get = |path: &str| {
            let url = format!("http://{addr}{path}");
            async move {
                let resp = http.get(url).send().await.ok()?;
                let ok = resp.status().is_success();
                let body = resp.text().await.ok()?;
                ok.then_some(body)
            }
        };
        let health = get("/health").await.is_some();
        let ready = health && get("/ready").await.as_deref() == Some("ready\n");
        let mut reads = health;
        let mut applied: BTreeMap<u64, u64> = BTreeMap::new();
        if health {
            for &(id, start, end) in &shards {
                let path = format!(
                    "/shards/{id}/read?start={start}&end={}",
                    end.min(start + READ_BOXES)
                );
                let read = tokio::time::timeout(
                    Duration::from_secs(2),
                    cluster.client.get_bincode::<ShardRead>(addr, &path),
                )
                .await;
                match read {
                    Ok(Ok(read)) => {
                        applied.insert(id, read.applied_index);
                    }
                    _ => reads = false,
                }
            }
            if let Some(g) = node_metrics::scrape(http, addr).await {
                if let Some(meta) = g.get(&META_GROUP) {
                    applied.insert(META_GROUP, meta.applied_index);
                }
            }
        }
        let caught_up = health
            && targets
                .iter()
                .all(|(g, target)| applied.get(g).is_some_and(|a| a >= target));
        if health && r.health_s.is_none() {
            r.health_s = t();
        }
        if ready && r.ready_s.is_none() {
            r.ready_s = t();
        }
        if reads && r.reads_s.is_none() {
            r.reads_s = t();
        }
        if caught_up && r.caught_up_s.is_none() {
            r.caught_up_s = t();
        }
        if health && ready && reads && caught_up {
            r.serving_s = t();
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    r
}

/// The log figures of one node's gauges.
fn shape(groups: &NodeGauges) -> LogShape {
    LogShape {
        groups: groups.len(),
        max_log_index: groups.values().map(|g| g.last_log_index).max().unwrap_or(0),
        entries_after_snapshot: groups
            .values()
            .map(|g| g.last_log_index.saturating_sub(g.snapshot_index))
            .sum(),
        entries_in_snapshots: groups.values().map(|g| g.snapshot_index).sum(),
        snapshots_built: groups.values().map(|g| g.snapshots_built).sum(),
        data_bytes: 0,
    }
}

/// Bytes in the files under `dir` (0 if unreadable).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The summary of the restarts.
pub fn summarize(boxes: u64, restart_delay_s: f64, restarts: Vec<RestartRecord>) -> RestartSummary {
    let mut done: Vec<f64> = restarts.iter().filter_map(|r| r.serving_s).collect();
    done.sort_by(f64::total_cmp);
    RestartSummary {
        boxes,
        restart_delay_s,
        p50_serving_s: done
            .get(done.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0.0),
        max_serving_s: done.last().copied().unwrap_or(0.0),
        not_serving: restarts.len() - done.len(),
        restarts,
    }
}

impl RestartSummary {
    /// The markdown section.
    pub fn markdown(&self) -> String {
        let s = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}"));
        let mut md = format!(
            "Restart: kill -9 of a node of a {}-box grid, down {:.0} s, {} times: serving again after p50 {:.2} s, max {:.2} s{}.\n\n\
             | restart | node | max log index | entries after snapshot / in snapshots (all groups) | snapshots built | data MB | health s | ready s | reads s | caught up s | serving s |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
            self.boxes,
            self.restart_delay_s,
            self.restarts.len(),
            self.p50_serving_s,
            self.max_serving_s,
            if self.not_serving > 0 {
                format!(" ({} restarts did not serve within {} s)", self.not_serving, SERVING_TIMEOUT.as_secs())
            } else {
                String::new()
            }
        );
        for (i, r) in self.restarts.iter().enumerate() {
            md += &format!(
                "| {} | {} | {} | {} / {} | {} | {:.1} | {} | {} | {} | {} | {} |\n",
                i + 1,
                r.node,
                r.log.max_log_index,
                r.log.entries_after_snapshot,
                r.log.entries_in_snapshots,
                r.log.snapshots_built,
                r.log.data_bytes as f64 / 1e6,
                s(r.health_s),
                s(r.ready_s),
                s(r.reads_s),
                s(r.caught_up_s),
                s(r.serving_s),
            );
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::node_metrics::GroupGauges;

    #[test]
    fn log_shape_and_summary() {
        let g = |last, snap, built| GroupGauges {
            last_log_index: last,
            snapshot_index: snap,
            snapshots_built: built,
            ..Default::default()
        };
        let groups = NodeGauges::from([
            (0, g(40, 0, 0)),
            (1, g(9000, 8000, 4)),
            (2, g(7000, 6000, 3)),
        ]);
        let s = shape(&groups);
        assert_eq!((s.groups, s.max_log_index), (3, 9000));
        assert_eq!(s.entries_after_snapshot, 40 + 1000 + 1000);
        assert_eq!(s.entries_in_snapshots, 14_000);
        assert_eq!(s.snapshots_built, 7);
        let rec = |serving| RestartRecord {
            node: 1,
            log: s.clone(),
            killed_ns: 0,
            restarted_ns: 0,
            health_s: Some(0.2),
            ready_s: Some(0.5),
            reads_s: Some(0.3),
            caught_up_s: Some(0.6),
            serving_s: serving,
        };
        let sum = summarize(
            1 << 32,
            5.0,
            vec![rec(Some(0.6)), rec(None), rec(Some(1.5))],
        );
        assert_eq!(sum.p50_serving_s, 0.6);
        assert_eq!(sum.max_serving_s, 1.5);
        assert_eq!(sum.not_serving, 1);
        let md = sum.markdown();
        assert!(md.contains("4294967296-box grid"), "{md}");
        assert!(md.contains("did not serve"), "{md}");
    }
}
