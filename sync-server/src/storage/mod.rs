//! Storage of the server, in two layers:
//!
//! - [`layer`]: every algorithm, written once over the narrow [`layer::Backend`] trait and
//!   the [`sql::Tx`] seam (feed paging, dump and import, sequencing and writing a push,
//!   row mapping with typed columns, backup);
//! - [`sqlite`] and [`postgres`]: what differs per database (connections, the SQL dialect,
//!   how concurrent pushes are kept apart, migrations through `gridsync_core::migrate`).
//!
//! [`open_storage`] opens either from a [`StorageConfig`]. One conformance suite
//! (`tests/storage_conformance.rs`) runs against each backend. Calls are blocking: the HTTP
//! layer runs them on tokio's blocking pool.

pub mod acceptance;
pub(crate) mod batch;
pub mod chart;
pub mod confirmations;
pub mod desk;
pub mod desk_duplicates;
pub mod duplicates;
pub mod exports;
pub mod layer;
pub mod postgres;
pub mod query;
pub mod scale;
pub mod sql;
pub mod sqlite;
pub mod tallies;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gridsync_core::attachment::AttachmentRef;
use gridsync_core::model::{GridKind, GridLevel, GridNode, Person, Record, RecordKind, Role};
use gridsync_core::sync::protocol::{Departure, PullRecord, PushResult};
use serde::{Deserialize, Serialize};

pub use chart::{ChartStorage, GridChartInfo, PersonDuties};
pub use desk::{DeskAccount, DeskSession, DeskStorage, FailedSignIn};
pub use exports::{ActivityRow, Period, VisitExportRow, VisitSet};
pub use query::{
    DirectoryFilter, DirectorySort, Page, PageReq, ProducerRow, QuerySnapshot, RebuildReport,
    RectificationRow, ReviewLevel, ReviewRow, VisitFilter, VisitRow, MAX_PAGE,
};
pub use query::{FindingRow, TestRow};
pub use scale::{LeagueScale, ScaleCount, ScaleStorage};
pub use tallies::{Tallies, TallyQuery};

/// The device name under which the server itself writes records it seeds (demo data,
/// benchmark datasets), as an administrator would push them.
pub const SEED_DEVICE: &str = "server-seed";

/// Errors of a storage backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
    /// Input refused (names what is wrong).
    #[error("{0}")]
    Invalid(String),
    /// No such row.
    #[error("not found: {0}")]
    NotFound(String),
    /// The push processor cancelled the push (its request ran out of time): the whole
    /// transaction was rolled back and nothing of the push is stored.
    #[error("cancelled: the request ran out of time; nothing was stored")]
    Cancelled,
    /// A stored value is not what its column must hold (names table, row and column).
    #[error("bad stored value: {0}")]
    BadRow(String),
    /// Two transactions got in each other's way (deadlock, serialization failure); the
    /// operation may be retried.
    #[error("transaction conflict: {0}")]
    Conflict(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Database(e.to_string())
    }
}

/// Result of storage calls.
pub type StorageResult<T> = Result<T, StorageError>;

/// A stored record as the push logic needs it.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Kind.
    pub kind: RecordKind,
    /// Current grid.
    pub grid: String,
    /// Compact Automerge document.
    pub doc: Vec<u8>,
}

/// What the push logic decided for one record.
#[derive(Debug, Clone)]
pub enum PushDecision {
    /// Store this: the merged document and the changes that were new to the server.
    Store {
        /// Kind.
        kind: RecordKind,
        /// Grid after the merge.
        grid: String,
        /// Compact merged document.
        doc: Vec<u8>,
        /// Heads of the merged document (32 bytes each).
        heads: Vec<u8>,
        /// Change chunks new to the server.
        new_changes: Vec<u8>,
        /// Audit action (`create` / `update`).
        action: &'static str,
        /// The attachments the merged record refers to
        /// ([`gridsync_core::attachment::refs_of`]): recorded as the pushing device's
        /// references in the push's transaction.
        attachments: Vec<AttachmentRef>,
        /// The merged record as the push logic read it: its query rows are written in the
        /// push's transaction. `None`: the document is not read (tests that store opaque
        /// bytes); no query rows.
        record: Option<Box<Record>>,
    },
    /// Nothing new (a retried or duplicated push).
    Duplicate,
    /// Refused; nothing is stored.
    Reject(gridsync_core::sync::protocol::RejectCode, String),
    /// Stop: the request this push belongs to ran out of time. `apply_push` stores nothing
    /// of the whole batch and returns [`StorageError::Cancelled`].
    Cancelled,
}

