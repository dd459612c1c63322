//! Two smaller defects of issue 10, with real processes:
//! - a node whose sled files are damaged (bytes flipped in the page table
//!   `snap.*`, in the log `db` or in the settings `conf`; `db` truncated)
//!   refuses to start, exits non-zero, and says which file of which data
//!   dir and what to do; the undamaged copy of the same dir still serves;
//! - a node started without `--id` logs its real id once it has one: after
//!   `raftctl node add` assigns it, and after a restart that reads it from
//!   the data dir (it logged `node_id=0` in every line).
//!
//! The third, the `inspect` example writing into the dir it reads, is
//! tested in `node/tests/stopped_data_dir.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use checkraft_integration::damage::flip;
use checkraft_integration::{eventually, raftctl, Cluster, Router};

const TOKEN: &str = "small-defects-token";

/// One node, initialized by `raftctl init` with two single-replica shards.
async fn one_node_cluster() -> Cluster {
    let cluster = Cluster::start(
        1,
        &[
            ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
            ("CHECKRAFT_NODE_REPORT_MS", "200"),
        ],
    )
    .await;
    let addr = cluster.members()[&1].clone();
    let nodes = format!("1={addr}");
    let out = raftctl(&[
        "init",
        "--cluster",
        &addr,
        "--token",
        TOKEN,
        "--nodes",
        &nodes,
        "--boxes",
        "8192",
        "--shards",
        "2",
        "--replicas",
        "1",
    ])
    .await;
    assert!(out.ok, "init failed:\n{}\n{}", out.stdout, out.stderr);
    cluster
}

/// `s` without ANSI colour codes (the node's log is coloured).
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Replaces `dir` with a copy of `pristine`.
fn restore(pristine: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).expect("remove data dir");
    copy_dir(pristine, dir);
}

