//! The openraft type configuration shared by every raft group.

use std::io::Cursor;

use crate::command::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// Types for every checkraft raft group (shards, and later the metadata
    /// group). Node ids are `u64`, nodes are `BasicNode { addr }` where
    /// `addr` is the node's `HOST:PORT`, and snapshots are byte buffers.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A raft log entry of a checkraft group.
pub type Entry = openraft::Entry<TypeConfig>;
/// A raft log id.
pub type LogId = openraft::LogId<u64>;
/// The raft metrics of one group.
pub type RaftMetrics = openraft::RaftMetrics<u64, openraft::BasicNode>;
