//! Leader changes over a run, the guard on shorter raft timeouts: an
//! [`ElectionWatch`] scrapes every node's `/metrics` every
//! [`INTERVAL`] from before the first measured phase until after the last
//! and notes, per group (shards and the metadata group 0):
//!
//! - **elections**: rises of the group's term (the highest any replica
//!   reports). With Pre-Vote a refused candidate does not raise it, so
//!   each rise is a real vote round, won or not;
//! - **leader changes**: the leader (the replica in state Leader with the
//!   highest term) seen to differ from the last one seen.
//!
//! Each is *spurious* unless a kill explains it ([`summarize`]): it
//! happened while a killed node was down or within
//! [`AFTER_RESTART`] of its restart. In `throughput` nothing is killed,
//! so every election is spurious.
//!
//! Caveat: a change that comes and goes between two scrapes is seen as
//! a term rise only (the term never goes back, so no election is
//! missed).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::latency::now_ns;
use super::node_metrics::{self, NodeGauges};

/// Time between scrapes.
pub const INTERVAL: Duration = Duration::from_millis(250);
/// A kill explains the elections until this long after its node's
/// restart (the restarted node's catching up, and a slow election).
const AFTER_RESTART: Duration = Duration::from_secs(5);

/// What kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The group's term rose (`from` and `to` are terms).
    Election,
    /// Another node leads (`from` and `to` are node ids).
    LeaderChange,
}

/// One change seen.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Change {
    /// When it was first seen (`CLOCK_MONOTONIC` ns).
    pub at_ns: u64,
    /// The group.
    pub group: u64,
    /// What changed.
    pub kind: ChangeKind,
    /// Term or node before.
    pub from: u64,
    /// Term or node after.
    pub to: u64,
    /// Whether a kill explains it (set by [`summarize`]).
    pub spurious: bool,
}

/// A node that was down over `[from_ns, to_ns)` (killed, then restarted
/// at `to_ns`).
#[derive(Debug, Clone, Copy)]
pub struct Downtime {
    /// The kill.
    pub from_ns: u64,
    /// The restart (`u64::MAX`: not restarted).
    pub to_ns: u64,
}

/// Per group counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupElections {
    /// Term at the first scrape.
    pub term_start: u64,
    /// Term at the last scrape.
    pub term_end: u64,
    /// Term rises seen.
    pub elections: u64,
    /// Leader changes seen.
    pub leader_changes: u64,
    /// Leader changes no kill explains.
    pub spurious_leader_changes: u64,
    /// Term rises no kill explains.
    pub spurious_elections: u64,
}

/// The figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ElectionSummary {
    /// Seconds watched.
    pub watched_s: f64,
    /// Scrapes that reached at least one node.
    pub scrapes: u64,
    /// Leader changes over all groups.
    pub leader_changes: u64,
    /// Term rises over all groups.
    pub elections: u64,
    /// Leader changes no kill explains, over all groups.
    pub spurious_leader_changes: u64,
    /// Term rises no kill explains, over all groups.
    pub spurious_elections: u64,
    /// Per group (0: the metadata group).
    pub groups: BTreeMap<u64, GroupElections>,
    /// Every change, in order.
    pub changes: Vec<Change>,
}

/// What a watch collected.
#[derive(Debug, Default)]
pub struct Watched {
    started_ns: u64,
    ended_ns: u64,
    scrapes: u64,
    first_term: BTreeMap<u64, u64>,
    term: BTreeMap<u64, u64>,
    leader: BTreeMap<u64, u64>,
    changes: Vec<Change>,
}

impl Watched {
    /// Takes in one round of scrapes (nodes that answered) at `now`.
    pub fn observe(&mut self, now: u64, nodes: &[(u64, NodeGauges)]) {
        if nodes.is_empty() {
            return;
        }
        self.scrapes += 1;
        // group -> (highest term, leader at the highest term)
        let mut seen: BTreeMap<u64, (u64, Option<u64>)> = BTreeMap::new();
        for (id, groups) in nodes {
            for (group, g) in groups {
                let e = seen.entry(*group).or_insert((0, None));
                if g.term > e.0 {
                    *e = (g.term, None);
                }
                if g.is_leader && g.term >= e.0 {
                    e.1 = Some(*id);
                }
            }
        }
        for (group, (term, leader)) in seen {
            self.first_term.entry(group).or_insert(term);
            let change = |kind, from, to| Change {
                at_ns: now,
                group,
                kind,
                from,
                to,
                spurious: true,
            };
            match self.term.insert(group, term) {
                Some(old) if term > old => {
                    self.changes.push(change(ChangeKind::Election, old, term))
                }
                Some(old) if term < old => {
                    // A stale replica answered alone; keep the highest.
                    self.term.insert(group, old);
                }
                _ => {}
            }
            if let Some(leader) = leader {
                if let Some(old) = self.leader.insert(group, leader) {
                    if old != leader {
                        self.changes
                            .push(change(ChangeKind::LeaderChange, old, leader));
                    }
                }
            }
        }
    }
}

/// A running watch.
pub struct ElectionWatch {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Watched>,
}

