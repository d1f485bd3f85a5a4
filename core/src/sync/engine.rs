//! The sync engine: push local changes, pull pages of the grid feeds, apply each page with
//! its cursors in one transaction. No I/O of its own: it talks through a [`Transport`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::attachments::UploadState;
use super::protocol::{
    self, EnrollRequest, EnrollResponse, ErrorCode, PushRecord, RotateResponse,
    ScaleThresholdsResponse, SyncRequest, SyncResponse,
};
use crate::attachment::AttachmentRef;
use crate::model::Person;
use crate::scale::ScaleOverrides;
use crate::store::{LeagueScale, ServerLink, Store, SyncEvent, SyncPhase};
use crate::{Error, Result};

/// Moves bytes to and from the server. Implementations own the network; errors from the
/// server come back as [`Error::Server`] with its status, code and message.
pub trait Transport: Send + Sync {
    /// One sync round trip: POST the encoded request, return the encoded response, at
    /// [`protocol::PROTOCOL_VERSION`].
    fn sync(&self, auth: &str, body: Vec<u8>) -> Result<Vec<u8>>;
    /// One sync round trip at protocol `version` (the engine falls back to version 3 when
    /// a server does not speak this build's). A transport that cannot announce another
    /// version refuses it; the default sends [`protocol::PROTOCOL_VERSION`] requests only.
    fn sync_at(&self, auth: &str, version: u16, body: Vec<u8>) -> Result<Vec<u8>> {
        if version == protocol::PROTOCOL_VERSION {
            self.sync(auth, body)
        } else {
            Err(Error::Protocol(format!(
                "this transport speaks only protocol {}, not {version}",
                protocol::PROTOCOL_VERSION
            )))
        }
    }
    /// Exchanges an enrolment code for a device credential.
    fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse>;
    /// Asks for a new device secret.
    fn rotate(&self, auth: &str) -> Result<RotateResponse>;

    /// `GET /v1/scale-thresholds`: the livestock scale thresholds of the device's league.
    /// `None` when the server has no such call (older than it) or the transport cannot
    /// ask (the default): the device then assesses with the national table.
    fn scale_thresholds(&self, auth: &str) -> Result<Option<ScaleThresholdsResponse>> {
        let _ = auth;
        Ok(None)
    }

    /// `HEAD /v1/attachments/{sha}`: what the server holds of an attachment, `None` when
    /// it holds nothing (or this device may not know of it).
    fn attachment_state(&self, auth: &str, sha256: &str) -> Result<Option<UploadState>> {
        let _ = (auth, sha256);
        Err(no_attachments())
    }

    /// `PATCH /v1/attachments/{sha}`: appends `bytes` at `offset`. A `409` comes back as
    /// the server's state (its offset, from which to continue), a `422` (the whole did
    /// not match its reference; everything held was discarded) as a state with
    /// `discarded` set; a `404` (no accepted record of this device refers to it) as
    /// [`Error::Server`].
    fn attachment_append(
        &self,
        auth: &str,
        r: &AttachmentRef,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadState> {
        let _ = (auth, r, offset, bytes);
        Err(no_attachments())
    }

    /// `GET /v1/attachments/{sha}` with `Range`: at most `max` bytes from `offset`.
    fn attachment_read(&self, auth: &str, sha256: &str, offset: u64, max: u64) -> Result<Vec<u8>> {
        let _ = (auth, sha256, offset, max);
        Err(no_attachments())
    }
}

fn no_attachments() -> Error {
    Error::Transport("attachments not supported by this transport".into())
}

/// A flag another thread sets to stop a running sync between round trips.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A new, unset flag.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the sync to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Progress after each round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct SyncProgress {
    /// Round trips so far.
    pub round_trips: u32,
    /// Records accepted by the server so far.
    pub pushed: u32,
    /// Records pulled and applied so far.
    pub pulled: u32,
    /// Whether more pages wait.
    pub more: bool,
    /// Attachment bytes sent so far (bodies of appends).
    #[serde(default)]
    pub attachment_bytes_up: u64,
    /// Attachment bytes received so far.
    #[serde(default)]
    pub attachment_bytes_down: u64,
    /// Attachments wholly uploaded so far.
    #[serde(default)]
    pub attachments_completed: u32,
}

