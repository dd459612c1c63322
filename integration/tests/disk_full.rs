//! A full disk under one replica (issue 11, defect 4).
//!
//! Node 3's data dir sits on a small tmpfs, nearly filled by a ballast
//! file. Large writes to shard 1 fill it. Then:
//! - node 3 reports the failure: `/health` answers 503 naming the group and
//!   "No space left on device", `checkraft_node_failed_groups` counts it;
//! - it answers SIGTERM at once, exiting with code 75 (the fault campaign
//!   saw it ignore SIGTERM and hang for 12 minutes);
//! - the other replicas keep acknowledging writes throughout;
//! - once space is back and the node restarted (as a supervisor would),
//!   it catches up: every replica holds the same bytes at the same applied
//!   index, and every acknowledged set is there.
//!
//! Needs root for the tmpfs (CI runs as root); skipped with a message
//! otherwise.

use std::time::Duration;

use checkraft_integration::{eventually, metric_sum, raftctl_init, Cluster, Router, SmallDisk};
use checkraft_proto::ShardRead;
use nix::sys::signal::Signal;

const TOKEN: &str = "disk-full-test-token";
const BOXES: u32 = 400_000;
const FULL: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_answers_sigterm_and_recovers() {
    tokio::time::timeout(Duration::from_secs(240), test())
        .await
        .expect("disk-full test exceeded its bound");
}

async fn health(cluster: &Cluster, id: u64) -> Option<(u16, String)> {
    let c = cluster.client(id);
    let resp = c.http().get(c.url("/health")).send().await.ok()?;
    Some((resp.status().as_u16(), resp.text().await.ok()?))
}

async fn test() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
            ("CHECKRAFT_NODE_REPORT_MS", "200"),
            ("CHECKRAFT_NODE_STORAGE_FAILURE_GRACE_MS", "120000"),
            ("CHECKRAFT_NODE_CACHE_MB", "8"),
        ],
    )
    .await;
    let out = raftctl_init(&cluster, TOKEN, u64::from(BOXES), 2).await;
    assert!(out.ok, "init failed: {}", out.stderr);
    cluster.kill(FULL);
    let Some(disk) = SmallDisk::mount(cluster.data_dir(FULL), 48) else {
        return;
    };
    disk.fill_leaving(6);
    cluster.restart(FULL).await;

    // Shard 1 holds boxes [0, 200000): write big batches there until node
    // 3 reports its disk full. Every write must still be acknowledged.
    let mut router = Router::new(cluster.members().into_values().collect())
        .await
        .unwrap();
    let mut acked = Vec::new();
    let mut report = None;
    for round in 0..400u32 {
        let sets: Vec<(u32, bool)> = (0..20_000u32)
            .map(|i| ((round * 7919 + i * 13) % 200_000, (round + i) % 3 != 0))
            .collect();
        let done = tokio::time::timeout(Duration::from_secs(30), router.write(&sets))
            .await
            .expect("a write within 30 s")
            .expect("a write");
        assert_eq!(
            done.len(),
            sets.len(),
            "round {round}: some sets were not acknowledged"
        );
        acked.extend(done);
        if let Some((503, text)) = health(&cluster, FULL).await {
            report = Some(text);
            break;
        }
    }
    let report = match report {
        Some(r) => r,
        None => {
            eventually(
                Duration::from_secs(30),
                "node 3 to report its full disk",
                || async {
                    match health(&cluster, FULL).await {
                        Some((503, text)) => Some(text),
                        _ => None,
                    }
                },
            )
            .await
        }
    };
    assert!(report.contains("No space left on device"), "{report}");
    assert!(report.contains("group "), "{report}");
    let text = cluster.client(FULL).scrape().await.unwrap();
    let failed = metric_sum(&text, "checkraft_node_failed_groups");
    assert!(failed >= 1.0, "failed_groups {failed}:\n{text}");

    // The others keep serving.
    for round in 0..5u32 {
        let sets = vec![(round, true), (100_000 + round, false)];
        let done = router.write(&sets).await.expect("a write with node 3 down");
        assert_eq!(done.len(), 2);
        acked.extend(done);
    }

    // SIGTERM is answered at once, with the storage-failure exit code.
    cluster.signal(FULL, Signal::SIGTERM);
    let status = cluster
        .wait_exit(FULL, Duration::from_secs(15))
        .await
        .expect("node 3 did not exit within 15 s of SIGTERM");
    assert_eq!(status.code(), Some(75), "exit status {status}");
    let log = cluster.log(FULL);
    assert!(!log.contains("panicked"), "node 3 panicked:\n{log}");

    // Space back, restarted: it catches up, and replicas agree by content.
    disk.free_ballast();
    cluster.restart(FULL).await;
    let last = router.write(&[(199_999, true)]).await.unwrap();
    acked.extend(last);
    let reads = eventually(
        Duration::from_secs(60),
        "replicas of shard 1 to agree",
        || async {
            let mut reads: Vec<ShardRead> = Vec::new();
            for id in 1..=3 {
                reads.push(cluster.client(id).read(1, false).await.ok()?);
            }
            let same = reads.windows(2).all(|w| {
                (w[0].applied_index, w[0].seq, &w[0].bitmap)
                    == (w[1].applied_index, w[1].seq, &w[1].bitmap)
            });
            same.then_some(reads)
        },
    )
    .await;
    let boxes = croaring::Bitmap::try_deserialize::<croaring::Portable>(&reads[0].bitmap).unwrap();
    let mut expected = std::collections::BTreeMap::new();
    for (i, checked) in acked {
        expected.insert(i, checked);
    }
    for (i, checked) in expected {
        assert_eq!(
            boxes.contains(i),
            checked,
            "box {i}: an acknowledged set was lost"
        );
    }
    drop(disk);
}
