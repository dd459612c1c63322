//! `run(config, shutdown)`: follow the cluster, serve HTTP until shutdown.

use std::future::Future;
use std::sync::Arc;

use tracing::Instrument;

use crate::assets;
use crate::config::GatewayConfig;
use crate::error::Result;
use crate::gateway::Gateway;
use crate::http;
use crate::ready;
use crate::ws;
use warp::Filter;

/// Runs a gateway until `shutdown` completes.
pub async fn run(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let span = tracing::info_span!("gateway", gateway_id = config.id);
    serve(config, shutdown).instrument(span).await
}

/// Binds, starts the gateway's tasks and serves; also returns the gateway
/// to embedders through `started`.
pub async fn serve_with(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: impl FnOnce(Arc<Gateway>),
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    crate::socket::tune_listener(&listener, &config)?;
    tracing::info!(listen = %config.listen, cluster = ?config.cluster, "starting");
    let gateway = Gateway::new(config)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    gateway.start(stop_rx.clone());
    started(gateway.clone());
    let hub = ws::Hub::new(ws::Backend::new(gateway.clone()), stop_rx.clone());
    hub.start();
    // Spawned tasks do not inherit the span: give it back (gateway_id).
    tokio::spawn(
        gateway
            .registry
            .clone()
            .report_loop(hub.limits.clone(), stop_rx.clone())
            .in_current_span(),
    );
    let routes = ready::filter(gateway.clone())
        .or(ws::filter(hub.clone()))
        .unify()
        .or(assets::filter(gateway.config.assets_dir.clone()))
        .unify()
        .or(http::filter(gateway.clone()))
        .unify();
    let mut server_stop = stop_rx;
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(async move {
            let _ = server_stop.changed().await;
        })
        .run();
    let server = tokio::spawn(server);
    tracing::info!("serving");
    let notify = tokio::spawn(ready::notify_when_ready(gateway.clone()));
    shutdown.await;
    tracing::info!("shutting down");
    notify.abort();
    ready::notify_stopping();
    let _ = stop_tx.send(true);
    // Websockets close with 1001 on the flag; give them a moment.
    hub.wait_closed(std::time::Duration::from_secs(3)).await;
    gateway.shards.stop_all();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_with(config, shutdown, |_| {}).await
}
