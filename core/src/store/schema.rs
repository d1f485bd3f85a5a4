//! Schema versions of the local database and the steps between them.
//!
//! The version lives in `PRAGMA user_version`. A fresh file runs every step; an older file
//! runs the missing steps, all in one IMMEDIATE transaction; a newer file is refused.

use rusqlite::{Connection, TransactionBehavior};

use crate::{Error, Result};

/// Migration steps; step `i` moves the schema from version `i` to `i + 1`.
const STEPS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_patrol_and_kept.sql"),
    include_str!("migrations/0003_cursor_tokens.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = STEPS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database up to `target` (tests use it to build old schemas).
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for v in found..target.min(SCHEMA_VERSION) {
        tx.execute_batch(STEPS[v as usize])?;
    }
    if target > found {
        tx.pragma_update(None, "user_version", target.min(SCHEMA_VERSION))?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(conn: &Connection) -> Vec<(String, String)> {
        let mut st = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn upgrade_from_v1_matches_fresh_and_keeps_rows() {
        let mut old = Connection::open_in_memory().unwrap();
        migrate_to(&mut old, 1).unwrap();
        old.execute(
            "INSERT INTO grids (code, name, level, kind, parent) VALUES ('g1', '测试村', 'village', 'pastoral', NULL)",
            [],
        )
        .unwrap();
        migrate(&mut old).unwrap();
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_eq!(schema_of(&old), schema_of(&fresh));
        let v: i64 = old
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let name: String = old
            .query_row("SELECT name FROM grids WHERE code = 'g1'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(name, "测试村");
    }

    #[test]
    fn newer_file_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match migrate(&mut c) {
            Err(Error::SchemaTooNew { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}
