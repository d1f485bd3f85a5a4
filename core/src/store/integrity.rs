//! Integrity of the local store: SQLite's own checks, documents that load, and the query
//! tables (`producers`, `visits`, `templates`) compared with the documents they derive from;
//! rebuilding the query tables from the documents.
//!
//! Three levels:
//! - at open, [`IntegrityLevel::Open`] runs in the background on a connection of its own:
//!   `PRAGMA quick_check` and the row counts of every query table and of each of their
//!   indexes against the records; a failure rebuilds the query tables at once;
//! - [`IntegrityLevel::Quick`]: the same plus a random sample of rows compared value by
//!   value with their documents;
//! - [`IntegrityLevel::Full`]: `PRAGMA integrity_check` (which also compares every index
//!   entry with its table row), every document loaded (one that fails is set aside, and
//!   asked for in full at the next sync) and every row compared.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::columns::checked;
use super::documents::{load_doc, mark_corrupt, materialize, row_values};
use super::Store;
use crate::error::BadRow;
use crate::model::{Record, RecordKind};
use crate::{Error, Result};

/// How much a check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntegrityLevel {
    /// What runs when the store opens: `quick_check` and row counts (no document is loaded).
    Open,
    /// `quick_check`, row counts and a sample of rows compared with their documents.
    Quick,
    /// `integrity_check`, every document loaded and every row compared.
    Full,
}

impl IntegrityLevel {
    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrityLevel::Open => "open",
            IntegrityLevel::Quick => "quick",
            IntegrityLevel::Full => "full",
        }
    }
}

/// What a check found and, when asked to repair, what the repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityReport {
    /// The level run (`open`, `quick` or `full`).
    pub level: String,
    /// Problems SQLite's own check reported (empty when it said `ok`).
    pub sqlite: Vec<String>,
    /// Query-table rows that disagree with the documents (counts, values, indexes).
    pub tables: Vec<String>,
    /// Records whose document failed to load during this check (set aside; the next sync
    /// asks the server for them).
    pub corrupt_found: Vec<(String, String)>,
    /// Documents loaded and compared.
    pub documents_checked: u64,
    /// Whether the query tables were rebuilt from the documents.
    pub rebuilt: bool,
    /// Whether the database was also rewritten (`VACUUM`) because problems remained.
    pub vacuumed: bool,
    /// Problems left after the repair (empty when it worked or none was needed).
    pub remaining: Vec<String>,
    /// Time taken, milliseconds.
    pub elapsed_ms: u64,
}

impl IntegrityReport {
    /// Whether the check found nothing wrong in SQLite's structures or the query tables
    /// (documents found corrupt are reported separately and heal at the next sync).
    pub fn found_problems(&self) -> bool {
        !self.sqlite.is_empty() || !self.tables.is_empty()
    }

    /// Whether anything is still wrong after the repair.
    pub fn is_ok_now(&self) -> bool {
        if self.rebuilt {
            self.remaining.is_empty()
        } else {
            !self.found_problems()
        }
    }
}

/// Most problems kept from one SQLite check.
const MAX_SQLITE_PROBLEMS: u32 = 100;
/// Most table problems listed one by one (the rest are counted).
const MAX_TABLE_PROBLEMS: usize = 100;
/// Rows compared with their documents by a quick check.
const QUICK_SAMPLE: u32 = 64;

/// The open-time check: running in the background, or its result.
#[derive(Debug, Default)]
pub(crate) struct OpenCheck {
    pub(crate) running: Option<std::thread::JoinHandle<Option<IntegrityReport>>>,
    pub(crate) done: Option<IntegrityReport>,
}

impl Store {
    /// Checks the store at `level`; with `repair`, rebuilds the query tables from the
    /// documents when SQLite's check or the comparison found a problem (and rewrites the
    /// database with `VACUUM` if problems remain), then checks again.
    pub fn check_integrity(&self, level: IntegrityLevel, repair: bool) -> Result<IntegrityReport> {
        let mut conn = self.lock();
        let report = check_and_repair(&mut conn, level, repair)?;
        drop(conn);
        if report.rebuilt {
            self.templates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
        Ok(report)
    }

    /// Rebuilds the query tables from the documents (on demand). Returns the number of
    /// records materialized; documents that fail to load are set aside.
    pub fn rebuild_query_tables(&self) -> Result<u64> {
        let mut conn = self.lock();
        let (n, _) = rebuild(&mut conn)?;
        Ok(n)
    }

    /// The result of the check run when the store was opened, waiting for it if it still
    /// runs (`None` for an in-memory store, or if the check could not run at all).
    pub fn open_check(&self) -> Option<IntegrityReport> {
        let mut oc = self.open_check.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = oc.running.take() {
            oc.done = h.join().ok().flatten();
        }
        oc.done.clone()
    }
}

/// Starts the open-time check of the file at `path` on a thread of its own.
pub(crate) fn spawn_open_check(
    path: PathBuf,
) -> Option<std::thread::JoinHandle<Option<IntegrityReport>>> {
    std::thread::Builder::new()
        .name("gridsync-open-check".into())
        .spawn(move || match open_check_file(&path) {
            Ok(r) => {
                if r.found_problems() {
                    tracing::warn!(
                        sqlite = ?r.sqlite,
                        tables = ?r.tables,
                        rebuilt = r.rebuilt,
                        remaining = ?r.remaining,
                        "integrity check at open found problems"
                    );
                }
                Some(r)
            }
            Err(e) => {
                tracing::warn!("integrity check at open could not run: {e}");
                None
            }
        })
        .ok()
}

fn open_check_file(path: &Path) -> Result<IntegrityReport> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    check_and_repair(&mut conn, IntegrityLevel::Open, true)
}

