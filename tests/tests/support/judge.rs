//! Body of the fuzz target `judge` (`fuzz/fuzz_targets/judge.rs`), shared with the replay
//! in `tests/tests/fuzz_regressions.rs`: structure-aware pushes judged by the server's
//! `push::decide`.
//!
//! A fixed server world (SQLite in a temporary directory) holds a draft producer and a
//! draft visit of village `FZ-V`, written by the administrator. Each input is a small
//! program: who pushes (liaison, supervisor, county reviewer, administrator), what (the
//! stored producer or visit, or a new one), then edits made through Automerge on real
//! documents: typed edits of the record (submit, approve, return, complete, review, add a
//! finding or a rapid test, change authors, grid, answers), raw puts and deletes of
//! protected and unprotected fields, unknown keys, nested maps and long lists, commits with
//! any message, any actor (the pusher's device, another person's, random bytes), forks at
//! earlier heads (concurrent branches merged before pushing) and any pushed heads.
//!
//! Besides "never panics", what `decide` accepts is checked: the stored document must
//! load, read and validate, and a liaison can never leave a producer approved, a visit
//! reviewed, or another author in `created_by` or `inspector`.

use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue};
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    Finding, Person, RapidTest, Record, Rectification, ReviewAction, ReviewEvent, ReviewState,
    Role, Severity, TestMethod, Verdict, VisitReview, VisitStatus,
};
use gridsync_core::sync::protocol::PushRecord;
use gridsync_server::push::{decide, PushContext};
use gridsync_server::scope::Scope;
use gridsync_server::storage::sqlite::SqliteStorage;
use gridsync_server::storage::{PushDecision, Storage};

const T: i64 = 1_767_225_600_000;
const SEED_DEVICE: &str = "fz-judge-seed";
const NEW_PRODUCER: &str = "0190f5a0-0000-7000-8000-00000000f0a1";
const NEW_VISIT: &str = "0190f5a0-0000-7000-8000-00000000f0a2";

/// The people of the world, by the index an input names: liaison of `FZ-V`, supervisor of
/// `FZ-T`, county reviewer of `FZ-B`, administrator.
fn people() -> Vec<Person> {
    let base = gridsync_tests::fuzz_people();
    let person = |id: &str, role, grid: &str| Person {
        id: id.into(),
        name: id.into(),
        phone: "13900000009".into(),
        role,
        grids: vec![grid.into()],
    };
    vec![
        base[1].clone(),
        person("fz-sup", Role::Supervisor, "FZ-T"),
        person("fz-cty", Role::CountyReviewer, "FZ-B"),
        base[0].clone(),
    ]
}

fn device_of(person: &str) -> String {
    format!("fz-dev-{person}")
}

struct World {
    storage: Arc<SqliteStorage>,
    people: Vec<Person>,
    scopes: Vec<Scope>,
    producer: Record,
    visit: Record,
    fingerprint: String,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("gridsync-fuzz-judge")
            .tempdir()
            .expect("fuzz dir");
        let storage = Arc::new(SqliteStorage::open(dir.path().join("server.db")).expect("storage"));
        let nodes = gridsync_tests::fuzz_grids();
        storage.import_grids(&nodes).expect("grids");
        let people = people();
        for p in &people {
            gridsync_server::admin::add_person(storage.as_ref(), p).expect("person");
        }
        let tree = Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes));
        let scopes: Vec<Scope> = people
            .iter()
            .map(|p| Scope::compute(&nodes, &people, p, tree.clone()))
            .collect();
        let (p, v) = gridsync_tests::fuzz_records();
        let fingerprint = p.directory_fingerprint();
        let (producer, visit) = (Record::Producer(p), Record::Visit(v));
        let admin = &people[3];
        let pushes: Vec<PushRecord> = [&producer, &visit]
            .iter()
            .map(|r| {
                let mut d =
                    RecordDoc::create(r, &gridsync_core::device_actor(SEED_DEVICE), &admin.id, T)
                        .expect("create");
                PushRecord {
                    id: r.id().to_string(),
                    kind: r.kind().tag(),
                    changes: d.save(),
                    heads: d.heads().iter().map(|h| h.0).collect(),
                }
            })
            .collect();
        let author = gridsync_server::storage::Author {
            person_id: admin.id.clone(),
            device_id: None,
        };
        let mut ctx = PushContext::new(storage.as_ref(), &scopes[3], SEED_DEVICE);
        let results = storage
            .apply_push(&author, &pushes, &mut |stored, p| {
                decide(&mut ctx, stored, p)
            })
            .expect("seed records");
        assert!(
            results
                .iter()
                .all(|r| r.outcome == gridsync_core::sync::protocol::PushOutcome::Accepted),
            "{results:?}"
        );
        World {
            storage,
            people,
            scopes,
            producer,
            visit,
            fingerprint,
            _dir: dir,
        }
    }
}

