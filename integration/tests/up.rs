//! `raftctl up` (in a temporary data dir): starts a local cluster, its gateways and the
//! page (through Caddy, or served by the gateway with `--no-caddy`), serves
//! `status` and the grid's API, restarts Caddy when it is killed, and on
//! SIGINT exits cleanly, leaving no child process behind.

use std::time::Duration;

use checkraft_integration::{bin_dir, eventually, raftctl, WsClient};
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

/// `n` consecutive free loopback ports.
fn free_ports(n: u16) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        if p < 60000 && (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            break p;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_caddy_and_two_gateways_serves_the_page_and_stops_cleanly() {
    assert!(
        which("caddy"),
        "caddy is not installed: integration/run-tests installs it"
    );
    tokio::time::timeout(Duration::from_secs(180), test(true))
        .await
        .expect("up test exceeded its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_without_caddy_has_the_gateway_serve_the_page() {
    tokio::time::timeout(Duration::from_secs(180), test(false))
        .await
        .expect("up test exceeded its bound");
}

/// Caddy's current pid in `<data>/cluster.json`, while it runs.
fn caddy_pid(data: &std::path::Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("cluster.json")).ok()?;
    let file: serde_json::Value = serde_json::from_str(&text).ok()?;
    let caddy = file["processes"]
        .as_array()?
        .iter()
        .find(|p| p["role"] == "caddy")?;
    (caddy["state"] == "running")
        .then(|| caddy["pid"].as_u64())
        .flatten()
        .map(|p| p as u32)
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

async fn test(caddy: bool) {
    let port = free_ports(3);
    let gateway_port = free_ports(2);
    let http_port = free_ports(1);
    let gateways: u16 = if caddy { 2 } else { 1 };
    // A data dir of the test's own (not --ephemeral), so that the test can
    // read the admin token `up` generates there, as an operator would.
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = vec![
        "up".to_string(),
        "--data-dir".into(),
        data.path().display().to_string(),
        "--port".into(),
        port.to_string(),
        "--shards".into(),
        "4".into(),
        "--boxes".into(),
        "20000".into(),
        "--gateway-port".into(),
        gateway_port.to_string(),
        "--gateways".into(),
        gateways.to_string(),
        "--http-port".into(),
        http_port.to_string(),
    ];
    if !caddy {
        args.push("--no-caddy".into());
    }
    let page_port = if caddy { http_port } else { gateway_port };
    let mut up = tokio::process::Command::new(bin_dir().join("raftctl"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn raftctl up");
    let pid = up.id().expect("pid");
    let entry = format!("127.0.0.1:{port}");
    eventually(
        Duration::from_secs(90),
        "raftctl up to serve status and the page",
        || {
            let entry = entry.clone();
            let token_file = data.path().join("token");
            async move {
                let token = std::fs::read_to_string(token_file).ok()?;
                let out = raftctl(&[
                    "status",
                    "--json",
                    "--cluster",
                    &entry,
                    "--token",
                    token.trim(),
                ])
                .await;
                let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
                let shards = v["shards"].as_array()?;
                if !(shards.len() == 4 && shards.iter().all(|s| s["leader"].is_u64())) {
                    return None;
                }
                // `up` starts the gateways and Caddy after the nodes are
                // initialized: ready means the page's address answers
                // /health too (Caddy proxies it to a gateway).
                let health = reqwest::get(format!("http://127.0.0.1:{page_port}/health"))
                    .await
                    .ok()?;
                health.status().is_success().then_some(())
            }
        },
    )
    .await;
    let kids = children(pid);
    let expected = 3 + usize::from(gateways) + usize::from(caddy);
    assert_eq!(
        kids.len(),
        expected,
        "raftctl up runs three nodes, {gateways} gateway(s) and {} Caddy, found {kids:?}",
        if caddy { "one" } else { "no" }
    );
    let page = format!("http://127.0.0.1:{page_port}");
    let stats: serde_json::Value = reqwest::get(format!("{page}/api/stats"))
        .await
        .expect("the grid's API answers")
        .json()
        .await
        .expect("stats are JSON");
    assert_eq!(stats["boxes"], 20000, "gateway stats: {stats}");
    let index = reqwest::get(format!("{page}/")).await.expect("the page");
    assert!(
        index.status().is_success(),
        "GET / answered {}",
        index.status()
    );
    assert!(
        index.headers().contains_key("content-security-policy"),
        "the page carries security headers: {:?}",
        index.headers()
    );
    let html = index.text().await.unwrap();
    assert!(
        html.contains("/js/main.js") && html.contains("/nojs"),
        "the page: {html}"
    );
    let hidden = reqwest::get(format!("{page}/package.json")).await.unwrap();
    assert_eq!(hidden.status(), 404, "development files stay hidden");
    let endpoints: Vec<String> = (0..gateways)
        .map(|i| format!("ws://127.0.0.1:{}/ws", gateway_port + i))
        .collect();
    // The registry is soft state: a gateway's /config.json may lag a
    // report interval (and its 1 s cache) behind the other's.
    let want = serde_json::json!(endpoints);
    let config = eventually(
        Duration::from_secs(15),
        "/config.json to list every gateway",
        || {
            let url = format!("{page}/config.json");
            let want = want.clone();
            async move {
                let config: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
                (config["endpoints"] == want).then_some(config)
            }
        },
    )
    .await;
    assert_eq!(config["source"], "registry", "{config}");

    // Origins: the page's (either spelling) may open websockets at the
    // page's own /ws (through Caddy, which passes Host through) and at
    // every gateway's direct URL that /config.json hands out; a foreign
    // page gets 403 at each.
    let targets = std::iter::once(page_port).chain((0..gateways).map(|i| gateway_port + i));
    for target in targets.map(|p| format!("127.0.0.1:{p}")) {
        for origin in [
            format!("http://127.0.0.1:{page_port}"),
            format!("http://localhost:{page_port}"),
        ] {
            let ws = WsClient::connect_with_origin(&target, Some(&origin))
                .await
                .expect("websocket handshake");
            assert!(ws.is_ok(), "Origin {origin} at {target}: {:?}", ws.err());
        }
        let foreign = WsClient::connect_with_origin(&target, Some("http://evil.example"))
            .await
            .expect("websocket handshake");
        assert_eq!(foreign.err(), Some(403), "a foreign Origin at {target}");
    }

    // `up` restarts Caddy too when it dies, under a new pid.
    let mut kids = kids;
    if caddy {
        // cluster.json is written once every child answers /health.
        let old = eventually(Duration::from_secs(30), "Caddy in cluster.json", || {
            let data = data.path().to_path_buf();
            async move { caddy_pid(&data) }
        })
        .await;
        kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
        let new = eventually(Duration::from_secs(30), "up to restart Caddy", || {
            let data = data.path().to_path_buf();
            async move { caddy_pid(&data).filter(|p| *p != old) }
        })
        .await;
        eventually(
            Duration::from_secs(30),
            "the page back through Caddy",
            || async move {
                let health = reqwest::get(format!("http://127.0.0.1:{page_port}/health"))
                    .await
                    .ok()?;
                health.status().is_success().then_some(())
            },
        )
        .await;
        kids.push(new);
    }

    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), up.wait())
        .await
        .expect("up did not exit")
        .unwrap();
    assert!(status.success(), "raftctl up exited with {status}");
    for kid in kids {
        assert!(!alive(kid), "child process {kid} outlived raftctl up");
    }
}
