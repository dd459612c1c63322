//! `/meta/gateways`: the live gateway registry ([`crate::gateways`]),
//! served by the metadata group's leader.
//!
//! `POST` records a gateway's [`GatewayReport`] and answers the list;
//! `GET` answers the [`GatewayList`] of gateways seen within
//! `gateway_down_after_ms`. A node that does not lead the metadata group
//! keeps no registry worth reading: it answers `421` with a
//! [`WriteOutcome::ForwardToLeader`] body naming the leader, or 503 when
//! it knows none (as `POST /admin/meta` does), and the caller asks the
//! leader.

use std::time::Instant;

use checkraft_proto::{GatewayList, GatewayReport, WriteOutcome, META_GROUP};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{reply, Request};
use crate::error::{Error, Result};
use crate::node::Node;

/// `Ok(())` when this node leads the metadata group, else the 421/503
/// answer that sends the caller to the leader.
fn lead_or_forward(node: &Node) -> Result<std::result::Result<(), Response>> {
    let meta = node.group(META_GROUP).map_err(|_| {
        Error::Unavailable(
            "this node hosts no metadata replica: the cluster is not initialized, or the node \
             was not added"
                .into(),
        )
    })?;
    if meta.is_leader() {
        return Ok(Ok(()));
    }
    let view = meta.leader_view();
    Ok(Err(reply::outcome(&WriteOutcome::ForwardToLeader {
        leader_id: view.leader_id,
        leader_addr: view.leader_addr,
    })))
}

fn list(node: &Node, now: Instant) -> GatewayList {
    let down_after = node.config.gateway_down_after();
    GatewayList {
        leader: node.id().unwrap_or(0),
        down_after_ms: node.config.gateway_down_after_ms,
        gateways: node.gateways().live(now, down_after),
    }
}

/// `GET /meta/gateways`.
pub fn get(node: &Node) -> Result<Response> {
    if let Err(forward) = lead_or_forward(node)? {
        return Ok(forward);
    }
    Ok(reply::json(StatusCode::OK, &list(node, Instant::now())))
}

/// `POST /meta/gateways`: body [`GatewayReport`].
pub fn post(node: &Node, req: &Request) -> Result<Response> {
    let report: GatewayReport = serde_json::from_slice(&req.body).map_err(|e| {
        Error::BadRequest(format!(
            "invalid gateway report (want JSON {{\"gateway_id\", \"endpoint\", \"connections\", \
             \"max_connections\", \"load_permille\"}}): {e}"
        ))
    })?;
    report
        .validate()
        .map_err(|e| Error::BadRequest(format!("invalid gateway report: {e}")))?;
    if let Err(forward) = lead_or_forward(node)? {
        return Ok(forward);
    }
    let now = Instant::now();
    node.gateways()
        .record(report, now, node.config.gateway_down_after())
        .map_err(Error::Conflict)?;
    Ok(reply::json(StatusCode::OK, &list(node, now)))
}
