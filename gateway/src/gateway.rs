//! [`Gateway`]: the map follower, shard states and write batchers behind
//! one handle, used by the HTTP API and the websocket layer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use checkraft_proto::{BoxSet, Grid, ShardId, ShardMap};
use tokio::sync::watch;

use crate::batcher::{Batcher, Committed};
use crate::chunk::{self, ChunkRange};
use crate::config::GatewayConfig;
use crate::error::{Error, Result};
use crate::map::MapFollower;
use crate::metrics::Metrics;
use crate::node_client::NodeClient;
use crate::registry::Registry;
use crate::shards::{ShardHandle, Shards};
use crate::subscription::Subscriber;
use crate::writer::NodeWriter;

/// A chunk's content at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkView {
    /// Where the chunk lies.
    pub range: ChunkRange,
    /// The shard holding it.
    pub shard: ShardId,
    /// The shard's epoch.
    pub epoch: u64,
    /// The shard's change number the bits reflect.
    pub seq: u64,
    /// The bitset body (see [`crate::chunk`] for the bit order).
    pub bits: Vec<u8>,
}

impl ChunkView {
    /// The chunk's HTTP entity tag, a digest of its content
    /// ([`chunk::etag`]): the same on every gateway, and unchanged by
    /// writes to other chunks of the shard.
    pub fn etag(&self) -> String {
        chunk::etag(&self.bits)
    }
}

/// A box's value at one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxView {
    /// The box.
    pub index: u64,
    /// Its value.
    pub checked: bool,
    /// Its shard's change number the value reflects.
    pub seq: u64,
}

/// What `GET /api/stats` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Checked boxes over all loaded shards.
    pub checked: u64,
    /// Boxes in the grid.
    pub boxes: u64,
    /// Boxes per chunk.
    pub chunk_size: u32,
    /// Shards whose state is loaded.
    pub shards_loaded: usize,
    /// Shards in the map.
    pub shards: usize,
    /// The version of the map in use.
    pub map_version: u64,
}

/// The gateway's shared core.
pub struct Gateway {
    /// The configuration it runs with.
    pub config: GatewayConfig,
    /// The shard map, followed live.
    pub map: Arc<MapFollower>,
    /// Every shard's state.
    pub shards: Arc<Shards>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The live gateway registry: this gateway's reports and the list
    /// `/config.json` serves.
    pub registry: Arc<Registry>,
    writer: Arc<NodeWriter>,
    batchers: Mutex<HashMap<ShardId, Batcher>>,
    stream_http: NodeClient,
}

