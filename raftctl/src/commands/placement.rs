//! Pure placement logic shared by the cluster-management commands: parsing
//! `ID=HOST:PORT` node lists, the initial shard layout (range split and
//! replica spreading), choosing where a moved replica goes, and planning
//! leader moves. Nothing here does I/O, so all of it is unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use checkraft_proto::{NodeId, ShardDescriptor, ShardId, ShardRecord, MAX_BOX_END};

/// One founding node given to `init`: `ID=HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The node's id (positive).
    pub id: NodeId,
    /// `HOST:PORT` of its HTTP API.
    pub addr: String,
}

/// Checks that `addr` looks like `HOST:PORT` with a non-zero port.
pub fn check_addr(addr: &str) -> Result<()> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        bail!("{addr:?} is not HOST:PORT (no ':')");
    };
    if host.is_empty() {
        bail!("{addr:?} is not HOST:PORT (empty host)");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bail!("{addr:?} is not HOST:PORT ({port:?} is not a port number 1-65535)"),
    }
}

/// Parses one `ID=HOST:PORT` entry.
pub fn parse_node_spec(entry: &str) -> Result<NodeSpec> {
    let entry = entry.trim();
    let (id, addr) = entry
        .split_once('=')
        .with_context(|| format!("node entry {entry:?} is not ID=HOST:PORT (no '=')"))?;
    let id: NodeId = id.trim().parse().with_context(|| {
        format!("node entry {entry:?}: {id:?} is not a node id (a positive integer)")
    })?;
    if id == 0 {
        bail!("node entry {entry:?}: node ids start at 1 (0 means \"no id yet\")");
    }
    let addr = addr.trim();
    check_addr(addr).with_context(|| format!("node entry {entry:?}"))?;
    Ok(NodeSpec {
        id,
        addr: addr.to_string(),
    })
}

/// Parses the `--nodes` list, refusing duplicate ids and addresses.
pub fn parse_nodes(entries: &[String]) -> Result<Vec<NodeSpec>> {
    let nodes: Vec<NodeSpec> = entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| parse_node_spec(e))
        .collect::<Result<_>>()?;
    if nodes.is_empty() {
        bail!("--nodes is empty: give at least one ID=HOST:PORT");
    }
    let mut ids = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    for n in &nodes {
        if !ids.insert(n.id) {
            bail!("node id {} appears twice in --nodes", n.id);
        }
        if !addrs.insert(n.addr.as_str()) {
            bail!("address {} appears twice in --nodes", n.addr);
        }
    }
    Ok(nodes)
}

/// Checks the grid and replication parameters of `init`.
pub fn validate_layout(
    boxes: u64,
    shards: u64,
    chunk_size: u32,
    replicas: usize,
    nodes: usize,
) -> Result<()> {
    if shards == 0 {
        bail!("--shards must be at least 1");
    }
    if chunk_size == 0 || chunk_size > checkraft_proto::ws::MAX_CHUNK_SIZE {
        bail!(
            "--chunk-size must be between 1 and {}",
            checkraft_proto::ws::MAX_CHUNK_SIZE
        );
    }
    if boxes > MAX_BOX_END {
        bail!("--boxes {boxes} exceeds the largest grid, {MAX_BOX_END} boxes (2^32)");
    }
    let chunks = boxes.div_ceil(u64::from(chunk_size));
    if chunks < shards {
        bail!(
            "--boxes {boxes} make {chunks} chunks of {chunk_size}, fewer than --shards {shards}: \
             every shard needs at least one whole chunk"
        );
    }
    if replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    if replicas > nodes {
        bail!("--replicas {replicas} exceeds the number of nodes ({nodes})");
    }
    Ok(())
}

/// Splits `[0, boxes)` into `shards` contiguous ranges of whole chunks
/// (only the grid's last chunk may be partial), whose chunk counts differ
/// by at most one. Shard boundaries fall on chunk boundaries, so every
/// chunk lives in exactly one shard and a chunk's `seq` is its shard's.
pub fn split_ranges(boxes: u64, shards: u64, chunk_size: u32) -> Vec<(u64, u64)> {
    let chunk = u64::from(chunk_size);
    let chunks = boxes.div_ceil(chunk);
    let (base, extra) = (chunks / shards, chunks % shards);
    let mut start_chunk = 0;
    (0..shards)
        .map(|k| {
            let end_chunk = start_chunk + base + u64::from(k < extra);
            let range = (start_chunk * chunk, (end_chunk * chunk).min(boxes));
            start_chunk = end_chunk;
            range
        })
        .collect()
}

