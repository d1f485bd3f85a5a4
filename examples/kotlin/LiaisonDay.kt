// A village liaison's day through the Kotlin bindings, against a real gridsync server:
// enrol the phone, register a producer, patrol it with the daily checklist, record a rapid
// test and a rectification notice, sync, and print what is due next.
//
// Run (after bindings/generate.sh):  see bindings/run-tests.sh, or
//   java -Djna.library.path=<dir of libgridsync.so> -cp <jar>:<kotlin-stdlib>:<coroutines>:jna.jar \
//        gridsync.examples.LiaisonDayKt http://127.0.0.1:8080 <ENROLMENT-CODE> [store.db]
package gridsync.examples

import java.io.File
import java.time.Instant
import java.time.LocalDate
import java.time.ZoneId
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import org.gridsync.*

fun main(args: Array<String>) {
    require(args.size >= 2) { "usage: LiaisonDay SERVER_URL ENROLMENT_CODE [STORE_FILE]" }
    val (serverUrl, code) = args
    val dbPath = args.getOrNull(2) ?: File.createTempFile("liaison-day-", ".db").also { it.delete() }.path

    // Every store call blocks: an app makes them on Dispatchers.IO, never on the main thread.
    runBlocking {
        withContext(Dispatchers.IO) { liaisonDay(serverUrl, code, dbPath) }
    }
}

private fun liaisonDay(serverUrl: String, code: String, dbPath: String) {
    val store = GridStore.open(dbPath)

    // 1. Morning: enrol the phone with the code from the township office, then sync.
    val me = store.enroll(serverUrl, code, "LiaisonDay 示例手机")
    println("enrolled as ${me.name} (${me.role}), grids ${me.grids}")
    val first = store.sync(ProgressPrinter("first sync"))
    println("first sync: ${first.pulled} records pulled in ${first.roundTrips} round trip(s)")
    val village = me.grids.first()
    val villageName = store.grids().firstOrNull { it.code == village }?.name ?: village

    // 2. Out in the pasture (offline): register a new family ranch.
    val ranch = store.createProducer(
        NewProducer(
            name = "额尔敦家庭牧场",
            producerType = ProducerType.FAMILY_RANCH,
            owner = "额尔敦",
            phone = "13947900001",
            grid = village,
            idNumber = "152522198001010013",
            address = "$villageName 二组",
            products = listOf("羊肉", "牛肉"),
            scale = Scale(
                livestock = listOf(
                    LivestockEntry(Species.SHEEP_GOAT, onHand = 460u, soldPerYear = 210u),
                    LivestockEntry(Species.BEEF_CATTLE, onHand = 35u, soldPerYear = 12u),
                ),
            ),
            risk = RiskLevel.HIGH,
        ),
    )
    println("registered ${ranch.name} in $villageName (review: ${ranch.review.state})")
    store.reviewProducer(ranch.id, ReviewStep.Submit)

    // 3. Patrol with the default daily checklist: answer every item that applies.
    val checklist = store.defaultTemplate()
    println("checklist: ${checklist.nameZh}, ${checklist.items.size} items")
    val answers = checklist.items.filter { it.required }.associate { item ->
        item.id to when (item.answer) {
            is AnswerType.YesNoNa ->
                if (item.id == "drug_use") Answer(AnswerValue.YesNo(YesNoNa.NO), "休药期记录缺失")
                else Answer(AnswerValue.YesNo(YesNoNa.YES), null)
            is AnswerType.Text -> Answer(AnswerValue.Text("羊圈卫生良好"), null)
            else -> Answer(AnswerValue.Photos(emptyList()), null)
        }
    }
    var visit = store.createVisit(
        NewVisit(
            producerId = ranch.id,
            answers = answers,
            location = GeoPoint(lat = 44.02, lon = 114.95),
            findings = listOf(NewFinding("兽药使用记录未记录休药期", Severity.MAJOR, itemId = "drug_use")),
        ),
    )

    // 4. A rapid test for clenbuterol on a urine sample, and a rectification notice.
    visit = store.addRapidTest(
        visit.id,
        NewRapidTest("羊尿", "克伦特罗", TestMethod.COLLOIDAL_GOLD, Verdict.PASS, kit = "瘦肉精三联检测卡"),
    )
    visit = store.orderRectification(visit.id, NewRectification("2030-06-30", "阿农整〔2030〕12号"))
    visit = store.completeVisit(visit.id)
    println("patrol completed: ${visit.answers.size} answers, ${visit.findings.size} finding(s), " +
        "rapid test ${visit.rapidTests.first().item} -> ${visit.rapidTests.first().verdict}")
    println("waiting to sync: ${store.counts().unsynced} record(s)")

    // 5. Back in coverage: sync.
    val report = store.sync(ProgressPrinter("evening sync"))
    check(report.rejected.isEmpty()) { "the server refused: ${report.rejected}" }
    println("evening sync: pushed ${report.pushed}, pulled ${report.pulled}, ${report.bytesUp} bytes up")
    check(store.counts().unsynced == 0L) { "everything should be synced" }

    // 6. Tomorrow's plan.
    val due = store.duePatrols(village)
    println("due patrols in $villageName: ${due.size}")
    for (d in due.take(5)) {
        val last = d.producer.lastVisitMs?.let { "last visit ${chinaDate(it)}" } ?: "never visited"
        println("  ${d.producer.name} (${d.producer.risk}, every ${d.intervalDays} d): ${d.daysOverdue} d overdue, $last")
    }
    for (r in store.openRectifications()) {
        println("open rectification ${r.noticeNumber} at ${r.producerName}, due ${r.deadline}")
    }
    println("liaison day done")
}

/** The date in China Standard Time of a timestamp in ms. */
private fun chinaDate(ms: Long): LocalDate = Instant.ofEpochMilli(ms).atZone(ZoneId.of("Asia/Shanghai")).toLocalDate()

/** Prints sync progress (called on the syncing thread). */
private class ProgressPrinter(private val label: String) : SyncListener {
    override fun onProgress(progress: SyncProgress) {
        println("  $label: round trip ${progress.roundTrips}, pushed ${progress.pushed}, pulled ${progress.pulled}")
    }
}
