//! Query tables: materialized rows of producers (`q_producers`), their review steps
//! (`q_reviews`), visits with their rectifications (`q_visits`) and the visits' rapid tests
//! (`q_tests`) and findings (`q_findings`), for the desk console's pages and figures. Written once over [`Tx`] like the rest of `layer.rs`:
//!
//! - [`materialize`] writes the rows of records in the transaction that stores them (each
//!   accepted push, with the [`Record`] the push logic already read; each imported chunk
//!   of records);
//! - [`rebuild_batch`] and [`delete_orphans`] rebuild every row from the stored documents
//!   in bounded batches (`admin rebuild-query-tables`, and the first start after the
//!   migration that created the tables);
//! - the page queries ([`directory_sql`] and the others) are bounded (at most
//!   [`MAX_PAGE`] rows, `LIMIT`/`OFFSET`) and each runs on an index of its table, for an
//!   explicit list of grids (the caller expands a subtree, e.g. with
//!   [`super::Storage::grid_subtree`]).
//!
//! Templates have no query rows. The rows are derived data: a document that does not read
//! has none (the rebuild reports it).

use std::collections::BTreeSet;

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    Producer, ProducerStatus, ProducerType, Record, RecordKind, ReviewAction, ReviewState,
    RiskLevel, Severity, Verdict, Visit, VisitStatus,
};

use super::sql::{params, Row, Tx, Value};
use super::{StorageError, StorageResult};

/// The most rows one page returns.
pub const MAX_PAGE: u32 = 200;

/// Records decoded per batch of a rebuild (bounds its memory: one batch of documents).
pub const REBUILD_BATCH: usize = 256;

/// Whether accepted pushes write query rows. `GRIDSYNC_NO_QUERY_TABLES=1` turns it off, for
/// the ingest benchmark's comparison only: the tables are then stale until
/// `admin rebuild-query-tables`.
pub fn query_tables_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        !std::env::var("GRIDSYNC_NO_QUERY_TABLES").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

/// Which rows of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageReq {
    /// Rows wanted (at most [`MAX_PAGE`]; more is refused).
    pub limit: u32,
    /// Rows skipped.
    pub offset: u32,
}

impl PageReq {
    /// The first `limit` rows.
    pub fn first(limit: u32) -> Self {
        PageReq { limit, offset: 0 }
    }

    fn check(self) -> StorageResult<(i64, i64)> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(StorageError::Invalid(format!(
                "page size {}: 1 to {MAX_PAGE} rows",
                self.limit
            )));
        }
        // One row more than asked says whether more follow.
        Ok((i64::from(self.limit) + 1, i64::from(self.offset)))
    }
}

/// One page of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, in the query's order.
    pub rows: Vec<T>,
    /// Whether rows follow this page.
    pub more: bool,
}

/// A producer as its query row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRow {
    /// Record id.
    pub id: String,
    /// Grid.
    pub grid: String,
    /// Name.
    pub name: String,
    /// Legal representative or owner.
    pub owner: String,
    /// Phone.
    pub phone: String,
    /// Unified social credit code.
    pub credit_code: Option<String>,
    /// ID number.
    pub id_number: Option<String>,
    /// Type.
    pub producer_type: ProducerType,
    /// Active or closed.
    pub status: ProducerStatus,
    /// Effective review state ([`Producer::effective_review_state`]).
    pub review_state: ReviewState,
    /// When the last review step was taken.
    pub review_at_ms: Option<i64>,
    /// Risk grade.
    pub risk: RiskLevel,
    /// Who registered it.
    pub created_by: String,
    /// When.
    pub created_at_ms: i64,
    /// Last edit.
    pub updated_at_ms: i64,
    /// Start of its latest visit.
    pub last_visit_ms: Option<i64>,
    /// A herd at or above a livestock scale threshold of its league
    /// ([`gridsync_core::scale::assess`]).
    pub scale_farm: bool,
    /// Such a herd under a type that is not a farm (散户 and the like).
    pub scale_mismatch: bool,
}

/// One step of a producer's review history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    /// Producer.
    pub producer_id: String,
    /// Position in the history (0 = oldest).
    pub step: i64,
    /// The history entry's id.
    pub event_id: String,
    /// The producer's grid.
    pub grid: String,
    /// Action ([`ReviewAction::as_str`]).
    pub action: String,
    /// Person who took the step.
    pub by: String,
    /// When.
    pub at_ms: i64,
    /// State after the step.
    pub state_after: ReviewState,
    /// Reason of a return.
    pub reason: Option<String>,
}

/// A visit (and the rectification it ordered) as its query row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitRow {
    /// Record id.
    pub id: String,
    /// Producer visited.
    pub producer_id: String,
    /// Grid.
    pub grid: String,
    /// Inspector (person id).
    pub inspector: String,
    /// Start.
    pub started_at_ms: i64,
    /// End.
    pub ended_at_ms: Option<i64>,
    /// Draft or completed.
    pub status: VisitStatus,
    /// Findings recorded.
    pub findings: i64,
    /// Findings of severity serious.
    pub serious_findings: i64,
    /// Rapid tests.
    pub rapid_tests: i64,
    /// Rapid tests that failed.
    pub failed_tests: i64,
    /// When it was reviewed.
    pub reviewed_at_ms: Option<i64>,
    /// The visit it follows up.
    pub follow_up_of: Option<String>,
    /// Whether a rectification is required.
    pub rect_required: bool,
    /// Whether it is required and not resolved.
    pub rect_open: bool,
    /// Its deadline (`YYYY-MM-DD`).
    pub rect_deadline: Option<String>,
    /// Its notice number.
    pub rect_notice: Option<String>,
    /// When it was found done.
    pub rect_resolved_at_ms: Option<i64>,
    /// Last edit.
    pub updated_at_ms: i64,
}

