//! Possible duplicates among producers (疑似重复), the server's part: after every accepted
//! push of a producer, and after the desk resolves one, the server
//!
//! 1. **checks** the entry against the whole directory (every grid, not only the pushing
//!    person's scope): the same credit code, ID number or phone anywhere, a similar name in
//!    the same or a neighbouring grid (`gridsync_core::dedupe`). Each new match is written as
//!    a [`DuplicateMark`] on *both* entries, so a phone that holds either sees it after its
//!    next sync, and the desk lists it;
//! 2. **mirrors** a resolution: "not a duplicate" decided on one entry closes the other
//!    entry's mark too; "duplicate of X" (the entry became a tombstone pointing to X) marks
//!    X's side as [`DuplicateOutcome::OtherMergedHere`];
//! 3. **carries** edits of a tombstone made on a phone that had not yet seen the merge: a
//!    directory field that differs from what the merge recorded ([`MergedInto::seen`]) is
//!    set on X when X still held the value the edit replaced (or nothing), and otherwise
//!    left on X as a conflict ([`CarriedEdit`], `applied == false`) for a person to settle.
//!    The tombstone then records the carried value as seen, so it is carried once. Nothing
//!    is lost: the tombstone keeps the edit as well.
//!
//! Every write is an Automerge change on the stored document, signed by the server's own
//! actor ([`SERVER_DEVICE`]) and naming [`SERVER_PERSON`], computed inside the push
//! transaction from the document as stored then ([`Storage::apply_push`]), so a phone's
//! concurrent change merges with it like any other, and it enters the grid's feed, the
//! query tables and the audit trail. The server's own writes are not judged by the rules
//! of a person (they are the server's); a person's change to the marks is
//! (`rules::check_change`: only supervisors and county staff resolve).

use std::collections::{BTreeMap, BTreeSet};

use gridsync_core::dedupe::{
    combined_score, core_similarity, name_core, normalize_code, normalize_phone, MatchReason,
};
use gridsync_core::doc::{heads_to_bytes, RecordDoc};
use gridsync_core::model::{
    CarriedEdit, DuplicateMark, DuplicateOutcome, DuplicateResolution, MergedInto, Producer,
    Record, RecordKind,
};
use gridsync_core::rules::GridTree;
use gridsync_core::store::TreeSnapshot;
use gridsync_core::sync::protocol::{PushOutcome, PushRecord};

use crate::storage::duplicates::{Candidate, CandidateQuery};
use crate::storage::{Author, PushDecision, Storage, StorageResult, StoredRecord};

/// The person the server's own changes name (the review history and the audit trail show
/// it as the system).
pub const SERVER_PERSON: &str = "gridsync-server";

/// The device whose actor signs the server's own changes.
pub const SERVER_DEVICE: &str = "server-duplicates";

/// How far one settlement follows the consequences of its writes (a carried edit landing on
/// an entry that is itself a tombstone is carried on; marks written on the other entry of
/// a pair are not re-checked).
const MAX_ROUNDS: usize = 8;

/// Most new marks one check writes (the best scores): a common name (乌力吉家庭牧场 in a
/// banner where many herders are called 乌力吉) would otherwise mark a new entry against
/// every namesake, and each of them in turn, one write per pair.
pub const MAX_NEW_MARKS: usize = 5;

/// Most producers one check reads for their similar names (the most alike first, pairs
/// already known left out): a few more than it may mark, since a candidate found by a
/// code or phone as well scores higher and is read by that key anyway.
const MAX_SIMILAR: usize = 2 * MAX_NEW_MARKS;

/// Most open marks an entry carries: past this, it is not marked again until some are
/// resolved (the desk lists it already).
pub const MAX_OPEN_MARKS: usize = 20;

/// What the server did after a push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// New possible-duplicate marks written (each pair counts once).
    pub marked: usize,
    /// Resolutions mirrored onto the other entry of a pair.
    pub mirrored: usize,
    /// Edits of tombstones applied to the surviving entry.
    pub carried: usize,
    /// Edits of tombstones left on the surviving entry as conflicts.
    pub conflicts: usize,
}