/// Who pushed (for the audit trail).
#[derive(Debug, Clone)]
pub struct Author {
    /// Person id.
    pub person_id: String,
    /// Device id.
    pub device_id: Option<String>,
}

/// One feed a device reads: a grid, its cursor, and whether only templates are visible.
#[derive(Debug, Clone)]
pub struct FeedRead {
    /// Grid code.
    pub grid: String,
    /// Cursor (last sequence the device applied).
    pub after: u64,
    /// Only the records read from below are visible (an ancestor grid): checklist templates
    /// and township acceptance decisions.
    pub templates_only: bool,
}

/// One pull page.
#[derive(Debug, Clone, Default)]
pub struct PullPage {
    /// Records, in feed order per grid.
    pub records: Vec<PullRecord>,
    /// Departures.
    pub departures: Vec<Departure>,
    /// New cursors of the feeds that moved: grid, sequence, token of that entry.
    pub cursors: Vec<(String, u64, u64)>,
    /// Whether more waits.
    pub more: bool,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Device id.
    pub id: String,
    /// Person it belongs to.
    pub person_id: String,
    /// Name given at enrolment.
    pub name: String,
    /// SHA-256 of the current secret (hex).
    pub secret_hash: String,
    /// SHA-256 of a rotated secret not yet used.
    pub pending_hash: Option<String>,
    /// Enrolment time.
    pub created_at_ms: i64,
    /// Last request.
    pub last_seen_ms: Option<i64>,
    /// Revocation time.
    pub revoked_at_ms: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

/// A one-time enrolment code as stored (hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolCode {
    /// SHA-256 of the normalized code (hex).
    pub code_hash: String,
    /// Person it enrols.
    pub person_id: String,
    /// Who issued it.
    pub created_by: String,
    /// When.
    pub created_at_ms: i64,
    /// Expiry.
    pub expires_at_ms: i64,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at_ms: i64,
    /// Person.
    pub person_id: String,
    /// Device, if the action came from one.
    pub device_id: Option<String>,
    /// Record, if any.
    pub record_id: Option<String>,
    /// Record kind, if any.
    pub kind: Option<String>,
    /// Grid, if any.
    pub grid: Option<String>,
    /// What happened.
    pub action: String,
    /// Detail.
    pub detail: String,
}

/// What to list from the audit trail.
#[derive(Debug, Clone)]
pub enum AuditFilter {
    /// Changes of one record.
    Record(String),
    /// Actions of one person.
    Person(String),
    /// Changes in one grid.
    Grid(String),
    /// Everything (newest first, limited).
    All,
}

/// The push processor: given the stored record (if any), decide what to store.
pub type PushProcessor<'a> = dyn FnMut(Option<&StoredRecord>, &gridsync_core::sync::protocol::PushRecord) -> PushDecision
    + 'a;

/// Which database to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// The embedded default: one SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// PostgreSQL (several instances may share it).
    Postgres {
        /// `postgres://user@host:port/db`.
        url: String,
        /// A schema to work in (created if missing); `None`: the URL's search path.
        schema: Option<String>,
    },
}

impl StorageConfig {
    /// SQLite in a data directory (`gridsync.db`), or PostgreSQL when a URL is given.
    pub fn from_options(data: &Path, database: Option<&str>) -> Self {
        match database {
            Some(url) => StorageConfig::Postgres {
                url: url.to_string(),
                schema: None,
            },
            None => StorageConfig::Sqlite {
                path: data.join("gridsync.db"),
            },
        }
    }
}

