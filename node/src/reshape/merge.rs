//! Running a merge (see [`super`]).

use checkraft_proto::{
    Absorb, Command, Freeze, MetaCommand, Operation, OperationKind, Rejection, Thaw, WriteOutcome,
};

use super::{current_map, meta_ok, note, Finished};
use crate::error::{Error, Result};
use crate::node::Node;

/// The step recorded before the absorb is proposed: from here on the
/// merge only goes forward.
pub(crate) const COMMITTING: &str = "committing";

fn applied_or(outcome: WriteOutcome, what: &str) -> Result<std::result::Result<(), Rejection>> {
    match outcome {
        WriteOutcome::Applied { .. } => Ok(Ok(())),
        WriteOutcome::Rejected {
            rejection: Rejection::StaleEpoch { current, .. },
        } => Err(Error::Unavailable(format!(
            "{what}: the shard moved to epoch {current} meanwhile; reading it again"
        ))),
        WriteOutcome::Rejected { rejection } => Ok(Err(rejection)),
        other => Err(Error::Unavailable(format!("{what}: {other:?}"))),
    }
}

/// One round of the merge `op` (see the module docs of [`super`]).
pub(crate) async fn run(node: &Node, op: &Operation) -> Result<Finished> {
    let OperationKind::Merge {
        left,
        right,
        ref right_replicas,
    } = op.kind
    else {
        return Err(Error::BadRequest("not a merge".into()));
    };
    let map = current_map(node)?;
    if map.shards.contains_key(&right) {
        if op.step != COMMITTING {
            // 1. Freeze the right shard; check the left one.
            note(node, op, "freezing the right shard").await?;
            let r = node.read_shard(&map, right).await?;
            if r.reshape.frozen.is_none() {
                let freeze = Command::Freeze(Freeze {
                    epoch: r.descriptor.epoch,
                    into: left,
                });
                if let Err(rejection) =
                    applied_or(node.reshape_shard(&map, right, &freeze).await?, "freeze")?
                {
                    return Ok(Finished::Refused(format!(
                        "shard {right} refused to freeze: {rejection}"
                    )));
                }
            }
            let l = match node.read_shard(&map, left).await {
                Ok(l) => Ok(l),
                Err(e) => Err(format!("shard {left} did not answer: {e}")),
            };
            let problem = match &l {
                Err(e) => Some(e.clone()),
                Ok(l) if l.reshape.frozen.is_some() => Some(format!("shard {left} is frozen")),
                Ok(l) if l.descriptor.end != r.descriptor.start => Some(format!(
                    "shard {left} ends at {}, shard {right} starts at {}",
                    l.descriptor.end, r.descriptor.start
                )),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                // Before the point of no return: roll back.
                let r = node.read_shard(&map, right).await?;
                if r.reshape.frozen.is_some() {
                    let thaw = Command::Thaw(Thaw {
                        epoch: r.descriptor.epoch,
                    });
                    applied_or(node.reshape_shard(&map, right, &thaw).await?, "thaw")?
                        .map_err(|r| Error::Unavailable(format!("thaw refused: {r}")))?;
                }
                return Ok(Finished::Refused(format!(
                    "merge rolled back ({problem}); shard {right} thawed"
                )));
            }
            note(node, op, COMMITTING).await?;
        }

        // 2. Absorb (from here on, only forward).
        let r = node.read_shard(&map, right).await?;
        let l = node.read_shard(&map, left).await?;
        if l.descriptor.end == r.descriptor.start {
            let absorb = Command::Absorb(Absorb {
                epoch: l.descriptor.epoch,
                right: r.descriptor.clone(),
                seq: r.seq,
                bitmap: r.bitmap.clone(),
            });
            if let Err(rejection) =
                applied_or(node.reshape_shard(&map, left, &absorb).await?, "absorb")?
            {
                // Past the point of no return: keep trying (and say so).
                return Err(Error::Unavailable(format!(
                    "shard {left} refused to absorb shard {right}: {rejection}"
                )));
            }
        } else if l.descriptor.end != r.descriptor.end {
            return Err(Error::Corrupt(format!(
                "shard {left} ends at {}, neither at shard {right}'s start nor its end",
                l.descriptor.end
            )));
        }

        // 3. The map.
        let l = node.read_shard(&map, left).await?;
        meta_ok(
            node.propose_meta(MetaCommand::RecordMerge {
                left: l.descriptor.clone(),
                right,
            })
            .await?,
        )?;
    }

    // 4. The right shard's replicas go. A node that is down keeps its
    // frozen replica (it serves nothing; the outcome names it).
    let map = current_map(node)?;
    let mut kept = Vec::new();
    for id in right_replicas {
        if let Some(addr) = map.addr(*id) {
            if let Err(e) = node.delete_remote_group(addr, right).await {
                tracing::warn!(shard_id = right, node = id, error = %e, "retired replica not deleted");
                kept.push(format!("node {id}: {e}"));
            }
        }
    }
    let left_over = if kept.is_empty() {
        String::new()
    } else {
        format!(
            "; not deleted (remove by hand with DELETE /admin/groups/{right}): {}",
            kept.join("; ")
        )
    };
    Ok(Finished::Done(format!(
        "shard {right} merged into shard {left}; its replicas deleted{left_over}"
    )))
}
