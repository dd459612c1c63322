//! Request and response bodies of the node's HTTP API.
//!
//! The endpoints themselves are documented in `checkraft-node`'s crate docs;
//! this module holds only their bodies. JSON unless noted "bincode".

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::Rejection;
use crate::raft::{LogId, RaftMetrics};
use crate::types::{GroupId, NodeId, ShardDescriptor};

/// The body of every error response (4xx/5xx other than a rejection or a
/// leader forward).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable class of the error.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
}

/// Classes of API errors, each tied to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 400: the body or query could not be parsed or is invalid.
    BadRequest,
    /// 401: the call carries no valid credential: no or a wrong admin
    /// bearer token, or no or a bad peer proof (`x-checkraft-auth`).
    Unauthorized,
    /// 403: the credential is valid but does not allow this endpoint (for
    /// example a gateway calling a raft RPC).
    Forbidden,
    /// 404: no such group on this node, or no such endpoint.
    NotFound,
    /// 409: the request conflicts with existing state (for example, creating
    /// a group that exists with another descriptor).
    Conflict,
    /// 413: the body is larger than the node accepts.
    TooLarge,
    /// 429: too many writes from this client address (gateway HTTP API;
    /// `Retry-After` says when to retry).
    RateLimited,
    /// 503: the group cannot serve right now (no leader, shutting down, or
    /// the outcome is unknown after a timeout; sets are absolute, so retry).
    Unavailable,
    /// 500: a bug or a storage failure.
    Internal,
}

/// Answer of `POST /shards/{id}/write` and `POST /shards/{id}/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum WriteOutcome {
    /// HTTP 200. Committed on a quorum (flushed to disk there) and applied.
    Applied {
        /// The raft log id of the entry that carried the command.
        log_id: LogId,
        /// The shard's change number after this command.
        seq: u64,
        /// How many boxes changed value.
        changed: u32,
    },
    /// HTTP 409. Committed but refused by the state machine; nothing changed.
    Rejected {
        /// Why.
        rejection: Rejection,
    },
    /// HTTP 200. A metadata command (`POST /admin/meta`) committed and
    /// applied.
    MetaApplied {
        /// The raft log id of the entry.
        log_id: LogId,
        /// What the metadata group answered.
        outcome: crate::meta::MetaOutcome,
    },
    /// HTTP 421. This node does not lead the shard; retry at the leader.
    ForwardToLeader {
        /// The leader's node id, when known.
        leader_id: Option<NodeId>,
        /// The leader's `HOST:PORT`, when known.
        leader_addr: Option<String>,
    },
}

/// Answer of `GET /shards/{id}/read` (bincode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRead {
    /// The shard's descriptor at read time.
    pub descriptor: ShardDescriptor,
    /// The change number the bitmap reflects.
    pub seq: u64,
    /// The raft log index the bitmap reflects (0 before anything applied).
    pub applied_index: u64,
    /// First index of the returned sub-range.
    pub start: u64,
    /// One past the last index of the returned sub-range.
    pub end: u64,
    /// croaring `Portable` bytes of the checked indices in `[start, end)`.
    pub bitmap: Vec<u8>,
    /// Whether the shard is frozen for a merge, and what splits moved.
    pub reshape: ShardReshape,
}

/// The data of a shard snapshot (bincode), as stored, shipped to followers
/// and downloaded for backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSnapshot {
    /// Format version of this struct: 2 (1 had no `reshape`; decode with
    /// [`ShardSnapshot::decode`], which reads both).
    pub version: u32,
    /// The shard's descriptor.
    pub descriptor: ShardDescriptor,
    /// The change number the bitmap reflects.
    pub seq: u64,
    /// croaring `Portable` bytes (after `run_optimize`) of the checked
    /// indices.
    pub bitmap: Vec<u8>,
    /// What splits and merges left in the shard's state.
    pub reshape: ShardReshape,
}

/// The part of a shard's replicated state that splits and merges leave
/// behind (see `docs/resharding.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardReshape {
    /// Set while the shard is frozen for a merge into this shard id.
    pub frozen: Option<crate::types::ShardId>,
    /// Ranges split off this shard, with their owners, so a write routed
    /// with an old map is told where its box went.
    pub moved: Vec<MovedRange>,
}

/// A range that a split moved to another shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedRange {
    /// First box of the range.
    pub start: u64,
    /// One past its last box.
    pub end: u64,
    /// The shard born with it.
    pub owner: crate::types::ShardId,
}

/// [`ShardSnapshot`] as format version 1 wrote it.
#[derive(Deserialize)]
struct ShardSnapshotV1 {
    version: u32,
    descriptor: ShardDescriptor,
    seq: u64,
    bitmap: Vec<u8>,
}

impl ShardSnapshot {
    /// The format version [`ShardSnapshot`] is written in.
    pub const VERSION: u32 = 2;