thread_local! {
    static WORLD: World = World::new();
}

/// Reads the input byte by byte; past its end every read is 0.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn pick<'t, T>(&mut self, table: &'t [T]) -> &'t T {
        &table[self.byte() as usize % table.len()]
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

const PATHS: &[&str] = &[
    // producer
    "review.state",
    "review.approved_fingerprint",
    "review.return_reason",
    "review.history[0].by",
    "review.history[0].state_after",
    "review.history[0].action.action",
    "created_by",
    "grid",
    "name",
    "address",
    "phone",
    "status",
    "risk",
    "products[0]",
    "scale.crop_area_mu",
    "created_at_ms",
    // visit
    "status",
    "inspector",
    "ended_at_ms",
    "review.by",
    "review.comment",
    "findings[0].recorded_by",
    "findings[0].description",
    "rapid_tests[0].operator",
    "answers.drug_use.value.value",
    "answers.drug_use.value.type",
    "producer_id",
    "follow_up_visit",
    "rectification.resolved_at_ms",
    "template_version",
    // both, and keys the model does not know
    "updated_at_ms",
    "zz_unknown",
    "review.zz",
    "findings[0].zz",
];

fn values(fingerprint: &str) -> Vec<ScalarValue> {
    let s = |v: &str| ScalarValue::Str(v.into());
    vec![
        s("fz-lia"),
        s("fz-sup"),
        s("fz-cty"),
        s("fz-admin"),
        s("county_approved"),
        s("township_approved"),
        s("submitted"),
        s("draft"),
        s("returned"),
        s("completed"),
        s("approve_county"),
        s("FZ-V"),
        s("FZ-T"),
        s("FZ-X"),
        s("yes"),
        s("no"),
        s(""),
        s(fingerprint),
        ScalarValue::Int(T),
        ScalarValue::Int(T + 3_600_000),
        ScalarValue::Int(0),
        ScalarValue::Int(-1),
        ScalarValue::Uint(u64::MAX),
        ScalarValue::F64(1.5),
        ScalarValue::Null,
        ScalarValue::Boolean(true),
    ]
}

/// The object holding the last part of `path` and that part as a property.
fn resolve(doc: &AutoCommit, path: &str) -> Option<(ObjId, Prop)> {
    let mut obj = automerge::ROOT;
    let parts: Vec<&str> = path.split('.').collect();
    let (last, init) = parts.split_last()?;
    let split = |part: &str| -> (String, Option<usize>) {
        match part.find('[') {
            Some(i) => (
                part[..i].to_string(),
                part[i + 1..].strip_suffix(']').and_then(|n| n.parse().ok()),
            ),
            None => (part.to_string(), None),
        }
    };
    for part in init {
        let (name, index) = split(part);
        obj = match doc.get(&obj, name.as_str()).ok()?? {
            (automerge::Value::Object(_), id) => id,
            _ => return None,
        };
        if let Some(i) = index {
            obj = match doc.get(&obj, i).ok()?? {
                (automerge::Value::Object(_), id) => id,
                _ => return None,
            };
        }
    }
    let (name, index) = split(last);
    match index {
        None => Some((obj, Prop::Map(name))),
        Some(i) => match doc.get(&obj, name.as_str()).ok()?? {
            (automerge::Value::Object(_), id) => Some((id, Prop::Seq(i))),
            _ => None,
        },
    }
}

