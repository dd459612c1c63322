//! A one-node fake of the checkraft HTTP API, for testing backup and
//! restore end to end without real nodes: it serves `GET /meta/map`,
//! `POST /admin/meta` (operation records), `POST`/`GET
//! /admin/groups/{id}/snapshot` and `POST /shards/{id}/restore`, keeps
//! shard states in memory, and logs every request it receives.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use checkraft_proto::{
    codec, GroupSummary, MetaCommand, NodeStatus, Operation, Rejection, Restore, ShardDescriptor,
    ShardMap, ShardSnapshot, SnapshotDownload, SnapshotInfo,
};
use croaring::{Bitmap, Portable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use checkraft_backup::contents::samples;

use crate::client::ClusterClient;

const LOG_ID: &str = r#"{"leader_id":{"term":1,"node_id":1},"index":9}"#;

/// One fake shard replica.
#[derive(Debug, Clone)]
pub struct FakeShard {
    /// What the shard itself believes (the map may say otherwise).
    pub descriptor: ShardDescriptor,
    pub bitmap: Bitmap,
    pub seq: u64,
}

/// Everything the fake holds.
#[derive(Debug, Default)]
pub struct State {
    pub map: ShardMap,
    pub shards: BTreeMap<u64, FakeShard>,
    /// `METHOD /path` of every request, in arrival order.
    pub requests: Vec<String>,
    /// Every operation step recorded.
    pub steps: Vec<String>,
}

/// A running fake node.
pub struct FakeCluster {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeCluster {
    /// A fake cluster of one node over a grid of `boxes`, with `layout`'s
    /// shards, all empty.
    pub async fn start(boxes: u64, layout: &[ShardDescriptor]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shards = layout
            .iter()
            .map(|d| {
                (
                    d.shard,
                    FakeShard {
                        descriptor: d.clone(),
                        bitmap: Bitmap::new(),
                        seq: 0,
                    },
                )
            })
            .collect();
        let map = samples::map(boxes, layout, &addr);
        let state = Arc::new(Mutex::new(State {
            map,
            shards,
            ..State::default()
        }));
        let server = tokio::spawn(serve(listener, state.clone()));
        Self {
            addr,
            state,
            server,
        }
    }

    pub fn client(&self) -> ClusterClient {
        ClusterClient::new(&self.addr, None)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Each shard's bitmap, by id.
    pub fn bitmaps(&self) -> BTreeMap<u64, Bitmap> {
        self.with(|s| {
            s.shards
                .iter()
                .map(|(id, sh)| (*id, sh.bitmap.clone()))
                .collect()
        })
    }

    /// The requests received so far, other than map reads.
    pub fn writes(&self) -> Vec<String> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| !r.starts_with("GET /meta/map"))
                .cloned()
                .collect()
        })
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    while let Ok((sock, _)) = listener.accept().await {
        tokio::spawn(handle(sock, state.clone()));
    }
}

/// Answers one request and closes the connection.
async fn handle(mut sock: TcpStream, state: Arc<Mutex<State>>) {
    let Some((method, path, body)) = read_request(&mut sock).await else {
        return;
    };
    let (status, content_type, reply) = {
        let mut st = state.lock().unwrap();
        st.requests.push(format!("{method} {path}"));
        route(&mut st, &method, &path, &body)
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        reply.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(&reply).await;
    let _ = sock.shutdown().await;
}

/// Method, path and body of one HTTP/1.1 request.
async fn read_request(sock: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, buf[head_end..head_end + length].to_vec()))
}

type Reply = (u16, &'static str, Vec<u8>);

fn json(status: u16, value: impl serde::Serialize) -> Reply {
    (
        status,
        "application/json",
        serde_json::to_vec(&value).unwrap(),
    )
}

fn raw_json(status: u16, text: String) -> Reply {
    (status, "application/json", text.into_bytes())
}

fn not_found() -> Reply {
    raw_json(
        404,
        r#"{"kind":"not_found","message":"no such thing"}"#.into(),
    )
}

fn route(st: &mut State, method: &str, path: &str, body: &[u8]) -> Reply {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["meta", "map"]) => json(200, &st.map),
        ("GET", ["status"]) => status(st),
        ("POST", ["admin", "meta"]) => meta(st, serde_json::from_slice(body).unwrap()),
        ("POST", ["admin", "groups", id, "snapshot"]) => snapshot(st, id.parse().unwrap(), false),
        ("GET", ["admin", "groups", id, "snapshot"]) => snapshot(st, id.parse().unwrap(), true),
        ("POST", ["shards", id, "restore"]) => {
            restore(st, id.parse().unwrap(), codec::decode(body).unwrap())
        }
        _ => not_found(),
    }
}

