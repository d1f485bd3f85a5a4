//! Township acceptance (达标验收): the county's dated decision whether a township-level grid
//! is compliant in a year. One record per township and year (its id names both); a later
//! decision for the same year (a re-inspection, a withdrawal) changes that record, and the
//! document's history keeps every earlier one with who made it and when.

use serde::{Deserialize, Serialize};

/// What the county decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum AcceptanceDecision {
    /// 达标: the township is accepted as compliant.
    Accepted,
    /// 未达标: inspected and not accepted.
    NotAccepted,
    /// 撤销: an earlier acceptance is withdrawn.
    Withdrawn,
}

impl AcceptanceDecision {
    /// Every decision, in the order forms list them.
    pub const ALL: [AcceptanceDecision; 3] = [
        AcceptanceDecision::Accepted,
        AcceptanceDecision::NotAccepted,
        AcceptanceDecision::Withdrawn,
    ];

    /// Stable identifier, stored in documents and query tables.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptanceDecision::Accepted => "accepted",
            AcceptanceDecision::NotAccepted => "not_accepted",
            AcceptanceDecision::Withdrawn => "withdrawn",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "accepted" => AcceptanceDecision::Accepted,
            "not_accepted" => AcceptanceDecision::NotAccepted,
            "withdrawn" => AcceptanceDecision::Withdrawn,
            _ => return None,
        })
    }

    /// Chinese label shown to staff.
    pub fn label_zh(self) -> &'static str {
        match self {
            AcceptanceDecision::Accepted => "达标",
            AcceptanceDecision::NotAccepted => "未达标",
            AcceptanceDecision::Withdrawn => "撤销",
        }
    }
}

/// The county's acceptance decision on a township for a year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Acceptance {
    /// Record id: `acc:{grid}:{year}` ([`Acceptance::record_id`]).
    pub id: String,
    /// Code of the township-level grid decided on (the feed that carries the record).
    pub grid: String,
    /// The programme year the decision is for.
    pub year: i32,
    /// The decision.
    pub decision: AcceptanceDecision,
    /// When it was decided, `YYYY-MM-DD`.
    pub decided_on: String,
    /// Person id of who decided (a county reviewer, or an administrator entering it).
    pub decided_by: String,
    /// The basis of the decision (inspection notes, document number).
    #[serde(default)]
    pub note: String,
    /// Last edit, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

impl Acceptance {
    /// The record id of the decision on `grid` for `year`.
    pub fn record_id(grid: &str, year: i32) -> String {
        format!("acc:{grid}:{year}")
    }

    /// Whether the township counts as compliant by this decision.
    pub fn is_accepted(&self) -> bool {
        self.decision == AcceptanceDecision::Accepted
    }
}
