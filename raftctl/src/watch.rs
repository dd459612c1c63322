//! Watching a local cluster while one of its nodes stops or starts: what
//! `raftctl node stop|start` print.
//!
//! Every [`ROUND`] the watcher asks each node of `cluster.json` for
//! `/ready` and `/status`, derives each group's leader (the answer with
//! the highest term, when that leader answers), and sends a probe write to
//! every shard's leader: an empty [`checkraft_proto::SetBatch`], which
//! commits through raft like any write but changes no box. It prints what
//! changed since the previous round (node states, leaders, shards refusing
//! or accepting writes again, and for how long they refused), and stops
//! once the cluster has settled or the time limit is reached.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use checkraft_proto::{NodeStatus, SetBatch, META_GROUP};

use crate::credentials::{read_stored, TOKEN_FILE};
use crate::up::CLUSTER_FILE;

/// Time between two observations.
const ROUND: Duration = Duration::from_millis(250);
/// Timeout of one `/ready` or `/status` call.
const ASK_TIMEOUT: Duration = Duration::from_millis(700);
/// Timeout of one probe write.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// No answer.
    Down,
    /// Answers, but `/ready` says 503.
    NotReady,
    /// `/ready` says 200.
    Ready,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Down => "down",
            NodeState::NotReady => "up, not ready",
            NodeState::Ready => "ready",
        })
    }
}

/// One round's picture of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Each node's state.
    pub nodes: BTreeMap<u64, NodeState>,
    /// Each group's reachable leader, if any.
    pub leaders: BTreeMap<u64, Option<u64>>,
    /// Each shard's probe write: `Ok`, or why it failed.
    pub writes: BTreeMap<u64, std::result::Result<(), String>>,
}

impl View {
    /// Whether node `id` is in the wanted state (`up`: ready, else down),
    /// every group has a leader and every shard accepted its probe.
    pub fn settled(&self, id: u64, up: bool) -> bool {
        let node = self.nodes.get(&id).copied();
        let wanted = if up {
            node == Some(NodeState::Ready)
        } else {
            node == Some(NodeState::Down)
        };
        wanted
            && !self.leaders.is_empty()
            && self.leaders.values().all(Option::is_some)
            && self.writes.values().all(|w| w.is_ok())
    }
}

/// The group's name in output: `meta` or `shard N`.
fn group_name(group: u64) -> String {
    if group == META_GROUP {
        "meta".into()
    } else {
        format!("shard {group}")
    }
}

/// Observes the cluster of `up` on `data` once and prints it, runs
/// `request` (the stop or start), then observes for at most `limit`,
/// printing changes, until node `id` is `up` (ready) or down and the rest
/// has settled. Returns whether it settled.
pub async fn watch(
    data: &Path,
    id: u64,
    up: bool,
    limit: Duration,
    request: impl std::future::Future<Output = Result<()>>,
) -> Result<bool> {
    let observer = Observer::open(data)?;
    let before = observer.observe().await;
    for line in changes(None, &before) {
        println!("before: {line}");
    }
    request.await?;
    let start = Instant::now();
    let stamp = || format!("+{:>5.2}s", start.elapsed().as_secs_f64());
    let mut previous = Some(before);
    let mut refusing: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut outages: Vec<(u64, Duration)> = Vec::new();
    loop {
        let view = observer.observe().await;
        for line in changes(previous.as_ref(), &view) {
            println!("{} {line}", stamp());
        }
        let now = Instant::now();
        for (shard, result) in &view.writes {
            match (result, refusing.get(shard)) {
                (Err(_), None) => {
                    refusing.insert(*shard, now);
                }
                (Ok(()), Some(since)) => {
                    let took = now - *since;
                    println!(
                        "{} shard {shard}: writes accepted again, after {:.2}s refused",
                        stamp(),
                        took.as_secs_f64()
                    );
                    outages.push((*shard, took));
                    refusing.remove(shard);
                }
                _ => {}
            }
        }
        let settled = view.settled(id, up);
        previous = Some(view);
        if settled || start.elapsed() >= limit {
            let done = if settled {
                "settled"
            } else {
                "still not settled"
            };
            println!(
                "{} {done}: node {id} {}",
                stamp(),
                previous
                    .as_ref()
                    .and_then(|v| v.nodes.get(&id))
                    .map_or("unknown".into(), |s| s.to_string())
            );
            print_summary(&outages, &refusing);
            return Ok(settled);
        }
        tokio::time::sleep(ROUND).await;
    }
}

