//! # checkraft-proto: the wire types every checkraft process shares
//!
//! Nodes, gateways and `raftctl` talk to each other with the types in this
//! crate and nothing else, so no binary ever depends on another binary's
//! crate. Every type that crosses a process boundary lives here, with a doc
//! comment on each field.
//!
//! ## Map
//! - [`types`]: identifiers, box indices and the [`ShardDescriptor`].
//! - [`command`]: what goes into a shard's raft log ([`Command`]) and what
//!   applying it answers ([`CommandResponse`], [`Rejection`]).
//! - [`meta`]: the metadata group's state ([`ShardMap`]) and commands.
//! - [`change`]: the events of a shard's change stream ([`ChangeEvent`]).
//! - [`api`]: request and response bodies of the node's HTTP API.
//! - [`control`]: nodes' heartbeats to the control plane ([`NodeReport`])
//!   and what it tells operators ([`ClusterHealth`], `/meta/health`).
//! - [`gateway_registry`]: gateways' reports to the metadata leader and
//!   the registry it answers (`/meta/gateways`).
//! - [`backups`]: the scheduled backups a node lists ([`BackupList`]).
//! - [`raft`]: the openraft type configuration ([`TypeConfig`]).
//! - [`ws`]: the gateway ↔ client WebSocket protocol of `docs/protocol.md`
//!   (a hand-written byte codec, pinned by `testdata/protocol-vectors.json`).
//! - [`codec`]: the one place that calls bincode, plus the length-prefixed
//!   framing of the change stream.
//!
//! ## Encodings
//! - Raft RPCs, raft log entries, snapshots, shard reads and the change
//!   stream are bincode 2 (standard config, serde mode), through [`codec`].
//! - Admin and shard-write bodies are JSON, so that `curl` can drive them.
//!
//! ## Bit order
//! A shard's state is a croaring bitmap of **absolute** box indices (a box
//! `i` is checked iff `i` is in the bitmap). Bitmaps travel in croaring's
//! `Portable` format (the RoaringFormatSpec), which is readable from Java,
//! Go and JavaScript and has no endianness ambiguity.

pub mod api;
pub mod backups;
pub mod change;
pub mod codec;
pub mod command;
pub mod control;
pub mod gateway_registry;
pub mod meta;
pub mod raft;
pub mod types;
pub mod ws;

pub use api::*;
pub use backups::{BackupEntry, BackupList};
pub use change::ChangeEvent;
pub use codec::CodecError;
pub use command::{
    Absorb, Command, CommandResponse, Freeze, Rejection, Restore, SetBatch, Split, Thaw,
};
pub use control::{ClusterHealth, Decision, NodeHealth, NodeReport, TransferLeader};
pub use gateway_registry::{GatewayList, GatewayReport, RegisteredGateway};
pub use meta::{
    AssignId, FinishedOperation, Grid, MetaCommand, MetaOutcome, NodeRecord, NodeState, Operation,
    OperationKind, ShardLocation, ShardMap, ShardRecord, META_GROUP,
};
pub use raft::TypeConfig;
pub use types::*;
