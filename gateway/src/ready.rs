//! `GET /ready`: whether the gateway serves the whole grid.
//!
//! Ready means: the shard map is loaded and initialized, and for every
//! shard of it the gateway holds a subscription whose state is loaded (it
//! can answer reads and fan out changes) and knows a leader to send
//! writes to (the map's leader hint; a stale hint is corrected by the
//! writer through 421s). `/health` stays as it was: the map and the shard
//! states are loaded.
//!
//! Under systemd (`Type=notify`, `NOTIFY_SOCKET` set), [`notify_when_ready`]
//! sends `READY=1` the first time the gateway is ready.

use std::sync::Arc;

use checkraft_proto::ShardMap;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::gateway::Gateway;

/// `Ok` when the gateway can serve every shard of `map`, given whether
/// each shard's state is `loaded` (`None`: no subscription); else every
/// reason it cannot, one per line.
pub fn readiness_of(
    map: Option<&ShardMap>,
    loaded: impl Fn(checkraft_proto::ShardId) -> Option<bool>,
) -> Result<(), String> {
    let Some(map) = map else {
        return Err("the shard map is not loaded yet".into());
    };
    if !map.initialized() {
        return Err("the cluster is not initialized".into());
    }
    let mut reasons = Vec::new();
    for (id, record) in &map.shards {
        match loaded(*id) {
            None => reasons.push(format!("shard {id}: no subscription")),
            Some(false) => reasons.push(format!("shard {id}: state not loaded")),
            Some(true) => {}
        }
        if record.leader.is_none() {
            reasons.push(format!("shard {id}: no leader known for writes"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("\n"))
    }
}

/// [`readiness_of`] for the gateway's current map and shards.
pub fn readiness(gateway: &Gateway) -> Result<(), String> {
    let map = gateway.map.current();
    readiness_of(map.as_deref(), |id| {
        gateway.shards.get(id).map(|h| h.read().loaded)
    })
}

/// `GET /ready`: 200 `ready`, or 503 with the reasons.
pub fn filter(gateway: Arc<Gateway>) -> BoxedFilter<(Response,)> {
    warp::path!("ready")
        .and(warp::get())
        .map(move || {
            let (status, body) = match readiness(&gateway) {
                Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                Err(reasons) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready:\n{reasons}\n"),
                ),
            };
            let mut response = Response::new(body.into());
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        })
        .boxed()
}

/// Sends systemd `READY=1` once the gateway is ready, when `NOTIFY_SOCKET`
/// is set (under `Type=notify`); returns at once otherwise.
pub async fn notify_when_ready(gateway: Arc<Gateway>) {
    checkraft_service::notify::when_ready(|| readiness(&gateway)).await
}

/// Sends systemd `STOPPING=1`, when `NOTIFY_SOCKET` is set.
pub fn notify_stopping() {
    checkraft_service::notify::stopping();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_a_map_loaded_shards_and_leaders() {
        assert!(readiness_of(None, |_| Some(true)).is_err());
        let mut map = crate::map::test_map(&["10.0.0.1:7001"], 1, 1);
        assert_eq!(readiness_of(Some(&map), |_| Some(true)), Ok(()));
        assert_eq!(
            readiness_of(Some(&map), |_| None),
            Err("shard 1: no subscription".into())
        );
        assert_eq!(
            readiness_of(Some(&map), |_| Some(false)),
            Err("shard 1: state not loaded".into())
        );
        map.shards.get_mut(&1).unwrap().leader = None;
        assert_eq!(
            readiness_of(Some(&map), |_| Some(true)),
            Err("shard 1: no leader known for writes".into())
        );
        map.grid = None;
        assert!(readiness_of(Some(&map), |_| Some(true)).is_err());
    }

    #[tokio::test]
    async fn the_endpoint_answers_503_before_the_map() {
        let config = crate::config::GatewayConfig {
            gateway_secret: Some("a-gateway-secret-of-some-length".into()),
            ..Default::default()
        };
        let gateway = Gateway::new(config).unwrap();
        let response = warp::test::request()
            .path("/ready")
            .reply(&filter(gateway))
            .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(String::from_utf8_lossy(response.body()).contains("shard map"));
    }
}
