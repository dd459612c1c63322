//! The commit watch: how a subscription reading from a follower learns
//! what the leader has committed, without writing to the shard itself.
//!
//! A follower cut off from its group still answers its change stream,
//! with progress markers and no changes, so the stream alone cannot tell
//! it is frozen. A gateway that writes to the shard learns committed
//! `seq`s from its acknowledgements; one that only serves viewers would
//! follow the frozen replica for as long as it is cut off. So while a
//! subscription reads from a replica other than the map's leader, it asks
//! the leader every `stale_replica_ms` for its applied `seq`
//! ([`checkraft_proto::LeaderView::seq`]) and records it with
//! [`ShardHandle::note_committed`]; the subscription then drops a stream
//! that does not reach it within `stale_replica_ms`, as for its own
//! writes.
//!
//! The answer counts only when the asked node says it leads the shard. A
//! stale leader (cut off itself) does not advance, so it can only name a
//! `seq` every replica already has: no stream is dropped because of it.

use std::convert::Infallible;
use std::time::Duration;

use checkraft_proto::{NodeId, ShardId};

use crate::node_client::NodeClient;
use crate::shards::ShardHandle;

/// Asks `leader` (node `leader_id` at `addr`) for `shard`'s applied seq
/// every `interval`, forever; run it beside the stream it checks.
pub async fn follow(
    http: &NodeClient,
    (leader_id, addr): (NodeId, &str),
    shard: ShardId,
    handle: &ShardHandle,
    interval: Duration,
) -> Infallible {
    loop {
        tokio::time::sleep(interval).await;
        if let Some(view) = http.leader_view(addr, shard, interval).await {
            if view.leader_id == Some(leader_id) && view.seq > 0 {
                handle.note_committed(view.seq);
            }
        }
    }
}
