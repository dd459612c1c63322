//! `GET /ws`: the HTTP/1.1 upgrade, done here rather than by `warp::ws()`
//! so that the stream is built with our small buffers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{connection, Hub};

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

/// Whether `origin` may connect: any when the allowlist is empty, and
/// requests without `Origin` (not from a browser) always.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    match origin {
        _ if allowed.is_empty() => true,
        None => true,
        Some(origin) => allowed.iter().any(|a| {
            a.trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/'))
        }),
    }
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
    let metrics = &hub.gateway.metrics;
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(&hub.gateway.config.ws_allowed_origins, origin) {
        metrics.ws_reject("origin");
        return plain(StatusCode::FORBIDDEN, "origin not allowed\n");
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
    let peer = remote.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let ip = client_ip(peer, headers, &hub.gateway.config.trusted_proxies);
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

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not one (proxies
/// append, so the rightmost untrusted entry is the one no client can
/// forge).
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let allowed = vec!["https://checkraft.example".to_string()];
        assert!(origin_allowed(&[], Some("https://evil.example")));
        assert!(origin_allowed(&allowed, Some("https://checkraft.example")));
        assert!(origin_allowed(&allowed, None));
        assert!(!origin_allowed(&allowed, Some("https://evil.example")));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let client: IpAddr = "10.0.0.7".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.2.3.4, 10.0.0.7".parse().unwrap());
        assert_eq!(
            client_ip(proxy, &headers, &[proxy]),
            client,
            "rightmost untrusted"
        );
        assert_eq!(client_ip(proxy, &headers, &[]), proxy, "untrusted peer");
        assert_eq!(client_ip(client, &headers, &[proxy]), client);
        assert_eq!(
            client_ip(proxy, &HeaderMap::new(), &[proxy]),
            proxy,
            "no header"
        );
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &headers, &[proxy]), proxy, "unparsable");
    }
}
