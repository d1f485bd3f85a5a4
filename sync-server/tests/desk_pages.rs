//! The console's read-side pages: the directory (search, filters, pages, scope), a
//! producer's page (review history, field-level change history with names and devices),
//! visits and a visit's page, open and overdue rectifications.

#![allow(clippy::unwrap_used)]

mod desk_support;
use desk_support::*;

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    default_template, Answer, AnswerValue, DirectoryReview, RapidTest, Rectification, ReviewAction,
    ReviewEvent, ReviewState, RiskLevel, TestMethod, Verdict, Visit, YesNoNa,
};
use gridsync_core::sync::protocol::{PushOutcome, PushRecord};
use gridsync_server::storage::{Author, Device, EnrolCode};

const DAY_MS: i64 = 86_400_000;

fn admin() -> Person {
    person("adm", "管理员甲", Role::Admin, &[])
}

fn seed(s: &Server, records: &[Record]) {
    gridsync_server::admin::seed_records(s.storage(), &admin(), records).unwrap();
}

fn producer_with(
    id: &str,
    name: &str,
    owner: &str,
    grid: &str,
    t: ProducerType,
    risk: RiskLevel,
) -> Record {
    let Record::Producer(mut p) = producer(id, name, owner, grid) else {
        unreachable!()
    };
    p.producer_type = t;
    p.risk = risk;
    if t.needs_credit_code() {
        p.id_number = None;
        p.credit_code = Some("91150000MA0N000000".into());
    }
    Record::Producer(p)
}

/// The `data-id`s of the rows of the table with this id, in page order.
fn row_ids(body: &str, table: &str) -> Vec<String> {
    let Some(start) = body.find(&format!("<table id=\"{table}\"")) else {
        return Vec::new();
    };
    let rest = &body[start..];
    let rest = &rest[..rest.find("</table>").unwrap()];
    rest.split("data-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect()
}

/// The HTML of the first row of `table` whose attributes contain `attr`.
fn row<'a>(body: &'a str, table: &str, attr: &str) -> &'a str {
    let start = body.find(&format!("<table id=\"{table}\"")).unwrap();
    let t = &body[start..];
    let t = &t[..t.find("</table>").unwrap()];
    let at = t
        .find(attr)
        .unwrap_or_else(|| panic!("no row {attr} in {t}"));
    let r = &t[at..];
    &r[..r.find("</tr>").unwrap()]
}

/// The href of the pager's next link, unescaped.
fn next_link(body: &str) -> Option<String> {
    let at = body.find("class=\"next\" rel=\"next\" href=\"")?;
    let rest = &body[at + "class=\"next\" rel=\"next\" href=\"".len()..];
    Some(
        rest[..rest.find('"').unwrap()]
            .replace("&amp;", "&")
            .replace("&#38;", "&"),
    )
}

fn signed_in(s: &Server, user: &str, pw: &str) -> Browser {
    let mut b = Browser::new(s);
    assert_eq!(b.sign_in(user, pw).status, StatusCode::SEE_OTHER);
    b
}

