//! The local store on real SQLite files: records, queries, validation, corruption,
//! concurrency, reopening and change tracking.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use gridsync_core::model::{
    default_template, ProducerStatus, ProducerType, Rectification, RiskLevel, Visit,
    DEFAULT_TEMPLATE_ID,
};
use gridsync_core::store::{ProducerSort, Store};
use gridsync_core::sync::protocol::{PushOutcome, PushResult, RejectCode};
use gridsync_core::{now_ms, Error};

use common::*;

fn temp_store(
    who: &gridsync_core::model::Person,
) -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let s = store_as(&path, who);
    (dir, path, s)
}

#[test]
fn create_update_show_and_search_in_chinese() {
    let (_d, _p, s) = temp_store(&liaison());
    let a = s
        .create_producer(ranch("锡林郭勒草原牧场", VIL1, 1))
        .unwrap();
    let b = s.create_producer(ranch("巴彦家庭牧场", VIL1, 2)).unwrap();
    s.create_producer(cooperative("阿巴嘎草原肉羊合作社", VIL1, 3))
        .unwrap();
    assert_eq!(a.created_by, "liaison-1");
    assert_eq!(s.producer(&a.id).unwrap(), a);

    let hits = s.search_producers("草原", 10).unwrap();
    let names: HashSet<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        HashSet::from(["锡林郭勒草原牧场", "阿巴嘎草原肉羊合作社"])
    );
    assert_eq!(s.search_producers("郭勒草", 10).unwrap().len(), 1);
    assert!(s.search_producers("骆驼", 10).unwrap().is_empty());
    assert!(s.search_producers("   ", 10).unwrap().is_empty());
    // Owner and phone are searched too.
    assert_eq!(s.search_producers("苏和", 10).unwrap().len(), 1);
    assert_eq!(s.search_producers("8221234", 10).unwrap().len(), 1);

    let mut edit = b.clone();
    edit.name = "巴彦草原家庭牧场".into();
    edit.phone = "13611112222".into();
    let saved = s.update_producer(edit).unwrap();
    assert_eq!(saved.name, "巴彦草原家庭牧场");
    assert_eq!(s.producer(&b.id).unwrap().phone, "13611112222");
    assert_eq!(s.search_producers("草原", 10).unwrap().len(), 3);
    assert!(s.search_producers("巴彦家庭", 10).unwrap().is_empty());
    let hist = s.history(&b.id).unwrap();
    assert_eq!(hist.len(), 2);
    assert!(hist.iter().all(|h| h.by == "liaison-1"));
    assert_eq!(s.counts().unwrap().producers, 3);
}

