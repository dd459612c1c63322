//! `/meta/*`: the shard map, served from this node's metadata replica.
//!
//! Every node of an initialized cluster hosts a metadata replica (voter or
//! learner), so every node answers from its own copy, tagged with its
//! `version`; a copy may lag the leader's by a few entries. Long-polling
//! with `since` returns as soon as the local copy passes that version.

use std::time::Duration;

use checkraft_proto::{ShardLocation, META_GROUP};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{query_u64, reply, Request};
use crate::error::{Error, Result};
use crate::node::Node;

/// Longest long-poll wait accepted.
const MAX_WAIT: Duration = Duration::from_secs(60);

fn meta_group(node: &Node) -> Result<std::sync::Arc<crate::group::ShardGroup>> {
    node.group(META_GROUP).map_err(|_| {
        Error::Unavailable("this node hosts no metadata replica: the cluster is not initialized, or the node was not added".into())
    })
}

/// `GET /meta/map[?since=V&wait_ms=MS]`.
pub async fn map(node: &Node, req: &Request) -> Result<Response> {
    let meta = meta_group(node)?;
    let map = match query_u64(req, "since")? {
        Some(since) => {
            let wait = query_u64(req, "wait_ms")?
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(30));
            meta.wait_map(since, wait.min(MAX_WAIT)).await?
        }
        None => meta.map()?,
    };
    Ok(reply::json(StatusCode::OK, &map))
}

/// `GET /meta/shards/{id}`: where shard `id` is and who leads it.
pub fn shard(node: &Node, id: &str) -> Result<Response> {
    let id: u64 = id
        .parse()
        .map_err(|_| Error::BadRequest(format!("shard id {id:?} is not a number")))?;
    let map = meta_group(node)?.map()?;
    let shard = map
        .shards
        .get(&id)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("no shard {id} in the map")))?;
    let addrs = shard
        .replicas
        .iter()
        .filter_map(|r| map.addr(*r).map(|a| (*r, a.to_string())))
        .collect();
    Ok(reply::json(
        StatusCode::OK,
        &ShardLocation {
            shard,
            addrs,
            version: map.version,
        },
    ))
}
