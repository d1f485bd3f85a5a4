"""The database check through the Python bindings: a list row damaged behind the store's
back is found, and the list tables are rebuilt from the records."""

import sqlite3

from harness import VILLAGE, new_producer, offline_store, tmp_path


def test_check_integrity_finds_and_repairs_a_damaged_list_row():
    path = tmp_path("integrity.db")
    store = offline_store(path=path)
    p = store.create_producer(new_producer(VILLAGE, serial=81))
    clean = store.check_integrity(True, False)
    assert clean.ok and clean.full and not clean.rebuilt, clean
    assert clean.documents_checked == 1 and clean.sqlite_problems == [] and clean.table_problems == []

    db = sqlite3.connect(path)
    db.execute("UPDATE producers SET name = '错误名称' WHERE id = ?", (p.id,))
    db.commit()
    db.close()
    assert store.search_producers("错误", 10)[0].id == p.id  # the list shows the damage

    found = store.check_integrity(False, False)
    assert not found.ok and not found.rebuilt
    assert any(p.id in t for t in found.table_problems), found.table_problems

    fixed = store.check_integrity(True, True)
    assert fixed.ok and fixed.rebuilt and fixed.remaining == [], fixed
    assert store.search_producers("错误", 10) == []
    assert [s.id for s in store.search_producers(p.name, 10)] == [p.id]
    assert store.check_integrity(True, False).ok
