//! Kernel settings of the gateway's sockets: `SO_SNDBUF`
//! ([`GatewayConfig::ws_send_buffer_bytes`]), `TCP_NOTSENT_LOWAT`
//! ([`GatewayConfig::ws_notsent_lowat_bytes`]) and `TCP_NODELAY`.
//!
//! They are set on the listening socket, and Linux gives every accepted
//! socket the listener's values (warp hands the websocket layer an
//! upgraded stream without its file descriptor, so they cannot be set
//! per websocket afterwards). Small buffers make a client that stops
//! reading block the gateway's writes to it after kilobytes: its bounded
//! send queue then fills, updates are dropped for it and it gets
//! `Resync{FellBehind}`, instead of the kernel holding megabytes of
//! stale updates for it (`tcp_wmem` autotuning starts at megabytes on
//! loopback and grows with the connection's window elsewhere).
//!
//! `TCP_NODELAY` is always on: the websocket layer already gathers what
//! is queued to a connection into one write, so Nagle's algorithm could
//! only hold a write back until the client acknowledges the previous one
//! (up to its delayed-ACK timer, 40 ms on Linux), adding latency and no
//! saving.

use socket2::SockRef;
use tokio::net::TcpListener;

use crate::config::GatewayConfig;
use crate::error::{Error, Result};

/// Sets the configured buffers on `listener` (0 leaves a value alone).
pub fn tune_listener(listener: &TcpListener, config: &GatewayConfig) -> Result<()> {
    let socket = SockRef::from(listener);
    socket
        .set_tcp_nodelay(true)
        .map_err(|e| Error::Io(format!("TCP_NODELAY: {e}")))?;
    if config.ws_send_buffer_bytes > 0 {
        socket
            .set_send_buffer_size(config.ws_send_buffer_bytes)
            .map_err(|e| Error::Io(format!("SO_SNDBUF {}: {e}", config.ws_send_buffer_bytes)))?;
    }
    if config.ws_notsent_lowat_bytes > 0 {
        socket
            .set_tcp_notsent_lowat(config.ws_notsent_lowat_bytes)
            .map_err(|e| {
                Error::Io(format!(
                    "TCP_NOTSENT_LOWAT {}: {e}",
                    config.ws_notsent_lowat_bytes
                ))
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an accepted socket gets from a listener tuned with `config`.
    async fn accepted(config: &GatewayConfig) -> (usize, u32, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        tune_listener(&listener, config).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let socket = SockRef::from(&server);
        (
            socket.send_buffer_size().unwrap(),
            socket.tcp_notsent_lowat().unwrap(),
            socket.tcp_nodelay().unwrap(),
        )
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_the_listeners_buffers() {
        let config = GatewayConfig {
            ws_send_buffer_bytes: 24 << 10,
            ws_notsent_lowat_bytes: 6000,
            ..Default::default()
        };
        let (sndbuf, lowat, nodelay) = accepted(&config).await;
        // Linux doubles SO_SNDBUF for its bookkeeping.
        assert_eq!(sndbuf, 48 << 10);
        assert_eq!(lowat, 6000);
        assert!(nodelay, "Nagle is off on every accepted socket");

        let untouched = GatewayConfig {
            ws_send_buffer_bytes: 0,
            ws_notsent_lowat_bytes: 0,
            ..Default::default()
        };
        let (sndbuf, lowat, nodelay) = accepted(&untouched).await;
        assert!(nodelay);
        assert_ne!(sndbuf, 48 << 10);
        assert_eq!(lowat, 0, "the kernel's default: no limit");
    }
}
