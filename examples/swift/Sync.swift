// Swift task cancellation for the awaited sync. The Swift code uniffi 0.29 generates does
// not tell Rust when the awaiting task is cancelled (Kotlin's and Python's do), so this
// extension bridges it: cancelling the task cancels the sync's `SyncHandle`, and the sync
// stops before its next round trip (what was applied stays applied). The call then throws
// `CancellationError`, as Swift code expects.
//
//   let work = Task { try await store.syncCancellable() }
//   ...
//   work.cancel()        // e.g. from BGTask.expirationHandler
//
// Not compiled here (no Swift compiler on the CI machine); it uses only the generated API.
import GridSync

extension GridStore {
    /// `syncAsync`, cancelled with the task that awaits it.
    public func syncCancellable(
        listener: SyncListener? = nil,
        options: SyncOptions? = nil
    ) async throws -> SyncReport {
        let handle = SyncHandle()
        do {
            return try await withTaskCancellationHandler {
                try await syncAsync(listener: listener, handle: handle, options: options)
            } onCancel: {
                handle.cancel()
            }
        } catch ApiError.Cancelled where Task.isCancelled {
            throw CancellationError()
        }
    }
}
