//! A gateway that only serves viewers leaves a frozen replica (issue 11,
//! defect 5, the part that needs no writes of the gateway's own).
//!
//! The gateway under test never writes to shard 1: it learns nothing
//! from acknowledgements. Its change stream for the shard is on a
//! follower (the test restarts it until its random first replica is one),
//! and that follower is cut off from the other nodes (iptables): it keeps
//! answering the stream with progress markers and no changes. Writes go
//! straight to the leader. Within a bounded time the gateway must show
//! them: its commit watch (`gateway/src/commit_watch.rs`) asks the leader
//! for its applied seq, and the stream that does not reach it is dropped.
//! Without the watch, the gateway shows none of them until the heal.
//!
//! Needs root for iptables and per-node uids (CI runs as root); skipped
//! with a message otherwise.

use std::time::Duration;

use checkraft_integration::{eventually, initialized_cluster_as_users, GatewayProcess};
use checkraft_proto::{SetBatch, WriteOutcome};

const TOKEN: &str = "frozen-replica-viewer-test-token";
const SHARD: u64 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewing_gateway_leaves_a_cut_off_follower() {
    tokio::time::timeout(Duration::from_secs(200), test())
        .await
        .expect("frozen-replica viewer test exceeded its bound");
}

/// The node address gateway `gw`'s log says it last followed `shard`
/// from (the gateway logs JSON lines here).
fn followed(gw: &GatewayProcess, shard: u64) -> Option<String> {
    gw.log_tail(2000).lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let f = &v["fields"];
        (f["message"] == "following the shard's change stream" && f["shard"] == shard)
            .then(|| f["node"].as_str().map(String::from))
            .flatten()
    })
}

async fn test() {
    let Some((partition, cluster)) = initialized_cluster_as_users(TOKEN, 40_000, 2).await else {
        return;
    };
    let leader = cluster.confirmed_shard_leader(SHARD, TOKEN).await;
    let members = cluster.members();
    let leader_addr = members[&leader].clone();

    // A viewing gateway whose shard-1 stream is on a follower.
    let gw_env = [("CHECKRAFT_GATEWAY_LOG_FORMAT", "json")];
    let mut attempt = 0;
    let (gateway, follower) = loop {
        attempt += 1;
        let gw = GatewayProcess::start(&cluster, attempt, &gw_env).await;
        let on = eventually(
            Duration::from_secs(10),
            "the gateway's shard-1 stream",
            || {
                let on = followed(&gw, SHARD);
                async move { on }
            },
        )
        .await;
        if on != leader_addr {
            let id = *members.iter().find(|(_, a)| **a == on).unwrap().0;
            break (gw, id);
        }
        assert!(attempt < 12, "the gateway always chose the leader");
        drop(gw);
    };
    eprintln!("gateway follows shard {SHARD} from node {follower} (leader: node {leader})");
    let read = cluster.client(leader).read(SHARD, true).await.unwrap();
    let epoch = read.descriptor.epoch;

    partition.isolate(&cluster, follower);
    let writer = cluster.client(leader).with_token(TOKEN);
    let boxes: Vec<u32> = (100..110).collect();
    for &b in &boxes {
        let batch = SetBatch {
            epoch,
            sets: vec![(b, true)],
        };
        let outcome = writer.write(SHARD, &batch).await.unwrap();
        assert!(
            matches!(outcome, WriteOutcome::Applied { .. }),
            "write to the leader: {outcome:?}"
        );
    }
    let shown = std::time::Instant::now();
    let client = gateway.client();
    eventually(
        Duration::from_secs(15),
        "the viewing gateway to show writes made while its replica is cut off",
        || {
            let client = client.clone();
            let boxes = boxes.clone();
            async move {
                for b in boxes {
                    let (status, body) = client.get_box(u64::from(b)).await.ok()?;
                    if status != 200 || body["checked"] != true {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    eprintln!(
        "the gateway showed all {} writes {} ms after the last one",
        boxes.len(),
        shown.elapsed().as_millis()
    );
    let now_on = followed(&gateway, SHARD);
    assert_ne!(
        now_on.as_deref(),
        Some(members[&follower].as_str()),
        "the gateway still follows the cut-off node"
    );
    partition.heal();
    cluster.replicas_agree(SHARD, Duration::from_secs(60)).await;
}
