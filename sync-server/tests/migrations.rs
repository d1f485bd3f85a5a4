//! Schema upgrades, on each backend: a database built at every older version, with rows in
//! it, and then opened by this server equals a fresh database, and keeps its rows. A schema
//! newer than the server is refused.

#![allow(clippy::unwrap_used)]

use gridsync_core::migrate::sqlite_schema;
use gridsync_core::model::RecordKind;
use gridsync_server::storage::postgres::{self, PostgresStorage};
use gridsync_server::storage::sqlite::{self, SqliteStorage};
use gridsync_server::storage::testing::{
    postgres_at_version, sqlite_at_version, test_url_from_env, ScratchSchema,
};
use gridsync_server::storage::{FeedRead, Storage};

/// Rows of every table that has them at SQLite schema `version`, in that version's SQL.
fn sqlite_rows_at(version: i64) -> String {
    let common = "
        INSERT INTO server_meta (key, value) VALUES ('epoch', 'old-epoch'), ('ref_generation', '7');
        INSERT INTO grids (code, name, level, kind, parent) VALUES ('B', '旗', 'banner', 'mixed', NULL),
            ('G', '嘎查', 'village', 'pastoral', 'B');
        INSERT INTO people (id, name, phone, role, grids, active) VALUES ('p1', '协管员', '139', 'liaison', '[\"G\"]', 1);
        INSERT INTO enrol_codes (code_hash, person_id, created_by, created_at_ms, expires_at_ms, used_at_ms)
            VALUES ('h1', 'p1', 'admin', 1, 2, NULL);
        INSERT INTO devices (id, person_id, name, secret_hash, pending_hash, created_at_ms, last_seen_ms, revoked_at_ms, revoked_reason)
            VALUES ('d1', 'p1', 'phone', 'hash', NULL, 1, NULL, NULL, NULL);
        INSERT INTO records (id, kind, grid, doc, heads, seq, grid_since, updated_at_ms)
            VALUES ('r1', 'producer', 'G', x'0102', zeroblob(32), 2, 1, 5);
        INSERT INTO feed_heads (grid, seq) VALUES ('G', 2);
        INSERT INTO feed_log (grid, seq, token) VALUES ('G', 1, 11), ('G', 2, 12);
        INSERT INTO audit (at_ms, person_id, device_id, record_id, kind, grid, action, detail)
            VALUES (5, 'p1', 'd1', 'r1', 'producer', 'G', 'create', 'old');";
    let changes = match version {
        // Version 1: changes were keyed by record and sequence only.
        1 => "INSERT INTO changes (record_id, seq, bytes) VALUES ('r1', 1, x'01'), ('r1', 2, x'02');",
        _ => "INSERT INTO changes (record_id, grid, seq, bytes) VALUES ('r1', 'G', 1, x'01'), ('r1', 'G', 2, x'02');",
    };
    format!("{common}\n{changes}")
}

/// What every upgraded store must still answer.
fn assert_rows_kept(s: &dyn Storage) {
    assert_eq!(s.epoch().unwrap(), "old-epoch");
    assert_eq!(s.reference_generation().unwrap(), 7);
    assert_eq!(s.grids().unwrap().len(), 2);
    assert_eq!(
        s.person("p1").unwrap().unwrap().grids,
        vec!["G".to_string()]
    );
    assert!(s.device("d1").unwrap().is_some());
    let r = s.record("r1").unwrap().unwrap();
    assert_eq!(
        (r.kind, r.doc.as_slice()),
        (RecordKind::Producer, &[1u8, 2][..])
    );
    // The increment after sequence 1 is the one change stored after it, in its grid.
    let page = s
        .pull(
            &[FeedRead {
                grid: "G".into(),
                after: 1,
                templates_only: false,
            }],
            10,
            1 << 20,
        )
        .unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(
        (page.records[0].full, page.records[0].bytes.as_slice()),
        (false, &[2u8][..])
    );
    assert_eq!(page.cursors, vec![("G".to_string(), 2, 12)]);
    assert!(s.cursor_valid("G", 1, 11).unwrap());
}

#[test]
fn sqlite_every_upgrade_equals_fresh_and_keeps_rows() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    drop(SqliteStorage::open(&fresh).unwrap());
    let fresh_schema = sqlite_schema(&rusqlite::Connection::open(&fresh).unwrap()).unwrap();
    assert!(sqlite::STEPS.latest() >= 2);
    for v in 1..sqlite::STEPS.latest() {
        let path = dir.path().join(format!("v{v}.db"));
        sqlite_at_version(&path, v).unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(&sqlite_rows_at(v))
            .unwrap();
        let s = SqliteStorage::open(&path).unwrap();
        assert_rows_kept(&s);
        drop(s);
        let c = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(
            sqlite_schema(&c).unwrap(),
            fresh_schema,
            "upgraded from {v}"
        );
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, sqlite::STEPS.latest());
    }
}

