//! The node: its storage, its hosted groups, and starting them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use checkraft_proto::{CreateGroup, GroupCreated, GroupId, NodeStatus};
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
    ctx: GroupContext,
    groups: RwLock<HashMap<GroupId, Arc<ShardGroup>>>,
    /// Serializes group creation so two concurrent creates cannot race.
    create_lock: tokio::sync::Mutex<()>,
}

impl Node {
    /// Opens storage and every group recorded in it.
    pub async fn open(config: NodeConfig) -> Result<Arc<Self>> {
        let storage = Storage::open(&config.data_dir, config.cache_mb)?;
        let ctx = GroupContext {
            node_id: config.id,
            storage,
            peers: Arc::new(Peers::default()),
            raft_config: Arc::new(config.raft_config()?),
            retained_changes: config.retained_changes,
            write_timeout: Duration::from_millis(config.write_timeout_ms),
        };
        let node = Arc::new(Self {
            config,
            ctx,
            groups: RwLock::new(HashMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
        });
        let recorded = node.ctx.storage.recorded_groups()?;
        tracing::info!(groups = recorded.len(), "reopening recorded groups");
        let opens = recorded.into_iter().map(|d| {
            let node = node.clone();
            async move { node.start_group(d).await }
        });
        for result in futures::future::join_all(opens).await {
            result?;
        }
        Ok(node)
    }

    /// Starts a group's raft after a random delay within one heartbeat, so
    /// that groups started together do not tick in lockstep.
    async fn start_group(
        &self,
        descriptor: checkraft_proto::ShardDescriptor,
    ) -> Result<Arc<ShardGroup>> {
        let jitter = rand::thread_rng().gen_range(0..self.config.heartbeat_ms.max(1));
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let id = descriptor.shard;
        let group = Arc::new(ShardGroup::open(&self.ctx, descriptor).await?);
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
        let _guard = self.create_lock.lock().await;
        let id = req.descriptor.shard;
        let (group, created) = match self.group(id) {
            Ok(existing) => {
                let current = existing.shard.lock().state.descriptor.clone();
                if current.start != req.descriptor.start || current.end != req.descriptor.end {
                    return Err(Error::Conflict(format!(
                        "group {id} exists here with range [{}, {})",
                        current.start, current.end
                    )));
                }
                (existing, false)
            }
            Err(_) => {
                self.ctx.storage.record_group(&req.descriptor).await?;
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

    /// The node's summary for `/status`.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node_id: self.config.id,
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
        if let Err(e) = self.ctx.storage.flusher().flush().await {
            tracing::warn!(error = %e, "final flush failed");
        }
    }
}
