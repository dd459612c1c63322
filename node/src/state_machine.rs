//! openraft's state machine for one group: a [`GroupState`] (a shard's
//! [`ShardState`], or the metadata group's [`MetaState`]) behind a lock, the
//! shard's change log, and snapshots persisted through [`SnapshotStore`].
//!
//! The bitmap lives in memory only. It is persisted through snapshots: on
//! restart the state machine loads the latest snapshot and openraft
//! re-applies the committed entries after it (`read_committed`). Snapshots
//! are written and flushed before openraft may purge the log they cover.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use checkraft_proto::raft::{LogId, SnapshotMeta, StoredMembership};
use checkraft_proto::{
    ChangeEvent, Command, CommandResponse, MetaOutcome, Rejection, ShardDescriptor, TypeConfig,
    META_GROUP,
};
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use crate::birth::{Birth, Births};
use crate::changes::ChangeLog;
use crate::error::{Error, Result};
use crate::meta_state::MetaState;
use crate::state::ShardState;
use crate::storage::{read_err, write_err, SnapshotStore, StoredSnapshot};

/// The state of a group, by kind.
#[derive(Debug, Clone)]
pub enum GroupState {
    /// A shard: bitmap, descriptor, seq.
    Shard(ShardState),
    /// The metadata group: the shard map.
    Meta(MetaState),
}

impl GroupState {
    /// The empty state for a group created with `descriptor` (group
    /// [`META_GROUP`] is the metadata group).
    pub fn empty(descriptor: ShardDescriptor) -> Self {
        if descriptor.shard == META_GROUP {
            GroupState::Meta(MetaState::default())
        } else {
            GroupState::Shard(ShardState::new(descriptor))
        }
    }

    /// Applies one command, refusing commands meant for the other kind.
    pub fn apply(&mut self, command: &Command) -> (CommandResponse, Option<ChangeEvent>) {
        let wrong = |detail: &str| CommandResponse::Rejected {
            rejection: Rejection::WrongGroup {
                detail: detail.into(),
            },
        };
        match (self, command) {
            (GroupState::Meta(m), Command::Meta(c)) => (m.apply(c), None),
            (GroupState::Meta(m), Command::Barrier) => (
                CommandResponse::Meta(MetaOutcome {
                    version: m.map.version,
                    allocated: None,
                }),
                None,
            ),
            (GroupState::Meta(_), _) => (
                wrong("a shard command was sent to the metadata group"),
                None,
            ),
            (GroupState::Shard(_), Command::Meta(_)) => {
                (wrong("a metadata command was sent to a shard"), None)
            }
            (GroupState::Shard(s), c) => s.apply(c),
        }
    }

    /// The group's descriptor ([`ShardDescriptor::meta`] for the metadata
    /// group).
    pub fn descriptor(&self) -> ShardDescriptor {
        match self {
            GroupState::Shard(s) => s.descriptor.clone(),
            GroupState::Meta(_) => ShardDescriptor::meta(),
        }
    }

    /// The shard's `seq`, or the map's version.
    pub fn seq(&self) -> u64 {
        match self {
            GroupState::Shard(s) => s.seq,
            GroupState::Meta(m) => m.map.version,
        }
    }

    /// The shard's full state as a change event (`None` for the metadata
    /// group, which has no change stream).
    pub fn snapshot_event(&self) -> Option<ChangeEvent> {
        match self {
            GroupState::Shard(s) => Some(s.snapshot_event()),
            GroupState::Meta(_) => None,
        }
    }

    /// The shard state, or an error naming the metadata group.
    pub fn shard(&self) -> Result<&ShardState> {
        match self {
            GroupState::Shard(s) => Ok(s),
            GroupState::Meta(_) => Err(Error::BadRequest(
                "group 0 is the metadata group, not a shard".into(),
            )),
        }
    }

    fn to_snapshot_bytes(&self) -> Vec<u8> {
        match self {
            GroupState::Shard(s) => s.to_snapshot_bytes(),
            GroupState::Meta(m) => m.to_snapshot_bytes(),
        }
    }

