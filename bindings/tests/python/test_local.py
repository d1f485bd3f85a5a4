"""Local-store scenarios through the Python bindings: no server, a real SQLite file."""

import time

from harness import (
    BANNER, PEOPLE, TOWNSHIP, VILLAGE, VILLAGE2, expect_error, full_answers, g, mobile,
    new_producer, offline_store, tmp_path, yes,
)

DAY_MS = 86_400_000


def test_open_reopen_keeps_data():
    path = tmp_path("reopen.db")
    store = offline_store(path=path)
    p = store.create_producer(new_producer(VILLAGE, serial=11))
    again = g.GridStore.open(path)
    assert again.producer(p.id) == p
    assert again.profile() == PEOPLE["liaison"]
    assert {n.code for n in again.grids()} >= {VILLAGE, TOWNSHIP, BANNER}
    assert g.gridsync_version().count(".") == 2


def test_producer_create_get_update_list_search():
    store = offline_store()
    a = store.create_producer(new_producer(VILLAGE, name="乌力吉家庭牧场", serial=21))
    store.create_producer(new_producer(VILLAGE, name="巴雅尔散养户", serial=22,
                                       producer_type=g.ProducerType.SMALL_HOUSEHOLD))
    store.create_producer(new_producer(VILLAGE, name="阿拉坦家庭牧场", serial=23))
    assert a.review.state == g.ReviewState.DRAFT
    assert a.effective_review_state == g.ReviewState.DRAFT
    assert a.created_by == "p-liaison"
    assert a.scale.livestock == [g.LivestockEntry(species=g.Species.SHEEP_GOAT, on_hand=320, sold_per_year=150)]
    assert a.risk == g.RiskLevel.HIGH and a.status == g.ProducerStatus.ACTIVE
    assert store.producer(a.id) == a

    a.address = "宝力根嘎查三组"
    a.scale.livestock.append(g.LivestockEntry(species=g.Species.BEEF_CATTLE, on_hand=12, sold_per_year=None))
    b = store.update_producer(a)
    assert b.address == "宝力根嘎查三组"
    assert {e.species for e in b.scale.livestock} == {g.Species.SHEEP_GOAT, g.Species.BEEF_CATTLE}
    assert store.producer(a.id).address == "宝力根嘎查三组"

    page1 = store.producers_in_grid(TOWNSHIP, g.ProducerSort.NAME, 2, 0)
    page2 = store.producers_in_grid(TOWNSHIP, g.ProducerSort.NAME, 2, 2)
    assert len(page1) == 2 and len(page2) == 1
    names = [p.name for p in page1 + page2]
    assert names == sorted(names), names
    assert {p.producer_type for p in page1 + page2} == {g.ProducerType.FAMILY_RANCH, g.ProducerType.SMALL_HOUSEHOLD}
    recent = store.producers_in_grid(VILLAGE, g.ProducerSort.RECENTLY_UPDATED, 10, 0)
    assert recent[0].id == a.id, "the producer edited last comes first"
    assert store.producers_in_grid(VILLAGE2, g.ProducerSort.NAME, 10, 0) == []

    hits = store.search_producers("家庭牧场", 10)
    assert {h.name for h in hits} == {"乌力吉家庭牧场", "阿拉坦家庭牧场"}
    by_phone = store.search_producers(mobile(22)[3:], 10)
    assert [h.name for h in by_phone] == ["巴雅尔散养户"]
    assert store.search_producers("   ", 10) == []


def test_validation_errors_are_typed_and_name_the_field():
    store = offline_store()
    before = store.counts()
    e = expect_error(g.ApiError.Invalid, store.create_producer,
                     new_producer(VILLAGE, serial=31, phone="12345"))
    assert e.field == "phone", e
    assert "12345" not in str(e), "the error must not echo what was typed"
    e = expect_error(g.ApiError.Invalid, store.create_producer,
                     new_producer(VILLAGE, serial=32, id_number="152522198001010010"))
    assert e.field == "id_number", e
    e = expect_error(g.ApiError.Invalid, store.create_producer,
                     new_producer(VILLAGE, serial=33, credit_code=None, id_number=None))
    assert e.field == "id_number", e
    e = expect_error(g.ApiError.Invalid, store.create_producer,
                     new_producer("NO-SUCH-GRID", serial=34))
    assert e.field == "grid", e
    e = expect_error(g.ApiError.Forbidden, store.create_producer, new_producer(VILLAGE2, serial=35))
    assert VILLAGE2 in e.reason
    assert isinstance(e, g.ApiError), "every error is an ApiError"
    assert store.counts() == before, "nothing was written"