/// A rapid test of a visit as its query row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRow {
    /// The visit it was made in.
    pub visit_id: String,
    /// Its place in the visit's list of tests (0 = first).
    pub pos: i64,
    /// The visit's grid.
    pub grid: String,
    /// Test item (e.g. 克伦特罗).
    pub item: String,
    /// Verdict ([`verdict_str`]).
    pub verdict: String,
    /// When it was made.
    pub tested_at_ms: i64,
}

/// A finding of a visit as its query row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    /// The visit it was recorded in.
    pub visit_id: String,
    /// Its place in the visit's list of findings (0 = first).
    pub pos: i64,
    /// The visit's grid.
    pub grid: String,
    /// The checklist item it relates to, if any.
    pub item_id: Option<String>,
    /// Severity ([`severity_str`]; `serious` = referred to enforcement).
    pub severity: String,
    /// When it was recorded.
    pub recorded_at_ms: i64,
}

/// The stored name of a verdict (its serde name).
pub fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Suspect => "suspect",
    }
}

/// The stored name of a severity (its serde name).
pub fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Minor => "minor",
        Severity::Major => "major",
        Severity::Serious => "serious",
    }
}

/// An open rectification: its visit, the producer's name, and whether it is overdue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RectificationRow {
    /// The visit that ordered it.
    pub visit: VisitRow,
    /// The producer's name (empty if the producer has no query row).
    pub producer_name: String,
    /// Its deadline is before the day asked about.
    pub overdue: bool,
}

/// How the directory is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectorySort {
    /// By name (code point order), then id.
    #[default]
    Name,
    /// Most recently edited first, then id.
    RecentlyUpdated,
}

/// What the directory lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryFilter {
    /// Grids to list (an expanded subtree); empty lists nothing.
    pub grids: Vec<String>,
    /// Substring of the name, owner or phone (ASCII letters match either case).
    pub search: Option<String>,
    /// Only this type.
    pub producer_type: Option<ProducerType>,
    /// Only this (effective) review state.
    pub review_state: Option<ReviewState>,
    /// Only this risk grade.
    pub risk: Option<RiskLevel>,
    /// Only this status.
    pub status: Option<ProducerStatus>,
    /// Order.
    pub sort: DirectorySort,
    /// List the entries merged into another as its duplicate (tombstones, 已合并) instead
    /// of the directory's producers.
    pub merged: bool,
}

/// The review level whose queue is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewLevel {
    /// The township supervisor: entries submitted.
    Township,
    /// The county reviewer: entries approved by the township.
    County,
}

impl ReviewLevel {
    /// The state of entries awaiting this level.
    pub fn awaiting(self) -> ReviewState {
        match self {
            ReviewLevel::Township => ReviewState::Submitted,
            ReviewLevel::County => ReviewState::TownshipApproved,
        }
    }
}

/// What the visits page lists (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisitFilter {
    /// Grids (an expanded subtree); empty lists nothing.
    pub grids: Vec<String>,
    /// Only visits of this producer.
    pub producer_id: Option<String>,
    /// Only visits by this inspector.
    pub inspector: Option<String>,
    /// Started at or after.
    pub from_ms: Option<i64>,
    /// Started before.
    pub to_ms: Option<i64>,
    /// Only this status.
    pub status: Option<VisitStatus>,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Records read (every kind).
    pub records: u64,
    /// Producer rows written.
    pub producers: u64,
    /// Visit rows written.
    pub visits: u64,
    /// Acceptance rows written.
    pub acceptances: u64,
    /// Review step rows written.
    pub reviews: u64,
    /// Rows deleted because no record of their kind has their id.
    pub orphans: u64,
    /// Records whose documents did not read (id and why; at most [`MAX_UNREADABLE`] kept).
    pub unreadable: Vec<(String, String)>,
    /// How many did not read.
    pub unreadable_count: u64,
}

/// Unreadable records named in a [`RebuildReport`].
pub const MAX_UNREADABLE: usize = 20;

/// Every query row, each table sorted by key (tests and checks compare them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySnapshot {
    /// Producers by id.
    pub producers: Vec<ProducerRow>,
    /// Review steps by producer and step.
    pub reviews: Vec<ReviewRow>,
    /// Visits by id.
    pub visits: Vec<VisitRow>,
    /// Rapid tests by visit and position.
    pub tests: Vec<TestRow>,
    /// Findings by visit and position.
    pub findings: Vec<FindingRow>,
    /// Township acceptance decisions by id.
    pub acceptances: Vec<super::acceptance::AcceptanceRow>,
}

// ---- Writing rows. ----

