//! `http`: the JSON bodies of the node's HTTP API, parsed exactly as
//! `node/src/http` parses them (`serde_json::from_slice`), then handed to
//! the pure logic behind each endpoint.
//!
//! Every input is parsed as each of: [`SetBatch`] (`POST
//! /shards/{g}/write`), [`CreateGroup`] (`POST /admin/groups`),
//! [`MetaCommand`] (`POST /admin/meta`), [`AddLearner`], [`ChangeMembership`],
//! [`RemoveNode`] (`/admin/groups/{g}/…`), [`AssignId`] (`POST
//! /admin/node/id`), and the JSON answers other processes parse from a
//! node: [`ShardMap`] (`GET /meta/map`, followed by every gateway) and
//! [`WriteOutcome`]. A value that parses must serialize and parse back to
//! itself; a `SetBatch` within the node's set limit is applied to a shard
//! state, a `MetaCommand` to an empty and to an initialized metadata
//! state, a `CreateGroup` descriptor is validated.

use std::collections::{BTreeMap, BTreeSet};

use checkraft_node::meta_state::MetaState;
use checkraft_node::state::ShardState;
use checkraft_node::NodeConfig;
use checkraft_proto::{
    AddLearner, AssignId, ChangeMembership, Command, CreateGroup, Grid, MetaCommand, NodeRecord,
    NodeState, OperationKind, Rejection, RemoveNode, SetBatch, ShardDescriptor, ShardMap,
    ShardRecord, WriteOutcome,
};
use serde::{de::DeserializeOwned, Serialize};

use super::Target;
use crate::feedback;

/// The target.
pub const TARGET: Target = Target {
    name: "http",
    about: "node HTTP JSON bodies: SetBatch, CreateGroup, MetaCommand, AddLearner, ChangeMembership, RemoveNode, AssignId, ShardMap, WriteOutcome",
    run,
    seeds,
    dict: &[
        b"\"epoch\"", b"\"sets\"", b"\"descriptor\"", b"\"members\"", b"\"initialize\"",
        b"\"node_id\"", b"\"addr\"", b"\"voters\"", b"\"retain\"", b"\"id\"", b"\"init\"",
        b"\"add_node\"", b"\"set_node_state\"", b"\"set_replicas\"", b"\"leader_hints\"",
        b"\"begin_operation\"", b"\"operation_step\"", b"\"end_operation\"", b"\"grid\"",
        b"\"shards\"", b"\"nodes\"", b"\"boxes\"", b"\"chunk_size\"", b"\"start\"", b"\"end\"",
        b"\"shard\"", b"\"replicas\"", b"\"leader\"", b"\"state\"", b"\"removed\"",
        b"18446744073709551615", b"18446744073709551616", b"4294967295", b"4294967296",
        b"-1", b"1e999", b"0.5", b"true", b"false", b"null", b"[]", b"{}", b"[[1,true]]",
        b"\"\\u0000\"", b"\"\\ud800\"", b"\\", b"\"", b":", b",", b"[", b"]", b"{", b"}",
    ],
    max_len: 64 << 10,
};

/// A shard state covering boxes `[0, 1_000_000)` at epoch 1.
fn shard() -> ShardState {
    ShardState::new(ShardDescriptor {
        shard: 1,
        start: 0,
        end: 1_000_000,
        epoch: 1,
    })
}

/// Parses `data` as a `T`; on success checks that it round-trips.
fn parse<T>(tag: &str, data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let parsed = serde_json::from_slice::<T>(data);
    feedback::note_result(tag, &parsed);
    let value = parsed.ok()?;
    let again: T = serde_json::from_slice(&serde_json::to_vec(&value).expect("serializes"))
        .expect("a parsed body serializes to JSON that parses");
    assert_eq!(again, value, "{tag} does not round-trip through JSON");
    Some(value)
}

