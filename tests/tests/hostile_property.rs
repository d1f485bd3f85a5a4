//! Property test of the server's judgement (issue 12): generated hostile pushes — random
//! subsets of heads as dependencies (backdated changes), random pushed heads, foreign
//! actors and authors, writes of protected fields by every role, counters inflated to win
//! Automerge's conflict order — sent over HTTP to a real server on 127.0.0.1 with real
//! device credentials. After every push the stored record is checked against a model of
//! what each role may do, written here independently of `core::rules`:
//!
//! - a refused push leaves the stored record exactly as it was;
//! - an accepted push brings only changes signed by the pushing device and naming its
//!   person, and leaves a record whose protected fields changed only as that role may
//!   change them now.
//!
//! Between hostile cases, legitimate concurrent work (two people editing different
//! fields, a supervisor's offline submit-and-approve) must be accepted.
//!
//! `GRIDSYNC_HOSTILE_CASES` sets the number of cases (300 by default;
//! `scripts/hostile-full.sh` runs 10,000), `GRIDSYNC_HOSTILE_SEED` the seed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ChangeHash, ReadDoc, ROOT};
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    default_template, Answer, AnswerValue, Finding, Producer, RapidTest, Record, ReviewAction,
    ReviewEvent, ReviewState, Role, Severity, TestMethod, Verdict, Visit, VisitReview, VisitStatus,
    YesNoNa,
};
use gridsync_core::sync::protocol::{PushOutcome, PushRecord};
use gridsync_tests::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const STATES: [ReviewState; 5] = [
    ReviewState::Draft,
    ReviewState::Submitted,
    ReviewState::TownshipApproved,
    ReviewState::CountyApproved,
    ReviewState::Returned,
];

struct World {
    _dir: tempfile::TempDir,
    server: TestServer,
    /// liaison of V01, its second phone, supervisor of T01, county reviewer.
    phones: Vec<Phone>,
    /// Every person id of the world (authors to forge).
    people: Vec<String>,
    /// Grids to move records to (in and out of the pushers' scopes).
    grids: Vec<String>,
    records: Vec<String>,
}

fn sync_clean(p: &Phone) {
    let r = p.sync().unwrap();
    assert!(r.rejected.is_empty(), "{}: {:?}", p.person.id, r.rejected);
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    // Rate limits are not what this test is about: let every case through.
    let server = TestServer::start_configured(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &Backend::from_env(),
        |s| {
            s.device_limiter = gridsync_server::limits::RateLimiter::new(1e9, u32::MAX, 1000);
        },
    );
    let data = small_dataset();
    server.load(&data);
    let url = server.url();
    let enrol = |name: &str, id: &str| {
        let p = Phone::enrol(&server, &url, dir.path(), name, id);
        p.sync().unwrap();
        p
    };
    let lia = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let lp = enrol("lia", &lia.id);
    let lp2 = enrol("lia-2", &lia.id);
    let sp = enrol("sup", &person_in(&data, Role::Supervisor, "DEMO-T01").id);
    let cp = enrol("county", &person_in(&data, Role::CountyReviewer, "DEMO").id);
    let grid = lia.grids[0].clone();
    let phones = vec![lp, lp2, sp, cp];
    let records = pool(&phones, &grid);
    let people: Vec<String> = data.people.iter().map(|p| p.id.clone()).collect();
    let grids = vec![
        grid,
        "DEMO-T01-V02".to_string(),
        "DEMO-T02-V01".to_string(),
        "DEMO-T01".to_string(),
    ];
    World {
        _dir: dir,
        server,
        phones,
        people,
        grids,
        records,
    }
}

