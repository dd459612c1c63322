//! [`Secret`]: a shared key, never printed.

use std::fmt;

use crate::AuthError;

/// Shortest secret accepted, in bytes. `raftctl up` generates 32 hex
/// digits (128 bits).
pub const MIN_SECRET_BYTES: usize = 16;

/// A cluster or gateway secret. `Debug` prints a placeholder, so a secret
/// never reaches a log through a config dump.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret `s` (surrounding whitespace, such as a file's trailing
    /// newline, is dropped). `what` names it in the error: for example
    /// `"cluster_secret"`.
    pub fn new(what: &str, s: &str) -> Result<Secret, AuthError> {
        let s = s.trim();
        if s.len() < MIN_SECRET_BYTES {
            return Err(AuthError::WeakSecret(format!(
                "{what} must be at least {MIN_SECRET_BYTES} characters (it has {}); \
                 generate one with `openssl rand -hex 16`",
                s.len()
            )));
        }
        Ok(Secret(s.as_bytes().to_vec()))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_value() {
        assert!(matches!(
            Secret::new("cluster_secret", "short"),
            Err(AuthError::WeakSecret(m)) if m.contains("cluster_secret")
        ));
        let s = Secret::new("x", "0123456789abcdef\n").unwrap();
        assert_eq!(s.bytes(), b"0123456789abcdef");
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}
