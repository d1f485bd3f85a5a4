//! Likely duplicates in the local copy (`Store::likely_duplicates`): codes, ID numbers and
//! phones anywhere on the device, similar names in the same or a neighbouring grid, the
//! entry itself left out, the keys kept by every write path (local, sync, rebuild,
//! upgrade from schema 5), and the same answers as `dedupe::DuplicateIndex`.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;

use rusqlite::Connection;

use super::{IntegrityLevel, LikelyDuplicate, Store};
use crate::dedupe::{find_duplicates, DedupeEntry, MatchReason};
use crate::doc::RecordDoc;
use crate::model::{GridKind, GridLevel, GridNode, Person, Producer, ProducerType, Role};
use crate::sync::protocol::{PullRecord, SyncResponse};

const BANNER: &str = "152522";
const T1: &str = "152522101";
const T2: &str = "152522102";
const V11: &str = "152522101201";
const V12: &str = "152522101202";
const V21: &str = "152522102201";
const S111: &str = "152522101201001";

fn node(code: &str, level: GridLevel, parent: Option<&str>) -> GridNode {
    GridNode {
        code: code.into(),
        name: format!("网格{code}"),
        level,
        kind: GridKind::Pastoral,
        parent: parent.map(Into::into),
    }
}

fn tree() -> Vec<GridNode> {
    vec![
        node("15", GridLevel::Region, None),
        node("1525", GridLevel::League, Some("15")),
        node(BANNER, GridLevel::Banner, Some("1525")),
        node(T1, GridLevel::Township, Some(BANNER)),
        node(T2, GridLevel::Township, Some(BANNER)),
        node(V11, GridLevel::Village, Some(T1)),
        node(V12, GridLevel::Village, Some(T1)),
        node(V21, GridLevel::Village, Some(T2)),
        node(S111, GridLevel::SubGrid, Some(V11)),
    ]
}

/// A store file with the banner's tree and a county reviewer (who may register anywhere
/// in the banner).
fn phone(dir: &Path) -> Store {
    let s = Store::open_unchecked(dir.join("phone.db")).unwrap();
    s.upsert_grids(&tree()).unwrap();
    s.set_profile(&Person {
        id: "county-1".into(),
        name: "李娜".into(),
        phone: "13904794444".into(),
        role: Role::CountyReviewer,
        grids: vec![BANNER.into()],
    })
    .unwrap();
    s
}

fn credit_code(serial: u32) -> String {
    let first = format!("93152522MA{serial:07}");
    let check = crate::validate::uscc_check_char(&first).unwrap();
    format!("{first}{check}")
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8] = b"10X98765432";

fn id_check(first17: &str) -> char {
    let sum: u32 = first17
        .bytes()
        .zip(ID_WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    ID_CHECK[(sum % 11) as usize] as char
}

/// A valid ID number, different for each serial (born in 1985).
fn id_number(serial: u32) -> String {
    let first = format!(
        "1525221985{:02}{:02}{:03}",
        1 + serial % 12,
        1 + (serial / 12) % 28,
        serial / 336
    );
    format!("{first}{}", id_check(&first))
}

/// An ID number with check character `X` (born in 1980, found by varying the serial).
fn id_number_ending_x() -> String {
    (0..1000)
        .map(|n| format!("15252219800101{n:03}"))
        .find(|first| id_check(first) == 'X')
        .map(|first| format!("{first}X"))
        .unwrap()
}

/// A large household with an ID number of its own.
fn producer(name: &str, grid: &str, phone: &str) -> Producer {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut p = Producer::new(
        name,
        ProducerType::LargeHousehold,
        "户主",
        phone,
        grid,
        "",
        crate::now_ms(),
    );
    p.id_number = Some(id_number(
        SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    ));
    p
}

fn ids(m: &[LikelyDuplicate]) -> Vec<&str> {
    m.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn codes_and_phones_match_anywhere_on_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let s = phone(dir.path());
    let mut a = producer("浩日沁牧业专业合作社", V11, "13912345678");
    a.credit_code = Some(credit_code(1));
    let a = s.create_producer(a).unwrap();
    let mut b = producer("其其格家庭牧场", V11, "13800000001");
    b.id_number = Some(id_number_ending_x());
    let b = s.create_producer(b).unwrap();
    let c = s
        .create_producer(producer("额尔敦牧场", V12, "0479-8221234"))
        .unwrap();

    // The same credit code in another township, lower case and with spaces: found, with
    // its name and grid.
    let mut q = producer("完全不同的名字", V21, "13700000000");
    q.credit_code = Some(format!(" {} ", credit_code(1).to_lowercase()));
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [a.id.as_str()]);
    assert_eq!(m[0].reasons, [MatchReason::CreditCode]);
    assert_eq!(m[0].score, 95);
    assert_eq!(
        (
            m[0].name.as_str(),
            m[0].grid.as_str(),
            m[0].grid_name.as_str()
        ),
        ("浩日沁牧业专业合作社", V11, "网格152522101201")
    );

    // The same ID number typed with a lower-case x, in another township.
    let mut q = producer("毫不相干", V21, "13700000000");
    q.id_number = Some(id_number_ending_x().to_lowercase());
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [b.id.as_str()]);
    assert_eq!(m[0].reasons, [MatchReason::IdNumber]);

    // The same phone with +86, spaces and full-width digits; a landline without its dash.
    let q = producer("毫不相干", V21, "+86 １３９ 1234 5678");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [a.id.as_str()]);
    assert_eq!(m[0].reasons, [MatchReason::Phone]);
    let q = producer("毫不相干", V21, "04798221234");
    assert_eq!(ids(&s.likely_duplicates(&q).unwrap()), [c.id.as_str()]);

    // Nothing in common: nothing found.
    let mut q = producer("毫不相干", V21, "13700000000");
    q.credit_code = Some(credit_code(2));
    assert!(s.likely_duplicates(&q).unwrap().is_empty());
}

