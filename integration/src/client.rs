//! A typed client of the node's HTTP API, for tests.

use std::collections::BTreeMap;
use std::time::Duration;

use checkraft_auth::{Role, Secret, SendSigned, Signer};
use checkraft_proto::codec::{self, FrameReader};
use checkraft_proto::{
    AddLearner, ChangeEvent, ChangeMembership, CreateGroup, GroupCreated, GroupStatus,
    MembershipChanged, NodeStatus, SetBatch, ShardDescriptor, ShardRead, SnapshotInfo,
    WriteOutcome,
};

/// Client of one node.
#[derive(Clone)]
pub struct NodeClient {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    http: reqwest::Client,
    token: Option<String>,
    signer: Signer,
}

impl NodeClient {
    /// A client of the node at `addr`.
    pub fn new(addr: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        Self {
            addr: addr.to_string(),
            http,
            token: None,
            signer: Signer::new(
                Role::Node,
                Secret::new("cluster secret", crate::TEST_CLUSTER_SECRET).expect("long enough"),
            ),
        }
    }

    /// The same client, sending `Authorization: Bearer token` on admin calls.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The same client, signing with `signer` instead (for tests of
    /// wrong or gateway credentials).
    pub fn with_signer(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }

    /// Sends a raw request built on [`Self::http`], signed like every call
    /// of this client.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
        rb.send_signed(&self.signer).await
    }

    /// The underlying HTTP client, for raw requests (unsigned unless sent
    /// with [`Self::send`]).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn admin(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// `GET /metrics`: the Prometheus text (read it with
    /// [`crate::metric_sum`]).
    pub async fn scrape(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// True when `/health` answers 200.
    pub async fn health(&self) -> bool {
        matches!(self.http.get(self.url("/health")).send_signed(&self.signer).await, Ok(r) if r.status().is_success())
    }

    /// `GET /status`.
    pub async fn status(&self) -> anyhow::Result<NodeStatus> {
        Ok(self
            .http
            .get(self.url("/status"))
            .send_signed(&self.signer)
            .await?
            .error_for_status()?
            .json()
            .await?)
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
        let rb = self.admin(self.http.post(self.url("/admin/groups")).json(&body));
        Ok(rb
            .send_signed(&self.signer)
            .await?
            .error_for_status()?
            .json()
            .await?)
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
        let rb = self.admin(
            self.http
                .post(self.url(&format!("/admin/groups/{group}/learners")))
                .json(&body),
        );
        Ok(rb
            .send_signed(&self.signer)
            .await?
            .error_for_status()?
            .json()
            .await?)
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
        let rb = self.admin(
            self.http
                .post(self.url(&format!("/admin/groups/{group}/membership")))
                .json(&body),
        );
        Ok(rb
            .send_signed(&self.signer)
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// `POST /admin/groups/{id}/snapshot`.
    pub async fn snapshot(&self, group: u64) -> anyhow::Result<SnapshotInfo> {
        let rb = self.admin(
            self.http
                .post(self.url(&format!("/admin/groups/{group}/snapshot"))),
        );
        Ok(rb
            .send_signed(&self.signer)
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// `GET /admin/groups/{id}/metrics`.
    pub async fn metrics(&self, group: u64) -> anyhow::Result<GroupStatus> {
        let rb = self.admin(
            self.http
                .get(self.url(&format!("/admin/groups/{group}/metrics"))),
        );
        Ok(rb
            .send_signed(&self.signer)
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// `POST /shards/{id}/write`. Returns the outcome for statuses that
    /// carry one (200, 409, 421, 503 without leader) and an error otherwise.
    pub async fn write(&self, group: u64, batch: &SetBatch) -> anyhow::Result<WriteOutcome> {
        let resp = self
            .http
            .post(self.url(&format!("/shards/{group}/write")))
            .json(batch)
            .send_signed(&self.signer)
            .await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        match serde_json::from_slice::<WriteOutcome>(&body) {
            Ok(outcome) => Ok(outcome),
            Err(_) => anyhow::bail!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
        }
    }

    /// `GET /shards/{id}/read` of the whole shard.
    pub async fn read(&self, group: u64, linearizable: bool) -> anyhow::Result<ShardRead> {
        let url = self.url(&format!("/shards/{group}/read?linearizable={linearizable}"));
        let body = self
            .http
            .get(url)
            .send_signed(&self.signer)
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        Ok(codec::decode(&body)?)
    }

    /// `GET /shards/{id}/changes?from=SEQ`.
    pub async fn changes(&self, group: u64, from: u64) -> anyhow::Result<ChangeStream> {
        // The stream is long-lived: no overall timeout on this request.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        let resp = http
            .get(self.url(&format!("/shards/{group}/changes?from={from}")))
            .send_signed(&self.signer)
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
