//! Storage written once: every algorithm of the server's storage (meta and reference data,
//! devices and codes, feed paging, whole records, the audit trail, sequencing and writing a
//! decided push, dump and import, backup) over the narrow [`Backend`] trait. A backend
//! holds only what truly differs between databases: connections and transactions, the
//! dialect of its SQL ([`Tx`]), how concurrent pushes are kept apart, and migrations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use gridsync_core::attachment::{is_sha256_hex, sniff, AttachmentRef};
use gridsync_core::model::{GridNode, Person, RecordKind};
use gridsync_core::sync::protocol::{Departure, PullRecord, PushRecord, PushResult};
use sha2::{Digest, Sha256};

use super::batch::{resolve_since, Op, Since};
use super::query;
use super::sql::{params, Heads, Insert, Row, TextArray, Tx, Value};
use super::*;

/// What differs between database backends. Everything else is in [`SqlStorage`].
pub trait Backend: Send + Sync + std::fmt::Debug + Sized + 'static {
    /// Name for status and errors ("sqlite", "postgres").
    const NAME: &'static str;
    /// Run at the start of an import, in its transaction (keeps concurrent writers out).
    const IMPORT_LOCK: Option<&'static str>;
    /// Run at the end of an import, in its transaction (moves id sequences past copied ids).
    const IMPORT_DONE: Option<&'static str>;

    /// Runs `f` on one consistent snapshot.
    fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StorageResult<T>) -> StorageResult<T>;
    /// Runs `f` in one write transaction, committed when it returns `Ok`.
    fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StorageResult<T>) -> StorageResult<T>;
    /// Runs one statement that needs no transaction of its own.
    fn single<T>(
        &self,
        write: bool,
        f: impl FnOnce(&mut dyn Tx) -> StorageResult<T>,
    ) -> StorageResult<T> {
        if write {
            self.write(f)
        } else {
            self.read(f)
        }
    }
    /// Decides and stores a push batch under this backend's concurrency control, with
    /// [`load_current`], [`super::batch::decide_batch`] and [`write_ops`].
    fn push(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>>;
    /// Writes a backup file natively, if the backend can (`false`: copy it row by row).
    fn backup_native(&self, dest: &Path) -> StorageResult<bool>;
    /// Testing hook: pushes wait this long before they commit.
    fn set_push_commit_delay(&self, _d: std::time::Duration) {}
    /// Keeps concurrent pushes of the records `ids` (sorted) out until the transaction `tx`
    /// ends (a rebuild of their query rows). SQLite: nothing (one writer).
    fn lock_records(&self, _tx: &mut dyn Tx, _ids: &[&str]) -> StorageResult<()> {
        Ok(())
    }

    // The byte store of attachments: each call runs inside the transaction `tx` of the
    // metadata it goes with (SQLite: files written while the single writer is held;
    // PostgreSQL: chunk rows in the same transaction). `sha256` is checked hex.

    /// Writes `bytes` at `offset` of an attachment's held bytes, durably (synced before it
    /// returns). `false`: the store holds fewer than `offset` bytes (lost in a crash): the
    /// caller starts the attachment over.
    fn blob_write(
        &self,
        tx: &mut dyn Tx,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> StorageResult<bool>;
    /// At most `max` held bytes from `offset` (fewer at the end).
    fn blob_read(
        &self,
        tx: &mut dyn Tx,
        sha256: &str,
        complete: bool,
        offset: u64,
        max: usize,
    ) -> StorageResult<Vec<u8>>;
    /// Makes the verified bytes the attachment's complete copy.
    fn blob_complete(&self, tx: &mut dyn Tx, sha256: &str) -> StorageResult<()>;
    /// Deletes every byte held of an attachment.
    fn blob_discard(&self, tx: &mut dyn Tx, sha256: &str) -> StorageResult<()>;
    /// Deletes held bytes no attachment row names (left by a crash); returns how many
    /// attachments' bytes were deleted.
    fn blob_sweep(&self, tx: &mut dyn Tx) -> StorageResult<u64>;
}

/// A storage backend with every algorithm on top of it.
#[derive(Debug)]
pub struct SqlStorage<B: Backend> {
    backend: B,
}

impl<B: Backend> SqlStorage<B> {
    pub(crate) fn new(backend: B) -> Self {
        SqlStorage { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

/// A new random epoch.
pub(crate) fn new_epoch() -> String {
    use rand::RngCore;
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A random positive 63-bit token (fits both databases' signed 64-bit integers).
pub(crate) fn new_token() -> i64 {
    use rand::RngCore;
    (rand::rngs::OsRng.next_u64() >> 1) as i64 | 1
}

/// Meta rows every server has, set once after migrating. A database written by a backup
/// (marked `restored_backup`) takes a new epoch the first time it is served.
pub(crate) fn init_meta(tx: &mut dyn Tx) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO server_meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
        params![new_epoch().as_str()],
    )?;
    tx.execute(
        "INSERT INTO server_meta (key, value) VALUES ('ref_generation', '1') ON CONFLICT (key) DO NOTHING",
        &[],
    )?;
    // Made with the database, so that every backup carries it (`crate::signed`).
    super::duplicates::change_key(tx, true)?;
    let restored: Option<String> = tx.value(
        "server_meta",
        "SELECT value FROM server_meta WHERE key = 'restored_backup'",
        &[],
    )?;
    if restored.is_some() {
        tx.execute(
            "UPDATE server_meta SET value = $1 WHERE key = 'epoch'",
            params![new_epoch().as_str()],
        )?;
        tx.execute("DELETE FROM server_meta WHERE key = 'restored_backup'", &[])?;
    }
    Ok(())
}

pub(crate) fn bump_generation(tx: &mut dyn Tx) -> StorageResult<()> {
    tx.execute(
        "UPDATE server_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'ref_generation'",
        &[],
    )?;
    Ok(())
}

// ---- Tables: columns, bulk inserts and row mapping, each written once. ----

// Bulk inserts of each table (one line per table).
#[rustfmt::skip]
mod inserts {
    use super::super::sql::{Insert, Ty::{Blob, Bool, Int, Text}};
    pub(super) const INS_META: Insert = Insert { table: "server_meta", columns: &[("key", Text), ("value", Text)], on_conflict: " ON CONFLICT (key) DO UPDATE SET value = excluded.value" };
    pub(super) const INS_GRIDS: Insert = Insert { table: "grids", columns: &[("code", Text), ("name", Text), ("level", Text), ("kind", Text), ("parent", Text)], on_conflict: " ON CONFLICT (code) DO UPDATE SET name = excluded.name, level = excluded.level, kind = excluded.kind, parent = excluded.parent" };
    pub(super) const INS_PEOPLE: Insert = Insert { table: "people", columns: &[("id", Text), ("name", Text), ("phone", Text), ("role", Text), ("grids", Text), ("active", Bool)], on_conflict: " ON CONFLICT (id) DO UPDATE SET name = excluded.name, phone = excluded.phone, role = excluded.role, grids = excluded.grids, active = excluded.active" };
    pub(super) const INS_DESK_ACCOUNTS: Insert = Insert { table: "desk_accounts", columns: &[("person_id", Text), ("username", Text), ("password_hash", Text), ("created_at_ms", Int), ("changed_at_ms", Int), ("failed_attempts", Int), ("locked_until_ms", Int)], on_conflict: "" };
    pub(super) const INS_CODES: Insert = Insert { table: "enrol_codes", columns: &[("code_hash", Text), ("person_id", Text), ("created_by", Text), ("created_at_ms", Int), ("expires_at_ms", Int), ("used_at_ms", Int)], on_conflict: "" };
    pub(super) const INS_DEVICES: Insert = Insert { table: "devices", columns: &[("id", Text), ("person_id", Text), ("name", Text), ("secret_hash", Text), ("pending_hash", Text), ("created_at_ms", Int), ("last_seen_ms", Int), ("revoked_at_ms", Int), ("revoked_reason", Text)], on_conflict: "" };
    pub(super) const INS_RECORDS: Insert = Insert { table: "records", columns: &[("id", Text), ("kind", Text), ("grid", Text), ("doc", Blob), ("heads", Blob), ("seq", Int), ("grid_since", Int), ("updated_at_ms", Int)], on_conflict: " ON CONFLICT (id) DO UPDATE SET grid = excluded.grid, doc = excluded.doc, heads = excluded.heads, seq = excluded.seq, grid_since = excluded.grid_since, updated_at_ms = excluded.updated_at_ms" };
    pub(super) const INS_CHANGES: Insert = Insert { table: "changes", columns: &[("record_id", Text), ("grid", Text), ("seq", Int), ("bytes", Blob)], on_conflict: "" };
    pub(super) const INS_DEPARTURES: Insert = Insert { table: "departures", columns: &[("grid", Text), ("seq", Int), ("record_id", Text), ("new_grid", Text)], on_conflict: "" };
    pub(super) const INS_FEED_HEADS: Insert = Insert { table: "feed_heads", columns: &[("grid", Text), ("seq", Int)], on_conflict: "" };
    pub(super) const INS_FEED_LOG: Insert = Insert { table: "feed_log", columns: &[("grid", Text), ("seq", Int), ("token", Int)], on_conflict: "" };
    /// Audit entries as a push writes them: ids assigned by the database, in row order.
    pub(super) const INS_AUDIT: Insert = Insert { table: "audit", columns: &[("at_ms", Int), ("person_id", Text), ("device_id", Text), ("record_id", Text), ("kind", Text), ("grid", Text), ("action", Text), ("detail", Text)], on_conflict: "" };
    /// Audit entries as an import copies them, with their ids.
    pub(super) const INS_ATTACHMENTS: Insert = Insert { table: "attachments", columns: &[("sha256", Text), ("size", Int), ("mime", Text), ("held", Int), ("complete", Bool), ("uploaded_by", Text), ("created_at_ms", Int), ("updated_at_ms", Int), ("completed_at_ms", Int)], on_conflict: "" };
    pub(super) const INS_ATTACHMENT_REFS: Insert = Insert { table: "attachment_refs", columns: &[("sha256", Text), ("record_id", Text), ("device_id", Text), ("size", Int), ("mime", Text)], on_conflict: " ON CONFLICT (sha256, record_id, device_id) DO NOTHING" };
    pub(super) const INS_AUDIT_WITH_ID: Insert = Insert { table: "audit", columns: &[("id", Int), ("at_ms", Int), ("person_id", Text), ("device_id", Text), ("record_id", Text), ("kind", Text), ("grid", Text), ("action", Text), ("detail", Text)], on_conflict: "" };
}
use inserts::*;

/// The column list of a table, as its bulk insert names it.
fn cols(ins: &Insert) -> String {
    let names: Vec<&str> = ins.columns.iter().map(|c| c.0).collect();
    names.join(", ")
}

/// The data tables, in dependency order (an import fills them in this order).
pub(crate) const DATA_TABLES: [&str; 16] = [
    "grids",
    "people",
    "desk_accounts",
    "grid_charts",
    "person_duties",
    "scale_thresholds",
    "enrol_codes",
    "devices",
    "records",
    "changes",
    "departures",
    "feed_heads",
    "feed_log",
    "audit",
    "attachments",
    "attachment_refs",
];

fn grid_row(r: Row) -> StorageResult<GridRow> {
    Ok(GridRow {
        code: r.get(0)?,
        name: r.get(1)?,
        level: r.get(2)?,
        kind: r.get(3)?,
        parent: r.get(4)?,
    })
}

fn person_row(r: Row) -> StorageResult<PersonRow> {
    Ok(PersonRow {
        id: r.get(0)?,
        name: r.get(1)?,
        phone: r.get(2)?,
        role: r.get(3)?,
        grids: r.get::<TextArray>(4)?.0,
        active: r.get(5)?,
    })
}

fn code_row(r: Row) -> StorageResult<CodeRow> {
    Ok(CodeRow {
        code: EnrolCode {
            code_hash: r.get(0)?,
            person_id: r.get(1)?,
            created_by: r.get(2)?,
            created_at_ms: r.get(3)?,
            expires_at_ms: r.get(4)?,
        },
        used_at_ms: r.get(5)?,
    })
}

fn device_row(r: Row) -> StorageResult<Device> {
    Ok(Device {
        id: r.get(0)?,
        person_id: r.get(1)?,
        name: r.get(2)?,
        secret_hash: r.get(3)?,
        pending_hash: r.get(4)?,
        created_at_ms: r.get(5)?,
        last_seen_ms: r.get(6)?,
        revoked_at_ms: r.get(7)?,
        revoked_reason: r.get(8)?,
    })
}

fn record_row(mut r: Row) -> StorageResult<RecordRow> {
    Ok(RecordRow {
        doc: r.take_blob(3)?.unwrap_or_default(),
        id: r.get(0)?,
        kind: r.get(1)?,
        grid: r.get(2)?,
        heads: r.get(4)?,
        seq: r.get(5)?,
        grid_since: r.get(6)?,
        updated_at_ms: r.get(7)?,
    })
}

fn audit_row(r: Row) -> StorageResult<(i64, AuditEntry)> {
    Ok((
        r.get(0)?,
        AuditEntry {
            at_ms: r.get(1)?,
            person_id: r.get(2)?,
            device_id: r.get(3)?,
            record_id: r.get(4)?,
            kind: r.get(5)?,
            grid: r.get(6)?,
            action: r.get(7)?,
            detail: r.get(8)?,
        },
    ))
}

fn attachment_row(r: Row) -> StorageResult<AttachmentMeta> {
    Ok(AttachmentMeta {
        sha256: r.get(0)?,
        size: r.get(1)?,
        mime: r.get(2)?,
        held: r.get(3)?,
        complete: r.get(4)?,
        uploaded_by: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
        completed_at_ms: r.get(8)?,
    })
}

fn attachment_ref_row(r: Row) -> StorageResult<AttachmentRefRow> {
    Ok(AttachmentRefRow {
        sha256: r.get(0)?,
        record_id: r.get(1)?,
        device_id: r.get(2)?,
        size: r.get(3)?,
        mime: r.get(4)?,
    })
}

fn person_of(p: PersonRow) -> Person {
    Person {
        id: p.id,
        name: p.name,
        phone: p.phone,
        role: p.role,
        grids: p.grids,
    }
}

// ---- Pushes: what both backends' concurrency control calls. ----

/// A stored record as a push decision starts from.
#[derive(Debug)]
pub(crate) struct Current {
    /// The record.
    pub rec: StoredRecord,
    /// Sequence at which it entered its grid.
    pub grid_since: i64,
    /// Sequence of its last write.
    pub seq: i64,
}

/// The stored records among `ids`.
pub(crate) fn load_current(
    tx: &mut dyn Tx,
    ids: &[&str],
) -> StorageResult<HashMap<String, Current>> {
    let mut out = HashMap::with_capacity(ids.len());
    tx.query(
        "records",
        "SELECT id, kind, grid, doc, grid_since, seq FROM records WHERE id IN LIST($1)",
        params![ids],
        &mut |mut r| {
            let doc = r.take_blob(3)?.unwrap_or_default();
            let id: String = r.get(0)?;
            let cur = Current {
                rec: StoredRecord {
                    kind: r.get(1)?,
                    grid: r.get(2)?,
                    doc,
                },
                grid_since: r.get(4)?,
                seq: r.get(5)?,
            };
            out.insert(id, cur);
            Ok(())
        },
    )?;
    Ok(out)
}

/// The ids of a push batch, sorted and each once (the order locks are taken in).
pub(crate) fn batch_ids(records: &[PushRecord]) -> Vec<&str> {
    let mut ids: Vec<&str> = records.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Writes decided records: takes each grid's sequences with one counter update (grids in
/// sorted order), then writes the feed log, departures, records, changes and audit with one
/// bulk insert per table. One timestamp for the whole batch.
pub(crate) fn write_ops(tx: &mut dyn Tx, author: &Author, ops: &[Op]) -> StorageResult<()> {
    write_jobs(tx, &[(author, ops)])
}

/// [`write_ops`] of several decided pushes at once, each with its author (a group commit):
/// their writes in the order given, one counter update per grid and one insert per table
/// for all of them. A record must not be written by two of the pushes.
pub(crate) fn write_jobs(tx: &mut dyn Tx, jobs: &[(&Author, &[Op])]) -> StorageResult<()> {
    // Every write with its author, and `since` of a push's own earlier write made an index
    // into this list.
    let mut flat: Vec<(&Author, &Op, Since)> = Vec::new();
    for (author, ops) in jobs {
        let base = flat.len();
        flat.extend(ops.iter().map(|op| {
            let since = match op.since {
                Since::Op(j) => Since::Op(base + j),
                other => other,
            };
            (*author, op, since)
        }));
    }
    let ops: Vec<&Op> = flat.iter().map(|f| f.1).collect();
    if ops.is_empty() {
        return Ok(());
    }
    let now = gridsync_core::now_ms();
    let mut need: BTreeMap<&str, i64> = BTreeMap::new();
    for op in &ops {
        *need.entry(op.grid.as_str()).or_insert(0) += 1;
        if let Some(from) = &op.moved_from {
            *need.entry(from.as_str()).or_insert(0) += 1;
        }
    }
    let mut next: HashMap<&str, i64> = HashMap::with_capacity(need.len());
    for (grid, n) in &need {
        let end: i64 = tx
            .value(
                "feed_heads",
                "INSERT INTO feed_heads (grid, seq) VALUES ($1, $2)
                 ON CONFLICT (grid) DO UPDATE SET seq = feed_heads.seq + excluded.seq RETURNING seq",
                params![*grid, *n],
            )?
            .ok_or_else(|| StorageError::Database(format!("no feed head returned for {grid}")))?;
        next.insert(grid, end - n + 1);
    }
    let mut take = |grid: &str| -> StorageResult<i64> {
        let slot = next
            .get_mut(grid)
            .ok_or_else(|| StorageError::Invalid(format!("no sequence taken for grid {grid}")))?;
        *slot += 1;
        Ok(*slot - 1)
    };
    // Sequences and grid_since of every write, in batch order.
    let mut seqs = Vec::with_capacity(ops.len());
    let mut deps = Vec::new();
    let mut since_of: Vec<i64> = Vec::with_capacity(ops.len());
    for (_, op, since) in &flat {
        let seq = take(&op.grid)?;
        if let Some(from) = &op.moved_from {
            deps.push((from.as_str(), take(from)?, *op));
        }
        since_of.push(resolve_since(*since, seq, &since_of));
        seqs.push(seq);
    }
    let tokens: Vec<i64> = (0..ops.len() + deps.len()).map(|_| new_token()).collect();
    let mut log: Vec<Vec<Value<'_>>> = Vec::with_capacity(tokens.len());
    for (i, op) in ops.iter().enumerate() {
        log.push(vec![
            Value::Text(&op.grid),
            Value::Int(seqs[i]),
            Value::Int(tokens[i]),
        ]);
    }
    for (j, (from, dep, _)) in deps.iter().enumerate() {
        log.push(vec![
            Value::Text(from),
            Value::Int(*dep),
            Value::Int(tokens[ops.len() + j]),
        ]);
    }
    tx.insert_rows(&INS_FEED_LOG, &log)?;
    if !deps.is_empty() {
        let rows: Vec<Vec<Value<'_>>> = deps
            .iter()
            .map(|(from, dep, op)| {
                vec![
                    Value::Text(from),
                    Value::Int(*dep),
                    Value::Text(&op.id),
                    Value::Text(&op.grid),
                ]
            })
            .collect();
        tx.insert_rows(&INS_DEPARTURES, &rows)?;
    }
    // A record written twice in one batch is stored once, as its last write left it.
    let mut last_of: HashMap<&str, usize> = HashMap::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        last_of.insert(op.id.as_str(), i);
    }
    let records: Vec<Vec<Value<'_>>> = ops
        .iter()
        .enumerate()
        .filter(|(i, op)| last_of.get(op.id.as_str()) == Some(i))
        .map(|(i, op)| {
            vec![
                Value::Text(&op.id),
                Value::from(op.kind),
                Value::Text(&op.grid),
                Value::Blob(&op.doc),
                Value::Blob(&op.heads),
                Value::Int(seqs[i]),
                Value::Int(since_of[i]),
                Value::Int(now),
            ]
        })
        .collect();
    tx.insert_rows(&INS_RECORDS, &records)?;
    let changes: Vec<Vec<Value<'_>>> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            vec![
                Value::Text(&op.id),
                Value::Text(&op.grid),
                Value::Int(seqs[i]),
                Value::Blob(&op.new_changes),
            ]
        })
        .collect();
    tx.insert_rows(&INS_CHANGES, &changes)?;
    let details: Vec<String> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            format!(
                "{} bytes of changes, feed seq {}",
                op.new_changes.len(),
                seqs[i]
            )
        })
        .collect();
    let audit: Vec<Vec<Value<'_>>> = flat
        .iter()
        .zip(&details)
        .map(|((author, op, _), detail)| {
            vec![
                Value::Int(now),
                Value::Text(&author.person_id),
                Value::from(&author.device_id),
                Value::Text(&op.id),
                Value::from(op.kind),
                Value::Text(&op.grid),
                Value::Text(op.action),
                Value::Text(detail),
            ]
        })
        .collect();
    tx.insert_rows(&INS_AUDIT, &audit)?;
    let last: Vec<(&Author, &Op)> = flat
        .iter()
        .enumerate()
        .filter(|(i, f)| last_of.get(f.1.id.as_str()) == Some(i))
        .map(|(_, f)| (f.0, f.1))
        .collect();
    write_refs(tx, &last)?;
    // The query rows of the records as they are stored now, from the records the push
    // logic read.
    if query::query_tables_enabled() {
        let recs: Vec<&gridsync_core::model::Record> = last
            .iter()
            .filter_map(|(_, op)| op.record.as_deref())
            .collect();
        query::materialize(tx, &recs)?;
    }
    Ok(())
}

