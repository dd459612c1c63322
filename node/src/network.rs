//! Raft RPCs between nodes, routed by group id.
//!
//! Every group on a node sends its RPCs through [`Peers`], which keeps one
//! `reqwest::Client` (one keep-alive connection pool) per peer address,
//! shared by all groups. An RPC is `POST http://{peer}/raft/{group}/{rpc}`
//! with a bincode body; the answer is a bincode
//! `Result<Response, RaftError>`. Any HTTP-level failure (connection
//! refused, timeout, 404 because the peer does not host the group yet) is
//! reported to openraft as `Unreachable`, which makes it back off.
//!
//! Every call is signed as [`checkraft_auth::Role::Node`] with the cluster
//! secret ([`Peers::signer`]); a peer with another secret answers 401,
//! which is `Unreachable` too, and logged by the receiver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkraft_auth::{SendSigned, Signer};
use checkraft_proto::{codec, GroupId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Shared HTTP clients, one per peer address, and the signer of every
/// call they make.
pub struct Peers {
    clients: Mutex<HashMap<String, reqwest::Client>>,
    signer: Signer,
}

impl Peers {
    /// Clients that sign their calls with `signer`.
    pub fn new(signer: Signer) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            signer,
        }
    }

    /// The signer of node-to-node calls.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The client for `addr`, created on first use.
    pub fn client(&self, addr: &str) -> reqwest::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(addr.to_string())
            .or_insert_with(|| {
                reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_millis(500))
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build()
                    .expect("reqwest client with static settings")
            })
            .clone()
    }
}

/// openraft's network factory for one group.
pub struct GroupNetwork {
    group: GroupId,
    peers: Arc<Peers>,
}

impl GroupNetwork {
    /// The factory for `group`.
    pub fn new(group: GroupId, peers: Arc<Peers>) -> Self {
        Self { group, peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerConnection {
            target,
            base: format!("http://{}/raft/{}", node.addr, self.group),
            client: self.peers.client(&node.addr),
            peers: self.peers.clone(),
        }
    }
}

/// One group's view of one peer.
pub struct PeerConnection {
    target: u64,
    base: String,
    client: reqwest::Client,
    peers: Arc<Peers>,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        rpc: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |e: String| RPCError::Unreachable(Unreachable::new(&AnyError::error(e)));
        let response = self
            .client
            .post(format!("{}/{}", self.base, rpc))
            .timeout(option.hard_ttl())
            .body(codec::encode(req))
            .send_signed(self.peers.signer())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !status.is_success() {
            return Err(unreachable(format!(
                "{rpc} to node {}: HTTP {status}: {}",
                self.target,
                String::from_utf8_lossy(&body)
            )));
        }
        let result: Result<Resp, RaftError<u64, E>> =
            codec::decode(&body).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("vote", &rpc, &option).await
    }
}
