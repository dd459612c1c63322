//! Calls from the operation runner to a shard's leader: linearizable reads
//! and reshape commands, routed over the map and following 421 forwards by
//! `checkraft-client` (signed as a node).

use std::time::Duration;

use checkraft_client::Budget;
use checkraft_proto::{Command, ShardId, ShardMap, ShardRead, WriteOutcome};

use crate::error::Result;
use crate::node::Node;

/// How the runner's shard calls retry: over the replicas for at most 10 s,
/// each request limited to 3 s, pausing 100 ms after a pass without an
/// answer.
const SHARD_CALL: Budget = Budget {
    rounds: usize::MAX,
    forwards: usize::MAX,
    pause: Duration::from_millis(100),
    total: Some(Duration::from_secs(10)),
    attempt: Some(REQUEST_LIMIT),
};
/// One HTTP request's limit.
const REQUEST_LIMIT: Duration = Duration::from_secs(3);

impl Node {
    /// A linearizable read of the whole shard at its leader.
    pub(crate) async fn read_shard(&self, map: &ShardMap, shard: ShardId) -> Result<ShardRead> {
        let api = self.peers().api();
        Ok(api.read_shard(map, shard, &SHARD_CALL).await?)
    }

    /// Proposes a reshape command at the shard's leader: its outcome
    /// (applied or rejected).
    pub(crate) async fn reshape_shard(
        &self,
        map: &ShardMap,
        shard: ShardId,
        command: &Command,
    ) -> Result<WriteOutcome> {
        let api = self.peers().api();
        Ok(api.reshape_shard(map, shard, command, &SHARD_CALL).await?)
    }

    /// Deletes a group's replica on the node at `addr` (a replica already
    /// gone counts as deleted).
    pub(crate) async fn delete_remote_group(&self, addr: &str, shard: ShardId) -> Result<()> {
        let api = self.peers().api();
        Ok(api.delete_group(addr, shard, Some(REQUEST_LIMIT)).await?)
    }
}
