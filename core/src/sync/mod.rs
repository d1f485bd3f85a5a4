//! Sync: the versioned wire protocol, the engine that drives it, and transports.
//!
//! The engine does no I/O of its own: it talks to a [`Transport`], which the HTTP
//! transport (feature `http`) implements with reqwest.

#[cfg(test)]
mod attachment_tests;
mod attachments;
pub mod bare;
pub mod compress;
mod engine;
#[cfg(feature = "http")]
mod http;
pub mod protocol;

pub use attachments::{PrefetchReport, UploadState};
pub use engine::{
    enroll, CancelFlag, SyncEngine, SyncOptions, SyncProgress, SyncReport, Transport,
    DEFAULT_ATTACHMENT_CHUNK, DEFAULT_ATTACHMENT_CHUNK_TARGET, DEFAULT_DOWNLOAD_CHUNK,
    DEFAULT_FIRST_PAGE_BYTES, DEFAULT_MIN_PAGE_BYTES, DEFAULT_PAGE_TARGET, MAX_ATTACHMENT_CHUNK,
};
#[cfg(feature = "http")]
pub use http::HttpTransport;
