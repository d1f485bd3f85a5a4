//! Integrity checks on real SQLite files damaged on disk: a bit flipped in an index page of
//! the visits table, a byte flipped in a record's document. Each must be found (nothing
//! hidden) and repaired (query tables rebuilt from the documents) or set aside to heal.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use gridsync_core::model::{default_template, Visit};
use gridsync_core::store::{IntegrityLevel, ProducerSort, Store};
use gridsync_core::{now_ms, Error};

use common::*;

const VISITS: usize = 101;

/// A store file holding a producer with 101 visits and three others with 30 each.
/// Returns the target producer's id and its visit ids.
fn store_with_visits(path: &Path) -> (String, BTreeSet<String>) {
    let s = store_as(path, &liaison());
    let tpl = default_template(REGION);
    let target = s.create_producer(ranch("百次牧场", VIL1, 1)).unwrap();
    let mut ids = BTreeSet::new();
    let t0 = now_ms() - 400 * DAY_MS;
    for i in 0..VISITS {
        let v = Visit::new(&target.id, VIL1, "liaison-1", &tpl, t0 + i as i64 * DAY_MS);
        ids.insert(s.save_visit(v).unwrap().id);
    }
    for n in 0..3u32 {
        let p = s
            .create_producer(ranch(&format!("邻居牧场{n}"), VIL1, 10 + n))
            .unwrap();
        for i in 0..30 {
            let v = Visit::new(&p.id, VIL1, "liaison-1", &tpl, t0 + i * DAY_MS);
            s.save_visit(v).unwrap();
        }
    }
    assert_eq!(s.visit_history(&target.id).unwrap().len(), VISITS);
    let report = s.open_check().expect("a file store checks itself at open");
    assert!(!report.found_problems(), "{report:?}");
    drop(s);
    checkpoint(path);
    (target.id, ids)
}

/// Moves everything from the WAL into the main file, so that the file holds every page.
fn checkpoint(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

fn page_size(path: &Path) -> usize {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

fn root_page(path: &Path, name: &str) -> usize {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        "SELECT rootpage FROM sqlite_master WHERE name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as usize
}

/// Leaf pages (numbers) of an index b-tree, read from the file itself.
fn index_leaves(file: &[u8], page_size: usize, root: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        let base = (n - 1) * page_size;
        let hdr = base + if n == 1 { 100 } else { 0 };
        match file[hdr] {
            0x0a => out.push(n),
            0x02 => {
                let cells = u16::from_be_bytes([file[hdr + 3], file[hdr + 4]]) as usize;
                let right = u32::from_be_bytes(file[hdr + 8..hdr + 12].try_into().unwrap());
                stack.push(right as usize);
                for i in 0..cells {
                    let at = hdr + 12 + 2 * i;
                    let off = u16::from_be_bytes([file[at], file[at + 1]]) as usize;
                    let child =
                        u32::from_be_bytes(file[base + off..base + off + 4].try_into().unwrap());
                    stack.push(child as usize);
                }
            }
            t => panic!("page {n} of the index has type {t:#x}"),
        }
    }
    out
}

fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Visits of a producer as the app's query finds them, on a connection of its own.
fn raw_visit_count(path: &Path, producer: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM (SELECT id FROM visits WHERE producer_id = ?1 ORDER BY started_at_ms DESC)",
        [producer],
        |r| r.get(0),
    )
    .unwrap_or(-1)
}

