//! The gateway ↔ client WebSocket protocol, byte for byte as specified in
//! `docs/protocol.md`: one binary message per WebSocket message, a type
//! byte, then little-endian fields with no padding.
//!
//! Hand-written rather than bincode because browsers implement it too:
//! the layout is the spec, and `testdata/protocol-vectors.json` pins it
//! for every implementation. Decoding checks lengths exactly; anything
//! malformed is a [`WsError`] (the gateway closes with code 1002).
//!
//! [`bitset`] holds the chunk content encoding (LSB-first) shared by the
//! HTTP chunk endpoint and clients.

use serde::{Deserialize, Serialize};

/// The protocol version sent in [`ServerMessage::Hello`].
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest chunk size the protocol supports: update entries carry the
/// offset in 15 bits.
pub const MAX_CHUNK_SIZE: u32 = 1 << 15;

/// A message from a client to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// `0x01`: add chunks `first_chunk .. first_chunk + count` to the
    /// subscriptions.
    Subscribe {
        /// First chunk of the range.
        first_chunk: u32,
        /// Number of chunks.
        count: u32,
    },
    /// `0x02`: remove chunks from the subscriptions.
    Unsubscribe {
        /// First chunk of the range.
        first_chunk: u32,
        /// Number of chunks.
        count: u32,
    },
    /// `0x03`: set box `index` to `checked` (absolute).
    Set {
        /// Echoed in the [`ServerMessage::Ack`].
        request_id: u32,
        /// The box.
        index: u32,
        /// Its new value.
        checked: bool,
    },
    /// `0x04`: latency probe, answered by [`ServerMessage::Pong`].
    Ping {
        /// Echoed in the Pong.
        nonce: u32,
    },
}

/// Outcome of a client's Set, in [`ServerMessage::Ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// 0: committed on a quorum.
    Applied,
    /// 1: over the rate limit; not written.
    RateLimited,
    /// 2: the index is outside the grid.
    OutOfRange,
    /// 3: the shard could not be reached; retry later or elsewhere.
    Unavailable,
    /// 4: refused for another reason.
    Invalid,
}

impl AckStatus {
    fn code(self) -> u8 {
        match self {
            AckStatus::Applied => 0,
            AckStatus::RateLimited => 1,
            AckStatus::OutOfRange => 2,
            AckStatus::Unavailable => 3,
            AckStatus::Invalid => 4,
        }
    }

    fn from_code(code: u8) -> Result<Self, WsError> {
        Ok(match code {
            0 => AckStatus::Applied,
            1 => AckStatus::RateLimited,
            2 => AckStatus::OutOfRange,
            3 => AckStatus::Unavailable,
            4 => AckStatus::Invalid,
            other => {
                return Err(WsError::BadValue {
                    field: "ack status",
                    value: u64::from(other),
                })
            }
        })
    }
}

/// Why the gateway asks a client to refetch chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// 0: the gateway's own state was reset (for example a shard moved).
    StateReset,
    /// 1: this connection fell behind and updates were dropped for it.
    FellBehind,
}

/// One change inside an [`ServerMessage::Update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateEntry {
    /// The box's offset inside the chunk (`< 2^15`).
    pub offset: u16,
    /// Its new value.
    pub checked: bool,
}

