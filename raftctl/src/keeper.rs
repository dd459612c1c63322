//! The restart loop of `raftctl up`: keeps every child running.
//!
//! Every [`TICK`], [`Keeper`] checks its children. One that died on its
//! own (a crash, `kill -9`, a node exiting after a full disk) is logged
//! with the end of its log and started again with the same command line
//! after a backoff ([`backoff`]: 0.5 s, doubling to 15 s while it keeps
//! dying within [`STABLE`] of its start); the others keep running.
//! Requests on the control socket ([`crate::control`]) stop a process
//! (SIGTERM, SIGKILL after [`STOP_TIMEOUT`]) and keep it stopped, or
//! start it again. After every change, `cluster.json` is rewritten with
//! each process's current pid and state.

use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::control::{Connection, ControlSocket, Reply, Request};
use crate::supervisor::{describe_exit, log_tail, ProcessInfo, Supervisor};
use crate::up::{ClusterFile, Signals};

/// How often the children are checked.
const TICK: Duration = Duration::from_millis(200);
/// A child that ran this long before dying starts over at the first
/// backoff step.
const STABLE: Duration = Duration::from_secs(30);
/// How long a child asked to stop gets before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The delay before restarting a child that died `failures` times in a
/// row (each within [`STABLE`] of its start): 0.5 s, 1 s, 2 s, … capped
/// at 15 s.
pub fn backoff(failures: u32) -> Duration {
    let ms = 500u64.saturating_mul(1 << failures.saturating_sub(1).min(5));
    Duration::from_millis(ms.min(15_000))
}

/// Where a child is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Running since then.
    Running(Instant),
    /// Died; to be started again at that instant.
    Restarting(Instant),
    /// Asked to stop; SIGKILL at that instant if still running.
    Stopping(Instant),
    /// Stopped on request; stays down until started.
    Stopped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Running(_) => "running",
            State::Stopping(_) => "stopping",
            State::Restarting(_) => "restarting",
            State::Stopped => "stopped",
        }
    }
}

/// One child's record beside its process.
#[derive(Debug, Clone, Copy)]
struct Life {
    state: State,
    /// Deaths in a row, each soon after its start.
    failures: u32,
    /// Restarts so far.
    restarts: u32,
}

/// Keeps the children of `up` running; see the module docs.
pub struct Keeper<'a> {
    sup: &'a mut Supervisor,
    lives: Vec<Life>,
    file: &'a mut ClusterFile,
}

impl<'a> Keeper<'a> {
    /// Takes charge of `sup`'s children (all running now) and of the
    /// `cluster.json` that describes them.
    pub fn new(sup: &'a mut Supervisor, file: &'a mut ClusterFile) -> Self {
        let now = Instant::now();
        let lives = sup
            .children
            .iter()
            .map(|_| Life {
                state: State::Running(now),
                failures: 0,
                restarts: 0,
            })
            .collect();
        Self { sup, lives, file }
    }

