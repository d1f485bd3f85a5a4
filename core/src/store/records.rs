//! Reading and writing records: producers and their review steps, visits, checklist
//! templates, conflicts, history, records set aside, and batch imports. Every write goes
//! through the one write path (`put`); what a step or an edit does to the review state is
//! decided by [`crate::rules`].

use rusqlite::{Connection, OptionalExtension};

use super::documents::{self, load_doc, persist_doc};
use super::put::{store_new, PutMode};
use super::Store;
use crate::doc::{Conflict, HistoryEntry, RecordDoc};
use crate::model::{
    default_template, Acceptance, ChecklistTemplate, Producer, Record, ReviewAction, Visit,
    VisitReview, VisitStatus, DEFAULT_TEMPLATE_ID,
};
use crate::rules;
use crate::validate;
use crate::{now_ms, Error, Result};

impl Store {
    /// Registers a new producer (as the device's person).
    pub fn create_producer(&self, mut p: Producer) -> Result<Producer> {
        let now = now_ms();
        p.created_at_ms = p.created_at_ms.max(validate::MIN_TIME_MS);
        p.updated_at_ms = now;
        let actor = self.actor()?;
        if p.created_by.is_empty() {
            p.created_by = actor.person_id.clone();
        }
        producer_of(self.put(&actor, Record::Producer(p), PutMode::Create, now)?)
            .ok_or_else(unexpected_kind)
    }

    /// Saves edits to a producer. Editing a directory field of an approved entry sends it
    /// back to review; editing a returned entry puts it back to draft.
    pub fn update_producer(&self, mut p: Producer) -> Result<Producer> {
        let actor = self.actor()?;
        let now = now_ms();
        p.updated_at_ms = now;
        producer_of(self.put(&actor, Record::Producer(p), PutMode::Update, now)?)
            .ok_or_else(unexpected_kind)
    }

    /// Takes a step in the directory review chain.
    pub fn review_producer(&self, id: &str, action: ReviewAction) -> Result<Producer> {
        let actor = self.actor()?;
        let mut p = self.producer(id)?;
        let now = now_ms();
        rules::take_review_step(&mut p, action, &actor.person_id, now)?;
        producer_of(self.put(&actor, Record::Producer(p), PutMode::Review, now)?)
            .ok_or_else(unexpected_kind)
    }

    /// Confirms a producer for `year` (年度确认, as the device's person): its fields were
    /// checked and it is still operating, or closed (which sets its status, an edit that
    /// sends an approved entry back to review). `year` must be this year in China time or
    /// the last ([`rules::confirm_year`]). Confirming an operating producer leaves its
    /// approval as it was.
    pub fn confirm_producer(&self, id: &str, year: i32, operating: bool) -> Result<Producer> {
        let actor = self.actor()?;
        let mut p = self.producer(id)?;
        let now = now_ms();
        rules::confirm_year(&mut p, year, operating, &actor.person_id, now)?;
        producer_of(self.put(&actor, Record::Producer(p), PutMode::Review, now)?)
            .ok_or_else(unexpected_kind)
    }

    /// Resolves the possible duplicate `other` of producer `id` (supervisors and county
    /// staff): "not a duplicate" (`merge == false`, the mark is closed for good) or
    /// "duplicate of `other`" (`merge`: this entry becomes a tombstone pointing to `other`;
    /// its visits count for `other`). The server mirrors the outcome onto `other`'s mark
    /// ([`rules::resolve_duplicate`]).
    pub fn resolve_duplicate(&self, id: &str, other: &str, merge: bool) -> Result<Producer> {
        let actor = self.actor()?;
        let mut p = self.producer(id)?;
        let now = now_ms();
        rules::resolve_duplicate(&mut p, other, merge, &actor.person_id, now)?;
        producer_of(self.put(&actor, Record::Producer(p), PutMode::Review, now)?)
            .ok_or_else(unexpected_kind)
    }

    /// Settles the carried edit `edit` of producer `id`, a conflict the server left when an
    /// edit of an entry merged into this one contradicted this entry's value: `take` sets
    /// the field to the carried value, otherwise this entry keeps its own
    /// ([`rules::settle_carried_edit`]).
    pub fn settle_carried_edit(&self, id: &str, edit: &str, take: bool) -> Result<Producer> {
        let actor = self.actor()?;
        let mut p = self.producer(id)?;
        let now = now_ms();
        rules::settle_carried_edit(&mut p, edit, take, &actor.person_id, now)?;
        producer_of(self.put(&actor, Record::Producer(p), PutMode::Review, now)?)
            .ok_or_else(unexpected_kind)
    }

    /// A producer by id.
    pub fn producer(&self, id: &str) -> Result<Producer> {
        producer_of(self.record(id)?).ok_or_else(|| not_found("producer", id))
    }

