//! The checks: lost writes, stale reads, divergence (see the module docs).

use std::time::Instant;

use super::*;

impl History {
    /// Checks the history (see the module docs) and reports.
    pub fn check(&self) -> Report {
        let inner = self.lock();
        let t0 = self.t0;
        let mut report = Report::default();
        for w in &inner.writes {
            match w.outcome {
                Outcome::Acked(_) => report.writes_acked += 1,
                Outcome::Indeterminate(_) => report.writes_indeterminate += 1,
                Outcome::Failed(_) => report.writes_failed += 1,
            }
        }
        // Writes by box; failed writes never took effect.
        let mut by_box: BTreeMap<u32, Vec<&WriteOp>> = BTreeMap::new();
        for w in &inner.writes {
            if !matches!(w.outcome, Outcome::Failed(_)) {
                by_box.entry(w.index).or_default().push(w);
            }
        }
        let no_writes: Vec<&WriteOp> = Vec::new();
        // The same, as a sorted list for range scans.
        let boxes: Vec<(u32, &Vec<&WriteOp>)> = by_box.iter().map(|(i, w)| (*i, w)).collect();

        // (a) Lost writes, per final replica state.
        for (shard, finals) in &inner.finals {
            for f in finals {
                let Some(set) = decode(&f.bitmap) else {
                    report.push(
                        AnomalyKind::Other,
                        format!(
                            "shard {shard}: node {}'s final state has an undecodable bitmap",
                            f.state.node
                        ),
                    );
                    continue;
                };
                let set_boxes: std::collections::BTreeSet<u32> = set.iter().copied().collect();
                let mut boxes: std::collections::BTreeSet<u32> = by_box
                    .range(f.start.min(u64::from(u32::MAX)) as u32..)
                    .take_while(|(i, _)| u64::from(**i) < f.end)
                    .map(|(i, _)| *i)
                    .collect();
                boxes.extend(set_boxes.iter().copied());
                for index in boxes {
                    report.final_boxes_checked += 1;
                    let value = set_boxes.contains(&index);
                    let writes = by_box.get(&index).unwrap_or(&no_writes);
                    if let Some(problem) = final_value_problem(writes, value, t0) {
                        report.push(
                            AnomalyKind::LostWrite,
                            format!(
                                "shard {shard}, box {index}: node {} ends with {value} \
                                 (applied index {}, seq {}); {problem}",
                                f.state.node, f.state.applied_index, f.state.seq
                            ),
                        );
                    }
                }
            }
        }

        // (b) Stale reads.
        for r in &inner.reads {
            let label = r.api.label();
            *report.reads.entry(label.clone()).or_default() += 1;
            let mut checked = 0usize;
            let mut check = |index: u32, writes: &[&WriteOp], value: bool, report: &mut Report| {
                checked += 1;
                if let Some(problem) = read_problem(writes, r, value, t0) {
                    let node = r
                        .node
                        .map(|n| format!(" from node {n}"))
                        .unwrap_or_default();
                    report.push(
                        AnomalyKind::StaleRead,
                        format!(
                            "{}{node} by {} [{} .. {} ms] saw box {index} = {value}; {problem}",
                            label,
                            r.process,
                            ms(r.invoked, t0),
                            ms(r.completed, t0),
                        ),
                    );
                }
            };
            match &r.seen {
                Seen::Box { index, value } => {
                    let writes = by_box.get(index).unwrap_or(&no_writes);
                    check(*index, writes, *value, &mut report)
                }
                Seen::Shard {
                    shard,
                    start,
                    end,
                    bitmap,
                    ..
                } => {
                    let Some(set) = decode(bitmap) else {
                        report.push(
                            AnomalyKind::Other,
                            format!("a read of shard {shard} sent an undecodable bitmap"),
                        );
                        continue;
                    };
                    // Every written box in range, and every set box (a set
                    // box that no write set is a phantom). A read that must
                    // see no write can always show the initial value, so
                    // only its set boxes need a look.
                    let only_set = !promises_recency(r.api);
                    let lo = boxes.partition_point(|(i, _)| u64::from(*i) < *start);
                    let mut set_iter = set.iter().copied().peekable();
                    for (index, writes) in
                        boxes[lo..].iter().take_while(|(i, _)| u64::from(*i) < *end)
                    {
                        let index = *index;
                        while let Some(&s) = set_iter.peek() {
                            if s >= index {
                                break;
                            }
                            check(s, &no_writes, true, &mut report);
                            set_iter.next();
                        }
                        let value = set_iter.peek() == Some(&index);
                        if value {
                            set_iter.next();
                        } else if only_set {
                            continue;
                        }
                        check(index, writes, value, &mut report);
                    }
                    for s in set_iter {
                        check(s, &no_writes, true, &mut report);
                    }
                }
            }
            *report.read_checks.entry(label).or_default() += checked;
        }

        // (c) Replica agreement.
        report.replica_states = inner.replica_states;
        report.applied_points = inner.by_index.len();
        let mut keys: Vec<&(u64, u64)> = inner.by_index.keys().collect();
        keys.sort();
        for key in keys {
            let states = &inner.by_index[key];
            if states.len() > 1 {
                let listed: Vec<String> = states.iter().map(|s| s.describe(t0)).collect();
                report.push(
                    AnomalyKind::Divergence,
                    format!(
                        "shard {}: states at applied index {} differ: {}",
                        key.0,
                        key.1,
                        listed.join("; ")
                    ),
                );
            }
        }
        let mut keys: Vec<&(u64, u64)> = inner.by_seq.keys().collect();
        keys.sort();
        for key in keys {
            let states = &inner.by_seq[key];
            if states.len() > 1 {
                let listed: Vec<String> = states.iter().map(|s| s.describe(t0)).collect();
                report.push(
                    AnomalyKind::Divergence,
                    format!(
                        "shard {}: states with seq {} hold different boxes: {}",
                        key.0,
                        key.1,
                        listed.join("; ")
                    ),
                );
            }
        }
        for (shard, finals) in &inner.finals {
            report.final_states += finals.len();
            let first = &finals[0].state;
            let agree = finals.iter().all(|f| {
                f.state.applied_index == first.applied_index && f.state.same_content(first)
            });
            if !agree {
                let listed: Vec<String> = finals.iter().map(|f| f.state.describe(t0)).collect();
                report.push(
                    AnomalyKind::Divergence,
                    format!(
                        "shard {shard}: replicas still differ at the end: {}",
                        listed.join("; ")
                    ),
                );
            }
        }
        report
    }
}

