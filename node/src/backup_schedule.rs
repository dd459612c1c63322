//! Scheduled grid backups, written by the metadata group's leader.
//!
//! Off unless `backup_dir` is set ([`crate::config::NodeConfig`]). Then
//! every node runs [`drive`], and whichever node leads the metadata group
//! acts, every `backup_interval_ms`:
//!
//! 1. **When.** A backup is due `backup_interval_ms` after the newest
//!    scheduled backup already in `backup_dir` (its name holds its start
//!    time), so a new leader does not write one at once. After a failed
//!    attempt this node waits the interval or a minute, whichever is
//!    shorter, before it tries again, so a failing backup is retried
//!    steadily, not in a loop, and a transient failure (an election) does
//!    not cost a whole interval.
//! 2. **Take.** [`checkraft_backup::take`] snapshots every shard of the
//!    current map at a replica (the leader first), over the nodes' HTTP
//!    API, each call signed with the cluster secret (`PeerNodes`).
//! 3. **Write.** [`checkraft_backup::file::save`] writes
//!    `<backup_dir>/grid-YYYYMMDDTHHMMSSZ.ckb` atomically: a `.tmp` file,
//!    fsync, read back through every check, rename, fsync of the
//!    directory.
//! 4. **Verify.** The renamed file is read again through the checks of
//!    `raftctl verify` ([`checkraft_backup::file::load`]), and must hold
//!    what was taken.
//! 5. **Keep.** Scheduled backups beyond the newest `backup_keep` are
//!    deleted, oldest first; no other file in the directory is touched
//!    ([`checkraft_backup::dir`]).
//!
//! A failure at any step (a full disk, an unwritable directory, a shard
//! without a reachable replica) is logged at `error` with the directory
//! and the cause, counted in `checkraft_node_backups_total{outcome="failed"}`
//! and kept for `GET /admin/backups`; the node keeps serving. Success
//! counts `outcome="ok"` and sets
//! `checkraft_node_backup_last_success_timestamp_seconds`.
//!
//! `GET /admin/backups` lists a node's `backup_dir` (every node answers
//! for its own; with shared storage, or under `raftctl up`, they list the
//! same files), and `GET /admin/backups/{name}` serves one file, for
//! `raftctl backup list` and `raftctl restore --from NAME`.
//!
//! Caveats: a backup is consistent per shard, not across shards (see
//! `checkraft-backup`); the work (snapshots, the file) runs on the
//! metadata leader, and a leader change mid-backup leaves at most a
//! `.tmp` file that the next attempt at the same name replaces.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checkraft_auth::SendSigned;
use checkraft_backup::{dir, file, Nodes};
use checkraft_proto::{
    codec, BackupEntry, BackupList, NodeStatus, ShardId, ShardMap, SnapshotDownload, SnapshotInfo,
    META_GROUP,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::node::Node;

/// How often each node checks whether a backup is due, at most.
const TICK: Duration = Duration::from_secs(1);
/// Longest wait before retrying a failed backup.
const RETRY: Duration = Duration::from_secs(60);
/// One status call's limit.
const STATUS_LIMIT: Duration = Duration::from_secs(3);
/// One snapshot call's limit (building and downloading a large shard).
const SNAPSHOT_LIMIT: Duration = Duration::from_secs(120);

/// The `outcome` label of `backups_total`.
type Labels = Vec<(&'static str, &'static str)>;

/// What this node's scheduled backups did (`/metrics`, `/admin/backups`).
pub struct Stats {
    /// Backups this node attempted as metadata leader, by `outcome` (`ok`,
    /// `failed`).
    pub backups: Family<Labels, Counter>,
    /// When its last successful backup started, seconds since the Unix
    /// epoch (0: none yet).
    pub last_success: Gauge,
    /// Why its last attempt failed; cleared by a success.
    last_failure: Mutex<Option<String>>,
}

impl Default for Stats {
    fn default() -> Self {
        let stats = Self {
            backups: Family::default(),
            last_success: Gauge::default(),
            last_failure: Mutex::new(None),
        };
        // Every series exists from the start (at 0).
        for outcome in ["ok", "failed"] {
            let _ = stats.backups.get_or_create(&vec![("outcome", outcome)]);
        }
        stats
    }
}

impl Stats {
    fn succeeded(&self, created_ms: u64) {
        self.backups.get_or_create(&vec![("outcome", "ok")]).inc();
        self.last_success
            .set(i64::try_from(created_ms / 1000).unwrap_or(i64::MAX));
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self, why: String) {
        self.backups
            .get_or_create(&vec![("outcome", "failed")])
            .inc();
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Why the last attempt failed, if it did.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Writes scheduled backups while this node leads the metadata group.
/// Returns at once when `backup_dir` is not set; stops when the node is
/// dropped.
pub async fn drive(node: Weak<Node>) {
    let Some((dir, interval, keep)) = node.upgrade().and_then(|n| settings(&n)) else {
        return;
    };
    tracing::info!(dir = %dir.display(), ?interval, keep, "scheduled backups on");
    // After a failure: no attempt before this.
    let mut retry_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(TICK.min(interval)).await;
        let Some(node) = node.upgrade() else { return };
        let Some(map) = initialized_map_if_leader(&node) else {
            continue;
        };
        if retry_at.is_some_and(|t| Instant::now() < t) || !due(&dir, interval) {
            continue;
        }
        let stats = node.backup_stats();
        match run_once(&node, map, &dir, keep).await {
            Ok((name, created_ms, boxes)) => {
                tracing::info!(dir = %dir.display(), %name, boxes, "scheduled backup written and verified");
                stats.succeeded(created_ms);
                retry_at = None;
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!(dir = %dir.display(), error = %why, "scheduled backup failed; the node keeps serving and retries");
                stats.failed(why);
                retry_at = Some(Instant::now() + interval.min(RETRY));
            }
        }
    }
}

/// The current map when this node leads the metadata group and the
/// cluster is initialized (before `raftctl init` there is nothing to back
/// up, and no attempt is made).
fn initialized_map_if_leader(node: &Node) -> Option<ShardMap> {
    let meta = node.group(META_GROUP).ok()?;
    if !meta.is_leader() {
        return None;
    }
    let map = meta.map().ok()?;
    let ready = map.grid.is_some() && !map.shards.is_empty();
    ready.then_some(map)
}

/// `(backup_dir, interval, keep)` when scheduled backups are on.
fn settings(node: &Node) -> Option<(PathBuf, Duration, usize)> {
    let c = &node.config;
    let dir = c.backup_dir.clone()?;
    Some((
        dir,
        Duration::from_millis(c.backup_interval_ms),
        c.backup_keep,
    ))
}

/// Whether the newest scheduled backup in `dir` is `interval` old (or
/// there is none). An unreadable directory is due: the attempt then
/// reports why.
fn due(dir: &Path, interval: Duration) -> bool {
    let newest = match dir::list(dir) {
        Ok(list) => list.last().map(|e| e.created_ms),
        Err(_) => None,
    };
    match newest {
        None => true,
        Some(ms) => now_ms() >= ms.saturating_add(interval.as_millis() as u64),
    }
}

/// Takes, writes, verifies and prunes one backup: its name, start time and
/// checked boxes.
async fn run_once(
    node: &Node,
    map: ShardMap,
    dir: &Path,
    keep: usize,
) -> Result<(String, u64, u64), checkraft_backup::Error> {
    let created_ms = now_ms();
    // An unusable directory fails before any shard is snapshotted.
    let create = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        fs::create_dir_all(&create).map_err(|e| checkraft_backup::Error::Io {
            what: format!("creating backup_dir {}", create.display()),
            error: e,
        })
    })
    .await
    .map_err(|e| checkraft_backup::Error::Cluster(format!("the backup task failed: {e}")))??;
    let nodes = PeerNodes(node);
    let backup = checkraft_backup::take(&nodes, map, created_ms, |_| {}).await?;
    let name = dir::name_for(created_ms);
    let path = dir.join(&name);
    let tool = match node.id() {
        Some(id) => format!("checkraft-node {} (node {id})", env!("CARGO_PKG_VERSION")),
        None => format!("checkraft-node {}", env!("CARGO_PKG_VERSION")),
    };
    let dir = dir.to_path_buf();
    let boxes = backup.boxes_checked();
    tokio::task::spawn_blocking(move || -> checkraft_backup::Result<()> {
        file::save(&path, &backup, &tool)?;
        let (read, _) = file::load(&path).map_err(|e| e.context("verifying the new backup"))?;
        if read != backup {
            return Err(checkraft_backup::Error::Invalid(format!(
                "{} does not read back as what was taken",
                path.display()
            )));
        }
        for old in dir::prune(&dir, keep.max(1))? {
            tracing::info!(dir = %dir.display(), name = %old, "deleted an old scheduled backup (backup_keep)");
        }
        Ok(())
    })
    .await
    .map_err(|e| checkraft_backup::Error::Cluster(format!("the backup task failed: {e}")))??;
    Ok((name, created_ms, boxes))
}

