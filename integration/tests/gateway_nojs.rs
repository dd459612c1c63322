//! The gateway's no-JavaScript pages against real processes: three nodes
//! bootstrapped with `raftctl init` (40,000 boxes, 4 shards, chunks of
//! 4096) and one real `checkraft-gateway` (1,000 boxes per page).
//!
//! - `GET /nojs?page=0` is an HTML form of 1,000 submit buttons with
//!   prev/next links and the security headers;
//! - `POST /nojs/set` checks and unchecks a box: 303 back to its page,
//!   which then shows the new state, as does `/api/boxes/{i}`; a page
//!   spanning two chunks shows writes on both sides;
//! - the jump form `?box=2500` lands on page 2;
//! - bad input gets HTML 400/404 pages and the gateway keeps serving.

use std::time::Duration;

use checkraft_integration::{initialized_cluster, Cluster, GatewayClient, GatewayProcess};

const TOKEN: &str = "gateway-nojs-token";
const BOXES: u64 = 40_000;
const PER_PAGE: u64 = 1_000;
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'";

async fn cluster() -> Cluster {
    initialized_cluster(TOKEN, BOXES, 4).await
}

/// A client that does not follow redirects, so 303s can be checked.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

struct Reply {
    status: u16,
    location: Option<String>,
    body: String,
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Checks the headers every `/nojs` answer carries, and reads it.
async fn reply(what: &str, resp: reqwest::Response) -> Reply {
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/html; charset=utf-8"),
        "{what}"
    );
    assert_eq!(
        header(&resp, "cache-control").as_deref(),
        Some("no-store"),
        "{what}"
    );
    assert_eq!(
        header(&resp, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    let csp = header(&resp, "content-security-policy").unwrap_or_default();
    assert!(csp.starts_with(CSP), "{what}: CSP {csp:?}");
    assert!(!csp.contains("script-src"), "{what}: CSP {csp:?}");
    let status = resp.status().as_u16();
    let location = header(&resp, "location");
    let body = resp.text().await.expect("body");
    assert!(
        !body.to_ascii_lowercase().contains("<script"),
        "{what}: a script in the page"
    );
    Reply {
        status,
        location,
        body,
    }
}

async fn get(http: &reqwest::Client, gw: &GatewayClient, path: &str) -> Reply {
    let resp = http.get(gw.url(path)).send().await.expect("GET");
    reply(&format!("GET {path}"), resp).await
}

async fn post(http: &reqwest::Client, gw: &GatewayClient, content_type: &str, form: &str) -> Reply {
    let resp = http
        .post(gw.url("/nojs/set"))
        .header("content-type", content_type)
        .body(form.to_string())
        .send()
        .await
        .expect("POST");
    reply(&format!("POST /nojs/set {form:?}"), resp).await
}

const FORM: &str = "application/x-www-form-urlencoded";

fn buttons(body: &str) -> usize {
    body.matches("<button type=\"submit\" id=\"box-").count()
}

fn shows(body: &str, index: u64, checked: bool) -> bool {
    let want = if checked {
        format!(
            "id=\"box-{index}\" class=\"on\" name=\"set\" value=\"{index}:0\" \
             aria-label=\"box {index}, checked\""
        )
    } else {
        format!(
            "id=\"box-{index}\" name=\"set\" value=\"{index}:1\" \
             aria-label=\"box {index}, unchecked\""
        )
    };
    body.contains(&want)
}

async fn api_checked(gw: &GatewayClient, index: u64) -> bool {
    let (status, body) = gw.get_box(index).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["checked"].as_bool().expect("checked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nojs_pages_forms_jumps_and_bad_input() {
    tokio::time::timeout(Duration::from_secs(300), nojs_test())
        .await
        .expect("gateway no-JS test exceeded its bound");
}

async fn nojs_test() {
    let cluster = cluster().await;
    let gw = GatewayProcess::start(&cluster, 1, &[]).await;
    let c = gw.client();
    let http = no_redirects();

    // Page 0: 1,000 buttons, next but no previous, the jump form.
    let page0 = get(&http, &c, "/nojs?page=0").await;
    assert_eq!(page0.status, 200, "{}", page0.body);
    assert_eq!(buttons(&page0.body), PER_PAGE as usize);
    assert!(page0.body.contains("rel=\"next\" href=\"/nojs?page=1\""));
    assert!(!page0.body.contains("rel=\"prev\""));
    assert!(page0
        .body
        .contains("<form method=\"post\" action=\"/nojs/set\">"));
    assert!(page0.body.contains("name=\"box\" type=\"number\""));
    assert!(shows(&page0.body, 0, false) && shows(&page0.body, 999, false));
    assert!(!page0.body.contains("id=\"box-1000\""));
    let bare = get(&http, &c, "/nojs").await;
    assert_eq!((bare.status, buttons(&bare.body)), (200, 1000));

    // Check box 5: 303 back to its page, then page and API agree.
    let set = post(&http, &c, FORM, "set=5%3A1&page=0").await;
    assert_eq!(set.status, 303, "{}", set.body);
    assert_eq!(set.location.as_deref(), Some("/nojs?page=0#box-5"));
    let page0 = get(&http, &c, "/nojs?page=0").await;
    assert!(shows(&page0.body, 5, true), "box 5 not shown checked");
    assert!(shows(&page0.body, 4, false) && shows(&page0.body, 6, false));
    assert!(api_checked(&c, 5).await);

    // Uncheck it again.
    let unset = post(&http, &c, FORM, "set=5:0&page=0").await;
    assert_eq!(unset.status, 303, "{}", unset.body);
    assert_eq!(unset.location.as_deref(), Some("/nojs?page=0#box-5"));
    let page0 = get(&http, &c, "/nojs?page=0").await;
    assert!(shows(&page0.body, 5, false), "box 5 not shown unchecked");
    assert!(!api_checked(&c, 5).await);

    // A browser-like client follows the 303 to the page (a GET).
    let followed = c
        .http()
        .post(c.url("/nojs/set"))
        .header("content-type", FORM)
        .body("set=7:1&page=0")
        .send()
        .await
        .unwrap();
    let followed = reply("POST then follow", followed).await;
    assert_eq!(followed.status, 200);
    assert!(shows(&followed.body, 7, true));

    // Page 4 (boxes 4000..5000) spans chunks 0 and 1 (4096 boxes each).
    for index in [4095, 4096] {
        let r = post(&http, &c, FORM, &format!("set={index}:1&page=4")).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let want = format!("/nojs?page=4#box-{index}");
        assert_eq!(r.location.as_deref(), Some(want.as_str()));
    }
    let page4 = get(&http, &c, "/nojs?page=4").await;
    assert_eq!(buttons(&page4.body), 1000);
    assert!(shows(&page4.body, 4095, true) && shows(&page4.body, 4096, true));
    assert!(shows(&page4.body, 4094, false) && shows(&page4.body, 4097, false));

    // Jump to box 2500: 303 to page 2, which holds it.
    let jump = get(&http, &c, "/nojs?box=2500").await;
    assert_eq!(jump.status, 303, "{}", jump.body);
    assert_eq!(jump.location.as_deref(), Some("/nojs?page=2#box-2500"));
    let page2 = get(&http, &c, "/nojs?page=2").await;
    assert_eq!(buttons(&page2.body), 1000);
    assert!(shows(&page2.body, 2500, false));
    assert!(page2.body.contains("rel=\"prev\" href=\"/nojs?page=1\""));
    assert!(page2.body.contains("rel=\"next\" href=\"/nojs?page=3\""));

    // The last page: no next.
    let last = get(&http, &c, "/nojs?page=39").await;
    assert_eq!((last.status, buttons(&last.body)), (200, 1000));
    assert!(!last.body.contains("rel=\"next\""));
    assert!(shows(&last.body, BOXES - 1, false));

    // Bad input: HTML error pages with a link back; nothing changes.
    for path in [
        "/nojs?page=abc",
        "/nojs?page=-1",
        "/nojs?page=",
        "/nojs?page=1.5",
        "/nojs?page=99999999999999999999999",
        "/nojs?box=x",
        "/nojs?box=",
        "/nojs?box=40000",
        "/nojs?page=1&box=2",
        "/nojs?page=1&page=2",
        "/nojs?page=%3Cscript%3Ealert(1)%3C/script%3E",
    ] {
        let r = get(&http, &c, path).await;
        assert_eq!(r.status, 400, "GET {path}: {}", r.body);
        assert!(r.body.contains("400 Bad Request"), "GET {path}: {}", r.body);
        assert!(r.body.contains("href=\"/nojs?page=0\""), "GET {path}");
    }
    for path in ["/nojs?page=40", "/nojs?page=18446744073709551615"] {
        let r = get(&http, &c, path).await;
        assert_eq!(r.status, 404, "GET {path}: {}", r.body);
        assert!(r.body.contains("404 Not Found"), "GET {path}: {}", r.body);
    }
    for (content_type, form) in [
        (FORM, "set=40000:1&page=40"),
        (FORM, "set=18446744073709551615:1"),
        (FORM, "set=5:2&page=0"),
        (FORM, "set=5:true&page=0"),
        (FORM, "set=abc&page=0"),
        (FORM, "set=:1"),
        (FORM, "set=5:1&page=zero"),
        (FORM, "set=5:1&set=6:1"),
        (FORM, "page=0"),
        (FORM, ""),
        ("application/json", "{\"set\": \"5:1\"}"),
        ("multipart/form-data; boundary=x", "--x--"),
    ] {
        let r = post(&http, &c, content_type, form).await;
        assert_eq!(r.status, 400, "POST {form:?}: {}", r.body);
        assert!(r.location.is_none());
        assert!(r.body.contains("Back to the boxes"), "POST {form:?}");
    }
    let wrong_method = http.post(c.url("/nojs")).send().await.unwrap();
    assert_eq!(wrong_method.status().as_u16(), 404);

    // The gateway keeps serving, and the bad input changed nothing.
    assert!(c.healthy().await);
    assert!(!api_checked(&c, 5).await);
    assert!(api_checked(&c, 7).await);
    let stats = c.stats().await.unwrap();
    assert_eq!(stats["checked"], 3, "{stats}");
    let page0 = get(&http, &c, "/nojs?page=0").await;
    assert_eq!((page0.status, buttons(&page0.body)), (200, 1000));
    assert!(shows(&page0.body, 7, true) && shows(&page0.body, 5, false));
}
