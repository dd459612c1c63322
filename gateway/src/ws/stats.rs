//! `Stats` for every connection at the cost of one: the counters are read
//! and encoded once per `ws_stats_interval_ms` tick for all connections,
//! and a new frame is made only when they differ from the last one. An
//! idle grid (no writes, no connections coming or going) makes none.
//! A new connection gets the counters read at its `Hello` (so `online`
//! counts it) right after `Hello`, and never waits for a change to learn
//! them. That frame is its own: it makes no new generation, so an arrival
//! does not make every other connection's next write carry a `Stats`.
//!
//! A changed frame is not pushed to every connection at once: it **rides
//! along** with the next frames a connection is sent anyway (an Update, an
//! Ack), in the same write, and goes alone only to a connection whose last
//! `Stats` is `ws_stats_alone_ms` old ([`StatsMark`]). On the wire every
//! write is a TCP segment of ~90 bytes of headers and a syscall in the
//! gateway, so a `Stats` of its own every few seconds cost a quiet
//! connection more than everything else it is sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use checkraft_proto::ws::ServerMessage;

/// The last `Stats` made for everyone.
#[derive(Default)]
pub struct StatsCast {
    last: Mutex<Option<Sent>>,
    /// The last frame's generation, read without the lock.
    generation: AtomicU64,
}

struct Sent {
    checked: u64,
    online: u32,
    frame: StatsFrame,
}

/// One `Stats` frame and its generation (1 for the first, then one more
/// per change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsFrame {
    /// Counts the frames made so far.
    pub generation: u64,
    /// The encoded message.
    pub bytes: Bytes,
}

impl StatsCast {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Sent>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a new frame when `checked` or `online` differs from the last
    /// one; `None` when nothing changed.
    pub fn update(&self, checked: u64, online: u32) -> Option<StatsFrame> {
        let mut last = self.lock();
        if last
            .as_ref()
            .is_some_and(|s| s.checked == checked && s.online == online)
        {
            return None;
        }
        let frame = StatsFrame {
            generation: last.as_ref().map_or(1, |s| s.frame.generation + 1),
            bytes: Bytes::from(ServerMessage::Stats { checked, online }.encode()),
        };
        *last = Some(Sent {
            checked,
            online,
            frame: frame.clone(),
        });
        self.generation.store(frame.generation, Ordering::Release);
        Some(frame)
    }

    /// The last frame, if it is newer than `generation` (cheap when not:
    /// no lock is taken).
    pub fn newer_than(&self, generation: u64) -> Option<StatsFrame> {
        if self.generation.load(Ordering::Acquire) <= generation {
            return None;
        }
        self.current()
    }

    /// The frame for a connection that just said `Hello`: `checked` and
    /// `online` as read now, numbered as the last frame made (it is at
    /// least as new; 0 before the first). It is the last frame itself when
    /// the counters match it, and otherwise is encoded for this connection
    /// alone, without a new generation (see the module docs).
    pub fn for_hello(&self, checked: u64, online: u32) -> StatsFrame {
        let last = self.lock();
        match last.as_ref() {
            Some(s) if s.checked == checked && s.online == online => s.frame.clone(),
            _ => StatsFrame {
                generation: last.as_ref().map_or(0, |s| s.frame.generation),
                bytes: Bytes::from(ServerMessage::Stats { checked, online }.encode()),
            },
        }
    }

    /// The last frame made (`None` before the first).
    pub fn current(&self) -> Option<StatsFrame> {
        self.lock().as_ref().map(|s| s.frame.clone())
    }
}

/// Which `Stats` a connection last got, and when.
#[derive(Debug, Clone, Copy)]
pub struct StatsMark {
    generation: u64,
    at: Instant,
}

impl StatsMark {
    /// A connection that got `frame` (right after its Hello) at `now`.
    pub fn new(frame: Option<&StatsFrame>, now: Instant) -> Self {
        Self {
            generation: frame.map_or(0, |f| f.generation),
            at: now,
        }
    }

    /// The generation of the connection's last `Stats` (0: none yet).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `frame` is newer than the connection's.
    pub fn stale(&self, frame: &StatsFrame) -> bool {
        frame.generation > self.generation
    }

    /// Whether `frame` should go alone at `now`: it is newer, and the
    /// connection's last `Stats` is at least `alone` old, or it has none
    /// (it came before the gateway made its first).
    pub fn due_alone(&self, frame: &StatsFrame, now: Instant, alone: Duration) -> bool {
        self.stale(frame)
            && (self.generation == 0 || now.saturating_duration_since(self.at) >= alone)
    }

    /// Records that `frame` was queued at `now`.
    pub fn sent(&mut self, frame: &StatsFrame, now: Instant) {
        self.generation = frame.generation;
        self.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_make_frames_and_the_last_is_kept() {
        let cast = StatsCast::default();
        assert_eq!(cast.current(), None);
        let first = cast.update(10, 3).expect("the first value is a change");
        assert_eq!(first.generation, 1);
        assert_eq!(
            ServerMessage::decode(&first.bytes).unwrap(),
            ServerMessage::Stats {
                checked: 10,
                online: 3
            }
        );
        assert_eq!(cast.update(10, 3), None, "unchanged: nothing to send");
        assert_eq!(cast.current(), Some(first.clone()));
        let online = cast.update(10, 4).expect("online moved");
        let checked = cast.update(11, 4).expect("checked moved");
        assert_ne!(online.bytes, checked.bytes);
        assert_eq!((online.generation, checked.generation), (2, 3));
        assert_eq!(cast.current(), Some(checked.clone()));
        assert_eq!(cast.newer_than(3), None);
        assert_eq!(cast.newer_than(2), Some(checked));
    }

    #[test]
    fn a_changed_frame_goes_alone_only_once_the_last_is_old_enough() {
        let cast = StatsCast::default();
        let t0 = Instant::now();
        let alone = Duration::from_secs(30);
        let first = cast.update(1, 1).unwrap();
        let mut mark = StatsMark::new(Some(&first), t0);
        assert!(!mark.stale(&first), "got it after Hello");
        let second = cast.update(2, 1).unwrap();
        assert!(mark.stale(&second));
        assert!(!mark.due_alone(&second, t0 + Duration::from_secs(29), alone));
        assert!(mark.due_alone(&second, t0 + alone, alone));
        mark.sent(&second, t0 + Duration::from_secs(31));
        assert!(!mark.stale(&second));
        assert!(!mark.due_alone(&second, t0 + Duration::from_secs(90), alone));
        // A connection that came before the first frame gets it at once.
        assert!(StatsMark::new(None, t0).due_alone(&first, t0, alone));
    }

    #[test]
    fn a_new_connection_gets_the_counters_of_now_without_a_new_generation() {
        let cast = StatsCast::default();
        let before = cast.for_hello(5, 1);
        assert_eq!(before.generation, 0, "before the first frame");
        let made = cast.update(5, 1).unwrap();
        assert_eq!(cast.for_hello(5, 1), made, "unchanged: the shared frame");
        // The new connection counts itself: its frame says 2 while the
        // last one made says 1, and nobody else is sent anything new.
        let own = cast.for_hello(5, 2);
        assert_eq!(own.generation, made.generation);
        assert_eq!(
            ServerMessage::decode(&own.bytes).unwrap(),
            ServerMessage::Stats {
                checked: 5,
                online: 2
            }
        );
        assert_eq!(cast.newer_than(made.generation), None);
        // The next tick's frame is newer than what it got.
        let next = cast.update(5, 2).unwrap();
        assert!(StatsMark::new(Some(&own), Instant::now()).stale(&next));
    }
}
