//! Merge semantics of record documents edited offline on two or three replicas.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use automerge::ActorId;
use gridsync_core::doc::{load_received, RecordDoc};
use gridsync_core::model::{
    default_template, Finding, Producer, ProducerStatus, Record, ReviewAction, ReviewEvent,
    ReviewState, RiskLevel, Severity, Visit,
};

use common::*;

const T0: i64 = 1_750_000_000_000;

fn actor(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

/// Creates a record on replica 1 and hands copies to `n - 1` more replicas.
fn replicas(rec: &Record, n: u8) -> Vec<RecordDoc> {
    let mut first = RecordDoc::create(rec, &actor(1), "liaison-1", T0).unwrap();
    let bytes = first.save();
    let mut out = vec![first];
    for i in 2..=n {
        let mut d = load_received(&bytes).unwrap();
        d.set_actor(&actor(i));
        assert_eq!(
            &d.read().unwrap(),
            rec,
            "replica {i} reads the created record"
        );
        out.push(d);
    }
    out
}

fn producer_of(d: &RecordDoc) -> Producer {
    match d.read().unwrap() {
        Record::Producer(p) => p,
        other => panic!("expected a producer, got {other:?}"),
    }
}

fn visit_of(d: &RecordDoc) -> Visit {
    match d.read().unwrap() {
        Record::Visit(v) => v,
        other => panic!("expected a visit, got {other:?}"),
    }
}

fn edit_producer(d: &mut RecordDoc, who: &str, at: i64, f: impl FnOnce(&mut Producer)) {
    let mut p = producer_of(d);
    f(&mut p);
    p.updated_at_ms = at;
    assert!(
        d.update(&Record::Producer(p), who, at).unwrap(),
        "edit wrote a change"
    );
}

fn edit_visit(d: &mut RecordDoc, who: &str, at: i64, f: impl FnOnce(&mut Visit)) {
    let mut v = visit_of(d);
    f(&mut v);
    v.updated_at_ms = at;
    assert!(
        d.update(&Record::Visit(v), who, at).unwrap(),
        "edit wrote a change"
    );
}

/// Exchanges the changes of two replicas both ways (incremental chunks since `base`).
fn exchange(a: &mut RecordDoc, b: &mut RecordDoc) {
    let base_a = a.heads();
    let base_b = b.heads();
    // Each side sends what the other lacks: everything after the other's heads it knows.
    let common_a = known(a, &base_b);
    let common_b = known(b, &base_a);
    let from_a = a.save_after(&common_a);
    let from_b = b.save_after(&common_b);
    b.apply(&from_a).unwrap();
    a.apply(&from_b).unwrap();
    assert!(a.missing_deps().is_empty() && b.missing_deps().is_empty());
}

/// The subset of `heads` that `d` knows (the common ancestry to send changes after).
fn known(d: &mut RecordDoc, heads: &[automerge::ChangeHash]) -> Vec<automerge::ChangeHash> {
    heads
        .iter()
        .copied()
        .filter(|h| d.has_heads(&[*h]))
        .collect()
}

fn sample_producer() -> Producer {
    let mut p = ranch("锡林郭勒草原牧场", VIL1, 7);
    p.created_at_ms = T0;
    p.updated_at_ms = T0;
    p
}

#[test]
fn different_fields_both_survive_without_conflict() {
    let p = sample_producer();
    let mut r = replicas(&Record::Producer(p.clone()), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    edit_producer(a, "liaison-1", T0 + 10, |p| p.phone = "13800001111".into());
    edit_producer(b, "super-1", T0 + 20, |p| {
        p.address = "别力古台镇巴彦图嘎嘎查3组".into();
        p.scale.crop_area_mu = Some(120.5);
    });
    exchange(a, b);
    let (pa, pb) = (producer_of(a), producer_of(b));
    assert_eq!(pa, pb, "replicas converge");
    assert_eq!(pa.phone, "13800001111");
    assert_eq!(pa.address, "别力古台镇巴彦图嘎嘎查3组");
    assert_eq!(pa.scale.crop_area_mu, Some(120.5));
    assert_eq!(pa.name, p.name);
    // Last-edit time is bookkeeping: the later one, and never shown as a conflict.
    assert_eq!(pa.updated_at_ms, T0 + 20);
    assert_eq!(a.conflicts().unwrap(), vec![]);
    assert_eq!(b.conflicts().unwrap(), vec![]);
    // Each person's change is in the history.
    let who: Vec<String> = a.history().into_iter().map(|h| h.by).collect();
    assert!(who.contains(&"liaison-1".to_string()) && who.contains(&"super-1".to_string()));
}

#[test]
fn same_field_has_a_winner_and_a_readable_loser_until_resolved() {
    let p = sample_producer();
    let mut r = replicas(&Record::Producer(p), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    edit_producer(a, "liaison-1", T0 + 10, |p| p.phone = "13800001111".into());
    edit_producer(b, "super-1", T0 + 20, |p| p.phone = "13900002222".into());
    exchange(a, b);
    let (pa, pb) = (producer_of(a), producer_of(b));
    assert_eq!(pa.phone, pb.phone, "both replicas pick the same winner");
    assert!(["13800001111", "13900002222"].contains(&pa.phone.as_str()));
    let loser = if pa.phone == "13800001111" {
        "13900002222"
    } else {
        "13800001111"
    };
    for d in [&*a, &*b] {
        let c = d.conflicts().unwrap();
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].path, "phone");
        assert_eq!(c[0].winner, serde_json::json!(pa.phone));
        assert_eq!(c[0].others, vec![serde_json::json!(loser)]);
    }
    // Resolving keeps the winner and clears the conflict, here and after sync.
    assert!(a.resolve_conflict("phone", "super-1", T0 + 30).unwrap());
    assert_eq!(a.conflicts().unwrap(), vec![]);
    assert_eq!(producer_of(a).phone, pa.phone);
    exchange(a, b);
    assert_eq!(b.conflicts().unwrap(), vec![]);
    assert_eq!(producer_of(b), producer_of(a));
    // Resolving a field without a conflict or that does not exist is an error, not a panic.
    assert!(a.resolve_conflict("no_such_field", "x", T0).is_err());
    assert!(a.resolve_conflict("scale", "x", T0).is_err());
}

fn finding(id: &str, text: &str, by: &str) -> Finding {
    Finding {
        id: id.into(),
        item_id: Some("drug_use".into()),
        description: text.into(),
        severity: Severity::Major,
        photos: vec![format!("photo-{id}.jpg")],
        recorded_by: by.into(),
        recorded_at_ms: T0 + 5,
    }
}

#[test]
fn findings_added_concurrently_on_three_replicas_all_survive() {
    let tpl = default_template(REGION);
    let mut v = Visit::new("producer-1", VIL1, "liaison-1", &tpl, T0);
    v.updated_at_ms = T0;
    v.findings.push(finding("f0", "原有问题", "liaison-1"));
    let mut r = replicas(&Record::Visit(v), 3);
    edit_visit(&mut r[0], "liaison-1", T0 + 1, |v| {
        v.findings
            .push(finding("fa", "兽药使用记录不全", "liaison-1"))
    });
    edit_visit(&mut r[1], "super-1", T0 + 2, |v| {
        v.findings.push(finding("fb", "休药期未执行", "super-1"));
        v.findings.push(finding("fb2", "包装无标识", "super-1"));
    });
    edit_visit(&mut r[2], "county-1", T0 + 3, |v| {
        v.findings[0].description = "原有问题（已复核）".into();
    });
    let (x, rest) = r.split_at_mut(1);
    let (y, z) = rest.split_at_mut(1);
    exchange(&mut x[0], &mut y[0]);
    exchange(&mut y[0], &mut z[0]);
    exchange(&mut x[0], &mut z[0]);
    let merged = visit_of(&r[0]);
    let mut ids: Vec<&str> = merged.findings.iter().map(|f| f.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["f0", "fa", "fb", "fb2"]);
    assert_eq!(merged.findings[0].description, "原有问题（已复核）");
    for d in &r {
        assert_eq!(visit_of(d), merged);
        assert_eq!(d.conflicts().unwrap(), vec![]);
    }
}

#[test]
fn closing_a_producer_and_editing_its_phone_both_survive() {
    let p = sample_producer();
    let mut r = replicas(&Record::Producer(p), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    edit_producer(a, "super-1", T0 + 10, |p| p.status = ProducerStatus::Closed);
    edit_producer(b, "liaison-1", T0 + 20, |p| p.phone = "13700003333".into());
    exchange(a, b);
    for d in [&*a, &*b] {
        let p = producer_of(d);
        assert_eq!(p.status, ProducerStatus::Closed);
        assert_eq!(p.phone, "13700003333");
        assert_eq!(d.conflicts().unwrap(), vec![]);
    }
}

fn approve(p: &mut Producer, by: &str, at: i64) {
    p.review.state = ReviewState::TownshipApproved;
    p.review.approved_fingerprint = Some(p.directory_fingerprint());
    p.review.history.push(ReviewEvent {
        id: format!("ev-{at}"),
        action: ReviewAction::ApproveTownship,
        by: by.into(),
        at_ms: at,
        state_after: ReviewState::TownshipApproved,
    });
}

#[test]
fn approval_concurrent_with_a_directory_edit_is_not_silently_kept() {
    let mut p = sample_producer();
    p.review.state = ReviewState::Submitted;
    let mut r = replicas(&Record::Producer(p), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    edit_producer(a, "super-1", T0 + 10, |p| approve(p, "super-1", T0 + 10));
    assert_eq!(
        producer_of(a).effective_review_state(),
        ReviewState::TownshipApproved
    );
    edit_producer(b, "liaison-1", T0 + 20, |p| p.owner = "额尔敦巴特尔".into());
    exchange(a, b);
    for d in [&*a, &*b] {
        let p = producer_of(d);
        assert_eq!(p.owner, "额尔敦巴特尔");
        assert_eq!(p.review.state, ReviewState::TownshipApproved);
        assert_eq!(
            p.effective_review_state(),
            ReviewState::Submitted,
            "an approval of other field values does not hold"
        );
        assert_eq!(p.review.history.len(), 1);
    }
}

#[test]
fn approval_concurrent_with_a_non_directory_edit_still_holds() {
    let mut p = sample_producer();
    p.review.state = ReviewState::Submitted;
    let mut r = replicas(&Record::Producer(p), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    edit_producer(a, "super-1", T0 + 10, |p| approve(p, "super-1", T0 + 10));
    // Risk grade is the supervisor's working data, not part of what the reviewer vouches for.
    edit_producer(b, "super-2", T0 + 20, |p| p.risk = RiskLevel::High);
    exchange(a, b);
    let p = producer_of(a);
    assert_eq!(p.risk, RiskLevel::High);
    assert_eq!(p.effective_review_state(), ReviewState::TownshipApproved);
    assert_eq!(producer_of(b), p);
}

#[test]
fn concurrent_review_steps_both_stay_in_history() {
    let mut p = sample_producer();
    p.review.state = ReviewState::Submitted;
    let mut r = replicas(&Record::Producer(p), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    edit_producer(a, "super-1", T0 + 10, |p| approve(p, "super-1", T0 + 10));
    edit_producer(b, "super-2", T0 + 20, |p| {
        p.review.state = ReviewState::Returned;
        p.review.return_reason = Some("身份证号待核实".into());
        p.review.history.push(ReviewEvent {
            id: "ev-return".into(),
            action: ReviewAction::Return("身份证号待核实".into()),
            by: "super-2".into(),
            at_ms: T0 + 20,
            state_after: ReviewState::Returned,
        });
    });
    exchange(a, b);
    let p = producer_of(a);
    assert_eq!(p, producer_of(b));
    assert_eq!(p.review.history.len(), 2, "both steps are kept");
    let c = a.conflicts().unwrap();
    assert!(
        c.iter().any(|c| c.path == "review.state"),
        "the two outcomes are shown as a conflict: {c:?}"
    );
}

#[test]
fn products_merge_as_a_set() {
    let mut p = sample_producer();
    p.products = vec!["羊肉".into(), "羊绒".into()];
    let mut r = replicas(&Record::Producer(p), 3);
    edit_producer(&mut r[0], "liaison-1", T0 + 1, |p| {
        p.products.push("牛肉".into())
    });
    edit_producer(&mut r[1], "super-1", T0 + 2, |p| {
        p.products.push("牛肉".into());
        p.products.push("奶豆腐".into());
    });
    edit_producer(&mut r[2], "county-1", T0 + 3, |p| {
        p.products.retain(|x| x != "羊绒")
    });
    let (x, rest) = r.split_at_mut(1);
    let (y, z) = rest.split_at_mut(1);
    exchange(&mut x[0], &mut y[0]);
    exchange(&mut x[0], &mut z[0]);
    exchange(&mut y[0], &mut z[0]);
    let mut got = producer_of(&r[0]).products;
    got.sort();
    let mut want: Vec<String> = vec!["羊肉".into(), "牛肉".into(), "奶豆腐".into()];
    want.sort();
    assert_eq!(got, want, "added on two replicas shows once; removal kept");
    for d in &r {
        assert_eq!(producer_of(d), producer_of(&r[0]));
    }
    // Removing a value added twice removes it entirely.
    edit_producer(&mut r[0], "liaison-1", T0 + 9, |p| {
        p.products.retain(|x| x != "牛肉")
    });
    assert!(!producer_of(&r[0]).products.contains(&"牛肉".to_string()));
}

#[test]
fn three_replicas_converge_whatever_the_exchange_order() {
    let p = sample_producer();
    let rec = Record::Producer(p);
    let make = || {
        let mut r = replicas(&rec, 3);
        edit_producer(&mut r[0], "liaison-1", T0 + 1, |p| {
            p.phone = "13800001111".into();
            p.products.push("牛肉".into());
        });
        edit_producer(&mut r[1], "super-1", T0 + 2, |p| {
            p.phone = "13900002222".into();
            p.address = "新地址".into();
        });
        edit_producer(&mut r[2], "county-1", T0 + 3, |p| {
            p.status = ProducerStatus::Closed;
            p.phone = "13700003333".into();
        });
        r
    };
    let orders: [[(usize, usize); 3]; 4] = [
        [(0, 1), (1, 2), (0, 2)],
        [(2, 1), (0, 2), (1, 0)],
        [(1, 2), (0, 1), (2, 0)],
        [(0, 2), (2, 1), (1, 0)],
    ];
    let mut results = Vec::new();
    for order in orders {
        let mut r = make();
        for (i, j) in order {
            // Whole saved documents, applied one way at a time.
            let bytes = r[i].save();
            r[j].apply(&bytes).unwrap();
            let bytes = r[j].save();
            r[i].apply(&bytes).unwrap();
        }
        let first = r[0].read().unwrap();
        for d in &r {
            assert_eq!(d.read().unwrap(), first);
            assert_eq!(d.conflicts().unwrap(), r[0].conflicts().unwrap());
        }
        // The merged state survives a save and load.
        let bytes = r[1].save();
        let reloaded = RecordDoc::load(&bytes, &[]).unwrap();
        assert_eq!(reloaded.read().unwrap(), first);
        results.push((first, r[0].conflicts().unwrap()));
    }
    for w in results.windows(2) {
        assert_eq!(w[0], w[1], "same state whatever the order");
    }
    let (Record::Producer(p), conflicts) = &results[0] else {
        panic!("producer expected")
    };
    assert_eq!(p.status, ProducerStatus::Closed);
    assert_eq!(p.address, "新地址");
    assert!(p.products.contains(&"牛肉".to_string()));
    let phone = conflicts.iter().find(|c| c.path == "phone").unwrap();
    assert_eq!(phone.others.len(), 2, "both losing phones stay readable");
}

#[test]
fn incremental_chunks_and_whole_saves_give_the_same_document() {
    let p = sample_producer();
    let mut r = replicas(&Record::Producer(p.clone()), 2);
    let base = r[0].heads();
    edit_producer(&mut r[0], "liaison-1", T0 + 1, |p| {
        p.owner = "新户主".into()
    });
    let mid = r[0].heads();
    edit_producer(&mut r[0], "liaison-1", T0 + 2, |p| {
        p.address = "新地址".into()
    });
    let chunks = r[0].save_after(&base);
    let whole = r[0].save();
    let mut via_chunks = load_received(&r[1].save()).unwrap();
    via_chunks.apply(&chunks).unwrap();
    let via_whole = load_received(&whole).unwrap();
    assert_eq!(via_chunks.read().unwrap(), via_whole.read().unwrap());
    assert_eq!(via_chunks.read().unwrap(), r[0].read().unwrap());
    // A chunk whose dependencies are missing is held back and reported, not applied.
    let second_only = r[0].save_after(&mid);
    let mut stale = load_received(&r[1].save()).unwrap();
    stale.apply(&second_only).unwrap();
    assert!(!stale.missing_deps().is_empty());
    assert_eq!(producer_of(&stale), p);
    stale.apply(&chunks).unwrap();
    assert!(stale.missing_deps().is_empty());
    assert_eq!(stale.read().unwrap(), r[0].read().unwrap());
}

#[test]
fn garbage_and_wrong_kind_are_errors() {
    assert!(load_received(b"not an automerge document").is_err());
    assert!(RecordDoc::load(b"\x85\x6f\x4a\x83garbage", &[]).is_err());
    let mut d = RecordDoc::create(
        &Record::Producer(sample_producer()),
        &actor(1),
        "liaison-1",
        T0,
    )
    .unwrap();
    let tpl = default_template(REGION);
    let v = Visit::new("p", VIL1, "liaison-1", &tpl, T0);
    assert!(d.update(&Record::Visit(v), "x", T0).is_err());
}

#[test]
fn nested_conflicts_name_their_path_and_resolve() {
    let tpl = default_template(REGION);
    let mut v = Visit::new("producer-1", VIL1, "liaison-1", &tpl, T0);
    v.updated_at_ms = T0;
    answer_required(&mut v);
    v.findings.push(finding("f0", "原描述", "liaison-1"));
    let mut r = replicas(&Record::Visit(v), 2);
    let (a, b) = r.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    edit_visit(a, "liaison-1", T0 + 1, |v| {
        v.findings[0].description = "描述甲".into();
        v.answers.get_mut("drug_use").unwrap().note = Some("备注甲".into());
    });
    edit_visit(b, "super-1", T0 + 2, |v| {
        v.findings[0].description = "描述乙".into();
        v.answers.get_mut("drug_use").unwrap().note = Some("备注乙".into());
    });
    exchange(a, b);
    let mut paths: Vec<String> = a.conflicts().unwrap().into_iter().map(|c| c.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec!["answers.drug_use.note", "findings[0].description"]
    );
    let before = visit_of(a);
    assert!(a
        .resolve_conflict("findings[0].description", "super-1", T0 + 3)
        .unwrap());
    assert!(a
        .resolve_conflict("answers.drug_use.note", "super-1", T0 + 3)
        .unwrap());
    assert_eq!(a.conflicts().unwrap(), vec![]);
    let after = visit_of(a);
    assert_eq!(after.findings, before.findings);
    assert_eq!(after.answers, before.answers);
    exchange(a, b);
    assert_eq!(b.conflicts().unwrap(), vec![]);
    assert_eq!(visit_of(b), visit_of(a));
}

#[test]
fn create_reports_whether_the_document_reads_back_exactly() {
    let p = sample_producer();
    let (d, exact) =
        RecordDoc::create_exact(&Record::Producer(p.clone()), &actor(1), "x", T0).unwrap();
    assert!(exact);
    assert_eq!(producer_of(&d), p);
    let mut dup = p.clone();
    dup.products = vec!["羊肉".into(), "羊肉".into()];
    let (d, exact) = RecordDoc::create_exact(&Record::Producer(dup), &actor(1), "x", T0).unwrap();
    assert!(!exact, "a duplicate list entry is kept once");
    assert_eq!(producer_of(&d).products, vec!["羊肉".to_string()]);
    // The fast path writes the same document an update from empty would.
    let tpl = default_template(REGION);
    let mut v = Visit::new("p", VIL1, "liaison-1", &tpl, T0);
    answer_required(&mut v);
    v.findings.push(finding("f1", "问题", "liaison-1"));
    let (mut d, exact) =
        RecordDoc::create_exact(&Record::Visit(v.clone()), &actor(2), "x", T0).unwrap();
    assert!(exact);
    assert_eq!(visit_of(&d), v);
    assert_eq!(visit_of(&load_received(&d.fork().save()).unwrap()), v);
}
