//! The openraft type configuration shared by every raft group, and the
//! one raft message openraft leaves to the application: a whole snapshot
//! sent to a follower ([`InstallSnapshot`]).

use crate::command::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// Types for every checkraft raft group (shards and the metadata
    /// group). Node ids are `u64`, nodes are `BasicNode { addr }` where
    /// `addr` is the node's `HOST:PORT`. Leader ids are openraft's default
    /// (`leader_id_adv`: a term may see several candidates). Snapshot data
    /// is chosen by the state machine (bytes, see the node crate).
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A raft log entry of a checkraft group.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A raft log id.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A raft vote (term, candidate, committed).
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A snapshot's metadata: the last log id and membership it covers.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A group's membership as applied, with the log id that set it.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// The raft metrics of one group.
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

/// `POST /raft/{group}/snapshot`: a leader sends a follower that lags
/// behind its purged log the whole latest snapshot in one request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstallSnapshot {
    /// The sending leader's vote; a follower with a newer vote refuses.
    pub vote: Vote,
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The snapshot bytes (bincode of [`crate::ShardSnapshot`] for a
    /// shard, of the metadata state for the metadata group).
    pub data: Vec<u8>,
}

/// The log id at `index`, proposed by `node` as leader in `term`.
pub fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(
        openraft::impls::leader_id_adv::LeaderId {
            term,
            node_id: node,
        },
        index,
    )
}