def test_review_chain_submit_approve_return():
    path = tmp_path("review.db")
    store = offline_store(path=path)
    p = store.create_producer(new_producer(VILLAGE, serial=41))
    p = store.review_producer(p.id, g.ReviewStep.SUBMIT())
    assert p.review.state == g.ReviewState.SUBMITTED
    expect_error(g.ApiError.Forbidden, store.review_producer, p.id, g.ReviewStep.APPROVE_TOWNSHIP())
    e = expect_error(g.ApiError.Workflow, store.review_producer, p.id, g.ReviewStep.APPROVE_COUNTY())
    assert "submitted" in e.reason

    store.set_profile(PEOPLE["supervisor"])
    p = store.review_producer(p.id, g.ReviewStep.APPROVE_TOWNSHIP())
    assert p.review.state == g.ReviewState.TOWNSHIP_APPROVED
    expect_error(g.ApiError.Forbidden, store.review_producer, p.id, g.ReviewStep.APPROVE_COUNTY())

    store.set_profile(PEOPLE["county"])
    p = store.review_producer(p.id, g.ReviewStep.APPROVE_COUNTY())
    assert p.review.state == g.ReviewState.COUNTY_APPROVED
    assert p.effective_review_state == g.ReviewState.COUNTY_APPROVED
    assert p.review.approved_fingerprint

    store.set_profile(PEOPLE["liaison"])
    p.phone = mobile(4141)
    p = store.update_producer(p)
    assert p.effective_review_state == g.ReviewState.SUBMITTED, "an edit sends it back to review"
    assert isinstance(p.review.history[-1].action, g.ReviewAction.EDITED_AFTER_APPROVAL)

    store.set_profile(PEOPLE["county"])
    e = expect_error(g.ApiError.Invalid, store.review_producer, p.id, g.ReviewStep.RETURN(reason="  "))
    assert e.field == "review.return_reason"
    p = store.review_producer(p.id, g.ReviewStep.RETURN(reason="养殖规模与实际不符"))
    assert p.review.state == g.ReviewState.RETURNED
    assert p.review.return_reason == "养殖规模与实际不符"
    actions = [type(h.action).__name__.split(".")[-1] for h in p.review.history]
    assert actions == ["SUBMIT", "APPROVE_TOWNSHIP", "APPROVE_COUNTY", "EDITED_AFTER_APPROVAL", "RETURN"], actions
    assert [h.by for h in p.review.history][:3] == ["p-liaison", "p-super", "p-county"]


def test_yearly_confirmation_keeps_the_approval_and_the_next_year_lists_it_again():
    store = offline_store()
    p = store.create_producer(new_producer(VILLAGE, serial=45))
    year = store.current_year()
    assert [s.id for s in store.unconfirmed_producers(TOWNSHIP, year)] == [p.id]
    store.review_producer(p.id, g.ReviewStep.SUBMIT())
    store.set_profile(PEOPLE["supervisor"])
    approved = store.review_producer(p.id, g.ReviewStep.APPROVE_TOWNSHIP())

    store.set_profile(PEOPLE["liaison"])
    p = store.confirm_producer(p.id, year, True)
    assert p.effective_review_state == g.ReviewState.TOWNSHIP_APPROVED, "confirming keeps the approval"
    assert p.review == approved.review
    assert [(c.year, c.operating, c.by) for c in p.confirmations] == [(year, True, "p-liaison")]
    assert store.unconfirmed_producers(VILLAGE, year) == []
    assert [s.id for s in store.unconfirmed_producers(VILLAGE, year + 1)] == [p.id], "January lists it again"
    e = expect_error(g.ApiError.Invalid, store.confirm_producer, p.id, year + 1, True)
    assert e.field == "year"

    p = store.confirm_producer(p.id, year, False)
    assert p.status == g.ProducerStatus.CLOSED
    assert p.effective_review_state == g.ReviewState.SUBMITTED, "closing is an edit"
    assert store.unconfirmed_producers(VILLAGE, year + 1) == [], "a closed producer is not listed"


