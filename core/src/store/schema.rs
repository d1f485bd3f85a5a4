//! Schema versions of the local database and the steps between them.
//!
//! The version lives in `PRAGMA user_version`. The steps run through the project's one
//! migration runner ([`crate::migrate`]): a fresh file runs every step; an older file runs
//! the missing steps, all in one IMMEDIATE transaction; a newer file is refused.

use rusqlite::{Connection, TransactionBehavior};

use crate::migrate::{MigrateError, Steps, UserVersion};
use crate::{Error, Result};

/// The phone schema's steps; step `i` moves it from version `i` to `i + 1`.
const STEPS: Steps = Steps {
    what: "phone",
    scripts: &[
        include_str!("migrations/0001_init.sql"),
        include_str!("migrations/0002_patrol_and_kept.sql"),
        include_str!("migrations/0003_cursor_tokens.sql"),
        include_str!("migrations/0004_attachments.sql"),
        include_str!("migrations/0005_confirmations.sql"),
        include_str!("migrations/0006_duplicate_keys.sql"),
        include_str!("migrations/0007_merged_into.sql"),
    ],
};

/// The version that added the `attachments` and `attachment_refs` tables.
pub const ATTACHMENTS_VERSION: i64 = 4;

/// The version that added `producers.confirmed_year` (yearly confirmations).
pub const CONFIRMATIONS_VERSION: i64 = 5;

/// The version that added the likely-duplicate keys to `producers` (`dup_credit_code`,
/// `dup_id_number`, `dup_phone`, `name_core`).
pub const DUPLICATE_KEYS_VERSION: i64 = 6;

/// The version that added `producers.merged_into` (tombstones of merged duplicates).
pub const MERGED_INTO_VERSION: i64 = 7;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = STEPS.latest();