/// What a finished sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// HTTP round trips.
    pub round_trips: u32,
    /// Records whose changes the server accepted.
    pub pushed: u32,
    /// Records the server refused, with reasons.
    pub rejected: Vec<(String, String)>,
    /// Records pulled and applied.
    pub pulled: u32,
    /// Records removed because their grid left the device.
    pub removed: u32,
    /// Of those, records with unsynced edits kept for export.
    pub kept: u32,
    /// Request bytes sent (compressed).
    pub bytes_up: u64,
    /// Response bytes received (compressed).
    pub bytes_down: u64,
    /// Whether the server's history was found reset (restored from a backup).
    pub epoch_reset: bool,
    /// Pages asked for again with hashes because their bare documents did not match the
    /// server's digest (0 unless this build and the server disagree on document hashes).
    pub digest_retries: u32,
    /// Records holding changes only another device can deliver (after a server restore):
    /// not rejected, tried again at the next sync.
    pub waiting: u32,
    /// The server's clock minus this device's at the last round trip, in milliseconds:
    /// `server_time_ms` minus the local midpoint of the round trip (`None` if the server
    /// sent no time).
    pub clock_offset_ms: Option<i64>,
    /// The byte budget the last page was asked with ([`SyncEngine::page_target`]).
    pub last_page_bytes: u32,
    /// The protocol version the sync spoke: [`SyncEngine::protocol_version`], or 3 when
    /// the server answered that it does not speak it.
    #[serde(default)]
    pub protocol: u16,
    /// Attachment bytes sent (bodies of appends, including any the server refused).
    #[serde(default)]
    pub attachment_bytes_up: u64,
    /// Attachment bytes received.
    #[serde(default)]
    pub attachment_bytes_down: u64,
    /// Attachments wholly uploaded (the server confirmed them complete).
    #[serde(default)]
    pub attachments_completed: u32,
    /// Attachments still pending after this sync (budget spent, waiting for their record
    /// to be accepted, refused).
    #[serde(default)]
    pub attachments_left: u32,
    /// Attachments the server refused or that failed to upload, with the reason (sha256
    /// and reason); they stay pending. A network error ends the uploads of a sync and is
    /// noted here too: the records part of the sync stands.
    #[serde(default)]
    pub attachment_errors: Vec<(String, String)>,
    /// Whether this sync fetched the league's scale thresholds (the reference data had
    /// changed since they were last fetched).
    #[serde(default)]
    pub scale_thresholds_fetched: bool,
    /// Why the league's scale thresholds could not be fetched: the device keeps those it
    /// had and asks again at the next sync. The records part of the sync stands.
    #[serde(default)]
    pub scale_thresholds_error: Option<String>,
}

/// What the app asks of one sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOptions {
    /// Attachment bytes to upload at most in this sync (0: no limit).
    pub attachment_budget_bytes: u64,
    /// Time to spend uploading attachments at most, in milliseconds (0: no limit). A
    /// chunk under way is finished.
    pub attachment_budget_ms: u64,
}

