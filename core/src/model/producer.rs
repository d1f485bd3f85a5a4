//! Producers in the directory (农畜产品生产主体名录) and their review chain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Kind of producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ProducerType {
    /// 企业.
    Enterprise,
    /// 农民专业合作社.
    Cooperative,
    /// 家庭农场.
    FamilyFarm,
    /// 家庭牧场.
    FamilyRanch,
    /// 种养大户.
    LargeHousehold,
    /// 散户.
    SmallHousehold,
    /// 农资经营主体.
    InputDealer,
    /// 收购者.
    Purchaser,
}

impl ProducerType {
    /// Every type, in directory order.
    pub const ALL: [ProducerType; 8] = [
        ProducerType::Enterprise,
        ProducerType::Cooperative,
        ProducerType::FamilyFarm,
        ProducerType::FamilyRanch,
        ProducerType::LargeHousehold,
        ProducerType::SmallHousehold,
        ProducerType::InputDealer,
        ProducerType::Purchaser,
    ];

    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            ProducerType::Enterprise => "enterprise",
            ProducerType::Cooperative => "cooperative",
            ProducerType::FamilyFarm => "family_farm",
            ProducerType::FamilyRanch => "family_ranch",
            ProducerType::LargeHousehold => "large_household",
            ProducerType::SmallHousehold => "small_household",
            ProducerType::InputDealer => "input_dealer",
            ProducerType::Purchaser => "purchaser",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Chinese name.
    pub fn label_zh(self) -> &'static str {
        match self {
            ProducerType::Enterprise => "企业",
            ProducerType::Cooperative => "农民专业合作社",
            ProducerType::FamilyFarm => "家庭农场",
            ProducerType::FamilyRanch => "家庭牧场",
            ProducerType::LargeHousehold => "种养大户",
            ProducerType::SmallHousehold => "散户",
            ProducerType::InputDealer => "农资经营主体",
            ProducerType::Purchaser => "收购者",
        }
    }

    /// Whether this type is identified by a unified social credit code rather than an ID number.
    pub fn needs_credit_code(self) -> bool {
        matches!(
            self,
            ProducerType::Enterprise | ProducerType::Cooperative | ProducerType::InputDealer
        )
    }
}

/// Livestock species counted in the producer's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Species {
    /// 生猪.
    Pig,
    /// 肉牛.
    BeefCattle,
    /// 奶牛.
    DairyCow,
    /// 牦牛.
    Yak,
    /// 羊 (sheep and goats).
    SheepGoat,
    /// 马.
    Horse,
    /// 驴.
    Donkey,
    /// 骆驼.
    Camel,
    /// 兔.
    Rabbit,
    /// 肉鸡.
    Broiler,
    /// 蛋鸡.
    Layer,
    /// 鹅.
    Goose,
}

impl Species {
    /// Every species.
    pub const ALL: [Species; 12] = [
        Species::Pig,
        Species::BeefCattle,
        Species::DairyCow,
        Species::Yak,
        Species::SheepGoat,
        Species::Horse,
        Species::Donkey,
        Species::Camel,
        Species::Rabbit,
        Species::Broiler,
        Species::Layer,
        Species::Goose,
    ];

    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            Species::Pig => "pig",
            Species::BeefCattle => "beef_cattle",
            Species::DairyCow => "dairy_cow",
            Species::Yak => "yak",
            Species::SheepGoat => "sheep_goat",
            Species::Horse => "horse",
            Species::Donkey => "donkey",
            Species::Camel => "camel",
            Species::Rabbit => "rabbit",
            Species::Broiler => "broiler",
            Species::Layer => "layer",
            Species::Goose => "goose",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Chinese name.
    pub fn label_zh(self) -> &'static str {
        match self {
            Species::Pig => "生猪",
            Species::BeefCattle => "肉牛",
            Species::DairyCow => "奶牛",
            Species::Yak => "牦牛",
            Species::SheepGoat => "羊",
            Species::Horse => "马",
            Species::Donkey => "驴",
            Species::Camel => "骆驼",
            Species::Rabbit => "兔",
            Species::Broiler => "肉鸡",
            Species::Layer => "蛋鸡",
            Species::Goose => "鹅",
        }
    }
}

