//! Cross-origin reads: CORS headers on the read API for the page's origins.
//!
//! The page routes its chunk and API reads to the gateway its socket hub
//! chose (`assets/js/routes.js`), so they arrive from another origin (the
//! page's, usually Caddy's) than the gateway's own. A browser lets the page
//! read those answers only with CORS headers, and this module adds them to
//! exactly these requests:
//!
//! - `GET`/`HEAD` of the read paths ([`is_read_path`]: `/api/chunks/{c}`,
//!   `/api/boxes/{i}`, `/api/stats`, `/api/overview`, `/health`);
//! - whose `Origin` is one of `page_origins` (the websocket `Origin` rule's
//!   list, compared the same way, [`crate::guard::WebOrigin`]), or any origin when
//!   `page_origins` holds `"*"`.
//!
//! Such an answer carries `Access-Control-Allow-Origin` (the request's
//! origin, or `*`), `Access-Control-Expose-Headers: ETag, X-Checkraft-Seq`
//! (the client's version and validator), `Timing-Allow-Origin` (resource
//! timing sees its sizes) and `Vary: Origin`. Other origins get no CORS
//! headers, so their scripts cannot read the answer; writes (`PUT`, the
//! no-JS form) never get them: a page writes over its websocket.
//!
//! A preflight (`OPTIONS` with `Access-Control-Request-Method`, sent when a
//! script adds a header such as `If-None-Match` by hand) is answered 204
//! for an allowed origin, a read path, `GET`/`HEAD` and at most the
//! `If-None-Match` header, cached by the browser for
//! [`PREFLIGHT_MAX_AGE_SECS`]; else 403. The page itself never needs one:
//! it revalidates cross-origin reads through the browser's HTTP cache.

use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

use crate::guard::{WebOrigin, ANY_ORIGIN};

/// How long a browser may reuse a preflight answer, in seconds.
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// The response headers a cross-origin script may read besides the
/// safelisted ones.
const EXPOSED: &str = "ETag, X-Checkraft-Seq";

/// Whether `path` is one of the reads the page may route to a gateway.
pub fn is_read_path(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["api", "chunks", _]
            | ["api", "boxes", _]
            | ["api", "stats"]
            | ["api", "overview"]
            | ["health"]
    )
}

/// The `Access-Control-Allow-Origin` value for `origin`, when it is
/// allowed: `*` when `page_origins` holds `"*"`, else the origin itself
/// when it is listed.
pub fn allowed_origin(page_origins: &[String], origin: &str) -> Option<HeaderValue> {
    if page_origins.iter().any(|p| p.trim() == ANY_ORIGIN) {
        return Some(HeaderValue::from_static("*"));
    }
    let parsed = WebOrigin::parse(origin)?;
    page_origins
        .iter()
        .filter_map(|p| WebOrigin::parse(p))
        .any(|p| p == parsed)
        .then(|| HeaderValue::from_str(origin.trim()).ok())
        .flatten()
}

