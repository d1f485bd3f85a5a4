//! Batched reads of the query tables for exports (`reports::export`): every row of a list
//! of grids, however many, with bounded memory.
//!
//! The page queries stop at [`super::query::MAX_PAGE`] rows and page by `OFFSET`, which
//! costs more with every page. An export instead walks one grid at a time by key (keyset
//! batches of [`EXPORT_BATCH`] rows on the index of the grid's rows), each batch in a read
//! of its own: no connection or snapshot is held while the rows are written out, however
//! slowly the receiver takes them, and memory holds one batch. Rows are not one snapshot:
//! a row edited while an export runs appears once, as it was when its batch was read.
//! Written once over [`Tx`] and so the same on both backends.

use super::layer::Backend;
use super::query::{producer_row, visit_row, PRODUCER_COLS, VISIT_COLS};
use super::sql::{Tx, Value};
use super::{ProducerRow, StorageResult, VisitRow};
use gridsync_core::model::VisitStatus;

/// Rows read per batch of an export.
pub const EXPORT_BATCH: i64 = 1000;

/// A period of time: `[from_ms, to_ms)`, either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// At or after.
    pub from_ms: Option<i64>,
    /// Before.
    pub to_ms: Option<i64>,
}

impl Period {
    fn bounds(self) -> (i64, i64) {
        (
            self.from_ms.unwrap_or(i64::MIN),
            self.to_ms.unwrap_or(i64::MAX),
        )
    }
}

/// A visit as an export lists it: its row and its producer's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitExportRow {
    /// The visit (and its rectification).
    pub visit: VisitRow,
    /// The producer's name (empty when the producer has no row).
    pub producer_name: String,
}

/// What one person did in some grids during a period, counted from the query tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityRow {
    /// Person id.
    pub person_id: String,
    /// Visits they made (started in the period).
    pub visits: i64,
    /// Of which completed.
    pub completed_visits: i64,
    /// Findings recorded on those visits.
    pub findings: i64,
    /// Serious ones.
    pub serious_findings: i64,
    /// Rapid tests recorded on those visits.
    pub rapid_tests: i64,
    /// Failed ones.
    pub failed_tests: i64,
    /// Rectifications those visits ordered.
    pub rectifications: i64,
    /// Review steps they took (submit, approve, return) in the period.
    pub review_steps: i64,
    /// Producers they registered in the period.
    pub producers_registered: i64,
}

/// Every producer of `grids`, grid by grid in the order given and by name (then id)
/// within a grid, handed to `each` batch by batch. An error of `each` stops the walk.
pub(crate) fn for_each_producer<B: Backend>(
    backend: &B,
    grids: &[String],
    each: &mut dyn FnMut(ProducerRow) -> StorageResult<()>,
) -> StorageResult<()> {
    let sql = format!(
        "SELECT {PRODUCER_COLS} FROM q_producers
         WHERE grid = $1 AND merged_into IS NULL AND (name > $2 OR (name = $2 AND id > $3))
         ORDER BY name, id LIMIT $4"
    );
    for grid in grids {
        let (mut name, mut id) = (String::new(), String::new());
        loop {
            let batch = backend.read(|tx| {
                tx.rows(
                    "q_producers",
                    &sql,
                    &[
                        Value::Text(grid),
                        Value::Text(&name),
                        Value::Text(&id),
                        Value::Int(EXPORT_BATCH),
                    ],
                    producer_row,
                )
            })?;
            let full = batch.len() as i64 == EXPORT_BATCH;
            if let Some(last) = batch.last() {
                name.clone_from(&last.name);
                id.clone_from(&last.id);
            }
            for row in batch {
                each(row)?;
            }
            if !full {
                break;
            }
        }
    }
    Ok(())
}

/// Which visits an export walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitSet {
    /// Every visit.
    All,
    /// Visits that ordered a rectification.
    Rectifications,
    /// Visits with at least one rapid test.
    WithTests,
}

