//! Storage of desk sign-in (the web console): accounts with argon2id password hashes,
//! sessions and one-time password-set links, both stored as the SHA-256 of their token.
//! Written once over the [`Backend`] seam, like everything in [`super::layer`].

use super::layer::{Backend, SqlStorage};
use super::sql::{params, Row, Tx};
use super::{StorageError, StorageResult};

/// A desk account (one per person).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskAccount {
    /// The person.
    pub person_id: String,
    /// Sign-in name (unique).
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// When the account was created.
    pub created_at_ms: i64,
    /// When the password was last set.
    pub changed_at_ms: i64,
    /// Failed sign-ins since the last success or lock.
    pub failed_attempts: i64,
    /// Sign-in is refused until then.
    pub locked_until_ms: Option<i64>,
}

/// A desk session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskSession {
    /// SHA-256 (hex) of the session token the cookie carries.
    pub token_hash: String,
    /// The person signed in.
    pub person_id: String,
    /// The CSRF token of the session's forms.
    pub csrf_token: String,
    /// When it started.
    pub created_at_ms: i64,
    /// Last request.
    pub last_seen_ms: i64,
    /// Absolute end.
    pub expires_at_ms: i64,
}

/// What a failed sign-in did to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedSignIn {
    /// Failures counted now (0 after a lock).
    pub failed_attempts: i64,
    /// Set when this failure locked the account: locked until then.
    pub locked_until_ms: Option<i64>,
}