/// A pool of records in every state, made through the app by the liaison (`phones[0]`),
/// the supervisor (`phones[2]`) and the county reviewer (`phones[3]`). The property test
/// takes a fresh pool now and then, so that records' histories (and the cost of judging
/// backdated changes) stay the size real records have.
fn pool(phones: &[Phone], grid: &str) -> Vec<String> {
    let (lp, sp, cp) = (&phones[0], &phones[2], &phones[3]);
    let grid = grid.to_string();
    let mut records = Vec::new();
    let mut producers = Vec::new();
    for (i, steps) in [0usize, 1, 2, 3, 4].iter().enumerate() {
        let p = lp
            .store
            .create_producer(new_producer(&format!("性质牧场{i}"), &grid, &lp.person.id))
            .unwrap();
        if *steps >= 1 {
            lp.store
                .review_producer(&p.id, ReviewAction::Submit)
                .unwrap();
        }
        sync_clean(lp);
        if *steps >= 2 {
            sp.sync().unwrap();
            sp.store
                .review_producer(&p.id, ReviewAction::ApproveTownship)
                .unwrap();
            sync_clean(sp);
        }
        if *steps >= 3 {
            cp.sync().unwrap();
            cp.store
                .review_producer(&p.id, ReviewAction::ApproveCounty)
                .unwrap();
            sync_clean(cp);
        }
        if *steps >= 4 {
            cp.store
                .review_producer(&p.id, ReviewAction::Return("复核".into()))
                .unwrap();
            sync_clean(cp);
        }
        records.push(p.id.clone());
        producers.push(p);
    }
    for (i, stage) in [0usize, 1, 2].iter().enumerate() {
        let mut v = Visit::new(
            &producers[i].id,
            &grid,
            &lp.person.id,
            &default_template("builtin"),
            gridsync_core::now_ms(),
        );
        answer_all(&mut v);
        let v = lp.store.save_visit(v).unwrap();
        sync_clean(lp);
        if *stage >= 1 {
            lp.store.complete_visit(&v.id).unwrap();
            sync_clean(lp);
        }
        if *stage >= 2 {
            sp.sync().unwrap();
            sp.store.review_visit(&v.id, "合格").unwrap();
            sync_clean(sp);
        }
        records.push(v.id.clone());
    }
    for p in phones {
        p.sync().unwrap();
    }
    records
}

fn read(doc: &AutoCommit) -> Record {
    RecordDoc::from_doc(doc.clone()).unwrap().read().unwrap()
}

/// One generated hostile push and what it was made of (for the failure message).
struct Case {
    pusher: usize,
    push: PushRecord,
    what: Vec<String>,
}

fn gen_case(w: &World, rng: &mut Rng) -> Case {
    let pusher = rng.below(w.phones.len());
    let phone = &w.phones[pusher];
    let id = rng.pick(&w.records).clone();
    let stored = w.server.storage.record(&id).unwrap().unwrap();
    let mut doc = AutoCommit::load(&stored.doc).unwrap();
    let stored_heads = doc.get_heads();
    let all: Vec<ChangeHash> = doc.get_changes(&[]).iter().map(|c| c.hash()).collect();
    let mut what = Vec::new();
    // Actor: the device's own, another phone's (its sibling's too), or a random one.
    let actor = match rng.below(10) {
        0 => {
            what.push("foreign actor".into());
            w.phones[(pusher + 1 + rng.below(w.phones.len() - 1)) % w.phones.len()]
                .store
                .actor_id()
        }
        1 => {
            what.push("random actor".into());
            ActorId::random()
        }
        _ => phone.store.actor_id(),
    };
    let person = if rng.chance(8) {
        let p = rng.pick(&w.people).clone();
        what.push(format!("message names {p}"));
        p
    } else {
        phone.person.id.clone()
    };
    // Dependencies: the current version, or a random older one (backdated) that still
    // holds the actor's own latest change (so the new change's sequence number is free,
    // as a crafting client would arrange).
    let mut fork = if rng.chance(40) {
        doc.fork()
    } else {
        let n = 1 + rng.below(2);
        let mut deps: Vec<ChangeHash> = (0..n).map(|_| *rng.pick(&all)).collect();
        if let Some(own) = doc
            .get_changes(&[])
            .iter()
            .filter(|c| *c.actor_id() == actor)
            .map(|c| c.hash())
            .next_back()
        {
            deps.push(own);
        }
        what.push(format!(
            "backdated to {} of {} changes",
            deps.len(),
            all.len()
        ));
        doc.fork_at(&deps).unwrap()
    };
    fork.set_actor(actor.clone());
    let mut rd = RecordDoc::from_doc(fork).unwrap();
    let base = rd.heads();
    let mut rec = rd.read().unwrap();
    if rng.chance(40) {
        inflate(rd.inner(), 20 + rng.below(100));
        what.push("inflated counter".into());
    }
    let backdated = !what.is_empty() && what.iter().any(|x| x.starts_with("backdated"));
    if backdated && matches!(rec, Record::Producer(_)) && rng.chance(40) {
        // The attack of class 2: an older version's review re-asserted to win the merge
        // against a later decision.
        reassert(&mut rec, rd.inner(), &mut what);
    }
    for _ in 0..1 + rng.below(3) {
        mutate(w, rng, &mut rec, rd.inner(), &mut what);
    }
    let _ = rd.update(&rec, &person, gridsync_core::now_ms());
    let changes = rd.save_after(&base);
    let new_heads = rd.heads();
    let heads: Vec<ChangeHash> = match rng.below(10) {
        0 => {
            what.push("old heads".into());
            stored_heads
        }
        1 => {
            what.push("heads: a random mix".into());
            let pool: Vec<ChangeHash> = new_heads.iter().chain(&all).copied().collect();
            (0..1 + rng.below(3)).map(|_| *rng.pick(&pool)).collect()
        }
        _ => new_heads,
    };
    Case {
        pusher,
        push: PushRecord {
            id,
            kind: rec.kind().tag(),
            changes,
            heads: heads.iter().map(|h| h.0).collect(),
        },
        what,
    }
}

