//! Per-shard fan-out: the shard's update feed becomes per-chunk `Update`s.
//!
//! One task per shard handle. It subscribes to the feed, then takes the
//! state's `seq` as its base: every change after it is in the feed. Changes
//! are folded into per-chunk **net** entries: one per changed box, with its
//! last value, however often it changed in the chunk's pending window. (A
//! box that ends where it started is still sent, with that value: a client
//! that fetched the chunk inside the window holds the value in between,
//! and would otherwise keep it with no way to notice; docs/protocol.md,
//! "Coalescing".) Every `ws_fanout_tick_ms` the chunks that are due (each at its
//! own tick, [`super::pace`]: the short tick while quiet, longer while
//! hot) get ONE encoded `Update` shared by all their subscribers
//! ([`super::budget::UpdateFrame`]), with `prev_version` = the version of
//! the chunk's previous Update (the base for the first one) and `version`
//! = the last seq folded in. So a client holding any valid version in
//! `[prev_version, version)` gets exactly the net changes it lacks
//! (docs/protocol.md's rule). A connection over its own budget holds and
//! merges them ([`super::budget`]).
//!
//! A state reset (snapshot) or a lagging feed loses that chain: the chunks
//! of the shard start over from the current seq, and their subscribers get
//! `Resync{StateReset}`.
//!
//! The manager also installs the scrape-time probe of the connections'
//! send queues (`queue_depth`), the gateway's fan-out queue depth.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use checkraft_proto::ws::{ResyncReason, UpdateEntry};
use checkraft_proto::ShardId;
use tokio::sync::broadcast::error::RecvError;

use super::budget::UpdateFrame;
use super::pace::{ChunkPace, PaceConfig};
use super::Hub;
use crate::shards::{ShardHandle, ShardUpdate};

/// Messages queued to `hub`'s connections and not yet written: the total
/// and the longest single queue. Takes each outbox's lock once.
fn queue_depth(hub: &Hub) -> (usize, usize) {
    let registry = hub.registry();
    registry
        .conns
        .values()
        .map(|outbox| outbox.len())
        .fold((0, 0), |(total, max), len| (total + len, max.max(len)))
}

/// Keeps the send-queue gauges current at every scrape, while `hub` lives.
fn install_queue_probe(hub: &Arc<Hub>) {
    let weak = Arc::downgrade(hub);
    hub.gateway.metrics.on_render(move || {
        let Some(hub) = weak.upgrade() else {
            return false;
        };
        let (total, max) = queue_depth(&hub);
        let metrics = &hub.gateway.metrics;
        metrics
            .ws_send_queue
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        metrics
            .ws_send_queue_max
            .set(i64::try_from(max).unwrap_or(i64::MAX));
        true
    });
}

/// Starts one fan-out task per shard handle, and again for a shard whose
/// handle was replaced.
pub async fn manager(hub: Arc<Hub>) {
    install_queue_probe(&hub);
    let mut tasks: HashMap<ShardId, Weak<ShardHandle>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = hub.shutdown.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        for handle in hub.gateway.shards.all() {
            let known = tasks
                .get(&handle.id)
                .and_then(Weak::upgrade)
                .is_some_and(|old| Arc::ptr_eq(&old, &handle));
            if !known {
                tasks.insert(handle.id, Arc::downgrade(&handle));
                tokio::spawn(ShardFanout::new(hub.clone(), &handle).run());
            }
        }
        tasks.retain(|_, weak| weak.strong_count() > 0);
    }
}

struct ShardFanout {
    hub: Arc<Hub>,
    shard: ShardId,
    handle: Weak<ShardHandle>,
    feed: tokio::sync::broadcast::Receiver<Arc<ShardUpdate>>,
    chunk_size: u32,
    /// The seq the chain of every chunk without an Update starts from.
    base: u64,
    /// The last seq folded in.
    seq: u64,
    /// Chunk → version of its last Update.
    last: HashMap<u32, u64>,
    /// Chunk → offset → its last value, not yet sent.
    pending: BTreeMap<u32, BTreeMap<u16, bool>>,
    /// Chunk → its pace (tick and byte rate).
    pace: HashMap<u32, ChunkPace>,
    pace_config: PaceConfig,
}

