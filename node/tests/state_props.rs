//! Property tests of the shard state machine.
//!
//! - Random `SetBatch`/`Restore` sequences (including stale epochs,
//!   out-of-range indices and undecodable bitmaps) applied to
//!   [`ShardState`] match a `BTreeSet` model: same responses, same boxes,
//!   same `seq`, and events that replay to the same state.
//! - Snapshot → install → snapshot through the real openraft state machine
//!   on sled round-trips byte for byte.

use std::collections::BTreeSet;

use checkraft_node::state::{decode_bitmap, portable_bytes, ShardState};
use checkraft_node::state_machine::StateMachine;
use checkraft_node::storage::{SnapshotStore, Storage};
use checkraft_proto::{
    ChangeEvent, Command, CommandResponse, Rejection, Restore, SetBatch, ShardDescriptor,
};
use croaring::Bitmap;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use proptest::prelude::*;

const START: u64 = 50;
const END: u64 = 250;

fn descriptor() -> ShardDescriptor {
    ShardDescriptor {
        shard: 3,
        start: START,
        end: END,
        epoch: 2,
    }
}

/// An operation as generated: indices may fall outside the range and the
/// epoch may be stale, on purpose.
#[derive(Debug, Clone)]
enum Op {
    Sets { epoch: u64, sets: Vec<(u32, bool)> },
    Restore { epoch: u64, boxes: BTreeSet<u32> },
    RestoreGarbage { bytes: Vec<u8> },
    Barrier,
}

fn op() -> impl Strategy<Value = Op> {
    let index = prop_oneof![9 => (START as u32)..(END as u32), 1 => 0u32..300];
    let epoch = prop_oneof![9 => Just(2u64), 1 => 1u64..4];
    prop_oneof![
        8 => (epoch.clone(), prop::collection::vec((index.clone(), any::<bool>()), 0..20))
            .prop_map(|(epoch, sets)| Op::Sets { epoch, sets }),
        1 => (epoch, prop::collection::btree_set(index, 0..40)).prop_map(|(epoch, boxes)| Op::Restore { epoch, boxes }),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(|bytes| Op::RestoreGarbage { bytes }),
        1 => Just(Op::Barrier),
    ]
}

fn command(op: &Op) -> Command {
    match op {
        Op::Sets { epoch, sets } => Command::SetBatch(SetBatch {
            epoch: *epoch,
            sets: sets.clone(),
        }),
        Op::Restore { epoch, boxes } => Command::Restore(Restore {
            epoch: *epoch,
            bitmap: portable_bytes(&boxes.iter().copied().collect::<Bitmap>()),
        }),
        Op::RestoreGarbage { bytes } => Command::Restore(Restore {
            epoch: 2,
            bitmap: bytes.clone(),
        }),
        Op::Barrier => Command::Barrier,
    }
}

/// The model: a set of checked boxes and a counter.
#[derive(Default)]
struct Model {
    boxes: BTreeSet<u32>,
    seq: u64,
}

impl Model {
    fn in_range(i: u32) -> bool {
        (START..END).contains(&u64::from(i))
    }

    /// Returns whether the model accepts the op.
    fn apply(&mut self, op: &Op) -> bool {
        match op {
            Op::Sets { epoch, sets } => {
                if *epoch != 2 || !sets.iter().all(|(i, _)| Self::in_range(*i)) {
                    return false;
                }
                for (i, checked) in sets {
                    if *checked {
                        self.boxes.insert(*i);
                    } else {
                        self.boxes.remove(i);
                    }
                }
            }
            Op::Restore { epoch, boxes } => {
                if *epoch != 2 || !boxes.iter().all(|i| Self::in_range(*i)) {
                    return false;
                }
                self.boxes = boxes.clone();
            }
            Op::RestoreGarbage { bytes } => {
                // Some short byte strings are valid Portable bitmaps; the
                // model defers to the decoder for those.
                match Bitmap::try_deserialize::<croaring::Portable>(bytes) {
                    Some(b) if b.iter().all(Self::in_range) => self.boxes = b.iter().collect(),
                    _ => return false,
                }
            }
            Op::Barrier => unreachable!("the test loop answers barriers itself"),
        }
        self.seq += 1;
        true
    }
}

