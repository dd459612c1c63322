//! [`GatewayRegistry`]: the gateways that reported to this node while it
//! led the metadata group, in memory only.
//!
//! Gateways report every `register_interval_ms` (`POST /meta/gateways`,
//! [`checkraft_proto::GatewayReport`]); a gateway whose last report is
//! older than `gateway_down_after_ms` is left out of the list and
//! forgotten. Nothing is written to the raft log: the registry is soft
//! state, and a node that becomes the metadata leader starts with an empty
//! one that fills within one report interval. At most [`MAX_GATEWAYS`]
//! gateways are kept, so a misbehaving gateway cannot grow it without
//! bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use checkraft_proto::{GatewayReport, RegisteredGateway};

/// Most gateways the registry keeps; a report of a new endpoint beyond
/// this is refused.
pub const MAX_GATEWAYS: usize = 1024;

/// Gateway reports by endpoint, with the time each arrived.
#[derive(Debug, Default)]
pub struct GatewayRegistry {
    reports: Mutex<HashMap<String, (GatewayReport, Instant)>>,
}

impl GatewayRegistry {
    /// Records `report` (already validated) as of `now`, replacing an
    /// earlier one of the same endpoint and forgetting the reports older
    /// than `down_after`. Fails only when the registry is full.
    pub fn record(
        &self,
        report: GatewayReport,
        now: Instant,
        down_after: Duration,
    ) -> Result<(), String> {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        reports.retain(|_, (_, at)| now.saturating_duration_since(*at) <= down_after);
        if reports.len() >= MAX_GATEWAYS && !reports.contains_key(&report.endpoint) {
            return Err(format!(
                "the registry holds {MAX_GATEWAYS} gateways already"
            ));
        }
        reports.insert(report.endpoint.clone(), (report, now));
        Ok(())
    }

    /// The gateways whose last report is at most `down_after` old at
    /// `now`, by gateway id, then endpoint.
    pub fn live(&self, now: Instant, down_after: Duration) -> Vec<RegisteredGateway> {
        let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<RegisteredGateway> = reports
            .values()
            .filter_map(|(r, at)| {
                let age = now.saturating_duration_since(*at);
                (age <= down_after).then(|| RegisteredGateway {
                    gateway_id: r.gateway_id,
                    endpoint: r.endpoint.clone(),
                    connections: r.connections,
                    max_connections: r.max_connections,
                    load_permille: r.load_permille,
                    last_report_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        out.sort_by(|a, b| (a.gateway_id, &a.endpoint).cmp(&(b.gateway_id, &b.endpoint)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u64, endpoint: &str, connections: u64) -> GatewayReport {
        GatewayReport {
            gateway_id: id,
            endpoint: endpoint.into(),
            connections,
            max_connections: 100,
            load_permille: (connections * 10) as u16,
        }
    }

    #[test]
    fn reports_replace_expire_and_sort() {
        let registry = GatewayRegistry::default();
        let t0 = Instant::now();
        let down = Duration::from_secs(6);
        registry
            .record(report(2, "ws://b/ws", 1), t0, down)
            .unwrap();
        registry
            .record(report(1, "ws://a/ws", 1), t0, down)
            .unwrap();
        let later = t0 + Duration::from_secs(4);
        registry
            .record(report(2, "ws://b/ws", 7), later, down)
            .unwrap();
        let live = registry.live(later, down);
        let rows: Vec<(u64, &str, u64, u64)> = live
            .iter()
            .map(|g| {
                (
                    g.gateway_id,
                    g.endpoint.as_str(),
                    g.connections,
                    g.last_report_ms,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![(1, "ws://a/ws", 1, 4000), (2, "ws://b/ws", 7, 0)]
        );
        // a's last report is now 7 s old: gone; b's is 3 s old.
        let live = registry.live(t0 + Duration::from_secs(7), down);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].endpoint, "ws://b/ws");
    }

    #[test]
    fn the_registry_is_bounded() {
        let registry = GatewayRegistry::default();
        let now = Instant::now();
        let down = Duration::from_secs(6);
        for i in 0..MAX_GATEWAYS {
            registry
                .record(report(1, &format!("ws://g{i}/ws"), 0), now, down)
                .unwrap();
        }
        assert!(registry
            .record(report(1, "ws://one-too-many/ws", 0), now, down)
            .is_err());
        registry
            .record(report(1, "ws://g0/ws", 5), now, down)
            .expect("a known endpoint may report again");
        // Expired reports make room.
        let later = now + Duration::from_secs(7);
        registry
            .record(report(1, "ws://new/ws", 0), later, down)
            .unwrap();
        assert_eq!(registry.live(later, down).len(), 1);
    }
}
