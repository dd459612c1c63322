//! The per-shard progress bar of `backup` and `restore`: drawn on stderr
//! when stderr is a terminal and the output is not `--json`, hidden
//! otherwise, and cleared when dropped (so an error leaves no bar behind).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting shards.
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar over `shards` shards, prefixed with `what`.
    pub fn new(what: &'static str, shards: usize, json: bool) -> Self {
        if json || !std::io::stderr().is_terminal() {
            return Self(ProgressBar::hidden());
        }
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} shards {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::new(shards as u64)
            .with_style(style)
            .with_prefix(what);
        Self(bar)
    }

    /// Shows which shard is being worked on.
    pub fn start_shard(&self, id: u64) {
        self.0.set_message(format!("(shard {id})"));
    }

    /// Counts one shard done.
    pub fn done_shard(&self) {
        self.0.inc(1);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
