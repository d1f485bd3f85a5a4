//! The PostgreSQL backend: several server instances share one database.
//!
//! Same tables and meaning as the SQLite backend. What differs is concurrency: SQLite has
//! one writer, PostgreSQL has many pushes committing at once, from several instances.
//! A push therefore
//! 1. reads its stored records in one statement (a snapshot) and decides every record (the
//!    expensive Automerge work) holding no lock, no transaction and no connection;
//! 2. queues what it decided for this instance's group commit: the first push to find no
//!    group being written writes every queued push in one transaction, which
//!    - locks the ids of all their records (transaction-scoped advisory locks, in sorted
//!      order), so two pushes of one record never both write what they merged against the
//!      same stored document;
//!    - reads the grid and sequence of each record's last write and leaves out every push
//!      one of whose records moved since its snapshot (or is written by an earlier push of
//!      the group): that push is decided again on a new snapshot, and after three such
//!      rounds it is decided holding its records' locks;
//!    - takes the feed sequences by incrementing each grid's `feed_heads` row, grids in
//!      sorted order, and writes every push with one insert per table. The row stays locked
//!      until the commit, so a second transaction writing into the same grid waits and takes
//!      the next numbers only after the first committed: per grid, commit order equals
//!      sequence order, and a reader whose snapshot shows sequence `n` also shows every
//!      sequence below `n`. A device cursor can therefore never pass an entry that commits
//!      late.
//!
//! A group transaction that fails for a reason other than a conflict is written again one
//! push per transaction, so that one push's failure is its own. Every push commits whole or
//! not at all: a crash mid-push leaves nothing of it.
//!
//! Locks are always taken in one global order (record ids sorted, then grids sorted), so pushes
//! do not deadlock; a deadlock or serialization failure reported anyway is retried.
//! `docs/postgres.md` explains the mechanism.
//!
//! Everything else (what is read and written, and how) is in `layer.rs`; this file holds
//! only the pool, the PostgreSQL dialect of [`Tx`], the push's locking, and migrations.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use ::postgres as pg;
use gridsync_core::migrate::{MigrateError, Steps, Versioned};
use gridsync_core::sync::protocol::{PushRecord, PushResult};
use pg::error::SqlState;
use pg::types::private::BytesMut;
use pg::types::{IsNull, ToSql, Type};
use pg::{Client, GenericClient, IsolationLevel, NoTls, Statement};

use super::batch::Op;
use super::batch::{decide_batch, Since};
use super::layer::{
    batch_ids, init_meta, load_current, write_jobs, write_ops, Backend, SqlStorage,
};
use super::sql::{params, to_postgres, Cell, Insert, Row, Tx, Ty, Value};
use super::*;
/// Advisory lock class of record ids (the two-key form; migrations use the one-key form).
const RECORD_LOCK_CLASS: i32 = 0x6773;
/// Times a push is decided on a snapshot and found overtaken by a concurrent write of one
/// of its records before it is decided holding the records' locks.
const SNAPSHOT_ATTEMPTS: u32 = 3;
/// Attempts of a push that hits a deadlock or serialization failure.
const PUSH_ATTEMPTS: u32 = 4;
/// Default pool size (override with `GRIDSYNC_DB_POOL_SIZE`).
const DEFAULT_POOL_SIZE: u32 = 16;

impl From<pg::Error> for StorageError {
    fn from(e: pg::Error) -> Self {
        if is_retryable(&e) {
            return StorageError::Conflict(e.to_string());
        }
        match e.as_db_error() {
            Some(db) => StorageError::Database(format!("{}: {}", db.code().code(), db.message())),
            None => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                StorageError::Database(msg)
            }
        }
    }
}

/// A pooled connection with its prepared statements.
struct PgConn {
    client: Client,
    stmts: HashMap<String, Statement>,
}

#[derive(Debug)]
struct Manager {
    config: pg::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = pg::Error;

