//! Independent clients' mirrors converge under a day-like load, with the
//! protocol version 2 format (list and bitset Updates), against real
//! processes: three nodes (40,000 boxes, 4 shards, chunks of 4096, so 10
//! chunks) and two `checkraft-gateway`s.
//!
//! Four writer connections (two per gateway) send 3,600 websocket Sets
//! at a steady pace, random boxes to random values: most in a 128-box
//! window of each of two hot chunks (so coalesced Updates are dense and
//! take the bitset form), the rest spread over the other chunks. Budgets are on
//! (smaller ticks and windows than the defaults, so that the run stays
//! short): the hot chunks go to long ticks, and the observer of the whole
//! grid has Updates held and merged for it.
//!
//! Five observers, spread over both gateways, each subscribe to a
//! viewport (hot and quiet chunks), fetch it after the subscription took
//! effect, and keep a mirror by the protocol's rule (the harness's
//! [`ChunkMirror`]): an Update applies only on its `prev_version` chain;
//! a gap, a `Resync` or a `Versions` entry ahead of the mirror refetches
//! the chunk over HTTP (the documented path), which the report counts.
//! Once the writes stop, every mirror must equal a linearizable read of
//! its chunks (every shard read from its leader), within a bound.
//!
//! To see it fail: make `observe` hand the mirror bitset-form Updates
//! with their entries removed (same versions): every mirror of a hot
//! chunk then ends tens of boxes away from the read, and the test fails
//! after `SETTLE`. Dropping one Update instead must not fail it: the next
//! one of that chunk does not chain, and the mirror refetches (one gap,
//! one more fetch in the report).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkraft_integration::{
    initialized_cluster, metric_sum, ChunkMirror, GatewayClient, GatewayProcess, MirrorAction,
    Router, WsClient, WsEvent,
};
use checkraft_proto::ws::{AckStatus, ClientMessage, ServerMessage};
use tokio::sync::watch;

const TOKEN: &str = "gateway-ws-convergence-token";
const BOXES: u64 = 40_000;
const CHUNK: u32 = 4096;
const CHUNKS: u32 = 10;
/// The hot chunks, and the 128-box window of each that most Sets hit.
const HOT: [(u32, u32); 2] = [(0, 0), (6, 1024)];
const HOT_WINDOW: u32 = 128;
/// Sets that go to a hot window, in percent; the rest are spread.
const HOT_SHARE: u64 = 70;
const WRITERS: usize = 4;
const SETS_PER_WRITER: u32 = 900;
/// Each writer's pace: one Set every this long (about 400 Sets/s in all).
const SET_EVERY: Duration = Duration::from_millis(10);
/// Sets a writer keeps unacknowledged at most.
const WINDOW: u32 = 16;
/// The observers' viewports: `(first_chunk, count)` runs, and which
/// gateway each uses.
const VIEWPORTS: [(&[(u32, u32)], usize); 5] = [
    (&[(0, 3)], 0),
    (&[(5, 3)], 1),
    (&[(0, CHUNKS)], 0),
    (&[(6, 1), (9, 1)], 1),
    (&[(1, 2), (6, 2)], 1),
];
const WAIT: Duration = Duration::from_secs(20);
/// How long the mirrors may take to converge once the writes stopped.
const SETTLE: Duration = Duration::from_secs(20);

/// xorshift64*: reproducible pseudo-random values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A box: in a hot window `HOT_SHARE`% of the time, else anywhere in
    /// the other chunks (a hot chunk's changes stay within its window, so
    /// that its coalesced Updates are dense).
    fn index(&mut self) -> u32 {
        if self.next() % 100 < HOT_SHARE {
            let (chunk, from) = HOT[(self.next() % HOT.len() as u64) as usize];
            return chunk * CHUNK + from + (self.next() % u64::from(HOT_WINDOW)) as u32;
        }
        loop {
            let index = (self.next() % BOXES) as u32;
            if !HOT.iter().any(|&(chunk, _)| index / CHUNK == chunk) {
                return index;
            }
        }
    }
}

/// The gateways' settings: Sets unthrottled (the writers are few and
/// fast), and budgets on with short ticks and windows, so that hot chunks
/// coalesce and held Updates go out within seconds once the writes stop.
const GATEWAY_ENV: [(&str, &str); 7] = [
    ("CHECKRAFT_GATEWAY_WS_SETS_PER_SECOND", "10000"),
    ("CHECKRAFT_GATEWAY_WS_SETS_BURST", "10000"),
    ("CHECKRAFT_GATEWAY_WS_IP_SETS_PER_SECOND", "10000"),
    ("CHECKRAFT_GATEWAY_WS_IP_SETS_BURST", "10000"),
    ("CHECKRAFT_GATEWAY_WS_BUDGET_BYTES_PER_SECOND", "200"),
    ("CHECKRAFT_GATEWAY_WS_BUDGET_WINDOW_MS", "1000"),
    ("CHECKRAFT_GATEWAY_WS_COALESCE_MAX_MS", "1000"),
];