#[test]
fn directory_searches_filters_pages_and_keeps_to_the_scope() {
    let s = start(|_, _| {});
    let mut records = vec![producer_with(
        "P3",
        "巴音家庭农场",
        "巴音",
        "T1",
        ProducerType::FamilyFarm,
        RiskLevel::High,
    )];
    for i in 0..52 {
        records.push(producer(
            &format!("H{i:02}"),
            &format!("草原牧户{i:02}"),
            &format!("牧民{i:02}"),
            "T1-V1",
        ));
    }
    for i in 0..3 {
        records.push(producer(
            &format!("X{i}"),
            &format!("草原牧户外{i}"),
            "外旗牧民",
            "T2-V1",
        ));
    }
    seed(&s, &records);
    let mut sup = signed_in(&s, "wangli", SUP_PASSWORD);

    // Every page of the supervisor's directory: 54 producers of T1, none of T2.
    let first = sup.get("/desk/directory");
    assert_eq!(first.status, StatusCode::OK);
    let mut all = row_ids(&first.body, "directory");
    assert_eq!(all.len(), 50, "50 rows a page");
    let mut next = next_link(&first.body);
    let mut pages = 1;
    while let Some(link) = next {
        let page = sup.get(&link);
        assert_eq!(page.status, StatusCode::OK);
        all.extend(row_ids(&page.body, "directory"));
        next = next_link(&page.body);
        pages += 1;
    }
    assert_eq!(pages, 2);
    assert_eq!(all.len(), 54, "{all:?}");
    assert!(all.contains(&"P1".to_string()) && all.contains(&"P3".to_string()));
    assert!(!all.iter().any(|id| id == "P2" || id.starts_with('X')));
    // Each row links to its producer.
    assert!(first.body.contains("href=\"/desk/producers/H00\""));

    // A Chinese substring of the name, of the owner; nothing else.
    let r = sup.get(&format!("/desk/directory?q={}", url_encode("乌兰")));
    assert_eq!(row_ids(&r.body, "directory"), ["P1"]);
    let r = sup.get(&format!("/desk/directory?q={}", url_encode("巴音")));
    assert_eq!(row_ids(&r.body, "directory"), ["P3"]);
    assert!(
        r.body.contains("value=\"巴音\""),
        "the search is kept in the form"
    );
    // The T2 producer's name is not found by the supervisor, but by the county.
    let q = format!("/desk/directory?q={}", url_encode("查干"));
    assert!(row_ids(&sup.get(&q).body, "directory").is_empty());
    let mut cty = signed_in(&s, "bater", CTY_PASSWORD);
    assert_eq!(row_ids(&cty.get(&q).body, "directory"), ["P2"]);

    // Filters narrow: a village, its township (with the village), type, risk.
    let v = row_ids(&sup.get("/desk/directory?grid=T1-V1").body, "directory");
    assert!(v.contains(&"P1".to_string()) && !v.contains(&"P3".to_string()));
    let t = sup.get("/desk/directory?grid=T1&type=family_farm");
    assert_eq!(row_ids(&t.body, "directory"), ["P3"]);
    let t = sup.get("/desk/directory?grid=T1&q=");
    assert_eq!(row_ids(&t.body, "directory").len(), 50);
    let r = sup.get("/desk/directory?risk=high");
    assert_eq!(row_ids(&r.body, "directory"), ["P3"]);
    let r = sup.get("/desk/directory?review=submitted");
    assert!(row_ids(&r.body, "directory").is_empty());

    // Pages keep the filters.
    let q = format!("/desk/directory?q={}&grid=T1-V1", url_encode("草原牧户"));
    let p1 = sup.get(&q);
    assert_eq!(row_ids(&p1.body, "directory").len(), 50);
    let link = next_link(&p1.body).unwrap();
    assert!(
        link.contains("grid=T1-V1") && link.contains("page=2"),
        "{link}"
    );
    let p2 = sup.get(&link);
    assert_eq!(
        row_ids(&p2.body, "directory"),
        ["H50", "H51"],
        "the second page of the same search"
    );
    assert!(next_link(&p2.body).is_none());
    assert!(p2.body.contains("rel=\"prev\""));

    // The county's directory for T2 lists T2's producers.
    let c = row_ids(&cty.get("/desk/directory?grid=T2").body, "directory");
    assert_eq!(c.len(), 4, "{c:?}");

    // A grid outside the scope or unknown: as missing. Invalid values: 400 naming them.
    let missing = sup.get("/desk/directory?grid=NOPE");
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let outside = sup.get("/desk/directory?grid=T2");
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert_eq!(outside.body, missing.body);
    for (query, name) in [
        ("type=bogus", "type"),
        ("review=approved", "review"),
        ("risk=extreme", "risk"),
        ("page=0", "page"),
        ("page=x", "page"),
    ] {
        let r = sup.get(&format!("/desk/directory?{query}"));
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            r.body.contains(&format!("参数 {name} ")),
            "{query}: {}",
            r.body
        );
    }
    let long = "草".repeat(51);
    let r = sup.get(&format!("/desk/directory?q={}", url_encode(&long)));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("最多 50 个字"), "{}", r.body);
    let ok = sup.get(&format!(
        "/desk/directory?q={}",
        url_encode(&"草".repeat(50))
    ));
    assert_eq!(ok.status, StatusCode::OK);

    // Without a session: to sign-in.
    let mut anon = Browser::new(&s);
    assert_eq!(anon.get("/desk/directory").status, StatusCode::SEE_OTHER);
}