#[test]
fn similar_names_match_in_neighbouring_grids_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = phone(dir.path());
    let village = s
        .create_producer(producer("阿巴嘎旗浩日沁牧业专业合作社", V11, "13912345678"))
        .unwrap();
    let township = s
        .create_producer(producer("巴彦乌拉养殖专业合作社", T1, "13912345679"))
        .unwrap();
    let sub = s
        .create_producer(producer("宝力根合作社", S111, "13912345670"))
        .unwrap();

    // A sibling village of the same township: 浩日沁牧业 is the core of both.
    let q = producer("浩日沁牧业合作社", V12, "13700000000");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [village.id.as_str()]);
    assert_eq!(m[0].reasons, [MatchReason::SameName]);
    assert_eq!(m[0].score, 80);
    // The parent township (an entry registered on the township itself).
    let q = producer("浩日沁牧业有限公司", T1, "13700000000");
    assert_eq!(
        ids(&s.likely_duplicates(&q).unwrap()),
        [village.id.as_str()]
    );
    // From a village to an entry on its township, one character apart.
    let q = producer("巴音乌拉养殖合作社", V12, "13700000000");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [township.id.as_str()]);
    assert_eq!(m[0].reasons, [MatchReason::NameOneEdit]);
    // A sub-grid of the village (a child grid), the name contained.
    let q = producer("宝力根牧业有限公司", V11, "13700000000");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [sub.id.as_str()]);
    assert_eq!(m[0].reasons, [MatchReason::NameContains]);
    // A village of another township is not a neighbour: not found.
    let q = producer("浩日沁牧业合作社", V21, "13700000000");
    assert!(s.likely_duplicates(&q).unwrap().is_empty());
    // A grid the device does not know neighbours only itself.
    let q = producer("浩日沁牧业合作社", "152599999999", "13700000000");
    assert!(s.likely_duplicates(&q).unwrap().is_empty());

    // Best first: a same name (80) before a same phone (70); several reasons add up.
    let q = producer("浩日沁牧业合作社", V12, "13912345679");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [village.id.as_str(), township.id.as_str()]);
    assert_eq!(m[1].reasons, [MatchReason::Phone]);
    let q = producer("浩日沁牧业合作社", V12, "13912345678");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(m[0].reasons, [MatchReason::Phone, MatchReason::SameName]);
    assert_eq!(m[0].score, 94);
}

