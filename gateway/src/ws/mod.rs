//! The websocket layer: `GET /ws` with the binary protocol of
//! `docs/protocol.md` (codec: [`checkraft_proto::ws`]).
//!
//! - [`upgrade`]: the warp route. It checks `Origin` (403 before the
//!   upgrade), answers 101 itself and builds the stream with
//!   `WebSocketStream::from_raw_socket` and small buffers (warp's own
//!   `ws()` costs ~130 KB per idle connection; this costs a few KB).
//! - [`backend`]: the layer's narrow handle on the gateway, [`Backend`]:
//!   the settings, the metrics, the current map and grid, the checked
//!   count for `Stats`, and the two writes a connection makes (a Set
//!   acknowledged through a callback, a SetMany's boxes in one write).
//!   The [`Hub`] holds it; nothing else of the gateway is in reach.
//! - [`connection`]: one task per connection: Hello, Subscribe,
//!   Unsubscribe, Set (through the batcher, Ack after commit), SetMany
//!   (one write of all its boxes, split by shard, one AckMany after every
//!   part is answered), Ping.
//! - [`fanout`]: one task per shard turns the shard's update feed into
//!   per-chunk `Update`s, coalesced over each chunk's tick ([`pace`]:
//!   `ws_fanout_tick_ms` while quiet, longer while hot), each encoded once
//!   and queued to the connections subscribed to its chunk. It reads the
//!   gateway through [`fanout::Sources`] (shard registry, map, pacing,
//!   metrics), and starts a shard's task when the registry announces its
//!   handle.
//! - [`budget`]: each connection's bandwidth budget
//!   (`ws_budget_bytes_per_second`); over it, its Updates are held and
//!   merged per chunk until it is back under.
//! - [`limits`]: connection caps and Set rate limits (counted in boxes).
//! - [`stats`]: `Stats`, read and encoded once per `ws_stats_interval_ms`
//!   for every connection, made only when it changed, and sent with each
//!   connection's next write (alone after `ws_stats_alone_ms`).
//!
//! Every connection has an [`Outbox`]: a bounded queue of encoded
//! messages, and its [`budget::Budget`] with the Updates held back. Each is built once and shared (`Bytes`): an Update's bytes
//! are the same for all subscribers of its chunk. A connection's task
//! writes everything queued at once (`feed` each frame, then one `flush`:
//! frames queued together leave in one write of up to
//! `ws_write_buffer_bytes`). Updates that find the queue full are dropped
//! and the connection is marked behind; once it drains, the Updates and
//! Versions still queued are discarded and it gets `Resync{FellBehind}`
//! for its subscriptions. So a slow client never makes memory grow.

pub mod backend;
pub mod budget;
pub mod connection;
pub mod fanout;
pub mod limits;
pub mod pace;
pub mod stats;
pub mod upgrade;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use checkraft_proto::ws::{ResyncReason, ServerMessage};
use checkraft_proto::ShardId;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use budget::{Budget, Offer, UpdateFrame};
use limits::Limits;
use stats::{StatsCast, StatsFrame, StatsMark};

pub use backend::Backend;
pub use upgrade::filter;

/// Chunks per `Resync` or `Versions` message at most.
const RUN_MAX: u32 = 256;

/// The type bytes of the messages a `Resync{FellBehind}` of every
/// subscription makes useless: `Update` (list and bitset forms) and
/// `Versions`.
const SUPERSEDED_BY_RESYNC: [u8; 3] = [0x82, 0x88, 0x85];

/// One connection's outgoing queue and subscriptions.
pub struct Outbox {
    state: Mutex<OutState>,
    notify: Notify,
    cap: usize,
}

struct OutState {
    queue: VecDeque<Bytes>,
    behind: bool,
    /// `Versions` rounds still owed to this connection since it subscribed
    /// or was resynced (see [`Hub::broadcast_versions`]).
    versions_due: u8,
    subs: croaring::Bitmap,
    budget: Budget,
    /// The `Stats` it last got.
    stats: StatsMark,
}

impl OutState {
    /// Queues `msg` and charges the budget, or drops it when the queue is
    /// full (marking the connection behind if `mark`).
    fn enqueue(&mut self, msg: Bytes, mark: bool, cap: usize) -> bool {
        if self.queue.len() >= cap {
            if mark {
                self.behind = true;
            }
            return false;
        }
        self.budget.charge(msg.len());
        self.queue.push_back(msg);
        true
    }

