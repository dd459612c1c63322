//! The websocket fan-out's costs and edges against real processes: three
//! nodes bootstrapped with `raftctl init` (40,000 boxes, 4 shards, chunks
//! of 4096 → 10 chunks) and a real `checkraft-gateway`.
//!
//! - `Stats` comes right after `Hello`, then only when the counters
//!   change: an idle connection gets none; a changed one rides along with
//!   the connection's next write, or goes alone once the last is
//!   `ws_stats_alone_ms` old;
//! - a websocket Set is acknowledged on commit, even while the replica
//!   this gateway streams the shard's changes from is paused (the gateway
//!   itself does not show the write yet);
//! - a client that stops reading gets `Resync{FellBehind}` after a bounded
//!   number of bytes (the gateway's small socket buffers), and the
//!   gateway's memory for it stays bounded meanwhile;
//! - `Subscribe` of no chunks, of chunks past the grid or of a range past
//!   `u32::MAX` is a protocol error (close 1002 with the reason).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkraft_integration::{
    eventually, initialized_cluster, metric_sum, Cluster, GatewayProcess, NodeClient, Router,
    WsClient, WsEvent,
};
use checkraft_proto::ws::{AckStatus, ClientMessage, ResyncReason, ServerMessage};

const TOKEN: &str = "gateway-ws-fanout-token";
const BOXES: u64 = 40_000;
const CHUNK: u32 = 4096;
const CHUNKS: u32 = 10;
const WAIT: Duration = Duration::from_secs(30);

async fn cluster() -> Cluster {
    initialized_cluster(TOKEN, BOXES, 4).await
}

async fn hello(client: &mut WsClient) {
    match client.wait_for(WAIT, |m| Some(m.clone())).await.unwrap() {
        ServerMessage::Hello {
            boxes, chunk_size, ..
        } => assert_eq!((boxes, chunk_size), (BOXES, CHUNK)),
        other => panic!("first message is not Hello: {other:?}"),
    }
}

async fn ping(client: &mut WsClient, nonce: u32) -> Vec<ServerMessage> {
    client.send(&ClientMessage::Ping { nonce }).await.unwrap();
    let mut before = Vec::new();
    client
        .wait_for(WAIT, |m| {
            if *m == (ServerMessage::Pong { nonce }) {
                Some(())
            } else {
                before.push(m.clone());
                None
            }
        })
        .await
        .expect("pong");
    before
}

/// Every message that arrives within `window`.
async fn collect(client: &mut WsClient, window: Duration) -> Vec<ServerMessage> {
    timed(client, window)
        .await
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

/// Every message that arrives within `window`, with when it arrived.
async fn timed(client: &mut WsClient, window: Duration) -> Vec<(Instant, ServerMessage)> {
    let deadline = Instant::now() + window;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match client.try_next_event(left).await.unwrap() {
            Some(WsEvent::Message(m)) => seen.push((Instant::now(), m)),
            Some(WsEvent::Closed(close)) => panic!("closed: {close:?}"),
            None => break,
        }
    }
    seen
}

