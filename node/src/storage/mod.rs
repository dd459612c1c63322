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
//! a restarted node reopens the same groups; the default tree holds the
//! node's id under `node-id`, so a data dir always belongs to one node.
//!
//! ## Durability
//! sled keeps writes in memory until a flush, and `flush` is database-wide.
//! [`Flusher`] turns that into group commit: every caller that needs
//! durability queues a waiter; one background task drains all queued
//! waiters, runs one `flush`, then completes them all. Nothing is reported
//! durable to openraft (append callback, vote, truncate, purge, snapshot)
//! before a flush that started after the write returns.

mod flusher;
mod log_store;
mod snapshot_store;

pub use flusher::Flusher;
pub use log_store::LogStore;
pub use snapshot_store::{SnapshotStore, StoredSnapshot};

use checkraft_proto::{codec, GroupId, ShardDescriptor};

use crate::error::{Error, Result};

/// Key of the node id in the default tree.
const NODE_ID: &[u8] = b"node-id";

/// The process's one sled database plus its group-commit flusher.
#[derive(Clone)]
pub struct Storage {
    db: sled::Db,
    groups: sled::Tree,
    flusher: Flusher,
}

impl Storage {
    /// Opens (or creates) the database in `dir`. Must be called inside a
    /// tokio runtime (it starts the flusher task).
    pub fn open(dir: &std::path::Path, cache_mb: u64) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mb << 20)
            // We flush explicitly; sled's own periodic flush is harmless but
            // no part of our durability argument.
            .flush_every_ms(Some(1000))
            .open()?;
        let groups = db.open_tree("groups")?;
        let flusher = Flusher::start(db.clone());
        Ok(Self {
            db,
            groups,
            flusher,
        })
    }

    /// The tree holding one group's log, vote and snapshot.
    pub fn group_tree(&self, group: GroupId) -> Result<sled::Tree> {
        Ok(self.db.open_tree(format!("group/{group}"))?)
    }

    /// The group-commit flusher.
    pub fn flusher(&self) -> &Flusher {
        &self.flusher
    }

    /// Records that this node hosts `descriptor.shard`, durably.
    pub async fn record_group(&self, descriptor: &ShardDescriptor) -> Result<()> {
        self.groups
            .insert(descriptor.shard.to_be_bytes(), codec::encode(descriptor))?;
        self.flusher.flush().await
    }

    /// The node id stored in this data dir, if any.
    pub fn node_id(&self) -> Result<Option<u64>> {
        match self.db.get(NODE_ID)? {
            Some(v) => Ok(Some(
                codec::decode(&v).map_err(|e| Error::Corrupt(format!("node id: {e}")))?,
            )),
            None => Ok(None),
        }
    }

    /// Stores the node id, durably.
    pub async fn set_node_id(&self, id: u64) -> Result<()> {
        self.db.insert(NODE_ID, codec::encode(&id))?;
        self.flusher.flush().await
    }

    /// Deletes a group's tree and record, durably.
    pub async fn drop_group(&self, group: GroupId) -> Result<()> {
        self.groups.remove(group.to_be_bytes())?;
        self.db.drop_tree(format!("group/{group}"))?;
        self.flusher.flush().await
    }

    /// Every group recorded by [`Self::record_group`].
    pub fn recorded_groups(&self) -> Result<Vec<ShardDescriptor>> {
        self.groups
            .iter()
            .values()
            .map(|v| {
                let v = v?;
                codec::decode(&v).map_err(|e| Error::Corrupt(format!("group record: {e}")))
            })
            .collect()
    }
}

/// Wraps any failure as an openraft storage read error (fatal to the group).
pub(crate) fn read_err(e: impl std::fmt::Display) -> openraft::StorageError<u64> {
    openraft::StorageIOError::read(openraft::AnyError::error(e.to_string())).into()
}

/// Wraps any failure as an openraft storage write error (fatal to the group).
pub(crate) fn write_err(e: impl std::fmt::Display) -> openraft::StorageError<u64> {
    openraft::StorageIOError::write(openraft::AnyError::error(e.to_string())).into()
}
