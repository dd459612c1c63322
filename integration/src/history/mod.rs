//! [`History`]: what a workload wrote and read, and a checker of the
//! promises the cluster makes about it.
//!
//! Workload tasks record every operation into one shared [`History`]:
//! - **writes** ([`WriteOp`]), one per box set: the box, the value (sets are
//!   absolute), the API it went through ([`WriteApi`]), the instants of
//!   invocation (before the first request left) and completion (after the
//!   last answer arrived), and the [`Outcome`]: acknowledged (with the
//!   shard's `seq`, the raft log index and the answering node where the API
//!   tells them), indeterminate (timed out, connection lost, 503: it may or
//!   may not take effect), or failed (refused before it could reach the log:
//!   400, 409, 429);
//! - **reads** ([`ReadOp`]): the value seen, of one box (a gateway's `GET
//!   /api/boxes/{i}`) or of a whole shard (a node's `GET /shards/{id}/read`,
//!   linearizable or from one replica), with invocation and completion;
//! - **replica states**: every node read also records `(node, shard,
//!   applied_index, seq, content)`, and after the run, once healed and
//!   converged, each replica's final state ([`History::record_final`]).
//!
//! [`History::check`] then verifies, and lists every violation as an
//! [`Anomaly`] in its [`Report`]:
//!
//! - **(a) no acknowledged write is lost.** Per box of each replica's final
//!   state, the value must be one that some write could have left last. An
//!   acknowledged write `w` can be last unless another acknowledged write was
//!   invoked after `w` completed (real-time order: that one took effect
//!   later). An indeterminate write can always be last: it may take effect
//!   at any instant after its invocation, even after its client gave up (a
//!   request that waits in a paused node's socket buffer is proposed when
//!   the node resumes). The initial value (`false`) can be last only when no
//!   write to the box was acknowledged. A set bit that no write ever set is
//!   reported too. (Workloads should stop writing a box after an
//!   indeterminate write to it, as `chaos_random` does: then that write is
//!   the box's last, and "a later indeterminate write may explain it" is
//!   exactly the rule above, with no slack.)
//! - **(b) no stale read where the API promises none.** A read that saw
//!   value `v` of a box needs a write of `v` (or the initial value) that was
//!   invoked before the read completed and that is not certainly
//!   overwritten before the read began, i.e. by a *must-see* write: an
//!   acknowledged write that was invoked after it completed and that itself
//!   completed before the read was invoked. Which acknowledged writes a read
//!   must see depends on its API ([`ReadApi`]): a linearizable node read
//!   must see every write acknowledged before it was invoked; a gateway read
//!   must see the writes acknowledged by the same gateway before it
//!   (read-your-writes on one gateway; `PUT` answers 200 only once that
//!   gateway shows the write); a replica read promises nothing, so only a
//!   value that no write could have produced (a phantom) is flagged.
//! - **(c) replicas agree by content.** Any two states of a shard recorded
//!   at the same applied index, from any replicas at any time (restarts
//!   included), must have the same `seq` and the same boxes (compared as
//!   sets, not bytes); two states with the same `seq` must have the same
//!   boxes. At the end, every replica's final state must be equal in
//!   applied index, `seq` and boxes.
//!
//! The checker is exact for these rules but not a full linearizability
//! checker (that is NP-complete in general): it checks each box and each
//! read on its own. Keeping each box written by one sequential writer, as
//! `chaos_random` does, loses nothing by that.
//!
//! Times in anomaly descriptions are milliseconds since the history began.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use checkraft_proto::ShardRead;
use croaring::{Bitmap, Portable};

mod check;
mod ops;
mod report;
#[cfg(test)]
mod tests;

pub use ops::*;
pub use report::*;

/// The value of a box no write has touched.
pub const INITIAL: bool = false;

/// A final state: the replica's state and its boxes.
#[derive(Debug, Clone)]
struct FinalState {
    state: ReplicaState,
    start: u64,
    end: u64,
    bitmap: Vec<u8>,
}

#[derive(Default)]
struct Recorded {
    writes: Vec<WriteOp>,
    reads: Vec<ReadOp>,
    /// Distinct states per (shard, applied index), first seen first.
    by_index: HashMap<(u64, u64), Vec<ReplicaState>>,
    /// Distinct states per (shard, seq).
    by_seq: HashMap<(u64, u64), Vec<ReplicaState>>,
    replica_states: usize,
    finals: BTreeMap<u64, Vec<FinalState>>,
}

/// A shared record of operations; `Sync`, so workload tasks share it in an
/// `Arc`.
pub struct History {
    t0: Instant,
    inner: Mutex<Recorded>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

fn ms(t: Instant, t0: Instant) -> i128 {
    if t >= t0 {
        (t - t0).as_millis() as i128
    } else {
        -((t0 - t).as_millis() as i128)
    }
}

/// Decodes `Portable` bytes into the sorted list of set boxes.
fn decode(bytes: &[u8]) -> Option<Vec<u32>> {
    Bitmap::try_deserialize::<Portable>(bytes).map(|b| b.to_vec())
}

fn content_hash(boxes: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    boxes.hash(&mut h);
    h.finish()
}

impl History {
    /// An empty history; its times count from now.
    pub fn new() -> Self {
        Self {
            t0: Instant::now(),
            inner: Mutex::new(Recorded::default()),
        }
    }

