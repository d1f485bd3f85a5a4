//! A phone offline for a month (issue: reliability under faults). A liaison's phone makes
//! hundreds of edits over 30 simulated days (visits, findings and rapid tests dated day by
//! day; new producers; field edits) while the rest of the township keeps syncing. When it
//! comes back its credential still works, every edit reaches the server and a second
//! device, and it receives everything that happened meanwhile.

// Test code: an unwrap is an assertion, in helpers as in test functions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use gridsync_core::model::{
    Answer, AnswerType, AnswerValue, Finding, RapidTest, Rectification, Role, Severity, TestMethod,
    Verdict, Visit, YesNoNa,
};
use gridsync_core::store::{ProducerSort, Store};
use gridsync_server::dataset::{generate, DatasetSpec};
use gridsync_tests::*;

const DAY_MS: i64 = 86_400_000;

/// What the offline phone did, to look for afterwards.
#[derive(Default)]
struct Made {
    producers: BTreeSet<String>,
    products: Vec<(String, String)>,
    addresses: Vec<(String, String)>,
    visits: BTreeSet<String>,
    findings: Vec<(String, String)>,
    tests: Vec<(String, String)>,
    completed: BTreeSet<String>,
    edits: usize,
}

fn check(store: &Store, m: &Made, who: &str) {
    for id in &m.producers {
        store
            .producer(id)
            .unwrap_or_else(|e| panic!("{who}: producer {id}: {e}"));
    }
    for (id, name) in &m.products {
        assert!(
            store.producer(id).unwrap().products.contains(name),
            "{who}: product {name} of {id} missing"
        );
    }
    // Each producer's address was edited several times; the last edit wins (nobody else
    // touched those fields).
    let mut last = std::collections::BTreeMap::new();
    for (id, a) in &m.addresses {
        last.insert(id.clone(), a.clone());
    }
    for (id, a) in &last {
        assert_eq!(
            &store.producer(id).unwrap().address,
            a,
            "{who}: address of {id}"
        );
    }
    for id in &m.visits {
        store
            .visit(id)
            .unwrap_or_else(|e| panic!("{who}: visit {id}: {e}"));
    }
    for (id, f) in &m.findings {
        assert!(
            store.visit(id).unwrap().findings.iter().any(|x| &x.id == f),
            "{who}: finding {f} missing"
        );
    }
    for (id, t) in &m.tests {
        assert!(
            store
                .visit(id)
                .unwrap()
                .rapid_tests
                .iter()
                .any(|x| &x.id == t),
            "{who}: rapid test {t} missing"
        );
    }
    for id in &m.completed {
        assert_eq!(
            store.visit(id).unwrap().status,
            gridsync_core::model::VisitStatus::Completed,
            "{who}: {id} not completed"
        );
    }
}

