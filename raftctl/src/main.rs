//! # raftctl: the checkraft operator's tool
//!
//! One binary for everything an operator does to a cluster. Every command
//! talks HTTP to the nodes (any node will do as the entry point, given with
//! `--cluster`), using the wire types of `checkraft-proto`:
//!
//! - the **shard map** comes from the metadata group (`GET /meta/map` on
//!   any node, which serves its own replica's copy with its version);
//! - **metadata changes** are `POST /admin/meta` with a
//!   [`checkraft_proto::MetaCommand`], sent to the meta leader (a follower
//!   answers 421 with the leader's address, which [`client`] follows);
//! - **shard operations** (membership, snapshots, restore) go to the shard
//!   leader named in the map, again following 421s.
//!
//! Admin calls carry `Authorization: Bearer <token>`: `--token`, else
//! `$CHECKRAFT_TOKEN`, else the token file `raftctl up` writes
//! (`<data-dir>/token`, found through `./data/token`).
//!
//! ## Map
//! - [`cli`]: the clap command tree, which is the reference (`--help`).
//! - [`client`]: [`client::ClusterClient`], the HTTP client every command
//!   uses.
//! - [`commands`]: one module per command family.
//! - [`backup`]: `backup`, `backup list`, `restore`, `verify`: the
//!   command-line glue (progress bars, summaries, the restore's mapping
//!   and upload) around the `checkraft-backup` crate, which holds the file
//!   format, its checks and taking a backup. Scheduled backups are written
//!   by the metadata leader (the node's `backup_schedule`); this tool lists
//!   them (`GET /admin/backups` on every node) and restores one by name.
//! - [`up`]: the one-command local cluster; [`keeper`] restarts its
//!   processes when they die; [`control`] is its socket for `node
//!   stop|start`, and [`watch`] prints what the cluster does meanwhile.
//! - [`supervisor`]: the child processes of a local cluster (`up`, `bench`).
//! - [`bench`](mod@bench): `raftctl bench`, the websocket load generator and its
//!   scenarios (throughput with redis, day, connections, failover,
//!   restart, reshard).
//!
//! ## Caveats
//! - `restore` is driven by this tool; it records itself in the map as an
//!   [`checkraft_proto::Operation`] so that a rerun can see, resume or
//!   abort an interrupted one. Node removal, splits and merges (`node
//!   remove`, `shard split|merge`, `reshard`) are different: this tool
//!   only records them and watches, and the metadata leader's control
//!   plane runs them (`docs/control-plane.md`, `docs/resharding.md`).

mod backup;
mod bench;
mod cli;
mod client;
mod commands;
mod control;
mod credentials;
mod keeper;
mod supervisor;
mod up;
mod watch;

use clap::Parser;

/// mimalloc instead of glibc malloc: cheaper per allocation on the hot
/// paths (see `docs/benchmarks.md`, "Where the CPU goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
