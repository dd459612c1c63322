//! The pure shard state: a bitmap, a descriptor and a change counter.
//!
//! No I/O and no locking here: [`ShardState::apply`] is a deterministic
//! function of the state and the command, which is what lets every replica
//! reach byte-identical bitmaps, and what the property tests check.

use checkraft_proto::codec;
use checkraft_proto::{
    BoxSet, ChangeEvent, Command, CommandResponse, MovedRange, Rejection, SetBatch,
    ShardDescriptor, ShardReshape, ShardSnapshot,
};
use croaring::{Bitmap, Portable};

use crate::error::{Error, Result};

/// One shard's replicated state.
#[derive(Debug, Clone)]
pub struct ShardState {
    /// Which boxes the shard owns, and in which epoch.
    pub descriptor: ShardDescriptor,
    /// The checked boxes, by absolute index.
    pub bitmap: Bitmap,
    /// Number of commands applied (accepted) so far.
    pub seq: u64,
    /// What splits and merges left behind: frozen, and moved ranges.
    pub reshape: ShardReshape,
    /// The child born by the last applied `Split`, until the state
    /// machine takes it ([`Self::take_born`]) to start its group.
    born: Option<Box<ShardState>>,
}

impl ShardState {
    /// An empty shard.
    pub fn new(descriptor: ShardDescriptor) -> Self {
        Self {
            descriptor,
            bitmap: Bitmap::new(),
            seq: 0,
            reshape: ShardReshape::default(),
            born: None,
        }
    }

    /// The child born by the last applied `Split`, once.
    pub fn take_born(&mut self) -> Option<ShardState> {
        self.born.take().map(|b| *b)
    }

    /// Applies one command. Returns the response for the client and, when
    /// the command was accepted, the change event it produced.
    pub fn apply(&mut self, command: &Command) -> (CommandResponse, Option<ChangeEvent>) {
        let epoch = match command {
            Command::SetBatch(b) => b.epoch,
            Command::Restore(r) => r.epoch,
            Command::Split(_) | Command::Freeze(_) | Command::Thaw(_) | Command::Absorb(_) => {
                return match crate::split_merge::apply(self, command) {
                    Ok((response, event)) => (response, Some(event)),
                    Err(rejection) => (CommandResponse::Rejected { rejection }, None),
                };
            }
            Command::Barrier => {
                return (
                    CommandResponse::Applied {
                        seq: self.seq,
                        changed: 0,
                    },
                    None,
                )
            }
            Command::Meta(_) => {
                let detail = "a metadata command was sent to a shard".into();
                return (
                    CommandResponse::Rejected {
                        rejection: Rejection::WrongGroup { detail },
                    },
                    None,
                );
            }
        };
        let restored = match self.check(epoch, command) {
            Ok(restored) => restored,
            Err(rejection) => return (CommandResponse::Rejected { rejection }, None),
        };
        self.seq += 1;
        let d = &self.descriptor;
        match command {
            Command::Barrier
            | Command::Meta(_)
            | Command::Split(_)
            | Command::Freeze(_)
            | Command::Thaw(_)
            | Command::Absorb(_) => unreachable!("answered above"),
            Command::SetBatch(SetBatch { sets, .. }) => {
                // Remember each touched box's value before the batch, so
                // the event carries net changes only (a box set and cleared
                // in one batch did not change), in index order.
                let mut before = std::collections::BTreeMap::new();
                for &(index, checked) in sets {
                    before
                        .entry(index)
                        .or_insert_with(|| self.bitmap.contains(index));
                    if checked {
                        self.bitmap.add(index);
                    } else {
                        self.bitmap.remove(index);
                    }
                }
                let changed: Vec<BoxSet> = before
                    .into_iter()
                    .filter_map(|(index, was)| {
                        let now = self.bitmap.contains(index);
                        (now != was).then_some((index, now))
                    })
                    .collect();
                let response = CommandResponse::Applied {
                    seq: self.seq,
                    changed: changed.len() as u32,
                };
                let event = ChangeEvent::Changes {
                    shard: d.shard,
                    epoch: d.epoch,
                    seq: self.seq,
                    sets: changed,
                };
                (response, Some(event))
            }
            Command::Restore(_) => {
                let new = restored.expect("check decodes every Restore bitmap");
                let changed = self.bitmap.xor_cardinality(&new);
                self.bitmap = new;
                let response = CommandResponse::Applied {
                    seq: self.seq,
                    changed: u32::try_from(changed).unwrap_or(u32::MAX),
                };
                (response, Some(self.snapshot_event()))
            }
        }
    }