/// The initial shards: ids `1..=shards`, ranges from [`split_ranges`], and
/// shard `k` (0-based) replicated on `nodes[(k + j) % n]` for `j` in
/// `0..replicas`. The first replica is the shard's intended leader, so
/// leaders are spread round-robin.
pub fn initial_shards(
    boxes: u64,
    shards: u64,
    chunk_size: u32,
    replicas: usize,
    nodes: &[NodeId],
) -> Vec<ShardRecord> {
    let n = nodes.len();
    split_ranges(boxes, shards, chunk_size)
        .into_iter()
        .enumerate()
        .map(|(k, (start, end))| ShardRecord {
            descriptor: ShardDescriptor {
                shard: k as ShardId + 1,
                start,
                end,
                epoch: 1,
            },
            replicas: (0..replicas).map(|j| nodes[(k + j) % n]).collect(),
            leader: None,
        })
        .collect()
}

/// A shard's replica list after a membership change to `voters`: the old
/// order for those still voting (so the first replica stays first), then
/// the new voters in id order.
pub fn replicas_after(old: &[NodeId], voters: &BTreeSet<NodeId>) -> Vec<NodeId> {
    let kept = old.iter().copied().filter(|r| voters.contains(r));
    let added = voters.iter().copied().filter(|v| !old.contains(v));
    kept.chain(added).collect()
}

/// One planned leader move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LeaderMove {
    /// The shard.
    pub shard: ShardId,
    /// Its current leader.
    pub from: NodeId,
    /// The replica that should campaign.
    pub to: NodeId,
}

/// Plans leader moves so that no Up node leads more than
/// `ceil(shards / up nodes)` shards, and nodes that are not Up lead none
/// where another replica can take over. `leaders` maps each shard with a
/// known leader to it; `replicas` lists each shard's replicas (voters).
/// Each move goes to an under-target Up replica of the shard, the least
/// loaded first.
pub fn plan_balance(
    leaders: &BTreeMap<ShardId, NodeId>,
    replicas: &BTreeMap<ShardId, Vec<NodeId>>,
    up: &[NodeId],
) -> Vec<LeaderMove> {
    if up.is_empty() {
        return Vec::new();
    }
    let target = replicas.len().div_ceil(up.len());
    let limit = |node: NodeId| if up.contains(&node) { target } else { 0 };
    let mut count: BTreeMap<NodeId, usize> = up.iter().map(|n| (*n, 0)).collect();
    for leader in leaders.values() {
        *count.entry(*leader).or_default() += 1;
    }
    let mut current = leaders.clone();
    let mut moves = Vec::new();
    // Each move lowers the total excess by one, so this terminates.
    loop {
        let Some(mv) = next_move(&current, replicas, &count, up, target, &limit) else {
            return moves;
        };
        *count.get_mut(&mv.from).expect("counted leader") -= 1;
        *count.get_mut(&mv.to).expect("counted up node") += 1;
        current.insert(mv.shard, mv.to);
        moves.push(mv);
    }
}

