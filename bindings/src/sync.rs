//! Enrolment and sync: a foreign listener for progress and a handle to cancel.
//!
//! Every network call comes twice: blocking (`sync`, `enroll`, `rotate_credential`; run
//! them on a background thread) and async (`sync_async`, `enroll_async`,
//! `rotate_credential_async`: Kotlin `suspend fun syncAsync`, Swift `func syncAsync()
//! async throws`, Python `async def sync_async`). An async call runs the same blocking
//! code on a thread of its own and is awaited through [`crate::future::BlockingCall`], so
//! it needs no Rust async runtime and works under any foreign executor. Cancelling the
//! awaiting coroutine (Kotlin) or asyncio task (Python) drops the Rust future, which
//! cancels the sync between round trips; see `GridStore::sync_async` for Swift.

use std::sync::Arc;

use gridsync_core::sync::{
    enroll, CancelFlag, HttpTransport, SyncEngine, SyncOptions as CoreSyncOptions,
};

use crate::error::{guard, ApiError};
use crate::future::spawn_blocking;
use crate::store::GridStore;
use crate::types::{Person, SyncProgress, SyncReport};

/// Receives sync progress; implemented by the app (Kotlin, Swift or Python).
///
/// Called on the thread running the sync after each round trip: the caller's thread for
/// `GridStore.sync`, a thread of the library's own for `GridStore.sync_async` (never the
/// coroutine's or task's thread). Hand the value to the UI thread yourself. An exception
/// thrown here ends the sync with `ApiError.Internal`.
#[uniffi::export(with_foreign)]
pub trait SyncListener: Send + Sync {
    /// Progress after one round trip.
    fn on_progress(&self, progress: SyncProgress);
}

/// Bounds the app sets on a sync; every field left `None` keeps the engine's default.
///
/// Pull pages are sized by the engine so that one round trip takes about
/// `page_target_ms` (2,000 ms) on the link it measured, starting a sync at 64 KiB and
/// kept within `min_page_bytes` (4 KiB) and `max_page_bytes` (4 MiB): a connection cut
/// loses at most the page in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct SyncOptions {
    /// Smallest page byte budget asked for (the server honours at least 1 KiB).
    #[uniffi(default = None)]
    pub min_page_bytes: Option<u32>,
    /// Largest page byte budget asked for (the server caps it at 4 MiB).
    #[uniffi(default = None)]
    pub max_page_bytes: Option<u32>,
    /// Byte budget of the first page of a sync.
    #[uniffi(default = None)]
    pub first_page_bytes: Option<u32>,
    /// Target time of one round trip, in milliseconds.
    #[uniffi(default = None)]
    pub page_target_ms: Option<u32>,
    /// Attachment bytes to upload at most in this sync (after the records); `None` or 0:
    /// no limit.
    #[uniffi(default = None)]
    pub attachment_budget_bytes: Option<u64>,
    /// Time to spend uploading attachments at most, in milliseconds; `None` or 0: no
    /// limit.
    #[uniffi(default = None)]
    pub attachment_budget_ms: Option<u64>,
    /// Bytes of the first attachment append of a sync (default 256 KiB, at most 8 MiB);
    /// later appends are sized to about 20 s of the link as measured.
    #[uniffi(default = None)]
    pub attachment_chunk_bytes: Option<u32>,
}

impl SyncOptions {
    fn apply(&self, engine: &mut SyncEngine<'_>) {
        if let Some(v) = self.min_page_bytes {
            engine.min_page_bytes = v;
        }
        if let Some(v) = self.max_page_bytes {
            engine.max_page_bytes = v;
        }
        if let Some(v) = self.first_page_bytes {
            engine.first_page_bytes = v;
        }
        if let Some(v) = self.page_target_ms {
            engine.page_target = std::time::Duration::from_millis(u64::from(v.max(1)));
        }
        if let Some(v) = self.attachment_chunk_bytes {
            engine.attachment_chunk =
                (v as usize).clamp(1, gridsync_core::sync::MAX_ATTACHMENT_CHUNK);
        }
    }

