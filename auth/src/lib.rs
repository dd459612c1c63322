//! # checkraft-auth: who may talk to a node
//!
//! Every call between cluster processes (raft RPCs, shard reads, writes
//! and change streams, metadata reads, forwarded metadata commands) carries
//! one header, [`HEADER`], that proves the caller holds a cluster secret.
//! A node answers a call without a valid proof with 401 and changes
//! nothing; a call whose proof is valid but whose role may not use the
//! endpoint gets 403 (see `checkraft-node`'s `http::access`).
//!
//! ## Roles and secrets
//! There are two peer roles ([`Role`]), each with its own [`Secret`]:
//! - [`Role::Node`], the *cluster secret*: held by nodes only. It allows
//!   everything, raft RPCs included.
//! - [`Role::Gateway`], the *gateway secret*: held by nodes (to verify) and
//!   gateways (to sign). It allows only the data plane and map reads, so a
//!   compromised gateway, the internet-facing process, cannot forge raft
//!   messages or change the cluster.
//!
//! The operator's admin token (a bearer token, checked by the node) is a
//! third, separate credential; it is not handled here.
//!
//! ## The proof
//! `x-checkraft-auth: v1 role=<role> ts=<unix ms> mac=<hex>` where `mac` is
//! HMAC-SHA256 under the role's secret of
//!
//! ```text
//! checkraft-auth-v1\n<role>\n<ts>\n<METHOD>\n<path?query>\n<hex sha256(body)>
//! ```
//!
//! So the proof binds the method, the exact path and query, and the body:
//! a captured header cannot be reused on another request. The secret never
//! travels. A proof is valid for [`MAX_SKEW`] either side of the
//! verifier's clock.
//!
//! ## Caveats
//! - This is authentication, not encryption: someone who can *read* the
//!   nodes' network sees data and can replay a captured request unchanged
//!   within [`MAX_SKEW`]. Raft tolerates duplicated messages, and a replayed
//!   set writes the same absolute value again; still, run the cluster
//!   network privately (or under WireGuard/IPsec) where sniffing matters.
//! - Clocks of cluster hosts must agree within [`MAX_SKEW`] (use NTP).
//! - Streaming request bodies cannot be signed; every client here sends
//!   whole bodies.

mod client;
mod error;
mod mac;
mod role;
mod secret;

pub use client::{SendSigned, Signer};
pub use error::AuthError;
pub use mac::{Proof, Verifier, MAX_SKEW};
pub use role::Role;
pub use secret::Secret;

/// The request header that carries the proof (lower case, as HTTP/2 and
/// `http::HeaderName` want it).
pub const HEADER: &str = "x-checkraft-auth";