/// Registers a device of `person_id` through an enrolment code.
fn register_device(s: &Server, person_id: &str, device_id: &str, name: &str) {
    let st = s.storage();
    let hash = token_hash(device_id);
    st.insert_code(&EnrolCode {
        code_hash: hash.clone(),
        person_id: person_id.into(),
        created_by: "adm".into(),
        created_at_ms: gridsync_core::now_ms(),
        expires_at_ms: gridsync_core::now_ms() + DAY_MS,
    })
    .unwrap();
    let d = Device {
        id: device_id.into(),
        person_id: person_id.into(),
        name: name.into(),
        secret_hash: token_hash("secret"),
        pending_hash: None,
        created_at_ms: gridsync_core::now_ms(),
        last_seen_ms: None,
        revoked_at_ms: None,
        revoked_reason: None,
    };
    assert_eq!(
        st.redeem_code(&hash, gridsync_core::now_ms(), &d)
            .unwrap()
            .as_deref(),
        Some(person_id)
    );
}

/// Pushes an edit of a stored producer as `person_id` from `device_id`, as a phone would.
fn push_edit(
    s: &Server,
    person_id: &str,
    device_id: &str,
    record_id: &str,
    at_ms: i64,
    edit: impl FnOnce(&mut Producer),
) {
    let st = s.storage();
    let stored = st.record(record_id).unwrap().unwrap();
    let mut doc = RecordDoc::load(&stored.doc, &[]).unwrap();
    let before = doc.heads();
    doc.set_actor(&gridsync_core::device_actor(device_id));
    let Record::Producer(mut p) = doc.read().unwrap() else {
        panic!("not a producer")
    };
    edit(&mut p);
    p.updated_at_ms = at_ms;
    assert!(doc.update(&Record::Producer(p), person_id, at_ms).unwrap());
    let push = PushRecord {
        id: record_id.into(),
        kind: stored.kind.tag(),
        changes: doc.save_after(&before),
        heads: doc.heads().iter().map(|h| h.0).collect(),
    };
    let me = st.person(person_id).unwrap().unwrap();
    let nodes = st.grids().unwrap();
    let tree = Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes));
    let scope = gridsync_server::scope::Scope::compute(&nodes, &st.people().unwrap(), &me, tree);
    let mut ctx = gridsync_server::push::PushContext::new(st, &scope, device_id);
    let author = Author {
        person_id: person_id.into(),
        device_id: Some(device_id.into()),
    };
    let results = st
        .apply_push(&author, &[push], &mut |stored, p| {
            gridsync_server::push::decide(&mut ctx, stored, p)
        })
        .unwrap();
    assert!(
        matches!(results[0].outcome, PushOutcome::Accepted),
        "{:?}",
        results[0].outcome
    );
}

fn visit(id: &str, producer_id: &str, grid: &str, inspector: &str, started_ms: i64) -> Visit {
    let mut v = Visit::new(
        producer_id,
        grid,
        inspector,
        &default_template("B"),
        started_ms,
    );
    v.id = id.into();
    v
}

