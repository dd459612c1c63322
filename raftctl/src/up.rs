//! `raftctl up`: a local cluster, its gateways and the page, in the
//! foreground.
//!
//! Starts `checkraft-node` `--nodes` times (default 3; ids 1..=N on
//! `127.0.0.1:PORT..`,
//! data under `<data-dir>/node-<id>`, logs in `<data-dir>/node-<id>.log`,
//! the admin token, cluster secret and gateway secret from `<data-dir>/token`,
//! `cluster-secret` and `gateway-secret`, created on first use), initializes
//! the cluster on first start (a data dir that already holds one keeps
//! it), then starts `--gateways` `checkraft-gateway`s on `--gateway-port`
//! and the ports after it (logs `<data-dir>/gateway-<id>.log`). Each has
//! its own `ws://` URL as `public_endpoint`, so it registers with the
//! metadata leader and every gateway offers all of them in `/config.json`
//! (the live registry; `up` waits, bounded, until gateway 1 lists them
//! all). When `caddy`
//! is on `PATH` (and not `--no-caddy`), Caddy runs the repository's
//! `Caddyfile` on `--http-port`: it serves `assets/` and proxies to the
//! gateways, which trust its `X-Forwarded-For`. Without Caddy the gateways
//! serve `assets/` themselves. It writes `<data-dir>/cluster.json`
//! describing the processes (pid, state, restarts) and the page's URL.
//!
//! Then it supervises ([`crate::keeper`]): a child that dies on its own is
//! logged and restarted with backoff while the rest keep running, and
//! `cluster.json` always lists the current pids. `raftctl node stop|start
//! ID` reach it through the control socket `<data-dir>/up.sock`
//! ([`crate::control`]). On SIGINT or SIGTERM it stops every process
//! (SIGTERM, then SIGKILL after 10 s) and exits 0. Children run in their
//! own process group (a terminal's Ctrl-C reaches only raftctl, which then
//! stops them in order) and, on Linux, get SIGTERM from the kernel should
//! raftctl itself die.
//!
//! Of the global options only `--json` applies (it prints the
//! `cluster.json` content instead of prose): the nodes are local, and the
//! token is always the data dir's.
//!
//! Scheduled backups are on: every node gets `backup_dir =
//! <data-dir>/backups` (one directory, shared by all nodes, so whichever
//! node leads the metadata group writes there) and a backup every
//! [`BACKUP_INTERVAL_MS`] (5 minutes), keeping the default 24. `raftctl
//! backup list` shows them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use checkraft_proto::{NodeState, ShardMap, META_GROUP};
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{Global, InitArgs, UpArgs};
use crate::client::ClusterClient;
use crate::commands::init_cluster;
use crate::control::ControlSocket;
use crate::credentials::{Credentials, TOKEN_FILE};
use crate::keeper::Keeper;
use crate::supervisor::{find_binary, on_path, ChildProcess, ProcessInfo, Supervisor};

/// The scheduled backup interval of a local cluster, in ms: short enough
/// to see backups appear, long enough not to fill the disk (24 are kept).
pub const BACKUP_INTERVAL_MS: &str = "300000";

/// Most replicas a shard gets (fewer with fewer nodes).
const MAX_REPLICAS: u16 = 3;
/// The node binary's name.
const NODE_BINARY: &str = "checkraft-node";
/// The gateway binary's name.
const GATEWAY_BINARY: &str = "checkraft-gateway";
/// How long an existing cluster may take to serve its map after a restart.
const MAP_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunk size of a grid created by `up`.
const CHUNK_SIZE: u32 = 4096;

