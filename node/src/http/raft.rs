//! `POST /raft/{group}/{append|vote|pre-vote|snapshot|transfer-leader}`:
//! raft RPCs between nodes.
//!
//! Bodies are bincode openraft requests (a whole snapshot is a
//! [`InstallSnapshot`]); answers are bincode `Result<Response, RaftError>`
//! (`Result<Response, Fatal>` for `snapshot` and `transfer-leader`) with
//! status 200, so openraft-level errors
//! travel back as values. A body that does not decode, or that
//! [`crate::raft_check`] finds impossible, gets 400 and never reaches
//! openraft.

use checkraft_proto::raft::InstallSnapshot;
use checkraft_proto::{codec, TypeConfig};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::Snapshot;
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
            let req: VoteRequest<TypeConfig> = codec::decode(body)?;
            raft_check::vote(&req)?;
            Ok(reply::bincode(StatusCode::OK, &group.raft.vote(req).await))
        }
        "pre-vote" => {
            let req: VoteRequest<TypeConfig> = codec::decode(body)?;
            raft_check::vote(&req)?;
            Ok(reply::bincode(
                StatusCode::OK,
                &group.raft.pre_vote(req).await,
            ))
        }
        "snapshot" => {
            let req: InstallSnapshot = codec::decode(body)?;
            raft_check::snapshot(&req)?;
            let snapshot = Snapshot {
                meta: req.meta,
                snapshot: req.data,
            };
            Ok(reply::bincode(
                StatusCode::OK,
                &group.raft.install_full_snapshot(req.vote, snapshot).await,
            ))
        }
        "transfer-leader" => {
            let req: TransferLeaderRequest<TypeConfig> = codec::decode(body)?;
            raft_check::transfer_leader(&req)?;
            Ok(reply::bincode(
                StatusCode::OK,
                &group.raft.handle_transfer_leader(req).await,
            ))
        }
        other => Err(Error::NotFound(format!("no raft rpc {other:?}"))),
    }
}
