//! The gateway's guards against real processes: three nodes bootstrapped
//! with `raftctl init` (40,000 boxes, 4 shards) and real
//! `checkraft-gateway`s.
//!
//! - **Origin** (`GET /ws`): without `page_origins`, a foreign `Origin`
//!   gets 403 and only the gateway's own origin (Origin host = `Host`)
//!   gets 101, as does a request without `Origin`; `X-Forwarded-Host` is
//!   believed only from `trusted_proxies`. With `page_origins`, those
//!   origins get 101 too, and other foreign ones still 403.
//! - **HTTP write limits**: a flood of `PUT /api/boxes/{i}` from one
//!   source address gets 429s (with `Retry-After` and a JSON
//!   `rate_limited` error) once its bucket is empty, while another source
//!   address (the client bound to 127.0.0.3) is still served, and the
//!   flooder is served again after `Retry-After`. Behind a trusted proxy
//!   the bucket is the forwarded client's. The same holds for the no-JS
//!   `POST /nojs/set` (an HTML 429 page). Every 429 is counted in
//!   `checkraft_gateway_http_rate_limited_total`.
//!
//! Nothing here depends on the machine's speed: the floods are
//! concurrent, so they arrive far faster than the default refill (10 per
//! second after a burst of 20); the other addresses have untouched
//! buckets.

use std::net::IpAddr;
use std::time::Duration;