#[test]
fn an_edited_entry_is_not_its_own_duplicate_and_its_keys_follow_the_edit() {
    let dir = tempfile::tempdir().unwrap();
    let s = phone(dir.path());
    let mut a = producer("浩日沁牧业专业合作社", V11, "13912345678");
    a.credit_code = Some(credit_code(1));
    let a = s.create_producer(a).unwrap();
    let b = s
        .create_producer(producer("额尔敦牧场", V12, "13800000002"))
        .unwrap();

    // Checking the stored entry as it is finds nothing: it is itself.
    assert!(s.likely_duplicates(&a).unwrap().is_empty());
    // Edited to the other's phone: the other is found, never itself.
    let mut edit = a.clone();
    edit.phone = "13800000002".into();
    let m = s.likely_duplicates(&edit).unwrap();
    assert_eq!(ids(&m), [b.id.as_str()]);

    // Saved: the keys of the query row follow (the old phone no longer matches, the new
    // name does), and the full integrity check finds the row equal to its document.
    let mut edit = s.producer(&a.id).unwrap();
    edit.name = "额尔敦牧业合作社".into();
    edit.phone = "13900000009".into();
    s.update_producer(edit).unwrap();
    let q = producer("无关", V21, "13912345678");
    assert!(s.likely_duplicates(&q).unwrap().is_empty());
    let q = producer("额尔敦牧业", V12, "13700000000");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m).len(), 2, "{m:?}");
    let report = s.check_integrity(IntegrityLevel::Full, false).unwrap();
    assert!(!report.found_problems(), "{report:?}");
}

#[test]
fn a_record_received_by_sync_is_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let s = phone(dir.path());
    // A producer registered on another phone, arriving as a whole document.
    let mut other = producer("阿巴嘎旗浩日沁牧业专业合作社", V11, "13912345678");
    other.credit_code = Some(credit_code(7));
    let rec = crate::model::Record::Producer(other.clone());
    let mut doc = RecordDoc::create(
        &rec,
        &automerge::ActorId::random(),
        "liaison-9",
        crate::now_ms(),
    )
    .unwrap();
    let heads = doc.heads().iter().map(|h| h.0).collect();
    let page = SyncResponse {
        epoch: "e".into(),
        reset: false,
        results: Vec::new(),
        records: vec![PullRecord {
            id: other.id.clone(),
            kind: rec.kind().tag(),
            grid: V11.into(),
            seq: 1,
            full: true,
            bytes: doc.save(),
            heads,
        }],
        departures: Vec::new(),
        cursors: Vec::new(),
        more: false,
        reference: None,
        docs_digest: None,
        server_time_ms: 0,
    };
    // The device reads the village's feed (as the server's reference data would set).
    let scope = serde_json::json!([[V11], []]).to_string();
    s.write(|tx| super::meta::set(tx, "scope", &scope)).unwrap();
    let out = s.apply_page(&page).unwrap();
    assert_eq!(out.applied, 1, "{out:?}");
    let q = producer("浩日沁牧业合作社", V12, "13700000000");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [other.id.as_str()]);
    let mut q = producer("无关", V21, "13700000000");
    q.credit_code = Some(credit_code(7));
    assert_eq!(ids(&s.likely_duplicates(&q).unwrap()), [other.id.as_str()]);
}

#[test]
fn a_tombstone_is_never_offered() {
    let dir = tempfile::tempdir().unwrap();
    let s = phone(dir.path());
    let mut a = producer("浩日沁牧业专业合作社", V11, "13912345678");
    a.credit_code = Some(credit_code(1));
    let a = s.create_producer(a).unwrap();
    // Stored as a tombstone (how the server's merge leaves an entry): no keys in its row.
    let mut t = s.producer(&a.id).unwrap();
    t.merged_into = Some(crate::model::MergedInto {
        into: "another".into(),
        by: "county-1".into(),
        at_ms: crate::now_ms(),
        seen: Vec::new(),
    });
    s.write(|tx| super::documents::materialize(tx, &crate::model::Record::Producer(t)))
        .unwrap();
    let mut q = producer("浩日沁牧业合作社", V11, "13912345678");
    q.credit_code = Some(credit_code(1));
    assert!(s.likely_duplicates(&q).unwrap().is_empty());
}

