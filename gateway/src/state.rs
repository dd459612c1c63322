//! One shard's in-memory state, kept current from its change stream.
//!
//! [`ShardState::apply`] is the only way events change it, and it enforces
//! the ordering invariant: a `Changes` event applies only when its `seq` is
//! exactly `seq + 1`; an older one is a duplicate (ignored), a newer one is
//! a gap (the subscription must resubscribe from `seq`). A `Snapshot`
//! replaces everything when it is not older than what we hold.

use checkraft_proto::{BoxSet, ChangeEvent, ShardDescriptor, ShardId};
use croaring::{Bitmap, Portable};

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The event moved the state to its `seq`; `sets` changed values.
    Changes {
        /// The new `seq`.
        seq: u64,
        /// The boxes whose value changed, as the node reported them.
        sets: Vec<BoxSet>,
    },
    /// The state was replaced by a snapshot at `seq`.
    Reset {
        /// The snapshot's `seq`.
        seq: u64,
    },
    /// Already covered (duplicate, or a progress marker at or below our
    /// `seq`): nothing to do.
    Nothing,
    /// A progress marker ahead of us (`seq` is the replica's position):
    /// events are missing, resubscribe.
    Behind {
        /// Where the replica is.
        replica_seq: u64,
    },
    /// A progress marker below our position: the serving replica lags us.
    ReplicaLags {
        /// Where the replica is.
        replica_seq: u64,
    },
    /// A `Changes` event past `seq + 1`: events are missing, resubscribe.
    Gap {
        /// The event's `seq`.
        got: u64,
    },
    /// The event cannot be used (wrong shard, undecodable snapshot).
    Invalid(String),
    /// Change number `seq` split the shard: the state now ends at the
    /// child's start, and `child` holds the rest, at the same `seq`.
    Split {
        /// The split's change number.
        seq: u64,
        /// The child's state, loaded.
        child: ShardState,
    },
    /// Change number `seq` froze or thawed the shard: no box changed.
    Marker {
        /// The change number.
        seq: u64,
    },
    /// Change number `seq` merged the right neighbour in: the state now
    /// ends at `end`; no box changed value.
    Merged {
        /// The merge's change number.
        seq: u64,
        /// The absorbed shard.
        right: ShardId,
        /// Its final change number.
        right_seq: u64,
        /// Its first box.
        start: u64,
        /// One past its last box.
        end: u64,
    },
}

/// A shard's state as this gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardState {
    /// The shard's id.
    pub shard: ShardId,
    /// The shard's epoch as of the last event.
    pub epoch: u64,
    /// First box of the shard's range.
    pub start: u64,
    /// One past the last box of the shard's range.
    pub end: u64,
    /// The change number the bitmap reflects.
    pub seq: u64,
    /// True once the state reflects the shard (first event applied, or
    /// the shard's change stream confirmed an empty shard).
    pub loaded: bool,
    /// Checked boxes (absolute indices).
    pub bitmap: Bitmap,
    /// Set while the shard is frozen for a merge into this shard.
    pub frozen_into: Option<ShardId>,
}

impl ShardState {
    /// An empty, not yet loaded state for `descriptor`.
    pub fn new(descriptor: &ShardDescriptor) -> Self {
        Self {
            shard: descriptor.shard,
            epoch: descriptor.epoch,
            start: descriptor.start,
            end: descriptor.end,
            seq: 0,
            loaded: false,
            bitmap: Bitmap::new(),
            frozen_into: None,
        }
    }