fn print_summary(outages: &[(u64, Duration)], refusing: &BTreeMap<u64, Instant>) {
    if outages.is_empty() && refusing.is_empty() {
        println!("writes: every probe write was accepted");
        return;
    }
    let longest = outages.iter().map(|(_, d)| *d).max().unwrap_or_default();
    println!(
        "writes: {} shard outage(s) ended, the longest {:.2}s; {} shard(s) still refusing",
        outages.len(),
        longest.as_secs_f64(),
        refusing.len()
    );
}

/// The lines describing what changed from `before` to `now` (everything,
/// on the first round).
pub fn changes(before: Option<&View>, now: &View) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(before) = before else {
        let nodes: Vec<String> = now
            .nodes
            .iter()
            .map(|(id, s)| format!("node {id} {s}"))
            .collect();
        lines.push(format!("nodes: {}", nodes.join(", ")));
        let leaders: Vec<String> = now
            .leaders
            .iter()
            .map(|(g, l)| {
                format!(
                    "{} {}",
                    group_name(*g),
                    l.map_or("none".into(), |l| l.to_string())
                )
            })
            .collect();
        lines.push(format!("leaders: {}", leaders.join(", ")));
        lines.push(writes_line(now));
        return lines;
    };
    for (id, state) in &now.nodes {
        if before.nodes.get(id) != Some(state) {
            lines.push(format!("node {id}: {state}"));
        }
    }
    for (group, leader) in &now.leaders {
        let old = before.leaders.get(group).copied().flatten();
        if old != *leader {
            let name = group_name(*group);
            lines.push(match (old, leader) {
                (Some(a), Some(b)) => format!("{name}: leader {a} -> {b}"),
                (None, Some(b)) => format!("{name}: leader {b}"),
                (Some(a), None) => format!("{name}: no leader (was {a})"),
                (None, None) => unreachable!("equal"),
            });
        }
    }
    let failing = |v: &View| -> BTreeSet<u64> {
        v.writes
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(s, _)| *s)
            .collect()
    };
    if failing(before) != failing(now) {
        lines.push(writes_line(now));
    }
    lines
}

fn writes_line(view: &View) -> String {
    let failed: Vec<String> = view
        .writes
        .iter()
        .filter_map(|(s, r)| r.as_ref().err().map(|e| format!("{s}: {e}")))
        .collect();
    if failed.is_empty() {
        format!("writes: all {} shards accept writes", view.writes.len())
    } else {
        format!(
            "writes: {}/{} shards refuse writes ({})",
            failed.len(),
            view.writes.len(),
            failed.join("; ")
        )
    }
}

/// Asks the nodes of one `up`.
struct Observer {
    http: reqwest::Client,
    token: Option<String>,
    /// `(id, HOST:PORT)` of every node.
    nodes: Vec<(u64, String)>,
}

