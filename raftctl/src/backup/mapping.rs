//! Range mapping: the backup's shards onto the target cluster's shards.
//!
//! Bitmaps hold absolute box indices, so a box keeps its index whatever
//! shard holds it: a target shard's new state is the union, over the
//! backup's shards, of (backup bitmap ∩ target range). Target boxes no
//! backup shard covers end up unchecked. Before anything is sent,
//! [`check_fits`] refuses backups with boxes past the target grid and
//! [`check_preserved`] proves that every checked box landed somewhere.

use anyhow::{bail, Result};
use checkraft_backup::{Backup, ShardBackup};
use checkraft_proto::{Grid, ShardDescriptor};
use croaring::Bitmap;

/// Refuses a backup with checked boxes at indices the target grid lacks.
pub fn check_fits(backup: &Backup, grid: &Grid) -> Result<()> {
    let beyond: u64 = backup
        .shards
        .iter()
        .map(|s| count_from(&s.bitmap, grid.boxes))
        .sum();
    if beyond > 0 {
        let highest = backup
            .shards
            .iter()
            .filter_map(|s| s.bitmap.maximum())
            .max()
            .unwrap_or_default();
        bail!(
            "the backup has {beyond} checked boxes at indices >= {} \
             (the target grid's size; the highest is {highest}); \
             refusing to restore, nothing was changed",
            grid.boxes
        );
    }
    Ok(())
}

/// The new state of each target shard, in the order of `targets`.
pub fn remap(sources: &[ShardBackup], targets: &[ShardDescriptor]) -> Vec<Bitmap> {
    targets.iter().map(|t| gather(sources, t)).collect()
}

/// Refuses a mapping that lost or duplicated checked boxes (a target map
/// whose layout does not tile the grid would).
pub fn check_preserved(backup: &Backup, mapped: &[Bitmap]) -> Result<()> {
    let before = backup.boxes_checked();
    let after: u64 = mapped.iter().map(Bitmap::cardinality).sum();
    if before != after {
        bail!(
            "mapping the backup's {before} checked boxes onto the target layout gave {after}; \
             refusing to restore, nothing was changed"
        );
    }
    Ok(())
}

/// Union over `sources` of their bits in `target`'s range.
fn gather(sources: &[ShardBackup], target: &ShardDescriptor) -> Bitmap {
    let mut out = Bitmap::new();
    for s in sources.iter().filter(|s| overlaps(&s.descriptor, target)) {
        let d = &s.descriptor;
        if target.start <= d.start && d.end <= target.end {
            out.or_inplace(&s.bitmap);
        } else {
            out.or_inplace(&clip(&s.bitmap, target.start, target.end));
        }
    }
    out
}

/// The bits of `bitmap` in `[start, end)`.
fn clip(bitmap: &Bitmap, start: u64, end: u64) -> Bitmap {
    let Some(last) = end.checked_sub(1).filter(|&l| l >= start) else {
        return Bitmap::new();
    };
    let (Ok(first), Ok(last)) = (u32::try_from(start), u32::try_from(last)) else {
        return Bitmap::new();
    };
    let mut part = Bitmap::from_range(first..=last);
    part.and_inplace(bitmap);
    part
}

/// How many bits of `bitmap` are at `from` or above.
fn count_from(bitmap: &Bitmap, from: u64) -> u64 {
    match u32::try_from(from) {
        Ok(from) => bitmap.range_cardinality(from..),
        Err(_) => 0,
    }
}