/// Animals of one species: on hand and sold per year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivestockCount {
    /// Head on hand (存栏).
    pub on_hand: Option<u32>,
    /// Head sold per year (年出栏).
    pub sold_per_year: Option<u32>,
}

/// Size of the operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// Crop area in mu (亩).
    pub crop_area_mu: Option<f64>,
    /// Animals by species.
    #[serde(default)]
    pub livestock: BTreeMap<Species, LivestockCount>,
}

/// Quality certification held by the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Certification {
    /// 绿色食品.
    Green,
    /// 有机.
    Organic,
    /// 地理标志.
    GeographicalIndication,
    /// 名特优新.
    SpecialtyProduct,
}

impl Certification {
    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            Certification::Green => "green",
            Certification::Organic => "organic",
            Certification::GeographicalIndication => "geographical_indication",
            Certification::SpecialtyProduct => "specialty_product",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Certification::Green,
            Certification::Organic,
            Certification::GeographicalIndication,
            Certification::SpecialtyProduct,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Active or closed (注销/停产).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ProducerStatus {
    /// Operating.
    Active,
    /// Closed down.
    Closed,
}

impl ProducerStatus {
    /// Stable identifier (the serde name), stored in the `producers` table.
    pub fn as_str(self) -> &'static str {
        match self {
            ProducerStatus::Active => "active",
            ProducerStatus::Closed => "closed",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => ProducerStatus::Active,
            "closed" => ProducerStatus::Closed,
            _ => return None,
        })
    }
}

/// Risk grade used to set the patrol interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// Low risk.
    Low,
    /// Medium risk.
    Medium,
    /// High risk.
    High,
}

impl RiskLevel {
    /// Stable identifier (the serde name), stored in the `producers` and
    /// `patrol_intervals` tables.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => RiskLevel::Low,
            "medium" => RiskLevel::Medium,
            "high" => RiskLevel::High,
            _ => return None,
        })
    }
}

/// A point on the map (WGS-84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct GeoPoint {
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lon: f64,
}

/// Where a directory entry stands in the review chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Being filled in by the liaison.
    Draft,
    /// Sent to the township supervisor.
    Submitted,
    /// Approved by the township, sent up to the county.
    TownshipApproved,
    /// Approved by the county: the entry is in the directory.
    CountyApproved,
    /// Returned with a reason; goes back to draft on the next edit.
    Returned,
}

impl ReviewState {
    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Draft => "draft",
            ReviewState::Submitted => "submitted",
            ReviewState::TownshipApproved => "township_approved",
            ReviewState::CountyApproved => "county_approved",
            ReviewState::Returned => "returned",
        }
    }

    /// Parses the stable identifier.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => ReviewState::Draft,
            "submitted" => ReviewState::Submitted,
            "township_approved" => ReviewState::TownshipApproved,
            "county_approved" => ReviewState::CountyApproved,
            "returned" => ReviewState::Returned,
            _ => return None,
        })
    }

    /// Whether the entry carries an approval that an edit would invalidate.
    pub fn is_approved(self) -> bool {
        matches!(
            self,
            ReviewState::TownshipApproved | ReviewState::CountyApproved
        )
    }
}

/// A step a person takes in the review chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "reason")]
pub enum ReviewAction {
    /// Liaison or supervisor sends a draft for review.
    Submit,
    /// Township supervisor approves and sends up.
    ApproveTownship,
    /// County reviewer approves.
    ApproveCounty,
    /// Supervisor or county reviewer returns it with a reason.
    Return(String),
    /// Recorded automatically when a directory field of an approved entry is edited.
    EditedAfterApproval,
    /// Recorded automatically when a returned entry is edited (it goes back to draft).
    EditedAfterReturn,
}