/// Opens (creating and migrating) the storage a config names.
pub fn open_storage(config: &StorageConfig) -> StorageResult<Arc<dyn Storage>> {
    Ok(match config {
        StorageConfig::Sqlite { path } => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StorageError::Invalid(format!("data directory {}: {e}", dir.display()))
                })?;
            }
            Arc::new(sqlite::SqliteStorage::open(path)?)
        }
        StorageConfig::Postgres { url, schema: None } => {
            Arc::new(postgres::PostgresStorage::open(url)?)
        }
        StorageConfig::Postgres {
            url,
            schema: Some(schema),
        } => Arc::new(postgres::PostgresStorage::open_in_schema(url, schema)?),
    })
}

/// A storage backend (desk sign-in included: [`DeskStorage`]).
pub trait Storage:
    DeskStorage + ChartStorage + ScaleStorage + Send + Sync + std::fmt::Debug
{
    /// The backend's name ("sqlite", "postgres").
    fn backend_name(&self) -> &'static str;
    /// The server epoch (changes when the data is restored from a backup).
    fn epoch(&self) -> StorageResult<String>;
    /// Sets a new epoch.
    fn rotate_epoch(&self) -> StorageResult<String>;
    /// A counter that changes whenever grids or people change (reference data cache key).
    fn reference_generation(&self) -> StorageResult<i64>;

    /// Every grid node.
    fn grids(&self) -> StorageResult<Vec<GridNode>>;
    /// Inserts or replaces grid nodes, all or none.
    fn import_grids(&self, nodes: &[GridNode]) -> StorageResult<()>;
    /// Inserts or replaces a person.
    fn upsert_person(&self, p: &Person) -> StorageResult<()>;
    /// A person by id (inactive people are returned with `None`).
    fn person(&self, id: &str) -> StorageResult<Option<Person>>;
    /// Every active person.
    fn people(&self) -> StorageResult<Vec<Person>>;
    /// Every person, inactive ones too (`active` tells), by id.
    fn all_people(&self) -> StorageResult<Vec<PersonRow>>;

    /// Stores an enrolment code (hash only).
    fn insert_code(&self, code: &EnrolCode) -> StorageResult<()>;
    /// Redeems a code once: if it exists, is unused and unexpired, marks it used and
    /// registers `device` for its person, atomically. Returns the person id.
    fn redeem_code(
        &self,
        code_hash: &str,
        now_ms: i64,
        device: &Device,
    ) -> StorageResult<Option<String>>;
    /// A device by id.
    fn device(&self, id: &str) -> StorageResult<Option<Device>>;
    /// Every device.
    fn devices(&self) -> StorageResult<Vec<Device>>;
    /// Sets a pending secret hash (rotation).
    fn set_pending_secret(&self, device_id: &str, hash: &str) -> StorageResult<()>;
    /// Makes the pending secret current (first use after a rotation).
    fn promote_pending_secret(&self, device_id: &str) -> StorageResult<()>;
    /// Revokes a device.
    fn revoke_device(&self, device_id: &str, reason: &str, now_ms: i64) -> StorageResult<()>;
    /// Notes a request from a device.
    fn touch_device(&self, device_id: &str, now_ms: i64) -> StorageResult<()>;

    /// A stored record.
    fn record(&self, id: &str) -> StorageResult<Option<StoredRecord>>;
    /// Applies a batch of pushed records in one transaction; `process` decides each. When
    /// `process` returns [`PushDecision::Cancelled`], nothing of the batch is stored and the
    /// call returns [`StorageError::Cancelled`].
    fn apply_push(
        &self,
        author: &Author,
        records: &[gridsync_core::sync::protocol::PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>>;
    /// Reads one page of the feeds.
    fn pull(&self, feeds: &[FeedRead], limit: u32, byte_budget: usize) -> StorageResult<PullPage>;
    /// Whole documents of records by id (for devices with a gap), in the order asked, each
    /// id once however often it is named. The caller checks scope.
    fn full_records(&self, ids: &[String]) -> StorageResult<Vec<PullRecord>>;
    /// The head sequence of a feed (0 if it never had an entry).
    fn feed_head(&self, grid: &str) -> StorageResult<u64>;
    /// Whether a device cursor names an entry of this server's history (seq 0 always does).
    fn cursor_valid(&self, grid: &str, seq: u64, token: u64) -> StorageResult<bool>;

    /// Writes an audit entry.
    fn audit(&self, entry: &AuditEntry) -> StorageResult<()>;
    /// Lists audit entries, oldest first, at most `limit`.
    fn audit_list(&self, filter: &AuditFilter, limit: u32) -> StorageResult<Vec<AuditEntry>>;
    /// One page of audit entries, newest first, with their ids: those matching `filter`
    /// with an id below `before_id` (all when `None`), at most `limit`. The next page starts
    /// below the last id returned.
    fn audit_page(
        &self,
        filter: &AuditFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> StorageResult<Vec<(i64, AuditEntry)>>;
    /// Counts of records by kind (for status and tests).
    fn record_counts(&self) -> StorageResult<Vec<(String, i64)>>;

    /// Whether the store holds no data (no grids, people, codes, devices, records or audit).
    fn is_empty(&self) -> StorageResult<bool>;
    /// Streams every row, table by table in [`DumpChunk`]s, from one consistent snapshot.
    fn export(&self, sink: &mut DumpSink<'_>) -> StorageResult<()>;
    /// Fills an empty store in one transaction: calls `source` once with a sink that writes
    /// each chunk. Refuses a store that holds data; on any error nothing is kept.
    fn import(&self, source: &mut DumpSource<'_>) -> StorageResult<CopyCounts>;

    /// Writes a consistent copy of everything to the new SQLite file `dest`, marked so that
    /// a server started on it takes a new epoch (devices then re-check what they hold).
    /// SQLite copies its file; PostgreSQL copies its rows into a new SQLite file.
    fn backup_to(&self, dest: &Path) -> StorageResult<()>;

    /// The metadata of an attachment, if the server holds anything of it.
    fn attachment(&self, sha256: &str) -> StorageResult<Option<AttachmentMeta>>;
    /// Appends `bytes` at `offset` to the attachment `r`, uploaded by `device_id`: checks
    /// that `offset` is what is held, the size limit and the device's quota, writes the
    /// bytes durably, and on the last byte verifies the SHA-256 and the type (a mismatch
    /// discards everything held). The caller has checked [`Storage::may_upload`].
    fn append_attachment(
        &self,
        device_id: &str,
        r: &AttachmentRef,
        offset: u64,
        bytes: &[u8],
        limits: &AttachmentLimits,
    ) -> StorageResult<AppendOutcome>;
    /// At most `max` (capped at [`ATTACHMENT_PIECE`]) held bytes of an attachment from
    /// `offset` (empty at or past the end). [`StorageError::NotFound`] if nothing is held.
    fn read_attachment(&self, sha256: &str, offset: u64, max: usize) -> StorageResult<Vec<u8>>;
    /// Whether a record pushed by `device_id` refers to the attachment (with this size and
    /// type, when `declared` is given).
    fn may_upload(
        &self,
        device_id: &str,
        sha256: &str,
        declared: Option<(u64, &str)>,
    ) -> StorageResult<bool>;
    /// Whether a record in one of `grids` refers to the attachment.
    fn may_download(&self, grids: &[&str], sha256: &str) -> StorageResult<bool>;
    /// The references to an attachment (for tests and the admin).
    fn attachment_refs(&self, sha256: &str) -> StorageResult<Vec<AttachmentRefRow>>;
    /// Deletes attachments no record refers to, and partial uploads last written before
    /// `partial_before_ms`, with their bytes (and bytes no attachment row names). Returns
    /// what was deleted.
    fn gc_attachments(&self, partial_before_ms: i64) -> StorageResult<Vec<GcEntry>>;

    /// The grids at or below `roots` (each once, sorted): the explicit grid list the page
    /// queries take.
    fn grid_subtree(&self, roots: &[String]) -> StorageResult<Vec<String>>;
    /// The directory: producers in `filter.grids` matching the filter, sorted, one page.
    fn directory(
        &self,
        filter: &DirectoryFilter,
        page: PageReq,
    ) -> StorageResult<Page<ProducerRow>>;
    /// Producers in `grids` awaiting `level`'s review, longest waiting first.
    fn review_queue(
        &self,
        grids: &[String],
        level: ReviewLevel,
        page: PageReq,
    ) -> StorageResult<Page<ProducerRow>>;
    /// One producer's query row.
    fn query_producer(&self, id: &str) -> StorageResult<Option<ProducerRow>>;
    /// A producer's review steps, oldest first.
    fn producer_reviews(&self, producer_id: &str) -> StorageResult<Vec<ReviewRow>>;
    /// A producer's visits, newest first.
    fn producer_visits(&self, producer_id: &str, page: PageReq) -> StorageResult<Page<VisitRow>>;
    /// Visits matching the filter, newest first.
    fn visits(&self, filter: &VisitFilter, page: PageReq) -> StorageResult<Page<VisitRow>>;
    /// Open rectifications in `grids`, earliest deadline first; `today` (`YYYY-MM-DD`)
    /// decides which are overdue (`overdue_only`: only those).
    fn open_rectifications(
        &self,
        grids: &[String],
        today: &str,
        overdue_only: bool,
        page: PageReq,
    ) -> StorageResult<Page<RectificationRow>>;
    /// Township acceptance decisions (`q_acceptances`) on `grids` for the years up to
    /// `up_to_year`, by grid and year (a township has one a year: a handful of rows).
    fn acceptances(
        &self,
        grids: &[String],
        up_to_year: i32,
    ) -> StorageResult<Vec<acceptance::AcceptanceRow>>;
    /// Rebuilds every query row from the stored documents, in bounded batches (each its
    /// own transaction, its records locked against concurrent pushes); idempotent.
    fn rebuild_query_tables(&self) -> StorageResult<RebuildReport>;
    /// Every query row (tests and checks; loads them all).
    fn query_snapshot(&self) -> StorageResult<QuerySnapshot>;
    /// Active producers of each of `grids` not confirmed for `year` (年度确认; a later
    /// year's confirmation counts for the years before it), by grid code, grids with none
    /// left out (see [`confirmations`]).
    fn unconfirmed_counts(&self, grids: &[String], year: i32) -> StorageResult<Vec<(String, i64)>>;
    /// Producers that may be duplicates of the entry `q` describes: the same credit code,
    /// ID number or normalised phone anywhere, or a producer of `q.grids` (the entry's
    /// own and neighbouring grids) among `q.similar`; tombstones and the entry itself left
    /// out (see [`duplicates`]). The caller scores them with `gridsync_core::dedupe`.
    fn duplicate_candidates(
        &self,
        q: &duplicates::CandidateQuery,
    ) -> StorageResult<Vec<duplicates::Candidate>>;
    /// The name cores of the producers of `grids` with their ids, tombstones left out. The
    /// duplicate check compares an entry's core with these (once per neighbourhood and
    /// push) and reads only the similar producers.
    fn name_cores(&self, grids: &[String]) -> StorageResult<Vec<(String, String)>>;
    /// The key that tags the server's own changes ([`crate::signed`]): made when `create`
    /// and there is none (a write transaction); otherwise read (empty when none was made:
    /// nothing verifies). Judging a push reads it (it runs inside the push's transaction).
    fn change_key(&self, create: bool) -> StorageResult<Vec<u8>>;
    /// Producers of `grids` with open possible-duplicate marks, by grid (the desk's list).
    fn open_duplicate_ids(&self, grids: &[String], limit: u32) -> StorageResult<Vec<String>>;
    /// The producers merged into `into` (tombstones pointing to it; see [`desk_duplicates`]).
    fn merged_entries(&self, into: &str) -> StorageResult<Vec<ProducerRow>>;
    /// The dashboard's grouped counts of the query tables (see [`tallies`]), read in one
    /// transaction.
    fn tallies(&self, q: &TallyQuery) -> StorageResult<Tallies>;
    /// Exports: every producer of `grids`, grid by grid, by name, handed to `each` in
    /// batches read one transaction each (bounded memory; see [`exports`]).
    fn for_each_producer(
        &self,
        grids: &[String],
        each: &mut dyn FnMut(ProducerRow) -> StorageResult<()>,
    ) -> StorageResult<()>;
    /// Exports: every visit of `grids` started in `period` (of the set `which`), grid by
    /// grid, oldest first, with its producer's name, in batches as above.
    fn for_each_visit(
        &self,
        grids: &[String],
        period: Period,
        which: VisitSet,
        each: &mut dyn FnMut(VisitExportRow) -> StorageResult<()>,
    ) -> StorageResult<()>;
    /// Exports: what each person did in `grids` during `period`, by person id.
    fn activity(&self, grids: &[String], period: Period) -> StorageResult<Vec<ActivityRow>>;

    /// Testing hook: every push waits this long after taking its feed sequences and before
    /// committing, to force late commits (zero turns it off; backends whose pushes commit in
    /// sequence order anyway ignore it).
    fn set_push_commit_delay(&self, d: std::time::Duration);
}

/// Receives the chunks of an export.
pub type DumpSink<'a> = dyn FnMut(DumpChunk) -> StorageResult<()> + 'a;
/// Produces the chunks of an import by calling the sink it is given.
pub type DumpSource<'a> = dyn FnMut(&mut DumpSink<'_>) -> StorageResult<()> + 'a;

/// Rows copied, by table name.
pub type CopyCounts = std::collections::BTreeMap<String, u64>;

/// Rows per chunk of an export (records also stop at [`DUMP_CHUNK_BYTES`]).
pub const DUMP_CHUNK_ROWS: usize = 1000;
/// Bytes of documents or changes per chunk of an export.
pub const DUMP_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Copies every row of `from` into the empty store `to`: server meta (epoch, reference
/// generation), grids, people, desk accounts, grid charts and duties, codes, devices, records, changes, departures, feed heads,
/// feed log with tokens, audit, complete attachments with their bytes and references.
/// Devices keep syncing against the copy without a re-bootstrap.
pub fn copy_all(from: &dyn Storage, to: &dyn Storage) -> StorageResult<CopyCounts> {
    to.import(&mut |sink: &mut DumpSink<'_>| from.export(sink))
}

/// A grid row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridRow {
    /// Code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Level.
    pub level: GridLevel,
    /// Kind.
    pub kind: GridKind,
    /// Parent code.
    pub parent: Option<String>,
}

/// A person row as stored (including inactive people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Phone.
    pub phone: String,
    /// Role.
    pub role: Role,
    /// Assigned grids (stored as a JSON array).
    pub grids: Vec<String>,
    /// Whether the person is active.
    pub active: bool,
}

/// An enrolment code row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    /// The code and its metadata.
    pub code: EnrolCode,
    /// When it was redeemed.
    pub used_at_ms: Option<i64>,
}

/// A record row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: RecordKind,
    /// Current grid.
    pub grid: String,
    /// Compact document.
    pub doc: Vec<u8>,
    /// Heads (32 bytes each).
    pub heads: Vec<u8>,
    /// Feed sequence of the last change.
    pub seq: i64,
    /// Sequence at which it entered its current grid.
    pub grid_since: i64,
    /// Last write.
    pub updated_at_ms: i64,
}

/// A change chunk row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    /// Record id.
    pub record_id: String,
    /// Grid whose feed sequence it was stored under.
    pub grid: String,
    /// Feed sequence it was stored under.
    pub seq: i64,
    /// Change bytes.
    pub bytes: Vec<u8>,
}

/// A departure row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartureRow {
    /// Grid the record left.
    pub grid: String,
    /// Sequence in that grid's feed.
    pub seq: i64,
    /// Record id.
    pub record_id: String,
    /// Grid it moved to.
    pub new_grid: String,
}

