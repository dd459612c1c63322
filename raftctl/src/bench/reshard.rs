//! Scenario 6, online resharding under load: while the clients write
//! (spread uniformly over the grid), the cluster goes from `--shards` to
//! `--reshard-to` shards and back, driven by the real `raftctl reshard`
//! loop ([`run_reshard`], in-process, one split or merge at a time).
//!
//! The measured phase has three periods, delimited by `mark` lines to the
//! workers ([`MARK`](super::lines::MARK)): the **steady state** (`--duration`
//! seconds before the change), the **change** (both reshards), and a
//! [`TAIL`] after it. Set→Ack latencies are split by the Set's send time.
//!
//! ## The longest stretch without an applied write
//! The workers track Ack gaps ([`super::failover`]'s machinery) not per
//! shard but per **cell**: the finest ranges the change will create, i.e.
//! the initial shards cut at every split point of the simulated plan
//! ([`cells`]). Every shard before, during and after the change is a run
//! of whole cells, so a range's silence (no applied Ack, in any worker,
//! for any Set of a box in it) is the intersection of its cells'
//! silences. Workers report gaps of at least [`GAP_THRESHOLD_MS`] only,
//! so shorter stretches show as 0 ("under the threshold").
//!
//! For each split `[start, at, end)` or merge `[start, mid, end)`, the
//! touched ranges are its two halves and their union. A step's stretch
//! is the longest silence of either half that overlaps the step (from
//! recording the operation to its outcome, plus [`STEP_GRACE_NS`]); the
//! union's is reported beside it. The steady-state figure is the longest
//! silence of any single cell in the steady period: with Poisson Sets,
//! some silence is just no Set sent, and this is that floor.
//!
//! Caveat: a stretch includes time in which no client happened to send a
//! Set of the range (Poisson arrivals; about `rate / cells` Sets per second
//! per cell), so compare it with the steady-state floor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{ensure, Result};
use checkraft_proto::{ShardDescriptor, ShardMap};
use indicatif::ProgressBar;
use serde::Serialize;

use super::failover::silent_intervals;
use super::fleet::Fleet;
use super::latency::{now_ns, Latency, LatencySummary};
use super::launcher::LocalCluster;
use super::lines::WorkerFinal;
use super::plan::ShardRange;
use super::run::show_progress;
use crate::commands::{plan_reshard, run_reshard, ReshardReport, Step};

/// Ack gaps per cell shorter than this are not reported by workers, in ms
/// (shorter than the 250 ms target; long enough that Poisson Sets do not
/// flood the reports).
pub const GAP_THRESHOLD_MS: u64 = 100;
/// Load kept running after the change.
pub const TAIL: Duration = Duration::from_secs(2);
/// A step's window extends this far past its outcome (gateways may still
/// be re-routing to the new layout).
pub const STEP_GRACE_NS: u64 = 500_000_000;