/// `raftctl up`.
pub async fn run(args: UpArgs, global: Global) -> Result<()> {
    let mut signals = Signals::install()?;
    let data = DataDir::prepare(&args)?;
    let control = ControlSocket::bind(data.path()).await?;
    let credentials = Credentials::load_or_create(data.path())?;
    let binaries = (find_binary(NODE_BINARY)?, find_binary(GATEWAY_BINARY)?);
    let mut nodes = Supervisor::default();
    let started = tokio::select! {
        started = start(&mut nodes, &args, &data, &binaries, &credentials) => started.map(Some),
        name = signals.recv() => {
            eprintln!("received {name} while starting: stopping");
            Ok(None)
        }
    };
    let outcome = match started {
        Ok(Some(mut descriptor)) => {
            announce(&descriptor, &args, data.path(), global.json)?;
            Keeper::new(&mut nodes, &mut descriptor)
                .run(&mut signals, &control)
                .await
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    nodes.stop().await;
    drop(control);
    if let DataDir::Temp(dir) = data {
        let path = dir.path().to_path_buf();
        dir.close()
            .with_context(|| format!("removing the temporary data dir {}", path.display()))?;
    }
    outcome
}

/// Spawns the nodes, waits for them, initializes or keeps the cluster,
/// and writes `cluster.json`.
async fn start(
    nodes: &mut Supervisor,
    args: &UpArgs,
    data: &DataDir,
    (node_binary, gateway_binary): &(PathBuf, PathBuf),
    credentials: &Credentials,
) -> Result<ClusterFile> {
    let count = args.nodes;
    if args.port.checked_add(count - 1).is_none() {
        bail!(
            "--port {} leaves no room for {count} consecutive ports",
            args.port
        );
    }
    let specs: Vec<(u64, String)> = (0..count)
        .map(|i| (u64::from(i) + 1, format!("127.0.0.1:{}", args.port + i)))
        .collect();
    let gateway_addrs: Vec<String> = (0..args.gateways)
        .map(|i| {
            args.gateway_port
                .checked_add(i)
                .map(|p| format!("127.0.0.1:{p}"))
                .ok_or_else(|| {
                    anyhow!(
                        "--gateway-port {} leaves no room for {} gateways",
                        args.gateway_port,
                        args.gateways
                    )
                })
        })
        .collect::<Result<_>>()?;
    let front = Front::find(args)?;
    let http_addr = format!("127.0.0.1:{}", args.http_port);
    let mut addrs: Vec<&String> = specs.iter().map(|(_, a)| a).chain(&gateway_addrs).collect();
    if front.caddy.is_some() {
        addrs.push(&http_addr);
    }
    for addr in addrs {
        std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "port {addr} is in use (another `raftctl up` running?); stop it or pick \
                 other ports (--port, --gateway-port, --http-port)"
            )
        })?;
    }
    let backup_dir = data.path().join("backups").display().to_string();
    let backup_env = [
        ("CHECKRAFT_NODE_BACKUP_DIR", backup_dir.as_str()),
        ("CHECKRAFT_NODE_BACKUP_INTERVAL_MS", BACKUP_INTERVAL_MS),
    ];
    for (id, addr) in &specs {
        nodes.spawn_node(
            node_binary,
            *id,
            addr,
            data.path(),
            credentials,
            &backup_env,
        )?;
    }
    nodes.wait_healthy().await?;
    let client = ClusterClient::new(&specs[0].1, Some(credentials.admin_token.clone()));
    ensure_initialized(&client, &specs, args).await?;
    // The gateways read the map from the nodes, so they start after them.
    let seeds: Vec<&str> = specs.iter().map(|(_, a)| a.as_str()).collect();
    let endpoints: Vec<String> = gateway_addrs
        .iter()
        .map(|a| format!("ws://{a}/ws"))
        .collect();
    let assets = front.assets.display().to_string();
    // The page (Caddy's, or the first gateway's with --no-caddy) opens
    // websockets to the gateways' own ws:// URLs from /config.json: a
    // cross-origin request for every gateway but the one serving the page,
    // so they list the page's origin, as the browser may spell it.
    let page_port = match &front.caddy {
        Some(_) => args.http_port,
        None => args.gateway_port,
    };
    let page_origins = serde_json::to_string(&[
        format!("http://127.0.0.1:{page_port}"),
        format!("http://localhost:{page_port}"),
    ])?;
    let mut env = vec![("CHECKRAFT_GATEWAY_PAGE_ORIGINS", page_origins.as_str())];
    if front.caddy.is_some() {
        env.push(("CHECKRAFT_GATEWAY_TRUSTED_PROXIES", "[\"127.0.0.1\"]"));
    } else {
        env.push(("CHECKRAFT_GATEWAY_ASSETS_DIR", assets.as_str()));
    }
    for (i, (addr, endpoint)) in gateway_addrs.iter().zip(&endpoints).enumerate() {
        let id = i as u64 + 1;
        // Each registers its own URL; /config.json lists the registry's.
        let mut env = env.clone();
        env.push(("CHECKRAFT_GATEWAY_PUBLIC_ENDPOINT", endpoint.as_str()));
        nodes.spawn_gateway(
            gateway_binary,
            id,
            addr,
            data.path(),
            &seeds,
            credentials,
            &env,
        )?;
    }
    if let Some((caddy, caddyfile)) = &front.caddy {
        let caddy_home = data.path().join("caddy").display().to_string();
        let port = args.http_port.to_string();
        let caddy_args = [
            "run",
            "--config",
            &caddyfile.display().to_string(),
            "--adapter",
            "caddyfile",
        ]
        .map(String::from);
        // The page reads chunks straight from the gateways too (client
        // routing); the CSP must allow their origins.
        let connect_src: Vec<String> = gateway_addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect();
        let env = [
            ("CHECKRAFT_HTTP_PORT", port.as_str()),
            ("CHECKRAFT_BIND", "127.0.0.1"),
            ("CHECKRAFT_GATEWAYS", &gateway_addrs.join(" ")),
            ("CHECKRAFT_CONNECT_SRC", &connect_src.join(" ")),
            ("CHECKRAFT_ASSETS", assets.as_str()),
            ("XDG_DATA_HOME", caddy_home.as_str()),
            ("XDG_CONFIG_HOME", caddy_home.as_str()),
        ];
        nodes.spawn(
            caddy,
            "caddy",
            1,
            &http_addr,
            data.path(),
            &caddy_args,
            &env,
        )?;
    }
    nodes.wait_healthy().await?;
    if let Some(first) = gateway_addrs.first() {
        wait_registered(first, &endpoints).await;
    }
    let page = if front.caddy.is_some() {
        &http_addr
    } else {
        &gateway_addrs[0]
    };
    let descriptor = ClusterFile {
        page_url: format!("http://{page}/"),
        data_dir: data.path().to_path_buf(),
        token_file: data.path().join(TOKEN_FILE),
        control_socket: data.path().join(crate::control::SOCKET),
        processes: nodes.children.iter().map(ChildProcess::describe).collect(),
    };
    descriptor.write()?;
    Ok(descriptor)
}

