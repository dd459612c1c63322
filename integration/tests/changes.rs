//! The change stream (`GET /shards/{id}/changes?from=SEQ`) against real
//! node processes:
//!
//! - a subscriber that starts mid-way on a follower, follows live writes,
//!   disconnects and resumes on another replica receives every change
//!   exactly once, in `seq` order, with the sets that were written;
//! - a subscriber whose `from` is no longer retained first gets a full
//!   `Snapshot` event of the current state, then live changes (and one
//!   whose `from` is still just retained gets a replay, not a snapshot);
//! - an idle, up-to-date subscriber receives `Progress` markers carrying
//!   the current `seq`, and one claiming a `seq` the replica never reached
//!   is told the replica's real `seq`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkraft_integration::{eventually, ChangeStream, Cluster};
use checkraft_proto::{BoxSet, ChangeEvent, SetBatch, ShardDescriptor, WriteOutcome};
use croaring::{Bitmap, Portable};

const SHARD: u64 = 1;
const TEST_LIMIT: Duration = Duration::from_secs(120);
/// Generous bound for anything that should happen "soon" on a slow machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn descriptor() -> ShardDescriptor {
    ShardDescriptor {
        shard: SHARD,
        start: 0,
        end: 100_000,
        epoch: 1,
    }
}

/// Starts `n` nodes with `env`, hosts the shard on all of them (node 1
/// initializes it), and returns the cluster and the leader's id.
async fn shard_cluster(n: u64, env: &[(&str, &str)]) -> (Cluster, u64) {
    let cluster = Cluster::start(n, env).await;
    cluster.create_shard(&descriptor()).await;
    let leader = cluster.shard_leader(SHARD).await;
    (cluster, leader)
}

/// The node that reports itself as the shard's leader.
/// What the test wrote: the sets of each applied `seq`.
#[derive(Default)]
struct Model {
    by_seq: BTreeMap<u64, Vec<BoxSet>>,
}

impl Model {
    /// Checked indices after every change up to and including `seq`.
    fn checked_through(&self, seq: u64) -> BTreeSet<u32> {
        let mut checked = BTreeSet::new();
        for sets in self.by_seq.range(..=seq).map(|(_, s)| s) {
            for &(i, c) in sets {
                if c {
                    checked.insert(i);
                } else {
                    checked.remove(&i);
                }
            }
        }
        checked
    }
}

/// Writes one batch, following leader forwards and retrying while the
/// cluster settles, and records it in `model` under the `seq` it got.
/// Returns that `seq`, which must be the next one: every batch written
/// here is accepted exactly once.
async fn write(cluster: &Cluster, leader: &mut u64, model: &mut Model, sets: Vec<BoxSet>) -> u64 {
    let batch = SetBatch { epoch: 1, sets };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match cluster.client(*leader).write(SHARD, &batch).await {
            Ok(WriteOutcome::Applied { seq, .. }) => {
                let expected = model.by_seq.keys().next_back().map_or(1, |last| last + 1);
                assert_eq!(
                    seq, expected,
                    "a write got seq {seq}, expected the next one, {expected}"
                );
                model.by_seq.insert(seq, batch.sets);
                return seq;
            }
            Ok(WriteOutcome::Rejected { rejection }) => {
                panic!("a valid batch was rejected: {rejection}")
            }
            Ok(other @ WriteOutcome::MetaApplied { .. }) => {
                panic!("a shard write answered as a metadata command: {other:?}")
            }
            Ok(WriteOutcome::ForwardToLeader {
                leader_id: Some(id),
                ..
            }) => *leader = id,
            Ok(WriteOutcome::ForwardToLeader {
                leader_id: None, ..
            })
            | Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader accepted a write within {PATIENCE:?}"
        );
    }
}

