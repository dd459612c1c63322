//! Log output: human-readable lines or JSON lines, filtered by `RUST_LOG`.
//!
//! [`config::NodeConfig::log_format`](crate::config::NodeConfig::log_format)
//! picks the format (`--log-format`, `log_format` in the file, or
//! `CHECKRAFT_NODE_LOG_FORMAT`). JSON lines carry the current span's
//! fields (`node_id`), for log collectors such as journald or Loki.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,openraft=warn";

/// How log lines are written (to stdout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields`, `target`,
    /// and the current `span`'s fields.
    Json,
}

/// Installs the global subscriber: `format`, filtered by `RUST_LOG` (else
/// `default_filter`). Call once, before anything logs.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
