//! The node crate's one error enum.
//!
//! A command the state machine refuses is *not* an error: it is a
//! [`checkraft_proto::Rejection`] value inside a normal response. Errors
//! here are failures to serve a request ([`Error::NotFound`],
//! [`Error::Unavailable`], ...) or storage failures ([`Error::Storage`],
//! [`Error::Corrupt`]), which openraft treats as fatal for the group.

use checkraft_proto::{CodecError, ErrorKind, GroupId};

/// Every way a node operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or invalid (HTTP 400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No such raft group is hosted on this node (HTTP 404).
    #[error("no group {0} on this node")]
    UnknownGroup(GroupId),
    /// No such endpoint (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// Missing or wrong bearer token on an admin endpoint (HTTP 401).
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The request conflicts with existing state (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The body exceeds the configured limit (HTTP 413).
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The group cannot serve now; retrying later is safe (HTTP 503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// sled failed. Fatal for the affected group.
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    /// Stored bytes do not decode. Fatal for the affected group.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Invalid configuration; the node does not start.
    #[error("config: {0}")]
    Config(String),
    /// Socket or file I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::BadRequest(e.to_string())
    }
}

impl Error {
    /// The API error class (and so the HTTP status) for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadRequest(_) => ErrorKind::BadRequest,
            Error::UnknownGroup(_) | Error::NotFound(_) => ErrorKind::NotFound,
            Error::Unauthorized => ErrorKind::Unauthorized,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::TooLarge(_) => ErrorKind::TooLarge,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Storage(_) | Error::Corrupt(_) | Error::Config(_) | Error::Io(_) => {
                ErrorKind::Internal
            }
        }
    }
}
