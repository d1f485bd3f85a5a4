"""Liaison scenarios against a real gridsync-server on loopback (`serve --demo`)."""

import json
import threading

from harness import (
    expect_error, full_answers, g, mobile, new_producer, server, tmp_path, yes,
)


class Recorder(g.SyncListener):
    """A sync listener that keeps every progress report."""

    def __init__(self):
        self.reports = []

    def on_progress(self, progress):
        self.reports.append(progress)


class Exploding(g.SyncListener):
    """A sync listener that throws: the sync must end with ApiError.Internal."""

    def on_progress(self, progress):
        raise ValueError("listener bug")


def test_liaison_day_two_devices():
    s = server()
    assert {"liaison", "supervisor"} <= set(s.codes), s.codes
    a = g.GridStore.open(tmp_path("liaison-a.db"))
    me = a.enroll(s.url, s.codes["liaison"], "巴特尔的手机")
    assert me.id == s.people["liaison"] and me.role == g.Role.LIAISON and me.grids
    assert a.is_enrolled() and a.server_url() == s.url and a.profile() == me
    rec = Recorder()
    report = a.sync(rec, g.SyncHandle())
    assert report.round_trips >= 1 and rec.reports and rec.reports[-1].more is False
    assert me.grids[0] in {n.code for n in a.grids()}, "reference data arrived"

    # Offline: register a producer and record a full patrol.
    grid = me.grids[0]
    p = a.create_producer(new_producer(grid, serial=101, name="乌日娜家庭牧场"))
    t = a.default_template()
    v = a.create_visit(g.NewVisit(
        producer_id=p.id,
        answers=full_answers(t),
        findings=[g.NewFinding(description="休药期记录缺失", severity=g.Severity.MAJOR, item_id="drug_use")],
        rapid_tests=[g.NewRapidTest(sample="羊尿", item="克伦特罗", method=g.TestMethod.COLLOIDAL_GOLD,
                                    verdict=g.Verdict.PASS)],
        rectification=g.NewRectification(deadline="2030-06-30", notice_number="阿农整〔2030〕7号"),
    ))
    v = a.complete_visit(v.id)
    assert a.counts().unsynced == 2

    rec = Recorder()
    report = a.sync(rec, None)
    assert report.pushed == 2 and report.rejected == [], report
    assert report.bytes_up > 0 and report.bytes_down > 0
    assert report.protocol == 4, report  # zstd bodies with the records dictionary
    assert rec.reports[-1].pushed == 2
    assert a.counts().unsynced == 0

    # A second device of the same liaison sees it all.
    b = g.GridStore.open(tmp_path("liaison-b.db"))
    b.enroll(s.url, s.issue_code("liaison"), "备用手机")
    s.devices.update({"liaison-a": a, "liaison-b": b})
    report = b.sync(None, None)
    assert report.pulled >= 2
    # Its whole documents came bare and rebuilt to the server's heads at the first try.
    assert report.digest_retries == 0, report
    assert b.producer(p.id) == a.producer(p.id)
    assert b.visit(v.id) == a.visit(v.id)
    assert [h.id for h in b.visit_history(p.id)] == [v.id]
    assert v.id in [r.visit_id for r in b.open_rectifications("2000-01-01")]
    assert p.id not in [d.producer.id for d in b.due_patrols(grid, None)], "just patrolled"

    # A validation error arrives as a typed exception naming the field.
    before = b.counts()
    e = expect_error(g.ApiError.Invalid, b.create_producer, new_producer(grid, serial=102, phone="1380013800"))
    assert e.field == "phone", e
    assert b.counts() == before


