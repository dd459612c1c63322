//! Births: a split's child group starting on this node.
//!
//! Applying a `Split` entry (see [`crate::split_merge`]) yields the child's
//! state. Before the parent's state machine moves past that entry, it hands
//! the child here ([`Births::born`]), and the node writes the child's
//! starting point durably ([`crate::storage::Storage::seed_group`]) and
//! starts its raft. Every replica derives the same starting point from the
//! same entry:
//! - state: the child's range, epoch, bits and `seq`, as a snapshot at the
//!   split entry's log id, with the log purged up to there. So a replica
//!   without it (one that skipped the entry by installing a later parent
//!   snapshot) can only catch up through a snapshot of the child;
//! - membership: the parent's, as of the split;
//! - vote: the split entry's leader, committed. openraft restores a
//!   committed vote for itself as leadership at start, so the node that
//!   led the parent leads the child at once, and a split moves no load.
//!
//! A child is never born twice, and never on a node that once deleted it
//! (a restart replays the split from the parent's log). A replica that
//! installs a parent snapshot saying a split happened, and does not host
//! the child, starts it empty ([`Births::adopt`]); its leader sends it a
//! snapshot. Raft traffic alone never creates a group.

use std::sync::Weak;

use checkraft_proto::raft::{LogId, SnapshotMeta, StoredMembership, Vote};
use checkraft_proto::ShardDescriptor;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::node::Node;
use crate::state::ShardState;
use crate::storage::StoredSnapshot;

/// A child born by a split entry.
pub struct Birth {
    /// The child's starting state.
    pub state: ShardState,
    /// The split entry's log id.
    pub at: LogId,
    /// The parent's membership when the split applied.
    pub membership: StoredMembership,
}

impl Birth {
    /// The child's starting snapshot and vote.
    pub fn seed(&self) -> (StoredSnapshot, Vote) {
        let meta = SnapshotMeta {
            last_log_id: Some(self.at),
            last_membership: StoredMembership::new(
                Some(self.at),
                self.membership.membership().clone(),
            ),
        };
        let snapshot = StoredSnapshot {
            meta,
            data: self.state.to_snapshot_bytes(),
        };
        let vote = Vote::new_committed(self.at.leader_id.term, self.at.leader_id.node_id);
        (snapshot, vote)
    }
}

/// What a group's state machine calls when a split gives birth.
pub trait Births: Send + Sync {
    /// Seeds the child durably and starts it (idempotent).
    fn born(&self, birth: Birth) -> BoxFuture<'static, Result<()>>;
    /// Starts empty replicas of split-off children this node does not host
    /// and never deleted (after installing a parent snapshot).
    fn adopt(&self, children: Vec<ShardDescriptor>) -> BoxFuture<'static, Result<()>>;
}

/// The node's [`Births`].
pub struct NodeBirths(pub Weak<Node>);

impl Births for NodeBirths {
    fn born(&self, birth: Birth) -> BoxFuture<'static, Result<()>> {
        let node = self.0.upgrade();
        Box::pin(async move {
            match node {
                Some(node) => node.give_birth(birth).await,
                None => Ok(()),
            }
        })
    }

    fn adopt(&self, children: Vec<ShardDescriptor>) -> BoxFuture<'static, Result<()>> {
        let node = self.0.upgrade();
        Box::pin(async move {
            match node {
                Some(node) => node.adopt_children(children).await,
                None => Ok(()),
            }
        })
    }
}

/// [`Births`] for a state machine opened outside a node (offline
/// inspection, tests of one group): a child is not started anywhere, and
/// applying the split entry again in a node starts it there.
pub struct NoBirths;

impl Births for NoBirths {
    fn born(&self, _birth: Birth) -> BoxFuture<'static, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn adopt(&self, _children: Vec<ShardDescriptor>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
