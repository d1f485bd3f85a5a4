//! Checklist templates: versioned lists of patrol items with stable ids.

use serde::{Deserialize, Serialize};

use super::producer::ProducerType;

/// One choice of a single- or multiple-choice item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ChoiceOption {
    /// Stable identifier stored in answers.
    pub id: String,
    /// Chinese label shown to field staff.
    pub label_zh: String,
}

/// What kind of answer an item takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum AnswerType {
    /// 是 / 否 / 不适用.
    YesNoNa,
    /// A number in a unit, optionally bounded.
    Number {
        /// Unit shown after the number (e.g. 头, 亩, %).
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
    /// References to photos taken on the device.
    Photo,
}

/// One item of a checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub applies_to: Vec<ProducerType>,
}

impl ChecklistItem {
    /// Whether the item applies to a producer type.
    pub fn applies(&self, t: ProducerType) -> bool {
        self.applies_to.is_empty() || self.applies_to.contains(&t)
    }
}

/// A versioned checklist template. A new version is a new record; visits pin a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecklistTemplate {
    /// Record id: `tpl:{template_id}:{version}`.
    pub id: String,
    /// Stable template identifier shared by all versions.
    pub template_id: String,
    /// Version number, from 1.
    pub version: u32,
    /// Chinese title.
    pub name_zh: String,
    /// Grid node (county or above) that owns the template.
    pub grid: String,
    /// Items in display order.
    pub items: Vec<ChecklistItem>,
}

impl ChecklistTemplate {
    /// The record id of a template version.
    pub fn record_id(template_id: &str, version: u32) -> String {
        format!("tpl:{template_id}:{version}")
    }

    /// Looks up an item by id.
    pub fn item(&self, id: &str) -> Option<&ChecklistItem> {
        self.items.iter().find(|i| i.id == id)
    }
}

/// Stable id of the built-in daily patrol template.
pub const DEFAULT_TEMPLATE_ID: &str = "moa-daily-patrol";

fn yes_no(id: &str, text: &str) -> ChecklistItem {
    ChecklistItem {
        id: id.into(),
        text_zh: text.into(),
        answer: AnswerType::YesNoNa,
        required: true,
        applies_to: Vec::new(),
    }
}

/// The built-in template with the seven patrol items the MOA daily patrol specification
/// mandates, plus common optional items. `grid` is the node that owns it (usually the region).
pub fn default_template(grid: &str) -> ChecklistTemplate {
    let mut items = vec![
        yes_no("production_records", "生产记录制度落实情况：是否建立并如实填写生产记录"),
        yes_no("input_purchase", "农业投入品购买管理情况：是否从正规渠道购买并建立购买台账"),
        yes_no(
            "drug_use",
            "农药兽药使用情况：无超范围、超剂量使用，严格执行安全间隔期/休药期，未使用禁限用药物及非法添加物",
        ),
        yes_no("additives", "保鲜剂、防腐剂、添加剂使用情况是否合规"),
        yes_no("input_waste", "农业投入品废弃物是否按规定回收处置"),
        yes_no("compliance_certificate", "承诺达标合格证和追溯凭证开具、使用情况是否规范"),
        ChecklistItem {
            id: "other".into(),
            text_zh: "其他情况".into(),
            answer: AnswerType::Text { max_chars: 500 },
            required: true,
            applies_to: Vec::new(),
        },
    ];
    items.push(ChecklistItem {
        id: "packaging_labels".into(),
        text_zh: "包装标识是否规范".into(),
        answer: AnswerType::YesNoNa,
        required: false,
        applies_to: vec![
            ProducerType::Enterprise,
            ProducerType::Cooperative,
            ProducerType::InputDealer,
        ],
    });
    items.push(ChecklistItem {
        id: "quarantine_certificate".into(),
        text_zh: "动物检疫合格证明是否齐全".into(),
        answer: AnswerType::YesNoNa,
        required: false,
        applies_to: vec![
            ProducerType::FamilyRanch,
            ProducerType::LargeHousehold,
            ProducerType::Enterprise,
            ProducerType::Cooperative,
            ProducerType::Purchaser,
        ],
    });
    items.push(ChecklistItem {
        id: "site_photos".into(),
        text_zh: "现场照片".into(),
        answer: AnswerType::Photo,
        required: false,
        applies_to: Vec::new(),
    });
    ChecklistTemplate {
        id: ChecklistTemplate::record_id(DEFAULT_TEMPLATE_ID, 1),
        template_id: DEFAULT_TEMPLATE_ID.into(),
        version: 1,
        name_zh: "农畜产品质量安全日常巡查表".into(),
        grid: grid.into(),
        items,
    }
}