fn is_stats(m: &ServerMessage) -> bool {
    matches!(m, ServerMessage::Stats { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_are_sent_after_hello_then_only_on_change() {
    tokio::time::timeout(Duration::from_secs(180), stats_on_change())
        .await
        .expect("test exceeded its bound");
}

async fn stats_on_change() {
    let cluster = cluster().await;
    // A short interval: the old behaviour (a Stats per interval to every
    // connection, changed or not) would send ~10 in the quiet window. A
    // changed Stats goes alone only to a connection whose last one is
    // 20 s old; before that it waits for the connection's next write.
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[
            ("CHECKRAFT_GATEWAY_WS_STATS_INTERVAL_MS", "200"),
            ("CHECKRAFT_GATEWAY_WS_STATS_ALONE_MS", "20000"),
        ],
    )
    .await;
    let http = gw.client();

    let mut client = WsClient::connect(&gw.addr).await.unwrap();
    hello(&mut client).await;
    let settle = collect(&mut client, Duration::from_millis(800)).await;
    assert!(
        settle.iter().any(is_stats),
        "no Stats after Hello: {settle:?}"
    );
    let quiet = collect(&mut client, Duration::from_secs(2)).await;
    assert!(
        !quiet.iter().any(is_stats),
        "Stats sent although nothing changed: {quiet:?}"
    );
    let broadcasts = metric_sum(
        &http.scrape().await.unwrap(),
        "checkraft_gateway_ws_stats_broadcasts_total",
    );

    // A second connection gets the current Stats right after its Hello,
    // without waiting for a change. It subscribes to chunk 0.
    let mut second = WsClient::connect(&gw.addr).await.unwrap();
    let joined = Instant::now();
    hello(&mut second).await;
    let first = second
        .wait_for(Duration::from_millis(150), |m| Some(m.clone()))
        .await
        .expect("a message right after Hello");
    assert!(is_stats(&first), "not Stats after Hello: {first:?}");
    // It counts the new connection itself, although the last frame made
    // for everyone (at the tick before it came) said 1.
    assert!(
        matches!(first, ServerMessage::Stats { online: 2, .. }),
        "the Stats after Hello does not count its own connection: {first:?}"
    );
    second
        .send(&ClientMessage::Subscribe {
            first_chunk: 0,
            count: 1,
        })
        .await
        .unwrap();
    ping(&mut second, 1).await;

    // Two writes change the total, a second apart. The subscriber gets
    // each Update at once; a new Stats never goes alone (its last is
    // fresh) but rides along with an Update, in the same write. Under the
    // old behaviour it went alone at the next Stats tick, up to 200 ms
    // after the Update.
    let mut seen: Vec<(Instant, ServerMessage)> = Vec::new();
    let (status, _) = http.put_box(7, true).await.unwrap();
    assert_eq!(status, 200);
    seen.extend(timed(&mut second, Duration::from_millis(1000)).await);
    let (status, _) = http.put_box(8, true).await.unwrap();
    assert_eq!(status, 200);
    seen.extend(timed(&mut second, Duration::from_millis(1500)).await);
    assert!(
        joined.elapsed() < Duration::from_secs(20),
        "too slow to tell riding along from going alone"
    );
    let updates = seen
        .iter()
        .filter(|(_, m)| matches!(m, ServerMessage::Update { .. }))
        .count();
    assert_eq!(updates, 2, "one Update per write: {seen:?}");
    let mut new_stats = 0;
    for (i, (at, m)) in seen.iter().enumerate() {
        if !matches!(m, ServerMessage::Stats { checked, .. } if *checked >= 1) {
            continue;
        }
        new_stats += 1;
        let before = i.checked_sub(1).map(|j| &seen[j]);
        assert!(
            before.is_some_and(|(t, b)| matches!(b, ServerMessage::Update { .. })
                && at.duration_since(*t) < Duration::from_millis(50)),
            "a new Stats went alone instead of riding along: {seen:?}"
        );
    }
    assert!(new_stats >= 1, "no Stats with the new total: {seen:?}");

    // The first connection, sent nothing else, gets it alone once its
    // last Stats is 20 s old.
    let checked = client
        .wait_for(Duration::from_secs(40), |m| match m {
            ServerMessage::Stats { checked, .. } if *checked >= 1 => Some(*checked),
            _ => None,
        })
        .await
        .expect("Stats with the new total, alone");
    assert!(checked >= 1);
    let after = metric_sum(
        &http.scrape().await.unwrap(),
        "checkraft_gateway_ws_stats_broadcasts_total",
    );
    assert!(after > broadcasts, "{broadcasts} → {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_ranges_are_checked() {
    tokio::time::timeout(Duration::from_secs(180), subscribe_ranges())
        .await
        .expect("test exceeded its bound");
}

async fn subscribe_ranges() {
    let cluster = cluster().await;
    let gw = GatewayProcess::start(&cluster, 1, &[]).await;
    let mut client = WsClient::connect(&gw.addr).await.unwrap();
    hello(&mut client).await;

    // A valid range keeps the socket; bad ones close it with 1002 and say
    // why.
    client
        .send(&ClientMessage::Subscribe {
            first_chunk: 0,
            count: CHUNKS,
        })
        .await
        .unwrap();
    ping(&mut client, 1).await;
    for (first_chunk, count, why) in [
        (CHUNKS - 1, 2, "past the grid"),
        (CHUNKS, 1, "past the grid"),
        (3, 0, "0 chunks"),
        (u32::MAX, 2, "overflows"),
    ] {
        let mut bad = WsClient::connect(&gw.addr).await.unwrap();
        hello(&mut bad).await;
        bad.send(&ClientMessage::Subscribe { first_chunk, count })
            .await
            .unwrap();
        let (close, _) = bad.closed(WAIT).await.unwrap();
        let (code, reason) = close.expect("a close frame");
        assert_eq!(code, 1002, "Subscribe {first_chunk}+{count}: {reason}");
        assert!(
            reason.contains(why),
            "Subscribe {first_chunk}+{count}: {reason:?} does not say {why:?}"
        );
    }
    ping(&mut client, 2).await;
}

/// The node each shard's change stream was last opened on, from the
/// gateway's log: shard → address.
fn streams(gw: &GatewayProcess) -> std::collections::BTreeMap<u64, String> {
    let mut out = std::collections::BTreeMap::new();
    for line in gw.log_tail(10_000).lines() {
        if !line.contains("following the shard's change stream") {
            continue;
        }
        let line = strip_ansi(line);
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(String::from)
        };
        if let (Some(shard), Some(node)) = (field("shard="), field("node=")) {
            out.insert(shard.parse().unwrap(), node);
        }
    }
    out
}

/// `line` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn shard_range(cluster: &Cluster, shard: u64) -> (u64, u64) {
    let entry = NodeClient::new(&cluster.members()[&1]);
    let url = entry.url(&format!("/meta/shards/{shard}"));
    let loc: checkraft_proto::ShardLocation = entry
        .send(entry.http().get(url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (loc.shard.descriptor.start, loc.shard.descriptor.end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_set_is_acknowledged_on_commit() {
    tokio::time::timeout(Duration::from_secs(240), ack_on_commit())
        .await
        .expect("test exceeded its bound");
}

async fn ack_on_commit() {
    let cluster = cluster().await;
    // The gateway keeps its streams where they are (no switch away from a
    // silent or stale replica during the test), and an HTTP write would
    // wait long for read-your-writes.
    let env = [
        ("CHECKRAFT_GATEWAY_STALE_REPLICA_MS", "600000"),
        ("CHECKRAFT_GATEWAY_STREAM_IDLE_MS", "600000"),
        ("CHECKRAFT_GATEWAY_READ_YOUR_WRITES_MS", "30000"),
    ];
    // A shard whose stream is on a follower (each stream starts at a
    // random replica; start again in the rare case all are on leaders).
    // The stream may still move while leaders settle (the replica order
    // follows the map's leader hints), so a try whose stream moved while
    // its replica was frozen does not count, and the next try picks again.
    let mut gw = GatewayProcess::start(&cluster, 1, &env).await;
    let mut restarts = 1;
    let mut tries = 0;
    let (shard, streamed, status, seq, acked_in, version) = loop {
        tries += 1;
        assert!(tries <= 8, "no try with a stream frozen on a follower");
        let picked = follower_stream(&cluster, &gw).await;
        let Some((shard, streamed, opened)) = picked else {
            restarts += 1;
            assert!(
                restarts <= 6,
                "every stream on its leader in 6 gateway starts"
            );
            gw = GatewayProcess::start(&cluster, restarts, &env).await;
            continue;
        };
        let (start, _) = shard_range(&cluster, shard).await;
        let index = u32::try_from(start).unwrap() + tries;
        let chunk = index / CHUNK;
        let http = gw.client();
        let mut client = WsClient::connect(&gw.addr).await.unwrap();
        hello(&mut client).await;
        client
            .send(&ClientMessage::Subscribe {
                first_chunk: chunk,
                count: 1,
            })
            .await
            .unwrap();
        ping(&mut client, 1).await;

        // Freeze the replica the gateway follows: the shard still commits
        // (leader + the other follower), the gateway's view stands still.
        cluster.pause(streamed);
        let sent = Instant::now();
        client
            .send(&ClientMessage::Set {
                request_id: 42,
                index,
                checked: true,
            })
            .await
            .unwrap();
        let ack = client
            .wait_for(Duration::from_secs(8), |m| match m {
                ServerMessage::Ack {
                    request_id: 42,
                    status,
                    seq,
                } => Some((*status, *seq)),
                _ => None,
            })
            .await;
        let acked_in = sent.elapsed();
        // The gateway's own view does not show the write yet.
        let (_, view) = http.get_box(u64::from(index)).await.unwrap();
        let moved = stream_opens(&gw, shard) != opened;
        cluster.resume(streamed);
        if moved {
            eprintln!("shard {shard}'s stream moved during try {tries}; trying again");
            continue;
        }
        let (status, seq) = ack.expect("an Ack while the gateway's stream is frozen");
        assert_eq!(
            view["checked"], false,
            "the gateway showed the write although its stream was frozen ({view})"
        );

        // Once the replica runs again, the Update follows the Ack.
        let version = client
            .wait_for(WAIT, |m| match m {
                ServerMessage::Update {
                    chunk: c,
                    version,
                    entries,
                    ..
                } if *c == chunk && entries.iter().any(|e| e.checked) => Some(*version),
                _ => None,
            })
            .await
            .expect("the Update after the replica resumed");
        break (shard, streamed, status, seq, acked_in, version);
    };
    assert_eq!(status, AckStatus::Applied);
    assert!(seq > 0);
    assert!(version >= seq, "Update version {version} < Ack seq {seq}");
    eprintln!(
        "shard {shard} streamed from node {streamed} (paused): Ack Applied (seq {seq}) in \
         {acked_in:?}; Update version {version} after resume; {tries} tries"
    );
}

/// Times the gateway opened shard `shard`'s change stream, from its log.
fn stream_opens(gw: &GatewayProcess, shard: u64) -> usize {
    let want = format!("shard={shard} ");
    gw.log_tail(100_000)
        .lines()
        .filter(|l| l.contains("following the shard's change stream"))
        .filter(|l| strip_ansi(l).contains(&want))
        .count()
}

/// A shard whose change stream is on a follower: (shard, node, times its
/// stream was opened so far).
async fn follower_stream(cluster: &Cluster, gw: &GatewayProcess) -> Option<(u64, u64, usize)> {
    let members = cluster.members();
    for (shard, addr) in streams(gw) {
        let opened = stream_opens(gw, shard);
        let leader = cluster.confirmed_shard_leader(shard, TOKEN).await;
        let node = members
            .iter()
            .find(|(_, a)| **a == addr)
            .map(|(id, _)| *id)
            .expect("the stream's node is a member");
        // Still the same stream after the leader lookup.
        if node != leader && stream_opens(gw, shard) == opened {
            return Some((shard, node, opened));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_resynced_after_kilobytes() {
    tokio::time::timeout(Duration::from_secs(300), slow_consumer())
        .await
        .expect("test exceeded its bound");
}

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

const DROPPED: &str = "checkraft_gateway_ws_dropped_updates_total";

/// Bytes a client that stops reading receives before its Resync: its own
/// receive window plus the gateway's socket buffers and queue. With the
/// kernel's autotuned send buffer (megabytes on loopback) the gateway
/// buffered every update instead.
const RESYNC_WITHIN_BYTES: usize = 768 << 10;

async fn slow_consumer() {
    let cluster = cluster().await;
    // Without a byte budget: with one, this load puts the client over it
    // at once, and its Updates are held and merged per chunk (bounded by
    // its subscriptions, tests/gateway_ws_coalescing.rs) instead of
    // filling its queue; this test is about the queue and the sockets.
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[("CHECKRAFT_GATEWAY_WS_BUDGET_BYTES_PER_SECOND", "0")],
    )
    .await;
    let http = gw.client();

    // A client with the kernel's default receive buffer, subscribed to
    // every chunk, that stops reading after the Pong.
    let mut client = WsClient::connect(&gw.addr).await.unwrap();
    hello(&mut client).await;
    client
        .send(&ClientMessage::Subscribe {
            first_chunk: 0,
            count: CHUNKS,
        })
        .await
        .unwrap();
    ping(&mut client, 1).await;

    // Rounds that set every box to a random value: each chunk's Update of
    // a round carries 4096 entries (~8 KB), ~80 KB per round.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let members: Vec<String> = cluster.members().into_values().collect();
    let writer = {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        tokio::spawn(async move {
            let mut router = Router::new(members).await.unwrap();
            let mut rng = Rng(0x5eed_1234_abcd_ef01);
            while !stop.load(Ordering::Relaxed) {
                let sets: Vec<(u32, bool)> = (0..BOXES as u32)
                    .map(|i| (i, rng.next() >> 63 == 1))
                    .collect();
                router.write(&sets).await.unwrap();
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The gateway stops writing to it and drops its updates well before
    // 40 rounds (~3 MB of updates).
    let behind_at = eventually(
        Duration::from_secs(150),
        "the gateway to drop updates for the silent client",
        || {
            let http = http.clone();
            let rounds = rounds.clone();
            async move {
                let n = metric_sum(&http.scrape().await.ok()?, DROPPED);
                (n > 0.0).then(|| rounds.load(Ordering::Relaxed))
            }
        },
    )
    .await;
    let rss_behind = gw.rss().expect("gateway RSS");
    // Many more rounds while it is behind: memory for it stays bounded.
    eventually(Duration::from_secs(120), "more write rounds", || async {
        (rounds.load(Ordering::Relaxed) >= behind_at + 15).then_some(())
    })
    .await;
    let rss_later = gw.rss().expect("gateway RSS");
    let scrape = http.scrape().await.unwrap();
    let queue_max = metric_sum(&scrape, "checkraft_gateway_ws_send_queue_max_messages");
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    // Read again: count the bytes that arrive before the Resync.
    let mut bytes = 0usize;
    let mut updates = 0usize;
    let resynced = loop {
        match client.next_event(WAIT).await.unwrap() {
            WsEvent::Message(ServerMessage::Resync {
                reason: ResyncReason::FellBehind,
                first_chunk,
                count,
            }) => break (first_chunk, count),
            WsEvent::Message(m) => {
                if matches!(m, ServerMessage::Update { .. }) {
                    updates += 1;
                }
                bytes += m.encode().len();
            }
            WsEvent::Closed(close) => panic!("closed before the Resync: {close:?}"),
        }
    };
    eprintln!(
        "behind after {behind_at} rounds (~{} KB of updates); {bytes} B in {updates} Updates \
         before Resync{resynced:?}; gateway RSS {} KB when behind, {} KB {} rounds later; \
         longest send queue {queue_max}",
        behind_at * 80,
        rss_behind >> 10,
        rss_later >> 10,
        rounds.load(Ordering::Relaxed) - behind_at,
    );
    assert_eq!(resynced, (0, CHUNKS), "the Resync names every subscription");
    assert!(
        bytes <= RESYNC_WITHIN_BYTES,
        "{bytes} B reached the client before its Resync (bound {RESYNC_WITHIN_BYTES})"
    );
    assert!(
        queue_max <= 64.0 + 2.0,
        "the send queue grew past its cap: {queue_max}"
    );
    assert!(
        rss_later <= rss_behind + (8 << 20),
        "gateway RSS grew from {rss_behind} to {rss_later} while the client was behind"
    );
    // And the connection works on.
    ping(&mut client, 2).await;
}
