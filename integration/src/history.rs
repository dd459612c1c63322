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
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use checkraft_proto::ShardRead;
use croaring::{Bitmap, Portable};

/// The value of a box no write has touched.
pub const INITIAL: bool = false;

/// The API a write went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteApi {
    /// `POST /shards/{id}/write` on a node (`NodeClient::write`).
    Node,
    /// `PUT /api/boxes/{i}` on gateway `id`.
    Gateway(u64),
}

impl fmt::Display for WriteApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteApi::Node => write!(f, "node write"),
            WriteApi::Gateway(g) => write!(f, "gateway {g} PUT"),
        }
    }
}

/// The API a read went through, which decides what it promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadApi {
    /// `GET /shards/{id}/read?linearizable=true`: sees every write
    /// acknowledged before it was invoked.
    Linearizable,
    /// `GET /shards/{id}/read?linearizable=false`: one replica's applied
    /// state, possibly stale; promises nothing about recency.
    Replica,
    /// `GET /api/boxes/{i}` (or a chunk) on gateway `id`: sees every write
    /// that gateway acknowledged before it was invoked.
    Gateway(u64),
}

impl ReadApi {
    /// A short label for summaries.
    pub fn label(&self) -> String {
        match self {
            ReadApi::Linearizable => "node linearizable read".into(),
            ReadApi::Replica => "node replica read".into(),
            ReadApi::Gateway(g) => format!("gateway {g} GET"),
        }
    }

    /// Whether a read through this API must see acknowledged write `w`
    /// (given that `w` completed before the read was invoked).
    fn must_see(&self, w: &WriteOp) -> bool {
        if !w.outcome.acked() {
            return false;
        }
        match self {
            ReadApi::Linearizable => true,
            ReadApi::Replica => false,
            ReadApi::Gateway(g) => w.api == WriteApi::Gateway(*g),
        }
    }
}

/// What the API said about a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// The shard's change number after (node) or of (gateway) the write.
    pub seq: Option<u64>,
    /// The raft log index of the entry that carried it (node writes).
    pub log_index: Option<u64>,
    /// The node that answered (node writes).
    pub node: Option<u64>,
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: committed and applied.
    Acked(Ack),
    /// Unknown: it may take effect, at any time after its invocation, or
    /// never (why, for reports).
    Indeterminate(String),
    /// Certainly not applied: refused before or instead of taking effect
    /// (400, 409, 429; why, for reports).
    Failed(String),
}

impl Outcome {
    /// Whether the write was acknowledged.
    pub fn acked(&self) -> bool {
        matches!(self, Outcome::Acked(_))
    }
}

/// One box set.
#[derive(Debug, Clone)]
pub struct WriteOp {
    /// Who wrote it (a writer task's name).
    pub process: String,
    /// The shard of the box.
    pub shard: u64,
    /// The box.
    pub index: u32,
    /// The value set.
    pub value: bool,
    /// The API used.
    pub api: WriteApi,
    /// Before the first request was sent.
    pub invoked: Instant,
    /// After the last answer (or give-up).
    pub completed: Instant,
    /// The outcome.
    pub outcome: Outcome,
}

impl WriteOp {
    /// The last instant at which it may take effect: its completion when
    /// acknowledged, never for an indeterminate write (`None`: unbounded).
    fn effect_deadline(&self) -> Option<Instant> {
        match self.outcome {
            Outcome::Acked(_) => Some(self.completed),
            _ => None,
        }
    }

    fn describe(&self, t0: Instant) -> String {
        let outcome = match &self.outcome {
            Outcome::Acked(ack) => {
                let mut s = "acknowledged".to_string();
                if let Some(seq) = ack.seq {
                    s += &format!(", seq {seq}");
                }
                if let Some(i) = ack.log_index {
                    s += &format!(", log index {i}");
                }
                if let Some(n) = ack.node {
                    s += &format!(", by node {n}");
                }
                s
            }
            Outcome::Indeterminate(why) => format!("indeterminate: {why}"),
            Outcome::Failed(why) => format!("failed: {why}"),
        };
        format!(
            "{} of box {} to {} by {} [{} .. {} ms] ({outcome})",
            self.api,
            self.index,
            self.value,
            self.process,
            ms(self.invoked, t0),
            ms(self.completed, t0),
        )
    }
}

