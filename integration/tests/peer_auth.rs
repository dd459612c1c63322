//! Forged and unauthenticated calls to nodes (issue 10, defects 1-3).
//!
//! Against a real 3-node cluster: the forged AppendEntries heartbeat with
//! term 2^64-1 and the forged committed `SetBatch` append, sent to a
//! follower with no credential, a wrong secret, and the gateway secret;
//! unauthenticated restore and write. Each must be refused (401/403, and
//! 400 for the impossible term even with the right secret) and change
//! nothing: afterwards every replica holds the same bytes at the same
//! applied index, the follower can campaign without panicking, and the
//! shard keeps serving writes.

use std::time::Duration;

use checkraft_auth::{Role, Secret, SendSigned, Signer};
use checkraft_integration::{
    eventually, initialized_cluster, Cluster, NodeClient, TEST_CLUSTER_SECRET, TEST_GATEWAY_SECRET,
};
use checkraft_proto::raft::{log_id, Entry, Vote};
use checkraft_proto::{codec, Command, Restore, SetBatch, ShardRead, TypeConfig};
use openraft::raft::AppendEntriesRequest;
use openraft::EntryPayload;

const TOKEN: &str = "peer-auth-test-token";
const SHARD: u64 = 1;

fn signer(role: Role, secret: &str) -> Signer {
    Signer::new(role, Secret::new("test", secret).unwrap())
}

/// The ways a forged call is sent: (what, credential).
fn credentials() -> Vec<(&'static str, Option<Signer>, u16)> {
    vec![
        ("no credential", None, 401),
        (
            "a wrong cluster secret",
            Some(signer(Role::Node, "not-the-cluster-secret")),
            401,
        ),
        (
            "the gateway secret signing as a node",
            Some(signer(Role::Node, TEST_GATEWAY_SECRET)),
            401,
        ),
        (
            "the gateway secret",
            Some(signer(Role::Gateway, TEST_GATEWAY_SECRET)),
            403,
        ),
    ]
}

