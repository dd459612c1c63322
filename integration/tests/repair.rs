//! The control plane repairs and rebalances by itself, with real processes
//! and writes running:
//!
//! - **Permanent node loss.** Four nodes; one is killed with kill -9 and
//!   stays down. After `down_after_ms` (4 s here) the metadata leader marks
//!   it down and rebuilds its replicas on the live nodes: every shard has 3
//!   replicas again, none on the dead node, and the metadata group votes
//!   without it. In the middle of that repair the metadata leader itself
//!   is killed (and restarted): the new leader finishes the repair with no
//!   `raftctl` in the loop. Nothing acknowledged is lost, and replicas
//!   agree byte for byte. Then the dead node comes back with its old data:
//!   its stale replicas are deleted, it is taken back, and nothing is
//!   corrupted.
//! - **Rebalancing.** Three nodes, then two more with `raftctl node add`:
//!   replicas and leaders end within ±1 of even, with writes running and
//!   nothing lost.
//! - **Bad input.** Removing an unknown node, removing a node whose
//!   replicas have nowhere to go, and starting an operation while another
//!   is recorded each get a clear error, and nothing changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checkraft_integration::{eventually, raftctl, raftctl_init, Cluster, NodeClient, Router};
use checkraft_proto::{ClusterHealth, GroupStatus, NodeState, OperationKind, ShardMap, META_GROUP};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::task::JoinHandle;

const TOKEN: &str = "repair-test-token";
const BOXES: u32 = 64 * 4096;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
        ("CHECKRAFT_NODE_REPORT_MS", "200"),
        ("CHECKRAFT_NODE_DOWN_AFTER_MS", "4000"),
    ]
}

/// A writer setting fresh boxes (only `true`) until stopped; answers what
/// was acknowledged.
struct Writer {
    acked: Arc<Mutex<Vec<u32>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Writer {
    fn start(entries: Vec<String>, seed: u64) -> Self {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = {
            let acked = acked.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut router = Router::new(entries).await.unwrap();
                while !*stop_rx.borrow() {
                    let sets: Vec<(u32, bool)> =
                        (0..20).map(|_| (rng.gen_range(0..BOXES), true)).collect();
                    if let Ok(ok) = router.write(&sets).await {
                        acked.lock().unwrap().extend(ok.iter().map(|(i, _)| *i));
                    }
                    let _ = router.refresh().await;
                }
            })
        };
        Self { acked, stop, task }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn more(&self, n: usize, what: &str) {
        let from = self.count();
        let acked = self.acked.clone();
        eventually(Duration::from_secs(60), what, || {
            let acked = acked.clone();
            async move { (acked.lock().unwrap().len() >= from + n).then_some(()) }
        })
        .await;
    }