    /// Adds the newest `Stats` to a write that goes out anyway.
    fn stats_ride_along(&mut self, stats: &StatsCast, now: Instant) {
        if self.queue.is_empty() {
            return;
        }
        if let Some(frame) = stats.newer_than(self.stats.generation()) {
            self.budget.charge(frame.bytes.len());
            self.queue.push_back(frame.bytes.clone());
            self.stats.sent(&frame, now);
        }
    }

    /// Queues the held Updates once the budget allows (or now, `force`).
    fn release(&mut self, force: bool, cap: usize) {
        for msg in self.budget.release(Instant::now(), force) {
            self.enqueue(msg, true, cap);
        }
    }
}

/// `Versions` rounds a connection gets after a Subscribe or a Resync: the
/// first may reach it while its fetch is under way (and be ignored), the
/// second comes after.
const VERSIONS_ROUNDS_DUE: u8 = 2;

impl Outbox {
    fn new(cap: usize, budget: Budget) -> Self {
        Self {
            state: Mutex::new(OutState {
                queue: VecDeque::new(),
                behind: false,
                versions_due: 0,
                subs: croaring::Bitmap::new(),
                budget,
                // Until the Stats written after Hello is recorded.
                stats: StatsMark::new(None, Instant::now()),
            }),
            notify: Notify::new(),
            cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a droppable message (update, resync, stats, versions). When
    /// the queue is full it is dropped and, if `mark`, the connection is
    /// marked behind. Returns whether it was queued.
    fn push(&self, msg: Bytes, mark: bool) -> bool {
        let mut state = self.lock();
        let queued = state.enqueue(msg, mark, self.cap);
        drop(state);
        if queued {
            self.notify.notify_one();
        }
        queued
    }

    /// Queues an Update of a chunk this connection subscribes to, or holds
    /// it while the connection is over its budget. Returns false when it
    /// was dropped (queue full).
    fn push_update(&self, frame: &UpdateFrame, now: Instant) -> bool {
        let mut state = self.lock();
        let queued = match state.budget.offer(frame, now) {
            Offer::Send => state.enqueue(frame.bytes.clone(), true, self.cap),
            Offer::Held => true,
        };
        drop(state);
        // Also when held: the task re-arms its release timer.
        self.notify.notify_one();
        queued
    }

    /// Queues an answer (Ack, Pong). The connection stops reading while
    /// its queue is over `cap`, which bounds these.
    fn push_reply(&self, msg: Bytes) {
        let mut state = self.lock();
        state.budget.charge(msg.len());
        state.queue.push_back(msg);
        drop(state);
        self.notify.notify_one();
    }

    /// Queues `frame` alone when the connection's last `Stats` is `alone`
    /// old and older than it (see [`stats`]).
    fn stats_alone(&self, frame: &StatsFrame, now: Instant, alone: Duration) {
        let mut state = self.lock();
        if !state.stats.due_alone(frame, now, alone) {
            return;
        }
        let queued = state.enqueue(frame.bytes.clone(), false, self.cap);
        if queued {
            state.stats.sent(frame, now);
        }
        drop(state);
        if queued {
            self.notify.notify_one();
        }
    }

    /// Records the `Stats` written right after Hello.
    fn stats_sent(&self, frame: &StatsFrame, now: Instant) {
        let mut state = self.lock();
        if state.stats.stale(frame) {
            state.stats.sent(frame, now);
        }
    }

    /// When the held Updates may go out, if any are held.
    fn release_at(&self) -> Option<Instant> {
        self.lock().budget.release_at()
    }

    fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Messages queued, and chunks with an Update held over budget.
    fn depth(&self) -> (usize, usize) {
        let state = self.lock();
        (state.queue.len(), state.budget.held())
    }

    /// Everything queued, plus the subscriptions to resync when the
    /// connection had fallen behind. A connection that fell behind gets no
    /// queued Update or Versions: the Resync of every subscription makes
    /// them useless, and it should reach the client as early as possible.
    /// Held Updates whose time has come are released first, and a newer
    /// `Stats` than the connection's rides along with whatever goes out.
    fn take(&self, stats: &StatsCast) -> (VecDeque<Bytes>, Option<Vec<u32>>) {
        let mut state = self.lock();
        if !state.behind {
            state.release(false, self.cap);
        }
        state.stats_ride_along(stats, Instant::now());
        let mut queue = std::mem::take(&mut state.queue);
        let resync = if state.behind {
            state.behind = false;
            state.versions_due = VERSIONS_ROUNDS_DUE;
            state.budget.clear();
            queue.retain(|m| !m.first().is_some_and(|t| SUPERSEDED_BY_RESYNC.contains(t)));
            Some(state.subs.iter().collect())
        } else {
            None
        };
        (queue, resync)
    }

    fn subs(&self) -> Vec<u32> {
        self.lock().subs.iter().collect()
    }

    /// The subscriptions to announce `Versions` of this round: all of them
    /// in a `full` round, else only while rounds are due after a Subscribe
    /// or a Resync. Empty when there is nothing to send.
    /// Held Updates are released first (whatever the budget), so the
    /// Versions that follow them match what the client holds.
    fn versions_round(&self, full: bool) -> Vec<u32> {
        let mut state = self.lock();
        if !full && state.versions_due == 0 {
            return Vec::new();
        }
        state.versions_due = state.versions_due.saturating_sub(1);
        state.release(true, self.cap);
        state.subs.iter().collect()
    }

    /// Owes the connection `Versions` rounds (after a Resync).
    fn versions_due(&self) {
        self.lock().versions_due = VERSIONS_ROUNDS_DUE;
    }
}

/// Every connection's outbox, and who is subscribed to each chunk.
#[derive(Default)]
pub struct Registry {
    conns: HashMap<u64, Arc<Outbox>>,
    by_chunk: HashMap<u32, HashSet<u64>>,
}

impl Registry {
    /// Removes connection `id` from the subscribers of `chunks`, dropping
    /// sets that become empty.
    fn forget<'a>(&mut self, id: u64, chunks: impl IntoIterator<Item = &'a u32>) {
        for chunk in chunks {
            if let Some(set) = self.by_chunk.get_mut(chunk) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_chunk.remove(chunk);
                }
            }
        }
    }
}