    fn from_snapshot_bytes(group: u64, bytes: &[u8]) -> Result<Self> {
        if group == META_GROUP {
            Ok(GroupState::Meta(MetaState::from_snapshot_bytes(bytes)?))
        } else {
            Ok(GroupState::Shard(ShardState::from_snapshot_bytes(bytes)?))
        }
    }
}

/// Everything about a group that changes as entries apply.
pub struct ShardCore {
    /// The group's state.
    pub state: GroupState,
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last applied membership.
    pub membership: StoredMembership,
    /// Recent events and the live broadcast.
    pub changes: ChangeLog,
}

/// Apply and snapshot counters of one group, exported by
/// [`crate::metrics`]. Counted since the process started.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Log entries applied (blank, membership and normal).
    pub entries_applied: AtomicU64,
    /// `SetBatch` entries applied (accepted or rejected).
    pub set_batches_applied: AtomicU64,
    /// Sets carried by those `SetBatch` entries.
    pub sets_applied: AtomicU64,
    /// Snapshots this replica built.
    pub snapshots_built: AtomicU64,
    /// Snapshots this replica installed from a leader.
    pub snapshots_installed: AtomicU64,
    /// Size of the latest snapshot stored (loaded, built or installed), in
    /// bytes; 0 before the first.
    pub last_snapshot_bytes: AtomicU64,
}

/// A group's live state, shared by the state machine, reads and the change
/// stream.
pub struct Shard {
    core: Mutex<ShardCore>,
    /// The applied map version (metadata group) or seq (shards), for
    /// long-polling readers.
    version: watch::Sender<u64>,
    /// Apply and snapshot counters.
    pub stats: ShardStats,
}

