//! Sending one batch to a shard's leader: routing, retries, timeout.
//!
//! [`NodeWriter`] posts `SetBatch{epoch, sets}` to `/shards/{id}/write`
//! and keeps trying until the batch is committed or `write_timeout_ms`
//! passes:
//! - target: the leader learned from the last answer, else the map's
//!   leader hint, else the replicas in turn;
//! - 421 `ForwardToLeader`: go to the named leader at once (the very
//!   next attempt, whatever failed before);
//! - 503, no leader, a network error or a request timeout: next
//!   candidate, after a backoff (at most 250 ms: during an election the
//!   writer polls, so it finds the new leader soon after it is up);
//! - an attempt unanswered for `probe_after_ms` (a paused or cut-off
//!   leader accepts the connection and never answers): the writer asks
//!   the other replicas who leads (`GET /shards/{id}/leader`), again every
//!   half of that, and as soon as one names another leader, abandons the
//!   attempt and sends there, so a write waits for the election, not for
//!   `node_timeout_ms`;
//! - `StaleEpoch`, `Moved` or `Frozen` (a split or merge): refresh the
//!   map, wait until the map or the shard's change stream shows the change
//!   (the stream usually does first), retry with the new epoch if the
//!   shard still owns every set's box; otherwise answer [`Error::Moved`],
//!   and [`crate::Gateway::write`] routes the sets again, by the change
//!   streams where they are ahead of the map ([`Shards::route`]);
//! - any other rejection: back to the caller as [`Error::Rejected`].
//!
//! Re-sending after a lost answer is safe: sets are absolute, so applying
//! a batch twice leaves the same state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkraft_auth::SendSigned;
use checkraft_proto::{BoxSet, Rejection, SetBatch, ShardId, ShardMap, WriteOutcome};
use tokio::time::Instant;

use crate::batcher::{BatchSender, Committed, SendFuture};
use crate::config::GatewayConfig;
use crate::error::{Error, Result};
use crate::map::MapFollower;
use crate::node_client::NodeClient;
use crate::shards::Shards;

/// How often a write refused by a split or merge looks for the change in
/// the map or the shard's change stream.
const CHANGE_POLL: Duration = Duration::from_millis(5);

/// The longest pause between two attempts of one write.
const MAX_WRITE_PAUSE: Duration = Duration::from_millis(250);

/// How one attempt ended.
enum Attempt {
    /// The node answered (or the request failed).
    Answered(std::result::Result<WriteOutcome, String>),
    /// The node was slow and the other replicas name this other leader.
    Moved(String),
}

/// The production [`BatchSender`]: HTTP to the shard's leader.
pub struct NodeWriter {
    config: GatewayConfig,
    http: NodeClient,
    map: Arc<MapFollower>,
    /// The change streams' view: newer than the map during a split or
    /// merge ([`Shards::ahead_of`]).
    shards: Arc<Shards>,
    leaders: Mutex<HashMap<ShardId, String>>,
}

/// The addresses to try for `shard`: known leader, hint, replicas.
fn targets(map: &ShardMap, shard: ShardId, known: Option<String>) -> Vec<String> {
    let mut out: Vec<String> = known.into_iter().collect();
    if let Some(record) = map.shards.get(&shard) {
        let ids = record
            .leader
            .into_iter()
            .chain(record.replicas.iter().copied());
        for id in ids {
            if let Some(addr) = map.addr(id) {
                if !out.iter().any(|a| a == addr) {
                    out.push(addr.to_string());
                }
            }
        }
    }
    out
}

impl NodeWriter {
    /// A writer routing with `map`, and with `shards` where the change
    /// streams are ahead of it.
    pub fn new(
        config: GatewayConfig,
        http: NodeClient,
        map: Arc<MapFollower>,
        shards: Arc<Shards>,
    ) -> Self {
        Self {
            config,
            http,
            map,
            shards,
            leaders: Mutex::new(HashMap::new()),
        }
    }

