//! The gateway's Prometheus metrics (`GET /metrics`, OpenMetrics text).
//!
//! Counters and histograms are updated where things happen. Values that
//! are cheaper to read when scraped than to keep current (the websocket
//! send queues) are brought up to date by render hooks
//! ([`Metrics::on_render`]) just before encoding.
//!
//! Names, types and meanings are listed in `docs/metrics.md`.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `reason`s of `ws_rejections`, exported (at 0) from start so that
/// `rate()` sees a series' first increase.
pub const REJECTION_REASONS: &[&str] = &[
    "at_capacity",
    "per_address",
    "not_ready",
    "too_big",
    "protocol",
    "subscriptions",
    "set_many_boxes",
    "rate_limited",
    "origin",
    "bad_handshake",
];

/// The `reason`s of `ws_resyncs`, exported (at 0) from start.
pub const RESYNC_REASONS: &[&str] = &["fell_behind", "state_reset"];

/// The `endpoint`s of `http_rate_limited`: `PUT /api/boxes/{i}` and
/// `POST /nojs/set`, exported (at 0) from start.
pub const HTTP_WRITE_ENDPOINTS: &[&str] = &["api", "nojs"];

/// The `answer`s of `http_chunk_responses`: the content-codings of a
/// 200, or `not_modified` for a 304; exported (at 0) from start.
pub const CHUNK_ANSWERS: &[&str] = &["br", "zstd", "gzip", "identity", "not_modified"];

/// The label set of `reason`.
fn reason(reason: &str) -> Vec<(String, String)> {
    vec![("reason".to_string(), reason.to_string())]
}

/// The label set of `endpoint`.
fn endpoint(endpoint: &str) -> Vec<(String, String)> {
    vec![("endpoint".to_string(), endpoint.to_string())]
}

/// The label set of `answer`.
fn answer(answer: &str) -> Vec<(String, String)> {
    vec![("answer".to_string(), answer.to_string())]
}

/// Content type of the metrics body.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A render hook: updates some gauges; `false` asks to be dropped (its
/// source is gone).
type RenderHook = Box<dyn Fn() -> bool + Send + Sync>;

