//! Listeners for changed records and sync state, implemented by the app.
//!
//! The records, filter and events are the core's own types (derived through its `uniffi`
//! feature). Listeners are called on a thread of the store's own, after the commit, one
//! call per commit per listener, in commit order; hand the value to the UI thread
//! yourself. `examples/kotlin/Flows.kt` wraps them as Kotlin `Flow`s and
//! `examples/swift/Streams.swift` as Swift `AsyncStream`s.

use std::sync::{Arc, Mutex};

use gridsync_core::store::{
    RecordChanges, RecordFilter, Subscription as CoreSubscription, SyncEvent,
};

use crate::error::{guard, ApiError};
use crate::store::GridStore;

/// Hears the records each commit changed (local edits and pulled pages alike).
///
/// An exception thrown here is caught and logged; the store and the other listeners go on.
#[uniffi::export(with_foreign)]
pub trait RecordListener: Send + Sync {
    /// The records one commit changed that this listener's filter matches.
    fn on_change(&self, changes: RecordChanges);
}

/// Hears a sync start, each of its round trips and its end.
#[uniffi::export(with_foreign)]
pub trait SyncStateListener: Send + Sync {
    /// One change of sync state.
    fn on_sync_event(&self, event: SyncEvent);
}

/// A registered listener. `cancel()` (or dropping it: `close()` in Kotlin, releasing it in
/// Swift and Python) removes the listener; a call already under way finishes.
#[derive(Debug, uniffi::Object)]
pub struct Subscription {
    inner: Mutex<Option<CoreSubscription>>,
}

impl Subscription {
    fn of(inner: CoreSubscription) -> Arc<Self> {
        Arc::new(Subscription {
            inner: Mutex::new(Some(inner)),
        })
    }
}

#[uniffi::export]
impl Subscription {
    /// Removes the listener now.
    pub fn cancel(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Whether the listener is still registered.
    pub fn is_active(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

#[uniffi::export]
impl GridStore {
    /// Calls `listener` after every commit that changes records matching `filter` (kind,
    /// grid and the grids below it, one record), with those records: edits on any thread
    /// and each page a sync applies. Keep the returned subscription while listening.
    pub fn observe_records(
        &self,
        filter: RecordFilter,
        listener: Arc<dyn RecordListener>,
    ) -> Result<Arc<Subscription>, ApiError> {
        guard(|| {
            let sub = self
                .store
                .observe_records(filter, move |c| listener.on_change(c.clone()))?;
            Ok(Subscription::of(sub))
        })
    }

    /// Calls `listener` when a sync of this store starts, after each round trip and when
    /// it ends (succeeded, failed with its error, or cancelled).
    pub fn observe_sync(
        &self,
        listener: Arc<dyn SyncStateListener>,
    ) -> Result<Arc<Subscription>, ApiError> {
        guard(|| {
            let sub = self
                .store
                .observe_sync(move |e| listener.on_sync_event(e.clone()))?;
            Ok(Subscription::of(sub))
        })
    }
}