    /// Creates or updates a visit (as the device's person).
    pub fn save_visit(&self, mut v: Visit) -> Result<Visit> {
        let actor = self.actor()?;
        let now = now_ms();
        v.updated_at_ms = now;
        let exists = self.record_exists(&v.id)?;
        let mode = if exists {
            PutMode::Update
        } else {
            PutMode::Create
        };
        visit_of(self.put(&actor, Record::Visit(v), mode, now)?).ok_or_else(unexpected_kind)
    }

    /// Closes a visit: every required item must be answered.
    pub fn complete_visit(&self, id: &str) -> Result<Visit> {
        let mut v = self.visit(id)?;
        if v.status == VisitStatus::Completed {
            return Err(Error::Workflow("the visit is already completed".into()));
        }
        v.status = VisitStatus::Completed;
        let now = now_ms();
        v.ended_at_ms = Some(v.ended_at_ms.unwrap_or(now).max(v.started_at_ms));
        self.save_visit(v)
    }

    /// Links a follow-up visit to the visit it follows up, and marks the rectification
    /// resolved when `resolved` is set.
    pub fn add_follow_up(&self, original: &str, follow_up: &str, resolved: bool) -> Result<Visit> {
        let f = self.visit(follow_up)?;
        if f.producer_id != self.visit(original)?.producer_id {
            return Err(validate::Invalid::new(
                "follow_up_visit",
                "is a visit to another producer",
            )
            .into());
        }
        let mut v = self.visit(original)?;
        v.follow_up_visit = Some(follow_up.to_string());
        if resolved {
            if let Some(r) = &mut v.rectification {
                r.resolved_at_ms = Some(now_ms());
            }
        }
        self.save_visit(v)
    }

    /// Adds a supervisor's or county reviewer's review to a visit.
    pub fn review_visit(&self, id: &str, comment: &str) -> Result<Visit> {
        let actor = self.actor()?;
        let mut v = self.visit(id)?;
        v.review = Some(VisitReview {
            by: actor.person_id,
            at_ms: now_ms(),
            comment: comment.to_string(),
        });
        self.save_visit(v)
    }

    /// A visit by id.
    pub fn visit(&self, id: &str) -> Result<Visit> {
        visit_of(self.record(id)?).ok_or_else(|| not_found("visit", id))
    }

    /// Saves a checklist template version (county staff and administrators).
    pub fn save_template(&self, t: ChecklistTemplate) -> Result<ChecklistTemplate> {
        let actor = self.actor()?;
        let mode = if self.record_exists(&t.id)? {
            PutMode::Update
        } else {
            PutMode::Create
        };
        template_of(self.put(&actor, Record::Template(t), mode, now_ms())?)
            .ok_or_else(unexpected_kind)
    }