#[rustfmt::skip]
mod inserts {
    use super::super::sql::{Insert, Ty::{Bool, Int, Text}};
    /// Producers: `last_visit_ms` is kept by [`super::refresh_last_visit`], not here.
    pub(super) const INS_Q_PRODUCERS: Insert = Insert { table: "q_producers", columns: &[("id", Text), ("grid", Text), ("name", Text), ("owner", Text), ("phone", Text), ("credit_code", Text), ("id_number", Text), ("producer_type", Text), ("status", Text), ("review_state", Text), ("review_at_ms", Int), ("risk", Text), ("created_by", Text), ("created_at_ms", Int), ("updated_at_ms", Int), ("scale_farm", Bool), ("scale_mismatch", Bool), ("phone_norm", Text), ("name_core", Text), ("merged_into", Text), ("open_duplicates", Int)], on_conflict: " ON CONFLICT (id) DO UPDATE SET grid = excluded.grid, name = excluded.name, owner = excluded.owner, phone = excluded.phone, credit_code = excluded.credit_code, id_number = excluded.id_number, producer_type = excluded.producer_type, status = excluded.status, review_state = excluded.review_state, review_at_ms = excluded.review_at_ms, risk = excluded.risk, created_by = excluded.created_by, created_at_ms = excluded.created_at_ms, updated_at_ms = excluded.updated_at_ms, scale_farm = excluded.scale_farm, scale_mismatch = excluded.scale_mismatch, phone_norm = excluded.phone_norm, name_core = excluded.name_core, merged_into = excluded.merged_into, open_duplicates = excluded.open_duplicates" };
    pub(super) const INS_Q_REVIEWS: Insert = Insert { table: "q_reviews", columns: &[("producer_id", Text), ("step", Int), ("event_id", Text), ("grid", Text), ("action", Text), ("by_person", Text), ("at_ms", Int), ("state_after", Text), ("reason", Text)], on_conflict: "" };
    pub(super) const INS_Q_TESTS: Insert = Insert { table: "q_tests", columns: &[("visit_id", Text), ("pos", Int), ("grid", Text), ("item", Text), ("verdict", Text), ("tested_at_ms", Int)], on_conflict: "" };
    pub(super) const INS_Q_FINDINGS: Insert = Insert { table: "q_findings", columns: &[("visit_id", Text), ("pos", Int), ("grid", Text), ("item_id", Text), ("severity", Text), ("recorded_at_ms", Int)], on_conflict: "" };
    pub(super) const INS_Q_VISITS: Insert = Insert { table: "q_visits", columns: &[("id", Text), ("producer_id", Text), ("grid", Text), ("inspector", Text), ("started_at_ms", Int), ("ended_at_ms", Int), ("status", Text), ("findings", Int), ("serious_findings", Int), ("rapid_tests", Int), ("failed_tests", Int), ("reviewed_at_ms", Int), ("follow_up_of", Text), ("rect_required", Bool), ("rect_open", Bool), ("rect_deadline", Text), ("rect_notice", Text), ("rect_resolved_at_ms", Int), ("updated_at_ms", Int)], on_conflict: " ON CONFLICT (id) DO UPDATE SET producer_id = excluded.producer_id, grid = excluded.grid, inspector = excluded.inspector, started_at_ms = excluded.started_at_ms, ended_at_ms = excluded.ended_at_ms, status = excluded.status, findings = excluded.findings, serious_findings = excluded.serious_findings, rapid_tests = excluded.rapid_tests, failed_tests = excluded.failed_tests, reviewed_at_ms = excluded.reviewed_at_ms, follow_up_of = excluded.follow_up_of, rect_required = excluded.rect_required, rect_open = excluded.rect_open, rect_deadline = excluded.rect_deadline, rect_notice = excluded.rect_notice, rect_resolved_at_ms = excluded.rect_resolved_at_ms, updated_at_ms = excluded.updated_at_ms" };
}
use inserts::*;

pub(crate) const PRODUCER_COLS: &str = "id, grid, name, owner, phone, credit_code, id_number, producer_type, status, review_state, review_at_ms, risk, created_by, created_at_ms, updated_at_ms, last_visit_ms, scale_farm, scale_mismatch";
pub(crate) const VISIT_COLS: &str = "id, producer_id, grid, inspector, started_at_ms, ended_at_ms, status, findings, serious_findings, rapid_tests, failed_tests, reviewed_at_ms, follow_up_of, rect_required, rect_open, rect_deadline, rect_notice, rect_resolved_at_ms, updated_at_ms";
const REVIEW_COLS: &str =
    "producer_id, step, event_id, grid, action, by_person, at_ms, state_after, reason";
const TEST_COLS: &str = "visit_id, pos, grid, item, verdict, tested_at_ms";
const FINDING_COLS: &str = "visit_id, pos, grid, item_id, severity, recorded_at_ms";

fn count(n: usize) -> Value<'static> {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn producer_values(p: &Producer) -> Vec<Value<'_>> {
    vec![
        Value::Text(&p.id),
        Value::Text(&p.grid),
        Value::Text(&p.name),
        Value::Text(&p.owner),
        Value::Text(&p.phone),
        Value::from(&p.credit_code),
        Value::from(&p.id_number),
        Value::from(p.producer_type),
        Value::from(p.status),
        Value::from(p.effective_review_state()),
        Value::from(p.review.history.iter().map(|e| e.at_ms).max()),
        Value::from(p.risk),
        Value::Text(&p.created_by),
        Value::Int(p.created_at_ms),
        Value::Int(p.updated_at_ms),
    ]
}

fn review_values(p: &Producer) -> Vec<Vec<Value<'_>>> {
    p.review
        .history
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let reason = match &e.action {
                ReviewAction::Return(r) => Value::Text(r),
                _ => Value::Null,
            };
            vec![
                Value::Text(&p.id),
                count(i),
                Value::Text(&e.id),
                Value::Text(&p.grid),
                Value::Text(e.action.as_str()),
                Value::Text(&e.by),
                Value::Int(e.at_ms),
                Value::from(e.state_after),
                reason,
            ]
        })
        .collect()
}

