//! End-to-end tests of `backup`, `verify` and `restore` against
//! [`super::fake_cluster`]: real HTTP through the real client, fake
//! nodes.

use std::path::PathBuf;

use checkraft_proto::{Operation, OperationKind, ShardDescriptor};
use croaring::Bitmap;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::fake_cluster::FakeCluster;
use super::*;
use checkraft_backup::contents::samples;
use checkraft_backup::file;

fn d(shard: u64, start: u64, end: u64, epoch: u64) -> ShardDescriptor {
    ShardDescriptor {
        shard,
        start,
        end,
        epoch,
    }
}

/// A 10 000-box source cluster of three shards with random bits.
async fn source(seed: u64) -> (FakeCluster, Bitmap) {
    let layout = [d(1, 0, 3331, 1), d(2, 3331, 7019, 2), d(3, 7019, 10_000, 1)];
    let fake = FakeCluster::start(10_000, &layout).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut all = Bitmap::new();
    fake.with(|st| {
        for sh in st.shards.values_mut() {
            sh.bitmap = samples::bitmap(&mut rng, sh.descriptor.start, sh.descriptor.end);
            sh.seq = 5;
            all.or_inplace(&sh.bitmap);
        }
    });
    (fake, all)
}

/// A file path in a fresh temporary directory.
fn out_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.ckb");
    (dir, path)
}

#[tokio::test]
async fn backup_verify_restore_into_another_layout() {
    let (src, all) = source(1).await;
    let (_dir, file) = out_path();
    backup(&src.client(), &file, true).await.unwrap();
    verify(&file, false).unwrap();
    let (read, _) = file::load(&file).unwrap();
    assert_eq!(read.boxes_checked(), all.cardinality());
    assert_eq!(
        read.shards.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [5, 5, 5]
    );

    let layout = [
        d(4, 0, 17, 3),
        d(5, 17, 2500, 1),
        d(6, 2500, 5001, 1),
        d(7, 5001, 9999, 2),
        d(8, 9999, 12_000, 1),
    ];
    let dst = FakeCluster::start(12_000, &layout).await;
    dst.with(|st| {
        st.shards
            .values_mut()
            .for_each(|s| s.bitmap.add(s.descriptor.start as u32))
    });
    restore(&dst.client(), &file, true).await.unwrap();

    for (id, bitmap) in dst.bitmaps() {
        let t = &layout[id as usize - 4];
        let mut expected = Bitmap::from_range(t.start as u32..t.end as u32);
        expected.and_inplace(&all);
        assert_eq!(bitmap, expected, "shard {id}");
    }
    dst.with(|st| {
        assert_eq!(st.map.operation, None);
        assert_eq!(st.steps.last().unwrap(), "restored 5 of 5 shards");
    });
    let writes = dst.writes();
    assert_eq!(writes.first().unwrap(), "POST /admin/meta");
    assert_eq!(writes.last().unwrap(), "POST /admin/meta");
    assert_eq!(writes.iter().filter(|w| w.ends_with("/restore")).count(), 5);
}

#[tokio::test]
async fn restore_refuses_boxes_past_the_target_grid_and_changes_nothing() {
    let (src, all) = source(2).await;
    let (_dir, file) = out_path();
    backup(&src.client(), &file, true).await.unwrap();
    let dst = FakeCluster::start(9000, &[d(1, 0, 4000, 1), d(2, 4000, 9000, 1)]).await;
    let e = format!(
        "{:#}",
        restore(&dst.client(), &file, true).await.unwrap_err()
    );
    let beyond = all.range_cardinality(9000..);
    assert!(beyond > 0);
    assert!(
        e.contains(&format!("{beyond} checked boxes at indices >= 9000")),
        "{e}"
    );
    assert!(dst.writes().is_empty(), "{:?}", dst.writes());
    assert!(dst.bitmaps().values().all(Bitmap::is_empty));
}

