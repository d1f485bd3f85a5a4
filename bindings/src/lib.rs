//! uniffi bindings of the gridsync core for the field apps: Kotlin (Android), Swift (iOS)
//! and Python (tests and tools), generated from this library in library mode.
//!
//! A thin layer: [`GridStore`] wraps the core's `Store` and sync engine; [`types`] mirrors
//! the core's records as uniffi Records and Enums; [`ApiError`] is the one error apps see,
//! mapped from the core's error in one place. Every exported call runs inside
//! [`error::guard`], so a panic comes back as `ApiError::Internal` and never crosses the
//! FFI boundary.
//!
//! Threads: [`GridStore`] is `Send + Sync`. Every call blocks; `sync`, `enroll` and
//! `rotate_credential` block on the network. Call them from a background thread
//! (`Dispatchers.IO` in Kotlin, `Task.detached` in Swift).

uniffi::setup_scaffolding!();

mod attachments;
pub mod error;
mod future;
pub mod store;
pub mod sync;
pub mod types;

pub use error::ApiError;
pub use store::GridStore;
pub use sync::{SyncHandle, SyncListener};
pub use types::*;

/// Version of the gridsync library, for the app's about screen and bug reports.
#[uniffi::export]
pub fn gridsync_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Panics inside the boundary guard on purpose, with `message`: the binding tests call it
/// to prove a panic arrives as `ApiError::Internal` and the process lives on. Apps never
/// call it.
#[uniffi::export]
pub fn testing_panic(message: String) -> Result<(), ApiError> {
    error::guard(|| -> Result<(), ApiError> { panic!("{message}") })
}
