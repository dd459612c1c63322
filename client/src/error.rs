//! The crate's one error enum: how one call to one node failed, or why
//! routing gave up.

use reqwest::StatusCode;

/// Every way a call of this crate can fail.
///
/// The variants split into *retryable* ones (another attempt, maybe at
/// another replica, may succeed: [`Error::is_retryable`]) and *final*
/// ones (the node understood the call and refused it; asking again will
/// not help). Each carries the node address and path it concerns, and the
/// node's [`checkraft_proto::ApiError`] message when it sent one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer: the connection failed, the request timed out, or the
    /// body was cut off. Retryable.
    #[error("{addr}{path}: {message}")]
    Transport {
        /// The node called.
        addr: String,
        /// The path called.
        path: String,
        /// What `reqwest` reported.
        message: String,
    },
    /// The node does not lead the group (a `421` or `503`
    /// [`checkraft_proto::WriteOutcome::ForwardToLeader`]). Retryable: at
    /// `leader_addr` when it is known, else after a pause.
    #[error("{addr}{path}: not the leader (leader: {})", leader_addr.as_deref().unwrap_or("unknown"))]
    ForwardToLeader {
        /// The node called.
        addr: String,
        /// The path called.
        path: String,
        /// The leader's `HOST:PORT`, when the node knows it.
        leader_addr: Option<String>,
    },
    /// HTTP 409 with an [`checkraft_proto::ApiError`]: on admin calls, the
    /// node is not the group's leader (its message names the leader) or
    /// the change conflicts with a change in progress. Retryable at
    /// another replica or later.
    #[error("{addr}{path}: HTTP {status}: {message}", status = StatusCode::CONFLICT)]
    NotLeader {
        /// The node called.
        addr: String,
        /// The path called.
        path: String,
        /// The node's message.
        message: String,
    },
    /// HTTP 503 (the group cannot serve now), 429 or 502/504. Retryable.
    #[error("{addr}{path}: HTTP {status}: {message}")]
    Unavailable {
        /// The node called.
        addr: String,
        /// The path called.
        path: String,
        /// The status.
        status: StatusCode,
        /// The node's message.
        message: String,
    },
    /// HTTP 404: the node hosts no such group (or has no such endpoint).
    /// Final for that node; routing moves on to the next candidate, since
    /// another replica may host the group.
    #[error("{addr}{path}: HTTP {status}: {message}", status = StatusCode::NOT_FOUND)]
    NotFound {
        /// The node called.
        addr: String,
        /// The path called.
        path: String,
        /// The node's message.
        message: String,
    },
    /// Any other error status (400, 401, 403, 413, 500): the node refused
    /// the call itself. Final.
    #[error("{addr}{path}: HTTP {status}: {message}")]
    Refused {
        /// The node called.
        addr: String,
        /// The path called.
        path: String,
        /// The status.
        status: StatusCode,
        /// The node's message.
        message: String,
    },
    /// A success status whose body does not decode as expected. Final.
    #[error("{addr}{path}: bad answer: {message}")]
    Decode {
        /// The node called.
        addr: String,
        /// The path called.
        path: String,
        /// What the decoder reported.
        message: String,
    },
    /// Routing had no address to try (an empty candidate list).
    #[error("{0}: no node address to call")]
    NoCandidates(String),
    /// Routing spent its [`crate::Budget`] without an answer; `last` is the
    /// last retryable error it saw.
    #[error("{what}: no answer within the retry budget (last: {last})")]
    Exhausted {
        /// What was being done.
        what: String,
        /// The last error.
        last: Box<Error>,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when another attempt (at another replica, at the named
    /// leader, or after a pause) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Transport { .. }
                | Error::ForwardToLeader { .. }
                | Error::NotLeader { .. }
                | Error::Unavailable { .. }
        )
    }

    /// True when routing should try the next candidate: a retryable error,
    /// or a 404 (this replica does not host the group, another may).
    pub(crate) fn tries_next(&self) -> bool {
        self.is_retryable() || matches!(self, Error::NotFound { .. })
    }

    /// The HTTP status the node answered with, when it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::NotLeader { .. } => Some(StatusCode::CONFLICT),
            Error::NotFound { .. } => Some(StatusCode::NOT_FOUND),
            Error::Unavailable { status, .. } | Error::Refused { status, .. } => Some(*status),
            Error::ForwardToLeader { .. } => Some(StatusCode::MISDIRECTED_REQUEST),
            Error::Exhausted { last, .. } => last.status(),
            _ => None,
        }
    }
}
