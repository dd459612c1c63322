//! A box-writing workload through the HTTP API (`PUT /api/boxes/{i}` on a
//! gateway, or on Caddy in front of gateways), recorded into a
//! [`History`], and the end-of-run replica check.
//!
//! [`PutWorkload`] runs sequential writers, each over its own boxes of
//! one shard (so every box is written once, by one writer: the history
//! checker is then exact). [`final_check`] waits until the replicas of
//! every shard agree, records their states and runs [`History::check`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkraft_proto::{ShardMap, ShardRead};
use croaring::{Bitmap, Portable};

use crate::history::{Ack, Outcome, WriteApi, WriteOp};
use crate::{History, NodeClient, Report};

/// How long one `PUT` may take before it counts as indeterminate (the
/// gateway's own write timeout is 10 s, plus read-your-writes).
const PUT_TIMEOUT: Duration = Duration::from_secs(15);

/// Writers setting boxes through an HTTP front; see the module docs.
pub struct PutWorkload {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acked: Arc<AtomicU64>,
    attempted: Arc<AtomicU64>,
}

impl PutWorkload {
    /// Starts `per_shard` writers for every shard of `map`, writer `w`
    /// sending to `fronts[w % fronts.len()]` (`HOST:PORT`), recording into
    /// `history` as [`WriteApi::Gateway`]`(gateway)`.
    pub fn start(
        history: Arc<History>,
        map: &ShardMap,
        fronts: &[String],
        per_shard: u64,
        gateway: u64,
    ) -> Self {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let acked = Arc::new(AtomicU64::new(0));
        let attempted = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder()
            .timeout(PUT_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        let mut tasks = Vec::new();
        let mut w = 0usize;
        for record in map.shards.values() {
            let d = &record.descriptor;
            let span = (d.end - d.start) / per_shard;
            for k in 0..per_shard {
                let writer = Writer {
                    name: format!("writer-{w}"),
                    shard: d.shard,
                    next: d.start + k * span,
                    end: d.start + (k + 1) * span,
                    front: fronts[w % fronts.len()].clone(),
                    api: WriteApi::Gateway(gateway),
                    http: http.clone(),
                    history: history.clone(),
                    acked: acked.clone(),
                    attempted: attempted.clone(),
                };
                tasks.push(tokio::spawn(writer.run(stop_rx.clone())));
                w += 1;
            }
        }
        Self {
            stop,
            tasks,
            acked,
            attempted,
        }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Writes sent so far.
    pub fn attempted(&self) -> u64 {
        self.attempted.load(Ordering::Relaxed)
    }

    /// Waits (up to `limit`) until `n` more writes than now are
    /// acknowledged; false if they were not.
    pub async fn wait_for_acks(&self, n: u64, limit: Duration) -> bool {
        let target = self.acked() + n;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.acked() >= target {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Stops the writers after their current request.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One sequential writer over boxes `next..end` of `shard`.
struct Writer {
    name: String,
    shard: u64,
    next: u64,
    end: u64,
    front: String,
    api: WriteApi,
    http: reqwest::Client,
    history: Arc<History>,
    acked: Arc<AtomicU64>,
    attempted: Arc<AtomicU64>,
}

impl Writer {
    async fn run(mut self, stop: tokio::sync::watch::Receiver<bool>) {
        while !*stop.borrow() && self.next < self.end {
            let index = self.next;
            self.next += 1;
            let invoked = Instant::now();
            self.attempted.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .http
                .put(format!("http://{}/api/boxes/{index}", self.front))
                .json(&serde_json::json!({ "checked": true }))
                .send()
                .await;
            let outcome = match sent {
                Ok(r) if r.status().is_success() => {
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    self.acked.fetch_add(1, Ordering::Relaxed);
                    Outcome::Acked(Ack {
                        seq: body["seq"].as_u64(),
                        ..Ack::default()
                    })
                }
                Ok(r) if matches!(r.status().as_u16(), 400 | 409 | 429) => {
                    Outcome::Failed(format!("HTTP {}", r.status()))
                }
                Ok(r) => Outcome::Indeterminate(format!("HTTP {}", r.status())),
                Err(e) => Outcome::Indeterminate(e.to_string()),
            };
            let failed = !outcome.acked();
            self.history.record_write(WriteOp {
                process: self.name.clone(),
                shard: self.shard,
                index: index as u32,
                value: true,
                api: self.api,
                invoked,
                completed: Instant::now(),
                outcome,
            });
            if failed {
                // Don't hammer a front that is down.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The boxes set in a shard read.
pub fn boxes_of(read: &ShardRead) -> Vec<u32> {
    Bitmap::try_deserialize::<Portable>(&read.bitmap)
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

/// Waits (up to `limit` per shard) until every replica in `replicas`
/// (`(node id, client)`) of every shard of `map` answers the same applied
/// index, `seq` and boxes, records each replica's final state, and checks
/// the history. A shard whose replicas do not converge, or a replica that
/// does not answer, is reported as an anomaly too.
pub async fn final_check(
    history: &History,
    map: &ShardMap,
    replicas: &[(u64, NodeClient)],
    limit: Duration,
) -> Report {
    let mut problems = Vec::new();
    for (shard, record) in &map.shards {
        let clients: Vec<&(u64, NodeClient)> = replicas
            .iter()
            .filter(|(id, _)| record.replicas.contains(id))
            .collect();
        let deadline = Instant::now() + limit;
        let reads = loop {
            let mut reads = Vec::new();
            for (node, client) in &clients {
                if let Ok(Ok(read)) =
                    tokio::time::timeout(Duration::from_secs(5), client.read(*shard, false)).await
                {
                    reads.push((*node, read));
                }
            }
            let agree = reads.len() == clients.len()
                && reads.windows(2).all(|p| {
                    (p[0].1.applied_index, p[0].1.seq) == (p[1].1.applied_index, p[1].1.seq)
                        && boxes_of(&p[0].1) == boxes_of(&p[1].1)
                });
            if agree || Instant::now() > deadline {
                if !agree {
                    let seen: Vec<String> = reads
                        .iter()
                        .map(|(n, r)| {
                            format!("node {n}: applied {} seq {}", r.applied_index, r.seq)
                        })
                        .collect();
                    problems.push(format!(
                        "shard {shard}: replicas {:?} did not converge within {limit:?}: {}",
                        record.replicas,
                        seen.join(", ")
                    ));
                }
                break reads;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for (node, read) in &reads {
            history.record_final(*node, read);
        }
    }
    let mut report = history.check();
    for p in problems {
        report.push(crate::history::AnomalyKind::Divergence, p);
    }
    report
}
