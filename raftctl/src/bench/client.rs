//! One simulated user: a websocket from its own loopback source address
//! to its gateway, subscribed to a viewport, setting boxes in it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use checkraft_proto::ws::{AckStatus, ClientMessage, ServerMessage};
use futures::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::latency::now_ns;
use super::projection::ws_header_len;
use super::shared::Shared;

/// How long a TCP connect plus upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Most Sets a closed-loop client writes in one flush (redis-benchmark's
/// `-P 16` sends 16 per write; a deep window sends up to this many).
const BURST: usize = 64;

/// The worker's phase, broadcast to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connect and subscribe; send nothing.
    Connecting,
    /// The measured phase: send Sets.
    Running,
    /// Stop sending; keep reading Acks and Updates.
    Draining,
    /// Close.
    Done,
}

/// Runs global client `id` until the phase is [`Phase::Done`] or its
/// connection ends.
pub async fn run(
    shared: Arc<Shared>,
    id: u64,
    mut phase: watch::Receiver<Phase>,
    handshakes: Arc<Semaphore>,
) {
    let permit = handshakes.acquire_owned().await;
    let ws = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&shared, id)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            shared.c.connect_failed.fetch_add(1, Relaxed);
            shared.error(format!("connect: {}", classify(&e)));
            return;
        }
        Err(_) => {
            shared.c.connect_failed.fetch_add(1, Relaxed);
            shared.error("connect: timeout");
            return;
        }
    };
    drop(permit);
    shared.c.connected.fetch_add(1, Relaxed);
    shared.c.open.fetch_add(1, Relaxed);
    let mut client = Client::new(shared.clone(), id);
    let outcome = client.serve(ws, &mut phase).await;
    shared.c.open.fetch_sub(1, Relaxed);
    shared
        .c
        .outstanding
        .fetch_sub(client.outstanding.len() as u64, Relaxed);
    if let Err(reason) = outcome {
        shared.c.dropped.fetch_add(1, Relaxed);
        shared.error(reason);
    }
}

/// A TCP connection from the client's source address, upgraded.
async fn connect(shared: &Shared, id: u64) -> Result<WebSocketStream<TcpStream>> {
    let plan = &shared.plan;
    let gateway: SocketAddr = plan
        .gateway(id)
        .parse()
        .context("gateway address must be IP:PORT")?;
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(plan.source_address(id).into(), 0))
        .context("bind")?;
    let stream = socket.connect(gateway).await.context("tcp")?;
    stream.set_nodelay(true)?;
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = 4096;
    // Frames wait in the buffer until a flush: a closed-loop burst of
    // Sets leaves in one write (as redis-benchmark's pipeline does).
    config.write_buffer_size = 64 * 1024;
    config.max_message_size = Some(1 << 20);
    config.max_frame_size = Some(1 << 20);
    let url = format!("ws://{gateway}/ws");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    Ok(ws)
}

/// A short reason for a connect error, for counting.
fn classify(e: &anyhow::Error) -> String {
    if let Some(t) = e.downcast_ref::<tungstenite::Error>() {
        return match t {
            tungstenite::Error::Http(resp) => format!("http {}", resp.status().as_u16()),
            other => format!("upgrade {}", short(other)),
        };
    }
    if let Some(io) = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
        // The outermost context names the step: `bind` or `tcp`.
        return format!("{e} {:?}", io.kind());
    }
    e.to_string().chars().take(60).collect()
}

/// A connected client's state.
struct Client {
    shared: Arc<Shared>,
    id: u64,
    rng: StdRng,
    /// Request id → (send time, box).
    outstanding: HashMap<u32, (u64, u32)>,
    next_request: u32,
    /// Boxes `[first, end)` of the viewport.
    /// The viewport's boxes, `[first_box, end_box)` (u64: the end of a
    /// 2^32-box grid is 2^32).
    first_box: u64,
    end_box: u64,
    /// When the next open-loop Set is due.
    next_send: Instant,
}

impl Client {
    fn new(shared: Arc<Shared>, id: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(id ^ 0x5eed);
        let plan = &shared.plan;
        let (first_chunk, count) = plan.viewport(&mut rng);
        let cs = u64::from(plan.chunk_size);
        let first_box = u64::from(first_chunk) * cs;
        let end_box = (u64::from(first_chunk + count) * cs).min(plan.boxes);
        Self {
            id,
            rng,
            outstanding: HashMap::new(),
            next_request: 0,
            first_box,
            end_box,
            next_send: Instant::now(),
            shared,
        }
    }

