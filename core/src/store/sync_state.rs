//! Sync bookkeeping in the same database as the data: what to push, the cursors, applying
//! pulled pages, rejected edits, and edits kept after a grid left the device.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::columns::column;
use super::documents::{delete_record, load_doc, materialize, persist_doc};
use super::{meta, ChangeOrigin, Store};
use crate::doc::{heads_from_bytes, heads_to_bytes, load_received, RecordDoc};
use crate::model::{Record, RecordKind};
use crate::sync::bare::{self, PageDigest};
use crate::sync::protocol::{Cursor, PushOutcome, PushResult, Reference, RejectCode, SyncResponse};
use crate::{now_ms, Error, Result};

/// The device's link to its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLink {
    /// Base URL of the server.
    pub url: String,
    /// Device id given at enrolment.
    pub device_id: String,
    /// Current device secret.
    pub secret: String,
    /// A rotated secret not yet confirmed by use.
    pub pending_secret: Option<String>,
    /// Server epoch last seen.
    pub epoch: String,
    /// Version of the reference data held.
    pub reference_version: String,
}

/// Local changes of one record waiting to be pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPush {
    /// Record id.
    pub id: String,
    /// Kind.
    pub kind: RecordKind,
    /// Local revision the push covers.
    pub rev: i64,
    /// Change chunks since the heads the server acknowledged.
    pub changes: Vec<u8>,
    /// Heads after these changes.
    pub heads: Vec<automerge::ChangeHash>,
}

/// A record received in a pull page (alias of the wire type).
pub type PulledRecord = crate::sync::protocol::PullRecord;

/// An edit kept after its grid left the device (reassignment or revocation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptEdit {
    /// Record id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Grid it belonged to.
    pub grid: String,
    /// The record as JSON, for export.
    pub record_json: String,
    /// Why it was kept.
    pub reason: String,
    /// When, milliseconds since the Unix epoch.
    pub kept_at_ms: i64,
}

/// A local edit the server refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEdit {
    /// Record id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Machine-readable code.
    pub code: String,
    /// Reason given by the server.
    pub reason: String,
}

/// What applying a page did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageOutcome {
    /// Records created or updated.
    pub applied: usize,
    /// Records that need their whole document (gap in history).
    pub need_full: Vec<String>,
    /// Records removed because their grid left the device.
    pub removed: usize,
    /// Of those, records with unsynced edits kept for export.
    pub kept: usize,
    /// The heads derived from the page's bare documents did not match the server's
    /// digest: nothing of the page was applied (ask again for documents with hashes).
    pub digest_mismatch: bool,
}

/// Records of a page rebuilt ahead of the transaction at a time.
const PREPARE_WINDOW: usize = 256;

const DIGEST_MISMATCH: &str =
    "the heads rebuilt from the page's bare documents differ from the server's";

pub(crate) const LINK_KEY: &str = "server_link";

impl Store {
    /// The server link, if enrolled.
    pub fn server_link(&self) -> Result<Option<ServerLink>> {
        self.read(|c| match meta::get(c, LINK_KEY)? {
            Some(s) => {
                Ok(Some(serde_json::from_str(&s).map_err(|e| {
                    Error::Document(format!("server link: {e}"))
                })?))
            }
            None => Ok(None),
        })
    }

    /// Saves the server link. From then on the store signs its changes with the
    /// device's actor ([`crate::device_actor`]), the only one the server accepts from it.
    pub fn set_server_link(&self, link: &ServerLink) -> Result<()> {
        let s = serde_json::to_string(link).map_err(|e| Error::Document(e.to_string()))?;
        let actor = crate::device_actor(&link.device_id);
        self.write(|tx| {
            meta::set(tx, LINK_KEY, &s)?;
            meta::set(tx, "actor", &hex::encode(actor.to_bytes()))
        })?;
        *self.actor.lock().unwrap_or_else(|p| p.into_inner()) = actor;
        Ok(())
    }

