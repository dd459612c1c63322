//! # checkraft-node: raft-replicated bitmap shards
//!
//! A `checkraft-node` process hosts many small raft groups ("shards"). Each
//! shard owns the box indices `[start, end)` and replicates their state, a
//! croaring bitmap, on (usually) three nodes with openraft 0.10. All groups
//! of a process share one sled database, one flush task and one HTTP
//! client per peer.
//!
//! ## Write path
//! 1. A client (a gateway) `POST`s a [`checkraft_proto::SetBatch`] to
//!    `/shards/{id}/write` on the shard's leader ([`http`] → [`group`]).
//!    A follower answers 421 `ForwardToLeader` with the leader's id and
//!    address.
//! 2. The leader appends the command as one raft entry. [`storage::LogStore`]
//!    writes it to the group's sled tree and hands openraft's callback to
//!    the [`storage::Flusher`]; followers do the same when the entry
//!    arrives, and answer the leader only after their flush.
//! 3. Once a quorum has flushed the entry, it is committed and applied:
//!    [`state_machine::StateMachine`] runs [`state::ShardState::apply`],
//!    which checks the epoch and the range (a failed check is a
//!    [`checkraft_proto::Rejection`] value, never an error), sets the bits,
//!    bumps `seq`, and pushes a change event into [`changes::ChangeLog`].
//! 4. The HTTP answer is `{log_id, seq}`: the write is durable on a quorum.
//!
//! ## The durability rule
//! Nothing is reported durable before a flush covers it. sled's `flush` is
//! database-wide, so [`storage::Flusher`] batches every waiter (append
//! callbacks of all groups, votes, truncates, purges, snapshots) behind one
//! flush: group commit. openraft may submit the next append before the
//! previous one is flushed, but it replies to the leader, and counts the
//! leader's own copy, only once the append's callback reports the flush,
//! so an acknowledged write is on disk on a quorum, and kill -9 at any
//! instant loses none.
//!
//! ## Snapshot format
//! The bitmap lives in memory. A snapshot is bincode of
//! [`checkraft_proto::ShardSnapshot`]: format version (2; version 1 still
//! reads), descriptor `{shard, start, end, epoch}`, `seq`, the bitmap in
//! croaring `Portable` bytes after `run_optimize`, and what splits and
//! merges left (frozen, moved ranges). openraft builds one every
//! [`config::NodeConfig::snapshot_every`] entries (and on demand through
//! the admin API), stores it in the group's tree with its meta and flushes
//! it before purging the log it covers. A restart loads the latest
//! snapshot and re-applies the committed entries after it
//! (`save_committed`/`read_committed`), so restart time is bounded by
//! `snapshot_every`, not by the log's history. Lagging or new followers
//! receive the whole snapshot in one `POST /raft/{g}/snapshot`
//! ([`checkraft_proto::raft::InstallSnapshot`]).
//!
//! ## Elections
//! Every group runs raft Pre-Vote ([`config::NodeConfig::pre_vote`]): a
//! follower whose election timer fires first asks its peers whether they
//! would vote for it, and raises its term only if a quorum would. Peers
//! that still hear from a leader say no, so a node that was cut off
//! cannot inflate its term and depose a healthy leader when it returns
//! (`integration/tests/partition_heal.rs`). A node that stops on SIGTERM
//! first hands each group it leads to a caught-up voter ([`handover`],
//! the `transfer-leader` RPC), so a planned stop costs one election round
//! trip instead of an election timeout. An unplanned one is nearly as
//! cheap when only the process died: followers probe their leaders'
//! ports, and when one refuses connections the most caught-up survivor
//! takes over at once, as if the dead leader had handed over
//! ([`succession`]); a dead host still waits out the lease and a timer.
//! A group reopened after a restart always elects, in a new term: a
//! leader may have lost entries it replicated before its own flush, and
//! resuming its term would reuse their log ids. Only a split's child just
//! seeded in this process resumes its parent leader's term
//! ([`config::NodeConfig::raft_config`]).
//!
//! ## Reads
//! `GET /shards/{id}/read` serves the replica's applied state (any
//! replica, possibly stale). With `linearizable=true` the leader first
//! confirms its leadership with a quorum, then, if its log holds entries it
//! has not applied, commits a no-op [`checkraft_proto::Command::Barrier`]
//! and waits for it. openraft's read index alone is not enough: a
//! leader that resumed its term at start (a split's child; any restarted
//! leader before reopened groups stopped doing so) can take a read index
//! below writes acknowledged before (see [`group::ShardGroup::read`]).
//!
//! ## The change stream
//! `GET /shards/{id}/changes?from=SEQ` ([`subscription`]) streams
//! length-prefixed bincode [`checkraft_proto::ChangeEvent`] frames: the
//! retained events after `SEQ` (or a full `Snapshot` event when they are
//! no longer retained), then live events, with a `Progress` marker while
//! idle. Every accepted command is exactly one event and `seq` is
//! replicated state, so any replica can serve the stream and a subscriber
//! can resume anywhere from its last `seq` with no gap and no duplicate.
//!
//! ## The metadata group
//! Group [`checkraft_proto::META_GROUP`] (0) runs on the same machinery,
//! with a [`meta_state::MetaState`] (the [`checkraft_proto::ShardMap`]:
//! node registry, grid, shards with replicas and leader hints, the
//! operation in progress) instead of a bitmap. Every node of a cluster
//! hosts a replica of it (three voters, the rest learners), so any node
//! answers map queries from its own copy, tagged with the map version.
//! Each node reports the shards it leads every `report_ms`, keeping leader
//! hints fresh. A node started without an id waits until `raftctl node
//! add` allocates one in the metadata group ([`node`]).
//!
//! ## The control plane
//! Whichever node leads the metadata group runs [`control::drive`]: every
//! node sends it a heartbeat ([`checkraft_proto::NodeReport`], every
//! `report_ms`), held in memory ([`control::liveness`]). From the map and
//! the reports it runs the recorded operation (split, merge, repair,
//! removal, replica move), or makes one decision ([`control::schedule`]):
//! mark a node silent for `down_after_ms` down and rebuild its replicas
//! elsewhere, delete a returned node's stale replicas and take it back,
//! even out replicas and leaders (`rebalance`), split a shard written
//! faster than `split_writes_per_second`. Operations are state in the
//! metadata group, so a new leader resumes its predecessor's; `raftctl`
//! only records intent and watches. `docs/control-plane.md` has the
//! design.
//!
//! The metadata leader also keeps the live gateway registry
//! ([`gateways`]), in memory and outside the raft log: gateways with a
//! `public_endpoint` report their endpoint, connection count and load
//! every `register_interval_ms` (`POST /meta/gateways`), and `GET
//! /meta/gateways` lists those heard from within `gateway_down_after_ms`
//! (default 6000). Other nodes answer both with 421 naming the leader. A
//! new metadata leader starts with an empty registry, full again within
//! one report interval.
//!
//! ## Scheduled backups
//! With [`config::NodeConfig::backup_dir`] set, the metadata leader writes
//! a grid backup (the format of `raftctl backup`, crate
//! `checkraft-backup`) there every
//! [`config::NodeConfig::backup_interval_ms`], measured from the newest
//! one in the directory: each shard's snapshot from a replica over the
//! nodes' signed HTTP API, written atomically as
//! `grid-YYYYMMDDTHHMMSSZ.ckb`, read back through every check, and only
//! the newest [`config::NodeConfig::backup_keep`] kept. A failure (full
//! disk, unwritable directory) is logged and counted, never fatal
//! ([`backup_schedule`]).
//!
//! ## Who may call (trust boundaries)
//! Every call between cluster processes is signed (`checkraft-auth`): nodes
//! sign with the cluster secret, gateways with the gateway secret, and the
//! operator sends the admin bearer token. [`http::access`] checks the
//! credential before any handler runs and holds the table of what each
//! may call: raft RPCs only nodes; `/admin/*` and restores nodes and the
//! operator; shard reads, writes, change streams and map reads also
//! gateways; `/health`, `/ready`, `/status` and `/metrics` anyone. A node does not
//! start without a cluster secret. Behind authentication,
//! [`raft_check`] refuses raft bodies that are impossible (a term above
//! 2^48, entries out of order) before openraft sees them, and a replica
//! whose own stored vote is impossible is not started: the node keeps
//! serving its other groups, answers 503 for that one, and `/health`
//! (503) names the group, the file and the reason (`failed_groups`).
//! `docs/reliability.md` has the threat model.
//!
//! ## Metrics
//! `GET /metrics` ([`metrics`]) exports Prometheus metrics: per shard
//! (label `shard`) the raft term, leadership, commit and applied index,
//! `seq`, entries and sets applied, snapshots and their size; per process
//! the group-commit flush latency and batch size, splits and merges run,
//! and scheduled backups written or failed. Per-shard gauges are read
//! from each group's raft metrics at scrape time.
//!
//! ## HTTP API
//! Errors are JSON [`checkraft_proto::ApiError`] `{kind, message}` with
//! status 400 (malformed body or query, impossible raft request), 401 (no
//! or a bad credential), 403 (a credential not allowed on the endpoint),
//! 404 (unknown
//! group or path), 409 (conflict), 413 (body too large), 503 (no leader,
//! timeout: retry is safe since sets are absolute).
//!
//! | endpoint | request | response |
//! |---|---|---|
//! | `GET /health` | | `ok`: the process is alive; 503 naming every group that failed to load |
//! | `GET /ready` | | `ready`: no failed group, and every hosted group knows a leader or at least the metadata group does (a node without groups is ready); else 503 with the reasons ([`http::ready`]) |
//! | `GET /status` | | JSON [`checkraft_proto::NodeStatus`] |
//! | `GET /metrics` | | Prometheus / OpenMetrics text ([`metrics`]; names in `docs/metrics.md`); no auth |
//! | `POST /raft/{g}/append` | bincode `AppendEntriesRequest` | bincode `Result<AppendEntriesResponse, RaftError>` |
//! | `POST /raft/{g}/vote` | bincode `VoteRequest` | bincode `Result<VoteResponse, RaftError>` |
//! | `POST /raft/{g}/pre-vote` | bincode `VoteRequest` (at the candidate's hypothetical next term) | bincode `Result<VoteResponse, RaftError>` |
//! | `POST /raft/{g}/snapshot` | bincode [`checkraft_proto::raft::InstallSnapshot`] | bincode `Result<SnapshotResponse, Fatal>` |
//! | `POST /raft/{g}/transfer-leader` | bincode `TransferLeaderRequest` | bincode `Result<TransferLeaderResponse, Fatal>` |
//! | `POST /admin/groups` | JSON [`checkraft_proto::CreateGroup`] | 201/200 JSON [`checkraft_proto::GroupCreated`]; 409 if the id exists with another range |
//! | `POST /admin/groups/{g}/learners` | JSON [`checkraft_proto::AddLearner`] | JSON [`checkraft_proto::MembershipChanged`] once the learner caught up; 409 if not leader |
//! | `POST /admin/groups/{g}/membership` | JSON [`checkraft_proto::ChangeMembership`] | JSON [`checkraft_proto::MembershipChanged`]; 409 if not leader or ids unknown |
//! | `POST /admin/groups/{g}/snapshot` | | JSON [`checkraft_proto::SnapshotInfo`] of the new snapshot |
//! | `GET /admin/groups/{g}/snapshot` | | bincode [`checkraft_proto::SnapshotDownload`]; 404 if none yet |
//! | `GET /admin/groups/{g}/metrics` | | JSON [`checkraft_proto::GroupStatus`] |
//! | `POST /shards/{g}/write` | JSON [`checkraft_proto::SetBatch`] | JSON [`checkraft_proto::WriteOutcome`]: 200 applied `{log_id, seq, changed}`, 409 rejected, 421 forward, 503 no leader |
//! | `POST /shards/{g}/restore` | bincode [`checkraft_proto::Restore`] | as write |
//! | `POST /shards/{g}/reshape` | bincode [`checkraft_proto::Command`]: `Split`, `Freeze`, `Thaw` or `Absorb` only (400 otherwise) | as write |
//! | `GET /shards/{g}/read?start=&end=&linearizable=` | | bincode [`checkraft_proto::ShardRead`]; 421 forward when linearizable on a follower |
//! | `GET /shards/{g}/leader` | | JSON [`checkraft_proto::LeaderView`]: the leader this replica knows, from its own raft state |
//! | `GET /shards/{g}/changes?from=SEQ` | | stream of frames (see [`checkraft_proto::codec`]) |
//! | `GET /meta/map?since=V&wait_ms=MS` | | JSON [`checkraft_proto::ShardMap`] from this node's metadata replica; with `since`, waits (≤ 60 s) until the version exceeds V; 503 if the node hosts no metadata replica |
//! | `GET /meta/shards/{id}` | | JSON [`checkraft_proto::ShardLocation`]: the shard, its replicas' addresses, the map version |
//! | `POST /meta/gateways` | JSON [`checkraft_proto::GatewayReport`] (a gateway's report) | JSON [`checkraft_proto::GatewayList`] after recording it; 400 malformed (bad JSON, endpoint not `ws://`/`wss://`, load over 1000); 409 registry full (1024); on a node that does not lead the metadata group 421 [`checkraft_proto::WriteOutcome`] `forward_to_leader` (503 no leader known) |
//! | `GET /meta/gateways` | | JSON [`checkraft_proto::GatewayList`]: the gateways that reported within `gateway_down_after_ms`, with connections, load and the age of their last report; 421/503 as above off the leader |
//! | `POST /admin/meta` | JSON [`checkraft_proto::MetaCommand`] | JSON [`checkraft_proto::WriteOutcome`]: 200 `meta_applied`, 409 refused, 421 forward to the meta leader |
//! | `POST /admin/node/id` | JSON [`checkraft_proto::AssignId`] | `{}`; 409 if the node already has another id |
//! | `POST /admin/leadership/handover` | | JSON [`checkraft_proto::Handover`]: each group this node led moved to a caught-up voter, or kept with the reason (also done on SIGTERM, see [`handover`]) |
//! | `POST /admin/groups/{g}/elect` | | `{}`: this node campaigns for leadership of the group |
//! | `POST /admin/groups/{g}/transfer` | JSON [`checkraft_proto::TransferLeader`] | `{}`: the leader hands leadership to that voter; 409 if not leader or not a voter |
//! | `POST /meta/report` | JSON [`checkraft_proto::NodeReport`] (nodes only) | `{}` at the metadata leader; 421 naming it elsewhere; 404/409 for an unregistered node or a wrong address |
//! | `GET /meta/health` | | JSON [`checkraft_proto::ClusterHealth`] from the metadata leader (421 elsewhere): each node's last report, write rates, recent decisions |
//! | `POST /admin/groups/{g}/remove-node` | JSON [`checkraft_proto::RemoveNode`] | JSON [`checkraft_proto::MembershipChanged`]; leader only (else 409) |
//! | `DELETE /admin/groups/{g}` | | `{}`: stops this node's replica and deletes its data |
//! | `GET /admin/backups` | | JSON [`checkraft_proto::BackupList`]: the scheduled backups in this node's `backup_dir`, its schedule and last failure |
//! | `GET /admin/backups/{name}` | | the backup file (`application/octet-stream`); 400 for a name that is not `grid-YYYYMMDDTHHMMSSZ.ckb`, 404 if absent or backups are off |
//!
//! `/admin/*` and restores require `Authorization: Bearer <admin_token>`
//! ([`config::NodeConfig::admin_token`]) or a node's signature; see
//! [`http::access`] for every endpoint. Creating a group: `POST
//! /admin/groups` on every member with the same descriptor, with
//! `initialize: true` and the member map on exactly one. Adding a replica:
//! create the group on the new node (no `initialize`), then `learners` and
//! `membership` on the leader.
//!
//! ## Caveats
//! - Calls are authenticated, not encrypted: whoever can read the
//!   cluster network sees the data and can replay a captured call within
//!   30 s. Run nodes on a private network (or WireGuard) where that matters.
//! - sled has open reports of corruption after abrupt stops; the kill -9
//!   cluster test is our evidence that our use is safe. Storage stays behind
//!   the [`storage`] module so an engine swap stays local.
//! - A shard's descriptor comes from the create call until the first
//!   snapshot carries it; range changes are entries in the shard's own log
//!   (`Split`, `Freeze`, `Thaw`, `Absorb`: [`split_merge`]), a split's
//!   child starts from its parent's entry ([`birth`]), and the metadata
//!   leader runs split and merge operations ([`reshape`]); see
//!   `docs/resharding.md`.
//! - Heartbeats live only in the metadata leader's memory: a new leader
//!   waits `down_after_ms` before it calls anyone down, and one operation
//!   runs at a time, so a big cluster rebalances one replica at a time.

pub mod backup_schedule;
pub mod birth;
pub mod changes;
pub mod config;
pub mod control;
pub mod error;
pub mod faults;
pub mod gateways;
pub mod group;
pub mod handover;
pub mod http;
pub mod logging;
pub mod meta_state;
pub mod metrics;
pub mod network;
pub mod node;
pub mod raft_check;
pub mod reshape;
pub mod server;
pub mod split_merge;
pub mod state;
pub mod state_machine;
pub mod storage;
pub mod subscription;
pub mod succession;

pub use config::NodeConfig;
pub use error::{Error, Result};
pub use server::run;
