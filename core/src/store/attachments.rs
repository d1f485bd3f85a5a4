//! Attachments on the phone (`docs/attachments.md`): the bytes in files beside the database
//! (`<store file>.attachments/<sha256>`), one row each in `attachments`, and which record
//! refers to which in `attachment_refs` (kept by [`super::documents::materialize`]).
//!
//! Writing an attachment: the bytes go to a temporary file in the directory, which is
//! synced, renamed to its name and the directory synced; only then is the row inserted. A
//! failed write (a full disk) removes the temporary file and leaves no row. A row therefore
//! always has its file; a file without a row (a crash between rename and insert) is
//! written again by the next add of the same bytes.
//!
//! The cache: attachments that are not pending (uploaded here, or downloaded) count
//! towards a byte budget; the least recently read is deleted first. A pending attachment
//! is never deleted. An uploaded or downloaded attachment no record on the phone refers to
//! is deleted by [`Store::collect_attachments`] (the sync runs it after uploading).
//!
//! An in-memory store ([`Store::open_in_memory`]) keeps its attachments in a private
//! temporary directory, removed when the store is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::columns::column;
use super::Store;
use crate::attachment::{
    is_sha256_hex, photo_fields, refs_of, sniff, AttachmentRef, DEFAULT_MAX_BYTES,
};
use crate::model::Record;
use crate::validate::Invalid;
use crate::{now_ms, Error, Result};

/// Default byte budget of the attachment cache (200 MB).
pub const DEFAULT_CACHE_BYTES: u64 = 200 * 1024 * 1024;

/// Where an attachment stands on this phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum AttachmentState {
    /// Recorded here, not yet (wholly) on the server. Never evicted.
    Pending,
    /// Recorded here and uploaded; kept while a record here refers to it, within the
    /// cache budget.
    Uploaded,
    /// Downloaded from the server; within the cache budget.
    Cached,
}

impl AttachmentState {
    /// The stable identifier (stored, and shown by the field app).
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentState::Pending => "pending",
            AttachmentState::Uploaded => "uploaded",
            AttachmentState::Cached => "cached",
        }
    }

    /// Parses an identifier.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(AttachmentState::Pending),
            "uploaded" => Some(AttachmentState::Uploaded),
            "cached" => Some(AttachmentState::Cached),
            _ => None,
        }
    }
}

/// An attachment the phone holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// Its reference.
    pub reference: AttachmentRef,
    /// Pending, uploaded or cached.
    pub state: AttachmentState,
    /// When it was added or downloaded (ms since the epoch).
    pub created_at_ms: i64,
    /// When it was last read (ms since the epoch; the cache evicts the oldest first).
    pub last_read_ms: i64,
    /// Bytes the server last confirmed holding (a hint: the server's answer is the truth).
    pub server_offset: u64,
    /// Whether a record on this phone refers to it.
    pub referenced: bool,
}

/// The attachment files of one store and their limits.
#[derive(Debug)]
pub(crate) struct AttachmentFiles {
    dir: PathBuf,
    /// Removed with the store (an in-memory store's private directory).
    temporary: bool,
    max_bytes: AtomicU64,
    cache_budget: AtomicU64,
    /// Test hook: the next file write fails with "no space left" after this many bytes.
    fault: Mutex<Option<u64>>,
}

impl AttachmentFiles {
    /// The files of the store in `db`: `<db>.attachments/`.
    pub(crate) fn beside(db: &Path) -> Self {
        let mut name = db.as_os_str().to_owned();
        name.push(".attachments");
        Self::new(PathBuf::from(name), false)
    }

