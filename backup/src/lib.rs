//! checkraft grid backups: the file format, its checks, atomic files, a
//! directory of scheduled backups, and taking a backup of a live cluster.
//!
//! Two programs write backups with this crate: `raftctl backup` (on the
//! operator's demand) and the node that leads the metadata group (on a
//! schedule, into its `backup_dir`). Both read them through the same
//! checks: `raftctl verify` and `raftctl restore`, and the node right after
//! writing one. Restoring (mapping a backup onto another layout and
//! sending it to the shards) stays in `raftctl`.
//!
//! ## Data flow
//! - [`take`] reads nothing but what the caller's [`Nodes`] answer: it
//!   probes every node's `/status` ([`Routes`]), then for each shard of
//!   the map asks one replica (the reported leader first, then the map's
//!   hint, then the others) to `POST /admin/groups/{id}/snapshot` and
//!   downloads it with `GET` from that same node, checking its range
//!   against the map. The result is a [`Backup`].
//! - [`file::save`] writes it to `FILE.tmp`, fsyncs it, reads it back
//!   through every check, renames it over `FILE` and fsyncs the directory:
//!   `FILE` is either absent, the previous file, or a complete verified
//!   backup. [`file::load`] reads and checks one.
//! - [`dir`] names scheduled backups `grid-YYYYMMDDTHHMMSSZ.ckb`, lists and
//!   prunes them, and refuses every other name.
//!
//! ## File format, version 1
//!
//! All fixed-width integers are little-endian; "crc32" is CRC-32/ISO-HDLC
//! (the zlib/PNG CRC, as computed by `crc32fast`).
//!
//! | size | field |
//! |---|---|
//! | 8 | magic `b"CKRFTBK\0"` |
//! | 4 | format version, u32 = 1 |
//! | … | the header section |
//! | … | one shard section per shard of the header's map, in ascending range order |
//! | 4 | crc32 of every byte before it, from the magic on |
//!
//! Nothing may follow the final crc32.
//!
//! A **section** is `len: u32`, then `len` bytes of body, then `crc: u32`,
//! the crc32 of the four `len` bytes followed by the body. A header body
//! is at most 16 MiB and a shard body at most
//! [`checkraft_proto::codec::DECODE_LIMIT`] (64 MiB). Bodies are
//! [`checkraft_proto::codec`] encodings (bincode 2, standard configuration:
//! varint integers, length-prefixed strings, vectors and maps, fields in
//! declaration order) of:
//!
//! - header ([`format::Header`]): `{ created_ms: u64, tool: String, map:
//!   ShardMap }`, where `created_ms` is when the backup started (ms since
//!   the Unix epoch), `tool` names the writer (`raftctl 0.1.0`,
//!   `checkraft-node 0.1.0 (node 3)`) and `map` is the source cluster's
//!   [`checkraft_proto::ShardMap`] (grid, nodes, shards), with `operation`
//!   always `None`. The number of shard sections is the number of shards
//!   in this map.
//! - shard ([`format::ShardSection`]): `{ descriptor: ShardDescriptor,
//!   seq: u64, snapshot_id: String, last_log_index: u64, bitmap: Vec<u8>
//!   }`: the shard's descriptor as its snapshot recorded it, the change
//!   number and raft log index the snapshot reflects (index 0 when it
//!   covers no entry), openraft's snapshot id, and the checked boxes as
//!   croaring `Portable` bytes of **absolute** indices, run-optimized.
//!
//! ## Validity
//! A reader ([`format::read`]) accepts a file only when all of this holds,
//! and otherwise names what failed: the magic; version 1; no truncation;
//! every section's length within its limit and its crc32 matching; the
//! final crc32 matching; no trailing bytes; bodies that decode; a map with
//! a grid; one section per map shard, each with a valid descriptor whose id
//! and range match the map's record for it, no id twice; sections sorted by
//! range start, not overlapping, covering exactly `[0, grid.boxes)`; every
//! bitmap decoding (`try_deserialize`, which validates) with all its bits
//! in its shard's range. Lengths are checked before anything is allocated,
//! and bodies are read only as far as the file actually goes.
//!
//! ## Caveats
//! - A backup is consistent per shard (each shard at its own snapshot's
//!   `seq`), not across shards: writes that land while it runs are in
//!   some shards' snapshots and not in others.
//! - When a shard's leader cannot be reached, its snapshot comes from a
//!   follower, which may not have applied the very last acknowledged
//!   writes yet.
//! - Snapshots travel in one HTTP body each: a shard's bitmap must fit the
//!   node's body limit (16 MiB by default) to be restored.
//!
//! ## Files
//! - [`contents`]: the in-memory [`Backup`] and [`ShardBackup`].
//! - [`format`](mod@format): bytes ↔ sections, checksums; [`check`]: what
//!   makes a decoded backup valid; [`file`](mod@file): atomic writes and
//!   reads; [`dir`]: scheduled backups' names, listing and pruning.
//! - [`nodes`]: the two calls a backup makes, implemented by the caller;
//!   [`route`]: which node to ask first; [`download`]: [`take`].
//! - [`error`]: the crate's one [`Error`].

pub mod check;
pub mod contents;
pub mod dir;
pub mod download;
pub mod error;
pub mod file;
pub mod format;
pub mod nodes;
pub mod route;

pub use contents::{Backup, ShardBackup};
pub use download::{take, Step};
pub use error::{Error, Result};
pub use nodes::Nodes;
pub use route::Routes;
