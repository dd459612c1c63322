//! Running a split (see [`super`]).

use checkraft_proto::{
    Command, MetaCommand, Operation, OperationKind, Rejection, ShardRecord, Split, WriteOutcome,
};

use super::{current_map, meta_ok, note, Finished};
use crate::error::{Error, Result};
use crate::node::Node;

/// One round of the split `op`: each step checks whether it is done
/// already, so a rerun continues where the last one stopped.
pub(crate) async fn run(node: &Node, op: &Operation) -> Result<Finished> {
    let OperationKind::Split { shard, at, child } = op.kind else {
        return Err(Error::BadRequest("not a split".into()));
    };
    let map = current_map(node)?;
    if map.shards.contains_key(&child) {
        return Ok(Finished::Done(format!(
            "shard {shard} split at {at}: shard {child} owns the rest"
        )));
    }
    let Some(parent) = map.shards.get(&shard).cloned() else {
        return Ok(Finished::Refused(format!(
            "shard {shard} is not in the map"
        )));
    };

    // 1. The split entry in the parent's log.
    let read = node.read_shard(&map, shard).await?;
    let d = &read.descriptor;
    let applied = read.reshape.moved.iter().any(|m| m.owner == child);
    if !applied {
        if !(d.start < at && at < d.end) {
            return Ok(Finished::Refused(format!(
                "shard {shard} is [{}, {}) now: {at} is not inside it",
                d.start, d.end
            )));
        }
        note(node, op, "splitting the parent").await?;
        let split = Command::Split(Split {
            epoch: d.epoch,
            at,
            child,
        });
        match node.reshape_shard(&map, shard, &split).await? {
            WriteOutcome::Applied { seq, .. } => {
                tracing::info!(shard_id = shard, child, at, seq, "split applied")
            }
            WriteOutcome::Rejected {
                rejection: Rejection::StaleEpoch { current, .. },
            } => {
                return Err(Error::Unavailable(format!(
                    "shard {shard} moved to epoch {current} meanwhile; reading it again"
                )))
            }
            WriteOutcome::Rejected { rejection } => {
                return Ok(Finished::Refused(format!(
                    "shard {shard} refused the split: {rejection}"
                )))
            }
            other => return Err(Error::Unavailable(format!("split: {other:?}"))),
        }
    }

    // 2. The child serves: a linearizable read answers on its leader.
    let mut routed = map.clone();
    routed.shards.insert(
        child,
        ShardRecord {
            descriptor: checkraft_proto::ShardDescriptor {
                shard: child,
                start: at,
                end: parent.descriptor.end,
                epoch: 0,
            },
            replicas: parent.replicas.clone(),
            leader: parent.leader,
        },
    );
    let born = node.read_shard(&routed, child).await?;
    let after = node.read_shard(&map, shard).await?;

    // 3. The map.
    let record = MetaCommand::RecordSplit {
        parent: after.descriptor.clone(),
        child: ShardRecord {
            descriptor: born.descriptor.clone(),
            replicas: parent.replicas.clone(),
            leader: parent.leader,
        },
    };
    meta_ok(node.propose_meta(record).await?)?;
    Ok(Finished::Done(format!(
        "shard {shard} split at {at}: shard {child} owns [{}, {}) from seq {}",
        born.descriptor.start, born.descriptor.end, born.seq
    )))
}
