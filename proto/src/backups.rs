//! Scheduled backups on the nodes' disks: the answer of `GET
//! /admin/backups` (JSON). `GET /admin/backups/{name}` answers the file
//! itself (`application/octet-stream`, the format of `checkraft-backup`);
//! a name that is not a scheduled backup's (`grid-YYYYMMDDTHHMMSSZ.ckb`)
//! is a 400, a missing one a 404.

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Answer of `GET /admin/backups`: what one node's `backup_dir` holds,
/// and how its schedule is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupList {
    /// The answering node.
    pub node_id: NodeId,
    /// Its `backup_dir`; `None` when scheduled backups are off there.
    pub dir: Option<String>,
    /// Its `backup_interval_ms`.
    pub interval_ms: u64,
    /// Its `backup_keep`.
    pub keep: usize,
    /// The scheduled backups in `dir`, oldest first.
    pub backups: Vec<BackupEntry>,
    /// The last scheduled backup this node attempted failed with this
    /// message (cleared by the next success).
    pub last_failure: Option<String>,
}

/// One scheduled backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupEntry {
    /// Its file name, e.g. `grid-20261130T161500Z.ckb`; the name
    /// `raftctl restore --from` accepts.
    pub name: String,
    /// When the backup started, ms since the Unix epoch (from the file's
    /// header; from its name, to the second, when the header is unreadable).
    pub created_ms: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Shards it holds (the header map's), `None` when the header is
    /// unreadable.
    pub shards: Option<u64>,
    /// Boxes of the backed-up grid, `None` when the header is unreadable.
    pub grid_boxes: Option<u64>,
}
