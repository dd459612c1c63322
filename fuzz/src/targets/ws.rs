//! `ws`: the WebSocket message decoder of `docs/protocol.md`
//! ([`checkraft_proto::ws`]), both directions.
//!
//! Every input goes to [`ClientMessage::decode`] (what the gateway runs on
//! each client frame) and to [`ServerMessage::decode`] (what clients and
//! `raftctl bench` run). Besides "no panic", a decoded message must
//! re-encode to exactly the input bytes: the layout is fixed, so accepting
//! two encodings of one message would be a spec ambiguity.

use checkraft_proto::ws::{
    AckStatus, ClientMessage, ResyncReason, ServerMessage, UpdateEntry, PROTOCOL_VERSION,
};

use super::Target;
use crate::feedback;

/// The target.
pub const TARGET: Target = Target {
    name: "ws",
    about: "WebSocket messages: ClientMessage::decode and ServerMessage::decode, exact re-encoding",
    run,
    seeds,
    dict: &[
        &[0x01],
        &[0x02],
        &[0x03],
        &[0x04],
        &[0x81],
        &[0x82],
        &[0x83],
        &[0x84],
        &[0x85],
        &[0x86],
        &[0x87],
        &[0x88],
        &[0x80, 0x00],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0xff, 0xff],
        &[0x00, 0x80],
        &[0xff, 0x7f],
    ],
    max_len: 4096,
};

/// Decodes `data` as both message directions.
pub fn run(data: &[u8]) {
    let client = ClientMessage::decode(data);
    feedback::note_result("client", &client);
    if let Ok(m) = &client {
        feedback::note(variant(&format!("{m:?}")));
        assert_eq!(
            m.encode(),
            data,
            "client message {m:?} re-encodes differently"
        );
    }
    let server = ServerMessage::decode(data);
    feedback::note_result("server", &server);
    if let Ok(m) = &server {
        feedback::note(variant(&format!("{m:?}")));
        assert_eq!(m.encode(), data, "server message re-encodes differently");
    }
}

fn variant(debug: &str) -> &str {
    debug.split([' ', '{', '(']).next().unwrap_or("")
}

/// Every message type, with empty, small and larger lists, plus every hex
/// string of `testdata/protocol-vectors.json`.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [
        ClientMessage::Subscribe {
            first_chunk: 0,
            count: 4,
        },
        ClientMessage::Unsubscribe {
            first_chunk: 30,
            count: 1,
        },
        ClientMessage::Set {
            request_id: 7,
            index: 999_999,
            checked: true,
        },
        ClientMessage::Set {
            request_id: u32::MAX,
            index: 0,
            checked: false,
        },
        ClientMessage::Ping { nonce: 0x0102_0304 },
    ]
    .iter()
    .map(ClientMessage::encode)
    .collect();
    let entries = |n: u16| {
        (0..n)
            .map(|i| UpdateEntry {
                offset: (i * 97) % 32768,
                checked: i % 3 == 0,
            })
            .collect::<Vec<_>>()
    };
    let server = [
        ServerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            boxes: 1_000_000,
            chunk_size: 4096,
            gateway_id: 2,
            load: 150,
        },
        ServerMessage::Update {
            chunk: 3,
            prev_version: 10,
            version: 11,
            entries: vec![],
        },
        ServerMessage::Update {
            chunk: 3,
            prev_version: 11,
            version: 14,
            entries: entries(3),
        },
        ServerMessage::Update {
            chunk: 244,
            prev_version: u64::MAX - 1,
            version: u64::MAX,
            entries: entries(100),
        },
        // Dense: the bitset form.
        ServerMessage::Update {
            chunk: 5,
            prev_version: 0,
            version: 9,
            entries: (300..500)
                .map(|offset| UpdateEntry {
                    offset,
                    checked: offset % 2 == 0,
                })
                .collect(),
        },
        ServerMessage::Ack {
            request_id: 7,
            status: AckStatus::Applied,
            seq: 42,
        },
        ServerMessage::Ack {
            request_id: 8,
            status: AckStatus::Invalid,
            seq: 0,
        },
        ServerMessage::Stats {
            checked: 12345,
            online: 17,
        },
        ServerMessage::Versions {
            first_chunk: 0,
            versions: vec![],
        },
        ServerMessage::Versions {
            first_chunk: 9,
            versions: (0..40).map(|v| v * 1000).collect(),
        },
        ServerMessage::Resync {
            first_chunk: 1,
            count: 2,
            reason: ResyncReason::FellBehind,
        },
        ServerMessage::Pong { nonce: 5 },
    ];
    out.extend(server.iter().map(ServerMessage::encode));
    out.extend(protocol_vectors());
    out
}

/// The hex strings of the shared protocol test vectors.
fn protocol_vectors() -> Vec<Vec<u8>> {
    let text = include_str!("../../../testdata/protocol-vectors.json");
    let value: serde_json::Value = serde_json::from_str(text).expect("protocol vectors parse");
    let mut out = Vec::new();
    collect_hex(&value, &mut out);
    out
}

fn collect_hex(v: &serde_json::Value, out: &mut Vec<Vec<u8>>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("hex", Some(hex)) => out.extend(decode_hex(hex)),
                    _ => collect_hex(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_hex(v, out)),
        _ => {}
    }
}

/// `"0a0b"` → `[10, 11]`; `None` for odd or non-hex strings.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