    fn core(&self) -> CoreSyncOptions {
        CoreSyncOptions {
            attachment_budget_bytes: self.attachment_budget_bytes.unwrap_or(0),
            attachment_budget_ms: self.attachment_budget_ms.unwrap_or(0),
        }
    }
}

/// A cancel token for a running sync (or attachment download): call `cancel()` from any
/// thread and the sync stops before its next round trip with `ApiError.Cancelled` (what
/// was applied stays applied). A handle serves one sync: once cancelled it stays cancelled.
///
/// Letting go of a handle does not cancel: in Kotlin and Swift a handle created inline in
/// the call (`store.sync(handle = SyncHandle())`) can be collected while the sync runs, and
/// a sync must not stop at the garbage collector's whim. The sync that is cancelled by
/// being dropped is the awaited one: cancelling the coroutine or task that awaits
/// `sync_async` drops its future, and that cancels the sync.
#[derive(Debug, Default, uniffi::Object)]
pub struct SyncHandle {
    pub(crate) flag: CancelFlag,
}

impl SyncHandle {
    /// The flag a sync given `handle` watches: the handle's own, or a fresh one.
    pub(crate) fn flag_of(handle: Option<Arc<SyncHandle>>) -> CancelFlag {
        handle.map(|h| h.flag.clone()).unwrap_or_default()
    }
}

#[uniffi::export]
impl SyncHandle {
    /// A new handle, not cancelled.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(SyncHandle::default())
    }

    /// Asks the sync using this handle to stop.
    pub fn cancel(&self) {
        self.flag.cancel();
    }

    /// Whether `cancel()` was called (or the sync using it was cancelled by its caller).
    pub fn is_cancelled(&self) -> bool {
        self.flag.is_cancelled()
    }
}

impl GridStore {
    /// The one sync both `sync` and `sync_async` run (blocking, on the calling thread).
    fn run_sync(
        &self,
        listener: Option<Arc<dyn SyncListener>>,
        cancel: &CancelFlag,
        options: Option<SyncOptions>,
    ) -> Result<SyncReport, ApiError> {
        let _running = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        let link = self.store.server_link()?.ok_or(ApiError::NotEnrolled)?;
        let transport = HttpTransport::new(&link.url)?;
        let mut engine = SyncEngine::new(&self.store, &transport);
        if let Some(o) = &options {
            o.apply(&mut engine);
        }
        let mut progress = |p: &gridsync_core::sync::SyncProgress| {
            if let Some(l) = &listener {
                l.on_progress(p.clone());
            }
        };
        let core = options.as_ref().map(SyncOptions::core).unwrap_or_default();
        Ok(engine.sync_with(&core, &mut progress, cancel)?.into())
    }

    /// Enrolment (blocking).
    fn run_enroll(
        &self,
        server_url: &str,
        code: &str,
        device_name: &str,
    ) -> Result<Person, ApiError> {
        let transport = HttpTransport::new(server_url)?;
        Ok(enroll(
            &self.store,
            &transport,
            server_url,
            code,
            device_name,
        )?)
    }

    /// Credential rotation (blocking).
    fn run_rotate(&self) -> Result<(), ApiError> {
        let link = self.store.server_link()?.ok_or(ApiError::NotEnrolled)?;
        let transport = HttpTransport::new(&link.url)?;
        Ok(SyncEngine::new(&self.store, &transport).rotate_credential()?)
    }
}

#[uniffi::export]
impl GridStore {
    /// Enrols this device with a server using a one-time code from the administrator;
    /// sets the device's person and returns it. Blocking network call: run it on a
    /// background thread, or use `enroll_async`.
    pub fn enroll(
        &self,
        server_url: String,
        code: String,
        device_name: String,
    ) -> Result<Person, ApiError> {
        guard(|| self.run_enroll(&server_url, &code, &device_name))
    }

