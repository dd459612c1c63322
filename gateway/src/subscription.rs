//! One shard's change-stream subscription: the only writer of its state.
//!
//! The task holds exactly one `GET /shards/{id}/changes?from=SEQ` stream at
//! a time, on a replica from the current map, and applies its frames to
//! the [`ShardHandle`]'s state. Each gateway starts at a random replica of
//! each shard, so gateways spread their streams over the replicas (and
//! two gateways do not share one bad choice). It drops the stream and
//! resubscribes from the last applied `seq` when:
//! - the replica stops advancing: it has not reached a `seq` this
//!   gateway knows is committed (its own writes' acknowledgements, and
//!   the leader's applied `seq` that [`crate::commit_watch`] asks for
//!   while the stream is on a follower; [`ShardHandle::note_committed`])
//!   within `stale_replica_ms`. A replica cut off from its group still
//!   answers, with progress markers, so this is how it is noticed. The
//!   rule holds while a stream is being opened too, so a replica that
//!   does not answer at all (a paused node, such as an old leader the
//!   map still names) is left as fast, not after `node_timeout_ms`. The
//!   next stream goes to the map's leader, or, when the map still names
//!   the stale replica, to another replica;
//! - a `Changes` event skips a `seq` (gap) or a progress marker is ahead
//!   of us (same replica: it replays or sends a snapshot);
//! - a progress marker or snapshot is behind us (that replica lags: next
//!   replica);
//! - the stream ends, fails, or stays silent for `stream_idle_ms` (next
//!   replica, with backoff);
//! - the map changes the shard's replicas, addresses, range or epoch. A
//!   range change also resets the state, so the next subscription starts
//!   from scratch (`from=0`).

use std::sync::Arc;

use checkraft_auth::SendSigned;
use checkraft_proto::codec::FrameReader;
use checkraft_proto::{ChangeEvent, NodeId, ShardDescriptor, ShardMap};
use tokio::sync::watch;

use crate::commit_watch;
use crate::config::GatewayConfig;
use crate::map::MapFollower;
use crate::metrics::Metrics;
use crate::node_client::NodeClient;
use crate::shards::{ShardHandle, ShardUpdate, Shards};
use crate::state::Applied;

/// What a subscription depends on in the map: when this changes, it
/// resubscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteKey {
    descriptor: ShardDescriptor,
    replicas: Vec<(NodeId, Option<String>)>,
}

fn route_key(map: &ShardMap, shard: u64) -> Option<RouteKey> {
    let record = map.shards.get(&shard)?;
    Some(RouteKey {
        descriptor: record.descriptor.clone(),
        replicas: record
            .replicas
            .iter()
            .map(|r| (*r, map.addr(*r).map(String::from)))
            .collect(),
    })
}

/// Replica addresses in the order to try: non-leaders first.
fn candidates(map: &ShardMap, shard: u64) -> Vec<String> {
    let Some(record) = map.shards.get(&shard) else {
        return Vec::new();
    };
    let mut ids: Vec<NodeId> = record
        .replicas
        .iter()
        .copied()
        .filter(|r| Some(*r) != record.leader)
        .collect();
    ids.extend(record.leader.filter(|l| record.replicas.contains(l)));
    ids.iter()
        .filter_map(|id| map.addr(*id).map(String::from))
        .collect()
}

/// Why one stream ended.
enum End {
    /// The replica did not reach a known-committed seq in time.
    Stale {
        /// Where the replica's stream was.
        replica_seq: u64,
        /// The seq known committed.
        committed: u64,
    },
    /// The shard's route changed in the map.
    MapChanged,
    /// Events are missing; resubscribe on the same replica.
    Gap(String),
    /// The replica is behind us; try another.
    ReplicaLags(u64),
    /// The stream failed; try another after a pause.
    Failed(String),
    /// Shutting down, or the map follower is gone.
    Shutdown,
}

/// Everything a subscription task needs.
pub(crate) struct Subscriber {
    pub handle: Arc<ShardHandle>,
    pub map: Arc<MapFollower>,
    pub http: NodeClient,
    pub config: GatewayConfig,
    pub metrics: Arc<Metrics>,
    /// The registry, where a split's child is registered.
    pub shards: Arc<Shards>,
    /// Flips to true at shutdown.
    pub shutdown: watch::Receiver<bool>,
}

/// Decrements the open-streams gauge when a stream ends.
struct OpenStream<'a>(&'a Metrics);

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.subscriptions.dec();
    }
}

impl Subscriber {
    /// Starts [`Self::run`] as the handle's task.
    pub fn spawn(self) {
        let handle = self.handle.clone();
        let task = tokio::spawn(self.run());
        handle.set_task(task.abort_handle());
    }

