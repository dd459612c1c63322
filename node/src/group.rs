//! One hosted shard: its `Raft` handle, its live state, and the operations
//! the HTTP API exposes on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use checkraft_proto::{
    AddLearner, ChangeMembership, Command, CommandResponse, GroupStatus, GroupSummary,
    MembershipChanged, Restore, SetBatch, ShardDescriptor, ShardMap, ShardRead, ShardSnapshot,
    SnapshotDownload, SnapshotInfo, TypeConfig, WriteOutcome,
};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, Fatal, LinearizableReadError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, ReadPolicy};

use crate::error::{Error, Result};
use crate::network::{GroupNetwork, Peers};
use crate::state::decode_bitmap;
use crate::state_machine::{snapshot_id, GroupState, Shard, StateMachine};

/// The raft of one group, with its state machine type.
pub type GroupRaft = Raft<TypeConfig, StateMachine>;
use crate::storage::{LogStore, SnapshotStore, Storage};

/// Settings every group on a node shares.
pub struct GroupContext {
    /// This node's id.
    pub node_id: u64,
    /// The process's storage.
    pub storage: Storage,
    /// The shared peer clients.
    pub peers: Arc<Peers>,
    /// openraft settings.
    pub raft_config: Arc<openraft::Config>,
    /// Change events retained per shard.
    pub retained_changes: usize,
    /// How long a write waits for commit.
    pub write_timeout: Duration,
    /// Where a split's child goes ([`crate::birth`]).
    pub births: Arc<dyn crate::birth::Births>,
}

/// A shard group hosted on this node.
pub struct ShardGroup {
    /// The group (shard) id.
    pub id: u64,
    /// The group's raft.
    pub raft: GroupRaft,
    /// The group's live state.
    pub shard: Arc<Shard>,
    /// A handle on the group's log store (the raft owns another), for the
    /// committed index in metrics.
    log: LogStore,
    write_timeout: Duration,
}

/// A leader forward, from any openraft API error.
fn forward(leader_id: Option<u64>, leader_node: Option<BasicNode>) -> WriteOutcome {
    WriteOutcome::ForwardToLeader {
        leader_id,
        leader_addr: leader_node.map(|n| n.addr),
    }
}

impl ShardGroup {
    /// Opens the group's storage and starts its raft. `descriptor` is used
    /// only when the group has no snapshot yet.
    pub async fn open(ctx: &GroupContext, descriptor: ShardDescriptor) -> Result<Self> {
        let id = descriptor.shard;
        let tree = ctx.storage.group_tree(id)?;
        let flusher = ctx.storage.flusher().clone();
        let log = LogStore::new(tree.clone(), flusher.clone());
        // Stored state that cannot be read or makes no sense fails the
        // group with an error naming the group, the file and what to do.
        let sm = StateMachine::open(
            descriptor,
            SnapshotStore::new(tree, flusher),
            ctx.retained_changes,
            ctx.births.clone(),
        )
        .map_err(|e| ctx.storage.group_damaged(id, e))?;
        let shard = sm.shard();
        let network = GroupNetwork::new(id, ctx.peers.clone());
        let raft = Raft::new(
            ctx.node_id,
            ctx.raft_config.clone(),
            network,
            log.clone(),
            sm,
        )
        .await
        .map_err(|e| match e {
            // openraft read the vote, log and committed id: one was unreadable.
            Fatal::StorageError(e) => ctx
                .storage
                .group_damaged(id, Error::Corrupt(format!("raft state: {e}"))),
            e => Error::Unavailable(format!("raft for group {id} did not start: {e}")),
        })?;
        Ok(Self {
            id,
            raft,
            shard,
            log,
            write_timeout: ctx.write_timeout,
        })
    }