impl Shard {
    /// A receiver of the applied version / seq.
    pub fn watch_version(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Locks the shard. Critical sections are short and never await.
    pub fn lock(&self) -> MutexGuard<'_, ShardCore> {
        // A panic while holding the lock would be a bug in `apply`; the
        // state is still consistent per entry, so keep serving.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The openraft state machine of one shard.
#[derive(Clone)]
pub struct StateMachine {
    shard: Arc<Shard>,
    snapshots: SnapshotStore,
    births: Arc<dyn Births>,
}

impl StateMachine {
    /// Opens the state machine from the latest stored snapshot, or empty
    /// with `descriptor` when there is none.
    pub fn open(
        descriptor: ShardDescriptor,
        snapshots: SnapshotStore,
        retained: usize,
        births: Arc<dyn Births>,
    ) -> Result<Self> {
        let group = descriptor.shard;
        let stats = ShardStats::default();
        let (state, last_applied, membership) = match snapshots.load()? {
            Some(s) => {
                stats
                    .last_snapshot_bytes
                    .store(s.data.len() as u64, Ordering::Relaxed);
                (
                    GroupState::from_snapshot_bytes(group, &s.data)?,
                    s.meta.last_log_id,
                    s.meta.last_membership,
                )
            }
            None => (
                GroupState::empty(descriptor),
                None,
                StoredMembership::default(),
            ),
        };
        let (version, _) = watch::channel(state.seq());
        let core = ShardCore {
            state,
            last_applied,
            membership,
            changes: ChangeLog::new(retained),
        };
        Ok(Self {
            shard: Arc::new(Shard {
                core: Mutex::new(core),
                version,
                stats,
            }),
            snapshots,
            births,
        })
    }

    /// The shared live state.
    pub fn shard(&self) -> Arc<Shard> {
        self.shard.clone()
    }
}

/// The operator-facing name of a snapshot: term, index and seq.
pub fn snapshot_id(last: &Option<LogId>, seq: u64) -> String {
    match last {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, seq),
        None => format!("0-0-{seq}"),
    }
}

/// A snapshot as openraft handles it: meta plus the data bytes.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data, shard_id, name) = {
            let core = self.shard.lock();
            let meta = SnapshotMeta {
                last_log_id: core.last_applied,
                last_membership: core.membership.clone(),
            };
            (
                meta,
                core.state.to_snapshot_bytes(),
                core.state.descriptor().shard,
                snapshot_id(&core.last_applied, core.state.seq()),
            )
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.snapshots.save(&stored).await.map_err(write_err)?;
        let stats = &self.shard.stats;
        stats.snapshots_built.fetch_add(1, Ordering::Relaxed);
        stats
            .last_snapshot_bytes
            .store(stored.data.len() as u64, Ordering::Relaxed);
        tracing::info!(shard_id, snapshot = %name, bytes = stored.data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: stored.data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let core = self.shard.lock();
        Ok((core.last_applied, core.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // openraft hands over what is ready now; collect it and apply it
        // under one lock, then answer the waiting writers.
        let ready: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let mut answers = Vec::with_capacity(ready.len());
        let mut births = Vec::new();
        let (mut batches, mut sets) = (0u64, 0u64);
        {
            let mut core = self.shard.lock();
            let core = &mut *core;
            for (entry, responder) in ready {
                core.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => CommandResponse::Internal,
                    EntryPayload::Membership(m) => {
                        core.membership = StoredMembership::new(Some(entry.log_id), m);
                        CommandResponse::Internal
                    }
                    EntryPayload::Normal(command) => {
                        if let Command::SetBatch(b) = &command {
                            batches += 1;
                            sets += b.sets.len() as u64;
                        }
                        let (response, event) = core.state.apply(&command);
                        if let Some(event) = event {
                            core.changes.push(event);
                        }
                        if let GroupState::Shard(shard) = &mut core.state {
                            if let Some(child) = shard.take_born() {
                                births.push(Birth {
                                    state: child,
                                    at: entry.log_id,
                                    membership: core.membership.clone(),
                                });
                            }
                        }
                        response
                    }
                };
                answers.push((responder, response));
            }
            self.shard.version.send_replace(core.state.seq());
        }
        let stats = &self.shard.stats;
        stats
            .entries_applied
            .fetch_add(answers.len() as u64, Ordering::Relaxed);
        stats
            .set_batches_applied
            .fetch_add(batches, Ordering::Relaxed);
        stats.sets_applied.fetch_add(sets, Ordering::Relaxed);
        // A child is durable before the parent reports the split applied
        // (and before any snapshot can cover the split entry).
        for birth in births {
            self.births.born(birth).await.map_err(write_err)?;
        }
        for (responder, response) in answers {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), io::Error> {
        let bytes = data.len() as u64;
        let group = self.shard.lock().state.descriptor().shard;
        let state = GroupState::from_snapshot_bytes(group, &data).map_err(read_err)?;
        self.snapshots
            .save(&StoredSnapshot {
                meta: meta.clone(),
                data,
            })
            .await
            .map_err(write_err)?;
        let name = snapshot_id(&meta.last_log_id, state.seq());
        let children = match &state {
            GroupState::Shard(shard) => shard
                .reshape
                .moved
                .iter()
                .map(|m| ShardDescriptor {
                    shard: m.owner,
                    start: m.start,
                    end: m.end,
                    epoch: 1,
                })
                .collect(),
            GroupState::Meta(_) => Vec::new(),
        };
        {
            let mut core = self.shard.lock();
            if let GroupState::Shard(shard) = &state {
                core.changes.reset(shard.snapshot_event());
            }
            self.shard.version.send_replace(state.seq());
            core.state = state;
            core.last_applied = meta.last_log_id;
            core.membership = meta.last_membership.clone();
        }
        let stats = &self.shard.stats;
        stats.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        stats.last_snapshot_bytes.store(bytes, Ordering::Relaxed);
        tracing::info!(shard_id = group, snapshot = %name, "snapshot installed");
        if !children.is_empty() {
            self.births.adopt(children).await.map_err(write_err)?;
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.snapshots.load().map_err(read_err)?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
}
