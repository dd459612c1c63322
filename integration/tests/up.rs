//! `raftctl up --ephemeral`: starts a local cluster and a gateway, serves
//! `status` and the gateway's API, and on SIGINT exits cleanly, leaving no
//! child process behind.

use std::time::Duration;

use checkraft_integration::{bin_dir, eventually, raftctl};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Pids whose parent is `parent` (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        if rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            == Some(parent)
        {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_ephemeral_serves_status_and_stops_cleanly() {
    tokio::time::timeout(Duration::from_secs(180), test())
        .await
        .expect("up test exceeded its bound");
}

async fn test() {
    // Three consecutive free ports.
    let port = loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        if p < 60000 && (1..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    };
    let gateway_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut up = tokio::process::Command::new(bin_dir().join("raftctl"))
        .args([
            "up",
            "--ephemeral",
            "--port",
            &port.to_string(),
            "--shards",
            "4",
            "--boxes",
            "20000",
            "--gateway-port",
            &gateway_port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn raftctl up");
    let pid = up.id().expect("pid");
    let entry = format!("127.0.0.1:{port}");
    eventually(
        Duration::from_secs(90),
        "raftctl up to serve status and the gateway",
        || {
            let entry = entry.clone();
            async move {
                let out = raftctl(&["status", "--json", "--cluster", &entry]).await;
                let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
                let shards = v["shards"].as_array()?;
                if !(shards.len() == 4 && shards.iter().all(|s| s["leader"].is_u64())) {
                    return None;
                }
                // `up` starts the gateway after the nodes are initialized:
                // ready means the gateway answers too.
                let health = reqwest::get(format!("http://127.0.0.1:{gateway_port}/health"))
                    .await
                    .ok()?;
                health.status().is_success().then_some(())
            }
        },
    )
    .await;
    let kids = children(pid);
    assert_eq!(
        kids.len(),
        4,
        "raftctl up runs three nodes and a gateway, found {kids:?}"
    );
    let stats: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{gateway_port}/api/stats"))
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("stats are JSON");
    assert_eq!(stats["boxes"], 20000, "gateway stats: {stats}");

    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .expect("up did not exit")
        .unwrap();
    assert!(status.success(), "raftctl up exited with {status}");
    for kid in kids {
        assert!(!alive(kid), "node process {kid} outlived raftctl up");
    }
}
