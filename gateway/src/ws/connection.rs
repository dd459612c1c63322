//! One websocket connection: Hello, then client messages and the outbox.
//!
//! A Set is queued to its shard's batching task, which pushes the Ack
//! into the outbox when the batch commits ([`super::backend::Backend::set`]:
//! no task per Set; only a Set that a split or merge moves, or that finds
//! the queue full, is finished by a task of its own). A SetMany is handled
//! as one unit: validated once, its boxes in range take
//! their rate-limit tokens in one call (the first boxes get them), and one
//! task writes the granted boxes with one
//! [`super::backend::Backend::set_many`] (split by shard there) and queues
//! one AckMany for every box.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use checkraft_proto::ws::{
    ack_runs, AckRun, AckStatus, ClientMessage, ResyncReason, ServerMessage, SetEntry,
    PROTOCOL_VERSION,
};
use checkraft_proto::BoxSet;
use futures::{SinkExt, StreamExt};
use governor::DefaultDirectRateLimiter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::limits::Refusal;
use super::{resync_messages, Hub, Outbox};
use crate::error::Error;

type Close = (CloseCode, Cow<'static, str>);

struct Conn {
    hub: Arc<Hub>,
    id: u64,
    ip: IpAddr,
    outbox: Arc<Outbox>,
    limiter: DefaultDirectRateLimiter,
}

/// Serves one upgraded connection until it closes.
pub async fn run<S>(hub: Arc<Hub>, io: S, ip: IpAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(hub.ws_config)).await;
    let metrics = hub.backend.metrics.clone();
    let _permit = match hub.limits.admit(ip) {
        Ok(permit) => permit,
        Err(refusal) => {
            let close = match refusal {
                Refusal::AtCapacity => {
                    metrics.ws_reject("at_capacity");
                    (CloseCode::Again, "the gateway is at capacity".into())
                }
                Refusal::PerAddress => {
                    metrics.ws_reject("per_address");
                    (
                        CloseCode::Policy,
                        "too many connections from this address".into(),
                    )
                }
            };
            close_with(&mut ws, close).await;
            return;
        }
    };
    metrics.ws_connections.inc();
    let (id, outbox) = hub.register();
    let mut conn = Conn {
        limiter: hub.limits.connection_limiter(),
        hub: hub.clone(),
        id,
        ip,
        outbox,
    };
    let close = conn.serve(&mut ws).await;
    hub.unregister(id, &conn.outbox);
    metrics.ws_connections.dec();
    if let Some(close) = close {
        close_with(&mut ws, close).await;
    }
}

/// Sends a close frame and waits (briefly) for the client's answer.
async fn close_with<S>(ws: &mut WebSocketStream<S>, (code, reason): Close)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.as_ref().into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// The end (exclusive) of a Subscribe's chunks `first .. first + count`
/// in a grid of `chunks` chunks, or why the message is a protocol error
/// (close 1002): an empty range, one past `u32::MAX`, or one reaching past
/// the grid. A client knows the grid from `Hello`, so such a range is a
/// bug to report, not to serve silently in part.
fn subscribe_range(first: u32, count: u32, chunks: u64) -> Result<u64, String> {
    let end = u64::from(first) + u64::from(count);
    if count == 0 {
        Err(format!("Subscribe of 0 chunks (first_chunk {first})"))
    } else if end > 1 << 32 {
        Err(format!(
            "Subscribe range {first} + {count} overflows the 32-bit chunk ids"
        ))
    } else if end > chunks {
        Err(format!(
            "Subscribe of chunks {first}..{end} reaches past the grid's {chunks} chunks"
        ))
    } else {
        Ok(end)
    }
}

fn ack(request_id: u32, status: AckStatus, seq: u64) -> Bytes {
    Bytes::from(
        ServerMessage::Ack {
            request_id,
            status,
            seq,
        }
        .encode(),
    )
}

/// The Ack status of a write that failed with `e`.
fn failure_status(e: &Error) -> AckStatus {
    match e {
        Error::BadRequest(_) => AckStatus::OutOfRange,
        Error::Unavailable(_) | Error::Moved(_) | Error::Io(_) => AckStatus::Unavailable,
        _ => AckStatus::Invalid,
    }
}

/// The AckMany runs of a SetMany of `sets` (ascending): the first
/// `granted` boxes were written with outcome `written` (per box index, or
/// one status for all when the write failed as a whole), the boxes up to
/// `in_range` were refused by the rate limit, the rest are past the grid.
fn set_many_runs(
    sets: &[SetEntry],
    granted: usize,
    in_range: usize,
    written: &Result<HashMap<u32, (AckStatus, u64)>, AckStatus>,
) -> Vec<AckRun> {
    ack_runs(sets.iter().enumerate().map(|(i, s)| {
        if i >= in_range {
            (AckStatus::OutOfRange, 0)
        } else if i >= granted {
            (AckStatus::RateLimited, 0)
        } else {
            match written {
                // Every written box has a part; a missing one is a bug,
                // answered as "may or may not have been applied".
                Ok(by_index) => by_index
                    .get(&s.index)
                    .copied()
                    .unwrap_or((AckStatus::Unavailable, 0)),
                Err(status) => (*status, 0),
            }
        }
    }))
}