/// What a read saw.
#[derive(Debug, Clone)]
pub enum Seen {
    /// One box's value.
    Box {
        /// The box.
        index: u32,
        /// Its value.
        value: bool,
    },
    /// A shard read (`ShardRead`): every box in `[start, end)`.
    Shard {
        /// The shard.
        shard: u64,
        /// The applied index the state reflects.
        applied_index: u64,
        /// The change number the state reflects.
        seq: u64,
        /// First box of the read range.
        start: u64,
        /// One past the last box of the read range.
        end: u64,
        /// croaring `Portable` bytes of the set boxes.
        bitmap: Vec<u8>,
    },
}

/// One read.
#[derive(Debug, Clone)]
pub struct ReadOp {
    /// Who read (a reader task's name).
    pub process: String,
    /// The API used.
    pub api: ReadApi,
    /// The node that answered (node reads).
    pub node: Option<u64>,
    /// Before the request was sent.
    pub invoked: Instant,
    /// After the answer arrived.
    pub completed: Instant,
    /// What it saw.
    pub seen: Seen,
}

/// One replica's state of a shard, as a node read reported it; the boxes
/// as a content hash and a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaState {
    /// The answering node.
    pub node: u64,
    /// The shard.
    pub shard: u64,
    /// Its applied index.
    pub applied_index: u64,
    /// Its change number.
    pub seq: u64,
    /// Hash of the sorted set boxes (content, not bytes).
    pub content: u64,
    /// How many boxes are set.
    pub cardinality: u64,
    /// When it was recorded (the read's completion).
    pub at: Instant,
}

impl ReplicaState {
    fn same_content(&self, other: &ReplicaState) -> bool {
        (self.seq, self.content, self.cardinality) == (other.seq, other.content, other.cardinality)
    }

    fn describe(&self, t0: Instant) -> String {
        format!(
            "node {} at {} ms: applied index {}, seq {}, {} boxes set (content hash {:016x})",
            self.node,
            ms(self.at, t0),
            self.applied_index,
            self.seq,
            self.cardinality,
            self.content
        )
    }
}

/// The class of an [`Anomaly`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// An acknowledged write is missing from a final state, or a box is
    /// set that no write set.
    LostWrite,
    /// A read missed a write its API promises it sees, or saw a value no
    /// write could have produced.
    StaleRead,
    /// Replicas disagree by content at an equal applied index or `seq`, or
    /// did not converge at the end.
    Divergence,
    /// Anything else a test adds ([`Report::push`]).
    Other,
}

/// One violation, described for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// Its class.
    pub kind: AnomalyKind,
    /// What happened, with boxes, values, nodes and times.
    pub description: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.description)
    }
}

/// The result of [`History::check`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every violation found.
    pub anomalies: Vec<Anomaly>,
    /// Box sets acknowledged.
    pub writes_acked: usize,
    /// Box sets with an unknown outcome.
    pub writes_indeterminate: usize,
    /// Box sets certainly not applied.
    pub writes_failed: usize,
    /// Read operations recorded, by API label.
    pub reads: BTreeMap<String, usize>,
    /// (read, box) pairs checked for staleness, by API label.
    pub read_checks: BTreeMap<String, usize>,
    /// Replica states compared (every node read).
    pub replica_states: usize,
    /// Distinct (shard, applied index) points seen.
    pub applied_points: usize,
    /// (final replica state, box) pairs checked for lost writes.
    pub final_boxes_checked: usize,
    /// Final replica states recorded.
    pub final_states: usize,
}