impl ShardFanout {
    fn new(hub: Arc<Hub>, handle: &Arc<ShardHandle>) -> Self {
        // Subscribe first, then read the seq: nothing falls in between.
        let feed = handle.subscribe();
        let base = handle.read().seq;
        let chunk_size = hub
            .gateway
            .map
            .current()
            .and_then(|m| m.grid)
            .map_or(1, |g| g.chunk_size.max(1));
        hub.book().bases.insert(handle.id, base);
        let config = &hub.gateway.config;
        let pace_config = PaceConfig {
            tick: Duration::from_millis(config.ws_fanout_tick_ms),
            max_tick: Duration::from_millis(config.ws_coalesce_max_ms),
            budget: config.ws_budget_bytes_per_second as f64,
            window: Duration::from_millis(config.ws_budget_window_ms),
        };
        Self {
            hub,
            shard: handle.id,
            handle: Arc::downgrade(handle),
            feed,
            chunk_size,
            base,
            seq: base,
            last: HashMap::new(),
            pending: BTreeMap::new(),
            pace: HashMap::new(),
            pace_config,
        }
    }

    async fn run(mut self) {
        let tick = Duration::from_millis(self.hub.gateway.config.ws_fanout_tick_ms);
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.hub.shutdown.clone();
        loop {
            tokio::select! {
                update = self.feed.recv() => match update {
                    Ok(update) => self.fold(&update),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(shard = self.shard, missed = n, "fan-out lagged; resyncing");
                        self.hub.gateway.metrics.ws_fanout_lags.inc();
                        let Some(handle) = self.handle.upgrade() else { break };
                        let seq = handle.read().seq;
                        drop(handle);
                        self.reset(seq);
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = ticker.tick() => self.flush(false),
                _ = shutdown.changed() => break,
            }
        }
    }

    fn fold(&mut self, update: &ShardUpdate) {
        match update {
            ShardUpdate::Changes { seq, sets, .. } => {
                if *seq <= self.seq {
                    return;
                }
                self.seq = *seq;
                let now = Instant::now();
                for &(index, checked) in sets {
                    let chunk = index / self.chunk_size;
                    let offset = (index % self.chunk_size) as u16;
                    let entries = self.pending.entry(chunk).or_insert_with(|| {
                        let config = &self.pace_config;
                        self.pace
                            .entry(chunk)
                            .or_insert_with(|| ChunkPace::new(config, now))
                            .woke(config, now);
                        BTreeMap::new()
                    });
                    entries.insert(offset, checked);
                }
            }
            ShardUpdate::Reset { seq, .. } => {
                self.flush(true);
                self.reset(*seq);
            }
        }
    }

    /// Sends one Update per dirty chunk that is due (every dirty chunk
    /// when `all`), with its net changes.
    fn flush(&mut self, all: bool) {
        if self.pending.is_empty() {
            return;
        }
        let version = self.seq;
        let now = Instant::now();
        let config = self.pace_config;
        let due: Vec<u32> = self
            .pending
            .keys()
            .copied()
            .filter(|c| all || self.pace.get(c).is_none_or(|p| p.due(&config, now)))
            .collect();
        let mut announced = Vec::with_capacity(due.len());
        for chunk in due {
            let Some(changes) = self.pending.remove(&chunk) else {
                continue;
            };
            let entries: Vec<UpdateEntry> = changes
                .into_iter()
                .map(|(offset, checked)| UpdateEntry { offset, checked })
                .collect();
            let prev_version = self.last.insert(chunk, version).unwrap_or(self.base);
            let frame = UpdateFrame::new(chunk, prev_version, version, entries);
            self.pace
                .entry(chunk)
                .or_insert_with(|| ChunkPace::new(&config, now))
                .sent(frame.bytes.len(), &config, now);
            self.hub.send_to_chunk(&frame);
            announced.push(chunk);
        }
        if announced.is_empty() {
            return;
        }
        let mut book = self.hub.book();
        for chunk in announced {
            book.chunks.insert(chunk, version);
        }
    }

    /// Starts every chunk of the shard over from `seq` and asks their
    /// subscribers to refetch.
    fn reset(&mut self, seq: u64) {
        self.pending.clear();
        self.base = seq;
        self.seq = seq;
        let chunks: Vec<u32> = self.last.drain().map(|(c, _)| c).collect();
        {
            let mut book = self.hub.book();
            book.bases.insert(self.shard, seq);
            for chunk in chunks {
                book.chunks.remove(&chunk);
            }
        }
        let Some(handle) = self.handle.upgrade() else {
            return;
        };
        let (start, end) = {
            let state = handle.read();
            (state.start, state.end)
        };
        let size = u64::from(self.chunk_size);
        let first = u32::try_from(start / size).unwrap_or(u32::MAX);
        let end = u32::try_from(end.div_ceil(size)).unwrap_or(u32::MAX);
        self.hub.resync_range(first, end, ResyncReason::StateReset);
    }
}