/// Drives sync for one store over one transport.
pub struct SyncEngine<'a> {
    pub(super) store: &'a Store,
    pub(super) transport: &'a dyn Transport,
    /// Records per pull page asked for.
    pub page_limit: u32,
    /// Records per push batch.
    pub push_batch: usize,
    /// Pull pages are sized so that one round trip takes about this long on the link
    /// measured at the previous round trip: a cut connection loses at most one page, so
    /// about half of this much transfer is lost per cut on average.
    pub page_target: Duration,
    /// Byte budget of the first page of a sync (document bytes as the server counts them).
    pub first_page_bytes: u32,
    /// Smallest page byte budget the engine asks for.
    pub min_page_bytes: u32,
    /// Largest page byte budget the engine asks for (the server also caps it at
    /// [`protocol::PAGE_BYTE_BUDGET`]).
    pub max_page_bytes: u32,
    /// Bytes of the first attachment append of a sync. Later appends are sized to take
    /// about [`SyncEngine::attachment_chunk_target`] on the link as measured, between this
    /// and [`MAX_ATTACHMENT_CHUNK`]: the server keeps every byte of an append that reaches
    /// it, so a long append loses only the bytes in flight when the link drops, and each
    /// append costs a round trip of idle link.
    pub attachment_chunk: usize,
    /// How long one attachment append should take on the link as measured.
    pub attachment_chunk_target: Duration,
    /// Bytes per ranged attachment download.
    pub download_chunk: usize,
    /// The protocol version to speak ([`protocol::PROTOCOL_VERSION`]; between
    /// [`protocol::OLDEST_PROTOCOL_VERSION`] and it). A server that answers `400
    /// unsupported_protocol` to version 4 is spoken to in version 3 for the rest of the
    /// sync (gzip bodies): servers need not be upgraded before phones.
    pub protocol_version: u16,
}

/// The version a phone falls back to when a server does not speak a newer one: the
/// newest version before this build's dictionary compression.
const FALLBACK_PROTOCOL_VERSION: u16 = 3;

/// Largest attachment append.
pub const MAX_ATTACHMENT_CHUNK: usize = 8 * 1024 * 1024;
/// Default of [`SyncEngine::attachment_chunk_target`].
pub const DEFAULT_ATTACHMENT_CHUNK_TARGET: Duration = Duration::from_secs(20);
/// Default of [`SyncEngine::attachment_chunk`].
pub const DEFAULT_ATTACHMENT_CHUNK: usize = 256 * 1024;
/// Default of [`SyncEngine::download_chunk`].
pub const DEFAULT_DOWNLOAD_CHUNK: usize = 1024 * 1024;

/// Default of [`SyncEngine::page_target`]. A second and a half rather than more: with a
/// link cut every 10 s, a page whose transfer takes `d` seconds loses on average `d / 20`
/// of what is received (a 1.5 s round trip over 64 kbit/s and 300 ms each way transfers
/// for about 0.9 s: under 5 %; at 2 s the measured loss was 5.2 % with a spread that came
/// near 10 % in short runs), while the round trip's fixed cost stays under half the time.
pub const DEFAULT_PAGE_TARGET: Duration = Duration::from_millis(1500);
/// Default of [`SyncEngine::first_page_bytes`].
pub const DEFAULT_FIRST_PAGE_BYTES: u32 = 64 * 1024;
/// Default of [`SyncEngine::min_page_bytes`].
pub const DEFAULT_MIN_PAGE_BYTES: u32 = 4 * 1024;

/// What the server counts for a record that came bare but did not send: the chunk
/// checksum and (usually one) head hash.
const BARE_UNSENT_BYTES: usize = 4 + 32;

/// Clamps a page byte budget to the engine's bounds (and the protocol's).
fn clamp_page_bytes(engine: &SyncEngine<'_>, bytes: f64) -> u32 {
    let lo = engine.min_page_bytes.max(protocol::MIN_PAGE_BYTES);
    let hi = engine
        .max_page_bytes
        .min(protocol::PAGE_BYTE_BUDGET as u32)
        .max(lo);
    (bytes as u32).clamp(lo, hi)
}