#[test]
fn producer_page_shows_reviews_field_history_visits_and_keeps_to_the_scope() {
    let s = start(|_, _| {});
    register_device(&s, "sup1", "dev-sup1", "王丽的手机");
    let Record::Producer(mut p4) = producer("P4", "呼和家庭牧场", "呼和", "T1-V1") else {
        unreachable!()
    };
    p4.review = DirectoryReview {
        state: ReviewState::Returned,
        approved_fingerprint: None,
        return_reason: Some("缺少身份证号".into()),
        history: vec![
            ReviewEvent {
                id: "step-1".into(),
                action: ReviewAction::Submit,
                by: "liai".into(),
                at_ms: 1_700_000_100_000,
                state_after: ReviewState::Submitted,
            },
            ReviewEvent {
                id: "step-2".into(),
                action: ReviewAction::Return("缺少身份证号".into()),
                by: "sup1".into(),
                at_ms: 1_700_000_200_000,
                state_after: ReviewState::Returned,
            },
        ],
    };
    p4.updated_at_ms = 1_700_000_200_000;
    let mut v1 = visit("V1", "P1", "T1-V1", "sup1", 1_709_262_000_000);
    v1.updated_at_ms = v1.started_at_ms;
    seed(&s, &[Record::Producer(p4), Record::Visit(v1)]);
    push_edit(&s, "sup1", "dev-sup1", "P1", 1_710_000_000_000, |p| {
        p.phone = "13900001111".into();
    });

    let mut sup = signed_in(&s, "wangli", SUP_PASSWORD);
    let page = sup.get("/desk/producers/P1");
    assert_eq!(page.status, StatusCode::OK);
    // The phone's edit: before and after, the person's name, the device.
    let edit = row(&page.body, "field-history", "data-field=\"phone\"");
    assert!(edit.contains("13812345678"), "{edit}");
    assert!(edit.contains("13900001111"), "{edit}");
    assert!(edit.contains("王丽"), "{edit}");
    assert!(edit.contains("王丽的手机"), "{edit}");
    assert!(!edit.contains(">sup1<"), "{edit}");
    // Newest first: the edit comes before the seeding's rows, which the import wrote.
    let hist = &page.body[page.body.find("id=\"field-history\"").unwrap()..];
    let edit_at = hist.find("13900001111").unwrap();
    let seeded = row(&page.body, "field-history", "data-field=\"name\"");
    assert!(
        seeded.contains("管理员甲") && seeded.contains("系统导入"),
        "{seeded}"
    );
    assert!(seeded.contains("乌兰家庭牧场"));
    assert!(edit_at < hist.find("data-field=\"name\"").unwrap());
    // The edit time is not a field of the history.
    assert!(!page.body.contains("data-field=\"updated_at_ms\""));
    assert!(
        page.body.contains("13900001111"),
        "the fields show the new phone"
    );
    // Its visit, linked.
    assert_eq!(row_ids(&page.body, "producer-visits"), ["V1"]);
    assert!(page.body.contains("href=\"/desk/visits/V1\""));
    assert!(!page.body.contains("id=\"conflicts\""), "no conflicts");

    // Review history with names.
    let p4 = sup.get("/desk/producers/P4");
    assert_eq!(p4.status, StatusCode::OK);
    assert_eq!(row_ids(&p4.body, "review-history"), ["step-1", "step-2"]);
    let step = row(&p4.body, "review-history", "data-id=\"step-2\"");
    assert!(step.contains("王丽") && step.contains("退回") && step.contains("缺少身份证号"));
    let step = row(&p4.body, "review-history", "data-id=\"step-1\"");
    assert!(
        step.contains("乌日娜") && step.contains("提交审核"),
        "{step}"
    );

    // Outside the scope, as missing.
    let missing = sup.get("/desk/producers/NOPE");
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let outside = sup.get("/desk/producers/P2");
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert_eq!(outside.body, missing.body);
    let mut cty = signed_in(&s, "bater", CTY_PASSWORD);
    assert_eq!(cty.get("/desk/producers/P2").status, StatusCode::OK);
}