/// Flips one bit of the cell count of a leaf page of `visits_producer` holding the
/// producer's entries, so that the page seems to hold fewer entries, until the app's
/// query of the producer's visits comes back short. Returns how many it then finds.
fn flip_bit_in_visit_index(path: &Path, producer: &str) -> i64 {
    let original = std::fs::read(path).unwrap();
    let ps = page_size(path);
    let mut leaves = index_leaves(&original, ps, root_page(path, "visits_producer"));
    assert!(leaves.len() >= 2, "the index spans several pages");
    leaves.sort_by_key(|&n| {
        std::cmp::Reverse(occurrences(
            &original[(n - 1) * ps..n * ps],
            producer.as_bytes(),
        ))
    });
    for n in leaves {
        let hdr = (n - 1) * ps + if n == 1 { 100 } else { 0 };
        let cells = u16::from_be_bytes([original[hdr + 3], original[hdr + 4]]);
        if cells < 8 {
            continue;
        }
        // Clear the highest set bit of the count: one bit, many entries hidden.
        let bit = 15 - cells.leading_zeros();
        let mut damaged = original.clone();
        let flipped = cells ^ (1 << bit);
        damaged[hdr + 3..hdr + 5].copy_from_slice(&flipped.to_be_bytes());
        std::fs::write(path, &damaged).unwrap();
        let seen = raw_visit_count(path, producer);
        if (0..VISITS as i64).contains(&seen) {
            return seen;
        }
        std::fs::write(path, &original).unwrap();
    }
    panic!("no single bit of an index page's cell count hid a visit");
}

/// Flips one byte of a record's stored document, in the file on disk: a byte inside a run
/// of its bytes found in no other record's document.
fn flip_byte_in_document(path: &Path, id: &str) {
    let (blob, others): (Vec<u8>, Vec<Vec<u8>>) = {
        let c = rusqlite::Connection::open(path).unwrap();
        let blob = c
            .query_row("SELECT doc FROM records WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        let mut st = c.prepare("SELECT doc FROM records WHERE id <> ?1").unwrap();
        let others = st
            .query_map([id], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        (blob, others)
    };
    checkpoint(path);
    let mut file = std::fs::read(path).unwrap();
    const W: usize = 24;
    let start = (blob.len() / 2..blob.len() - W)
        .chain(W..blob.len() / 2)
        .find(|&i| {
            let w = &blob[i..i + W];
            others.iter().all(|o| occurrences(o, w) == 0)
        })
        .expect("a run of the document's bytes that no other document holds");
    let window = &blob[start..start + W];
    let hits: Vec<usize> = (0..file.len() - W)
        .filter(|&i| &file[i..i + W] == window)
        .collect();
    // A page rewritten since may leave a stale copy in free space: flip every copy (only
    // the live one is ever read).
    assert!(!hits.is_empty(), "the document's bytes are in the file");
    for h in hits {
        file[h + W / 2] ^= 0xff;
    }
    std::fs::write(path, &file).unwrap();
}

#[test]
fn a_bit_flipped_in_the_visit_index_is_found_by_the_full_check_and_repaired_by_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let (producer, visit_ids) = store_with_visits(&path);
    let seen = flip_bit_in_visit_index(&path, &producer);
    println!("after the bit flip the producer's visit list shows {seen} of {VISITS}");

    let s = Store::open_unchecked(&path).unwrap();
    // The symptom: a short list and nothing reported.
    assert_eq!(s.visit_history(&producer).unwrap().len() as i64, seen);
    let c = s.counts().unwrap();
    assert_eq!((c.corrupt, c.rejected), (0, 0));

    let report = s.check_integrity(IntegrityLevel::Full, false).unwrap();
    println!("full check: {report:#?}");
    assert!(report.found_problems());
    assert!(
        !report.sqlite.is_empty(),
        "integrity_check names the damage"
    );
    assert!(
        report.tables.iter().any(|p| p.contains("visits_producer")),
        "the count through the index differs: {:?}",
        report.tables
    );
    assert!(!report.rebuilt);
    assert!(report.corrupt_found.is_empty(), "every document loads");
    // A check without repair changes nothing.
    assert_eq!(s.visit_history(&producer).unwrap().len() as i64, seen);

    let n = s.rebuild_query_tables().unwrap();
    assert_eq!(n as usize, 4 + VISITS + 90);
    let listed: BTreeSet<String> = s
        .visit_history(&producer)
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(listed, visit_ids, "the full visit list is back");
    let after = s.check_integrity(IntegrityLevel::Full, false).unwrap();
    assert!(!after.found_problems(), "{after:?}");
    assert_eq!(after.documents_checked as usize, 4 + VISITS + 90);
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn a_bit_flipped_in_the_visit_index_is_found_and_repaired_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let (producer, visit_ids) = store_with_visits(&path);
    let seen = flip_bit_in_visit_index(&path, &producer);
    assert!(seen < VISITS as i64);

    let s = Store::open(&path).unwrap();
    let report = s.open_check().unwrap();
    println!("check at open: {report:#?}");
    assert_eq!(report.level, "open");
    assert!(report.found_problems(), "quick_check or the counts see it");
    assert!(report.rebuilt && report.is_ok_now(), "{report:?}");
    let listed: BTreeSet<String> = s
        .visit_history(&producer)
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(listed, visit_ids);
    // The store keeps working after the rebuild beside it.
    let tpl = default_template(REGION);
    s.save_visit(Visit::new(&producer, VIL1, "liaison-1", &tpl, now_ms()))
        .unwrap();
    assert_eq!(s.visit_history(&producer).unwrap().len(), VISITS + 1);
    assert!(!s
        .check_integrity(IntegrityLevel::Full, false)
        .unwrap()
        .found_problems());
}

#[test]
fn the_quick_check_compares_a_sample_of_rows_with_their_documents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let s = store_as(&path, &liaison());
    let p = s.create_producer(ranch("草原牧场", VIL1, 1)).unwrap();
    s.create_producer(ranch("河边牧场", VIL1, 2)).unwrap();
    assert!(!s
        .check_integrity(IntegrityLevel::Quick, false)
        .unwrap()
        .found_problems());
    // A row that no longer says what its document says (as a flipped bit in a table page
    // would leave it): the counts agree, the values do not.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "UPDATE producers SET name = '错误名称', risk = 'high' WHERE id = ?1",
            [&p.id],
        )
        .unwrap();
    }
    let r = s.check_integrity(IntegrityLevel::Quick, true).unwrap();
    assert!(
        r.tables
            .iter()
            .any(|t| t.contains(&p.id) && t.contains("name") && t.contains("risk")),
        "{r:?}"
    );
    assert!(r.rebuilt && r.is_ok_now(), "{r:?}");
    assert_eq!(s.search_producers("草原", 10).unwrap().len(), 1);
    assert!(s.search_producers("错误", 10).unwrap().is_empty());
}

