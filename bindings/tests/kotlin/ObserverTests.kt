// Listeners through the Kotlin bindings and the Flow adapters of examples/kotlin/Flows.kt:
// an edit on another thread and each pulled page reach a listener exactly once per commit.
package gridsync.tests

import gridsync.examples.recordChanges
import gridsync.examples.syncEvents
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.gridsync.*

/** Waits for a value up to `ms`, or null. */
private fun <T> Channel<T>.within(ms: Long): T? = runBlocking {
    try {
        withTimeout(ms) { receive() }
    } catch (_: kotlinx.coroutines.TimeoutCancellationException) {
        null
    }
}

fun observerTests() = Suite("observers").apply {
    test("an edit on another thread reaches a listener once, on the store's thread") {
        val store = offlineStore(path = Tmp.path("kt-observe-local.db"))
        val heard = LinkedBlockingQueue<Pair<RecordChanges, String>>()
        val sub = store.observeRecords(
            RecordFilter(kind = RecordKind.PRODUCER, grid = TOWNSHIP),
            object : RecordListener {
                override fun onChange(changes: RecordChanges) {
                    heard.add(changes to Thread.currentThread().name)
                }
            },
        )
        var made: Producer? = null
        val writer = thread(name = "writer") { made = store.createProducer(newProducer(VILLAGE, 601, name = "线程牧场")) }
        writer.join()
        val (changes, on) = heard.poll(5, TimeUnit.SECONDS) ?: throw Failure("no change heard")
        expectEq(changes.origin, ChangeOrigin.LOCAL, "origin")
        expectEq(changes.records.map { it.id }, listOf(made!!.id), "ids")
        expectEq(changes.records.single().grid, VILLAGE, "grid")
        expect(on != "writer" && on != Thread.currentThread().name) { "heard on the store's thread, not $on" }
        expect(heard.poll(300, TimeUnit.MILLISECONDS) == null) { "one commit, one call" }
        sub.cancel()
        expect(!sub.isActive()) { "cancelled" }
        store.createProducer(newProducer(VILLAGE, 602, name = "取消后"))
        expect(heard.poll(300, TimeUnit.MILLISECONDS) == null) { "nothing after cancel" }
    }

    test("Flow adapter: one emission per commit, and collection ends the listener") {
        val store = offlineStore(path = Tmp.path("kt-observe-flow.db"))
        val probe = store.createProducer(newProducer(VILLAGE, 611, name = "探针"))
        val got = Channel<RecordChanges>(Channel.UNLIMITED)
        runBlocking {
            val job = launch(Dispatchers.IO) { store.recordChanges(RecordFilter(kind = RecordKind.PRODUCER)).collect { got.send(it) } }
            // The listener is registered once collection started: edit until it is heard.
            var live = false
            for (i in 0 until 50) {
                val p = store.producer(probe.id)
                p.address = "探针$i"
                store.updateProducer(p)
                if (got.within(100) != null) {
                    live = true
                    break
                }
            }
            expect(live) { "the flow heard an edit" }
            while (got.within(300) != null) Unit
            val batch = (0 until 3).map { newProducer(VILLAGE, 620 + it, name = "批量$it") }
            val created = withContextIO { batch.map { store.createProducer(it).id } }
            val seen = (0 until 3).map { got.within(5000) ?: throw Failure("missing emission $it") }
            expectEq(seen.map { it.records.map { r -> r.id } }, created.map { listOf(it) }, "one emission per commit")
            expect(got.within(300) == null) { "no extra emission" }
            job.cancel()
            job.join()
        }
        store.createProducer(newProducer(VILLAGE, 630, name = "收集结束后"))
        expect(got.within(300) == null) { "nothing after the collector was cancelled" }
    }

    test("each pulled page reaches a Flow once; sync events from start to end") {
        val s = Server.get()
        val store = GridStore.open(Tmp.path("kt-observe-sync.db"))
        store.enroll(s.url, s.issueCode("supervisor"), "kt-observer")
        val changes = Channel<RecordChanges>(Channel.UNLIMITED)
        val events = Channel<SyncEvent>(Channel.UNLIMITED)
        val pulled = mutableListOf<UInt>()
        runBlocking {
            val a = launch(Dispatchers.IO) { store.recordChanges().collect { changes.send(it) } }
            val b = launch(Dispatchers.IO) { store.syncEvents().collect { events.send(it) } }
            // Give both collectors time to register before the sync starts.
            kotlinx.coroutines.delay(500)
            val report = withContextIO {
                store.sync(
                    object : SyncListener {
                        override fun onProgress(progress: SyncProgress) {
                            pulled.add(progress.pulled)
                        }
                    },
                    null,
                    SyncOptions(minPageBytes = 1024u, maxPageBytes = 4096u, firstPageBytes = 4096u),
                )
            }
            val growing = (listOf(0u) + pulled).zipWithNext().count { (x, y) -> y > x }
            expect(growing >= 3) { "small pages make several commits: $pulled" }
            val heard = (0 until growing).map { changes.within(10_000) ?: throw Failure("page $it not heard") }
            expect(changes.within(300) == null) { "one emission per page" }
            expect(heard.all { it.origin == ChangeOrigin.SYNC }) { "origin sync" }
            val ids = heard.flatMap { it.records.map { r -> r.id } }
            expectEq(ids.size, ids.toSet().size, "each record once")
            expectEq(ids.size.toUInt(), report.pulled, "every pulled record heard")
            val phases = generateSequence { events.within(300) }.map { it.phase }.toList()
            expectEq(phases.first(), SyncPhase.STARTED, "first phase")
            expectEq(phases.last(), SyncPhase.SUCCEEDED, "last phase")
            expectEq(phases.count { it == SyncPhase.PROGRESS }.toUInt(), report.roundTrips, "one event per round trip")
            a.cancel()
            b.cancel()
        }
    }
}

private fun <T> withContextIO(block: () -> T): T = runBlocking(Dispatchers.IO) { block() }
