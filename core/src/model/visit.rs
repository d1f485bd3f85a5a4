//! Patrol visits (巡查记录): answers, findings, rapid tests and rectifications.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::producer::GeoPoint;

/// Yes / no / not applicable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum YesNoNa {
    /// 是.
    Yes,
    /// 否.
    No,
    /// 不适用.
    NotApplicable,
}

/// The value of one checklist answer; its variant must match the item's answer type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum AnswerValue {
    /// For yes / no / not applicable items.
    YesNo(YesNoNa),
    /// For number items.
    Number(f64),
    /// For text items.
    Text(String),
    /// For single-choice items: the option id.
    Choice(String),
    /// For multiple-choice items: option ids.
    Choices(Vec<String>),
    /// For photo items: photo references.
    Photos(Vec<String>),
}

/// An answer with an optional remark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The value.
    pub value: AnswerValue,
    /// Remark by the inspector.
    pub note: Option<String>,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// To be corrected on the spot.
    Minor,
    /// Needs a rectification notice.
    Major,
    /// Referred to the county enforcement team (综合执法).
    Serious,
}

/// A problem found during the visit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Finding {
    /// Unique id, so that findings added concurrently merge as separate entries.
    pub id: String,
    /// Checklist item it relates to, if any.
    pub item_id: Option<String>,
    /// What was found.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// Photo references.
    #[serde(default)]
    pub photos: Vec<String>,
    /// Who recorded it.
    pub recorded_by: String,
    /// When, milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
}

/// Rapid-test method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum TestMethod {
    /// 酶抑制法 (organophosphate/carbamate residues).
    EnzymeInhibition,
    /// 胶体金试纸条.
    ColloidalGold,
    /// Other method, described in the kit field.
    Other,
}

/// Verdict of a rapid test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// 合格.
    Pass,
    /// 不合格.
    Fail,
    /// 疑似.
    Suspect,
}

/// One rapid test (速测).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct RapidTest {
    /// Unique id.
    pub id: String,
    /// Sample taken (e.g. 菠菜, 羊尿).
    pub sample: String,
    /// Test item (e.g. 克伦特罗).
    pub item: String,
    /// Method.
    pub method: TestMethod,
    /// Kit name and maker.
    pub kit: String,
    /// Measured value, if the method gives one.
    pub value: Option<f64>,
    /// Unit of the value (e.g. %, μg/kg).
    pub unit: Option<String>,
    /// Verdict.
    pub verdict: Verdict,
    /// Operator (person id).
    pub operator: String,
    /// When, milliseconds since the Unix epoch.
    pub tested_at_ms: i64,
}

/// Rectification ordered after the visit (整改通知).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Rectification {
    /// Whether rectification is required.
    pub required: bool,
    /// Deadline, `YYYY-MM-DD`.
    pub deadline: String,
    /// Notice number (整改通知书编号).
    pub notice_number: String,
    /// When the follow-up found it done, milliseconds since the Unix epoch.
    pub resolved_at_ms: Option<i64>,
}

/// Producer's acknowledgement of the visit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Acknowledgement {
    /// Name of the person who signed.
    pub signed_by: String,
    /// Photo reference of the signature.
    pub signature_photo: Option<String>,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A supervisor's or county reviewer's review of a completed visit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct VisitReview {
    /// Reviewer (person id).
    pub by: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Comment.
    pub comment: String,
}

/// Draft while being recorded; completed once closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum VisitStatus {
    /// Being recorded.
    Draft,
    /// Closed; only a follow-up link or a review may be added.
    Completed,
}

impl VisitStatus {
    /// Stable identifier (the serde name), stored in the `visits` table.
    pub fn as_str(self) -> &'static str {
        match self {
            VisitStatus::Draft => "draft",
            VisitStatus::Completed => "completed",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => VisitStatus::Draft,
            "completed" => VisitStatus::Completed,
            _ => return None,
        })
    }
}

/// A patrol visit to a producer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// Stable identifier (UUID v7), created offline.
    pub id: String,
    /// Producer visited.
    pub producer_id: String,
    /// Grid of the producer at the time of the visit.
    pub grid: String,
    /// Inspector (person id).
    pub inspector: String,
    /// Template id.
    pub template_id: String,
    /// Template version.
    pub template_version: u32,
    /// Start, milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// End, milliseconds since the Unix epoch.
    pub ended_at_ms: Option<i64>,
    /// Where the visit took place.
    pub location: Option<GeoPoint>,
    /// Answers by item id.
    #[serde(default)]
    pub answers: BTreeMap<String, Answer>,
    /// Findings.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Rapid tests.
    #[serde(default)]
    pub rapid_tests: Vec<RapidTest>,
    /// Rectification ordered, if any.
    pub rectification: Option<Rectification>,
    /// The visit this one follows up, if any.
    pub follow_up_of: Option<String>,
    /// The follow-up visit, once made.
    pub follow_up_visit: Option<String>,
    /// Producer's acknowledgement.
    pub acknowledgement: Option<Acknowledgement>,
    /// Draft or completed.
    pub status: VisitStatus,
    /// Review by a supervisor or county reviewer.
    pub review: Option<VisitReview>,
    /// Last edit, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

impl Visit {
    /// A new draft visit.
    pub fn new(
        producer_id: impl Into<String>,
        grid: impl Into<String>,
        inspector: impl Into<String>,
        template: &super::template::ChecklistTemplate,
        now_ms: i64,
    ) -> Self {
        Visit {
            id: crate::new_id(),
            producer_id: producer_id.into(),
            grid: grid.into(),
            inspector: inspector.into(),
            template_id: template.template_id.clone(),
            template_version: template.version,
            started_at_ms: now_ms,
            ended_at_ms: None,
            location: None,
            answers: BTreeMap::new(),
            findings: Vec::new(),
            rapid_tests: Vec::new(),
            rectification: None,
            follow_up_of: None,
            follow_up_visit: None,
            acknowledgement: None,
            status: VisitStatus::Draft,
            review: None,
            updated_at_ms: now_ms,
        }
    }

    /// Whether a rectification is open (required and not yet resolved).
    pub fn rectification_open(&self) -> bool {
        self.rectification
            .as_ref()
            .is_some_and(|r| r.required && r.resolved_at_ms.is_none())
    }
}
