//! The node: its identity, its storage, its hosted groups, and the
//! background report of which shards it leads.
//!
//! ## Identity
//! A data dir belongs to one node id, stored in it. A node started with
//! `--id N` stores N (and refuses a data dir that holds another id). A node
//! started without an id takes the stored one, or, on a new data dir, runs
//! unassigned (it hosts nothing and reports `node_id: 0`) until `raftctl
//! node add` allocates an id in the metadata group and sends it with
//! `POST /admin/node/id`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use checkraft_auth::SendSigned;
use checkraft_proto::{
    CreateGroup, GroupCreated, GroupId, MetaCommand, NodeStatus, ShardDescriptor, WriteOutcome,
    META_GROUP,
};
use rand::Rng;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::faults::Faults;
use crate::group::{GroupContext, ShardGroup};
use crate::network::Peers;
use crate::storage::Storage;

/// The longest each step of [`Node::shutdown`] may take.
const SHUTDOWN_STEP: Duration = Duration::from_secs(3);

/// A running node's shared state, handed to every HTTP handler.
pub struct Node {
    /// The configuration it runs with.
    pub config: NodeConfig,
    id: OnceLock<u64>,
    /// The span `Node::open` ran in (the `node` span of [`crate::server`]):
    /// its `node_id` is recorded here once known, and groups started later
    /// (from HTTP handlers, outside it) log in it too.
    span: tracing::Span,
    storage: Storage,
    peers: Arc<Peers>,
    verifier: checkraft_auth::Verifier,
    refusals: crate::http::access::Refusals,
    raft_config: Arc<openraft::Config>,
    /// [`Self::raft_config`] with leadership restored at start, for a
    /// split's child in the process that seeded it
    /// ([`NodeConfig::raft_config`]).
    birth_raft_config: Arc<openraft::Config>,
    groups: RwLock<HashMap<GroupId, Arc<ShardGroup>>>,
    /// Groups this node cannot serve, and why (see [`crate::faults`]).
    faults: Arc<Faults>,
    /// Serializes group creation and deletion.
    create_lock: tokio::sync::Mutex<()>,
    /// What state machines call when a split gives birth ([`crate::birth`]).
    births: Arc<dyn crate::birth::Births>,
    /// Serializes births (a separate lock: a state machine waits on it,
    /// and deleting a group waits for its state machine).
    birth_lock: tokio::sync::Mutex<()>,
    /// What this node's control plane did.
    operation_stats: crate::control::stats::Stats,
    /// The nodes' reports, while this node leads the metadata group.
    liveness: crate::control::liveness::Liveness,
    /// Gateways that reported while this node led the metadata group.
    gateways: crate::gateways::GatewayRegistry,
    /// What this node's scheduled backups did.
    backup_stats: crate::backup_schedule::Stats,
}

impl Node {
    /// Opens storage, settles the node id, and reopens every recorded group.
    pub async fn open(config: NodeConfig) -> Result<Arc<Self>> {
        let (signer, verifier) = config.peer_auth()?;
        let storage = Storage::open(&config.data_dir, config.cache_mb)?;
        let stored = storage.node_id()?;
        let id = match (config.id, stored) {
            (0, stored) => stored,
            (configured, Some(stored)) if configured != stored => {
                return Err(Error::Config(format!(
                    "data dir {} belongs to node {stored}, not {configured}",
                    config.data_dir.display()
                )))
            }
            (configured, Some(_)) => Some(configured),
            (configured, None) => {
                storage.set_node_id(configured).await?;
                Some(configured)
            }
        };
        let raft_config = Arc::new(config.raft_config(false)?);
        let birth_raft_config = Arc::new(config.raft_config(true)?);
        let node = Arc::new_cyclic(|weak| Self {
            births: Arc::new(crate::birth::NodeBirths(weak.clone())),
            birth_lock: tokio::sync::Mutex::new(()),
            operation_stats: Default::default(),
            liveness: Default::default(),
            gateways: Default::default(),
            backup_stats: Default::default(),
            raft_config,
            birth_raft_config,
            config,
            id: OnceLock::new(),
            span: tracing::Span::current(),
            storage,
            peers: Arc::new(Peers::new(signer)),
            verifier,
            refusals: Default::default(),
            groups: RwLock::new(HashMap::new()),
            faults: Arc::new(Faults::default()),
            create_lock: tokio::sync::Mutex::new(()),
        });
        match id {
            Some(id) => {
                let _ = node.id.set(id);
                if node.config.id == 0 {
                    // Read from the data dir (a configured id is already
                    // on the span; recording it again would print it twice).
                    node.span.record("node_id", id);
                }
                node.reopen_groups().await?;
            }
            None => tracing::warn!("no node id yet: waiting for `raftctl node add` to assign one"),
        }
        tokio::spawn(report_leadership(Arc::downgrade(&node)));
        let control = crate::control::drive(Arc::downgrade(&node));
        tokio::spawn(tracing::Instrument::instrument(control, node.span.clone()));
        let report = crate::control::report::run(Arc::downgrade(&node));
        tokio::spawn(tracing::Instrument::instrument(report, node.span.clone()));
        let succession = crate::succession::watch(Arc::downgrade(&node));
        tokio::spawn(tracing::Instrument::instrument(
            succession,
            node.span.clone(),
        ));
        let backups = crate::backup_schedule::drive(Arc::downgrade(&node));
        tokio::spawn(tracing::Instrument::instrument(backups, node.span.clone()));
        Ok(node)
    }

