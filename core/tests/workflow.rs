//! Workflows on the store: the directory review chain and who may take each step, and
//! what a completed visit still accepts.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use gridsync_core::model::{
    Actor, AnswerValue, Person, Producer, Record, ReviewAction, ReviewState, RiskLevel, Role,
    Visit, VisitStatus, DEFAULT_TEMPLATE_ID,
};
use gridsync_core::rules;
use gridsync_core::store::{ProducerSort, Store, TreeSnapshot};
use gridsync_core::{now_ms, Error};

use common::*;

fn as_person(s: &Store, p: &Person) {
    s.set_profile(p).unwrap();
}

fn state_in_list(s: &Store, id: &str) -> String {
    s.producers_in_grid(BANNER, ProducerSort::Name, 100, 0)
        .unwrap()
        .into_iter()
        .find(|p| p.id == id)
        .unwrap()
        .review_state
}

fn expect_forbidden(r: gridsync_core::Result<Producer>) {
    match r {
        Err(Error::Forbidden(_)) => {}
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[test]
fn review_chain_with_who_may_take_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_as(&dir.path().join("d.db"), &liaison());
    let p = s.create_producer(ranch("草原牧场", VIL1, 1)).unwrap();
    assert_eq!(p.review.state, ReviewState::Draft);
    // A draft cannot be approved by anyone yet.
    as_person(&s, &supervisor());
    assert!(matches!(
        s.review_producer(&p.id, ReviewAction::ApproveTownship),
        Err(Error::Workflow(_))
    ));

    as_person(&s, &liaison());
    let p1 = s.review_producer(&p.id, ReviewAction::Submit).unwrap();
    assert_eq!(p1.review.state, ReviewState::Submitted);
    assert_eq!(state_in_list(&s, &p.id), "submitted");
    // The liaison cannot approve, nor return.
    expect_forbidden(s.review_producer(&p.id, ReviewAction::ApproveTownship));
    expect_forbidden(s.review_producer(&p.id, ReviewAction::Return("不行".into())));
    assert_eq!(
        s.producer(&p.id).unwrap().review,
        p1.review,
        "nothing written"
    );
    // A liaison of another village cannot edit it.
    as_person(&s, &liaison2());
    let mut e = s.producer(&p.id).unwrap();
    e.address = "别处".into();
    expect_forbidden(s.update_producer(e));

    as_person(&s, &supervisor());
    // The county step needs the township step first.
    assert!(matches!(
        s.review_producer(&p.id, ReviewAction::ApproveCounty),
        Err(Error::Workflow(_))
    ));
    let p2 = s
        .review_producer(&p.id, ReviewAction::ApproveTownship)
        .unwrap();
    assert_eq!(p2.review.state, ReviewState::TownshipApproved);
    assert_eq!(
        p2.review.approved_fingerprint.as_deref(),
        Some(p2.directory_fingerprint().as_str())
    );
    // The supervisor cannot take the county step.
    expect_forbidden(s.review_producer(&p.id, ReviewAction::ApproveCounty));

    as_person(&s, &county());
    let p3 = s
        .review_producer(&p.id, ReviewAction::ApproveCounty)
        .unwrap();
    assert_eq!(p3.review.state, ReviewState::CountyApproved);
    assert_eq!(p3.effective_review_state(), ReviewState::CountyApproved);
    assert_eq!(state_in_list(&s, &p.id), "county_approved");
    let steps: Vec<(&str, &str)> = p3
        .review
        .history
        .iter()
        .map(|e| (e.action.as_str(), e.by.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("submit", "liaison-1"),
            ("approve_township", "super-1"),
            ("approve_county", "county-1")
        ]
    );

    // A non-directory edit (risk grade) keeps the approval.
    as_person(&s, &supervisor());
    let mut e = s.producer(&p.id).unwrap();
    e.risk = RiskLevel::High;
    let kept = s.update_producer(e).unwrap();
    assert_eq!(kept.review.state, ReviewState::CountyApproved);
    assert_eq!(kept.review.history.len(), 3);

    // The liaison edits a directory field: back to submitted, with who did it.
    as_person(&s, &liaison());
    let mut e = s.producer(&p.id).unwrap();
    e.phone = "13698765432".into();
    // Whatever review state the caller sends is ignored: the stored chain rules.
    e.review.state = ReviewState::CountyApproved;
    e.review.history.clear();
    let p4 = s.update_producer(e).unwrap();
    assert_eq!(p4.phone, "13698765432");
    assert_eq!(p4.review.state, ReviewState::Submitted);
    assert_eq!(p4.review.history.len(), 4);
    let last = p4.review.history.last().unwrap();
    assert_eq!(last.action, ReviewAction::EditedAfterApproval);
    assert_eq!(last.by, "liaison-1");
    assert_eq!(last.state_after, ReviewState::Submitted);
    assert_eq!(state_in_list(&s, &p.id), "submitted");

    // The supervisor returns it; a reason is required and named.
    as_person(&s, &supervisor());
    match s.review_producer(&p.id, ReviewAction::Return("  ".into())) {
        Err(Error::Invalid(i)) => assert_eq!(i.field, "review.return_reason"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let p5 = s
        .review_producer(&p.id, ReviewAction::Return("身份证号与户主不符".into()))
        .unwrap();
    assert_eq!(p5.review.state, ReviewState::Returned);
    assert_eq!(
        p5.review.return_reason.as_deref(),
        Some("身份证号与户主不符")
    );
    // A returned entry cannot be approved until it is submitted again.
    assert!(matches!(
        s.review_producer(&p.id, ReviewAction::ApproveTownship),
        Err(Error::Workflow(_))
    ));

    // The liaison fixes it: back to draft, then submits again.
    as_person(&s, &liaison());
    let mut e = s.producer(&p.id).unwrap();
    e.id_number = Some(id_number(42));
    let p6 = s.update_producer(e).unwrap();
    assert_eq!(p6.review.state, ReviewState::Draft);
    let last = p6.review.history.last().unwrap();
    assert_eq!(
        (last.action.clone(), last.by.as_str()),
        (ReviewAction::EditedAfterReturn, "liaison-1")
    );
    let p7 = s.review_producer(&p.id, ReviewAction::Submit).unwrap();
    assert_eq!(p7.review.state, ReviewState::Submitted);
    assert_eq!(p7.review.history.len(), 7);
    // Who changed what, and when, is kept in the document history too.
    let by: Vec<String> = s
        .history(&p.id)
        .unwrap()
        .into_iter()
        .map(|h| h.by)
        .collect();
    for who in ["liaison-1", "super-1", "county-1"] {
        assert!(by.iter().any(|b| b == who), "{who} missing from {by:?}");
    }
}

#[test]
fn county_may_return_an_approved_entry_supervisor_may_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_as(&dir.path().join("d.db"), &liaison());
    let p = s.create_producer(ranch("牧场", VIL1, 1)).unwrap();
    s.review_producer(&p.id, ReviewAction::Submit).unwrap();
    as_person(&s, &supervisor());
    s.review_producer(&p.id, ReviewAction::ApproveTownship)
        .unwrap();
    expect_forbidden(s.review_producer(&p.id, ReviewAction::Return("漏报".into())));
    as_person(&s, &county());
    let r = s
        .review_producer(&p.id, ReviewAction::Return("瞒报存栏数".into()))
        .unwrap();
    assert_eq!(r.review.state, ReviewState::Returned);
}

#[test]
fn a_liaison_cannot_create_an_approved_entry_or_forge_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_as(&dir.path().join("d.db"), &liaison());
    let mut p = ranch("伪造牧场", VIL1, 1);
    p.review.state = ReviewState::CountyApproved;
    p.review.approved_fingerprint = Some(p.directory_fingerprint());
    expect_forbidden(s.create_producer(p));
    assert_eq!(s.counts().unwrap().producers, 0);
}

#[test]
fn a_stale_approval_cannot_be_renewed_by_a_liaison() {
    // An approval that a concurrent edit merged after no longer holds: re-approving it is
    // a review step from "submitted", which only a supervisor may take.
    let tree = TreeSnapshot::from_nodes(&grid_tree());
    let mut before = ranch("牧场", VIL1, 1);
    before.created_by = "liaison-1".into();
    before.review.state = ReviewState::TownshipApproved;
    before.review.approved_fingerprint = Some(before.directory_fingerprint());
    before.phone = "13711112222".into(); // merged in after the approval
    assert_eq!(before.effective_review_state(), ReviewState::Submitted);
    let mut after = before.clone();
    after.review.approved_fingerprint = Some(after.directory_fingerprint());
    let liaison = Actor::new("liaison-1", Role::Liaison, vec![VIL1.into()]);
    let sup = Actor::new("super-1", Role::Supervisor, vec![TOWN1.into()]);
    let (b, a) = (Record::Producer(before.clone()), Record::Producer(after));
    assert!(matches!(
        rules::check_change(&tree, &liaison, Some(&b), &a),
        Err(Error::Forbidden(_))
    ));
    rules::check_change(&tree, &sup, Some(&b), &a).unwrap();
    // A plain edit of a non-directory field on the stale entry is still allowed.
    let mut risk = before.clone();
    risk.risk = RiskLevel::High;
    rules::check_change(&tree, &liaison, Some(&b), &Record::Producer(risk)).unwrap();
    // Keeping an approval while changing a directory field is refused.
    let mut fresh = before.clone();
    fresh.review.approved_fingerprint = Some(fresh.directory_fingerprint());
    let mut sneaky = fresh.clone();
    sneaky.owner = "别人".into();
    sneaky.review.approved_fingerprint = Some(sneaky.directory_fingerprint());
    assert!(rules::check_change(
        &tree,
        &liaison,
        Some(&Record::Producer(fresh)),
        &Record::Producer(sneaky)
    )
    .is_err());
}

fn new_visit(s: &Store, producer: &Producer) -> Visit {
    let tpl = s.template(DEFAULT_TEMPLATE_ID, 1).unwrap();
    Visit::new(&producer.id, &producer.grid, "liaison-1", &tpl, now_ms())
}

#[test]
fn completing_a_visit_needs_the_required_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_as(&dir.path().join("d.db"), &liaison());
    let p = s.create_producer(ranch("牧场", VIL1, 1)).unwrap();
    let mut v = new_visit(&s, &p);
    answer_required(&mut v);
    v.answers.remove("input_waste");
    let v = s.save_visit(v).unwrap();
    match s.complete_visit(&v.id) {
        Err(Error::Invalid(i)) => {
            assert_eq!(i.field, "answers.input_waste");
            assert!(i.problem.contains("required"), "{i}");
        }
        other => panic!("expected Invalid naming the item, got {other:?}"),
    }
    assert_eq!(s.visit(&v.id).unwrap().status, VisitStatus::Draft);
    // Items that do not apply to the producer type are not required (packaging labels are
    // optional and only for enterprises); answering the missing one completes it.
    let mut v2 = s.visit(&v.id).unwrap();
    v2.answers.insert(
        "input_waste".into(),
        gridsync_core::model::Answer {
            value: AnswerValue::YesNo(gridsync_core::model::YesNoNa::NotApplicable),
            note: Some("无废弃物".into()),
        },
    );
    s.save_visit(v2).unwrap();
    let done = s.complete_visit(&v.id).unwrap();
    assert_eq!(done.status, VisitStatus::Completed);
    assert!(done.ended_at_ms.is_some());
    assert!(matches!(s.complete_visit(&v.id), Err(Error::Workflow(_))));
}

