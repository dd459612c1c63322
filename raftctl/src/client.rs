//! [`ClusterClient`]: how every command talks to the cluster.
//!
//! It starts from one entry node (`--cluster`), reads the shard map from
//! it, and from then on addresses nodes by id through the map. Calls that
//! must reach a leader (metadata commands, shard membership, snapshots,
//! restore) follow `421 ForwardToLeader` answers up to a few hops and retry
//! briefly while an election runs.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use checkraft_proto::{
    codec, ApiError, MetaCommand, MetaOutcome, NodeStatus, ShardMap, WriteOutcome,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::credentials::{read_stored, TOKEN_FILE};

/// How many leader hops and election retries a call makes.
const ATTEMPTS: usize = 40;
/// Pause between retries while no leader is known.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// An HTTP client of the cluster's nodes.
#[derive(Clone)]
pub struct ClusterClient {
    http: reqwest::Client,
    /// The entry node, HOST:PORT.
    pub entry: String,
    token: Option<String>,
}

/// Where a call goes: a path on some node, with a method and a body.
enum Body {
    None,
    Json(Vec<u8>),
    Bincode(Vec<u8>),
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
            http,
            entry: entry.to_string(),
            token,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: &Body,
    ) -> Result<reqwest::Response> {
        let mut rb = self.http.request(method, format!("http://{addr}{path}"));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb = match body {
            Body::None => rb,
            Body::Json(b) => rb
                .header("content-type", "application/json")
                .body(b.clone()),
            Body::Bincode(b) => rb
                .header("content-type", "application/x-checkraft-bincode")
                .body(b.clone()),
        };
        rb.send()
            .await
            .with_context(|| format!("calling {addr}{path}"))
    }

    /// Turns a non-2xx answer into an error carrying the node's message.
    async fn check(addr: &str, path: &str, resp: reqwest::Response) -> Result<bytes::Bytes> {
        let status = resp.status();
        let body = resp.bytes().await?;
        if status.is_success() {
            return Ok(body);
        }
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => bail!("{addr}{path}: HTTP {status}: {}", e.message),
            Err(_) => bail!(
                "{addr}{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// `GET` a JSON body from node `addr`.
    pub async fn get_json<R: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<R> {
        let resp = self
            .send(reqwest::Method::GET, addr, path, &Body::None)
            .await?;
        let body = Self::check(addr, path, resp).await?;
        serde_json::from_slice(&body).with_context(|| format!("decoding {addr}{path}"))
    }

    /// `GET` a bincode body from node `addr`.
    pub async fn get_bincode<R: DeserializeOwned>(&self, addr: &str, path: &str) -> Result<R> {
        let resp = self
            .send(reqwest::Method::GET, addr, path, &Body::None)
            .await?;
        let body = Self::check(addr, path, resp).await?;
        codec::decode(&body).with_context(|| format!("decoding {addr}{path}"))
    }

    /// `GET` a raw body from node `addr`.
    pub async fn get_bytes(&self, addr: &str, path: &str) -> Result<bytes::Bytes> {
        let resp = self
            .send(reqwest::Method::GET, addr, path, &Body::None)
            .await?;
        Self::check(addr, path, resp).await
    }

    /// `POST` a JSON body to node `addr` and decode a JSON answer.
    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
    ) -> Result<R> {
        let body = Body::Json(serde_json::to_vec(body)?);
        let resp = self.send(reqwest::Method::POST, addr, path, &body).await?;
        let bytes = Self::check(addr, path, resp).await?;
        serde_json::from_slice(&bytes).with_context(|| format!("decoding {addr}{path}"))
    }

    /// `DELETE` on node `addr`.
    pub async fn delete(&self, addr: &str, path: &str) -> Result<()> {
        let resp = self
            .send(reqwest::Method::DELETE, addr, path, &Body::None)
            .await?;
        Self::check(addr, path, resp).await.map(|_| ())
    }

    /// `GET /status` of node `addr`.
    pub async fn node_status(&self, addr: &str) -> Result<NodeStatus> {
        self.get_json(addr, "/status").await
    }

    /// The shard map, from the entry node's metadata replica.
    pub async fn map(&self) -> Result<ShardMap> {
        self.get_json(&self.entry, "/meta/map").await
    }

    /// The shard map once its version exceeds `since`, or after `wait`.
    pub async fn wait_map(&self, since: u64, wait: Duration) -> Result<ShardMap> {
        let path = format!("/meta/map?since={since}&wait_ms={}", wait.as_millis());
        self.get_json(&self.entry, &path).await
    }

    /// Sends a write-like request (answered with a [`WriteOutcome`]) to
    /// `addr`, following leader forwards. Returns the final outcome, which
    /// is `Applied`, `MetaApplied` or `Rejected`.
    async fn leader_call(&self, addr: &str, path: &str, body: Body) -> Result<WriteOutcome> {
        let mut target = addr.to_string();
        for _ in 0..ATTEMPTS {
            let resp = match self.send(reqwest::Method::POST, &target, path, &body).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, %target, "retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    target = addr.to_string();
                    continue;
                }
            };
            let status = resp.status();
            let bytes = resp.bytes().await?;
            match serde_json::from_slice::<WriteOutcome>(&bytes) {
                Ok(WriteOutcome::ForwardToLeader {
                    leader_addr: Some(leader),
                    ..
                }) => target = leader,
                Ok(WriteOutcome::ForwardToLeader {
                    leader_addr: None, ..
                }) => tokio::time::sleep(RETRY_PAUSE).await,
                Ok(outcome) => return Ok(outcome),
                Err(_) if status.as_u16() == 503 => tokio::time::sleep(RETRY_PAUSE).await,
                Err(_) => match serde_json::from_slice::<ApiError>(&bytes) {
                    Ok(e) => bail!("{target}{path}: HTTP {status}: {}", e.message),
                    Err(_) => bail!(
                        "{target}{path}: HTTP {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                },
            }
        }
        Err(anyhow!(
            "{path}: no leader answered after {ATTEMPTS} attempts"
        ))
    }

    /// `GET` a JSON body from the metadata leader (`/meta/gateways`),
    /// starting at the entry node and following `421 ForwardToLeader`
    /// answers; retries briefly while no leader is known (503).
    pub async fn get_json_from_meta_leader<R: DeserializeOwned>(&self, path: &str) -> Result<R> {
        let mut target = self.entry.clone();
        for _ in 0..ATTEMPTS / 4 {
            let resp = self
                .send(reqwest::Method::GET, &target, path, &Body::None)
                .await?;
            match resp.status().as_u16() {
                421 => {
                    let bytes = resp.bytes().await?;
                    match serde_json::from_slice::<WriteOutcome>(&bytes) {
                        Ok(WriteOutcome::ForwardToLeader {
                            leader_addr: Some(leader),
                            ..
                        }) => target = leader,
                        _ => tokio::time::sleep(RETRY_PAUSE).await,
                    }
                }
                503 => tokio::time::sleep(RETRY_PAUSE).await,
                _ => {
                    let body = Self::check(&target, path, resp).await?;
                    return serde_json::from_slice(&body)
                        .with_context(|| format!("decoding {target}{path}"));
                }
            }
        }
        Err(anyhow!("{path}: the metadata leader did not answer"))
    }

    /// Proposes a metadata command at the meta leader.
    pub async fn propose_meta(&self, command: &MetaCommand) -> Result<MetaOutcome> {
        let body = Body::Json(serde_json::to_vec(command)?);
        match self.leader_call(&self.entry, "/admin/meta", body).await? {
            WriteOutcome::MetaApplied { outcome, .. } => Ok(outcome),
            WriteOutcome::Rejected { rejection } => {
                bail!("the metadata group refused: {rejection}")
            }
            other => bail!("unexpected answer to a metadata command: {other:?}"),
        }
    }

    /// `POST` a JSON body to the leader of `group`, starting at `addr` and
    /// following forwards, for admin calls answered with JSON `R`. A
    /// non-leader answers these with 409 and a message naming the leader,
    /// so this retries across `candidates` until one succeeds.
    pub async fn post_json_to_leader<B: Serialize, R: DeserializeOwned>(
        &self,
        candidates: &[String],
        path: &str,
        body: &B,
    ) -> Result<R> {
        let mut last = None;
        for _ in 0..ATTEMPTS / 4 {
            for addr in candidates {
                match self.post_json(addr, path, body).await {
                    Ok(r) => return Ok(r),
                    Err(e) => last = Some(e),
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(last.unwrap_or_else(|| anyhow!("no candidates for {path}")))
    }

    /// Sends a shard write-like request (`/shards/{id}/write` JSON or
    /// `/shards/{id}/restore` bincode) to the shard's leader.
    pub async fn shard_call(
        &self,
        addr: &str,
        path: &str,
        bincode_body: Option<Vec<u8>>,
        json_body: Option<Vec<u8>>,
    ) -> Result<WriteOutcome> {
        let body = match (bincode_body, json_body) {
            (Some(b), _) => Body::Bincode(b),
            (None, Some(j)) => Body::Json(j),
            (None, None) => Body::None,
        };
        self.leader_call(addr, path, body).await
    }
}