    async fn reopen_groups(self: &Arc<Self>) -> Result<()> {
        let recorded = self.storage.recorded_groups()?;
        tracing::info!(groups = recorded.len(), "reopening recorded groups");
        let opens = recorded.into_iter().map(|d| {
            let node = self.clone();
            let id = d.shard;
            async move { node.start_group(d, false).await.map_err(|e| (id, e)) }
        });
        for result in futures::future::join_all(opens).await {
            if let Err((id, e)) = result {
                self.faults.load_failed(id, e.to_string());
            }
        }
        Ok(())
    }

    /// Groups this node cannot serve, with the reason (see [`Node::group`]).
    pub fn failed_groups(&self) -> std::collections::BTreeMap<GroupId, String> {
        self.faults.all()
    }

    /// The node's fault record (the server watches [`Faults::fatal`]).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The process's storage (the metrics scrape reads flush statistics).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// What this node's runs of splits and merges did (`/metrics`).
    pub fn operation_stats(&self) -> &crate::control::stats::Stats {
        &self.operation_stats
    }

    /// The nodes' reports (filled while this node leads the metadata
    /// group).
    pub fn liveness(&self) -> &crate::control::liveness::Liveness {
        &self.liveness
    }

    /// What this node's scheduled backups did (`/metrics`).
    pub fn backup_stats(&self) -> &crate::backup_schedule::Stats {
        &self.backup_stats
    }

    /// The shared peer clients (signed calls to other nodes).
    pub(crate) fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    /// Checks peer proofs on incoming calls.
    pub fn verifier(&self) -> &checkraft_auth::Verifier {
        &self.verifier
    }

    /// Calls refused for their credential (for `/metrics`).
    pub fn refusals(&self) -> &crate::http::access::Refusals {
        &self.refusals
    }

    /// The live gateway registry (read only where this node leads the
    /// metadata group).
    pub fn gateways(&self) -> &crate::gateways::GatewayRegistry {
        &self.gateways
    }

    /// This node's id, once it has one.
    pub fn id(&self) -> Option<u64> {
        self.id.get().copied()
    }

    fn context(&self, restore_leadership: bool) -> Result<GroupContext> {
        let node_id = self.id().ok_or_else(|| {
            Error::Unavailable(
                "this node has no id yet; register it with `raftctl node add`".into(),
            )
        })?;
        Ok(GroupContext {
            node_id,
            storage: self.storage.clone(),
            peers: self.peers.clone(),
            raft_config: if restore_leadership {
                self.birth_raft_config.clone()
            } else {
                self.raft_config.clone()
            },
            retained_changes: self.config.retained_changes,
            write_timeout: Duration::from_millis(self.config.write_timeout_ms),
            births: self.births.clone(),
        })
    }

