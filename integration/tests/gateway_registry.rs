//! The live gateway registry against real processes: three nodes
//! bootstrapped with `raftctl init`, gateways with a `public_endpoint`
//! (reporting every 2 s, the default; nodes forget them after 6 s, the
//! default `gateway_down_after_ms`).
//!
//! - gateway 1 lists itself in `/config.json` (`source: "registry"`);
//! - a second gateway started during the test appears in gateway 1's
//!   `/config.json` and in `raftctl status --json` (asked of a node that
//!   does not lead the metadata group, which sends raftctl to the leader);
//! - after kill -9 it disappears from both within `gateway_down_after_ms`
//!   plus the 1 s cache and some slack;
//! - a non-leader answers `/meta/gateways` with 421 naming the leader; a
//!   malformed report gets 400 with a clear message, an anonymous one 401,
//!   and neither changes the registry.

use std::time::{Duration, Instant};

use checkraft_auth::{Role, Secret, Signer};
use checkraft_integration::{
    eventually, initialized_cluster, raftctl, Cluster, GatewayClient, GatewayProcess, NodeClient,
    TEST_GATEWAY_SECRET,
};
use checkraft_proto::{GatewayList, WriteOutcome, META_GROUP};
use serde_json::Value;

const TOKEN: &str = "gateway-registry-test-token";
/// The nodes' default `gateway_down_after_ms`.
const DOWN_AFTER: Duration = Duration::from_secs(6);
/// How long after a kill -9 the gateway may still be listed: the nodes'
/// `gateway_down_after_ms`, the gateways' 1 s cache, and slack for a
/// loaded machine.
const GONE_WITHIN: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_register_appear_and_expire() {
    tokio::time::timeout(Duration::from_secs(300), registry_test())
        .await
        .expect("gateway registry test exceeded its bound");
}

/// A node client that signs as a gateway.
fn as_gateway(addr: &str) -> NodeClient {
    let secret = Secret::new("gateway secret", TEST_GATEWAY_SECRET).expect("long enough");
    NodeClient::new(addr).with_signer(Signer::new(Role::Gateway, secret))
}

/// The metadata group's leader, as the nodes report it.
async fn meta_leader(cluster: &Cluster) -> u64 {
    eventually(Duration::from_secs(30), "a metadata leader", || async {
        for id in cluster.running() {
            let status = cluster.client(id).status().await.ok()?;
            if let Some(leader) = status.groups.get(&META_GROUP).and_then(|g| g.leader) {
                return Some(leader);
            }
        }
        None
    })
    .await
}

/// The endpoints of a gateway's `/config.json`, if it answers.
async fn listed(gw: &GatewayClient) -> Option<(Vec<String>, Value)> {
    let config = gw.client_config().await.ok()?;
    let endpoints = config["endpoints"]
        .as_array()?
        .iter()
        .filter_map(|e| e.as_str().map(String::from))
        .collect();
    Some((endpoints, config))
}

/// The endpoints `raftctl status --json` (entering at `entry`) shows.
async fn status_gateways(entry: &str) -> Vec<String> {
    let status: Value = raftctl(&["status", "--json", "--cluster", entry, "--token", TOKEN])
        .await
        .json();
    assert!(
        status.get("gateways_error").is_none(),
        "status could not read the registry: {status}"
    );
    status["gateways"]
        .as_array()
        .expect("status --json has a gateways list")
        .iter()
        .map(|g| g["endpoint"].as_str().expect("endpoint").to_string())
        .collect()
}

