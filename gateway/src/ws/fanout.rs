//! Per-shard fan-out: the shard's update feed becomes per-chunk `Update`s.
//!
//! The fan-out sees the gateway through a narrow handle, [`Sources`]: the
//! shard registry, the map follower (for the grid's chunk size), the pacing
//! settings and the metrics; never the writer or the node clients. Its
//! [`manager`] starts one task per shard handle when the registry
//! announces a handle added or replaced ([`crate::shards::Shards::watch`];
//! no polling). A removed handle's task ends by itself: the handle's feed
//! closes once it is dropped.
//!
//! Each task subscribes to the handle's feed, then takes the
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
//! Splits and merges keep the chains (`docs/resharding.md`): on a split the
//! parent's task flushes, then starts the child's task itself, with the
//! parent's base, the child's chunks' last versions and the child's feed
//! from birth. On a merge the right shard's task flushes at its freeze and
//! records its final seq; the left's task then continues the right chunks'
//! chains from the book (holding their changes back until the right task
//! has flushed, at most `MERGE_WAIT` (2 s); past that, those chunks resync).
//!
//! A split's child the manager sees before the parent's task took it over
//! waits: the manager starts it itself only if the parent has not within
//! `MERGE_WAIT`, with a timer armed only while such a child waits.
//!
//! Each task reports, once per tick, what it holds back: the box changes
//! pending (`ws_pending_changes`) and the chunks among them on a tick
//! longer than `ws_fanout_tick_ms` (`ws_long_tick_chunks`); and, for every
//! Update, how long its oldest change waited (`ws_update_hold_seconds`).
//!
//! The manager also installs the scrape-time probe of the connections'
//! send queues (`queue_depth`), the gateway's fan-out queue depth, and of
//! the Updates held for connections over their budget.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use checkraft_proto::ws::{ResyncReason, UpdateEntry};
use checkraft_proto::ShardId;
use tokio::sync::broadcast::error::RecvError;

use super::budget::UpdateFrame;
use super::pace::{ChunkPace, PaceConfig};
use super::Hub;
use crate::config::GatewayConfig;
use crate::map::MapFollower;
use crate::metrics::Metrics;
use crate::shards::{ShardHandle, ShardUpdate, Shards};

/// What the fan-out needs from the gateway, and nothing more.
#[derive(Clone)]
pub struct Sources {
    /// The shard handles (their feeds and states) and the notices of
    /// handles added, replaced or removed.
    pub shards: Arc<Shards>,
    /// The map, for the grid's chunk size.
    pub map: Arc<MapFollower>,
    /// Where the fan-out's metrics go.
    pub metrics: Arc<Metrics>,
    /// Each chunk's pace: the short tick (`ws_fanout_tick_ms`, also the
    /// tasks' ticker), the longest one and the budget it is measured
    /// against.
    pub pace: PaceConfig,
}

impl Sources {
    /// The fan-out's view of a gateway's parts.
    pub fn new(
        shards: Arc<Shards>,
        map: Arc<MapFollower>,
        metrics: Arc<Metrics>,
        config: &GatewayConfig,
    ) -> Self {
        Self {
            shards,
            map,
            metrics,
            pace: PaceConfig {
                tick: Duration::from_millis(config.ws_fanout_tick_ms),
                max_tick: Duration::from_millis(config.ws_coalesce_max_ms),
                budget: config.ws_budget_bytes_per_second as f64,
                window: Duration::from_millis(config.ws_budget_window_ms),
            },
        }
    }
}

/// How long a merged shard's chunks wait for the absorbed shard's fan-out
/// to flush its last updates before they resync instead.
const MERGE_WAIT: Duration = Duration::from_secs(2);

/// A merge whose right-hand chains are not known yet.
struct PendingMerge {
    right: ShardId,
    right_seq: u64,
    chunks: std::ops::Range<u32>,
    until: tokio::time::Instant,
}

/// What `hub`'s connections hold back, read once per outbox lock:
/// messages queued and not yet written (the total and the longest single
/// queue), and Updates held over budget (one per connection and chunk).
fn queue_depth(hub: &Hub) -> (usize, usize, usize) {
    let registry = hub.registry();
    registry
        .conns
        .values()
        .map(|outbox| outbox.depth())
        .fold((0, 0, 0), |(total, max, held), (len, h)| {
            (total + len, max.max(len), held + h)
        })
}