/// The best single move that relieves an over-limit node, if any.
fn next_move(
    leaders: &BTreeMap<ShardId, NodeId>,
    replicas: &BTreeMap<ShardId, Vec<NodeId>>,
    count: &BTreeMap<NodeId, usize>,
    up: &[NodeId],
    target: usize,
    limit: &dyn Fn(NodeId) -> usize,
) -> Option<LeaderMove> {
    // The most loaded over-limit nodes first.
    let mut over: Vec<(NodeId, usize)> = count
        .iter()
        .filter(|(n, c)| **c > limit(**n))
        .map(|(n, c)| (*n, *c))
        .collect();
    over.sort_by_key(|(n, c)| (std::cmp::Reverse(*c), *n));
    over.into_iter().find_map(|(from, _)| {
        leaders
            .iter()
            .filter(|(_, l)| **l == from)
            .filter_map(|(shard, _)| {
                let to = replicas
                    .get(shard)?
                    .iter()
                    .copied()
                    .filter(|r| {
                        *r != from && up.contains(r) && count.get(r).copied().unwrap_or(0) < target
                    })
                    .min_by_key(|r| (count.get(r).copied().unwrap_or(0), *r))?;
                Some(LeaderMove {
                    shard: *shard,
                    from,
                    to,
                })
            })
            .min_by_key(|m| (count.get(&m.to).copied().unwrap_or(0), m.shard))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_node_lists() {
        let nodes = parse_nodes(&strings(&["1=127.0.0.1:7001", " 2 = host-b:7002 "])).unwrap();
        assert_eq!(
            nodes,
            vec![
                NodeSpec {
                    id: 1,
                    addr: "127.0.0.1:7001".into()
                },
                NodeSpec {
                    id: 2,
                    addr: "host-b:7002".into()
                }
            ]
        );
        assert!(parse_node_spec("[::1]:7001").is_err(), "no id");
    }

    #[test]
    fn rejects_malformed_node_entries() {
        for bad in [
            "127.0.0.1:7001",
            "x=h:1",
            "0=h:1",
            "1=h",
            "1=:7001",
            "1=h:0",
            "1=h:99999",
            "1=h:port",
        ] {
            assert!(parse_node_spec(bad).is_err(), "{bad} should be refused");
        }
        let dup_id = parse_nodes(&strings(&["1=a:1", "1=b:1"])).unwrap_err();
        assert!(
            dup_id.to_string().contains("node id 1 appears twice"),
            "{dup_id}"
        );
        let dup_addr = parse_nodes(&strings(&["1=a:1", "2=a:1"])).unwrap_err();
        assert!(
            dup_addr.to_string().contains("address a:1 appears twice"),
            "{dup_addr}"
        );
        assert!(parse_nodes(&[]).is_err());
    }

    #[test]
    fn validates_layout_parameters() {
        assert!(validate_layout(100, 4, 1, 3, 3).is_ok());
        assert!(validate_layout(100, 0, 1, 3, 3).is_err());
        assert!(validate_layout(3, 4, 1, 3, 3).is_err());
        assert!(validate_layout(100, 4, 1, 4, 3).is_err());
        assert!(validate_layout(100, 4, 1, 0, 3).is_err());
        assert!(validate_layout(100, 4, 0, 3, 3).is_err());
        assert!(validate_layout(1 << 20, 4, 1 << 16, 3, 3).is_err());
        // 100 boxes in chunks of 30 are 4 chunks: 4 shards fit, 5 do not.
        assert!(validate_layout(100, 4, 30, 3, 3).is_ok());
        assert!(validate_layout(100, 5, 30, 3, 3).is_err());
        assert!(validate_layout(MAX_BOX_END, 4, 4096, 3, 3).is_ok());
        assert!(validate_layout(MAX_BOX_END + 1, 4, 4096, 3, 3).is_err());
    }

    #[test]
    fn splits_ranges_evenly_and_contiguously() {
        assert_eq!(split_ranges(10, 3, 1), vec![(0, 4), (4, 7), (7, 10)]);
        assert_eq!(split_ranges(9, 3, 1), vec![(0, 3), (3, 6), (6, 9)]);
        assert_eq!(
            split_ranges(5, 5, 1),
            vec![(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
        );
        // Chunks of 4: 10 boxes are 3 chunks, the last one partial.
        assert_eq!(split_ranges(10, 2, 4), vec![(0, 8), (8, 10)]);
        // The default grid: 1M boxes, chunks of 4096, 16 shards.
        let ranges = split_ranges(1_000_000, 16, 4096);
        assert!(ranges.iter().all(|(s, _)| s % 4096 == 0), "{ranges:?}");
        assert_eq!(ranges.last().unwrap().1, 1_000_000);
        for chunk in [1, 4096] {
            let ranges = split_ranges(MAX_BOX_END, 7, chunk);
            assert_eq!(ranges.first().unwrap().0, 0);
            assert_eq!(ranges.last().unwrap().1, MAX_BOX_END);
            for w in ranges.windows(2) {
                assert_eq!(w[0].1, w[1].0);
                assert_eq!(w[0].1 % u64::from(chunk), 0);
            }
            let sizes: Vec<u64> = ranges.iter().map(|(s, e)| e - s).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= u64::from(chunk));
        }
    }

    #[test]
    fn spreads_replicas_and_leaders_round_robin() {
        let shards = initial_shards(100, 4, 1, 3, &[1, 2, 3]);
        let replicas: Vec<Vec<u64>> = shards.iter().map(|s| s.replicas.clone()).collect();
        assert_eq!(
            replicas,
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2], vec![1, 2, 3]]
        );
        assert_eq!(
            shards
                .iter()
                .map(|s| s.descriptor.shard)
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(shards
            .iter()
            .all(|s| s.descriptor.epoch == 1 && s.leader.is_none()));
        let two_of_four = initial_shards(8, 4, 1, 2, &[10, 20, 30, 40]);
        let replicas: Vec<Vec<u64>> = two_of_four.iter().map(|s| s.replicas.clone()).collect();
        assert_eq!(
            replicas,
            vec![vec![10, 20], vec![20, 30], vec![30, 40], vec![40, 10]]
        );
    }

    #[test]
    fn replica_lists_keep_their_order() {
        assert_eq!(
            replicas_after(&[3, 1, 2], &BTreeSet::from([1, 2, 4])),
            vec![1, 2, 4]
        );
        assert_eq!(
            replicas_after(&[3, 1, 2], &BTreeSet::from([3, 1, 2, 5])),
            vec![3, 1, 2, 5]
        );
        assert_eq!(replicas_after(&[3, 1], &BTreeSet::from([3])), vec![3]);
    }

    #[test]
    fn balance_moves_leaders_off_overloaded_nodes() {
        let replicas: BTreeMap<u64, Vec<u64>> = (1..=6).map(|s| (s, vec![1, 2, 3])).collect();
        let leaders: BTreeMap<u64, u64> = (1..=6).map(|s| (s, 1)).collect();
        let moves = plan_balance(&leaders, &replicas, &[1, 2, 3]);
        assert_eq!(moves.len(), 4);
        let mut after = leaders.clone();
        for m in &moves {
            assert_eq!(after[&m.shard], m.from);
            after.insert(m.shard, m.to);
        }
        for node in [1, 2, 3] {
            assert_eq!(after.values().filter(|l| **l == node).count(), 2);
        }
    }

    #[test]
    fn balance_leaves_balanced_clusters_alone_and_respects_replicas() {
        let replicas = BTreeMap::from([(1, vec![1, 2]), (2, vec![2, 3]), (3, vec![3, 1])]);
        let balanced = BTreeMap::from([(1, 1), (2, 2), (3, 3)]);
        assert!(plan_balance(&balanced, &replicas, &[1, 2, 3]).is_empty());
        // Node 1 leads two, but shard 3's only other replica (3) is at
        // target, and shard 1's other replica (2) is under: one move.
        let skewed = BTreeMap::from([(1, 1), (2, 3), (3, 1)]);
        assert_eq!(
            plan_balance(&skewed, &replicas, &[1, 2, 3]),
            vec![LeaderMove {
                shard: 1,
                from: 1,
                to: 2
            }]
        );
        // No eligible replica: nothing to do.
        let stuck = BTreeMap::from([(1, vec![1])]);
        assert!(plan_balance(&BTreeMap::from([(1, 1)]), &stuck, &[1, 2]).is_empty());
    }

    #[test]
    fn balance_moves_leadership_off_nodes_that_are_not_up() {
        let replicas = BTreeMap::from([(1, vec![1, 2, 3]), (2, vec![1, 2, 3])]);
        let leaders = BTreeMap::from([(1, 1), (2, 2)]);
        assert_eq!(
            plan_balance(&leaders, &replicas, &[2, 3]),
            vec![LeaderMove {
                shard: 1,
                from: 1,
                to: 3
            }]
        );
    }
}