/// Receives the `Changes` events `seqs` from `stream`, in order, checks
/// that each carries the sets written under its `seq`, and appends the
/// seqs to `received`.
async fn expect_changes(
    stream: &mut ChangeStream,
    seqs: std::ops::RangeInclusive<u64>,
    model: &Model,
    received: &mut Vec<u64>,
) {
    for want in seqs {
        let event = stream
            .next_change(PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("stream failed while waiting for seq {want}: {e}"))
            .unwrap_or_else(|| panic!("no event for seq {want} within {PATIENCE:?}"));
        match event {
            ChangeEvent::Changes {
                shard,
                epoch,
                seq,
                sets,
            } => {
                assert_eq!(
                    (shard, epoch),
                    (SHARD, 1),
                    "event of seq {seq} names the wrong shard/epoch"
                );
                assert_eq!(seq, want, "changes out of order, duplicated or missing");
                assert_eq!(
                    &sets, &model.by_seq[&seq],
                    "event of seq {seq} does not carry what was written"
                );
                received.push(seq);
            }
            other => panic!("expected Changes with seq {want}, got {other:?}"),
        }
    }
}

/// Decodes a `Portable` bitmap into its members.
fn members_of(bytes: &[u8]) -> BTreeSet<u32> {
    Bitmap::try_deserialize::<Portable>(bytes)
        .expect("valid Portable bitmap")
        .iter()
        .collect()
}

