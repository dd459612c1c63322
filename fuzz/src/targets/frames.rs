//! `frames`: the change-stream frame decoder ([`FrameReader`] over
//! length-prefixed bincode [`ChangeEvent`]s) and what the gateway does
//! with each event (`checkraft_gateway::state::ShardState::apply`, which
//! decodes snapshot bitmaps with croaring).
//!
//! The input is a byte stream. It is fed twice, as `gateway/src/subscription.rs`
//! feeds it: once in one push, once in chunks of 1 to 64 bytes (sizes drawn
//! from a hash of the input, so a run is reproducible); after each push,
//! frames are taken until the reader needs more bytes or fails (the gateway
//! drops the stream at the first error). Both feedings must yield the same
//! events and end the same way.

use checkraft_gateway::state::{Applied, ShardState as GatewayShard};
use checkraft_node::state::portable_bytes;
use checkraft_proto::codec::{self, FrameReader};
use checkraft_proto::{ChangeEvent, ShardDescriptor};

use super::Target;
use crate::rng::Rng;
use crate::{feedback, samples};

/// The target.
pub const TARGET: Target = Target {
    name: "frames",
    about: "change-stream frames: FrameReader::next_frame::<ChangeEvent> in any split, then the gateway's ShardState::apply",
    run,
    seeds,
    dict: &[
        &[0x00, 0x00, 0x00, 0x00],
        &[0xff, 0xff, 0xff, 0xff],
        &[0x00, 0x00, 0x00, 0x04],
        &[0x01, 0x00, 0x00, 0x04],
        &[0x00],
        &[0x01],
        &[0x02],
        &[0x3a, 0x30, 0x00, 0x00],
        &[0x3b, 0x30],
    ],
    max_len: 64 << 10,
};

fn descriptor() -> ShardDescriptor {
    ShardDescriptor {
        shard: 4,
        start: 100_000,
        end: 300_000,
        epoch: 2,
    }
}

/// Feeds `chunks` to a reader the way the gateway does; returns the events
/// and how the stream ended.
fn feed<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<ChangeEvent>, Option<String>) {
    let mut reader = FrameReader::new();
    let mut events = Vec::new();
    for chunk in chunks {
        reader.push(chunk);
        loop {
            match reader.next_frame::<ChangeEvent>() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Some(e.to_string())),
            }
        }
    }
    (events, None)
}

/// Decodes the stream in one push and in small chunks, then applies the
/// events to a gateway shard state.
pub fn run(data: &[u8]) {
    let (events, end) = feed(std::iter::once(data));
    match &end {
        Some(e) => feedback::note_error("frames", e),
        None => feedback::note("clean"),
    }
    let mut rng = Rng::new(feedback::fnv(data));
    let mut chunks = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + rng.below(64)).min(rest.len());
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    let (split_events, split_end) = feed(chunks.into_iter());
    assert_eq!(
        split_events, events,
        "events depend on how the stream is split"
    );
    assert_eq!(split_end, end, "the end depends on how the stream is split");

    let mut state = GatewayShard::new(&descriptor());
    for event in &events {
        let applied = state.apply(event);
        feedback::note(match applied {
            Applied::Changes { .. } => "changes",
            Applied::Reset { .. } => "reset",
            Applied::Nothing => "nothing",
            Applied::Behind { .. } => "behind",
            Applied::ReplicaLags { .. } => "lags",
            Applied::Gap { .. } => "gap",
            Applied::Invalid(_) => "invalid",
            Applied::Split { .. } => "split",
            Applied::Marker { .. } => "marker",
            Applied::Merged { .. } => "merged",
        });
        if matches!(applied, Applied::Gap { .. } | Applied::Invalid(_)) {
            // The gateway drops the stream here.
            break;
        }
    }
}

/// Real streams: a snapshot then changes and progress markers, each kind
/// of bitmap, and a stream cut mid-frame.
pub fn seeds() -> Vec<Vec<u8>> {
    let d = descriptor();
    let mut out = Vec::new();
    for (i, bitmap) in samples::bitmaps(100_000, 300_000).into_iter().enumerate() {
        let mut stream = codec::frame(&ChangeEvent::Snapshot {
            shard: d.shard,
            epoch: d.epoch,
            seq: 10,
            start: d.start,
            end: d.end,
            bitmap: portable_bytes(&bitmap),
        });
        for seq in 11..14 {
            stream.extend(codec::frame(&ChangeEvent::Changes {
                shard: d.shard,
                epoch: d.epoch,
                seq,
                sets: (0..(seq as u32 - 10) * 2)
                    .map(|k| (100_000 + k * 331 + i as u32, k % 2 == 0))
                    .collect(),
            }));
        }
        stream.extend(codec::frame(&ChangeEvent::Progress {
            shard: d.shard,
            epoch: d.epoch,
            seq: 13,
        }));
        out.push(stream);
    }
    let changes: Vec<u8> = (1..=20)
        .flat_map(|seq| {
            codec::frame(&ChangeEvent::Changes {
                shard: d.shard,
                epoch: d.epoch,
                seq,
                sets: vec![(100_000 + seq as u32, true)],
            })
        })
        .collect();
    out.push(changes.clone());
    out.push(changes[..changes.len() - 3].to_vec());
    out.push(codec::frame(&ChangeEvent::Progress {
        shard: d.shard,
        epoch: d.epoch,
        seq: 0,
    }));
    out
}
