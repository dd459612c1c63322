//! The signing side, for `reqwest` clients: [`Signer`] and
//! [`SendSigned::send_signed`], the one way cluster processes send calls
//! to nodes.

use std::future::Future;

use crate::mac::now_ms;
use crate::{Proof, Role, Secret, HEADER};

/// Signs requests as one role.
#[derive(Debug, Clone)]
pub struct Signer {
    role: Role,
    secret: Secret,
}

impl Signer {
    /// A signer for `role` with its `secret`.
    pub fn new(role: Role, secret: Secret) -> Signer {
        Signer { role, secret }
    }

    /// The role this signer signs as.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The header value for a request, signed now.
    pub fn header(&self, method: &str, path_and_query: &str, body: &[u8]) -> String {
        Proof::sign(
            &self.secret,
            self.role,
            now_ms(),
            method,
            path_and_query,
            body,
        )
        .to_header()
    }

    /// Adds the proof header to a built request. A streaming body (none
    /// of ours) is signed as empty and will fail verification.
    pub fn sign(&self, request: &mut reqwest::Request) {
        let url = request.url();
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let body = request.body().and_then(|b| b.as_bytes()).unwrap_or(&[]);
        let value = self.header(request.method().as_str(), &path_and_query, body);
        request.headers_mut().insert(
            HEADER,
            reqwest::header::HeaderValue::from_str(&value).expect("proof header is ASCII"),
        );
    }
}

/// `request_builder.send_signed(&signer)`: like `send`, with the proof.
pub trait SendSigned {
    /// Builds the request, signs it, and sends it.
    fn send_signed(
        self,
        signer: &Signer,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send;
}

impl SendSigned for reqwest::RequestBuilder {
    fn send_signed(
        self,
        signer: &Signer,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send {
        let (client, request) = self.build_split();
        let signed = request.map(|mut r| {
            signer.sign(&mut r);
            r
        });
        async move { client.execute(signed?).await }
    }
}