fn inflate(doc: &mut AutoCommit, n: usize) {
    let v = match doc.get(ROOT, "updated_at_ms").ok().flatten() {
        Some((automerge::Value::Scalar(s), _)) => match s.as_ref() {
            automerge::ScalarValue::Int(i) => *i,
            _ => 0,
        },
        _ => 0,
    };
    for i in 0..n * 2 {
        let _ = doc.put(ROOT, "updated_at_ms", v + (i % 2 == 0) as i64);
    }
}

fn raw_put(doc: &mut AutoCommit, path: &[&str], key: &str, value: &str) {
    let mut obj = ROOT;
    for p in path {
        obj = match doc.get(&obj, *p).ok().flatten() {
            Some((automerge::Value::Object(_), id)) => id,
            _ => return,
        };
    }
    let _ = doc.put(&obj, key, format!("{value}~"));
    let _ = doc.put(&obj, key, value);
}

/// Re-asserts the review as this (possibly older) version holds it, so that a later
/// decision loses the merge: legal on its own, forbidden once merged.
fn reassert(rec: &mut Record, doc: &mut AutoCommit, what: &mut Vec<String>) {
    let Record::Producer(p) = rec else {
        return;
    };
    let state = p.review.state.as_str();
    raw_put(doc, &["review"], "state", state);
    if let Some(fp) = p.review.approved_fingerprint.clone() {
        raw_put(doc, &["review"], "approved_fingerprint", &fp);
    }
    inflate(doc, 60);
    what.push(format!("re-asserted {state}"));
}