    fn connect(&self) -> Result<PgConn, pg::Error> {
        Ok(PgConn {
            client: self.config.connect(NoTls)?,
            stmts: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), pg::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

type Pool = r2d2::Pool<Manager>;

/// A counting semaphore: at most half the pool's connections are held by pushes, so a push
/// that needs a second connection (the push logic reads templates and producers) always
/// finds one.
#[derive(Debug)]
struct Slots {
    free: Mutex<u32>,
    cv: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn take(&self) -> SlotGuard<'_> {
        let mut n = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *n == 0 {
            n = self.cv.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// The PostgreSQL backend: a connection pool.
pub struct Postgres {
    pool: Pool,
    push_slots: Slots,
    group: Mutex<Group>,
    group_cv: Condvar,
    schema: Option<String>,
    commit_delay_ms: AtomicU64,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("schema", &self.schema)
            .field("pool", &self.pool.state())
            .finish()
    }
}

pub(crate) fn check_schema_name(s: &str) -> StorageResult<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "schema name '{s}' must be 1-63 of a-z, 0-9, _ and not start with a digit"
        )))
    }
}

fn is_retryable(e: &pg::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// The server's PostgreSQL schema steps.
pub const STEPS: Steps = Steps {
    what: "server PostgreSQL",
    scripts: &[
        include_str!("migrations/postgres_0001.sql"),
        include_str!("migrations/postgres_0002.sql"),
        include_str!("migrations/postgres_0003.sql"),
        include_str!("migrations/postgres_0004.sql"),
        include_str!("migrations/postgres_0005.sql"),
        include_str!("migrations/postgres_0006.sql"),
        include_str!("migrations/postgres_0007.sql"),
        include_str!("migrations/postgres_0008.sql"),
        include_str!("migrations/postgres_0009.sql"),
        include_str!("migrations/postgres_0010.sql"),
    ],
};

/// PostgreSQL storage: the shared storage layer over the [`Postgres`] backend.
pub type PostgresStorage = SqlStorage<Postgres>;

impl PostgresStorage {
    /// Connects to `url` (`postgres://user@host:port/db`), migrating the schema if needed.
    pub fn open(url: &str) -> StorageResult<Self> {
        let s = Postgres::open_with(url, None).map(SqlStorage::new)?;
        s.fill_query_tables_if_new()?;
        Ok(s)
    }

    /// Like [`PostgresStorage::open`], in the named schema of the database (created if
    /// missing). Tests use one schema each; instances that share data use the same one.
    pub fn open_in_schema(url: &str, schema: &str) -> StorageResult<Self> {
        let s = Postgres::open_with(url, Some(schema)).map(SqlStorage::new)?;
        s.fill_query_tables_if_new()?;
        Ok(s)
    }

    /// The schema this storage works in, if one was named.
    pub fn schema(&self) -> Option<&str> {
        self.backend().schema.as_deref()
    }
}

impl Postgres {
    fn open_with(url: &str, schema: Option<&str>) -> StorageResult<Self> {
        let mut config = pg::Config::from_str(url)
            .map_err(|e| StorageError::Invalid(format!("database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("gridsync-server");
        }
        if let Some(schema) = schema {
            check_schema_name(schema)?;
            let mut c = config.connect(NoTls)?;
            if let Err(e) = c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")) {
                // Two instances creating the schema at once: one of them loses the race.
                if !matches!(e.code(), Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_SCHEMA)
                {
                    return Err(e.into());
                }
            }
            let opts = format!(
                "{} -c search_path={schema}",
                config.get_options().unwrap_or_default()
            );
            config.options(opts.trim());
        }
        // Statements are prepared once per pooled connection; after five runs PostgreSQL
        // may switch a statement to a generic plan and keep it for the connection's life.
        // A generic plan made while a table was small (a new server, the first minutes of a
        // burst) scans the table: refreshing `q_producers.last_visit_ms` of a push's ten
        // producers by id took 2.8 ms at 10,000 rows instead of 0.2. Custom plans are made
        // for the values of each execution (a URL may choose otherwise).
        if !config
            .get_options()
            .is_some_and(|o| o.contains("plan_cache_mode"))
        {
            let opts = format!(
                "{} -c plan_cache_mode=force_custom_plan",
                config.get_options().unwrap_or_default()
            );
            config.options(opts.trim());
        }
        let mut c = config.connect(NoTls)?;
        migrate(&mut c, STEPS.latest())?;
        drop(c);
        let size = std::env::var("GRIDSYNC_DB_POOL_SIZE")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n >= 2)
            .unwrap_or(DEFAULT_POOL_SIZE);
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(30))
            .build(Manager { config })
            .map_err(|e| StorageError::Database(format!("connection pool: {e}")))?;
        Ok(Postgres {
            pool,
            push_slots: Slots {
                free: Mutex::new(size / 2),
                cv: Condvar::new(),
            },
            schema: schema.map(str::to_string),
            commit_delay_ms: AtomicU64::new(0),
            group: Mutex::new(Group::default()),
            group_cv: Condvar::new(),
        })
    }

    fn conn(&self) -> StorageResult<r2d2::PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| StorageError::Database(format!("connection pool: {e}")))
    }

    /// Decides the batch on a snapshot of its records (no lock, no transaction held while
    /// the Automerge work runs), then writes it in a short transaction that locks the
    /// records' ids and first checks that none of them was written since the snapshot.
    /// `None`: one was (nothing written; decide again).
    fn push_on_snapshot(
        &self,
        author: &Author,
        records: &[PushRecord],
        ids: &[&str],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Option<Vec<PushResult>>> {
        // One statement: its own consistent snapshot.
        let snapshot = self.single(false, |t| load_current(t, ids))?;
        let expect: Vec<(&str, Option<(String, i64)>)> = ids
            .iter()
            .map(|id| (*id, snapshot.get(*id).map(|c| (c.rec.grid.clone(), c.seq))))
            .collect();
        let current = snapshot
            .into_iter()
            .map(|(id, c)| (id, (c.rec, Since::Stored(c.grid_since))))
            .collect();
        let decided = decide_batch(records, current, process);
        if decided.ops.is_empty() {
            // Nothing to write (duplicates, refusals, or a cancelled batch): the answer
            // holds for the snapshot it was decided on.
            return Ok(Some(decided.outcomes));
        }
        let job = Job {
            author: author.clone(),
            ops: decided.ops,
            expect: expect
                .into_iter()
                .map(|(id, seen)| (id.to_string(), seen))
                .collect(),
        };
        match self.group_commit(job)? {
            JobResult::Done => Ok(Some(decided.outcomes)),
            JobResult::Conflict => Ok(None),
            JobResult::Failed(e) => Err(e),
        }
    }

    /// Queues `job` with the pushes into the same grids; the first waiter to find no group
    /// of those grids being written writes every push queued for them in one transaction
    /// (one lock statement, one check, one insert per table, one commit), and the others
    /// wait for their result. Pushes into other grids form groups of their own, written at
    /// the same time: a group waiting for a grid's counter row (held by a transaction of
    /// another instance until it commits) holds up no push into other grids.
    fn group_commit(&self, job: Job) -> StorageResult<JobResult> {
        let key = job.grids();
        let mut g = self.group.lock().unwrap_or_else(|p| p.into_inner());
        let id = g.next_id;
        g.next_id += 1;
        g.queues.entry(key.clone()).or_default().push((id, job));
        loop {
            if let Some(r) = g.done.remove(&id) {
                return Ok(r);
            }
            if !g.leaders.contains(&key) {
                g.leaders.insert(key.clone());
                let batch = g.queues.remove(&key).unwrap_or_default();
                drop(g);
                let mut guard = LeaderGuard {
                    pg: self,
                    key: key.clone(),
                    ids: batch.iter().map(|b| b.0).collect(),
                    results: Vec::new(),
                };
                guard.results = self.write_group(batch);
                drop(guard);
                g = self.group.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            g = self.group_cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes a group of decided pushes in one transaction. A push whose records were
    /// written since its snapshot (by another instance, a push decided holding the locks, or
    /// an earlier push of this group) is left out as a conflict and decided again. If the
    /// transaction fails for another reason, each push is written in its own, so that one
    /// push's failure is its own.
    fn write_group(&self, batch: Vec<(u64, Job)>) -> Vec<(u64, JobResult)> {
        let mut order: Vec<usize> = Vec::new();
        let attempt = self.in_push_tx(|t| {
            order.clear();
            let mut all: Vec<&str> = batch
                .iter()
                .flat_map(|(_, j)| j.expect.iter().map(|e| e.0.as_str()))
                .collect();
            all.sort_unstable();
            all.dedup();
            lock_ids(t, &all)?;
            let now = stored_versions(t, &all)?;
            let mut taken: HashSet<&str> = HashSet::new();
            for (i, (_, job)) in batch.iter().enumerate() {
                let fresh = job.expect.iter().all(|(id, seen)| {
                    !taken.contains(id.as_str()) && now.get(id.as_str()) == seen.as_ref()
                });
                if fresh {
                    taken.extend(job.expect.iter().map(|e| e.0.as_str()));
                    order.push(i);
                }
            }
            let jobs: Vec<(&Author, &[Op])> = order
                .iter()
                .map(|&i| (&batch[i].1.author, batch[i].1.ops.as_slice()))
                .collect();
            write_jobs(t, &jobs)
        });
        match attempt {
            Ok(()) => batch
                .iter()
                .enumerate()
                .map(|(i, (id, _))| {
                    let r = if order.contains(&i) {
                        JobResult::Done
                    } else {
                        JobResult::Conflict
                    };
                    (*id, r)
                })
                .collect(),
            Err(e) if batch.len() == 1 => batch
                .iter()
                .map(|(id, _)| (*id, JobResult::Failed(e_clone(&e))))
                .collect(),
            Err(_) => batch
                .iter()
                .map(|(id, job)| {
                    let one = self.in_push_tx(|t| {
                        let ids: Vec<&str> = job.expect.iter().map(|e| e.0.as_str()).collect();
                        lock_ids(t, &ids)?;
                        let now = stored_versions(t, &ids)?;
                        if !job
                            .expect
                            .iter()
                            .all(|(id, seen)| now.get(id.as_str()) == seen.as_ref())
                        {
                            return Ok(false);
                        }
                        write_ops(t, &job.author, &job.ops)?;
                        Ok(true)
                    });
                    let r = match one {
                        Ok(true) => JobResult::Done,
                        Ok(false) => JobResult::Conflict,
                        Err(e) => JobResult::Failed(e),
                    };
                    (*id, r)
                })
                .collect(),
        }
    }

    /// Decides and writes the batch in one transaction holding its records' locks (the
    /// last resort of a push whose records keep changing under it).
    fn push_locked(
        &self,
        author: &Author,
        records: &[PushRecord],
        ids: &[&str],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>> {
        self.in_push_tx(|t| {
            // 1. Lock the records' ids, sorted.
            lock_ids(t, ids)?;
            // 2. Decide every record, in batch order, against what is stored.
            let current = load_current(t, ids)?
                .into_iter()
                .map(|(id, c)| (id, (c.rec, Since::Stored(c.grid_since))))
                .collect();
            let decided = decide_batch(records, current, process);
            // 3. Take the sequences (each grid's counter row stays locked until this
            //    transaction ends) and write.
            write_ops(t, author, &decided.ops)?;
            Ok(decided.outcomes)
        })
    }

    /// Runs `f` in a push transaction (a push slot and a pooled connection held), commits
    /// after the testing hook's delay, and runs it again on a deadlock or serialization
    /// failure.
    fn in_push_tx<T>(
        &self,
        mut f: impl FnMut(&mut dyn Tx) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let _slot = self.push_slots.take();
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut once = || -> StorageResult<T> {
                let mut tx = client.transaction()?;
                let out = f(&mut PgTx {
                    c: &mut tx,
                    stmts: &mut *stmts,
                })?;
                let delay = self.commit_delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
                tx.commit()?;
                Ok(out)
            };
            match once() {
                Err(StorageError::Conflict(e)) if attempt < PUSH_ATTEMPTS => {
                    tracing::warn!(attempt, "push transaction retried: {e}");
                    std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
                }
                other => return other,
            }
        }
    }
}

/// The schema version of a PostgreSQL database: a table of applied versions.
struct SchemaTable<'a, 'b>(&'a mut pg::Transaction<'b>);

impl Versioned for SchemaTable<'_, '_> {
    type Error = pg::Error;

    fn version(&mut self) -> Result<i64, pg::Error> {
        self.0.batch_execute("CREATE TABLE IF NOT EXISTS gridsync_schema (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)")?;
        let v: i32 = self
            .0
            .query_one("SELECT COALESCE(MAX(version), 0) FROM gridsync_schema", &[])?
            .try_get(0)?;
        Ok(i64::from(v))
    }

    fn run_step(&mut self, to_version: i64, script: &str) -> Result<(), pg::Error> {
        self.0.batch_execute(script)?;
        self.0.execute(
            "INSERT INTO gridsync_schema (version, applied_at_ms) VALUES ($1, $2)",
            &[&(to_version as i32), &gridsync_core::now_ms()],
        )?;
        tracing::info!(version = to_version, "database schema migrated");
        Ok(())
    }
}

/// Brings the schema on the connection's search path up to `target`, and sets the meta
/// rows every server has. Instances starting together: the first migrates, the others wait
/// for its lock and find it done.
pub(crate) fn migrate(c: &mut Client, target: i64) -> StorageResult<()> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('gridsync-migrate:' || coalesce(current_schema(), ''), 0))", &[])?;
    if tx
        .query_one("SELECT current_schema() IS NULL", &[])?
        .get::<_, bool>(0)
    {
        return Err(StorageError::Invalid(
            "the database has no schema on its search_path to create tables in".into(),
        ));
    }
    STEPS
        .migrate_to(&mut SchemaTable(&mut tx), target)
        .map_err(|e| match e {
            MigrateError::TooNew { .. } => StorageError::Invalid(e.to_string()),
            MigrateError::Database(e) => e.into(),
        })?;
    if target == STEPS.latest() {
        init_meta(&mut PgTx {
            c: &mut tx,
            stmts: &mut HashMap::new(),
        })?;
    }
    tx.commit()?;
    Ok(())
}

/// Takes the advisory locks of `ids` (sorted: array order is the order they are taken in),
/// held until the transaction ends.
fn lock_ids(t: &mut dyn Tx, ids: &[&str]) -> StorageResult<()> {
    t.execute(
        "SELECT count(pg_advisory_xact_lock($2, hashtext(u.id))) FROM unnest($1::text[]) AS u(id)",
        params![ids, i64::from(RECORD_LOCK_CLASS)],
    )?;
    Ok(())
}

/// Grid and sequence of the last write of each stored record of `ids`, read in one
/// statement. Read holding the ids' locks, so it cannot move before the transaction ends.
fn stored_versions(t: &mut dyn Tx, ids: &[&str]) -> StorageResult<HashMap<String, (String, i64)>> {
    let mut now: HashMap<String, (String, i64)> = HashMap::with_capacity(ids.len());
    t.query(
        "records",
        "SELECT id, grid, seq FROM records WHERE id IN LIST($1)",
        params![ids],
        &mut |r| {
            now.insert(r.get(0)?, (r.get(1)?, r.get(2)?));
            Ok(())
        },
    )?;
    Ok(now)
}

/// A copy of a storage error (one failure reported to every push of a group).
fn e_clone(e: &StorageError) -> StorageError {
    match e {
        StorageError::Database(m) => StorageError::Database(m.clone()),
        StorageError::Invalid(m) => StorageError::Invalid(m.clone()),
        StorageError::NotFound(m) => StorageError::NotFound(m.clone()),
        StorageError::Cancelled => StorageError::Cancelled,
        StorageError::BadRow(m) => StorageError::BadRow(m.clone()),
        StorageError::Conflict(m) => StorageError::Conflict(m.clone()),
    }
}

/// A push decided on a snapshot, waiting to be written by a group commit.
struct Job {
    author: Author,
    ops: Vec<Op>,
    /// Every id of the push with the grid and sequence its snapshot saw (`None`: not
    /// stored).
    expect: Vec<(String, Option<(String, i64)>)>,
}

/// What became of a queued push.
enum JobResult {
    /// Written and committed.
    Done,
    /// One of its records was written since its snapshot: nothing written, decide again.
    Conflict,
    /// Its write failed.
    Failed(StorageError),
}

impl Job {
    /// The grids the push writes into or leaves, sorted: pushes with the same grids are
    /// written together.
    fn grids(&self) -> Vec<String> {
        let mut g: Vec<String> = self
            .ops
            .iter()
            .flat_map(|op| std::iter::once(&op.grid).chain(op.moved_from.as_ref()))
            .cloned()
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    }
}

/// The queues of the group commits, by the grids their pushes write.
#[derive(Default)]
struct Group {
    queues: HashMap<Vec<String>, Vec<(u64, Job)>>,
    done: HashMap<u64, JobResult>,
    /// Grid sets a group is being written for.
    leaders: HashSet<Vec<String>>,
    next_id: u64,
}

/// Hands the leader's results to the waiters and gives up leadership, also if writing the
/// group panicked (the waiters then get an error instead of waiting for ever).
struct LeaderGuard<'a> {
    pg: &'a Postgres,
    key: Vec<String>,
    ids: Vec<u64>,
    results: Vec<(u64, JobResult)>,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.pg.group.lock().unwrap_or_else(|p| p.into_inner());
        let mut results: HashMap<u64, JobResult> =
            std::mem::take(&mut self.results).into_iter().collect();
        for id in &self.ids {
            let r = results.remove(id).unwrap_or_else(|| {
                JobResult::Failed(StorageError::Database(
                    "the group commit writing this push stopped".into(),
                ))
            });
            g.done.insert(*id, r);
        }
        g.leaders.remove(&self.key);
        drop(g);
        self.pg.group_cv.notify_all();
    }
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
            Value::Bool(b) => b.to_sql(ty, out),
            Value::TextList(l) => l.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    pg::types::to_sql_checked!();
}

