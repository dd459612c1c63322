//! The gateway's HTTP API: one warp filter that gathers the request, and a
//! plain `match` router over method and path (the node's pattern).
//! Endpoints are documented in the crate docs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use checkraft_proto::{ApiError, ErrorKind};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::cors;
use crate::encoding;
use crate::error::{Error, Result};
use crate::gateway::{BoxView, Gateway};
use crate::guard::{self, WriteLimiter};

/// Content type of a chunk body.
pub const OCTETS: &str = "application/octet-stream";
/// The header carrying a chunk's `seq`.
pub const SEQ_HEADER: &str = "x-checkraft-seq";

/// A request as the handlers see it.
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Request headers.
    pub headers: HeaderMap,
    /// The raw query string, without the `?` (empty when none).
    pub query: String,
    /// The whole body (bounded by `max_body_bytes`).
    pub body: Bytes,
    /// The client's address: the peer's, or the forwarded one when the
    /// peer is a trusted proxy ([`guard::client_ip`]).
    pub client: IpAddr,
}

/// Body of `PUT /api/boxes/{i}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBox {
    /// The box's new value.
    pub checked: bool,
}

/// Answer of `GET` and `PUT /api/boxes/{i}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxBody {
    /// The box.
    pub index: u64,
    /// Its value.
    pub checked: bool,
    /// Its shard's change number the value reflects (for a PUT: the
    /// change that committed it).
    pub seq: u64,
}

impl From<BoxView> for BoxBody {
    fn from(v: BoxView) -> Self {
        Self {
            index: v.index,
            checked: v.checked,
            seq: v.seq,
        }
    }
}

fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("API bodies serialize to JSON");
    with_body(status, "application/json", body)
}

