//! Bad input against a real node process: malformed raft RPC bodies,
//! unknown groups and paths, malformed or oversized write bodies, refused
//! commands (out of range, stale epoch), bad restores, admin calls without
//! or with a wrong token, and bad query strings.
//!
//! Each bad call must get the documented status with a JSON `ApiError`
//! body of the matching kind (or a `Rejected` write outcome), and none may
//! change anything: afterwards the shard has the same `seq` and bitmap,
//! the raft group the same leader and term, and the node still accepts a
//! valid write.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkraft_integration::{eventually, Cluster, NodeClient};
use checkraft_proto::codec;
use checkraft_proto::{
    ApiError, CreateGroup, ErrorKind, Rejection, Restore, SetBatch, ShardDescriptor, ShardRead,
    WriteOutcome,
};
use croaring::{Bitmap, Portable};
use reqwest::StatusCode;

const TEST_LIMIT: Duration = Duration::from_secs(120);
const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &str = "secret";
const MAX_BODY_BYTES: usize = 65_536;
const MAX_BATCH_SETS: usize = 1000;

fn descriptor(shard: u64) -> ShardDescriptor {
    ShardDescriptor {
        shard,
        start: (shard - 1) * 100_000,
        end: shard * 100_000,
        epoch: 1,
    }
}

/// Asserts `resp` has `status` and a JSON `ApiError` body of `kind`.
async fn expect_error(
    what: &str,
    resp: reqwest::Response,
    status: StatusCode,
    kind: ErrorKind,
) -> ApiError {
    let got = resp.status();
    let body = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
    let text = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "{what}: wrong status; body: {text}");
    let error: ApiError = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{what}: body is not an ApiError ({e}): {text}"));
    assert_eq!(error.kind, kind, "{what}: wrong error kind; body: {text}");
    assert!(!error.message.is_empty(), "{what}: empty error message");
    error
}

/// Asserts `resp` is a 409 `Rejected` write outcome and returns the reason.
async fn expect_rejection(what: &str, resp: reqwest::Response) -> Rejection {
    let got = resp.status();
    let body = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
    let text = String::from_utf8_lossy(&body);
    assert_eq!(
        got,
        StatusCode::CONFLICT,
        "{what}: wrong status; body: {text}"
    );
    match serde_json::from_slice::<WriteOutcome>(&body) {
        Ok(WriteOutcome::Rejected { rejection }) => rejection,
        other => panic!("{what}: expected a Rejected outcome, got {other:?}: {text}"),
    }
}

/// Members of a `Portable` bitmap.
fn members_of(bytes: &[u8]) -> BTreeSet<u32> {
    Bitmap::try_deserialize::<Portable>(bytes)
        .expect("valid Portable bitmap")
        .iter()
        .collect()
}

/// What must not move: the shard's seq and bitmap, and raft's view.
#[derive(Debug, PartialEq)]
struct Observed {
    seq: u64,
    checked: BTreeSet<u32>,
    leader: Option<u64>,
    term: u64,
    groups: Vec<u64>,
}