#[test]
fn sqlite_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    drop(SqliteStorage::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", sqlite::STEPS.latest() + 1)
        .unwrap();
    let e = SqliteStorage::open(&path).unwrap_err().to_string();
    assert!(
        e.contains("server SQLite schema version") && e.contains("newer"),
        "{e}"
    );
}

/// Tables, columns and indexes of a PostgreSQL schema.
fn postgres_schema(url: &str, schema: &str) -> Vec<String> {
    let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    let mut out: Vec<String> = c
        .query(
            "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
             FROM information_schema.columns WHERE table_schema = $1",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}.{} {} {} {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                // A default names its sequence with the schema.
                r.get::<_, String>(4).replace(&format!("{schema}."), "")
            )
        })
        .collect();
    out.extend(
        c.query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0).replace(&format!("{schema}."), "")),
    );
    out.sort();
    out
}

/// Rows of every table that has them at PostgreSQL schema `version`, in that version's SQL
/// (the rows of [`sqlite_rows_at`]).
fn postgres_rows_at(version: i64) -> String {
    assert!(version >= 1);
    "
        INSERT INTO server_meta (key, value) VALUES ('epoch', 'old-epoch'), ('ref_generation', '7');
        INSERT INTO grids (code, name, level, kind, parent) VALUES ('B', '旗', 'banner', 'mixed', NULL),
            ('G', '嘎查', 'village', 'pastoral', 'B');
        INSERT INTO people (id, name, phone, role, grids, active) VALUES ('p1', '协管员', '139', 'liaison', '[\"G\"]', TRUE);
        INSERT INTO enrol_codes (code_hash, person_id, created_by, created_at_ms, expires_at_ms, used_at_ms)
            VALUES ('h1', 'p1', 'admin', 1, 2, NULL);
        INSERT INTO devices (id, person_id, name, secret_hash, pending_hash, created_at_ms, last_seen_ms, revoked_at_ms, revoked_reason)
            VALUES ('d1', 'p1', 'phone', 'hash', NULL, 1, NULL, NULL, NULL);
        INSERT INTO records (id, kind, grid, doc, heads, seq, grid_since, updated_at_ms)
            VALUES ('r1', 'producer', 'G', '\\x0102'::bytea, decode(repeat('00', 32), 'hex'), 2, 1, 5);
        INSERT INTO feed_heads (grid, seq) VALUES ('G', 2);
        INSERT INTO feed_log (grid, seq, token) VALUES ('G', 1, 11), ('G', 2, 12);
        INSERT INTO audit (at_ms, person_id, device_id, record_id, kind, grid, action, detail)
            VALUES (5, 'p1', 'd1', 'r1', 'producer', 'G', 'create', 'old');
        INSERT INTO changes (record_id, grid, seq, bytes) VALUES ('r1', 'G', 1, '\\x01'::bytea), ('r1', 'G', 2, '\\x02'::bytea);"
        .to_string()
}

#[test]
fn postgres_every_upgrade_equals_fresh_and_keeps_rows() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    let fresh = ScratchSchema::new(&url).unwrap();
    drop(fresh.open().unwrap());
    let fresh_schema = postgres_schema(&url, fresh.name());
    assert!(fresh_schema
        .iter()
        .any(|c| c.starts_with("records.grid_since bigint")));
    for v in 1..postgres::STEPS.latest() {
        let old = ScratchSchema::new(&url).unwrap();
        postgres_at_version(&old.url(), v).unwrap();
        ::postgres::Client::connect(&old.url(), ::postgres::NoTls)
            .unwrap()
            .batch_execute(&postgres_rows_at(v))
            .unwrap();
        let s = old.open().unwrap();
        assert_rows_kept(&s);
        drop(s);
        assert_eq!(
            postgres_schema(&url, old.name()),
            fresh_schema,
            "upgraded from {v}"
        );
    }
}