impl ReviewAction {
    /// Stable identifier of the action.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewAction::Submit => "submit",
            ReviewAction::ApproveTownship => "approve_township",
            ReviewAction::ApproveCounty => "approve_county",
            ReviewAction::Return(_) => "return",
            ReviewAction::EditedAfterApproval => "edited_after_approval",
            ReviewAction::EditedAfterReturn => "edited_after_return",
        }
    }
}

/// One step of the review history: who did what, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewEvent {
    /// Unique id, so that concurrent steps merge as separate entries.
    pub id: String,
    /// What was done.
    pub action: ReviewAction,
    /// Person id.
    pub by: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// State after the step.
    pub state_after: ReviewState,
}

/// The review state of a directory entry with its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryReview {
    /// Current state.
    pub state: ReviewState,
    /// Fingerprint of the directory fields at the last approval; an approval only holds
    /// while the fields still match it (so an edit concurrent with an approval is caught).
    pub approved_fingerprint: Option<String>,
    /// Reason of the last return, if returned.
    pub return_reason: Option<String>,
    /// Every step, oldest first.
    #[serde(default)]
    pub history: Vec<ReviewEvent>,
}

impl Default for DirectoryReview {
    fn default() -> Self {
        DirectoryReview {
            state: ReviewState::Draft,
            approved_fingerprint: None,
            return_reason: None,
            history: Vec::new(),
        }
    }
}

/// A yearly confirmation of a directory entry (年度确认): the person checked its fields
/// and found it still operating, or closed, in `year`. Confirmations are history: an entry
/// only gains them, each in its author's name, and they do not touch the directory
/// fingerprint (a confirmation leaves an approval as it was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct YearConfirmation {
    /// Unique id, so that concurrent confirmations merge as separate entries.
    pub id: String,
    /// The year confirmed (China time).
    pub year: i32,
    /// Still operating (`false`: found closed; the entry's status says so too).
    pub operating: bool,
    /// Person id.
    pub by: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Document key of [`Producer::confirmations`]. It begins with `_` because a phone built
/// before confirmations existed keeps the root keys beginning with `_` when it writes an
/// edit and deletes every other key its typed record does not know (`doc::reconcile_map`);
/// under a plain key an older phone's edit would erase the confirmations.
pub const CONFIRMATIONS_KEY: &str = "_confirmations";

/// A possible duplicate of this entry (疑似重复), found by the server's check after a push
/// ([`crate::dedupe`]) and written on both entries. Marks are only added by the server and
/// never removed; a supervisor or county reviewer resolves one, and the resolution is
/// mirrored onto the other entry's mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct DuplicateMark {
    /// Id of the other entry (one mark per pair, so marks merge per other entry).
    pub id: String,
    /// The other entry's name when the mark was written.
    pub other_name: String,
    /// The other entry's grid when the mark was written.
    pub other_grid: String,
    /// Why: [`crate::dedupe::MatchReason`] ids (`credit_code`, `id_number`, `phone`,
    /// `same_name`, `name_contains`, `name_one_edit`).
    pub reasons: Vec<String>,
    /// Likelihood out of 100 ([`crate::dedupe::combined_score`]).
    pub score: u8,
    /// When the server found it, ms since the Unix epoch.
    pub found_at_ms: i64,
    /// How it was resolved; `None` while open.
    pub resolution: Option<DuplicateResolution>,
}

/// How a possible duplicate was resolved, by whom and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct DuplicateResolution {
    /// The outcome.
    pub outcome: DuplicateOutcome,
    /// Person id of the supervisor or county reviewer who decided.
    pub by: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
}

