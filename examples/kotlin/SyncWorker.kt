// Background sync for a field phone, in the shape of Android's WorkManager, on the JVM.
//
// `GridSyncWorker` is what an Android app registers: a `CoroutineWorker` whose
// `doWork()` awaits `GridStore.syncAsync()` and answers success, retry (network errors,
// server 5xx and 429, a sync stopped by the system) or failure (not enrolled, revoked,
// refused). `WorkScheduler` is a tiny stand-in for WorkManager so the same worker runs
// here: a periodic request, a "network available" constraint given as a predicate, and
// exponential backoff with a cap. On a phone, replace both stand-ins by androidx.work
// (see bindings/README.md, "Background sync"); `GridSyncWorker.doWork` stays as it is.
//
// The demo (main) plays a township without coverage: it enrols against its own server,
// records a producer, stops the server, keeps "no network" for a moment (the worker does
// not run), then has network but no server (attempts fail, the backoff grows up to its
// cap), restarts the server and sees the worker succeed and push the producer. It checks
// each step and exits non-zero when one did not happen.
//
// Run (after bindings/generate.sh): see bindings/run-tests.sh, or
//   java -Djna.library.path=<dir of libgridsync.so> -cp <jar>:<kotlin-stdlib>:<coroutines>:jna.jar \
//        gridsync.examples.SyncWorkerKt <gridsync-server binary> <scratch dir>
package gridsync.examples

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean
import kotlin.system.exitProcess
import kotlin.time.Duration
import kotlin.time.Duration.Companion.milliseconds
import kotlin.time.Duration.Companion.seconds
import kotlin.time.TimeSource
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.delay
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.gridsync.*

// ---- the shape of androidx.work ----

/** What one run of a worker answers (androidx.work.ListenableWorker.Result). */
sealed class WorkResult {
    /** Done; the next run comes after the period. */
    data class Success(val summary: String) : WorkResult()
    /** Try again after the backoff delay. */
    data class Retry(val reason: String) : WorkResult()
    /** Trying again will not help; the next run comes after the period. */
    data class Failure(val reason: String) : WorkResult()
}

/** A worker whose work is a suspend function (androidx.work.CoroutineWorker). */
abstract class CoroutineWorker {
    /** How many times this work was tried before this run (0 on the first). */
    var runAttemptCount: Int = 0
        internal set

    /** The work. Cancellation (the system stopping the work) arrives as CancellationException. */
    abstract suspend fun doWork(): WorkResult
}

// ---- the worker an app registers ----

/**
 * Syncs `store` in the background through the async API. On Android the store comes from
 * the application object (one `GridStore` per database file, shared by the whole app).
 */
class GridSyncWorker(private val store: GridStore, private val log: (String) -> Unit = ::println) : CoroutineWorker() {
    override suspend fun doWork(): WorkResult {
        return try {
            // Suspends without holding a thread; cancelling this coroutine (WorkManager
            // stopping the work when the constraint goes away) cancels the sync between
            // round trips, keeping the pages already applied.
            val report = store.syncAsync()
            WorkResult.Success("pushed ${report.pushed}, pulled ${report.pulled} in ${report.roundTrips} round trip(s)")
        } catch (e: ApiException) {
            decide(e)
        }
    }

    companion object {
        /** Retry what time can fix, fail what it cannot. */
        fun decide(e: ApiException): WorkResult = when (e) {
            is ApiException.Network -> WorkResult.Retry("network: ${e.message}")
            is ApiException.Server -> {
                val status = e.status.toInt()
                if (status >= 500 || status == 429) WorkResult.Retry("server answered $status")
                else WorkResult.Failure("server refused ($status): ${e.message}") // 401: revoked
            }
            // Stopped by its handle: the app or the system wants it to stop now, not forever.
            is ApiException.Cancelled -> WorkResult.Retry("cancelled")
            // A busy or full disk may clear up.
            is ApiException.Storage -> WorkResult.Retry("storage: ${e.message}")
            is ApiException.NotEnrolled -> WorkResult.Failure("not enrolled")
            else -> WorkResult.Failure(e.message ?: e.toString())
        }
    }
}

// ---- a tiny WorkManager ----

/** When the work may run (androidx.work.Constraints; NetworkType.CONNECTED as a predicate). */
class Constraints(val networkAvailable: () -> Boolean = { true })