    /// The deterministic admission check: epoch, then range. For a
    /// `Restore`, answers the decoded bitmap so it is decoded only once.
    fn check(
        &self,
        epoch: u64,
        command: &Command,
    ) -> std::result::Result<Option<Bitmap>, Rejection> {
        let d = &self.descriptor;
        if epoch != d.epoch {
            return Err(Rejection::StaleEpoch {
                current: d.epoch,
                got: epoch,
            });
        }
        if let Some(into) = self.reshape.frozen {
            return Err(Rejection::Frozen { into });
        }
        let out_of_range = |index: u32| match self.moved_to(u64::from(index)) {
            Some(owner) => Rejection::Moved { index, owner },
            None => Rejection::OutOfRange {
                index,
                start: d.start,
                end: d.end,
            },
        };
        match command {
            Command::Barrier
            | Command::Meta(_)
            | Command::Split(_)
            | Command::Freeze(_)
            | Command::Thaw(_)
            | Command::Absorb(_) => Ok(None),
            Command::SetBatch(b) => match b.sets.iter().find(|(i, _)| !d.contains(*i)) {
                Some(&(index, _)) => Err(out_of_range(index)),
                None => Ok(None),
            },
            Command::Restore(r) => {
                let bitmap = decode_bitmap(&r.bitmap).map_err(|e| Rejection::BadBitmap {
                    detail: e.to_string(),
                })?;
                match (bitmap.minimum(), bitmap.maximum()) {
                    (Some(min), _) if !d.contains(min) => Err(out_of_range(min)),
                    (_, Some(max)) if !d.contains(max) => Err(out_of_range(max)),
                    _ => Ok(Some(bitmap)),
                }
            }
        }
    }

    /// The shard a split moved box `index` to, if one did.
    pub fn moved_to(&self, index: u64) -> Option<checkraft_proto::ShardId> {
        self.reshape
            .moved
            .iter()
            .find(|m| m.start <= index && index < m.end)
            .map(|m| m.owner)
    }

    /// Records that `[start, end)` now belongs to `owner`, replacing what
    /// older splits said about any of it.
    pub(crate) fn note_moved(&mut self, start: u64, end: u64, owner: checkraft_proto::ShardId) {
        self.forget_moved(start, end);
        self.reshape.moved.push(MovedRange { start, end, owner });
    }

    /// Forgets moved ranges overlapping `[start, end)` (it is ours again).
    pub(crate) fn forget_moved(&mut self, start: u64, end: u64) {
        self.reshape
            .moved
            .retain(|m| m.end <= start || m.start >= end);
    }

    /// A state from its parts (a split's child).
    pub(crate) fn born(descriptor: ShardDescriptor, bitmap: Bitmap, seq: u64) -> Self {
        Self {
            descriptor,
            bitmap,
            seq,
            reshape: ShardReshape::default(),
            born: None,
        }
    }

    /// Hands a newborn child to the state machine.
    pub(crate) fn set_born(&mut self, child: ShardState) {
        self.born = Some(Box::new(child));
    }

    /// The whole state as a change-stream event.
    pub fn snapshot_event(&self) -> ChangeEvent {
        let d = &self.descriptor;
        ChangeEvent::Snapshot {
            shard: d.shard,
            epoch: d.epoch,
            seq: self.seq,
            start: d.start,
            end: d.end,
            bitmap: portable_bytes(&self.bitmap),
        }
    }

    /// The checked boxes in `[start, end)` as `Portable` bytes.
    pub fn read_range(&self, start: u64, end: u64) -> Vec<u8> {
        if start >= end {
            return portable_bytes(&Bitmap::new());
        }
        let last = (end - 1).min(u64::from(u32::MAX)) as u32;
        let mut part = Bitmap::from_range(start as u32..=last);
        part.and_inplace(&self.bitmap);
        portable_bytes(&part)
    }

    /// Encodes the state as snapshot data (bincode of [`ShardSnapshot`]).
    pub fn to_snapshot_bytes(&self) -> Vec<u8> {
        codec::encode(&ShardSnapshot {
            version: ShardSnapshot::VERSION,
            descriptor: self.descriptor.clone(),
            seq: self.seq,
            bitmap: portable_bytes(&self.bitmap),
            reshape: self.reshape.clone(),
        })
    }

    /// Decodes snapshot data written by [`Self::to_snapshot_bytes`].
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self> {
        let snap = ShardSnapshot::decode(bytes)?;
        if snap.version != 1 && snap.version != ShardSnapshot::VERSION {
            return Err(Error::Corrupt(format!(
                "unknown snapshot version {}",
                snap.version
            )));
        }
        snap.descriptor.validate().map_err(Error::Corrupt)?;
        let bitmap = decode_bitmap(&snap.bitmap)?;
        // Every bit must lie in the shard's range (found by fuzzing: a
        // snapshot of [100, 200) holding 500 used to load).
        let d = &snap.descriptor;
        if let (Some(min), Some(max)) = (bitmap.minimum(), bitmap.maximum()) {
            if u64::from(min) < d.start || u64::from(max) >= d.end {
                return Err(Error::Corrupt(format!(
                    "snapshot of shard {} holds boxes {min}..={max} outside its range [{}, {})",
                    d.shard, d.start, d.end
                )));
            }
        }
        Ok(Self {
            descriptor: snap.descriptor,
            bitmap,
            seq: snap.seq,
            reshape: snap.reshape,
            born: None,
        })
    }
}