/// What `GET /admin/backups` answers for this node.
pub fn list(node: &Node) -> BackupList {
    let c = &node.config;
    let mut out = BackupList {
        node_id: node.id().unwrap_or(0),
        dir: c.backup_dir.as_ref().map(|d| d.display().to_string()),
        interval_ms: c.backup_interval_ms,
        keep: c.backup_keep,
        backups: Vec::new(),
        last_failure: node.backup_stats().last_failure(),
    };
    let Some(dir) = &c.backup_dir else { return out };
    match dir::list(dir) {
        Ok(entries) => out.backups = entries.iter().map(|e| entry(dir, e)).collect(),
        Err(e) => out.last_failure = Some(e.to_string()),
    }
    out
}

/// One listed backup, with what its header says (when readable).
fn entry(dir: &Path, e: &dir::Entry) -> BackupEntry {
    let header = fs::File::open(dir.join(&e.name))
        .ok()
        .and_then(|f| checkraft_backup::format::read_header(std::io::BufReader::new(f)).ok());
    BackupEntry {
        name: e.name.clone(),
        created_ms: header.as_ref().map_or(e.created_ms, |h| h.created_ms),
        bytes: e.bytes,
        shards: header.as_ref().map(|h| h.map.shards.len() as u64),
        grid_boxes: header.and_then(|h| h.map.grid).map(|g| g.boxes),
    }
}

