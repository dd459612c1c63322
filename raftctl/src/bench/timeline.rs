//! Acknowledged sets per second over a measured phase, for the charts:
//! the coordinator samples the workers' cumulative applied-Ack counters
//! (each worker reports them every 250 ms) while it shows progress, and
//! keeps the rate between consecutive samples.

use serde::Serialize;

/// One point: the rate over the interval ending `t_s` seconds into the
/// phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RatePoint {
    /// Seconds since the phase started (the end of the interval).
    pub t_s: f64,
    /// Applied Acks per second over the interval.
    pub acked_per_s: f64,
}

/// The samples of one phase.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    start_ns: u64,
    last: Option<(u64, u64)>,
    points: Vec<RatePoint>,
}

impl Timeline {
    /// A timeline whose phase started at `start_ns` (`CLOCK_MONOTONIC`),
    /// when the workers had acknowledged `acks` sets in all.
    pub fn new(start_ns: u64, acks: u64) -> Self {
        Self {
            start_ns,
            last: Some((start_ns, acks)),
            points: Vec::new(),
        }
    }

    /// Takes a sample: `acks` applied Acks in all at `now_ns`. Samples
    /// closer than 100 ms to the previous one are skipped (too noisy).
    pub fn sample(&mut self, now_ns: u64, acks: u64) {
        let Some((t0, a0)) = self.last else {
            self.last = Some((now_ns, acks));
            return;
        };
        if now_ns < t0 + 100_000_000 {
            return;
        }
        let secs = (now_ns - t0) as f64 / 1e9;
        self.points.push(RatePoint {
            t_s: now_ns.saturating_sub(self.start_ns) as f64 / 1e9,
            acked_per_s: acks.saturating_sub(a0) as f64 / secs,
        });
        self.last = Some((now_ns, acks));
    }

    /// The points so far.
    pub fn points(&self) -> &[RatePoint] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_between_samples() {
        let s = 1_000_000_000;
        let mut t = Timeline::new(10 * s, 100);
        t.sample(10 * s + s / 2, 600);
        t.sample(10 * s + s / 2 + 1, 700); // too close: skipped
        t.sample(11 * s, 800);
        let p = t.points();
        assert_eq!(p.len(), 2);
        assert!((p[0].t_s - 0.5).abs() < 1e-9 && (p[0].acked_per_s - 1000.0).abs() < 1e-6);
        assert!((p[1].t_s - 1.0).abs() < 1e-9 && (p[1].acked_per_s - 400.0).abs() < 1e-6);
    }
}