#[test]
fn producer_page_shows_concurrent_edits_as_conflicts() {
    let s = start(|_, _| {});
    register_device(&s, "sup1", "dev-sup1", "王丽的手机");
    // Two edits of the owner from the same stored state: the second is concurrent.
    let stored = s.storage().record("P1").unwrap().unwrap();
    push_edit(&s, "sup1", "dev-sup1", "P1", 1_710_000_000_000, |p| {
        p.owner = "乌兰其其格".into();
    });
    let st = s.storage();
    let mut doc = RecordDoc::load(&stored.doc, &[]).unwrap();
    let before = doc.heads();
    doc.set_actor(&gridsync_core::device_actor(
        gridsync_server::push::SEED_DEVICE,
    ));
    let Record::Producer(mut p) = doc.read().unwrap() else {
        panic!()
    };
    p.owner = "乌兰图雅".into();
    p.updated_at_ms = 1_710_000_100_000;
    doc.update(&Record::Producer(p), "adm", 1_710_000_100_000)
        .unwrap();
    let push = PushRecord {
        id: "P1".into(),
        kind: stored.kind.tag(),
        changes: doc.save_after(&before),
        heads: doc.heads().iter().map(|h| h.0).collect(),
    };
    let nodes = st.grids().unwrap();
    let tree = Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes));
    let scope =
        gridsync_server::scope::Scope::compute(&nodes, &st.people().unwrap(), &admin(), tree);
    let mut ctx =
        gridsync_server::push::PushContext::new(st, &scope, gridsync_server::push::SEED_DEVICE);
    let author = Author {
        person_id: "adm".into(),
        device_id: None,
    };
    let r = st
        .apply_push(&author, &[push], &mut |stored, p| {
            gridsync_server::push::decide(&mut ctx, stored, p)
        })
        .unwrap();
    assert!(matches!(r[0].outcome, PushOutcome::Accepted), "{r:?}");

    let mut sup = signed_in(&s, "wangli", SUP_PASSWORD);
    let page = sup.get("/desk/producers/P1");
    assert_eq!(row_ids(&page.body, "conflicts"), ["owner"]);
    let c = row(&page.body, "conflicts", "data-id=\"owner\"");
    assert!(c.contains("乌兰其其格") && c.contains("乌兰图雅"), "{c}");
    // Both edits in the history, each replacing the value its author saw.
    let owner_rows = page.body.matches("data-field=\"owner\"").count();
    assert_eq!(owner_rows, 3, "creation and two edits");
}