/// The cells Acks are attributed to: the initial shards cut at every split
/// point of the plan to `to` shards. Each cell's id is its first box.
pub fn cells(map: &ShardMap, to: u64) -> Vec<ShardRange> {
    let shards: Vec<ShardDescriptor> = map.shards.values().map(|r| r.descriptor.clone()).collect();
    let chunk = map.grid.map_or(1, |g| g.chunk_size);
    let mut bounds: Vec<u64> = shards.iter().flat_map(|d| [d.start, d.end]).collect();
    for step in plan_reshard(&shards, to as usize, chunk) {
        if let Step::Split { at, .. } = step {
            bounds.push(at);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    bounds
        .windows(2)
        .map(|w| ShardRange {
            id: w[0],
            start: w[0],
            end: w[1],
        })
        .collect()
}

/// One step as run, on the workers' clock.
#[derive(Debug, Clone, Serialize)]
pub struct StepRun {
    /// The split or merge.
    pub step: Step,
    /// When it began (`CLOCK_MONOTONIC` ns).
    pub began_ns: u64,
    /// How long it took, as `raftctl reshard --json` reports it.
    pub millis: u64,
    /// Its outcome.
    pub outcome: String,
}

/// The change as run.
#[derive(Debug, Clone)]
pub struct ChangeRun {
    /// The shard count before and after.
    pub from: u64,
    /// The shard count in between.
    pub to: u64,
    /// When the change began and ended (`CLOCK_MONOTONIC` ns).
    pub span_ns: (u64, u64),
    /// Each reshard's whole time, ms (there, back).
    pub reshard_ms: (u64, u64),
    /// Every step, in order.
    pub steps: Vec<StepRun>,
}

/// After the steady state: marks the change's start, runs `raftctl
/// reshard` to `to` shards and back to `from` while showing progress,
/// marks its end, and keeps the load on for [`TAIL`].
pub async fn change(
    fleet: &mut Fleet,
    cluster: &mut LocalCluster,
    bar: &ProgressBar,
    from: u64,
    to: u64,
    timeline: &mut super::timeline::Timeline,
) -> Result<ChangeRun> {
    ensure!(to != from, "--reshard-to must differ from --shards");
    fleet.mark().await?;
    let began = now_ns();
    let client = cluster.client.clone();
    let done = AtomicBool::new(false);
    let drive = async {
        let there = run_reshard(&client, to as usize, true).await;
        let back = match &there {
            Ok(_) => run_reshard(&client, from as usize, true).await,
            Err(_) => Err(anyhow::anyhow!("not run")),
        };
        done.store(true, Ordering::Relaxed);
        Ok::<_, anyhow::Error>((there?, back?))
    };
    let (shown, driven) = tokio::join!(
        show_progress(fleet, bar, 0.0, None, Some(&done), timeline),
        drive
    );
    shown?;
    let (there, back) = driven?;
    let ended = now_ns();
    fleet.mark().await?;
    show_progress(
        fleet,
        bar,
        TAIL.as_secs_f64(),
        Some(cluster),
        None,
        timeline,
    )
    .await?;
    let steps = [&there, &back]
        .into_iter()
        .flat_map(|r| &r.steps)
        .map(|s| StepRun {
            step: s.step.clone(),
            began_ns: now_ns().saturating_sub(s.began.elapsed().as_nanos() as u64),
            millis: s.millis as u64,
            outcome: s.outcome.clone(),
        })
        .collect();
    let total = |r: &ReshardReport| r.millis as u64;
    Ok(ChangeRun {
        from,
        to,
        span_ns: (began, ended),
        reshard_ms: (total(&there), total(&back)),
        steps,
    })
}

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    /// `split` or `merge`.
    pub kind: &'static str,
    /// The step, as `raftctl reshard` describes it.
    pub step: String,
    /// Seconds into the measured phase.
    pub at_s: f64,
    /// Its duration, ms.
    pub millis: u64,
    /// Longest silence overlapping the step of the left half
    /// (`[start, at)` or `[start, mid)`), ms; 0: under the threshold;
    /// `None`: Acks never resumed.
    pub left_ms: Option<f64>,
    /// The same for the right half.
    pub right_ms: Option<f64>,
    /// The same for the whole range.
    pub both_ms: Option<f64>,
    /// Whether every edge of the step is a cell boundary (else its
    /// silences are of the enclosing cells, and approximate).
    pub exact: bool,
}

/// Durations of one kind of step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Durations {
    /// Steps.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Sum, ms.
    pub total_ms: f64,
}

/// The reshard figures.
#[derive(Debug, Clone, Serialize)]
pub struct ReshardSummary {
    /// Shards before and after.
    pub from: u64,
    /// Shards in between.
    pub to: u64,
    /// Cells Acks were attributed to.
    pub cells: usize,
    /// Cells no client wrote to in the steady state (their silences are
    /// unknown, and left out).
    pub cells_unwritten: usize,
    /// Gaps shorter than this were not reported (a 0 means under it).
    pub gap_threshold_ms: u64,
    /// The steady state: seconds from the phase's start.
    pub steady_s: f64,
    /// The change: seconds.
    pub change_s: f64,
    /// `raftctl reshard` there and back, ms each.
    pub reshard_ms: (u64, u64),
    /// Splits.
    pub splits: Durations,
    /// Merges.
    pub merges: Durations,
    /// Longest stretch of a touched range over every step (the halves'),
    /// ms; `None` if one never recovered.
    pub longest_ms: Option<f64>,
    /// The step it happened in (index into `steps`).
    pub longest_step: Option<usize>,
    /// Steps with a stretch over 250 ms.
    pub steps_over_250ms: usize,
    /// Longest silence of any single cell in the steady state, ms (the
    /// floor that Poisson arrivals alone give).
    pub steady_longest_cell_ms: f64,
    /// Set→Ack in the steady state (Sets sent then).
    pub steady_ack: LatencySummary,
    /// Set→Ack during the change (Sets sent then).
    pub change_ack: LatencySummary,
    /// `change_ack.p99_ms / steady_ack.p99_ms`.
    pub p99_ratio: f64,
    /// Every step.
    pub steps: Vec<StepOutcome>,
}

