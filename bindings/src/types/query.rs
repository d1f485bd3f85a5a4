//! Query rows, counts, conflicts, history, rejected and kept edits.

use gridsync_core::doc::{Conflict as CoreConflict, HistoryEntry as CoreHistoryEntry};
use gridsync_core::model as m;
use gridsync_core::store as s;
use m::{
    ProducerStatus as CProducerStatus, ProducerType as CProducerType, RecordKind as CRecordKind,
    ReviewState as CReviewState, RiskLevel as CRiskLevel, VisitStatus as CVisitStatus,
};
use s::ProducerSort as CProducerSort;

use super::{ProducerStatus, ProducerType, ReviewState, RiskLevel, VisitStatus};
use crate::error::ApiError;

mirror_enum! {
    /// Kind of record.
    RecordKind = CRecordKind {
        /// A producer.
        Producer,
        /// A visit.
        Visit,
        /// A checklist template version.
        Template,
    }
}

mirror_enum! {
    /// Sort order of producer lists.
    ProducerSort = CProducerSort {
        /// By name.
        Name,
        /// Most recently edited first.
        RecentlyUpdated,
        /// Longest since the last visit first (never visited first).
        LastVisit,
    }
}

/// Parses a stable identifier read from the store's query tables.
fn parse_column<T>(what: &str, v: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, ApiError> {
    f(v).ok_or_else(|| ApiError::Internal {
        detail: format!("unknown {what} '{v}' in the local index"),
    })
}

fn parse_status(v: &str) -> Option<CProducerStatus> {
    match v {
        "active" => Some(CProducerStatus::Active),
        "closed" => Some(CProducerStatus::Closed),
        _ => None,
    }
}

fn parse_risk(v: &str) -> Option<CRiskLevel> {
    match v {
        "low" => Some(CRiskLevel::Low),
        "medium" => Some(CRiskLevel::Medium),
        "high" => Some(CRiskLevel::High),
        _ => None,
    }
}

fn parse_visit_status(v: &str) -> Option<CVisitStatus> {
    match v {
        "draft" => Some(CVisitStatus::Draft),
        "completed" => Some(CVisitStatus::Completed),
        _ => None,
    }
}

/// A producer row for lists.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProducerSummary {
    /// Record id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Phone.
    pub phone: String,
    /// Grid code.
    pub grid: String,
    /// Type.
    pub producer_type: ProducerType,
    /// Active or closed.
    pub status: ProducerStatus,
    /// Effective review state.
    pub review_state: ReviewState,
    /// Risk grade.
    pub risk: RiskLevel,
    /// Start of the last visit, if any.
    pub last_visit_ms: Option<i64>,
}

impl TryFrom<s::ProducerSummary> for ProducerSummary {
    type Error = ApiError;
    fn try_from(p: s::ProducerSummary) -> Result<Self, ApiError> {
        Ok(ProducerSummary {
            producer_type: parse_column("producer type", &p.producer_type, CProducerType::parse)?
                .into(),
            status: parse_column("status", &p.status, parse_status)?.into(),
            review_state: parse_column("review state", &p.review_state, CReviewState::parse)?
                .into(),
            risk: parse_column("risk", &p.risk, parse_risk)?.into(),
            id: p.id,
            name: p.name,
            owner: p.owner,
            phone: p.phone,
            grid: p.grid,
            last_visit_ms: p.last_visit_ms,
        })
    }
}

/// A producer due for patrol.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DueProducer {
    /// The producer.
    pub producer: ProducerSummary,
    /// Patrol interval that applies, in days.
    pub interval_days: i64,
    /// Days overdue (0 = due today or never visited).
    pub days_overdue: i64,
}

impl TryFrom<s::DueProducer> for DueProducer {
    type Error = ApiError;
    fn try_from(d: s::DueProducer) -> Result<Self, ApiError> {
        Ok(DueProducer {
            producer: d.producer.try_into()?,
            interval_days: d.interval_days,
            days_overdue: d.days_overdue,
        })
    }
}

/// A visit row in a producer's history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VisitSummary {
    /// Record id.
    pub id: String,
    /// Producer id.
    pub producer_id: String,
    /// Inspector.
    pub inspector: String,
    /// Start time.
    pub started_at_ms: i64,
    /// Draft or completed.
    pub status: VisitStatus,
    /// Whether a rectification is open.
    pub rectification_open: bool,
}

