// Shared helpers for the Kotlin binding tests: a tiny test runner with plain assertions,
// valid test data, an offline grid tree, and a real gridsync-server on loopback.
package gridsync.tests

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import org.gridsync.*

/** A failed expectation. */
class Failure(message: String) : AssertionError(message)

/** A test that cannot run here (reported, not counted as passed). */
class Skipped(message: String) : RuntimeException(message)

/** Fails with `message` unless `cond` holds. */
fun expect(cond: Boolean, message: () -> String = { "expectation failed" }) {
    if (!cond) throw Failure(message())
}

/** Fails unless `actual == expected`. */
fun <T> expectEq(actual: T, expected: T, what: String = "value") {
    if (actual != expected) throw Failure("$what: expected <$expected>, got <$actual>")
}

/** Runs `block` and returns the exception, which must be a `T`. */
inline fun <reified T : Throwable> expectThrows(block: () -> Unit): T {
    try {
        block()
    } catch (e: Throwable) {
        if (e is T) return e
        throw Failure("expected ${T::class.simpleName}, got ${e::class.qualifiedName}: ${e.message}")
    }
    throw Failure("expected ${T::class.simpleName}, nothing was thrown")
}

/** Collects named tests and runs them in order, printing one line each. */
class Suite(private val name: String) {
    private val tests = mutableListOf<Pair<String, () -> Unit>>()

    /** Registers a test. */
    fun test(testName: String, body: () -> Unit) {
        tests.add(testName to body)
    }

    /** Runs the tests; returns (passed, failed, skipped). */
    fun run(filter: String): Triple<Int, Int, Int> {
        var passed = 0
        var failed = 0
        var skipped = 0
        for ((testName, body) in tests) {
            val full = "$name.$testName"
            if (filter.isNotEmpty() && !full.contains(filter)) continue
            val t0 = System.nanoTime()
            try {
                body()
                passed++
                println("PASS $full (${"%.2f".format((System.nanoTime() - t0) / 1e9)} s)")
            } catch (e: Skipped) {
                skipped++
                println("SKIP $full: ${e.message}")
            } catch (e: Throwable) {
                failed++
                println("FAIL $full (${"%.2f".format((System.nanoTime() - t0) / 1e9)} s)")
                e.printStackTrace(System.out)
            }
            System.out.flush()
        }
        return Triple(passed, failed, skipped)
    }
}

/** This run's temporary directory, removed at exit. */
object Tmp {
    private val dir: File = Files.createTempDirectory("gridsync-kt-").toFile()
    private var counter = 0

    init {
        Runtime.getRuntime().addShutdownHook(Thread { dir.deleteRecursively() })
    }

    /** A fresh file path. */
    @Synchronized
    fun path(name: String): String {
        counter++
        return File(dir, "%03d-%s".format(counter, name)).path
    }

    /** A fresh directory. */
    fun newDir(name: String): File = File(path(name)).also { it.mkdirs() }
}

// ---- valid test data ----

