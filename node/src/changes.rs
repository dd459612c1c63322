//! A shard's change log: the recent events kept for replay, and the
//! broadcast of live ones.
//!
//! The state machine pushes one event per accepted command while it holds
//! the shard lock, and subscribers take their starting point under the same
//! lock, so a subscriber sees every event after its starting `seq` exactly
//! once: retained ones from [`ChangeLog::replay_from`], then live ones from
//! the broadcast receiver, with no gap and no overlap between the two.

use std::collections::VecDeque;
use std::sync::Arc;

use checkraft_proto::ChangeEvent;
use tokio::sync::broadcast;

/// Capacity of the live broadcast channel. A subscriber that falls further
/// behind than this is told it lagged and catches up from the retained log
/// (or a snapshot).
const BROADCAST_CAPACITY: usize = 1024;

/// Recent change events of one shard plus the live broadcast.
pub struct ChangeLog {
    retained: VecDeque<Arc<ChangeEvent>>,
    capacity: usize,
    live: broadcast::Sender<Arc<ChangeEvent>>,
}

/// Where a new subscription starts.
pub enum Start {
    /// Replay these retained events, then follow live ones.
    Replay(Vec<Arc<ChangeEvent>>),
    /// The requested `seq` is gone: send the full state first.
    NeedSnapshot,
}

impl ChangeLog {
    /// An empty log retaining at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            retained: VecDeque::new(),
            capacity: capacity.max(1),
            live,
        }
    }

    /// Records and broadcasts an event. Its `seq` must follow the last one,
    /// except for a `Snapshot` event, which resets the log.
    pub fn push(&mut self, event: ChangeEvent) {
        if matches!(event, ChangeEvent::Snapshot { .. }) {
            self.retained.clear();
        }
        let event = Arc::new(event);
        if self.retained.len() == self.capacity {
            self.retained.pop_front();
        }
        self.retained.push_back(event.clone());
        // No receivers is fine: nobody is subscribed.
        let _ = self.live.send(event);
    }

    /// Forgets all retained events (after a snapshot install replaced the
    /// state wholesale), and broadcasts `snapshot` to live subscribers.
    pub fn reset(&mut self, snapshot: ChangeEvent) {
        self.push(snapshot);
    }

    /// The events after `from` (exclusive), when the log still holds all of
    /// them, for a shard currently at `current_seq`.
    pub fn replay_from(&self, from: u64, current_seq: u64) -> Start {
        if from >= current_seq {
            return Start::Replay(Vec::new());
        }
        match self.retained.front() {
            Some(first) if first.seq() <= from + 1 => Start::Replay(
                self.retained
                    .iter()
                    .filter(|e| e.seq() > from)
                    .cloned()
                    .collect(),
            ),
            _ => Start::NeedSnapshot,
        }
    }

    /// A receiver of live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        self.live.subscribe()
    }

    /// Number of live subscribers.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> ChangeEvent {
        ChangeEvent::Changes {
            shard: 1,
            epoch: 1,
            seq,
            sets: vec![],
        }
    }

    #[test]
    fn replays_what_is_retained_and_asks_for_snapshot_otherwise() {
        let mut log = ChangeLog::new(3);
        for s in 1..=5 {
            log.push(ev(s));
        }
        // Retained: 3, 4, 5.
        assert!(matches!(log.replay_from(1, 5), Start::NeedSnapshot));
        match log.replay_from(2, 5) {
            Start::Replay(v) => {
                assert_eq!(v.iter().map(|e| e.seq()).collect::<Vec<_>>(), vec![3, 4, 5])
            }
            Start::NeedSnapshot => panic!("3..=5 is retained"),
        }
        match log.replay_from(5, 5) {
            Start::Replay(v) => assert!(v.is_empty()),
            Start::NeedSnapshot => panic!("nothing to replay"),
        }
    }

    #[test]
    fn empty_log_needs_snapshot_when_behind() {
        let log = ChangeLog::new(3);
        assert!(matches!(log.replay_from(0, 4), Start::NeedSnapshot));
    }
}