impl Report {
    /// True when no anomaly was found.
    pub fn ok(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// How many anomalies of `kind`.
    pub fn count(&self, kind: AnomalyKind) -> usize {
        self.anomalies.iter().filter(|a| a.kind == kind).count()
    }

    /// Adds an anomaly found outside the checker.
    pub fn push(&mut self, kind: AnomalyKind, description: impl Into<String>) {
        self.anomalies.push(Anomaly {
            kind,
            description: description.into(),
        });
    }

    /// A multi-line summary: counts, then the first `max_listed` anomalies
    /// of each kind.
    pub fn summary(&self, max_listed: usize) -> String {
        let mut s = format!(
            "writes: {} acknowledged, {} indeterminate, {} failed\n",
            self.writes_acked, self.writes_indeterminate, self.writes_failed
        );
        for (api, n) in &self.reads {
            let checks = self.read_checks.get(api).copied().unwrap_or(0);
            s += &format!("reads: {n} {api} ({checks} box observations checked)\n");
        }
        s += &format!(
            "replica states compared: {} ({} distinct applied indices); final states: {} ({} boxes checked)\n",
            self.replica_states, self.applied_points, self.final_states, self.final_boxes_checked
        );
        s += &format!(
            "anomalies: {} (lost writes {}, stale reads {}, divergences {}, other {})\n",
            self.anomalies.len(),
            self.count(AnomalyKind::LostWrite),
            self.count(AnomalyKind::StaleRead),
            self.count(AnomalyKind::Divergence),
            self.count(AnomalyKind::Other),
        );
        for kind in [
            AnomalyKind::LostWrite,
            AnomalyKind::StaleRead,
            AnomalyKind::Divergence,
            AnomalyKind::Other,
        ] {
            let all = self.count(kind);
            for a in self
                .anomalies
                .iter()
                .filter(|a| a.kind == kind)
                .take(max_listed)
            {
                s += &format!("  - {a}\n");
            }
            if all > max_listed {
                s += &format!("  ... and {} more {kind:?}\n", all - max_listed);
            }
        }
        s
    }
}

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

