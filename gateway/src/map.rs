//! Following the shard map live from the metadata group.
//!
//! One task long-polls `GET /meta/map?since=V&wait_ms=…` on one node and
//! publishes every newer map on a `watch` channel. On an error it moves on
//! to the next candidate: the seed nodes, then every node of the last map
//! that is not removed. [`MapFollower::request_refresh`] (after a
//! `StaleEpoch` rejection, say) cuts the long-poll short with a plain read.
//! Beside each long-poll, the node's `/health` is asked every half
//! `node_timeout_ms`; two unanswered in a row (a paused or cut-off node)
//! end the long-poll too, so the map is not stuck on it for `map_wait_ms`.
//! Versions only grow: an older map from a lagging node is ignored.

use std::sync::Arc;
use std::time::Duration;

use checkraft_proto::{NodeState, ShardMap};
use tokio::sync::{watch, Notify};

use checkraft_auth::SendSigned;

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::node_client::NodeClient;

/// The current shard map, and the task that keeps it current.
pub struct MapFollower {
    config: GatewayConfig,
    http: NodeClient,
    tx: watch::Sender<Option<Arc<ShardMap>>>,
    refresh: Notify,
    metrics: Arc<Metrics>,
}

impl MapFollower {
    /// A follower with no map yet; [`Self::run`] fetches it.
    pub fn new(config: GatewayConfig, http: NodeClient, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            http,
            tx: watch::channel(None).0,
            refresh: Notify::new(),
            metrics,
        }
    }

    /// The latest initialized map, if one was read yet.
    pub fn current(&self) -> Option<Arc<ShardMap>> {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every newer map.
    pub fn watch(&self) -> watch::Receiver<Option<Arc<ShardMap>>> {
        self.tx.subscribe()
    }

    /// Asks for an immediate re-read instead of waiting for the long-poll.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Publishes `map` if it is initialized and newer than the current one.
    /// Returns whether it was.
    pub fn offer(&self, map: ShardMap) -> bool {
        if !map.initialized() {
            return false;
        }
        let version = map.version;
        let newer = self.tx.send_if_modified(|current| {
            if current.as_ref().is_some_and(|c| c.version >= version) {
                return false;
            }
            *current = Some(Arc::new(map));
            true
        });
        if newer {
            self.metrics.map_version.set(version as i64);
            tracing::info!(version, "shard map updated");
        }
        newer
    }

    /// Waits until the map's version exceeds `version`, at most `limit`.
    pub async fn wait_newer(&self, version: u64, limit: Duration) -> Option<Arc<ShardMap>> {
        let mut rx = self.watch();
        let newer = tokio::time::timeout(
            limit,
            rx.wait_for(|m| m.as_ref().is_some_and(|m| m.version > version)),
        )
        .await;
        match newer {
            Ok(Ok(map)) => map.clone(),
            _ => None,
        }
    }

    /// Nodes to ask: the seeds, then the last map's live nodes.
    pub fn candidates(&self) -> Vec<String> {
        let mut out = self.config.cluster.clone();
        if let Some(map) = self.current() {
            for node in map.nodes.values() {
                if node.state != NodeState::Removed && !out.contains(&node.addr) {
                    out.push(node.addr.clone());
                }
            }
        }
        out
    }

    async fn fetch(&self, addr: &str, since: Option<u64>) -> anyhow::Result<ShardMap> {
        let (url, limit) = match since {
            Some(v) => (
                format!(
                    "http://{addr}/meta/map?since={v}&wait_ms={}",
                    self.config.map_wait_ms
                ),
                Duration::from_millis(self.config.map_wait_ms) + self.config.node_timeout(),
            ),
            None => (
                format!("http://{addr}/meta/map"),
                self.config.node_timeout(),
            ),
        };
        let resp = self
            .http
            .get(url)
            .timeout(limit)
            .send_signed(self.http.signer())
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            anyhow::bail!("HTTP {status}: {}", body.trim());
        }
        Ok(resp.json().await?)
    }

    /// Returns once the node at `addr` stops answering `/health` (two
    /// tries each given half of `node_timeout_ms`): run beside a
    /// long-poll on that node, so that a paused or cut-off node is left
    /// after seconds rather than after the whole `map_wait_ms`.
    async fn watch_alive(&self, addr: &str) -> anyhow::Error {
        let half = self.config.node_timeout() / 2;
        let mut misses = 0;
        loop {
            if misses == 0 {
                tokio::time::sleep(half).await;
            }
            let url = format!("http://{addr}/health");
            let answered = self.http.get(url).timeout(half).send().await.is_ok();
            misses = if answered { 0 } else { misses + 1 };
            if misses == 2 {
                return anyhow::anyhow!("node {addr} stopped answering during the map long-poll");
            }
        }
    }

    /// Follows the map until `shutdown` flips to true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut next = 0usize;
        let mut failures = 0u32;
        let mut plain_read = true;
        loop {
            let nodes = self.candidates();
            let addr = nodes[next % nodes.len()].clone();
            let since = match (plain_read, self.current()) {
                (false, Some(map)) => Some(map.version),
                _ => None,
            };
            let fetched = tokio::select! {
                r = self.fetch(&addr, since) => r,
                e = self.watch_alive(&addr), if since.is_some() => Err(e),
                _ = self.refresh.notified() => {
                    plain_read = true;
                    continue;
                }
                _ = shutdown.changed() => return,
            };
            let mut pause = None;
            match fetched {
                Ok(map) if map.initialized() => {
                    failures = 0;
                    let newer = self.offer(map);
                    if plain_read && !newer {
                        // A forced re-read found nothing new here: the
                        // next forced one asks another node.
                        next += 1;
                    }
                    plain_read = false;
                }
                Ok(_) => {
                    tracing::debug!(node = %addr, "the cluster is not initialized yet");
                    next += 1;
                    pause = Some(self.config.backoff(failures));
                    failures += 1;
                }
                Err(e) => {
                    if failures == 5 {
                        tracing::warn!(node = %addr, error = %e, "still no node answers with the shard map");
                    } else {
                        tracing::debug!(node = %addr, error = %e, "reading the shard map failed");
                    }
                    next += 1;
                    plain_read = true;
                    pause = Some(self.config.backoff(failures));
                    failures += 1;
                }
            }
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// A shard map for unit tests: an initialized 10-box grid, nodes 1..=n
/// at `addrs`, and shard `shard` (boxes 0..10, epoch 1) replicated on
/// them all, with `leader` as the hint.
#[cfg(test)]
pub(crate) fn test_map(addrs: &[&str], shard: checkraft_proto::ShardId, leader: u64) -> ShardMap {
    use checkraft_proto::{Grid, NodeRecord, NodeState, ShardDescriptor, ShardRecord};
    let mut map = ShardMap {
        version: 1,
        grid: Some(Grid {
            boxes: 10,
            chunk_size: 10,
        }),
        ..Default::default()
    };
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        map.nodes.insert(
            id,
            NodeRecord {
                id,
                addr: addr.to_string(),
                state: NodeState::Up,
            },
        );
    }
    map.shards.insert(
        shard,
        ShardRecord {
            descriptor: ShardDescriptor {
                shard,
                start: 0,
                end: 10,
                epoch: 1,
            },
            replicas: map.nodes.keys().copied().collect(),
            leader: Some(leader),
        },
    );
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::Grid;

    fn map(version: u64) -> ShardMap {
        ShardMap {
            version,
            grid: Some(Grid {
                boxes: 10,
                chunk_size: 5,
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn only_newer_initialized_maps_are_published() {
        let f = MapFollower::new(
            GatewayConfig::default(),
            NodeClient::for_tests(),
            Arc::new(Metrics::new()),
        );
        assert!(!f.offer(ShardMap::default()));
        assert!(f.current().is_none());
        assert!(f.offer(map(3)));
        assert!(!f.offer(map(2)));
        assert!(!f.offer(map(3)));
        assert_eq!(f.current().unwrap().version, 3);
        assert!(f.wait_newer(3, Duration::from_millis(10)).await.is_none());
        assert!(f.offer(map(4)));
        assert_eq!(
            f.wait_newer(3, Duration::from_millis(10))
                .await
                .unwrap()
                .version,
            4
        );
    }
}
