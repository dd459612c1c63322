//! # checkraft-service: what every checkraft server process does alike
//!
//! `checkraft-node` and `checkraft-gateway` are long-running services
//! under a supervisor (systemd, `raftctl up`). Two conventions of theirs
//! live here, written once:
//! - [`logging`]: log lines as text or JSON (`--log-format`), filtered by
//!   `RUST_LOG`; JSON lines carry the current span's fields (`node_id`,
//!   `gateway_id`, `shard_id`) for collectors such as journald or Loki.
//! - [`notify`]: systemd's `Type=notify` readiness. The process tells
//!   systemd `READY=1` once its own readiness check (the same one its
//!   `/ready` answers) passes, `STATUS=` with the first reason it is not
//!   ready yet (only when that reason changes), and `STOPPING=1` when it
//!   stops. Nothing is sent when `NOTIFY_SOCKET` is unset.
//!
//! What "ready" means stays with each binary's crate: this crate only
//! polls the check it is given.

pub mod logging;
pub mod notify;
