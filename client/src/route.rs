//! Leader routing: [`NodeApi::route`] tries candidate addresses (leader
//! hint first), follows leader forwards, and retries within a [`Budget`].
//! Every leader-routed call of this crate goes through it.

use std::future::Future;
use std::time::Duration;

use checkraft_proto::{ShardId, ShardMap};

use crate::api::NodeApi;
use crate::error::{Error, Result};

/// How hard [`NodeApi::route`] tries before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Passes over the candidate list (`usize::MAX`: until `total`).
    pub rounds: usize,
    /// Most leader forwards followed in one routed call.
    pub forwards: usize,
    /// Pause after a pass in which no candidate answered.
    pub pause: Duration,
    /// Limit of the whole routed call, if any.
    pub total: Option<Duration>,
    /// Limit of one attempt, if any (else the `reqwest::Client`'s).
    pub attempt: Option<Duration>,
}

impl Budget {
    /// One pass over the candidates, no pause, up to 4 forwards.
    pub const ONCE: Budget = Budget {
        rounds: 1,
        forwards: 4,
        pause: Duration::ZERO,
        total: None,
        attempt: None,
    };

    /// The same budget with each attempt limited to `limit`.
    pub const fn per_attempt(mut self, limit: Duration) -> Self {
        self.attempt = Some(limit);
        self
    }
}

/// Replica addresses of `shard` in `map`: the leader hint first, then the
/// replicas, without duplicates.
pub fn shard_candidates(map: &ShardMap, shard: ShardId) -> Vec<String> {
    let Some(record) = map.shards.get(&shard) else {
        return Vec::new();
    };
    let ids = record
        .leader
        .into_iter()
        .chain(record.replicas.iter().copied());
    let mut out: Vec<String> = Vec::new();
    for addr in ids.filter_map(|id| map.addr(id)) {
        if !out.iter().any(|a| a == addr) {
            out.push(addr.to_string());
        }
    }
    out
}

impl NodeApi {
    /// Runs `attempt` at `candidates` until one succeeds: the single
    /// implementation of leader routing.
    ///
    /// - An [`Error::ForwardToLeader`] naming another address sends the
    ///   next attempt there (at most `budget.forwards` times, no pause).
    /// - Other retryable errors, and 404s (this replica does not host the
    ///   group), move on to the next candidate; after each full pass
    ///   without an answer it pauses `budget.pause`.
    /// - A final error ([`Error::is_retryable`] false, not a 404) returns
    ///   at once.
    ///
    /// Gives up with [`Error::Exhausted`] after `budget.rounds` passes or
    /// `budget.total`, whichever comes first; `what` names the call in
    /// logs and errors.
    pub async fn route<T, F, Fut>(
        &self,
        what: &str,
        candidates: &[String],
        budget: &Budget,
        attempt: F,
    ) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if candidates.is_empty() {
            return Err(Error::NoCandidates(what.to_string()));
        }
        let deadline = budget.total.map(|t| tokio::time::Instant::now() + t);
        let expired = || deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        let tries = budget.rounds.saturating_mul(candidates.len());
        let (mut next, mut forwards) = (0usize, 0usize);
        let mut hop: Option<String> = None;
        let mut last: Option<Error> = None;
        while !expired() {
            let addr = match hop.take() {
                Some(leader) => leader,
                None if next < tries => {
                    next += 1;
                    candidates[(next - 1) % candidates.len()].clone()
                }
                None => break,
            };
            let error = match attempt(addr.clone()).await {
                Ok(value) => return Ok(value),
                Err(e) if !e.tries_next() => return Err(e),
                Err(e) => e,
            };
            if let Error::ForwardToLeader {
                leader_addr: Some(leader),
                ..
            } = &error
            {
                if *leader != addr && forwards < budget.forwards {
                    forwards += 1;
                    hop = Some(leader.clone());
                    last = Some(error);
                    continue;
                }
            }
            tracing::debug!(%addr, %error, "{what}: trying the next node");
            last = Some(error);
            if next % candidates.len() == 0 && next < tries {
                let wake = tokio::time::Instant::now() + budget.pause;
                tokio::time::sleep_until(deadline.map_or(wake, |d| d.min(wake))).await;
            }
        }
        Err(Error::Exhausted {
            what: what.to_string(),
            last: Box::new(last.unwrap_or_else(|| Error::NoCandidates(what.to_string()))),
        })
    }
}
