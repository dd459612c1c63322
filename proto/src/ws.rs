//! The gateway ↔ client WebSocket protocol, byte for byte as specified in
//! `docs/protocol.md` (protocol version 2): one binary message per
//! WebSocket message, a type byte, then the fields in order with no
//! padding. Integers are unsigned LEB128 varints (`wire`); flags, statuses
//! and reasons are single bytes. An Update carries its `version` and a
//! `delta` (`prev_version = version - delta`), and its entries in one of two
//! forms (`update`: a gap-coded list, or a bitset when that is smaller).
//! A SetMany carries several boxes gap-coded in ascending index order and
//! is answered by one AckMany of runs of equal outcome (`set_many`).
//!
//! Hand-written rather than bincode because browsers implement it too:
//! the layout is the spec, and `testdata/protocol-vectors.json` pins it
//! for every implementation. Decoding is strict (minimal varints of at
//! most 10 bytes, each within its field's width, no byte left over, a
//! delta at most the version, one encoding per message): anything
//! malformed is a [`WsError`] (the gateway closes with code 1002).
//!
//! [`bitset`] holds the chunk content encoding (LSB-first) shared by the
//! HTTP chunk endpoint and clients.

mod set_many;
mod update;
mod wire;

use serde::{Deserialize, Serialize};

pub use set_many::runs_of as ack_runs;
use wire::{put_varint, Reader};

/// The protocol version sent in [`ServerMessage::Hello`]. Version 1 had
/// fixed-width little-endian fields and no bitset form.
pub const PROTOCOL_VERSION: u8 = 2;

/// Largest chunk size the protocol supports: an Update has at most one
/// entry per box, at offsets below 2^15.
pub const MAX_CHUNK_SIZE: u32 = 1 << 15;

/// Most chunks in one [`ServerMessage::Versions`].
pub const MAX_VERSIONS_RUN: usize = 256;

/// Most boxes in one [`ClientMessage::SetMany`] (and so in one
/// [`ServerMessage::AckMany`]). A gateway may allow fewer
/// (`ws_max_sets_per_message`), never more.
pub const MAX_SETS_PER_MESSAGE: usize = 256;

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
    /// `0x05`: set several boxes (absolute values), answered by one
    /// [`ServerMessage::AckMany`]. On the wire the entries are gap-coded
    /// in strictly ascending index order, so a box appears at most once.
    SetMany {
        /// Echoed in the AckMany.
        request_id: u32,
        /// 1 to [`MAX_SETS_PER_MESSAGE`] boxes, strictly ascending by
        /// index.
        sets: Vec<SetEntry>,
    },
}

/// One box of a [`ClientMessage::SetMany`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetEntry {
    /// The box.
    pub index: u32,
    /// Its new value.
    pub checked: bool,
}

/// A run of a [`ServerMessage::AckMany`]: the next `len` boxes of the
/// SetMany (in its ascending order) share this outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRun {
    /// How many boxes (at least 1).
    pub len: u32,
    /// Their outcome.
    pub status: AckStatus,
    /// The seq of the batch that committed them when applied, else 0.
    pub seq: u64,
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
    /// `0x89`: outcome of every box of a SetMany, as runs of equal
    /// outcome in the SetMany's (ascending) order; adjacent runs differ.
    AckMany {
        /// The SetMany's request id.
        request_id: u32,
        /// 1 to [`MAX_SETS_PER_MESSAGE`] runs whose lengths add up to the
        /// SetMany's count.
        runs: Vec<AckRun>,
    },
}

