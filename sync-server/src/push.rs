//! Deciding a pushed record. The judgement is sound by construction
//! (`docs/protocol.md`, "How the server judges a push"):
//!
//! 1. the changes new to the server are computed from the pushed bytes and the stored
//!    document, never taken from the request; the pushed heads must name every one of
//!    their heads;
//! 2. every new change must be signed by the pushing device's actor and name the
//!    authenticated person, and is judged on its own with core's rules for that person,
//!    from what its author had seen (the document at its dependencies);
//! 3. the merged result must validate, stay in scope, hold only fields the model knows,
//!    and differ from the stored record in its protected fields only in ways this person
//!    may bring about now ([`rules::check_merge`]), whatever the changes' dependencies and
//!    whatever Automerge's conflict order picks.
//!
//! A rejected push stores nothing.

use std::collections::{HashMap, HashSet};

use automerge::{ActorId, AutoCommit, Change, ChangeHash};
use gridsync_core::doc::{heads_to_bytes, RecordDoc};
use gridsync_core::model::{
    default_template, ChecklistTemplate, ProducerType, Record, RecordKind, DEFAULT_TEMPLATE_ID,
};
use gridsync_core::rules;
use gridsync_core::sync::protocol::{PushRecord, RejectCode};
use gridsync_core::validate;
use gridsync_core::Error as CoreError;

use crate::scope::Scope;
use crate::storage::{PushDecision, Storage, StoredRecord};

/// Most changes new to the server in one pushed record. Each is judged on its own; a
/// phone that edited one record more often than this offline is told to sync more often.
pub const MAX_NEW_CHANGES: usize = 2000;

/// Most of a pushed record's new changes that do not extend the one judged before them
/// (each costs a fork of the document at its dependencies, linear in the document's
/// operations). A phone's edits form a chain; a record edited offline across many syncs
/// that all failed may need a few. Crafted pushes that fork at every change are refused.
pub const MAX_FORKS: usize = 64;

/// Most operations in one pushed record's new changes.
pub const MAX_NEW_OPS: usize = 200_000;

/// What deciding one push batch needs: who pushes, from which device, and what earlier
/// records of the same batch created.
pub struct PushContext<'a> {
    storage: &'a dyn Storage,
    scope: &'a Scope,
    device_id: String,
    own_actor: ActorId,
    /// Actors of this person's revoked devices (a re-enrolled phone still carries edits it
    /// made under its earlier enrolment); loaded when first needed.
    revoked_actors: Option<Vec<ActorId>>,
    /// Producers accepted earlier in this batch: id -> grid and type.
    batch_producers: HashMap<String, (String, ProducerType)>,
    /// Templates the batch's visits named, loaded once per batch: (id, version) -> template.
    templates: std::cell::RefCell<HashMap<(String, u32), ChecklistTemplate>>,
}

impl std::fmt::Debug for PushContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PushContext({}, {})",
            self.device_id, self.scope.actor.person_id
        )
    }
}

pub use crate::storage::SEED_DEVICE;

impl<'a> PushContext<'a> {
    /// A context for one batch pushed by the device `device_id` of the person whose scope
    /// is `scope`.
    pub fn new(storage: &'a dyn Storage, scope: &'a Scope, device_id: &str) -> Self {
        PushContext {
            storage,
            scope,
            device_id: device_id.to_string(),
            own_actor: gridsync_core::device_actor(device_id),
            revoked_actors: None,
            batch_producers: HashMap::new(),
            templates: Default::default(),
        }
    }

    /// Whether a change signed by `actor` may come from this device: its own actor, or
    /// that of a revoked device of the same person.
    fn actor_allowed(&mut self, actor: &ActorId) -> bool {
        if *actor == self.own_actor {
            return true;
        }
        if self.revoked_actors.is_none() {
            let person = &self.scope.actor.person_id;
            let actors = self
                .storage
                .devices()
                .map(|ds| {
                    ds.iter()
                        .filter(|d| &d.person_id == person && d.revoked_at_ms.is_some())
                        .map(|d| gridsync_core::device_actor(&d.id))
                        .collect()
                })
                .unwrap_or_default();
            self.revoked_actors = Some(actors);
        }
        self.revoked_actors
            .as_ref()
            .is_some_and(|a| a.contains(actor))
    }

