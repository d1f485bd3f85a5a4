//! Producers in the directory and their review chain.

use std::collections::BTreeMap;

use gridsync_core::model as m;
pub use m::{
    Certification, GeoPoint, ProducerStatus, ProducerType, ResponsibilityLetter, ReviewState,
    RiskLevel, Species,
};

/// Animals of one species: on hand and sold per year (the core keys counts by species in a
/// map, which uniffi cannot key by an enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct LivestockEntry {
    /// Species.
    pub species: Species,
    /// Head on hand (存栏).
    #[uniffi(default = None)]
    pub on_hand: Option<u32>,
    /// Head sold per year (年出栏).
    #[uniffi(default = None)]
    pub sold_per_year: Option<u32>,
}

/// Size of a producer's operation (hand-written: livestock is a list here, a map keyed by
/// species in the core).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Scale {
    /// Crop area in mu (亩).
    #[uniffi(default = None)]
    pub crop_area_mu: Option<f64>,
    /// Animals by species (one entry per species).
    #[uniffi(default = [])]
    pub livestock: Vec<LivestockEntry>,
}

impl From<m::Scale> for Scale {
    fn from(s: m::Scale) -> Self {
        Scale {
            crop_area_mu: s.crop_area_mu,
            livestock: s
                .livestock
                .into_iter()
                .map(|(species, c)| LivestockEntry {
                    species,
                    on_hand: c.on_hand,
                    sold_per_year: c.sold_per_year,
                })
                .collect(),
        }
    }
}

impl From<Scale> for m::Scale {
    fn from(s: Scale) -> Self {
        let livestock: BTreeMap<Species, m::LivestockCount> = s
            .livestock
            .into_iter()
            .map(|e| {
                (
                    e.species,
                    m::LivestockCount {
                        on_hand: e.on_hand,
                        sold_per_year: e.sold_per_year,
                    },
                )
            })
            .collect();
        m::Scale {
            crop_area_mu: s.crop_area_mu,
            livestock,
        }
    }
}

/// A step recorded in a directory entry's review history (hand-written: the core's
/// `Return(String)` is a tuple variant; here it is `Return { reason }`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ReviewAction {
    /// Sent for review.
    Submit,
    /// Approved by the township supervisor.
    ApproveTownship,
    /// Approved by the county reviewer.
    ApproveCounty,
    /// Returned with a reason.
    Return {
        /// Why it was returned.
        reason: String,
    },
    /// Recorded automatically when an approved entry's directory fields were edited.
    EditedAfterApproval,
    /// Recorded automatically when a returned entry was edited.
    EditedAfterReturn,
}

impl From<m::ReviewAction> for ReviewAction {
    fn from(a: m::ReviewAction) -> Self {
        match a {
            m::ReviewAction::Submit => ReviewAction::Submit,
            m::ReviewAction::ApproveTownship => ReviewAction::ApproveTownship,
            m::ReviewAction::ApproveCounty => ReviewAction::ApproveCounty,
            m::ReviewAction::Return(reason) => ReviewAction::Return { reason },
            m::ReviewAction::EditedAfterApproval => ReviewAction::EditedAfterApproval,
            m::ReviewAction::EditedAfterReturn => ReviewAction::EditedAfterReturn,
        }
    }
}

impl From<ReviewAction> for m::ReviewAction {
    fn from(a: ReviewAction) -> Self {
        match a {
            ReviewAction::Submit => m::ReviewAction::Submit,
            ReviewAction::ApproveTownship => m::ReviewAction::ApproveTownship,
            ReviewAction::ApproveCounty => m::ReviewAction::ApproveCounty,
            ReviewAction::Return { reason } => m::ReviewAction::Return(reason),
            ReviewAction::EditedAfterApproval => m::ReviewAction::EditedAfterApproval,
            ReviewAction::EditedAfterReturn => m::ReviewAction::EditedAfterReturn,
        }
    }
}

/// A step a person asks for in the review chain (`GridStore.review_producer`): the
/// requestable subset of `ReviewAction` (input only).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ReviewStep {
    /// Liaison or supervisor sends a draft or returned entry for review.
    Submit,
    /// Township supervisor approves a submitted entry.
    ApproveTownship,
    /// County reviewer approves a township-approved entry.
    ApproveCounty,
    /// Supervisor or county reviewer returns the entry with a reason.
    Return {
        /// Why it is returned (required).
        reason: String,
    },
}