    /// Runs until SIGINT or SIGTERM; the caller then stops the children.
    pub async fn run(mut self, signals: &mut Signals, control: &ControlSocket) -> Result<()> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                name = signals.recv() => {
                    log(format!("received {name}: stopping the cluster"));
                    return Ok(());
                }
                conn = control.accept() => match conn {
                    Ok(conn) => self.serve(conn).await,
                    Err(e) => log(format!("control socket: {e:#}")),
                },
                _ = tick.tick() => self.check(),
            }
        }
    }

    /// Notices exits, kills overdue stops, and restarts what is due.
    fn check(&mut self) {
        let now = Instant::now();
        let mut changed = false;
        for at in 0..self.lives.len() {
            let life = self.lives[at];
            let child = &mut self.sup.children[at];
            let who = format!("{} {}", child.role, child.id);
            match life.state {
                State::Running(since) => {
                    let Ok(Some(status)) = child.child.try_wait() else {
                        continue;
                    };
                    let failures = if since.elapsed() >= STABLE {
                        1
                    } else {
                        life.failures + 1
                    };
                    let delay = backoff(failures);
                    log(format!(
                        "{who} exited unexpectedly ({}); the others keep running; \
                         restarting it in {:.1}s. Its log {} ends with:\n{}",
                        describe_exit(Ok(status)),
                        delay.as_secs_f64(),
                        child.log.display(),
                        indent(&log_tail(&child.log, 5))
                    ));
                    self.lives[at].failures = failures;
                    self.lives[at].state = State::Restarting(now + delay);
                    changed = true;
                }
                State::Stopping(deadline) => match child.child.try_wait() {
                    Ok(Some(status)) => {
                        log(format!(
                            "{who} stopped as asked ({}); it stays down until \
                             `raftctl node start`",
                            describe_exit(Ok(status))
                        ));
                        self.lives[at].state = State::Stopped;
                        changed = true;
                    }
                    _ if now >= deadline => {
                        log(format!(
                            "{who} did not stop within {}s: killing it",
                            STOP_TIMEOUT.as_secs()
                        ));
                        let _ = child.child.start_kill();
                    }
                    _ => {}
                },
                State::Restarting(when) if now >= when => {
                    changed = true;
                    self.start(at, &who);
                }
                State::Restarting(_) | State::Stopped => {}
            }
        }
        if changed {
            self.write_file();
        }
    }

    /// Starts child `at` again; on failure, schedules another try.
    fn start(&mut self, at: usize, who: &str) -> Option<u32> {
        match self.sup.respawn(at) {
            Ok(pid) => {
                let life = &mut self.lives[at];
                life.restarts += 1;
                life.state = State::Running(Instant::now());
                log(format!(
                    "{who} started again: pid {pid} (restart {})",
                    life.restarts
                ));
                Some(pid)
            }
            Err(e) => {
                let life = &mut self.lives[at];
                life.failures += 1;
                let delay = backoff(life.failures);
                life.state = State::Restarting(Instant::now() + delay);
                log(format!(
                    "{who} could not be started ({e:#}); trying again in {:.1}s",
                    delay.as_secs_f64()
                ));
                None
            }
        }
    }

    /// Answers one control-socket client.
    async fn serve(&mut self, mut conn: Connection) {
        let reply = match conn.request().await {
            Ok(None) => return,
            Ok(Some(request)) => self.handle(request),
            Err(e) => Reply {
                ok: false,
                message: format!("{e:#}"),
                pid: None,
            },
        };
        if let Err(e) = conn.reply(&reply).await {
            log(format!("control socket: {e:#}"));
        }
    }

    fn handle(&mut self, request: Request) -> Reply {
        let (stop, role, id) = match &request {
            Request::Stop { role, id } => (true, role.as_str(), *id),
            Request::Start { role, id } => (false, role.as_str(), *id),
        };
        let refuse = |message: String| Reply {
            ok: false,
            message,
            pid: None,
        };
        let Some(at) = self
            .sup
            .children
            .iter()
            .position(|c| c.role == role && c.id == id)
        else {
            let known: Vec<String> = self
                .sup
                .children
                .iter()
                .map(|c| format!("{} {}", c.role, c.id))
                .collect();
            return refuse(format!(
                "this `up` runs no {role} {id} (it runs {})",
                known.join(", ")
            ));
        };
        let who = format!("{role} {id}");
        let pid = self.sup.children[at].child.id();
        let reply = match (stop, self.lives[at].state) {
            (true, State::Running(_)) => {
                let Some(pid) = pid else {
                    return refuse(format!("{who} has just exited; try again"));
                };
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                self.lives[at].state = State::Stopping(Instant::now() + STOP_TIMEOUT);
                log(format!("stopping {who} (pid {pid}) as asked"));
                Reply {
                    ok: true,
                    message: format!("stopping {who} (pid {pid}): SIGTERM sent"),
                    pid: Some(pid),
                }
            }
            (true, State::Restarting(_)) => {
                self.lives[at].state = State::Stopped;
                log(format!("{who} was down; it stays stopped as asked"));
                Reply {
                    ok: true,
                    message: format!("{who} was down already; it stays stopped"),
                    pid: None,
                }
            }
            (true, State::Stopping(_)) => refuse(format!("{who} is already stopping")),
            (true, State::Stopped) => refuse(format!("{who} is already stopped")),
            (false, State::Stopped | State::Restarting(_)) => {
                self.lives[at].failures = 0;
                match self.start(at, &who) {
                    Some(pid) => Reply {
                        ok: true,
                        message: format!("started {who}: pid {pid}"),
                        pid: Some(pid),
                    },
                    None => refuse(format!(
                        "{who} could not be started; see {}",
                        self.sup.children[at].log.display()
                    )),
                }
            }
            (false, State::Stopping(_)) => {
                refuse(format!("{who} is still stopping; try again in a moment"))
            }
            (false, State::Running(_)) => refuse(format!(
                "{who} is already running (pid {})",
                pid.map_or("?".into(), |p| p.to_string())
            )),
        };
        self.write_file();
        reply
    }

    /// Rewrites `cluster.json` with every process's pid and state.
    fn write_file(&mut self) {
        self.file.processes = self
            .sup
            .children
            .iter()
            .zip(&self.lives)
            .map(|(child, life)| ProcessInfo {
                state: life.state.name(),
                restarts: life.restarts,
                ..child.describe()
            })
            .collect();
        if let Err(e) = self.file.write() {
            log(format!("{e:#}"));
        }
    }
}

