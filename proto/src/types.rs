//! Identifiers and the shard descriptor.

use serde::{Deserialize, Serialize};

/// A node's id. Allocated once and never reused.
pub type NodeId = u64;

/// A raft group's id. A shard's group id is its shard id.
pub type GroupId = u64;

/// A shard's id (the same number as its raft group id).
pub type ShardId = u64;

/// A checkbox index. The grid holds at most `u32::MAX + 1` boxes.
pub type BoxIndex = u32;

/// One past the largest box index: the exclusive upper bound of any range.
pub const MAX_BOX_END: u64 = 1 << 32;

/// One absolute set: `(index, checked)`. Never a toggle, so replaying it is
/// harmless.
pub type BoxSet = (BoxIndex, bool);

/// What a shard is: which boxes it owns, and in which configuration epoch.
///
/// The epoch grows whenever the shard's range changes (split, merge). Every
/// command names the epoch it was routed under, and the state machine
/// rejects commands from any other epoch, so a write routed with a stale
/// shard map can never land in the wrong range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDescriptor {
    /// The shard (and raft group) id.
    pub shard: ShardId,
    /// First box index the shard owns (inclusive).
    pub start: u64,
    /// One past the last box index the shard owns (exclusive), at most
    /// [`MAX_BOX_END`].
    pub end: u64,
    /// Configuration epoch; starts at 1.
    pub epoch: u64,
}

impl ShardDescriptor {
    /// The descriptor the metadata group is created with (group 0, a
    /// nominal one-box range that no shard command can use).
    pub fn meta() -> Self {
        Self {
            shard: crate::meta::META_GROUP,
            start: 0,
            end: 1,
            epoch: 1,
        }
    }

    /// True when `index` lies in `[start, end)`.
    pub fn contains(&self, index: BoxIndex) -> bool {
        let i = u64::from(index);
        self.start <= i && i < self.end
    }

    /// Checks the descriptor's own invariants: a non-empty range within the
    /// index space, and a positive epoch.
    pub fn validate(&self) -> Result<(), String> {
        if self.start >= self.end {
            return Err(format!("empty range [{}, {})", self.start, self.end));
        }
        if self.end > MAX_BOX_END {
            return Err(format!("range end {} exceeds {}", self.end, MAX_BOX_END));
        }
        if self.epoch == 0 {
            return Err("epoch must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_is_half_open() {
        let d = ShardDescriptor {
            shard: 1,
            start: 10,
            end: 20,
            epoch: 1,
        };
        assert!(!d.contains(9));
        assert!(d.contains(10));
        assert!(d.contains(19));
        assert!(!d.contains(20));
    }

    #[test]
    fn validate_rejects_bad_descriptors() {
        let ok = ShardDescriptor {
            shard: 1,
            start: 0,
            end: MAX_BOX_END,
            epoch: 1,
        };
        assert!(ok.validate().is_ok());
        assert!(ShardDescriptor {
            end: 0,
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(ShardDescriptor {
            end: MAX_BOX_END + 1,
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(ShardDescriptor { epoch: 0, ..ok }.validate().is_err());
    }
}
