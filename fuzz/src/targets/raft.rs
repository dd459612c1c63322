//! `raft`: the bincode bodies of the node's raft endpoints and of a shard
//! restore, decoded with [`checkraft_proto::codec::decode`] exactly as
//! `node/src/http/raft.rs` and `node/src/http/shard.rs` decode them, plus
//! the raft answers a node decodes from its peers (`node/src/network.rs`).
//!
//! Every input is decoded as: `AppendEntriesRequest<TypeConfig>`,
//! `VoteRequest<TypeConfig>` (vote and pre-vote), [`InstallSnapshot`],
//! `TransferLeaderRequest<TypeConfig>`, [`Restore`], and
//! `Result<AppendEntriesResponse | VoteResponse, RaftError>` and
//! `Result<SnapshotResponse, Fatal>`. Then, like the node would after
//! accepting them: an append's shard commands are applied to a shard state
//! and its metadata commands to a metadata state; a snapshot's
//! data is loaded as a shard and as a metadata snapshot; a restore's bitmap
//! goes through the node's `decode_bitmap` and a shard's `apply`. Every
//! decoded value must encode to bytes that decode again, and, as the node
//! stores them (`node/src/storage/log_store.rs` encodes each entry on its
//! own, `snapshot_store.rs` the snapshot with its meta), each accepted
//! entry and each accepted snapshot must read back from its stored form:
//! whatever a node accepts into its log must not fail it on restart.

use std::collections::{BTreeMap, BTreeSet};

use checkraft_node::meta_state::MetaState;
use checkraft_node::state::{decode_bitmap, portable_bytes, ShardState};
use checkraft_node::storage::StoredSnapshot;
use checkraft_proto::raft::{log_id, Entry, InstallSnapshot, SnapshotMeta, StoredMembership, Vote};
use checkraft_proto::{
    codec, Command, Grid, MetaCommand, NodeRecord, NodeState, Restore, SetBatch, ShardDescriptor,
    ShardRecord, TypeConfig,
};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, EntryPayload, Membership};
use serde::{de::DeserializeOwned, Serialize};

use super::Target;
use crate::{feedback, samples};

/// The target.
pub const TARGET: Target = Target {
    name: "raft",
    about: "bincode raft bodies (AppendEntries, Vote, InstallSnapshot, TransferLeader requests and responses) and the Restore body",
    run,
    seeds,
    dict: &[
        &[0xfb, 0xff, 0xff],
        &[0xfc, 0xff, 0xff, 0xff, 0xff],
        &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x3a, 0x30, 0x00, 0x00],
        &[0x3b, 0x30],
        &[0x00],
        &[0x01],
        &[0x02],
        &[0x03],
    ],
    max_len: 64 << 10,
};

type AppendResult = Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>>;
type VoteResult = Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>>;
type SnapshotResult = Result<SnapshotResponse<TypeConfig>, Fatal<TypeConfig>>;

/// Decodes `data` as `T`; on success checks that it re-encodes to bytes
/// that decode.
fn decode<T: Serialize + DeserializeOwned>(tag: &str, data: &[u8]) -> Option<T> {
    let decoded = codec::decode::<T>(data);
    feedback::note_result(tag, &decoded);
    let value = decoded.ok()?;
    codec::decode::<T>(&codec::encode(&value))
        .unwrap_or_else(|e| panic!("{tag}: a decoded value re-encodes to bytes that fail: {e}"));
    Some(value)
}

fn shard_for(epoch: u64) -> ShardState {
    ShardState::new(ShardDescriptor {
        shard: 1,
        start: 0,
        end: 1 << 20,
        epoch,
    })
}

/// Decodes `data` as every raft body and acts on what decodes.
pub fn run(data: &[u8]) {
    if let Some(req) = decode::<AppendEntriesRequest<TypeConfig>>("append", data) {
        let mut meta = MetaState::default();
        for entry in &req.entries {
            let stored = codec::encode(entry);
            if let Err(e) = codec::decode::<Entry>(&stored) {
                panic!("an accepted entry does not read back from the log: {e}");
            }
            match &entry.payload {
                EntryPayload::Blank => feedback::note("blank"),
                EntryPayload::Membership(m) => {
                    feedback::note("membership");
                    let _ = m.voter_ids().count();
                }
                EntryPayload::Normal(Command::Meta(c)) => {
                    meta.apply(c);
                }
                EntryPayload::Normal(command) => {
                    let epoch = match command {
                        Command::SetBatch(b) => b.epoch,
                        Command::Restore(r) => r.epoch,
                        _ => 1,
                    };
                    let (response, _) = shard_for(epoch).apply(command);
                    feedback::note(&format!("{:?}", std::mem::discriminant(&response)));
                }
            }
        }
    }
    decode::<VoteRequest<TypeConfig>>("vote", data);
    decode::<TransferLeaderRequest<TypeConfig>>("transfer leader", data);
    if let Some(req) = decode::<InstallSnapshot>("install_snapshot", data) {
        let stored = codec::encode(&StoredSnapshot {
            meta: req.meta.clone(),
            data: req.data.clone(),
        });
        if let Err(e) = codec::decode::<StoredSnapshot>(&stored) {
            panic!("an accepted snapshot does not read back from its store: {e}");
        }
        feedback::note_result(
            "shard snapshot",
            &ShardState::from_snapshot_bytes(&req.data),
        );
        feedback::note_result("meta snapshot", &MetaState::from_snapshot_bytes(&req.data));
    }
    if let Some(restore) = decode::<Restore>("restore", data) {
        let bitmap = decode_bitmap(&restore.bitmap);
        feedback::note_result("restore bitmap", &bitmap);
        if bitmap.is_ok() {
            let (response, _) = shard_for(restore.epoch).apply(&Command::Restore(restore));
            feedback::note(&format!("{:?}", std::mem::discriminant(&response)));
        }
    }
    decode::<AppendResult>("append response", data);
    decode::<VoteResult>("vote response", data);
    decode::<SnapshotResult>("snapshot response", data);
}