/// The next page's byte budget: the bytes the last page carried scaled to the target time
/// by the time its round trip took, changed by at most 4 times per round trip, within the
/// bounds.
fn next_page_bytes(engine: &SyncEngine<'_>, asked: u32, carried: usize, took: Duration) -> u32 {
    let secs = took.as_secs_f64().max(0.001);
    let ideal = carried as f64 * engine.page_target.as_secs_f64() / secs;
    clamp_page_bytes(
        engine,
        ideal.clamp(f64::from(asked) / 4.0, f64::from(asked) * 4.0),
    )
}

/// Document bytes of a page as the server counts them against its budget.
fn page_document_bytes(resp: &SyncResponse) -> usize {
    resp.records
        .iter()
        .map(|r| {
            let bare = r.full && r.heads.is_empty();
            r.bytes.len()
                + r.heads.len() * 32
                + r.id.len()
                + if bare { BARE_UNSENT_BYTES } else { 0 }
        })
        .sum()
}

impl std::fmt::Debug for SyncEngine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("page_limit", &self.page_limit)
            .finish()
    }
}

pub(super) fn auth_header(device_id: &str, secret: &str) -> String {
    format!("Bearer {device_id}.{secret}")
}

/// Enrols the store with a server using a one-time code; returns the person enrolled.
pub fn enroll(
    store: &Store,
    transport: &dyn Transport,
    url: &str,
    code: &str,
    device_name: &str,
) -> Result<Person> {
    if store.server_link()?.is_some() {
        return Err(Error::Workflow("this device is already enrolled".into()));
    }
    let resp = transport.enroll(&EnrollRequest {
        code: code.trim().to_string(),
        device_name: device_name.to_string(),
    })?;
    store.set_profile(&resp.person)?;
    store.set_server_link(&ServerLink {
        url: url.to_string(),
        device_id: resp.device_id,
        secret: resp.secret,
        pending_secret: None,
        epoch: resp.epoch,
        reference_version: String::new(),
    })?;
    // Another person's league may have been held before (a re-enrolled device).
    store.clear_league_scale()?;
    Ok(resp.person)
}

impl<'a> SyncEngine<'a> {
    /// An engine with default batch sizes.
    pub fn new(store: &'a Store, transport: &'a dyn Transport) -> Self {
        SyncEngine {
            store,
            transport,
            page_limit: protocol::MAX_PAGE_RECORDS,
            push_batch: protocol::MAX_PUSH_RECORDS,
            page_target: DEFAULT_PAGE_TARGET,
            first_page_bytes: DEFAULT_FIRST_PAGE_BYTES,
            min_page_bytes: DEFAULT_MIN_PAGE_BYTES,
            max_page_bytes: protocol::PAGE_BYTE_BUDGET as u32,
            attachment_chunk: DEFAULT_ATTACHMENT_CHUNK,
            attachment_chunk_target: DEFAULT_ATTACHMENT_CHUNK_TARGET,
            download_chunk: DEFAULT_DOWNLOAD_CHUNK,
            protocol_version: protocol::PROTOCOL_VERSION,
        }
    }

    /// Rotates the device secret. If the answer is lost the old secret keeps working.
    pub fn rotate_credential(&self) -> Result<()> {
        let mut link = self.link()?;
        let resp = self
            .transport
            .rotate(&auth_header(&link.device_id, &link.secret))?;
        link.pending_secret = Some(resp.secret);
        self.store.set_server_link(&link)
    }

    pub(super) fn link(&self) -> Result<ServerLink> {
        self.store
            .server_link()?
            .ok_or_else(|| Error::NotEnrolled("enrol this device with a server first".into()))
    }

    /// Runs a whole sync: rounds of push and pull until nothing is left, then uploads
    /// pending attachments with no budget ([`SyncEngine::sync_with`]).
    pub fn sync(
        &self,
        progress: &mut dyn FnMut(&SyncProgress),
        cancel: &CancelFlag,
    ) -> Result<SyncReport> {
        self.sync_with(&SyncOptions::default(), progress, cancel)
    }