/** A periodic request with exponential backoff (androidx.work.PeriodicWorkRequest). */
class PeriodicWorkRequest(
    val repeatInterval: Duration,
    val constraints: Constraints,
    /** First retry delay; doubled after each retry (BackoffPolicy.EXPONENTIAL). */
    val backoffDelay: Duration,
    /** The longest retry delay (WorkManager caps at 5 hours). */
    val maxBackoff: Duration,
) {
    /** The delay before retry number `attempt` (0-based): backoffDelay * 2^attempt, capped. */
    fun backoff(attempt: Int): Duration {
        var d = backoffDelay
        repeat(attempt) { if (d < maxBackoff) d *= 2 }
        return minOf(d, maxBackoff)
    }
}

/** One thing the scheduler did. */
sealed class WorkEvent {
    abstract val atMs: Long
    data class WaitingForNetwork(override val atMs: Long) : WorkEvent()
    data class Ran(override val atMs: Long, val attempt: Int, val result: WorkResult, val nextInMs: Long) : WorkEvent()
}

/** Runs periodic work on a coroutine scope, honouring constraints and backoff. */
class WorkScheduler(private val scope: CoroutineScope, private val log: (String) -> Unit = ::println) {
    private val started = TimeSource.Monotonic.markNow()
    /** What happened so far, oldest first. */
    val events: MutableList<WorkEvent> = java.util.Collections.synchronizedList(mutableListOf())

    private fun now() = started.elapsedNow().inWholeMilliseconds

    /** Starts `worker` under `request` (enqueueUniquePeriodicWork); cancel the job to stop it. */
    fun enqueuePeriodic(name: String, request: PeriodicWorkRequest, worker: CoroutineWorker): Job = scope.launch {
        var attempt = 0
        while (isActive) {
            if (!request.constraints.networkAvailable()) {
                events.add(WorkEvent.WaitingForNetwork(now()))
                log("[%6d ms] %s: waiting for network".format(now(), name))
                while (!request.constraints.networkAvailable()) delay(50)
            }
            worker.runAttemptCount = attempt
            val result = worker.doWork()
            val next = when (result) {
                is WorkResult.Retry -> request.backoff(attempt).also { attempt++ }
                is WorkResult.Success, is WorkResult.Failure -> request.repeatInterval.also { attempt = 0 }
            }
            events.add(WorkEvent.Ran(now(), worker.runAttemptCount, result, next.inWholeMilliseconds))
            log("[%6d ms] %s: attempt %d -> %s; next run in %s".format(now(), name, worker.runAttemptCount, result, next))
            delay(next)
        }
    }
}

// ---- the demo ----

/** `gridsync-server serve --demo` on a loopback port, stopped and started again on demand. */
private class DemoServer(private val binary: String, private val data: File) {
    var url: String = ""
    var liaisonCode: String = ""
    private var process: Process? = null

    fun start(listen: String = "127.0.0.1:0") {
        val p = ProcessBuilder(binary, "serve", "--data", data.path, "--listen", listen, "--demo")
            .redirectError(ProcessBuilder.Redirect.appendTo(File(data.parentFile, "server.log")))
            .start()
        process = p
        val out = BufferedReader(InputStreamReader(p.inputStream, Charsets.UTF_8))
        val code = Regex("^enrolment code for liaison \\S+ \\(.*\\): (\\S+)$")
        while (true) {
            val line = out.readLine()?.trim() ?: error("server exited before listening")
            code.find(line)?.let { liaisonCode = it.groupValues[1] }
            if (line.startsWith("listening on ")) {
                url = line.removePrefix("listening on ")
                break
            }
        }
        Thread { out.readText() }.apply { isDaemon = true }.start()
    }

    fun stop() {
        process?.let {
            it.destroy()
            if (!it.waitFor(10, TimeUnit.SECONDS)) it.destroyForcibly().waitFor()
        }
        process = null
    }
}

private fun expectThat(cond: Boolean, what: () -> String) {
    if (!cond) {
        System.err.println("SyncWorker: FAILED: ${what()}")
        exitProcess(1)
    }
}

