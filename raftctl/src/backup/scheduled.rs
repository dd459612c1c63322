//! The control plane's scheduled backups, seen from `raftctl`: `backup
//! list` asks every node of the map for `GET /admin/backups` and merges
//! the answers by name (with `backup_dir` on shared storage, or under
//! `raftctl up`, several nodes list the same file); `restore --from NAME`
//! downloads `GET /admin/backups/NAME` from a node that lists it.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Context, Result};
use checkraft_backup::dir::{self, utc};
use checkraft_backup::{format, Backup};
use checkraft_proto::{BackupEntry, BackupList, NodeId, NodeState, ShardMap};
use serde::Serialize;

use crate::client::ClusterClient;

/// What `raftctl backup list` prints.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// Every scheduled backup any node holds, oldest first.
    pub backups: Vec<Listed>,
    /// What each answering node said about its schedule.
    pub nodes: Vec<NodeSchedule>,
    /// Nodes that did not answer, with why.
    pub unreachable: Vec<String>,
}

/// One backup, with the nodes that hold it.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// The backup's entry, as its first holder listed it.
    #[serde(flatten)]
    pub entry: BackupEntry,
    /// The nodes whose `backup_dir` holds it.
    pub nodes: Vec<NodeId>,
}

/// One node's schedule.
#[derive(Debug, Serialize)]
pub struct NodeSchedule {
    /// The node.
    pub node_id: NodeId,
    /// Its `backup_dir` (`None`: off).
    pub dir: Option<String>,
    /// Its last attempt's failure, if it failed.
    pub last_failure: Option<String>,
}

/// Nodes of the map worth asking, with their addresses.
fn live_nodes(map: &ShardMap) -> Vec<(NodeId, String)> {
    map.nodes
        .values()
        .filter(|n| n.state != NodeState::Removed)
        .map(|n| (n.id, n.addr.clone()))
        .collect()
}

/// Every node's list, merged.
pub async fn list(client: &ClusterClient) -> Result<Listing> {
    let map = client.map().await.context("reading the shard map")?;
    let calls = live_nodes(&map).into_iter().map(|(id, addr)| async move {
        let answer = client.get_json::<BackupList>(&addr, "/admin/backups").await;
        (id, answer)
    });
    let mut merged: BTreeMap<String, Listed> = BTreeMap::new();
    let mut nodes = Vec::new();
    let mut unreachable = Vec::new();
    for (id, answer) in futures::future::join_all(calls).await {
        let list = match answer {
            Ok(list) => list,
            Err(e) => {
                unreachable.push(format!("node {id}: {e:#}"));
                continue;
            }
        };
        for entry in list.backups {
            merged
                .entry(entry.name.clone())
                .or_insert_with(|| Listed {
                    entry,
                    nodes: Vec::new(),
                })
                .nodes
                .push(id);
        }
        nodes.push(NodeSchedule {
            node_id: id,
            dir: list.dir,
            last_failure: list.last_failure,
        });
    }
    Ok(Listing {
        backups: merged.into_values().collect(),
        nodes,
        unreachable,
    })
}

/// Downloads and checks the scheduled backup `name` from a node that
/// lists it (any node, when none answers the listing).
pub async fn fetch(client: &ClusterClient, name: &str) -> Result<Backup> {
    dir::parse_name(name)?;
    let map = client.map().await.context("reading the shard map")?;
    let listing = list(client).await?;
    let holders: Vec<NodeId> = listing
        .backups
        .iter()
        .find(|b| b.entry.name == name)
        .map(|b| b.nodes.clone())
        .unwrap_or_default();
    if holders.is_empty() {
        bail!(
            "no node lists a backup named {name} (see `raftctl backup list`); \
             nothing was changed"
        );
    }
    let mut failures = Vec::new();
    for id in holders {
        let Some(addr) = map.addr(id) else { continue };
        let path = format!("/admin/backups/{name}");
        match client.get_bytes(addr, &path).await {
            Ok(bytes) => {
                return format::read(bytes.as_ref())
                    .with_context(|| format!("{name} from node {id} is not a valid backup"))
            }
            Err(e) => failures.push(format!("node {id}: {e:#}")),
        }
    }
    bail!(
        "could not download {name} ({}); nothing was changed",
        failures.join("; ")
    )
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.lines(&mut text)?;
        f.write_str(text.trim_end())
    }
}

impl Listing {
    /// The text form, one line each.
    fn lines(&self, f: &mut impl fmt::Write) -> fmt::Result {
        if self.backups.is_empty() {
            writeln!(f, "no scheduled backups")?;
        } else {
            writeln!(
                f,
                "{:<27} {:<24} {:>12} {:>7} {:>12}  NODES",
                "NAME", "STARTED (UTC)", "BYTES", "SHARDS", "GRID BOXES"
            )?;
        }
        let show = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        for b in &self.backups {
            let e = &b.entry;
            let nodes: Vec<String> = b.nodes.iter().map(|n| n.to_string()).collect();
            writeln!(
                f,
                "{:<27} {:<24} {:>12} {:>7} {:>12}  {}",
                e.name,
                utc(e.created_ms),
                e.bytes,
                show(e.shards),
                show(e.grid_boxes),
                nodes.join(",")
            )?;
        }
        for n in &self.nodes {
            match (&n.dir, &n.last_failure) {
                (None, _) => writeln!(f, "node {}: scheduled backups off", n.node_id)?,
                (Some(d), None) => writeln!(f, "node {}: backup_dir {d}", n.node_id)?,
                (Some(d), Some(e)) => writeln!(
                    f,
                    "node {}: backup_dir {d}; its last backup failed: {e}",
                    n.node_id
                )?,
            }
        }
        for u in &self.unreachable {
            writeln!(f, "unreachable: {u}")?;
        }
        Ok(())
    }
}
