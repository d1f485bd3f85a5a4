// Runs the Kotlin binding tests: `java ... gridsync.tests.MainKt [filter]`.
// Prints one line per test and `kotlin: N passed, M failed`; exits 1 on any failure.
package gridsync.tests

import kotlin.system.exitProcess

fun main(args: Array<String>) {
    val filter = args.firstOrNull() ?: ""
    val started = System.nanoTime()
    var passed = 0
    var failed = 0
    var skipped = 0
    try {
        for (suite in listOf(localTests(), duplicateTests(), serverTests(), concurrencyTests(), asyncTests(), observerTests())) {
            val (p, f, s) = suite.run(filter)
            passed += p
            failed += f
            skipped += s
        }
    } finally {
        Server.stopShared()
    }
    println("kotlin tests took ${"%.1f".format((System.nanoTime() - started) / 1e9)} s")
    println("kotlin: $passed passed, $failed failed" + if (skipped > 0) ", $skipped skipped" else "")
    exitProcess(if (failed == 0) 0 else 1)
}
