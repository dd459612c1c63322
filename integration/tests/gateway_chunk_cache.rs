//! Chunk revalidation and content-coding against real processes: three
//! nodes bootstrapped with `raftctl init` (40,000 boxes, 4 shards, chunks
//! of 4096) and real `checkraft-gateway`s.
//!
//! - a write to chunk A leaves the ETag of its neighbour B in the same
//!   shard alone: revalidating B answers 304, on the gateway that took the
//!   write, on another gateway once it shows the write, and on a gateway
//!   started after it (whose state came from a different history);
//! - A's old ETag gets a 200 with a new tag;
//! - `Accept-Encoding` picks `br`, `zstd` or `gzip` (the gateway's order,
//!   or the client's `q`), with the same ETag and `X-Checkraft-Seq` in
//!   every coding; the metric counts answers by coding and 304s;
//! - the overview counts checked boxes per region, with a content ETag
//!   (304 until a box in it changes) and a finer level for a zoomed range;
//! - cross-origin reads: CORS headers for a configured page origin only,
//!   never on writes; preflights for `If-None-Match`.

use std::time::Duration;

use checkraft_integration::{
    eventually, initialized_cluster, metric_sum, GatewayClient, GatewayProcess,
};
use checkraft_proto::ShardLocation;

const TOKEN: &str = "chunk-cache-test-token";
const BOXES: u64 = 40_000;
/// The page origin gateway 1 serves cross-origin reads to.
const PAGE: &str = "http://page.test:8080";

