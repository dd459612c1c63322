//! Recovery of the gateway's websocket layer against real processes: three
//! nodes bootstrapped with `raftctl init` (40,000 boxes, 4 shards, chunks
//! of 4096 → 10 chunks) and a real `checkraft-gateway`. A subscriber keeps
//! every chunk by the protocol's client rule (`ChunkMirror`: HTTP fetch,
//! then Updates chained on versions, refetch on a gap, a Resync or a
//! Versions mismatch).
//!
//! - a subscriber that stops reading while the shards take many large
//!   writes is pushed behind (its bounded queue drops updates); once it
//!   reads again it gets `Resync{FellBehind}`, and after the writes stop
//!   its chunks equal a linearizable read of the cluster;
//! - kill -9 of a shard leader while a websocket client writes: Sets are
//!   Applied again after the kill, every Applied box is in a linearizable
//!   read and in the subscriber's chunks, which equal the cluster's state.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checkraft_integration::{
    eventually, initialized_cluster, metric_sum, Cluster, GatewayClient, GatewayProcess, Router,
    WsClient, WsEvent,
};
use checkraft_proto::ws::{AckStatus, ClientMessage, ServerMessage};

const TOKEN: &str = "gateway-ws-recovery-token";
const BOXES: u64 = 40_000;
const CHUNK: u32 = 4096;
const CHUNKS: u32 = 10;
const WAIT: Duration = Duration::from_secs(30);

async fn cluster() -> Cluster {
    initialized_cluster(TOKEN, BOXES, 4).await
}

/// Reads the Hello and checks the grid.
async fn hello(client: &mut WsClient) {
    match client.wait_for(WAIT, |m| Some(m.clone())).await.unwrap() {
        ServerMessage::Hello {
            boxes, chunk_size, ..
        } => assert_eq!((boxes, chunk_size), (BOXES, CHUNK)),
        other => panic!("first message is not Hello: {other:?}"),
    }
}

/// A counter or counter family total from `/metrics`.
async fn metric(gw: &GatewayClient, name: &str) -> f64 {
    metric_sum(&gw.scrape().await.unwrap(), name)
}

const DROPPED: &str = "checkraft_gateway_ws_dropped_updates_total";
const RESYNCS: &str = "checkraft_gateway_ws_resyncs_total";

/// xorshift64*: reproducible pseudo-random boxes and values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_falls_behind_resyncs_and_converges() {
    tokio::time::timeout(Duration::from_secs(300), fell_behind_test())
        .await
        .expect("fell-behind test exceeded its bound");
}