fn entry(index: u64, payload: EntryPayload<Command, u64, BasicNode>) -> Entry {
    Entry {
        log_id: log_id(3, 1, index),
        payload,
    }
}

fn membership() -> Membership<u64, BasicNode> {
    Membership::new(
        vec![BTreeSet::from([1, 2, 3])],
        BTreeMap::from([
            (1, BasicNode::new("127.0.0.1:7001")),
            (2, BasicNode::new("127.0.0.1:7002")),
            (3, BasicNode::new("127.0.0.1:7003")),
            (4, BasicNode::new("127.0.0.1:7004")),
        ]),
    )
    .expect("a valid membership")
}

fn meta_init() -> MetaCommand {
    MetaCommand::Init {
        grid: Grid {
            boxes: 1 << 20,
            chunk_size: 4096,
        },
        nodes: vec![NodeRecord {
            id: 1,
            addr: "127.0.0.1:7001".into(),
            state: NodeState::Up,
        }],
        shards: vec![ShardRecord {
            descriptor: ShardDescriptor {
                shard: 1,
                start: 0,
                end: 1 << 20,
                epoch: 1,
            },
            replicas: vec![1],
            leader: Some(1),
        }],
    }
}

/// Real requests with entries of every kind, heartbeats, votes, complete
/// and partial snapshots, restore bodies and responses.
pub fn seeds() -> Vec<Vec<u8>> {
    let bitmaps = samples::bitmaps(1000, 200_000);
    let batch = |n: u32| {
        Command::SetBatch(SetBatch {
            epoch: 1,
            sets: (0..n).map(|i| (i * 4099 % (1 << 20), i % 3 != 0)).collect(),
        })
    };
    let entries = vec![
        entry(5, EntryPayload::Blank),
        entry(6, EntryPayload::Normal(batch(3))),
        entry(7, EntryPayload::Normal(Command::Barrier)),
        entry(
            8,
            EntryPayload::Normal(Command::Restore(Restore {
                epoch: 1,
                bitmap: portable_bytes(&bitmaps[2]),
            })),
        ),
        entry(9, EntryPayload::Membership(membership())),
        entry(10, EntryPayload::Normal(Command::Meta(meta_init()))),
        entry(11, EntryPayload::Normal(batch(40))),
    ];
    let append = |entries: Vec<Entry>| AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(log_id(2, 2, 4)),
        entries,
        leader_commit: Some(log_id(3, 1, 4)),
    };
    let mut out = vec![
        codec::encode(&append(vec![])),
        codec::encode(&AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new(1, 2),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        }),
        codec::encode(&append(entries.clone())),
    ];
    out.extend(entries.into_iter().map(|e| codec::encode(&append(vec![e]))));
    out.push(codec::encode(&VoteRequest::<TypeConfig>::new(
        Vote::new(4, 2),
        Some(log_id(3, 1, 11)),
    )));
    out.push(codec::encode(&VoteRequest::<TypeConfig>::new(
        Vote::new(1, 1),
        None,
    )));
    out.push(codec::encode(&TransferLeaderRequest::<TypeConfig>::new(
        Vote::new_committed(3, 1),
        2,
        Some(log_id(3, 1, 11)),
    )));
    let snapshot = |data: Vec<u8>| InstallSnapshot {
        vote: Vote::new_committed(3, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(3, 1, 11)),
            last_membership: StoredMembership::new(Some(log_id(3, 1, 9)), membership()),
        },
        data,
    };
    for data in samples::snapshots().into_iter().take(4) {
        out.push(codec::encode(&snapshot(data.clone())));
        let half = data.len() / 2;
        out.push(codec::encode(&snapshot(data[..half].to_vec())));
    }
    let mut meta = MetaState::default();
    meta.apply(&meta_init());
    out.push(codec::encode(&snapshot(meta.to_snapshot_bytes())));
    for b in &bitmaps {
        out.push(codec::encode(&Restore {
            epoch: 2,
            bitmap: portable_bytes(b),
        }));
    }
    out.push(codec::encode::<AppendResult>(&Ok(
        AppendEntriesResponse::Success,
    )));
    out.push(codec::encode::<AppendResult>(&Ok(
        AppendEntriesResponse::HigherVote(Vote::new(9, 3)),
    )));
    out.push(codec::encode::<AppendResult>(&Ok(
        AppendEntriesResponse::PartialSuccess(Some(log_id(3, 1, 7))),
    )));
    out.push(codec::encode::<AppendResult>(&Err(RaftError::Fatal(
        openraft::error::Fatal::Stopped,
    ))));
    out.push(codec::encode::<VoteResult>(&Ok(VoteResponse {
        vote: Vote::new(4, 2),
        vote_granted: true,
        last_log_id: Some(log_id(3, 1, 11)),
    })));
    out.push(codec::encode::<SnapshotResult>(&Ok(SnapshotResponse::new(
        Vote::new_committed(3, 1),
    ))));
    out
}