#[test]
fn listing_pages_sorts_and_covers_sub_grids() {
    let (_d, _p, s) = temp_store(&supervisor());
    let names = [
        "乌兰牧场",
        "阿拉坦牧场",
        "宝音牧场",
        "查干牧场",
        "达来牧场",
        "额尔敦牧场",
        "巴雅尔牧场",
    ];
    let mut ids = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let grid = match i % 3 {
            0 => VIL1,
            1 => SUB1,
            _ => VIL2,
        };
        ids.push(s.create_producer(ranch(n, grid, i as u32)).unwrap().id);
    }
    s.create_producer(ranch("外镇牧场", VIL3, 99)).unwrap_err();
    // The township sees all seven, sorted by name (code point order), paged.
    let page1 = s
        .producers_in_grid(TOWN1, ProducerSort::Name, 3, 0)
        .unwrap();
    let page2 = s
        .producers_in_grid(TOWN1, ProducerSort::Name, 3, 3)
        .unwrap();
    let page3 = s
        .producers_in_grid(TOWN1, ProducerSort::Name, 3, 6)
        .unwrap();
    let all: Vec<String> = page1
        .iter()
        .chain(&page2)
        .chain(&page3)
        .map(|p| p.name.clone())
        .collect();
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!((page1.len(), page2.len(), page3.len()), (3, 3, 1));
    assert!(s
        .producers_in_grid(TOWN1, ProducerSort::Name, 3, 9)
        .unwrap()
        .is_empty());
    // A village includes its sub-grid; the sub-grid only itself.
    assert_eq!(
        s.producers_in_grid(VIL1, ProducerSort::Name, 50, 0)
            .unwrap()
            .len(),
        5
    );
    let sub = s
        .producers_in_grid(SUB1, ProducerSort::Name, 50, 0)
        .unwrap();
    assert_eq!(sub.len(), 2);
    assert!(sub.iter().all(|p| p.grid == SUB1));
    assert_eq!(
        s.producers_in_grid(VIL2, ProducerSort::Name, 50, 0)
            .unwrap()
            .len(),
        2
    );
    assert!(s
        .producers_in_grid(TOWN2, ProducerSort::Name, 50, 0)
        .unwrap()
        .is_empty());
    // Recently updated first.
    std::thread::sleep(std::time::Duration::from_millis(3));
    let mut p = s.producer(&ids[4]).unwrap();
    p.address = "新地址".into();
    s.update_producer(p).unwrap();
    let recent = s
        .producers_in_grid(TOWN1, ProducerSort::RecentlyUpdated, 2, 0)
        .unwrap();
    assert_eq!(recent[0].id, ids[4]);
    // Longest since the last visit first: never-visited first, then oldest visit.
    let tpl = default_template(REGION);
    let t = now_ms();
    for (i, days) in [(0usize, 10i64), (1, 50), (2, 5)] {
        let prod = s.producer(&ids[i]).unwrap();
        let v = Visit::new(&prod.id, &prod.grid, "super-1", &tpl, t - days * DAY_MS);
        s.save_visit(v).unwrap();
    }
    let by_visit = s
        .producers_in_grid(TOWN1, ProducerSort::LastVisit, 50, 0)
        .unwrap();
    let order: Vec<&str> = by_visit.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        &order[4..],
        &[ids[1].as_str(), ids[0].as_str(), ids[2].as_str()]
    );
    assert!(by_visit[..4].iter().all(|p| p.last_visit_ms.is_none()));
}