/// The outcome of a possible duplicate, as seen from the entry that holds the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum DuplicateOutcome {
    /// Two different producers (不是重复): the mark is closed for good.
    NotDuplicate,
    /// This entry is a duplicate of the other and became a tombstone pointing to it
    /// ([`Producer::merged_into`]).
    MergedIntoOther,
    /// The other entry was a duplicate of this one and now points here (written by the
    /// server when it mirrors a merge).
    OtherMergedHere,
}

impl DuplicateOutcome {
    /// Stable identifier (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateOutcome::NotDuplicate => "not_duplicate",
            DuplicateOutcome::MergedIntoOther => "merged_into_other",
            DuplicateOutcome::OtherMergedHere => "other_merged_here",
        }
    }

    /// What field staff read.
    pub fn label_zh(self) -> &'static str {
        match self {
            DuplicateOutcome::NotDuplicate => "不是重复",
            DuplicateOutcome::MergedIntoOther => "已并入对方",
            DuplicateOutcome::OtherMergedHere => "对方已并入本条",
        }
    }
}

/// A duplicate entry's pointer to the entry it was merged into (tombstone, 已合并): the
/// entry stays, with its history and its visits (which count for the surviving entry),
/// but is no longer a producer of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct MergedInto {
    /// Id of the surviving entry.
    pub into: String,
    /// Person id of the supervisor or county reviewer who merged it.
    pub by: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The directory fields of this entry as they were merged (one per field, value as
    /// JSON). An edit made on a phone that had not yet seen the merge shows as a difference
    /// from these; the server carries it to the surviving entry ([`CarriedEdit`]) and then
    /// records the new value here.
    pub seen: Vec<SeenField>,
}

/// One directory field's value as a merge saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct SeenField {
    /// Field name ([`DIRECTORY_FIELDS`]).
    pub id: String,
    /// Value as JSON.
    pub value: String,
}

/// An edit of a merged (tombstone) entry that arrived after the merge, carried to the
/// surviving entry by the server: applied when the surviving entry still held the value
/// the edit replaced (or nothing), otherwise kept here as a conflict for a person to
/// decide. Nothing of the edit is lost either way: the tombstone keeps it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct CarriedEdit {
    /// `<tombstone id>:<field>:<n>`, unique.
    pub id: String,
    /// Id of the merged entry the edit was made on.
    pub from: String,
    /// Field name ([`DIRECTORY_FIELDS`]).
    pub field: String,
    /// The edited value, as JSON.
    pub value: String,
    /// Applied to this entry (`true`) or left as a conflict (`false`).
    pub applied: bool,
    /// When the server carried it, ms since the Unix epoch.
    pub at_ms: i64,
    /// For a conflict: the person who settled it (by keeping this entry's value or taking
    /// the carried one); `None` while open.
    pub settled_by: Option<String>,
}

/// The directory fields by name, as [`MergedInto::seen`] and [`CarriedEdit::field`] name
/// them (the fields of [`Producer::directory_fingerprint`], without the grid: a merged
/// entry's grid is its own).
pub const DIRECTORY_FIELDS: [&str; 14] = [
    "name",
    "producer_type",
    "credit_code",
    "id_number",
    "owner",
    "phone",
    "address",
    "location",
    "products",
    "scale",
    "certifications",
    "issues_compliance_certificates",
    "responsibility_letter",
    "status",
];

/// Document keys of the duplicate bookkeeping (leading `_`: see [`CONFIRMATIONS_KEY`]).
pub const DUPLICATES_KEY: &str = "_duplicates";
/// See [`DUPLICATES_KEY`].
pub const MERGED_INTO_KEY: &str = "_merged_into";
/// See [`DUPLICATES_KEY`].
pub const CARRIED_EDITS_KEY: &str = "_carried_edits";

/// Signed food-safety responsibility letter (责任书).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ResponsibilityLetter {
    /// Date signed, `YYYY-MM-DD`.
    pub signed_on: String,
}

