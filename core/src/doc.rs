//! How a record lives in its Automerge document.
//!
//! A record is serialized to JSON and *reconciled* into the document: only the scalars
//! that differ are written, map keys that disappeared are deleted, lists of objects with
//! an `id` are matched by id (so findings added concurrently both survive) and lists of
//! scalars behave as sets. Reading walks the document back to JSON, taking Automerge's
//! winner where two replicas wrote the same field and reporting the losers as conflicts.

use automerge::{
    transaction::{CommitOptions, Transactable},
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, Value as AmValue, ROOT,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::model::{Record, RecordKind, RECORD_SCHEMA_VERSION};
use crate::{Error, Result};

const SCHEMA_KEY: &str = "_schema";
const KIND_KEY: &str = "_kind";
/// Top-level fields that say when the record was last edited. Every edit writes them, so
/// concurrent edits always collide there: a merge reads the latest value and does not
/// report a conflict (it would hide the real ones and could go back in time).
const EDIT_TIME_KEYS: &[&str] = &["updated_at_ms"];

/// Two or more values written concurrently to the same field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// Dotted path of the field (`phone`, `answers.drug_use.note`, `findings[2].description`).
    pub path: String,
    /// The value the merge picked, as JSON.
    pub winner: Value,
    /// The values that lost, as JSON, still readable.
    pub others: Vec<Value>,
}

/// One change in a record's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Change hash (hex).
    pub hash: String,
    /// Who made it: the commit message carries the person id.
    pub by: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Number of operations.
    pub ops: usize,
}

/// A record's Automerge document.
#[derive(Debug)]
pub struct RecordDoc {
    doc: AutoCommit,
    kind: RecordKind,
}

impl RecordDoc {
    /// A new document holding `record`, written by `actor` on behalf of `person`.
    pub fn create(record: &Record, actor: &ActorId, person: &str, now_ms: i64) -> Result<Self> {
        Ok(Self::create_exact(record, actor, person, now_ms)?.0)
    }

    /// Like [`RecordDoc::create`], and tells whether the document reads back exactly as
    /// `record` (false when a list held duplicates, which a document keeps once), so that
    /// a caller may skip reading it back.
    pub fn create_exact(
        record: &Record,
        actor: &ActorId,
        person: &str,
        now_ms: i64,
    ) -> Result<(Self, bool)> {
        let mut doc = AutoCommit::new().with_actor(actor.clone());
        doc.put(ROOT, SCHEMA_KEY, RECORD_SCHEMA_VERSION)?;
        doc.put(ROOT, KIND_KEY, record.kind().as_str())?;
        let Value::Object(fields) = record.to_json() else {
            return Err(Error::Document("record did not serialize to a map".into()));
        };
        let mut dropped = false;
        // Everything is new: write without looking up what is there.
        reconcile_map(&mut doc, &ROOT, &fields, true, true, &mut dropped)?;
        let mut d = RecordDoc {
            doc,
            kind: record.kind(),
        };
        d.commit(person, now_ms);
        Ok((d, !dropped))
    }

    /// Loads a document from its saved bytes and any incremental chunks after them.
    pub fn load(full: &[u8], chunks: &[&[u8]]) -> Result<Self> {
        let mut doc = AutoCommit::load(full)?;
        for c in chunks {
            doc.load_incremental(c)?;
        }
        Self::from_doc(doc)
    }

