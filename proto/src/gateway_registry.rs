//! The live gateway registry: what gateways report to the metadata
//! group's leader, and what it answers.
//!
//! A gateway with a `public_endpoint` reports itself every
//! `register_interval_ms` with `POST /meta/gateways` ([`GatewayReport`],
//! JSON, signed with the gateway secret). The node that leads the
//! metadata group keeps the reports in memory, not in the raft log: they
//! are soft state that is rebuilt within one report interval after a
//! leader change. `GET /meta/gateways` answers a [`GatewayList`] of the
//! gateways whose last report is younger than the node's
//! `gateway_down_after_ms`. A node that does not lead the metadata group
//! answers both with `421` and a [`crate::WriteOutcome::ForwardToLeader`]
//! body naming the leader (503 when it knows none), like `POST
//! /admin/meta`; callers follow it.

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Longest endpoint URL a node accepts in a report, in bytes.
pub const MAX_ENDPOINT_LEN: usize = 512;

/// Body of `POST /meta/gateways`: one gateway's report about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayReport {
    /// The gateway's `id` from its configuration: a label for people
    /// (`raftctl status`); several gateways may share it.
    pub gateway_id: u64,
    /// The gateway's public websocket URL (`ws://` or `wss://`), as
    /// browsers reach it. It names the gateway in the registry: a report
    /// with the endpoint of an earlier one replaces it.
    pub endpoint: String,
    /// Websocket connections open on the gateway when it reported.
    pub connections: u64,
    /// The gateway's `ws_max_connections`: how many it accepts at most.
    pub max_connections: u64,
    /// Its load in permille (0 to 1000): `connections × 1000 /
    /// max_connections`, capped at 1000. The same number its websocket
    /// `Hello` gives browsers.
    pub load_permille: u16,
}

impl GatewayReport {
    /// Checks what JSON cannot: the endpoint is a `ws://` or `wss://` URL
    /// with a host and at most [`MAX_ENDPOINT_LEN`] bytes, and the load is
    /// at most 1000. The error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let rest = self
            .endpoint
            .strip_prefix("ws://")
            .or_else(|| self.endpoint.strip_prefix("wss://"))
            .ok_or_else(|| format!("endpoint {:?} is not a ws:// or wss:// URL", self.endpoint))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("endpoint {:?} has no host", self.endpoint));
        }
        if self.endpoint.len() > MAX_ENDPOINT_LEN
            || self
                .endpoint
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "endpoint is longer than {MAX_ENDPOINT_LEN} bytes or holds whitespace"
            ));
        }
        if self.load_permille > 1000 {
            return Err(format!("load_permille {} is over 1000", self.load_permille));
        }
        Ok(())
    }
}

/// One registered gateway, as `GET /meta/gateways` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredGateway {
    /// The gateway's configured `id` (a label).
    pub gateway_id: u64,
    /// Its public websocket URL.
    pub endpoint: String,
    /// Websocket connections at its last report.
    pub connections: u64,
    /// Its `ws_max_connections`.
    pub max_connections: u64,
    /// Its load in permille at its last report (see
    /// [`GatewayReport::load_permille`]).
    pub load_permille: u16,
    /// Milliseconds since its last report reached the leader.
    pub last_report_ms: u64,
}

/// Answer of `GET /meta/gateways` (and of `POST`, after recording).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayList {
    /// The metadata leader that answers (it keeps the registry).
    pub leader: NodeId,
    /// The leader's `gateway_down_after_ms`: gateways whose last report is
    /// older are left out (and forgotten).
    pub down_after_ms: u64,
    /// The gateways that reported within `down_after_ms`, by
    /// `gateway_id`, then `endpoint`.
    pub gateways: Vec<RegisteredGateway>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(endpoint: &str, load: u16) -> GatewayReport {
        GatewayReport {
            gateway_id: 1,
            endpoint: endpoint.into(),
            connections: 3,
            max_connections: 10,
            load_permille: load,
        }
    }

    #[test]
    fn reports_are_validated() {
        assert!(report("ws://127.0.0.1:8081/ws", 300).validate().is_ok());
        assert!(report("wss://gw.example/ws", 1000).validate().is_ok());
        for bad in ["http://a/ws", "/ws", "ws://", "ws:///ws", "ws://a b/ws", ""] {
            let e = report(bad, 0).validate().unwrap_err();
            assert!(e.contains("endpoint"), "{bad:?}: {e}");
        }
        let long = format!("ws://{}/ws", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(report(&long, 0).validate().is_err());
        assert!(report("ws://a/ws", 1001).validate().is_err());
    }
}
