//! Sanity checks on raft RPC bodies, before openraft sees them.
//!
//! Peer authentication ([`crate::http::access`]) keeps strangers out; these
//! checks are the second line, against a buggy or compromised peer. openraft
//! trusts its input: it stores any vote it is sent, and a vote near
//! `u64::MAX` later panics the engine on every node that campaigns (the
//! term would overflow), which kills the group for good. So a request is
//! refused with 400, and never reaches openraft, when:
//! - any term is above [`MAX_TERM`] (2^48: a million elections a second
//!   for nine years), or any log index above [`MAX_INDEX`];
//! - a vote names node 0 (no node has id 0; log ids may: openraft's
//!   initial entry is term 0, node 0);
//! - an AppendEntries carries an uncommitted vote, entries whose indices
//!   do not follow `prev_log_id` one by one, or log ids (entries, previous,
//!   commit) whose term decreases or exceeds the leader's term;
//! - a vote request's or snapshot's last log id has a term above its vote;
//! - a leadership transfer names node 0 or a log id above its vote.
//!
//! The same bound guards the stored vote ([`stored_vote`]): a replica whose
//! own vote is impossible fails to load, with an error naming the group
//! and the file, instead of starting a raft that panics.

use checkraft_proto::raft::{InstallSnapshot, LogId, Vote};
use checkraft_proto::TypeConfig;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};

use crate::error::{Error, Result};

/// The largest term a request may carry.
pub const MAX_TERM: u64 = 1 << 48;
/// The largest log index a request may carry.
pub const MAX_INDEX: u64 = 1 << 62;

fn refuse(why: String) -> Error {
    Error::BadRequest(format!("impossible raft request: {why}"))
}

fn check_vote(vote: &Vote) -> Result<()> {
    let id = vote.leader_id;
    if id.term > MAX_TERM {
        return Err(refuse(format!("vote term {} exceeds {MAX_TERM}", id.term)));
    }
    if id.node_id == 0 {
        return Err(refuse("vote for node 0".into()));
    }
    Ok(())
}

/// Checks that `log_id` is within bounds and not from a later term than
/// the sender's vote.
fn check_log_id(what: &str, log_id: &LogId, vote: &Vote) -> Result<()> {
    let term = log_id.leader_id.term;
    if term > vote.leader_id.term {
        return Err(refuse(format!(
            "{what} term {term} is above the sender's term {}",
            vote.leader_id.term
        )));
    }
    if log_id.index > MAX_INDEX {
        return Err(refuse(format!(
            "{what} index {} exceeds {MAX_INDEX}",
            log_id.index
        )));
    }
    Ok(())
}

/// Checks a vote read from this replica's own storage.
pub fn stored_vote(vote: &Vote) -> std::result::Result<(), String> {
    if vote.leader_id.term > MAX_TERM {
        return Err(format!(
            "the stored vote (term {}, node {}) is impossible: terms never exceed {MAX_TERM}",
            vote.leader_id.term, vote.leader_id.node_id
        ));
    }
    Ok(())
}

/// Checks an AppendEntries request.
pub fn append(req: &AppendEntriesRequest<TypeConfig>) -> Result<()> {
    check_vote(&req.vote)?;
    if !req.vote.committed {
        return Err(refuse("append entries with an uncommitted vote".into()));
    }
    let mut last = req.prev_log_id;
    if let Some(prev) = &last {
        check_log_id("prev_log_id", prev, &req.vote)?;
    }
    for entry in &req.entries {
        check_log_id("entry", &entry.log_id, &req.vote)?;
        let expected = last.map_or(0, |l| l.index + 1);
        if entry.log_id.index != expected {
            return Err(refuse(format!(
                "entry index {} where {expected} was expected",
                entry.log_id.index
            )));
        }
        if last.is_some_and(|l| l.leader_id.term > entry.log_id.leader_id.term) {
            return Err(refuse(format!(
                "entry {} has a lower term than its predecessor",
                entry.log_id.index
            )));
        }
        last = Some(entry.log_id);
    }
    if let Some(commit) = &req.leader_commit {
        check_log_id("leader_commit", commit, &req.vote)?;
    }
    Ok(())
}

/// Checks a Vote or PreVote request.
pub fn vote(req: &VoteRequest<TypeConfig>) -> Result<()> {
    check_vote(&req.vote)?;
    if let Some(last) = &req.last_log_id {
        check_log_id("last_log_id", last, &req.vote)?;
    }
    Ok(())
}

/// Checks an InstallSnapshot request.
pub fn snapshot(req: &InstallSnapshot) -> Result<()> {
    check_vote(&req.vote)?;
    if let Some(last) = &req.meta.last_log_id {
        check_log_id("snapshot last_log_id", last, &req.vote)?;
    }
    Ok(())
}

/// Checks a TransferLeader request.
pub fn transfer_leader(req: &TransferLeaderRequest<TypeConfig>) -> Result<()> {
    let vote = req.from_leader();
    check_vote(vote)?;
    if *req.to_node_id() == 0 {
        return Err(refuse("leadership transfer to node 0".into()));
    }
    if let Some(last) = req.last_log_id() {
        check_log_id("transfer last_log_id", last, vote)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkraft_proto::raft::Entry;
    use checkraft_proto::Command;
    use openraft::EntryPayload;

    fn log_id(term: u64, index: u64) -> LogId {
        checkraft_proto::raft::log_id(term, 1, index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Command::Barrier),
        }
    }

    fn append_req(
        term: u64,
        prev: Option<LogId>,
        entries: Vec<Entry>,
    ) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 1),
            prev_log_id: prev,
            entries,
            leader_commit: prev,
        }
    }

    #[test]
    fn ordinary_requests_pass() {
        append(&append_req(
            3,
            Some(log_id(2, 4)),
            vec![entry(2, 5), entry(3, 6)],
        ))
        .unwrap();
        append(&append_req(1, None, vec![entry(1, 0)])).unwrap();
        vote(&VoteRequest::new(Vote::new(9, 2), Some(log_id(8, 100)))).unwrap();
    }

    #[test]
    fn impossible_requests_are_refused() {
        // The forged heartbeat of issue 10: term 2^64 - 1, node 99.
        let max = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(u64::MAX, 99),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        let bad: Vec<(&str, Result<()>)> = vec![
            ("max term heartbeat", append(&max)),
            (
                "uncommitted",
                append(&AppendEntriesRequest {
                    vote: Vote::new(3, 1),
                    ..append_req(3, None, vec![])
                }),
            ),
            (
                "gap",
                append(&append_req(3, Some(log_id(2, 4)), vec![entry(2, 6)])),
            ),
            (
                "future term",
                append(&append_req(3, None, vec![entry(4, 0)])),
            ),
            (
                "term goes down",
                append(&append_req(3, Some(log_id(3, 4)), vec![entry(2, 5)])),
            ),
            ("node 0", vote(&VoteRequest::new(Vote::new(3, 0), None))),
            (
                "max term vote",
                vote(&VoteRequest::new(Vote::new(u64::MAX, 2), None)),
            ),
            (
                "log ahead of vote",
                vote(&VoteRequest::new(Vote::new(3, 2), Some(log_id(4, 1)))),
            ),
        ];
        for (what, result) in bad {
            assert!(
                matches!(result, Err(Error::BadRequest(ref m)) if m.starts_with("impossible raft request")),
                "{what}: {result:?}"
            );
        }
    }
}
