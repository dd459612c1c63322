//! The control plane against real processes: `raftctl init` bootstraps
//! three real nodes; `status --json` shows every shard led, with leaders on
//! all three nodes; a second `init` is refused; killing the metadata
//! leader with kill -9 leaves map queries and shard writes working and the
//! map's layout unchanged; admin calls with a wrong token change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkraft_integration::{eventually, raftctl, raftctl_init, Cluster, NodeClient, Router};
use checkraft_proto::{GroupStatus, ShardMap, ShardRecord, META_GROUP};
use serde_json::Value;

const TOKEN: &str = "control-plane-test-token";

/// Shard layout without the volatile parts (leader hints).
fn layout(map: &ShardMap) -> BTreeMap<u64, (u64, u64, u64, Vec<u64>)> {
    map.shards
        .values()
        .map(
            |ShardRecord {
                 descriptor: d,
                 replicas,
                 ..
             }| (d.shard, (d.start, d.end, d.epoch, replicas.clone())),
        )
        .collect()
}

async fn meta_leader(cluster: &Cluster) -> u64 {
    let clients: Vec<NodeClient> = cluster
        .running()
        .into_iter()
        .map(|id| cluster.client(id).with_token(TOKEN))
        .collect();
    eventually(Duration::from_secs(30), "a metadata leader", || {
        let clients = clients.clone();
        async move {
            for c in &clients {
                let s: GroupStatus = c.metrics(META_GROUP).await.ok()?;
                if s.raft.current_leader == Some(s.raft.id) {
                    return Some(s.raft.id);
                }
            }
            None
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_status_failover_and_auth() {
    tokio::time::timeout(Duration::from_secs(300), test())
        .await
        .expect("control-plane test exceeded its bound");
}

async fn test() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
            ("CHECKRAFT_NODE_REPORT_MS", "200"),
        ],
    )
    .await;
    let entry = cluster.members()[&1].clone();

    // Bootstrap, then refuse a second bootstrap.
    let out = raftctl_init(&cluster, TOKEN, 120_000, 6).await;
    assert!(out.ok, "init failed:\n{}\n{}", out.stdout, out.stderr);
    let again = raftctl_init(&cluster, TOKEN, 120_000, 6).await;
    assert!(!again.ok, "a second init must be refused");
    assert!(
        again.stderr.contains("already initialized"),
        "unclear refusal: {}",
        again.stderr
    );

    // status --json: every shard has a leader, and leaders sit on all three.
    let status: Value = eventually(
        Duration::from_secs(60),
        "leaders on all three nodes",
        || {
            let entry = entry.clone();
            async move {
                let out =
                    raftctl(&["status", "--json", "--cluster", &entry, "--token", TOKEN]).await;
                let status: Value = serde_json::from_str(&out.stdout).ok()?;
                let shards = status["shards"].as_array()?;
                let leaders: BTreeSet<u64> =
                    shards.iter().filter_map(|s| s["leader"].as_u64()).collect();
                (shards.len() == 6
                    && shards.iter().all(|s| s["leader"].is_u64())
                    && leaders.len() == 3)
                    .then_some(status)
            }
        },
    )
    .await;
    for shard in status["shards"].as_array().unwrap() {
        assert_eq!(
            shard["replicas"].as_array().unwrap().len(),
            3,
            "shard without 3 replicas: {shard}"
        );
    }

    let mut router = Router::new(cluster.members().values().cloned().collect())
        .await
        .unwrap();
    let before = layout(&router.map);
    let sets: Vec<(u32, bool)> = (0..6u32).map(|k| (k * 20_000 + 7, true)).collect();
    assert_eq!(
        router.write(&sets).await.unwrap().len(),
        sets.len(),
        "writes to every shard before the kill"
    );

    // Kill -9 the metadata leader.
    let victim = meta_leader(&cluster).await;
    cluster.kill(victim);
    let survivors: Vec<String> = cluster
        .members()
        .iter()
        .filter(|(id, _)| **id != victim)
        .map(|(_, a)| a.clone())
        .collect();
    // Map queries keep working on the survivors, and the layout is unchanged.
    for addr in &survivors {
        let node = NodeClient::new(addr);
        let map: ShardMap = node
            .send(node.http().get(node.url("/meta/map")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            layout(&map),
            before,
            "map layout changed after killing the meta leader"
        );
    }
    // A new metadata leader is elected, and metadata commands work again:
    // a leader hint update or an operation record goes through raftctl.
    let new_leader = meta_leader(&cluster).await;
    assert_ne!(new_leader, victim);
    let snap = raftctl(&[
        "snapshot",
        "1",
        "--json",
        "--cluster",
        &survivors[0],
        "--token",
        TOKEN,
    ])
    .await;
    assert!(
        snap.ok,
        "snapshot after meta failover failed: {}",
        snap.stderr
    );

    // Shard writes keep working, to every shard.
    let mut router = Router::new(survivors.clone()).await.unwrap();
    let more: Vec<(u32, bool)> = (0..6u32).map(|k| (k * 20_000 + 11, true)).collect();
    let acked = eventually(
        Duration::from_secs(60),
        "writes to every shard after the kill",
        || {
            let survivors = survivors.clone();
            let more = more.clone();
            async move {
                let mut router = Router::new(survivors).await.ok()?;
                let acked = router.write(&more).await.ok()?;
                (acked.len() == more.len()).then_some(acked)
            }
        },
    )
    .await;
    assert_eq!(acked.len(), 6);
    let all = router.read_all().await.unwrap();
    for (i, _) in sets.iter().chain(&more) {
        assert!(
            all.contains(*i),
            "box {i} missing after the meta leader was killed"
        );
    }
    assert_eq!(layout(&router.map), before);

    // Admin calls without or with a wrong token are refused and change nothing.
    router.refresh().await.unwrap();
    let nodes_before = router.map.nodes.clone();
    let http = reqwest::Client::new();
    for token in [None, Some("wrong-token")] {
        let mut request = http
            .post(format!("http://{}/admin/meta", survivors[0]))
            .json(&serde_json::json!({"add_node": {"addr": "127.0.0.1:9"}}));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status.as_u16(), 401, "admin call with token {token:?}");
        let out = raftctl(&[
            "snapshot",
            "all",
            "--cluster",
            &survivors[0],
            "--token",
            token.unwrap_or(""),
        ])
        .await;
        assert!(!out.ok, "raftctl snapshot with token {token:?} must fail");
        assert!(
            out.stderr.contains("401"),
            "unclear auth error: {}",
            out.stderr
        );
    }
    router.refresh().await.unwrap();
    assert_eq!(
        router.map.nodes, nodes_before,
        "an unauthenticated call changed the registry"
    );
    assert_eq!(layout(&router.map), before);

    // An operation left behind by a killed command blocks others until it
    // is aborted.
    let begin = http
        .post(format!(
            "http://{}/admin/meta",
            cluster.members()[&meta_leader(&cluster).await]
        ))
        .bearer_auth(TOKEN)
        .json(&checkraft_proto::MetaCommand::BeginOperation {
            // A restore: run by `raftctl restore`, which is not running,
            // so it stays recorded (the control plane runs the others).
            kind: checkraft_proto::OperationKind::Restore {
                backup_created_ms: 1,
            },
        })
        .send()
        .await
        .unwrap();
    let begin: checkraft_proto::WriteOutcome = begin.json().await.unwrap();
    let checkraft_proto::WriteOutcome::MetaApplied { outcome, .. } = begin else {
        panic!("recording an operation failed: {begin:?}")
    };
    let id = outcome.allocated.expect("operation id").to_string();
    let entry = survivors[0].clone();
    let show = |want: Option<String>| {
        let entry = entry.clone();
        async move {
            let shown: Value = raftctl(&[
                "operation",
                "show",
                "--json",
                "--cluster",
                &entry,
                "--token",
                TOKEN,
            ])
            .await
            .json();
            (shown["id"].as_u64().map(|v| v.to_string()) == want).then_some(())
        }
    };
    eventually(Duration::from_secs(10), "the operation to show", || {
        show(Some(id.clone()))
    })
    .await;
    let wrong = raftctl(&[
        "operation",
        "abort",
        "999999",
        "--cluster",
        &survivors[0],
        "--token",
        TOKEN,
    ])
    .await;
    assert!(
        !wrong.ok && wrong.stderr.contains("not in progress"),
        "aborting another id: {}",
        wrong.stderr
    );
    let aborted = raftctl(&[
        "operation",
        "abort",
        &id,
        "--cluster",
        &survivors[0],
        "--token",
        TOKEN,
    ])
    .await;
    assert!(aborted.ok, "abort failed: {}", aborted.stderr);
    eventually(
        Duration::from_secs(10),
        "the aborted operation to disappear",
        || show(None),
    )
    .await;
}