fn mutate(
    w: &World,
    rng: &mut Rng,
    rec: &mut Record,
    doc: &mut AutoCommit,
    what: &mut Vec<String>,
) {
    let someone = rng.pick(&w.people).clone();
    match rec {
        Record::Producer(p) => match rng.below(12) {
            10 | 11 => reassert(rec, doc, what),
            0 => {
                p.phone = format!("139{:08}", rng.below(100_000_000));
                what.push("phone".into());
            }
            1 => {
                p.address = format!("地址{}", rng.below(1000));
                what.push("address".into());
            }
            2 => {
                let s = *rng.pick(&STATES);
                p.review.state = s;
                if s.is_approved() && rng.chance(70) {
                    p.review.approved_fingerprint = Some(p.directory_fingerprint());
                }
                what.push(format!("state := {}", s.as_str()));
            }
            3 => {
                let s = *rng.pick(&STATES);
                raw_put(doc, &["review"], "state", s.as_str());
                if rng.chance(50) {
                    raw_put(
                        doc,
                        &["review"],
                        "approved_fingerprint",
                        &p.directory_fingerprint(),
                    );
                }
                what.push(format!("raw state := {}", s.as_str()));
            }
            4 => {
                let s = *rng.pick(&STATES);
                let action = match s {
                    ReviewState::TownshipApproved => ReviewAction::ApproveTownship,
                    ReviewState::CountyApproved => ReviewAction::ApproveCounty,
                    ReviewState::Returned => ReviewAction::Return("退".into()),
                    _ => ReviewAction::Submit,
                };
                p.review.history.push(ReviewEvent {
                    id: gridsync_core::new_id(),
                    action,
                    by: someone.clone(),
                    at_ms: gridsync_core::now_ms(),
                    state_after: s,
                });
                p.review.state = s;
                what.push(format!("history event by {someone} -> {}", s.as_str()));
            }
            5 => {
                if !p.review.history.is_empty() {
                    let i = rng.below(p.review.history.len());
                    p.review.history.remove(i);
                    what.push("history event removed".into());
                }
            }
            6 => {
                p.created_by = someone.clone();
                what.push(format!("created_by := {someone}"));
            }
            7 => {
                let g = if rng.chance(60) {
                    w.grids[0].clone()
                } else {
                    rng.pick(&w.grids).clone()
                };
                what.push(format!("grid := {g}"));
                p.grid = g;
            }
            8 => {
                p.review.approved_fingerprint = if rng.chance(50) {
                    None
                } else {
                    Some(p.directory_fingerprint())
                };
                what.push("approved_fingerprint".into());
            }
            _ => {
                p.owner = format!("户主{}", rng.below(100));
                what.push("owner".into());
            }
        },
        Record::Visit(v) => match rng.below(11) {
            0 => {
                v.answers.insert(
                    "drug_use".into(),
                    Answer {
                        value: AnswerValue::YesNo(*rng.pick(&[YesNoNa::Yes, YesNoNa::No])),
                        note: Some(format!("备注{}", rng.below(100))),
                    },
                );
                what.push("answer".into());
            }
            1 => {
                v.status = *rng.pick(&[VisitStatus::Draft, VisitStatus::Completed]);
                if v.status == VisitStatus::Completed {
                    v.ended_at_ms = Some(v.started_at_ms + 1);
                }
                what.push(format!("status := {:?}", v.status));
            }
            2 => {
                v.inspector = someone.clone();
                what.push(format!("inspector := {someone}"));
            }
            3 => {
                v.review = if rng.chance(80) {
                    Some(VisitReview {
                        by: someone.clone(),
                        at_ms: gridsync_core::now_ms(),
                        comment: "审".into(),
                    })
                } else {
                    None
                };
                what.push(format!("review by {someone}"));
            }
            4 => {
                v.findings.push(Finding {
                    id: gridsync_core::new_id(),
                    item_id: None,
                    description: "发现".into(),
                    severity: Severity::Minor,
                    photos: vec![],
                    recorded_by: someone.clone(),
                    recorded_at_ms: gridsync_core::now_ms(),
                });
                what.push(format!("finding by {someone}"));
            }
            5 => {
                if let Some(f) = v.findings.first_mut() {
                    f.description = format!("改{}", rng.below(100));
                    what.push("finding edited".into());
                }
            }
            6 => {
                v.rapid_tests.push(RapidTest {
                    id: gridsync_core::new_id(),
                    sample: "菠菜".into(),
                    item: "有机磷".into(),
                    method: TestMethod::EnzymeInhibition,
                    kit: "速测卡".into(),
                    value: Some(12.0),
                    unit: Some("%".into()),
                    verdict: Verdict::Pass,
                    operator: someone.clone(),
                    tested_at_ms: gridsync_core::now_ms(),
                });
                what.push(format!("rapid test by {someone}"));
            }
            7 => {
                v.follow_up_visit = Some(gridsync_core::new_id());
                what.push("follow-up".into());
            }
            8 => {
                let s = *rng.pick(&["completed", "draft"]);
                raw_put(doc, &[], "status", s);
                what.push(format!("raw status := {s}"));
            }
            9 => {
                if let Some(f) = v.findings.first_mut() {
                    f.recorded_by = someone.clone();
                    what.push(format!("finding recorder := {someone}"));
                }
            }
            _ => {
                v.location = None;
                v.acknowledgement = None;
                what.push("acknowledgement cleared".into());
            }
        },
        Record::Template(_) | Record::Acceptance(_) => {}
    }
}

