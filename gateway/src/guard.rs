//! Who is calling, and how much they may write: the client's address and
//! the host it asked for (believing forwarded headers only from
//! `trusted_proxies`), the websocket `Origin` rule, and the per-address
//! rate limit of the HTTP write paths (`PUT /api/boxes/{i}`,
//! `POST /nojs/set`).
//!
//! ## The Origin rule (`GET /ws`)
//! A request without `Origin` (not from a browser) is allowed. A request
//! with one is allowed when
//! - the Origin's `host[:port]` is the `host[:port]` the client asked for:
//!   the request's `Host`, or its `X-Forwarded-Host` when the peer is a
//!   trusted proxy that sent one (a page opening `/ws` on its own origin,
//!   directly or through Caddy); the Origin's scheme must be `http` or
//!   `https`, and a port left out means the scheme's default (80, 443); or
//! - it equals one of `page_origins` (scheme, host and port; case and a
//!   trailing `/` do not matter), or `page_origins` holds `"*"` (any
//!   origin: insecure, any web site's script may then use the socket of a
//!   visitor).
//!
//! Everything else, `Origin: null` included, gets 403 before the upgrade.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use warp::http::{header, HeaderMap};

use crate::config::GatewayConfig;

/// The `page_origins` value that allows every origin.
pub const ANY_ORIGIN: &str = "*";

/// How often the HTTP write limiter forgets addresses whose buckets are
/// full again (so its memory follows the recently active addresses).
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The peer's address (unspecified when warp does not know it).
pub fn peer_ip(remote: Option<SocketAddr>) -> IpAddr {
    remote.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not one (proxies
/// append, so the rightmost untrusted entry is the one no client can
/// forge).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
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

/// The `host[:port]` the client asked for: the first `X-Forwarded-Host`
/// entry when the peer is a trusted proxy that sent one, else `Host`.
pub fn request_host<'a>(
    peer: IpAddr,
    headers: &'a HeaderMap,
    trusted: &[IpAddr],
) -> Option<&'a str> {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if trusted.contains(&peer) {
        if let Some(host) = first("x-forwarded-host") {
            return Some(host);
        }
    }
    first(header::HOST.as_str())
}

/// A web origin, normalized for comparison: lowercase scheme and host, the
/// scheme's default port left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin {
    /// `http`, `https`, ...
    pub scheme: String,
    /// The host, IPv6 addresses in brackets.
    pub host: String,
    /// The port, when it is not the scheme's default.
    pub port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (IPv6 in brackets); `None` when malformed.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let valid = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            v6.contains(':')
                && v6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
        }
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c) || c == '_')
        }
    };
    if !valid {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

impl WebOrigin {
    /// Parses `scheme://host[:port]` (a trailing `/` is tolerated);
    /// `None` for anything else (`null`, paths, user info).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_suffix('/').unwrap_or(s);
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Some(Self { scheme, host, port })
    }

    /// Whether this origin names the `host[:port]` of `host_header` (an
    /// `http` or `https` origin only; a port left out on either side is
    /// the scheme's default).
    pub fn is_host(&self, host_header: &str) -> bool {
        let Some(default) = default_port(&self.scheme) else {
            return false;
        };
        let Some((host, port)) = split_host_port(host_header.trim()) else {
            return false;
        };
        host == self.host && port.unwrap_or(default) == self.port.unwrap_or(default)
    }
}

/// Whether a configured `page_origins` entry is valid: `"*"`, or an
/// `http`/`https` origin without path.
pub fn valid_page_origin(entry: &str) -> bool {
    entry.trim() == ANY_ORIGIN
        || WebOrigin::parse(entry).is_some_and(|o| default_port(&o.scheme).is_some())
}