/// Settles the duplicate bookkeeping of the producers `ids` (just pushed or decided):
/// checks, mirrors and carries as the module describes. `tree` is the whole grid tree.
/// A failure to write one entry is logged and the others go on: the bookkeeping is
/// redone by the next push of the entry.
pub fn settle(storage: &dyn Storage, nodes: &GridNodes, ids: &[String]) -> Settled {
    let mut done = Settled::default();
    let mut work: Vec<String> = ids.to_vec();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut cores = CoreCache::default();
    let mut marks = PendingMarks::default();
    let mut rounds = 0;
    while !work.is_empty() && rounds < MAX_ROUNDS {
        rounds += 1;
        let mut next = Vec::new();
        for id in std::mem::take(&mut work) {
            if !seen.insert(id.clone()) {
                continue;
            }
            let mut step = Step {
                nodes,
                cores: &mut cores,
                marks: &mut marks,
                done: &mut done,
            };
            match settle_one(storage, &mut step, &id) {
                Ok(more) => next.extend(more),
                Err(e) => {
                    tracing::warn!(producer = %id, error = %e, "duplicate bookkeeping left for the next push");
                }
            }
        }
        work = next;
    }
    match marks.write(storage) {
        Ok(n) => done.marked += n,
        Err(e) => {
            tracing::warn!(error = %e, "possible-duplicate marks left for the next push");
        }
    }
    done
}

/// What one settlement carries from entry to entry.
struct Step<'a> {
    nodes: &'a GridNodes,
    cores: &'a mut CoreCache,
    marks: &'a mut PendingMarks,
    done: &'a mut Settled,
}

/// The marks the checks of one settlement found, written together at its end: both sides
/// of every pair, each document once (a namesake marked by several entries of one push is
/// written once), in one transaction.
#[derive(Debug, Default)]
struct PendingMarks {
    /// Entry -> the marks to add to it.
    on: BTreeMap<String, Vec<DuplicateMark>>,
    /// The pairs, as (the checked entry, the other).
    pairs: Vec<(String, String)>,
}

impl PendingMarks {
    /// Whether `a` and `b` are already paired in this settlement.
    fn paired(&self, a: &str, b: &str) -> bool {
        self.on
            .get(a)
            .is_some_and(|ms| ms.iter().any(|m| m.id == b))
    }

    fn add(&mut self, entry: &str, other: &str, on_entry: DuplicateMark, on_other: DuplicateMark) {
        self.on.entry(entry.to_string()).or_default().push(on_entry);
        self.on.entry(other.to_string()).or_default().push(on_other);
        self.pairs.push((entry.to_string(), other.to_string()));
    }

    /// Writes the marks; returns the pairs whose checked entry received its mark.
    fn write(&self, storage: &dyn Storage) -> StorageResult<usize> {
        if self.on.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = self.on.keys().cloned().collect();
        let cap = gridsync_core::validate::MAX_DUPLICATE_MARKS;
        let written = server_write_many(storage, &ids, &mut |x: &mut Producer| {
            // A tombstone is not marked (its merge settled who it is).
            if x.merged_into.is_some() {
                return false;
            }
            let mut changed = false;
            for m in self.on.get(&x.id).into_iter().flatten() {
                if !x.duplicates.iter().any(|d| d.id == m.id) && x.duplicates.len() < cap {
                    x.duplicates.push(m.clone());
                    changed = true;
                }
            }
            changed
        })?;
        Ok(self
            .pairs
            .iter()
            .filter(|(entry, _)| written.contains(entry))
            .count())
    }
}

/// The name cores of each neighbourhood read during one settlement (core -> ids): the
/// entries of one push are mostly of one village, so one read serves them all.
#[derive(Debug, Default)]
struct CoreCache {
    by_grids: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
}

impl CoreCache {
    /// The producers of `grids` whose cores are similar to `core`, those `skip` holds left
    /// out.
    fn similar(
        &mut self,
        storage: &dyn Storage,
        grids: &[String],
        core: &str,
        skip: &dyn Fn(&str) -> bool,
    ) -> StorageResult<Vec<String>> {
        if core.is_empty() {
            return Ok(Vec::new());
        }
        let cores = match self.by_grids.entry(grids.to_vec()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let mut by_core: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (c, id) in storage.name_cores(grids)? {
                    by_core.entry(c).or_default().push(id);
                }
                e.insert(by_core)
            }
        };
        // The most alike first (the same core, then one edit, then contained), at most
        // MAX_SIMILAR: a short core is contained in many, and only the best few are marked.
        let mut found: Vec<(MatchReason, &String)> = cores
            .iter()
            .filter_map(|(c, ids)| core_similarity(core, c).map(|r| (r, ids)))
            .flat_map(|(r, ids)| ids.iter().map(move |id| (r, id)))
            .filter(|(_, id)| !skip(id))
            .collect();
        found.sort();
        found.truncate(MAX_SIMILAR);
        Ok(found.into_iter().map(|(_, id)| id.clone()).collect())
    }
}

