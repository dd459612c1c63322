//! Child processes of a local cluster: spawning with a log file, waiting
//! for `/health`, starting one again, killing one, and stopping them all.
//!
//! Shared by `raftctl up` and `raftctl bench`. Children run in their own
//! process group (a terminal's Ctrl-C reaches only raftctl, which then
//! stops them in order) and, on Linux, get SIGTERM from the kernel should
//! raftctl itself die.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::credentials::Credentials;

/// How long a child may take to answer `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the children get to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// `down_after_ms` of the nodes of a local cluster.
const LOCAL_DOWN_AFTER_MS: &str = "20000";

/// Binary `name` next to this executable, else on `PATH`.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the raftctl executable")?;
    let beside = exe.parent().map(|d| d.join(name)).filter(|p| p.is_file());
    beside.or_else(|| on_path(name)).ok_or_else(|| {
        anyhow!(
            "{name} was found neither next to {} nor on PATH: build it with \
             `cargo build --release --bins` (without --release for a debug raftctl)",
            exe.display()
        )
    })
}

/// `name` on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One process in `cluster.json`.
#[derive(Debug, Serialize)]
pub struct ProcessInfo {
    /// `node`, `gateway` or `caddy`.
    pub role: &'static str,
    /// The id within its role.
    pub id: u64,
    /// Where it listens, `HOST:PORT`.
    pub addr: String,
    /// Its process id; `null` while it is not running.
    pub pid: Option<u32>,
    /// `running`, `restarting` (it died; `up` starts it again after a
    /// backoff), `stopping` or `stopped` (by `raftctl node stop`).
    pub state: &'static str,
    /// How many times `up` has restarted it.
    pub restarts: u32,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    /// The command line it was started with.
    pub command: Vec<String>,
}

/// One running child: a node or the gateway.
pub struct ChildProcess {
    /// See [`ProcessInfo::role`].
    pub role: &'static str,
    /// See [`ProcessInfo::id`].
    pub id: u64,
    /// See [`ProcessInfo::addr`].
    pub addr: String,
    /// See [`ProcessInfo::log`].
    pub log: PathBuf,
    /// See [`ProcessInfo::command`].
    pub command: Vec<String>,
    /// The environment it was started with, besides raftctl's own (kept
    /// so that [`Supervisor::respawn`] starts it the same way).
    pub env: Vec<(String, String)>,
    /// The process (running, or exited and not yet restarted).
    pub child: tokio::process::Child,
}

impl ChildProcess {
    /// What `cluster.json` says of it.
    pub fn describe(&self) -> ProcessInfo {
        ProcessInfo {
            role: self.role,
            id: self.id,
            addr: self.addr.clone(),
            pid: self.child.id(),
            state: "running",
            restarts: 0,
            log: self.log.clone(),
            command: self.command.clone(),
        }
    }
}

/// The child processes.
#[derive(Default)]
pub struct Supervisor {
    pub children: Vec<ChildProcess>,
}

impl Supervisor {
    /// Starts `binary args` as the `role` with `id`, listening on `addr`,
    /// logging to `<data>/<role>-<id>.log`.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &mut self,
        binary: &Path,
        role: &'static str,
        id: u64,
        addr: &str,
        data: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<()> {
        let log = data.join(format!("{role}-{id}.log"));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = start_process(binary, args, &env, &log)?;
        let command = std::iter::once(binary.display().to_string())
            .chain(args.iter().cloned())
            .collect();
        self.children.push(ChildProcess {
            role,
            id,
            addr: addr.to_string(),
            log,
            command,
            env,
            child,
        });
        Ok(())
    }

    /// Starts `children[at]` again, with the command line and environment
    /// it was first started with (its log is appended to). The old process
    /// must have exited. Returns the new pid.
    pub fn respawn(&mut self, at: usize) -> Result<u32> {
        let c = &mut self.children[at];
        let (binary, args) = c
            .command
            .split_first()
            .ok_or_else(|| anyhow!("{} {} has no command line", c.role, c.id))?;
        c.child = start_process(Path::new(binary), args, &c.env, &c.log)?;
        Ok(c.child.id().unwrap_or(0))
    }