/// `Portable` bytes of a bitmap, run-optimized first (on a copy, so the
/// live bitmap's layout never depends on when snapshots were taken).
pub fn portable_bytes(bitmap: &Bitmap) -> Vec<u8> {
    let mut copy = bitmap.clone();
    copy.run_optimize();
    copy.serialize::<Portable>()
}

/// Decodes untrusted `Portable` bytes.
pub fn decode_bitmap(bytes: &[u8]) -> Result<Bitmap> {
    Bitmap::try_deserialize::<Portable>(bytes)
        .ok_or_else(|| Error::BadRequest("bitmap is not valid croaring Portable bytes".into()))
}

#[cfg(test)]
mod tests {
    use checkraft_proto::Restore;

    use super::*;

    fn shard() -> ShardState {
        ShardState::new(ShardDescriptor {
            shard: 7,
            start: 100,
            end: 200,
            epoch: 2,
        })
    }

    fn set(epoch: u64, sets: Vec<BoxSet>) -> Command {
        Command::SetBatch(SetBatch { epoch, sets })
    }

    #[test]
    fn stale_epoch_and_out_of_range_are_rejected_without_change() {
        let mut s = shard();
        let (r, e) = s.apply(&set(1, vec![(150, true)]));
        assert_eq!(
            r,
            CommandResponse::Rejected {
                rejection: Rejection::StaleEpoch { current: 2, got: 1 }
            }
        );
        assert!(e.is_none());
        let (r, _) = s.apply(&set(2, vec![(150, true), (200, true)]));
        assert_eq!(
            r,
            CommandResponse::Rejected {
                rejection: Rejection::OutOfRange {
                    index: 200,
                    start: 100,
                    end: 200
                }
            }
        );
        assert_eq!(s.seq, 0);
        assert!(s.bitmap.is_empty());
    }

    #[test]
    fn sets_are_absolute_and_events_carry_only_changes() {
        let mut s = shard();
        let (r, e) = s.apply(&set(2, vec![(150, true), (151, false), (150, true)]));
        assert_eq!(r, CommandResponse::Applied { seq: 1, changed: 1 });
        assert_eq!(
            e,
            Some(ChangeEvent::Changes {
                shard: 7,
                epoch: 2,
                seq: 1,
                sets: vec![(150, true)]
            })
        );
        // Replaying the same batch changes nothing but still takes a seq.
        let (r, _) = s.apply(&set(2, vec![(150, true)]));
        assert_eq!(r, CommandResponse::Applied { seq: 2, changed: 0 });
        // Set then clear in one batch: the final value wins.
        let (_, e) = s.apply(&set(2, vec![(160, true), (160, false)]));
        assert_eq!(
            e,
            Some(ChangeEvent::Changes {
                shard: 7,
                epoch: 2,
                seq: 3,
                sets: vec![]
            })
        );
    }

    #[test]
    fn restore_checks_bytes_and_range() {
        let mut s = shard();
        let garbage = Command::Restore(Restore {
            epoch: 2,
            bitmap: vec![1, 2, 3],
        });
        assert!(matches!(
            s.apply(&garbage).0,
            CommandResponse::Rejected {
                rejection: Rejection::BadBitmap { .. }
            }
        ));
        let outside = Command::Restore(Restore {
            epoch: 2,
            bitmap: portable_bytes(&Bitmap::of(&[150, 250])),
        });
        assert!(matches!(
            s.apply(&outside).0,
            CommandResponse::Rejected {
                rejection: Rejection::OutOfRange { index: 250, .. }
            }
        ));
        let good = Command::Restore(Restore {
            epoch: 2,
            bitmap: portable_bytes(&Bitmap::of(&[100, 199])),
        });
        assert_eq!(
            s.apply(&good).0,
            CommandResponse::Applied { seq: 1, changed: 2 }
        );
        assert_eq!(s.bitmap.cardinality(), 2);
    }

    #[test]
    fn read_range_clips() {
        let mut s = shard();
        s.apply(&set(2, vec![(100, true), (150, true), (199, true)]));
        let part = decode_bitmap(&s.read_range(120, 160)).unwrap();
        assert_eq!(part.iter().collect::<Vec<_>>(), vec![150]);
    }

    #[test]
    fn a_snapshot_with_bits_outside_its_range_is_refused() {
        let mut inside = shard();
        inside.apply(&set(2, vec![(150, true)]));
        let ok = inside.to_snapshot_bytes();
        assert!(ShardState::from_snapshot_bytes(&ok).is_ok());
        let mut snap: checkraft_proto::ShardSnapshot = codec::decode(&ok).unwrap();
        let mut bits = Bitmap::new();
        bits.add(150);
        bits.add(500);
        snap.bitmap = portable_bytes(&bits);
        let err = ShardState::from_snapshot_bytes(&codec::encode(&snap)).unwrap_err();
        assert!(err.to_string().contains("outside its range"), "{err}");
    }
}