fn visit_values(v: &Visit) -> Vec<Value<'_>> {
    let r = v.rectification.as_ref();
    vec![
        Value::Text(&v.id),
        Value::Text(&v.producer_id),
        Value::Text(&v.grid),
        Value::Text(&v.inspector),
        Value::Int(v.started_at_ms),
        Value::from(v.ended_at_ms),
        Value::from(v.status),
        count(v.findings.len()),
        count(
            v.findings
                .iter()
                .filter(|f| f.severity == Severity::Serious)
                .count(),
        ),
        count(v.rapid_tests.len()),
        count(
            v.rapid_tests
                .iter()
                .filter(|t| t.verdict == Verdict::Fail)
                .count(),
        ),
        Value::from(v.review.as_ref().map(|r| r.at_ms)),
        Value::from(&v.follow_up_of),
        Value::Bool(r.is_some_and(|r| r.required)),
        Value::Bool(v.rectification_open()),
        Value::from(r.map(|r| r.deadline.as_str())),
        Value::from(r.map(|r| r.notice_number.as_str())),
        Value::from(r.and_then(|r| r.resolved_at_ms)),
        Value::Int(v.updated_at_ms),
    ]
}

fn test_values(v: &Visit) -> Vec<Vec<Value<'_>>> {
    v.rapid_tests
        .iter()
        .enumerate()
        .map(|(i, t)| {
            vec![
                Value::Text(&v.id),
                count(i),
                Value::Text(&v.grid),
                Value::Text(&t.item),
                Value::Text(verdict_str(t.verdict)),
                Value::Int(t.tested_at_ms),
            ]
        })
        .collect()
}

fn finding_values(v: &Visit) -> Vec<Vec<Value<'_>>> {
    v.findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            vec![
                Value::Text(&v.id),
                count(i),
                Value::Text(&v.grid),
                Value::from(&f.item_id),
                Value::Text(severity_str(f.severity)),
                Value::Int(f.recorded_at_ms),
            ]
        })
        .collect()
}

/// Deletes the test and finding rows of the visits `ids`.
fn delete_visit_items(tx: &mut dyn Tx, ids: &[&str]) -> StorageResult<()> {
    for t in ["q_tests", "q_findings"] {
        tx.execute(
            &format!("DELETE FROM {t} WHERE visit_id IN LIST($1)"),
            params![ids],
        )?;
    }
    Ok(())
}

/// Writes the query rows of `records` (each id once, as stored now) in the transaction
/// `tx`: producers with their review steps, visits, and the latest visit of every producer
/// a written visit names (or named before). A record moved to another grid takes its new
/// grid. Templates have no rows.
pub(crate) fn materialize(tx: &mut dyn Tx, records: &[&Record]) -> StorageResult<()> {
    let acceptances: Vec<&gridsync_core::model::Acceptance> = records
        .iter()
        .filter_map(|r| match r {
            Record::Acceptance(a) => Some(a),
            _ => None,
        })
        .collect();
    super::acceptance::write(tx, &acceptances)?;
    let producers: Vec<&Producer> = records
        .iter()
        .filter_map(|r| match r {
            Record::Producer(p) => Some(p),
            _ => None,
        })
        .collect();
    let visits: Vec<&Visit> = records
        .iter()
        .filter_map(|r| match r {
            Record::Visit(v) => Some(v),
            _ => None,
        })
        .collect();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    if !producers.is_empty() {
        // The league thresholds of this batch's grids, read once.
        let grids: BTreeSet<&str> = producers.iter().map(|p| p.grid.as_str()).collect();
        let grids: Vec<&str> = grids.into_iter().collect();
        let by_grid = super::scale::thresholds_of(tx, &grids)?;
        let national = gridsync_core::scale::ScaleThresholds::mara();
        // The duplicate check's keys (normalised phone, name core), computed once.
        let keys: Vec<super::duplicates::Keys> = producers
            .iter()
            .map(|p| super::duplicates::Keys::of(p))
            .collect();
        let rows: Vec<Vec<Value<'_>>> = producers
            .iter()
            .zip(&keys)
            .map(|(p, k)| {
                let a = gridsync_core::scale::assess(p, by_grid.get(&p.grid).unwrap_or(&national));
                let mut v = producer_values(p);
                v.extend([Value::Bool(a.is_scale_farm), Value::Bool(a.type_mismatch)]);
                v.extend(k.values(p));
                v
            })
            .collect();
        tx.insert_rows(&INS_Q_PRODUCERS, &rows)?;
        super::confirmations::write(tx, &producers)?;
        let ids: Vec<&str> = producers.iter().map(|p| p.id.as_str()).collect();
        tx.execute(
            "DELETE FROM q_reviews WHERE producer_id IN LIST($1)",
            params![ids.as_slice()],
        )?;
        let reviews: Vec<Vec<Value<'_>>> =
            producers.iter().flat_map(|p| review_values(p)).collect();
        if !reviews.is_empty() {
            tx.insert_rows(&INS_Q_REVIEWS, &reviews)?;
        }
        touched.extend(ids.iter().map(|s| s.to_string()));
    }
    if !visits.is_empty() {
        let ids: Vec<&str> = visits.iter().map(|v| v.id.as_str()).collect();
        // The producers these visits named before (a visit does not change producer, but a
        // damaged row might name another).
        tx.query(
            "q_visits",
            "SELECT producer_id FROM q_visits WHERE id IN LIST($1)",
            params![ids.as_slice()],
            &mut |r| {
                touched.insert(r.get(0)?);
                Ok(())
            },
        )?;
        let rows: Vec<Vec<Value<'_>>> = visits.iter().map(|v| visit_values(v)).collect();
        tx.insert_rows(&INS_Q_VISITS, &rows)?;
        delete_visit_items(tx, &ids)?;
        let tests: Vec<Vec<Value<'_>>> = visits.iter().flat_map(|v| test_values(v)).collect();
        if !tests.is_empty() {
            tx.insert_rows(&INS_Q_TESTS, &tests)?;
        }
        let findings: Vec<Vec<Value<'_>>> = visits.iter().flat_map(|v| finding_values(v)).collect();
        if !findings.is_empty() {
            tx.insert_rows(&INS_Q_FINDINGS, &findings)?;
        }
        touched.extend(visits.iter().map(|v| v.producer_id.clone()));
    }
    refresh_last_visit(tx, &touched)
}

