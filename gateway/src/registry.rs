//! The live gateway registry, from the gateway's side: reporting this
//! gateway to the metadata leader, and the list `/config.json` hands to
//! the page.
//!
//! ## Reporting
//! A gateway with a `public_endpoint` sends a
//! [`checkraft_proto::GatewayReport`] to `POST /meta/gateways` at start
//! and then every `register_interval_ms` (2000): its `id`, its public
//! endpoint, its open websocket connections and its load. The load is the
//! one number it already gives browsers in `Hello`: open connections in
//! permille of `ws_max_connections` ([`crate::ws::limits::Limits`]),
//! read from one atomic counter, so a report costs nothing to build. The
//! report goes to the metadata leader through
//! [`NodeClient::to_meta_leader`]: the leader that answered last, then
//! the seeds and the map's nodes, following `421`s. A gateway without a
//! `public_endpoint` does not report and is not listed; it still serves.
//!
//! ## The page's list
//! `GET /config.json` ([`ClientConfig`]) lists, in this order of
//! precedence:
//! 1. `client_endpoints` when it is set (a static list; `source: "static"`);
//! 2. else the gateways of the registry (`GET /meta/gateways` on the
//!    metadata leader: those that reported within its
//!    `gateway_down_after_ms`), with their connections and load
//!    (`source: "registry"`);
//! 3. else `["/ws"]`, the page's own origin (`source: "default"`), also
//!    when the registry lists no gateway or cannot be read.
//!
//! The registry's list is cached for [`CACHE_FOR`] (1 s): `/config.json`
//! asks the leader at most once a second, whatever the page traffic
//! (answers of this gateway's own reports refresh it too). When the
//! leader cannot be reached, the last list read is served while it is
//! younger than three report intervals, then the default.
//!
//! ## Caveat
//! The registry lives in the leader's memory only. After a metadata
//! leader change the new leader's registry is empty until every gateway
//! has reported once (one `register_interval_ms`); meanwhile
//! `/config.json` may list fewer gateways, or `/ws`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checkraft_client::Call;
use checkraft_proto::{GatewayList, GatewayReport, RegisteredGateway};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::GatewayConfig;
use crate::map::MapFollower;
use crate::node_client::NodeClient;
use crate::ws::limits::Limits;

/// How long a list read from the registry is served before it is read
/// again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// Longest wait for one node while reading the registry for
/// `/config.json` (the page waits for it); twice this for the whole read.
const READ_LIMIT: Duration = Duration::from_millis(1000);

/// Where the endpoints of a [`ClientConfig`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The gateway's `client_endpoints`.
    Static,
    /// The live registry.
    Registry,
    /// Nothing else: the page's own `/ws`.
    Default,
}

/// One gateway of the registry, as `/config.json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientGateway {
    /// Its websocket URL.
    pub endpoint: String,
    /// Its open websocket connections at its last report.
    pub connections: u64,
    /// Its load in permille of its connection cap at its last report.
    pub load: u16,
}

/// The body of `GET /config.json`: what the page needs before it opens a
/// websocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientConfig {
    /// WebSocket URLs of the gateways the page may pick from, absolute
    /// (`ws://host:port/ws`) or relative to the page's origin (`/ws`).
    pub endpoints: Vec<String>,
    /// Where `endpoints` comes from (see the module docs).
    pub source: Source,
    /// With `source: "registry"`, each listed gateway with its load (in
    /// the order of `endpoints`); empty otherwise. The page does not need
    /// it: every gateway's `Hello` carries the same load.
    pub gateways: Vec<ClientGateway>,
}

impl ClientConfig {
    /// The page's list: `static_endpoints` when set, else the
    /// `registry`'s gateways when it lists any, else `/ws`.
    pub fn choose(static_endpoints: &[String], registry: Option<&[RegisteredGateway]>) -> Self {
        if !static_endpoints.is_empty() {
            return Self {
                endpoints: static_endpoints.to_vec(),
                source: Source::Static,
                gateways: Vec::new(),
            };
        }
        match registry {
            Some(list) if !list.is_empty() => Self {
                endpoints: list.iter().map(|g| g.endpoint.clone()).collect(),
                source: Source::Registry,
                gateways: list
                    .iter()
                    .map(|g| ClientGateway {
                        endpoint: g.endpoint.clone(),
                        connections: g.connections,
                        load: g.load_permille,
                    })
                    .collect(),
            },
            _ => Self {
                endpoints: vec!["/ws".to_string()],
                source: Source::Default,
                gateways: Vec::new(),
            },
        }
    }
}

/// The last registry list read, and when a read was last tried.
#[derive(Default)]
struct Cache {
    list: Option<(Instant, Vec<RegisteredGateway>)>,
    tried: Option<Instant>,
}

/// This gateway's side of the registry: its reports and the cached list.
pub struct Registry {
    config: GatewayConfig,
    http: NodeClient,
    map: Arc<MapFollower>,
    /// The node that answered last: the metadata leader, probably.
    leader: Mutex<Option<String>>,
    cache: tokio::sync::Mutex<Cache>,
}

