//! The storage boundary: the only module that touches sled.
//!
//! ## Layout
//! One [`sled::Db`] per process ([`Storage`]). Each raft group gets one tree,
//! `group/<id>`, holding:
//! - `l` + big-endian log index → bincode [`checkraft_proto::raft::Entry`];
//! - `m:vote`, `m:committed`, `m:purged` → bincode vote / log ids;
//! - `m:snapshot` → bincode [`StoredSnapshot`] (meta + data).
//!
//! The tree `groups` maps each hosted group id to its initial descriptor, so
//! a restarted node reopens the same groups; the tree `deleted` lists the
//! groups this node deleted (a split replayed from the log does not bring
//! one back, see [`Storage::seed_group`]); the default tree holds the
//! node's id under `node-id`, so a data dir always belongs to one node.
//!
//! ## Durability
//! sled keeps writes in memory until a flush, and `flush` is database-wide.
//! [`Flusher`] turns that into group commit: every caller that needs
//! durability queues a waiter; one background task drains all queued
//! waiters, runs one `flush`, then completes them all. Nothing is reported
//! durable to openraft (append callback, vote, truncate, purge, snapshot)
//! before a flush that started after the write returns.
//!
//! ## Damaged files
//! sled checks its page table (`snap.*`), log (`db`) and settings (`conf`)
//! when it opens them and pages as it reads them. A failure (and a stored
//! record that does not decode) is an [`Error::Corrupt`] naming the data
//! dir, the file, the group when it is one group's tree, and what to do.
//! A database sled cannot open stops the node at startup; a group whose
//! tree cannot be loaded is not served.
//!
//! ## Offline inspection
//! [`OfflineCopy`] reads a stopped node's data dir without writing to it
//! (sled has no read-only mode; it opens a copy).

mod flusher;
mod log_store;
mod offline;
mod snapshot_store;

pub use flusher::Flusher;
pub use log_store::LogStore;
pub use offline::OfflineCopy;
pub use snapshot_store::{SnapshotStore, StoredSnapshot};

use std::path::Path;
use std::sync::Arc;

use checkraft_proto::{codec, GroupId, ShardDescriptor};

use crate::error::{Error, Result};

/// Key of the node id in the default tree.
const NODE_ID: &[u8] = b"node-id";

/// The process's one sled database plus its group-commit flusher.
#[derive(Clone)]
pub struct Storage {
    db: sled::Db,
    groups: sled::Tree,
    /// Ids of groups this node deleted: a split replayed from an old log
    /// never brings one back (see [`Storage::seed_group`]).
    deleted: sled::Tree,
    flusher: Flusher,
    dir: Arc<Path>,
}