    /// The device's cursors.
    pub fn cursors(&self) -> Result<Vec<Cursor>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT grid, seq, token FROM sync_cursors ORDER BY grid")?;
            let rows = st.query_map([], |r| {
                Ok(Cursor {
                    grid: r.get(0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    token: r.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Up to `limit` records with local changes to push (rejected ones wait for a new edit),
    /// skipping ids in `skip` (already pushed in this sync run).
    pub fn pending_pushes(&self, limit: usize, skip: &HashSet<String>) -> Result<Vec<PendingPush>> {
        let rows: Vec<(String, RecordKind, i64, Vec<u8>)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, kind, local_rev, server_heads FROM records
                 WHERE local_rev > acked_rev AND corrupt IS NULL
                   AND (rejected_rev IS NULL OR local_rev > rejected_rev)
                 ORDER BY CASE kind WHEN 'template' THEN 0 WHEN 'producer' THEN 1 ELSE 2 END, updated_at_ms, id",
            )?;
            let rows = st.query_map([], |r| {
                Ok((r.get(0)?, column(r, 1, "records", 0)?, r.get(2)?, r.get(3)?))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let r = r?;
                if !skip.contains(&r.0) {
                    out.push(r);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, kind, rev, server_heads) in rows {
            let mut doc = match self.read(|c| load_doc(c, &id)) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(Error::Corrupt { id, detail }) => {
                    self.set_aside(&id, &detail)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let server_heads = heads_from_bytes(&server_heads)?;
            let server_heads = if doc.has_heads(&server_heads) {
                server_heads
            } else {
                Vec::new()
            };
            out.push(PendingPush {
                kind,
                changes: doc.save_after(&server_heads),
                heads: doc.heads(),
                id,
                rev,
            });
        }
        Ok(out)
    }

    /// Ids of records set aside as corrupt, to ask the server for in full (`want_full`) so
    /// that its copy replaces them and their recoverable local changes go on top
    /// (`PageOutcome`); at most one page's worth. Records with local changes are loaded
    /// first, so that one damaged since it was last read is set aside and healed in this
    /// same sync rather than the next.
    pub fn corrupt_to_heal(&self) -> Result<Vec<String>> {
        let dirty: Vec<String> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM records WHERE local_rev > acked_rev AND corrupt IS NULL",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })?;
        for id in dirty {
            if let Err(Error::Corrupt { id, detail }) = self.read(|c| load_doc(c, &id)) {
                self.set_aside(&id, &detail)?;
            }
        }
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id FROM records WHERE corrupt IS NOT NULL ORDER BY updated_at_ms, id LIMIT ?1",
            )?;
            let rows = st.query_map([crate::sync::protocol::MAX_PAGE_RECORDS], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Records the server's answers for a push. Returns (accepted, rejected).
    pub fn apply_push_results(
        &self,
        pushed: &[PendingPush],
        results: &[PushResult],
    ) -> Result<(usize, usize)> {
        self.write(|tx| {
            let (mut ok, mut bad) = (0, 0);
            for r in results {
                let Some(p) = pushed.iter().find(|p| p.id == r.id) else { continue };
                match &r.outcome {
                    PushOutcome::Accepted => {
                        ok += 1;
                        tx.execute(
                            "UPDATE records SET acked_rev = MAX(acked_rev, ?2), server_heads = ?3,
                                 rejected_rev = NULL, rejected_code = NULL, rejected_reason = NULL
                             WHERE id = ?1",
                            params![p.id, p.rev, heads_to_bytes(&p.heads)],
                        )?;
                    }
                    PushOutcome::Rejected { code, reason } => {
                        bad += 1;
                        if *code == crate::sync::protocol::RejectCode::MissingDeps {
                            // The server lacks earlier changes: send everything next time.
                            tx.execute("UPDATE records SET server_heads = x'' WHERE id = ?1", [&p.id])?;
                            continue;
                        }
                        tx.execute(
                            "UPDATE records SET rejected_rev = ?2, rejected_code = ?3, rejected_reason = ?4 WHERE id = ?1",
                            params![p.id, p.rev, code, reason],
                        )?;
                    }
                }
            }
            Ok((ok, bad))
        })
    }

    /// Applies one pull page and its cursors in one transaction. Bare documents are
    /// rebuilt first, before the write transaction is taken, and their heads checked
    /// against the page's digest: on a mismatch nothing is applied and the outcome says so.
    pub fn apply_page(&self, resp: &SyncResponse) -> Result<PageOutcome> {
        // Rebuilding bare documents and reading them is most of a bootstrap's work and
        // needs no database: it runs before the write transaction (so that local edits
        // wait only for the writing), on several cores, a window of records at a time.
        let mut digest = PageDigest::new();
        let mut any_bare = false;
        let mut rebuilt: Vec<Option<Rebuilt>> = Vec::with_capacity(resp.records.len());
        for window in resp.records.chunks(PREPARE_WINDOW) {
            let mut prepared = prepare_bare(window).into_iter();
            for rec in window {
                // Every bare record counts in the digest, also one this device skips.
                if rec.full && rec.heads.is_empty() {
                    any_bare = true;
                    let p = prepared.next().flatten();
                    digest.add(&rec.id, p.as_ref().map_or(&[][..], |p| &p.heads));
                    rebuilt.push(p);
                } else {
                    rebuilt.push(None);
                }
            }
        }
        if any_bare && resp.docs_digest != Some(digest.finish()) {
            tracing::warn!("{DIGEST_MISMATCH}; the page was not applied");
            return Ok(PageOutcome {
                digest_mismatch: true,
                ..PageOutcome::default()
            });
        }
        let out = self.write_from(ChangeOrigin::Sync, |tx| {
            let mut out = PageOutcome::default();
            if let Some(reference) = &resp.reference {
                apply_reference(tx, reference, &mut out)?;
            }
            let (readable, templates) = scope_sets(tx)?;
            for (rec, rebuilt) in resp.records.iter().zip(rebuilt) {
                let Some(kind) = RecordKind::from_tag(rec.kind) else {
                    continue;
                };
                let allowed = readable.contains(&rec.grid)
                    || (kind.read_from_below() && templates.contains(&rec.grid));
                if !allowed {
                    continue;
                }
                if apply_record(tx, rec, kind, rebuilt, &mut out)? {
                    out.applied += 1;
                } else {
                    out.need_full.push(rec.id.clone());
                }
            }
            for d in &resp.departures {
                if !readable.contains(&d.new_grid) {
                    let row: Option<RecordKind> = tx
                        .query_row(
                            "SELECT id, kind FROM records WHERE id = ?1 AND grid = ?2",
                            params![d.id, d.grid],
                            |r| column(r, 1, "records", 0),
                        )
                        .optional()?;
                    if let Some(kind) = row {
                        remove_or_keep(
                            tx,
                            &d.id,
                            kind,
                            "moved to a grid outside this device's scope",
                            &mut out,
                        )?;
                    }
                }
            }
            for c in &resp.cursors {
                tx.execute(
                    "UPDATE sync_cursors SET seq = ?2, token = ?3 WHERE grid = ?1 AND seq < ?2",
                    params![c.grid, c.seq as i64, c.token as i64],
                )?;
            }
            Ok(out)
        })?;
        if resp.reference.is_some() {
            *self.tree.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        Ok(out)
    }

    /// After the server's history changed (restored from backup): start every feed over
    /// and mark every record to be pushed again; the server ignores what it already has.
    pub fn reset_for_new_epoch(&self) -> Result<()> {
        self.write(|tx| {
            tx.execute("UPDATE sync_cursors SET seq = 0, token = 0", [])?;
            tx.execute(
                "UPDATE records SET server_heads = x'', acked_rev = 0, local_rev = MAX(local_rev, 1)",
                [],
            )?;
            Ok(())
        })
    }

    /// Edits the server refused, with its reasons.
    pub fn rejected_edits(&self) -> Result<Vec<RejectedEdit>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, kind, rejected_code, COALESCE(rejected_reason, '') FROM records
                 WHERE rejected_rev IS NOT NULL ORDER BY id",
            )?;
            let rows = st.query_map([], |r| {
                let kind: RecordKind = column(r, 1, "records", 0)?;
                let code: Option<RejectCode> = column(r, 2, "records", 0)?;
                Ok(RejectedEdit {
                    id: r.get(0)?,
                    kind: kind.as_str().into(),
                    code: code.map_or("", RejectCode::as_str).into(),
                    reason: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Drops a rejected edit: the record goes back to what the server last acknowledged
    /// (a record the server never accepted is removed).
    pub fn discard_rejected(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            let row: Option<(RecordKind, Vec<u8>, Option<i64>)> = tx
                .query_row("SELECT id, kind, server_heads, rejected_rev FROM records WHERE id = ?1", [id], |r| {
                    Ok((column(r, 1, "records", 0)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((kind, server_heads, Some(_))) = row else {
                return Err(Error::NotFound { kind: "rejected edit", id: id.into() });
            };
            let server_heads = heads_from_bytes(&server_heads)?;
            if server_heads.is_empty() {
                return delete_record(tx, id, kind);
            }
            let mut doc = load_doc(tx, id)?.ok_or_else(|| Error::NotFound { kind: "record", id: id.into() })?;
            let mut reverted = doc.fork_at(&server_heads)?;
            tx.execute("DELETE FROM record_chunks WHERE id = ?1", [id])?;
            tx.execute(
                "UPDATE records SET doc = ?2, chunk_count = 0, heads = ?3, local_rev = acked_rev,
                     rejected_rev = NULL, rejected_code = NULL, rejected_reason = NULL WHERE id = ?1",
                params![id, reverted.save(), heads_to_bytes(&server_heads)],
            )?;
            materialize(tx, &reverted.read()?)?;
            Ok(())
        })
    }

    /// Edits kept after their grid left the device.
    pub fn kept_edits(&self) -> Result<Vec<KeptEdit>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT id, kind, grid, doc, reason, kept_at_ms FROM kept_edits ORDER BY kept_at_ms, id")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    column::<RecordKind>(r, 1, "kept_edits", 0)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, kind, grid, bytes, reason, kept_at_ms) = row?;
                let record_json = RecordDoc::load(&bytes, &[])
                    .and_then(|d| d.read())
                    .map(|r| r.to_json().to_string())
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                out.push(KeptEdit { id, kind: kind.as_str().into(), grid, record_json, reason, kept_at_ms });
            }
            Ok(out)
        })
    }

    /// Forgets a kept edit once the person has exported or dealt with it.
    pub fn dismiss_kept_edit(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            if tx.execute("DELETE FROM kept_edits WHERE id = ?1", [id])? == 0 {
                return Err(Error::NotFound {
                    kind: "kept edit",
                    id: id.into(),
                });
            }
            Ok(())
        })
    }

    /// Removes everything that came from the server, keeping unsynced edits for export
    /// (the device was revoked). Returns how many edits were kept.
    pub fn wipe_after_revocation(&self, reason: &str) -> Result<usize> {
        self.write_from(ChangeOrigin::Sync, |tx| {
            let mut out = PageOutcome::default();
            let ids: Vec<(String, RecordKind)> = {
                let mut st = tx.prepare("SELECT id, kind FROM records")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, column(r, 1, "records", 0)?)))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            for (id, kind) in ids {
                remove_or_keep(tx, &id, kind, reason, &mut out)?;
            }
            tx.execute("DELETE FROM sync_cursors", [])?;
            tx.execute("DELETE FROM people", [])?;
            tx.execute("DELETE FROM meta WHERE key IN ('server_link', 'scope')", [])?;
            Ok(out.kept)
        })
    }
}

fn scope_sets(tx: &Transaction<'_>) -> Result<(HashSet<String>, HashSet<String>)> {
    let scope: Option<String> = meta::get(tx, "scope")?;
    let (readable, templates): (Vec<String>, Vec<String>) = match scope {
        Some(s) => serde_json::from_str(&s).map_err(|e| Error::Document(format!("scope: {e}")))?,
        None => (Vec::new(), Vec::new()),
    };
    Ok((
        readable.into_iter().collect(),
        templates.into_iter().collect(),
    ))
}

fn apply_reference(tx: &Transaction<'_>, r: &Reference, out: &mut PageOutcome) -> Result<()> {
    for g in &r.grids {
        tx.execute(
            "INSERT INTO grids (code, name, level, kind, parent) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(code) DO UPDATE SET name = ?2, level = ?3, kind = ?4, parent = ?5",
            params![g.code, g.name, g.level, g.kind, g.parent],
        )?;
    }
    let keep: HashSet<&str> = r.grids.iter().map(|g| g.code.as_str()).collect();
    let all: Vec<String> = {
        let mut st = tx.prepare("SELECT code FROM grids")?;
        let rows = st.query_map([], |row| row.get(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    for code in all {
        if !keep.contains(code.as_str()) {
            tx.execute("DELETE FROM grids WHERE code = ?1", [&code])?;
        }
    }
    super::observe::note_tree(super::TreeSnapshot::from_nodes(&r.grids));
    tx.execute("DELETE FROM people", [])?;
    for p in &r.people {
        tx.execute(
            "INSERT OR REPLACE INTO people (id, name, phone, role, grids) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![p.id, p.name, p.phone, p.role, serde_json::to_string(&p.grids).unwrap_or_default()],
        )?;
    }
    let me = serde_json::to_string(&r.me).map_err(|e| Error::Document(e.to_string()))?;
    meta::set(tx, "profile", &me)?;
    let scope = serde_json::to_string(&(&r.readable, &r.template_grids))
        .map_err(|e| Error::Document(e.to_string()))?;
    meta::set(tx, "scope", &scope)?;
    // Cursors: new grids start at zero, lost grids go away with their records.
    let feeds: HashSet<&str> = r
        .readable
        .iter()
        .chain(&r.template_grids)
        .map(String::as_str)
        .collect();
    for g in &feeds {
        tx.execute(
            "INSERT OR IGNORE INTO sync_cursors (grid, seq) VALUES (?1, 0)",
            [g],
        )?;
    }
    let cursors: Vec<String> = {
        let mut st = tx.prepare("SELECT grid FROM sync_cursors")?;
        let rows = st.query_map([], |row| row.get(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    for g in cursors {
        if !feeds.contains(g.as_str()) {
            tx.execute("DELETE FROM sync_cursors WHERE grid = ?1", [&g])?;
        }
    }
    let readable: HashSet<&str> = r.readable.iter().map(String::as_str).collect();
    let templates: HashSet<&str> = r.template_grids.iter().map(String::as_str).collect();
    let records: Vec<(String, RecordKind, String)> = {
        let mut st = tx.prepare("SELECT id, kind, grid FROM records")?;
        let rows = st.query_map([], |row| {
            Ok((row.get(0)?, column(row, 1, "records", 0)?, row.get(2)?))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    for (id, kind, grid) in records {
        let ok = readable.contains(grid.as_str())
            || (kind.read_from_below() && templates.contains(grid.as_str()));
        if !ok {
            remove_or_keep(
                tx,
                &id,
                kind,
                &format!("grid {grid} is no longer assigned to you"),
                out,
            )?;
        }
    }
    Ok(())
}

/// Removes a record; unsynced or rejected edits are first kept for export.
fn remove_or_keep(
    tx: &Transaction<'_>,
    id: &str,
    kind: RecordKind,
    reason: &str,
    out: &mut PageOutcome,
) -> Result<()> {
    let row: Option<(String, bool)> = tx
        .query_row(
            "SELECT grid, local_rev > acked_rev OR rejected_rev IS NOT NULL FROM records WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((grid, dirty)) = row else {
        return Ok(());
    };
    if dirty {
        let bytes = match load_doc(tx, id) {
            Ok(Some(mut d)) => d.save(),
            _ => tx.query_row("SELECT doc FROM records WHERE id = ?1", [id], |r| r.get(0))?,
        };
        tx.execute(
            "INSERT OR REPLACE INTO kept_edits (id, kind, grid, doc, reason, kept_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, kind, grid, bytes, reason, now_ms()],
        )?;
        out.kept += 1;
    }
    delete_record(tx, id, kind)?;
    out.removed += 1;
    Ok(())
}

/// A bare document rebuilt ahead of its page's transaction (the loaded document itself is
/// dropped on the worker: only its bytes, heads and record are needed).
struct Rebuilt {
    /// The document's bytes, hashes restored: the server's exact bytes.
    bytes: Vec<u8>,
    heads: Vec<automerge::ChangeHash>,
    /// The record read from it, if it reads.
    record: Option<Record>,
}

/// Rebuilds the bare documents among `records` (in order, one entry per bare record;
/// `None` for one that does not rebuild), on up to 8 threads when there are many.
fn prepare_bare(records: &[PulledRecord]) -> Vec<Option<Rebuilt>> {
    let bare: Vec<&PulledRecord> = records
        .iter()
        .filter(|r| r.full && r.heads.is_empty())
        .collect();
    let one = |rec: &PulledRecord| match bare::rebuild(&rec.bytes) {
        Ok((mut doc, bytes)) => Some(Rebuilt {
            heads: doc.heads(),
            record: doc.read().ok(),
            bytes,
        }),
        Err(e) => {
            tracing::warn!(id = %rec.id, "bare document: {e}");
            None
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || bare.len() < 64 {
        return bare.into_iter().map(one).collect();
    }
    let per = bare.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = bare
            .chunks(per)
            .map(|part| {
                let n = part.len();
                (
                    n,
                    scope.spawn(move || part.iter().map(|r| one(r)).collect::<Vec<_>>()),
                )
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(n, h)| {
                // A panic in a worker would be a bug: its records count as not rebuilt,
                // which refuses the page (digest) rather than taking the app down.
                h.join()
                    .unwrap_or_else(|_| std::iter::repeat_with(|| None).take(n).collect())
            })
            .collect()
    })
}

/// Applies one pulled record. Returns false when the device needs the whole document.
/// `rebuilt` is the record's bare document, already rebuilt.
fn apply_record(
    tx: &Transaction<'_>,
    rec: &PulledRecord,
    kind: RecordKind,
    rebuilt: Option<Rebuilt>,
    out: &mut PageOutcome,
) -> Result<bool> {
    let bare = rec.full && rec.heads.is_empty();
    let (read_ahead, bytes, server_heads) = match rebuilt {
        Some(r) => (Some(r.record), std::borrow::Cow::Owned(r.bytes), r.heads),
        None if bare => return Ok(false),
        None => (
            None,
            std::borrow::Cow::Borrowed(rec.bytes.as_slice()),
            rec.heads
                .iter()
                .map(|h| automerge::ChangeHash(*h))
                .collect(),
        ),
    };
    let existing = match load_doc(tx, &rec.id) {
        Ok(d) => d,
        Err(Error::Corrupt { detail, .. }) if rec.full => {
            // A full copy from the server replaces a document that failed to load; what
            // can be recovered of the local changes goes on top of it.
            return heal_record(tx, rec, kind, &bytes, &server_heads, &detail, out);
        }
        Err(Error::Corrupt { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    match existing {
        Some(mut doc) => {
            let old_heads = doc.heads();
            if doc.apply(&bytes).is_err() {
                return Ok(false);
            }
            if !doc.missing_deps().is_empty() || !doc.has_heads(&server_heads) {
                return Ok(false);
            }
            if doc.read().is_err() {
                return Ok(false);
            }
            if doc.heads() != old_heads {
                persist_doc(tx, &rec.id, &mut doc, &old_heads, false)?;
            }
            tx.execute(
                "UPDATE records SET server_heads = ?2 WHERE id = ?1",
                params![rec.id, heads_to_bytes(&server_heads)],
            )?;
            // The server holds every change this device has (after a restore, another
            // device delivered them): nothing is left to push, and a rejection of changes
            // the server now has is void.
            let mut mine = doc.heads();
            mine.sort();
            let mut theirs = server_heads.clone();
            theirs.sort();
            if mine == theirs {
                tx.execute(
                    "UPDATE records SET acked_rev = local_rev, rejected_rev = NULL,
                         rejected_code = NULL, rejected_reason = NULL
                     WHERE id = ?1",
                    [&rec.id],
                )?;
            }
            materialize(tx, &doc.read()?)?;
        }
        None => {
            if let Some(record) = read_ahead {
                // A rebuilt bare document: the server's exact bytes, already read.
                let Some(record) = record.filter(|r| r.kind() == kind) else {
                    return Ok(false);
                };
                insert_received(tx, rec, &record, &bytes, &server_heads, &server_heads)?;
                return Ok(true);
            }
            // A whole document that loads the way the store loads it later is stored as
            // received: saving it again would cost as much as loading it, for the same bytes.
            let strict = if rec.full {
                automerge::AutoCommit::load(&bytes)
                    .ok()
                    .and_then(|d| RecordDoc::from_doc(d).ok())
            } else {
                None
            };
            let as_received = strict.is_some();
            let loaded = match strict {
                Some(d) => Ok(d),
                None => load_received(&bytes),
            };
            let mut doc = match loaded {
                Ok(d) => d,
                Err(_) => return Ok(false),
            };
            if doc.kind() != kind || !doc.missing_deps().is_empty() {
                return Ok(false);
            }
            let Ok(record) = doc.read() else {
                return Ok(false);
            };
            let saved;
            let bytes: &[u8] = if as_received {
                &bytes
            } else {
                saved = doc.save();
                &saved
            };
            insert_received(tx, rec, &record, bytes, &doc.heads(), &server_heads)?;
        }
    }
    Ok(true)
}

/// Replaces a record whose stored bytes failed to load with the server's whole document
/// `server_doc`, re-applying on top every piece of the damaged copy that still loads on its
/// own (the compact save, each incremental chunk), so that intact local changes survive
/// and are pushed. Local changes that cannot be recovered (the record had unsynced or
/// rejected changes and its last local heads are not in the result) are kept for export
/// with the damaged bytes, and counted in `out.kept`. Returns false if the server's
/// document itself does not load (then it is asked for again).
fn heal_record(
    tx: &Transaction<'_>,
    rec: &PulledRecord,
    kind: RecordKind,
    server_doc: &[u8],
    server_heads: &[automerge::ChangeHash],
    detail: &str,
    out: &mut PageOutcome,
) -> Result<bool> {
    let Ok(mut doc) = RecordDoc::load(server_doc, &[]).or_else(|_| load_received(server_doc))
    else {
        return Ok(false);
    };
    if doc.kind() != kind || !doc.missing_deps().is_empty() || doc.read().is_err() {
        return Ok(false);
    }
    let Some(damaged) = damaged_copy(tx, &rec.id)? else {
        return Ok(false);
    };
    // Pieces in the order they were written; a chunk depending on a lost piece stays
    // unapplied (its dependencies are missing), so retry while something new applies.
    let mut pending: Vec<&[u8]> = std::iter::once(damaged.doc.as_slice())
        .chain(damaged.chunks.iter().map(Vec::as_slice))
        .collect();
    loop {
        let before = pending.len();
        pending.retain(|piece| {
            let mut trial = doc.fork();
            let took = trial.apply(piece).is_ok()
                && trial.missing_deps().is_empty()
                && trial.read().is_ok();
            if took {
                doc = trial;
            }
            !took
        });
        if pending.len() == before || pending.is_empty() {
            break;
        }
    }
    let record = doc.read()?;
    let heads = doc.heads();
    let mut server_sorted = server_heads.to_vec();
    server_sorted.sort_unstable();
    let local_on_top = heads != server_sorted;
    let lost = damaged.dirty
        && !damaged
            .heads
            .as_ref()
            .is_some_and(|h| !h.is_empty() && doc.has_heads(h));
    if lost {
        let mut raw = damaged.doc.clone();
        for c in &damaged.chunks {
            raw.extend_from_slice(c);
        }
        tx.execute(
            "INSERT OR REPLACE INTO kept_edits (id, kind, grid, doc, reason, kept_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                rec.id,
                kind,
                damaged.grid,
                raw,
                format!(
                    "{DAMAGED_REASON}; the record was replaced by the server's copy{} ({detail})",
                    if local_on_top { " with the local changes that could be read" } else { "" }
                ),
                now_ms()
            ],
        )?;
        out.kept += 1;
    }
    tracing::warn!(
        record = %rec.id,
        recovered_local = local_on_top,
        kept = lost,
        "record healed from the server's copy"
    );
    delete_record(tx, &rec.id, kind)?;
    let bytes = doc.save();
    insert_received(tx, rec, &record, &bytes, &heads, server_heads)?;
    if local_on_top {
        // Changes the server does not have: push them.
        tx.execute("UPDATE records SET local_rev = 1 WHERE id = ?1", [&rec.id])?;
    }
    Ok(true)
}

/// Why an edit is kept when the bytes holding it were damaged on the device.
pub(crate) const DAMAGED_REASON: &str =
    "local changes stored on this device were damaged and could not be recovered";

/// What is left of a record whose bytes failed to load.
struct DamagedCopy {
    doc: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    /// The heads written with its last change, if they still parse.
    heads: Option<Vec<automerge::ChangeHash>>,
    grid: String,
    /// Whether it held changes the server had not accepted.
    dirty: bool,
}

fn damaged_copy(tx: &Transaction<'_>, id: &str) -> Result<Option<DamagedCopy>> {
    type Row = (Vec<u8>, Vec<u8>, String, bool);
    let row: Option<Row> = tx
        .query_row(
            "SELECT doc, heads, grid, local_rev > acked_rev OR rejected_rev IS NOT NULL
             FROM records WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((doc, heads, grid, dirty)) = row else {
        return Ok(None);
    };
    let chunks = {
        let mut st =
            tx.prepare_cached("SELECT bytes FROM record_chunks WHERE id = ?1 ORDER BY n")?;
        let rows = st.query_map([id], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<Vec<Vec<u8>>>>()?
    };
    Ok(Some(DamagedCopy {
        doc,
        chunks,
        heads: heads_from_bytes(&heads).ok(),
        grid,
        dirty,
    }))
}

/// Stores a record the device did not have, as received, and its query rows.
fn insert_received(
    tx: &Transaction<'_>,
    rec: &PulledRecord,
    record: &Record,
    doc: &[u8],
    heads: &[automerge::ChangeHash],
    server_heads: &[automerge::ChangeHash],
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO records (id, kind, grid, doc, heads, server_heads, local_rev, acked_rev, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?7)",
    )?
    .execute(params![
        rec.id,
        record.kind(),
        record.grid(),
        doc,
        heads_to_bytes(heads),
        heads_to_bytes(server_heads),
        now_ms()
    ])?;
    materialize(tx, record)
}

impl Store {
    /// Ids of every record on the device (sorted), for exports and checks.
    pub fn record_ids(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT id FROM records ORDER BY id")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
