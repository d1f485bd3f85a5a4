//! A damaged phone heals from the server (issue 19, part 2): a record whose stored bytes
//! were damaged on disk (a byte flipped in the real SQLite file) is asked for in full at the
//! next sync and replaced by the server's copy; its unsynced local edit, where it is intact,
//! goes on top and reaches the server, and where it is not, it is kept for export and
//! reported. Also the measurement of `PRAGMA quick_check` at township size (ignored test).

// Test code: an unwrap is an assertion, in helpers as in test functions.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use gridsync_core::model::{Record, Role};
use gridsync_core::store::{IntegrityLevel, Store};
use gridsync_core::Error;
use gridsync_tests::*;

/// Closes a phone's store, runs `damage` on its file, and opens it again.
fn with_store_closed(phone: Phone, damage: impl FnOnce(&Path)) -> Phone {
    let Phone {
        store,
        path,
        transport,
        person,
    } = phone;
    drop(store);
    checkpoint(&path);
    damage(&path);
    Phone {
        store: Store::open(&path).unwrap(),
        path,
        transport,
        person,
    }
}

fn checkpoint(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Flips one byte of a stored blob of record `id` (`SELECT <column> ... WHERE id = ?1`
/// names it) in the database file itself: a byte inside a run of the blob's bytes that no
/// other blob of the table holds. A stale copy left in free space is flipped too.
fn flip_byte_of_blob(path: &Path, select: &str, all: &str, id: &str) {
    let (blob, others): (Vec<u8>, Vec<Vec<u8>>) = {
        let c = rusqlite::Connection::open(path).unwrap();
        let blob: Vec<u8> = c.query_row(select, [id], |r| r.get(0)).unwrap();
        let mut st = c.prepare(all).unwrap();
        let others = st
            .query_map([id], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        (blob, others)
    };
    let mut file = std::fs::read(path).unwrap();
    const W: usize = 24;
    assert!(blob.len() > 2 * W, "a blob of {} bytes", blob.len());
    let start = (blob.len() / 2..blob.len() - W)
        .chain(W..blob.len() / 2)
        .find(|&i| others.iter().all(|o| occurrences(o, &blob[i..i + W]) == 0))
        .expect("a run of bytes no other blob holds");
    let window = blob[start..start + W].to_vec();
    let hits: Vec<usize> = (0..file.len() - W)
        .filter(|&i| file[i..i + W] == window[..])
        .collect();
    assert!(!hits.is_empty(), "the blob is in the main file");
    for h in hits {
        file[h + W / 2] ^= 0xff;
    }
    std::fs::write(path, &file).unwrap();
}

/// Flips a byte of a record's compact document (`records.doc`).
fn flip_document(path: &Path, id: &str) {
    flip_byte_of_blob(
        path,
        "SELECT doc FROM records WHERE id = ?1",
        "SELECT doc FROM records WHERE id <> ?1 UNION ALL SELECT bytes FROM record_chunks",
        id,
    );
}

/// Flips a byte of a record's (only) incremental chunk.
fn flip_chunk(path: &Path, id: &str) {
    flip_byte_of_blob(
        path,
        "SELECT bytes FROM record_chunks WHERE id = ?1",
        "SELECT bytes FROM record_chunks WHERE id <> ?1 UNION ALL SELECT doc FROM records",
        id,
    );
}

fn chunk_count(phone: &Phone, id: &str) -> i64 {
    let c = rusqlite::Connection::open(&phone.path).unwrap();
    c.query_row("SELECT chunk_count FROM records WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

/// The first producer of the liaison's village on the phone.
fn a_producer(phone: &Phone) -> String {
    phone
        .store
        .record_ids()
        .unwrap()
        .into_iter()
        .find(|id| matches!(phone.store.record(id), Ok(Record::Producer(_))))
        .unwrap()
}

fn server_producer(server: &TestServer, id: &str) -> gridsync_core::model::Producer {
    let stored = server.storage.record(id).unwrap().unwrap();
    match gridsync_core::doc::RecordDoc::load(&stored.doc, &[])
        .unwrap()
        .read()
        .unwrap()
    {
        Record::Producer(p) => p,
        other => panic!("not a producer: {other:?}"),
    }
}

#[test]
fn a_flipped_byte_in_a_synced_record_heals_at_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _data, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let id = a_producer(&phone);
    let before = phone.store.producer(&id).unwrap();
    let phone = with_store_closed(phone, |p| flip_document(p, &id));

    // Found at read time and set aside.
    assert!(matches!(
        phone.store.producer(&id),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(phone.store.counts().unwrap().corrupt, 1);

    let report = phone.sync().unwrap();
    assert!(report.pulled >= 1, "{report:?}");
    assert_eq!(phone.store.producer(&id).unwrap(), before, "whole again");
    assert!(phone.store.corrupt_records().unwrap().is_empty());
    let c = phone.store.counts().unwrap();
    assert_eq!((c.corrupt, c.unsynced, c.kept_edits), (0, 0, 0));
    assert!(phone.store.kept_edits().unwrap().is_empty());
    assert!(phone
        .store
        .producers_in_grid(
            &before.grid,
            gridsync_core::store::ProducerSort::Name,
            500,
            0
        )
        .unwrap()
        .iter()
        .any(|p| p.id == id));
    assert_eq!(integrity_check(&phone.path), "ok");
    drop(server);
}

#[test]
fn an_intact_unsynced_edit_of_a_damaged_record_is_reapplied_on_the_servers_copy_and_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let other = Phone::enrol(&server, &server.url(), dir.path(), "sup", &supervisor.id);
    other.sync().unwrap();
    let id = a_producer(&phone);

    // The liaison edits offline; the edit is an incremental chunk beside the document.
    let mut p = phone.store.producer(&id).unwrap();
    p.address = "损坏后恢复的地址".into();
    phone.store.update_producer(p).unwrap();
    assert_eq!(chunk_count(&phone, &id), 1);
    assert_eq!(phone.store.counts().unwrap().unsynced, 1);
    // Meanwhile the supervisor edits another field of the same producer.
    let mut q = other.store.producer(&id).unwrap();
    q.owner = "督导改的户主".into();
    other.store.update_producer(q).unwrap();
    other.sync().unwrap();

    // The compact document is damaged; the chunk holding the edit is not. Nothing reads
    // the record before the sync: the sync itself finds it.
    let phone = with_store_closed(phone, |p| flip_document(p, &id));
    let report = phone.sync().unwrap();
    assert!(
        report.pushed >= 1,
        "the recovered edit is pushed: {report:?}"
    );
    assert_eq!(report.kept, 0);

    let healed = phone.store.producer(&id).unwrap();
    assert_eq!(healed.address, "损坏后恢复的地址");
    assert_eq!(healed.owner, "督导改的户主");
    let c = phone.store.counts().unwrap();
    assert_eq!(
        (c.corrupt, c.unsynced, c.kept_edits, c.rejected),
        (0, 0, 0, 0)
    );
    let on_server = server_producer(&server, &id);
    assert_eq!(on_server.address, "损坏后恢复的地址");
    assert_eq!(on_server.owner, "督导改的户主");
    other.sync().unwrap();
    assert_eq!(
        other.store.producer(&id).unwrap().address,
        "损坏后恢复的地址"
    );
    // The next sync has nothing to do for it.
    let again = phone.sync().unwrap();
    assert_eq!((again.pushed, again.round_trips), (0, 1), "{again:?}");
    assert_eq!(integrity_check(&phone.path), "ok");
}

#[test]
fn an_unrecoverable_unsynced_edit_is_kept_for_export_and_the_record_healed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let other = Phone::enrol(&server, &server.url(), dir.path(), "sup", &supervisor.id);
    other.sync().unwrap();
    let id = a_producer(&phone);

    let mut p = phone.store.producer(&id).unwrap();
    p.address = "无法恢复的地址".into();
    phone.store.update_producer(p).unwrap();
    assert_eq!(chunk_count(&phone, &id), 1);
    let mut q = other.store.producer(&id).unwrap();
    q.owner = "督导改的户主".into();
    other.store.update_producer(q).unwrap();
    other.sync().unwrap();

    // The chunk holding the edit is damaged: the edit cannot be read back.
    let phone = with_store_closed(phone, |p| flip_chunk(p, &id));
    // A full check finds it (as `gridsync-field doctor` would).
    let check = phone
        .store
        .check_integrity(IntegrityLevel::Full, true)
        .unwrap();
    assert_eq!(check.corrupt_found.len(), 1, "{check:?}");
    assert_eq!(check.corrupt_found[0].0, id);

    let report = phone.sync().unwrap();
    assert_eq!(report.kept, 1, "reported by the sync: {report:?}");
    let healed = phone.store.producer(&id).unwrap();
    assert_eq!(healed.owner, "督导改的户主", "the server's copy");
    assert_ne!(healed.address, "无法恢复的地址");
    let kept = phone.store.kept_edits().unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].id, id);
    assert_eq!(kept[0].kind, "producer");
    assert!(kept[0].reason.contains("damaged"), "{}", kept[0].reason);
    let c = phone.store.counts().unwrap();
    assert_eq!((c.corrupt, c.unsynced, c.kept_edits), (0, 0, 1));
    assert_ne!(server_producer(&server, &id).address, "无法恢复的地址");
    // The kept bytes are the damaged ones, for export; dismissing them is the person's call.
    phone.store.dismiss_kept_edit(&id).unwrap();
    assert_eq!(phone.store.counts().unwrap().kept_edits, 0);
    assert_eq!(integrity_check(&phone.path), "ok");
}

/// Measures `PRAGMA quick_check` and the open-time check on a phone store bootstrapped
/// with a township (about 19,500 records). Prints figures; asserts nothing about time.
/// `GRIDSYNC_TEST_BACKEND=sqlite cargo test -p gridsync-tests --test heal -- --ignored --nocapture`
#[test]
#[ignore]
fn township_quick_check_cost() {
    use gridsync_server::dataset::{generate, DatasetSpec};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = generate(&DatasetSpec::township(7));
    server.load(&data);
    let township = data.townships().next().unwrap().code.clone();
    let supervisor = person_in(&data, Role::Supervisor, &township);
    let phone = Phone::enrol(&server, &server.url(), dir.path(), "sup", &supervisor.id);
    let t = std::time::Instant::now();
    phone.sync().unwrap();
    println!("bootstrap: {:.1} s", t.elapsed().as_secs_f64());
    let records = phone.store.record_ids().unwrap().len();
    let path = phone.path.clone();
    drop(phone);
    checkpoint(&path);
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!("store: {records} records, {:.1} MB", bytes as f64 / 1e6);
    for run in 0..5 {
        // A cold-ish connection each time (the OS page cache stays warm).
        let c = rusqlite::Connection::open(&path).unwrap();
        let t = std::time::Instant::now();
        let ok: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
        let quick = t.elapsed();
        drop(c);
        let s = Store::open(&path).unwrap();
        let open = s.open_check().unwrap();
        let t = std::time::Instant::now();
        let full = s.check_integrity(IntegrityLevel::Full, false).unwrap();
        let full_ms = t.elapsed().as_millis();
        let t = std::time::Instant::now();
        let quick_level = s.check_integrity(IntegrityLevel::Quick, false).unwrap();
        let quick_level_ms = t.elapsed().as_millis();
        println!(
            "run {run}: quick_check {ok} {:.1} ms; open-time check (quick_check + counts) {} ms; \
             quick level {} ms; full level {} ms ({} documents); problems {}",
            quick.as_secs_f64() * 1e3,
            open.elapsed_ms,
            quick_level_ms,
            full_ms,
            full.documents_checked,
            open.found_problems() || quick_level.found_problems() || full.found_problems()
        );
    }
}
