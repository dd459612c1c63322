//! Many groups on the same nodes, and replica moves through the admin API.
//!
//! Four real nodes. Eight shards are created on nodes 1-3 (so all their
//! raft RPCs share one HTTP client per peer and are routed by group id).
//! Each shard gets writes; then shard 1's replica moves from node 1 to node
//! 4 (create → add learner → change membership) while a snapshot exists,
//! so node 4 catches up by snapshot install plus log. Finally node 4 and a
//! restarted node 2 (which reopens all eight groups from disk) hold exactly
//! the acknowledged state.

use std::collections::BTreeMap;
use std::time::Duration;

use checkraft_integration::{eventually, Cluster, NodeClient};
use checkraft_proto::{SetBatch, ShardDescriptor, WriteOutcome};
use croaring::{Bitmap, Portable};

const SHARDS: u64 = 8;
const WIDTH: u64 = 10_000;

fn descriptor(shard: u64) -> ShardDescriptor {
    ShardDescriptor {
        shard,
        start: (shard - 1) * WIDTH,
        end: shard * WIDTH,
        epoch: 1,
    }
}

/// Finds the leader of `shard` among `ids` and writes `sets` there.
async fn write(cluster: &Cluster, ids: &[u64], shard: u64, sets: Vec<(u32, bool)>) {
    let clients: Vec<NodeClient> = ids.iter().map(|id| cluster.client(*id)).collect();
    eventually(
        Duration::from_secs(30),
        &format!("a write to shard {shard} to apply"),
        || {
            let clients = clients.clone();
            let sets = sets.clone();
            async move {
                for c in &clients {
                    if let Ok(WriteOutcome::Applied { .. }) = c
                        .write(
                            shard,
                            &SetBatch {
                                epoch: 1,
                                sets: sets.clone(),
                            },
                        )
                        .await
                    {
                        return Some(());
                    }
                }
                None
            }
        },
    )
    .await
}

async fn boxes(client: &NodeClient, shard: u64) -> Vec<u32> {
    let read = client.read(shard, false).await.unwrap();
    Bitmap::try_deserialize::<Portable>(&read.bitmap)
        .unwrap()
        .iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_groups_and_a_replica_move() {
    tokio::time::timeout(Duration::from_secs(240), run())
        .await
        .expect("membership test exceeded its time bound");
}

async fn run() {
    let mut cluster = Cluster::start(4, &[]).await;
    let all = cluster.members();
    let first_three: BTreeMap<u64, String> = all
        .iter()
        .filter(|(id, _)| **id <= 3)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    for shard in 1..=SHARDS {
        for id in 1..=3u64 {
            let created = cluster
                .client(id)
                .create_group(descriptor(shard), first_three.clone(), id == 1)
                .await
                .unwrap();
            assert!(created.created);
        }
    }
    // Re-creating with the same descriptor is idempotent; another range conflicts.
    assert!(
        !cluster
            .client(2)
            .create_group(descriptor(3), BTreeMap::new(), false)
            .await
            .unwrap()
            .created
    );
    let clash = ShardDescriptor {
        end: 3 * WIDTH + 5,
        ..descriptor(3)
    };
    assert!(cluster
        .client(2)
        .create_group(clash, BTreeMap::new(), false)
        .await
        .is_err());

    // Each shard gets its own boxes.
    let mut expected: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for shard in 1..=SHARDS {
        let base = descriptor(shard).start as u32;
        let sets: Vec<(u32, bool)> = (0..20).map(|k| (base + k * 7, true)).collect();
        write(&cluster, &[1, 2, 3], shard, sets.clone()).await;
        expected.insert(shard, sets.iter().map(|(i, _)| *i).collect());
    }

    // Snapshot shard 1 so the move below ships a snapshot, then write more.
    let lead = cluster.shard_leader(1).await;
    let snap = cluster.client(lead).snapshot(1).await.unwrap();
    assert!(snap.last_log_id.is_some() && snap.seq >= 1);
    let more: Vec<(u32, bool)> = vec![(5000, true), (0, false)];
    write(&cluster, &[1, 2, 3], 1, more).await;
    let shard1 = expected.get_mut(&1).unwrap();
    shard1.retain(|i| *i != 0);
    shard1.push(5000);
    shard1.sort();

    // Move shard 1's replica from node 1 to node 4.
    cluster
        .client(4)
        .create_group(descriptor(1), BTreeMap::new(), false)
        .await
        .unwrap();
    let lead = cluster.shard_leader(1).await;
    let learner = cluster
        .client(lead)
        .add_learner(1, 4, &all[&4])
        .await
        .unwrap();
    assert!(learner.learners.contains(&4));
    let changed = cluster
        .client(lead)
        .change_membership(1, &[2, 3, 4])
        .await
        .unwrap();
    assert_eq!(
        changed.voters.iter().copied().collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert!(!changed.learners.contains(&1));
    write(&cluster, &[2, 3, 4], 1, vec![(6000, true)]).await;
    expected.get_mut(&1).unwrap().push(6000);

    // Restart node 2: it reopens all eight groups from its sled database.
    cluster.kill(2);
    cluster.restart(2).await;
    let status = cluster.client(2).status().await.unwrap();
    assert_eq!(
        status.groups.len() as u64,
        SHARDS,
        "node 2 reopened every group"
    );

    for (shard, want) in &expected {
        let replicas: Vec<u64> = if *shard == 1 {
            vec![2, 3, 4]
        } else {
            vec![1, 2, 3]
        };
        for id in replicas {
            let client = cluster.client(id);
            let want = want.clone();
            eventually(
                Duration::from_secs(30),
                &format!("shard {shard} on node {id} to converge"),
                || {
                    let client = client.clone();
                    let want = want.clone();
                    async move { (boxes(&client, *shard).await == want).then_some(()) }
                },
            )
            .await;
        }
    }
}