/// The versions the fan-out has announced, for `Versions` messages.
#[derive(Default)]
pub struct VersionBook {
    /// Chunk → version of its last `Update`.
    chunks: HashMap<u32, u64>,
    /// Shard → the seq its fan-out started from (or was reset to).
    bases: HashMap<ShardId, u64>,
    /// Shard → its freeze's seq, once its fan-out flushed everything
    /// before it (a merge continues its chains from here).
    finished: HashMap<ShardId, u64>,
}

/// The shared state of the websocket layer.
pub struct Hub {
    /// What it needs from the gateway (settings, metrics, map, counters,
    /// writes), and nothing more.
    backend: Backend,
    /// Caps and rate limits.
    pub limits: Arc<Limits>,
    registry: RwLock<Registry>,
    versions: Mutex<VersionBook>,
    stats: StatsCast,
    next_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    ws_config: WebSocketConfig,
}

/// Splits sorted chunk ids into runs of consecutive ids, at most
/// `RUN_MAX` long: `(first, count)`.
pub fn runs(sorted: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &c in sorted {
        match out.last_mut() {
            Some((first, count)) if *first + *count == c && *count < RUN_MAX => *count += 1,
            _ => out.push((c, 1)),
        }
    }
    out
}

fn resync_messages(chunks: &[u32], reason: ResyncReason) -> Vec<Bytes> {
    runs(chunks)
        .into_iter()
        .map(|(first_chunk, count)| {
            Bytes::from(
                ServerMessage::Resync {
                    first_chunk,
                    count,
                    reason,
                }
                .encode(),
            )
        })
        .collect()
}

fn reason_label(reason: ResyncReason) -> &'static str {
    match reason {
        ResyncReason::StateReset => "state_reset",
        ResyncReason::FellBehind => "fell_behind",
    }
}

impl Hub {
    /// A hub on `backend`; connections close with 1001 when `shutdown`
    /// flips to true.
    pub fn new(backend: Backend, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let config = &backend.config;
        let mut ws_config = WebSocketConfig::default();
        ws_config.read_buffer_size = config.ws_read_buffer_bytes;
        // Frames fed together are written together (one `flush`); the
        // buffer never holds more than this plus one frame before a write.
        ws_config.write_buffer_size = config.ws_write_buffer_bytes;
        ws_config.max_write_buffer_size = (256 << 10).max(2 * config.ws_write_buffer_bytes + 1);
        ws_config.max_message_size = Some(config.ws_max_message_bytes);
        ws_config.max_frame_size = Some(config.ws_max_message_bytes);
        Arc::new(Self {
            limits: Arc::new(Limits::new(config)),
            backend,
            registry: RwLock::new(Registry::default()),
            versions: Mutex::new(VersionBook::default()),
            stats: StatsCast::default(),
            next_id: AtomicU64::new(1),
            shutdown,
            ws_config,
        })
    }

