//! The one place that encodes and decodes bincode.
//!
//! Everything binary (raft RPCs, log entries, snapshots, shard reads and
//! change-stream frames) goes through [`encode`] and [`decode`], with
//! bincode 2's standard configuration in serde mode. Decoding refuses input
//! over [`DECODE_LIMIT`] bytes of allocation and trailing garbage, so a
//! malformed body is an error, never a crash or a huge allocation.
//!
//! ## Stream framing
//! The change stream is a sequence of frames: a 4-byte little-endian length
//! `n`, then `n` bytes of a bincode-encoded [`crate::ChangeEvent`].
//! [`frame`] writes one; [`FrameReader`] splits a byte stream back into
//! decoded values.

use serde::{de::DeserializeOwned, Serialize};

/// Largest allocation a decode may make (64 MiB): above any snapshot of a
/// 2^32-box range (~512 MiB is the worst case of a full random range, which
/// checkraft never sends in one frame; shards are much smaller).
pub const DECODE_LIMIT: usize = 64 << 20;

/// Largest change-stream frame [`FrameReader`] accepts.
pub const MAX_FRAME: usize = 64 << 20;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// Valid value, but followed by extra bytes.
    #[error("malformed body: {0} trailing bytes")]
    Trailing(usize),
    /// A frame header announced more than [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
}

/// Decodes with an allocation limit of `LIMIT` bytes.
fn decode_with<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<LIMIT>())
}

/// Encodes `value` with bincode.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for our types (no maps with
    // non-serializable keys, no custom errors), so a failure is a bug.
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("bincode encoding of a wire type failed")
}

/// Decodes a whole buffer as a `T`.
///
/// The allocation limit grows with the input: at least 64 times its
/// length, and at most [`DECODE_LIMIT`]. bincode allocates a container's
/// announced length before reading it, so without this a 12-byte body
/// announcing a 63 MiB string would reserve 63 MiB (found by fuzzing).
/// Decoded values take at most ~25 times their encoded size (a blank log
/// entry), so no honest input comes near the limit.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let decoded = match bytes.len() {
        0..=1024 => decode_with::<T, { 64 << 10 }>(bytes),
        1025..=16384 => decode_with::<T, { 1 << 20 }>(bytes),
        16385..=262_144 => decode_with::<T, { 16 << 20 }>(bytes),
        _ => decode_with::<T, DECODE_LIMIT>(bytes),
    };
    let (value, used) = decoded.map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Encodes `value` as one length-prefixed frame.
pub fn frame<T: Serialize>(value: &T) -> Vec<u8> {
    let body = encode(value);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reassembles frames from arbitrarily split chunks of a byte stream.
///
/// Taking frames out only advances a read offset; consumed bytes are
/// dropped once per [`FrameReader::push`], so splitting a chunk of B bytes
/// into n frames costs O(B), not O(n·B).
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already taken as frames.
    start: usize,
}

