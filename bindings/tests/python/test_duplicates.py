"""Checks before saving, through the Python bindings: likely duplicates in the local copy
(credit code, ID number, phone, similar names in neighbouring grids) and the livestock
scale assessment. No server, a real SQLite file."""

from harness import (
    TOWNSHIP, VILLAGE, VILLAGE2, expect_error, g, new_producer, offline_store,
)

_USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def credit_code(serial):
    """A valid unified social credit code (GB 32100 check character) of a cooperative."""
    body = f"93152522MA{serial:07d}"
    total = sum(_USCC.index(c) * w for c, w in zip(body, _USCC_WEIGHTS))
    return body + _USCC[(31 - total % 31) % 31]


def cooperative(grid, name, serial, **kw):
    fields = dict(producer_type=g.ProducerType.COOPERATIVE, credit_code=credit_code(serial), id_number=None)
    fields.update(kw)
    return new_producer(grid, name=name, serial=serial, **fields)


def test_likely_duplicates_are_shown_before_saving():
    store = offline_store("supervisor")  # the township: both villages
    a = store.create_producer(cooperative(VILLAGE, "阿巴嘎旗浩日沁牧业专业合作社", 501))

    # The same credit code, another name, in the neighbouring village.
    m = store.likely_duplicates_of_new(cooperative(VILLAGE2, "草原红牧业合作社", 502,
                                                   credit_code=credit_code(501).lower()))
    assert [d.id for d in m] == [a.id], m
    assert (m[0].name, m[0].grid, m[0].grid_name) == ("阿巴嘎旗浩日沁牧业专业合作社", VILLAGE, "宝力根嘎查")
    assert m[0].reasons == [g.DuplicateReason(id="credit_code", label_zh="统一社会信用代码相同")]
    assert m[0].score == 95

    # A similar name in the neighbouring village: 浩日沁牧业 is the core of both.
    m = store.likely_duplicates_of_new(cooperative(VILLAGE2, "浩日沁牧业合作社", 503))
    assert [d.id for d in m] == [a.id], m
    assert [r.id for r in m[0].reasons] == ["same_name"]
    assert m[0].reasons[0].label_zh == "名称相同（同一或相邻网格）"

    # The same phone written with +86, and a name one character apart: both reasons.
    m = store.likely_duplicates_of_new(cooperative(VILLAGE2, "浩日沁牧叶合作社", 504,
                                                   phone="+86 " + a.phone))
    assert [r.id for r in m[0].reasons] == ["phone", "name_one_edit"], m
    assert m[0].score > 70

    # Unrelated: nothing.
    assert store.likely_duplicates_of_new(cooperative(VILLAGE2, "额尔敦养殖合作社", 505)) == []

    # Editing: the entry is never its own duplicate; an edit towards another entry finds it.
    assert store.likely_duplicates(a) == []
    b = store.create_producer(cooperative(TOWNSHIP, "额尔敦养殖合作社", 506))
    a.name = "额尔敦养殖专业合作社"
    m = store.likely_duplicates(a)
    assert [d.id for d in m] == [b.id], m
    assert store.counts().producers == 2, "checking writes nothing"


def test_scale_assessment_by_the_national_thresholds():
    store = offline_store()
    sheep = lambda sold: g.Scale(livestock=[  # noqa: E731
        g.LivestockEntry(species=g.Species.SHEEP_GOAT, on_hand=300, sold_per_year=sold)])
    below = store.create_producer(new_producer(VILLAGE, serial=511, scale=sheep(199)))
    at = store.create_producer(new_producer(VILLAGE, serial=512, scale=sheep(200)))

    a = store.scale_assessment(below.id)
    assert not a.is_scale_farm and a.species_over == [] and a.summary_zh == "未达规模养殖标准", a
    a = store.scale_assessment(at.id)
    assert a.is_scale_farm and not a.type_mismatch, a
    assert a.species_over == [g.SpeciesOverThreshold(species=g.Species.SHEEP_GOAT, measure="sold_per_year",
                                                      measure_zh="年出栏", threshold=200, head=200)]
    assert a.summary_zh == "规模养殖场（羊 200 年出栏≥200）", a.summary_zh

    # A form not yet saved: a small household with a scale herd has the wrong type.
    at.producer_type = g.ProducerType.SMALL_HOUSEHOLD
    a = g.assess_scale(at)
    assert a.is_scale_farm and a.type_mismatch, a
    assert a.summary_zh.endswith("主体类型不符，请核实"), a.summary_zh

    e = expect_error(g.ApiError.NotFound, store.scale_assessment, "no-such-producer")
    assert e.what == "record", e
