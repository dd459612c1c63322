//! The gateway's Prometheus metrics (`GET /metrics`, OpenMetrics text).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Content type of the metrics body.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric the gateway exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Change streams currently open (at most one per shard).
    pub subscriptions: Gauge,
    /// Change streams (re)opened after the first one of their shard.
    pub resubscriptions: Counter,
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
        let events_applied = Counter::default();
        let write_batches = Counter::default();
        let batch_sets = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let write_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let write_failures = Counter::default();
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
        let ws_dropped = Counter::default();
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
        Self {
            registry,
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
            events_applied,
            write_batches,
            batch_sets,
            write_latency,
            write_failures,
            map_version,
            shards_loaded,
        }
    }

    /// Counts a websocket refusal or close for `reason`.
    pub fn ws_reject(&self, reason: &str) {
        self.ws_rejections
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    /// Counts a resync message for `reason`.
    pub fn ws_resync(&self, reason: &str) {
        self.ws_resyncs
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
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
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
