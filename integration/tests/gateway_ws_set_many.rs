//! SetMany (issue 16) against real processes: three nodes bootstrapped
//! with `raftctl init` (40,000 boxes, 4 shards, chunks of 4096) and a real
//! `checkraft-gateway` with `ws_max_sets_per_message` 64 and a Set bucket
//! of 30 boxes per connection (refilling at 1/s; the address's bucket is
//! large, so each connection starts with 30 tokens).
//!
//! - a SetMany spanning two shards (with a box given twice: the last value
//!   wins) is acknowledged by one AckMany, every box `applied` with its
//!   shard part's seq (the two parts' seqs differ: a Set went to one shard
//!   first), and a linearizable read shows exactly those values;
//! - rate limits count boxes: a SetMany of 40 boxes in range and 2 past
//!   the grid gets its first 30 (or 31, if a token refilled) boxes
//!   applied, the rest of the 40 `rate_limited` and the last 2
//!   `out_of_range`; the read shows only the applied ones;
//! - a SetMany over `ws_max_sets_per_message` closes with 1008; count 0,
//!   count 257, a missing entry, and an index past 2^32 − 1 close with
//!   1002; the gateway still serves.

use std::time::Duration;

use checkraft_integration::{initialized_cluster, GatewayProcess, Router, WsClient};
use checkraft_proto::ws::{AckStatus, ClientMessage, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "gateway-ws-set-many-token";
const BOXES: u64 = 40_000;
const WAIT: Duration = Duration::from_secs(20);
const BURST: usize = 30;
const MAX_PER_MESSAGE: usize = 64;

async fn connect(gw: &GatewayProcess) -> WsClient {
    let mut client = WsClient::connect(&gw.addr).await.expect("connect /ws");
    let hello = client.wait_for(WAIT, |m| Some(m.clone())).await.unwrap();
    assert!(matches!(hello, ServerMessage::Hello { boxes: BOXES, .. }));
    client
}

async fn expect_close(client: &mut WsClient, code: u16, why: &str) {
    let (close, seen) = client.closed(WAIT).await.expect("close");
    let (got, reason) = close.expect("a close frame");
    assert_eq!(got, code, "{why}: close reason {reason:?}");
    assert!(reason.contains(why), "{reason:?} does not say {why:?}");
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, ServerMessage::AckMany { .. })),
        "a refused SetMany was acknowledged: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_many_spans_shards_counts_boxes_and_refuses_bad_input() {
    tokio::time::timeout(Duration::from_secs(300), set_many_test())
        .await
        .expect("SetMany test exceeded its bound");
}