    /// Starts `checkraft-node` `id` on `addr` with its data in
    /// `<dir>/node-<id>` and the cluster's `credentials`, plus `env`.
    pub fn spawn_node(
        &mut self,
        binary: &Path,
        id: u64,
        addr: &str,
        dir: &Path,
        credentials: &Credentials,
        env: &[(&str, &str)],
    ) -> Result<()> {
        let data = dir.join(format!("node-{id}")).display().to_string();
        let args = [
            "--id",
            &id.to_string(),
            "--listen",
            addr,
            "--data-dir",
            &data,
        ]
        .map(String::from);
        // A local cluster calls a silent node down after 20 s (production
        // default: 5 min), so that `up` shows repairs; `--node-env` may
        // override it.
        let mut env_all = vec![("CHECKRAFT_NODE_DOWN_AFTER_MS", LOCAL_DOWN_AFTER_MS)];
        env_all.extend(env.iter().copied());
        env_all.extend(credentials.node_env());
        self.spawn(binary, "node", id, addr, dir, &args, &env_all)
    }

    /// Starts `checkraft-gateway` `id` on `addr`, following the nodes
    /// `seeds` (`HOST:PORT`s), with the gateway secret of `credentials`
    /// and `env`.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_gateway(
        &mut self,
        binary: &Path,
        id: u64,
        addr: &str,
        dir: &Path,
        seeds: &[&str],
        credentials: &Credentials,
        env: &[(&str, &str)],
    ) -> Result<()> {
        let args = [
            "--id",
            &id.to_string(),
            "--listen",
            addr,
            "--cluster",
            &seeds.join(","),
        ]
        .map(String::from);
        let mut env = env.to_vec();
        env.extend(credentials.gateway_env());
        self.spawn(binary, "gateway", id, addr, dir, &args, &env)
    }

    /// Waits (bounded) until every node answers `/health`; fails early if
    /// one exits.
    pub async fn wait_healthy(&mut self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        for node in &mut self.children {
            loop {
                if let Some(status) = node.child.try_wait()? {
                    bail!(
                        "{} {} exited while starting ({status}); its log {} ends with:\n{}",
                        node.role,
                        node.id,
                        node.log.display(),
                        log_tail(&node.log, 20)
                    );
                }
                let health = http
                    .get(format!("http://{}/health", node.addr))
                    .send()
                    .await;
                if health.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{} {} at {} did not answer /health within {}s; see {}",
                        node.role,
                        node.id,
                        node.addr,
                        HEALTH_TIMEOUT.as_secs(),
                        node.log.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Kills `role` `id` with SIGKILL (no clean shutdown: the chaos
    /// case), waits for it, and forgets it. Returns its command line, so
    /// that the caller can start it again with [`Self::spawn`].
    pub async fn kill_hard(&mut self, role: &str, id: u64) -> Result<Vec<String>> {
        let at = self
            .children
            .iter()
            .position(|c| c.role == role && c.id == id)
            .ok_or_else(|| anyhow!("no running {role} {id}"))?;
        let mut victim = self.children.remove(at);
        victim
            .child
            .kill()
            .await
            .with_context(|| format!("killing {role} {id}"))?;
        Ok(victim.command)
    }

    /// Stops every node: SIGTERM, then SIGKILL for any still running after
    /// [`STOP_TIMEOUT`].
    pub async fn stop(&mut self) {
        for node in &self.children {
            if let Some(pid) = node.child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for node in &mut self.children {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, node.child.wait()).await.is_err() {
                eprintln!(
                    "{} {} did not stop within {}s: killing it",
                    node.role,
                    node.id,
                    STOP_TIMEOUT.as_secs()
                );
                let _ = node.child.kill().await;
            }
        }
    }
}

/// Spawns `binary args` with `env` added, stdout and stderr appended to
/// `log`, in its own process group, dying with raftctl.
fn start_process(
    binary: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Result<tokio::process::Child> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .process_group(0);
    die_with_parent(&mut cmd);
    cmd.spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

pub(crate) fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("status unknown: {e}"),
    }
}

/// On Linux, has the kernel send the node SIGTERM if raftctl dies without
/// stopping it (even by SIGKILL).
#[cfg(target_os = "linux")]
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes the prctl(PR_SET_PDEATHSIG) system call, which is
    // async-signal-safe. The parent-death signal follows the thread that
    // forked; `up` and `bench` spawn from the main thread (their futures
    // run in `block_on`, not in spawned tasks), which lives as long as
    // raftctl.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_parent(_cmd: &mut tokio::process::Command) {}
