//! `Stats` for every connection at the cost of one: the counters are read
//! and encoded once per `ws_stats_interval_ms` tick for all connections,
//! and the frame goes out only when it differs from the last one sent.
//! An idle grid (no writes, no connections coming or going) sends none.
//! A new connection gets the last frame right after `Hello`, so it never
//! waits for a change to learn the counters.

use std::sync::Mutex;

use bytes::Bytes;
use checkraft_proto::ws::ServerMessage;

/// The last `Stats` sent to everyone.
#[derive(Default)]
pub struct StatsCast {
    last: Mutex<Option<Sent>>,
}

struct Sent {
    checked: u64,
    online: u32,
    frame: Bytes,
}

impl StatsCast {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Sent>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The encoded frame to send to every connection when `checked` or
    /// `online` differs from what was last sent; `None` when nothing
    /// changed.
    pub fn update(&self, checked: u64, online: u32) -> Option<Bytes> {
        let mut last = self.lock();
        if last
            .as_ref()
            .is_some_and(|s| s.checked == checked && s.online == online)
        {
            return None;
        }
        let frame = Bytes::from(ServerMessage::Stats { checked, online }.encode());
        *last = Some(Sent {
            checked,
            online,
            frame: frame.clone(),
        });
        Some(frame)
    }

    /// The last frame sent, for a new connection (`None` before the
    /// first).
    pub fn current(&self) -> Option<Bytes> {
        self.lock().as_ref().map(|s| s.frame.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_sent_and_the_last_is_kept() {
        let cast = StatsCast::default();
        assert_eq!(cast.current(), None);
        let first = cast.update(10, 3).expect("the first value is a change");
        assert_eq!(
            ServerMessage::decode(&first).unwrap(),
            ServerMessage::Stats {
                checked: 10,
                online: 3
            }
        );
        assert_eq!(cast.update(10, 3), None, "unchanged: nothing to send");
        assert_eq!(cast.current(), Some(first.clone()));
        let online = cast.update(10, 4).expect("online moved");
        let checked = cast.update(11, 4).expect("checked moved");
        assert_ne!(online, checked);
        assert_eq!(cast.current(), Some(checked));
    }
}