    /// Runs a whole sync: records first (rounds of push and pull until nothing is left),
    /// then, unless cancelled, pending attachments, oldest first, within the budget of
    /// `options` (`docs/attachments.md`).
    pub fn sync_with(
        &self,
        options: &SyncOptions,
        progress: &mut dyn FnMut(&SyncProgress),
        cancel: &CancelFlag,
    ) -> Result<SyncReport> {
        // The store's sync listeners hear the start, every round trip and the end.
        let event = |phase, progress: &SyncProgress, error: Option<String>| {
            self.store.sync_event(SyncEvent {
                phase,
                progress: progress.clone(),
                error,
            });
        };
        event(SyncPhase::Started, &SyncProgress::default(), None);
        let mut last = SyncProgress::default();
        let mut observed = |p: &SyncProgress| {
            event(SyncPhase::Progress, p, None);
            last = p.clone();
            progress(p);
        };
        let result = (|| {
            let mut report = self.sync_records(&mut observed, cancel)?;
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            self.refresh_scale_thresholds(&mut report);
            self.upload_attachments(options, &mut report, &mut observed, cancel)?;
            Ok(report)
        })();
        match &result {
            Ok(_) => event(SyncPhase::Succeeded, &last, None),
            Err(Error::Cancelled) => event(SyncPhase::Cancelled, &last, None),
            Err(e) => event(SyncPhase::Failed, &last, Some(e.to_string())),
        }
        result
    }