/// One line (or block) of `up`'s own log, on stderr, with the UTC time.
pub fn log(message: String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    eprintln!(
        "{:02}:{:02}:{:02} up: {message}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// `text` indented, without terminal colour codes (the children's logs
/// are written for a terminal).
fn indent(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(dir: &Path) -> ClusterFile {
        ClusterFile {
            page_url: "http://127.0.0.1:1/".into(),
            data_dir: dir.to_path_buf(),
            token_file: dir.join("token"),
            control_socket: dir.join("up.sock"),
            processes: Vec::new(),
        }
    }

    fn spawn_sh(sup: &mut Supervisor, role: &'static str, script: &str, dir: &Path) {
        let args = ["-c".to_string(), script.to_string()];
        sup.spawn(
            Path::new("/bin/sh"),
            role,
            1,
            "127.0.0.1:1",
            dir,
            &args,
            &[],
        )
        .unwrap();
    }

    fn listed(dir: &Path, role: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join("cluster.json")).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        file["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["role"] == role)
            .unwrap()
            .clone()
    }

    #[tokio::test]
    async fn a_child_that_keeps_dying_is_restarted_later_and_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut sup = Supervisor::default();
        spawn_sh(&mut sup, "node", "exit 3", dir.path());
        spawn_sh(&mut sup, "gateway", "sleep 30", dir.path());
        let mut file = file(dir.path());
        let mut keeper = Keeper::new(&mut sup, &mut file);
        // Dies at once; restarted after 0.5 s, dies; after 1 s, dies; the
        // next restart is 2 s later, after the end of this window.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2400) {
            keeper.check();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(keeper.lives[0].restarts, 2, "{:?}", keeper.lives[0]);
        assert_eq!(keeper.lives[0].failures, 3);
        assert!(matches!(keeper.lives[0].state, State::Restarting(_)));
        assert!(matches!(keeper.lives[1].state, State::Running(_)));
        let node = listed(dir.path(), "node");
        assert_eq!(node["state"], "restarting");
        assert_eq!(node["restarts"], 2);
        assert!(node["pid"].is_null());
        let gateway = listed(dir.path(), "gateway");
        assert_eq!(gateway["state"], "running");
        assert!(gateway["pid"].is_u64(), "the others keep running");
    }

    #[tokio::test]
    async fn stop_keeps_a_child_down_until_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut sup = Supervisor::default();
        spawn_sh(&mut sup, "gateway", "sleep 30", dir.path());
        let mut file = file(dir.path());
        let mut keeper = Keeper::new(&mut sup, &mut file);
        let first = listed_pid(&mut keeper);
        let stop = Request::Stop {
            role: "gateway".into(),
            id: 1,
        };
        let reply = keeper.handle(stop.clone());
        assert!(reply.ok && reply.pid == Some(first), "{reply:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while keeper.lives[0].state != State::Stopped && Instant::now() < deadline {
            keeper.check();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(keeper.lives[0].state, State::Stopped);
        // Not restarted while stopped.
        tokio::time::sleep(Duration::from_millis(700)).await;
        keeper.check();
        assert_eq!(keeper.lives[0].state, State::Stopped);
        assert_eq!(listed(dir.path(), "gateway")["state"], "stopped");
        assert!(!keeper.handle(stop).ok, "already stopped");
        let start = Request::Start {
            role: "gateway".into(),
            id: 1,
        };
        let reply = keeper.handle(start.clone());
        assert!(reply.ok, "{reply:?}");
        let second = reply.pid.unwrap();
        assert_ne!(second, first);
        assert_eq!(listed(dir.path(), "gateway")["pid"], second);
        assert!(!keeper.handle(start).ok, "already running");
        let unknown = keeper.handle(Request::Stop {
            role: "node".into(),
            id: 9,
        });
        assert!(!unknown.ok && unknown.message.contains("gateway 1"));
    }

    fn listed_pid(keeper: &mut Keeper<'_>) -> u32 {
        keeper.sup.children[0].child.id().unwrap()
    }

    #[test]
    fn backoff_doubles_from_half_a_second_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(6), Duration::from_secs(15));
        assert_eq!(backoff(60), Duration::from_secs(15));
    }

    #[test]
    fn log_tails_lose_their_colours() {
        assert_eq!(
            indent("\u{1b}[2mtime\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x\ny"),
            "    time  WARN x\n    y"
        );
    }
}
