//! The pure state of the metadata group: a [`ShardMap`] and the rules for
//! changing it.
//!
//! Like [`crate::state::ShardState`], applying is deterministic and does no
//! I/O: a refused command is a [`Rejection::MetaRefused`] value, and every
//! command that changes the map bumps `version` by exactly one.

use checkraft_proto::{
    codec, CommandResponse, Grid, MetaCommand, MetaOutcome, NodeRecord, NodeState, Operation,
    OperationKind, Rejection, ShardId, ShardMap, ShardRecord,
};

use crate::error::{Error, Result};

/// The metadata group's replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaState {
    /// The map.
    pub map: ShardMap,
}

fn refuse(detail: impl Into<String>) -> CommandResponse {
    CommandResponse::Rejected {
        rejection: Rejection::MetaRefused {
            detail: detail.into(),
        },
    }
}

impl MetaState {
    /// Applies one metadata command.
    pub fn apply(&mut self, command: &MetaCommand) -> CommandResponse {
        let map = &mut self.map;
        let mut allocated = None;
        match command {
            MetaCommand::Init {
                grid,
                nodes,
                shards,
            } => {
                if map.initialized() {
                    return refuse(format!(
                        "the cluster is already initialized (map version {})",
                        map.version
                    ));
                }
                if grid.boxes == 0 || grid.chunk_size == 0 || shards.is_empty() || nodes.is_empty()
                {
                    return refuse("init needs a non-empty grid, nodes and shards");
                }
                if let Err(detail) = check_layout(grid, nodes, shards) {
                    return refuse(detail);
                }
                map.grid = Some(*grid);
                map.nodes = nodes.iter().map(|n| (n.id, n.clone())).collect();
                map.next_node_id = nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
                map.shards = shards
                    .iter()
                    .map(|s| (s.descriptor.shard, s.clone()))
                    .collect();
                map.next_shard_id = map.shards.keys().max().copied().unwrap_or(0) + 1;
            }
            MetaCommand::AddNode { addr } => {
                if !map.initialized() {
                    return refuse("the cluster is not initialized");
                }
                if map
                    .nodes
                    .values()
                    .any(|n| &n.addr == addr && n.state != NodeState::Removed)
                {
                    return refuse(format!("a node at {addr} is already registered"));
                }
                let id = map.next_node_id.max(1);
                map.next_node_id = id + 1;
                map.nodes.insert(
                    id,
                    checkraft_proto::NodeRecord {
                        id,
                        addr: addr.clone(),
                        state: NodeState::Up,
                    },
                );
                allocated = Some(id);
            }
            MetaCommand::SetNodeState { node, state } => match map.nodes.get_mut(node) {
                None => return refuse(format!("no node {node}")),
                Some(n) if n.state == NodeState::Removed => {
                    return refuse(format!("node {node} was removed"))
                }
                Some(n) if n.state == *state => return self.unchanged(),
                Some(n) => n.state = *state,
            },
            MetaCommand::SetReplicas { shard, replicas } => {
                if replicas.is_empty() {
                    return refuse("a shard needs at least one replica");
                }
                if let Some(unknown) = replicas.iter().find(|r| !map.nodes.contains_key(r)) {
                    return refuse(format!("no node {unknown}"));
                }
                match map.shards.get_mut(shard) {
                    None => return refuse(format!("no shard {shard}")),
                    Some(s) if &s.replicas == replicas => return self.unchanged(),
                    Some(s) => {
                        s.replicas = replicas.clone();
                        if s.leader.is_some_and(|l| !replicas.contains(&l)) {
                            s.leader = None;
                        }
                    }
                }
            }
            MetaCommand::LeaderHints { hints } => {
                let mut changed = false;
                for (shard, leader) in hints {
                    if let Some(s) = map.shards.get_mut(shard) {
                        if s.leader != Some(*leader) && s.replicas.contains(leader) {
                            s.leader = Some(*leader);
                            changed = true;
                        }
                    }
                }
                if !changed {
                    return self.unchanged();
                }
            }
            MetaCommand::BeginOperation { kind } => {
                if let Some(op) = &map.operation {
                    return refuse(format!(
                        "operation {} ({:?}) is in progress",
                        op.id, op.kind
                    ));
                }
                let id = map.version + 1;
                let kind = match check_operation(map, kind) {
                    Ok(kind) => kind,
                    Err(detail) => return refuse(detail),
                };
                if let OperationKind::Split { child, .. } = kind {
                    map.next_shard_id = child + 1;
                }
                map.operation = Some(Operation {
                    id,
                    kind,
                    step: "started".into(),
                });
                allocated = Some(id);
            }
            MetaCommand::FinishOperation { id, ok, outcome } => match map.operation.take() {
                Some(op) if op.id == *id => {
                    map.finished.push(checkraft_proto::FinishedOperation {
                        operation: op,
                        ok: *ok,
                        outcome: outcome.clone(),
                    });
                    let excess = map
                        .finished
                        .len()
                        .saturating_sub(checkraft_proto::meta::FINISHED_KEPT);
                    map.finished.drain(..excess);
                }
                other => {
                    map.operation = other;
                    return refuse(format!("operation {id} is not in progress"));
                }
            },
            MetaCommand::RecordSplit { parent, child } => {
                if let Err(detail) = record_split(map, parent, child) {
                    return refuse(detail);
                }
            }
            MetaCommand::RecordMerge { left, right } => {
                if let Err(detail) = record_merge(map, left, *right) {
                    return refuse(detail);
                }
            }
            MetaCommand::OperationStep { id, step } => match &mut map.operation {
                Some(op) if op.id == *id => op.step = step.clone(),
                _ => return refuse(format!("operation {id} is not in progress")),
            },
            MetaCommand::EndOperation { id } => match &map.operation {
                Some(op) if op.id == *id => map.operation = None,
                _ => return refuse(format!("operation {id} is not in progress")),
            },
        }
        map.version += 1;
        CommandResponse::Meta(MetaOutcome {
            version: map.version,
            allocated,
        })
    }

