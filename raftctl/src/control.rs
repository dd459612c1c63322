//! The control socket of a running `raftctl up`: `<data-dir>/up.sock`.
//!
//! `raftctl node stop|start ID` connects to it and sends one JSON
//! [`Request`] line; `up` answers one JSON [`Reply`] line and closes. The
//! socket is a Unix domain socket inside the data dir with mode 0600: only
//! the user running `up` (and root) may connect. `up` removes it when it
//! exits; a stale one (left by a killed `up`) is replaced on the next
//! start.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The socket's file name in the data dir.
pub const SOCKET: &str = "up.sock";
/// How long either side waits for the other's line.
const LINE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client asks `up` to do with one of its processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Request {
    /// Stop the process (SIGTERM, SIGKILL after 10 s) and keep it stopped:
    /// no restart until a `Start`.
    Stop {
        /// `node`, `gateway` or `caddy`.
        role: String,
        /// The id within the role.
        id: u64,
    },
    /// Start a stopped (or restarting) process now.
    Start {
        /// `node`, `gateway` or `caddy`.
        role: String,
        /// The id within the role.
        id: u64,
    },
}

/// `up`'s answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether `up` did what was asked.
    pub ok: bool,
    /// What happened, or why nothing did.
    pub message: String,
    /// The process id concerned: the stopped one, or the new one.
    pub pid: Option<u32>,
}

/// `up`'s end of the socket. Removes the socket file when dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Listens on `<data>/up.sock`, replacing a stale socket file; fails
    /// if another `up` answers on it.
    pub async fn bind(data: &Path) -> Result<Self> {
        let path = data.join(SOCKET);
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                bail!(
                    "another `raftctl up` is running on {} (its control socket {} answers)",
                    data.display(),
                    path.display()
                );
            }
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        let socket = Self { listener, path };
        std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", socket.path.display()))?;
        Ok(socket)
    }

    /// The next connection (cancel-safe: nothing is read yet).
    pub async fn accept(&self) -> Result<Connection> {
        let (stream, _) = self.listener.accept().await?;
        Ok(Connection(BufReader::new(stream)))
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One client of the control socket.
pub struct Connection(BufReader<UnixStream>);

impl Connection {
    /// Reads the client's request (bounded in time); `None` when the
    /// client closed without one (another `up` checking whether this one
    /// runs).
    pub async fn request(&mut self) -> Result<Option<Request>> {
        let mut line = String::new();
        let n = tokio::time::timeout(LINE_TIMEOUT, self.0.read_line(&mut line))
            .await
            .map_err(|_| anyhow!("no request within {}s", LINE_TIMEOUT.as_secs()))??;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .with_context(|| format!("malformed request {line:?}"))
    }

    /// Sends the answer and closes.
    pub async fn reply(mut self, reply: &Reply) -> Result<()> {
        let mut line = serde_json::to_string(reply)?;
        line.push('\n');
        let stream = self.0.get_mut();
        tokio::time::timeout(LINE_TIMEOUT, stream.write_all(line.as_bytes()))
            .await
            .map_err(|_| anyhow!("the client did not read the reply"))??;
        Ok(())
    }
}

/// Sends `request` to the `up` running on `data` and returns its reply.
pub async fn call(data: &Path, request: &Request) -> Result<Reply> {
    let path = data.join(SOCKET);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no `raftctl up` is running on {} (nothing answers on {}); \
             start one, or pass the --data-dir it uses",
            data.display(),
            path.display()
        )
    })?;
    let mut stream = BufReader::new(stream);
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.get_mut().write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    // `up` may take a moment (a respawn); allow more than one line wait.
    tokio::time::timeout(LINE_TIMEOUT * 3, stream.read_line(&mut answer))
        .await
        .map_err(|_| anyhow!("`raftctl up` did not answer"))??;
    serde_json::from_str(&answer).with_context(|| format!("malformed reply {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_and_its_reply_cross_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = ControlSocket::bind(dir.path()).await.unwrap();
        let mode = std::fs::metadata(dir.path().join(SOCKET))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may connect");
        assert!(
            ControlSocket::bind(dir.path()).await.is_err(),
            "a second up on the same data dir is refused"
        );
        let probe = socket.accept().await.unwrap().request().await.unwrap();
        assert_eq!(probe, None, "the second bind's check sent nothing");
        let server = async {
            let mut conn = socket.accept().await.unwrap();
            let request = conn.request().await.unwrap().unwrap();
            assert_eq!(
                request,
                Request::Stop {
                    role: "node".into(),
                    id: 2
                }
            );
            conn.reply(&Reply {
                ok: true,
                message: "stopping".into(),
                pid: Some(7),
            })
            .await
            .unwrap();
        };
        let request = Request::Stop {
            role: "node".into(),
            id: 2,
        };
        let (reply, ()) = tokio::join!(call(dir.path(), &request), server);
        assert_eq!(reply.unwrap().pid, Some(7));
        drop(socket);
        assert!(!dir.path().join(SOCKET).exists(), "removed on drop");
        assert!(call(dir.path(), &request).await.is_err());
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let stale = std::os::unix::net::UnixListener::bind(dir.path().join(SOCKET)).unwrap();
        drop(stale);
        ControlSocket::bind(dir.path()).await.unwrap();
    }
}
