//! [`NodeClient`]: the gateway's HTTP client of nodes. Every call it
//! makes is signed as a gateway (`checkraft-auth`), so nodes can tell it
//! from a stranger and limit it to the data plane. Leader views and
//! metadata-leader calls go through `checkraft-client`; the write hot path
//! (`writer.rs`) builds its own signed requests with [`NodeClient::post`].

use std::time::Duration;

use checkraft_auth::Signer;
use checkraft_client::{Budget, Call, Credential, NodeApi};
use checkraft_proto::{LeaderView, ShardId};
use serde::de::DeserializeOwned;

/// Routing to the metadata leader: each candidate once, following at most
/// 4 `421` forwards, no pause.
const TO_META_LEADER: Budget = Budget::ONCE;

/// A `reqwest::Client` and the signer of its calls.
#[derive(Debug, Clone)]
pub struct NodeClient {
    api: NodeApi,
}

impl NodeClient {
    /// Calls through `http`, signed by `signer`.
    pub fn new(http: reqwest::Client, signer: Signer) -> Self {
        Self {
            api: NodeApi::new(http, Credential::peer(signer)),
        }
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
        self.api.http().get(url)
    }

    /// A POST request to `url` (send it as [`Self::get`] says).
    pub fn post(&self, url: String) -> reqwest::RequestBuilder {
        self.api.http().post(url)
    }

    /// The signer of this client's calls.
    pub fn signer(&self) -> &Signer {
        self.api.credential().signer().expect("a gateway signs")
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
        let call = Call::get(format!("/shards/{shard}/leader")).timeout(limit);
        self.api.json(addr, &call).await.ok()
    }

    /// Sends `call` (each attempt bounded by `limit`) to the metadata
    /// group's leader with `checkraft-client`'s routing: to each of
    /// `candidates` in turn (put the last known leader first), following a
    /// `421` forward to the leader it names, and skipping nodes that fail
    /// or answer 503 (no leader known). Returns the address that answered
    /// and its decoded JSON answer; an error when none did, or when one
    /// refused the call.
    pub async fn to_meta_leader<R: DeserializeOwned>(
        &self,
        candidates: Vec<String>,
        limit: Duration,
        call: Call,
    ) -> anyhow::Result<(String, R)> {
        let (api, call) = (&self.api, &call.timeout(limit));
        let routed = api.route(
            "metadata leader call",
            &candidates,
            &TO_META_LEADER,
            |addr| async move {
                let answer = api.json(&addr, call).await?;
                Ok((addr, answer))
            },
        );
        Ok(routed.await?)
    }
}
