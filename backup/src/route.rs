//! Where a shard's calls go. [`Routes::probe`] asks every node of the map
//! for its `/status` once; [`Routes::candidates`] then orders a shard's
//! nodes best first: the leader its reachable replicas report, the map's
//! leader hint, the other replicas, with nodes that answered the probe
//! ahead of those that did not (which are still tried, last). A dead
//! leader hint would otherwise cost the client's whole retry budget.

use std::collections::BTreeMap;

use checkraft_proto::{NodeId, NodeState, NodeStatus, ShardMap, ShardRecord};

use crate::error::{Error, Result};
use crate::nodes::Nodes;

/// What the reachable nodes said about themselves.
#[derive(Debug, Default)]
pub struct Routes {
    statuses: BTreeMap<NodeId, NodeStatus>,
}

impl Routes {
    /// Asks every node of `map` (but removed ones) for its status, at once.
    pub async fn probe(client: &impl Nodes, map: &ShardMap) -> Self {
        let nodes = map.nodes.values().filter(|n| n.state != NodeState::Removed);
        let calls = nodes.map(|n| async move { (n.id, client.status(&n.addr).await) });
        let mut statuses = BTreeMap::new();
        for (id, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok(status) => {
                    statuses.insert(id, status);
                }
                Err(error) => {
                    tracing::warn!(node = id, %error, "node unreachable; trying it last");
                }
            }
        }
        Self { statuses }
    }

    /// The addresses to try for `record`'s shard, best first.
    pub fn candidates(&self, map: &ShardMap, record: &ShardRecord) -> Result<Vec<String>> {
        let id = record.descriptor.shard;
        let reported = self
            .statuses
            .values()
            .filter_map(|s| s.groups.get(&id)?.leader);
        let mut nodes: Vec<NodeId> = Vec::new();
        for node in reported
            .chain(record.leader)
            .chain(record.replicas.iter().copied())
        {
            if !nodes.contains(&node) && map.addr(node).is_some() {
                nodes.push(node);
            }
        }
        nodes.sort_by_key(|n| !self.statuses.contains_key(n));
        if nodes.is_empty() {
            return Err(Error::Cluster(format!(
                "shard {id}: the map knows no address for any of its replicas"
            )));
        }
        Ok(nodes
            .iter()
            .filter_map(|n| map.addr(*n))
            .map(String::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use checkraft_proto::{GroupSummary, NodeRecord, ShardDescriptor};

    use super::*;

    fn setup() -> (ShardMap, ShardRecord) {
        let mut map = ShardMap::default();
        for (id, addr) in [(1, "a:1"), (2, "b:2"), (3, "c:3")] {
            map.nodes.insert(
                id,
                NodeRecord {
                    id,
                    addr: addr.into(),
                    state: NodeState::Up,
                },
            );
        }
        let descriptor = ShardDescriptor {
            shard: 4,
            start: 0,
            end: 9,
            epoch: 1,
        };
        (
            map,
            ShardRecord {
                descriptor,
                replicas: vec![1, 2, 3, 8],
                leader: Some(2),
            },
        )
    }

    fn status(node: NodeId, leader: Option<NodeId>) -> NodeStatus {
        let descriptor = ShardDescriptor {
            shard: 4,
            start: 0,
            end: 9,
            epoch: 1,
        };
        let summary = GroupSummary {
            descriptor,
            seq: 0,
            term: 1,
            leader,
            applied_index: 0,
        };
        NodeStatus {
            node_id: node,
            addr: String::new(),
            groups: BTreeMap::from([(4, summary)]),
            failed: Default::default(),
        }
    }

    #[test]
    fn without_probes_the_hint_comes_first_then_replicas_once_each() {
        let (map, record) = setup();
        assert_eq!(
            Routes::default().candidates(&map, &record).unwrap(),
            ["b:2", "a:1", "c:3"]
        );
        let orphan = ShardRecord {
            replicas: vec![8],
            leader: None,
            ..record
        };
        assert!(Routes::default().candidates(&map, &orphan).is_err());
    }

    #[test]
    fn the_reported_leader_and_reachable_nodes_come_first() {
        let (map, record) = setup();
        // Node 2 (the hint) is down; node 1 and 3 say node 3 leads.
        let statuses = BTreeMap::from([(1, status(1, Some(3))), (3, status(3, Some(3)))]);
        let routes = Routes { statuses };
        assert_eq!(
            routes.candidates(&map, &record).unwrap(),
            ["c:3", "a:1", "b:2"]
        );
    }
}
