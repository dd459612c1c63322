//! `raftctl up` supervises: under a write workload through the gateway,
//! kill -9 of a node leaves the cluster serving, `up` restarts the node
//! (a new pid in `cluster.json`), and `raftctl node stop` / `node start`
//! take a node down and back, printing what the cluster does; a killed
//! gateway is restarted too. At the end no acknowledged write is lost and
//! the replicas agree.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use checkraft_auth::{Role, Secret, Signer};
use checkraft_integration::workload::{final_check, PutWorkload};
use checkraft_integration::{bin_dir, eventually, free_port, History, NodeClient};
use checkraft_proto::ShardMap;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `(pid, state)` of `role` `id` in `<data>/cluster.json`.
fn process(data: &Path, role: &str, id: u64) -> Option<(Option<u32>, String)> {
    let text = std::fs::read_to_string(data.join("cluster.json")).ok()?;
    let file: serde_json::Value = serde_json::from_str(&text).ok()?;
    let p = file["processes"]
        .as_array()?
        .iter()
        .find(|p| p["role"] == role && p["id"] == id)?;
    Some((
        p["pid"].as_u64().map(|p| p as u32),
        p["state"].as_str()?.to_string(),
    ))
}

async fn ready(addr: &str) -> bool {
    matches!(reqwest::get(format!("http://{addr}/ready")).await, Ok(r) if r.status().is_success())
}