    /// A private temporary directory (in-memory stores), removed with the store.
    pub(crate) fn temporary() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gridsync-mem-{}.attachments",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        Self::new(dir, true)
    }

    fn new(dir: PathBuf, temporary: bool) -> Self {
        AttachmentFiles {
            dir,
            temporary,
            max_bytes: AtomicU64::new(DEFAULT_MAX_BYTES),
            cache_budget: AtomicU64::new(DEFAULT_CACHE_BYTES),
            fault: Mutex::new(None),
        }
    }

    fn path(&self, sha: &str) -> PathBuf {
        self.dir.join(sha)
    }

    fn part_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.part"))
    }

    /// Creates the directory (and syncs its parent so the entry survives a power cut).
    fn ensure_dir(&self) -> std::io::Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        // A store opened by a bare file name has its directory beside it in `.`.
        let parent = self
            .dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sync_dir(parent)
    }

    /// Writes `bytes` at `dest` through a synced temporary file, a rename and a synced
    /// directory. On failure the temporary file is removed.
    fn write_durably(&self, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
        self.ensure_dir()?;
        let tmp = self
            .dir
            .join(format!(".tmp-{}", hex::encode(rand::random::<[u8; 8]>())));
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            self.write_all(&mut f, bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, dest)?;
            sync_dir(&self.dir)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// `write_all`, failing where the test hook says.
    fn write_all(&self, f: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        let fault = self.fault.lock().unwrap_or_else(|p| p.into_inner()).take();
        match fault {
            Some(after) => {
                let n = usize::try_from(after)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                f.write_all(&bytes[..n])?;
                Err(std::io::Error::from_raw_os_error(28))
            }
            None => f.write_all(bytes),
        }
    }

    fn remove(&self, sha: &str) {
        let _ = fs::remove_file(self.path(sha));
        let _ = fs::remove_file(self.part_path(sha));
    }
}

impl Drop for AttachmentFiles {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Syncs a directory's entries (a rename or a new file in it). Only Unix can open a
/// directory for that; elsewhere the rename is as durable as the platform makes it.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn attachment_not_found(sha: &str) -> Error {
    Error::NotFound {
        kind: "attachment",
        id: sha.to_string(),
    }
}

fn check_sha(sha: &str) -> Result<()> {
    if is_sha256_hex(sha) {
        Ok(())
    } else {
        Err(Invalid::new("sha256", "is not a SHA-256 in 64 lowercase hex digits").into())
    }
}

/// A time stamp for `column` of `attachments`: now, but later than every stamp there, so
/// that the order of adds and reads is kept even within one millisecond.
fn next_stamp(c: &Connection, column: &str) -> Result<i64> {
    let last: Option<i64> = c
        .prepare_cached(&format!("SELECT MAX({column}) FROM attachments"))?
        .query_row([], |r| r.get(0))?;
    Ok(now_ms().max(last.map_or(i64::MIN, |l| l.saturating_add(1))))
}

const INFO_COLUMNS: &str =
    "a.sha256, a.size, a.mime, a.state, a.created_at_ms, a.last_read_ms, a.server_offset,
     EXISTS (SELECT 1 FROM attachment_refs r WHERE r.sha256 = a.sha256)";

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttachmentInfo> {
    Ok(AttachmentInfo {
        reference: ref_row(r, r.get(0)?, 1)?,
        state: column(r, 3, "attachments", 0)?,
        created_at_ms: r.get(4)?,
        last_read_ms: r.get(5)?,
        server_offset: r.get::<_, i64>(6)?.max(0) as u64,
        referenced: r.get(7)?,
    })
}

/// A reference from a row's size (column `at`) and type (column `at + 1`).
fn ref_row(r: &rusqlite::Row<'_>, sha256: String, at: usize) -> rusqlite::Result<AttachmentRef> {
    Ok(AttachmentRef {
        sha256,
        size: r.get::<_, i64>(at)?.max(0) as u64,
        mime: r.get(at + 1)?,
    })
}

