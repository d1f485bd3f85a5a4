//! gridsync core: the offline-first engine under the field apps.
//!
//! - [`model`]: typed records (producers, checklist templates, visits) and reference data
//!   (grid tree, people, roles);
//! - [`validate`] and [`rules`]: validation and permission rules, shared with the server;
//! - [`doc`]: how a record lives in its Automerge document, merges and shows conflicts;
//! - [`store`]: the local SQLite store with its queries and change tracking;
//! - [`sync`]: the wire protocol and the sync engine over a transport trait.

pub mod doc;
pub mod error;
pub mod model;
pub mod rules;
pub mod store;
pub mod sync;
pub mod validate;

pub use error::{Error, Result};

/// A new record id: a UUID v7, sortable by creation time, made offline.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The Automerge actor a device signs its changes with, derived from the device id the
/// server assigned at enrolment. The server accepts a change only from the device its
/// actor belongs to, so an actor id read from a document cannot be used by another phone.
pub fn device_actor(device_id: &str) -> automerge::ActorId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("gridsync-actor:{device_id}").as_bytes());
    automerge::ActorId::from(&digest[..16])
}

/// Current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