// ---------------------------------------------------------------------------------------
// The model: what each role may do, stated independently of core::rules.
// ---------------------------------------------------------------------------------------

/// Whether `role` may turn the effective review state `from` into `to` (any number of its
/// own steps, or an edit sending an approved entry back).
fn producer_state_allowed(role: Role, from: ReviewState, to: ReviewState, edited: bool) -> bool {
    use ReviewState::*;
    if from == to || role == Role::Admin {
        return true;
    }
    let reviewer = matches!(role, Role::Supervisor | Role::CountyReviewer);
    // A reviewer may return what is submitted (submitting a draft first), the county also
    // what is approved; what is returned anyone may send back to draft or resubmit.
    let can_return = reviewer && matches!(from, Draft | Submitted | Returned)
        || role == Role::CountyReviewer && from.is_approved();
    match to {
        Returned => can_return,
        Draft => from == Returned || can_return,
        Submitted => matches!(from, Draft | Returned) || from.is_approved() && edited || can_return,
        TownshipApproved => {
            role == Role::Supervisor && matches!(from, Draft | Submitted | Returned)
        }
        CountyApproved => role == Role::CountyReviewer && from == TownshipApproved,
    }
}

fn approver_of(role: Role, state: ReviewState) -> bool {
    match state {
        ReviewState::TownshipApproved => matches!(role, Role::Supervisor | Role::Admin),
        ReviewState::CountyApproved => matches!(role, Role::CountyReviewer | Role::Admin),
        _ => true,
    }
}

fn in_scope_of(role: Role, grids: &[String], grid: &str) -> bool {
    role == Role::Admin
        || grids
            .iter()
            .any(|g| grid == g || grid.starts_with(&format!("{g}-")))
}

fn check_model(
    phone: &Phone,
    before_doc: &mut AutoCommit,
    after_doc: &mut AutoCommit,
) -> Result<(), String> {
    let me = &phone.person;
    let role = me.role;
    // Binding: every change new to the server is this device's and names this person.
    let known: std::collections::HashSet<ChangeHash> = before_doc
        .get_changes(&[])
        .iter()
        .map(|c| c.hash())
        .collect();
    let actor = phone.store.actor_id();
    for c in after_doc.get_changes(&[]) {
        if known.contains(&c.hash()) {
            continue;
        }
        if *c.actor_id() != actor {
            return Err(format!("accepted a change signed by {}", c.actor_id()));
        }
        if c.message() != Some(&me.id) {
            return Err(format!("accepted a change naming {:?}", c.message()));
        }
    }
    match (read(before_doc), read(after_doc)) {
        (Record::Producer(s), Record::Producer(m)) => {
            check_producer(role, &me.id, &me.grids, &s, &m)
        }
        (Record::Visit(s), Record::Visit(m)) => check_visit(role, &me.id, &s, &m),
        _ => Err("the record changed kind".into()),
    }
}