/// Every metric the gateway exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    hooks: Mutex<Vec<RenderHook>>,
    /// Change streams currently open (at most one per shard).
    pub subscriptions: Gauge,
    /// Change streams (re)opened after the first one of their shard.
    pub resubscriptions: Counter,
    /// Change streams dropped because their replica stopped advancing.
    pub stale_replicas: Counter,
    /// Change events that moved a shard's state (changes and snapshots).
    pub events_applied: Counter,
    /// Raft writes (`SetBatch`es) sent, whatever their outcome.
    pub write_batches: Counter,
    /// Sets per batch.
    pub batch_sets: Histogram,
    /// Time from sending a batch to its outcome, retries included, in
    /// seconds.
    pub write_latency: Histogram,
    /// Batches that ended in a rejection or unavailability.
    pub write_failures: Counter,
    /// Sets routed again because a split or merge moved their boxes.
    pub writes_rerouted: Counter,
    /// The version of the shard map in use.
    pub map_version: Gauge,
    /// Shards whose state is loaded.
    pub shards_loaded: Gauge,
    /// Open websocket connections.
    pub ws_connections: Gauge,
    /// Websocket messages received from clients.
    pub ws_messages_in: Counter,
    /// Websocket messages sent to clients.
    pub ws_messages_out: Counter,
    /// Websocket payload bytes received.
    pub ws_bytes_in: Counter,
    /// Websocket payload bytes sent.
    pub ws_bytes_out: Counter,
    /// Chunk subscriptions over all websocket connections.
    pub ws_subscriptions: Gauge,
    /// Refusals and closes by reason.
    pub ws_rejections: Family<Vec<(String, String)>, Counter>,
    /// Resync messages sent, by reason.
    pub ws_resyncs: Family<Vec<(String, String)>, Counter>,
    /// Updates dropped for slow connections.
    pub ws_dropped: Counter,
    /// Messages queued to websocket connections and not yet written, over
    /// all connections (set at scrape time).
    pub ws_send_queue: Gauge,
    /// The longest send queue of a single connection (set at scrape time).
    pub ws_send_queue_max: Gauge,
    /// Times a shard's fan-out fell behind the shard's update feed and
    /// restarted its chunks (each also sends `Resync{StateReset}`).
    pub ws_fanout_lags: Counter,
    /// Box changes folded into the fan-out and not sent yet, waiting for
    /// their chunk's tick (each fan-out task reports once per tick).
    pub ws_pending_changes: Gauge,
    /// Chunks with pending changes whose tick is longer than
    /// `ws_fanout_tick_ms` (hot chunks being coalesced), once per tick.
    pub ws_long_tick_chunks: Gauge,
    /// For every Update the fan-out builds, how long its oldest change
    /// waited for it, in seconds.
    pub ws_update_hold: Histogram,
    /// Updates held for connections over their byte budget, one per
    /// connection and chunk (set at scrape time).
    pub ws_budget_held_updates: Gauge,
    /// `Stats` frames made (one per change, at most one per
    /// `ws_stats_interval_ms`); each reaches every connection, with its
    /// next write or alone after `ws_stats_alone_ms`.
    pub ws_stats_broadcasts: Counter,
    /// Socket flushes of websocket connections: each writes every frame
    /// queued at the time (`ws_messages_out` / this = frames per flush).
    pub ws_flushes: Counter,
    /// Time from receiving a websocket `Set` to queueing its `Ack`, for
    /// sets sent to the shard (batching and commit included), in seconds.
    pub ws_set_latency: Histogram,
    /// Boxes per websocket `SetMany` message (its `_count` is the number
    /// of SetMany messages, its `_sum` their boxes).
    pub ws_set_many_boxes: Histogram,
    /// Time from receiving a websocket `SetMany` to queueing its
    /// `AckMany`, for those with boxes sent to the shards, in seconds.
    pub ws_set_many_latency: Histogram,
    /// HTTP writes refused with 429 by the per-address rate limit, by
    /// `endpoint` (`api`, `nojs`).
    pub http_rate_limited: Family<Vec<(String, String)>, Counter>,
    /// `GET /api/chunks/{c}` answers, by `answer` (one of
    /// [`CHUNK_ANSWERS`]).
    pub http_chunk_responses: Family<Vec<(String, String)>, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("checkraft_gateway");
        let subscriptions = Gauge::default();
        let resubscriptions = Counter::default();
        let stale_replicas = Counter::default();
        let events_applied = Counter::default();
        let write_batches = Counter::default();
        let batch_sets = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let write_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let write_failures = Counter::default();
        let writes_rerouted = Counter::default();
        let map_version = Gauge::default();
        let shards_loaded = Gauge::default();
        registry.register(
            "shard_subscriptions",
            "Change streams currently open",
            subscriptions.clone(),
        );
        registry.register(
            "resubscriptions",
            "Change streams reopened (gap, end, error, map change)",
            resubscriptions.clone(),
        );
        registry.register(
            "stale_replicas",
            "Change streams dropped because their replica did not reach a seq known committed within stale_replica_ms",
            stale_replicas.clone(),
        );
        registry.register(
            "events_applied",
            "Change events applied to shard states",
            events_applied.clone(),
        );
        registry.register(
            "write_batches",
            "SetBatch raft writes sent",
            write_batches.clone(),
        );
        registry.register("batch_sets", "Sets per write batch", batch_sets.clone());
        registry.register(
            "write_latency_seconds",
            "Time from sending a batch to its outcome",
            write_latency.clone(),
        );
        registry.register(
            "write_failures",
            "Write batches rejected or unavailable",
            write_failures.clone(),
        );
        registry.register(
            "writes_rerouted",
            "Sets routed again because a split or merge moved their boxes",
            writes_rerouted.clone(),
        );
        registry.register(
            "map_version",
            "Version of the shard map in use",
            map_version.clone(),
        );
        registry.register(
            "shards_loaded",
            "Shards whose state is loaded",
            shards_loaded.clone(),
        );
        let ws_connections = Gauge::default();
        let ws_messages_in = Counter::default();
        let ws_messages_out = Counter::default();
        let ws_bytes_in = Counter::default();
        let ws_bytes_out = Counter::default();
        let ws_subscriptions = Gauge::default();
        let ws_rejections = Family::<Vec<(String, String)>, Counter>::default();
        let ws_resyncs = Family::<Vec<(String, String)>, Counter>::default();
        for r in REJECTION_REASONS {
            let _ = ws_rejections.get_or_create(&reason(r));
        }
        for r in RESYNC_REASONS {
            let _ = ws_resyncs.get_or_create(&reason(r));
        }
        let ws_dropped = Counter::default();
        let ws_send_queue = Gauge::default();
        let ws_send_queue_max = Gauge::default();
        let ws_fanout_lags = Counter::default();
        let ws_pending_changes = Gauge::default();
        let ws_long_tick_chunks = Gauge::default();
        // 5 ms .. ~10 s: the short tick up to past `ws_coalesce_max_ms`.
        let ws_update_hold = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let ws_budget_held_updates = Gauge::default();
        let ws_stats_broadcasts = Counter::default();
        let ws_flushes = Counter::default();
        let ws_set_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let ws_set_many_boxes = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        let ws_set_many_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "ws_connections",
            "Open websocket connections",
            ws_connections.clone(),
        );
        registry.register(
            "ws_messages_in",
            "Websocket messages received",
            ws_messages_in.clone(),
        );
        registry.register(
            "ws_messages_out",
            "Websocket messages sent",
            ws_messages_out.clone(),
        );
        registry.register(
            "ws_bytes_in",
            "Websocket payload bytes received",
            ws_bytes_in.clone(),
        );
        registry.register(
            "ws_bytes_out",
            "Websocket payload bytes sent",
            ws_bytes_out.clone(),
        );
        registry.register(
            "ws_subscriptions",
            "Chunk subscriptions over all websocket connections",
            ws_subscriptions.clone(),
        );
        registry.register(
            "ws_rejections",
            "Websocket refusals and closes, by reason",
            ws_rejections.clone(),
        );
        registry.register(
            "ws_resyncs",
            "Resync messages sent, by reason",
            ws_resyncs.clone(),
        );
        registry.register(
            "ws_dropped_updates",
            "Updates dropped for connections that fell behind",
            ws_dropped.clone(),
        );
        registry.register(
            "ws_send_queue_messages",
            "Messages queued to websocket connections, over all connections",
            ws_send_queue.clone(),
        );
        registry.register(
            "ws_send_queue_max_messages",
            "Longest send queue of a single websocket connection",
            ws_send_queue_max.clone(),
        );
        registry.register(
            "ws_fanout_lags",
            "Shard fan-outs that fell behind their update feed and resynced",
            ws_fanout_lags.clone(),
        );
        registry.register(
            "ws_pending_changes",
            "Box changes in the fan-out not sent yet, waiting for their chunk's tick",
            ws_pending_changes.clone(),
        );
        registry.register(
            "ws_long_tick_chunks",
            "Chunks with pending changes on a tick longer than ws_fanout_tick_ms (hot, coalescing)",
            ws_long_tick_chunks.clone(),
        );
        registry.register(
            "ws_update_hold_seconds",
            "How long the oldest change of each Update waited for it in the fan-out",
            ws_update_hold.clone(),
        );
        registry.register(
            "ws_budget_held_updates",
            "Updates held for websocket connections over their byte budget (one per connection and chunk)",
            ws_budget_held_updates.clone(),
        );
        registry.register(
            "ws_stats_broadcasts",
            "Stats frames broadcast to every websocket connection (only when the counters changed)",
            ws_stats_broadcasts.clone(),
        );
        registry.register(
            "ws_flushes",
            "Socket flushes of websocket connections, each carrying every frame queued at the time",
            ws_flushes.clone(),
        );
        registry.register(
            "ws_set_latency_seconds",
            "Time from a websocket Set to its Ack",
            ws_set_latency.clone(),
        );
        registry.register(
            "ws_set_many_boxes",
            "Boxes per websocket SetMany message",
            ws_set_many_boxes.clone(),
        );
        registry.register(
            "ws_set_many_latency_seconds",
            "Time from a websocket SetMany to its AckMany",
            ws_set_many_latency.clone(),
        );
        let http_rate_limited = Family::<Vec<(String, String)>, Counter>::default();
        for e in HTTP_WRITE_ENDPOINTS {
            let _ = http_rate_limited.get_or_create(&endpoint(e));
        }
        registry.register(
            "http_rate_limited",
            "HTTP writes refused with 429 by the per-address rate limit, by endpoint",
            http_rate_limited.clone(),
        );
        let http_chunk_responses = Family::<Vec<(String, String)>, Counter>::default();
        for a in CHUNK_ANSWERS {
            let _ = http_chunk_responses.get_or_create(&answer(a));
        }
        registry.register(
            "http_chunk_responses",
            "Chunk answers by content-coding, or not_modified for a 304",
            http_chunk_responses.clone(),
        );
        Self {
            registry,
            hooks: Mutex::new(Vec::new()),
            http_chunk_responses,
            http_rate_limited,
            ws_send_queue,
            ws_send_queue_max,
            ws_fanout_lags,
            ws_pending_changes,
            ws_long_tick_chunks,
            ws_update_hold,
            ws_budget_held_updates,
            ws_stats_broadcasts,
            ws_flushes,
            ws_set_latency,
            ws_set_many_boxes,
            ws_set_many_latency,
            ws_connections,
            ws_messages_in,
            ws_messages_out,
            ws_bytes_in,
            ws_bytes_out,
            ws_subscriptions,
            ws_rejections,
            ws_resyncs,
            ws_dropped,
            subscriptions,
            resubscriptions,
            stale_replicas,
            events_applied,
            write_batches,
            batch_sets,
            write_latency,
            write_failures,
            writes_rerouted,
            map_version,
            shards_loaded,
        }
    }

    /// Counts a websocket refusal or close for reason `why`.
    pub fn ws_reject(&self, why: &str) {
        self.ws_rejections.get_or_create(&reason(why)).inc();
    }

    /// Counts an HTTP write refused by the rate limit at `endpoint` (one
    /// of [`HTTP_WRITE_ENDPOINTS`]).
    pub fn http_limited(&self, at: &str) {
        self.http_rate_limited.get_or_create(&endpoint(at)).inc();
    }

    /// Counts a chunk answer: its content-coding, or `not_modified`.
    pub fn chunk_answer(&self, what: &str) {
        self.http_chunk_responses.get_or_create(&answer(what)).inc();
    }

    /// Counts a resync message for reason `why`.
    pub fn ws_resync(&self, why: &str) {
        self.ws_resyncs.get_or_create(&reason(why)).inc();
    }

    /// Runs `hook` before every [`Metrics::render`], until it returns
    /// `false`. Hooks must be quick: they run on the scrape.
    pub fn on_render(&self, hook: impl Fn() -> bool + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(hook));
    }

    /// The OpenMetrics text of every metric, after running the render
    /// hooks.
    pub fn render(&self) -> String {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|hook| hook());
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let m = Metrics::new();
        m.write_batches.inc();
        m.batch_sets.observe(3.0);
        m.map_version.set(7);
        let text = m.render();
        for name in [
            "checkraft_gateway_shard_subscriptions",
            "checkraft_gateway_resubscriptions_total",
            "checkraft_gateway_events_applied_total",
            "checkraft_gateway_write_batches_total 1",
            "checkraft_gateway_batch_sets_count 1",
            "checkraft_gateway_write_latency_seconds_bucket",
            "checkraft_gateway_map_version 7",
            "checkraft_gateway_ws_send_queue_messages 0",
            "checkraft_gateway_ws_send_queue_max_messages 0",
            "checkraft_gateway_ws_fanout_lags_total 0",
            "checkraft_gateway_ws_pending_changes 0",
            "checkraft_gateway_ws_long_tick_chunks 0",
            "checkraft_gateway_ws_update_hold_seconds_count 0",
            "checkraft_gateway_ws_budget_held_updates 0",
            "checkraft_gateway_ws_stats_broadcasts_total 0",
            "checkraft_gateway_ws_flushes_total 0",
            "checkraft_gateway_ws_set_latency_seconds_count 0",
            "checkraft_gateway_ws_set_many_boxes_count 0",
            "checkraft_gateway_ws_set_many_latency_seconds_count 0",
            "checkraft_gateway_ws_rejections_total{reason=\"bad_handshake\"} 0",
            "checkraft_gateway_ws_resyncs_total{reason=\"state_reset\"} 0",
            "checkraft_gateway_http_rate_limited_total{endpoint=\"api\"} 0",
            "checkraft_gateway_http_rate_limited_total{endpoint=\"nojs\"} 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn render_hooks_run_until_they_decline() {
        let m = std::sync::Arc::new(Metrics::new());
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (m2, runs2) = (m.clone(), runs.clone());
        m.on_render(move || {
            let n = runs2.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            m2.ws_send_queue.set(n as i64);
            n < 2
        });
        assert!(m
            .render()
            .contains("checkraft_gateway_ws_send_queue_messages 1\n"));
        assert!(m
            .render()
            .contains("checkraft_gateway_ws_send_queue_messages 2\n"));
        // Dropped after declining: the gauge keeps its last value.
        assert!(m
            .render()
            .contains("checkraft_gateway_ws_send_queue_messages 2\n"));
        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
