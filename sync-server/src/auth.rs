//! Device credentials and enrolment codes: generated from the OS's random source, stored
//! only as SHA-256 hashes, compared in constant time; enrolment attempts rate-limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

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

/// Attempt times per client address, and overall.
type Attempts = (HashMap<IpAddr, Vec<Instant>>, Vec<Instant>);

/// Sliding-window limiter of enrolment attempts, per client address and overall.
#[derive(Debug)]
pub struct EnrolLimiter {
    per_client: u32,
    overall: u32,
    window: Duration,
    state: Mutex<Attempts>,
}

impl EnrolLimiter {
    /// At most `per_client` attempts per address and `overall` in total per `window`.
    pub fn new(per_client: u32, overall: u32, window: Duration) -> Self {
        EnrolLimiter {
            per_client,
            overall,
            window,
            state: Mutex::new((HashMap::new(), Vec::new())),
        }
    }

    /// Records an attempt; `false` when it must be refused.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window;
        st.1.retain(|t| now.duration_since(*t) < window);
        if st.1.len() >= self.overall as usize {
            return false;
        }
        if st.0.len() > 10_000 {
            st.0.retain(|_, v| v.iter().any(|t| now.duration_since(*t) < window));
        }
        let mine = st.0.entry(ip).or_default();
        mine.retain(|t| now.duration_since(*t) < window);
        if mine.len() >= self.per_client as usize {
            return false;
        }
        mine.push(now);
        st.1.push(now);
        true
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
        let l = EnrolLimiter::new(3, 100, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(l.allow(ip) && l.allow(ip) && l.allow(ip));
        assert!(!l.allow(ip));
        assert!(l.allow("127.0.0.2".parse().unwrap()));
    }
}