impl Observer {
    fn open(data: &Path) -> Result<Self> {
        let path = data.join(CLUSTER_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let nodes = file["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["role"] == "node")
            .filter_map(|p| Some((p["id"].as_u64()?, p["addr"].as_str()?.to_string())))
            .collect();
        let http = reqwest::Client::builder()
            .connect_timeout(ASK_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(Self {
            http,
            token: read_stored(data, TOKEN_FILE),
            nodes,
        })
    }

    async fn observe(&self) -> View {
        let asks = self.nodes.iter().map(|(id, addr)| async move {
            let ready = self
                .http
                .get(format!("http://{addr}/ready"))
                .timeout(ASK_TIMEOUT)
                .send()
                .await;
            let state = match ready {
                Err(_) => NodeState::Down,
                Ok(r) if r.status().is_success() => NodeState::Ready,
                Ok(_) => NodeState::NotReady,
            };
            let status = match state {
                NodeState::Down => None,
                _ => self.status(addr).await,
            };
            (*id, state, status)
        });
        let answers = futures::future::join_all(asks).await;
        let mut view = View::default();
        let mut best: BTreeMap<u64, (u64, Option<u64>, u64)> = BTreeMap::new();
        for (id, state, status) in &answers {
            view.nodes.insert(*id, *state);
            for (group, summary) in status.iter().flat_map(|s| &s.groups) {
                let entry = best.entry(*group).or_insert((0, None, 0));
                if summary.term >= entry.0 {
                    *entry = (summary.term, summary.leader, summary.descriptor.epoch);
                }
            }
        }
        for (group, (_, leader, _)) in &best {
            let reachable =
                leader.filter(|l| view.nodes.get(l).is_some_and(|s| *s != NodeState::Down));
            view.leaders.insert(*group, reachable);
        }
        let probes =
            best.iter()
                .filter(|(group, _)| **group != META_GROUP)
                .map(|(group, (_, _, epoch))| {
                    let leader = view.leaders.get(group).copied().flatten();
                    let addr = leader.and_then(|l| {
                        self.nodes
                            .iter()
                            .find(|(id, _)| *id == l)
                            .map(|(_, a)| a.clone())
                    });
                    async move {
                        let result = match addr {
                            None => Err("no leader".to_string()),
                            Some(addr) => self.probe(&addr, *group, *epoch).await,
                        };
                        (*group, result)
                    }
                });
        view.writes = futures::future::join_all(probes)
            .await
            .into_iter()
            .collect();
        view
    }

    async fn status(&self, addr: &str) -> Option<NodeStatus> {
        let r = self
            .http
            .get(format!("http://{addr}/status"))
            .timeout(ASK_TIMEOUT)
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// An empty write to `shard` at `addr`: committed through raft, it
    /// changes no box.
    async fn probe(&self, addr: &str, shard: u64, epoch: u64) -> std::result::Result<(), String> {
        let mut request = self
            .http
            .post(format!("http://{addr}/shards/{shard}/write"))
            .timeout(PROBE_TIMEOUT)
            .json(&SetBatch {
                epoch,
                sets: Vec::new(),
            });
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Err("timeout".into()),
            Err(_) => Err("unreachable".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(node2: NodeState, leader: Option<u64>, write: std::result::Result<(), String>) -> View {
        View {
            nodes: [(1, NodeState::Ready), (2, node2)].into(),
            leaders: [(0, Some(1)), (3, leader)].into(),
            writes: [(3, write)].into(),
        }
    }

    #[test]
    fn changes_name_nodes_leaders_and_writes() {
        let before = view(NodeState::Ready, Some(2), Ok(()));
        let first = changes(None, &before);
        assert_eq!(
            first,
            vec![
                "nodes: node 1 ready, node 2 ready",
                "leaders: meta 1, shard 3 2",
                "writes: all 1 shards accept writes",
            ]
        );
        assert!(changes(Some(&before), &before).is_empty());
        let down = view(NodeState::Down, None, Err("no leader".into()));
        assert_eq!(
            changes(Some(&before), &down),
            vec![
                "node 2: down",
                "shard 3: no leader (was 2)",
                "writes: 1/1 shards refuse writes (3: no leader)",
            ]
        );
        let moved = view(NodeState::Down, Some(1), Ok(()));
        assert_eq!(
            changes(Some(&down), &moved),
            vec!["shard 3: leader 1", "writes: all 1 shards accept writes"]
        );
        assert!(moved.settled(2, false));
        assert!(!moved.settled(2, true));
        assert!(!down.settled(2, false));
    }
}
