//! Each connection's bandwidth budget (`ws_budget_bytes_per_second`,
//! averaged over `ws_budget_window_ms`), and the Updates held for a
//! connection over it.
//!
//! The budget is a token bucket of payload bytes: it refills at the
//! budget's rate up to a window's worth, and every message queued to the
//! connection spends its length (it may go negative: an Ack or a Pong is
//! never held back). While the bucket is negative, an Update for the
//! connection is not queued but **held**: one [`Held`] per chunk, into
//! which later Updates of the chunk merge. Once the bucket is back at zero
//! or more, the connection's task releases every held Update, one frame
//! per chunk, encoded for this connection alone.
//!
//! Merging keeps the protocol's chain: a held Update starts at the
//! `prev_version` of the first one held, which is the version the client
//! last got for that chunk (every earlier Update of the chunk was queued
//! before it, in order), and ends at the `version` of the last one merged,
//! with one entry per changed box holding its last value. (A box flipped
//! back to where it started is still sent: a client that refetched the
//! chunk meanwhile may hold the value in between.) An Update that does not
//! chain on the held one (its chunk's fan-out started over, and a
//! `Resync{StateReset}` is on its way) replaces it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use checkraft_proto::ws::{ServerMessage, UpdateEntry};

/// An Update as the fan-out built it: its fields (for merging) and its
/// bytes (encoded once, shared by every subscriber that is not holding).
#[derive(Debug)]
pub struct UpdateFrame {
    /// The chunk.
    pub chunk: u32,
    /// The version the entries start from.
    pub prev_version: u64,
    /// The version after them.
    pub version: u64,
    /// Net changes, ascending by offset.
    pub entries: Vec<UpdateEntry>,
    /// The encoded message.
    pub bytes: Bytes,
}

impl UpdateFrame {
    /// Encodes the Update once.
    pub fn new(chunk: u32, prev_version: u64, version: u64, entries: Vec<UpdateEntry>) -> Self {
        let msg = ServerMessage::Update {
            chunk,
            prev_version,
            version,
            entries,
        };
        let bytes = Bytes::from(msg.encode());
        let ServerMessage::Update { entries, .. } = msg else {
            unreachable!("built as an Update")
        };
        Self {
            chunk,
            prev_version,
            version,
            entries,
            bytes,
        }
    }
}

/// One chunk's Updates held for a connection over its budget, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    prev_version: u64,
    version: u64,
    entries: BTreeMap<u16, bool>,
}

impl Held {
    fn new(frame: &UpdateFrame) -> Self {
        Self {
            prev_version: frame.prev_version,
            version: frame.version,
            entries: frame
                .entries
                .iter()
                .map(|e| (e.offset, e.checked))
                .collect(),
        }
    }

    /// Folds `frame` in: every box changed from the first held
    /// `prev_version` to `frame.version`, with its last value.
    fn merge(&mut self, frame: &UpdateFrame) {
        if frame.prev_version != self.version {
            *self = Self::new(frame);
            return;
        }
        for e in &frame.entries {
            self.entries.insert(e.offset, e.checked);
        }
        self.version = frame.version;
    }

    /// The merged Update, encoded for one connection.
    fn encode(&self, chunk: u32) -> Bytes {
        Bytes::from(
            ServerMessage::Update {
                chunk,
                prev_version: self.prev_version,
                version: self.version,
                entries: self
                    .entries
                    .iter()
                    .map(|(&offset, &checked)| UpdateEntry { offset, checked })
                    .collect(),
            }
            .encode(),
        )
    }
}

/// A connection's budget and its held Updates.
#[derive(Debug)]
pub struct Budget {
    /// Bytes per second; 0: no budget (nothing is ever held).
    rate: f64,
    /// The most the bucket holds: a window's worth.
    depth: f64,
    tokens: f64,
    at: Instant,
    held: HashMap<u32, Held>,
}

/// What [`Budget::offer`] decided for an Update.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queue the shared bytes (the budget was charged).
    Send,
    /// Held (merged into the chunk's held Update).
    Held,
}

