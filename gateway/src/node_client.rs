//! [`NodeClient`]: the gateway's HTTP client of nodes. Every call it
//! makes is signed as a gateway (`checkraft-auth`), so nodes can tell it
//! from a stranger and limit it to the data plane.

use std::time::Duration;

use checkraft_auth::{SendSigned, Signer};
use checkraft_proto::{LeaderView, ShardId, WriteOutcome};

/// Most `421` forwards [`NodeClient::to_meta_leader`] follows.
const MAX_FORWARDS: usize = 4;

/// A `reqwest::Client` and the signer of its calls.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    signer: Signer,
}

impl NodeClient {
    /// Calls through `http`, signed by `signer`.
    pub fn new(http: reqwest::Client, signer: Signer) -> Self {
        Self { http, signer }
    }

    /// A client signing with a fixed test secret (unit tests only).
    #[cfg(test)]
    pub fn for_tests() -> Self {
        use checkraft_auth::{Role, Secret};
        let secret = Secret::new("test", "gateway-unit-test-secret").expect("long enough");
        Self::new(reqwest::Client::new(), Signer::new(Role::Gateway, secret))
    }

    /// A GET request to `url`; send it with
    /// `checkraft_auth::SendSigned::send_signed(self.signer())`.
    pub fn get(&self, url: String) -> reqwest::RequestBuilder {
        self.http.get(url)
    }

    /// A POST request to `url` (send it as [`Self::get`] says).
    pub fn post(&self, url: String) -> reqwest::RequestBuilder {
        self.http.post(url)
    }

    /// The signer of this client's calls.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// What the node at `addr` believes about `shard`'s leadership and
    /// its own progress (`GET /shards/{shard}/leader`), or `None` when it
    /// does not answer within `limit`.
    pub async fn leader_view(
        &self,
        addr: &str,
        shard: ShardId,
        limit: Duration,
    ) -> Option<LeaderView> {
        let url = format!("http://{addr}/shards/{shard}/leader");
        let request = self.get(url).timeout(limit).send_signed(self.signer());
        request.await.ok()?.json().await.ok()
    }

    /// Sends the request `build` makes for a node address (signed, each
    /// attempt bounded by `limit`) to the metadata group's leader: to each
    /// of `candidates` in turn (put the last known leader first), following
    /// a `421` [`WriteOutcome::ForwardToLeader`] to the leader it names,
    /// and skipping nodes that fail or answer 503 (no leader known).
    /// Returns the address that answered otherwise, with its answer (which
    /// may be an error status); an error when none did.
    pub async fn to_meta_leader(
        &self,
        candidates: Vec<String>,
        limit: Duration,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<(String, reqwest::Response)> {
        let mut queue = candidates;
        let mut forwards = 0;
        let mut last = anyhow::anyhow!("no node to ask");
        let mut next = 0;
        while next < queue.len() {
            let addr = queue[next].clone();
            next += 1;
            let resp = match build(&addr).timeout(limit).send_signed(self.signer()).await {
                Ok(resp) => resp,
                Err(e) => {
                    last = anyhow::anyhow!("{addr}: {e}");
                    continue;
                }
            };
            match resp.status().as_u16() {
                421 => {
                    let outcome = resp.json::<WriteOutcome>().await;
                    if let Ok(WriteOutcome::ForwardToLeader {
                        leader_addr: Some(leader),
                        ..
                    }) = outcome
                    {
                        if forwards < MAX_FORWARDS && leader != addr {
                            forwards += 1;
                            queue.insert(next, leader.clone());
                        }
                        last = anyhow::anyhow!("{addr}: forwarded to {leader}");
                    }
                }
                503 => last = anyhow::anyhow!("{addr}: no metadata leader known (503)"),
                _ => return Ok((addr, resp)),
            }
        }
        Err(last)
    }
}
