//! `run(config, shutdown)`: open the node, serve HTTP until shutdown.

use std::future::Future;

use tracing::Instrument;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::http;
use crate::node::Node;

/// Runs a node until `shutdown` completes, then stops every group and
/// flushes. Long-lived change streams end at shutdown. A fatal storage
/// error (see [`crate::faults`]) also stops the node, after
/// [`NodeConfig::storage_failure_grace_ms`] of reporting it, with
/// [`Error::StorageFailed`]. Every stop step is bounded.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // `node_id` is recorded once known: here when configured, else by
    // `Node` once it reads the id from the data dir or is assigned one
    // (`Node::open` and `Node::assign_id` record it on the span they run
    // in). A span field recorded twice would print twice, and a
    // placeholder 0 would stay in every line.
    let span = tracing::info_span!("node", node_id = tracing::field::Empty);
    if config.id != 0 {
        span.record("node_id", config.id);
    }
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
    let ready = tokio::spawn(http::ready::notify_when_ready(node.clone()));
    let mut fatal = node.faults().fatal();
    let mut shutdown = std::pin::pin!(shutdown);
    let failure = tokio::select! {
        _ = &mut shutdown => None,
        Ok(reason) = fatal.wait_for(Option::is_some) => reason.clone(),
    };
    if let Some(reason) = &failure {
        let grace = node.config.storage_failure_grace();
        tracing::error!(error = %reason, grace_ms = grace.as_millis() as u64, "storage failed: reporting it on /health, then exiting so that a supervisor restarts the node (once space is back)");
        // A shutdown signal ends the grace early.
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = &mut shutdown => {}
        }
    }
    tracing::info!("shutting down");
    ready.abort();
    http::ready::notify_stopping();
    // A planned stop hands leaderships over while the server still
    // answers raft RPCs; a storage failure stops at once.
    if let (None, Some(limit)) = (&failure, node.config.handover_limit()) {
        let handover = crate::handover::hand_over(&node, limit).await;
        tracing::info!(
            moved = handover.moved.len(),
            kept = handover.kept.len(),
            "leadership handover done"
        );
    }
    let _ = stop_tx.send(true);
    node.shutdown().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    tracing::info!("stopped");
    match failure {
        Some(reason) => Err(Error::StorageFailed(format!(
            "{reason} (data dir {})",
            node.config.data_dir.display()
        ))),
        None => Ok(()),
    }
}
