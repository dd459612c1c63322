//! A leader whose process dies is succeeded at once (issue 16,
//! `node/src/succession.rs`).
//!
//! The nodes run with very long raft timeouts (election 15–20 s), so a
//! group whose leader is killed would elect a new one only after the dead
//! leader's lease (20 s) and a follower's election timer (15–20 s) ran
//! out. A writer keeps one write in flight to shard 1's leader, which gets
//! kill -9 and stays down. The survivors find its port refusing
//! connections and the most caught-up one takes over at once: the test
//! fails unless writes go on within 10 s, half the lease alone. It prints
//! the measured pause. To see it fail: `CHECKRAFT_NODE_DEAD_LEADER_PROBE_MS=0
//! cargo test -p checkraft-integration --test dead_leader` (the nodes
//! inherit the variable).

use std::time::{Duration, Instant};

use checkraft_integration::{eventually, longest_pause, raftctl_init, Cluster, Pulse};

const TOKEN: &str = "dead-leader-test-token";
const SHARD: u64 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leaders_groups_elect_at_once() {
    tokio::time::timeout(Duration::from_secs(120), test())
        .await
        .expect("dead-leader test exceeded its bound");
}

async fn test() {
    let env = [
        ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
        ("CHECKRAFT_NODE_REPORT_MS", "200"),
        ("CHECKRAFT_NODE_HEARTBEAT_MS", "300"),
        ("CHECKRAFT_NODE_ELECTION_MIN_MS", "15000"),
        ("CHECKRAFT_NODE_ELECTION_MAX_MS", "20000"),
        // The node's own timers, not the control plane, must move things.
        ("CHECKRAFT_NODE_REBALANCE", "false"),
    ];
    let mut cluster = Cluster::start(3, &env).await;
    let out = raftctl_init(&cluster, TOKEN, 40_000, 2).await;
    assert!(out.ok, "init failed:\n{}\n{}", out.stdout, out.stderr);
    let members = cluster.members();
    let leader = cluster.confirmed_shard_leader(SHARD, TOKEN).await;
    let read = cluster.client(leader).read(SHARD, true).await.unwrap();
    let d = &read.descriptor;
    let range = (d.epoch, d.start, d.end);

    let pulse = Pulse::start(members.clone(), TOKEN, SHARD, range, leader);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    cluster.kill(leader);
    let survivor = members.keys().copied().find(|id| *id != leader).unwrap();
    let next = eventually(Duration::from_secs(30), "a new shard leader", || async {
        let status = cluster.client(survivor).status().await.ok()?;
        status.groups.get(&SHARD)?.leader.filter(|l| *l != leader)
    })
    .await;
    let elected = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acks = pulse.stop().await;
    let pause = longest_pause(&acks, killed_at);
    eprintln!(
        "kill -9 of leader {leader}: node {next} led shard {SHARD} after {} ms; {} writes \
         acknowledged after the kill, longest write pause {:?}",
        elected.as_millis(),
        acks.iter().filter(|a| **a > killed_at).count(),
        pause
    );
    let logs: String = members
        .keys()
        .filter(|id| **id != leader)
        .map(|id| cluster.log_tail(*id, 20))
        .collect();
    assert!(
        elected < Duration::from_secs(10),
        "shard {SHARD} waited {elected:?} for a leader after its leader died; survivors' logs:\n{logs}"
    );
    let pause = pause.expect("no write acknowledged after the kill");
    assert!(
        pause < Duration::from_secs(10),
        "writes paused {pause:?} after the leader died; survivors' logs:\n{logs}"
    );
    assert!(
        members
            .keys()
            .any(|id| *id != leader && cluster.log(*id).contains("campaigning for a dead leader")),
        "no survivor logged its takeover:\n{logs}"
    );
}