def test_visit_answers_findings_tests_rectification_follow_up_review():
    store = offline_store()
    p = store.create_producer(new_producer(VILLAGE, serial=51))
    t = store.default_template()
    assert t.template_id == "moa-daily-patrol" and t.version == 1
    assert len(t.items) == 10 and sum(i.required for i in t.items) == 7
    assert any(t2.template_id == t.template_id for t2 in store.templates())
    assert store.template("moa-daily-patrol", 1) == t

    v = store.create_visit(g.NewVisit(
        producer_id=p.id,
        answers={"production_records": yes("台账齐全")},
        location=g.GeoPoint(lat=44.02, lon=114.95),
        findings=[g.NewFinding(description="兽药使用记录不全", severity=g.Severity.MAJOR, item_id="drug_use")],
        rapid_tests=[g.NewRapidTest(sample="羊尿", item="克伦特罗", method=g.TestMethod.COLLOIDAL_GOLD,
                                    verdict=g.Verdict.PASS, kit="瘦肉精三联检测卡")],
        rectification=g.NewRectification(deadline="2030-06-30", notice_number="阿农整〔2030〕1号"),
    ))
    assert v.status == g.VisitStatus.DRAFT
    assert v.inspector == "p-liaison" and v.grid == VILLAGE and v.producer_id == p.id
    assert v.answers["production_records"].note == "台账齐全"
    assert v.findings[0].recorded_by == "p-liaison" and v.findings[0].id
    assert v.rapid_tests[0].operator == "p-liaison"
    assert v.rectification.required and v.rectification.resolved_at_ms is None

    e = expect_error(g.ApiError.Invalid, store.complete_visit, v.id)
    assert e.field.startswith("answers."), e
    e = expect_error(g.ApiError.Invalid, store.set_answer, v.id, "other", yes())
    assert e.field == "answers.other", e

    for item_id, answer in full_answers(t).items():
        if item_id != "production_records":
            v = store.set_answer(v.id, item_id, answer)
    v = store.add_finding(v.id, g.NewFinding(description="废弃包装物未回收", severity=g.Severity.MINOR))
    v = store.add_rapid_test(v.id, g.NewRapidTest(sample="羊肉", item="磺胺类", method=g.TestMethod.OTHER,
                                                  verdict=g.Verdict.SUSPECT, value=0.8, unit="μg/kg"))
    assert len(v.findings) == 2 and len(v.rapid_tests) == 2
    v = store.complete_visit(v.id)
    assert v.status == g.VisitStatus.COMPLETED and v.ended_at_ms >= v.started_at_ms
    expect_error(g.ApiError.Workflow, store.complete_visit, v.id)

    open_now = store.open_rectifications("2030-01-01")
    assert [(r.visit_id, r.overdue) for r in open_now] == [(v.id, False)]
    assert store.open_rectifications("2031-01-01")[0].overdue
    assert store.open_rectifications(None)[0].producer_name == p.name
    hist = store.visit_history(p.id)
    assert [(h.id, h.status, h.rectification_open) for h in hist] == [(v.id, g.VisitStatus.COMPLETED, True)]

    f = store.create_visit(g.NewVisit(producer_id=p.id, answers=full_answers(t), follow_up_of=v.id))
    f = store.complete_visit(f.id)
    v = store.add_follow_up(v.id, f.id, True)
    assert v.follow_up_visit == f.id and v.rectification.resolved_at_ms is not None
    assert store.open_rectifications("2030-01-01") == []
    assert store.visit(f.id).follow_up_of == v.id

    expect_error(g.ApiError.Forbidden, store.review_visit, v.id, "记录规范")
    store.set_profile(PEOPLE["supervisor"])
    v = store.review_visit(v.id, "记录规范")
    assert v.review.by == "p-super" and v.review.comment == "记录规范"


def test_due_patrols_and_intervals():
    store = offline_store()
    high = store.create_producer(new_producer(VILLAGE, serial=61, name="高风险牧场"))
    low = store.create_producer(new_producer(VILLAGE, serial=62, name="低风险散户", risk=g.RiskLevel.LOW,
                                             producer_type=g.ProducerType.SMALL_HOUSEHOLD))
    now = int(time.time() * 1000)
    due = store.due_patrols(TOWNSHIP, now)
    assert {d.producer.id for d in due} == {high.id, low.id}, "never visited: both due"
    assert all(d.days_overdue == 0 for d in due)

    t = store.default_template()
    store.complete_visit(store.create_visit(g.NewVisit(producer_id=high.id, answers=full_answers(t))).id)
    assert {d.producer.id for d in store.due_patrols(TOWNSHIP, now)} == {low.id}
    now = int(time.time() * 1000)  # after the visit started
    later = store.due_patrols(TOWNSHIP, now + 40 * DAY_MS)
    d = next(d for d in later if d.producer.id == high.id)
    assert d.interval_days == 30 and d.days_overdue == 10
    assert d.producer.last_visit_ms is not None

    store.set_patrol_interval(g.ProducerType.FAMILY_RANCH, g.RiskLevel.HIGH, 7)
    d = next(d for d in store.due_patrols(TOWNSHIP, now + 8 * DAY_MS) if d.producer.id == high.id)
    assert d.interval_days == 7 and d.days_overdue == 1
    e = expect_error(g.ApiError.Invalid, store.set_patrol_interval, g.ProducerType.FAMILY_RANCH, g.RiskLevel.HIGH, 0)
    assert e.field == "days"


