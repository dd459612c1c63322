//! The gateway crate's one error enum.
//!
//! A write the shard refuses is *not* an error of the gateway: it travels
//! as [`Error::Rejected`] with the shard's [`Rejection`], so callers (the
//! HTTP API, the websocket layer) can tell "your write was refused" from
//! "the cluster could not be reached".

use checkraft_proto::{ErrorKind, Rejection};

/// Every way a gateway operation can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed or invalid (HTTP 400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No such chunk, box or endpoint (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The body exceeds the configured limit (HTTP 413).
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The shard refused the write; nothing changed (HTTP 409).
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// The gateway cannot serve this now: no map yet, shard state not
    /// loaded, no leader within the write timeout. Retrying is safe, since
    /// sets are absolute (HTTP 503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The boxes now belong to another shard (a split or merge): route
    /// them again with a newer map. [`crate::Gateway::write`] does, so
    /// callers only see it when the map does not catch up in time (HTTP
    /// 503).
    #[error("moved: {0}")]
    Moved(String),
    /// Invalid configuration; the gateway does not start.
    #[error("config: {0}")]
    Config(String),
    /// Socket or file I/O failed.
    #[error("io: {0}")]
    Io(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl Error {
    /// The API error class (and so the HTTP status) for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadRequest(_) => ErrorKind::BadRequest,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::TooLarge(_) => ErrorKind::TooLarge,
            Error::Rejected(_) => ErrorKind::Conflict,
            Error::Unavailable(_) | Error::Moved(_) => ErrorKind::Unavailable,
            Error::Config(_) | Error::Io(_) => ErrorKind::Internal,
        }
    }
}