impl Storage {
    /// Opens (or creates) the database in `dir`. Must be called inside a
    /// tokio runtime (it starts the flusher task). A database sled cannot
    /// open (corrupt files, say) is an error naming `dir`, the damaged file
    /// and what to do.
    pub fn open(dir: &Path, cache_mb: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("creating the data dir {}: {e}", dir.display()),
            ))
        })?;
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mb << 20)
            // We flush explicitly; sled's own periodic flush is harmless but
            // no part of our durability argument.
            .flush_every_ms(Some(1000))
            .open()
            .and_then(|db| Ok((db.open_tree("groups")?, db.open_tree("deleted")?, db)));
        let (groups, deleted, db) =
            opened.map_err(|e| damaged(dir, "sled could not open the node database", e))?;
        let flusher = Flusher::start(db.clone());
        Ok(Self {
            db,
            groups,
            deleted,
            flusher,
            dir: dir.into(),
        })
    }

    /// The data dir this database lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tree holding one group's log, vote and snapshot.
    pub fn group_tree(&self, group: GroupId) -> Result<sled::Tree> {
        self.db
            .open_tree(format!("group/{group}"))
            .map_err(|e| self.group_damaged(group, e))
    }

    /// The error for a group whose stored state cannot be read or makes no
    /// sense (a sled failure, a record that does not decode, an impossible
    /// snapshot): names the group, its tree, the file and what to do.
    pub fn group_damaged(&self, group: GroupId, e: impl Into<Error>) -> Error {
        let what = format!("cannot load group {group} (sled tree `group/{group}`)");
        let detail = match e.into() {
            Error::Storage(e) => {
                // sled itself failed: the whole file is suspect.
                return damaged(&self.dir, &what, e);
            }
            Error::Corrupt(detail) => detail,
            other => other.to_string(),
        };
        Error::Corrupt(format!(
            "{what} from {}: {detail}. This node does not serve group {group} from it. \
             If the group's other replicas are healthy, rebuild this one from them (copy \
             the data dir aside first to keep the evidence): `raftctl shard remove {group} \
             NODE` deletes it, then `raftctl shard add-learner {group} NODE` and `raftctl \
             shard promote {group} NODE`. If no healthy replica is left, restore the grid \
             from a backup (`raftctl restore --from FILE`)",
            self.dir.join("db").display()
        ))
    }

    /// Bytes the database takes on disk (0 when sled cannot tell).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// The group-commit flusher.
    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    /// Records that this node hosts `descriptor.shard`, durably (an
    /// explicit creation also forgets an earlier deletion).
    pub async fn record_group(&self, descriptor: &ShardDescriptor) -> Result<()> {
        self.deleted.remove(descriptor.shard.to_be_bytes())?;
        self.groups
            .insert(descriptor.shard.to_be_bytes(), codec::encode(descriptor))?;
        self.flusher.flush().await
    }

    /// True when this node hosts or once deleted `group`.
    pub fn known_group(&self, group: GroupId) -> Result<bool> {
        let key = group.to_be_bytes();
        Ok(self.groups.contains_key(key)? || self.deleted.contains_key(key)?)
    }

    /// Writes a newborn group's starting point (a split's child), durably:
    /// its state as a snapshot at `at` (the split entry's log id), its log
    /// purged up to there, that log id committed, and `vote` (the parent
    /// leader's, committed, so that node leads the child at once). Every
    /// replica writes the same bytes from the same split entry.
    pub async fn seed_group(
        &self,
        descriptor: &ShardDescriptor,
        snapshot: &StoredSnapshot,
        vote: &checkraft_proto::raft::Vote,
    ) -> Result<()> {
        let at = snapshot
            .meta
            .last_log_id
            .ok_or_else(|| Error::BadRequest("a seed needs a log id".into()))?;
        let tree = self.group_tree(descriptor.shard)?;
        let mut batch = sled::Batch::default();
        batch.insert(log_store::VOTE, codec::encode(vote));
        batch.insert(log_store::COMMITTED, codec::encode(&Some(at)));
        batch.insert(log_store::PURGED, codec::encode(&at));
        batch.insert(snapshot_store::SNAPSHOT, codec::encode(snapshot));
        tree.apply_batch(batch)?;
        self.record_group(descriptor).await
    }

    /// The node id stored in this data dir, if any.
    pub fn node_id(&self) -> Result<Option<u64>> {
        let what = "cannot read the node id";
        let stored = self
            .db
            .get(NODE_ID)
            .map_err(|e| damaged(&self.dir, what, e))?;
        match stored {
            Some(v) => Ok(Some(codec::decode(&v).map_err(|e| {
                Error::Corrupt(format!(
                    "{what} from {}: {e}. {ADVICE}",
                    self.dir.join("db").display()
                ))
            })?)),
            None => Ok(None),
        }
    }

    /// Stores the node id, durably.
    pub async fn set_node_id(&self, id: u64) -> Result<()> {
        self.db.insert(NODE_ID, codec::encode(&id))?;
        self.flusher.flush().await
    }

    /// Deletes a group's tree and record, durably, and remembers that it
    /// was deleted.
    pub async fn drop_group(&self, group: GroupId) -> Result<()> {
        self.deleted.insert(group.to_be_bytes(), &[])?;
        self.groups.remove(group.to_be_bytes())?;
        self.db.drop_tree(format!("group/{group}"))?;
        self.flusher.flush().await
    }

    /// Every group recorded by [`Self::record_group`].
    pub fn recorded_groups(&self) -> Result<Vec<ShardDescriptor>> {
        let what = "cannot read the list of hosted groups (sled tree `groups`)";
        self.groups
            .iter()
            .values()
            .map(|v| {
                let v = v.map_err(|e| damaged(&self.dir, what, e))?;
                codec::decode(&v).map_err(|e| {
                    Error::Corrupt(format!(
                        "{what} from {}: {e}. {ADVICE}",
                        self.dir.join("db").display()
                    ))
                })
            })
            .collect()
    }
}

