//! `/shards/{id}/*`: the data plane (write, restore, read, changes).

use std::sync::Arc;

use checkraft_proto::{codec, Command, Restore, SetBatch};
use futures::StreamExt;
use tracing::Instrument;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

use super::{parse_json, query_u64, reply, Request};
use crate::error::{Error, Result};
use crate::node::Node;
use crate::subscription;

fn query_bool(req: &Request, key: &str) -> Result<bool> {
    match req.query.get(key).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("") | Some("true") | Some("1") => Ok(true),
        Some(v) => Err(Error::BadRequest(format!(
            "query {key}={v:?} is not a boolean"
        ))),
    }
}

/// Dispatches `/shards/{id}/{action}`.
pub async fn handle(node: &Node, id: u64, action: &str, req: &Request) -> Result<Response> {
    let span = tracing::debug_span!("shard", node_id = node.id().unwrap_or(0), shard_id = id);
    dispatch(node, id, action, req).instrument(span).await
}

async fn dispatch(node: &Node, id: u64, action: &str, req: &Request) -> Result<Response> {
    let group = node.group(id)?;
    let get = req.method == warp::http::Method::GET;
    match (get, action) {
        (false, "write") => {
            let batch: SetBatch = parse_json(&req.body)?;
            Ok(reply::outcome(
                &group.write(batch, node.config.max_batch_sets).await?,
            ))
        }
        (false, "restore") => {
            let restore: Restore = codec::decode(&req.body)?;
            Ok(reply::outcome(&group.restore(restore).await?))
        }
        (false, "reshape") => {
            let command: Command = codec::decode(&req.body)?;
            Ok(reply::outcome(&group.reshape(command).await?))
        }
        (true, "leader") => Ok(reply::json(StatusCode::OK, &group.leader_view())),
        (true, "read") => {
            let linearizable = query_bool(req, "linearizable")?;
            match group
                .read(
                    query_u64(req, "start")?,
                    query_u64(req, "end")?,
                    linearizable,
                )
                .await?
            {
                Ok(read) => Ok(reply::bincode(StatusCode::OK, &read)),
                Err(forward) => Ok(reply::outcome(&forward)),
            }
        }
        (true, "changes") => {
            group.shard.lock().state.shard()?;
            let from = query_u64(req, "from")?.unwrap_or(0);
            let events = subscription::subscribe(
                group.shard.clone(),
                from,
                node.config.progress_interval(),
                req.shutdown.clone(),
            );
            let frames =
                events.map(|e: Arc<_>| Ok::<_, std::convert::Infallible>(codec::frame(&*e)));
            let mut response = warp::reply::stream(frames).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(reply::FRAMES),
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        _ => Err(Error::NotFound(format!(
            "{} /shards/{id}/{action}",
            req.method
        ))),
    }
}
