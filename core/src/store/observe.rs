//! Listeners for changed records and for sync state.
//!
//! Every write transaction collects the records it changes (the write paths call
//! [`note`] beside the query-table rows they write, and [`note_tree`] when the grid tree
//! changes). When the transaction commits, still under the writer's lock, the collected
//! set goes to a dispatcher thread as one event; a rolled back transaction tells nothing.
//! The dispatcher calls each listener whose filter matches, once per commit, with the
//! records of that commit it matches, never while a transaction is open and never on the
//! thread that wrote. Events keep the order of the commits.
//!
//! A listener that panics is caught (and logged); the others still hear the event. A
//! listener may call back into the store: reads run on read connections, and a write from
//! a listener waits for the writer like any other.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};

use super::{Store, TreeSnapshot};
use crate::model::RecordKind;
use crate::rules::is_within;
use crate::sync::SyncProgress;
use crate::Result;

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum ChangeOrigin {
    /// A write on this device (an edit, a review step, an import, reverting a rejected
    /// edit, wiping after revocation).
    Local,
    /// A page pulled from the server.
    Sync,
}

/// One record a commit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct ChangedRecord {
    /// Record id.
    pub id: String,
    /// Its kind.
    pub kind: RecordKind,
    /// Its grid after the change (before it, when removed).
    pub grid: String,
    /// Whether the record left the device (moved out of scope, set aside as corrupt,
    /// wiped, a rejected new record discarded).
    pub removed: bool,
}

/// The records one commit changed that a listener asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct RecordChanges {
    /// Where the commit came from.
    pub origin: ChangeOrigin,
    /// The changed records, each once, in the order the commit first touched them.
    pub records: Vec<ChangedRecord>,
}

impl RecordChanges {
    /// The ids of the changed records.
    pub fn ids(&self) -> Vec<String> {
        self.records.iter().map(|r| r.id.clone()).collect()
    }
}

/// Which records a listener hears about. Every field left `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct RecordFilter {
    /// Only records of this kind.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub kind: Option<RecordKind>,
    /// Only records in this grid or in a grid below it.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub grid: Option<String>,
    /// Only this record.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub id: Option<String>,
}

impl RecordFilter {
    fn matches(&self, tree: &TreeSnapshot, r: &ChangedRecord) -> bool {
        self.kind.is_none_or(|k| k == r.kind)
            && self.id.as_deref().is_none_or(|id| id == r.id)
            && self
                .grid
                .as_deref()
                .is_none_or(|g| g == r.grid || is_within(tree, &r.grid, g))
    }
}

/// What a sync is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum SyncPhase {
    /// A sync started.
    Started,
    /// A round trip finished (pages applied, records pushed, attachment bytes moved).
    Progress,
    /// The sync finished and nothing is left to send or fetch.
    Succeeded,
    /// The sync stopped on an error (`error` says which).
    Failed,
    /// The sync was cancelled.
    Cancelled,
}

/// A change of sync state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct SyncEvent {
    /// What happened.
    pub phase: SyncPhase,
    /// Progress of the sync so far (its end, for the last event).
    pub progress: SyncProgress,
    /// The error a failed sync stopped on.
    pub error: Option<String>,
}

type RecordCallback = Arc<dyn Fn(&RecordChanges) + Send + Sync>;
type SyncCallback = Arc<dyn Fn(&SyncEvent) + Send + Sync>;

enum Event {
    Records {
        origin: ChangeOrigin,
        records: Vec<ChangedRecord>,
        tree: Option<TreeSnapshot>,
    },
    Sync(SyncEvent),
}

#[derive(Default)]
struct Listeners {
    next: u64,
    records: Vec<(u64, RecordFilter, RecordCallback)>,
    sync: Vec<(u64, SyncCallback)>,
    /// The dispatcher's queue, once a listener was registered.
    queue: Option<Sender<Event>>,
}

/// The store's listeners and the queue to their dispatcher thread.
#[derive(Default)]
pub(crate) struct Observers {
    inner: Arc<Mutex<Listeners>>,
    /// The grid tree the dispatcher matches grid filters against.
    tree: Arc<Mutex<Option<TreeSnapshot>>>,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Observers")
            .field("record_listeners", &l.records.len())
            .field("sync_listeners", &l.sync.len())
            .finish()
    }
}

impl Observers {
    /// Hands a commit's changes to the dispatcher (nothing when nobody listens).
    pub(crate) fn committed(&self, origin: ChangeOrigin, collected: Collected) {
        if collected.records.is_empty() && collected.tree.is_none() {
            return;
        }
        let l = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = &l.queue {
            let _ = q.send(Event::Records {
                origin,
                records: collected.records,
                tree: collected.tree,
            });
        } else if let Some(t) = collected.tree {
            *self.tree.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        }
    }

    /// Hands a sync event to the dispatcher (nothing when nobody listens).
    pub(crate) fn sync_event(&self, event: SyncEvent) {
        let l = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(q), false) = (&l.queue, l.sync.is_empty()) {
            let _ = q.send(Event::Sync(event));
        }
    }

    fn queue(&self, l: &mut Listeners) -> Result<()> {
        if l.queue.is_some() {
            return Ok(());
        }
        let (tx, rx) = channel();
        let inner = Arc::downgrade(&self.inner);
        let tree = Arc::clone(&self.tree);
        std::thread::Builder::new()
            .name("gridsync-observers".into())
            .spawn(move || dispatch(rx, inner, tree))
            .map_err(|e| crate::Error::io("starting the listener thread", e))?;
        l.queue = Some(tx);
        Ok(())
    }
}

