//! The JSON lines a worker writes on stdout, one object per line, and
//! the commands it reads on stdin (`start`, `mark`, `stop`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::latency::Buckets;

/// Command on a worker's stdin: begin the measured phase.
pub const START: &str = "start";
/// Command on a worker's stdin: begin a new period of
/// [`WorkerFinal::ack_latency_by_mark`] (`reshard`: steady state, the
/// change, after it).
pub const MARK: &str = "mark";
/// Command on a worker's stdin: end it, drain, report and exit.
pub const STOP: &str = "stop";

/// One line of a worker's stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerLine {
    /// Every 250 ms: counters since the worker started, and `(shard,
    /// time)` of each shard's last applied Ack (`CLOCK_MONOTONIC` ns; 0:
    /// none yet).
    Progress {
        /// The counters.
        counts: Counts,
        /// Last applied Ack per shard.
        last_ack: Vec<(u64, u64)>,
    },
    /// Once, after `stop` and the drain.
    Final(Box<WorkerFinal>),
}

/// Counters of one worker (cumulative, or a difference of two).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Websockets open now (a gauge, not a difference).
    pub open: u64,
    /// Connections that completed the handshake.
    pub connected: u64,
    /// Connections that failed to connect (TCP or upgrade).
    pub connect_failed: u64,
    /// Sets sent.
    pub sets_sent: u64,
    /// Sets not sent because the client's `inflight` window was full.
    pub sets_skipped: u64,
    /// Acks with status `applied`.
    pub acks_applied: u64,
    /// Acks with any other status.
    pub acks_rejected: u64,
    /// Update entries received (one per box change seen by one client).
    pub updates: u64,
    /// Websocket messages received.
    pub frames: u64,
    /// Websocket payload bytes received.
    pub bytes_in: u64,
    /// Websocket header bytes of those messages (2, 4 or 10 each by their
    /// payload length; see [`super::projection::ws_header_len`]).
    #[serde(default)]
    pub header_bytes_in: u64,
    /// Connections that ended while they should have stayed open.
    pub dropped: u64,
}

impl Counts {
    /// `self - earlier`, field by field (the gauge `open` is kept).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            open: self.open,
            connected: self.connected - earlier.connected,
            connect_failed: self.connect_failed - earlier.connect_failed,
            sets_sent: self.sets_sent - earlier.sets_sent,
            sets_skipped: self.sets_skipped - earlier.sets_skipped,
            acks_applied: self.acks_applied - earlier.acks_applied,
            acks_rejected: self.acks_rejected - earlier.acks_rejected,
            updates: self.updates - earlier.updates,
            frames: self.frames - earlier.frames,
            bytes_in: self.bytes_in - earlier.bytes_in,
            header_bytes_in: self.header_bytes_in - earlier.header_bytes_in,
            dropped: self.dropped - earlier.dropped,
        }
    }

    /// Field-by-field sum.
    pub fn add(&mut self, o: &Counts) {
        self.open += o.open;
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.sets_sent += o.sets_sent;
        self.sets_skipped += o.sets_skipped;
        self.acks_applied += o.acks_applied;
        self.acks_rejected += o.acks_rejected;
        self.updates += o.updates;
        self.frames += o.frames;
        self.bytes_in += o.bytes_in;
        self.header_bytes_in += o.header_bytes_in;
        self.dropped += o.dropped;
    }
}

/// A stretch with no applied Ack for a shard's Sets, seen by one worker.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Gap {
    /// The shard.
    pub shard: u64,
    /// Last applied Ack before it (`CLOCK_MONOTONIC` ns).
    pub from_ns: u64,
    /// First applied Ack after it.
    pub to_ns: u64,
}

/// What a worker reports at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerFinal {
    /// Counters of the measured phase (`start` to `stop`).
    pub window: Counts,
    /// The measured phase as this worker saw it, in seconds.
    pub window_s: f64,
    /// Counters since the worker started, after the drain.
    pub total: Counts,
    /// Errors, rejections and notable events by reason (whole run).
    pub errors: BTreeMap<String, u64>,
    /// Set→Ack latency of Sets sent in the measured phase.
    pub ack_latency: Buckets,
    /// Set→seen-by-another-client latency (per observing client).
    pub seen_latency: Buckets,
    /// Set→Ack latency of the measured phase split at each `mark`, by the
    /// Set's send time: `[0]` before the first mark, `[i]` after mark `i`
    /// (empty when no mark was sent).
    #[serde(default)]
    pub ack_latency_by_mark: Vec<Buckets>,
    /// Ack gaps longer than the plan's threshold, per shard.
    pub gaps: Vec<Gap>,
    /// `(shard, time)` of the last applied Ack per shard (0: none).
    pub last_ack: Vec<(u64, u64)>,
    /// Sets still without an Ack after the drain.
    pub unacked: u64,
    /// The worker's own resident memory at the end, in bytes.
    pub rss_bytes: u64,
    /// The worker's CPU time during the measured phase, seconds.
    pub cpu_seconds: f64,
}
