//! Calls to the metadata group: map reads (plain and long-poll) at any
//! replica, and commands and leader-only reads at its leader.

use std::time::Duration;

use checkraft_proto::{MetaCommand, MetaOutcome, Rejection, ShardMap, WriteOutcome};
use serde::de::DeserializeOwned;

use crate::api::NodeApi;
use crate::call::Call;
use crate::error::{Error, Result};
use crate::route::Budget;

impl NodeApi {
    /// The shard map, from the metadata replica of the node at `addr`.
    pub async fn map(&self, addr: &str) -> Result<ShardMap> {
        self.json(addr, &Call::get("/meta/map")).await
    }

    /// The map at `addr` once its version exceeds `since`, or after `wait`
    /// (a long poll; the node answers with the map it has then).
    pub async fn wait_map(&self, addr: &str, since: u64, wait: Duration) -> Result<ShardMap> {
        let path = format!("/meta/map?since={since}&wait_ms={}", wait.as_millis());
        self.json(addr, &Call::get(path)).await
    }

    /// Proposes `command` at the metadata leader, starting at
    /// `candidates`. The inner `Err` is the metadata group's refusal (a
    /// value, not a failure of the call).
    pub async fn propose_meta(
        &self,
        candidates: &[String],
        command: &MetaCommand,
        budget: &Budget,
    ) -> Result<std::result::Result<MetaOutcome, Rejection>> {
        let call = Call::post_json("/admin/meta", command);
        let outcome = self
            .outcome_at_leader("metadata command", candidates, call, budget)
            .await?;
        match outcome {
            WriteOutcome::MetaApplied { outcome, .. } => Ok(Ok(outcome)),
            WriteOutcome::Rejected { rejection } => Ok(Err(rejection)),
            other => Err(Error::Decode {
                addr: candidates.join(","),
                path: "/admin/meta".into(),
                message: format!("unexpected answer to a metadata command: {other:?}"),
            }),
        }
    }

    /// `GET path` answered with JSON by the metadata leader only
    /// (`/meta/gateways`, `/meta/health`), starting at `candidates` and
    /// following `421` forwards; retries while no leader is known (503).
    pub async fn meta_leader_json<R: DeserializeOwned>(
        &self,
        candidates: &[String],
        path: &str,
        budget: &Budget,
    ) -> Result<R> {
        let mut call = Call::get(path);
        call.timeout = budget.attempt;
        let call = &call;
        self.route(path, candidates, budget, |addr| async move {
            self.json(&addr, call).await
        })
        .await
    }
}
