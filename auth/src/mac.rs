//! The proof itself: what is MACed, the header format, and [`Verifier`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{AuthError, Role, Secret};

/// How far a proof's timestamp may be from the verifier's clock, either
/// way.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

type HmacSha256 = Hmac<Sha256>;

/// Milliseconds since the Unix epoch on this host's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A parsed proof header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// Who claims to have signed.
    pub role: Role,
    /// When, in Unix milliseconds on the signer's clock.
    pub ts_ms: u64,
    /// HMAC-SHA256 of the request under the role's secret.
    pub mac: Vec<u8>,
}

fn mac_for(
    secret: &Secret,
    role: Role,
    ts_ms: u64,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.bytes()).expect("HMAC takes any key length");
    let body_hash = hex::encode(Sha256::digest(body));
    let text = format!(
        "checkraft-auth-v1\n{role}\n{ts_ms}\n{}\n{path_and_query}\n{body_hash}",
        method.to_ascii_uppercase()
    );
    mac.update(text.as_bytes());
    mac
}

impl Proof {
    /// Signs a request as `role` with `secret` at `ts_ms`.
    pub fn sign(
        secret: &Secret,
        role: Role,
        ts_ms: u64,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Proof {
        let mac = mac_for(secret, role, ts_ms, method, path_and_query, body)
            .finalize()
            .into_bytes()
            .to_vec();
        Proof { role, ts_ms, mac }
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        format!(
            "v1 role={} ts={} mac={}",
            self.role,
            self.ts_ms,
            hex::encode(&self.mac)
        )
    }

    /// Parses a header value; anything but the exact format is refused.
    pub fn parse(header: &str) -> Result<Proof, AuthError> {
        let bad = |why: &str| AuthError::Malformed(why.to_string());
        let mut parts = header.split(' ');
        if parts.next() != Some("v1") {
            return Err(bad("expected version v1"));
        }
        let mut field = |name: &str| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(name))
                .and_then(|p| p.strip_prefix('='))
                .ok_or_else(|| bad(&format!("expected {name}=")))
        };
        let role = field("role")?;
        let role = Role::parse(role).ok_or_else(|| bad("role must be node or gateway"))?;
        let ts_ms = field("ts")?
            .parse::<u64>()
            .map_err(|_| bad("ts is not a number"))?;
        let mac = field("mac")?;
        if mac.len() != 64 {
            return Err(bad("mac must be 64 hex digits"));
        }
        let mac = hex::decode(mac).map_err(|_| bad("mac is not hex"))?;
        if parts.next().is_some() {
            return Err(bad("trailing fields"));
        }
        Ok(Proof { role, ts_ms, mac })
    }
}

/// Checks proofs against the secrets a node holds.
#[derive(Debug, Clone)]
pub struct Verifier {
    cluster: Secret,
    gateway: Option<Secret>,
    max_skew: Duration,
}

impl Verifier {
    /// A verifier accepting nodes (`cluster`) and, when given, gateways.
    pub fn new(cluster: Secret, gateway: Option<Secret>) -> Verifier {
        Verifier {
            cluster,
            gateway,
            max_skew: MAX_SKEW,
        }
    }

    /// Verifies the proof in `header` (the raw header value, if present)
    /// for this request, at the current time. Returns the signer's role.
    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<Role, AuthError> {
        self.verify_at(header, method, path_and_query, body, now_ms())
    }

