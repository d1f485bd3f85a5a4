//! The local store: one SQLite file per device holding each record as Automerge bytes plus
//! materialized columns for the field app's queries, and the sync bookkeeping beside them
//! so that data and cursors always commit together.

mod clock;
mod integrity;
mod queries;
pub mod schema;
mod sync_state;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use automerge::ActorId;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::doc::{heads_from_bytes, heads_to_bytes, Conflict, HistoryEntry, RecordDoc};
use crate::model::{
    default_template, Actor, ChecklistTemplate, GridKind, GridLevel, GridNode, Person, Producer,
    Record, RecordKind, ReviewAction, ReviewEvent, ReviewState, Role, Visit, VisitReview,
    VisitStatus, DEFAULT_TEMPLATE_ID,
};
use crate::rules::{self, GridTree};
use crate::validate;
use crate::{now_ms, Error, Result};

pub use integrity::{IntegrityLevel, IntegrityReport};
pub use queries::{
    Counts, DueProducer, ProducerSort, ProducerSummary, RectificationItem, VisitSummary,
};
pub use sync_state::{KeptEdit, PendingPush, PulledRecord, ServerLink};

/// Incremental chunks kept beside a document before it is compacted into one save.
const COMPACT_AFTER_CHUNKS: i64 = 16;

/// The grid tree held in memory for permission checks.
#[derive(Debug, Default, Clone)]
pub struct TreeSnapshot {
    nodes: HashMap<String, (GridLevel, Option<String>)>,
}

impl TreeSnapshot {
    /// A snapshot of the given nodes.
    pub fn from_nodes(nodes: &[GridNode]) -> Self {
        TreeSnapshot {
            nodes: nodes
                .iter()
                .map(|n| (n.code.clone(), (n.level, n.parent.clone())))
                .collect(),
        }
    }
}

impl GridTree for TreeSnapshot {
    fn parent_of(&self, code: &str) -> Option<String> {
        self.nodes.get(code).and_then(|n| n.1.clone())
    }
    fn level_of(&self, code: &str) -> Option<GridLevel> {
        self.nodes.get(code).map(|n| n.0)
    }
}

/// A device's local store. Safe to share between threads (`Arc<Store>`).
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    /// The Automerge actor of this device: random until enrolment, then derived from the
    /// device id ([`crate::device_actor`]).
    actor: Mutex<ActorId>,
    tree: Mutex<Option<TreeSnapshot>>,
    /// Parsed template versions with the heads they were read at (every visit save
    /// validates against its template; a template changes only with its heads).
    templates: Mutex<HashMap<String, (Vec<u8>, ChecklistTemplate)>>,
    /// The integrity check started when the store was opened ([`Store::open_check`]).
    open_check: Mutex<integrity::OpenCheck>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // The open-time check has a connection of its own: let it finish with the file.
        let oc = self.open_check.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = oc.running.take() {
            let _ = h.join();
        }
    }
}