async fn registry_test() {
    let cluster = initialized_cluster(TOKEN, 8192, 2).await;
    let leader = meta_leader(&cluster).await;
    let follower = cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("three nodes");
    let follower_addr = cluster.members()[&follower].clone();

    let gw1 = GatewayProcess::start_registered(&cluster, 1, &[]).await;
    let c1 = gw1.client();
    let one = gw1.public_endpoint();
    eventually(
        Duration::from_secs(10),
        "gateway 1 to list itself",
        || async {
            let (endpoints, config) = listed(&c1).await?;
            (endpoints == vec![one.clone()] && config["source"] == "registry").then_some(())
        },
    )
    .await;

    // A second gateway, started now, shows up at gateway 1 and in status.
    let mut gw2 = GatewayProcess::start_registered(&cluster, 2, &[]).await;
    let two = gw2.public_endpoint();
    let config = eventually(
        Duration::from_secs(10),
        "gateway 2 in gateway 1's /config.json",
        || async {
            let (endpoints, config) = listed(&c1).await?;
            (endpoints == vec![one.clone(), two.clone()]).then_some(config)
        },
    )
    .await;
    let entry = &config["gateways"][1];
    assert_eq!(entry["endpoint"], two.as_str(), "{config}");
    assert!(
        entry["connections"].is_u64() && entry["load"].is_u64(),
        "{config}"
    );
    let shown = status_gateways(&follower_addr).await;
    assert_eq!(shown, vec![one.clone(), two.clone()], "raftctl status");

    // A non-leader sends callers to the leader.
    let resp = as_gateway(&follower_addr)
        .send(reqwest::Client::new().get(format!("http://{follower_addr}/meta/gateways")))
        .await
        .expect("GET /meta/gateways on a follower");
    assert_eq!(resp.status(), 421);
    match resp.json::<WriteOutcome>().await.expect("a forward body") {
        WriteOutcome::ForwardToLeader {
            leader_id,
            leader_addr,
        } => {
            assert_eq!(leader_id, Some(leader));
            assert_eq!(
                leader_addr.as_deref(),
                Some(cluster.members()[&leader].as_str())
            );
        }
        other => panic!("not a forward: {other:?}"),
    }

    // Bad input at the leader: malformed reports, no credential.
    let leader_addr = cluster.members()[&leader].clone();
    let url = format!("http://{leader_addr}/meta/gateways");
    let gateway = as_gateway(&leader_addr);
    let http = reqwest::Client::new();
    let cases: [(&str, &str); 4] = [
        ("not json", "invalid gateway report"),
        (r#"{"endpoint": 3}"#, "invalid gateway report"),
        (
            r#"{"gateway_id": 9, "endpoint": "http://evil/ws", "connections": 0, "max_connections": 1, "load_permille": 0}"#,
            "not a ws:// or wss:// URL",
        ),
        (
            r#"{"gateway_id": 9, "endpoint": "ws://x/ws", "connections": 0, "max_connections": 1, "load_permille": 5000}"#,
            "load_permille 5000 is over 1000",
        ),
    ];
    for (body, message) in cases {
        let resp = gateway
            .send(
                http.post(&url)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await
            .expect("POST /meta/gateways");
        assert_eq!(resp.status(), 400, "{body}");
        let error: Value = resp.json().await.expect("a JSON error");
        assert_eq!(error["kind"], "bad_request", "{error}");
        let text = error["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{body}: {text}");
    }
    let good = r#"{"gateway_id": 9, "endpoint": "ws://anonymous/ws", "connections": 0, "max_connections": 1, "load_permille": 0}"#;
    let anonymous = http
        .post(&url)
        .header("content-type", "application/json")
        .body(good)
        .send()
        .await
        .expect("anonymous POST");
    assert_eq!(anonymous.status(), 401);
    let anonymous = http.get(&url).send().await.expect("anonymous GET");
    assert_eq!(anonymous.status(), 401);
    let list: GatewayList = gateway
        .send(http.get(&url))
        .await
        .expect("GET /meta/gateways")
        .json()
        .await
        .expect("a gateway list");
    let registered: Vec<&str> = list.gateways.iter().map(|g| g.endpoint.as_str()).collect();
    assert_eq!(
        registered,
        vec![one.as_str(), two.as_str()],
        "bad input changed nothing"
    );
    assert_eq!((list.leader, list.down_after_ms), (leader, 6000));

    // kill -9: gone from both within the bound.
    gw2.kill();
    let killed = Instant::now();
    eventually(
        GONE_WITHIN,
        "gateway 2 to leave gateway 1's /config.json",
        || async {
            let (endpoints, _) = listed(&c1).await?;
            (endpoints == vec![one.clone()]).then_some(())
        },
    )
    .await;
    let gone_after = killed.elapsed();
    // Its last report came at most one interval (2 s) before the kill, so
    // it cannot have expired much sooner than DOWN_AFTER minus that.
    assert!(
        gone_after >= DOWN_AFTER / 3,
        "gateway 2 vanished after {gone_after:?}, before it could have expired"
    );
    eventually(GONE_WITHIN, "gateway 2 to leave raftctl status", || {
        let entry = follower_addr.clone();
        let one = one.clone();
        async move { (status_gateways(&entry).await == vec![one]).then_some(()) }
    })
    .await;
    println!("gateway 2 left /config.json {gone_after:?} after kill -9");
}
