//! Adaptive coalescing under a byte budget, against real processes: three
//! nodes (40,000 boxes, 4 shards, chunks of 4096, so chunks 0 and 1 share
//! shard 1's fan-out) and a real `checkraft-gateway` with the default
//! budget of 50 B/s per connection.
//!
//! A writer flips random boxes of chunk 0 (hot) through the nodes, ten
//! batches a second, while a client clicks a box of chunk 1 (quiet) twice
//! a second over its own websocket. One subscriber watches chunk 0, another
//! chunk 1, each keeping a mirror by the protocol's rule. Checked:
//!
//! - the quiet chunk's Updates reach its subscriber within the short tick
//!   of the click's Ack (plus the gateway's change-stream lag; asserted
//!   generously, the measured figures are printed);
//! - the hot chunk's subscriber stays under its budget (asserted with a
//!   margin: at most twice it over the run; without coalescing it gets
//!   several times the budget);
//! - both mirrors equal a linearizable read of their chunk once the
//!   writes stop.
//!
//! `COALESCING_TEST_BUDGET=0` runs the same test with the budget turned
//! off in the gateway (the assertion still holds the subscriber to the
//! default 50 B/s), to see it fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkraft_integration::{
    initialized_cluster, ChunkMirror, GatewayClient, GatewayProcess, Router, WsClient, WsEvent,
};
use checkraft_proto::ws::{AckStatus, ClientMessage, ServerMessage};

const TOKEN: &str = "gateway-ws-coalescing-token";
const BOXES: u64 = 40_000;
const CHUNK: u32 = 4096;
const HOT: u32 = 0;
const QUIET: u32 = 1;
/// The gateway's default budget, bytes per second.
const BUDGET: f64 = 50.0;
const LOAD: Duration = Duration::from_secs(40);
const WAIT: Duration = Duration::from_secs(30);

/// xorshift64*: reproducible pseudo-random values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Connects, reads Hello, subscribes to `chunk`, waits for the Pong that
/// proves the subscription, then fetches the chunk into a mirror.
async fn subscriber(
    gw: &GatewayProcess,
    http: &GatewayClient,
    chunk: u32,
) -> (WsClient, ChunkMirror) {
    let mut client = WsClient::connect(&gw.addr).await.unwrap();
    let hello = client.wait_for(WAIT, |m| Some(m.clone())).await.unwrap();
    assert!(
        matches!(
            hello,
            ServerMessage::Hello {
                protocol_version: 2,
                boxes: BOXES,
                chunk_size: CHUNK,
                ..
            }
        ),
        "{hello:?}"
    );
    client
        .send(&ClientMessage::Subscribe {
            first_chunk: chunk,
            count: 1,
        })
        .await
        .unwrap();
    let mut mirror = WsClient::mirror(BOXES, CHUNK);
    // Everything before the Pong is Stats; the fetch comes after.
    client
        .send(&ClientMessage::Ping { nonce: 1 })
        .await
        .unwrap();
    client
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::Pong { nonce: 1 }).then_some(())
        })
        .await
        .unwrap();
    mirror.fetch(http, chunk).await.unwrap();
    (client, mirror)
}

/// The boxes of `chunk` checked in a linearizable read.
async fn truth(router: &mut Router, chunk: u32) -> Vec<u32> {
    let start = chunk * CHUNK;
    router
        .read_all()
        .await
        .unwrap()
        .iter()
        .filter(|i| (start..start + CHUNK).contains(i))
        .collect()
}

