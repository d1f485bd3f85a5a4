//! Attachments the phone holds.

use gridsync_core::store as cs;

mirror_enum! {
    /// Where an attachment stands on this phone.
    AttachmentState = CoreAttachmentState {
        /// Recorded here, not yet (wholly) on the server; never evicted.
        Pending,
        /// Recorded here and uploaded; kept while a record here refers to it, within the
        /// cache budget.
        Uploaded,
        /// Downloaded from the server; within the cache budget.
        Cached,
    }
}

use cs::AttachmentState as CoreAttachmentState;

/// An attachment the phone holds.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentInfo {
    /// Its reference (`att:<sha256>:<size>:<mime>`), as records hold it.
    pub reference: String,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub mime: String,
    /// Pending, uploaded or cached.
    pub state: AttachmentState,
    /// When it was added or downloaded (ms since the epoch).
    pub created_at_ms: i64,
    /// When it was last read (ms since the epoch).
    pub last_read_ms: i64,
    /// Bytes the server last confirmed holding.
    pub server_offset: u64,
    /// Whether a record on this phone refers to it.
    pub referenced: bool,
}

impl From<cs::AttachmentInfo> for AttachmentInfo {
    fn from(a: cs::AttachmentInfo) -> Self {
        AttachmentInfo {
            reference: a.reference.to_string(),
            sha256: a.reference.sha256,
            size: a.reference.size,
            mime: a.reference.mime,
            state: a.state.into(),
            created_at_ms: a.created_at_ms,
            last_read_ms: a.last_read_ms,
            server_offset: a.server_offset,
            referenced: a.referenced,
        }
    }
}

/// What a prefetch downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct PrefetchReport {
    /// Attachments downloaded whole.
    pub fetched: u32,
    /// Bytes received.
    pub bytes_down: u64,
    /// Attachments the server does not serve yet (not uploaded whole).
    pub unavailable: u32,
}

impl From<gridsync_core::sync::PrefetchReport> for PrefetchReport {
    fn from(p: gridsync_core::sync::PrefetchReport) -> Self {
        PrefetchReport {
            fetched: p.fetched,
            bytes_down: p.bytes_down,
            unavailable: p.unavailable,
        }
    }
}
