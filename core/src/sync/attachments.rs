//! The attachment part of a sync (`docs/attachments.md`): after the records, pending
//! attachments are uploaded oldest first, in chunks, each from the offset the server
//! holds, within the sync's budget; downloads on demand continue a cut transfer from the
//! bytes the phone kept (`<sha256>.part`).
//!
//! Nothing about an upload lives only in memory: every attachment starts from the server's
//! answer to `HEAD` (or a `409`'s offset), so a cancelled or cut upload continues after a
//! restart without re-sending what the server already holds (beyond the chunk in flight).

use std::time::{Duration, Instant};

use super::engine::{
    auth_header, CancelFlag, SyncEngine, SyncOptions, SyncProgress, SyncReport,
    MAX_ATTACHMENT_CHUNK,
};
use crate::attachment::{is_sha256_hex, AttachmentRef};
use crate::validate::Invalid;
use crate::{Error, Result};

/// What the server holds of an attachment's upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadState {
    /// Bytes the server holds (continue from here).
    pub offset: u64,
    /// The attachment's size as the server knows it.
    pub length: Option<u64>,
    /// Whether the server holds the whole attachment, verified.
    pub complete: bool,
    /// The server found the whole did not match its reference and discarded everything
    /// (`422`): start again from byte 0.
    pub discarded: bool,
}

/// What a prefetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct PrefetchReport {
    /// Attachments downloaded whole.
    pub fetched: u32,
    /// Bytes received.
    pub bytes_down: u64,
    /// Attachments the server did not (yet) serve.
    pub unavailable: u32,
}

/// The bytes and time left of a sync's attachment budget.
struct Budget {
    bytes_left: Option<u64>,
    deadline: Option<Instant>,
}

impl Budget {
    fn new(o: &SyncOptions) -> Self {
        Budget {
            bytes_left: (o.attachment_budget_bytes > 0).then_some(o.attachment_budget_bytes),
            deadline: (o.attachment_budget_ms > 0)
                .then(|| Instant::now() + Duration::from_millis(o.attachment_budget_ms)),
        }
    }

    /// How many bytes the next chunk may carry (0: the budget is spent).
    fn next(&self, chunk: u64) -> u64 {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return 0;
        }
        self.bytes_left.map_or(chunk, |b| b.min(chunk))
    }

    fn spend(&mut self, n: u64) {
        if let Some(b) = &mut self.bytes_left {
            *b = b.saturating_sub(n);
        }
    }
}

/// How one attachment's upload ended.
enum Upload {
    Done,
    BudgetSpent,
    /// Discarded as corrupt twice in this sync: left pending.
    Corrupt,
}

/// An append that did not move the server's offset this many times in a row ends the
/// attachment's upload for this sync.
const MAX_STALLS: u32 = 3;

/// The size of the next append: what the link carried per second in the last one, times
/// the target time, between the first append's size and [`MAX_ATTACHMENT_CHUNK`].
pub(super) fn next_chunk(sent: u64, took: Duration, target: Duration, first: u64) -> u64 {
    let secs = took.as_secs_f64().max(0.001);
    let rate = sent as f64 / secs;
    let want = (rate * target.as_secs_f64()) as u64;
    want.clamp(first, (MAX_ATTACHMENT_CHUNK as u64).max(first))
}

