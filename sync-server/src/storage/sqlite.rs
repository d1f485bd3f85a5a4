//! The embedded SQLite backend: one file in the data directory, WAL, one writer connection
//! and a small pool of readers. Sequences are taken inside the single write transaction, so
//! they are committed in the order they are assigned and no cursor can skip an entry.
//!
//! Pushes are decided outside the writer (on the request's own thread, against a snapshot)
//! and committed in groups: whichever push finds the writer free writes every decided push
//! waiting at that moment in one transaction, so one disk flush serves them all. A push whose
//! records changed between its snapshot and the commit is decided again.
//!
//! Everything else (what is read and written, and how) is in `layer.rs`; this file holds
//! only connections, the SQLite dialect of [`Tx`], group commit, backup and migrations.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use gridsync_core::migrate::{MigrateError, Steps, UserVersion};
use gridsync_core::sync::protocol::{PushRecord, PushResult};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::batch::{decide_batch, Op, Since};
use super::layer::{batch_ids, init_meta, load_current, write_ops, Backend, SqlStorage};
use super::sql::{to_sqlite, Cell, Insert, Row, Tx, Value};
use super::*;

/// The server's SQLite schema steps.
pub const STEPS: Steps = Steps {
    what: "server SQLite",
    scripts: &[
        include_str!("migrations/sqlite_0001.sql"),
        include_str!("migrations/sqlite_0002.sql"),
        include_str!("migrations/sqlite_0003.sql"),
        include_str!("migrations/sqlite_0004.sql"),
        include_str!("migrations/sqlite_0005.sql"),
        include_str!("migrations/sqlite_0006.sql"),
        include_str!("migrations/sqlite_0007.sql"),
        include_str!("migrations/sqlite_0008.sql"),
        include_str!("migrations/sqlite_0009.sql"),
        include_str!("migrations/sqlite_0010.sql"),
        include_str!("migrations/sqlite_0011.sql"),
    ],
};

/// SQLite storage: the shared storage layer over the [`Sqlite`] backend.
pub type SqliteStorage = SqlStorage<Sqlite>;

/// The SQLite backend.
#[derive(Debug)]
pub struct Sqlite {
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
/// Reader connections kept open between reads. A burst of pushes reads on as many threads
/// as requests run at once (the device lookup, the snapshot a push is decided on): with
/// too few kept, most reads opened a connection (schema read, pragmas) and closed it again,
/// 5 % of the server's CPU in the 200-device ingest burst with 8.
const MAX_IDLE_READERS: usize = 48;
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

impl Drop for Sqlite {
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
    storage: &'a Sqlite,
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
    // A push runs some 60 distinct statements (the judgement's reads, the document, the
    // feed, each query table): rusqlite's default of 16 cached statements made most of
    // them be parsed again on every use (`sqlite3Prepare` was a tenth of a burst's CPU).
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(c)
}

/// Prepared statements each connection keeps (a few KiB each, only those used).
const STATEMENT_CACHE: usize = 128;

/// Runs the schema steps a database lacks, in the transaction `tx`.
pub(crate) fn migrate_tx(tx: &rusqlite::Transaction<'_>, target: i64) -> StorageResult<()> {
    STEPS
        .migrate_to(&mut UserVersion(tx), target)
        .map_err(|e| match e {
            MigrateError::TooNew { .. } => StorageError::Invalid(e.to_string()),
            MigrateError::Database(e) => e.into(),
        })?;
    Ok(())
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
            migrate_tx(&tx, STEPS.latest())?;
            init_meta(&mut SqliteTx(&tx))?;
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
        let storage = SqlStorage::new(Sqlite {
            writer: Mutex::new(c),
            readers: Mutex::new(Vec::new()),
            path,
            group: Mutex::new(Group::default()),
            group_cv: Condvar::new(),
            checkpoints,
            checkpointer: Some(checkpointer),
        });
        storage.fill_query_tables_if_new()?;
        Ok(storage)
    }
}