async fn observe(client: &NodeClient) -> Observed {
    let read: ShardRead = client.read(1, true).await.expect("linearizable read");
    let status = client.status().await.expect("status");
    let group = &status.groups[&1];
    assert_eq!(group.seq, read.seq, "status and read disagree on seq");
    Observed {
        seq: read.seq,
        checked: members_of(&read.bitmap),
        leader: group.leader,
        term: group.term,
        groups: status.groups.keys().copied().collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_right_error_and_changes_nothing() {
    tokio::time::timeout(TEST_LIMIT, async {
        let max_body = MAX_BODY_BYTES.to_string();
        let max_sets = MAX_BATCH_SETS.to_string();
        let cluster = Cluster::start(
            1,
            &[
                ("CHECKRAFT_NODE_ADMIN_TOKEN", TOKEN),
                ("CHECKRAFT_NODE_MAX_BODY_BYTES", &max_body),
                ("CHECKRAFT_NODE_MAX_BATCH_SETS", &max_sets),
            ],
        )
        .await;
        let admin = cluster.client(1).with_token(TOKEN);
        let client = cluster.client(1);
        let http = client.http().clone();
        // Signed with the cluster secret, as a peer's calls are: the bodies
        // and queries, not the credential, are what is bad here.
        let post = |path: &str, body: Vec<u8>| client.send(http.post(client.url(path)).body(body));
        let get = |path: &str| client.send(http.get(client.url(path)));

        // A one-node shard 1 with a known state: boxes 1 and 2 checked.
        let members: BTreeMap<u64, String> = cluster.members();
        admin
            .create_group(descriptor(1), members.clone(), true)
            .await
            .expect("create shard 1");
        let seq = eventually(PATIENCE, "the first write to be applied", || {
            let c = client.clone();
            async move {
                match c
                    .write(
                        1,
                        &SetBatch {
                            epoch: 1,
                            sets: vec![(1, true), (2, true)],
                        },
                    )
                    .await
                {
                    Ok(WriteOutcome::Applied { seq, .. }) => Some(seq),
                    _ => None,
                }
            }
        })
        .await;
        assert_eq!(seq, 1);
        let before = observe(&client).await;
        assert_eq!(before.checked, BTreeSet::from([1, 2]));
        assert_eq!(before.leader, Some(1));

        // Raft RPCs: undecodable bodies, unknown group, non-numeric group,
        // unknown rpc.
        let garbage = b"this is not bincode \xff\xff\xff\xff\xff\xff\xff\xff".to_vec();
        for rpc in ["append", "vote", "snapshot"] {
            let path = format!("/raft/1/{rpc}");
            expect_error(
                &path,
                post(&path, garbage.clone()).await?,
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
            )
            .await;
            let what = format!("{path} with an empty body");
            expect_error(
                &what,
                post(&path, Vec::new()).await?,
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
            )
            .await;
        }
        expect_error(
            "unknown group",
            post("/raft/999/append", garbage.clone()).await?,
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
        )
        .await;
        expect_error(
            "group abc",
            post("/raft/abc/append", garbage.clone()).await?,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
        )
        .await;
        expect_error(
            "unknown rpc",
            post("/raft/1/elect", garbage.clone()).await?,
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
        )
        .await;

        // Writes: bad group ids, malformed bodies, limits.
        let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("json");
        let good_batch = || json(serde_json::json!({"epoch": 1, "sets": [[7, true]]}));
        expect_error(
            "/shards/abc/write",
            post("/shards/abc/write", good_batch()).await?,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
        )
        .await;
        expect_error(
            "/shards/999/write",
            post("/shards/999/write", good_batch()).await?,
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
        )
        .await;
        expect_error(
            "malformed JSON",
            post(
                "/shards/1/write",
                b"{\"epoch\": 1, \"sets\": [[7, tru".to_vec(),
            )
            .await?,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
        )
        .await;
        expect_error(
            "JSON of the wrong shape",
            post(
                "/shards/1/write",
                json(serde_json::json!({"epoch": "one", "sets": 7})),
            )
            .await?,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
        )
        .await;
        expect_error(
            "negative index",
            post(
                "/shards/1/write",
                json(serde_json::json!({"epoch": 1, "sets": [[-1, true]]})),
            )
            .await?,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
        )
        .await;
        let too_many: Vec<(u32, bool)> = (0..=MAX_BATCH_SETS as u32).map(|i| (i, true)).collect();
        let body = serde_json::to_vec(&SetBatch {
            epoch: 1,
            sets: too_many,
        })
        .expect("json");
        assert!(
            body.len() < MAX_BODY_BYTES,
            "the too-many-sets body must not also be too large"
        );
        let error = expect_error(
            "too many sets",
            post("/shards/1/write", body).await?,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
        )
        .await;
        assert!(
            error.message.contains(&MAX_BATCH_SETS.to_string()),
            "the message should name the limit: {error:?}"
        );
        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        expect_error(
            "body over the limit",
            post("/shards/1/write", huge).await?,
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooLarge,
        )
        .await;

        // Refused commands: 409 with the reason; the whole batch is refused.
        let out_of_range = SetBatch {
            epoch: 1,
            sets: vec![(50, true), (100_000, true)],
        };
        let resp = client
            .send(http.post(client.url("/shards/1/write")).json(&out_of_range))
            .await?;
        assert_eq!(
            expect_rejection("index 100000", resp).await,
            Rejection::OutOfRange {
                index: 100_000,
                start: 0,
                end: 100_000
            }
        );
        let stale = SetBatch {
            epoch: 7,
            sets: vec![(60, true)],
        };
        let resp = client
            .send(http.post(client.url("/shards/1/write")).json(&stale))
            .await?;
        assert_eq!(
            expect_rejection("epoch 7", resp).await,
            Rejection::StaleEpoch { current: 1, got: 7 }
        );
        let after_rejections = observe(&client).await;
        assert_eq!(
            after_rejections, before,
            "a rejected write changed the shard"
        );

        // Restores: undecodable bincode, a bitmap that is not one, and
        // refused valid bitmaps (stale epoch, out of range).
        expect_error(
            "restore garbage",
            post("/shards/1/restore", garbage.clone()).await?,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
        )
        .await;
        let not_a_bitmap = codec::encode(&Restore {
            epoch: 1,
            bitmap: b"not a bitmap".to_vec(),
        });
        expect_error(
            "restore of a non-bitmap",
            post("/shards/1/restore", not_a_bitmap).await?,
            StatusCode::BAD_REQUEST,
            ErrorKind::BadRequest,
        )
        .await;
        let portable = |indices: &[u32]| {
            let mut b = Bitmap::of(indices);
            b.run_optimize();
            b.serialize::<Portable>()
        };
        let stale_restore = codec::encode(&Restore {
            epoch: 7,
            bitmap: portable(&[5]),
        });
        assert_eq!(
            expect_rejection(
                "restore at epoch 7",
                post("/shards/1/restore", stale_restore).await?
            )
            .await,
            Rejection::StaleEpoch { current: 1, got: 7 }
        );
        let outside = codec::encode(&Restore {
            epoch: 1,
            bitmap: portable(&[5, 150_000]),
        });
        assert_eq!(
            expect_rejection(
                "restore out of range",
                post("/shards/1/restore", outside).await?
            )
            .await,
            Rejection::OutOfRange {
                index: 150_000,
                start: 0,
                end: 100_000
            }
        );

        // Admin: no token, wrong token, wrong scheme; group 2 must not appear.
        let create_2 = serde_json::to_vec(&CreateGroup {
            descriptor: descriptor(2),
            members: members.clone(),
            initialize: true,
        })
        .expect("json");
        let admin_post = |auth: Option<&str>| {
            let rb = http
                .post(client.url("/admin/groups"))
                .body(create_2.clone());
            match auth {
                Some(value) => rb.header(reqwest::header::AUTHORIZATION, value.to_string()),
                None => rb,
            }
            .send()
        };
        for (what, auth) in [
            ("no token", None),
            ("wrong token", Some("Bearer secreT")),
            ("longer token", Some("Bearer secret2")),
            ("token without the Bearer scheme", Some("secret")),
            ("Basic scheme", Some("Basic secret")),
        ] {
            let resp = admin_post(auth).await?;
            expect_error(
                what,
                resp,
                StatusCode::UNAUTHORIZED,
                ErrorKind::Unauthorized,
            )
            .await;
        }
        expect_error(
            "metrics without token",
            http.get(client.url("/admin/groups/1/metrics"))
                .send()
                .await?,
            StatusCode::UNAUTHORIZED,
            ErrorKind::Unauthorized,
        )
        .await;
        let status = client.status().await?;
        assert!(
            !status.groups.contains_key(&2),
            "an unauthorized create made group 2: {status:?}"
        );

        // Bad queries and unknown paths.
        for path in [
            "/shards/1/read?start=5&end=2",
            "/shards/1/read?start=5&end=5",
            "/shards/1/read?end=100001",
            "/shards/1/read?start=abc",
            "/shards/1/read?linearizable=maybe",
            "/shards/1/changes?from=x",
            "/shards/1/changes?from=-1",
        ] {
            expect_error(
                path,
                get(path).await?,
                StatusCode::BAD_REQUEST,
                ErrorKind::BadRequest,
            )
            .await;
        }
        for path in [
            "/nope",
            "/shards/1/nope",
            "/shards/1",
            "/admin/groups/1/nope",
        ] {
            let resp = http.get(client.url(path)).bearer_auth(TOKEN).send().await?;
            expect_error(path, resp, StatusCode::NOT_FOUND, ErrorKind::NotFound).await;
        }
        expect_error(
            "GET of a POST endpoint",
            get("/shards/1/write").await?,
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
        )
        .await;

        // Nothing above changed shard 1, its raft group, or the group set.
        let after = observe(&client).await;
        assert_eq!(after, before, "bad input changed the node's state");

        // With the right token the create succeeds.
        let resp = admin_post(Some("Bearer secret")).await?;
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "create with the right token"
        );
        let status = client.status().await?;
        assert!(
            status.groups.contains_key(&2),
            "group 2 missing after an authorized create: {status:?}"
        );

        // A valid write still works: exactly the largest allowed batch, in
        // a body of exactly the largest allowed size (JSON padded with
        // trailing whitespace).
        let sets: Vec<(u32, bool)> = (1000..1000 + MAX_BATCH_SETS as u32)
            .map(|i| (i, true))
            .collect();
        let mut body = serde_json::to_vec(&SetBatch { epoch: 1, sets }).expect("json");
        assert!(body.len() <= MAX_BODY_BYTES);
        body.resize(MAX_BODY_BYTES, b' ');
        let resp = post("/shards/1/write", body).await?;
        let status = resp.status();
        let outcome: WriteOutcome = resp.json().await?;
        match outcome {
            WriteOutcome::Applied { seq, changed, .. } => {
                assert_eq!(status, StatusCode::OK);
                assert_eq!(seq, before.seq + 1);
                assert_eq!(changed as usize, MAX_BATCH_SETS);
            }
            other => panic!("a valid write after bad input was not applied: {status} {other:?}"),
        }
        let read = client.read(1, true).await?;
        assert_eq!(read.seq, before.seq + 1);
        let mut expected = before.checked.clone();
        expected.extend(1000..1000 + MAX_BATCH_SETS as u32);
        assert_eq!(members_of(&read.bitmap), expected);
        anyhow::Ok(())
    })
    .await
    .expect("test timed out")
    .expect("request failed");
}