/// A typed edit of the record by `by`, as an app (honest or not) would make it.
fn typed_edit(rec: &mut Record, what: u8, by: &str, other: &str, fingerprint: &str, n: i64) {
    let at = T + n * 60_000;
    match rec {
        Record::Producer(p) => {
            let step = |p: &mut gridsync_core::model::Producer, action, state| {
                p.review.state = state;
                p.review.history.push(ReviewEvent {
                    id: format!("e{n}"),
                    action,
                    by: by.into(),
                    at_ms: at,
                    state_after: state,
                });
            };
            match what % 12 {
                0 => step(p, ReviewAction::Submit, ReviewState::Submitted),
                1 => {
                    p.review.approved_fingerprint = Some(p.directory_fingerprint());
                    step(
                        p,
                        ReviewAction::ApproveTownship,
                        ReviewState::TownshipApproved,
                    )
                }
                2 => {
                    p.review.approved_fingerprint = Some(p.directory_fingerprint());
                    step(p, ReviewAction::ApproveCounty, ReviewState::CountyApproved)
                }
                3 => {
                    p.review.return_reason = Some("资料不全".into());
                    step(
                        p,
                        ReviewAction::Return("资料不全".into()),
                        ReviewState::Returned,
                    )
                }
                4 => p.address = format!("新地址{n}"),
                5 => p.products.push(format!("产品{n}")),
                6 => p.created_by = other.into(),
                7 => p.grid = "FZ-T".into(),
                8 => p.status = gridsync_core::model::ProducerStatus::Closed,
                9 => p.review.approved_fingerprint = Some(fingerprint.into()),
                10 => p.review.history.clear(),
                _ => p.updated_at_ms = at,
            }
            p.updated_at_ms = at;
        }
        Record::Visit(v) => {
            match what % 12 {
                0 => v.findings.push(Finding {
                    id: format!("f{n}"),
                    item_id: Some("drug_use".into()),
                    description: "兽药混放".into(),
                    severity: Severity::Minor,
                    photos: vec![],
                    recorded_by: by.into(),
                    recorded_at_ms: at,
                }),
                1 => {
                    v.status = VisitStatus::Completed;
                    v.ended_at_ms = Some(at);
                }
                2 => {
                    v.review = Some(VisitReview {
                        by: by.into(),
                        at_ms: at,
                        comment: "已审".into(),
                    })
                }
                3 => {
                    v.answers.insert(
                        "drug_use".into(),
                        gridsync_core::model::Answer {
                            value: gridsync_core::model::AnswerValue::YesNo(
                                gridsync_core::model::YesNoNa::No,
                            ),
                            note: None,
                        },
                    );
                }
                4 => v.inspector = other.into(),
                5 => v.rapid_tests.push(RapidTest {
                    id: format!("t{n}"),
                    sample: "菠菜".into(),
                    item: "有机磷".into(),
                    method: TestMethod::EnzymeInhibition,
                    kit: "速测卡".into(),
                    value: Some(12.0),
                    unit: Some("%".into()),
                    verdict: Verdict::Pass,
                    operator: other.into(),
                    tested_at_ms: at,
                }),
                6 => {
                    v.rectification = Some(Rectification {
                        required: true,
                        deadline: "2026-02-01".into(),
                        notice_number: format!("ZG-{n}"),
                        resolved_at_ms: None,
                    })
                }
                7 => {
                    if let Some(r) = v.rectification.as_mut() {
                        r.resolved_at_ms = Some(at);
                    }
                }
                8 => v.follow_up_visit = Some(NEW_VISIT.into()),
                9 => {
                    if let Some(f) = v.findings.first_mut() {
                        f.recorded_by = other.into();
                    }
                }
                10 => v.findings.clear(),
                _ => v.grid = "FZ-T".into(),
            }
            v.updated_at_ms = at;
        }
        Record::Template(_) | Record::Acceptance(_) => {}
    }
}

/// Runs one input (see the module documentation). Never panics on any input unless
/// `decide` accepted what it must not.
pub fn fuzz_judge(data: &[u8]) {
    WORLD.with(|w| run(w, data));
}