fn cell(r: &pg::Row, i: usize) -> StorageResult<Cell> {
    let ty = r.columns()[i].type_();
    let c = match *ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
        Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Cell::Int(v.into())),
        Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Cell::Int(v.into())),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            r.try_get::<_, Option<String>>(i)?.map(Cell::Text)
        }
        Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob),
        Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(Cell::Bool),
        _ => {
            return Err(StorageError::Database(format!(
                "column {} has type {ty}, which the storage layer does not read",
                r.columns()[i].name()
            )))
        }
    };
    Ok(c.unwrap_or(Cell::Null))
}

fn to_row(table: &'static str, names: &Arc<[String]>, r: &pg::Row) -> StorageResult<Row> {
    let cells = (0..r.len())
        .map(|i| cell(r, i))
        .collect::<StorageResult<_>>()?;
    Ok(Row {
        table,
        names: names.clone(),
        cells,
    })
}

/// A client that may hold a portal (a transaction) or not (a plain connection).
trait Portals: GenericClient {
    /// Streams the rows of `st` in batches, or `None` when portals are not available.
    fn batches(
        &mut self,
        st: &Statement,
        each: &mut dyn FnMut(&[pg::Row]) -> StorageResult<()>,
    ) -> Option<StorageResult<()>>;
}

impl Portals for Client {
    fn batches(
        &mut self,
        _: &Statement,
        _: &mut dyn FnMut(&[pg::Row]) -> StorageResult<()>,
    ) -> Option<StorageResult<()>> {
        None
    }
}