#[test]
fn postgres_newer_schema_is_refused_and_reopening_changes_nothing() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    let schema = ScratchSchema::new(&url).unwrap();
    let epoch = schema.open().unwrap().epoch().unwrap();
    let before = postgres_schema(&url, schema.name());
    let again = PostgresStorage::open_in_schema(&url, schema.name()).unwrap();
    assert_eq!(again.epoch().unwrap(), epoch, "reopening keeps the epoch");
    drop(again);
    assert_eq!(postgres_schema(&url, schema.name()), before);
    ::postgres::Client::connect(&schema.url(), ::postgres::NoTls)
        .unwrap()
        .execute(
            "INSERT INTO gridsync_schema (version, applied_at_ms) VALUES ($1, 0)",
            &[&(postgres::STEPS.latest() as i32 + 1)],
        )
        .unwrap();
    let e = schema.open().unwrap_err().to_string();
    assert!(
        e.contains("server PostgreSQL schema version") && e.contains("newer"),
        "{e}"
    );
}

/// A producer and a visit of it as stored documents: (id, kind, grid, document), in a feed
/// of their own (`assert_rows_kept` reads feed G).
fn real_records() -> Vec<(String, &'static str, String, Vec<u8>)> {
    use gridsync_core::doc::RecordDoc;
    use gridsync_core::model::{default_template, Producer, ProducerType, Record, Visit};
    let mut p = Producer::new(
        "巴特尔家庭牧场",
        ProducerType::FamilyRanch,
        "巴特尔",
        "13912345678",
        "G",
        "p1",
        1_000,
    );
    p.id = "prod-1".into();
    let mut v = Visit::new("prod-1", "G", "p1", &default_template("B"), 7_000);
    v.id = "visit-1".into();
    let actor = gridsync_core::device_actor("d1");
    [Record::Producer(p), Record::Visit(v)]
        .iter()
        .map(|r| {
            let doc = RecordDoc::create(r, &actor, "p1", 1).unwrap().save();
            (r.id().to_string(), r.kind().as_str(), "H".to_string(), doc)
        })
        .collect()
}

/// A store upgraded with records in it has their query rows when it opens.
fn assert_query_rows_filled(s: &dyn Storage) {
    let snap = s.query_snapshot().unwrap();
    let producers: Vec<(&str, &str, Option<i64>)> = snap
        .producers
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str(), p.last_visit_ms))
        .collect();
    assert_eq!(producers, vec![("prod-1", "巴特尔家庭牧场", Some(7_000))]);
    assert_eq!(snap.visits.len(), 1);
    assert_eq!(snap.visits[0].producer_id, "prod-1");
    // The mark that asked for the filling is gone: the next start does not rebuild.
    let mut meta = Vec::new();
    s.export(&mut |c| {
        if let gridsync_server::storage::DumpChunk::Meta(rows) = c {
            meta.extend(rows);
        }
        Ok(())
    })
    .unwrap();
    assert!(meta.iter().all(|(k, _)| k != "query_tables"), "{meta:?}");
}

#[test]
fn sqlite_upgrade_fills_the_query_tables_of_stored_records() {
    let dir = tempfile::tempdir().unwrap();
    // Version 4 added the query tables.
    let before_tables = 3;
    let path = dir.path().join("old.db");
    sqlite_at_version(&path, before_tables).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(&sqlite_rows_at(before_tables)).unwrap();
    for (id, kind, grid, doc) in real_records() {
        c.execute(
            "INSERT INTO records (id, kind, grid, doc, heads, seq, grid_since, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, zeroblob(32), 3, 3, 5)",
            rusqlite::params![id, kind, grid, doc],
        )
        .unwrap();
    }
    drop(c);
    let s = SqliteStorage::open(&path).unwrap();
    assert_rows_kept(&s);
    assert_query_rows_filled(&s);
    drop(s);
    // Opening again changes nothing.
    let s = SqliteStorage::open(&path).unwrap();
    assert_query_rows_filled(&s);
}

#[test]
fn postgres_upgrade_fills_the_query_tables_of_stored_records() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    // Version 3 added the query tables.
    let before_tables = 2;
    let old = ScratchSchema::new(&url).unwrap();
    postgres_at_version(&old.url(), before_tables).unwrap();
    let mut c = ::postgres::Client::connect(&old.url(), ::postgres::NoTls).unwrap();
    c.batch_execute(&postgres_rows_at(before_tables)).unwrap();
    for (id, kind, grid, doc) in real_records() {
        c.execute(
            "INSERT INTO records (id, kind, grid, doc, heads, seq, grid_since, updated_at_ms)
             VALUES ($1, $2, $3, $4, decode(repeat('00', 32), 'hex'), 3, 3, 5)",
            &[&id, &kind, &grid, &doc],
        )
        .unwrap();
    }
    drop(c);
    let s = old.open().unwrap();
    assert_rows_kept(&s);
    assert_query_rows_filled(&s);
    drop(s);
    let s = old.open().unwrap();
    assert_query_rows_filled(&s);
}