/// The grid tree, with what the check needs of it: parents, and each grid's neighbours.
#[derive(Debug, Default)]
pub struct GridNodes {
    tree: TreeSnapshot,
    children: BTreeMap<String, Vec<String>>,
}

impl GridNodes {
    /// The tree of `storage`'s grids.
    pub fn load(storage: &dyn Storage) -> StorageResult<GridNodes> {
        let nodes = storage.grids()?;
        let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in &nodes {
            if let Some(p) = &n.parent {
                children.entry(p.clone()).or_default().push(n.code.clone());
            }
        }
        Ok(GridNodes {
            tree: TreeSnapshot::from_nodes(&nodes),
            children,
        })
    }

    /// `grid`, its parent, its siblings and its children: where a similar name counts.
    pub fn neighbourhood(&self, grid: &str) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        out.insert(grid.to_string());
        if let Some(p) = self.tree.parent_of(grid) {
            out.extend(self.children.get(&p).into_iter().flatten().cloned());
            out.insert(p);
        }
        out.extend(self.children.get(grid).into_iter().flatten().cloned());
        out.into_iter().collect()
    }
}

/// The grid tree of a storage, kept until grids or people change (the reference
/// generation moves).
#[derive(Debug, Default)]
pub struct NodeCache {
    inner: std::sync::Mutex<Option<(i64, std::sync::Arc<GridNodes>)>>,
}

impl NodeCache {
    /// The tree of `storage` now.
    pub fn get(&self, storage: &dyn Storage) -> StorageResult<std::sync::Arc<GridNodes>> {
        let generation = storage.reference_generation()?;
        {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((gen, nodes)) = g.as_ref() {
                if *gen == generation {
                    return Ok(nodes.clone());
                }
            }
        }
        let nodes = std::sync::Arc::new(GridNodes::load(storage)?);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *g = Some((generation, nodes.clone()));
        Ok(nodes)
    }
}

/// [`settle`] for the producers among the records of a push that were accepted (the
/// server's answer to a sync request waits for it, so the pushing phone receives the
/// marks in the same round trip).
pub fn after_push(
    storage: &dyn Storage,
    cache: &NodeCache,
    pushed: &[PushRecord],
    results: &[gridsync_core::sync::protocol::PushResult],
) -> Settled {
    let ids: Vec<String> = pushed
        .iter()
        .zip(results)
        .filter(|(p, r)| p.kind == RecordKind::Producer.tag() && r.outcome == PushOutcome::Accepted)
        .map(|(p, _)| p.id.clone())
        .collect();
    if ids.is_empty() {
        return Settled::default();
    }
    match cache.get(storage) {
        Ok(nodes) => settle(storage, &nodes, &ids),
        Err(e) => {
            tracing::warn!(error = %e, "duplicate bookkeeping skipped: the grid tree did not load");
            Settled::default()
        }
    }
}

fn load_producer(storage: &dyn Storage, id: &str) -> StorageResult<Option<Producer>> {
    let Some(s) = storage.record(id)? else {
        return Ok(None);
    };
    if s.kind != RecordKind::Producer {
        return Ok(None);
    }
    Ok(read_producer(&s))
}

fn read_producer(s: &StoredRecord) -> Option<Producer> {
    match RecordDoc::load(&s.doc, &[]).and_then(|d| d.read()) {
        Ok(Record::Producer(p)) => Some(p),
        _ => None,
    }
}

