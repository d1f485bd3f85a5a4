//! Attachments (evidence photos, signatures): add them before saving the record that
//! refers to them, read them back, list them, and download those recorded on other phones.
//! The downloads come blocking and async (`fetch_attachment_async`,
//! `prefetch_attachments_async`), as the sync does (see `sync.rs`).

use gridsync_core::attachment::AttachmentRef;
use gridsync_core::sync::{CancelFlag, HttpTransport, SyncEngine};

use crate::error::{guard, ApiError};
use crate::future::spawn_blocking;
use crate::store::GridStore;
use crate::sync::SyncHandle;
use crate::types::{AttachmentInfo, PrefetchReport};
use std::sync::Arc;

/// The SHA-256 of `key`: the hash itself or a whole reference (`att:<sha256>:…`).
fn sha_of(key: &str) -> Result<String, ApiError> {
    if AttachmentRef::is_reference(key) {
        key.parse::<AttachmentRef>()
            .map(|r| r.sha256)
            .map_err(|e| ApiError::Invalid {
                field: "reference".into(),
                problem: e.to_string(),
            })
    } else {
        Ok(key.to_string())
    }
}

#[uniffi::export]
impl GridStore {
    /// Records a photo or signature and returns its reference (`att:<sha256>:<size>:<mime>`)
    /// to put in a record's photo field. The type is read from the bytes (JPEG, PNG, WebP or
    /// PDF; `mime`, when given, must agree); at most 10 MB unless the app set another
    /// limit. The bytes are on disk before this returns; adding the same bytes again gives
    /// the same reference. A full disk is `ApiError.Storage` and leaves nothing behind.
    #[uniffi::method(default(mime = None))]
    pub fn add_attachment(&self, bytes: Vec<u8>, mime: Option<String>) -> Result<String, ApiError> {
        guard(|| {
            Ok(self
                .store
                .add_attachment(&bytes, mime.as_deref())?
                .to_string())
        })
    }

    /// [`GridStore::add_attachment`] of the file at `path` (a camera's output file).
    #[uniffi::method(default(mime = None))]
    pub fn add_attachment_file(
        &self,
        path: String,
        mime: Option<String>,
    ) -> Result<String, ApiError> {
        guard(|| {
            Ok(self
                .store
                .add_attachment_file(&path, mime.as_deref())?
                .to_string())
        })
    }

    /// The bytes of an attachment the phone holds, by SHA-256 or reference;
    /// `NotFound{what: "attachment"}` when it does not (see `fetch_attachment`).
    pub fn attachment(&self, key: String) -> Result<Vec<u8>, ApiError> {
        guard(|| Ok(self.store.attachment(&sha_of(&key)?)?))
    }

    /// Every attachment the phone holds, oldest first, with its state.
    pub fn attachments(&self) -> Result<Vec<AttachmentInfo>, ApiError> {
        guard(|| {
            Ok(self
                .store
                .attachments()?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// The attachments not yet on the server, oldest first.
    pub fn pending_attachments(&self) -> Result<Vec<AttachmentInfo>, ApiError> {
        guard(|| {
            Ok(self
                .store
                .pending_attachments()?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// Sets the largest attachment `add_attachment` accepts, in bytes.
    pub fn set_attachment_max_bytes(&self, bytes: u64) -> Result<(), ApiError> {
        guard(|| {
            self.store.set_attachment_max_bytes(bytes);
            Ok(())
        })
    }

    /// Sets the byte budget of uploaded and downloaded attachments kept on the phone
    /// (default 200 MB; the least recently read go first, never a pending one).
    pub fn set_attachment_cache_budget(&self, bytes: u64) -> Result<(), ApiError> {
        guard(|| Ok(self.store.set_attachment_cache_budget(bytes)?))
    }

    /// The bytes of an attachment a record here refers to: from the phone if it holds
    /// them, else downloaded from the server (a cut download continues from what the phone
    /// kept). Blocking network call: run it on a background thread, or use
    /// `fetch_attachment_async`. `handle.cancel()` stops it between pieces.
    #[uniffi::method(default(handle = None))]
    pub fn fetch_attachment(
        &self,
        key: String,
        handle: Option<Arc<SyncHandle>>,
    ) -> Result<Vec<u8>, ApiError> {
        guard(|| self.run_fetch(&key, &SyncHandle::flag_of(handle)))
    }

    /// `fetch_attachment`, awaited (Kotlin `suspend fun fetchAttachmentAsync`, Swift
    /// `fetchAttachmentAsync`, Python `await store.fetch_attachment_async(key)`).
    /// Cancelling the awaiting coroutine or asyncio task stops the download between pieces
    /// (what arrived is kept for the next try), as `sync_async` does.
    #[uniffi::method(default(handle = None))]
    pub async fn fetch_attachment_async(
        self: Arc<Self>,
        key: String,
        handle: Option<Arc<SyncHandle>>,
    ) -> Result<Vec<u8>, ApiError> {
        let cancel = SyncHandle::flag_of(handle);
        let watched = cancel.clone();
        spawn_blocking("fetch-attachment", cancel, move || {
            self.run_fetch(&key, &watched)
        })
        .await
    }

    /// Downloads the attachments of the most recent visits on the phone that it does not
    /// hold, up to `budget_bytes` (0: the cache budget). Blocking network call, or use
    /// `prefetch_attachments_async`.
    #[uniffi::method(default(handle = None))]
    pub fn prefetch_attachments(
        &self,
        budget_bytes: u64,
        handle: Option<Arc<SyncHandle>>,
    ) -> Result<PrefetchReport, ApiError> {
        guard(|| self.run_prefetch(budget_bytes, &SyncHandle::flag_of(handle)))
    }

    /// `prefetch_attachments`, awaited (Kotlin `prefetchAttachmentsAsync`, Swift
    /// `prefetchAttachmentsAsync`, Python `prefetch_attachments_async`); cancelling the
    /// caller stops it between pieces.
    #[uniffi::method(default(handle = None))]
    pub async fn prefetch_attachments_async(
        self: Arc<Self>,
        budget_bytes: u64,
        handle: Option<Arc<SyncHandle>>,
    ) -> Result<PrefetchReport, ApiError> {
        let cancel = SyncHandle::flag_of(handle);
        let watched = cancel.clone();
        spawn_blocking("prefetch-attachments", cancel, move || {
            self.run_prefetch(budget_bytes, &watched)
        })
        .await
    }
}

impl GridStore {
    /// One attachment, from the phone or downloaded (blocking).
    fn run_fetch(&self, key: &str, cancel: &CancelFlag) -> Result<Vec<u8>, ApiError> {
        let sha = sha_of(key)?;
        let Some(link) = self.store.server_link()? else {
            return Ok(self.store.attachment(&sha)?);
        };
        let transport = HttpTransport::new(&link.url)?;
        let engine = SyncEngine::new(&self.store, &transport);
        Ok(engine.fetch_attachment_counted(&sha, cancel)?.0)
    }

    /// The prefetch of recent visits' attachments (blocking).
    fn run_prefetch(
        &self,
        budget_bytes: u64,
        cancel: &CancelFlag,
    ) -> Result<PrefetchReport, ApiError> {
        let link = self.store.server_link()?.ok_or(ApiError::NotEnrolled)?;
        let transport = HttpTransport::new(&link.url)?;
        let engine = SyncEngine::new(&self.store, &transport);
        Ok(engine.prefetch_attachments(budget_bytes, cancel)?)
    }
}
