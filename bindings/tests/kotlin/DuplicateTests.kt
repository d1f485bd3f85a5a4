// Checks before saving, through the Kotlin bindings: likely duplicates in the local copy
// (credit code, phone, similar names in neighbouring grids) and the livestock scale
// assessment. No server, a real SQLite file.
package gridsync.tests

import org.gridsync.*

private const val USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY"
private val USCC_WEIGHTS = intArrayOf(1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

/** A valid unified social credit code (GB 32100 check character) of a cooperative. */
fun creditCode(serial: Int): String {
    val body = "93152522MA" + "%07d".format(serial)
    val sum = body.mapIndexed { i, c -> USCC.indexOf(c) * USCC_WEIGHTS[i] }.sum()
    return body + USCC[(31 - sum % 31) % 31]
}

/** A cooperative (credit code, no ID number) for `grid`. */
fun cooperative(grid: String, name: String, serial: Int, code: String = creditCode(serial), phone: String = mobile(serial)) =
    newProducer(grid, serial, name = name, phone = phone).copy(
        producerType = ProducerType.COOPERATIVE,
        creditCode = code,
        idNumber = null,
    )

fun duplicateTests() = Suite("duplicates").apply {
    test("likely duplicates are shown before saving") {
        val store = offlineStore(SUPERVISOR) // the township: both villages
        val a = store.createProducer(cooperative(VILLAGE, "阿巴嘎旗浩日沁牧业专业合作社", 601))

        // The same credit code (typed in lower case), another name, the neighbouring village.
        var m = store.likelyDuplicatesOfNew(cooperative(VILLAGE2, "草原红牧业合作社", 602, code = creditCode(601).lowercase()))
        expectEq(m.map { it.id }, listOf(a.id), "same credit code")
        expectEq(Triple(m[0].name, m[0].grid, m[0].gridName), Triple("阿巴嘎旗浩日沁牧业专业合作社", VILLAGE, "宝力根嘎查"), "the other entry")
        expectEq(m[0].reasons, listOf(DuplicateReason("credit_code", "统一社会信用代码相同")), "reason")
        expectEq(m[0].score, 95.toUByte(), "score")

        // A similar name in the neighbouring village.
        m = store.likelyDuplicatesOfNew(cooperative(VILLAGE2, "浩日沁牧业合作社", 603))
        expectEq(m.map { it.id }, listOf(a.id), "similar name")
        expectEq(m[0].reasons.map { it.id }, listOf("same_name"), "reason id")
        expectEq(m[0].reasons[0].labelZh, "名称相同（同一或相邻网格）", "reason label")

        // The same phone with +86.
        m = store.likelyDuplicatesOfNew(cooperative(VILLAGE2, "额尔敦养殖合作社", 604, phone = "+86 " + a.phone))
        expectEq(m.map { it.reasons.map { r -> r.id } }, listOf(listOf("phone")), "same phone")

        // Unrelated: nothing; the stored entry is not its own duplicate.
        expect(store.likelyDuplicatesOfNew(cooperative(VILLAGE2, "额尔敦养殖合作社", 605)).isEmpty()) { "unrelated" }
        expect(store.likelyDuplicates(a).isEmpty()) { "itself" }
        expectEq(store.counts().producers, 1L, "checking writes nothing")
    }

    test("scale assessment by the national thresholds") {
        val store = offlineStore()
        fun sheep(sold: UInt) = Scale(livestock = listOf(LivestockEntry(Species.SHEEP_GOAT, onHand = 300u, soldPerYear = sold)))
        val below = store.createProducer(newProducer(VILLAGE, 611).copy(scale = sheep(199u)))
        val at = store.createProducer(newProducer(VILLAGE, 612).copy(scale = sheep(200u)))
        expect(!store.scaleAssessment(below.id).isScaleFarm) { "199 sold is below 200" }
        val a = store.scaleAssessment(at.id)
        expect(a.isScaleFarm && !a.typeMismatch) { "$a" }
        expectEq(a.summaryZh, "规模养殖场（羊 200 年出栏≥200）", "summary")
        val mismatch = assessScale(at.copy(producerType = ProducerType.SMALL_HOUSEHOLD))
        expect(mismatch.typeMismatch) { "a small household with a scale herd: $mismatch" }
        expectThrows<ApiException.NotFound> { store.scaleAssessment("no-such-producer") }
    }
}
