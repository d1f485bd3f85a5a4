"""The livestock scale assessment by the league's thresholds, through the Python bindings:
the administrator lowers the league's beef cattle threshold on a real gridsync-server on
loopback, the liaison's phone syncs and assesses a herd exactly on the new threshold as a
scale farm and one head below as not, where the national table says neither is."""

import os

from harness import g, new_producer, server, tmp_path


def league_of(store, grid):
    """The league above `grid` in the grid tree the phone holds."""
    nodes = {n.code: n for n in store.grids()}
    code = grid
    while nodes[code].level != g.GridLevel.LEAGUE:
        code = nodes[code].parent
    return code


def set_thresholds(s, league, text):
    path = tmp_path(f"scale-{league}.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    s.admin("set-scale-thresholds", "--league", league, path)
    os.remove(path)


def test_league_scale_thresholds_reach_the_phone():
    s = server()
    store = s.device("liaison", "scale-liaison")
    grid = store.profile().grids[0]
    league = league_of(store, grid)
    held = store.scale_thresholds_league()
    assert held is not None and held.league == league and held.changed == [], held

    def cattle(sold):
        return g.Scale(livestock=[g.LivestockEntry(species=g.Species.BEEF_CATTLE, sold_per_year=sold)])

    at = store.create_producer(new_producer(grid, name="阈值牧场", serial=601, scale=cattle(30)))
    below = store.create_producer(new_producer(grid, name="阈值下牧场", serial=602, scale=cattle(29)))
    assert not store.scale_assessment(at.id).is_scale_farm, "national: 50 sold a year"

    set_thresholds(s, league, "species,measure,head\nbeef_cattle,sold_per_year,30\n")
    try:
        report = store.sync(None, None)
        assert report.scale_thresholds_fetched and report.scale_thresholds_error is None, report
        a = store.scale_assessment(at.id)
        assert a.is_scale_farm and not a.type_mismatch, a
        assert a.summary_zh == "规模养殖场（肉牛 30 年出栏≥30）", a.summary_zh
        assert not store.scale_assessment(below.id).is_scale_farm
        # A form before saving: by the league's thresholds with the store, national without.
        assert store.scale_assessment_of(at).is_scale_farm
        assert not g.assess_scale(at).is_scale_farm
        held = store.scale_thresholds_league()
        assert held.league == league, held
        assert held.changed == [g.SpeciesThreshold(species=g.Species.BEEF_CATTLE, measure="sold_per_year",
                                                   threshold=30)], held.changed
    finally:
        # The shared server goes back to the national table for the tests after this one.
        set_thresholds(s, league, "")
    report = store.sync(None, None)
    assert report.scale_thresholds_fetched, report
    assert not store.scale_assessment(at.id).is_scale_farm
    assert not store.sync(None, None).scale_thresholds_fetched, "nothing changed: nothing fetched"
    assert store.scale_thresholds_league().changed == []
