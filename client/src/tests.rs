//! Answer classification and routing against tiny real HTTP servers on
//! loopback (warp), each answering a scripted sequence.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use checkraft_proto::{ApiError, ErrorKind, WriteOutcome};
use warp::http::StatusCode;
use warp::Filter;

use crate::{Budget, Call, Credential, Error, NodeApi};

/// One scripted answer: a status and a JSON body.
type Answer = (StatusCode, serde_json::Value);

/// A server answering every request with `script[n]` (the last one
/// repeating); returns its address and its request counter.
async fn server(script: Vec<Answer>) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let script = Arc::new(script);
    let route = warp::any().map(move || {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let (status, body) = script[n.min(script.len() - 1)].clone();
        warp::reply::with_status(warp::reply::json(&body), status)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, count)
}

fn api() -> NodeApi {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    NodeApi::new(http, Credential::admin("token"))
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

fn forward(to: &str) -> Answer {
    let o = WriteOutcome::ForwardToLeader {
        leader_id: Some(2),
        leader_addr: Some(to.to_string()),
    };
    (StatusCode::MISDIRECTED_REQUEST, json(&o))
}

fn api_error(status: StatusCode, kind: ErrorKind, message: &str) -> Answer {
    let e = ApiError {
        kind,
        message: message.into(),
    };
    (status, json(&e))
}

fn ok(n: u64) -> Answer {
    (StatusCode::OK, serde_json::json!({ "n": n }))
}

const FAST: Budget = Budget {
    rounds: 3,
    forwards: 4,
    pause: Duration::from_millis(10),
    total: None,
    attempt: None,
};

async fn routed(candidates: &[String], budget: &Budget) -> Result<serde_json::Value, Error> {
    let api = api();
    let call = Call::get("/x");
    let (api, call) = (&api, &call);
    api.route("test", candidates, budget, |addr| async move {
        api.json(&addr, call).await
    })
    .await
}

#[tokio::test]
async fn classifies_answers() {
    let (fwd, _) = server(vec![forward("10.0.0.9:1")]).await;
    let (conflict, _) = server(vec![api_error(
        StatusCode::CONFLICT,
        ErrorKind::Conflict,
        "not the leader; leader is node 2",
    )])
    .await;
    let (busy, _) = server(vec![api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unavailable,
        "no leader",
    )])
    .await;
    let (bad, _) = server(vec![api_error(
        StatusCode::BAD_REQUEST,
        ErrorKind::BadRequest,
        "bad body",
    )])
    .await;
    let (missing, _) = server(vec![api_error(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        "no group 7 on this node",
    )])
    .await;
    let api = api();
    let call = Call::get("/x");
    let e = api.send(&fwd, &call).await.unwrap_err();
    assert!(
        matches!(&e, Error::ForwardToLeader { leader_addr: Some(a), .. } if a == "10.0.0.9:1"),
        "{e:?}"
    );
    let e = api.send(&conflict, &call).await.unwrap_err();
    assert!(matches!(e, Error::NotLeader { .. }) && e.is_retryable());
    assert!(e.to_string().contains("leader is node 2"), "{e}");
    let e = api.send(&busy, &call).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }) && e.is_retryable());
    let e = api.send(&bad, &call).await.unwrap_err();
    assert!(matches!(e, Error::Refused { .. }) && !e.is_retryable());
    assert_eq!(
        e.to_string(),
        format!("{bad}/x: HTTP 400 Bad Request: bad body")
    );
    let e = api.send(&missing, &call).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }) && !e.is_retryable());
    let e = api.send("127.0.0.1:1", &call).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }) && e.is_retryable());
}

#[tokio::test]
async fn a_rejection_is_an_outcome() {
    let rejected = WriteOutcome::Rejected {
        rejection: checkraft_proto::Rejection::StaleEpoch { current: 2, got: 1 },
    };
    let (addr, _) = server(vec![(StatusCode::CONFLICT, json(&rejected))]).await;
    let call = Call::post_json("/shards/1/write", &serde_json::json!({}));
    let outcome = api().outcome(&addr, &call).await.unwrap();
    assert_eq!(outcome, rejected);
}

#[tokio::test]
async fn follows_a_forward_to_the_leader() {
    let (leader, at_leader) = server(vec![ok(7)]).await;
    let (follower, _) = server(vec![forward(&leader)]).await;
    let answer = routed(&[follower], &FAST).await.unwrap();
    assert_eq!(answer["n"], 7);
    assert_eq!(at_leader.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retries_unavailable_then_succeeds() {
    let busy = api_error(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Unavailable, "x");
    let (addr, count) = server(vec![busy.clone(), busy, ok(1)]).await;
    let answer = routed(&[addr], &FAST).await.unwrap();
    assert_eq!(answer["n"], 1);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn moves_past_dead_and_not_leader_nodes() {
    let (good, _) = server(vec![ok(3)]).await;
    let (not_leader, _) = server(vec![api_error(
        StatusCode::CONFLICT,
        ErrorKind::Conflict,
        "not leader",
    )])
    .await;
    let candidates = ["127.0.0.1:1".to_string(), not_leader, good];
    assert_eq!(routed(&candidates, &FAST).await.unwrap()["n"], 3);
}

#[tokio::test]
async fn a_final_error_is_not_retried() {
    let (addr, count) = server(vec![api_error(
        StatusCode::FORBIDDEN,
        ErrorKind::Forbidden,
        "gateways may not",
    )])
    .await;
    let (other, other_count) = server(vec![ok(1)]).await;
    let e = routed(&[addr, other], &FAST).await.unwrap_err();
    assert!(matches!(e, Error::Refused { .. }), "{e:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(other_count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn gives_up_after_the_budget() {
    let busy = api_error(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Unavailable, "x");
    let (addr, count) = server(vec![busy]).await;
    let e = routed(std::slice::from_ref(&addr), &FAST)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Exhausted { .. }), "{e:?}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // A wall-clock budget stops earlier than its rounds.
    let timed = Budget {
        rounds: usize::MAX,
        pause: Duration::from_millis(50),
        total: Some(Duration::from_millis(300)),
        ..FAST
    };
    let start = std::time::Instant::now();
    assert!(routed(&[addr], &timed).await.is_err());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn forward_loops_are_bounded() {
    // A forward to a dead leader ends the routed call once the rounds are spent.
    let (a, a_count) = server(vec![forward("127.0.0.1:1")]).await;
    let e = routed(&[a], &Budget { rounds: 1, ..FAST })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Exhausted { .. }), "{e:?}");
    assert_eq!(a_count.load(Ordering::SeqCst), 1);
    assert!(routed(&[], &FAST).await.is_err());
}
