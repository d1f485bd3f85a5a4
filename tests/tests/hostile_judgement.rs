//! A hostile phone cannot bypass the server's judgement (issue 12, classes 1–3 and the
//! scope part of 8). Every attack is a body crafted here, outside the app: Automerge
//! changes written by hand with a real device's credential, sent over HTTP to a real
//! server on 127.0.0.1. Where an attack depends on Automerge's conflict order, the test
//! first merges it locally and asserts that the forbidden state *would* result, so the
//! refusal it then checks is the server's doing.
//!
//! The legitimate concurrent cases (several offline review steps, a finding recorded
//! while the visit was completed elsewhere, two people editing different fields, a
//! return crossing an edit) are checked to still merge.

#![allow(clippy::unwrap_used)]

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ReadDoc, ROOT};
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    default_template, Answer, AnswerValue, Finding, Producer, RapidTest, Record, ReviewAction,
    ReviewEvent, ReviewState, Role, Severity, TestMethod, Verdict, Visit, VisitReview, YesNoNa,
};
use gridsync_core::sync::protocol::{PushOutcome, PushRecord, RejectCode};
use gridsync_server::dataset::Dataset;
use gridsync_server::storage::Storage;
use gridsync_tests::*;

struct World {
    dir: tempfile::TempDir,
    server: TestServer,
    data: Dataset,
    /// Liaison of village V01 of township T01.
    lp: Phone,
    /// Supervisor of T01.
    sp: Phone,
    /// County reviewer.
    cp: Phone,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let url = server.url();
    let phone = |name: &str, role: Role, grid: &str| {
        let person = person_in(&data, role, grid);
        let p = Phone::enrol(&server, &url, dir.path(), name, &person.id);
        p.sync().unwrap();
        p
    };
    let lp = phone("liaison", Role::Liaison, "DEMO-T01-V01");
    let sp = phone("supervisor", Role::Supervisor, "DEMO-T01");
    let cp = phone("county", Role::CountyReviewer, "DEMO");
    World {
        dir,
        server,
        data,
        lp,
        sp,
        cp,
    }
}

impl World {
    fn storage(&self) -> &dyn Storage {
        self.server.storage.as_ref()
    }

    fn stored_doc(&self, id: &str) -> AutoCommit {
        AutoCommit::load(&self.storage().record(id).unwrap().unwrap().doc).unwrap()
    }

    fn stored(&self, id: &str) -> Record {
        RecordDoc::from_doc(self.stored_doc(id))
            .unwrap()
            .read()
            .unwrap()
    }

    fn sync_all(&self) {
        for p in [&self.lp, &self.sp, &self.cp] {
            let r = p.sync().unwrap();
            assert!(r.rejected.is_empty(), "{}: {:?}", p.person.id, r.rejected);
        }
        for p in [&self.lp, &self.sp, &self.cp] {
            p.sync().unwrap();
        }
    }

    /// A second phone of an existing person.
    fn second_phone(&self, of: &Phone, name: &str) -> Phone {
        let p = Phone::enrol(
            &self.server,
            &self.server.url(),
            self.dir.path(),
            name,
            &of.person.id,
        );
        p.sync().unwrap();
        p
    }
}

/// A hand-made change on the stored record `id` as it was at `at` (its current heads when
/// `None`), signed with `actor` and naming `person`; returns the push (with the heads
/// given by `heads`) and the document the server would hold if it merged it blindly.
struct Craft {
    push: PushRecord,
    blind_merge: Record,
}

