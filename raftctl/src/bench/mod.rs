//! # `raftctl bench`: load against a real local cluster, over the real
//! websocket protocol
//!
//! Each scenario is one command (`raftctl bench throughput|day|
//! connections|failover|restart|reshard|c10m`, documented with results in
//! `docs/benchmarks.md`). A run:
//!
//! 1. starts its own cluster in a temp dir ([`launcher`]): three
//!    `checkraft-node`s (fsync on, as always; `--node-env` settings, such
//!    as shorter raft timeouts), `init_cluster`, then the gateways with
//!    the scenario's explicit settings ([`args::Settings::gateway_env`]:
//!    rate limits lifted for `throughput`/`failover`/`restart`/`reshard`,
//!    realistic for `day`/`connections`/`c10m`); once every group has settled, an
//!    [`elections::ElectionWatch`] scrapes the nodes' `/metrics` until the
//!    last phase ends;
//! 2. snapshots the idle gateways ([`scrape`]: `/metrics`, VmRSS and CPU
//!    time from `/proc` ([`procfs`]), kernel socket memory, node CPU);
//! 3. re-executes itself as `raftctl bench-worker` processes ([`fleet`],
//!    [`worker`]), since one process holds at most ~19k sockets here. Each
//!    worker gets a [`plan::WorkerPlan`] as JSON and runs one task per
//!    client ([`client`]): a TCP socket bound to its own loopback source
//!    address (127.10.x.y, `--per-address` clients each) to its gateway,
//!    upgraded to a websocket, subscribed to a viewport of chunks (hot
//!    spot: `--hot-fraction` of viewports start in the first
//!    `--hot-chunks` chunks), setting boxes in it (Poisson at `--rate`, or
//!    closed loop with `--inflight` Sets awaiting Acks, a window refilled
//!    with up to 64 Sets per socket write, as a pipelining client would);
//! 4. when all clients are connected, snapshots again, writes `start` to
//!    the workers, shows live progress (indicatif) for `--duration`
//!    seconds (killing shard leaders meanwhile in `failover`, restarting
//!    nodes in `restart`; then resharding there and back in `reshard`)
//!    while sampling acknowledged sets/s ([`timeline`]), snapshots,
//!    writes `stop`; workers drain their Acks and write a final JSON line
//!    ([`lines`]) with counters and histograms;
//! 5. stops the cluster, runs redis for `throughput` ([`redis`]), and
//!    prints the markdown report ([`report`]; `report.json` instead with
//!    `--json`; `--out DIR` also writes `report.json`, `report.md` and SVG
//!    charts ([`charts`])); for `c10m` it includes the projection of the
//!    per-connection costs to 2.5M connections on one server
//!    ([`projection`]).
//!
//! [`run`](mod@run) holds this sequence; `throughput` repeats steps 2–4 once per
//! `--sweep` depth on the same cluster ([`throughput`]); `failover` runs
//! its kill loop during step 4 ([`failover`]), `restart` its restart
//! loop ([`restart`]), `reshard` its change after step 4's steady state
//! ([`reshard`]); `day`, `connections` and `c10m` differ only in their
//! defaults ([`args::Settings::resolve`]; `c10m`: 200,000 clients at
//! 0.001 Sets/s each, half of the viewports in the first 16 chunks, one
//! gateway and one worker per 15,000 clients), `c10m` also in its
//! report's projection. SIGINT or SIGTERM stops the
//! phase, then the cluster, and removes the temp dir.
//!
//! ## What is measured how
//! - **Acknowledged sets/s**: applied Acks received during the measured
//!   phase, divided by its length. An applied Ack means committed on a
//!   quorum with fsync.
//! - **Set→Ack latency**: per Set, from its send to its Ack, in the
//!   client ([`latency::Latency`] HdrHistograms, shipped as bucket lists).
//! - **Set→seen-by-another-client** (click-to-visible): a writer notes
//!   `CLOCK_MONOTONIC` at send in its worker's box table ([`shared`]);
//!   every other client of the same worker subscribed to the chunk
//!   records the delay when an Update carrying that box with that value
//!   arrives (one sample per observing client). Writers always write the
//!   opposite of the last known value, so every Set is a change, and
//!   worker `w` of `W` writes only boxes `i % W == w`, so no other process
//!   changes a box it times. Observers in other workers don't count (no
//!   shared table), which samples but does not bias the distribution. An
//!   observer whose connection lags can match an older Update of the same
//!   value (toggles alternate, so only after two more Sets of that box),
//!   which under-states its sample.
//! - **Updates/s, frames/s, bytes per client per second**: received by the
//!   clients (payload bytes), and the gateways' `ws_bytes_out_total` delta
//!   over the window (payload bytes; no websocket framing or TCP).
//! - **Gateway RSS per connection**: summed VmRSS with all clients
//!   connected minus before any, divided by connections; kernel TCP
//!   memory (both ends, whole machine) separately.
//! - **CPU**: gateways' and nodes' from `/proc/<pid>/stat` between the
//!   snapshots; the load generator's (every `bench-worker`, issue 16: it
//!   must not be the bottleneck) measured by each worker between `start`
//!   and `stop`, reported in cores and as a share of the machine's cores
//!   in every scenario.
//! - **Wire bytes and the projection** (`c10m`): websocket payload,
//!   frames and flushes from the gateways' counters, frame headers
//!   counted by the clients, TCP/IP and Ethernet overhead per estimated
//!   segment; multiplied out to 2.5M connections next to one server's
//!   budget: see [`projection`].
//! - **Failover unavailability**: see [`failover`].
//! - **Spurious elections**: term rises and leader changes per group
//!   that no kill explains, over the whole run ([`elections`]).
//! - **Restart time**: from a killed node's new process start until it
//!   is ready, answers reads and has caught up ([`restart`]).
//! - **Resharding**: step durations, the longest stretch without an
//!   applied write on a touched range, and set→Ack p99 during the change
//!   against the steady state: see [`reshard`].
//! - **Errors and rejections by reason**: Ack statuses, close codes,
//!   connect errors, resyncs (client side), and the gateways' rejection
//!   counters.
//!
//! ## Caveats
//! - Load generator, gateways, nodes (and redis) share the machine's
//!   cores: figures are for the whole system on one box, not for a
//!   gateway or node alone. The machine may be shared with other work;
//!   the report records the load average at start.
//! - Kernel TCP memory is not in any process's RSS.
//! - Benchmarks are not tests: nothing here asserts speed.

mod args;
mod charts;
mod client;
mod elections;
mod failover;
mod fleet;
mod latency;
mod launcher;
mod lines;
mod node_metrics;
mod plan;
mod procfs;
mod projection;
mod redis;
mod report;
mod reshard;
mod restart;
mod run;
mod scrape;
mod shared;
mod throughput;
mod timeline;
mod worker;

pub use args::{BenchArgs, WorkerArgs};
pub use run::run;
pub use worker::run as run_worker;