    /// A template version: a stored one, or the built-in default.
    pub fn template(&self, template_id: &str, version: u32) -> Result<ChecklistTemplate> {
        let id = ChecklistTemplate::record_id(template_id, version);
        let heads: Option<Vec<u8>> = self.read(|c| {
            Ok(
                c.prepare_cached("SELECT heads FROM records WHERE id = ?1 AND corrupt IS NULL")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?,
            )
        })?;
        if let Some(h) = &heads {
            let cache = self.templates.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, t)) = cache.get(&id) {
                if at == h {
                    return Ok(t.clone());
                }
            }
        }
        match self.record(&id) {
            Ok(Record::Template(t)) => {
                if let Some(h) = heads {
                    self.templates
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, (h, t.clone()));
                }
                Ok(t)
            }
            Err(Error::NotFound { .. }) if template_id == DEFAULT_TEMPLATE_ID && version == 1 => {
                Ok(default_template("builtin"))
            }
            Ok(_) => Err(Error::NotFound {
                kind: "template",
                id,
            }),
            Err(e) => Err(e),
        }
    }

    /// The newest version of every template on the device, with the built-in default.
    pub fn templates(&self) -> Result<Vec<ChecklistTemplate>> {
        let ids: Vec<String> = self.read(|c| {
            let mut st = c.prepare(
                "SELECT id FROM templates t WHERE version = (SELECT MAX(version) FROM templates WHERE template_id = t.template_id) ORDER BY template_id",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        let mut out = Vec::new();
        for id in ids {
            if let Ok(Record::Template(t)) = self.record(&id) {
                out.push(t);
            }
        }
        if !out.iter().any(|t| t.template_id == DEFAULT_TEMPLATE_ID) {
            out.insert(0, default_template("builtin"));
        }
        Ok(out)
    }

    /// Records a township acceptance decision (达标验收) or changes the one for its
    /// township and year (county staff and administrators; the rules say who).
    pub fn save_acceptance(&self, mut a: Acceptance) -> Result<Acceptance> {
        let actor = self.actor()?;
        let now = now_ms();
        a.updated_at_ms = now;
        let mode = if self.record_exists(&a.id)? {
            PutMode::Update
        } else {
            PutMode::Create
        };
        match self.put(&actor, Record::Acceptance(a), mode, now)? {
            Record::Acceptance(a) => Ok(a),
            _ => Err(unexpected_kind()),
        }
    }

    /// The acceptance decisions on a township-level grid held on the device, newest year
    /// first (records set aside are left out).
    pub fn acceptances(&self, grid: &str) -> Result<Vec<Acceptance>> {
        let ids: Vec<String> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM records WHERE grid = ?1 AND kind = 'acceptance' AND corrupt IS NULL",
            )?;
            let rows = st.query_map([grid], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.record(&id) {
                Ok(Record::Acceptance(a)) => out.push(a),
                Ok(_) | Err(Error::Corrupt { .. }) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| b.year.cmp(&a.year).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Any record by id.
    pub fn record(&self, id: &str) -> Result<Record> {
        let loaded = self.read(|c| load_doc(c, id));
        match loaded {
            Ok(Some(doc)) => doc.read(),
            Ok(None) => Err(not_found("record", id)),
            Err(Error::Corrupt { id, detail }) => {
                self.set_aside(&id, &detail)?;
                Err(Error::Corrupt { id, detail })
            }
            Err(e) => Err(e),
        }
    }

    fn record_exists(&self, id: &str) -> Result<bool> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT 1 FROM records WHERE id = ?1", [id], |_| Ok(()))
                    .optional()?
                    .is_some(),
            )
        })
    }

    /// Fields of a record holding concurrent values.
    pub fn conflicts(&self, id: &str) -> Result<Vec<Conflict>> {
        let doc = self.read(|c| existing_doc(c, id))?;
        doc.conflicts()
    }

    /// Keeps the current winner of a conflicting field and drops the other values.
    pub fn resolve_conflict(&self, id: &str, path: &str) -> Result<()> {
        let actor = self.actor()?;
        let now = now_ms();
        self.write(|tx| {
            let mut doc = existing_doc(tx, id)?;
            doc.set_actor(&self.actor_id());
            let old_heads = doc.heads();
            if doc.resolve_conflict(path, &actor.person_id, now)? {
                persist_doc(tx, id, &mut doc, &old_heads, true)?;
            }
            Ok(())
        })
    }

    /// The history of changes to a record.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEntry>> {
        let mut doc = self.read(|c| existing_doc(c, id))?;
        Ok(doc.history())
    }

    /// Records whose stored bytes failed to load, with the error.
    pub fn corrupt_records(&self) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT id, corrupt FROM records WHERE corrupt IS NOT NULL ORDER BY id")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(crate) fn set_aside(&self, id: &str, detail: &str) -> Result<()> {
        tracing::warn!(record = id, "record set aside: {detail}");
        self.write(|tx| documents::mark_corrupt(tx, id, detail))
    }

    /// Registers many producers in one transaction (an import): all are stored or none.
    /// Each goes through the same validation and permission checks as
    /// [`Store::create_producer`]; an error names the entry (`producers[3].phone`).
    /// The documents are built on several threads before the one write transaction.
    pub fn create_producers(&self, producers: Vec<Producer>) -> Result<Vec<Producer>> {
        let actor = self.actor()?;
        let tree = self.tree()?;
        let now = now_ms();
        let records: Vec<Record> = producers
            .into_iter()
            .map(|mut p| {
                p.created_at_ms = p.created_at_ms.max(validate::MIN_TIME_MS);
                p.updated_at_ms = now;
                if p.created_by.is_empty() {
                    p.created_by = actor.person_id.clone();
                }
                Record::Producer(p)
            })
            .collect();
        let prepared = self.prepare_batch(&tree, &actor, records, now)?;
        self.write(|tx| {
            let mut out = Vec::with_capacity(prepared.len());
            for n in prepared {
                out.push(
                    producer_of(store_new(tx, n, PutMode::Import)?).ok_or_else(unexpected_kind)?,
                );
            }
            Ok(out)
        })
    }
}

/// A record's document, or [`Error::NotFound`].
fn existing_doc(c: &Connection, id: &str) -> Result<RecordDoc> {
    load_doc(c, id)?.ok_or_else(|| not_found("record", id))
}

fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.into(),
    }
}

/// A write returned another kind of record than it was given (a bug, not a user error).
fn unexpected_kind() -> Error {
    Error::Document("unexpected record kind".into())
}

fn producer_of(r: Record) -> Option<Producer> {
    match r {
        Record::Producer(p) => Some(p),
        _ => None,
    }
}

fn visit_of(r: Record) -> Option<Visit> {
    match r {
        Record::Visit(v) => Some(v),
        _ => None,
    }
}

fn template_of(r: Record) -> Option<ChecklistTemplate> {
    match r {
        Record::Template(t) => Some(t),
        _ => None,
    }
}
