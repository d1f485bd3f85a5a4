//! The local store: one SQLite file per device holding each record as Automerge bytes plus
//! materialized columns for the field app's queries, and the sync bookkeeping beside them
//! so that data and cursors always commit together.
//!
//! Contents, one concern a module (every module adds `impl Store` blocks of its own):
//! - this file: the [`Store`] handle, opening a file (pragmas, migration, the device's
//!   actor) and the read and write transaction helpers;
//! - [`schema`]: the schema versions and their migration through [`crate::migrate`];
//! - `meta`: the key-value `meta` table (profile, actor, server link, scope, clock);
//! - `reference`: reference data: grids and their [`TreeSnapshot`], people, the
//!   device's person;
//! - `records`: reading and writing records (producers, visits, templates), their review
//!   steps, conflicts, history and batch imports; workflow decisions come from
//!   [`crate::rules`];
//! - `put`: the one validated, permission-checked write path every record write takes;
//! - `documents`: a record's document in SQLite (full save plus incremental chunks) and
//!   its materialized query-table row;
//! - `queries`: the field app's list queries and the patrol schedule;
//! - `duplicates`: likely duplicates of an entry in the local copy, before it is saved;
//! - `sync_state`: what to push, cursors, pulled pages, rejected and kept edits;
//! - `integrity`: checks of the file and the query tables, and rebuilding them;
//! - `clock`: the device's clock offset from the server's;
//! - `attachments`: attachment files beside the database, their rows, which records refer
//!   to them, and the cache of downloaded ones (`docs/attachments.md`);
//! - `columns`: the model's enums as typed columns (`ToSql`/`FromSql`) and reading a
//!   column so that a bad stored value names its table, row and column;
//! - `observe`: listeners for changed records and sync state, told after each commit on a
//!   thread of their own.
//!
//! Connections: one writer (behind a mutex, every write transaction is IMMEDIATE) and a
//! small pool of read connections. The file is in WAL mode, so a read runs on its own
//! snapshot beside a write transaction and never waits for it: a screen stays responsive
//! while a sync applies a page.

#[cfg(test)]
pub(crate) mod attachment_tests;
mod attachments;
mod clock;
mod columns;
#[cfg(test)]
mod confirm_tests;
mod documents;
mod duplicates;
#[cfg(test)]
mod duplicates_tests;
mod integrity;
mod meta;
mod observe;
#[cfg(test)]
mod observe_tests;
mod put;
mod queries;
mod records;
mod reference;
mod scale;
pub mod schema;
mod sync_state;
#[cfg(test)]
mod typed_rows_tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use automerge::ActorId;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::model::ChecklistTemplate;
use crate::{Error, Result};

pub use attachments::{AttachmentInfo, AttachmentState, DEFAULT_CACHE_BYTES};
pub use duplicates::{LikelyDuplicate, MAX_LIKELY_DUPLICATES};
pub use integrity::{IntegrityLevel, IntegrityReport};
pub use observe::{
    ChangeOrigin, ChangedRecord, RecordChanges, RecordFilter, Subscription, SyncEvent, SyncPhase,
};
/// The phone's default patrol interval per risk grade (the server's figures use it too).
pub use queries::default_interval_days;
pub use queries::{
    Counts, DueProducer, ProducerSort, ProducerSummary, RectificationItem, VisitSummary,
};
pub use reference::TreeSnapshot;
pub use scale::LeagueScale;
pub use sync_state::{KeptEdit, PendingPush, PulledRecord, ServerLink};

/// Read connections a store opens at most ([`StoreOptions::readers`]).
pub const DEFAULT_READERS: usize = 3;

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Read connections beside the writer (opened when first needed). 0 runs reads on the
    /// writer connection, waiting for any write transaction (how the store worked before
    /// it had readers; the benchmarks measure against it). An in-memory store always
    /// reads on its writer.
    pub readers: usize,
    /// Run `PRAGMA quick_check` and the query-table counts in the background at open
    /// ([`Store::open_check`]).
    pub check_at_open: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            readers: DEFAULT_READERS,
            check_at_open: true,
        }
    }
}

