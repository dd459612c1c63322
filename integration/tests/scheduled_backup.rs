//! Scheduled backups by the control plane (issue 12), with real
//! processes: a cluster whose nodes share one `backup_dir` writes a backup
//! every 2 s; one appears on schedule after the writes, `raftctl backup
//! list` shows it, `raftctl verify` passes on it, only `backup_keep` are
//! kept (and other files are left alone), and `raftctl restore --from
//! NAME` restores it into a fresh cluster with another number of shards.
//! An unwritable `backup_dir` is logged and counted, and the node keeps
//! serving.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checkraft_integration::{raftctl, raftctl_init, Cluster, Router};
use croaring::Bitmap;
use serde_json::Value;

const TOKEN: &str = "scheduled-backup-token";
const BOXES: u32 = 30_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn pattern() -> Vec<(u32, bool)> {
    (0..BOXES)
        .filter(|i| i % 11 == 0 || i % 17 == 3)
        .map(|i| (i, true))
        .collect()
}

/// `n` nodes sharing `backup_dir`, with `env` on top, initialized with
/// `shards` shards.
async fn cluster(shards: u64, backup_dir: &Path, env: &[(&str, &str)]) -> (Cluster, String) {
    let dir = backup_dir.to_str().unwrap();
    let mut all = vec![
        ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
        ("CHECKRAFT_NODE_BACKUP_DIR", dir),
    ];
    all.extend_from_slice(env);
    let cluster = Cluster::start(3, &all).await;
    let entry = cluster.members()[&1].clone();
    let out = raftctl_init(&cluster, TOKEN, u64::from(BOXES), shards).await;
    assert!(out.ok, "init failed: {}", out.stderr);
    (cluster, entry)
}

/// `raftctl backup list --json` against `entry`.
async fn list(entry: &str) -> Value {
    raftctl(&[
        "backup",
        "list",
        "--json",
        "--cluster",
        entry,
        "--token",
        TOKEN,
    ])
    .await
    .json()
}

