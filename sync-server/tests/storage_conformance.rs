//! One conformance suite for every storage backend: each check below is written once, over
//! `&dyn Storage`, and run against SQLite (always) and PostgreSQL (with
//! `GRIDSYNC_TEST_POSTGRES`; a CI run without it fails instead of skipping).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use gridsync_core::attachment::AttachmentRef;
use gridsync_core::model::{GridKind, GridLevel, GridNode, Person, RecordKind, Role};
use gridsync_core::sync::protocol::{PushOutcome, PushRecord, RejectCode};
use gridsync_server::storage::postgres::PostgresStorage;
use gridsync_server::storage::sqlite::SqliteStorage;
use gridsync_server::storage::testing::{test_url_from_env, ScratchSchema};
use gridsync_server::storage::{
    copy_all, AppendOutcome, AttachmentLimits, AuditEntry, AuditFilter, Author, DeskSession,
    Device, DumpChunk, EnrolCode, FeedRead, GcReason, PushDecision, Storage, StorageError,
    StoredRecord, ATTACHMENT_DUMP_PIECE, ATTACHMENT_PIECE,
};
use sha2::{Digest, Sha256};

/// A backend under test and what keeps its data alive.
struct Fixture {
    kind: &'static str,
    storage: Arc<dyn Storage>,
    /// Runs SQL on the backing database directly (to damage stored values).
    raw: Box<dyn Fn(&str)>,
    reopen: Box<dyn Fn() -> Arc<dyn Storage>>,
    fresh: Box<dyn Fn() -> Fixture>,
    _keep: Box<dyn std::any::Any>,
}

fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gridsync.db");
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&path).expect("open sqlite"));
    let p2 = path.clone();
    let p3 = path.clone();
    Fixture {
        kind: "sqlite",
        storage,
        raw: Box::new(move |sql| {
            rusqlite::Connection::open(&p3)
                .and_then(|c| c.execute_batch(sql))
                .expect("raw sql");
        }),
        reopen: Box::new(move || Arc::new(SqliteStorage::open(&p2).expect("reopen sqlite"))),
        fresh: Box::new(sqlite_fixture),
        _keep: Box::new(dir),
    }
}

fn postgres_fixture(url: &str) -> Fixture {
    let schema = ScratchSchema::new(url).expect("scratch schema");
    let storage: Arc<dyn Storage> = Arc::new(schema.open().expect("open postgres"));
    let (u2, name) = (url.to_string(), schema.name().to_string());
    let u3 = url.to_string();
    let schema_url = schema.url();
    Fixture {
        kind: "postgres",
        storage,
        raw: Box::new(move |sql| {
            ::postgres::Client::connect(&schema_url, ::postgres::NoTls)
                .and_then(|mut c| c.batch_execute(sql))
                .expect("raw sql");
        }),
        reopen: Box::new(move || {
            Arc::new(PostgresStorage::open_in_schema(&u2, &name).expect("reopen postgres"))
        }),
        fresh: Box::new(move || postgres_fixture(&u3)),
        _keep: Box::new(schema),
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let f = super::sqlite_fixture();
                    super::$name(&f);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let Some(url) = super::test_url_from_env() else { return };
                    let f = super::postgres_fixture(&url);
                    super::$name(&f);
                }
            )*
        }
    };
}

conformance!(
    meta_epoch_and_generation,
    grids_and_people,
    codes_redeem_once_and_expire,
    concurrent_redemptions_enrol_one_device,
    devices_rotate_promote_revoke,
    push_and_pull_in_pages,
    increments_after_a_cursor_and_full_documents_before,
    cursor_tokens_name_feed_entries,
    departures_when_a_record_moves_grid,
    a_moved_record_meets_its_old_sequence_numbers,
    templates_only_feeds,
    duplicates_and_rejections_store_nothing,
    one_record_twice_in_a_batch,
    byte_budget_cuts_pages,
    full_records_by_id,
    audit_filters,
    people_who_left_and_audit_pages,
    real_records_through_the_push_path,
    concurrent_pushes_keep_every_feed_gapless,
    concurrent_pushes_of_one_record_lose_no_update,
    reopen_keeps_data_and_epoch,
    copy_round_trip_keeps_everything,
    copy_refuses_a_target_with_data,
    bad_stored_values_are_errors_naming_the_row,
    one_timestamp_per_push,
    increments_of_many_records_in_one_page,
    import_and_export_stream_many_chunks,
    attachment_refs_follow_the_pushed_records,
    attachment_upload_resumes_at_the_held_offset,
    attachment_corrupt_whole_is_discarded,
    attachment_quota_and_size_limit,
    attachment_garbage_collection,
    attachment_copy_and_backup_carry_the_bytes,
    query_rows_are_written_in_the_push_transaction,
    query_rows_follow_merges_moves_and_rebuilds,
    query_pages_filter_sort_and_page,
    query_rows_of_tests_findings_and_tallies,
    desk_accounts_sessions_and_links,
    grid_charts_and_duties,
    query_rows_of_township_acceptance,
    yearly_confirmations_are_counted_per_grid,
    scale_flags_follow_league_thresholds,
);

// ---------------------------------------------------------------------------------------
// Helpers

fn node(code: &str, level: GridLevel, parent: Option<&str>) -> GridNode {
    GridNode {
        code: code.into(),
        name: format!("网格{code}"),
        level,
        kind: GridKind::Mixed,
        parent: parent.map(str::to_string),
    }
}

fn tree() -> Vec<GridNode> {
    vec![
        node("B", GridLevel::Banner, None),
        node("T1", GridLevel::Township, Some("B")),
        node("T1-V1", GridLevel::Village, Some("T1")),
        node("T1-V2", GridLevel::Village, Some("T1")),
    ]
}

fn person(id: &str, role: Role, grids: &[&str]) -> Person {
    Person {
        id: id.into(),
        name: format!("人员{id}"),
        phone: "13912345678".into(),
        role,
        grids: grids.iter().map(|g| g.to_string()).collect(),
    }
}

fn device(id: &str) -> Device {
    Device {
        id: id.into(),
        person_id: String::new(),
        name: format!("phone {id}"),
        secret_hash: format!("hash-{id}"),
        pending_hash: None,
        created_at_ms: 0,
        last_seen_ms: None,
        revoked_at_ms: None,
        revoked_reason: None,
    }
}

fn author() -> Author {
    Author {
        person_id: "p1".into(),
        device_id: Some("d1".into()),
    }
}

fn head(b: u8) -> Vec<u8> {
    vec![b; 32]
}

/// Pushes `changes` for record `id` into `grid` with a decision that appends the changes
/// to the stored document (the storage does not interpret documents).
fn put(s: &dyn Storage, id: &str, kind: RecordKind, grid: &str, changes: &[u8]) -> PushOutcome {
    put_as(s, "d1", id, kind, grid, changes, &[])
}

/// Like [`put`], pushed by `device_id`, the record referring to `attachments`.
fn put_as(
    s: &dyn Storage,
    device_id: &str,
    id: &str,
    kind: RecordKind,
    grid: &str,
    changes: &[u8],
    attachments: &[AttachmentRef],
) -> PushOutcome {
    let push = vec![PushRecord {
        id: id.into(),
        kind: kind.tag(),
        changes: changes.to_vec(),
        heads: vec![[changes.len() as u8; 32]],
    }];
    let grid = grid.to_string();
    let mut process = |stored: Option<&StoredRecord>, p: &PushRecord| {
        let mut doc = stored.map(|s| s.doc.clone()).unwrap_or_default();
        doc.extend_from_slice(&p.changes);
        PushDecision::Store {
            kind,
            grid: grid.clone(),
            doc,
            heads: head(p.changes.len() as u8),
            new_changes: p.changes.clone(),
            action: if stored.is_some() { "update" } else { "create" },
            attachments: attachments.to_vec(),
            record: None,
        }
    };
    let who = Author {
        person_id: "p1".into(),
        device_id: Some(device_id.into()),
    };
    let r = s.apply_push(&who, &push, &mut process).expect("push");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, id);
    r[0].outcome.clone()
}

/// Records read (id, seq, full, bytes).
type Recs = Vec<(String, u64, bool, Vec<u8>)>;
/// Departures read (id, seq, new grid).
type Deps = Vec<(String, u64, String)>;

/// Reads a feed from `after` to its end in pages: records, departures, last cursor
/// (seq, token) and the number of pages.
fn read_all(s: &dyn Storage, grid: &str, after: u64, page: u32) -> (Recs, Deps, u64, u64, u32) {
    let mut recs = Vec::new();
    let mut deps = Vec::new();
    let mut cursor = (after, 0u64);
    let mut pages = 0;
    loop {
        let p = s
            .pull(
                &[FeedRead {
                    grid: grid.into(),
                    after: cursor.0,
                    templates_only: false,
                }],
                page,
                1 << 30,
            )
            .expect("pull");
        pages += 1;
        for r in &p.records {
            recs.push((r.id.clone(), r.seq, r.full, r.bytes.clone()));
        }
        for d in &p.departures {
            deps.push((d.id.clone(), d.seq, d.new_grid.clone()));
        }
        if let Some(c) = p.cursors.iter().find(|c| c.0 == grid) {
            assert!(c.1 > cursor.0, "the cursor moves forward");
            cursor = (c.1, c.2);
        }
        if !p.more {
            break;
        }
        assert!(pages < 10_000, "paging ends");
    }
    (recs, deps, cursor.0, cursor.1, pages)
}