    /// Subscribes, then sends and receives until Done; `Err(reason)` when
    /// the connection ended early.
    async fn serve(
        &mut self,
        mut ws: WebSocketStream<TcpStream>,
        phase: &mut watch::Receiver<Phase>,
    ) -> Result<(), String> {
        let cs = u64::from(self.shared.plan.chunk_size);
        let subscribe = ClientMessage::Subscribe {
            first_chunk: (self.first_box / cs) as u32,
            count: (self.end_box - self.first_box).div_ceil(cs) as u32,
        };
        ws.send(Message::Binary(subscribe.encode().into()))
            .await
            .map_err(|e| format!("send: {}", short(&e)))?;
        let rate = self.shared.plan.rate_per_client.filter(|r| *r > 0.0);
        let idle = self.shared.plan.rate_per_client == Some(0.0);
        let window = self.shared.plan.inflight as usize;
        let mut current = *phase.borrow();
        if current == Phase::Running {
            self.next_send = Instant::now() + self.interarrival(rate);
        }
        loop {
            let may_send = current == Phase::Running && !idle;
            let closed_loop_ready = may_send && rate.is_none() && self.outstanding.len() < window;
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(m)) => self.receive(m)?,
                    Some(Err(e)) => return Err(format!("disconnect: {}", short(&e))),
                    None => return Err("disconnect: eof".into()),
                },
                _ = tokio::time::sleep_until(self.next_send), if may_send && rate.is_some() => {
                    let now = Instant::now();
                    self.next_send = (self.next_send + self.interarrival(rate))
                        .max(now - Duration::from_secs(1));
                    if self.outstanding.len() < window {
                        self.send_set(&mut ws).await?;
                    } else {
                        self.shared.c.sets_skipped.fetch_add(1, Relaxed);
                    }
                }
                _ = std::future::ready(()), if closed_loop_ready => {
                    // Fill the window, then one flush.
                    let room = window - self.outstanding.len();
                    for _ in 0..room.min(BURST) {
                        self.feed_set(&mut ws).await?;
                    }
                    ws.flush().await.map_err(|e| format!("send: {}", short(&e)))?;
                }
                changed = phase.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    current = *phase.borrow_and_update();
                    match current {
                        Phase::Done => return Ok(()),
                        Phase::Running => {
                            self.next_send = Instant::now() + self.interarrival(rate);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Exponential inter-arrival time at `rate` per second (a Poisson
    /// process), zero in a closed loop.
    fn interarrival(&mut self, rate: Option<f64>) -> Duration {
        match rate {
            Some(r) => {
                let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
                Duration::from_secs_f64((-u.ln() / r).min(3600.0))
            }
            None => Duration::ZERO,
        }
    }

    async fn send_set(&mut self, ws: &mut WebSocketStream<TcpStream>) -> Result<(), String> {
        self.feed_set(ws).await?;
        ws.flush().await.map_err(|e| format!("send: {}", short(&e)))
    }

    /// Queues one Set in the socket's write buffer (sent at the next
    /// flush, or when the buffer fills).
    async fn feed_set(&mut self, ws: &mut WebSocketStream<TcpStream>) -> Result<(), String> {
        // Box indexes are u32 on the wire: the last one is 2^32 - 1.
        let pick = self.rng.gen_range(self.first_box..self.end_box) as u32;
        let Some(index) = self
            .shared
            .plan
            .writable(pick, self.first_box, self.end_box)
        else {
            self.shared.c.sets_skipped.fetch_add(1, Relaxed);
            return Ok(());
        };
        let now = now_ns();
        let checked = self.shared.next_value(index, self.id, now);
        let request_id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        let set = ClientMessage::Set {
            request_id,
            index,
            checked,
        };
        self.outstanding.insert(request_id, (now, index));
        self.shared.c.outstanding.fetch_add(1, Relaxed);
        self.shared.c.sets_sent.fetch_add(1, Relaxed);
        ws.feed(Message::Binary(set.encode().into()))
            .await
            .map_err(|e| format!("send: {}", short(&e)))
    }

    fn receive(&mut self, msg: Message) -> Result<(), String> {
        let c = &self.shared.c;
        let bytes = match msg {
            Message::Binary(b) => b,
            Message::Close(frame) => {
                return Err(match frame {
                    Some(f) => format!("close {}", u16::from(f.code)),
                    None => "close (no code)".into(),
                })
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(()),
            Message::Text(_) => {
                self.shared.error("protocol: text message");
                return Ok(());
            }
        };
        c.frames.fetch_add(1, Relaxed);
        c.bytes_in.fetch_add(bytes.len() as u64, Relaxed);
        // Server frames are unmasked and, from the gateway, unfragmented.
        c.header_bytes_in
            .fetch_add(ws_header_len(bytes.len() as u64), Relaxed);
        let now = now_ns();
        match ServerMessage::decode(&bytes) {
            Ok(ServerMessage::Ack {
                request_id, status, ..
            }) => {
                let Some((sent, index)) = self.outstanding.remove(&request_id) else {
                    self.shared.error("protocol: ack for unknown request");
                    return Ok(());
                };
                c.outstanding.fetch_sub(1, Relaxed);
                self.shared.acked(now.saturating_sub(sent));
                if status == AckStatus::Applied {
                    c.acks_applied.fetch_add(1, Relaxed);
                    self.shared.shard_acked(index, now);
                } else {
                    c.acks_rejected.fetch_add(1, Relaxed);
                    self.shared.error(format!("ack {}", ack_name(status)));
                }
            }
            Ok(ServerMessage::Update { chunk, entries, .. }) => {
                c.updates.fetch_add(entries.len() as u64, Relaxed);
                let base = chunk.wrapping_mul(self.shared.plan.chunk_size);
                self.shared.seen(
                    self.id,
                    now,
                    entries
                        .iter()
                        .map(|e| (base + u32::from(e.offset), e.checked)),
                );
            }
            Ok(ServerMessage::Resync { reason, .. }) => {
                self.shared.error(format!("resync {reason:?}"));
            }
            Ok(_) => {}
            Err(e) => self.shared.error(format!("protocol: {e}")),
        }
        Ok(())
    }
}

/// The protocol's name of an Ack status.
fn ack_name(s: AckStatus) -> &'static str {
    match s {
        AckStatus::Applied => "applied",
        AckStatus::RateLimited => "rate_limited",
        AckStatus::OutOfRange => "out_of_range",
        AckStatus::Unavailable => "unavailable",
        AckStatus::Invalid => "invalid",
    }
}

/// A websocket error, short enough to count by.
fn short(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => format!("io {:?}", io.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol {p}"),
        other => other.to_string().chars().take(60).collect(),
    }
}
