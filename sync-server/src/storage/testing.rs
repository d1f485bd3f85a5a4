//! Test support (feature `testing`): the PostgreSQL URL tests run against, and scratch
//! schemas that keep each test's data apart.

use std::str::FromStr;

use ::postgres as pg;
use pg::NoTls;

use super::postgres::{check_schema_name, PostgresStorage};
use super::{StorageConfig, StorageError, StorageResult};

/// Prefix of scratch schemas made by [`ScratchSchema`].
const SCRATCH_PREFIX: &str = "gst_";
/// Scratch schemas older than this are dropped when a new one is made (left by killed tests).
const SCRATCH_MAX_AGE_SECS: u64 = 6 * 3600;

/// The PostgreSQL URL for tests, from `GRIDSYNC_TEST_POSTGRES`. Panics when it is unset and
/// `CI` is set (a CI run must test PostgreSQL); otherwise prints a notice and returns `None`.
pub fn test_url_from_env() -> Option<String> {
    match std::env::var("GRIDSYNC_TEST_POSTGRES") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
            assert!(!ci, "GRIDSYNC_TEST_POSTGRES is not set but CI is: start PostgreSQL with scripts/postgres.sh and export its URL");
            // Straight to stderr (not captured by the test harness), once per process.
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                use std::io::Write;
                let _ = std::io::stderr().write_all(
                    b"notice: GRIDSYNC_TEST_POSTGRES is not set; PostgreSQL tests skipped (scripts/postgres.sh start prints a URL)\n",
                );
            });
            None
        }
    }
}

/// A fresh, uniquely named schema for one test (or for several server instances of one
/// test); dropped with the guard unless [`ScratchSchema::keep`] was called.
#[derive(Debug)]
pub struct ScratchSchema {
    url: String,
    name: String,
    keep: bool,
}

impl ScratchSchema {
    /// Creates a new schema in the database at `url`, and drops scratch schemas left over
    /// from runs more than six hours old.
    pub fn new(url: &str) -> StorageResult<Self> {
        use rand::RngCore;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut b = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let name = format!("{SCRATCH_PREFIX}{now}_{}", hex::encode(b));
        let config = pg::Config::from_str(url)
            .map_err(|e| StorageError::Invalid(format!("database URL: {e}")))?;
        let mut c = config.connect(NoTls)?;
        for r in c.query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&SCRATCH_PREFIX],
        )? {
            let old: String = r.try_get(0)?;
            let made = old
                .trim_start_matches(SCRATCH_PREFIX)
                .split('_')
                .next()
                .and_then(|t| t.parse::<u64>().ok());
            if made.is_some_and(|t| t + SCRATCH_MAX_AGE_SECS < now)
                && check_schema_name(&old).is_ok()
            {
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS {old} CASCADE"))
                    .ok();
            }
        }
        c.batch_execute(&format!("CREATE SCHEMA {name}"))?;
        Ok(ScratchSchema {
            url: url.to_string(),
            name,
            keep: false,
        })
    }

    /// An existing schema by name (not dropped by this guard).
    pub fn existing(url: &str, name: &str) -> StorageResult<Self> {
        check_schema_name(name)?;
        Ok(ScratchSchema {
            url: url.to_string(),
            name: name.to_string(),
            keep: true,
        })
    }

    /// The schema name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL without the schema.
    pub fn base_url(&self) -> &str {
        &self.url
    }

    /// A URL that selects this schema (for `--database`).
    pub fn url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }

    /// Opens storage in this schema.
    pub fn open(&self) -> StorageResult<PostgresStorage> {
        PostgresStorage::open_in_schema(&self.url, &self.name)
    }

    /// The storage config of this schema (for [`super::open_storage`]).
    pub fn config(&self) -> StorageConfig {
        StorageConfig::Postgres {
            url: self.url.clone(),
            schema: Some(self.name.clone()),
        }
    }

    /// Leaves the schema in place when the guard is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Ok(config) = pg::Config::from_str(&self.url) {
            if let Ok(mut c) = config.connect(NoTls) {
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                    .ok();
            }
        }
    }
}

/// Creates the server's SQLite database at `path` at schema `version` (0 < version ≤
/// latest) without the meta rows a server sets, to test upgrades from it.
pub fn sqlite_at_version(path: &std::path::Path, version: i64) -> StorageResult<()> {
    let mut c = rusqlite::Connection::open(path)?;
    let tx = c.transaction()?;
    super::sqlite::migrate_tx(&tx, version)?;
    tx.commit()?;
    Ok(())
}

/// Brings the PostgreSQL schema on `url`'s search path to `version`, to test upgrades.
pub fn postgres_at_version(url: &str, version: i64) -> StorageResult<()> {
    let config = pg::Config::from_str(url)
        .map_err(|e| StorageError::Invalid(format!("database URL: {e}")))?;
    let mut c = config.connect(NoTls)?;
    super::postgres::migrate(&mut c, version)
}