fn held(mirror: &ChunkMirror, chunk: u32) -> Vec<u32> {
    let start = chunk * CHUNK;
    mirror
        .checked_boxes()
        .into_iter()
        .filter(|i| (start..start + CHUNK).contains(i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_chunk_stays_under_the_budget_and_a_quiet_one_stays_fast() {
    tokio::time::timeout(Duration::from_secs(300), coalescing())
        .await
        .expect("test exceeded its bound");
}

async fn coalescing() {
    let cluster = initialized_cluster(TOKEN, BOXES, 4).await;
    let budget = std::env::var("COALESCING_TEST_BUDGET").unwrap_or_else(|_| "50".into());
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[(
            "CHECKRAFT_GATEWAY_WS_BUDGET_BYTES_PER_SECOND",
            budget.as_str(),
        )],
    )
    .await;
    let http = gw.client();
    let (mut hot, mut hot_mirror) = subscriber(&gw, &http, HOT).await;
    let (mut quiet, mut quiet_mirror) = subscriber(&gw, &http, QUIET).await;
    let members: Vec<String> = cluster.members().into_values().collect();

    // The hot chunk: 10 batches a second of 5 random boxes to random values.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let members = members.clone();
        tokio::spawn(async move {
            let mut router = Router::new(members).await.unwrap();
            let mut rng = Rng(0x00c0_ffee_1234_5678);
            let mut batches = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let sets: Vec<(u32, bool)> = (0..5)
                    .map(|_| {
                        (
                            (rng.next() % u64::from(CHUNK)) as u32,
                            rng.next() >> 63 == 1,
                        )
                    })
                    .collect();
                router.write(&sets).await.unwrap();
                batches += 1;
            }
            batches
        })
    };

    // The hot subscriber counts its payload bytes and keeps its mirror.
    let hot_reader = {
        let stop = stop.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (mut bytes, mut updates, mut biggest) = (0usize, 0usize, 0usize);
            let mut gaps: Vec<Duration> = Vec::new();
            let mut last_update: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(event) = hot
                    .try_next_event(Duration::from_millis(200))
                    .await
                    .unwrap()
                else {
                    continue;
                };
                let WsEvent::Message(msg) = event else {
                    panic!("hot subscriber closed: {event:?}");
                };
                let len = msg.encode().len();
                bytes += len;
                if matches!(msg, ServerMessage::Update { .. }) {
                    updates += 1;
                    biggest = biggest.max(len);
                    let now = Instant::now();
                    if let Some(last) = last_update.replace(now) {
                        gaps.push(now - last);
                    }
                }
                hot_mirror.handle(&http, &msg).await.unwrap();
            }
            (
                hot,
                hot_mirror,
                bytes,
                started.elapsed(),
                updates,
                biggest,
                gaps,
            )
        })
    };

    // The quiet chunk: a click every 500 ms from the quiet subscriber's own
    // socket; the latency from its Ack to the Update carrying it.
    let load_started = Instant::now();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut request_id = 0u32;
    let index = QUIET * CHUNK + 77;
    while load_started.elapsed() < LOAD {
        request_id += 1;
        let checked = request_id % 2 == 1;
        quiet
            .send(&ClientMessage::Set {
                request_id,
                index,
                checked,
            })
            .await
            .unwrap();
        let mut acked: Option<Instant> = None;
        let mut shown: Option<Instant> = None;
        while acked.is_none() || shown.is_none() {
            let event = quiet.next_event(WAIT).await.unwrap();
            let WsEvent::Message(msg) = event else {
                panic!("quiet subscriber closed: {event:?}");
            };
            match &msg {
                ServerMessage::Ack {
                    request_id: r,
                    status,
                    ..
                } if *r == request_id => {
                    assert_eq!(*status, AckStatus::Applied);
                    acked = Some(Instant::now());
                }
                ServerMessage::Update { entries, .. }
                    if entries
                        .iter()
                        .any(|e| u32::from(e.offset) == index % CHUNK && e.checked == checked) =>
                {
                    shown = Some(Instant::now());
                }
                _ => {}
            }
            quiet_mirror.handle(&http, &msg).await.unwrap();
        }
        let (acked, shown) = (acked.unwrap(), shown.unwrap());
        latencies.push(shown.saturating_duration_since(acked));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let batches = writer.await.unwrap();
    let (mut hot, mut hot_mirror, bytes, elapsed, updates, biggest, gaps) =
        hot_reader.await.unwrap();

    // Both mirrors converge to a linearizable read once the writes stop
    // (held Updates go out as the budget refills).
    let mut router = Router::new(members).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let want_hot = truth(&mut router, HOT).await;
    while held(&hot_mirror, HOT) != want_hot {
        assert!(
            Instant::now() < deadline,
            "the hot mirror did not converge: {} boxes held, {} in the read",
            held(&hot_mirror, HOT).len(),
            want_hot.len()
        );
        if let Some(WsEvent::Message(msg)) = hot
            .try_next_event(Duration::from_millis(500))
            .await
            .unwrap()
        {
            hot_mirror.handle(&http, &msg).await.unwrap();
        }
    }
    let want_quiet = truth(&mut router, QUIET).await;
    quiet_mirror
        .sync(&mut quiet, &http, 99, WAIT)
        .await
        .unwrap();
    assert_eq!(held(&quiet_mirror, QUIET), want_quiet, "the quiet mirror");

    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    let rate = bytes as f64 / elapsed.as_secs_f64();
    let mut gaps = gaps;
    gaps.sort();
    let gap_p50 = gaps.get(gaps.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "budget {budget} B/s: hot subscriber {bytes} B in {elapsed:.1?} = {rate:.1} B/s, \
         {updates} Updates (largest {biggest} B, median gap {gap_p50:?}) for {batches} write \
         batches; quiet chunk Ack→Update over {} clicks: p50 {:?}, p90 {:?}, max {:?}; \
         mirrors: hot {} boxes ({:?}), quiet {} boxes ({:?})",
        latencies.len(),
        pct(50),
        pct(90),
        pct(100),
        want_hot.len(),
        hot_mirror.stats,
        want_quiet.len(),
        quiet_mirror.stats,
    );
    assert!(batches > 100, "the writer barely ran: {batches} batches");
    assert!(
        rate <= 2.0 * BUDGET,
        "the hot chunk's subscriber got {rate:.1} B/s, over twice its {BUDGET} B/s budget"
    );
    // The short tick is 20 ms; the Update also waits for this gateway's
    // change stream, which the Ack does not. Generous for a busy machine.
    assert!(
        pct(50) <= Duration::from_millis(250),
        "quiet chunk: median Ack→Update {:?}",
        pct(50)
    );
    assert!(
        pct(50) < gap_p50,
        "the quiet chunk ({:?}) is not faster than the hot one's Updates ({gap_p50:?})",
        pct(50)
    );
}
