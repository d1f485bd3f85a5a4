//! The embedded SQLite backend: one file in the data directory, WAL, one writer connection
//! and a small pool of readers. Sequences are taken inside the single write transaction, so
//! they are committed in the order they are assigned and no cursor can skip an entry.
//!
//! Pushes are decided outside the writer (on the request's own thread, against a snapshot)
//! and committed in groups: whichever push finds the writer free writes every decided push
//! waiting at that moment in one transaction, so one disk flush serves them all. A push whose
//! records changed between its snapshot and the commit is decided again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use gridsync_core::model::{GridKind, GridLevel, GridNode, Person, RecordKind, Role};
use gridsync_core::sync::protocol::{Departure, PullRecord, PushRecord, PushResult};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::batch::{decide_batch, resolve_since, Op, Since};
use super::*;

const STEPS: &[&str] = &[
    include_str!("migrations/sqlite_0001.sql"),
    include_str!("migrations/sqlite_0002.sql"),
];

/// SQLite storage.
#[derive(Debug)]
pub struct SqliteStorage {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    group: Mutex<Group>,
    group_cv: Condvar,
    checkpoints: Arc<Checkpoints>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

/// WAL pages after which the writer checkpoints by itself (the background checkpointer
/// normally keeps the WAL far below this).
const WRITER_AUTOCHECKPOINT: i64 = 16_000;
/// Group commits between two background checkpoints.
const COMMITS_PER_CHECKPOINT: u64 = 4;

/// Signals from the writer to the background checkpointer.
#[derive(Debug, Default)]
struct Checkpoints {
    /// (commits since the last checkpoint, stop).
    state: Mutex<(u64, bool)>,
    cv: Condvar,
}

impl Checkpoints {
    fn committed(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 += 1;
        if st.0 >= COMMITS_PER_CHECKPOINT {
            self.cv.notify_one();
        }
    }
}

/// Copies the WAL into the database file off the writer's path (PASSIVE: never blocks the
/// writer or readers), after every few group commits and when idle.
fn run_checkpointer(path: std::path::PathBuf, signals: Arc<Checkpoints>) {
    let Ok(conn) = open_conn(&path) else { return };
    loop {
        {
            let mut st = signals.state.lock().unwrap_or_else(|p| p.into_inner());
            while st.0 < COMMITS_PER_CHECKPOINT && !st.1 {
                let (next, timeout) = signals
                    .cv
                    .wait_timeout(st, std::time::Duration::from_secs(1))
                    .unwrap_or_else(|p| p.into_inner());
                st = next;
                if timeout.timed_out() && st.0 > 0 {
                    break;
                }
            }
            if st.1 {
                return;
            }
            st.0 = 0;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("background checkpoint: {e}");
        }
    }
}

impl Drop for SqliteStorage {
    fn drop(&mut self) {
        self.checkpoints
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1 = true;
        self.checkpoints.cv.notify_all();
        if let Some(t) = self.checkpointer.take() {
            t.join().ok();
        }
    }
}

/// Times a push is decided again after its records changed under it, before it is decided
/// while holding the writer.
const GROUP_ATTEMPTS: usize = 3;

/// A decided push waiting for a group commit.
#[derive(Debug)]
struct PushJob {
    author: Author,
    ops: Vec<Op>,
    /// Every record of the batch as the decision saw it: id and (grid, seq), or absent.
    expect: Vec<(String, Option<(String, i64)>)>,
}

/// What a group commit did with one push.
#[derive(Debug)]
enum JobResult {
    Done,
    /// A record changed since the push was decided: decide again.
    Conflict,
    Failed(String),
}

/// Pushes waiting for the writer, and results not yet collected.
#[derive(Debug, Default)]
struct Group {
    queue: Vec<(u64, PushJob)>,
    done: HashMap<u64, JobResult>,
    leader: bool,
    next_id: u64,
}

/// Hands the group back if the commit leader unwinds: its pushes fail, others may lead.
struct LeaderGuard<'a> {
    storage: &'a SqliteStorage,
    ids: Vec<u64>,
    results: Vec<(u64, JobResult)>,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.storage.group.lock().unwrap_or_else(|p| p.into_inner());
        let results = std::mem::take(&mut self.results);
        let finished: std::collections::HashSet<u64> = results.iter().map(|r| r.0).collect();
        g.done.extend(results);
        for id in &self.ids {
            if !finished.contains(id) {
                g.done.insert(
                    *id,
                    JobResult::Failed("the commit of this push failed inside the server".into()),
                );
            }
        }
        g.leader = false;
        self.storage.group_cv.notify_all();
    }
}

fn open_conn(path: &Path) -> StorageResult<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(30))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    Ok(c)
}

fn now_ms() -> i64 {
    gridsync_core::now_ms()
}

