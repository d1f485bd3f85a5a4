//! The PostgreSQL backend: several server instances share one database.
//!
//! Same tables and meaning as the SQLite backend. What differs is concurrency: SQLite has
//! one writer, PostgreSQL has many pushes committing at once, from several instances.
//! A push therefore
//! 1. locks the ids of its records (transaction-scoped advisory locks, in sorted order), so
//!    two pushes of one record never merge against the same stored document;
//! 2. decides every record (the expensive Automerge work) while holding only those locks;
//! 3. takes its feed sequences by incrementing each grid's `feed_heads` row, grids in sorted
//!    order. The row stays locked until the push commits, so a second push into the same grid
//!    waits and takes the next numbers only after the first committed: per grid, commit order
//!    equals sequence order, and a reader whose snapshot shows sequence `n` also shows every
//!    sequence below `n`. A device cursor can therefore never pass an entry that commits late.
//!
//! Locks are always taken in one global order (record ids sorted, then grids sorted), so pushes
//! do not deadlock; a deadlock or serialization failure reported anyway is retried.
//! `docs/postgres.md` explains the mechanism.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ::postgres as pg;
use gridsync_core::model::{GridKind, GridLevel, GridNode, Person, RecordKind, Role};
use gridsync_core::sync::protocol::{Departure, PullRecord, PushRecord, PushResult};
use pg::error::SqlState;
use pg::types::ToSql;
use pg::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement};

use super::batch::{decide_batch, resolve_since, Decided, Since};
use super::sqlite::{new_epoch, new_token};
use super::*;

const STEPS: &[&str] = &[include_str!("migrations/postgres_0001.sql")];

/// Advisory lock class of record ids (the two-key form; migrations use the one-key form).
const RECORD_LOCK_CLASS: i32 = 0x6773;
/// Attempts of a push that hits a deadlock or serialization failure.
const PUSH_ATTEMPTS: u32 = 4;
/// Default pool size (override with `GRIDSYNC_DB_POOL_SIZE`).
const DEFAULT_POOL_SIZE: u32 = 16;

impl From<pg::Error> for StorageError {
    fn from(e: pg::Error) -> Self {
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
    stmts: HashMap<&'static str, Statement>,
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

/// Prepares `sql` once per connection.
fn prep(
    stmts: &mut HashMap<&'static str, Statement>,
    c: &mut impl GenericClient,
    sql: &'static str,
) -> Result<Statement, pg::Error> {
    if let Some(s) = stmts.get(sql) {
        return Ok(s.clone());
    }
    let s = c.prepare(sql)?;
    stmts.insert(sql, s.clone());
    Ok(s)
}

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

/// PostgreSQL storage over a connection pool.
pub struct PostgresStorage {
    pool: Pool,
    push_slots: Slots,
    schema: Option<String>,
    commit_delay_ms: AtomicU64,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("schema", &self.schema)
            .field("pool", &self.pool.state())
            .finish()
    }
}

fn check_schema_name(s: &str) -> StorageResult<()> {
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

impl PostgresStorage {
    /// Connects to `url` (`postgres://user@host:port/db`), migrating the schema if needed.
    pub fn open(url: &str) -> StorageResult<Self> {
        Self::open_with(url, None)
    }

    /// Like [`PostgresStorage::open`], in the named schema of the database (created if
    /// missing). Tests use one schema each; instances that share data use the same one.
    pub fn open_in_schema(url: &str, schema: &str) -> StorageResult<Self> {
        Self::open_with(url, Some(schema))
    }

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
        let mut c = config.connect(NoTls)?;
        migrate(&mut c)?;
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
        Ok(PostgresStorage {
            pool,
            push_slots: Slots {
                free: Mutex::new(size / 2),
                cv: Condvar::new(),
            },
            schema: schema.map(str::to_string),
            commit_delay_ms: AtomicU64::new(0),
        })
    }

    /// The schema this storage works in, if one was named.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Testing hook: every push sleeps this long after taking its feed sequences and before
    /// committing, to force late commits (zero turns it off).
    pub fn set_push_commit_delay(&self, d: Duration) {
        self.commit_delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    fn conn(&self) -> StorageResult<r2d2::PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| StorageError::Database(format!("connection pool: {e}")))
    }

    /// Runs `f` in a read-write transaction (read committed).
    fn write<T>(
        &self,
        f: impl FnOnce(
            &mut pg::Transaction<'_>,
            &mut HashMap<&'static str, Statement>,
        ) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        let mut tx = client.transaction()?;
        let out = f(&mut tx, stmts)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a read-only transaction on one snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(
            &mut pg::Transaction<'_>,
            &mut HashMap<&'static str, Statement>,
        ) -> StorageResult<T>,
    ) -> StorageResult<T> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let out = f(&mut tx, stmts)?;
        tx.commit()?;
        Ok(out)
    }

    /// One statement outside a transaction, returning rows.
    fn query(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> StorageResult<Vec<Row>> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        let st = prep(stmts, client, sql)?;
        Ok(client.query(&st, params)?)
    }

    /// One statement outside a transaction, returning the number of rows it touched.
    fn execute(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> StorageResult<u64> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        let st = prep(stmts, client, sql)?;
        Ok(client.execute(&st, params)?)
    }
}