    /// Initializes the group's membership (on one node, once).
    pub async fn initialize(&self, members: &BTreeMap<u64, String>) -> Result<bool> {
        let nodes: BTreeMap<u64, BasicNode> = members
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(e)) => {
                tracing::info!(group = self.id, error = %e, "initialize refused: already initialized");
                Ok(false)
            }
            Err(RaftError::Fatal(e)) => Err(Error::Unavailable(e.to_string())),
        }
    }

    /// Proposes a command and waits until it is committed and applied.
    pub async fn propose(&self, command: Command) -> Result<WriteOutcome> {
        let write = self.raft.client_write(command);
        let result = tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| {
                Error::Unavailable(
                    "write timed out before commit; its outcome is unknown, retrying is safe"
                        .into(),
                )
            })?;
        match result {
            Ok(resp) => match resp.data {
                CommandResponse::Applied { seq, changed } => Ok(WriteOutcome::Applied {
                    log_id: resp.log_id,
                    seq,
                    changed,
                }),
                CommandResponse::Rejected { rejection } => Ok(WriteOutcome::Rejected { rejection }),
                CommandResponse::Meta(outcome) => Ok(WriteOutcome::MetaApplied {
                    log_id: resp.log_id,
                    outcome,
                }),
                CommandResponse::Internal => {
                    Err(Error::Corrupt("client write answered as internal".into()))
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Ok(forward(f.leader_id, f.leader_node))
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => {
                Err(Error::Unavailable(format!(
                    "the leader changed before the write committed; its outcome is unknown, \
                     retrying is safe (new leader: {:?})",
                    f.leader_id
                )))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Error::Conflict(e.to_string()))
            }
            Err(RaftError::APIError(ClientWriteError::PreconditionFailed(e))) => {
                Err(Error::Conflict(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(Error::Unavailable(e.to_string())),
        }
    }

    /// Commits a no-op entry (see [`Command::Barrier`]); once it answers,
    /// everything before it in the leader's log is applied.
    pub async fn barrier(&self) -> Result<WriteOutcome> {
        self.propose(Command::Barrier).await
    }

    /// `SetBatch` write with the size limit applied.
    pub async fn write(&self, batch: SetBatch, max_sets: usize) -> Result<WriteOutcome> {
        if batch.sets.len() > max_sets {
            return Err(Error::BadRequest(format!(
                "{} sets exceed the limit of {max_sets}",
                batch.sets.len()
            )));
        }
        self.propose(Command::SetBatch(batch)).await
    }

    /// `Restore` write. Undecodable bytes are refused before they reach
    /// the log.
    pub async fn restore(&self, restore: Restore) -> Result<WriteOutcome> {
        decode_bitmap(&restore.bitmap)?;
        self.propose(Command::Restore(restore)).await
    }

    /// A split, freeze, thaw or absorb (see [`crate::split_merge`]); any
    /// other command is refused before it reaches the log, as is an
    /// absorb whose bitmap does not decode.
    pub async fn reshape(&self, command: Command) -> Result<WriteOutcome> {
        match &command {
            Command::Split(_) | Command::Freeze(_) | Command::Thaw(_) => {}
            Command::Absorb(a) => {
                decode_bitmap(&a.bitmap)?;
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "/reshape takes a split, freeze, thaw or absorb, not {other}"
                )))
            }
        }
        self.propose(command).await
    }

    /// Reads `[start, end)` (default: the whole shard). With `linearizable`,
    /// first confirms leadership; then, if the leader's log holds entries it
    /// has not applied, commits a [`Command::Barrier`] and waits for it.
    /// Without `linearizable`, serves this replica's applied state.
    ///
    /// Why not openraft's read index alone: a leader restarted without
    /// losing leadership takes `max(its old noop entry, committed as last
    /// persisted)` as read index, which can lie below writes it had already
    /// acknowledged before the crash (found by the kill-all chaos test;
    /// reopened groups no longer resume their term, a split's child still
    /// does, and the barrier stays for both).
    /// Every acknowledged write is in the leader's log (Leader
    /// Completeness), so once a barrier after all of it applies, the read
    /// reflects them all. Stale metrics only cause an unneeded barrier.
    pub async fn read(
        &self,
        start: Option<u64>,
        end: Option<u64>,
        linearizable: bool,
    ) -> Result<Result<ShardRead, WriteOutcome>> {
        if linearizable {
            match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => {}
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                    return Ok(Err(forward(f.leader_id, f.leader_node)))
                }
                Err(RaftError::APIError(e)) => return Err(Error::Unavailable(e.to_string())),
                Err(RaftError::Fatal(e)) => return Err(Error::Unavailable(e.to_string())),
            }
            let (last, applied) = {
                let m = self.raft.metrics().borrow_watched().clone();
                (m.last_log_index, m.last_applied.map(|l| l.index))
            };
            if applied < last {
                if let forward @ WriteOutcome::ForwardToLeader { .. } = self.barrier().await? {
                    return Ok(Err(forward));
                }
            }
        }
        let core = self.shard.lock();
        let shard = core.state.shard()?;
        let d = &shard.descriptor;
        let (start, end) = (start.unwrap_or(d.start), end.unwrap_or(d.end));
        if start < d.start || end > d.end || start >= end {
            return Err(Error::BadRequest(format!(
                "range [{start}, {end}) is not a non-empty part of the shard's [{}, {})",
                d.start, d.end
            )));
        }
        Ok(Ok(ShardRead {
            descriptor: d.clone(),
            seq: shard.seq,
            applied_index: core.last_applied.map(|l| l.index).unwrap_or(0),
            start,
            end,
            bitmap: shard.read_range(start, end),
            reshape: shard.reshape.clone(),
        }))
    }

    /// The commit index this replica knows (as last saved by openraft), or
    /// `None` when nothing is known committed or the read failed.
    pub fn committed_index(&self) -> Option<u64> {
        self.log.committed().ok().flatten().map(|l| l.index)
    }

    /// Who this replica believes leads the group (`GET /shards/{g}/leader`).
    pub fn leader_view(&self) -> checkraft_proto::LeaderView {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader_addr = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        checkraft_proto::LeaderView {
            term: m.current_term,
            leader_id: m.current_leader,
            leader_addr,
            seq: self.shard.lock().state.seq(),
        }
    }

    /// True when this node currently leads the group.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow_watched().clone();
        m.current_leader == Some(m.id) && m.state == openraft::ServerState::Leader
    }

    /// A one-line summary for `/status`.
    pub fn summary(&self) -> GroupSummary {
        let m = self.raft.metrics().borrow_watched().clone();
        let core = self.shard.lock();
        GroupSummary {
            descriptor: core.state.descriptor(),
            seq: core.state.seq(),
            term: m.current_term,
            leader: m.current_leader,
            applied_index: core.last_applied.map(|l| l.index).unwrap_or(0),
        }
    }

    /// Full metrics for `/admin/groups/{id}/metrics`.
    pub fn status(&self) -> GroupStatus {
        let raft = self.raft.metrics().borrow_watched().clone();
        let core = self.shard.lock();
        GroupStatus {
            descriptor: core.state.descriptor(),
            seq: core.state.seq(),
            checked: core
                .state
                .shard()
                .map(|s| s.bitmap.cardinality())
                .unwrap_or(0),
            raft,
        }
    }

    /// Adds a learner and waits until it has caught up.
    pub async fn add_learner(&self, req: AddLearner) -> Result<MembershipChanged> {
        let resp = self
            .raft
            .add_learner(req.node_id, BasicNode { addr: req.addr }, true)
            .await
            .map_err(membership_error)?;
        Ok(membership_changed(resp.log_id, resp.membership.as_ref()))
    }

    /// Changes the voter set (joint consensus, both phases).
    pub async fn change_membership(&self, req: ChangeMembership) -> Result<MembershipChanged> {
        let resp = self
            .raft
            .change_membership(req.voters, req.retain)
            .await
            .map_err(membership_error)?;
        Ok(membership_changed(resp.log_id, resp.membership.as_ref()))
    }

    /// The group's current membership, as this replica knows it.
    pub fn membership(&self) -> openraft::Membership<u64, BasicNode> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .clone()
    }

    /// Removes `node` from the group (voter or learner) in one membership
    /// change. Refuses to remove the last voter.
    pub async fn remove_node(&self, node: u64) -> Result<MembershipChanged> {
        let membership = self.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let change = if voters.contains(&node) {
            if voters.len() == 1 {
                return Err(Error::Conflict(format!(
                    "node {node} is the last voter of group {}",
                    self.id
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else if membership.learner_ids().any(|l| l == node) {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        } else {
            return Err(Error::NotFound(format!(
                "node {node} is not a member of group {}",
                self.id
            )));
        };
        let resp = self
            .raft
            .change_membership(change, false)
            .await
            .map_err(membership_error)?;
        Ok(membership_changed(resp.log_id, resp.membership.as_ref()))
    }

    /// Hands leadership to `to`, a voter, which campaigns at once. Only
    /// the leader may (409 elsewhere).
    pub async fn transfer_leader(&self, to: u64) -> Result<()> {
        let m = self.raft.metrics().borrow_watched().clone();
        if !self.is_leader() {
            return Err(Error::Conflict(format!(
                "node {} does not lead group {} (leader: {:?})",
                m.id, self.id, m.current_leader
            )));
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == to)
        {
            return Err(Error::Conflict(format!(
                "node {to} is not a voter of group {}",
                self.id
            )));
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// Makes this node campaign for leadership of the group.
    pub async fn elect(&self) -> Result<()> {
        self.raft
            .trigger()
            .elect(false)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// The metadata group's map as applied on this replica.
    pub fn map(&self) -> Result<ShardMap> {
        match &self.shard.lock().state {
            GroupState::Meta(m) => Ok(m.map.clone()),
            GroupState::Shard(_) => Err(Error::BadRequest(format!(
                "group {} is a shard, not the metadata group",
                self.id
            ))),
        }
    }

    /// The map once its version exceeds `since`, or the current map after
    /// `wait`.
    pub async fn wait_map(&self, since: u64, wait: Duration) -> Result<ShardMap> {
        let mut versions = self.shard.watch_version();
        // A timeout is not an error: the caller gets the unchanged map.
        let _ = tokio::time::timeout(wait, versions.wait_for(|v| *v > since)).await;
        self.map()
    }

    /// Builds a snapshot now and waits for it.
    pub async fn trigger_snapshot(&self) -> Result<SnapshotInfo> {
        let applied = self.raft.metrics().borrow_watched().last_applied;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        self.raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(
                |m| m.snapshot >= applied,
                "snapshot covers the applied index",
            )
            .await
            .map_err(|e| Error::Unavailable(format!("snapshot not built: {e}")))?;
        Ok(self.current_snapshot().await?.info)
    }

    /// The latest stored snapshot.
    pub async fn current_snapshot(&self) -> Result<SnapshotDownload> {
        let snap = self
            .raft
            .get_snapshot()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?
            .ok_or_else(|| Error::NotFound(format!("group {} has no snapshot yet", self.id)))?;
        let data = snap.snapshot;
        let snapshot = ShardSnapshot::decode(&data)?;
        Ok(SnapshotDownload {
            info: SnapshotInfo {
                snapshot_id: snapshot_id(&snap.meta.last_log_id, snapshot.seq),
                last_log_id: snap.meta.last_log_id,
                seq: snapshot.seq,
                bytes: data.len() as u64,
            },
            snapshot,
        })
    }
}

fn membership_error<E: std::fmt::Display>(e: RaftError<TypeConfig, E>) -> Error {
    match e {
        RaftError::APIError(e) => Error::Conflict(e.to_string()),
        RaftError::Fatal(e) => Error::Unavailable(e.to_string()),
    }
}

fn membership_changed(
    log_id: checkraft_proto::raft::LogId,
    m: Option<&openraft::Membership<u64, BasicNode>>,
) -> MembershipChanged {
    let voters: BTreeSet<u64> = m.map(|m| m.voter_ids().collect()).unwrap_or_default();
    let learners: BTreeSet<u64> = m.map(|m| m.learner_ids().collect()).unwrap_or_default();
    MembershipChanged {
        log_id,
        voters,
        learners,
    }
}
