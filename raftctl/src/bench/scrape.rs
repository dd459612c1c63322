//! Snapshots of the gateways' side: their `/metrics` counters (see
//! `docs/metrics.md`) and their processes' memory and CPU time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::procfs;

/// The metrics read, summed over gateways.
const METRICS: [&str; 7] = [
    "checkraft_gateway_ws_bytes_out_total",
    "checkraft_gateway_ws_messages_out_total",
    "checkraft_gateway_ws_flushes_total",
    "checkraft_gateway_ws_bytes_in_total",
    "checkraft_gateway_ws_messages_in_total",
    "checkraft_gateway_ws_connections",
    "checkraft_gateway_write_batches_total",
];

/// The gateways at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewaySnapshot {
    /// Sum over gateways of each metric in [`METRICS`] found, plus
    /// `checkraft_gateway_ws_rejections_total{reason=...}` by reason.
    pub metrics: BTreeMap<String, f64>,
    /// Sum of the gateways' `VmRSS`, bytes.
    pub rss_bytes: u64,
    /// Sum of the gateways' CPU time, seconds.
    pub cpu_seconds: f64,
    /// Sum of the nodes' CPU time, seconds.
    pub node_cpu_seconds: f64,
    /// Kernel memory that grows with sockets (slab and TCP buffers),
    /// machine-wide, bytes.
    pub kernel_socket_bytes: u64,
}

impl GatewaySnapshot {
    /// Reads every gateway (`addrs`, `pids`) and node (`node_pids`) now.
    pub async fn take(addrs: &[String], pids: &[u32], node_pids: &[u32]) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("static client settings");
        let mut metrics = BTreeMap::new();
        for addr in addrs {
            let Ok(resp) = http.get(format!("http://{addr}/metrics")).send().await else {
                continue;
            };
            let Ok(text) = resp.text().await else {
                continue;
            };
            for (name, value) in parse(&text) {
                *metrics.entry(name).or_insert(0.0) += value;
            }
        }
        Self {
            metrics,
            rss_bytes: pids.iter().filter_map(|p| procfs::rss_bytes(*p)).sum(),
            cpu_seconds: pids.iter().filter_map(|p| procfs::cpu_seconds(*p)).sum(),
            node_cpu_seconds: node_pids
                .iter()
                .filter_map(|p| procfs::cpu_seconds(*p))
                .sum(),
            kernel_socket_bytes: procfs::kernel_socket_bytes().unwrap_or(0),
        }
    }

    /// `metric` now minus `metric` in `earlier` (`None` if either lacks it).
    pub fn delta(&self, earlier: &Self, metric: &str) -> Option<f64> {
        Some(self.metrics.get(metric)? - earlier.metrics.get(metric)?)
    }
}

/// The samples of interest in a Prometheus/OpenMetrics text.
fn parse(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let keep = METRICS.contains(&name)
            || name.starts_with("checkraft_gateway_ws_rejections_total{")
            || name.starts_with("checkraft_gateway_ws_resyncs_total{");
        if keep {
            out.push((name.to_string(), value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_and_labelled_samples() {
        let text = "# TYPE x counter\ncheckraft_gateway_ws_bytes_out_total 1234\n\
                    checkraft_gateway_ws_rejections_total{reason=\"rate_limited\"} 5\n\
                    checkraft_gateway_other 9\n# EOF\n";
        let got = parse(text);
        assert_eq!(
            got,
            vec![
                ("checkraft_gateway_ws_bytes_out_total".to_string(), 1234.0),
                (
                    "checkraft_gateway_ws_rejections_total{reason=\"rate_limited\"}".to_string(),
                    5.0
                ),
            ]
        );
    }
}
