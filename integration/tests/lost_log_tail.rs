//! A leader that crashes before its own flush loses the tail of its log,
//! although its followers flushed that tail and the write was
//! acknowledged on their quorum. Restarted, it must not lead again in the
//! same term: a leader restored from its stored vote would write new
//! entries under log ids its followers already hold for other entries,
//! and they, matching the ids, would keep theirs. One replica would then
//! lack an acknowledged write at the same applied index as the others.
//!
//! The test makes that crash state exactly, without racing sled's flush:
//! once every replica has applied (and flushed) a write, all three nodes
//! are killed, and the leader's stored log loses that write and its commit
//! mark, as if its flush had never run. Then all three restart at once,
//! like after a power cut. A new write goes in through whoever leads, and
//! every replica must hold both writes, byte for byte the same.
//! (`docs/reliability.md`, "Durability"; `NodeConfig::raft_config`.)

use std::time::Duration;

use checkraft_integration::{eventually, Cluster, NodeClient};
use checkraft_proto::codec;
use checkraft_proto::raft::{Entry, LogId};
use checkraft_proto::{SetBatch, ShardDescriptor, ShardRead, WriteOutcome};
use croaring::{Bitmap, Portable};

const SHARD: u64 = 1;
const BOXES: u32 = 10_000;
/// The write the old leader loses from its own disk.
const LOST: u32 = 4_242;
/// The first write after the restart.
const AFTER: u32 = 4_343;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_its_log_tail_does_not_reuse_its_log_ids() {
    tokio::time::timeout(Duration::from_secs(240), run())
        .await
        .expect("lost-log-tail test exceeded its bound");
}

async fn run() {
    let mut cluster = Cluster::start(3, &[]).await;
    let ids: Vec<u64> = cluster.members().into_keys().collect();
    let descriptor = ShardDescriptor {
        shard: SHARD,
        start: 0,
        end: u64::from(BOXES),
        epoch: 1,
    };
    cluster.create_shard(&descriptor).await;

    let old_leader = cluster.shard_leader(SHARD).await;
    let client = cluster.client(old_leader);
    for i in 0..10 {
        write(&client, i).await.expect("a settled leader applies");
    }
    let lost_at = write(&client, LOST)
        .await
        .expect("a settled leader applies");

    // Every replica applied it, so the followers hold it; sled's periodic
    // flush (1 s) then puts it on every disk.
    eventually(
        Duration::from_secs(30),
        "every replica to apply the write",
        || {
            let cluster = &cluster;
            let ids = ids.clone();
            async move {
                for id in ids {
                    let read = cluster.client(id).read(SHARD, false).await.ok()?;
                    (read.applied_index >= lost_at).then_some(())?;
                }
                Some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for &id in &ids {
        cluster.kill(id);
    }
    let kept = cut_log_tail(&cluster, old_leader, lost_at);
    eprintln!(
        "node {old_leader} (the leader) lost log entries from {lost_at} on; it keeps {kept:?}"
    );

    // A power cut's restart: all at once.
    for &id in &ids {
        cluster.restart_process(id);
    }
    let after_at = eventually(
        Duration::from_secs(60),
        "a write to be acknowledged after the restart",
        || {
            let clients: Vec<NodeClient> = ids.iter().map(|&id| cluster.client(id)).collect();
            async move {
                for client in &clients {
                    if let Some(at) = write(client, AFTER).await {
                        return Some(at);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        },
    )
    .await;
    eprintln!("the write after the restart is at log index {after_at}");

    let reads = eventually(
        Duration::from_secs(30),
        "every replica to apply the write after the restart",
        || {
            let cluster = &cluster;
            let ids = ids.clone();
            async move {
                let mut reads = Vec::new();
                for id in ids {
                    let read = cluster.client(id).read(SHARD, false).await.ok()?;
                    (read.applied_index >= after_at).then_some(())?;
                    reads.push((id, read));
                }
                Some(reads)
            }
        },
    )
    .await;
    for (id, read) in &reads {
        let role = if *id == old_leader {
            " (the old leader, which lost it from its disk)"
        } else {
            ""
        };
        assert!(
            holds(read, LOST),
            "node {id}{role}: the acknowledged write of box {LOST} (log index {lost_at}) \
             is missing at applied index {}; the write after the restart is at {after_at}",
            read.applied_index
        );
        assert!(
            holds(read, AFTER),
            "node {id}{role}: the acknowledged write of box {AFTER} (log index {after_at}) \
             is missing at applied index {}",
            read.applied_index
        );
    }
    // Same applied index, same bytes.
    let agreed = cluster.replicas_agree(SHARD, Duration::from_secs(30)).await;
    assert!(agreed.iter().all(|r| holds(r, LOST) && holds(r, AFTER)));
}

/// Checks box `i`, through `client`; the log index when it applied,
/// `None` when the node does not lead or cannot commit now.
async fn write(client: &NodeClient, i: u32) -> Option<u64> {
    let batch = SetBatch {
        epoch: 1,
        sets: vec![(i, true)],
    };
    match client.write(SHARD, &batch).await.ok()? {
        WriteOutcome::Applied { log_id, .. } => Some(log_id.index),
        WriteOutcome::Rejected { rejection } => panic!("a valid write was rejected: {rejection}"),
        _ => None,
    }
}

fn holds(read: &ShardRead, i: u32) -> bool {
    Bitmap::try_deserialize::<Portable>(&read.bitmap)
        .expect("portable bitmap")
        .contains(i)
}

/// Makes node `id`'s stored log what a crash before its flush of entry
/// `from` leaves: entries from `from` on are gone, and so is a commit
/// mark past them. Answers the last log id it keeps.
fn cut_log_tail(cluster: &Cluster, id: u64, from: u64) -> LogId {
    let db = sled::open(cluster.data_dir(id)).expect("open the stopped node's sled db");
    let tree = db
        .open_tree(format!("group/{SHARD}"))
        .expect("the shard's tree");
    let key = |index: u64| {
        let mut k = vec![b'l'];
        k.extend_from_slice(&index.to_be_bytes());
        k
    };
    let mut cut = 0;
    for item in tree.range(key(from)..key(u64::MAX)) {
        let (k, _) = item.expect("read a log key");
        tree.remove(k).expect("remove a log entry");
        cut += 1;
    }
    assert!(cut >= 1, "node {id} has no log entry from {from} on");
    let kept_bytes = tree
        .get(key(from - 1))
        .expect("read the log")
        .expect("the entry before the cut");
    let kept: Entry = codec::decode(&kept_bytes).expect("a stored entry");
    tree.insert(b"m:committed", codec::encode(&Some(kept.log_id)))
        .expect("write the commit mark");
    db.flush().expect("flush the cut");
    kept.log_id
}
