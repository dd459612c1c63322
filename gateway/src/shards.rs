//! The registry of shard states: one [`ShardHandle`] per shard of the map,
//! each fed by exactly one subscription task.
//!
//! [`Shards::reconcile`] runs on every new map: it starts a handle and its
//! subscription for each new shard and stops those of shards that left the
//! map. Readers take a handle's state under a short read lock; the
//! subscription task is the only writer.
//!
//! The registry announces its own changes: every handle added (a new shard
//! of the map, a split's child), replaced (a child adopted over the handle
//! the map made) or removed bumps a generation number that
//! [`Shards::watch`] hands out. Whoever keeps per-shard work (the
//! websocket fan-out, `ws::fanout`) waits on it instead of polling, and
//! reads the handles again when it moves.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use checkraft_proto::{BoxSet, ShardDescriptor, ShardId, ShardMap};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

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
    /// Change number `seq` split the shard: `child` (registered already)
    /// owns `[at, end)` from `seq` on. No box changed.
    Split {
        /// The shard (the parent).
        shard: ShardId,
        /// The split's change number.
        seq: u64,
        /// The child.
        child: ShardId,
        /// The child's first box.
        at: u64,
        /// One past the child's last box.
        end: u64,
    },
    /// Change number `seq` froze the shard for a merge: no change follows
    /// on this shard (unless the merge is rolled back).
    Frozen {
        /// The shard.
        shard: ShardId,
        /// The freeze's change number.
        seq: u64,
    },
    /// Change number `seq` merged the frozen `right` into the shard, which
    /// now also owns `[start, end)`. No box changed.
    Merged {
        /// The shard (the left one).
        shard: ShardId,
        /// The merge's change number.
        seq: u64,
        /// The absorbed shard.
        right: ShardId,
        /// Its final change number.
        right_seq: u64,
        /// Its first box.
        start: u64,
        /// One past its last box.
        end: u64,
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

/// A split's child's feed from its birth, not yet taken by a fan-out.
pub struct Inherited {
    /// Every update since the birth.
    pub feed: broadcast::Receiver<Arc<ShardUpdate>>,
    /// The birth's seq (the parent's split).
    pub seq: u64,
    /// When the child was born here.
    pub since: Instant,
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
    /// For a shard born by a split this gateway saw: its feed from birth,
    /// until the parent's fan-out takes it over (see `ws::fanout`).
    inherited_feed: std::sync::Mutex<Option<Inherited>>,
    /// Born by a split this gateway saw, and not in the map yet: kept, and
    /// followed, until the map records it.
    from_split: std::sync::atomic::AtomicBool,
    /// Set by the one fan-out task that serves this handle.
    fanout: std::sync::atomic::AtomicBool,
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
            inherited_feed: std::sync::Mutex::new(None),
            from_split: std::sync::atomic::AtomicBool::new(false),
            fanout: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// True for the one caller that gets to start this handle's fan-out.
    pub fn claim_fanout(&self) -> bool {
        !self.fanout.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// A handle for a split's child, with its state as of its birth and
    /// a feed subscribed from that point.
    pub fn born(state: ShardState, update_buffer: usize) -> Self {
        let seq = state.seq;
        let handle = Self {
            id: state.shard,
            state: RwLock::new(state),
            seq: watch::channel(seq).0,
            committed: watch::channel(0).0,
            updates: broadcast::channel(update_buffer).0,
            task: std::sync::Mutex::new(None),
            inherited_feed: std::sync::Mutex::new(None),
            from_split: std::sync::atomic::AtomicBool::new(true),
            fanout: std::sync::atomic::AtomicBool::new(false),
        };
        let feed = handle.updates.subscribe();
        *handle
            .inherited_feed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Inherited {
            feed,
            seq,
            since: Instant::now(),
        });
        handle
    }

    /// The feed from birth of a split's child, for the fan-out that takes
    /// over its chunks (once), with when it was created.
    pub fn take_inherited_feed(&self) -> Option<Inherited> {
        self.inherited_feed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// True while the parent's fan-out has not taken this child's feed
    /// over; `since` is when the child was born.
    pub fn awaits_parent(&self) -> Option<Instant> {
        self.inherited_feed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|i| i.since)
    }

    /// True for a split's child that the map does not list yet.
    pub fn unrecorded_child(&self) -> bool {
        self.from_split.load(std::sync::atomic::Ordering::Relaxed)
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
pub struct Shards {
    handles: RwLock<HashMap<ShardId, Arc<ShardHandle>>>,
    /// Wakes the reconcile loop when a stream changed a shard's range.
    range_changed: tokio::sync::Notify,
    /// Bumped whenever a handle is added, replaced or removed.
    ///
    /// A `watch` of a generation rather than a broadcast of events: a
    /// subscriber needs to know *that* the set changed and then reads it
    /// ([`Shards::all`]), which tells it what was added or removed (a
    /// replaced handle is a new `Arc`, with its own
    /// [`ShardHandle::claim_fanout`]). A watch cannot lag or drop a
    /// notice (a broadcast receiver that lags must rescan anyway), folds a
    /// burst (a map with many new shards) into one wake-up, and needs no
    /// receiver to exist when it is bumped.
    generation: watch::Sender<u64>,
}

impl Default for Shards {
    fn default() -> Self {
        Self {
            handles: RwLock::new(HashMap::new()),
            range_changed: tokio::sync::Notify::new(),
            generation: watch::channel(0).0,
        }
    }
}

impl Shards {
    /// The registry's generation: it moves on every handle added,
    /// replaced or removed (see [`Self::all`] for the new set). Bumps that
    /// come close together may be seen as one.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Tells the watchers that the set of handles changed.
    fn announce(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The loaded handle whose state holds box `index`, if any.
    pub fn covering(&self, index: u64) -> Option<Arc<ShardHandle>> {
        self.all().into_iter().find(|h| {
            let state = h.read();
            state.loaded && state.start <= index && index < state.end
        })
    }

    /// The shard to send a write of box `index` to. The map's owner,
    /// unless this gateway's change streams are ahead of the map (a split
    /// or merge applied and not recorded yet): then the loaded, unfrozen
    /// state that holds the box, so the write does not wait for the map.
    pub fn route(&self, map: &ShardMap, index: u64) -> Option<ShardId> {
        let owner = map.shard_for(index).map(|r| r.descriptor.shard);
        let holds = |state: &ShardState| {
            state.start <= index && index < state.end && state.frozen_into.is_none()
        };
        if let Some(id) = owner {
            if self.get(id).is_some_and(|h| holds(&h.read())) {
                return Some(id);
            }
        }
        self.all()
            .into_iter()
            .filter_map(|h| {
                let state = h.read();
                (state.loaded && holds(&state)).then_some((state.epoch, h.id))
            })
            .max()
            .map(|(_, id)| id)
            .or(owner)
    }

    /// `shard`'s range and epoch as its change stream last said, when that
    /// is newer than what `map` records (or `map` does not list it yet).
    pub fn ahead_of(&self, map: &ShardMap, shard: ShardId) -> Option<ShardDescriptor> {
        let handle = self.get(shard)?;
        let state = handle.read();
        let recorded = map.shards.get(&shard).map(|r| r.descriptor.epoch);
        (state.loaded && recorded.is_none_or(|e| state.epoch > e)).then(|| ShardDescriptor {
            shard,
            start: state.start,
            end: state.end,
            epoch: state.epoch,
        })
    }

    /// Tells the reconcile loop that a stream changed a shard's range.
    pub fn range_changed(&self) {
        self.range_changed.notify_one();
    }

    /// Resolves when [`Self::range_changed`] was called.
    pub async fn recheck(&self) {
        self.range_changed.notified().await;
    }

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

    /// Registers a split's child that a parent's change stream announced,
    /// replacing a handle the map made for it meanwhile (the caller starts
    /// its subscription).
    pub fn adopt(&self, state: ShardState, update_buffer: usize) -> Arc<ShardHandle> {
        let handle = Arc::new(ShardHandle::born(state, update_buffer));
        let mut handles = self.handles.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = handles.insert(handle.id, handle.clone()) {
            tracing::info!(
                shard = handle.id,
                "the split's child replaces the handle the map made"
            );
            old.stop();
        }
        drop(handles);
        self.announce();
        handle
    }

    /// Brings the handles in line with `map`: returns the handles created
    /// (their subscriptions are the caller's to start); stops and drops
    /// those of shards no longer in the map. A shard whose range another
    /// handle's state still covers is not created: that is a split the
    /// parent's stream has not delivered yet, and the parent's
    /// subscription will register the child ([`Shards::adopt`]).
    pub fn reconcile(&self, map: &ShardMap, update_buffer: usize) -> Vec<Arc<ShardHandle>> {
        let covered: Vec<(ShardId, u64, u64)> = self
            .all()
            .iter()
            .map(|h| {
                let state = h.read();
                (h.id, state.start, state.end)
            })
            .collect();
        let mut handles = self.handles.write().unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        handles.retain(|id, handle| {
            let listed = map.shards.contains_key(id);
            if listed {
                handle
                    .from_split
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            let keep = listed || handle.unrecorded_child();
            if !keep {
                tracing::info!(shard = id, "shard left the map; unsubscribing");
                handle.stop();
                removed += 1;
            }
            keep
        });
        let mut created = Vec::new();
        for (id, record) in &map.shards {
            let d = &record.descriptor;
            let unsplit = covered
                .iter()
                .any(|&(other, start, end)| other != *id && start <= d.start && d.end <= end);
            if !handles.contains_key(id) && !unsplit {
                let handle = Arc::new(ShardHandle::new(&record.descriptor, update_buffer));
                handles.insert(*id, handle.clone());
                created.push(handle);
            }
        }
        drop(handles);
        if removed > 0 || !created.is_empty() {
            self.announce();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::test_map;

    #[test]
    fn the_registry_announces_handles_added_replaced_and_removed() {
        let shards = Shards::default();
        let mut watch = shards.watch();
        let map = test_map(&["127.0.0.1:1"], 3, 1);
        assert!(!watch.has_changed().unwrap());

        let created = shards.reconcile(&map, 16);
        assert_eq!(created.len(), 1);
        assert!(watch.has_changed().unwrap(), "added");
        watch.borrow_and_update();

        assert!(shards.reconcile(&map, 16).is_empty());
        assert!(!watch.has_changed().unwrap(), "nothing changed");

        // A split's child adopted over the handle the map made: a new
        // handle, which the watchers must hear of.
        let child = ShardState::new(&map.shards[&3].descriptor);
        let adopted = shards.adopt(child, 16);
        assert!(watch.has_changed().unwrap(), "replaced");
        watch.borrow_and_update();
        assert!(!Arc::ptr_eq(&adopted, &created[0]));
        assert!(Arc::ptr_eq(&shards.get(3).unwrap(), &adopted));

        // Listed by the map now: kept, no notice.
        assert!(shards.reconcile(&map, 16).is_empty());
        assert!(!watch.has_changed().unwrap());

        let mut empty = map.clone();
        empty.shards.clear();
        shards.reconcile(&empty, 16);
        assert!(watch.has_changed().unwrap(), "removed");
        assert!(shards.all().is_empty());
    }
}
