//! Online resharding against real processes (docs/resharding.md): three
//! nodes bootstrapped with 16 shards of a 524,288-box grid (128 chunks of
//! 4096), one real gateway, HTTP writers (every PUT recorded in a
//! [`History`]), a websocket writer and a websocket subscriber holding
//! every chunk by the protocol's client rule.
//!
//! - `reshard_under_load_and_faults`: `raftctl reshard` takes the cluster
//!   16 → 32 → 64 → 8 → 16 shards while the writers run. During the
//!   changes: kill -9 of the parent's leader right after the runner
//!   proposes a split, of the metadata leader in the middle of an
//!   operation, and of a random node in the other two phases (each
//!   restarted 1.5 s later). `raftctl` itself is rerun when the node it
//!   talks to dies: it continues from what the map records. At the end:
//!   the map tiles the grid; every acknowledged write (HTTP and
//!   websocket) is in the final state; all replicas of every shard
//!   report the same applied index, seq and bytes; and the subscriber's
//!   chunks equal a linearizable read of the cluster, after only the
//!   resyncs the protocol documents for a node's loss.
//! - `bad_reshapes_are_refused_and_change_nothing`: split points off a
//!   chunk boundary, at a range edge or outside the range; an unknown
//!   shard; a merge of shards that are not adjacent; a second operation
//!   while one is recorded; a stale epoch sent straight to a shard. Each
//!   gets a clear error and the map and shards stay as they were.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checkraft_integration::history::{Ack, Outcome, WriteApi, WriteOp};
use checkraft_integration::workload::{final_check, PutWorkload};
use checkraft_integration::{
    initialized_cluster, raftctl, raftctl_init, Cluster, GatewayClient, GatewayProcess, History,
    NodeClient, Router, WsClient, WsEvent,
};
use checkraft_proto::ws::{AckStatus, ClientMessage, ServerMessage};
use checkraft_proto::{codec, Command, OperationKind, ShardMap, Split, WriteOutcome, META_GROUP};

const TOKEN: &str = "reshard-test-token";
const BOXES: u64 = 524_288;
const CHUNK: u32 = 4096;
const CHUNKS: u32 = 128;
const WAIT: Duration = Duration::from_secs(30);

/// What to do to the cluster while one reshard runs.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// kill -9 the parent's leader as soon as a split is being proposed.
    SplitParentLeader,
    /// kill -9 the metadata leader while an operation is recorded.
    MetaLeader,
    /// kill -9 a node once a few operations have finished.
    RandomNode(u64),
}

/// `(id, client)` of every running node (taken briefly under the lock).
fn clients(cluster: &Mutex<Cluster>) -> Vec<(u64, NodeClient)> {
    let c = cluster.lock().unwrap();
    c.running()
        .into_iter()
        .map(|id| (id, c.client(id).with_token(TOKEN)))
        .collect()
}

/// The newest map among `nodes`' copies (a follower's may lag).
async fn map_from(nodes: &[(u64, NodeClient)]) -> Option<ShardMap> {
    let mut newest: Option<ShardMap> = None;
    for (_, client) in nodes {
        let Ok(resp) = client
            .send(client.http().get(client.url("/meta/map")))
            .await
        else {
            continue;
        };
        if let Ok(map) = resp.json::<ShardMap>().await {
            if newest.as_ref().is_none_or(|n| n.version < map.version) {
                newest = Some(map);
            }
        }
    }
    newest
}

/// The map from the first running node that answers.
async fn current_map(cluster: &Mutex<Cluster>) -> Option<ShardMap> {
    map_from(&clients(cluster)).await
}

/// The node that leads the metadata group, as the running nodes see it.
async fn meta_leader(nodes: &[(u64, NodeClient)]) -> Option<u64> {
    for (_, client) in nodes {
        if let Ok(status) = client.status().await {
            if let Some(leader) = status.groups.get(&META_GROUP).and_then(|g| g.leader) {
                return Some(leader);
            }
        }
    }
    None
}

