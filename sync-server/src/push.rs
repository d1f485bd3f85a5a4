//! Deciding a pushed record: apply the changes to the stored document, then judge what the
//! author did (their view before and after their own changes) with core's validation and
//! rules, and check the merged result. A rejected push stores nothing.

use automerge::{AutoCommit, ChangeHash};
use gridsync_core::doc::{heads_to_bytes, RecordDoc};
use gridsync_core::model::{
    default_template, ChecklistTemplate, Record, RecordKind, DEFAULT_TEMPLATE_ID,
};
use gridsync_core::rules;
use gridsync_core::sync::protocol::{PushRecord, RejectCode};
use gridsync_core::validate;
use gridsync_core::Error as CoreError;

use crate::scope::Scope;
use crate::storage::{PushDecision, Storage, StoredRecord};

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

/// Looks up what validating a visit needs: its template and its producer's type.
fn visit_context(
    storage: &dyn Storage,
    rec: &Record,
) -> (
    Option<ChecklistTemplate>,
    Option<gridsync_core::model::ProducerType>,
) {
    let Record::Visit(v) = rec else {
        return (None, None);
    };
    let template = storage
        .record(&ChecklistTemplate::record_id(
            &v.template_id,
            v.template_version,
        ))
        .ok()
        .flatten()
        .and_then(|s| RecordDoc::load(&s.doc, &[]).ok())
        .and_then(|d| d.read().ok())
        .and_then(|r| match r {
            Record::Template(t) => Some(t),
            _ => None,
        })
        .or_else(|| {
            (v.template_id == DEFAULT_TEMPLATE_ID && v.template_version == 1)
                .then(|| default_template("builtin"))
        });
    let producer_type = storage
        .record(&v.producer_id)
        .ok()
        .flatten()
        .and_then(|s| RecordDoc::load(&s.doc, &[]).ok())
        .and_then(|d| d.read().ok())
        .and_then(|r| match r {
            Record::Producer(p) => Some(p.producer_type),
            _ => None,
        });
    (template, producer_type)
}

fn validate_full(storage: &dyn Storage, rec: &Record) -> Result<(), CoreError> {
    match rec {
        Record::Visit(v) => {
            let (t, pt) = visit_context(storage, rec);
            if t.is_none() {
                return Err(validate::Invalid::new(
                    "template_version",
                    format!(
                        "template {}:{} is unknown",
                        v.template_id, v.template_version
                    ),
                )
                .into());
            }
            validate::validate_visit(v, t.as_ref(), pt)?;
            Ok(())
        }
        other => validate::validate_record(other),
    }
}

/// Checks every new change on its own: the document at its dependencies against the
/// document at the change, in the order the changes were made.
fn check_each_change(
    doc: &mut AutoCommit,
    changes: &[(ChangeHash, Vec<ChangeHash>)],
    scope: &Scope,
    read_at: impl Fn(&mut AutoCommit, &[ChangeHash]) -> Result<Record, CoreError>,
) -> Result<(), CoreError> {
    for (hash, deps) in changes {
        let mut deps = deps.clone();
        deps.sort();
        let before = if deps.is_empty() {
            None
        } else {
            Some(read_at(doc, &deps)?)
        };
        let after = read_at(doc, &[*hash])?;
        rules::check_change(scope.tree.as_ref(), &scope.actor, before.as_ref(), &after)?;
    }
    Ok(())
}