    /// The records part of a sync.
    fn sync_records(
        &self,
        progress: &mut dyn FnMut(&SyncProgress),
        cancel: &CancelFlag,
    ) -> Result<SyncReport> {
        let mut link = self.link()?;
        let mut report = SyncReport::default();
        let mut pushed_ids: HashSet<String> = HashSet::new();
        // Records set aside as corrupt are asked for whole: the server's copy heals them.
        let mut want_full: Vec<String> = self.store.corrupt_to_heal()?;
        let mut full_asked: HashMap<String, u32> = HashMap::new();
        // Records the server answered `MissingDeps` for in this sync.
        let mut missing: HashMap<String, u32> = HashMap::new();
        let mut resets = 0;
        // Whole documents come bare (without their hashes) unless a page's derived heads
        // once failed to match the server's digest in this sync.
        let mut bare_docs = true;
        // Pages start small and follow the link: a cut loses one page at most.
        let mut page_bytes = clamp_page_bytes(self, f64::from(self.first_page_bytes));
        if !(protocol::OLDEST_PROTOCOL_VERSION..=protocol::PROTOCOL_VERSION)
            .contains(&self.protocol_version)
        {
            return Err(Error::Protocol(format!(
                "protocol version {} is not one this build speaks ({} to {})",
                self.protocol_version,
                protocol::OLDEST_PROTOCOL_VERSION,
                protocol::PROTOCOL_VERSION
            )));
        }
        let mut version = self.protocol_version;
        report.protocol = version;
        loop {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let pending = self.store.pending_pushes(self.push_batch, &pushed_ids)?;
            let req = SyncRequest {
                epoch: link.epoch.clone(),
                reference_version: link.reference_version.clone(),
                push: pending
                    .iter()
                    .map(|p| PushRecord {
                        id: p.id.clone(),
                        kind: p.kind.tag(),
                        changes: p.changes.clone(),
                        heads: p.heads.iter().map(|h| h.0).collect(),
                    })
                    .collect(),
                cursors: self.store.cursors()?,
                want_full: std::mem::take(&mut want_full),
                page_limit: self.page_limit,
                bare_docs,
                page_bytes,
            };
            let body = protocol::encode_request(&req, version)?;
            report.bytes_up += body.len() as u64;
            report.last_page_bytes = page_bytes;
            let (sent_ms, started) = (crate::now_ms(), Instant::now());
            let answer = match self.round_trip(&mut link, version, body) {
                // A server older than this build: the same request in its version.
                Err(Error::Server {
                    status: 400,
                    code: ErrorCode::UnsupportedProtocol,
                    message,
                }) if version > FALLBACK_PROTOCOL_VERSION => {
                    tracing::info!(
                        "the server does not speak protocol {version} ({message}); speaking {FALLBACK_PROTOCOL_VERSION}"
                    );
                    version = FALLBACK_PROTOCOL_VERSION;
                    report.protocol = version;
                    report.round_trips += 1;
                    want_full = req.want_full;
                    continue;
                }
                other => other?,
            };
            let took = started.elapsed();
            report.round_trips += 1;
            report.bytes_down += answer.len() as u64;
            let resp = protocol::decode_response(&answer, version)?;
            if resp.server_time_ms != 0 {
                let midpoint = sent_ms + took.as_millis() as i64 / 2;
                report.clock_offset_ms = Some(resp.server_time_ms - midpoint);
                // Dates written from now on follow the server's clock (`crate::now_ms`).
                self.store
                    .note_clock_offset(resp.server_time_ms - midpoint)?;
            }
            if resp.more && !resp.records.is_empty() {
                page_bytes = next_page_bytes(self, page_bytes, page_document_bytes(&resp), took);
            }
            let epoch_changed = !link.epoch.is_empty() && resp.epoch != link.epoch;
            if resp.reset || epoch_changed {
                resets += 1;
                if resets > 2 {
                    return Err(Error::Protocol(
                        "the server reset its history repeatedly".into(),
                    ));
                }
                tracing::warn!(
                    "server history reset (restored from a backup?): re-sending everything"
                );
                self.store.reset_for_new_epoch()?;
                link.epoch = resp.epoch.clone();
                link.reference_version.clear();
                self.store.set_server_link(&link)?;
                pushed_ids.clear();
                report.epoch_reset = true;
                continue;
            }
            let (ok, _) = self.store.apply_push_results(&pending, &resp.results)?;
            report.pushed += ok as u32;
            for r in &resp.results {
                if let protocol::PushOutcome::Rejected { code, reason } = &r.outcome {
                    if *code != protocol::RejectCode::MissingDeps {
                        report.rejected.push((r.id.clone(), reason.clone()));
                        pushed_ids.insert(r.id.clone());
                    } else if *missing.entry(r.id.clone()).or_insert(0) >= 1 {
                        // Sent whole once and still missing something: changes only
                        // another device can deliver (after a server restore). Not a
                        // rejection; it is tried again at the next sync.
                        pushed_ids.insert(r.id.clone());
                        report.waiting += 1;
                    } else {
                        *missing.entry(r.id.clone()).or_insert(0) += 1;
                    }
                } else {
                    pushed_ids.insert(r.id.clone());
                }
            }
            let outcome = self.store.apply_page(&resp)?;
            if outcome.digest_mismatch {
                if !bare_docs {
                    return Err(Error::Protocol(
                        "the server sent bare documents it was not asked for".into(),
                    ));
                }
                // Ask for the same page again, with every document's hashes (and the
                // records asked for whole, which the refused page may have held).
                bare_docs = false;
                report.digest_retries += 1;
                want_full = req.want_full;
                continue;
            }
            // Records asked for whole that the server left for the next page (its byte
            // budget was spent: it says `more`) are asked for again; dropping them would
            // lose them for good, since the cursors have moved past their feed entries.
            if resp.more {
                let served: HashSet<&str> = resp.records.iter().map(|r| r.id.as_str()).collect();
                want_full.extend(
                    req.want_full
                        .iter()
                        .filter(|id| !served.contains(id.as_str()))
                        .cloned(),
                );
            }
            report.pulled += outcome.applied as u32;
            report.removed += outcome.removed as u32;
            report.kept += outcome.kept as u32;
            for id in outcome.need_full {
                let n = full_asked.entry(id.clone()).or_insert(0);
                *n += 1;
                if *n <= 2 {
                    want_full.push(id);
                }
            }
            let mut link_changed = false;
            if let Some(r) = &resp.reference {
                link.reference_version = r.version.clone();
                link_changed = true;
            }
            if link.epoch.is_empty() {
                link.epoch = resp.epoch.clone();
                link_changed = true;
            }
            if link_changed {
                self.store.set_server_link(&link)?;
            }
            progress(&SyncProgress {
                round_trips: report.round_trips,
                pushed: report.pushed,
                pulled: report.pulled,
                more: resp.more,
                ..SyncProgress::default()
            });
            let more_to_push = !self.store.pending_pushes(1, &pushed_ids)?.is_empty();
            if !resp.more && !more_to_push && want_full.is_empty() {
                return Ok(report);
            }
            if report.round_trips > 100_000 {
                return Err(Error::Protocol(
                    "sync did not finish after 100,000 round trips".into(),
                ));
            }
        }
    }

