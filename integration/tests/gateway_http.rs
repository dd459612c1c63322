//! The gateway's HTTP API against real processes: three nodes bootstrapped
//! with `raftctl init` (40,000 boxes, 4 shards, chunks of 4096) and one or
//! two real `checkraft-gateway`s.
//!
//! - a PUT is visible through `GET /api/boxes` and at the right bit of
//!   `GET /api/chunks`; `If-None-Match` gives 304 until the chunk changes;
//!   gzip is negotiated;
//! - a PUT through one gateway reaches another gateway's chunk API (the
//!   change-stream path);
//! - bad input gets 400/404 and the gateway keeps serving;
//! - kill -9 of a shard leader while PUTs continue: every acknowledged PUT
//!   is then visible through the gateway and through linearizable reads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkraft_integration::{
    eventually, initialized_cluster, Cluster, GatewayClient, GatewayProcess, Router,
};
use checkraft_proto::ShardLocation;

const TOKEN: &str = "gateway-test-token";
const BOXES: u64 = 40_000;
const CHUNK: u64 = 4096;

async fn cluster() -> Cluster {
    initialized_cluster(TOKEN, BOXES, 4).await
}

async fn put_ok(gw: &GatewayClient, index: u64, checked: bool) -> u64 {
    let (status, body) = gw.put_box(index, checked).await.unwrap();
    assert_eq!(status, 200, "PUT box {index}: {body}");
    assert_eq!(body["index"], index);
    assert_eq!(body["checked"], checked);
    body["seq"].as_u64().expect("seq in the PUT reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_etags_two_gateways_and_bad_input() {
    tokio::time::timeout(Duration::from_secs(300), chunks_test())
        .await
        .expect("gateway HTTP test exceeded its bound");
}

async fn chunks_test() {
    let cluster = cluster().await;
    let gw1 = GatewayProcess::start(&cluster, 1, &[]).await;
    let gw2 = GatewayProcess::start(&cluster, 2, &[]).await;
    let (c1, c2) = (gw1.client(), gw2.client());

    // PUT, then read back the box and its chunk from the same gateway.
    let seq = put_ok(&c1, 5000, true).await;
    let (status, body) = c1.get_box(5000).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checked"], true, "{body}");
    assert!(body["seq"].as_u64().unwrap() >= seq, "{body}");
    let (status, body) = c1.get_box(5002).await.unwrap();
    assert_eq!((status, &body["checked"]), (200, &serde_json::json!(false)));

    let chunk = 5000 / CHUNK;
    let first = c1.chunk(chunk, None, false).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len() as u64, CHUNK / 8);
    let offset = 5000 - chunk * CHUNK;
    assert!(
        first.bit(offset),
        "box 5000 not at bit {offset} of chunk {chunk}"
    );
    let set: Vec<u64> = (0..CHUNK).filter(|i| first.bit(*i)).collect();
    assert_eq!(
        set,
        vec![offset],
        "only box 5000 is checked in chunk {chunk}"
    );
    assert!(first.seq.unwrap() >= seq);
    let etag = first.etag.clone().expect("ETag");
    assert!(etag.starts_with("W/\"") && etag.ends_with('"'), "{etag}");

    // Conditional GET: unchanged chunk → 304 without a body.
    let again = c1.chunk(chunk, Some(&etag), false).await.unwrap();
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.etag.as_deref(), Some(etag.as_str()));

    // gzip when accepted.
    let zipped = c1.chunk(chunk, None, true).await.unwrap();
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.encoding.as_deref(), Some("gzip"));
    assert_eq!(&zipped.body[..2], &[0x1f, 0x8b], "not a gzip body");
    assert!(zipped.body.len() < first.body.len());

    // Another PUT in the chunk: the old ETag now gets a 200 and a new one.
    let seq2 = put_ok(&c1, 5001, true).await;
    assert!(seq2 > seq);
    let changed = c1.chunk(chunk, Some(&etag), false).await.unwrap();
    assert_eq!(changed.status, 200);
    let etag2 = changed.etag.clone().unwrap();
    assert_ne!(etag2, etag);
    assert!(changed.bit(offset) && changed.bit(offset + 1));

    // Gateway 2 sees gateway 1's writes through its own change streams.
    let on_gw2 = eventually(
        Duration::from_secs(30),
        "gateway 2 to show gateway 1's writes",
        || {
            let c2 = c2.clone();
            let etag2 = etag2.clone();
            async move {
                let r = c2.chunk(chunk, None, false).await.ok()?;
                (r.status == 200 && r.etag.as_deref() == Some(etag2.as_str())).then_some(r)
            }
        },
    )
    .await;
    assert!(on_gw2.bit(offset) && on_gw2.bit(offset + 1));
    // ... and the other way round, in another shard.
    let far = 30_000u64;
    put_ok(&c2, far, true).await;
    let far_chunk = far / CHUNK;
    let far_offset = far - far_chunk * CHUNK;
    eventually(
        Duration::from_secs(30),
        "gateway 1 to show gateway 2's write",
        || {
            let c1 = c1.clone();
            async move {
                let r = c1.chunk(far_chunk, None, false).await.ok()?;
                (r.status == 200 && r.bit(far_offset)).then_some(())
            }
        },
    )
    .await;
    // Unchecking works too.
    put_ok(&c1, 5001, false).await;
    let (_, body) = c1.get_box(5001).await.unwrap();
    assert_eq!(body["checked"], false);

    let stats = c1.stats().await.unwrap();
    assert_eq!(stats["boxes"], BOXES);
    assert_eq!(stats["chunk_size"], CHUNK);
    assert_eq!(stats["shards_loaded"], 4);
    assert!(stats["map_version"].as_u64().unwrap() > 0);
    assert_eq!(stats["checked"], 2, "{stats}");

    // Bad input: clear errors, and the gateway keeps serving.
    let http = c1.http();
    let (status, body) = c1.put_box(BOXES, true).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("out of range"),
        "{body}"
    );
    assert_eq!(c1.get_box(BOXES).await.unwrap().0, 400);
    assert_eq!(c1.get_box(u64::MAX).await.unwrap().0, 400);
    for (method, path, body) in [
        ("PUT", "/api/boxes/7", "{\"checked\": tru"),
        ("PUT", "/api/boxes/7", "{\"checked\": \"yes\"}"),
        ("PUT", "/api/boxes/7", ""),
        ("PUT", "/api/boxes/seven", "{\"checked\": true}"),
        ("GET", "/api/boxes/-1", ""),
        ("GET", "/api/chunks/x", ""),
    ] {
        let rb = match method {
            "PUT" => http.put(c1.url(path)),
            _ => http.get(c1.url(path)),
        };
        let resp = rb.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 400, "{method} {path} {body:?}: {text}");
        assert!(text.contains("bad_request"), "{text}");
    }
    let past = c1.chunk(BOXES.div_ceil(CHUNK), None, false).await.unwrap();
    assert_eq!(past.status, 404);
    let unknown = http.get(c1.url("/api/nothing")).send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let (status, body) = c1.get_box(7).await.unwrap();
    assert_eq!((status, &body["checked"]), (200, &serde_json::json!(false)));
    assert!(c1.healthy().await);

    // Metrics: one open stream per shard (eventually: a stream may be
    // reopening at any moment), and the write path's counters.
    eventually(Duration::from_secs(30), "the gateway's metrics", || {
        let c1 = c1.clone();
        async move {
            let text = c1
                .http()
                .get(c1.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let wanted = [
                "checkraft_gateway_shard_subscriptions 4",
                "checkraft_gateway_write_batches_total",
                "checkraft_gateway_events_applied_total",
                "checkraft_gateway_write_latency_seconds_bucket",
                "checkraft_gateway_batch_sets_bucket",
                "checkraft_gateway_map_version",
            ];
            wanted.iter().all(|w| text.contains(w)).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_a_leader_kill() {
    tokio::time::timeout(Duration::from_secs(300), failover_test())
        .await
        .expect("gateway failover test exceeded its bound");
}

async fn failover_test() {
    let mut cluster = cluster().await;
    // The writer PUTs in a tight loop from one address: lift the per-address
    // HTTP write limit, as bench does for the websocket's.
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[
            ("CHECKRAFT_GATEWAY_HTTP_SETS_PER_SECOND", "1000000"),
            ("CHECKRAFT_GATEWAY_HTTP_SETS_BURST", "1000000"),
        ],
    )
    .await;
    let client = gw.client();

    let shard = 2;
    let node = cluster.client(1);
    let location: ShardLocation = node
        .send(node.http().get(node.url(&format!("/meta/shards/{shard}"))))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let start = location.shard.descriptor.start;

    // A writer PUTs fresh boxes of the shard, one after another, and keeps
    // the acknowledged ones.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = start;
            while !stop.load(Ordering::Relaxed) {
                if let Ok((200, _)) = client.put_box(next, true).await {
                    acked.lock().unwrap().push(next);
                }
                next += 1;
            }
        })
    };
    let count = || acked.lock().unwrap().len();
    eventually(Duration::from_secs(60), "PUTs before the kill", || async {
        (count() >= 20).then_some(())
    })
    .await;

    let victim = cluster.confirmed_shard_leader(shard, TOKEN).await;
    cluster.kill(victim);
    let before = count();
    eventually(Duration::from_secs(120), "PUTs after the kill", || async {
        (count() >= before + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "killed node {victim} (leader of shard {shard}); {} PUTs acknowledged, {before} before the kill",
        acked.len()
    );

    // Every acknowledged PUT is in the gateway's chunks...
    let mut by_chunk: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for i in &acked {
        by_chunk.entry(i / CHUNK).or_default().push(*i);
    }
    for (chunk, boxes) in &by_chunk {
        let (client, boxes) = (client.clone(), boxes.clone());
        let chunk = *chunk;
        eventually(
            Duration::from_secs(60),
            &format!("chunk {chunk} to show every acknowledged PUT"),
            || {
                let (client, boxes) = (client.clone(), boxes.clone());
                async move {
                    let r = client.chunk(chunk, None, false).await.ok()?;
                    (r.status == 200 && boxes.iter().all(|i| r.bit(i - chunk * CHUNK)))
                        .then_some(())
                }
            },
        )
        .await;
    }
    // ... and in a linearizable read of the shard.
    let survivors: Vec<String> = cluster
        .members()
        .iter()
        .filter(|(id, _)| **id != victim)
        .map(|(_, a)| a.clone())
        .collect();
    let mut router = Router::new(survivors).await.unwrap();
    let all = router.read_all().await.unwrap();
    for i in &acked {
        assert!(
            all.contains(*i as u32),
            "acknowledged box {i} missing from the linearizable read"
        );
    }
    // Every shard's stream still delivers after the kill (some of them
    // were served by the killed node): a PUT into each shows up in its
    // chunk.
    let last_boxes: Vec<u64> = router
        .map
        .shards
        .values()
        .map(|s| s.descriptor.end - 1)
        .collect();
    for i in last_boxes {
        put_ok(&client, i, true).await;
        let chunk = i / CHUNK;
        let client = client.clone();
        eventually(
            Duration::from_secs(60),
            &format!("box {i} in chunk {chunk} after the kill"),
            || {
                let client = client.clone();
                async move {
                    let r = client.chunk(chunk, None, false).await.ok()?;
                    (r.status == 200 && r.bit(i - chunk * CHUNK)).then_some(())
                }
            },
        )
        .await;
    }
    assert!(
        client.healthy().await,
        "the gateway must recover its streams"
    );
}
