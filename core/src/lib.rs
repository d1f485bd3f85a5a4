//! gridsync core: the offline-first engine under the field apps.
//!
//! - [`model`]: typed records (producers, checklist templates, visits) and reference data
//!   (grid tree, people, roles);
//! - [`validate`] and [`rules`]: validation and permission rules, shared with the server;
//! - [`attachment`]: references to evidence photos and signatures, content-addressed;
//! - [`doc`]: how a record lives in its Automerge document, merges and shows conflicts;
//! - [`store`]: the local SQLite store with its queries and change tracking;
//! - [`sync`]: the wire protocol and the sync engine over a transport trait;
//! - [`migrate`]: the schema migration runner shared with the server.
//!
//! With the `uniffi` feature (enabled by gridsync-bindings) the records and enums whose
//! shape crosses the FFI as it is derive `uniffi::Record` / `uniffi::Enum` here, so the
//! bindings need no hand-written mirror of them.

#[cfg(feature = "uniffi")]
uniffi::setup_scaffolding!();

pub mod attachment;
pub mod dates;
pub mod dedupe;
pub mod doc;
pub mod error;
pub mod history;
pub mod migrate;
pub mod model;
pub mod rules;
pub mod scale;
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

/// How far ahead of the server's clock a record's date may lie (a phone's clock a little
/// fast, time zones set by hand): dates beyond it are refused by the server and ignored by
/// the patrol schedule.
pub const FUTURE_TOLERANCE_MS: i64 = 24 * 3600 * 1000;

/// Offsets from the server's clock smaller than this are left alone (network jitter).
pub const CLOCK_CORRECTION_THRESHOLD_MS: i64 = 5 * 60 * 1000;

static CLOCK_CORRECTION_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The system clock, milliseconds since the Unix epoch.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Current time in milliseconds since the Unix epoch: the system clock corrected by the
/// offset from the server's clock that the device measured when it last synced (0 on the
/// server, and on a device whose clock is right). Every date the store writes comes from
/// here, so a phone whose clock is years off still dates its records right once it has
/// synced.
pub fn now_ms() -> i64 {
    system_now_ms() + CLOCK_CORRECTION_MS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The correction [`now_ms`] applies to the system clock.
pub fn clock_correction_ms() -> i64 {
    CLOCK_CORRECTION_MS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets the correction [`now_ms`] applies (the store does, from what it measured).
pub fn set_clock_correction_ms(ms: i64) {
    CLOCK_CORRECTION_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}
