//! What a backup holds, in memory: [`Backup`] and its [`ShardBackup`]s.
//!
//! A `Backup` read from a file has passed every check of
//! [`crate::check`]; one built by [`crate::take`] is checked by reading its file
//! back before the file takes its final name.

use checkraft_proto::{Grid, ShardDescriptor, ShardMap};
use croaring::Bitmap;

/// A whole backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// When the backup started, ms since the Unix epoch.
    pub created_ms: u64,
    /// The source cluster's grid (also in `map`).
    pub grid: Grid,
    /// The source cluster's shard map, `operation` cleared.
    pub map: ShardMap,
    /// Every shard, in ascending range order.
    pub shards: Vec<ShardBackup>,
}

/// One shard's snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardBackup {
    /// The shard's descriptor as its snapshot recorded it.
    pub descriptor: ShardDescriptor,
    /// The change number the snapshot reflects.
    pub seq: u64,
    /// openraft's snapshot id.
    pub snapshot_id: String,
    /// The last raft log index the snapshot covers (0 when none).
    pub last_log_index: u64,
    /// The checked boxes, by absolute index.
    pub bitmap: Bitmap,
}

impl Backup {
    /// Checked boxes over all shards.
    pub fn boxes_checked(&self) -> u64 {
        self.shards.iter().map(|s| s.bitmap.cardinality()).sum()
    }
}

#[cfg(any(test, feature = "samples"))]
pub mod samples {
    //! Backups with random contents, for the tests of every file.

    use std::collections::BTreeMap;

    use checkraft_proto::{NodeRecord, NodeState, ShardRecord};
    use rand::Rng;

    use super::*;

    /// A layout of `n` shards (ids 1..=n) with random boundaries covering
    /// `[0, boxes)`, and random epochs.
    pub fn layout(rng: &mut impl Rng, boxes: u64, n: u64) -> Vec<ShardDescriptor> {
        let mut cuts = std::collections::BTreeSet::new();
        while (cuts.len() as u64) < n - 1 {
            cuts.insert(rng.gen_range(1..boxes));
        }
        let bounds: Vec<u64> = std::iter::once(0)
            .chain(cuts)
            .chain(std::iter::once(boxes))
            .collect();
        bounds
            .windows(2)
            .zip(1..)
            .map(|(w, shard)| ShardDescriptor {
                shard,
                start: w[0],
                end: w[1],
                epoch: rng.gen_range(1..5),
            })
            .collect()
    }

    /// A random bitmap within `[start, end)`: scattered bits and a few runs.
    pub fn bitmap(rng: &mut impl Rng, start: u64, end: u64) -> Bitmap {
        let mut b = Bitmap::new();
        let span = end - start;
        for _ in 0..rng.gen_range(0..=span.min(300)) {
            b.add((start + rng.gen_range(0..span)) as u32);
        }
        for _ in 0..rng.gen_range(0..3) {
            let a = start + rng.gen_range(0..span);
            let z = (a + rng.gen_range(1..=200)).min(end);
            b.add_range(a as u32..z as u32);
        }
        b
    }

    /// A map of one node (at `addr`) leading every shard of `layout`.
    pub fn map(boxes: u64, layout: &[ShardDescriptor], addr: &str) -> ShardMap {
        let node = NodeRecord {
            id: 1,
            addr: addr.to_string(),
            state: NodeState::Up,
        };
        let shards: BTreeMap<_, _> = layout
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
            .collect();
        ShardMap {
            version: 7,
            grid: Some(Grid {
                boxes,
                chunk_size: 64,
            }),
            nodes: BTreeMap::from([(1, node)]),
            next_node_id: 2,
            shards,
            operation: None,
            next_shard_id: 0,
            retired: Default::default(),
            finished: Vec::new(),
        }
    }

    /// A valid backup of `layout` with random bitmaps.
    pub fn backup(rng: &mut impl Rng, boxes: u64, layout: &[ShardDescriptor]) -> Backup {
        let map = map(boxes, layout, "127.0.0.1:7001");
        let shards = layout
            .iter()
            .map(|d| ShardBackup {
                descriptor: d.clone(),
                seq: rng.gen_range(0..1000),
                snapshot_id: format!("1-{}-{}", d.shard, d.epoch),
                last_log_index: rng.gen_range(0..1000),
                bitmap: bitmap(rng, d.start, d.end),
            })
            .collect();
        Backup {
            created_ms: 1_700_000_000_123,
            grid: map.grid.unwrap(),
            map,
            shards,
        }
    }
}
