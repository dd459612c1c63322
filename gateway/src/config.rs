//! The gateway's typed configuration.
//!
//! Precedence, lowest first: the defaults in [`GatewayConfig::default`], a
//! TOML file (`--config`), environment variables
//! `CHECKRAFT_GATEWAY_<FIELD>` (for example
//! `CHECKRAFT_GATEWAY_BATCH_TICK_MS=2`; a list such as `cluster` is written
//! `[\"h:1\",\"h:2\"]`), then command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use checkraft_auth::{Role, Secret, Signer};

use crate::error::{Error, Result};
use crate::logging::LogFormat;

/// Everything a gateway needs to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// A label for logs and metrics; gateways are stateless, so it need
    /// not be unique or stable.
    pub id: u64,
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Seed nodes, `HOST:PORT`: where the first shard map is read. Later
    /// the nodes of the last map are tried too.
    pub cluster: Vec<String>,
    /// The gateway secret (at least 16 characters), the same as the
    /// nodes' `gateway_secret`: every call to a node is signed with it
    /// (see `checkraft-auth`). Required; a gateway without it does not
    /// start.
    pub gateway_secret: Option<String>,
    /// How long a write batch collects sets before it is sent, in ms.
    pub batch_tick_ms: u64,
    /// A batch is sent as soon as it holds this many sets.
    pub batch_max_sets: usize,
    /// How long a write may take (routing, retries, commit) before the
    /// caller gets "unavailable", in ms.
    pub write_timeout_ms: u64,
    /// Timeout of one HTTP request to a node (not the change streams or
    /// the map long-poll), in ms.
    pub node_timeout_ms: u64,
    /// A write attempt still unanswered after this long makes the writer
    /// ask the shard's other replicas who leads (`GET
    /// /shards/{id}/leader`, then again every half of this); when they
    /// name another leader, the write goes there at once instead of
    /// waiting out `node_timeout_ms` on a paused or cut-off node, in ms.
    pub probe_after_ms: u64,
    /// `wait_ms` of the shard map long-poll, in ms.
    pub map_wait_ms: u64,
    /// A change stream silent (not even a progress marker) for this long
    /// is dropped and resubscribed, in ms. Nodes send a marker every
    /// second by default.
    pub stream_idle_ms: u64,
    /// First delay before retrying a failed subscription or map read, in
    /// ms; it doubles up to ten times this.
    pub retry_ms: u64,
    /// How long `PUT /api/boxes/{i}` waits, after commit, for this
    /// gateway's own state to show the write (read-your-writes on one
    /// gateway), in ms. The reply goes out after this at the latest.
    pub read_your_writes_ms: u64,
    /// A change stream that has not reached a change number this gateway
    /// knows is committed (its own writes' acknowledgements) within this
    /// long is dropped for another replica, the leader first: a replica
    /// cut off from its group sends progress markers but no changes, in ms.
    pub stale_replica_ms: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Capacity of each shard's update broadcast (the websocket layer's
    /// feed); a slower receiver sees `Lagged` and must refetch.
    pub update_buffer: usize,
    /// Origins (`scheme://host[:port]`) of pages allowed to open
    /// websockets here besides the gateway's own origin: a request with an
    /// `Origin` is upgraded only when that Origin's `host[:port]` is the
    /// request's `Host` (or `X-Forwarded-Host` from a trusted proxy) or it
    /// is listed here; any other gets 403 (requests without `Origin`, not
    /// from a browser, always pass). List the page's origin when the page
    /// is served from another origin than the websockets (`raftctl up`:
    /// Caddy's). `"*"` allows every origin, which is insecure: any web
    /// site's script could then use its visitors' sockets. The rule:
    /// [`crate::guard`].
    pub page_origins: Vec<String>,
    /// The former name of [`Self::page_origins`], still accepted: when
    /// set, [`Self::load`] adds its entries to `page_origins` and clears
    /// it.
    #[doc(hidden)]
    #[serde(skip_serializing)]
    pub ws_allowed_origins: Option<Vec<String>>,
    /// Websocket: largest client message or frame, in bytes (larger: 1009).
    pub ws_max_message_bytes: usize,
    /// Websocket: read buffer per connection, in bytes.
    pub ws_read_buffer_bytes: usize,
    /// Websocket: connections this gateway accepts (over: close 1013).
    pub ws_max_connections: usize,
    /// Websocket: connections per client address (over: close 1008).
    pub ws_max_connections_per_ip: usize,
    /// Websocket: subscribed chunks per connection (over: close 1008).
    pub ws_max_subscriptions: usize,
    /// Websocket: queued outgoing messages per connection before updates
    /// are dropped for it (it then gets a `Resync`).
    pub ws_send_queue: usize,
    /// Websocket: frames queued to a connection together are written to
    /// its socket together, in writes of up to about this many bytes (0:
    /// one write per frame).
    pub ws_write_buffer_bytes: usize,
    /// Kernel send buffer of each accepted socket (`SO_SNDBUF`; Linux
    /// doubles the value for its bookkeeping), in bytes; 0 keeps the
    /// kernel's autotuned default (up to `net.ipv4.tcp_wmem`'s maximum,
    /// megabytes). Small, a client that stops reading blocks the
    /// gateway's writes after kilobytes, so its queue fills and it gets
    /// `Resync{FellBehind}` early instead of megabytes of stale updates
    /// later, and costs little kernel memory meanwhile. It also bounds
    /// the data in flight per connection: keep it above the bandwidth ×
    /// round-trip time a client needs (64 KiB at 100 ms is 640 KB/s). Set
    /// on the listening socket, so HTTP answers get it too (they are
    /// small: a chunk is at most 4 KiB uncompressed).
    pub ws_send_buffer_bytes: usize,
    /// `TCP_NOTSENT_LOWAT` of each accepted socket, in bytes: the kernel
    /// takes no more data once this much is queued and not yet sent, so
    /// unsent data waits in the gateway's bounded queue (where it can be
    /// dropped for a `Resync`) instead of the kernel; 0 keeps the kernel's
    /// default (no limit). Set on the listening socket like
    /// [`Self::ws_send_buffer_bytes`].
    pub ws_notsent_lowat_bytes: u32,
    /// Websocket: Sets per second per connection, and the burst.
    pub ws_sets_per_second: u32,
    /// Burst of [`Self::ws_sets_per_second`].
    pub ws_sets_burst: u32,
    /// Websocket: Sets per second per client address, and the burst.
    pub ws_ip_sets_per_second: u32,
    /// Burst of [`Self::ws_ip_sets_per_second`].
    pub ws_ip_sets_burst: u32,
    /// Websocket: boxes per `SetMany` message, 1 to the protocol's 256
    /// (`checkraft_proto::ws::MAX_SETS_PER_MESSAGE`); more closes the
    /// connection with 1008. Each box takes a token of the Set buckets
    /// above.
    pub ws_max_sets_per_message: usize,
    /// HTTP writes (`PUT /api/boxes/{i}` and `POST /nojs/set`, one bucket
    /// for both): per second per client address (the forwarded one from
    /// `trusted_proxies`); over it, 429 with `Retry-After`.
    pub http_sets_per_second: u32,
    /// Burst of [`Self::http_sets_per_second`].
    pub http_sets_burst: u32,
    /// Websocket: how long updates are coalesced before fan-out (ms): the
    /// short tick of a quiet chunk, so a click shows up within it.
    pub ws_fanout_tick_ms: u64,
    /// Websocket: the bandwidth budget of each connection, in payload
    /// bytes per second averaged over [`Self::ws_budget_window_ms`]. A
    /// chunk whose Updates alone would spend half of it gets a longer tick
    /// (shared by all its subscribers); a connection over it has its
    /// Updates held and merged per chunk (net changes only) until it is
    /// back under ([`crate::ws::budget`]). 0 turns both off: every chunk
    /// keeps [`Self::ws_fanout_tick_ms`] and nothing is held.
    pub ws_budget_bytes_per_second: u64,
    /// Websocket: the window the budget is averaged over (ms): a
    /// connection may burst this long's worth of its budget.
    pub ws_budget_window_ms: u64,
    /// Websocket: the longest tick a hot chunk gets (ms). Its tick doubles
    /// from [`Self::ws_fanout_tick_ms`] up to this while its Updates spend
    /// more than half the budget, and falls back once they spend less than
    /// an eighth.
    pub ws_coalesce_max_ms: u64,
    /// Websocket: `Stats` is read and encoded once every this many ms for
    /// all connections, and sent only when the checked total or the
    /// connection count changed since the last one (ms). A new connection
    /// gets the last one right after `Hello`.
    pub ws_stats_interval_ms: u64,
    /// Websocket: a changed `Stats` rides along with the next frames a
    /// connection is sent anyway (an Update, an Ack), in the same write;
    /// a connection sent nothing else gets it alone once its last `Stats`
    /// is this old (ms, at least [`Self::ws_stats_interval_ms`]). Every
    /// write costs a TCP segment (~90 bytes on the wire) and a syscall, so
    /// a `Stats` of its own costs a quiet connection more than its data.
    pub ws_stats_alone_ms: u64,
    /// Websocket: period of `Versions` rounds (ms). A round sends
    /// `Versions` of their subscribed chunks to the connections that
    /// subscribed or were resynced in the last two rounds.
    pub ws_versions_interval_ms: u64,
    /// Websocket: every connection gets `Versions` of all its subscribed
    /// chunks once per this long (ms; rounded to a multiple of
    /// [`Self::ws_versions_interval_ms`]).
    pub ws_versions_full_interval_ms: u64,
    /// No-JavaScript pages (`/nojs`): boxes per page (1 to 100,000).
    pub nojs_page_boxes: u64,
    /// The page's static files (`assets/`), served at `/` when set. Leave
    /// unset behind Caddy, which serves them itself.
    pub assets_dir: Option<PathBuf>,
    /// WebSocket URLs the page may pick a gateway from, served as
    /// `/config.json`. When set, this static list wins; when empty, the
    /// page gets the live registry's gateways ([`crate::registry`]), and
    /// `/ws` on its own origin when the registry lists none.
    pub client_endpoints: Vec<String>,
    /// This gateway's websocket URL as browsers reach it (`ws://` or
    /// `wss://`, e.g. `wss://gw1.example/ws`). When set, the gateway
    /// reports itself to the metadata leader every
    /// [`Self::register_interval_ms`] and so appears in every gateway's
    /// `/config.json` and in `raftctl status`; unset, it serves as usual
    /// but is not listed ([`crate::registry`]).
    pub public_endpoint: Option<String>,
    /// How often this gateway reports to the metadata leader (its
    /// endpoint, connections and load), in ms. Keep it well under the
    /// nodes' `gateway_down_after_ms` (6000).
    pub register_interval_ms: u64,
    /// Addresses of reverse proxies (Caddy) whose `X-Forwarded-For` and
    /// `X-Forwarded-Host` are believed: websockets and HTTP writes from one
    /// of them are limited per the client address it names, not per the
    /// proxy's, and the Origin rule compares with the forwarded host.
    pub trusted_proxies: Vec<IpAddr>,
    /// Log lines as `text` (human-readable) or `json` (one object per
    /// line); see [`crate::logging`].
    pub log_format: LogFormat,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            id: 0,
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            cluster: vec!["127.0.0.1:7001".into()],
            gateway_secret: None,
            batch_tick_ms: 5,
            batch_max_sets: 1024,
            write_timeout_ms: 10_000,
            node_timeout_ms: 5_000,
            probe_after_ms: 300,
            map_wait_ms: 30_000,
            stream_idle_ms: 5_000,
            retry_ms: 100,
            read_your_writes_ms: 2_000,
            stale_replica_ms: 1_000,
            max_body_bytes: 64 << 10,
            update_buffer: 1024,
            page_origins: Vec::new(),
            ws_allowed_origins: None,
            ws_max_message_bytes: 4096,
            ws_read_buffer_bytes: 1024,
            ws_max_connections: 20_000,
            ws_max_connections_per_ip: 256,
            ws_max_subscriptions: 1024,
            ws_send_queue: 64,
            ws_write_buffer_bytes: 4096,
            ws_send_buffer_bytes: 32 << 10,
            ws_notsent_lowat_bytes: 16 << 10,
            ws_sets_per_second: 7,
            ws_sets_burst: 10,
            ws_ip_sets_per_second: 7,
            ws_ip_sets_burst: 10,
            ws_max_sets_per_message: 256,
            http_sets_per_second: 10,
            http_sets_burst: 20,
            ws_fanout_tick_ms: 20,
            ws_budget_bytes_per_second: 50,
            ws_budget_window_ms: 5_000,
            ws_coalesce_max_ms: 5_000,
            ws_stats_interval_ms: 5_000,
            ws_stats_alone_ms: 30_000,
            ws_versions_interval_ms: 30_000,
            ws_versions_full_interval_ms: 300_000,
            nojs_page_boxes: 1000,
            assets_dir: None,
            client_endpoints: Vec::new(),
            public_endpoint: None,
            register_interval_ms: 2_000,
            trusted_proxies: Vec::new(),
            log_format: LogFormat::Text,
        }
    }
}

