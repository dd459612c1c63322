//! The benchmark's own local cluster: three `checkraft-node`s (fsync on,
//! as always, with `--node-env` settings) in a temporary directory,
//! initialized with [`init_cluster`], and N `checkraft-gateway`s with the
//! scenario's settings. Reuses [`Supervisor`] for spawning, health checks and
//! kill -9; everything is stopped and the directory removed by
//! [`LocalCluster::stop`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use checkraft_proto::ShardMap;

use super::args::Settings;
use crate::cli::InitArgs;
use crate::client::ClusterClient;
use crate::commands::init_cluster;
use crate::credentials::Credentials;
use crate::supervisor::{find_binary, Supervisor};

/// Nodes in a benchmark cluster.
const NODES: u64 = 3;

/// A running benchmark cluster.
pub struct LocalCluster {
    dir: tempfile::TempDir,
    sup: Supervisor,
    node_binary: PathBuf,
    node_env: Vec<(String, String)>,
    credentials: Credentials,
    /// `(id, addr)` of every node.
    pub nodes: Vec<(u64, String)>,
    /// Gateway addresses.
    pub gateways: Vec<String>,
    /// The shard map after init.
    pub map: ShardMap,
    /// A client of the nodes, with the admin token.
    pub client: ClusterClient,
}

