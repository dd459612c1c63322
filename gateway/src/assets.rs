//! The page's static files, for a gateway that runs
//! without Caddy in front (`raftctl up` without Caddy installed).
//!
//! Caddy is the intended front: it serves `assets/` with compression and
//! security headers. This module covers the same files, with the same
//! headers, so that a single gateway is enough to try the page. Only `GET`
//! and `HEAD` of files under [`GatewayConfig::assets_dir`] are served;
//! the development files (`package.json`, `test/`, `node_modules/`),
//! every API path and the page itself (`/`, `/index.html`: rendered with
//! the grid's top by [`crate::ssr`], behind Caddy too) are left to the
//! other routes, so an API request never touches the file system.
//!
//! [`GatewayConfig::assets_dir`]: crate::config::GatewayConfig::assets_dir

use std::path::PathBuf;

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue};
use warp::{Filter, Reply};

use warp::reply::Response;

/// The page's security headers (the same as the repository's Caddyfile).
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
         style-src 'self'; script-src 'self'; worker-src 'self'; object-src 'none'; \
         base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// Whether `path` (the URL path, with its leading `/`) is for the other
/// routes or hidden, rather than a static file.
fn not_a_page_file(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    // The page itself is rendered with the grid's top ([`crate::ssr`]).
    path == "/"
        || path == "/index.html"
        || matches!(
            first,
            "api"
                | "ws"
                | "nojs"
                | "metrics"
                | "health"
                | "config.json"
                | "package.json"
                | "package-lock.json"
                | "test"
                | "node_modules"
        )
        || path.split('/').any(|s| s.starts_with('.'))
}

/// Serves `dir`'s files, or rejects every request when `dir` is `None`.
pub fn filter(dir: Option<PathBuf>) -> BoxedFilter<(Response,)> {
    let Some(dir) = dir else {
        return warp::any()
            .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
            .boxed();
    };
    warp::get()
        .or(warp::head())
        .unify()
        .and(warp::path::full())
        .and_then(|path: warp::path::FullPath| async move {
            if not_a_page_file(path.as_str()) {
                Err(warp::reject::not_found())
            } else {
                Ok(())
            }
        })
        .untuple_one()
        .and(warp::fs::dir(dir))
        .map(|file: warp::fs::File| {
            let mut response = file.into_response();
            let headers = response.headers_mut();
            for (name, value) in SECURITY_HEADERS {
                headers.insert(name, HeaderValue::from_static(value));
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_development_paths_are_not_files() {
        for path in [
            "/api/chunks/0",
            "/ws",
            "/nojs",
            "/nojs/set",
            "/metrics",
            "/health",
            "/config.json",
            "/package.json",
            "/test/protocol.test.js",
            "/node_modules/x/y.js",
            "/.git/config",
            "/js/.hidden",
            "/",
            "/index.html",
        ] {
            assert!(not_a_page_file(path), "{path}");
        }
        for path in ["/js/main.js", "/css/app.css", "/sw.js"] {
            assert!(!not_a_page_file(path), "{path}");
        }
    }

    /// The two fronts (Caddy, or the gateway without it) send the same
    /// headers: each of ours is in the repository's Caddyfile verbatim.
    #[test]
    fn the_caddyfile_sends_the_same_security_headers() {
        let caddyfile = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Caddyfile"),
        )
        .expect("the repository's Caddyfile");
        // The Caddyfile may add the gateways' origins to `connect-src`
        // from its environment; without them the two are the same.
        let caddyfile = caddyfile
            .to_ascii_lowercase()
            .replace(" {$checkraft_connect_src}", "");
        for (name, value) in SECURITY_HEADERS {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            let in_caddy = caddyfile.lines().any(|l| {
                let l = l.trim();
                l.starts_with(name)
                    && l[name.len()..]
                        .trim()
                        .trim_matches('"')
                        .eq_ignore_ascii_case(&value)
            });
            assert!(in_caddy, "the Caddyfile lacks `{name} {value}`");
        }
    }

    #[tokio::test]
    async fn serves_files_with_security_headers_and_hides_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.js"), "export {};").unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        let f = filter(Some(dir.path().to_path_buf()));
        let file = warp::test::request().path("/app.js").reply(&f).await;
        assert_eq!(file.status(), 200);
        assert_eq!(file.body().as_ref(), b"export {};");
        assert!(file.headers().contains_key("content-security-policy"));
        // The page itself is the SSR route's.
        assert!(warp::test::request().path("/").filter(&f).await.is_err());
        assert!(warp::test::request()
            .path("/package.json")
            .filter(&f)
            .await
            .is_err());
        assert!(warp::test::request()
            .path("/missing.js")
            .filter(&f)
            .await
            .is_err());
        let none = filter(None);
        assert!(warp::test::request().path("/").filter(&none).await.is_err());
    }
}
