//! Attachments (evidence photos, signatures): add them before saving the record that
//! refers to them, read them back, list them, and download those recorded on other phones.

use gridsync_core::attachment::AttachmentRef;
use gridsync_core::sync::{HttpTransport, SyncEngine};

use crate::error::{guard, ApiError};
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
    /// kept). Blocking network call: run it on a background thread. `handle.cancel()`
    /// stops it between pieces.
    #[uniffi::method(default(handle = None))]
    pub fn fetch_attachment(
        &self,
        key: String,
        handle: Option<Arc<SyncHandle>>,
    ) -> Result<Vec<u8>, ApiError> {
        guard(|| {
            let sha = sha_of(&key)?;
            let Some(link) = self.store.server_link()? else {
                return Ok(self.store.attachment(&sha)?);
            };
            let transport = HttpTransport::new(&link.url)?;
            let cancel = handle.map(|h| h.flag.clone()).unwrap_or_default();
            let engine = SyncEngine::new(&self.store, &transport);
            Ok(engine.fetch_attachment_counted(&sha, &cancel)?.0)
        })
    }

    /// Downloads the attachments of the most recent visits on the phone that it does not
    /// hold, up to `budget_bytes` (0: the cache budget). Blocking network call.
    #[uniffi::method(default(handle = None))]
    pub fn prefetch_attachments(
        &self,
        budget_bytes: u64,
        handle: Option<Arc<SyncHandle>>,
    ) -> Result<PrefetchReport, ApiError> {
        guard(|| {
            let link = self.store.server_link()?.ok_or(ApiError::NotEnrolled)?;
            let transport = HttpTransport::new(&link.url)?;
            let cancel = handle.map(|h| h.flag.clone()).unwrap_or_default();
            let engine = SyncEngine::new(&self.store, &transport);
            Ok(engine.prefetch_attachments(budget_bytes, &cancel)?)
        })
    }
}