/// sled's page-table files (`snap.*`) in `dir`.
fn snapshots(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read data dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_fail_closed_and_name_the_file() {
    tokio::time::timeout(Duration::from_secs(240), damaged_files())
        .await
        .expect("damaged-files test exceeded its bound");
}

async fn damaged_files() {
    let mut cluster = one_node_cluster().await;
    let addr = cluster.members()[&1].clone();
    let mut router = Router::new(vec![addr.clone()]).await.unwrap();
    let sets: Vec<(u32, bool)> = (0..40).map(|i| (i * 97 % 8192, true)).collect();
    for chunk in sets.chunks(4) {
        assert_eq!(router.write(chunk).await.unwrap().len(), chunk.len());
    }
    // Kill, restart (opening the database writes sled's page table,
    // `snap.*`), kill again: a stopped node's files, as after a crash.
    cluster.kill(1);
    cluster.restart(1).await;
    cluster.kill(1);
    let data = cluster.data_dir(1).to_path_buf();
    let snaps = snapshots(&data);
    assert!(
        !snaps.is_empty(),
        "no sled page table (snap.*) in {}",
        data.display()
    );
    let pristine = cluster.dir().join("pristine-node-1");
    copy_dir(&data, &pristine);

    type Damage = Box<dyn Fn(&Path)>;
    // (what, the damage, the file the error must name)
    let cases: Vec<(&str, Damage, PathBuf)> = vec![
        (
            "bytes flipped in the page table",
            Box::new(|d: &Path| {
                for snap in snapshots(d) {
                    let len = std::fs::metadata(&snap).unwrap().len() as usize;
                    flip(&snap, len / 2, 8);
                }
            }),
            snaps.iter().max().expect("a page table").clone(),
        ),
        (
            "bytes flipped in the log",
            Box::new(|d: &Path| flip(&d.join("db"), 100, 8)),
            data.join("db"),
        ),
        (
            "the log truncated",
            Box::new(|d: &Path| {
                let db = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("db"))
                    .unwrap();
                db.set_len(300).unwrap();
            }),
            data.join("db"),
        ),
        (
            "a byte flipped in the settings",
            Box::new(|d: &Path| flip(&d.join("conf"), 10, 1)),
            data.join("conf"),
        ),
    ];
    for (what, damage, named) in cases {
        restore(&pristine, &data);
        damage(&data);
        let (status, printed) = cluster
            .restart_expecting_exit(1, Duration::from_secs(30))
            .await;
        let printed = plain(&printed);
        let error = printed.lines().find(|l| l.starts_with("Error:"));
        eprintln!("{what}: {}", error.unwrap_or("(no `Error:` line)"));
        assert!(
            !status.success(),
            "{what}: the node exited with {status}:\n{printed}"
        );
        assert!(
            !printed.contains("serving"),
            "{what}: the node served from damaged files:\n{printed}"
        );
        let error = error.unwrap_or_default();
        let named = named.display().to_string();
        assert!(
            error.contains(&format!("{named} ")) || error.contains(&format!("{named}.")),
            "{what}: the error does not name {named}:\n{printed}"
        );
        assert!(
            printed.contains("raftctl node remove"),
            "{what}: the error does not say what to do:\n{printed}"
        );
    }

    // The same files undamaged: the node serves every acknowledged box.
    restore(&pristine, &data);
    cluster.restart(1).await;
    let mut router = Router::new(vec![addr]).await.unwrap();
    let all = router.read_all().await.unwrap();
    for (i, _) in &sets {
        assert!(all.contains(*i), "box {i} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_without_id_logs_its_real_id() {
    tokio::time::timeout(Duration::from_secs(180), node_id_in_logs())
        .await
        .expect("node-id test exceeded its bound");
}

/// Waits until node `key`'s log, from byte `from` on, contains `needle`;
/// answers that part of the log without colour codes.
async fn log_with(cluster: &Cluster, key: u64, from: usize, needle: &str) -> String {
    eventually(
        Duration::from_secs(30),
        &format!("{needle:?} in node {key}'s log"),
        || {
            let log = plain(&cluster.log(key)[from..]);
            async move { log.contains(needle).then_some(log) }
        },
    )
    .await
}

async fn node_id_in_logs() {
    let mut cluster = one_node_cluster().await;
    let entry = cluster.members()[&1].clone();

    // A second node, started without an id, joins through `node add`.
    cluster.add_unassigned_node(102).await;
    let addr = cluster.members()[&102].clone();
    let added: serde_json::Value = raftctl(&[
        "node",
        "add",
        &addr,
        "--cluster",
        &entry,
        "--token",
        TOKEN,
        "--json",
    ])
    .await
    .json();
    let id = added["id"].as_u64().expect("node add prints the id");
    assert_eq!(id, 2);
    let real = format!("node_id={id}");

    // Once assigned, its lines carry the id (it joined the metadata group
    // as a learner, so it starts group 0).
    let log = log_with(&cluster, 102, 0, "group started").await;
    let assigned = log
        .lines()
        .position(|l| l.contains("node id assigned"))
        .expect("the assignment is logged");
    let after = log.lines().skip(assigned).collect::<Vec<_>>().join("\n");
    assert!(
        after.lines().next().unwrap_or("").contains(&real),
        "the assignment line does not carry {real}:\n{after}"
    );
    assert!(
        !after.contains("node_id=0"),
        "node_id=0 logged after the id was assigned:\n{after}"
    );

    // Restarted without --id, it reads its id from the data dir: every
    // line carries it from the moment it is read.
    cluster.kill(102);
    let mark = cluster.log(102).len();
    cluster.restart(102).await;
    let log = log_with(&cluster, 102, mark, "group started").await;
    assert!(
        log.lines()
            .any(|l| l.contains("reopening recorded groups") && l.contains(&real)),
        "the restarted node does not log {real}:\n{log}"
    );
    assert!(
        !log.contains("node_id=0"),
        "the restarted node logs node_id=0:\n{log}"
    );
    assert_eq!(cluster.client(102).status().await.unwrap().node_id, id);
}
