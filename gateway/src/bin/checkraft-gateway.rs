//! `checkraft-gateway`: a stateless front of a checkraft cluster. See the
//! crate docs.

use std::path::PathBuf;

use checkraft_gateway::config::{GatewayConfig, Overrides};
use checkraft_gateway::logging::{self, LogFormat};
use clap::Parser;

/// mimalloc instead of glibc malloc: cheaper per allocation on the hot
/// paths (see `docs/benchmarks.md`, "Where the CPU goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A checkraft gateway: follows the shard map, keeps every shard's state
/// from its change stream, batches writes to shard leaders, and serves
/// the HTTP API.
///
/// Settings come from defaults, then the TOML file given by --config, then
/// CHECKRAFT_GATEWAY_<FIELD> environment variables, then these flags.
/// Logging follows RUST_LOG (default "info").
#[derive(Parser, Debug)]
#[command(name = "checkraft-gateway", version)]
struct Args {
    /// Address to listen on, HOST:PORT (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Seed nodes, HOST:PORT[,HOST:PORT...]: where the shard map is first
    /// read (default 127.0.0.1:7001).
    #[arg(long, value_delimiter = ',')]
    cluster: Option<Vec<String>>,
    /// A label for logs and metrics (gateways are stateless).
    #[arg(long)]
    id: Option<u64>,
    /// TOML configuration file (fields of GatewayConfig).
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
        cluster: args.cluster,
        log_format: args.log_format,
    };
    let config = GatewayConfig::load(args.config.as_deref(), overrides)?;
    logging::init(config.log_format, logging::DEFAULT_FILTER);
    checkraft_gateway::run(config, shutdown_signal()).await?;
    Ok(())
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