/// A producer in the directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Producer {
    /// Stable identifier (UUID v7), created offline.
    pub id: String,
    /// Name of the business or household.
    pub name: String,
    /// Kind of producer.
    pub producer_type: ProducerType,
    /// 18-character unified social credit code (统一社会信用代码), for registered entities.
    pub credit_code: Option<String>,
    /// 18-character resident ID number of the owner, for households.
    pub id_number: Option<String>,
    /// Legal representative or owner.
    pub owner: String,
    /// Contact phone.
    pub phone: String,
    /// Code of the grid node the producer belongs to.
    pub grid: String,
    /// Postal or descriptive address.
    pub address: String,
    /// Coordinates, if taken.
    pub location: Option<GeoPoint>,
    /// Main products.
    #[serde(default)]
    pub products: Vec<String>,
    /// Size of the operation.
    #[serde(default)]
    pub scale: Scale,
    /// Quality certifications.
    #[serde(default)]
    pub certifications: Vec<Certification>,
    /// Whether the producer issues compliance certificates (承诺达标合格证).
    pub issues_compliance_certificates: bool,
    /// Signed responsibility letter, if any.
    pub responsibility_letter: Option<ResponsibilityLetter>,
    /// Risk grade.
    pub risk: RiskLevel,
    /// Active or closed.
    pub status: ProducerStatus,
    /// Review chain.
    #[serde(default)]
    pub review: DirectoryReview,
    /// Yearly confirmations, oldest first (document key [`CONFIRMATIONS_KEY`]).
    #[serde(default, rename = "_confirmations")]
    pub confirmations: Vec<YearConfirmation>,
    /// Possible duplicates found by the server (document key [`DUPLICATES_KEY`]).
    #[serde(default, rename = "_duplicates")]
    pub duplicates: Vec<DuplicateMark>,
    /// Set when this entry was merged into another as its duplicate (document key
    /// [`MERGED_INTO_KEY`]): a tombstone.
    #[serde(default, rename = "_merged_into")]
    pub merged_into: Option<MergedInto>,
    /// Edits of entries merged into this one, carried here by the server (document key
    /// [`CARRIED_EDITS_KEY`]).
    #[serde(default, rename = "_carried_edits")]
    pub carried_edits: Vec<CarriedEdit>,
    /// Person who created the entry.
    pub created_by: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Last edit time, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

