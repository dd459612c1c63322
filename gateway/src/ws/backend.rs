//! [`Backend`]: what the websocket connections need from the gateway, and
//! nothing more.
//!
//! A connection (and the [`super::Hub`] that serves it) reads the
//! gateway's settings and metrics, the grid of the current map, and the
//! count of checked boxes for `Stats`; it writes a Set, acknowledged
//! through a callback ([`Backend::set`]), and a SetMany's boxes in one
//! write ([`Backend::set_many`]). The handle offers exactly that, and
//! builds the fan-out's own narrow handle ([`Backend::fanout_sources`]).
//! The gateway behind it stays private: through it a connection reaches
//! neither the shard states nor the node clients nor the registry.

use std::sync::Arc;

use checkraft_proto::{BoxSet, Grid, ShardId, ShardMap};

use super::fanout::Sources;
use crate::batcher::Committed;
use crate::config::GatewayConfig;
use crate::error::Result;
use crate::gateway::Gateway;
use crate::metrics::Metrics;

/// The websocket layer's handle on the gateway.
#[derive(Clone)]
pub struct Backend {
    /// The gateway's settings: the `ws_*` ones, `id` (sent in `Hello`),
    /// and `page_origins` and `trusted_proxies` (the upgrade's `Origin`
    /// rule and client address).
    pub config: Arc<GatewayConfig>,
    /// Where the websocket layer's metrics go.
    pub metrics: Arc<Metrics>,
    /// The map, the counters and the write path; private, so that only
    /// the methods below reach it.
    gateway: Arc<Gateway>,
}

impl Backend {
    /// The websocket layer's view of `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            config: Arc::new(gateway.config.clone()),
            metrics: gateway.metrics.clone(),
            gateway,
        }
    }

    /// The fan-out's handle: the shard registry, the map, the metrics and
    /// the pacing settings ([`Sources`]).
    pub fn fanout_sources(&self) -> Sources {
        let gateway = &self.gateway;
        Sources::new(
            gateway.shards.clone(),
            gateway.map.clone(),
            gateway.metrics.clone(),
            &gateway.config,
        )
    }

    /// The current map, or 503 while none is loaded.
    pub fn current_map(&self) -> Result<Arc<ShardMap>> {
        self.gateway.current_map()
    }

    /// The grid of the current map; `None` while no map is loaded or the
    /// cluster is not initialized.
    pub fn grid(&self) -> Option<Grid> {
        self.current_map().ok().and_then(|map| map.grid)
    }

    /// Checked boxes over the loaded shards, for `Stats`; `None` while
    /// the map or its grid is not loaded (nothing true to say yet).
    /// Reading them also brings the `shards_loaded` gauge up to date.
    pub fn checked(&self) -> Option<u64> {
        self.gateway.stats().ok().map(|stats| stats.checked)
    }

    /// Sets box `index`; `then` gets the shard and the change number that
    /// committed it, or why not, from the shard's batching task (no task
    /// per Set: [`crate::batcher`]). Routed again while a split or merge
    /// moves the box, until `write_timeout_ms`.
    pub fn set<F>(&self, index: u64, checked: bool, then: F)
    where
        F: FnOnce(Result<(ShardId, u64)>) + Send + 'static,
    {
        self.gateway.commit_box_then(index, checked, then);
    }

    /// Writes a SetMany's `sets` in one call, split by shard: one entry
    /// per shard part with its sets and its own outcome. Indices past the
    /// grid fail the whole call with 400 before anything is sent.
    pub async fn set_many(
        &self,
        sets: Vec<BoxSet>,
    ) -> Result<Vec<(ShardId, Vec<BoxSet>, Result<Committed>)>> {
        self.gateway.write(sets).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::map::test_map;

    fn backend() -> (Arc<Gateway>, Backend) {
        let config = GatewayConfig {
            gateway_secret: Some("a-gateway-secret-of-some-length".into()),
            ws_send_queue: 7,
            ..Default::default()
        };
        let gateway = Gateway::new(config).unwrap();
        (gateway.clone(), Backend::new(gateway))
    }

    /// What `set` hands its callback, when it answers at once.
    fn set_outcome(backend: &Backend, index: u64) -> Result<(ShardId, u64)> {
        let (tx, rx) = std::sync::mpsc::channel();
        backend.set(index, true, move |outcome| tx.send(outcome).unwrap());
        rx.try_recv().expect("answered without a write")
    }

    #[tokio::test]
    async fn it_follows_the_gateway_and_refuses_what_no_map_allows() {
        let (gateway, backend) = backend();
        assert_eq!(backend.config.ws_send_queue, 7, "the gateway's settings");
        assert!(Arc::ptr_eq(&backend.metrics, &gateway.metrics));

        // No map yet: nothing to read, every write unavailable.
        assert!(matches!(backend.current_map(), Err(Error::Unavailable(_))));
        assert_eq!(backend.grid(), None);
        assert_eq!(backend.checked(), None);
        assert!(matches!(
            set_outcome(&backend, 0),
            Err(Error::Unavailable(_))
        ));
        let many = backend.set_many(vec![(0, true)]).await;
        assert!(matches!(many, Err(Error::Unavailable(_))));

        // A map: its grid, no shard loaded yet, boxes past it refused.
        assert!(gateway.map.offer(test_map(&["127.0.0.1:1"], 1, 1)));
        let grid = backend.grid().expect("the map's grid");
        assert_eq!((grid.boxes, grid.chunk_size), (10, 10));
        assert_eq!(backend.checked(), Some(0));
        assert!(matches!(
            set_outcome(&backend, 10),
            Err(Error::BadRequest(_))
        ));
        let many = backend.set_many(vec![(3, true), (10, true)]).await;
        assert!(matches!(many, Err(Error::BadRequest(_))));
        let sources = backend.fanout_sources();
        assert!(Arc::ptr_eq(&sources.shards, &gateway.shards));
    }
}
