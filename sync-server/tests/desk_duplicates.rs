//! Possible duplicates (疑似重复) at the desk, against a real server on loopback with a real
//! SQLite file: the marks the server writes after a push (here: the admin's seed, then the
//! server's bookkeeping `duplicates::settle`, as the sync path runs it after every push)
//! appear on the list, the producer pages and the dashboard; a supervisor or county
//! reviewer resolves them ("not a duplicate", "duplicate of": a tombstone) as Automerge
//! changes judged like a phone's push; a tombstone leaves the directory's counts and its
//! visits show on the surviving entry; an edit of the tombstone from a phone that had not
//! seen the merge, left as a conflict, is settled from the desk; stale forms get 409, a
//! session that lost its desk role gets 403 with nothing stored.
//!
//! The desk harness runs on SQLite only (as every desk test); the storage queries these
//! pages use are shared SQL run on PostgreSQL by the storage conformance suite.

#![allow(clippy::unwrap_used)]

mod desk_support;
use desk_support::*;

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{default_template, DuplicateOutcome, Visit};
use gridsync_core::sync::protocol::{PushOutcome, PushRecord};
use gridsync_server::duplicates::{settle, GridNodes, Settled};
use gridsync_server::storage::{Author, Device, EnrolCode};

const DAY_MS: i64 = 86_400_000;

fn credit_code(serial: u32) -> String {
    let first = format!("93152522MA{serial:07}");
    let check = gridsync_core::validate::uscc_check_char(&first).unwrap();
    format!("{first}{check}")
}

/// A producer with a credit code and its own phone (no ID number: the harness's producers
/// share one, and must not match these).
fn entry(id: &str, name: &str, owner: &str, grid: &str, code: u32, phone: &str) -> Record {
    let Record::Producer(mut p) = producer(id, name, owner, grid) else {
        unreachable!()
    };
    p.id_number = None;
    p.credit_code = Some(credit_code(code));
    p.phone = phone.into();
    Record::Producer(p)
}

fn seed(s: &Server, records: &[Record]) {
    let adm = s.storage().person("adm").unwrap().unwrap();
    gridsync_server::admin::seed_records(s.storage(), &adm, records).unwrap();
}

/// The server's bookkeeping for `ids`, as after a push.
fn settle_ids(s: &Server, ids: &[&str]) -> Settled {
    let nodes = GridNodes::load(s.storage()).unwrap();
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    settle(s.storage(), &nodes, &ids)
}

fn stored(s: &Server, id: &str) -> Producer {
    let rec = s.storage().record(id).unwrap().unwrap();
    let Record::Producer(p) = RecordDoc::load(&rec.doc, &[]).unwrap().read().unwrap() else {
        panic!("{id} is not a producer")
    };
    p
}

/// The stored document (unchanged when nothing was written).
fn heads(s: &Server, id: &str) -> Vec<u8> {
    s.storage().record(id).unwrap().unwrap().doc
}

/// A form of class `class` in the page's element marked `marker`: (action, fields).
fn form(page: &Resp, marker: &str, class: &str) -> Option<(String, Vec<(String, String)>)> {
    let at = page.body.find(marker)?;
    let row = &page.body[at..];
    let row = &row[..row.find("</tr>").unwrap()];
    let form_at = row.find(&format!("<form class=\"{class}\""))?;
    let form = &row[form_at..];
    let form = &form[..form.find("</form>").unwrap()];
    let action = form
        .split("action=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    let fields = form
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|f| {
            let name = f.split('"').next().unwrap().to_string();
            let value = f
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (name, value.to_string())
        })
        .collect();
    Some((action, fields))
}

fn post_form(b: &mut Browser, f: &(String, Vec<(String, String)>)) -> Resp {
    let fields: Vec<(&str, &str)> = f.1.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post(&f.0, &fields)
}

