//! What a history records: writes, reads and replica states.

use std::fmt;
use std::time::Instant;

use super::ms;

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
    pub(super) fn must_see(&self, w: &WriteOp) -> bool {
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
    pub(super) fn effect_deadline(&self) -> Option<Instant> {
        match self.outcome {
            Outcome::Acked(_) => Some(self.completed),
            _ => None,
        }
    }

    pub(super) fn describe(&self, t0: Instant) -> String {
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
    pub(super) fn same_content(&self, other: &ReplicaState) -> bool {
        (self.seq, self.content, self.cardinality) == (other.seq, other.content, other.cardinality)
    }

    pub(super) fn describe(&self, t0: Instant) -> String {
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
