//! `checkraft-node`: hosts checkraft shard raft groups. See the crate docs.

use std::path::PathBuf;

use checkraft_node::config::{NodeConfig, Overrides};
use checkraft_node::logging::{self, LogFormat};
use clap::Parser;

/// mimalloc instead of glibc malloc: cheaper per allocation on the hot
/// paths (see `docs/benchmarks.md`, "Where the CPU goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A checkraft shard node: many raft-replicated bitmap shards over one sled
/// database, served over HTTP.
///
/// Settings come from defaults, then the TOML file given by --config, then
/// CHECKRAFT_NODE_<FIELD> environment variables, then these flags.
/// Logging follows RUST_LOG (default "info,openraft=warn").
#[derive(Parser, Debug)]
#[command(name = "checkraft-node", version)]
struct Args {
    /// This node's id: a positive integer, unique in the cluster and never
    /// reused. Omit it to use the id stored in --data-dir, or, on a new
    /// data dir, to wait until `raftctl node add` assigns one.
    #[arg(long)]
    id: Option<u64>,
    /// Address to listen on, HOST:PORT (default 127.0.0.1:7001).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Address peers use to reach this node, HOST:PORT (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Directory of the node's database (default data/node).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML configuration file; see testdata/node.toml for every field.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Log lines as human-readable text or JSON objects (default text).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let overrides = Overrides {
        id: args.id,
        listen: args.listen,
        advertise: args.advertise,
        data_dir: args.data_dir,
        log_format: args.log_format,
    };
    let config = NodeConfig::load(args.config.as_deref(), overrides)?;
    logging::init(config.log_format, logging::DEFAULT_FILTER);
    let result = checkraft_node::run(config, shutdown_signal()).await;
    // Exit here rather than by returning: dropping the runtime would wait
    // for blocking tasks, and a sled flush stuck on a failed disk must not
    // keep the process alive.
    let code = match &result {
        Ok(()) => 0,
        Err(e @ checkraft_node::Error::StorageFailed(_)) => {
            eprintln!("Error: {e}");
            checkraft_node::error::EXIT_STORAGE_FAILED
        }
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
