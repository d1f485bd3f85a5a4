//! Patrol visits: answers, findings, rapid tests, rectifications.

use std::collections::HashMap;

use gridsync_core::model as m;
pub use m::{
    Acknowledgement, Finding, RapidTest, Rectification, Severity, TestMethod, Verdict, VisitReview,
    VisitStatus, YesNoNa,
};

use super::GeoPoint;

/// The value of one checklist answer; its variant must match the item's answer type
/// (hand-written: the core's variants are tuple variants, here they have named fields).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum AnswerValue {
    /// For yes / no / not applicable items.
    YesNo {
        /// The answer.
        answer: YesNoNa,
    },
    /// For number items.
    Number {
        /// The number.
        number: f64,
    },
    /// For text items.
    Text {
        /// The text.
        text: String,
    },
    /// For single-choice items.
    Choice {
        /// The option id.
        option_id: String,
    },
    /// For multiple-choice items.
    Choices {
        /// The option ids.
        option_ids: Vec<String>,
    },
    /// For photo items.
    Photos {
        /// Photo references.
        photos: Vec<String>,
    },
}

impl From<m::AnswerValue> for AnswerValue {
    fn from(v: m::AnswerValue) -> Self {
        match v {
            m::AnswerValue::YesNo(answer) => AnswerValue::YesNo { answer },
            m::AnswerValue::Number(number) => AnswerValue::Number { number },
            m::AnswerValue::Text(text) => AnswerValue::Text { text },
            m::AnswerValue::Choice(option_id) => AnswerValue::Choice { option_id },
            m::AnswerValue::Choices(option_ids) => AnswerValue::Choices { option_ids },
            m::AnswerValue::Photos(photos) => AnswerValue::Photos { photos },
        }
    }
}

impl From<AnswerValue> for m::AnswerValue {
    fn from(v: AnswerValue) -> Self {
        match v {
            AnswerValue::YesNo { answer } => m::AnswerValue::YesNo(answer),
            AnswerValue::Number { number } => m::AnswerValue::Number(number),
            AnswerValue::Text { text } => m::AnswerValue::Text(text),
            AnswerValue::Choice { option_id } => m::AnswerValue::Choice(option_id),
            AnswerValue::Choices { option_ids } => m::AnswerValue::Choices(option_ids),
            AnswerValue::Photos { photos } => m::AnswerValue::Photos(photos),
        }
    }
}

/// An answer with an optional remark (hand-written because it holds an `AnswerValue`).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Answer {
    /// The value.
    pub value: AnswerValue,
    /// Remark by the inspector.
    #[uniffi(default = None)]
    pub note: Option<String>,
}

impl From<m::Answer> for Answer {
    fn from(a: m::Answer) -> Self {
        Answer {
            value: a.value.into(),
            note: a.note,
        }
    }
}

impl From<Answer> for m::Answer {
    fn from(a: Answer) -> Self {
        m::Answer {
            value: a.value.into(),
            note: a.note,
        }
    }
}

/// A finding to add to a visit; id, author and time are filled in (input only).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewFinding {
    /// What was found.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// Checklist item it relates to.
    #[uniffi(default = None)]
    pub item_id: Option<String>,
    /// Photo references.
    #[uniffi(default = [])]
    pub photos: Vec<String>,
}

impl NewFinding {
    /// The core finding, recorded by `person` at `now_ms`.
    pub(crate) fn into_core(self, person: &str, now_ms: i64) -> m::Finding {
        m::Finding {
            id: gridsync_core::new_id(),
            item_id: self.item_id,
            description: self.description,
            severity: self.severity,
            photos: self.photos,
            recorded_by: person.to_string(),
            recorded_at_ms: now_ms,
        }
    }
}

/// A rapid test to add to a visit; id, operator and time are filled in (input only).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NewRapidTest {
    /// Sample taken (e.g. 菠菜, 羊尿).
    pub sample: String,
    /// Test item (e.g. 克伦特罗).
    pub item: String,
    /// Method.
    pub method: TestMethod,
    /// Verdict.
    pub verdict: Verdict,
    /// Kit name and maker.
    #[uniffi(default = "")]
    pub kit: String,
    /// Measured value, if the method gives one.
    #[uniffi(default = None)]
    pub value: Option<f64>,
    /// Unit of the value.
    #[uniffi(default = None)]
    pub unit: Option<String>,
}

impl NewRapidTest {
    /// The core rapid test, run by `person` at `now_ms`.
    pub(crate) fn into_core(self, person: &str, now_ms: i64) -> m::RapidTest {
        m::RapidTest {
            id: gridsync_core::new_id(),
            sample: self.sample,
            item: self.item,
            method: self.method,
            kit: self.kit,
            value: self.value,
            unit: self.unit,
            verdict: self.verdict,
            operator: person.to_string(),
            tested_at_ms: now_ms,
        }
    }
}

