// Local-store scenarios through the Kotlin bindings: no server, a real SQLite file.
package gridsync.tests

import org.gridsync.*

fun localTests() = Suite("local").apply {
    test("producer create, read, update, list and search") {
        val path = Tmp.path("kt-producers.db")
        val store = offlineStore(path = path)
        val a = store.createProducer(newProducer(VILLAGE, 11, name = "乌力吉家庭牧场"))
        val b = store.createProducer(newProducer(VILLAGE, 12, name = "阿拉坦家庭牧场"))
        expectEq(a.review.state, ReviewState.DRAFT, "review state")
        expectEq(a.createdBy, "p-liaison", "created by")
        expectEq(a.scale.livestock.single().onHand, 320u, "sheep on hand")
        expectEq(store.producer(a.id), a, "read back")

        val edited = store.updateProducer(a.copy(address = "宝力根嘎查三组"))
        expectEq(edited.address, "宝力根嘎查三组", "address")
        expectEq(GridStore.open(path).producer(a.id).address, "宝力根嘎查三组", "address after reopening")

        val page = store.producersInGrid(TOWNSHIP, ProducerSort.NAME, 1u, 0u) +
            store.producersInGrid(TOWNSHIP, ProducerSort.NAME, 1u, 1u)
        expectEq(page.map { it.name }.toSet(), setOf("乌力吉家庭牧场", "阿拉坦家庭牧场"), "two pages")
        expectEq(page.map { it.riskLevel() }, listOf(RiskLevel.HIGH, RiskLevel.HIGH), "typed risk")
        expectEq(store.searchProducers("阿拉坦", 10u).map { it.id }, listOf(b.id), "search by name")
        expectEq(store.searchProducers("乌力吉", 10u).size, 2, "search by owner")
        expect(store.producersInGrid(VILLAGE2, ProducerSort.NAME, 10u, 0u).isEmpty()) { "other village is empty" }
    }

    test("validation error is a typed exception naming the field") {
        val store = offlineStore()
        val before = store.counts()
        val e = expectThrows<ApiException.Invalid> { store.createProducer(newProducer(VILLAGE, 21, phone = "12345")) }
        expectEq(e.field, "phone", "field")
        expect("12345" !in (e.message ?: "")) { "the error must not echo what was typed" }
        val f = expectThrows<ApiException.Forbidden> { store.createProducer(newProducer(VILLAGE2, 22)) }
        expect(f.reason.contains(VILLAGE2)) { f.reason }
        expectEq(store.counts(), before, "nothing written")
    }

    test("review chain: submit, return, edit, resubmit, approve") {
        val store = offlineStore()
        var p = store.createProducer(newProducer(VILLAGE, 31))
        p = store.reviewProducer(p.id, ReviewStep.Submit)
        expectEq(p.review.state, ReviewState.SUBMITTED, "after submit")
        expectThrows<ApiException.Forbidden> { store.reviewProducer(p.id, ReviewStep.ApproveTownship) }
        store.setProfile(SUPERVISOR)
        p = store.reviewProducer(p.id, ReviewStep.Return("身份证号待核实"))
        expectEq(p.review.state, ReviewState.RETURNED, "after return")
        expectEq(p.review.returnReason, "身份证号待核实", "reason")
        store.setProfile(LIAISON)
        p = store.updateProducer(p.copy(owner = "乌力吉巴特尔"))
        expectEq(p.review.state, ReviewState.DRAFT, "an edit of a returned entry goes back to draft")
        p = store.reviewProducer(p.id, ReviewStep.Submit)
        store.setProfile(SUPERVISOR)
        p = store.reviewProducer(p.id, ReviewStep.ApproveTownship)
        expectEq(p.review.state, ReviewState.TOWNSHIP_APPROVED, "after township approval")
        val w = expectThrows<ApiException.Workflow> { store.reviewProducer(p.id, ReviewStep.Submit) }
        expect(w.reason.contains("township_approved")) { w.reason }
        expectEq(
            p.review.history.map { it.by },
            listOf("p-liaison", "p-super", "p-liaison", "p-liaison", "p-super"),
            "who",
        )
        expect(p.review.history[1].action == ReviewAction.Return("身份证号待核实")) { "second step is the return" }
        expect(p.review.history[2].action is ReviewAction.EditedAfterReturn) { "third step is the edit" }
    }

    test("visit with answers, findings, rapid test, rectification, completion and follow-up") {
        val store = offlineStore()
        val p = store.createProducer(newProducer(VILLAGE, 41))
        val t = store.defaultTemplate()
        expectEq(t.templateId, "moa-daily-patrol", "default template")
        expectEq(t.items.count { it.required }, 7, "required items")
        var v = store.createVisit(
            NewVisit(
                producerId = p.id,
                answers = mapOf("production_records" to yes()),
                findings = listOf(NewFinding("兽药使用记录不全", Severity.MAJOR, itemId = "drug_use")),
                rapidTests = listOf(NewRapidTest("羊尿", "克伦特罗", TestMethod.COLLOIDAL_GOLD, Verdict.PASS)),
                rectification = NewRectification("2030-06-30", "阿农整〔2030〕2号"),
            ),
        )
        expectEq(v.status, VisitStatus.DRAFT, "status")
        val missing = expectThrows<ApiException.Invalid> { store.completeVisit(v.id) }
        expect(missing.field.startsWith("answers.")) { missing.field }
        for ((item, answer) in fullAnswers(t)) v = store.setAnswer(v.id, item, answer)
        v = store.addRapidTest(v.id, NewRapidTest("羊肉", "磺胺类", TestMethod.OTHER, Verdict.SUSPECT, value = 0.8, unit = "μg/kg"))
        v = store.completeVisit(v.id)
        expectEq(v.status, VisitStatus.COMPLETED, "completed")
        expectEq(v.rapidTests.map { it.verdict }, listOf(Verdict.PASS, Verdict.SUSPECT), "tests")
        expectEq(store.openRectifications("2030-01-01").map { it.visitId }, listOf(v.id), "open rectification")

        val f = store.completeVisit(store.createVisit(NewVisit(p.id, fullAnswers(t), followUpOf = v.id)).id)
        v = store.addFollowUp(v.id, f.id, true)
        expectEq(v.followUpVisit, f.id, "follow-up link")
        expect(store.openRectifications("2030-01-01").isEmpty()) { "resolved" }
        expectEq(store.visitHistory(p.id).map { it.id }.toSet(), setOf(v.id, f.id), "history")
    }

    test("due patrols, counts, not-enrolled and not-found errors") {
        val store = offlineStore()
        val p = store.createProducer(newProducer(VILLAGE, 51))
        expectEq(store.duePatrols(TOWNSHIP).map { it.producer.id }, listOf(p.id), "never visited is due")
        val c = store.counts()
        expectEq(listOf(c.producers, c.visits, c.unsynced, c.rejected), listOf(1L, 0L, 1L, 0L), "counts")
        expectThrows<ApiException.NotEnrolled> { store.sync() }
        expectThrows<ApiException.NotFound> { store.visit("no-such-visit") }
        val blank = GridStore.open(Tmp.path("kt-blank.db"))
        expectThrows<ApiException.NotEnrolled> { blank.createProducer(newProducer(VILLAGE, 52)) }
        expect(store.keptEdits().isEmpty() && store.rejectedEdits().isEmpty()) { "nothing rejected or kept" }
    }

    test("a panic becomes ApiException.Internal and the process lives on") {
        val store = offlineStore()
        repeat(3) { i ->
            val e = expectThrows<ApiException.Internal> { testingPanic("kotlin boom $i") }
            expect(e.detail.contains("kotlin boom $i")) { e.detail }
        }
        store.createProducer(newProducer(VILLAGE, 61))
        expectEq(store.counts().producers, 1L, "still working")
        expect(gridsyncVersion().isNotEmpty()) { "version" }
    }

    test("attachments: add, read, list, and a record naming one the phone lacks is refused") {
        val path = Tmp.path("kt-attachments.db")
        val store = offlineStore(path = path)
        val p = store.createProducer(newProducer(VILLAGE, 71))
        val photo = jpeg(5000, 1)
        val ref = store.addAttachment(photo, "image/jpeg")
        expect(ref.startsWith("att:") && ref.endsWith(":5000:image/jpeg")) { ref }
        expectEq(store.addAttachment(photo), ref, "the same bytes are one attachment")
        val file = java.io.File(Tmp.path("kt-signature.jpg")).apply { writeBytes(jpeg(700, 2)) }
        val sig = store.addAttachmentFile(file.path)
        val sha = ref.split(":")[1]
        expect(store.attachment(sha).contentEquals(photo)) { "read back by hash" }
        expect(store.attachment(ref).contentEquals(photo)) { "read back by reference" }
        expectEq(store.attachments().map { it.reference }, listOf(ref, sig), "listed oldest first")
        expect(store.pendingAttachments().all { it.state == AttachmentState.PENDING && !it.referenced }) { "pending" }
        val v = store.createVisit(
            NewVisit(
                producerId = p.id,
                answers = emptyMap(),
                findings = listOf(NewFinding("饲料间存放兽药", Severity.MINOR, photos = listOf(ref))),
            ),
        )
        expectEq(v.findings.single().photos, listOf(ref), "the reference is in the visit")
        val absent = "att:" + "a".repeat(64) + ":10:image/jpeg"
        val e = expectThrows<ApiException.Invalid> {
            store.addFinding(v.id, NewFinding("证照未公示", Severity.MINOR, photos = listOf(absent)))
        }
        expectEq(e.field, "findings[1].photos[0]", "field of the unknown reference")
        expectEq(expectThrows<ApiException.Invalid> { store.addAttachment("<html>".toByteArray()) }.field, "attachment", "field")
        expectEq(expectThrows<ApiException.NotFound> { store.attachment("b".repeat(64)) }.what, "attachment", "what")
        expectEq(GridStore.open(path).attachments().size, 2, "after reopening")
    }
}

/** A JPEG-looking blob of `n` bytes (the type is read from the first bytes). */
fun jpeg(n: Int, seed: Int): ByteArray =
    byteArrayOf(0xFF.toByte(), 0xD8.toByte(), 0xFF.toByte(), 0xE0.toByte()) +
        ByteArray(n - 4) { i -> ((i * 31 + seed) % 256).toByte() }

/** The typed risk of a summary row (a check that enums cross as enums, not strings). */
private fun ProducerSummary.riskLevel(): RiskLevel = risk
