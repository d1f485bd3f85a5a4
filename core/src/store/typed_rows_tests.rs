//! A stored enum damaged on disk (raw SQL on the store's file) is reported by the store call
//! that reads it, naming the table, the row's key and the column; never read as a default.
//! A record whose `kind` is damaged is set aside by the integrity checks instead.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::HashSet;
use std::path::PathBuf;

use super::{IntegrityLevel, ProducerSort, Store};
use crate::model::{default_template, Visit};
use crate::Error;

const REGION: &str = "15";
const VILLAGE: &str = "152522101201";

/// A store file with a grid tree, a person, a producer and one visit to it.
struct Rows {
    s: Store,
    /// Producer id.
    pid: String,
    /// Visit id.
    vid: String,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rows {
    fn new() -> Rows {
        let ph = super::attachment_tests::Phone::new();
        let tpl = default_template(REGION);
        let v = Visit::new(&ph.pid, VILLAGE, "liaison-1", &tpl, crate::now_ms());
        let v = ph.s.save_visit(v).unwrap();
        Rows {
            s: ph.s,
            pid: ph.pid,
            vid: v.id,
            path: ph.path,
            _dir: ph._dir,
        }
    }

    /// Runs `sql` on the store's file through a connection of its own: `?1` is `key`,
    /// and exactly one row must change.
    fn damage(&self, sql: &str, key: &str) {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        assert_eq!(c.execute(sql, [key]).unwrap(), 1, "{sql}");
    }
}

/// The (table, key, column) a store error names; panics if it names none.
fn named<T: std::fmt::Debug>(r: crate::Result<T>) -> (String, String, String) {
    let e = r.unwrap_err();
    let bad = e.bad_row().unwrap_or_else(|| panic!("not a bad row: {e}"));
    let text = e.to_string();
    assert!(
        text.contains(bad.table) && text.contains(&bad.key) && text.contains(&bad.column),
        "{text}"
    );
    (bad.table.into(), bad.key.clone(), bad.column.clone())
}

fn row(table: &str, key: &str, column: &str) -> (String, String, String) {
    (table.into(), key.into(), column.into())
}

#[test]
fn a_damaged_grid_names_its_code_and_column() {
    let rows = Rows::new();
    let s = &rows.s;
    rows.damage("UPDATE grids SET level = 'planet' WHERE code = ?1", VILLAGE);
    assert_eq!(named(s.grids()), row("grids", VILLAGE, "level"));
    let e = s.grids().unwrap_err();
    assert!(
        e.to_string().contains("'planet' is not a grid level"),
        "{e}"
    );
    rows.damage(
        "UPDATE grids SET level = 'village', kind = 'ocean' WHERE code = ?1",
        VILLAGE,
    );
    assert_eq!(named(s.grids()), row("grids", VILLAGE, "kind"));
    rows.damage(
        "UPDATE grids SET kind = 'pastoral' WHERE code = ?1",
        VILLAGE,
    );
    assert_eq!(s.grids().unwrap().len(), 5);
}

#[test]
fn a_damaged_person_names_their_id_and_column() {
    let rows = Rows::new();
    let s = &rows.s;
    rows.damage(
        "UPDATE people SET role = 'emperor' WHERE id = ?1",
        "liaison-1",
    );
    assert_eq!(named(s.people()), row("people", "liaison-1", "role"));
    rows.damage("UPDATE people SET role = 42 WHERE id = ?1", "liaison-1");
    assert_eq!(named(s.people()), row("people", "liaison-1", "role"));
    rows.damage(
        "UPDATE people SET role = 'liaison', grids = 'G1' WHERE id = ?1",
        "liaison-1",
    );
    assert_eq!(named(s.people()), row("people", "liaison-1", "grids"));
}

#[test]
fn a_damaged_producer_row_names_its_id_and_column() {
    let rows = Rows::new();
    let (s, pid) = (&rows.s, rows.pid.as_str());
    let now = crate::now_ms();
    let list = || s.producers_in_grid(VILLAGE, ProducerSort::Name, 10, 0);
    for column in ["producer_type", "status", "review_state", "risk"] {
        let before = list().unwrap();
        rows.damage(
            &format!("UPDATE producers SET {column} = 'spaceship' WHERE id = ?1"),
            pid,
        );
        let want = row("producers", pid, column);
        assert_eq!(named(list()), want);
        assert_eq!(named(s.search_producers("苏和", 10)), want);
        if column != "status" {
            // `due_patrols` selects active producers only: a bad status is not read.
            assert_eq!(named(s.due_patrols(VILLAGE, now)), want);
        }
        // Rebuilding the query tables from the documents writes the row again.
        s.rebuild_query_tables().unwrap();
        assert_eq!(list().unwrap(), before);
    }
}

#[test]
fn a_damaged_producer_type_fails_a_visit_save_instead_of_reading_as_none() {
    let rows = Rows::new();
    let (s, pid) = (&rows.s, rows.pid.as_str());
    // Saving a visit reads its producer's type to pick what the visit is checked against.
    let visit = s.visit(&rows.vid).unwrap();
    rows.damage(
        "UPDATE producers SET producer_type = 'spaceship' WHERE id = ?1",
        pid,
    );
    let before = s.counts().unwrap();
    assert_eq!(
        named(s.save_visit(visit.clone())),
        row("producers", pid, "producer_type")
    );
    let e = s.save_visit(visit.clone()).unwrap_err();
    assert!(
        e.to_string().contains("'spaceship' is not a producer type"),
        "{e}"
    );
    assert_eq!(s.counts().unwrap(), before, "nothing written");
    // Rebuilt from the documents, the row reads again and the visit saves.
    s.rebuild_query_tables().unwrap();
    s.save_visit(visit).unwrap();
}

#[test]
fn a_damaged_visit_row_names_its_id_and_column() {
    let rows = Rows::new();
    rows.damage("UPDATE visits SET status = 'lost' WHERE id = ?1", &rows.vid);
    let want = row("visits", &rows.vid, "status");
    assert_eq!(named(rows.s.visit_history(&rows.pid)), want);
}

#[test]
fn a_damaged_record_row_names_its_id_and_column() {
    let rows = Rows::new();
    let (s, pid) = (&rows.s, rows.pid.as_str());
    rows.damage(
        "UPDATE records SET rejected_rev = local_rev, rejected_code = 'teapot' WHERE id = ?1",
        pid,
    );
    assert_eq!(
        named(s.rejected_edits()),
        row("records", pid, "rejected_code")
    );
    rows.damage(
        "UPDATE records SET rejected_code = 'forbidden' WHERE id = ?1",
        pid,
    );
    let rejected = s.rejected_edits().unwrap();
    assert_eq!(
        (rejected[0].kind.as_str(), rejected[0].code.as_str()),
        ("producer", "forbidden")
    );
    rows.damage("UPDATE records SET kind = 'spaceship' WHERE id = ?1", pid);
    let want = row("records", pid, "kind");
    assert_eq!(named(s.rejected_edits()), want);
    assert_eq!(named(s.discard_rejected(pid)), want);
    rows.damage("UPDATE records SET rejected_rev = NULL WHERE id = ?1", pid);
    assert_eq!(named(s.pending_pushes(10, &HashSet::new())), want);
    assert_eq!(named(s.wipe_after_revocation("revoked")), want);
}

#[test]
fn a_damaged_kept_edit_names_its_id_and_column() {
    let rows = Rows::new();
    let s = &rows.s;
    assert_eq!(s.wipe_after_revocation("revoked").unwrap(), 2);
    assert_eq!(s.kept_edits().unwrap().len(), 2);
    rows.damage(
        "UPDATE kept_edits SET kind = 'spaceship' WHERE id = ?1",
        &rows.pid,
    );
    assert_eq!(named(s.kept_edits()), row("kept_edits", &rows.pid, "kind"));
}

/// A record whose `kind` is damaged is set aside by a full check (its query rows removed,
/// asked for in full at the next sync), as one whose document does not load is.
#[test]
fn a_damaged_record_kind_is_set_aside_by_a_check() {
    let rows = Rows::new();
    let (s, pid) = (&rows.s, rows.pid.as_str());
    rows.damage("UPDATE records SET kind = 'spaceship' WHERE id = ?1", pid);
    let report = s.check_integrity(IntegrityLevel::Full, true).unwrap();
    assert_eq!(report.corrupt_found.len(), 1, "{report:?}");
    assert_eq!(report.corrupt_found[0].0, pid);
    assert!(
        report.corrupt_found[0].1.contains("records row"),
        "{report:?}"
    );
    assert!(report.is_ok_now(), "{report:?}");
    assert!(matches!(s.record(pid), Err(Error::Corrupt { .. })));
    assert_eq!(s.counts().unwrap().corrupt, 1);
    assert_eq!(s.corrupt_to_heal().unwrap(), vec![pid.to_string()]);
    assert!(s
        .producers_in_grid(VILLAGE, ProducerSort::Name, 10, 0)
        .unwrap()
        .is_empty());
    assert_eq!(s.visit_history(pid).unwrap()[0].id, rows.vid);
}

/// The check at open finds the counts off (the record counts as no kind) and the rebuild
/// sets the record aside rather than failing or guessing its kind.
#[test]
fn a_damaged_record_kind_is_set_aside_at_open() {
    let Rows {
        s, pid, path, _dir, ..
    } = Rows::new();
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        "UPDATE records SET kind = 'spaceship' WHERE id = ?1",
        [&pid],
    )
    .unwrap();
    drop(c);
    let s = Store::open(&path).unwrap();
    let report = s.open_check().unwrap();
    assert!(report.found_problems() && report.rebuilt, "{report:?}");
    assert!(report.remaining.is_empty(), "{report:?}");
    assert_eq!(report.corrupt_found.len(), 1, "{report:?}");
    assert_eq!(report.corrupt_found[0].0, pid);
    assert_eq!(s.corrupt_to_heal().unwrap(), vec![pid]);
}