/// A feed log row: the token of one feed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedLogRow {
    /// Grid.
    pub grid: String,
    /// Sequence.
    pub seq: i64,
    /// Random token of the entry.
    pub token: i64,
}

/// One slice of one table in an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpChunk {
    /// Server meta: key and value (epoch, reference generation).
    Meta(Vec<(String, String)>),
    /// Grid nodes.
    Grids(Vec<GridRow>),
    /// People.
    People(Vec<PersonRow>),
    /// Desk accounts (sessions and password-set links are not copied: a copy signs nobody
    /// in).
    DeskAccounts(Vec<DeskAccount>),
    /// Supervising bodies of grids (the grid chart).
    GridCharts(Vec<GridChartInfo>),
    /// Published duties of people (the grid chart).
    PersonDuties(Vec<PersonDuties>),
    /// Livestock scale threshold overrides per league.
    ScaleThresholds(Vec<scale::StoredScale>),
    /// Enrolment codes.
    Codes(Vec<CodeRow>),
    /// Devices.
    Devices(Vec<Device>),
    /// Records.
    Records(Vec<RecordRow>),
    /// Change chunks.
    Changes(Vec<ChangeRow>),
    /// Departures.
    Departures(Vec<DepartureRow>),
    /// Feed heads: grid and head sequence.
    FeedHeads(Vec<(String, i64)>),
    /// Feed log with tokens.
    FeedLog(Vec<FeedLogRow>),
    /// Audit entries with their ids (order).
    Audit(Vec<(i64, AuditEntry)>),
    /// Attachment metadata (complete attachments only: partial uploads are not copied).
    Attachments(Vec<AttachmentMeta>),
    /// References of records to attachments.
    AttachmentRefs(Vec<AttachmentRefRow>),
    /// A piece (at most [`ATTACHMENT_DUMP_PIECE`] bytes) of an attachment's bytes, in
    /// order; `last` on the piece that ends it.
    AttachmentBytes {
        /// The attachment.
        sha256: String,
        /// Offset of the first byte.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
        /// Whether this piece ends the attachment.
        last: bool,
    },
}

