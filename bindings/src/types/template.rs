//! Checklist templates.

use gridsync_core::model as m;

pub use m::ChoiceOption;

use super::ProducerType;

/// What kind of answer a checklist item takes (hand-written although shaped like the core's:
/// Kotlin reaches the cases of an enum with fields (`AnswerType.Number`) only through its
/// own package, not through the `org.gridsync` typealiases).
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum AnswerType {
    /// 是 / 否 / 不适用.
    YesNoNa,
    /// A number in a unit, optionally bounded.
    Number {
        /// Unit shown after the number.
        unit: String,
        /// Smallest allowed value.
        min: Option<f64>,
        /// Largest allowed value.
        max: Option<f64>,
    },
    /// Free text.
    Text {
        /// Longest allowed answer in characters.
        max_chars: u32,
    },
    /// Exactly one of the options.
    SingleChoice {
        /// The options.
        options: Vec<ChoiceOption>,
    },
    /// Any number of the options.
    MultiChoice {
        /// The options.
        options: Vec<ChoiceOption>,
    },
    /// Photo references.
    Photo,
}

impl From<m::AnswerType> for AnswerType {
    fn from(a: m::AnswerType) -> Self {
        match a {
            m::AnswerType::YesNoNa => AnswerType::YesNoNa,
            m::AnswerType::Number { unit, min, max } => AnswerType::Number { unit, min, max },
            m::AnswerType::Text { max_chars } => AnswerType::Text { max_chars },
            m::AnswerType::SingleChoice { options } => AnswerType::SingleChoice { options },
            m::AnswerType::MultiChoice { options } => AnswerType::MultiChoice { options },
            m::AnswerType::Photo => AnswerType::Photo,
        }
    }
}

impl From<AnswerType> for m::AnswerType {
    fn from(a: AnswerType) -> Self {
        match a {
            AnswerType::YesNoNa => m::AnswerType::YesNoNa,
            AnswerType::Number { unit, min, max } => m::AnswerType::Number { unit, min, max },
            AnswerType::Text { max_chars } => m::AnswerType::Text { max_chars },
            AnswerType::SingleChoice { options } => m::AnswerType::SingleChoice { options },
            AnswerType::MultiChoice { options } => m::AnswerType::MultiChoice { options },
            AnswerType::Photo => m::AnswerType::Photo,
        }
    }
}

/// One item of a checklist (hand-written because it holds an `AnswerType`).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChecklistItem {
    /// Stable identifier, the key of the answer in a visit.
    pub id: String,
    /// Chinese text shown to field staff.
    pub text_zh: String,
    /// Answer type.
    pub answer: AnswerType,
    /// Whether a visit cannot be completed without an answer.
    pub required: bool,
    /// Producer types the item applies to; empty means all.
    pub applies_to: Vec<ProducerType>,
}

/// A versioned checklist template (hand-written because it holds `ChecklistItem`s).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChecklistTemplate {
    /// Record id `tpl:{template_id}:{version}`.
    pub id: String,
    /// Stable template identifier shared by all versions.
    pub template_id: String,
    /// Version, from 1.
    pub version: u32,
    /// Chinese title.
    pub name_zh: String,
    /// Grid node that owns the template.
    pub grid: String,
    /// Items in display order.
    pub items: Vec<ChecklistItem>,
}

impl From<m::ChecklistTemplate> for ChecklistTemplate {
    fn from(t: m::ChecklistTemplate) -> Self {
        ChecklistTemplate {
            id: t.id,
            template_id: t.template_id,
            version: t.version,
            name_zh: t.name_zh,
            grid: t.grid,
            items: t
                .items
                .into_iter()
                .map(|i| ChecklistItem {
                    id: i.id,
                    text_zh: i.text_zh,
                    answer: i.answer.into(),
                    required: i.required,
                    applies_to: i.applies_to,
                })
                .collect(),
        }
    }
}