/// Sets `last_visit_ms` of the producers `ids` from their visits' rows.
fn refresh_last_visit(tx: &mut dyn Tx, ids: &BTreeSet<String>) -> StorageResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    // Only rows whose value changes are written: rewriting a row (a new producer has no
    // visits, and its row was just inserted) costs a new row version and, on PostgreSQL, new
    // entries in every index of `q_producers` when the page has no room for it.
    tx.execute(
        "UPDATE q_producers SET last_visit_ms =
            (SELECT MAX(v.started_at_ms) FROM q_visits v WHERE v.producer_id = q_producers.id)
         WHERE id IN LIST($1) AND COALESCE(last_visit_ms, -9223372036854775807) <> COALESCE(
            (SELECT MAX(v.started_at_ms) FROM q_visits v WHERE v.producer_id = q_producers.id),
            -9223372036854775807)",
        params![ids.as_slice()],
    )?;
    Ok(())
}

/// Reads a stored document as a record (`Err`: why it does not read).
pub(crate) fn read_record(doc: &[u8]) -> Result<Record, String> {
    RecordDoc::load(doc, &[])
        .and_then(|d| d.read())
        .map_err(|e| e.to_string())
}

/// Materializes stored records given as (id, kind, document): those that read get their
/// rows; the others are noted in `report`. Rows of the ids are deleted first, so a record
/// whose document no longer reads keeps no stale row.
pub(crate) fn materialize_docs(
    tx: &mut dyn Tx,
    docs: &[(&str, RecordKind, &[u8])],
    report: &mut RebuildReport,
) -> StorageResult<()> {
    let mut records = Vec::with_capacity(docs.len());
    let mut ids: Vec<&str> = Vec::with_capacity(docs.len());
    for &(id, kind, doc) in docs {
        report.records += 1;
        if kind == RecordKind::Template {
            continue;
        }
        ids.push(id);
        match read_record(doc) {
            Ok(r) if r.id() == id && r.kind() == kind => records.push(r),
            Ok(r) => note_unreadable(
                report,
                id,
                format!("the document holds {} {}", r.kind().as_str(), r.id()),
            ),
            Err(e) => note_unreadable(report, id, e),
        }
    }
    if !ids.is_empty() {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        tx.query(
            "q_visits",
            "SELECT producer_id FROM q_visits WHERE id IN LIST($1)",
            params![ids.as_slice()],
            &mut |r| {
                touched.insert(r.get(0)?);
                Ok(())
            },
        )?;
        for t in ["q_producers", "q_visits"] {
            tx.execute(
                &format!("DELETE FROM {t} WHERE id IN LIST($1)"),
                params![ids.as_slice()],
            )?;
        }
        tx.execute(
            "DELETE FROM q_reviews WHERE producer_id IN LIST($1)",
            params![ids.as_slice()],
        )?;
        delete_visit_items(tx, &ids)?;
        super::acceptance::delete(tx, &ids)?;
        refresh_last_visit(tx, &touched)?;
    }
    for r in &records {
        match r {
            Record::Producer(p) => {
                report.producers += 1;
                report.reviews += p.review.history.len() as u64;
            }
            Record::Visit(_) => report.visits += 1,
            Record::Acceptance(_) => report.acceptances += 1,
            Record::Template(_) => {}
        }
    }
    let refs: Vec<&Record> = records.iter().collect();
    materialize(tx, &refs)
}

fn note_unreadable(report: &mut RebuildReport, id: &str, why: String) {
    report.unreadable_count += 1;
    if report.unreadable.len() < MAX_UNREADABLE {
        report.unreadable.push((id.to_string(), why));
    }
}

/// The next batch of a rebuild: the ids of at most [`REBUILD_BATCH`] records after `after`
/// (in the database's order of ids), with their kinds.
pub(crate) fn rebuild_ids(
    tx: &mut dyn Tx,
    after: Option<&str>,
) -> StorageResult<Vec<(String, RecordKind)>> {
    let limit = count(REBUILD_BATCH);
    let map = |r: Row| Ok((r.get::<String>(0)?, r.get::<RecordKind>(1)?));
    match after {
        None => tx.rows(
            "records",
            "SELECT id, kind FROM records ORDER BY id LIMIT $1",
            &[limit],
            map,
        ),
        Some(a) => tx.rows(
            "records",
            "SELECT id, kind FROM records WHERE id > $1 ORDER BY id LIMIT $2",
            &[Value::Text(a), limit],
            map,
        ),
    }
}

/// Rebuilds the rows of the records `ids` (locked by the caller against concurrent pushes)
/// from their documents as stored now.
pub(crate) fn rebuild_batch(
    tx: &mut dyn Tx,
    ids: &[(String, RecordKind)],
    report: &mut RebuildReport,
) -> StorageResult<()> {
    let wanted: Vec<&str> = ids
        .iter()
        .filter(|i| i.1 != RecordKind::Template)
        .map(|i| i.0.as_str())
        .collect();
    report.records += (ids.len() - wanted.len()) as u64;
    let mut docs: Vec<(String, RecordKind, Vec<u8>)> = Vec::with_capacity(wanted.len());
    if !wanted.is_empty() {
        tx.query(
            "records",
            "SELECT id, kind, doc FROM records WHERE id IN LIST($1)",
            params![wanted.as_slice()],
            &mut |mut r| {
                let doc = r.take_blob(2)?.unwrap_or_default();
                docs.push((r.get(0)?, r.get(1)?, doc));
                Ok(())
            },
        )?;
    }
    let refs: Vec<(&str, RecordKind, &[u8])> = docs
        .iter()
        .map(|(id, kind, doc)| (id.as_str(), *kind, doc.as_slice()))
        .collect();
    materialize_docs(tx, &refs, report)
}