/// Command-line values that override everything else when present.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--id`
    pub id: Option<u64>,
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--cluster`
    pub cluster: Option<Vec<String>>,
    /// `--log-format`
    pub log_format: Option<LogFormat>,
}

impl GatewayConfig {
    /// Loads defaults, then `file`, then the environment, then `overrides`,
    /// and validates the result.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(GatewayConfig::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("CHECKRAFT_GATEWAY_"));
        let mut config: GatewayConfig = figment
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        if let Some(id) = overrides.id {
            config.id = id;
        }
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(cluster) = overrides.cluster {
            config.cluster = cluster;
        }
        if let Some(format) = overrides.log_format {
            config.log_format = format;
        }
        if let Some(legacy) = config.ws_allowed_origins.take() {
            config.page_origins.extend(legacy);
        }
        config.validate()?;
        Ok(config)
    }

    /// The signer of this gateway's calls to nodes, from
    /// [`Self::gateway_secret`].
    pub fn signer(&self) -> Result<Signer> {
        let secret = self.gateway_secret.as_deref().ok_or_else(|| {
            Error::Config(
                "gateway_secret is not set: gateways sign their calls to nodes with the secret \
                 the nodes have as gateway_secret (CHECKRAFT_GATEWAY_GATEWAY_SECRET, or \
                 gateway_secret in the config file; `raftctl up` writes one to data/gateway-secret)"
                    .into(),
            )
        })?;
        let secret =
            Secret::new("gateway_secret", secret).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Signer::new(Role::Gateway, secret))
    }

    /// Checks the invariants that defaults cannot guarantee.
    /// A missing `gateway_secret` is not an error here (the defaults have
    /// none) but at start, in [`Self::signer`].
    pub fn validate(&self) -> Result<()> {
        if self.gateway_secret.is_some() {
            self.signer()?;
        }
        if self.cluster.is_empty() || self.cluster.iter().any(|a| a.trim().is_empty()) {
            return Err(Error::Config(
                "cluster must name at least one node HOST:PORT".into(),
            ));
        }
        if self.batch_tick_ms == 0 || self.batch_max_sets == 0 {
            return Err(Error::Config(
                "batch_tick_ms and batch_max_sets must be positive".into(),
            ));
        }
        if self.write_timeout_ms == 0
            || self.node_timeout_ms == 0
            || self.retry_ms == 0
            || self.probe_after_ms == 0
        {
            return Err(Error::Config(
                "write_timeout_ms, node_timeout_ms, probe_after_ms and retry_ms must be positive"
                    .into(),
            ));
        }
        if self.stream_idle_ms < 100 || self.update_buffer == 0 {
            return Err(Error::Config(
                "stream_idle_ms must be at least 100 and update_buffer positive".into(),
            ));
        }
        if self.ws_max_message_bytes < 16
            || self.ws_read_buffer_bytes == 0
            || self.ws_send_queue == 0
            || self.ws_sets_per_second == 0
            || self.ws_sets_burst == 0
            || self.ws_ip_sets_per_second == 0
            || self.ws_ip_sets_burst == 0
            || self.ws_fanout_tick_ms == 0
            || self.ws_budget_window_ms == 0
            || self.ws_coalesce_max_ms < self.ws_fanout_tick_ms
            || self.ws_stats_interval_ms == 0
            || self.ws_stats_alone_ms < self.ws_stats_interval_ms
            || self.ws_versions_interval_ms == 0
            || self.ws_versions_full_interval_ms == 0
        {
            return Err(Error::Config(
                "ws_* sizes, rates and intervals must be positive (and ws_coalesce_max_ms at \
                 least ws_fanout_tick_ms, ws_stats_alone_ms at least ws_stats_interval_ms)"
                    .into(),
            ));
        }
        if !(1..=checkraft_proto::ws::MAX_SETS_PER_MESSAGE).contains(&self.ws_max_sets_per_message)
        {
            return Err(Error::Config(format!(
                "ws_max_sets_per_message must be 1 to {}",
                checkraft_proto::ws::MAX_SETS_PER_MESSAGE
            )));
        }
        if self.http_sets_per_second == 0 || self.http_sets_burst == 0 {
            return Err(Error::Config(
                "http_sets_per_second and http_sets_burst must be positive".into(),
            ));
        }
        if let Some(o) = self
            .page_origins
            .iter()
            .find(|o| !crate::guard::valid_page_origin(o))
        {
            return Err(Error::Config(format!(
                "page_origins entry {o:?} is neither \"*\" nor an http:// or https:// origin \
                 (scheme://host[:port], no path)"
            )));
        }
        if let Some(e) = self
            .client_endpoints
            .iter()
            .find(|e| !(e.starts_with("ws://") || e.starts_with("wss://") || e.starts_with('/')))
        {
            return Err(Error::Config(format!(
                "client_endpoints entry {e:?} is neither a ws:// or wss:// URL nor a path"
            )));
        }
        if let Some(e) = &self.public_endpoint {
            let report = checkraft_proto::GatewayReport {
                gateway_id: self.id,
                endpoint: e.clone(),
                connections: 0,
                max_connections: 0,
                load_permille: 0,
            };
            report
                .validate()
                .map_err(|why| Error::Config(format!("public_endpoint: {why}")))?;
        }
        if self.register_interval_ms == 0 {
            return Err(Error::Config(
                "register_interval_ms must be positive".into(),
            ));
        }
        if !(1..=100_000).contains(&self.nojs_page_boxes) {
            return Err(Error::Config(
                "nojs_page_boxes must be between 1 and 100000".into(),
            ));
        }
        Ok(())
    }

    /// [`Self::batch_tick_ms`] as a duration.
    pub fn batch_tick(&self) -> Duration {
        Duration::from_millis(self.batch_tick_ms)
    }

    /// [`Self::write_timeout_ms`] as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// [`Self::probe_after_ms`] as a duration.
    pub fn probe_after(&self) -> Duration {
        Duration::from_millis(self.probe_after_ms)
    }

    /// [`Self::node_timeout_ms`] as a duration.
    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    /// [`Self::stale_replica_ms`] as a duration.
    pub fn stale_replica(&self) -> Duration {
        Duration::from_millis(self.stale_replica_ms.max(1))
    }

    /// [`Self::register_interval_ms`] as a duration.
    pub fn register_interval(&self) -> Duration {
        Duration::from_millis(self.register_interval_ms)
    }

    /// [`Self::stream_idle_ms`] as a duration.
    pub fn stream_idle(&self) -> Duration {
        Duration::from_millis(self.stream_idle_ms)
    }

    /// The retry delay after `failures` consecutive failures: doubling from
    /// [`Self::retry_ms`], capped at ten times it.
    pub fn backoff(&self, failures: u32) -> Duration {
        let ms = self
            .retry_ms
            .saturating_mul(1 << failures.min(4))
            .min(self.retry_ms * 10);
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        GatewayConfig::default().validate().unwrap();
    }

    #[test]
    fn file_env_and_flags_layer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, "batch_tick_ms = 7\ncluster = [\"h:1\", \"h:2\"]\n").unwrap();
        let config = GatewayConfig::load(
            Some(&path),
            Overrides {
                id: Some(4),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(config.batch_tick_ms, 7);
        assert_eq!(config.cluster, vec!["h:1".to_string(), "h:2".to_string()]);
        assert_eq!(config.id, 4);
        assert_eq!(config.batch_max_sets, 1024);
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = GatewayConfig {
            batch_max_sets: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = GatewayConfig {
            cluster: vec![],
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        assert!(
            GatewayConfig::load(Some(Path::new("/nonexistent.toml")), Overrides::default())
                .is_err()
        );
    }

    #[test]
    fn page_origins_are_checked_and_keep_their_old_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, "ws_allowed_origins = [\"https://a.example\"]\n").unwrap();
        let config = GatewayConfig::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(config.page_origins, vec!["https://a.example".to_string()]);
        assert_eq!(config.ws_allowed_origins, None);
        for bad in ["a.example", "https://a.example/page", ""] {
            let config = GatewayConfig {
                page_origins: vec![bad.into()],
                ..Default::default()
            };
            assert!(config.validate().is_err(), "{bad:?}");
        }
        let any = GatewayConfig {
            page_origins: vec!["*".into(), "http://127.0.0.1:8080".into()],
            ..Default::default()
        };
        any.validate().unwrap();
        let no_rate = GatewayConfig {
            http_sets_burst: 0,
            ..Default::default()
        };
        assert!(no_rate.validate().is_err());
    }

    #[test]
    fn public_endpoint_must_be_a_websocket_url() {
        for bad in ["http://gw/ws", "/ws", "ws://"] {
            let config = GatewayConfig {
                public_endpoint: Some(bad.into()),
                ..Default::default()
            };
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains("public_endpoint"), "{bad:?}: {e}");
        }
        let good = GatewayConfig {
            public_endpoint: Some("wss://gw1.example/ws".into()),
            ..Default::default()
        };
        good.validate().unwrap();
        let never = GatewayConfig {
            register_interval_ms: 0,
            ..Default::default()
        };
        assert!(never.validate().is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = GatewayConfig::default();
        assert_eq!(c.backoff(0), Duration::from_millis(100));
        assert_eq!(c.backoff(1), Duration::from_millis(200));
        assert_eq!(c.backoff(30), Duration::from_millis(1000));
    }
}
