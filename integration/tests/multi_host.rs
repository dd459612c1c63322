//! A cluster spread over "hosts": network namespaces joined by a bridge,
//! each with its own address (`Hosts`). Three nodes, two gateways and
//! Caddy run each on its own host. Every node listens on its host's
//! address but advertises a [`DelayRelay`] on the test's side of the
//! bridge, which adds 1 ms each way (30 ms for the "remote" node 3, whose
//! link is also rate-limited with `tbf`): every call between nodes, and
//! from the gateways to the nodes, crosses a relay. So the shard map holds
//! the advertised addresses, never the listen ones, and the cluster works
//! only if nothing assumes loopback or listen = advertise. (A relay delays
//! the connections made *to* its node: node 3's own calls to the others
//! take their relays' 1 ms. Caddy reaches the gateways directly.)
//!
//! A write workload runs through Caddy while the test kills node 1 with
//! SIGKILL (and restarts it), cuts host 2's link (a partition) and heals
//! it, restarts node 3, and then grows the cluster to five nodes and
//! replaces host 3 as `docs/deploy.md` says: nodes on a fourth and a fifth
//! host start without an id and are added, host 3 dies for good, and
//! `raftctl node remove 3` moves its replicas. Then
//! no acknowledged write may be lost and the replicas of every shard must
//! agree (the history checker).
//!
//! Needs root (CI is root) and `ip`; skipped with a message where network
//! namespaces cannot be created. The namespaces, links and processes are
//! removed when the test ends, also when it fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkraft_integration::workload::{final_check, PutWorkload};
use checkraft_integration::{
    bin_dir, eventually, free_port, DelayRelay, History, Hosts, NodeClient, TEST_CLUSTER_SECRET,
    TEST_GATEWAY_SECRET,
};
use checkraft_proto::ShardMap;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const ADMIN_TOKEN: &str = "multi-host-admin-token-0123456789";
const NODE_PORT: u16 = 7001;
const GATEWAY_PORT: u16 = 8081;
const HTTP_PORT: u16 = 8080;

/// The hosts: name and last address octet.
const HOSTS: [(&str, u8); 8] = [
    ("n1", 11),
    ("n2", 12),
    ("n3", 13),
    ("n4", 14),
    ("n5", 15),
    ("gw1", 21),
    ("gw2", 22),
    ("web", 30),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_over_namespaced_hosts_survives_kill_partition_and_restart() {
    let hosts = match Hosts::create(&HOSTS) {
        Ok(h) => h,
        Err(reason) => {
            eprintln!("SKIPPED: network namespaces cannot be created here ({reason})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run {
        hosts,
        dir: dir.path().to_path_buf(),
        procs: Vec::new(),
        relays: Vec::new(),
    };
    tokio::time::timeout(Duration::from_secs(90), test(&mut run))
        .await
        .expect("the multi-host test exceeded 90 s");
}

/// Everything the test started; dropped (processes killed, then the
/// namespaces removed) when the test ends.
struct Run {
    procs: Vec<Proc>,
    relays: Vec<DelayRelay>,
    dir: PathBuf,
    // Last: the namespaces go after the processes in them.
    hosts: Hosts,
}

struct Proc {
    name: String,
    host: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: tokio::process::Child,
}

impl Run {
    fn spawn(
        &mut self,
        name: &str,
        host: &str,
        program: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) {
        let child = self.start(name, host, program, &args, &env);
        self.procs.push(Proc {
            name: name.into(),
            host: host.into(),
            program: program.into(),
            args,
            env,
            child,
        });
    }

    fn start(
        &self,
        name: &str,
        host: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> tokio::process::Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        self.hosts
            .command(host, program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"))
    }

    fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == name).unwrap()
    }

    /// Sends `signal` to `name` and waits for it to exit.
    async fn stop(&mut self, name: &str, signal: Signal) {
        let p = self.proc(name);
        let pid = p.child.id().expect("running");
        kill(Pid::from_raw(pid as i32), signal).unwrap();
        tokio::time::timeout(Duration::from_secs(20), p.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit after {signal}"))
            .unwrap();
    }

    /// Starts `name` again with its first command line.
    fn restart(&mut self, name: &str) {
        let i = self.procs.iter().position(|p| p.name == name).unwrap();
        let p = &self.procs[i];
        let child = self.start(&p.name, &p.host, &p.program, &p.args, &p.env);
        self.procs[i].child = child;
    }
}

impl Drop for Run {
    /// On failure, the end of every process's log.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for p in &self.procs {
            let log = std::fs::read_to_string(self.dir.join(format!("{}.log", p.name)))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("----- {} (last 15 lines)", p.name);
            for l in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{l}");
            }
        }
    }
}