impl Registry {
    /// A registry client calling nodes through `http`, finding them with
    /// `map`.
    pub fn new(config: GatewayConfig, http: NodeClient, map: Arc<MapFollower>) -> Self {
        Self {
            config,
            http,
            map,
            leader: Mutex::new(None),
            cache: tokio::sync::Mutex::new(Cache::default()),
        }
    }

    /// The nodes to ask, the last leader first.
    fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        for addr in self.map.candidates() {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        out
    }

    /// Sends `report` (or, when `None`, a read) to the metadata leader and
    /// returns its list.
    async fn call(
        &self,
        report: Option<&GatewayReport>,
        limit: Duration,
    ) -> anyhow::Result<GatewayList> {
        let call = match report {
            Some(r) => Call::post_json("/meta/gateways", r),
            None => Call::get("/meta/gateways"),
        };
        let (addr, list): (String, GatewayList) = self
            .http
            .to_meta_leader(self.candidates(), limit, call)
            .await
            .inspect_err(|_| *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = None)?;
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        Ok(list)
    }

    /// The report of this gateway now, if it has a public endpoint.
    fn report(&self, limits: &Limits) -> Option<GatewayReport> {
        let endpoint = self.config.public_endpoint.clone()?;
        Some(GatewayReport {
            gateway_id: self.config.id,
            endpoint,
            connections: limits.connections() as u64,
            max_connections: self.config.ws_max_connections as u64,
            load_permille: limits.load_permille(),
        })
    }

    /// Reports this gateway every `register_interval_ms` until `shutdown`
    /// flips to true; returns at once without a `public_endpoint`.
    pub async fn report_loop(
        self: Arc<Self>,
        limits: Arc<Limits>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.config.public_endpoint.is_none() {
            tracing::info!("no public_endpoint: this gateway is not listed in the registry");
            return;
        }
        let mut tick = tokio::time::interval(self.config.register_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(report) = self.report(&limits) else {
                return;
            };
            match self.call(Some(&report), self.config.node_timeout()).await {
                Ok(list) => {
                    if failing {
                        tracing::info!("reporting to the gateway registry again");
                    }
                    failing = false;
                    let mut cache = self.cache.lock().await;
                    cache.list = Some((Instant::now(), list.gateways));
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "could not report to the gateway registry; retrying every interval");
                    }
                    failing = true;
                }
            }
        }
    }

    /// The registry's gateways for `/config.json`: read at most once per
    /// [`CACHE_FOR`]; after a failed read, the last list while it is
    /// younger than three report intervals; else `None`.
    pub async fn gateways(&self) -> Option<Vec<RegisteredGateway>> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let fresh = |at: Instant| now.saturating_duration_since(at) < CACHE_FOR;
        let recently_tried = cache.tried.is_some_and(fresh);
        let list_fresh = cache.list.as_ref().is_some_and(|(at, _)| fresh(*at));
        if !recently_tried && !list_fresh {
            cache.tried = Some(now);
            // Bounded as a whole too: the page waits for this answer.
            match tokio::time::timeout(READ_LIMIT * 2, self.call(None, READ_LIMIT)).await {
                Ok(Ok(list)) => cache.list = Some((Instant::now(), list.gateways)),
                Ok(Err(e)) => tracing::debug!(error = %e, "reading the gateway registry"),
                Err(_) => tracing::debug!("reading the gateway registry timed out"),
            }
        }
        let stale_after = self.config.register_interval() * 3;
        cache
            .list
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= stale_after)
            .map(|(_, list)| list.clone())
    }

    /// The body of `/config.json` (see the module docs for the order).
    pub async fn client_config(&self) -> ClientConfig {
        if !self.config.client_endpoints.is_empty() {
            return ClientConfig::choose(&self.config.client_endpoints, None);
        }
        let list = self.gateways().await;
        ClientConfig::choose(&[], list.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(endpoint: &str, load: u16) -> RegisteredGateway {
        RegisteredGateway {
            gateway_id: 1,
            endpoint: endpoint.into(),
            connections: 4,
            max_connections: 10,
            load_permille: load,
            last_report_ms: 100,
        }
    }

    #[test]
    fn static_list_then_registry_then_default() {
        let registry = [gateway("ws://a/ws", 400), gateway("ws://b/ws", 0)];
        let fixed = ["ws://fixed/ws".to_string()];
        let c = ClientConfig::choose(&fixed, Some(&registry));
        assert_eq!((c.endpoints, c.source), (fixed.to_vec(), Source::Static));
        assert!(c.gateways.is_empty());
        let c = ClientConfig::choose(&[], Some(&registry));
        assert_eq!(c.endpoints, vec!["ws://a/ws", "ws://b/ws"]);
        assert_eq!(c.source, Source::Registry);
        assert_eq!(c.gateways[0].load, 400);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["source"], "registry");
        assert_eq!(json["gateways"][0]["connections"], 4);
        for empty in [None, Some(&[][..])] {
            let c = ClientConfig::choose(&[], empty);
            assert_eq!(
                (c.endpoints, c.source),
                (vec!["/ws".to_string()], Source::Default)
            );
        }
    }
}