/// The silences of `[start, end)`: the intersection of its cells' (cells
/// nobody wrote to are left out). `None` when no cell in it was written.
fn range_silences(
    cells: &[ShardRange],
    written: &[bool],
    finals: &[WorkerFinal],
    start: u64,
    end: u64,
) -> Option<Vec<(u64, u64)>> {
    let mut acc: Option<Vec<(u64, u64)>> = None;
    for (c, _) in cells
        .iter()
        .zip(written)
        .filter(|(c, w)| **w && c.end > start && c.start < end)
    {
        let mine = silent_intervals(c.id, finals);
        acc = Some(match acc {
            None => mine,
            Some(a) => super::failover::intersect(&a, &mine),
        });
    }
    acc
}

/// The longest of `silences` overlapping `[lo, hi)`, ms: 0 if none,
/// `None` if it never ended.
fn longest_overlapping(silences: &[(u64, u64)], lo: u64, hi: u64) -> Option<f64> {
    match silences
        .iter()
        .filter(|(from, to)| *from < hi && *to > lo)
        .max_by_key(|(from, to)| to - from)
    {
        None => Some(0.0),
        Some((_, u64::MAX)) => None,
        Some((from, to)) => Some((to - from) as f64 / 1e6),
    }
}

fn durations(mut ms: Vec<f64>) -> Durations {
    ms.sort_by(f64::total_cmp);
    Durations {
        count: ms.len(),
        p50_ms: ms
            .get(ms.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
        total_ms: ms.iter().sum(),
    }
}

/// The figures of `run` from the workers' reports; `start_ns` is the
/// measured phase's start.
pub fn summarize(
    run: &ChangeRun,
    cells: &[ShardRange],
    finals: &[WorkerFinal],
    start_ns: u64,
) -> ReshardSummary {
    let (began, ended) = run.span_ns;
    let written: Vec<bool> = cells
        .iter()
        .map(|c| {
            finals
                .iter()
                .flat_map(|f| &f.last_ack)
                .any(|(id, t)| *id == c.id && *t > 0)
        })
        .collect();
    let is_edge = |b: u64| cells.iter().any(|c| c.start == b || c.end == b);
    let mut steps = Vec::new();
    for s in &run.steps {
        let (kind, start, mid, end) = match s.step {
            Step::Split { start, at, end, .. } => ("split", start, at, end),
            Step::Merge {
                start, mid, end, ..
            } => ("merge", start, mid, end),
        };
        let lo = s.began_ns;
        let hi = s.began_ns + s.millis * 1_000_000 + STEP_GRACE_NS;
        let stretch = |a, b| {
            range_silences(cells, &written, finals, a, b)
                .map_or(Some(0.0), |sil| longest_overlapping(&sil, lo, hi))
        };
        steps.push(StepOutcome {
            kind,
            step: s.step.to_string(),
            at_s: s.began_ns.saturating_sub(start_ns) as f64 / 1e9,
            millis: s.millis,
            left_ms: stretch(start, mid),
            right_ms: stretch(mid, end),
            both_ms: stretch(start, end),
            exact: [start, mid, end].into_iter().all(is_edge),
        });
    }
    let halves = |o: &StepOutcome| -> Option<f64> { Some(o.left_ms?.max(o.right_ms?)) };
    let never = steps.iter().any(|o| halves(o).is_none());
    let longest_step = steps
        .iter()
        .enumerate()
        .filter_map(|(i, o)| halves(o).map(|m| (i, m)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i);
    let steady_longest_cell_ms = cells
        .iter()
        .zip(&written)
        .filter(|(_, w)| **w)
        .flat_map(|(c, _)| silent_intervals(c.id, finals))
        .filter(|(from, to)| *from >= start_ns && *to <= began)
        .map(|(from, to)| (to - from) as f64 / 1e6)
        .fold(0.0, f64::max);
    let period = |i: usize| {
        let mut h = Latency::default();
        for f in finals {
            if let Some(b) = f.ack_latency_by_mark.get(i) {
                h.merge(b);
            }
        }
        h.summary()
    };
    let (steady_ack, change_ack) = (period(0), period(1));
    let of_kind = |k: &str| {
        durations(
            steps
                .iter()
                .filter(|o| o.kind == k)
                .map(|o| o.millis as f64)
                .collect(),
        )
    };
    ReshardSummary {
        from: run.from,
        to: run.to,
        cells: cells.len(),
        cells_unwritten: written.iter().filter(|w| !**w).count(),
        gap_threshold_ms: GAP_THRESHOLD_MS,
        steady_s: began.saturating_sub(start_ns) as f64 / 1e9,
        change_s: (ended - began) as f64 / 1e9,
        reshard_ms: run.reshard_ms,
        splits: of_kind("split"),
        merges: of_kind("merge"),
        longest_ms: match never {
            true => None,
            false => longest_step.and_then(|i| halves(&steps[i])),
        },
        longest_step,
        steps_over_250ms: steps
            .iter()
            .filter(|o| halves(o).is_none_or(|m| m > 250.0))
            .count(),
        steady_longest_cell_ms,
        p99_ratio: change_ack.p99_ms / steady_ack.p99_ms.max(1e-9),
        steady_ack,
        change_ack,
        steps,
    }
}

impl ReshardSummary {
    /// The markdown section.
    pub fn markdown(&self) -> String {
        let opt = |m: Option<f64>| m.map_or("never resumed".into(), |m| format!("{m:.0}"));
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        let longest = self.longest_ms;
        let mut md = format!(
            "Reshard: {from} → {to} → {from} shards in {:.1} s under load (there {:.1} s, back {:.1} s), after {:.1} s of steady state.\n\n\
             - splits: {} (p50 {:.0} ms, max {:.0} ms); merges: {} (p50 {:.0} ms, max {:.0} ms)\n\
             - longest stretch without an applied write on a touched shard: **{} ms**{} (target ≤ 250 ms: {}; {} step(s) over); \
             steady state, longest silence of any one of the {} cells: {:.0} ms (gaps under {} ms are not measured; {} cell(s) unwritten)\n\
             - set→ack p50 / p99: steady {:.1} / **{:.1} ms** ({} Sets), during the change {:.1} / **{:.1} ms** ({} Sets): \
             p99 ratio **{:.2}×** (target ≤ 2×: {})\n\n\
             | # | step | at s | ms | longest stretch ms: left / right / both |\n|---|---|---|---|---|\n",
            self.change_s,
            self.reshard_ms.0 as f64 / 1e3,
            self.reshard_ms.1 as f64 / 1e3,
            self.steady_s,
            self.splits.count,
            self.splits.p50_ms,
            self.splits.max_ms,
            self.merges.count,
            self.merges.p50_ms,
            self.merges.max_ms,
            opt(longest),
            self.longest_step
                .map_or(String::new(), |i| format!(" (step {}: {})", i + 1, self.steps[i].step)),
            verdict(longest.is_some_and(|m| m <= 250.0)),
            self.steps_over_250ms,
            self.cells,
            self.steady_longest_cell_ms,
            self.gap_threshold_ms,
            self.cells_unwritten,
            self.steady_ack.p50_ms,
            self.steady_ack.p99_ms,
            self.steady_ack.count,
            self.change_ack.p50_ms,
            self.change_ack.p99_ms,
            self.change_ack.count,
            self.p99_ratio,
            verdict(self.p99_ratio <= 2.0),
            from = self.from,
            to = self.to,
        );
        for (i, s) in self.steps.iter().enumerate() {
            md += &format!(
                "| {} | {}{} | {:.1} | {} | {} / {} / {} |\n",
                i + 1,
                s.step,
                if s.exact { "" } else { " (approximate)" },
                s.at_s,
                s.millis,
                opt(s.left_ms),
                opt(s.right_ms),
                opt(s.both_ms),
            );
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::lines::{Counts, Gap};

    const MS: u64 = 1_000_000;

    fn worker(gaps: Vec<Gap>, last: &[(u64, u64)]) -> WorkerFinal {
        WorkerFinal {
            window: Counts::default(),
            window_s: 1.0,
            total: Counts::default(),
            errors: Default::default(),
            ack_latency: vec![],
            seen_latency: vec![],
            ack_latency_by_mark: vec![vec![(10_000, 99), (20_000, 1)], vec![(30_000, 100)]],
            gaps,
            last_ack: last.to_vec(),
            unacked: 0,
            rss_bytes: 0,
            cpu_seconds: 0.0,
        }
    }

    fn gap(cell: u64, from: u64, to: u64) -> Gap {
        Gap {
            shard: cell,
            from_ns: from * MS,
            to_ns: to * MS,
        }
    }

    #[test]
    fn a_step_reports_the_silences_of_its_halves_and_of_both() {
        let cells = vec![
            ShardRange {
                id: 0,
                start: 0,
                end: 50,
            },
            ShardRange {
                id: 50,
                start: 50,
                end: 100,
            },
        ];
        let run = ChangeRun {
            from: 1,
            to: 2,
            span_ns: (1000 * MS, 3000 * MS),
            reshard_ms: (1000, 1000),
            steps: vec![StepRun {
                step: Step::Split {
                    shard: 1,
                    start: 0,
                    end: 100,
                    at: 50,
                },
                began_ns: 1000 * MS,
                millis: 800,
                outcome: "ok".into(),
            }],
        };
        let last = [(0, 9000 * MS), (50, 9000 * MS)];
        // The right half is silent 1500..1800 and the left 1600..1700 in
        // one worker; the other worker sees the right half silent
        // 1450..1750 only. A steady-state gap of 150 ms in cell 0.
        let a = worker(
            vec![gap(50, 1500, 1800), gap(0, 1600, 1700), gap(0, 200, 350)],
            &last,
        );
        let b = worker(
            vec![gap(50, 1450, 1750), gap(0, 1590, 1710), gap(0, 210, 360)],
            &last,
        );
        let s = summarize(&run, &cells, &[a, b], 0);
        let step = &s.steps[0];
        assert_eq!(step.right_ms, Some(250.0));
        assert_eq!(step.left_ms, Some(100.0));
        assert_eq!(step.both_ms, Some(100.0));
        assert!(step.exact);
        assert_eq!(s.longest_ms, Some(250.0));
        assert_eq!(s.steps_over_250ms, 0);
        assert_eq!(s.steady_longest_cell_ms, 140.0);
        assert_eq!(s.steady_ack.count, 200);
        assert!((s.p99_ratio - 3.0).abs() < 0.01, "{}", s.p99_ratio);
        assert!(s
            .markdown()
            .contains("| 1 | split shard 1 [0, 100) at 50 |"));
    }

    #[test]
    fn cells_cut_the_initial_shards_at_every_planned_split() {
        let mut map = ShardMap::default();
        for (id, start, end) in [(1, 0, 400), (2, 400, 800)] {
            map.shards.insert(
                id,
                checkraft_proto::ShardRecord {
                    descriptor: ShardDescriptor {
                        shard: id,
                        start,
                        end,
                        epoch: 1,
                    },
                    replicas: vec![1],
                    leader: None,
                },
            );
        }
        map.grid = Some(checkraft_proto::Grid {
            boxes: 800,
            chunk_size: 100,
        });
        let starts: Vec<u64> = cells(&map, 8).iter().map(|c| c.start).collect();
        assert_eq!(starts, vec![0, 100, 200, 300, 400, 500, 600, 700]);
    }
}