    /// Seeds a split's child durably and starts its raft, unless this node
    /// hosts it already or once deleted it (see [`crate::birth`]).
    pub async fn give_birth(self: Arc<Self>, birth: crate::birth::Birth) -> Result<()> {
        let _guard = self.birth_lock.lock().await;
        let descriptor = birth.state.descriptor.clone();
        if self.storage.known_group(descriptor.shard)? {
            return Ok(());
        }
        let (snapshot, vote) = birth.seed();
        self.storage
            .seed_group(&descriptor, &snapshot, &vote)
            .await?;
        tracing::info!(
            parent: &self.span,
            shard_id = descriptor.shard,
            start = descriptor.start,
            end = descriptor.end,
            seq = birth.state.seq,
            leader = vote.leader_id.node_id,
            "split child seeded"
        );
        self.spawn_start(descriptor);
        Ok(())
    }

    /// Starts empty replicas of `children` that this node neither hosts nor
    /// once deleted (see [`crate::birth`]).
    pub async fn adopt_children(self: Arc<Self>, children: Vec<ShardDescriptor>) -> Result<()> {
        let _guard = self.birth_lock.lock().await;
        for descriptor in children {
            if self.storage.known_group(descriptor.shard)? {
                continue;
            }
            self.storage.record_group(&descriptor).await?;
            tracing::info!(parent: &self.span, shard_id = descriptor.shard, "split child adopted empty; its leader sends a snapshot");
            self.spawn_start(descriptor);
        }
        Ok(())
    }

    fn spawn_start(self: &Arc<Self>, descriptor: ShardDescriptor) {
        let node = self.clone();
        tokio::spawn(async move {
            let id = descriptor.shard;
            if let Err(e) = node.start_group(descriptor, true).await {
                tracing::error!(parent: &node.span, shard_id = id, error = %e, "split child did not start");
                node.faults.load_failed(id, e.to_string());
            }
        });
    }

    /// Takes the id allocated by the metadata group (idempotent).
    pub async fn assign_id(&self, id: u64) -> Result<()> {
        if id == 0 {
            return Err(Error::BadRequest("node id 0 is reserved".into()));
        }
        match self.id() {
            Some(current) if current == id => Ok(()),
            Some(current) => Err(Error::Conflict(format!(
                "this node already has id {current}"
            ))),
            None => {
                self.storage.set_node_id(id).await?;
                let _ = self.id.set(id);
                self.span.record("node_id", id);
                tracing::info!(parent: &self.span, "node id assigned");
                Ok(())
            }
        }
    }