/// Every row of a store, each table sorted (backends may order text differently).
fn dump(s: &dyn Storage) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    s.export(&mut |chunk: DumpChunk| {
        let (table, _) = chunk.table();
        let rows: Vec<String> = match chunk {
            DumpChunk::Meta(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::Grids(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::People(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::DeskAccounts(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::GridCharts(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::PersonDuties(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::ScaleThresholds(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::Codes(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::Devices(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::Records(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::Changes(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::Departures(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::FeedHeads(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::FeedLog(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::Audit(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::Attachments(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::AttachmentRefs(v) => v.iter().map(|r| format!("{r:?}")).collect(),
            DumpChunk::AttachmentBytes {
                sha256,
                offset,
                bytes,
                last,
            } => vec![format!(
                "{sha256} {offset} {} {last}",
                hex::encode(Sha256::digest(&bytes))
            )],
        };
        out.entry(table).or_default().extend(rows);
        Ok(())
    })
    .expect("export");
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}

/// A store with a bit of everything: grids, people, codes (used and not), devices (one
/// rotated, one revoked), records with changes, a departure, audit entries.
fn populate(s: &dyn Storage) {
    s.import_grids(&tree()).unwrap();
    s.upsert_person(&person("p1", Role::Liaison, &["T1-V1"]))
        .unwrap();
    s.upsert_person(&person("p2", Role::Supervisor, &["T1"]))
        .unwrap();
    // A desk account (copied), a session and a link (not copied).
    s.desk_set_password("p2", "supervisor-two", "$argon2id$v=19$stored", 900)
        .unwrap();
    s.desk_sign_in_failed("p2", 5, 99_000).unwrap();
    s.desk_create_session(&desk_session("sess-p2", "p2", 950))
        .unwrap();
    s.desk_create_link("link-p2", "p2", 950, 5_000).unwrap();
    for (i, code) in ["c1", "c2", "c3"].iter().enumerate() {
        s.insert_code(&EnrolCode {
            code_hash: format!("hash-{code}"),
            person_id: "p1".into(),
            created_by: "admin".into(),
            created_at_ms: 1000 + i as i64,
            expires_at_ms: 10_000,
        })
        .unwrap();
    }
    assert!(s
        .redeem_code("hash-c1", 2000, &device("d1"))
        .unwrap()
        .is_some());
    assert!(s
        .redeem_code("hash-c2", 2001, &device("d2"))
        .unwrap()
        .is_some());
    s.set_pending_secret("d1", "pending-1").unwrap();
    s.revoke_device("d2", "lost in the grassland", 3000)
        .unwrap();
    s.touch_device("d1", 4000).unwrap();
    for i in 0..30 {
        put(
            s,
            &format!("r{i:02}"),
            RecordKind::Producer,
            if i % 3 == 0 { "T1-V2" } else { "T1-V1" },
            format!("create {i}").as_bytes(),
        );
    }
    put(s, "r01", RecordKind::Producer, "T1-V1", b"edit");
    put(s, "r02", RecordKind::Producer, "T1-V2", b"move");
    put(s, "tpl", RecordKind::Template, "T1", b"template");
    s.audit(&AuditEntry {
        at_ms: 5000,
        person_id: "admin-cli".into(),
        device_id: Some("d2".into()),
        record_id: None,
        kind: None,
        grid: None,
        action: "revoke".into(),
        detail: "检查".into(),
    })
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// The checks

fn meta_epoch_and_generation(f: &Fixture) {
    let s = f.storage.as_ref();
    let e1 = s.epoch().unwrap();
    assert!(e1.len() >= 16, "epoch {e1}");
    assert_eq!(s.epoch().unwrap(), e1, "stable");
    let e2 = s.rotate_epoch().unwrap();
    assert_ne!(e2, e1);
    assert_eq!(s.epoch().unwrap(), e2);
    let g0 = s.reference_generation().unwrap();
    s.import_grids(&tree()).unwrap();
    let g1 = s.reference_generation().unwrap();
    assert!(g1 > g0, "grid import bumps the generation");
    s.upsert_person(&person("p1", Role::Liaison, &["T1-V1"]))
        .unwrap();
    assert!(
        s.reference_generation().unwrap() > g1,
        "a person change bumps the generation"
    );
}

fn grids_and_people(f: &Fixture) {
    let s = f.storage.as_ref();
    assert!(s.is_empty().unwrap());
    s.import_grids(&tree()).unwrap();
    assert!(!s.is_empty().unwrap());
    let g = s.grids().unwrap();
    assert_eq!(
        g.iter().map(|n| n.code.as_str()).collect::<Vec<_>>(),
        ["B", "T1", "T1-V1", "T1-V2"]
    );
    assert_eq!(g[2], tree()[2]);
    // Re-import replaces.
    let mut renamed = node("T1-V2", GridLevel::Village, Some("T1"));
    renamed.name = "新名字".into();
    renamed.kind = GridKind::Pastoral;
    s.import_grids(&[renamed.clone()]).unwrap();
    assert_eq!(
        s.grids().unwrap().iter().find(|n| n.code == "T1-V2"),
        Some(&renamed)
    );
    assert_eq!(s.grids().unwrap().len(), 4);

    assert_eq!(s.person("p1").unwrap(), None);
    let p1 = person("p1", Role::Liaison, &["T1-V1"]);
    let p0 = person("p0", Role::Supervisor, &["T1", "B"]);
    s.upsert_person(&p1).unwrap();
    s.upsert_person(&p0).unwrap();
    assert_eq!(s.person("p1").unwrap(), Some(p1.clone()));
    assert_eq!(
        s.people().unwrap(),
        vec![p0.clone(), p1.clone()],
        "sorted by id"
    );
    let mut moved = p1.clone();
    moved.grids = vec!["T1-V2".into()];
    moved.role = Role::Supervisor;
    s.upsert_person(&moved).unwrap();
    assert_eq!(s.person("p1").unwrap(), Some(moved));
}

fn codes_redeem_once_and_expire(f: &Fixture) {
    let s = f.storage.as_ref();
    s.import_grids(&tree()).unwrap();
    s.upsert_person(&person("p1", Role::Liaison, &["T1-V1"]))
        .unwrap();
    let code = |h: &str, exp: i64| EnrolCode {
        code_hash: h.into(),
        person_id: "p1".into(),
        created_by: "admin".into(),
        created_at_ms: 100,
        expires_at_ms: exp,
    };
    s.insert_code(&code("h-ok", 10_000)).unwrap();
    s.insert_code(&code("h-old", 5_000)).unwrap();
    assert!(
        s.insert_code(&code("h-ok", 20_000)).is_err(),
        "a code hash is unique"
    );
    assert_eq!(
        s.redeem_code("h-ok", 6_000, &device("d1")).unwrap(),
        Some("p1".into())
    );
    let d = s.device("d1").unwrap().expect("device registered");
    assert_eq!(d.person_id, "p1");
    assert_eq!(d.created_at_ms, 6_000);
    assert_eq!(d.secret_hash, "hash-d1");
    assert_eq!(
        s.redeem_code("h-ok", 6_001, &device("d2")).unwrap(),
        None,
        "used once"
    );
    assert_eq!(s.device("d2").unwrap(), None);
    assert_eq!(
        s.redeem_code("h-old", 6_000, &device("d3")).unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.redeem_code("h-old", 5_000, &device("d3")).unwrap(),
        None,
        "expires at its expiry time"
    );
    assert_eq!(s.device("d3").unwrap(), None);
    assert_eq!(s.redeem_code("h-none", 1, &device("d4")).unwrap(), None);
    assert_eq!(s.devices().unwrap().len(), 1);
}

fn concurrent_redemptions_enrol_one_device(f: &Fixture) {
    let s = f.storage.clone();
    s.import_grids(&tree()).unwrap();
    s.upsert_person(&person("p1", Role::Liaison, &["T1-V1"]))
        .unwrap();
    s.insert_code(&EnrolCode {
        code_hash: "h".into(),
        person_id: "p1".into(),
        created_by: "a".into(),
        created_at_ms: 0,
        expires_at_ms: i64::MAX,
    })
    .unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (s, b) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                s.redeem_code("h", 10, &device(&format!("d{i}"))).unwrap()
            })
        })
        .collect();
    let won: Vec<_> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(won, vec!["p1".to_string()], "exactly one redemption");
    assert_eq!(s.devices().unwrap().len(), 1);
}

fn devices_rotate_promote_revoke(f: &Fixture) {
    let s = f.storage.as_ref();
    for (i, id) in ["d1", "d2"].iter().enumerate() {
        s.insert_code(&EnrolCode {
            code_hash: format!("h{i}"),
            person_id: "p1".into(),
            created_by: "a".into(),
            created_at_ms: 0,
            expires_at_ms: 100,
        })
        .unwrap();
        s.redeem_code(&format!("h{i}"), 10 + i as i64, &device(id))
            .unwrap()
            .expect("redeemed");
    }
    assert_eq!(
        s.devices()
            .unwrap()
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        ["d1", "d2"],
        "by enrolment time"
    );
    s.set_pending_secret("d1", "new-hash").unwrap();
    let d = s.device("d1").unwrap().unwrap();
    assert_eq!(
        (d.secret_hash.as_str(), d.pending_hash.as_deref()),
        ("hash-d1", Some("new-hash"))
    );
    s.promote_pending_secret("d1").unwrap();
    let d = s.device("d1").unwrap().unwrap();
    assert_eq!(
        (d.secret_hash.as_str(), d.pending_hash.as_deref()),
        ("new-hash", None)
    );
    s.promote_pending_secret("d1").unwrap();
    assert_eq!(
        s.device("d1").unwrap().unwrap().secret_hash,
        "new-hash",
        "promoting without a pending secret changes nothing"
    );
    assert_eq!(s.device("d1").unwrap().unwrap().last_seen_ms, None);
    s.touch_device("d1", 777).unwrap();
    assert_eq!(s.device("d1").unwrap().unwrap().last_seen_ms, Some(777));
    s.revoke_device("d2", "丢失", 900).unwrap();
    let d = s.device("d2").unwrap().unwrap();
    assert_eq!(
        (d.revoked_at_ms, d.revoked_reason.as_deref()),
        (Some(900), Some("丢失"))
    );
    assert!(matches!(
        s.revoke_device("d2", "again", 901),
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        s.revoke_device("nope", "x", 901),
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(
        s.device("d2").unwrap().unwrap().revoked_at_ms,
        Some(900),
        "the first revocation stands"
    );
    assert_eq!(s.device("d1").unwrap().unwrap().revoked_at_ms, None);
}

fn push_and_pull_in_pages(f: &Fixture) {
    let s = f.storage.as_ref();
    for i in 0..25 {
        assert_eq!(
            put(
                s,
                &format!("r{i:02}"),
                RecordKind::Producer,
                "G",
                format!("c{i}").as_bytes()
            ),
            PushOutcome::Accepted
        );
    }
    put(s, "other", RecordKind::Producer, "H", b"x");
    assert_eq!(s.feed_head("G").unwrap(), 25);
    assert_eq!(s.feed_head("H").unwrap(), 1);
    let (recs, deps, last, _, pages) = read_all(s, "G", 0, 10);
    assert_eq!(pages, 3);
    assert!(deps.is_empty());
    assert_eq!(recs.len(), 25);
    assert_eq!(
        recs.iter().map(|r| r.1).collect::<Vec<_>>(),
        (1..=25).collect::<Vec<u64>>(),
        "feed order, each once"
    );
    assert!(
        recs.iter().all(|r| r.2),
        "a device at 0 gets whole documents"
    );
    assert_eq!(recs[3].0, "r03");
    assert_eq!(recs[3].3, b"c3");
    assert_eq!(last, 25);
    // Nothing after the head.
    let p = s
        .pull(
            &[FeedRead {
                grid: "G".into(),
                after: 25,
                templates_only: false,
            }],
            10,
            1 << 20,
        )
        .unwrap();
    assert!(p.records.is_empty() && p.cursors.is_empty() && !p.more);
    // Two feeds in one page: the limit spans them.
    let p = s
        .pull(
            &[
                FeedRead {
                    grid: "G".into(),
                    after: 20,
                    templates_only: false,
                },
                FeedRead {
                    grid: "H".into(),
                    after: 0,
                    templates_only: false,
                },
            ],
            10,
            1 << 20,
        )
        .unwrap();
    assert_eq!(p.records.len(), 6);
    assert_eq!(
        p.cursors
            .iter()
            .map(|c| (c.0.as_str(), c.1))
            .collect::<Vec<_>>(),
        [("G", 25), ("H", 1)]
    );
    assert!(!p.more);
    let p = s
        .pull(
            &[
                FeedRead {
                    grid: "G".into(),
                    after: 20,
                    templates_only: false,
                },
                FeedRead {
                    grid: "H".into(),
                    after: 0,
                    templates_only: false,
                },
            ],
            5,
            1 << 20,
        )
        .unwrap();
    assert_eq!(p.records.len(), 5);
    assert_eq!(
        p.cursors
            .iter()
            .map(|c| (c.0.as_str(), c.1))
            .collect::<Vec<_>>(),
        [("G", 25)]
    );
    assert!(p.more, "H is still to come");
    assert_eq!(
        s.record_counts().unwrap(),
        vec![("producer".to_string(), 26)]
    );
}

fn increments_after_a_cursor_and_full_documents_before(f: &Fixture) {
    let s = f.storage.as_ref();
    put(s, "a", RecordKind::Producer, "G", b"one;");
    put(s, "b", RecordKind::Producer, "G", b"B;");
    put(s, "a", RecordKind::Producer, "G", b"two;");
    put(s, "a", RecordKind::Producer, "G", b"three;");
    // From 0: whole document at its latest sequence.
    let (recs, ..) = read_all(s, "G", 0, 100);
    assert_eq!(
        recs,
        vec![
            ("b".into(), 2, true, b"B;".to_vec()),
            ("a".into(), 4, true, b"one;two;three;".to_vec())
        ]
    );
    // From 2: only the changes after the cursor, in order.
    let (recs, ..) = read_all(s, "G", 2, 100);
    assert_eq!(recs, vec![("a".into(), 4, false, b"two;three;".to_vec())]);
    let (recs, ..) = read_all(s, "G", 3, 100);
    assert_eq!(recs, vec![("a".into(), 4, false, b"three;".to_vec())]);
    let stored = s.record("a").unwrap().unwrap();
    assert_eq!(
        (stored.kind, stored.grid.as_str(), stored.doc.as_slice()),
        (RecordKind::Producer, "G", &b"one;two;three;"[..])
    );
    assert!(s.record("zzz").unwrap().is_none());
    // Heads come back split into 32-byte hashes.
    let p = s
        .pull(
            &[FeedRead {
                grid: "G".into(),
                after: 0,
                templates_only: false,
            }],
            10,
            1 << 20,
        )
        .unwrap();
    assert_eq!(p.records[1].heads, vec![[6u8; 32]]);
}

fn cursor_tokens_name_feed_entries(f: &Fixture) {
    let s = f.storage.as_ref();
    for i in 0..5 {
        put(s, &format!("r{i}"), RecordKind::Producer, "G", b"x");
    }
    let p = s
        .pull(
            &[FeedRead {
                grid: "G".into(),
                after: 0,
                templates_only: false,
            }],
            3,
            1 << 20,
        )
        .unwrap();
    let (grid, seq, token) = p.cursors[0].clone();
    assert_eq!((grid.as_str(), seq), ("G", 3));
    assert!(token > 0 && token <= i64::MAX as u64);
    assert!(s.cursor_valid("G", 3, token).unwrap());
    assert!(
        !s.cursor_valid("G", 3, token ^ 1).unwrap(),
        "another history's token"
    );
    assert!(!s.cursor_valid("G", 9, token).unwrap(), "beyond the head");
    assert!(!s.cursor_valid("H", 3, token).unwrap(), "another feed");
    assert!(
        s.cursor_valid("G", 0, 12345).unwrap(),
        "seq 0 is always valid"
    );
    assert!(s.cursor_valid("unknown", 0, 0).unwrap());
    let (_, _, last, last_token, _) = read_all(s, "G", 0, 2);
    assert_eq!(last, 5);
    assert!(s.cursor_valid("G", 5, last_token).unwrap());
    assert_ne!(last_token, token, "each entry has its own token");
    assert_eq!(s.feed_head("G").unwrap(), 5);
    assert_eq!(s.feed_head("unknown").unwrap(), 0);
}

fn departures_when_a_record_moves_grid(f: &Fixture) {
    let s = f.storage.as_ref();
    put(s, "m", RecordKind::Producer, "A", b"born;");
    put(s, "stay", RecordKind::Producer, "A", b"s;");
    put(s, "b0", RecordKind::Producer, "B", b"b;");
    let a_head = s.feed_head("A").unwrap();
    let b_head = s.feed_head("B").unwrap();
    put(s, "m", RecordKind::Producer, "B", b"moved;");
    // A's feed: a departure after the device's cursor.
    let (recs, deps, ..) = read_all(s, "A", a_head, 10);
    assert!(recs.is_empty());
    assert_eq!(deps, vec![("m".into(), a_head + 1, "B".into())]);
    // B's feed: the whole document even though the device is past 0 in B.
    let (recs, deps, ..) = read_all(s, "B", b_head, 10);
    assert!(deps.is_empty());
    assert_eq!(
        recs,
        vec![("m".into(), b_head + 1, true, b"born;moved;".to_vec())]
    );
    // A device reading A from 0 no longer sees the record, but sees the departure.
    let (recs, deps, ..) = read_all(s, "A", 0, 1);
    assert_eq!(
        recs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["stay"]
    );
    assert_eq!(deps.len(), 1);
    // An edit in B keeps grid_since: a device past the move gets an increment.
    let b_after_move = s.feed_head("B").unwrap();
    put(s, "m", RecordKind::Producer, "B", b"edit;");
    let (recs, ..) = read_all(s, "B", b_after_move, 10);
    assert_eq!(
        recs,
        vec![("m".into(), b_after_move + 1, false, b"edit;".to_vec())]
    );
    // Back to A: a departure in B, the whole document in A.
    let a_now = s.feed_head("A").unwrap();
    put(s, "m", RecordKind::Producer, "A", b"back;");
    let (recs, ..) = read_all(s, "A", a_now, 10);
    assert_eq!(
        recs,
        vec![(
            "m".into(),
            a_now + 1,
            true,
            b"born;moved;edit;back;".to_vec()
        )]
    );
    let (_, deps, ..) = read_all(s, "B", b_after_move + 1, 10);
    assert_eq!(deps, vec![("m".into(), b_after_move + 2, "A".into())]);
}

fn a_moved_record_meets_its_old_sequence_numbers(f: &Fixture) {
    let s = f.storage.as_ref();
    // Created in A at sequence 1, moved into the empty B, where it takes sequence 1 again.
    put(s, "m", RecordKind::Producer, "A", b"a1;");
    for i in 2..=5 {
        put(
            s,
            "m",
            RecordKind::Producer,
            "A",
            format!("a{i};").as_bytes(),
        );
    }
    assert_eq!(
        put(s, "m", RecordKind::Producer, "B", b"b1;"),
        PushOutcome::Accepted
    );
    assert_eq!(s.feed_head("B").unwrap(), 1);
    for i in 2..=4 {
        put(s, &format!("x{i}"), RecordKind::Producer, "B", b"x;");
    }
    // An edit in B at sequence 5; A's sequence 5 was also a change of this record.
    put(s, "m", RecordKind::Producer, "B", b"b5;");
    assert_eq!(s.feed_head("B").unwrap(), 5);
    let (recs, ..) = read_all(s, "B", 4, 10);
    assert_eq!(
        recs,
        vec![("m".into(), 5, false, b"b5;".to_vec())],
        "only the changes made in B after the cursor"
    );
    let (recs, ..) = read_all(s, "B", 0, 10);
    assert_eq!(recs.last().unwrap().3, b"a1;a2;a3;a4;a5;b1;b5;");
}

fn templates_only_feeds(f: &Fixture) {
    let s = f.storage.as_ref();
    put(s, "p", RecordKind::Producer, "T", b"p");
    put(s, "t", RecordKind::Template, "T", b"t");
    put(s, "mv", RecordKind::Producer, "T", b"m");
    put(s, "mv", RecordKind::Producer, "V", b"m2");
    let p = s
        .pull(
            &[FeedRead {
                grid: "T".into(),
                after: 0,
                templates_only: true,
            }],
            10,
            1 << 20,
        )
        .unwrap();
    assert_eq!(
        p.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["t"]
    );
    assert_eq!(p.records[0].kind, RecordKind::Template.tag());
    assert!(
        p.departures.is_empty(),
        "template-only feeds carry no departures"
    );
    assert_eq!(p.cursors, vec![("T".to_string(), 2, p.cursors[0].2)]);
}

fn duplicates_and_rejections_store_nothing(f: &Fixture) {
    let s = f.storage.as_ref();
    put(s, "a", RecordKind::Producer, "G", b"x");
    let audit_before = s.audit_list(&AuditFilter::All, 100).unwrap().len();
    let push = vec![
        PushRecord {
            id: "a".into(),
            kind: RecordKind::Producer.tag(),
            changes: vec![1],
            heads: vec![],
        },
        PushRecord {
            id: "new".into(),
            kind: RecordKind::Producer.tag(),
            changes: vec![2],
            heads: vec![],
        },
    ];
    let mut seen = Vec::new();
    let mut process = |stored: Option<&StoredRecord>, p: &PushRecord| {
        seen.push((p.id.clone(), stored.map(|s| s.doc.clone())));
        if p.id == "a" {
            PushDecision::Duplicate
        } else {
            PushDecision::Reject(RejectCode::Forbidden, "outside your scope".into())
        }
    };
    let r = s.apply_push(&author(), &push, &mut process).unwrap();
    assert_eq!(
        seen,
        vec![
            ("a".to_string(), Some(b"x".to_vec())),
            ("new".to_string(), None)
        ]
    );
    assert_eq!(r[0].outcome, PushOutcome::Accepted);
    assert_eq!(
        r[1].outcome,
        PushOutcome::Rejected {
            code: RejectCode::Forbidden,
            reason: "outside your scope".into()
        }
    );
    assert_eq!(s.feed_head("G").unwrap(), 1, "no sequence taken");
    assert!(s.record("new").unwrap().is_none());
    assert_eq!(
        s.audit_list(&AuditFilter::All, 100).unwrap().len(),
        audit_before
    );
}

fn one_record_twice_in_a_batch(f: &Fixture) {
    let s = f.storage.as_ref();
    put(s, "a", RecordKind::Producer, "A", b"0;");
    let push: Vec<PushRecord> = [("a", "1;"), ("b", "b;"), ("a", "2;")]
        .iter()
        .map(|(id, c)| PushRecord {
            id: (*id).into(),
            kind: RecordKind::Producer.tag(),
            changes: c.as_bytes().to_vec(),
            heads: vec![],
        })
        .collect();
    let mut stored_seen = Vec::new();
    let mut process = |stored: Option<&StoredRecord>, p: &PushRecord| {
        stored_seen.push(stored.map(|s| (s.grid.clone(), s.doc.clone())));
        let mut doc = stored.map(|s| s.doc.clone()).unwrap_or_default();
        doc.extend_from_slice(&p.changes);
        // The second write of `a` moves it to B.
        let grid = if p.changes == b"2;" { "B" } else { "A" };
        PushDecision::Store {
            kind: RecordKind::Producer,
            grid: grid.into(),
            doc,
            heads: head(1),
            new_changes: p.changes.clone(),
            action: "update",
            attachments: Vec::new(),
            record: None,
        }
    };
    let r = s.apply_push(&author(), &push, &mut process).unwrap();
    assert!(r.iter().all(|r| r.outcome == PushOutcome::Accepted));
    assert_eq!(
        stored_seen,
        vec![
            Some(("A".into(), b"0;".to_vec())),
            None,
            Some(("A".into(), b"0;1;".to_vec()))
        ],
        "the second write of a record sees the first"
    );
    assert_eq!(s.record("a").unwrap().unwrap().doc, b"0;1;2;");
    assert_eq!(
        s.feed_head("A").unwrap(),
        4,
        "0; then 1;, b; and the departure of a"
    );
    assert_eq!(s.feed_head("B").unwrap(), 1);
    let (recs, deps, ..) = read_all(s, "A", 1, 10);
    assert_eq!(recs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(deps, vec![("a".into(), 4, "B".into())]);
    let (recs, ..) = read_all(s, "B", 0, 10);
    assert_eq!(recs, vec![("a".into(), 1, true, b"0;1;2;".to_vec())]);
    let audit = s.audit_list(&AuditFilter::Record("a".into()), 10).unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[1].grid.as_deref(), Some("A"));
    assert_eq!(audit[2].grid.as_deref(), Some("B"));
}

fn byte_budget_cuts_pages(f: &Fixture) {
    let s = f.storage.as_ref();
    for i in 0..6 {
        put(
            s,
            &format!("big{i}"),
            RecordKind::Producer,
            "G",
            &vec![i as u8; 1000],
        );
    }
    // Budget of 2500 bytes: whole records until the budget is passed, at least one.
    let p = s
        .pull(
            &[FeedRead {
                grid: "G".into(),
                after: 0,
                templates_only: false,
            }],
            100,
            2500,
        )
        .unwrap();
    assert_eq!(p.records.len(), 3);
    assert!(p.more);
    assert_eq!(p.cursors[0].1, 3);
    let p = s
        .pull(
            &[FeedRead {
                grid: "G".into(),
                after: 0,
                templates_only: false,
            }],
            100,
            10,
        )
        .unwrap();
    assert_eq!(p.records.len(), 1, "one record even over the budget");
    assert!(p.more);
}

fn full_records_by_id(f: &Fixture) {
    let s = f.storage.as_ref();
    put(s, "a", RecordKind::Producer, "G", b"a1;");
    put(s, "a", RecordKind::Producer, "G", b"a2;");
    put(s, "t", RecordKind::Template, "H", b"t;");
    let r = s
        .full_records(&["t".into(), "missing".into(), "a".into()])
        .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].id.as_str(), r[0].grid.as_str(), r[0].seq, r[0].full),
        ("t", "H", 1, true)
    );
    assert_eq!(r[0].kind, RecordKind::Template.tag());
    assert_eq!(
        (r[1].id.as_str(), r[1].seq, r[1].bytes.as_slice()),
        ("a", 2, &b"a1;a2;"[..])
    );
    assert_eq!(r[1].heads, vec![[3u8; 32]]);
    assert!(s.full_records(&[]).unwrap().is_empty());
}

fn audit_filters(f: &Fixture) {
    let s = f.storage.as_ref();
    put(s, "a", RecordKind::Producer, "G", b"1");
    put(s, "b", RecordKind::Producer, "H", b"22");
    put(s, "a", RecordKind::Producer, "G", b"333");
    s.audit(&AuditEntry {
        at_ms: 42,
        person_id: "admin".into(),
        device_id: None,
        record_id: None,
        kind: None,
        grid: Some("G".into()),
        action: "import".into(),
        detail: "网格导入".into(),
    })
    .unwrap();
    let all = s.audit_list(&AuditFilter::All, 100).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["create", "create", "update", "import"],
        "oldest first"
    );
    assert_eq!(all[0].person_id, "p1");
    assert_eq!(all[0].device_id.as_deref(), Some("d1"));
    assert_eq!(all[0].kind.as_deref(), Some("producer"));
    assert!(
        all[2].detail.contains("3 bytes") && all[2].detail.contains("feed seq 2"),
        "{}",
        all[2].detail
    );
    assert_eq!(all[3].detail, "网格导入");
    let a = s.audit_list(&AuditFilter::Record("a".into()), 100).unwrap();
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|e| e.record_id.as_deref() == Some("a")));
    assert_eq!(
        s.audit_list(&AuditFilter::Grid("G".into()), 100)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        s.audit_list(&AuditFilter::Person("admin".into()), 100)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.audit_list(&AuditFilter::Person("p1".into()), 2)
            .unwrap()
            .len(),
        2,
        "limit"
    );
    assert!(s
        .audit_list(&AuditFilter::Record("none".into()), 100)
        .unwrap()
        .is_empty());
}

fn real_records_through_the_push_path(f: &Fixture) {
    use gridsync_server::dataset::{generate, DatasetSpec};
    let s = f.storage.as_ref();
    let data = generate(&DatasetSpec {
        producers_per_township: 6,
        visits_per_producer: 1,
        ..DatasetSpec::demo()
    });
    gridsync_server::demo::load_dataset(s, &data).unwrap();
    let expected = data.producers.len() + data.visits.len();
    let counts: i64 = s.record_counts().unwrap().iter().map(|c| c.1).sum();
    assert_eq!(counts as usize, expected);
    let mut pulled = 0;
    for g in s.grids().unwrap() {
        let (recs, deps, ..) = read_all(s, &g.code, 0, 7);
        assert!(deps.is_empty());
        for (id, _, full, bytes) in recs {
            assert!(full);
            let doc = gridsync_core::doc::RecordDoc::load(&bytes, &[]).unwrap();
            assert_eq!(doc.read().unwrap().id(), id);
            pulled += 1;
        }
    }
    assert_eq!(pulled, expected);
    // Pushing the same documents again is a duplicate: no new sequences.
    let heads: Vec<u64> = s
        .grids()
        .unwrap()
        .iter()
        .map(|g| s.feed_head(&g.code).unwrap())
        .collect();
    let admin = data.person(Role::Admin).unwrap().clone();
    let nodes = s.grids().unwrap();
    let scope = gridsync_server::scope::Scope::compute(
        &nodes,
        &s.people().unwrap(),
        &admin,
        Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes)),
    );
    let id = &data.producers[0].id;
    let stored = s.record(id).unwrap().unwrap();
    let push = vec![PushRecord {
        id: id.clone(),
        kind: RecordKind::Producer.tag(),
        changes: stored.doc.clone(),
        heads: vec![],
    }];
    let mut ctx = gridsync_server::push::PushContext::new(s, &scope, "conformance-admin");
    let mut process =
        |st: Option<&StoredRecord>, p: &PushRecord| gridsync_server::push::decide(&mut ctx, st, p);
    let r = s
        .apply_push(
            &Author {
                person_id: admin.id.clone(),
                device_id: None,
            },
            &push,
            &mut process,
        )
        .unwrap();
    assert_eq!(r[0].outcome, PushOutcome::Accepted);
    assert_eq!(
        heads,
        s.grids()
            .unwrap()
            .iter()
            .map(|g| s.feed_head(&g.code).unwrap())
            .collect::<Vec<_>>()
    );
}

fn concurrent_pushes_keep_every_feed_gapless(f: &Fixture) {
    let s = f.storage.clone();
    let grids = ["G1", "G2", "G3"];
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..15 {
                    // Batches touching several grids in different orders, and moves.
                    let push: Vec<PushRecord> = (0..3)
                        .map(|k| PushRecord {
                            id: format!("t{t}-r{}", (i + k) % 7),
                            kind: RecordKind::Producer.tag(),
                            changes: vec![t as u8, i as u8, k as u8],
                            heads: vec![],
                        })
                        .collect();
                    let mut process = |stored: Option<&StoredRecord>, p: &PushRecord| {
                        let mut doc = stored.map(|s| s.doc.clone()).unwrap_or_default();
                        doc.extend_from_slice(&p.changes);
                        let g = ["G1", "G2", "G3"]
                            [(p.changes[1] as usize + p.changes[2] as usize * 2 + t) % 3];
                        PushDecision::Store {
                            kind: RecordKind::Producer,
                            grid: g.into(),
                            doc,
                            heads: head(1),
                            new_changes: p.changes.clone(),
                            action: "update",
                            attachments: Vec::new(),
                            record: None,
                        }
                    };
                    let r = s.apply_push(&author(), &push, &mut process).unwrap();
                    assert!(r.iter().all(|r| r.outcome == PushOutcome::Accepted));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let d = dump(s.as_ref());
    let log = &d["feed_log"];
    for g in grids {
        let head = s.feed_head(g).unwrap();
        let n = log
            .iter()
            .filter(|r| r.contains(&format!("grid: \"{g}\"")))
            .count() as u64;
        assert_eq!(n, head, "feed {g}: one log entry per sequence 1..=head");
        let (recs, deps, last, _, _) = read_all(s.as_ref(), g, 0, 4);
        assert!(
            recs.windows(2).all(|w| w[0].1 < w[1].1),
            "records in feed order"
        );
        assert!(
            deps.windows(2).all(|w| w[0].1 < w[1].1),
            "departures in feed order"
        );
        let mut seqs: Vec<u64> = recs
            .iter()
            .map(|r| r.1)
            .chain(deps.iter().map(|d| d.1))
            .collect();
        seqs.sort();
        seqs.dedup();
        assert_eq!(seqs.len(), recs.len() + deps.len(), "no entry twice");
        assert!(last <= head);
    }
    // Every record is in exactly one grid, with all its changes.
    let total: i64 = s.record_counts().unwrap().iter().map(|c| c.1).sum();
    assert_eq!(total, 28);
    assert_eq!(d["changes"].len(), 4 * 15 * 3);
}

fn concurrent_pushes_of_one_record_lose_no_update(f: &Fixture) {
    let s = f.storage.clone();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..20u8 {
                    // Each push appends its own 3-byte chunk to the stored document; a lost
                    // update would drop chunks. Every other push also moves the record.
                    let grid = if (t + i) % 2 == 0 { "A" } else { "B" };
                    assert_eq!(
                        put(
                            s.as_ref(),
                            "shared",
                            RecordKind::Producer,
                            grid,
                            &[t, i, b';']
                        ),
                        PushOutcome::Accepted
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let doc = s.record("shared").unwrap().unwrap().doc;
    assert_eq!(doc.len(), 4 * 20 * 3);
    let mut chunks: Vec<&[u8]> = doc.chunks(3).collect();
    chunks.sort();
    chunks.dedup();
    assert_eq!(
        chunks.len(),
        80,
        "every push is in the document exactly once"
    );
    assert_eq!(
        s.audit_list(&AuditFilter::Record("shared".into()), 1000)
            .unwrap()
            .len(),
        80
    );
    assert_eq!(dump(s.as_ref())["changes"].len(), 80);
}

fn reopen_keeps_data_and_epoch(f: &Fixture) {
    let s = f.storage.as_ref();
    populate(s);
    let before = dump(s);
    let again = (f.reopen)();
    assert_eq!(
        dump(again.as_ref()),
        before,
        "a second open migrates nothing and loses nothing"
    );
    assert_eq!(again.epoch().unwrap(), s.epoch().unwrap());
}

fn copy_round_trip_keeps_everything(f: &Fixture) {
    let s = f.storage.as_ref();
    populate(s);
    let original = dump(s);
    let p = s
        .pull(
            &[FeedRead {
                grid: "T1-V1".into(),
                after: 0,
                templates_only: false,
            }],
            5,
            1 << 20,
        )
        .unwrap();
    let (grid, seq, token) = p.cursors[0].clone();
    // To the other backend when PostgreSQL is available, else to another of the same kind.
    let other = match (f.kind, std::env::var("GRIDSYNC_TEST_POSTGRES")) {
        ("sqlite", Ok(url)) if !url.trim().is_empty() => postgres_fixture(url.trim()),
        ("sqlite", _) => (f.fresh)(),
        _ => sqlite_fixture(),
    };
    let counts = copy_all(s, other.storage.as_ref()).unwrap();
    assert_eq!(counts["records"], 31);
    assert_eq!(counts["devices"], 2);
    assert_eq!(dump(other.storage.as_ref()), original, "every row copied");
    let o = other.storage.as_ref();
    assert_eq!(counts["desk_accounts"], 1);
    assert_eq!(o.desk_account("p2").unwrap(), s.desk_account("p2").unwrap());
    assert_eq!(
        o.desk_account("p2").unwrap().unwrap().failed_attempts,
        1,
        "the failure count travels"
    );
    assert!(
        o.desk_session("sess-p2").unwrap().is_none(),
        "no session copied"
    );
    assert!(
        o.desk_link("link-p2", 1_000).unwrap().is_none(),
        "no link copied"
    );
    assert_eq!(
        o.epoch().unwrap(),
        s.epoch().unwrap(),
        "the epoch is kept: no re-bootstrap"
    );
    assert_eq!(
        o.reference_generation().unwrap(),
        s.reference_generation().unwrap()
    );
    assert!(
        o.cursor_valid(&grid, seq, token).unwrap(),
        "device cursors stay valid"
    );
    let after = |st: &dyn Storage| {
        st.pull(
            &[FeedRead {
                grid: grid.clone(),
                after: seq,
                templates_only: false,
            }],
            100,
            1 << 20,
        )
        .unwrap()
    };
    assert_eq!(
        format!("{:?}", after(o)),
        format!("{:?}", after(s)),
        "the same pages"
    );
    // New writes continue the sequences and the audit order.
    put(o, "after-copy", RecordKind::Producer, "T1-V1", b"n");
    assert_eq!(
        o.feed_head("T1-V1").unwrap(),
        s.feed_head("T1-V1").unwrap() + 1
    );
    let audit = o.audit_list(&AuditFilter::All, 1000).unwrap();
    assert_eq!(
        audit.last().unwrap().record_id.as_deref(),
        Some("after-copy")
    );
    // And back into a fresh store of this backend.
    let back = (f.fresh)();
    copy_all(o, back.storage.as_ref()).unwrap();
    assert_eq!(dump(back.storage.as_ref()), dump(o));
}

fn copy_refuses_a_target_with_data(f: &Fixture) {
    let s = f.storage.as_ref();
    populate(s);
    let target = (f.fresh)();
    target
        .storage
        .import_grids(&[node("X", GridLevel::Banner, None)])
        .unwrap();
    let err = copy_all(s, target.storage.as_ref()).unwrap_err();
    assert!(err.to_string().contains("already holds data"), "{err}");
    assert_eq!(target.storage.grids().unwrap().len(), 1, "nothing copied");
    assert!(target.storage.record("r01").unwrap().is_none());
    // A failed import leaves nothing behind: an empty target fails on a bad chunk and stays empty.
    let empty = (f.fresh)();
    let r = empty
        .storage
        .import(&mut |sink: &mut gridsync_server::storage::DumpSink<'_>| {
            sink(DumpChunk::Grids(vec![gridsync_server::storage::GridRow {
                code: "Y".into(),
                name: "y".into(),
                level: GridLevel::Banner,
                kind: gridsync_core::model::GridKind::Mixed,
                parent: None,
            }]))?;
            Err(StorageError::Invalid("source failed".into()))
        });
    assert!(r.is_err());
    assert!(empty.storage.is_empty().unwrap(), "all or nothing");
}

/// A stored value that is not what its column must hold is an error naming the table, the
/// row and the column, never a default (both backends read rows through one mapping).
fn bad_stored_values_are_errors_naming_the_row(f: &Fixture) {
    let s = f.storage.as_ref();
    populate(s);
    (f.raw)("UPDATE records SET kind = 'spaceship' WHERE id = 'r05'");
    let e = s.record("r05").unwrap_err();
    assert!(matches!(e, StorageError::BadRow(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("records row 'r05', column kind: 'spaceship' is not a record kind"),
        "{msg}"
    );
    assert!(s.full_records(&["r05".into()]).is_err());
    assert!(
        s.export(&mut |_| Ok(())).is_err(),
        "a dump never copies a bad row"
    );
    assert!(s.record("r04").unwrap().is_some(), "other rows still read");
    (f.raw)("UPDATE grids SET level = 'planet' WHERE code = 'T1'");
    let msg = s.grids().unwrap_err().to_string();
    assert!(
        msg.contains("grids row 'T1', column level: 'planet' is not a grid level"),
        "{msg}"
    );
    (f.raw)("UPDATE people SET grids = 'T1-V1' WHERE id = 'p1'");
    let msg = s.person("p1").unwrap_err().to_string();
    assert!(
        msg.contains("people row 'p1', column grids: not a JSON list"),
        "{msg}"
    );
    (f.raw)("UPDATE people SET grids = '[\"T1-V1\"]' WHERE id = 'p1'");
    assert_eq!(
        s.person("p1").unwrap().unwrap().grids,
        vec!["T1-V1".to_string()]
    );
    (f.raw)("UPDATE people SET role = 'emperor' WHERE id = 'p2'");
    let msg = s.people().unwrap_err().to_string();
    assert!(msg.contains("'emperor' is not a role"), "{msg}");
    (f.raw)("UPDATE server_meta SET value = 'many' WHERE key = 'ref_generation'");
    let msg = s.reference_generation().unwrap_err().to_string();
    assert!(
        msg.contains("ref_generation") && msg.contains("'many'"),
        "{msg}"
    );
}

/// Every row a push writes carries one timestamp: the audit entries and the records of one
/// batch agree.
fn one_timestamp_per_push(f: &Fixture) {
    let s = f.storage.as_ref();
    let push: Vec<PushRecord> = (0..40)
        .map(|i| PushRecord {
            id: format!("t{i:02}"),
            kind: RecordKind::Producer.tag(),
            changes: vec![i as u8; 2000],
            heads: vec![[1; 32]],
        })
        .collect();
    let mut process = |_: Option<&StoredRecord>, p: &PushRecord| PushDecision::Store {
        kind: RecordKind::Producer,
        grid: "G".into(),
        doc: p.changes.clone(),
        heads: head(1),
        new_changes: p.changes.clone(),
        action: "create",
        attachments: Vec::new(),
        record: None,
    };
    s.apply_push(&author(), &push, &mut process).unwrap();
    let audit = s.audit_list(&AuditFilter::Grid("G".into()), 100).unwrap();
    assert_eq!(audit.len(), 40);
    assert!(
        audit.iter().all(|e| e.at_ms == audit[0].at_ms),
        "one time per push"
    );
    let mut updated = Vec::new();
    s.export(&mut |chunk| {
        if let DumpChunk::Records(rows) = chunk {
            updated.extend(rows.iter().map(|r| r.updated_at_ms));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(updated.len(), 40);
    assert!(updated.iter().all(|t| *t == audit[0].at_ms));
}

/// A page of increments for more records than the backends load changes for at once: every
/// record gets exactly its own changes after the cursor, in order.
fn increments_of_many_records_in_one_page(f: &Fixture) {
    let s = f.storage.as_ref();
    for i in 0..150 {
        put(s, &format!("m{i:03}"), RecordKind::Producer, "G", b"base;");
    }
    let cursor = s.feed_head("G").unwrap();
    for i in (0..150).rev() {
        put(
            s,
            &format!("m{i:03}"),
            RecordKind::Producer,
            "G",
            format!("e{i};").as_bytes(),
        );
        if i % 2 == 0 {
            put(s, &format!("m{i:03}"), RecordKind::Producer, "G", b"again;");
        }
    }
    let (recs, _, _, _, pages) = read_all(s, "G", cursor, 1000);
    assert_eq!(pages, 1);
    assert_eq!(recs.len(), 150);
    for (id, _, full, bytes) in &recs {
        let i: usize = id[1..].parse().unwrap();
        let want = if i % 2 == 0 {
            format!("e{i};again;")
        } else {
            format!("e{i};")
        };
        assert!(!full, "{id}");
        assert_eq!(String::from_utf8_lossy(bytes), want, "{id}");
    }
}

/// Exports stream in chunks (rows and bytes bounded) and an import of them is the same store.
fn import_and_export_stream_many_chunks(f: &Fixture) {
    let s = f.storage.as_ref();
    for i in 0..2500 {
        put(
            s,
            &format!("x{i:04}"),
            RecordKind::Producer,
            "G",
            &[7u8; 64],
        );
    }
    let mut chunks = Vec::new();
    s.export(&mut |chunk| {
        let (table, n) = chunk.table();
        assert!(n <= gridsync_server::storage::DUMP_CHUNK_ROWS);
        chunks.push((table, n));
        Ok(())
    })
    .unwrap();
    let records: Vec<usize> = chunks
        .iter()
        .filter(|c| c.0 == "records")
        .map(|c| c.1)
        .collect();
    assert_eq!(records, vec![1000, 1000, 500]);
    let copy = (f.fresh)();
    let counts = copy_all(s, copy.storage.as_ref()).unwrap();
    assert_eq!(counts["records"], 2500);
    assert_eq!(counts["audit"], 2500);
    assert_eq!(dump(copy.storage.as_ref()), dump(s));
}

// ---------------------------------------------------------------------------------------
// The command line: `admin copy-to` / `copy-from` between a data directory and PostgreSQL.

#[test]
fn admin_copy_commands_move_a_server_to_postgres_and_back() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("src");
    {
        let src = SqliteStorage::open({
            std::fs::create_dir_all(&src_dir).unwrap();
            src_dir.join("gridsync.db")
        })
        .unwrap();
        populate(&src);
    }
    let original = dump(&SqliteStorage::open(src_dir.join("gridsync.db")).unwrap());
    let schema = ScratchSchema::new(&url).unwrap();
    let bin = env!("CARGO_BIN_EXE_gridsync-server");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .env_remove("GRIDSYNC_DATABASE")
            .env_remove("GRIDSYNC_DATA")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = run(&[
        "admin",
        "--data",
        src_dir.to_str().unwrap(),
        "copy-to",
        "--database",
        &schema.url(),
    ]);
    assert!(ok, "copy-to failed: {stdout}\n{stderr}");
    assert!(stdout.contains("records: 31"), "{stdout}");
    assert_eq!(dump(&schema.open().unwrap()), original);
    // The admin commands work on PostgreSQL with --database.
    let (ok, stdout, stderr) = run(&["admin", "--database", &schema.url(), "status"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("producer: 30"), "{stdout}");
    // `admin backup` of PostgreSQL writes a SQLite file that a restored server serves
    // under a new epoch; an existing file is never overwritten.
    let backup = dir.path().join("pg-backup.db");
    let backup_args = [
        "admin",
        "--database",
        &schema.url(),
        "backup",
        backup.to_str().unwrap(),
    ];
    let (ok, _, stderr) = run(&backup_args);
    assert!(ok, "backup of PostgreSQL: {stderr}");
    let live = schema.open().unwrap();
    let restored = SqliteStorage::open(&backup).unwrap();
    assert_ne!(
        restored.epoch().unwrap(),
        live.epoch().unwrap(),
        "new epoch"
    );
    assert_eq!(
        restored.record_counts().unwrap(),
        live.record_counts().unwrap()
    );
    assert_eq!(
        restored.audit_list(&AuditFilter::All, 10_000).unwrap(),
        live.audit_list(&AuditFilter::All, 10_000).unwrap()
    );
    drop((live, restored));
    let (ok, _, stderr) = run(&backup_args);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    // Copying again into the same database is refused.
    let (ok, _, stderr) = run(&[
        "admin",
        "--data",
        src_dir.to_str().unwrap(),
        "copy-to",
        "--database",
        &schema.url(),
    ]);
    assert!(!ok && stderr.contains("already holds data"), "{stderr}");
    // And back into a new data directory.
    let back_dir = dir.path().join("back");
    let (ok, stdout, stderr) = run(&[
        "admin",
        "--data",
        back_dir.to_str().unwrap(),
        "copy-from",
        "--database",
        &schema.url(),
    ]);
    assert!(ok, "copy-from failed: {stdout}\n{stderr}");
    assert_eq!(
        dump(&SqliteStorage::open(back_dir.join("gridsync.db")).unwrap()),
        original
    );
}

#[test]
fn two_instances_migrating_one_schema_at_once() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    let schema = ScratchSchema::new(&url).unwrap();
    let name = schema.name().to_string();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (u, n) = (url.clone(), name.clone());
            std::thread::spawn(move || {
                PostgresStorage::open_in_schema(&u, &n).map(|s| s.epoch().unwrap())
            })
        })
        .collect();
    let epochs: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert!(
        epochs.windows(2).all(|w| w[0] == w[1]),
        "one schema, one epoch: {epochs:?}"
    );
}

#[test]
fn a_bad_postgres_url_is_a_clear_error() {
    let err = PostgresStorage::open("postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("database"), "{err}");
    let err = PostgresStorage::open("not a url at all")
        .unwrap_err()
        .to_string();
    assert!(!err.is_empty());
    assert!(PostgresStorage::open_in_schema("postgres://x@127.0.0.1:1/db", "Bad-Name").is_err());
}

// ---------------------------------------------------------------------------------------
// Attachments

/// `n` bytes of a JPEG (its magic, then bytes that differ with `seed`) and its reference.
fn jpeg(n: usize, seed: u8) -> (Vec<u8>, AttachmentRef) {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend((0..n.saturating_sub(4)).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    let r = AttachmentRef::of_bytes(&b, Some("image/jpeg"), u64::MAX).unwrap();
    (b, r)
}

/// Uploads all of `bytes` in pieces of `piece` bytes; the last outcome.
fn upload(
    s: &dyn Storage,
    device: &str,
    r: &AttachmentRef,
    bytes: &[u8],
    piece: usize,
) -> AppendOutcome {
    let limits = AttachmentLimits::default();
    let mut last = None;
    for (i, c) in bytes.chunks(piece).enumerate() {
        last = Some(
            s.append_attachment(device, r, (i * piece) as u64, c, &limits)
                .unwrap(),
        );
    }
    last.unwrap()
}

/// Reads an attachment back in pieces as large as the store gives.
fn read_back(s: &dyn Storage, sha: &str) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let piece = s
            .read_attachment(sha, out.len() as u64, usize::MAX)
            .unwrap();
        assert!(piece.len() <= ATTACHMENT_PIECE, "reads are bounded");
        if piece.is_empty() {
            return out;
        }
        out.extend(piece);
    }
}

/// A visit in T1-V1 pushed by d1, referring to `attachments`.
fn put_visit(s: &dyn Storage, id: &str, changes: &[u8], attachments: &[AttachmentRef]) {
    put_as(
        s,
        "d1",
        id,
        RecordKind::Visit,
        "T1-V1",
        changes,
        attachments,
    );
}

fn visit_setup(s: &dyn Storage) {
    s.import_grids(&tree()).unwrap();
    s.upsert_person(&person("p1", Role::Liaison, &["T1-V1"]))
        .unwrap();
}

fn attachment_refs_follow_the_pushed_records(f: &Fixture) {
    let s = f.storage.as_ref();
    visit_setup(s);
    let (_, a) = jpeg(100, 1);
    let (_, b) = jpeg(200, 2);
    put_visit(s, "v1", b"v1", &[a.clone(), b.clone()]);
    assert!(s
        .may_upload("d1", &a.sha256, Some((a.size, &a.mime)))
        .unwrap());
    assert!(s.may_upload("d1", &a.sha256, None).unwrap());
    assert!(!s
        .may_upload("d1", &a.sha256, Some((a.size + 1, &a.mime)))
        .unwrap());
    assert!(!s
        .may_upload("d1", &a.sha256, Some((a.size, "image/png")))
        .unwrap());
    assert!(
        !s.may_upload("d2", &a.sha256, None).unwrap(),
        "another device pushed nothing"
    );
    assert!(s.may_download(&["T1-V1"], &a.sha256).unwrap());
    assert!(!s.may_download(&["T1-V2"], &a.sha256).unwrap());
    assert!(!s.may_download(&[], &a.sha256).unwrap());
    assert!(!s.may_upload("d1", "not-a-hash", None).unwrap());
    // A second device edits the record: its reference is added, the first device's kept.
    put_as(
        s,
        "d2",
        "v1",
        RecordKind::Visit,
        "T1-V1",
        b"e",
        &[a.clone(), b.clone()],
    );
    let devices: Vec<String> = s
        .attachment_refs(&a.sha256)
        .unwrap()
        .into_iter()
        .map(|r| r.device_id)
        .collect();
    assert_eq!(devices, vec!["d1".to_string(), "d2".to_string()]);
    // The record drops one photo: no reference to it remains.
    put_visit(s, "v1", b"f", std::slice::from_ref(&a));
    assert!(s.attachment_refs(&b.sha256).unwrap().is_empty());
    assert_eq!(s.attachment_refs(&a.sha256).unwrap().len(), 2);
    // The record moves grid: downloads follow it.
    put_as(
        s,
        "d1",
        "v1",
        RecordKind::Visit,
        "T1-V2",
        b"g",
        std::slice::from_ref(&a),
    );
    assert!(s.may_download(&["T1-V2"], &a.sha256).unwrap());
    assert!(!s.may_download(&["T1-V1"], &a.sha256).unwrap());
    // Producers hold no attachments; a rejected push records nothing.
    put_as(s, "d3", "p9", RecordKind::Producer, "T1-V1", b"p", &[]);
    assert!(!s.may_upload("d3", &a.sha256, None).unwrap());
}

fn attachment_upload_resumes_at_the_held_offset(f: &Fixture) {
    let s = f.storage.as_ref();
    visit_setup(s);
    let (bytes, r) = jpeg(700_000, 3);
    put_visit(s, "v1", b"v1", std::slice::from_ref(&r));
    let limits = AttachmentLimits::default();
    assert!(s.attachment(&r.sha256).unwrap().is_none());
    // Nothing held: only offset 0 starts it.
    assert_eq!(
        s.append_attachment("d1", &r, 10, &bytes[10..20], &limits)
            .unwrap(),
        AppendOutcome::WrongOffset { held: 0 }
    );
    assert_eq!(
        s.append_attachment("d1", &r, 0, &bytes[..300_000], &limits)
            .unwrap(),
        AppendOutcome::Appended { held: 300_000 }
    );
    // A cut: the client asks, and continues from what is held.
    let m = s.attachment(&r.sha256).unwrap().unwrap();
    assert_eq!(
        (m.held, m.size, m.complete, m.uploaded_by.as_str()),
        (300_000, 700_000, false, "d1")
    );
    assert_eq!(
        s.append_attachment("d1", &r, 250_000, &bytes[250_000..260_000], &limits)
            .unwrap(),
        AppendOutcome::WrongOffset { held: 300_000 },
        "a wrong offset is answered with the held offset"
    );
    assert_eq!(
        s.append_attachment("d1", &r, 300_000, &bytes[300_000..300_000], &limits)
            .unwrap(),
        AppendOutcome::Appended { held: 300_000 },
        "an empty append only asks"
    );
    assert_eq!(
        s.append_attachment("d1", &r, 600_000, &bytes[600_000..], &limits)
            .unwrap(),
        AppendOutcome::WrongOffset { held: 300_000 }
    );
    assert_eq!(
        s.append_attachment("d1", &r, 300_000, &[0u8; 400_001], &limits)
            .unwrap(),
        AppendOutcome::PastEnd { size: 700_000 }
    );
    // A partial read sees what is held.
    assert_eq!(
        s.read_attachment(&r.sha256, 299_990, 100).unwrap(),
        bytes[299_990..300_000]
    );
    assert_eq!(
        s.append_attachment("d1", &r, 300_000, &bytes[300_000..650_000], &limits)
            .unwrap(),
        AppendOutcome::Appended { held: 650_000 }
    );
    assert_eq!(
        s.append_attachment("d1", &r, 650_000, &bytes[650_000..], &limits)
            .unwrap(),
        AppendOutcome::Completed
    );
    let m = s.attachment(&r.sha256).unwrap().unwrap();
    assert!(m.complete && m.completed_at_ms.is_some() && m.held == 700_000);
    // Reads stream in bounded pieces and give the bytes back.
    assert_eq!(
        s.read_attachment(&r.sha256, 0, usize::MAX).unwrap().len(),
        ATTACHMENT_PIECE
    );
    assert_eq!(read_back(s, &r.sha256), bytes);
    assert_eq!(
        s.read_attachment(&r.sha256, 699_999, 10).unwrap(),
        bytes[699_999..]
    );
    assert!(s
        .read_attachment(&r.sha256, 700_000, 10)
        .unwrap()
        .is_empty());
    // Dedupe: another device's photo with the same bytes is the same attachment, complete.
    put_as(
        s,
        "d2",
        "v2",
        RecordKind::Visit,
        "T1-V1",
        b"v2",
        std::slice::from_ref(&r),
    );
    assert_eq!(
        s.append_attachment("d2", &r, 0, &bytes[..10], &limits)
            .unwrap(),
        AppendOutcome::AlreadyComplete
    );
    assert!(matches!(
        s.read_attachment(&"0".repeat(64), 0, 10),
        Err(StorageError::NotFound(_))
    ));
    // Reopened, the store still holds it.
    let again = (f.reopen)();
    assert_eq!(read_back(again.as_ref(), &r.sha256), bytes);
}

fn attachment_corrupt_whole_is_discarded(f: &Fixture) {
    let s = f.storage.as_ref();
    visit_setup(s);
    let limits = AttachmentLimits::default();
    let (bytes, r) = jpeg(5000, 4);
    put_visit(s, "v1", b"v1", std::slice::from_ref(&r));
    let mut bad = bytes.clone();
    bad[4000] ^= 0xFF;
    assert_eq!(
        upload(s, "d1", &r, &bad[..3000], 1000),
        AppendOutcome::Appended { held: 3000 }
    );
    let last = s
        .append_attachment("d1", &r, 3000, &bad[3000..], &limits)
        .unwrap();
    assert!(
        matches!(&last, AppendOutcome::Corrupt { reason } if reason.contains("hash")),
        "{last:?}"
    );
    assert!(
        s.attachment(&r.sha256).unwrap().is_none(),
        "everything held is discarded"
    );
    assert!(s.read_attachment(&r.sha256, 0, 10).is_err());
    // Started again from byte 0, it completes.
    assert_eq!(upload(s, "d1", &r, &bytes, 2000), AppendOutcome::Completed);
    assert_eq!(read_back(s, &r.sha256), bytes);
    // Bytes that hash right but are not of the declared type.
    let png = AttachmentRef {
        mime: "image/png".into(),
        ..jpeg(3000, 5).1
    };
    let (png_bytes, _) = jpeg(3000, 5);
    put_visit(s, "v2", b"v2", std::slice::from_ref(&png));
    let last = upload(s, "d1", &png, &png_bytes, 1000);
    assert!(
        matches!(&last, AppendOutcome::Corrupt { reason } if reason.contains("image/png")),
        "{last:?}"
    );
    assert!(s.attachment(&png.sha256).unwrap().is_none());
}

fn attachment_quota_and_size_limit(f: &Fixture) {
    let s = f.storage.as_ref();
    visit_setup(s);
    let limits = AttachmentLimits {
        max_bytes: 5000,
        quota_bytes: 6000,
    };
    let (a_bytes, a) = jpeg(4000, 6);
    let (b_bytes, b) = jpeg(2500, 7);
    let (c_bytes, c) = jpeg(5001, 8);
    put_visit(s, "v1", b"v1", &[a.clone(), b.clone(), c.clone()]);
    assert_eq!(
        s.append_attachment("d1", &c, 0, &c_bytes[..100], &limits)
            .unwrap(),
        AppendOutcome::TooLarge {
            size: 5001,
            max: 5000
        }
    );
    assert_eq!(
        s.append_attachment("d1", &a, 0, &a_bytes[..100], &limits)
            .unwrap(),
        AppendOutcome::Appended { held: 100 }
    );
    // A partial upload counts against the quota.
    assert_eq!(
        s.append_attachment("d1", &b, 0, &b_bytes[..100], &limits)
            .unwrap(),
        AppendOutcome::OverQuota {
            used: 4000,
            quota: 6000
        }
    );
    assert!(s.attachment(&b.sha256).unwrap().is_none());
    // Continuing an upload already counted is not refused; another device has its own quota.
    assert_eq!(
        s.append_attachment("d1", &a, 100, &a_bytes[100..], &limits)
            .unwrap(),
        AppendOutcome::Completed
    );
    assert_eq!(
        s.append_attachment("d2", &b, 0, &b_bytes, &limits).unwrap(),
        AppendOutcome::Completed
    );
}

fn attachment_garbage_collection(f: &Fixture) {
    let s = f.storage.as_ref();
    visit_setup(s);
    let (kept_bytes, kept) = jpeg(3000, 9);
    let (dropped_bytes, dropped) = jpeg(3000, 10);
    let (stale_bytes, stale) = jpeg(3000, 11);
    put_visit(
        s,
        "v1",
        b"v1",
        &[kept.clone(), dropped.clone(), stale.clone()],
    );
    assert_eq!(
        upload(s, "d1", &kept, &kept_bytes, 1000),
        AppendOutcome::Completed
    );
    assert_eq!(
        upload(s, "d1", &dropped, &dropped_bytes, 1000),
        AppendOutcome::Completed
    );
    assert_eq!(
        upload(s, "d1", &stale, &stale_bytes[..1000], 1000),
        AppendOutcome::Appended { held: 1000 }
    );
    // Nothing to collect while everything is referenced and recent.
    let cutoff = gridsync_core::now_ms() - 7 * 86_400_000;
    assert!(s.gc_attachments(cutoff).unwrap().is_empty());
    put_visit(s, "v1", b"e", &[kept.clone(), stale.clone()]);
    // Partial uploads last written before the cutoff go too.
    let gone = s.gc_attachments(gridsync_core::now_ms() + 1).unwrap();
    let mut got: Vec<(String, GcReason)> = gone
        .iter()
        .map(|g| (g.meta.sha256.clone(), g.reason))
        .collect();
    got.sort();
    let mut want = vec![
        (dropped.sha256.clone(), GcReason::Unreferenced),
        (stale.sha256.clone(), GcReason::StalePartial),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(s.attachment(&dropped.sha256).unwrap().is_none());
    assert!(s.read_attachment(&dropped.sha256, 0, 10).is_err());
    assert!(s.attachment(&stale.sha256).unwrap().is_none());
    assert_eq!(read_back(s, &kept.sha256), kept_bytes);
    // The stale upload starts again from 0.
    assert_eq!(
        upload(s, "d1", &stale, &stale_bytes, 1000),
        AppendOutcome::Completed
    );
}

fn attachment_copy_and_backup_carry_the_bytes(f: &Fixture) {
    let s = f.storage.as_ref();
    populate(s);
    let (big_bytes, big) = jpeg(2 * ATTACHMENT_DUMP_PIECE + 1000, 12);
    let (small_bytes, small) = jpeg(3000, 13);
    let (_, partial) = jpeg(3000, 14);
    put_visit(
        s,
        "v1",
        b"v1",
        &[big.clone(), small.clone(), partial.clone()],
    );
    assert_eq!(
        upload(s, "d1", &big, &big_bytes, 1024 * 1024),
        AppendOutcome::Completed
    );
    assert_eq!(
        upload(s, "d1", &small, &small_bytes, 1000),
        AppendOutcome::Completed
    );
    assert_eq!(
        upload(s, "d1", &partial, &small_bytes[..10], 10),
        AppendOutcome::Appended { held: 10 }
    );
    // Exported in bounded pieces, the last one marked.
    let mut pieces = Vec::new();
    s.export(&mut |c: DumpChunk| {
        if let DumpChunk::AttachmentBytes {
            sha256,
            offset,
            bytes,
            last,
        } = c
        {
            assert!(bytes.len() <= ATTACHMENT_DUMP_PIECE);
            pieces.push((sha256, offset, bytes.len(), last));
        }
        Ok(())
    })
    .unwrap();
    let big_pieces: Vec<_> = pieces.iter().filter(|p| p.0 == big.sha256).collect();
    assert_eq!(big_pieces.len(), 3);
    assert!(big_pieces[2].3 && !big_pieces[0].3);
    assert!(
        !pieces.iter().any(|p| p.0 == partial.sha256),
        "partial uploads are not copied"
    );
    let original = dump(s);
    let other = match (f.kind, std::env::var("GRIDSYNC_TEST_POSTGRES")) {
        ("sqlite", Ok(url)) if !url.trim().is_empty() => postgres_fixture(url.trim()),
        ("sqlite", _) => (f.fresh)(),
        _ => sqlite_fixture(),
    };
    let counts = copy_all(s, other.storage.as_ref()).unwrap();
    assert_eq!(counts["attachments"], 2);
    assert_eq!(
        counts["attachment_bytes"],
        (big_bytes.len() + small_bytes.len()) as u64
    );
    let o = other.storage.as_ref();
    assert_eq!(dump(o), original, "every row and byte copied");
    assert_eq!(read_back(o, &big.sha256), big_bytes);
    assert!(o.may_upload("d1", &partial.sha256, None).unwrap());
    assert!(o.attachment(&partial.sha256).unwrap().is_none());
    // A corrupt byte in a dump is refused on import.
    let target = (f.fresh)();
    let e = target
        .storage
        .import(&mut |sink| {
            s.export(&mut |c: DumpChunk| {
                let c = match c {
                    DumpChunk::AttachmentBytes {
                        sha256,
                        offset,
                        mut bytes,
                        last,
                    } => {
                        let n = bytes.len() - 1;
                        bytes[n] ^= 1;
                        DumpChunk::AttachmentBytes {
                            sha256,
                            offset,
                            bytes,
                            last,
                        }
                    }
                    other => other,
                };
                sink(c)
            })
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("hash"), "{e}");
    assert!(
        target.storage.is_empty().unwrap(),
        "nothing of a refused import is kept"
    );
    // A backup file carries the attachments beside it.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backup.db");
    s.backup_to(&dest).unwrap();
    let b = SqliteStorage::open(&dest).unwrap();
    assert_eq!(read_back(&b, &small.sha256), small_bytes);
    assert_eq!(read_back(&b, &big.sha256), big_bytes);
    assert!(b.attachment(&partial.sha256).unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Query tables

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    default_template, DirectoryReview, Producer, ProducerStatus, ProducerType, Record,
    Rectification, ReviewAction, ReviewEvent, ReviewState, RiskLevel, Visit, VisitStatus,
};
use gridsync_server::storage::{
    DirectoryFilter, DirectorySort, PageReq, ProducerRow, ReviewLevel, VisitFilter,
};

/// Stores `recs` in one push whose decision carries each record (as the push logic does),
/// with its real document; `cancel_after`: the decision of that many records later is
/// `Cancelled`.
fn put_recs(
    s: &dyn Storage,
    recs: &[Record],
    cancel_after: Option<usize>,
) -> Result<Vec<PushOutcome>, StorageError> {
    let actor = gridsync_core::device_actor("d1");
    let docs: Vec<Vec<u8>> = recs
        .iter()
        .map(|r| RecordDoc::create(r, &actor, "p1", 1).unwrap().save())
        .collect();
    let push: Vec<PushRecord> = recs
        .iter()
        .zip(&docs)
        .map(|(r, d)| PushRecord {
            id: r.id().to_string(),
            kind: r.kind().tag(),
            changes: d.clone(),
            heads: vec![[7; 32]],
        })
        .collect();
    let mut n = 0;
    let mut process = |stored: Option<&StoredRecord>, p: &PushRecord| {
        let i = push.iter().position(|x| std::ptr::eq(x, p)).unwrap();
        n += 1;
        if cancel_after.is_some_and(|c| n > c) {
            return PushDecision::Cancelled;
        }
        PushDecision::Store {
            kind: recs[i].kind(),
            grid: recs[i].grid().to_string(),
            doc: docs[i].clone(),
            heads: head(7),
            new_changes: docs[i].clone(),
            action: if stored.is_some() { "update" } else { "create" },
            attachments: vec![],
            record: Some(Box::new(recs[i].clone())),
        }
    };
    Ok(s.apply_push(&author(), &push, &mut process)?
        .into_iter()
        .map(|r| r.outcome)
        .collect())
}

/// `q_producers.confirmed_year` follows the documents' confirmations (push and rebuild),
/// and the count of active producers not confirmed for a year rolls over with the year.
fn yearly_confirmations_are_counted_per_grid(f: &Fixture) {
    use gridsync_core::model::{ProducerStatus, YearConfirmation};
    let s = f.storage.as_ref();
    s.import_grids(&tree()).unwrap();
    // 2026-06-01 in China.
    let june_2026 = 1_780_243_200_000;
    let confirmed = |mut p: Producer, year: i32, at_ms: i64| {
        p.confirmations.push(YearConfirmation {
            id: format!("{}-{year}", p.id),
            year,
            operating: true,
            by: "p1".into(),
            at_ms,
        });
        p
    };
    let p1 = confirmed(producer("C1", "一号", "T1-V1"), 2026, june_2026);
    let p2 = producer("C2", "二号", "T1-V1");
    let p3 = confirmed(producer("C3", "三号", "T1-V2"), 2025, june_2026);
    let mut p4 = producer("C4", "四号", "T1-V1");
    p4.status = ProducerStatus::Closed;
    let recs: Vec<Record> = [p1, p2.clone(), p3, p4]
        .into_iter()
        .map(Record::Producer)
        .collect();
    assert!(put_recs(s, &recs, None)
        .unwrap()
        .iter()
        .all(|o| *o == PushOutcome::Accepted));
    let grids: Vec<String> = ["T1", "T1-V1", "T1-V2"].map(String::from).to_vec();
    let count = |year: i32| s.unconfirmed_counts(&grids, year).unwrap();
    let v = |rows: &[(&str, i64)]| -> Vec<(String, i64)> {
        rows.iter().map(|(g, n)| (g.to_string(), *n)).collect()
    };
    // A closed producer is never counted; a later year's confirmation counts for the
    // years before it.
    assert_eq!(count(2026), v(&[("T1-V1", 1), ("T1-V2", 1)]));
    assert_eq!(count(2025), v(&[("T1-V1", 1)]));
    // January 2027: every active producer is unconfirmed again.
    assert_eq!(count(2027), v(&[("T1-V1", 2), ("T1-V2", 1)]));
    // Only the grids asked for.
    assert_eq!(
        s.unconfirmed_counts(&["T1-V2".to_string()], 2027).unwrap(),
        v(&[("T1-V2", 1)])
    );
    // A confirmation pushed later raises the row; a rebuild gives the same counts.
    let p2 = confirmed(p2, 2027, june_2026 + 365 * 86_400_000);
    put_recs(s, &[Record::Producer(p2)], None).unwrap();
    assert_eq!(count(2027), v(&[("T1-V1", 1), ("T1-V2", 1)]));
    s.rebuild_query_tables().unwrap();
    assert_eq!(count(2027), v(&[("T1-V1", 1), ("T1-V2", 1)]));
    assert_eq!(count(2026), v(&[("T1-V2", 1)]));
}

fn producer(id: &str, name: &str, grid: &str) -> Producer {
    let mut p = Producer::new(
        name,
        ProducerType::FamilyRanch,
        "巴特尔",
        "13912345678",
        grid,
        "p1",
        1_000,
    );
    p.id = id.into();
    p
}

fn visit(id: &str, p: &Producer, inspector: &str, start: i64) -> Visit {
    let mut v = Visit::new(
        p.id.clone(),
        p.grid.clone(),
        inspector,
        &default_template("B"),
        start,
    );
    v.id = id.into();
    v
}

fn ids(rows: &[ProducerRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn query_rows_are_written_in_the_push_transaction(f: &Fixture) {
    let s = f.storage.as_ref();
    s.import_grids(&tree()).unwrap();
    let mut p1 = producer("P1", "巴特尔家庭牧场", "T1-V1");
    p1.credit_code = Some("91152522MA0N4XYZ1B".into());
    assert_eq!(
        put_recs(s, &[Record::Producer(p1.clone())], None).unwrap(),
        vec![PushOutcome::Accepted]
    );
    let row = s.query_producer("P1").unwrap().expect("a row for P1");
    assert_eq!(
        (
            row.name.as_str(),
            row.grid.as_str(),
            row.producer_type,
            row.review_state,
            row.credit_code.as_deref(),
            row.last_visit_ms
        ),
        (
            "巴特尔家庭牧场",
            "T1-V1",
            ProducerType::FamilyRanch,
            ReviewState::Draft,
            Some("91152522MA0N4XYZ1B"),
            None
        )
    );
    // A cancelled batch stores nothing, query rows included.
    let p2 = producer("P2", "其木格", "T1-V1");
    let p3 = producer("P3", "乌力吉", "T1-V1");
    let e = put_recs(s, &[Record::Producer(p2), Record::Producer(p3)], Some(1)).unwrap_err();
    assert!(matches!(e, StorageError::Cancelled), "{e}");
    assert!(s.query_producer("P2").unwrap().is_none());
    // A rejected record has no row.
    let push = vec![PushRecord {
        id: "P4".into(),
        kind: RecordKind::Producer.tag(),
        changes: vec![1],
        heads: vec![[1; 32]],
    }];
    let r = s
        .apply_push(&author(), &push, &mut |_, _| {
            PushDecision::Reject(RejectCode::Forbidden, "no".into())
        })
        .unwrap();
    assert!(matches!(r[0].outcome, PushOutcome::Rejected { .. }));
    assert!(s.query_producer("P4").unwrap().is_none());
    // Visits keep their producer's latest visit; a record written twice in one batch has
    // the rows of its last write; templates have none.
    let v1 = visit("V1", &p1, "p1", 5_000);
    let mut v2 = visit("V2", &p1, "p1", 9_000);
    let tpl = default_template("B");
    assert!(put_recs(
        s,
        &[
            Record::Visit(v1.clone()),
            Record::Visit(v2.clone()),
            Record::Template(tpl.clone())
        ],
        None
    )
    .unwrap()
    .iter()
    .all(|o| *o == PushOutcome::Accepted));
    assert_eq!(
        s.query_producer("P1").unwrap().unwrap().last_visit_ms,
        Some(9_000)
    );
    v2.started_at_ms = 3_000;
    let mut v2b = v2.clone();
    v2b.started_at_ms = 4_000;
    put_recs(s, &[Record::Visit(v2), Record::Visit(v2b)], None).unwrap();
    let snap = s.query_snapshot().unwrap();
    let starts: Vec<(&str, i64)> = snap
        .visits
        .iter()
        .map(|v| (v.id.as_str(), v.started_at_ms))
        .collect();
    assert_eq!(starts, vec![("V1", 5_000), ("V2", 4_000)]);
    assert_eq!(
        s.query_producer("P1").unwrap().unwrap().last_visit_ms,
        Some(5_000)
    );
    assert_eq!(
        snap.producers.len(),
        1,
        "templates and cancelled records have no rows"
    );
    // The rows are the documents' rows: a rebuild finds the same.
    let r = s.rebuild_query_tables().unwrap();
    assert_eq!((r.producers, r.visits, r.unreadable_count), (1, 2, 0));
    assert_eq!(s.query_snapshot().unwrap(), snap);
}

/// The push path for `person` from `device`: decides and stores one record's changes.
fn push_as(
    s: &dyn Storage,
    person: &Person,
    device: &str,
    id: &str,
    kind: RecordKind,
    changes: Vec<u8>,
    heads: Vec<[u8; 32]>,
) -> PushOutcome {
    let nodes = s.grids().unwrap();
    let scope = gridsync_server::scope::Scope::compute(
        &nodes,
        &s.people().unwrap(),
        person,
        Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes)),
    );
    let mut ctx = gridsync_server::push::PushContext::new(s, &scope, device);
    let push = vec![PushRecord {
        id: id.into(),
        kind: kind.tag(),
        changes,
        heads,
    }];
    let mut process =
        |st: Option<&StoredRecord>, p: &PushRecord| gridsync_server::push::decide(&mut ctx, st, p);
    let who = Author {
        person_id: person.id.clone(),
        device_id: Some(device.into()),
    };
    s.apply_push(&who, &push, &mut process).unwrap()[0]
        .outcome
        .clone()
}

/// An edit of the stored producer `id` made on `device` from the stored document.
fn edit_producer(
    s: &dyn Storage,
    person: &Person,
    device: &str,
    id: &str,
    edit: impl FnOnce(&mut Producer),
) -> (Vec<u8>, Vec<[u8; 32]>) {
    let stored = s.record(id).unwrap().unwrap();
    let mut d = RecordDoc::load(&stored.doc, &[]).unwrap();
    d.set_actor(&gridsync_core::device_actor(device));
    let base = d.heads();
    let Record::Producer(before) = d.read().unwrap() else {
        panic!("not a producer")
    };
    let mut after = before.clone();
    edit(&mut after);
    let now = gridsync_core::now_ms();
    after.updated_at_ms = now;
    gridsync_core::rules::apply_edit_workflow(&before, &mut after, &person.id, now);
    assert!(d.update(&Record::Producer(after), &person.id, now).unwrap());
    let changes = d.save_after(&base);
    (changes, d.heads().iter().map(|h| h.0).collect())
}

fn query_rows_follow_merges_moves_and_rebuilds(f: &Fixture) {
    use gridsync_server::dataset::{generate, DatasetSpec};
    let s = f.storage.as_ref();
    let data = generate(&DatasetSpec {
        producers_per_township: 6,
        visits_per_producer: 2,
        ..DatasetSpec::demo()
    });
    gridsync_server::demo::load_dataset(s, &data).unwrap();
    let snap = s.query_snapshot().unwrap();
    assert_eq!(snap.producers.len(), data.producers.len());
    assert_eq!(snap.visits.len(), data.visits.len());
    for p in &data.producers {
        let row = snap.producers.iter().find(|r| r.id == p.id).unwrap();
        let last = data
            .visits
            .iter()
            .filter(|v| v.producer_id == p.id)
            .map(|v| v.started_at_ms)
            .max();
        assert_eq!(
            (&row.name, &row.owner, &row.grid, row.last_visit_ms),
            (&p.name, &p.owner, &p.grid, last)
        );
    }
    let open = data
        .visits
        .iter()
        .filter(|v| v.rectification_open())
        .count();
    assert_eq!(
        snap.visits.iter().filter(|v| v.rect_open).count(),
        open,
        "open rectifications"
    );
    // Two devices edit one producer concurrently (owner on one, phone on the other): the
    // row shows the merge.
    let admin = data.person(Role::Admin).unwrap().clone();
    let pid = data.producers[0].id.clone();
    let a = edit_producer(s, &admin, "dev-a", &pid, |p| p.owner = "新负责人".into());
    let b = edit_producer(s, &admin, "dev-b", &pid, |p| p.phone = "13800001111".into());
    assert_eq!(
        push_as(s, &admin, "dev-a", &pid, RecordKind::Producer, a.0, a.1),
        PushOutcome::Accepted
    );
    assert_eq!(
        push_as(s, &admin, "dev-b", &pid, RecordKind::Producer, b.0, b.1),
        PushOutcome::Accepted
    );
    let row = s.query_producer(&pid).unwrap().unwrap();
    assert_eq!(
        (row.owner.as_str(), row.phone.as_str()),
        ("新负责人", "13800001111")
    );
    // A move to another village: the row follows; the old village's directory loses it.
    let old = row.grid.clone();
    let new = data
        .villages()
        .map(|g| g.code.clone())
        .find(|g| *g != old)
        .unwrap();
    let m = edit_producer(s, &admin, "dev-a", &pid, |p| p.grid = new.clone());
    assert_eq!(
        push_as(s, &admin, "dev-a", &pid, RecordKind::Producer, m.0, m.1),
        PushOutcome::Accepted
    );
    assert_eq!(s.query_producer(&pid).unwrap().unwrap().grid, new);
    let listed = |grid: &str| {
        let page = s
            .directory(
                &DirectoryFilter {
                    grids: vec![grid.to_string()],
                    ..Default::default()
                },
                PageReq::first(200),
            )
            .unwrap();
        page.rows.iter().any(|r| r.id == pid)
    };
    assert!(!listed(&old) && listed(&new));
    // A liaison's push outside their village is rejected and leaves no row.
    let liaison = data
        .people
        .iter()
        .find(|p| p.role == Role::Liaison && p.grids[0] != new)
        .unwrap()
        .clone();
    let mut outsider = producer("outsider", "越界牧场", &new);
    outsider.created_by = liaison.id.clone();
    let mut d = RecordDoc::create(
        &Record::Producer(outsider),
        &gridsync_core::device_actor("dev-l"),
        &liaison.id,
        1_000,
    )
    .unwrap();
    let heads = d.heads().iter().map(|h| h.0).collect();
    let o = push_as(
        s,
        &liaison,
        "dev-l",
        "outsider",
        RecordKind::Producer,
        d.save(),
        heads,
    );
    assert!(matches!(o, PushOutcome::Rejected { .. }), "{o:?}");
    assert!(s.query_producer("outsider").unwrap().is_none());
    // Rebuilding from the documents gives the rows the pushes wrote; damaged, missing and
    // stale rows are repaired, and a second rebuild changes nothing.
    let incremental = s.query_snapshot().unwrap();
    let r = s.rebuild_query_tables().unwrap();
    assert_eq!(
        (r.producers, r.visits, r.unreadable_count, r.orphans),
        (data.producers.len() as u64, data.visits.len() as u64, 0, 0)
    );
    assert_eq!(s.query_snapshot().unwrap(), incremental);
    let v0 = &data.visits[0].id;
    (f.raw)(&format!(
        "DELETE FROM q_visits WHERE id = '{v0}';
         UPDATE q_producers SET name = 'damaged', review_state = 'returned', last_visit_ms = 1 WHERE id = '{pid}';
         DELETE FROM q_producers WHERE id = '{}';
         INSERT INTO q_producers (id, grid, name, owner, phone, producer_type, status, review_state, risk, created_by, created_at_ms, updated_at_ms)
             VALUES ('ghost', '{new}', 'ghost', 'o', '1', 'family_ranch', 'active', 'draft', 'low', 'p1', 1, 1);
         INSERT INTO q_reviews (producer_id, step, event_id, grid, action, by_person, at_ms, state_after)
             VALUES ('ghost2', 0, 'e', 'g', 'submit', 'p1', 1, 'submitted');",
        data.producers[1].id
    ));
    assert_ne!(s.query_snapshot().unwrap(), incremental);
    let r = s.rebuild_query_tables().unwrap();
    assert_eq!(r.orphans, 2, "the ghost producer and the ghost review step");
    assert_eq!(s.query_snapshot().unwrap(), incremental);
    let r = s.rebuild_query_tables().unwrap();
    assert_eq!(r.orphans, 0);
    assert_eq!(s.query_snapshot().unwrap(), incremental);
    // A copy of the store (dump and import) has the same rows.
    let other = (f.fresh)();
    copy_all(s, other.storage.as_ref()).unwrap();
    assert_eq!(other.storage.query_snapshot().unwrap(), incremental);
}

fn query_pages_filter_sort_and_page(f: &Fixture) {
    let s = f.storage.as_ref();
    let mut nodes = tree();
    nodes.push(node("T2", GridLevel::Township, Some("B")));
    nodes.push(node("T2-V1", GridLevel::Village, Some("T2")));
    s.import_grids(&nodes).unwrap();
    let t1: Vec<String> = s.grid_subtree(&["T1".to_string()]).unwrap();
    assert_eq!(t1, vec!["T1", "T1-V1", "T1-V2"]);
    assert_eq!(s.grid_subtree(&["B".to_string()]).unwrap().len(), 6);
    let event = |i: usize, action: ReviewAction, at: i64, after: ReviewState| ReviewEvent {
        id: format!("e{i}"),
        action,
        by: "p2".into(),
        at_ms: at,
        state_after: after,
    };
    let mut ps = Vec::new();
    // A: submitted at 300; B: submitted at 100; C: township approved; D: county approved
    // but edited since (its fingerprint is stale: effectively submitted, at 200);
    // E: returned; F: in T2; G: draft, a wildcard in its name.
    let mut a = producer("A", "阿拉坦家庭牧场", "T1-V1");
    a.review.state = ReviewState::Submitted;
    a.review.history = vec![event(1, ReviewAction::Submit, 300, ReviewState::Submitted)];
    a.risk = RiskLevel::High;
    let mut b = producer("B", "巴雅尔养殖专业合作社", "T1-V2");
    b.producer_type = ProducerType::Cooperative;
    b.owner = "巴雅尔".into();
    b.phone = "13700000001".into();
    b.review.state = ReviewState::Submitted;
    b.review.history = vec![event(2, ReviewAction::Submit, 100, ReviewState::Submitted)];
    let mut c = producer("C", "ABC牧业有限公司", "T1-V1");
    c.producer_type = ProducerType::Enterprise;
    c.review.state = ReviewState::TownshipApproved;
    c.review.approved_fingerprint = Some(c.directory_fingerprint());
    c.review.history = vec![
        event(3, ReviewAction::Submit, 50, ReviewState::Submitted),
        event(
            4,
            ReviewAction::ApproveTownship,
            60,
            ReviewState::TownshipApproved,
        ),
    ];
    let mut d = producer("D", "达来家庭牧场", "T1-V1");
    d.review.state = ReviewState::CountyApproved;
    d.review.approved_fingerprint = Some("stale".into());
    d.review.history = vec![event(
        5,
        ReviewAction::ApproveCounty,
        200,
        ReviewState::CountyApproved,
    )];
    let mut e = producer("E", "额尔敦", "T1-V2");
    e.producer_type = ProducerType::SmallHousehold;
    e.review = DirectoryReview {
        state: ReviewState::Returned,
        approved_fingerprint: None,
        return_reason: Some("缺少证件".into()),
        history: vec![
            event(6, ReviewAction::Submit, 10, ReviewState::Submitted),
            event(
                7,
                ReviewAction::Return("缺少证件".into()),
                20,
                ReviewState::Returned,
            ),
        ],
    };
    e.status = ProducerStatus::Closed;
    let mut f2 = producer("F", "浩特家庭牧场", "T2-V1");
    f2.review.state = ReviewState::Submitted;
    f2.review.history = vec![event(8, ReviewAction::Submit, 5, ReviewState::Submitted)];
    let g = producer("G", "百分之100%牧场", "T1-V1");
    for p in [&a, &b, &c, &d, &e, &f2, &g] {
        ps.push(Record::Producer(p.clone()));
    }
    put_recs(s, &ps, None).unwrap();
    let dir = |filter: DirectoryFilter, page: PageReq| s.directory(&filter, page).unwrap();
    let in_t1 = DirectoryFilter {
        grids: t1.clone(),
        ..Default::default()
    };
    // Sorted by name in code point order, paged.
    let all = dir(in_t1.clone(), PageReq::first(50));
    let names: Vec<&str> = all.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 6);
    assert!(!all.more);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names[0], "ABC牧业有限公司");
    let p1 = dir(
        in_t1.clone(),
        PageReq {
            limit: 4,
            offset: 0,
        },
    );
    let p2 = dir(
        in_t1.clone(),
        PageReq {
            limit: 4,
            offset: 4,
        },
    );
    assert!(p1.more && !p2.more);
    assert_eq!(p1.rows.len() + p2.rows.len(), 6);
    let paged: Vec<&str> = p1
        .rows
        .iter()
        .chain(&p2.rows)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(paged, names);
    // Chinese substring search on name, owner or phone; ASCII either case; wildcards are
    // literal.
    let search = |q: &str| {
        let mut r = ids(&dir(
            DirectoryFilter {
                search: Some(q.into()),
                ..in_t1.clone()
            },
            PageReq::first(50),
        )
        .rows)
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        r.sort();
        r
    };
    assert_eq!(search("家庭牧场"), vec!["A", "D"]);
    assert_eq!(search("雅尔"), vec!["B"]);
    assert_eq!(search("0000000"), vec!["B"]);
    assert_eq!(search("abc"), vec!["C"]);
    assert_eq!(search("100%"), vec!["G"]);
    assert_eq!(search("%"), vec!["G"]);
    assert_eq!(search("_"), Vec::<String>::new());
    assert_eq!(search("浩特"), Vec::<String>::new(), "F is in T2");
    // Filters.
    let only = |f: DirectoryFilter| {
        let mut r: Vec<String> = ids(&dir(f, PageReq::first(50)).rows)
            .into_iter()
            .map(str::to_string)
            .collect();
        r.sort();
        r
    };
    assert_eq!(
        only(DirectoryFilter {
            producer_type: Some(ProducerType::Cooperative),
            ..in_t1.clone()
        }),
        vec!["B"]
    );
    assert_eq!(
        only(DirectoryFilter {
            review_state: Some(ReviewState::Submitted),
            ..in_t1.clone()
        }),
        vec!["A", "B", "D"],
        "D's approval is stale"
    );
    assert_eq!(
        only(DirectoryFilter {
            risk: Some(RiskLevel::High),
            ..in_t1.clone()
        }),
        vec!["A"]
    );
    assert_eq!(
        only(DirectoryFilter {
            status: Some(ProducerStatus::Closed),
            ..in_t1.clone()
        }),
        vec!["E"]
    );
    assert_eq!(
        only(DirectoryFilter {
            grids: vec!["T1-V2".into()],
            ..Default::default()
        }),
        vec!["B", "E"]
    );
    assert!(
        only(DirectoryFilter::default()).is_empty(),
        "no grids, no rows"
    );
    let recent = dir(
        DirectoryFilter {
            sort: DirectorySort::RecentlyUpdated,
            ..in_t1.clone()
        },
        PageReq::first(50),
    );
    assert_eq!(recent.rows.len(), 6);
    // Page sizes are bounded.
    for bad in [0, gridsync_server::storage::MAX_PAGE + 1] {
        let e = s
            .directory(&in_t1, PageReq::first(bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("page size"), "{e}");
    }
    // Review queues: longest waiting first, in the grids asked.
    let queue = |grids: &[String], level| {
        ids(&s
            .review_queue(grids, level, PageReq::first(50))
            .unwrap()
            .rows)
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    assert_eq!(queue(&t1, ReviewLevel::Township), vec!["B", "D", "A"]);
    assert_eq!(queue(&t1, ReviewLevel::County), vec!["C"]);
    let all_grids = s.grid_subtree(&["B".to_string()]).unwrap();
    assert_eq!(
        queue(&all_grids, ReviewLevel::Township),
        vec!["F", "B", "D", "A"]
    );
    let q1 = s
        .review_queue(
            &t1,
            ReviewLevel::Township,
            PageReq {
                limit: 2,
                offset: 0,
            },
        )
        .unwrap();
    assert!(q1.more && q1.rows.len() == 2);
    // Review steps, with the reason of a return.
    let steps = s.producer_reviews("E").unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (
            steps[1].action.as_str(),
            steps[1].reason.as_deref(),
            steps[1].state_after
        ),
        ("return", Some("缺少证件"), ReviewState::Returned)
    );
    assert_eq!(
        s.query_producer("E").unwrap().unwrap().review_at_ms,
        Some(20)
    );
    // Visits: a producer's newest first; by grid, inspector, time and status.
    let mut vs = Vec::new();
    for i in 0..5i64 {
        let mut v = visit(
            &format!("VA{i}"),
            &a,
            if i % 2 == 0 { "p1" } else { "p2" },
            1_000 * (i + 1),
        );
        if i == 4 {
            v.status = VisitStatus::Completed;
            v.ended_at_ms = Some(5_500);
        }
        if i == 1 || i == 3 {
            v.rectification = Some(Rectification {
                required: true,
                deadline: format!("2025-0{}-01", 7 - i),
                notice_number: format!("N{i}"),
                resolved_at_ms: None,
            });
        }
        vs.push(Record::Visit(v));
    }
    let mut vb = visit("VB0", &b, "p2", 2_500);
    vb.rectification = Some(Rectification {
        required: true,
        deadline: "2025-05-15".into(),
        notice_number: "NB".into(),
        resolved_at_ms: Some(3_000),
    });
    vs.push(Record::Visit(vb));
    let mut vf = visit("VF0", &f2, "p3", 2_600);
    vf.rectification = Some(Rectification {
        required: true,
        deadline: "2025-01-01".into(),
        notice_number: "NF".into(),
        resolved_at_ms: None,
    });
    vs.push(Record::Visit(vf));
    put_recs(s, &vs, None).unwrap();
    let vids = |rows: &[gridsync_server::storage::VisitRow]| {
        rows.iter().map(|v| v.id.clone()).collect::<Vec<_>>()
    };
    let pv = s.producer_visits("A", PageReq::first(3)).unwrap();
    assert_eq!(vids(&pv.rows), vec!["VA4", "VA3", "VA2"]);
    assert!(pv.more);
    let pv2 = s
        .producer_visits(
            "A",
            PageReq {
                limit: 3,
                offset: 3,
            },
        )
        .unwrap();
    assert_eq!(vids(&pv2.rows), vec!["VA1", "VA0"]);
    assert!(!pv2.more);
    assert_eq!(
        s.query_producer("A").unwrap().unwrap().last_visit_ms,
        Some(5_000)
    );
    let visits = |f: VisitFilter| vids(&s.visits(&f, PageReq::first(50)).unwrap().rows);
    let in_t1v = VisitFilter {
        grids: t1.clone(),
        ..Default::default()
    };
    assert_eq!(
        visits(in_t1v.clone()),
        vec!["VA4", "VA3", "VA2", "VB0", "VA1", "VA0"]
    );
    assert_eq!(
        visits(VisitFilter {
            inspector: Some("p2".into()),
            ..in_t1v.clone()
        }),
        vec!["VA3", "VB0", "VA1"]
    );
    assert_eq!(
        visits(VisitFilter {
            from_ms: Some(2_000),
            to_ms: Some(4_000),
            ..in_t1v.clone()
        }),
        vec!["VA2", "VB0", "VA1"]
    );
    assert_eq!(
        visits(VisitFilter {
            status: Some(VisitStatus::Completed),
            ..in_t1v.clone()
        }),
        vec!["VA4"]
    );
    assert_eq!(
        visits(VisitFilter {
            producer_id: Some("B".into()),
            ..in_t1v.clone()
        }),
        vec!["VB0"]
    );
    assert!(visits(VisitFilter {
        grids: vec!["T2-V1".into()],
        producer_id: Some("A".into()),
        ..Default::default()
    })
    .is_empty());
    // Open rectifications: earliest deadline first, resolved ones left out, overdue flagged.
    let rect = |grids: &[String], overdue_only| {
        s.open_rectifications(grids, "2025-05-01", overdue_only, PageReq::first(50))
            .unwrap()
            .rows
            .into_iter()
            .map(|r| (r.visit.id, r.producer_name, r.overdue))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rect(&t1, false),
        vec![
            ("VA3".to_string(), "阿拉坦家庭牧场".to_string(), true),
            ("VA1".to_string(), "阿拉坦家庭牧场".to_string(), false),
        ]
    );
    assert_eq!(
        rect(&all_grids, true),
        vec![
            ("VF0".to_string(), "浩特家庭牧场".to_string(), true),
            ("VA3".to_string(), "阿拉坦家庭牧场".to_string(), true),
        ]
    );
    // Resolving one closes it.
    let Record::Visit(mut va3) = vs[3].clone() else {
        unreachable!()
    };
    va3.rectification.as_mut().unwrap().resolved_at_ms = Some(6_000);
    put_recs(s, &[Record::Visit(va3)], None).unwrap();
    assert_eq!(rect(&t1, true), vec![]);
}

/// Every page query runs on an index of its table (SQLite's plan, without statistics, as a
/// server runs): no full scan of `q_producers` or `q_visits`.
#[test]
fn sqlite_page_queries_use_indexes() {
    use gridsync_server::dataset::{generate, DatasetSpec};
    use gridsync_server::storage::query::{
        directory_sql, like_pattern, open_rectifications_sql, producer_visits_sql,
        review_queue_sql, visits_sql,
    };
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(dir.path().join("plans.db")).unwrap();
    let data = generate(&DatasetSpec {
        townships: 2,
        villages_per_township: 4,
        producers_per_township: 40,
        visits_per_producer: 3,
        ..DatasetSpec::banner(7)
    });
    gridsync_server::demo::load_dataset(&s, &data).unwrap();
    let township = data.townships().next().unwrap().code.clone();
    let grids = s.grid_subtree(&[township]).unwrap();
    let g: Vec<&str> = grids.iter().map(String::as_str).collect();
    let page = PageReq::first(50);
    let pattern = like_pattern("牧场");
    let filtered = DirectoryFilter {
        grids: grids.clone(),
        producer_type: Some(ProducerType::FamilyRanch),
        review_state: Some(ReviewState::Draft),
        risk: Some(RiskLevel::Low),
        ..Default::default()
    };
    let recent = DirectoryFilter {
        grids: grids.clone(),
        sort: DirectorySort::RecentlyUpdated,
        ..Default::default()
    };
    let by_inspector = VisitFilter {
        grids: grids.clone(),
        inspector: Some(data.people[0].id.clone()),
        ..Default::default()
    };
    let in_grids = VisitFilter {
        grids: grids.clone(),
        from_ms: Some(0),
        ..Default::default()
    };
    let pid = data.producers[0].id.clone();
    let plain = DirectoryFilter {
        grids: grids.clone(),
        ..Default::default()
    };
    let queries = vec![
        (
            "directory by name",
            directory_sql(&plain, &g, None, page).unwrap(),
        ),
        (
            "directory",
            directory_sql(&filtered, &g, None, page).unwrap(),
        ),
        (
            "directory search",
            directory_sql(&filtered, &g, Some(&pattern), page).unwrap(),
        ),
        (
            "directory recent",
            directory_sql(&recent, &g, None, page).unwrap(),
        ),
        (
            "review queue",
            review_queue_sql(&g, ReviewLevel::Township, page).unwrap(),
        ),
        ("producer visits", producer_visits_sql(&pid, page).unwrap()),
        (
            "visits by inspector",
            visits_sql(&by_inspector, &g, page).unwrap(),
        ),
        ("visits in grids", visits_sql(&in_grids, &g, page).unwrap()),
        (
            "open rectifications",
            open_rectifications_sql(&g, "2025-01-01", false, page).unwrap(),
        ),
    ];
    for (what, q) in &queries {
        let plan = s.explain_query_plan(q).unwrap();
        let text = plan.join(" | ");
        assert!(
            plan.iter()
                .all(|l| !l.starts_with("SCAN ") || l.starts_with("SCAN json_each")),
            "{what} scans a table: {text}"
        );
        assert!(
            plan.iter().any(|l| (l.contains("q_producers")
                || l.contains("q_visits")
                || l.starts_with("SEARCH v"))
                && (l.contains("USING INDEX") || l.contains("USING COVERING INDEX"))),
            "{what} uses no index: {text}"
        );
        let index = match *what {
            "directory" | "directory search" | "review queue" => "q_producers_review",
            "directory recent" => "q_producers_grid_updated",
            // Either index on the grid: several grids need a sort anyway.
            "directory by name" => "q_producers_grid_",
            "producer visits" => "q_visits_producer",
            "visits by inspector" => "q_visits_inspector",
            "visits in grids" => "q_visits_grid",
            _ => "q_visits_rect_open",
        };
        assert!(text.contains(index), "{what} does not use {index}: {text}");
    }
}

// ---------------------------------------------------------------------------------------
// Desk sign-in: accounts, lockout, sessions, one-time links, deactivation.

fn desk_session(token_hash: &str, person: &str, now: i64) -> DeskSession {
    DeskSession {
        token_hash: token_hash.into(),
        person_id: person.into(),
        csrf_token: format!("csrf-{token_hash}"),
        created_at_ms: now,
        last_seen_ms: now,
        expires_at_ms: now + 1000,
    }
}

fn desk_accounts_sessions_and_links(f: &Fixture) {
    let s = f.storage.as_ref();
    s.import_grids(&tree()).unwrap();
    s.upsert_person(&person("sup", Role::Supervisor, &["T1"]))
        .unwrap();
    s.upsert_person(&person("cty", Role::CountyReviewer, &["B"]))
        .unwrap();

    // Accounts: created, found by person and username, a taken username refused.
    assert!(s.desk_account("sup").unwrap().is_none());
    s.desk_set_password("sup", "wang", "$argon2id$one", 100)
        .unwrap();
    let a = s.desk_account_by_username("wang").unwrap().unwrap();
    assert_eq!(
        (
            a.person_id.as_str(),
            a.password_hash.as_str(),
            a.created_at_ms,
            a.changed_at_ms
        ),
        ("sup", "$argon2id$one", 100, 100)
    );
    assert_eq!((a.failed_attempts, a.locked_until_ms), (0, None));
    match s.desk_set_password("cty", "wang", "$argon2id$x", 110) {
        Err(StorageError::Invalid(m)) => assert!(m.contains("wang"), "{m}"),
        other => panic!("a taken username must be refused: {other:?}"),
    }
    assert!(s.desk_account("cty").unwrap().is_none(), "nothing stored");
    assert!(s.desk_account_by_username("nobody").unwrap().is_none());

    // Failures count up; the third locks and resets the count; success clears.
    let r = s.desk_sign_in_failed("sup", 3, 5000).unwrap();
    assert_eq!((r.failed_attempts, r.locked_until_ms), (1, None));
    let r = s.desk_sign_in_failed("sup", 3, 5000).unwrap();
    assert_eq!((r.failed_attempts, r.locked_until_ms), (2, None));
    let r = s.desk_sign_in_failed("sup", 3, 5000).unwrap();
    assert_eq!((r.failed_attempts, r.locked_until_ms), (0, Some(5000)));
    let a = s.desk_account("sup").unwrap().unwrap();
    assert_eq!((a.failed_attempts, a.locked_until_ms), (0, Some(5000)));
    let r = s.desk_sign_in_failed("sup", 3, 9000).unwrap();
    assert_eq!(
        (r.failed_attempts, r.locked_until_ms),
        (1, None),
        "the lock stays"
    );
    assert_eq!(
        s.desk_account("sup").unwrap().unwrap().locked_until_ms,
        Some(5000)
    );
    s.desk_sign_in_succeeded("sup").unwrap();
    let a = s.desk_account("sup").unwrap().unwrap();
    assert_eq!((a.failed_attempts, a.locked_until_ms), (0, None));
    // Setting a password keeps the account's creation time and clears a lock.
    s.desk_sign_in_failed("sup", 1, 7000).unwrap();
    s.desk_set_password("sup", "wang2", "$argon2id$two", 200)
        .unwrap();
    let a = s.desk_account("sup").unwrap().unwrap();
    assert_eq!(
        (
            a.username.as_str(),
            a.created_at_ms,
            a.changed_at_ms,
            a.locked_until_ms
        ),
        ("wang2", 100, 200, None)
    );
    assert!(s.desk_account_by_username("wang").unwrap().is_none());

    // Sessions: by hash, touched, deleted one or all of a person.
    s.desk_create_session(&desk_session("h1", "sup", 1000))
        .unwrap();
    s.desk_create_session(&desk_session("h2", "sup", 1000))
        .unwrap();
    s.desk_create_session(&desk_session("h3", "cty", 1000))
        .unwrap();
    assert_eq!(
        s.desk_session("h1").unwrap().unwrap(),
        desk_session("h1", "sup", 1000)
    );
    s.desk_touch_session("h1", 1500).unwrap();
    assert_eq!(s.desk_session("h1").unwrap().unwrap().last_seen_ms, 1500);
    assert!(s.desk_delete_session("h1").unwrap());
    assert!(!s.desk_delete_session("h1").unwrap());
    assert!(s.desk_session("h1").unwrap().is_none());
    assert_eq!(s.desk_delete_sessions_of("sup").unwrap(), 1);
    assert!(s.desk_session("h2").unwrap().is_none());
    assert!(
        s.desk_session("h3").unwrap().is_some(),
        "another person's stays"
    );

    // Deactivation ends the person's sessions and hides the person; reactivation.
    let generation = s.reference_generation().unwrap();
    assert!(s.set_person_active("cty", false).unwrap());
    assert!(s.desk_session("h3").unwrap().is_none());
    assert!(s.person("cty").unwrap().is_none());
    assert!(s.reference_generation().unwrap() > generation);
    assert!(s.set_person_active("cty", true).unwrap());
    assert!(s.person("cty").unwrap().is_some());
    assert!(!s.set_person_active("ghost", false).unwrap());

    // Links: valid until used once or expired.
    s.desk_create_link("L1", "sup", 1000, 2000).unwrap();
    s.desk_create_link("L2", "sup", 1000, 2000).unwrap();
    assert_eq!(s.desk_link("L1", 1500).unwrap().as_deref(), Some("sup"));
    assert_eq!(
        s.desk_link("L1", 1500).unwrap().as_deref(),
        Some("sup"),
        "peeking keeps it"
    );
    assert_eq!(s.desk_use_link("L1", 1600).unwrap().as_deref(), Some("sup"));
    assert!(s.desk_use_link("L1", 1601).unwrap().is_none(), "used once");
    assert!(s.desk_link("L1", 1601).unwrap().is_none());
    assert!(s.desk_link("L2", 2000).unwrap().is_none(), "expired");
    assert!(s.desk_use_link("L2", 2000).unwrap().is_none());
    assert!(s.desk_use_link("nope", 1).unwrap().is_none());

    // Stored across a reopen.
    let again = (f.reopen)();
    assert_eq!(
        again.desk_account("sup").unwrap().unwrap().username,
        "wang2"
    );

    // Purging: sessions past their end or idle, links expired or used long ago.
    let mut live = desk_session("keep", "sup", 10_000);
    live.expires_at_ms = 50_000;
    s.desk_create_session(&live).unwrap();
    let mut idle = desk_session("idle", "sup", 1_000);
    idle.expires_at_ms = 50_000;
    s.desk_create_session(&idle).unwrap();
    s.desk_create_session(&desk_session("ended", "sup", 9_000))
        .unwrap(); // ends at 10_000
    s.desk_create_link("fresh", "sup", 10_000, 90_000).unwrap();
    s.desk_create_link("old", "sup", 1_000, 5_000).unwrap();
    assert_eq!(
        s.desk_purge(12_000, 5_000).unwrap(),
        (2, 3),
        "sessions idle and ended; links old, L1 (used), L2 (expired)"
    );
    assert!(s.desk_session("keep").unwrap().is_some());
    assert!(s.desk_session("idle").unwrap().is_none());
    assert!(s.desk_session("ended").unwrap().is_none());
    assert!(s.desk_link("fresh", 12_000).unwrap().is_some());
    s.desk_delete_session("keep").unwrap();

    // A backup keeps the accounts and drops sessions and links: it signs nobody in.
    s.desk_create_session(&desk_session("h4", "sup", 1000))
        .unwrap();
    s.desk_create_link("L3", "sup", 1000, i64::MAX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backup.db");
    s.backup_to(&dest).unwrap();
    let copy: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&dest).unwrap());
    assert_eq!(
        copy.desk_account("sup").unwrap(),
        s.desk_account("sup").unwrap()
    );
    assert!(copy.desk_session("h4").unwrap().is_none());
    assert!(copy.desk_link("L3", 2000).unwrap().is_none());
    assert!(
        s.desk_session("h4").unwrap().is_some(),
        "the original keeps its own"
    );
}

// ---------------------------------------------------------------------------------------
// Query rows of rapid tests and findings, and the dashboard's tallies

fn rapid_test(
    item: &str,
    verdict: gridsync_core::model::Verdict,
    at: i64,
) -> gridsync_core::model::RapidTest {
    gridsync_core::model::RapidTest {
        id: format!("t-{item}-{at}"),
        sample: "羊尿".into(),
        item: item.into(),
        method: gridsync_core::model::TestMethod::ColloidalGold,
        kit: "kit".into(),
        value: None,
        unit: None,
        verdict,
        operator: "p1".into(),
        tested_at_ms: at,
    }
}

fn finding(
    item: Option<&str>,
    severity: gridsync_core::model::Severity,
    at: i64,
) -> gridsync_core::model::Finding {
    gridsync_core::model::Finding {
        id: format!("f-{at}-{item:?}"),
        item_id: item.map(str::to_string),
        description: "问题".into(),
        severity,
        photos: vec![],
        recorded_by: "p1".into(),
        recorded_at_ms: at,
    }
}

fn query_rows_of_tests_findings_and_tallies(f: &Fixture) {
    use gridsync_core::model::{Severity, Verdict};
    use gridsync_server::storage::tallies::{
        CoverageTally, FindingTally, RectificationTally, TestTally, VisitTally,
    };
    use gridsync_server::storage::{Tallies, TallyQuery};
    const DAY: i64 = 86_400_000;
    let s = f.storage.as_ref();
    s.import_grids(&tree()).unwrap();
    let mut p1 = producer("P1", "甲", "T1-V1");
    p1.risk = RiskLevel::High;
    p1.updated_at_ms = 150 * DAY;
    let mut p2 = producer("P2", "乙", "T1-V1");
    p2.risk = RiskLevel::Low;
    p2.updated_at_ms = 5 * DAY;
    let mut p3 = producer("P3", "丙", "T1-V2");
    p3.status = ProducerStatus::Closed;
    p3.updated_at_ms = 150 * DAY;
    let mut p4 = producer("P4", "丁", "T1-V2");
    p4.updated_at_ms = 150 * DAY;
    let mut v1 = visit("V1", &p1, "p1", 100 * DAY);
    v1.rapid_tests = vec![
        rapid_test("克伦特罗", Verdict::Pass, 100 * DAY + 1),
        rapid_test("克伦特罗", Verdict::Fail, 100 * DAY + 2),
    ];
    v1.findings = vec![
        finding(Some("drug_use"), Severity::Serious, 100 * DAY + 3),
        finding(Some("records"), Severity::Minor, 100 * DAY + 4),
    ];
    v1.rectification = Some(Rectification {
        required: true,
        deadline: "1970-05-01".into(),
        notice_number: "N1".into(),
        resolved_at_ms: None,
    });
    let mut v2 = visit("V2", &p2, "p2", 10 * DAY);
    v2.rapid_tests = vec![rapid_test("有机磷", Verdict::Suspect, 10 * DAY + 1)];
    v2.findings = vec![finding(None, Severity::Major, 10 * DAY + 2)];
    v2.rectification = Some(Rectification {
        required: true,
        deadline: "1970-01-20".into(),
        notice_number: "N2".into(),
        resolved_at_ms: Some(15 * DAY),
    });
    // A visit outside the period counts for nothing but coverage.
    let v3 = visit("V3", &p1, "p1", 300 * DAY);
    let recs: Vec<Record> = [p1, p2, p3, p4]
        .into_iter()
        .map(Record::Producer)
        .chain([v1.clone(), v2, v3].into_iter().map(Record::Visit))
        .collect();
    assert!(put_recs(s, &recs, None)
        .unwrap()
        .iter()
        .all(|o| *o == PushOutcome::Accepted));
    let snap = s.query_snapshot().unwrap();
    let tests: Vec<(&str, i64, &str, &str, &str)> = snap
        .tests
        .iter()
        .map(|t| {
            (
                t.visit_id.as_str(),
                t.pos,
                t.grid.as_str(),
                t.item.as_str(),
                t.verdict.as_str(),
            )
        })
        .collect();
    assert_eq!(
        tests,
        vec![
            ("V1", 0, "T1-V1", "克伦特罗", "pass"),
            ("V1", 1, "T1-V1", "克伦特罗", "fail"),
            ("V2", 0, "T1-V1", "有机磷", "suspect"),
        ]
    );
    let findings: Vec<(&str, i64, Option<&str>, &str, i64)> = snap
        .findings
        .iter()
        .map(|x| {
            (
                x.visit_id.as_str(),
                x.pos,
                x.item_id.as_deref(),
                x.severity.as_str(),
                x.recorded_at_ms,
            )
        })
        .collect();
    assert_eq!(
        findings,
        vec![
            ("V1", 0, Some("drug_use"), "serious", 100 * DAY + 3),
            ("V1", 1, Some("records"), "minor", 100 * DAY + 4),
            ("V2", 0, None, "major", 10 * DAY + 2),
        ]
    );

    let q = TallyQuery {
        grids: vec!["B".into(), "T1".into(), "T1-V1".into(), "T1-V2".into()],
        from_ms: 0,
        to_ms: 200 * DAY,
        month_starts: vec![
            30 * DAY,
            60 * DAY,
            90 * DAY,
            120 * DAY,
            150 * DAY,
            180 * DAY,
        ],
        stale_before_ms: 100 * DAY,
        coverage_at_ms: 120 * DAY,
        visits_until_ms: 120 * DAY,
        interval_days: [365, 90, 30],
        today: "1970-06-01".into(),
        never_visited_limit: 10,
    };
    let mut t = s.tallies(&q).unwrap();
    t.directory
        .sort_by(|a, b| (&a.grid, &a.status).cmp(&(&b.grid, &b.status)));
    let dir: Vec<(&str, &str, &str, i64, i64)> = t
        .directory
        .iter()
        .map(|d| {
            (
                d.grid.as_str(),
                d.review_state.as_str(),
                d.status.as_str(),
                d.producers,
                d.stale,
            )
        })
        .collect();
    assert_eq!(
        dir,
        vec![
            ("T1-V1", "draft", "active", 2, 1),
            ("T1-V2", "draft", "active", 1, 0),
            ("T1-V2", "draft", "closed", 1, 0),
        ]
    );
    t.coverage.sort_by(|a, b| a.grid.cmp(&b.grid));
    // P1 (high, 30 days) last visited on day 100 of 120: covered; P2 (low, 365 days) on
    // day 10: covered; P4 never; P3 is closed; V3 (day 300) is after the instant.
    assert_eq!(
        t.coverage,
        vec![
            CoverageTally {
                grid: "T1-V1".into(),
                active: 2,
                covered: 2,
                never: 0
            },
            CoverageTally {
                grid: "T1-V2".into(),
                active: 1,
                covered: 0,
                never: 1
            },
        ]
    );
    assert_eq!(
        t.never_visited
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        vec!["P4"]
    );
    t.visits.sort_by_key(|v| v.month);
    assert_eq!(
        t.visits,
        vec![
            VisitTally {
                grid: "T1-V1".into(),
                inspector: "p2".into(),
                month: 0,
                visits: 1
            },
            VisitTally {
                grid: "T1-V1".into(),
                inspector: "p1".into(),
                month: 3,
                visits: 1
            },
        ]
    );
    t.tests
        .sort_by(|a, b| (&a.item, &a.verdict).cmp(&(&b.item, &b.verdict)));
    assert_eq!(
        t.tests,
        vec![
            TestTally {
                grid: "T1-V1".into(),
                item: "克伦特罗".into(),
                verdict: "fail".into(),
                tests: 1
            },
            TestTally {
                grid: "T1-V1".into(),
                item: "克伦特罗".into(),
                verdict: "pass".into(),
                tests: 1
            },
            TestTally {
                grid: "T1-V1".into(),
                item: "有机磷".into(),
                verdict: "suspect".into(),
                tests: 1
            },
        ]
    );
    t.findings.sort_by(|a, b| a.severity.cmp(&b.severity));
    assert_eq!(
        t.findings,
        vec![
            FindingTally {
                grid: "T1-V1".into(),
                item_id: None,
                severity: "major".into(),
                findings: 1,
                visits: 1
            },
            FindingTally {
                grid: "T1-V1".into(),
                item_id: Some("records".into()),
                severity: "minor".into(),
                findings: 1,
                visits: 1
            },
            FindingTally {
                grid: "T1-V1".into(),
                item_id: Some("drug_use".into()),
                severity: "serious".into(),
                findings: 1,
                visits: 1
            },
        ]
    );
    assert_eq!(
        t.rectifications,
        vec![RectificationTally {
            grid: "T1-V1".into(),
            ordered: 2,
            resolved: 1,
            open: 1,
            overdue: 1
        }]
    );
    // Grids outside the list count nothing.
    let only_v2 = TallyQuery {
        grids: vec!["T1-V2".into()],
        ..q.clone()
    };
    let t2 = s.tallies(&only_v2).unwrap();
    assert!(t2.visits.is_empty() && t2.tests.is_empty() && t2.findings.is_empty());
    assert_eq!(t2.coverage.len(), 1);
    assert_eq!(
        s.tallies(&TallyQuery {
            grids: vec![],
            ..q.clone()
        })
        .unwrap(),
        Tallies::default()
    );
    assert!(s
        .tallies(&TallyQuery {
            to_ms: 0,
            ..q.clone()
        })
        .is_err());

    // A visit written again replaces its rows; a rebuild finds the same rows; a row whose
    // visit is gone is an orphan.
    let mut v1b = v1;
    v1b.rapid_tests.remove(0);
    v1b.findings.clear();
    put_recs(s, &[Record::Visit(v1b)], None).unwrap();
    let snap = s.query_snapshot().unwrap();
    assert_eq!(
        snap.tests
            .iter()
            .map(|t| (t.visit_id.as_str(), t.verdict.as_str()))
            .collect::<Vec<_>>(),
        vec![("V1", "fail"), ("V2", "suspect")]
    );
    assert_eq!(snap.findings.len(), 1);
    (f.raw)(
        "DELETE FROM q_tests WHERE visit_id = 'V2';
         INSERT INTO q_findings (visit_id, pos, grid, item_id, severity, recorded_at_ms)
             VALUES ('ghost', 0, 'T1-V1', NULL, 'minor', 1);",
    );
    assert_ne!(s.query_snapshot().unwrap(), snap);
    let r = s.rebuild_query_tables().unwrap();
    assert_eq!(r.orphans, 1, "the ghost finding");
    assert_eq!(s.query_snapshot().unwrap(), snap);
    // A copy has the same rows.
    let other = (f.fresh)();
    copy_all(s, other.storage.as_ref()).unwrap();
    assert_eq!(other.storage.query_snapshot().unwrap(), snap);
}

/// The grid chart's server-only data: a township's supervising body (set, replaced) and
/// people's duties (set for some, replaced, removed), read by id list; copied by export
/// and import to the other backend and back; counted as data.
fn grid_charts_and_duties(f: &Fixture) {
    use gridsync_server::storage::{GridChartInfo, PersonDuties};
    let s = f.storage.as_ref();
    assert_eq!(s.grid_chart("T1").unwrap(), None);
    assert!(s.person_duties(&["p1".into()]).unwrap().is_empty());
    assert!(s.person_duties(&[]).unwrap().is_empty());
    let mut chart = GridChartInfo {
        code: "T1".into(),
        agency: "苏木农畜产品质量安全监管站".into(),
        agency_address: "镇政府院内".into(),
        agency_phone: "0479-8221234".into(),
        complaint_phone: "12316".into(),
        updated_at_ms: 1_000,
    };
    s.set_grid_chart(&chart).unwrap();
    assert!(!s.is_empty().unwrap(), "chart rows are data");
    assert_eq!(s.grid_chart("T1").unwrap().as_ref(), Some(&chart));
    chart.agency = "综合服务中心".into();
    chart.complaint_phone = String::new();
    chart.updated_at_ms = 2_000;
    s.set_grid_chart(&chart).unwrap();
    assert_eq!(
        s.grid_chart("T1").unwrap().as_ref(),
        Some(&chart),
        "replaced"
    );
    assert_eq!(s.grid_chart("T2").unwrap(), None);

    s.set_person_duties("p1", Some("登记名录"), 10).unwrap();
    s.set_person_duties("p2", Some("日常巡查\n速测"), 11)
        .unwrap();
    s.set_person_duties("p3", Some("x"), 12).unwrap();
    s.set_person_duties("p1", Some("登记名录，协助抽样"), 13)
        .unwrap();
    s.set_person_duties("p3", None, 14).unwrap();
    s.set_person_duties("nobody", None, 15).unwrap();
    let got = s
        .person_duties(&["p2".into(), "p1".into(), "p3".into(), "zz".into()])
        .unwrap();
    assert_eq!(
        got,
        vec![
            PersonDuties {
                person_id: "p1".into(),
                duties: "登记名录，协助抽样".into(),
                updated_at_ms: 13,
            },
            PersonDuties {
                person_id: "p2".into(),
                duties: "日常巡查\n速测".into(),
                updated_at_ms: 11,
            },
        ]
    );

    // Copied to the other backend (when PostgreSQL is available) and back.
    let other = match (f.kind, std::env::var("GRIDSYNC_TEST_POSTGRES")) {
        ("sqlite", Ok(url)) if !url.trim().is_empty() => postgres_fixture(url.trim()),
        ("sqlite", _) => (f.fresh)(),
        _ => sqlite_fixture(),
    };
    let counts = copy_all(s, other.storage.as_ref()).unwrap();
    assert_eq!(counts["grid_charts"], 1);
    assert_eq!(counts["person_duties"], 2);
    let o = other.storage.as_ref();
    assert_eq!(o.grid_chart("T1").unwrap().as_ref(), Some(&chart));
    assert_eq!(o.person_duties(&["p1".into(), "p2".into()]).unwrap(), got);
    let back = (f.fresh)();
    copy_all(o, back.storage.as_ref()).unwrap();
    assert_eq!(dump(back.storage.as_ref()), dump(s));
}

fn people_who_left_and_audit_pages(f: &Fixture) {
    let s = f.storage.as_ref();
    s.import_grids(&tree()).unwrap();
    let p1 = person("p1", Role::Liaison, &["T1-V1"]);
    let p0 = person("p0", Role::Supervisor, &["T1"]);
    s.upsert_person(&p1).unwrap();
    s.upsert_person(&p0).unwrap();
    assert!(s.set_person_active("p1", false).unwrap());
    assert_eq!(
        s.person("p1").unwrap(),
        None,
        "inactive: hidden from person()"
    );
    assert_eq!(s.people().unwrap(), vec![p0.clone()]);
    let all = s.all_people().unwrap();
    assert_eq!(
        all.iter()
            .map(|p| (p.id.as_str(), p.active))
            .collect::<Vec<_>>(),
        [("p0", true), ("p1", false)],
        "everyone, by id, with whether active"
    );
    assert_eq!(all[1].name, p1.name);
    assert_eq!(all[1].grids, p1.grids);

    // 25 entries in G, 10 in H: pages newest first below an id cursor.
    for i in 0..35 {
        s.audit(&AuditEntry {
            at_ms: 1000 + i,
            person_id: if i % 2 == 0 { "p0" } else { "p1" }.into(),
            device_id: None,
            record_id: Some(format!("r{i}")),
            kind: Some("producer".into()),
            grid: Some(if i < 25 { "G" } else { "H" }.into()),
            action: "update".into(),
            detail: format!("entry {i}"),
        })
        .unwrap();
    }
    let first = s
        .audit_page(&AuditFilter::Grid("G".into()), None, 10)
        .unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].1.detail, "entry 24", "newest first");
    assert!(first.windows(2).all(|w| w[0].0 > w[1].0), "ids descend");
    let mut seen: Vec<String> = first.iter().map(|e| e.1.detail.clone()).collect();
    let mut cursor = first.last().map(|e| e.0);
    loop {
        let page = s
            .audit_page(&AuditFilter::Grid("G".into()), cursor, 10)
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.iter().all(|e| Some(e.0) < cursor), "below the cursor");
        seen.extend(page.iter().map(|e| e.1.detail.clone()));
        cursor = page.last().map(|e| e.0);
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("entry {i}")).collect();
    assert_eq!(seen, expected, "every G entry once, newest first");
    let p1s = s
        .audit_page(&AuditFilter::Person("p1".into()), None, 100)
        .unwrap();
    assert_eq!(p1s.len(), 17);
    assert!(p1s.iter().all(|e| e.1.person_id == "p1"));
    let one = s
        .audit_page(&AuditFilter::Record("r7".into()), None, 100)
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].1.detail, "entry 7");
    assert_eq!(s.audit_page(&AuditFilter::All, None, 5).unwrap().len(), 5);
}

// ---------------------------------------------------------------------------------------
// Township acceptance (达标验收)

fn township_acceptance(grid: &str, year: i32, decision: &str, on: &str) -> Record {
    use gridsync_core::model::{Acceptance, AcceptanceDecision};
    Record::Acceptance(Acceptance {
        id: Acceptance::record_id(grid, year),
        grid: grid.into(),
        year,
        decision: AcceptanceDecision::parse(decision).unwrap(),
        decided_on: on.into(),
        decided_by: "c1".into(),
        note: format!("{grid} {year}"),
        updated_at_ms: 1_700_000_000_000,
    })
}

fn query_rows_of_township_acceptance(f: &Fixture) {
    use gridsync_core::model::AcceptanceDecision;
    let s = f.storage.as_ref();
    let mut nodes = tree();
    nodes.push(node("T2", GridLevel::Township, Some("B")));
    s.import_grids(&nodes).unwrap();
    let recs = [
        township_acceptance("T1", 2022, "accepted", "2022-11-30"),
        township_acceptance("T1", 2023, "withdrawn", "2023-03-01"),
        township_acceptance("T2", 2022, "not_accepted", "2022-12-01"),
    ];
    assert!(put_recs(s, &recs, None)
        .unwrap()
        .iter()
        .all(|o| *o == PushOutcome::Accepted));
    let grids = ["T1".to_string(), "T2".to_string()];
    // By grid and year, up to the year asked for.
    let rows = s.acceptances(&grids, 2022).unwrap();
    let got: Vec<(&str, i32, AcceptanceDecision, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.grid.as_str(),
                r.year,
                r.decision,
                r.decided_on.as_str(),
                r.decided_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("T1", 2022, AcceptanceDecision::Accepted, "2022-11-30", "c1"),
            (
                "T2",
                2022,
                AcceptanceDecision::NotAccepted,
                "2022-12-01",
                "c1"
            ),
        ]
    );
    assert_eq!(rows[0].note, "T1 2022");
    assert_eq!(s.acceptances(&grids, 2030).unwrap().len(), 3);
    assert!(s.acceptances(&grids, 2021).unwrap().is_empty());
    assert_eq!(s.acceptances(&["T2".to_string()], 2030).unwrap().len(), 1);
    // A later decision of the same township and year replaces the row.
    put_recs(
        s,
        &[township_acceptance("T2", 2022, "accepted", "2022-12-20")],
        None,
    )
    .unwrap();
    let t2 = s.acceptances(&["T2".to_string()], 2022).unwrap();
    assert_eq!(
        (t2.len(), t2[0].decision, t2[0].decided_on.as_str()),
        (1, AcceptanceDecision::Accepted, "2022-12-20")
    );
    // Read from below: a feed of the township that shows only what is read from below
    // (a liaison's view of its township) carries the decisions.
    let page = s
        .pull(
            &[FeedRead {
                grid: "T1".into(),
                after: 0,
                templates_only: true,
            }],
            100,
            1 << 20,
        )
        .unwrap();
    let kinds: Vec<u8> = page.records.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![RecordKind::Acceptance.tag(); 2]);
    // Rebuilt from the documents to the same rows; a lost row comes back and a row
    // without its record goes.
    let snap = s.query_snapshot().unwrap();
    assert_eq!(snap.acceptances.len(), 3);
    (f.raw)("DELETE FROM q_acceptances WHERE id = 'acc:T1:2022'");
    (f.raw)(
        "INSERT INTO q_acceptances (id, grid, year, decision, decided_on, decided_by, note, updated_at_ms)
         VALUES ('acc:T9:2022', 'T9', 2022, 'accepted', '2022-01-01', 'x', '', 1)",
    );
    let report = s.rebuild_query_tables().unwrap();
    assert_eq!(report.acceptances, 3);
    assert_eq!(report.orphans, 1);
    assert_eq!(s.query_snapshot().unwrap(), snap);
    // A copy builds the same rows from the records it imports.
    let g = (f.fresh)();
    copy_all(s, g.storage.as_ref()).unwrap();
    assert_eq!(
        g.storage.query_snapshot().unwrap().acceptances,
        snap.acceptances
    );
    // A stored decision that does not read is an error naming the row.
    (f.raw)("UPDATE q_acceptances SET decision = 'maybe' WHERE id = 'acc:T2:2022'");
    match s.acceptances(&grids, 2022) {
        Err(StorageError::BadRow(m)) => assert!(m.contains("acc:T2:2022"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A producer of `t` with `sold` sheep and goats sold a year (threshold 200 nationally).
fn sheep_farm(id: &str, grid: &str, t: ProducerType, sold: u32) -> Record {
    let mut p = producer(id, id, grid);
    p.producer_type = t;
    p.scale.livestock.insert(
        gridsync_core::model::Species::SheepGoat,
        gridsync_core::model::LivestockCount {
            on_hand: None,
            sold_per_year: Some(sold),
        },
    );
    Record::Producer(p)
}

fn scale_flags_follow_league_thresholds(f: &Fixture) {
    use gridsync_server::storage::ScaleCount;
    let s = f.storage.as_ref();
    s.import_grids(&[
        node("L", GridLevel::League, None),
        node("B", GridLevel::Banner, Some("L")),
        node("T1", GridLevel::Township, Some("B")),
        node("T1-V1", GridLevel::Village, Some("T1")),
        node("T1-V2", GridLevel::Village, Some("T1")),
        node("L2", GridLevel::League, None),
        node("B2", GridLevel::Banner, Some("L2")),
        node("B2-V", GridLevel::Village, Some("B2")),
    ])
    .unwrap();
    let mut closed = sheep_farm("P5", "T1-V2", ProducerType::SmallHousehold, 900);
    if let Record::Producer(p) = &mut closed {
        p.status = gridsync_core::model::ProducerStatus::Closed;
    }
    put_recs(
        s,
        &[
            sheep_farm("P1", "T1-V1", ProducerType::FamilyRanch, 200),
            sheep_farm("P2", "T1-V1", ProducerType::SmallHousehold, 250),
            sheep_farm("P3", "T1-V2", ProducerType::SmallHousehold, 199),
            sheep_farm("P4", "B2-V", ProducerType::SmallHousehold, 250),
            closed,
        ],
        None,
    )
    .unwrap();
    let flags = |id: &str| {
        let r = s.query_producer(id).unwrap().unwrap();
        (r.scale_farm, r.scale_mismatch)
    };
    let grids: Vec<String> = ["T1-V1", "T1-V2", "B2-V", "T1"]
        .iter()
        .map(|g| g.to_string())
        .collect();
    let count = |producers, scale_farms, mismatches| ScaleCount {
        producers,
        scale_farms,
        mismatches,
    };
    // The national table: 200 sold a year counts (≥), 199 does not.
    assert_eq!(flags("P1"), (true, false));
    assert_eq!(flags("P2"), (true, true));
    assert_eq!(flags("P3"), (false, false));
    assert_eq!(flags("P4"), (true, true));
    assert_eq!(flags("P5"), (true, true));
    let national = BTreeMap::from([
        ("B2-V".to_string(), count(1, 1, 1)),
        ("T1-V1".to_string(), count(2, 2, 1)),
        // The closed producer is not counted.
        ("T1-V2".to_string(), count(1, 0, 0)),
    ]);
    assert_eq!(s.scale_counts(&grids).unwrap(), national);

    // Only a league takes thresholds.
    let e = gridsync_server::scale::set_league_thresholds(
        s,
        "admin",
        "B",
        "sheep_goat,sold_per_year,260",
    )
    .unwrap_err();
    assert!(e.to_string().contains("per league"), "{e}");
    assert!(s.scale_overrides("B").unwrap().is_none());

    // League L raises the threshold to 260: its producers are recomputed at once, L2's
    // are not.
    let r = gridsync_server::scale::set_league_thresholds(
        s,
        "admin",
        "L",
        "species,measure,head\nsheep_goat,sold_per_year,260\n",
    )
    .unwrap();
    assert_eq!(r.producers, 4);
    assert_eq!(flags("P1"), (false, false));
    assert_eq!(flags("P2"), (false, false));
    assert_eq!(flags("P4"), (true, true));
    assert_eq!(
        s.scale_counts(&grids).unwrap(),
        BTreeMap::from([
            ("B2-V".to_string(), count(1, 1, 1)),
            ("T1-V1".to_string(), count(2, 0, 0)),
            ("T1-V2".to_string(), count(1, 0, 0)),
        ])
    );
    let stored = s.scale_overrides("L").unwrap().unwrap();
    assert_eq!(
        stored.overrides,
        gridsync_core::scale::ScaleOverrides::parse(
            r#"{"sheep_goat": {"measure": "sold_per_year", "head": 260}}"#
        )
        .unwrap()
    );
    // A push in the league is assessed with the league's thresholds: 260 counts.
    put_recs(
        s,
        &[sheep_farm("P6", "T1-V1", ProducerType::SmallHousehold, 260)],
        None,
    )
    .unwrap();
    assert_eq!(flags("P6"), (true, true));
    // A rebuild computes the same flags.
    let before = s.query_snapshot().unwrap();
    s.rebuild_query_tables().unwrap();
    assert_eq!(s.query_snapshot().unwrap().producers, before.producers);
    // A copy carries the league's thresholds.
    let other = (f.fresh)();
    copy_all(s, other.storage.as_ref()).unwrap();
    assert_eq!(other.storage.scale_overrides("L").unwrap(), Some(stored));
    assert_eq!(
        other.storage.query_snapshot().unwrap().producers,
        before.producers
    );
    // An empty file goes back to the national table.
    gridsync_server::scale::set_league_thresholds(s, "admin", "L", "").unwrap();
    assert!(s.scale_overrides("L").unwrap().is_none());
    assert_eq!(flags("P1"), (true, false));
    assert_eq!(flags("P2"), (true, true));
    let show = gridsync_server::scale::show_league_thresholds(s, "L").unwrap();
    assert!(show.contains("national table"), "{show}");
}
