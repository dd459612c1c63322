//! Raft log commands for a shard, and what applying them answers.

use serde::{Deserialize, Serialize};

use crate::types::{BoxIndex, BoxSet};

/// Many absolute sets in one raft entry.
///
/// The gateway batches its clients' sets per shard into one of these, so one
/// log entry (and one fsync) carries many user actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBatch {
    /// The shard epoch the sender routed under; must equal the shard's.
    pub epoch: u64,
    /// `(index, checked)` pairs, applied in order. Every index must lie in
    /// the shard's range, or the whole batch is rejected.
    pub sets: Vec<BoxSet>,
}

/// Replace a shard's whole state (used by grid restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    /// The shard epoch the sender routed under; must equal the shard's.
    pub epoch: u64,
    /// The new state: croaring `Portable` bytes of absolute indices, all of
    /// which must lie in the shard's range.
    pub bitmap: Vec<u8>,
}

/// Split a shard in two at box `at` (see `docs/resharding.md`).
///
/// Every replica applies it the same way: the shard keeps `[start, at)`
/// at `epoch + 1`, and shard `child` is born with `[at, end)`, its bits,
/// the same members, epoch `epoch + 1` and the parent's `seq` as its
/// starting point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The shard epoch the sender routed under; must equal the shard's.
    pub epoch: u64,
    /// The first box of the child: a chunk boundary strictly inside the
    /// shard's range.
    pub at: u64,
    /// The child's id, allocated by the metadata group (never reused).
    pub child: crate::types::ShardId,
}

/// Stop a shard's writes because it is being merged into `into` (the
/// merge's first step; undone by [`Thaw`] until the merge commits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// The shard epoch the sender routed under; must equal the shard's.
    pub epoch: u64,
    /// The left neighbour that will absorb this shard.
    pub into: crate::types::ShardId,
}

/// Undo a [`Freeze`]: the merge was rolled back before its commit point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thaw {
    /// The shard epoch the sender routed under; must equal the shard's.
    pub epoch: u64,
}

/// The merge's commit point: a shard takes over its frozen right
/// neighbour's range and bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absorb {
    /// The (left) shard epoch the sender routed under; must equal the
    /// shard's.
    pub epoch: u64,
    /// The frozen right neighbour as it was frozen: its range must start
    /// where this shard's ends.
    pub right: crate::types::ShardDescriptor,
    /// The right neighbour's final change number (after its freeze).
    pub seq: u64,
    /// The right neighbour's final state: croaring `Portable` bytes of
    /// absolute indices, all within `right`'s range.
    pub bitmap: Vec<u8>,
}

/// The application data of a shard's raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set boxes to absolute values.
    SetBatch(SetBatch),
    /// Replace the shard's state.
    Restore(Restore),
    /// No effect on the state, no `seq`, no change event. A linearizable
    /// read on a leader whose log is not fully applied commits one first:
    /// once it applies, so has every write the leader ever acknowledged
    /// (see `ShardGroup::read` in the node crate).
    Barrier,
    /// A metadata-group command (only valid in [`crate::meta::META_GROUP`]).
    Meta(crate::meta::MetaCommand),
    /// Split the shard (resharding).
    Split(Split),
    /// Freeze the shard before it is merged into its left neighbour.
    Freeze(Freeze),
    /// Thaw a frozen shard (a merge rolled back).
    Thaw(Thaw),
    /// Absorb the frozen right neighbour (a merge's commit point).
    Absorb(Absorb),
}

/// A short description for logs (openraft prints entries with it).
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::SetBatch(b) => write!(f, "SetBatch(epoch {}, {} sets)", b.epoch, b.sets.len()),
            Command::Restore(r) => {
                write!(f, "Restore(epoch {}, {} bytes)", r.epoch, r.bitmap.len())
            }
            Command::Barrier => f.write_str("Barrier"),
            Command::Meta(m) => write!(f, "Meta({m:?})"),
            Command::Split(c) => write!(
                f,
                "Split(epoch {}, at {}, child {})",
                c.epoch, c.at, c.child
            ),
            Command::Freeze(c) => write!(f, "Freeze(epoch {}, into {})", c.epoch, c.into),
            Command::Thaw(c) => write!(f, "Thaw(epoch {})", c.epoch),
            Command::Absorb(c) => write!(
                f,
                "Absorb(epoch {}, right {}, {} bytes)",
                c.epoch,
                c.right.shard,
                c.bitmap.len()
            ),
        }
    }
}

/// Why the state machine refused a command. Deterministic: every replica
/// that applies the same entry reaches the same rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    /// The command's epoch is not the shard's current epoch; refresh the
    /// shard map and retry.
    StaleEpoch {
        /// The shard's epoch.
        current: u64,
        /// The epoch the command carried.
        got: u64,
    },
    /// An index lies outside the shard's range `[start, end)`.
    OutOfRange {
        /// The first offending index.
        index: BoxIndex,
        /// The shard's first index.
        start: u64,
        /// One past the shard's last index.
        end: u64,
    },
    /// A `Restore` bitmap could not be decoded as croaring `Portable` bytes.
    BadBitmap {
        /// What the decoder said.
        detail: String,
    },
    /// A command sent to the wrong kind of group (a metadata command to a
    /// shard, or a shard command to the metadata group).
    WrongGroup {
        /// What was wrong.
        detail: String,
    },
    /// The metadata group refused a command (already initialized, unknown
    /// node, an operation already in progress, ...).
    MetaRefused {
        /// Why.
        detail: String,
    },
    /// The box was split off into another shard: route it there (the
    /// shard map names the owner once the split is recorded).
    Moved {
        /// The first box that moved.
        index: BoxIndex,
        /// The shard that owns it now.
        owner: crate::types::ShardId,
    },
    /// The shard is frozen for a merge into `into`: its writes wait for
    /// the merge (route them to `into` once the map shows it).
    Frozen {
        /// The shard that absorbs this one.
        into: crate::types::ShardId,
    },
    /// A split, freeze, thaw or absorb that makes no sense for this shard
    /// (a split point off a chunk boundary or at an edge, a neighbour that
    /// is not adjacent, ...).
    BadReshape {
        /// What is wrong.
        detail: String,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::StaleEpoch { current, got } => {
                write!(f, "stale epoch {got}: the shard is at epoch {current}")
            }
            Rejection::OutOfRange { index, start, end } => {
                write!(
                    f,
                    "index {index} is outside the shard's range [{start}, {end})"
                )
            }
            Rejection::BadBitmap { detail } => write!(f, "bad bitmap: {detail}"),
            Rejection::WrongGroup { detail } => write!(f, "wrong group: {detail}"),
            Rejection::MetaRefused { detail } => write!(f, "refused: {detail}"),
            Rejection::Moved { index, owner } => {
                write!(f, "box {index} moved to shard {owner}")
            }
            Rejection::Frozen { into } => {
                write!(f, "the shard is frozen while it merges into shard {into}")
            }
            Rejection::BadReshape { detail } => write!(f, "bad reshape: {detail}"),
        }
    }
}

/// What applying one raft entry answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommandResponse {
    /// The command was applied; the shard is at change number `seq`.
    Applied {
        /// The shard's change sequence number after this command (a
        /// `Barrier` leaves it unchanged).
        seq: u64,
        /// How many boxes actually changed value.
        changed: u32,
    },
    /// The command was refused; the state is unchanged.
    Rejected {
        /// Why.
        rejection: Rejection,
    },
    /// A metadata command applied.
    Meta(crate::meta::MetaOutcome),
    /// A blank or membership entry: nothing for a client to see.
    Internal,
}
