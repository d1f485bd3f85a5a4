//! Sync progress and reports.

pub use cs::SyncProgress;
use gridsync_core::sync as cs;

/// A record the server refused during a sync (the core's report holds `(id, reason)` tuples).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RejectedPush {
    /// Record id.
    pub id: String,
    /// Reason given by the server.
    pub reason: String,
}

/// What a finished sync did (hand-written: the core's report holds tuples and two engine
/// measurements the app does not need).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    /// HTTP round trips.
    pub round_trips: u32,
    /// Records whose changes the server accepted.
    pub pushed: u32,
    /// Records the server refused, with reasons.
    pub rejected: Vec<RejectedPush>,
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
    /// The protocol version the sync spoke (4: zstd bodies; 3 when the server does not
    /// speak 4, as an older server answers).
    #[uniffi(default = 0)]
    pub protocol: u16,
    /// Pages fetched again with hashes because the documents rebuilt here did not match
    /// the server's digest (0 unless app and server disagree on document hashes).
    pub digest_retries: u32,
    /// Records holding changes only another device can deliver (after a server restore):
    /// not rejected, tried again at the next sync.
    pub waiting: u32,
    /// Attachment bytes sent.
    pub attachment_bytes_up: u64,
    /// Attachment bytes received.
    pub attachment_bytes_down: u64,
    /// Attachments wholly uploaded in this sync.
    pub attachments_completed: u32,
    /// Attachments still waiting to be uploaded (budget spent, their record not yet
    /// accepted, or refused).
    pub attachments_left: u32,
    /// Attachments refused or not uploaded because of an error (they stay pending and are
    /// tried again at the next sync); a network error during the uploads is one of them:
    /// the records part of the sync stands.
    pub attachment_errors: Vec<AttachmentFailure>,
    /// Whether this sync fetched the league's livestock scale thresholds (the reference
    /// data had changed); `scale_assessment` uses them from now on.
    #[uniffi(default = false)]
    pub scale_thresholds_fetched: bool,
    /// Why the league's scale thresholds could not be fetched: the device keeps those it
    /// had and asks again at the next sync (the records part of the sync stands).
    #[uniffi(default = None)]
    pub scale_thresholds_error: Option<String>,
}

/// An attachment that could not be uploaded in a sync (a `(sha256, reason)` tuple in the core).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentFailure {
    /// SHA-256 of the attachment.
    pub sha256: String,
    /// Why.
    pub reason: String,
}

impl From<cs::SyncReport> for SyncReport {
    fn from(r: cs::SyncReport) -> Self {
        SyncReport {
            round_trips: r.round_trips,
            pushed: r.pushed,
            rejected: r
                .rejected
                .into_iter()
                .map(|(id, reason)| RejectedPush { id, reason })
                .collect(),
            pulled: r.pulled,
            removed: r.removed,
            kept: r.kept,
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
            epoch_reset: r.epoch_reset,
            protocol: r.protocol,
            digest_retries: r.digest_retries,
            waiting: r.waiting,
            attachment_bytes_up: r.attachment_bytes_up,
            attachment_bytes_down: r.attachment_bytes_down,
            attachments_completed: r.attachments_completed,
            attachments_left: r.attachments_left,
            attachment_errors: r
                .attachment_errors
                .into_iter()
                .map(|(sha256, reason)| AttachmentFailure { sha256, reason })
                .collect(),
            scale_thresholds_fetched: r.scale_thresholds_fetched,
            scale_thresholds_error: r.scale_thresholds_error,
        }
    }
}
