//! [`NodeClient`]: the gateway's HTTP client of nodes. Every call it
//! makes is signed as a gateway (`checkraft-auth`), so nodes can tell it
//! from a stranger and limit it to the data plane.

use std::time::Duration;

use checkraft_auth::{SendSigned, Signer};
use checkraft_proto::{LeaderView, ShardId};

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
}