fn craft(
    w: &World,
    id: &str,
    at: Option<&[ChangeHash]>,
    actor: &automerge::ActorId,
    person: &str,
    heads: Heads,
    raw: impl FnOnce(&mut AutoCommit),
    typed: impl FnOnce(&mut Record),
) -> Craft {
    let mut stored = w.stored_doc(id);
    let old_heads = stored.get_heads();
    let fork = match at {
        Some(h) => stored.fork_at(h).unwrap(),
        None => stored.fork(),
    };
    let mut rd = RecordDoc::from_doc(fork).unwrap();
    rd.set_actor(actor);
    let base = rd.heads();
    let mut rec = rd.read().unwrap();
    // Raw ops first, then the typed edit reconciled: one change, signed `person`.
    raw(rd.inner());
    typed(&mut rec);
    rd.update(&rec, person, gridsync_core::now_ms()).unwrap();
    let changes = rd.save_after(&base);
    let mut merged = stored.fork();
    merged.load_incremental(&changes).unwrap();
    let blind_merge = RecordDoc::from_doc(merged).unwrap().read().unwrap();
    let heads = match heads {
        Heads::Honest => rd.heads(),
        Heads::Old => old_heads,
    };
    Craft {
        push: PushRecord {
            id: id.to_string(),
            kind: blind_merge.kind().tag(),
            changes,
            heads: heads.iter().map(|h| h.0).collect(),
        },
        blind_merge,
    }
}

#[derive(Clone, Copy, Debug)]
enum Heads {
    /// The heads the changes produce.
    Honest,
    /// The record's stored heads, hiding the new changes (class 1).
    Old,
}

/// Makes the change's ops win Automerge's conflict order against anything written since:
/// ops are ordered by counter, so spend counters on harmless writes first (Automerge
/// writes no op for a value that is already there, so alternate, ending where it began).
fn inflate(doc: &mut AutoCommit, n: usize) {
    let v = match doc.get(ROOT, "updated_at_ms").unwrap() {
        Some((automerge::Value::Scalar(s), _)) => match s.as_ref() {
            automerge::ScalarValue::Int(i) => *i,
            _ => 0,
        },
        _ => 0,
    };
    for i in 0..n * 2 {
        doc.put(ROOT, "updated_at_ms", v + (i % 2 == 0) as i64)
            .unwrap();
    }
}

/// Writes `value` at the field `key` of the map at `path` (root when empty), even when
/// it holds that value already (an op that competes in the merge).
fn force_put(doc: &mut AutoCommit, path: &[&str], key: &str, value: &str) {
    let mut obj = ROOT;
    for p in path {
        obj = match doc.get(&obj, *p).unwrap() {
            Some((automerge::Value::Object(_), id)) => id,
            _ => panic!("no map at {p}"),
        };
    }
    doc.put(&obj, key, format!("{value}-")).unwrap();
    doc.put(&obj, key, value).unwrap();
}

fn push(phone: &Phone, p: PushRecord) -> PushOutcome {
    let r = raw_sync(phone, vec![p], vec![]).unwrap();
    r.results[0].outcome.clone()
}

#[track_caller]
fn assert_refused(outcome: &PushOutcome, what: &str) {
    assert!(
        matches!(outcome, PushOutcome::Rejected { .. }),
        "{what}: accepted"
    );
}

fn producer_of(r: &Record) -> &Producer {
    match r {
        Record::Producer(p) => p,
        _ => panic!("not a producer"),
    }
}

fn visit_of(r: &Record) -> &Visit {
    match r {
        Record::Visit(v) => v,
        _ => panic!("not a visit"),
    }
}

fn heads_of(w: &World, id: &str) -> Vec<ChangeHash> {
    w.stored_doc(id).get_heads()
}

/// A producer of the liaison's village created and submitted by the liaison, synced.
fn submitted_producer(w: &World, name: &str) -> Producer {
    let grid = &w.lp.person.grids[0];
    let p =
        w.lp.store
            .create_producer(new_producer(name, grid, &w.lp.person.id))
            .unwrap();
    w.lp.store
        .review_producer(&p.id, ReviewAction::Submit)
        .unwrap();
    w.sync_all();
    p
}

/// A visit by the liaison to `producer`, saved as a draft, synced; then completed.
fn visit_of_liaison(w: &World, producer: &Producer, complete: bool) -> (Visit, Vec<ChangeHash>) {
    let mut v = Visit::new(
        &producer.id,
        &producer.grid,
        &w.lp.person.id,
        &default_template("builtin"),
        gridsync_core::now_ms(),
    );
    answer_all(&mut v);
    let v = w.lp.store.save_visit(v).unwrap();
    w.sync_all();
    let draft_heads = heads_of(w, &v.id);
    if complete {
        w.lp.store.complete_visit(&v.id).unwrap();
        w.sync_all();
    }
    (w.lp.store.visit(&v.id).unwrap(), draft_heads)
}