/// A message from the gateway to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// `0x81`: first message on every connection.
    Hello {
        /// Protocol version ([`PROTOCOL_VERSION`]).
        protocol_version: u8,
        /// Boxes in the grid.
        boxes: u64,
        /// Boxes per chunk.
        chunk_size: u32,
        /// This gateway's id.
        gateway_id: u32,
        /// Load in permille of capacity.
        load: u16,
    },
    /// `0x82`: a chunk's net changes from `prev_version` to `version`.
    Update {
        /// The chunk.
        chunk: u32,
        /// The version these changes start from.
        prev_version: u64,
        /// The version after them.
        version: u64,
        /// The changed boxes.
        entries: Vec<UpdateEntry>,
    },
    /// `0x83`: outcome of a Set.
    Ack {
        /// The Set's request id.
        request_id: u32,
        /// Outcome.
        status: AckStatus,
        /// The shard's seq after the write (0 unless applied).
        seq: u64,
    },
    /// `0x84`: live counters.
    Stats {
        /// Checked boxes in the grid.
        checked: u64,
        /// Connected clients.
        online: u32,
    },
    /// `0x85`: current versions of chunks `first_chunk ..`.
    Versions {
        /// First chunk.
        first_chunk: u32,
        /// One version per chunk.
        versions: Vec<u64>,
    },
    /// `0x86`: refetch chunks `first_chunk .. first_chunk + count`.
    Resync {
        /// First chunk.
        first_chunk: u32,
        /// Number of chunks.
        count: u32,
        /// Why.
        reason: ResyncReason,
    },
    /// `0x87`: answer to a Ping.
    Pong {
        /// The Ping's nonce.
        nonce: u32,
    },
}

/// Why bytes are not a valid protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The message is empty.
    #[error("empty message")]
    Empty,
    /// Unknown type byte.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// Too short or too long for its type.
    #[error("message type 0x{kind:02x} needs {expected} bytes, got {got}")]
    Length {
        /// The type byte.
        kind: u8,
        /// Bytes the layout needs.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("bad {field}: {value}")]
    BadValue {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// A little-endian reader that checks the exact length.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], expected: usize) -> Result<Self, WsError> {
        let kind = *bytes.first().ok_or(WsError::Empty)?;
        if bytes.len() != expected {
            return Err(WsError::Length {
                kind,
                expected,
                got: bytes.len(),
            });
        }
        Ok(Self { bytes, pos: 1 })
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let out: [u8; N] = self.bytes[self.pos..self.pos + N]
            .try_into()
            .expect("length checked");
        self.pos += N;
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn flag(&mut self) -> Result<bool, WsError> {
        match self.u8() {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WsError::BadValue {
                field: "checked",
                value: u64::from(v),
            }),
        }
    }
}

/// The count field at `at` of a variable-length message, and the total
/// length it implies.
fn counted_len(bytes: &[u8], at: usize, header: usize, item: usize) -> Result<usize, WsError> {
    let kind = *bytes.first().ok_or(WsError::Empty)?;
    let raw = bytes.get(at..at + 2).ok_or(WsError::Length {
        kind,
        expected: header,
        got: bytes.len(),
    })?;
    let count = u16::from_le_bytes([raw[0], raw[1]]) as usize;
    Ok(header + count * item)
}

impl ClientMessage {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10);
        match self {
            ClientMessage::Subscribe { first_chunk, count }
            | ClientMessage::Unsubscribe { first_chunk, count } => {
                out.push(if matches!(self, ClientMessage::Subscribe { .. }) {
                    0x01
                } else {
                    0x02
                });
                out.extend_from_slice(&first_chunk.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
            }
            ClientMessage::Set {
                request_id,
                index,
                checked,
            } => {
                out.push(0x03);
                out.extend_from_slice(&request_id.to_le_bytes());
                out.extend_from_slice(&index.to_le_bytes());
                out.push(u8::from(*checked));
            }
            ClientMessage::Ping { nonce } => {
                out.push(0x04);
                out.extend_from_slice(&nonce.to_le_bytes());
            }
        }
        out
    }

    /// Decodes one message.
    pub fn decode(bytes: &[u8]) -> Result<Self, WsError> {
        let kind = *bytes.first().ok_or(WsError::Empty)?;
        Ok(match kind {
            0x01 | 0x02 => {
                let mut r = Reader::new(bytes, 9)?;
                let (first_chunk, count) = (r.u32(), r.u32());
                if kind == 0x01 {
                    ClientMessage::Subscribe { first_chunk, count }
                } else {
                    ClientMessage::Unsubscribe { first_chunk, count }
                }
            }
            0x03 => {
                let mut r = Reader::new(bytes, 10)?;
                ClientMessage::Set {
                    request_id: r.u32(),
                    index: r.u32(),
                    checked: r.flag()?,
                }
            }
            0x04 => ClientMessage::Ping {
                nonce: Reader::new(bytes, 5)?.u32(),
            },
            other => return Err(WsError::UnknownType(other)),
        })
    }
}