impl DumpChunk {
    /// Table name and row count.
    pub fn table(&self) -> (&'static str, usize) {
        match self {
            DumpChunk::Meta(v) => ("server_meta", v.len()),
            DumpChunk::Grids(v) => ("grids", v.len()),
            DumpChunk::People(v) => ("people", v.len()),
            DumpChunk::DeskAccounts(v) => ("desk_accounts", v.len()),
            DumpChunk::GridCharts(v) => ("grid_charts", v.len()),
            DumpChunk::PersonDuties(v) => ("person_duties", v.len()),
            DumpChunk::ScaleThresholds(v) => ("scale_thresholds", v.len()),
            DumpChunk::Codes(v) => ("enrol_codes", v.len()),
            DumpChunk::Devices(v) => ("devices", v.len()),
            DumpChunk::Records(v) => ("records", v.len()),
            DumpChunk::Changes(v) => ("changes", v.len()),
            DumpChunk::Departures(v) => ("departures", v.len()),
            DumpChunk::FeedHeads(v) => ("feed_heads", v.len()),
            DumpChunk::FeedLog(v) => ("feed_log", v.len()),
            DumpChunk::Audit(v) => ("audit", v.len()),
            DumpChunk::Attachments(v) => ("attachments", v.len()),
            DumpChunk::AttachmentRefs(v) => ("attachment_refs", v.len()),
            DumpChunk::AttachmentBytes { bytes, .. } => ("attachment_bytes", bytes.len()),
        }
    }
}

