//! A planned stop of a shard leader (issue 16: SIGTERM hands over first).
//!
//! A writer keeps one write in flight to shard 1's leader; the leader gets
//! SIGTERM. Before it stops, it hands every group it leads to a caught-up
//! voter (`node/src/handover.rs`), so the shard goes on after one election
//! round trip instead of waiting out the election timeout and the old
//! leader's lease (800–1600 ms, then an election). Then the same is done
//! with no stop, through `raftctl node handover ID` (the admin call
//! `POST /admin/leadership/handover`).
//!
//! It prints the longest write pause; it fails on a pause of 1 s or more,
//! which a stop without handover always exceeds (the followers honour the
//! lease of `election_max_ms` = 1.6 s first). To see it fail:
//! `CHECKRAFT_NODE_HANDOVER_MS=0 cargo test -p checkraft-integration
//! --test planned_stop` (the nodes inherit the variable).

use std::time::{Duration, Instant};

use checkraft_integration::{eventually, initialized_cluster, longest_pause, raftctl, Pulse};
use checkraft_proto::Handover;

const TOKEN: &str = "planned-stop-test-token";
const SHARD: u64 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_over_first() {
    tokio::time::timeout(Duration::from_secs(120), test())
        .await
        .expect("planned-stop test exceeded its bound");
}

async fn test() {
    let mut cluster = initialized_cluster(TOKEN, 40_000, 2).await;
    let members = cluster.members();
    let leader = cluster.confirmed_shard_leader(SHARD, TOKEN).await;
    let read = cluster.client(leader).read(SHARD, true).await.unwrap();
    let d = &read.descriptor;
    let range = (d.epoch, d.start, d.end);

    // 1. SIGTERM of the leader.
    let pulse = Pulse::start(members.clone(), TOKEN, SHARD, range, leader);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stop_at = Instant::now();
    cluster.signal(leader, nix::sys::signal::Signal::SIGTERM);
    let status = cluster.wait_exit(leader, Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "node {leader} did not stop cleanly on SIGTERM: {status:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acks = pulse.stop().await;
    let pause = longest_pause(&acks, stop_at).expect("no write acknowledged after the stop");
    eprintln!(
        "SIGTERM of leader {leader}: {} writes acknowledged, longest write pause {} ms",
        acks.len(),
        pause.as_millis()
    );
    let log = cluster.log(leader);
    assert!(
        log.contains("leadership handed over"),
        "node {leader} did not hand over; its log:\n{}",
        cluster.log_tail(leader, 30)
    );
    assert!(
        pause < Duration::from_secs(1),
        "writes paused {pause:?} when the leader stopped"
    );

    // 2. The admin handover, without a stop.
    cluster.restart(leader).await;
    let next = eventually(Duration::from_secs(30), "a shard leader", || async {
        let status = cluster.client(1).status().await.ok()?;
        status.groups.get(&SHARD)?.leader
    })
    .await;
    let pulse = Pulse::start(members.clone(), TOKEN, SHARD, range, next);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked_at = Instant::now();
    let next_s = next.to_string();
    let entry = &members[&1];
    let out = raftctl(&[
        "--json",
        "--cluster",
        entry,
        "--token",
        TOKEN,
        "node",
        "handover",
        &next_s,
    ])
    .await;
    assert!(out.ok, "raftctl node handover failed: {}", out.stderr);
    let handover: Handover = out.json();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acks = pulse.stop().await;
    let pause = longest_pause(&acks, asked_at).expect("no write acknowledged after the handover");
    eprintln!(
        "raftctl node handover {next}: {handover:?}; longest write pause {} ms",
        pause.as_millis()
    );
    let moved = handover.moved.iter().find(|(g, _)| *g == SHARD);
    assert!(
        moved.is_some_and(|(_, to)| *to != next),
        "shard {SHARD} was not handed over: {handover:?}"
    );
    assert!(
        pause < Duration::from_secs(1),
        "writes paused {pause:?} during the handover"
    );
}