/// Read connections to the store's file, opened lazily up to a bound.
#[derive(Debug)]
struct Readers {
    path: Option<std::path::PathBuf>,
    max: usize,
    state: Mutex<ReaderState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct ReaderState {
    idle: Vec<Connection>,
    open: usize,
}

impl Readers {
    /// A read connection: an idle one, a new one while fewer than `max` are open, or the
    /// next one returned. `None` when the store has no readers (reads use the writer).
    fn take(&self) -> Result<Option<Connection>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        if self.max == 0 {
            return Ok(None);
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok(Some(c));
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match open_reader(path) {
                    Ok(c) => Ok(Some(c)),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, c: Connection) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .idle
            .push(c);
        self.freed.notify_one();
    }

    /// A connection that failed mid-read is closed rather than reused.
    fn discard(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
        self.freed.notify_one();
    }
}

/// A read connection on loan: back to the pool when dropped, or closed if its read failed
/// in SQLite or panicked.
struct Lease<'a> {
    conn: Option<Connection>,
    readers: &'a Readers,
    healthy: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        match self.conn.take() {
            Some(c) if self.healthy => self.readers.give_back(c),
            Some(c) => {
                drop(c);
                self.readers.discard();
            }
            None => {}
        }
    }
}

/// Prepared statements each connection keeps parsed (rusqlite keeps 16 by default). A
/// record written or pulled runs about a dozen distinct statements (its `records` row, its
/// query rows, its attachment references, the lookups before them) and the sync engine and
/// the screens run others between them: with 16, statements pushed out of the cache are
/// parsed again at their next use.
const STATEMENT_CACHE: usize = 128;

/// Opens a read connection: queries only, a small page cache of its own.
fn open_reader(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    c.pragma_update(None, "query_only", "ON")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.pragma_update(None, "cache_size", -1024)?;
    Ok(c)
}

/// A device's local store. Safe to share between threads (`Arc<Store>`).
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    readers: Readers,
    observers: observe::Observers,
    /// The Automerge actor of this device: random until enrolment, then derived from the
    /// device id ([`crate::device_actor`]).
    actor: Mutex<ActorId>,
    tree: Mutex<Option<TreeSnapshot>>,
    /// Parsed template versions with the heads they were read at (every visit save
    /// validates against its template; a template changes only with its heads).
    templates: Mutex<HashMap<String, (Vec<u8>, ChecklistTemplate)>>,
    /// The integrity check started when the store was opened ([`Store::open_check`]).
    open_check: Mutex<integrity::OpenCheck>,
    /// Attachment files beside the database and their limits.
    files: attachments::AttachmentFiles,
}

impl Drop for Store {
    fn drop(&mut self) {
        // The open-time check has a connection of its own: let it finish with the file.
        let oc = self.open_check.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = oc.running.take() {
            let _ = h.join();
        }
    }
}