/// Whether reads through `api` must see some acknowledged writes.
fn promises_recency(api: ReadApi) -> bool {
    !matches!(api, ReadApi::Replica)
}

/// Why `value` cannot be a box's final value given its `writes`, or `None`
/// when some write (or the initial value) explains it.
fn final_value_problem(writes: &[&WriteOp], value: bool, t0: Instant) -> Option<String> {
    let acked: Vec<&&WriteOp> = writes.iter().filter(|w| w.outcome.acked()).collect();
    if value == INITIAL && acked.is_empty() {
        return None;
    }
    // `w` can be last unless an acknowledged write began after `w` surely
    // took effect.
    let latest_acked_start = acked.iter().map(|w| w.invoked).max();
    let can_be_last = |w: &WriteOp| match (w.effect_deadline(), latest_acked_start) {
        (None, _) | (_, None) => true,
        (Some(done), Some(start)) => start <= done,
    };
    if writes.iter().any(|w| w.value == value && can_be_last(w)) {
        return None;
    }
    let last = acked.iter().max_by_key(|w| w.completed);
    Some(match last {
        Some(w) => format!(
            "the last acknowledged write was {}, and no write that could have come after it set {value}",
            w.describe(t0)
        ),
        None => format!("no write ever set it to {value}"),
    })
}

/// Why read `r` cannot have seen `value` of a box with `writes`, or `None`.
fn read_problem(writes: &[&WriteOp], r: &ReadOp, value: bool, t0: Instant) -> Option<String> {
    // The writes this read must see: acknowledged before it was invoked,
    // and covered by its API's promise. Only the latest start matters.
    let mut latest_must_start: Option<Instant> = None;
    for w in writes {
        if w.completed < r.invoked && r.api.must_see(w) {
            latest_must_start = latest_must_start.max(Some(w.invoked));
        }
    }
    if value == INITIAL && latest_must_start.is_none() {
        return None;
    }
    // A candidate is overwritten for sure when a must-see write began
    // after it surely took effect.
    let candidate = writes.iter().any(|w| {
        w.value == value
            && w.invoked < r.completed
            && match (w.effect_deadline(), latest_must_start) {
                (None, _) | (_, None) => true,
                (Some(done), Some(start)) => start <= done,
            }
    });
    if candidate {
        return None;
    }
    let missed = writes
        .iter()
        .filter(|w| w.completed < r.invoked && r.api.must_see(w))
        .max_by_key(|w| w.completed);
    Some(match missed {
        Some(w) => format!(
            "it must see {}, and no write of {value} could have come after it",
            w.describe(t0)
        ),
        None => format!("no write of {value} was invoked before the read completed"),
    })
}