impl SyncEngine<'_> {
    fn progress_of(report: &SyncReport) -> SyncProgress {
        SyncProgress {
            round_trips: report.round_trips,
            pushed: report.pushed,
            pulled: report.pulled,
            more: false,
            attachment_bytes_up: report.attachment_bytes_up,
            attachment_bytes_down: report.attachment_bytes_down,
            attachments_completed: report.attachments_completed,
        }
    }

    /// Uploads pending attachments that a record here refers to, oldest first, within the
    /// budget; then deletes uploaded attachments no record refers to and evicts what no
    /// longer fits in the cache.
    pub(super) fn upload_attachments(
        &self,
        options: &SyncOptions,
        report: &mut SyncReport,
        progress: &mut dyn FnMut(&SyncProgress),
        cancel: &CancelFlag,
    ) -> Result<()> {
        let pending: Vec<(AttachmentRef, u64)> = self
            .store
            .pending_attachments()?
            .into_iter()
            .filter(|a| a.referenced)
            .map(|a| (a.reference, a.server_offset))
            .collect();
        if !pending.is_empty() {
            let link = self.link()?;
            let auth = auth_header(&link.device_id, &link.secret);
            let mut budget = Budget::new(options);
            for (r, hint) in &pending {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                if budget.next(1) == 0 {
                    break;
                }
                match self.upload_one(&auth, r, *hint, &mut budget, report, progress, cancel) {
                    Ok(Upload::Done) => {}
                    Ok(Upload::BudgetSpent) => break,
                    Ok(Upload::Corrupt) => report.attachment_errors.push((
                        r.sha256.clone(),
                        "the server found the uploaded bytes corrupt twice".into(),
                    )),
                    Err(Error::Cancelled) => return Err(Error::Cancelled),
                    // No record of this device referring to it is accepted yet: it waits.
                    Err(Error::Server { status: 404, .. }) => {}
                    // Refused (too large, quota, declared otherwise) or unreadable here:
                    // the others may still go.
                    Err(
                        e @ (Error::Server {
                            status: 400 | 409 | 413 | 415 | 507,
                            ..
                        }
                        | Error::Io { .. }),
                    ) => report
                        .attachment_errors
                        .push((r.sha256.clone(), e.to_string())),
                    // The network or the server failed: the rest waits for the next sync.
                    Err(e) => {
                        report
                            .attachment_errors
                            .push((r.sha256.clone(), e.to_string()));
                        break;
                    }
                }
            }
        }
        self.store.collect_attachments()?;
        report.attachments_left = self.store.pending_attachments()?.len() as u32;
        Ok(())
    }

    /// Uploads one attachment from the offset the server holds. An upload the server never
    /// confirmed a byte of (`hint` 0) starts with its first append: a server that holds
    /// some of it answers `409` with its offset before taking the body, so a new photo costs
    /// no `HEAD` round trip; one started before asks first.
    fn upload_one(
        &self,
        auth: &str,
        r: &AttachmentRef,
        hint: u64,
        budget: &mut Budget,
        report: &mut SyncReport,
        progress: &mut dyn FnMut(&SyncProgress),
        cancel: &CancelFlag,
    ) -> Result<Upload> {
        let state = if hint == 0 {
            Some(UploadState::default())
        } else {
            self.transport.attachment_state(auth, &r.sha256)?
        };
        let mut offset = match state {
            Some(s) if s.complete => {
                // Uploaded by another phone, or by this one before a lost answer.
                self.store.mark_uploaded(&r.sha256)?;
                report.attachments_completed += 1;
                progress(&Self::progress_of(report));
                return Ok(Upload::Done);
            }
            Some(s) => s.offset.min(r.size),
            None => 0,
        };
        self.store.note_server_offset(&r.sha256, offset)?;
        let first = self.attachment_chunk.clamp(1, MAX_ATTACHMENT_CHUNK) as u64;
        let mut chunk = first;
        let (mut restarted, mut stalls) = (false, 0);
        loop {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let left = r.size - offset;
            if left == 0 {
                return Err(Error::Protocol(format!(
                    "the server holds all {} bytes of attachment {} but does not call it complete",
                    r.size, r.sha256
                )));
            }
            let n = budget.next(chunk).min(left);
            if n == 0 {
                return Ok(Upload::BudgetSpent);
            }
            let bytes = self.store.attachment_slice(&r.sha256, offset, n as usize)?;
            let started = Instant::now();
            let st = self.transport.attachment_append(auth, r, offset, &bytes)?;
            chunk = next_chunk(n, started.elapsed(), self.attachment_chunk_target, first);
            budget.spend(n);
            report.attachment_bytes_up += n;
            if st.complete {
                self.store.mark_uploaded(&r.sha256)?;
                report.attachments_completed += 1;
                progress(&Self::progress_of(report));
                return Ok(Upload::Done);
            }
            if st.discarded {
                self.store.note_server_offset(&r.sha256, 0)?;
                if restarted {
                    return Ok(Upload::Corrupt);
                }
                restarted = true;
                offset = 0;
                continue;
            }
            if st.offset > r.size {
                return Err(Error::Protocol(format!(
                    "the server holds {} bytes of attachment {} of {} bytes",
                    st.offset, r.sha256, r.size
                )));
            }
            // A `409` moves the offset elsewhere: continue from the server's.
            stalls = if st.offset == offset { stalls + 1 } else { 0 };
            if stalls >= MAX_STALLS {
                return Err(Error::Protocol(format!(
                    "the server does not take the bytes of attachment {} at {offset}",
                    r.sha256
                )));
            }
            offset = st.offset;
            self.store.note_server_offset(&r.sha256, offset)?;
            progress(&Self::progress_of(report));
        }
    }

    /// The bytes of an attachment: from the phone if it holds them, else downloaded in
    /// ranged pieces (a cut download continues from the bytes kept in its `.part` file),
    /// checked against the reference a record here holds, and kept in the cache.
    /// `NotFound` when no record here refers to it; `Server{404}` while the server does not
    /// hold it whole.
    pub fn fetch_attachment(&self, sha256: &str) -> Result<Vec<u8>> {
        self.fetch_attachment_counted(sha256, &CancelFlag::new())
            .map(|(b, _)| b)
    }

    /// [`SyncEngine::fetch_attachment`], stopping between pieces when `cancel` is set, and
    /// counting the bytes received.
    pub fn fetch_attachment_counted(
        &self,
        sha256: &str,
        cancel: &CancelFlag,
    ) -> Result<(Vec<u8>, u64)> {
        if !is_sha256_hex(sha256) {
            return Err(
                Invalid::new("sha256", "is not a SHA-256 in 64 lowercase hex digits").into(),
            );
        }
        if self.store.attachment_info(sha256)?.is_some() {
            match self.store.attachment(sha256) {
                Err(Error::NotFound { .. }) => {} // evicted meanwhile
                other => return other.map(|b| (b, 0)),
            }
        }
        let r = self
            .store
            .referenced_attachment(sha256)?
            .ok_or_else(|| Error::NotFound {
                kind: "attachment",
                id: sha256.to_string(),
            })?;
        let link = self.link()?;
        let auth = auth_header(&link.device_id, &link.secret);
        let mut have = self.store.partial_download_len(sha256);
        if have > r.size {
            self.store.discard_partial_download(sha256);
            have = 0;
        }
        let mut received = 0;
        while have < r.size {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let want = (self.download_chunk.max(1) as u64).min(r.size - have);
            let mut bytes = self.transport.attachment_read(&auth, sha256, have, want)?;
            if bytes.is_empty() {
                return Err(Error::Protocol(format!(
                    "the server sent no bytes of attachment {sha256} from {have}"
                )));
            }
            bytes.truncate(want as usize);
            self.store.append_partial_download(sha256, have, &bytes)?;
            have += bytes.len() as u64;
            received += bytes.len() as u64;
        }
        Ok((self.store.finish_download(&r)?, received))
    }

    /// Downloads attachments that records here refer to and the phone does not hold, those
    /// of the most recent visits first, until `budget_bytes` (0: the cache budget) would
    /// be passed. Attachments the server does not serve yet are skipped.
    pub fn prefetch_attachments(
        &self,
        budget_bytes: u64,
        cancel: &CancelFlag,
    ) -> Result<PrefetchReport> {
        let cache = self.store.attachment_cache_budget();
        let mut left = if budget_bytes == 0 {
            cache
        } else {
            budget_bytes.min(cache)
        };
        let mut out = PrefetchReport::default();
        for r in self.store.missing_attachments(1000)? {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let need = r.size - self.store.partial_download_len(&r.sha256).min(r.size);
            if need > left {
                continue;
            }
            match self.fetch_attachment_counted(&r.sha256, cancel) {
                Ok((_, n)) => {
                    out.fetched += 1;
                    out.bytes_down += n;
                    left = left.saturating_sub(r.size);
                }
                Err(Error::Server { status: 404, .. }) => out.unavailable += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