/// Runs a check and, if asked and needed, the repair and a second check.
pub(crate) fn check_and_repair(
    conn: &mut Connection,
    level: IntegrityLevel,
    repair: bool,
) -> Result<IntegrityReport> {
    let start = Instant::now();
    let mut report = check(conn, level)?;
    if repair && report.found_problems() {
        let (_, corrupt) = rebuild(conn)?;
        report.corrupt_found.extend(corrupt);
        report.rebuilt = true;
        let mut after = check(conn, level)?;
        if after.found_problems() {
            conn.execute_batch("VACUUM")?;
            report.vacuumed = true;
            after = check(conn, level)?;
        }
        report.remaining = after.sqlite.into_iter().chain(after.tables).collect();
    }
    report.elapsed_ms = start.elapsed().as_millis() as u64;
    Ok(report)
}

/// One check without repair.
fn check(conn: &Connection, level: IntegrityLevel) -> Result<IntegrityReport> {
    let mut report = IntegrityReport {
        level: level.as_str().into(),
        ..IntegrityReport::default()
    };
    // At open the store's own connection may write meanwhile: read one snapshot.
    let snapshot = if level == IntegrityLevel::Open {
        Some(conn.unchecked_transaction()?)
    } else {
        None
    };
    report.sqlite = sqlite_check(conn, level == IntegrityLevel::Full);
    let mut problems = Problems::default();
    // The counts read the tables: a damaged page can fail them; that is a finding too.
    if let Err(e) = compare_counts(conn, &mut problems) {
        problems.push(format!("counting the query tables failed: {e}"));
    }
    if level != IntegrityLevel::Open {
        let sample = (level == IntegrityLevel::Quick).then_some(QUICK_SAMPLE);
        match compare_rows(conn, sample, &mut problems) {
            Ok((checked, corrupt)) => {
                report.documents_checked = checked;
                report.corrupt_found = corrupt;
            }
            Err(e) => problems.push(format!("comparing rows with documents failed: {e}")),
        }
    }
    report.tables = problems.finish();
    drop(snapshot);
    Ok(report)
}

/// Problems listed up to a limit, the rest counted.
#[derive(Default)]
struct Problems {
    list: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, p: String) {
        if self.list.len() < MAX_TABLE_PROBLEMS {
            self.list.push(p);
        } else {
            self.more += 1;
        }
    }
    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list.push(format!("... and {} more", self.more));
        }
        self.list
    }
}

/// `PRAGMA quick_check` or `integrity_check`: the problems it lists (empty for `ok`).
fn sqlite_check(conn: &Connection, full: bool) -> Vec<String> {
    let pragma = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare(&format!("PRAGMA {pragma}({MAX_SQLITE_PROBLEMS})"))?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    };
    match run() {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Vec::new(),
        Ok(rows) => rows,
        Err(e) => vec![format!("{pragma} failed: {e}")],
    }
}