/// Runs `raftctl reshard --shards N` until it succeeds, through any
/// running node (a killed entry node makes it fail; rerun, it continues).
async fn reshard(cluster: &Mutex<Cluster>, shards: usize) -> (u32, Duration) {
    let started = Instant::now();
    let target = shards.to_string();
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 40, "raftctl reshard --shards {shards} kept failing");
        let entry = {
            let c = cluster.lock().unwrap();
            let running = c.running();
            c.members()[&running[runs as usize % running.len()]].clone()
        };
        let args = [
            "reshard",
            "--shards",
            &target,
            "--cluster",
            &entry,
            "--token",
            TOKEN,
            "--json",
        ];
        let run = raftctl(&args);
        let Ok(out) = tokio::time::timeout(Duration::from_secs(290), run).await else {
            println!("  reshard --shards {shards} via {entry}: no end within 290 s");
            print_reshape_logs(cluster);
            panic!("raftctl reshard --shards {shards} hangs");
        };
        if out.ok {
            let report: serde_json::Value = out.json();
            let steps = report["steps"].as_array().cloned().unwrap_or_default();
            let slow: Vec<String> = steps
                .iter()
                .filter(|s| s["millis"].as_u64().unwrap_or(0) > 2000)
                .map(|s| format!("{} ms: {}", s["millis"], s["outcome"]))
                .collect();
            println!(
                "  reshard --shards {shards}: {} steps in {} ms; slower than 2 s: {slow:?}",
                steps.len(),
                report["millis"]
            );
            return (runs, started.elapsed());
        }
        println!(
            "  reshard --shards {shards} via {entry} failed (rerunning): {}",
            out.stderr.lines().last().unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Prints what the nodes logged about splits and merges.
fn print_reshape_logs(cluster: &Mutex<Cluster>) {
    let c = cluster.lock().unwrap();
    for id in c.running() {
        let log = c.log(id);
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["reshape", "operation", "split", "merge", "absorb", "adopt"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        println!(
            "----- node {id}: {} reshape lines, last 40 -----",
            lines.len()
        );
        for l in lines.iter().rev().take(40).rev() {
            println!("{l}");
        }
    }
}

/// Injects `fault` while a reshard runs; returns what it did.
async fn inject(cluster: Arc<Mutex<Cluster>>, fault: Fault, done: Arc<AtomicBool>) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let victim = loop {
        if done.load(Ordering::Relaxed) || Instant::now() > deadline {
            return format!("{fault:?}: no moment to inject before the reshard ended");
        }
        let nodes = clients(&cluster);
        let Some(map) = map_from(&nodes).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let pick = match (fault, &map.operation) {
            (Fault::SplitParentLeader, Some(op)) => match op.kind {
                OperationKind::Split { shard, .. } if op.step == "splitting the parent" => {
                    map.shards.get(&shard).and_then(|s| s.leader)
                }
                _ => None,
            },
            (Fault::MetaLeader, Some(_)) => meta_leader(&nodes).await,
            (Fault::RandomNode(id), _) if map.finished.len() >= 4 => Some(id),
            _ => None,
        };
        if let Some(victim) = pick.filter(|v| nodes.iter().any(|(id, _)| id == v)) {
            break victim;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    cluster.lock().unwrap().kill(victim);
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.lock().unwrap().restart_process(victim);
    format!(
        "{fault:?}: killed node {victim}, restarted after {:?}",
        killed_at.elapsed()
    )
}

/// Checks that the map's shards tile `[0, BOXES)` with no gap or overlap.
fn assert_tiles(map: &ShardMap) {
    let mut ranges: Vec<(u64, u64, u64)> = map
        .shards
        .values()
        .map(|s| (s.descriptor.start, s.descriptor.end, s.descriptor.shard))
        .collect();
    ranges.sort();
    let mut next = 0;
    for (start, end, shard) in &ranges {
        assert_eq!(
            *start, next,
            "shard {shard} starts at {start}, expected {next}: {ranges:?}"
        );
        assert!(end > start, "shard {shard} is empty");
        next = *end;
    }
    assert_eq!(next, BOXES, "the shards end at {next}: {ranges:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reshard_under_load_and_faults() {
    tokio::time::timeout(Duration::from_secs(1500), reshard_test())
        .await
        .expect("the reshard test exceeded its bound");
}

async fn reshard_test() {
    let started = Instant::now();
    // Up to 65 groups per node, each with its own heartbeats: production
    // timings (not the harness's faster ones) keep three debug-build nodes
    // on two cores from drowning in them.
    let cluster = Cluster::start(
        3,
        &[
            ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
            ("CHECKRAFT_NODE_REPORT_MS", "200"),
            ("CHECKRAFT_NODE_HEARTBEAT_MS", "300"),
            ("CHECKRAFT_NODE_ELECTION_MIN_MS", "1500"),
            ("CHECKRAFT_NODE_ELECTION_MAX_MS", "3000"),
        ],
    )
    .await;
    let init = raftctl_init(&cluster, TOKEN, BOXES, 16).await;
    assert!(init.ok, "init: {}", init.stderr);
    let gw = GatewayProcess::start(
        &cluster,
        1,
        &[
            ("CHECKRAFT_GATEWAY_WS_SETS_PER_SECOND", "500"),
            ("CHECKRAFT_GATEWAY_WS_SETS_BURST", "500"),
            ("CHECKRAFT_GATEWAY_WS_IP_SETS_PER_SECOND", "500"),
            ("CHECKRAFT_GATEWAY_WS_IP_SETS_BURST", "500"),
            ("CHECKRAFT_GATEWAY_WS_MAX_SUBSCRIPTIONS", "256"),
            ("CHECKRAFT_GATEWAY_HTTP_SETS_PER_SECOND", "1000"),
            ("CHECKRAFT_GATEWAY_HTTP_SETS_BURST", "1000"),
            // One subscriber of every chunk of a grid under heavy writes:
            // at the default 50 B/s budget its Updates would trickle in
            // for minutes after the writes stop (docs/protocol.md).
            ("CHECKRAFT_GATEWAY_WS_BUDGET_BYTES_PER_SECOND", "0"),
        ],
    )
    .await;
    let http = gw.client();
    let cluster = Arc::new(Mutex::new(cluster));
    let first_map = current_map(&cluster).await.expect("a map");

    // The subscriber: every chunk, kept by the client rule.
    let mut sub = WsClient::connect(&gw.addr).await.unwrap();
    match sub.wait_for(WAIT, |m| Some(m.clone())).await.unwrap() {
        ServerMessage::Hello {
            boxes, chunk_size, ..
        } => assert_eq!((boxes, chunk_size), (BOXES, CHUNK)),
        other => panic!("first message is not Hello: {other:?}"),
    }
    sub.send(&ClientMessage::Subscribe {
        first_chunk: 0,
        count: CHUNKS,
    })
    .await
    .unwrap();
    let mut mirror = WsClient::mirror(BOXES, CHUNK);
    mirror.sync(&mut sub, &http, 1, WAIT).await.unwrap();
    for c in 0..CHUNKS {
        mirror.fetch(&http, c).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let subscriber = tokio::spawn(follow(sub, mirror, http.clone(), stop.clone()));

    // Writers: HTTP PUTs into the history, and one websocket writer.
    let history = Arc::new(History::new());
    let puts = PutWorkload::start(
        history.clone(),
        &first_map,
        std::slice::from_ref(&gw.addr),
        1,
        1,
    );
    let ws_applied = Arc::new(Mutex::new(Vec::<u32>::new()));
    let ws_writer = tokio::spawn(ws_write(
        gw.addr.clone(),
        first_map.clone(),
        stop.clone(),
        ws_applied.clone(),
        history.clone(),
    ));

    // The reshard phases, each with its fault.
    let phases = [
        (32usize, Fault::SplitParentLeader),
        (64, Fault::MetaLeader),
        (8, Fault::RandomNode(2)),
        (16, Fault::RandomNode(3)),
    ];
    for (target, fault) in phases {
        let acked_before = puts.acked();
        let done = Arc::new(AtomicBool::new(false));
        let faults = tokio::spawn(inject(cluster.clone(), fault, done.clone()));
        let (runs, took) = reshard(&cluster, target).await;
        done.store(true, Ordering::Relaxed);
        let injected = faults.await.unwrap();
        println!(
            "{:>6.1}s {target} shards after {took:.1?} ({runs} raftctl runs); {injected}; {} writes \
             acknowledged meanwhile",
            started.elapsed().as_secs_f64(),
            puts.acked() - acked_before
        );
        let map = current_map(&cluster).await.unwrap();
        assert_eq!(map.shards.len(), target, "after reshard --shards {target}");
        assert!(map.operation.is_none(), "an operation is still recorded");
        assert_tiles(&map);
        // Everyone is back before the next phase.
        let running = cluster.lock().unwrap().running();
        assert_eq!(running.len(), 3, "a killed node was not restarted");
    }
    assert!(
        puts.wait_for_acks(20, WAIT).await,
        "writes are not acknowledged after the reshards"
    );

    stop.store(true, Ordering::Relaxed);
    puts.stop().await;
    let ws_applied = {
        ws_writer.await.unwrap();
        ws_applied.lock().unwrap().clone()
    };

    // Every replica of every shard, every acknowledged write.
    let replicas = clients(&cluster);
    let map = current_map(&cluster).await.unwrap();
    assert_tiles(&map);
    let finished: Vec<String> = map
        .finished
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.outcome.clone())
        .collect();
    println!("operations refused or rolled back among the last 16: {finished:?}");
    let report = final_check(&history, &map, &replicas, WAIT).await;
    println!("{}", report.summary(10));
    assert!(report.anomalies.is_empty(), "{report:#?}");
    let (acked, indeterminate, failed) = history.write_counts();

    // The cluster's state, linearizable.
    let entries: Vec<String> = cluster.lock().unwrap().members().into_values().collect();
    let mut router = Router::new(entries).await.unwrap();
    let truth = router.read_all().await.unwrap();
    for index in &ws_applied {
        assert!(
            truth.contains(*index),
            "websocket Set of box {index} was Applied but is lost"
        );
    }

    // The subscriber's chunks equal it.
    let (mut sub, mut mirror) = subscriber.await.unwrap();
    mirror.sync(&mut sub, &http, 2, WAIT).await.unwrap();
    let mirrored: Vec<u32> = mirror.checked_boxes();
    let expected: Vec<u32> = truth.iter().collect();
    assert_eq!(
        mirrored.len(),
        expected.len(),
        "the subscriber's chunks differ from the cluster ({:?})",
        mirror.stats
    );
    assert_eq!(
        mirrored, expected,
        "the subscriber's chunks differ from the cluster"
    );
    println!(
        "{:>6.1}s done: {acked} writes acknowledged ({indeterminate} indeterminate, {failed} \
         failed; {} of them websocket Sets), {} boxes checked; subscriber: {:?}",
        started.elapsed().as_secs_f64(),
        ws_applied.len(),
        expected.len(),
        mirror.stats
    );
    // Every chunk's chain of Updates continued across every split and
    // merge: no Update skipped what the subscriber held. (A gateway that
    // starts a child's chains from its birth instead of the parent's
    // fails this: 47 gaps in one run.)
    assert_eq!(
        mirror.stats.gaps, 0,
        "Updates did not chain across the changes: {:?}",
        mirror.stats
    );
    drop(gw);
}

/// Keeps the mirror by the client rule until `stop`.
async fn follow(
    mut sub: WsClient,
    mut mirror: checkraft_integration::ChunkMirror,
    http: GatewayClient,
    stop: Arc<AtomicBool>,
) -> (WsClient, checkraft_integration::ChunkMirror) {
    while !stop.load(Ordering::Relaxed) {
        match sub
            .try_next_event(Duration::from_millis(200))
            .await
            .unwrap()
        {
            Some(WsEvent::Message(msg)) => {
                // A refetch can meet a shard whose state is loading after a
                // node's loss: retry it on the next message.
                let _ = mirror.handle(&http, &msg).await;
            }
            Some(WsEvent::Closed(close)) => panic!("subscriber closed: {close:?}"),
            None => {}
        }
    }
    (sub, mirror)
}

/// One Set at a time over the websocket, on boxes counting down from the
/// top of each first-map shard (the HTTP writers count up from the
/// bottom); records every Set in the history, and the Applied ones.
async fn ws_write(
    addr: String,
    map: ShardMap,
    stop: Arc<AtomicBool>,
    applied: Arc<Mutex<Vec<u32>>>,
    history: Arc<History>,
) {
    let mut ws = WsClient::connect(&addr).await.unwrap();
    let _hello = ws.wait_for(WAIT, |m| Some(m.clone())).await.unwrap();
    let tops: Vec<u64> = map.shards.values().map(|s| s.descriptor.end - 1).collect();
    let mut k = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let top = tops[k as usize % tops.len()];
        let index = (top - u64::from(k) / tops.len() as u64) as u32;
        let request_id = k;
        k += 1;
        let invoked = Instant::now();
        ws.send(&ClientMessage::Set {
            request_id,
            index,
            checked: true,
        })
        .await
        .unwrap();
        let ack = ws
            .wait_for(WAIT, |m| match m {
                ServerMessage::Ack {
                    request_id: r,
                    status,
                    seq,
                } if *r == request_id => Some((*status, *seq)),
                _ => None,
            })
            .await;
        let outcome = match ack {
            Ok((AckStatus::Applied, seq)) => {
                applied.lock().unwrap().push(index);
                Outcome::Acked(Ack {
                    seq: Some(seq),
                    ..Ack::default()
                })
            }
            // A commit not seen in time: it may still apply.
            Ok((AckStatus::Unavailable, _)) => Outcome::Indeterminate("Unavailable".into()),
            Ok((status, _)) => Outcome::Failed(format!("{status:?}")),
            Err(e) => {
                assert!(
                    e.to_string().contains("no websocket message"),
                    "websocket writer: {e}"
                );
                Outcome::Indeterminate("no Ack".into())
            }
        };
        let failed = !outcome.acked();
        history.record_write(WriteOp {
            process: "ws-writer".into(),
            shard: map
                .shard_for(u64::from(index))
                .map_or(0, |s| s.descriptor.shard),
            index,
            value: true,
            api: WriteApi::Gateway(1),
            invoked,
            completed: Instant::now(),
            outcome,
        });
        if failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reshapes_are_refused_and_change_nothing() {
    tokio::time::timeout(Duration::from_secs(300), bad_input_test())
        .await
        .expect("the bad-input test exceeded its bound");
}

async fn bad_input_test() {
    let cluster = Mutex::new(initialized_cluster(TOKEN, 40_960, 4).await);
    let entry = cluster.lock().unwrap().members()[&1].clone();
    let before = current_map(&cluster).await.unwrap();
    let d = before.shards[&1].descriptor.clone();
    assert_eq!((d.start, d.end), (0, 12_288), "layout of the first shard");
    let run = |args: Vec<String>| {
        let entry = entry.clone();
        async move {
            let mut full: Vec<String> = args;
            full.extend(["--cluster".into(), entry, "--token".into(), TOKEN.into()]);
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            raftctl(&refs).await
        }
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["shard", "split", "1", "--at", "5000"],
            "not on a chunk boundary",
        ),
        (
            vec!["shard", "split", "1", "--at", "0"],
            "not strictly inside",
        ),
        (
            vec!["shard", "split", "1", "--at", "12288"],
            "not strictly inside",
        ),
        (
            vec!["shard", "split", "1", "--at", "20480"],
            "not strictly inside",
        ),
        (vec!["shard", "split", "9"], "no shard 9"),
        (vec!["shard", "merge", "1", "3"], "not adjacent"),
        (vec!["shard", "merge", "2", "1"], "not adjacent"),
        (vec!["shard", "merge", "1", "9"], "no shard 9"),
    ];
    for (args, expected) in cases {
        let out = run(args.iter().map(|s| s.to_string()).collect()).await;
        assert!(!out.ok, "raftctl {args:?} succeeded: {}", out.stdout);
        assert!(
            out.stderr.contains(expected),
            "raftctl {args:?}: expected {expected:?} in: {}",
            out.stderr
        );
        println!("raftctl {}: {}", args.join(" "), out.stderr.trim());
    }

    // A second operation while one is recorded.
    let leader = NodeClient::new(&entry).with_token(TOKEN);
    let begin = |kind: OperationKind| checkraft_proto::MetaCommand::BeginOperation { kind };
    // (A restore stays recorded: no `raftctl restore` runs it.)
    let first = meta(
        &leader,
        &begin(OperationKind::Restore {
            backup_created_ms: 1,
        }),
    )
    .await;
    let WriteOutcome::MetaApplied { outcome, .. } = first else {
        panic!("recording an operation: {first:?}");
    };
    let id = outcome.allocated.unwrap();
    let out = run(vec!["shard".into(), "split".into(), "2".into()]).await;
    assert!(
        !out.ok && out.stderr.contains("in progress"),
        "{}",
        out.stderr
    );
    println!(
        "raftctl shard split 2 (while operation {id} is recorded): {}",
        out.stderr.trim()
    );
    let end = meta(&leader, &checkraft_proto::MetaCommand::EndOperation { id }).await;
    assert!(matches!(end, WriteOutcome::MetaApplied { .. }), "{end:?}");

    // A stale epoch, straight to the shard's leader.
    let map = current_map(&cluster).await.unwrap();
    let stale = Command::Split(Split {
        epoch: d.epoch + 7,
        at: 4096,
        child: 99,
    });
    let outcome = reshape_at_leader(&clients(&cluster), &map, 1, &stale).await;
    match outcome {
        WriteOutcome::Rejected {
            rejection: checkraft_proto::Rejection::StaleEpoch { current, got },
        } => {
            assert_eq!((current, got), (d.epoch, d.epoch + 7));
            println!("Split with epoch {got} at shard 1 (epoch {current}): refused, stale epoch");
        }
        other => panic!("a stale split was not refused: {other:?}"),
    }
    // A command that is not a reshape, on the reshape endpoint.
    let status = post_reshape(&leader, 1, &Command::Barrier).await.0;
    assert_eq!(status, 400, "a barrier on /reshape");

    // Nothing changed: same shards, epochs and no child anywhere.
    let after = current_map(&cluster).await.unwrap();
    let layout = |m: &ShardMap| -> BTreeMap<u64, (u64, u64, u64)> {
        m.shards
            .iter()
            .map(|(id, s)| {
                (
                    *id,
                    (s.descriptor.start, s.descriptor.end, s.descriptor.epoch),
                )
            })
            .collect()
    };
    assert_eq!(
        layout(&after),
        layout(&before),
        "a refused reshape changed the map"
    );
    for (id, client) in clients(&cluster) {
        let status = client.status().await.unwrap();
        assert!(
            !status.groups.contains_key(&99),
            "node {id} hosts a child of a refused split"
        );
        let one = &status.groups[&1].descriptor;
        assert_eq!(
            (one.end, one.epoch),
            (d.end, d.epoch),
            "node {id}'s shard 1 changed"
        );
    }
}

async fn meta(client: &NodeClient, command: &checkraft_proto::MetaCommand) -> WriteOutcome {
    let resp = client
        .send(client.http().post(client.url("/admin/meta")).json(command))
        .await
        .unwrap();
    resp.json().await.unwrap()
}

async fn post_reshape(client: &NodeClient, shard: u64, command: &Command) -> (u16, Vec<u8>) {
    let resp = client
        .send(
            client
                .http()
                .post(client.url(&format!("/shards/{shard}/reshape")))
                .body(codec::encode(command)),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// Sends `command` to `shard`'s replicas until its leader answers.
async fn reshape_at_leader(
    nodes: &[(u64, NodeClient)],
    map: &ShardMap,
    shard: u64,
    command: &Command,
) -> WriteOutcome {
    for _ in 0..50 {
        for (id, client) in nodes {
            if !map.shards[&shard].replicas.contains(id) {
                continue;
            }
            let (_, body) = post_reshape(client, shard, command).await;
            if let Ok(outcome) = serde_json::from_slice::<WriteOutcome>(&body) {
                if !matches!(outcome, WriteOutcome::ForwardToLeader { .. }) {
                    return outcome;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader of shard {shard} answered");
}