    /// Starts the fan-out and the periodic Stats and Versions.
    pub fn start(self: &Arc<Self>) {
        let sources = self.backend.fanout_sources();
        tokio::spawn(fanout::manager(self.clone(), sources));
        tokio::spawn(self.clone().periodic());
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|e| e.into_inner())
    }

    fn book(&self) -> std::sync::MutexGuard<'_, VersionBook> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self) -> (u64, Arc<Outbox>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let config = &self.backend.config;
        let budget = Budget::new(
            config.ws_budget_bytes_per_second,
            Duration::from_millis(config.ws_budget_window_ms),
            Instant::now(),
        );
        let outbox = Arc::new(Outbox::new(config.ws_send_queue, budget));
        self.registry_mut().conns.insert(id, outbox.clone());
        (id, outbox)
    }

    fn unregister(&self, id: u64, outbox: &Outbox) {
        let subs = outbox.subs();
        let mut registry = self.registry_mut();
        registry.conns.remove(&id);
        registry.forget(id, &subs);
        drop(registry);
        self.backend
            .metrics
            .ws_subscriptions
            .dec_by(subs.len() as i64);
    }

    fn subscribe(&self, id: u64, outbox: &Outbox, chunks: &[u32]) {
        let mut registry = self.registry_mut();
        for &chunk in chunks {
            registry.by_chunk.entry(chunk).or_default().insert(id);
        }
        drop(registry);
        let mut state = outbox.lock();
        for &chunk in chunks {
            state.subs.add(chunk);
        }
        if !chunks.is_empty() {
            state.versions_due = VERSIONS_ROUNDS_DUE;
        }
        drop(state);
        self.backend
            .metrics
            .ws_subscriptions
            .inc_by(chunks.len() as i64);
    }

    fn unsubscribe(&self, id: u64, outbox: &Outbox, chunks: &[u32]) {
        let mut state = outbox.lock();
        for &chunk in chunks {
            state.subs.remove(chunk);
            state.budget.forget(chunk);
        }
        drop(state);
        self.registry_mut().forget(id, chunks);
        self.backend
            .metrics
            .ws_subscriptions
            .dec_by(chunks.len() as i64);
    }

    /// Queues `frame` (an Update built once) to the subscribers of its
    /// chunk, or holds it for those over their budget.
    fn send_to_chunk(&self, frame: &UpdateFrame) {
        let registry = self.registry();
        let Some(ids) = registry.by_chunk.get(&frame.chunk) else {
            return;
        };
        let now = Instant::now();
        for id in ids {
            if let Some(outbox) = registry.conns.get(id) {
                if !outbox.push_update(frame, now) {
                    self.backend.metrics.ws_dropped.inc();
                }
            }
        }
    }

    /// Sends `Resync{reason}` to every connection subscribed to a chunk in
    /// `first .. end`.
    fn resync_range(&self, first: u32, end: u32, reason: ResyncReason) {
        let registry = self.registry();
        let mut per_conn: HashMap<u64, Vec<u32>> = HashMap::new();
        for (chunk, ids) in &registry.by_chunk {
            if (first..end).contains(chunk) {
                for id in ids {
                    per_conn.entry(*id).or_default().push(*chunk);
                }
            }
        }
        for (id, mut chunks) in per_conn {
            let Some(outbox) = registry.conns.get(&id) else {
                continue;
            };
            chunks.sort_unstable();
            for msg in resync_messages(&chunks, reason) {
                outbox.push(msg, true);
                self.backend.metrics.ws_resync(reason_label(reason));
            }
            outbox.versions_due();
        }
    }

    /// The version to announce for `chunk` in `Versions`.
    fn chunk_version(&self, book: &VersionBook, chunk: u32, chunk_size: u32) -> u64 {
        if let Some(v) = book.chunks.get(&chunk) {
            return *v;
        }
        let Ok(map) = self.backend.current_map() else {
            return 0;
        };
        map.shard_for(u64::from(chunk) * u64::from(chunk_size))
            .and_then(|r| book.bases.get(&r.descriptor.shard).copied())
            .unwrap_or(0)
    }

    /// Reads the counters once and, when they changed since the last
    /// `Stats`, makes a new frame; queues the newest frame alone to the
    /// connections that lack it and got their last `Stats` at least
    /// `ws_stats_alone_ms` ago (the others get it with their next write).
    fn broadcast_stats(&self) {
        // Not loaded yet: nothing true to say.
        let Some(checked) = self.backend.checked() else {
            return;
        };
        let online = u32::try_from(self.limits.connections()).unwrap_or(u32::MAX);
        if self.stats.update(checked, online).is_some() {
            self.backend.metrics.ws_stats_broadcasts.inc();
        }
        let Some(frame) = self.stats.current() else {
            return;
        };
        let alone = Duration::from_millis(self.backend.config.ws_stats_alone_ms);
        let now = Instant::now();
        for outbox in self.registry().conns.values() {
            outbox.stats_alone(&frame, now, alone);
        }
    }

    /// The `Stats` for a connection that just said `Hello`: the counters
    /// of now, so `online` counts it (`None` before the map is loaded).
    fn hello_stats(&self) -> Option<StatsFrame> {
        let checked = self.backend.checked()?;
        let online = u32::try_from(self.limits.connections()).unwrap_or(u32::MAX);
        Some(self.stats.for_hello(checked, online))
    }

    /// Queues `Versions` of its subscribed chunks to the connections that
    /// subscribed or were resynced in the last two rounds, or to every
    /// connection in a `full` round (every `ws_versions_full_interval_ms`).
    /// A connection that got every Update of its chunks since its fetch
    /// learns nothing from `Versions`; one whose fetch raced its
    /// subscription or a Resync does, in the rounds that follow. So an
    /// idle connection costs one frame per full round, not per round.
    /// Each run of chunks is encoded once per round and its bytes shared by
    /// every connection subscribed to the same run (most viewers share the
    /// popular chunks).
    fn broadcast_versions(&self, full: bool) {
        let Some(grid) = self.backend.grid() else {
            return;
        };
        let outboxes: Vec<Arc<Outbox>> = self.registry().conns.values().cloned().collect();
        let mut encoded: HashMap<(u32, u32), Bytes> = HashMap::new();
        for outbox in outboxes {
            let subs = outbox.versions_round(full);
            if subs.is_empty() {
                continue;
            }
            let msgs: Vec<Bytes> = runs(&subs)
                .into_iter()
                .map(|(first_chunk, count)| {
                    encoded
                        .entry((first_chunk, count))
                        .or_insert_with(|| {
                            let book = self.book();
                            let versions = (first_chunk..first_chunk + count)
                                .map(|c| self.chunk_version(&book, c, grid.chunk_size))
                                .collect();
                            Bytes::from(
                                ServerMessage::Versions {
                                    first_chunk,
                                    versions,
                                }
                                .encode(),
                            )
                        })
                        .clone()
                })
                .collect();
            for msg in msgs {
                outbox.push(msg, false);
            }
        }
    }

    async fn periodic(self: Arc<Self>) {
        let config = &self.backend.config;
        let mut stats = tokio::time::interval(Duration::from_millis(config.ws_stats_interval_ms));
        let mut versions =
            tokio::time::interval(Duration::from_millis(config.ws_versions_interval_ms));
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        versions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Every how many rounds all connections get Versions.
        let full_every =
            (config.ws_versions_full_interval_ms / config.ws_versions_interval_ms).max(1);
        let mut round: u64 = 0;
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = stats.tick() => {
                    self.broadcast_stats();
                    self.limits.prune();
                }
                _ = versions.tick() => {
                    round += 1;
                    self.broadcast_versions(round.is_multiple_of(full_every));
                }
                _ = shutdown.changed() => break,
            }
        }
    }

    /// Waits (at most `limit`) until every connection is closed.
    pub async fn wait_closed(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.limits.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_budget() -> Budget {
        Budget::new(0, Duration::from_secs(5), Instant::now())
    }

    fn outbox(cap: usize) -> Outbox {
        Outbox::new(cap, no_budget())
    }

    #[test]
    fn runs_split_on_gaps_and_length() {
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 1), (9, 2)]);
        let long: Vec<u32> = (0..600).collect();
        assert_eq!(runs(&long), vec![(0, 256), (256, 256), (512, 88)]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn a_connection_behind_gets_its_answers_but_no_stale_updates() {
        let outbox = outbox(3);
        outbox.lock().subs.add(5);
        let update = Bytes::from(
            ServerMessage::Update {
                chunk: 5,
                prev_version: 1,
                version: 2,
                entries: vec![],
            }
            .encode(),
        );
        let versions = Bytes::from(
            ServerMessage::Versions {
                first_chunk: 5,
                versions: vec![2],
            }
            .encode(),
        );
        let pong = Bytes::from(ServerMessage::Pong { nonce: 9 }.encode());
        assert!(outbox.push(update.clone(), true));
        assert!(outbox.push(versions, false));
        outbox.push_reply(pong.clone());
        assert!(!outbox.push(update, true), "full: dropped, behind");
        let (queue, resync) = outbox.take(&StatsCast::default());
        assert_eq!(queue, VecDeque::from(vec![pong]));
        assert_eq!(resync, Some(vec![5]));
    }

    #[test]
    fn versions_go_to_new_subscriptions_and_resyncs_then_to_all_in_full_rounds() {
        let outbox = outbox(1);
        assert!(
            outbox.versions_round(false).is_empty(),
            "nothing subscribed"
        );
        outbox.lock().subs.add(3);
        outbox.lock().versions_due = VERSIONS_ROUNDS_DUE;
        assert_eq!(outbox.versions_round(false), vec![3]);
        assert_eq!(outbox.versions_round(false), vec![3]);
        assert!(
            outbox.versions_round(false).is_empty(),
            "owed two rounds only"
        );
        assert_eq!(outbox.versions_round(true), vec![3], "a full round");
        // Falling behind owes rounds again.
        assert!(outbox.push(Bytes::from_static(b"a"), true));
        assert!(!outbox.push(Bytes::from_static(b"b"), true));
        let (_, resync) = outbox.take(&StatsCast::default());
        assert_eq!(resync, Some(vec![3]));
        assert_eq!(outbox.versions_round(false), vec![3]);
        outbox.versions_due();
        assert_eq!(outbox.versions_round(false), vec![3]);
    }

    #[test]
    fn a_newer_stats_rides_along_with_other_frames_or_goes_alone_when_old() {
        let cast = StatsCast::default();
        let t0 = Instant::now();
        let first = cast.update(1, 1).unwrap();
        let outbox = outbox(8);
        outbox.stats_sent(&first, t0);
        let second = cast.update(2, 1).unwrap();
        // Nothing else to send: the newer Stats waits.
        let (queue, _) = outbox.take(&cast);
        assert!(queue.is_empty());
        let alone = Duration::from_secs(30);
        outbox.stats_alone(&second, t0 + Duration::from_secs(10), alone);
        assert_eq!(outbox.len(), 0, "its last Stats is only 10 s old");
        // An Ack goes out: the Stats rides along, once.
        let pong = Bytes::from(ServerMessage::Pong { nonce: 1 }.encode());
        outbox.push_reply(pong.clone());
        let (queue, _) = outbox.take(&cast);
        assert_eq!(
            queue,
            VecDeque::from(vec![pong.clone(), second.bytes.clone()])
        );
        outbox.push_reply(pong.clone());
        let (queue, _) = outbox.take(&cast);
        assert_eq!(queue, VecDeque::from(vec![pong]));
        // A third goes alone once the last is old enough.
        let third = cast.update(3, 1).unwrap();
        let later = Instant::now() + alone;
        outbox.stats_alone(&third, later, alone);
        let (queue, _) = outbox.take(&cast);
        assert_eq!(queue, VecDeque::from(vec![third.bytes.clone()]));
        outbox.stats_alone(&third, later + alone, alone);
        assert_eq!(outbox.len(), 0, "already sent");
    }

    #[test]
    fn outbox_drops_when_full_and_resyncs_once() {
        let outbox = outbox(2);
        outbox.lock().subs.add(5);
        assert!(outbox.push(Bytes::from_static(b"a"), true));
        assert!(outbox.push(Bytes::from_static(b"b"), true));
        assert!(!outbox.push(Bytes::from_static(b"c"), true));
        let (queue, resync) = outbox.take(&StatsCast::default());
        assert_eq!(queue.len(), 2);
        assert_eq!(resync, Some(vec![5]));
        let (queue, resync) = outbox.take(&StatsCast::default());
        assert!(queue.is_empty() && resync.is_none());
    }
}
