//! Write batching: many callers' sets, one raft write per shard per tick.
//!
//! Each shard has one [`Batcher`] task. A batch opens with the first set
//! that arrives and closes `batch_tick` after that set arrived, or as soon
//! as it holds `batch_max_sets` sets. It is then sent as ONE `SetBatch`
//! through a [`BatchSender`] (in production [`crate::writer::NodeWriter`]:
//! leader routing, retries, timeout), and every caller whose sets it
//! carried gets the same outcome: `Ok` only once the batch is committed
//! and applied.
//!
//! A caller either awaits the outcome ([`Batcher::submit`]) or hands over
//! a function the batching task calls with it ([`Batcher::submit_then`]:
//! no task or channel per caller, for the websocket's per-Set path).
//!
//! One batch per shard is in flight at a time, so a caller's later sets
//! never overtake its earlier ones; sets that arrive meanwhile wait, and
//! if they have waited a tick already they go out at once (group commit).
//! Within a batch, sets keep their arrival order, and the shard applies
//! them in order, so the last set of a box wins.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use checkraft_proto::{BoxSet, ShardId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// A committed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The shard's change number after the batch that carried the sets.
    pub seq: u64,
}

/// A boxed future, as [`BatchSender::send`] returns.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<Committed>> + Send>>;

/// Sends one batch as one raft write and reports its outcome.
pub trait BatchSender: Send + Sync + 'static {
    /// Writes `sets` to `shard`; resolves once committed, rejected, or
    /// given up on.
    fn send(&self, shard: ShardId, sets: Vec<BoxSet>) -> SendFuture;
}

/// What a caller gets when its batch is done.
pub type Then = Box<dyn FnOnce(Result<Committed>) + Send>;

/// Where a batch's outcome goes.
enum Reply {
    /// To a caller awaiting [`Batcher::submit`].
    Wait(oneshot::Sender<Result<Committed>>),
    /// Into a function the batching task calls ([`Batcher::submit_then`]).
    Then(Then),
}

struct Pending {
    sets: Vec<BoxSet>,
    arrived: Instant,
    reply: Reply,
}

/// The handle of one shard's batching task. Dropping every clone ends the
/// task once its queue is drained.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
}

/// Queued callers per shard before [`Batcher::submit`] waits for room.
const QUEUE: usize = 16 * 1024;

impl Batcher {
    /// Starts the batching task of `shard`.
    pub fn spawn(
        shard: ShardId,
        sender: Arc<dyn BatchSender>,
        tick: Duration,
        max_sets: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(shard, rx, sender, tick, max_sets, metrics));
        Self { tx }
    }

    /// Queues `sets` (all of this shard) and waits for the outcome of the
    /// batch that carries them.
    pub async fn submit(&self, sets: Vec<BoxSet>) -> Result<Committed> {
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            sets,
            arrived: Instant::now(),
            reply: Reply::Wait(reply),
        };
        self.tx
            .send(pending)
            .await
            .map_err(|_| Error::Unavailable("the shard's batcher stopped".into()))?;
        outcome
            .await
            .map_err(|_| Error::Unavailable("the shard's batcher stopped".into()))?
    }

    /// Queues `sets` (all of this shard); the batching task calls `then`
    /// with the outcome of the batch that carries them. No task and no
    /// channel per caller: the websocket's per-Set path. When the queue
    /// is full, `then` is handed back (the caller waits with
    /// [`Self::submit`] instead); when the task stopped, `then` gets
    /// `Unavailable` at once.
    pub fn submit_then(&self, sets: Vec<BoxSet>, then: Then) -> std::result::Result<(), Then> {
        let pending = Pending {
            sets,
            arrived: Instant::now(),
            reply: Reply::Then(then),
        };
        match self.tx.try_send(pending) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(p)) => match p.reply {
                Reply::Then(then) => Err(then),
                Reply::Wait(_) => unreachable!("queued as Then"),
            },
            Err(mpsc::error::TrySendError::Closed(p)) => {
                if let Reply::Then(then) = p.reply {
                    then(Err(Error::Unavailable(
                        "the shard's batcher stopped".into(),
                    )));
                }
                Ok(())
            }
        }
    }
}