    /// `enroll`, awaited: Kotlin `suspend fun enrollAsync`, Swift `enrollAsync() async
    /// throws`, Python `await store.enroll_async(...)`. Enrolment is one request:
    /// cancelling the caller stops waiting for it, but if the server had already accepted
    /// the code the device is enrolled (check `is_enrolled`).
    pub async fn enroll_async(
        self: Arc<Self>,
        server_url: String,
        code: String,
        device_name: String,
    ) -> Result<Person, ApiError> {
        spawn_blocking("enroll", CancelFlag::new(), move || {
            self.run_enroll(&server_url, &code, &device_name)
        })
        .await
    }

    /// Whether the device is enrolled with a server.
    pub fn is_enrolled(&self) -> Result<bool, ApiError> {
        guard(|| Ok(self.store.server_link()?.is_some()))
    }

    /// The URL of the server this device is enrolled with.
    pub fn server_url(&self) -> Result<Option<String>, ApiError> {
        guard(|| Ok(self.store.server_link()?.map(|l| l.url)))
    }

    /// Pushes local changes and pulls the grid feeds until nothing is left.
    ///
    /// Blocking: it runs for as long as the network takes, so call it on a background
    /// thread (`Dispatchers.IO`, `Task.detached`), or use `sync_async`. `listener` hears
    /// progress after each round trip; `handle.cancel()` from another thread stops it
    /// between round trips with `ApiError.Cancelled`. Local edits made on other threads during a sync are kept and
    /// pushed next time. Two syncs of the same store run one after the other. `options`
    /// bounds the size of pull pages and the attachment uploads that follow the records
    /// (see `SyncOptions`).
    #[uniffi::method(default(listener = None, handle = None, options = None))]
    pub fn sync(
        &self,
        listener: Option<Arc<dyn SyncListener>>,
        handle: Option<Arc<SyncHandle>>,
        options: Option<SyncOptions>,
    ) -> Result<SyncReport, ApiError> {
        guard(|| {
            let cancel = SyncHandle::flag_of(handle);
            self.run_sync(listener, &cancel, options)
        })
    }

    /// `sync`, awaited: Kotlin `suspend fun syncAsync`, Swift `syncAsync() async throws`,
    /// Python `await store.sync_async()`. The sync runs on a thread of the library's own
    /// (the listener is called there); the caller's thread is free while it runs.
    ///
    /// Cancelling the awaiting Kotlin coroutine or Python asyncio task cancels the sync:
    /// uniffi drops the Rust future, which sets the sync's cancel flag, so the sync stops
    /// before its next round trip (pages already applied stay applied) and its thread
    /// ends; the caller sees `CancellationException` / `asyncio.CancelledError`. The
    /// uniffi 0.29 Swift bindings do not pass a task's cancellation to Rust: in Swift,
    /// give a `SyncHandle` and cancel it from `withTaskCancellationHandler` (the call then
    /// throws `ApiError.Cancelled`). `handle.cancel()` works in every language, as for
    /// `sync`.
    #[uniffi::method(default(listener = None, handle = None, options = None))]
    pub async fn sync_async(
        self: Arc<Self>,
        listener: Option<Arc<dyn SyncListener>>,
        handle: Option<Arc<SyncHandle>>,
        options: Option<SyncOptions>,
    ) -> Result<SyncReport, ApiError> {
        let cancel = SyncHandle::flag_of(handle);
        let watched = cancel.clone();
        spawn_blocking("sync", cancel, move || {
            self.run_sync(listener, &watched, options)
        })
        .await
    }

    /// Asks the server for a new device secret (the old one works until the new one is
    /// used). Blocking network call.
    pub fn rotate_credential(&self) -> Result<(), ApiError> {
        guard(|| self.run_rotate())
    }

    /// `rotate_credential`, awaited (Kotlin `rotateCredentialAsync`, Swift
    /// `rotateCredentialAsync`, Python `rotate_credential_async`). One request: cancelling
    /// the caller stops waiting, the rotation may still complete.
    pub async fn rotate_credential_async(self: Arc<Self>) -> Result<(), ApiError> {
        spawn_blocking("rotate", CancelFlag::new(), move || self.run_rotate()).await
    }
}
