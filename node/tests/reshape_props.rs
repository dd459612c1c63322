//! Property test of splits and merges on shard states
//! (`docs/resharding.md`).
//!
//! A grid of 1,000 boxes in chunks of 100 starts as one shard. Random
//! sequences of sets, splits, freezes, thaws and absorbs go to the
//! [`ShardState`]s as the runner and the gateways would send them.
//! Sometimes the epoch is stale, or the shard is the wrong one, on
//! purpose. After every step:
//! - the states equal a simple model (a set of checked boxes, and a list
//!   of ranges with owners);
//! - the live shards tile the grid, and each holds only its own boxes;
//! - a refused command changed nothing;
//! - versions only grow across a change: a child starts at its parent's
//!   seq, and a merged shard passes both seqs.
//!
//! At the end every state's snapshot round-trips byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use checkraft_node::state::{portable_bytes, ShardState};
use checkraft_proto::{
    Absorb, Command, CommandResponse, Freeze, Rejection, SetBatch, ShardDescriptor, Split, Thaw,
};
use proptest::prelude::*;

const BOXES: u64 = 1000;
const CHUNK: u64 = 100;

/// One generated step; picks are reduced modulo what exists.
#[derive(Debug, Clone)]
enum Op {
    Set {
        index: u32,
        value: bool,
        misroute: Option<usize>,
    },
    Split {
        pick: usize,
        chunk: u64,
        stale: bool,
    },
    Merge {
        pick: usize,
        commit: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..BOXES as u32, any::<bool>(), prop::option::weighted(0.2, 0usize..8))
            .prop_map(|(index, value, misroute)| Op::Set { index, value, misroute }),
        2 => (0usize..8, 1u64..10, prop::bool::weighted(0.15))
            .prop_map(|(pick, chunk, stale)| Op::Split { pick, chunk, stale }),
        2 => (0usize..8, prop::bool::weighted(0.7)).prop_map(|(pick, commit)| Op::Merge { pick, commit }),
    ]
}

/// The model: checked boxes, and the live shards by start.
struct Model {
    boxes: BTreeSet<u32>,
    /// start → (end, shard)
    layout: BTreeMap<u64, (u64, u64)>,
    next_id: u64,
}

impl Model {
    fn owner(&self, index: u64) -> u64 {
        let (_, (end, shard)) = self.layout.range(..=index).next_back().expect("tiled");
        assert!(index < *end);
        *shard
    }
}

struct World {
    states: BTreeMap<u64, ShardState>,
    model: Model,
}

impl World {
    fn new() -> Self {
        let d = ShardDescriptor {
            shard: 1,
            start: 0,
            end: BOXES,
            epoch: 1,
        };
        Self {
            states: [(1, ShardState::new(d))].into(),
            model: Model {
                boxes: BTreeSet::new(),
                layout: [(0, (BOXES, 1))].into(),
                next_id: 2,
            },
        }
    }