/// Box index written by batch `k` of a test: distinct per `k`, in range.
fn index(k: u64) -> u32 {
    (k * 10) as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_replica_is_exactly_once_and_in_order() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (cluster, mut leader) = shard_cluster(3, &[]).await;
        let mut model = Model::default();
        for k in 1..=20 {
            write(&cluster, &mut leader, &mut model, vec![(index(k), true)]).await;
        }
        assert_eq!(
            model.by_seq.keys().copied().collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
        let follower = (1..=3).find(|id| *id != leader).expect("a follower");

        // First connection: a follower, from the middle of the history.
        let from = 10;
        let mut received = Vec::new();
        let mut stream = cluster
            .client(follower)
            .changes(SHARD, from)
            .await
            .expect("subscribe to a follower");
        expect_changes(&mut stream, 11..=20, &model, &mut received).await;
        // Live: written while this subscriber is connected.
        for k in 21..=30 {
            write(&cluster, &mut leader, &mut model, vec![(index(k), true)]).await;
        }
        let cut = 25;
        expect_changes(&mut stream, 21..=cut, &model, &mut received).await;
        drop(stream);

        // Second connection: another replica, resuming from the last seq
        // seen; 26..=30 are replayed, 31..=35 arrive live.
        let other = cluster.client(leader);
        assert_ne!(leader, follower);
        let mut stream = other
            .changes(SHARD, cut)
            .await
            .expect("resubscribe to the leader");
        expect_changes(&mut stream, cut + 1..=30, &model, &mut received).await;
        for k in 31..=35 {
            write(&cluster, &mut leader, &mut model, vec![(index(k), true)]).await;
        }
        expect_changes(&mut stream, 31..=35, &model, &mut received).await;

        // Nothing beyond 35 follows (no duplicate of anything already sent).
        let extra = stream
            .next_change(Duration::from_secs(2))
            .await
            .expect("stream still healthy");
        assert!(extra.is_none(), "unexpected event after seq 35: {extra:?}");

        // Exactly from+1..=35, once each, in order across both connections.
        assert_eq!(received, (from + 1..=35).collect::<Vec<_>>());

        // The state at `from` plus every received set is the shard's state.
        let mut rebuilt = model.checked_through(from);
        for seq in &received {
            for &(i, c) in &model.by_seq[seq] {
                if c {
                    rebuilt.insert(i);
                } else {
                    rebuilt.remove(&i);
                }
            }
        }
        assert_eq!(rebuilt, model.checked_through(35));
        let read = eventually(PATIENCE, "a linearizable read at the leader", || {
            let c = cluster.client(leader);
            async move { c.read(SHARD, true).await.ok() }
        })
        .await;
        assert_eq!(read.seq, 35);
        assert_eq!(
            members_of(&read.bitmap),
            rebuilt,
            "the shard's state differs from the replayed stream"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_seq_gets_a_snapshot_first_then_live_changes() {
    tokio::time::timeout(TEST_LIMIT, async {
        // One replica is enough: retention is a per-replica property.
        let (cluster, mut leader) =
            shard_cluster(1, &[("CHECKRAFT_NODE_RETAINED_CHANGES", "8")]).await;
        let mut model = Model::default();
        for k in 1..=30 {
            write(
                &cluster,
                &mut leader,
                &mut model,
                vec![(index(k) + 3, true)],
            )
            .await;
        }
        let client = cluster.client(leader);

        // Retained are seqs 23..=30: from 22 is still a plain replay.
        let mut received = Vec::new();
        let mut replay = client.changes(SHARD, 22).await.expect("subscribe from 22");
        expect_changes(&mut replay, 23..=30, &model, &mut received).await;
        drop(replay);

        // Seq 2 is gone: the full state comes first.
        let mut stream = client.changes(SHARD, 1).await.expect("subscribe from 1");
        let first = stream
            .next_change(PATIENCE)
            .await
            .expect("stream failed")
            .expect("no first event within the limit");
        match first {
            ChangeEvent::Snapshot {
                shard,
                epoch,
                seq,
                start,
                end,
                bitmap,
            } => {
                assert_eq!((shard, epoch, seq), (SHARD, 1, 30));
                assert_eq!((start, end), (0, 100_000));
                let expected: BTreeSet<u32> = (1..=30).map(|k| index(k) + 3).collect();
                assert_eq!(
                    members_of(&bitmap),
                    expected,
                    "snapshot bitmap is not the 30 checked boxes"
                );
                assert_eq!(expected, model.checked_through(30));
            }
            other => panic!("expected a Snapshot event at seq 30 first, got {other:?}"),
        }
        for k in 31..=33 {
            write(
                &cluster,
                &mut leader,
                &mut model,
                vec![(index(k) + 3, true)],
            )
            .await;
        }
        let mut live = Vec::new();
        expect_changes(&mut stream, 31..=33, &model, &mut live).await;
        assert_eq!(live, vec![31, 32, 33]);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscriber_gets_progress_markers_with_the_current_seq() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (cluster, mut leader) =
            shard_cluster(1, &[("CHECKRAFT_NODE_PROGRESS_MS", "200")]).await;
        let mut model = Model::default();
        for k in 1..=3 {
            write(&cluster, &mut leader, &mut model, vec![(index(k), true)]).await;
        }
        let client = cluster.client(leader);

        /// Reads events until a `Progress` marker, checking that only
        /// markers for `seq` arrive (no change is pending).
        async fn next_marker(stream: &mut ChangeStream, seq: u64) {
            let event = stream
                .next(PATIENCE)
                .await
                .expect("stream failed")
                .unwrap_or_else(|| panic!("no progress marker within {PATIENCE:?}"));
            match event {
                ChangeEvent::Progress {
                    shard,
                    epoch,
                    seq: got,
                } => {
                    assert_eq!(
                        (shard, epoch, got),
                        (SHARD, 1, seq),
                        "progress marker with the wrong seq"
                    )
                }
                other => panic!("expected a progress marker at seq {seq}, got {other:?}"),
            }
        }

        // Up to date from the start: markers only, with seq 3, repeatedly.
        let mut stream = client.changes(SHARD, 3).await.expect("subscribe");
        for _ in 0..3 {
            next_marker(&mut stream, 3).await;
        }

        // After one more write: the change, then markers with the new seq.
        write(&cluster, &mut leader, &mut model, vec![(index(4), true)]).await;
        let mut received = Vec::new();
        expect_changes(&mut stream, 4..=4, &model, &mut received).await;
        next_marker(&mut stream, 4).await;
        next_marker(&mut stream, 4).await;

        // A subscriber claiming a position this replica never reached is
        // told the replica's real seq, so it can tell it is ahead of it.
        let mut ahead = client.changes(SHARD, 1000).await.expect("subscribe ahead");
        next_marker(&mut ahead, 4).await;
    })
    .await
    .expect("test timed out");
}