/** A valid 18-digit resident ID number (GB 11643 check digit), born 1980-01-01. */
fun idNumber(serial: Int): String {
    val body = "15252219800101" + "%03d".format(serial % 1000)
    val weights = intArrayOf(7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    val sum = body.mapIndexed { i, c -> (c - '0') * weights[i] }.sum()
    return body + "10X98765432"[sum % 11]
}

/** A valid 11-digit mobile number. */
fun mobile(serial: Int): String = "139" + "%08d".format(serial % 100_000_000)

/** A valid household producer for `grid`. */
fun newProducer(grid: String, serial: Int, name: String = "乌力吉家庭牧场", phone: String = mobile(serial)) =
    NewProducer(
        name = name,
        producerType = ProducerType.FAMILY_RANCH,
        owner = "乌力吉",
        phone = phone,
        grid = grid,
        idNumber = idNumber(serial),
        address = "别力古台镇宝力根嘎查",
        products = listOf("羊肉"),
        scale = Scale(livestock = listOf(LivestockEntry(Species.SHEEP_GOAT, onHand = 320u, soldPerYear = 150u))),
        risk = RiskLevel.HIGH,
    )

/** A "yes" answer. */
fun yes(note: String? = null) = Answer(AnswerValue.YesNo(YesNoNa.YES), note)

/** Answers for every required item of a template (yes/no items and text items). */
fun fullAnswers(t: ChecklistTemplate): Map<String, Answer> =
    t.items.filter { it.required }.associate { item ->
        item.id to when (item.answer) {
            is AnswerType.YesNoNa -> yes()
            is AnswerType.Text -> Answer(AnswerValue.Text("无"), null)
            else -> throw Failure("unexpected required item type ${item.answer}")
        }
    }

// ---- an offline device ----

const val VILLAGE = "T152522101201"
const val VILLAGE2 = "T152522101202"
const val TOWNSHIP = "T152522101"

/** A small grid tree: region → league → banner → township → two villages. */
fun offlineGrids(): List<GridNode> = listOf(
    GridNode("T15", "内蒙古自治区", GridLevel.REGION, GridKind.MIXED, null),
    GridNode("T1525", "锡林郭勒盟", GridLevel.LEAGUE, GridKind.PASTORAL, "T15"),
    GridNode("T152522", "阿巴嘎旗", GridLevel.BANNER, GridKind.PASTORAL, "T1525"),
    GridNode(TOWNSHIP, "别力古台镇", GridLevel.TOWNSHIP, GridKind.PASTORAL, "T152522"),
    GridNode(VILLAGE, "宝力根嘎查", GridLevel.VILLAGE, GridKind.PASTORAL, TOWNSHIP),
    GridNode(VILLAGE2, "吉日嘎郎图嘎查", GridLevel.VILLAGE, GridKind.PASTORAL, TOWNSHIP),
)

val LIAISON = Person("p-liaison", "巴特尔", "13900000001", Role.LIAISON, listOf(VILLAGE))
val SUPERVISOR = Person("p-super", "其其格", "13900000002", Role.SUPERVISOR, listOf(TOWNSHIP))

/** A store with the test grid tree and a person set up, never enrolled. */
fun offlineStore(person: Person = LIAISON, path: String = Tmp.path("offline.db")): GridStore {
    val store = GridStore.open(path)
    store.upsertGrids(offlineGrids())
    store.setProfile(person)
    return store
}

// ---- a real server on loopback ----

/** `gridsync-server serve --demo` on 127.0.0.1 with a fresh data directory. */
class Server(private val binary: String) {
    /** Base URL, from the `listening on` line. */
    val url: String
    /** Demo person id by role, from the enrolment-code lines. */
    val people = mutableMapOf<String, String>()
    /** Demo enrolment code by role. */
    val codes = mutableMapOf<String, String>()
    /** Enrolled stores by device name, shared between tests (10 enrolments/min/address). */
    val devices = mutableMapOf<String, GridStore>()
    private val data: File = Tmp.newDir("server")
    private val process: Process

    init {
        val listen = Regex("^listening on (http://\\S+)$")
        val code = Regex("^enrolment code for (\\w+) (\\S+) \\((.*)\\): (\\S+)$")
        process = ProcessBuilder(binary, "serve", "--data", data.path, "--listen", "127.0.0.1:0", "--demo")
            .redirectError(File(data, "server.log"))
            .start()
        val out = BufferedReader(InputStreamReader(process.inputStream, Charsets.UTF_8))
        var found: String? = null
        while (found == null) {
            val line = out.readLine() ?: throw Failure("server exited before listening: ${log()}")
            code.find(line.trim())?.let {
                people[it.groupValues[1]] = it.groupValues[2]
                codes[it.groupValues[1]] = it.groupValues[4]
            }
            listen.find(line.trim())?.let { found = it.groupValues[1] }
        }
        url = found!!
        // Keep draining stdout so the server never blocks on a full pipe.
        Thread { out.readText() }.apply { isDaemon = true }.start()
    }

    private fun log(): String = File(data, "server.log").let { if (it.exists()) it.readText().takeLast(2000) else "" }

    /** Runs `gridsync-server admin --data DIR args` and returns its stdout lines. */
    fun admin(vararg args: String): List<String> {
        val p = ProcessBuilder(binary, "admin", "--data", data.path, *args).redirectErrorStream(false).start()
        val out = p.inputStream.bufferedReader().readText()
        val err = p.errorStream.bufferedReader().readText()
        expect(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0) { "admin ${args.toList()} failed: $err" }
        return out.lines().filter { it.isNotBlank() }
    }

    /** A fresh one-time enrolment code for the demo person of `role`. */
    fun issueCode(role: String): String = admin("issue-code", "--person", people.getValue(role)).last().trim()

    /** The store of device `name`, enrolled as the demo person of `role` on first use, synced. */
    fun device(role: String, name: String): GridStore {
        val store = devices.getOrPut(name) {
            GridStore.open(Tmp.path("$name.db")).also { it.enroll(url, issueCode(role), name) }
        }
        expectEq(store.profile()?.id, people.getValue(role), "person of device $name")
        store.sync()
        return store
    }

    /** Stops the server (SIGTERM, then SIGKILL after 10 s). */
    fun stop() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
    }

    companion object {
        private var shared: Server? = null

        /** The binary from GRIDSYNC_SERVER, or null. */
        fun binary(): String? = System.getenv("GRIDSYNC_SERVER")?.takeIf { File(it).canExecute() }

        /** The shared server of this run, started on first use. */
        @Synchronized
        fun get(): Server {
            shared?.let { return it }
            val bin = binary()
                ?: if (System.getenv("GRIDSYNC_SKIP_SERVER") == "1") throw Skipped("gridsync-server is not built")
                else throw Failure("set GRIDSYNC_SERVER to the gridsync-server binary")
            return Server(bin).also { shared = it }
        }

        /** Stops the shared server if it was started. */
        fun stopShared() {
            shared?.stop()
            shared = null
        }
    }
}