/// Desk sign-in storage; every [`super::Storage`] has it.
pub trait DeskStorage {
    /// Creates the account of `person_id` or replaces its username and password hash
    /// (resetting failures and any lock). A username taken by another person is
    /// [`StorageError::Invalid`].
    fn desk_set_password(
        &self,
        person_id: &str,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StorageResult<()>;
    /// The account of a person.
    fn desk_account(&self, person_id: &str) -> StorageResult<Option<DeskAccount>>;
    /// The account with this username.
    fn desk_account_by_username(&self, username: &str) -> StorageResult<Option<DeskAccount>>;
    /// Counts a failed sign-in; the `max_failures`-th locks the account until `lock_until_ms`
    /// (and resets the count).
    fn desk_sign_in_failed(
        &self,
        person_id: &str,
        max_failures: i64,
        lock_until_ms: i64,
    ) -> StorageResult<FailedSignIn>;
    /// Clears the failure count after a successful sign-in.
    fn desk_sign_in_succeeded(&self, person_id: &str) -> StorageResult<()>;
    /// Stores a new session.
    fn desk_create_session(&self, s: &DeskSession) -> StorageResult<()>;
    /// A session by the hash of its token.
    fn desk_session(&self, token_hash: &str) -> StorageResult<Option<DeskSession>>;
    /// Notes a request of a session.
    fn desk_touch_session(&self, token_hash: &str, now_ms: i64) -> StorageResult<()>;
    /// Deletes a session; whether it existed.
    fn desk_delete_session(&self, token_hash: &str) -> StorageResult<bool>;
    /// Deletes every session of a person; how many.
    fn desk_delete_sessions_of(&self, person_id: &str) -> StorageResult<u64>;
    /// Deletes sessions past their absolute end or idle for `idle_ms`, and links expired or
    /// used before `now_ms - idle_ms`; returns how many sessions and links.
    fn desk_purge(&self, now_ms: i64, idle_ms: i64) -> StorageResult<(u64, u64)>;
    /// Stores a one-time password-set link.
    fn desk_create_link(
        &self,
        token_hash: &str,
        person_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> StorageResult<()>;
    /// The person of an unused, unexpired link (the link stays usable).
    fn desk_link(&self, token_hash: &str, now_ms: i64) -> StorageResult<Option<String>>;
    /// Uses a link once: if it is unused and unexpired, marks it used and returns its
    /// person; a second use finds it used.
    fn desk_use_link(&self, token_hash: &str, now_ms: i64) -> StorageResult<Option<String>>;
    /// Activates or deactivates a person; deactivating deletes their desk sessions in the
    /// same transaction. Whether the person exists.
    fn set_person_active(&self, person_id: &str, active: bool) -> StorageResult<bool>;
}

const ACCOUNT_COLS: &str = "person_id, username, password_hash, created_at_ms, changed_at_ms, failed_attempts, locked_until_ms";
const SESSION_COLS: &str =
    "token_hash, person_id, csrf_token, created_at_ms, last_seen_ms, expires_at_ms";

pub(crate) fn account_row(r: Row) -> StorageResult<DeskAccount> {
    Ok(DeskAccount {
        person_id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        created_at_ms: r.get(3)?,
        changed_at_ms: r.get(4)?,
        failed_attempts: r.get(5)?,
        locked_until_ms: r.get(6)?,
    })
}

fn session_row(r: Row) -> StorageResult<DeskSession> {
    Ok(DeskSession {
        token_hash: r.get(0)?,
        person_id: r.get(1)?,
        csrf_token: r.get(2)?,
        created_at_ms: r.get(3)?,
        last_seen_ms: r.get(4)?,
        expires_at_ms: r.get(5)?,
    })
}

fn account_where(tx: &mut dyn Tx, cond: &str, key: &str) -> StorageResult<Option<DeskAccount>> {
    tx.row(
        "desk_accounts",
        &format!("SELECT {ACCOUNT_COLS} FROM desk_accounts WHERE {cond} = $1"),
        params![key],
        account_row,
    )
}

impl<B: Backend> DeskStorage for SqlStorage<B> {
    fn desk_set_password(
        &self,
        person_id: &str,
        username: &str,
        password_hash: &str,
        now: i64,
    ) -> StorageResult<()> {
        self.backend().write(|tx| {
            if let Some(other) = account_where(tx, "username", username)? {
                if other.person_id != person_id {
                    return Err(StorageError::Invalid(format!(
                        "username '{username}' belongs to another person"
                    )));
                }
            }
            tx.execute(
                "INSERT INTO desk_accounts (person_id, username, password_hash, created_at_ms, changed_at_ms, failed_attempts, locked_until_ms)
                 VALUES ($1, $2, $3, $4, $4, 0, NULL)
                 ON CONFLICT (person_id) DO UPDATE SET username = excluded.username,
                    password_hash = excluded.password_hash, changed_at_ms = excluded.changed_at_ms,
                    failed_attempts = 0, locked_until_ms = NULL",
                params![person_id, username, password_hash, now],
            )?;
            Ok(())
        })
    }

    fn desk_account(&self, person_id: &str) -> StorageResult<Option<DeskAccount>> {
        self.backend()
            .single(false, |tx| account_where(tx, "person_id", person_id))
    }

    fn desk_account_by_username(&self, username: &str) -> StorageResult<Option<DeskAccount>> {
        self.backend()
            .single(false, |tx| account_where(tx, "username", username))
    }

    fn desk_sign_in_failed(
        &self,
        person_id: &str,
        max_failures: i64,
        lock_until: i64,
    ) -> StorageResult<FailedSignIn> {
        self.backend().single(true, |tx| {
            // Right-hand sides see the row before the update (both databases).
            let r = tx.row(
                "desk_accounts",
                "UPDATE desk_accounts SET
                    failed_attempts = CASE WHEN failed_attempts + 1 >= $2 THEN 0 ELSE failed_attempts + 1 END,
                    locked_until_ms = CASE WHEN failed_attempts + 1 >= $2 THEN $3 ELSE locked_until_ms END
                 WHERE person_id = $1 RETURNING failed_attempts, locked_until_ms",
                params![person_id, max_failures, lock_until],
                |r| Ok((r.get::<i64>(0)?, r.get::<Option<i64>>(1)?)),
            )?;
            let (failed_attempts, locked) =
                r.ok_or_else(|| StorageError::NotFound(format!("desk account {person_id}")))?;
            Ok(FailedSignIn {
                failed_attempts,
                locked_until_ms: locked.filter(|t| *t == lock_until),
            })
        })
    }

    fn desk_sign_in_succeeded(&self, person_id: &str) -> StorageResult<()> {
        self.backend().single(true, |tx| {
            tx.execute(
                "UPDATE desk_accounts SET failed_attempts = 0, locked_until_ms = NULL WHERE person_id = $1",
                params![person_id],
            )
            .map(|_| ())
        })
    }

    fn desk_create_session(&self, s: &DeskSession) -> StorageResult<()> {
        self.backend().single(true, |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO desk_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
                ),
                params![
                    &s.token_hash,
                    &s.person_id,
                    &s.csrf_token,
                    s.created_at_ms,
                    s.last_seen_ms,
                    s.expires_at_ms
                ],
            )
            .map(|_| ())
        })
    }

    fn desk_session(&self, token_hash: &str) -> StorageResult<Option<DeskSession>> {
        self.backend().single(false, |tx| {
            tx.row(
                "desk_sessions",
                &format!("SELECT {SESSION_COLS} FROM desk_sessions WHERE token_hash = $1"),
                params![token_hash],
                session_row,
            )
        })
    }

    fn desk_touch_session(&self, token_hash: &str, now: i64) -> StorageResult<()> {
        self.backend().single(true, |tx| {
            tx.execute(
                "UPDATE desk_sessions SET last_seen_ms = $2 WHERE token_hash = $1",
                params![token_hash, now],
            )
            .map(|_| ())
        })
    }

    fn desk_delete_session(&self, token_hash: &str) -> StorageResult<bool> {
        self.backend().single(true, |tx| {
            tx.execute(
                "DELETE FROM desk_sessions WHERE token_hash = $1",
                params![token_hash],
            )
            .map(|n| n > 0)
        })
    }

    fn desk_delete_sessions_of(&self, person_id: &str) -> StorageResult<u64> {
        self.backend().single(true, |tx| {
            tx.execute(
                "DELETE FROM desk_sessions WHERE person_id = $1",
                params![person_id],
            )
        })
    }

    fn desk_purge(&self, now: i64, idle_ms: i64) -> StorageResult<(u64, u64)> {
        let idle_since = now.saturating_sub(idle_ms);
        self.backend().write(|tx| {
            let sessions = tx.execute(
                "DELETE FROM desk_sessions WHERE expires_at_ms <= $1 OR last_seen_ms <= $2",
                params![now, idle_since],
            )?;
            let links = tx.execute(
                "DELETE FROM desk_links WHERE expires_at_ms <= $1 OR used_at_ms <= $2",
                params![now, idle_since],
            )?;
            Ok((sessions, links))
        })
    }

    fn desk_create_link(
        &self,
        token_hash: &str,
        person_id: &str,
        now: i64,
        expires_at_ms: i64,
    ) -> StorageResult<()> {
        self.backend().single(true, |tx| {
            tx.execute(
                "INSERT INTO desk_links (token_hash, person_id, created_at_ms, expires_at_ms, used_at_ms) VALUES ($1, $2, $3, $4, NULL)",
                params![token_hash, person_id, now, expires_at_ms],
            )
            .map(|_| ())
        })
    }

    fn desk_link(&self, token_hash: &str, now: i64) -> StorageResult<Option<String>> {
        self.backend().single(false, |tx| {
            tx.value(
                "desk_links",
                "SELECT person_id FROM desk_links WHERE token_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2",
                params![token_hash, now],
            )
        })
    }

    fn desk_use_link(&self, token_hash: &str, now: i64) -> StorageResult<Option<String>> {
        self.backend().write(|tx| {
            tx.value(
                "desk_links",
                "UPDATE desk_links SET used_at_ms = $2
                 WHERE token_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2
                 RETURNING person_id",
                params![token_hash, now],
            )
        })
    }

    fn set_person_active(&self, person_id: &str, active: bool) -> StorageResult<bool> {
        self.backend().write(|tx| {
            let n = tx.execute(
                "UPDATE people SET active = $2 WHERE id = $1",
                params![person_id, active],
            )?;
            if n == 0 {
                return Ok(false);
            }
            if !active {
                tx.execute(
                    "DELETE FROM desk_sessions WHERE person_id = $1",
                    params![person_id],
                )?;
            }
            super::layer::bump_generation(tx)?;
            Ok(true)
        })
    }
}
