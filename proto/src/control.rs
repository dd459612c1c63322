//! What nodes tell the control plane, and what it tells operators.
//!
//! Every node sends a [`NodeReport`] to the metadata group's leader every
//! `report_ms` (`POST /meta/report`, nodes only). The leader keeps the
//! reports in memory, not in the raft log: a new leader starts empty and
//! waits `down_after_ms` before it calls any node down. From the reports
//! it decides repairs, rebalancing moves and leader moves, and answers
//! [`ClusterHealth`] on `GET /meta/health`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::GroupSummary;
use crate::types::{GroupId, NodeId};

/// One node's heartbeat to the metadata leader (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The reporting node.
    pub node_id: NodeId,
    /// Where peers reach it, `HOST:PORT`.
    pub addr: String,
    /// Every group it hosts, as applied there (its leader view, applied
    /// index and change number: the leader derives write rates from the
    /// change numbers of successive reports).
    pub groups: BTreeMap<GroupId, GroupSummary>,
    /// Groups it does not serve, with the reason (a full disk, a corrupt
    /// store).
    #[serde(default)]
    pub failed: BTreeMap<GroupId, String>,
    /// Bytes its store takes on disk.
    pub disk_bytes: u64,
}

/// What the metadata leader knows of one node (part of [`ClusterHealth`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Milliseconds since its last report; `None` when none arrived since
    /// this leader took over.
    pub last_report_ms: Option<u64>,
    /// True when it has been silent for `down_after_ms`.
    pub silent: bool,
    /// Groups it hosts (from its last report).
    pub groups: usize,
    /// Shards it leads (from its last report; the metadata group is not
    /// counted).
    pub leaders: usize,
    /// Bytes its store takes on disk (from its last report).
    pub disk_bytes: u64,
    /// Groups it does not serve, with the reason.
    pub failed: BTreeMap<GroupId, String>,
}

/// One thing the scheduler decided, for `raftctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What, in words.
    pub what: String,
}

/// Answer of `GET /meta/health` (JSON), from the metadata leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterHealth {
    /// The metadata leader that answered.
    pub leader: NodeId,
    /// Milliseconds since it took over.
    pub leading_ms: u64,
    /// `down_after_ms` of that leader: the silence after which a node is
    /// down and its replicas are rebuilt elsewhere.
    pub down_after_ms: u64,
    /// Every registered node it has heard from or expects to.
    pub nodes: BTreeMap<NodeId, NodeHealth>,
    /// Write rate of each shard, in sets per second, from its leader's
    /// last two reports.
    pub write_rates: BTreeMap<GroupId, f64>,
    /// The scheduler's recent decisions, oldest first (the last 20).
    pub decisions: Vec<Decision>,
}

/// Body of `POST /admin/groups/{id}/transfer` (JSON): the group's leader
/// hands its leadership to `node_id`, a voter, which campaigns at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeader {
    /// The voter that takes over.
    pub node_id: NodeId,
}
