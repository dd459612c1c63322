//! The latest snapshot of one group, in that group's sled tree.

use checkraft_proto::codec;
use checkraft_proto::raft::SnapshotMeta;
use serde::{Deserialize, Serialize};

use super::Flusher;
use crate::error::{Error, Result};

pub(super) const SNAPSHOT: &[u8] = b"m:snapshot";

/// A snapshot as stored: openraft's meta plus our data bytes (bincode of
/// [`checkraft_proto::ShardSnapshot`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    /// openraft's snapshot meta (last log id, membership).
    pub meta: SnapshotMeta,
    /// The snapshot data.
    pub data: Vec<u8>,
}

/// Reads and writes the latest snapshot of one group.
#[derive(Clone)]
pub struct SnapshotStore {
    tree: sled::Tree,
    flusher: Flusher,
}

impl SnapshotStore {
    /// A snapshot store over `tree`.
    pub fn new(tree: sled::Tree, flusher: Flusher) -> Self {
        Self { tree, flusher }
    }

    /// The latest snapshot, if any.
    pub fn load(&self) -> Result<Option<StoredSnapshot>> {
        match self.tree.get(SNAPSHOT)? {
            Some(v) => codec::decode(&v)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("stored snapshot: {e}"))),
            None => Ok(None),
        }
    }

    /// Replaces the latest snapshot, durably.
    pub async fn save(&self, snapshot: &StoredSnapshot) -> Result<()> {
        self.tree.insert(SNAPSHOT, codec::encode(snapshot))?;
        self.flusher.flush().await
    }
}
