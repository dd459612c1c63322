//! Starting and killing real `checkraft-gateway` processes, and a small
//! client of their HTTP API.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cluster::{bin_dir, Cluster};
use crate::eventually;

/// A real `checkraft-gateway` process following a test cluster.
pub struct GatewayProcess {
    /// The harness's label for it (also passed as `--id`).
    pub id: u64,
    /// `127.0.0.1:PORT` it listens on.
    pub addr: String,
    log: PathBuf,
    child: Option<Child>,
}

impl GatewayProcess {
    /// Starts gateway `id` with every node of `cluster` as a seed, plus
    /// `env` (`CHECKRAFT_GATEWAY_*` overrides), and waits until its
    /// `/health` answers 200 (map and every shard state loaded).
    pub async fn start(cluster: &Cluster, id: u64, env: &[(&str, &str)]) -> Self {
        let addr = format!("127.0.0.1:{}", crate::free_port());
        Self::start_at(cluster, id, addr, env).await
    }

    /// Like [`Self::start`], with `public_endpoint` set to its own
    /// [`Self::public_endpoint`], so that it registers with the metadata
    /// leader and is listed in every gateway's `/config.json`.
    pub async fn start_registered(cluster: &Cluster, id: u64, env: &[(&str, &str)]) -> Self {
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let endpoint = format!("ws://{addr}/ws");
        let mut env = env.to_vec();
        env.push(("CHECKRAFT_GATEWAY_PUBLIC_ENDPOINT", &endpoint));
        Self::start_at(cluster, id, addr, &env).await
    }

    /// Its websocket URL, `ws://ADDR/ws` (what [`Self::start_registered`]
    /// registers).
    pub fn public_endpoint(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    async fn start_at(cluster: &Cluster, id: u64, addr: String, env: &[(&str, &str)]) -> Self {
        let binary = bin_dir().join("checkraft-gateway");
        assert!(
            binary.exists(),
            "{} is missing: build it first (integration/run-tests does)",
            binary.display()
        );
        let log = cluster.dir().join(format!("gateway-{id}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("gateway log file");
        let seeds: Vec<String> = cluster.members().into_values().collect();
        let child = Command::new(binary)
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(&addr)
            .arg("--cluster")
            .arg(seeds.join(","))
            .env(
                "CHECKRAFT_GATEWAY_GATEWAY_SECRET",
                crate::TEST_GATEWAY_SECRET,
            )
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("CHECKRAFT_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("spawn checkraft-gateway");
        let gateway = Self {
            id,
            addr,
            log,
            child: Some(child),
        };
        let client = gateway.client();
        eventually(
            Duration::from_secs(60),
            &format!("gateway {id} to be healthy"),
            || {
                let client = client.clone();
                async move { client.healthy().await.then_some(()) }
            },
        )
        .await;
        gateway
    }

    /// A client of this gateway.
    pub fn client(&self) -> GatewayClient {
        GatewayClient::new(&self.addr)
    }

    /// SIGKILLs the gateway and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its resident memory (`VmRSS`), in bytes.
    pub fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(f) = File::open(&self.log) else {
            return String::new();
        };
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- gateway {} log tail -----\n{}",
                self.id,
                self.log_tail(40)
            );
        }
        self.kill();
    }
}

/// One answer of `GET /api/chunks/{c}`.
#[derive(Debug, Clone)]
pub struct ChunkReply {
    /// HTTP status.
    pub status: u16,
    /// The `ETag` header.
    pub etag: Option<String>,
    /// The `X-Checkraft-Seq` header.
    pub seq: Option<u64>,
    /// The `Content-Encoding` header.
    pub encoding: Option<String>,
    /// The body as received (not decompressed).
    pub body: Vec<u8>,
}

impl ChunkReply {
    /// Whether box `start + i` is set in an uncompressed body (LSB-first).
    pub fn bit(&self, i: u64) -> bool {
        self.body
            .get((i / 8) as usize)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }
}

/// Client of a gateway's HTTP API.
#[derive(Clone)]
pub struct GatewayClient {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    http: reqwest::Client,
}

impl GatewayClient {
    /// A client of the gateway at `addr`.
    pub fn new(addr: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        Self {
            addr: addr.to_string(),
            http,
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The underlying HTTP client, for raw requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
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
    pub async fn healthy(&self) -> bool {
        matches!(self.http.get(self.url("/health")).send().await, Ok(r) if r.status().is_success())
    }

    /// A request's status and body as JSON (`Null` when not JSON).
    async fn json_reply(rb: reqwest::RequestBuilder) -> anyhow::Result<(u16, serde_json::Value)> {
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// `GET /api/boxes/{i}`.
    pub async fn get_box(&self, index: u64) -> anyhow::Result<(u16, serde_json::Value)> {
        Self::json_reply(self.http.get(self.url(&format!("/api/boxes/{index}")))).await
    }

    /// `PUT /api/boxes/{i}` with `{"checked": checked}`.
    pub async fn put_box(
        &self,
        index: u64,
        checked: bool,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let rb = self
            .http
            .put(self.url(&format!("/api/boxes/{index}")))
            .json(&serde_json::json!({ "checked": checked }));
        Self::json_reply(rb).await
    }

    /// `GET /config.json`: the page's endpoint list and where it comes
    /// from.
    pub async fn client_config(&self) -> anyhow::Result<serde_json::Value> {
        Ok(self
            .http
            .get(self.url("/config.json"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// `GET /api/stats`.
    pub async fn stats(&self) -> anyhow::Result<serde_json::Value> {
        let (status, body) = Self::json_reply(self.http.get(self.url("/api/stats"))).await?;
        anyhow::ensure!(status == 200, "stats answered {status}: {body}");
        Ok(body)
    }

    /// `GET /api/chunks/{c}`, with `If-None-Match` and gzip when asked.
    pub async fn chunk(
        &self,
        chunk: u64,
        if_none_match: Option<&str>,
        gzip: bool,
    ) -> anyhow::Result<ChunkReply> {
        let mut rb = self.http.get(self.url(&format!("/api/chunks/{chunk}")));
        if let Some(tag) = if_none_match {
            rb = rb.header("If-None-Match", tag);
        }
        if gzip {
            rb = rb.header("Accept-Encoding", "gzip");
        }
        let resp = rb.send().await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (etag, seq, encoding) = (
            header("etag"),
            header("x-checkraft-seq").and_then(|s| s.parse().ok()),
            header("content-encoding"),
        );
        let status = resp.status().as_u16();
        let body = resp.bytes().await?.to_vec();
        Ok(ChunkReply {
            status,
            etag,
            seq,
            encoding,
            body,
        })
    }
}