async fn ready(addr: &str) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    matches!(client.get(format!("http://{addr}/ready")).send().await, Ok(r) if r.status().is_success())
}

async fn wait_ready(addr: &str, what: &str) {
    let addr = addr.to_string();
    eventually(Duration::from_secs(40), what, || {
        let addr = addr.clone();
        async move { ready(&addr).await.then_some(()) }
    })
    .await;
}

async fn test(run: &mut Run) {
    let started = Instant::now();
    let at = |what: &str| println!("{:>5.1}s {what}", started.elapsed().as_secs_f64());
    let bin = bin_dir();
    let ips: std::collections::HashMap<&str, std::net::IpAddr> = HOSTS
        .iter()
        .map(|(name, _)| (*name, run.hosts.host(name).addr.into()))
        .collect();
    let addr = |host: &str, port: u16| SocketAddr::new(ips[host], port);

    // Relays: node i is advertised at the test's bridge address, port
    // R_i, relayed to its listen address with the link's delay.
    let mut advertised = Vec::new();
    for (i, host) in ["n1", "n2", "n3", "n4", "n5"].iter().enumerate() {
        let delay = if *host == "n3" {
            Duration::from_millis(30)
        } else {
            Duration::from_millis(1)
        };
        let listen = SocketAddr::new(run.hosts.gateway().into(), free_port());
        let relay = DelayRelay::start(listen, addr(host, NODE_PORT), delay)
            .await
            .expect("relay");
        advertised.push((i as u64 + 1, relay.addr.to_string()));
        run.relays.push(relay);
    }
    if let Err(e) = run.hosts.limit_rate("n3", "100mbit") {
        println!("(no tbf rate limit on n3: {e})");
    }
    let node_env = vec![
        (
            "CHECKRAFT_NODE_CLUSTER_SECRET".into(),
            TEST_CLUSTER_SECRET.into(),
        ),
        (
            "CHECKRAFT_NODE_GATEWAY_SECRET".into(),
            TEST_GATEWAY_SECRET.into(),
        ),
        ("CHECKRAFT_NODE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        // The final check compares the replicas the map names at the end:
        // the control plane must not move them meanwhile (rebalancing
        // has its own test, `repair`).
        ("CHECKRAFT_NODE_REBALANCE".into(), "false".into()),
    ];
    for (id, adv) in &advertised[..3] {
        let host = format!("n{id}");
        let listen = addr(&host, NODE_PORT).to_string();
        let data = run.dir.join(&host).display().to_string();
        let args = [
            "--id",
            &id.to_string(),
            "--listen",
            &listen,
            "--advertise",
            adv,
            "--data-dir",
            &data,
        ];
        let args = args.map(String::from).to_vec();
        run.spawn(
            &host,
            &host.clone(),
            &bin.join("checkraft-node"),
            args,
            node_env.clone(),
        );
    }
    for id in 1..=3u64 {
        wait_ready(
            &addr(&format!("n{id}"), NODE_PORT).to_string(),
            "a node ready",
        )
        .await;
    }
    at("3 nodes ready, each on its own host");

    let nodes_arg: Vec<String> = advertised[..3]
        .iter()
        .map(|(i, a)| format!("{i}={a}"))
        .collect();
    let init = tokio::process::Command::new(bin.join("raftctl"))
        .args([
            "--cluster",
            &advertised[0].1,
            "--token",
            ADMIN_TOKEN,
            "init",
            "--nodes",
        ])
        .arg(nodes_arg.join(","))
        .args(["--boxes", "40000", "--shards", "4", "--replicas", "3"])
        .env_remove("CHECKRAFT_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(
        init.status.success(),
        "raftctl init: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    at("initialized through the advertised (relayed) addresses");

    let map: ShardMap = reqwest::Client::new()
        .get(format!("http://{}/meta/map", addr("n1", NODE_PORT)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (id, adv) in &advertised[..3] {
        let listen = addr(&format!("n{id}"), NODE_PORT).to_string();
        let in_map = map.addr(*id).expect("node in map");
        assert_eq!(in_map, adv, "the map holds node {id}'s advertised address");
        assert_ne!(in_map, listen, "not its listen address");
    }

    // Gateways, each on its own host, following the nodes through the
    // relays; Caddy on a third host in front of both.
    let web = ips["web"];
    let seeds: Vec<&str> = advertised[..3].iter().map(|(_, a)| a.as_str()).collect();
    let gateway_env = vec![
        (
            "CHECKRAFT_GATEWAY_GATEWAY_SECRET".to_string(),
            TEST_GATEWAY_SECRET.to_string(),
        ),
        (
            "CHECKRAFT_GATEWAY_TRUSTED_PROXIES".into(),
            format!("[\"{web}\"]"),
        ),
        (
            "CHECKRAFT_GATEWAY_HTTP_SETS_PER_SECOND".into(),
            "1000000".into(),
        ),
        ("CHECKRAFT_GATEWAY_HTTP_SETS_BURST".into(), "1000000".into()),
    ];
    let mut gateways = Vec::new();
    for id in 1..=2u64 {
        let host = format!("gw{id}");
        let listen = addr(&host, GATEWAY_PORT).to_string();
        let args = [
            "--id",
            &id.to_string(),
            "--listen",
            &listen,
            "--cluster",
            &seeds.join(","),
        ];
        let args = args.map(String::from).to_vec();
        run.spawn(
            &host,
            &host.clone(),
            &bin.join("checkraft-gateway"),
            args,
            gateway_env.clone(),
        );
        gateways.push(listen);
    }
    for gw in &gateways {
        wait_ready(gw, "a gateway ready").await;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let caddy_home = run.dir.join("caddy").display().to_string();
    let caddy_env = vec![
        ("CHECKRAFT_HTTP_PORT".to_string(), HTTP_PORT.to_string()),
        ("CHECKRAFT_BIND".into(), web.to_string()),
        ("CHECKRAFT_GATEWAYS".into(), gateways.join(" ")),
        (
            "CHECKRAFT_ASSETS".into(),
            repo.join("assets").display().to_string(),
        ),
        ("XDG_DATA_HOME".into(), caddy_home.clone()),
        ("XDG_CONFIG_HOME".into(), caddy_home),
    ];
    let caddyfile = repo.join("Caddyfile").display().to_string();
    let caddy = which("caddy").expect("caddy is not installed: integration/run-tests installs it");
    let args = ["run", "--config", &caddyfile, "--adapter", "caddyfile"];
    run.spawn(
        "caddy",
        "web",
        &caddy,
        args.map(String::from).to_vec(),
        caddy_env,
    );
    let front = format!("{web}:{HTTP_PORT}");
    let health = format!("http://{front}/health");
    eventually(Duration::from_secs(30), "Caddy to proxy /health", || {
        let health = health.clone();
        async move {
            let r = reqwest::get(&health).await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    at("2 gateways and Caddy serving");

    // The remote node's relay really adds its latency: 30 ms each way.
    let via_relay = Instant::now();
    let health = reqwest::get(format!("http://{}/health", advertised[2].1)).await;
    let remote_rtt = via_relay.elapsed();
    assert!(health.is_ok_and(|r| r.status().is_success()));
    assert!(
        remote_rtt >= Duration::from_millis(60),
        "a request through the remote node's relay took {remote_rtt:?}"
    );

    let history = Arc::new(History::new());
    let workload = PutWorkload::start(history.clone(), &map, std::slice::from_ref(&front), 2, 0);
    let progress = |w: &PutWorkload, what: &str| {
        println!(
            "{:>5.1}s {what}: {} writes acknowledged of {} sent",
            started.elapsed().as_secs_f64(),
            w.acked(),
            w.attempted()
        )
    };
    assert!(
        workload.wait_for_acks(100, Duration::from_secs(20)).await,
        "writes through Caddy get going"
    );
    progress(&workload, "workload running");

    // kill -9 of node 1's host processes, then its restart.
    let killed = Instant::now();
    run.stop("n1", Signal::SIGKILL).await;
    progress(&workload, "node 1 killed (SIGKILL)");
    every_shard_acked_since(&history, &map, killed, "with node 1 dead").await;
    progress(
        &workload,
        "every shard acknowledged writes with node 1 dead",
    );
    run.restart("n1");
    wait_ready(
        &addr("n1", NODE_PORT).to_string(),
        "node 1 ready after its restart",
    )
    .await;
    progress(&workload, "node 1 restarted and ready");

    // A partition: host 2's link goes down, then comes back.
    let cut = Instant::now();
    run.hosts.cut("n2");
    assert!(
        !ready(&addr("n2", NODE_PORT).to_string()).await,
        "host n2 is unreachable once cut"
    );
    progress(&workload, "host n2 cut off");
    every_shard_acked_since(&history, &map, cut, "with host n2 cut off").await;
    progress(
        &workload,
        "every shard acknowledged writes with host n2 cut off",
    );
    run.hosts.heal("n2");
    wait_ready(
        &addr("n2", NODE_PORT).to_string(),
        "node 2 ready after the heal",
    )
    .await;
    progress(&workload, "host n2 healed, node 2 ready");

    // A clean restart of the remote node.
    run.stop("n3", Signal::SIGTERM).await;
    run.restart("n3");
    wait_ready(
        &addr("n3", NODE_PORT).to_string(),
        "node 3 ready after its restart",
    )
    .await;
    assert!(
        workload.wait_for_acks(100, Duration::from_secs(20)).await,
        "writes go on after node 3's restart"
    );
    progress(&workload, "node 3 restarted and ready");

    // Growing to five hosts, then replacing a dead one (docs/deploy.md): a
    // new host's node starts without an id and is added; host 3 dies for
    // good, and `node remove 3` moves its replicas to the new nodes, all
    // under writes.
    let admin = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(bin.join("raftctl"));
        cmd.args(["--cluster", &advertised[0].1, "--token", ADMIN_TOKEN])
            .args(args)
            .env_remove("CHECKRAFT_TOKEN");
        cmd
    };
    for id in [4u64, 5] {
        let host = format!("n{id}");
        let listen = addr(&host, NODE_PORT).to_string();
        let data = run.dir.join(&host).display().to_string();
        let adv = &advertised[id as usize - 1].1;
        let args = ["--listen", &listen, "--advertise", adv, "--data-dir", &data];
        let args = args.map(String::from).to_vec();
        run.spawn(
            &host,
            &host.clone(),
            &bin.join("checkraft-node"),
            args,
            node_env.clone(),
        );
        wait_ready(&listen, "the new node to answer").await;
        let added = admin(&["node", "add", adv]).output().await.unwrap();
        assert!(
            added.status.success(),
            "node add: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&added.stdout).trim(),
            id.to_string()
        );
        progress(&workload, &format!("host {host}'s node added as node {id}"));
    }
    // (Killed, not cut off: calls to it fail at once rather than after a
    // connect timeout each, which keeps the test short; `node remove`
    // works either way.)
    run.stop("n3", Signal::SIGKILL).await;
    progress(&workload, "host n3 dead (node 3 killed)");
    // As an operator would (`raftctl status`): replace the host once its
    // groups have elected other leaders. (`node remove` started while a
    // group still names the dead leader stops part-way with a 409, and
    // must be run again.)
    let survivors =
        [1u64, 2].map(|id| NodeClient::new(&addr(&format!("n{id}"), NODE_PORT).to_string()));
    eventually(
        Duration::from_secs(30),
        "every group to lead from a live node",
        || {
            let survivors = survivors.clone();
            async move {
                for client in &survivors {
                    let status = client.status().await.ok()?;
                    if status
                        .groups
                        .values()
                        .any(|g| matches!(g.leader, None | Some(3)))
                    {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    let removing = Instant::now();
    let removed = admin(&["node", "remove", "3"]).output().await.unwrap();
    println!(
        "raftctl node remove 3 ({:.1}s):\n{}{}",
        removing.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&removed.stdout),
        String::from_utf8_lossy(&removed.stderr)
    );
    assert!(
        removed.status.success(),
        "node remove 3: {}{}",
        String::from_utf8_lossy(&removed.stdout),
        String::from_utf8_lossy(&removed.stderr)
    );
    assert!(
        workload.wait_for_acks(100, Duration::from_secs(20)).await,
        "writes go on after node 3's replacement"
    );
    progress(&workload, "node 3 removed, its replicas on nodes 4 and 5");
    let map: ShardMap = reqwest::Client::new()
        .get(format!("http://{}/meta/map", addr("n1", NODE_PORT)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (shard, record) in &map.shards {
        assert!(
            !record.replicas.contains(&3) && record.replicas.iter().any(|r| *r >= 4),
            "shard {shard} replicas: {:?}",
            record.replicas
        );
    }
    assert_eq!(map.addr(4), Some(advertised[3].1.as_str()));
    assert_eq!(map.addr(5), Some(advertised[4].1.as_str()));

    workload.stop().await;
    let replicas: Vec<(u64, NodeClient)> = [1, 2, 4, 5u64]
        .into_iter()
        .map(|id| {
            (
                id,
                NodeClient::new(&addr(&format!("n{id}"), NODE_PORT).to_string()),
            )
        })
        .collect();
    let report = final_check(&history, &map, &replicas, Duration::from_secs(30)).await;
    let writes = history.writes();
    let acked = writes.iter().filter(|w| w.outcome.acked()).count();
    at(&format!(
        "checked: {} writes, {acked} acknowledged, replicas of {} shards compared",
        writes.len(),
        map.shards.len()
    ));
    assert!(report.ok(), "{}", report.summary(20));
}

/// Waits (up to 20 s) until every shard of `map` has a write
/// acknowledged after `since`: each fails over, not only the shards the
/// fault left alone.
async fn every_shard_acked_since(history: &History, map: &ShardMap, since: Instant, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let writes = history.writes();
        let waiting: Vec<u64> = map
            .shards
            .keys()
            .copied()
            .filter(|s| {
                !writes
                    .iter()
                    .any(|w| w.shard == *s && w.outcome.acked() && w.completed > since)
            })
            .collect();
        if waiting.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "shards {waiting:?} acknowledged no write within 20 s {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
