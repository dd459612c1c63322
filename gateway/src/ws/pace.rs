//! Each chunk's tick in the fan-out: short while it is quiet, longer while
//! it is hot.
//!
//! A chunk's Updates are shared by all its subscribers, so the bytes one
//! subscriber gets from it are the bytes the fan-out sends for it. The
//! fan-out measures that rate per chunk (an exponentially decaying
//! average over `ws_budget_window_ms`) against the per-connection budget
//! `ws_budget_bytes_per_second`:
//!
//! - while it is over **half** the budget at an Update, the chunk's tick
//!   doubles (up to `ws_coalesce_max_ms`): more changes fold into each
//!   Update, boxes flipped back and forth within a tick cancel out, and
//!   dense changes take the bitset form (about two bits per box);
//! - while it is under an **eighth**, the tick halves again, and a chunk
//!   that was idle long enough for its rate to decay starts over at the
//!   short tick (`ws_fanout_tick_ms`), so the first click after a quiet
//!   spell shows up within one short tick.
//!
//! One chunk's pace never affects another's: a quiet chunk next to a hot
//! one keeps the short tick.

use std::time::{Duration, Instant};

/// An exponentially decaying average rate of bytes.
#[derive(Debug, Clone)]
pub struct RateMeter {
    /// Bytes per second.
    rate: f64,
    at: Instant,
    window: f64,
}

impl RateMeter {
    /// A meter at zero, averaging over `window`.
    pub fn new(window: Duration, now: Instant) -> Self {
        Self {
            rate: 0.0,
            at: now,
            window: window.as_secs_f64().max(1e-3),
        }
    }

    fn decay(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.rate *= (-elapsed / self.window).exp();
        self.at = now;
    }

    /// Adds `bytes` sent at `now`.
    pub fn add(&mut self, bytes: usize, now: Instant) {
        self.decay(now);
        self.rate += bytes as f64 / self.window;
    }

    /// The rate at `now`, in bytes per second.
    pub fn rate(&mut self, now: Instant) -> f64 {
        self.decay(now);
        self.rate
    }
}

/// The pacing settings, from the gateway's config.
#[derive(Debug, Clone, Copy)]
pub struct PaceConfig {
    /// The short tick.
    pub tick: Duration,
    /// The longest tick.
    pub max_tick: Duration,
    /// The per-connection budget, bytes per second (0: pacing off).
    pub budget: f64,
    /// The window rates are averaged over.
    pub window: Duration,
}

/// One chunk's pace.
#[derive(Debug, Clone)]
pub struct ChunkPace {
    /// Doublings of the short tick.
    level: u32,
    /// When its last Update went out.
    last_sent: Instant,
    meter: RateMeter,
}

impl ChunkPace {
    /// A quiet chunk.
    pub fn new(config: &PaceConfig, now: Instant) -> Self {
        Self {
            level: 0,
            last_sent: now,
            meter: RateMeter::new(config.window, now),
        }
    }

    /// The chunk's current tick.
    pub fn tick(&self, config: &PaceConfig) -> Duration {
        config
            .tick
            .saturating_mul(1 << self.level.min(20))
            .min(config.max_tick)
    }

    /// Whether the chunk's tick is longer than the short one (it is hot,
    /// or was and has not cooled down yet).
    pub fn is_long(&self, config: &PaceConfig) -> bool {
        self.tick(config) > config.tick
    }

    /// Called when the chunk gets its first change since its last Update:
    /// a chunk whose rate decayed below an eighth of the budget is quiet
    /// again.
    pub fn woke(&mut self, config: &PaceConfig, now: Instant) {
        if self.meter.rate(now) < config.budget / 8.0 {
            self.level = 0;
        }
    }

    /// Whether the chunk's pending changes are due at `now`.
    pub fn due(&self, config: &PaceConfig, now: Instant) -> bool {
        // Half a short tick of slack: the fan-out's ticker is not exact.
        now + config.tick / 2 >= self.last_sent + self.tick(config)
    }

    /// Records an Update of `bytes` sent at `now`, and adapts the tick.
    pub fn sent(&mut self, bytes: usize, config: &PaceConfig, now: Instant) {
        self.last_sent = now;
        if config.budget <= 0.0 {
            return;
        }
        self.meter.add(bytes, now);
        let rate = self.meter.rate(now);
        if rate > config.budget / 2.0 && self.tick(config) < config.max_tick {
            self.level += 1;
        } else if rate < config.budget / 8.0 && self.level > 0 {
            self.level -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PaceConfig {
        PaceConfig {
            tick: Duration::from_millis(20),
            max_tick: Duration::from_millis(2000),
            budget: 50.0,
            window: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_hot_chunk_slows_down_and_a_quiet_one_keeps_the_short_tick() {
        let config = config();
        let t0 = Instant::now();
        let mut hot = ChunkPace::new(&config, t0);
        let mut quiet = ChunkPace::new(&config, t0);
        let mut now = t0;
        let mut hot_bytes = 0usize;
        // 20 s: the hot chunk has 30 bytes of Update whenever due; the
        // quiet one 9 bytes every 2 s.
        for step in 1..=1000u32 {
            now = t0 + Duration::from_millis(20 * u64::from(step));
            if hot.due(&config, now) {
                hot.sent(30, &config, now);
                hot_bytes += 30;
            }
            if step % 100 == 0 {
                quiet.woke(&config, now);
                assert!(quiet.due(&config, now));
                quiet.sent(9, &config, now);
                assert_eq!(quiet.tick(&config), config.tick);
            }
        }
        assert_eq!(hot.tick(&config), config.max_tick, "hot: the longest tick");
        assert!(hot.is_long(&config) && !quiet.is_long(&config));
        // The last 10 s: under the budget (at the short tick it would be
        // 1,500 B/s).
        assert!(hot_bytes < 20 * 50 + 30 * 40, "{hot_bytes} B in 20 s");
        // Idle long enough, the hot chunk is quiet again.
        let later = now + Duration::from_secs(30);
        hot.woke(&config, later);
        assert_eq!(hot.tick(&config), config.tick);
        assert!(!hot.is_long(&config));
        assert!(hot.due(&config, later));
    }
}
