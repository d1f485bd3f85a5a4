//! The review queue at the desk, against a real server on loopback: decisions written as
//! Automerge changes by the server for the signed-in person, judged by the phones' rules
//! (crafted forms included), entering the grid's feed; stale pages, scope and CSRF.

#![allow(clippy::unwrap_used)]

mod desk_support;

use desk_support::*;
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{ReviewAction, ReviewState};

/// A producer submitted for review by the liaison, stored as the admin seeds records.
fn submitted(id: &str, name: &str, grid: &str) -> Record {
    let Record::Producer(mut p) = producer(id, name, "阿拉坦", grid) else {
        unreachable!()
    };
    gridsync_core::rules::take_review_step(&mut p, ReviewAction::Submit, "liai", 1_700_000_100_000)
        .unwrap();
    Record::Producer(p)
}

fn seed(s: &Server, records: &[Record]) {
    let adm = s.storage().person("adm").unwrap().unwrap();
    gridsync_server::admin::seed_records(s.storage(), &adm, records).unwrap();
}

/// The producer as stored: its record and its document.
fn stored(s: &Server, id: &str) -> (gridsync_core::model::Producer, RecordDoc) {
    let rec = s.storage().record(id).unwrap().unwrap();
    let doc = RecordDoc::load(&rec.doc, &[]).unwrap();
    let Record::Producer(p) = doc.read().unwrap() else {
        panic!("{id} is not a producer")
    };
    (p, doc)
}