/// Keeps the cluster this data dir holds, or initializes a new one.
async fn ensure_initialized(
    client: &ClusterClient,
    specs: &[(u64, String)],
    args: &UpArgs,
) -> Result<()> {
    if let Some(map) = existing_map(client).await? {
        let members: Vec<u64> = map
            .nodes
            .values()
            .filter(|n| n.state != NodeState::Removed)
            .map(|n| n.id)
            .collect();
        let started: Vec<u64> = specs.iter().map(|(id, _)| *id).collect();
        if members != started {
            let hint = if members.iter().copied().eq(1..=members.len() as u64) {
                format!("run `raftctl up --nodes {}` on it", members.len())
            } else {
                "`up` runs nodes 1..=N only".to_string()
            };
            bail!(
                "the cluster in this data dir has nodes {members:?}, but --nodes {} \
                 starts {started:?}: {hint}, or use another --data-dir",
                args.nodes
            );
        }
        eprintln!(
            "keeping the existing cluster: map version {}, {} shards",
            map.version,
            map.shards.len()
        );
        return Ok(());
    }
    let init = InitArgs {
        nodes: specs
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect(),
        boxes: args.boxes,
        shards: args.shards,
        replicas: usize::from(args.nodes.min(MAX_REPLICAS)),
        chunk_size: CHUNK_SIZE,
    };
    let report = init_cluster(client, &init)
        .await
        .context("initializing the cluster")?;
    eprintln!(
        "initialized: {} boxes in {} shards (map version {})",
        report.grid.boxes,
        report.shards.len(),
        report.version
    );
    Ok(())
}