async fn fell_behind_test() {
    let started = Instant::now();
    let cluster = cluster().await;
    // No byte budget: over one, a silent client's Updates are held per
    // chunk instead of filling its queue (docs/protocol.md).
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[("CHECKRAFT_GATEWAY_WS_BUDGET_BYTES_PER_SECOND", "0")],
    )
    .await;
    let http = gw.client();

    // A 4 KiB receive buffer: a client that stops reading fills its TCP
    // path after a few hundred KB instead of tens of MB (tcp_rmem max).
    let mut client = WsClient::connect_with_recv_buffer(&gw.addr, 4096)
        .await
        .unwrap();
    hello(&mut client).await;
    client
        .send(&ClientMessage::Subscribe {
            first_chunk: 0,
            count: CHUNKS,
        })
        .await
        .unwrap();
    let mut mirror = WsClient::mirror(BOXES, CHUNK);
    assert_eq!(mirror.chunk_count(), CHUNKS);
    // The subscription is in place before the fetches.
    mirror.sync(&mut client, &http, 1, WAIT).await.unwrap();
    for c in 0..CHUNKS {
        mirror.fetch(&http, c).await.unwrap();
    }

    // The client stops reading. A writer sends large batches straight to
    // the shard leaders: every round sets every box to a random value, so
    // each fan-out tick queues ~10 Updates of ~8 KB (4096 entries) each.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let members: Vec<String> = cluster.members().into_values().collect();
    let writer = {
        let (stop, rounds, members) = (stop.clone(), rounds.clone(), members.clone());
        tokio::spawn(async move {
            let mut router = Router::new(members).await.unwrap();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            while !stop.load(Ordering::Relaxed) {
                // Every box, with a random value: each chunk's Update of
                // the round carries 4096 entries (~8 KB).
                let sets: Vec<(u32, bool)> = (0..BOXES as u32)
                    .map(|i| (i, rng.next() >> 63 == 1))
                    .collect();
                let acked = router.write(&sets).await.unwrap();
                assert_eq!(acked.len(), sets.len(), "a batch was not acknowledged");
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The gateway's queue for this connection overflows.
    let dropped = eventually(
        Duration::from_secs(120),
        "the gateway to drop updates for the silent subscriber",
        || {
            let http = http.clone();
            async move {
                let n = metric(&http, DROPPED).await;
                (n > 0.0).then_some(n)
            }
        },
    )
    .await;
    let behind_after = rounds.load(Ordering::Relaxed);
    // A few more rounds while it is behind.
    eventually(Duration::from_secs(60), "more write rounds", || async {
        (rounds.load(Ordering::Relaxed) >= behind_after + 5).then_some(())
    })
    .await;

    // Read again, by the rule, while the writes go on for a while.
    let reading = Instant::now();
    while reading.elapsed() < Duration::from_secs(3) {
        match client
            .try_next_event(Duration::from_millis(200))
            .await
            .unwrap()
        {
            Some(WsEvent::Message(msg)) => {
                mirror.handle(&http, &msg).await.unwrap();
            }
            Some(WsEvent::Closed(close)) => panic!("subscriber closed: {close:?}"),
            None => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let total_rounds = rounds.load(Ordering::Relaxed);

    // After the writes stop, the mirror converges on the cluster's state
    // without any refetch outside the rule.
    let mut router = Router::new(members).await.unwrap();
    let mut nonce = 100;
    let mut last_diff = 0usize;
    let converged = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            nonce += 1;
            mirror.sync(&mut client, &http, nonce, WAIT).await.unwrap();
            let want = router.read_all().await.unwrap().to_vec();
            let have = mirror.checked_boxes();
            if have == want {
                return want.len();
            }
            last_diff = have.len().abs_diff(want.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the subscriber never converged (last size difference {last_diff}); stats {:?}",
            mirror.stats
        )
    });

    assert!(
        mirror.stats.fell_behind > 0,
        "no Resync{{FellBehind}} reached the client: {:?}",
        mirror.stats
    );
    let dropped_end = metric(&http, DROPPED).await;
    let resyncs = metric(&http, RESYNCS).await;
    assert!(dropped_end > 0.0 && resyncs > 0.0);
    eprintln!(
        "fell behind after {behind_after} rounds of 40,000 sets ({total_rounds} in all); \
         dropped updates {dropped} → {dropped_end}, resyncs {resyncs}; \
         {converged} boxes checked; mirror {:?}; {:?}",
        mirror.stats,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_writes_survive_a_leader_kill() {
    tokio::time::timeout(Duration::from_secs(300), ws_failover_test())
        .await
        .expect("websocket failover test exceeded its bound");
}

/// One Set of the writer: box, Ack status (None: no Ack in time), seq.
type SetOutcome = (u32, Option<AckStatus>, u64);

async fn ws_failover_test() {
    let started = Instant::now();
    let mut cluster = cluster().await;
    // The writer is one client sending one Set at a time; raise the Set
    // rate limits so the run is not dominated by them.
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[
            ("CHECKRAFT_GATEWAY_WS_SETS_PER_SECOND", "500"),
            ("CHECKRAFT_GATEWAY_WS_SETS_BURST", "500"),
            ("CHECKRAFT_GATEWAY_WS_IP_SETS_PER_SECOND", "500"),
            ("CHECKRAFT_GATEWAY_WS_IP_SETS_BURST", "500"),
            // The subscriber holds every chunk under a steady write load:
            // at the default budget its Updates trickle in long after.
            ("CHECKRAFT_GATEWAY_WS_BUDGET_BYTES_PER_SECOND", "0"),
        ],
    )
    .await;
    let http = gw.client();

    // The subscriber: every chunk, from HTTP fetches, then Updates.
    let mut sub = WsClient::connect(&gw.addr).await.unwrap();
    hello(&mut sub).await;
    sub.send(&ClientMessage::Subscribe {
        first_chunk: 0,
        count: CHUNKS,
    })
    .await
    .unwrap();
    let mut mirror = WsClient::mirror(BOXES, CHUNK);
    mirror.sync(&mut sub, &http, 1, WAIT).await.unwrap();
    for c in 0..CHUNKS {
        mirror.fetch(&http, c).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let subscriber = {
        let (stop, http) = (stop.clone(), http.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match sub
                    .try_next_event(Duration::from_millis(200))
                    .await
                    .unwrap()
                {
                    Some(WsEvent::Message(msg)) => {
                        mirror.handle(&http, &msg).await.unwrap();
                    }
                    Some(WsEvent::Closed(close)) => panic!("subscriber closed: {close:?}"),
                    None => {}
                }
            }
            (sub, mirror)
        })
    };

    // The writer: distinct boxes over every shard, one Set at a time.
    let mut writer_ws = WsClient::connect(&gw.addr).await.unwrap();
    hello(&mut writer_ws).await;
    let outcomes = Arc::new(Mutex::new(Vec::<SetOutcome>::new()));
    let applied = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, outcomes, applied) = (stop.clone(), outcomes.clone(), applied.clone());
        tokio::spawn(async move {
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // 7919 is prime to 40,000: distinct boxes for k < 40,000.
                let index = (u64::from(k) * 7919 % BOXES) as u32;
                let request_id = k;
                k += 1;
                writer_ws
                    .send(&ClientMessage::Set {
                        request_id,
                        index,
                        checked: true,
                    })
                    .await
                    .unwrap();
                let ack = writer_ws
                    .wait_for(WAIT, |m| match m {
                        ServerMessage::Ack {
                            request_id: r,
                            status,
                            seq,
                        } if *r == request_id => Some((*status, *seq)),
                        _ => None,
                    })
                    .await;
                let outcome = match ack {
                    Ok((status, seq)) => (index, Some(status), seq),
                    Err(e) => {
                        // Only a missing Ack is tolerated, not a closed socket.
                        assert!(
                            e.to_string().contains("no websocket message"),
                            "writer: {e}"
                        );
                        (index, None, 0)
                    }
                };
                if outcome.1 == Some(AckStatus::Applied) {
                    assert!(outcome.2 > 0, "Applied with seq 0 for box {index}");
                    applied.fetch_add(1, Ordering::Relaxed);
                }
                outcomes.lock().unwrap().push(outcome);
            }
        })
    };

    eventually(
        Duration::from_secs(60),
        "Applied Sets before the kill",
        || {
            let n = applied.load(Ordering::Relaxed);
            async move { (n >= 30).then_some(()) }
        },
    )
    .await;
    let shard = 2;
    let victim = cluster.confirmed_shard_leader(shard, TOKEN).await;
    cluster.kill(victim);
    let killed_at = Instant::now();
    let before = applied.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(120),
        "Applied Sets after the kill",
        || {
            let n = applied.load(Ordering::Relaxed);
            async move { (n >= before + 60).then_some(()) }
        },
    )
    .await;
    let resumed_in = killed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let (mut sub, mut mirror) = subscriber.await.unwrap();
    let outcomes = outcomes.lock().unwrap().clone();

    // The subscriber converges on the cluster's exact state.
    let survivors: Vec<String> = cluster
        .members()
        .iter()
        .filter(|(id, _)| **id != victim)
        .map(|(_, a)| a.clone())
        .collect();
    let mut router = Router::new(survivors).await.unwrap();
    let mut nonce = 100;
    let mut last = (0usize, 0usize);
    let want = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            nonce += 1;
            mirror.sync(&mut sub, &http, nonce, WAIT).await.unwrap();
            let want = router.read_all().await.unwrap().to_vec();
            let have = mirror.checked_boxes();
            if have == want {
                return want;
            }
            last = (have.len(), want.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the subscriber never converged (mirror {} boxes, cluster {}); stats {:?}",
            last.0, last.1, mirror.stats
        )
    });

    // Every Applied Set is in the linearizable read and in the mirror.
    let all = router.read_all().await.unwrap();
    let count = |s: Option<AckStatus>| outcomes.iter().filter(|o| o.1 == s).count();
    let (n_applied, n_unavailable, n_none) = (
        count(Some(AckStatus::Applied)),
        count(Some(AckStatus::Unavailable)),
        count(None),
    );
    for (index, status, _) in &outcomes {
        if *status == Some(AckStatus::Applied) {
            assert!(
                all.contains(*index),
                "Applied box {index} missing from the linearizable read"
            );
            assert!(
                mirror.checked(u64::from(*index)),
                "Applied box {index} missing from the subscriber's chunks"
            );
        }
    }
    // Nothing but the writer's boxes was checked.
    for i in &want {
        assert!(
            outcomes.iter().any(|o| o.0 == *i),
            "box {i} checked without a Set"
        );
    }
    eprintln!(
        "killed node {victim} (leader of shard {shard}); {} Sets: {n_applied} Applied \
         ({before} before the kill), {n_unavailable} Unavailable, {n_none} without Ack; \
         writes resumed {resumed_in:?} after the kill; {} boxes checked; mirror {:?}; {:?}",
        outcomes.len(),
        want.len(),
        mirror.stats,
        started.elapsed()
    );
}
