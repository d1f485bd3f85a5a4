//! Query rows, counts, conflicts, history, rejected and kept edits.

use gridsync_core::doc::{Conflict as CoreConflict, HistoryEntry as CoreHistoryEntry};
pub use gridsync_core::model::RecordKind;
use gridsync_core::store as s;
pub use s::{Counts, ProducerSort, RectificationItem};

use super::{ProducerStatus, ProducerType, ReviewState, RiskLevel, VisitStatus};
use crate::error::ApiError;

/// Parses a stable identifier read from the store's query tables.
fn parse_column<T>(what: &str, v: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, ApiError> {
    f(v).ok_or_else(|| ApiError::Internal {
        detail: format!("unknown {what} '{v}' in the local index"),
    })
}

/// A producer row for lists (hand-written: the core's row holds the stored string columns,
/// here they are enums).
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
            producer_type: parse_column("producer type", &p.producer_type, ProducerType::parse)?,
            status: parse_column("status", &p.status, ProducerStatus::parse)?,
            review_state: parse_column("review state", &p.review_state, ReviewState::parse)?,
            risk: parse_column("risk", &p.risk, RiskLevel::parse)?,
            id: p.id,
            name: p.name,
            owner: p.owner,
            phone: p.phone,
            grid: p.grid,
            last_visit_ms: p.last_visit_ms,
        })
    }
}

/// A producer due for patrol (hand-written because it holds a `ProducerSummary`).
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

/// A visit row in a producer's history (hand-written: the status is a string column in the
/// core's row).
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
            status: parse_column("visit status", &v.status, VisitStatus::parse)?,
            id: v.id,
            producer_id: v.producer_id,
            inspector: v.inspector,
            started_at_ms: v.started_at_ms,
            rectification_open: v.rectification_open,
        })
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

/// Two or more values written concurrently to the same field (hand-written: the core holds
/// JSON values, shown here as text).
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

/// One change in a record's history (hand-written: the core counts ops in a `usize`).
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

/// A local edit the server refused (hand-written: the core's row is private to the store and
/// holds the kind as a string).
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
            kind: parse_column("record kind", kind, RecordKind::parse)?,
            id,
            code,
            reason,
        })
    }
}

/// An edit kept after its grid left the device, for export (hand-written: the core holds the
/// kind as a string and names the payload `record_json`).
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
            kind: parse_column("record kind", &k.kind, RecordKind::parse)?,
            id: k.id,
            grid: k.grid,
            export_json: k.record_json,
            reason: k.reason,
            kept_at_ms: k.kept_at_ms,
        })
    }
}
