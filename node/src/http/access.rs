//! Who may call what: the node's access rules, in one place.
//!
//! A caller is identified by at most one credential ([`identify`]):
//! - a peer proof (`x-checkraft-auth`, see `checkraft-auth`), signed with
//!   the cluster secret ([`Caller::Node`]) or the gateway secret
//!   ([`Caller::Gateway`]);
//! - the operator's bearer token ([`Caller::Admin`]);
//! - nothing ([`Caller::Anonymous`]).
//!
//! A present but invalid credential is a 401 even on an open endpoint, so
//! a misconfigured peer learns it at once. Then [`Endpoint`] decides:
//!
//! | endpoint | anonymous | gateway | admin | node |
//! |---|---|---|---|---|
//! | `/health`, `/ready`, `/status`, `/metrics` | yes | yes | yes | yes |
//! | `/shards/{g}/read`, `/changes`, `/write`, `/meta/*` | 401 | yes | yes | yes |
//! | `/shards/{g}/restore`, `/shards/{g}/reshape`, `/admin/*` | 401 | 403 | yes | yes |
//! | `GET /meta/health` | 401 | yes | yes | yes |
//! | `/raft/*`, `POST /meta/report` | 401 | 403 | 403 | yes |

use std::sync::atomic::{AtomicU64, Ordering};

use checkraft_auth::Role;
use checkraft_proto::ErrorKind;

use super::Request;
use crate::error::{Error, Result};
use crate::node::Node;

/// Who is calling, after checking its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No credential.
    Anonymous,
    /// A node (cluster secret).
    Node,
    /// A gateway (gateway secret).
    Gateway,
    /// The operator (admin bearer token).
    Admin,
}

/// The access class of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Liveness, status and metrics: anyone.
    Open,
    /// Shard reads, writes and change streams, and map reads.
    Data,
    /// Restores and `/admin/*`: the operator and nodes.
    Admin,
    /// Raft RPCs and nodes' reports: nodes only.
    Raft,
}

impl Endpoint {
    /// The class of the endpoint at `segments` (the path split on `/`).
    pub fn of(segments: &[&str]) -> Endpoint {
        match segments {
            ["health"] | ["ready"] | ["status"] | ["metrics"] => Endpoint::Open,
            ["raft", ..] | ["meta", "report"] => Endpoint::Raft,
            ["shards", _, "restore"] | ["shards", _, "reshape"] | ["admin", ..] => Endpoint::Admin,
            _ => Endpoint::Data,
        }
    }

    fn allows(self, caller: Caller) -> bool {
        match self {
            Endpoint::Open => true,
            Endpoint::Data => caller != Caller::Anonymous,
            Endpoint::Admin => matches!(caller, Caller::Node | Caller::Admin),
            Endpoint::Raft => caller == Caller::Node,
        }
    }
}

/// Checks the request's credential, if any.
pub fn identify(node: &Node, path_and_query: &str, req: &Request) -> Result<Caller> {
    if let Some(proof) = req.proof.as_deref() {
        let role = node
            .verifier()
            .verify(Some(proof), req.method.as_str(), path_and_query, &req.body)
            .map_err(|e| Error::Unauthorized(e.to_string()))?;
        return Ok(match role {
            Role::Node => Caller::Node,
            Role::Gateway => Caller::Gateway,
        });
    }
    let Some(authorization) = req.authorization.as_deref() else {
        return Ok(Caller::Anonymous);
    };
    let Some(expected) = node.config.admin_token.as_deref() else {
        return Err(Error::Unauthorized(
            "this node has no admin_token configured, so it accepts no bearer token".into(),
        ));
    };
    let given = authorization.strip_prefix("Bearer ").unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(Caller::Admin)
    } else {
        Err(Error::Unauthorized("wrong admin bearer token".into()))
    }
}

/// Checks that `caller` may call the endpoint at `segments`.
pub fn authorize(caller: Caller, segments: &[&str]) -> Result<()> {
    let endpoint = Endpoint::of(segments);
    if endpoint.allows(caller) {
        return Ok(());
    }
    Err(match caller {
        Caller::Anonymous => Error::Unauthorized(match endpoint {
            Endpoint::Raft => "raft RPCs and node reports must be signed with the cluster secret".into(),
            Endpoint::Admin => "admin calls need the admin bearer token".into(),
            _ => "calls to nodes must be signed with the gateway or cluster secret, or carry the admin token".into(),
        }),
        other => Error::Forbidden(format!("{other:?} callers may not use this endpoint ({endpoint:?} class)")),
    })
}

/// Calls refused for their credential, by answer, since the process
/// started (exported as `checkraft_node_auth_refusals_total`).
#[derive(Debug, Default)]
pub struct Refusals {
    unauthorized: AtomicU64,
    forbidden: AtomicU64,
}

impl Refusals {
    /// Counts one refused call, if `kind` is a refusal.
    pub fn record(&self, kind: ErrorKind) {
        match kind {
            ErrorKind::Unauthorized => self.unauthorized.fetch_add(1, Ordering::Relaxed),
            ErrorKind::Forbidden => self.forbidden.fetch_add(1, Ordering::Relaxed),
            _ => return,
        };
    }

    /// `(unauthorized, forbidden)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.unauthorized.load(Ordering::Relaxed),
            self.forbidden.load(Ordering::Relaxed),
        )
    }
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_in_the_module_docs_holds() {
        use Caller::*;
        let cases: [(&[&str], [bool; 4]); 10] = [
            (&["health"], [true, true, true, true]),
            (&["ready"], [true, true, true, true]),
            (&["metrics"], [true, true, true, true]),
            (&["shards", "1", "write"], [false, true, true, true]),
            (&["shards", "1", "changes"], [false, true, true, true]),
            (&["meta", "map"], [false, true, true, true]),
            (&["meta", "gateways"], [false, true, true, true]),
            (&["shards", "1", "restore"], [false, false, true, true]),
            (&["admin", "groups"], [false, false, true, true]),
            (&["raft", "1", "append"], [false, false, false, true]),
        ];
        for (path, expect) in cases {
            for (caller, allowed) in [Anonymous, Gateway, Admin, Node].into_iter().zip(expect) {
                assert_eq!(
                    authorize(caller, path).is_ok(),
                    allowed,
                    "{caller:?} {path:?}"
                );
            }
        }
        assert!(matches!(
            authorize(Anonymous, &["raft", "1", "vote"]),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            authorize(Gateway, &["raft", "1", "vote"]),
            Err(Error::Forbidden(_))
        ));
    }
}