fn check_producer(
    role: Role,
    me: &str,
    grids: &[String],
    s: &Producer,
    m: &Producer,
) -> Result<(), String> {
    if s.created_by != m.created_by || s.created_at_ms != m.created_at_ms {
        return Err("created_by changed".into());
    }
    if !in_scope_of(role, grids, &m.grid) {
        return Err(format!("moved to {} outside the pusher's scope", m.grid));
    }
    for e in &s.review.history {
        if !m.review.history.contains(e) {
            return Err("a review event disappeared".into());
        }
    }
    for e in &m.review.history {
        if !s.review.history.contains(e) && e.by != me {
            return Err(format!("a new review event names {}", e.by));
        }
    }
    let edited = s.directory_fingerprint() != m.directory_fingerprint();
    let (from, to) = (s.effective_review_state(), m.effective_review_state());
    if !producer_state_allowed(role, from, to, edited) {
        return Err(format!(
            "a {} moved the entry from {} to {}",
            role.as_str(),
            from.as_str(),
            to.as_str()
        ));
    }
    let raw_changed = s.review.state != m.review.state
        || s.review.approved_fingerprint != m.review.approved_fingerprint;
    if raw_changed && m.review.state.is_approved() && !approver_of(role, m.review.state) {
        return Err(format!(
            "a {} left an approval at {}",
            role.as_str(),
            m.review.state.as_str()
        ));
    }
    Ok(())
}

fn check_visit(role: Role, me: &str, s: &Visit, m: &Visit) -> Result<(), String> {
    if s.inspector != m.inspector || s.producer_id != m.producer_id {
        return Err("inspector or producer changed".into());
    }
    if s.status == VisitStatus::Completed && m.status != VisitStatus::Completed {
        return Err("a completed visit was reopened".into());
    }
    if s.status != m.status && s.inspector != me {
        return Err("completed by someone other than its inspector".into());
    }
    if s.review != m.review {
        if !matches!(role, Role::Supervisor | Role::CountyReviewer) {
            return Err(format!("a {} changed the review", role.as_str()));
        }
        if m.review.as_ref().map(|r| r.by.as_str()) != Some(me) {
            return Err("the review does not name its reviewer".into());
        }
    }
    let old_f: BTreeMap<&str, &str> = s
        .findings
        .iter()
        .map(|f| (f.id.as_str(), f.recorded_by.as_str()))
        .collect();
    for f in &m.findings {
        match old_f.get(f.id.as_str()) {
            Some(by) if *by != f.recorded_by => return Err("a finding's recorder changed".into()),
            None if f.recorded_by != me => return Err("a new finding names someone else".into()),
            _ => {}
        }
    }
    let old_t: BTreeMap<&str, &str> = s
        .rapid_tests
        .iter()
        .map(|t| (t.id.as_str(), t.operator.as_str()))
        .collect();
    for t in &m.rapid_tests {
        match old_t.get(t.id.as_str()) {
            Some(by) if *by != t.operator => return Err("a test's operator changed".into()),
            None if t.operator != me => return Err("a new test names someone else".into()),
            _ => {}
        }
    }
    // A review of a completed visit vouches for it (a review of a draft is a comment:
    // its inspector goes on editing).
    if s.review.is_some() && s.status == VisitStatus::Completed {
        let strip = |v: &Visit| {
            let mut x = v.clone();
            x.review = None;
            x.updated_at_ms = 0;
            if let Some(r) = &mut x.rectification {
                r.resolved_at_ms = None;
            }
            x
        };
        let (mut a, b) = (strip(s), strip(m));
        if s.follow_up_visit.is_none() {
            a.follow_up_visit = b.follow_up_visit.clone();
        }
        if a != b {
            return Err("a reviewed visit's content changed".into());
        }
    }
    Ok(())
}