/// One raw `GET /api/chunks/{c}`: status, ETag, seq, Content-Encoding, body.
async fn get(
    gw: &GatewayClient,
    chunk: u64,
    if_none_match: Option<&str>,
    accept: Option<&str>,
) -> (u16, String, u64, Option<String>, Vec<u8>) {
    let mut rb = gw.http().get(gw.url(&format!("/api/chunks/{chunk}")));
    if let Some(tag) = if_none_match {
        rb = rb.header("If-None-Match", tag);
    }
    if let Some(accept) = accept {
        rb = rb.header("Accept-Encoding", accept);
    }
    let resp = rb.send().await.expect("chunk request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let etag = header("etag").expect("every chunk answer has an ETag");
    let seq = header("x-checkraft-seq")
        .and_then(|s| s.parse().ok())
        .expect("every chunk answer has X-Checkraft-Seq");
    let encoding = header("content-encoding");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("chunk body").to_vec();
    (status, etag, seq, encoding, body)
}

fn bit(body: &[u8], i: u64) -> bool {
    body.get((i / 8) as usize)
        .is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_leaves_its_neighbours_etags_alone() {
    tokio::time::timeout(Duration::from_secs(240), neighbours_test())
        .await
        .expect("chunk cache test exceeded its bound");
}

async fn neighbours_test() {
    let cluster = initialized_cluster(TOKEN, BOXES, 4).await;
    let gw1 = GatewayProcess::start(
        &cluster,
        1,
        &[("CHECKRAFT_GATEWAY_PAGE_ORIGINS", &format!("[\"{PAGE}\"]"))],
    )
    .await;
    let gw2 = GatewayProcess::start(&cluster, 2, &[]).await;
    let (c1, c2) = (gw1.client(), gw2.client());
    let chunk_size = c1.stats().await.unwrap()["chunk_size"].as_u64().unwrap();

    // Two chunks of one shard: A (the shard's first) and B (the next).
    let node = cluster.client(1);
    let location: ShardLocation = node
        .send(node.http().get(node.url("/meta/shards/1")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (start, end) = (
        location.shard.descriptor.start,
        location.shard.descriptor.end,
    );
    let a = start / chunk_size;
    let b = a + 1;
    assert!(
        start % chunk_size == 0 && b * chunk_size < end,
        "shard 1 [{start}, {end}) holds chunks {a} and {b}"
    );

    let (status, tag_a, _, _, _) = get(&c1, a, None, None).await;
    assert_eq!(status, 200);
    let (status, tag_b, seq_b, _, body_b) = get(&c1, b, None, None).await;
    assert_eq!(status, 200);
    assert!(tag_b.starts_with("W/\"") && tag_b.ends_with('"'), "{tag_b}");
    // The same content has the same tag on another gateway.
    let (status, tag_b2, _, _, _) = get(&c2, b, None, None).await;
    assert_eq!((status, &tag_b2), (200, &tag_b), "gateway 2 names B alike");

    // A write to A, acknowledged once gateway 1 shows it.
    let box_a = a * chunk_size + 7;
    let (status, put) = c1.put_box(box_a, true).await.unwrap();
    assert_eq!(status, 200, "{put}");
    let put_seq = put["seq"].as_u64().unwrap();
    assert!(put_seq > seq_b, "the write moved the shard's seq");

    // B did not change: 304, still with a valid version (the shard's seq).
    let (status, tag, seq, _, body) = get(&c1, b, Some(&tag_b), Some("br, gzip")).await;
    assert_eq!(
        status, 304,
        "B unchanged after a write to A must revalidate with 304"
    );
    assert!(body.is_empty());
    assert_eq!(tag, tag_b);
    assert!(seq >= put_seq, "304 carries the version: {seq} < {put_seq}");
    // A did change: its old tag gets a 200 with a new tag.
    let (status, new_tag_a, _, _, body) = get(&c1, a, Some(&tag_a), None).await;
    assert_eq!(status, 200);
    assert_ne!(new_tag_a, tag_a);
    assert!(bit(&body, box_a - a * chunk_size));

    // Gateway 2, once it shows the write: A's new tag, B's old one.
    eventually(
        Duration::from_secs(30),
        "gateway 2 to show the write",
        || {
            let (c2, new_tag_a) = (c2.clone(), new_tag_a.clone());
            async move {
                let (status, tag, _, _, _) = get(&c2, a, Some(&new_tag_a), None).await;
                (status == 304 && tag == new_tag_a).then_some(())
            }
        },
    )
    .await;
    let (status, tag, _, _, _) = get(&c2, b, Some(&tag_b), None).await;
    assert_eq!((status, &tag), (304, &tag_b), "gateway 2 revalidates B");

    // A gateway started now loads its state another way (from seq 0 or a
    // snapshot), and still names both chunks alike.
    let gw3 = GatewayProcess::start(&cluster, 3, &[]).await;
    let c3 = gw3.client();
    let (status, tag, _, _, _) = get(&c3, b, Some(&tag_b), None).await;
    assert_eq!((status, &tag), (304, &tag_b), "a new gateway revalidates B");
    let (status, tag, _, _, _) = get(&c3, a, Some(&new_tag_a), None).await;
    assert_eq!((status, &tag), (304, &new_tag_a));

    // Content-coding: the gateway's preference, then the client's q.
    let (_, _, seq_id, _, raw) = get(&c1, a, None, None).await;
    assert_eq!(raw.len() as u64, chunk_size / 8);
    for (accept, want) in [
        ("gzip, deflate, br, zstd", Some("br")),
        ("gzip, zstd", Some("zstd")),
        ("gzip", Some("gzip")),
        ("br;q=0.5, gzip", Some("gzip")),
        ("identity", None),
    ] {
        let (status, tag, seq, encoding, body) = get(&c1, a, None, Some(accept)).await;
        assert_eq!(status, 200, "{accept}");
        assert_eq!(encoding.as_deref(), want, "Accept-Encoding: {accept}");
        assert_eq!(tag, new_tag_a, "one tag in every coding ({accept})");
        assert_eq!(seq, seq_id, "{accept}");
        match want {
            Some("gzip") => assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic"),
            Some("zstd") => assert_eq!(&body[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic"),
            Some(_) => {}
            None => assert_eq!(body, raw),
        }
        if want.is_some() {
            assert!(
                body.len() * 4 < raw.len(),
                "{accept}: {} of {} bytes",
                body.len(),
                raw.len()
            );
        }
    }
    assert_eq!(body_b.len() as u64, chunk_size / 8);

    // The overview: one region per chunk here, box_a counted in A's.
    let overview = |query: &'static str, inm: Option<String>| {
        let c1 = c1.clone();
        async move {
            let mut rb = c1.http().get(c1.url(&format!("/api/overview{query}")));
            if let Some(tag) = inm {
                rb = rb.header("If-None-Match", tag);
            }
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            let tag = resp
                .headers()
                .get("etag")
                .map(|t| t.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body: serde_json::Value = if status == 200 {
                resp.json().await.unwrap()
            } else {
                serde_json::Value::Null
            };
            (status, tag, body)
        }
    };
    let (status, ov_tag, ov) = overview("", None).await;
    assert_eq!(status, 200, "{ov}");
    assert_eq!(
        (ov["region"].as_u64(), ov["level"].as_u64()),
        (Some(chunk_size), Some(0))
    );
    let counts: Vec<u64> = serde_json::from_value(ov["counts"].clone()).unwrap();
    assert_eq!(counts.len() as u64, BOXES.div_ceil(chunk_size));
    assert_eq!(counts[a as usize], 1, "{ov}");
    assert_eq!(counts.iter().sum::<u64>(), 1, "{ov}");
    let (status, _, _) = overview("", Some(ov_tag.clone())).await;
    assert_eq!(status, 304, "an unchanged overview revalidates");
    let far = BOXES - 3;
    assert_eq!(c1.put_box(far, true).await.unwrap().0, 200);
    let (status, new_tag, ov) = overview("", Some(ov_tag.clone())).await;
    assert_eq!(status, 200);
    assert_ne!(new_tag, ov_tag);
    assert_eq!(ov["counts"].as_array().unwrap().last().unwrap(), 1);
    let (status, _, zoom) = overview("?start=4096&end=4106", None).await;
    assert_eq!(status, 200);
    assert_eq!(zoom["start"], 4096);
    let (status, _, _) = overview("?start=50000", None).await;
    assert_eq!(status, 400);

    // CORS: the page origin may read (and see the ETag and seq), others
    // may not; writes get no CORS headers; a preflight for If-None-Match.
    let cors = |origin: &'static str, method: reqwest::Method, path: String| {
        let c1 = c1.clone();
        async move {
            let resp = c1
                .http()
                .request(method, c1.url(&path))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "GET")
                .header("Access-Control-Request-Headers", "if-none-match")
                .send()
                .await
                .unwrap();
            let h = |n: &str| {
                resp.headers()
                    .get(n)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            (
                resp.status().as_u16(),
                h("access-control-allow-origin"),
                h("access-control-expose-headers"),
            )
        }
    };
    let chunk_path = format!("/api/chunks/{b}");
    let (status, allow, expose) = cors(PAGE, reqwest::Method::GET, chunk_path.clone()).await;
    assert_eq!((status, allow.as_deref()), (200, Some(PAGE)));
    assert!(expose.unwrap().contains("X-Checkraft-Seq"));
    let (_, allow, _) = cors("http://evil.test", reqwest::Method::GET, chunk_path.clone()).await;
    assert_eq!(allow, None, "no CORS for another origin");
    let (status, allow, _) = cors(PAGE, reqwest::Method::OPTIONS, chunk_path.clone()).await;
    assert_eq!((status, allow.as_deref()), (204, Some(PAGE)));
    let (status, _, _) = cors("http://evil.test", reqwest::Method::OPTIONS, chunk_path).await;
    assert_eq!(status, 403);
    let (_, allow, _) = cors(PAGE, reqwest::Method::GET, "/api/stats".into()).await;
    assert_eq!(allow.as_deref(), Some(PAGE));
    let (_, allow, _) = cors(PAGE, reqwest::Method::PUT, format!("/api/boxes/{box_a}")).await;
    assert_eq!(allow, None, "writes never get CORS headers");
    // Gateway 2 lists no page origins: no CORS at all.
    let resp = c2
        .http()
        .get(c2.url("/api/stats"))
        .header("Origin", PAGE)
        .send()
        .await
        .unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));

    let text = c1.scrape().await.unwrap();
    let answers = |a: &str| {
        metric_sum(
            &text
                .lines()
                .filter(|l| l.contains(&format!("answer=\"{a}\"")))
                .collect::<Vec<_>>()
                .join("\n"),
            "checkraft_gateway_http_chunk_responses_total",
        )
    };
    assert!(answers("not_modified") >= 1.0, "{text}");
    assert!(answers("br") >= 1.0 && answers("zstd") >= 1.0);
}