pub(crate) fn new_epoch() -> String {
    use rand::RngCore;
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl SqliteStorage {
    /// Opens (creating and migrating) the database file.
    pub fn open(path: impl AsRef<Path>) -> StorageResult<Self> {
        let path = path.as_ref().to_path_buf();
        let mut c = open_conn(&path)?;
        // The writer keeps the hot index pages of a busy server in memory (64 MiB).
        c.pragma_update(None, "cache_size", -65536)?;
        {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if v > STEPS.len() as i64 {
                return Err(StorageError::Invalid(format!(
                    "database schema {v} is newer than this server ({})",
                    STEPS.len()
                )));
            }
            for step in &STEPS[v as usize..] {
                tx.execute_batch(step)?;
            }
            tx.pragma_update(None, "user_version", STEPS.len() as i64)?;
            tx.execute(
                "INSERT OR IGNORE INTO server_meta (key, value) VALUES ('epoch', ?1)",
                [new_epoch()],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO server_meta (key, value) VALUES ('ref_generation', '1')",
                [],
            )?;
            // A database written by `admin backup` gets a new epoch the first time it is served.
            let restored: Option<String> = tx
                .query_row(
                    "SELECT value FROM server_meta WHERE key = 'restored_backup'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if restored.is_some() {
                tx.execute(
                    "UPDATE server_meta SET value = ?1 WHERE key = 'epoch'",
                    [new_epoch()],
                )?;
                tx.execute("DELETE FROM server_meta WHERE key = 'restored_backup'", [])?;
            }
            tx.commit()?;
        }
        c.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)?;
        let checkpoints = Arc::new(Checkpoints::default());
        let checkpointer = {
            let (p, s) = (path.clone(), checkpoints.clone());
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                .spawn(move || run_checkpointer(p, s))
                .map_err(|e| StorageError::Database(format!("checkpoint thread: {e}")))?
        };
        Ok(SqliteStorage {
            writer: Mutex::new(c),
            readers: Mutex::new(Vec::new()),
            path,
            group: Mutex::new(Group::default()),
            group_cv: Condvar::new(),
            checkpoints,
            checkpointer: Some(checkpointer),
        })
    }

    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StorageResult<T>) -> StorageResult<T> {
        let mut c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> StorageResult<T>) -> StorageResult<T> {
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path)?,
        };
        // Each read sees one consistent snapshot (BEGIN/COMMIT as cached statements: they
        // are run several times per request).
        conn.prepare_cached("BEGIN")?.execute([])?;
        let out = f(&conn);
        conn.prepare_cached("COMMIT")?.execute([])?;
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }

    /// Writes a consistent copy of the database to `dest`, marked so that the server
    /// takes a new epoch when it first serves the copy.
    pub fn backup_to(&self, dest: &Path) -> StorageResult<()> {
        let dest_s = dest
            .to_str()
            .ok_or_else(|| StorageError::Invalid("backup path is not UTF-8".into()))?;
        // VACUUM INTO takes its own read snapshot; it cannot run inside a transaction.
        open_conn(&self.path)?.execute("VACUUM INTO ?1", [dest_s])?;
        let copy = open_conn(dest)?;
        copy.execute(
            "INSERT OR REPLACE INTO server_meta (key, value) VALUES ('restored_backup', '1')",
            [],
        )?;
        Ok(())
    }
}

fn bump_generation(tx: &Transaction<'_>) -> StorageResult<()> {
    tx.execute(
        "UPDATE server_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'ref_generation'",
        [],
    )?;
    Ok(())
}

/// A random positive 63-bit token (fits SQLite's and PostgreSQL's signed 64-bit integers).
pub(crate) fn new_token() -> i64 {
    use rand::RngCore;
    (rand::rngs::OsRng.next_u64() >> 1) as i64 | 1
}

fn split_heads(b: &[u8]) -> Vec<[u8; 32]> {
    b.chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect()
}

fn person_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Person> {
    let role: String = r.get(3)?;
    let grids: String = r.get(4)?;
    Ok(Person {
        id: r.get(0)?,
        name: r.get(1)?,
        phone: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Liaison),
        grids: serde_json::from_str(&grids).unwrap_or_default(),
    })
}

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
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

const DEVICE_COLS: &str = "id, person_id, name, secret_hash, pending_hash, created_at_ms, last_seen_ms, revoked_at_ms, revoked_reason";

fn insert_audit(tx: &Connection, e: &AuditEntry) -> StorageResult<()> {
    tx.prepare_cached(
        "INSERT INTO audit (at_ms, person_id, device_id, record_id, kind, grid, action, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.at_ms,
        e.person_id,
        e.device_id,
        e.record_id,
        e.kind,
        e.grid,
        e.action,
        e.detail
    ])?;
    Ok(())
}