/// The number in the element with `id`.
fn figure(page: &Resp, id: &str) -> i64 {
    let at = page
        .body
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no {id} in {}", page.body));
    let rest = &page.body[at + id.len() + 6..];
    rest[..rest.find('<').unwrap()].trim().parse().unwrap()
}

fn visit(id: &str, producer_id: &str, grid: &str, started_ms: i64) -> Visit {
    let mut v = Visit::new(
        producer_id,
        grid,
        "liai",
        &default_template("B"),
        started_ms,
    );
    v.id = id.into();
    v
}

/// Registers a device of `person_id` through an enrolment code.
fn register_device(s: &Server, person_id: &str, device_id: &str) {
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
        name: "乌日娜的手机".into(),
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

/// Pushes an edit made on the document `doc_bytes` (a phone's copy, perhaps older than
/// the server's) as `person_id` from `device_id`, judged as the sync path judges it.
fn push_edit_from(
    s: &Server,
    person_id: &str,
    device_id: &str,
    doc_bytes: &[u8],
    edit: impl FnOnce(&mut Producer),
) {
    let st = s.storage();
    let mut doc = RecordDoc::load(doc_bytes, &[]).unwrap();
    let before = doc.heads();
    doc.set_actor(&gridsync_core::device_actor(device_id));
    let Record::Producer(mut p) = doc.read().unwrap() else {
        panic!("not a producer")
    };
    let id = p.id.clone();
    edit(&mut p);
    let at_ms = gridsync_core::now_ms();
    p.updated_at_ms = at_ms;
    assert!(doc.update(&Record::Producer(p), person_id, at_ms).unwrap());
    let push = PushRecord {
        id,
        kind: gridsync_core::model::RecordKind::Producer.tag(),
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

/// Two entries of one cooperative registered by two liaisons: the same credit code.
fn seed_pair(s: &Server) {
    seed(
        s,
        &[
            entry("D1", "额尔敦家庭牧场", "阿拉坦", "T1-V1", 1, "13900000001"),
            entry("D2", "额尔敦养殖场", "巴图", "T1-V1", 1, "13900000002"),
        ],
    );
    let done = settle_ids(s, &["D1", "D2"]);
    assert_eq!(done.marked, 1, "{done:?}");
}

#[test]
fn marks_are_listed_and_not_a_duplicate_closes_both_for_good() {
    let s = start(|_, _| {});
    seed_pair(&s);
    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);

    // The list: the pair once, both names and grids, the reason in Chinese, links.
    let list = sup.get("/desk/duplicates");
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("href=\"/desk/duplicates\">疑似重复</a>"),
        "nav link"
    );
    assert_eq!(list.body.matches("data-a=\"D1\" data-b=\"D2\"").count(), 1);
    assert_eq!(figure(&list, "duplicate-total"), 1);
    for text in [
        "额尔敦家庭牧场",
        "额尔敦养殖场",
        "网格T1-V1（T1-V1）",
        "统一社会信用代码相同",
        "/desk/producers/D1",
        "/desk/producers/D2",
    ] {
        assert!(list.body.contains(text), "{text} in {}", list.body);
    }
    // Filtered by grid: T1 holds it, T2 (outside the supervisor's scope) is not found.
    let t1 = sup.get("/desk/duplicates?grid=T1");
    assert!(t1.body.contains("data-a=\"D1\""));
    assert_eq!(
        sup.get("/desk/duplicates?grid=T2").status,
        StatusCode::NOT_FOUND
    );
    // The dashboard's figure.
    let dash = sup.get("/desk/dashboard");
    assert_eq!(dash.status, StatusCode::OK);
    assert_eq!(figure(&dash, "open-duplicates"), 1);
    assert!(dash.body.contains("data-grid=\"T1-V1\""));

    // Both producer pages show the open mark with both forms.
    let page = sup.get("/desk/producers/D2");
    assert!(page
        .body
        .contains("data-other=\"D1\" data-outcome=\"open\""));
    let page = sup.get("/desk/producers/D1");
    assert!(page
        .body
        .contains("data-other=\"D2\" data-outcome=\"open\""));
    assert!(form(&page, "data-other=\"D2\"", "merge").is_some());
    let not_dup = form(&page, "data-other=\"D2\"", "not-duplicate").unwrap();
    let r = post_form(&mut sup, &not_dup);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/desk/producers/D1"));

    // Both marks closed: D1's by the supervisor's change, D2's mirrored by the server.
    let d1 = stored(&s, "D1");
    let r1 = d1.duplicates[0].resolution.as_ref().unwrap();
    assert_eq!(
        (r1.outcome, r1.by.as_str()),
        (DuplicateOutcome::NotDuplicate, "sup1")
    );
    let d2 = stored(&s, "D2");
    let r2 = d2.duplicates[0].resolution.as_ref().unwrap();
    assert_eq!(
        (r2.outcome, r2.by.as_str()),
        (DuplicateOutcome::NotDuplicate, "sup1")
    );
    assert!(d1.merged_into.is_none() && d2.merged_into.is_none());
    assert!(s.actions("sup1").contains(&"desk_duplicate".to_string()));

    // The list empties; the pages show who decided, without forms.
    let list = sup.get("/desk/duplicates");
    assert!(list.body.contains("id=\"no-duplicates\""), "{}", list.body);
    assert_eq!(figure(&list, "duplicate-total"), 0);
    assert_eq!(figure(&sup.get("/desk/dashboard"), "open-duplicates"), 0);
    let page = sup.get("/desk/producers/D2");
    assert!(page
        .body
        .contains("data-other=\"D1\" data-outcome=\"not_duplicate\""));
    assert!(page.body.contains("不是重复（王丽，"), "{}", page.body);
    assert!(form(&page, "data-other=\"D1\"", "not-duplicate").is_none());

    // The same form again (a stale page): 409, nothing written.
    let before = heads(&s, "D1");
    let r = post_form(&mut sup, &not_dup);
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(heads(&s, "D1"), before);
    assert!(s
        .actions("sup1")
        .contains(&"desk_duplicate_refused".to_string()));

    // Another edit of either entry: the pair is not marked again.
    register_device(&s, "liai", "dev-liai");
    let doc = s.storage().record("D2").unwrap().unwrap().doc;
    push_edit_from(&s, "liai", "dev-liai", &doc, |p| {
        p.owner = "巴图孟和".into()
    });
    let done = settle_ids(&s, &["D2", "D1"]);
    assert_eq!(done.marked, 0, "{done:?}");
    assert_eq!(stored(&s, "D2").duplicates.len(), 1);
    assert_eq!(stored(&s, "D2").open_duplicates().count(), 0);
    assert!(sup
        .get("/desk/duplicates")
        .body
        .contains("id=\"no-duplicates\""));
}

#[test]
fn duplicate_of_makes_a_tombstone_whose_visits_count_for_the_surviving_entry() {
    let s = start(|_, _| {});
    seed_pair(&s);
    let started = gridsync_core::now_ms() - DAY_MS;
    seed(&s, &[Record::Visit(visit("V1", "D1", "T1-V1", started))]);
    let mut cty = Browser::new(&s);
    cty.sign_in("bater", CTY_PASSWORD);
    let dash = cty.get("/desk/dashboard");
    let producers_before = figure(&dash, "sum-producers");
    let never_before = figure(&dash, "never-count");
    let directory = cty.get("/desk/directory");
    assert!(directory.body.contains("data-id=\"D1\""));

    // The county reviewer: D1 is a duplicate of D2.
    let page = cty.get("/desk/producers/D1");
    let merge = form(&page, "data-other=\"D2\"", "merge").unwrap();
    let r = post_form(&mut cty, &merge);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // Stored: D1 a tombstone pointing to D2; D2's mark says D1 was merged here.
    let d1 = stored(&s, "D1");
    let t = d1.merged_into.as_ref().unwrap();
    assert_eq!((t.into.as_str(), t.by.as_str()), ("D2", "cty"));
    assert_eq!(
        d1.duplicates[0].resolution.as_ref().unwrap().outcome,
        DuplicateOutcome::MergedIntoOther
    );
    let d2 = stored(&s, "D2");
    assert_eq!(
        d2.duplicates[0].resolution.as_ref().unwrap().outcome,
        DuplicateOutcome::OtherMergedHere
    );
    // Nothing rewritten: the visit still names D1.
    assert_eq!(
        s.storage()
            .producer_visits("D1", gridsync_server::storage::PageReq::first(10))
            .unwrap()
            .rows
            .len(),
        1
    );

    // The tombstone's page: the banner linking to D2, no forms of any kind.
    let page = cty.get("/desk/producers/D1");
    assert!(page.body.contains("id=\"merged-banner\""), "{}", page.body);
    assert!(page
        .body
        .contains("已并入 <a href=\"/desk/producers/D2\">额尔敦养殖场</a>"));
    assert!(!page.body.contains("<form class=\"merge\""));
    assert!(!page.body.contains("<form class=\"not-duplicate\""));
    assert!(!page.body.contains("/desk/reviews/D1/"));

    // The surviving entry: the outcome, the entry merged into it and its visit.
    let page = cty.get("/desk/producers/D2");
    assert!(page
        .body
        .contains("data-other=\"D1\" data-outcome=\"other_merged_here\""));
    assert!(page.body.contains("对方已并入本条"));
    let merged = &page.body[page.body.find("id=\"merged-entries\"").unwrap()..];
    assert!(merged[..merged.find("</ul>").unwrap()].contains("data-id=\"D1\""));
    let visits = &page.body[page.body.find("id=\"producer-visits\"").unwrap()..];
    let visits = &visits[..visits.find("</table>").unwrap()];
    assert!(visits.contains("data-id=\"V1\""), "{visits}");
    assert!(visits.contains("额尔敦家庭牧场（已并入本条）"));
    // Its last visit is the tombstone's (D2 had none of its own).
    assert!(!page.body.contains("<dt>最近巡查</dt><dd>尚无</dd>"));

    // Figures: one producer fewer; the tombstone's visit covers D2 (D2 had none), and the
    // visit still counts as a visit.
    let dash = cty.get("/desk/dashboard");
    assert_eq!(figure(&dash, "sum-producers"), producers_before - 1);
    assert_eq!(figure(&dash, "never-count"), never_before - 1);
    assert_eq!(figure(&dash, "sum-visits"), 1);
    assert_eq!(figure(&dash, "open-duplicates"), 0);
    // Not in the directory nor the review queue.
    let directory = cty.get("/desk/directory");
    assert!(!directory.body.contains("data-id=\"D1\""));
    assert!(directory.body.contains("data-id=\"D2\""));
    // Only with the explicit filter 已合并.
    let merged = cty.get("/desk/directory?merged=1");
    assert!(merged.body.contains("id=\"merged-only\""));
    assert!(merged.body.contains("data-id=\"D1\""));
    assert!(!merged.body.contains("data-id=\"D2\""));
    assert_eq!(
        cty.get("/desk/directory?merged=yes").status,
        StatusCode::BAD_REQUEST
    );
    let queue = cty.get("/desk/reviews");
    assert!(!queue.body.contains("data-id=\"D1\""));
}

#[test]
fn a_session_without_the_role_gets_403_and_nothing_is_stored() {
    let s = start(|_, _| {});
    seed_pair(&s);
    // A liaison has no desk session at all: signing in is refused.
    gridsync_server::admin::set_desk_password(s.storage(), "liai", "wurina", LINK_PASSWORD, "test")
        .ok();
    let mut liaison = Browser::new(&s);
    let r = liaison.sign_in("wurina", LINK_PASSWORD);
    assert!(
        !liaison.cookies.contains_key("gridsync_desk"),
        "{:?}",
        r.status
    );

    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let page = sup.get("/desk/producers/D1");
    let merge = form(&page, "data-other=\"D2\"", "merge").unwrap();
    // The supervisor becomes a liaison: the session carries no desk role any more, and the
    // form it holds is refused with nothing stored.
    s.storage()
        .upsert_person(&person("sup1", "王丽", Role::Liaison, &["T1-V1"]))
        .unwrap();
    let before = (heads(&s, "D1"), heads(&s, "D2"));
    let r = post_form(&mut sup, &merge);
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!((heads(&s, "D1"), heads(&s, "D2")), before);
    assert!(stored(&s, "D1").merged_into.is_none());
    // A crafted form without the session's CSRF token: 403 as well.
    let mut cty = Browser::new(&s);
    cty.sign_in("bater", CTY_PASSWORD);
    let r = cty.post(
        "/desk/producers/D1/duplicates",
        &[
            ("csrf", "forged"),
            ("other", "D2"),
            ("outcome", "merge"),
            ("state", "open"),
        ],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!((heads(&s, "D1"), heads(&s, "D2")), before);
    // An entry outside the scope answers as missing: the supervisor of T1 and T2's entry.
    seed(
        &s,
        &[
            entry("E1", "巴彦合作社", "巴彦", "T2-V1", 2, "13900000003"),
            entry("E2", "巴彦乳业", "巴彦", "T2-V1", 2, "13900000004"),
        ],
    );
    settle_ids(&s, &["E1"]);
    s.storage()
        .upsert_person(&person("sup1", "王丽", Role::Supervisor, &["T1"]))
        .unwrap();
    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let csrf = sup.get("/desk/duplicates").csrf();
    let r = sup.post(
        "/desk/producers/E1/duplicates",
        &[
            ("csrf", &csrf),
            ("other", "E2"),
            ("outcome", "merge"),
            ("state", "open"),
        ],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(stored(&s, "E1").merged_into.is_none());
}

#[test]
fn an_edit_of_the_tombstone_left_as_a_conflict_is_settled_at_the_desk() {
    let s = start(|_, _| {});
    seed_pair(&s);
    register_device(&s, "liai", "dev-liai");
    // The liaison's phone holds D1 as it was before the merge.
    let phone_copy = s.storage().record("D1").unwrap().unwrap().doc;

    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let page = sup.get("/desk/producers/D1");
    let merge = form(&page, "data-other=\"D2\"", "merge").unwrap();
    assert_eq!(post_form(&mut sup, &merge).status, StatusCode::SEE_OTHER);
    assert!(stored(&s, "D1").merged_into.is_some());

    // Offline, the phone changes D1's owner; D2 holds another owner than D1 had: a
    // conflict left on D2 for a person.
    push_edit_from(&s, "liai", "dev-liai", &phone_copy, |p| {
        p.owner = "其木格".into()
    });
    let done = settle_ids(&s, &["D1"]);
    assert_eq!(done.conflicts, 1, "{done:?}");
    assert_eq!(stored(&s, "D2").owner, "巴图");

    let page = sup.get("/desk/producers/D2");
    let conflicts = &page.body[page.body.find("id=\"carried-conflicts\"").unwrap()..];
    assert!(conflicts.contains("其木格") && conflicts.contains("巴图"));
    let edit_id = stored(&s, "D2").carried_edits[0].id.clone();
    let take = form(&page, &format!("data-id=\"{edit_id}\""), "take").unwrap();
    assert!(form(&page, &format!("data-id=\"{edit_id}\""), "keep").is_some());
    let r = post_form(&mut sup, &take);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    let d2 = stored(&s, "D2");
    assert_eq!(d2.owner, "其木格");
    assert_eq!(d2.carried_edits[0].settled_by.as_deref(), Some("sup1"));
    assert!(s.actions("sup1").contains(&"desk_carried_edit".to_string()));
    // Listed as history now, no longer as an open conflict; the same form again is stale.
    let page = sup.get("/desk/producers/D2");
    assert!(!page.body.contains("id=\"carried-conflicts\""));
    assert!(page.body.contains("id=\"carried-edits\""));
    assert!(page.body.contains("冲突已由王丽确认"));
    let before = heads(&s, "D2");
    let r = post_form(&mut sup, &take);
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(heads(&s, "D2"), before);
}

// ---- The counts behind the pages, on both storage backends. ----

/// What the directory's figures read of a tombstone, on `storage`: it is no producer of
/// the directory (directory, tallies, not confirmed, scale counts), its visit still counts
/// as a visit and covers the surviving entry, and the surviving entry lists it.
fn tombstones_leave_the_counts(storage: &dyn Storage) {
    use gridsync_core::model::GridLevel;
    use gridsync_server::storage::{DirectoryFilter, PageReq, TallyQuery};
    storage
        .import_grids(&[
            node("B", GridLevel::Banner, None),
            node("T1", GridLevel::Township, Some("B")),
            node("T1-V1", GridLevel::Village, Some("T1")),
        ])
        .unwrap();
    let adm = person("adm", "管理员甲", Role::Admin, &[]);
    storage.upsert_person(&adm).unwrap();
    let now = gridsync_core::now_ms();
    gridsync_server::admin::seed_records(
        storage,
        &adm,
        &[
            producer("P1", "乌兰家庭牧场", "乌兰", "T1-V1"),
            entry("D1", "额尔敦家庭牧场", "阿拉坦", "T1-V1", 1, "13900000001"),
            entry("D2", "额尔敦养殖场", "巴图", "T1-V1", 1, "13900000002"),
            Record::Visit(visit("V1", "D1", "T1-V1", now - DAY_MS)),
        ],
    )
    .unwrap();
    let nodes = GridNodes::load(storage).unwrap();
    let done = settle(storage, &nodes, &["D1".into(), "D2".into()]);
    assert_eq!(done.marked, 1, "{done:?}");
    let grids = vec!["T1-V1".to_string()];
    let mut open = storage.open_duplicate_ids(&grids, 10).unwrap();
    open.sort();
    assert_eq!(open, ["D1", "D2"]);

    // D1 merged into D2 (the server's actor writes the decision here; the desk's own path
    // is tested above), then the bookkeeping mirrors it.
    assert!(
        gridsync_server::duplicates::server_write(storage, "D1", &mut |p| {
            gridsync_core::rules::resolve_duplicate(p, "D2", true, "adm", now).is_ok()
        })
        .unwrap()
    );
    settle(storage, &nodes, &["D1".into()]);
    assert!(storage.open_duplicate_ids(&grids, 10).unwrap().is_empty());
    let merged: Vec<String> = storage
        .merged_entries("D2")
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(merged, ["D1"]);
    assert!(storage.merged_entries("D1").unwrap().is_empty());

    let filter = DirectoryFilter {
        grids: grids.clone(),
        ..DirectoryFilter::default()
    };
    let mut listed: Vec<String> = storage
        .directory(&filter, PageReq::first(50))
        .unwrap()
        .rows
        .into_iter()
        .map(|r| r.id)
        .collect();
    listed.sort();
    assert_eq!(listed, ["D2", "P1"]);

    let t = storage
        .tallies(&TallyQuery {
            grids: grids.clone(),
            from_ms: now - 30 * DAY_MS,
            to_ms: now + DAY_MS,
            month_starts: Vec::new(),
            stale_before_ms: 0,
            coverage_at_ms: now,
            visits_until_ms: now + DAY_MS,
            interval_days: [90, 60, 30],
            today: String::new(),
            never_visited_limit: 10,
        })
        .unwrap();
    assert_eq!(t.directory.iter().map(|d| d.producers).sum::<i64>(), 2);
    let c = &t.coverage[0];
    assert_eq!((c.active, c.covered, c.never), (2, 1, 1), "{c:?}");
    let never: Vec<&str> = t.never_visited.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(never, ["P1"]);
    assert_eq!(t.visits.iter().map(|v| v.visits).sum::<i64>(), 1);

    let year = gridsync_core::dates::china_year(now);
    assert_eq!(
        storage.unconfirmed_counts(&grids, year).unwrap(),
        [("T1-V1".to_string(), 2)]
    );
    let scale = storage.scale_counts(&grids).unwrap();
    assert_eq!(scale["T1-V1"].producers, 2);
}

#[test]
fn tombstones_leave_the_counts_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage = gridsync_server::storage::open_storage(&StorageConfig::Sqlite {
        path: dir.path().join("gridsync.db"),
    })
    .unwrap();
    tombstones_leave_the_counts(storage.as_ref());
}

/// On PostgreSQL when `GRIDSYNC_TEST_POSTGRES` names a test database (CI sets it; without
/// it this test says so and checks nothing).
#[test]
fn tombstones_leave_the_counts_on_postgres() {
    let Some(url) = gridsync_server::storage::testing::test_url_from_env() else {
        return;
    };
    let schema = gridsync_server::storage::testing::ScratchSchema::new(&url).unwrap();
    let storage = schema.open().unwrap();
    tombstones_leave_the_counts(&storage);
}

#[test]
fn an_entry_is_not_merged_into_a_merged_entry() {
    let s = start(|_, _| {});
    seed(
        &s,
        &[
            entry("D1", "额尔敦家庭牧场", "阿拉坦", "T1-V1", 1, "13900000001"),
            entry("D2", "额尔敦养殖场", "巴图", "T1-V1", 1, "13900000002"),
            entry("D3", "额尔敦牧业", "巴特", "T1-V1", 1, "13900000003"),
        ],
    );
    let done = settle_ids(&s, &["D1", "D2", "D3"]);
    assert_eq!(done.marked, 3, "{done:?}");
    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    assert_eq!(figure(&sup.get("/desk/duplicates"), "duplicate-total"), 3);
    let page = sup.get("/desk/producers/D1");
    let merge = form(&page, "data-other=\"D2\"", "merge").unwrap();
    assert_eq!(post_form(&mut sup, &merge).status, StatusCode::SEE_OTHER);

    // D3's mark about D1 stays open; its page says where D1 went and offers no merge into
    // it, and a crafted one is refused naming why, with nothing stored.
    let page = sup.get("/desk/producers/D3");
    assert!(page
        .body
        .contains("该条目已并入 <a href=\"/desk/producers/D2\">"));
    assert!(form(&page, "data-other=\"D1\"", "merge").is_none());
    assert!(form(&page, "data-other=\"D1\"", "not-duplicate").is_some());
    assert!(form(&page, "data-other=\"D2\"", "merge").is_some());
    let before = heads(&s, "D3");
    let csrf = page.csrf();
    let r = sup.post(
        "/desk/producers/D3/duplicates",
        &[
            ("csrf", &csrf),
            ("other", "D1"),
            ("outcome", "merge"),
            ("state", "open"),
        ],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("D1 was itself merged into D2"),
        "{}",
        r.body
    );
    assert_eq!(heads(&s, "D3"), before);
    // Merged into the surviving entry instead: fine.
    let merge = form(&page, "data-other=\"D2\"", "merge").unwrap();
    assert_eq!(post_form(&mut sup, &merge).status, StatusCode::SEE_OTHER);
    let merged: Vec<String> = s
        .storage()
        .merged_entries("D2")
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(merged, ["D1", "D3"]);
}