    async fn stop(self) -> Vec<u32> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// The map, once no operation is recorded in it (`None` meanwhile).
async fn settled_map(entries: &[String]) -> Option<ShardMap> {
    map_from(entries).await.filter(|m| m.operation.is_none())
}

async fn map_from(entries: &[String]) -> Option<ShardMap> {
    for addr in entries {
        let c = NodeClient::new(addr);
        if let Ok(resp) = c.send(c.http().get(c.url("/meta/map"))).await {
            if let Ok(map) = resp.json::<ShardMap>().await {
                return Some(map);
            }
        }
    }
    None
}

/// The metadata leader among `ids`.
async fn meta_leader(cluster: &Cluster, ids: &[u64]) -> u64 {
    eventually(Duration::from_secs(30), "a metadata leader", || async {
        for id in ids {
            let s: GroupStatus = cluster.client(*id).metrics(META_GROUP).await.ok()?;
            if s.raft.current_leader == Some(s.raft.id) {
                return Some(s.raft.id);
            }
        }
        None
    })
    .await
}

/// Every acknowledged box is set, read linearizably from each shard's
/// leader.
async fn nothing_lost(entries: Vec<String>, acked: &[u32]) {
    let mut router = Router::new(entries).await.unwrap();
    let lost = router.missing(acked).await.unwrap();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
}

/// The replicas the map names hold every shard at the same change number
/// with the same bitmap bytes.
async fn replicas_agree(entries: &[String]) {
    // The map is read at each attempt: the control plane may still be
    // moving a replica (rebalancing a returned node), and a copy it has
    // just deleted must not be waited for.
    eventually(
        Duration::from_secs(60),
        "every shard's replicas to agree",
        || {
            let entries = entries.to_vec();
            async move {
                let map = settled_map(&entries).await?;
                for (shard, record) in &map.shards {
                    let mut reads = Vec::new();
                    for r in &record.replicas {
                        let addr = map.addr(*r)?;
                        reads.push(NodeClient::new(addr).read(*shard, false).await.ok()?);
                    }
                    let same = reads
                        .windows(2)
                        .all(|w| (w[0].seq, &w[0].bitmap) == (w[1].seq, &w[1].bitmap));
                    if !same {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
}

async fn health(entry: &str) -> ClusterHealth {
    let out = raftctl(&["status", "--json", "--cluster", entry, "--token", TOKEN]).await;
    assert!(out.ok, "status: {}", out.stderr);
    let v: Value = out.json();
    serde_json::from_value(v["health"].clone()).expect("status --json carries the health")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_node_loss_is_repaired_and_a_return_is_cleaned() {
    tokio::time::timeout(Duration::from_secs(420), permanent_loss())
        .await
        .expect("repair test exceeded its bound");
}

async fn permanent_loss() {
    let mut cluster = Cluster::start(4, &env()).await;
    let out = raftctl_init(&cluster, TOKEN, u64::from(BOXES), 8).await;
    assert!(out.ok, "init failed: {}", out.stderr);
    let all: Vec<u64> = vec![1, 2, 3, 4];
    let leader = meta_leader(&cluster, &all).await;
    // The victim: a metadata voter that does not lead it.
    let meta = cluster.client(leader).metrics(META_GROUP).await.unwrap();
    let voters: BTreeSet<u64> = meta
        .raft
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    let victim = *voters.iter().find(|v| **v != leader).unwrap();
    let live: Vec<u64> = all.iter().copied().filter(|n| *n != victim).collect();
    let entries: Vec<String> = live.iter().map(|n| cluster.members()[n].clone()).collect();
    let writer = Writer::start(entries.clone(), 7);
    writer.more(200, "writes before the loss").await;

    let killed_at = Instant::now();
    cluster.kill(victim);
    println!("node {victim} killed (metadata leader: node {leader})");
    // The repair is recorded after down_after; kill the metadata leader
    // in its middle, and bring it back.
    let repairing = eventually(Duration::from_secs(60), "a repair to start", || {
        let entries = entries.clone();
        async move {
            let map = map_from(&entries).await?;
            match map.operation {
                Some(op) if op.kind == (OperationKind::RepairNode { node: victim }) => Some(op.id),
                _ => None,
            }
        }
    })
    .await;
    println!(
        "repair #{repairing} recorded {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    let leader = meta_leader(&cluster, &live).await;
    cluster.kill(leader);
    println!("metadata leader node {leader} killed mid-repair");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart(leader).await;

    // The new leader finishes it: 3 replicas per shard, none on the dead
    // node, which no longer votes in the metadata group.
    let map = eventually(Duration::from_secs(120), "the repair to finish", || {
        let entries = entries.clone();
        async move {
            let map = map_from(&entries).await?;
            let done = map.operation.is_none()
                && map
                    .finished
                    .iter()
                    .any(|f| f.operation.id == repairing && f.ok)
                && map
                    .shards
                    .values()
                    .all(|s| s.replicas.len() == 3 && !s.replicas.contains(&victim));
            done.then_some(map)
        }
    })
    .await;
    let outcome = &map
        .finished
        .iter()
        .find(|f| f.operation.id == repairing)
        .unwrap()
        .outcome;
    println!(
        "repaired {:.1} s after the kill: {outcome}",
        killed_at.elapsed().as_secs_f64()
    );
    assert_eq!(map.nodes[&victim].state, NodeState::Down);
    let new_leader = meta_leader(&cluster, &live).await;
    let meta = cluster
        .client(new_leader)
        .metrics(META_GROUP)
        .await
        .unwrap();
    let voters: BTreeSet<u64> = meta
        .raft
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert!(!voters.contains(&victim), "metadata voters: {voters:?}");
    assert_eq!(voters.len(), 3, "metadata voters: {voters:?}");
    // A metadata leader counts a node's silence from when it began to
    // lead, so a leader elected just now reports the dead node silent
    // only after `down_after_ms`.
    let h = eventually(
        Duration::from_secs(30),
        "the dead node reported silent",
        || {
            let entries = entries.clone();
            async move {
                let h = health(&entries[0]).await;
                h.nodes[&victim].silent.then_some(h)
            }
        },
    )
    .await;
    assert!(
        h.decisions.iter().any(|d| d.what.contains("marked down"))
            || map.nodes[&victim].state == NodeState::Down,
        "decisions: {:?}",
        h.decisions
    );

    // Bad input: node 2's... every live node holds every shard now, so
    // none can be removed.
    let out = raftctl(&[
        "node",
        "remove",
        &live[0].to_string(),
        "--cluster",
        &entries[0],
        "--token",
        TOKEN,
    ])
    .await;
    assert!(
        !out.ok && out.stderr.contains("no other Up node is free"),
        "removing a node with nowhere to go: {}",
        out.stderr
    );
    println!("raftctl node remove {}: {}", live[0], out.stderr.trim());

    writer.more(200, "writes after the repair").await;
    let acked = writer.stop().await;
    nothing_lost(entries.clone(), &acked).await;
    replicas_agree(&entries).await;
    println!(
        "{} acknowledged writes, none lost; replicas agree",
        acked.len()
    );

    // The dead node returns with its old data: its stale replicas go, it
    // is taken back, and the data stays whole.
    cluster.restart(victim).await;
    let back = cluster.client(victim);
    let all_entries: Vec<String> = all.iter().map(|n| cluster.members()[n].clone()).collect();
    let map = eventually(
        Duration::from_secs(90),
        "the returned node to be clean and Up",
        || {
            let back = back.clone();
            let all_entries = all_entries.clone();
            async move {
                let map = map_from(&all_entries).await?;
                let status = back.status().await.ok()?;
                let stale = status.groups.keys().any(|g| {
                    *g != META_GROUP
                        && !map
                            .shards
                            .get(g)
                            .is_some_and(|s| s.replicas.contains(&victim))
                });
                (map.nodes[&victim].state == NodeState::Up && !stale && map.operation.is_none())
                    .then_some(map)
            }
        },
    )
    .await;
    println!(
        "node {victim} is back: it holds {} replicas by the map",
        map.shards
            .values()
            .filter(|s| s.replicas.contains(&victim))
            .count()
    );
    nothing_lost(all_entries.clone(), &acked).await;
    replicas_agree(&all_entries).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_nodes_get_their_share_and_bad_operations_are_refused() {
    tokio::time::timeout(Duration::from_secs(300), rebalance())
        .await
        .expect("rebalance test exceeded its bound");
}

fn spread(counts: &BTreeMap<u64, usize>) -> usize {
    counts.values().max().unwrap() - counts.values().min().unwrap()
}

async fn rebalance() {
    let mut cluster = Cluster::start(3, &env()).await;
    let entry = cluster.members()[&1].clone();
    let out = raftctl_init(&cluster, TOKEN, u64::from(BOXES), 6).await;
    assert!(out.ok, "init failed: {}", out.stderr);
    let entries: Vec<String> = cluster.members().into_values().collect();
    let writer = Writer::start(entries.clone(), 9);
    writer.more(200, "writes before the new nodes").await;

    for key in [104u64, 105] {
        cluster.add_unassigned_node(key).await;
        let addr = cluster.members()[&key].clone();
        let out = raftctl(&["node", "add", &addr, "--cluster", &entry, "--token", TOKEN]).await;
        assert!(out.ok, "node add {addr}: {}", out.stderr);
    }
    let started = Instant::now();
    // 6 shards × 3 replicas over 5 nodes: 3 or 4 each; 6 leaders: 1 or 2.
    let (map, leaders) = eventually(
        Duration::from_secs(180),
        "replicas and leaders to even out",
        || {
            let entries = entries.clone();
            async move {
                let map = settled_map(&entries).await?;
                let mut replicas: BTreeMap<u64, usize> = (1..=5).map(|n| (n, 0)).collect();
                for s in map.shards.values() {
                    for r in &s.replicas {
                        *replicas.get_mut(r)? += 1;
                    }
                }
                let mut leaders: BTreeMap<u64, usize> = (1..=5).map(|n| (n, 0)).collect();
                for (id, addr) in map.nodes.iter().map(|(id, n)| (*id, n.addr.clone())) {
                    let status = NodeClient::new(&addr).status().await.ok()?;
                    let led = status
                        .groups
                        .iter()
                        .filter(|(g, s)| **g != META_GROUP && s.leader == Some(id))
                        .count();
                    *leaders.get_mut(&id)? += led;
                }
                let led: usize = leaders.values().sum();
                (spread(&replicas) <= 1 && spread(&leaders) <= 1 && led == map.shards.len())
                    .then_some((map, (replicas, leaders)))
            }
        },
    )
    .await;
    println!(
        "even after {:.1} s: replicas {:?}, leaders {:?}",
        started.elapsed().as_secs_f64(),
        leaders.0,
        leaders.1
    );
    let h = health(&entry).await;
    let moves = h
        .decisions
        .iter()
        .filter(|d| d.what.contains("rebalancing"))
        .count();
    assert!(moves > 0, "decisions: {:?}", h.decisions);

    // Bad input changes nothing.
    let out = raftctl(&[
        "node",
        "remove",
        "99",
        "--cluster",
        &entry,
        "--token",
        TOKEN,
    ])
    .await;
    assert!(
        !out.ok && out.stderr.contains("node 99 is not registered"),
        "{}",
        out.stderr
    );
    let begin = checkraft_proto::MetaCommand::BeginOperation {
        kind: OperationKind::Restore {
            backup_created_ms: 1,
        },
    };
    let leader = meta_leader(&cluster, &[1, 2, 3]).await;
    let c = cluster.client(leader).with_token(TOKEN);
    let resp = c
        .send(c.http().post(c.url("/admin/meta")).json(&begin))
        .await
        .unwrap();
    let first: checkraft_proto::WriteOutcome = resp.json().await.unwrap();
    let checkraft_proto::WriteOutcome::MetaApplied { outcome, .. } = first else {
        panic!("recording an operation: {first:?}");
    };
    let out = raftctl(&["node", "remove", "5", "--cluster", &entry, "--token", TOKEN]).await;
    assert!(
        !out.ok && out.stderr.contains("in progress"),
        "a second operation: {}",
        out.stderr
    );
    println!(
        "raftctl node remove 5 while another runs: {}",
        out.stderr.trim()
    );
    let end = checkraft_proto::MetaCommand::EndOperation {
        id: outcome.allocated.unwrap(),
    };
    let resp = c
        .send(c.http().post(c.url("/admin/meta")).json(&end))
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let after = map_from(&entries).await.unwrap();
    assert_eq!(
        after
            .shards
            .values()
            .map(|s| &s.replicas)
            .collect::<Vec<_>>(),
        map.shards.values().map(|s| &s.replicas).collect::<Vec<_>>(),
        "refused operations changed the placement"
    );

    let acked = writer.stop().await;
    nothing_lost(entries.clone(), &acked).await;
    replicas_agree(&entries).await;
    println!("{} acknowledged writes, none lost", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_shard_is_split_by_itself() {
    tokio::time::timeout(Duration::from_secs(240), hot_split())
        .await
        .expect("hot-split test exceeded its bound");
}

async fn hot_split() {
    let mut env = env();
    env.push(("CHECKRAFT_NODE_SPLIT_WRITES_PER_SECOND", "20"));
    env.push(("CHECKRAFT_NODE_SPLIT_HOLD_MS", "2000"));
    let cluster = Cluster::start(3, &env).await;
    let out = raftctl_init(&cluster, TOKEN, u64::from(BOXES), 2).await;
    assert!(out.ok, "init failed: {}", out.stderr);
    let entries: Vec<String> = cluster.members().into_values().collect();
    let writer = Writer::start(entries.clone(), 5);
    let map = eventually(Duration::from_secs(120), "a split by load", || {
        let entries = entries.clone();
        async move {
            let map = map_from(&entries).await?;
            let split = map
                .finished
                .iter()
                .any(|f| f.ok && matches!(f.operation.kind, OperationKind::Split { .. }));
            (split && map.shards.len() > 2).then_some(map)
        }
    })
    .await;
    let first = map
        .finished
        .iter()
        .find(|f| matches!(f.operation.kind, OperationKind::Split { .. }))
        .unwrap();
    println!(
        "{} shards; first split by load: {}",
        map.shards.len(),
        first.outcome
    );
    writer.more(100, "writes after the split").await;
    let acked = writer.stop().await;
    nothing_lost(entries, &acked).await;
    println!("{} acknowledged writes, none lost", acked.len());
}
