// Liaison scenarios against a real gridsync-server on loopback (`serve --demo`).
package gridsync.tests

import java.util.Collections
import org.gridsync.*

/** Keeps every progress report. */
class Recorder : SyncListener {
    val reports: MutableList<SyncProgress> = Collections.synchronizedList(mutableListOf())
    override fun onProgress(progress: SyncProgress) {
        reports.add(progress)
    }
}

fun serverTests() = Suite("server").apply {
    test("liaison day: enrol, record offline, sync, second device sees it, typed validation error") {
        val s = Server.get()
        expect(s.codes.keys.containsAll(listOf("liaison", "supervisor"))) { "demo codes: ${s.codes}" }
        val a = GridStore.open(Tmp.path("kt-liaison-a.db"))
        val me = a.enroll(s.url, s.codes.getValue("liaison"), "巴特尔的手机")
        expectEq(me.id, s.people["liaison"], "enrolled person")
        expectEq(me.role, Role.LIAISON, "role")
        expect(a.isEnrolled()) { "enrolled" }
        val first = Recorder()
        a.sync(first, SyncHandle())
        expect(first.reports.isNotEmpty() && !first.reports.last().more) { "progress reported" }
        val grid = me.grids.first()
        expect(a.grids().any { it.code == grid }) { "reference data arrived" }

        // Offline: a producer and a completed patrol with a rapid test and a rectification.
        val p = a.createProducer(newProducer(grid, 701, name = "萨仁家庭牧场"))
        val t = a.defaultTemplate()
        var v = a.createVisit(
            NewVisit(
                producerId = p.id,
                answers = fullAnswers(t),
                rapidTests = listOf(NewRapidTest("羊尿", "克伦特罗", TestMethod.COLLOIDAL_GOLD, Verdict.PASS)),
                rectification = NewRectification("2030-06-30", "阿农整〔2030〕9号"),
            ),
        )
        v = a.completeVisit(v.id)
        expectEq(a.counts().unsynced, 2L, "unsynced before sync")
        val rec = Recorder()
        val report = a.sync(rec)
        expectEq(report.pushed, 2u, "pushed")
        expect(report.rejected.isEmpty()) { "rejected: ${report.rejected}" }
        expectEq(rec.reports.last().pushed, 2u, "progress pushed")
        expectEq(a.counts().unsynced, 0L, "unsynced after sync")

        val b = GridStore.open(Tmp.path("kt-liaison-b.db"))
        b.enroll(s.url, s.issueCode("liaison"), "备用手机")
        s.devices["liaison-a"] = a
        s.devices["liaison-b"] = b
        b.sync()
        expectEq(b.producer(p.id), a.producer(p.id), "producer on the second device")
        expectEq(b.visit(v.id), a.visit(v.id), "visit on the second device")
        expectEq(b.openRectifications("2000-01-01").map { it.visitId }.contains(v.id), true, "rectification")

        val before = b.counts()
        val e = expectThrows<ApiException.Invalid> { b.createProducer(newProducer(grid, 702, phone = "1380013800")) }
        expectEq(e.field, "phone", "field")
        expectEq(b.counts(), before, "nothing written")
    }

    test("two devices edit different fields of one producer offline; both edits survive") {
        val s = Server.get()
        val a = s.device("liaison", "liaison-a")
        val b = s.device("liaison", "liaison-b")
        val grid = a.profile()!!.grids.first()
        val p = a.createProducer(newProducer(grid, 711, name = "合并测试牧场"))
        a.sync()
        b.sync()
        a.updateProducer(a.producer(p.id).copy(phone = mobile(7777)))
        b.updateProducer(b.producer(p.id).copy(address = "宝力根嘎查六组"))
        a.sync()
        b.sync()
        a.sync()
        for (store in listOf(a, b)) {
            val q = store.producer(p.id)
            expectEq(q.phone, mobile(7777), "phone")
            expectEq(q.address, "宝力根嘎查六组", "address")
            expect(store.conflicts(p.id).isEmpty()) { "no conflict for different fields" }
        }
        expectEq(a.producer(p.id), b.producer(p.id), "same record on both")
    }

    test("cancel through SyncHandle; a throwing listener ends the sync with Internal") {
        val s = Server.get()
        val a = s.device("liaison", "liaison-b")
        a.createProducer(newProducer(a.profile()!!.grids.first(), 721, name = "取消牧场"))
        val handle = SyncHandle()
        handle.cancel()
        expect(handle.isCancelled()) { "cancelled" }
        expectThrows<ApiException.Cancelled> { a.sync(Recorder(), handle) }
        expectEq(a.counts().unsynced, 1L, "edit still waits")
        val bad = object : SyncListener {
            override fun onProgress(progress: SyncProgress): Unit = throw IllegalStateException("listener bug")
        }
        expectThrows<ApiException.Internal> { a.sync(bad) }
        a.sync()
        expectEq(a.counts().unsynced, 0L, "synced after the failure")
    }

    test("attachment round trip: a budget, a resumed upload, a download on another phone") {
        val s = Server.get()
        val a = GridStore.open(Tmp.path("kt-photos-a.db"))
        val me = a.enroll(s.url, s.issueCode("liaison"), "拍照手机")
        a.sync()
        val p = a.createProducer(newProducer(me.grids.first(), 741, name = "其其格家庭牧场"))
        val photo = jpeg(600_000, 7)
        val ref = a.addAttachment(photo)
        a.createVisit(
            NewVisit(
                producerId = p.id,
                answers = emptyMap(),
                findings = listOf(NewFinding("兽药与饲料混放", Severity.MAJOR, photos = listOf(ref))),
            ),
        )
        val rec = Recorder()
        var report = a.sync(rec, null, SyncOptions(attachmentBudgetBytes = 300_000uL, attachmentChunkBytes = 100_000u))
        expectEq(report.pushed, 2u, "records first")
        expectEq(report.attachmentBytesUp, 300_000uL, "budget")
        expectEq(report.attachmentsLeft, 1u, "left")
        expectEq(rec.reports.last().attachmentBytesUp, 300_000uL, "progress")
        expectEq(a.pendingAttachments().single().serverOffset, 300_000uL, "offset kept")
        report = a.sync(null, null, SyncOptions(attachmentChunkBytes = 100_000u))
        expectEq(report.attachmentBytesUp, 300_000uL, "only the rest sent")
        expectEq(report.attachmentsCompleted, 1u, "completed")
        expectEq(a.attachments().map { it.state }, listOf(AttachmentState.UPLOADED), "uploaded")

        val b = GridStore.open(Tmp.path("kt-photos-b.db"))
        b.enroll(s.url, s.issueCode("liaison"), "另一部手机")
        b.sync()
        expectThrows<ApiException.NotFound> { b.attachment(ref) }
        expect(b.fetchAttachment(ref).contentEquals(photo)) { "downloaded" }
        expectEq(b.attachments().map { it.state }, listOf(AttachmentState.CACHED), "cached")
    }

    test("a revoked device's sync fails with ApiException.Server, code DEVICE_REVOKED") {
        val s = Server.get()
        val a = GridStore.open(Tmp.path("kt-revoked.db"))
        val me = a.enroll(s.url, s.issueCode("liaison"), "kt-revoked")
        a.sync()
        val p = a.createProducer(newProducer(me.grids.first(), 751, name = "吊销前登记"))
        // `admin list-devices` lines: id, person, name, state, two spaces apart.
        val id = s.admin("list-devices").map { it.split("  ") }.single { it.size >= 3 && it[2] == "kt-revoked" }[0]
        s.admin("revoke-device", "--device", id, "--reason", "reported lost")
        val e = expectThrows<ApiException.Server> { a.sync() }
        expectEq(e.status, 401.toUShort(), "status")
        // The app decides on the typed code, never on the text.
        expectEq(e.code, ServerErrorCode.DEVICE_REVOKED, "code")
        expect(e.detail.contains("reported lost")) { e.detail }
        expect(!a.isEnrolled()) { "the server link is removed" }
        expectEq(a.keptEdits().map { it.id }, listOf(p.id), "the unsynced edit is kept")
    }
}
