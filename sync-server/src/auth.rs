//! Device credentials and enrolment codes: generated from the OS's random source, stored
//! only as SHA-256 hashes, compared in constant time; enrolment attempts rate-limited per
//! address and per address range.

use std::net::IpAddr;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::limits::{address_range, AddrRange, RateLimiter};

/// Alphabet of enrolment codes (Crockford base32: no I, L, O, U).
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new one-time enrolment code: 12 symbols (60 bits), shown as `XXXX-XXXX-XXXX`.
pub fn new_code() -> String {
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let s: Vec<char> = b
        .iter()
        .map(|x| CODE_ALPHABET[(*x & 31) as usize] as char)
        .collect();
    format!(
        "{}-{}-{}",
        s[0..4].iter().collect::<String>(),
        s[4..8].iter().collect::<String>(),
        s[8..12].iter().collect::<String>()
    )
}

/// Normalizes a typed code: upper case, no separators, common misreadings mapped.
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect()
}

/// A new device secret: 32 random bytes, hex.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// SHA-256 (hex) of a secret or a normalized code. Both carry at least 60 random bits and
/// codes are rate-limited and short-lived, so a fast hash is sufficient.
pub fn hash_secret(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Constant-time comparison of two hex hashes.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `Bearer DEVICE.SECRET`.
pub fn parse_bearer(header: &str) -> Option<(&str, &str)> {
    let token = header.strip_prefix("Bearer ")?.trim();
    let (device, secret) = token.split_once('.')?;
    if device.is_empty() || secret.is_empty() || device.len() > 64 || secret.len() > 128 {
        return None;
    }
    Some((device, secret))
}

/// Which enrolment limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolRefusal {
    /// Too many attempts from this client address.
    Address,
    /// Too many attempts from this address range (IPv4 /24, IPv6 /48).
    Range,
}

/// Token-bucket limiter of enrolment attempts per client address and per address range.
/// There is no overall limit: addresses of one range cannot use up the attempts of phones
/// in another range.
#[derive(Debug)]
pub struct EnrolLimiter {
    per_address: RateLimiter<IpAddr>,
    per_range: RateLimiter<AddrRange>,
    per_address_min: u32,
    per_range_min: u32,
}

impl EnrolLimiter {
    /// At most `per_address` attempts a minute from one address and `per_range` from one
    /// range (each available at once, then refilled evenly over the minute).
    pub fn new(per_address: u32, per_range: u32) -> Self {
        EnrolLimiter {
            per_address: RateLimiter::per_minute(per_address, crate::limits::MAX_KEYS),
            per_range: RateLimiter::per_minute(per_range, crate::limits::MAX_KEYS),
            per_address_min: per_address.max(1),
            per_range_min: per_range.max(1),
        }
    }

    /// The limits: attempts a minute per address and per range.
    pub fn limits(&self) -> (u32, u32) {
        (self.per_address_min, self.per_range_min)
    }

    /// Records an attempt from `ip`, or says which limit refuses it. A refused address does
    /// not use up its range's attempts, and a full range creates no entries per address.
    pub fn allow(&self, ip: IpAddr) -> Result<(), EnrolRefusal> {
        let ip = ip.to_canonical();
        let range = address_range(ip);
        if !self.per_range.available(&range) {
            return Err(EnrolRefusal::Range);
        }
        self.per_address
            .take(&ip)
            .map_err(|_| EnrolRefusal::Address)?;
        self.per_range.take(&range).map_err(|_| EnrolRefusal::Range)
    }
}

impl Default for EnrolLimiter {
    fn default() -> Self {
        EnrolLimiter::new(
            crate::limits::ENROL_PER_ADDRESS_PER_MIN,
            crate::limits::ENROL_PER_RANGE_PER_MIN,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_random_and_normalize() {
        let a = new_code();
        let b = new_code();
        assert_ne!(a, b);
        assert_eq!(a.len(), 14);
        assert_eq!(normalize_code(&a.to_lowercase()), normalize_code(&a));
        assert_eq!(normalize_code("ab0o-1il"), "AB00111");
    }

    #[test]
    fn bearer_and_hashes() {
        assert_eq!(parse_bearer("Bearer d1.s3cr3t"), Some(("d1", "s3cr3t")));
        assert_eq!(parse_bearer("Basic x"), None);
        assert_eq!(parse_bearer("Bearer nodot"), None);
        let h = hash_secret("x");
        assert!(hashes_equal(&h, &hash_secret("x")));
        assert!(!hashes_equal(&h, &hash_secret("y")));
    }

    #[test]
    fn limiter_refuses_after_budget() {
        let l = EnrolLimiter::new(3, 100);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(l.allow(ip).is_ok() && l.allow(ip).is_ok() && l.allow(ip).is_ok());
        assert_eq!(l.allow(ip), Err(EnrolRefusal::Address));
        assert!(l.allow("127.0.0.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn one_range_cannot_exhaust_another() {
        let l = EnrolLimiter::new(3, 6);
        // Two addresses of one /24 use up its six attempts; a third address of that range is
        // refused by the range limit, an address of another range is not.
        for host in [1, 2] {
            let ip: IpAddr = format!("198.51.100.{host}").parse().unwrap();
            for _ in 0..3 {
                assert!(l.allow(ip).is_ok());
            }
        }
        assert_eq!(
            l.allow("198.51.100.3".parse().unwrap()),
            Err(EnrolRefusal::Range)
        );
        assert!(l.allow("203.0.113.7".parse().unwrap()).is_ok());
        // A refused address does not spend its range's attempts.
        let l = EnrolLimiter::new(1, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.allow(a).is_ok());
        for _ in 0..10 {
            assert_eq!(l.allow(a), Err(EnrolRefusal::Address));
        }
        assert!(l.allow("192.0.2.2".parse().unwrap()).is_ok());
        assert!(l.allow("192.0.2.3".parse().unwrap()).is_ok());
    }
}