#[test]
fn thirty_days_offline_then_everything_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = generate(&DatasetSpec {
        producers_per_township: 30,
        visits_per_producer: 2,
        ..DatasetSpec::demo()
    });
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let grid = liaison.grids[0].clone();
    let away = Phone::enrol(&server, &server.url(), dir.path(), "away", &liaison.id);
    let other = Phone::enrol(&server, &server.url(), dir.path(), "other", &liaison.id);
    let sup = Phone::enrol(&server, &server.url(), dir.path(), "sup", &supervisor.id);
    for p in [&away, &other, &sup] {
        p.sync().unwrap();
    }
    let template = away.store.template("moa-daily-patrol", 1).unwrap();
    let start = gridsync_core::now_ms() - 30 * DAY_MS;
    let mut m = Made::default();
    let mut sup_products = Vec::new();
    let mut producers: Vec<String> = away
        .store
        .producers_in_grid(&grid, ProducerSort::Name, 1000, 0)
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    let base = producers.clone();

    for day in 0..30i64 {
        let morning = start + day * DAY_MS + 8 * 3_600_000;
        // A new producer every third day.
        if day % 3 == 0 {
            let p = away
                .store
                .create_producer(new_producer(
                    &format!("第{day}天新登记牧场"),
                    &grid,
                    &liaison.id,
                ))
                .unwrap();
            producers.push(p.id.clone());
            m.producers.insert(p.id);
            m.edits += 1;
        }
        // Field edits on a few producers.
        for k in 0..3 {
            let id = producers[(day as usize * 3 + k) % producers.len()].clone();
            let mut p = away.store.producer(&id).unwrap();
            p.address = format!("第{day}天更新的地址{k}");
            m.addresses.push((id.clone(), p.address.clone()));
            let product = format!("第{day}天产品{k}");
            p.products.push(product.clone());
            m.products.push((id.clone(), product));
            away.store.update_producer(p).unwrap();
            m.edits += 1;
        }
        // Two patrol visits dated that day, answered, with findings and a rapid test.
        for k in 0..2 {
            let pid = producers[(day as usize * 2 + k) % producers.len()].clone();
            let mut v = away
                .store
                .save_visit(Visit::new(
                    &pid,
                    &grid,
                    &liaison.id,
                    &template,
                    morning + k as i64 * 3_600_000,
                ))
                .unwrap();
            m.visits.insert(v.id.clone());
            m.edits += 1;
            for item in template.items.iter().filter(|i| i.required) {
                let value = match item.answer {
                    AnswerType::Text { .. } => AnswerValue::Text(format!("第{day}天巡查情况正常")),
                    _ => AnswerValue::YesNo(YesNoNa::Yes),
                };
                v.answers
                    .insert(item.id.clone(), Answer { value, note: None });
                v = away.store.save_visit(v).unwrap();
                m.edits += 1;
            }
            let fid = format!("d{day}-v{k}-finding");
            v.findings.push(Finding {
                id: fid.clone(),
                item_id: Some("drug_use".into()),
                description: format!("第{day}天发现：休药期记录不清"),
                severity: Severity::Minor,
                photos: vec![format!("photo/{fid}.jpg")],
                recorded_by: liaison.id.clone(),
                recorded_at_ms: morning + 1_800_000,
            });
            let tid = format!("d{day}-v{k}-test");
            v.rapid_tests.push(RapidTest {
                id: tid.clone(),
                sample: "羊尿".into(),
                item: "克伦特罗".into(),
                method: TestMethod::ColloidalGold,
                kit: "瘦肉精三联检测卡".into(),
                value: None,
                unit: None,
                verdict: Verdict::Pass,
                operator: liaison.id.clone(),
                tested_at_ms: morning + 2_400_000,
            });
            if day % 5 == 0 {
                v.rectification = Some(Rectification {
                    required: true,
                    deadline: gridsync_server::dataset::date_of(morning + 15 * DAY_MS),
                    notice_number: format!("整改〔{day}〕{k}号"),
                    resolved_at_ms: None,
                });
            }
            v.ended_at_ms = Some(morning + k as i64 * 3_600_000 + 3_000_000);
            v = away.store.save_visit(v).unwrap();
            m.findings.push((v.id.clone(), fid));
            m.tests.push((v.id.clone(), tid));
            m.edits += 1;
            if k == 0 || day % 2 == 0 {
                away.store.complete_visit(&v.id).unwrap();
                m.completed.insert(v.id.clone());
                m.edits += 1;
            }
        }
        // Meanwhile the supervisor keeps working and syncing with the server.
        let id = &base[day as usize % base.len()];
        let mut p = sup.store.producer(id).unwrap();
        let product = format!("监管员第{day}天补充");
        p.products.push(product.clone());
        sup.store.update_producer(p).unwrap();
        sup_products.push((id.clone(), product));
        sup.sync().unwrap();
        other.sync().unwrap();
    }
    assert!(m.edits >= 300, "only {} edits", m.edits);
    let unsynced = away.store.counts().unwrap().unsynced;
    println!(
        "offline for 30 days: {} edits on {unsynced} records",
        m.edits
    );

    // The server last heard from this phone a month ago.
    let link = away.store.server_link().unwrap().unwrap();
    // (Only the embedded backend's file can be aged by hand; on PostgreSQL the credential
    // is checked all the same.)
    if matches!(server.backend, gridsync_tests::Backend::Sqlite) {
        let db = rusqlite::Connection::open(dir.path().join("server").join("gridsync.db")).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        let n = db
            .execute(
                "UPDATE devices SET created_at_ms = ?2, last_seen_ms = ?2 WHERE id = ?1",
                rusqlite::params![link.device_id, start - DAY_MS],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let head_before = server.storage.feed_head(&grid).unwrap();
    let report = away
        .sync_paged(25)
        .unwrap_or_else(|e| panic!("the month-old credential or the sync failed: {e}"));
    println!(
        "back online: {} records pushed, {} pulled, {} round trips, {} bytes up, {} bytes down",
        report.pushed, report.pulled, report.round_trips, report.bytes_up, report.bytes_down
    );
    assert!(
        report.rejected.is_empty(),
        "rejected: {:?}",
        report.rejected
    );
    assert_eq!(
        report.pushed as i64, unsynced,
        "every changed record pushed"
    );
    assert_eq!(away.store.counts().unwrap().unsynced, 0);
    assert!(server.storage.feed_head(&grid).unwrap() >= head_before + unsynced as u64);
    let seen = server
        .storage
        .device(&link.device_id)
        .unwrap()
        .unwrap()
        .last_seen_ms
        .unwrap();
    assert!(
        seen > gridsync_core::now_ms() - 60_000,
        "the server saw the device again"
    );

    // Everything is on the server (through a second device) and the phone got the rest.
    other.sync().unwrap();
    check(&away.store, &m, "offline phone");
    check(&other.store, &m, "second device");
    for (id, product) in &sup_products {
        assert!(
            away.store.producer(id).unwrap().products.contains(product),
            "the supervisor's edit {product} did not arrive"
        );
    }
    assert_eq!(
        snapshot(&away.store),
        snapshot(&other.store),
        "the two devices differ"
    );
    // The credential keeps working for the next sync, which has nothing to do.
    let r = away.sync().unwrap();
    assert_eq!((r.pushed, r.pulled, r.round_trips), (0, 0, 1));
}
