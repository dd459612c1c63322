//! Raft RPCs between nodes, routed by group id.
//!
//! Every group on a node sends its RPCs through [`Peers`], which keeps one
//! `reqwest::Client` (one keep-alive connection pool) per peer address,
//! shared by all groups. An RPC is `POST http://{peer}/raft/{group}/{rpc}`
//! with a bincode body, where `rpc` is `append`, `vote`, `pre-vote`,
//! `snapshot` (a whole [`InstallSnapshot`]) or `transfer-leader`; the
//! answer is a bincode `Result<Response, RaftError>`. Any HTTP-level
//! failure (connection refused, timeout, 404 because the peer does not
//! host the group yet) and any fatal error the peer reports are given to
//! openraft as `Unreachable`, which makes it back off.
//!
//! `pre-vote` is what keeps a node that was cut off from deposing a
//! healthy leader when it returns (openraft's `enable_pre_vote`): it asks
//! whether peers *would* vote for it before it raises its term, and peers
//! that still hear from a leader say no.
//!
//! Every call is signed as [`checkraft_auth::Role::Node`] with the cluster
//! secret ([`Peers::signer`]); a peer with another secret answers 401,
//! which is `Unreachable` too, and logged by the receiver.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkraft_auth::{SendSigned, Signer};
use checkraft_client::{Credential, NodeApi};
use checkraft_proto::raft::{InstallSnapshot, Vote};
use checkraft_proto::{codec, GroupId, TypeConfig};
use openraft::error::{Fatal, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::state_machine::Snapshot;

/// Shared HTTP clients, one per peer address, and the signer of every
/// call they make.
pub struct Peers {
    clients: Mutex<HashMap<String, reqwest::Client>>,
    signer: Signer,
    api: NodeApi,
}

impl Peers {
    /// Clients that sign their calls with `signer`.
    pub fn new(signer: Signer) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            api: NodeApi::new(peer_client(), Credential::peer(signer.clone())),
            signer,
        }
    }

    /// The typed client of other nodes' API (control plane and reshape
    /// calls), signed like raft RPCs; one connection pool for all peers.
    pub fn api(&self) -> &NodeApi {
        &self.api
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
            .or_insert_with(peer_client)
            .clone()
    }
}

/// A client with the settings of every node-to-node call.
fn peer_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client with static settings")
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

fn unreachable(e: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::new(&AnyError::error(e.to_string()))
}

impl PeerConnection {
    /// One call. Every failure, the transport's (connection refused,
    /// timeout, a non-2xx status) and the peer's own (a fatal raft error
    /// `E`, an undecodable answer), is `Unreachable`: openraft backs off
    /// and tries again.
    async fn call<Req, Resp, E>(
        &self,
        rpc: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, Unreachable<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::fmt::Display + DeserializeOwned,
    {
        let response = self
            .client
            .post(format!("{}/{}", self.base, rpc))
            .timeout(timeout)
            .body(codec::encode(req))
            .send_signed(self.peers.signer())
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(unreachable(format!(
                "{rpc} to node {}: HTTP {status}: {}",
                self.target,
                String::from_utf8_lossy(&body)
            )));
        }
        match codec::decode::<Result<Resp, E>>(&body) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(unreachable(format!("{rpc} on node {}: {e}", self.target))),
            Err(e) => Err(unreachable(format!(
                "{rpc} answer from node {}: {e}",
                self.target
            ))),
        }
    }

    /// [`Self::call`] with the error type of openraft's RPCs.
    async fn rpc<Req, Resp, E>(
        &self,
        rpc: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::fmt::Display + DeserializeOwned,
    {
        Ok(self
            .call::<Req, Resp, E>(rpc, req, option.hard_ttl())
            .await?)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc::<_, _, RaftError<TypeConfig>>("append", &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc::<_, _, RaftError<TypeConfig>>("vote", &rpc, &option)
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc::<_, _, RaftError<TypeConfig>>("pre-vote", &rpc, &option)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = InstallSnapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let call = self.call::<_, SnapshotResponse<TypeConfig>, Fatal<TypeConfig>>(
            "snapshot",
            &req,
            option.hard_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = call => Ok(answer?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc::<_, _, Fatal<TypeConfig>>("transfer-leader", &req, &option)
            .await
    }
}
