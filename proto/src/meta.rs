//! The metadata group: node registry, grid, shard map and operations.
//!
//! The metadata group is raft group [`META_GROUP`] (0), on the same
//! machinery as the shards: its log carries [`crate::Command::Meta`]
//! entries and its state is a [`ShardMap`]. Every node of the cluster hosts
//! a replica (three voters, the rest learners), so any node can answer
//! "where is shard X and who leads it" from its own copy, tagged with the
//! map's `version`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{GroupId, NodeId, ShardDescriptor, ShardId};

/// The raft group id of the metadata group.
pub const META_GROUP: GroupId = 0;

/// A node's lifecycle state in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Serving; may receive new replicas.
    Up,
    /// Reported unreachable; receives no new replicas.
    Down,
    /// Being emptied before removal; receives no new replicas.
    Draining,
    /// Removed from the cluster. Its id is never reused.
    Removed,
}

/// One node in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id, allocated by the metadata group.
    pub id: NodeId,
    /// `HOST:PORT` of its HTTP API.
    pub addr: String,
    /// Lifecycle state.
    pub state: NodeState,
}

/// The grid clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    /// Total number of boxes: indices `[0, boxes)`.
    pub boxes: u64,
    /// Boxes per chunk, the unit of client subscriptions and fetches.
    pub chunk_size: u32,
}

/// One shard in the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Id, range and epoch.
    pub descriptor: ShardDescriptor,
    /// Nodes holding a voting replica.
    pub replicas: Vec<NodeId>,
    /// The leader last reported by a node, if any. A hint: the leader may
    /// have changed since; a write to a non-leader answers 421 with the
    /// real leader.
    pub leader: Option<NodeId>,
}

/// A multi-step change recorded in the map while it runs, so that whoever
/// picks up after a crash (another `raftctl`, a new meta leader) can see it
/// and resume or abort it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique id (the map version at which it began).
    pub id: u64,
    /// What it does.
    pub kind: OperationKind,
    /// Free-form progress note, updated as steps complete.
    pub step: String,
}

/// Kinds of multi-step operations. (Externally tagged, like every type
/// that goes through bincode: internally tagged enums do not decode there.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Move every replica off `node`, then mark it removed.
    RemoveNode {
        /// The node being emptied.
        node: NodeId,
    },
    /// Move one replica of `shard` from `from` to `to`.
    MoveReplica {
        /// The shard.
        shard: ShardId,
        /// Replica leaving.
        from: NodeId,
        /// Replica arriving.
        to: NodeId,
    },
    /// Restore every shard from a backup.
    Restore {
        /// The backup's creation time, milliseconds since the Unix epoch.
        backup_created_ms: u64,
    },
    /// Split `shard` at box `at`; the child's id is allocated when the
    /// operation is recorded (`child` is ignored in `BeginOperation` and
    /// filled in by the metadata group).
    Split {
        /// The shard to split.
        shard: ShardId,
        /// The child's first box (a chunk boundary inside the range).
        at: u64,
        /// The child's id.
        child: ShardId,
    },
    /// Merge `right` into its left neighbour `left`. `right_replicas`
    /// is filled in by the metadata group (what to delete at the end).
    Merge {
        /// The shard that stays.
        left: ShardId,
        /// The shard that is absorbed and retired.
        right: ShardId,
        /// The nodes holding `right`'s replicas when the merge began.
        #[serde(default)]
        right_replicas: Vec<NodeId>,
    },
    /// Rebuild every replica of a node that is down on live nodes (the
    /// control plane records it; the node stays registered and, when it
    /// comes back, its stale replicas are deleted).
    RepairNode {
        /// The node that is down.
        node: NodeId,
    },
}

/// The replicated state of the metadata group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// Grows by one with every applied metadata command that changes
    /// anything. Gateways and tools follow the map by version.
    pub version: u64,
    /// The grid; `None` until the cluster is initialized.
    pub grid: Option<Grid>,
    /// The node registry, by id.
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// The next node id to allocate; ids are never reused.
    pub next_node_id: NodeId,
    /// The shards, by id.
    pub shards: BTreeMap<ShardId, ShardRecord>,
    /// The multi-step operation in progress, if any.
    pub operation: Option<Operation>,
    /// The next shard id to allocate (splits); ids are never reused.
    #[serde(default)]
    pub next_shard_id: ShardId,
    /// Shards retired by merges: their ids are never used again.
    #[serde(default)]
    pub retired: std::collections::BTreeSet<ShardId>,
    /// The last [`FINISHED_KEPT`] operations that ended through
    /// [`MetaCommand::FinishOperation`], oldest first.
    #[serde(default)]
    pub finished: Vec<FinishedOperation>,
}