impl Store {
    /// Opens (or creates) the store in a file, in WAL mode with full durability.
    ///
    /// `PRAGMA quick_check` and the row counts of the query tables then run in the
    /// background on a connection of their own; a failure rebuilds the query tables from
    /// the documents ([`Store::open_check`] has the result).
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let conn = Connection::open(path.as_ref())?;
        let store = Self::init(conn)?;
        let running = integrity::spawn_open_check(path.as_ref().to_path_buf());
        store
            .open_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running = running;
        Ok(store)
    }

    /// Opens the store in a file without the background check at open: for a caller that
    /// runs [`Store::check_integrity`] itself and wants to see what it finds first
    /// (`gridsync-field doctor`).
    pub fn open_unchecked(path: impl AsRef<Path>) -> Result<Store> {
        Self::init(Connection::open(path.as_ref())?)
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        clock::load(&conn)?;
        let actor_hex: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'actor'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let actor = match actor_hex {
            Some(h) => ActorId::from(
                hex::decode(&h).map_err(|e| Error::Document(format!("stored actor id: {e}")))?,
            ),
            None => {
                let a = ActorId::random();
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('actor', ?1)",
                    [hex::encode(a.to_bytes())],
                )?;
                a
            }
        };
        // A store enrolled before actors were bound to devices takes its device's actor.
        let actor = match get_meta(&conn, sync_state::LINK_KEY)? {
            Some(link) => match serde_json::from_str::<ServerLink>(&link) {
                Ok(l) if crate::device_actor(&l.device_id) != actor => {
                    let a = crate::device_actor(&l.device_id);
                    set_meta(&conn, "actor", &hex::encode(a.to_bytes()))?;
                    a
                }
                _ => actor,
            },
            None => actor,
        };
        Ok(Store {
            conn: Mutex::new(conn),
            actor: Mutex::new(actor),
            tree: Mutex::new(None),
            templates: Mutex::new(HashMap::new()),
            open_check: Mutex::new(integrity::OpenCheck::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in an IMMEDIATE transaction that commits only if `f` succeeds.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` with the connection for reading.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }

    /// The Automerge actor id of this device.
    pub fn actor_id(&self) -> ActorId {
        self.actor.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    // ---- identity and reference data ----

    /// The person using this device, once set (by enrolment or by hand for offline use).
    pub fn profile(&self) -> Result<Option<Person>> {
        self.read(|c| get_meta_json(c, "profile"))
    }

    /// Sets the person using this device.
    pub fn set_profile(&self, person: &Person) -> Result<()> {
        self.write(|tx| set_meta_json(tx, "profile", person))
    }

    /// The acting identity for local edits.
    pub fn actor(&self) -> Result<Actor> {
        let p = self
            .profile()?
            .ok_or_else(|| Error::NotEnrolled("no person is set up on this device".into()))?;
        Ok(Actor::new(p.id, p.role, p.grids))
    }

    /// Adds or replaces grid nodes.
    pub fn upsert_grids(&self, nodes: &[GridNode]) -> Result<()> {
        for n in nodes {
            n.validate()?;
        }
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO grids (code, name, level, kind, parent) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(code) DO UPDATE SET name = ?2, level = ?3, kind = ?4, parent = ?5",
            )?;
            for n in nodes {
                st.execute(params![
                    n.code,
                    n.name,
                    n.level.as_str(),
                    n.kind.as_str(),
                    n.parent
                ])?;
            }
            Ok(())
        })?;
        *self.tree.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Every grid node on the device.
    pub fn grids(&self) -> Result<Vec<GridNode>> {
        self.read(load_grids)
    }

    /// The grid tree for permission checks (cached until the grids change).
    pub fn tree(&self) -> Result<TreeSnapshot> {
        let mut t = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = t.as_ref() {
            return Ok(t.clone());
        }
        let snap = TreeSnapshot::from_nodes(&self.grids()?);
        *t = Some(snap.clone());
        Ok(snap)
    }

    /// Adds or replaces people (reference data for grid charts).
    pub fn upsert_people(&self, people: &[Person]) -> Result<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO people (id, name, phone, role, grids) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, phone = ?3, role = ?4, grids = ?5",
            )?;
            for p in people {
                let grids = serde_json::to_string(&p.grids).unwrap_or_default();
                st.execute(params![p.id, p.name, p.phone, p.role.as_str(), grids])?;
            }
            Ok(())
        })
    }

    /// People known on the device.
    pub fn people(&self) -> Result<Vec<Person>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT id, name, phone, role, grids FROM people ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, name, phone, role, grids) = row?;
                out.push(Person {
                    id,
                    name,
                    phone,
                    role: Role::parse(&role).unwrap_or(Role::Liaison),
                    grids: serde_json::from_str(&grids).unwrap_or_default(),
                });
            }
            Ok(out)
        })
    }

    // ---- records ----

    /// Registers a new producer (as the device's person).
    pub fn create_producer(&self, mut p: Producer) -> Result<Producer> {
        let now = now_ms();
        p.created_at_ms = p.created_at_ms.max(validate::MIN_TIME_MS);
        p.updated_at_ms = now;
        let actor = self.actor()?;
        if p.created_by.is_empty() {
            p.created_by = actor.person_id.clone();
        }
        match self.put(&actor, Record::Producer(p), PutMode::Create, now)? {
            Record::Producer(p) => Ok(p),
            _ => Err(Error::Document("unexpected record kind".into())),
        }
    }

    /// Saves edits to a producer. Editing a directory field of an approved entry sends it
    /// back to review; editing a returned entry puts it back to draft.
    pub fn update_producer(&self, mut p: Producer) -> Result<Producer> {
        let actor = self.actor()?;
        let now = now_ms();
        p.updated_at_ms = now;
        match self.put(&actor, Record::Producer(p), PutMode::Update, now)? {
            Record::Producer(p) => Ok(p),
            _ => Err(Error::Document("unexpected record kind".into())),
        }
    }

    /// Takes a step in the directory review chain.
    pub fn review_producer(&self, id: &str, action: ReviewAction) -> Result<Producer> {
        let actor = self.actor()?;
        let mut p = self.producer(id)?;
        let now = now_ms();
        let effective = p.effective_review_state();
        let to = match (&action, effective) {
            (ReviewAction::Submit, ReviewState::Draft | ReviewState::Returned) => {
                ReviewState::Submitted
            }
            (ReviewAction::ApproveTownship, ReviewState::Submitted) => {
                ReviewState::TownshipApproved
            }
            (ReviewAction::ApproveCounty, ReviewState::TownshipApproved) => {
                ReviewState::CountyApproved
            }
            (
                ReviewAction::Return(_),
                ReviewState::Submitted
                | ReviewState::TownshipApproved
                | ReviewState::CountyApproved,
            ) => ReviewState::Returned,
            (a, s) => {
                return Err(Error::Workflow(format!(
                    "cannot {} an entry that is {}",
                    a.as_str(),
                    s.as_str()
                )))
            }
        };
        if let ReviewAction::Return(reason) = &action {
            validate::require_text("review.return_reason", reason, 500)?;
            p.review.return_reason = Some(reason.clone());
        }
        if to.is_approved() {
            p.review.approved_fingerprint = Some(p.directory_fingerprint());
        }
        p.review.state = to;
        p.review.history.push(ReviewEvent {
            id: crate::new_id(),
            action,
            by: actor.person_id.clone(),
            at_ms: now,
            state_after: to,
        });
        match self.put(&actor, Record::Producer(p), PutMode::Review, now)? {
            Record::Producer(p) => Ok(p),
            _ => Err(Error::Document("unexpected record kind".into())),
        }
    }

    /// A producer by id.
    pub fn producer(&self, id: &str) -> Result<Producer> {
        match self.record(id)? {
            Record::Producer(p) => Ok(p),
            _ => Err(Error::NotFound {
                kind: "producer",
                id: id.into(),
            }),
        }
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
        match self.put(&actor, Record::Visit(v), mode, now)? {
            Record::Visit(v) => Ok(v),
            _ => Err(Error::Document("unexpected record kind".into())),
        }
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
        match self.record(id)? {
            Record::Visit(v) => Ok(v),
            _ => Err(Error::NotFound {
                kind: "visit",
                id: id.into(),
            }),
        }
    }

    /// Saves a checklist template version (county staff and administrators).
    pub fn save_template(&self, t: ChecklistTemplate) -> Result<ChecklistTemplate> {
        let actor = self.actor()?;
        let mode = if self.record_exists(&t.id)? {
            PutMode::Update
        } else {
            PutMode::Create
        };
        match self.put(&actor, Record::Template(t), mode, now_ms())? {
            Record::Template(t) => Ok(t),
            _ => Err(Error::Document("unexpected record kind".into())),
        }
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

    /// Any record by id.
    pub fn record(&self, id: &str) -> Result<Record> {
        let loaded = self.read(|c| load_doc(c, id));
        match loaded {
            Ok(Some(doc)) => doc.read(),
            Ok(None) => Err(Error::NotFound {
                kind: "record",
                id: id.into(),
            }),
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
        let doc = self
            .read(|c| load_doc(c, id))?
            .ok_or_else(|| Error::NotFound {
                kind: "record",
                id: id.into(),
            })?;
        doc.conflicts()
    }

    /// Keeps the current winner of a conflicting field and drops the other values.
    pub fn resolve_conflict(&self, id: &str, path: &str) -> Result<()> {
        let actor = self.actor()?;
        let now = now_ms();
        self.write(|tx| {
            let mut doc = load_doc(tx, id)?.ok_or_else(|| Error::NotFound {
                kind: "record",
                id: id.into(),
            })?;
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
        let mut doc = self
            .read(|c| load_doc(c, id))?
            .ok_or_else(|| Error::NotFound {
                kind: "record",
                id: id.into(),
            })?;
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
        self.write(|tx| {
            tx.execute(
                "UPDATE records SET corrupt = ?2 WHERE id = ?1",
                params![id, detail],
            )?;
            tx.execute("DELETE FROM producers WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM visits WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM templates WHERE id = ?1", [id])?;
            Ok(())
        })
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
                match store_new(tx, n, PutMode::Import)? {
                    Record::Producer(p) => out.push(p),
                    _ => return Err(Error::Document("unexpected record kind".into())),
                }
            }
            Ok(out)
        })
    }

    /// Prepares new records on up to `available_parallelism` threads, in order; the first
    /// failing entry's error names it (`producers[i].field`).
    fn prepare_batch(
        &self,
        tree: &TreeSnapshot,
        actor: &Actor,
        records: Vec<Record>,
        now: i64,
    ) -> Result<Vec<NewRecord>> {
        let name = |i: usize, e: Error| match e {
            Error::Invalid(v) => {
                validate::Invalid::new(format!("producers[{i}].{}", v.field), v.problem).into()
            }
            other => other,
        };
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let per = records.len().div_ceil(workers).max(256);
        if records.len() <= per {
            return records
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    self.prepare_new(tree, actor, r, now, None, None)
                        .map_err(|e| name(i, e))
                })
                .collect();
        }
        let mut chunks: Vec<(usize, Vec<Record>)> = Vec::new();
        let mut rest = records;
        let mut start = 0;
        while !rest.is_empty() {
            let tail = rest.split_off(per.min(rest.len()));
            let n = rest.len();
            chunks.push((start, rest));
            start += n;
            rest = tail;
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|(start, chunk)| {
                    s.spawn(move || {
                        chunk
                            .into_iter()
                            .enumerate()
                            .map(|(j, r)| {
                                self.prepare_new(tree, actor, r, now, None, None)
                                    .map_err(|e| name(start + j, e))
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                let part = h
                    .join()
                    .map_err(|_| Error::Document("a worker thread panicked".into()))??;
                out.extend(part);
            }
            Ok(out)
        })
    }

    /// Validates and permission-checks a new record and builds its document (no database).
    fn prepare_new(
        &self,
        tree: &TreeSnapshot,
        actor: &Actor,
        rec: Record,
        now: i64,
        template: Option<&ChecklistTemplate>,
        producer_type: Option<crate::model::ProducerType>,
    ) -> Result<NewRecord> {
        match &rec {
            Record::Visit(v) => validate::validate_visit(v, template, producer_type)?,
            other => validate::validate_record(other)?,
        }
        rules::check_change(tree, actor, None, &rec)?;
        let (doc, exact) = RecordDoc::create_exact(&rec, &self.actor_id(), &actor.person_id, now)?;
        Ok(NewRecord { rec, doc, exact })
    }

    /// The validated, permission-checked write of one record.
    fn put(&self, actor: &Actor, rec: Record, mode: PutMode, now: i64) -> Result<Record> {
        let tree = self.tree()?;
        // Templates and producer types are needed to validate visits; read them first.
        let (template, producer_type) = match &rec {
            Record::Visit(v) => {
                let t = self.template(&v.template_id, v.template_version)?;
                let pt = self.read(|c| {
                    Ok(
                        c.prepare_cached("SELECT producer_type FROM producers WHERE id = ?1")?
                            .query_row([&v.producer_id], |r| r.get::<_, String>(0))
                            .optional()?,
                    )
                })?;
                (
                    Some(t),
                    pt.as_deref().and_then(crate::model::ProducerType::parse),
                )
            }
            _ => (None, None),
        };
        self.write(|tx| {
            self.put_in(
                tx,
                &tree,
                actor,
                rec,
                mode,
                now,
                template.as_ref(),
                producer_type,
            )
        })
    }

    /// [`Store::put`] inside a caller's transaction.
    fn put_in(
        &self,
        tx: &Transaction<'_>,
        tree: &TreeSnapshot,
        actor: &Actor,
        mut rec: Record,
        mode: PutMode,
        now: i64,
        template: Option<&ChecklistTemplate>,
        producer_type: Option<crate::model::ProducerType>,
    ) -> Result<Record> {
        let existing = load_doc(tx, rec.id())?;
        let mut doc = match (existing, mode) {
            (Some(_), PutMode::Create | PutMode::Import) => {
                return Err(Error::Workflow(format!(
                    "record {} already exists",
                    rec.id()
                )))
            }
            (None, PutMode::Update | PutMode::Review) => {
                return Err(Error::NotFound {
                    kind: rec.kind().as_str(),
                    id: rec.id().into(),
                })
            }
            (None, _) => {
                let n = self.prepare_new(tree, actor, rec, now, template, producer_type)?;
                return store_new(tx, n, mode);
            }
            (Some(d), _) => d,
        };
        let before = doc.read()?;
        if let (Record::Producer(b), Record::Producer(p)) = (&before, &mut rec) {
            if mode == PutMode::Update {
                apply_edit_workflow(b, p, &actor.person_id, now);
            }
        }
        match &rec {
            Record::Visit(v) => validate::validate_visit(v, template, producer_type)?,
            other => validate::validate_record(other)?,
        }
        rules::check_change(tree, actor, Some(&before), &rec)?;
        doc.set_actor(&self.actor_id());
        let old_heads = doc.heads();
        if doc.update(&rec, &actor.person_id, now)? {
            persist_doc(tx, rec.id(), &mut doc, &old_heads, true)?;
        }
        let stored = doc.read()?;
        materialize(tx, &stored)?;
        Ok(stored)
    }
}

/// A new record ready to be stored: checked, with its document built.
struct NewRecord {
    rec: Record,
    doc: RecordDoc,
    /// Whether the document reads back exactly as `rec`.
    exact: bool,
}

/// Stores a prepared new record (refusing an id that exists) and its query rows.
fn store_new(tx: &Transaction<'_>, mut n: NewRecord, mode: PutMode) -> Result<Record> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM records WHERE id = ?1")?
        .query_row([n.rec.id()], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Err(Error::Workflow(format!(
            "record {} already exists",
            n.rec.id()
        )));
    }
    insert_doc(tx, &n.rec, &mut n.doc, mode != PutMode::Import)?;
    // A new document reads back as the record unless a list held duplicates.
    let stored = if n.exact { n.rec } else { n.doc.read()? };
    materialize(tx, &stored)?;
    Ok(stored)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutMode {
    Create,
    /// A create inside a batch import: stores the new change as is, uncompressed.
    Import,
    Update,
    Review,
}

/// Workflow side effects of an edit: approved entries go back to review, returned ones to draft.
fn apply_edit_workflow(before: &Producer, p: &mut Producer, person: &str, now: i64) {
    p.review = before.review.clone();
    p.created_by = before.created_by.clone();
    p.created_at_ms = before.created_at_ms;
    let changed = before.directory_fingerprint() != p.directory_fingerprint();
    if !changed {
        return;
    }
    let to = match before.review.state {
        s if s.is_approved() => Some((ReviewAction::EditedAfterApproval, ReviewState::Submitted)),
        ReviewState::Returned => Some((ReviewAction::EditedAfterReturn, ReviewState::Draft)),
        _ => None,
    };
    if let Some((action, state)) = to {
        p.review.state = state;
        p.review.history.push(ReviewEvent {
            id: crate::new_id(),
            action,
            by: person.to_string(),
            at_ms: now,
            state_after: state,
        });
    }
}

pub(crate) fn get_meta(c: &Connection, key: &str) -> Result<Option<String>> {
    Ok(
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?,
    )
}

pub(crate) fn set_meta(c: &Connection, key: &str, value: &str) -> Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}

fn get_meta_json<T: serde::de::DeserializeOwned>(c: &Connection, key: &str) -> Result<Option<T>> {
    match get_meta(c, key)? {
        Some(s) => {
            Ok(Some(serde_json::from_str(&s).map_err(|e| {
                Error::Document(format!("meta {key}: {e}"))
            })?))
        }
        None => Ok(None),
    }
}

fn set_meta_json<T: serde::Serialize>(c: &Connection, key: &str, v: &T) -> Result<()> {
    let s = serde_json::to_string(v).map_err(|e| Error::Document(e.to_string()))?;
    set_meta(c, key, &s)
}

fn load_grids(c: &Connection) -> Result<Vec<GridNode>> {
    let mut st = c.prepare("SELECT code, name, level, kind, parent FROM grids ORDER BY code")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (code, name, level, kind, parent) = row?;
        out.push(GridNode {
            code,
            name,
            level: GridLevel::parse(&level).unwrap_or(GridLevel::Village),
            kind: GridKind::parse(&kind).unwrap_or(GridKind::Mixed),
            parent,
        });
    }
    Ok(out)
}

/// Loads a record's document (full save plus incremental chunks).
pub(crate) fn load_doc(c: &Connection, id: &str) -> Result<Option<RecordDoc>> {
    type Row = (Vec<u8>, i64, Option<String>, Vec<u8>);
    let row: Option<Row> = c
        .prepare_cached("SELECT doc, chunk_count, corrupt, heads FROM records WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((full, chunk_count, corrupt, stored_heads)) = row else {
        return Ok(None);
    };
    if let Some(detail) = corrupt {
        return Err(Error::Corrupt {
            id: id.into(),
            detail,
        });
    }
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    if chunk_count > 0 {
        let mut st =
            c.prepare_cached("SELECT bytes FROM record_chunks WHERE id = ?1 ORDER BY n")?;
        let rows = st.query_map([id], |r| r.get(0))?;
        for r in rows {
            chunks.push(r?);
        }
    }
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut doc = RecordDoc::load(&full, &refs).map_err(|e| Error::Corrupt {
        id: id.into(),
        detail: e.to_string(),
    })?;
    // Automerge skips change chunks it cannot parse; the heads written with the last
    // change tell whether everything stored was actually loaded.
    let mut want = heads_from_bytes(&stored_heads).unwrap_or_default();
    want.sort_unstable();
    if want != doc.heads() {
        return Err(Error::Corrupt {
            id: id.into(),
            detail: "stored changes are missing or damaged (heads do not match)".into(),
        });
    }
    doc.read().map_err(|e| Error::Corrupt {
        id: id.into(),
        detail: e.to_string(),
    })?;
    Ok(Some(doc))
}

/// Runs a statement through the connection's statement cache (parsed once, not per call).
fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
    Ok(c.prepare_cached(sql)?.execute(p)?)
}

/// Stores a new document: compactly (deflated columns), or, for batch imports, as the
/// change chunk Automerge already encoded at commit, which loads the same way, costs
/// nothing to produce and is rewritten compactly at the first compaction.
fn insert_doc(tx: &Transaction<'_>, rec: &Record, d: &mut RecordDoc, compact: bool) -> Result<()> {
    let heads = heads_to_bytes(&d.heads());
    let bytes = if compact { d.save() } else { d.save_after(&[]) };
    exec(
        tx,
        "INSERT INTO records (id, kind, grid, doc, heads, local_rev, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
        params![
            rec.id(),
            rec.kind().as_str(),
            rec.grid(),
            bytes,
            heads,
            now_ms()
        ],
    )?;
    Ok(())
}

/// Writes what changed in a document since `old_heads`: an incremental chunk, compacting
/// into one save every [`COMPACT_AFTER_CHUNKS`]. `local` marks a local edit to push.
pub(crate) fn persist_doc(
    tx: &Transaction<'_>,
    id: &str,
    d: &mut RecordDoc,
    old_heads: &[automerge::ChangeHash],
    local: bool,
) -> Result<()> {
    let rec = d.read()?;
    let heads = heads_to_bytes(&d.heads());
    let chunk_count: i64 = tx
        .prepare_cached("SELECT chunk_count FROM records WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    if chunk_count + 1 >= COMPACT_AFTER_CHUNKS {
        exec(tx, "DELETE FROM record_chunks WHERE id = ?1", [id])?;
        exec(
            tx,
            "UPDATE records SET doc = ?2, chunk_count = 0 WHERE id = ?1",
            params![id, d.save()],
        )?;
    } else {
        let chunk = d.save_after(old_heads);
        exec(
            tx,
            "INSERT INTO record_chunks (id, n, bytes) VALUES (?1, ?2, ?3)",
            params![id, chunk_count, chunk],
        )?;
        exec(
            tx,
            "UPDATE records SET chunk_count = ?2 WHERE id = ?1",
            params![id, chunk_count + 1],
        )?;
    }
    exec(
        tx,
        "UPDATE records SET heads = ?2, grid = ?3, updated_at_ms = ?4,
             local_rev = local_rev + ?5 WHERE id = ?1",
        params![id, heads, rec.grid(), now_ms(), i64::from(local)],
    )?;
    Ok(())
}

/// The values of a record's query-table row, in the order of the columns
/// [`materialize`] writes (without `producers.last_visit_ms`, which derives from visits).
pub(crate) fn row_values(rec: &Record) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let text = |s: &str| Value::Text(s.to_string());
    let opt = |s: Option<&String>| s.map_or(Value::Null, |s| Value::Text(s.clone()));
    match rec {
        Record::Producer(p) => vec![
            text(&p.id),
            text(&p.grid),
            text(&p.name),
            text(&p.owner),
            text(&p.phone),
            text(p.producer_type.as_str()),
            Value::Text(serde_plain(&p.status)),
            text(p.effective_review_state().as_str()),
            Value::Text(serde_plain(&p.risk)),
            Value::Integer(p.updated_at_ms),
        ],
        Record::Visit(v) => {
            let r = v.rectification.as_ref();
            vec![
                text(&v.id),
                text(&v.producer_id),
                text(&v.grid),
                text(&v.inspector),
                Value::Integer(v.started_at_ms),
                Value::Text(serde_plain(&v.status)),
                Value::Integer(i64::from(r.is_some() && v.rectification_open())),
                opt(r.map(|r| &r.deadline)),
                opt(r.map(|r| &r.notice_number)),
            ]
        }
        Record::Template(t) => vec![
            text(&t.id),
            text(&t.template_id),
            Value::Integer(i64::from(t.version)),
            text(&t.grid),
        ],
    }
}

/// Refreshes the query tables for a record.
pub(crate) fn materialize(tx: &Connection, rec: &Record) -> Result<()> {
    let values = row_values(rec);
    let values = rusqlite::params_from_iter(values.iter());
    match rec {
        Record::Producer(_) => {
            exec(
                tx,
                "INSERT INTO producers (id, grid, name, owner, phone, producer_type, status, review_state, risk, updated_at_ms, last_visit_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                         (SELECT MAX(started_at_ms) FROM visits WHERE producer_id = ?1))
                 ON CONFLICT(id) DO UPDATE SET grid = ?2, name = ?3, owner = ?4, phone = ?5,
                     producer_type = ?6, status = ?7, review_state = ?8, risk = ?9, updated_at_ms = ?10",
                values,
            )?;
        }
        Record::Visit(v) => {
            exec(
                tx,
                "INSERT INTO visits (id, producer_id, grid, inspector, started_at_ms, status, rect_open, rect_deadline, rect_notice)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(id) DO UPDATE SET producer_id = ?2, grid = ?3, inspector = ?4,
                     started_at_ms = ?5, status = ?6, rect_open = ?7, rect_deadline = ?8, rect_notice = ?9",
                values,
            )?;
            exec(
                tx,
                "UPDATE producers SET last_visit_ms = (SELECT MAX(started_at_ms) FROM visits WHERE producer_id = ?1) WHERE id = ?1",
                [&v.producer_id],
            )?;
        }
        Record::Template(_) => {
            exec(
                tx,
                "INSERT INTO templates (id, template_id, version, grid) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET template_id = ?2, version = ?3, grid = ?4",
                values,
            )?;
        }
    }
    Ok(())
}

/// The stable identifier of a unit-variant enum (its serde name).
pub(crate) fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Removes a record and its query rows.
pub(crate) fn delete_record(tx: &Transaction<'_>, id: &str, kind: RecordKind) -> Result<()> {
    tx.execute("DELETE FROM record_chunks WHERE id = ?1", [id])?;
    tx.execute("DELETE FROM records WHERE id = ?1", [id])?;
    match kind {
        RecordKind::Producer => tx.execute("DELETE FROM producers WHERE id = ?1", [id])?,
        RecordKind::Visit => tx.execute("DELETE FROM visits WHERE id = ?1", [id])?,
        RecordKind::Template => tx.execute("DELETE FROM templates WHERE id = ?1", [id])?,
    };
    Ok(())
}