/// What each query table and each of its indexes must count: (what, count query).
const COUNTS: &[(RecordKind, &str, &str)] = &[
    (
        RecordKind::Producer,
        "producers",
        "SELECT COUNT(*) FROM producers NOT INDEXED",
    ),
    (
        RecordKind::Producer,
        "producers by id",
        "SELECT COUNT(*) FROM producers INDEXED BY sqlite_autoindex_producers_1 WHERE id >= ''",
    ),
    (
        RecordKind::Producer,
        "producers by grid and name (index producers_grid_name)",
        "SELECT COUNT(*) FROM producers INDEXED BY producers_grid_name WHERE grid >= ''",
    ),
    (
        RecordKind::Producer,
        "producers by status (index producers_due)",
        "SELECT COUNT(*) FROM producers INDEXED BY producers_due WHERE status >= ''",
    ),
    (
        RecordKind::Producer,
        "producers by grid and confirmed year (index producers_confirmed)",
        "SELECT COUNT(*) FROM producers INDEXED BY producers_confirmed WHERE grid >= ''",
    ),
    (
        RecordKind::Visit,
        "visits",
        "SELECT COUNT(*) FROM visits NOT INDEXED",
    ),
    (
        RecordKind::Visit,
        "visits by id",
        "SELECT COUNT(*) FROM visits INDEXED BY sqlite_autoindex_visits_1 WHERE id >= ''",
    ),
    (
        RecordKind::Visit,
        "visits by producer (index visits_producer)",
        "SELECT COUNT(*) FROM visits INDEXED BY visits_producer WHERE producer_id >= ''",
    ),
    (
        RecordKind::Template,
        "templates",
        "SELECT COUNT(*) FROM templates NOT INDEXED",
    ),
    (
        RecordKind::Template,
        "templates by id",
        "SELECT COUNT(*) FROM templates INDEXED BY sqlite_autoindex_templates_1 WHERE id >= ''",
    ),
];

/// Row counts of the query tables and of their indexes against the readable records, the
/// open-rectification index against its table, and every producer's last visit.
fn compare_counts(conn: &Connection, problems: &mut Problems) -> Result<()> {
    for (kind, what, sql) in COUNTS {
        let want: i64 = conn.query_row(
            "SELECT COUNT(*) FROM records NOT INDEXED WHERE kind = ?1 AND corrupt IS NULL",
            [kind],
            |r| r.get(0),
        )?;
        match conn.query_row(sql, [], |r| r.get::<_, i64>(0)) {
            Ok(n) if n == want => {}
            Ok(n) => problems.push(format!(
                "{what}: {n} rows, {want} {} records",
                kind.as_str()
            )),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    let table: i64 = conn.query_row(
        "SELECT COUNT(*) FROM visits NOT INDEXED WHERE rect_open = 1",
        [],
        |r| r.get(0),
    )?;
    let index: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM visits INDEXED BY visits_rect WHERE rect_open = 1",
            [],
            |r| r.get(0),
        )
        .unwrap_or(-1);
    if table != index {
        problems.push(format!(
            "open rectifications (index visits_rect): {index} rows, {table} in the table"
        ));
    }
    let stale: i64 = conn.query_row(
        "WITH m AS (SELECT producer_id, MAX(started_at_ms) AS mx FROM visits NOT INDEXED GROUP BY producer_id)
         SELECT COUNT(*) FROM producers p NOT INDEXED LEFT JOIN m ON m.producer_id = p.id
         WHERE p.last_visit_ms IS NOT m.mx",
        [],
        |r| r.get(0),
    )?;
    if stale > 0 {
        problems.push(format!(
            "producers: {stale} with a last visit that differs from their visits"
        ));
    }
    Ok(())
}

/// The table, key column list and columns compared for a record kind (`None`: a kind
/// without a query table).
fn table_of(kind: RecordKind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        RecordKind::Producer => (
            "producers",
            "id, grid, name, owner, phone, producer_type, status, review_state, risk, updated_at_ms, confirmed_year, dup_credit_code, dup_id_number, dup_phone, name_core, merged_into",
        ),
        RecordKind::Visit => (
            "visits",
            "id, producer_id, grid, inspector, started_at_ms, status, rect_open, rect_deadline, rect_notice",
        ),
        RecordKind::Template => ("templates", "id, template_id, version, grid"),
        RecordKind::Acceptance => return None,
    })
}

