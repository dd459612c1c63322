//! [`Pulse`]: one write in flight to one shard, all the time, recording
//! when each was acknowledged, so a test can measure how long a fault
//! stopped writes (the longest gap between two acknowledgements).
//!
//! Writes go straight to the node the pulse believes leads the shard. A
//! `ForwardToLeader` answer moves it to the named leader; an error or a
//! timeout moves it to the next node, so it finds the new leader after a
//! node stops or pauses without waiting for the map.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkraft_proto::{SetBatch, WriteOutcome};
use tokio::task::JoinHandle;

use crate::client::NodeClient;

/// A running one-in-flight writer; [`Pulse::stop`] returns its acks.
pub struct Pulse {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Instant>>,
}

impl Pulse {
    /// Starts writing to `shard` (`epoch`, boxes `[start, end)`) with the
    /// admin `token`, first to node `first` of `members`.
    pub fn start(
        members: BTreeMap<u64, String>,
        token: &str,
        shard: u64,
        (epoch, start, end): (u64, u64, u64),
        first: u64,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let token = token.to_string();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let ids: Vec<u64> = members.keys().copied().collect();
                let mut acks = Vec::new();
                let mut target = first;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let batch = SetBatch {
                        epoch,
                        sets: vec![((start + i % (end - start)) as u32, i.is_multiple_of(2))],
                    };
                    i += 1;
                    let client = NodeClient::new(&members[&target]).with_token(&token);
                    let write = client.write(shard, &batch);
                    match tokio::time::timeout(Duration::from_millis(500), write).await {
                        Ok(Ok(WriteOutcome::Applied { .. })) => acks.push(Instant::now()),
                        Ok(Ok(WriteOutcome::ForwardToLeader {
                            leader_id: Some(l), ..
                        })) if members.contains_key(&l) && l != target => target = l,
                        _ => {
                            let next = ids.iter().position(|&id| id == target).unwrap_or(0) + 1;
                            target = ids[next % ids.len()];
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                acks
            }
        });
        Self { stop, task }
    }

    /// Stops the writer and returns when each write was acknowledged.
    pub async fn stop(self) -> Vec<Instant> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("pulse writer")
    }
}

/// The longest time without an acknowledgement after `from`: between two
/// acks, or from `from` to the first ack after it. `None` when no write
/// was acknowledged after `from`.
pub fn longest_pause(acks: &[Instant], from: Instant) -> Option<Duration> {
    let mut last = from;
    let mut pause = None;
    for &ack in acks.iter().filter(|&&a| a > from) {
        pause = Some(pause.unwrap_or(Duration::ZERO).max(ack - last));
        last = ack;
    }
    pause
}