#[test]
fn a_completed_visit_accepts_only_a_follow_up_or_a_review() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_as(&dir.path().join("d.db"), &liaison());
    let p = s.create_producer(ranch("牧场", VIL1, 1)).unwrap();
    let mut v = new_visit(&s, &p);
    answer_required(&mut v);
    v.rectification = Some(gridsync_core::model::Rectification {
        required: true,
        deadline: "2030-01-01".into(),
        notice_number: "别整改〔2025〕1号".into(),
        resolved_at_ms: None,
    });
    let v = s.save_visit(v).unwrap();
    let v = s.complete_visit(&v.id).unwrap();
    let history_len = s.history(&v.id).unwrap().len();

    // Changing an answer, a finding or reopening is refused.
    let mut e = s.visit(&v.id).unwrap();
    e.answers.get_mut("drug_use").unwrap().value =
        AnswerValue::YesNo(gridsync_core::model::YesNoNa::No);
    assert!(matches!(s.save_visit(e), Err(Error::Workflow(_))));
    let mut e = s.visit(&v.id).unwrap();
    e.status = VisitStatus::Draft;
    assert!(matches!(s.save_visit(e), Err(Error::Workflow(_))));
    let mut e = s.visit(&v.id).unwrap();
    e.findings.push(gridsync_core::model::Finding {
        id: "late".into(),
        item_id: None,
        description: "事后补记".into(),
        severity: gridsync_core::model::Severity::Minor,
        photos: vec![],
        recorded_by: "liaison-1".into(),
        recorded_at_ms: now_ms(),
    });
    assert!(matches!(s.save_visit(e), Err(Error::Workflow(_))));
    assert_eq!(
        s.history(&v.id).unwrap().len(),
        history_len,
        "nothing written"
    );

    // The liaison may not review; the supervisor may.
    assert!(matches!(
        s.review_visit(&v.id, "很好"),
        Err(Error::Forbidden(_))
    ));
    as_person(&s, &supervisor());
    let r = s.review_visit(&v.id, "记录完整").unwrap();
    assert_eq!(r.review.as_ref().unwrap().by, "super-1");

    // A follow-up visit links back and resolves the rectification.
    as_person(&s, &liaison());
    let mut f = new_visit(&s, &p);
    f.follow_up_of = Some(v.id.clone());
    answer_required(&mut f);
    let f = s.save_visit(f).unwrap();
    let linked = s.add_follow_up(&v.id, &f.id, true).unwrap();
    assert_eq!(linked.follow_up_visit.as_deref(), Some(f.id.as_str()));
    assert!(linked
        .rectification
        .as_ref()
        .unwrap()
        .resolved_at_ms
        .is_some());
    assert!(!linked.rectification_open());
    assert_eq!(linked.status, VisitStatus::Completed);
    // The link cannot be replaced afterwards.
    let g = s.save_visit(new_visit(&s, &p)).unwrap();
    assert!(matches!(
        s.add_follow_up(&v.id, &g.id, false),
        Err(Error::Workflow(_))
    ));
    assert!(s.open_rectifications("2031-01-01").unwrap().is_empty());
}

#[test]
fn a_visit_belongs_to_its_inspector() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_as(&dir.path().join("d.db"), &liaison());
    let p = s.create_producer(ranch("牧场", VIL1, 1)).unwrap();
    // Recording a visit in someone else's name is refused.
    let tpl = s.template(DEFAULT_TEMPLATE_ID, 1).unwrap();
    let forged = Visit::new(&p.id, VIL1, "super-1", &tpl, now_ms());
    assert!(matches!(s.save_visit(forged), Err(Error::Forbidden(_))));
    let v = s.save_visit(new_visit(&s, &p)).unwrap();
    // A supervisor may review a draft but not change its answers.
    as_person(&s, &supervisor());
    let mut e = s.visit(&v.id).unwrap();
    answer_required(&mut e);
    assert!(matches!(s.save_visit(e), Err(Error::Forbidden(_))));
    s.review_visit(&v.id, "请补充").unwrap();
    // Another village's liaison cannot touch it at all.
    as_person(&s, &liaison2());
    let mut e = s.visit(&v.id).unwrap();
    e.location = Some(gridsync_core::model::GeoPoint {
        lat: 44.0,
        lon: 114.9,
    });
    assert!(matches!(s.save_visit(e), Err(Error::Forbidden(_))));
}
