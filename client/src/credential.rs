//! [`Credential`]: what a call carries to prove who sends it.

use checkraft_auth::{SendSigned, Signer};

/// How calls authenticate: the operator's admin bearer token, a peer
/// proof ([`Signer`], as a node or a gateway), both (the test harness),
/// or nothing (public endpoints).
#[derive(Clone, Default)]
pub struct Credential {
    token: Option<String>,
    signer: Option<Signer>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("signer", &self.signer.as_ref().map(Signer::role))
            .finish()
    }
}

impl Credential {
    /// No credential: only public endpoints answer.
    pub fn none() -> Self {
        Self::default()
    }

    /// The operator's admin token, sent as `Authorization: Bearer`.
    pub fn admin(token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            signer: None,
        }
    }

    /// A peer proof (`x-checkraft-auth`) signed by `signer`.
    pub fn peer(signer: Signer) -> Self {
        Self {
            token: None,
            signer: Some(signer),
        }
    }

    /// The same credential, also sending the admin `token` (when `Some`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The same credential, signing with `signer` instead.
    pub fn with_signer(mut self, signer: Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The signer, when this credential signs.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// Sends `rb` with this credential: the bearer token as a header, and
    /// the peer proof last (it covers the final method, path and body).
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
        let rb = match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        };
        match &self.signer {
            Some(signer) => rb.send_signed(signer).await,
            None => rb.send().await,
        }
    }
}