/// How many finished operations the map keeps.
pub const FINISHED_KEPT: usize = 16;

/// An operation that ended, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedOperation {
    /// The operation as it was recorded last.
    pub operation: Operation,
    /// True when it completed; false when it was refused or rolled back.
    pub ok: bool,
    /// What happened, in words.
    pub outcome: String,
}

impl ShardMap {
    /// True once `Init` has applied.
    pub fn initialized(&self) -> bool {
        self.grid.is_some()
    }

    /// The shard owning box `index`.
    pub fn shard_for(&self, index: u64) -> Option<&ShardRecord> {
        self.shards
            .values()
            .find(|s| s.descriptor.start <= index && index < s.descriptor.end)
    }

    /// The shard whose range starts where `shard`'s ends, if any.
    pub fn right_neighbour(&self, shard: ShardId) -> Option<&ShardRecord> {
        let end = self.shards.get(&shard)?.descriptor.end;
        self.shards.values().find(|s| s.descriptor.start == end)
    }

    /// The address of node `id`.
    pub fn addr(&self, id: NodeId) -> Option<&str> {
        self.nodes.get(&id).map(|n| n.addr.as_str())
    }
}

/// A metadata command: the application data of a [`META_GROUP`] log entry.
/// In JSON: `{"add_node": {"addr": "h:p"}}` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaCommand {
    /// Initialize the cluster once. Refused if already initialized.
    Init {
        /// The grid.
        grid: Grid,
        /// The founding nodes (ids chosen by the operator).
        nodes: Vec<NodeRecord>,
        /// The initial shards.
        shards: Vec<ShardRecord>,
    },
    /// Register a node at `addr`; answers the allocated id. Refused if an
    /// active node already has that address.
    AddNode {
        /// `HOST:PORT`.
        addr: String,
    },
    /// Change a node's lifecycle state.
    SetNodeState {
        /// The node.
        node: NodeId,
        /// Its new state.
        state: NodeState,
    },
    /// Replace a shard's replica list (after a membership change).
    SetReplicas {
        /// The shard.
        shard: ShardId,
        /// The new voting replicas.
        replicas: Vec<NodeId>,
    },
    /// Record which nodes lead which shards. Changes the version only when
    /// a hint actually changes.
    LeaderHints {
        /// `(shard, leader)` pairs.
        hints: Vec<(ShardId, NodeId)>,
    },
    /// Record a multi-step operation. Refused while another is recorded.
    BeginOperation {
        /// What it is.
        kind: OperationKind,
    },
    /// Update the recorded operation's progress note.
    OperationStep {
        /// The operation's id.
        id: u64,
        /// The new note.
        step: String,
    },
    /// Clear the recorded operation (done or aborted).
    EndOperation {
        /// The operation's id.
        id: u64,
    },
    /// End the recorded operation and keep how it ended in
    /// [`ShardMap::finished`].
    FinishOperation {
        /// The operation's id.
        id: u64,
        /// True when it completed.
        ok: bool,
        /// What happened, in words.
        outcome: String,
    },
    /// Record a split that the parent applied and the child serves: the
    /// parent's new descriptor and the child's record. Refused unless the
    /// two exactly tile the parent's old range.
    RecordSplit {
        /// The parent after the split.
        parent: ShardDescriptor,
        /// The child.
        child: ShardRecord,
    },
    /// Record a committed merge: `left`'s new descriptor, which now covers
    /// `right`'s range; `right` leaves the map and is retired.
    RecordMerge {
        /// The left shard after the merge.
        left: ShardDescriptor,
        /// The absorbed shard.
        right: ShardId,
    },
}

/// What an applied [`MetaCommand`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaOutcome {
    /// The map version after the command.
    pub version: u64,
    /// For `AddNode`: the allocated id. For `BeginOperation`: the
    /// operation id.
    pub allocated: Option<u64>,
}

/// Answer of `GET /meta/shards/{id}`: where a shard is, and who leads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLocation {
    /// The shard's record.
    pub shard: ShardRecord,
    /// Addresses of its replicas, by node id.
    pub addrs: BTreeMap<NodeId, String>,
    /// The map version this answer comes from.
    pub version: u64,
}

/// Body of `POST /admin/node/id` on a node started without `--id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignId {
    /// The id allocated by the metadata group.
    pub id: NodeId,
}