#[test]
fn due_patrols_follow_configurable_intervals() {
    let (_d, _p, s) = temp_store(&supervisor());
    let tpl = default_template(REGION);
    let now = now_ms();
    let mk = |name: &str, risk: RiskLevel, visited_days_ago: Option<i64>| {
        let mut p = ranch(name, VIL1, 1);
        p.risk = risk;
        let p = s.create_producer(p).unwrap();
        if let Some(d) = visited_days_ago {
            let v = Visit::new(&p.id, VIL1, "super-1", &tpl, now - d * DAY_MS);
            s.save_visit(v).unwrap();
        }
        p.id
    };
    let high_40 = mk("高风险甲", RiskLevel::High, Some(40)); // 30-day interval: 10 overdue
    let high_10 = mk("高风险乙", RiskLevel::High, Some(10)); // not due
    let low_100 = mk("低风险甲", RiskLevel::Low, Some(100)); // 365 days: not due
    let never = mk("从未巡查", RiskLevel::Medium, None); // due
    let closed = {
        let id = mk("已注销", RiskLevel::High, Some(400));
        let mut p = s.producer(&id).unwrap();
        p.status = ProducerStatus::Closed;
        s.update_producer(p).unwrap();
        id
    };
    let due = s.due_patrols(TOWN1, now).unwrap();
    let ids: Vec<&str> = due.iter().map(|d| d.producer.id.as_str()).collect();
    assert_eq!(ids, vec![high_40.as_str(), never.as_str()]);
    assert_eq!(due[0].interval_days, 30);
    assert_eq!(due[0].days_overdue, 10);
    assert_eq!(due[1].interval_days, 90);
    assert!(!ids.contains(&closed.as_str()) && !ids.contains(&high_10.as_str()));
    // Low-risk family ranches every 60 days here: now due, 40 days overdue.
    s.set_patrol_interval(ProducerType::FamilyRanch, RiskLevel::Low, 60)
        .unwrap();
    s.set_patrol_interval(ProducerType::FamilyRanch, RiskLevel::High, 5)
        .unwrap();
    let due = s.due_patrols(TOWN1, now).unwrap();
    let by_id = |id: &str| due.iter().find(|d| d.producer.id == id).cloned();
    let low = by_id(&low_100).expect("low-risk producer is due");
    assert_eq!((low.interval_days, low.days_overdue), (60, 40));
    assert_eq!(by_id(&high_10).unwrap().days_overdue, 5);
    assert_eq!(by_id(&high_40).unwrap().days_overdue, 35);
    assert_eq!(due[0].producer.id, low_100, "most overdue first");
    // Another grid sees none of them; a bad interval is a typed error.
    assert!(s.due_patrols(TOWN2, now).unwrap().is_empty());
    match s.set_patrol_interval(ProducerType::FamilyRanch, RiskLevel::Low, 0) {
        Err(Error::Invalid(i)) => assert_eq!(i.field, "days"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn visit_history_and_open_rectifications() {
    let (_d, _p, s) = temp_store(&liaison());
    let tpl = s.template(DEFAULT_TEMPLATE_ID, 1).unwrap();
    let p = s.create_producer(ranch("草原牧场", VIL1, 1)).unwrap();
    let q = s.create_producer(ranch("第二牧场", VIL1, 2)).unwrap();
    let now = now_ms();
    let mut ids = Vec::new();
    for (days, deadline) in [
        (30, Some("2020-01-31")),
        (20, None),
        (10, Some("2099-12-31")),
    ] {
        let mut v = Visit::new(&p.id, VIL1, "liaison-1", &tpl, now - days * DAY_MS);
        answer_required(&mut v);
        if let Some(d) = deadline {
            v.rectification = Some(Rectification {
                required: true,
                deadline: d.into(),
                notice_number: format!("整改-{days}"),
                resolved_at_ms: None,
            });
        }
        ids.push(s.save_visit(v).unwrap().id);
    }
    let hist = s.visit_history(&p.id).unwrap();
    assert_eq!(
        hist.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone(), ids[0].clone()],
        "newest first"
    );
    assert!(hist[0].rectification_open && !hist[1].rectification_open);
    assert!(s.visit_history(&q.id).unwrap().is_empty());
    let open = s.open_rectifications("2025-06-01").unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].visit_id, ids[0]);
    assert!(open[0].overdue);
    assert_eq!(open[0].producer_name, "草原牧场");
    assert_eq!(open[0].notice_number, "整改-30");
    assert!(!open[1].overdue);
    // A follow-up that finds it done closes the old one.
    let mut f = Visit::new(&p.id, VIL1, "liaison-1", &tpl, now);
    f.follow_up_of = Some(ids[0].clone());
    let f = s.save_visit(f).unwrap();
    s.add_follow_up(&ids[0], &f.id, true).unwrap();
    let open = s.open_rectifications("2025-06-01").unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].visit_id, ids[2]);
    assert_eq!(
        s.visit(&ids[0]).unwrap().follow_up_visit.as_deref(),
        Some(f.id.as_str())
    );
    // A follow-up to another producer is refused, naming the field.
    let other = s
        .save_visit(Visit::new(&q.id, VIL1, "liaison-1", &tpl, now))
        .unwrap();
    match s.add_follow_up(&ids[2], &other.id, true) {
        Err(Error::Invalid(i)) => assert_eq!(i.field, "follow_up_visit"),
        r => panic!("expected Invalid, got {r:?}"),
    }
    let c = s.counts().unwrap();
    assert_eq!((c.producers, c.visits), (2, 5));
}