/// A SQLite connection (or transaction) as a [`Tx`].
pub(crate) struct SqliteTx<'a>(pub &'a Connection);

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(b))),
            // `IN LIST($n)` reads the list with json_each.
            Value::TextList(l) => ToSqlOutput::Owned(rusqlite::types::Value::Text(
                serde_json::to_string(l)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            )),
        })
    }
}

fn cell(v: ValueRef<'_>) -> StorageResult<Cell> {
    Ok(match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(f) => {
            return Err(StorageError::BadRow(format!(
                "a real number ({f}) where no column holds one"
            )))
        }
        ValueRef::Text(t) => Cell::Text(
            String::from_utf8(t.to_vec())
                .map_err(|_| StorageError::BadRow("text that is not UTF-8".into()))?,
        ),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    })
}

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> StorageResult<u64> {
        let mut st = self.0.prepare_cached(&to_sqlite(sql))?;
        Ok(st.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[Value<'_>],
        each: &mut dyn FnMut(Row) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let mut st = self.0.prepare_cached(&to_sqlite(sql))?;
        let names: Arc<[String]> = st.column_names().iter().map(|n| n.to_string()).collect();
        let n = names.len();
        let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(r) = rows.next()? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                cells.push(cell(r.get_ref(i)?)?);
            }
            each(Row {
                table,
                names: names.clone(),
                cells,
            })?;
        }
        Ok(())
    }

    fn insert_rows(&mut self, ins: &Insert, rows: &[Vec<Value<'_>>]) -> StorageResult<()> {
        let cols: Vec<&str> = ins.columns.iter().map(|c| c.0).collect();
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}){}",
            ins.table,
            cols.join(", "),
            marks.join(", "),
            ins.on_conflict
        );
        let mut st = self.0.prepare_cached(&sql)?;
        for r in rows {
            st.execute(rusqlite::params_from_iter(r.iter()))?;
        }
        Ok(())
    }
}

impl Backend for Sqlite {
    const NAME: &'static str = "sqlite";
    const IMPORT_LOCK: Option<&'static str> = None;
    const IMPORT_DONE: Option<&'static str> = None;

    fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StorageResult<T>) -> StorageResult<T> {
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path)?,
        };
        // Each read sees one consistent snapshot (BEGIN/COMMIT as cached statements: they
        // are run several times per request).
        conn.prepare_cached("BEGIN")?.execute([])?;
        let out = f(&mut SqliteTx(&conn));
        conn.prepare_cached("COMMIT")?.execute([])?;
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        out
    }

    fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StorageResult<T>) -> StorageResult<T> {
        let mut c = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut SqliteTx(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    fn push(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>> {
        for _ in 0..GROUP_ATTEMPTS {
            if let Some(r) = self.push_grouped(author, records, process)? {
                return Ok(r);
            }
        }
        // A push that keeps meeting concurrent changes of its records is decided while
        // holding the writer.
        self.write(|tx| {
            let current = load_current(tx, &batch_ids(records))?
                .into_iter()
                .map(|(id, c)| (id, (c.rec, Since::Stored(c.grid_since))))
                .collect();
            let decided = decide_batch(records, current, process);
            write_ops(tx, author, &decided.ops)?;
            Ok(decided.outcomes)
        })
    }

    fn blob_write(
        &self,
        _tx: &mut dyn Tx,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> StorageResult<bool> {
        self.blobs().write(sha256, offset, bytes)
    }

    fn blob_read(
        &self,
        _tx: &mut dyn Tx,
        sha256: &str,
        complete: bool,
        offset: u64,
        max: usize,
    ) -> StorageResult<Vec<u8>> {
        self.blobs().read(sha256, complete, offset, max)
    }

    fn blob_complete(&self, _tx: &mut dyn Tx, sha256: &str) -> StorageResult<()> {
        self.blobs().complete(sha256)
    }

    fn blob_discard(&self, _tx: &mut dyn Tx, sha256: &str) -> StorageResult<()> {
        self.blobs().discard(sha256)
    }

    fn blob_sweep(&self, tx: &mut dyn Tx) -> StorageResult<u64> {
        self.blobs().sweep(tx)
    }

    fn backup_native(&self, dest: &Path) -> StorageResult<bool> {
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
        // VACUUM INTO copies the database file only: the complete attachments it names are
        // copied beside it (a partial upload is started again by its phone).
        copy.execute("DELETE FROM attachments WHERE NOT complete", [])?;
        // A backup signs nobody in: desk sessions and password-set links stay here.
        copy.execute_batch("DELETE FROM desk_sessions; DELETE FROM desk_links;")?;
        let into = Blobs::beside(dest);
        let mut after = String::new();
        loop {
            let page: Vec<String> = {
                let mut st = copy.prepare(
                    "SELECT sha256 FROM attachments WHERE sha256 > ?1 ORDER BY sha256 LIMIT 256",
                )?;
                let rows = st.query_map([&after], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<_, _>>()?
            };
            let Some(last) = page.last() else { break };
            after = last.clone();
            for sha in &page {
                self.blobs().copy_complete(sha, &into)?;
            }
        }
        Ok(true)
    }
}

impl Sqlite {
    /// The attachment files of this database.
    fn blobs(&self) -> Blobs {
        Blobs::beside(&self.path)
    }

    /// Decides a push against a snapshot, outside the writer, then commits it with whatever
    /// other pushes wait at the same moment. `None`: a record changed meanwhile.
    fn push_grouped(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Option<Vec<PushResult>>> {
        let ids = batch_ids(records);
        let snapshot = self.read(|tx| load_current(tx, &ids))?;
        let expect = ids
            .iter()
            .map(|id| {
                let seen = snapshot.get(*id).map(|c| (c.rec.grid.clone(), c.seq));
                (id.to_string(), seen)
            })
            .collect();
        let current = snapshot
            .into_iter()
            .map(|(id, c)| (id, (c.rec, Since::Stored(c.grid_since))))
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
        let fail_all =
            |failed: &mut Vec<(u64, JobResult)>, pending: &[&(u64, PushJob)], e: String| {
                failed.extend(pending.iter().map(|b| (b.0, JobResult::Failed(e.clone()))));
            };
        loop {
            let tx = match c.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => tx,
                Err(e) => {
                    fail_all(&mut failed, &pending, e.to_string());
                    return failed;
                }
            };
            let mut results = Vec::with_capacity(pending.len());
            let mut bad = None;
            for (i, (id, job)) in pending.iter().enumerate() {
                match write_job(&mut SqliteTx(&tx), job) {
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
                        fail_all(&mut failed, &pending, e.to_string());
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
}

/// Writes one decided push if its records are as its decision saw them (else `false`).
fn write_job(tx: &mut dyn Tx, job: &PushJob) -> StorageResult<bool> {
    for (id, seen) in &job.expect {
        let now = tx.row(
            "records",
            "SELECT grid, seq FROM records WHERE id = $1",
            super::sql::params![id],
            |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
        )?;
        if &now != seen {
            return Ok(false);
        }
    }
    write_ops(tx, &job.author, &job.ops)?;
    Ok(true)
}

/// The byte store of attachments on SQLite: files under `attachments/` beside the database
/// file. A partial upload is `partial/<sha256>`, appended and synced as bytes arrive; a
/// verified one is renamed to `<first two hex digits>/<sha256>`. Every change happens while
/// the database's single writer is held, inside the transaction of its metadata; the
/// metadata's `held` is the truth (a file longer than it is cut back before the next
/// append, a shorter one restarts the upload).
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    dir: std::path::PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Database(format!("attachment file {what} {}: {e}", path.display()))
}

/// Syncs a directory (a created, renamed or removed entry survives a power cut).
fn sync_dir(dir: &Path) -> StorageResult<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync of directory", dir, e))
}

impl Blobs {
    /// The store beside the database file `db`.
    pub(crate) fn beside(db: &Path) -> Blobs {
        let parent = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Blobs {
            dir: parent.join("attachments"),
        }
    }

    fn partial(&self, sha256: &str) -> std::path::PathBuf {
        self.dir.join("partial").join(sha256)
    }

    fn complete_path(&self, sha256: &str) -> std::path::PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }

    fn write(&self, sha256: &str, offset: u64, bytes: &[u8]) -> StorageResult<bool> {
        use std::io::{Seek, SeekFrom, Write};
        let dir = self.dir.join("partial");
        std::fs::create_dir_all(&dir).map_err(|e| io_err("directory", &dir, e))?;
        let path = self.partial(sha256);
        let existed = path.exists();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        let len = f.metadata().map_err(|e| io_err("size", &path, e))?.len();
        if len < offset {
            return Ok(false);
        }
        if len > offset {
            f.set_len(offset).map_err(|e| io_err("cut", &path, e))?;
        }
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.write_all(bytes))
            .and_then(|_| f.sync_data())
            .map_err(|e| io_err("write", &path, e))?;
        if !existed {
            sync_dir(&dir)?;
        }
        Ok(true)
    }

    fn read(
        &self,
        sha256: &str,
        complete: bool,
        offset: u64,
        max: usize,
    ) -> StorageResult<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let path = if complete {
            self.complete_path(sha256)
        } else {
            self.partial(sha256)
        };
        let f = std::fs::File::open(&path).map_err(|e| io_err("open", &path, e))?;
        let mut f = f;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err("seek", &path, e))?;
        let mut out = Vec::with_capacity(max.min(ATTACHMENT_DUMP_PIECE));
        f.take(max as u64)
            .read_to_end(&mut out)
            .map_err(|e| io_err("read", &path, e))?;
        Ok(out)
    }

    fn complete(&self, sha256: &str) -> StorageResult<()> {
        let to = self.complete_path(sha256);
        let dir = self.dir.join(&sha256[..2]);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("directory", &dir, e))?;
        let from = self.partial(sha256);
        std::fs::rename(&from, &to).map_err(|e| io_err("rename", &from, e))?;
        sync_dir(&dir)?;
        sync_dir(&self.dir.join("partial"))
    }

    fn discard(&self, sha256: &str) -> StorageResult<()> {
        for path in [self.partial(sha256), self.complete_path(sha256)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removal", &path, e)),
            }
        }
        Ok(())
    }

    /// Copies a complete attachment into `into` (skipped if it is there: the name is the
    /// content), through a temporary file, synced.
    fn copy_complete(&self, sha256: &str, into: &Blobs) -> StorageResult<()> {
        let to = into.complete_path(sha256);
        if to.exists() {
            return Ok(());
        }
        let dir = into.dir.join(&sha256[..2]);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("directory", &dir, e))?;
        let from = self.complete_path(sha256);
        let tmp = dir.join(format!("{sha256}.tmp"));
        std::fs::copy(&from, &tmp).map_err(|e| io_err("copy", &from, e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("sync", &tmp, e))?;
        std::fs::rename(&tmp, &to).map_err(|e| io_err("rename", &tmp, e))?;
        sync_dir(&dir)
    }

    /// Deletes partial files no partial upload row names. Complete files are left alone:
    /// backups written into one directory share their attachment files.
    fn sweep(&self, tx: &mut dyn Tx) -> StorageResult<u64> {
        let dir = self.dir.join("partial");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("listing", &dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("listing", &dir, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if !gridsync_core::attachment::is_sha256_hex(&name) {
                continue;
            }
            let partial: Option<i64> = tx.value(
                "attachments",
                "SELECT 1 FROM attachments WHERE sha256 = $1 AND NOT complete",
                super::sql::params![name.as_str()],
            )?;
            if partial.is_none() {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| io_err("removal", &path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
