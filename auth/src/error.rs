//! The crate's one error enum.

/// Why a secret or a proof was refused. Every variant names what is wrong,
/// so a 401 tells the operator which side to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carries no proof header.
    #[error("missing x-checkraft-auth header: calls between cluster processes must be signed with the cluster or gateway secret")]
    Missing,
    /// The header does not parse.
    #[error("malformed x-checkraft-auth header: {0}")]
    Malformed(String),
    /// The header names a role this verifier has no secret for.
    #[error("role {0} is not accepted here (no secret configured for it)")]
    RoleNotConfigured(&'static str),
    /// The timestamp is too far from the verifier's clock.
    #[error("proof timestamp is {skew_ms} ms away from this node's clock (limit {limit_ms} ms): check NTP, or this is a replay")]
    Stale {
        /// Distance between the proof's and the verifier's clock.
        skew_ms: u64,
        /// The accepted distance.
        limit_ms: u64,
    },
    /// The MAC does not match: wrong secret, or the request was altered.
    #[error("signature does not match: wrong {0} secret, or the request was altered")]
    BadSignature(&'static str),
    /// A configured secret is unusable.
    #[error("{0}")]
    WeakSecret(String),
}