/// Whether a websocket upgrade with `origin` may proceed (the rule in the
/// module docs): `host` is what [`request_host`] found.
pub fn origin_allowed(page_origins: &[String], origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if page_origins.iter().any(|p| p.trim() == ANY_ORIGIN) {
        return true;
    }
    let Some(origin) = WebOrigin::parse(origin) else {
        return false;
    };
    host.is_some_and(|h| origin.is_host(h))
        || page_origins
            .iter()
            .filter_map(|p| WebOrigin::parse(p))
            .any(|p| p == origin)
}

/// The per-client-address token bucket of the HTTP write paths (one
/// bucket per address for `PUT /api/boxes/{i}` and `POST /nojs/set`
/// together), from `http_sets_per_second` and `http_sets_burst`.
pub struct WriteLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    last_prune: Mutex<Instant>,
}

impl WriteLimiter {
    /// The limiter of `config`.
    pub fn new(config: &GatewayConfig) -> Self {
        let rate = NonZeroU32::new(config.http_sets_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.http_sets_burst).unwrap_or(NonZeroU32::MIN);
        Self::with_quota(Quota::per_second(rate).allow_burst(burst))
    }

    /// A limiter with any quota.
    pub fn with_quota(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            last_prune: Mutex::new(Instant::now()),
        }
    }

    /// Takes one write token of `ip`; when there is none, how long until
    /// there is one.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.prune_now_and_then();
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Addresses with a bucket in memory.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// At most every [`PRUNE_EVERY`], forgets the addresses whose buckets
    /// are full again (indistinguishable from a new address).
    fn prune_now_and_then(&self) {
        let Ok(mut last) = self.last_prune.try_lock() else {
            return;
        };
        if last.elapsed() < PRUNE_EVERY {
            return;
        }
        *last = Instant::now();
        drop(last);
        self.prune();
    }

    /// Forgets the addresses whose buckets are full again.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// `Retry-After` seconds for a wait of `wait`: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_origin_everything_passes() {
        assert!(origin_allowed(&[], None, None));
        assert!(origin_allowed(&[], None, Some("gw.example")));
    }

    #[test]
    fn same_origin_is_allowed_by_default_and_foreign_is_not() {
        let none: &[String] = &[];
        let host = Some("127.0.0.1:8081");
        assert!(origin_allowed(none, Some("http://127.0.0.1:8081"), host));
        assert!(origin_allowed(none, Some("HTTP://127.0.0.1:8081/"), host));
        assert!(!origin_allowed(none, Some("http://evil.example"), host));
        assert!(
            !origin_allowed(none, Some("http://127.0.0.1:8080"), host),
            "other port"
        );
        assert!(
            !origin_allowed(none, Some("http://localhost:8081"), host),
            "other host"
        );
        assert!(!origin_allowed(none, Some("null"), host));
        assert!(
            !origin_allowed(none, Some("http://127.0.0.1:8081"), None),
            "no Host"
        );
        assert!(!origin_allowed(none, Some("garbage"), Some("garbage")));
        // A port left out is the scheme's default, on either side.
        assert!(origin_allowed(
            none,
            Some("https://CheckRaft.example"),
            Some("checkraft.example")
        ));
        assert!(origin_allowed(
            none,
            Some("https://checkraft.example"),
            Some("checkraft.example:443")
        ));
        assert!(origin_allowed(
            none,
            Some("http://checkraft.example:80"),
            Some("checkraft.example")
        ));
        assert!(!origin_allowed(
            none,
            Some("https://checkraft.example"),
            Some("checkraft.example:80")
        ));
        assert!(!origin_allowed(
            none,
            Some("http://checkraft.example:8080"),
            Some("checkraft.example")
        ));
        // IPv6.
        assert!(origin_allowed(
            none,
            Some("http://[::1]:8081"),
            Some("[::1]:8081")
        ));
        assert!(!origin_allowed(
            none,
            Some("http://[::1]:8081"),
            Some("[::1]:8082")
        ));
        // Only http and https pages are same-origin with a Host.
        assert!(!origin_allowed(
            none,
            Some("chrome-extension://gw.example"),
            Some("gw.example")
        ));
        // A host that merely starts or ends like ours is another host.
        assert!(!origin_allowed(
            none,
            Some("http://gw.example.evil"),
            Some("gw.example")
        ));
        assert!(!origin_allowed(
            none,
            Some("http://evil-gw.example"),
            Some("gw.example")
        ));
    }

    #[test]
    fn page_origins_are_allowed_too() {
        let pages = origins(&["http://127.0.0.1:8080", "https://CheckRaft.example/"]);
        let host = Some("127.0.0.1:8081");
        assert!(origin_allowed(&pages, Some("http://127.0.0.1:8080"), host));
        assert!(origin_allowed(
            &pages,
            Some("https://checkraft.example"),
            host
        ));
        assert!(origin_allowed(
            &pages,
            Some("https://checkraft.example:443"),
            host
        ));
        assert!(
            origin_allowed(&pages, Some("http://127.0.0.1:8081"), host),
            "own origin"
        );
        assert!(
            !origin_allowed(&pages, Some("http://checkraft.example"), host),
            "scheme"
        );
        assert!(!origin_allowed(&pages, Some("http://localhost:8080"), host));
        assert!(!origin_allowed(&pages, Some("https://evil.example"), host));
        assert!(!origin_allowed(&pages, Some("null"), host));
    }

    #[test]
    fn a_star_allows_every_origin() {
        let any = origins(&[ANY_ORIGIN]);
        assert!(origin_allowed(
            &any,
            Some("https://evil.example"),
            Some("gw.example")
        ));
        assert!(origin_allowed(&any, Some("null"), None));
    }

    #[test]
    fn page_origin_entries_are_validated() {
        for ok in [
            "*",
            "http://127.0.0.1:8080",
            "https://checkraft.example/",
            "http://[::1]:80",
        ] {
            assert!(valid_page_origin(ok), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:8080",
            "checkraft.example",
            "http://",
            "http://checkraft.example/page",
            "http://user@checkraft.example",
            "http://checkraft.example:http",
            "http://checkraft.example:99999",
            "ws://checkraft.example",
            "null",
        ] {
            assert!(!valid_page_origin(bad), "{bad}");
        }
    }

    #[test]
    fn forwarded_host_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let client: IpAddr = "10.0.0.7".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "gw.internal:8081".parse().unwrap());
        assert_eq!(
            request_host(proxy, &headers, &[proxy]),
            Some("gw.internal:8081")
        );
        headers.insert("x-forwarded-host", "checkraft.example, x".parse().unwrap());
        assert_eq!(
            request_host(proxy, &headers, &[proxy]),
            Some("checkraft.example")
        );
        assert_eq!(
            request_host(client, &headers, &[proxy]),
            Some("gw.internal:8081")
        );
        assert_eq!(request_host(proxy, &headers, &[]), Some("gw.internal:8081"));
        assert_eq!(request_host(proxy, &HeaderMap::new(), &[proxy]), None);
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

    #[test]
    fn the_write_limiter_keeps_one_bucket_per_address() {
        // One token an hour after the burst: nothing refills during the test.
        let quota = Quota::per_hour(NonZeroU32::MIN).allow_burst(NonZeroU32::new(3).unwrap());
        let limiter = WriteLimiter::with_quota(quota);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(60), "{wait:?}");
        assert!(
            limiter.check(b).is_ok(),
            "another address has its own bucket"
        );
        assert_eq!(limiter.tracked(), 2);
        limiter.prune();
        assert_eq!(limiter.tracked(), 2, "partly used buckets are kept");
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let limiter = WriteLimiter::with_quota(Quota::per_second(NonZeroU32::MAX));
        for i in 0..100u8 {
            limiter
                .check(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
                .unwrap();
        }
        // At this rate every bucket is full again at once.
        std::thread::sleep(Duration::from_millis(5));
        limiter.prune();
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }
}
