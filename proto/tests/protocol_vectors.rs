//! The shared test vectors of `docs/protocol.md`
//! (`testdata/protocol-vectors.json`): every message decodes from its
//! bytes and encodes back to them (values past 2^53, which the browser's
//! decoder refuses, included); malformed client and server messages are
//! refused; bitsets encode LSB-first. The browser's JS checks the same
//! file.

use checkraft_proto::ws::{bitset, ClientMessage, ServerMessage};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/protocol-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors"))
        .expect("vectors are JSON")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn client_messages_match_the_vectors() {
    for v in vectors()["client"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let bytes = hex(v["hex"].as_str().unwrap());
        let want: ClientMessage = serde_json::from_value(v["message"].clone()).unwrap();
        assert_eq!(
            ClientMessage::decode(&bytes).as_ref(),
            Ok(&want),
            "decode {name}"
        );
        assert_eq!(want.encode(), bytes, "encode {name}");
    }
}

#[test]
fn server_messages_match_the_vectors() {
    for v in vectors()["server"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let bytes = hex(v["hex"].as_str().unwrap());
        let want: ServerMessage = serde_json::from_value(v["message"].clone()).unwrap();
        assert_eq!(
            ServerMessage::decode(&bytes).as_ref(),
            Ok(&want),
            "decode {name}"
        );
        assert_eq!(want.encode(), bytes, "encode {name}");
    }
}

#[test]
fn malformed_client_messages_are_refused() {
    for v in vectors()["malformed_client"].as_array().unwrap() {
        let bytes = hex(v["hex"].as_str().unwrap());
        assert!(
            ClientMessage::decode(&bytes).is_err(),
            "accepted malformed {}",
            v["name"]
        );
    }
}

#[test]
fn malformed_server_messages_are_refused() {
    for v in vectors()["malformed_server"].as_array().unwrap() {
        let bytes = hex(v["hex"].as_str().unwrap());
        let decoded = ServerMessage::decode(&bytes);
        assert!(
            decoded.is_err(),
            "accepted malformed {}: {decoded:?}",
            v["name"]
        );
    }
}

#[test]
fn bitsets_match_the_vectors() {
    for v in vectors()["bitsets"].as_array().unwrap() {
        let start = v["start"].as_u64().unwrap() as u32;
        let len = v["len"].as_u64().unwrap() as u32;
        let checked: Vec<u32> = v["checked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            bitset::encode(start, len, checked),
            hex(v["hex"].as_str().unwrap()),
            "{}",
            v["name"]
        );
    }
}