    /// Fetches the league's scale thresholds when the reference data the device holds is
    /// not the one they were fetched for ([`Store::league_scale`]). A failure is noted in
    /// the report and left for the next sync: the device keeps the thresholds it had.
    fn refresh_scale_thresholds(&self, report: &mut SyncReport) {
        let result = (|| -> Result<bool> {
            let link = self.link()?;
            if link.reference_version.is_empty() {
                return Ok(false);
            }
            let held = self.store.league_scale()?;
            if held
                .as_ref()
                .is_some_and(|h| h.reference_version == link.reference_version)
            {
                return Ok(false);
            }
            let auth = auth_header(&link.device_id, &link.secret);
            let scale = match self.transport.scale_thresholds(&auth)? {
                Some(answer) => {
                    let overrides = ScaleOverrides::parse_json(&answer.overrides.to_string())
                        .map_err(|e| {
                            Error::Protocol(format!("scale thresholds answer: overrides: {e}"))
                        })?;
                    LeagueScale {
                        league: answer.league,
                        overrides,
                        reference_version: link.reference_version.clone(),
                    }
                }
                // A server without the call: its phones assess with the national table.
                None => LeagueScale {
                    league: None,
                    overrides: ScaleOverrides::default(),
                    reference_version: link.reference_version.clone(),
                },
            };
            self.store.set_league_scale(&scale)?;
            Ok(true)
        })();
        match result {
            Ok(fetched) => report.scale_thresholds_fetched = fetched,
            Err(e) => {
                tracing::warn!("league scale thresholds not fetched: {e}");
                report.scale_thresholds_error = Some(e.to_string());
            }
        }
    }

    /// One request with the current credential, handling rotation and revocation.
    fn round_trip(&self, link: &mut ServerLink, version: u16, body: Vec<u8>) -> Result<Vec<u8>> {
        if let Some(pending) = link.pending_secret.clone() {
            match self.transport.sync_at(
                &auth_header(&link.device_id, &pending),
                version,
                body.clone(),
            ) {
                Ok(answer) => {
                    // The server has now switched to the new secret.
                    link.secret = pending;
                    link.pending_secret = None;
                    self.store.set_server_link(link)?;
                    return Ok(answer);
                }
                Err(Error::Server { status: 401, .. }) => {
                    link.pending_secret = None;
                    self.store.set_server_link(link)?;
                }
                Err(e) => return Err(e),
            }
        }
        match self
            .transport
            .sync_at(&auth_header(&link.device_id, &link.secret), version, body)
        {
            Err(Error::Server {
                status: 401,
                code: ErrorCode::DeviceRevoked,
                message,
            }) => {
                let kept = self
                    .store
                    .wipe_after_revocation(&format!("device revoked: {message}"))?;
                tracing::warn!(
                    kept,
                    "device revoked; server data removed, unsynced edits kept"
                );
                Err(Error::Server {
                    status: 401,
                    code: ErrorCode::DeviceRevoked,
                    message,
                })
            }
            other => other,
        }
    }
}
