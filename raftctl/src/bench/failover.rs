//! Scenario 5, failover under load: while the clients write (mostly to
//! the hot shard, the one holding box 0), kill -9 that shard's leader,
//! restart it at once, wait until the shard has settled (all three
//! replicas agree on a leader and have caught up), and repeat.
//!
//! A kill's unavailability is measured from the clients' side, for Sets
//! of boxes in that shard: the stretch with no applied Ack that begins
//! around the kill (from the last Ack before it to the first after; Acks
//! of Sets committed just before the kill may still arrive for a moment).
//! Each worker reports its silences longer than
//! [`GAP_THRESHOLD_MS`](super::fleet::GAP_THRESHOLD_MS); the shard was
//! unavailable while no worker got an Ack, so the workers' silences are
//! intersected (all times on `CLOCK_MONOTONIC`).
//!
//! Caveat: a client has at most `--inflight` Sets awaiting Acks; while
//! the shard is unavailable its window fills and it skips Sets (counted),
//! so the first Ack after a silence can be that of a Set retried by the
//! gateway or sent after a stuck one timed out.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::fleet::ShardAcks;
use super::latency::now_ns;
use super::launcher::LocalCluster;
use super::lines::WorkerFinal;

/// Applied-index spread under which a shard counts as caught up.
const SETTLED_LAG: u64 = 50;
/// A shard is serving if one of its Sets was acknowledged this recently
/// (workers report every 250 ms).
const SERVING_WITHIN_NS: u64 = 600_000_000;
/// A kill's silence may begin this long before it (the last Ack)...
const BEFORE_KILL_NS: u64 = 500_000_000;
/// ... or this long after it (Acks of Sets committed just before it).
const AFTER_KILL_NS: u64 = 1_000_000_000;
/// How long a kill waits for the shard to serve again.
const SERVING_TIMEOUT: Duration = Duration::from_secs(30);

/// One kill as done.
#[derive(Debug, Clone, Serialize)]
pub struct KillRecord {
    /// The killed leader.
    pub node: u64,
    /// When (`CLOCK_MONOTONIC` ns).
    pub at_ns: u64,
    /// Whether the shard's Sets were being acknowledged just before.
    pub serving: bool,
    /// Seconds the restarted node took to answer `/health`.
    pub restart_s: f64,
}

/// One kill's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct KillOutcome {
    /// The killed leader.
    pub node: u64,
    /// Seconds into the measured phase.
    pub at_s: f64,
    /// When (`CLOCK_MONOTONIC` ns).
    pub at_ns: u64,
    /// Whether the shard's Sets were being acknowledged just before (if
    /// not, the gap began before the kill).
    pub serving_before: bool,
    /// How long no client got an applied Ack for the shard, in ms: 0 when
    /// some worker saw no gap over the threshold; `None` if Acks never
    /// resumed before the end.
    pub unavailable_ms: Option<f64>,
    /// Seconds the restarted node took to answer `/health`.
    pub restart_s: f64,
}

/// The failover figures.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverSummary {
    /// The shard whose leader was killed.
    pub shard: u64,
    /// Gaps shorter than this were not reported (a 0 means "under it").
    pub gap_threshold_ms: u64,
    /// Every kill.
    pub kills: Vec<KillOutcome>,
    /// Median unavailability over the kills that recovered, ms.
    pub p50_ms: f64,
    /// Largest unavailability over the kills that recovered, ms.
    pub max_ms: f64,
    /// Kills after which Acks never resumed.
    pub not_recovered: usize,
    /// Every reported ack gap of the shard over the threshold, any
    /// worker: `(start s into the run, length ms)`.
    pub gaps: Vec<(f64, f64)>,
}

