//! Every node's heartbeat: a [`NodeReport`] to the metadata leader every
//! `report_ms` (`POST /meta/report`), or straight into its own
//! [`super::liveness::Liveness`] when this node leads.
//!
//! The leader is found from this node's metadata replica; when that does
//! not know it (a node cut out of the metadata group while it was down),
//! the report goes to every node in the map in turn, following the 421
//! that names the leader.

use std::sync::Weak;
use std::time::Duration;

use checkraft_auth::SendSigned;
use checkraft_proto::{NodeReport, WriteOutcome, META_GROUP};
use reqwest::StatusCode;

use crate::node::Node;

/// One report's time limit.
const LIMIT: Duration = Duration::from_secs(2);

/// This node's report now.
pub fn build(node: &Node) -> Option<NodeReport> {
    let status = node.status();
    Some(NodeReport {
        node_id: node.id()?,
        addr: status.addr,
        groups: status.groups,
        failed: status.failed,
        disk_bytes: node.storage().size_on_disk(),
    })
}

/// Sends one report to `addr`; answers the leader it names instead, if
/// any.
async fn send(node: &Node, addr: &str, report: &NodeReport) -> Result<(), Option<String>> {
    let resp = node
        .peers()
        .client(addr)
        .post(format!("http://{addr}/meta/report"))
        .json(report)
        .timeout(LIMIT)
        .send_signed(node.peers().signer())
        .await
        .map_err(|_| None)?;
    if resp.status() == StatusCode::OK {
        return Ok(());
    }
    match resp.json::<WriteOutcome>().await {
        Ok(WriteOutcome::ForwardToLeader {
            leader_addr: Some(a),
            ..
        }) => Err(Some(a)),
        _ => Err(None),
    }
}

/// Reports until the node is dropped.
pub async fn run(node: Weak<Node>) {
    let interval = match node.upgrade() {
        Some(n) => Duration::from_millis(n.config.report_ms.max(50)),
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(node) = node.upgrade() else { return };
        let (Some(report), Ok(meta)) = (build(&node), node.group(META_GROUP)) else {
            continue;
        };
        if meta.is_leader() {
            node.liveness().record(report);
            continue;
        }
        let view = meta.leader_view();
        let mut targets: Vec<String> = view.leader_addr.into_iter().collect();
        if let Ok(map) = meta.map() {
            targets.extend(
                map.nodes
                    .values()
                    .filter(|n| Some(n.id) != node.id())
                    .map(|n| n.addr.clone()),
            );
        }
        let mut tried = 0;
        let mut next = targets.first().cloned();
        while let Some(addr) = next.take() {
            tried += 1;
            match send(&node, &addr, &report).await {
                Ok(()) => break,
                Err(Some(leader)) if tried < 4 => next = Some(leader),
                Err(_) => next = targets.get(tried).cloned().filter(|_| tried < 8),
            }
        }
    }
}
