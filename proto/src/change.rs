//! Events of a shard's change stream.
//!
//! Every applied [`crate::Command`] bumps the shard's `seq` by exactly one
//! and produces one event with that `seq`, so a subscriber that tracks the
//! last `seq` it saw can detect any gap and resume exactly where it left off.

use serde::{Deserialize, Serialize};

use crate::types::{BoxSet, ShardId};

/// One frame of `GET /shards/{id}/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeEvent {
    /// The boxes that changed value in change number `seq`. Sets that did
    /// not change anything are left out, so `sets` may be empty; the event is
    /// still sent to keep the `seq` sequence gap-free.
    Changes {
        /// The shard.
        shard: ShardId,
        /// The shard's epoch when the change applied.
        epoch: u64,
        /// The change's sequence number (previous event's `seq` + 1).
        seq: u64,
        /// `(index, checked)` of each box whose value changed.
        sets: Vec<BoxSet>,
    },
    /// The shard's full state as of `seq`. Sent first when the requested
    /// `seq` is no longer retained, and in place of a `Restore` command.
    /// Everything before and including `seq` is covered by it.
    Snapshot {
        /// The shard.
        shard: ShardId,
        /// The shard's epoch.
        epoch: u64,
        /// The change number the state reflects.
        seq: u64,
        /// First index of the shard's range.
        start: u64,
        /// One past the last index of the shard's range.
        end: u64,
        /// croaring `Portable` bytes of the checked (absolute) indices.
        bitmap: Vec<u8>,
    },
    /// Sent periodically while the shard is idle: "nothing happened up to
    /// and including `seq`". Lets subscribers tell a quiet shard from a dead
    /// stream. `seq` is what the serving replica has applied, capped at what
    /// this stream has sent; a `seq` below the subscriber's own position
    /// means the replica lags it, and the subscriber should try another.
    Progress {
        /// The shard.
        shard: ShardId,
        /// The shard's epoch.
        epoch: u64,
        /// The change number the replica vouches for (see above).
        seq: u64,
    },
    /// Change number `seq` split the shard: it keeps `[.., at)` and shard
    /// `child` owns `[at, ..)` from now on, starting from this same `seq`
    /// (the child's first change is `seq + 1`). Follow the child's stream
    /// with `from=seq`.
    Split {
        /// The shard (the parent).
        shard: ShardId,
        /// The parent's epoch after the split (the child's too).
        epoch: u64,
        /// The split's change number.
        seq: u64,
        /// The child's first box.
        at: u64,
        /// One past the child's last box (the parent's old end).
        end: u64,
        /// The child's id.
        child: ShardId,
    },
    /// Change number `seq` froze the shard for a merge into `into`; no
    /// change follows except a [`ChangeEvent::Thawed`] (merge rolled back).
    Frozen {
        /// The shard.
        shard: ShardId,
        /// Its epoch after the freeze.
        epoch: u64,
        /// The freeze's change number.
        seq: u64,
        /// The shard that will absorb it.
        into: ShardId,
    },
    /// Change number `seq` thawed the shard (its merge was rolled back).
    Thawed {
        /// The shard.
        shard: ShardId,
        /// Its epoch after the thaw.
        epoch: u64,
        /// The thaw's change number.
        seq: u64,
    },
    /// Change number `seq` merged the frozen right neighbour `right` into
    /// this shard, which now ends at `end`. No box changed value: `bitmap`
    /// is the right neighbour's final state (as of its `right_seq`), for a
    /// subscriber that did not follow it.
    Merged {
        /// The shard (the left one).
        shard: ShardId,
        /// Its epoch after the merge.
        epoch: u64,
        /// The merge's change number.
        seq: u64,
        /// The right neighbour's id (retired).
        right: ShardId,
        /// The right neighbour's first box.
        start: u64,
        /// One past its last box: the shard's new end.
        end: u64,
        /// The right neighbour's final change number.
        right_seq: u64,
        /// croaring `Portable` bytes of the right neighbour's checked boxes.
        bitmap: Vec<u8>,
    },
}

impl ChangeEvent {
    /// The event's change number.
    pub fn seq(&self) -> u64 {
        match self {
            ChangeEvent::Changes { seq, .. }
            | ChangeEvent::Snapshot { seq, .. }
            | ChangeEvent::Progress { seq, .. }
            | ChangeEvent::Split { seq, .. }
            | ChangeEvent::Frozen { seq, .. }
            | ChangeEvent::Thawed { seq, .. }
            | ChangeEvent::Merged { seq, .. } => *seq,
        }
    }
}