impl ElectionWatch {
    /// Starts scraping `nodes` (`(id, addr)`).
    pub fn spawn(nodes: Vec<(u64, String)>) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let http = node_metrics::http();
            let mut w = Watched {
                started_ns: now_ns(),
                ..Default::default()
            };
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let mut round = Vec::new();
                for (id, addr) in &nodes {
                    if let Some(g) = node_metrics::scrape(&http, addr).await {
                        round.push((*id, g));
                    }
                }
                w.observe(now_ns(), &round);
            }
            w.ended_ns = now_ns();
            w
        });
        Self { stop, task }
    }

    /// Stops the watch and returns what it saw.
    pub async fn finish(self) -> Watched {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Counts the changes per group; a change during a [`Downtime`] (or
/// within [`AFTER_RESTART`] after it) is explained, any other spurious.
pub fn summarize(w: Watched, downtimes: &[Downtime]) -> ElectionSummary {
    let grace = AFTER_RESTART.as_nanos() as u64;
    let explained = |at: u64| {
        downtimes
            .iter()
            .any(|d| d.from_ns <= at && at < d.to_ns.saturating_add(grace))
    };
    let mut groups: BTreeMap<u64, GroupElections> = w
        .first_term
        .iter()
        .map(|(g, t)| {
            let e = GroupElections {
                term_start: *t,
                term_end: w.term.get(g).copied().unwrap_or(*t),
                ..Default::default()
            };
            (*g, e)
        })
        .collect();
    let mut changes = w.changes;
    for c in &mut changes {
        c.spurious = !explained(c.at_ns);
        let g = groups.entry(c.group).or_default();
        match (c.kind, c.spurious) {
            (ChangeKind::Election, s) => {
                g.elections += 1;
                g.spurious_elections += u64::from(s);
            }
            (ChangeKind::LeaderChange, s) => {
                g.leader_changes += 1;
                g.spurious_leader_changes += u64::from(s);
            }
        }
    }
    let sum = |f: fn(&GroupElections) -> u64| groups.values().map(f).sum();
    ElectionSummary {
        watched_s: w.ended_ns.saturating_sub(w.started_ns) as f64 / 1e9,
        scrapes: w.scrapes,
        leader_changes: sum(|g| g.leader_changes),
        elections: sum(|g| g.elections),
        spurious_leader_changes: sum(|g| g.spurious_leader_changes),
        spurious_elections: sum(|g| g.spurious_elections),
        groups,
        changes,
    }
}

impl ElectionSummary {
    /// The markdown section.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "Leader changes over {:.0} s ({} scrapes of every node's /metrics, every {} ms): \
             **{} spurious leader changes, {} spurious elections** (no kill explains them); \
             {} leader changes and {} elections in all.\n",
            self.watched_s,
            self.scrapes,
            INTERVAL.as_millis(),
            self.spurious_leader_changes,
            self.spurious_elections,
            self.leader_changes,
            self.elections,
        );
        let busy: Vec<_> = self
            .groups
            .iter()
            .filter(|(_, g)| g.elections + g.leader_changes > 0)
            .collect();
        if !busy.is_empty() {
            md += "\n| group | term start → end | elections (spurious) | leader changes (spurious) |\n|---|---|---|---|\n";
            for (id, g) in busy {
                md += &format!(
                    "| {id} | {} → {} | {} ({}) | {} ({}) |\n",
                    g.term_start,
                    g.term_end,
                    g.elections,
                    g.spurious_elections,
                    g.leader_changes,
                    g.spurious_leader_changes
                );
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::node_metrics::GroupGauges;

    fn node(id: u64, groups: &[(u64, u64, bool)]) -> (u64, NodeGauges) {
        let g = groups
            .iter()
            .map(|&(group, term, is_leader)| {
                (
                    group,
                    GroupGauges {
                        term,
                        is_leader,
                        ..Default::default()
                    },
                )
            })
            .collect();
        (id, g)
    }

    #[test]
    fn counts_term_rises_and_leader_changes_and_blames_kills() {
        let s = 1_000_000_000;
        let mut w = Watched::default();
        w.observe(s, &[node(1, &[(1, 2, true)]), node(2, &[(1, 2, false)])]);
        // Nothing changes.
        w.observe(
            2 * s,
            &[node(1, &[(1, 2, true)]), node(2, &[(1, 2, false)])],
        );
        // Node 1 killed at 3 s: node 2 wins term 3 at 4 s.
        w.observe(4 * s, &[node(2, &[(1, 3, true)])]);
        // Node 1 restarted at 8 s, still says term 2 for a moment.
        w.observe(
            9 * s,
            &[node(1, &[(1, 2, false)]), node(2, &[(1, 3, true)])],
        );
        // A spurious election at 30 s: node 1 takes over.
        w.observe(
            30 * s,
            &[node(1, &[(1, 4, true)]), node(2, &[(1, 4, false)])],
        );
        let summary = summarize(
            w,
            &[Downtime {
                from_ns: 3 * s,
                to_ns: 8 * s,
            }],
        );
        let g = &summary.groups[&1];
        assert_eq!((g.term_start, g.term_end), (2, 4));
        assert_eq!((g.elections, g.spurious_elections), (2, 1));
        assert_eq!((g.leader_changes, g.spurious_leader_changes), (2, 1));
        assert_eq!(summary.spurious_leader_changes, 1);
        assert_eq!(summary.changes.len(), 4);
        assert!(summary.markdown().contains("1 spurious leader changes"));
    }

    #[test]
    fn a_quiet_run_has_nothing_spurious() {
        let mut w = Watched::default();
        for t in 1..10 {
            w.observe(t, &[node(1, &[(0, 5, true), (3, 2, false)])]);
        }
        let summary = summarize(w, &[]);
        assert_eq!(summary.elections + summary.leader_changes, 0);
        assert_eq!(summary.groups.len(), 2);
        assert_eq!(summary.scrapes, 9);
    }
}