    /// The instant the history began (the zero of reported times).
    pub fn t0(&self) -> Instant {
        self.t0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one box set.
    pub fn record_write(&self, op: WriteOp) {
        self.lock().writes.push(op);
    }

    /// Records the sets of one request (all with the same outcome).
    #[allow(clippy::too_many_arguments)]
    pub fn record_writes(
        &self,
        process: &str,
        shard: u64,
        sets: &[(u32, bool)],
        api: WriteApi,
        invoked: Instant,
        completed: Instant,
        outcome: Outcome,
    ) {
        let mut inner = self.lock();
        for &(index, value) in sets {
            inner.writes.push(WriteOp {
                process: process.to_string(),
                shard,
                index,
                value,
                api,
                invoked,
                completed,
                outcome: outcome.clone(),
            });
        }
    }

    /// Records a read of one box.
    pub fn record_box_read(
        &self,
        process: &str,
        api: ReadApi,
        index: u32,
        value: bool,
        invoked: Instant,
        completed: Instant,
    ) {
        self.lock().reads.push(ReadOp {
            process: process.to_string(),
            api,
            node: None,
            invoked,
            completed,
            seen: Seen::Box { index, value },
        });
    }

    /// Records a node's shard read (`api` is [`ReadApi::Linearizable`] or
    /// [`ReadApi::Replica`]), both as a read and as a replica state.
    pub fn record_shard_read(
        &self,
        process: &str,
        api: ReadApi,
        node: u64,
        invoked: Instant,
        completed: Instant,
        read: &ShardRead,
    ) {
        let state = Self::state_of(node, read, completed);
        let mut inner = self.lock();
        if let Some(state) = state {
            Self::note_state(&mut inner, state);
        }
        inner.reads.push(ReadOp {
            process: process.to_string(),
            api,
            node: Some(node),
            invoked,
            completed,
            seen: Seen::Shard {
                shard: read.descriptor.shard,
                applied_index: read.applied_index,
                seq: read.seq,
                start: read.start,
                end: read.end,
                bitmap: read.bitmap.clone(),
            },
        });
    }

    /// Records a replica's state only (no read check).
    pub fn record_replica_state(&self, node: u64, read: &ShardRead, at: Instant) {
        if let Some(state) = Self::state_of(node, read, at) {
            Self::note_state(&mut self.lock(), state);
        }
    }

    /// Records replica `node`'s final state of a shard, read (not
    /// linearizable) after the faults were healed and the replicas had
    /// converged. Every replica of every shard should be recorded.
    pub fn record_final(&self, node: u64, read: &ShardRead) {
        let at = Instant::now();
        let Some(state) = Self::state_of(node, read, at) else {
            return;
        };
        let mut inner = self.lock();
        Self::note_state(&mut inner, state);
        inner
            .finals
            .entry(read.descriptor.shard)
            .or_default()
            .push(FinalState {
                state,
                start: read.start,
                end: read.end,
                bitmap: read.bitmap.clone(),
            });
    }

    fn state_of(node: u64, read: &ShardRead, at: Instant) -> Option<ReplicaState> {
        // Only whole-shard reads describe the replica's state.
        if (read.start, read.end) != (read.descriptor.start, read.descriptor.end) {
            return None;
        }
        let boxes = decode(&read.bitmap).unwrap_or_default();
        Some(ReplicaState {
            node,
            shard: read.descriptor.shard,
            applied_index: read.applied_index,
            seq: read.seq,
            content: content_hash(&boxes),
            cardinality: boxes.len() as u64,
            at,
        })
    }

    fn note_state(inner: &mut Recorded, state: ReplicaState) {
        inner.replica_states += 1;
        let at_index = inner
            .by_index
            .entry((state.shard, state.applied_index))
            .or_default();
        if !at_index.iter().any(|s| s.same_content(&state)) {
            at_index.push(state);
        }
        let at_seq = inner.by_seq.entry((state.shard, state.seq)).or_default();
        if !at_seq.iter().any(|s| s.content == state.content) {
            at_seq.push(state);
        }
    }

    /// Every write recorded so far.
    pub fn writes(&self) -> Vec<WriteOp> {
        self.lock().writes.clone()
    }

    /// (acknowledged, indeterminate, failed) box sets so far.
    pub fn write_counts(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        let acked = inner.writes.iter().filter(|w| w.outcome.acked()).count();
        let failed = inner
            .writes
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Failed(_)))
            .count();
        (acked, inner.writes.len() - acked - failed, failed)
    }

    /// The longest time without an acknowledged write in `[from, to]`,
    /// counting only acknowledged writes matching `filter` that were
    /// invoked at or after `from` and completed by `to`: the largest gap
    /// between `from`, their completions, and `to`.
    pub fn longest_ack_gap(
        &self,
        from: Instant,
        to: Instant,
        filter: impl Fn(&WriteOp) -> bool,
    ) -> Duration {
        let mut done: Vec<Instant> = self
            .lock()
            .writes
            .iter()
            .filter(|w| w.outcome.acked() && w.invoked >= from && w.completed <= to && filter(w))
            .map(|w| w.completed)
            .collect();
        done.sort();
        let mut last = from;
        let mut longest = Duration::ZERO;
        for t in done.into_iter().chain([to]) {
            longest = longest.max(t.saturating_duration_since(last));
            last = last.max(t);
        }
        longest
    }
}
