//! The pure rules of splits and merges on a shard's state (see
//! `docs/resharding.md`): what `Split`, `Freeze`, `Thaw` and `Absorb` do
//! to a [`ShardState`], deterministically, so every replica reaches the
//! same bytes.
//!
//! Every accepted reshape command bumps the shard's epoch (fencing writes
//! routed with an older map) and its `seq` (so it has a place in the change
//! stream). A split's child starts from the parent's new `seq`, and a merge
//! continues from the larger of the two, so a chunk's version keeps
//! growing wherever the chunk goes.

use checkraft_proto::{
    Absorb, ChangeEvent, Command, CommandResponse, Freeze, Rejection, ShardDescriptor, Split, Thaw,
};
use croaring::Bitmap;

use crate::state::{decode_bitmap, portable_bytes, ShardState};

fn bad(detail: impl Into<String>) -> Rejection {
    Rejection::BadReshape {
        detail: detail.into(),
    }
}

/// Applies a reshape command (`Split`, `Freeze`, `Thaw` or `Absorb`).
/// A refused command changes nothing.
pub fn apply(
    state: &mut ShardState,
    command: &Command,
) -> Result<(CommandResponse, ChangeEvent), Rejection> {
    let epoch = match command {
        Command::Split(c) => c.epoch,
        Command::Freeze(c) => c.epoch,
        Command::Thaw(c) => c.epoch,
        Command::Absorb(c) => c.epoch,
        _ => return Err(bad("not a reshape command")),
    };
    let current = state.descriptor.epoch;
    if epoch != current {
        return Err(Rejection::StaleEpoch {
            current,
            got: epoch,
        });
    }
    let event = match command {
        Command::Split(c) => split(state, c)?,
        Command::Freeze(c) => freeze(state, c)?,
        Command::Thaw(c) => thaw(state, c)?,
        Command::Absorb(c) => absorb(state, c)?,
        _ => unreachable!("checked above"),
    };
    let response = CommandResponse::Applied {
        seq: state.seq,
        changed: 0,
    };
    Ok((response, event))
}

fn not_frozen(state: &ShardState) -> Result<(), Rejection> {
    match state.reshape.frozen {
        Some(into) => Err(Rejection::Frozen { into }),
        None => Ok(()),
    }
}

fn split(state: &mut ShardState, c: &Split) -> Result<ChangeEvent, Rejection> {
    not_frozen(state)?;
    let d = state.descriptor.clone();
    if c.at <= d.start || c.at >= d.end {
        return Err(bad(format!(
            "split point {} is not strictly inside shard {}'s range [{}, {})",
            c.at, d.shard, d.start, d.end
        )));
    }
    if c.child == d.shard || c.child == checkraft_proto::META_GROUP {
        return Err(bad(format!("shard id {} cannot be a child", c.child)));
    }
    let epoch = d.epoch + 1;
    // u32 range: `at` < end <= 2^32, so `at` fits; the last box is end - 1.
    let last = (d.end - 1).min(u64::from(u32::MAX)) as u32;
    let mut moving = Bitmap::from_range(c.at as u32..=last);
    moving.and_inplace(&state.bitmap);
    state.bitmap.andnot_inplace(&moving);
    state.descriptor.end = c.at;
    state.descriptor.epoch = epoch;
    state.seq += 1;
    state.note_moved(c.at, d.end, c.child);
    let child = ShardDescriptor {
        shard: c.child,
        start: c.at,
        end: d.end,
        epoch,
    };
    state.set_born(ShardState::born(child, moving, state.seq));
    Ok(ChangeEvent::Split {
        shard: d.shard,
        epoch,
        seq: state.seq,
        at: c.at,
        end: d.end,
        child: c.child,
    })
}

fn freeze(state: &mut ShardState, c: &Freeze) -> Result<ChangeEvent, Rejection> {
    not_frozen(state)?;
    if c.into == state.descriptor.shard {
        return Err(bad("a shard cannot merge into itself"));
    }
    state.reshape.frozen = Some(c.into);
    state.descriptor.epoch += 1;
    state.seq += 1;
    Ok(ChangeEvent::Frozen {
        shard: state.descriptor.shard,
        epoch: state.descriptor.epoch,
        seq: state.seq,
        into: c.into,
    })
}

fn thaw(state: &mut ShardState, _c: &Thaw) -> Result<ChangeEvent, Rejection> {
    if state.reshape.frozen.is_none() {
        return Err(bad("the shard is not frozen"));
    }
    state.reshape.frozen = None;
    state.descriptor.epoch += 1;
    state.seq += 1;
    Ok(ChangeEvent::Thawed {
        shard: state.descriptor.shard,
        epoch: state.descriptor.epoch,
        seq: state.seq,
    })
}

fn absorb(state: &mut ShardState, c: &Absorb) -> Result<ChangeEvent, Rejection> {
    not_frozen(state)?;
    let d = state.descriptor.clone();
    let r = &c.right;
    if r.start != d.end || r.shard == d.shard {
        return Err(bad(format!(
            "shard {} [{}, {}) is not the right neighbour of shard {} [{}, {})",
            r.shard, r.start, r.end, d.shard, d.start, d.end
        )));
    }
    r.validate().map_err(bad)?;
    let bits = decode_bitmap(&c.bitmap).map_err(|e| Rejection::BadBitmap {
        detail: e.to_string(),
    })?;
    if let (Some(min), Some(max)) = (bits.minimum(), bits.maximum()) {
        if !r.contains(min) || !r.contains(max) {
            return Err(bad(format!(
                "the right neighbour's bits {min}..={max} are outside its range [{}, {})",
                r.start, r.end
            )));
        }
    }
    state.bitmap.or_inplace(&bits);
    state.descriptor.end = r.end;
    state.descriptor.epoch = d.epoch.max(r.epoch) + 1;
    state.seq = state.seq.max(c.seq) + 1;
    state.forget_moved(r.start, r.end);
    Ok(ChangeEvent::Merged {
        shard: d.shard,
        epoch: state.descriptor.epoch,
        seq: state.seq,
        right: r.shard,
        start: r.start,
        end: r.end,
        right_seq: c.seq,
        bitmap: portable_bytes(&bits),
    })
}