fn append_vary_origin(headers: &mut HeaderMap) {
    let has = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"));
    if !has {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Adds the CORS headers to `response`, an answer to a `method` request
/// for `path` with `request` headers, when the rule above allows it.
pub fn decorate(
    page_origins: &[String],
    method: &Method,
    path: &str,
    request: &HeaderMap,
    response: &mut Response,
) {
    if !(method == Method::GET || method == Method::HEAD) || !is_read_path(path) {
        return;
    }
    let headers = response.headers_mut();
    if !page_origins.is_empty() {
        // The answer differs by Origin whenever some origin is allowed.
        append_vary_origin(headers);
    }
    let Some(origin) = request.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return;
    };
    let Some(allow) = allowed_origin(page_origins, origin) else {
        return;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow.clone());
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    headers.insert("timing-allow-origin", allow);
}

/// The answer to `OPTIONS path` with `request` headers: `Some` for a CORS
/// preflight (204 when allowed, 403 when not), `None` when it is not one.
pub fn preflight(page_origins: &[String], path: &str, request: &HeaderMap) -> Option<Response> {
    let wanted = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)?
        .to_str()
        .ok()?;
    let origin = request.get(header::ORIGIN)?.to_str().ok()?;
    let method_ok = wanted == "GET" || wanted == "HEAD";
    let headers_ok = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok())
        .is_none_or(|h| {
            h.split(',')
                .map(str::trim)
                .all(|h| h.is_empty() || h.eq_ignore_ascii_case("if-none-match"))
        });
    let allow = allowed_origin(page_origins, origin);
    let mut response = Response::new(Vec::new().into());
    match allow {
        Some(allow) if method_ok && headers_ok && is_read_path(path) => {
            *response.status_mut() = StatusCode::NO_CONTENT;
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("If-None-Match"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
            );
        }
        _ => *response.status_mut() = StatusCode::FORBIDDEN,
    }
    append_vary_origin(response.headers_mut());
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins() -> Vec<String> {
        vec![
            "http://127.0.0.1:8080".into(),
            "https://grid.example".into(),
        ]
    }

    fn request(origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    fn answer(method: Method, path: &str, origin: Option<&str>, list: &[String]) -> Response {
        let mut r = Response::new(Vec::new().into());
        decorate(list, &method, path, &request(origin), &mut r);
        r
    }

    #[test]
    fn read_paths() {
        for p in [
            "/api/chunks/3",
            "/api/boxes/9",
            "/api/stats",
            "/api/overview",
            "/health",
        ] {
            assert!(is_read_path(p), "{p}");
        }
        for p in [
            "/api/chunks",
            "/ws",
            "/nojs",
            "/metrics",
            "/config.json",
            "/api/boxes/1/x",
        ] {
            assert!(!is_read_path(p), "{p}");
        }
    }

    #[test]
    fn page_origins_get_cors_headers_others_do_not() {
        let r = answer(
            Method::GET,
            "/api/chunks/0",
            Some("http://127.0.0.1:8080"),
            &origins(),
        );
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:8080");
        assert_eq!(h["access-control-expose-headers"], EXPOSED);
        assert_eq!(h["timing-allow-origin"], "http://127.0.0.1:8080");
        assert_eq!(h["vary"], "Origin");
        // The default port is the same origin.
        let r = answer(
            Method::GET,
            "/api/stats",
            Some("https://grid.example:443"),
            &origins(),
        );
        assert!(r.headers().contains_key("access-control-allow-origin"));
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:8081",
            "null",
            "https://127.0.0.1:8080",
        ] {
            let r = answer(Method::GET, "/api/chunks/0", Some(bad), &origins());
            assert!(
                !r.headers().contains_key("access-control-allow-origin"),
                "{bad}"
            );
            assert_eq!(r.headers()["vary"], "Origin", "{bad}");
        }
        // Writes and non-read paths: never.
        let r = answer(
            Method::PUT,
            "/api/boxes/1",
            Some("http://127.0.0.1:8080"),
            &origins(),
        );
        assert!(r.headers().is_empty());
        let r = answer(
            Method::GET,
            "/metrics",
            Some("http://127.0.0.1:8080"),
            &origins(),
        );
        assert!(r.headers().is_empty());
        // No page origins configured: nothing, not even Vary.
        let r = answer(
            Method::GET,
            "/api/chunks/0",
            Some("http://127.0.0.1:8080"),
            &[],
        );
        assert!(r.headers().is_empty());
        // "*": everyone, as "*".
        let r = answer(
            Method::GET,
            "/api/chunks/0",
            Some("http://x.example"),
            &["*".into()],
        );
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
    }

    #[test]
    fn preflights() {
        let mut h = request(Some("http://127.0.0.1:8080"));
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("GET"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("if-none-match"),
        );
        let ok = preflight(&origins(), "/api/chunks/5", &h).unwrap();
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            ok.headers()["access-control-allow-headers"],
            "If-None-Match"
        );
        assert_eq!(ok.headers()["access-control-max-age"], "600");
        assert_eq!(
            preflight(&origins(), "/api/boxes/5", &h).unwrap().status(),
            StatusCode::NO_CONTENT
        );
        // A write, another header, another origin, another path: 403.
        let mut put = h.clone();
        put.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        assert_eq!(
            preflight(&origins(), "/api/boxes/5", &put)
                .unwrap()
                .status(),
            403
        );
        let mut extra = h.clone();
        extra.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("if-none-match, x-custom"),
        );
        assert_eq!(
            preflight(&origins(), "/api/chunks/5", &extra)
                .unwrap()
                .status(),
            403
        );
        let mut evil = h.clone();
        evil.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert_eq!(
            preflight(&origins(), "/api/chunks/5", &evil)
                .unwrap()
                .status(),
            403
        );
        assert_eq!(preflight(&origins(), "/metrics", &h).unwrap().status(), 403);
        // Not a preflight at all.
        assert!(preflight(&origins(), "/api/chunks/5", &request(Some("http://a.b"))).is_none());
    }
}
