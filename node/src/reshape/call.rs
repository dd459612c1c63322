//! Calls from the operation runner to a shard's leader: linearizable reads
//! and reshape commands, routed over the map and following 421 forwards.

use std::time::Duration;

use checkraft_auth::SendSigned;
use checkraft_proto::{codec, Command, ShardId, ShardMap, ShardRead, WriteOutcome};
use reqwest::StatusCode;

use crate::error::{Error, Result};
use crate::node::Node;

/// How long one call (with its retries over replicas) may take.
const CALL_BUDGET: Duration = Duration::from_secs(10);
/// One HTTP request's limit.
const REQUEST_LIMIT: Duration = Duration::from_secs(3);

/// Replica addresses of `shard` to try: leader hint first.
fn candidates(map: &ShardMap, shard: ShardId) -> Vec<String> {
    let Some(record) = map.shards.get(&shard) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for id in record
        .leader
        .into_iter()
        .chain(record.replicas.iter().copied())
    {
        if let Some(addr) = map.addr(id) {
            if !out.iter().any(|a| a == addr) {
                out.push(addr.to_string());
            }
        }
    }
    out
}

/// What one attempt at one replica gave.
enum Answer<T> {
    Done(T),
    Forward(String),
    Retry(String),
}

/// Tries `attempt` at the shard's replicas (following forwards) until it
/// answers, for at most [`CALL_BUDGET`].
async fn routed<T, F, Fut>(map: &ShardMap, shard: ShardId, what: &str, attempt: F) -> Result<T>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Answer<T>>,
{
    let replicas = candidates(map, shard);
    if replicas.is_empty() {
        return Err(Error::Unavailable(format!(
            "shard {shard} has no replica address in the map"
        )));
    }
    let deadline = tokio::time::Instant::now() + CALL_BUDGET;
    let mut next = 0usize;
    let mut forwarded: Option<String> = None;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let addr = forwarded
            .take()
            .unwrap_or_else(|| replicas[next % replicas.len()].clone());
        match attempt(addr.clone()).await {
            Answer::Done(value) => return Ok(value),
            Answer::Forward(leader) if leader != addr => forwarded = Some(leader),
            Answer::Forward(_) => {
                next += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Answer::Retry(why) => {
                tracing::debug!(shard_id = shard, %addr, %why, "{what}: trying the next replica");
                last = format!("{addr}: {why}");
                next += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Err(Error::Unavailable(format!(
        "{what} on shard {shard}: no answer within {CALL_BUDGET:?} (last: {last})"
    )))
}

fn forward_of(outcome: &WriteOutcome) -> Option<String> {
    match outcome {
        WriteOutcome::ForwardToLeader {
            leader_addr: Some(a),
            ..
        } => Some(a.clone()),
        _ => None,
    }
}

impl Node {
    /// A linearizable read of the whole shard at its leader.
    pub(crate) async fn read_shard(&self, map: &ShardMap, shard: ShardId) -> Result<ShardRead> {
        routed(map, shard, "linearizable read", |addr| async move {
            let url = format!("http://{addr}/shards/{shard}/read?linearizable=true");
            let sent = self
                .peers()
                .client(&addr)
                .get(url)
                .timeout(REQUEST_LIMIT)
                .send_signed(self.peers().signer())
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => return Answer::Retry(e.to_string()),
            };
            let status = resp.status();
            let Ok(body) = resp.bytes().await else {
                return Answer::Retry("body lost".into());
            };
            if status == StatusCode::OK {
                return match codec::decode::<ShardRead>(&body) {
                    Ok(read) => Answer::Done(read),
                    Err(e) => Answer::Retry(format!("bad read: {e}")),
                };
            }
            match serde_json::from_slice::<WriteOutcome>(&body)
                .ok()
                .and_then(|o| forward_of(&o))
            {
                Some(leader) => Answer::Forward(leader),
                None => Answer::Retry(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                )),
            }
        })
        .await
    }

    /// Proposes a reshape command at the shard's leader: its outcome
    /// (applied or rejected).
    pub(crate) async fn reshape_shard(
        &self,
        map: &ShardMap,
        shard: ShardId,
        command: &Command,
    ) -> Result<WriteOutcome> {
        let body = codec::encode(command);
        let body = &body;
        routed(map, shard, "reshape", |addr| async move {
            let url = format!("http://{addr}/shards/{shard}/reshape");
            let sent = self
                .peers()
                .client(&addr)
                .post(url)
                .body(body.clone())
                .timeout(REQUEST_LIMIT)
                .send_signed(self.peers().signer())
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => return Answer::Retry(e.to_string()),
            };
            let status = resp.status();
            let Ok(bytes) = resp.bytes().await else {
                return Answer::Retry("body lost".into());
            };
            match serde_json::from_slice::<WriteOutcome>(&bytes) {
                Ok(o) => match forward_of(&o) {
                    Some(leader) => Answer::Forward(leader),
                    None => match o {
                        WriteOutcome::Applied { .. } | WriteOutcome::Rejected { .. } => {
                            Answer::Done(o)
                        }
                        other => Answer::Retry(format!("{other:?}")),
                    },
                },
                Err(_) => Answer::Retry(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes).trim()
                )),
            }
        })
        .await
    }

    /// Deletes a group's replica on the node at `addr`.
    pub(crate) async fn delete_remote_group(&self, addr: &str, shard: ShardId) -> Result<()> {
        let url = format!("http://{addr}/admin/groups/{shard}");
        let resp = self
            .peers()
            .client(addr)
            .delete(url)
            .timeout(REQUEST_LIMIT)
            .send_signed(self.peers().signer())
            .await
            .map_err(|e| Error::Unavailable(format!("{addr}: {e}")))?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(Error::Unavailable(format!(
                "{addr}: HTTP {s}: {}",
                resp.text().await.unwrap_or_default().trim()
            ))),
        }
    }
}
