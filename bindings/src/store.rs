//! `GridStore`: the device's local store as one thread-safe object for the app.

use std::sync::{Arc, Mutex};

use gridsync_core::model::{self as m, DEFAULT_TEMPLATE_ID};
use gridsync_core::store::Store;

use crate::error::{guard, ApiError};
use crate::types::*;

/// The device's local store: one SQLite file holding the records, the queries over them
/// and the sync bookkeeping.
///
/// Thread safety: `GridStore` is `Send + Sync`; share one instance across the app and
/// call it from any thread. Every call is blocking (SQLite on disk, and the network for
/// `enroll`, `sync` and `rotate_credential`): call it from a background thread —
/// `Dispatchers.IO` on Android, `Task.detached` on iOS — never from the main thread.
#[derive(Debug, uniffi::Object)]
pub struct GridStore {
    pub(crate) store: Arc<Store>,
    /// Serializes syncs of this store (a second sync waits for the first).
    pub(crate) sync_lock: Mutex<()>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GridStore>();
};

impl GridStore {
    /// The person acting on this device (`NotEnrolled` when none is set up).
    fn person_id(&self) -> Result<String, ApiError> {
        Ok(self.store.actor()?.person_id)
    }

    /// A template version, or the newest version of a template when `version` is `None`.
    fn resolve_template(
        &self,
        template_id: Option<String>,
        version: Option<u32>,
    ) -> Result<m::ChecklistTemplate, ApiError> {
        let template_id = template_id.unwrap_or_else(|| DEFAULT_TEMPLATE_ID.to_string());
        match version {
            Some(v) => Ok(self.store.template(&template_id, v)?),
            None => self
                .store
                .templates()?
                .into_iter()
                .find(|t| t.template_id == template_id)
                .ok_or_else(|| ApiError::NotFound {
                    what: "template".into(),
                }),
        }
    }

    /// Loads a visit, changes it and saves it.
    fn edit_visit(
        &self,
        visit_id: &str,
        change: impl FnOnce(&mut m::Visit, &str, i64),
    ) -> Result<Visit, ApiError> {
        let person = self.person_id()?;
        let mut v = self.store.visit(visit_id)?;
        change(&mut v, &person, gridsync_core::now_ms());
        Ok(self.store.save_visit(v)?.into())
    }
}

