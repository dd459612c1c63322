//! `GET /ws`: the HTTP/1.1 upgrade, done here rather than by `warp::ws()`
//! so that the stream is built with our small buffers. The `Origin` rule
//! (same origin, or one of `page_origins`; 403 otherwise) and the client's
//! address behind trusted proxies are [`crate::guard`]'s.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{connection, Hub};
use crate::guard;

fn plain(status: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The `GET /ws` route; anything else is rejected to the next route.
pub fn filter(
    hub: Arc<Hub>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path("ws")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(warp::ext::optional::<OnUpgrade>())
        .map(
            move |headers: HeaderMap, remote: Option<SocketAddr>, on: Option<OnUpgrade>| {
                upgrade(&hub, &headers, remote, on)
            },
        )
}

fn upgrade(
    hub: &Arc<Hub>,
    headers: &HeaderMap,
    remote: Option<SocketAddr>,
    on: Option<OnUpgrade>,
) -> Response {
    let metrics = &hub.backend.metrics;
    let config = &hub.backend.config;
    let peer = guard::peer_ip(remote);
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = guard::request_host(peer, headers, &config.trusted_proxies);
    if !guard::origin_allowed(&config.page_origins, origin, host) {
        metrics.ws_reject("origin");
        return plain(
            StatusCode::FORBIDDEN,
            "origin not allowed: it is neither this host's nor one of page_origins\n",
        );
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let valid = has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    let (Some(key), Some(on), true) = (key, on, valid) else {
        metrics.ws_reject("bad_handshake");
        return plain(
            StatusCode::BAD_REQUEST,
            "a websocket upgrade (version 13) is required\n",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let ip = guard::client_ip(peer, headers, &config.trusted_proxies);
    let hub = hub.clone();
    tokio::spawn(async move {
        match on.await {
            Ok(upgraded) => connection::run(hub, TokioIo::new(upgraded), ip).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("the accept key is base64"),
    );
    response
}
