//! [`Call`]: one request to a node, independent of the address it goes to
//! (so routing can send it to several).

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde::Serialize;

/// The content type of bincode bodies (`checkraft_proto::codec`).
pub const BINCODE: &str = "application/x-checkraft-bincode";

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON body.
    Json(Bytes),
    /// A bincode body.
    Bincode(Bytes),
}

/// A method, a path (with query) and a body, plus an optional timeout for
/// one attempt. Cheap to clone: bodies are shared [`Bytes`].
#[derive(Debug, Clone)]
pub struct Call {
    /// The HTTP method.
    pub method: Method,
    /// The path and query, starting with `/`.
    pub path: String,
    /// The body.
    pub body: Body,
    /// The limit of one attempt; `None` leaves the `reqwest::Client`'s.
    pub timeout: Option<Duration>,
}

impl Call {
    /// A call without a body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            body: Body::Empty,
            timeout: None,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// `DELETE path`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// `POST path` with `body` as JSON.
    pub fn post_json<B: Serialize + ?Sized>(path: impl Into<String>, body: &B) -> Self {
        let bytes = serde_json::to_vec(body).expect("wire types serialize to JSON");
        Self::new(Method::POST, path).with_body(Body::Json(bytes.into()))
    }

    /// `POST path` with an encoded bincode body.
    pub fn post_bincode(path: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self::new(Method::POST, path).with_body(Body::Bincode(body.into()))
    }

    /// The same call with `body`.
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// The same call, each attempt limited to `limit`.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}