/// The value of `name{labels}` summed over the cluster's nodes.
async fn counter(cluster: &Cluster, series: &str) -> f64 {
    let mut sum = 0.0;
    for id in cluster.running() {
        let text = cluster.client(id).scrape().await.unwrap_or_default();
        sum += text
            .lines()
            .filter(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    sum
}

/// Polls `check` every 250 ms until it gives a value, for at most `limit`.
async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The names of the scheduled backups in `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("grid-") && n.ends_with(".ckb"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_backup_appears_verifies_and_restores_by_name() {
    tokio::time::timeout(Duration::from_secs(300), appears_verifies_restores())
        .await
        .expect("scheduled backup test exceeded its bound");
}

async fn appears_verifies_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let backups = tmp.path().join("backups");
    let (source, entry) = cluster(
        4,
        &backups,
        &[
            ("CHECKRAFT_NODE_BACKUP_INTERVAL_MS", "2000"),
            ("CHECKRAFT_NODE_BACKUP_KEEP", "2"),
        ],
    )
    .await;
    let mut router = Router::new(vec![entry.clone()]).await.unwrap();
    let want = pattern();
    for chunk in want.chunks(2000) {
        assert_eq!(router.write(chunk).await.unwrap().len(), chunk.len());
    }
    let expected: Bitmap = want.iter().map(|(i, _)| *i).collect();
    let written_ms = now_ms();

    // A backup started after the writes appears on schedule, listed by
    // `raftctl backup list` with its shards and grid.
    let newest = wait_for(Duration::from_secs(30), "a backup after the writes", || {
        let entry = entry.clone();
        async move {
            let listing = list(&entry).await;
            let newest = listing["backups"].as_array()?.last()?.clone();
            (newest["created_ms"].as_u64()? >= written_ms).then_some(newest)
        }
    })
    .await;
    let name = newest["name"].as_str().unwrap().to_string();
    eprintln!("scheduled backup: {newest}");
    assert_eq!(newest["shards"], 4, "{newest}");
    assert_eq!(newest["grid_boxes"], u64::from(BOXES), "{newest}");
    assert_eq!(newest["nodes"].as_array().unwrap().len(), 3, "{newest}");
    let text = raftctl(&["backup", "list", "--cluster", &entry, "--token", TOKEN]).await;
    assert!(text.ok && text.stdout.contains(&name), "{}", text.stdout);

    // `raftctl verify` passes on the file (copied first: the schedule may
    // prune it meanwhile).
    let copy = tmp.path().join("copy.ckb");
    std::fs::copy(backups.join(&name), &copy).unwrap();
    let out = raftctl(&["verify", "--from", copy.to_str().unwrap()]).await;
    assert!(out.ok, "verify failed: {}", out.stderr);

    // `backup_keep` (2) is honoured, and a file of another name is left alone.
    let mine = backups.join("mine.ckb");
    std::fs::copy(&copy, &mine).unwrap();
    wait_for(Duration::from_secs(30), "three more backups", || async {
        (counter(&source, "checkraft_node_backups_total{outcome=\"ok\"}").await >= 4.0)
            .then_some(())
    })
    .await;
    let kept = files(&backups);
    assert!(
        (1..=2).contains(&kept.len()),
        "backup_keep = 2, but the directory holds {kept:?}"
    );
    assert!(mine.exists(), "pruning deleted a file it does not own");
    let failed = counter(&source, "checkraft_node_backups_total{outcome=\"failed\"}").await;
    let last = counter(
        &source,
        "checkraft_node_backup_last_success_timestamp_seconds",
    )
    .await;
    assert!(last as u64 >= written_ms / 1000, "last success {last}");
    eprintln!("kept {kept:?}; failed attempts (before init completed): {failed}");

    // Names are checked before any path is built from them.
    let node = checkraft_integration::NodeClient::new(&entry).with_token(TOKEN);
    for bad in ["..%2Fcluster-secret", "mine.ckb", "grid-x.ckb"] {
        let resp = node
            .send(node.http().get(node.url(&format!("/admin/backups/{bad}"))))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }

    // The source cluster is gone; the newest backup on the shared storage
    // restores, by name, into a fresh 7-shard cluster (whose own schedule
    // waits an hour from that newest backup).
    let name = kept.last().unwrap().clone();
    drop(source);
    let (_target, target_entry) = cluster(
        7,
        &backups,
        &[("CHECKRAFT_NODE_BACKUP_INTERVAL_MS", "3600000")],
    )
    .await;
    let out = raftctl(&[
        "restore",
        "--from",
        &name,
        "--cluster",
        &target_entry,
        "--token",
        TOKEN,
    ])
    .await;
    assert!(out.ok, "restore of {name} failed: {}", out.stderr);
    let mut router = Router::new(vec![target_entry.clone()]).await.unwrap();
    assert_eq!(router.map.shards.len(), 7);
    let restored = router.read_all().await.unwrap();
    assert_eq!(restored.cardinality(), expected.cardinality());
    assert_eq!(restored, expected, "the restored grid differs");
    // Its leader checks every second; give it a few.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        files(&backups),
        kept,
        "the target cluster wrote a backup before its interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_backup_dir_is_reported_and_the_node_keeps_serving() {
    tokio::time::timeout(Duration::from_secs(180), unwritable())
        .await
        .expect("unwritable backup_dir test exceeded its bound");
}

async fn unwritable() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory under a regular file: unwritable even for root.
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let backups = blocker.join("backups");
    let (cluster, entry) = cluster(
        2,
        &backups,
        &[("CHECKRAFT_NODE_BACKUP_INTERVAL_MS", "2000")],
    )
    .await;
    wait_for(
        Duration::from_secs(30),
        "a failed backup counted",
        || async {
            (counter(&cluster, "checkraft_node_backups_total{outcome=\"failed\"}").await >= 1.0)
                .then_some(())
        },
    )
    .await;
    let logged = cluster
        .running()
        .into_iter()
        .map(|id| cluster.log(id))
        .find(|log| log.contains("scheduled backup failed"))
        .expect("no node logged the failure");
    let line = logged
        .lines()
        .find(|l| l.contains("scheduled backup failed"))
        .unwrap();
    assert!(
        line.contains("not-a-dir/backups") && line.contains("ot a directory"),
        "the log line names neither the directory nor the cause: {line}"
    );
    assert_eq!(
        counter(&cluster, "checkraft_node_backups_total{outcome=\"ok\"}").await,
        0.0
    );
    let listing = list(&entry).await;
    let failures: Vec<&str> = listing["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["last_failure"].as_str())
        .collect();
    assert!(
        failures.iter().any(|f| f.contains("ot a directory")),
        "{listing}"
    );

    // The node keeps serving: writes and reads go through, twice over an
    // interval (so attempts keep failing meanwhile).
    let mut router = Router::new(vec![entry.clone()]).await.unwrap();
    for round in 0..2u32 {
        let sets: Vec<(u32, bool)> = (0..100).map(|i| (round * 1000 + i * 7, true)).collect();
        assert_eq!(router.write(&sets).await.unwrap().len(), sets.len());
        let all = router.read_all().await.unwrap();
        assert!(sets.iter().all(|(i, _)| all.contains(*i)));
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert!(counter(&cluster, "checkraft_node_backups_total{outcome=\"failed\"}").await >= 2.0);
}