async fn set_many_test() {
    let cluster = initialized_cluster(TOKEN, BOXES, 4).await;
    let burst = BURST.to_string();
    let max = MAX_PER_MESSAGE.to_string();
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[
            ("CHECKRAFT_GATEWAY_WS_SETS_BURST", burst.as_str()),
            ("CHECKRAFT_GATEWAY_WS_SETS_PER_SECOND", "1"),
            ("CHECKRAFT_GATEWAY_WS_IP_SETS_BURST", "10000"),
            ("CHECKRAFT_GATEWAY_WS_IP_SETS_PER_SECOND", "10000"),
            ("CHECKRAFT_GATEWAY_WS_MAX_SETS_PER_MESSAGE", max.as_str()),
        ],
    )
    .await;
    let members: Vec<String> = cluster.members().into_values().collect();
    let mut router = Router::new(members).await.unwrap();

    // A boundary between two shards.
    let mut starts: Vec<(u64, u64)> = router
        .map
        .shards
        .iter()
        .map(|(id, r)| (r.descriptor.start, *id))
        .collect();
    starts.sort();
    let (boundary, right_shard) = starts[1];
    let left_shard = starts[0].1;
    assert!((10..BOXES - 10).contains(&boundary), "{starts:?}");
    let boundary = boundary as u32;

    // 1. Twenty boxes across the boundary, given out of order, the first
    //    one twice (checked, then unchecked: the last wins).
    let mut sets: Vec<(u32, bool)> = (boundary - 10..boundary + 10)
        .rev()
        .map(|i| (i, true))
        .collect();
    sets.push((boundary - 10, false));
    let mut a = connect(&gw).await;
    // A Set to the right-hand shard first, so that the two shards' parts
    // commit at different seqs (two `applied` runs).
    a.send(&ClientMessage::Set {
        request_id: 100,
        index: boundary + 1000,
        checked: true,
    })
    .await
    .unwrap();
    a.wait_for(WAIT, |m| match m {
        ServerMessage::Ack {
            request_id: 100,
            status: AckStatus::Applied,
            ..
        } => Some(()),
        _ => None,
    })
    .await
    .expect("the Set is applied");
    let outcomes = a.set_many(1, &sets, WAIT).await.expect("AckMany");
    assert_eq!(outcomes.len(), 20, "{outcomes:?}");
    let seq_of = |side: &dyn Fn(u32) -> bool| -> Vec<u64> {
        let mut seqs: Vec<u64> = outcomes
            .iter()
            .filter(|(i, _, _)| side(*i))
            .map(|(_, _, seq)| *seq)
            .collect();
        seqs.dedup();
        seqs
    };
    for (index, status, seq) in &outcomes {
        assert_eq!(*status, AckStatus::Applied, "box {index}: {outcomes:?}");
        assert!(*seq > 0, "box {index}: {outcomes:?}");
    }
    // One part per shard: every box of a shard carries its part's seq.
    assert_eq!(
        seq_of(&|i| i < boundary).len(),
        1,
        "shard {left_shard}: {outcomes:?}"
    );
    assert_eq!(
        seq_of(&|i| i >= boundary).len(),
        1,
        "shard {right_shard}: {outcomes:?}"
    );
    assert_ne!(
        seq_of(&|i| i < boundary),
        seq_of(&|i| i >= boundary),
        "two shards' parts: {outcomes:?}"
    );
    let all = router.read_all().await.unwrap();
    assert!(!all.contains(boundary - 10), "the last value of a box wins");
    for i in boundary - 9..boundary + 10 {
        assert!(all.contains(i), "box {i} was acknowledged but is not set");
    }

    // 2. Rate limits count boxes: 40 in range and 2 past the grid, on a
    //    fresh connection (30 tokens).
    let first = 20_000u32;
    let mut sets: Vec<(u32, bool)> = (first..first + 40).map(|i| (i, true)).collect();
    sets.extend([(BOXES as u32, true), (BOXES as u32 + 1, true)]);
    let mut b = connect(&gw).await;
    let outcomes = b.set_many(2, &sets, WAIT).await.expect("AckMany");
    let statuses: Vec<AckStatus> = outcomes.iter().map(|(_, s, _)| *s).collect();
    let applied = statuses
        .iter()
        .take_while(|s| **s == AckStatus::Applied)
        .count();
    assert!(
        (BURST..=BURST + 1).contains(&applied),
        "{applied} applied: {outcomes:?}"
    );
    assert!(
        statuses[applied..40]
            .iter()
            .all(|s| *s == AckStatus::RateLimited),
        "{outcomes:?}"
    );
    assert_eq!(
        statuses[40..],
        [AckStatus::OutOfRange, AckStatus::OutOfRange],
        "{outcomes:?}"
    );
    for (_, status, seq) in &outcomes {
        assert_eq!(*seq > 0, *status == AckStatus::Applied, "{outcomes:?}");
    }
    // The socket stays open: an empty bucket refuses (at least) the
    // last boxes of the next SetMany.
    let outcomes = b
        .set_many(3, &[(30_000, true), (30_001, true), (30_002, true)], WAIT)
        .await
        .unwrap();
    assert_eq!(
        outcomes.last().map(|(_, s, _)| *s),
        Some(AckStatus::RateLimited),
        "{outcomes:?}"
    );

    let all = router.read_all().await.unwrap();
    for i in first..first + 40 {
        let want = i < first + applied as u32;
        assert_eq!(all.contains(i), want, "box {i} ({applied} applied)");
    }

    // 3. More boxes than ws_max_sets_per_message: 1008, nothing written.
    let mut c = connect(&gw).await;
    let too_many =
        ClientMessage::set_many(4, (0..=MAX_PER_MESSAGE as u32).map(|i| (i + 35_000, true)));
    c.send(&too_many).await.unwrap();
    expect_close(&mut c, 1008, "at most 64").await;
    let all = router.read_all().await.unwrap();
    assert!(!all.contains(35_000), "a refused SetMany was written");

    // 4. Malformed: count 0, count 257, a missing entry, an index past
    //    2^32 - 1 (u32::MAX, then a gap of 0): 1002 naming the field.
    let mut over = vec![0x05u8, 1, 0x81, 0x02];
    over.extend(std::iter::repeat_n(0u8, 257));
    for (bad, why) in [
        (vec![0x05u8, 1, 0], "set_many count: 0"),
        (over, "set_many count: 257"),
        (vec![0x05u8, 1, 3, 0, 0], "ends inside set_many entry"),
        (
            vec![0x05u8, 1, 2, 0xfe, 0xff, 0xff, 0xff, 0x1f, 0x00],
            "set_many index",
        ),
    ] {
        let mut client = connect(&gw).await;
        client.send_raw(Message::Binary(bad.into())).await.unwrap();
        expect_close(&mut client, 1002, why).await;
    }

    // The gateway still serves, and answers a single Set as before.
    assert!(gw.client().healthy().await);
    let mut d = connect(&gw).await;
    d.send(&ClientMessage::Set {
        request_id: 5,
        index: 1,
        checked: true,
    })
    .await
    .unwrap();
    let status = d
        .wait_for(WAIT, |m| match m {
            ServerMessage::Ack {
                request_id: 5,
                status,
                ..
            } => Some(*status),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(status, AckStatus::Applied);
}