/// The most bytes of an attachment read at once ([`Storage::read_attachment`]; a download
/// streams pieces of this size).
pub const ATTACHMENT_PIECE: usize = 256 * 1024;
/// Bytes of an attachment per [`DumpChunk::AttachmentBytes`].
pub const ATTACHMENT_DUMP_PIECE: usize = 1024 * 1024;
/// The default quota of attachment bytes one device may upload (2 GB).
pub const DEFAULT_ATTACHMENT_QUOTA: u64 = 2_000_000_000;

/// An attachment as stored: metadata (the bytes are in the backend's byte store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentMeta {
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub mime: String,
    /// Bytes held (the offset the next append starts at).
    pub held: u64,
    /// Whole and verified.
    pub complete: bool,
    /// Device that started the upload (its quota counts the attachment).
    pub uploaded_by: String,
    /// When the upload started.
    pub created_at_ms: i64,
    /// Last append.
    pub updated_at_ms: i64,
    /// When it was verified whole.
    pub completed_at_ms: Option<i64>,
}

/// A reference of a record to an attachment, as a device pushed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AttachmentRefRow {
    /// The attachment.
    pub sha256: String,
    /// The record that refers to it.
    pub record_id: String,
    /// The device whose push carried the reference.
    pub device_id: String,
    /// Size the reference declares.
    pub size: u64,
    /// Type the reference declares.
    pub mime: String,
}

