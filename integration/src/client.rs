//! A typed client of the node's HTTP API, for tests.

use std::collections::BTreeMap;
use std::time::Duration;

use checkraft_auth::{Role, Secret, SendSigned, Signer};
use checkraft_client::{Call, Credential, NodeApi};
use checkraft_proto::codec::FrameReader;
use checkraft_proto::{
    AddLearner, ChangeEvent, ChangeMembership, CreateGroup, GroupCreated, GroupStatus,
    MembershipChanged, NodeStatus, SetBatch, ShardDescriptor, ShardRead, SnapshotInfo,
    WriteOutcome,
};

/// The typed node client of the tests: signed as a node with the test
/// cluster secret, each request limited to 15 s.
pub fn peer_api() -> NodeApi {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client");
    let secret = Secret::new("cluster secret", crate::TEST_CLUSTER_SECRET).expect("long enough");
    NodeApi::new(http, Credential::peer(Signer::new(Role::Node, secret)))
}

/// Client of one node.
#[derive(Clone)]
pub struct NodeClient {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Data-plane and status calls: signed, no admin token.
    api: NodeApi,
    /// Admin calls: signed, with the admin token when one is set.
    admin: NodeApi,
}

impl NodeClient {
    /// A client of the node at `addr`.
    pub fn new(addr: &str) -> Self {
        let api = peer_api();
        Self {
            addr: addr.to_string(),
            admin: api.clone(),
            api,
        }
    }

    /// The same client, sending `Authorization: Bearer token` on admin calls.
    pub fn with_token(mut self, token: &str) -> Self {
        let credential = self.admin.credential().clone();
        self.admin = NodeApi::new(
            self.api.http().clone(),
            credential.with_token(Some(token.to_string())),
        );
        self
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The same client, signing with `signer` instead (for tests of
    /// wrong or gateway credentials).
    pub fn with_signer(mut self, signer: Signer) -> Self {
        let http = self.api.http().clone();
        let api = self.api.credential().clone().with_signer(signer.clone());
        let admin = self.admin.credential().clone().with_signer(signer);
        self.api = NodeApi::new(http.clone(), api);
        self.admin = NodeApi::new(http, admin);
        self
    }

    fn signer(&self) -> &Signer {
        self.api.credential().signer().expect("test clients sign")
    }

    /// Sends a raw request built on [`Self::http`], signed like every call
    /// of this client.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
        rb.send_signed(self.signer()).await
    }

    /// The underlying HTTP client, for raw requests (unsigned unless sent
    /// with [`Self::send`]).
    pub fn http(&self) -> &reqwest::Client {
        self.api.http()
    }

    /// The typed client this one sends its calls with (no admin token).
    pub fn api(&self) -> &NodeApi {
        &self.api
    }

    /// `GET /metrics`: the Prometheus text (read it with
    /// [`crate::metric_sum`]).
    pub async fn scrape(&self) -> anyhow::Result<String> {
        Ok(self
            .http()
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// True when `/health` answers 200.
    pub async fn health(&self) -> bool {
        self.api
            .send(&self.addr, &Call::get("/health"))
            .await
            .is_ok()
    }

    /// `GET /status`.
    pub async fn status(&self) -> anyhow::Result<NodeStatus> {
        Ok(self.api.json(&self.addr, &Call::get("/status")).await?)
    }

    /// `POST /admin/groups`.
    pub async fn create_group(
        &self,
        descriptor: ShardDescriptor,
        members: BTreeMap<u64, String>,
        initialize: bool,
    ) -> anyhow::Result<GroupCreated> {
        let body = CreateGroup {
            descriptor,
            members,
            initialize,
        };
        Ok(self.admin.create_group(&self.addr, &body, None).await?)
    }

    /// `POST /admin/groups/{id}/learners`; waits until the learner caught up.
    pub async fn add_learner(
        &self,
        group: u64,
        node_id: u64,
        addr: &str,
    ) -> anyhow::Result<MembershipChanged> {
        let body = AddLearner {
            node_id,
            addr: addr.to_string(),
        };
        let call = Call::post_json(format!("/admin/groups/{group}/learners"), &body);
        Ok(self.admin.json(&self.addr, &call).await?)
    }

    /// `POST /admin/groups/{id}/membership`.
    pub async fn change_membership(
        &self,
        group: u64,
        voters: &[u64],
    ) -> anyhow::Result<MembershipChanged> {
        let body = ChangeMembership {
            voters: voters.iter().copied().collect(),
            retain: false,
        };
        let call = Call::post_json(format!("/admin/groups/{group}/membership"), &body);
        Ok(self.admin.json(&self.addr, &call).await?)
    }

    /// `POST /admin/groups/{id}/snapshot`.
    pub async fn snapshot(&self, group: u64) -> anyhow::Result<SnapshotInfo> {
        let path = format!("/admin/groups/{group}/snapshot");
        let call = Call::new(reqwest::Method::POST, path);
        Ok(self.admin.json(&self.addr, &call).await?)
    }

    /// `GET /admin/groups/{id}/metrics`.
    pub async fn metrics(&self, group: u64) -> anyhow::Result<GroupStatus> {
        let call = Call::get(format!("/admin/groups/{group}/metrics"));
        Ok(self.admin.json(&self.addr, &call).await?)
    }

    /// `POST /shards/{id}/write`. Returns the outcome for statuses that
    /// carry one (200, 409, 421, 503 without leader) and an error otherwise.
    pub async fn write(&self, group: u64, batch: &SetBatch) -> anyhow::Result<WriteOutcome> {
        let call = Call::post_json(format!("/shards/{group}/write"), batch);
        let resp = self.api.response(&self.addr, &call).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        match serde_json::from_slice::<WriteOutcome>(&body) {
            Ok(outcome) => Ok(outcome),
            Err(_) => anyhow::bail!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
        }
    }

    /// `GET /shards/{id}/read` of the whole shard.
    pub async fn read(&self, group: u64, linearizable: bool) -> anyhow::Result<ShardRead> {
        let call = Call::get(format!("/shards/{group}/read?linearizable={linearizable}"));
        Ok(self.api.bincode(&self.addr, &call).await?)
    }

    /// `GET /shards/{id}/changes?from=SEQ`.
    pub async fn changes(&self, group: u64, from: u64) -> anyhow::Result<ChangeStream> {
        // The stream is long-lived: no overall timeout on this request.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let resp = http
            .get(self.url(&format!("/shards/{group}/changes?from={from}")))
            .send_signed(self.signer())
            .await?
            .error_for_status()?;
        Ok(ChangeStream {
            resp,
            reader: FrameReader::new(),
        })
    }
}

/// A decoded change stream.
pub struct ChangeStream {
    resp: reqwest::Response,
    reader: FrameReader,
}

impl ChangeStream {
    /// The next event, `None` when `limit` passed first, and an error when
    /// the server ended the stream.
    pub async fn next(&mut self, limit: Duration) -> anyhow::Result<Option<ChangeEvent>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(event) = self.reader.next_frame::<ChangeEvent>()? {
                return Ok(Some(event));
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return Ok(None),
                Ok(chunk) => match chunk? {
                    Some(bytes) => self.reader.push(&bytes),
                    None => anyhow::bail!("the server ended the change stream"),
                },
            }
        }
    }

    /// The next event that is not a `Progress` marker.
    pub async fn next_change(&mut self, limit: Duration) -> anyhow::Result<Option<ChangeEvent>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Some(ChangeEvent::Progress { .. }) => continue,
                other => return Ok(other),
            }
        }
    }
}