    fn epoch(&self, shard: u64) -> u64 {
        self.states[&shard].descriptor.epoch
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let mut next = 0;
        let mut union = BTreeSet::new();
        for (start, (end, shard)) in &self.model.layout {
            prop_assert_eq!(*start, next, "layout gap");
            let s = &self.states[shard];
            prop_assert_eq!((s.descriptor.start, s.descriptor.end), (*start, *end));
            for b in s.bitmap.iter() {
                prop_assert!(
                    u64::from(b) >= *start && u64::from(b) < *end,
                    "box {} outside shard {}",
                    b,
                    shard
                );
                union.insert(b);
            }
            next = *end;
        }
        prop_assert_eq!(next, BOXES);
        prop_assert_eq!(union, self.model.boxes.clone());
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let shards: Vec<u64> = self.model.layout.values().map(|(_, s)| *s).collect();
        match op {
            Op::Set {
                index,
                value,
                misroute,
            } => {
                let owner = self.model.owner(u64::from(*index));
                let target = misroute.map_or(owner, |i| shards[i % shards.len()]);
                let epoch = self.epoch(target);
                let frozen = self.states[&target].reshape.frozen;
                let before = self.states[&target].clone_parts();
                let (response, _) =
                    self.states
                        .get_mut(&target)
                        .unwrap()
                        .apply(&Command::SetBatch(SetBatch {
                            epoch,
                            sets: vec![(*index, *value)],
                        }));
                match (target == owner, frozen, response) {
                    (true, None, CommandResponse::Applied { .. }) => {
                        if *value {
                            self.model.boxes.insert(*index);
                        } else {
                            self.model.boxes.remove(index);
                        }
                    }
                    (_, Some(into), CommandResponse::Rejected { rejection }) => {
                        prop_assert_eq!(rejection, Rejection::Frozen { into });
                        prop_assert_eq!(self.states[&target].clone_parts(), before);
                    }
                    (false, None, CommandResponse::Rejected { rejection }) => {
                        prop_assert!(
                            matches!(
                                rejection,
                                Rejection::Moved { .. } | Rejection::OutOfRange { .. }
                            ),
                            "misrouted set: {rejection:?}"
                        );
                        if let Rejection::Moved { owner: named, .. } = rejection {
                            // A split moved it there, or further on.
                            prop_assert!(named != target);
                        }
                        prop_assert_eq!(self.states[&target].clone_parts(), before);
                    }
                    (to_owner, frozen, r) => {
                        prop_assert!(false, "set to owner={to_owner} frozen={frozen:?}: {r:?}")
                    }
                }
            }
            Op::Split { pick, chunk, stale } => {
                let shard = shards[pick % shards.len()];
                let (start, end, epoch, seq) = {
                    let s = &self.states[&shard];
                    (
                        s.descriptor.start,
                        s.descriptor.end,
                        s.descriptor.epoch,
                        s.seq,
                    )
                };
                let at = start + chunk * CHUNK;
                let child = self.model.next_id;
                let sent_epoch = if *stale { epoch + 1 } else { epoch };
                let frozen = self.states[&shard].reshape.frozen.is_some();
                let before = self.states[&shard].clone_parts();
                let state = self.states.get_mut(&shard).unwrap();
                let (response, event) = state.apply(&Command::Split(Split {
                    epoch: sent_epoch,
                    at,
                    child,
                }));
                let fits = at > start && at < end;
                if *stale || frozen || !fits {
                    prop_assert!(
                        matches!(response, CommandResponse::Rejected { .. }),
                        "{response:?}"
                    );
                    prop_assert!(event.is_none());
                    prop_assert!(state.take_born().is_none());
                    prop_assert_eq!(self.states[&shard].clone_parts(), before);
                    return Ok(());
                }
                prop_assert_eq!(
                    response,
                    CommandResponse::Applied {
                        seq: seq + 1,
                        changed: 0
                    }
                );
                let born = state.take_born().expect("a split gives birth");
                prop_assert_eq!(born.seq, seq + 1, "the child starts at the parent's seq");
                prop_assert_eq!(born.descriptor.epoch, epoch + 1);
                prop_assert_eq!(state.descriptor.epoch, epoch + 1);
                prop_assert_eq!(state.moved_to(at), Some(child));
                // The child's snapshot round-trips.
                let bytes = born.to_snapshot_bytes();
                prop_assert_eq!(
                    ShardState::from_snapshot_bytes(&bytes)
                        .unwrap()
                        .to_snapshot_bytes(),
                    bytes
                );
                self.states.insert(child, born);
                self.model.next_id += 1;
                self.model.layout.insert(start, (at, shard));
                self.model.layout.insert(at, (end, child));
            }
            Op::Merge { pick, commit } => {
                let starts: Vec<u64> = self.model.layout.keys().copied().collect();
                if starts.len() < 2 {
                    return Ok(());
                }
                let i = pick % (starts.len() - 1);
                let (left, right) = (
                    self.model.layout[&starts[i]].1,
                    self.model.layout[&starts[i + 1]].1,
                );
                // Freeze the right one; a write to it is refused meanwhile.
                let r_epoch = self.epoch(right);
                let r = self.states.get_mut(&right).unwrap();
                let (resp, _) = r.apply(&Command::Freeze(Freeze {
                    epoch: r_epoch,
                    into: left,
                }));
                prop_assert!(matches!(resp, CommandResponse::Applied { .. }), "{resp:?}");
                // A stale freeze or a second freeze is refused.
                let (again, _) = r.apply(&Command::Freeze(Freeze {
                    epoch: r.descriptor.epoch,
                    into: left,
                }));
                let refused = matches!(
                    again,
                    CommandResponse::Rejected {
                        rejection: Rejection::Frozen { .. }
                    }
                );
                prop_assert!(refused, "a second freeze: {:?}", again);
                if !*commit {
                    let epoch = r.descriptor.epoch;
                    let (resp, _) = r.apply(&Command::Thaw(Thaw { epoch }));
                    prop_assert!(matches!(resp, CommandResponse::Applied { .. }), "{resp:?}");
                    prop_assert!(r.reshape.frozen.is_none());
                    return Ok(());
                }
                let (r_desc, r_seq, r_bits) =
                    (r.descriptor.clone(), r.seq, portable_bytes(&r.bitmap));
                let l_seq = self.states[&left].seq;
                let l_epoch = self.epoch(left);
                // A stale absorb is refused and changes nothing.
                let l = self.states.get_mut(&left).unwrap();
                let before = l.clone_parts();
                let (stale, _) = l.apply(&Command::Absorb(Absorb {
                    epoch: l_epoch + 3,
                    right: r_desc.clone(),
                    seq: r_seq,
                    bitmap: r_bits.clone(),
                }));
                let refused = matches!(
                    stale,
                    CommandResponse::Rejected {
                        rejection: Rejection::StaleEpoch { .. }
                    }
                );
                prop_assert!(refused, "a stale absorb: {:?}", stale);
                prop_assert_eq!(l.clone_parts(), before);
                let (resp, _) = l.apply(&Command::Absorb(Absorb {
                    epoch: l_epoch,
                    right: r_desc.clone(),
                    seq: r_seq,
                    bitmap: r_bits,
                }));
                prop_assert!(matches!(resp, CommandResponse::Applied { .. }), "{resp:?}");
                prop_assert!(l.seq > l_seq.max(r_seq), "versions grow across a merge");
                prop_assert_eq!(l.descriptor.end, r_desc.end);
                self.states.remove(&right);
                self.model.layout.remove(&r_desc.start);
                let end = r_desc.end;
                self.model.layout.insert(starts[i], (end, left));
            }
        }
        Ok(())
    }
}

/// What a refused command must leave unchanged.
trait Parts {
    fn clone_parts(&self) -> (ShardDescriptor, u64, Vec<u32>, Vec<u8>);
}

impl Parts for ShardState {
    fn clone_parts(&self) -> (ShardDescriptor, u64, Vec<u32>, Vec<u8>) {
        (
            self.descriptor.clone(),
            self.seq,
            self.bitmap.iter().collect(),
            self.to_snapshot_bytes(),
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn splits_and_merges_match_the_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut world = World::new();
        for op in &ops {
            world.step(op)?;
            world.check()?;
        }
        for state in world.states.values() {
            let bytes = state.to_snapshot_bytes();
            let back = ShardState::from_snapshot_bytes(&bytes).unwrap();
            prop_assert_eq!(back.to_snapshot_bytes(), bytes);
        }
    }
}
