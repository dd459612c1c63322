//! Read-only inspection of a stopped node's data dir (the `inspect`
//! example).
//!
//! sled 0.34 has no read-only mode: opening a database recovers it, which
//! writes. It zeroes the tail of the last log segment, extends `db` to a
//! whole segment, writes a fresh `snap.*` page table and removes the old
//! one, even when nothing is read. So [`OfflineCopy`] never opens the data
//! dir with sled: it copies the dir's files into a private temp dir (plain
//! reads: no byte or mtime of the original changes), opens the copy, and
//! deletes it when dropped. The copy is what a restart after a crash at
//! that instant would see.
//!
//! While copying it holds a shared lock on `db`. sled holds an exclusive
//! lock on it while a node runs, so a running node is refused (its files
//! change under the copy) rather than read torn, and a node started during
//! the copy fails to start instead of writing under it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use checkraft_proto::codec;
use checkraft_proto::raft::{Entry, LogId};
use checkraft_proto::GroupId;
use openraft::EntryPayload;

use super::log_store::{COMMITTED, PURGED, VOTE};
use super::snapshot_store::{StoredSnapshot, SNAPSHOT};
use crate::error::{Error, Result};

/// A private, throwaway copy of a data dir, opened with sled. Deleted on
/// drop.
pub struct OfflineCopy {
    db: Option<sled::Db>,
    copy: PathBuf,
}

impl OfflineCopy {
    /// Copies `data_dir` into a new temp dir and opens the copy. Fails if
    /// `data_dir` holds no sled database or a running node holds it.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let db_file = data_dir.join("db");
        let lock = std::fs::File::open(&db_file).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!(
                    "{} is not a node's data dir: {}: {e}",
                    data_dir.display(),
                    db_file.display()
                ),
            ))
        })?;
        match lock.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Unavailable(format!(
                    "{} is locked: a node is running on {}; stop it first",
                    db_file.display(),
                    data_dir.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::Io(e)),
        }
        let copy = std::env::temp_dir().join(format!(
            "checkraft-inspect-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir(&copy)?;
        // From here on, dropping `this` deletes the copy.
        let mut this = Self { db: None, copy };
        copy_dir(data_dir, &this.copy)?;
        drop(lock);
        let db = sled::Config::new().path(&this.copy).open().map_err(|e| {
            super::damaged(data_dir, "sled could not open a copy of the data dir", e)
        })?;
        this.db = Some(db);
        Ok(this)
    }

    fn db(&self) -> &sled::Db {
        self.db.as_ref().expect("opened in OfflineCopy::open")
    }

    /// Whether the data dir holds a tree for `group`.
    pub fn has_group(&self, group: GroupId) -> bool {
        let name = format!("group/{group}");
        self.db().tree_names().iter().any(|t| t == name.as_bytes())
    }

    /// Describes one group's stored raft state: its vote, committed and
    /// purged log ids, snapshot meta and log range, then the entries at
    /// `indices` (one line each).
    pub fn describe_group(&self, group: GroupId, indices: &[u64]) -> Result<String> {
        let mut out = String::new();
        if !self.has_group(group) {
            let _ = writeln!(out, "group {group}: not stored in this data dir");
            return Ok(out);
        }
        let tree = self.db().open_tree(format!("group/{group}"))?;
        let get = |key: &[u8]| -> Result<Option<sled::IVec>> { Ok(tree.get(key)?) };
        let corrupt = |what: &str, e: checkraft_proto::CodecError| {
            Error::Corrupt(format!("group {group}: {what}: {e}"))
        };
        if let Some(v) = get(VOTE)? {
            let vote: checkraft_proto::raft::Vote =
                codec::decode(&v).map_err(|e| corrupt("vote", e))?;
            let _ = writeln!(out, "vote: {vote:?}");
        }
        if let Some(v) = get(COMMITTED)? {
            let committed: Option<LogId> =
                codec::decode(&v).map_err(|e| corrupt("committed", e))?;
            let _ = writeln!(out, "committed: {committed:?}");
        }
        if let Some(v) = get(PURGED)? {
            let purged: LogId = codec::decode(&v).map_err(|e| corrupt("purged", e))?;
            let _ = writeln!(out, "purged: {purged:?}");
        }
        if let Some(v) = get(SNAPSHOT)? {
            let s: StoredSnapshot = codec::decode(&v).map_err(|e| corrupt("snapshot", e))?;
            let _ = writeln!(out, "snapshot: {:?} ({} bytes)", s.meta, s.data.len());
        }
        let logs = tree
            .scan_prefix(b"l")
            .values()
            .map(|v| codec::decode::<Entry>(&v?).map_err(|e| corrupt("log entry", e)))
            .collect::<Result<Vec<Entry>>>()?;
        if let (Some(first), Some(last)) = (logs.first(), logs.last()) {
            let _ = writeln!(
                out,
                "log: {} entries, {} ..= {}",
                logs.len(),
                first.log_id,
                last.log_id
            );
        }
        for want in indices {
            match logs.iter().find(|e| e.log_id.index == *want) {
                Some(e) => {
                    let _ = match &e.payload {
                        EntryPayload::Blank => writeln!(out, "entry {want}: {} blank", e.log_id),
                        EntryPayload::Normal(command) => {
                            writeln!(out, "entry {want}: {} {command:?}", e.log_id)
                        }
                        EntryPayload::Membership(m) => {
                            writeln!(out, "entry {want}: {} membership {m}", e.log_id)
                        }
                    };
                }
                None => {
                    let _ = writeln!(out, "entry {want}: absent");
                }
            }
        }
        Ok(out)
    }
}

impl Drop for OfflineCopy {
    fn drop(&mut self) {
        // Close sled (its files, its lock) before deleting them.
        drop(self.db.take());
        let _ = std::fs::remove_dir_all(&self.copy);
    }
}

/// Copies the regular files and directories under `from` into `to` (an
/// existing directory), reading `from` only.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            // The copy must be writable (sled writes to it) whatever the
            // original's mode.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}