impl Portals for pg::Transaction<'_> {
    fn batches(
        &mut self,
        st: &Statement,
        each: &mut dyn FnMut(&[pg::Row]) -> StorageResult<()>,
    ) -> Option<StorageResult<()>> {
        let mut run = || -> StorageResult<()> {
            let portal = self.bind(st, &[])?;
            loop {
                let rows = self.query_portal(&portal, DUMP_CHUNK_ROWS as i32)?;
                if rows.is_empty() {
                    return Ok(());
                }
                each(&rows)?;
            }
        };
        Some(run())
    }
}

/// A PostgreSQL connection or transaction as a [`Tx`], with its prepared statements.
struct PgTx<'a, C> {
    c: &'a mut C,
    stmts: &'a mut HashMap<String, Statement>,
}

impl<C: Portals> PgTx<'_, C> {
    /// `sql` prepared once per connection.
    fn prepared(&mut self, sql: &str) -> StorageResult<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.prepare(&to_postgres(sql))?;
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

fn refs<'a>(params: &'a [Value<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// Column `i` of `rows` as an array parameter; `pick` takes the values of the column's type.
fn column<'v, T>(
    rows: &[Vec<Value<'v>>],
    i: usize,
    bad: impl Fn(&Value<'v>) -> StorageError,
    pick: impl Fn(Value<'v>) -> Option<T>,
) -> StorageResult<Vec<Option<T>>> {
    rows.iter()
        .map(|r| match r.get(i).copied().unwrap_or(Value::Null) {
            Value::Null => Ok(None),
            v => pick(v).map(Some).ok_or_else(|| bad(&v)),
        })
        .collect()
}

impl<C: Portals> Tx for PgTx<'_, C> {
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> StorageResult<u64> {
        let st = self.prepared(sql)?;
        Ok(self.c.execute(&st, &refs(params))?)
    }

    fn query(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[Value<'_>],
        each: &mut dyn FnMut(Row) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let st = self.prepared(sql)?;
        let names: Arc<[String]> = st.columns().iter().map(|c| c.name().to_string()).collect();
        for r in self.c.query(&st, &refs(params))? {
            each(to_row(table, &names, &r)?)?;
        }
        Ok(())
    }

    fn stream(
        &mut self,
        table: &'static str,
        sql: &str,
        each: &mut dyn FnMut(Row) -> StorageResult<()>,
    ) -> StorageResult<()> {
        let st = self.prepared(sql)?;
        let names: Arc<[String]> = st.columns().iter().map(|c| c.name().to_string()).collect();
        let streamed = self.c.batches(&st, &mut |rows| {
            for r in rows {
                each(to_row(table, &names, r)?)?;
            }
            Ok(())
        });
        match streamed {
            Some(r) => r,
            None => self.query(table, sql, &[], each),
        }
    }

    fn insert_rows(&mut self, ins: &Insert, rows: &[Vec<Value<'_>>]) -> StorageResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = ins.columns.iter().map(|c| c.0).collect();
        let arrays: Vec<String> = ins
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| {
                let t = match ty {
                    Ty::Text => "text",
                    Ty::Int => "int8",
                    Ty::Blob => "bytea",
                    Ty::Bool => "bool",
                };
                format!("${}::{t}[]", i + 1)
            })
            .collect();
        // Row order is kept (ids of an identity column follow it).
        let sql = format!(
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM unnest({arrays}) WITH ORDINALITY AS u({cols}, ord_) ORDER BY ord_{conflict}",
            t = ins.table,
            cols = names.join(", "),
            arrays = arrays.join(", "),
            conflict = ins.on_conflict,
        );
        let mut columns: Vec<Box<dyn ToSql + Sync + '_>> = Vec::with_capacity(names.len());
        for (i, (name, ty)) in ins.columns.iter().enumerate() {
            let bad = |v: &Value<'_>| {
                StorageError::Invalid(format!("{}.{name}: {v:?} is not a {ty:?}", ins.table))
            };
            columns.push(match ty {
                Ty::Text => Box::new(column(rows, i, bad, |v| match v {
                    Value::Text(s) => Some(s),
                    _ => None,
                })?),
                Ty::Int => Box::new(column(rows, i, bad, |v| match v {
                    Value::Int(n) => Some(n),
                    _ => None,
                })?),
                Ty::Blob => Box::new(column(rows, i, bad, |v| match v {
                    Value::Blob(b) => Some(b),
                    _ => None,
                })?),
                Ty::Bool => Box::new(column(rows, i, bad, |v| match v {
                    Value::Bool(b) => Some(b),
                    _ => None,
                })?),
            });
        }
        let st = self.prepared(&sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|b| b.as_ref()).collect();
        self.c.execute(&st, &params)?;
        Ok(())
    }
}

impl Backend for Postgres {
    const NAME: &'static str = "postgres";
    const IMPORT_LOCK: Option<&'static str> = Some(
        "LOCK TABLE grids, people, enrol_codes, devices, records, changes, departures, feed_heads, feed_log, audit, attachments, attachment_refs, attachment_chunks IN EXCLUSIVE MODE",
    );
    // Audit ids were copied: move the id sequence past them.
    const IMPORT_DONE: Option<&'static str> = Some(
        "SELECT setval(pg_get_serial_sequence('audit', 'id'), GREATEST((SELECT MAX(id) FROM audit), 1))",
    );

    fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StorageResult<T>) -> StorageResult<T> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let out = f(&mut PgTx { c: &mut tx, stmts })?;
        tx.commit()?;
        Ok(out)
    }

    fn write<T>(&self, f: impl FnOnce(&mut dyn Tx) -> StorageResult<T>) -> StorageResult<T> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        let mut tx = client.transaction()?;
        let out = f(&mut PgTx { c: &mut tx, stmts })?;
        tx.commit()?;
        Ok(out)
    }

    fn single<T>(
        &self,
        _write: bool,
        f: impl FnOnce(&mut dyn Tx) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        f(&mut PgTx { c: client, stmts })
    }

    fn push(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>> {
        let ids = batch_ids(records);
        for _ in 0..SNAPSHOT_ATTEMPTS {
            if let Some(r) = self.push_on_snapshot(author, records, &ids, process)? {
                return Ok(r);
            }
        }
        // A push that keeps meeting concurrent writes of its records is decided while
        // holding their locks.
        self.push_locked(author, records, &ids, process)
    }

    fn backup_native(&self, _dest: &Path) -> StorageResult<bool> {
        Ok(false)
    }

    // Attachment bytes are rows of `attachment_chunks`, one per append as it arrived, in
    // the transaction of the append's metadata.

    fn blob_write(
        &self,
        tx: &mut dyn Tx,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> StorageResult<bool> {
        let offset = i64::try_from(offset)
            .map_err(|_| StorageError::Invalid(format!("offset {offset} out of range")))?;
        tx.execute(
            "DELETE FROM attachment_chunks WHERE sha256 = $1 AND chunk_offset >= $2",
            params![sha256, offset],
        )?;
        tx.execute(
            "INSERT INTO attachment_chunks (sha256, chunk_offset, bytes) VALUES ($1, $2, $3)",
            params![sha256, offset, bytes],
        )?;
        Ok(true)
    }

    fn blob_read(
        &self,
        tx: &mut dyn Tx,
        sha256: &str,
        _complete: bool,
        offset: u64,
        max: usize,
    ) -> StorageResult<Vec<u8>> {
        let from = i64::try_from(offset)
            .map_err(|_| StorageError::Invalid(format!("offset {offset} out of range")))?;
        let to = from.saturating_add(max as i64);
        let mut out = Vec::with_capacity(max.min(ATTACHMENT_DUMP_PIECE));
        // The chunk holding `from`, and those after it up to `to` (each at most one append).
        tx.query(
            "attachment_chunks",
            "SELECT chunk_offset, bytes FROM attachment_chunks
             WHERE sha256 = $1 AND chunk_offset < $3 AND chunk_offset >= COALESCE(
                (SELECT MAX(chunk_offset) FROM attachment_chunks WHERE sha256 = $1 AND chunk_offset <= $2), 0)
             ORDER BY chunk_offset",
            params![sha256, from, to],
            &mut |mut r| {
                let at: i64 = r.get(0)?;
                let bytes = r.take_blob(1)?.unwrap_or_default();
                let want = from + out.len() as i64;
                if at > want {
                    return Err(StorageError::Database(format!(
                        "attachment {sha256}: no bytes stored at {want}"
                    )));
                }
                let skip = usize::try_from(want - at).unwrap_or(usize::MAX);
                if skip < bytes.len() {
                    let take = (bytes.len() - skip).min(max - out.len());
                    out.extend_from_slice(&bytes[skip..skip + take]);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn blob_complete(&self, _tx: &mut dyn Tx, _sha256: &str) -> StorageResult<()> {
        Ok(())
    }

    fn blob_discard(&self, tx: &mut dyn Tx, sha256: &str) -> StorageResult<()> {
        tx.execute(
            "DELETE FROM attachment_chunks WHERE sha256 = $1",
            params![sha256],
        )?;
        Ok(())
    }

    fn blob_sweep(&self, tx: &mut dyn Tx) -> StorageResult<u64> {
        tx.value(
            "attachment_chunks",
            "WITH gone AS (DELETE FROM attachment_chunks c WHERE NOT EXISTS
                (SELECT 1 FROM attachments a WHERE a.sha256 = c.sha256) RETURNING sha256)
             SELECT COUNT(DISTINCT sha256) FROM gone",
            &[],
        )
        .map(Option::unwrap_or_default)
    }

    fn lock_records(&self, tx: &mut dyn Tx, ids: &[&str]) -> StorageResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // The same locks, in the same order, as a push of these records takes.
        lock_ids(tx, ids)
    }

    fn set_push_commit_delay(&self, d: Duration) {
        self.commit_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }
}
