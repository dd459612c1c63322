//! The registry of shard states: one [`ShardHandle`] per shard of the map,
//! each fed by exactly one subscription task.
//!
//! [`Shards::reconcile`] runs on every new map: it starts a handle and its
//! subscription for each new shard and stops those of shards that left the
//! map. Readers take a handle's state under a short read lock; the
//! subscription task is the only writer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use checkraft_proto::{BoxSet, ShardDescriptor, ShardId, ShardMap};
use tokio::sync::{broadcast, watch};

use crate::state::ShardState;

/// A change to a shard's state, as the websocket layer will fan it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardUpdate {
    /// Change number `seq` changed the values of `sets`.
    Changes {
        /// The shard.
        shard: ShardId,
        /// The shard's epoch.
        epoch: u64,
        /// The change number (the previous update's `seq` + 1).
        seq: u64,
        /// `(index, checked)` of each box that changed.
        sets: Vec<BoxSet>,
    },
    /// The shard's state was replaced (snapshot): refetch its chunks.
    Reset {
        /// The shard.
        shard: ShardId,
        /// The shard's epoch.
        epoch: u64,
        /// The change number the new state reflects.
        seq: u64,
    },
}

/// One shard's state and the channels that announce its changes.
pub struct ShardHandle {
    /// The shard's id.
    pub id: ShardId,
    state: RwLock<ShardState>,
    seq: watch::Sender<u64>,
    /// The highest change number this gateway knows is committed (from
    /// its own writes' acknowledgements): the subscription must reach it.
    committed: watch::Sender<u64>,
    updates: broadcast::Sender<Arc<ShardUpdate>>,
    task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl ShardHandle {
    /// A handle with an empty, not loaded state.
    pub fn new(descriptor: &ShardDescriptor, update_buffer: usize) -> Self {
        Self {
            id: descriptor.shard,
            state: RwLock::new(ShardState::new(descriptor)),
            seq: watch::channel(0).0,
            committed: watch::channel(0).0,
            updates: broadcast::channel(update_buffer).0,
            task: std::sync::Mutex::new(None),
        }
    }

    /// The state, for reading. Hold the guard briefly.
    pub fn read(&self) -> RwLockReadGuard<'_, ShardState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, ShardState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Announces an applied update: the seq watch, then the broadcast.
    pub(crate) fn publish(&self, seq: u64, update: ShardUpdate) {
        self.seq.send_replace(seq);
        let _ = self.updates.send(Arc::new(update));
    }

    /// Every update from now on. A receiver that falls behind by more than
    /// `update_buffer` updates gets `Lagged` and should refetch the chunks
    /// it serves.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ShardUpdate>> {
        self.updates.subscribe()
    }

    /// Records that change number `seq` is committed (a write of this
    /// gateway was acknowledged with it).
    pub fn note_committed(&self, seq: u64) {
        self.committed.send_if_modified(|known| {
            let newer = seq > *known;
            if newer {
                *known = seq;
            }
            newer
        });
    }

    /// The highest change number known committed, as a watch.
    pub(crate) fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Waits until the state reflects change number `seq`, at most
    /// `limit`. Returns whether it does.
    pub async fn wait_seq(&self, seq: u64, limit: std::time::Duration) -> bool {
        let mut rx = self.seq.subscribe();
        if self.read().seq >= seq {
            return true;
        }
        let reached = tokio::time::timeout(limit, rx.wait_for(|s| *s >= seq)).await;
        matches!(reached, Ok(Ok(_)))
    }

    pub(crate) fn set_task(&self, task: tokio::task::AbortHandle) {
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops the shard's subscription task.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl Drop for ShardHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every shard's handle, by id.
#[derive(Default)]
pub struct Shards {
    handles: RwLock<HashMap<ShardId, Arc<ShardHandle>>>,
}

impl Shards {
    /// The handle of `shard`, if the map has it.
    pub fn get(&self, shard: ShardId) -> Option<Arc<ShardHandle>> {
        self.handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&shard)
            .cloned()
    }

    /// Every handle.
    pub fn all(&self) -> Vec<Arc<ShardHandle>> {
        self.handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Brings the handles in line with `map`: returns the handles created
    /// (their subscriptions are the caller's to start); stops and drops
    /// those of shards no longer in the map.
    pub fn reconcile(&self, map: &ShardMap, update_buffer: usize) -> Vec<Arc<ShardHandle>> {
        let mut handles = self.handles.write().unwrap_or_else(|e| e.into_inner());
        handles.retain(|id, handle| {
            let keep = map.shards.contains_key(id);
            if !keep {
                tracing::info!(shard = id, "shard left the map; unsubscribing");
                handle.stop();
            }
            keep
        });
        let mut created = Vec::new();
        for (id, record) in &map.shards {
            if !handles.contains_key(id) {
                let handle = Arc::new(ShardHandle::new(&record.descriptor, update_buffer));
                handles.insert(*id, handle.clone());
                created.push(handle);
            }
        }
        created
    }

    /// Stops every subscription.
    pub fn stop_all(&self) {
        for handle in self.all() {
            handle.stop();
        }
    }
}