/// Replays change events onto a set, as a subscriber would.
fn replay(events: &[ChangeEvent]) -> BTreeSet<u32> {
    let mut boxes = BTreeSet::new();
    for e in events {
        match e {
            ChangeEvent::Changes { sets, .. } => {
                for (i, c) in sets {
                    if *c {
                        boxes.insert(*i);
                    } else {
                        boxes.remove(i);
                    }
                }
            }
            ChangeEvent::Snapshot { bitmap, .. } => {
                boxes = decode_bitmap(bitmap).unwrap().iter().collect()
            }
            ChangeEvent::Progress { .. }
            | ChangeEvent::Split { .. }
            | ChangeEvent::Frozen { .. }
            | ChangeEvent::Thawed { .. }
            | ChangeEvent::Merged { .. } => {}
        }
    }
    boxes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn state_matches_model(ops in prop::collection::vec(op(), 0..60)) {
        let mut state = ShardState::new(descriptor());
        let mut model = Model::default();
        let mut events = Vec::new();
        for op in &ops {
            if let Op::Barrier = op {
                // A barrier answers with the current seq and changes nothing.
                let (response, event) = state.apply(&Command::Barrier);
                prop_assert_eq!(response, CommandResponse::Applied { seq: model.seq, changed: 0 });
                prop_assert!(event.is_none());
                continue;
            }
            let accepted = model.apply(op);
            let (response, event) = state.apply(&command(op));
            match response {
                CommandResponse::Applied { seq, .. } => {
                    prop_assert!(accepted, "state accepted {op:?}, model refused");
                    prop_assert_eq!(seq, model.seq);
                    let event = event.expect("accepted commands produce an event");
                    prop_assert_eq!(event.seq(), seq);
                    events.push(event);
                }
                CommandResponse::Rejected { rejection } => {
                    prop_assert!(!accepted, "state refused {op:?} ({rejection}), model accepted");
                    prop_assert!(event.is_none());
                    if let Op::Sets { epoch, .. } = op {
                        if *epoch != 2 {
                            prop_assert_eq!(rejection, Rejection::StaleEpoch { current: 2, got: *epoch });
                        }
                    }
                }
                CommandResponse::Internal | CommandResponse::Meta(_) => {
                    prop_assert!(false, "non-shard response to a shard command: {response:?}")
                }
            }
            prop_assert_eq!(state.seq, model.seq);
            prop_assert_eq!(state.bitmap.iter().collect::<BTreeSet<_>>(), model.boxes.clone());
        }
        prop_assert_eq!(replay(&events), model.boxes);
        // The snapshot encoding round-trips byte for byte.
        let bytes = state.to_snapshot_bytes();
        let back = ShardState::from_snapshot_bytes(&bytes).unwrap();
        prop_assert_eq!(back.to_snapshot_bytes(), bytes);
    }
}

fn entry(index: u64, command: Command) -> checkraft_proto::raft::Entry {
    checkraft_proto::raft::Entry {
        log_id: checkraft_proto::raft::log_id(1, 1, index),
        payload: EntryPayload::Normal(command),
    }
}

fn open_sm(storage: &Storage, group: u64) -> StateMachine {
    let tree = storage.group_tree(group).unwrap();
    StateMachine::open(
        descriptor(),
        SnapshotStore::new(tree, storage.flusher().clone()),
        64,
        std::sync::Arc::new(checkraft_node::birth::NoBirths),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_install_snapshot_round_trips(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let storage = Storage::open(dir.path(), 8).unwrap();
            let mut source = open_sm(&storage, 1);
            let entries: Vec<_> = ops.iter().enumerate().map(|(i, op)| entry(i as u64 + 1, command(op))).collect();
            source.apply(futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))))).await.unwrap();
            let first = source.get_snapshot_builder().await.build_snapshot().await.unwrap();
            let first_bytes = first.snapshot.clone();

            let mut target = open_sm(&storage, 2);
            target.install_snapshot(&first.meta, first_bytes.clone()).await.unwrap();
            let second = target.get_snapshot_builder().await.build_snapshot().await.unwrap();
            assert_eq!(&second.snapshot, &first_bytes, "snapshot bytes differ after install");
            assert_eq!(second.meta.last_log_id, first.meta.last_log_id);

            // A state machine reopened from storage holds the same state.
            drop(target);
            let mut reopened = open_sm(&storage, 2);
            let third = reopened.get_snapshot_builder().await.build_snapshot().await.unwrap();
            assert_eq!(&third.snapshot, &first_bytes, "snapshot bytes differ after reopen");
        });
    }
}