    /// The same subscription for another handle (a split's child).
    fn for_handle(&self, handle: Arc<ShardHandle>) -> Self {
        Self {
            handle,
            map: self.map.clone(),
            http: self.http.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            shards: self.shards.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Follows the shard until shutdown or until it leaves the map (the
    /// registry then aborts this task).
    pub async fn run(self) {
        let mut shutdown = self.shutdown.clone();
        let shard = self.handle.id;
        let mut map_rx = self.map.watch();
        // A random first replica: gateways spread over the replicas.
        let mut next: usize = rand::random::<u16>().into();
        // After a stale replica: the address to leave (the map's leader
        // hint may still name it, when it is the frozen old leader).
        let mut left: Option<String> = None;
        let mut failures = 0u32;
        let mut first = true;
        loop {
            let Some(map) = self.map.current() else {
                tokio::select! {
                    changed = map_rx.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                }
                continue;
            };
            let Some(key) = route_key(&map, shard) else {
                if self.handle.unrecorded_child() {
                    // Born by a split the map does not show yet.
                    tokio::select! {
                        changed = map_rx.changed() => if changed.is_err() { return },
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
                return;
            };
            let replicas = candidates(&map, shard);
            if replicas.is_empty() {
                tracing::warn!(shard, "no replica address in the map");
                tokio::select! {
                    _ = map_rx.changed() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let leader_id = map.shards.get(&shard).and_then(|r| r.leader);
            let leader = leader_id.and_then(|l| map.addr(l)).map(String::from);
            let addr = match (left.take(), leader.clone()) {
                (Some(stale), Some(leader)) if leader != stale => leader,
                (Some(stale), _) => {
                    // No other leader known: the next replica but the stale one.
                    let others: Vec<&String> = replicas.iter().filter(|a| **a != stale).collect();
                    match others.len() {
                        0 => stale,
                        n => others[next % n].clone(),
                    }
                }
                (None, _) => replicas[next % replicas.len()].clone(),
            };
            if !first {
                self.metrics.resubscriptions.inc();
            }
            first = false;
            tracing::info!(shard, node = %addr, "following the shard's change stream");
            let opened = tokio::time::Instant::now();
            let stream = self.stream(&addr, &key, &mut map_rx, &mut shutdown);
            // On a follower, the leader's progress is watched beside the
            // stream (crate::commit_watch).
            let end = match leader_id.zip(leader.filter(|l| *l != addr)) {
                Some((id, leader)) => {
                    let interval = self.config.stale_replica();
                    let watch = commit_watch::follow(
                        &self.http,
                        (id, &leader),
                        shard,
                        &self.handle,
                        interval,
                    );
                    tokio::select! {
                        end = stream => end,
                        never = watch => match never {},
                    }
                }
                None => stream.await,
            };
            if opened.elapsed() > self.config.stream_idle() {
                // The stream served a while: earlier failures are history.
                failures = 0;
            }
            let pause = match end {
                End::Shutdown => return,
                End::MapChanged => {
                    tracing::debug!(shard, "the shard's route changed; resubscribing");
                    None
                }
                End::Gap(reason) => {
                    // Same replica: it replays from our seq or sends a
                    // snapshot. A short pause keeps a misbehaving replica
                    // from spinning us.
                    tracing::debug!(shard, node = %addr, %reason, "events missing; resubscribing");
                    Some(std::time::Duration::from_millis(self.config.retry_ms))
                }
                End::Stale {
                    replica_seq,
                    committed,
                } => {
                    tracing::info!(shard, node = %addr, replica_seq, committed, "the replica stopped advancing; switching (to the leader unless the map names this one)");
                    self.metrics.stale_replicas.inc();
                    next += 1;
                    left = Some(addr.clone());
                    None
                }
                End::ReplicaLags(replica_seq) => {
                    tracing::debug!(shard, node = %addr, replica_seq, "the replica lags; switching");
                    next += 1;
                    Some(std::time::Duration::from_millis(self.config.retry_ms))
                }
                End::Failed(reason) => {
                    if failures == 0 {
                        tracing::info!(shard, node = %addr, %reason, "change stream failed; switching replica");
                    }
                    next += 1;
                    failures += 1;
                    Some(self.config.backoff(failures - 1))
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// One stream from `addr`, until it must be replaced.
    async fn stream(
        &self,
        addr: &str,
        key: &RouteKey,
        map_rx: &mut watch::Receiver<Option<Arc<ShardMap>>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let shard = self.handle.id;
        let from = self.handle.read().seq;
        let url = format!("http://{addr}/shards/{shard}/changes?from={from}");
        // The stale rule holds while the stream is being opened too: a
        // paused node (the old leader the map still names, say) accepts
        // the connection and never answers, and waiting `node_timeout_ms`
        // for it would freeze this gateway's state, and every
        // read-your-writes PUT, that long.
        let opened = tokio::select! {
            r = tokio::time::timeout(self.config.node_timeout(), self.http.get(url).send_signed(self.http.signer())) => r,
            committed = self.out_of_reach(from) => {
                return End::Stale { replica_seq: from, committed };
            }
            _ = shutdown.changed() => return End::Shutdown,
        };
        let mut resp = match opened {
            Err(_) => return End::Failed("no answer".into()),
            Ok(Err(e)) => return End::Failed(e.to_string()),
            Ok(Ok(resp)) if !resp.status().is_success() => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                return End::Failed(format!("HTTP {status}: {}", body.trim()));
            }
            Ok(Ok(resp)) => resp,
        };
        self.metrics.subscriptions.inc();
        let _open = OpenStream(&self.metrics);
        let mut reader = FrameReader::new();
        let mut committed = self.handle.committed();
        // A committed seq the stream must reach, and since when.
        let mut target: Option<(u64, tokio::time::Instant)> = None;
        loop {
            let seq = self.handle.read().seq;
            let known = *committed.borrow_and_update();
            if target.is_some_and(|(t, _)| seq >= t) {
                target = None;
            }
            if target.is_none() && known > seq {
                target = Some((known, tokio::time::Instant::now()));
            }
            let stale_at = target.map(|(_, since)| since + self.config.stale_replica());
            tokio::select! {
                _ = async { tokio::time::sleep_until(stale_at.expect("guarded")).await }, if stale_at.is_some() => {
                    return End::Stale { replica_seq: seq, committed: known };
                }
                _ = committed.changed() => continue,
                chunk = tokio::time::timeout(self.config.stream_idle(), resp.chunk()) => {
                    let bytes = match chunk {
                        Err(_) => return End::Failed("stream idle".into()),
                        Ok(Err(e)) => return End::Failed(e.to_string()),
                        Ok(Ok(None)) => return End::Failed("stream ended".into()),
                        Ok(Ok(Some(bytes))) => bytes,
                    };
                    reader.push(&bytes);
                    loop {
                        match reader.next_frame::<ChangeEvent>() {
                            Ok(Some(event)) => {
                                if let Some(end) = self.apply(&event) {
                                    return end;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return End::Failed(format!("bad frame: {e}")),
                        }
                    }
                }
                changed = map_rx.changed() => {
                    if changed.is_err() {
                        return End::Shutdown;
                    }
                    let current = map_rx.borrow_and_update().clone();
                    let moved = current.as_ref().map(|m| route_key(m, shard)) != Some(Some(key.clone()));
                    if moved {
                        return End::MapChanged;
                    }
                }
                _ = shutdown.changed() => return End::Shutdown,
            }
        }
    }

    /// Resolves once a `seq` known committed has been above `seq` for
    /// `stale_replica_ms`, with the `seq` known committed then: the stale
    /// rule for a stream that is not open yet.
    async fn out_of_reach(&self, seq: u64) -> u64 {
        let mut committed = self.handle.committed();
        loop {
            if *committed.borrow_and_update() > seq {
                tokio::time::sleep(self.config.stale_replica()).await;
                return *committed.borrow();
            }
            if committed.changed().await.is_err() {
                // The handle is gone: only the other branches can end the wait.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Applies one event; `Some` when the stream must be replaced.
    fn apply(&self, event: &ChangeEvent) -> Option<End> {
        let shard = self.handle.id;
        let applied = self.handle.write().apply(event);
        match applied {
            Applied::Split { seq, child } => {
                self.metrics.events_applied.inc();
                let (id, at, end) = (child.shard, child.start, child.end);
                tracing::info!(
                    shard,
                    child = id,
                    at,
                    end,
                    seq,
                    "the shard split; following the child from its birth"
                );
                // Registered before the parent's update goes out: its
                // fan-out hands the child's chunks over (ws::fanout).
                let handle = self.shards.adopt(child, self.config.update_buffer);
                self.for_handle(handle).spawn();
                self.handle.publish(
                    seq,
                    ShardUpdate::Split {
                        shard,
                        seq,
                        child: id,
                        at,
                        end,
                    },
                );
                self.shards.range_changed();
                None
            }
            Applied::Marker { seq } => {
                self.metrics.events_applied.inc();
                let update = match event {
                    ChangeEvent::Frozen { .. } => ShardUpdate::Frozen { shard, seq },
                    _ => ShardUpdate::Changes {
                        shard,
                        epoch: self.handle.read().epoch,
                        seq,
                        sets: Vec::new(),
                    },
                };
                self.handle.publish(seq, update);
                None
            }
            Applied::Merged {
                seq,
                right,
                right_seq,
                start,
                end,
            } => {
                self.metrics.events_applied.inc();
                tracing::info!(
                    shard,
                    right,
                    start,
                    end,
                    seq,
                    "the shard absorbed its right neighbour"
                );
                self.handle.publish(
                    seq,
                    ShardUpdate::Merged {
                        shard,
                        seq,
                        right,
                        right_seq,
                        start,
                        end,
                    },
                );
                self.shards.range_changed();
                None
            }
            Applied::Changes { seq, sets } => {
                self.metrics.events_applied.inc();
                let epoch = self.handle.read().epoch;
                self.handle.publish(
                    seq,
                    ShardUpdate::Changes {
                        shard,
                        epoch,
                        seq,
                        sets,
                    },
                );
                None
            }
            Applied::Reset { seq } => {
                self.metrics.events_applied.inc();
                let epoch = self.handle.read().epoch;
                self.handle
                    .publish(seq, ShardUpdate::Reset { shard, epoch, seq });
                self.shards.range_changed();
                None
            }
            Applied::Nothing => None,
            Applied::Behind { replica_seq } => Some(End::Gap(format!(
                "the replica is at {replica_seq} but sent nothing"
            ))),
            Applied::Gap { got } => Some(End::Gap(format!("got seq {got}"))),
            Applied::ReplicaLags { replica_seq } => Some(End::ReplicaLags(replica_seq)),
            Applied::Invalid(why) => Some(End::Failed(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::test_map;

    #[test]
    fn non_leaders_come_first_and_key_tracks_replicas() {
        let map = test_map(&["h:1", "h:2", "h:3"], 5, 1);
        assert_eq!(candidates(&map, 5), vec!["h:2", "h:3", "h:1"]);
        let key = route_key(&map, 5).unwrap();
        let mut hinted = map.clone();
        hinted.shards.get_mut(&5).unwrap().leader = Some(2);
        assert_eq!(
            route_key(&hinted, 5).unwrap(),
            key,
            "a leader hint alone keeps the stream"
        );
        hinted.shards.get_mut(&5).unwrap().replicas = vec![2, 3];
        assert_ne!(route_key(&hinted, 5).unwrap(), key);
        assert!(candidates(&map, 9).is_empty());
    }

    /// A paused node (the old leader the map still names) accepts the
    /// connection and never answers. When this gateway knows of a commit
    /// the stream has not shown, asking that node for a stream must be
    /// given up after `stale_replica_ms`, not after `node_timeout_ms`:
    /// meanwhile the gateway's state, and every read-your-writes PUT, is
    /// stuck (the paused_leader test's flake: 9 to 30 s without a 200).
    #[tokio::test]
    async fn a_stream_that_does_not_open_is_left_as_stale() {
        // Bound, never accepted: the kernel completes the handshake and
        // queues the request, as for a SIGSTOPped process.
        let paused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = paused.local_addr().unwrap().to_string();
        let config = GatewayConfig {
            node_timeout_ms: 10_000,
            stale_replica_ms: 200,
            ..GatewayConfig::default()
        };
        let http = NodeClient::for_tests();
        let metrics = Arc::new(Metrics::new());
        let map = Arc::new(MapFollower::new(
            config.clone(),
            http.clone(),
            metrics.clone(),
        ));
        assert!(map.offer(test_map(&[&addr], 1, 1)));
        let current = map.current().unwrap();
        let handle = Arc::new(ShardHandle::new(
            &current.shards[&1].descriptor,
            config.update_buffer,
        ));
        // A write of this gateway was acknowledged with seq 3; the state
        // is at 0.
        handle.note_committed(3);
        let (_stop, shutdown) = watch::channel(false);
        let subscriber = Subscriber {
            handle,
            map: map.clone(),
            http,
            config,
            metrics,
            shards: Arc::new(Shards::default()),
            shutdown: shutdown.clone(),
        };
        let key = route_key(&current, 1).unwrap();
        let (mut map_rx, mut shutdown) = (map.watch(), shutdown);
        let started = tokio::time::Instant::now();
        let end = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            subscriber.stream(&addr, &key, &mut map_rx, &mut shutdown),
        )
        .await
        .expect("a silent replica must be left long before node_timeout_ms");
        assert!(
            matches!(
                end,
                End::Stale {
                    replica_seq: 0,
                    committed: 3
                }
            ),
            "a silent replica is left as stale"
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        drop(paused);
    }
}