impl Producer {
    /// A new draft entry with the required fields; the rest take their defaults.
    pub fn new(
        name: impl Into<String>,
        producer_type: ProducerType,
        owner: impl Into<String>,
        phone: impl Into<String>,
        grid: impl Into<String>,
        created_by: impl Into<String>,
        now_ms: i64,
    ) -> Self {
        Producer {
            id: crate::new_id(),
            name: name.into(),
            producer_type,
            credit_code: None,
            id_number: None,
            owner: owner.into(),
            phone: phone.into(),
            grid: grid.into(),
            address: String::new(),
            location: None,
            products: Vec::new(),
            scale: Scale::default(),
            certifications: Vec::new(),
            issues_compliance_certificates: false,
            responsibility_letter: None,
            risk: RiskLevel::Low,
            status: ProducerStatus::Active,
            review: DirectoryReview::default(),
            confirmations: Vec::new(),
            duplicates: Vec::new(),
            merged_into: None,
            carried_edits: Vec::new(),
            created_by: created_by.into(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// Fingerprint of the directory fields (everything a reviewer vouches for).
    pub fn directory_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let fields = serde_json::json!([
            self.name,
            self.producer_type,
            self.credit_code,
            self.id_number,
            self.owner,
            self.phone,
            self.grid,
            self.address,
            self.location,
            sorted(&self.products),
            self.scale,
            sorted(&self.certifications),
            self.issues_compliance_certificates,
            self.responsibility_letter,
            self.status,
        ]);
        let digest = Sha256::digest(fields.to_string().as_bytes());
        hex::encode(&digest[..12])
    }

    /// The directory field `name` ([`DIRECTORY_FIELDS`]) as JSON, `None` for an unknown name.
    pub fn directory_field(&self, name: &str) -> Option<serde_json::Value> {
        let v = match name {
            "name" => serde_json::json!(self.name),
            "producer_type" => serde_json::json!(self.producer_type),
            "credit_code" => serde_json::json!(self.credit_code),
            "id_number" => serde_json::json!(self.id_number),
            "owner" => serde_json::json!(self.owner),
            "phone" => serde_json::json!(self.phone),
            "address" => serde_json::json!(self.address),
            "location" => serde_json::json!(self.location),
            "products" => serde_json::json!(sorted(&self.products)),
            "scale" => serde_json::json!(self.scale),
            "certifications" => serde_json::json!(sorted(&self.certifications)),
            "issues_compliance_certificates" => {
                serde_json::json!(self.issues_compliance_certificates)
            }
            "responsibility_letter" => serde_json::json!(self.responsibility_letter),
            "status" => serde_json::json!(self.status),
            _ => return None,
        };
        Some(v)
    }

    /// Sets the directory field `name` from its JSON value; an unknown name or a value of
    /// the wrong shape is refused, naming the field.
    pub fn set_directory_field(
        &mut self,
        name: &str,
        value: serde_json::Value,
    ) -> std::result::Result<(), String> {
        fn take<T: serde::de::DeserializeOwned>(
            name: &str,
            v: serde_json::Value,
        ) -> std::result::Result<T, String> {
            serde_json::from_value(v).map_err(|e| format!("{name}: {e}"))
        }
        match name {
            "name" => self.name = take(name, value)?,
            "producer_type" => self.producer_type = take(name, value)?,
            "credit_code" => self.credit_code = take(name, value)?,
            "id_number" => self.id_number = take(name, value)?,
            "owner" => self.owner = take(name, value)?,
            "phone" => self.phone = take(name, value)?,
            "address" => self.address = take(name, value)?,
            "location" => self.location = take(name, value)?,
            "products" => self.products = take(name, value)?,
            "scale" => self.scale = take(name, value)?,
            "certifications" => self.certifications = take(name, value)?,
            "issues_compliance_certificates" => {
                self.issues_compliance_certificates = take(name, value)?
            }
            "responsibility_letter" => self.responsibility_letter = take(name, value)?,
            "status" => self.status = take(name, value)?,
            _ => return Err(format!("{name}: not a directory field")),
        }
        Ok(())
    }

    /// The directory fields as a merge records them ([`MergedInto::seen`]).
    pub fn seen_fields(&self) -> Vec<SeenField> {
        DIRECTORY_FIELDS
            .iter()
            .filter_map(|f| {
                self.directory_field(f).map(|v| SeenField {
                    id: (*f).to_string(),
                    value: v.to_string(),
                })
            })
            .collect()
    }

    /// Whether this entry is a tombstone, merged into another as its duplicate.
    pub fn is_merged(&self) -> bool {
        self.merged_into.is_some()
    }

    /// The open possible-duplicate marks.
    pub fn open_duplicates(&self) -> impl Iterator<Item = &DuplicateMark> {
        self.duplicates.iter().filter(|m| m.resolution.is_none())
    }

    /// The latest year the entry was confirmed for (a confirmation of a later year counts
    /// for the years before it), `None` if never.
    pub fn confirmed_year(&self) -> Option<i32> {
        self.confirmations.iter().map(|c| c.year).max()
    }

    /// The review state that holds for the current fields: an approval whose fingerprint no
    /// longer matches (an edit merged after it) counts as submitted again.
    pub fn effective_review_state(&self) -> ReviewState {
        if self.review.state.is_approved()
            && self.review.approved_fingerprint.as_deref()
                != Some(self.directory_fingerprint().as_str())
        {
            ReviewState::Submitted
        } else {
            self.review.state
        }
    }
}

fn sorted<T: Clone + Ord>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}