fn migrate(c: &mut Client) -> StorageResult<()> {
    let mut tx = c.transaction()?;
    // Instances starting together: the first migrates, the others wait here and find it done.
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('gridsync-migrate:' || coalesce(current_schema(), ''), 0))", &[])?;
    if tx
        .query_one("SELECT current_schema() IS NULL", &[])?
        .get::<_, bool>(0)
    {
        return Err(StorageError::Invalid(
            "the database has no schema on its search_path to create tables in".into(),
        ));
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS gridsync_schema (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)")?;
    let v: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM gridsync_schema", &[])?
        .get(0);
    if v as usize > STEPS.len() {
        return Err(StorageError::Invalid(format!(
            "database schema {v} is newer than this server ({})",
            STEPS.len()
        )));
    }
    for (i, step) in STEPS.iter().enumerate().skip(v as usize) {
        tx.batch_execute(step)?;
        tx.execute(
            "INSERT INTO gridsync_schema (version, applied_at_ms) VALUES ($1, $2)",
            &[&(i as i32 + 1), &gridsync_core::now_ms()],
        )?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    tx.execute(
        "INSERT INTO server_meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
        &[&new_epoch()],
    )?;
    tx.execute("INSERT INTO server_meta (key, value) VALUES ('ref_generation', '1') ON CONFLICT (key) DO NOTHING", &[])?;
    tx.commit()?;
    Ok(())
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

fn person_from_row(r: &Row) -> Result<Person, pg::Error> {
    let role: String = r.try_get(3)?;
    let grids: String = r.try_get(4)?;
    Ok(Person {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        phone: r.try_get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Liaison),
        grids: serde_json::from_str(&grids).unwrap_or_default(),
    })
}

fn device_from_row(r: &Row) -> Result<Device, pg::Error> {
    Ok(Device {
        id: r.try_get(0)?,
        person_id: r.try_get(1)?,
        name: r.try_get(2)?,
        secret_hash: r.try_get(3)?,
        pending_hash: r.try_get(4)?,
        created_at_ms: r.try_get(5)?,
        last_seen_ms: r.try_get(6)?,
        revoked_at_ms: r.try_get(7)?,
        revoked_reason: r.try_get(8)?,
    })
}

fn audit_from_row(r: &Row, at: usize) -> Result<AuditEntry, pg::Error> {
    Ok(AuditEntry {
        at_ms: r.try_get(at)?,
        person_id: r.try_get(at + 1)?,
        device_id: r.try_get(at + 2)?,
        record_id: r.try_get(at + 3)?,
        kind: r.try_get(at + 4)?,
        grid: r.try_get(at + 5)?,
        action: r.try_get(at + 6)?,
        detail: r.try_get(at + 7)?,
    })
}

const BUMP_GENERATION: &str =
    "UPDATE server_meta SET value = (value::bigint + 1)::text WHERE key = 'ref_generation'";
const INSERT_AUDIT: &str =
    "INSERT INTO audit (at_ms, person_id, device_id, record_id, kind, grid, action, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const SELECT_DEVICE: &str = "SELECT id, person_id, name, secret_hash, pending_hash, created_at_ms, last_seen_ms, revoked_at_ms, revoked_reason
     FROM devices WHERE id = $1";
const SELECT_TOKEN: &str = "SELECT token FROM feed_log WHERE grid = $1 AND seq = $2";
const PULL_RECORDS: &str =
    "SELECT id, kind, seq, heads, CASE WHEN $2::int8 = 0 OR grid_since > $2::int8 THEN doc END
     FROM records WHERE grid = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const PULL_TEMPLATES: &str =
    "SELECT id, kind, seq, heads, CASE WHEN $2::int8 = 0 OR grid_since > $2::int8 THEN doc END
     FROM records WHERE grid = $1 AND seq > $2 AND kind = 'template' ORDER BY seq LIMIT $3";
const PULL_DEPARTURES: &str = "SELECT record_id, seq, new_grid FROM departures WHERE grid = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const PULL_CHANGES: &str =
    "SELECT record_id, bytes FROM changes WHERE record_id = ANY($1) AND grid = $2 AND seq > $3 ORDER BY record_id, seq";

fn insert_audit(
    c: &mut impl GenericClient,
    stmts: &mut HashMap<&'static str, Statement>,
    e: &AuditEntry,
) -> StorageResult<()> {
    let st = prep(stmts, c, INSERT_AUDIT)?;
    c.execute(
        &st,
        &[
            &e.at_ms,
            &e.person_id,
            &e.device_id,
            &e.record_id,
            &e.kind,
            &e.grid,
            &e.action,
            &e.detail,
        ],
    )?;
    Ok(())
}

impl PostgresStorage {
    fn push_once(
        &self,
        tx: &mut pg::Transaction<'_>,
        stmts: &mut HashMap<&'static str, Statement>,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> Result<Vec<PushResult>, pg::Error> {
        // 1. Lock the records' ids, sorted (array order is the order the locks are taken in).
        let mut ids: Vec<&str> = records.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let st = prep(
            stmts,
            tx,
            "SELECT count(pg_advisory_xact_lock($2, hashtext(u.id))) FROM unnest($1::text[]) AS u(id)",
        )?;
        tx.execute(&st, &[&ids, &RECORD_LOCK_CLASS])?;
        // 2. Load what is stored and decide every record, in batch order.
        let st = prep(
            stmts,
            tx,
            "SELECT id, kind, grid, doc, grid_since FROM records WHERE id = ANY($1)",
        )?;
        let mut current: HashMap<String, (StoredRecord, Since)> = HashMap::new();
        for r in tx.query(&st, &[&ids])? {
            let kind: String = r.try_get(1)?;
            let rec = StoredRecord {
                kind: RecordKind::parse(&kind).unwrap_or(RecordKind::Producer),
                grid: r.try_get(2)?,
                doc: r.try_get(3)?,
            };
            current.insert(r.try_get(0)?, (rec, Since::Stored(r.try_get(4)?)));
        }
        let Decided { outcomes, ops } = decide_batch(records, current, process);
        if ops.is_empty() {
            return Ok(outcomes);
        }
        // 3. Take the sequences: one counter update per grid, grids sorted. Each row stays
        //    locked until this transaction ends.
        let mut need: BTreeMap<&str, i64> = BTreeMap::new();
        for op in &ops {
            *need.entry(op.grid.as_str()).or_insert(0) += 1;
            if let Some(from) = &op.moved_from {
                *need.entry(from.as_str()).or_insert(0) += 1;
            }
        }
        let st = prep(
            stmts,
            tx,
            "INSERT INTO feed_heads (grid, seq) VALUES ($1, $2)
             ON CONFLICT (grid) DO UPDATE SET seq = feed_heads.seq + EXCLUDED.seq RETURNING seq",
        )?;
        let mut next: HashMap<&str, i64> = HashMap::new();
        for (grid, n) in &need {
            let end: i64 = tx.query_one(&st, &[grid, n])?.try_get(0)?;
            next.insert(grid, end - n + 1);
        }
        let delay = self.commit_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let mut take = |grid: &str| -> i64 {
            let slot = next.get_mut(grid);
            match slot {
                Some(s) => {
                    *s += 1;
                    *s - 1
                }
                None => 0,
            }
        };
        // 4. Write everything with one statement per table.
        let now = gridsync_core::now_ms();
        let mut log = (Vec::new(), Vec::new(), Vec::new());
        let mut deps = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut changes = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut audit = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut since_of: Vec<i64> = Vec::with_capacity(ops.len());
        let mut last_of: HashMap<&str, usize> = HashMap::new();
        let mut seqs: Vec<i64> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let seq = take(&op.grid);
            log.0.push(op.grid.as_str());
            log.1.push(seq);
            log.2.push(new_token());
            if let Some(from) = &op.moved_from {
                let dep = take(from);
                log.0.push(from.as_str());
                log.1.push(dep);
                log.2.push(new_token());
                deps.0.push(from.as_str());
                deps.1.push(dep);
                deps.2.push(op.id.as_str());
                deps.3.push(op.grid.as_str());
            }
            let since = resolve_since(op.since, seq, &since_of);
            since_of.push(since);
            seqs.push(seq);
            last_of.insert(op.id.as_str(), i);
            changes.0.push(op.id.as_str());
            changes.1.push(op.grid.as_str());
            changes.2.push(seq);
            changes.3.push(op.new_changes.as_slice());
            audit.0.push(op.id.as_str());
            audit.1.push(op.kind.as_str());
            audit.2.push(op.grid.as_str());
            audit.3.push(op.action);
            audit.4.push(format!(
                "{} bytes of changes, feed seq {seq}",
                op.new_changes.len()
            ));
        }
        let st = prep(stmts, tx, "INSERT INTO feed_log (grid, seq, token) SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])")?;
        tx.execute(&st, &[&log.0, &log.1, &log.2])?;
        if !deps.0.is_empty() {
            let st = prep(
                stmts,
                tx,
                "INSERT INTO departures (grid, seq, record_id, new_grid) SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[])",
            )?;
            tx.execute(&st, &[&deps.0, &deps.1, &deps.2, &deps.3])?;
        }
        let mut rec = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for (i, op) in ops.iter().enumerate() {
            if last_of.get(op.id.as_str()) != Some(&i) {
                continue;
            }
            rec.0.push(op.id.as_str());
            rec.1.push(op.kind.as_str());
            rec.2.push(op.grid.as_str());
            rec.3.push(op.doc.as_slice());
            rec.4.push(op.heads.as_slice());
            rec.5.push(seqs[i]);
            rec.6.push(since_of[i]);
        }
        let st = prep(
            stmts,
            tx,
            "INSERT INTO records (id, kind, grid, doc, heads, seq, grid_since, updated_at_ms)
             SELECT u.*, $8 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::int8[], $7::int8[]) AS u
             ON CONFLICT (id) DO UPDATE SET grid = EXCLUDED.grid, doc = EXCLUDED.doc, heads = EXCLUDED.heads,
                 seq = EXCLUDED.seq, grid_since = EXCLUDED.grid_since, updated_at_ms = EXCLUDED.updated_at_ms",
        )?;
        tx.execute(
            &st,
            &[&rec.0, &rec.1, &rec.2, &rec.3, &rec.4, &rec.5, &rec.6, &now],
        )?;
        let st = prep(
            stmts,
            tx,
            "INSERT INTO changes (record_id, grid, seq, bytes) SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])",
        )?;
        tx.execute(&st, &[&changes.0, &changes.1, &changes.2, &changes.3])?;
        // Audit ids follow batch order (ORDER BY the ordinality; it is not inserted).
        let st = prep(
            stmts,
            tx,
            "INSERT INTO audit (at_ms, person_id, device_id, record_id, kind, grid, action, detail)
             SELECT $1, $2, $3, u.r, u.k, u.g, u.a, u.d
             FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY AS u(r, k, g, a, d, n)
             ORDER BY u.n",
        )?;
        tx.execute(
            &st,
            &[
                &now,
                &author.person_id,
                &author.device_id,
                &audit.0,
                &audit.1,
                &audit.2,
                &audit.3,
                &audit.4,
            ],
        )?;
        Ok(outcomes)
    }
}