/// The scheduled backup `name`'s path in this node's `backup_dir`: `None`
/// when backups are off here; an [`checkraft_backup::Error::Invalid`] when
/// `name` is not a scheduled backup's name (so it cannot leave the
/// directory).
pub fn path_of(node: &Node, name: &str) -> checkraft_backup::Result<Option<PathBuf>> {
    match &node.config.backup_dir {
        None => {
            dir::parse_name(name)?;
            Ok(None)
        }
        Some(d) => dir::path_of(d, name).map(Some),
    }
}

/// The other nodes, reached with this node's signed peer clients.
struct PeerNodes<'a>(&'a Node);

impl PeerNodes<'_> {
    /// `GET` or `POST` `path` on `addr`: the body of a 2xx answer.
    async fn call(
        &self,
        post: bool,
        addr: &str,
        path: &str,
        limit: Duration,
    ) -> Result<bytes::Bytes, String> {
        let client = self.0.peers().client(addr);
        let url = format!("http://{addr}{path}");
        let rb = if post {
            client
                .post(url)
                .header("content-type", "application/json")
                .body("null")
        } else {
            client.get(url)
        };
        let resp = rb
            .timeout(limit)
            .send_signed(self.0.peers().signer())
            .await
            .map_err(|e| format!("{addr}{path}: {e}"))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("{addr}{path}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{addr}{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        Ok(body)
    }
}

impl Nodes for PeerNodes<'_> {
    async fn status(&self, addr: &str) -> Result<NodeStatus, String> {
        let body = self.call(false, addr, "/status", STATUS_LIMIT).await?;
        serde_json::from_slice(&body).map_err(|e| format!("{addr}/status: {e}"))
    }

    async fn snapshot(&self, addr: &str, shard: ShardId) -> Result<SnapshotDownload, String> {
        let path = format!("/admin/groups/{shard}/snapshot");
        let built = self.call(true, addr, &path, SNAPSHOT_LIMIT).await?;
        let _: SnapshotInfo =
            serde_json::from_slice(&built).map_err(|e| format!("{addr}{path}: {e}"))?;
        let body = self.call(false, addr, &path, SNAPSHOT_LIMIT).await?;
        codec::decode(&body).map_err(|e| format!("{addr}{path}: {e}"))
    }
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