impl SqliteStorage {
    /// Decides a push against a snapshot, outside the writer, then commits it with whatever
    /// other pushes wait at the same moment.
    fn push_grouped(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Option<Vec<PushResult>>> {
        let mut ids: Vec<&str> = records.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let snapshot = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT kind, grid, doc, grid_since, seq FROM records WHERE id = ?1",
            )?;
            let mut out = HashMap::new();
            for id in &ids {
                let row = st
                    .query_row([id], |r| {
                        let kind: String = r.get(0)?;
                        Ok((
                            StoredRecord {
                                kind: RecordKind::parse(&kind).unwrap_or(RecordKind::Producer),
                                grid: r.get(1)?,
                                doc: r.get(2)?,
                            },
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })
                    .optional()?;
                if let Some(row) = row {
                    out.insert(id.to_string(), row);
                }
            }
            Ok(out)
        })?;
        let expect = ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    snapshot.get(*id).map(|s| (s.0.grid.clone(), s.2)),
                )
            })
            .collect();
        let current = snapshot
            .into_iter()
            .map(|(id, (rec, since, _))| (id, (rec, Since::Stored(since))))
            .collect();
        let decided = decide_batch(records, current, process);
        if decided.ops.is_empty() {
            // Nothing to write: the answer holds for the snapshot it was decided on.
            return Ok(Some(decided.outcomes));
        }
        match self.group_commit(PushJob {
            author: author.clone(),
            ops: decided.ops,
            expect,
        })? {
            JobResult::Done => Ok(Some(decided.outcomes)),
            JobResult::Conflict => Ok(None),
            JobResult::Failed(e) => Err(StorageError::Database(e)),
        }
    }

    /// Queues `job`; the first waiter to find no commit in progress commits every queued push.
    fn group_commit(&self, job: PushJob) -> StorageResult<JobResult> {
        let mut g = self.group.lock().unwrap_or_else(|p| p.into_inner());
        let id = g.next_id;
        g.next_id += 1;
        g.queue.push((id, job));
        loop {
            if let Some(r) = g.done.remove(&id) {
                return Ok(r);
            }
            if !g.leader {
                g.leader = true;
                let batch = std::mem::take(&mut g.queue);
                drop(g);
                let mut guard = LeaderGuard {
                    storage: self,
                    ids: batch.iter().map(|b| b.0).collect(),
                    results: Vec::new(),
                };
                guard.results = self.commit_jobs(batch);
                drop(guard);
                g = self.group.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            g = self.group_cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes queued pushes in one transaction. A push whose write fails is taken out and
    /// the others are written again without it.
    fn commit_jobs(&self, batch: Vec<(u64, PushJob)>) -> Vec<(u64, JobResult)> {
        let mut c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending: Vec<&(u64, PushJob)> = batch.iter().collect();
        let mut failed: Vec<(u64, JobResult)> = Vec::new();
        loop {
            let tx = match c.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => tx,
                Err(e) => {
                    failed.extend(
                        pending
                            .iter()
                            .map(|b| (b.0, JobResult::Failed(e.to_string()))),
                    );
                    return failed;
                }
            };
            let mut results = Vec::with_capacity(pending.len());
            let mut bad = None;
            for (i, (id, job)) in pending.iter().enumerate() {
                match write_job(&tx, job) {
                    Ok(true) => results.push((*id, JobResult::Done)),
                    // Checked before anything of the push is written.
                    Ok(false) => results.push((*id, JobResult::Conflict)),
                    Err(e) => {
                        bad = Some((i, e));
                        break;
                    }
                }
            }
            match bad {
                None => {
                    if let Err(e) = tx.commit() {
                        failed.extend(
                            pending
                                .iter()
                                .map(|b| (b.0, JobResult::Failed(e.to_string()))),
                        );
                        return failed;
                    }
                    self.checkpoints.committed();
                    failed.extend(results);
                    return failed;
                }
                Some((i, e)) => {
                    drop(tx);
                    failed.push((pending[i].0, JobResult::Failed(e.to_string())));
                    pending.remove(i);
                }
            }
        }
    }

    /// The original push path: decide while holding the writer (used when a push keeps
    /// meeting concurrent changes of its records).
    fn push_locked(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>> {
        self.write(|tx| {
            let mut current = HashMap::new();
            for p in records {
                if current.contains_key(&p.id) {
                    continue;
                }
                let row = tx
                    .prepare_cached(
                        "SELECT kind, grid, doc, grid_since FROM records WHERE id = ?1",
                    )?
                    .query_row([&p.id], |r| {
                        let kind: String = r.get(0)?;
                        Ok((
                            StoredRecord {
                                kind: RecordKind::parse(&kind).unwrap_or(RecordKind::Producer),
                                grid: r.get(1)?,
                                doc: r.get(2)?,
                            },
                            Since::Stored(r.get(3)?),
                        ))
                    })
                    .optional()?;
                if let Some(row) = row {
                    current.insert(p.id.clone(), row);
                }
            }
            let decided = decide_batch(records, current, process);
            write_ops(tx, author, &decided.ops)?;
            Ok(decided.outcomes)
        })
    }
}

/// Writes one decided push if its records are as its decision saw them (else `false`).
fn write_job(c: &Connection, job: &PushJob) -> StorageResult<bool> {
    let mut st = c.prepare_cached("SELECT grid, seq FROM records WHERE id = ?1")?;
    for (id, seen) in &job.expect {
        let now: Option<(String, i64)> = st
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if &now != seen {
            return Ok(false);
        }
    }
    write_ops(c, &job.author, &job.ops)?;
    Ok(true)
}

/// Writes decided records: sequences, departures, records, changes, audit.
fn write_ops(c: &Connection, author: &Author, ops: &[Op]) -> StorageResult<()> {
    // One counter update per grid for the whole push, then numbers in push order.
    let mut need: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for op in ops {
        *need.entry(op.grid.as_str()).or_insert(0) += 1;
        if let Some(from) = &op.moved_from {
            *need.entry(from.as_str()).or_insert(0) += 1;
        }
    }
    let mut next: HashMap<&str, i64> = HashMap::with_capacity(need.len());
    for (grid, n) in &need {
        let end: i64 = c
            .prepare_cached(
                "INSERT INTO feed_heads (grid, seq) VALUES (?1, ?2)
                 ON CONFLICT(grid) DO UPDATE SET seq = seq + excluded.seq RETURNING seq",
            )?
            .query_row(params![grid, n], |r| r.get(0))?;
        next.insert(grid, end - n + 1);
    }
    let mut take = |grid: &str| -> StorageResult<i64> {
        let slot = next
            .get_mut(grid)
            .ok_or_else(|| StorageError::Invalid(format!("no sequence taken for {grid}")))?;
        let seq = *slot;
        *slot += 1;
        c.prepare_cached("INSERT INTO feed_log (grid, seq, token) VALUES (?1, ?2, ?3)")?
            .execute(params![grid, seq, new_token()])?;
        Ok(seq)
    };
    let mut since_of: Vec<i64> = Vec::with_capacity(ops.len());
    for op in ops {
        let now = now_ms();
        let seq = take(&op.grid)?;
        if let Some(from) = &op.moved_from {
            let dep = take(from)?;
            c.prepare_cached(
                "INSERT INTO departures (grid, seq, record_id, new_grid) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![from, dep, op.id, op.grid])?;
        }
        let since = resolve_since(op.since, seq, &since_of);
        since_of.push(since);
        c.prepare_cached(
            "INSERT INTO records (id, kind, grid, doc, heads, seq, grid_since, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(id) DO UPDATE SET grid = ?3, doc = ?4, heads = ?5, seq = ?6, grid_since = ?7, updated_at_ms = ?8",
        )?
        .execute(params![op.id, op.kind.as_str(), op.grid, op.doc, op.heads, seq, since, now])?;
        c.prepare_cached(
            "INSERT INTO changes (record_id, grid, seq, bytes) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![op.id, op.grid, seq, op.new_changes])?;
        insert_audit(
            c,
            &AuditEntry {
                at_ms: now,
                person_id: author.person_id.clone(),
                device_id: author.device_id.clone(),
                record_id: Some(op.id.clone()),
                kind: Some(op.kind.as_str().into()),
                grid: Some(op.grid.clone()),
                action: op.action.into(),
                detail: format!("{} bytes of changes, feed seq {seq}", op.new_changes.len()),
            },
        )?;
    }
    Ok(())
}

impl Storage for SqliteStorage {
    fn epoch(&self) -> StorageResult<String> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT value FROM server_meta WHERE key = 'epoch'",
                [],
                |r| r.get(0),
            )?)
        })
    }

    fn rotate_epoch(&self) -> StorageResult<String> {
        let e = new_epoch();
        self.write(|tx| {
            tx.execute(
                "UPDATE server_meta SET value = ?1 WHERE key = 'epoch'",
                [&e],
            )?;
            Ok(())
        })?;
        Ok(e)
    }

    fn reference_generation(&self) -> StorageResult<i64> {
        self.read(|c| {
            let v: String = c.query_row(
                "SELECT value FROM server_meta WHERE key = 'ref_generation'",
                [],
                |r| r.get(0),
            )?;
            Ok(v.parse().unwrap_or(0))
        })
    }

    fn grids(&self) -> StorageResult<Vec<GridNode>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT code, name, level, kind, parent FROM grids ORDER BY code",
            )?;
            let rows = st.query_map([], |r| {
                let level: String = r.get(2)?;
                let kind: String = r.get(3)?;
                Ok(GridNode {
                    code: r.get(0)?,
                    name: r.get(1)?,
                    level: GridLevel::parse(&level).unwrap_or(GridLevel::Village),
                    kind: GridKind::parse(&kind).unwrap_or(GridKind::Mixed),
                    parent: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn import_grids(&self, nodes: &[GridNode]) -> StorageResult<()> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO grids (code, name, level, kind, parent) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(code) DO UPDATE SET name = ?2, level = ?3, kind = ?4, parent = ?5",
            )?;
            for n in nodes {
                st.execute(params![
                    n.code,
                    n.name,
                    n.level.as_str(),
                    n.kind.as_str(),
                    n.parent
                ])?;
            }
            bump_generation(tx)
        })
    }

    fn upsert_person(&self, p: &Person) -> StorageResult<()> {
        let grids =
            serde_json::to_string(&p.grids).map_err(|e| StorageError::Invalid(e.to_string()))?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO people (id, name, phone, role, grids, active) VALUES (?1, ?2, ?3, ?4, ?5, 1)
                 ON CONFLICT(id) DO UPDATE SET name = ?2, phone = ?3, role = ?4, grids = ?5, active = 1",
                params![p.id, p.name, p.phone, p.role.as_str(), grids],
            )?;
            bump_generation(tx)
        })
    }

    fn person(&self, id: &str) -> StorageResult<Option<Person>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT id, name, phone, role, grids FROM people WHERE id = ?1 AND active = 1",
                [id],
                person_from_row,
            )
            .optional()?)
        })
    }

    fn people(&self) -> StorageResult<Vec<Person>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, name, phone, role, grids FROM people WHERE active = 1 ORDER BY id",
            )?;
            let rows = st.query_map([], person_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn insert_code(&self, code: &EnrolCode) -> StorageResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO enrol_codes (code_hash, person_id, created_by, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![code.code_hash, code.person_id, code.created_by, code.created_at_ms, code.expires_at_ms],
            )?;
            Ok(())
        })
    }

    fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
        device: &Device,
    ) -> StorageResult<Option<String>> {
        self.write(|tx| {
            let person: Option<String> = tx
                .query_row(
                    "UPDATE enrol_codes SET used_at_ms = ?2
                     WHERE code_hash = ?1 AND used_at_ms IS NULL AND expires_at_ms > ?2
                     RETURNING person_id",
                    params![code_hash, now],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(person) = person else { return Ok(None) };
            tx.execute(
                &format!("INSERT INTO devices ({DEVICE_COLS}) VALUES (?1, ?2, ?3, ?4, NULL, ?5, NULL, NULL, NULL)"),
                params![device.id, person, device.name, device.secret_hash, now],
            )?;
            Ok(Some(person))
        })
    }

    fn device(&self, id: &str) -> StorageResult<Option<Device>> {
        self.read(|c| {
            Ok(c.query_row(
                &format!("SELECT {DEVICE_COLS} FROM devices WHERE id = ?1"),
                [id],
                device_from_row,
            )
            .optional()?)
        })
    }

    fn devices(&self) -> StorageResult<Vec<Device>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {DEVICE_COLS} FROM devices ORDER BY created_at_ms, id"
            ))?;
            let rows = st.query_map([], device_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn set_pending_secret(&self, device_id: &str, hash: &str) -> StorageResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE devices SET pending_hash = ?2 WHERE id = ?1",
                params![device_id, hash],
            )?;
            Ok(())
        })
    }

    fn promote_pending_secret(&self, device_id: &str) -> StorageResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE devices SET secret_hash = pending_hash, pending_hash = NULL WHERE id = ?1 AND pending_hash IS NOT NULL",
                [device_id],
            )?;
            Ok(())
        })
    }

    fn revoke_device(&self, device_id: &str, reason: &str, now: i64) -> StorageResult<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE devices SET revoked_at_ms = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at_ms IS NULL",
                params![device_id, now, reason],
            )?;
            if n == 0 {
                return Err(StorageError::NotFound(format!("no active device {device_id}")));
            }
            Ok(())
        })
    }

    fn touch_device(&self, device_id: &str, now: i64) -> StorageResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1",
                params![device_id, now],
            )?;
            Ok(())
        })
    }

    fn record(&self, id: &str) -> StorageResult<Option<StoredRecord>> {
        self.read(|c| load_record(c, id))
    }

    fn apply_push(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>> {
        // A cancelled decision empties the batch's writes (`decide_batch`), so nothing is
        // committed; once cancelled, every later decision is cancelled too.
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
        let mut results = None;
        for _ in 0..GROUP_ATTEMPTS {
            if let Some(r) = self.push_grouped(author, records, &mut watch)? {
                results = Some(r);
                break;
            }
        }
        let results = match results {
            Some(r) => r,
            None => self.push_locked(author, records, &mut watch)?,
        };
        if cancelled.get() {
            return Err(StorageError::Cancelled);
        }
        Ok(results)
    }

    fn pull(&self, feeds: &[FeedRead], limit: u32, byte_budget: usize) -> StorageResult<PullPage> {
        self.read(|c| {
            let mut page = PullPage::default();
            let mut bytes = 0usize;
            for feed in feeds {
                let room = (limit as usize).saturating_sub(page.records.len() + page.departures.len());
                if room == 0 || bytes >= byte_budget {
                    page.more = true;
                    break;
                }
                let kind_filter = if feed.templates_only { " AND kind = 'template'" } else { "" };
                let mut st = c.prepare_cached(&format!(
                    "SELECT id, kind, seq, grid_since, heads,
                            CASE WHEN ?2 = 0 OR grid_since > ?2 THEN doc END
                     FROM records WHERE grid = ?1 AND seq > ?2{kind_filter} ORDER BY seq LIMIT ?3"
                ))?;
                let mut entries: Vec<(u64, Option<PullRecord>, Option<Departure>)> = Vec::new();
                let rows = st.query_map(params![feed.grid, feed.after as i64, room as i64 + 1], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, Vec<u8>>(4)?,
                        r.get::<_, Option<Vec<u8>>>(5)?,
                    ))
                })?;
                for row in rows {
                    let (id, kind, seq, heads, doc) = row?;
                    let kind = RecordKind::parse(&kind).unwrap_or(RecordKind::Producer);
                    let rec = PullRecord {
                        id,
                        kind: kind.tag(),
                        grid: feed.grid.clone(),
                        seq,
                        full: doc.is_some(),
                        bytes: doc.unwrap_or_default(),
                        heads: split_heads(&heads),
                    };
                    entries.push((seq, Some(rec), None));
                }
                if !feed.templates_only {
                    let mut st = c.prepare_cached(
                        "SELECT record_id, seq, new_grid FROM departures WHERE grid = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                    )?;
                    let rows = st.query_map(params![feed.grid, feed.after as i64, room as i64 + 1], |r| {
                        Ok(Departure {
                            id: r.get(0)?,
                            grid: feed.grid.clone(),
                            seq: r.get::<_, i64>(1)? as u64,
                            new_grid: r.get(2)?,
                        })
                    })?;
                    for d in rows {
                        let d = d?;
                        entries.push((d.seq, None, Some(d)));
                    }
                    entries.sort_by_key(|e| e.0);
                }
                let mut cursor = None;
                let mut cut = false;
                for (i, (seq, rec, dep)) in entries.into_iter().enumerate() {
                    if i >= room || (bytes >= byte_budget && cursor.is_some()) {
                        cut = true;
                        break;
                    }
                    if let Some(mut rec) = rec {
                        if !rec.full {
                            let mut st = c.prepare_cached("SELECT bytes FROM changes WHERE record_id = ?1 AND grid = ?2 AND seq > ?3 ORDER BY seq")?;
                            let rows = st.query_map(params![rec.id, feed.grid, feed.after as i64], |r| r.get::<_, Vec<u8>>(0))?;
                            for b in rows {
                                rec.bytes.extend_from_slice(&b?);
                            }
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
                    let token: i64 = c.query_row(
                        "SELECT token FROM feed_log WHERE grid = ?1 AND seq = ?2",
                        params![feed.grid, seq as i64],
                        |r| r.get(0),
                    )?;
                    page.cursors.push((feed.grid.clone(), seq, token as u64));
                }
                if cut {
                    page.more = true;
                    break;
                }
            }
            Ok(page)
        })
    }

    fn full_records(&self, ids: &[String]) -> StorageResult<Vec<PullRecord>> {
        let mut seen = std::collections::HashSet::new();
        self.read(|c| {
            let mut out = Vec::new();
            let mut st = c.prepare_cached(
                "SELECT id, kind, grid, seq, doc, heads FROM records WHERE id = ?1",
            )?;
            for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
                let row = st
                    .query_row([id], |r| {
                        let kind: String = r.get(1)?;
                        Ok(PullRecord {
                            id: r.get(0)?,
                            kind: RecordKind::parse(&kind)
                                .unwrap_or(RecordKind::Producer)
                                .tag(),
                            grid: r.get(2)?,
                            seq: r.get::<_, i64>(3)? as u64,
                            full: true,
                            bytes: r.get(4)?,
                            heads: split_heads(&r.get::<_, Vec<u8>>(5)?),
                        })
                    })
                    .optional()?;
                out.extend(row);
            }
            Ok(out)
        })
    }

    fn feed_head(&self, grid: &str) -> StorageResult<u64> {
        self.read(|c| {
            let v: Option<i64> = c
                .query_row("SELECT seq FROM feed_heads WHERE grid = ?1", [grid], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(v.unwrap_or(0) as u64)
        })
    }

    fn cursor_valid(&self, grid: &str, seq: u64, token: u64) -> StorageResult<bool> {
        if seq == 0 {
            return Ok(true);
        }
        self.read(|c| {
            let t: Option<i64> = c
                .query_row(
                    "SELECT token FROM feed_log WHERE grid = ?1 AND seq = ?2",
                    params![grid, seq as i64],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(t == Some(token as i64))
        })
    }

    fn audit(&self, entry: &AuditEntry) -> StorageResult<()> {
        self.write(|tx| insert_audit(tx, entry))
    }

    fn audit_list(&self, filter: &AuditFilter, limit: u32) -> StorageResult<Vec<AuditEntry>> {
        self.read(|c| {
            let (cond, arg) = match filter {
                AuditFilter::Record(id) => ("record_id = ?1", id.as_str()),
                AuditFilter::Person(id) => ("person_id = ?1", id.as_str()),
                AuditFilter::Grid(g) => ("grid = ?1", g.as_str()),
                AuditFilter::All => ("?1 = ?1", ""),
            };
            let mut st = c.prepare(&format!(
                "SELECT at_ms, person_id, device_id, record_id, kind, grid, action, detail FROM audit
                 WHERE {cond} ORDER BY id LIMIT ?2"
            ))?;
            let rows = st.query_map(params![arg, limit], |r| {
                Ok(AuditEntry {
                    at_ms: r.get(0)?,
                    person_id: r.get(1)?,
                    device_id: r.get(2)?,
                    record_id: r.get(3)?,
                    kind: r.get(4)?,
                    grid: r.get(5)?,
                    action: r.get(6)?,
                    detail: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn record_counts(&self) -> StorageResult<Vec<(String, i64)>> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT kind, COUNT(*) FROM records GROUP BY kind ORDER BY kind")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn is_empty(&self) -> StorageResult<bool> {
        self.read(is_empty_conn)
    }

    fn export(&self, sink: &mut DumpSink<'_>) -> StorageResult<()> {
        self.read(|c| export_conn(c, sink))
    }

    fn import(&self, source: &mut DumpSource<'_>) -> StorageResult<CopyCounts> {
        self.write(|tx| {
            if !is_empty_conn(tx)? {
                return Err(StorageError::Invalid(
                    "the target database already holds data; copy only into an empty one".into(),
                ));
            }
            let mut counts = CopyCounts::new();
            source(&mut |chunk: DumpChunk| {
                let (table, n) = chunk.table();
                *counts.entry(table.to_string()).or_insert(0) += n as u64;
                import_chunk(tx, chunk)
            })?;
            Ok(counts)
        })
    }
}

const DATA_TABLES: [&str; 10] = [
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

fn is_empty_conn(c: &Connection) -> StorageResult<bool> {
    for t in DATA_TABLES {
        let any: bool = c.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {t})"), [], |r| {
            r.get(0)
        })?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

fn export_conn(c: &Connection, sink: &mut DumpSink<'_>) -> StorageResult<()> {
    fn table<T>(
        c: &Connection,
        sql: &str,
        row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<(T, usize)>,
        wrap: fn(Vec<T>) -> DumpChunk,
        sink: &mut DumpSink<'_>,
    ) -> StorageResult<()> {
        let mut st = c.prepare(sql)?;
        let mut rows = st.query([])?;
        let mut buf = ChunkBuffer::default();
        while let Some(r) = rows.next()? {
            let (v, bytes) = row(r)?;
            buf.push(v, bytes, wrap, sink)?;
        }
        buf.flush(wrap, sink)
    }
    table(
        c,
        "SELECT key, value FROM server_meta ORDER BY key",
        |r| Ok(((r.get(0)?, r.get(1)?), 0)),
        DumpChunk::Meta,
        sink,
    )?;
    table(
        c,
        "SELECT code, name, level, kind, parent FROM grids ORDER BY code",
        |r| {
            Ok((
                GridRow {
                    code: r.get(0)?,
                    name: r.get(1)?,
                    level: r.get(2)?,
                    kind: r.get(3)?,
                    parent: r.get(4)?,
                },
                0,
            ))
        },
        DumpChunk::Grids,
        sink,
    )?;
    table(
        c,
        "SELECT id, name, phone, role, grids, active FROM people ORDER BY id",
        |r| {
            Ok((
                PersonRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    phone: r.get(2)?,
                    role: r.get(3)?,
                    grids: r.get(4)?,
                    active: r.get::<_, i64>(5)? != 0,
                },
                0,
            ))
        },
        DumpChunk::People,
        sink,
    )?;
    table(
        c,
        "SELECT code_hash, person_id, created_by, created_at_ms, expires_at_ms, used_at_ms FROM enrol_codes ORDER BY code_hash",
        |r| {
            Ok((
                CodeRow {
                    code: EnrolCode { code_hash: r.get(0)?, person_id: r.get(1)?, created_by: r.get(2)?, created_at_ms: r.get(3)?, expires_at_ms: r.get(4)? },
                    used_at_ms: r.get(5)?,
                },
                0,
            ))
        },
        DumpChunk::Codes,
        sink,
    )?;
    table(
        c,
        &format!("SELECT {DEVICE_COLS} FROM devices ORDER BY id"),
        |r| Ok((device_from_row(r)?, 0)),
        DumpChunk::Devices,
        sink,
    )?;
    table(
        c,
        "SELECT id, kind, grid, doc, heads, seq, grid_since, updated_at_ms FROM records ORDER BY id",
        |r| {
            let row = RecordRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                grid: r.get(2)?,
                doc: r.get(3)?,
                heads: r.get(4)?,
                seq: r.get(5)?,
                grid_since: r.get(6)?,
                updated_at_ms: r.get(7)?,
            };
            let n = row.doc.len() + row.heads.len();
            Ok((row, n))
        },
        DumpChunk::Records,
        sink,
    )?;
    table(
        c,
        "SELECT record_id, grid, seq, bytes FROM changes ORDER BY record_id, grid, seq",
        |r| {
            let row = ChangeRow {
                record_id: r.get(0)?,
                grid: r.get(1)?,
                seq: r.get(2)?,
                bytes: r.get(3)?,
            };
            let n = row.bytes.len();
            Ok((row, n))
        },
        DumpChunk::Changes,
        sink,
    )?;
    table(
        c,
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
    table(
        c,
        "SELECT grid, seq FROM feed_heads ORDER BY grid",
        |r| Ok(((r.get(0)?, r.get(1)?), 0)),
        DumpChunk::FeedHeads,
        sink,
    )?;
    table(
        c,
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
    table(
        c,
        "SELECT id, at_ms, person_id, device_id, record_id, kind, grid, action, detail FROM audit ORDER BY id",
        |r| {
            Ok((
                (
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
                ),
                0,
            ))
        },
        DumpChunk::Audit,
        sink,
    )
}

fn import_chunk(tx: &Transaction<'_>, chunk: DumpChunk) -> StorageResult<()> {
    match chunk {
        DumpChunk::Meta(rows) => {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO server_meta (key, value) VALUES (?1, ?2)",
            )?;
            for (k, v) in rows {
                st.execute(params![k, v])?;
            }
        }
        DumpChunk::Grids(rows) => {
            let mut st = tx.prepare_cached(
                "INSERT INTO grids (code, name, level, kind, parent) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for g in rows {
                st.execute(params![g.code, g.name, g.level, g.kind, g.parent])?;
            }
        }
        DumpChunk::People(rows) => {
            let mut st = tx.prepare_cached("INSERT INTO people (id, name, phone, role, grids, active) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            for p in rows {
                st.execute(params![
                    p.id,
                    p.name,
                    p.phone,
                    p.role,
                    p.grids,
                    i64::from(p.active)
                ])?;
            }
        }
        DumpChunk::Codes(rows) => {
            let mut st = tx.prepare_cached(
                "INSERT INTO enrol_codes (code_hash, person_id, created_by, created_at_ms, expires_at_ms, used_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for c in rows {
                st.execute(params![
                    c.code.code_hash,
                    c.code.person_id,
                    c.code.created_by,
                    c.code.created_at_ms,
                    c.code.expires_at_ms,
                    c.used_at_ms
                ])?;
            }
        }
        DumpChunk::Devices(rows) => {
            let mut st = tx.prepare_cached(&format!(
                "INSERT INTO devices ({DEVICE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?;
            for d in rows {
                st.execute(params![
                    d.id,
                    d.person_id,
                    d.name,
                    d.secret_hash,
                    d.pending_hash,
                    d.created_at_ms,
                    d.last_seen_ms,
                    d.revoked_at_ms,
                    d.revoked_reason
                ])?;
            }
        }
        DumpChunk::Records(rows) => {
            let mut st = tx.prepare_cached(
                "INSERT INTO records (id, kind, grid, doc, heads, seq, grid_since, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in rows {
                st.execute(params![
                    r.id,
                    r.kind,
                    r.grid,
                    r.doc,
                    r.heads,
                    r.seq,
                    r.grid_since,
                    r.updated_at_ms
                ])?;
            }
        }
        DumpChunk::Changes(rows) => {
            let mut st = tx.prepare_cached(
                "INSERT INTO changes (record_id, grid, seq, bytes) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for c in rows {
                st.execute(params![c.record_id, c.grid, c.seq, c.bytes])?;
            }
        }
        DumpChunk::Departures(rows) => {
            let mut st = tx.prepare_cached(
                "INSERT INTO departures (grid, seq, record_id, new_grid) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for d in rows {
                st.execute(params![d.grid, d.seq, d.record_id, d.new_grid])?;
            }
        }
        DumpChunk::FeedHeads(rows) => {
            let mut st = tx.prepare_cached("INSERT INTO feed_heads (grid, seq) VALUES (?1, ?2)")?;
            for (g, s) in rows {
                st.execute(params![g, s])?;
            }
        }
        DumpChunk::FeedLog(rows) => {
            let mut st =
                tx.prepare_cached("INSERT INTO feed_log (grid, seq, token) VALUES (?1, ?2, ?3)")?;
            for f in rows {
                st.execute(params![f.grid, f.seq, f.token])?;
            }
        }
        DumpChunk::Audit(rows) => {
            let mut st = tx.prepare_cached(
                "INSERT INTO audit (id, at_ms, person_id, device_id, record_id, kind, grid, action, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for (id, e) in rows {
                st.execute(params![
                    id,
                    e.at_ms,
                    e.person_id,
                    e.device_id,
                    e.record_id,
                    e.kind,
                    e.grid,
                    e.action,
                    e.detail
                ])?;
            }
        }
    }
    Ok(())
}

fn load_record(c: &Connection, id: &str) -> StorageResult<Option<StoredRecord>> {
    let row: Option<(String, String, Vec<u8>)> = c
        .query_row(
            "SELECT kind, grid, doc FROM records WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.map(|(kind, grid, doc)| StoredRecord {
        kind: RecordKind::parse(&kind).unwrap_or(RecordKind::Producer),
        grid,
        doc,
    }))
}
