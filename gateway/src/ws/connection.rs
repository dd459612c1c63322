//! One websocket connection: Hello, then client messages and the outbox.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use checkraft_proto::ws::{
    AckStatus, ClientMessage, ResyncReason, ServerMessage, PROTOCOL_VERSION,
};
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
    let metrics = hub.gateway.metrics.clone();
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
        let metrics = &self.hub.gateway.metrics;
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
        let (queue, resync) = self.outbox.take();
        if queue.is_empty() && resync.is_none() {
            // Only Updates held back: nothing to write yet.
            return Ok(());
        }
        let resync = resync
            .map(|chunks| resync_messages(&chunks, ResyncReason::FellBehind))
            .unwrap_or_default();
        for _ in &resync {
            self.hub.gateway.metrics.ws_resync("fell_behind");
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
                self.hub.gateway.metrics.ws_reject("not_ready");
                return Some((CloseCode::Again, e.to_string().into()));
            }
        };
        // The counters as last sent to everyone: Stats goes out only when
        // it changes, so a new connection gets the current one now.
        let first = std::iter::once(hello).chain(self.hub.current_stats());
        if self.write_all(ws, first).await.is_err() {
            return None;
        }
        let mut shutdown = self.hub.shutdown.clone();
        let cap = self.hub.gateway.config.ws_send_queue;
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
                            self.hub.gateway.metrics.ws_reject("too_big");
                            return Some((CloseCode::Size, format!("message too big: {e}").into()));
                        }
                        Some(Err(WsError::Protocol(e))) => {
                            self.hub.gateway.metrics.ws_reject("protocol");
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
        let map = self.hub.gateway.current_map()?;
        let grid = map
            .grid
            .ok_or_else(|| Error::Unavailable("the cluster is not initialized".into()))?;
        Ok(Bytes::from(
            ServerMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                boxes: grid.boxes,
                chunk_size: grid.chunk_size,
                gateway_id: u32::try_from(self.hub.gateway.config.id).unwrap_or(u32::MAX),
                load: self.hub.limits.load_permille(),
            }
            .encode(),
        ))
    }

    /// Handles one client message; `Some` closes the connection.
    fn message(&mut self, msg: Message) -> Option<Close> {
        let metrics = &self.hub.gateway.metrics;
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
        }
    }

    fn subscribe(&mut self, first_chunk: u32, count: u32) -> Option<Close> {
        // Hello needed the map, so it is there; `None` keeps the socket open.
        let grid = self.hub.gateway.current_map().ok().and_then(|m| m.grid)?;
        let chunks = grid.boxes.div_ceil(u64::from(grid.chunk_size.max(1)));
        let end = match subscribe_range(first_chunk, count, chunks) {
            Ok(end) => end,
            Err(why) => {
                self.hub.gateway.metrics.ws_reject("protocol");
                return Some((CloseCode::Protocol, why.into()));
            }
        };
        let max = self.hub.gateway.config.ws_max_subscriptions;
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
                self.hub.gateway.metrics.ws_reject("subscriptions");
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
        let gateway = self.hub.gateway.clone();
        let boxes = gateway
            .current_map()
            .ok()
            .and_then(|m| m.grid)
            .map(|g| g.boxes);
        let status = match boxes {
            None => Some(AckStatus::Unavailable),
            Some(boxes) if u64::from(index) >= boxes => Some(AckStatus::OutOfRange),
            Some(_) if !self.hub.limits.allow_set(&self.limiter, self.ip) => {
                gateway.metrics.ws_reject("rate_limited");
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
        let metrics = gateway.metrics.clone();
        // Acknowledged on commit: the Update follows through this
        // gateway's change stream, maybe after the Ack. No task per Set:
        // the shard's batching task pushes the Ack (`commit_box_then`).
        gateway.commit_box_then(u64::from(index), checked, move |outcome| {
            let reply = match outcome {
                Ok((_, seq)) => ack(request_id, AckStatus::Applied, seq),
                Err(Error::BadRequest(_)) => ack(request_id, AckStatus::OutOfRange, 0),
                Err(Error::Unavailable(_)) | Err(Error::Moved(_)) | Err(Error::Io(_)) => {
                    ack(request_id, AckStatus::Unavailable, 0)
                }
                Err(_) => ack(request_id, AckStatus::Invalid, 0),
            };
            metrics
                .ws_set_latency
                .observe(started.elapsed().as_secs_f64());
            outbox.push_reply(reply);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