/// Deletes at most `limit` rows of one query table whose record is gone or of another kind;
/// returns how many.
pub(crate) fn delete_orphans(tx: &mut dyn Tx, limit: i64) -> StorageResult<u64> {
    let producers: Vec<String> = tx.rows(
        "q_producers",
        "SELECT q.id FROM q_producers q WHERE NOT EXISTS
            (SELECT 1 FROM records r WHERE r.id = q.id AND r.kind = 'producer') LIMIT $1",
        params![limit],
        |r| r.get(0),
    )?;
    let reviews: Vec<String> = tx.rows(
        "q_reviews",
        "SELECT DISTINCT q.producer_id FROM q_reviews q WHERE NOT EXISTS
            (SELECT 1 FROM q_producers p WHERE p.id = q.producer_id) LIMIT $1",
        params![limit],
        |r| r.get(0),
    )?;
    let visits: Vec<(String, String)> = tx.rows(
        "q_visits",
        "SELECT q.id, q.producer_id FROM q_visits q WHERE NOT EXISTS
            (SELECT 1 FROM records r WHERE r.id = q.id AND r.kind = 'visit') LIMIT $1",
        params![limit],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut items: Vec<String> = Vec::new();
    for t in ["q_tests", "q_findings"] {
        items.extend(tx.rows(
            t,
            &format!(
                "SELECT DISTINCT q.visit_id FROM {t} q WHERE NOT EXISTS
                    (SELECT 1 FROM records r WHERE r.id = q.visit_id AND r.kind = 'visit') LIMIT $1"
            ),
            params![limit],
            |r| r.get(0),
        )?);
    }
    let mut n = super::acceptance::delete_orphans(tx, limit)?;
    items.sort();
    items.dedup();
    let it: Vec<&str> = items.iter().map(String::as_str).collect();
    if !it.is_empty() {
        for t in ["q_tests", "q_findings"] {
            n += tx.execute(
                &format!("DELETE FROM {t} WHERE visit_id IN LIST($1)"),
                params![it.as_slice()],
            )?;
        }
    }
    let p: Vec<&str> = producers.iter().map(String::as_str).collect();
    if !p.is_empty() {
        n += tx.execute(
            "DELETE FROM q_producers WHERE id IN LIST($1)",
            params![p.as_slice()],
        )?;
        tx.execute(
            "DELETE FROM q_reviews WHERE producer_id IN LIST($1)",
            params![p.as_slice()],
        )?;
    }
    let rv: Vec<&str> = reviews.iter().map(String::as_str).collect();
    if !rv.is_empty() {
        n += tx.execute(
            "DELETE FROM q_reviews WHERE producer_id IN LIST($1)",
            params![rv.as_slice()],
        )?;
    }
    let v: Vec<&str> = visits.iter().map(|x| x.0.as_str()).collect();
    if !v.is_empty() {
        n += tx.execute(
            "DELETE FROM q_visits WHERE id IN LIST($1)",
            params![v.as_slice()],
        )?;
        let touched: BTreeSet<String> = visits.into_iter().map(|x| x.1).collect();
        refresh_last_visit(tx, &touched)?;
    }
    Ok(n)
}

// ---- Reading rows. ----

pub(crate) fn producer_row(r: Row) -> StorageResult<ProducerRow> {
    Ok(ProducerRow {
        id: r.get(0)?,
        grid: r.get(1)?,
        name: r.get(2)?,
        owner: r.get(3)?,
        phone: r.get(4)?,
        credit_code: r.get(5)?,
        id_number: r.get(6)?,
        producer_type: r.get(7)?,
        status: r.get(8)?,
        review_state: r.get(9)?,
        review_at_ms: r.get(10)?,
        risk: r.get(11)?,
        created_by: r.get(12)?,
        created_at_ms: r.get(13)?,
        updated_at_ms: r.get(14)?,
        last_visit_ms: r.get(15)?,
        scale_farm: r.get(16)?,
        scale_mismatch: r.get(17)?,
    })
}

pub(crate) fn visit_row(r: &Row) -> StorageResult<VisitRow> {
    Ok(VisitRow {
        id: r.get(0)?,
        producer_id: r.get(1)?,
        grid: r.get(2)?,
        inspector: r.get(3)?,
        started_at_ms: r.get(4)?,
        ended_at_ms: r.get(5)?,
        status: r.get(6)?,
        findings: r.get(7)?,
        serious_findings: r.get(8)?,
        rapid_tests: r.get(9)?,
        failed_tests: r.get(10)?,
        reviewed_at_ms: r.get(11)?,
        follow_up_of: r.get(12)?,
        rect_required: r.get(13)?,
        rect_open: r.get(14)?,
        rect_deadline: r.get(15)?,
        rect_notice: r.get(16)?,
        rect_resolved_at_ms: r.get(17)?,
        updated_at_ms: r.get(18)?,
    })
}

pub(crate) fn test_row(r: Row) -> StorageResult<TestRow> {
    Ok(TestRow {
        visit_id: r.get(0)?,
        pos: r.get(1)?,
        grid: r.get(2)?,
        item: r.get(3)?,
        verdict: r.get(4)?,
        tested_at_ms: r.get(5)?,
    })
}

pub(crate) fn finding_row(r: Row) -> StorageResult<FindingRow> {
    Ok(FindingRow {
        visit_id: r.get(0)?,
        pos: r.get(1)?,
        grid: r.get(2)?,
        item_id: r.get(3)?,
        severity: r.get(4)?,
        recorded_at_ms: r.get(5)?,
    })
}

pub(crate) fn review_row(r: Row) -> StorageResult<ReviewRow> {
    Ok(ReviewRow {
        producer_id: r.get(0)?,
        step: r.get(1)?,
        event_id: r.get(2)?,
        grid: r.get(3)?,
        action: r.get(4)?,
        by: r.get(5)?,
        at_ms: r.get(6)?,
        state_after: r.get(7)?,
        reason: r.get(8)?,
    })
}

/// A page query: its table, SQL and parameters (`LIMIT`/`OFFSET` last).
#[derive(Debug)]
pub struct PageSql<'a> {
    /// The table rows come from (for errors).
    pub table: &'static str,
    /// The statement, in the shared dialect.
    pub sql: String,
    /// Its parameters.
    pub params: Vec<Value<'a>>,
}

