//! The chaos test of the shard tier: three real `checkraft-node` processes,
//! one shard replicated on all three, 10,000 sets, then at least five
//! cycles of "kill -9 the leader while a writer keeps writing, write on to
//! the new leader, restart the killed node". Snapshots are taken every 100
//! entries, so restarted nodes also exercise snapshot load, log purge and
//! snapshot install.
//!
//! Then all three are killed at once under load and restarted, three
//! times; only flushed data survives, and the first linearizable read after
//! each restart must already show every acknowledged write. At the end every acknowledged set is present, and all three replicas
//! report the same applied index and byte-identical bitmaps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkraft_integration::{eventually, Cluster, NodeClient};
use checkraft_proto::{SetBatch, ShardDescriptor, ShardRead, WriteOutcome};
use croaring::{Bitmap, Portable};
use rand::{Rng, SeedableRng};

const SHARD: u64 = 1;
const BOXES: u32 = 200_000;

/// What the writer knows: the last acknowledged value of each box, and for
/// each box every value attempted without acknowledgement since then. Each
/// such attempt may or may not have landed; an unacknowledged write can only
/// land before any later acknowledged one, so after an ack it is forgotten.
#[derive(Default)]
struct Ledger {
    acked: HashMap<u32, bool>,
    /// Where each box's last acknowledged write was: (raft log index, phase).
    acked_at: HashMap<u32, (u64, String)>,
    /// The test phase, for failure reports.
    phase: String,
    /// The highest raft log index of an acknowledged write.
    max_acked_index: u64,
    uncertain: HashMap<u32, HashSet<bool>>,
    acked_sets: usize,
    unacked_batches: usize,
}

impl Ledger {
    fn record(&mut self, sets: &[(u32, bool)], acked_at: Option<u64>) {
        let acked = acked_at.is_some();
        for &(i, c) in sets {
            if let Some(log_index) = acked_at {
                self.max_acked_index = self.max_acked_index.max(log_index);
                self.acked.insert(i, c);
                self.acked_at.insert(i, (log_index, self.phase.clone()));
                self.uncertain.remove(&i);
            } else {
                self.uncertain.entry(i).or_default().insert(c);
            }
        }
        if acked {
            self.acked_sets += sets.len();
        } else {
            self.unacked_batches += 1;
        }
    }
}

impl Ledger {
    /// Checks `read` against the ledger: every acknowledged value is there
    /// (or a value attempted after it without acknowledgement). Returns how
    /// many boxes were checked exactly.
    fn verify(&self, read: &ShardRead, when: &str) -> usize {
        let bitmap = Bitmap::try_deserialize::<Portable>(&read.bitmap).expect("portable bitmap");
        let mut exact = 0;
        for (&index, &value) in &self.acked {
            let actual = bitmap.contains(index);
            match self.uncertain.get(&index) {
                Some(maybe) => {
                    assert!(
                        actual == value || maybe.contains(&actual),
                        "box {index} is {actual}, never written so"
                    )
                }
                None => {
                    let (log_index, phase) = &self.acked_at[&index];
                    assert_eq!(
                        actual, value,
                        "{when}: acknowledged set of box {index} to {value} (log index {log_index}, {phase}) \
                         is missing from a read at applied index {}",
                        read.applied_index
                    );
                    exact += 1;
                }
            }
        }
        exact
    }
}

/// A linearizable read of the whole shard from its leader, retried while
/// the cluster elects one.
async fn linearizable_read(cluster: &Cluster) -> ShardRead {
    let lead = cluster.shard_leader(SHARD).await;
    let client = cluster.client(lead);
    eventually(Duration::from_secs(30), "a linearizable read", || {
        let client = client.clone();
        async move { client.read(SHARD, true).await.ok() }
    })
    .await
}

