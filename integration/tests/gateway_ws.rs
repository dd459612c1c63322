//! The gateway's websocket layer against real processes: three nodes
//! bootstrapped with `raftctl init` (40,000 boxes, 4 shards, chunks of
//! 4096) and real `checkraft-gateway`s.
//!
//! - a Set is acknowledged after commit; a subscriber of the chunk (on the
//!   same gateway and on another one) gets an Update that applies by the
//!   protocol's rule on top of its HTTP fetch; a subscriber of another
//!   chunk gets nothing;
//! - bad input: foreign Origin → 403, malformed or text message → 1002,
//!   oversized → 1009, too many subscriptions → 1008, out-of-range Set →
//!   Ack OutOfRange with the socket still open, Set floods → RateLimited.

use std::time::Duration;

use checkraft_integration::{initialized_cluster, Cluster, GatewayProcess, WsClient};
use checkraft_proto::ws::{AckStatus, ClientMessage, ServerMessage, UpdateEntry};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "gateway-ws-test-token";
const BOXES: u64 = 40_000;
const CHUNK: u32 = 4096;
const WAIT: Duration = Duration::from_secs(20);

async fn cluster() -> Cluster {
    initialized_cluster(TOKEN, BOXES, 4).await
}

/// Connects and checks the Hello.
async fn connect(gw: &GatewayProcess) -> WsClient {
    let mut client = WsClient::connect(&gw.addr).await.expect("connect /ws");
    let hello = client
        .wait_for(WAIT, |m| Some(m.clone()))
        .await
        .expect("hello");
    match hello {
        ServerMessage::Hello {
            protocol_version,
            boxes,
            chunk_size,
            gateway_id,
            load,
        } => {
            assert_eq!(protocol_version, checkraft_proto::ws::PROTOCOL_VERSION);
            assert_eq!(protocol_version, 2);
            assert_eq!(boxes, BOXES);
            assert_eq!(chunk_size, CHUNK);
            assert_eq!(u64::from(gateway_id), gw.id);
            assert!(load <= 1000);
        }
        other => panic!("first message is not Hello: {other:?}"),
    }
    client
}

/// Subscribes to `chunk`, then fetches it over HTTP: its version.
async fn subscribe_and_fetch(client: &mut WsClient, gw: &GatewayProcess, chunk: u32) -> u64 {
    client
        .send(&ClientMessage::Subscribe {
            first_chunk: chunk,
            count: 1,
        })
        .await
        .unwrap();
    // A Ping round trip: the subscription is in place before the fetch.
    ping(client, 77).await;
    let reply = gw
        .client()
        .chunk(u64::from(chunk), None, false)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    reply.seq.expect("X-Checkraft-Seq")
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

async fn set(
    client: &mut WsClient,
    request_id: u32,
    index: u32,
    checked: bool,
) -> (AckStatus, u64) {
    client
        .send(&ClientMessage::Set {
            request_id,
            index,
            checked,
        })
        .await
        .unwrap();
    client
        .wait_for(WAIT, |m| match m {
            ServerMessage::Ack {
                request_id: r,
                status,
                seq,
            } if *r == request_id => Some((*status, *seq)),
            _ => None,
        })
        .await
        .expect("ack")
}

/// Waits for an Update of `chunk` that sets `offset` to `checked`, and
/// checks it against the client's version `v` by the protocol's rule.
async fn expect_update(
    client: &mut WsClient,
    chunk: u32,
    offset: u16,
    checked: bool,
    v: u64,
) -> u64 {
    let mut v = v;
    client
        .wait_for(WAIT, |m| match m {
            ServerMessage::Update {
                chunk: c,
                prev_version,
                version,
                entries,
            } if *c == chunk => {
                assert!(*version > *prev_version, "{m:?}");
                if *version <= v {
                    return None; // already have it
                }
                assert!(
                    *prev_version <= v,
                    "update {m:?} does not apply on version {v}"
                );
                v = *version;
                entries
                    .contains(&UpdateEntry { offset, checked })
                    .then_some(*version)
            }
            _ => None,
        })
        .await
        .expect("update")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_fan_out_to_subscribers_on_every_gateway() {
    tokio::time::timeout(Duration::from_secs(300), fan_out_test())
        .await
        .expect("gateway websocket fan-out test exceeded its bound");
}

async fn fan_out_test() {
    let cluster = cluster().await;
    let gw1 = GatewayProcess::start(&cluster, 1, &[]).await;
    let gw2 = GatewayProcess::start(&cluster, 2, &[]).await;

    let index = 5000u32;
    let chunk = index / CHUNK;
    let offset = (index % CHUNK) as u16;
    let mut a = connect(&gw1).await;
    let mut b = connect(&gw1).await;
    let mut c = connect(&gw1).await;
    let mut d = connect(&gw2).await;
    let vb = subscribe_and_fetch(&mut b, &gw1, chunk).await;
    let vd = subscribe_and_fetch(&mut d, &gw2, chunk).await;
    let _ = subscribe_and_fetch(&mut c, &gw1, 7).await;

    let (status, seq) = set(&mut a, 1, index, true).await;
    assert_eq!(status, AckStatus::Applied);
    assert!(seq > 0);

    let version_b = expect_update(&mut b, chunk, offset, true, vb).await;
    assert!(version_b >= seq);
    let version_d = expect_update(&mut d, chunk, offset, true, vd).await;
    assert!(version_d >= seq);

    // C (subscribed to chunk 7 only) saw no Update by the time of a Pong
    // that it asked for after B had the update.
    let seen = ping(&mut c, 5).await;
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, ServerMessage::Update { .. })),
        "C got updates it did not subscribe to: {seen:?}"
    );

    // An unset reaches B too, chained on the previous update.
    let (status, _) = set(&mut a, 2, index, false).await;
    assert_eq!(status, AckStatus::Applied);
    expect_update(&mut b, chunk, offset, false, version_b).await;

    // After Unsubscribe, B gets no more updates of the chunk.
    b.send(&ClientMessage::Unsubscribe {
        first_chunk: chunk,
        count: 1,
    })
    .await
    .unwrap();
    ping(&mut b, 9).await;
    assert_eq!(set(&mut a, 3, index + 1, true).await.0, AckStatus::Applied);
    let version_d2 = expect_update(&mut d, chunk, offset + 1, true, version_d).await;
    assert!(version_d2 > version_d);
    let seen = ping(&mut b, 10).await;
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, ServerMessage::Update { entries, .. } if entries.contains(&UpdateEntry { offset: offset + 1, checked: true }))),
        "B got an update after unsubscribing: {seen:?}"
    );
}