    fn known_leader(&self, shard: ShardId) -> Option<String> {
        self.leaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&shard)
            .cloned()
    }

    fn set_leader(&self, shard: ShardId, addr: Option<String>) {
        let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
        match addr {
            Some(a) => leaders.insert(shard, a),
            None => leaders.remove(&shard),
        };
    }

    async fn post(
        &self,
        addr: &str,
        shard: ShardId,
        batch: &SetBatch,
        limit: Duration,
    ) -> std::result::Result<WriteOutcome, String> {
        let url = format!("http://{addr}/shards/{shard}/write");
        let resp = self
            .http
            .post(url)
            .json(batch)
            .timeout(limit)
            .send_signed(self.http.signer())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice::<WriteOutcome>(&body)
            .map_err(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()))
    }

    /// Waits (at most `limit`) until the map is newer than `version` or
    /// `shard`'s change stream shows an epoch above `epoch` (the split or
    /// merge that refused the write, seen before the map records it);
    /// false if neither happened.
    async fn wait_for_change(
        &self,
        shard: ShardId,
        version: u64,
        epoch: u64,
        limit: Duration,
    ) -> bool {
        let until = Instant::now() + limit;
        loop {
            let newer_map = self.map.current().is_some_and(|m| m.version > version);
            let newer_stream = self
                .shards
                .get(shard)
                .is_some_and(|h| h.read().epoch > epoch);
            if newer_map || newer_stream {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(CHANGE_POLL).await;
        }
    }

    /// Writes `sets` to `shard` (see the module docs).
    pub async fn write(&self, shard: ShardId, sets: Vec<BoxSet>) -> Result<Committed> {
        let deadline = Instant::now() + self.config.write_timeout();
        let mut errors = 0u32;
        let mut forwards = 0u32;
        // A leader named by a 421: the next attempt goes there, whatever
        // the error count says (otherwise an attempt indexed past it keeps
        // asking a follower, which keeps forwarding: a loop until timeout).
        let mut forwarded: Option<String> = None;
        let mut last = String::from("no attempt");
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Unavailable(format!(
                    "shard {shard}: no commit within {} ms (last: {last})",
                    self.config.write_timeout_ms
                )));
            }
            let Some(map) = self.map.current() else {
                last = "no shard map yet".into();
                self.pause(errors, deadline).await;
                errors += 1;
                continue;
            };
            // The change stream's range and epoch when newer than the map
            // (a split's child the map does not list yet lives on its
            // parent's replicas, and its parent's leader leads it).
            let (d, routed_by) = match (self.shards.ahead_of(&map, shard), map.shards.get(&shard)) {
                (Some(live), record) => {
                    let via = record
                        .map(|r| r.descriptor.shard)
                        .or_else(|| map.shard_for(live.start).map(|r| r.descriptor.shard))
                        .unwrap_or(shard);
                    (live, via)
                }
                (None, Some(record)) => (record.descriptor.clone(), shard),
                (None, None) => {
                    return Err(Error::Moved(format!(
                        "shard {shard} is not in the shard map (version {})",
                        map.version
                    )))
                }
            };
            let d = &d;
            if let Some(&(index, _)) = sets.iter().find(|(i, _)| !d.contains(*i)) {
                return Err(Error::Moved(format!(
                    "box {index} is no longer in shard {shard} [{}, {}) (map version {})",
                    d.start, d.end, map.version
                )));
            }
            let candidates = targets(&map, routed_by, self.known_leader(shard));
            if candidates.is_empty() {
                last = "no replica address in the map".into();
                self.pause(errors, deadline).await;
                errors += 1;
                continue;
            }
            let addr = forwarded
                .take()
                .unwrap_or_else(|| candidates[errors as usize % candidates.len()].clone());
            let batch = SetBatch {
                epoch: d.epoch,
                sets: sets.clone(),
            };
            let limit = self.config.node_timeout().min(deadline - now);
            let others: Vec<String> = candidates.iter().filter(|a| **a != addr).cloned().collect();
            let outcome = match self.attempt(&addr, &others, shard, &batch, limit).await {
                Attempt::Answered(outcome) => outcome,
                Attempt::Moved(leader) => {
                    last = format!("{addr} did not answer; replicas name {leader} leader");
                    tracing::debug!(shard, %addr, %leader, "write moves to a newly elected leader");
                    self.set_leader(shard, Some(leader.clone()));
                    forwarded = Some(leader);
                    continue;
                }
            };
            tracing::debug!(shard, %addr, errors, outcome = ?outcome, "write attempt");
            match outcome {
                Ok(WriteOutcome::Applied { seq, .. }) => {
                    self.set_leader(shard, Some(addr));
                    return Ok(Committed { seq });
                }
                Ok(WriteOutcome::Rejected {
                    rejection:
                        rejection @ (Rejection::StaleEpoch { .. }
                        | Rejection::Moved { .. }
                        | Rejection::Frozen { .. }),
                }) => {
                    last = rejection.to_string();
                    self.map.request_refresh();
                    let wait = Duration::from_secs(1)
                        .min(deadline.saturating_duration_since(Instant::now()));
                    if !self
                        .wait_for_change(shard, map.version, d.epoch, wait)
                        .await
                    {
                        errors += 1;
                    }
                }
                Ok(WriteOutcome::Rejected { rejection }) => {
                    return Err(Error::Rejected(rejection));
                }
                Ok(WriteOutcome::ForwardToLeader {
                    leader_addr: Some(leader),
                    ..
                }) if leader != addr => {
                    last = format!("{addr} forwarded to {leader}");
                    self.set_leader(shard, Some(leader.clone()));
                    forwarded = Some(leader);
                    forwards += 1;
                    if forwards > 3 {
                        // Leadership is moving: give it a moment.
                        self.pause(errors, deadline).await;
                        forwards = 0;
                    }
                }
                Ok(other) => {
                    last = format!("{addr}: {other:?}");
                    self.set_leader(shard, None);
                    self.pause(errors, deadline).await;
                    errors += 1;
                }
                Err(e) => {
                    last = format!("{addr}: {e}");
                    self.set_leader(shard, None);
                    self.pause(errors, deadline).await;
                    errors += 1;
                }
            }
        }
    }

    /// One attempt at `addr`, asking `others` who leads while it is slow
    /// (see the module docs).
    async fn attempt(
        &self,
        addr: &str,
        others: &[String],
        shard: ShardId,
        batch: &SetBatch,
        limit: Duration,
    ) -> Attempt {
        let post = self.post(addr, shard, batch, limit);
        let mut post = std::pin::pin!(post);
        let mut probe_at = Instant::now() + self.config.probe_after();
        loop {
            tokio::select! {
                outcome = &mut post => return Attempt::Answered(outcome),
                _ = tokio::time::sleep_until(probe_at) => {
                    if let Some(leader) = self.probe(others, shard, addr).await {
                        return Attempt::Moved(leader);
                    }
                    probe_at = Instant::now() + self.config.probe_after() / 2;
                }
            }
        }
    }

    /// A leader other than `current` that one of `others` names, if any
    /// (each is asked for at most `probe_after_ms`; a replica that still
    /// names `current` does not count).
    async fn probe(&self, others: &[String], shard: ShardId, current: &str) -> Option<String> {
        let limit = self.config.probe_after();
        let asks = others.iter().map(|addr| {
            let view = self.http.leader_view(addr, shard, limit);
            Box::pin(async move { view.await?.leader_addr })
        });
        let mut asks: futures::stream::FuturesUnordered<_> = asks.collect();
        while let Some(answer) = futures::StreamExt::next(&mut asks).await {
            if answer.as_deref().is_some_and(|a| a != current) {
                return answer;
            }
        }
        None
    }

    /// Waits before the next attempt: the configured backoff, but never
    /// more than [`MAX_WRITE_PAUSE`]. A write waits for a leader election,
    /// and every moment slept after the new leader is up is unavailability
    /// (the `failover` benchmark saw a second of it); an attempt costs one
    /// small request per shard and gateway.
    async fn pause(&self, errors: u32, deadline: Instant) {
        let wait = self.config.backoff(errors).min(MAX_WRITE_PAUSE);
        let until = (Instant::now() + wait).min(deadline);
        tokio::time::sleep_until(until).await;
    }
}

