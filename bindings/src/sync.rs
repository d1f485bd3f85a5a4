//! Enrolment and sync: a foreign listener for progress and a handle to cancel.

use std::sync::Arc;

use gridsync_core::sync::{
    enroll, CancelFlag, HttpTransport, SyncEngine, SyncOptions as CoreSyncOptions,
};

use crate::error::{guard, ApiError};
use crate::store::GridStore;
use crate::types::{Person, SyncProgress, SyncReport};

/// Receives sync progress; implemented by the app (Kotlin, Swift or Python).
///
/// Called on the thread running `GridStore.sync` after each round trip; hand the value
/// to the UI thread yourself. An exception thrown here ends the sync with
/// `ApiError.Internal`.
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

/// A cancel token for a running sync: call `cancel()` from any thread and the sync stops
/// before its next round trip with `ApiError.Cancelled` (what was applied stays applied).
#[derive(Debug, Default, uniffi::Object)]
pub struct SyncHandle {
    pub(crate) flag: CancelFlag,
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

    /// Whether `cancel()` was called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.is_cancelled()
    }
}

#[uniffi::export]
impl GridStore {
    /// Enrols this device with a server using a one-time code from the administrator;
    /// sets the device's person and returns it. Blocking network call: run it on a
    /// background thread.
    pub fn enroll(
        &self,
        server_url: String,
        code: String,
        device_name: String,
    ) -> Result<Person, ApiError> {
        guard(|| {
            let transport = HttpTransport::new(&server_url)?;
            Ok(enroll(
                &self.store,
                &transport,
                &server_url,
                &code,
                &device_name,
            )?)
        })
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
    /// thread (`Dispatchers.IO`, `Task.detached`). `listener` hears progress after each
    /// round trip; `handle.cancel()` from another thread stops it between round trips.
    /// Local edits made on other threads during a sync are kept and pushed next time.
    /// Two syncs of the same store run one after the other. `options` bounds the size of
    /// pull pages and the attachment uploads that follow the records (see `SyncOptions`).
    #[uniffi::method(default(listener = None, handle = None, options = None))]
    pub fn sync(
        &self,
        listener: Option<Arc<dyn SyncListener>>,
        handle: Option<Arc<SyncHandle>>,
        options: Option<SyncOptions>,
    ) -> Result<SyncReport, ApiError> {
        guard(|| {
            let cancel = handle.map(|h| h.flag.clone()).unwrap_or_default();
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
            Ok(engine.sync_with(&core, &mut progress, &cancel)?.into())
        })
    }

    /// Asks the server for a new device secret (the old one works until the new one is used).
    pub fn rotate_credential(&self) -> Result<(), ApiError> {
        guard(|| {
            let link = self.store.server_link()?.ok_or(ApiError::NotEnrolled)?;
            let transport = HttpTransport::new(&link.url)?;
            Ok(SyncEngine::new(&self.store, &transport).rotate_credential()?)
        })
    }
}
