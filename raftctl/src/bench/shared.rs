//! The state one worker's clients share: counters, histograms, the
//! box-state table behind the set→seen measurement, and per-shard ack
//! gaps.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use super::latency::{now_ns, Buckets, Latency};
use super::lines::{Counts, Gap};
use super::plan::WorkerPlan;

/// A Set younger than this can still be matched to an Update.
const SEEN_WINDOW_NS: u64 = 30_000_000_000;

/// What the worker knows of one box.
#[derive(Debug, Clone, Copy)]
struct BoxState {
    /// Its last known (or last written) value.
    value: bool,
    /// When a client of this worker last set it (0: never).
    sent_ns: u64,
    /// That client's global index.
    writer: u64,
}

/// Atomic counterparts of [`Counts`].
#[derive(Default)]
pub struct Counters {
    pub open: AtomicU64,
    pub connected: AtomicU64,
    pub connect_failed: AtomicU64,
    pub sets_sent: AtomicU64,
    pub sets_skipped: AtomicU64,
    pub acks_applied: AtomicU64,
    pub acks_rejected: AtomicU64,
    pub updates: AtomicU64,
    pub frames: AtomicU64,
    pub bytes_in: AtomicU64,
    pub header_bytes_in: AtomicU64,
    pub dropped: AtomicU64,
    /// Sets awaiting an Ack over all clients.
    pub outstanding: AtomicU64,
}

impl Counters {
    /// A consistent-enough copy.
    pub fn snapshot(&self) -> Counts {
        Counts {
            open: self.open.load(Relaxed),
            connected: self.connected.load(Relaxed),
            connect_failed: self.connect_failed.load(Relaxed),
            sets_sent: self.sets_sent.load(Relaxed),
            sets_skipped: self.sets_skipped.load(Relaxed),
            acks_applied: self.acks_applied.load(Relaxed),
            acks_rejected: self.acks_rejected.load(Relaxed),
            updates: self.updates.load(Relaxed),
            frames: self.frames.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            header_bytes_in: self.header_bytes_in.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
        }
    }
}

/// Everything a worker's clients share.
pub struct Shared {
    /// The plan.
    pub plan: WorkerPlan,
    /// Counters.
    pub c: Counters,
    /// Whether latencies and gaps are recorded (the measured phase and
    /// the drain).
    pub recording: AtomicBool,
    errors: Mutex<BTreeMap<String, u64>>,
    ack: Mutex<Latency>,
    /// `mark` times (`CLOCK_MONOTONIC` ns) and one histogram per period
    /// they delimit (the first before any mark).
    marked: Mutex<(Vec<u64>, Vec<Latency>)>,
    seen: Mutex<Latency>,
    boxes: Mutex<HashMap<u32, BoxState>>,
    last_ack: Vec<AtomicU64>,
    gaps: Mutex<Vec<Gap>>,
}

impl Shared {
    /// Fresh state for `plan`.
    pub fn new(plan: WorkerPlan) -> Self {
        let last_ack = plan.shards.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            plan,
            c: Counters::default(),
            recording: AtomicBool::new(false),
            errors: Mutex::default(),
            ack: Mutex::default(),
            marked: Mutex::default(),
            seen: Mutex::default(),
            boxes: Mutex::default(),
            last_ack,
            gaps: Mutex::default(),
        }
    }

    /// Counts one error or event under `reason`.
    pub fn error(&self, reason: impl Into<String>) {
        *lock(&self.errors).entry(reason.into()).or_default() += 1;
    }

    /// The value client `writer` should write to `index` at `now` (the
    /// opposite of the last known one, so that every Set is a change),
    /// remembered for matching the Update.
    pub fn next_value(&self, index: u32, writer: u64, now: u64) -> bool {
        let mut boxes = lock(&self.boxes);
        let b = boxes.entry(index).or_insert(BoxState {
            value: false,
            sent_ns: 0,
            writer,
        });
        b.value = !b.value;
        b.sent_ns = now;
        b.writer = writer;
        b.value
    }

    /// Client `observer` saw box changes `(index, value)` at `now`:
    /// records set→seen latencies of Sets by other clients of this
    /// worker, and learns the values.
    pub fn seen(&self, observer: u64, now: u64, changes: impl Iterator<Item = (u32, bool)>) {
        let recording = self.recording.load(Relaxed);
        let mut samples = Vec::new();
        {
            let mut boxes = lock(&self.boxes);
            for (index, value) in changes {
                let b = boxes.entry(index).or_insert(BoxState {
                    value,
                    sent_ns: 0,
                    writer: u64::MAX,
                });
                let fresh = b.sent_ns != 0 && now.saturating_sub(b.sent_ns) < SEEN_WINDOW_NS;
                if fresh && b.value == value {
                    if b.writer != observer && recording {
                        samples.push(now - b.sent_ns);
                    }
                } else if !fresh {
                    b.value = value;
                }
            }
        }
        if !samples.is_empty() {
            let mut h = lock(&self.seen);
            for s in samples {
                h.record_ns(s);
            }
        }
    }

    /// An Ack arrived `latency_ns` after its Set.
    pub fn acked(&self, latency_ns: u64) {
        if self.recording.load(Relaxed) {
            lock(&self.ack).record_ns(latency_ns);
            let mut marked = lock(&self.marked);
            let (marks, periods) = &mut *marked;
            let sent = now_ns().saturating_sub(latency_ns);
            let period = marks.partition_point(|m| *m <= sent);
            if periods.len() <= period {
                periods.resize_with(period + 1, Latency::default);
            }
            periods[period].record_ns(latency_ns);
        }
    }

    /// A `mark` at `now`: Sets sent from now on count in a new period.
    pub fn mark(&self, now: u64) {
        lock(&self.marked).0.push(now);
    }

    /// Set→Ack buckets per period between marks (empty without marks).
    pub fn marked_buckets(&self) -> Vec<Buckets> {
        let marked = lock(&self.marked);
        match marked.0.is_empty() {
            true => Vec::new(),
            false => marked.1.iter().map(Latency::buckets).collect(),
        }
    }

    /// An applied Ack for a Set of box `index` arrived at `now`: notes a
    /// gap if its shard had none for longer than the threshold.
    pub fn shard_acked(&self, index: u32, now: u64) {
        let Some(s) = self.plan.shard_of(index) else {
            return;
        };
        let prev = self.last_ack[s].fetch_max(now, Relaxed);
        let threshold = self.plan.gap_threshold_ms * 1_000_000;
        if prev != 0 && now > prev && now - prev > threshold && self.recording.load(Relaxed) {
            lock(&self.gaps).push(Gap {
                shard: self.plan.shards[s].id,
                from_ns: prev,
                to_ns: now,
            });
        }
    }

    /// Errors by reason.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// Set→Ack buckets.
    pub fn ack_buckets(&self) -> super::latency::Buckets {
        lock(&self.ack).buckets()
    }

    /// Set→seen buckets.
    pub fn seen_buckets(&self) -> super::latency::Buckets {
        lock(&self.seen).buckets()
    }

    /// `(shard, time)` of each shard's last applied Ack.
    pub fn last_acks(&self) -> Vec<(u64, u64)> {
        self.plan
            .shards
            .iter()
            .zip(&self.last_ack)
            .map(|(s, t)| (s.id, t.load(Relaxed)))
            .collect()
    }

    /// Gaps noted.
    pub fn gaps(&self) -> Vec<Gap> {
        lock(&self.gaps).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
