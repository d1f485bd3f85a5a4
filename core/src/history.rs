//! Field-level history of a record document: who changed which field, from what to what,
//! when and with which device.
//!
//! [`field_history`] walks the document's changes in causal order and, for each change,
//! compares the record as JSON at the change's dependencies (what its author saw) with the
//! record at the change itself (what the author made of it). The difference is reported
//! per field path:
//!
//! - maps are flattened into dotted paths (`owner`, `review.state`, `answers.drug_use.note`);
//! - a tagged value (a map holding exactly `type` and `value`, such as an answer's value)
//!   is one field (`answers.drug_use.value`);
//! - entries of lists of objects with an `id` are matched by it (`findings[<id>].severity`);
//!   an entry added or removed as a whole is one field (`review.history[<id>]`);
//! - any other list (of scalars) is one field.
//!
//! Concurrent changes are each compared with what their own author saw, so two people who
//! edited the same field at once both appear, each with the value they replaced. The walk
//! is bounded: only the last `max_changes` changes are compared, and every reading is
//! bounded by the document reading limits of [`crate::doc`].

use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, Value as AmValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::doc::{MAX_DEPTH, MAX_TEXT_CHARS, MAX_VALUES};
use crate::{Error, Result};

/// Keys of the document envelope, not part of the record.
const ENVELOPE_KEYS: &[&str] = &["_schema", "_kind"];

/// One field changed by one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The change's hash (hex).
    pub hash: String,
    /// Who made it: the person id carried as the commit message.
    pub person: String,
    /// The Automerge actor that signed it (hex): a device's actor is
    /// [`crate::device_actor`] of its id.
    pub actor: String,
    /// When, milliseconds since the Unix epoch (the change's timestamp).
    pub at_ms: i64,
    /// Field path (`owner`, `review.state`, `answers.drug_use.value`, `findings[<id>]`).
    pub field: String,
    /// The value before the change (`None`: the field did not exist).
    pub before: Option<Value>,
    /// The value after the change (`None`: the field was removed).
    pub after: Option<Value>,
}

/// What [`field_history`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldHistory {
    /// Field changes, in the causal order of their changes (fields of one change sorted by
    /// path).
    pub entries: Vec<FieldChange>,
    /// Changes the document holds.
    pub total_changes: usize,
    /// Changes compared: the last `max_changes` of them.
    pub compared_changes: usize,
}

impl FieldHistory {
    /// Whether earlier changes were left out.
    pub fn truncated(&self) -> bool {
        self.compared_changes < self.total_changes
    }
}

/// A change's metadata, copied out of the document.
struct ChangeMeta {
    hash: ChangeHash,
    deps: Vec<ChangeHash>,
    person: String,
    actor: String,
    at_ms: i64,
}

/// The field-level history of the last `max_changes` changes of `doc`, oldest first.
pub fn field_history(doc: &mut AutoCommit, max_changes: usize) -> Result<FieldHistory> {
    let metas: Vec<ChangeMeta> = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| ChangeMeta {
            hash: c.hash(),
            deps: c.deps().to_vec(),
            person: crate::doc::change_author(c.message()),
            actor: c.actor_id().to_hex_string(),
            at_ms: c.timestamp(),
        })
        .collect();
    let total_changes = metas.len();
    let skip = total_changes.saturating_sub(max_changes);
    let doc: &AutoCommit = doc;
    let mut entries = Vec::new();
    // The state after the previous change: in a linear history it is the next one's
    // state before.
    let mut last: Option<(Vec<ChangeHash>, Value)> = None;
    for m in &metas[skip..] {
        let before = match last.take() {
            Some((heads, v)) if heads == m.deps => v,
            _ => snapshot(doc, &m.deps)?,
        };
        let at = vec![m.hash];
        let after = snapshot(doc, &at)?;
        let mut fields = Vec::new();
        diff("", Some(&before), Some(&after), &mut fields);
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        entries.extend(fields.into_iter().map(|(field, b, a)| FieldChange {
            hash: hex::encode(m.hash.0),
            person: m.person.clone(),
            actor: m.actor.clone(),
            at_ms: m.at_ms,
            field,
            before: b,
            after: a,
        }));
        last = Some((at, after));
    }
    Ok(FieldHistory {
        entries,
        total_changes,
        compared_changes: total_changes - skip,
    })
}

