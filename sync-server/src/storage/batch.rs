//! Deciding a push batch against the stored records as one snapshot showed them. Both
//! backends decide a batch this way, and then write what was decided.

use std::collections::HashMap;

use gridsync_core::model::RecordKind;
use gridsync_core::sync::protocol::{PushOutcome, PushRecord, PushResult};

use super::{PushDecision, PushProcessor, StoredRecord};

/// Where a stored record's `grid_since` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// The sequence this write takes (a new record, or one moved into its grid).
    Own,
    /// Unchanged from the stored row.
    Stored(i64),
    /// Unchanged from an earlier write of the same record in this batch.
    Op(usize),
}

/// One write decided in a push batch.
#[derive(Debug)]
pub(crate) struct Op {
    /// Record id.
    pub id: String,
    /// Kind.
    pub kind: RecordKind,
    /// Grid after the write.
    pub grid: String,
    /// Compact merged document.
    pub doc: Vec<u8>,
    /// Heads (32 bytes each).
    pub heads: Vec<u8>,
    /// Change chunks new to the server.
    pub new_changes: Vec<u8>,
    /// Audit action.
    pub action: &'static str,
    /// The grid the record leaves (it takes a departure there).
    pub moved_from: Option<String>,
    /// Where `grid_since` comes from.
    pub since: Since,
    /// Attachments the written record refers to.
    pub attachments: Vec<gridsync_core::attachment::AttachmentRef>,
    /// The written record, read (its query rows), if the decision read it.
    pub record: Option<Box<gridsync_core::model::Record>>,
}

/// What a batch decided: one outcome per pushed record, and the writes, in batch order.
#[derive(Debug)]
pub(crate) struct Decided {
    /// Outcomes in push order.
    pub outcomes: Vec<PushResult>,
    /// Writes in push order.
    pub ops: Vec<Op>,
}

/// Decides every record in batch order against `current` (id -> stored record and its
/// `grid_since`). A record pushed twice in one batch sees its first write.
pub(crate) fn decide_batch(
    records: &[PushRecord],
    mut current: HashMap<String, (StoredRecord, Since)>,
    process: &mut PushProcessor<'_>,
) -> Decided {
    let mut outcomes = Vec::with_capacity(records.len());
    let mut ops: Vec<Op> = Vec::new();
    for p in records {
        let stored = current.get(&p.id);
        let outcome = match process(stored.map(|s| &s.0), p) {
            PushDecision::Duplicate => PushOutcome::Accepted,
            PushDecision::Reject(code, reason) => PushOutcome::Rejected { code, reason },
            // The whole batch is dropped; `apply_push` reports the cancellation.
            PushDecision::Cancelled => {
                ops.clear();
                break;
            }
            PushDecision::Store {
                kind,
                grid,
                doc,
                heads,
                new_changes,
                action,
                attachments,
                record,
            } => {
                let (moved_from, since) = match stored {
                    Some((s, _)) if s.grid != grid => (Some(s.grid.clone()), Since::Own),
                    Some((_, since)) => (None, *since),
                    None => (None, Since::Own),
                };
                let since_next = match since {
                    Since::Own => Since::Op(ops.len()),
                    other => other,
                };
                current.insert(
                    p.id.clone(),
                    (
                        StoredRecord {
                            kind,
                            grid: grid.clone(),
                            doc: doc.clone(),
                        },
                        since_next,
                    ),
                );
                ops.push(Op {
                    id: p.id.clone(),
                    kind,
                    grid,
                    doc,
                    heads,
                    new_changes,
                    action,
                    moved_from,
                    since,
                    attachments,
                    record,
                });
                PushOutcome::Accepted
            }
        };
        outcomes.push(PushResult {
            id: p.id.clone(),
            outcome,
        });
    }
    Decided { outcomes, ops }
}

/// Resolves `grid_since` of write `i` taking sequence `seq`, given those of earlier writes.
pub(crate) fn resolve_since(since: Since, seq: i64, earlier: &[i64]) -> i64 {
    match since {
        Since::Own => seq,
        Since::Stored(s) => s,
        Since::Op(j) => earlier.get(j).copied().unwrap_or(seq),
    }
}