    /// [`Verifier::verify`] with the verifier's clock given.
    pub fn verify_at(
        &self,
        header: Option<&str>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Role, AuthError> {
        let proof = Proof::parse(header.ok_or(AuthError::Missing)?)?;
        let secret = match proof.role {
            Role::Node => &self.cluster,
            Role::Gateway => self
                .gateway
                .as_ref()
                .ok_or(AuthError::RoleNotConfigured(Role::Gateway.as_str()))?,
        };
        let skew_ms = proof.ts_ms.abs_diff(now_ms);
        let limit_ms = self.max_skew.as_millis() as u64;
        // Check the MAC before the clock, so the clock error is only ever
        // shown to holders of the secret.
        mac_for(
            secret,
            proof.role,
            proof.ts_ms,
            method,
            path_and_query,
            body,
        )
        .verify_slice(&proof.mac)
        .map_err(|_| {
            AuthError::BadSignature(match proof.role {
                Role::Node => "cluster",
                Role::Gateway => "gateway",
            })
        })?;
        if skew_ms > limit_ms {
            return Err(AuthError::Stale { skew_ms, limit_ms });
        }
        Ok(proof.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new("test", s).unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::new(
            secret("cluster-secret-0123456789"),
            Some(secret("gateway-secret-0123456789")),
        )
    }

    #[test]
    fn a_signed_request_verifies_with_its_role() {
        let v = verifier();
        let now = 1_700_000_000_000;
        for (role, key) in [
            (Role::Node, "cluster-secret-0123456789"),
            (Role::Gateway, "gateway-secret-0123456789"),
        ] {
            let h = Proof::sign(
                &secret(key),
                role,
                now,
                "post",
                "/raft/1/append?x=1",
                b"body",
            )
            .to_header();
            assert_eq!(
                v.verify_at(Some(&h), "POST", "/raft/1/append?x=1", b"body", now + 10),
                Ok(role)
            );
        }
    }

    #[test]
    fn any_change_to_the_request_breaks_the_proof() {
        let v = verifier();
        let now = 1_700_000_000_000;
        let key = secret("cluster-secret-0123456789");
        let h = Proof::sign(&key, Role::Node, now, "POST", "/shards/1/write", b"{}").to_header();
        let bad = AuthError::BadSignature("cluster");
        assert_eq!(
            v.verify_at(Some(&h), "GET", "/shards/1/write", b"{}", now),
            Err(bad.clone())
        );
        assert_eq!(
            v.verify_at(Some(&h), "POST", "/shards/2/write", b"{}", now),
            Err(bad.clone())
        );
        assert_eq!(
            v.verify_at(Some(&h), "POST", "/shards/1/write?a", b"{}", now),
            Err(bad.clone())
        );
        assert_eq!(
            v.verify_at(Some(&h), "POST", "/shards/1/write", b"{ }", now),
            Err(bad.clone())
        );
        // The gateway secret cannot sign as a node, nor a node's as a gateway.
        let forged = Proof::sign(
            &secret("gateway-secret-0123456789"),
            Role::Node,
            now,
            "POST",
            "/raft/1/vote",
            b"",
        )
        .to_header();
        assert_eq!(
            v.verify_at(Some(&forged), "POST", "/raft/1/vote", b"", now),
            Err(bad)
        );
        let wrong = Proof::sign(
            &secret("wrong-secret-0123456789"),
            Role::Gateway,
            now,
            "GET",
            "/meta/map",
            b"",
        )
        .to_header();
        assert_eq!(
            v.verify_at(Some(&wrong), "GET", "/meta/map", b"", now),
            Err(AuthError::BadSignature("gateway"))
        );
    }

    #[test]
    fn stale_missing_and_malformed_proofs_are_refused() {
        let v = verifier();
        let now = 1_700_000_000_000;
        let key = secret("cluster-secret-0123456789");
        let old = Proof::sign(&key, Role::Node, now - 31_000, "GET", "/meta/map", b"").to_header();
        assert!(matches!(
            v.verify_at(Some(&old), "GET", "/meta/map", b"", now),
            Err(AuthError::Stale {
                skew_ms: 31_000,
                ..
            })
        ));
        assert_eq!(
            v.verify_at(None, "GET", "/meta/map", b"", now),
            Err(AuthError::Missing)
        );
        for h in [
            "",
            "v2 role=node ts=1 mac=00",
            "v1 role=root ts=1 mac=00",
            "v1 role=node ts=x mac=00",
            "v1 role=node ts=1 mac=zz",
            "v1 role=node ts=1",
            &format!("{} extra", old),
        ] {
            assert!(
                matches!(
                    v.verify_at(Some(h), "GET", "/", b"", now),
                    Err(AuthError::Malformed(_))
                ),
                "{h:?}"
            );
        }
        let no_gw = Verifier::new(key.clone(), None);
        let gw = Proof::sign(
            &secret("gateway-secret-0123456789"),
            Role::Gateway,
            now,
            "GET",
            "/meta/map",
            b"",
        )
        .to_header();
        assert_eq!(
            no_gw.verify_at(Some(&gw), "GET", "/meta/map", b"", now),
            Err(AuthError::RoleNotConfigured("gateway"))
        );
    }
}
