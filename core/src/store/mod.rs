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
//! - `sync_state`: what to push, cursors, pulled pages, rejected and kept edits;
//! - `integrity`: checks of the file and the query tables, and rebuilding them;
//! - `clock`: the device's clock offset from the server's;
//! - `attachments`: attachment files beside the database, their rows, which records refer
//!   to them, and the cache of downloaded ones (`docs/attachments.md`);
//! - `columns`: the model's enums as typed columns (`ToSql`/`FromSql`) and reading a
//!   column so that a bad stored value names its table, row and column.

#[cfg(test)]
pub(crate) mod attachment_tests;
mod attachments;
mod clock;
mod columns;
mod documents;
mod integrity;
mod meta;
mod put;
mod queries;
mod records;
mod reference;
pub mod schema;
mod sync_state;
#[cfg(test)]
mod typed_rows_tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use automerge::ActorId;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::model::ChecklistTemplate;
use crate::{Error, Result};

pub use attachments::{AttachmentInfo, AttachmentState, DEFAULT_CACHE_BYTES};
pub use integrity::{IntegrityLevel, IntegrityReport};
pub use queries::{
    Counts, DueProducer, ProducerSort, ProducerSummary, RectificationItem, VisitSummary,
};
pub use reference::TreeSnapshot;
pub use sync_state::{KeptEdit, PendingPush, PulledRecord, ServerLink};

/// A device's local store. Safe to share between threads (`Arc<Store>`).
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
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
        let conn = Connection::open(path.as_ref())?;
        let store = Self::init(conn, attachments::AttachmentFiles::beside(path.as_ref()))?;
        let running = integrity::spawn_open_check(path.as_ref().to_path_buf());
        store
            .open_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running = running;
        Ok(store)
    }

    /// Opens the store in a file without the background check at open: for a caller that
    /// runs [`Store::check_integrity`] itself and wants to see what it finds first
    /// (`gridsync-field doctor`).
    pub fn open_unchecked(path: impl AsRef<Path>) -> Result<Store> {
        Self::init(
            Connection::open(path.as_ref())?,
            attachments::AttachmentFiles::beside(path.as_ref()),
        )
    }

    /// An in-memory store, for tests. Its attachments live in a private temporary
    /// directory, removed when the store is dropped.
    pub fn open_in_memory() -> Result<Store> {
        Self::init(
            Connection::open_in_memory()?,
            attachments::AttachmentFiles::temporary(),
        )
    }

    fn init(mut conn: Connection, files: attachments::AttachmentFiles) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
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
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in an IMMEDIATE transaction that commits only if `f` succeeds.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` with the connection for reading.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }

    /// The Automerge actor id of this device.
    pub fn actor_id(&self) -> ActorId {
        self.actor.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
