//! A small client of a gateway's `GET /ws` (the binary protocol of
//! `docs/protocol.md`), for tests.

use std::time::Duration;

use checkraft_proto::ws::{ClientMessage, ServerMessage};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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
}
