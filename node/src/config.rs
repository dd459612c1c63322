//! The node's typed configuration.
//!
//! Precedence, lowest first: the defaults in [`NodeConfig::default`], a TOML
//! file (`--config`), environment variables `CHECKRAFT_NODE_<FIELD>` (for
//! example `CHECKRAFT_NODE_HEARTBEAT_MS=200`), then command-line flags. A
//! commented sample is `testdata/node.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use checkraft_auth::{Role, Secret, Signer, Verifier};

use crate::error::{Error, Result};
use crate::logging::LogFormat;

/// Everything a node needs to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, never reused by another node. 0 means: use the id
    /// stored in the data dir, or, on a new data dir, wait until `raftctl
    /// node add` assigns one.
    pub id: u64,
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// `HOST:PORT` peers and clients use to reach this node; defaults to
    /// `listen`.
    pub advertise: Option<String>,
    /// Directory of the node's sled database.
    pub data_dir: PathBuf,
    /// The operator's bearer token: it allows `/admin/*`, restores, and
    /// the data plane, never raft RPCs. Without it, only nodes (signing
    /// with the cluster secret) may call admin endpoints.
    pub admin_token: Option<String>,
    /// The cluster secret (at least 16 characters), the same on every
    /// node: nodes sign every call to each other with it (see
    /// `checkraft-auth`). Required; a node without it does not start.
    pub cluster_secret: Option<String>,
    /// The gateway secret (at least 16 characters): gateways sign their
    /// calls with it, and it allows only shard reads, writes, change
    /// streams and map reads. Without it, no gateway can connect.
    pub gateway_secret: Option<String>,
    /// Raft heartbeat interval, in milliseconds.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized raft election timeout, in milliseconds.
    pub election_min_ms: u64,
    /// Upper bound of the randomized raft election timeout, in milliseconds.
    pub election_max_ms: u64,
    /// Ask peers before campaigning (raft Pre-Vote): a node that was cut
    /// off cannot raise its term while the others still hear from their
    /// leader, so its return does not depose that leader.
    pub pre_vote: bool,
    /// How often a follower checks that the leaders of its groups still
    /// accept connections, in ms; a leader whose port refuses them (its
    /// process died) is succeeded at once, without waiting for its lease
    /// and an election timeout (see [`crate::succession`]). 0 turns the
    /// check off.
    pub dead_leader_probe_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, for followers that lag a little.
    pub keep_logs: u64,
    /// Change events retained per shard for change-stream replay.
    pub retained_changes: usize,
    /// Interval of progress markers on an idle change stream, in ms.
    pub progress_ms: u64,
    /// How long a shard write waits for commit before answering 503, in ms.
    pub write_timeout_ms: u64,
    /// Interval of leadership reports to the metadata group, in ms.
    pub report_ms: u64,
    /// The metadata leader lists a gateway in `GET /meta/gateways` while
    /// its last report is at most this old, in ms (gateways report every
    /// `register_interval_ms`, 2000 by default; see
    /// [`crate::gateways`]).
    pub gateway_down_after_ms: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest number of sets in one write batch.
    pub max_batch_sets: usize,
    /// sled page cache size, in MiB.
    pub cache_mb: u64,
    /// After a fatal storage error (a full disk), how long the node keeps
    /// reporting it on `/health` and `/metrics` before it exits (code 75)
    /// for a supervisor to restart it, in ms.
    pub storage_failure_grace_ms: u64,
    /// On SIGTERM, how long each group this node leads may take to hand
    /// its leadership to a caught-up voter before the node stops, in ms;
    /// 0 stops without handing over (see [`crate::handover`]).
    pub handover_ms: u64,
    /// The control plane calls a node down after this long without a
    /// report (see `report_ms`) and rebuilds its replicas on live nodes,
    /// in ms. A new metadata leader waits this long before it calls any
    /// node down.
    pub down_after_ms: u64,
    /// Let the control plane even out replicas and leaders across nodes
    /// by itself (after `raftctl node add`, or a node's return).
    pub rebalance: bool,
    /// Split a shard by itself when its leader reports more than this
    /// many sets per second for `split_hold_ms`; 0 turns it off.
    pub split_writes_per_second: u64,
    /// How long a shard's write rate must stay above
    /// `split_writes_per_second` before it is split, in ms.
    pub split_hold_ms: u64,
    /// Log lines as `text` (human-readable) or `json` (one object per
    /// line); see [`crate::logging`].
    pub log_format: LogFormat,
    /// Where the metadata leader writes scheduled grid backups (see
    /// [`crate::backup_schedule`]); `None` turns them off. Give every node
    /// the same path (shared storage) or accept that each leader keeps its
    /// own.
    pub backup_dir: Option<PathBuf>,
    /// Interval of scheduled backups, in ms, from the newest one in
    /// `backup_dir`. At least 1000.
    pub backup_interval_ms: u64,
    /// Scheduled backups kept in `backup_dir`; older ones are deleted. At
    /// least 1.
    pub backup_keep: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: 0,
            listen: "127.0.0.1:7001".parse().expect("valid default address"),
            advertise: None,
            data_dir: PathBuf::from("data/node"),
            admin_token: None,
            cluster_secret: None,
            gateway_secret: None,
            heartbeat_ms: 150,
            election_min_ms: 800,
            election_max_ms: 1600,
            pre_vote: true,
            dead_leader_probe_ms: 100,
            snapshot_every: 2000,
            keep_logs: 500,
            retained_changes: 4096,
            progress_ms: 1000,
            write_timeout_ms: 10_000,
            report_ms: 1000,
            gateway_down_after_ms: 6_000,
            max_body_bytes: 16 << 20,
            max_batch_sets: 65_536,
            cache_mb: 64,
            storage_failure_grace_ms: 5_000,
            handover_ms: 2_000,
            down_after_ms: 300_000,
            rebalance: true,
            split_writes_per_second: 0,
            split_hold_ms: 60_000,
            log_format: LogFormat::Text,
            backup_dir: None,
            backup_interval_ms: 3_600_000,
            backup_keep: 24,
        }
    }
}