/// The form of one action on one row of the queue page: (action path, state field).
fn row_form(page: &Resp, id: &str, class: &str) -> Option<(String, String)> {
    let row_at = page.body.find(&format!("data-id=\"{id}\""))?;
    let row = &page.body[row_at..];
    let row = &row[..row.find("</tr>").unwrap()];
    let form_at = row.find(&format!("<form class=\"{class}\""))?;
    let form = &row[form_at..];
    let action = form
        .split("action=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    let state = form
        .split("name=\"state\" value=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    Some((action, state))
}

#[test]
fn a_supervisor_approves_and_the_county_returns_as_changes_in_the_feed() {
    let s = start(|_, _| {});
    seed(
        &s,
        &[
            submitted("S1", "白音家庭牧场", "T1-V1"),
            submitted("S2", "额尔敦合作社", "T1-V1"),
            submitted("S3", "查干家庭牧场", "T2-V1"),
        ],
    );
    let feed_before = s.storage().feed_head("T1-V1").unwrap();

    // The supervisor of T1 sees T1's two entries, not T2's, each with both actions.
    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let page = sup.get("/desk/reviews");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("白音家庭牧场") && page.body.contains("额尔敦合作社"));
    assert!(
        !page.body.contains("查干家庭牧场"),
        "another township's entry"
    );
    let (approve, state) = row_form(&page, "S1", "approve").unwrap();
    assert_eq!(state, "submitted");
    let csrf = page.csrf();
    let r = sup.post(&approve, &[("csrf", &csrf), ("state", &state)]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/desk/reviews?done=S1"));
    let page = sup.get(r.location.as_deref().unwrap());
    assert!(page.body.contains("id=\"flash\""), "{}", page.body);
    assert!(
        !page.body.contains("data-id=\"S1\""),
        "a decided entry leaves the queue"
    );

    // Stored as an Automerge change by the supervisor's desk actor, naming the supervisor.
    let (p, mut doc) = stored(&s, "S1");
    assert_eq!(p.review.state, ReviewState::TownshipApproved);
    let last = p.review.history.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.by.as_str()),
        ("approve_township", "sup1")
    );
    assert!(p.review.approved_fingerprint.is_some());
    let history = doc.history();
    assert_eq!(history.last().unwrap().by, "sup1");
    let desk_actor = gridsync_core::device_actor("desk-sup1");
    let changes = doc.inner().get_changes(&[]);
    assert_eq!(changes.last().unwrap().actor_id(), &desk_actor);
    // In the grid's feed (phones receive it) and in the query tables.
    assert!(s.storage().feed_head("T1-V1").unwrap() > feed_before);
    let row = s.storage().query_producer("S1").unwrap().unwrap();
    assert_eq!(row.review_state, ReviewState::TownshipApproved);
    assert!(s.actions("sup1").contains(&"desk_review".to_string()));

    // The county reviewer: S1 awaits the county (approve and return), S2 is still at the
    // township (return only), S3 of the other township too (the county's scope).
    let mut cty = Browser::new(&s);
    cty.sign_in("bater", CTY_PASSWORD);
    let page = cty.get("/desk/reviews");
    assert!(row_form(&page, "S1", "approve").is_some());
    assert!(
        row_form(&page, "S2", "approve").is_none(),
        "county approves for the township"
    );
    let (ret, state) = row_form(&page, "S2", "return").unwrap();
    assert!(page.body.contains("查干家庭牧场"));
    let csrf = page.csrf();
    let r = cty.post(
        &ret,
        &[
            ("csrf", &csrf),
            ("state", &state),
            ("reason", "负责人姓名有误，请核实"),
        ],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (p, _) = stored(&s, "S2");
    assert_eq!(p.review.state, ReviewState::Returned);
    assert_eq!(
        p.review.return_reason.as_deref(),
        Some("负责人姓名有误，请核实")
    );
    let (approve, state) = row_form(&page, "S1", "approve").unwrap();
    let r = cty.post(&approve, &[("csrf", &csrf), ("state", &state)]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(stored(&s, "S1").0.review.state, ReviewState::CountyApproved);
}

#[test]
fn crafted_decisions_are_judged_by_the_rules_and_store_nothing() {
    let s = start(|_, _| {});
    seed(
        &s,
        &[
            submitted("S1", "白音家庭牧场", "T1-V1"),
            submitted("S2", "查干家庭牧场", "T2-V1"),
        ],
    );
    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let csrf = sup.get("/desk/reviews").csrf();
    let heads = |id: &str| stored(&s, id).1.heads();
    let before = heads("S1");

    // Without the CSRF token, or with another session's: 403.
    let r = sup.post("/desk/reviews/S1/approve", &[("state", "submitted")]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = sup.post(
        "/desk/reviews/S1/approve",
        &[("csrf", "0123456789abcdef"), ("state", "submitted")],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another township's entry: answered as missing.
    let r = sup.post(
        "/desk/reviews/S2/approve",
        &[("csrf", &csrf), ("state", "submitted")],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        !r.body.contains("查干"),
        "nothing of the record: {}",
        r.body
    );
    let r = sup.post(
        "/desk/reviews/NOPE/approve",
        &[("csrf", &csrf), ("state", "submitted")],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A page older than the entry's state: 409.
    let r = sup.post(
        "/desk/reviews/S1/approve",
        &[("csrf", &csrf), ("state", "township_approved")],
    );
    assert_eq!(r.status, StatusCode::CONFLICT);
    // A return without a reason: 400.
    let r = sup.post(
        "/desk/reviews/S1/return",
        &[("csrf", &csrf), ("state", "submitted"), ("reason", "  ")],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // An overlong reason: refused by core's validation, naming the field.
    let long = "长".repeat(501);
    let r = sup.post(
        "/desk/reviews/S1/return",
        &[("csrf", &csrf), ("state", "submitted"), ("reason", &long)],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("return_reason"), "{}", r.body);
    assert_eq!(heads("S1"), before, "nothing stored");

    // The county reviewer cannot approve for the township, however the form is crafted.
    let mut cty = Browser::new(&s);
    cty.sign_in("bater", CTY_PASSWORD);
    let csrf_c = cty.get("/desk/reviews").csrf();
    let r = cty.post(
        "/desk/reviews/S1/approve",
        &[("csrf", &csrf_c), ("state", "submitted")],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(heads("S1"), before, "nothing stored");

    // The supervisor approves; approving again for the county is refused by the rules.
    let r = sup.post(
        "/desk/reviews/S1/approve",
        &[("csrf", &csrf), ("state", "submitted")],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let after = heads("S1");
    let r = sup.post(
        "/desk/reviews/S1/approve",
        &[("csrf", &csrf), ("state", "township_approved")],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = sup.post(
        "/desk/reviews/S1/return",
        &[
            ("csrf", &csrf),
            ("state", "township_approved"),
            ("reason", "再看看"),
        ],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(heads("S1"), after, "nothing stored");
    assert!(s
        .actions("sup1")
        .contains(&"desk_review_refused".to_string()));
}

#[test]
fn a_desk_decision_merges_with_a_phone_edit_made_meanwhile() {
    let s = start(|_, _| {});
    seed(&s, &[submitted("S1", "白音家庭牧场", "T1-V1")]);
    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let page = sup.get("/desk/reviews");
    let (approve, state) = row_form(&page, "S1", "approve").unwrap();

    // Meanwhile the admin (as a phone would) edits a field outside the directory
    // fingerprint... the risk grade, which does not reset a review.
    let (mut p, _) = stored(&s, "S1");
    let (_, mut doc) = stored(&s, "S1");
    let heads = doc.heads();
    p.risk = gridsync_core::model::RiskLevel::High;
    p.updated_at_ms += 1;
    doc.set_actor(&gridsync_core::device_actor(
        gridsync_server::push::SEED_DEVICE,
    ));
    doc.update(&Record::Producer(p), "adm", 1_700_000_200_000)
        .unwrap();
    let push = gridsync_core::sync::protocol::PushRecord {
        id: "S1".into(),
        kind: gridsync_core::model::RecordKind::Producer.tag(),
        changes: doc.save_after(&heads),
        heads: doc.heads().iter().map(|h| h.0).collect(),
    };
    let adm = s.storage().person("adm").unwrap().unwrap();
    let nodes = s.storage().grids().unwrap();
    let tree = Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes));
    let scope =
        gridsync_server::scope::Scope::compute(&nodes, &s.storage().people().unwrap(), &adm, tree);
    let mut ctx = gridsync_server::push::PushContext::new(
        s.storage(),
        &scope,
        gridsync_server::push::SEED_DEVICE,
    );
    let author = gridsync_server::storage::Author {
        person_id: "adm".into(),
        device_id: None,
    };
    let res = s
        .storage()
        .apply_push(&author, &[push], &mut |st, p| {
            gridsync_server::push::decide(&mut ctx, st, p)
        })
        .unwrap();
    assert!(matches!(
        res[0].outcome,
        gridsync_core::sync::protocol::PushOutcome::Accepted
    ));

    let csrf = page.csrf();
    let r = sup.post(&approve, &[("csrf", &csrf), ("state", &state)]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (p, mut doc) = stored(&s, "S1");
    assert_eq!(p.review.state, ReviewState::TownshipApproved);
    assert_eq!(
        p.risk,
        gridsync_core::model::RiskLevel::High,
        "the edit kept"
    );
    let people: Vec<String> = doc.history().into_iter().map(|h| h.by).collect();
    assert!(
        people.ends_with(&["adm".to_string(), "sup1".to_string()]),
        "{people:?}"
    );
}
