// One GridStore shared by coroutines on Dispatchers.IO, as an Android app would.
package gridsync.tests

import java.util.concurrent.ConcurrentLinkedQueue
import java.util.concurrent.atomic.AtomicBoolean
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import org.gridsync.*

fun concurrencyTests() = Suite("concurrency").apply {
    test("8 coroutines on Dispatchers.IO write while 2 read one store") {
        val store = offlineStore(path = Tmp.path("kt-coroutines.db"))
        val writing = AtomicBoolean(true)
        val seen = ConcurrentLinkedQueue<Long>()
        val ids = runBlocking {
            val readers = (0 until 2).map {
                launch(Dispatchers.IO) {
                    while (writing.get()) {
                        seen.add(store.counts().producers)
                        store.producersInGrid(TOWNSHIP, ProducerSort.LAST_VISIT, 50u, 0u)
                    }
                }
            }
            val writers = (0 until 8).map { n ->
                async(Dispatchers.IO) {
                    (0 until 10).map { i ->
                        store.createProducer(newProducer(VILLAGE, 100 + n * 10 + i, name = "协程$n-$i")).id
                    }
                }
            }
            val all = writers.awaitAll().flatten()
            writing.set(false)
            readers.forEach { it.join() }
            all
        }
        expectEq(ids.toSet().size, 80, "distinct producers")
        expectEq(store.counts().producers, 80L, "count")
        expect(seen.isNotEmpty() && seen.all { it in 0L..80L }) { "readers saw consistent counts" }
    }

    test("coroutines write while another coroutine syncs; a second device sees everything") {
        val s = Server.get()
        val a = s.device("liaison", "liaison-a")
        val grid = a.profile()!!.grids.first()
        val ids = runBlocking {
            val syncing = async(Dispatchers.IO) { repeat(3) { a.sync() } }
            val writers = (0 until 4).map { n ->
                async(Dispatchers.IO) {
                    (0 until 6).map { i -> a.createProducer(newProducer(grid, 800 + n * 10 + i, name = "同步中$n-$i")).id }
                }
            }
            syncing.await()
            writers.awaitAll().flatten()
        }
        a.sync()
        expectEq(a.counts().unsynced, 0L, "all pushed")
        val b = s.device("liaison", "liaison-b")
        for (id in ids) expectEq(b.producer(id).grid, grid, "producer $id on device b")
    }
}