/// What to do about a damaged data dir (sled's own files, or the records
/// every group depends on); ends every such error.
const ADVICE: &str =
    "Keep the files as they are for diagnosis (move the data dir aside, do not edit them), \
and do not restart this node's id on an empty data dir: it would forget its raft votes and log. \
If the other replicas are healthy, replace the node: `raftctl node remove ID` moves its replicas \
to other nodes; then start a new node without --id on an empty data dir and `raftctl node add \
HOST:PORT`. If no healthy replica is left, restore the grid from a backup \
(`raftctl restore --from FILE`)";

/// The error for a sled failure while reading the database in `dir`:
/// `what` failed, in which file (sled keeps every tree in `dir/db`, large
/// values in `dir/blobs/`, its page table in `dir/snap.*` and its settings
/// in `dir/conf`), and what to do. sled's own message names no file.
pub(crate) fn damaged(dir: &Path, what: &str, e: sled::Error) -> Error {
    let file = |name: &str| dir.join(name).display().to_string();
    let problem = match &e {
        sled::Error::Corruption {
            at: Some(sled::DiskPtr::Inline(offset)),
            ..
        } => format!(
            "sled found corrupt data at offset {offset} of {}",
            file("db")
        ),
        sled::Error::Corruption {
            at: Some(sled::DiskPtr::Blob(_, blob)),
            ..
        } => format!(
            "sled found corrupt data in {}",
            file(&format!("blobs/{blob}"))
        ),
        // sled checks its page table (snap.*) and then the log (db) against
        // it at open, and says only "corrupted data at file offset None".
        sled::Error::Corruption { at: None, .. } => unplaced_corruption(dir),
        // A settings file that fails its checksum reads as "created by a
        // sled version earlier than 0.29".
        sled::Error::Unsupported(said) => format!(
            "sled cannot use its settings file {} (damaged, or written by another sled \
             version; sled says: {said})",
            file("conf")
        ),
        e => format!("{e} (data dir {})", dir.display()),
    };
    match e {
        sled::Error::Io(e) => {
            Error::Io(std::io::Error::new(e.kind(), format!("{what}: {problem}")))
        }
        _ => Error::Corrupt(format!("{what}: {problem}. {ADVICE}")),
    }
}

/// Which file a corruption sled reports without an offset is in: sled's
/// latest page table (`snap.*`) when that fails sled's own check (a CRC-32
/// of all but its last 12 bytes, stored little-endian in its last 4), else
/// the log (`db`), which sled checks against the page table next.
fn unplaced_corruption(dir: &Path) -> String {
    let db = dir.join("db");
    let mut snaps: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| f.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("snap.") && !name.ends_with(".in___motion")
        })
        .collect();
    snaps.sort();
    let Some(snap) = snaps.pop() else {
        return format!("sled found corrupt data in its log {}", db.display());
    };
    let intact = std::fs::read(&snap).is_ok_and(|b| {
        let n = b.len();
        n > 12 && crc32(&b[..n - 12]).to_le_bytes() == b[n - 4..]
    });
    if intact {
        format!(
            "sled found corrupt data in its log {} (checked against its page table {})",
            db.display(),
            snap.display()
        )
    } else {
        format!("sled's page table {} fails its checksum", snap.display())
    }
}

/// CRC-32 (IEEE), as sled computes it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Wraps a failure to read stored raft state as the I/O error openraft's
/// storage traits return (openraft treats it as fatal to the group).
pub(crate) fn read_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("read: {e}"))
}

/// Wraps a failure to write raft state, like [`read_err`].
pub(crate) fn write_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("write: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_is_sleds() {
        // The standard check value of CRC-32/ISO-HDLC, which crc32fast (sled's) computes.
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
    }
}