async fn expect_close(client: &mut WsClient, code: u16) {
    let (close, _) = client.closed(WAIT).await.expect("close");
    let (got, reason) = close.expect("a close frame");
    assert_eq!(got, code, "close reason: {reason}");
    assert!(!reason.is_empty(), "close {code} without a reason");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_limits_and_origins() {
    tokio::time::timeout(Duration::from_secs(300), bad_input_test())
        .await
        .expect("gateway websocket bad input test exceeded its bound");
}

async fn bad_input_test() {
    let cluster = cluster().await;
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[
            (
                "CHECKRAFT_GATEWAY_WS_ALLOWED_ORIGINS",
                "[\"https://ok.example\"]",
            ),
            ("CHECKRAFT_GATEWAY_WS_MAX_SUBSCRIPTIONS", "3"),
        ],
    )
    .await;

    // Origins: foreign → 403 before the upgrade; allowed or none → open.
    let refused = WsClient::connect_with_origin(&gw.addr, Some("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(refused.err(), Some(403));
    let allowed = WsClient::connect_with_origin(&gw.addr, Some("https://ok.example"))
        .await
        .unwrap();
    assert!(allowed.is_ok());

    // Unknown type, bad `checked`, a byte after the last field, a
    // truncated varint, a varint over 10 bytes, one not minimal, text:
    // 1002, with a reason naming the fault.
    let mut overlong = vec![0x04u8];
    overlong.extend([0xff; 10]);
    overlong.push(0x01);
    for (bad, why) in [
        (
            Message::Binary(vec![0x09u8, 0, 0, 0, 0].into()),
            "unknown message type",
        ),
        (Message::Binary(vec![0x03u8, 1, 5, 2].into()), "checked"),
        (
            Message::Binary(vec![0x04u8, 1, 0].into()),
            "after its last field",
        ),
        (
            Message::Binary(vec![0x04u8, 0x80].into()),
            "ends inside nonce",
        ),
        (Message::Binary(overlong.into()), "longer than 10 bytes"),
        (
            Message::Binary(vec![0x04u8, 0x80, 0x00].into()),
            "not minimal",
        ),
        (Message::Text("hello".into()), "text"),
    ] {
        let mut client = connect(&gw).await;
        client.send_raw(bad).await.unwrap();
        let (close, _) = client.closed(WAIT).await.expect("close");
        let (code, reason) = close.expect("a close frame");
        assert_eq!(code, 1002, "{why}: {reason}");
        assert!(reason.contains(why), "{reason:?} does not say {why:?}");
    }

    // Oversized: 1009.
    let mut client = connect(&gw).await;
    client
        .send_raw(Message::Binary(vec![0x04u8; 64 << 10].into()))
        .await
        .unwrap();
    expect_close(&mut client, 1009).await;

    // Too many subscriptions: 1008.
    let mut client = connect(&gw).await;
    client
        .send(&ClientMessage::Subscribe {
            first_chunk: 0,
            count: 2,
        })
        .await
        .unwrap();
    ping(&mut client, 1).await;
    client
        .send(&ClientMessage::Subscribe {
            first_chunk: 2,
            count: 5,
        })
        .await
        .unwrap();
    expect_close(&mut client, 1008).await;

    // Out of range: Ack OutOfRange, and the socket stays open.
    let mut client = connect(&gw).await;
    let (status, seq) = set(&mut client, 41, BOXES as u32, true).await;
    assert_eq!((status, seq), (AckStatus::OutOfRange, 0));
    ping(&mut client, 42).await;
    let (status, _) = set(&mut client, 43, 12, true).await;
    assert_eq!(status, AckStatus::Applied);

    // A flood of Sets: some are rate limited, the socket stays open.
    let mut client = connect(&gw).await;
    for id in 0..40u32 {
        client
            .send(&ClientMessage::Set {
                request_id: id,
                index: 100 + id,
                checked: true,
            })
            .await
            .unwrap();
    }
    let mut statuses = Vec::new();
    client
        .wait_for(WAIT, |m| {
            if let ServerMessage::Ack { status, .. } = m {
                statuses.push(*status);
            }
            (statuses.len() == 40).then_some(())
        })
        .await
        .expect("40 acks");
    assert!(statuses.contains(&AckStatus::RateLimited), "{statuses:?}");
    assert!(statuses.contains(&AckStatus::Applied), "{statuses:?}");
    ping(&mut client, 99).await;

    // The gateway still serves.
    assert!(gw.client().healthy().await);
}
