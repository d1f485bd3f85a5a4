// Listeners of the store as Swift AsyncStreams, for SwiftUI's `.task { for await ... }`:
//
//   .task {
//       for await _ in store.recordChanges(RecordFilter(kind: .producer, grid: village)) {
//           reload()                          // after each commit that touched the list
//       }
//   }
//
// The listener is registered when the stream is created and removed when the stream
// terminates (the task is cancelled or the view goes away). The store calls listeners on a
// thread of its own; the stream buffers every change, so none is dropped.
//
// Not compiled here (no Swift compiler on the CI machine); it uses only the generated API
// (`observeRecords`, `observeSync`, `RecordListener`, `SyncStateListener`, `Subscription`)
// that bindings/run-tests.sh checks is generated, and the Kotlin twin of this file,
// examples/kotlin/Flows.kt, runs in the binding tests.
import GridSync

private final class RecordForwarder: RecordListener {
    let continuation: AsyncStream<RecordChanges>.Continuation
    init(_ continuation: AsyncStream<RecordChanges>.Continuation) { self.continuation = continuation }
    func onChange(changes: RecordChanges) { continuation.yield(changes) }
}

private final class SyncForwarder: SyncStateListener {
    let continuation: AsyncStream<SyncEvent>.Continuation
    init(_ continuation: AsyncStream<SyncEvent>.Continuation) { self.continuation = continuation }
    func onSyncEvent(event: SyncEvent) { continuation.yield(event) }
}

extension GridStore {
    /// The records each commit changed that `filter` matches: local edits and pulled pages.
    public func recordChanges(_ filter: RecordFilter = RecordFilter()) -> AsyncStream<RecordChanges> {
        AsyncStream(bufferingPolicy: .unbounded) { continuation in
            do {
                let subscription = try observeRecords(filter: filter, listener: RecordForwarder(continuation))
                continuation.onTermination = { _ in subscription.cancel() }
            } catch {
                continuation.finish()
            }
        }
    }

    /// Sync state: started, after each round trip, and how the sync ended.
    public func syncEvents() -> AsyncStream<SyncEvent> {
        AsyncStream(bufferingPolicy: .unbounded) { continuation in
            do {
                let subscription = try observeSync(listener: SyncForwarder(continuation))
                continuation.onTermination = { _ in subscription.cancel() }
            } catch {
                continuation.finish()
            }
        }
    }
}
