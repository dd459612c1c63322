//! [`DelayRelay`]: a TCP relay that adds latency, for links between
//! "hosts" on a kernel without `netem`.
//!
//! It accepts on one address and connects each client to the target;
//! every chunk read in either direction is written to the other side
//! `delay` after it arrived, in order (so a round trip through the relay
//! takes at least twice `delay`; bandwidth is not limited). Closing one
//! side closes the other after the same delay. A target that cannot be
//! reached within 2 s closes the client. Dropping the relay stops it and
//! every connection through it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A running relay; see the module docs.
pub struct DelayRelay {
    /// Where it accepts.
    pub addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl DelayRelay {
    /// Relays `listen` to `target`, delaying each direction by `delay`.
    pub async fn start(
        listen: SocketAddr,
        target: SocketAddr,
        delay: Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut pipes = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        pipes.spawn(relay(client, target, delay));
                    }
                    Some(_) = pipes.join_next(), if !pipes.is_empty() => {}
                }
            }
        })
        .abort_handle();
        Ok(Self { addr, task })
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, target: SocketAddr, delay: Duration) {
    let Ok(Ok(server)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Either direction ending (or failing) ends the connection.
    tokio::select! {
        _ = pump(cr, sw, delay) => {}
        _ = pump(sr, cw, delay) => {}
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` tells the writer: end of stream, once the queue
        // is written.
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(delay).await;
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_round_trip_takes_twice_the_delay_and_keeps_the_bytes() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let relay = DelayRelay::start(
            "127.0.0.1:0".parse().unwrap(),
            target,
            Duration::from_millis(40),
        )
        .await
        .unwrap();
        let mut c = TcpStream::connect(relay.addr).await.unwrap();
        let started = std::time::Instant::now();
        c.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        let took = started.elapsed();
        assert_eq!(&got, b"ping");
        assert!(took >= Duration::from_millis(80), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
}