    /// The stored producer a visit names: its grid and type (one accepted earlier in this
    /// batch counts: a phone pushes producers before the visits of them).
    fn producer(&self, id: &str) -> Option<(String, ProducerType)> {
        if let Some(p) = self.batch_producers.get(id) {
            return Some(p.clone());
        }
        let s = self.storage.record(id).ok().flatten()?;
        if s.kind != RecordKind::Producer {
            return None;
        }
        match RecordDoc::load(&s.doc, &[]).ok()?.read().ok()? {
            Record::Producer(p) => Some((p.grid, p.producer_type)),
            _ => None,
        }
    }
}

fn reject(code: RejectCode, reason: impl Into<String>) -> PushDecision {
    PushDecision::Reject(code, reason.into())
}

fn core_reject(e: CoreError) -> PushDecision {
    match e {
        CoreError::Invalid(i) => reject(RejectCode::Invalid, i.to_string()),
        CoreError::Forbidden(m) => reject(RejectCode::Forbidden, m),
        CoreError::Workflow(m) => reject(RejectCode::Workflow, m),
        other => reject(RejectCode::BadDocument, other.to_string()),
    }
}

/// The template a visit was recorded with (stored, or the built-in default).
fn visit_template(
    storage: &dyn Storage,
    template_id: &str,
    version: u32,
) -> Option<ChecklistTemplate> {
    storage
        .record(&ChecklistTemplate::record_id(template_id, version))
        .ok()
        .flatten()
        .and_then(|s| RecordDoc::load(&s.doc, &[]).ok())
        .and_then(|d| d.read().ok())
        .and_then(|r| match r {
            Record::Template(t) => Some(t),
            _ => None,
        })
        .or_else(|| {
            (template_id == DEFAULT_TEMPLATE_ID && version == 1)
                .then(|| default_template("builtin"))
        })
}

/// Validates a record as it would be stored. A visit must name its template and a
/// producer that exists and that the person may see.
fn validate_full(ctx: &PushContext<'_>, rec: &Record) -> Result<(), CoreError> {
    match rec {
        Record::Visit(v) => {
            let key = (v.template_id.clone(), v.template_version);
            let cached = ctx.templates.borrow().get(&key).cloned();
            let found = cached.or_else(|| {
                let t = visit_template(ctx.storage, &v.template_id, v.template_version)?;
                ctx.templates.borrow_mut().insert(key, t.clone());
                Some(t)
            });
            let Some(t) = found else {
                return Err(validate::Invalid::new(
                    "template_version",
                    format!(
                        "template {}:{} is unknown",
                        v.template_id, v.template_version
                    ),
                )
                .into());
            };
            let Some((grid, producer_type)) = ctx.producer(&v.producer_id) else {
                return Err(validate::Invalid::new(
                    "producer_id",
                    format!("producer {} is unknown", v.producer_id),
                )
                .into());
            };
            if !ctx.scope.readable.contains(&grid) {
                return Err(CoreError::Forbidden(format!(
                    "producer {} is outside your scope",
                    v.producer_id
                )));
            }
            validate::validate_visit(v, Some(&t), Some(producer_type))?;
            Ok(())
        }
        other => validate::validate_record(other),
    }
}
/// A date the merged record gained (new, or changed from the stored record) that lies
/// more than [`gridsync_core::FUTURE_TOLERANCE_MS`] ahead of the server's clock at
/// receipt: a phone whose clock is wrong. Dates already stored are not judged again.
fn future_dated(stored: Option<&Record>, merged: &Record, now_ms: i64) -> Option<CoreError> {
    fn dates(r: &Record) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        match r {
            Record::Producer(p) => {
                out.push(("created_at_ms".into(), p.created_at_ms));
                out.push(("updated_at_ms".into(), p.updated_at_ms));
                for e in &p.review.history {
                    out.push((format!("review.history[{}].at_ms", e.id), e.at_ms));
                }
            }
            Record::Visit(v) => {
                out.push(("started_at_ms".into(), v.started_at_ms));
                out.push(("updated_at_ms".into(), v.updated_at_ms));
                if let Some(t) = v.ended_at_ms {
                    out.push(("ended_at_ms".into(), t));
                }
                for f in &v.findings {
                    out.push((
                        format!("findings[{}].recorded_at_ms", f.id),
                        f.recorded_at_ms,
                    ));
                }
                for t in &v.rapid_tests {
                    out.push((
                        format!("rapid_tests[{}].tested_at_ms", t.id),
                        t.tested_at_ms,
                    ));
                }
                if let Some(r) = &v.review {
                    out.push(("review.at_ms".into(), r.at_ms));
                }
                if let Some(a) = &v.acknowledgement {
                    out.push(("acknowledgement.at_ms".into(), a.at_ms));
                }
                if let Some(t) = v.rectification.as_ref().and_then(|r| r.resolved_at_ms) {
                    out.push(("rectification.resolved_at_ms".into(), t));
                }
            }
            Record::Template(_) => {}
            Record::Acceptance(a) => out.push(("updated_at_ms".into(), a.updated_at_ms)),
        }
        out
    }
    let old = stored.map(dates).unwrap_or_default();
    let limit = now_ms + gridsync_core::FUTURE_TOLERANCE_MS;
    let (field, at) = dates(merged)
        .into_iter()
        .find(|d| d.1 > limit && !old.contains(d))?;
    let days = (at - now_ms) / 86_400_000;
    Some(
        validate::Invalid::new(
            field,
            format!(
                "is {days} days ahead of the server's clock (more than {} h): the phone's clock is wrong (what it records after its next sync is dated by the server's clock)",
                gridsync_core::FUTURE_TOLERANCE_MS / 3_600_000
            ),
        )
        .into(),
    )
}

