//! A replica whose own stored state is impossible (issue 10): a vote with
//! term 2^64-1 in its sled tree, as the forged heartbeat of the fault
//! campaign left behind. The node must not start raft on it (that panics
//! the engine as soon as the replica campaigns) and must not crash-loop:
//! it keeps serving its other groups, answers 503 for that group, and
//! `/health` names the group, the file and the reason. The shard keeps
//! serving on its other replicas, and deleting the damaged replica clears
//! the report.

use std::time::Duration;

use checkraft_integration::{eventually, initialized_cluster, Router};
use checkraft_proto::codec;
use checkraft_proto::raft::Vote;

const TOKEN: &str = "impossible-state-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_stored_vote_fails_that_group_only() {
    tokio::time::timeout(Duration::from_secs(150), test())
        .await
        .expect("impossible-state test exceeded its bound");
}

async fn test() {
    let mut cluster = initialized_cluster(TOKEN, 40_000, 2).await;
    let leader = cluster.confirmed_shard_leader(1, TOKEN).await;
    let victim = cluster
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .unwrap();
    cluster.kill(victim);
    {
        let db = sled::open(cluster.data_dir(victim)).expect("open the stopped node's sled db");
        let tree = db.open_tree("group/1").unwrap();
        tree.insert(b"m:vote", codec::encode(&Vote::new_committed(u64::MAX, 99)))
            .unwrap();
        db.flush().unwrap();
    }
    cluster.restart_process(victim);
    let node = cluster.client(victim);
    let db_file = cluster.data_dir(victim).join("db").display().to_string();
    let report = eventually(Duration::from_secs(30), "/health to report group 1", || {
        let node = node.clone();
        async move {
            let resp = node.http().get(node.url("/health")).send().await.ok()?;
            let status = resp.status().as_u16();
            let text = resp.text().await.ok()?;
            (status == 503).then_some(text)
        }
    })
    .await;
    assert!(report.contains("group 1"), "{report}");
    assert!(
        report.contains(&db_file),
        "the report does not name {db_file}: {report}"
    );
    assert!(report.contains("impossible"), "{report}");
    let status = node.status().await.unwrap();
    assert!(status.failed.contains_key(&1), "{status:?}");
    let entry = cluster.members()[&leader].clone();
    let out =
        checkraft_integration::raftctl(&["status", "--cluster", &entry, "--token", TOKEN]).await;
    assert!(
        out.stdout
            .contains(&format!("node {victim} does not serve group 1")),
        "raftctl status does not show the failed group:\n{}",
        out.stdout
    );

    // The node serves its other groups, refuses group 1 with 503, and the
    // shard keeps taking writes on its two other replicas.
    assert!(node.read(2, false).await.is_ok(), "group 2 is not served");
    let resp = node
        .send(node.http().get(node.url("/shards/1/read")))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let mut router = Router::new(cluster.members().into_values().collect())
        .await
        .unwrap();
    let written = tokio::time::timeout(Duration::from_secs(20), router.write(&[(5, true)]))
        .await
        .expect("a write to shard 1 in time")
        .expect("a write to shard 1");
    assert_eq!(written, vec![(5, true)]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = cluster.log(victim);
    assert!(!log.contains("panicked"), "node {victim} panicked:\n{log}");
    assert!(
        node.http().get(node.url("/health")).send().await.is_ok(),
        "the node exited"
    );

    // Deleting the damaged replica clears the report.
    let admin = node.clone().with_token(TOKEN);
    let deleted = admin
        .send(admin.http().delete(admin.url("/admin/groups/1")))
        .await
        .unwrap();
    assert!(
        deleted.status().is_success(),
        "delete: {}",
        deleted.status()
    );
    assert!(node.health().await, "health still reports a failed group");
}