/// A free port on 127.0.0.1 (free when asked; a race is unlikely).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl LocalCluster {
    /// Starts nodes, initializes the grid, starts the gateways with
    /// `settings.gateway_env`, and waits until all answer `/health`.
    pub async fn start(settings: &Settings) -> Result<Self> {
        let node_binary = find_binary("checkraft-node")?;
        let gateway_binary = find_binary("checkraft-gateway")?;
        let dir = tempfile::Builder::new()
            .prefix("checkraft-bench-")
            .tempdir()
            .context("creating the benchmark's temporary directory")?;
        let credentials = Credentials::random();
        let mut nodes = Vec::new();
        for id in 1..=NODES {
            nodes.push((id, format!("127.0.0.1:{}", free_port()?)));
        }
        let mut cluster = Self {
            sup: Supervisor::default(),
            node_binary,
            node_env: settings.node_env.clone(),
            credentials,
            client: ClusterClient::new(&nodes[0].1, None),
            nodes,
            gateways: Vec::new(),
            map: ShardMap::default(),
            dir,
        };
        cluster.client = ClusterClient::new(
            &cluster.nodes[0].1,
            Some(cluster.credentials.admin_token.clone()),
        );
        if let Err(e) = cluster
            .boot(&gateway_binary, settings)
            .await
            .context("starting the benchmark cluster")
        {
            cluster.stop().await;
            return Err(e);
        }
        Ok(cluster)
    }

    async fn boot(&mut self, gateway_binary: &Path, settings: &Settings) -> Result<()> {
        for id in 1..=NODES {
            self.spawn_node(id)?;
        }
        self.sup.wait_healthy().await?;
        let init = InitArgs {
            nodes: self
                .nodes
                .iter()
                .map(|(id, addr)| format!("{id}={addr}"))
                .collect(),
            boxes: settings.boxes,
            shards: settings.shards,
            replicas: NODES as usize,
            chunk_size: settings.chunk_size,
        };
        init_cluster(&self.client, &init).await?;
        self.map = self.client.map().await?;
        let seeds: Vec<&str> = self.nodes.iter().map(|(_, a)| a.as_str()).collect();
        let mut env: Vec<(&str, &str)> = settings
            .gateway_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("RUST_LOG", "warn"));
        for id in 1..=u64::from(settings.gateways) {
            let addr = format!("127.0.0.1:{}", free_port()?);
            self.sup.spawn_gateway(
                gateway_binary,
                id,
                &addr,
                self.dir.path(),
                &seeds,
                &self.credentials,
                &env,
            )?;
            self.gateways.push(addr);
        }
        self.sup.wait_healthy().await
    }

    fn spawn_node(&mut self, id: u64) -> Result<()> {
        let addr = &self.nodes[(id - 1) as usize].1;
        let mut env: Vec<(&str, &str)> = self
            .node_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("RUST_LOG", "warn"));
        self.sup.spawn_node(
            &self.node_binary,
            id,
            addr,
            self.dir.path(),
            &self.credentials,
            &env,
        )
    }

    /// Node `id`'s data directory.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// The temporary directory (logs: `node-<id>.log`, `gateway-<id>.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process ids of the gateways.
    pub fn gateway_pids(&self) -> Vec<u32> {
        self.pids("gateway")
    }

    /// Process ids of the nodes (they change when one is restarted).
    pub fn node_pids(&self) -> Vec<u32> {
        self.pids("node")
    }

    fn pids(&self, role: &str) -> Vec<u32> {
        self.sup
            .children
            .iter()
            .filter(|c| c.role == role)
            .filter_map(|c| c.child.id())
            .collect()
    }

    /// Each node's view of `shard` (`/admin/groups/{shard}/metrics`,
    /// openraft's metrics): `(node, is leader, leader it knows, applied
    /// index)`; nodes that don't answer are left out.
    async fn shard_views(&self, shard: u64) -> Vec<(u64, bool, Option<u64>, u64)> {
        let path = format!("/admin/groups/{shard}/metrics");
        let mut views = Vec::new();
        for (id, addr) in &self.nodes {
            let Ok(v) = self.client.get_json::<serde_json::Value>(addr, &path).await else {
                continue;
            };
            let raft = &v["raft"];
            views.push((
                *id,
                raft["state"] == "Leader",
                raft["current_leader"].as_u64(),
                raft["last_applied"]["index"].as_u64().unwrap_or(0),
            ));
        }
        views
    }

    /// The node that leads `shard`: in state Leader by its own raft
    /// metrics; waits up to 30 s for one.
    pub async fn shard_leader(&self, shard: u64) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let views = self.shard_views(shard).await;
            if let Some((id, ..)) = views.iter().find(|v| v.1) {
                return Ok(*id);
            }
            if Instant::now() > deadline {
                bail!("no node leads shard {shard} after 30 s: {views:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to 60 s) until one node leads `shard`, every node knows
    /// it as the leader, and their applied indexes are within `lag`.
    pub async fn wait_settled(&self, shard: u64, lag: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let views = self.shard_views(shard).await;
            let leaders: Vec<u64> = views.iter().filter(|v| v.1).map(|v| v.0).collect();
            let applied = views.iter().map(|v| v.3);
            let spread = applied.clone().max().unwrap_or(0) - applied.min().unwrap_or(0);
            let settled = views.len() == self.nodes.len()
                && leaders.len() == 1
                && views.iter().all(|v| v.2 == Some(leaders[0]))
                && spread <= lag;
            if settled {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("shard {shard} did not settle within 60 s: {views:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// kill -9 node `id`.
    pub async fn kill_node(&mut self, id: u64) -> Result<()> {
        self.sup.kill_hard("node", id).await.map(drop)
    }

    /// Starts node `id` again on its data and waits for `/health`.
    pub async fn restart_node(&mut self, id: u64) -> Result<()> {
        self.spawn_node(id)?;
        self.sup.wait_healthy().await
    }

    /// Starts node `id` again on its data, without waiting.
    pub fn start_node(&mut self, id: u64) -> Result<()> {
        self.spawn_node(id)
    }

    /// Waits (up to 60 s each) until every group (the shards and the
    /// metadata group) has settled: one leader all replicas follow,
    /// applied indexes within `lag`.
    pub async fn wait_all_settled(&self, lag: u64) -> Result<()> {
        let groups =
            std::iter::once(checkraft_proto::META_GROUP).chain(self.map.shards.keys().copied());
        for group in groups {
            self.wait_settled(group, lag).await?;
        }
        Ok(())
    }

    /// Fails if a node or gateway has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for c in &mut self.sup.children {
            if let Some(status) = c.child.try_wait()? {
                return Err(anyhow!(
                    "{} {} exited ({status}); its log {} ends with:\n{}",
                    c.role,
                    c.id,
                    c.log.display(),
                    crate::supervisor::log_tail(&c.log, 20)
                ));
            }
        }
        Ok(())
    }

    /// Stops every process and removes the directory (kept, and named on
    /// stderr, when `CHECKRAFT_BENCH_KEEP` is set).
    pub async fn stop(mut self) {
        self.sup.stop().await;
        if std::env::var_os("CHECKRAFT_BENCH_KEEP").is_some() {
            eprintln!("keeping {}", self.dir.keep().display());
        } else {
            let _ = self.dir.close();
        }
    }
}
