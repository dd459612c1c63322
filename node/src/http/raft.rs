//! `POST /raft/{group}/{append|vote|snapshot}`: raft RPCs between nodes.
//!
//! Bodies are bincode openraft requests; answers are bincode
//! `Result<Response, RaftError>` with status 200, so openraft-level errors
//! travel back as values. A body that does not decode, or that
//! [`crate::raft_check`] finds impossible, gets 400 and never reaches
//! openraft.

use checkraft_proto::{codec, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use warp::http::StatusCode;
use warp::reply::Response;

use super::reply;
use crate::error::{Error, Result};
use crate::group::ShardGroup;
use crate::raft_check;

/// Dispatches one raft RPC to `group`.
pub async fn handle(group: &ShardGroup, rpc: &str, body: &[u8]) -> Result<Response> {
    match rpc {
        "append" => {
            let req: AppendEntriesRequest<TypeConfig> = codec::decode(body)?;
            raft_check::append(&req)?;
            Ok(reply::bincode(
                StatusCode::OK,
                &group.raft.append_entries(req).await,
            ))
        }
        "vote" => {
            let req: VoteRequest<u64> = codec::decode(body)?;
            raft_check::vote(&req)?;
            Ok(reply::bincode(StatusCode::OK, &group.raft.vote(req).await))
        }
        "snapshot" => {
            let req: InstallSnapshotRequest<TypeConfig> = codec::decode(body)?;
            raft_check::snapshot(&req)?;
            Ok(reply::bincode(
                StatusCode::OK,
                &group.raft.install_snapshot(req).await,
            ))
        }
        other => Err(Error::NotFound(format!("no raft rpc {other:?}"))),
    }
}