impl TryFrom<s::VisitSummary> for VisitSummary {
    type Error = ApiError;
    fn try_from(v: s::VisitSummary) -> Result<Self, ApiError> {
        Ok(VisitSummary {
            status: parse_column("visit status", &v.status, parse_visit_status)?.into(),
            id: v.id,
            producer_id: v.producer_id,
            inspector: v.inspector,
            started_at_ms: v.started_at_ms,
            rectification_open: v.rectification_open,
        })
    }
}

/// An open rectification.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RectificationItem {
    /// Visit that ordered it.
    pub visit_id: String,
    /// Producer id.
    pub producer_id: String,
    /// Producer name.
    pub producer_name: String,
    /// Deadline `YYYY-MM-DD`.
    pub deadline: String,
    /// Notice number.
    pub notice_number: String,
    /// Whether the deadline has passed.
    pub overdue: bool,
}

impl From<s::RectificationItem> for RectificationItem {
    fn from(r: s::RectificationItem) -> Self {
        RectificationItem {
            visit_id: r.visit_id,
            producer_id: r.producer_id,
            producer_name: r.producer_name,
            deadline: r.deadline,
            notice_number: r.notice_number,
            overdue: r.overdue,
        }
    }
}

/// Counts for the app's status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Counts {
    /// Producers on the device.
    pub producers: i64,
    /// Visits on the device.
    pub visits: i64,
    /// Records with local changes the server has not acknowledged.
    pub unsynced: i64,
    /// Records whose last push was rejected.
    pub rejected: i64,
    /// Records set aside because their bytes failed to load.
    pub corrupt: i64,
    /// Edits kept after their grid left the device.
    pub kept_edits: i64,
}

impl From<s::Counts> for Counts {
    fn from(c: s::Counts) -> Self {
        Counts {
            producers: c.producers,
            visits: c.visits,
            unsynced: c.unsynced,
            rejected: c.rejected,
            corrupt: c.corrupt,
            kept_edits: c.kept_edits,
        }
    }
}

// ---- conflicts, history, rejected and kept edits ----

/// Shows a field value as text: strings as they are, anything else as JSON.
fn value_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Two or more values written concurrently to the same field.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Conflict {
    /// Dotted path of the field (`phone`, `answers.drug_use.note`).
    pub path: String,
    /// The value the merge picked, as display text.
    pub winner: String,
    /// The values that lost, as display text.
    pub others: Vec<String>,
}

impl From<CoreConflict> for Conflict {
    fn from(c: CoreConflict) -> Self {
        Conflict {
            path: c.path,
            winner: value_text(c.winner),
            others: c.others.into_iter().map(value_text).collect(),
        }
    }
}

/// One change in a record's history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HistoryEntry {
    /// Change hash (hex).
    pub hash: String,
    /// Person id of the author.
    pub by: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Number of operations.
    pub ops: u64,
}

impl From<CoreHistoryEntry> for HistoryEntry {
    fn from(h: CoreHistoryEntry) -> Self {
        HistoryEntry {
            hash: h.hash,
            by: h.by,
            at_ms: h.at_ms,
            ops: h.ops as u64,
        }
    }
}

/// A local edit the server refused.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RejectedEdit {
    /// Record id.
    pub id: String,
    /// Kind of record.
    pub kind: RecordKind,
    /// Machine-readable code.
    pub code: String,
    /// Reason given by the server.
    pub reason: String,
}

impl RejectedEdit {
    /// Builds the row from the store's columns (the core type is not nameable outside it).
    pub(crate) fn from_parts(
        id: String,
        kind: &str,
        code: String,
        reason: String,
    ) -> Result<Self, ApiError> {
        Ok(RejectedEdit {
            kind: parse_column("record kind", kind, CRecordKind::parse)?.into(),
            id,
            code,
            reason,
        })
    }
}

/// An edit kept after its grid left the device, for export.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct KeptEdit {
    /// Record id.
    pub id: String,
    /// Kind of record.
    pub kind: RecordKind,
    /// Grid it belonged to.
    pub grid: String,
    /// The record as JSON, the export payload.
    pub export_json: String,
    /// Why it was kept.
    pub reason: String,
    /// When, ms since the Unix epoch.
    pub kept_at_ms: i64,
}

impl TryFrom<s::KeptEdit> for KeptEdit {
    type Error = ApiError;
    fn try_from(k: s::KeptEdit) -> Result<Self, ApiError> {
        Ok(KeptEdit {
            kind: parse_column("record kind", &k.kind, CRecordKind::parse)?.into(),
            id: k.id,
            grid: k.grid,
            export_json: k.record_json,
            reason: k.reason,
            kept_at_ms: k.kept_at_ms,
        })
    }
}
