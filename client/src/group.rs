//! One raft group's membership ([`Members`]) and the admin calls that
//! change it, each sent to the group's leader through
//! [`NodeApi::route`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkraft_proto::{
    AddLearner, ChangeMembership, CreateGroup, GroupCreated, GroupId, GroupStatus,
    MembershipChanged, NodeId, RemoveNode, TransferLeader,
};

use crate::api::NodeApi;
use crate::call::Call;
use crate::error::{Error, Result};
use crate::route::Budget;

/// One raft group's membership and leader, as its leader sees it (or the
/// first replica that answered, when it knows no leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The group.
    pub group: GroupId,
    /// The leader, when known.
    pub leader: Option<NodeId>,
    /// Voters (both halves of a joint configuration).
    pub voters: BTreeSet<NodeId>,
    /// Learners.
    pub learners: BTreeSet<NodeId>,
    /// Every member's address, from the raft membership.
    pub addrs: BTreeMap<NodeId, String>,
}

impl Members {
    /// The membership a replica's `GET /admin/groups/{id}/metrics` shows.
    pub fn from_status(group: GroupId, status: GroupStatus) -> Self {
        let m = status.raft.membership_config.membership();
        Self {
            group,
            leader: status.raft.current_leader,
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
    pub fn leader_addr(&self) -> Option<&str> {
        self.leader
            .and_then(|l| self.addrs.get(&l))
            .map(String::as_str)
    }

    /// Member addresses, the leader's first: where leader-only calls go.
    pub fn leader_first(&self) -> Vec<String> {
        let others = self
            .addrs
            .iter()
            .filter(|(id, _)| Some(**id) != self.leader)
            .map(|(_, a)| a.as_str());
        self.leader_addr()
            .into_iter()
            .chain(others)
            .map(String::from)
            .collect()
    }
}

impl NodeApi {
    /// The membership of `group`, asked of `probes` in turn (each attempt
    /// limited to `limit`, when given), then of the leader the first
    /// answer names, whose own view wins when it answers.
    pub async fn members(
        &self,
        group: GroupId,
        probes: &[String],
        limit: Option<Duration>,
    ) -> Result<Members> {
        let mut call = Call::get(format!("/admin/groups/{group}/metrics"));
        call.timeout = limit;
        let budget = Budget {
            forwards: 0,
            ..Budget::ONCE
        };
        let what = format!("membership of group {group}");
        let call = &call;
        let seen = self
            .route(&what, probes, &budget, |addr| async move {
                let status: GroupStatus = self.json(&addr, call).await?;
                Ok((addr, Members::from_status(group, status)))
            })
            .await?;
        match seen.1.leader_addr() {
            Some(leader) if leader != seen.0 => {
                let led = self.json::<GroupStatus>(leader, call).await;
                Ok(led
                    .map(|s| Members::from_status(group, s))
                    .unwrap_or(seen.1))
            }
            _ => Ok(seen.1),
        }
    }

    /// One replica's view of `group` (`GET /admin/groups/{group}/metrics`
    /// on the node at `addr`): no routing, one attempt within `limit`.
    pub async fn group_status(
        &self,
        addr: &str,
        group: GroupId,
        limit: Duration,
    ) -> Result<GroupStatus> {
        let call = Call::get(format!("/admin/groups/{group}/metrics")).timeout(limit);
        self.json(addr, &call).await
    }

    /// `POST /admin/groups` on the node at `addr`: hosts a replica of
    /// `create.descriptor` there (initializing the raft group when
    /// `create.initialize`).
    pub async fn create_group(
        &self,
        addr: &str,
        create: &CreateGroup,
        limit: Option<Duration>,
    ) -> Result<GroupCreated> {
        let mut call = Call::post_json("/admin/groups", create);
        call.timeout = limit;
        self.json(addr, &call).await
    }

    /// Adds `node` at `addr` as a learner of `m.group` at its leader and
    /// waits until it caught up. `None` (nothing sent) for a member.
    pub async fn add_learner(
        &self,
        m: &Members,
        node: NodeId,
        addr: &str,
        budget: &Budget,
    ) -> Result<Option<MembershipChanged>> {
        if m.has(node) {
            return Ok(None);
        }
        let body = AddLearner {
            node_id: node,
            addr: addr.to_string(),
        };
        let call = Call::post_json(format!("/admin/groups/{}/learners", m.group), &body);
        self.at_leader(m, call, budget).await.map(Some)
    }

    /// Makes `voters` the group's voters (joint consensus, at the leader;
    /// members left out are dropped). `None` when they already are.
    pub async fn change_membership(
        &self,
        m: &Members,
        voters: &BTreeSet<NodeId>,
        budget: &Budget,
    ) -> Result<Option<MembershipChanged>> {
        if &m.voters == voters {
            return Ok(None);
        }
        let body = ChangeMembership {
            voters: voters.clone(),
            retain: false,
        };
        let call = Call::post_json(format!("/admin/groups/{}/membership", m.group), &body);
        self.at_leader(m, call, budget).await.map(Some)
    }

    /// Removes `node` (voter or learner) from the group, at the leader.
    /// `None` for a non-member.
    pub async fn remove_member(
        &self,
        m: &Members,
        node: NodeId,
        budget: &Budget,
    ) -> Result<Option<MembershipChanged>> {
        if !m.has(node) {
            return Ok(None);
        }
        let body = RemoveNode { node_id: node };
        let call = Call::post_json(format!("/admin/groups/{}/remove-node", m.group), &body);
        self.at_leader(m, call, budget).await.map(Some)
    }

    /// Asks the group's leader to hand leadership to `to`.
    pub async fn transfer_leader(&self, m: &Members, to: NodeId, budget: &Budget) -> Result<()> {
        let body = TransferLeader { node_id: to };
        let call = Call::post_json(format!("/admin/groups/{}/transfer", m.group), &body);
        self.at_leader::<serde_json::Value>(m, call, budget)
            .await
            .map(drop)
    }

    /// `DELETE /admin/groups/{group}` on the node at `addr`: drops that
    /// replica and its data. A replica that is already gone (404) counts
    /// as deleted.
    pub async fn delete_group(
        &self,
        addr: &str,
        group: GroupId,
        limit: Option<Duration>,
    ) -> Result<()> {
        let mut call = Call::delete(format!("/admin/groups/{group}"));
        call.timeout = limit;
        match self.send(addr, &call).await {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends an admin `call` answered with JSON `R` to `m`'s leader,
    /// routing over its members (a non-leader answers 409).
    async fn at_leader<R: serde::de::DeserializeOwned>(
        &self,
        m: &Members,
        mut call: Call,
        budget: &Budget,
    ) -> Result<R> {
        if budget.attempt.is_some() {
            call.timeout = budget.attempt;
        }
        let what = format!("{} on group {}", call.path, m.group);
        let call = &call;
        self.route(&what, &m.leader_first(), budget, |addr| async move {
            self.json(&addr, call).await
        })
        .await
    }
}