/// Reads the record in a document.
fn read_doc(doc: AutoCommit) -> Result<Record, CoreError> {
    RecordDoc::from_doc(doc)?.read()
}

/// Reads the record in a document and hands the document back, without copying it
/// (`read_doc(doc.fork())` copies every operation and change of the document). With
/// `strict`, the read is [`RecordDoc::read_strict`]. The document comes back unless its
/// envelope was refused.
fn read_keeping(doc: AutoCommit, strict: bool) -> (Result<Record, CoreError>, Option<AutoCommit>) {
    let mut d = match RecordDoc::from_doc(doc) {
        Ok(d) => d,
        Err(e) => return (Err(e), None),
    };
    let rec = if strict { d.read_strict() } else { d.read() };
    (rec, Some(std::mem::take(d.inner())))
}

/// [`read_keeping`] for a read that must succeed.
fn read_kept(doc: AutoCommit) -> Result<(Record, AutoCommit), CoreError> {
    match read_keeping(doc, false) {
        (Ok(rec), Some(doc)) => Ok((rec, doc)),
        (Err(e), _) => Err(e),
        (Ok(_), None) => Err(CoreError::Document(
            "the document was not handed back".into(),
        )),
    }
}

/// Judges every new change on its own, in causal order: the record at the change's
/// dependencies (what its author had seen) against the record right after it, with core's
/// rules for the person who pushed. A chain of changes (the usual case: one phone's
/// edits, one after the other) costs one change applied and one read per change; the
/// last change of a chain that ends at the merged document's only head is judged on the
/// merged document itself (no change applied, no copy).
///
/// Returns the strict read of the merged document ([`RecordDoc::read_strict`]) when the
/// judgement made it, so that the caller reads the document once: an `Err` in it is the
/// caller's to report, after the judgement passed, as if it had read the document itself.
fn judge_each_change(
    ctx: &PushContext<'_>,
    merged: &mut AutoCommit,
    stored: Option<(&[ChangeHash], AutoCommit, &Record)>,
    changes: &[Change],
    trusted: &HashSet<ChangeHash>,
    kind: RecordKind,
    id: &str,
) -> Result<Option<Result<Record, CoreError>>, CoreError> {
    let mut reads: HashMap<Vec<ChangeHash>, Record> = HashMap::new();
    let mut forks = 0usize;
    let mut fork_budget = || {
        forks += 1;
        if forks > MAX_FORKS {
            Err(CoreError::Invalid(validate::Invalid::new(
                "changes",
                format!(
                    "more than {MAX_FORKS} changes are made on older versions of the record; sync more often"
                ),
            )))
        } else {
            Ok(())
        }
    };
    let merged_heads = merged.get_heads();
    let mut strict_read = None;
    // A document at known heads that the next change may extend.
    let mut work: Option<(Vec<ChangeHash>, AutoCommit)> = None;
    if let Some((heads, doc, rec)) = stored {
        let mut h = heads.to_vec();
        h.sort();
        reads.insert(h.clone(), rec.clone());
        work = Some((h, doc));
    }
    for (i, c) in changes.iter().enumerate() {
        let mut deps = c.deps().to_vec();
        deps.sort();
        let before = if deps.is_empty() {
            None
        } else if let Some(r) = reads.get(&deps) {
            Some(r.clone())
        } else {
            fork_budget()?;
            let r = read_doc(merged.fork_at(&deps)?)?;
            reads.insert(deps.clone(), r.clone());
            Some(r)
        };
        let last = i + 1 == changes.len();
        let after = if last && merged_heads.as_slice() == [c.hash()] {
            // The document right after this change is the merged one: its heads are this
            // change's hash, so it holds exactly this change and its ancestors. Read in
            // place, strictly (the caller's final read); a document the strict read
            // refuses for an unknown field is judged on the plain read, and the refusal
            // is reported after the judgement, as before.
            let (strict, doc) = read_keeping(std::mem::take(merged), true);
            let Some(doc) = doc else {
                // The envelope was refused: the plain read fails the same way.
                return Err(strict.err().unwrap_or_else(|| {
                    CoreError::Document("the document was not handed back".into())
                }));
            };
            let (rec, doc) = match strict {
                Ok(rec) => {
                    strict_read = Some(Ok(rec.clone()));
                    (rec, doc)
                }
                Err(e @ CoreError::Invalid(_)) => {
                    strict_read = Some(Err(e));
                    read_kept(doc)?
                }
                Err(e) => return Err(e),
            };
            *merged = doc;
            work = None;
            rec
        } else {
            let after_doc = match work.take() {
                Some((h, mut doc)) if h == deps => {
                    doc.apply_changes([c.clone()])?;
                    doc
                }
                _ if deps.is_empty() => {
                    let mut doc = AutoCommit::new();
                    doc.apply_changes([c.clone()])?;
                    doc
                }
                _ => {
                    fork_budget()?;
                    merged.fork_at(&[c.hash()])?
                }
            };
            let (after, after_doc) = read_kept(after_doc)?;
            work = Some((vec![c.hash()], after_doc));
            after
        };
        if after.kind() != kind || after.id() != id {
            return Err(CoreError::Document(
                "a change makes the document another record".into(),
            ));
        }
        if !trusted.contains(&c.hash()) {
            rules::check_change(
                ctx.scope.tree.as_ref(),
                &ctx.scope.actor,
                before.as_ref(),
                &after,
            )?;
        }
        reads.insert(vec![c.hash()], after);
    }
    Ok(strict_read)
}