impl Storage for PostgresStorage {
    fn epoch(&self) -> StorageResult<String> {
        let rows = self.query("SELECT value FROM server_meta WHERE key = 'epoch'", &[])?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| StorageError::NotFound("server epoch".into()))
    }

    fn rotate_epoch(&self) -> StorageResult<String> {
        let e = new_epoch();
        self.execute(
            "UPDATE server_meta SET value = $1 WHERE key = 'epoch'",
            &[&e],
        )?;
        Ok(e)
    }

    fn reference_generation(&self) -> StorageResult<i64> {
        let rows = self.query(
            "SELECT value FROM server_meta WHERE key = 'ref_generation'",
            &[],
        )?;
        Ok(rows
            .first()
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0))
    }

    fn grids(&self) -> StorageResult<Vec<GridNode>> {
        let rows = self.query(
            "SELECT code, name, level, kind, parent FROM grids ORDER BY code",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let level: String = r.try_get(2)?;
                let kind: String = r.try_get(3)?;
                Ok(GridNode {
                    code: r.try_get(0)?,
                    name: r.try_get(1)?,
                    level: GridLevel::parse(&level).unwrap_or(GridLevel::Village),
                    kind: GridKind::parse(&kind).unwrap_or(GridKind::Mixed),
                    parent: r.try_get(4)?,
                })
            })
            .collect()
    }

    fn import_grids(&self, nodes: &[GridNode]) -> StorageResult<()> {
        self.write(|tx, stmts| {
            let st = prep(
                stmts,
                tx,
                "INSERT INTO grids (code, name, level, kind, parent) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = EXCLUDED.level, kind = EXCLUDED.kind, parent = EXCLUDED.parent",
            )?;
            for n in nodes {
                tx.execute(&st, &[&n.code, &n.name, &n.level.as_str(), &n.kind.as_str(), &n.parent])?;
            }
            let st = prep(stmts, tx, BUMP_GENERATION)?;
            tx.execute(&st, &[])?;
            Ok(())
        })
    }

    fn upsert_person(&self, p: &Person) -> StorageResult<()> {
        let grids =
            serde_json::to_string(&p.grids).map_err(|e| StorageError::Invalid(e.to_string()))?;
        self.write(|tx, stmts| {
            let st = prep(
                stmts,
                tx,
                "INSERT INTO people (id, name, phone, role, grids, active) VALUES ($1, $2, $3, $4, $5, TRUE)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone, role = EXCLUDED.role,
                     grids = EXCLUDED.grids, active = TRUE",
            )?;
            tx.execute(&st, &[&p.id, &p.name, &p.phone, &p.role.as_str(), &grids])?;
            let st = prep(stmts, tx, BUMP_GENERATION)?;
            tx.execute(&st, &[])?;
            Ok(())
        })
    }

    fn person(&self, id: &str) -> StorageResult<Option<Person>> {
        let rows = self.query(
            "SELECT id, name, phone, role, grids FROM people WHERE id = $1 AND active",
            &[&id],
        )?;
        Ok(rows.first().map(person_from_row).transpose()?)
    }

    fn people(&self) -> StorageResult<Vec<Person>> {
        let rows = self.query(
            "SELECT id, name, phone, role, grids FROM people WHERE active ORDER BY id",
            &[],
        )?;
        Ok(rows.iter().map(person_from_row).collect::<Result<_, _>>()?)
    }

    fn insert_code(&self, code: &EnrolCode) -> StorageResult<()> {
        self.execute(
            "INSERT INTO enrol_codes (code_hash, person_id, created_by, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&code.code_hash, &code.person_id, &code.created_by, &code.created_at_ms, &code.expires_at_ms],
        )?;
        Ok(())
    }

    fn redeem_code(
        &self,
        code_hash: &str,
        now: i64,
        device: &Device,
    ) -> StorageResult<Option<String>> {
        self.write(|tx, stmts| {
            // Two redemptions at once: the second waits for the first's row lock, then finds
            // the code used.
            let st = prep(
                stmts,
                tx,
                "UPDATE enrol_codes SET used_at_ms = $2
                 WHERE code_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2
                 RETURNING person_id",
            )?;
            let Some(row) = tx.query_opt(&st, &[&code_hash, &now])? else { return Ok(None) };
            let person: String = row.try_get(0)?;
            let st = prep(
                stmts,
                tx,
                "INSERT INTO devices (id, person_id, name, secret_hash, pending_hash, created_at_ms, last_seen_ms, revoked_at_ms, revoked_reason)
                 VALUES ($1, $2, $3, $4, NULL, $5, NULL, NULL, NULL)",
            )?;
            tx.execute(&st, &[&device.id, &person, &device.name, &device.secret_hash, &now])?;
            Ok(Some(person))
        })
    }

    fn device(&self, id: &str) -> StorageResult<Option<Device>> {
        let rows = self.query(SELECT_DEVICE, &[&id])?;
        Ok(rows.first().map(device_from_row).transpose()?)
    }

    fn devices(&self) -> StorageResult<Vec<Device>> {
        let rows = self.query(
            "SELECT id, person_id, name, secret_hash, pending_hash, created_at_ms, last_seen_ms, revoked_at_ms, revoked_reason
             FROM devices ORDER BY created_at_ms, id",
            &[],
        )?;
        Ok(rows.iter().map(device_from_row).collect::<Result<_, _>>()?)
    }

    fn set_pending_secret(&self, device_id: &str, hash: &str) -> StorageResult<()> {
        self.execute(
            "UPDATE devices SET pending_hash = $2 WHERE id = $1",
            &[&device_id, &hash],
        )?;
        Ok(())
    }

    fn promote_pending_secret(&self, device_id: &str) -> StorageResult<()> {
        self.execute(
            "UPDATE devices SET secret_hash = pending_hash, pending_hash = NULL WHERE id = $1 AND pending_hash IS NOT NULL",
            &[&device_id],
        )?;
        Ok(())
    }

    fn revoke_device(&self, device_id: &str, reason: &str, now: i64) -> StorageResult<()> {
        let n = self.execute(
            "UPDATE devices SET revoked_at_ms = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at_ms IS NULL",
            &[&device_id, &now, &reason],
        )?;
        if n == 0 {
            return Err(StorageError::NotFound(format!(
                "no active device {device_id}"
            )));
        }
        Ok(())
    }

    fn touch_device(&self, device_id: &str, now: i64) -> StorageResult<()> {
        self.execute(
            "UPDATE devices SET last_seen_ms = $2 WHERE id = $1",
            &[&device_id, &now],
        )?;
        Ok(())
    }

    fn record(&self, id: &str) -> StorageResult<Option<StoredRecord>> {
        let rows = self.query("SELECT kind, grid, doc FROM records WHERE id = $1", &[&id])?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let kind: String = r.try_get(0)?;
        Ok(Some(StoredRecord {
            kind: RecordKind::parse(&kind).unwrap_or(RecordKind::Producer),
            grid: r.try_get(1)?,
            doc: r.try_get(2)?,
        }))
    }

    fn apply_push(
        &self,
        author: &Author,
        records: &[PushRecord],
        process: &mut PushProcessor<'_>,
    ) -> StorageResult<Vec<PushResult>> {
        let _slot = self.push_slots.take();
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        // Once a decision is cancelled, every later one is, and the transaction is rolled
        // back instead of committed.
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = client.transaction()?;
            let result = self.push_once(&mut tx, stmts, author, records, &mut watch);
            if cancelled.get() {
                tx.rollback()?;
                return Err(StorageError::Cancelled);
            }
            let result = result.and_then(|r| tx.commit().map(|_| r));
            match result {
                Ok(r) => return Ok(r),
                Err(e) if is_retryable(&e) && attempt < PUSH_ATTEMPTS => {
                    tracing::warn!(attempt, "push transaction retried: {e}");
                    std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn pull(&self, feeds: &[FeedRead], limit: u32, byte_budget: usize) -> StorageResult<PullPage> {
        self.read(|tx, stmts| {
            let mut page = PullPage::default();
            let mut bytes = 0usize;
            for feed in feeds {
                let room =
                    (limit as usize).saturating_sub(page.records.len() + page.departures.len());
                if room == 0 || bytes >= byte_budget {
                    page.more = true;
                    break;
                }
                let after = feed.after as i64;
                let fetch = room as i64 + 1;
                let st = prep(
                    stmts,
                    tx,
                    if feed.templates_only {
                        PULL_TEMPLATES
                    } else {
                        PULL_RECORDS
                    },
                )?;
                let mut entries: Vec<(u64, Option<PullRecord>, Option<Departure>)> = Vec::new();
                for r in tx.query(&st, &[&feed.grid, &after, &fetch])? {
                    let kind: String = r.try_get(1)?;
                    let doc: Option<Vec<u8>> = r.try_get(4)?;
                    let heads: Vec<u8> = r.try_get(3)?;
                    let seq = r.try_get::<_, i64>(2)? as u64;
                    let rec = PullRecord {
                        id: r.try_get(0)?,
                        kind: RecordKind::parse(&kind)
                            .unwrap_or(RecordKind::Producer)
                            .tag(),
                        grid: feed.grid.clone(),
                        seq,
                        full: doc.is_some(),
                        bytes: doc.unwrap_or_default(),
                        heads: split_heads(&heads),
                    };
                    entries.push((seq, Some(rec), None));
                }
                if !feed.templates_only {
                    let st = prep(stmts, tx, PULL_DEPARTURES)?;
                    for r in tx.query(&st, &[&feed.grid, &after, &fetch])? {
                        let d = Departure {
                            id: r.try_get(0)?,
                            grid: feed.grid.clone(),
                            seq: r.try_get::<_, i64>(1)? as u64,
                            new_grid: r.try_get(2)?,
                        };
                        entries.push((d.seq, None, Some(d)));
                    }
                    entries.sort_by_key(|e| e.0);
                }
                // Changes of records sent as increments, loaded in small batches as the
                // page fills.
                let partial: Vec<&str> = entries
                    .iter()
                    .filter_map(|e| e.1.as_ref().filter(|r| !r.full).map(|r| r.id.as_str()))
                    .collect();
                let mut loaded: HashMap<String, Vec<u8>> = HashMap::new();
                let mut next_partial = 0usize;
                let mut cursor = None;
                let mut cut = false;
                for (i, (seq, rec, dep)) in entries.iter().enumerate() {
                    if i >= room || (bytes >= byte_budget && cursor.is_some()) {
                        cut = true;
                        break;
                    }
                    if let Some(rec) = rec {
                        let mut rec = rec.clone();
                        if !rec.full {
                            if !loaded.contains_key(&rec.id) {
                                let batch: Vec<&str> = partial[next_partial.min(partial.len())..]
                                    .iter()
                                    .copied()
                                    .take(64)
                                    .collect();
                                next_partial += batch.len();
                                for id in &batch {
                                    loaded.insert((*id).to_string(), Vec::new());
                                }
                                let st = prep(stmts, tx, PULL_CHANGES)?;
                                for r in tx.query(&st, &[&batch, &feed.grid, &after])? {
                                    let id: String = r.try_get(0)?;
                                    let b: &[u8] = r.try_get(1)?;
                                    loaded.entry(id).or_default().extend_from_slice(b);
                                }
                            }
                            rec.bytes.extend(loaded.remove(&rec.id).unwrap_or_default());
                        }
                        bytes += rec.bytes.len() + rec.heads.len() * 32 + rec.id.len();
                        page.records.push(rec);
                    }
                    if let Some(d) = dep {
                        bytes += d.id.len() + d.new_grid.len();
                        page.departures.push(d.clone());
                    }
                    cursor = Some(*seq);
                }
                if let Some(seq) = cursor {
                    let st = prep(stmts, tx, SELECT_TOKEN)?;
                    let token: i64 = tx
                        .query_one(&st, &[&feed.grid, &(seq as i64)])?
                        .try_get(0)?;
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
        let ids: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| seen.insert(*id))
            .collect();
        let rows = self.query(
            "SELECT id, kind, grid, seq, doc, heads FROM records WHERE id = ANY($1)",
            &[&ids],
        )?;
        let mut by_id: HashMap<String, PullRecord> = HashMap::new();
        for r in rows {
            let kind: String = r.try_get(1)?;
            let heads: Vec<u8> = r.try_get(5)?;
            let rec = PullRecord {
                id: r.try_get(0)?,
                kind: RecordKind::parse(&kind)
                    .unwrap_or(RecordKind::Producer)
                    .tag(),
                grid: r.try_get(2)?,
                seq: r.try_get::<_, i64>(3)? as u64,
                full: true,
                bytes: r.try_get(4)?,
                heads: split_heads(&heads),
            };
            by_id.insert(rec.id.clone(), rec);
        }
        // In the order asked, each id once (as the SQLite backend answers).
        Ok(ids.iter().filter_map(|id| by_id.remove(*id)).collect())
    }

    fn feed_head(&self, grid: &str) -> StorageResult<u64> {
        let rows = self.query("SELECT seq FROM feed_heads WHERE grid = $1", &[&grid])?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }

    fn cursor_valid(&self, grid: &str, seq: u64, token: u64) -> StorageResult<bool> {
        if seq == 0 {
            return Ok(true);
        }
        let rows = self.query(SELECT_TOKEN, &[&grid, &(seq as i64)])?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)) == Some(token as i64))
    }

    fn audit(&self, entry: &AuditEntry) -> StorageResult<()> {
        let mut conn = self.conn()?;
        let PgConn { client, stmts } = &mut *conn;
        insert_audit(client, stmts, entry)
    }

    fn audit_list(&self, filter: &AuditFilter, limit: u32) -> StorageResult<Vec<AuditEntry>> {
        let limit = i64::from(limit);
        let rows = match filter {
            AuditFilter::Record(id) => self.query(
                "SELECT at_ms, person_id, device_id, record_id, kind, grid, action, detail FROM audit WHERE record_id = $1 ORDER BY id LIMIT $2",
                &[id, &limit],
            )?,
            AuditFilter::Person(id) => self.query(
                "SELECT at_ms, person_id, device_id, record_id, kind, grid, action, detail FROM audit WHERE person_id = $1 ORDER BY id LIMIT $2",
                &[id, &limit],
            )?,
            AuditFilter::Grid(g) => self.query(
                "SELECT at_ms, person_id, device_id, record_id, kind, grid, action, detail FROM audit WHERE grid = $1 ORDER BY id LIMIT $2",
                &[g, &limit],
            )?,
            AuditFilter::All => self.query(
                "SELECT at_ms, person_id, device_id, record_id, kind, grid, action, detail FROM audit ORDER BY id LIMIT $1",
                &[&limit],
            )?,
        };
        Ok(rows
            .iter()
            .map(|r| audit_from_row(r, 0))
            .collect::<Result<_, _>>()?)
    }

    fn record_counts(&self) -> StorageResult<Vec<(String, i64)>> {
        let rows = self.query(
            "SELECT kind, COUNT(*) FROM records GROUP BY kind ORDER BY kind",
            &[],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn is_empty(&self) -> StorageResult<bool> {
        let mut conn = self.conn()?;
        is_empty_conn(&mut conn.client)
    }

    fn export(&self, sink: &mut DumpSink<'_>) -> StorageResult<()> {
        self.read(|tx, _| export_tx(tx, sink))
    }

    fn import(&self, source: &mut DumpSource<'_>) -> StorageResult<CopyCounts> {
        self.write(|tx, _| {
            // Keep a concurrent import or push out while checking and filling.
            tx.batch_execute(
                "LOCK TABLE grids, people, enrol_codes, devices, records, changes, departures, feed_heads, feed_log, audit IN EXCLUSIVE MODE",
            )?;
            if !is_empty_conn(tx)? {
                return Err(StorageError::Invalid("the target database already holds data; copy only into an empty one".into()));
            }
            let mut counts = CopyCounts::new();
            source(&mut |chunk: DumpChunk| {
                let (table, n) = chunk.table();
                *counts.entry(table.to_string()).or_insert(0) += n as u64;
                import_chunk(tx, chunk)
            })?;
            // Audit ids were copied: move the id sequence past them.
            tx.execute("SELECT setval(pg_get_serial_sequence('audit', 'id'), GREATEST((SELECT MAX(id) FROM audit), 1))", &[])?;
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

fn is_empty_conn(c: &mut impl GenericClient) -> StorageResult<bool> {
    for t in DATA_TABLES {
        let any: bool = c
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {t})"), &[])?
            .try_get(0)?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Streams one table through a portal, `DUMP_CHUNK_ROWS` rows at a time.
fn export_table<T>(
    tx: &mut pg::Transaction<'_>,
    sql: &str,
    row: impl Fn(&Row) -> Result<(T, usize), pg::Error>,
    wrap: fn(Vec<T>) -> DumpChunk,
    sink: &mut DumpSink<'_>,
) -> StorageResult<()> {
    let portal = tx.bind(sql, &[])?;
    let mut buf = ChunkBuffer::default();
    loop {
        let rows = tx.query_portal(&portal, DUMP_CHUNK_ROWS as i32)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let (v, bytes) = row(r)?;
            buf.push(v, bytes, wrap, sink)?;
        }
    }
    buf.flush(wrap, sink)
}

fn export_tx(tx: &mut pg::Transaction<'_>, sink: &mut DumpSink<'_>) -> StorageResult<()> {
    export_table(
        tx,
        "SELECT key, value FROM server_meta ORDER BY key",
        |r| Ok(((r.try_get(0)?, r.try_get(1)?), 0)),
        DumpChunk::Meta,
        sink,
    )?;
    export_table(
        tx,
        "SELECT code, name, level, kind, parent FROM grids ORDER BY code",
        |r| {
            Ok((
                GridRow {
                    code: r.try_get(0)?,
                    name: r.try_get(1)?,
                    level: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    parent: r.try_get(4)?,
                },
                0,
            ))
        },
        DumpChunk::Grids,
        sink,
    )?;
    export_table(
        tx,
        "SELECT id, name, phone, role, grids, active FROM people ORDER BY id",
        |r| {
            Ok((
                PersonRow {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    phone: r.try_get(2)?,
                    role: r.try_get(3)?,
                    grids: r.try_get(4)?,
                    active: r.try_get(5)?,
                },
                0,
            ))
        },
        DumpChunk::People,
        sink,
    )?;
    export_table(
        tx,
        "SELECT code_hash, person_id, created_by, created_at_ms, expires_at_ms, used_at_ms FROM enrol_codes ORDER BY code_hash",
        |r| {
            Ok((
                CodeRow {
                    code: EnrolCode {
                        code_hash: r.try_get(0)?,
                        person_id: r.try_get(1)?,
                        created_by: r.try_get(2)?,
                        created_at_ms: r.try_get(3)?,
                        expires_at_ms: r.try_get(4)?,
                    },
                    used_at_ms: r.try_get(5)?,
                },
                0,
            ))
        },
        DumpChunk::Codes,
        sink,
    )?;
    export_table(
        tx,
        "SELECT id, person_id, name, secret_hash, pending_hash, created_at_ms, last_seen_ms, revoked_at_ms, revoked_reason FROM devices ORDER BY id",
        |r| Ok((device_from_row(r)?, 0)),
        DumpChunk::Devices,
        sink,
    )?;
    export_table(
        tx,
        "SELECT id, kind, grid, doc, heads, seq, grid_since, updated_at_ms FROM records ORDER BY id",
        |r| {
            let row = RecordRow {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                grid: r.try_get(2)?,
                doc: r.try_get(3)?,
                heads: r.try_get(4)?,
                seq: r.try_get(5)?,
                grid_since: r.try_get(6)?,
                updated_at_ms: r.try_get(7)?,
            };
            let n = row.doc.len() + row.heads.len();
            Ok((row, n))
        },
        DumpChunk::Records,
        sink,
    )?;
    export_table(
        tx,
        "SELECT record_id, grid, seq, bytes FROM changes ORDER BY record_id, grid, seq",
        |r| {
            let row = ChangeRow {
                record_id: r.try_get(0)?,
                grid: r.try_get(1)?,
                seq: r.try_get(2)?,
                bytes: r.try_get(3)?,
            };
            let n = row.bytes.len();
            Ok((row, n))
        },
        DumpChunk::Changes,
        sink,
    )?;
    export_table(
        tx,
        "SELECT grid, seq, record_id, new_grid FROM departures ORDER BY grid, seq",
        |r| {
            Ok((
                DepartureRow {
                    grid: r.try_get(0)?,
                    seq: r.try_get(1)?,
                    record_id: r.try_get(2)?,
                    new_grid: r.try_get(3)?,
                },
                0,
            ))
        },
        DumpChunk::Departures,
        sink,
    )?;
    export_table(
        tx,
        "SELECT grid, seq FROM feed_heads ORDER BY grid",
        |r| Ok(((r.try_get(0)?, r.try_get(1)?), 0)),
        DumpChunk::FeedHeads,
        sink,
    )?;
    export_table(
        tx,
        "SELECT grid, seq, token FROM feed_log ORDER BY grid, seq",
        |r| {
            Ok((
                FeedLogRow {
                    grid: r.try_get(0)?,
                    seq: r.try_get(1)?,
                    token: r.try_get(2)?,
                },
                0,
            ))
        },
        DumpChunk::FeedLog,
        sink,
    )?;
    export_table(
        tx,
        "SELECT id, at_ms, person_id, device_id, record_id, kind, grid, action, detail FROM audit ORDER BY id",
        |r| Ok(((r.try_get(0)?, audit_from_row(r, 1)?), 0)),
        DumpChunk::Audit,
        sink,
    )
}

fn import_chunk(tx: &mut pg::Transaction<'_>, chunk: DumpChunk) -> StorageResult<()> {
    match chunk {
        DumpChunk::Meta(rows) => {
            for (k, v) in rows {
                tx.execute(
                    "INSERT INTO server_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&k, &v],
                )?;
            }
        }
        DumpChunk::Grids(rows) => {
            let st = tx.prepare(
                "INSERT INTO grids (code, name, level, kind, parent) VALUES ($1, $2, $3, $4, $5)",
            )?;
            for g in rows {
                tx.execute(&st, &[&g.code, &g.name, &g.level, &g.kind, &g.parent])?;
            }
        }
        DumpChunk::People(rows) => {
            let st = tx.prepare("INSERT INTO people (id, name, phone, role, grids, active) VALUES ($1, $2, $3, $4, $5, $6)")?;
            for p in rows {
                tx.execute(
                    &st,
                    &[&p.id, &p.name, &p.phone, &p.role, &p.grids, &p.active],
                )?;
            }
        }
        DumpChunk::Codes(rows) => {
            let st = tx.prepare(
                "INSERT INTO enrol_codes (code_hash, person_id, created_by, created_at_ms, expires_at_ms, used_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )?;
            for c in rows {
                tx.execute(
                    &st,
                    &[
                        &c.code.code_hash,
                        &c.code.person_id,
                        &c.code.created_by,
                        &c.code.created_at_ms,
                        &c.code.expires_at_ms,
                        &c.used_at_ms,
                    ],
                )?;
            }
        }
        DumpChunk::Devices(rows) => {
            let st = tx.prepare(
                "INSERT INTO devices (id, person_id, name, secret_hash, pending_hash, created_at_ms, last_seen_ms, revoked_at_ms, revoked_reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )?;
            for d in rows {
                tx.execute(
                    &st,
                    &[
                        &d.id,
                        &d.person_id,
                        &d.name,
                        &d.secret_hash,
                        &d.pending_hash,
                        &d.created_at_ms,
                        &d.last_seen_ms,
                        &d.revoked_at_ms,
                        &d.revoked_reason,
                    ],
                )?;
            }
        }
        DumpChunk::Records(rows) => {
            let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
            let grids: Vec<&str> = rows.iter().map(|r| r.grid.as_str()).collect();
            let docs: Vec<&[u8]> = rows.iter().map(|r| r.doc.as_slice()).collect();
            let heads: Vec<&[u8]> = rows.iter().map(|r| r.heads.as_slice()).collect();
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let since: Vec<i64> = rows.iter().map(|r| r.grid_since).collect();
            let updated: Vec<i64> = rows.iter().map(|r| r.updated_at_ms).collect();
            tx.execute(
                "INSERT INTO records (id, kind, grid, doc, heads, seq, grid_since, updated_at_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::int8[], $7::int8[], $8::int8[])",
                &[&ids, &kinds, &grids, &docs, &heads, &seqs, &since, &updated],
            )?;
        }
        DumpChunk::Changes(rows) => {
            let ids: Vec<&str> = rows.iter().map(|r| r.record_id.as_str()).collect();
            let grids: Vec<&str> = rows.iter().map(|r| r.grid.as_str()).collect();
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let bytes: Vec<&[u8]> = rows.iter().map(|r| r.bytes.as_slice()).collect();
            tx.execute(
                "INSERT INTO changes (record_id, grid, seq, bytes) SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[])",
                &[&ids, &grids, &seqs, &bytes],
            )?;
        }
        DumpChunk::Departures(rows) => {
            let grids: Vec<&str> = rows.iter().map(|r| r.grid.as_str()).collect();
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let ids: Vec<&str> = rows.iter().map(|r| r.record_id.as_str()).collect();
            let new: Vec<&str> = rows.iter().map(|r| r.new_grid.as_str()).collect();
            tx.execute(
                "INSERT INTO departures (grid, seq, record_id, new_grid) SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[])",
                &[&grids, &seqs, &ids, &new],
            )?;
        }
        DumpChunk::FeedHeads(rows) => {
            let grids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
            tx.execute(
                "INSERT INTO feed_heads (grid, seq) SELECT * FROM unnest($1::text[], $2::int8[])",
                &[&grids, &seqs],
            )?;
        }
        DumpChunk::FeedLog(rows) => {
            let grids: Vec<&str> = rows.iter().map(|r| r.grid.as_str()).collect();
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let tokens: Vec<i64> = rows.iter().map(|r| r.token).collect();
            tx.execute(
                "INSERT INTO feed_log (grid, seq, token) SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[])",
                &[&grids, &seqs, &tokens],
            )?;
        }
        DumpChunk::Audit(rows) => {
            let st = tx.prepare(
                "INSERT INTO audit (id, at_ms, person_id, device_id, record_id, kind, grid, action, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )?;
            for (id, e) in rows {
                tx.execute(
                    &st,
                    &[
                        &id,
                        &e.at_ms,
                        &e.person_id,
                        &e.device_id,
                        &e.record_id,
                        &e.kind,
                        &e.grid,
                        &e.action,
                        &e.detail,
                    ],
                )?;
            }
        }
    }
    Ok(())
}

/// Prefix of scratch schemas made by [`ScratchSchema`].
const SCRATCH_PREFIX: &str = "gst_";
/// Scratch schemas older than this are dropped when a new one is made (left by killed tests).
const SCRATCH_MAX_AGE_SECS: u64 = 6 * 3600;

/// The PostgreSQL URL for tests, from `GRIDSYNC_TEST_POSTGRES`. Panics when it is unset and
/// `CI` is set (a CI run must test PostgreSQL); otherwise prints a notice and returns `None`.
pub fn test_url_from_env() -> Option<String> {
    match std::env::var("GRIDSYNC_TEST_POSTGRES") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
            assert!(!ci, "GRIDSYNC_TEST_POSTGRES is not set but CI is: start PostgreSQL with scripts/postgres.sh and export its URL");
            // Straight to stderr (not captured by the test harness), once per process.
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                use std::io::Write;
                let _ = std::io::stderr().write_all(
                    b"notice: GRIDSYNC_TEST_POSTGRES is not set; PostgreSQL tests skipped (scripts/postgres.sh start prints a URL)\n",
                );
            });
            None
        }
    }
}

/// A fresh, uniquely named schema for one test (or for several server instances of one
/// test); dropped with the guard unless [`ScratchSchema::keep`] was called.
#[derive(Debug)]
pub struct ScratchSchema {
    url: String,
    name: String,
    keep: bool,
}

impl ScratchSchema {
    /// Creates a new schema in the database at `url`, and drops scratch schemas left over
    /// from runs more than six hours old.
    pub fn new(url: &str) -> StorageResult<Self> {
        use rand::RngCore;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut b = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let name = format!("{SCRATCH_PREFIX}{now}_{}", hex::encode(b));
        let config = pg::Config::from_str(url)
            .map_err(|e| StorageError::Invalid(format!("database URL: {e}")))?;
        let mut c = config.connect(NoTls)?;
        for r in c.query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&SCRATCH_PREFIX],
        )? {
            let old: String = r.try_get(0)?;
            let made = old
                .trim_start_matches(SCRATCH_PREFIX)
                .split('_')
                .next()
                .and_then(|t| t.parse::<u64>().ok());
            if made.is_some_and(|t| t + SCRATCH_MAX_AGE_SECS < now)
                && check_schema_name(&old).is_ok()
            {
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS {old} CASCADE"))
                    .ok();
            }
        }
        c.batch_execute(&format!("CREATE SCHEMA {name}"))?;
        Ok(ScratchSchema {
            url: url.to_string(),
            name,
            keep: false,
        })
    }

    /// An existing schema by name (not dropped by this guard).
    pub fn existing(url: &str, name: &str) -> StorageResult<Self> {
        check_schema_name(name)?;
        Ok(ScratchSchema {
            url: url.to_string(),
            name: name.to_string(),
            keep: true,
        })
    }

    /// The schema name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL without the schema.
    pub fn base_url(&self) -> &str {
        &self.url
    }

    /// A URL that selects this schema (for `--database`).
    pub fn url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }

    /// Opens storage in this schema.
    pub fn open(&self) -> StorageResult<PostgresStorage> {
        PostgresStorage::open_in_schema(&self.url, &self.name)
    }

    /// Leaves the schema in place when the guard is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Ok(config) = pg::Config::from_str(&self.url) {
            if let Ok(mut c) = config.connect(NoTls) {
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                    .ok();
            }
        }
    }
}