impl ServerMessage {
    /// Encodes the message. Panics if an Update has an offset of 2^15 or
    /// more, or a list longer than `u16::MAX` (a gateway bug).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            ServerMessage::Hello {
                protocol_version,
                boxes,
                chunk_size,
                gateway_id,
                load,
            } => {
                out.push(0x81);
                out.push(*protocol_version);
                out.extend_from_slice(&boxes.to_le_bytes());
                out.extend_from_slice(&chunk_size.to_le_bytes());
                out.extend_from_slice(&gateway_id.to_le_bytes());
                out.extend_from_slice(&load.to_le_bytes());
            }
            ServerMessage::Update {
                chunk,
                prev_version,
                version,
                entries,
            } => {
                out.push(0x82);
                out.extend_from_slice(&chunk.to_le_bytes());
                out.extend_from_slice(&prev_version.to_le_bytes());
                out.extend_from_slice(&version.to_le_bytes());
                let count = u16::try_from(entries.len()).expect("at most 65535 entries per update");
                out.extend_from_slice(&count.to_le_bytes());
                for e in entries {
                    assert!(
                        u32::from(e.offset) < MAX_CHUNK_SIZE,
                        "update offset {} too large",
                        e.offset
                    );
                    out.extend_from_slice(&(e.offset | (u16::from(e.checked) << 15)).to_le_bytes());
                }
            }
            ServerMessage::Ack {
                request_id,
                status,
                seq,
            } => {
                out.push(0x83);
                out.extend_from_slice(&request_id.to_le_bytes());
                out.push(status.code());
                out.extend_from_slice(&seq.to_le_bytes());
            }
            ServerMessage::Stats { checked, online } => {
                out.push(0x84);
                out.extend_from_slice(&checked.to_le_bytes());
                out.extend_from_slice(&online.to_le_bytes());
            }
            ServerMessage::Versions {
                first_chunk,
                versions,
            } => {
                out.push(0x85);
                out.extend_from_slice(&first_chunk.to_le_bytes());
                let count =
                    u16::try_from(versions.len()).expect("at most 65535 versions per message");
                out.extend_from_slice(&count.to_le_bytes());
                for v in versions {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            ServerMessage::Resync {
                first_chunk,
                count,
                reason,
            } => {
                out.push(0x86);
                out.extend_from_slice(&first_chunk.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
                out.push(match reason {
                    ResyncReason::StateReset => 0,
                    ResyncReason::FellBehind => 1,
                });
            }
            ServerMessage::Pong { nonce } => {
                out.push(0x87);
                out.extend_from_slice(&nonce.to_le_bytes());
            }
        }
        out
    }

    /// Decodes one message.
    pub fn decode(bytes: &[u8]) -> Result<Self, WsError> {
        let kind = *bytes.first().ok_or(WsError::Empty)?;
        Ok(match kind {
            0x81 => {
                let mut r = Reader::new(bytes, 20)?;
                ServerMessage::Hello {
                    protocol_version: r.u8(),
                    boxes: r.u64(),
                    chunk_size: r.u32(),
                    gateway_id: r.u32(),
                    load: r.u16(),
                }
            }
            0x82 => {
                let mut r = Reader::new(bytes, counted_len(bytes, 21, 23, 2)?)?;
                let (chunk, prev_version, version) = (r.u32(), r.u64(), r.u64());
                let count = r.u16();
                let entries = (0..count)
                    .map(|_| {
                        let raw = r.u16();
                        UpdateEntry {
                            offset: raw & 0x7fff,
                            checked: raw >> 15 == 1,
                        }
                    })
                    .collect();
                ServerMessage::Update {
                    chunk,
                    prev_version,
                    version,
                    entries,
                }
            }
            0x83 => {
                let mut r = Reader::new(bytes, 14)?;
                let request_id = r.u32();
                let status = AckStatus::from_code(r.u8())?;
                ServerMessage::Ack {
                    request_id,
                    status,
                    seq: r.u64(),
                }
            }
            0x84 => {
                let mut r = Reader::new(bytes, 13)?;
                ServerMessage::Stats {
                    checked: r.u64(),
                    online: r.u32(),
                }
            }
            0x85 => {
                let mut r = Reader::new(bytes, counted_len(bytes, 5, 7, 8)?)?;
                let first_chunk = r.u32();
                let count = r.u16();
                ServerMessage::Versions {
                    first_chunk,
                    versions: (0..count).map(|_| r.u64()).collect(),
                }
            }
            0x86 => {
                let mut r = Reader::new(bytes, 10)?;
                let (first_chunk, count) = (r.u32(), r.u32());
                let reason = match r.u8() {
                    0 => ResyncReason::StateReset,
                    1 => ResyncReason::FellBehind,
                    v => {
                        return Err(WsError::BadValue {
                            field: "resync reason",
                            value: u64::from(v),
                        })
                    }
                };
                ServerMessage::Resync {
                    first_chunk,
                    count,
                    reason,
                }
            }
            0x87 => ServerMessage::Pong {
                nonce: Reader::new(bytes, 5)?.u32(),
            },
            other => return Err(WsError::UnknownType(other)),
        })
    }
}

