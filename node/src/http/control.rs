//! The control plane's endpoints, answered by the metadata leader (421
//! with the leader elsewhere): `POST /meta/report` (a node's heartbeat,
//! nodes only) and `GET /meta/health` (what the leader knows of the
//! nodes, for `raftctl status`).

use std::time::Duration;

use checkraft_proto::{NodeReport, WriteOutcome, META_GROUP};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{parse_json, reply, Request};
use crate::error::{Error, Result};
use crate::node::Node;

/// The 421 naming the metadata leader, unless this node leads it.
fn unless_leading(node: &Node) -> Result<Option<Response>> {
    let meta = node.group(META_GROUP)?;
    if meta.is_leader() && node.liveness().leading().is_some() {
        return Ok(None);
    }
    let view = meta.leader_view();
    Ok(Some(reply::outcome(&WriteOutcome::ForwardToLeader {
        leader_id: view.leader_id,
        leader_addr: view.leader_addr,
    })))
}

/// `POST /meta/report`.
pub fn report(node: &Node, req: &Request) -> Result<Response> {
    let report: NodeReport = parse_json(&req.body)?;
    if let Some(forward) = unless_leading(node)? {
        return Ok(forward);
    }
    let map = node.group(META_GROUP)?.map()?;
    match map.nodes.get(&report.node_id) {
        Some(n) if n.addr == report.addr => {}
        Some(n) => {
            return Err(Error::Conflict(format!(
                "node {} is registered at {}, not {}",
                report.node_id, n.addr, report.addr
            )))
        }
        None => {
            return Err(Error::NotFound(format!(
                "node {} is not registered in the map",
                report.node_id
            )))
        }
    }
    node.liveness().record(report);
    Ok(reply::json(StatusCode::OK, &serde_json::json!({})))
}

/// `GET /meta/health`.
pub fn health(node: &Node) -> Result<Response> {
    if let Some(forward) = unless_leading(node)? {
        return Ok(forward);
    }
    let map = node.group(META_GROUP)?.map()?;
    let down_after = Duration::from_millis(node.config.down_after_ms);
    let health = node
        .liveness()
        .health(node.id().unwrap_or(0), &map, down_after);
    Ok(reply::json(StatusCode::OK, &health))
}