/// Kills the leader of `shard` `kills` times, restarting it
/// `restart_delay` later. Kills are at least `every` seconds apart (the
/// first after 1.5 s of load), and each waits (up to
/// [`SERVING_TIMEOUT`]) until the shard has settled and its Sets are
/// acknowledged again after the previous kill, so that each kill hits a
/// serving shard. After the last kill it waits for the shard to serve
/// again, so that the last silence is closed.
pub async fn kill_loop(
    cluster: &mut LocalCluster,
    acks: ShardAcks,
    shard: u64,
    kills: u32,
    every: f64,
    restart_delay: Duration,
) -> Result<Vec<KillRecord>> {
    let mut out: Vec<KillRecord> = Vec::new();
    let mut next = tokio::time::Instant::now() + Duration::from_secs_f64(1.5);
    for _ in 0..kills {
        tokio::time::sleep_until(next).await;
        cluster.wait_settled(shard, SETTLED_LAG).await?;
        let since = out.last().map_or(0, |k| k.at_ns + AFTER_KILL_NS);
        let serving = wait_serving(&acks, shard, since).await;
        let leader = cluster.shard_leader(shard).await?;
        let at_ns = now_ns();
        next = tokio::time::Instant::now() + Duration::from_secs_f64(every);
        cluster.kill_node(leader).await?;
        tokio::time::sleep(restart_delay).await;
        let t = tokio::time::Instant::now();
        cluster.restart_node(leader).await?;
        out.push(KillRecord {
            node: leader,
            at_ns,
            serving,
            restart_s: t.elapsed().as_secs_f64(),
        });
    }
    if let Some(last) = out.last() {
        wait_serving(&acks, shard, last.at_ns + AFTER_KILL_NS).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(out)
}

/// Waits until a Set of `shard` was acknowledged after `since_ns` and
/// within the last [`SERVING_WITHIN_NS`]; false after
/// [`SERVING_TIMEOUT`].
async fn wait_serving(acks: &ShardAcks, shard: u64, since_ns: u64) -> bool {
    let waited = tokio::time::Instant::now();
    loop {
        let last = acks.last(shard);
        if last > since_ns && now_ns().saturating_sub(last) < SERVING_WITHIN_NS {
            return true;
        }
        if waited.elapsed() > SERVING_TIMEOUT {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Intervals `[from, to)` during which no worker got an applied Ack for
/// `shard` (`to` is `u64::MAX` after the last Ack). Workers that never got
/// one for it (they did not write to it) are left out.
pub(super) fn silent_intervals(shard: u64, finals: &[WorkerFinal]) -> Vec<(u64, u64)> {
    let mut acc: Option<Vec<(u64, u64)>> = None;
    for f in finals {
        let last = f
            .last_ack
            .iter()
            .find(|(s, _)| *s == shard)
            .map_or(0, |(_, t)| *t);
        if last == 0 {
            continue;
        }
        let mut mine: Vec<(u64, u64)> = f
            .gaps
            .iter()
            .filter(|g| g.shard == shard)
            .map(|g| (g.from_ns, g.to_ns))
            .collect();
        mine.push((last, u64::MAX));
        mine.sort_unstable();
        acc = Some(match acc {
            None => mine,
            Some(a) => intersect(&a, &mine),
        });
    }
    acc.unwrap_or_default()
}

/// The intersection of two sorted lists of disjoint intervals.
pub(super) fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo < hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Each kill's unavailability: the longest silent interval of the shard
/// that begins between [`BEFORE_KILL_NS`] before the kill and
/// [`AFTER_KILL_NS`] after it (Acks already on their way still arrive for a
/// moment after the kill); 0 if none (no silence over the threshold).
pub fn summarize(
    shard: u64,
    threshold_ms: u64,
    kills: &[KillRecord],
    finals: &[WorkerFinal],
    start_ns: u64,
) -> FailoverSummary {
    let silent = silent_intervals(shard, finals);
    let mut outcomes = Vec::new();
    for k in kills {
        let lo = k.at_ns.saturating_sub(BEFORE_KILL_NS);
        let hi = k.at_ns + AFTER_KILL_NS;
        let longest = silent
            .iter()
            .filter(|(from, _)| lo <= *from && *from < hi)
            .max_by_key(|(from, to)| to - from);
        let unavailable_ms = match longest {
            None => Some(0.0),
            Some((_, u64::MAX)) => None,
            Some((from, to)) => Some((to - from) as f64 / 1e6),
        };
        outcomes.push(KillOutcome {
            node: k.node,
            at_s: k.at_ns.saturating_sub(start_ns) as f64 / 1e9,
            at_ns: k.at_ns,
            serving_before: k.serving,
            unavailable_ms,
            restart_s: k.restart_s,
        });
    }
    let mut done: Vec<f64> = outcomes.iter().filter_map(|o| o.unavailable_ms).collect();
    done.sort_by(f64::total_cmp);
    FailoverSummary {
        shard,
        gap_threshold_ms: threshold_ms,
        p50_ms: done
            .get(done.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0.0),
        max_ms: done.last().copied().unwrap_or(0.0),
        not_recovered: outcomes.len() - done.len(),
        kills: outcomes,
        gaps: finals
            .iter()
            .flat_map(|f| &f.gaps)
            .filter(|g| g.shard == shard)
            .map(|g| {
                (
                    g.from_ns.saturating_sub(start_ns) as f64 / 1e9,
                    (g.to_ns - g.from_ns) as f64 / 1e6,
                )
            })
            .collect(),
    }
}

impl FailoverSummary {
    /// The markdown section.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "Failover: kill -9 of shard {}'s leader, {} times: writes to it unavailable p50 {:.0} ms, max {:.0} ms{}.\n\n\
             | kill | node | at s | serving before | unavailable ms | restart s |\n|---|---|---|---|---|---|\n",
            self.shard,
            self.kills.len(),
            self.p50_ms,
            self.max_ms,
            if self.not_recovered > 0 {
                format!(" ({} kills never recovered)", self.not_recovered)
            } else {
                String::new()
            }
        );
        for (i, k) in self.kills.iter().enumerate() {
            md += &format!(
                "| {} | {} | {:.1} | {} | {} | {:.1} |\n",
                i + 1,
                k.node,
                k.at_s,
                if k.serving_before { "yes" } else { "no" },
                k.unavailable_ms
                    .map_or("not recovered".into(), |m| format!("{m:.0}")),
                k.restart_s
            );
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::lines::{Counts, Gap};

    fn worker(gaps: Vec<Gap>, last: u64) -> WorkerFinal {
        WorkerFinal {
            window: Counts::default(),
            window_s: 1.0,
            total: Counts::default(),
            errors: Default::default(),
            ack_latency: vec![],
            ack_latency_by_mark: vec![],
            seen_latency: vec![],
            gaps,
            last_ack: vec![(1, last)],
            unacked: 0,
            rss_bytes: 0,
            cpu_seconds: 0.0,
        }
    }

    #[test]
    fn unavailability_is_the_intersection_of_worker_gaps() {
        let ms = 1_000_000;
        let kill = KillRecord {
            node: 2,
            at_ns: 1000 * ms,
            serving: true,
            restart_s: 0.1,
        };
        let a = worker(
            vec![Gap {
                shard: 1,
                from_ns: 990 * ms,
                to_ns: 1400 * ms,
            }],
            5000 * ms,
        );
        let b = worker(
            vec![Gap {
                shard: 1,
                from_ns: 995 * ms,
                to_ns: 1500 * ms,
            }],
            5000 * ms,
        );
        let s = summarize(1, 20, std::slice::from_ref(&kill), &[a, b], 0);
        assert_eq!(s.kills[0].unavailable_ms, Some(405.0));
        // A worker with Acks around the kill: under the threshold.
        let c = worker(vec![], 5000 * ms);
        let s = summarize(1, 20, std::slice::from_ref(&kill), &[c], 0);
        assert_eq!(s.kills[0].unavailable_ms, Some(0.0));
        // No Ack after the kill: not recovered.
        let d = worker(vec![], 900 * ms);
        let s = summarize(1, 20, &[kill], &[d], 0);
        assert_eq!(s.kills[0].unavailable_ms, None);
        assert_eq!(s.not_recovered, 1);
    }
}
