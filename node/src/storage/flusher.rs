//! Group commit over sled's database-wide flush.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use checkraft_proto::TypeConfig;
use openraft::storage::IOFlushed;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Something waiting for the next flush.
enum Waiter {
    /// openraft's append callback, and the number of entries appended
    /// when the caller said.
    Log(IOFlushed<TypeConfig>, Option<u64>),
    /// An `await`ing caller (vote, truncate, purge, snapshot).
    Notify(oneshot::Sender<Result<(), String>>),
}

/// Counters and histograms for observability (exported by
/// [`crate::metrics`]).
#[derive(Debug)]
pub struct FlushStats {
    /// Flushes run.
    pub flushes: AtomicU64,
    /// Waiters completed (append calls plus awaited flushes).
    pub waiters: AtomicU64,
    /// Total flush time, in microseconds.
    pub micros: AtomicU64,
    /// Duration of each sled flush, in seconds (100 µs .. ~3.3 s buckets).
    pub latency: Histogram,
    /// Waiters completed by each flush (1 .. 4096 buckets).
    pub batch: Histogram,
    /// Log entries made durable by successful flushes (those appended
    /// through [`Flusher::after_append`]).
    pub entries: AtomicU64,
    /// Log entries made durable by each flush that had appends counted
    /// through [`Flusher::after_append`] (1 .. 4096 buckets).
    pub batch_entries: Histogram,
}

impl Default for FlushStats {
    fn default() -> Self {
        Self {
            flushes: AtomicU64::new(0),
            waiters: AtomicU64::new(0),
            micros: AtomicU64::new(0),
            latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            batch: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            entries: AtomicU64::new(0),
            batch_entries: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

/// Handle to the background flush task. Cloning shares the task.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::UnboundedSender<Waiter>,
    stats: Arc<FlushStats>,
}

impl Flusher {
    /// Starts the flush task for `db`.
    pub fn start(db: sled::Db) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(FlushStats::default());
        tokio::spawn(run(db, rx, stats.clone()));
        Self { tx, stats }
    }

    /// Calls `callback` once a flush that starts after this call completes.
    /// The entries it covers are not counted in `FlushStats::entries`;
    /// log appends should use [`Flusher::after_append`].
    pub fn after_flush(&self, callback: IOFlushed<TypeConfig>) {
        self.queue_log(callback, None);
    }

    /// Like [`Flusher::after_flush`], for an append of `entries` log
    /// entries, which the flush metrics count.
    pub fn after_append(&self, callback: IOFlushed<TypeConfig>, entries: u64) {
        self.queue_log(callback, Some(entries));
    }

    fn queue_log(&self, callback: IOFlushed<TypeConfig>, entries: Option<u64>) {
        if let Err(mpsc::error::SendError(Waiter::Log(cb, _))) =
            self.tx.send(Waiter::Log(callback, entries))
        {
            cb.io_completed(Err(std::io::Error::other("flusher stopped")));
        }
    }

    /// Returns once everything written before this call is on disk.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Waiter::Notify(tx))
            .map_err(|_| Error::Unavailable("flusher stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Corrupt(format!("flush failed: {e}"))),
            Err(_) => Err(Error::Unavailable("flusher stopped".into())),
        }
    }

    /// Flush counters.
    pub fn stats(&self) -> &FlushStats {
        &self.stats
    }
}

async fn run(db: sled::Db, mut rx: mpsc::UnboundedReceiver<Waiter>, stats: Arc<FlushStats>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        // Everything in `batch` was written before it was queued, and the
        // flush below starts after it was queued, so it covers all of it.
        let started = Instant::now();
        let db2 = db.clone();
        let result = match tokio::task::spawn_blocking(move || db2.flush()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("flush task panicked: {e}")),
        };
        let elapsed = started.elapsed();
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats
            .waiters
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats
            .micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        stats.latency.observe(elapsed.as_secs_f64());
        stats.batch.observe(batch.len() as f64);
        let counted = batch.iter().filter_map(|w| match w {
            Waiter::Log(_, entries) => *entries,
            Waiter::Notify(_) => None,
        });
        if let (Ok(()), Some(entries)) = (&result, counted.reduce(|a, b| a + b)) {
            stats.entries.fetch_add(entries, Ordering::Relaxed);
            stats.batch_entries.observe(entries as f64);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "sled flush failed; waiters get the error");
        }
        for waiter in batch.drain(..) {
            match waiter {
                Waiter::Log(cb, _) => {
                    cb.io_completed(result.clone().map_err(std::io::Error::other))
                }
                Waiter::Notify(tx) => {
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
}