/// A rectification to order: deadline and notice number (input only).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewRectification {
    /// Deadline `YYYY-MM-DD`.
    pub deadline: String,
    /// Notice number (整改通知书编号).
    pub notice_number: String,
}

impl From<NewRectification> for m::Rectification {
    fn from(r: NewRectification) -> Self {
        m::Rectification {
            required: true,
            deadline: r.deadline,
            notice_number: r.notice_number,
            resolved_at_ms: None,
        }
    }
}

/// A patrol visit to a producer (巡查记录) (hand-written: the core keeps answers in a
/// `BTreeMap`, which uniffi does not carry, of `Answer`s).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Visit {
    /// Stable identifier, made offline.
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
    /// Start, ms since the Unix epoch.
    pub started_at_ms: i64,
    /// End, ms since the Unix epoch.
    pub ended_at_ms: Option<i64>,
    /// Where the visit took place.
    pub location: Option<GeoPoint>,
    /// Answers by checklist item id.
    pub answers: HashMap<String, Answer>,
    /// Findings.
    pub findings: Vec<Finding>,
    /// Rapid tests.
    pub rapid_tests: Vec<RapidTest>,
    /// Rectification ordered, if any.
    pub rectification: Option<Rectification>,
    /// The visit this one follows up.
    pub follow_up_of: Option<String>,
    /// The follow-up visit, once made.
    pub follow_up_visit: Option<String>,
    /// Producer's acknowledgement.
    pub acknowledgement: Option<Acknowledgement>,
    /// Draft or completed.
    pub status: VisitStatus,
    /// Review, if any (read-only: added through `review_visit`).
    pub review: Option<VisitReview>,
    /// Last edit, ms since the Unix epoch.
    pub updated_at_ms: i64,
}

impl From<m::Visit> for Visit {
    fn from(v: m::Visit) -> Self {
        Visit {
            id: v.id,
            producer_id: v.producer_id,
            grid: v.grid,
            inspector: v.inspector,
            template_id: v.template_id,
            template_version: v.template_version,
            started_at_ms: v.started_at_ms,
            ended_at_ms: v.ended_at_ms,
            location: v.location,
            answers: v.answers.into_iter().map(|(k, a)| (k, a.into())).collect(),
            findings: v.findings,
            rapid_tests: v.rapid_tests,
            rectification: v.rectification,
            follow_up_of: v.follow_up_of,
            follow_up_visit: v.follow_up_visit,
            acknowledgement: v.acknowledgement,
            status: v.status,
            review: v.review,
            updated_at_ms: v.updated_at_ms,
        }
    }
}

impl From<Visit> for m::Visit {
    fn from(v: Visit) -> Self {
        m::Visit {
            id: v.id,
            producer_id: v.producer_id,
            grid: v.grid,
            inspector: v.inspector,
            template_id: v.template_id,
            template_version: v.template_version,
            started_at_ms: v.started_at_ms,
            ended_at_ms: v.ended_at_ms,
            location: v.location,
            answers: v.answers.into_iter().map(|(k, a)| (k, a.into())).collect(),
            findings: v.findings,
            rapid_tests: v.rapid_tests,
            rectification: v.rectification,
            follow_up_of: v.follow_up_of,
            follow_up_visit: v.follow_up_visit,
            acknowledgement: v.acknowledgement,
            status: v.status,
            review: v.review,
            updated_at_ms: v.updated_at_ms,
        }
    }
}

/// What a liaison records to open a visit (`GridStore.create_visit`) (input only).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NewVisit {
    /// Producer visited.
    pub producer_id: String,
    /// Answers by checklist item id (may be empty and filled in later).
    pub answers: HashMap<String, Answer>,
    /// Template id; the built-in daily patrol template when not given.
    #[uniffi(default = None)]
    pub template_id: Option<String>,
    /// Template version; the newest on the device when not given.
    #[uniffi(default = None)]
    pub template_version: Option<u32>,
    /// Where the visit takes place.
    #[uniffi(default = None)]
    pub location: Option<GeoPoint>,
    /// Findings.
    #[uniffi(default = [])]
    pub findings: Vec<NewFinding>,
    /// Rapid tests.
    #[uniffi(default = [])]
    pub rapid_tests: Vec<NewRapidTest>,
    /// Rectification ordered.
    #[uniffi(default = None)]
    pub rectification: Option<NewRectification>,
    /// The visit this one follows up.
    #[uniffi(default = None)]
    pub follow_up_of: Option<String>,
}