impl Gateway {
    /// A gateway with no map yet; [`Self::start`] starts its tasks.
    pub fn new(config: GatewayConfig) -> Result<Arc<Self>> {
        let signer = config.signer()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.node_timeout())
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let http = NodeClient::new(http, signer.clone());
        // Change streams are long-lived: a separate client, so that no
        // pooled request waits behind them, and no overall timeout.
        let stream_http = reqwest::Client::builder()
            .connect_timeout(config.node_timeout())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let stream_http = NodeClient::new(stream_http, signer);
        let metrics = Arc::new(Metrics::new());
        let map = Arc::new(MapFollower::new(
            config.clone(),
            http.clone(),
            metrics.clone(),
        ));
        let shards = Arc::new(Shards::default());
        let registry = Arc::new(Registry::new(config.clone(), http.clone(), map.clone()));
        let writer = Arc::new(NodeWriter::new(
            config.clone(),
            http,
            map.clone(),
            shards.clone(),
        ));
        Ok(Arc::new(Self {
            config,
            map,
            shards,
            metrics,
            registry,
            writer,
            batchers: Mutex::new(HashMap::new()),
            stream_http,
        }))
    }

    /// Starts the map follower and the task that keeps one subscription
    /// per shard of the map. Both end when `shutdown` flips to true.
    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        tokio::spawn(self.map.clone().run(shutdown.clone()));
        let this = self.clone();
        tokio::spawn(async move { this.reconcile_loop(shutdown).await });
    }

    async fn reconcile_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut maps = self.map.watch();
        loop {
            let map = maps.borrow_and_update().clone();
            if let Some(map) = map {
                for handle in self.shards.reconcile(&map, self.config.update_buffer) {
                    tracing::info!(shard = handle.id, "subscribing");
                    let subscriber = Subscriber {
                        handle: handle.clone(),
                        map: self.map.clone(),
                        http: self.stream_http.clone(),
                        config: self.config.clone(),
                        metrics: self.metrics.clone(),
                        shards: self.shards.clone(),
                        shutdown: shutdown.clone(),
                    };
                    subscriber.spawn();
                }
                let mut batchers = self.batchers.lock().unwrap_or_else(|e| e.into_inner());
                batchers.retain(|id, _| map.shards.contains_key(id));
            }
            tokio::select! {
                changed = maps.changed() => if changed.is_err() { break },
                // A stream changed a shard's range: what the map says may
                // need a handle now.
                _ = self.shards.recheck() => {}
                _ = shutdown.changed() => break,
            }
        }
        self.shards.stop_all();
    }

    /// The current map, or 503.
    pub fn current_map(&self) -> Result<Arc<ShardMap>> {
        self.map
            .current()
            .ok_or_else(|| Error::Unavailable("the shard map is not loaded yet".into()))
    }

    fn grid(map: &ShardMap) -> Result<Grid> {
        map.grid
            .ok_or_else(|| Error::Unavailable("the cluster is not initialized".into()))
    }

    /// The shard owning box `index` and its loaded handle.
    fn loaded_handle(&self, map: &ShardMap, index: u64) -> Result<Arc<ShardHandle>> {
        let record = map
            .shard_for(index)
            .ok_or_else(|| Error::Unavailable(format!("no shard owns box {index}")))?;
        let id = record.descriptor.shard;
        let handle = self
            .shards
            .get(id)
            .filter(|h| {
                let state = h.read();
                state.start <= index && index < state.end
            })
            // The streams run ahead of the map during a split or merge:
            // the state that holds the box is the one to read.
            .or_else(|| self.shards.covering(index))
            .ok_or_else(|| Error::Unavailable(format!("shard {id} is not subscribed yet")))?;
        if !handle.read().loaded {
            return Err(Error::Unavailable(format!(
                "shard {id}'s state is not loaded yet"
            )));
        }
        Ok(handle)
    }

    /// Checks that `index` is a box of the grid (400 otherwise).
    fn check_index(grid: &Grid, index: u64) -> Result<()> {
        if index >= grid.boxes {
            return Err(Error::BadRequest(format!(
                "box {index} is out of range: the grid has boxes 0..{}",
                grid.boxes
            )));
        }
        Ok(())
    }

    /// Chunk `id`'s bits and version: 404 past the grid, 503 while its
    /// shard is not loaded.
    pub fn chunk(&self, id: u64) -> Result<ChunkView> {
        let map = self.current_map()?;
        let grid = Self::grid(&map)?;
        let range = chunk::chunk_range(&grid, id).ok_or_else(|| {
            Error::NotFound(format!(
                "chunk {id}: the grid has chunks 0..{}",
                chunk::chunk_count(&grid)
            ))
        })?;
        let handle = self.loaded_handle(&map, range.start)?;
        let state = handle.read();
        if range.start < state.start || range.end > state.end {
            return Err(Error::Unavailable(format!(
                "chunk {id} is not within shard {}'s loaded range",
                handle.id
            )));
        }
        Ok(ChunkView {
            range,
            shard: handle.id,
            epoch: state.epoch,
            seq: state.seq,
            bits: chunk::encode_bits(&state.bitmap, range.start, range.end),
        })
    }

    /// Box `index`'s value: 400 past the grid, 503 while not loaded.
    pub fn get_box(&self, index: u64) -> Result<BoxView> {
        let map = self.current_map()?;
        Self::check_index(&Self::grid(&map)?, index)?;
        let handle = self.loaded_handle(&map, index)?;
        let state = handle.read();
        Ok(BoxView {
            index,
            checked: state.contains(index),
            seq: state.seq,
        })
    }

    fn batcher(&self, shard: ShardId) -> Batcher {
        let mut batchers = self.batchers.lock().unwrap_or_else(|e| e.into_inner());
        batchers
            .entry(shard)
            .or_insert_with(|| {
                Batcher::spawn(
                    shard,
                    Arc::new(self.writer.clone()),
                    self.config.batch_tick(),
                    self.config.batch_max_sets,
                    self.metrics.clone(),
                )
            })
            .clone()
    }

    /// Writes `sets` through the shards' batchers. Each shard's part
    /// succeeds or fails on its own: the answer has one entry per shard,
    /// with the sets it carried. Indices past the grid fail the whole call
    /// with 400 before anything is sent. Sets whose boxes a split or merge
    /// moved while they were under way are routed again by the newer map
    /// (their entry names the shard that took them).
    pub async fn write(
        &self,
        sets: Vec<BoxSet>,
    ) -> Result<Vec<(ShardId, Vec<BoxSet>, Result<Committed>)>> {
        let grid = Self::grid(&*self.current_map()?)?;
        for &(index, _) in &sets {
            Self::check_index(&grid, u64::from(index))?;
        }
        let deadline = tokio::time::Instant::now() + self.config.write_timeout();
        let mut done = Vec::new();
        let mut todo = sets;
        while !todo.is_empty() {
            let map = self.current_map()?;
            let mut by_shard: BTreeMap<ShardId, Vec<BoxSet>> = BTreeMap::new();
            for &(index, checked) in &todo {
                let shard = self.route(&map, u64::from(index))?;
                by_shard.entry(shard).or_default().push((index, checked));
            }
            let parts = by_shard.into_iter().map(|(shard, sets)| async move {
                let outcome = self.submit(shard, sets.clone()).await;
                (shard, sets, outcome)
            });
            todo = Vec::new();
            let retry = tokio::time::Instant::now() < deadline;
            for (shard, sets, outcome) in futures::future::join_all(parts).await {
                match outcome {
                    Err(Error::Moved(why)) if retry => {
                        tracing::debug!(shard, %why, sets = sets.len(), "routing again");
                        self.metrics.writes_rerouted.inc_by(sets.len() as u64);
                        todo.extend(sets);
                    }
                    outcome => done.push((shard, sets, outcome)),
                }
            }
            if !todo.is_empty() {
                // The writer saw a newer map; if not, wait a little for one.
                let wait = std::time::Duration::from_millis(50);
                tokio::time::sleep(wait).await;
            }
        }
        Ok(done)
    }

    /// Sends `sets` (all of `shard`) through its batcher; on commit, tells
    /// the shard's subscription which seq it must reach (see
    /// `stale_replica_ms`).
    async fn submit(&self, shard: ShardId, sets: Vec<BoxSet>) -> Result<Committed> {
        let committed = self.batcher(shard).submit(sets).await?;
        self.note_committed(shard, committed.seq);
        Ok(committed)
    }

    /// Tells `shard`'s subscription that it must reach `seq` (see
    /// `stale_replica_ms`).
    fn note_committed(&self, shard: ShardId, seq: u64) {
        if let Some(handle) = self.shards.get(shard) {
            handle.note_committed(seq);
        }
    }

    /// The shard a write of box `index` goes to
    /// ([`crate::shards::Shards::route`]).
    fn route(&self, map: &ShardMap, index: u64) -> Result<ShardId> {
        self.shards
            .route(map, index)
            .ok_or_else(|| Error::Unavailable(format!("no shard owns box {index}")))
    }

    /// One Set's box checked against the grid, and its shard.
    fn route_box(&self, map: &ShardMap, index: u64) -> Result<(ShardId, u32)> {
        Self::check_index(&Self::grid(map)?, index)?;
        let box_index = u32::try_from(index)
            .map_err(|_| Error::BadRequest(format!("box {index} is out of range")))?;
        Ok((self.route(map, index)?, box_index))
    }

    /// Sets box `index` and waits for the commit only: the shard's change
    /// number that committed it. What a websocket `Ack` reports; the
    /// client learns the new value from its `Update` (which may come
    /// later, when this gateway's change stream delivers it).
    ///
    /// [`Self::write`] for one set, without its per-call grouping (this
    /// is the websocket's per-Set path): routed again while a split or
    /// merge moves the box, until `write_timeout_ms`.
    pub async fn commit_box(&self, index: u64, checked: bool) -> Result<(ShardId, u64)> {
        let deadline = tokio::time::Instant::now() + self.config.write_timeout();
        loop {
            let (shard, box_index) = self.route_box(&*self.current_map()?, index)?;
            match self.submit(shard, vec![(box_index, checked)]).await {
                Err(Error::Moved(why)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(shard, %why, sets = 1, "routing again");
                    self.metrics.writes_rerouted.inc();
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                outcome => return Ok((shard, outcome?.seq)),
            }
        }
    }

    /// [`Self::commit_box`] without a task per Set: `then` gets the
    /// outcome, called by the shard's batching task when the batch is done
    /// (the websocket's Set path; a task and a channel per Set were a
    /// quarter of the gateway's CPU under write load). Only a Set refused
    /// because a split or merge moved its box, or one that finds the
    /// shard's queue full, is finished by a task (the first runs
    /// [`Self::commit_box`] again, with its own `write_timeout_ms`).
    pub fn commit_box_then<F>(self: &Arc<Self>, index: u64, checked: bool, then: F)
    where
        F: FnOnce(Result<(ShardId, u64)>) + Send + 'static,
    {
        let routed = self
            .current_map()
            .and_then(|map| self.route_box(&map, index));
        let (shard, box_index) = match routed {
            Ok(r) => r,
            Err(e) => return then(Err(e)),
        };
        let gateway = self.clone();
        let done: crate::batcher::Then = Box::new(move |outcome| match outcome {
            Ok(committed) => {
                gateway.note_committed(shard, committed.seq);
                then(Ok((shard, committed.seq)))
            }
            Err(Error::Moved(why)) => {
                tracing::debug!(shard, %why, sets = 1, "routing again");
                gateway.metrics.writes_rerouted.inc();
                tokio::spawn(async move { then(gateway.commit_box(index, checked).await) });
            }
            Err(e) => then(Err(e)),
        });
        let batcher = self.batcher(shard);
        if let Err(done) = batcher.submit_then(vec![(box_index, checked)], done) {
            // The queue is full: wait for room like any caller.
            tokio::spawn(async move { done(batcher.submit(vec![(box_index, checked)]).await) });
        }
    }

    /// Sets box `index` and waits for the commit; then waits (at most
    /// `read_your_writes_ms`) until this gateway's state shows it. If it
    /// still does not, the write is committed but the answer is 503: a 200
    /// promises that a read from this gateway shows the write. (The HTTP
    /// API and the no-JS page; websocket Sets use [`Self::commit_box`].)
    pub async fn set_box(&self, index: u64, checked: bool) -> Result<BoxView> {
        let (shard, seq) = self.commit_box(index, checked).await?;
        if let Some(handle) = self.shards.get(shard) {
            let limit = std::time::Duration::from_millis(self.config.read_your_writes_ms);
            if !handle.wait_seq(seq, limit).await {
                return Err(Error::Unavailable(format!(
                    "box {index} was committed (shard {shard} change {seq}), but this gateway does \
                     not show it after {} ms: its replica lags; read again shortly",
                    self.config.read_your_writes_ms
                )));
            }
        }
        Ok(BoxView {
            index,
            checked,
            seq,
        })
    }

    /// Grid totals and loading progress.
    pub fn stats(&self) -> Result<Stats> {
        let map = self.current_map()?;
        let grid = Self::grid(&map)?;
        let mut checked = 0;
        let mut loaded = 0;
        for handle in self.shards.all() {
            let state = handle.read();
            if state.loaded {
                loaded += 1;
                checked += state.bitmap.cardinality();
            }
        }
        self.metrics.shards_loaded.set(loaded as i64);
        Ok(Stats {
            checked,
            boxes: grid.boxes,
            chunk_size: grid.chunk_size,
            shards_loaded: loaded,
            shards: map.shards.len(),
            map_version: map.version,
        })
    }

    /// `Ok` once the map is loaded and every shard of it is loaded; else
    /// why not.
    pub fn health(&self) -> Result<()> {
        let map = self.current_map()?;
        let mut missing = Vec::new();
        for id in map.shards.keys() {
            let loaded = self.shards.get(*id).is_some_and(|h| h.read().loaded);
            if !loaded {
                missing.push(id.to_string());
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Unavailable(format!(
                "shard states not loaded yet: {}",
                missing.join(", ")
            )))
        }
    }

    /// The metrics text, with the gauges brought up to date.
    pub fn render_metrics(&self) -> String {
        let _ = self.stats();
        self.metrics.render()
    }
}