/// Writes one batch to `client`; the raft log index when acknowledged.
async fn write_batch(client: &NodeClient, sets: Vec<(u32, bool)>) -> anyhow::Result<Option<u64>> {
    match client.write(SHARD, &SetBatch { epoch: 1, sets }).await? {
        WriteOutcome::Applied { log_id, .. } => Ok(Some(log_id.index)),
        WriteOutcome::Rejected { rejection } => panic!("a valid batch was rejected: {rejection}"),
        WriteOutcome::ForwardToLeader { .. } => Ok(None),
        other @ WriteOutcome::MetaApplied { .. } => {
            panic!("a shard write answered as metadata: {other:?}")
        }
    }
}

fn random_batch(rng: &mut impl Rng, n: usize) -> Vec<(u32, bool)> {
    // Mostly checks, some unchecks, so both directions are verified.
    (0..n)
        .map(|_| (rng.gen_range(0..BOXES), rng.gen_bool(0.8)))
        .collect()
}

/// Writes batches to whichever node leads, until `stop` flips.
async fn writer(
    members: BTreeMap<u64, String>,
    ledger: Arc<Mutex<Ledger>>,
    stop: tokio::sync::watch::Receiver<bool>,
    seed: u64,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let clients: Vec<NodeClient> = members.values().map(|a| NodeClient::new(a)).collect();
    let mut target = 0usize;
    while !*stop.borrow() {
        let sets = random_batch(&mut rng, 50);
        let acked = write_batch(&clients[target], sets.clone())
            .await
            .ok()
            .flatten();
        ledger.lock().unwrap().record(&sets, acked);
        if acked.is_none() {
            // Try the next node; back off briefly while an election runs.
            target = (target + 1) % clients.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_leader_cycles_lose_no_acknowledged_write() {
    tokio::time::timeout(Duration::from_secs(420), run())
        .await
        .expect("cluster test exceeded its time bound");
}

async fn run() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("CHECKRAFT_NODE_SNAPSHOT_EVERY", "100"),
            ("CHECKRAFT_NODE_KEEP_LOGS", "20"),
        ],
    )
    .await;
    let members = cluster.members();
    let descriptor = ShardDescriptor {
        shard: SHARD,
        start: 0,
        end: u64::from(BOXES),
        epoch: 1,
    };
    cluster.create_shard(&descriptor).await;

    // 10,000 sets through the leader.
    let ledger = Arc::new(Mutex::new(Ledger {
        phase: "initial".into(),
        ..Ledger::default()
    }));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let first = cluster.shard_leader(SHARD).await;
    let client = cluster.client(first);
    for _ in 0..100 {
        let sets = random_batch(&mut rng, 100);
        let at = write_batch(&client, sets.clone()).await.unwrap();
        assert!(at.is_some(), "write to a settled leader must apply");
        ledger.lock().unwrap().record(&sets, at);
    }
    assert_eq!(ledger.lock().unwrap().acked_sets, 10_000);

    // Kill the leader under load, five times.
    for cycle in 0..5u64 {
        ledger.lock().unwrap().phase = format!("cycle {cycle}");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let writing = tokio::spawn(writer(
            members.clone(),
            ledger.clone(),
            stop_rx,
            100 + cycle,
        ));
        let before = ledger.lock().unwrap().acked_sets;
        eventually(
            Duration::from_secs(30),
            "the writer to get acks before the kill",
            || {
                let ledger = ledger.clone();
                async move { (ledger.lock().unwrap().acked_sets >= before + 500).then_some(()) }
            },
        )
        .await;
        let victim = cluster.shard_leader(SHARD).await;
        cluster.kill(victim);
        let next = cluster.shard_leader(SHARD).await;
        assert_ne!(next, victim);
        // Keep writing to the new leader.
        let after_kill = ledger.lock().unwrap().acked_sets;
        eventually(Duration::from_secs(60), "acks from the new leader", || {
            let ledger = ledger.clone();
            async move { (ledger.lock().unwrap().acked_sets >= after_kill + 1000).then_some(()) }
        })
        .await;
        cluster.restart(victim).await;
        stop_tx.send(true).unwrap();
        writing.await.unwrap();
        eprintln!("cycle {cycle}: killed leader {victim}, new leader {next}");
    }

    // Kill -9 every node at once, three times (twice mid-write, once right
    // after an acknowledgement): only what was flushed survives, and every
    // acknowledged write must be in it and visible. (A kill
    // keeps what sled already handed to the OS, so one round catches a
    // missing flush only some of the time; three rounds catch it far more
    // often. Measured with flushing disabled: see the closing note.)
    for round in 0..3u64 {
        ledger.lock().unwrap().phase = format!("kill-all round {round}");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let writing = tokio::spawn(writer(
            members.clone(),
            ledger.clone(),
            stop_rx,
            900 + round,
        ));
        let before = ledger.lock().unwrap().acked_sets;
        eventually(
            Duration::from_secs(30),
            "acks before the total kill",
            || {
                let ledger = ledger.clone();
                async move { (ledger.lock().unwrap().acked_sets >= before + 1000).then_some(()) }
            },
        )
        .await;
        if round == 1 {
            // Stop right after an acknowledgement and kill at once: nothing
            // flushes the leader's commit index after that ack, so on
            // restart the write sits in an uncommitted log tail, which the
            // group's next leader must commit on its own. (The old leader
            // may also have lost entries it had replicated before its own
            // flush: it must not resume its term. This round caught that.)
            stop_tx.send(true).unwrap();
            writing.await.unwrap();
            for id in members.keys() {
                cluster.kill(*id);
            }
        } else {
            // Kill mid-write.
            for id in members.keys() {
                cluster.kill(*id);
            }
            stop_tx.send(true).unwrap();
            writing.await.unwrap();
        }
        for id in members.keys() {
            cluster.restart(*id).await;
        }
        // With no new writes and no linearizable reads, every replica
        // still applies every acknowledged entry (the restored leader
        // commits its log tail on its own) and serves it.
        let max_acked = ledger.lock().unwrap().max_acked_index;
        let clients: Vec<NodeClient> = members.keys().map(|id| cluster.client(*id)).collect();
        let replicas = eventually(
            Duration::from_secs(60),
            "replicas to apply every acknowledged entry",
            || {
                let clients = clients.clone();
                async move {
                    let mut reads = Vec::new();
                    for c in &clients {
                        reads.push(
                            c.read(SHARD, false)
                                .await
                                .ok()
                                .filter(|r| r.applied_index >= max_acked)?,
                        );
                    }
                    Some(reads)
                }
            },
        )
        .await;
        for (i, read) in replicas.iter().enumerate() {
            ledger.lock().unwrap().verify(
                read,
                &format!("replica {} after kill-all round {round}", i + 1),
            );
        }
        // The first linearizable read after the restart reflects every
        // acknowledged write too.
        let read = linearizable_read(&cluster).await;
        let exact = ledger
            .lock()
            .unwrap()
            .verify(&read, &format!("right after kill-all round {round}"));
        eprintln!("round {round}: killed and restarted all three nodes; {exact} boxes verified");
    }

    // Let every replica catch up to the leader's applied index.
    let target = linearizable_read(&cluster).await.applied_index;
    let clients: Vec<NodeClient> = members.keys().map(|id| cluster.client(*id)).collect();
    let reads = eventually(
        Duration::from_secs(60),
        "all replicas at the same applied index",
        || {
            let clients = clients.clone();
            async move {
                let mut reads = Vec::new();
                for c in &clients {
                    reads.push(c.read(SHARD, false).await.ok()?);
                }
                let same = reads.iter().all(|r| {
                    r.applied_index == reads[0].applied_index && r.applied_index >= target
                });
                same.then_some(reads)
            }
        },
    )
    .await;
    for r in &reads[1..] {
        assert_eq!(r.seq, reads[0].seq, "replicas disagree on seq");
        assert_eq!(
            r.bitmap, reads[0].bitmap,
            "replica bitmaps are not byte-identical"
        );
    }

    // Every acknowledged set is present on every replica.
    let ledger = ledger.lock().unwrap();
    let checked = ledger.verify(&reads[0], "at the end");
    eprintln!(
        "verified {checked} boxes ({} acknowledged sets, {} unacknowledged batches, applied index {})",
        ledger.acked_sets, ledger.unacked_batches, reads[0].applied_index
    );
    assert!(ledger.acked_sets >= 10_000 + 5 * 1500);
}
