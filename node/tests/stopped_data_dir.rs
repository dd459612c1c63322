//! A stopped node's data dir, read offline and reopened damaged:
//! - the `inspect` example's reader ([`OfflineCopy`]) changes no byte and
//!   no mtime of the dir it reads (sled alone cannot open a database
//!   without writing to it, which the test also shows);
//! - a group whose stored state makes no sense is not served, with an
//!   error naming the group, the file and what to do.
//!
//! The byte flips sled itself detects are covered with real processes in
//! `integration/tests/small_defects.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use checkraft_node::node::Node;
use checkraft_node::storage::{OfflineCopy, Storage};
use checkraft_node::NodeConfig;
use checkraft_proto::{Command, CreateGroup, SetBatch, ShardDescriptor, WriteOutcome};

const SHARD: u64 = 3;

fn config(dir: &Path) -> NodeConfig {
    NodeConfig {
        id: 1,
        data_dir: dir.to_path_buf(),
        cluster_secret: Some("stopped-data-dir-test-cluster-secret".into()),
        heartbeat_ms: 50,
        election_min_ms: 150,
        election_max_ms: 300,
        ..NodeConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs a one-node node in `dir` in its own runtime: shard [`SHARD`] with
/// `writes` single-box writes, then stops it and drops the runtime, so no
/// sled handle on `dir` is left.
fn stopped_node_with_writes(dir: &Path, writes: u32) {
    let rt = runtime();
    rt.block_on(async {
        let node = Node::open(config(dir)).await.expect("open node");
        let descriptor = ShardDescriptor {
            shard: SHARD,
            start: 0,
            end: 4096,
            epoch: 1,
        };
        node.create_group(CreateGroup {
            descriptor,
            members: BTreeMap::from([(1, "127.0.0.1:1".to_string())]),
            initialize: true,
        })
        .await
        .expect("create group");
        let group = node.group(SHARD).expect("hosted group");
        for i in 0..writes {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let outcome = group
                    .propose(Command::SetBatch(SetBatch {
                        epoch: 1,
                        sets: vec![(i, true)],
                    }))
                    .await;
                match outcome {
                    Ok(WriteOutcome::Applied { .. }) => break,
                    other if tokio::time::Instant::now() > deadline => {
                        panic!("write {i} not applied: {other:?}")
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        }
        node.shutdown().await;
    });
    drop(rt);
}

/// Every file under `dir`: path → (bytes, mtime).
fn files(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            out.extend(files(&entry.path()));
        } else {
            let bytes = std::fs::read(entry.path()).expect("read file");
            out.insert(entry.path(), (bytes, meta.modified().expect("mtime")));
        }
    }
    out
}

/// Paths whose bytes or mtime differ, plus added and removed paths.
fn changed(
    before: &BTreeMap<PathBuf, (Vec<u8>, SystemTime)>,
    after: &BTreeMap<PathBuf, (Vec<u8>, SystemTime)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, (bytes, mtime)) in before {
        match after.get(path) {
            None => out.push(format!("{} removed", path.display())),
            Some((b, _)) if b != bytes => out.push(format!("{} bytes changed", path.display())),
            Some((_, m)) if m != mtime => out.push(format!("{} mtime changed", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("{} added", path.display()));
    }
    out
}

#[test]
fn inspect_changes_nothing_in_the_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("node-1");
    stopped_node_with_writes(&data, 5);
    // Coarse mtime clocks: make any write after this point show.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = files(&data);
    assert!(
        before.keys().any(|p| p.ends_with("db")),
        "no sled db file in {before:?}"
    );

    let copy = OfflineCopy::open(&data).expect("open an offline copy");
    let report = copy.describe_group(SHARD, &[1, 3, 999]).expect("describe");
    let missing = copy
        .describe_group(77, &[])
        .expect("describe a missing group");
    drop(copy);
    let after = files(&data);
    assert!(
        changed(&before, &after).is_empty(),
        "inspect modified the data dir it read: {:?}",
        changed(&before, &after)
    );

    // It still reads everything the example printed before.
    for line in ["vote: ", "committed: ", "log: ", "entry 1: ", "entry 3: "] {
        assert!(report.contains(line), "no {line:?} in:\n{report}");
    }
    assert!(report.contains("entry 999: absent"), "{report}");
    assert!(
        report.contains("SetBatch"),
        "the entries' payloads: {report}"
    );
    assert!(missing.contains("not stored"), "{missing}");

    // Why it opens a copy: sled opening the dir itself (what the example
    // did) writes to it even when nothing is read or written.
    let db = sled::Config::new().path(&data).open().expect("sled open");
    drop(db);
    let direct = changed(&before, &files(&data));
    assert!(
        !direct.is_empty(),
        "sled opened the dir without writing to it; the copy may no longer be needed"
    );
}

#[test]
fn inspect_refuses_a_running_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("node-1");
    stopped_node_with_writes(&data, 1);
    let rt = runtime();
    let _storage = rt.block_on(async { Storage::open(&data, 8).expect("open as a node would") });
    let err = OfflineCopy::open(&data)
        .err()
        .expect("a locked data dir is refused");
    assert!(err.to_string().contains("stop it first"), "{err}");
}

/// Overwrites `key` in group [`SHARD`]'s tree with bytes that do not
/// decode (sled's checksums pass: the damage is in what we stored).
fn garble(dir: &Path, key: &[u8]) {
    let rt = runtime();
    rt.block_on(async {
        let storage = Storage::open(dir, 8).expect("open storage");
        let tree = storage.group_tree(SHARD).expect("group tree");
        tree.insert(key, b"\xffgarbage".to_vec()).expect("insert");
        storage.flusher().flush().await.expect("flush");
    });
    drop(rt);
}

/// What the node says about group [`SHARD`] in `dir`: the error that
/// stops it from starting, or else the one it answers for that group
/// (which it must not serve).
fn damage_report(dir: &Path) -> String {
    let rt = runtime();
    let report = rt.block_on(async {
        match Node::open(config(dir)).await {
            Err(e) => e.to_string(),
            Ok(node) => {
                let err = node.group(SHARD).err();
                node.shutdown().await;
                err.expect("a group with damaged stored state is served")
                    .to_string()
            }
        }
    });
    drop(rt);
    report
}

#[test]
fn a_damaged_group_names_the_group_and_the_file() {
    // The snapshot (read by our state machine) and the vote (read by
    // openraft through the log store): both paths name the group.
    for key in [&b"m:snapshot"[..], &b"m:vote"[..]] {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("node-1");
        stopped_node_with_writes(&data, 2);
        garble(&data, key);
        let err = damage_report(&data);
        let key = String::from_utf8_lossy(key);
        eprintln!("garbled {key}: {err}");
        for part in [
            format!("group {SHARD}"),
            data.join("db").display().to_string(),
            format!("raftctl shard remove {SHARD}"),
        ] {
            assert!(err.contains(&part), "garbled {key}: no {part:?} in: {err}");
        }
    }
}