    /// Decodes snapshot data of either format version.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::CodecError> {
        match crate::codec::decode::<Self>(bytes) {
            Ok(s) => Ok(s),
            Err(e) => match crate::codec::decode::<ShardSnapshotV1>(bytes) {
                Ok(v1) if v1.version == 1 => Ok(Self {
                    version: 1,
                    descriptor: v1.descriptor,
                    seq: v1.seq,
                    bitmap: v1.bitmap,
                    reshape: ShardReshape::default(),
                }),
                _ => Err(e),
            },
        }
    }
}

/// Body of `POST /admin/groups`: host a shard group on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateGroup {
    /// The shard's descriptor (its id is the group id).
    pub descriptor: ShardDescriptor,
    /// Initial voters: node id → `HOST:PORT`. Used only with `initialize`.
    #[serde(default)]
    pub members: BTreeMap<NodeId, String>,
    /// Initialize the raft group with `members` from this node. Set it on
    /// exactly one node when creating a new group; leave it unset when
    /// preparing a node to join an existing group as a learner.
    #[serde(default)]
    pub initialize: bool,
}

/// Answer of `POST /admin/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreated {
    /// False when the group already existed here with the same descriptor.
    pub created: bool,
    /// True when this call initialized the raft membership.
    pub initialized: bool,
}

/// Body of `POST /admin/groups/{id}/learners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddLearner {
    /// The new member's node id.
    pub node_id: NodeId,
    /// The new member's `HOST:PORT`.
    pub addr: String,
}

/// Body of `POST /admin/groups/{id}/membership`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMembership {
    /// The complete new voter set. Every id must already be a member
    /// (voter or learner).
    pub voters: BTreeSet<NodeId>,
    /// Keep removed voters as learners instead of dropping them.
    #[serde(default)]
    pub retain: bool,
}

/// Body of `POST /admin/groups/{id}/remove-node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveNode {
    /// The member (voter or learner) to remove.
    pub node_id: NodeId,
}

/// Answer of the membership endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChanged {
    /// Log id of the (last) membership entry.
    pub log_id: LogId,
    /// Voters after the change.
    pub voters: BTreeSet<NodeId>,
    /// Learners after the change.
    pub learners: BTreeSet<NodeId>,
}

/// Answer of `POST /admin/groups/{id}/snapshot`, and the header part of a
/// snapshot download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The snapshot's name, `{term}-{index}-{seq}` of the last log id it
    /// covers and the shard's seq (openraft 0.10 snapshots have no id).
    pub snapshot_id: String,
    /// The last log id the snapshot covers.
    pub last_log_id: Option<LogId>,
    /// The change number the snapshot reflects.
    pub seq: u64,
    /// Size of the snapshot data in bytes.
    pub bytes: u64,
}

/// Answer of `GET /admin/groups/{id}/snapshot` (bincode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDownload {
    /// Which snapshot this is.
    pub info: SnapshotInfo,
    /// Its content.
    pub snapshot: ShardSnapshot,
}

/// Answer of `GET /admin/groups/{id}/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The shard's descriptor as applied on this node.
    pub descriptor: ShardDescriptor,
    /// The shard's change number as applied on this node.
    pub seq: u64,
    /// Number of checked boxes in the shard.
    pub checked: u64,
    /// openraft's metrics for the group on this node.
    pub raft: RaftMetrics,
}

/// One group in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The shard's descriptor as applied on this node.
    pub descriptor: ShardDescriptor,
    /// The shard's change number as applied on this node.
    pub seq: u64,
    /// Current raft term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last applied log index (0 when none).
    pub applied_index: u64,
}

/// Answer of `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's id.
    pub node_id: NodeId,
    /// The address peers reach this node at.
    pub addr: String,
    /// Every group hosted here, by id.
    pub groups: BTreeMap<GroupId, GroupSummary>,
    /// Groups this node does not serve, with the reason: their stored
    /// state failed to load, or a storage error stopped them (a full
    /// disk). Absent from older nodes' answers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<GroupId, String>,
}

/// Answer of `GET /shards/{id}/leader`: who this replica believes leads
/// the group, from its own raft state (no quorum round, no disk). Gateways
/// ask the other replicas when a write to the leader they know is slow, to
/// find a newly elected leader without waiting out a request timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderView {
    /// The replica's current term.
    pub term: u64,
    /// The leader it knows in that term, if any.
    pub leader_id: Option<NodeId>,
    /// That leader's `HOST:PORT`, when the replica knows it.
    pub leader_addr: Option<String>,
    /// The change number this replica has applied (committed). Asked of
    /// the leader, it is a `seq` every up-to-date replica reaches soon: a
    /// gateway whose change stream, from another replica, does not is
    /// reading a replica that is cut off (0 from nodes that predate it).
    #[serde(default)]
    pub seq: u64,
}

/// Answer of `POST /admin/leadership/handover` (JSON): what a node's
/// handover of its leaderships did, group by group. A node also hands
/// over before it stops on SIGTERM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// Groups whose leadership moved: `(group, new leader)`.
    pub moved: Vec<(GroupId, NodeId)>,
    /// Groups this node still leads, and why the handover did not happen.
    pub kept: Vec<(GroupId, String)>,
}