    fn unchanged(&self) -> CommandResponse {
        CommandResponse::Meta(MetaOutcome {
            version: self.map.version,
            allocated: None,
        })
    }

    /// Snapshot data of the metadata group (bincode of the map).
    pub fn to_snapshot_bytes(&self) -> Vec<u8> {
        codec::encode(&self.map)
    }

    /// Decodes [`Self::to_snapshot_bytes`], and maps written before shard
    /// ids were allocated by splits (without `next_shard_id` and `retired`).
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<Self> {
        let map = match codec::decode::<ShardMap>(bytes) {
            Ok(map) => map,
            Err(e) => match codec::decode::<MapBeforeSplits>(bytes) {
                Ok(old) => old.upgrade(),
                Err(_) => return Err(Error::Corrupt(format!("metadata snapshot: {e}"))),
            },
        };
        Ok(Self { map })
    }
}

/// A [`ShardMap`] as snapshots stored it before splits existed.
#[derive(serde::Deserialize)]
struct MapBeforeSplits {
    version: u64,
    grid: Option<Grid>,
    nodes: std::collections::BTreeMap<checkraft_proto::NodeId, NodeRecord>,
    next_node_id: checkraft_proto::NodeId,
    shards: std::collections::BTreeMap<ShardId, ShardRecord>,
    operation: Option<Operation>,
}

impl MapBeforeSplits {
    fn upgrade(self) -> ShardMap {
        let next_shard_id = self.shards.keys().max().copied().unwrap_or(0) + 1;
        ShardMap {
            version: self.version,
            grid: self.grid,
            nodes: self.nodes,
            next_node_id: self.next_node_id,
            shards: self.shards,
            operation: self.operation,
            next_shard_id,
            retired: Default::default(),
            finished: Vec::new(),
        }
    }
}

