//! # checkraft-client: the one typed client of the node API
//!
//! Every process that calls a node — another node's control plane, a
//! gateway, `raftctl`, the test harness — sends its calls through this
//! crate, so that routing to a leader and following `421`s is written
//! once.
//!
//! ## Data flow
//! 1. A [`Call`] is a method, a path and a body (JSON or bincode), built
//!    once and sent to any number of addresses.
//! 2. [`NodeApi`] sends one call to one node address with a
//!    [`Credential`] (the operator's admin bearer token, a peer proof
//!    signed by a [`checkraft_auth::Signer`] as a node or a gateway, both,
//!    or none) and classifies the answer: a decoded body
//!    ([`NodeApi::json`], [`NodeApi::bincode`], [`NodeApi::outcome`]) or
//!    an [`Error`].
//! 3. [`NodeApi::route`] is the only leader routing: it tries candidate
//!    addresses (leader hint first: [`shard_candidates`] from the shard
//!    map, [`Members::leader_first`] from a group's membership), follows
//!    [`Error::ForwardToLeader`], moves on past retryable errors and 404s,
//!    and pauses between passes, within a [`Budget`].
//! 4. Typed calls build on those: a group's membership ([`Members`]),
//!    create a group, add a learner, change voters, remove a member,
//!    transfer leadership, delete a replica; a linearizable shard read and
//!    reshape commands at a shard's leader; metadata commands and
//!    leader-only metadata reads; map reads and long polls.
//!
//! ## Invariants
//! - An answer is classified by its body first: a
//!   [`checkraft_proto::WriteOutcome::ForwardToLeader`] is a forward
//!   whatever its status (421 with a leader, 503 without); then by status:
//!   409 [`Error::NotLeader`], 404 [`Error::NotFound`], 503/429/502/504
//!   [`Error::Unavailable`], anything else [`Error::Refused`].
//! - A state-machine rejection is a value
//!   ([`checkraft_proto::WriteOutcome::Rejected`]), never an error, and
//!   never retried.
//! - Routing retries only what [`Error::is_retryable`] allows (plus a
//!   404 at one replica); a final error returns at once, so a bad request
//!   is not sent again and again.
//! - The budget bounds everything: `rounds` passes over the candidates,
//!   `forwards` hops, `total` wall time, `attempt` per request.
//!
//! ## Caveats
//! - Routing retries non-idempotent-looking calls. That is safe for the
//!   node API because sets are absolute, membership changes are stated as
//!   the wanted end state, and group creation is idempotent; do not route
//!   a call without that property.
//! - The gateway's write hot path (its batching writer) does its own
//!   leader probing for latency and does not go through [`NodeApi::route`].
//! - Each user keeps its own budgets (they were tuned separately); this
//!   crate only sets the mechanism.

mod api;
mod call;
mod credential;
mod error;
mod group;
mod meta;
mod route;
mod shard;

pub use api::{classify, NodeApi};
pub use call::{Body, Call, BINCODE};
pub use credential::Credential;
pub use error::{Error, Result};
pub use group::Members;
pub use route::{shard_candidates, Budget};

#[cfg(test)]
mod tests;