/// Decides one pushed record for the person and device of `ctx`.
pub fn decide(
    ctx: &mut PushContext<'_>,
    stored: Option<&StoredRecord>,
    p: &PushRecord,
) -> PushDecision {
    // A batch may be decided again (another push changed one of its records meanwhile):
    // what this record decided last time no longer holds.
    ctx.batch_producers.remove(&p.id);
    let scope = ctx.scope;
    let Some(kind) = RecordKind::from_tag(p.kind) else {
        return reject(
            RejectCode::BadDocument,
            format!("unknown record kind tag {}", p.kind),
        );
    };
    if let Some(s) = stored {
        // Scope first: nothing about a record outside it (its kind) is revealed.
        if !scope.can_read(s.kind, &s.grid)
            || (s.kind != RecordKind::Template && !scope.readable.contains(&s.grid))
        {
            return reject(
                RejectCode::Forbidden,
                format!("record {} is outside your scope", p.id),
            );
        }
        if s.kind != kind {
            return reject(
                RejectCode::BadDocument,
                format!(
                    "record {} is a {}, not a {}",
                    p.id,
                    s.kind.as_str(),
                    kind.as_str()
                ),
            );
        }
    }
    let (mut merged, stored_doc, stored_rec) = match stored {
        Some(s) => {
            let doc = match AutoCommit::load(&s.doc) {
                Ok(d) => d,
                Err(e) => {
                    return reject(
                        RejectCode::BadDocument,
                        format!("stored document failed to load: {e}"),
                    )
                }
            };
            // Read in place (no copy of the document for the read).
            let (rec, mut d) = match read_kept(doc) {
                Ok(r) => r,
                Err(e) => {
                    return reject(
                        RejectCode::BadDocument,
                        format!("stored document failed to read: {e}"),
                    )
                }
            };
            let copy = d.fork();
            (d, Some(copy), Some(rec))
        }
        None => (AutoCommit::new(), None, None),
    };
    let old_heads = merged.get_heads();
    if let Err(e) = merged.load_incremental(&p.changes) {
        return reject(
            RejectCode::BadDocument,
            format!("changes do not decode: {e}"),
        );
    }
    if !merged.get_missing_deps(&[]).is_empty() {
        return reject(
            RejectCode::MissingDeps,
            "the changes depend on changes the server does not have",
        );
    }
    // Bounded before any costlier step (forks at earlier heads are linear in the
    // document's operations): depth, list and map sizes (`docs/limits.md`).
    if let Err(e) = gridsync_core::doc::check_limits(&merged) {
        return reject(RejectCode::BadDocument, e.to_string());
    }
    let pushed: Vec<ChangeHash> = p.heads.iter().map(|h| ChangeHash(*h)).collect();
    if pushed
        .iter()
        .any(|h| merged.get_change_by_hash(h).is_none())
    {
        return reject(
            RejectCode::BadDocument,
            "the pushed heads are not among the changes",
        );
    }
    let new_heads = merged.get_heads();
    if new_heads == old_heads {
        return PushDecision::Duplicate;
    }
    // The changes new to the server, in causal order, computed here and never taken from
    // the request.
    let new_changes: Vec<Change> = merged
        .get_changes(&old_heads)
        .into_iter()
        .cloned()
        .collect();
    let ops: usize = new_changes.iter().map(|c| c.len()).sum();
    if ops > MAX_NEW_OPS {
        return reject(
            RejectCode::Invalid,
            format!("the new changes hold {ops} operations, at most {MAX_NEW_OPS} per record"),
        );
    }
    if new_changes.len() > MAX_NEW_CHANGES {
        return reject(
            RejectCode::Invalid,
            format!(
                "{} new changes of one record, at most {MAX_NEW_CHANGES}: sync more often",
                new_changes.len()
            ),
        );
    }
    // Their heads (what the author produced) must all be named by the pushed heads, which
    // become the device's acknowledged heads; a device may also name stored changes it
    // merged without editing.
    let depended: HashSet<ChangeHash> = new_changes
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    if let Some(h) = new_changes
        .iter()
        .map(|c| c.hash())
        .find(|h| !depended.contains(h) && !pushed.contains(h))
    {
        return reject(
            RejectCode::BadDocument,
            format!("the pushed heads leave out change {h} of the pushed changes"),
        );
    }
    if stored.is_some() && new_changes.iter().all(|c| c.deps().is_empty()) {
        return reject(
            RejectCode::Forbidden,
            format!("record {} already exists", p.id),
        );
    }
    // Every change is the pushing device's and names the authenticated person, except the
    // server's own changes handed back (after a restore), recognised by their tag
    // ([`crate::signed`]): those are the server's and are not judged as this person's.
    let server_actor = gridsync_core::device_actor(crate::duplicates::SERVER_DEVICE);
    let mut key: Option<Vec<u8>> = None;
    let mut trusted: HashSet<ChangeHash> = HashSet::new();
    for c in &new_changes {
        if *c.actor_id() == server_actor {
            if key.is_none() {
                key = Some(ctx.storage.change_key(false).unwrap_or_default());
            }
            let k = key.as_deref().unwrap_or_default();
            if !k.is_empty() && crate::signed::verify(k, &p.id, c) {
                trusted.insert(c.hash());
                continue;
            }
        }
        if !ctx.actor_allowed(c.actor_id()) {
            // Only the device an actor belongs to may deliver its changes. A phone meets
            // this honestly after a restore (it holds another device's changes that the
            // restored server lost): it is told to wait (as for missing dependencies), not
            // shown a rejection; the author's own device brings the changes back.
            return reject(
                RejectCode::MissingDeps,
                format!(
                    "change {} is signed by another device (actor {}); only that device can deliver it",
                    c.hash(),
                    c.actor_id()
                ),
            );
        }
        if c.message().map(String::as_str) != Some(scope.actor.person_id.as_str()) {
            return reject(
                RejectCode::Forbidden,
                format!(
                    "change {} names {:?} as its author; changes from this device are {}'s",
                    c.hash(),
                    c.message().cloned().unwrap_or_default(),
                    scope.actor.person_id
                ),
            );
        }
    }
    let stored_view = match (&stored_doc, &stored_rec) {
        (Some(d), Some(r)) => Some((old_heads.as_slice(), d.clone(), r)),
        _ => None,
    };
    let strict_read = match judge_each_change(
        ctx,
        &mut merged,
        stored_view,
        &new_changes,
        &trusted,
        kind,
        &p.id,
    ) {
        Ok(r) => r,
        Err(e) => return core_reject(e),
    };
    let new_changes_bytes = merged.save_after(&old_heads);
    // Only fields the server's model knows are stored (servers are upgraded first). The
    // judgement usually read the merged document already.
    let strict_read = match strict_read {
        Some(r) => r,
        None => {
            let (r, doc) = read_keeping(std::mem::take(&mut merged), true);
            match doc {
                Some(doc) => merged = doc,
                None => {
                    return reject(
                        RejectCode::BadDocument,
                        r.err().map(|e| e.to_string()).unwrap_or_default(),
                    )
                }
            }
            r
        }
    };
    let result = match strict_read {
        Ok(r) => r,
        Err(e @ CoreError::Invalid(_)) => return core_reject(e),
        Err(e) => return reject(RejectCode::BadDocument, e.to_string()),
    };
    if result.kind() != kind || result.id() != p.id {
        return reject(
            RejectCode::BadDocument,
            "the document's kind or id does not match the push",
        );
    }
    if let Err(e) = validate_full(ctx, &result) {
        return core_reject(e);
    }
    if let Some(e) = future_dated(stored_rec.as_ref(), &result, gridsync_core::now_ms()) {
        return core_reject(e);
    }
    if !scope.can_read(result.kind(), result.grid())
        || (result.kind() != RecordKind::Template && !scope.readable.contains(result.grid()))
    {
        return reject(
            RejectCode::Forbidden,
            format!("grid {} is outside your scope", result.grid()),
        );
    }
    if let Some(s) = &stored_rec {
        if let Err(e) = rules::check_merge(scope.tree.as_ref(), &scope.actor, s, &result) {
            return core_reject(e);
        }
    }
    if let Record::Producer(pr) = &result {
        ctx.batch_producers
            .insert(pr.id.clone(), (pr.grid.clone(), pr.producer_type));
    }
    let attachments = gridsync_core::attachment::refs_of(&result);
    let grid = result.grid().to_string();
    // Templates have no query rows: no need to carry them to the write.
    let record = (result.kind() != RecordKind::Template).then(|| Box::new(result));
    PushDecision::Store {
        kind,
        grid,
        // Stored without column compression: saving compressed costs more CPU than the
        // rest of the push (the wire format is gzipped anyway).
        doc: merged.save_nocompress(),
        heads: heads_to_bytes(&new_heads),
        new_changes: new_changes_bytes,
        action: if stored.is_some() { "update" } else { "create" },
        attachments,
        record,
    }
}