/// Decides one pushed record for a person with `scope`.
pub fn decide(
    storage: &dyn Storage,
    scope: &Scope,
    stored: Option<&StoredRecord>,
    p: &PushRecord,
) -> PushDecision {
    let Some(kind) = RecordKind::from_tag(p.kind) else {
        return reject(
            RejectCode::BadDocument,
            format!("unknown record kind tag {}", p.kind),
        );
    };
    if let Some(s) = stored {
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
        if !scope.can_read(s.kind, &s.grid) {
            return reject(RejectCode::Forbidden, "the record is outside your scope");
        }
    }
    let mut merged = match stored {
        Some(s) => match AutoCommit::load(&s.doc) {
            Ok(d) => d,
            Err(e) => {
                return reject(
                    RejectCode::BadDocument,
                    format!("stored document failed to load: {e}"),
                )
            }
        },
        None => AutoCommit::new(),
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
    // The changes new to the server and what their author had seen before making them.
    let new_changes: Vec<(ChangeHash, Vec<ChangeHash>)> = merged
        .get_changes(&old_heads)
        .into_iter()
        .map(|c| (c.hash(), c.deps().to_vec()))
        .collect();
    let new_set: std::collections::HashSet<ChangeHash> = new_changes.iter().map(|c| c.0).collect();
    let mut frontier: Vec<ChangeHash> = new_changes
        .iter()
        .flat_map(|c| c.1.iter().copied())
        .filter(|d| !new_set.contains(d))
        .collect();
    frontier.sort();
    frontier.dedup();
    if stored.is_some() && frontier.is_empty() {
        return reject(
            RejectCode::Forbidden,
            format!("record {} already exists", p.id),
        );
    }
    let new_changes_bytes = merged.save_after(&old_heads);
    let read_at = |doc: &mut AutoCommit, heads: &[ChangeHash]| -> Result<Record, CoreError> {
        let fork = if heads == doc.get_heads().as_slice() {
            doc.fork()
        } else {
            doc.fork_at(heads)?
        };
        RecordDoc::from_doc(fork)?.read()
    };
    let before = if frontier.is_empty() {
        None
    } else {
        match read_at(&mut merged, &frontier) {
            Ok(r) => Some(r),
            Err(e) => return reject(RejectCode::BadDocument, e.to_string()),
        }
    };
    let mut pushed_sorted = pushed.clone();
    pushed_sorted.sort();
    let after = match read_at(&mut merged, &pushed_sorted) {
        Ok(r) => r,
        Err(e) => return reject(RejectCode::BadDocument, e.to_string()),
    };
    if after.kind() != kind || after.id() != p.id {
        return reject(
            RejectCode::BadDocument,
            "the document's kind or id does not match the push",
        );
    }
    if let Err(e) = validate_full(storage, &after) {
        return core_reject(e);
    }
    if rules::check_change(scope.tree.as_ref(), &scope.actor, before.as_ref(), &after).is_err() {
        // Several steps taken offline (a supervisor who submits an entry and then approves
        // it) are judged one change at a time, each from what its author had seen.
        if let Err(e) = check_each_change(&mut merged, &new_changes, scope, read_at) {
            return core_reject(e);
        }
    }
    // When nothing else was merged in (a new record, or an edit on the latest version), the
    // result is the document just read and validated: skip reading it again.
    let mut merged_sorted = new_heads.clone();
    merged_sorted.sort();
    let result = if merged_sorted == pushed_sorted {
        after
    } else {
        let result = match RecordDoc::from_doc(merged.fork()).and_then(|d| d.read()) {
            Ok(r) => r,
            Err(e) => return reject(RejectCode::BadDocument, e.to_string()),
        };
        if let Err(e) = validate_full(storage, &result) {
            return core_reject(match e {
                CoreError::Invalid(i) => CoreError::Invalid(validate::Invalid::new(
                    i.field,
                    format!("after merging: {}", i.problem),
                )),
                other => other,
            });
        }
        result
    };
    if !scope.can_read(result.kind(), result.grid())
        || (result.kind() != RecordKind::Template && !scope.readable.contains(result.grid()))
    {
        return reject(
            RejectCode::Forbidden,
            format!("grid {} is outside your scope", result.grid()),
        );
    }
    PushDecision::Store {
        kind,
        grid: result.grid().to_string(),
        // Stored without column compression: saving compressed costs more CPU than the
        // rest of the push (the wire format is gzipped anyway).
        doc: merged.save_nocompress(),
        heads: heads_to_bytes(&new_heads),
        new_changes: new_changes_bytes,
        action: if stored.is_some() { "update" } else { "create" },
    }
}