/// The store's answers equal `dedupe::find_duplicates` over the same entries, for every
/// entry checked against the others (names drawn from a small pool so that many are
/// similar; codes and phones shared now and then).
#[test]
fn answers_equal_the_duplicate_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = phone(dir.path());
    let grids = [V11, V12, V21, T1, T2, S111, BANNER];
    let cores = [
        "浩日沁",
        "浩日沁牧业",
        "巴彦乌拉",
        "巴音乌拉",
        "额尔敦",
        "宝力根",
    ];
    let suffixes = ["合作社", "专业合作社", "家庭牧场", "有限公司"];
    let mut batch = Vec::new();
    for i in 0..120usize {
        let name = format!(
            "{}{}",
            cores[(i * 7) % cores.len()],
            suffixes[(i * 5) % suffixes.len()]
        );
        let mut p = producer(&name, grids[(i * 3) % grids.len()], "");
        p.phone = format!("139{:08}", i % 50);
        if i % 4 == 0 {
            p.credit_code = Some(credit_code((i % 9) as u32));
        }
        batch.push(p);
    }
    let stored = s.create_producers(batch).unwrap();
    let entries: Vec<DedupeEntry> = stored.iter().map(DedupeEntry::of).collect();
    let tree = s.tree().unwrap();
    let mut matched = 0;
    for p in &stored {
        let want = find_duplicates(&tree, &DedupeEntry::of(p), &entries);
        let got = s.likely_duplicates(p).unwrap();
        let want: Vec<(&str, &[MatchReason], u8)> = want
            .iter()
            .take(super::MAX_LIKELY_DUPLICATES)
            .map(|m| (m.id.as_str(), m.reasons.as_slice(), m.score))
            .collect();
        let got_t: Vec<(&str, &[MatchReason], u8)> = got
            .iter()
            .map(|m| (m.id.as_str(), m.reasons.as_slice(), m.score))
            .collect();
        assert_eq!(got_t, want, "{}", p.name);
        matched += got.len();
    }
    assert!(
        matched > 500,
        "the pool should make many matches: {matched}"
    );
}

#[test]
fn the_check_reads_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let s = phone(dir.path());
    drop(s);
    let c = Connection::open(dir.path().join("phone.db")).unwrap();
    let plan = |sql: &str| -> String {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = st.parameter_count();
        let rows = st
            .query_map(rusqlite::params_from_iter(&[V11, T1][..n]), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    };
    for (sql, _) in super::duplicates::BY_KEY {
        let p = plan(sql);
        assert!(p.contains("USING INDEX producers_dup_"), "{sql}: {p}");
    }
    let p = plan(super::duplicates::NEIGHBOURHOOD);
    assert!(
        p.contains("USING COVERING INDEX producers_grid_core"),
        "{p}"
    );
}

/// Builds a file at schema 5 holding what `src` holds (every column 5 had), as a phone
/// that last ran a build of schema 5 would have it.
fn as_schema_5(src: &Path, dst: &Path) {
    let mut c = Connection::open(dst).unwrap();
    super::schema::migrate_to(&mut c, super::schema::DUPLICATE_KEYS_VERSION - 1).unwrap();
    c.execute("ATTACH DATABASE ?1 AS src", [src.to_str().unwrap()])
        .unwrap();
    let tables: Vec<String> = {
        let mut st = c
            .prepare("SELECT name FROM main.sqlite_master WHERE type = 'table'")
            .unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    };
    for t in tables {
        let cols: Vec<String> = {
            let mut st = c.prepare(&format!("PRAGMA main.table_info({t})")).unwrap();
            let rows = st.query_map([], |r| r.get(1)).unwrap();
            rows.map(|r| r.unwrap()).collect()
        };
        let cols = cols.join(", ");
        c.execute(
            &format!("INSERT INTO main.{t} ({cols}) SELECT {cols} FROM src.{t}"),
            [],
        )
        .unwrap();
    }
    c.execute("DETACH DATABASE src", []).unwrap();
}

#[test]
fn a_phone_upgraded_from_schema_5_checks_its_existing_producers() {
    let dir = tempfile::tempdir().unwrap();
    let s = phone(dir.path());
    let mut a = producer("阿巴嘎旗浩日沁牧业专业合作社", V11, "13912345678");
    a.credit_code = Some(credit_code(3));
    let a = s.create_producer(a).unwrap();
    let b = s
        .create_producer(producer("其其格家庭牧场", V12, "13800000001"))
        .unwrap();
    drop(s);
    let old = dir.path().join("old.db");
    as_schema_5(&dir.path().join("phone.db"), &old);
    {
        let c = Connection::open(&old).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 5);
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM producers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        let has_core: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('producers') WHERE name = 'name_core'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_core, 0, "schema 5 has no keys");
    }

    let s = Store::open_unchecked(&old).unwrap();
    let mut q = producer("浩日沁牧业合作社", V12, "13700000000");
    let m = s.likely_duplicates(&q).unwrap();
    assert_eq!(ids(&m), [a.id.as_str()]);
    q.name = "无关".into();
    q.credit_code = Some(credit_code(3));
    assert_eq!(ids(&s.likely_duplicates(&q).unwrap()), [a.id.as_str()]);
    let q = producer("无关", V21, "+8613800000001");
    assert_eq!(ids(&s.likely_duplicates(&q).unwrap()), [b.id.as_str()]);
    let report = s.check_integrity(IntegrityLevel::Full, false).unwrap();
    assert!(!report.found_problems(), "{report:?}");
}