/// Builds a statement's parameters as it is written.
struct Builder<'a> {
    params: Vec<Value<'a>>,
    conds: Vec<String>,
}

impl<'a> Builder<'a> {
    fn new() -> Self {
        Builder {
            params: Vec::new(),
            conds: Vec::new(),
        }
    }

    /// Adds a parameter; returns its placeholder.
    fn param(&mut self, v: Value<'a>) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }

    /// Adds a condition with one parameter in place of `?`.
    fn cond(&mut self, template: &str, v: Value<'a>) {
        let p = self.param(v);
        self.conds.push(template.replace('?', &p));
    }

    fn finish(
        mut self,
        table: &'static str,
        select: &str,
        order: &str,
        page: PageReq,
    ) -> StorageResult<PageSql<'a>> {
        let (limit, offset) = page.check()?;
        let l = self.param(Value::Int(limit));
        let o = self.param(Value::Int(offset));
        let sql = format!(
            "{select} WHERE {} ORDER BY {order} LIMIT {l} OFFSET {o}",
            self.conds.join(" AND ")
        );
        Ok(PageSql {
            table,
            sql,
            params: self.params,
        })
    }
}

/// The LIKE pattern of a substring search: wildcards escaped with `\`, ASCII lowercased
/// (the columns are compared lowercased, as both databases lowercase ASCII alike).
pub fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c.to_ascii_lowercase());
    }
    p.push('%');
    p
}

/// The directory page.
pub fn directory_sql<'a>(
    f: &'a DirectoryFilter,
    grids: &'a [&'a str],
    pattern: Option<&'a str>,
    page: PageReq,
) -> StorageResult<PageSql<'a>> {
    let mut b = Builder::new();
    b.cond("grid IN LIST(?)", Value::TextList(grids));
    // Entries merged into another as its duplicate (tombstones) are not in the directory;
    // they are listed only when asked for.
    b.conds.push(if f.merged {
        "merged_into IS NOT NULL".into()
    } else {
        "merged_into IS NULL".into()
    });
    if let Some(t) = f.producer_type {
        b.cond("producer_type = ?", Value::from(t));
    }
    if let Some(s) = f.review_state {
        b.cond("review_state = ?", Value::from(s));
    }
    if let Some(r) = f.risk {
        b.cond("risk = ?", Value::from(r));
    }
    if let Some(s) = f.status {
        b.cond("status = ?", Value::from(s));
    }
    if let Some(p) = pattern {
        b.cond(
            "(lower(name) LIKE ? ESCAPE '\\' OR lower(owner) LIKE ? ESCAPE '\\' OR phone LIKE ? ESCAPE '\\')",
            Value::Text(p),
        );
    }
    let order = match f.sort {
        DirectorySort::Name => "name, id",
        DirectorySort::RecentlyUpdated => "updated_at_ms DESC, id",
    };
    b.finish(
        "q_producers",
        &format!("SELECT {PRODUCER_COLS} FROM q_producers"),
        order,
        page,
    )
}

/// Owned parts a directory query borrows.
pub(crate) struct DirectoryArgs<'f> {
    pub grids: Vec<&'f str>,
    pub pattern: Option<String>,
}

impl<'f> DirectoryArgs<'f> {
    pub(crate) fn of(f: &'f DirectoryFilter) -> Self {
        DirectoryArgs {
            grids: f.grids.iter().map(String::as_str).collect(),
            pattern: f
                .search
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(like_pattern),
        }
    }
}

/// The review queue of a level: entries awaiting it, longest waiting first.
pub fn review_queue_sql<'a>(
    grids: &'a [&'a str],
    level: ReviewLevel,
    page: PageReq,
) -> StorageResult<PageSql<'a>> {
    let mut b = Builder::new();
    b.cond("review_state = ?", Value::from(level.awaiting()));
    b.cond("grid IN LIST(?)", Value::TextList(grids));
    b.conds.push("merged_into IS NULL".into());
    b.finish(
        "q_producers",
        &format!("SELECT {PRODUCER_COLS} FROM q_producers"),
        "review_at_ms, id",
        page,
    )
}

/// The visits of one producer, newest first.
pub fn producer_visits_sql(producer_id: &str, page: PageReq) -> StorageResult<PageSql<'_>> {
    let mut b = Builder::new();
    b.cond("producer_id = ?", Value::Text(producer_id));
    b.finish(
        "q_visits",
        &format!("SELECT {VISIT_COLS} FROM q_visits"),
        "started_at_ms DESC, id DESC",
        page,
    )
}