use checkraft_integration::{initialized_cluster, Cluster, GatewayProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "gateway-guard-token";
const BOXES: u64 = 40_000;
const TEST_LIMIT: Duration = Duration::from_secs(240);
/// Requests per flood: far over the default burst (20) plus what the
/// default refill (10/s) could add while they arrive.
const FLOOD: usize = 200;

async fn cluster() -> Cluster {
    initialized_cluster(TOKEN, BOXES, 4).await
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Sends a websocket upgrade for `/ws` to `addr` from source address
/// `from`, with `headers` (`Host` among them), and returns the answer's
/// HTTP status (101 when upgraded).
async fn upgrade_status(addr: &str, from: IpAddr, headers: &[(&str, &str)]) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let mut request = String::from(
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut byte))
            .await
            .expect("an answer to the upgrade")
            .unwrap();
        assert_eq!(n, 1, "the gateway closed before answering: {head:?}");
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origins_same_origin_by_default_and_page_origins() {
    tokio::time::timeout(TEST_LIMIT, origins_test())
        .await
        .expect("origin test exceeded its bound");
}

async fn origins_test() {
    let cluster = cluster().await;
    let local = ip("127.0.0.1");

    // Defaults: no page origins, no trusted proxies.
    let gw = GatewayProcess::start(&cluster, 1, &[]).await;
    let own = format!("http://{}", gw.addr);
    let host = gw.addr.as_str();
    for (what, headers, want) in [
        (
            "a foreign Origin",
            vec![("Host", host), ("Origin", "http://evil.example")],
            403,
        ),
        (
            "a foreign https Origin",
            vec![("Host", host), ("Origin", "https://evil.example")],
            403,
        ),
        ("Origin null", vec![("Host", host), ("Origin", "null")], 403),
        (
            "another spelling of the host",
            vec![("Host", host), ("Origin", "http://localhost:1")],
            403,
        ),
        (
            "the same origin",
            vec![("Host", host), ("Origin", own.as_str())],
            101,
        ),
        ("no Origin (not a browser)", vec![("Host", host)], 101),
        // What Caddy forwards: the browser's Host, passed through.
        (
            "the same origin by Host",
            vec![
                ("Host", "grid.example:8080"),
                ("Origin", "http://grid.example:8080"),
            ],
            101,
        ),
        (
            "another port than Host's",
            vec![
                ("Host", "grid.example:8080"),
                ("Origin", "http://grid.example:8081"),
            ],
            403,
        ),
        (
            "X-Forwarded-Host from an untrusted peer",
            vec![
                ("Host", host),
                ("X-Forwarded-Host", "evil.example"),
                ("Origin", "http://evil.example"),
            ],
            403,
        ),
    ] {
        let got = upgrade_status(&gw.addr, local, &headers).await;
        assert_eq!(got, want, "{what}: {headers:?}");
    }

    // Page origins, and Caddy-like trusted proxies on 127.0.0.1.
    let gw = GatewayProcess::start(
        &cluster,
        2,
        &[
            (
                "CHECKRAFT_GATEWAY_PAGE_ORIGINS",
                "[\"http://127.0.0.1:8080\", \"http://localhost:8080\"]",
            ),
            ("CHECKRAFT_GATEWAY_TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    )
    .await;
    let own = format!("http://{}", gw.addr);
    let host = gw.addr.as_str();
    let untrusted = ip("127.0.0.2");
    for (what, from, headers, want) in [
        (
            "a page origin",
            local,
            vec![("Host", host), ("Origin", "http://127.0.0.1:8080")],
            101,
        ),
        (
            "its other spelling",
            local,
            vec![("Host", host), ("Origin", "http://localhost:8080")],
            101,
        ),
        (
            "the gateway's own origin",
            local,
            vec![("Host", host), ("Origin", own.as_str())],
            101,
        ),
        (
            "a foreign Origin",
            local,
            vec![("Host", host), ("Origin", "http://evil.example")],
            403,
        ),
        (
            "another port",
            local,
            vec![("Host", host), ("Origin", "http://127.0.0.1:8082")],
            403,
        ),
        (
            "X-Forwarded-Host from a trusted proxy",
            local,
            vec![
                ("Host", host),
                ("X-Forwarded-Host", "grid.example"),
                ("Origin", "https://grid.example"),
            ],
            101,
        ),
        (
            "X-Forwarded-Host from an untrusted peer",
            untrusted,
            vec![
                ("Host", host),
                ("X-Forwarded-Host", "grid.example"),
                ("Origin", "https://grid.example"),
            ],
            403,
        ),
    ] {
        let got = upgrade_status(&gw.addr, from, &headers).await;
        assert_eq!(got, want, "{what} (from {from}): {headers:?}");
    }
    // The 403s are counted.
    let metrics = gw.client().scrape().await.unwrap();
    assert!(
        metrics.contains("checkraft_gateway_ws_rejections_total{reason=\"origin\"} 3\n"),
        "{metrics}"
    );
}

/// A reqwest client whose connections come from `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip(from))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// One answer: status, `Retry-After`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

async fn answer(rb: reqwest::RequestBuilder) -> Answer {
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.text().await.unwrap_or_default();
    Answer {
        status,
        retry_after,
        body,
    }
}

fn put(http: &reqwest::Client, addr: &str, index: u64) -> reqwest::RequestBuilder {
    http.put(format!("http://{addr}/api/boxes/{index}"))
        .json(&serde_json::json!({ "checked": true }))
}

fn post(http: &reqwest::Client, addr: &str, index: u64) -> reqwest::RequestBuilder {
    http.post(format!("http://{addr}/nojs/set"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("set={index}:1"))
}

/// Sends the `FLOOD` requests `make(i)` at once; returns their answers.
async fn flood(make: impl Fn(u64) -> reqwest::RequestBuilder) -> Vec<Answer> {
    futures::future::join_all((0..FLOOD as u64).map(|i| answer(make(i)))).await
}

/// Checks a flood's answers: `ok` or 429 each, some of both, every 429
/// with `Retry-After` and `limited_body` in its body. Returns the number
/// of 429s and the longest `Retry-After`.
fn check_flood(what: &str, answers: &[Answer], ok: u16, limited_body: &str) -> (usize, u64) {
    let mut limited = 0;
    let mut longest = 0;
    for a in answers {
        match a.status {
            s if s == ok => {}
            429 => {
                limited += 1;
                let secs = a
                    .retry_after
                    .unwrap_or_else(|| panic!("{what}: 429 without Retry-After: {a:?}"));
                assert!((1..=60).contains(&secs), "{what}: Retry-After {secs}");
                longest = longest.max(secs);
                assert!(a.body.contains(limited_body), "{what}: {a:?}");
            }
            _ => panic!("{what}: unexpected answer {a:?}"),
        }
    }
    let served = answers.len() - limited;
    eprintln!("{what}: {served} served, {limited} limited");
    assert!(
        limited > 0,
        "{what}: a flood of {} was never limited",
        answers.len()
    );
    assert!(served > 0, "{what}: the burst was not served");
    (limited, longest)
}

/// A gateway with the default limits, 127.0.0.1 playing a trusted proxy
/// (as Caddy does), on a cluster of its own.
async fn limited_gateway() -> (Cluster, GatewayProcess) {
    let cluster = cluster().await;
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[("CHECKRAFT_GATEWAY_TRUSTED_PROXIES", "[\"127.0.0.1\"]")],
    )
    .await;
    (cluster, gw)
}

/// Checks that `/metrics` counts `api` and `nojs` 429s.
async fn assert_counted(gw: &GatewayProcess, api: usize, nojs: usize) {
    let metrics = answer(gw.client().http().get(gw.client().url("/metrics")))
        .await
        .body;
    for (endpoint, count) in [("api", api), ("nojs", nojs)] {
        let line = format!(
            "checkraft_gateway_http_rate_limited_total{{endpoint=\"{endpoint}\"}} {count}\n"
        );
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_put_floods_are_limited_per_client_address() {
    tokio::time::timeout(TEST_LIMIT, put_limits_test())
        .await
        .expect("HTTP PUT rate limit test exceeded its bound");
}

async fn put_limits_test() {
    let (_cluster, gw) = limited_gateway().await;
    let addr = gw.addr.clone();

    // PUT flood from 127.0.0.2.
    let flooder = client_from("127.0.0.2");
    let answers = flood(|i| put(&flooder, &addr, i)).await;
    let (limited, wait) = check_flood("PUT flood", &answers, 200, "\"kind\":\"rate_limited\"");
    let refusal: serde_json::Value =
        serde_json::from_str(&answers.iter().find(|a| a.status == 429).unwrap().body).unwrap();
    assert!(
        refusal["message"].as_str().unwrap().contains("127.0.0.2"),
        "{refusal}"
    );
    // Another address is served at once.
    let other = answer(put(&client_from("127.0.0.3"), &addr, 30_000)).await;
    assert_eq!(other.status, 200, "{other:?}");
    // The flooder again, once its Retry-After has passed.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = answer(put(&flooder, &addr, 30_001)).await;
    assert_eq!(again.status, 200, "after Retry-After {wait}: {again:?}");

    // Behind the trusted proxy, the forwarded client's bucket is used.
    let proxy = client_from("127.0.0.1");
    let answers =
        flood(|i| put(&proxy, &addr, 1_000 + i).header("x-forwarded-for", "203.0.113.7")).await;
    let (forwarded, _) = check_flood("forwarded PUT flood", &answers, 200, "203.0.113.7");
    let other = answer(put(&proxy, &addr, 30_002).header("x-forwarded-for", "203.0.113.8")).await;
    assert_eq!(other.status, 200, "another forwarded client: {other:?}");
    let direct = answer(put(&proxy, &addr, 30_003)).await;
    assert_eq!(direct.status, 200, "the proxy's own address: {direct:?}");

    assert_counted(&gw, limited + forwarded, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nojs_form_floods_are_limited_per_client_address() {
    tokio::time::timeout(TEST_LIMIT, nojs_limits_test())
        .await
        .expect("no-JS rate limit test exceeded its bound");
}

async fn nojs_limits_test() {
    let (_cluster, gw) = limited_gateway().await;
    let addr = gw.addr.clone();

    // Form flood from 127.0.0.4: HTML 429 pages with a link back.
    let flooder = client_from("127.0.0.4");
    let answers = flood(|i| post(&flooder, &addr, 2_000 + i)).await;
    let (limited, wait) = check_flood(
        "POST /nojs/set flood",
        &answers,
        303,
        "429 Too Many Requests",
    );
    let page = &answers.iter().find(|a| a.status == 429).unwrap().body;
    assert!(
        page.contains("Back to the boxes") && page.contains("127.0.0.4"),
        "{page}"
    );
    // Another address is served at once, the flooder after Retry-After.
    let other = answer(post(&client_from("127.0.0.5"), &addr, 30_004)).await;
    assert_eq!(other.status, 303, "{other:?}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = answer(post(&flooder, &addr, 30_005)).await;
    assert_eq!(again.status, 303, "after Retry-After {wait}: {again:?}");

    assert_counted(&gw, 0, limited).await;
}
