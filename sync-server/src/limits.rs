//! Rate limits and the bookkeeping they need: token buckets per key (a device, a client
//! address, an address range), address ranges for allow lists, and a gate that keeps
//! security log lines from flooding the log. Every limit and its value is listed in
//! `docs/limits.md`.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests per second an authenticated device may make, sustained.
pub const DEVICE_RATE_PER_SEC: f64 = 20.0;
/// Requests a device may make at once before the sustained rate applies.
pub const DEVICE_BURST: u32 = 60;
/// Enrolment attempts per client address per minute (and at once).
pub const ENROL_PER_ADDRESS_PER_MIN: u32 = 10;
/// Enrolment attempts per address range (IPv4 /24, IPv6 /48) per minute (and at once).
pub const ENROL_PER_RANGE_PER_MIN: u32 = 60;
/// Most keys a limiter remembers; beyond it, buckets that have refilled are forgotten.
pub const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Buckets<K> {
    map: HashMap<K, Bucket>,
    last_prune: Option<Instant>,
}

/// Token buckets per key: each key holds up to `burst` tokens and regains `rate` a second;
/// a request takes one.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    state: Mutex<Buckets<K>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` tokens a second, at most `burst` held, at most `max_keys` keys remembered.
    pub fn new(rate: f64, burst: u32, max_keys: usize) -> Self {
        RateLimiter {
            rate: rate.max(1e-6),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            state: Mutex::new(Buckets {
                map: HashMap::new(),
                last_prune: None,
            }),
        }
    }

    /// `per_minute` requests a minute, all of them available at once.
    pub fn per_minute(per_minute: u32, max_keys: usize) -> Self {
        Self::new(f64::from(per_minute.max(1)) / 60.0, per_minute, max_keys)
    }

    /// The sustained rate (tokens a second) and the burst.
    pub fn rate(&self) -> (f64, u32) {
        (self.rate, self.burst as u32)
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst)
    }

    /// Whether `key` has a token now (takes nothing, remembers nothing).
    pub fn available(&self, key: &K) -> bool {
        let now = Instant::now();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.map.get(key).is_none_or(|b| self.level(b, now) >= 1.0)
    }

    /// Takes a token of `key`; `Err(wait)` when it has none (`wait`: until the next one).
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.map.contains_key(key) && st.map.len() >= self.max_keys {
            // Forget buckets that have refilled (they behave as absent ones), at most once a
            // second; while the table is still full, new keys wait.
            if st
                .last_prune
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                st.last_prune = Some(now);
                let (rate, burst) = (self.rate, self.burst);
                st.map.retain(|_, b| {
                    b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst
                });
            }
            if st.map.len() >= self.max_keys {
                return Err(Duration::from_secs(1));
            }
        }
        let burst = self.burst;
        let b = st.map.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let level = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(burst);
        if level >= 1.0 {
            *b = Bucket {
                tokens: level - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *b = Bucket {
                tokens: level,
                at: now,
            };
            Err(Duration::from_secs_f64((1.0 - level) / self.rate))
        }
    }
}

/// The range an address belongs to for enrolment limits: the IPv4 /24 or the IPv6 /48
/// (IPv4-mapped IPv6 addresses count as IPv4).
pub fn address_range(ip: IpAddr) -> AddrRange {
    match ip.to_canonical() {
        IpAddr::V4(v4) => AddrRange::new(IpAddr::V4(v4), 24),
        v6 => AddrRange::new(v6, 48),
    }
}

/// An address range: a network address and a prefix length (`10.0.0.0/8`, `fd00::/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRange {
    net: IpAddr,
    prefix: u8,
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let p = u32::from(prefix.min(32));
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let p = u32::from(prefix.min(128));
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl AddrRange {
    /// The range of `prefix` bits around `ip`.
    pub fn new(ip: IpAddr, prefix: u8) -> Self {
        let prefix = match ip {
            IpAddr::V4(_) => prefix.min(32),
            IpAddr::V6(_) => prefix.min(128),
        };
        AddrRange {
            net: mask(ip, prefix),
            prefix,
        }
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

impl std::str::FromStr for AddrRange {
    type Err = String;

    /// `ADDRESS` (one address) or `ADDRESS/PREFIX`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a,
                Some(
                    p.parse::<u8>()
                        .map_err(|_| format!("'{s}': the prefix length is not a number"))?,
                ),
            ),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an address or ADDRESS/PREFIX"))?;
        let ip = ip.to_canonical();
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(format!("'{s}': the prefix length is more than {max}"));
        }
        Ok(AddrRange::new(ip, prefix))
    }
}