fn run(w: &World, data: &[u8]) {
    let mut input = Input { data, at: 0 };
    let who = input.byte() as usize % w.people.len();
    let pusher = &w.people[who];
    let own_actor = gridsync_core::device_actor(&device_of(&pusher.id));
    let target = input.byte() % 4;
    let stored_id = match target {
        0 => Some(w.producer.id()),
        1 => Some(w.visit.id()),
        _ => None,
    };
    let stored = stored_id.and_then(|id| w.storage.record(id).ok().flatten());
    let stored_rec = match target {
        0 => Some(w.producer.clone()),
        1 => Some(w.visit.clone()),
        _ => None,
    };
    let mut cur = match &stored {
        Some(s) => RecordDoc::load(&s.doc, &[]).expect("stored document loads"),
        None => {
            let mut rec = if target == 2 {
                w.producer.clone()
            } else {
                w.visit.clone()
            };
            match &mut rec {
                Record::Producer(p) => {
                    p.id = NEW_PRODUCER.into();
                    p.created_by = pusher.id.clone();
                }
                Record::Visit(v) => {
                    v.id = NEW_VISIT.into();
                    v.inspector = pusher.id.clone();
                }
                Record::Template(_) | Record::Acceptance(_) => {}
            }
            RecordDoc::create(&rec, &own_actor, &pusher.id, T).expect("create")
        }
    };
    cur.set_actor(&own_actor);
    let base_heads = match &stored {
        Some(_) => cur.heads(),
        None => Vec::new(),
    };
    let values = values(&w.fingerprint);
    let mut seen_heads: Vec<Vec<ChangeHash>> = vec![cur.heads()];
    let mut branches: Vec<AutoCommit> = Vec::new();
    let mut message = pusher.id.clone();
    let mut n = 0i64;
    let mut ops = 0;
    while !input.done() && ops < 64 {
        ops += 1;
        n += 1;
        match input.byte() % 8 {
            0 => {
                let path = *input.pick(PATHS);
                let value = input.pick(&values).clone();
                if let Some((obj, prop)) = resolve(cur.inner(), path) {
                    let _ = cur.inner().put(&obj, prop, value);
                }
            }
            1 => {
                let what = input.byte();
                let other = &input.pick(&w.people).id;
                if let Ok(mut rec) = cur.read() {
                    typed_edit(&mut rec, what, &pusher.id, other, &w.fingerprint, n);
                    let _ = cur.update(&rec, &message, T + n * 60_000);
                    seen_heads.push(cur.heads());
                }
            }
            2 => {
                message = match input.byte() % 6 {
                    0 => input.pick(&w.people).id.clone(),
                    1 => String::new(),
                    _ => pusher.id.clone(),
                };
                cur.inner().commit_with(
                    CommitOptions::default()
                        .with_message(message.clone())
                        .with_time(T + n * 60_000),
                );
                seen_heads.push(cur.heads());
            }
            3 => {
                let actor = match input.byte() % 4 {
                    0 | 1 => own_actor.clone(),
                    2 => gridsync_core::device_actor(&device_of(&input.pick(&w.people).id)),
                    _ => ActorId::from(input.bytes(16)),
                };
                cur.set_actor(&actor);
            }
            4 => {
                // A branch from earlier heads: what is done next is concurrent with what
                // was done since (merged back before pushing).
                let heads = input.pick(&seen_heads).clone();
                cur.inner().commit();
                if let Ok(mut fork) = cur.fork_at(&heads) {
                    // The device's own actor on two branches repeats sequence numbers
                    // (Automerge refuses the merge); another actor is not the device's.
                    if input.byte().is_multiple_of(2) {
                        fork.set_actor(&own_actor);
                    } else {
                        fork.set_actor(&ActorId::from(input.bytes(4)));
                    }
                    let mut old = std::mem::replace(&mut cur, fork);
                    branches.push(std::mem::take(old.inner()));
                }
            }
            5 => {
                let path = *input.pick(PATHS);
                let size = input.byte() as usize;
                if let Some((obj, prop)) = resolve(cur.inner(), path) {
                    let doc = cur.inner();
                    if size.is_multiple_of(2) {
                        if let Ok(mut at) = doc.put_object(&obj, prop, ObjType::Map) {
                            for _ in 0..size / 8 {
                                match doc.put_object(&at, "x", ObjType::Map) {
                                    Ok(next) => at = next,
                                    Err(_) => break,
                                }
                            }
                        }
                    } else if let Ok(list) = doc.put_object(&obj, prop, ObjType::List) {
                        // Short lists, or one just past the reading limit (longer ones only
                        // cost time: the server refuses them on their length alone).
                        let len = if size >= 250 {
                            gridsync_core::doc::MAX_LIST_LEN + 1
                        } else {
                            (size % 32) * 20
                        };
                        for i in 0..len {
                            if doc.insert(&list, i, i as i64).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            6 => {
                let path = *input.pick(PATHS);
                if let Some((obj, prop)) = resolve(cur.inner(), path) {
                    let _ = cur.inner().delete(&obj, prop);
                }
            }
            _ => {
                // A map where the model has a scalar, or a visit review written by hand.
                let path = *input.pick(PATHS);
                let value = input.pick(&values).clone();
                let doc = cur.inner();
                if let Some((obj, prop)) = resolve(doc, path) {
                    if let Ok(m) = doc.put_object(&obj, prop, ObjType::Map) {
                        let _ = doc.put(&m, "by", value.clone());
                        let _ = doc.put(&m, "at_ms", T);
                        let _ = doc.put(&m, "comment", value);
                    }
                }
            }
        }
    }
    cur.inner().commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(T + (n + 1) * 60_000),
    );
    for mut b in branches {
        let _ = cur.inner().merge(&mut b);
    }
    // (Past the input's end this is 0: the heads of what was made.)
    let heads = match input.byte() % 8 {
        6 => input.pick(&seen_heads).clone(),
        7 => Vec::new(),
        _ => cur.heads(),
    };
    let push = PushRecord {
        id: stored_id
            .unwrap_or(if target == 2 { NEW_PRODUCER } else { NEW_VISIT })
            .to_string(),
        kind: if target.is_multiple_of(2) { 1 } else { 2 },
        changes: if stored.is_some() {
            cur.save_after(&base_heads)
        } else {
            cur.save()
        },
        heads: heads.iter().map(|h| h.0).collect(),
    };
    let mut ctx = PushContext::new(w.storage.as_ref(), &w.scopes[who], &device_of(&pusher.id));
    let started = std::time::Instant::now();
    let decision = decide(&mut ctx, stored.as_ref(), &push);
    if std::env::var_os("GRIDSYNC_JUDGE_VERBOSE").is_some() {
        eprintln!(
            "judge: {} bytes of changes decided in {:?}",
            push.changes.len(),
            started.elapsed()
        );
        let what = match &decision {
            PushDecision::Store { .. } => "stored".to_string(),
            PushDecision::Reject(code, reason) => format!("{code:?}: {reason}"),
            other => format!("{other:?}"),
        };
        eprintln!("judge: {} pushes {}: {what}", pusher.id, push.id);
    }
    let PushDecision::Store { doc, .. } = decision else {
        return;
    };
    // What was accepted must be a record that loads, reads and validates ...
    let d = RecordDoc::load(&doc, &[]).expect("an accepted document loads");
    let rec = d.read().expect("an accepted document reads");
    gridsync_core::validate::validate_record(&rec).expect("an accepted record validates");
    // ... and a liaison cannot approve, review or take over another's authorship.
    if pusher.role == Role::Liaison {
        match (&rec, &stored_rec) {
            (Record::Producer(p), before) => {
                assert!(
                    !p.review.state.is_approved(),
                    "a liaison's push left a producer {:?}",
                    p.review.state
                );
                if let Some(Record::Producer(b)) = before {
                    assert_eq!(p.created_by, b.created_by, "a liaison changed created_by");
                }
            }
            (Record::Visit(v), before) => {
                assert!(v.review.is_none(), "a liaison's push added a review");
                if let Some(Record::Visit(b)) = before {
                    assert_eq!(v.inspector, b.inspector, "a liaison changed the inspector");
                }
            }
            _ => {}
        }
    }
}

/// Seed inputs: honest edits by each role, and the class-1 attacks written by hand.
pub fn judge_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // liaison edits the stored producer's address (typed edit 4), commits
        ("liaison-edit-producer", vec![0, 0, 1, 4, 0, 2, 2]),
        // liaison submits the stored producer
        ("liaison-submit-producer", vec![0, 0, 1, 0, 0]),
        // liaison adds a finding to the stored visit, then completes it
        (
            "liaison-finding-complete",
            vec![0, 1, 1, 0, 0, 1, 3, 0, 1, 1, 0],
        ),
        // supervisor submits then approves the producer (two offline steps)
        ("supervisor-two-steps", vec![1, 0, 1, 0, 0, 1, 1, 0]),
        // county approves the producer directly
        ("county-approve", vec![2, 0, 1, 2, 0]),
        // liaison writes review.state = county_approved by hand and commits
        ("liaison-raw-approve", vec![0, 0, 0, 0, 4, 2, 2]),
        // liaison approves through a typed edit signed with another device's actor
        ("liaison-foreign-actor", vec![0, 0, 3, 2, 1, 1, 2, 0]),
        // liaison on a branch from the first heads, concurrent with a submit
        ("liaison-branch", vec![0, 0, 1, 0, 0, 4, 0, 0, 1, 2, 0]),
        // a new producer and a new visit by the liaison
        ("liaison-new-producer", vec![0, 2, 1, 4, 0]),
        ("liaison-new-visit", vec![0, 3, 1, 0, 0]),
        // an unknown key and nested maps
        ("liaison-unknown-key", vec![0, 0, 0, 31, 0, 2, 2]),
        ("liaison-nested", vec![0, 0, 5, 9, 200, 2, 2]),
        // a long list
        ("liaison-long-list", vec![0, 0, 5, 13, 101, 2, 2]),
        // pushed heads that are the stored ones (class 1): ops end with a short `4` fork
        // whose heads byte is read as the pushed-heads choice 6, then index 0
        ("liaison-old-heads", vec![0, 0, 0, 0, 4, 2, 2, 6, 0]),
    ]
}
