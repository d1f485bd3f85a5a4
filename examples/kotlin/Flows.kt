// Listeners of the store as Kotlin Flows, the way Room's `Flow` queries and PowerSync's
// `watch` are used on Android:
//
//   lifecycleScope.launch {
//       store.recordChanges(RecordFilter(kind = RecordKind.PRODUCER, grid = village))
//           .collect { reloadList() }          // after each commit that touched the list
//   }
//
// The listener is registered when the flow is collected and removed when the collecting
// coroutine is cancelled. The store calls listeners on a thread of its own; `trySendBlocking`
// waits there (not on the main thread) if the collector is slow, so no change is dropped.
package gridsync.examples

import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import org.gridsync.*

/** The records each commit changed that `filter` matches: local edits and pulled pages. */
fun GridStore.recordChanges(filter: RecordFilter = RecordFilter()): Flow<RecordChanges> = callbackFlow {
    val subscription = observeRecords(
        filter,
        object : RecordListener {
            override fun onChange(changes: RecordChanges) {
                trySendBlocking(changes)
            }
        },
    )
    awaitClose {
        subscription.cancel()
        subscription.close()
    }
}

/** Sync state: started, after each round trip, and how the sync ended. */
fun GridStore.syncEvents(): Flow<SyncEvent> = callbackFlow {
    val subscription = observeSync(
        object : SyncStateListener {
            override fun onSyncEvent(event: SyncEvent) {
                trySendBlocking(event)
            }
        },
    )
    awaitClose {
        subscription.cancel()
        subscription.close()
    }
}