/// One entry's bookkeeping; returns the entries whose own bookkeeping may now be due
/// (a surviving entry that received a carried edit and is itself merged).
fn settle_one(storage: &dyn Storage, step: &mut Step<'_>, id: &str) -> StorageResult<Vec<String>> {
    let Step {
        nodes,
        cores,
        marks: pending,
        done,
    } = step;
    let Some(p) = load_producer(storage, id)? else {
        return Ok(Vec::new());
    };
    let mut next = Vec::new();
    // 2. Mirror resolutions made on this entry onto the other entry of each pair.
    for m in &p.duplicates {
        let Some(r) = &m.resolution else { continue };
        let want = match r.outcome {
            DuplicateOutcome::NotDuplicate => DuplicateOutcome::NotDuplicate,
            DuplicateOutcome::MergedIntoOther
                if p.merged_into.as_ref().map(|t| t.into.as_str()) == Some(m.id.as_str()) =>
            {
                DuplicateOutcome::OtherMergedHere
            }
            _ => continue,
        };
        let resolution = DuplicateResolution {
            outcome: want,
            by: r.by.clone(),
            at_ms: r.at_ms,
        };
        let wrote = server_write(storage, &m.id, &mut |other: &mut Producer| match other
            .duplicates
            .iter_mut()
            .find(|o| o.id == p.id)
        {
            Some(o) if o.resolution.is_some() => false,
            Some(o) => {
                o.resolution = Some(resolution.clone());
                true
            }
            None => {
                other.duplicates.push(DuplicateMark {
                    id: p.id.clone(),
                    other_name: p.name.clone(),
                    other_grid: p.grid.clone(),
                    reasons: m.reasons.clone(),
                    score: m.score,
                    found_at_ms: m.found_at_ms,
                    resolution: Some(resolution.clone()),
                });
                true
            }
        })?;
        if wrote {
            done.mirrored += 1;
        }
    }
    // Two supervisors offline may each merge one entry of a pair into the other: both
    // become tombstones pointing at each other. The entry with the smaller id survives
    // (the same on every server and every retry), its mark records the other as merged
    // here, and the other's edits are then carried to it.
    let mut p = p;
    if let Some(t) = p.merged_into.clone() {
        if let Some(x) = load_producer(storage, &t.into)? {
            if x.merged_into.as_ref().map(|m| m.into.as_str()) == Some(p.id.as_str()) {
                let (revive, keep) = if p.id < x.id {
                    (p.id.clone(), x.id.clone())
                } else {
                    (x.id.clone(), p.id.clone())
                };
                let by = t.by.clone();
                server_write(storage, &revive, &mut |r: &mut Producer| {
                    let Some(m) = r.merged_into.take() else {
                        return false;
                    };
                    if let Some(mark) = r.duplicates.iter_mut().find(|d| d.id == keep) {
                        mark.resolution = Some(DuplicateResolution {
                            outcome: DuplicateOutcome::OtherMergedHere,
                            by: by.clone(),
                            at_ms: m.at_ms,
                        });
                    }
                    true
                })?;
                done.mirrored += 1;
                if keep != p.id {
                    next.push(keep.clone());
                }
                match load_producer(storage, &p.id)? {
                    Some(again) => p = again,
                    None => return Ok(next),
                }
            }
        }
    }
    // 3. Carry edits of a tombstone to the entry it was merged into.
    if let Some(t) = &p.merged_into {
        let edits = tombstone_edits(&p, t);
        if !edits.is_empty() {
            let now = gridsync_core::now_ms();
            let mut outcome: Vec<(String, String, bool)> = Vec::new();
            let wrote = server_write(storage, &t.into, &mut |x: &mut Producer| {
                outcome.clear();
                let mut changed = false;
                for (field, old, new) in &edits {
                    let edit_id = carried_id(&p.id, field, new);
                    if x.carried_edits.iter().any(|e| e.id == edit_id) {
                        outcome.push((field.clone(), new.clone(), true));
                        continue;
                    }
                    let current = x.directory_field(field).map(|v| v.to_string());
                    let empty = current.as_deref().is_none_or(is_empty_json);
                    let apply = current.as_deref() == Some(old.as_str()) || empty;
                    let applied = apply
                        && serde_json::from_str(new)
                            .ok()
                            .is_some_and(|v| x.set_directory_field(field, v).is_ok());
                    x.carried_edits.push(CarriedEdit {
                        id: edit_id,
                        from: p.id.clone(),
                        field: field.clone(),
                        value: new.clone(),
                        applied,
                        at_ms: now,
                        settled_by: None,
                    });
                    outcome.push((field.clone(), new.clone(), applied));
                    changed = true;
                }
                changed
            })?;
            if wrote {
                // A carried name changes the survivor's core.
                cores.by_grids.clear();
                for (_, _, applied) in &outcome {
                    if *applied {
                        done.carried += 1;
                    } else {
                        done.conflicts += 1;
                    }
                }
                next.push(t.into.clone());
            }
            // The tombstone records the carried values as seen (carried once).
            server_write(storage, &p.id, &mut |a: &mut Producer| {
                let Some(t) = a.merged_into.as_mut() else {
                    return false;
                };
                let mut changed = false;
                for (field, _, new) in &edits {
                    match t.seen.iter_mut().find(|s| &s.id == field) {
                        Some(s) if &s.value == new => {}
                        Some(s) => {
                            s.value = new.clone();
                            changed = true;
                        }
                        None => {
                            t.seen.push(gridsync_core::model::SeenField {
                                id: field.clone(),
                                value: new.clone(),
                            });
                            changed = true;
                        }
                    }
                }
                changed
            })?;
        }
        return Ok(next);
    }
    // 1. Check the entry against the directory.
    if p.open_duplicates().count() >= MAX_OPEN_MARKS {
        return Ok(next);
    }
    let core = name_core(&p.name);
    let grids = nodes.neighbourhood(&p.grid);
    let known: BTreeSet<&str> = p.duplicates.iter().map(|m| m.id.as_str()).collect();
    let skip = |id: &str| id == p.id || known.contains(id) || pending.paired(&p.id, id);
    let q = CandidateQuery {
        id: p.id.clone(),
        credit_code: p.credit_code.clone(),
        id_number: p.id_number.clone(),
        phone: p.phone.clone(),
        similar: cores.similar(storage, &grids, &core, &skip)?,
        grids,
    };
    let candidates = storage.duplicate_candidates(&q)?;
    // Matched on the keys as stored (the name core is computed once, when a row is
    // written, not for every candidate of every check).
    let candidates: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !pending.paired(&p.id, &c.id))
        .collect();
    let credit = p.credit_code.as_deref().and_then(normalize_code);
    let idn = p.id_number.as_deref().and_then(normalize_code);
    let phone = normalize_phone(&p.phone);
    let near: BTreeSet<&str> = q.grids.iter().map(String::as_str).collect();
    let mut found: Vec<(MatchReason, Vec<MatchReason>, &Candidate)> = Vec::new();
    for c in candidates
        .iter()
        .copied()
        .filter(|c| !known.contains(c.id.as_str()))
    {
        let mut reasons = Vec::new();
        if credit.is_some() && c.credit_code.as_deref().and_then(normalize_code) == credit {
            reasons.push(MatchReason::CreditCode);
        }
        if idn.is_some() && c.id_number.as_deref().and_then(normalize_code) == idn {
            reasons.push(MatchReason::IdNumber);
        }
        if phone.is_some() && c.phone_norm == phone {
            reasons.push(MatchReason::Phone);
        }
        if near.contains(c.grid.as_str()) {
            if let Some(r) = core_similarity(&core, &c.name_core) {
                reasons.push(r);
            }
        }
        if let Some(best) = reasons.iter().copied().min() {
            reasons.sort();
            found.push((best, reasons, c));
        }
    }
    if found.is_empty() {
        return Ok(next);
    }
    // Best first: by combined score, then id.
    found.sort_by(|a, b| {
        combined_score(&b.1)
            .cmp(&combined_score(&a.1))
            .then_with(|| a.2.id.cmp(&b.2.id))
    });
    found.truncate(MAX_NEW_MARKS);
    let now = gridsync_core::now_ms();
    for (_, reasons, other) in &found {
        let ids: Vec<String> = reasons.iter().map(|r| r.as_str().to_string()).collect();
        let score = combined_score(reasons);
        let mark = |id: &str, name: &str, grid: &str| DuplicateMark {
            id: id.to_string(),
            other_name: name.to_string(),
            other_grid: grid.to_string(),
            reasons: ids.clone(),
            score,
            found_at_ms: now,
            resolution: None,
        };
        pending.add(
            &p.id,
            &other.id,
            mark(&other.id, &other.name, &other.grid),
            mark(&p.id, &p.name, &p.grid),
        );
    }
    Ok(next)
}