fn finding(by: &str) -> Finding {
    Finding {
        id: gridsync_core::new_id(),
        item_id: None,
        description: "饲料与兽药混放".into(),
        severity: Severity::Minor,
        photos: vec![],
        recorded_by: by.into(),
        recorded_at_ms: gridsync_core::now_ms(),
    }
}

// ---------------------------------------------------------------------------------------
// Class 1: pushed heads are computed by the server, not believed.
// ---------------------------------------------------------------------------------------

#[test]
fn pushed_heads_cannot_hide_new_changes() {
    let w = world();
    let county = w.cp.person.id.clone();
    let sup = w.sp.person.id.clone();
    let lia = w.lp.person.id.clone();
    let actor = w.lp.store.actor_id();
    let p = submitted_producer(&w, "藏头牧场");
    let (v, _) = visit_of_liaison(&w, &p, true);
    w.sp.store.review_visit(&v.id, "合格").unwrap();
    w.sync_all();
    let before_p = w.stored(&p.id);
    let before_v = w.stored(&v.id);

    type Edit = Box<dyn Fn(&mut Record)>;
    let county2 = county.clone();
    let attacks: Vec<(&str, &str, Edit)> = vec![
        (
            "own producer county-approved, history claiming the county",
            &p.id,
            Box::new(move |r| {
                if let Record::Producer(p) = r {
                    p.review.state = ReviewState::CountyApproved;
                    p.review.approved_fingerprint = Some(p.directory_fingerprint());
                    p.review.history.push(ReviewEvent {
                        id: gridsync_core::new_id(),
                        action: ReviewAction::ApproveCounty,
                        by: county2.clone(),
                        at_ms: gridsync_core::now_ms(),
                        state_after: ReviewState::CountyApproved,
                    });
                }
            }),
        ),
        (
            "created_by rewritten",
            &p.id,
            Box::new(|r| {
                if let Record::Producer(p) = r {
                    p.created_by = "someone-else".into();
                }
            }),
        ),
        (
            "answers of a completed, reviewed visit",
            &v.id,
            Box::new(|r| {
                if let Record::Visit(v) = r {
                    v.answers.insert(
                        "drug_use".into(),
                        Answer {
                            value: AnswerValue::YesNo(YesNoNa::No),
                            note: Some("改过".into()),
                        },
                    );
                }
            }),
        ),
        (
            "inspector set to the supervisor",
            &v.id,
            Box::new({
                let sup = sup.clone();
                move |r| {
                    if let Record::Visit(v) = r {
                        v.inspector = sup.clone();
                    }
                }
            }),
        ),
        (
            "a supervisor's review added",
            &v.id,
            Box::new({
                let sup = sup.clone();
                move |r| {
                    if let Record::Visit(v) = r {
                        v.review = Some(VisitReview {
                            by: sup.clone(),
                            at_ms: gridsync_core::now_ms(),
                            comment: "已审（伪造）".into(),
                        });
                    }
                }
            }),
        ),
    ];
    for (what, id, edit) in &attacks {
        for heads in [Heads::Old, Heads::Honest] {
            let c = craft(&w, id, None, &actor, &lia, heads, |_| {}, |r| edit(r));
            let outcome = push(&w.lp, c.push);
            assert_refused(&outcome, &format!("{what} with {heads:?} heads"));
            if let (Heads::Old, PushOutcome::Rejected { code, .. }) = (heads, &outcome) {
                assert_eq!(*code, RejectCode::BadDocument, "{what}: {outcome:?}");
            }
        }
    }
    assert_eq!(w.stored(&p.id), before_p, "the producer is unchanged");
    assert_eq!(w.stored(&v.id), before_v, "the visit is unchanged");

    // A new record pushed as two changes with the heads of the first: the second
    // approves it.
    let mut rec = new_producer("两步新建", &w.lp.person.grids[0], &lia);
    rec.review.state = ReviewState::Draft;
    let mut d = RecordDoc::create(&Record::Producer(rec.clone()), &actor, &lia, 1).unwrap();
    let first = d.heads();
    rec.review.state = ReviewState::CountyApproved;
    rec.review.approved_fingerprint = Some(rec.directory_fingerprint());
    d.update(&Record::Producer(rec.clone()), &lia, 2).unwrap();
    for heads in [first.clone(), d.heads()] {
        let p = PushRecord {
            id: rec.id.clone(),
            kind: gridsync_core::model::RecordKind::Producer.tag(),
            changes: d.save_after(&[]),
            heads: heads.iter().map(|h| h.0).collect(),
        };
        assert_refused(
            &push(&w.lp, p),
            "a new record approved in its second change",
        );
    }
    assert!(w.storage().record(&rec.id).unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Class 2: backdated changes cannot overturn later decisions.
// ---------------------------------------------------------------------------------------

#[test]
fn backdated_changes_cannot_overturn_later_decisions() {
    let w = world();
    let lia = w.lp.person.id.clone();
    // The liaison crafts from a second phone of their own (its actor's sequence numbers
    // are free at any older version of the record).
    let evil = w.second_phone(&w.lp, "liaison-crafted");
    let actor = evil.store.actor_id();
    // Approved at both levels, then returned by the county.
    let p = submitted_producer(&w, "回退牧场");
    w.sp.store
        .review_producer(&p.id, ReviewAction::ApproveTownship)
        .unwrap();
    w.sync_all();
    w.cp.store
        .review_producer(&p.id, ReviewAction::ApproveCounty)
        .unwrap();
    w.sync_all();
    let approved_heads = heads_of(&w, &p.id);
    w.cp.store
        .review_producer(&p.id, ReviewAction::Return("证照过期".into()))
        .unwrap();
    w.sync_all();
    let returned = w.stored(&p.id);
    assert_eq!(producer_of(&returned).review.state, ReviewState::Returned);

    let c = craft(
        &w,
        &p.id,
        Some(&approved_heads),
        &actor,
        &lia,
        Heads::Honest,
        |d| {
            inflate(d, 400);
            force_put(d, &["review"], "state", "county_approved");
        },
        |_| {},
    );
    assert_eq!(
        producer_of(&c.blind_merge).effective_review_state(),
        ReviewState::CountyApproved,
        "the crafted change would win the merge"
    );
    assert_refused(
        &push(&evil, c.push),
        "a returned entry brought back as approved",
    );
    assert_eq!(w.stored(&p.id), returned);

    // A completed, reviewed visit: answers and findings changed from before completion.
    let (v, draft_heads) = visit_of_liaison(&w, &p, true);
    w.sp.store.review_visit(&v.id, "合格").unwrap();
    w.sync_all();
    let reviewed = w.stored(&v.id);
    let c = craft(
        &w,
        &v.id,
        Some(&draft_heads),
        &actor,
        &lia,
        Heads::Honest,
        |d| inflate(d, 400),
        |r| {
            if let Record::Visit(v) = r {
                v.answers.insert(
                    "drug_use".into(),
                    Answer {
                        value: AnswerValue::YesNo(YesNoNa::NotApplicable),
                        note: Some("事后修改".into()),
                    },
                );
                v.findings.push(finding(&lia));
            }
        },
    );
    let merged = visit_of(&c.blind_merge);
    assert_eq!(
        merged.status,
        gridsync_core::model::VisitStatus::Completed,
        "the blind merge keeps the completion"
    );
    assert_ne!(
        merged.answers,
        visit_of(&reviewed).answers,
        "the crafted change would change the answers"
    );
    assert_refused(
        &push(&evil, c.push),
        "answers of a reviewed visit, backdated",
    );
    assert_eq!(w.stored(&v.id), reviewed);

    // Authors inside records: a finding recorded "by" the supervisor, a rapid test whose
    // operator is the supervisor, on the liaison's own draft visit.
    let (draft, _) = visit_of_liaison(&w, &p, false);
    let sup = w.sp.person.id.clone();
    for (what, forged) in [
        ("finding by the supervisor", 0),
        ("rapid test by the supervisor", 1),
    ] {
        let sup = sup.clone();
        let c = craft(
            &w,
            &draft.id,
            None,
            &actor,
            &lia,
            Heads::Honest,
            |_| {},
            |r| {
                if let Record::Visit(v) = r {
                    if forged == 0 {
                        v.findings.push(finding(&sup));
                    } else {
                        v.rapid_tests.push(RapidTest {
                            id: gridsync_core::new_id(),
                            sample: "羊尿".into(),
                            item: "克伦特罗".into(),
                            method: TestMethod::ColloidalGold,
                            kit: "胶体金试纸".into(),
                            value: None,
                            unit: None,
                            verdict: Verdict::Pass,
                            operator: sup.clone(),
                            tested_at_ms: gridsync_core::now_ms(),
                        });
                    }
                }
            },
        );
        assert_refused(&push(&evil, c.push), what);
    }
    // The same finding recorded by the liaison is accepted: the refusal was the author.
    let c = craft(
        &w,
        &draft.id,
        None,
        &actor,
        &lia,
        Heads::Honest,
        |_| {},
        |r| {
            if let Record::Visit(v) = r {
                v.findings.push(finding(&lia));
            }
        },
    );
    assert_eq!(push(&evil, c.push), PushOutcome::Accepted);
}

// ---------------------------------------------------------------------------------------
// Legitimate concurrent offline work still merges.
// ---------------------------------------------------------------------------------------

#[test]
fn legitimate_concurrent_work_still_merges() {
    let w = world();
    // A supervisor offline submits a draft and approves it, in one sync.
    let grid = w.lp.person.grids[0].clone();
    let p =
        w.lp.store
            .create_producer(new_producer("并发牧场", &grid, &w.lp.person.id))
            .unwrap();
    w.sync_all();
    w.sp.store
        .review_producer(&p.id, ReviewAction::Submit)
        .unwrap();
    w.sp.store
        .review_producer(&p.id, ReviewAction::ApproveTownship)
        .unwrap();
    let r = w.sp.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!(
        producer_of(&w.stored(&p.id)).effective_review_state(),
        ReviewState::TownshipApproved
    );
    w.sync_all();

    // Two people edit different fields offline: both survive.
    let mut a = w.lp.store.producer(&p.id).unwrap();
    a.phone = "13911112222".into();
    w.lp.store.update_producer(a).unwrap();
    let mut b = w.sp.store.producer(&p.id).unwrap();
    b.address = "夏季牧场东".into();
    w.sp.store.update_producer(b).unwrap();
    w.sync_all();
    let merged = producer_of(&w.stored(&p.id)).clone();
    assert_eq!(merged.phone, "13911112222");
    assert_eq!(merged.address, "夏季牧场东");
    assert_eq!(merged.effective_review_state(), ReviewState::Submitted);

    // The county returns the entry while the liaison edits it: both are kept.
    w.sp.store
        .review_producer(&p.id, ReviewAction::ApproveTownship)
        .unwrap();
    w.sync_all();
    w.cp.store
        .review_producer(&p.id, ReviewAction::Return("缺少证照".into()))
        .unwrap();
    let mut e = w.lp.store.producer(&p.id).unwrap();
    e.owner = "新户主".into();
    w.lp.store.update_producer(e).unwrap();
    w.sync_all();
    let merged = producer_of(&w.stored(&p.id)).clone();
    assert_eq!(merged.owner, "新户主");
    assert!(merged
        .review
        .history
        .iter()
        .any(|h| matches!(h.action, ReviewAction::Return(_))));

    // A finding recorded on one phone while the inspector's other phone completed the
    // visit: the completed visit keeps the finding.
    let second = w.second_phone(&w.lp, "liaison-2");
    let (v, _) = visit_of_liaison(&w, &p, false);
    second.sync().unwrap();
    w.lp.store.complete_visit(&v.id).unwrap();
    let mut other = second.store.visit(&v.id).unwrap();
    let f = finding(&w.lp.person.id);
    other.findings.push(f.clone());
    second.store.save_visit(other).unwrap();
    assert!(w.lp.sync().unwrap().rejected.is_empty());
    let r = second.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let merged = visit_of(&w.stored(&v.id)).clone();
    assert_eq!(merged.status, gridsync_core::model::VisitStatus::Completed);
    assert!(merged.findings.iter().any(|x| x.id == f.id));
}

// ---------------------------------------------------------------------------------------
// Class 3: actors and authors are bound to the device that pushed.
// ---------------------------------------------------------------------------------------

#[test]
fn changes_are_bound_to_their_device_and_person() {
    let w = world();
    let lia = w.lp.person.id.clone();
    let sup = w.sp.person.id.clone();
    let p = submitted_producer(&w, "冒名牧场");
    let mut e = w.sp.store.producer(&p.id).unwrap();
    e.address = "监管员改的地址".into();
    w.sp.store.update_producer(e).unwrap();
    w.sync_all();
    // The supervisor's actor is readable in the document every phone of the village holds.
    let sup_actor = w.sp.store.actor_id();
    assert!(w
        .stored_doc(&p.id)
        .get_changes(&[])
        .iter()
        .any(|c| *c.actor_id() == sup_actor));
    // Another device's actor: only that device may deliver its changes (the answer is
    // the one a phone gets for changes only their author can bring after a restore).
    // The device's own actor naming another person: forbidden.
    let cases = [
        (
            "the supervisor's actor",
            sup_actor.clone(),
            lia.clone(),
            RejectCode::MissingDeps,
        ),
        (
            "the supervisor's actor and name",
            sup_actor.clone(),
            sup.clone(),
            RejectCode::MissingDeps,
        ),
        (
            "the supervisor's name",
            w.lp.store.actor_id(),
            sup.clone(),
            RejectCode::Forbidden,
        ),
    ];
    for (what, actor, person, code) in cases {
        let c = craft(
            &w,
            &p.id,
            None,
            &actor,
            &person,
            Heads::Honest,
            |_| {},
            |r| {
                if let Record::Producer(p) = r {
                    p.phone = "13800000000".into();
                }
            },
        );
        let before = w.stored(&p.id);
        let outcome = push(&w.lp, c.push);
        assert!(
            matches!(&outcome, PushOutcome::Rejected { code: c, .. } if *c == code),
            "{what}: {outcome:?}"
        );
        assert_eq!(w.stored(&p.id), before, "{what}: nothing stored");
    }
    // The supervisor's own offline edit still syncs, and the record keeps reaching them.
    let mut e = w.sp.store.producer(&p.id).unwrap();
    e.phone = "13966667777".into();
    w.sp.store.update_producer(e).unwrap();
    let r = w.sp.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let mut e = w.lp.store.producer(&p.id).unwrap();
    w.lp.sync().unwrap();
    e = w.lp.store.producer(&e.id).unwrap();
    e.owner = "协管员改的户主".into();
    w.lp.store.update_producer(e).unwrap();
    w.sync_all();
    let seen = w.sp.store.producer(&p.id).unwrap();
    assert_eq!(seen.owner, "协管员改的户主");
    assert_eq!(seen.phone, "13966667777");
    // Every stored change names the person whose device signed it.
    let (la, sa) = (w.lp.store.actor_id(), w.sp.store.actor_id());
    for c in w.stored_doc(&p.id).get_changes(&[]) {
        let by = c.message().cloned().unwrap_or_default();
        if *c.actor_id() == la {
            assert_eq!(by, lia);
        }
        if *c.actor_id() == sa {
            assert_eq!(by, sup);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Class 8 (scope): visits only of producers in scope; nothing foreign revealed.
// ---------------------------------------------------------------------------------------

#[test]
fn visits_name_producers_in_scope_and_foreign_records_reveal_nothing() {
    let w = world();
    let lia = w.lp.person.id.clone();
    let foreign = w
        .data
        .producers
        .iter()
        .find(|p| p.grid.starts_with("DEMO-T02"))
        .unwrap()
        .clone();
    let own_grid = w.lp.person.grids[0].clone();
    let mut v = Visit::new(
        &foreign.id,
        &own_grid,
        &lia,
        &default_template("builtin"),
        gridsync_core::now_ms(),
    );
    answer_all(&mut v);
    let outcome = push(&w.lp, push_new(&Record::Visit(v.clone()), &w.lp));
    assert!(
        matches!(
            &outcome,
            PushOutcome::Rejected {
                code: RejectCode::Forbidden,
                ..
            }
        ),
        "a visit of a producer of another township: {outcome:?}"
    );
    v.id = gridsync_core::new_id();
    v.producer_id = gridsync_core::new_id();
    let outcome = push(&w.lp, push_new(&Record::Visit(v.clone()), &w.lp));
    assert!(
        matches!(&outcome, PushOutcome::Rejected { code: RejectCode::Invalid, reason } if reason.contains("producer")),
        "a visit of a producer that does not exist: {outcome:?}"
    );
    // A push naming a foreign record's id as another kind learns only "outside scope".
    let mut fake = v.clone();
    fake.id = foreign.id.clone();
    fake.producer_id = w
        .data
        .producers
        .iter()
        .find(|p| p.grid == own_grid)
        .unwrap()
        .id
        .clone();
    let outcome = push(&w.lp, push_new(&Record::Visit(fake), &w.lp));
    match &outcome {
        PushOutcome::Rejected { code, reason } => {
            assert_eq!(*code, RejectCode::Forbidden);
            assert!(
                !reason.contains("producer") && !reason.contains("is a"),
                "the refusal reveals the stored kind: {reason}"
            );
        }
        other => panic!("a foreign id was accepted: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Yearly confirmation (年度确认, issue 16): added in one's own name, never taken back.
// ---------------------------------------------------------------------------------------

#[test]
fn yearly_confirmations_cannot_be_forged_changed_or_removed() {
    use gridsync_core::model::YearConfirmation;
    let w = world();
    let actor = w.lp.store.actor_id();
    let lia = w.lp.person.id.clone();
    let sup = w.sp.person.id.clone();
    let p = submitted_producer(&w, "年审牧场");
    let year = gridsync_core::dates::china_year(gridsync_core::now_ms());
    // The supervisor confirms the entry on their phone: accepted.
    w.sp.store.confirm_producer(&p.id, year, true).unwrap();
    w.sync_all();
    let before = w.stored(&p.id);
    assert_eq!(producer_of(&before).confirmations.len(), 1);

    type Edit = Box<dyn Fn(&mut Record)>;
    let sup2 = sup.clone();
    let attacks: Vec<(&str, Edit)> = vec![
        (
            "a confirmation in the supervisor's name",
            Box::new(move |r| {
                if let Record::Producer(p) = r {
                    p.confirmations.push(YearConfirmation {
                        id: gridsync_core::new_id(),
                        year,
                        operating: true,
                        by: sup2.clone(),
                        at_ms: gridsync_core::now_ms(),
                    });
                }
            }),
        ),
        (
            "the supervisor's confirmation removed",
            Box::new(|r| {
                if let Record::Producer(p) = r {
                    p.confirmations.clear();
                }
            }),
        ),
        (
            "the supervisor's confirmation changed to closed",
            Box::new(|r| {
                if let Record::Producer(p) = r {
                    p.confirmations[0].operating = false;
                }
            }),
        ),
    ];
    for (what, edit) in attacks {
        let c = craft(
            &w,
            &p.id,
            None,
            &actor,
            &lia,
            Heads::Honest,
            |_| {},
            |r| edit(r),
        );
        // Merged blindly, the forged state would stand.
        assert_ne!(
            producer_of(&c.blind_merge).confirmations,
            producer_of(&before).confirmations,
            "{what}"
        );
        assert_refused(&push(&w.lp, c.push), what);
        assert_eq!(
            producer_of(&w.stored(&p.id)).confirmations,
            producer_of(&before).confirmations,
            "{what}"
        );
    }
    // The liaison's own confirmation is accepted beside the supervisor's.
    w.lp.store.confirm_producer(&p.id, year, true).unwrap();
    let r = w.lp.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let by: Vec<String> = producer_of(&w.stored(&p.id))
        .confirmations
        .iter()
        .map(|c| c.by.clone())
        .collect();
    assert_eq!(by, [sup, lia]);
}
