//! The one write path of a record: validation, the permission and workflow rules of
//! [`crate::rules`], the document update and the query rows, in one transaction.

use rusqlite::{OptionalExtension, Transaction};

use super::columns::column;
use super::documents::{insert_doc, load_doc, materialize, persist_doc};
use super::reference::TreeSnapshot;
use super::Store;
use crate::doc::RecordDoc;
use crate::model::{Actor, ChecklistTemplate, ProducerType, Record};
use crate::rules;
use crate::validate;
use crate::{Error, Result};

impl Store {
    /// Prepares new records on up to `available_parallelism` threads, in order; the first
    /// failing entry's error names it (`producers[i].field`).
    pub(super) fn prepare_batch(
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
    pub(super) fn put(
        &self,
        actor: &Actor,
        rec: Record,
        mode: PutMode,
        now: i64,
    ) -> Result<Record> {
        let tree = self.tree()?;
        // Templates and producer types are needed to validate visits; read them first.
        let (template, producer_type) = match &rec {
            Record::Visit(v) => {
                let t = self.template(&v.template_id, v.template_version)?;
                // A producer type that does not read is an error naming the row, never
                // "no type" (which would hold the visit to every checklist item, whatever
                // the producer).
                let pt = self.read(|c| {
                    Ok(
                        c.prepare_cached("SELECT id, producer_type FROM producers WHERE id = ?1")?
                            .query_row([&v.producer_id], |r| {
                                column::<ProducerType>(r, 1, "producers", 0)
                            })
                            .optional()?,
                    )
                })?;
                (Some(t), pt)
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
                super::attachments::check_refs_held(tx, &n.rec, None)?;
                return store_new(tx, n, mode);
            }
            (Some(d), _) => d,
        };
        let before = doc.read()?;
        if let (Record::Producer(b), Record::Producer(p)) = (&before, &mut rec) {
            if mode == PutMode::Update {
                rules::apply_edit_workflow(b, p, &actor.person_id, now);
            }
        }
        match &rec {
            Record::Visit(v) => validate::validate_visit(v, template, producer_type)?,
            other => validate::validate_record(other)?,
        }
        rules::check_change(tree, actor, Some(&before), &rec)?;
        super::attachments::check_refs_held(tx, &rec, Some(&before))?;
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
pub(super) struct NewRecord {
    rec: Record,
    doc: RecordDoc,
    /// Whether the document reads back exactly as `rec`.
    exact: bool,
}

/// Stores a prepared new record (refusing an id that exists) and its query rows.
pub(super) fn store_new(tx: &Transaction<'_>, mut n: NewRecord, mode: PutMode) -> Result<Record> {
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
pub(super) enum PutMode {
    Create,
    /// A create inside a batch import: stores the new change as is, uncompressed.
    Import,
    Update,
    Review,
}