/// Runs `raftctl node ACTION ID` against the `up` on `data`.
async fn node_command(data: &Path, action: &str, id: u64) -> (bool, String) {
    let out = tokio::process::Command::new(bin_dir().join("raftctl"))
        .args(["node", action, &id.to_string(), "--data-dir"])
        .arg(data)
        .args(["--watch", "40"])
        .output()
        .await
        .expect("run raftctl node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn up_restarts_a_killed_node_and_stops_and_starts_one_on_request() {
    tokio::time::timeout(Duration::from_secs(240), test())
        .await
        .expect("the up supervisor test exceeded its bound");
}

async fn test() {
    let data = tempfile::tempdir().expect("temp dir");
    // `up` takes consecutive node ports: find three.
    let port = loop {
        let p = free_port();
        if (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    };
    let gateway_port = free_port();
    let node_addr = |id: u64| format!("127.0.0.1:{}", port + id as u16 - 1);
    let gateway = format!("127.0.0.1:{gateway_port}");
    let mut up = tokio::process::Command::new(bin_dir().join("raftctl"))
        .args(["up", "--data-dir"])
        .arg(data.path())
        .args(["--port", &port.to_string()])
        .args(["--gateway-port", &gateway_port.to_string()])
        .args(["--http-port", &free_port().to_string()])
        .args([
            "--no-caddy",
            "--shards",
            "4",
            "--boxes",
            "40000",
            "--nodes",
            "3",
        ])
        // The workload writes faster than a browser may.
        .env("CHECKRAFT_GATEWAY_HTTP_SETS_PER_SECOND", "1000000")
        .env("CHECKRAFT_GATEWAY_HTTP_SETS_BURST", "1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(data.path().join("up.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn raftctl up");
    let up_log = data.path().join("up.err");
    let gw = gateway.clone();
    eventually(Duration::from_secs(90), "the gateway to be ready", || {
        let gw = gw.clone();
        async move { ready(&gw).await.then_some(()) }
    })
    .await;
    for id in 1..=3 {
        assert!(ready(&node_addr(id)).await, "node {id} /ready");
    }
    // cluster.json is written once every child answers /health.
    eventually(Duration::from_secs(30), "cluster.json", || {
        let data = data.path().to_path_buf();
        async move { process(&data, "gateway", 1).map(drop) }
    })
    .await;
    let token = std::fs::read_to_string(data.path().join("token")).unwrap();
    let secret = std::fs::read_to_string(data.path().join("cluster-secret")).unwrap();
    let signer = Signer::new(
        Role::Node,
        Secret::new("cluster secret", secret.trim()).unwrap(),
    );
    let clients: Vec<(u64, NodeClient)> = (1..=3)
        .map(|id| {
            let c = NodeClient::new(&node_addr(id))
                .with_token(token.trim())
                .with_signer(signer.clone());
            (id, c)
        })
        .collect();
    let map: ShardMap = reqwest::Client::new()
        .get(format!("http://{}/meta/map", node_addr(1)))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(map.shards.len(), 4);

    let history = Arc::new(History::new());
    let workload = PutWorkload::start(history.clone(), &map, std::slice::from_ref(&gateway), 1, 1);
    assert!(
        workload.wait_for_acks(100, Duration::from_secs(20)).await,
        "the workload gets going"
    );

    // kill -9 node 2: `up` notices, logs it, and starts it again.
    let (old_pid, _) = process(data.path(), "node", 2).expect("node 2 in cluster.json");
    let old_pid = old_pid.expect("node 2 runs");
    kill(Pid::from_raw(old_pid as i32), Signal::SIGKILL).unwrap();
    let before = workload.acked();
    let new_pid = eventually(
        Duration::from_secs(30),
        "cluster.json to show node 2 running under a new pid",
        || {
            let data = data.path().to_path_buf();
            async move {
                match process(&data, "node", 2)? {
                    (Some(pid), state) if pid != old_pid && state == "running" => Some(pid),
                    _ => None,
                }
            }
        },
    )
    .await;
    assert!(up.try_wait().unwrap().is_none(), "up keeps running");
    let log = std::fs::read_to_string(&up_log).unwrap();
    assert!(
        log.contains("node 2 exited unexpectedly") && log.contains("node 2 started again"),
        "up logs the death and the restart:\n{log}"
    );
    for id in [1, 3] {
        let (pid, state) = process(data.path(), "node", id).unwrap();
        assert!(
            pid.is_some() && state == "running",
            "node {id}: {pid:?} {state}"
        );
    }
    assert!(
        workload.wait_for_acks(200, Duration::from_secs(30)).await,
        "the cluster keeps serving writes after the kill ({} acknowledged before it, {} now)",
        before,
        workload.acked()
    );
    let addr2 = node_addr(2);
    eventually(Duration::from_secs(30), "node 2 ready again", || {
        let a = addr2.clone();
        async move { ready(&a).await.then_some(()) }
    })
    .await;
    assert_eq!(process(data.path(), "node", 2).unwrap().0, Some(new_pid));

    // node stop: node 3 goes down and stays down; the rest keeps serving.
    let (old3, _) = process(data.path(), "node", 3).unwrap();
    let (ok, out) = node_command(data.path(), "stop", 3).await;
    println!("raftctl node stop 3:\n{out}");
    assert!(ok, "node stop failed:\n{out}");
    assert!(out.contains("stopping node 3"), "{out}");
    assert!(out.contains("settled: node 3 down"), "{out}");
    assert!(out.contains("writes:"), "{out}");
    let stopped = eventually(
        Duration::from_secs(15),
        "node 3 stopped in cluster.json",
        || {
            let data = data.path().to_path_buf();
            async move { process(&data, "node", 3).filter(|(_, s)| s == "stopped") }
        },
    )
    .await;
    assert_eq!(stopped.0, None, "a stopped node has no pid");
    assert!(
        workload.wait_for_acks(100, Duration::from_secs(30)).await,
        "writes go on with node 3 stopped"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        process(data.path(), "node", 3).unwrap().1,
        "stopped",
        "up does not restart a node stopped on request"
    );
    let (ok, out) = node_command(data.path(), "stop", 3).await;
    assert!(!ok && out.contains("already stopped"), "{out}");

    // node start: node 3 comes back under a new pid.
    let (ok, out) = node_command(data.path(), "start", 3).await;
    println!("raftctl node start 3:\n{out}");
    assert!(ok, "node start failed:\n{out}");
    assert!(out.contains("settled: node 3 ready"), "{out}");
    let (pid3, state3) = process(data.path(), "node", 3).unwrap();
    assert!(
        pid3.is_some() && pid3 != old3 && state3 == "running",
        "{pid3:?} {state3}"
    );

    assert!(
        workload.wait_for_acks(100, Duration::from_secs(30)).await,
        "writes go on after the start"
    );

    // Gateways are restarted the same way.
    let (gw_pid, _) = process(data.path(), "gateway", 1).unwrap();
    let gw_pid = gw_pid.expect("gateway 1 runs");
    kill(Pid::from_raw(gw_pid as i32), Signal::SIGKILL).unwrap();
    eventually(
        Duration::from_secs(30),
        "cluster.json to show gateway 1 under a new pid",
        || {
            let data = data.path().to_path_buf();
            async move {
                match process(&data, "gateway", 1)? {
                    (Some(pid), state) if pid != gw_pid && state == "running" => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
    let gw = gateway.clone();
    eventually(Duration::from_secs(30), "gateway 1 ready again", || {
        let gw = gw.clone();
        async move { ready(&gw).await.then_some(()) }
    })
    .await;
    assert!(
        workload.wait_for_acks(100, Duration::from_secs(30)).await,
        "writes go on through the restarted gateway"
    );
    let attempted = workload.attempted();
    workload.stop().await;
    let acked = history
        .writes()
        .iter()
        .filter(|w| w.outcome.acked())
        .count();
    let report = final_check(&history, &map, &clients, Duration::from_secs(60)).await;
    println!("{attempted} writes sent, {acked} acknowledged");
    assert!(report.ok(), "{}", report.summary(20));

    kill(Pid::from_raw(up.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(40), up.wait())
        .await
        .expect("up did not exit")
        .unwrap();
    assert!(status.success(), "raftctl up exited with {status}");
    assert!(
        !data.path().join("up.sock").exists(),
        "up removes its control socket"
    );
}
