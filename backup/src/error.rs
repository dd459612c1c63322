//! The crate's one error type.

use std::fmt::Display;

/// Why a backup could not be read, written or taken.
///
/// Every message names what failed (the file, the section, the shard, the
/// node), because an operator reads it without the code at hand.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a valid backup, or the backup does not hold what
    /// the format requires (a checksum, a range, a bitmap). Deterministic:
    /// reading the same file again gives the same error.
    #[error("{0}")]
    Invalid(String),
    /// A file or directory operation failed (missing file, full disk,
    /// permission denied); `what` names the operation and the path.
    #[error("{what}: {error}")]
    Io {
        /// The operation and its path, e.g. `creating /b/x.ckb.tmp`.
        what: String,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The cluster could not give a backup: not initialized, an
    /// inconsistent map, or no replica of a shard produced a usable
    /// snapshot. Often transient: running the backup again may succeed.
    #[error("{0}")]
    Cluster(String),
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error, its message prefixed with `context: `.
    pub fn context(self, context: impl Display) -> Self {
        match self {
            Error::Invalid(m) => Error::Invalid(format!("{context}: {m}")),
            Error::Cluster(m) => Error::Cluster(format!("{context}: {m}")),
            Error::Io { what, error } => Error::Io {
                what: format!("{context}: {what}"),
                error,
            },
        }
    }

    /// An [`Error::Io`] for `error` while doing `what`.
    pub(crate) fn io(what: impl Display, error: std::io::Error) -> Self {
        Error::Io {
            what: what.to_string(),
            error,
        }
    }
}

/// `anyhow`-style context on this crate's results.
pub(crate) trait Context<T> {
    /// Prefixes an error's message with `context`.
    fn context(self, context: impl Display) -> Result<T>;
    /// Prefixes an error's message with `f()`, built only on error.
    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| e.context(context))
    }

    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.context(f()))
    }
}

/// Returns an [`Error::Invalid`] built like `format!`.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
