//! Log output: human-readable lines or JSON lines, filtered by `RUST_LOG`.
//!
//! [`config::GatewayConfig::log_format`](crate::config::GatewayConfig::log_format)
//! picks the format (`--log-format`, `log_format` in the file, or
//! `CHECKRAFT_GATEWAY_LOG_FORMAT`). JSON lines carry the current span's
//! fields (`gateway_id`), for log collectors such as journald or Loki.

pub use checkraft_service::logging::{init, LogFormat};

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";
