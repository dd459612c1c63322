//! Connection caps (global and per client address) and Set rate limits
//! (per connection and per address), as token buckets from `governor`.
//! The buckets count boxes: a Set takes one token, a SetMany of `n` boxes
//! asks for `n` at once ([`Limits::allow_sets`]) and is granted as many
//! as both buckets hold.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::GatewayConfig;

/// Why a connection is refused after the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The gateway holds `ws_max_connections`: close 1013.
    AtCapacity,
    /// The address holds `ws_max_connections_per_ip`: close 1008.
    PerAddress,
}

/// Caps and rate limits shared by every connection.
pub struct Limits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    conn_quota: Quota,
    ip_sets: DefaultKeyedRateLimiter<IpAddr>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// A counted connection; dropping it gives its place back.
pub struct Permit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    /// Limits from the `ws_*` settings of `config`.
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            max_total: config.ws_max_connections,
            max_per_ip: config.ws_max_connections_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            conn_quota: quota(config.ws_sets_per_second, config.ws_sets_burst),
            ip_sets: RateLimiter::keyed(quota(
                config.ws_ip_sets_per_second,
                config.ws_ip_sets_burst,
            )),
        }
    }

    /// Counts a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refusal::AtCapacity);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            limits: self.clone(),
            ip,
        })
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Load in permille of `ws_max_connections`.
    pub fn load_permille(&self) -> u16 {
        let permille = self.connections().saturating_mul(1000) / self.max_total.max(1);
        u16::try_from(permille.min(1000)).unwrap_or(1000)
    }

    /// A fresh per-connection Set limiter.
    pub fn connection_limiter(&self) -> DefaultDirectRateLimiter {
        RateLimiter::direct(self.conn_quota)
    }

    /// Takes one Set token from the connection and from its address.
    pub fn allow_set(&self, conn: &DefaultDirectRateLimiter, ip: IpAddr) -> bool {
        conn.check().is_ok() && self.ip_sets.check_key(&ip).is_ok()
    }

    /// Takes up to `n` Set tokens (a SetMany's boxes) from the connection's
    /// bucket, then as many as it gave from the address's: the number
    /// granted, `n` when both hold enough. The first boxes of the message
    /// get the tokens; as with [`Self::allow_set`], tokens the connection
    /// gave for boxes the address then refuses are spent.
    pub fn allow_sets(&self, conn: &DefaultDirectRateLimiter, ip: IpAddr, n: u32) -> u32 {
        let granted = take(n, |n| conn.check_n(n), || conn.check().is_ok());
        take(
            granted,
            |n| self.ip_sets.check_key_n(&ip, n),
            || self.ip_sets.check_key(&ip).is_ok(),
        )
    }

    /// Forgets addresses whose buckets are full again.
    pub fn prune(&self) {
        self.ip_sets.retain_recent();
        self.ip_sets.shrink_to_fit();
    }
}

/// Up to `n` tokens from a bucket: all at once if it holds them, else
/// one at a time until it is empty (at most its burst, so a few checks).
fn take<E, F>(
    n: u32,
    all: impl FnOnce(NonZeroU32) -> Result<Result<(), F>, E>,
    mut one: impl FnMut() -> bool,
) -> u32 {
    let Some(wanted) = NonZeroU32::new(n) else {
        return 0;
    };
    if matches!(all(wanted), Ok(Ok(()))) {
        return n;
    }
    let mut granted = 0;
    while granted < n && one() {
        granted += 1;
    }
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_buckets() {
        let config = GatewayConfig {
            ws_max_connections: 3,
            ws_max_connections_per_ip: 2,
            ..Default::default()
        };
        let limits = Arc::new(Limits::new(&config));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limits.admit(a).unwrap();
        let _p2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(Refusal::PerAddress));
        let _p3 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some(Refusal::AtCapacity));
        assert_eq!(limits.load_permille(), 1000);
        drop(p1);
        assert!(limits.admit(a).is_ok());
        let conn = limits.connection_limiter();
        let allowed = (0..30).filter(|_| limits.allow_set(&conn, a)).count();
        assert!((10..=12).contains(&allowed), "{allowed}");
    }

    #[test]
    fn set_many_takes_a_token_per_box_and_grants_the_first_ones() {
        let limits = Arc::new(Limits::new(&GatewayConfig::default()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let conn = limits.connection_limiter();
        // Burst 10: 4 whole, then 6 of 8, then none.
        assert_eq!(limits.allow_sets(&conn, a, 4), 4);
        assert_eq!(limits.allow_sets(&conn, a, 8), 6);
        assert_eq!(limits.allow_sets(&conn, a, 3), 0);
        assert_eq!(limits.allow_sets(&conn, a, 0), 0);
        // More than the burst at once: the burst, from a fresh connection
        // on another address.
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let fresh = limits.connection_limiter();
        assert_eq!(limits.allow_sets(&fresh, b, 256), 10);
        // The address's bucket is shared: a second connection of `a` gets
        // nothing although its own bucket is full.
        let second = limits.connection_limiter();
        assert_eq!(limits.allow_sets(&second, a, 5), 0);
    }
}