    /// Checks the history (see the module docs) and reports.
    pub fn check(&self) -> Report {
        let inner = self.lock();
        let t0 = self.t0;
        let mut report = Report::default();
        for w in &inner.writes {
            match w.outcome {
                Outcome::Acked(_) => report.writes_acked += 1,
                Outcome::Indeterminate(_) => report.writes_indeterminate += 1,
                Outcome::Failed(_) => report.writes_failed += 1,
            }
        }
        // Writes by box; failed writes never took effect.
        let mut by_box: BTreeMap<u32, Vec<&WriteOp>> = BTreeMap::new();
        for w in &inner.writes {
            if !matches!(w.outcome, Outcome::Failed(_)) {
                by_box.entry(w.index).or_default().push(w);
            }
        }
        let no_writes: Vec<&WriteOp> = Vec::new();
        // The same, as a sorted list for range scans.
        let boxes: Vec<(u32, &Vec<&WriteOp>)> = by_box.iter().map(|(i, w)| (*i, w)).collect();

        // (a) Lost writes, per final replica state.
        for (shard, finals) in &inner.finals {
            for f in finals {
                let Some(set) = decode(&f.bitmap) else {
                    report.push(
                        AnomalyKind::Other,
                        format!(
                            "shard {shard}: node {}'s final state has an undecodable bitmap",
                            f.state.node
                        ),
                    );
                    continue;
                };
                let set_boxes: std::collections::BTreeSet<u32> = set.iter().copied().collect();
                let mut boxes: std::collections::BTreeSet<u32> = by_box
                    .range(f.start.min(u64::from(u32::MAX)) as u32..)
                    .take_while(|(i, _)| u64::from(**i) < f.end)
                    .map(|(i, _)| *i)
                    .collect();
                boxes.extend(set_boxes.iter().copied());
                for index in boxes {
                    report.final_boxes_checked += 1;
                    let value = set_boxes.contains(&index);
                    let writes = by_box.get(&index).unwrap_or(&no_writes);
                    if let Some(problem) = final_value_problem(writes, value, t0) {
                        report.push(
                            AnomalyKind::LostWrite,
                            format!(
                                "shard {shard}, box {index}: node {} ends with {value} \
                                 (applied index {}, seq {}); {problem}",
                                f.state.node, f.state.applied_index, f.state.seq
                            ),
                        );
                    }
                }
            }
        }

        // (b) Stale reads.
        for r in &inner.reads {
            let label = r.api.label();
            *report.reads.entry(label.clone()).or_default() += 1;
            let mut checked = 0usize;
            let mut check = |index: u32, writes: &[&WriteOp], value: bool, report: &mut Report| {
                checked += 1;
                if let Some(problem) = read_problem(writes, r, value, t0) {
                    let node = r
                        .node
                        .map(|n| format!(" from node {n}"))
                        .unwrap_or_default();
                    report.push(
                        AnomalyKind::StaleRead,
                        format!(
                            "{}{node} by {} [{} .. {} ms] saw box {index} = {value}; {problem}",
                            label,
                            r.process,
                            ms(r.invoked, t0),
                            ms(r.completed, t0),
                        ),
                    );
                }
            };
            match &r.seen {
                Seen::Box { index, value } => {
                    let writes = by_box.get(index).unwrap_or(&no_writes);
                    check(*index, writes, *value, &mut report)
                }
                Seen::Shard {
                    shard,
                    start,
                    end,
                    bitmap,
                    ..
                } => {
                    let Some(set) = decode(bitmap) else {
                        report.push(
                            AnomalyKind::Other,
                            format!("a read of shard {shard} sent an undecodable bitmap"),
                        );
                        continue;
                    };
                    // Every written box in range, and every set box (a set
                    // box that no write set is a phantom). A read that must
                    // see no write can always show the initial value, so
                    // only its set boxes need a look.
                    let only_set = !promises_recency(r.api);
                    let lo = boxes.partition_point(|(i, _)| u64::from(*i) < *start);
                    let mut set_iter = set.iter().copied().peekable();
                    for (index, writes) in
                        boxes[lo..].iter().take_while(|(i, _)| u64::from(*i) < *end)
                    {
                        let index = *index;
                        while let Some(&s) = set_iter.peek() {
                            if s >= index {
                                break;
                            }
                            check(s, &no_writes, true, &mut report);
                            set_iter.next();
                        }
                        let value = set_iter.peek() == Some(&index);
                        if value {
                            set_iter.next();
                        } else if only_set {
                            continue;
                        }
                        check(index, writes, value, &mut report);
                    }
                    for s in set_iter {
                        check(s, &no_writes, true, &mut report);
                    }
                }
            }
            *report.read_checks.entry(label).or_default() += checked;
        }

        // (c) Replica agreement.
        report.replica_states = inner.replica_states;
        report.applied_points = inner.by_index.len();
        let mut keys: Vec<&(u64, u64)> = inner.by_index.keys().collect();
        keys.sort();
        for key in keys {
            let states = &inner.by_index[key];
            if states.len() > 1 {
                let listed: Vec<String> = states.iter().map(|s| s.describe(t0)).collect();
                report.push(
                    AnomalyKind::Divergence,
                    format!(
                        "shard {}: states at applied index {} differ: {}",
                        key.0,
                        key.1,
                        listed.join("; ")
                    ),
                );
            }
        }
        let mut keys: Vec<&(u64, u64)> = inner.by_seq.keys().collect();
        keys.sort();
        for key in keys {
            let states = &inner.by_seq[key];
            if states.len() > 1 {
                let listed: Vec<String> = states.iter().map(|s| s.describe(t0)).collect();
                report.push(
                    AnomalyKind::Divergence,
                    format!(
                        "shard {}: states with seq {} hold different boxes: {}",
                        key.0,
                        key.1,
                        listed.join("; ")
                    ),
                );
            }
        }
        for (shard, finals) in &inner.finals {
            report.final_states += finals.len();
            let first = &finals[0].state;
            let agree = finals.iter().all(|f| {
                f.state.applied_index == first.applied_index && f.state.same_content(first)
            });
            if !agree {
                let listed: Vec<String> = finals.iter().map(|f| f.state.describe(t0)).collect();
                report.push(
                    AnomalyKind::Divergence,
                    format!(
                        "shard {shard}: replicas still differ at the end: {}",
                        listed.join("; ")
                    ),
                );
            }
        }
        report
    }
}

/// Whether reads through `api` must see some acknowledged writes.
fn promises_recency(api: ReadApi) -> bool {
    !matches!(api, ReadApi::Replica)
}

/// Why `value` cannot be a box's final value given its `writes`, or `None`
/// when some write (or the initial value) explains it.
fn final_value_problem(writes: &[&WriteOp], value: bool, t0: Instant) -> Option<String> {
    let acked: Vec<&&WriteOp> = writes.iter().filter(|w| w.outcome.acked()).collect();
    if value == INITIAL && acked.is_empty() {
        return None;
    }
    // `w` can be last unless an acknowledged write began after `w` surely
    // took effect.
    let latest_acked_start = acked.iter().map(|w| w.invoked).max();
    let can_be_last = |w: &WriteOp| match (w.effect_deadline(), latest_acked_start) {
        (None, _) | (_, None) => true,
        (Some(done), Some(start)) => start <= done,
    };
    if writes.iter().any(|w| w.value == value && can_be_last(w)) {
        return None;
    }
    let last = acked.iter().max_by_key(|w| w.completed);
    Some(match last {
        Some(w) => format!(
            "the last acknowledged write was {}, and no write that could have come after it set {value}",
            w.describe(t0)
        ),
        None => format!("no write ever set it to {value}"),
    })
}

