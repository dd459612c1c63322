//! The control plane's calls to other nodes' admin API, signed as a node
//! through `checkraft-client`: one group's membership ([`Members`]), and
//! the membership changes a replica move is made of (create a replica, add
//! a learner, swap voters, remove a member, campaign, delete a replica).
//! Each membership change goes to the leader once (no routing retries):
//! the scheduler retries a failed step on its next pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkraft_client::Budget;
pub use checkraft_client::Members;
use checkraft_proto::{CreateGroup, GroupId, NodeId, ShardDescriptor};

use crate::error::{Error, Result};
use crate::node::Node;

/// One status or metrics request.
const QUICK: Duration = Duration::from_secs(3);
/// A membership change, which waits for a learner to catch up (a
/// snapshot of a big shard) or for a joint configuration to commit.
const SLOW: Duration = Duration::from_secs(60);
/// One attempt at the leader only.
const AT_LEADER: Budget = Budget {
    rounds: 1,
    forwards: 0,
    pause: Duration::ZERO,
    total: None,
    attempt: None,
};

/// `m`'s members to call: the leader alone, or an error when none is known.
fn leader_only(m: &Members) -> Result<Members> {
    let leader = m
        .leader_addr()
        .ok_or_else(|| Error::Unavailable(format!("group {} has no leader", m.group)))?;
    let mut only = m.clone();
    only.addrs.retain(|_, a| a == leader);
    Ok(only)
}

impl From<checkraft_client::Error> for Error {
    fn from(e: checkraft_client::Error) -> Self {
        match e {
            checkraft_client::Error::NotFound { .. } => Error::NotFound(e.to_string()),
            _ => Error::Unavailable(e.to_string()),
        }
    }
}

impl Node {
    /// The membership of `group`, asked of `probes` in turn, and then of
    /// the leader they name.
    pub(crate) async fn members(&self, group: GroupId, probes: &[String]) -> Result<Members> {
        Ok(self
            .peers()
            .api()
            .members(group, probes, Some(QUICK))
            .await?)
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
        let api = self.peers().api();
        api.create_group(addr, &body, Some(QUICK)).await?;
        Ok(())
    }

    /// Adds `node` at `addr` as a learner, at the leader, and waits until
    /// it caught up. A no-op for a member.
    pub(crate) async fn add_learner_at(&self, m: &Members, node: NodeId, addr: &str) -> Result<()> {
        if m.has(node) {
            return Ok(());
        }
        let budget = AT_LEADER.per_attempt(SLOW);
        let api = self.peers().api();
        api.add_learner(&leader_only(m)?, node, addr, &budget)
            .await?;
        Ok(())
    }

    /// Makes `voters` the group's voters (joint consensus, at the leader;
    /// members left out are dropped). A no-op when they already are.
    pub(crate) async fn set_voters_at(&self, m: &Members, voters: &BTreeSet<NodeId>) -> Result<()> {
        if &m.voters == voters {
            return Ok(());
        }
        let budget = AT_LEADER.per_attempt(SLOW);
        let api = self.peers().api();
        api.change_membership(&leader_only(m)?, voters, &budget)
            .await?;
        Ok(())
    }

    /// Removes `node` from the group, at the leader. A no-op for a
    /// non-member.
    pub(crate) async fn remove_member_at(&self, m: &Members, node: NodeId) -> Result<()> {
        if !m.has(node) {
            return Ok(());
        }
        let budget = AT_LEADER.per_attempt(SLOW);
        let api = self.peers().api();
        api.remove_member(&leader_only(m)?, node, &budget).await?;
        Ok(())
    }

    /// Asks the group's leader to hand leadership to `to`.
    pub(crate) async fn transfer_at(&self, m: &Members, to: NodeId) -> Result<()> {
        let budget = AT_LEADER.per_attempt(QUICK);
        let api = self.peers().api();
        Ok(api.transfer_leader(&leader_only(m)?, to, &budget).await?)
    }
}
