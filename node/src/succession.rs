//! A group whose leader's process died elects a successor at once.
//!
//! When a leader crashes, its followers first honour its lease
//! (`election_max_ms` after its last heartbeat), then wait for their own
//! election timer, then run Pre-Vote and the vote: about two election
//! timeouts in all (seconds with the defaults) before writes go on.
//!
//! A crashed *process* on a live host is recognisable at once: the
//! kernel refuses connections to its port (a listening socket lives as
//! long as its process, and the node binds without `SO_REUSEPORT`, so a
//! refused connect means no process that could still lead is there).
//! So every `dead_leader_probe_ms` each node tries a TCP connect to every
//! peer that leads a group it follows as a voter. When one refuses, for
//! each of that peer's groups:
//!
//! 1. the node asks the group's other live voters how far their logs
//!    reach (`GET /admin/groups/{g}/metrics`);
//! 2. unless a quorum of voters (itself included) still names the dead
//!    leader under the same vote, it does nothing: a node cut off from the
//!    others must not raise its term;
//! 3. the voter with the longest log (the lowest id on a tie) takes over:
//!    on itself it hands the group over as if the dead leader had asked
//!    (openraft's `handle_transfer_leader` with the dead leader's vote).
//!    It campaigns at once, and the voters grant it although the dead
//!    leader's lease has not run out (a transfer election is authorized
//!    by the leader: Raft thesis §4.2.3). The others do nothing.
//!
//! After the leader died no follower's log grows, so every survivor
//! comes to the same choice.
//!
//! Caveats:
//! - Safety does not rest on this: reads use ReadIndex, never the lease,
//!   so a wrong verdict costs one election (like a spurious one), never a
//!   write. A log compared by index alone can lose the vote to a voter
//!   whose last entry has a newer term; the group then elects by the
//!   timers, as without this module. Each vote is tried once.
//! - A host that is down, or a partition that drops packets, gives a
//!   timeout, not a refusal: those groups elect by the timers.
//! - One connect per probe per peer that leads something here: a few per
//!   second per peer, and nothing for groups this node leads.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use checkraft_proto::GroupId;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::TransferLeaderRequest;
use openraft::ServerState;

use crate::group::ShardGroup;
use crate::node::Node;

/// A probe's connect limit: a refusal comes back at once on a live host;
/// a silent one is no verdict.
const PROBE_LIMIT: Duration = Duration::from_millis(200);
/// The limit of one voter's answer about its log.
const STATUS_LIMIT: Duration = Duration::from_millis(300);

/// Probes the leaders of this node's groups until the node is dropped.
pub async fn watch(node: Weak<Node>) {
    let period = match node.upgrade() {
        Some(n) if n.config.dead_leader_probe_ms > 0 => {
            Duration::from_millis(n.config.dead_leader_probe_ms)
        }
        _ => return,
    };
    // (group, term) pairs already handled: each dead vote is tried once.
    let mut tried: HashSet<(GroupId, u64)> = HashSet::new();
    loop {
        tokio::time::sleep(period).await;
        let Some(node) = node.upgrade() else { return };
        let Some(me) = node.id() else { continue };
        let led = followed_leaders(&node, me);
        let verdicts =
            futures::future::join_all(led.iter().map(|(_, (addr, _))| refuses(addr))).await;
        for ((leader, (addr, groups)), dead) in led.into_iter().zip(verdicts) {
            if !dead {
                continue;
            }
            let fresh: Vec<_> = groups
                .into_iter()
                .filter(|g| tried.insert((g.id, g.raft.metrics().borrow_watched().current_term)))
                .collect();
            if fresh.is_empty() {
                continue;
            }
            tracing::info!(
                leader,
                addr = %addr,
                groups = fresh.len(),
                "the leader's node refuses connections: its groups elect a successor"
            );
            futures::future::join_all(fresh.iter().map(|g| succeed(&node, g, me, leader))).await;
        }
        tried.retain(|(g, term)| {
            node.group(*g)
                .is_ok_and(|g| g.raft.metrics().borrow_watched().current_term == *term)
        });
    }
}

/// Peer → (its address, the groups it leads where this node is a
/// following voter).
fn followed_leaders(node: &Node, me: u64) -> HashMap<u64, (String, Vec<Arc<ShardGroup>>)> {
    let mut led: HashMap<u64, (String, Vec<Arc<ShardGroup>>)> = HashMap::new();
    for group in node.groups() {
        let m = group.raft.metrics().borrow_watched().clone();
        let Some(leader) = m.current_leader.filter(|l| *l != me) else {
            continue;
        };
        let membership = m.membership_config.membership();
        if m.state != ServerState::Follower || !membership.voter_ids().any(|v| v == me) {
            continue;
        }
        let Some(addr) = membership.get_node(&leader).map(|n| n.addr.clone()) else {
            continue;
        };
        led.entry(leader)
            .or_insert_with(|| (addr, Vec::new()))
            .1
            .push(group);
    }
    led
}

/// True when a TCP connect to `addr` is refused (no timeout, no other
/// error counts).
async fn refuses(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_LIMIT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Steps 1–3 of the module docs for one group whose leader `dead` is gone.
async fn succeed(node: &Node, group: &ShardGroup, me: u64, dead: u64) {
    let m = group.raft.metrics().borrow_watched().clone();
    if m.current_leader != Some(dead) || m.state != ServerState::Follower {
        return;
    }
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let others: Vec<(u64, String)> = voters
        .iter()
        .filter(|v| **v != me && **v != dead)
        .filter_map(|v| membership.get_node(v).map(|n| (*v, n.addr.clone())))
        .collect();
    let api = node.peers().api();
    let answers = futures::future::join_all(others.iter().map(|(id, addr)| async {
        let status = api.group_status(addr, group.id, STATUS_LIMIT).await.ok()?;
        Some((*id, status.raft))
    }))
    .await;
    let mut candidates = vec![(me, m.last_log_index)];
    for (id, theirs) in answers.into_iter().flatten() {
        if theirs.vote != m.vote || theirs.current_leader != Some(dead) {
            // That voter has moved on (or never followed this leader):
            // an election is already under way, leave it to raft.
            return;
        }
        candidates.push((id, theirs.last_log_index));
    }
    if candidates.len() < voters.len() / 2 + 1 {
        tracing::info!(
            shard_id = group.id,
            answered = candidates.len(),
            voters = voters.len(),
            "no quorum of voters answers: the group elects by its timers"
        );
        return;
    }
    let Some((chosen, _)) = candidates
        .iter()
        .max_by_key(|(id, last)| (*last, std::cmp::Reverse(*id)))
        .copied()
    else {
        return;
    };
    if chosen != me {
        tracing::debug!(shard_id = group.id, chosen, "another voter takes over");
        return;
    }
    let req = TransferLeaderRequest::new(m.vote, me, None);
    match group.raft.handle_transfer_leader(req).await {
        Ok(Ok(())) => tracing::info!(
            shard_id = group.id,
            dead,
            "campaigning for a dead leader's group"
        ),
        Ok(Err(e)) => tracing::info!(shard_id = group.id, error = %e, "could not take over"),
        Err(e) => tracing::warn!(shard_id = group.id, error = %e, "could not take over"),
    }
}
