//! Latency recording: a system-wide monotonic clock, and HdrHistograms
//! that travel between processes as bucket lists.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// `CLOCK_MONOTONIC` in nanoseconds. Unlike [`std::time::Instant`] it is
/// a plain number, comparable between processes on the same machine (the
/// coordinator's kill times against the workers' ack times).
pub fn now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// A latency histogram in microseconds (1 µs to 1 h, 3 significant
/// digits).
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid"))
    }
}

/// A histogram on the wire: `(value_us, count)` for every recorded value
/// bucket.
pub type Buckets = Vec<(u64, u64)>;

impl Latency {
    /// Records `ns` nanoseconds (clamped into range).
    pub fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record((ns / 1000).max(1));
    }

    /// The recorded buckets.
    pub fn buckets(&self) -> Buckets {
        self.0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// Adds another process's buckets.
    pub fn merge(&mut self, buckets: &Buckets) {
        for &(value, count) in buckets {
            let _ = self.0.record_n(value.max(1), count);
        }
    }

    /// The summary of what was recorded.
    pub fn summary(&self) -> LatencySummary {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        LatencySummary {
            count: self.0.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.0.max() as f64 / 1000.0,
            curve: self.curve(),
        }
    }

    /// The percentile curve: the latency at percentiles 0, 43.8, 68.4,
    /// 82.2, 90, ... 99.99 (steps of 1/8 of a "nine"), up to the last
    /// percentile the sample count resolves (`1 - 1/count`); empty
    /// without samples.
    pub fn curve(&self) -> Vec<CurvePoint> {
        let n = self.0.len();
        if n == 0 {
            return Vec::new();
        }
        let nines = (n as f64).log10().min(CURVE_NINES);
        let steps = (nines * CURVE_STEPS_PER_NINE).floor() as u32;
        (0..=steps)
            .map(|i| {
                let q = 1.0 - 10f64.powf(-f64::from(i) / CURVE_STEPS_PER_NINE);
                CurvePoint {
                    percentile: q * 100.0,
                    ms: self.0.value_at_quantile(q) as f64 / 1000.0,
                }
            })
            .collect()
    }
}

/// The curve goes up to this many nines (4: 99.99%).
const CURVE_NINES: f64 = 4.0;
/// Points per nine on the curve.
const CURVE_STEPS_PER_NINE: f64 = 8.0;

/// One point of a percentile curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Percentile, 0 to 100.
    pub percentile: f64,
    /// Latency at it, ms.
    pub ms: f64,
}

/// Percentiles of a latency distribution, in milliseconds (all 0 when
/// `count` is 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// The percentile curve (see [`Latency::curve`]), for the charts.
    pub curve: Vec<CurvePoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_and_merge() {
        let mut a = Latency::default();
        for us in 1..=1000u64 {
            a.record_ns(us * 1000);
        }
        let mut b = Latency::default();
        b.merge(&a.buckets());
        b.merge(&a.buckets());
        let s = b.summary();
        assert_eq!(s.count, 2000);
        assert!((s.p50_ms - 0.5).abs() < 0.01, "{s:?}");
        assert!(s.p50_ms <= s.p99_ms && s.p99_ms <= s.p999_ms && s.p999_ms <= s.max_ms);
        // 2000 samples resolve 3.3 nines: 27 points (0 to 26/8 nines), rising.
        assert_eq!(s.curve.len(), 27);
        assert_eq!(s.curve[0].percentile, 0.0);
        assert!(s.curve.windows(2).all(|w| w[0].ms <= w[1].ms));
        assert!(Latency::default().curve().is_empty());
    }

    #[test]
    fn clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a && a > 0);
    }
}