impl From<ReviewStep> for m::ReviewAction {
    fn from(s: ReviewStep) -> Self {
        match s {
            ReviewStep::Submit => m::ReviewAction::Submit,
            ReviewStep::ApproveTownship => m::ReviewAction::ApproveTownship,
            ReviewStep::ApproveCounty => m::ReviewAction::ApproveCounty,
            ReviewStep::Return { reason } => m::ReviewAction::Return(reason),
        }
    }
}

/// One step of the review history (hand-written because it holds a `ReviewAction`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReviewEvent {
    /// Unique id.
    pub id: String,
    /// What was done.
    pub action: ReviewAction,
    /// Person id.
    pub by: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// State after the step.
    pub state_after: ReviewState,
}

impl From<m::ReviewEvent> for ReviewEvent {
    fn from(e: m::ReviewEvent) -> Self {
        ReviewEvent {
            id: e.id,
            action: e.action.into(),
            by: e.by,
            at_ms: e.at_ms,
            state_after: e.state_after,
        }
    }
}

impl From<ReviewEvent> for m::ReviewEvent {
    fn from(e: ReviewEvent) -> Self {
        m::ReviewEvent {
            id: e.id,
            action: e.action.into(),
            by: e.by,
            at_ms: e.at_ms,
            state_after: e.state_after,
        }
    }
}

/// The review state of a directory entry with its history (hand-written because it holds
/// `ReviewEvent`s).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DirectoryReview {
    /// Stored state (see `Producer.effective_review_state` for the one that holds).
    pub state: ReviewState,
    /// Fingerprint of the directory fields at the last approval.
    pub approved_fingerprint: Option<String>,
    /// Reason of the last return.
    pub return_reason: Option<String>,
    /// Every step, oldest first.
    pub history: Vec<ReviewEvent>,
}