/// Parses `data` as every JSON body and runs the endpoint logic.
pub fn run(data: &[u8]) {
    if let Some(batch) = parse::<SetBatch>("set_batch", data) {
        if batch.sets.len() <= NodeConfig::default().max_batch_sets {
            let (response, event) = shard().apply(&Command::SetBatch(batch));
            feedback::note(match response {
                checkraft_proto::CommandResponse::Applied { .. } => "applied",
                _ => "rejected",
            });
            assert_eq!(
                event.is_some(),
                matches!(response, checkraft_proto::CommandResponse::Applied { .. }),
                "an applied batch has exactly one change event"
            );
        }
    }
    if let Some(create) = parse::<CreateGroup>("create_group", data) {
        feedback::note_result("validate", &create.descriptor.validate());
    }
    if let Some(command) = parse::<MetaCommand>("meta", data) {
        for mut state in [MetaState::default(), initialized_meta()] {
            let response = state.apply(&command);
            if let checkraft_proto::CommandResponse::Rejected {
                rejection: Rejection::MetaRefused { detail },
            } = &response
            {
                feedback::note(&feedback::normalize(detail));
            }
        }
    }
    parse::<AddLearner>("add_learner", data);
    if let Some(change) = parse::<ChangeMembership>("membership", data) {
        feedback::note(if change.voters.is_empty() {
            "no voters"
        } else {
            "voters"
        });
    }
    parse::<RemoveNode>("remove_node", data);
    parse::<AssignId>("assign_id", data);
    if let Some(map) = parse::<ShardMap>("shard_map", data) {
        let _ = map.shard_for(12345);
    }
    parse::<WriteOutcome>("write_outcome", data);
}

fn node(id: u64) -> NodeRecord {
    NodeRecord {
        id,
        addr: format!("127.0.0.1:700{id}"),
        state: NodeState::Up,
    }
}

fn record(shard: u64, start: u64, end: u64) -> ShardRecord {
    ShardRecord {
        descriptor: ShardDescriptor {
            shard,
            start,
            end,
            epoch: 1,
        },
        replicas: vec![1, 2, 3],
        leader: Some(1),
    }
}

fn init() -> MetaCommand {
    MetaCommand::Init {
        grid: Grid {
            boxes: 1_000_000,
            chunk_size: 4096,
        },
        nodes: vec![node(1), node(2), node(3)],
        shards: vec![record(1, 0, 499_712), record(2, 499_712, 1_000_000)],
    }
}

/// A metadata state after `init()`.
fn initialized_meta() -> MetaState {
    let mut m = MetaState::default();
    m.apply(&init());
    m
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializes")
}

/// Real bodies of every type, compact and pretty.
pub fn seeds() -> Vec<Vec<u8>> {
    let map = initialized_meta().map;
    let mut out = vec![
        json(&SetBatch {
            epoch: 1,
            sets: vec![(5, true), (6, false), (999_999, true)],
        }),
        json(&SetBatch {
            epoch: 1,
            sets: (0..64).map(|i| (i * 7919, i % 2 == 0)).collect(),
        }),
        json(&CreateGroup {
            descriptor: record(3, 0, 4096).descriptor,
            members: BTreeMap::from([(1, "127.0.0.1:7001".into()), (2, "h:2".into())]),
            initialize: true,
        }),
        br#"{"descriptor":{"shard":3,"start":0,"end":10,"epoch":1}}"#.to_vec(),
        json(&AddLearner {
            node_id: 4,
            addr: "127.0.0.1:7004".into(),
        }),
        json(&ChangeMembership {
            voters: BTreeSet::from([1, 2, 4]),
            retain: true,
        }),
        json(&RemoveNode { node_id: 3 }),
        json(&AssignId { id: 9 }),
        json(&map),
        serde_json::to_vec_pretty(&map).expect("serializes"),
        json(&WriteOutcome::ForwardToLeader {
            leader_id: Some(2),
            leader_addr: Some("127.0.0.1:7002".into()),
        }),
        json(&WriteOutcome::Rejected {
            rejection: Rejection::StaleEpoch { current: 2, got: 1 },
        }),
    ];
    let meta = [
        init(),
        MetaCommand::AddNode {
            addr: "127.0.0.1:7009".into(),
        },
        MetaCommand::SetNodeState {
            node: 2,
            state: NodeState::Draining,
        },
        MetaCommand::SetReplicas {
            shard: 1,
            replicas: vec![1, 2],
        },
        MetaCommand::LeaderHints {
            hints: vec![(1, 2), (2, 3)],
        },
        MetaCommand::BeginOperation {
            kind: OperationKind::MoveReplica {
                shard: 1,
                from: 1,
                to: 3,
            },
        },
        MetaCommand::BeginOperation {
            kind: OperationKind::RemoveNode { node: 3 },
        },
        MetaCommand::OperationStep {
            id: 2,
            step: "moved 1 of 2".into(),
        },
        MetaCommand::EndOperation { id: 2 },
    ];
    out.extend(meta.iter().map(json));
    out.push(serde_json::to_vec_pretty(&meta[0]).expect("serializes"));
    out
}