impl BatchSender for Arc<NodeWriter> {
    fn send(&self, shard: ShardId, sets: Vec<BoxSet>) -> SendFuture {
        let this = self.clone();
        Box::pin(async move { this.write(shard, sets).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::test_map;

    #[test]
    fn targets_put_the_known_leader_then_the_hint_first() {
        let map = test_map(&["h:1", "h:2", "h:3"], 1, 3);
        assert_eq!(targets(&map, 1, None), vec!["h:3", "h:1", "h:2"]);
        assert_eq!(
            targets(&map, 1, Some("h:2".into())),
            vec!["h:2", "h:3", "h:1"]
        );
        assert!(targets(&map, 7, None).is_empty());
    }

    /// The failover case: the hinted leader fails once (it was killed),
    /// both followers then name node 3 as the leader. The write must go
    /// to node 3 right after a forward, not keep asking a follower that
    /// keeps forwarding until the write times out.
    #[tokio::test]
    async fn a_forward_is_followed_even_after_an_error() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use warp::Filter;
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let leader = addrs[2].clone();
        let first_calls = Arc::new(AtomicU32::new(0));
        for (i, listener) in listeners.into_iter().enumerate() {
            let leader = leader.clone();
            let first_calls = first_calls.clone();
            let route = warp::post().map(move || {
                let outcome = match i {
                    // The old leader: down once, then a follower.
                    0 if first_calls.fetch_add(1, Ordering::SeqCst) == 0 => {
                        return warp::reply::with_status(
                            warp::reply::json(&"restarting"),
                            warp::http::StatusCode::SERVICE_UNAVAILABLE,
                        );
                    }
                    0 | 1 => WriteOutcome::ForwardToLeader {
                        leader_id: Some(3),
                        leader_addr: Some(leader.clone()),
                    },
                    _ => WriteOutcome::Applied {
                        log_id: checkraft_proto::raft::log_id(1, 3, 7),
                        seq: 42,
                        changed: 1,
                    },
                };
                warp::reply::with_status(warp::reply::json(&outcome), warp::http::StatusCode::OK)
            });
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tokio::spawn(warp::serve(route).incoming(listener).run());
        }
        let config = GatewayConfig {
            write_timeout_ms: 5_000,
            retry_ms: 10,
            ..GatewayConfig::default()
        };
        let http = NodeClient::for_tests();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let map = Arc::new(MapFollower::new(config.clone(), http.clone(), metrics));
        let hosts: Vec<&str> = addrs.iter().map(String::as_str).collect();
        assert!(map.offer(test_map(&hosts, 1, 1)));
        let writer = NodeWriter::new(config, http, map, Arc::new(Shards::default()));
        let committed = writer
            .write(1, vec![(3, true)])
            .await
            .expect("the write reaches the leader named by the forwards");
        assert_eq!(committed.seq, 42);
        assert_eq!(writer.known_leader(1), Some(leader));
    }
}
