//! The PostgreSQL push: decided on a snapshot of its records, written by a group commit that
//! locks the records and checks that none of them moved since the snapshot
//! (`storage/postgres.rs`). Real PostgreSQL (`GRIDSYNC_TEST_POSTGRES`; skipped without it),
//! several storage instances on one schema as several servers would be.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use gridsync_core::model::RecordKind;
use gridsync_core::sync::protocol::{PushOutcome, PushRecord, RejectCode};
use gridsync_server::storage::postgres::PostgresStorage;
use gridsync_server::storage::testing::{test_url_from_env, ScratchSchema};
use gridsync_server::storage::{
    AuditFilter, Author, DumpChunk, PushDecision, Storage, StorageError, StoredRecord,
};

fn author(device: &str) -> Author {
    Author {
        person_id: "p1".into(),
        device_id: Some(device.into()),
    }
}

/// `n` instances of one fresh schema (the guard keeps it).
fn instances(n: usize) -> Option<(ScratchSchema, Vec<Arc<dyn Storage>>)> {
    let url = test_url_from_env()?;
    let schema = ScratchSchema::new(&url).expect("scratch schema");
    let all = (0..n)
        .map(|_| {
            Arc::new(PostgresStorage::open_in_schema(&url, schema.name()).expect("open"))
                as Arc<dyn Storage>
        })
        .collect();
    Some((schema, all))
}

/// A decision that appends the pushed bytes to the stored document, in `grid`.
fn append(stored: Option<&StoredRecord>, p: &PushRecord, grid: &str) -> PushDecision {
    let mut doc = stored.map(|s| s.doc.clone()).unwrap_or_default();
    doc.extend_from_slice(&p.changes);
    PushDecision::Store {
        kind: RecordKind::Producer,
        grid: grid.into(),
        doc,
        heads: vec![1; 32],
        new_changes: p.changes.clone(),
        action: if stored.is_some() { "update" } else { "create" },
        attachments: Vec::new(),
        record: None,
    }
}

fn rec(id: &str, changes: &[u8]) -> PushRecord {
    PushRecord {
        id: id.into(),
        kind: RecordKind::Producer.tag(),
        changes: changes.to_vec(),
        heads: vec![],
    }
}

/// Feed log sequences by grid.
type Log = BTreeMap<String, Vec<i64>>;

/// Feed log sequences by grid, and (grid, seq) of every change row.
fn feeds(s: &dyn Storage) -> (Log, Vec<(String, i64)>) {
    let mut log: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut changes = Vec::new();
    s.export(&mut |c| {
        match c {
            DumpChunk::FeedLog(rows) => {
                for r in rows {
                    log.entry(r.grid).or_default().push(r.seq);
                }
            }
            DumpChunk::Changes(rows) => changes.extend(rows.into_iter().map(|r| (r.grid, r.seq))),
            _ => {}
        }
        Ok(())
    })
    .expect("export");
    (log, changes)
}

