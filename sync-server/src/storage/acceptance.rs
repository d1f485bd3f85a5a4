//! The query table of township acceptance (达标验收), `q_acceptances`: one row per township
//! and year, the decision its record holds now. Written by [`super::query::materialize`] in
//! the transaction of every accepted push (and of imports and rebuilds), read by the
//! compliance report (`reports/compliance.rs`) for an explicit list of grids.

use gridsync_core::model::{Acceptance, AcceptanceDecision};

use super::sql::{params, Insert, Row, Tx, Ty, Value};
use super::{StorageError, StorageResult};

/// A township's acceptance decision for a year, as its query row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptanceRow {
    /// Record id (`acc:{grid}:{year}`).
    pub id: String,
    /// The township-level grid.
    pub grid: String,
    /// The year decided on.
    pub year: i32,
    /// The decision.
    pub decision: AcceptanceDecision,
    /// When, `YYYY-MM-DD`.
    pub decided_on: String,
    /// Who (person id).
    pub decided_by: String,
    /// The basis.
    pub note: String,
    /// Last edit of the record.
    pub updated_at_ms: i64,
}

const INS_Q_ACCEPTANCES: Insert = Insert {
    table: "q_acceptances",
    columns: &[
        ("id", Ty::Text),
        ("grid", Ty::Text),
        ("year", Ty::Int),
        ("decision", Ty::Text),
        ("decided_on", Ty::Text),
        ("decided_by", Ty::Text),
        ("note", Ty::Text),
        ("updated_at_ms", Ty::Int),
    ],
    on_conflict: " ON CONFLICT (id) DO UPDATE SET grid = excluded.grid, year = excluded.year, \
        decision = excluded.decision, decided_on = excluded.decided_on, \
        decided_by = excluded.decided_by, note = excluded.note, \
        updated_at_ms = excluded.updated_at_ms",
};

const COLS: &str = "id, grid, year, decision, decided_on, decided_by, note, updated_at_ms";

/// Writes the rows of `acceptances` (upserts by id).
pub(crate) fn write(tx: &mut dyn Tx, acceptances: &[&Acceptance]) -> StorageResult<()> {
    if acceptances.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<Value<'_>>> = acceptances
        .iter()
        .map(|a| {
            vec![
                Value::Text(&a.id),
                Value::Text(&a.grid),
                Value::Int(i64::from(a.year)),
                Value::Text(a.decision.as_str()),
                Value::Text(&a.decided_on),
                Value::Text(&a.decided_by),
                Value::Text(&a.note),
                Value::Int(a.updated_at_ms),
            ]
        })
        .collect();
    tx.insert_rows(&INS_Q_ACCEPTANCES, &rows)
}

/// Deletes the rows of the records `ids` (a rebuild rewrites them from the documents).
pub(crate) fn delete(tx: &mut dyn Tx, ids: &[&str]) -> StorageResult<()> {
    if !ids.is_empty() {
        tx.execute(
            "DELETE FROM q_acceptances WHERE id IN LIST($1)",
            params![ids],
        )?;
    }
    Ok(())
}

/// Deletes at most `limit` rows whose record is gone or of another kind; returns how many.
pub(crate) fn delete_orphans(tx: &mut dyn Tx, limit: i64) -> StorageResult<u64> {
    let gone: Vec<String> = tx.rows(
        "q_acceptances",
        "SELECT q.id FROM q_acceptances q WHERE NOT EXISTS
            (SELECT 1 FROM records r WHERE r.id = q.id AND r.kind = 'acceptance') LIMIT $1",
        params![limit],
        |r| r.get(0),
    )?;
    let ids: Vec<&str> = gone.iter().map(String::as_str).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    tx.execute(
        "DELETE FROM q_acceptances WHERE id IN LIST($1)",
        params![ids.as_slice()],
    )
}

fn row(r: Row) -> StorageResult<AcceptanceRow> {
    let year: i64 = r.get(2)?;
    let decision: String = r.get(3)?;
    let id: String = r.get(0)?;
    let bad = |what: String| StorageError::BadRow(format!("q_acceptances row {id}: {what}"));
    Ok(AcceptanceRow {
        grid: r.get(1)?,
        year: i32::try_from(year).map_err(|_| bad(format!("year: {year} is out of range")))?,
        decision: AcceptanceDecision::parse(&decision)
            .ok_or_else(|| bad(format!("decision: '{decision}' is not a decision")))?,
        decided_on: r.get(4)?,
        decided_by: r.get(5)?,
        note: r.get(6)?,
        updated_at_ms: r.get(7)?,
        id,
    })
}

/// The rows of `grids` for years up to `up_to_year`, by grid and year.
pub(crate) fn rows_of(
    tx: &mut dyn Tx,
    grids: &[&str],
    up_to_year: i32,
) -> StorageResult<Vec<AcceptanceRow>> {
    tx.rows(
        "q_acceptances",
        &format!(
            "SELECT {COLS} FROM q_acceptances WHERE grid IN LIST($1) AND year <= $2 ORDER BY grid, year"
        ),
        params![grids, i64::from(up_to_year)],
        row,
    )
}

/// Every row, by id (tests and checks).
pub(crate) fn all(tx: &mut dyn Tx) -> StorageResult<Vec<AcceptanceRow>> {
    tx.rows(
        "q_acceptances",
        &format!("SELECT {COLS} FROM q_acceptances ORDER BY id"),
        &[],
        row,
    )
}