def test_counts_history_conflicts_rejected_kept():
    store = offline_store()
    p = store.create_producer(new_producer(VILLAGE, serial=71))
    p.address = "新址"
    store.update_producer(p)
    store.create_visit(g.NewVisit(producer_id=p.id, answers={}))
    c = store.counts()
    assert (c.producers, c.visits, c.unsynced, c.rejected, c.corrupt, c.kept_edits) == (1, 1, 2, 0, 0, 0)
    hist = store.history(p.id)
    assert len(hist) == 2 and all(h.by == "p-liaison" and h.ops > 0 for h in hist)
    assert store.conflicts(p.id) == []
    assert store.rejected_edits() == [] and store.kept_edits() == []
    e = expect_error(g.ApiError.NotFound, store.discard_rejected, p.id)
    assert e.what == "rejected edit"
    expect_error(g.ApiError.NotFound, store.dismiss_kept_edit, p.id)


def test_not_found_and_not_enrolled():
    store = g.GridStore.open(tmp_path("blank.db"))
    assert store.profile() is None and not store.is_enrolled() and store.server_url() is None
    expect_error(g.ApiError.NotEnrolled, store.create_producer, new_producer(VILLAGE, serial=81))
    expect_error(g.ApiError.NotEnrolled, store.sync, None, None)
    expect_error(g.ApiError.NotEnrolled, store.rotate_credential)
    expect_error(g.ApiError.NotFound, store.producer, "no-such-id")
    expect_error(g.ApiError.NotFound, store.visit, "no-such-id")
    expect_error(g.ApiError.NotFound, store.template, "no-such-template", 1)
    expect_error(g.ApiError.Storage, g.GridStore.open, tmp_path("missing-dir") + "/x/y.db")


def test_panic_becomes_internal_error_and_process_survives():
    store = offline_store()
    for i in range(3):
        e = expect_error(g.ApiError.Internal, g.testing_panic, f"boom {i}")
        assert f"boom {i}" in e.detail, e
    store.create_producer(new_producer(VILLAGE, serial=91))
    assert store.counts().producers == 1, "the library keeps working after a caught panic"


def test_network_error_is_typed():
    store = g.GridStore.open(tmp_path("net.db"))
    started = time.monotonic()
    e = expect_error(g.ApiError.Network, store.enroll, "http://127.0.0.1:9", "CODE", "phone")
    assert e.detail
    assert time.monotonic() - started < 30
    assert not store.is_enrolled()


def jpeg(n, seed=0):
    """A JPEG-looking blob of n bytes (the type is read from the first bytes)."""
    return bytes([0xFF, 0xD8, 0xFF, 0xE0]) + bytes((i * 31 + seed) % 256 for i in range(n - 4))


def test_attachments_add_read_list_and_unknown_reference_refused():
    path = tmp_path("attachments.db")
    store = offline_store(path=path)
    p = store.create_producer(new_producer(VILLAGE, serial=61))
    photo = jpeg(5000, 1)
    ref = store.add_attachment(photo, "image/jpeg")
    assert ref.startswith("att:") and ref.endswith(":5000:image/jpeg"), ref
    assert store.add_attachment(photo) == ref, "the same bytes are one attachment"
    file = tmp_path("signature.jpg")
    with open(file, "wb") as f:
        f.write(jpeg(700, 2))
    sig = store.add_attachment_file(file)
    sha = ref.split(":")[1]
    assert store.attachment(sha) == photo and store.attachment(ref) == photo
    listed = store.attachments()
    assert [a.reference for a in listed] == [ref, sig]
    assert all(a.state == g.AttachmentState.PENDING and not a.referenced for a in listed)
    assert [a.reference for a in store.pending_attachments()] == [ref, sig]

    v = store.create_visit(g.NewVisit(
        producer_id=p.id,
        answers={},
        findings=[g.NewFinding(description="饲料间存放兽药", severity=g.Severity.MINOR, photos=[ref])],
    ))
    assert v.findings[0].photos == [ref]
    assert all(a.referenced for a in store.attachments() if a.reference == ref)

    # A reference the phone does not hold is refused, naming the field.
    absent = "att:" + "a" * 64 + ":10:image/jpeg"
    e = expect_error(g.ApiError.Invalid, store.add_finding, v.id,
                     g.NewFinding(description="证照未公示", severity=g.Severity.MINOR, photos=[absent]))
    assert e.field == "findings[1].photos[0]", e
    e = expect_error(g.ApiError.Invalid, store.add_attachment, b"<html>not a photo</html>")
    assert e.field == "attachment", e
    e = expect_error(g.ApiError.NotFound, store.attachment, "b" * 64)
    assert e.what == "attachment", e
    e = expect_error(g.ApiError.Invalid, store.attachment, "att:nonsense")
    assert e.field == "reference", e
    e = expect_error(g.ApiError.Storage, store.add_attachment_file, tmp_path("missing.jpg"))
    # Reopened, everything is there.
    again = g.GridStore.open(path)
    assert again.attachment(sha) == photo
    assert len(again.attachments()) == 2
