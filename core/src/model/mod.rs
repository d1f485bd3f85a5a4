//! The typed record model: grid tree, people, producers, checklist templates, visits,
//! township acceptance decisions.

mod acceptance;
mod grid;
mod person;
mod producer;
mod record;
mod template;
mod visit;

pub use acceptance::{Acceptance, AcceptanceDecision};
pub use grid::{GridKind, GridLevel, GridNode};
pub use person::{Actor, Person, Role};
pub use producer::{
    CarriedEdit, Certification, DirectoryReview, DuplicateMark, DuplicateOutcome,
    DuplicateResolution, GeoPoint, LivestockCount, MergedInto, Producer, ProducerStatus,
    ProducerType, ResponsibilityLetter, ReviewAction, ReviewEvent, ReviewState, RiskLevel, Scale,
    SeenField, Species, YearConfirmation, CARRIED_EDITS_KEY, CONFIRMATIONS_KEY, DIRECTORY_FIELDS,
    DUPLICATES_KEY, MERGED_INTO_KEY,
};
pub use record::{Record, RecordKind, RECORD_SCHEMA_VERSION};
pub use template::{
    default_template, AnswerType, ChecklistItem, ChecklistTemplate, ChoiceOption,
    DEFAULT_TEMPLATE_ID,
};
pub use visit::{
    Acknowledgement, Answer, AnswerValue, Finding, RapidTest, Rectification, Severity, TestMethod,
    Verdict, Visit, VisitReview, VisitStatus, YesNoNa,
};
