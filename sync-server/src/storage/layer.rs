//! Storage written once: every algorithm of the server's storage (meta and reference data,
//! devices and codes, feed paging, whole records, the audit trail, sequencing and writing a
//! decided push, dump and import, backup) over the narrow [`Backend`] trait. A backend
//! holds only what truly differs between databases: connections and transactions, the
//! dialect of its SQL ([`Tx`]), how concurrent pushes are kept apart, and migrations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use gridsync_core::model::{GridNode, Person, RecordKind};
use gridsync_core::sync::protocol::{Departure, PullRecord, PushRecord, PushResult};

use super::batch::{resolve_since, Op};
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

fn bump_generation(tx: &mut dyn Tx) -> StorageResult<()> {
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
    pub(super) const INS_AUDIT_WITH_ID: Insert = Insert { table: "audit", columns: &[("id", Int), ("at_ms", Int), ("person_id", Text), ("device_id", Text), ("record_id", Text), ("kind", Text), ("grid", Text), ("action", Text), ("detail", Text)], on_conflict: "" };
}
use inserts::*;

/// The column list of a table, as its bulk insert names it.
fn cols(ins: &Insert) -> String {
    let names: Vec<&str> = ins.columns.iter().map(|c| c.0).collect();
    names.join(", ")
}

/// The data tables, in dependency order (an import fills them in this order).
pub(crate) const DATA_TABLES: [&str; 10] = [
    "grids",
    "people",
    "enrol_codes",
    "devices",
    "records",
    "changes",
    "departures",
    "feed_heads",
    "feed_log",
    "audit",
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
    if ops.is_empty() {
        return Ok(());
    }
    let now = gridsync_core::now_ms();
    let mut need: BTreeMap<&str, i64> = BTreeMap::new();
    for op in ops {
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
    for op in ops {
        let seq = take(&op.grid)?;
        if let Some(from) = &op.moved_from {
            deps.push((from.as_str(), take(from)?, op));
        }
        since_of.push(resolve_since(op.since, seq, &since_of));
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
    let audit: Vec<Vec<Value<'_>>> = ops
        .iter()
        .zip(&details)
        .map(|(op, detail)| {
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
    tx.insert_rows(&INS_AUDIT, &audit)
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
             FROM records WHERE grid = $1 AND seq > $2 AND kind = 'template' ORDER BY seq LIMIT $3"
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

fn export_all(tx: &mut dyn Tx, sink: &mut DumpSink<'_>) -> StorageResult<()> {
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
    )
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
        self.backend.read(|tx| export_all(tx, sink))
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
            source(&mut |chunk: DumpChunk| {
                let (table, n) = chunk.table();
                *counts.entry(table.to_string()).or_insert(0) += n as u64;
                import_chunk(tx, &chunk)
            })?;
            if let Some(done) = B::IMPORT_DONE {
                tx.execute(done, &[])?;
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
}

impl<B: Backend> SqlStorage<B> {
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
