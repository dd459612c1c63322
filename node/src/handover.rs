//! Planned stops hand leadership over first.
//!
//! A leader that simply stops leaves its groups without a leader until the
//! followers' election timers fire and the old leader's lease runs out
//! (seconds). Before a node stops on SIGTERM, and when an operator asks
//! (`POST /admin/leadership/handover`), every group it leads asks its most
//! caught-up voter to take over (openraft's `transfer_leader`): that node
//! campaigns at once, without waiting for a timeout, and the group goes on
//! after one election round trip.
//!
//! A group whose transfer has not completed within the limit is left
//! as it is: the stop goes on, and the group elects a leader the slow way.

use std::time::Duration;

use checkraft_proto::Handover;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;

use crate::group::ShardGroup;
use crate::node::Node;

/// The voter (other than this node) that has replicated the most of the
/// group's log, if the group is led here and has one.
fn successor(group: &ShardGroup) -> Option<u64> {
    let m = group.raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return None;
    }
    let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
    m.replication
        .as_ref()?
        .iter()
        .filter(|(id, _)| **id != m.id && voters.contains(id))
        .max_by_key(|(_, matched)| matched.map(|l| l.index))
        .map(|(id, _)| *id)
}

/// Hands over one group; `Ok(new leader)` once another node leads it.
async fn hand_over_group(group: &ShardGroup, limit: Duration) -> Result<u64, String> {
    let Some(to) = successor(group) else {
        return Err("no voter to hand over to".into());
    };
    group
        .raft
        .trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| e.to_string())?;
    let me = group.raft.metrics().borrow_watched().id;
    let moved = group
        .raft
        .wait(Some(limit))
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != me),
            "another node leads",
        )
        .await
        .map_err(|e| format!("no new leader within {limit:?}: {e}"))?;
    Ok(moved.current_leader.unwrap_or(to))
}

/// Hands over every group this node leads, all at once, waiting at most
/// `limit` for each.
pub async fn hand_over(node: &Node, limit: Duration) -> Handover {
    let led: Vec<_> = node
        .groups()
        .into_iter()
        .filter(|g| g.is_leader())
        .collect();
    let results = futures::future::join_all(led.iter().map(|g| hand_over_group(g, limit))).await;
    let mut report = Handover::default();
    for (group, result) in led.iter().zip(results) {
        match result {
            Ok(to) => {
                tracing::info!(shard_id = group.id, to, "leadership handed over");
                report.moved.push((group.id, to));
            }
            Err(why) => {
                tracing::warn!(shard_id = group.id, why = %why, "leadership not handed over");
                report.kept.push((group.id, why));
            }
        }
    }
    report
}
