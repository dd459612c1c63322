//! The nodes' side, read from their `/metrics` (no credential needed;
//! see `docs/metrics.md`): per group, the raft gauges the election watch
//! ([`super::elections`]) and the restart scenario ([`super::restart`])
//! need.

use std::collections::BTreeMap;
use std::time::Duration;

/// One replica's view of one group, at one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupGauges {
    /// `checkraft_node_raft_term`.
    pub term: u64,
    /// `checkraft_node_raft_is_leader` is 1.
    pub is_leader: bool,
    /// `checkraft_node_raft_applied_index`.
    pub applied_index: u64,
    /// `checkraft_node_raft_last_log_index`.
    pub last_log_index: u64,
    /// `checkraft_node_raft_snapshot_index`.
    pub snapshot_index: u64,
    /// `checkraft_node_snapshots_built_total`.
    pub snapshots_built: u64,
}

/// One node's groups (group id → gauges; group 0 is the metadata group).
pub type NodeGauges = BTreeMap<u64, GroupGauges>;

/// An HTTP client for scraping, with a short timeout (a killed or paused
/// node must not hold up a watch).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .expect("static client settings")
}

/// Scrapes node `addr`; `None` if it does not answer.
pub async fn scrape(http: &reqwest::Client, addr: &str) -> Option<NodeGauges> {
    let resp = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    Some(parse(&resp.text().await.ok()?))
}

/// The per-group gauges in a node's metrics text.
pub fn parse(text: &str) -> NodeGauges {
    let mut out = NodeGauges::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let Some(shard) = labels
            .strip_prefix("shard=\"")
            .and_then(|l| l.split_once('"'))
            .and_then(|(id, _)| id.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let g = || value as u64;
        let entry = out.entry(shard);
        match name.trim_start_matches("checkraft_node_") {
            "raft_term" => entry.or_default().term = g(),
            "raft_is_leader" => entry.or_default().is_leader = value > 0.5,
            "raft_applied_index" => entry.or_default().applied_index = g(),
            "raft_last_log_index" => entry.or_default().last_log_index = g(),
            "raft_snapshot_index" => entry.or_default().snapshot_index = g(),
            "snapshots_built_total" => entry.or_default().snapshots_built = g(),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_group_gauges() {
        let text = "# TYPE checkraft_node_raft_term gauge\n\
                    checkraft_node_raft_term{shard=\"0\"} 4\n\
                    checkraft_node_raft_term{shard=\"7\"} 3\n\
                    checkraft_node_raft_is_leader{shard=\"7\"} 1\n\
                    checkraft_node_raft_applied_index{shard=\"7\"} 120\n\
                    checkraft_node_raft_last_log_index{shard=\"7\"} 121\n\
                    checkraft_node_raft_snapshot_index{shard=\"7\"} 100\n\
                    checkraft_node_snapshots_built_total{shard=\"7\"} 2\n\
                    checkraft_node_groups 2\n# EOF\n";
        let got = parse(text);
        assert_eq!(got[&0].term, 4);
        assert!(!got[&0].is_leader);
        assert_eq!(
            got[&7],
            GroupGauges {
                term: 3,
                is_leader: true,
                applied_index: 120,
                last_log_index: 121,
                snapshot_index: 100,
                snapshots_built: 2,
            }
        );
        assert_eq!(got.len(), 2);
    }
}