#[uniffi::export]
impl GridStore {
    /// Opens (or creates) the store in the file at `path`.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<Self>, ApiError> {
        guard(|| {
            Ok(Arc::new(GridStore {
                store: Arc::new(Store::open(&path)?),
                sync_lock: Mutex::new(()),
            }))
        })
    }

    // ---- identity and reference data ----

    /// The person using this device, once enrolled (or set up by hand).
    pub fn profile(&self) -> Result<Option<Person>, ApiError> {
        guard(|| Ok(self.store.profile()?))
    }

    /// Sets the person using this device without a server (training and offline demos;
    /// `enroll` does this from the server's answer).
    pub fn set_profile(&self, person: Person) -> Result<(), ApiError> {
        guard(|| Ok(self.store.set_profile(&person)?))
    }

    /// Grid nodes known on the device (from the last sync).
    pub fn grids(&self) -> Result<Vec<GridNode>, ApiError> {
        guard(|| Ok(self.store.grids()?))
    }

    /// Adds or replaces grid nodes by hand (training and offline demos; sync does this).
    pub fn upsert_grids(&self, nodes: Vec<GridNode>) -> Result<(), ApiError> {
        guard(|| Ok(self.store.upsert_grids(&nodes)?))
    }

    /// People known on the device (for grid charts).
    pub fn people(&self) -> Result<Vec<Person>, ApiError> {
        guard(|| Ok(self.store.people()?))
    }

    // ---- producers ----

    /// Registers a new producer as a draft directory entry, created by the device's person.
    pub fn create_producer(&self, producer: NewProducer) -> Result<Producer, ApiError> {
        guard(|| {
            let person = self.person_id()?;
            let p = producer.into_core(&person, gridsync_core::now_ms());
            Ok(self.store.create_producer(p)?.into())
        })
    }

    /// Saves edits to a producer (change the fields of a `Producer` read from the store).
    /// Review fields are kept as stored; editing a directory field of an approved entry
    /// sends it back to review.
    pub fn update_producer(&self, producer: Producer) -> Result<Producer, ApiError> {
        guard(|| Ok(self.store.update_producer(producer.into())?.into()))
    }

    /// A producer by id.
    pub fn producer(&self, id: String) -> Result<Producer, ApiError> {
        guard(|| Ok(self.store.producer(&id)?.into()))
    }

    /// Producers of a grid and every grid below it, sorted and paged.
    pub fn producers_in_grid(
        &self,
        grid: String,
        sort: ProducerSort,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<ProducerSummary>, ApiError> {
        guard(|| {
            self.store
                .producers_in_grid(&grid, sort, limit, offset)?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        })
    }

    /// Producers whose name, owner or phone contains `query` (Chinese substrings work).
    pub fn search_producers(
        &self,
        query: String,
        limit: u32,
    ) -> Result<Vec<ProducerSummary>, ApiError> {
        guard(|| {
            self.store
                .search_producers(&query, limit)?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        })
    }

    /// Takes a step in the directory review chain: submit, approve (township, then
    /// county) or return with a reason.
    pub fn review_producer(&self, id: String, step: ReviewStep) -> Result<Producer, ApiError> {
        guard(|| Ok(self.store.review_producer(&id, step.into())?.into()))
    }

    /// Confirms a producer for `year` (年度确认) as the device's person: its fields were
    /// checked and it is still operating (`operating`), or closed, which sets its status
    /// (an edit: an approved entry goes back to review). Confirming an operating producer
    /// leaves an approval as it was. `year` is `current_year()` or the one before;
    /// anything else is `ApiError.Invalid` naming `year`.
    pub fn confirm_producer(
        &self,
        id: String,
        year: i32,
        operating: bool,
    ) -> Result<Producer, ApiError> {
        guard(|| Ok(self.store.confirm_producer(&id, year, operating)?.into()))
    }

    /// Resolves the possible duplicate `other` of producer `id` (supervisors and county
    /// staff): "not a duplicate" (`merge == false`: the mark is closed for good) or
    /// "duplicate of `other`" (`merge`: this entry becomes a tombstone pointing to
    /// `other`, whose visits count for `other`). Other roles get `ApiError.Forbidden`; an
    /// `other` that is not marked on this entry gets `ApiError.Invalid` naming `other`.
    pub fn resolve_duplicate(
        &self,
        id: String,
        other: String,
        merge: bool,
    ) -> Result<Producer, ApiError> {
        guard(|| Ok(self.store.resolve_duplicate(&id, &other, merge)?.into()))
    }

    /// Settles a carried edit left as a conflict on producer `id` (an edit of an entry
    /// merged into this one, made before the phone knew of the merge, that contradicts
    /// this entry): `take` sets the field to the carried value, otherwise this entry keeps
    /// its own. Either way the conflict closes in the device person's name.
    pub fn settle_carried_edit(
        &self,
        id: String,
        edit: String,
        take: bool,
    ) -> Result<Producer, ApiError> {
        guard(|| Ok(self.store.settle_carried_edit(&id, &edit, take)?.into()))
    }

    /// Active producers of a grid and every grid below it not yet confirmed for `year`
    /// (a confirmation of a later year counts for the years before it), by name.
    pub fn unconfirmed_producers(
        &self,
        grid: String,
        year: i32,
    ) -> Result<Vec<ProducerSummary>, ApiError> {
        guard(|| {
            self.store
                .unconfirmed_producers(&grid, year)?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        })
    }

    /// The current year in China time, by the device's clock as corrected by the last
    /// sync: the year `confirm_producer` confirms.
    pub fn current_year(&self) -> i32 {
        gridsync_core::dates::china_year(gridsync_core::now_ms())
    }

    // ---- templates ----

    /// The newest version of the daily patrol template (built in until the county sends one).
    pub fn default_template(&self) -> Result<ChecklistTemplate, ApiError> {
        guard(|| Ok(self.resolve_template(None, None)?.into()))
    }

    /// The newest version of every template on the device, with the built-in default.
    pub fn templates(&self) -> Result<Vec<ChecklistTemplate>, ApiError> {
        guard(|| {
            Ok(self
                .store
                .templates()?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// One template version.
    pub fn template(
        &self,
        template_id: String,
        version: u32,
    ) -> Result<ChecklistTemplate, ApiError> {
        guard(|| Ok(self.store.template(&template_id, version)?.into()))
    }

    // ---- visits ----

    /// Opens a draft visit to a producer as the device's person, with its first answers,
    /// findings, rapid tests and rectification.
    pub fn create_visit(&self, visit: NewVisit) -> Result<Visit, ApiError> {
        guard(|| {
            let person = self.person_id()?;
            let producer = self.store.producer(&visit.producer_id)?;
            let template = self.resolve_template(visit.template_id, visit.template_version)?;
            let now = gridsync_core::now_ms();
            let mut v = m::Visit::new(&producer.id, &producer.grid, &person, &template, now);
            v.location = visit.location;
            v.answers = visit
                .answers
                .into_iter()
                .map(|(k, a)| (k, a.into()))
                .collect();
            v.findings = visit
                .findings
                .into_iter()
                .map(|f| f.into_core(&person, now))
                .collect();
            v.rapid_tests = visit
                .rapid_tests
                .into_iter()
                .map(|t| t.into_core(&person, now))
                .collect();
            v.rectification = visit.rectification.map(Into::into);
            v.follow_up_of = visit.follow_up_of;
            Ok(self.store.save_visit(v)?.into())
        })
    }

    /// Saves edits to a visit (change the fields of a `Visit` read from the store).
    pub fn save_visit(&self, visit: Visit) -> Result<Visit, ApiError> {
        guard(|| Ok(self.store.save_visit(visit.into())?.into()))
    }

    /// Sets (or replaces) the answer to one checklist item.
    pub fn set_answer(
        &self,
        visit_id: String,
        item_id: String,
        answer: Answer,
    ) -> Result<Visit, ApiError> {
        guard(|| {
            self.edit_visit(&visit_id, |v, _, _| {
                v.answers.insert(item_id, answer.into());
            })
        })
    }

    /// Adds a finding to a visit.
    pub fn add_finding(&self, visit_id: String, finding: NewFinding) -> Result<Visit, ApiError> {
        guard(|| {
            self.edit_visit(&visit_id, |v, person, now| {
                v.findings.push(finding.into_core(person, now));
            })
        })
    }

    /// Adds a rapid test to a visit.
    pub fn add_rapid_test(&self, visit_id: String, test: NewRapidTest) -> Result<Visit, ApiError> {
        guard(|| {
            self.edit_visit(&visit_id, |v, person, now| {
                v.rapid_tests.push(test.into_core(person, now));
            })
        })
    }

    /// Orders a rectification (整改通知) on a visit.
    pub fn order_rectification(
        &self,
        visit_id: String,
        rectification: NewRectification,
    ) -> Result<Visit, ApiError> {
        guard(|| {
            self.edit_visit(&visit_id, |v, _, _| {
                v.rectification = Some(rectification.into());
            })
        })
    }

    /// Closes a visit; every required item that applies must be answered.
    pub fn complete_visit(&self, id: String) -> Result<Visit, ApiError> {
        guard(|| Ok(self.store.complete_visit(&id)?.into()))
    }

    /// Links a follow-up visit to the visit it follows up; `resolved` marks the
    /// rectification done.
    pub fn add_follow_up(
        &self,
        original_id: String,
        follow_up_id: String,
        resolved: bool,
    ) -> Result<Visit, ApiError> {
        guard(|| {
            Ok(self
                .store
                .add_follow_up(&original_id, &follow_up_id, resolved)?
                .into())
        })
    }

    /// Adds a supervisor's or county reviewer's review to a visit.
    pub fn review_visit(&self, id: String, comment: String) -> Result<Visit, ApiError> {
        guard(|| Ok(self.store.review_visit(&id, &comment)?.into()))
    }

    /// A visit by id.
    pub fn visit(&self, id: String) -> Result<Visit, ApiError> {
        guard(|| Ok(self.store.visit(&id)?.into()))
    }

    // ---- queries ----

    /// Active producers in `grid` (and below) due for patrol, most overdue first;
    /// `now_ms` defaults to the current time.
    #[uniffi::method(default(now_ms = None))]
    pub fn due_patrols(
        &self,
        grid: String,
        now_ms: Option<i64>,
    ) -> Result<Vec<DueProducer>, ApiError> {
        guard(|| {
            let now = now_ms.unwrap_or_else(gridsync_core::now_ms);
            self.store
                .due_patrols(&grid, now)?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        })
    }

    /// Open rectifications, earliest deadline first; `today` (`YYYY-MM-DD`) defaults to
    /// today in China Standard Time.
    #[uniffi::method(default(today = None))]
    pub fn open_rectifications(
        &self,
        today: Option<String>,
    ) -> Result<Vec<RectificationItem>, ApiError> {
        guard(|| {
            let today =
                today.unwrap_or_else(|| gridsync_core::dates::china_date(gridsync_core::now_ms()));
            Ok(self.store.open_rectifications(&today)?)
        })
    }

    /// A producer's visits, newest first.
    pub fn visit_history(&self, producer_id: String) -> Result<Vec<VisitSummary>, ApiError> {
        guard(|| {
            self.store
                .visit_history(&producer_id)?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        })
    }

    /// Counts for the status bar: producers, visits, unsynced, rejected, corrupt, kept.
    pub fn counts(&self) -> Result<Counts, ApiError> {
        guard(|| Ok(self.store.counts()?))
    }

    /// Sets the patrol interval in days for a producer type and risk grade.
    pub fn set_patrol_interval(
        &self,
        producer_type: ProducerType,
        risk: RiskLevel,
        days: u32,
    ) -> Result<(), ApiError> {
        guard(|| Ok(self.store.set_patrol_interval(producer_type, risk, days)?))
    }

    // ---- conflicts, history, rejected and kept edits ----

    /// Fields of a record holding concurrent values (after a merge).
    pub fn conflicts(&self, record_id: String) -> Result<Vec<Conflict>, ApiError> {
        guard(|| {
            Ok(self
                .store
                .conflicts(&record_id)?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// Keeps the current winner of a conflicting field and drops the other values.
    pub fn resolve_conflict(&self, record_id: String, path: String) -> Result<(), ApiError> {
        guard(|| Ok(self.store.resolve_conflict(&record_id, &path)?))
    }

    /// The history of changes to a record, oldest first.
    pub fn history(&self, record_id: String) -> Result<Vec<HistoryEntry>, ApiError> {
        guard(|| {
            Ok(self
                .store
                .history(&record_id)?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// Local edits the server refused, with its reasons.
    pub fn rejected_edits(&self) -> Result<Vec<RejectedEdit>, ApiError> {
        guard(|| {
            self.store
                .rejected_edits()?
                .into_iter()
                .map(|r| RejectedEdit::from_parts(r.id, &r.kind, r.code, r.reason))
                .collect()
        })
    }

    /// Drops a rejected edit: the record goes back to what the server last accepted.
    pub fn discard_rejected(&self, record_id: String) -> Result<(), ApiError> {
        guard(|| Ok(self.store.discard_rejected(&record_id)?))
    }

    /// Edits kept after their grid left the device, for export.
    pub fn kept_edits(&self) -> Result<Vec<KeptEdit>, ApiError> {
        guard(|| {
            self.store
                .kept_edits()?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        })
    }

    /// Forgets a kept edit once it has been exported or dealt with.
    pub fn dismiss_kept_edit(&self, record_id: String) -> Result<(), ApiError> {
        guard(|| Ok(self.store.dismiss_kept_edit(&record_id)?))
    }

    /// Checks the database: SQLite's own check, the records' documents and the list
    /// tables against the documents. `full`: `integrity_check` and every record (seconds
    /// on a township's store); otherwise `quick_check` and a sample. With `repair`, the
    /// list tables are rebuilt from the documents when anything is wrong. A damaged
    /// record is set aside and fetched whole from the server at the next sync.
    /// (A quick check already runs in the background each time the store opens.)
    pub fn check_integrity(&self, full: bool, repair: bool) -> Result<IntegrityReport, ApiError> {
        guard(|| {
            let level = if full {
                gridsync_core::store::IntegrityLevel::Full
            } else {
                gridsync_core::store::IntegrityLevel::Quick
            };
            let r = self.store.check_integrity(level, repair)?;
            Ok(IntegrityReport {
                ok: r.is_ok_now(),
                full,
                sqlite_problems: r.sqlite,
                table_problems: r.tables,
                corrupt_record_ids: r.corrupt_found.into_iter().map(|(id, _)| id).collect(),
                documents_checked: r.documents_checked,
                rebuilt: r.rebuilt,
                remaining: r.remaining,
                elapsed_ms: r.elapsed_ms,
            })
        })
    }
}

/// What [`GridStore::check_integrity`] found and repaired.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IntegrityReport {
    /// Nothing is wrong now (after the repair, if one ran).
    pub ok: bool,
    /// Whether this was the full check.
    pub full: bool,
    /// Problems SQLite's own check reported.
    pub sqlite_problems: Vec<String>,
    /// Where the list tables disagreed with the records.
    pub table_problems: Vec<String>,
    /// Records found damaged by this check (set aside until the next sync heals them).
    pub corrupt_record_ids: Vec<String>,
    /// Records loaded and compared.
    pub documents_checked: u64,
    /// Whether the list tables were rebuilt.
    pub rebuilt: bool,
    /// Problems left after the repair.
    pub remaining: Vec<String>,
    /// Time taken, milliseconds.
    pub elapsed_ms: u64,
}