/// Three instances, four threads each, pushing batches of the same three records (in
/// different orders, moving them between two grids): every push's bytes end up in its
/// record exactly once, each feed holds 1..=head once, and the change rows are the
/// feed entries.
#[test]
fn instances_pushing_the_same_records_at_once_lose_nothing() {
    let Some((_schema, stores)) = instances(3) else {
        return;
    };
    let decisions = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(12));
    let handles: Vec<_> = (0..12u8)
        .map(|t| {
            let s = stores[usize::from(t) % 3].clone();
            let (barrier, decisions) = (barrier.clone(), decisions.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..15u8 {
                    let ids = ["r0", "r1", "r2"];
                    let push: Vec<PushRecord> = (0..2)
                        .map(|k| {
                            rec(
                                ids[(usize::from(t) + usize::from(i) + k) % 3],
                                &[t, i, k as u8, b';'],
                            )
                        })
                        .collect();
                    let grid = if (t + i) % 2 == 0 { "A" } else { "B" };
                    let mut process = |stored: Option<&StoredRecord>, p: &PushRecord| {
                        decisions.fetch_add(1, Ordering::SeqCst);
                        append(stored, p, grid)
                    };
                    let r = s
                        .apply_push(&author(&format!("d{t}")), &push, &mut process)
                        .expect("push");
                    assert!(r.iter().all(|r| r.outcome == PushOutcome::Accepted));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let s = stores[0].as_ref();
    let mut chunks = BTreeSet::new();
    let mut total = 0;
    for id in ["r0", "r1", "r2"] {
        let doc = s.record(id).expect("read").expect("stored").doc;
        assert_eq!(doc.len() % 4, 0);
        total += doc.len() / 4;
        chunks.extend(doc.chunks(4).map(<[u8]>::to_vec));
    }
    assert_eq!(total, 12 * 15 * 2, "every pushed change stored once");
    assert_eq!(chunks.len(), 12 * 15 * 2, "no change stored twice");
    let audits: usize = ["r0", "r1", "r2"]
        .iter()
        .map(|id| {
            s.audit_list(&AuditFilter::Record((*id).into()), 10_000)
                .expect("audit")
                .len()
        })
        .sum();
    assert_eq!(audits, 12 * 15 * 2);
    let (log, changes) = feeds(s);
    let mut entries = 0;
    for (grid, mut seqs) in log {
        seqs.sort_unstable();
        let head = s.feed_head(&grid).expect("head") as i64;
        assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "feed {grid} gap-free");
        entries += seqs.len();
    }
    // A batch with two changes of one record writes two entries; moves add departures.
    assert!(entries >= 12 * 15 * 2);
    let mut seen = BTreeSet::new();
    assert!(
        changes.iter().all(|c| seen.insert(c.clone())),
        "one change row per entry"
    );
    assert!(decisions.load(Ordering::SeqCst) >= 12 * 15 * 2);
}

/// A push decided on a snapshot that another instance's push overtakes before it is
/// written is decided again on the record as it is now: both pushes are kept.
#[test]
fn a_push_overtaken_after_its_snapshot_is_decided_again() {
    let Some((_schema, stores)) = instances(2) else {
        return;
    };
    let (a, b) = (stores[0].clone(), stores[1].clone());
    assert_eq!(
        a.apply_push(&author("d0"), &[rec("r", b"first;")], &mut |s, p| append(
            s, p, "A"
        ))
        .expect("push")[0]
            .outcome,
        PushOutcome::Accepted
    );
    let mut calls = 0;
    let mut process = |stored: Option<&StoredRecord>, p: &PushRecord| {
        calls += 1;
        if calls == 1 {
            // Between this push's snapshot and its write, another instance writes the
            // same record.
            let r = b
                .apply_push(&author("d1"), &[rec("r", b"other;")], &mut |s, p| {
                    append(s, p, "A")
                })
                .expect("other push");
            assert_eq!(r[0].outcome, PushOutcome::Accepted);
        }
        append(stored, p, "A")
    };
    let r = a
        .apply_push(&author("d0"), &[rec("r", b"mine;")], &mut process)
        .expect("push");
    assert_eq!(r[0].outcome, PushOutcome::Accepted);
    assert_eq!(calls, 2, "decided once more after the snapshot moved");
    let doc = a.record("r").expect("read").expect("stored").doc;
    assert_eq!(doc, b"first;other;mine;".to_vec(), "neither push lost");
    let (log, changes) = feeds(a.as_ref());
    assert_eq!(log["A"], vec![1, 2, 3]);
    assert_eq!(changes.len(), 3);
}

/// A refused push writes nothing (no record, change, feed entry or audit), nor does a
/// cancelled one; a batch with a refused record and a stored one stores only the latter.
#[test]
fn refused_and_cancelled_pushes_write_nothing() {
    let Some((_schema, stores)) = instances(1) else {
        return;
    };
    let s = stores[0].as_ref();
    let r = s
        .apply_push(
            &author("d0"),
            &[rec("x", b"x;"), rec("y", b"y;")],
            &mut |_, _| PushDecision::Reject(RejectCode::Invalid, "no".into()),
        )
        .expect("push");
    assert!(r
        .iter()
        .all(|r| matches!(r.outcome, PushOutcome::Rejected { .. })));
    let cancelled = s.apply_push(
        &author("d0"),
        &[rec("x", b"x;"), rec("y", b"y;")],
        &mut |st, p| {
            if p.id == "y" {
                PushDecision::Cancelled
            } else {
                append(st, p, "A")
            }
        },
    );
    assert!(matches!(cancelled, Err(StorageError::Cancelled)));
    assert!(s.record("x").expect("read").is_none());
    assert!(s.record("y").expect("read").is_none());
    assert_eq!(s.feed_head("A").expect("head"), 0);
    let (log, changes) = feeds(s);
    assert!(log.is_empty() && changes.is_empty());
    assert!(s
        .audit_list(&AuditFilter::Record("x".into()), 10)
        .expect("audit")
        .is_empty());
    let r = s
        .apply_push(
            &author("d0"),
            &[rec("x", b"x;"), rec("y", b"y;")],
            &mut |st, p| {
                if p.id == "x" {
                    PushDecision::Reject(RejectCode::Forbidden, "no".into())
                } else {
                    append(st, p, "A")
                }
            },
        )
        .expect("push");
    assert!(matches!(r[0].outcome, PushOutcome::Rejected { .. }));
    assert_eq!(r[1].outcome, PushOutcome::Accepted);
    assert!(s.record("x").expect("read").is_none());
    assert_eq!(
        s.record("y").expect("read").expect("stored").doc,
        b"y;".to_vec()
    );
    assert_eq!(feeds(s).0["A"], vec![1]);
}

/// Many devices of one instance pushing new records at once (their pushes written in
/// groups): every record stored, every feed gap-free, each record's feed entry its own.
#[test]
fn grouped_pushes_of_many_devices_are_all_written_in_feed_order() {
    let Some((_schema, stores)) = instances(1) else {
        return;
    };
    let s = stores[0].clone();
    let barrier = Arc::new(Barrier::new(24));
    let handles: Vec<_> = (0..24u8)
        .map(|t| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..10u8 {
                    let push: Vec<PushRecord> = (0..5u8)
                        .map(|k| rec(&format!("t{t}-{i}-{k}"), &[t, i, k]))
                        .collect();
                    let grid = ["A", "B", "C"][usize::from(t) % 3];
                    let r = s
                        .apply_push(&author(&format!("d{t}")), &push, &mut |st, p| {
                            append(st, p, grid)
                        })
                        .expect("push");
                    assert!(r.iter().all(|r| r.outcome == PushOutcome::Accepted));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let counts: i64 = s.record_counts().expect("counts").iter().map(|c| c.1).sum();
    assert_eq!(counts, 24 * 10 * 5);
    let (log, changes) = feeds(s.as_ref());
    for g in ["A", "B", "C"] {
        let mut seqs = log[g].clone();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=8 * 10 * 5).collect::<Vec<i64>>(), "feed {g}");
    }
    assert_eq!(changes.len(), 24 * 10 * 5);
    // Each device's audit names it (the author of each push in a group is its own).
    let audit = s
        .audit_list(&AuditFilter::Record("t7-3-2".into()), 10)
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].device_id.as_deref(), Some("d7"));
}