fn infos(c: &Connection, filter: &str, p: impl rusqlite::Params) -> Result<Vec<AttachmentInfo>> {
    let sql = format!("SELECT {INFO_COLUMNS} FROM attachments a {filter}");
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(p, info_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Refreshes which attachments a record refers to (every write of a record's query rows).
pub(crate) fn refresh_refs(c: &Connection, rec: &Record) -> Result<()> {
    let Record::Visit(_) = rec else {
        return Ok(());
    };
    c.prepare_cached("DELETE FROM attachment_refs WHERE record_id = ?1")?
        .execute([rec.id()])?;
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO attachment_refs (sha256, record_id, size, mime) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for r in refs_of(rec) {
        ins.execute(params![r.sha256, rec.id(), r.size as i64, r.mime])?;
    }
    Ok(())
}

/// Forgets a removed record's references.
pub(crate) fn drop_refs(c: &Connection, record_id: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM attachment_refs WHERE record_id = ?1")?
        .execute([record_id])?;
    Ok(())
}

/// Refuses a record that refers to an attachment the phone does not hold (with this size
/// and type). References the stored record (`before`) already held are not checked again:
/// a record pulled with another phone's photo can be edited without downloading it.
pub(crate) fn check_refs_held(c: &Connection, rec: &Record, before: Option<&Record>) -> Result<()> {
    let Record::Visit(v) = rec else {
        return Ok(());
    };
    let old = before.map(refs_of).unwrap_or_default();
    let mut held = c.prepare_cached("SELECT size, mime FROM attachments WHERE sha256 = ?1")?;
    for (field, text) in photo_fields(v) {
        if !AttachmentRef::is_reference(text) {
            continue;
        }
        // A malformed reference is validation's to refuse.
        let Ok(r) = text.parse::<AttachmentRef>() else {
            continue;
        };
        if old.contains(&r) {
            continue;
        }
        let row: Option<(i64, String)> = held
            .query_row([&r.sha256], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        match row {
            Some((size, mime)) if size as u64 == r.size && mime == r.mime => {}
            Some(_) => {
                return Err(Invalid::new(
                    field,
                    "names an attachment this phone holds with another size or type",
                )
                .into())
            }
            None => {
                return Err(Invalid::new(
                    field,
                    "names an attachment this phone does not hold (add the photo first)",
                )
                .into())
            }
        }
    }
    Ok(())
}

/// What deleting an attachment from the cache needs: its name and state.
struct Victim {
    sha: String,
    size: u64,
}

impl Store {
    /// The directory holding this store's attachment files.
    pub fn attachment_dir(&self) -> &Path {
        &self.files.dir
    }

    /// The largest attachment `add_attachment` accepts (default
    /// [`DEFAULT_MAX_BYTES`]).
    pub fn attachment_max_bytes(&self) -> u64 {
        self.files.max_bytes.load(Ordering::Relaxed)
    }

    /// Sets the largest attachment accepted.
    pub fn set_attachment_max_bytes(&self, max: u64) {
        self.files.max_bytes.store(max, Ordering::Relaxed);
    }

    /// The byte budget of uploaded and downloaded attachments (default
    /// [`DEFAULT_CACHE_BYTES`]).
    pub fn attachment_cache_budget(&self) -> u64 {
        self.files.cache_budget.load(Ordering::Relaxed)
    }

    /// Sets the cache budget and evicts what no longer fits.
    pub fn set_attachment_cache_budget(&self, bytes: u64) -> Result<()> {
        self.files.cache_budget.store(bytes, Ordering::Relaxed);
        self.evict_attachments(None).map(|_| ())
    }

    /// Test hook: the next attachment file write fails as a full disk would, after
    /// writing `after_bytes` bytes.
    #[doc(hidden)]
    pub fn fail_next_attachment_write(&self, after_bytes: u64) {
        *self.files.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(after_bytes);
    }

    /// Records an attachment: checks its type (sniffed from the bytes; `mime`, when given,
    /// must agree) and size, writes the file durably and inserts its row, all before it
    /// returns the reference. Adding the same bytes again returns the same reference.
    pub fn add_attachment(&self, bytes: &[u8], mime: Option<&str>) -> Result<AttachmentRef> {
        let r = AttachmentRef::of_bytes(bytes, mime, self.attachment_max_bytes())
            .map_err(|e| Error::from(Invalid::new("attachment", e.to_string())))?;
        let path = self.files.path(&r.sha256);
        let have_row = self.read(|c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM attachments WHERE sha256 = ?1")?
                    .query_row([&r.sha256], |_| Ok(()))
                    .optional()?
                    .is_some(),
            )
        })?;
        let have_file = fs::metadata(&path).is_ok_and(|m| m.len() == r.size);
        if have_row && have_file {
            return Ok(r);
        }
        if !have_file {
            self.files
                .write_durably(&path, bytes)
                .map_err(|e| Error::io(format!("writing attachment {}", r.sha256), e))?;
        }
        let inserted = self.write(|tx| {
            let now = next_stamp(tx, "created_at_ms")?;
            tx.execute(
                "INSERT INTO attachments (sha256, size, mime, state, created_at_ms, last_read_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(sha256) DO NOTHING",
                params![
                    r.sha256,
                    r.size as i64,
                    r.mime,
                    AttachmentState::Pending,
                    now
                ],
            )?;
            Ok(())
        });
        if let Err(e) = inserted {
            // No row: the file must not outlive the failure (unless a row came meanwhile).
            if !have_row && self.attachment_info(&r.sha256).ok().flatten().is_none() {
                let _ = fs::remove_file(&path);
            }
            return Err(e);
        }
        Ok(r)
    }

    /// [`Store::add_attachment`] of a file's bytes (too large a file is refused before it
    /// is read).
    pub fn add_attachment_file(
        &self,
        path: impl AsRef<Path>,
        mime: Option<&str>,
    ) -> Result<AttachmentRef> {
        let path = path.as_ref();
        let context = || format!("reading {}", path.display());
        let f = File::open(path).map_err(|e| Error::io(context(), e))?;
        let len = f.metadata().map_err(|e| Error::io(context(), e))?.len();
        let max = self.attachment_max_bytes();
        if len > max {
            return Err(Invalid::new(
                "attachment",
                format!("the attachment is {len} bytes; at most {max} are allowed"),
            )
            .into());
        }
        let mut bytes = Vec::with_capacity(len as usize);
        f.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(context(), e))?;
        self.add_attachment(&bytes, mime)
    }

    /// The bytes of an attachment the phone holds (checked against its hash); marks it
    /// read for the cache. `NotFound` when the phone does not hold it.
    pub fn attachment(&self, sha256: &str) -> Result<Vec<u8>> {
        check_sha(sha256)?;
        let info = self
            .attachment_info(sha256)?
            .ok_or_else(|| attachment_not_found(sha256))?;
        let bytes = match fs::read(self.files.path(sha256)) {
            Ok(b) => b,
            // Evicted between the row and the file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(attachment_not_found(sha256))
            }
            Err(e) => return Err(Error::io(format!("reading attachment {sha256}"), e)),
        };
        if bytes.len() as u64 != info.reference.size
            || hex::encode(Sha256::digest(&bytes)) != sha256
        {
            return Err(Error::Corrupt {
                id: sha256.to_string(),
                detail: "the attachment's file does not match its hash".into(),
            });
        }
        self.write(|tx| {
            let now = next_stamp(tx, "last_read_ms")?;
            tx.execute(
                "UPDATE attachments SET last_read_ms = ?2 WHERE sha256 = ?1",
                params![sha256, now],
            )?;
            Ok(())
        })?;
        Ok(bytes)
    }

    /// One attachment's row, if the phone holds it.
    pub fn attachment_info(&self, sha256: &str) -> Result<Option<AttachmentInfo>> {
        self.read(|c| {
            Ok(infos(c, "WHERE a.sha256 = ?1", [sha256])?
                .into_iter()
                .next())
        })
    }

    /// Every attachment the phone holds, oldest first.
    pub fn attachments(&self) -> Result<Vec<AttachmentInfo>> {
        self.read(|c| infos(c, "ORDER BY a.created_at_ms, a.sha256", []))
    }

    /// The attachments not yet on the server, oldest first.
    pub fn pending_attachments(&self) -> Result<Vec<AttachmentInfo>> {
        self.read(|c| {
            infos(
                c,
                "WHERE a.state = 'pending' ORDER BY a.created_at_ms, a.sha256",
                [],
            )
        })
    }

    /// `len` bytes of a held attachment from `offset` (for uploads).
    pub(crate) fn attachment_slice(
        &self,
        sha256: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let context = || format!("reading attachment {sha256}");
        let mut f = File::open(self.files.path(sha256)).map_err(|e| Error::io(context(), e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(context(), e))?;
        let mut buf = vec![0; len];
        f.read_exact(&mut buf)
            .map_err(|e| Error::io(context(), e))?;
        Ok(buf)
    }

    /// Notes the bytes the server confirmed holding of a pending attachment.
    pub(crate) fn note_server_offset(&self, sha256: &str, offset: u64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE attachments SET server_offset = ?2 WHERE sha256 = ?1",
                params![sha256, offset as i64],
            )?;
            Ok(())
        })
    }

    /// Marks an attachment wholly on the server; deletes it if no record here refers to
    /// it, and evicts what no longer fits in the cache.
    pub(crate) fn mark_uploaded(&self, sha256: &str) -> Result<()> {
        let size = self.write(|tx| {
            Ok(tx
                .query_row(
                    "UPDATE attachments SET state = 'uploaded', server_offset = size
                     WHERE sha256 = ?1 AND state = 'pending' RETURNING size",
                    [sha256],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?)
        })?;
        if size.is_some() {
            self.collect_attachments()?;
        }
        Ok(())
    }

    /// Deletes the uploaded and downloaded attachments no record on the phone refers to,
    /// then evicts what no longer fits in the cache budget. Returns how many were deleted.
    pub fn collect_attachments(&self) -> Result<usize> {
        let gone: Vec<Victim> = self.write(|tx| {
            let mut st = tx.prepare_cached(
                "DELETE FROM attachments WHERE state != 'pending'
                   AND NOT EXISTS (SELECT 1 FROM attachment_refs r WHERE r.sha256 = attachments.sha256)
                 RETURNING sha256, size",
            )?;
            let rows = st.query_map([], |r| {
                Ok(Victim {
                    sha: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        for v in &gone {
            self.files.remove(&v.sha);
        }
        Ok(gone.len() + self.evict_attachments(None)?)
    }

    /// Evicts the least recently read uploaded or downloaded attachments until those left
    /// fit in the cache budget (never a pending one, nor `keep`). Returns how many.
    pub(crate) fn evict_attachments(&self, keep: Option<&str>) -> Result<usize> {
        let budget = self.attachment_cache_budget();
        let victims: Vec<Victim> = self.write(|tx| {
            let mut total: u64 = tx.query_row(
                "SELECT COALESCE(SUM(size), 0) FROM attachments WHERE state != 'pending'",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64;
            let mut out = Vec::new();
            if total <= budget {
                return Ok(out);
            }
            let mut st = tx.prepare_cached(
                "SELECT sha256, size FROM attachments WHERE state != 'pending'
                 ORDER BY last_read_ms, created_at_ms, sha256",
            )?;
            let rows = st.query_map([], |r| {
                Ok(Victim {
                    sha: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                })
            })?;
            for v in rows {
                let v = v?;
                if total <= budget {
                    break;
                }
                if Some(v.sha.as_str()) == keep {
                    continue;
                }
                total = total.saturating_sub(v.size);
                out.push(v);
            }
            drop(st);
            let mut del = tx.prepare_cached("DELETE FROM attachments WHERE sha256 = ?1")?;
            for v in &out {
                del.execute([&v.sha])?;
            }
            Ok(out)
        })?;
        for v in &victims {
            self.files.remove(&v.sha);
        }
        Ok(victims.len())
    }

    /// What a record on the phone says of an attachment (size and type), if one refers to
    /// it.
    pub fn referenced_attachment(&self, sha256: &str) -> Result<Option<AttachmentRef>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT size, mime FROM attachment_refs WHERE sha256 = ?1 LIMIT 1",
            )?
            .query_row([sha256], |r| ref_row(r, sha256.to_string(), 0))
            .optional()?)
        })
    }

    /// Attachments records here refer to but the phone does not hold, those of the most
    /// recent visits first (for prefetching).
    pub fn missing_attachments(&self, limit: usize) -> Result<Vec<AttachmentRef>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT r.sha256, MAX(r.size), MAX(r.mime), MAX(v.started_at_ms) AS at
                 FROM attachment_refs r LEFT JOIN visits v ON v.id = r.record_id
                 WHERE NOT EXISTS (SELECT 1 FROM attachments a WHERE a.sha256 = r.sha256)
                 GROUP BY r.sha256 ORDER BY at DESC, r.sha256 LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], |r| ref_row(r, r.get(0)?, 1))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Bytes already downloaded of an attachment (its `.part` file).
    pub(crate) fn partial_download_len(&self, sha256: &str) -> u64 {
        fs::metadata(self.files.part_path(sha256)).map_or(0, |m| m.len())
    }

    /// Appends downloaded bytes at `offset` of the `.part` file (cut back to `offset`
    /// first) and syncs them.
    pub(crate) fn append_partial_download(
        &self,
        sha256: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<()> {
        let context = || format!("writing attachment {sha256}");
        self.files
            .ensure_dir()
            .map_err(|e| Error::io(context(), e))?;
        let written = (|| {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.files.part_path(sha256))?;
            f.set_len(offset)?;
            f.seek(SeekFrom::Start(offset))?;
            self.files.write_all(&mut f, bytes)?;
            f.sync_data()
        })();
        written.map_err(|e| {
            // Whatever was written past `offset` is cut at the next append.
            Error::io(context(), e)
        })
    }

    /// Drops a download's `.part` file.
    pub(crate) fn discard_partial_download(&self, sha256: &str) {
        let _ = fs::remove_file(self.files.part_path(sha256));
    }

    /// Finishes a download: checks the `.part` file against the reference, moves it into
    /// place, records it as cached and evicts what no longer fits. Returns the bytes.
    pub(crate) fn finish_download(&self, r: &AttachmentRef) -> Result<Vec<u8>> {
        let part = self.files.part_path(&r.sha256);
        let context = || format!("reading attachment {}", r.sha256);
        let bytes = fs::read(&part).map_err(|e| Error::io(context(), e))?;
        let ok = bytes.len() as u64 == r.size
            && hex::encode(Sha256::digest(&bytes)) == r.sha256
            && sniff(&bytes) == Some(r.mime.as_str());
        if !ok {
            let _ = fs::remove_file(&part);
            return Err(Error::Corrupt {
                id: r.sha256.clone(),
                detail: "the downloaded bytes do not match the attachment's reference".into(),
            });
        }
        let dest = self.files.path(&r.sha256);
        fs::rename(&part, &dest)
            .and_then(|()| sync_dir(&self.files.dir))
            .map_err(|e| Error::io(format!("writing attachment {}", r.sha256), e))?;
        self.write(|tx| {
            let now = next_stamp(tx, "last_read_ms")?;
            tx.execute(
                "INSERT INTO attachments (sha256, size, mime, state, created_at_ms, last_read_ms, server_offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?2)
                 ON CONFLICT(sha256) DO UPDATE SET last_read_ms = ?5",
                params![r.sha256, r.size as i64, r.mime, AttachmentState::Cached, now],
            )?;
            Ok(())
        })?;
        self.evict_attachments(Some(&r.sha256))?;
        Ok(bytes)
    }

    /// Rebuilds `attachment_refs` from every visit's document (a store upgraded from a
    /// schema without it).
    pub(crate) fn rebuild_attachment_refs(&self) -> Result<()> {
        self.write(|tx| {
            let ids: Vec<String> = {
                let mut st =
                    tx.prepare("SELECT id FROM records WHERE kind = 'visit' AND corrupt IS NULL")?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for id in ids {
                if let Some(doc) = super::documents::load_doc(tx, &id)? {
                    if let Ok(rec) = doc.read() {
                        refresh_refs(tx, &rec)?;
                    }
                }
            }
            Ok(())
        })
    }
}