/// The chunk content encoding: `ceil(len / 8)` bytes, box `start + i` is
/// bit `i % 8` (LSB first) of byte `i / 8`.
pub mod bitset {
    /// Number of bytes for a chunk of `len` boxes.
    pub fn byte_len(len: u32) -> usize {
        (len as usize).div_ceil(8)
    }

    /// The bitset of `len` boxes starting at `start`, from the checked
    /// (absolute) indices in `checked` (any order; others are ignored).
    pub fn encode(start: u32, len: u32, checked: impl IntoIterator<Item = u32>) -> Vec<u8> {
        let mut out = vec![0u8; byte_len(len)];
        for index in checked {
            if let Some(i) = index.checked_sub(start).filter(|i| *i < len) {
                out[(i >> 3) as usize] |= 1 << (i & 7);
            }
        }
        out
    }

    /// Whether the box at `offset` of a chunk is set in `bytes`.
    pub fn get(bytes: &[u8], offset: u32) -> bool {
        bytes
            .get((offset >> 3) as usize)
            .is_some_and(|b| b & (1 << (offset & 7)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(ClientMessage::decode(&[]), Err(WsError::Empty));
        assert_eq!(
            ClientMessage::decode(&[0x09]),
            Err(WsError::UnknownType(0x09))
        );
        assert!(matches!(
            ClientMessage::decode(&[0x01, 0, 0]),
            Err(WsError::Length { .. })
        ));
        assert!(matches!(
            ClientMessage::decode(&[0x04, 1, 2, 3, 4, 5]),
            Err(WsError::Length { .. })
        ));
        let bad_flag = [0x03, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        assert!(matches!(
            ClientMessage::decode(&bad_flag),
            Err(WsError::BadValue {
                field: "checked",
                ..
            })
        ));
        // An Update whose count promises more entries than it has.
        let mut update = ServerMessage::Update {
            chunk: 1,
            prev_version: 1,
            version: 2,
            entries: vec![],
        }
        .encode();
        update[21] = 3;
        assert!(matches!(
            ServerMessage::decode(&update),
            Err(WsError::Length { .. })
        ));
    }

    #[test]
    fn bitset_is_lsb_first() {
        let bytes = bitset::encode(100, 12, [100, 103, 108, 111, 99, 112]);
        assert_eq!(bytes, vec![0b0000_1001, 0b0000_1001]);
        assert!(bitset::get(&bytes, 0) && bitset::get(&bytes, 3) && bitset::get(&bytes, 11));
        assert!(!bitset::get(&bytes, 1) && !bitset::get(&bytes, 64));
    }
}