/// The visits page, newest first.
pub fn visits_sql<'a>(
    f: &'a VisitFilter,
    grids: &'a [&'a str],
    page: PageReq,
) -> StorageResult<PageSql<'a>> {
    let mut b = Builder::new();
    if let Some(p) = &f.producer_id {
        b.cond("producer_id = ?", Value::Text(p));
    }
    if let Some(i) = &f.inspector {
        b.cond("inspector = ?", Value::Text(i));
    }
    b.cond("grid IN LIST(?)", Value::TextList(grids));
    if let Some(t) = f.from_ms {
        b.cond("started_at_ms >= ?", Value::Int(t));
    }
    if let Some(t) = f.to_ms {
        b.cond("started_at_ms < ?", Value::Int(t));
    }
    if let Some(s) = f.status {
        b.cond("status = ?", Value::from(s));
    }
    b.finish(
        "q_visits",
        &format!("SELECT {VISIT_COLS} FROM q_visits"),
        "started_at_ms DESC, id DESC",
        page,
    )
}

/// Open rectifications in `grids`, earliest deadline first, with the producer's name and
/// whether the deadline is before `today` (`YYYY-MM-DD`).
pub fn open_rectifications_sql<'a>(
    grids: &'a [&'a str],
    today: &'a str,
    overdue_only: bool,
    page: PageReq,
) -> StorageResult<PageSql<'a>> {
    let mut b = Builder::new();
    let t = b.param(Value::Text(today));
    b.conds.push("v.rect_open = TRUE".into());
    b.cond("v.grid IN LIST(?)", Value::TextList(grids));
    if overdue_only {
        b.conds.push(format!("v.rect_deadline < {t}"));
    }
    let cols: Vec<String> = VISIT_COLS.split(", ").map(|c| format!("v.{c}")).collect();
    b.finish(
        "q_visits",
        &format!(
            "SELECT {}, COALESCE(p.name, ''), CASE WHEN v.rect_deadline < {t} THEN 1 ELSE 0 END
             FROM q_visits v LEFT JOIN q_producers p ON p.id = v.producer_id",
            cols.join(", ")
        ),
        "v.rect_deadline, v.id",
        page,
    )
}

/// Runs a page query.
pub(crate) fn run_page<T>(
    tx: &mut dyn Tx,
    q: &PageSql<'_>,
    limit: u32,
    map: impl FnMut(Row) -> StorageResult<T>,
) -> StorageResult<Page<T>> {
    let mut rows = tx.rows(q.table, &q.sql, &q.params, map)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(Page { rows, more })
}

pub(crate) fn rectification_row(r: Row) -> StorageResult<RectificationRow> {
    let overdue: i64 = r.get(20)?;
    Ok(RectificationRow {
        visit: visit_row(&r)?,
        producer_name: r.get(19)?,
        overdue: overdue == 1,
    })
}

/// Every query row (tests and checks).
pub(crate) fn snapshot(tx: &mut dyn Tx) -> StorageResult<QuerySnapshot> {
    Ok(QuerySnapshot {
        producers: tx.rows(
            "q_producers",
            &format!("SELECT {PRODUCER_COLS} FROM q_producers ORDER BY id"),
            &[],
            producer_row,
        )?,
        reviews: tx.rows(
            "q_reviews",
            &format!("SELECT {REVIEW_COLS} FROM q_reviews ORDER BY producer_id, step"),
            &[],
            review_row,
        )?,
        visits: tx.rows(
            "q_visits",
            &format!("SELECT {VISIT_COLS} FROM q_visits ORDER BY id"),
            &[],
            |r| visit_row(&r),
        )?,
        tests: tx.rows(
            "q_tests",
            &format!("SELECT {TEST_COLS} FROM q_tests ORDER BY visit_id, pos"),
            &[],
            test_row,
        )?,
        findings: tx.rows(
            "q_findings",
            &format!("SELECT {FINDING_COLS} FROM q_findings ORDER BY visit_id, pos"),
            &[],
            finding_row,
        )?,
        acceptances: super::acceptance::all(tx)?,
    })
}

/// A producer's review steps, oldest first.
pub(crate) fn reviews_of(tx: &mut dyn Tx, producer_id: &str) -> StorageResult<Vec<ReviewRow>> {
    tx.rows(
        "q_reviews",
        &format!("SELECT {REVIEW_COLS} FROM q_reviews WHERE producer_id = $1 ORDER BY step"),
        params![producer_id],
        review_row,
    )
}

/// One producer's row.
pub(crate) fn producer_of(tx: &mut dyn Tx, id: &str) -> StorageResult<Option<ProducerRow>> {
    tx.row(
        "q_producers",
        &format!("SELECT {PRODUCER_COLS} FROM q_producers WHERE id = $1"),
        params![id],
        producer_row,
    )
}

/// The grids at or below `roots` (each once, sorted).
pub(crate) fn subtree(tx: &mut dyn Tx, roots: &[&str]) -> StorageResult<Vec<String>> {
    let mut out: Vec<String> = tx.rows(
        "grids",
        "WITH RECURSIVE sub(code) AS (
            SELECT code FROM grids WHERE code IN LIST($1)
            UNION SELECT g.code FROM grids g JOIN sub ON g.parent = sub.code)
         SELECT code FROM sub",
        params![roots],
        |r| r.get(0),
    )?;
    out.sort();
    out.dedup();
    Ok(out)
}

impl super::sqlite::SqliteStorage {
    /// SQLite's plan of a page query (`EXPLAIN QUERY PLAN`, one line per step): tests check
    /// that each page runs on an index.
    pub fn explain_query_plan(&self, q: &PageSql<'_>) -> StorageResult<Vec<String>> {
        use super::layer::Backend;
        self.backend().read(|tx| {
            tx.rows(
                q.table,
                &format!("EXPLAIN QUERY PLAN {}", q.sql),
                &q.params,
                |r| r.get(3),
            )
        })
    }
}
