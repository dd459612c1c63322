//! The control plane's calls to other nodes' admin API, signed as a node:
//! one group's membership ([`Members`]), and the membership changes a
//! replica move is made of (create a replica, add a learner, swap voters,
//! remove a member, campaign, delete a replica).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkraft_auth::SendSigned;
use checkraft_proto::{
    AddLearner, ChangeMembership, CreateGroup, GroupId, GroupStatus, NodeId, RemoveNode,
    ShardDescriptor,
};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::node::Node;

/// One status or metrics request.
const QUICK: Duration = Duration::from_secs(3);
/// A membership change, which waits for a learner to catch up (a
/// snapshot of a big shard) or for a joint configuration to commit.
const SLOW: Duration = Duration::from_secs(60);

/// One raft group's membership and leader, as its leader sees it (or the
/// first replica that answered, when it knows no leader).
#[derive(Debug, Clone)]
pub struct Members {
    /// The group.
    pub group: GroupId,
    /// The leader, when known.
    pub leader: Option<NodeId>,
    /// Voters (both halves of a joint configuration).
    pub voters: BTreeSet<NodeId>,
    /// Learners.
    pub learners: BTreeSet<NodeId>,
    /// Every member's address.
    pub addrs: BTreeMap<NodeId, String>,
}

impl Members {
    fn from_status(group: GroupId, s: GroupStatus) -> Self {
        let m = s.raft.membership_config.membership();
        Self {
            group,
            leader: s.raft.current_leader,
            voters: m.voter_ids().collect(),
            learners: m.learner_ids().collect(),
            addrs: m.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
        }
    }

    /// True when `node` votes or learns.
    pub fn has(&self, node: NodeId) -> bool {
        self.voters.contains(&node) || self.learners.contains(&node)
    }

    /// The leader's address, when a leader is known.
    pub fn leader_addr(&self) -> Result<&str> {
        self.leader
            .and_then(|l| self.addrs.get(&l))
            .map(String::as_str)
            .ok_or_else(|| Error::Unavailable(format!("group {} has no leader", self.group)))
    }
}

impl Node {
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<&B>,
        limit: Duration,
    ) -> Result<R> {
        let mut rb = self
            .peers()
            .client(addr)
            .request(method, format!("http://{addr}{path}"))
            .timeout(limit);
        if let Some(body) = body {
            rb = rb.json(body);
        }
        let resp = rb
            .send_signed(self.peers().signer())
            .await
            .map_err(|e| Error::Unavailable(format!("{addr}{path}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Unavailable(format!("{addr}{path}: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            return Err(match status {
                StatusCode::NOT_FOUND => Error::NotFound(format!("{addr}{path}: {text}")),
                _ => Error::Unavailable(format!("{addr}{path}: HTTP {status}: {text}")),
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Unavailable(format!("{addr}{path}: bad answer: {e}")))
    }

    /// The membership of `group`, asked of `probes` in turn, and then of
    /// the leader they name.
    pub(crate) async fn members(&self, group: GroupId, probes: &[String]) -> Result<Members> {
        let path = format!("/admin/groups/{group}/metrics");
        let mut last = String::from("no replica address");
        for addr in probes {
            let status: GroupStatus = match self
                .call(reqwest::Method::GET, addr, &path, None::<&()>, QUICK)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let seen = Members::from_status(group, status);
            match seen.leader.and_then(|l| seen.addrs.get(&l)) {
                Some(leader) if leader != addr => {
                    let led = self
                        .call::<(), GroupStatus>(reqwest::Method::GET, leader, &path, None, QUICK)
                        .await;
                    return Ok(led.map(|s| Members::from_status(group, s)).unwrap_or(seen));
                }
                _ => return Ok(seen),
            }
        }
        Err(Error::Unavailable(format!(
            "no replica of group {group} answered (last: {last})"
        )))
    }

    /// Hosts an empty replica of `descriptor` on the node at `addr`, to
    /// join as a learner.
    pub(crate) async fn create_remote(
        &self,
        addr: &str,
        descriptor: &ShardDescriptor,
    ) -> Result<()> {
        let body = CreateGroup {
            descriptor: descriptor.clone(),
            members: BTreeMap::new(),
            initialize: false,
        };
        self.call::<_, serde_json::Value>(
            reqwest::Method::POST,
            addr,
            "/admin/groups",
            Some(&body),
            QUICK,
        )
        .await
        .map(drop)
    }

    /// Adds `node` at `addr` as a learner, at the leader, and waits until
    /// it caught up. A no-op for a member.
    pub(crate) async fn add_learner_at(&self, m: &Members, node: NodeId, addr: &str) -> Result<()> {
        if m.has(node) {
            return Ok(());
        }
        let body = AddLearner {
            node_id: node,
            addr: addr.to_string(),
        };
        let path = format!("/admin/groups/{}/learners", m.group);
        self.call::<_, serde_json::Value>(
            reqwest::Method::POST,
            m.leader_addr()?,
            &path,
            Some(&body),
            SLOW,
        )
        .await
        .map(drop)
    }

    /// Makes `voters` the group's voters (joint consensus, at the leader;
    /// members left out are dropped). A no-op when they already are.
    pub(crate) async fn set_voters_at(&self, m: &Members, voters: &BTreeSet<NodeId>) -> Result<()> {
        if &m.voters == voters {
            return Ok(());
        }
        let body = ChangeMembership {
            voters: voters.clone(),
            retain: false,
        };
        let path = format!("/admin/groups/{}/membership", m.group);
        self.call::<_, serde_json::Value>(
            reqwest::Method::POST,
            m.leader_addr()?,
            &path,
            Some(&body),
            SLOW,
        )
        .await
        .map(drop)
    }

    /// Removes `node` from the group, at the leader. A no-op for a
    /// non-member.
    pub(crate) async fn remove_member_at(&self, m: &Members, node: NodeId) -> Result<()> {
        if !m.has(node) {
            return Ok(());
        }
        let path = format!("/admin/groups/{}/remove-node", m.group);
        self.call::<_, serde_json::Value>(
            reqwest::Method::POST,
            m.leader_addr()?,
            &path,
            Some(&RemoveNode { node_id: node }),
            SLOW,
        )
        .await
        .map(drop)
    }

    /// Asks the group's leader to hand leadership to `to`.
    pub(crate) async fn transfer_at(&self, m: &Members, to: NodeId) -> Result<()> {
        let path = format!("/admin/groups/{}/transfer", m.group);
        self.call::<_, serde_json::Value>(
            reqwest::Method::POST,
            m.leader_addr()?,
            &path,
            Some(&checkraft_proto::TransferLeader { node_id: to }),
            QUICK,
        )
        .await
        .map(drop)
    }
}
