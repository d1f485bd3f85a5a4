// The async API from Kotlin coroutines against a real gridsync-server on loopback:
// suspend enrol, sync, rotation and attachment download; cancelling the coroutine cancels
// the sync between round trips and loses nothing; SyncHandle.cancel() stops a blocking sync
// running on another thread, and letting go of a handle mid-sync does not.
package gridsync.tests

import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import java.util.concurrent.atomic.AtomicReference
import kotlin.concurrent.thread
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.gridsync.*

/** Pages of about 1 KiB: a supervisor's bootstrap of the demo township takes many round trips. */
private val SMALL_PAGES = SyncOptions(minPageBytes = 1024u, maxPageBytes = 1024u, firstPageBytes = 1024u)

/**
 * Keeps every progress report and the threads it was called on; completes `first` (and
 * counts down `firstLatch`) at the first report of a round trip that applied records.
 */
private class Progress : SyncListener {
    val reports: MutableList<SyncProgress> = java.util.Collections.synchronizedList(mutableListOf())
    val threads: MutableSet<Thread> = java.util.Collections.synchronizedSet(mutableSetOf())
    val first = CompletableDeferred<Unit>()
    val firstLatch = CountDownLatch(1)

    override fun onProgress(progress: SyncProgress) {
        reports.add(progress)
        threads.add(Thread.currentThread())
        if (progress.pulled > 0u) {
            first.complete(Unit)
            firstLatch.countDown()
        }
    }
}

/**
 * A new store enrolled through `enrollAsync` as the demo person of `role`, waiting out the
 * server's enrolment rate limit (10 a minute per address) if the run hits it.
 */
private suspend fun enrollFresh(s: Server, role: String, name: String): GridStore {
    val store = GridStore.open(Tmp.path("$name.db"))
    val deadline = System.nanoTime() + 90_000_000_000L
    while (true) {
        try {
            val me = store.enrollAsync(s.url, s.issueCode(role), name)
            expectEq(me.id, s.people.getValue(role), "enrolled person")
            return store
        } catch (e: ApiException.Server) {
            if (e.status.toInt() != 429 || System.nanoTime() > deadline) throw e
            delay(5_000)
        }
    }
}

/** Returns once no sync of `store` runs (syncs of one store run one after the other). */
private fun waitForSyncThread(store: GridStore) {
    val h = SyncHandle()
    h.cancel()
    expectThrows<ApiException.Cancelled> { store.sync(handle = h) }
    h.close()
}

/** What a device holds: its producers by id and the ids of their visits. */
private fun snapshot(store: GridStore): Pair<Map<String, Producer>, Set<String>> {
    val producers = store.grids()
        .flatMap { store.producersInGrid(it.code, ProducerSort.NAME, 10_000u, 0u) }
        .map { it.id }
        .distinct()
        .associateWith { id -> store.producer(id) }
    val visits = producers.keys.flatMap { id -> store.visitHistory(id).map { it.id } }.toSet()
    return producers to visits
}

private fun Counts.records() = producers + visits