    /// Wraps a loaded document after checking its envelope.
    pub fn from_doc(doc: AutoCommit) -> Result<Self> {
        let kind = match doc.get(ROOT, KIND_KEY)? {
            Some((AmValue::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(k) => RecordKind::parse(k),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| Error::Document("document has no valid _kind".into()))?;
        match doc.get(ROOT, SCHEMA_KEY)? {
            Some((AmValue::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Uint(v) if *v <= RECORD_SCHEMA_VERSION => {}
                ScalarValue::Int(v) if *v >= 0 && (*v as u64) <= RECORD_SCHEMA_VERSION => {}
                other => {
                    return Err(Error::Document(format!(
                        "record schema {other} is not supported (this build reads up to {RECORD_SCHEMA_VERSION})"
                    )))
                }
            },
            _ => return Err(Error::Document("document has no _schema".into())),
        }
        Ok(RecordDoc { doc, kind })
    }

    /// An empty document to receive changes into (a record first seen through sync).
    pub fn empty() -> AutoCommit {
        AutoCommit::new()
    }

    /// Record kind.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// Sets the actor that signs later edits.
    pub fn set_actor(&mut self, actor: &ActorId) {
        self.doc.set_actor(actor.clone());
    }

    /// The record as typed data (Automerge's winner on conflicting fields).
    pub fn read(&self) -> Result<Record> {
        let json = self.read_json(&mut None)?;
        Record::from_json(self.kind, json)
            .map_err(|e| Error::Document(format!("record shape: {e}")))
    }

    /// Every field with concurrent values.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        let mut out = Some(Vec::new());
        self.read_json(&mut out)?;
        Ok(out.unwrap_or_default())
    }

    fn read_json(&self, conflicts: &mut Option<Vec<Conflict>>) -> Result<Value> {
        let mut v = read_map(&self.doc, &ROOT, "", conflicts)?;
        if let Value::Object(m) = &mut v {
            m.remove(SCHEMA_KEY);
            m.remove(KIND_KEY);
        }
        if let Some(c) = conflicts {
            c.retain(|c| c.path != SCHEMA_KEY && c.path != KIND_KEY);
        }
        Ok(v)
    }

    /// Writes what differs between the document and `record` and commits it as one change.
    /// Returns whether anything changed.
    pub fn update(&mut self, record: &Record, person: &str, now_ms: i64) -> Result<bool> {
        if record.kind() != self.kind {
            return Err(Error::Document(format!(
                "cannot write a {} into a {} document",
                record.kind().as_str(),
                self.kind.as_str()
            )));
        }
        self.reconcile_fields(record)?;
        Ok(self.commit(person, now_ms))
    }

    /// Re-writes the current winner at `path` so that the conflict there is resolved.
    pub fn resolve_conflict(&mut self, path: &str, person: &str, now_ms: i64) -> Result<bool> {
        let (obj, prop) = resolve_path(&self.doc, path)?;
        let value = match self.doc.get(&obj, prop.as_str())? {
            Some((AmValue::Scalar(s), _)) => s.into_owned(),
            Some((AmValue::Object(_), _)) => {
                return Err(Error::Document(format!("{path} is not a plain field")))
            }
            None => return Err(Error::Document(format!("{path} does not exist"))),
        };
        self.doc.put(&obj, prop.as_str(), value)?;
        Ok(self.commit(person, now_ms))
    }

    fn reconcile_fields(&mut self, record: &Record) -> Result<()> {
        let Value::Object(fields) = record.to_json() else {
            return Err(Error::Document("record did not serialize to a map".into()));
        };
        reconcile_map(&mut self.doc, &ROOT, &fields, true, false, &mut false)
    }

    fn commit(&mut self, person: &str, now_ms: i64) -> bool {
        self.doc
            .commit_with(
                CommitOptions::default()
                    .with_message(person.to_string())
                    .with_time(now_ms),
            )
            .is_some()
    }

    /// Current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The compact whole document.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Changes not reachable from `heads`, as concatenated change chunks.
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// Applies change chunks or a saved document received from elsewhere.
    /// Returns the number of new operations.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<usize> {
        Ok(self.doc.load_incremental(bytes)?)
    }

    /// Changes referenced but not present (a gap that needs the whole document).
    pub fn missing_deps(&mut self) -> Vec<ChangeHash> {
        self.doc.get_missing_deps(&[])
    }

    /// The document as it was at `heads` (what an author saw before their change).
    pub fn fork_at(&mut self, heads: &[ChangeHash]) -> Result<RecordDoc> {
        let doc = self.doc.fork_at(heads)?;
        Ok(RecordDoc {
            doc,
            kind: self.kind,
        })
    }

    /// A copy that can be changed independently.
    pub fn fork(&mut self) -> RecordDoc {
        RecordDoc {
            doc: self.doc.fork(),
            kind: self.kind,
        }
    }

    /// Whether all of `heads` are known to this document.
    pub fn has_heads(&mut self, heads: &[ChangeHash]) -> bool {
        heads
            .iter()
            .all(|h| self.doc.get_change_by_hash(h).is_some())
    }

    /// The history of changes, oldest first.
    pub fn history(&mut self) -> Vec<HistoryEntry> {
        self.doc
            .get_changes(&[])
            .into_iter()
            .map(|c| HistoryEntry {
                hash: hex::encode(c.hash().0),
                by: c.message().cloned().unwrap_or_default(),
                at_ms: c.timestamp(),
                ops: c.len(),
            })
            .collect()
    }

    /// The underlying Automerge document.
    pub fn inner(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }
}

/// Loads a document received from the network and checks its envelope.
pub fn load_received(bytes: &[u8]) -> Result<RecordDoc> {
    let mut doc = AutoCommit::new();
    doc.load_incremental(bytes)?;
    RecordDoc::from_doc(doc)
}

/// Converts heads to bytes for storage.
pub fn heads_to_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(heads.len() * 32);
    for h in heads {
        out.extend_from_slice(&h.0);
    }
    out
}