async fn hello(client: &mut WsClient) {
    match client.wait_for(WAIT, |m| Some(m.clone())).await.unwrap() {
        ServerMessage::Hello {
            protocol_version: 2,
            boxes: BOXES,
            chunk_size: CHUNK,
            ..
        } => {}
        other => panic!("first message is not a version 2 Hello: {other:?}"),
    }
}

/// Sends `SETS_PER_WRITER` random Sets at the writers' pace, at most
/// `WINDOW` unacknowledged; every one must be applied.
async fn write(addr: String, seed: u64) -> u32 {
    let mut client = WsClient::connect(&addr).await.unwrap();
    hello(&mut client).await;
    let mut rng = Rng(seed);
    let started = Instant::now();
    let (mut sent, mut acked) = (0u32, 0u32);
    while acked < SETS_PER_WRITER {
        let due = (started.elapsed().as_micros() / SET_EVERY.as_micros()) as u32 + 1;
        while sent < SETS_PER_WRITER && sent < due && sent - acked < WINDOW {
            sent += 1;
            let set = ClientMessage::Set {
                request_id: sent,
                index: rng.index(),
                checked: rng.next() >> 63 == 1,
            };
            client.send(&set).await.unwrap();
        }
        let wait = if sent < SETS_PER_WRITER && sent - acked < WINDOW {
            SET_EVERY
        } else {
            WAIT
        };
        match client.try_next_event(wait).await.unwrap() {
            Some(WsEvent::Message(ServerMessage::Ack {
                request_id, status, ..
            })) => {
                assert_eq!(status, AckStatus::Applied, "Set {request_id} on {addr}");
                acked += 1;
            }
            Some(WsEvent::Message(_)) => {}
            Some(WsEvent::Closed(close)) => panic!("writer on {addr} closed: {close:?}"),
            None if sent - acked >= WINDOW || sent == SETS_PER_WRITER => {
                panic!("writer on {addr}: no Ack within {WAIT:?} ({acked} of {sent})")
            }
            None => {}
        }
    }
    acked
}

/// What an observer saw.
#[derive(Debug, Default)]
struct Seen {
    updates: u64,
    bitset_form: u64,
    list_form: u64,
    refetches: u64,
    converged_after: Duration,
}

/// Connects, subscribes to `viewport`, waits for the Pong that proves the
/// subscription, fetches every chunk, then applies everything until the
/// mirror equals `truth` (sent once the writes stopped) on its chunks.
async fn observe(
    gw: GatewayClient,
    viewport: &'static [(u32, u32)],
    mut truth: watch::Receiver<Option<Arc<Vec<u32>>>>,
    subscribed: Arc<AtomicBool>,
) -> (ChunkMirror, Seen) {
    let mut client = WsClient::connect(&gw.addr).await.unwrap();
    hello(&mut client).await;
    for &(first_chunk, count) in viewport {
        client
            .send(&ClientMessage::Subscribe { first_chunk, count })
            .await
            .unwrap();
    }
    let mut mirror = WsClient::mirror(BOXES, CHUNK);
    mirror.sync(&mut client, &gw, 1, WAIT).await.unwrap();
    let chunks: Vec<u32> = viewport.iter().flat_map(|&(f, n)| f..f + n).collect();
    for &chunk in &chunks {
        mirror.fetch(&gw, chunk).await.unwrap();
    }
    subscribed.store(true, Ordering::Release);
    let mut seen = Seen::default();
    let mut settle_from: Option<Instant> = None;
    loop {
        if let Some(want) = truth.borrow_and_update().clone() {
            let from = *settle_from.get_or_insert_with(Instant::now);
            let want = in_chunks(&want, &chunks);
            if mirror.checked_boxes() == want {
                seen.converged_after = from.elapsed();
                return (mirror, seen);
            }
            if from.elapsed() > SETTLE {
                let have: BTreeSet<u32> = mirror.checked_boxes().into_iter().collect();
                let want: BTreeSet<u32> = want.into_iter().collect();
                let wrong: Vec<u32> = have.symmetric_difference(&want).copied().take(20).collect();
                panic!(
                    "the mirror of {viewport:?} on {} did not converge within {SETTLE:?}: \
                     {} boxes differ from the linearizable read (first: {wrong:?}); \
                     versions {:?}; {:?}; {seen:?}",
                    gw.addr,
                    have.symmetric_difference(&want).count(),
                    chunks
                        .iter()
                        .map(|c| (*c, mirror.version(*c)))
                        .collect::<Vec<_>>(),
                    mirror.stats,
                );
            }
        }
        let Some(event) = client
            .try_next_event(Duration::from_millis(100))
            .await
            .unwrap()
        else {
            continue;
        };
        let WsEvent::Message(msg) = event else {
            panic!("observer of {viewport:?} closed: {event:?}");
        };
        if let ServerMessage::Update { .. } = &msg {
            seen.updates += 1;
            // Each Update has exactly one encoding (docs/protocol.md), so
            // re-encoding tells the form it came in.
            match msg.encode()[0] {
                0x88 => seen.bitset_form += 1,
                0x82 => seen.list_form += 1,
                other => panic!("an Update of type {other:#x}"),
            }
        }
        if let MirrorAction::NeedsRefetch(chunks) = mirror.handle(&gw, &msg).await.unwrap() {
            seen.refetches += chunks.len() as u64;
        }
    }
}