async fn run(
    shard: ShardId,
    mut rx: mpsc::Receiver<Pending>,
    sender: Arc<dyn BatchSender>,
    tick: Duration,
    max_sets: usize,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let deadline = first.arrived + tick;
        let mut count = first.sets.len();
        let mut batch = vec![first];
        while count < max_sets {
            // Whatever is queued already goes in; then wait out the tick.
            let next = match rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // A passed deadline closes the batch.
                    tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .unwrap_or_default()
                }
            };
            let Some(p) = next else { break };
            count += p.sets.len();
            batch.push(p);
        }
        let sets: Vec<BoxSet> = batch.iter().flat_map(|p| p.sets.iter().copied()).collect();
        metrics.write_batches.inc();
        metrics.batch_sets.observe(sets.len() as f64);
        let started = Instant::now();
        let outcome = sender.send(shard, sets).await;
        metrics
            .write_latency
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &outcome {
            metrics.write_failures.inc();
            tracing::debug!(shard, callers = batch.len(), error = %e, "write batch failed");
        }
        for p in batch {
            match p.reply {
                Reply::Wait(tx) => {
                    let _ = tx.send(outcome.clone());
                }
                Reply::Then(then) => then(outcome.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::Rejection;
    use std::sync::Mutex;

    /// Records every batch; answers with `seq` = batch number, or a
    /// rejection when a batch holds box 666.
    #[derive(Default)]
    struct FakeSender {
        batches: Mutex<Vec<Vec<BoxSet>>>,
        delay: Duration,
    }

    impl BatchSender for FakeSender {
        fn send(&self, _shard: ShardId, sets: Vec<BoxSet>) -> SendFuture {
            let seq = {
                let mut b = self.batches.lock().unwrap();
                b.push(sets.clone());
                b.len() as u64
            };
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                if sets.iter().any(|(i, _)| *i == 666) {
                    return Err(Error::Rejected(Rejection::OutOfRange {
                        index: 666,
                        start: 0,
                        end: 100,
                    }));
                }
                Ok(Committed { seq })
            })
        }
    }

    fn batcher(fake: &Arc<FakeSender>, tick_ms: u64, max: usize) -> Batcher {
        Batcher::spawn(
            1,
            fake.clone(),
            Duration::from_millis(tick_ms),
            max,
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn callers_in_one_tick_share_one_batch_and_its_outcome() {
        let fake = Arc::new(FakeSender::default());
        let b = batcher(&fake, 5, 1024);
        let calls: Vec<_> = (0..10u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(vec![(i, true)]).await })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap(), Committed { seq: 1 });
        }
        let batches = fake.batches.lock().unwrap();
        assert_eq!(batches.len(), 1);
        let mut got: Vec<u32> = batches[0].iter().map(|s| s.0).collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_out_without_waiting_and_order_is_kept() {
        let fake = Arc::new(FakeSender::default());
        let b = batcher(&fake, 60_000, 4);
        // One caller, sequential sets of the same box: the last must win.
        let sets: Vec<BoxSet> = vec![(1, true), (1, false), (2, true), (1, true), (3, true)];
        let outcome = tokio::time::timeout(Duration::from_secs(1), b.submit(sets.clone()))
            .await
            .expect("a full batch must not wait for the tick");
        assert!(outcome.is_ok());
        assert_eq!(fake.batches.lock().unwrap()[0], sets);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_split_at_max_sets() {
        let fake = Arc::new(FakeSender::default());
        let b = batcher(&fake, 5, 3);
        let calls: Vec<_> = (0..7u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(vec![(i, true)]).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for c in calls {
            seqs.push(c.await.unwrap().unwrap().seq);
        }
        let sizes: Vec<usize> = fake.batches.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        seqs.sort();
        assert_eq!(seqs, vec![1, 1, 1, 2, 2, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_reaches_every_caller_of_the_batch_as_a_value() {
        let fake = Arc::new(FakeSender::default());
        let b = batcher(&fake, 5, 1024);
        let (x, y) = tokio::join!(b.submit(vec![(666, true)]), b.submit(vec![(7, true)]));
        assert!(matches!(x, Err(Error::Rejected(_))));
        assert!(matches!(y, Err(Error::Rejected(_))));
        // The batcher carries on.
        assert!(b.submit(vec![(8, true)]).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn sets_queued_during_a_slow_write_form_the_next_batch() {
        let fake = Arc::new(FakeSender {
            delay: Duration::from_millis(100),
            ..Default::default()
        });
        let b = batcher(&fake, 5, 1024);
        let first = {
            let b = b.clone();
            tokio::spawn(async move { b.submit(vec![(0, true)]).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let later: Vec<_> = (1..6u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(vec![(i, true)]).await })
            })
            .collect();
        assert_eq!(first.await.unwrap().unwrap().seq, 1);
        for c in later {
            assert_eq!(c.await.unwrap().unwrap().seq, 2);
        }
        assert_eq!(fake.batches.lock().unwrap().len(), 2);
    }
}
