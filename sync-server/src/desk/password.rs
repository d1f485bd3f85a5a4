//! Passwords of desk staff: argon2id PHC strings, the length rule, and a dummy hash so that
//! an unknown username costs the same time as a wrong password.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted, in bytes (bounds the hashing work).
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Checks a new password against the rules; the message is shown to the person (Chinese).
pub fn check_new(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("密码至少需要 {MIN_PASSWORD_CHARS} 个字符"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("密码不能超过 {MAX_PASSWORD_BYTES} 字节"));
    }
    if password.chars().any(char::is_control) {
        return Err("密码不能包含控制字符".into());
    }
    Ok(())
}

/// The argon2id PHC string of a password (random salt, the crate's default cost).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("password hashing failed: {e}"))
}

/// Whether `password` matches the stored PHC string (a malformed string matches nothing).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Verifies against a fixed dummy hash: the work of a real check, for unknown usernames.
pub fn burn_time(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("gridsync-dummy-password").unwrap_or_default());
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_rules() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("x", "not a phc string"));
        assert!(check_new("short").is_err());
        assert!(check_new("长密码长密码长密码长密").is_ok());
        assert!(check_new("ten chars\u{7}!").is_err());
    }
}