def test_concurrent_edits_of_one_producer_merge():
    s = server()
    a, b = s.device("liaison", "liaison-a"), s.device("liaison", "liaison-b")
    grid = a.profile().grids[0]
    p = a.create_producer(new_producer(grid, serial=201, name="merge牧场"))
    a.sync(None, None)
    b.sync(None, None)

    # Offline on both: different fields.
    pa = a.producer(p.id)
    pa.phone = mobile(2222)
    a.update_producer(pa)
    pb = b.producer(p.id)
    pb.address = "宝力根嘎查五组"
    b.update_producer(pb)
    a.sync(None, None)
    b.sync(None, None)
    a.sync(None, None)
    for store in (a, b):
        q = store.producer(p.id)
        assert q.phone == mobile(2222) and q.address == "宝力根嘎查五组", q
        assert store.conflicts(p.id) == []
    assert a.producer(p.id) == b.producer(p.id)

    # Offline on both: the same field. The merge picks one and shows the other.
    pa, pb = a.producer(p.id), b.producer(p.id)
    pa.owner, pb.owner = "甲", "乙"
    a.update_producer(pa)
    b.update_producer(pb)
    a.sync(None, None)
    b.sync(None, None)
    a.sync(None, None)
    ca, cb = a.conflicts(p.id), b.conflicts(p.id)
    assert [c.path for c in ca] == ["owner"], ca
    assert ca == cb, "both devices show the same conflict"
    assert {ca[0].winner, *ca[0].others} == {"甲", "乙"}
    assert a.producer(p.id).owner == b.producer(p.id).owner == ca[0].winner
    a.resolve_conflict(p.id, "owner")
    assert a.conflicts(p.id) == []
    a.sync(None, None)
    b.sync(None, None)
    assert b.conflicts(p.id) == []


def test_review_chain_across_liaison_and_supervisor():
    s = server()
    liaison, sup = s.device("liaison", "liaison-a"), s.device("supervisor", "supervisor")
    grid = liaison.profile().grids[0]
    p = liaison.create_producer(new_producer(grid, serial=301, name="送审牧场"))
    liaison.review_producer(p.id, g.ReviewStep.SUBMIT())
    expect_error(g.ApiError.Forbidden, liaison.review_producer, p.id, g.ReviewStep.APPROVE_TOWNSHIP())
    liaison.sync(None, None)
    sup.sync(None, None)
    assert sup.producer(p.id).review.state == g.ReviewState.SUBMITTED
    sup.review_producer(p.id, g.ReviewStep.APPROVE_TOWNSHIP())
    report = sup.sync(None, None)
    assert report.rejected == [], report
    liaison.sync(None, None)
    q = liaison.producer(p.id)
    assert q.review.state == g.ReviewState.TOWNSHIP_APPROVED
    assert q.review.history[-1].by == s.people["supervisor"]


def test_cancel_listener_error_and_rotation():
    s = server()
    a = s.device("liaison", "liaison-b")
    grid = a.profile().grids[0]
    a.create_producer(new_producer(grid, serial=401, name="取消测试"))
    assert a.counts().unsynced == 1
    handle = g.SyncHandle()
    assert not handle.is_cancelled()
    handle.cancel()
    assert handle.is_cancelled()
    expect_error(g.ApiError.Cancelled, a.sync, Recorder(), handle)
    assert a.counts().unsynced == 1, "a cancelled sync leaves the edit to push"

    e = expect_error(g.ApiError.Internal, a.sync, Exploding(), None)
    assert "listener bug" in e.detail or "allback" in e.detail, e

    a.rotate_credential()
    report = a.sync(None, None)
    assert a.counts().unsynced == 0, report
    a.sync(None, None)  # the rotated secret is in use now


