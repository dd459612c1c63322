//! The change stream of one shard, as an async stream of events.
//!
//! A subscription starts from the `seq` the subscriber already has:
//! - if the shard's change log still holds every later event, it replays
//!   them, then follows live events;
//! - otherwise it first sends a `Snapshot` event of the current state.
//!
//! The start point and the live receiver are taken under the shard lock, so
//! nothing is missed or repeated between replay and live. If the
//! subscriber falls so far behind that the broadcast drops events for it,
//! the stream re-derives its position the same way (replay or snapshot)
//! and carries on. While the shard is idle, a `Progress` event goes out
//! every `progress` interval, carrying the `seq` this replica has applied
//! and the subscriber has been sent (the smaller of the two). Any replica can serve it: `seq` is part of
//! the replicated state.

use std::sync::Arc;
use std::time::Duration;

use checkraft_proto::ChangeEvent;
use futures::Stream;
use tokio::sync::{broadcast, watch};

use crate::changes::Start;
use crate::state_machine::Shard;

/// Takes a consistent start point: events to send now, and the receiver
/// for everything after them.
fn start_from(
    shard: &Shard,
    from: u64,
) -> (Vec<Arc<ChangeEvent>>, broadcast::Receiver<Arc<ChangeEvent>>) {
    let core = shard.lock();
    let first = match core.changes.replay_from(from, core.state.seq()) {
        Start::Replay(events) => events,
        Start::NeedSnapshot => core
            .state
            .snapshot_event()
            .map(Arc::new)
            .into_iter()
            .collect(),
    };
    (first, core.changes.subscribe())
}

fn shard_epoch_seq(shard: &Shard) -> (u64, u64, u64) {
    let core = shard.lock();
    (
        core.state.descriptor().shard,
        core.state.descriptor().epoch,
        core.state.seq(),
    )
}

/// Events of `shard` after `from`, until `shutdown` flips to true.
pub fn subscribe(
    shard: Arc<Shard>,
    from: u64,
    progress: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Arc<ChangeEvent>> + Send + 'static {
    async_stream(move |tx| async move {
        let mut last = from;
        let (mut pending, mut rx) = start_from(&shard, last);
        let mut tick = tokio::time::interval(progress);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            for event in pending.drain(..) {
                // Never send what the subscriber already has (this replica
                // may lag a subscriber that resumed from a faster one).
                if event.seq() <= last {
                    continue;
                }
                last = event.seq();
                if tx.send(event).await.is_err() {
                    return;
                }
                tick.reset();
            }
            tokio::select! {
                received = rx.recv() => match received {
                    Ok(event) => pending.push(event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "change subscriber lagged; catching up");
                        (pending, rx) = start_from(&shard, last);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    // Normally `current == last`. If events are still queued
                    // for us, `current > last` and we vouch only for `last`;
                    // if this replica lags the subscriber's `from`, the
                    // marker says so (`current < last`) and the subscriber
                    // can go to another replica.
                    let (shard_id, epoch, current) = shard_epoch_seq(&shard);
                    let marker = Arc::new(ChangeEvent::Progress { shard: shard_id, epoch, seq: current.min(last) });
                    if tx.send(marker).await.is_err() {
                        return;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// A minimal generator: runs `body` with a sender, yields what it sends.
fn async_stream<T, F, Fut>(body: F) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(body(tx));
    let stream = tokio_stream_from(rx);
    // The task ends when the receiver (the HTTP response) is dropped,
    // because its next send fails; nothing to join.
    drop(task);
    stream
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
