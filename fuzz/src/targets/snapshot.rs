//! `snapshot`: the snapshot decoders: bincode [`ShardSnapshot`] plus
//! croaring `Bitmap::try_deserialize::<Portable>`, as a node loads them
//! (`ShardState::from_snapshot_bytes`, `node/src/state.rs`), as they are
//! stored (`StoredSnapshot`, `node/src/storage/snapshot_store.rs`), as
//! `raftctl backup` downloads them ([`SnapshotDownload`]) and as shard
//! reads return them ([`ShardRead`]); the metadata group's snapshot
//! (`MetaState::from_snapshot_bytes`); and raw `Portable` bitmap bytes.
//!
//! Besides "no panic": a bitmap croaring accepts must serialize and
//! deserialize back to an equal bitmap, and a loaded shard snapshot must
//! encode back to a snapshot that loads to the same state.

use checkraft_node::meta_state::MetaState;
use checkraft_node::state::{decode_bitmap, portable_bytes, ShardState};
use checkraft_node::storage::StoredSnapshot;
use checkraft_proto::raft::{SnapshotMeta, StoredMembership};
use checkraft_proto::{codec, ShardRead, ShardSnapshot, SnapshotDownload, SnapshotInfo};
use croaring::{Bitmap, Portable};
use openraft::{BasicNode, Membership};

use super::Target;
use crate::{feedback, samples};

/// The target.
pub const TARGET: Target = Target {
    name: "snapshot",
    about: "snapshot decoders: ShardSnapshot/StoredSnapshot/SnapshotDownload/ShardRead bincode + croaring Portable, meta snapshots, raw Portable bitmaps",
    run,
    seeds,
    dict: &[
        // croaring Portable cookies: SERIAL_COOKIE_NO_RUNCONTAINER, SERIAL_COOKIE.
        &[0x3a, 0x30, 0x00, 0x00],
        &[0x3b, 0x30],
        &[0xff, 0xff],
        &[0x00, 0x10],
        &[0x01, 0x00],
        &[0xfc, 0xff, 0xff, 0xff, 0x7f],
        &[0x01, 0x00, 0x00, 0x00],
    ],
    max_len: 256 << 10,
};

/// Checks a bitmap croaring accepted from untrusted bytes.
fn check_bitmap(bitmap: &Bitmap) {
    let bytes = bitmap.serialize::<Portable>();
    let back = Bitmap::try_deserialize::<Portable>(&bytes)
        .expect("croaring's own serialization of an accepted bitmap deserializes");
    assert_eq!(&back, bitmap, "an accepted bitmap does not round-trip");
    let card = bitmap.cardinality();
    assert_eq!(card == 0, bitmap.minimum().is_none());
    if let (Some(min), Some(max)) = (bitmap.minimum(), bitmap.maximum()) {
        assert!(min <= max && bitmap.contains(min) && bitmap.contains(max));
        assert!(card <= u64::from(max - min) + 1);
    }
    let mut copy = bitmap.clone();
    copy.run_optimize();
    assert_eq!(&copy, bitmap, "run_optimize changed the set");
}

/// Loads `data` as a shard snapshot; on success checks that it re-encodes
/// to a snapshot that loads to the same state.
fn shard_snapshot(tag: &str, data: &[u8]) {
    let loaded = ShardState::from_snapshot_bytes(data);
    feedback::note_result(tag, &loaded);
    if let Ok(state) = loaded {
        check_bitmap(&state.bitmap);
        let again = ShardState::from_snapshot_bytes(&state.to_snapshot_bytes())
            .expect("a loaded snapshot re-encodes to one that loads");
        assert_eq!(again.bitmap, state.bitmap);
        assert_eq!(
            (&again.descriptor, again.seq),
            (&state.descriptor, state.seq)
        );
        let bits_outside = [state.bitmap.minimum(), state.bitmap.maximum()]
            .into_iter()
            .flatten()
            .any(|i| !state.descriptor.contains(i));
        feedback::note(if bits_outside {
            "bits outside range"
        } else {
            "in range"
        });
    }
}

/// Decodes `data` with every snapshot decoder.
pub fn run(data: &[u8]) {
    shard_snapshot("shard", data);
    feedback::note_result("meta", &MetaState::from_snapshot_bytes(data));
    if let Ok(stored) = codec::decode::<StoredSnapshot>(data) {
        feedback::note("stored");
        shard_snapshot("stored shard", &stored.data);
    }
    if let Ok(download) = codec::decode::<SnapshotDownload>(data) {
        feedback::note("download");
        if let Ok(b) = decode_bitmap(&download.snapshot.bitmap) {
            check_bitmap(&b);
        }
    }
    if let Ok(read) = codec::decode::<ShardRead>(data) {
        feedback::note("read");
        if let Ok(b) = decode_bitmap(&read.bitmap) {
            check_bitmap(&b);
        }
    }
    let raw = Bitmap::try_deserialize::<Portable>(data);
    feedback::note(if raw.is_some() { "raw ok" } else { "raw bad" });
    if let Some(b) = raw {
        check_bitmap(&b);
    }
}

/// Real snapshots of every bitmap kind, in every envelope, and the raw
/// bitmaps.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = samples::snapshots();
    let bitmaps = samples::bitmaps(100_000, 300_000);
    out.extend(bitmaps.iter().map(portable_bytes));
    let log_id = checkraft_proto::raft::log_id(3, 1, 77);
    let membership = Membership::new(
        vec![[1, 2, 3].into()],
        [1, 2, 3]
            .map(|i| (i, BasicNode::new(format!("127.0.0.1:700{i}"))))
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .expect("a valid membership");
    for data in samples::snapshots().into_iter().take(3) {
        out.push(codec::encode(&StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(log_id),
                last_membership: StoredMembership::new(Some(log_id), membership.clone()),
            },
            data,
        }));
    }
    let state = samples::shard(3, 100_000, 300_000, 2, bitmaps[5].clone(), 9);
    out.push(codec::encode(&SnapshotDownload {
        info: SnapshotInfo {
            snapshot_id: "3-1-77-9".into(),
            last_log_id: Some(log_id),
            seq: 9,
            bytes: 100,
        },
        snapshot: ShardSnapshot {
            version: 1,
            descriptor: state.descriptor.clone(),
            seq: 9,
            bitmap: portable_bytes(&state.bitmap),
            reshape: Default::default(),
        },
    }));
    out.push(codec::encode(&ShardRead {
        descriptor: state.descriptor.clone(),
        seq: 9,
        applied_index: 80,
        start: 150_000,
        end: 200_000,
        bitmap: state.read_range(150_000, 200_000),
        reshape: Default::default(),
    }));
    let mut meta = MetaState::default();
    let http_seeds = super::http::seeds();
    for body in &http_seeds {
        if let Ok(c) = serde_json::from_slice::<checkraft_proto::MetaCommand>(body) {
            meta.apply(&c);
        }
    }
    out.push(meta.to_snapshot_bytes());
    out
}
