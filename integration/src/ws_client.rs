//! A small client of a gateway's `GET /ws` (the binary protocol of
//! `docs/protocol.md`), for tests.

use std::collections::BTreeMap;
use std::time::Duration;

use checkraft_proto::ws::{AckRun, AckStatus, ClientMessage, ResyncReason, ServerMessage};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::gateway::GatewayClient;

/// What the gateway sent.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// A protocol message.
    Message(ServerMessage),
    /// The connection ended: the close code and reason, if a close frame
    /// came.
    Closed(Option<(u16, String)>),
}

/// A websocket connection to a gateway.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    closed: bool,
}

impl WsClient {
    /// Connects to `ws://{addr}/ws`.
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        match Self::connect_with_origin(addr, None).await? {
            Ok(client) => Ok(client),
            Err(status) => anyhow::bail!("upgrade refused with HTTP {status}"),
        }
    }

    /// Connects with an optional `Origin`: `Ok(Err(status))` when the
    /// gateway answered the upgrade with an HTTP error.
    pub async fn connect_with_origin(
        addr: &str,
        origin: Option<&str>,
    ) -> anyhow::Result<Result<Self, u16>> {
        let mut request = format!("ws://{addr}/ws").into_client_request()?;
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse()?);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Ok(Self { ws, closed: false })),
            Err(Error::Http(response)) => Ok(Err(response.status().as_u16())),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends one protocol message.
    pub async fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()> {
        self.send_raw(Message::Binary(msg.encode().into())).await
    }

    /// Sends any websocket message (for bad-input tests).
    pub async fn send_raw(&mut self, msg: Message) -> anyhow::Result<()> {
        self.ws.send(msg).await?;
        Ok(())
    }

    /// The next message or the end of the connection (at most `limit`).
    pub async fn next_event(&mut self, limit: Duration) -> anyhow::Result<WsEvent> {
        if self.closed {
            return Ok(WsEvent::Closed(None));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow::anyhow!("no websocket message within {limit:?}"))?;
            match next {
                None | Some(Err(_)) => {
                    self.closed = true;
                    return Ok(WsEvent::Closed(None));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Ok(WsEvent::Message(ServerMessage::decode(&bytes)?));
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = true;
                    return Ok(WsEvent::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    ));
                }
                Some(Ok(other)) => {
                    if let Message::Text(t) = other {
                        anyhow::bail!("unexpected text message {t:?}");
                    }
                }
            }
        }
    }

    /// Reads until `f` picks a message (at most `limit`); fails if the
    /// connection ends first.
    pub async fn wait_for<T>(
        &mut self,
        limit: Duration,
        mut f: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                WsEvent::Message(msg) => {
                    if let Some(v) = f(&msg) {
                        return Ok(v);
                    }
                }
                WsEvent::Closed(close) => anyhow::bail!("connection closed: {close:?}"),
            }
        }
    }

    /// Reads until the connection ends (at most `limit`); returns the
    /// close code and reason, and the messages received before.
    pub async fn closed(
        &mut self,
        limit: Duration,
    ) -> anyhow::Result<(Option<(u16, String)>, Vec<ServerMessage>)> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                WsEvent::Message(msg) => seen.push(msg),
                WsEvent::Closed(close) => return Ok((close, seen)),
            }
        }
    }
    /// Connects like [`Self::connect`], with the socket's receive buffer
    /// set to `bytes` before the handshake (`SO_RCVBUF`, which also turns
    /// off the kernel's autotuning): a client that stops reading then
    /// pushes the gateway behind after a little data instead of
    /// megabytes.
    pub async fn connect_with_recv_buffer(addr: &str, bytes: u32) -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(bytes)?;
        let stream = socket.connect(addr.parse()?).await?;
        let request = format!("ws://{addr}/ws").into_client_request()?;
        let (ws, _) =
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?;
        Ok(Self { ws, closed: false })
    }

    /// Like [`Self::next_event`], but `Ok(None)` when nothing came within
    /// `limit` (the connection stays usable).
    pub async fn try_next_event(&mut self, limit: Duration) -> anyhow::Result<Option<WsEvent>> {
        if self.closed {
            return Ok(Some(WsEvent::Closed(None)));
        }
        // `next_event` only awaits the stream's `next`, which is cancel
        // safe.
        match tokio::time::timeout(limit, self.next_event(Duration::from_secs(3600))).await {
            Ok(event) => event.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Sends a SetMany of `sets` (any order; of several values for one
    /// box the last wins, see [`ClientMessage::set_many`]) and waits (at
    /// most `limit`) for its AckMany: each box's outcome, in the
    /// SetMany's ascending index order, with its index. Other messages
    /// are skipped.
    pub async fn set_many(
        &mut self,
        request_id: u32,
        sets: &[(u32, bool)],
        limit: Duration,
    ) -> anyhow::Result<Vec<(u32, AckStatus, u64)>> {
        let msg = ClientMessage::set_many(request_id, sets.iter().copied());
        let ClientMessage::SetMany { sets: sorted, .. } = &msg else {
            unreachable!("set_many builds a SetMany")
        };
        let indices: Vec<u32> = sorted.iter().map(|s| s.index).collect();
        self.send(&msg).await?;
        let runs = self.ack_many(request_id, limit).await?;
        let outcomes = ack_many_outcomes(&runs);
        anyhow::ensure!(
            outcomes.len() == indices.len(),
            "AckMany {request_id} answers {} boxes of {}: {runs:?}",
            outcomes.len(),
            indices.len()
        );
        Ok(indices
            .into_iter()
            .zip(outcomes)
            .map(|(index, (status, seq))| (index, status, seq))
            .collect())
    }

    /// Waits (at most `limit`) for the AckMany of `request_id`; its runs.
    pub async fn ack_many(
        &mut self,
        request_id: u32,
        limit: Duration,
    ) -> anyhow::Result<Vec<AckRun>> {
        self.wait_for(limit, |m| match m {
            ServerMessage::AckMany {
                request_id: r,
                runs,
            } if *r == request_id => Some(runs.clone()),
            _ => None,
        })
        .await
    }

    /// An empty [`ChunkMirror`] of a grid of `boxes` boxes in chunks of
    /// `chunk_size` (the Hello's values).
    pub fn mirror(boxes: u64, chunk_size: u32) -> ChunkMirror {
        ChunkMirror::new(boxes, chunk_size)
    }
}

/// Each box's `(status, seq)` of an AckMany's runs, in the SetMany's
/// order.
pub fn ack_many_outcomes(runs: &[AckRun]) -> Vec<(AckStatus, u64)> {
    runs.iter()
        .flat_map(|r| std::iter::repeat_n((r.status, r.seq), r.len as usize))
        .collect()
}

/// What [`ChunkMirror::apply`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorAction {
    /// An Update was applied.
    Applied,
    /// Nothing to do: an old Update, an Update or Resync of a chunk the
    /// mirror does not hold, matching Versions, or another message.
    Ignored,
    /// These held chunks must be refetched over HTTP (a gap, a Resync, a
    /// Versions mismatch); their state is unchanged meanwhile.
    NeedsRefetch(Vec<u32>),
}

/// Why chunks were refetched, and how updates went, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Updates applied.
    pub applied: u64,
    /// Updates ignored because the mirror already had them.
    pub stale: u64,
    /// Updates that did not chain on the held version.
    pub gaps: u64,
    /// `Resync{FellBehind}` messages.
    pub fell_behind: u64,
    /// `Resync{StateReset}` messages.
    pub state_reset: u64,
    /// Versions entries newer than the held version.
    pub versions_behind: u64,
    /// HTTP fetches (initial ones included).
    pub fetches: u64,
}