    /// Starts a group's raft after a random delay within one heartbeat, so
    /// that groups started together do not tick in lockstep.
    /// `restore_leadership` only for a split's child just seeded here
    /// ([`NodeConfig::raft_config`]).
    async fn start_group(
        &self,
        descriptor: ShardDescriptor,
        restore_leadership: bool,
    ) -> Result<Arc<ShardGroup>> {
        let jitter = rand::thread_rng().gen_range(0..self.config.heartbeat_ms.max(1));
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let id = descriptor.shard;
        // In the node span, so that openraft's tasks for this group (spans
        // children of the current one) log the node id too.
        let context = self.context(restore_leadership)?;
        let open = ShardGroup::open(&context, descriptor);
        let group = Arc::new(tracing::Instrument::instrument(open, self.span.clone()).await?);
        crate::faults::watch_group(id, &group.raft, self.faults.clone());
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, group.clone());
        tracing::info!(parent: &self.span, shard_id = id, "group started");
        Ok(group)
    }

    /// The hosted group `id`.
    pub fn group(&self, id: GroupId) -> Result<Arc<ShardGroup>> {
        if let Some(reason) = self.faults.reason(id) {
            return Err(Error::Unavailable(format!(
                "group {id} is not served by this node: {reason}"
            )));
        }
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or(Error::UnknownGroup(id))
    }

    /// Every hosted group.
    pub fn groups(&self) -> Vec<Arc<ShardGroup>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Hosts a new group (idempotent for an identical descriptor) and
    /// optionally initializes its membership.
    pub async fn create_group(&self, req: CreateGroup) -> Result<GroupCreated> {
        req.descriptor.validate().map_err(Error::BadRequest)?;
        if req.initialize && req.members.is_empty() {
            return Err(Error::BadRequest(
                "initialize needs at least one member".into(),
            ));
        }
        self.context(false)?;
        let _guard = self.create_lock.lock().await;
        let id = req.descriptor.shard;
        let (group, created) = match self.group(id) {
            Ok(existing) => {
                let current = existing.shard.lock().state.descriptor();
                if current.start != req.descriptor.start || current.end != req.descriptor.end {
                    return Err(Error::Conflict(format!(
                        "group {id} exists here with range [{}, {})",
                        current.start, current.end
                    )));
                }
                (existing, false)
            }
            Err(_) => {
                self.storage.record_group(&req.descriptor).await?;
                (self.start_group(req.descriptor.clone(), false).await?, true)
            }
        };
        let initialized = if req.initialize {
            group.initialize(&req.members).await?
        } else {
            false
        };
        Ok(GroupCreated {
            created,
            initialized,
        })
    }

    /// Stops this node's replica of group `id` and deletes its data. Call
    /// it after the node was removed from the group's membership.
    pub async fn delete_group(&self, id: GroupId) -> Result<()> {
        let _guard = self.create_lock.lock().await;
        let running = self
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        // A group that failed to load is deleted like a running one: that is
        // how an operator clears a damaged replica before adding it back.
        let failed = self.faults.forget(id);
        match running {
            Some(group) => {
                if let Err(e) = group.raft.shutdown().await {
                    tracing::warn!(shard_id = id, error = %e, "raft shutdown failed while deleting the group");
                }
            }
            None if failed => {}
            None => return Err(Error::UnknownGroup(id)),
        }
        self.storage.drop_group(id).await?;
        tracing::info!(shard_id = id, "group deleted");
        Ok(())
    }

    /// Proposes a metadata command: locally when this node leads the
    /// metadata group, else at the leader over HTTP (signed as a node).
    pub async fn propose_meta(&self, command: MetaCommand) -> Result<WriteOutcome> {
        let meta = self.group(META_GROUP)?;
        let outcome = meta
            .propose(checkraft_proto::Command::Meta(command.clone()))
            .await?;
        let WriteOutcome::ForwardToLeader {
            leader_addr: Some(addr),
            ..
        } = outcome
        else {
            return Ok(outcome);
        };
        let response = self
            .peers
            .client(&addr)
            .post(format!("http://{addr}/admin/meta"))
            .json(&command)
            .send_signed(self.peers.signer())
            .await
            .map_err(|e| Error::Unavailable(format!("meta leader {addr}: {e}")))?;
        response
            .json()
            .await
            .map_err(|e| Error::Unavailable(format!("meta leader {addr}: {e}")))
    }

    /// The node's summary for `/status`.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node_id: self.id().unwrap_or(0),
            addr: self.config.advertise_addr(),
            groups: self.groups().iter().map(|g| (g.id, g.summary())).collect(),
            failed: self.failed_groups(),
        }
    }

    /// Stops every group's raft.
    ///
    /// Every step is bounded (3 s): a group whose storage
    /// failed, or a flush stuck on a full disk, must not keep the process
    /// from stopping.
    pub async fn shutdown(&self) {
        for group in self.groups() {
            match tokio::time::timeout(SHUTDOWN_STEP, group.raft.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(shard_id = group.id, error = %e, "raft shutdown failed")
                }
                Err(_) => tracing::warn!(shard_id = group.id, "raft shutdown timed out"),
            }
        }
        match tokio::time::timeout(SHUTDOWN_STEP, self.storage.flusher().flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "final flush failed"),
            Err(_) => tracing::warn!("final flush timed out"),
        }
    }
}

/// Every `report_ms`, tells the metadata group which shards this node leads
/// where its map copy says otherwise, keeping leader hints fresh. Stops
/// when the node is dropped.
async fn report_leadership(node: std::sync::Weak<Node>) {
    let interval = match node.upgrade() {
        Some(n) => Duration::from_millis(n.config.report_ms.max(50)),
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(node) = node.upgrade() else { return };
        let (Some(me), Ok(meta)) = (node.id(), node.group(META_GROUP)) else {
            continue;
        };
        let Ok(map) = meta.map() else { continue };
        let hints: Vec<(u64, u64)> = node
            .groups()
            .iter()
            .filter(|g| g.id != META_GROUP && g.is_leader())
            .filter(|g| {
                map.shards
                    .get(&g.id)
                    .is_some_and(|s| s.leader != Some(me) && s.replicas.contains(&me))
            })
            .map(|g| (g.id, me))
            .collect();
        if hints.is_empty() {
            continue;
        }
        match node.propose_meta(MetaCommand::LeaderHints { hints }).await {
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "leader report not delivered; retrying next round")
            }
        }
    }
}