fn overlaps(a: &ShardDescriptor, b: &ShardDescriptor) -> bool {
    a.start < b.end && b.start < a.end
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use checkraft_backup::contents::samples;

    /// Maps a random 3-shard backup onto a random `n`-shard layout of a
    /// grid of `target_boxes` and checks every box of both grids.
    fn check_mapping(rng: &mut StdRng, boxes: u64, n: u64, target_boxes: u64) {
        let source = samples::layout(rng, boxes, 3);
        let mut backup = samples::backup(rng, boxes, &source);
        backup
            .shards
            .iter_mut()
            .for_each(|s| s.bitmap.remove_range(target_boxes.min(boxes) as u32..));
        let targets = samples::layout(rng, target_boxes, n);
        let mapped = remap(&backup.shards, &targets);
        check_preserved(&backup, &mapped).unwrap();
        let all = Bitmap::fast_or(&backup.shards.iter().map(|s| &s.bitmap).collect::<Vec<_>>());
        for i in 0..boxes.max(target_boxes) as u32 {
            let holders: Vec<_> = targets
                .iter()
                .zip(&mapped)
                .filter(|(_, b)| b.contains(i))
                .collect();
            let expected = all.contains(i);
            assert_eq!(holders.len(), usize::from(expected), "box {i}");
            if let Some((t, _)) = holders.first() {
                assert!(t.contains(i), "box {i} mapped outside {t:?}");
            }
        }
    }

    #[test]
    fn three_shards_to_five_preserve_every_box() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..40 {
            let boxes = rng.gen_range(10..20_000);
            check_mapping(&mut rng, boxes, 5, boxes);
        }
    }

    #[test]
    fn three_shards_to_one_preserve_every_box() {
        let mut rng = StdRng::seed_from_u64(12);
        for _ in 0..40 {
            let boxes = rng.gen_range(10..20_000);
            check_mapping(&mut rng, boxes, 1, boxes);
        }
    }

    #[test]
    fn into_a_larger_grid_leaves_the_rest_unchecked() {
        let mut rng = StdRng::seed_from_u64(13);
        for _ in 0..20 {
            let boxes = rng.gen_range(10..10_000);
            let (n, target_boxes) = (rng.gen_range(1..7), boxes + rng.gen_range(1..5000));
            check_mapping(&mut rng, boxes, n, target_boxes);
        }
    }

    #[test]
    fn into_a_smaller_grid_works_when_the_bits_fit() {
        let mut rng = StdRng::seed_from_u64(14);
        for _ in 0..20 {
            let boxes = rng.gen_range(100..10_000);
            let (n, target_boxes) = (rng.gen_range(1..7), rng.gen_range(10..boxes));
            check_mapping(&mut rng, boxes, n, target_boxes);
        }
    }

    #[test]
    fn boxes_past_the_target_grid_are_refused() {
        let layout = [ShardDescriptor {
            shard: 1,
            start: 0,
            end: 1000,
            epoch: 1,
        }];
        let mut rng = StdRng::seed_from_u64(15);
        let mut backup = samples::backup(&mut rng, 1000, &layout);
        backup.shards[0].bitmap = Bitmap::of(&[5, 600, 999]);
        let grid = |boxes| Grid {
            boxes,
            chunk_size: 64,
        };
        check_fits(&backup, &grid(1000)).unwrap();
        check_fits(&backup, &grid(u64::from(u32::MAX) + 1)).unwrap();
        let e = check_fits(&backup, &grid(600)).unwrap_err().to_string();
        assert!(
            e.contains("2 checked boxes at indices >= 600") && e.contains("highest is 999"),
            "{e}"
        );
        assert!(e.contains("nothing was changed"));
    }

    #[test]
    fn clip_handles_the_index_space_edges() {
        let b = Bitmap::of(&[0, 7, u32::MAX]);
        assert_eq!(clip(&b, 0, 1 << 32).cardinality(), 3);
        assert_eq!(
            clip(&b, 1, 1 << 32).iter().collect::<Vec<_>>(),
            vec![7, u32::MAX]
        );
        assert_eq!(clip(&b, 0, 7).iter().collect::<Vec<_>>(), vec![0]);
        assert!(clip(&b, 5, 5).is_empty());
    }

    #[test]
    fn a_layout_with_a_hole_is_caught() {
        let layout = [ShardDescriptor {
            shard: 1,
            start: 0,
            end: 100,
            epoch: 1,
        }];
        let mut rng = StdRng::seed_from_u64(16);
        let mut backup = samples::backup(&mut rng, 100, &layout);
        backup.shards[0].bitmap = Bitmap::of(&[10, 60]);
        let holey = [ShardDescriptor {
            shard: 1,
            start: 0,
            end: 50,
            epoch: 1,
        }];
        let mapped = remap(&backup.shards, &holey);
        assert!(check_preserved(&backup, &mapped).is_err());
    }
}