fun main(args: Array<String>) {
    require(args.size >= 2) { "usage: SyncWorker GRIDSYNC_SERVER_BINARY SCRATCH_DIR" }
    val scratch = File(args[1]).also { it.mkdirs() }
    val server = DemoServer(args[0], File(scratch, "server").also { it.mkdirs() })
    try {
        runBlocking { demo(server, File(scratch, "phone.db").path) }
    } finally {
        server.stop()
    }
    println("sync worker done")
}

private suspend fun demo(server: DemoServer, dbPath: String) {
    server.start()
    val port = server.url.substringAfterLast(':')
    val store = GridStore.open(dbPath)
    val me = store.enrollAsync(server.url, server.liaisonCode, "SyncWorker 示例手机")
    store.syncAsync()
    println("enrolled as ${me.name}; first sync done")

    // A worker of a phone that was never enrolled fails (no retry would help).
    val lone = GridStore.open("$dbPath-unenrolled")
    val never = GridSyncWorker(lone).doWork()
    expectThat(never is WorkResult.Failure) { "an unenrolled phone's worker failed, got $never" }

    // Out of coverage: the server goes away, a producer is registered offline.
    server.stop()
    store.createProducer(
        NewProducer(
            name = "巴雅尔家庭牧场",
            producerType = ProducerType.FAMILY_RANCH,
            owner = "巴雅尔",
            phone = "13947900002",
            grid = me.grids.first(),
            idNumber = "152522198001010021",
            address = "三组",
            products = listOf("羊肉"),
            scale = Scale(livestock = listOf(LivestockEntry(Species.SHEEP_GOAT, onHand = 280u, soldPerYear = 120u))),
            risk = RiskLevel.MEDIUM,
        ),
    )
    expectThat(store.counts().unsynced == 1L) { "one unsynced record" }

    val network = AtomicBoolean(false)
    val request = PeriodicWorkRequest(
        repeatInterval = 2.seconds, // 15 minutes at least on Android; short for the demo
        constraints = Constraints(networkAvailable = { network.get() }),
        backoffDelay = 200.milliseconds,
        maxBackoff = 1600.milliseconds,
    )
    val scheduler = WorkScheduler(CoroutineScope(Dispatchers.Default))
    val job = scheduler.enqueuePeriodic("grid-sync", request, GridSyncWorker(store))

    fun runs() = scheduler.events.filterIsInstance<WorkEvent.Ran>()

    // No network: the worker does not run.
    delay(500)
    expectThat(runs().isEmpty()) { "the worker ran without network: ${runs()}" }
    expectThat(scheduler.events.any { it is WorkEvent.WaitingForNetwork }) { "the scheduler waited for network" }

    // Network but no server: attempts fail and are retried after growing delays.
    network.set(true)
    withTimeout(120_000) { while (runs().size < 5) delay(50) }
    val failed = runs().take(5)
    expectThat(failed.all { it.result is WorkResult.Retry }) { "attempts without a server are retried: $failed" }
    val delays = failed.map { it.nextInMs }
    expectThat(delays == listOf(200L, 400L, 800L, 1600L, 1600L)) { "backoff doubles up to its cap: $delays" }
    println("backoff observed: $delays ms")

    // Coverage again: the server is back on the same address; the next attempt succeeds.
    server.start("127.0.0.1:$port")
    withTimeout(120_000) { while (runs().none { it.result is WorkResult.Success }) delay(50) }
    val success = runs().first { it.result is WorkResult.Success }
    expectThat(success.attempt >= 5) { "the success came after the failed attempts: $success" }
    expectThat(success.nextInMs == request.repeatInterval.inWholeMilliseconds) { "after a success the period applies" }
    expectThat((success.result as WorkResult.Success).summary.startsWith("pushed 1,")) { "the producer was pushed: $success" }
    expectThat(store.counts().unsynced == 0L) { "nothing left to push" }

    // The next periodic run finds nothing to do and succeeds again.
    withTimeout(30_000) { while (runs().count { it.result is WorkResult.Success } < 2) delay(50) }
    val second = runs().filter { it.result is WorkResult.Success }[1]
    expectThat(second.attempt == 0 && (second.result as WorkResult.Success).summary.startsWith("pushed 0,")) {
        "the next period's run: $second"
    }
    job.cancelAndJoin()
    println("worker: ${runs().size} runs, ${failed.size} retried, then success")
}