/// The dispatcher: one thread per store, ending when the store is dropped.
fn dispatch(
    rx: Receiver<Event>,
    inner: Weak<Mutex<Listeners>>,
    tree: Arc<Mutex<Option<TreeSnapshot>>>,
) {
    while let Ok(event) = rx.recv() {
        let Some(inner) = inner.upgrade() else { return };
        match event {
            Event::Records {
                origin,
                records,
                tree: new_tree,
            } => {
                let tree = {
                    let mut t = tree.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(n) = new_tree {
                        *t = Some(n);
                    }
                    t.clone().unwrap_or_default()
                };
                let listeners: Vec<(RecordFilter, RecordCallback)> = inner
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .records
                    .iter()
                    .map(|(_, f, c)| (f.clone(), Arc::clone(c)))
                    .collect();
                drop(inner);
                for (filter, callback) in listeners {
                    let matching: Vec<ChangedRecord> = records
                        .iter()
                        .filter(|r| filter.matches(&tree, r))
                        .cloned()
                        .collect();
                    if matching.is_empty() {
                        continue;
                    }
                    let changes = RecordChanges {
                        origin,
                        records: matching,
                    };
                    if catch_unwind(AssertUnwindSafe(|| callback(&changes))).is_err() {
                        tracing::warn!("a record listener panicked");
                    }
                }
            }
            Event::Sync(e) => {
                let listeners: Vec<SyncCallback> = inner
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sync
                    .iter()
                    .map(|(_, c)| Arc::clone(c))
                    .collect();
                drop(inner);
                for callback in listeners {
                    if catch_unwind(AssertUnwindSafe(|| callback(&e))).is_err() {
                        tracing::warn!("a sync listener panicked");
                    }
                }
            }
        }
    }
}

/// A registered listener; dropping it (or [`Subscription::cancel`]) removes the listener.
/// A call already under way finishes.
pub struct Subscription {
    id: u64,
    inner: Weak<Mutex<Listeners>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Subscription {
    /// Removes the listener now.
    pub fn cancel(&self) {
        if let Some(inner) = self.inner.upgrade() {
            let mut l = inner.lock().unwrap_or_else(|p| p.into_inner());
            l.records.retain(|(i, _, _)| *i != self.id);
            l.sync.retain(|(i, _)| *i != self.id);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl Store {
    /// Calls `listener` after every commit that changes a record matching `filter`, with
    /// the matching records of that commit: local writes and each applied pull page
    /// alike. Calls come on a thread of the store's own, one at a time, in commit order.
    pub fn observe_records(
        &self,
        filter: RecordFilter,
        listener: impl Fn(&RecordChanges) + Send + Sync + 'static,
    ) -> Result<Subscription> {
        if filter.grid.is_some() {
            let tree = self.tree()?;
            let mut t = self
                .observers
                .tree
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if t.is_none() {
                *t = Some(tree);
            }
        }
        let obs = &self.observers;
        let mut l = obs.inner.lock().unwrap_or_else(|p| p.into_inner());
        obs.queue(&mut l)?;
        l.next += 1;
        let id = l.next;
        l.records.push((id, filter, Arc::new(listener)));
        Ok(Subscription {
            id,
            inner: Arc::downgrade(&obs.inner),
        })
    }

    /// Calls `listener` when a sync starts, after each of its round trips and when it
    /// ends, on the same thread as the record listeners.
    pub fn observe_sync(
        &self,
        listener: impl Fn(&SyncEvent) + Send + Sync + 'static,
    ) -> Result<Subscription> {
        let obs = &self.observers;
        let mut l = obs.inner.lock().unwrap_or_else(|p| p.into_inner());
        obs.queue(&mut l)?;
        l.next += 1;
        let id = l.next;
        l.sync.push((id, Arc::new(listener)));
        Ok(Subscription {
            id,
            inner: Arc::downgrade(&obs.inner),
        })
    }

    /// Tells the sync listeners about `event` (the sync engine calls this).
    pub(crate) fn sync_event(&self, event: SyncEvent) {
        self.observers.sync_event(event);
    }
}

thread_local! {
    /// The changes of the write transaction open on this thread, if any.
    static COLLECTING: RefCell<Option<Collected>> = const { RefCell::new(None) };
}

/// What one write transaction changed.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    records: Vec<ChangedRecord>,
    index: HashMap<String, usize>,
    tree: Option<TreeSnapshot>,
}

/// Collects the changes of the write transaction on this thread until [`Collect::finish`];
/// dropped unfinished (the transaction rolled back), it forgets them.
pub(crate) struct Collect(());

impl Collect {
    pub(crate) fn start() -> Collect {
        COLLECTING.with(|c| *c.borrow_mut() = Some(Collected::default()));
        Collect(())
    }

    pub(crate) fn finish(self) -> Collected {
        COLLECTING
            .with(|c| c.borrow_mut().take())
            .unwrap_or_default()
    }
}

impl Drop for Collect {
    fn drop(&mut self) {
        COLLECTING.with(|c| *c.borrow_mut() = None);
    }
}

/// Notes that the open write transaction changed (or removed) a record.
pub(crate) fn note(id: &str, kind: RecordKind, grid: &str, removed: bool) {
    COLLECTING.with(|c| {
        if let Some(col) = c.borrow_mut().as_mut() {
            let entry = ChangedRecord {
                id: id.to_string(),
                kind,
                grid: grid.to_string(),
                removed,
            };
            match col.index.get(id) {
                Some(&i) => col.records[i] = entry,
                None => {
                    col.index.insert(id.to_string(), col.records.len());
                    col.records.push(entry);
                }
            }
        }
    });
}

/// Notes the grid tree as the open write transaction leaves it.
pub(crate) fn note_tree(tree: TreeSnapshot) {
    COLLECTING.with(|c| {
        if let Some(col) = c.borrow_mut().as_mut() {
            col.tree = Some(tree);
        }
    });
}