impl Store {
    /// Opens (or creates) the store in a file, in WAL mode with full durability.
    ///
    /// `PRAGMA quick_check` and the row counts of the query tables then run in the
    /// background on a connection of their own; a failure rebuilds the query tables from
    /// the documents ([`Store::open_check`] has the result).
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store in a file with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let path = path.as_ref();
        let conn = Connection::open(path)?;
        let store = Self::init(
            conn,
            attachments::AttachmentFiles::beside(path),
            Some(path),
            options.readers,
        )?;
        if options.check_at_open {
            let running = integrity::spawn_open_check(path.to_path_buf());
            store
                .open_check
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .running = running;
        }
        Ok(store)
    }

    /// Opens the store in a file without the background check at open: for a caller that
    /// runs [`Store::check_integrity`] itself and wants to see what it finds first
    /// (`gridsync-field doctor`).
    pub fn open_unchecked(path: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(
            path,
            StoreOptions {
                check_at_open: false,
                ..StoreOptions::default()
            },
        )
    }

    /// An in-memory store, for tests. Its attachments live in a private temporary
    /// directory, removed when the store is dropped.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(
            Connection::open_in_memory()?,
            attachments::AttachmentFiles::temporary(),
            None,
            0,
        )
    }

    fn init(
        mut conn: Connection,
        files: attachments::AttachmentFiles,
        path: Option<&Path>,
        readers: usize,
    ) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let before: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        schema::migrate(&mut conn)?;
        clock::load(&conn)?;
        let actor = match meta::get(&conn, "actor")? {
            Some(h) => ActorId::from(
                hex::decode(&h).map_err(|e| Error::Document(format!("stored actor id: {e}")))?,
            ),
            None => {
                let a = ActorId::random();
                meta::set(&conn, "actor", &hex::encode(a.to_bytes()))?;
                a
            }
        };
        // A store enrolled before actors were bound to devices takes its device's actor.
        let actor = match meta::get(&conn, sync_state::LINK_KEY)? {
            Some(link) => match serde_json::from_str::<ServerLink>(&link) {
                Ok(l) if crate::device_actor(&l.device_id) != actor => {
                    let a = crate::device_actor(&l.device_id);
                    meta::set(&conn, "actor", &hex::encode(a.to_bytes()))?;
                    a
                }
                _ => actor,
            },
            None => actor,
        };
        let store = Store {
            conn: Mutex::new(conn),
            readers: Readers {
                path: path.map(Path::to_path_buf),
                max: readers,
                state: Mutex::new(ReaderState::default()),
                freed: Condvar::new(),
            },
            observers: observe::Observers::default(),
            actor: Mutex::new(actor),
            tree: Mutex::new(None),
            templates: Mutex::new(HashMap::new()),
            open_check: Mutex::new(integrity::OpenCheck::default()),
            files,
        };
        if before > 0 && before < schema::ATTACHMENTS_VERSION {
            // Records stored before attachments existed: learn what they refer to.
            store.rebuild_attachment_refs()?;
        }
        if before > 0 && before < schema::MERGED_INTO_VERSION {
            // One rebuild from the documents fills the columns added since: confirmations
            // (`CONFIRMATIONS_VERSION`, documents received before may carry them), the
            // likely-duplicate keys of every producer stored before
            // (`DUPLICATE_KEYS_VERSION`) and the tombstones' `merged_into`.
            store.rebuild_query_tables()?;
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in an IMMEDIATE transaction that commits only if `f` succeeds; the
    /// records it changed are then told to the listeners ([`Store::observe_records`]).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.write_from(ChangeOrigin::Local, f)
    }

    /// [`Store::write`], with the changes it makes told as coming from `origin`.
    pub(crate) fn write_from<T>(
        &self,
        origin: ChangeOrigin,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let collecting = observe::Collect::start();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        // Still under the writer's lock: listeners hear commits in the order they happened.
        self.observers.committed(origin, collecting.finish());
        Ok(out)
    }

    /// Runs `f` on a read connection, inside one read transaction: it sees one snapshot
    /// of the file however many statements it runs, and a write on another thread neither
    /// waits for it nor is seen half-done.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(conn) = self.readers.take()? else {
            let conn = self.lock();
            return f(&conn);
        };
        let mut lease = Lease {
            conn: Some(conn),
            readers: &self.readers,
            healthy: false,
        };
        let conn = lease
            .conn
            .as_mut()
            .expect("a lease holds its connection until dropped");
        let tx = conn.transaction()?;
        let out = f(&tx);
        tx.finish()?;
        // A connection whose read failed in SQLite itself is not trusted again.
        lease.healthy = !matches!(out, Err(Error::Storage(_)));
        out
    }

    /// The Automerge actor id of this device.
    pub fn actor_id(&self) -> ActorId {
        self.actor.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