#[test]
fn a_byte_flipped_in_a_document_is_found_by_the_full_check_and_asked_for_at_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let s = store_as(&path, &liaison());
    let good = s.create_producer(ranch("好牧场", VIL1, 1)).unwrap();
    let bad = s.create_producer(ranch("坏牧场", VIL1, 2)).unwrap();
    drop(s);
    flip_byte_in_document(&path, &bad.id);

    let s = Store::open_unchecked(&path).unwrap();
    assert!(s.corrupt_records().unwrap().is_empty(), "not yet found");
    let r = s.check_integrity(IntegrityLevel::Full, true).unwrap();
    println!("full check: {r:#?}");
    assert_eq!(r.corrupt_found.len(), 1, "{r:?}");
    assert_eq!(r.corrupt_found[0].0, bad.id);
    assert!(r.is_ok_now(), "{r:?}");
    assert_eq!(s.corrupt_records().unwrap().len(), 1);
    assert_eq!(s.corrupt_to_heal().unwrap(), vec![bad.id.clone()]);
    assert!(matches!(s.producer(&bad.id), Err(Error::Corrupt { .. })));
    let list = s
        .producers_in_grid(VIL1, ProducerSort::Name, 10, 0)
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, good.id);
    assert_eq!(s.counts().unwrap().corrupt, 1);
    // The set-aside record's rows are gone, so the tables agree with what loads.
    assert!(!s
        .check_integrity(IntegrityLevel::Full, false)
        .unwrap()
        .found_problems());
}
