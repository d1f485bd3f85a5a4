//! uniffi bindings of the gridsync core for the field apps: Kotlin (Android), Swift (iOS)
//! and Python (tests and tools), generated from this library in library mode.
//!
//! A thin layer: [`GridStore`] wraps the core's `Store` and sync engine; the core's own
//! records and enums cross the FFI through its `uniffi` feature, and [`types`] holds
//! hand-written records only where a core shape does not cross as it is; [`ApiError`] is
//! the one error apps see, mapped from the core's error in one place. Every exported call
//! runs inside [`error::guard`], so a panic comes back as `ApiError::Internal` and never
//! crosses the FFI boundary.
//!
//! Threads: [`GridStore`] is `Send + Sync`. The plain calls block (`sync`, `enroll`,
//! `rotate_credential` and attachment transfers on the network); their `*_async` forms run
//! on a thread of the library's own and are awaited from coroutines, tasks and asyncio.
//! Observers ([`observe`]) are called on the store's dispatcher thread after each commit.

uniffi::setup_scaffolding!();

mod attachments;
pub mod duplicates;
pub mod error;
mod future;
pub mod observe;
pub mod store;
pub mod sync;
pub mod types;

pub use duplicates::{DuplicateMatch, DuplicateReason, ScaleAssessment, SpeciesOverThreshold};
pub use error::ApiError;
pub use observe::{RecordListener, Subscription, SyncStateListener};
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