/// Checks a new operation against the map; a split gets its child id.
fn check_operation(map: &ShardMap, kind: &OperationKind) -> Result<OperationKind, String> {
    let grid = map.grid.ok_or("the cluster is not initialized")?;
    match kind {
        OperationKind::Split { shard, at, .. } => {
            let d = &map
                .shards
                .get(shard)
                .ok_or(format!("no shard {shard}"))?
                .descriptor;
            check_split_point(d, *at, grid.chunk_size)?;
            // Ids of maps from before splits start after the largest.
            let floor = map.shards.keys().max().copied().unwrap_or(0) + 1;
            let child = map.next_shard_id.max(floor);
            Ok(OperationKind::Split {
                shard: *shard,
                at: *at,
                child,
            })
        }
        OperationKind::Merge { left, right, .. } => {
            let l = map.shards.get(left).ok_or(format!("no shard {left}"))?;
            let r = map.shards.get(right).ok_or(format!("no shard {right}"))?;
            if l.descriptor.end != r.descriptor.start {
                return Err(format!(
                    "shards {left} [{}, {}) and {right} [{}, {}) are not adjacent (the right one \
                     must start where the left one ends)",
                    l.descriptor.start, l.descriptor.end, r.descriptor.start, r.descriptor.end
                ));
            }
            Ok(OperationKind::Merge {
                left: *left,
                right: *right,
                right_replicas: r.replicas.clone(),
            })
        }
        OperationKind::RemoveNode { node } => {
            let record = map
                .nodes
                .get(node)
                .ok_or(format!("no node {node} is registered"))?;
            if record.state == NodeState::Removed {
                return Err(format!("node {node} is already removed"));
            }
            let others: Vec<u64> = map
                .nodes
                .values()
                .filter(|n| n.id != *node && n.state == NodeState::Up)
                .map(|n| n.id)
                .collect();
            let stuck: Vec<u64> = map
                .shards
                .values()
                .filter(|s| {
                    s.replicas.contains(node) && others.iter().all(|o| s.replicas.contains(o))
                })
                .map(|s| s.descriptor.shard)
                .collect();
            if !stuck.is_empty() {
                return Err(format!(
                    "cannot remove node {node}: no other Up node is free to take the replicas \
                     of shards {stuck:?} (each already holds them; {} other Up node(s)); add a \
                     node first (`raftctl node add`)",
                    others.len()
                ));
            }
            if others.is_empty() {
                return Err(format!("cannot remove node {node}: it is the last Up node"));
            }
            Ok(kind.clone())
        }
        OperationKind::RepairNode { node } => match map.nodes.get(node).map(|n| n.state) {
            Some(NodeState::Down) => Ok(kind.clone()),
            Some(state) => Err(format!("node {node} is {state:?}, not Down")),
            None => Err(format!("no node {node} is registered")),
        },
        OperationKind::MoveReplica { shard, from, to } => {
            let s = map.shards.get(shard).ok_or(format!("no shard {shard}"))?;
            if !s.replicas.contains(from) {
                return Err(format!("shard {shard} has no replica on node {from}"));
            }
            if s.replicas.contains(to) {
                return Err(format!("shard {shard} already has a replica on node {to}"));
            }
            if map.nodes.get(to).map(|n| n.state) != Some(NodeState::Up) {
                return Err(format!("node {to} is not an Up node"));
            }
            Ok(kind.clone())
        }
        OperationKind::Restore { .. } => Ok(kind.clone()),
    }
}

/// A split point must be a chunk boundary strictly inside the range.
pub fn check_split_point(
    d: &checkraft_proto::ShardDescriptor,
    at: u64,
    chunk_size: u32,
) -> Result<(), String> {
    if at <= d.start || at >= d.end {
        return Err(format!(
            "split point {at} is not strictly inside shard {}'s range [{}, {})",
            d.shard, d.start, d.end
        ));
    }
    if !at.is_multiple_of(u64::from(chunk_size.max(1))) {
        return Err(format!(
            "split point {at} is not on a chunk boundary (chunks of {chunk_size} boxes)"
        ));
    }
    Ok(())
}

fn record_split(
    map: &mut ShardMap,
    parent: &checkraft_proto::ShardDescriptor,
    child: &ShardRecord,
) -> Result<(), String> {
    let c = &child.descriptor;
    if map.shards.contains_key(&c.shard) {
        let same = map.shards[&c.shard].descriptor == *c
            && map.shards.get(&parent.shard).map(|p| &p.descriptor) == Some(parent);
        return if same {
            Err(format!(
                "split of shard {} is already recorded",
                parent.shard
            ))
        } else {
            Err(format!("shard {} already exists", c.shard))
        };
    }
    if map.retired.contains(&c.shard) || c.shard == checkraft_proto::META_GROUP {
        return Err(format!("shard id {} was retired or is reserved", c.shard));
    }
    let old = &map
        .shards
        .get(&parent.shard)
        .ok_or(format!("no shard {}", parent.shard))?
        .descriptor;
    if parent.start != old.start
        || parent.end != c.start
        || c.end != old.end
        || parent.epoch <= old.epoch
    {
        return Err(format!(
            "split of shard {} [{}, {}) epoch {} into [{}, {}) epoch {} and [{}, {}) does not \
             tile it",
            old.shard,
            old.start,
            old.end,
            old.epoch,
            parent.start,
            parent.end,
            parent.epoch,
            c.start,
            c.end
        ));
    }
    if child.replicas.is_empty() || child.replicas.iter().any(|r| !map.nodes.contains_key(r)) {
        return Err(format!(
            "child {} has no replicas or an unknown one",
            c.shard
        ));
    }
    map.shards
        .get_mut(&parent.shard)
        .expect("checked above")
        .descriptor = parent.clone();
    map.shards.insert(c.shard, child.clone());
    map.next_shard_id = map.next_shard_id.max(c.shard + 1);
    Ok(())
}