/// Command-line values that override everything else when present.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--id`
    pub id: Option<u64>,
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--advertise`
    pub advertise: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--log-format`
    pub log_format: Option<LogFormat>,
}

impl NodeConfig {
    /// Loads defaults, then `file`, then the environment, then `overrides`,
    /// and validates the result.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(NodeConfig::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("CHECKRAFT_NODE_"));
        let mut config: NodeConfig = figment
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        if let Some(id) = overrides.id {
            config.id = id;
        }
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if overrides.advertise.is_some() {
            config.advertise = overrides.advertise;
        }
        if let Some(dir) = overrides.data_dir {
            config.data_dir = dir;
        }
        if let Some(format) = overrides.log_format {
            config.log_format = format;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants that defaults cannot guarantee.
    pub fn validate(&self) -> Result<()> {
        if self.heartbeat_ms == 0 || self.election_min_ms <= self.heartbeat_ms {
            return Err(Error::Config(
                "election_min_ms must exceed heartbeat_ms > 0".into(),
            ));
        }
        if self.election_max_ms <= self.election_min_ms {
            return Err(Error::Config(
                "election_max_ms must exceed election_min_ms".into(),
            ));
        }
        // A missing cluster_secret fails at start (`peer_auth` in
        // `Node::open`), so that the defaults stay valid.
        if self.cluster_secret.is_some() {
            self.peer_auth()?;
        }
        if self.snapshot_every == 0 || self.retained_changes == 0 || self.max_batch_sets == 0 {
            return Err(Error::Config(
                "snapshot_every, retained_changes and max_batch_sets must be positive".into(),
            ));
        }
        if self.down_after_ms < 3 * self.report_ms.max(1) {
            return Err(Error::Config(format!(
                "down_after_ms ({}) must be at least 3 report_ms ({}): a node is called down \
                 only after several reports in a row went missing",
                self.down_after_ms, self.report_ms
            )));
        }
        if self.backup_interval_ms < 1000 || self.backup_keep == 0 {
            return Err(Error::Config(
                "backup_interval_ms must be at least 1000 and backup_keep at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The signer for this node's calls to other nodes, and the verifier of
    /// calls it receives, from [`Self::cluster_secret`] and
    /// [`Self::gateway_secret`].
    pub fn peer_auth(&self) -> Result<(Signer, Verifier)> {
        let cluster = self.cluster_secret.as_deref().ok_or_else(|| {
            Error::Config(
                "cluster_secret is not set: every node of a cluster needs the same secret \
                 (CHECKRAFT_NODE_CLUSTER_SECRET, or cluster_secret in the config file; \
                 `raftctl up` writes one to data/cluster-secret)"
                    .into(),
            )
        })?;
        let cluster =
            Secret::new("cluster_secret", cluster).map_err(|e| Error::Config(e.to_string()))?;
        let gateway = self
            .gateway_secret
            .as_deref()
            .map(|s| Secret::new("gateway_secret", s))
            .transpose()
            .map_err(|e| Error::Config(e.to_string()))?;
        if gateway.as_ref() == Some(&cluster) {
            return Err(Error::Config(
                "gateway_secret must differ from cluster_secret (a gateway must not be able to sign as a node)".into(),
            ));
        }
        Ok((
            Signer::new(Role::Node, cluster.clone()),
            Verifier::new(cluster, gateway),
        ))
    }

    /// The address peers use to reach this node.
    pub fn advertise_addr(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// The openraft configuration of this node's groups.
    ///
    /// A group reopened after a restart never restores its leadership
    /// from its stored vote (`enable_leader_restore` off): a leader hands
    /// entries to its followers before its own flush, so a leader killed
    /// before that flush comes back without entries its followers hold
    /// under its term. Restoring the term, it would write different
    /// entries under the same log ids, and followers that match the id
    /// would keep the old ones (Log Matching broken: acknowledged writes
    /// missing on a replica). An election in a new term cannot do that.
    /// Only a split's child, started from its seed in the process that
    /// wrote it, restores (`restore_leadership`: nothing of its log can
    /// have been lost; see `docs/resharding.md`). The integration test
    /// `lost_log_tail.rs` makes that crash state and fails with `true`.
    pub fn raft_config(&self, restore_leadership: bool) -> Result<openraft::Config> {
        let config = openraft::Config {
            enable_leader_restore: Some(restore_leadership),
            cluster_name: "checkraft".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs,
            install_snapshot_timeout: 5_000,
            enable_pre_vote: Some(self.pre_vote),
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Config(e.to_string()))
    }

    /// [`Self::handover_ms`] as a duration; `None` when handover is off.
    pub fn handover_limit(&self) -> Option<Duration> {
        (self.handover_ms > 0).then(|| Duration::from_millis(self.handover_ms))
    }

    /// [`Self::storage_failure_grace_ms`] as a duration.
    pub fn storage_failure_grace(&self) -> Duration {
        Duration::from_millis(self.storage_failure_grace_ms)
    }

    /// [`Self::gateway_down_after_ms`] as a duration.
    pub fn gateway_down_after(&self) -> Duration {
        Duration::from_millis(self.gateway_down_after_ms)
    }

    /// [`Self::progress_ms`] as a duration.
    pub fn progress_interval(&self) -> Duration {
        Duration::from_millis(self.progress_ms.max(10))
    }
}