def test_enrolment_errors_and_revocation_are_typed():
    s = server()
    fresh = g.GridStore.open(tmp_path("bad-code.db"))
    e = expect_error(g.ApiError.Server, fresh.enroll, s.url, "NOT-A-CODE", "phone")
    assert (e.status, e.code) == (401, g.ServerErrorCode.INVALID_CODE), e
    assert not fresh.is_enrolled()
    code = s.issue_code("liaison")
    fresh.enroll(s.url, code, "revoked-phone")
    e = expect_error(g.ApiError.Workflow, fresh.enroll, s.url, code, "phone")
    other = g.GridStore.open(tmp_path("reused-code.db"))
    e = expect_error(g.ApiError.Server, other.enroll, s.url, code, "phone")
    assert (e.status, e.code) == (401, g.ServerErrorCode.INVALID_CODE), e

    # Reported lost: the administrator revokes the device. Its next sync fails with the
    # typed code (the app decides on `code`, never on the text), its server data is
    # removed and its unsynced edit is kept.
    fresh.sync(None, None)
    grid = fresh.profile().grids[0]
    p = fresh.create_producer(new_producer(grid, serial=7100, name="吊销前登记"))
    devices = json.loads(s.admin("list-devices", "--json")[-1])
    device = next(d for d in devices if d["name"] == "revoked-phone")
    s.admin("revoke-device", "--device", device["id"], "--reason", "reported lost")
    e = expect_error(g.ApiError.Server, fresh.sync, None, None)
    assert e.status == 401, e
    assert e.code == g.ServerErrorCode.DEVICE_REVOKED, e
    assert "reported lost" in e.detail, e
    assert not fresh.is_enrolled()
    assert [k.id for k in fresh.kept_edits()] == [p.id]


def test_threads_write_while_another_thread_syncs():
    s = server()
    a = s.device("liaison", "liaison-a")
    grid = a.profile().grids[0]
    errors, created = [], []

    def writer(n):
        try:
            for i in range(8):
                p = a.create_producer(new_producer(grid, serial=5000 + n * 10 + i, name=f"并发{n}-{i}"))
                created.append(p.id)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def syncer():
        try:
            for _ in range(3):
                a.sync(None, None)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=syncer), threading.Thread(target=syncer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], errors
    a.sync(None, None)
    assert a.counts().unsynced == 0
    b = s.device("liaison", "liaison-b")
    for pid in created:
        assert b.producer(pid).grid == grid
    visit = a.create_visit(g.NewVisit(producer_id=created[0], answers={"drug_use": yes()}))
    a.sync(None, None)
    b.sync(None, None)
    assert b.visit(visit.id).answers["drug_use"] == yes()


def test_attachment_round_trip_between_two_phones():
    from test_local import jpeg
    s = server()
    a = g.GridStore.open(tmp_path("photos-a.db"))
    me = a.enroll(s.url, s.issue_code("liaison"), "拍照手机")
    a.sync(None, None)
    grid = me.grids[0]
    p = a.create_producer(new_producer(grid, serial=141, name="其其格家庭牧场"))
    photo = jpeg(600_000, 7)
    ref = a.add_attachment(photo)
    sha = ref.split(":")[1]
    a.create_visit(g.NewVisit(
        producer_id=p.id,
        answers={},
        findings=[g.NewFinding(description="兽药与饲料混放", severity=g.Severity.MAJOR, photos=[ref])],
    ))
    # A budget smaller than the photo: the records go, the photo only in part.
    rec = Recorder()
    report = a.sync(rec, None, g.SyncOptions(attachment_budget_bytes=300_000, attachment_chunk_bytes=100_000))
    assert report.pushed == 2 and report.rejected == [], report
    assert report.attachment_bytes_up == 300_000 and report.attachments_completed == 0, report
    assert report.attachments_left == 1 and report.attachment_errors == [], report
    assert rec.reports[-1].attachment_bytes_up == 300_000
    [info] = a.pending_attachments()
    assert info.server_offset == 300_000
    # The next sync continues from the server's offset.
    report = a.sync(None, None, g.SyncOptions(attachment_chunk_bytes=100_000))
    assert report.attachment_bytes_up == 300_000 and report.attachments_completed == 1, report
    assert a.pending_attachments() == []
    assert [x.state for x in a.attachments()] == [g.AttachmentState.UPLOADED]

    b = g.GridStore.open(tmp_path("photos-b.db"))
    b.enroll(s.url, s.issue_code("liaison"), "另一部手机")
    b.sync(None, None)
    e = expect_error(g.ApiError.NotFound, b.attachment, sha)
    assert b.fetch_attachment(ref) == photo
    assert [x.state for x in b.attachments()] == [g.AttachmentState.CACHED]
    assert b.attachment(sha) == photo