/// Keeps the send-queue and held-Update gauges current at every scrape,
/// while `hub` lives.
fn install_queue_probe(hub: &Arc<Hub>, metrics: &Arc<Metrics>) {
    let weak = Arc::downgrade(hub);
    let gauges = metrics.clone();
    metrics.on_render(move || {
        let Some(hub) = weak.upgrade() else {
            return false;
        };
        let (total, max, held) = queue_depth(&hub);
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauges.ws_send_queue.set(gauge(total));
        gauges.ws_send_queue_max.set(gauge(max));
        gauges.ws_budget_held_updates.set(gauge(held));
        true
    });
}

/// Starts one fan-out task per shard handle: for each handle the registry
/// announces (a new shard, or a new handle for a shard), when it announces
/// it. Wakes on a timer only while a split's child waits for its parent's
/// task (at most `MERGE_WAIT`).
pub async fn manager(hub: Arc<Hub>, sources: Sources) {
    install_queue_probe(&hub, &sources.metrics);
    let mut registry = sources.shards.watch();
    let mut shutdown = hub.shutdown.clone();
    loop {
        // Marked seen before the scan: a change during it wakes us again.
        registry.borrow_and_update();
        let waiting = start_fanouts(&hub, &sources);
        let child_waits = async {
            match waiting {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = registry.changed() => if changed.is_err() { return },
            () = child_waits => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Starts a task for every handle without one, except split children
/// still waiting for their parent's task; returns when the first of those
/// stops waiting.
fn start_fanouts(hub: &Arc<Hub>, sources: &Sources) -> Option<tokio::time::Instant> {
    let now = tokio::time::Instant::now();
    let mut next: Option<tokio::time::Instant> = None;
    for handle in sources.shards.all() {
        // A split's child: the parent's task starts it, with the chains;
        // only if that does not happen soon, start it here.
        if let Some(until) = handle
            .awaits_parent()
            .map(|since| since + MERGE_WAIT)
            .filter(|until| *until > now)
        {
            next = Some(next.map_or(until, |n| n.min(until)));
            continue;
        }
        if handle.claim_fanout() {
            tokio::spawn(ShardFanout::new(hub.clone(), sources.clone(), &handle).run());
        }
    }
    next
}

/// One chunk's changes not sent yet.
struct Pending {
    /// When its first change was folded in.
    since: Instant,
    /// Offset → its last value.
    boxes: BTreeMap<u16, bool>,
}

struct ShardFanout {
    hub: Arc<Hub>,
    sources: Sources,
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
    /// Chunk → its changes not sent yet.
    pending: BTreeMap<u32, Pending>,
    /// Chunk → its pace (tick and byte rate).
    pace: HashMap<u32, ChunkPace>,
    pace_config: PaceConfig,
    /// A merge waiting for the absorbed shard's chains.
    merging: Option<PendingMerge>,
    /// This task's share of the gauges `ws_pending_changes` and
    /// `ws_long_tick_chunks`, as last reported.
    reported: (i64, i64),
}

impl ShardFanout {
    fn new(hub: Arc<Hub>, sources: Sources, handle: &Arc<ShardHandle>) -> Self {
        // Subscribe first, then read the seq: nothing falls in between.
        // (A split's child the parent did not hand over: its feed from
        // birth, so its base is its birth seq.)
        let (feed, base) = match handle.take_inherited_feed() {
            Some(inherited) => (inherited.feed, inherited.seq),
            None => (handle.subscribe(), handle.read().seq),
        };
        let chunk_size = sources
            .map
            .current()
            .and_then(|m| m.grid)
            .map_or(1, |g| g.chunk_size.max(1));
        hub.book().bases.insert(handle.id, base);
        let pace_config = sources.pace;
        Self {
            hub,
            sources,
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
            merging: None,
            reported: (0, 0),
        }
    }

    /// The chunks `[start, end)` covers.
    fn chunks(&self, start: u64, end: u64) -> std::ops::Range<u32> {
        let size = u64::from(self.chunk_size);
        let first = u32::try_from(start / size).unwrap_or(u32::MAX);
        let end = u32::try_from(end.div_ceil(size)).unwrap_or(u32::MAX);
        first..end
    }

    /// Starts the fan-out of a split's child: it continues the chains of
    /// the chunks it takes over, from the child's birth.
    fn hand_over(&mut self, child: ShardId, at: u64, end: u64) {
        let Some(handle) = self.sources.shards.get(child) else {
            return;
        };
        if !handle.claim_fanout() {
            return;
        }
        let Some(inherited) = handle.take_inherited_feed() else {
            // Started elsewhere meanwhile? Then it has the feed; else
            // start over from the state's seq.
            tokio::spawn(ShardFanout::new(self.hub.clone(), self.sources.clone(), &handle).run());
            return;
        };
        let chunks = self.chunks(at, end);
        let last: HashMap<u32, u64> = self
            .last
            .iter()
            .filter(|(c, _)| chunks.contains(c))
            .map(|(c, v)| (*c, *v))
            .collect();
        self.last.retain(|c, _| !chunks.contains(c));
        let pace: HashMap<u32, ChunkPace> = self
            .pace
            .iter()
            .filter(|(c, _)| chunks.contains(c))
            .map(|(c, p)| (*c, p.clone()))
            .collect();
        self.pace.retain(|c, _| !chunks.contains(c));
        self.hub.book().bases.insert(child, self.base);
        let task = ShardFanout {
            hub: self.hub.clone(),
            sources: self.sources.clone(),
            shard: child,
            handle: Arc::downgrade(&handle),
            feed: inherited.feed,
            chunk_size: self.chunk_size,
            base: self.base,
            seq: inherited.seq,
            last,
            pending: BTreeMap::new(),
            pace,
            pace_config: self.pace_config,
            merging: None,
            reported: (0, 0),
        };
        tokio::spawn(task.run());
    }

    /// Continues the chains of a merged shard's chunks when its fan-out
    /// has flushed its last updates; resyncs them when it did not in time.
    fn settle_merge(&mut self) {
        let Some(m) = &self.merging else { return };
        let finished = {
            let book = self.hub.book();
            (book.finished.get(&m.right) == Some(&m.right_seq)).then(|| {
                let base = book.bases.get(&m.right).copied().unwrap_or(m.right_seq);
                m.chunks
                    .clone()
                    .map(|c| (c, book.chunks.get(&c).copied().unwrap_or(base)))
                    .collect::<Vec<_>>()
            })
        };
        match finished {
            Some(chains) => {
                let mut book = self.hub.book();
                for (chunk, version) in chains {
                    self.last.insert(chunk, version);
                    book.chunks.insert(chunk, version);
                }
                self.merging = None;
            }
            None if tokio::time::Instant::now() >= m.until => {
                let chunks = m.chunks.clone();
                tracing::warn!(
                    shard = self.shard,
                    right = m.right,
                    "the merged shard's updates did not all arrive; its chunks resync"
                );
                {
                    let mut book = self.hub.book();
                    for chunk in chunks.clone() {
                        book.chunks.insert(chunk, self.seq);
                        self.last.insert(chunk, self.seq);
                    }
                }
                self.pending.retain(|c, _| !chunks.contains(c));
                self.merging = None;
                self.hub
                    .resync_range(chunks.start, chunks.end, ResyncReason::StateReset);
            }
            None => {}
        }
    }

    async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.pace_config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.hub.shutdown.clone();
        loop {
            tokio::select! {
                update = self.feed.recv() => match update {
                    Ok(update) => self.fold(&update),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(shard = self.shard, missed = n, "fan-out lagged; resyncing");
                        self.sources.metrics.ws_fanout_lags.inc();
                        let Some(handle) = self.handle.upgrade() else { break };
                        let seq = handle.read().seq;
                        drop(handle);
                        self.reset(seq);
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = ticker.tick() => {
                    self.flush(false);
                    self.report();
                }
                _ = shutdown.changed() => break,
            }
        }
        // What this task held is gone with it.
        self.pending.clear();
        self.report();
    }

    /// Brings this task's share of the held-change gauges up to date:
    /// the box changes pending, and the chunks among them waiting for a
    /// tick longer than the short one. Once per tick, over the dirty
    /// chunks only.
    fn report(&mut self) {
        let config = &self.pace_config;
        let (mut boxes, mut long) = (0i64, 0i64);
        for (chunk, pending) in &self.pending {
            boxes += pending.boxes.len() as i64;
            if self.pace.get(chunk).is_some_and(|p| p.is_long(config)) {
                long += 1;
            }
        }
        let metrics = &self.sources.metrics;
        let (was_boxes, was_long) = self.reported;
        if boxes != was_boxes {
            metrics.ws_pending_changes.inc_by(boxes - was_boxes);
        }
        if long != was_long {
            metrics.ws_long_tick_chunks.inc_by(long - was_long);
        }
        self.reported = (boxes, long);
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
                    let pending = self.pending.entry(chunk).or_insert_with(|| {
                        let config = &self.pace_config;
                        self.pace
                            .entry(chunk)
                            .or_insert_with(|| ChunkPace::new(config, now))
                            .woke(config, now);
                        Pending {
                            since: now,
                            boxes: BTreeMap::new(),
                        }
                    });
                    pending.boxes.insert(offset, checked);
                }
            }
            ShardUpdate::Reset { seq, .. } => {
                self.flush(true);
                self.reset(*seq);
            }
            ShardUpdate::Split {
                seq,
                child,
                at,
                end,
                ..
            } => {
                self.flush(true);
                self.seq = self.seq.max(*seq);
                self.hand_over(*child, *at, *end);
            }
            ShardUpdate::Frozen { seq, .. } => {
                self.flush(true);
                self.seq = self.seq.max(*seq);
                self.hub.book().finished.insert(self.shard, *seq);
            }
            ShardUpdate::Merged {
                seq,
                right,
                right_seq,
                start,
                end,
                ..
            } => {
                self.flush(true);
                self.seq = self.seq.max(*seq);
                self.merging = Some(PendingMerge {
                    right: *right,
                    right_seq: *right_seq,
                    chunks: self.chunks(*start, *end),
                    until: tokio::time::Instant::now() + MERGE_WAIT,
                });
                self.settle_merge();
            }
        }
    }

    /// Sends one Update per dirty chunk that is due (every dirty chunk
    /// when `all`), with its net changes. Chunks of a merge whose chains
    /// are not known yet wait.
    fn flush(&mut self, all: bool) {
        self.settle_merge();
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
            .filter(|c| self.merging.as_ref().is_none_or(|m| !m.chunks.contains(c)))
            .collect();
        let mut announced = Vec::with_capacity(due.len());
        for chunk in due {
            let Some(changes) = self.pending.remove(&chunk) else {
                continue;
            };
            self.sources
                .metrics
                .ws_update_hold
                .observe(now.saturating_duration_since(changes.since).as_secs_f64());
            let entries: Vec<UpdateEntry> = changes
                .boxes
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;
    use crate::gateway::Gateway;
    use crate::map::test_map;
    use crate::state::ShardState;
    use crate::ws::backend::Backend;

    /// Lets the spawned tasks run without moving the (paused) clock.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_manager_starts_fanouts_when_the_registry_announces_them() {
        let config = GatewayConfig {
            gateway_secret: Some("a-gateway-secret-of-some-length".into()),
            ..Default::default()
        };
        let gateway = Gateway::new(config).unwrap();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let hub = Hub::new(Backend::new(gateway.clone()), shutdown);
        let sources = Sources::new(
            gateway.shards.clone(),
            gateway.map.clone(),
            gateway.metrics.clone(),
            &gateway.config,
        );
        tokio::spawn(manager(hub, sources));
        settle().await;

        // A new shard: its task starts at the announcement, with no clock
        // tick (a polling manager would wait for its next round).
        let map = test_map(&["127.0.0.1:1"], 1, 1);
        let created = gateway.shards.reconcile(&map, 16);
        settle().await;
        assert!(!created[0].claim_fanout(), "started at once");

        // A split's child waits for its parent's task, then, past
        // MERGE_WAIT, the manager starts it itself.
        let child = ShardState::new(&map.shards[&1].descriptor);
        let child = gateway.shards.adopt(child, 16);
        settle().await;
        assert!(child.awaits_parent().is_some(), "left to the parent");
        tokio::time::sleep(MERGE_WAIT - Duration::from_millis(100)).await;
        settle().await;
        assert!(child.awaits_parent().is_some(), "still left to the parent");
        tokio::time::sleep(Duration::from_millis(200)).await;
        settle().await;
        assert!(child.awaits_parent().is_none(), "taken over by the manager");
        assert!(!child.claim_fanout());
        stop.send_replace(true);
    }
}