#[test]
fn validation_errors_are_typed_and_write_nothing() {
    let (_d, _p, s) = temp_store(&liaison());
    s.create_producer(ranch("已有牧场", VIL1, 1)).unwrap();
    let before = s.counts().unwrap();
    let expect_field = |p, field: &str| match s.create_producer(p) {
        Err(Error::Invalid(i)) => assert_eq!(i.field, field, "{i}"),
        other => panic!("expected Invalid({field}), got {other:?}"),
    };
    let mut p = ranch("坏电话", VIL1, 2);
    p.phone = "12345".into();
    expect_field(p, "phone");
    let mut p = ranch("", VIL1, 2);
    p.name = "  ".into();
    expect_field(p, "name");
    let mut p = cooperative("无信用代码合作社", VIL1, 3);
    p.credit_code = None;
    expect_field(p, "credit_code");
    let mut p = cooperative("错校验位合作社", VIL1, 3);
    let mut code = p.credit_code.clone().unwrap();
    let last = if code.ends_with('0') { "1" } else { "0" };
    code.replace_range(17..18, last);
    p.credit_code = Some(code);
    expect_field(p, "credit_code");
    let mut p = ranch("坏身份证", VIL1, 2);
    p.id_number = Some("110105194912310021".into());
    expect_field(p, "id_number");
    let mut p = ranch("坏坐标", VIL1, 2);
    p.location = Some(gridsync_core::model::GeoPoint {
        lat: 95.0,
        lon: 114.0,
    });
    expect_field(p, "location.lat");
    let mut p = ranch("长产品", VIL1, 2);
    p.products = vec!["羊".repeat(51)];
    expect_field(p, "products[0]");
    expect_field(ranch("未知网格", "no-such-grid", 2), "grid");
    // Outside the liaison's village: forbidden, not invalid.
    match s.create_producer(ranch("别村牧场", VIL2, 2)) {
        Err(Error::Forbidden(m)) => assert!(m.contains(VIL2), "{m}"),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    // An edit that fails leaves the stored record as it was.
    let existing = s
        .producers_in_grid(VIL1, ProducerSort::Name, 10, 0)
        .unwrap();
    let mut bad = s.producer(&existing[0].id).unwrap();
    let good_phone = bad.phone.clone();
    bad.phone = "1".into();
    assert!(matches!(s.update_producer(bad), Err(Error::Invalid(_))));
    assert_eq!(s.producer(&existing[0].id).unwrap().phone, good_phone);
    assert_eq!(s.history(&existing[0].id).unwrap().len(), 1);
    assert_eq!(s.counts().unwrap(), before);
    assert!(s.search_producers("坏", 10).unwrap().is_empty());
    // Visits: an answer of the wrong type names the item.
    let tpl = s.template(DEFAULT_TEMPLATE_ID, 1).unwrap();
    let mut v = Visit::new(&existing[0].id, VIL1, "liaison-1", &tpl, now_ms());
    v.answers.insert(
        "drug_use".into(),
        gridsync_core::model::Answer {
            value: gridsync_core::model::AnswerValue::Number(3.0),
            note: None,
        },
    );
    match s.save_visit(v) {
        Err(Error::Invalid(i)) => assert_eq!(i.field, "answers.drug_use"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(s.counts().unwrap(), before);
    // Missing things are typed too.
    assert!(matches!(
        s.producer("no-such-id"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_corrupt_record_is_set_aside_and_the_rest_keeps_working() {
    let (_d, path, s) = temp_store(&liaison());
    let good = s.create_producer(ranch("好牧场", VIL1, 1)).unwrap();
    let bad = s.create_producer(ranch("坏牧场", VIL1, 2)).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        let n = c
            .execute(
                "UPDATE records SET doc = ?2 WHERE id = ?1",
                rusqlite::params![
                    bad.id,
                    b"\x85\x6f\x4a\x83 definitely not automerge".to_vec()
                ],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    match s.record(&bad.id) {
        Err(Error::Corrupt { id, detail }) => {
            assert_eq!(id, bad.id);
            assert!(!detail.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let corrupt = s.corrupt_records().unwrap();
    assert_eq!(corrupt.len(), 1);
    assert_eq!(corrupt[0].0, bad.id);
    // Still reported on the next read, without panicking.
    assert!(matches!(s.producer(&bad.id), Err(Error::Corrupt { .. })));
    let c = s.counts().unwrap();
    assert_eq!((c.producers, c.corrupt), (1, 1));
    // The rest keeps working: reads, lists, new records, edits, pushes.
    assert_eq!(s.producer(&good.id).unwrap().name, "好牧场");
    let list = s
        .producers_in_grid(VIL1, ProducerSort::Name, 50, 0)
        .unwrap();
    assert_eq!(list.len(), 1);
    let third = s.create_producer(ranch("新牧场", VIL1, 3)).unwrap();
    let mut g = s.producer(&good.id).unwrap();
    g.address = "改后地址".into();
    s.update_producer(g).unwrap();
    let pending = s.pending_pushes(100, &HashSet::new()).unwrap();
    let ids: HashSet<&str> = pending.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, HashSet::from([good.id.as_str(), third.id.as_str()]));
    assert_eq!(s.counts().unwrap().unsynced, 2);
}

#[test]
fn corruption_in_a_chunk_is_caught_too() {
    let (_d, path, s) = temp_store(&liaison());
    let p = s.create_producer(ranch("牧场", VIL1, 1)).unwrap();
    let mut e = p.clone();
    e.address = "新".into();
    s.update_producer(e).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let n = c
            .execute(
                "UPDATE record_chunks SET bytes = x'00112233' WHERE id = ?1",
                [&p.id],
            )
            .unwrap();
        assert_eq!(n, 1, "the edit was stored as an incremental chunk");
    }
    assert!(matches!(s.record(&p.id), Err(Error::Corrupt { .. })));
    assert_eq!(s.corrupt_records().unwrap().len(), 1);
}

#[test]
fn eight_threads_at_once() {
    let (_d, path, s) = temp_store(&liaison());
    let s = Arc::new(s);
    let tpl = default_template(REGION);
    let per_thread = 12;
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = Arc::clone(&s);
            let tpl = tpl.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..per_thread {
                    let serial = t * 100 + i;
                    let p = s
                        .create_producer(ranch(&format!("线程{t}牧场{i}"), VIL1, serial))
                        .unwrap();
                    let mut v = Visit::new(&p.id, VIL1, "liaison-1", &tpl, now_ms());
                    answer_required(&mut v);
                    let v = s.save_visit(v).unwrap();
                    // Readers interleave with writers.
                    assert_eq!(s.producer(&p.id).unwrap().id, p.id);
                    s.search_producers(&format!("线程{t}"), 100).unwrap();
                    ids.push((p.id, v.id));
                }
                ids
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("thread panicked"));
    }
    assert_eq!(all.len(), 8 * per_thread as usize);
    let c = s.counts().unwrap();
    assert_eq!((c.producers, c.visits), (96, 96));
    for (p, v) in &all {
        assert_eq!(s.visit(v).unwrap().producer_id, *p);
    }
    drop(s);
    let again = Store::open(&path).unwrap();
    assert_eq!(again.counts().unwrap().visits, 96);
}

#[test]
fn reopening_the_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let (pid, vid, actor, counts) = {
        let s = store_as(&path, &liaison());
        let p = s.create_producer(ranch("持久牧场", VIL1, 1)).unwrap();
        let tpl = s.template(DEFAULT_TEMPLATE_ID, 1).unwrap();
        let mut v = Visit::new(&p.id, VIL1, "liaison-1", &tpl, now_ms());
        answer_required(&mut v);
        let v = s.save_visit(v).unwrap();
        s.complete_visit(&v.id).unwrap();
        s.set_patrol_interval(ProducerType::FamilyRanch, RiskLevel::Low, 7)
            .unwrap();
        (p.id, v.id, s.actor_id(), s.counts().unwrap())
    };
    let s = Store::open(&path).unwrap();
    assert_eq!(s.actor_id(), actor, "the device keeps its Automerge actor");
    assert_eq!(s.profile().unwrap(), Some(liaison()));
    assert_eq!(s.grids().unwrap().len(), grid_tree().len());
    assert_eq!(s.counts().unwrap(), counts);
    assert_eq!(s.producer(&pid).unwrap().name, "持久牧场");
    assert_eq!(
        s.visit(&vid).unwrap().status,
        gridsync_core::model::VisitStatus::Completed
    );
    assert_eq!(s.history(&vid).unwrap().len(), 2);
    // The interval survived: the producer visited today is due again only after 7 days.
    let due_later = s.due_patrols(VIL1, now_ms() + 8 * DAY_MS).unwrap();
    assert_eq!(due_later.len(), 1);
    assert_eq!(due_later[0].interval_days, 7);
    // And it can still be edited after reopening.
    let mut p = s.producer(&pid).unwrap();
    p.address = "重开后".into();
    s.update_producer(p).unwrap();
    assert_eq!(s.history(&pid).unwrap().len(), 2);
}

#[test]
fn many_edits_compact_and_still_read_back() {
    let (_d, path, s) = temp_store(&liaison());
    let p = s.create_producer(ranch("常改牧场", VIL1, 1)).unwrap();
    for i in 0..40 {
        let mut e = s.producer(&p.id).unwrap();
        e.address = format!("地址{i}");
        s.update_producer(e).unwrap();
    }
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.producer(&p.id).unwrap().address, "地址39");
    assert_eq!(s.history(&p.id).unwrap().len(), 41);
    let c = rusqlite::Connection::open(&path).unwrap();
    let chunks: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM record_chunks WHERE id = ?1",
            [&p.id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(chunks < 16, "chunks are compacted, found {chunks}");
}

#[test]
fn change_tracking_keeps_edits_made_during_a_sync() {
    let (_d, _p, s) = temp_store(&liaison());
    let a = s.create_producer(ranch("甲牧场", VIL1, 1)).unwrap();
    let b = s.create_producer(ranch("乙牧场", VIL1, 2)).unwrap();
    let pending = s.pending_pushes(100, &HashSet::new()).unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending
        .iter()
        .all(|p| !p.changes.is_empty() && !p.heads.is_empty()));
    assert_eq!(s.counts().unwrap().unsynced, 2);
    // While the push is in flight, the person edits record a.
    let mut e = s.producer(&a.id).unwrap();
    e.phone = "13512345678".into();
    s.update_producer(e).unwrap();
    let results: Vec<PushResult> = pending
        .iter()
        .map(|p| PushResult {
            id: p.id.clone(),
            outcome: PushOutcome::Accepted,
        })
        .collect();
    assert_eq!(s.apply_push_results(&pending, &results).unwrap(), (2, 0));
    let again = s.pending_pushes(100, &HashSet::new()).unwrap();
    assert_eq!(again.len(), 1, "the edit made during sync is still pending");
    assert_eq!(again[0].id, a.id);
    // Only the new change goes up: it is smaller than the whole first push.
    let first_a = pending.iter().find(|p| p.id == a.id).unwrap();
    assert!(again[0].changes.len() < first_a.changes.len());
    assert_eq!(s.counts().unwrap().unsynced, 1);
    // A rejected edit stays on the device and is counted until a new edit.
    let rejected = vec![PushResult {
        id: a.id.clone(),
        outcome: PushOutcome::Rejected {
            code: RejectCode::Invalid,
            reason: "phone: 号码无效".into(),
        },
    }];
    assert_eq!(s.apply_push_results(&again, &rejected).unwrap(), (0, 1));
    assert!(s.pending_pushes(100, &HashSet::new()).unwrap().is_empty());
    let c = s.counts().unwrap();
    assert_eq!((c.rejected, c.unsynced), (1, 1));
    let rej = s.rejected_edits().unwrap();
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].reason, "phone: 号码无效");
    assert_eq!(
        s.producer(&a.id).unwrap().phone,
        "13512345678",
        "kept, not dropped"
    );
    let mut e = s.producer(&a.id).unwrap();
    e.phone = "13512345679".into();
    s.update_producer(e).unwrap();
    assert_eq!(s.pending_pushes(100, &HashSet::new()).unwrap().len(), 1);
    // Skipped ids are left out.
    let skip = HashSet::from([a.id.clone()]);
    assert!(s.pending_pushes(100, &skip).unwrap().is_empty());
    let _ = b;
}

#[test]
fn batch_creation_is_all_or_nothing_and_names_the_entry() {
    let (_d, _p, s) = temp_store(&supervisor());
    let batch: Vec<_> = (0..50)
        .map(|i| {
            ranch(
                &format!("批量牧场{i:02}"),
                if i % 2 == 0 { VIL1 } else { VIL2 },
                i,
            )
        })
        .collect();
    let stored = s.create_producers(batch).unwrap();
    assert_eq!(stored.len(), 50);
    assert!(stored.iter().all(|p| p.created_by == "super-1"));
    assert_eq!(s.counts().unwrap().producers, 50);
    assert_eq!(s.producer(&stored[7].id).unwrap(), stored[7]);
    assert_eq!(s.pending_pushes(1000, &HashSet::new()).unwrap().len(), 50);
    assert_eq!(
        s.producers_in_grid(VIL2, ProducerSort::Name, 100, 0)
            .unwrap()
            .len(),
        25
    );
    // One bad entry: nothing of the batch is written, and the error names it.
    let mut batch: Vec<_> = (0..3)
        .map(|i| ranch(&format!("第二批{i}"), VIL1, 100 + i))
        .collect();
    batch[1].phone = "12".into();
    match s.create_producers(batch) {
        Err(Error::Invalid(i)) => assert_eq!(i.field, "producers[1].phone"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // Outside the supervisor's township: forbidden, nothing written.
    let batch = vec![ranch("本镇", VIL1, 200), ranch("外镇", VIL3, 201)];
    assert!(matches!(
        s.create_producers(batch),
        Err(Error::Forbidden(_))
    ));
    // A duplicate id is refused.
    let dup = vec![stored[0].clone()];
    assert!(matches!(s.create_producers(dup), Err(Error::Workflow(_))));
    assert_eq!(s.counts().unwrap().producers, 50);
    assert!(s.search_producers("第二批", 10).unwrap().is_empty());
}

#[test]
fn a_new_record_reads_back_as_stored_even_with_duplicates() {
    let (_d, _p, s) = temp_store(&liaison());
    let mut p = ranch("重复产品牧场", VIL1, 1);
    p.products = vec!["羊肉".into(), "羊绒".into(), "羊肉".into()];
    p.certifications = vec![
        gridsync_core::model::Certification::Green,
        gridsync_core::model::Certification::Green,
    ];
    p.scale.crop_area_mu = Some(35.0);
    p.location = Some(gridsync_core::model::GeoPoint {
        lat: 44.5,
        lon: -0.0,
    });
    let created = s.create_producer(p).unwrap();
    assert_eq!(
        created.products,
        vec!["羊肉".to_string(), "羊绒".to_string()]
    );
    assert_eq!(created.certifications.len(), 1);
    assert_eq!(s.producer(&created.id).unwrap(), created);
    // Without duplicates the returned record is exactly what a later read gives.
    let q = s.create_producer(ranch("普通牧场", VIL1, 2)).unwrap();
    assert_eq!(s.producer(&q.id).unwrap(), q);
    let tpl = s
        .template(gridsync_core::model::DEFAULT_TEMPLATE_ID, 1)
        .unwrap();
    let mut v = Visit::new(&q.id, VIL1, "liaison-1", &tpl, now_ms());
    answer_required(&mut v);
    let v = s.save_visit(v).unwrap();
    assert_eq!(s.visit(&v.id).unwrap(), v);
}

#[test]
fn a_large_batch_is_prepared_in_parallel_in_order() {
    let (_d, _p, s) = temp_store(&liaison());
    let mut batch: Vec<_> = (0..700)
        .map(|i| ranch(&format!("大批{i:03}"), VIL1, i))
        .collect();
    batch[450].phone = "123".into();
    match s.create_producers(batch.clone()) {
        Err(Error::Invalid(i)) => assert_eq!(i.field, "producers[450].phone"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(s.counts().unwrap().producers, 0);
    batch[450].phone = "13900001234".into();
    let ids: Vec<String> = batch.iter().map(|p| p.id.clone()).collect();
    let stored = s.create_producers(batch).unwrap();
    assert_eq!(
        stored.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        ids,
        "results come back in the order given"
    );
    assert_eq!(s.counts().unwrap().producers, 700);
    let page = s.producers_in_grid(VIL1, ProducerSort::Name, 3, 0).unwrap();
    assert_eq!(page[0].name, "大批000");
    assert_eq!(s.producer(&ids[699]).unwrap().name, "大批699");
}

#[test]
fn a_changed_template_is_never_served_stale() {
    let (_d, _p, s) = temp_store(&county());
    let mut t = default_template(BANNER);
    t.template_id = "county-check".into();
    t.id = gridsync_core::model::ChecklistTemplate::record_id("county-check", 1);
    let t = s.save_template(t).unwrap();
    assert_eq!(s.template("county-check", 1).unwrap(), t);
    assert_eq!(
        s.template("county-check", 1).unwrap(),
        t,
        "served from the cache"
    );
    let mut t2 = t.clone();
    t2.name_zh = "旗县专项检查表".into();
    t2.items[0].required = false;
    s.save_template(t2.clone()).unwrap();
    assert_eq!(s.template("county-check", 1).unwrap(), t2);
    // Visits are validated against the current version: the first item is now optional.
    let p = s.create_producer(ranch("牧场", VIL1, 1)).unwrap();
    let mut v = Visit::new(&p.id, VIL1, "county-1", &t2, now_ms());
    answer_required(&mut v);
    v.answers.remove("production_records");
    v.status = gridsync_core::model::VisitStatus::Completed;
    v.ended_at_ms = Some(now_ms());
    s.save_visit(v).unwrap();
    assert!(matches!(
        s.template("county-check", 2),
        Err(Error::NotFound { .. })
    ));
}