/// Records the attachment references of written records: the pushing device's reference
/// to each attachment a record refers to, and no reference any more to those the record
/// dropped. Only visits hold attachments.
fn write_refs(tx: &mut dyn Tx, ops: &[(&Author, &Op)]) -> StorageResult<()> {
    let visits: Vec<(&Author, &Op)> = ops
        .iter()
        .copied()
        .filter(|(_, op)| op.kind == RecordKind::Visit)
        .collect();
    if visits.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = visits.iter().map(|(_, op)| op.id.as_str()).collect();
    let stored: Vec<(String, String)> = tx.rows(
        "attachment_refs",
        "SELECT DISTINCT sha256, record_id FROM attachment_refs WHERE record_id IN LIST($1)",
        params![ids.as_slice()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let now: HashSet<(&str, &str)> = visits
        .iter()
        .flat_map(|(_, op)| {
            op.attachments
                .iter()
                .map(|a| (a.sha256.as_str(), op.id.as_str()))
        })
        .collect();
    for (sha, record) in &stored {
        if !now.contains(&(sha.as_str(), record.as_str())) {
            tx.execute(
                "DELETE FROM attachment_refs WHERE sha256 = $1 AND record_id = $2",
                params![sha, record],
            )?;
        }
    }
    let rows: Vec<Vec<Value<'_>>> = visits
        .iter()
        .flat_map(|(author, op)| {
            let device = author.device_id.as_deref().unwrap_or(super::SEED_DEVICE);
            op.attachments.iter().map(move |a| {
                vec![
                    Value::Text(&a.sha256),
                    Value::Text(&op.id),
                    Value::Text(device),
                    Value::Int(i64::try_from(a.size).unwrap_or(i64::MAX)),
                    Value::Text(&a.mime),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    tx.insert_rows(&INS_ATTACHMENT_REFS, &rows)
}

fn audit_values(e: &AuditEntry) -> Vec<Value<'_>> {
    vec![
        Value::Int(e.at_ms),
        Value::Text(&e.person_id),
        Value::from(&e.device_id),
        Value::from(&e.record_id),
        Value::from(&e.kind),
        Value::from(&e.grid),
        Value::Text(&e.action),
        Value::Text(&e.detail),
    ]
}

// ---- Feeds. ----

/// Changes of records sent as increments are loaded this many records at a time.
const CHANGE_BATCH: usize = 64;

fn pull_page(
    tx: &mut dyn Tx,
    feeds: &[FeedRead],
    limit: u32,
    byte_budget: usize,
) -> StorageResult<PullPage> {
    let mut page = PullPage::default();
    let mut bytes = 0usize;
    for feed in feeds {
        let room = (limit as usize).saturating_sub(page.records.len() + page.departures.len());
        if room == 0 || bytes >= byte_budget {
            page.more = true;
            break;
        }
        let after = i64::try_from(feed.after)
            .map_err(|_| StorageError::Invalid(format!("cursor {} out of range", feed.after)))?;
        let fetch = room as i64 + 1;
        let sql = if feed.templates_only {
            "SELECT id, kind, seq, heads, CASE WHEN CAST($2 AS BIGINT) = 0 OR grid_since > CAST($2 AS BIGINT) THEN doc END
             FROM records WHERE grid = $1 AND seq > $2 AND kind IN ('template', 'acceptance') ORDER BY seq LIMIT $3"
        } else {
            "SELECT id, kind, seq, heads, CASE WHEN CAST($2 AS BIGINT) = 0 OR grid_since > CAST($2 AS BIGINT) THEN doc END
             FROM records WHERE grid = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        };
        let mut entries: Vec<(u64, Option<PullRecord>, Option<Departure>)> = Vec::new();
        tx.query(
            "records",
            sql,
            params![&feed.grid, after, fetch],
            &mut |mut r| {
                let doc = r.take_blob(4)?;
                let seq: u64 = r.get(2)?;
                let rec = PullRecord {
                    id: r.get(0)?,
                    kind: r.get::<RecordKind>(1)?.tag(),
                    grid: feed.grid.clone(),
                    seq,
                    full: doc.is_some(),
                    bytes: doc.unwrap_or_default(),
                    heads: r.get::<Heads>(3)?.0,
                };
                entries.push((seq, Some(rec), None));
                Ok(())
            },
        )?;
        if !feed.templates_only {
            tx.query(
                "departures",
                "SELECT record_id, seq, new_grid FROM departures WHERE grid = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                params![&feed.grid, after, fetch],
                &mut |r| {
                    let d = Departure {
                        id: r.get(0)?,
                        grid: feed.grid.clone(),
                        seq: r.get(1)?,
                        new_grid: r.get(2)?,
                    };
                    entries.push((d.seq, None, Some(d)));
                    Ok(())
                },
            )?;
            entries.sort_by_key(|e| e.0);
        }
        // Changes of records sent as increments, loaded in batches as the page fills.
        let partial: Vec<String> = entries
            .iter()
            .filter_map(|e| e.1.as_ref().filter(|r| !r.full).map(|r| r.id.clone()))
            .collect();
        let mut loaded: HashMap<String, Vec<u8>> = HashMap::new();
        let mut next_partial = 0usize;
        let mut cursor = None;
        let mut cut = false;
        for (i, (seq, rec, dep)) in entries.into_iter().enumerate() {
            if i >= room || (bytes >= byte_budget && cursor.is_some()) {
                cut = true;
                break;
            }
            if let Some(mut rec) = rec {
                if !rec.full {
                    if !loaded.contains_key(&rec.id) {
                        let end = (next_partial + CHANGE_BATCH).min(partial.len());
                        let batch: Vec<&str> = partial[next_partial.min(end)..end]
                            .iter()
                            .map(String::as_str)
                            .collect();
                        next_partial = end;
                        for id in &batch {
                            loaded.insert((*id).to_string(), Vec::new());
                        }
                        tx.query(
                            "changes",
                            "SELECT record_id, bytes FROM changes WHERE record_id IN LIST($1) AND grid = $2 AND seq > $3 ORDER BY record_id, seq",
                            params![batch.as_slice(), &feed.grid, after],
                            &mut |mut r| {
                                let b = r.take_blob(1)?.unwrap_or_default();
                                loaded.entry(r.get(0)?).or_default().extend_from_slice(&b);
                                Ok(())
                            },
                        )?;
                    }
                    rec.bytes.extend(loaded.remove(&rec.id).unwrap_or_default());
                }
                bytes += rec.bytes.len() + rec.heads.len() * 32 + rec.id.len();
                page.records.push(rec);
            }
            if let Some(d) = dep {
                bytes += d.id.len() + d.new_grid.len();
                page.departures.push(d);
            }
            cursor = Some(seq);
        }
        if let Some(seq) = cursor {
            let token: i64 = tx
                .value(
                    "feed_log",
                    "SELECT token FROM feed_log WHERE grid = $1 AND seq = $2",
                    params![&feed.grid, seq as i64],
                )?
                .ok_or_else(|| {
                    StorageError::Database(format!("feed {} has no log entry {seq}", feed.grid))
                })?;
            page.cursors.push((feed.grid.clone(), seq, token as u64));
        }
        if cut {
            page.more = true;
            break;
        }
    }
    Ok(page)
}

// ---- Dump and import. ----

/// A row whose size does not count towards a chunk's bytes.
fn no_size<T>(row: T) -> (T, usize) {
    (row, 0)
}

/// Streams one table in chunks.
fn export_table<T>(
    tx: &mut dyn Tx,
    table: &'static str,
    sql: &str,
    row: impl Fn(Row) -> StorageResult<(T, usize)>,
    wrap: fn(Vec<T>) -> DumpChunk,
    sink: &mut DumpSink<'_>,
) -> StorageResult<()> {
    let mut buf = ChunkBuffer::default();
    tx.stream(table, sql, &mut |r| {
        let (v, bytes) = row(r)?;
        buf.push(v, bytes, wrap, sink)
    })?;
    buf.flush(wrap, sink)
}

fn export_all<B: Backend>(b: &B, tx: &mut dyn Tx, sink: &mut DumpSink<'_>) -> StorageResult<()> {
    export_table(
        tx,
        "server_meta",
        "SELECT key, value FROM server_meta ORDER BY key",
        |r| Ok(((r.get(0)?, r.get(1)?), 0)),
        DumpChunk::Meta,
        sink,
    )?;
    export_table(
        tx,
        "grids",
        &format!("SELECT {} FROM grids ORDER BY code", cols(&INS_GRIDS)),
        |r| grid_row(r).map(no_size),
        DumpChunk::Grids,
        sink,
    )?;
    export_table(
        tx,
        "people",
        &format!("SELECT {} FROM people ORDER BY id", cols(&INS_PEOPLE)),
        |r| person_row(r).map(no_size),
        DumpChunk::People,
        sink,
    )?;
    export_table(
        tx,
        "desk_accounts",
        &format!(
            "SELECT {} FROM desk_accounts ORDER BY person_id",
            cols(&INS_DESK_ACCOUNTS)
        ),
        |r| super::desk::account_row(r).map(no_size),
        DumpChunk::DeskAccounts,
        sink,
    )?;
    super::chart::export(tx, sink)?;
    super::scale::export(tx, sink)?;
    export_table(
        tx,
        "enrol_codes",
        &format!(
            "SELECT {} FROM enrol_codes ORDER BY code_hash",
            cols(&INS_CODES)
        ),
        |r| code_row(r).map(no_size),
        DumpChunk::Codes,
        sink,
    )?;
    export_table(
        tx,
        "devices",
        &format!("SELECT {} FROM devices ORDER BY id", cols(&INS_DEVICES)),
        |r| device_row(r).map(no_size),
        DumpChunk::Devices,
        sink,
    )?;
    export_table(
        tx,
        "records",
        &format!("SELECT {} FROM records ORDER BY id", cols(&INS_RECORDS)),
        |r| {
            let row = record_row(r)?;
            let n = row.doc.len() + row.heads.len();
            Ok((row, n))
        },
        DumpChunk::Records,
        sink,
    )?;
    export_table(
        tx,
        "changes",
        "SELECT record_id, grid, seq, bytes FROM changes ORDER BY record_id, grid, seq",
        |mut r| {
            let bytes = r.take_blob(3)?.unwrap_or_default();
            let n = bytes.len();
            Ok((
                ChangeRow {
                    record_id: r.get(0)?,
                    grid: r.get(1)?,
                    seq: r.get(2)?,
                    bytes,
                },
                n,
            ))
        },
        DumpChunk::Changes,
        sink,
    )?;
    export_table(
        tx,
        "departures",
        "SELECT grid, seq, record_id, new_grid FROM departures ORDER BY grid, seq",
        |r| {
            Ok((
                DepartureRow {
                    grid: r.get(0)?,
                    seq: r.get(1)?,
                    record_id: r.get(2)?,
                    new_grid: r.get(3)?,
                },
                0,
            ))
        },
        DumpChunk::Departures,
        sink,
    )?;
    export_table(
        tx,
        "feed_heads",
        "SELECT grid, seq FROM feed_heads ORDER BY grid",
        |r| Ok(((r.get(0)?, r.get(1)?), 0)),
        DumpChunk::FeedHeads,
        sink,
    )?;
    export_table(
        tx,
        "feed_log",
        "SELECT grid, seq, token FROM feed_log ORDER BY grid, seq",
        |r| {
            Ok((
                FeedLogRow {
                    grid: r.get(0)?,
                    seq: r.get(1)?,
                    token: r.get(2)?,
                },
                0,
            ))
        },
        DumpChunk::FeedLog,
        sink,
    )?;
    export_table(
        tx,
        "audit",
        &format!("SELECT {} FROM audit ORDER BY id", cols(&INS_AUDIT_WITH_ID)),
        |r| audit_row(r).map(no_size),
        DumpChunk::Audit,
        sink,
    )?;
    // Complete attachments only: a partial upload is started again by its phone.
    export_table(
        tx,
        "attachments",
        &format!(
            "SELECT {} FROM attachments WHERE complete ORDER BY sha256",
            cols(&INS_ATTACHMENTS)
        ),
        |r| attachment_row(r).map(no_size),
        DumpChunk::Attachments,
        sink,
    )?;
    export_table(
        tx,
        "attachment_refs",
        &format!(
            "SELECT {} FROM attachment_refs ORDER BY sha256, record_id, device_id",
            cols(&INS_ATTACHMENT_REFS)
        ),
        |r| attachment_ref_row(r).map(no_size),
        DumpChunk::AttachmentRefs,
        sink,
    )?;
    export_attachment_bytes(b, tx, sink)
}

/// Attachments whose bytes are exported per query.
const EXPORT_ATTACHMENTS_PER_QUERY: i64 = 256;

/// The bytes of every complete attachment, in pieces of [`ATTACHMENT_DUMP_PIECE`].
fn export_attachment_bytes<B: Backend>(
    b: &B,
    tx: &mut dyn Tx,
    sink: &mut DumpSink<'_>,
) -> StorageResult<()> {
    let mut after = String::new();
    loop {
        let page: Vec<(String, u64)> = tx.rows(
            "attachments",
            "SELECT sha256, size FROM attachments WHERE complete AND sha256 > $1 ORDER BY sha256 LIMIT $2",
            params![after.as_str(), EXPORT_ATTACHMENTS_PER_QUERY],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.0.clone();
        for (sha, size) in page {
            let mut offset = 0u64;
            while offset < size {
                let bytes = b.blob_read(tx, &sha, true, offset, ATTACHMENT_DUMP_PIECE)?;
                if bytes.is_empty() {
                    return Err(StorageError::Database(format!(
                        "attachment {sha}: {offset} of {size} bytes are stored"
                    )));
                }
                let n = bytes.len() as u64;
                sink(DumpChunk::AttachmentBytes {
                    sha256: sha.clone(),
                    offset,
                    bytes,
                    last: offset + n >= size,
                })?;
                offset += n;
            }
        }
    }
}

/// Imports a piece of an attachment's bytes (its metadata row came before it); the last
/// piece is verified against the attachment's name and type.
fn import_attachment_bytes<B: Backend>(
    b: &B,
    tx: &mut dyn Tx,
    sha256: &str,
    offset: u64,
    bytes: &[u8],
    last: bool,
) -> StorageResult<()> {
    if !is_sha256_hex(sha256) {
        return Err(StorageError::Invalid(format!(
            "attachment name '{}' is not a SHA-256",
            sha256.chars().take(80).collect::<String>()
        )));
    }
    let meta = tx
        .row(
            "attachments",
            &format!(
                "SELECT {} FROM attachments WHERE sha256 = $1",
                cols(&INS_ATTACHMENTS)
            ),
            params![sha256],
            attachment_row,
        )?
        .ok_or_else(|| {
            StorageError::Invalid(format!(
                "bytes of attachment {sha256} come before its metadata"
            ))
        })?;
    if offset + bytes.len() as u64 > meta.size || !b.blob_write(tx, sha256, offset, bytes)? {
        return Err(StorageError::Invalid(format!(
            "bytes of attachment {sha256} at {offset} do not follow those before them within its {} bytes",
            meta.size
        )));
    }
    if last {
        if offset + bytes.len() as u64 != meta.size {
            return Err(StorageError::Invalid(format!(
                "attachment {sha256} ends at {} of its {} bytes",
                offset + bytes.len() as u64,
                meta.size
            )));
        }
        verify_whole(b, tx, &meta)
            .map_err(|e| StorageError::Invalid(format!("attachment {sha256}: {e}")))?;
        b.blob_complete(tx, sha256)?;
    }
    Ok(())
}

fn import_chunk(tx: &mut dyn Tx, chunk: &DumpChunk) -> StorageResult<()> {
    let grids_json: Vec<String>;
    let (ins, rows): (&Insert, Vec<Vec<Value<'_>>>) = match chunk {
        DumpChunk::Meta(rows) => (
            &INS_META,
            rows.iter()
                .map(|(k, v)| vec![Value::Text(k), Value::Text(v)])
                .collect(),
        ),
        DumpChunk::Grids(rows) => (
            &INS_GRIDS,
            rows.iter()
                .map(|g| {
                    vec![
                        Value::Text(&g.code),
                        Value::Text(&g.name),
                        Value::from(g.level),
                        Value::from(g.kind),
                        Value::from(&g.parent),
                    ]
                })
                .collect(),
        ),
        DumpChunk::People(rows) => {
            grids_json = rows
                .iter()
                .map(|p| serde_json::to_string(&p.grids))
                .collect::<Result<_, _>>()
                .map_err(|e| StorageError::Invalid(e.to_string()))?;
            (
                &INS_PEOPLE,
                rows.iter()
                    .zip(&grids_json)
                    .map(|(p, g)| {
                        vec![
                            Value::Text(&p.id),
                            Value::Text(&p.name),
                            Value::Text(&p.phone),
                            Value::from(p.role),
                            Value::Text(g),
                            Value::Bool(p.active),
                        ]
                    })
                    .collect(),
            )
        }
        DumpChunk::DeskAccounts(rows) => (
            &INS_DESK_ACCOUNTS,
            rows.iter()
                .map(|a| {
                    vec![
                        Value::Text(&a.person_id),
                        Value::Text(&a.username),
                        Value::Text(&a.password_hash),
                        Value::Int(a.created_at_ms),
                        Value::Int(a.changed_at_ms),
                        Value::Int(a.failed_attempts),
                        Value::from(&a.locked_until_ms),
                    ]
                })
                .collect(),
        ),
        DumpChunk::GridCharts(rows) => super::chart::import_charts(rows),
        DumpChunk::PersonDuties(rows) => super::chart::import_duties(rows),
        DumpChunk::ScaleThresholds(rows) => super::scale::import(rows),
        DumpChunk::Codes(rows) => (
            &INS_CODES,
            rows.iter()
                .map(|c| {
                    vec![
                        Value::Text(&c.code.code_hash),
                        Value::Text(&c.code.person_id),
                        Value::Text(&c.code.created_by),
                        Value::Int(c.code.created_at_ms),
                        Value::Int(c.code.expires_at_ms),
                        Value::from(&c.used_at_ms),
                    ]
                })
                .collect(),
        ),
        DumpChunk::Devices(rows) => (
            &INS_DEVICES,
            rows.iter()
                .map(|d| {
                    vec![
                        Value::Text(&d.id),
                        Value::Text(&d.person_id),
                        Value::Text(&d.name),
                        Value::Text(&d.secret_hash),
                        Value::from(&d.pending_hash),
                        Value::Int(d.created_at_ms),
                        Value::from(&d.last_seen_ms),
                        Value::from(&d.revoked_at_ms),
                        Value::from(&d.revoked_reason),
                    ]
                })
                .collect(),
        ),
        DumpChunk::Records(rows) => (
            &INS_RECORDS,
            rows.iter()
                .map(|r| {
                    vec![
                        Value::Text(&r.id),
                        Value::from(r.kind),
                        Value::Text(&r.grid),
                        Value::Blob(&r.doc),
                        Value::Blob(&r.heads),
                        Value::Int(r.seq),
                        Value::Int(r.grid_since),
                        Value::Int(r.updated_at_ms),
                    ]
                })
                .collect(),
        ),
        DumpChunk::Changes(rows) => (
            &INS_CHANGES,
            rows.iter()
                .map(|c| {
                    vec![
                        Value::Text(&c.record_id),
                        Value::Text(&c.grid),
                        Value::Int(c.seq),
                        Value::Blob(&c.bytes),
                    ]
                })
                .collect(),
        ),
        DumpChunk::Departures(rows) => (
            &INS_DEPARTURES,
            rows.iter()
                .map(|d| {
                    vec![
                        Value::Text(&d.grid),
                        Value::Int(d.seq),
                        Value::Text(&d.record_id),
                        Value::Text(&d.new_grid),
                    ]
                })
                .collect(),
        ),
        DumpChunk::FeedHeads(rows) => (
            &INS_FEED_HEADS,
            rows.iter()
                .map(|(g, s)| vec![Value::Text(g), Value::Int(*s)])
                .collect(),
        ),
        DumpChunk::FeedLog(rows) => (
            &INS_FEED_LOG,
            rows.iter()
                .map(|l| vec![Value::Text(&l.grid), Value::Int(l.seq), Value::Int(l.token)])
                .collect(),
        ),
        DumpChunk::Audit(rows) => (
            &INS_AUDIT_WITH_ID,
            rows.iter()
                .map(|(id, e)| {
                    let mut v = vec![Value::Int(*id)];
                    v.extend(audit_values(e));
                    v
                })
                .collect(),
        ),
        DumpChunk::Attachments(rows) => (
            &INS_ATTACHMENTS,
            rows.iter()
                .map(|a| {
                    vec![
                        Value::Text(&a.sha256),
                        big(a.size),
                        Value::Text(&a.mime),
                        big(a.held),
                        Value::Bool(a.complete),
                        Value::Text(&a.uploaded_by),
                        Value::Int(a.created_at_ms),
                        Value::Int(a.updated_at_ms),
                        Value::from(&a.completed_at_ms),
                    ]
                })
                .collect(),
        ),
        DumpChunk::AttachmentRefs(rows) => (
            &INS_ATTACHMENT_REFS,
            rows.iter()
                .map(|a| {
                    vec![
                        Value::Text(&a.sha256),
                        Value::Text(&a.record_id),
                        Value::Text(&a.device_id),
                        big(a.size),
                        Value::Text(&a.mime),
                    ]
                })
                .collect(),
        ),
        DumpChunk::AttachmentBytes { sha256, .. } => {
            return Err(StorageError::Invalid(format!(
                "bytes of attachment {sha256} can only be imported into a whole store"
            )))
        }
    };
    if rows.is_empty() {
        return Ok(());
    }
    tx.insert_rows(ins, &rows)
}

fn is_empty_tx(tx: &mut dyn Tx) -> StorageResult<bool> {
    for t in DATA_TABLES {
        let any: Option<bool> = tx.value(t, &format!("SELECT EXISTS (SELECT 1 FROM {t})"), &[])?;
        if any == Some(true) {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---- Attachments: metadata and references here, bytes in the backend's byte store. ----

/// A size or offset as a column value (sizes are bounded far below `i64::MAX`).
fn big(v: u64) -> Value<'static> {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The attachment's row, locked until the transaction ends (an update that changes
/// nothing: PostgreSQL row-locks it; SQLite has one writer anyway).
fn lock_attachment(tx: &mut dyn Tx, sha256: &str) -> StorageResult<Option<AttachmentMeta>> {
    tx.row(
        "attachments",
        &format!(
            "UPDATE attachments SET held = held WHERE sha256 = $1 RETURNING {}",
            cols(&INS_ATTACHMENTS)
        ),
        params![sha256],
        attachment_row,
    )
}

/// Hashes the held bytes of an attachment in pieces and checks the type of its first
/// bytes. `Err` says what does not match.
fn verify_whole<B: Backend>(b: &B, tx: &mut dyn Tx, meta: &AttachmentMeta) -> Result<(), String> {
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    let mut sniffed = None;
    while offset < meta.size {
        let piece = b
            .blob_read(tx, &meta.sha256, false, offset, ATTACHMENT_DUMP_PIECE)
            .map_err(|e| e.to_string())?;
        if piece.is_empty() {
            return Err(format!("only {offset} of {} bytes are held", meta.size));
        }
        if offset == 0 {
            sniffed = sniff(&piece);
        }
        hasher.update(&piece);
        offset += piece.len() as u64;
    }
    let got = hex::encode(hasher.finalize());
    if got != meta.sha256 {
        return Err(format!(
            "the bytes hash to {got}, not to the attachment's name"
        ));
    }
    if sniffed != Some(meta.mime.as_str()) {
        return Err(format!(
            "the bytes are {}, not {}",
            sniffed.unwrap_or("of no allowed type"),
            meta.mime
        ));
    }
    Ok(())
}

/// One append (see [`Storage::append_attachment`]), in the write transaction `tx`.
fn append_tx<B: Backend>(
    b: &B,
    tx: &mut dyn Tx,
    device_id: &str,
    r: &AttachmentRef,
    offset: u64,
    bytes: &[u8],
    limits: &AttachmentLimits,
) -> StorageResult<AppendOutcome> {
    let now = gridsync_core::now_ms();
    let meta = match lock_attachment(tx, &r.sha256)? {
        Some(m) => m,
        None => {
            if r.size > limits.max_bytes {
                return Ok(AppendOutcome::TooLarge {
                    size: r.size,
                    max: limits.max_bytes,
                });
            }
            if offset != 0 {
                return Ok(AppendOutcome::WrongOffset { held: 0 });
            }
            let used: u64 = tx
                .value(
                    "attachments",
                    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM attachments WHERE uploaded_by = $1",
                    params![device_id],
                )?
                .unwrap_or(0);
            if used.saturating_add(r.size) > limits.quota_bytes {
                return Ok(AppendOutcome::OverQuota {
                    used,
                    quota: limits.quota_bytes,
                });
            }
            // Two first appends at once (PostgreSQL): one inserts, both then lock the row.
            tx.execute(
                "INSERT INTO attachments (sha256, size, mime, held, complete, uploaded_by, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, 0, $4, $5, $6, $6) ON CONFLICT (sha256) DO NOTHING",
                &[
                    Value::Text(&r.sha256),
                    big(r.size),
                    Value::Text(&r.mime),
                    Value::Bool(false),
                    Value::Text(device_id),
                    Value::Int(now),
                ],
            )?;
            lock_attachment(tx, &r.sha256)?.ok_or_else(|| {
                StorageError::Database(format!("attachment {} vanished", r.sha256))
            })?
        }
    };
    if meta.complete {
        return Ok(AppendOutcome::AlreadyComplete);
    }
    if meta.size != r.size || meta.mime != r.mime {
        // Another reference named the same hash with another size or type and its upload
        // started first; the hash decides at the end which one was true.
        return Ok(AppendOutcome::Declared {
            size: meta.size,
            mime: meta.mime,
            held: meta.held,
        });
    }
    if offset != meta.held {
        return Ok(AppendOutcome::WrongOffset { held: meta.held });
    }
    let end = offset.saturating_add(bytes.len() as u64);
    if end > meta.size {
        return Ok(AppendOutcome::PastEnd { size: meta.size });
    }
    if bytes.is_empty() {
        return Ok(AppendOutcome::Appended { held: meta.held });
    }
    if !b.blob_write(tx, &r.sha256, offset, bytes)? {
        // The store lost bytes the metadata counts (a crash between the two): start over.
        b.blob_discard(tx, &r.sha256)?;
        tx.execute(
            "UPDATE attachments SET held = 0, updated_at_ms = $2 WHERE sha256 = $1",
            params![r.sha256.as_str(), now],
        )?;
        return Ok(AppendOutcome::WrongOffset { held: 0 });
    }
    tx.execute(
        "UPDATE attachments SET held = $2, updated_at_ms = $3 WHERE sha256 = $1",
        &[Value::Text(&r.sha256), big(end), Value::Int(now)],
    )?;
    if end < meta.size {
        return Ok(AppendOutcome::Appended { held: end });
    }
    let whole = AttachmentMeta { held: end, ..meta };
    match verify_whole(b, tx, &whole) {
        Ok(()) => {
            b.blob_complete(tx, &r.sha256)?;
            tx.execute(
                "UPDATE attachments SET complete = $2, completed_at_ms = $3 WHERE sha256 = $1",
                params![r.sha256.as_str(), true, now],
            )?;
            Ok(AppendOutcome::Completed)
        }
        Err(reason) => {
            b.blob_discard(tx, &r.sha256)?;
            tx.execute(
                "DELETE FROM attachments WHERE sha256 = $1",
                params![r.sha256.as_str()],
            )?;
            Ok(AppendOutcome::Corrupt { reason })
        }
    }
}

/// Attachments garbage collection deletes per transaction.
const GC_BATCH: i64 = 256;

/// One batch of garbage collection: the attachments it deleted (empty when done).
fn gc_batch<B: Backend>(
    b: &B,
    tx: &mut dyn Tx,
    partial_before_ms: i64,
) -> StorageResult<Vec<GcEntry>> {
    let found: Vec<(AttachmentMeta, bool)> = tx.rows(
        "attachments",
        &format!(
            "SELECT {}, EXISTS (SELECT 1 FROM attachment_refs r WHERE r.sha256 = a.sha256)
             FROM attachments a
             WHERE NOT EXISTS (SELECT 1 FROM attachment_refs r WHERE r.sha256 = a.sha256)
                OR (NOT a.complete AND a.updated_at_ms < $1)
             ORDER BY a.sha256 LIMIT $2",
            cols(&INS_ATTACHMENTS)
        ),
        params![partial_before_ms, GC_BATCH],
        |r| {
            let referenced: bool = r.get(9)?;
            Ok((attachment_row(r)?, referenced))
        },
    )?;
    let mut out = Vec::with_capacity(found.len());
    for (meta, referenced) in found {
        b.blob_discard(tx, &meta.sha256)?;
        tx.execute(
            "DELETE FROM attachments WHERE sha256 = $1",
            params![meta.sha256.as_str()],
        )?;
        out.push(GcEntry {
            meta,
            reason: if referenced {
                GcReason::StalePartial
            } else {
                GcReason::Unreferenced
            },
        });
    }
    Ok(out)
}

// ---- The Storage trait, once. ----

impl<B: Backend> Storage for SqlStorage<B> {
    fn backend_name(&self) -> &'static str {
        B::NAME
    }

    fn epoch(&self) -> StorageResult<String> {
        self.backend
            .single(false, |tx| {
                tx.value(
                    "server_meta",
                    "SELECT value FROM server_meta WHERE key = 'epoch'",
                    &[],
                )
            })?
            .ok_or_else(|| StorageError::NotFound("server epoch".into()))
    }

    fn rotate_epoch(&self) -> StorageResult<String> {
        let e = new_epoch();
        self.backend.single(true, |tx| {
            tx.execute(
                "UPDATE server_meta SET value = $1 WHERE key = 'epoch'",
                params![e.as_str()],
            )
        })?;
        Ok(e)
    }

    fn reference_generation(&self) -> StorageResult<i64> {
        let v: Option<String> = self.backend.single(false, |tx| {
            tx.value(
                "server_meta",
                "SELECT value FROM server_meta WHERE key = 'ref_generation'",
                &[],
            )
        })?;
        let v = v.ok_or_else(|| StorageError::NotFound("reference generation".into()))?;
        v.parse().map_err(|_| {
            StorageError::BadRow(format!(
                "server_meta row 'ref_generation', column value: '{v}' is not an integer"
            ))
        })
    }

    fn grids(&self) -> StorageResult<Vec<GridNode>> {
        self.backend.single(false, |tx| {
            tx.rows(
                "grids",
                &format!("SELECT {} FROM grids ORDER BY code", cols(&INS_GRIDS)),
                &[],
                |r| {
                    let g = grid_row(r)?;
                    Ok(GridNode {
                        code: g.code,
                        name: g.name,
                        level: g.level,
                        kind: g.kind,
                        parent: g.parent,
                    })
                },
            )
        })
    }

    fn import_grids(&self, nodes: &[GridNode]) -> StorageResult<()> {
        let rows: Vec<GridRow> = nodes
            .iter()
            .map(|n| GridRow {
                code: n.code.clone(),
                name: n.name.clone(),
                level: n.level,
                kind: n.kind,
                parent: n.parent.clone(),
            })
            .collect();
        self.backend.write(|tx| {
            import_chunk(tx, &DumpChunk::Grids(rows))?;
            bump_generation(tx)
        })
    }

    fn upsert_person(&self, p: &Person) -> StorageResult<()> {
        let row = PersonRow {
            id: p.id.clone(),
            name: p.name.clone(),
            phone: p.phone.clone(),
            role: p.role,
            grids: p.grids.clone(),
            active: true,
        };
        self.backend.write(|tx| {
            import_chunk(tx, &DumpChunk::People(vec![row]))?;
            bump_generation(tx)
        })
    }

    fn person(&self, id: &str) -> StorageResult<Option<Person>> {
        self.backend.single(false, |tx| {
            tx.row(
                "people",
                &format!(
                    "SELECT {} FROM people WHERE id = $1 AND active",
                    cols(&INS_PEOPLE)
                ),
                params![id],
                |r| person_row(r).map(person_of),
            )
        })
    }

    fn people(&self) -> StorageResult<Vec<Person>> {
        self.backend.single(false, |tx| {
            tx.rows(
                "people",
                &format!(
                    "SELECT {} FROM people WHERE active ORDER BY id",
                    cols(&INS_PEOPLE)
                ),
                &[],
                |r| person_row(r).map(person_of),
            )
        })
    }

    fn all_people(&self) -> StorageResult<Vec<PersonRow>> {
        self.backend.single(false, |tx| {
            tx.rows(
                "people",
                &format!("SELECT {} FROM people ORDER BY id", cols(&INS_PEOPLE)),
                &[],
                person_row,
            )
        })
    }

    fn insert_code(&self, code: &EnrolCode) -> StorageResult<()> {
        let row = CodeRow {
            code: code.clone(),
            used_at_ms: None,
        };
        self.backend
            .single(true, |tx| import_chunk(tx, &DumpChunk::Codes(vec![row])))
    }

    fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
        device: &Device,
    ) -> StorageResult<Option<String>> {
        self.backend.write(|tx| {
            // Two redemptions at once: the second waits for the first's write, then finds
            // the code used.
            let person: Option<String> = tx.value(
                "enrol_codes",
                "UPDATE enrol_codes SET used_at_ms = $2
                 WHERE code_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2
                 RETURNING person_id",
                params![code_hash, now],
            )?;
            let Some(person) = person else {
                return Ok(None);
            };
            let d = Device {
                person_id: person.clone(),
                pending_hash: None,
                created_at_ms: now,
                last_seen_ms: None,
                revoked_at_ms: None,
                revoked_reason: None,
                ..device.clone()
            };
            import_chunk(tx, &DumpChunk::Devices(vec![d]))?;
            Ok(Some(person))
        })
    }

    fn device(&self, id: &str) -> StorageResult<Option<Device>> {
        self.backend.single(false, |tx| {
            tx.row(
                "devices",
                &format!("SELECT {} FROM devices WHERE id = $1", cols(&INS_DEVICES)),
                params![id],
                device_row,
            )
        })
    }

    fn devices(&self) -> StorageResult<Vec<Device>> {
        self.backend.single(false, |tx| {
            tx.rows(
                "devices",
                &format!(
                    "SELECT {} FROM devices ORDER BY created_at_ms, id",
                    cols(&INS_DEVICES)
                ),
                &[],
                device_row,
            )
        })
    }

    fn set_pending_secret(&self, device_id: &str, hash: &str) -> StorageResult<()> {
        self.backend.single(true, |tx| {
            tx.execute(
                "UPDATE devices SET pending_hash = $2 WHERE id = $1",
                params![device_id, hash],
            )
        })?;
        Ok(())
    }

    fn promote_pending_secret(&self, device_id: &str) -> StorageResult<()> {
        self.backend.single(true, |tx| {
            tx.execute(
                "UPDATE devices SET secret_hash = pending_hash, pending_hash = NULL WHERE id = $1 AND pending_hash IS NOT NULL",
                params![device_id],
            )
        })?;
        Ok(())
    }

    fn revoke_device(&self, device_id: &str, reason: &str, now: i64) -> StorageResult<()> {
        let n = self.backend.single(true, |tx| {
            tx.execute(
                "UPDATE devices SET revoked_at_ms = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at_ms IS NULL",
                params![device_id, now, reason],
            )
        })?;
        if n == 0 {
            return Err(StorageError::NotFound(format!(
                "no active device {device_id}"
            )));
        }
        Ok(())
    }

    fn touch_device(&self, device_id: &str, now: i64) -> StorageResult<()> {
        self.backend.single(true, |tx| {
            tx.execute(
                "UPDATE devices SET last_seen_ms = $2 WHERE id = $1",
                params![device_id, now],
            )
        })?;
        Ok(())
    }

    fn record(&self, id: &str) -> StorageResult<Option<StoredRecord>> {
        self.backend.single(false, |tx| {
            tx.row(
                "records",
                "SELECT id, kind, grid, doc FROM records WHERE id = $1",
                params![id],
                |mut r| {
                    Ok(StoredRecord {
                        doc: r.take_blob(3)?.unwrap_or_default(),
                        kind: r.get(1)?,
                        grid: r.get(2)?,
                    })
                },
            )
        })
    }

    fn apply_push(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>> {
        // A cancelled decision empties the batch's writes (`decide_batch`), so nothing is
        // written; once cancelled, every later decision (a retry) is cancelled too.
        let cancelled = std::cell::Cell::new(false);
        let mut watch = |stored: Option<&StoredRecord>, p: &PushRecord| {
            if cancelled.get() {
                return PushDecision::Cancelled;
            }
            let d = process(stored, p);
            if matches!(d, PushDecision::Cancelled) {
                cancelled.set(true);
            }
            d
        };
        let results = self.backend.push(author, records, &mut watch)?;
        if cancelled.get() {
            return Err(StorageError::Cancelled);
        }
        Ok(results)
    }

    fn pull(&self, feeds: &[FeedRead], limit: u32, byte_budget: usize) -> StorageResult<PullPage> {
        self.backend
            .read(|tx| pull_page(tx, feeds, limit, byte_budget))
    }

    fn full_records(&self, ids: &[String]) -> StorageResult<Vec<PullRecord>> {
        let mut seen = HashSet::new();
        let ids: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| seen.insert(*id))
            .collect();
        let mut by_id: HashMap<String, PullRecord> = HashMap::with_capacity(ids.len());
        self.backend.single(false, |tx| {
            tx.query(
                "records",
                "SELECT id, kind, grid, seq, doc, heads FROM records WHERE id IN LIST($1)",
                params![ids.as_slice()],
                &mut |mut r| {
                    let rec = PullRecord {
                        bytes: r.take_blob(4)?.unwrap_or_default(),
                        id: r.get(0)?,
                        kind: r.get::<RecordKind>(1)?.tag(),
                        grid: r.get(2)?,
                        seq: r.get(3)?,
                        full: true,
                        heads: r.get::<Heads>(5)?.0,
                    };
                    by_id.insert(rec.id.clone(), rec);
                    Ok(())
                },
            )
        })?;
        // In the order asked, each id once.
        Ok(ids.iter().filter_map(|id| by_id.remove(*id)).collect())
    }

    fn feed_head(&self, grid: &str) -> StorageResult<u64> {
        let v: Option<u64> = self.backend.single(false, |tx| {
            tx.value(
                "feed_heads",
                "SELECT seq FROM feed_heads WHERE grid = $1",
                params![grid],
            )
        })?;
        Ok(v.unwrap_or(0))
    }

    fn cursor_valid(&self, grid: &str, seq: u64, token: u64) -> StorageResult<bool> {
        if seq == 0 {
            return Ok(true);
        }
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(false);
        };
        let t: Option<i64> = self.backend.single(false, |tx| {
            tx.value(
                "feed_log",
                "SELECT token FROM feed_log WHERE grid = $1 AND seq = $2",
                params![grid, seq],
            )
        })?;
        Ok(t == Some(token as i64))
    }

    fn audit(&self, entry: &AuditEntry) -> StorageResult<()> {
        self.backend.single(true, |tx| {
            tx.insert_rows(&INS_AUDIT, &[audit_values(entry)])
        })
    }

    fn audit_list(&self, filter: &AuditFilter, limit: u32) -> StorageResult<Vec<AuditEntry>> {
        let (cond, arg) = match filter {
            AuditFilter::Record(id) => ("WHERE record_id = $2", Some(id.as_str())),
            AuditFilter::Person(id) => ("WHERE person_id = $2", Some(id.as_str())),
            AuditFilter::Grid(g) => ("WHERE grid = $2", Some(g.as_str())),
            AuditFilter::All => ("", None),
        };
        let sql = format!(
            "SELECT {} FROM audit {cond} ORDER BY id LIMIT $1",
            cols(&INS_AUDIT_WITH_ID)
        );
        let limit = i64::from(limit);
        let p: Vec<Value<'_>> = match arg {
            Some(a) => vec![Value::Int(limit), Value::Text(a)],
            None => vec![Value::Int(limit)],
        };
        self.backend.single(false, |tx| {
            tx.rows("audit", &sql, &p, |r| audit_row(r).map(|(_, e)| e))
        })
    }

    fn audit_page(
        &self,
        filter: &AuditFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> StorageResult<Vec<(i64, AuditEntry)>> {
        // Newest first below a cursor: each filter walks its (column, id) index backwards.
        let (column, arg) = match filter {
            AuditFilter::Record(id) => (Some("record_id"), Some(id.as_str())),
            AuditFilter::Person(id) => (Some("person_id"), Some(id.as_str())),
            AuditFilter::Grid(g) => (Some("grid"), Some(g.as_str())),
            AuditFilter::All => (None, None),
        };
        let mut conds = vec!["id < $2".to_string()];
        let mut p: Vec<Value<'_>> = vec![
            Value::Int(i64::from(limit)),
            Value::Int(before_id.unwrap_or(i64::MAX)),
        ];
        if let (Some(c), Some(a)) = (column, arg) {
            conds.push(format!("{c} = $3"));
            p.push(Value::Text(a));
        }
        let sql = format!(
            "SELECT {} FROM audit WHERE {} ORDER BY id DESC LIMIT $1",
            cols(&INS_AUDIT_WITH_ID),
            conds.join(" AND ")
        );
        self.backend
            .single(false, |tx| tx.rows("audit", &sql, &p, audit_row))
    }

    fn record_counts(&self) -> StorageResult<Vec<(String, i64)>> {
        self.backend.single(false, |tx| {
            tx.rows(
                "records",
                "SELECT kind, COUNT(*) FROM records GROUP BY kind ORDER BY kind",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    fn is_empty(&self) -> StorageResult<bool> {
        self.backend.read(is_empty_tx)
    }

    fn export(&self, sink: &mut DumpSink<'_>) -> StorageResult<()> {
        self.backend.read(|tx| export_all(&self.backend, tx, sink))
    }

    fn import(&self, source: &mut DumpSource<'_>) -> StorageResult<CopyCounts> {
        self.backend.write(|tx| {
            if let Some(lock) = B::IMPORT_LOCK {
                tx.execute(lock, &[])?;
            }
            if !is_empty_tx(tx)? {
                return Err(StorageError::Invalid(
                    "the target database already holds data; copy only into an empty one".into(),
                ));
            }
            let mut counts = CopyCounts::new();
            let mut unread = query::RebuildReport::default();
            source(&mut |chunk: DumpChunk| {
                let (table, n) = chunk.table();
                *counts.entry(table.to_string()).or_insert(0) += n as u64;
                match &chunk {
                    DumpChunk::AttachmentBytes {
                        sha256,
                        offset,
                        bytes,
                        last,
                    } => import_attachment_bytes(&self.backend, tx, sha256, *offset, bytes, *last),
                    DumpChunk::Records(rows) => {
                        import_chunk(tx, &chunk)?;
                        // Query rows are not copied: they follow from the documents.
                        let docs: Vec<(&str, RecordKind, &[u8])> = rows
                            .iter()
                            .map(|r| (r.id.as_str(), r.kind, r.doc.as_slice()))
                            .collect();
                        query::materialize_docs(tx, &docs, &mut unread)
                    }
                    _ => import_chunk(tx, &chunk),
                }
            })?;
            if let Some(done) = B::IMPORT_DONE {
                tx.execute(done, &[])?;
            }
            if unread.unreadable_count > 0 {
                tracing::warn!(
                    count = unread.unreadable_count,
                    first = ?unread.unreadable.first(),
                    "imported records whose documents do not read have no query rows"
                );
            }
            Ok(counts)
        })
    }

    fn backup_to(&self, dest: &Path) -> StorageResult<()> {
        if dest.exists() {
            return Err(StorageError::Invalid(format!(
                "backup target {} already exists",
                dest.display()
            )));
        }
        if !self.backend.backup_native(dest)? {
            let copy = super::sqlite::SqliteStorage::open(dest)?;
            copy_all(self, &copy)?;
            copy.mark_restored()?;
        }
        Ok(())
    }

    fn set_push_commit_delay(&self, d: std::time::Duration) {
        self.backend.set_push_commit_delay(d);
    }

    fn grid_subtree(&self, roots: &[String]) -> StorageResult<Vec<String>> {
        let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
        self.backend.read(|tx| query::subtree(tx, &roots))
    }

    fn directory(
        &self,
        filter: &DirectoryFilter,
        page: PageReq,
    ) -> StorageResult<Page<ProducerRow>> {
        let args = query::DirectoryArgs::of(filter);
        let q = query::directory_sql(filter, &args.grids, args.pattern.as_deref(), page)?;
        self.backend
            .read(|tx| query::run_page(tx, &q, page.limit, query::producer_row))
    }

    fn review_queue(
        &self,
        grids: &[String],
        level: ReviewLevel,
        page: PageReq,
    ) -> StorageResult<Page<ProducerRow>> {
        let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
        let q = query::review_queue_sql(&grids, level, page)?;
        self.backend
            .read(|tx| query::run_page(tx, &q, page.limit, query::producer_row))
    }

    fn query_producer(&self, id: &str) -> StorageResult<Option<ProducerRow>> {
        self.backend.read(|tx| query::producer_of(tx, id))
    }

    fn producer_reviews(&self, producer_id: &str) -> StorageResult<Vec<ReviewRow>> {
        self.backend.read(|tx| query::reviews_of(tx, producer_id))
    }

    fn producer_visits(&self, producer_id: &str, page: PageReq) -> StorageResult<Page<VisitRow>> {
        let q = query::producer_visits_sql(producer_id, page)?;
        self.backend
            .read(|tx| query::run_page(tx, &q, page.limit, |r| query::visit_row(&r)))
    }

    fn visits(&self, filter: &VisitFilter, page: PageReq) -> StorageResult<Page<VisitRow>> {
        let grids: Vec<&str> = filter.grids.iter().map(String::as_str).collect();
        let q = query::visits_sql(filter, &grids, page)?;
        self.backend
            .read(|tx| query::run_page(tx, &q, page.limit, |r| query::visit_row(&r)))
    }

    fn open_rectifications(
        &self,
        grids: &[String],
        today: &str,
        overdue_only: bool,
        page: PageReq,
    ) -> StorageResult<Page<RectificationRow>> {
        let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
        let q = query::open_rectifications_sql(&grids, today, overdue_only, page)?;
        self.backend
            .read(|tx| query::run_page(tx, &q, page.limit, query::rectification_row))
    }

    fn for_each_producer(
        &self,
        grids: &[String],
        each: &mut dyn FnMut(ProducerRow) -> StorageResult<()>,
    ) -> StorageResult<()> {
        super::exports::for_each_producer(&self.backend, grids, each)
    }

    fn for_each_visit(
        &self,
        grids: &[String],
        period: Period,
        which: VisitSet,
        each: &mut dyn FnMut(VisitExportRow) -> StorageResult<()>,
    ) -> StorageResult<()> {
        super::exports::for_each_visit(&self.backend, grids, period, which, each)
    }

    fn activity(&self, grids: &[String], period: Period) -> StorageResult<Vec<ActivityRow>> {
        super::exports::activity(&self.backend, grids, period)
    }

    fn acceptances(
        &self,
        grids: &[String],
        up_to_year: i32,
    ) -> StorageResult<Vec<super::acceptance::AcceptanceRow>> {
        let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
        self.backend
            .read(|tx| super::acceptance::rows_of(tx, &grids, up_to_year))
    }

    fn unconfirmed_counts(&self, grids: &[String], year: i32) -> StorageResult<Vec<(String, i64)>> {
        let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
        self.backend
            .read(|tx| super::confirmations::unconfirmed_counts(tx, &grids, year))
    }

    fn duplicate_candidates(
        &self,
        q: &super::duplicates::CandidateQuery,
    ) -> StorageResult<Vec<super::duplicates::Candidate>> {
        self.backend.read(|tx| super::duplicates::candidates(tx, q))
    }

    fn name_cores(&self, grids: &[String]) -> StorageResult<Vec<(String, String)>> {
        let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
        self.backend
            .read(|tx| super::duplicates::name_cores(tx, &grids))
    }

    fn change_key(&self, create: bool) -> StorageResult<Vec<u8>> {
        if create {
            self.backend
                .write(|tx| super::duplicates::change_key(tx, true))
        } else {
            self.backend
                .read(|tx| super::duplicates::change_key(tx, false))
        }
    }

    fn open_duplicate_ids(&self, grids: &[String], limit: u32) -> StorageResult<Vec<String>> {
        let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
        self.backend
            .read(|tx| super::duplicates::open_ids(tx, &grids, limit))
    }

    fn merged_entries(&self, into: &str) -> StorageResult<Vec<ProducerRow>> {
        self.backend
            .read(|tx| super::desk_duplicates::merged_entries(tx, into))
    }

    fn rebuild_query_tables(&self) -> StorageResult<RebuildReport> {
        let mut report = RebuildReport::default();
        let mut after: Option<String> = None;
        loop {
            let mut batch = report.clone();
            let last = retry_conflicts(|| {
                batch = report.clone();
                self.backend.write(|tx| {
                    let ids = query::rebuild_ids(tx, after.as_deref())?;
                    let mut sorted: Vec<&str> = ids.iter().map(|i| i.0.as_str()).collect();
                    sorted.sort_unstable();
                    self.backend.lock_records(tx, &sorted)?;
                    query::rebuild_batch(tx, &ids, &mut batch)?;
                    Ok(ids.last().map(|i| i.0.clone()))
                })
            })?;
            report = batch;
            match last {
                Some(id) => after = Some(id),
                None => break,
            }
        }
        loop {
            let n = retry_conflicts(|| self.backend.write(|tx| query::delete_orphans(tx, 1000)))?;
            report.orphans += n;
            if n == 0 {
                break;
            }
        }
        Ok(report)
    }

    fn query_snapshot(&self) -> StorageResult<QuerySnapshot> {
        self.backend.read(query::snapshot)
    }

    fn tallies(&self, q: &TallyQuery) -> StorageResult<Tallies> {
        self.backend.read(|tx| super::tallies::read(tx, q))
    }

    fn attachment(&self, sha256: &str) -> StorageResult<Option<AttachmentMeta>> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        self.backend.single(false, |tx| {
            tx.row(
                "attachments",
                &format!(
                    "SELECT {} FROM attachments WHERE sha256 = $1",
                    cols(&INS_ATTACHMENTS)
                ),
                params![sha256],
                attachment_row,
            )
        })
    }

    fn append_attachment(
        &self,
        device_id: &str,
        r: &AttachmentRef,
        offset: u64,
        bytes: &[u8],
        limits: &AttachmentLimits,
    ) -> StorageResult<AppendOutcome> {
        if !is_sha256_hex(&r.sha256) {
            return Err(StorageError::Invalid(format!(
                "attachment name '{}' is not a SHA-256",
                r.sha256.chars().take(80).collect::<String>()
            )));
        }
        gridsync_core::attachment::check_mime(&r.mime)
            .map_err(|e| StorageError::Invalid(e.to_string()))?;
        if bytes.len() > 16 * ATTACHMENT_DUMP_PIECE {
            return Err(StorageError::Invalid(format!(
                "{} bytes in one append; at most {}",
                bytes.len(),
                16 * ATTACHMENT_DUMP_PIECE
            )));
        }
        self.backend
            .write(|tx| append_tx(&self.backend, tx, device_id, r, offset, bytes, limits))
    }

    fn read_attachment(&self, sha256: &str, offset: u64, max: usize) -> StorageResult<Vec<u8>> {
        let missing = || StorageError::NotFound(format!("attachment {sha256}"));
        if !is_sha256_hex(sha256) {
            return Err(missing());
        }
        self.backend.read(|tx| {
            let meta: Option<(u64, bool)> = tx.row(
                "attachments",
                "SELECT held, complete FROM attachments WHERE sha256 = $1",
                params![sha256],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (held, complete) = meta.ok_or_else(missing)?;
            if offset >= held {
                return Ok(Vec::new());
            }
            let n = (held - offset).min(max.min(ATTACHMENT_PIECE) as u64) as usize;
            self.backend.blob_read(tx, sha256, complete, offset, n)
        })
    }

    fn may_upload(
        &self,
        device_id: &str,
        sha256: &str,
        declared: Option<(u64, &str)>,
    ) -> StorageResult<bool> {
        if !is_sha256_hex(sha256) {
            return Ok(false);
        }
        let found: Option<i64> = self.backend.single(false, |tx| match declared {
            Some((size, mime)) => tx.value(
                "attachment_refs",
                "SELECT 1 FROM attachment_refs WHERE sha256 = $1 AND device_id = $2 AND size = $3 AND mime = $4 LIMIT 1",
                &[Value::Text(sha256), Value::Text(device_id), big(size), Value::Text(mime)],
            ),
            None => tx.value(
                "attachment_refs",
                "SELECT 1 FROM attachment_refs WHERE sha256 = $1 AND device_id = $2 LIMIT 1",
                params![sha256, device_id],
            ),
        })?;
        Ok(found.is_some())
    }

    fn may_download(&self, grids: &[&str], sha256: &str) -> StorageResult<bool> {
        if !is_sha256_hex(sha256) || grids.is_empty() {
            return Ok(false);
        }
        let found: Option<i64> = self.backend.single(false, |tx| {
            tx.value(
                "attachment_refs",
                "SELECT 1 FROM attachment_refs a JOIN records r ON r.id = a.record_id
                 WHERE a.sha256 = $1 AND r.grid IN LIST($2) LIMIT 1",
                params![sha256, grids],
            )
        })?;
        Ok(found.is_some())
    }

    fn attachment_refs(&self, sha256: &str) -> StorageResult<Vec<AttachmentRefRow>> {
        self.backend.single(false, |tx| {
            tx.rows(
                "attachment_refs",
                &format!(
                    "SELECT {} FROM attachment_refs WHERE sha256 = $1 ORDER BY record_id, device_id",
                    cols(&INS_ATTACHMENT_REFS)
                ),
                params![sha256],
                attachment_ref_row,
            )
        })
    }

    fn gc_attachments(&self, partial_before_ms: i64) -> StorageResult<Vec<GcEntry>> {
        let mut out = Vec::new();
        loop {
            let batch = self
                .backend
                .write(|tx| gc_batch(&self.backend, tx, partial_before_ms))?;
            let done = (batch.len() as i64) < GC_BATCH;
            out.extend(batch);
            if done {
                break;
            }
        }
        self.backend.write(|tx| self.backend.blob_sweep(tx))?;
        Ok(out)
    }
}

/// Runs `f` again (a few times) when two transactions got in each other's way.
pub(super) fn retry_conflicts<T>(mut f: impl FnMut() -> StorageResult<T>) -> StorageResult<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f() {
            Err(StorageError::Conflict(e)) if attempt < 4 => {
                tracing::warn!(attempt, "query table rebuild retried: {e}");
                std::thread::sleep(std::time::Duration::from_millis(5 * attempt));
            }
            other => return other,
        }
    }
}

impl<B: Backend> SqlStorage<B> {
    /// Fills the query tables of a database that gained them by a migration (marked by its
    /// `query_tables` meta row): every record's rows, then the mark is removed. Run when
    /// the storage opens; nothing to do afterwards.
    pub(crate) fn fill_query_tables_if_new(&self) -> StorageResult<()> {
        let pending: Option<String> = self.backend.single(false, |tx| {
            tx.value(
                "server_meta",
                "SELECT value FROM server_meta WHERE key = 'query_tables'",
                &[],
            )
        })?;
        if pending.is_none() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let r = self.rebuild_query_tables()?;
        if r.records > 0 {
            tracing::info!(
                records = r.records,
                producers = r.producers,
                visits = r.visits,
                unreadable = r.unreadable_count,
                seconds = started.elapsed().as_secs_f64(),
                "query tables filled from the stored documents"
            );
        }
        self.backend.write(|tx| {
            tx.execute("DELETE FROM server_meta WHERE key = 'query_tables'", &[])
                .map(|_| ())
        })
    }

    /// Marks this database as a backup: the first server to open it takes a new epoch.
    pub(crate) fn mark_restored(&self) -> StorageResult<()> {
        self.backend.write(|tx| {
            tx.execute(
                "INSERT INTO server_meta (key, value) VALUES ('restored_backup', '1') ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[],
            )
            .map(|_| ())
        })
    }
}
