//! Moving replicas while writes flow: a fourth node joins with `raftctl
//! node add` (the cluster allocates its id), then `raftctl node remove 1`
//! moves every replica off node 1 while a writer keeps writing. No
//! acknowledged write is lost, and `status` shows the new placement.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkraft_integration::{eventually, raftctl, raftctl_init, Cluster, Router};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const TOKEN: &str = "replica-move-token";
const BOXES: u32 = 40_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_add_then_remove_under_writes() {
    tokio::time::timeout(Duration::from_secs(300), test())
        .await
        .expect("replica-move test exceeded its bound");
}

async fn test() {
    let env = [
        ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
        ("CHECKRAFT_NODE_REPORT_MS", "200"),
    ];
    let mut cluster = Cluster::start(3, &env).await;
    let entry = cluster.members()[&1].clone();
    let out = raftctl_init(&cluster, TOKEN, u64::from(BOXES), 4).await;
    assert!(out.ok, "init failed: {}", out.stderr);

    // A fourth node, started without an id, joins through `node add`.
    cluster.add_unassigned_node(104).await;
    let new_addr = cluster.members()[&104].clone();
    let added: Value = raftctl(&[
        "node",
        "add",
        &new_addr,
        "--cluster",
        &entry,
        "--token",
        TOKEN,
        "--json",
    ])
    .await
    .json();
    let new_id = added["id"].as_u64().expect("node add prints the id");
    assert_eq!(new_id, 4, "ids are allocated after the founders");
    assert_eq!(cluster.client(104).status().await.unwrap().node_id, 4);

    // A writer keeps writing fresh boxes (only `true`, so every
    // acknowledged box must end up checked) while node 1 is emptied.
    let acked = Arc::new(Mutex::new(Vec::<u32>::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let entries: Vec<String> = cluster
        .members()
        .iter()
        .filter(|(id, _)| **id != 1)
        .map(|(_, a)| a.clone())
        .collect();
    let writer = {
        let acked = acked.clone();
        let entries = entries.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(11);
            let mut router = Router::new(entries).await.unwrap();
            while !*stop_rx.borrow() {
                let sets: Vec<(u32, bool)> =
                    (0..20).map(|_| (rng.gen_range(0..BOXES), true)).collect();
                if let Ok(ok) = router.write(&sets).await {
                    acked.lock().unwrap().extend(ok.iter().map(|(i, _)| *i));
                }
                let _ = router.refresh().await;
            }
        })
    };
    eventually(Duration::from_secs(30), "writes before the move", || {
        let acked = acked.clone();
        async move { (acked.lock().unwrap().len() >= 200).then_some(()) }
    })
    .await;
    let removed = raftctl(&[
        "node",
        "remove",
        "1",
        "--cluster",
        &entries[0],
        "--token",
        TOKEN,
    ])
    .await;
    assert!(
        removed.ok,
        "node remove failed:\n{}\n{}",
        removed.stdout, removed.stderr
    );
    let during = acked.lock().unwrap().len();
    eventually(Duration::from_secs(30), "writes after the move", || {
        let acked = acked.clone();
        async move { (acked.lock().unwrap().len() >= during + 200).then_some(()) }
    })
    .await;
    stop_tx.send(true).unwrap();
    writer.await.unwrap();

    // status shows the new placement: nothing on node 1, node 4 holds replicas.
    let status: Value = raftctl(&[
        "status",
        "--json",
        "--cluster",
        &entries[0],
        "--token",
        TOKEN,
    ])
    .await
    .json();
    let mut on_new = 0;
    for shard in status["shards"].as_array().unwrap() {
        let replicas: Vec<u64> = shard["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_u64().unwrap())
            .collect();
        assert!(
            !replicas.contains(&1),
            "shard still placed on node 1: {shard}"
        );
        assert_eq!(replicas.len(), 3, "shard lost a replica: {shard}");
        on_new += usize::from(replicas.contains(&new_id));
    }
    assert_eq!(on_new, 4, "every shard's replica moved to node 4");
    let node1 = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == 1)
        .expect("node 1 listed");
    assert_eq!(node1["state"], "removed");
    assert!(
        status["operation"].is_null(),
        "the operation record was cleared"
    );

    // Node 1 can go away now: every acknowledged write is still there.
    cluster.kill(1);
    let mut router = Router::new(entries).await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let lost = router.missing(&acked).await.unwrap();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!("{} acknowledged writes, none lost", acked.len());
}
