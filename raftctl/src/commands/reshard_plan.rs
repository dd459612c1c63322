//! Pure planning for `raftctl reshard --shards N`: which split or merge
//! comes next, so that N shards of roughly equal size remain. No I/O; the
//! same rule plans the whole change up front (for `--json` and the
//! progress bar) and picks each step from the live map (so an interrupted
//! run, rerun, continues from whatever the map records).

use checkraft_proto::ShardDescriptor;

/// One step of a reshard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Split the shard `[start, end)` at `at`.
    Split {
        /// The shard's id (when planned from the live map).
        shard: u64,
        /// Its first box.
        start: u64,
        /// One past its last box.
        end: u64,
        /// The split point.
        at: u64,
    },
    /// Merge the adjacent shards `[start, mid)` and `[mid, end)`.
    Merge {
        /// The left shard's id (when planned from the live map).
        left: u64,
        /// The right shard's id.
        right: u64,
        /// The left shard's first box.
        start: u64,
        /// Where the right one starts.
        mid: u64,
        /// One past the right one's last box.
        end: u64,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Split {
                shard,
                start,
                end,
                at,
            } => write!(f, "split shard {shard} [{start}, {end}) at {at}"),
            Step::Merge {
                left,
                right,
                start,
                mid,
                end,
            } => write!(
                f,
                "merge shard {right} [{mid}, {end}) into shard {left} [{start}, {mid})"
            ),
        }
    }
}

/// The chunk boundary nearest the middle of `[start, end)`, strictly
/// inside it; `None` when the range holds a single chunk.
pub fn middle(start: u64, end: u64, chunk_size: u32) -> Option<u64> {
    let chunk = u64::from(chunk_size.max(1));
    let first = (start / chunk + 1) * chunk;
    if first >= end {
        return None;
    }
    let mid = start + (end - start) / 2;
    let down = (mid / chunk) * chunk;
    let up = down + chunk;
    let pick = if mid - down <= up - mid { down } else { up };
    let last = ((end - 1) / chunk) * chunk;
    Some(pick.clamp(first, last))
}

/// The next step from `shards` (any order) toward `target` shards: split
/// the largest splittable shard at its middle, or merge the adjacent pair
/// with the fewest boxes together; `None` when there are `target` shards
/// (or no step can get closer).
pub fn next_step(shards: &[ShardDescriptor], target: usize, chunk_size: u32) -> Option<Step> {
    let mut sorted: Vec<&ShardDescriptor> = shards.iter().collect();
    sorted.sort_by_key(|d| d.start);
    if sorted.len() < target {
        sorted
            .iter()
            .filter_map(|d| middle(d.start, d.end, chunk_size).map(|at| (d, at)))
            // Largest first; the leftmost of equals.
            .max_by_key(|(d, _)| (d.end - d.start, std::cmp::Reverse(d.start)))
            .map(|(d, at)| Step::Split {
                shard: d.shard,
                start: d.start,
                end: d.end,
                at,
            })
    } else if sorted.len() > target {
        sorted
            .windows(2)
            .filter(|w| w[0].end == w[1].start)
            .min_by_key(|w| (w[1].end - w[0].start, w[0].start))
            .map(|w| Step::Merge {
                left: w[0].shard,
                right: w[1].shard,
                start: w[0].start,
                mid: w[1].start,
                end: w[1].end,
            })
    } else {
        None
    }
}

/// The whole plan from `shards` to `target`, simulated (ids of shards
/// born on the way are unknown: 0).
pub fn plan(shards: &[ShardDescriptor], target: usize, chunk_size: u32) -> Vec<Step> {
    let mut layout: Vec<ShardDescriptor> = shards.to_vec();
    let mut steps = Vec::new();
    while let Some(step) = next_step(&layout, target, chunk_size) {
        match &step {
            Step::Split { start, at, end, .. } => {
                layout.retain(|d| d.start != *start);
                for (s, e) in [(*start, *at), (*at, *end)] {
                    layout.push(ShardDescriptor {
                        shard: 0,
                        start: s,
                        end: e,
                        epoch: 1,
                    });
                }
            }
            Step::Merge {
                start, mid, end, ..
            } => {
                layout.retain(|d| d.start != *start && d.start != *mid);
                layout.push(ShardDescriptor {
                    shard: 0,
                    start: *start,
                    end: *end,
                    epoch: 1,
                });
            }
        }
        steps.push(step);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(bounds: &[u64]) -> Vec<ShardDescriptor> {
        bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| ShardDescriptor {
                shard: i as u64 + 1,
                start: w[0],
                end: w[1],
                epoch: 1,
            })
            .collect()
    }

    #[test]
    fn middle_is_a_chunk_boundary_inside() {
        assert_eq!(middle(0, 1000, 100), Some(500));
        assert_eq!(middle(0, 1050, 100), Some(500));
        assert_eq!(middle(0, 100, 100), None);
        assert_eq!(middle(0, 150, 100), Some(100));
        assert_eq!(middle(300, 500, 100), Some(400));
    }

    #[test]
    fn doubling_splits_every_shard_once_in_halves() {
        let steps = plan(&layout(&[0, 400, 800]), 4, 100);
        assert_eq!(steps.len(), 2);
        assert!(steps
            .iter()
            .all(|s| matches!(s, Step::Split { at, start, .. } if *at == start + 200)));
    }

    #[test]
    fn shrinking_merges_neighbours_into_equal_sizes() {
        let steps = plan(&layout(&[0, 100, 200, 300, 400]), 2, 100);
        assert_eq!(steps.len(), 2);
        let mut layout = layout(&[0, 100, 200, 300, 400]);
        for s in &steps {
            if let Step::Merge {
                start, mid, end, ..
            } = s
            {
                layout.retain(|d| d.start != *start && d.start != *mid);
                layout.push(ShardDescriptor {
                    shard: 0,
                    start: *start,
                    end: *end,
                    epoch: 1,
                });
            }
        }
        layout.sort_by_key(|d| d.start);
        assert_eq!(
            layout.iter().map(|d| (d.start, d.end)).collect::<Vec<_>>(),
            vec![(0, 200), (200, 400)]
        );
    }

    #[test]
    fn no_step_when_done_or_impossible() {
        assert!(plan(&layout(&[0, 100, 200]), 2, 100).is_empty());
        // Two one-chunk shards cannot become three.
        assert!(plan(&layout(&[0, 100, 200]), 3, 100).is_empty());
    }
}