fn ack_many(request_id: u32, runs: Vec<AckRun>) -> Bytes {
    Bytes::from(ServerMessage::AckMany { request_id, runs }.encode())
}

impl Conn {
    /// Queues `msgs` into the websocket (written once the buffer holds
    /// `ws_write_buffer_bytes`), then flushes: frames queued together
    /// leave in as few writes as possible.
    async fn write_all<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        msgs: impl IntoIterator<Item = Bytes>,
    ) -> Result<(), WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut count, mut bytes) = (0u64, 0u64);
        let mut fed = Ok(());
        for msg in msgs {
            count += 1;
            bytes += msg.len() as u64;
            fed = ws.feed(Message::Binary(msg)).await;
            if fed.is_err() {
                break;
            }
        }
        let metrics = &self.hub.backend.metrics;
        metrics.ws_messages_out.inc_by(count);
        metrics.ws_bytes_out.inc_by(bytes);
        metrics.ws_flushes.inc();
        fed?;
        ws.flush().await
    }

    /// Writes out everything queued, then a FellBehind resync if due.
    async fn flush<S>(&self, ws: &mut WebSocketStream<S>) -> Result<(), WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (queue, resync) = self.outbox.take(&self.hub.stats);
        if queue.is_empty() && resync.is_none() {
            // Only Updates held back: nothing to write yet.
            return Ok(());
        }
        let resync = resync
            .map(|chunks| resync_messages(&chunks, ResyncReason::FellBehind))
            .unwrap_or_default();
        for _ in &resync {
            self.hub.backend.metrics.ws_resync("fell_behind");
        }
        self.write_all(ws, queue.into_iter().chain(resync)).await
    }

    async fn serve<S>(&mut self, ws: &mut WebSocketStream<S>) -> Option<Close>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let hello = match self.hello() {
            Ok(hello) => hello,
            Err(e) => {
                self.hub.backend.metrics.ws_reject("not_ready");
                return Some((CloseCode::Again, e.to_string().into()));
            }
        };
        // The counters of now (a new frame for everyone is made only at
        // the next tick that sees them changed), so the client learns them
        // at once, itself counted.
        let stats = self.hub.hello_stats();
        if let Some(frame) = &stats {
            self.outbox.stats_sent(frame, std::time::Instant::now());
        }
        let first = std::iter::once(hello).chain(stats.map(|f| f.bytes));
        if self.write_all(ws, first).await.is_err() {
            return None;
        }
        let mut shutdown = self.hub.shutdown.clone();
        let cap = self.hub.backend.config.ws_send_queue;
        loop {
            if *shutdown.borrow_and_update() {
                return Some((CloseCode::Away, "shutting down".into()));
            }
            // Updates held back by the budget go out when it allows.
            let release_at = self.outbox.release_at().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = async { tokio::time::sleep_until(release_at.expect("guarded")).await }, if release_at.is_some() => {
                    if self.flush(ws).await.is_err() {
                        return None;
                    }
                }
                _ = self.outbox.notify.notified() => {
                    if self.flush(ws).await.is_err() {
                        return None;
                    }
                }
                msg = ws.next() => {
                    match msg {
                        None => return None,
                        Some(Ok(msg)) => {
                            if let Some(close) = self.message(msg) {
                                return Some(close);
                            }
                        }
                        Some(Err(WsError::Capacity(e))) => {
                            self.hub.backend.metrics.ws_reject("too_big");
                            return Some((CloseCode::Size, format!("message too big: {e}").into()));
                        }
                        Some(Err(WsError::Protocol(e))) => {
                            self.hub.backend.metrics.ws_reject("protocol");
                            return Some((CloseCode::Protocol, e.to_string().into()));
                        }
                        Some(Err(_)) => return None,
                    }
                    // Answers are bounded: stop reading until they are out.
                    if self.outbox.len() >= cap && self.flush(ws).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    fn hello(&self) -> crate::Result<Bytes> {
        let map = self.hub.backend.current_map()?;
        let grid = map
            .grid
            .ok_or_else(|| Error::Unavailable("the cluster is not initialized".into()))?;
        Ok(Bytes::from(
            ServerMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                boxes: grid.boxes,
                chunk_size: grid.chunk_size,
                gateway_id: u32::try_from(self.hub.backend.config.id).unwrap_or(u32::MAX),
                load: self.hub.limits.load_permille(),
            }
            .encode(),
        ))
    }

    /// Handles one client message; `Some` closes the connection.
    fn message(&mut self, msg: Message) -> Option<Close> {
        let metrics = &self.hub.backend.metrics;
        let bytes = match msg {
            Message::Binary(bytes) => bytes,
            Message::Text(_) => {
                metrics.ws_reject("protocol");
                return Some((CloseCode::Protocol, "text messages are not allowed".into()));
            }
            // Pings are answered by tungstenite; a Close ends the stream.
            _ => return None,
        };
        metrics.ws_messages_in.inc();
        metrics.ws_bytes_in.inc_by(bytes.len() as u64);
        let msg = match ClientMessage::decode(&bytes) {
            Ok(msg) => msg,
            Err(e) => {
                metrics.ws_reject("protocol");
                return Some((CloseCode::Protocol, e.to_string().into()));
            }
        };
        match msg {
            ClientMessage::Subscribe { first_chunk, count } => self.subscribe(first_chunk, count),
            ClientMessage::Unsubscribe { first_chunk, count } => {
                let end = u64::from(first_chunk) + u64::from(count);
                let chunks: Vec<u32> = self
                    .outbox
                    .subs()
                    .into_iter()
                    .filter(|c| *c >= first_chunk && u64::from(*c) < end)
                    .collect();
                self.hub.unsubscribe(self.id, &self.outbox, &chunks);
                None
            }
            ClientMessage::Set {
                request_id,
                index,
                checked,
            } => {
                self.set(request_id, index, checked);
                None
            }
            ClientMessage::Ping { nonce } => {
                self.outbox
                    .push_reply(Bytes::from(ServerMessage::Pong { nonce }.encode()));
                None
            }
            ClientMessage::SetMany { request_id, sets } => self.set_many(request_id, sets),
        }
    }

    fn subscribe(&mut self, first_chunk: u32, count: u32) -> Option<Close> {
        // Hello needed the map, so it is there; `None` keeps the socket open.
        let grid = self.hub.backend.grid()?;
        let chunks = grid.boxes.div_ceil(u64::from(grid.chunk_size.max(1)));
        let end = match subscribe_range(first_chunk, count, chunks) {
            Ok(end) => end,
            Err(why) => {
                self.hub.backend.metrics.ws_reject("protocol");
                return Some((CloseCode::Protocol, why.into()));
            }
        };
        let max = self.hub.backend.config.ws_max_subscriptions;
        let subs = self.outbox.lock().subs.clone();
        let mut held = subs.cardinality() as usize;
        let mut new = Vec::new();
        for chunk in u64::from(first_chunk)..end {
            let chunk = chunk as u32;
            if subs.contains(chunk) {
                continue;
            }
            held += 1;
            if held > max {
                self.hub.backend.metrics.ws_reject("subscriptions");
                return Some((
                    CloseCode::Policy,
                    format!("more than {max} subscribed chunks").into(),
                ));
            }
            new.push(chunk);
        }
        self.hub.subscribe(self.id, &self.outbox, &new);
        None
    }

    fn set(&mut self, request_id: u32, index: u32, checked: bool) {
        let backend = &self.hub.backend;
        let boxes = backend.grid().map(|g| g.boxes);
        let status = match boxes {
            None => Some(AckStatus::Unavailable),
            Some(boxes) if u64::from(index) >= boxes => Some(AckStatus::OutOfRange),
            Some(_) if !self.hub.limits.allow_set(&self.limiter, self.ip) => {
                backend.metrics.ws_reject("rate_limited");
                Some(AckStatus::RateLimited)
            }
            Some(_) => None,
        };
        if let Some(status) = status {
            self.outbox.push_reply(ack(request_id, status, 0));
            return;
        }
        let outbox = self.outbox.clone();
        let started = Instant::now();
        let metrics = backend.metrics.clone();
        // Acknowledged on commit: the Update follows through this
        // gateway's change stream, maybe after the Ack. No task per Set:
        // the shard's batching task pushes the Ack (`Backend::set`).
        backend.set(u64::from(index), checked, move |outcome| {
            let reply = match outcome {
                Ok((_, seq)) => ack(request_id, AckStatus::Applied, seq),
                Err(e) => ack(request_id, failure_status(&e), 0),
            };
            metrics
                .ws_set_latency
                .observe(started.elapsed().as_secs_f64());
            outbox.push_reply(reply);
        });
    }

    /// A SetMany (decoded, so 1 to 256 boxes in strictly ascending order):
    /// `Some` closes the connection when it holds more boxes than
    /// `ws_max_sets_per_message`. Otherwise every box is answered in one
    /// AckMany (`docs/protocol.md`, "SetMany and AckMany").
    fn set_many(&mut self, request_id: u32, sets: Vec<SetEntry>) -> Option<Close> {
        let backend = self.hub.backend.clone();
        let max = backend.config.ws_max_sets_per_message;
        backend.metrics.ws_set_many_boxes.observe(sets.len() as f64);
        if sets.len() > max {
            backend.metrics.ws_reject("set_many_boxes");
            return Some((
                CloseCode::Policy,
                format!(
                    "SetMany of {} boxes: this gateway takes at most {max} per message",
                    sets.len()
                )
                .into(),
            ));
        }
        let Some(boxes) = backend.grid().map(|g| g.boxes) else {
            let runs = ack_runs(sets.iter().map(|_| (AckStatus::Unavailable, 0)));
            self.outbox.push_reply(ack_many(request_id, runs));
            return None;
        };
        // Indices ascend: the boxes past the grid are the last ones, and
        // take no token.
        let in_range = sets.partition_point(|s| u64::from(s.index) < boxes);
        let granted = self
            .hub
            .limits
            .allow_sets(&self.limiter, self.ip, in_range as u32) as usize;
        if granted < in_range {
            backend.metrics.ws_reject("rate_limited");
        }
        if granted == 0 {
            let runs = set_many_runs(&sets, 0, in_range, &Err(AckStatus::Unavailable));
            self.outbox.push_reply(ack_many(request_id, runs));
            return None;
        }
        let outbox = self.outbox.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            let writes: Vec<BoxSet> = sets[..granted]
                .iter()
                .map(|s| (s.index, s.checked))
                .collect();
            // One write for every shard the boxes live in; each shard's
            // part commits (or fails) with its own seq.
            let written = match backend.set_many(writes).await {
                Ok(parts) => {
                    let mut by_index = HashMap::with_capacity(granted);
                    for (_, part, outcome) in parts {
                        let answer = match outcome {
                            Ok(committed) => (AckStatus::Applied, committed.seq),
                            Err(e) => (failure_status(&e), 0),
                        };
                        for (index, _) in part {
                            by_index.insert(index, answer);
                        }
                    }
                    Ok(by_index)
                }
                Err(e) => Err(failure_status(&e)),
            };
            let runs = set_many_runs(&sets, granted, in_range, &written);
            backend
                .metrics
                .ws_set_many_latency
                .observe(started.elapsed().as_secs_f64());
            outbox.push_reply(ack_many(request_id, runs));
        });
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_many_runs_follow_the_message_order() {
        let sets: Vec<SetEntry> = (10..16)
            .map(|index| SetEntry {
                index,
                checked: true,
            })
            .collect();
        let by_index: HashMap<u32, (AckStatus, u64)> = [
            (10, (AckStatus::Applied, 9)),
            (11, (AckStatus::Applied, 9)),
            (12, (AckStatus::Applied, 10)),
        ]
        .into();
        // 3 written over two shards, 2 rate limited, 1 past the grid.
        let runs = set_many_runs(&sets, 3, 5, &Ok(by_index));
        let flat: Vec<(u32, AckStatus, u64)> =
            runs.iter().map(|r| (r.len, r.status, r.seq)).collect();
        assert_eq!(
            flat,
            [
                (2, AckStatus::Applied, 9),
                (1, AckStatus::Applied, 10),
                (2, AckStatus::RateLimited, 0),
                (1, AckStatus::OutOfRange, 0),
            ]
        );
        // A write that failed as a whole; everything past the grid.
        let failed = set_many_runs(&sets, 6, 6, &Err(AckStatus::Unavailable));
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].len, failed[0].status),
            (6, AckStatus::Unavailable)
        );
        let past = set_many_runs(&sets, 0, 0, &Err(AckStatus::Unavailable));
        assert_eq!((past[0].len, past[0].status), (6, AckStatus::OutOfRange));
    }

    #[test]
    fn subscribe_ranges_must_be_non_empty_and_within_the_grid() {
        assert_eq!(subscribe_range(0, 10, 10), Ok(10));
        assert_eq!(subscribe_range(9, 1, 10), Ok(10));
        let empty = subscribe_range(3, 0, 10).unwrap_err();
        assert!(empty.contains("0 chunks"), "{empty}");
        let past = subscribe_range(9, 2, 10).unwrap_err();
        assert!(past.contains("past the grid"), "{past}");
        let past = subscribe_range(10, 1, 10).unwrap_err();
        assert!(past.contains("past the grid"), "{past}");
        let overflow = subscribe_range(u32::MAX, 2, u64::from(u32::MAX) + 1).unwrap_err();
        assert!(overflow.contains("overflows"), "{overflow}");
        assert_eq!(
            subscribe_range(u32::MAX, 1, u64::from(u32::MAX) + 1),
            Ok(1 << 32)
        );
    }
}
