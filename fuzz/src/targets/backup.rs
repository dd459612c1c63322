//! `backup`: the backup-file parser of `raftctl verify`, `raftctl
//! restore` and the node's scheduled backups
//! ([`checkraft_backup::format::read`], with every check of
//! [`checkraft_backup::check`]).
//!
//! Every input is parsed twice: as it is, which exercises the magic, the
//! version, the length limits, truncation and the crc32s; and with its
//! section and final crc32s recomputed (walking the length fields as the
//! reader does), so that mutated bodies get past the checksums into the
//! bincode decoding, the map/section consistency checks and croaring. A
//! file that parses must write back (with the real writer) to a file that
//! parses to the same backup.

use std::collections::BTreeMap;

use checkraft_proto::{Grid, NodeRecord, NodeState, ShardDescriptor, ShardMap, ShardRecord};

use super::Target;
use crate::{feedback, samples};
use checkraft_backup::format;
use checkraft_backup::{Backup, ShardBackup};

/// The target.
pub const TARGET: Target = Target {
    name: "backup",
    about: "backup files: format::read as is, and with checksums fixed up",
    run,
    seeds,
    dict: &[
        b"CKRFTBK\0",
        &[0x01, 0x00, 0x00, 0x00],
        &[0x00, 0x00, 0x00, 0x01],
        &[0xff, 0xff, 0xff, 0xff],
        &[0x00, 0x00, 0x00, 0x04],
        &[0x3a, 0x30, 0x00, 0x00],
        &[0x3b, 0x30],
        &[0xfc, 0xff, 0xff, 0xff, 0x7f],
    ],
    max_len: 256 << 10,
};

/// Parses `data` as is and with fixed checksums.
pub fn run(data: &[u8]) {
    parse("raw", data);
    let mut fixed = data.to_vec();
    if fix_checksums(&mut fixed) && fixed != data {
        parse("fixed", &fixed);
    }
}

fn parse(tag: &str, data: &[u8]) {
    let read = format::read(data);
    match &read {
        Ok(_) => feedback::note(tag),
        Err(e) => feedback::note_error(tag, &format!("{e:#}")),
    }
    if let Ok(backup) = read {
        let mut again = Vec::new();
        format::write(&mut again, &backup, "fuzz").expect("writing to a Vec");
        let back = format::read(again.as_slice()).expect("a parsed backup writes back readable");
        assert_eq!(back, backup, "a parsed backup does not round-trip");
    }
}

/// Recomputes every section's crc32 and the final crc32 in place, walking
/// the section lengths from offset 12. False when not even the preamble is
/// there.
pub fn fix_checksums(data: &mut [u8]) -> bool {
    if data.len() < 12 + 4 {
        return false;
    }
    let u32_at = |d: &[u8], at: usize| u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
    let mut at = 12;
    // A section needs len (4) + body + crc (4), and the file a final crc.
    while at + 8 + 4 <= data.len() {
        let len = u32_at(data, at) as usize;
        let Some(end) = (at + 4).checked_add(len) else {
            break;
        };
        if end + 4 + 4 > data.len() {
            break;
        }
        let crc = crc32fast::hash(&data[at..end]);
        data[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        at = end + 4;
    }
    let crc = crc32fast::hash(&data[..at]);
    data[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    true
}

/// A valid backup of `n` shards tiling `[0, boxes)`.
fn backup(boxes: u32, n: u32, created_ms: u64) -> Backup {
    let step = boxes / n;
    let descriptors: Vec<ShardDescriptor> = (0..n)
        .map(|i| ShardDescriptor {
            shard: u64::from(i) + 1,
            start: u64::from(i * step),
            end: if i + 1 == n {
                u64::from(boxes)
            } else {
                u64::from((i + 1) * step)
            },
            epoch: 1 + u64::from(i % 3),
        })
        .collect();
    let nodes = BTreeMap::from([(
        1,
        NodeRecord {
            id: 1,
            addr: "127.0.0.1:7001".into(),
            state: NodeState::Up,
        },
    )]);
    let grid = Grid {
        boxes: u64::from(boxes),
        chunk_size: 1024,
    };
    let map = ShardMap {
        version: 12,
        grid: Some(grid),
        nodes,
        next_node_id: 2,
        next_shard_id: 0,
        retired: Default::default(),
        finished: Vec::new(),
        shards: descriptors
            .iter()
            .map(|d| {
                (
                    d.shard,
                    ShardRecord {
                        descriptor: d.clone(),
                        replicas: vec![1],
                        leader: Some(1),
                    },
                )
            })
            .collect(),
        operation: None,
    };
    let shards = descriptors
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let kinds = samples::bitmaps(d.start as u32, d.end as u32);
            ShardBackup {
                descriptor: d.clone(),
                seq: 100 + i as u64,
                snapshot_id: format!("2-1-{}-{}", 50 + i, d.shard),
                last_log_index: 50 + i as u64,
                bitmap: kinds[i % kinds.len()].clone(),
            }
        })
        .collect();
    Backup {
        created_ms,
        grid,
        map,
        shards,
    }
}

/// Files written by the real writer (`format::write`): one to eight
/// shards, every kind of bitmap.
pub fn seeds() -> Vec<Vec<u8>> {
    [(4096, 1), (8192, 2), (60_000, 4), (100_000, 6), (3000, 8)]
        .iter()
        .enumerate()
        .map(|(i, &(boxes, n))| {
            let mut out = Vec::new();
            format::write(
                &mut out,
                &backup(boxes, n, 1_700_000_000_000 + i as u64),
                "fuzz",
            )
            .expect("writing a valid backup to a Vec");
            out
        })
        .collect()
}
