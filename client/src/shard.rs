//! Calls to a shard's leader, routed over the shard map: linearizable
//! reads and write-like commands (reshape, write, restore).

use checkraft_proto::{codec, Command, ShardId, ShardMap, ShardRead, WriteOutcome};

use crate::api::NodeApi;
use crate::call::Call;
use crate::error::Result;
use crate::route::{shard_candidates, Budget};

impl NodeApi {
    /// A linearizable read of the whole of `shard` at its leader, routed
    /// over `map`.
    pub async fn read_shard(
        &self,
        map: &ShardMap,
        shard: ShardId,
        budget: &Budget,
    ) -> Result<ShardRead> {
        let mut call = Call::get(format!("/shards/{shard}/read?linearizable=true"));
        call.timeout = budget.attempt;
        let what = format!("linearizable read of shard {shard}");
        let call = &call;
        self.route(
            &what,
            &shard_candidates(map, shard),
            budget,
            |addr| async move { self.bincode(&addr, call).await },
        )
        .await
    }

    /// Proposes a reshape `command` at `shard`'s leader, routed over
    /// `map`: its outcome, applied or rejected.
    pub async fn reshape_shard(
        &self,
        map: &ShardMap,
        shard: ShardId,
        command: &Command,
        budget: &Budget,
    ) -> Result<WriteOutcome> {
        let call = Call::post_bincode(format!("/shards/{shard}/reshape"), codec::encode(command));
        let what = format!("reshape of shard {shard}");
        self.outcome_at_leader(&what, &shard_candidates(map, shard), call, budget)
            .await
    }

    /// Sends a write-like `call` (answered with a [`WriteOutcome`]) to the
    /// leader, starting at `candidates` and following forwards. Returns
    /// the final outcome: `Applied`, `MetaApplied` or `Rejected`.
    pub async fn outcome_at_leader(
        &self,
        what: &str,
        candidates: &[String],
        mut call: Call,
        budget: &Budget,
    ) -> Result<WriteOutcome> {
        if budget.attempt.is_some() {
            call.timeout = budget.attempt;
        }
        let call = &call;
        self.route(what, candidates, budget, |addr| async move {
            self.outcome(&addr, call).await
        })
        .await
    }
}