fun asyncTests() = Suite("async").apply {
    val devices = mutableMapOf<String, GridStore>()
    val fullPulled = AtomicInteger(-1)

    test("enrollAsync and syncAsync; the listener runs on the library's thread, the caller's thread is free") {
        val s = Server.get()
        val lone = GridStore.open(Tmp.path("kt-async-lone.db"))
        runBlocking { expectThrows<ApiException.NotEnrolled> { lone.syncAsync() } }

        val progress = Progress()
        val ticks = AtomicInteger(0)
        val (a, report) = runBlocking {
            val a = enrollFresh(s, "supervisor", "kt-async-a")
            // One thread runs both coroutines: the ticker advances only while the sync is suspended.
            val ticker = launch {
                while (true) {
                    ticks.incrementAndGet()
                    delay(1)
                }
            }
            val report = a.syncAsync(progress, null, SMALL_PAGES)
            ticker.cancelAndJoin()
            a to report
        }
        expect(report.pulled > 0u && report.roundTrips >= 5u) { "many small pages: $report" }
        expectEq(progress.reports.size, report.roundTrips.toInt(), "one progress report per round trip")
        expect(Thread.currentThread() !in progress.threads) { "the listener runs on the library's sync thread" }
        expect(ticks.get() > 1) { "the coroutine's thread ran other work during the sync (${ticks.get()} ticks)" }

        expect(snapshot(a).first.isNotEmpty()) { "the supervisor sees producers" }
        devices["a"] = a
        fullPulled.set(report.pulled.toInt())
    }

    test("cancelling the coroutine cancels the sync between round trips; the next sync completes") {
        val s = Server.get()
        val full = devices["a"] ?: throw Failure("the first async test runs first")
        val progress = Progress()
        val caught = AtomicReference<Throwable?>(null)
        var tookMs = 0L
        val store = runBlocking {
            val store = enrollFresh(s, "supervisor", "kt-async-cancel")
            val job = launch(Dispatchers.Default) {
                try {
                    store.syncAsync(progress, null, SMALL_PAGES)
                } catch (e: Throwable) {
                    caught.set(e)
                    throw e
                }
            }
            withTimeout(60_000) { progress.first.await() }
            val t0 = System.nanoTime()
            job.cancelAndJoin()
            tookMs = (System.nanoTime() - t0) / 1_000_000
            expect(job.isCancelled) { "the job ended cancelled" }
            store
        }
        expect(caught.get() is CancellationException) { "the coroutine saw CancellationException, not ${caught.get()}" }
        expect(tookMs < 5_000) { "cancelAndJoin took $tookMs ms (it must not wait for the sync)" }
        waitForSyncThread(store)
        val last = progress.reports.last()
        expect(last.more) { "stopped while more pages waited: $last" }
        expect(last.pulled > 0u && last.pulled.toInt() < fullPulled.get()) {
            "applied ${last.pulled} of ${fullPulled.get()} records before the cancel took effect"
        }
        expect(store.counts().records() < full.counts().records()) { "fewer records than a full sync: ${store.counts()}" }

        val rest = runBlocking { store.syncAsync() }
        expectEq(last.pulled.toInt() + rest.pulled.toInt(), fullPulled.get(), "records over both syncs (none lost, none twice)")
        expectEq(store.counts(), full.counts(), "counts after the second sync")
        expectEq(snapshot(store), snapshot(full), "producers and visits after the second sync")
        devices["cancel"] = store
    }

    test("cancel() on a SyncHandle stops a blocking sync on another thread; the blocking sync then holds what syncAsync pulled") {
        val s = Server.get()
        val full = devices["a"] ?: throw Failure("the first async test runs first")
        val store = runBlocking { enrollFresh(s, "supervisor", "kt-async-close") }
        val progress = Progress()
        val outcome = AtomicReference<Any?>(null)
        val handle = SyncHandle()
        val worker = thread(name = "blocking-sync") {
            outcome.set(
                try {
                    store.sync(progress, handle, SMALL_PAGES)
                } catch (e: Throwable) {
                    e
                },
            )
        }
        expect(progress.firstLatch.await(60, TimeUnit.SECONDS)) { "the sync made a first round trip" }
        handle.cancel()
        worker.join(60_000)
        expect(!worker.isAlive) { "the sync ended after the handle was cancelled" }
        expect(outcome.get() is ApiException.Cancelled) { "the blocking sync ended with Cancelled, not ${outcome.get()}" }
        handle.close()
        val last = progress.reports.last()
        expect(last.more && last.pulled.toInt() < fullPulled.get()) { "stopped part way: $last" }
        val rest = store.sync()
        expectEq(last.pulled.toInt() + rest.pulled.toInt(), fullPulled.get(), "records over both syncs")
        // Blocking syncs brought what the async sync of the first test brought.
        expectEq(store.counts(), full.counts(), "counts, blocking vs async")
        expectEq(snapshot(store), snapshot(full), "producers and visits, blocking vs async")
    }

    test("letting go of a SyncHandle mid-sync (close, as the collector would) does not cancel the sync") {
        val s = Server.get()
        val store = runBlocking { enrollFresh(s, "supervisor", "kt-async-gc") }
        val progress = Progress()
        val handle = SyncHandle()
        val outcome = AtomicReference<Any?>(null)
        val worker = thread(name = "blocking-sync") {
            outcome.set(
                try {
                    store.sync(progress, handle, SMALL_PAGES)
                } catch (e: Throwable) {
                    e
                },
            )
        }
        expect(progress.firstLatch.await(60, TimeUnit.SECONDS)) { "the sync made a first round trip" }
        // The app's last reference goes, as when a handle created inline is collected by the
        // JVM (or released by ARC) while its sync runs.
        handle.close()
        worker.join(120_000)
        val report = outcome.get()
        expect(report is SyncReport) { "the sync completed, not $report" }
        expectEq((report as SyncReport).pulled.toInt(), fullPulled.get(), "the whole bootstrap")
        expect(progress.reports.size > 3) { "several round trips after the handle was let go: ${progress.reports.size}" }
    }

    test("rotateCredentialAsync; fetchAttachmentAsync and prefetchAttachmentsAsync download another phone's photos") {
        val a = devices["a"] ?: throw Failure("the first async test runs first")
        val b = devices["cancel"] ?: throw Failure("the cancel test runs first")
        val (photo, other) = jpeg(300_000, 5) to jpeg(200_000, 6)
        runBlocking {
            a.rotateCredentialAsync()
            // The new secret works: a visit with two photos goes up from phone A.
            val refs = listOf(a.addAttachment(photo), a.addAttachment(other))
            val producer = a.producersInGrid(a.profile()!!.grids.first(), ProducerSort.NAME, 1u, 0u).first()
            a.createVisit(
                NewVisit(
                    producerId = producer.id,
                    answers = emptyMap(),
                    findings = listOf(NewFinding("饲料间无通风", Severity.MINOR, photos = refs)),
                ),
            )
            val up = a.syncAsync()
            expect(up.pushed == 1u && up.attachmentsCompleted == 2u) { "visit and photos uploaded: $up" }
            // Phone B (the same supervisor) hears of the visit and downloads the photos.
            expect(b.syncAsync().pulled >= 1u) { "the visit arrived" }
            expectThrows<ApiException.NotFound> { b.attachment(refs[0]) }
            expect(b.fetchAttachmentAsync(refs[0]).contentEquals(photo)) { "downloaded bytes" }
            val prefetched = b.prefetchAttachmentsAsync(0uL)
            // (and those of earlier tests' visits in the township it did not hold)
            expect(prefetched.fetched >= 1u && prefetched.bytesDown >= 200_000uL) { "prefetched the other: $prefetched" }
            expect(b.attachment(refs[1]).contentEquals(other)) { "prefetched bytes" }
            val lone = GridStore.open(Tmp.path("kt-async-unenrolled.db"))
            expectThrows<ApiException.NotEnrolled> { lone.prefetchAttachmentsAsync(0uL) }
        }
    }
}