async fn post(url: String, body: Vec<u8>, signer: Option<&Signer>) -> (u16, String) {
    let rb = reqwest::Client::new().post(url).body(body);
    let resp = match signer {
        Some(s) => rb.send_signed(s).await,
        None => rb.send().await,
    }
    .expect("the node answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Each replica's (applied index, seq, bitmap) of the shard.
async fn replicas(cluster: &Cluster) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for id in cluster.running() {
        let read: ShardRead = cluster.client(id).read(SHARD, false).await.expect("read");
        out.push((read.applied_index, read.seq, read.bitmap));
    }
    out
}

/// Waits until every replica holds the same bytes at the same index.
async fn converged(cluster: &Cluster) -> (u64, u64, Vec<u8>) {
    eventually(Duration::from_secs(30), "replicas to agree", || async {
        let all = replicas(cluster).await;
        all.windows(2).all(|w| w[0] == w[1]).then(|| all[0].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_unauthenticated_calls_change_nothing() {
    tokio::time::timeout(Duration::from_secs(150), test())
        .await
        .expect("peer auth test exceeded its bound");
}

async fn test() {
    let cluster = initialized_cluster(TOKEN, 40_000, 2).await;
    let leader = cluster.confirmed_shard_leader(SHARD, TOKEN).await;
    let follower = cluster
        .running()
        .into_iter()
        .find(|&id| id != leader)
        .unwrap();
    let f = cluster.client(follower);
    let l = cluster.client(leader);
    let epoch = l.read(SHARD, true).await.unwrap().descriptor.epoch;
    let write = |sets: Vec<(u32, bool)>| SetBatch { epoch, sets };
    l.write(SHARD, &write(vec![(1, true), (2, true)]))
        .await
        .unwrap();
    let before = converged(&cluster).await;
    let status = f.metrics(SHARD).await.unwrap();
    let term = status.raft.current_term;
    let last = status.raft.last_applied.expect("applied entries");

    // Defect 1: the max-term heartbeat; defect 2: a committed SetBatch.
    let heartbeat = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(u64::MAX, 99),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let forged_log_id = log_id(term + 1, leader, last.index + 1);
    let forged_append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term + 1, leader),
        prev_log_id: Some(last),
        entries: vec![Entry {
            log_id: forged_log_id,
            payload: EntryPayload::Normal(Command::SetBatch(write(vec![(7, true)]))),
        }],
        leader_commit: Some(forged_log_id),
    };
    let restore = Restore {
        epoch,
        bitmap: Vec::from(*b"\x3a\x30\x00\x00\x00\x00\x00\x00"),
    };
    let raft_url = f.url(&format!("/raft/{SHARD}/append"));
    for (what, signer, status) in credentials() {
        for (call, url, body) in [
            (
                "max-term heartbeat",
                raft_url.clone(),
                codec::encode(&heartbeat),
            ),
            (
                "forged append",
                raft_url.clone(),
                codec::encode(&forged_append),
            ),
            (
                "write",
                l.url(&format!("/shards/{SHARD}/write")),
                serde_json::to_vec(&write(vec![(9, true)])).unwrap(),
            ),
        ] {
            let (got, text) = post(url, body, signer.as_ref()).await;
            let want = if call == "write" && status == 403 {
                200
            } else {
                status
            };
            if want == 200 {
                // The gateway secret may write: that is what gateways do.
                assert_eq!(got, 200, "{call} with {what}: {text}");
                l.write(SHARD, &write(vec![(9, false)])).await.unwrap();
                continue;
            }
            assert_eq!(got, want, "{call} with {what} must be refused: {text}");
        }
        let (got, text) = post(
            l.url(&format!("/shards/{SHARD}/restore")),
            codec::encode(&restore),
            signer.as_ref(),
        )
        .await;
        assert_eq!(got, status, "restore with {what} must be refused: {text}");
    }
    // Defence in depth: even with the right secret, an impossible term
    // never reaches openraft.
    let (got, text) = post(
        raft_url.clone(),
        codec::encode(&heartbeat),
        Some(&signer(Role::Node, TEST_CLUSTER_SECRET)),
    )
    .await;
    assert_eq!(
        got, 400,
        "the max-term heartbeat with the cluster secret: {text}"
    );
    assert!(text.contains("impossible raft request"), "{text}");

    // Nothing changed: box 7 was never set, box 9 is back to unset, and
    // the follower's term is sane.
    let after = converged(&cluster).await;
    let read = f.read(SHARD, false).await.unwrap();
    let boxes = croaring::Bitmap::try_deserialize::<croaring::Portable>(&read.bitmap).unwrap();
    assert!(boxes.contains(1) && boxes.contains(2) && !boxes.contains(7) && !boxes.contains(9));
    assert!(after.1 >= before.1);
    let term_after = f.metrics(SHARD).await.unwrap().raft.current_term;
    assert!(
        term_after < 1 << 48,
        "the follower took a forged term: {term_after}"
    );

    // The follower can campaign and lead (the forged vote made this panic),
    // and the shard keeps serving writes on whichever node leads.
    let elect = f
        .send(
            f.http()
                .post(f.url(&format!("/admin/groups/{SHARD}/elect"))),
        )
        .await
        .unwrap();
    assert!(elect.status().is_success(), "elect: {}", elect.status());
    eventually(
        Duration::from_secs(20),
        "a write after the campaign",
        || async {
            for id in cluster.running() {
                let c: NodeClient = cluster.client(id);
                if let Ok(checkraft_proto::WriteOutcome::Applied { .. }) =
                    c.write(SHARD, &write(vec![(3, true)])).await
                {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    let last = converged(&cluster).await;
    let boxes = croaring::Bitmap::try_deserialize::<croaring::Portable>(&last.2).unwrap();
    assert!(boxes.contains(3) && !boxes.contains(7));
    let log = cluster.log(follower);
    assert!(
        !log.contains("panicked"),
        "node {follower} panicked:\n{log}"
    );
}
