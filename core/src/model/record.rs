//! The record envelope: the kinds of record that live as Automerge documents.

use serde::{Deserialize, Serialize};

use super::{Acceptance, ChecklistTemplate, Producer, Visit};

/// Version of the record layout inside each document (`_schema` key).
pub const RECORD_SCHEMA_VERSION: u64 = 1;

/// The kind of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A producer in the directory.
    Producer,
    /// A patrol visit.
    Visit,
    /// A checklist template version.
    Template,
    /// A township acceptance decision (达标验收).
    Acceptance,
}

impl RecordKind {
    /// Stable identifier, stored in documents, the database and the wire format.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Producer => "producer",
            RecordKind::Visit => "visit",
            RecordKind::Template => "template",
            RecordKind::Acceptance => "acceptance",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "producer" => RecordKind::Producer,
            "visit" => RecordKind::Visit,
            "template" => RecordKind::Template,
            "acceptance" => RecordKind::Acceptance,
            _ => return None,
        })
    }

    /// Compact tag used on the wire.
    pub fn tag(self) -> u8 {
        match self {
            RecordKind::Producer => 1,
            RecordKind::Visit => 2,
            RecordKind::Template => 3,
            RecordKind::Acceptance => 4,
        }
    }

    /// Parses a wire tag.
    pub fn from_tag(t: u8) -> Option<Self> {
        Some(match t {
            1 => RecordKind::Producer,
            2 => RecordKind::Visit,
            3 => RecordKind::Template,
            4 => RecordKind::Acceptance,
            _ => return None,
        })
    }

    /// Whether records of this kind are also read by people below their grid: checklist
    /// templates (a county's or the region's) and township acceptance decisions (the
    /// liaisons of the township's villages see them). Written only in scope.
    pub fn read_from_below(self) -> bool {
        matches!(self, RecordKind::Template | RecordKind::Acceptance)
    }
}

/// Any record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// A producer.
    Producer(Producer),
    /// A visit.
    Visit(Visit),
    /// A checklist template version.
    Template(ChecklistTemplate),
    /// A township acceptance decision.
    Acceptance(Acceptance),
}

impl Record {
    /// Record id.
    pub fn id(&self) -> &str {
        match self {
            Record::Producer(p) => &p.id,
            Record::Visit(v) => &v.id,
            Record::Template(t) => &t.id,
            Record::Acceptance(a) => &a.id,
        }
    }

    /// Kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Producer(_) => RecordKind::Producer,
            Record::Visit(_) => RecordKind::Visit,
            Record::Template(_) => RecordKind::Template,
            Record::Acceptance(_) => RecordKind::Acceptance,
        }
    }

    /// The grid whose feed carries the record.
    pub fn grid(&self) -> &str {
        match self {
            Record::Producer(p) => &p.grid,
            Record::Visit(v) => &v.grid,
            Record::Template(t) => &t.grid,
            Record::Acceptance(a) => &a.grid,
        }
    }

    /// The fields as a JSON value (the shape stored in the document).
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            Record::Producer(p) => serde_json::to_value(p),
            Record::Visit(v) => serde_json::to_value(v),
            Record::Template(t) => serde_json::to_value(t),
            Record::Acceptance(a) => serde_json::to_value(a),
        };
        // Serializing plain structs with string keys cannot fail.
        v.unwrap_or(serde_json::Value::Null)
    }

    /// Builds a typed record from the JSON shape stored in a document.
    pub fn from_json(kind: RecordKind, v: serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            RecordKind::Producer => Record::Producer(serde_json::from_value(v)?),
            RecordKind::Visit => Record::Visit(serde_json::from_value(v)?),
            RecordKind::Template => Record::Template(serde_json::from_value(v)?),
            RecordKind::Acceptance => Record::Acceptance(serde_json::from_value(v)?),
        })
    }
}