/// Compares rows with their documents: every record, or a random `sample`. A document
/// that fails to load is set aside (its rows removed) and returned.
fn compare_rows(
    conn: &Connection,
    sample: Option<u32>,
    problems: &mut Problems,
) -> Result<(u64, Vec<(String, String)>)> {
    // A kind that does not read sets the record aside like a document that does not load:
    // the server's copy replaces it at the next sync.
    let ids: Vec<(String, Result<RecordKind, BadRow>)> = {
        let sql = match sample {
            Some(n) => format!(
                "SELECT id, kind FROM records NOT INDEXED WHERE corrupt IS NULL ORDER BY random() LIMIT {n}"
            ),
            None => "SELECT id, kind FROM records NOT INDEXED WHERE corrupt IS NULL".to_string(),
        };
        let mut st = conn.prepare(&sql)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, kind_column(r)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut checked = 0;
    let mut corrupt = Vec::new();
    for (id, kind) in ids {
        let kind = match kind {
            Ok(k) => k,
            Err(bad) => {
                let detail = bad.to_string();
                set_aside_in(conn, &id, &detail)?;
                corrupt.push((id, detail));
                continue;
            }
        };
        let rec = match load_doc(conn, &id) {
            Ok(Some(d)) => d.read()?,
            Ok(None) => continue,
            Err(Error::Corrupt { id, detail }) => {
                set_aside_in(conn, &id, &detail)?;
                corrupt.push((id, detail));
                continue;
            }
            Err(e) => return Err(e),
        };
        checked += 1;
        if kind != rec.kind() {
            problems.push(format!(
                "record {id}: stored as a {} but its document is a {}",
                kind.as_str(),
                rec.kind().as_str()
            ));
        }
        let Some((table, cols)) = table_of(rec.kind()) else {
            continue;
        };
        let want = row_values(&rec);
        let n = want.len();
        let got: Option<Vec<Value>> = conn
            .prepare_cached(&format!("SELECT {cols} FROM {table} WHERE id = ?1"))?
            .query_row([&id], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
            .optional()?;
        match got {
            None => problems.push(format!("{table}: no row for record {id}")),
            Some(got) if !same_row(&got, &want) => {
                let names: Vec<&str> = cols.split(", ").collect();
                let differ: Vec<&str> = (0..n)
                    .filter(|&i| !same_value(&got[i], &want[i]))
                    .map(|i| names.get(i).copied().unwrap_or("?"))
                    .collect();
                problems.push(format!(
                    "{table}: row {id} differs from its document in {}",
                    differ.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    Ok((checked, corrupt))
}

/// The `kind` (column 1) of a `records` row keyed by its id (column 0); a value that does
/// not read is the inner `Err`.
fn kind_column(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RecordKind, BadRow>> {
    checked(r, 1, "records", 0)
}

fn same_row(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
}

/// Values equal as SQLite stores them (booleans and integers are both integers).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(x), Value::Real(y)) | (Value::Real(y), Value::Integer(x)) => {
            (*x as f64) == *y
        }
        _ => a == b,
    }
}

/// Marks a record corrupt and removes its query rows (the connection is the store's or a
/// checker's own; runs in its own statement-level transaction).
fn set_aside_in(conn: &Connection, id: &str, detail: &str) -> Result<()> {
    tracing::warn!(record = id, "record set aside by a check: {detail}");
    mark_corrupt(conn, id, detail)
}

/// Drops the query tables and their indexes, creates them again as the schema defines
/// them, materializes every record that loads (setting aside those that do not) and
/// rebuilds every other index (`REINDEX`). One transaction: all or nothing.
/// Returns (records materialized, records set aside).
pub(crate) fn rebuild(conn: &mut Connection) -> Result<(u64, Vec<(String, String)>)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ddl: Vec<String> = {
        let mut st = tx.prepare(
            "SELECT sql FROM sqlite_master
             WHERE tbl_name IN ('producers', 'visits', 'templates') AND sql IS NOT NULL
             ORDER BY type = 'index', rowid",
        )?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let tables = ddl.iter().filter(|s| s.starts_with("CREATE TABLE")).count();
    if tables != 3 {
        return Err(Error::Document(format!(
            "the schema names {tables} of the 3 query tables; cannot rebuild them"
        )));
    }
    tx.execute_batch("DROP TABLE producers; DROP TABLE visits; DROP TABLE templates;")?;
    for sql in &ddl {
        tx.execute_batch(sql)?;
    }
    let ids: Vec<(String, Result<RecordKind, BadRow>)> = {
        let mut st =
            tx.prepare("SELECT id, kind FROM records WHERE corrupt IS NULL ORDER BY id")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, kind_column(r)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut n = 0;
    let mut corrupt = Vec::new();
    // Visits first, so that each producer's last visit is computed from its visits.
    let mut producers: Vec<Record> = Vec::new();
    for (id, kind) in ids {
        // A record whose kind does not read is set aside like one whose document does not
        // load (it counts as no kind, so the query tables could never match the records).
        let loaded = match kind {
            Ok(_) => load_doc(&tx, &id),
            Err(bad) => Err(Error::Corrupt {
                id: id.clone(),
                detail: bad.to_string(),
            }),
        };
        match loaded {
            Ok(Some(d)) => match d.read()? {
                p @ Record::Producer(_) => producers.push(p),
                other => {
                    materialize(&tx, &other)?;
                    n += 1;
                }
            },
            Ok(None) => {}
            Err(Error::Corrupt { id, detail }) => {
                tx.execute(
                    "UPDATE records SET corrupt = ?2 WHERE id = ?1",
                    params![id, detail],
                )?;
                corrupt.push((id, detail));
            }
            Err(e) => return Err(e),
        }
    }
    for p in &producers {
        materialize(&tx, p)?;
        n += 1;
    }
    tx.execute_batch("REINDEX")?;
    tx.commit()?;
    tracing::info!(
        records = n,
        set_aside = corrupt.len(),
        "query tables rebuilt"
    );
    Ok((n, corrupt))
}