impl FrameReader {
    /// A reader with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Returns the next complete frame decoded as `T`, or `Ok(None)` when
    /// more bytes are needed.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        let buf = &self.buf[self.start..];
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(CodecError::FrameTooLarge(len));
        }
        if buf.len() < 4 + len {
            return Ok(None);
        }
        let value = decode(&buf[4..4 + len]);
        self.start += 4 + len;
        value.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChangeEvent, Command, SetBatch};

    #[test]
    fn round_trip_and_trailing_bytes() {
        let c = Command::SetBatch(SetBatch {
            epoch: 3,
            sets: vec![(7, true), (9, false)],
        });
        let bytes = encode(&c);
        assert_eq!(decode::<Command>(&bytes).unwrap(), c);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode::<Command>(&longer),
            Err(CodecError::Trailing(1))
        ));
        assert!(decode::<Command>(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode::<Command>(&[0xff; 16]).is_err());
    }

    /// Everything that goes into a raft log or snapshot must round-trip
    /// through bincode: a type that does not (an internally tagged enum,
    /// say) would be a fatal storage error at the first write.
    #[test]
    fn every_logged_type_round_trips() {
        use crate::meta::*;
        use crate::{Restore, ShardDescriptor};
        let record = ShardRecord {
            descriptor: ShardDescriptor {
                shard: 1,
                start: 0,
                end: 10,
                epoch: 1,
            },
            replicas: vec![1, 2],
            leader: Some(1),
        };
        let node = NodeRecord {
            id: 1,
            addr: "h:1".into(),
            state: NodeState::Draining,
        };
        let kinds = [
            OperationKind::RemoveNode { node: 1 },
            OperationKind::MoveReplica {
                shard: 1,
                from: 1,
                to: 2,
            },
            OperationKind::Restore {
                backup_created_ms: 5,
            },
        ];
        let mut commands = vec![
            Command::SetBatch(SetBatch {
                epoch: 1,
                sets: vec![(1, true)],
            }),
            Command::Restore(Restore {
                epoch: 1,
                bitmap: vec![1, 2, 3],
            }),
            Command::Barrier,
            Command::Meta(MetaCommand::Init {
                grid: Grid {
                    boxes: 10,
                    chunk_size: 5,
                },
                nodes: vec![node.clone()],
                shards: vec![record.clone()],
            }),
            Command::Meta(MetaCommand::AddNode { addr: "h:2".into() }),
            Command::Meta(MetaCommand::SetNodeState {
                node: 1,
                state: NodeState::Removed,
            }),
            Command::Meta(MetaCommand::SetReplicas {
                shard: 1,
                replicas: vec![2],
            }),
            Command::Meta(MetaCommand::LeaderHints {
                hints: vec![(1, 2)],
            }),
            Command::Meta(MetaCommand::OperationStep {
                id: 3,
                step: "x".into(),
            }),
            Command::Meta(MetaCommand::EndOperation { id: 3 }),
            Command::Meta(MetaCommand::RecordSplit {
                parent: record.descriptor.clone(),
                child: record.clone(),
            }),
            Command::Meta(MetaCommand::RecordMerge {
                left: record.descriptor.clone(),
                right: 2,
            }),
            Command::Split(crate::Split {
                epoch: 1,
                at: 5,
                child: 2,
            }),
            Command::Freeze(crate::Freeze { epoch: 1, into: 1 }),
            Command::Thaw(crate::Thaw { epoch: 2 }),
            Command::Absorb(crate::Absorb {
                epoch: 1,
                right: record.descriptor.clone(),
                seq: 9,
                bitmap: vec![1],
            }),
        ];
        commands.extend(
            kinds
                .iter()
                .map(|k| Command::Meta(MetaCommand::BeginOperation { kind: k.clone() })),
        );
        for c in commands {
            assert_eq!(decode::<Command>(&encode(&c)).unwrap(), c);
        }
        let map = ShardMap {
            version: 3,
            grid: Some(Grid {
                boxes: 10,
                chunk_size: 5,
            }),
            nodes: [(1, node)].into(),
            next_node_id: 2,
            shards: [(1, record)].into(),
            operation: Some(Operation {
                id: 2,
                kind: kinds[0].clone(),
                step: "s".into(),
            }),
            next_shard_id: 7,
            retired: [5].into(),
            finished: Vec::new(),
        };
        assert_eq!(decode::<ShardMap>(&encode(&map)).unwrap(), map);
    }

    #[test]
    fn frames_survive_any_split() {
        let events: Vec<ChangeEvent> = (1..=5)
            .map(|seq| ChangeEvent::Changes {
                shard: 1,
                epoch: 1,
                seq,
                sets: vec![(seq as u32, true)],
            })
            .collect();
        let stream: Vec<u8> = events.iter().flat_map(frame).collect();
        for split in 1..stream.len() {
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(split) {
                r.push(chunk);
                while let Some(e) = r.next_frame::<ChangeEvent>().unwrap() {
                    got.push(e);
                }
            }
            assert_eq!(got, events);
        }
    }

    #[test]
    fn oversized_frame_is_refused() {
        let mut r = FrameReader::new();
        r.push(&(u32::MAX).to_le_bytes());
        assert!(matches!(
            r.next_frame::<ChangeEvent>(),
            Err(CodecError::FrameTooLarge(_))
        ));
    }

    #[test]
    fn a_small_body_cannot_announce_a_huge_allocation() {
        // Found by fuzzing (then in a snapshot id): a few bytes that
        // announce 63 MiB. Refused by the size-tied limit, not allocated.
        let snapshot = crate::raft::InstallSnapshot {
            vote: openraft::Vote::new_committed(1, 1),
            meta: Default::default(),
            data: Vec::new(),
        };
        let mut body = encode(&snapshot);
        assert_eq!(body.pop(), Some(0), "the empty data's length ends the body");
        body.extend([0xfc, 0, 0, 0xf0, 0x03]);
        // Bytes are read one by one against the body (serde preallocates
        // at most a little), so this fails at the body's end.
        let err = decode::<crate::raft::InstallSnapshot>(&body).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("LimitExceeded") || err.contains("UnexpectedEnd"),
            "{err}"
        );
    }

    #[test]
    fn many_frames_in_one_push() {
        let mut stream = Vec::new();
        for seq in 0..10_000u64 {
            stream.extend(frame(&ChangeEvent::Progress {
                shard: 1,
                epoch: 1,
                seq,
            }));
        }
        let mut reader = FrameReader::new();
        reader.push(&stream);
        for seq in 0..10_000u64 {
            assert_eq!(
                reader.next_frame::<ChangeEvent>().unwrap(),
                Some(ChangeEvent::Progress {
                    shard: 1,
                    epoch: 1,
                    seq
                })
            );
        }
        assert_eq!(reader.next_frame::<ChangeEvent>().unwrap(), None);
        reader.push(
            &frame(&ChangeEvent::Progress {
                shard: 1,
                epoch: 1,
                seq: 7,
            })[..3],
        );
        assert_eq!(reader.next_frame::<ChangeEvent>().unwrap(), None);
    }
}