fn text(status: StatusCode, body: &str) -> Response {
    with_body(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

/// The HTTP status of an error class.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error as a JSON [`ApiError`] with its status.
pub fn error(e: &Error) -> Response {
    let kind = e.kind();
    let mut response = json(
        status_of(kind),
        &ApiError {
            kind,
            message: e.to_string(),
        },
    );
    if kind == ErrorKind::Unavailable {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Takes one write token of `req`'s client address for a write at
/// `endpoint` (a label of `http_rate_limited`). Over the limit the refusal
/// is counted and the error carries the seconds to wait (for
/// `Retry-After`) and a message.
pub(crate) fn take_write_token(
    gateway: &Gateway,
    limiter: &WriteLimiter,
    req: &Request,
    endpoint: &str,
) -> std::result::Result<(), (u64, String)> {
    let Err(wait) = limiter.check(req.client) else {
        return Ok(());
    };
    gateway.metrics.http_limited(endpoint);
    let secs = guard::retry_after_secs(wait);
    let config = &gateway.config;
    Err((
        secs,
        format!(
            "too many writes from {}: at most {} per second per address (burst {}); \
             retry after {secs} s",
            req.client, config.http_sets_per_second, config.http_sets_burst
        ),
    ))
}

/// A 429 answer: JSON `{"kind": "rate_limited", "message"}` with
/// `Retry-After: secs`.
pub fn rate_limited(secs: u64, message: String) -> Response {
    let mut response = json(
        StatusCode::TOO_MANY_REQUESTS,
        &ApiError {
            kind: ErrorKind::RateLimited,
            message,
        },
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// True when an `If-None-Match` value names `etag` (or is `*`), by the
/// weak comparison `If-None-Match` calls for: a `W/` prefix on either side
/// does not matter.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.strip_prefix("W/").unwrap_or(tag).to_string();
    let etag = opaque(etag);
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || opaque(candidate) == etag)
}

async fn collect_body(
    mut body: impl Stream<Item = std::result::Result<impl Buf, warp::Error>> + Unpin,
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

/// The warp filter serving every endpoint. It owns the per-address
/// limiter of the HTTP write paths.
pub fn filter(
    gateway: Arc<Gateway>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let limiter = Arc::new(WriteLimiter::new(&gateway.config));
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  headers: HeaderMap,
                  query: String,
                  remote: Option<SocketAddr>,
                  body| {
                let gateway = gateway.clone();
                let limiter = limiter.clone();
                async move {
                    let body =
                        match collect_body(Box::pin(body), gateway.config.max_body_bytes).await {
                            Ok(b) => b,
                            Err(e) => return error(&e),
                        };
                    let client = guard::client_ip(
                        guard::peer_ip(remote),
                        &headers,
                        &gateway.config.trusted_proxies,
                    );
                    let req = Request {
                        method,
                        headers,
                        query,
                        body,
                        client,
                    };
                    let origins = &gateway.config.page_origins;
                    if req.method == Method::OPTIONS {
                        if let Some(answer) = cors::preflight(origins, path.as_str(), &req.headers)
                        {
                            return answer;
                        }
                    }
                    let mut response = match route(&gateway, &limiter, path.as_str(), &req).await {
                        Ok(response) => response,
                        Err(e) => {
                            if e.kind() == ErrorKind::Internal {
                                tracing::error!(path = path.as_str(), error = %e, "request failed");
                            }
                            error(&e)
                        }
                    };
                    cors::decorate(
                        origins,
                        &req.method,
                        path.as_str(),
                        &req.headers,
                        &mut response,
                    );
                    response
                }
            },
        )
}

fn number(what: &str, s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| Error::BadRequest(format!("{what} {s:?} is not a number")))
}

fn header_str(req: &Request, name: header::HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every endpoint, by method and path.
async fn route(
    gateway: &Gateway,
    limiter: &WriteLimiter,
    path: &str,
    req: &Request,
) -> Result<Response> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = req.method == Method::GET;
    match segments.as_slice() {
        [""] | ["index.html"] if get => crate::ssr::page(gateway, req),
        ["health"] if get => Ok(match gateway.health() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
        }),
        ["metrics"] if get => {
            let mut response = text(StatusCode::OK, &gateway.render_metrics());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            Ok(response)
        }
        ["api", "stats"] if get => Ok(json(StatusCode::OK, &gateway.stats()?)),
        ["api", "chunks", id] if get => chunk(gateway, number("chunk id", id)?, req),
        ["api", "overview"] if get => overview(gateway, req),
        ["api", "boxes", index] if get => {
            let view = gateway.get_box(number("box index", index)?)?;
            Ok(json(StatusCode::OK, &BoxBody::from(view)))
        }
        ["api", "boxes", index] if req.method == Method::PUT => {
            let index = number("box index", index)?;
            let body: SetBox = serde_json::from_slice(&req.body).map_err(|e| {
                Error::BadRequest(format!(
                    "invalid JSON body (want {{\"checked\": true|false}}): {e}"
                ))
            })?;
            // Only well-formed writes take a token: they are what reaches
            // the shards.
            if let Err((secs, message)) = take_write_token(gateway, limiter, req, "api") {
                return Ok(rate_limited(secs, message));
            }
            let view = gateway.set_box(index, body.checked).await?;
            Ok(json(StatusCode::OK, &BoxBody::from(view)))
        }
        ["config.json"] if get => {
            let config = gateway.registry.client_config().await;
            let mut response = json(StatusCode::OK, &config);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok(response)
        }
        ["nojs"] if get => Ok(crate::nojs::get(gateway, req)),
        ["nojs", "set"] if req.method == Method::POST => {
            Ok(crate::nojs::set(gateway, limiter, req).await)
        }
        _ => Err(Error::NotFound(format!("{} {path}", req.method))),
    }
}

/// `GET /api/overview[?start=S&end=E]`: the JSON [`Overview`], with a
/// content ETag (304 when `If-None-Match` names it) and the negotiated
/// content-coding.
///
/// [`Overview`]: crate::overview::Overview
fn overview(gateway: &Gateway, req: &Request) -> Result<Response> {
    let body = serde_json::to_vec(&crate::overview::overview(gateway, &req.query)?)
        .expect("an overview serializes");
    let etag = crate::overview::etag(&body);
    let not_modified =
        header_str(req, header::IF_NONE_MATCH).is_some_and(|inm| etag_matches(inm, &etag));
    let coding = header_str(req, header::ACCEPT_ENCODING).and_then(encoding::negotiate);
    let mut response = if not_modified {
        let mut r = Response::new(Vec::new().into());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if let Some(coding) = coding {
        let mut r = with_body(StatusCode::OK, "application/json", coding.encode(&body));
        r.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
        r
    } else {
        with_body(StatusCode::OK, "application/json", body)
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("an etag is ASCII"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(response)
}

/// `GET /api/chunks/{id}`.
fn chunk(gateway: &Gateway, id: u64, req: &Request) -> Result<Response> {
    let view = gateway.chunk(id)?;
    let etag = view.etag();
    let not_modified =
        header_str(req, header::IF_NONE_MATCH).is_some_and(|inm| etag_matches(inm, &etag));
    let coding = header_str(req, header::ACCEPT_ENCODING).and_then(encoding::negotiate);
    let mut response = if not_modified {
        gateway.metrics.chunk_answer("not_modified");
        let mut r = Response::new(Vec::new().into());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if let Some(coding) = coding {
        gateway.metrics.chunk_answer(coding.token());
        let mut r = with_body(StatusCode::OK, OCTETS, coding.encode(&view.bits));
        r.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
        r
    } else {
        gateway.metrics.chunk_answer("identity");
        with_body(StatusCode::OK, OCTETS, view.bits)
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("an etag is ASCII"),
    );
    headers.insert(SEQ_HEADER, HeaderValue::from(view.seq));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let tag = "\"1-1-5\"";
        assert!(etag_matches("\"1-1-5\"", tag));
        assert!(etag_matches("\"0-1-1\", W/\"1-1-5\"", tag));
        assert!(etag_matches("*", tag));
        assert!(!etag_matches("\"1-1-4\"", tag));
        assert!(etag_matches("\"1-1-5\"", "W/\"1-1-5\""));
        assert!(etag_matches("W/\"1-1-5\"", "W/\"1-1-5\""));
    }
}