/// The directory fields of tombstone `p` that differ from what its merge recorded: field,
/// value seen (JSON), value now (JSON).
fn tombstone_edits(p: &Producer, t: &MergedInto) -> Vec<(String, String, String)> {
    t.seen
        .iter()
        .filter_map(|s| {
            let now = p.directory_field(&s.id)?.to_string();
            (now != s.value).then(|| (s.id.clone(), s.value.clone(), now))
        })
        .collect()
}

/// A stable id for carrying `value` of `field` from `from` (the same edit is carried once).
fn carried_id(from: &str, field: &str, value: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(value.as_bytes());
    format!("{from}:{field}:{}", hex::encode(&digest[..6]))
}

/// Whether a field's JSON value is empty (nothing recorded there yet).
fn is_empty_json(v: &str) -> bool {
    matches!(v, "null" | "\"\"" | "[]" | "{}")
}

/// Writes one server change on producer `id`: `edit` gets the producer as stored inside
/// the push transaction and changes it (returning `false` when there is nothing to do).
/// The change is signed by [`SERVER_DEVICE`]'s actor, names [`SERVER_PERSON`], and is
/// stored with its query rows, feed entry and audit line. Returns whether it wrote.
pub fn server_write(
    storage: &dyn Storage,
    id: &str,
    edit: &mut dyn FnMut(&mut Producer) -> bool,
) -> StorageResult<bool> {
    Ok(server_write_many(storage, &[id.to_string()], edit)?.contains(id))
}