    /// Applies one event of the shard's change stream.
    pub fn apply(&mut self, event: &ChangeEvent) -> Applied {
        match event {
            ChangeEvent::Changes {
                shard,
                epoch,
                seq,
                sets,
            } => {
                if *shard != self.shard {
                    return Applied::Invalid(format!("event of shard {shard}"));
                }
                if *seq <= self.seq {
                    self.loaded = true;
                    return Applied::Nothing;
                }
                if *seq != self.seq + 1 {
                    return Applied::Gap { got: *seq };
                }
                for &(index, checked) in sets {
                    if checked {
                        self.bitmap.add(index);
                    } else {
                        self.bitmap.remove(index);
                    }
                }
                self.seq = *seq;
                self.epoch = *epoch;
                self.loaded = true;
                Applied::Changes {
                    seq: *seq,
                    sets: sets.clone(),
                }
            }
            ChangeEvent::Snapshot {
                shard,
                epoch,
                seq,
                start,
                end,
                bitmap,
            } => {
                if *shard != self.shard {
                    return Applied::Invalid(format!("snapshot of shard {shard}"));
                }
                if *seq < self.seq && self.loaded {
                    return Applied::ReplicaLags { replica_seq: *seq };
                }
                let Some(decoded) = Bitmap::try_deserialize::<Portable>(bitmap) else {
                    return Applied::Invalid("undecodable snapshot bitmap".into());
                };
                let outside = decoded.minimum().is_some_and(|m| u64::from(m) < *start)
                    || decoded.maximum().is_some_and(|m| u64::from(m) >= *end);
                if outside {
                    return Applied::Invalid(format!(
                        "snapshot bitmap holds boxes outside its range [{start}, {end})"
                    ));
                }
                self.bitmap = decoded;
                self.seq = *seq;
                self.epoch = *epoch;
                self.start = *start;
                self.end = *end;
                self.loaded = true;
                Applied::Reset { seq: *seq }
            }
            ChangeEvent::Split {
                shard,
                epoch,
                seq,
                at,
                end,
                child,
            } => {
                if let Some(not_next) = self.check_next(*shard, *seq) {
                    return not_next;
                }
                if *at <= self.start || *at >= self.end || *end != self.end {
                    return Applied::Invalid(format!(
                        "split at {at}..{end} does not fit the shard's range [{}, {})",
                        self.start, self.end
                    ));
                }
                let last = (self.end - 1).min(u64::from(u32::MAX)) as u32;
                let mut moving = Bitmap::from_range(*at as u32..=last);
                moving.and_inplace(&self.bitmap);
                self.bitmap.andnot_inplace(&moving);
                self.end = *at;
                self.seq = *seq;
                self.epoch = *epoch;
                let child = ShardState {
                    shard: *child,
                    epoch: *epoch,
                    start: *at,
                    end: *end,
                    seq: *seq,
                    loaded: true,
                    bitmap: moving,
                    frozen_into: None,
                };
                Applied::Split { seq: *seq, child }
            }
            ChangeEvent::Frozen {
                shard,
                epoch,
                seq,
                into,
            } => {
                if let Some(not_next) = self.check_next(*shard, *seq) {
                    return not_next;
                }
                self.seq = *seq;
                self.epoch = *epoch;
                self.frozen_into = Some(*into);
                Applied::Marker { seq: *seq }
            }
            ChangeEvent::Thawed { shard, epoch, seq } => {
                if let Some(not_next) = self.check_next(*shard, *seq) {
                    return not_next;
                }
                self.seq = *seq;
                self.epoch = *epoch;
                self.frozen_into = None;
                Applied::Marker { seq: *seq }
            }
            ChangeEvent::Merged {
                shard,
                epoch,
                seq,
                right,
                start,
                end,
                right_seq,
                bitmap,
            } => {
                // A merge continues from the larger seq: not always + 1.
                if *shard != self.shard {
                    return Applied::Invalid(format!("event of shard {shard}"));
                }
                if *seq <= self.seq {
                    return Applied::Nothing;
                }
                if *seq != self.seq.max(*right_seq) + 1 {
                    return Applied::Gap { got: *seq };
                }
                if *start != self.end || *end <= *start {
                    return Applied::Invalid(format!(
                        "merge of [{start}, {end}) does not extend [{}, {})",
                        self.start, self.end
                    ));
                }
                let Some(bits) = Bitmap::try_deserialize::<Portable>(bitmap) else {
                    return Applied::Invalid("undecodable merge bitmap".into());
                };
                self.bitmap.or_inplace(&bits);
                self.end = *end;
                self.seq = *seq;
                self.epoch = *epoch;
                Applied::Merged {
                    seq: *seq,
                    right: *right,
                    right_seq: *right_seq,
                    start: *start,
                    end: *end,
                }
            }
            ChangeEvent::Progress {
                shard, epoch, seq, ..
            } => {
                if *shard != self.shard {
                    return Applied::Invalid(format!("progress of shard {shard}"));
                }
                if *seq > self.seq {
                    return Applied::Behind { replica_seq: *seq };
                }
                if *seq < self.seq {
                    return Applied::ReplicaLags { replica_seq: *seq };
                }
                // The replica vouches that nothing happened after our seq:
                // an empty shard is now known to be empty.
                self.epoch = *epoch;
                self.loaded = true;
                Applied::Nothing
            }
        }
    }

