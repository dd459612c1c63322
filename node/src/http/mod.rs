//! The node's HTTP server: one warp filter that gathers the request, and a
//! plain `match` router over method and path.
//!
//! Routing by hand keeps every endpoint visible in one place (`route`) and
//! every error a JSON [`checkraft_proto::ApiError`] with the right status.

pub mod access;
mod admin;
mod backups;
mod control;
mod gateways;
mod meta;
mod raft;
pub mod ready;
mod reply;
mod shard;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::error::{Error, Result};
use crate::node::Node;

/// A request as the handlers see it.
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Decoded query parameters.
    pub query: HashMap<String, String>,
    /// The `Authorization` header, if any (the admin bearer token).
    pub authorization: Option<String>,
    /// The `x-checkraft-auth` header, if any (a peer's proof).
    pub proof: Option<String>,
    /// The whole body (bounded by `max_body_bytes`).
    pub body: Bytes,
    /// Flips to true when the server shuts down (ends long-lived streams).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The numeric query parameter `key`, as a 400 if it is not a number.
pub(crate) fn query_u64(req: &Request, key: &str) -> Result<Option<u64>> {
    req.query
        .get(key)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Error::BadRequest(format!("query {key}={v:?} is not a number")))
        })
        .transpose()
}

/// Parses a JSON body into `T`, as a 400 on failure.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
}

async fn collect_body(
    mut body: impl Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    limit: usize,
) -> Result<Bytes> {
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| Error::BadRequest(format!("reading body: {e}")))?;
        if out.len() + chunk.remaining() > limit {
            return Err(Error::TooLarge(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// The warp filter serving every endpoint.
pub fn filter(
    node: Arc<Node>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let query = warp::query::<HashMap<String, String>>()
        .or(warp::any().map(HashMap::new))
        .unify();
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, path: warp::path::FullPath, query, raw_query: String, headers: HeaderMap, body| {
            let node = node.clone();
            let shutdown = shutdown.clone();
            async move {
                let body = match collect_body(Box::pin(body), node.config.max_body_bytes).await {
                    Ok(b) => b,
                    Err(e) => return reply::error(&e),
                };
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
                let authorization = header(warp::http::header::AUTHORIZATION.as_str());
                let proof = header(checkraft_auth::HEADER);
                let req = Request { method, query, authorization, proof, body, shutdown };
                let path_and_query = if raw_query.is_empty() {
                    path.as_str().to_string()
                } else {
                    format!("{}?{raw_query}", path.as_str())
                };
                let caller = access::identify(&node, &path_and_query, &req);
                match route(&node, path.as_str(), caller, &req).await {
                    Ok(response) => response,
                    Err(e) => {
                        match e.kind() {
                            checkraft_proto::ErrorKind::Internal => {
                                tracing::error!(node_id = node.id().unwrap_or(0), path = path.as_str(), error = %e, "request failed");
                            }
                            checkraft_proto::ErrorKind::Unauthorized | checkraft_proto::ErrorKind::Forbidden => {
                                node.refusals().record(e.kind());
                                tracing::debug!(node_id = node.id().unwrap_or(0), path = path.as_str(), error = %e, "request refused");
                            }
                            _ => {}
                        }
                        reply::error(&e)
                    }
                }
            }
        })
}

fn group_id(s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| Error::BadRequest(format!("group id {s:?} is not a number")))
}

/// Every endpoint, by method and path.
async fn route(
    node: &Node,
    path: &str,
    caller: Result<access::Caller>,
    req: &Request,
) -> Result<Response> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    access::authorize(caller?, &segments)?;
    let get = req.method == Method::GET;
    let post = req.method == Method::POST;
    match segments.as_slice() {
        ["health"] if get => {
            let failed = node.failed_groups();
            if failed.is_empty() {
                return Ok(reply::text(StatusCode::OK, "ok\n"));
            }
            let mut text = String::from("unhealthy: groups not served\n");
            for (id, reason) in failed {
                text.push_str(&format!("group {id}: {reason}\n"));
            }
            Ok(reply::text(StatusCode::SERVICE_UNAVAILABLE, &text))
        }
        ["ready"] if get => Ok(ready::handle(node)),
        ["status"] if get => Ok(reply::json(StatusCode::OK, &node.status())),
        ["metrics"] if get => {
            let mut response = reply::text(StatusCode::OK, &crate::metrics::render(node));
            response.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            Ok(response)
        }
        ["raft", group, rpc] if post => {
            raft::handle(&*node.group(group_id(group)?)?, rpc, &req.body).await
        }
        ["admin", rest @ ..] => match rest {
            ["groups"] if post => admin::create_group(node, req).await,
            ["meta"] if post => admin::propose_meta(node, req).await,
            ["node", "id"] if post => admin::assign_id(node, req).await,
            ["leadership", "handover"] if post => admin::handover(node).await,
            ["backups"] if get => backups::list(node).await,
            ["backups", name] if get => backups::download(node, name).await,
            ["groups", group] if req.method == Method::DELETE => {
                admin::delete_group(node, group_id(group)?).await
            }
            ["groups", group, action] => {
                admin::group_action(node, group_id(group)?, action, req).await
            }
            _ => Err(Error::NotFound(format!("{} {path}", req.method))),
        },
        ["meta", "map"] if get => meta::map(node, req).await,
        ["meta", "report"] if post => control::report(node, req),
        ["meta", "health"] if get => control::health(node),
        ["meta", "shards", shard] if get => meta::shard(node, shard),
        ["meta", "gateways"] if get => gateways::get(node),
        ["meta", "gateways"] if post => gateways::post(node, req),
        ["shards", group, action] => shard::handle(node, group_id(group)?, action, req).await,
        _ => Err(Error::NotFound(format!("{} {path}", req.method))),
    }
}