/// [`server_write`] on several producers in one transaction (`edit` sees each, by id).
/// Returns the ids written.
pub fn server_write_many(
    storage: &dyn Storage,
    ids: &[String],
    edit: &mut dyn FnMut(&mut Producer) -> bool,
) -> StorageResult<BTreeSet<String>> {
    let pushes: Vec<PushRecord> = ids
        .iter()
        .map(|id| PushRecord {
            id: id.clone(),
            kind: RecordKind::Producer.tag(),
            changes: Vec::new(),
            heads: Vec::new(),
        })
        .collect();
    let author = Author {
        person_id: SERVER_PERSON.to_string(),
        device_id: None,
    };
    let actor = gridsync_core::device_actor(SERVER_DEVICE);
    let key = storage.change_key(true)?;
    // The last decision of the batch is the one stored (a batch may be decided again).
    let mut wrote: BTreeSet<String> = BTreeSet::new();
    let mut process = |stored: Option<&StoredRecord>, pr: &PushRecord| -> PushDecision {
        wrote.remove(&pr.id);
        let Some(s) = stored else {
            return PushDecision::Duplicate;
        };
        if s.kind != RecordKind::Producer {
            return PushDecision::Duplicate;
        }
        let Ok(mut doc) = RecordDoc::load(&s.doc, &[]) else {
            return PushDecision::Duplicate;
        };
        let Ok(Record::Producer(mut p)) = doc.read() else {
            return PushDecision::Duplicate;
        };
        if !edit(&mut p) {
            return PushDecision::Duplicate;
        }
        let rec = Record::Producer(p);
        if let Err(e) = gridsync_core::validate::validate_record(&rec) {
            tracing::warn!(producer = %rec.id(), error = %e, "duplicate bookkeeping would not validate; not written");
            return PushDecision::Duplicate;
        }
        // The change is made twice: with the plain message (in a copy) to compute its tag,
        // then with the tag in its message ([`crate::signed`]): same actor, dependencies,
        // time and operations, so the two differ only in the message.
        let now = gridsync_core::now_ms();
        let Ok(mut probe) = RecordDoc::from_doc(doc.inner().fork()) else {
            return PushDecision::Duplicate;
        };
        probe.set_actor(&actor);
        if !matches!(probe.update(&rec, SERVER_PERSON, now), Ok(true)) {
            return PushDecision::Duplicate;
        }
        let Some(plain) = probe.inner().get_last_local_change().cloned() else {
            return PushDecision::Duplicate;
        };
        let message = crate::signed::signed_message(&key, rec.id(), &plain);
        doc.set_actor(&actor);
        let before = doc.heads();
        match doc.update(&rec, &message, now) {
            Ok(true) => {}
            Ok(false) => return PushDecision::Duplicate,
            Err(e) => {
                tracing::warn!(producer = %rec.id(), error = %e, "duplicate bookkeeping did not write");
                return PushDecision::Duplicate;
            }
        }
        let new_changes = doc.save_after(&before);
        let heads = heads_to_bytes(&doc.heads());
        let grid = match &rec {
            Record::Producer(p) => p.grid.clone(),
            _ => String::new(),
        };
        wrote.insert(pr.id.clone());
        PushDecision::Store {
            kind: RecordKind::Producer,
            grid,
            doc: doc.inner().save_nocompress(),
            heads,
            new_changes,
            action: "duplicates",
            attachments: gridsync_core::attachment::refs_of(&rec),
            record: Some(Box::new(rec)),
        }
    };
    let results = storage.apply_push(&author, &pushes, &mut process)?;
    Ok(results
        .into_iter()
        .filter(|r| r.outcome == PushOutcome::Accepted && wrote.contains(&r.id))
        .map(|r| r.id)
        .collect())
}

/// The reasons of a mark as field staff read them (`、`-separated Chinese labels).
pub fn reasons_zh(reasons: &[String]) -> String {
    reasons
        .iter()
        .map(|r| MatchReason::from_id(r).map_or(r.as_str(), |m| m.label_zh()))
        .collect::<Vec<_>>()
        .join("、")
}