    /// `Some` answer when an event at `seq` is not the next one to apply.
    fn check_next(&mut self, shard: ShardId, seq: u64) -> Option<Applied> {
        if shard != self.shard {
            return Some(Applied::Invalid(format!("event of shard {shard}")));
        }
        if seq <= self.seq {
            self.loaded = true;
            return Some(Applied::Nothing);
        }
        if seq != self.seq + 1 {
            return Some(Applied::Gap { got: seq });
        }
        None
    }

    /// Whether box `index` is checked.
    pub fn contains(&self, index: u64) -> bool {
        u32::try_from(index).is_ok_and(|i| self.bitmap.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor() -> ShardDescriptor {
        ShardDescriptor {
            shard: 2,
            start: 100,
            end: 200,
            epoch: 1,
        }
    }

    fn changes(seq: u64, sets: Vec<BoxSet>) -> ChangeEvent {
        ChangeEvent::Changes {
            shard: 2,
            epoch: 1,
            seq,
            sets,
        }
    }

    #[test]
    fn changes_apply_in_order_and_duplicates_are_ignored() {
        let mut s = ShardState::new(&descriptor());
        assert!(!s.loaded);
        assert_eq!(
            s.apply(&changes(1, vec![(150, true), (151, true)])),
            Applied::Changes {
                seq: 1,
                sets: vec![(150, true), (151, true)]
            }
        );
        assert!(s.loaded && s.contains(150) && s.contains(151));
        s.apply(&changes(2, vec![(150, false)]));
        assert!(!s.contains(150));
        // A replayed event changes nothing, even if it disagrees.
        assert_eq!(s.apply(&changes(1, vec![(150, true)])), Applied::Nothing);
        assert!(!s.contains(150));
        assert_eq!(s.seq, 2);
    }

    #[test]
    fn a_gap_is_reported_and_not_applied() {
        let mut s = ShardState::new(&descriptor());
        s.apply(&changes(1, vec![]));
        assert_eq!(
            s.apply(&changes(3, vec![(160, true)])),
            Applied::Gap { got: 3 }
        );
        assert!(!s.contains(160));
        assert_eq!(s.seq, 1);
    }

    #[test]
    fn a_snapshot_replaces_the_state() {
        let mut s = ShardState::new(&descriptor());
        s.apply(&changes(1, vec![(150, true)]));
        let mut b = Bitmap::of(&[120, 199]);
        b.run_optimize();
        let snap = ChangeEvent::Snapshot {
            shard: 2,
            epoch: 1,
            seq: 9,
            start: 100,
            end: 200,
            bitmap: b.serialize::<Portable>(),
        };
        assert_eq!(s.apply(&snap), Applied::Reset { seq: 9 });
        assert!(!s.contains(150) && s.contains(120) && s.contains(199));
        assert_eq!(s.seq, 9);
        assert_eq!(
            s.apply(&changes(10, vec![(150, true)])),
            Applied::Changes {
                seq: 10,
                sets: vec![(150, true)]
            }
        );
        let bad = ChangeEvent::Snapshot {
            shard: 2,
            epoch: 1,
            seq: 20,
            start: 100,
            end: 200,
            bitmap: vec![0xff; 3],
        };
        assert!(matches!(s.apply(&bad), Applied::Invalid(_)));
        assert_eq!(s.seq, 10);
        let outside = ChangeEvent::Snapshot {
            shard: 2,
            epoch: 1,
            seq: 21,
            start: 100,
            end: 200,
            bitmap: Bitmap::of(&[150, 500]).serialize::<Portable>(),
        };
        assert!(matches!(s.apply(&outside), Applied::Invalid(m) if m.contains("outside")));
        assert_eq!(s.seq, 10);
    }

    #[test]
    fn progress_markers_load_empty_shards_and_reveal_lag() {
        let mut s = ShardState::new(&descriptor());
        let progress = |seq| ChangeEvent::Progress {
            shard: 2,
            epoch: 1,
            seq,
        };
        assert_eq!(s.apply(&progress(0)), Applied::Nothing);
        assert!(s.loaded);
        assert_eq!(s.apply(&progress(4)), Applied::Behind { replica_seq: 4 });
        s.apply(&changes(1, vec![]));
        s.apply(&changes(2, vec![]));
        assert_eq!(
            s.apply(&progress(1)),
            Applied::ReplicaLags { replica_seq: 1 }
        );
    }

    #[test]
    fn events_of_another_shard_are_invalid() {
        let mut s = ShardState::new(&descriptor());
        let other = ChangeEvent::Changes {
            shard: 3,
            epoch: 1,
            seq: 1,
            sets: vec![],
        };
        assert!(matches!(s.apply(&other), Applied::Invalid(_)));
    }
}