/// Legitimate concurrent work that must merge: the liaison and the supervisor edit
/// different fields of one entry offline; then the supervisor submits and approves a new
/// draft offline in one sync.
fn legitimate_round(w: &World, rng: &mut Rng) -> Result<(), String> {
    let (lp, sp) = (&w.phones[0], &w.phones[2]);
    lp.sync().map_err(|e| e.to_string())?;
    sp.sync().map_err(|e| e.to_string())?;
    let grid = lp.person.grids[0].clone();
    let fresh = lp
        .store
        .create_producer(new_producer(
            &format!("合法牧场{}", rng.below(1_000_000)),
            &grid,
            &lp.person.id,
        ))
        .map_err(|e| e.to_string())?;
    for p in [lp, sp] {
        let r = p.sync().map_err(|e| e.to_string())?;
        if !r.rejected.is_empty() {
            return Err(format!("legitimate create refused: {:?}", r.rejected));
        }
    }
    let phone = format!("138{:08}", rng.below(100_000_000));
    let address = format!("合法地址{}", rng.below(1000));
    let mut a = lp.store.producer(&fresh.id).map_err(|e| e.to_string())?;
    a.phone = phone.clone();
    lp.store.update_producer(a).map_err(|e| e.to_string())?;
    let mut b = sp.store.producer(&fresh.id).map_err(|e| e.to_string())?;
    b.address = address.clone();
    sp.store.update_producer(b).map_err(|e| e.to_string())?;
    sp.store
        .review_producer(&fresh.id, ReviewAction::Submit)
        .map_err(|e| e.to_string())?;
    sp.store
        .review_producer(&fresh.id, ReviewAction::ApproveTownship)
        .map_err(|e| e.to_string())?;
    let order: [&Phone; 2] = if rng.chance(50) { [lp, sp] } else { [sp, lp] };
    for p in order {
        let r = p.sync().map_err(|e| e.to_string())?;
        if !r.rejected.is_empty() {
            return Err(format!(
                "legitimate concurrent edit of {} refused: {:?}",
                p.person.id, r.rejected
            ));
        }
    }
    let stored = w.server.storage.record(&fresh.id).unwrap().unwrap();
    match RecordDoc::load(&stored.doc, &[]).unwrap().read().unwrap() {
        Record::Producer(m) if m.phone == phone && m.address == address => Ok(()),
        other => Err(format!("a legitimate edit was lost: {:?}", other.to_json())),
    }
}

#[test]
fn hostile_pushes_never_leave_a_forbidden_state() {
    let cases: usize = std::env::var("GRIDSYNC_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("GRIDSYNC_HOSTILE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_1234);
    let mut w = world();
    let mut rng = Rng(seed | 1);
    let (mut accepted, mut refused, mut legit) = (0usize, 0usize, 0usize);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..cases {
        if n % 1000 == 999 {
            w.records = pool(&w.phones, &w.grids[0]);
        }
        if n % 50 == 49 {
            legitimate_round(&w, &mut rng).unwrap_or_else(|e| panic!("seed {seed}, case {n}: {e}"));
            legit += 1;
            continue;
        }
        let case = gen_case(&w, &mut rng);
        let phone = &w.phones[case.pusher];
        let before = w.server.storage.record(&case.push.id).unwrap().unwrap();
        let r = raw_sync(phone, vec![case.push.clone()], vec![]).unwrap();
        let after = w.server.storage.record(&case.push.id).unwrap().unwrap();
        let ctx = || {
            format!(
                "seed {seed}, case {n}: {} ({:?}) pushed {} [{}]",
                phone.person.id,
                phone.person.role,
                case.push.id,
                case.what.join(", ")
            )
        };
        match &r.results[0].outcome {
            PushOutcome::Accepted => {
                accepted += 1;
                let mut b = AutoCommit::load(&before.doc).unwrap();
                let mut a = AutoCommit::load(&after.doc).unwrap();
                if let Err(e) = check_model(phone, &mut b, &mut a) {
                    panic!("{}: accepted, but {e}", ctx());
                }
            }
            PushOutcome::Rejected { code, reason } => {
                refused += 1;
                // Grouped by the reason's words (ids, hashes and names left out).
                let words: String = reason
                    .split_whitespace()
                    .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                    .take(9)
                    .collect::<Vec<_>>()
                    .join(" ");
                *reasons.entry(format!("{code:?}: {words}")).or_default() += 1;
                assert_eq!(
                    before.doc,
                    after.doc,
                    "{}: refused ({reason}) but the stored record changed",
                    ctx()
                );
            }
        }
    }
    println!(
        "hostile pushes: {cases} cases (seed {seed}): {accepted} accepted and checked against the model, {refused} refused with the record unchanged, {legit} legitimate concurrent rounds merged"
    );
    for (r, n) in &reasons {
        println!("  {n:>6}  {r}");
    }
    assert!(
        accepted > 0 && refused > 0,
        "the generator must exercise both outcomes"
    );
}