impl From<m::DirectoryReview> for DirectoryReview {
    fn from(r: m::DirectoryReview) -> Self {
        DirectoryReview {
            state: r.state,
            approved_fingerprint: r.approved_fingerprint,
            return_reason: r.return_reason,
            history: r.history.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<DirectoryReview> for m::DirectoryReview {
    fn from(r: DirectoryReview) -> Self {
        m::DirectoryReview {
            state: r.state,
            approved_fingerprint: r.approved_fingerprint,
            return_reason: r.return_reason,
            history: r.history.into_iter().map(Into::into).collect(),
        }
    }
}

/// A producer in the directory (农畜产品生产主体名录) (hand-written: it adds the computed
/// `effective_review_state` and holds a `Scale` and a `DirectoryReview`).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Producer {
    /// Stable identifier, made offline.
    pub id: String,
    /// Name of the business or household.
    pub name: String,
    /// Kind of producer.
    pub producer_type: ProducerType,
    /// 18-character unified social credit code, for registered entities.
    pub credit_code: Option<String>,
    /// 18-character resident ID number of the owner, for households.
    pub id_number: Option<String>,
    /// Legal representative or owner.
    pub owner: String,
    /// Contact phone.
    pub phone: String,
    /// Grid code.
    pub grid: String,
    /// Address.
    pub address: String,
    /// Coordinates, if taken.
    pub location: Option<GeoPoint>,
    /// Main products.
    pub products: Vec<String>,
    /// Size of the operation.
    pub scale: Scale,
    /// Quality certifications.
    pub certifications: Vec<Certification>,
    /// Whether the producer issues compliance certificates (承诺达标合格证).
    pub issues_compliance_certificates: bool,
    /// Signed responsibility letter, if any.
    pub responsibility_letter: Option<ResponsibilityLetter>,
    /// Risk grade.
    pub risk: RiskLevel,
    /// Active or closed.
    pub status: ProducerStatus,
    /// Review chain (read-only: changed through `review_producer`).
    pub review: DirectoryReview,
    /// Yearly confirmations (年度确认), oldest first (read-only: added through
    /// `confirm_producer`).
    pub confirmations: Vec<m::YearConfirmation>,
    /// Possible duplicates (疑似重复) the server found (read-only: resolved through
    /// `resolve_duplicate`).
    pub duplicates: Vec<m::DuplicateMark>,
    /// Set when this entry was merged into another as its duplicate (a tombstone,
    /// read-only).
    pub merged_into: Option<m::MergedInto>,
    /// Edits of entries merged into this one, carried here by the server; open conflicts
    /// are settled through `settle_carried_edit` (read-only).
    pub carried_edits: Vec<m::CarriedEdit>,
    /// The review state that holds for the current fields (read-only, computed).
    pub effective_review_state: ReviewState,
    /// Person who created the entry (read-only).
    pub created_by: String,
    /// Creation time, ms since the Unix epoch (read-only).
    pub created_at_ms: i64,
    /// Last edit time, ms since the Unix epoch (read-only).
    pub updated_at_ms: i64,
}

impl From<m::Producer> for Producer {
    fn from(p: m::Producer) -> Self {
        let effective = p.effective_review_state();
        Producer {
            id: p.id,
            name: p.name,
            producer_type: p.producer_type,
            credit_code: p.credit_code,
            id_number: p.id_number,
            owner: p.owner,
            phone: p.phone,
            grid: p.grid,
            address: p.address,
            location: p.location,
            products: p.products,
            scale: p.scale.into(),
            certifications: p.certifications,
            issues_compliance_certificates: p.issues_compliance_certificates,
            responsibility_letter: p.responsibility_letter,
            risk: p.risk,
            status: p.status,
            review: p.review.into(),
            confirmations: p.confirmations,
            duplicates: p.duplicates,
            merged_into: p.merged_into,
            carried_edits: p.carried_edits,
            effective_review_state: effective,
            created_by: p.created_by,
            created_at_ms: p.created_at_ms,
            updated_at_ms: p.updated_at_ms,
        }
    }
}

impl From<Producer> for m::Producer {
    fn from(p: Producer) -> Self {
        m::Producer {
            id: p.id,
            name: p.name,
            producer_type: p.producer_type,
            credit_code: p.credit_code,
            id_number: p.id_number,
            owner: p.owner,
            phone: p.phone,
            grid: p.grid,
            address: p.address,
            location: p.location,
            products: p.products,
            scale: p.scale.into(),
            certifications: p.certifications,
            issues_compliance_certificates: p.issues_compliance_certificates,
            responsibility_letter: p.responsibility_letter,
            risk: p.risk,
            status: p.status,
            review: p.review.into(),
            confirmations: p.confirmations,
            duplicates: p.duplicates,
            merged_into: p.merged_into,
            carried_edits: p.carried_edits,
            created_by: p.created_by,
            created_at_ms: p.created_at_ms,
            updated_at_ms: p.updated_at_ms,
        }
    }
}

/// The fields a liaison fills in to register a producer (`GridStore.create_producer`); the
/// core fills in the rest (input only, no core counterpart).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NewProducer {
    /// Name of the business or household.
    pub name: String,
    /// Kind of producer.
    pub producer_type: ProducerType,
    /// Legal representative or owner.
    pub owner: String,
    /// Contact phone (11-digit mobile or landline with area code).
    pub phone: String,
    /// Grid code the producer belongs to.
    pub grid: String,
    /// Unified social credit code (required for enterprises, cooperatives, input dealers).
    #[uniffi(default = None)]
    pub credit_code: Option<String>,
    /// Owner's resident ID number (for households without a credit code).
    #[uniffi(default = None)]
    pub id_number: Option<String>,
    /// Address.
    #[uniffi(default = "")]
    pub address: String,
    /// Coordinates, if taken.
    #[uniffi(default = None)]
    pub location: Option<GeoPoint>,
    /// Main products.
    #[uniffi(default = [])]
    pub products: Vec<String>,
    /// Size of the operation.
    #[uniffi(default = None)]
    pub scale: Option<Scale>,
    /// Quality certifications.
    #[uniffi(default = [])]
    pub certifications: Vec<Certification>,
    /// Whether the producer issues compliance certificates.
    #[uniffi(default = false)]
    pub issues_compliance_certificates: bool,
    /// Signed responsibility letter, if any.
    #[uniffi(default = None)]
    pub responsibility_letter: Option<ResponsibilityLetter>,
    /// Risk grade (low when not given).
    #[uniffi(default = None)]
    pub risk: Option<RiskLevel>,
}

impl NewProducer {
    /// The core record for this input, created by `person` at `now_ms`.
    pub(crate) fn into_core(self, person: &str, now_ms: i64) -> m::Producer {
        let mut p = m::Producer::new(
            self.name,
            self.producer_type,
            self.owner,
            self.phone,
            self.grid,
            person,
            now_ms,
        );
        p.credit_code = self.credit_code;
        p.id_number = self.id_number;
        p.address = self.address;
        p.location = self.location;
        p.products = self.products;
        p.scale = self.scale.map(Into::into).unwrap_or_default();
        p.certifications = self.certifications;
        p.issues_compliance_certificates = self.issues_compliance_certificates;
        p.responsibility_letter = self.responsibility_letter;
        p.risk = self.risk.unwrap_or(RiskLevel::Low);
        p
    }
}
