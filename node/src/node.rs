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

use checkraft_proto::{
    CreateGroup, GroupCreated, GroupId, MetaCommand, NodeStatus, ShardDescriptor, WriteOutcome,
    META_GROUP,
};
use rand::Rng;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::group::{GroupContext, ShardGroup};
use crate::network::Peers;
use crate::storage::Storage;

/// A running node's shared state, handed to every HTTP handler.
pub struct Node {
    /// The configuration it runs with.
    pub config: NodeConfig,
    id: OnceLock<u64>,
    storage: Storage,
    peers: Arc<Peers>,
    raft_config: Arc<openraft::Config>,
    groups: RwLock<HashMap<GroupId, Arc<ShardGroup>>>,
    /// Serializes group creation and deletion.
    create_lock: tokio::sync::Mutex<()>,
}

impl Node {
    /// Opens storage, settles the node id, and reopens every recorded group.
    pub async fn open(config: NodeConfig) -> Result<Arc<Self>> {
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
        let node = Arc::new(Self {
            raft_config: Arc::new(config.raft_config()?),
            config,
            id: OnceLock::new(),
            storage,
            peers: Arc::new(Peers::default()),
            groups: RwLock::new(HashMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
        });
        match id {
            Some(id) => {
                let _ = node.id.set(id);
                node.reopen_groups().await?;
            }
            None => tracing::warn!("no node id yet: waiting for `raftctl node add` to assign one"),
        }
        tokio::spawn(report_leadership(Arc::downgrade(&node)));
        Ok(node)
    }

    async fn reopen_groups(self: &Arc<Self>) -> Result<()> {
        let recorded = self.storage.recorded_groups()?;
        tracing::info!(groups = recorded.len(), "reopening recorded groups");
        let opens = recorded.into_iter().map(|d| {
            let node = self.clone();
            async move { node.start_group(d).await }
        });
        for result in futures::future::join_all(opens).await {
            result?;
        }
        Ok(())
    }

    /// The process's storage (the metrics scrape reads flush statistics).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// This node's id, once it has one.
    pub fn id(&self) -> Option<u64> {
        self.id.get().copied()
    }

    fn context(&self) -> Result<GroupContext> {
        let node_id = self.id().ok_or_else(|| {
            Error::Unavailable(
                "this node has no id yet; register it with `raftctl node add`".into(),
            )
        })?;
        Ok(GroupContext {
            node_id,
            storage: self.storage.clone(),
            peers: self.peers.clone(),
            raft_config: self.raft_config.clone(),
            retained_changes: self.config.retained_changes,
            write_timeout: Duration::from_millis(self.config.write_timeout_ms),
        })
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
                tracing::info!(node_id = id, "node id assigned");
                Ok(())
            }
        }
    }

    /// Starts a group's raft after a random delay within one heartbeat, so
    /// that groups started together do not tick in lockstep.
    async fn start_group(&self, descriptor: ShardDescriptor) -> Result<Arc<ShardGroup>> {
        let jitter = rand::thread_rng().gen_range(0..self.config.heartbeat_ms.max(1));
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let id = descriptor.shard;
        let group = Arc::new(ShardGroup::open(&self.context()?, descriptor).await?);
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, group.clone());
        tracing::info!(shard_id = id, "group started");
        Ok(group)
    }

    /// The hosted group `id`.
    pub fn group(&self, id: GroupId) -> Result<Arc<ShardGroup>> {
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
        self.context()?;
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
                (self.start_group(req.descriptor.clone()).await?, true)
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
        let group = self
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .ok_or(Error::UnknownGroup(id))?;
        if let Err(e) = group.raft.shutdown().await {
            tracing::warn!(shard_id = id, error = %e, "raft shutdown failed while deleting the group");
        }
        self.storage.drop_group(id).await?;
        tracing::info!(shard_id = id, "group deleted");
        Ok(())
    }

    /// Proposes a metadata command: locally when this node leads the
    /// metadata group, else at the leader over HTTP (with the admin token).
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
        let mut request = self
            .peers
            .client(&addr)
            .post(format!("http://{addr}/admin/meta"))
            .json(&command);
        if let Some(token) = &self.config.admin_token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
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
        }
    }

    /// Stops every group's raft.
    pub async fn shutdown(&self) {
        for group in self.groups() {
            if let Err(e) = group.raft.shutdown().await {
                tracing::warn!(shard_id = group.id, error = %e, "raft shutdown failed");
            }
        }
        if let Err(e) = self.storage.flusher().flush().await {
            tracing::warn!(error = %e, "final flush failed");
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