/// Why bytes are not a valid protocol message. The gateway closes a
/// connection that sends one with code 1002 and this text as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The message is empty.
    #[error("empty message")]
    Empty,
    /// Unknown type byte.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// The message ends inside a field.
    #[error("message type 0x{kind:02x} ends inside {field}")]
    Truncated {
        /// The type byte.
        kind: u8,
        /// The field that was cut.
        field: &'static str,
    },
    /// Bytes after the last field.
    #[error("message type 0x{kind:02x} has {extra} bytes after its last field")]
    Trailing {
        /// The type byte.
        kind: u8,
        /// How many.
        extra: usize,
    },
    /// A varint longer than 10 bytes or past `u64::MAX`.
    #[error("{field}: varint longer than 10 bytes or past 2^64")]
    VarintTooLong {
        /// Which field.
        field: &'static str,
    },
    /// A varint with a needless final zero byte.
    #[error("{field}: varint not minimal")]
    VarintNotMinimal {
        /// Which field.
        field: &'static str,
    },
    /// An Update whose `delta` is larger than its `version` (its
    /// `prev_version` would be negative).
    #[error("update delta {delta} is larger than its version {version}")]
    DeltaPastVersion {
        /// The delta.
        delta: u64,
        /// The version.
        version: u64,
    },
    /// A field holds a value the protocol does not allow.
    #[error("bad {field}: {value}")]
    BadValue {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A second encoding of a message that has a shorter or canonical one.
    #[error("not canonical: {0}")]
    NotCanonical(&'static str),
}

fn reason_code(reason: ResyncReason) -> u8 {
    match reason {
        ResyncReason::StateReset => 0,
        ResyncReason::FellBehind => 1,
    }
}

impl ClientMessage {
    /// A SetMany of `sets` (any order): sorted by index, and of several
    /// values for one box the last wins (as in one batch). The caller keeps
    /// it to 1 ..= [`MAX_SETS_PER_MESSAGE`] boxes ([`Self::encode`] panics
    /// otherwise).
    pub fn set_many(request_id: u32, sets: impl IntoIterator<Item = (u32, bool)>) -> Self {
        let mut sets: Vec<SetEntry> = sets
            .into_iter()
            .map(|(index, checked)| SetEntry { index, checked })
            .collect();
        // Stable: of equal indices the last given stays last.
        sets.sort_by_key(|s| s.index);
        let mut out: Vec<SetEntry> = Vec::with_capacity(sets.len());
        for s in sets {
            match out.last_mut() {
                Some(last) if last.index == s.index => *last = s,
                _ => out.push(s),
            }
        }
        ClientMessage::SetMany {
            request_id,
            sets: out,
        }
    }

    /// Encodes the message. Panics on a SetMany of no boxes, of more than
    /// [`MAX_SETS_PER_MESSAGE`], or whose indices do not ascend strictly
    /// (build it with [`Self::set_many`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        match self {
            ClientMessage::Subscribe { first_chunk, count } => {
                out.push(0x01);
                put_varint(&mut out, u64::from(*first_chunk));
                put_varint(&mut out, u64::from(*count));
            }
            ClientMessage::Unsubscribe { first_chunk, count } => {
                out.push(0x02);
                put_varint(&mut out, u64::from(*first_chunk));
                put_varint(&mut out, u64::from(*count));
            }
            ClientMessage::Set {
                request_id,
                index,
                checked,
            } => {
                out.push(0x03);
                put_varint(&mut out, u64::from(*request_id));
                put_varint(&mut out, u64::from(*index));
                out.push(u8::from(*checked));
            }
            ClientMessage::Ping { nonce } => {
                out.push(0x04);
                put_varint(&mut out, u64::from(*nonce));
            }
            ClientMessage::SetMany { request_id, sets } => {
                out.push(set_many::SET_MANY);
                put_varint(&mut out, u64::from(*request_id));
                set_many::encode_sets(&mut out, sets);
            }
        }
        out
    }

    /// Decodes one message, strictly: known type, minimal varints within
    /// their field's width, no byte left over.
    pub fn decode(bytes: &[u8]) -> Result<Self, WsError> {
        let mut r = Reader::new(bytes)?;
        let msg = match bytes[0] {
            kind @ (0x01 | 0x02) => {
                let first_chunk = r.varint_u32("first_chunk")?;
                let count = r.varint_u32("count")?;
                if kind == 0x01 {
                    ClientMessage::Subscribe { first_chunk, count }
                } else {
                    ClientMessage::Unsubscribe { first_chunk, count }
                }
            }
            0x03 => ClientMessage::Set {
                request_id: r.varint_u32("request_id")?,
                index: r.varint_u32("index")?,
                checked: r.flag("checked")?,
            },
            0x04 => ClientMessage::Ping {
                nonce: r.varint_u32("nonce")?,
            },
            set_many::SET_MANY => ClientMessage::SetMany {
                request_id: r.varint_u32("request_id")?,
                sets: set_many::decode_sets(&mut r)?,
            },
            other => return Err(WsError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl ServerMessage {
    /// Encodes the message. Panics on an Update whose entries do not
    /// ascend strictly below [`MAX_CHUNK_SIZE`] or whose `prev_version` is
    /// above its `version`, on a Versions run longer than
    /// [`MAX_VERSIONS_RUN`], and on an AckMany with no run, an empty run,
    /// adjacent runs of the same outcome or more than
    /// [`MAX_SETS_PER_MESSAGE`] boxes (gateway bugs; build its runs with
    /// [`ack_runs`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
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
                put_varint(&mut out, *boxes);
                put_varint(&mut out, u64::from(*chunk_size));
                put_varint(&mut out, u64::from(*gateway_id));
                put_varint(&mut out, u64::from(*load));
            }
            ServerMessage::Update {
                chunk,
                prev_version,
                version,
                entries,
            } => {
                let delta = version
                    .checked_sub(*prev_version)
                    .expect("an Update's prev_version is at most its version");
                let kind = update::form(entries);
                out.push(kind);
                put_varint(&mut out, u64::from(*chunk));
                put_varint(&mut out, *version);
                put_varint(&mut out, delta);
                update::encode_body(&mut out, kind, entries);
            }
            ServerMessage::Ack {
                request_id,
                status,
                seq,
            } => {
                out.push(0x83);
                put_varint(&mut out, u64::from(*request_id));
                out.push(status.code());
                put_varint(&mut out, *seq);
            }
            ServerMessage::Stats { checked, online } => {
                out.push(0x84);
                put_varint(&mut out, *checked);
                put_varint(&mut out, u64::from(*online));
            }
            ServerMessage::Versions {
                first_chunk,
                versions,
            } => {
                assert!(
                    versions.len() <= MAX_VERSIONS_RUN,
                    "at most {MAX_VERSIONS_RUN} versions per message"
                );
                out.push(0x85);
                put_varint(&mut out, u64::from(*first_chunk));
                put_varint(&mut out, versions.len() as u64);
                for v in versions {
                    put_varint(&mut out, *v);
                }
            }
            ServerMessage::Resync {
                first_chunk,
                count,
                reason,
            } => {
                out.push(0x86);
                put_varint(&mut out, u64::from(*first_chunk));
                put_varint(&mut out, u64::from(*count));
                out.push(reason_code(*reason));
            }
            ServerMessage::Pong { nonce } => {
                out.push(0x87);
                put_varint(&mut out, u64::from(*nonce));
            }
            ServerMessage::AckMany { request_id, runs } => {
                out.push(set_many::ACK_MANY);
                put_varint(&mut out, u64::from(*request_id));
                set_many::encode_runs(&mut out, runs);
            }
        }
        out
    }

    /// Decodes one message, strictly: known type, minimal varints within
    /// their field's width, an Update's delta at most its version, known
    /// Ack status and Resync reason, no byte left over.
    pub fn decode(bytes: &[u8]) -> Result<Self, WsError> {
        let mut r = Reader::new(bytes)?;
        let msg = match bytes[0] {
            0x81 => ServerMessage::Hello {
                protocol_version: r.u8("protocol_version")?,
                boxes: r.varint("boxes")?,
                chunk_size: r.varint_u32("chunk_size")?,
                gateway_id: r.varint_u32("gateway_id")?,
                load: r.varint_u16("load")?,
            },
            kind @ (update::LIST | update::BITSET) => {
                let chunk = r.varint_u32("chunk")?;
                let version = r.varint("version")?;
                let delta = r.varint("delta")?;
                if delta > version {
                    return Err(WsError::DeltaPastVersion { delta, version });
                }
                ServerMessage::Update {
                    chunk,
                    prev_version: version - delta,
                    version,
                    entries: update::decode_body(&mut r, kind)?,
                }
            }
            0x83 => {
                let request_id = r.varint_u32("request_id")?;
                let status = AckStatus::from_code(r.u8("status")?)?;
                ServerMessage::Ack {
                    request_id,
                    status,
                    seq: r.varint("seq")?,
                }
            }
            0x84 => ServerMessage::Stats {
                checked: r.varint("checked")?,
                online: r.varint_u32("online")?,
            },
            0x85 => {
                let first_chunk = r.varint_u32("first_chunk")?;
                let count = r.varint("count")?;
                if count > MAX_VERSIONS_RUN as u64 {
                    return Err(WsError::BadValue {
                        field: "count",
                        value: count,
                    });
                }
                let versions = (0..count)
                    .map(|_| r.varint("version"))
                    .collect::<Result<_, _>>()?;
                ServerMessage::Versions {
                    first_chunk,
                    versions,
                }
            }
            0x86 => {
                let first_chunk = r.varint_u32("first_chunk")?;
                let count = r.varint_u32("count")?;
                let reason = match r.u8("reason")? {
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
                nonce: r.varint_u32("nonce")?,
            },
            set_many::ACK_MANY => ServerMessage::AckMany {
                request_id: r.varint_u32("request_id")?,
                runs: set_many::decode_runs(&mut r)?,
            },
            other => return Err(WsError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
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
            ClientMessage::decode(&[0x01, 0]),
            Err(WsError::Truncated { field: "count", .. })
        ));
        assert!(matches!(
            ClientMessage::decode(&[0x04, 1, 2]),
            Err(WsError::Trailing { extra: 1, .. })
        ));
        // A request id past u32::MAX.
        assert!(matches!(
            ClientMessage::decode(&[0x03, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0]),
            Err(WsError::BadValue {
                field: "request_id",
                ..
            })
        ));
        assert!(matches!(
            ClientMessage::decode(&[0x03, 0, 0, 2]),
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
        *update.last_mut().unwrap() = 3;
        assert!(matches!(
            ServerMessage::decode(&update),
            Err(WsError::Truncated { .. })
        ));
        // chunk 1, version 2, delta 3.
        assert_eq!(
            ServerMessage::decode(&[0x82, 1, 2, 3, 0]),
            Err(WsError::DeltaPastVersion {
                delta: 3,
                version: 2
            })
        );
    }

    #[test]
    fn one_box_update_is_a_fraction_of_version_1() {
        // Version 1: 23 header bytes + 2 per entry. Chunk 12 at a seq of
        // a million, the previous change 40 seqs before, box 3000.
        let msg = ServerMessage::Update {
            chunk: 12,
            prev_version: 999_960,
            version: 1_000_000,
            entries: vec![UpdateEntry {
                offset: 3000,
                checked: true,
            }],
        };
        let bytes = msg.encode();
        assert_eq!(bytes.len(), 9, "{bytes:02x?}");
        assert_eq!(ServerMessage::decode(&bytes), Ok(msg));
    }

    #[test]
    fn set_many_sorts_keeps_the_last_value_and_round_trips() {
        let msg = ClientMessage::set_many(7, [(12, true), (10, true), (12, false), (11, true)]);
        let ClientMessage::SetMany { sets, .. } = &msg else {
            unreachable!()
        };
        let got: Vec<(u32, bool)> = sets.iter().map(|s| (s.index, s.checked)).collect();
        assert_eq!(got, [(10, true), (11, true), (12, false)]);
        // 10 << 1 | 1, then gaps of 0: one byte per box.
        assert_eq!(msg.encode(), [0x05, 7, 3, 21, 1, 0]);
        assert_eq!(ClientMessage::decode(&msg.encode()), Ok(msg));
    }

    #[test]
    fn set_many_edges() {
        // The largest count, and the largest index (a 5-byte entry).
        let max = ClientMessage::set_many(
            u32::MAX,
            (0..MAX_SETS_PER_MESSAGE as u32 - 1)
                .map(|i| (i, i % 2 == 0))
                .chain([(u32::MAX, true)]),
        );
        let bytes = max.encode();
        assert_eq!(bytes.len(), 1 + 5 + 2 + 255 + 5, "{bytes:02x?}");
        assert_eq!(ClientMessage::decode(&bytes), Ok(max));
        // Count 0, and one past the largest.
        assert!(matches!(
            ClientMessage::decode(&[0x05, 1, 0]),
            Err(WsError::BadValue {
                field: "set_many count",
                value: 0
            })
        ));
        let mut over = vec![0x05, 1, 0x81, 0x02];
        over.extend(std::iter::repeat_n(0, MAX_SETS_PER_MESSAGE + 1));
        assert!(matches!(
            ClientMessage::decode(&over),
            Err(WsError::BadValue {
                field: "set_many count",
                value: 257
            })
        ));
        // A second box past u32::MAX: index u32::MAX, then gap 0.
        let past = [0x05, 1, 2, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00];
        assert!(matches!(
            ClientMessage::decode(&past),
            Err(WsError::BadValue {
                field: "set_many index",
                value: 0x1_0000_0000
            })
        ));
        // Fewer entries than the count; a bad varint.
        assert!(matches!(
            ClientMessage::decode(&[0x05, 1, 2, 0]),
            Err(WsError::Truncated { .. })
        ));
        assert!(matches!(
            ClientMessage::decode(&[0x05, 1, 1, 0x80, 0]),
            Err(WsError::VarintNotMinimal { .. })
        ));
    }

    #[test]
    fn random_set_many_and_ack_many_bytes_decode_strictly_or_fail() {
        // Whatever decodes re-encodes to the same bytes (and never
        // panics the encoder): one encoding per message.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut client, mut server) = (0, 0);
        for _ in 0..20_000 {
            let len = 1 + (next() % 24) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| (next() % 7) as u8).collect();
            bytes[0] = if next() % 2 == 0 { 0x05 } else { 0x89 };
            if let Ok(msg) = ClientMessage::decode(&bytes) {
                assert_eq!(msg.encode(), bytes, "{msg:?}");
                client += 1;
            }
            if let Ok(msg) = ServerMessage::decode(&bytes) {
                assert_eq!(msg.encode(), bytes, "{msg:?}");
                server += 1;
            }
        }
        assert!(client > 50 && server > 50, "{client} {server}");
    }

    #[test]
    fn ack_many_runs() {
        use AckStatus::*;
        let runs = ack_runs([
            (Applied, 9),
            (Applied, 9),
            (Applied, 10),
            (RateLimited, 0),
            (RateLimited, 0),
        ]);
        let msg = ServerMessage::AckMany {
            request_id: 3,
            runs: runs.clone(),
        };
        let bytes = msg.encode();
        assert_eq!(bytes, [0x89, 3, 3, 2, 0, 9, 1, 0, 10, 2, 1, 0]);
        assert_eq!(ServerMessage::decode(&bytes), Ok(msg));
        assert_eq!(runs.iter().map(|r| r.len).sum::<u32>(), 5);
        // Adjacent equal runs, an empty run, no runs, too many boxes.
        assert!(matches!(
            ServerMessage::decode(&[0x89, 3, 2, 1, 0, 9, 1, 0, 9]),
            Err(WsError::NotCanonical(_))
        ));
        assert!(ServerMessage::decode(&[0x89, 3, 1, 0, 0, 9]).is_err());
        assert!(ServerMessage::decode(&[0x89, 3, 0]).is_err());
        assert!(ServerMessage::decode(&[0x89, 3, 2, 0x80, 0x02, 0, 9, 1, 1, 0]).is_err());
        assert!(ServerMessage::decode(&[0x89, 3, 1, 0x80, 0x02, 5, 0]).is_err());
    }

    #[test]
    fn bitset_is_lsb_first() {
        let bytes = bitset::encode(100, 12, [100, 103, 108, 111, 99, 112]);
        assert_eq!(bytes, vec![0b0000_1001, 0b0000_1001]);
        assert!(bitset::get(&bytes, 0) && bitset::get(&bytes, 3) && bitset::get(&bytes, 11));
        assert!(!bitset::get(&bytes, 1) && !bitset::get(&bytes, 64));
    }
}