/// Why read `r` cannot have seen `value` of a box with `writes`, or `None`.
fn read_problem(writes: &[&WriteOp], r: &ReadOp, value: bool, t0: Instant) -> Option<String> {
    // The writes this read must see: acknowledged before it was invoked,
    // and covered by its API's promise. Only the latest start matters.
    let mut latest_must_start: Option<Instant> = None;
    for w in writes {
        if w.completed < r.invoked && r.api.must_see(w) {
            latest_must_start = latest_must_start.max(Some(w.invoked));
        }
    }
    if value == INITIAL && latest_must_start.is_none() {
        return None;
    }
    // A candidate is overwritten for sure when a must-see write began
    // after it surely took effect.
    let candidate = writes.iter().any(|w| {
        w.value == value
            && w.invoked < r.completed
            && match (w.effect_deadline(), latest_must_start) {
                (None, _) | (_, None) => true,
                (Some(done), Some(start)) => start <= done,
            }
    });
    if candidate {
        return None;
    }
    let missed = writes
        .iter()
        .filter(|w| w.completed < r.invoked && r.api.must_see(w))
        .max_by_key(|w| w.completed);
    Some(match missed {
        Some(w) => format!(
            "it must see {}, and no write of {value} could have come after it",
            w.describe(t0)
        ),
        None => format!("no write of {value} was invoked before the read completed"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::ShardDescriptor;

    /// A clock for hand-made histories: `at(n)` is n ms after the start.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn setup() -> (History, Clock) {
        let h = History::new();
        let c = Clock(h.t0());
        (h, c)
    }

    fn acked(seq: u64) -> Outcome {
        Outcome::Acked(Ack {
            seq: Some(seq),
            log_index: Some(seq + 10),
            node: Some(1),
        })
    }

    fn indeterminate() -> Outcome {
        Outcome::Indeterminate("timed out".into())
    }

    fn write(h: &History, c: &Clock, index: u32, value: bool, span: (u64, u64), outcome: Outcome) {
        h.record_writes(
            "w1",
            1,
            &[(index, value)],
            WriteApi::Node,
            c.at(span.0),
            c.at(span.1),
            outcome,
        );
    }

    fn shard_read(boxes: &[u32], applied_index: u64, seq: u64) -> ShardRead {
        let mut b = Bitmap::new();
        for &i in boxes {
            b.add(i);
        }
        ShardRead {
            descriptor: ShardDescriptor {
                shard: 1,
                start: 0,
                end: 1000,
                epoch: 1,
            },
            seq,
            applied_index,
            start: 0,
            end: 1000,
            bitmap: b.serialize::<Portable>(),
        }
    }

    fn finals(h: &History, boxes: &[u32]) {
        for node in 1..=3 {
            h.record_final(node, &shard_read(boxes, 100, 50));
        }
    }

    #[test]
    fn a_valid_history_passes() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        write(&h, &c, 1, false, (20, 30), acked(2));
        write(&h, &c, 2, true, (0, 10), acked(3));
        h.record_shard_read(
            "r",
            ReadApi::Linearizable,
            1,
            c.at(15),
            c.at(18),
            &shard_read(&[1, 2], 5, 3),
        );
        // Concurrent with the second write of box 1: either value.
        h.record_shard_read(
            "r",
            ReadApi::Linearizable,
            1,
            c.at(25),
            c.at(26),
            &shard_read(&[1, 2], 5, 3),
        );
        h.record_shard_read(
            "r",
            ReadApi::Linearizable,
            2,
            c.at(31),
            c.at(33),
            &shard_read(&[2], 6, 4),
        );
        // A replica may lag arbitrarily.
        h.record_shard_read(
            "r",
            ReadApi::Replica,
            3,
            c.at(40),
            c.at(41),
            &shard_read(&[], 0, 0),
        );
        finals(&h, &[2]);
        let report = h.check();
        assert!(report.ok(), "{}", report.summary(10));
        assert_eq!(report.writes_acked, 3);
        assert_eq!(report.final_states, 3);
        assert_eq!(report.final_boxes_checked, 6);
    }

    #[test]
    fn indeterminate_writes_may_or_may_not_have_happened() {
        for landed in [false, true] {
            let (h, c) = setup();
            write(&h, &c, 1, true, (0, 10), acked(1));
            write(&h, &c, 1, false, (20, 30), indeterminate());
            // A never-acknowledged check of box 2.
            write(&h, &c, 2, true, (0, 10), indeterminate());
            // A read long after may see either value of both.
            let seen: &[u32] = if landed { &[2] } else { &[1] };
            h.record_shard_read(
                "r",
                ReadApi::Linearizable,
                1,
                c.at(500),
                c.at(501),
                &shard_read(seen, 3, 2),
            );
            finals(&h, seen);
            let report = h.check();
            assert!(report.ok(), "landed={landed}: {}", report.summary(10));
            assert_eq!(report.writes_indeterminate, 2);
        }
    }

    #[test]
    fn an_indeterminate_write_may_land_after_its_client_gave_up() {
        // Box 1: an earlier write timed out, then a later one was
        // acknowledged. The first may still land later (proposed when a
        // paused node resumes), so either final value is possible.
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), indeterminate());
        write(&h, &c, 1, false, (20, 30), acked(1));
        finals(&h, &[1]);
        assert!(h.check().ok());
    }

    #[test]
    fn failed_writes_never_happened() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), Outcome::Failed("429".into()));
        h.record_final(1, &shard_read(&[1], 5, 1));
        let report = h.check();
        assert_eq!(
            report.count(AnomalyKind::LostWrite),
            1,
            "{}",
            report.summary(10)
        );
        assert!(report.anomalies[0]
            .description
            .contains("no write ever set it to true"));
    }

    #[test]
    fn it_catches_a_lost_write() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        write(&h, &c, 1, false, (20, 30), acked(2));
        write(&h, &c, 7, true, (0, 10), acked(3));
        // Box 1 kept the earlier value, box 7 lost its only write.
        finals(&h, &[1]);
        let report = h.check();
        assert_eq!(
            report.count(AnomalyKind::LostWrite),
            6,
            "{}",
            report.summary(10)
        );
        assert_eq!(report.anomalies.len(), 6);
        let text = report.summary(10);
        assert!(text.contains("box 1: node 1 ends with true"), "{text}");
        assert!(text.contains("box 7: node 3 ends with false"), "{text}");
        assert!(text.contains("seq 2"), "{text}");
    }

    #[test]
    fn a_set_box_that_no_write_set_is_reported() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        h.record_final(1, &shard_read(&[1, 999], 5, 1));
        let report = h.check();
        assert_eq!(
            report.count(AnomalyKind::LostWrite),
            1,
            "{}",
            report.summary(10)
        );
        assert!(report.anomalies[0].description.contains("box 999"));
    }

    #[test]
    fn it_catches_a_stale_linearizable_read() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        write(&h, &c, 1, false, (20, 30), acked(2));
        // Invoked after the second write completed, but shows the first.
        h.record_shard_read(
            "r",
            ReadApi::Linearizable,
            2,
            c.at(31),
            c.at(35),
            &shard_read(&[1], 1, 1),
        );
        // The same from a replica is allowed.
        h.record_shard_read(
            "r",
            ReadApi::Replica,
            2,
            c.at(31),
            c.at(35),
            &shard_read(&[1], 1, 1),
        );
        finals(&h, &[]);
        let report = h.check();
        assert_eq!(
            report.count(AnomalyKind::StaleRead),
            1,
            "{}",
            report.summary(10)
        );
        let text = &report.anomalies[0].description;
        assert!(
            text.contains("node linearizable read from node 2"),
            "{text}"
        );
        assert!(text.contains("saw box 1 = true"), "{text}");
        assert!(text.contains("seq 2"), "{text}");
    }

    #[test]
    fn it_catches_a_gateway_that_does_not_show_its_own_write() {
        let (h, c) = setup();
        h.record_writes(
            "gw",
            1,
            &[(5, true)],
            WriteApi::Gateway(1),
            c.at(0),
            c.at(10),
            acked(1),
        );
        // Gateway 1 must show it; gateway 2 need not.
        h.record_box_read("gw", ReadApi::Gateway(1), 5, false, c.at(11), c.at(12));
        h.record_box_read("gw", ReadApi::Gateway(2), 5, false, c.at(11), c.at(12));
        // Concurrent with the PUT: either.
        h.record_box_read("gw", ReadApi::Gateway(1), 5, false, c.at(5), c.at(12));
        h.record_box_read("gw", ReadApi::Gateway(1), 5, true, c.at(13), c.at(14));
        finals(&h, &[5]);
        let report = h.check();
        assert_eq!(
            report.count(AnomalyKind::StaleRead),
            1,
            "{}",
            report.summary(10)
        );
        assert!(report.anomalies[0].description.starts_with("gateway 1 GET"));
    }

    #[test]
    fn it_catches_a_phantom_read() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (100, 110), acked(1));
        // A replica shows box 1 before anyone tried to set it.
        h.record_shard_read(
            "r",
            ReadApi::Replica,
            1,
            c.at(10),
            c.at(20),
            &shard_read(&[1], 1, 1),
        );
        finals(&h, &[1]);
        let report = h.check();
        assert_eq!(
            report.count(AnomalyKind::StaleRead),
            1,
            "{}",
            report.summary(10)
        );
        assert!(report.anomalies[0]
            .description
            .contains("no write of true was invoked before the read completed"));
    }

    #[test]
    fn it_catches_a_divergence_at_an_equal_applied_index() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        write(&h, &c, 2, true, (0, 10), indeterminate());
        h.record_replica_state(1, &shard_read(&[1], 7, 1), c.at(20));
        h.record_replica_state(2, &shard_read(&[1], 7, 1), c.at(20));
        // Same applied index and seq, different boxes.
        h.record_replica_state(3, &shard_read(&[1, 2], 7, 1), c.at(21));
        finals(&h, &[1, 2]);
        let report = h.check();
        // Once by applied index, once by seq.
        assert_eq!(
            report.count(AnomalyKind::Divergence),
            2,
            "{}",
            report.summary(10)
        );
        assert!(report.anomalies[0]
            .description
            .contains("applied index 7 differ"));
    }

    #[test]
    fn it_catches_replicas_that_differ_at_the_end() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        h.record_final(1, &shard_read(&[1], 9, 1));
        h.record_final(2, &shard_read(&[1], 9, 1));
        h.record_final(3, &shard_read(&[1], 8, 1));
        let report = h.check();
        assert_eq!(
            report.count(AnomalyKind::Divergence),
            1,
            "{}",
            report.summary(10)
        );
        assert!(report.anomalies[0]
            .description
            .contains("still differ at the end"));
    }

    #[test]
    fn equal_content_in_different_bytes_is_no_divergence() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        let a = shard_read(&(0..600).collect::<Vec<_>>(), 3, 1);
        let mut b = a.clone();
        let mut bitmap = Bitmap::try_deserialize::<Portable>(&b.bitmap).unwrap();
        bitmap.run_optimize();
        b.bitmap = bitmap.serialize::<Portable>();
        assert_ne!(a.bitmap, b.bitmap, "run containers serialize differently");
        h.record_replica_state(1, &a, c.at(20));
        h.record_replica_state(2, &b, c.at(20));
        let report = h.check();
        assert_eq!(
            report.count(AnomalyKind::Divergence),
            0,
            "{}",
            report.summary(10)
        );
    }

    #[test]
    fn longest_gap_counts_from_the_fault_to_the_end() {
        let (h, c) = setup();
        write(&h, &c, 1, true, (0, 10), acked(1));
        write(&h, &c, 2, true, (100, 400), acked(2));
        write(&h, &c, 3, true, (410, 420), indeterminate());
        write(&h, &c, 4, true, (450, 500), acked(3));
        // From 50: writes invoked before 50 do not count.
        let gap = h.longest_ack_gap(c.at(50), c.at(1000), |_| true);
        assert_eq!(gap, Duration::from_millis(500));
        let gap = h.longest_ack_gap(c.at(50), c.at(600), |_| true);
        assert_eq!(gap, Duration::from_millis(350));
    }
}