/// Limits of attachment uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// Largest attachment in bytes.
    pub max_bytes: u64,
    /// Bytes of attachments (complete or partial) one device may have started.
    pub quota_bytes: u64,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        AttachmentLimits {
            max_bytes: gridsync_core::attachment::DEFAULT_MAX_BYTES,
            quota_bytes: DEFAULT_ATTACHMENT_QUOTA,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written and synced; this many bytes are held now.
    Appended {
        /// Bytes held.
        held: u64,
    },
    /// The last byte arrived and the whole verified.
    Completed,
    /// It was complete already (the bytes were ignored).
    AlreadyComplete,
    /// The offset is not what is held; nothing was written.
    WrongOffset {
        /// Bytes held.
        held: u64,
    },
    /// Larger than the server takes.
    TooLarge {
        /// Declared size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The device's quota would be exceeded.
    OverQuota {
        /// Bytes the device has started uploading already.
        used: u64,
        /// Its quota.
        quota: u64,
    },
    /// An upload of the same hash with another size or type is under way; nothing was
    /// written (the hash decides at its end which one was true).
    Declared {
        /// Size of the upload under way.
        size: u64,
        /// Its type.
        mime: String,
        /// Bytes it holds.
        held: u64,
    },
    /// The bytes run past the declared size; nothing was written.
    PastEnd {
        /// Declared size.
        size: u64,
    },
    /// The whole did not hash to its name or is not of its type: everything held was
    /// discarded.
    Corrupt {
        /// What did not match.
        reason: String,
    },
}

/// Why garbage collection deleted an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GcReason {
    /// No record refers to it.
    Unreferenced,
    /// A partial upload not written to for longer than the limit.
    StalePartial,
}

