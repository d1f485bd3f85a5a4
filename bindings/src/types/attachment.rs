//! Attachments the phone holds.

pub use cs::AttachmentState;
use gridsync_core::store as cs;
pub use gridsync_core::sync::PrefetchReport;

/// An attachment the phone holds (hand-written: the core holds a parsed `AttachmentRef`;
/// here its parts are fields).
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
            state: a.state,
            created_at_ms: a.created_at_ms,
            last_read_ms: a.last_read_ms,
            server_offset: a.server_offset,
            referenced: a.referenced,
        }
    }
}
