//! [`NodeClient`]: the gateway's HTTP client of nodes. Every call it
//! makes is signed as a gateway (`checkraft-auth`), so nodes can tell it
//! from a stranger and limit it to the data plane.

use checkraft_auth::Signer;

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
}
