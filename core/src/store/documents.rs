//! A record's document in SQLite (a full save plus incremental chunks, with the heads it
//! was written at) and its materialized row in the query tables.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::doc::{heads_from_bytes, heads_to_bytes, RecordDoc};
use crate::model::{Record, RecordKind};
use crate::{now_ms, Error, Result};

/// Incremental chunks kept beside a document before it is compacted into one save.
const COMPACT_AFTER_CHUNKS: i64 = 16;

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
pub(super) fn insert_doc(
    tx: &Transaction<'_>,
    rec: &Record,
    d: &mut RecordDoc,
    compact: bool,
) -> Result<()> {
    let heads = heads_to_bytes(&d.heads());
    let bytes = if compact { d.save() } else { d.save_after(&[]) };
    exec(
        tx,
        "INSERT INTO records (id, kind, grid, doc, heads, local_rev, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
        params![rec.id(), rec.kind(), rec.grid(), bytes, heads, now_ms()],
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
        Record::Producer(p) => {
            let mut row = vec![
                text(&p.id),
                text(&p.grid),
                text(&p.name),
                text(&p.owner),
                text(&p.phone),
                p.producer_type.into(),
                p.status.into(),
                p.effective_review_state().into(),
                p.risk.into(),
                Value::Integer(p.updated_at_ms),
                Value::Integer(i64::from(p.confirmed_year().unwrap_or(0))),
            ];
            // dup_credit_code, dup_id_number, dup_phone, name_core.
            row.extend(super::duplicates::key_values(p));
            row.push(opt(p.merged_into.as_ref().map(|m| &m.into)));
            row
        }
        Record::Visit(v) => {
            let r = v.rectification.as_ref();
            vec![
                text(&v.id),
                text(&v.producer_id),
                text(&v.grid),
                text(&v.inspector),
                Value::Integer(v.started_at_ms),
                v.status.into(),
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
        // Acceptance decisions have no query row: a township has a handful, read from
        // `records` by grid ([`Store::acceptances`](super::Store::acceptances)).
        Record::Acceptance(_) => Vec::new(),
    }
}

/// Refreshes the query tables for a record.
pub(crate) fn materialize(tx: &Connection, rec: &Record) -> Result<()> {
    super::observe::note(rec.id(), rec.kind(), rec.grid(), false);
    let values = row_values(rec);
    let values = rusqlite::params_from_iter(values.iter());
    match rec {
        Record::Producer(_) => {
            exec(
                tx,
                "INSERT INTO producers (id, grid, name, owner, phone, producer_type, status, review_state, risk, updated_at_ms, confirmed_year,
                     dup_credit_code, dup_id_number, dup_phone, name_core, merged_into, last_visit_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         (SELECT MAX(started_at_ms) FROM visits WHERE producer_id = ?1))
                 ON CONFLICT(id) DO UPDATE SET grid = ?2, name = ?3, owner = ?4, phone = ?5,
                     producer_type = ?6, status = ?7, review_state = ?8, risk = ?9, updated_at_ms = ?10,
                     confirmed_year = ?11, dup_credit_code = ?12, dup_id_number = ?13, dup_phone = ?14,
                     name_core = ?15, merged_into = ?16",
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
            super::attachments::refresh_refs(tx, rec)?;
        }
        Record::Template(_) => {
            exec(
                tx,
                "INSERT INTO templates (id, template_id, version, grid) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET template_id = ?2, version = ?3, grid = ?4",
                values,
            )?;
        }
        Record::Acceptance(_) => {}
    }
    Ok(())
}

/// Notes for the listeners that a record is about to leave the device.
fn note_removed(c: &Connection, id: &str) -> Result<()> {
    // A row whose kind does not read (being set aside for it) was never told as a record.
    let row: Option<(Option<RecordKind>, String)> = c
        .prepare_cached("SELECT kind, grid FROM records WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0).ok(), r.get(1)?)))
        .optional()?;
    if let Some((Some(kind), grid)) = row {
        super::observe::note(id, kind, &grid, true);
    }
    Ok(())
}

/// Removes a record and its query rows.
pub(crate) fn delete_record(tx: &Transaction<'_>, id: &str, kind: RecordKind) -> Result<()> {
    note_removed(tx, id)?;
    tx.execute("DELETE FROM record_chunks WHERE id = ?1", [id])?;
    tx.execute("DELETE FROM records WHERE id = ?1", [id])?;
    super::attachments::drop_refs(tx, id)?;
    match kind {
        RecordKind::Producer => tx.execute("DELETE FROM producers WHERE id = ?1", [id])?,
        RecordKind::Visit => tx.execute("DELETE FROM visits WHERE id = ?1", [id])?,
        RecordKind::Template => tx.execute("DELETE FROM templates WHERE id = ?1", [id])?,
        RecordKind::Acceptance => 0,
    };
    Ok(())
}

/// Marks a record corrupt (set aside: kept, but no longer loaded) and removes its query rows.
pub(super) fn mark_corrupt(c: &Connection, id: &str, detail: &str) -> Result<()> {
    note_removed(c, id)?;
    exec(
        c,
        "UPDATE records SET corrupt = ?2 WHERE id = ?1",
        params![id, detail],
    )?;
    exec(c, "DELETE FROM producers WHERE id = ?1", [id])?;
    exec(c, "DELETE FROM visits WHERE id = ?1", [id])?;
    exec(c, "DELETE FROM templates WHERE id = ?1", [id])?;
    Ok(())
}