#[derive(Debug, Clone)]
struct MirroredChunk {
    bits: Vec<u8>,
    version: u64,
    etag: Option<String>,
}

/// A client's copy of subscribed chunks, kept by the protocol's rule
/// (docs/protocol.md, "Applying updates"): an Update with `version <= v`
/// is ignored; with `prev_version <= v < version` its entries are applied
/// and `v = version`; with `v < prev_version` the chunk must be refetched;
/// a Versions entry above `v` or a Resync asks for a refetch too.
#[derive(Debug, Clone)]
pub struct ChunkMirror {
    boxes: u64,
    chunk_size: u32,
    chunks: BTreeMap<u32, MirroredChunk>,
    /// Counters of what happened so far.
    pub stats: MirrorStats,
}

impl ChunkMirror {
    /// An empty mirror (see [`WsClient::mirror`]).
    pub fn new(boxes: u64, chunk_size: u32) -> Self {
        assert!(chunk_size > 0, "chunk size 0");
        Self {
            boxes,
            chunk_size,
            chunks: BTreeMap::new(),
            stats: MirrorStats::default(),
        }
    }

    /// The number of chunks of the grid.
    pub fn chunk_count(&self) -> u32 {
        u32::try_from(self.boxes.div_ceil(u64::from(self.chunk_size))).unwrap_or(u32::MAX)
    }

    fn chunk_len(&self, chunk: u32) -> u64 {
        let start = u64::from(chunk) * u64::from(self.chunk_size);
        self.boxes
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }

    /// Sets chunk `chunk` to `bitset` at `version` (after a fetch).
    pub fn load(&mut self, chunk: u32, version: u64, bitset: &[u8]) {
        let len = self.chunk_len(chunk).div_ceil(8) as usize;
        let mut bits = bitset.to_vec();
        bits.resize(len, 0);
        let etag = self.chunks.remove(&chunk).and_then(|c| c.etag);
        self.chunks.insert(
            chunk,
            MirroredChunk {
                bits,
                version,
                etag,
            },
        );
    }

    /// The held version of `chunk`, if held.
    pub fn version(&self, chunk: u32) -> Option<u64> {
        self.chunks.get(&chunk).map(|c| c.version)
    }

    /// Whether box `index` is checked in the mirror (false when its chunk
    /// is not held).
    pub fn checked(&self, index: u64) -> bool {
        let chunk = u32::try_from(index / u64::from(self.chunk_size)).unwrap_or(u32::MAX);
        let offset = index % u64::from(self.chunk_size);
        self.chunks.get(&chunk).is_some_and(|c| {
            c.bits
                .get((offset / 8) as usize)
                .is_some_and(|b| b & (1 << (offset % 8)) != 0)
        })
    }

    /// Every checked box of the held chunks, ascending.
    pub fn checked_boxes(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (chunk, c) in &self.chunks {
            let start = u64::from(*chunk) * u64::from(self.chunk_size);
            for (i, byte) in c.bits.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        out.push((start + i as u64 * 8 + bit) as u32);
                    }
                }
            }
        }
        out
    }

    /// Applies one message by the protocol's rule.
    pub fn apply(&mut self, msg: &ServerMessage) -> MirrorAction {
        match msg {
            ServerMessage::Update {
                chunk,
                prev_version,
                version,
                entries,
            } => {
                let Some(held) = self.chunks.get_mut(chunk) else {
                    return MirrorAction::Ignored;
                };
                if *version <= held.version {
                    self.stats.stale += 1;
                    return MirrorAction::Ignored;
                }
                if held.version < *prev_version {
                    self.stats.gaps += 1;
                    return MirrorAction::NeedsRefetch(vec![*chunk]);
                }
                for e in entries {
                    let (byte, bit) = (usize::from(e.offset / 8), e.offset % 8);
                    let Some(b) = held.bits.get_mut(byte) else {
                        // An entry past the chunk: refetch rather than guess.
                        return MirrorAction::NeedsRefetch(vec![*chunk]);
                    };
                    if e.checked {
                        *b |= 1 << bit;
                    } else {
                        *b &= !(1 << bit);
                    }
                }
                held.version = *version;
                self.stats.applied += 1;
                MirrorAction::Applied
            }
            ServerMessage::Versions {
                first_chunk,
                versions,
            } => {
                let mut behind = Vec::new();
                for (chunk, v) in (*first_chunk..).zip(versions) {
                    if self.chunks.get(&chunk).is_some_and(|c| c.version < *v) {
                        behind.push(chunk);
                    }
                }
                self.stats.versions_behind += behind.len() as u64;
                Self::refetch_or_ignore(behind)
            }
            ServerMessage::Resync {
                first_chunk,
                count,
                reason,
            } => {
                match reason {
                    ResyncReason::FellBehind => self.stats.fell_behind += 1,
                    ResyncReason::StateReset => self.stats.state_reset += 1,
                }
                let end = u64::from(*first_chunk) + u64::from(*count);
                let chunks = self
                    .chunks
                    .keys()
                    .copied()
                    .filter(|c| *c >= *first_chunk && u64::from(*c) < end)
                    .collect();
                Self::refetch_or_ignore(chunks)
            }
            _ => MirrorAction::Ignored,
        }
    }

    fn refetch_or_ignore(chunks: Vec<u32>) -> MirrorAction {
        if chunks.is_empty() {
            MirrorAction::Ignored
        } else {
            MirrorAction::NeedsRefetch(chunks)
        }
    }

    /// Fetches `chunk` over HTTP (with `If-None-Match` when it is held)
    /// and loads it.
    pub async fn fetch(&mut self, gw: &GatewayClient, chunk: u32) -> anyhow::Result<()> {
        let etag = self.chunks.get(&chunk).and_then(|c| c.etag.clone());
        let reply = gw.chunk(u64::from(chunk), etag.as_deref(), false).await?;
        self.stats.fetches += 1;
        match reply.status {
            304 if etag.is_some() => Ok(()),
            200 => {
                let seq = reply
                    .seq
                    .ok_or_else(|| anyhow::anyhow!("chunk {chunk} without X-Checkraft-Seq"))?;
                self.load(chunk, seq, &reply.body);
                if let Some(held) = self.chunks.get_mut(&chunk) {
                    held.etag = reply.etag;
                }
                Ok(())
            }
            status => anyhow::bail!("GET /api/chunks/{chunk} answered {status}"),
        }
    }

    /// Applies `msg` and does the refetches it asks for.
    pub async fn handle(
        &mut self,
        gw: &GatewayClient,
        msg: &ServerMessage,
    ) -> anyhow::Result<MirrorAction> {
        let action = self.apply(msg);
        if let MirrorAction::NeedsRefetch(chunks) = &action {
            for chunk in chunks {
                self.fetch(gw, *chunk).await?;
            }
        }
        Ok(action)
    }

    /// A barrier: sends Ping `nonce` and handles every message up to its
    /// Pong (at most `limit`).
    pub async fn sync(
        &mut self,
        client: &mut WsClient,
        gw: &GatewayClient,
        nonce: u32,
        limit: Duration,
    ) -> anyhow::Result<()> {
        client.send(&ClientMessage::Ping { nonce }).await?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match client.next_event(left).await? {
                WsEvent::Message(ServerMessage::Pong { nonce: n }) if n == nonce => return Ok(()),
                WsEvent::Message(msg) => {
                    self.handle(gw, &msg).await?;
                }
                WsEvent::Closed(close) => anyhow::bail!("connection closed: {close:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::ws::UpdateEntry;

    fn update(chunk: u32, prev_version: u64, version: u64, sets: &[(u16, bool)]) -> ServerMessage {
        ServerMessage::Update {
            chunk,
            prev_version,
            version,
            entries: sets
                .iter()
                .map(|&(offset, checked)| UpdateEntry { offset, checked })
                .collect(),
        }
    }

    #[test]
    fn mirror_applies_ignores_and_refetches_by_the_rule() {
        // 20 boxes in chunks of 8: chunks 0, 1 and a short chunk 2.
        let mut m = ChunkMirror::new(20, 8);
        assert_eq!(m.chunk_count(), 3);
        m.load(0, 10, &[0b0000_0001]);
        m.load(2, 3, &[0]);

        // prev_version <= v < version: applied, v = version.
        assert_eq!(
            m.apply(&update(0, 7, 12, &[(0, false), (3, true)])),
            MirrorAction::Applied
        );
        assert_eq!(m.version(0), Some(12));
        assert_eq!(m.checked_boxes(), vec![3]);
        assert_eq!(
            m.apply(&update(0, 12, 13, &[(7, true)])),
            MirrorAction::Applied
        );
        assert_eq!(m.checked_boxes(), vec![3, 7]);

        // version <= v: ignored, nothing changes.
        assert_eq!(
            m.apply(&update(0, 9, 13, &[(3, false)])),
            MirrorAction::Ignored
        );
        assert_eq!(
            m.apply(&update(0, 1, 5, &[(3, false)])),
            MirrorAction::Ignored
        );
        assert!(m.checked(3));

        // v < prev_version: a gap, refetch; state unchanged.
        assert_eq!(
            m.apply(&update(0, 14, 15, &[(1, true)])),
            MirrorAction::NeedsRefetch(vec![0])
        );
        assert_eq!(m.version(0), Some(13));
        assert!(!m.checked(1));

        // Versions: only chunks behind; Resync: the held chunks named.
        let versions = ServerMessage::Versions {
            first_chunk: 0,
            versions: vec![13, 4, 4],
        };
        assert_eq!(m.apply(&versions), MirrorAction::NeedsRefetch(vec![2]));
        let current = ServerMessage::Versions {
            first_chunk: 0,
            versions: vec![13, 4, 3],
        };
        assert_eq!(m.apply(&current), MirrorAction::Ignored);
        let resync = ServerMessage::Resync {
            first_chunk: 0,
            count: 3,
            reason: ResyncReason::FellBehind,
        };
        assert_eq!(m.apply(&resync), MirrorAction::NeedsRefetch(vec![0, 2]));

        // Unheld chunk, other messages: ignored.
        assert_eq!(
            m.apply(&update(1, 0, 1, &[(0, true)])),
            MirrorAction::Ignored
        );
        assert_eq!(
            m.apply(&ServerMessage::Pong { nonce: 1 }),
            MirrorAction::Ignored
        );

        // A refetch result replaces the content and the version.
        m.load(0, 20, &[0b1000_0000]);
        assert_eq!(m.version(0), Some(20));
        assert_eq!(m.checked_boxes(), vec![7]);
        assert_eq!(
            m.stats,
            MirrorStats {
                applied: 2,
                stale: 2,
                gaps: 1,
                fell_behind: 1,
                state_reset: 0,
                versions_behind: 1,
                fetches: 0,
            }
        );
        // Box 16.. lives in the short chunk 2 (4 boxes, 1 byte).
        m.load(2, 5, &[0b0000_0010]);
        assert!(m.checked(17));
        assert_eq!(m.checked_boxes(), vec![7, 17]);
    }
}
