//! Valid values the seed corpora are built from: bitmaps with every
//! croaring container kind, shard states and their real snapshot bytes.

use checkraft_node::state::ShardState;
use checkraft_proto::ShardDescriptor;
use croaring::Bitmap;

/// Bitmaps in `[start, end)` covering croaring's container kinds: empty,
/// array (sparse), bitset (dense), run (ranges), several 2^16-blocks.
pub fn bitmaps(start: u32, end: u32) -> Vec<Bitmap> {
    let span = end - start;
    let mut sparse = Bitmap::new();
    for i in (0..span).step_by(997) {
        sparse.add(start + i);
    }
    let mut dense = Bitmap::new();
    for i in (0..span.min(20_000)).filter(|i| i % 3 != 0) {
        dense.add(start + i);
    }
    let mut runs = Bitmap::new();
    runs.add_range(start..start + span / 4);
    runs.add_range(start + span / 2..start + span / 2 + span / 8);
    runs.add(end - 1);
    runs.run_optimize();
    let mut mixed = sparse.clone();
    mixed.or_inplace(&runs);
    mixed.run_optimize();
    vec![
        Bitmap::new(),
        Bitmap::of(&[start]),
        sparse,
        dense,
        runs,
        mixed,
    ]
}

/// A shard over `[start, end)` at `epoch`, with `bitmap` and `seq`.
pub fn shard(shard: u64, start: u32, end: u32, epoch: u64, bitmap: Bitmap, seq: u64) -> ShardState {
    let mut s = ShardState::new(ShardDescriptor {
        shard,
        start: u64::from(start),
        end: u64::from(end),
        epoch,
    });
    s.bitmap = bitmap;
    s.seq = seq;
    s
}

/// Real snapshot data (`ShardState::to_snapshot_bytes`) of shards with
/// each kind of bitmap.
pub fn snapshots() -> Vec<Vec<u8>> {
    bitmaps(100_000, 300_000)
        .into_iter()
        .enumerate()
        .map(|(i, b)| shard(3, 100_000, 300_000, 2, b, 40 + i as u64).to_snapshot_bytes())
        .collect()
}