/// The initialized map of a cluster this data dir already holds. A node
/// hosting the metadata group gets time to elect a leader and serve it;
/// `None` means a fresh cluster (or an interrupted `init`, which
/// `init_cluster` resumes).
/// Waits (at most 10 s) until the gateway at `gateway` lists every one of
/// `endpoints` in its `/config.json`, i.e. every gateway has registered
/// with the metadata leader; warns and goes on when they do not.
async fn wait_registered(gateway: &str, endpoints: &[String]) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client with static settings");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listed = Vec::new();
    while Instant::now() < deadline {
        let answer = http
            .get(format!("http://{gateway}/config.json"))
            .send()
            .await;
        if let Ok(resp) = answer {
            if let Ok(config) = resp.json::<serde_json::Value>().await {
                listed = config["endpoints"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| e.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                if endpoints.iter().all(|e| listed.contains(e)) {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "warning: the gateway registry lists {listed:?}, not every gateway yet ({endpoints:?}); \
         the page offers those for now"
    );
}

async fn existing_map(client: &ClusterClient) -> Result<Option<ShardMap>> {
    let status = client.node_status(&client.entry).await?;
    if !status.groups.contains_key(&META_GROUP) {
        return Ok(None);
    }
    let deadline = Instant::now() + MAP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(map) = client.map().await {
            if map.initialized() {
                return Ok(Some(map));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(None)
}

/// Tells the operator what runs where.
fn announce(descriptor: &ClusterFile, args: &UpArgs, data: &Path, json: bool) -> Result<()> {
    if json {
        out(serde_json::to_string_pretty(descriptor)?);
        return Ok(());
    }
    out(format!("checkraft is up: {} nodes", args.nodes));
    for p in &descriptor.processes {
        out(format!(
            "  {} {}: http://{}  (pid {}, log {})",
            p.role,
            p.id,
            p.addr,
            p.pid.unwrap_or(0),
            p.log.display()
        ));
    }
    out(format!("admin token: {}", descriptor.token_file.display()));
    out(format!("try: {}", status_hint(args, data)));
    out(format!(
        "open the grid: {}  (no JavaScript: {}nojs)",
        descriptor.page_url, descriptor.page_url
    ));
    let default_dir = std::env::current_dir()
        .ok()
        .and_then(|d| d.join("data").canonicalize().ok());
    let dir = if default_dir.as_deref() == Some(data) {
        String::new()
    } else {
        format!(" --data-dir {}", data.display())
    };
    out(format!(
        "a node down and back (up restarts crashed ones by itself): \
         raftctl node stop 2{dir}, then raftctl node start 2{dir}"
    ));
    out("Ctrl-C to stop");
    Ok(())
}

/// The `raftctl status` command line that reaches this cluster.
fn status_hint(args: &UpArgs, data: &Path) -> String {
    let mut hint = "raftctl".to_string();
    if args.port != 7001 {
        hint += &format!(" --cluster 127.0.0.1:{}", args.port);
    }
    let default_dir = std::env::current_dir()
        .ok()
        .and_then(|d| d.join("data").canonicalize().ok());
    if default_dir.as_deref() != Some(data) {
        hint = format!(
            "CHECKRAFT_TOKEN=$(cat {}) {hint}",
            data.join(TOKEN_FILE).display()
        );
    }
    hint + " status"
}

// -------------------------------------------------------------- signals

/// SIGINT and SIGTERM listeners.
pub(crate) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Completes with the signal's name when one arrives.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

// ------------------------------------------------------------ the page

/// What serves the page: the static files, and Caddy when it is used.
struct Front {
    /// The page's static files (`assets/`).
    assets: PathBuf,
    /// The `caddy` binary and the repository's `Caddyfile`, unless Caddy
    /// is missing or turned off (then the gateways serve `assets`).
    caddy: Option<(PathBuf, PathBuf)>,
}

impl Front {
    /// Finds `assets/` (`--assets`, else in the current directory or an
    /// ancestor, else in the source tree raftctl was built from), the
    /// `Caddyfile` beside it, and `caddy` on `PATH`.
    fn find(args: &UpArgs) -> Result<Self> {
        let assets = match &args.assets {
            Some(dir) => dir.clone(),
            None => {
                let cwd = std::env::current_dir().context("reading the current directory")?;
                let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
                cwd.ancestors()
                    .map(Path::to_path_buf)
                    .chain([built_from])
                    .map(|root| root.join("assets"))
                    .find(|a| a.join("index.html").is_file())
                    .ok_or_else(|| {
                        anyhow!(
                            "the page's files (assets/index.html) were not found; run from \
                             the repository or pass --assets"
                        )
                    })?
            }
        };
        if !assets.join("index.html").is_file() {
            bail!("{} holds no index.html", assets.display());
        }
        let assets = assets.canonicalize()?;
        let caddyfile = assets.parent().map(|root| root.join("Caddyfile"));
        let caddy = match (args.no_caddy, on_path("caddy"), caddyfile) {
            (false, Some(caddy), Some(file)) if file.is_file() => Some((caddy, file)),
            _ => None,
        };
        Ok(Self { assets, caddy })
    }
}

// ------------------------------------------------------- data and token

/// The data directory: kept, or temporary (deleted on exit).
enum DataDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl DataDir {
    fn prepare(args: &UpArgs) -> Result<Self> {
        if args.ephemeral {
            let dir = tempfile::Builder::new()
                .prefix("checkraft-up-")
                .tempdir()
                .context("creating a temporary data dir")?;
            return Ok(Self::Temp(dir));
        }
        let dir = &args.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data dir {}", dir.display()))?;
        Ok(Self::Kept(dir.canonicalize()?))
    }

    fn path(&self) -> &Path {
        match self {
            Self::Kept(p) => p,
            Self::Temp(t) => t.path(),
        }
    }
}

/// panicking (which would skip stopping the nodes in order).
fn out(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

// ------------------------------------------------------------ processes

/// `<data-dir>/cluster.json`: rewritten whenever a process changes.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterFile {
    /// Where a browser opens the grid: Caddy, or the first gateway.
    pub page_url: String,
    /// The data dir (nodes' data, logs, secrets).
    pub data_dir: PathBuf,
    /// The admin token's file.
    pub token_file: PathBuf,
    /// Where `raftctl node stop|start` reach this `up`.
    pub control_socket: PathBuf,
    /// Every process, with its current pid.
    pub processes: Vec<ProcessInfo>,
}

impl ClusterFile {
    /// Writes it to `<data_dir>/cluster.json` (through a temporary file and
    /// a rename, so that a reader never sees half of it).
    pub fn write(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        let path = self.data_dir.join(CLUSTER_FILE);
        let tmp = self.data_dir.join(".cluster.json.tmp");
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The name of the file describing a running `up`, in its data dir.
pub(crate) const CLUSTER_FILE: &str = "cluster.json";

#[cfg(test)]
mod tests {
    use crate::supervisor::log_tail;

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&log, 2), "b\nc");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }
}
