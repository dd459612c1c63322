//! [`ClusterClient`]: how every command talks to the cluster.
//!
//! It starts from one entry node (`--cluster`), reads the shard map from
//! it, and from then on addresses nodes by id through the map. Calls go
//! through `checkraft-client`'s [`NodeApi`] with the admin token; calls
//! that must reach a leader (metadata commands, shard membership,
//! snapshots, restore) use its leader routing: they follow
//! `421 ForwardToLeader` answers and retry briefly while an election runs.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use checkraft_client::{Budget, Call, Credential, NodeApi};
use checkraft_proto::{MetaCommand, MetaOutcome, NodeStatus, ShardMap, WriteOutcome};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::credentials::{read_stored, TOKEN_FILE};

/// Pause between retries while no leader is known.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Write-like calls (metadata commands, shard restores): 40 tries at the
/// entry node, each following forwards to the leader.
const LEADER_CALL: Budget = Budget {
    rounds: 40,
    forwards: 40,
    pause: RETRY_PAUSE,
    total: None,
    attempt: None,
};
/// Leader-only metadata reads: 10 tries at the entry node.
const LEADER_READ: Budget = Budget {
    rounds: 10,
    forwards: 10,
    pause: RETRY_PAUSE,
    total: None,
    attempt: None,
};

/// An HTTP client of the cluster's nodes.
#[derive(Clone)]
pub struct ClusterClient {
    api: NodeApi,
    /// The entry node, HOST:PORT.
    pub entry: String,
}

impl ClusterClient {
    /// A client entering the cluster at `entry`, authenticating admin calls
    /// with `token` (or the token file of `raftctl up` under `./data`).
    pub fn new(entry: &str, token: Option<String>) -> Self {
        let token = token.or_else(|| read_stored(Path::new("data"), TOKEN_FILE));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client with static settings");
        Self {
            api: NodeApi::new(http, Credential::none().with_token(token)),
            entry: entry.to_string(),
        }
    }

    /// The typed node client underneath.
    pub fn api(&self) -> &NodeApi {
        &self.api
    }

    /// `GET` a JSON body from node `addr`.
    pub async fn get_json<R: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<R> {
        Ok(self.api.json(addr, &Call::get(path)).await?)
    }

    /// `GET` a bincode body from node `addr`.
    pub async fn get_bincode<R: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<R> {
        Ok(self.api.bincode(addr, &Call::get(path)).await?)
    }

    /// `GET` a raw body from node `addr`.
    pub async fn get_bytes(&self, addr: &str, path: &str) -> Result<bytes::Bytes> {
        Ok(self.api.send(addr, &Call::get(path)).await?)
    }

    /// `POST` a JSON body to node `addr` and decode a JSON answer.
    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
    ) -> Result<R> {
        Ok(self.api.json(addr, &Call::post_json(path, body)).await?)
    }

    /// `DELETE` on node `addr`.
    pub async fn delete(&self, addr: &str, path: &str) -> Result<()> {
        self.api.send(addr, &Call::delete(path)).await?;
        Ok(())
    }

    /// `GET /status` of node `addr`.
    pub async fn node_status(&self, addr: &str) -> Result<NodeStatus> {
        self.get_json(addr, "/status").await
    }

    /// The shard map, from the entry node's metadata replica.
    pub async fn map(&self) -> Result<ShardMap> {
        Ok(self.api.map(&self.entry).await?)
    }

    /// The shard map once its version exceeds `since`, or after `wait`.
    pub async fn wait_map(&self, since: u64, wait: Duration) -> Result<ShardMap> {
        Ok(self.api.wait_map(&self.entry, since, wait).await?)
    }

    /// `GET` a JSON body from the metadata leader (`/meta/gateways`),
    /// starting at the entry node and following `421 ForwardToLeader`
    /// answers; retries briefly while no leader is known (503).
    pub async fn get_json_from_meta_leader<R: DeserializeOwned>(&self, path: &str) -> Result<R> {
        let entry = [self.entry.clone()];
        Ok(self
            .api
            .meta_leader_json(&entry, path, &LEADER_READ)
            .await?)
    }

    /// Proposes a metadata command at the meta leader.
    pub async fn propose_meta(&self, command: &MetaCommand) -> Result<MetaOutcome> {
        let entry = [self.entry.clone()];
        match self.api.propose_meta(&entry, command, &LEADER_CALL).await? {
            Ok(outcome) => Ok(outcome),
            Err(rejection) => bail!("the metadata group refused: {rejection}"),
        }
    }

    /// Sends a shard write-like request (`/shards/{id}/restore`, bincode)
    /// to the shard's leader, starting at `addr` and following forwards.
    pub async fn shard_call(&self, addr: &str, path: &str, body: Vec<u8>) -> Result<WriteOutcome> {
        let call = Call::post_bincode(path, body);
        let start = [addr.to_string()];
        Ok(self
            .api
            .outcome_at_leader(path, &start, call, &LEADER_CALL)
            .await?)
    }
}
