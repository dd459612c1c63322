//! `GET /ready`: whether the node serves, as opposed to `/health`, which
//! only says the process is alive and its stored groups loaded.
//!
//! A node is ready when it has no failed group (see [`crate::faults`])
//! and every group it hosts knows a leader (so a write sent here either
//! commits or is forwarded), or at least the metadata group does: a shard
//! that lost its quorum (two of its three hosts down) must not keep the
//! node that could restore it from counting as started; `/ready` still
//! names such shards. A node that hosts no group yet (a founding node
//! before `raftctl init`, or a new node before `raftctl node add`) is
//! ready too: it has nothing to wait for, and it must answer the command
//! that gives it its groups.
//!
//! Under systemd (`Type=notify`, `NOTIFY_SOCKET` set), [`notify_when_ready`]
//! sends `READY=1` the first time the node is ready.

use std::sync::Arc;

use checkraft_proto::{NodeStatus, META_GROUP};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::http::reply;
use crate::node::Node;

/// `Ok` when a node with this status serves, with the groups that still
/// know no leader (at most shards, when the metadata group knows its
/// leader); else every reason it does not, one per line.
pub fn readiness(status: &NodeStatus) -> Result<Vec<String>, String> {
    let failed: Vec<String> = status
        .failed
        .iter()
        .map(|(group, reason)| format!("group {group} failed: {reason}"))
        .collect();
    let leaderless: Vec<String> = status
        .groups
        .iter()
        .filter(|(_, summary)| summary.leader.is_none())
        .map(|(group, _)| format!("group {group} knows no leader"))
        .collect();
    let meta_led = status
        .groups
        .get(&META_GROUP)
        .is_some_and(|summary| summary.leader.is_some());
    if failed.is_empty() && (leaderless.is_empty() || meta_led) {
        Ok(leaderless)
    } else {
        Err(failed
            .into_iter()
            .chain(leaderless)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// The `/ready` answer: 200 `ready`, or 503 with the reasons.
pub fn handle(node: &Node) -> Response {
    match readiness(&node.status()) {
        Ok(waiting) if waiting.is_empty() => reply::text(StatusCode::OK, "ready\n"),
        Ok(waiting) => reply::text(
            StatusCode::OK,
            &format!(
                "ready (the metadata group has a leader)\n{}\n",
                waiting.join("\n")
            ),
        ),
        Err(reasons) => reply::text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("not ready:\n{reasons}\n"),
        ),
    }
}

/// Sends systemd `READY=1` once the node is ready, when `NOTIFY_SOCKET`
/// is set (under `Type=notify`); returns at once otherwise.
pub async fn notify_when_ready(node: Arc<Node>) {
    checkraft_service::notify::when_ready(|| readiness(&node.status()).map(|_| ())).await
}

/// Sends systemd `STOPPING=1`, when `NOTIFY_SOCKET` is set.
pub fn notify_stopping() {
    checkraft_service::notify::stopping();
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::{GroupSummary, ShardDescriptor};

    fn summary(leader: Option<u64>) -> GroupSummary {
        GroupSummary {
            descriptor: ShardDescriptor {
                shard: 1,
                start: 0,
                end: 10,
                epoch: 1,
            },
            seq: 0,
            term: 1,
            leader,
            applied_index: 0,
        }
    }

    fn status() -> NodeStatus {
        NodeStatus {
            node_id: 1,
            addr: "10.0.0.1:7001".into(),
            groups: Default::default(),
            failed: Default::default(),
        }
    }

    #[test]
    fn a_node_without_groups_is_ready() {
        assert_eq!(readiness(&status()), Ok(vec![]));
    }

    #[test]
    fn every_group_needs_a_leader_and_none_may_fail() {
        let mut s = status();
        s.groups.insert(1, summary(Some(1)));
        s.groups.insert(2, summary(None));
        assert_eq!(readiness(&s), Err("group 2 knows no leader".into()));
        s.groups.insert(2, summary(Some(3)));
        assert_eq!(readiness(&s), Ok(vec![]));
        s.failed.insert(5, "vote file damaged".into());
        assert_eq!(
            readiness(&s),
            Err("group 5 failed: vote file damaged".into())
        );
    }

    #[test]
    fn a_led_metadata_group_is_enough() {
        let mut s = status();
        s.groups.insert(META_GROUP, summary(None));
        s.groups.insert(1, summary(None));
        assert_eq!(
            readiness(&s),
            Err("group 0 knows no leader\ngroup 1 knows no leader".into())
        );
        s.groups.insert(META_GROUP, summary(Some(2)));
        assert_eq!(readiness(&s), Ok(vec!["group 1 knows no leader".into()]));
        s.failed.insert(1, "disk full".into());
        assert!(readiness(&s).is_err(), "a failed group still counts");
    }
}