impl Budget {
    /// A full bucket of `per_second` over `window`; `per_second` 0 is no
    /// budget.
    pub fn new(per_second: u64, window: Duration, now: Instant) -> Self {
        let rate = per_second as f64;
        let depth = rate * window.as_secs_f64();
        Self {
            rate,
            depth,
            tokens: depth,
            at: now,
            held: HashMap::new(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.depth);
        self.at = now;
    }

    /// Spends `bytes` of a message that is sent whatever the budget.
    pub fn charge(&mut self, bytes: usize) {
        if self.rate > 0.0 {
            self.tokens -= bytes as f64;
        }
    }

    /// Decides what happens to `frame`: sent now (and charged) while the
    /// bucket is not negative and nothing of its chunk is held, else held.
    pub fn offer(&mut self, frame: &UpdateFrame, now: Instant) -> Offer {
        if self.rate <= 0.0 {
            return Offer::Send;
        }
        if let Some(held) = self.held.get_mut(&frame.chunk) {
            held.merge(frame);
            return Offer::Held;
        }
        self.refill(now);
        if self.tokens >= 0.0 {
            self.charge(frame.bytes.len());
            Offer::Send
        } else {
            self.held.insert(frame.chunk, Held::new(frame));
            Offer::Held
        }
    }

    /// When the held Updates may go out (`None`: nothing is held).
    pub fn release_at(&self) -> Option<Instant> {
        if self.held.is_empty() {
            return None;
        }
        let wait = (-self.tokens).max(0.0) / self.rate;
        Some(self.at + Duration::from_secs_f64(wait))
    }

    /// The held Updates, encoded and charged, once the bucket is back at
    /// zero or more (or always when `force`); in chunk order.
    pub fn release(&mut self, now: Instant, force: bool) -> Vec<Bytes> {
        if self.held.is_empty() {
            return Vec::new();
        }
        self.refill(now);
        if self.tokens < 0.0 && !force {
            return Vec::new();
        }
        let mut held: Vec<(u32, Held)> = self.held.drain().collect();
        held.sort_unstable_by_key(|(chunk, _)| *chunk);
        held.into_iter()
            .map(|(chunk, h)| {
                let bytes = h.encode(chunk);
                self.charge(bytes.len());
                bytes
            })
            .collect()
    }

    /// Forgets what is held for `chunk` (unsubscribed).
    pub fn forget(&mut self, chunk: u32) {
        self.held.remove(&chunk);
    }

    /// Forgets everything held (a `Resync` of every subscription
    /// replaces it).
    pub fn clear(&mut self) {
        self.held.clear();
    }

    /// Chunks with a held Update.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunk: u32, prev: u64, version: u64, sets: &[(u16, bool)]) -> UpdateFrame {
        UpdateFrame::new(
            chunk,
            prev,
            version,
            sets.iter()
                .map(|&(offset, checked)| UpdateEntry { offset, checked })
                .collect(),
        )
    }

    fn decode(bytes: &Bytes) -> ServerMessage {
        ServerMessage::decode(bytes).unwrap()
    }

    #[test]
    fn without_a_budget_everything_is_sent() {
        let now = Instant::now();
        let mut budget = Budget::new(0, Duration::from_secs(5), now);
        for v in 1..100 {
            assert_eq!(
                budget.offer(&frame(1, v - 1, v, &[(3, true)]), now),
                Offer::Send
            );
        }
        assert_eq!(budget.release_at(), None);
    }

    #[test]
    fn over_budget_updates_merge_on_the_clients_chain() {
        let t0 = Instant::now();
        // 10 B/s over 1 s: a 10-byte bucket.
        let mut budget = Budget::new(10, Duration::from_secs(1), t0);
        let first = frame(4, 5, 7, &[(1, true), (2, true)]);
        assert_eq!(budget.offer(&first, t0), Offer::Send);
        assert!(first.bytes.len() < 10);
        let second = frame(4, 7, 9, &[(3, true)]);
        // The bucket still holds a few bytes: sent, and now negative.
        assert_eq!(budget.offer(&second, t0), Offer::Send);
        // Over budget: held from the client's last version (9) on.
        assert_eq!(
            budget.offer(&frame(4, 9, 12, &[(1, false), (5, true)]), t0),
            Offer::Held
        );
        assert_eq!(
            budget.offer(&frame(4, 12, 15, &[(1, true), (6, true)]), t0),
            Offer::Held
        );
        assert_eq!(
            budget.offer(&frame(6, 0, 15, &[(0, true)]), t0),
            Offer::Held
        );
        // Box 1 changed twice while held: sent once, with its last value.
        let due = budget.release_at().expect("held");
        assert!(due > t0 && due <= t0 + Duration::from_secs(2), "{due:?}");
        assert!(budget.release(t0, false).is_empty(), "still over budget");
        let out = budget.release(due, false);
        assert_eq!(
            out.iter().map(decode).collect::<Vec<_>>(),
            vec![
                ServerMessage::Update {
                    chunk: 4,
                    prev_version: 9,
                    version: 15,
                    entries: vec![
                        UpdateEntry {
                            offset: 1,
                            checked: true
                        },
                        UpdateEntry {
                            offset: 5,
                            checked: true
                        },
                        UpdateEntry {
                            offset: 6,
                            checked: true
                        },
                    ],
                },
                ServerMessage::Update {
                    chunk: 6,
                    prev_version: 0,
                    version: 15,
                    entries: vec![UpdateEntry {
                        offset: 0,
                        checked: true
                    }],
                },
            ]
        );
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.release_at(), None);
    }

    #[test]
    fn an_update_off_the_chain_replaces_the_held_one() {
        let t0 = Instant::now();
        let mut budget = Budget::new(1, Duration::from_secs(1), t0);
        budget.charge(100);
        assert_eq!(budget.offer(&frame(2, 3, 4, &[(9, true)]), t0), Offer::Held);
        // The chunk's fan-out started over at 20 (a Resync follows).
        assert_eq!(
            budget.offer(&frame(2, 20, 21, &[(8, true)]), t0),
            Offer::Held
        );
        let out = budget.release(t0, true);
        assert_eq!(
            decode(&out[0]),
            ServerMessage::Update {
                chunk: 2,
                prev_version: 20,
                version: 21,
                entries: vec![UpdateEntry {
                    offset: 8,
                    checked: true
                }],
            }
        );
    }
}
