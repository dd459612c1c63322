//! The gateway's Prometheus metrics (`GET /metrics`, OpenMetrics text).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
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
        Self {
            registry,
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
