//! A gateway's map long-poll on a node that is paused (issue 11: the
//! gap left at the previous stop).
//!
//! A gateway follows the shard map by long-polling one node (its first
//! seed, node 1) for up to `map_wait_ms` (30 s). Node 1 is paused
//! (SIGSTOP): the request neither answers nor fails. The map's version
//! then grows on the other nodes (the test records a leader hint through
//! them). The gateway must see the new map within 20 s; before
//! the long-poll watched its node's `/health`, it waited out the whole
//! `map_wait_ms` plus `node_timeout_ms` (35 s).

use std::time::{Duration, Instant};

use checkraft_integration::{eventually, initialized_cluster, metric_sum, GatewayProcess};
use checkraft_proto::{MetaCommand, ShardMap};

const TOKEN: &str = "paused-map-node-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_moves_on_from_a_paused_node() {
    tokio::time::timeout(Duration::from_secs(120), test())
        .await
        .expect("paused-map-node test exceeded its bound");
}

async fn test() {
    let cluster = initialized_cluster(TOKEN, 40_000, 2).await;
    let gateway = GatewayProcess::start(&cluster, 1, &[]).await;
    let client = gateway.client();
    let map_version = || async {
        let text = client.scrape().await.ok()?;
        Some(metric_sum(&text, "checkraft_gateway_map_version") as u64)
    };
    let before = map_version().await.expect("the gateway's map version");
    // Let the gateway settle into its long-poll on node 1.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.pause(1);
    let paused = Instant::now();
    // The map moves on without node 1. Leader changes for what node 1 led
    // would do it, but node 1 may lead nothing; so the test records a
    // leader hint itself, through nodes 2 and 3 (the metadata group
    // elects a leader among them if node 1 led it). A hint only routes
    // the first attempt of a write; nodes report the true leaders again.
    let newer = eventually(Duration::from_secs(30), "a newer map on node 2", || {
        let (node2, node3) = (
            cluster.client(2).with_token(TOKEN),
            cluster.client(3).with_token(TOKEN),
        );
        async move {
            let map: ShardMap = node2
                .send(node2.http().get(node2.url("/meta/map")))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            if map.version > before {
                return Some(map.version);
            }
            let hint = map.shards.get(&1)?.leader;
            let to = if hint == Some(2) { 3 } else { 2 };
            let command = MetaCommand::LeaderHints {
                hints: vec![(1, to)],
            };
            for node in [&node2, &node3] {
                let post = node.http().post(node.url("/admin/meta")).json(&command);
                let _ = node.send(post).await;
            }
            None
        }
    })
    .await;
    let seen = eventually(
        Duration::from_secs(40),
        "the gateway to follow the map",
        || async { map_version().await.filter(|v| *v >= newer) },
    )
    .await;
    let after = paused.elapsed();
    eprintln!(
        "map version {before} -> {newer} on node 2; the gateway had {seen} {} ms after node 1 was paused",
        after.as_millis()
    );
    cluster.resume(1);
    assert!(
        after < Duration::from_secs(20),
        "the gateway's map stayed on the paused node for {after:?}"
    );
}