/// An attachment garbage collection deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcEntry {
    /// It, as it was.
    pub meta: AttachmentMeta,
    /// Why.
    pub reason: GcReason,
}

/// Collects rows into chunks for an export, flushing to the sink by rows or bytes.
#[derive(Debug)]
pub struct ChunkBuffer<T> {
    rows: Vec<T>,
    bytes: usize,
}

impl<T> Default for ChunkBuffer<T> {
    fn default() -> Self {
        ChunkBuffer {
            rows: Vec::new(),
            bytes: 0,
        }
    }
}

impl<T> ChunkBuffer<T> {
    /// Adds a row of about `bytes` bytes; sends a chunk when full.
    pub fn push(
        &mut self,
        row: T,
        bytes: usize,
        wrap: fn(Vec<T>) -> DumpChunk,
        sink: &mut DumpSink<'_>,
    ) -> StorageResult<()> {
        self.rows.push(row);
        self.bytes += bytes;
        if self.rows.len() >= DUMP_CHUNK_ROWS || self.bytes >= DUMP_CHUNK_BYTES {
            self.flush(wrap, sink)?;
        }
        Ok(())
    }

    /// Sends what is left.
    pub fn flush(
        &mut self,
        wrap: fn(Vec<T>) -> DumpChunk,
        sink: &mut DumpSink<'_>,
    ) -> StorageResult<()> {
        if !self.rows.is_empty() {
            self.bytes = 0;
            sink(wrap(std::mem::take(&mut self.rows)))?;
        }
        Ok(())
    }
}
