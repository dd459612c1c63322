//! [`NodeApi`]: one call to one node, and what its answer means.

use bytes::Bytes;
use checkraft_proto::{codec, ApiError, WriteOutcome};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::call::{Body, Call, BINCODE};
use crate::credential::Credential;
use crate::error::{Error, Result};

/// A `reqwest::Client` and the [`Credential`] its calls carry. Cheap to
/// clone (both halves share their insides).
#[derive(Debug, Clone)]
pub struct NodeApi {
    http: reqwest::Client,
    credential: Credential,
}

impl NodeApi {
    /// Calls through `http` (its timeouts apply unless a [`Call`] sets
    /// one), authenticated by `credential`.
    pub fn new(http: reqwest::Client, credential: Credential) -> Self {
        Self { http, credential }
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The credential of this client's calls.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Sends `call` to `addr` and returns the response whatever its
    /// status; an error only when no answer came.
    pub async fn response(&self, addr: &str, call: &Call) -> Result<reqwest::Response> {
        let mut rb = self
            .http
            .request(call.method.clone(), format!("http://{addr}{}", call.path));
        if let Some(limit) = call.timeout {
            rb = rb.timeout(limit);
        }
        rb = match &call.body {
            Body::Empty => rb,
            Body::Json(b) => rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone()),
            Body::Bincode(b) => rb
                .header(reqwest::header::CONTENT_TYPE, BINCODE)
                .body(b.clone()),
        };
        self.credential
            .send(rb)
            .await
            .map_err(|e| transport(addr, call, &e))
    }

    /// Sends `call` to `addr`: the body of a 2xx answer, or the answer
    /// classified as an [`Error`].
    pub async fn send(&self, addr: &str, call: &Call) -> Result<Bytes> {
        let resp = self.response(addr, call).await?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| transport(addr, call, &e))?;
        if status.is_success() {
            return Ok(body);
        }
        Err(classify(addr, &call.path, status, &body))
    }

    /// [`NodeApi::send`], decoding a JSON answer.
    pub async fn json<R: DeserializeOwned>(&self, addr: &str, call: &Call) -> Result<R> {
        let body = self.send(addr, call).await?;
        serde_json::from_slice(&body).map_err(|e| decode(addr, call, e))
    }

    /// [`NodeApi::send`], decoding a bincode answer.
    pub async fn bincode<R: DeserializeOwned>(&self, addr: &str, call: &Call) -> Result<R> {
        let body = self.send(addr, call).await?;
        codec::decode(&body).map_err(|e| decode(addr, call, e))
    }

    /// Sends a write-like `call` (one answered with a [`WriteOutcome`]:
    /// shard writes, reshape and restore commands, metadata commands).
    /// `Applied`, `MetaApplied` and `Rejected` are answers (a rejection is
    /// a value, not an error); a `ForwardToLeader` is
    /// [`Error::ForwardToLeader`]; any other answer is classified.
    pub async fn outcome(&self, addr: &str, call: &Call) -> Result<WriteOutcome> {
        let resp = self.response(addr, call).await?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| transport(addr, call, &e))?;
        match serde_json::from_slice::<WriteOutcome>(&body) {
            Ok(WriteOutcome::ForwardToLeader { leader_addr, .. }) => Err(Error::ForwardToLeader {
                addr: addr.to_string(),
                path: call.path.clone(),
                leader_addr,
            }),
            Ok(outcome) => Ok(outcome),
            Err(e) if status.is_success() => Err(decode(addr, call, e)),
            Err(_) => Err(classify(addr, &call.path, status, &body)),
        }
    }
}

fn transport(addr: &str, call: &Call, e: &reqwest::Error) -> Error {
    // The source chain says why (refused, timed out, reset).
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::Transport {
        addr: addr.to_string(),
        path: call.path.clone(),
        message,
    }
}

fn decode(addr: &str, call: &Call, e: impl std::fmt::Display) -> Error {
    Error::Decode {
        addr: addr.to_string(),
        path: call.path.clone(),
        message: e.to_string(),
    }
}

/// What a non-2xx answer of `addr` to `path` means: a leader forward (a
/// [`WriteOutcome::ForwardToLeader`] body, 421 or 503), a 409 not-leader
/// or conflict, a retryable 503/429/502/504, a 404, or a final refusal.
/// The message is the [`ApiError`]'s when the body is one, else the body's
/// text.
pub fn classify(addr: &str, path: &str, status: StatusCode, body: &[u8]) -> Error {
    let (addr, path) = (addr.to_string(), path.to_string());
    if let Ok(WriteOutcome::ForwardToLeader { leader_addr, .. }) = serde_json::from_slice(body) {
        return Error::ForwardToLeader {
            addr,
            path,
            leader_addr,
        };
    }
    let message = match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    match status {
        StatusCode::CONFLICT => Error::NotLeader {
            addr,
            path,
            message,
        },
        StatusCode::NOT_FOUND => Error::NotFound {
            addr,
            path,
            message,
        },
        StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::GATEWAY_TIMEOUT => Error::Unavailable {
            addr,
            path,
            status,
            message,
        },
        _ => Error::Refused {
            addr,
            path,
            status,
            message,
        },
    }
}