#[test]
fn visits_visit_page_and_rectifications() {
    let s = start(|_, _| {});
    let today_ms = gridsync_core::now_ms();
    let later = gridsync_core::dates::china_date(today_ms + 30 * DAY_MS);
    // 2024-03-01 10:00 in China.
    let march = 1_709_258_400_000;
    let mut v1 = visit("V1", "P1", "T1-V1", "sup1", march);
    v1.answers.insert(
        "drug_use".into(),
        Answer {
            value: AnswerValue::YesNo(YesNoNa::No),
            note: Some("发现过期兽药".into()),
        },
    );
    v1.rapid_tests.push(RapidTest {
        id: "t1".into(),
        sample: "羊尿".into(),
        item: "克伦特罗".into(),
        method: TestMethod::ColloidalGold,
        kit: "某某试纸条".into(),
        value: None,
        unit: None,
        verdict: Verdict::Fail,
        operator: "sup1".into(),
        tested_at_ms: march + 600_000,
    });
    v1.rectification = Some(Rectification {
        required: true,
        deadline: "2024-03-10".into(),
        notice_number: "整改-001".into(),
        resolved_at_ms: None,
    });
    v1.updated_at_ms = march + 3_600_000;
    // 2024-05-01 in China, its rectification not yet due.
    let may = march + 61 * DAY_MS;
    let mut v2 = visit("V2", "P1", "T1-V1", "sup1", may);
    v2.rectification = Some(Rectification {
        required: true,
        deadline: later.clone(),
        notice_number: "整改-002".into(),
        resolved_at_ms: None,
    });
    v2.updated_at_ms = may;
    let mut v3 = visit("V3", "P2", "T2-V1", "adm", march);
    v3.rectification = Some(Rectification {
        required: true,
        deadline: "2024-03-05".into(),
        notice_number: "整改-003".into(),
        resolved_at_ms: None,
    });
    v3.updated_at_ms = march;
    seed(
        &s,
        &[Record::Visit(v1), Record::Visit(v2), Record::Visit(v3)],
    );

    let mut sup = signed_in(&s, "wangli", SUP_PASSWORD);
    let all = sup.get("/desk/visits");
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(row_ids(&all.body, "visits"), ["V2", "V1"], "newest first");
    let r = sup.get("/desk/visits?from=2024-04-01");
    assert_eq!(row_ids(&r.body, "visits"), ["V2"]);
    let r = sup.get("/desk/visits?to=2024-03-01");
    assert_eq!(
        row_ids(&r.body, "visits"),
        ["V1"],
        "the end day is included"
    );
    let r = sup.get("/desk/visits?from=2024-03-02&to=2024-04-30");
    assert!(row_ids(&r.body, "visits").is_empty());
    let r = sup.get("/desk/visits?producer=P1&inspector=sup1&status=draft&grid=T1");
    assert_eq!(row_ids(&r.body, "visits"), ["V2", "V1"]);
    let r = sup.get("/desk/visits?inspector=adm");
    assert!(row_ids(&r.body, "visits").is_empty());
    let r = sup.get("/desk/visits?status=completed");
    assert!(row_ids(&r.body, "visits").is_empty());
    for (q, name) in [
        ("from=2024-02-30", "from"),
        ("to=03/01/2024", "to"),
        ("status=done", "status"),
        ("from=2024-05-01&to=2024-04-01", "to"),
    ] {
        let r = sup.get(&format!("/desk/visits?{q}"));
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(r.body.contains(&format!("参数 {name} ")), "{q}");
    }
    assert_eq!(
        sup.get("/desk/visits?grid=T2").status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sup.get("/desk/visits?producer=P2").status,
        StatusCode::NOT_FOUND
    );

    // The visit's page.
    let page = sup.get("/desk/visits/V1");
    assert_eq!(page.status, StatusCode::OK);
    let answer = row(&page.body, "answers", "data-id=\"drug_use\"");
    assert!(answer.contains("农药兽药使用情况") && answer.contains("否"));
    assert!(answer.contains("发现过期兽药"));
    let test = row(&page.body, "rapid-tests", "data-id=\"t1\"");
    assert!(test.contains("克伦特罗") && test.contains("不合格"));
    assert!(page.body.contains("整改-001") && page.body.contains("2024-03-10"));
    assert!(page.body.contains("已逾期"));
    assert!(page.body.contains("王丽"), "the inspector's name");
    assert!(page.body.contains("乌兰家庭牧场"));
    assert!(page.body.contains("href=\"/desk/producers/P1\""));
    // Outside the scope, as missing.
    let missing = sup.get("/desk/visits/NOPE");
    let outside = sup.get("/desk/visits/V3");
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert_eq!(outside.body, missing.body);
    assert_eq!(sup.get("/desk/visits/P1").status, StatusCode::NOT_FOUND);

    // Open rectifications: earliest deadline first, the overdue one marked.
    let r = sup.get("/desk/rectifications");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(row_ids(&r.body, "rectifications"), ["V1", "V2"]);
    let overdue = row(&r.body, "rectifications", "data-id=\"V1\"");
    assert!(overdue.contains("data-overdue=\"1\"") && overdue.contains("已逾期"));
    let due = row(&r.body, "rectifications", "data-id=\"V2\"");
    assert!(due.contains("data-overdue=\"0\"") && !due.contains("已逾期"));
    assert!(due.contains(&later));
    let r = sup.get("/desk/rectifications?overdue=1");
    assert_eq!(row_ids(&r.body, "rectifications"), ["V1"]);
    let r = sup.get("/desk/rectifications?overdue=yes");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("参数 overdue "));
    // The county sees T2's too.
    let mut cty = signed_in(&s, "bater", CTY_PASSWORD);
    let r = cty.get("/desk/rectifications?overdue=1");
    assert_eq!(row_ids(&r.body, "rectifications"), ["V3", "V1"]);
    assert_eq!(cty.get("/desk/visits/V3").status, StatusCode::OK);
}