/// Every visit of `grids` started in `period` (of the set `which`), grid by grid in the
/// order given and oldest first within a grid, with the producer's name, handed to `each`
/// batch by batch.
pub(crate) fn for_each_visit<B: Backend>(
    backend: &B,
    grids: &[String],
    period: Period,
    which: VisitSet,
    each: &mut dyn FnMut(VisitExportRow) -> StorageResult<()>,
) -> StorageResult<()> {
    let cols: Vec<String> = VISIT_COLS.split(", ").map(|c| format!("v.{c}")).collect();
    let sql = format!(
        "SELECT {}, COALESCE(p.name, '')
         FROM q_visits v LEFT JOIN q_producers p ON p.id = v.producer_id
         WHERE v.grid = $1 AND v.started_at_ms >= $2 AND v.started_at_ms < $3
           AND (v.started_at_ms > $4 OR (v.started_at_ms = $4 AND v.id > $5)){}
         ORDER BY v.started_at_ms, v.id LIMIT $6",
        cols.join(", "),
        match which {
            VisitSet::All => "",
            VisitSet::Rectifications => " AND v.rect_required = TRUE",
            VisitSet::WithTests => " AND v.rapid_tests > 0",
        }
    );
    let (from, to) = period.bounds();
    for grid in grids {
        let (mut at, mut id) = (i64::MIN, String::new());
        loop {
            let batch = backend.read(|tx| {
                tx.rows(
                    "q_visits",
                    &sql,
                    &[
                        Value::Text(grid),
                        Value::Int(from),
                        Value::Int(to),
                        Value::Int(at),
                        Value::Text(&id),
                        Value::Int(EXPORT_BATCH),
                    ],
                    |r| {
                        Ok(VisitExportRow {
                            visit: visit_row(&r)?,
                            producer_name: r.get(19)?,
                        })
                    },
                )
            })?;
            let full = batch.len() as i64 == EXPORT_BATCH;
            if let Some(last) = batch.last() {
                at = last.visit.started_at_ms;
                id.clone_from(&last.visit.id);
            }
            for row in batch {
                each(row)?;
            }
            if !full {
                break;
            }
        }
    }
    Ok(())
}

/// Per person: visits, findings, tests and rectifications of visits started in `period`
/// in `grids`; review steps taken and producers registered there in `period`. One row per
/// person with any of them, sorted by person id.
pub(crate) fn activity<B: Backend>(
    backend: &B,
    grids: &[String],
    period: Period,
) -> StorageResult<Vec<ActivityRow>> {
    let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
    let (from, to) = period.bounds();
    backend.read(|tx| activity_in(tx, &grids, from, to))
}

fn activity_in(
    tx: &mut dyn Tx,
    grids: &[&str],
    from: i64,
    to: i64,
) -> StorageResult<Vec<ActivityRow>> {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<String, ActivityRow> = BTreeMap::new();
    let sum = |c: &str| format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)");
    let visits_sql = format!(
        "SELECT inspector, COUNT(*), {}, {}, {}, {}, {},
                {}
         FROM q_visits
         WHERE grid IN LIST($1) AND started_at_ms >= $2 AND started_at_ms < $3
         GROUP BY inspector",
        sum("CASE WHEN status = $4 THEN 1 ELSE 0 END"),
        sum("findings"),
        sum("serious_findings"),
        sum("rapid_tests"),
        sum("failed_tests"),
        sum("CASE WHEN rect_required THEN 1 ELSE 0 END"),
    );
    tx.query(
        "q_visits",
        &visits_sql,
        &[
            Value::TextList(grids),
            Value::Int(from),
            Value::Int(to),
            Value::from(VisitStatus::Completed),
        ],
        &mut |r| {
            let id: String = r.get(0)?;
            let a = by.entry(id.clone()).or_default();
            a.person_id = id;
            a.visits = r.get(1)?;
            a.completed_visits = r.get(2)?;
            a.findings = r.get(3)?;
            a.serious_findings = r.get(4)?;
            a.rapid_tests = r.get(5)?;
            a.failed_tests = r.get(6)?;
            a.rectifications = r.get(7)?;
            Ok(())
        },
    )?;
    tx.query(
        "q_reviews",
        "SELECT by_person, COUNT(*) FROM q_reviews
         WHERE grid IN LIST($1) AND at_ms >= $2 AND at_ms < $3
         GROUP BY by_person",
        &[Value::TextList(grids), Value::Int(from), Value::Int(to)],
        &mut |r| {
            let id: String = r.get(0)?;
            let a = by.entry(id.clone()).or_default();
            a.person_id = id;
            a.review_steps = r.get(1)?;
            Ok(())
        },
    )?;
    tx.query(
        "q_producers",
        "SELECT created_by, COUNT(*) FROM q_producers
         WHERE grid IN LIST($1) AND created_at_ms >= $2 AND created_at_ms < $3
         GROUP BY created_by",
        &[Value::TextList(grids), Value::Int(from), Value::Int(to)],
        &mut |r| {
            let id: String = r.get(0)?;
            let a = by.entry(id.clone()).or_default();
            a.person_id = id;
            a.producers_registered = r.get(1)?;
            Ok(())
        },
    )?;
    Ok(by.into_values().collect())
}
