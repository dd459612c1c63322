//! # checkraft-fuzz: fuzzing checkraft's decoders on the stable toolchain
//!
//! Every byte string a checkraft process accepts from outside (a browser,
//! a peer node, an operator's file) goes through a decoder. This crate
//! holds one fuzz target per decoder family, a mutation runner that needs
//! nothing but stable Rust, a short CI run of every target, and AFL++
//! entry points for coverage-guided long runs.
//!
//! ## Targets
//! Each target is one `fn(&[u8])` in [`targets`] (one file per target),
//! with seeds made by the project's real encoders:
//!
//! | target | what it decodes | seeds |
//! |---|---|---|
//! | `ws` | [`targets::ws`]: `ClientMessage::decode` (gateway) and `ServerMessage::decode` (clients); a decoded message must re-encode to the same bytes | every message type from the real encoders + `testdata/protocol-vectors.json` |
//! | `http` | [`targets::http`]: the node's JSON bodies (`SetBatch`, `CreateGroup`, `MetaCommand`, `AddLearner`, `ChangeMembership`, `RemoveNode`, `AssignId`) and the JSON a gateway or `raftctl` parses from a node (`ShardMap`, `WriteOutcome`); then the endpoint logic (shard `apply`, metadata `apply`, descriptor validation); JSON round trip | real bodies of each type |
//! | `raft` | [`targets::raft`]: bincode `AppendEntriesRequest<TypeConfig>`, `VoteRequest<TypeConfig>`, `InstallSnapshot`, `TransferLeaderRequest<TypeConfig>`, the `Restore` body, and the raft responses a node decodes from peers; then entries applied, snapshots loaded, restore bitmaps decoded | real requests with every entry kind, real snapshots, real restore bodies |
//! | `backup` | [`targets::backup`]: the backup reader of `checkraft-backup` (`format::read` + `check`), raw and with checksums recomputed so mutations reach the bodies; write-back round trip | files from the real writer, 1–8 shards |
//! | `snapshot` | [`targets::snapshot`]: `ShardState::from_snapshot_bytes` (bincode `ShardSnapshot` + croaring `try_deserialize::<Portable>`), `StoredSnapshot`, `SnapshotDownload`, `ShardRead`, metadata snapshots, raw `Portable` bitmaps; bitmap and snapshot round trips | real snapshots of every container kind |
//! | `frames` | [`targets::frames`]: the change stream's `FrameReader::next_frame::<ChangeEvent>`, whole and split into 1–64-byte chunks (same result required), then the gateway's `ShardState::apply` | real streams: snapshot, changes, progress |
//!
//! ## Running
//! Short (what CI runs, in debug, a few seconds per target):
//! ```sh
//! cargo test -p checkraft-fuzz --test short
//! ```
//! Long (release; at least 10 million inputs per target):
//! ```sh
//! cargo build --release -p checkraft-fuzz
//! ./target/release/fuzz --target all --iterations 10000000 --seed 1
//! ./target/release/fuzz --target ws --iterations 100000 --seed 7   # one target
//! ./target/release/fuzz --list                                     # the targets
//! ./target/release/fuzz --target backup --replay fuzz/artifacts/backup/crash-…   # reproduce
//! ./target/release/fuzz --target http --corpus fuzz/afl-out/http/default/queue   # start from AFL's finds too
//! ```
//! The runner ([`engine`]) takes a seed corpus of valid inputs, applies
//! stacks of structure-aware mutations ([`mutate`]: bit flips, interesting
//! bytes and words, length-field inflation, truncation, erasure,
//! insertion, duplication, splicing, dictionary tokens), keeps inputs that
//! reach a new outcome feature ([`feedback`]), and prints inputs/s,
//! inputs, CPU time, panics, hangs and peak RSS. It exits non-zero on any
//! finding. Crashing inputs (and a minimized copy, and the backtrace) go
//! to `fuzz/artifacts/TARGET/`. Results of the long runs are in
//! `docs/reliability.md`.
//!
//! Coverage-guided (AFL++ through `cargo-afl`, stable toolchain):
//! ```sh
//! cargo install cargo-afl            # ~30 s; builds AFL++ too
//! CARGO_TARGET_DIR=target/afl cargo afl build --release -p checkraft-fuzz --features afl --bin afl
//! ./target/release/fuzz --target ws --write-seeds fuzz/corpus/ws
//! mkdir -p fuzz/afl-out
//! AFL_SKIP_CPUFREQ=1 CHECKRAFT_FUZZ_TARGET=ws \
//!   cargo afl fuzz -i fuzz/corpus/ws -o fuzz/afl-out/ws target/afl/release/afl
//! ```
//! (`-V SECONDS` bounds the run; `AFL_NO_UI=1` for a log instead of the
//! screen. Crashes land in `fuzz/afl-out/ws/default/crashes/`; replay one
//! with `fuzz --target ws --replay FILE`.)
//!
//! ## What passing means
//! For every input, a target must:
//! - **not panic**: no `unwrap`, index, overflow or assertion failure in
//!   the decoders or in the round-trip checks above (panics are caught
//!   with `catch_unwind`, counted per location, saved);
//! - **not hang**: each input finishes within the per-input limit, 1 s of
//!   CPU time by default (`--time-limit-ms`). Every input's wall time is
//!   measured; one slower than a tenth of the limit (at most 50 ms) is run
//!   again under the thread's CPU clock, so being descheduled on a busy
//!   machine is not a hang. A typical input takes microseconds, so
//!   anything near the limit is a complexity bug. A watchdog ends the run
//!   (exit 3) if one input never finishes (`--hard-time-limit-s`, default
//!   30 s wall);
//! - **stay in bounded memory**: no input may grow the heap by more than
//!   256 MiB (`--max-input-heap-mib`; the codec's allocation limit is 64
//!   MiB), counted by the [`mem::Counting`] allocator, and the process's
//!   peak RSS (sampled from `/proc/self/statm`, plus the kernel's `VmHWM`)
//!   must stay under 1 GiB (`--max-rss-mib`) over the whole run, so a leak
//!   or an allocation driven by a length field shows up. croaring's own
//!   allocations are native and counted by RSS only.

pub mod engine;
pub mod feedback;
pub mod mem;
pub mod mutate;
pub mod rng;
pub mod samples;
pub mod signals;
pub mod targets;

pub use targets::{by_name, Target, TARGETS};