/// The record as JSON at `heads` (Automerge's winner where values conflict), without the
/// envelope keys; an empty map before the first change.
fn snapshot(doc: &AutoCommit, heads: &[ChangeHash]) -> Result<Value> {
    let mut r = AtReader {
        doc,
        heads,
        budget: MAX_VALUES,
    };
    let mut v = r.map(&automerge::ROOT, 1)?;
    if let Value::Object(m) = &mut v {
        for k in ENVELOPE_KEYS {
            m.remove(*k);
        }
    }
    Ok(v)
}

/// Reads a document as it was at some heads, within the reading limits.
struct AtReader<'d> {
    doc: &'d AutoCommit,
    heads: &'d [ChangeHash],
    budget: usize,
}

impl AtReader<'_> {
    fn spend(&mut self) -> Result<()> {
        if self.budget == 0 {
            return Err(Error::Document(format!(
                "the record holds more than {MAX_VALUES} values"
            )));
        }
        self.budget -= 1;
        Ok(())
    }

    fn value(&mut self, v: AmValue<'_>, id: &ObjId, depth: usize) -> Result<Value> {
        self.spend()?;
        match v {
            AmValue::Scalar(s) => Ok(scalar_json(&s)),
            AmValue::Object(t) => {
                if depth + 1 > MAX_DEPTH {
                    return Err(Error::Document(format!(
                        "the record nests deeper than {MAX_DEPTH} levels"
                    )));
                }
                match t {
                    ObjType::Map | ObjType::Table => self.map(id, depth + 1),
                    ObjType::List => self.list(id, depth + 1),
                    ObjType::Text => {
                        let text = self.doc.text_at(id, self.heads)?;
                        Ok(Value::String(text.chars().take(MAX_TEXT_CHARS).collect()))
                    }
                }
            }
        }
    }

    fn map(&mut self, obj: &ObjId, depth: usize) -> Result<Value> {
        let items: Vec<(String, AmValue<'_>, ObjId)> = self
            .doc
            .map_range_at(obj, .., self.heads)
            .map(|i| (i.key.to_string(), i.value, i.id))
            .collect();
        let mut out = Map::new();
        for (k, v, id) in items {
            let j = self.value(v, &id, depth)?;
            out.insert(k, j);
        }
        Ok(Value::Object(out))
    }

    fn list(&mut self, obj: &ObjId, depth: usize) -> Result<Value> {
        let items: Vec<(AmValue<'_>, ObjId)> = self
            .doc
            .list_range_at(obj, .., self.heads)
            .map(|i| (i.value, i.id))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for (v, id) in items {
            out.push(self.value(v, &id, depth)?);
        }
        Ok(Value::Array(out))
    }
}

fn scalar_json(s: &ScalarValue) -> Value {
    match s {
        ScalarValue::Null | ScalarValue::Bytes(_) | ScalarValue::Unknown { .. } => Value::Null,
        ScalarValue::Boolean(b) => Value::Bool(*b),
        ScalarValue::Int(i) => Value::from(*i),
        ScalarValue::Uint(u) => Value::from(*u),
        ScalarValue::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        ScalarValue::Str(s) => Value::String(s.to_string()),
        ScalarValue::Timestamp(t) => Value::from(*t),
        ScalarValue::Counter(c) => Value::from(i64::from(c)),
    }
}

/// A map shown as one field: a tagged value (`{"type": .., "value": ..}`).
fn is_leaf_map(m: &Map<String, Value>) -> bool {
    m.len() == 2 && m.contains_key("type") && m.contains_key("value")
}

/// The id of a list entry matched by id.
fn entry_id(v: &Value) -> Option<&str> {
    v.as_object()?.get("id")?.as_str()
}

/// Whether a list's entries are all objects with a string `id` (matched by it).
fn keyed(list: &[Value]) -> bool {
    list.iter().all(|v| entry_id(v).is_some())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

type Diff = (String, Option<Value>, Option<Value>);

/// Appends the fields that differ between `before` and `after` at `path`.
fn diff(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Diff>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a)))
            if !(is_leaf_map(b) && is_leaf_map(a)) || path.is_empty() =>
        {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff(&join(path, k), b.get(k), a.get(k), out);
            }
        }
        // A map that appears or goes: each of its fields (not a tagged value, not the
        // whole record's root).
        (Some(Value::Object(m)), None | Some(Value::Null))
            if !is_leaf_map(m) && !path.is_empty() && !m.is_empty() =>
        {
            for (k, v) in m {
                diff(&join(path, k), Some(v), None, out);
            }
        }
        (None | Some(Value::Null), Some(Value::Object(m)))
            if !is_leaf_map(m) && !path.is_empty() && !m.is_empty() =>
        {
            for (k, v) in m {
                diff(&join(path, k), None, Some(v), out);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a)))
            if (keyed(b) && keyed(a)) && !(b.is_empty() && a.is_empty()) =>
        {
            // Entries by id, in the order they appear (before's, then new ones).
            let mut ids: Vec<&str> = b.iter().chain(a.iter()).filter_map(entry_id).collect();
            let mut seen = std::collections::HashSet::new();
            ids.retain(|id| seen.insert(*id));
            for id in ids {
                let bv = b.iter().find(|v| entry_id(v) == Some(id));
                let av = a.iter().find(|v| entry_id(v) == Some(id));
                let p = format!("{path}[{id}]");
                match (bv, av) {
                    (Some(_), Some(_)) => diff(&p, bv, av, out),
                    _ => {
                        if bv != av {
                            out.push((p, bv.cloned(), av.cloned()));
                        }
                    }
                }
            }
        }
        _ => out.push((path.to_string(), before.cloned(), after.cloned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RecordDoc;
    use crate::model::{
        DirectoryReview, Producer, ProducerType, Record, ReviewAction, ReviewEvent, ReviewState,
    };

    fn producer() -> Producer {
        let mut p = Producer::new(
            "乌兰家庭牧场",
            ProducerType::FamilyRanch,
            "乌兰",
            "13812345678",
            "T1-V1",
            "liai",
            1_000,
        );
        p.id = "P1".into();
        p
    }

    fn field<'a>(h: &'a FieldHistory, field: &str) -> Vec<&'a FieldChange> {
        h.entries.iter().filter(|e| e.field == field).collect()
    }

    #[test]
    fn two_edits_by_two_actors() {
        let a = crate::device_actor("dev-a");
        let b = crate::device_actor("dev-b");
        let mut p = producer();
        let mut doc = RecordDoc::create(&Record::Producer(p.clone()), &a, "liai", 1_000).unwrap();
        p.phone = "13900000000".into();
        p.updated_at_ms = 2_000;
        doc.update(&Record::Producer(p.clone()), "liai", 2_000)
            .unwrap();
        doc.set_actor(&b);
        p.owner = "乌兰其其格".into();
        p.review = DirectoryReview {
            state: ReviewState::Submitted,
            approved_fingerprint: None,
            return_reason: None,
            history: vec![ReviewEvent {
                id: "e1".into(),
                action: ReviewAction::Submit,
                by: "sup1".into(),
                at_ms: 3_000,
                state_after: ReviewState::Submitted,
            }],
        };
        p.updated_at_ms = 3_000;
        doc.update(&Record::Producer(p), "sup1", 3_000).unwrap();

        let h = field_history(doc.inner(), 100).unwrap();
        assert_eq!((h.total_changes, h.compared_changes), (3, 3));
        assert!(!h.truncated());
        // The creation: every field appears from nothing, the envelope does not.
        let created: Vec<&FieldChange> = h.entries.iter().filter(|e| e.at_ms == 1_000).collect();
        assert!(created
            .iter()
            .all(|e| e.before.is_none() && e.person == "liai"));
        assert!(created.iter().any(|e| e.field == "name"));
        assert!(created.iter().any(|e| e.field == "review.state"));
        assert!(!h
            .entries
            .iter()
            .any(|e| ENVELOPE_KEYS.contains(&e.field.as_str())));

        let phone = field(&h, "phone");
        assert_eq!(phone.len(), 2);
        let edit = phone[1];
        assert_eq!(edit.before, Some(Value::from("13812345678")));
        assert_eq!(edit.after, Some(Value::from("13900000000")));
        assert_eq!((edit.person.as_str(), edit.at_ms), ("liai", 2_000));
        assert_eq!(edit.actor, a.to_hex_string());

        let owner = field(&h, "owner");
        let edit = owner.last().unwrap();
        assert_eq!(edit.before, Some(Value::from("乌兰")));
        assert_eq!(edit.after, Some(Value::from("乌兰其其格")));
        assert_eq!(edit.person, "sup1");
        assert_eq!(edit.actor, b.to_hex_string());
        let state = field(&h, "review.state");
        assert_eq!(state.last().unwrap().after, Some(Value::from("submitted")));
        // A review step added whole is one field, matched by its id.
        let step = field(&h, "review.history[e1]");
        assert_eq!(step.len(), 1);
        assert_eq!(step[0].before, None);
        assert_eq!(step[0].after.as_ref().unwrap()["by"], Value::from("sup1"));
        // The second edit did not touch the phone.
        assert!(!h
            .entries
            .iter()
            .any(|e| e.at_ms == 3_000 && e.field == "phone"));

        // Bounded: only the last change.
        let h = field_history(doc.inner(), 1).unwrap();
        assert!(h.truncated());
        assert_eq!((h.total_changes, h.compared_changes), (3, 1));
        assert!(h.entries.iter().all(|e| e.person == "sup1"));
        assert_eq!(field(&h, "owner").len(), 1);
    }

    #[test]
    fn concurrent_edits_each_against_what_their_author_saw() {
        let a = crate::device_actor("dev-a");
        let b = crate::device_actor("dev-b");
        let p = producer();
        let mut doc = RecordDoc::create(&Record::Producer(p.clone()), &a, "liai", 1_000).unwrap();
        let mut other = doc.fork();
        other.set_actor(&b);

        let mut pa = p.clone();
        pa.phone = "13911111111".into();
        pa.updated_at_ms = 2_000;
        doc.update(&Record::Producer(pa), "liai", 2_000).unwrap();
        let mut pb = p;
        pb.phone = "13922222222".into();
        pb.name = "乌兰牧场".into();
        pb.updated_at_ms = 2_500;
        other.update(&Record::Producer(pb), "sup1", 2_500).unwrap();
        let theirs = other.save();
        doc.apply(&theirs).unwrap();
        assert_eq!(doc.heads().len(), 2);

        let h = field_history(doc.inner(), 100).unwrap();
        assert_eq!(h.total_changes, 3);
        let phone: Vec<&FieldChange> = field(&h, "phone")
            .into_iter()
            .filter(|e| e.before.is_some())
            .collect();
        assert_eq!(phone.len(), 2, "{phone:?}");
        for e in &phone {
            // Both replaced the value they saw, not each other's.
            assert_eq!(e.before, Some(Value::from("13812345678")));
        }
        let by: std::collections::BTreeMap<&str, &Value> = phone
            .iter()
            .map(|e| (e.person.as_str(), e.after.as_ref().unwrap()))
            .collect();
        assert_eq!(by["liai"], &Value::from("13911111111"));
        assert_eq!(by["sup1"], &Value::from("13922222222"));
        // Only sup1's change renamed it.
        let name: Vec<&FieldChange> = field(&h, "name")
            .into_iter()
            .filter(|e| e.before.is_some())
            .collect();
        assert_eq!(name.len(), 1);
        assert_eq!(name[0].person, "sup1");
    }

    #[test]
    fn paths_flatten_maps_and_keep_tagged_values_whole() {
        let mut out = Vec::new();
        let before = serde_json::json!({
            "answers": {"drug_use": {"value": {"type": "yes_no", "value": "yes"}, "note": null}},
            "products": ["羊"],
            "findings": [{"id": "f1", "severity": "minor"}]
        });
        let after = serde_json::json!({
            "answers": {
                "drug_use": {"value": {"type": "yes_no", "value": "no"}, "note": "见记录"},
                "other": {"value": {"type": "text", "value": "无"}, "note": null}
            },
            "products": ["羊", "牛"],
            "findings": [{"id": "f1", "severity": "major"}, {"id": "f2", "severity": "minor"}]
        });
        diff("", Some(&before), Some(&after), &mut out);
        let fields: Vec<&str> = out.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(
            fields,
            [
                "answers.drug_use.note",
                "answers.drug_use.value",
                "answers.other.note",
                "answers.other.value",
                "findings[f1].severity",
                "findings[f2]",
                "products",
            ]
        );
        assert_eq!(
            out[1].2,
            Some(serde_json::json!({"type": "yes_no", "value": "no"}))
        );
    }
}