fn meta(st: &mut State, command: MetaCommand) -> Reply {
    let refused = |detail: &str| {
        let rejection = Rejection::MetaRefused {
            detail: detail.into(),
        };
        json(
            409,
            serde_json::json!({"status": "rejected", "rejection": rejection}),
        )
    };
    let allocated = match command {
        MetaCommand::BeginOperation { kind } => {
            if st.map.operation.is_some() {
                return refused("an operation is in progress");
            }
            let id = st.map.version + 1;
            st.map.operation = Some(Operation {
                id,
                kind,
                step: String::new(),
            });
            Some(id)
        }
        MetaCommand::OperationStep { id, step } => {
            match st.map.operation.as_mut().filter(|o| o.id == id) {
                Some(op) => op.step = step.clone(),
                None => return refused("no such operation"),
            }
            st.steps.push(step);
            None
        }
        MetaCommand::EndOperation { id } => {
            if st.map.operation.as_ref().map(|o| o.id) != Some(id) {
                return refused("no such operation");
            }
            st.map.operation = None;
            None
        }
        _ => return refused("not faked"),
    };
    st.map.version += 1;
    let outcome = serde_json::json!({"version": st.map.version, "allocated": allocated});
    raw_json(
        200,
        format!(r#"{{"status":"meta_applied","log_id":{LOG_ID},"outcome":{outcome}}}"#),
    )
}

fn status(st: &State) -> Reply {
    let groups: BTreeMap<_, _> = st
        .shards
        .iter()
        .map(|(id, sh)| {
            let summary = GroupSummary {
                descriptor: sh.descriptor.clone(),
                seq: sh.seq,
                term: 1,
                leader: Some(1),
                applied_index: sh.seq,
            };
            (*id, summary)
        })
        .collect();
    let addr = st.map.addr(1).unwrap_or_default().to_string();
    json(
        200,
        NodeStatus {
            node_id: 1,
            addr,
            groups,
            failed: Default::default(),
        },
    )
}

fn snapshot(st: &mut State, id: u64, download: bool) -> Reply {
    let Some(sh) = st.shards.get(&id) else {
        return not_found();
    };
    let snapshot = ShardSnapshot {
        version: 1,
        descriptor: sh.descriptor.clone(),
        seq: sh.seq,
        bitmap: sh.bitmap.serialize::<Portable>(),
        reshape: Default::default(),
    };
    let info = SnapshotInfo {
        snapshot_id: format!("1-{id}-{}", sh.seq),
        last_log_id: serde_json::from_str(LOG_ID).unwrap(),
        seq: sh.seq,
        bytes: 1,
    };
    if download {
        (
            200,
            "application/x-checkraft-bincode",
            codec::encode(&SnapshotDownload { info, snapshot }),
        )
    } else {
        json(200, info)
    }
}

/// Applies a `Restore` like the node's state machine. On a stale epoch,
/// also brings the map's epoch up to date (as a map refresh would).
fn restore(st: &mut State, id: u64, r: Restore) -> Reply {
    let Some(sh) = st.shards.get_mut(&id) else {
        return not_found();
    };
    let reject = |rejection: Rejection| {
        json(
            409,
            serde_json::json!({"status": "rejected", "rejection": rejection}),
        )
    };
    if r.epoch != sh.descriptor.epoch {
        let current = sh.descriptor.epoch;
        st.map.shards.get_mut(&id).unwrap().descriptor.epoch = current;
        return reject(Rejection::StaleEpoch {
            current,
            got: r.epoch,
        });
    }
    let Some(bitmap) = Bitmap::try_deserialize::<Portable>(&r.bitmap) else {
        return reject(Rejection::BadBitmap {
            detail: "bad".into(),
        });
    };
    if let Some(index) = bitmap.iter().find(|&i| !sh.descriptor.contains(i)) {
        let d = &sh.descriptor;
        return reject(Rejection::OutOfRange {
            index,
            start: d.start,
            end: d.end,
        });
    }
    sh.bitmap = bitmap;
    sh.seq += 1;
    raw_json(
        200,
        format!(
            r#"{{"status":"applied","log_id":{LOG_ID},"seq":{},"changed":0}}"#,
            sh.seq
        ),
    )
}
