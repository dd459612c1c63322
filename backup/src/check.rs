//! What makes a decoded backup valid, beyond its bytes: a map with a grid,
//! one section per map shard with matching ids and ranges, a layout that
//! tiles the grid, and bitmaps that decode and stay in their ranges.
//!
//! [`layout`] is also how `backup` and `restore` check a live cluster's
//! map before relying on it.

use std::collections::BTreeSet;

use crate::error::{invalid, Context, Error, Result};
use checkraft_proto::{Grid, ShardDescriptor, ShardMap, MAX_BOX_END};
use croaring::Bitmap;

use crate::contents::{Backup, ShardBackup};
use crate::format::{decode_bitmap, Header, ShardSection};

/// Checks decoded parts and assembles the [`Backup`].
pub fn backup(header: Header, sections: Vec<ShardSection>) -> Result<Backup> {
    let grid = grid(&header.map)?;
    if let Some(op) = &header.map.operation {
        // The writer always clears it; a file carrying one was not written
        // by this crate (found by fuzzing).
        invalid!(
            "the backup's map records an operation in progress (#{}), which backups never hold",
            op.id
        );
    }
    for record in header.map.shards.values() {
        if let Some(r) = record
            .replicas
            .iter()
            .find(|r| !header.map.nodes.contains_key(r))
        {
            invalid!(
                "the backup's map places shard {} on node {r}, which is not in its node registry",
                record.descriptor.shard
            );
        }
    }
    let shards = sections
        .into_iter()
        .enumerate()
        .map(|(i, s)| shard(s, &header.map).with_context(|| format!("shard section {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    unique_ids(&shards)?;
    let descriptors: Vec<ShardDescriptor> = shards.iter().map(|s| s.descriptor.clone()).collect();
    layout(&descriptors, grid.boxes)?;
    Ok(Backup {
        created_ms: header.created_ms,
        grid,
        map: header.map,
        shards,
    })
}

/// Checks that `shards`, in the order given, are sorted by range start,
/// do not overlap, and cover exactly `[0, boxes)`.
pub fn layout(shards: &[ShardDescriptor], boxes: u64) -> Result<()> {
    for pair in shards.windows(2) {
        let (prev, d) = (&pair[0], &pair[1]);
        if d.start < prev.start {
            invalid!(
                "shard ranges are not sorted: {} comes after {}",
                show(d),
                show(prev)
            );
        }
        if d.start < prev.end {
            invalid!("shard ranges overlap: {} and {}", show(prev), show(d));
        }
    }
    let mut covered = 0;
    for d in shards {
        if d.start > covered {
            invalid!("no shard covers boxes [{covered}, {})", d.start);
        }
        covered = d.end;
    }
    if covered < boxes {
        invalid!("no shard covers boxes [{covered}, {boxes}) of the {boxes}-box grid");
    }
    if covered > boxes {
        invalid!("shards extend to box {covered}, past the {boxes}-box grid");
    }
    Ok(())
}

/// Checks that every bit of `bitmap` lies in `d`'s range.
pub fn within(bitmap: &Bitmap, d: &ShardDescriptor) -> Result<()> {
    for index in [bitmap.minimum(), bitmap.maximum()].into_iter().flatten() {
        if !d.contains(index) {
            invalid!("box {index} lies outside {}", show(d));
        }
    }
    Ok(())
}

/// `shard 3 [100, 200)`.
pub fn show(d: &ShardDescriptor) -> String {
    format!("shard {} [{}, {})", d.shard, d.start, d.end)
}

/// The backed-up map's grid, which must exist and fit the index space.
fn grid(map: &ShardMap) -> Result<Grid> {
    let grid = map
        .grid
        .ok_or_else(|| Error::Invalid("the backup's shard map has no grid".into()))?;
    if grid.boxes == 0 || grid.boxes > MAX_BOX_END {
        invalid!(
            "the backup's grid has an impossible size of {} boxes",
            grid.boxes
        );
    }
    Ok(grid)
}

/// One section, checked against the map and decoded.
fn shard(s: ShardSection, map: &ShardMap) -> Result<ShardBackup> {
    let d = s.descriptor;
    let id = d.shard;
    d.validate()
        .map_err(|e| Error::Invalid(format!("shard {id}: invalid descriptor: {e}")))?;
    let record = map
        .shards
        .get(&id)
        .ok_or_else(|| Error::Invalid(format!("shard {id} is not in the backup's map")))?;
    let m = &record.descriptor;
    if (m.shard, m.start, m.end, m.epoch) != (id, d.start, d.end, d.epoch) {
        invalid!(
            "{} does not match the backup's map, which has {}",
            show(&d),
            show(m)
        );
    }
    let bitmap = decode_bitmap(&s.bitmap).with_context(|| format!("shard {id}: bitmap"))?;
    within(&bitmap, &d).with_context(|| format!("shard {id}: bitmap"))?;
    Ok(ShardBackup {
        descriptor: d,
        seq: s.seq,
        snapshot_id: s.snapshot_id,
        last_log_index: s.last_log_index,
        bitmap,
    })
}

/// No shard id twice.
fn unique_ids(shards: &[ShardBackup]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for s in shards {
        if !seen.insert(s.descriptor.shard) {
            invalid!("shard {} appears twice", s.descriptor.shard);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use checkraft_proto::ShardRecord;
    use croaring::Portable;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::contents::samples;
    use crate::format;

    fn d(shard: u64, start: u64, end: u64) -> ShardDescriptor {
        ShardDescriptor {
            shard,
            start,
            end,
            epoch: 1,
        }
    }

    /// A valid header and sections for three shards over 1000 boxes.
    fn parts() -> (Header, Vec<ShardSection>) {
        let layout = vec![d(1, 0, 333), d(2, 333, 700), d(3, 700, 1000)];
        let map = samples::map(1000, &layout, "127.0.0.1:7001");
        let sections = layout
            .iter()
            .map(|d| ShardSection {
                descriptor: d.clone(),
                seq: 1,
                snapshot_id: "s".into(),
                last_log_index: 1,
                bitmap: Bitmap::of(&[d.start as u32, d.end as u32 - 1]).serialize::<Portable>(),
            })
            .collect();
        (
            Header {
                created_ms: 1,
                tool: "test".into(),
                map,
            },
            sections,
        )
    }

    /// The error reading a file made of these parts.
    fn rejected(header: &Header, sections: &[ShardSection]) -> String {
        let mut bytes = Vec::new();
        format::write_parts(&mut bytes, header, sections).unwrap();
        format!(
            "{:#}",
            format::read(bytes.as_slice()).expect_err("invalid backup accepted")
        )
    }

    #[test]
    fn valid_parts_pass() {
        let (h, s) = parts();
        let mut bytes = Vec::new();
        format::write_parts(&mut bytes, &h, &s).unwrap();
        assert_eq!(format::read(bytes.as_slice()).unwrap().boxes_checked(), 6);
    }

    #[test]
    fn bitmaps_that_do_not_decode_are_rejected() {
        let (h, mut s) = parts();
        s[1].bitmap = vec![0x3a, 0x30, 0, 0, 9, 9, 9];
        let e = rejected(&h, &s);
        assert!(
            e.contains("shard 2: bitmap: not valid croaring Portable"),
            "{e}"
        );
    }

    #[test]
    fn bits_outside_the_shard_are_rejected() {
        let (h, mut s) = parts();
        s[2].bitmap = Bitmap::of(&[699, 800]).serialize::<Portable>();
        let e = rejected(&h, &s);
        assert!(
            e.contains("shard 3: bitmap: box 699 lies outside shard 3 [700, 1000)"),
            "{e}"
        );
        s[2].bitmap = Bitmap::of(&[1000]).serialize::<Portable>();
        assert!(rejected(&h, &s).contains("box 1000 lies outside"));
    }

    #[test]
    fn overlapping_ranges_are_rejected() {
        let (mut h, mut s) = parts();
        for (i, r) in [(1, (0, 400)), (2, (333, 700))] {
            h.map.shards.get_mut(&i).unwrap().descriptor = d(i, r.0, r.1);
            s[i as usize - 1].descriptor = d(i, r.0, r.1);
            s[i as usize - 1].bitmap = Bitmap::new().serialize::<Portable>();
        }
        assert!(rejected(&h, &s).contains("shard ranges overlap"));
    }

    #[test]
    fn unsorted_ranges_are_rejected() {
        let (h, mut s) = parts();
        s.swap(0, 1);
        assert!(rejected(&h, &s).contains("not sorted"));
    }

    #[test]
    fn gaps_and_short_or_long_coverage_are_rejected() {
        let (mut h, mut s) = parts();
        s[0].descriptor.end = 300;
        s[0].bitmap = Bitmap::new().serialize::<Portable>();
        h.map.shards.get_mut(&1).unwrap().descriptor.end = 300;
        assert!(rejected(&h, &s).contains("no shard covers boxes [300, 333)"));
        let (mut h, s) = parts();
        h.map.grid.as_mut().unwrap().boxes = 1200;
        assert!(rejected(&h, &s).contains("no shard covers boxes [1000, 1200)"));
        h.map.grid.as_mut().unwrap().boxes = 900;
        assert!(rejected(&h, &s).contains("past the 900-box grid"));
    }

    #[test]
    fn sections_must_match_the_map() {
        let (h, mut s) = parts();
        s[1].descriptor.end = 701;
        assert!(rejected(&h, &s).contains("does not match the backup's map"));
        let (mut h, mut s) = parts();
        let record = h.map.shards.remove(&3).unwrap();
        h.map.shards.insert(
            9,
            ShardRecord {
                descriptor: d(9, 700, 1000),
                ..record
            },
        );
        s[2].descriptor.shard = 4;
        assert!(rejected(&h, &s).contains("shard 4 is not in the backup's map"));
        let (h, mut s) = parts();
        s[2].descriptor.epoch = 0;
        assert!(rejected(&h, &s).contains("invalid descriptor"));
        let (h, mut s) = parts();
        s[2].descriptor.epoch = 2;
        assert!(rejected(&h, &s).contains("does not match the backup's map"));
        let (mut h, s) = parts();
        h.map.shards.get_mut(&1).unwrap().replicas.push(77);
        assert!(rejected(&h, &s).contains("node 77, which is not in its node registry"));
    }

    #[test]
    fn duplicate_ids_and_missing_grid_are_rejected() {
        let (mut h, mut s) = parts();
        h.map.shards.remove(&3);
        h.map.shards.insert(0, h.map.shards[&1].clone());
        s.pop();
        s.insert(0, s[0].clone());
        assert!(rejected(&h, &s).contains("shard 1 appears twice"));
        let (mut h, s) = parts();
        h.map.grid = None;
        assert!(rejected(&h, &s).contains("no grid"));
    }

    #[test]
    fn layout_accepts_random_tilings() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in 1..20 {
            let l = samples::layout(&mut rng, 10_000, n);
            layout(&l, 10_000).unwrap();
        }
        layout(&[d(1, 0, MAX_BOX_END)], MAX_BOX_END).unwrap();
    }
}
