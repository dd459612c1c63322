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
    /// No valid credential: a missing or wrong admin bearer token, or a
    /// missing or bad peer proof; the message says which (HTTP 401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A valid credential that does not allow this endpoint (HTTP 403).
    #[error("forbidden: {0}")]
    Forbidden(String),
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
    /// A fatal storage error (a full disk, an I/O error) stopped a group
    /// while running; sled refuses every later write, so the node exits
    /// (code [`EXIT_STORAGE_FAILED`]) for a supervisor to restart it.
    #[error("storage failed, exiting: {0}")]
    StorageFailed(String),
    /// Invalid configuration; the node does not start.
    #[error("config: {0}")]
    Config(String),
    /// Socket or file I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The exit code of a node stopped by [`Error::StorageFailed`]
/// (`EX_TEMPFAIL`: try again later, once the disk has space).
pub const EXIT_STORAGE_FAILED: i32 = 75;

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
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::TooLarge(_) => ErrorKind::TooLarge,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Storage(_)
            | Error::Corrupt(_)
            | Error::StorageFailed(_)
            | Error::Config(_)
            | Error::Io(_) => ErrorKind::Internal,
        }
    }
}