/// The boxes of `all` (ascending) that lie in `chunks`.
fn in_chunks(all: &[u32], chunks: &[u32]) -> Vec<u32> {
    all.iter()
        .copied()
        .filter(|i| chunks.contains(&(i / CHUNK)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn independent_mirrors_equal_a_linearizable_read_after_random_sets() {
    tokio::time::timeout(Duration::from_secs(180), convergence())
        .await
        .expect("test exceeded its bound");
}

async fn convergence() {
    let started = Instant::now();
    let cluster = initialized_cluster(TOKEN, BOXES, 4).await;
    let gateways = [
        GatewayProcess::start(&cluster, 1, &GATEWAY_ENV).await,
        GatewayProcess::start(&cluster, 2, &GATEWAY_ENV).await,
    ];
    let members: Vec<String> = cluster.members().into_values().collect();
    let setup = started.elapsed();

    let (truth_tx, truth_rx) = watch::channel(None);
    let mut observers = Vec::new();
    let mut ready = Vec::new();
    for (viewport, gw) in VIEWPORTS {
        let subscribed = Arc::new(AtomicBool::new(false));
        ready.push(subscribed.clone());
        observers.push(tokio::spawn(observe(
            gateways[gw].client(),
            viewport,
            truth_rx.clone(),
            subscribed,
        )));
    }
    let deadline = Instant::now() + WAIT;
    while !ready.iter().all(|r| r.load(Ordering::Acquire)) {
        assert!(Instant::now() < deadline, "observers not subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The load: every writer paced, all at once.
    let load_started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let addr = gateways[w % gateways.len()].addr.clone();
            tokio::spawn(write(addr, 0x5eed_0000_0000_0001 + w as u64 * 7_919))
        })
        .collect();
    let mut sets = 0;
    for w in writers {
        sets += w.await.unwrap();
    }
    let load = load_started.elapsed();

    // Every Set is acknowledged: the linearizable read is final.
    let mut router = Router::new(members).await.unwrap();
    let all: Vec<u32> = router.read_all().await.unwrap().iter().collect();
    let checked = all.len();
    truth_tx.send_replace(Some(Arc::new(all)));
    let mut total = Seen::default();
    for (o, (viewport, gw)) in observers.into_iter().zip(VIEWPORTS) {
        let (mirror, seen) = o.await.unwrap();
        eprintln!(
            "observer {viewport:?} on gateway {}: converged {:?} after the read, {} Updates \
             ({} bitset, {} list), {} refetches; {:?}",
            gateways[gw].id,
            seen.converged_after,
            seen.updates,
            seen.bitset_form,
            seen.list_form,
            seen.refetches,
            mirror.stats,
        );
        total.updates += seen.updates;
        total.bitset_form += seen.bitset_form;
        total.list_form += seen.list_form;
        total.refetches += seen.refetches;
    }
    // The fan-out's hold times: Updates whose oldest change waited past
    // a few short ticks come from chunks on a long tick.
    let mut held_long = 0.0;
    for gw in &gateways {
        let metrics = gw.client().scrape().await.unwrap();
        let (updates, quick) = hold_counts(&metrics, 0.15);
        eprintln!(
            "gateway {}: {updates} Updates built, {} held past 150 ms; pending changes {}, \
             chunks on a long tick {}",
            gw.id,
            updates - quick,
            metric_sum(&metrics, "checkraft_gateway_ws_pending_changes"),
            metric_sum(&metrics, "checkraft_gateway_ws_long_tick_chunks"),
        );
        held_long += updates - quick;
    }
    eprintln!(
        "{sets} Sets in {load:.1?} from {WRITERS} writers, {checked} boxes checked at the end; \
         setup {setup:.1?}, whole test {:.1?}",
        started.elapsed()
    );
    assert_eq!(sets, WRITERS as u32 * SETS_PER_WRITER);
    // The run exercised what it is meant to: both Update forms, and hot
    // chunks on long ticks.
    assert!(
        total.bitset_form > 0 && total.list_form > 0,
        "both forms expected: {total:?}"
    );
    assert!(held_long > 0.0, "no chunk went to a long tick");
}

/// From a gateway's `/metrics`: Updates the fan-out built
/// (`ws_update_hold_seconds_count`), and those whose oldest change waited
/// at most the first bucket bound at or above `seconds`.
fn hold_counts(metrics: &str, seconds: f64) -> (f64, f64) {
    let name = "checkraft_gateway_ws_update_hold_seconds";
    let count = metric_sum(metrics, &format!("{name}_count"));
    let prefix = format!("{name}_bucket{{le=\"");
    let quick = metrics
        .lines()
        .filter_map(|l| {
            let (le, value) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
            Some((le.parse::<f64>().ok()?, value.trim().parse::<f64>().ok()?))
        })
        .filter(|(le, _)| *le >= seconds)
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(0.0, |(_, n)| n);
    (count, quick)
}