fn record_merge(
    map: &mut ShardMap,
    left: &checkraft_proto::ShardDescriptor,
    right: ShardId,
) -> Result<(), String> {
    let old = &map
        .shards
        .get(&left.shard)
        .ok_or(format!("no shard {}", left.shard))?
        .descriptor;
    let r = &map
        .shards
        .get(&right)
        .ok_or(format!("no shard {right} (already merged?)"))?
        .descriptor;
    if old.end != r.start || left.start != old.start || left.end != r.end || left.epoch <= old.epoch
    {
        return Err(format!(
            "merge of shard {right} [{}, {}) into {} [{}, {}) as [{}, {}) epoch {} does not \
             tile them",
            r.start, r.end, old.shard, old.start, old.end, left.start, left.end, left.epoch
        ));
    }
    map.shards
        .get_mut(&left.shard)
        .expect("checked above")
        .descriptor = left.clone();
    map.shards.remove(&right);
    map.retired.insert(right);
    Ok(())
}

/// An initial layout must tile `[0, boxes)` with shards whose boundaries
/// fall on chunk boundaries (so each chunk lives in one shard and its
/// `seq` is that shard's), with ids unique and replicas among the nodes.
fn check_layout(grid: &Grid, nodes: &[NodeRecord], shards: &[ShardRecord]) -> Result<(), String> {
    if grid.chunk_size > checkraft_proto::ws::MAX_CHUNK_SIZE
        || grid.boxes > checkraft_proto::MAX_BOX_END
    {
        return Err(format!(
            "chunk size {} or grid of {} boxes is too large",
            grid.chunk_size, grid.boxes
        ));
    }
    let mut sorted: Vec<&ShardRecord> = shards.iter().collect();
    sorted.sort_by_key(|s| s.descriptor.start);
    let mut next = 0;
    let mut ids = std::collections::BTreeSet::new();
    for s in sorted {
        let d = &s.descriptor;
        d.validate()
            .map_err(|e| format!("shard {}: {e}", d.shard))?;
        if d.shard == checkraft_proto::META_GROUP || !ids.insert(d.shard) {
            return Err(format!("shard id {} is reserved or used twice", d.shard));
        }
        if d.start != next {
            return Err(format!(
                "shard {} starts at {}, expected {next}: shards must tile the grid",
                d.shard, d.start
            ));
        }
        if d.end != grid.boxes && d.end % u64::from(grid.chunk_size) != 0 {
            return Err(format!(
                "shard {} ends at {}, inside a chunk of {}",
                d.shard, d.end, grid.chunk_size
            ));
        }
        if s.replicas.is_empty() || s.replicas.iter().any(|r| !nodes.iter().any(|n| n.id == *r)) {
            return Err(format!(
                "shard {} has no replicas or an unknown one",
                d.shard
            ));
        }
        next = d.end;
    }
    if next != grid.boxes {
        return Err(format!(
            "shards end at {next}, but the grid has {} boxes",
            grid.boxes
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use checkraft_proto::{OperationKind, ShardDescriptor};

    use super::*;

    fn init() -> MetaCommand {
        MetaCommand::Init {
            grid: Grid {
                boxes: 100,
                chunk_size: 10,
            },
            nodes: (1..=3)
                .map(|id| NodeRecord {
                    id,
                    addr: format!("n{id}"),
                    state: NodeState::Up,
                })
                .collect(),
            shards: vec![ShardRecord {
                descriptor: ShardDescriptor {
                    shard: 1,
                    start: 0,
                    end: 100,
                    epoch: 1,
                },
                replicas: vec![1, 2, 3],
                leader: None,
            }],
        }
    }

    fn refused(m: &mut MetaState, kind: OperationKind, why: &str) {
        match m.apply(&MetaCommand::BeginOperation { kind }) {
            CommandResponse::Rejected {
                rejection: Rejection::MetaRefused { detail },
            } => assert!(detail.contains(why), "{detail}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(m.map.operation.is_none());
    }

    #[test]
    fn node_operations_are_checked_when_recorded() {
        let mut m = MetaState::default();
        m.apply(&init());
        let remove = |node| OperationKind::RemoveNode { node };
        // Three nodes hold every shard: none can go.
        refused(&mut m, remove(3), "no other Up node is free");
        refused(&mut m, remove(9), "no node 9");
        refused(&mut m, OperationKind::RepairNode { node: 2 }, "not Down");
        let mv = |from, to| OperationKind::MoveReplica { shard: 1, from, to };
        refused(&mut m, mv(1, 2), "already has a replica on node 2");
        refused(&mut m, mv(4, 5), "no replica on node 4");
        // A fourth node makes room.
        m.apply(&MetaCommand::AddNode { addr: "n4".into() });
        assert!(matches!(
            m.apply(&MetaCommand::BeginOperation { kind: remove(3) }),
            CommandResponse::Meta(_)
        ));
    }

    fn version(r: &CommandResponse) -> u64 {
        match r {
            CommandResponse::Meta(o) => o.version,
            other => panic!("expected an applied meta command, got {other:?}"),
        }
    }

    #[test]
    fn init_once_and_ids_are_never_reused() {
        let mut m = MetaState::default();
        assert_eq!(version(&m.apply(&init())), 1);
        assert!(matches!(m.apply(&init()), CommandResponse::Rejected { .. }));
        let add = m.apply(&MetaCommand::AddNode { addr: "n4".into() });
        assert!(matches!(
            add,
            CommandResponse::Meta(MetaOutcome {
                allocated: Some(4),
                ..
            })
        ));
        assert!(matches!(
            m.apply(&MetaCommand::AddNode { addr: "n4".into() }),
            CommandResponse::Rejected { .. }
        ));
        m.apply(&MetaCommand::SetNodeState {
            node: 4,
            state: NodeState::Removed,
        });
        let again = m.apply(&MetaCommand::AddNode { addr: "n4".into() });
        assert!(matches!(
            again,
            CommandResponse::Meta(MetaOutcome {
                allocated: Some(5),
                ..
            })
        ));
    }

    #[test]
    fn init_layout_must_tile_the_grid_on_chunk_boundaries() {
        let MetaCommand::Init {
            grid,
            nodes,
            shards,
        } = init()
        else {
            unreachable!()
        };
        let with = |shards: Vec<ShardRecord>| MetaCommand::Init {
            grid,
            nodes: nodes.clone(),
            shards,
        };
        let split = |at: u64| {
            let mut a = shards[0].clone();
            let mut b = shards[0].clone();
            a.descriptor.end = at;
            b.descriptor.shard = 2;
            b.descriptor.start = at;
            vec![a, b]
        };
        let refused = |c| {
            matches!(
                MetaState::default().apply(&c),
                CommandResponse::Rejected { .. }
            )
        };
        // Chunks of 10: a boundary at 50 is fine, at 55 cuts a chunk.
        assert!(!refused(with(split(50))));
        assert!(refused(with(split(55))));
        // A gap, a short grid, an unknown replica, the reserved id.
        let mut gap = split(50);
        gap[1].descriptor.start = 60;
        assert!(refused(with(gap)));
        let mut short = shards.clone();
        short[0].descriptor.end = 90;
        assert!(refused(with(short)));
        let mut unknown = shards.clone();
        unknown[0].replicas = vec![9];
        assert!(refused(with(unknown)));
        let mut reserved = shards.clone();
        reserved[0].descriptor.shard = 0;
        assert!(refused(with(reserved)));
    }

    #[test]
    fn hints_change_the_version_only_when_they_change() {
        let mut m = MetaState::default();
        m.apply(&init());
        let v = version(&m.apply(&MetaCommand::LeaderHints {
            hints: vec![(1, 2)],
        }));
        assert_eq!(
            version(&m.apply(&MetaCommand::LeaderHints {
                hints: vec![(1, 2)]
            })),
            v
        );
        // A hint naming a non-replica is ignored.
        assert_eq!(
            version(&m.apply(&MetaCommand::LeaderHints {
                hints: vec![(1, 9)]
            })),
            v
        );
        assert_eq!(m.map.shards[&1].leader, Some(2));
    }

    #[test]
    fn one_operation_at_a_time() {
        let mut m = MetaState::default();
        m.apply(&init());
        let begin = MetaCommand::BeginOperation {
            kind: OperationKind::Restore {
                backup_created_ms: 1,
            },
        };
        let id = match m.apply(&begin) {
            CommandResponse::Meta(MetaOutcome {
                allocated: Some(id),
                ..
            }) => id,
            other => panic!("{other:?}"),
        };
        assert!(matches!(m.apply(&begin), CommandResponse::Rejected { .. }));
        m.apply(&MetaCommand::EndOperation { id });
        assert!(m.map.operation.is_none());
        let bytes = m.to_snapshot_bytes();
        assert_eq!(MetaState::from_snapshot_bytes(&bytes).unwrap(), m);
    }
}
