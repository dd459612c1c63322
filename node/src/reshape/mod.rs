//! Splits and merges, run by the metadata group's leader in the control
//! plane's loop ([`crate::control::drive`]; see `docs/resharding.md`).
//!
//! An operator (or `raftctl reshard`) records the intent with
//! `BeginOperation { Split | Merge }` in the metadata group. Whichever
//! node leads the metadata group runs it: every step is
//! decided from what the shards and the map say now, so a new leader
//! resumes an operation its predecessor started, and a step repeated
//! after a crash does nothing twice. The operation ends with
//! `FinishOperation`, which keeps its outcome in the map.
//!
//! - `split`: propose `Split` to the parent, wait until the child
//!   serves, record the split in the map.
//! - `merge`: freeze the right shard, record the point of no return
//!   (step `committing`), absorb it into the left, record the merge,
//!   delete the right's replicas. Before `committing` the merge rolls back
//!   by thawing the right shard.

mod call;
pub(crate) mod merge;
pub(crate) mod split;

use checkraft_proto::{MetaCommand, Operation, WriteOutcome, META_GROUP};

use crate::error::{Error, Result};
use crate::node::Node;

/// How an operation's run ended (a transient failure is an `Err`, and
/// the next round runs it again).
pub(crate) enum Finished {
    /// It did what it should.
    Done(String),
    /// It was refused, or rolled back; nothing changed in the end.
    Refused(String),
}

/// Records `step` as the operation's progress note.
pub(crate) async fn note(node: &Node, op: &Operation, step: &str) -> Result<()> {
    if op.step == step {
        return Ok(());
    }
    meta_ok(
        node.propose_meta(MetaCommand::OperationStep {
            id: op.id,
            step: step.into(),
        })
        .await?,
    )
}

/// A metadata write that must apply.
pub(crate) fn meta_ok(outcome: WriteOutcome) -> Result<()> {
    match outcome {
        WriteOutcome::MetaApplied { .. } => Ok(()),
        other => Err(Error::Unavailable(format!("metadata write: {other:?}"))),
    }
}

/// The current map from this node's metadata replica.
pub(crate) fn current_map(node: &Node) -> Result<checkraft_proto::ShardMap> {
    node.group(META_GROUP)?.map()
}
