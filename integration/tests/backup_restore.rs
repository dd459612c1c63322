//! Backup and restore across layouts: a known pattern is written to a
//! 4-shard cluster and backed up; a fresh cluster with 7 shards restores
//! it, and every box is identical. Truncated or corrupted backups are
//! refused by `verify` and `restore` with a clear error, and change
//! nothing.

use std::time::Duration;

use checkraft_integration::{raftctl, raftctl_init, Cluster, Router};
use croaring::Bitmap;

const TOKEN: &str = "backup-test-token";
const BOXES: u32 = 100_000;

fn pattern() -> Vec<(u32, bool)> {
    (0..BOXES)
        .filter(|i| i % 7 == 0 || i % 13 == 5)
        .map(|i| (i, true))
        .collect()
}

async fn bootstrap(shards: u64) -> (Cluster, String) {
    let cluster = Cluster::start(3, &[("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN)]).await;
    let entry = cluster.members()[&1].clone();
    let out = raftctl_init(&cluster, TOKEN, u64::from(BOXES), shards).await;
    assert!(out.ok, "init failed: {}", out.stderr);
    (cluster, entry)
}

async fn contents(entry: &str) -> (Bitmap, Vec<u64>) {
    let mut router = Router::new(vec![entry.to_string()]).await.unwrap();
    let all = router.read_all().await.unwrap();
    let mut seqs = Vec::new();
    for shard in router.map.shards.values() {
        let addr = router.map.addr(shard.replicas[0]).unwrap().to_string();
        seqs.push(
            checkraft_integration::NodeClient::new(&addr)
                .read(shard.descriptor.shard, false)
                .await
                .unwrap()
                .seq,
        );
    }
    (all, seqs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_into_another_layout() {
    tokio::time::timeout(Duration::from_secs(300), test())
        .await
        .expect("backup test exceeded its bound");
}

async fn test() {
    let (source, source_entry) = bootstrap(4).await;
    let mut router = Router::new(vec![source_entry.clone()]).await.unwrap();
    let want = pattern();
    for chunk in want.chunks(2000) {
        assert_eq!(
            router.write(chunk).await.unwrap().len(),
            chunk.len(),
            "pattern write not acknowledged"
        );
    }
    let expected: Bitmap = want.iter().map(|(i, _)| *i).collect();
    assert_eq!(router.read_all().await.unwrap(), expected);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grid.backup");
    let file_s = file.to_str().unwrap();
    let out = raftctl(&[
        "backup",
        "--out",
        file_s,
        "--cluster",
        &source_entry,
        "--token",
        TOKEN,
    ])
    .await;
    assert!(out.ok, "backup failed: {}", out.stderr);
    let out = raftctl(&["verify", "--from", file_s]).await;
    assert!(out.ok, "verify of a good backup failed: {}", out.stderr);
    drop(source);

    // A fresh cluster with a different shard count.
    let (_target, entry) = bootstrap(7).await;

    // Broken copies are refused and change nothing.
    let bytes = std::fs::read(&file).unwrap();
    let truncated = dir.path().join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let corrupted = dir.path().join("corrupted.backup");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    std::fs::write(&corrupted, &flipped).unwrap();
    let before = contents(&entry).await;
    for bad in [&truncated, &corrupted] {
        let bad_s = bad.to_str().unwrap();
        let out = raftctl(&["verify", "--from", bad_s]).await;
        assert!(!out.ok, "verify accepted {bad_s}");
        assert!(
            !out.stderr.trim().is_empty(),
            "verify of {bad_s} gave no reason"
        );
        let out = raftctl(&[
            "restore",
            "--from",
            bad_s,
            "--cluster",
            &entry,
            "--token",
            TOKEN,
        ])
        .await;
        assert!(!out.ok, "restore accepted {bad_s}");
        eprintln!("refused {bad_s}: {}", out.stderr.trim());
    }
    assert_eq!(
        contents(&entry).await,
        before,
        "a refused restore changed the cluster"
    );

    // The good backup restores every box.
    let out = raftctl(&[
        "restore",
        "--from",
        file_s,
        "--cluster",
        &entry,
        "--token",
        TOKEN,
    ])
    .await;
    assert!(out.ok, "restore failed: {}", out.stderr);
    let (restored, _) = contents(&entry).await;
    assert_eq!(restored.cardinality(), expected.cardinality());
    assert_eq!(
        restored, expected,
        "restored grid differs from the backed-up one"
    );
}
