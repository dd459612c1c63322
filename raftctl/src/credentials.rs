//! [`Credentials`]: the three secrets of a cluster that `up` and `bench`
//! run.
//!
//! - the admin token (operator → nodes, a bearer token; `raftctl` finds it
//!   in `<data-dir>/token`);
//! - the cluster secret (node ↔ node, HMAC-signed calls);
//! - the gateway secret (gateway → node, HMAC-signed calls, data plane
//!   only).
//!
//! `docs/reliability.md` says what each one allows.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// File names under a data dir (`raftctl` finds the token there too).
pub const TOKEN_FILE: &str = "token";
const CLUSTER_SECRET_FILE: &str = "cluster-secret";
const GATEWAY_SECRET_FILE: &str = "gateway-secret";

/// A cluster's secrets.
#[derive(Clone)]
pub struct Credentials {
    /// The operator's admin bearer token.
    pub admin_token: String,
    /// Signs calls between nodes.
    pub cluster_secret: String,
    /// Signs gateways' calls to nodes.
    pub gateway_secret: String,
}

impl Credentials {
    /// Fresh random secrets (for a throwaway cluster).
    pub fn random() -> Self {
        Self {
            admin_token: random_secret(),
            cluster_secret: random_secret(),
            gateway_secret: random_secret(),
        }
    }

    /// The secrets stored in `dir`, each created (random, readable by the
    /// owner only) when missing.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        Ok(Self {
            admin_token: load_or_create(dir, TOKEN_FILE)?,
            cluster_secret: load_or_create(dir, CLUSTER_SECRET_FILE)?,
            gateway_secret: load_or_create(dir, GATEWAY_SECRET_FILE)?,
        })
    }

    /// The environment a node needs: all three.
    pub fn node_env(&self) -> [(&'static str, &str); 3] {
        [
            ("CHECKRAFT_NODE_ADMIN_TOKEN", &self.admin_token),
            ("CHECKRAFT_NODE_CLUSTER_SECRET", &self.cluster_secret),
            ("CHECKRAFT_NODE_GATEWAY_SECRET", &self.gateway_secret),
        ]
    }

    /// The environment a gateway needs: the gateway secret only.
    pub fn gateway_env(&self) -> [(&'static str, &str); 1] {
        [("CHECKRAFT_GATEWAY_GATEWAY_SECRET", &self.gateway_secret)]
    }
}

/// 32 random hex digits (128 bits).
pub fn random_secret() -> String {
    use rand::Rng;
    rand::thread_rng()
        .gen::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The secret stored in `dir/name`, trimmed, if there is a non-empty one.
pub fn read_stored(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn load_or_create(dir: &Path, name: &str) -> Result<String> {
    if let Some(stored) = read_stored(dir, name) {
        return Ok(stored);
    }
    let path = dir.join(name);
    let secret = random_secret();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_created_once_distinct_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = Credentials::load_or_create(dir.path()).unwrap();
        for (name, value) in [
            (TOKEN_FILE, &first.admin_token),
            (CLUSTER_SECRET_FILE, &first.cluster_secret),
            (GATEWAY_SECRET_FILE, &first.gateway_secret),
        ] {
            assert_eq!(value.len(), 32);
            assert!(value.chars().all(|c| c.is_ascii_hexdigit()));
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_ne!(first.cluster_secret, first.gateway_secret);
        let again = Credentials::load_or_create(dir.path()).unwrap();
        assert_eq!(
            again.admin_token, first.admin_token,
            "reused, not regenerated"
        );
        assert_eq!(again.cluster_secret, first.cluster_secret);
        assert_eq!(again.gateway_secret, first.gateway_secret);
    }
}