/// Parses heads stored by [`heads_to_bytes`].
pub fn heads_from_bytes(b: &[u8]) -> Result<Vec<ChangeHash>> {
    if b.len() % 32 != 0 {
        return Err(Error::Document(format!("heads blob of {} bytes", b.len())));
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            ChangeHash(h)
        })
        .collect())
}

fn to_scalar(v: &Value) -> ScalarValue {
    match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Array(_) | Value::Object(_) => ScalarValue::Null,
    }
}

fn from_scalar(s: &ScalarValue) -> Value {
    match s {
        ScalarValue::Null => Value::Null,
        ScalarValue::Boolean(b) => Value::Bool(*b),
        ScalarValue::Int(i) => Value::Number((*i).into()),
        ScalarValue::Uint(u) => Value::Number((*u).into()),
        ScalarValue::F64(f) => Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ScalarValue::Str(s) => Value::String(s.to_string()),
        ScalarValue::Timestamp(t) => Value::Number((*t).into()),
        ScalarValue::Counter(c) => Value::Number(i64::from(c).into()),
        ScalarValue::Bytes(_) | ScalarValue::Unknown { .. } => Value::Null,
    }
}

fn scalar_eq(a: &ScalarValue, b: &ScalarValue) -> bool {
    match (a, b) {
        (ScalarValue::F64(x), ScalarValue::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// Writes `new` into the map `obj`. `fresh` says the object was just made (nothing to look
/// up or delete); `dropped` is set when a duplicate list entry was left out.
fn reconcile_map(
    doc: &mut AutoCommit,
    obj: &ObjId,
    new: &Map<String, Value>,
    root: bool,
    fresh: bool,
    dropped: &mut bool,
) -> Result<()> {
    if !fresh {
        let stale: Vec<String> = doc
            .keys(obj)
            .filter(|k| !(new.contains_key(k) || root && k.starts_with('_')))
            .collect();
        for k in stale {
            doc.delete(obj, k.as_str())?;
        }
    }
    for (k, v) in new {
        let current = if fresh {
            None
        } else {
            doc.get(obj, k.as_str())?
        };
        match v {
            Value::Object(m) => {
                let (child, made) = match current {
                    Some((AmValue::Object(ObjType::Map), id)) => (id, false),
                    _ => (doc.put_object(obj, k.as_str(), ObjType::Map)?, true),
                };
                reconcile_map(doc, &child, m, false, made, dropped)?;
            }
            Value::Array(a) => {
                let child = match current {
                    Some((AmValue::Object(ObjType::List), id)) => id,
                    _ => doc.put_object(obj, k.as_str(), ObjType::List)?,
                };
                reconcile_list(doc, &child, a, dropped)?;
            }
            scalar => {
                let want = to_scalar(scalar);
                let same = matches!(&current, Some((AmValue::Scalar(s), _)) if scalar_eq(s, &want));
                if !same {
                    doc.put(obj, k.as_str(), want)?;
                }
            }
        }
    }
    Ok(())
}

fn item_id(doc: &AutoCommit, obj: &ObjId) -> Option<String> {
    match doc.get(obj, "id").ok()?? {
        (AmValue::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn reconcile_list(
    doc: &mut AutoCommit,
    list: &ObjId,
    new: &[Value],
    dropped: &mut bool,
) -> Result<()> {
    let keyed = !new.is_empty()
        && new
            .iter()
            .all(|v| v.get("id").and_then(Value::as_str).is_some());
    let len = doc.length(list);
    if keyed || (new.is_empty() && len > 0 && list_is_keyed(doc, list)) {
        // Objects matched by id: delete the ones that went away, update the rest, append new.
        let mut present: Vec<(usize, String, ObjId)> = Vec::new();
        for i in 0..len {
            if let Some((AmValue::Object(ObjType::Map), id)) = doc.get(list, i)? {
                if let Some(key) = item_id(doc, &id) {
                    present.push((i, key, id));
                    continue;
                }
            }
            present.push((i, String::new(), ObjId::Root));
        }
        let wanted: std::collections::HashMap<&str, &Map<String, Value>> = new
            .iter()
            .filter_map(|v| Some((v.get("id")?.as_str()?, v.as_object()?)))
            .collect();
        for (i, key, _) in present.iter().rev() {
            if !wanted.contains_key(key.as_str()) {
                doc.delete(list, *i)?;
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (_, key, id) in &present {
            if let Some(m) = wanted.get(key.as_str()) {
                if seen.insert(key.clone()) {
                    reconcile_map(doc, id, m, false, false, dropped)?;
                }
            }
        }
        for v in new {
            let Some(key) = v.get("id").and_then(Value::as_str) else {
                continue;
            };
            if seen.insert(key.to_string()) {
                if let Some(m) = v.as_object() {
                    let at = doc.length(list);
                    let child = doc.insert_object(list, at, ObjType::Map)?;
                    reconcile_map(doc, &child, m, false, true, dropped)?;
                }
            } else {
                *dropped = true;
            }
        }
        return Ok(());
    }
    if new.iter().all(|v| !v.is_object() && !v.is_array()) {
        // Scalars as a set: remove what went away, append what is new.
        let wanted: Vec<ScalarValue> = new.iter().map(to_scalar).collect();
        let mut have: Vec<ScalarValue> = Vec::new();
        for i in (0..len).rev() {
            match doc.get(list, i)? {
                Some((AmValue::Scalar(s), _)) if wanted.iter().any(|w| scalar_eq(w, &s)) => {
                    have.push(s.into_owned());
                }
                _ => doc.delete(list, i)?,
            }
        }
        for w in wanted {
            if !have.iter().any(|h| scalar_eq(h, &w)) {
                let at = doc.length(list);
                doc.insert(list, at, w.clone())?;
                have.push(w);
            } else {
                *dropped = true;
            }
        }
        return Ok(());
    }
    // Anything else is replaced whole (not used by the record model today); reading it
    // back may leave out repeated entries.
    *dropped = true;
    for i in (0..len).rev() {
        doc.delete(list, i)?;
    }
    for (i, v) in new.iter().enumerate() {
        match v {
            Value::Object(m) => {
                let child = doc.insert_object(list, i, ObjType::Map)?;
                reconcile_map(doc, &child, m, false, true, dropped)?;
            }
            Value::Array(a) => {
                let child = doc.insert_object(list, i, ObjType::List)?;
                reconcile_list(doc, &child, a, dropped)?;
            }
            s => {
                doc.insert(list, i, to_scalar(s))?;
            }
        }
    }
    Ok(())
}

fn list_is_keyed(doc: &AutoCommit, list: &ObjId) -> bool {
    matches!(
        doc.get(list, 0),
        Ok(Some((AmValue::Object(ObjType::Map), _)))
    )
}

/// Conflicts being collected while reading (`None`: reading values only, which is cheaper).
type Collect = Option<Vec<Conflict>>;

fn read_value(
    doc: &AutoCommit,
    v: &AmValue<'_>,
    id: &ObjId,
    path: &str,
    c: &mut Collect,
) -> Result<Value> {
    Ok(match v {
        AmValue::Scalar(s) => from_scalar(s),
        AmValue::Object(ObjType::Map | ObjType::Table) => read_map(doc, id, path, c)?,
        AmValue::Object(ObjType::List) => read_list(doc, id, path, c)?,
        AmValue::Object(ObjType::Text) => Value::String(doc.text(id)?),
    })
}

fn read_map(doc: &AutoCommit, obj: &ObjId, path: &str, c: &mut Collect) -> Result<Value> {
    let mut out = Map::new();
    let root = *obj == ROOT;
    for k in doc.keys(obj) {
        let p = match (c.is_some(), root) {
            (false, _) => String::new(),
            (true, true) => k.clone(),
            (true, false) => format!("{path}.{k}"),
        };
        let Some((winner, wid)) = doc.get(obj, k.as_str())? else {
            continue;
        };
        let mut wv = read_value(doc, &winner, &wid, &p, c)?;
        let edit_time = root && EDIT_TIME_KEYS.contains(&k.as_str());
        if !edit_time && c.is_none() {
            out.insert(k, wv);
            continue;
        }
        let all = doc.get_all(obj, k.as_str())?;
        if edit_time {
            for (v, _) in &all {
                if let AmValue::Scalar(s) = v {
                    let x = from_scalar(s);
                    if x.as_i64().unwrap_or(i64::MIN) > wv.as_i64().unwrap_or(i64::MIN) {
                        wv = x;
                    }
                }
            }
        } else if all.len() > 1 {
            let mut others = Vec::new();
            for (v, id) in &all {
                if *id != wid {
                    others.push(read_value(doc, v, id, &p, &mut None)?);
                }
            }
            if let Some(list) = c.as_mut() {
                list.push(Conflict {
                    path: p,
                    winner: wv.clone(),
                    others,
                });
            }
        }
        out.insert(k, wv);
    }
    Ok(Value::Object(out))
}

fn read_list(doc: &AutoCommit, obj: &ObjId, path: &str, c: &mut Collect) -> Result<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut keyed_seen = std::collections::HashSet::new();
    for i in 0..doc.length(obj) {
        let Some((v, id)) = doc.get(obj, i)? else {
            continue;
        };
        let p = if c.is_some() {
            format!("{path}[{i}]")
        } else {
            String::new()
        };
        let item = read_value(doc, &v, &id, &p, c)?;
        match &item {
            // Lists of ids are sets: a value added on two replicas shows once.
            Value::Object(m) => {
                if let Some(key) = m.get("id").and_then(Value::as_str) {
                    if !keyed_seen.insert(key.to_string()) {
                        continue;
                    }
                }
                out.push(item);
            }
            Value::Array(_) => out.push(item),
            scalar => {
                if !out.contains(scalar) {
                    out.push(item);
                }
            }
        }
    }
    Ok(Value::Array(out))
}

fn resolve_path(doc: &AutoCommit, path: &str) -> Result<(ObjId, String)> {
    let bad = || Error::Document(format!("no field at {path}"));
    let mut obj = ROOT;
    let parts: Vec<&str> = path.split('.').collect();
    let (last, init) = parts.split_last().ok_or_else(bad)?;
    for part in init {
        let (name, index) = match part.find('[') {
            Some(i) => (
                &part[..i],
                part[i + 1..]
                    .strip_suffix(']')
                    .and_then(|s| s.parse::<usize>().ok()),
            ),
            None => (*part, None),
        };
        obj = match doc.get(&obj, name)? {
            Some((AmValue::Object(_), id)) => id,
            _ => return Err(bad()),
        };
        if let Some(i) = index {
            obj = match doc.get(&obj, i)? {
                Some((AmValue::Object(_), id)) => id,
                _ => return Err(bad()),
            };
        }
    }
    Ok((obj, last.to_string()))
}
