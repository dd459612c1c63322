//! What `backup`, `verify` and `restore` print: one JSON object with
//! `--json`, otherwise a line or a short table.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use checkraft_proto::Grid;
use serde::Serialize;

use checkraft_backup::dir::utc;
use checkraft_backup::format::VERSION;
use checkraft_backup::Backup;

/// Prints `value` as JSON or as text.
pub fn print<T: Serialize + fmt::Display>(value: &T, json: bool) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(value)?
    } else {
        value.to_string()
    };
    emit(&text)
}

/// Writes a line to stdout, returning an error (say, a closed pipe)
/// instead of panicking like `println!`.
#[cfg(not(test))]
fn emit(text: &str) -> Result<()> {
    use anyhow::Context;
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{text}").context("writing to stdout")
}

/// Under test: through `println!`, which the test harness captures.
#[cfg(test)]
fn emit(text: &str) -> Result<()> {
    println!("{text}");
    Ok(())
}

/// `backup`'s summary.
#[derive(Debug, Serialize)]
pub struct BackupSummary {
    /// The file written.
    pub file: String,
    /// Shards in it.
    pub shards: usize,
    /// Checked boxes in it.
    pub boxes_checked: u64,
    /// Its size.
    pub bytes: u64,
    /// When the backup started, ms since the Unix epoch.
    pub created_ms: u64,
}

impl BackupSummary {
    /// The summary of `backup`, written to `file` in `bytes` bytes.
    pub fn new(file: &Path, backup: &Backup, bytes: u64) -> Self {
        Self {
            file: file.display().to_string(),
            shards: backup.shards.len(),
            boxes_checked: backup.boxes_checked(),
            bytes,
            created_ms: backup.created_ms,
        }
    }
}

impl fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {}: {}, {}, {} bytes, taken at {}",
            self.file,
            count(self.shards as u64, "shard"),
            count(self.boxes_checked, "checked box"),
            self.bytes,
            utc(self.created_ms)
        )
    }
}

/// `verify`'s summary.
#[derive(Debug, Serialize)]
pub struct VerifySummary {
    /// The file checked.
    pub file: String,
    /// Its format version.
    pub format_version: u32,
    /// Its size.
    pub bytes: u64,
    /// When the backup started, ms since the Unix epoch.
    pub created_ms: u64,
    /// The source cluster's grid.
    pub grid: Grid,
    /// Number of shards.
    pub shards: usize,
    /// Checked boxes over all shards.
    pub boxes_checked: u64,
    /// Each shard, in range order.
    pub per_shard: Vec<ShardLine>,
}

/// One shard in [`VerifySummary`].
#[derive(Debug, Serialize)]
pub struct ShardLine {
    /// Shard id.
    pub shard: u64,
    /// First box of its range.
    pub start: u64,
    /// One past the last box of its range.
    pub end: u64,
    /// Its epoch when backed up.
    pub epoch: u64,
    /// The change number its snapshot reflects.
    pub seq: u64,
    /// The last raft log index its snapshot covers.
    pub last_log_index: u64,
    /// openraft's snapshot id.
    pub snapshot_id: String,
    /// Its checked boxes.
    pub boxes_checked: u64,
}

impl VerifySummary {
    /// The summary of `backup`, read from `file` of `bytes` bytes.
    pub fn new(file: &Path, backup: &Backup, bytes: u64) -> Self {
        let per_shard = backup
            .shards
            .iter()
            .map(|s| ShardLine {
                shard: s.descriptor.shard,
                start: s.descriptor.start,
                end: s.descriptor.end,
                epoch: s.descriptor.epoch,
                seq: s.seq,
                last_log_index: s.last_log_index,
                snapshot_id: s.snapshot_id.clone(),
                boxes_checked: s.bitmap.cardinality(),
            })
            .collect();
        Self {
            file: file.display().to_string(),
            format_version: VERSION,
            bytes,
            created_ms: backup.created_ms,
            grid: backup.grid,
            shards: backup.shards.len(),
            boxes_checked: backup.boxes_checked(),
            per_shard,
        }
    }
}

impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: OK (format version {}, {} bytes)",
            self.file, self.format_version, self.bytes
        )?;
        writeln!(
            f,
            "created  {} ({} ms)",
            utc(self.created_ms),
            self.created_ms
        )?;
        writeln!(
            f,
            "grid     {} boxes, chunks of {}",
            self.grid.boxes, self.grid.chunk_size
        )?;
        writeln!(
            f,
            "shards   {}, {} checked boxes",
            self.shards, self.boxes_checked
        )?;
        write!(
            f,
            "{:>6}  {:<25} {:>6} {:>10} {:>10}",
            "SHARD", "RANGE", "EPOCH", "SEQ", "CHECKED"
        )?;
        for s in &self.per_shard {
            let range = format!("[{}, {})", s.start, s.end);
            write!(
                f,
                "\n{:>6}  {:<25} {:>6} {:>10} {:>10}",
                s.shard, range, s.epoch, s.seq, s.boxes_checked
            )?;
        }
        Ok(())
    }
}

/// `restore`'s summary.
#[derive(Debug, Serialize)]
pub struct RestoreSummary {
    /// Target shards whose state was replaced.
    pub shards_restored: usize,
    /// Checked boxes after the restore.
    pub boxes_checked: u64,
}

impl fmt::Display for RestoreSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restored {} shards: {} checked boxes",
            self.shards_restored, self.boxes_checked
        )
    }
}

/// `1 shard`, `2 shards`, `3 checked boxes`.
fn count(n: u64, what: &str) -> String {
    match (n, what.ends_with('x')) {
        (1, _) => format!("1 {what}"),
        (_, true) => format!("{n} {what}es"),
        (_, false) => format!("{n} {what}s"),
    }
}
