//! `/ready` and systemd's readiness protocol: nodes and gateways started
//! with `NOTIFY_SOCKET` send `READY=1` there once they serve, and only
//! then; a gateway that cannot reach the cluster answers 503 on `/ready`
//! and sends nothing. (What systemd does with the message, `Type=notify`,
//! is systemd's; the datagram is what it reads.)

use std::path::Path;
use std::time::{Duration, Instant};

use checkraft_integration::{
    bin_dir, eventually, free_port, raftctl_init, Cluster, GatewayProcess, TEST_GATEWAY_SECRET,
};
use tokio::net::UnixDatagram;

const TOKEN: &str = "ready-notify-admin-token";

/// The `READY=1` datagrams received within `limit` (any others, such as
/// `STATUS=`, are skipped), stopping once `want` have arrived.
async fn ready_messages(socket: &UnixDatagram, want: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut seen = 0;
    let mut buf = vec![0u8; 4096];
    while seen < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.lines().any(|l| l == "READY=1") {
                    seen += 1;
                }
            }
            _ => break,
        }
    }
    seen
}

async fn status_of(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn bind(path: &Path) -> UnixDatagram {
    UnixDatagram::bind(path).expect("bind the notify socket")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_gateways_notify_readiness_when_they_serve() {
    tokio::time::timeout(Duration::from_secs(120), test())
        .await
        .expect("the readiness test exceeded its bound");
}

async fn test() {
    let dir = tempfile::tempdir().unwrap();
    let node_socket_path = dir.path().join("node.sock");
    let node_socket = bind(&node_socket_path);
    let node_socket_env = node_socket_path.display().to_string();
    let mut cluster = Cluster::start(
        3,
        &[
            ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
            ("CHECKRAFT_NODE_REPORT_MS", "200"),
            ("NOTIFY_SOCKET", &node_socket_env),
        ],
    )
    .await;
    // Nodes without groups (before init) have nothing to wait for.
    assert_eq!(
        ready_messages(&node_socket, 3, Duration::from_secs(20)).await,
        3,
        "each of the three new nodes sends READY=1"
    );
    let out = raftctl_init(&cluster, TOKEN, 20_000, 4).await;
    assert!(out.ok, "init: {}", out.stderr);
    for id in 1..=3 {
        let url = cluster.client(id).url("/ready");
        eventually(Duration::from_secs(30), "nodes ready after init", || {
            let url = url.clone();
            async move { (status_of(&url).await.0 == 200).then_some(()) }
        })
        .await;
    }

    // A node restarted on its data sends READY=1 once its groups know
    // their leaders: at that moment /ready answers 200.
    cluster.kill(2);
    cluster.restart_process(2);
    assert_eq!(
        ready_messages(&node_socket, 1, Duration::from_secs(30)).await,
        1,
        "the restarted node sends READY=1"
    );
    let (code, body) = status_of(&cluster.client(2).url("/ready")).await;
    assert_eq!(code, 200, "READY=1 came before /ready said so: {body}");
    assert!(cluster.log(2).contains("ready: notified systemd"));

    // A gateway: READY=1 once it has the map and every shard loaded and led.
    let gateway_socket_path = dir.path().join("gateway.sock");
    let gateway_socket = bind(&gateway_socket_path);
    let gateway_socket_env = gateway_socket_path.display().to_string();
    let gateway =
        GatewayProcess::start(&cluster, 1, &[("NOTIFY_SOCKET", &gateway_socket_env)]).await;
    assert_eq!(
        ready_messages(&gateway_socket, 1, Duration::from_secs(30)).await,
        1,
        "the gateway sends READY=1"
    );
    let (code, body) = status_of(&gateway.client().url("/ready")).await;
    assert_eq!((code, body.as_str()), (200, "ready\n"));

    // A gateway that reaches no node: /ready says why, and no READY=1.
    let lonely_socket_path = dir.path().join("lonely.sock");
    let lonely_socket = bind(&lonely_socket_path);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut lonely = tokio::process::Command::new(bin_dir().join("checkraft-gateway"))
        .args(["--id", "9", "--listen", &addr, "--cluster"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("CHECKRAFT_GATEWAY_GATEWAY_SECRET", TEST_GATEWAY_SECRET)
        .env("NOTIFY_SOCKET", &lonely_socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://{addr}/ready");
    let (code, body) = eventually(
        Duration::from_secs(20),
        "the lonely gateway to answer",
        || {
            let url = url.clone();
            async move {
                reqwest::get(&url).await.ok()?;
                Some(status_of(&url).await)
            }
        },
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("shard map"), "{body}");
    assert_eq!(
        ready_messages(&lonely_socket, 1, Duration::from_secs(3)).await,
        0,
        "a gateway without a map does not say READY=1"
    );
    let _ = lonely.kill().await;
}
