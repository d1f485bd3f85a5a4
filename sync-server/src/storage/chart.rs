//! Storage of what the public grid chart (网格化管理公示牌) shows beyond grids and people:
//! the supervising body of a township-level grid and the published duties of a person.
//! Server-only data (phones never see it), written once over the [`Backend`] seam like
//! everything in [`super::layer`]; copied by export and import.

use super::layer::{Backend, SqlStorage};
use super::sql::{params, Insert, Row, Tx, Ty, Value};
use super::{DumpChunk, DumpSink, StorageResult, DUMP_CHUNK_ROWS};

/// The supervising body (监管单位/责任单位) of a grid as its chart publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridChartInfo {
    /// The grid's code.
    pub code: String,
    /// The body's name.
    pub agency: String,
    /// Its address (may be empty).
    pub agency_address: String,
    /// Its phone.
    pub agency_phone: String,
    /// Complaint and report line, e.g. 12316 (may be empty).
    pub complaint_phone: String,
    /// When it was last set.
    pub updated_at_ms: i64,
}

/// A person's published duties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonDuties {
    /// The person.
    pub person_id: String,
    /// The duties, as written by an administrator.
    pub duties: String,
    /// When they were last set.
    pub updated_at_ms: i64,
}

/// Grid chart storage; every [`super::Storage`] has it.
pub trait ChartStorage {
    /// The supervising body of a grid, if one was set.
    fn grid_chart(&self, code: &str) -> StorageResult<Option<GridChartInfo>>;
    /// Sets (inserts or replaces) the supervising body of a grid.
    fn set_grid_chart(&self, c: &GridChartInfo) -> StorageResult<()>;
    /// The duties set for these people (people without any are left out).
    fn person_duties(&self, person_ids: &[String]) -> StorageResult<Vec<PersonDuties>>;
    /// Sets a person's duties; `None` removes them (the chart shows the role's standard
    /// text again).
    fn set_person_duties(
        &self,
        person_id: &str,
        duties: Option<&str>,
        now_ms: i64,
    ) -> StorageResult<()>;
}

#[rustfmt::skip]
pub(super) const INS_GRID_CHARTS: Insert = Insert { table: "grid_charts", columns: &[("code", Ty::Text), ("agency", Ty::Text), ("agency_address", Ty::Text), ("agency_phone", Ty::Text), ("complaint_phone", Ty::Text), ("updated_at_ms", Ty::Int)], on_conflict: " ON CONFLICT (code) DO UPDATE SET agency = excluded.agency, agency_address = excluded.agency_address, agency_phone = excluded.agency_phone, complaint_phone = excluded.complaint_phone, updated_at_ms = excluded.updated_at_ms" };
#[rustfmt::skip]
pub(super) const INS_PERSON_DUTIES: Insert = Insert { table: "person_duties", columns: &[("person_id", Ty::Text), ("duties", Ty::Text), ("updated_at_ms", Ty::Int)], on_conflict: " ON CONFLICT (person_id) DO UPDATE SET duties = excluded.duties, updated_at_ms = excluded.updated_at_ms" };

const CHART_COLS: &str =
    "code, agency, agency_address, agency_phone, complaint_phone, updated_at_ms";
const DUTIES_COLS: &str = "person_id, duties, updated_at_ms";

fn chart_row(r: Row) -> StorageResult<GridChartInfo> {
    Ok(GridChartInfo {
        code: r.get(0)?,
        agency: r.get(1)?,
        agency_address: r.get(2)?,
        agency_phone: r.get(3)?,
        complaint_phone: r.get(4)?,
        updated_at_ms: r.get(5)?,
    })
}

fn duties_row(r: Row) -> StorageResult<PersonDuties> {
    Ok(PersonDuties {
        person_id: r.get(0)?,
        duties: r.get(1)?,
        updated_at_ms: r.get(2)?,
    })
}

fn chart_values(c: &GridChartInfo) -> Vec<Value<'_>> {
    vec![
        Value::Text(&c.code),
        Value::Text(&c.agency),
        Value::Text(&c.agency_address),
        Value::Text(&c.agency_phone),
        Value::Text(&c.complaint_phone),
        Value::Int(c.updated_at_ms),
    ]
}

fn duties_values(d: &PersonDuties) -> Vec<Value<'_>> {
    vec![
        Value::Text(&d.person_id),
        Value::Text(&d.duties),
        Value::Int(d.updated_at_ms),
    ]
}

/// Exports both tables (few rows: read whole, sent in chunks of [`DUMP_CHUNK_ROWS`]).
pub(super) fn export(tx: &mut dyn Tx, sink: &mut DumpSink<'_>) -> StorageResult<()> {
    let charts = tx.rows(
        "grid_charts",
        &format!("SELECT {CHART_COLS} FROM grid_charts ORDER BY code"),
        &[],
        chart_row,
    )?;
    for c in charts.chunks(DUMP_CHUNK_ROWS) {
        sink(DumpChunk::GridCharts(c.to_vec()))?;
    }
    let duties = tx.rows(
        "person_duties",
        &format!("SELECT {DUTIES_COLS} FROM person_duties ORDER BY person_id"),
        &[],
        duties_row,
    )?;
    for d in duties.chunks(DUMP_CHUNK_ROWS) {
        sink(DumpChunk::PersonDuties(d.to_vec()))?;
    }
    Ok(())
}

/// The insert and rows of an imported chunk of grid charts.
pub(super) fn import_charts(rows: &[GridChartInfo]) -> (&'static Insert, Vec<Vec<Value<'_>>>) {
    (&INS_GRID_CHARTS, rows.iter().map(chart_values).collect())
}

/// The insert and rows of an imported chunk of duties.
pub(super) fn import_duties(rows: &[PersonDuties]) -> (&'static Insert, Vec<Vec<Value<'_>>>) {
    (&INS_PERSON_DUTIES, rows.iter().map(duties_values).collect())
}

impl<B: Backend> ChartStorage for SqlStorage<B> {
    fn grid_chart(&self, code: &str) -> StorageResult<Option<GridChartInfo>> {
        self.backend().single(false, |tx| {
            tx.row(
                "grid_charts",
                &format!("SELECT {CHART_COLS} FROM grid_charts WHERE code = $1"),
                params![code],
                chart_row,
            )
        })
    }

    fn set_grid_chart(&self, c: &GridChartInfo) -> StorageResult<()> {
        self.backend()
            .write(|tx| tx.insert_rows(&INS_GRID_CHARTS, &[chart_values(c)]))
    }

    fn person_duties(&self, person_ids: &[String]) -> StorageResult<Vec<PersonDuties>> {
        if person_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = person_ids.iter().map(String::as_str).collect();
        self.backend().single(false, |tx| {
            tx.rows(
                "person_duties",
                &format!(
                    "SELECT {DUTIES_COLS} FROM person_duties WHERE person_id IN LIST($1) ORDER BY person_id"
                ),
                &[Value::TextList(&ids)],
                duties_row,
            )
        })
    }

    fn set_person_duties(
        &self,
        person_id: &str,
        duties: Option<&str>,
        now_ms: i64,
    ) -> StorageResult<()> {
        self.backend().write(|tx| match duties {
            Some(d) => tx.insert_rows(
                &INS_PERSON_DUTIES,
                &[duties_values(&PersonDuties {
                    person_id: person_id.to_string(),
                    duties: d.to_string(),
                    updated_at_ms: now_ms,
                })],
            ),
            None => tx
                .execute(
                    "DELETE FROM person_duties WHERE person_id = $1",
                    params![person_id],
                )
                .map(|_| ()),
        })
    }
}