impl std::fmt::Display for AddrRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Lets at most `per_sec` lines of one kind through each second and counts the rest, so
/// that an attacker cannot flood the log; the next line that passes says how many were
/// left out.
#[derive(Debug)]
pub struct LogGate {
    per_sec: u32,
    state: Mutex<(Option<Instant>, u32, u64)>,
}

impl LogGate {
    /// A gate of `per_sec` lines a second.
    pub const fn new(per_sec: u32) -> Self {
        LogGate {
            per_sec,
            state: Mutex::new((None, 0, 0)),
        }
    }

    /// `Some(lines left out before this one)` when a line may be written now.
    pub fn pass(&self) -> Option<u64> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st
            .0
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            st.0 = Some(now);
            st.1 = 0;
        }
        if st.1 >= self.per_sec {
            st.2 += 1;
            return None;
        }
        st.1 += 1;
        Some(std::mem::take(&mut st.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let l: RateLimiter<u32> = RateLimiter::new(1000.0, 3, 10);
        assert!(l.take(&1).is_ok() && l.take(&1).is_ok() && l.take(&1).is_ok());
        assert!(l.take(&1).is_err());
        assert!(l.take(&2).is_ok(), "keys are independent");
        std::thread::sleep(Duration::from_millis(5));
        assert!(l.take(&1).is_ok(), "tokens come back at the rate");
        let slow: RateLimiter<u32> = RateLimiter::per_minute(2, 10);
        assert!(slow.take(&1).is_ok() && slow.take(&1).is_ok());
        let wait = slow.take(&1).unwrap_err();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert!(!slow.available(&1) && slow.available(&7));
    }

    #[test]
    fn full_table_forgets_refilled_buckets_and_refuses_new_keys_otherwise() {
        let l: RateLimiter<u32> = RateLimiter::new(0.001, 1, 2);
        assert!(l.take(&1).is_ok() && l.take(&2).is_ok());
        assert!(l.take(&3).is_err(), "table full of empty buckets");
        let fast: RateLimiter<u32> = RateLimiter::new(1e6, 1, 2);
        assert!(fast.take(&1).is_ok() && fast.take(&2).is_ok());
        std::thread::sleep(Duration::from_millis(2));
        assert!(fast.take(&3).is_ok(), "refilled buckets are forgotten");
    }

    #[test]
    fn ranges() {
        let r = address_range("198.51.100.77".parse().unwrap());
        assert!(r.contains("198.51.100.1".parse().unwrap()));
        assert!(!r.contains("198.51.101.1".parse().unwrap()));
        assert!(r.contains("::ffff:198.51.100.9".parse().unwrap()));
        let r6 = address_range("2001:db8:1:2::7".parse().unwrap());
        assert!(r6.contains("2001:db8:1:ffff::1".parse().unwrap()));
        assert!(!r6.contains("2001:db8:2::1".parse().unwrap()));
        let a: AddrRange = "10.1.0.0/16".parse().unwrap();
        assert!(a.contains("10.1.200.3".parse().unwrap()));
        assert!(!a.contains("10.2.0.1".parse().unwrap()));
        let one: AddrRange = "192.0.2.5".parse().unwrap();
        assert!(one.contains("192.0.2.5".parse().unwrap()));
        assert!(!one.contains("192.0.2.6".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<AddrRange>().is_err());
        assert!("nope".parse::<AddrRange>().is_err());
        assert_eq!(a.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn log_gate_counts_what_it_leaves_out() {
        let g = LogGate::new(2);
        assert_eq!(g.pass(), Some(0));
        assert_eq!(g.pass(), Some(0));
        assert_eq!(g.pass(), None);
        assert_eq!(g.pass(), None);
    }
}