/// Brings the database up to [`SCHEMA_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database up to `target` (tests use it to build old schemas).
pub fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    STEPS
        .migrate_to(&mut UserVersion(&tx), target)
        .map_err(|e| match e {
            MigrateError::TooNew {
                found, supported, ..
            } => Error::SchemaTooNew { found, supported },
            MigrateError::Database(e) => Error::from(e),
        })?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::sqlite_schema;

    /// One row for a table: the version that created the table, the insert, and a query
    /// reading the row back as text with the value it must give.
    struct Seed {
        since: i64,
        table: &'static str,
        insert: &'static str,
        read: &'static str,
        want: &'static str,
    }

    const SEEDS: &[Seed] = &[
        Seed {
            since: 1,
            table: "meta",
            insert: "INSERT INTO meta (key, value) VALUES ('actor', '00112233445566778899aabbccddeeff')",
            read: "SELECT value FROM meta WHERE key = 'actor'",
            want: "00112233445566778899aabbccddeeff",
        },
        Seed {
            since: 1,
            table: "grids",
            insert: "INSERT INTO grids (code, name, level, kind, parent) VALUES ('g1', '测试村', 'village', 'pastoral', NULL)",
            read: "SELECT name || '/' || level FROM grids WHERE code = 'g1'",
            want: "测试村/village",
        },
        Seed {
            since: 1,
            table: "people",
            insert: "INSERT INTO people (id, name, phone, role, grids) VALUES ('p1', '张三', '13912345678', 'liaison', '[\"g1\"]')",
            read: "SELECT name || '/' || role || '/' || grids FROM people WHERE id = 'p1'",
            want: "张三/liaison/[\"g1\"]",
        },
        Seed {
            since: 1,
            table: "records",
            insert: "INSERT INTO records (id, kind, grid, doc, chunk_count, heads, local_rev, updated_at_ms) VALUES ('r1', 'producer', 'g1', x'0102', 1, x'0304', 2, 1767225600000)",
            read: "SELECT kind || '/' || hex(doc) || '/' || chunk_count || '/' || local_rev || '/' || acked_rev FROM records WHERE id = 'r1'",
            want: "producer/0102/1/2/0",
        },
        Seed {
            since: 1,
            table: "record_chunks",
            insert: "INSERT INTO record_chunks (id, n, bytes) VALUES ('r1', 0, x'0506')",
            read: "SELECT hex(bytes) FROM record_chunks WHERE id = 'r1' AND n = 0",
            want: "0506",
        },
        Seed {
            since: 1,
            table: "producers",
            insert: "INSERT INTO producers (id, grid, name, owner, phone, producer_type, status, review_state, risk, last_visit_ms, updated_at_ms) VALUES ('r1', 'g1', '测试牧场', '户主', '13912345678', 'family_ranch', 'active', 'draft', 'low', 1767225600000, 1767225600000)",
            read: "SELECT name || '/' || review_state || '/' || last_visit_ms FROM producers WHERE id = 'r1'",
            want: "测试牧场/draft/1767225600000",
        },
        Seed {
            since: 1,
            table: "visits",
            insert: "INSERT INTO visits (id, producer_id, grid, inspector, started_at_ms, status, rect_open, rect_deadline, rect_notice) VALUES ('v1', 'r1', 'g1', 'p1', 1767225600000, 'completed', 1, '2026-02-01', 'N-1')",
            read: "SELECT producer_id || '/' || status || '/' || rect_open || '/' || rect_deadline FROM visits WHERE id = 'v1'",
            want: "r1/completed/1/2026-02-01",
        },
        Seed {
            since: 1,
            table: "templates",
            insert: "INSERT INTO templates (id, template_id, version, grid) VALUES ('t1@2', 't1', 2, 'g1')",
            read: "SELECT template_id || '/' || version FROM templates WHERE id = 't1@2'",
            want: "t1/2",
        },
        Seed {
            since: 1,
            table: "sync_cursors",
            insert: "INSERT INTO sync_cursors (grid, seq) VALUES ('g1', 42)",
            read: "SELECT seq FROM sync_cursors WHERE grid = 'g1'",
            want: "42",
        },
        Seed {
            since: 2,
            table: "patrol_intervals",
            insert: "INSERT INTO patrol_intervals (producer_type, risk, days) VALUES ('family_ranch', 'high', 30)",
            read: "SELECT days FROM patrol_intervals WHERE producer_type = 'family_ranch' AND risk = 'high'",
            want: "30",
        },
        Seed {
            since: 2,
            table: "kept_edits",
            insert: "INSERT INTO kept_edits (id, kind, grid, doc, reason, kept_at_ms) VALUES ('k1', 'visit', 'g9', x'07', 'grid left the device', 1767225600000)",
            read: "SELECT kind || '/' || grid || '/' || reason FROM kept_edits WHERE id = 'k1'",
            want: "visit/g9/grid left the device",
        },
        Seed {
            since: 4,
            table: "attachments",
            insert: "INSERT INTO attachments (sha256, size, mime, state, created_at_ms, last_read_ms) VALUES ('ab', 10, 'image/jpeg', 'pending', 1767225600000, 1767225600000)",
            read: "SELECT size || '/' || mime || '/' || state || '/' || server_offset FROM attachments WHERE sha256 = 'ab'",
            want: "10/image/jpeg/pending/0",
        },
        Seed {
            since: 4,
            table: "attachment_refs",
            insert: "INSERT INTO attachment_refs (sha256, record_id, size, mime) VALUES ('ab', 'v1', 10, 'image/jpeg')",
            read: "SELECT record_id || '/' || size || '/' || mime FROM attachment_refs WHERE sha256 = 'ab'",
            want: "v1/10/image/jpeg",
        },
    ];

    fn at(version: i64) -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        migrate_to(&mut c, version).unwrap();
        c
    }

    fn text(c: &Connection, sql: &str) -> String {
        c.query_row(sql, [], |r| {
            Ok(match r.get_ref(0)? {
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                v => v.as_str()?.to_string(),
            })
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn upgrade_from_every_version_matches_fresh_and_keeps_rows() {
        let fresh = at(SCHEMA_VERSION);
        assert_eq!(
            text(&fresh, "PRAGMA user_version"),
            SCHEMA_VERSION.to_string()
        );
        for v in 1..SCHEMA_VERSION {
            let mut old = at(v);
            let seeds: Vec<&Seed> = SEEDS.iter().filter(|s| s.since <= v).collect();
            for s in &seeds {
                old.execute(s.insert, []).unwrap();
            }
            // Every table of version v holds a row (a step adding a table adds a seed).
            let tables: Vec<String> = {
                let mut st = old
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                    .unwrap();
                let rows = st.query_map([], |r| r.get(0)).unwrap();
                rows.map(|r| r.unwrap()).collect()
            };
            for t in &tables {
                assert!(
                    seeds.iter().any(|s| s.table == t),
                    "version {v}: table {t} has no seed row"
                );
            }

            migrate(&mut old).unwrap();
            assert_eq!(
                sqlite_schema(&old).unwrap(),
                sqlite_schema(&fresh).unwrap(),
                "upgraded from version {v}"
            );
            assert_eq!(
                text(&old, "PRAGMA user_version"),
                SCHEMA_VERSION.to_string()
            );
            for s in &seeds {
                assert_eq!(text(&old, s.read), s.want, "from version {v}: {}", s.table);
            }
            // Columns added later take their defaults on the old rows.
            assert_eq!(
                text(&old, "SELECT token FROM sync_cursors WHERE grid = 'g1'"),
                "0"
            );
        }
    }

    #[test]
    fn migrating_a_current_file_again_changes_nothing() {
        let mut c = at(SCHEMA_VERSION);
        for s in SEEDS {
            c.execute(s.insert, []).unwrap();
        }
        let before = sqlite_schema(&c).unwrap();
        migrate(&mut c).unwrap();
        // An older target leaves a newer file alone.
        migrate_to(&mut c, 1).unwrap();
        assert_eq!(sqlite_schema(&c).unwrap(), before);
        assert_eq!(text(&c, "PRAGMA user_version"), SCHEMA_VERSION.to_string());
        for s in SEEDS {
            assert_eq!(text(&c, s.read), s.want, "{}", s.table);
        }
    }

    #[test]
    fn newer_file_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match migrate(&mut c) {
            Err(Error::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION))
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}
