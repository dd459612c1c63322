//! `run(config, shutdown)`: open the node, serve HTTP until shutdown.

use std::future::Future;

use tracing::Instrument;

use crate::config::NodeConfig;
use crate::error::Result;
use crate::http;
use crate::node::Node;

/// Runs a node until `shutdown` completes, then stops every group and
/// flushes. Long-lived change streams end at shutdown.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let span = tracing::info_span!("node", node_id = config.id);
    serve(config, shutdown).instrument(span).await
}

async fn serve(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, advertise = %config.advertise_addr(), data_dir = %config.data_dir.display(), "starting");
    let node = Node::open(config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server = warp::serve(http::filter(node.clone(), stop_rx))
        .incoming(listener)
        .graceful(async move {
            let _ = server_stop.changed().await;
        })
        .run();
    let server = tokio::spawn(server);
    tracing::info!("serving");
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    node.shutdown().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    tracing::info!("stopped");
    Ok(())
}
