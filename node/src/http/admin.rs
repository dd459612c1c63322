//! `/admin/*`: group lifecycle, membership, snapshots and metrics.
//! Access (the admin token, or a node's proof) is checked by
//! [`super::access`] before these run.

use checkraft_proto::{
    AddLearner, AssignId, ChangeMembership, Command, CreateGroup, MetaCommand, RemoveNode,
    META_GROUP,
};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{parse_json, reply, Request};
use crate::error::{Error, Result};
use crate::node::Node;

/// `POST /admin/groups`.
pub async fn create_group(node: &Node, req: &Request) -> Result<Response> {
    let body: CreateGroup = parse_json(&req.body)?;
    let created = node.create_group(body).await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply::json(status, &created))
}

/// `POST /admin/meta`: propose a metadata command (this node must lead the
/// metadata group; otherwise 421 names the leader).
pub async fn propose_meta(node: &Node, req: &Request) -> Result<Response> {
    let command: MetaCommand = parse_json(&req.body)?;
    let meta = node.group(META_GROUP)?;
    Ok(reply::outcome(&meta.propose(Command::Meta(command)).await?))
}

/// `POST /admin/node/id`: take the id allocated by `raftctl node add`.
pub async fn assign_id(node: &Node, req: &Request) -> Result<Response> {
    let body: AssignId = parse_json(&req.body)?;
    node.assign_id(body.id).await?;
    Ok(reply::json(StatusCode::OK, &serde_json::json!({})))
}

/// `POST /admin/leadership/handover`: hand every group this node leads
/// to a caught-up voter (before maintenance; `raftctl node drain`).
pub async fn handover(node: &Node) -> Result<Response> {
    let limit = node
        .config
        .handover_limit()
        .unwrap_or(std::time::Duration::from_secs(2));
    let report = crate::handover::hand_over(node, limit).await;
    Ok(reply::json(StatusCode::OK, &report))
}

/// `DELETE /admin/groups/{id}`: drop this node's replica and its data.
pub async fn delete_group(node: &Node, id: u64) -> Result<Response> {
    node.delete_group(id).await?;
    Ok(reply::json(StatusCode::OK, &serde_json::json!({})))
}

/// `/admin/groups/{id}/{action}`.
pub async fn group_action(node: &Node, id: u64, action: &str, req: &Request) -> Result<Response> {
    let group = node.group(id)?;
    let get = req.method == warp::http::Method::GET;
    match (get, action) {
        (true, "metrics") => Ok(reply::json(StatusCode::OK, &group.status())),
        (false, "learners") => {
            let body: AddLearner = parse_json(&req.body)?;
            Ok(reply::json(StatusCode::OK, &group.add_learner(body).await?))
        }
        (false, "membership") => {
            let body: ChangeMembership = parse_json(&req.body)?;
            if body.voters.is_empty() {
                return Err(Error::BadRequest("voters must not be empty".into()));
            }
            Ok(reply::json(
                StatusCode::OK,
                &group.change_membership(body).await?,
            ))
        }
        (false, "snapshot") => Ok(reply::json(
            StatusCode::OK,
            &group.trigger_snapshot().await?,
        )),
        (true, "snapshot") => Ok(reply::bincode(
            StatusCode::OK,
            &group.current_snapshot().await?,
        )),
        (false, "elect") => {
            group.elect().await?;
            Ok(reply::json(StatusCode::OK, &serde_json::json!({})))
        }
        (false, "transfer") => {
            let body: checkraft_proto::TransferLeader = parse_json(&req.body)?;
            group.transfer_leader(body.node_id).await?;
            Ok(reply::json(StatusCode::OK, &serde_json::json!({})))
        }
        (false, "remove-node") => {
            let body: RemoveNode = parse_json(&req.body)?;
            Ok(reply::json(
                StatusCode::OK,
                &group.remove_node(body.node_id).await?,
            ))
        }
        _ => Err(Error::NotFound(format!(
            "{} /admin/groups/{id}/{action}",
            req.method
        ))),
    }
}