#[tokio::test]
async fn restore_refuses_while_an_operation_is_recorded() {
    let (src, _) = source(3).await;
    let (_dir, file) = out_path();
    backup(&src.client(), &file, true).await.unwrap();
    let dst = FakeCluster::start(10_000, &[d(1, 0, 10_000, 1)]).await;
    let op = Operation {
        id: 42,
        kind: OperationKind::RemoveNode { node: 3 },
        step: "moving shard 2".into(),
    };
    dst.with(|st| st.map.operation = Some(op));
    let e = format!(
        "{:#}",
        restore(&dst.client(), &file, true).await.unwrap_err()
    );
    assert!(e.contains("operation 42 (RemoveNode { node: 3 }"), "{e}");
    assert!(dst.writes().is_empty());
}

#[tokio::test]
async fn a_corrupt_file_reaches_no_cluster() {
    let (src, _) = source(4).await;
    let (_dir, file) = out_path();
    backup(&src.client(), &file, true).await.unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    assert!(verify(&file, true).is_err());
    let dst = FakeCluster::start(10_000, &[d(1, 0, 10_000, 1)]).await;
    let e = format!(
        "{:#}",
        restore(&dst.client(), &file, true).await.unwrap_err()
    );
    assert!(e.contains("checksum mismatch in shard section"), "{e}");
    assert!(dst.with(|st| st.requests.is_empty()));
}

#[tokio::test]
async fn a_stale_epoch_is_retried_once_with_a_fresh_map() {
    let (src, all) = source(5).await;
    let (_dir, file) = out_path();
    backup(&src.client(), &file, true).await.unwrap();
    let dst = FakeCluster::start(10_000, &[d(1, 0, 6000, 1), d(2, 6000, 10_000, 1)]).await;
    dst.with(|st| st.shards.get_mut(&2).unwrap().descriptor.epoch = 4);
    restore(&dst.client(), &file, true).await.unwrap();
    assert_eq!(dst.bitmaps()[&2], {
        let mut b = Bitmap::from_range(6000..10_000);
        b.and_inplace(&all);
        b
    });
    let reads = dst.with(|st| st.requests.iter().filter(|r| *r == "GET /meta/map").count());
    assert_eq!(reads, 2);
}

#[tokio::test]
async fn a_snapshot_whose_range_differs_from_the_map_writes_no_file() {
    let (src, _) = source(6).await;
    src.with(|st| st.shards.get_mut(&2).unwrap().descriptor.end = 7000);
    let (_dir, file) = out_path();
    let e = format!(
        "{:#}",
        backup(&src.client(), &file, true).await.unwrap_err()
    );
    assert!(
        e.contains(
            "the snapshot covers shard 2 [3331, 7000) but the map says shard 2 [3331, 7019)"
        ),
        "{e}"
    );
    let dir = file.parent().unwrap();
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
}

#[tokio::test]
async fn backup_refuses_an_uninitialized_cluster() {
    let src = FakeCluster::start(10, &[d(1, 0, 10, 1)]).await;
    src.with(|st| st.map.grid = None);
    let (_dir, file) = out_path();
    let e = format!(
        "{:#}",
        backup(&src.client(), &file, true).await.unwrap_err()
    );
    assert!(e.contains("not initialized"), "{e}");
    assert!(!file.exists());
}

#[tokio::test]
async fn a_refused_shard_stops_the_restore_and_clears_the_record() {
    let (src, _) = source(7).await;
    let (_dir, file) = out_path();
    backup(&src.client(), &file, true).await.unwrap();
    let dst = FakeCluster::start(10_000, &[d(1, 0, 5000, 1), d(2, 5000, 10_000, 1)]).await;
    // Shard 2's replica thinks it owns less than the map says.
    dst.with(|st| st.shards.get_mut(&2).unwrap().descriptor.start = 9000);
    let e = format!(
        "{:#}",
        restore(&dst.client(), &file, true).await.unwrap_err()
    );
    assert!(e.contains("restore stopped part-way"), "{e}");
    assert!(
        e.contains("restoring shard 2 [5000, 10000): the shard refused: index"),
        "{e}"
    );
    dst.with(|st| {
        assert_eq!(st.map.operation, None);
        assert!(!st.shards[&1].bitmap.is_empty());
        assert!(st.shards[&2].bitmap.is_empty());
    });
}
