//! Who may see and change what: the endpoint × role × scope matrix, enrolment, revocation,
//! rotation, reassignment and audit, against a real server on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use gridsync_core::model::{
    default_template, ChecklistTemplate, Record, ReviewAction, ReviewState, Role, VisitStatus,
};
use gridsync_core::sync::protocol::{Cursor, ErrorCode, PushOutcome, RejectCode};
use gridsync_server::dataset::Dataset;
use gridsync_server::storage::AuditFilter;
use gridsync_tests::*;

struct World {
    _dir: tempfile::TempDir,
    server: TestServer,
    data: Dataset,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    World {
        _dir: dir,
        server,
        data,
    }
}

/// Ids of the dataset's records a person may read, by the grid tree.
fn expected_scope(
    data: &Dataset,
    extra: &[(String, String)],
    role: Role,
    grids: &[String],
) -> BTreeSet<String> {
    let within = |g: &str| {
        role == Role::Admin
            || grids
                .iter()
                .any(|a| g == a || g.starts_with(&format!("{a}-")))
    };
    data.producers
        .iter()
        .map(|p| (&p.id, &p.grid))
        .chain(data.visits.iter().map(|v| (&v.id, &v.grid)))
        .chain(extra.iter().map(|(i, g)| (i, g)))
        .filter(|(_, g)| within(g))
        .map(|(i, _)| i.clone())
        .collect()
}

fn all_ids(data: &Dataset) -> BTreeSet<String> {
    data.producers
        .iter()
        .map(|p| p.id.clone())
        .chain(data.visits.iter().map(|v| v.id.clone()))
        .collect()
}

#[test]
fn matrix_every_role_reads_and_writes_only_its_scope() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let people = [
        person_in(&w.data, Role::Liaison, "DEMO-T01-V01"),
        person_in(&w.data, Role::Supervisor, "DEMO-T01"),
        person_in(&w.data, Role::CountyReviewer, "DEMO"),
        person_in(&w.data, Role::Admin, "DEMO"),
    ];
    let foreign_producer = w
        .data
        .producers
        .iter()
        .find(|p| p.grid.starts_with("DEMO-T02"))
        .unwrap()
        .clone();
    let mut foreign_bytes_served = 0usize;
    let mut foreign_writes_accepted = 0usize;
    let mut checks = 0usize;
    let mut created: Vec<(String, String)> = Vec::new();
    for person in &people {
        let phone = Phone::enrol(
            &w.server,
            &w.server.url(),
            dir.path(),
            &person.id,
            &person.id,
        );
        // READ: bootstrap through the protocol, then compare with the grid tree.
        phone.sync().unwrap();
        let got: BTreeSet<String> = phone
            .store
            .record_ids()
            .unwrap()
            .into_iter()
            .filter(|i| !i.starts_with("tpl:"))
            .collect();
        let want = expected_scope(&w.data, &created, person.role, &person.grids);
        let foreign: Vec<_> = got.difference(&want).collect();
        foreign_bytes_served += foreign.len();
        assert!(
            foreign.is_empty(),
            "{:?} read foreign records {foreign:?}",
            person.role
        );
        assert_eq!(got, want, "{:?} sees exactly its scope", person.role);
        checks += 1;
        // READ with forged cursors for every grid in the tree: nothing outside scope comes back.
        let cursors: Vec<Cursor> = w
            .data
            .grids
            .iter()
            .map(|g| Cursor {
                grid: g.code.clone(),
                seq: 0,
                token: 0,
            })
            .collect();
        let resp = raw_sync(&phone, vec![], cursors).unwrap();
        for r in &resp.records {
            let in_scope = want.contains(&r.id) || r.id.starts_with("tpl:");
            if !in_scope {
                foreign_bytes_served += r.bytes.len();
            }
        }
        checks += 1;
        // WRITE inside scope: an edit to a record it can see.
        let own = w
            .data
            .producers
            .iter()
            .find(|p| want.contains(&p.id) && p.grid.starts_with("DEMO-T01-V01"))
            .unwrap();
        let push = push_edit_of_stored(w.server.storage.as_ref(), &own.id, &phone, |r| {
            if let Record::Producer(p) = r {
                p.address = format!("{}改地址", person.id);
                if p.review.state.is_approved() {
                    p.review.state = ReviewState::Submitted;
                }
            }
        });
        let resp = raw_sync(&phone, vec![push], vec![]).unwrap();
        assert_eq!(
            resp.results[0].outcome,
            PushOutcome::Accepted,
            "{:?} edits in scope",
            person.role
        );
        checks += 1;
        // WRITE outside scope: edit a foreign record, create in a foreign grid, move a record out.
        let outside = person.role != Role::Admin && person.role != Role::CountyReviewer;
        let new_rec = new_producer("越权新建", "DEMO-T02-V01", &person.id);
        let attempts = vec![
            push_edit_of_stored(
                w.server.storage.as_ref(),
                &foreign_producer.id,
                &phone,
                |r| {
                    if let Record::Producer(p) = r {
                        p.phone = "13700000000".into();
                    }
                },
            ),
            push_new(&Record::Producer(new_rec.clone()), &phone),
            push_edit_of_stored(w.server.storage.as_ref(), &own.id, &phone, |r| {
                if let Record::Producer(p) = r {
                    p.grid = "DEMO-T02-V01".into();
                }
            }),
        ];
        let resp = raw_sync(&phone, attempts, vec![]).unwrap();
        if resp.results[1].outcome == PushOutcome::Accepted {
            created.push((new_rec.id.clone(), new_rec.grid.clone()));
        }
        for (i, r) in resp.results.iter().enumerate() {
            match (&r.outcome, outside) {
                (PushOutcome::Accepted, true) => foreign_writes_accepted += 1,
                (PushOutcome::Rejected { code, reason }, true) => {
                    assert_eq!(
                        *code,
                        RejectCode::Forbidden,
                        "{:?} attempt {i}: {reason}",
                        person.role
                    );
                }
                (PushOutcome::Rejected { code, reason }, false) => {
                    // County and admin scopes cover T02; the only refusal allowed is a rule one.
                    panic!(
                        "{:?} attempt {i} refused in its scope: {code:?} {reason}",
                        person.role
                    )
                }
                (PushOutcome::Accepted, false) => {}
            }
            checks += 1;
        }
        if outside {
            // The server still holds the foreign producer unchanged.
            let stored = w
                .server
                .storage
                .record(&foreign_producer.id)
                .unwrap()
                .unwrap();
            let doc = gridsync_core::doc::RecordDoc::load(&stored.doc, &[]).unwrap();
            match doc.read().unwrap() {
                Record::Producer(p) => assert_eq!(p.phone, foreign_producer.phone),
                _ => panic!(),
            }
        }
        // Templates: written only by county staff and administrators.
        let mut t = default_template("DEMO");
        t.template_id = format!("county-{}", person.id);
        t.id = ChecklistTemplate::record_id(&t.template_id, 1);
        let resp = raw_sync(&phone, vec![push_new(&Record::Template(t), &phone)], vec![]).unwrap();
        let may = matches!(person.role, Role::CountyReviewer | Role::Admin);
        assert_eq!(
            matches!(resp.results[0].outcome, PushOutcome::Accepted),
            may,
            "{:?} template write: {:?}",
            person.role,
            resp.results[0].outcome
        );
        checks += 1;
    }
    assert_eq!(foreign_bytes_served, 0, "bytes of foreign records served");
    assert_eq!(foreign_writes_accepted, 0, "foreign writes accepted");
    assert!(checks >= 4 * 7);
    println!("access matrix: {checks} checks, 0 foreign bytes served, 0 foreign writes accepted");
    // Templates are readable county-wide: the liaison's phone got the county's templates.
    let liaison_phone = Phone::enrol(&w.server, &w.server.url(), dir.path(), "l2", &people[0].id);
    liaison_phone.sync().unwrap();
    let tpl: Vec<String> = liaison_phone
        .store
        .record_ids()
        .unwrap()
        .into_iter()
        .filter(|i| i.starts_with("tpl:"))
        .collect();
    assert_eq!(
        tpl.len(),
        2,
        "the county's and the admin's banner templates reach the liaison: {tpl:?}"
    );
    assert!(all_ids(&w.data).len() > tpl.len());
}

#[test]
fn role_rules_are_checked_against_the_stored_record() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let liaison = person_in(&w.data, Role::Liaison, "DEMO-T01-V01");
    let sup = person_in(&w.data, Role::Supervisor, "DEMO-T01");
    let county = person_in(&w.data, Role::CountyReviewer, "DEMO");
    let lp = Phone::enrol(&w.server, &w.server.url(), dir.path(), "l", &liaison.id);
    let sp = Phone::enrol(&w.server, &w.server.url(), dir.path(), "s", &sup.id);
    let cp = Phone::enrol(&w.server, &w.server.url(), dir.path(), "c", &county.id);
    for p in [&lp, &sp, &cp] {
        p.sync().unwrap();
    }
    let grid = &liaison.grids[0];
    let p = lp
        .store
        .create_producer(new_producer("审核链牧场", grid, &liaison.id))
        .unwrap();
    lp.store
        .review_producer(&p.id, ReviewAction::Submit)
        .unwrap();
    lp.sync().unwrap();
    // A liaison approving is refused by the server even when the phone is bypassed.
    let forged = push_edit_of_stored(w.server.storage.as_ref(), &p.id, &lp, |r| {
        if let Record::Producer(p) = r {
            p.review.state = ReviewState::TownshipApproved;
            p.review.approved_fingerprint = Some(p.directory_fingerprint());
        }
    });
    let r = raw_sync(&lp, vec![forged], vec![]).unwrap();
    assert!(
        matches!(
            &r.results[0].outcome,
            PushOutcome::Rejected {
                code: RejectCode::Forbidden,
                ..
            }
        ),
        "{:?}",
        r.results[0]
    );
    // The supervisor approves at township level, the county at county level.
    sp.sync().unwrap();
    sp.store
        .review_producer(&p.id, ReviewAction::ApproveTownship)
        .unwrap();
    assert_eq!(sp.sync().unwrap().rejected.len(), 0);
    cp.sync().unwrap();
    let approved = cp
        .store
        .review_producer(&p.id, ReviewAction::ApproveCounty)
        .unwrap();
    assert_eq!(approved.review.state, ReviewState::CountyApproved);
    assert_eq!(cp.sync().unwrap().rejected.len(), 0);
    // A supervisor cannot take the county's step.
    let forged = push_edit_of_stored(w.server.storage.as_ref(), &p.id, &sp, |r| {
        if let Record::Producer(p) = r {
            p.review.state = ReviewState::Returned;
            p.review.return_reason = Some("退回".into());
        }
    });
    let r = raw_sync(&sp, vec![forged], vec![]).unwrap();
    assert!(
        matches!(
            &r.results[0].outcome,
            PushOutcome::Rejected {
                code: RejectCode::Forbidden,
                ..
            }
        ),
        "{:?}",
        r.results[0]
    );
    // A liaison cannot change someone else's completed visit.
    let others = w
        .data
        .visits
        .iter()
        .find(|v| {
            v.grid == *grid && v.inspector != liaison.id && v.status == VisitStatus::Completed
        })
        .unwrap();
    let forged = push_edit_of_stored(w.server.storage.as_ref(), &others.id, &lp, |r| {
        if let Record::Visit(v) = r {
            v.findings.clear();
            v.answers.clear();
        }
    });
    let r = raw_sync(&lp, vec![forged], vec![]).unwrap();
    assert!(
        matches!(&r.results[0].outcome, PushOutcome::Rejected { .. }),
        "{:?}",
        r.results[0]
    );
}

#[test]
fn enrolment_codes_are_single_use_expire_and_resist_guessing() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let liaison = person_in(&w.data, Role::Liaison, "DEMO-T01-V01");
    let code = w.server.code_for(&liaison.id);
    let t = gridsync_core::sync::HttpTransport::new(&w.server.url()).unwrap();
    let s1 = gridsync_core::store::Store::open(dir.path().join("1.db")).unwrap();
    gridsync_core::sync::enroll(&s1, &t, &w.server.url(), &code, "p1").unwrap();
    // Reuse.
    let s2 = gridsync_core::store::Store::open(dir.path().join("2.db")).unwrap();
    let e = gridsync_core::sync::enroll(&s2, &t, &w.server.url(), &code, "p2").unwrap_err();
    assert!(
        matches!(
            &e,
            gridsync_core::Error::Server {
                status: 401,
                code: ErrorCode::InvalidCode,
                ..
            }
        ),
        "{e}"
    );
    // Expiry.
    let expired = "ABCD-EFGH-JKMN";
    w.server
        .storage
        .insert_code(&gridsync_server::storage::EnrolCode {
            code_hash: gridsync_server::auth::hash_secret(&gridsync_server::auth::normalize_code(
                expired,
            )),
            person_id: liaison.id.clone(),
            created_by: "test".into(),
            created_at_ms: gridsync_core::now_ms() - 10_000,
            expires_at_ms: gridsync_core::now_ms() - 1,
        })
        .unwrap();
    let e = gridsync_core::sync::enroll(&s2, &t, &w.server.url(), expired, "p2").unwrap_err();
    assert!(
        matches!(
            &e,
            gridsync_core::Error::Server {
                status: 401,
                code: ErrorCode::InvalidCode,
                ..
            }
        ),
        "{e}"
    );
    // Guessing: the limiter stops a client after a handful of tries, even a later right guess.
    let good = w.server.code_for(&liaison.id);
    let client = reqwest::blocking::Client::new();
    let mut statuses = Vec::new();
    for i in 0..20 {
        let body = serde_json::json!({"code": format!("ZZZZ-ZZZZ-{i:04}"), "device_name": "guess"});
        let r = client
            .post(format!("{}/v1/enroll", w.server.url()))
            .json(&body)
            .send()
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(
        statuses.iter().filter(|s| **s == 401).count() <= 10,
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "guessing is rate-limited: {statuses:?}"
    );
    let e = gridsync_core::sync::enroll(&s2, &t, &w.server.url(), &good, "p2").unwrap_err();
    assert!(
        matches!(
            &e,
            gridsync_core::Error::Server {
                status: 429,
                code: ErrorCode::EnrolRateLimited | ErrorCode::EnrolRangeLimited,
                ..
            }
        ),
        "{e}"
    );
    // Only hashes are stored: the code text is nowhere in the database file (the embedded
    // backend's file can be read directly; the conformance suite covers PostgreSQL's rows).
    if !matches!(w.server.backend, Backend::Sqlite) {
        return;
    }
    let db = std::fs::read(w.server.data.join("gridsync.db")).unwrap();
    let wal = std::fs::read(w.server.data.join("gridsync.db-wal")).unwrap_or_default();
    let norm = gridsync_server::auth::normalize_code(&good);
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(norm.len()).any(|w| w == norm.as_bytes()),
            "code stored in clear"
        );
    }
    let link = s1.server_link().unwrap().unwrap();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(link.secret.len())
                .any(|w| w == link.secret.as_bytes()),
            "secret stored in clear"
        );
    }
}

#[test]
fn lost_phone_is_revoked_and_wiped_but_unsynced_edits_are_kept() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let liaison = person_in(&w.data, Role::Liaison, "DEMO-T01-V01");
    let phone = Phone::enrol(&w.server, &w.server.url(), dir.path(), "lost", &liaison.id);
    phone.sync().unwrap();
    assert!(phone.store.counts().unwrap().producers > 0);
    // Recorded offline, never synced.
    let p = phone
        .store
        .create_producer(new_producer("丢失前登记", &liaison.grids[0], &liaison.id))
        .unwrap();
    // Reported lost: the administrator revokes the device.
    let device = phone.store.server_link().unwrap().unwrap().device_id;
    w.server
        .storage
        .revoke_device(&device, "手机丢失 (reported lost)", gridsync_core::now_ms())
        .unwrap();
    let e = phone.sync().unwrap_err();
    // Typed from the real server's answer: the code, not the message text, says revoked.
    match &e {
        gridsync_core::Error::Server {
            status: 401,
            code: ErrorCode::DeviceRevoked,
            message,
        } => assert!(message.contains("reported lost"), "{message}"),
        other => panic!("expected 401 device_revoked, got {other:?}"),
    }
    let c = phone.store.counts().unwrap();
    assert_eq!(
        (c.producers, c.visits),
        (0, 0),
        "server data removed from the phone"
    );
    let kept = phone.store.kept_edits().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].id, p.id);
    assert!(kept[0].record_json.contains("丢失前登记"));
    assert!(phone.store.server_link().unwrap().is_none());
    // The revoked credential pulls nothing.
    let raw = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", w.server.url()))
        .header("authorization", format!("Bearer {device}.0000"))
        .header("x-gridsync-protocol", "3")
        .body(vec![1, 2, 3])
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 401);
}

#[test]
fn rotated_credential_whose_answer_was_lost_keeps_working() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let liaison = person_in(&w.data, Role::Liaison, "DEMO-T01-V01");
    let phone = Phone::enrol(&w.server, &w.server.url(), dir.path(), "r", &liaison.id);
    phone.sync().unwrap();
    let link = phone.store.server_link().unwrap().unwrap();
    let old_auth = format!("Bearer {}.{}", link.device_id, link.secret);
    // The server rotates, but the answer never reaches the phone.
    let lost = phone.transport().rotate(&old_auth).unwrap();
    drop(lost);
    assert_eq!(
        phone.sync().unwrap().round_trips,
        1,
        "the old secret still works"
    );
    // A rotation whose answer arrives: the next sync switches, and the old secret dies.
    gridsync_core::sync::SyncEngine::new(&phone.store, phone.transport())
        .rotate_credential()
        .unwrap();
    phone.sync().unwrap();
    let new = phone.store.server_link().unwrap().unwrap();
    assert_ne!(new.secret, link.secret);
    assert!(new.pending_secret.is_none());
    let body = gridsync_core::sync::protocol::encode(&gridsync_core::sync::protocol::SyncRequest {
        epoch: String::new(),
        reference_version: String::new(),
        push: vec![],
        cursors: vec![],
        want_full: vec![],
        page_limit: 1,
        bare_docs: false,
        page_bytes: 0,
    })
    .unwrap();
    let e = phone.transport().sync(&old_auth, body).unwrap_err();
    assert!(
        matches!(
            e,
            gridsync_core::Error::Server {
                status: 401,
                code: ErrorCode::BadCredentials,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn reassignment_purges_the_lost_grid_and_keeps_unsynced_edits() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let mut liaison = person_in(&w.data, Role::Liaison, "DEMO-T01-V01");
    let phone = Phone::enrol(&w.server, &w.server.url(), dir.path(), "m", &liaison.id);
    phone.sync().unwrap();
    let old_grid = liaison.grids[0].clone();
    let list = phone
        .store
        .producers_in_grid(&old_grid, gridsync_core::store::ProducerSort::Name, 10, 0)
        .unwrap();
    let mut edited = phone.store.producer(&list[0].id).unwrap();
    edited.address = "调岗前未同步的修改".into();
    phone.store.update_producer(edited.clone()).unwrap();
    // The person moves to another village.
    liaison.grids = vec!["DEMO-T01-V02".into()];
    gridsync_server::admin::add_person(w.server.storage.as_ref(), &liaison).unwrap();
    let r = phone.sync().unwrap();
    assert_eq!(
        r.rejected.len(),
        1,
        "the edit to the lost grid is refused by the server: {r:?}"
    );
    assert!(r.kept >= 1, "{r:?}");
    assert!(phone
        .store
        .producers_in_grid(&old_grid, gridsync_core::store::ProducerSort::Name, 10, 0)
        .unwrap()
        .is_empty());
    assert!(!phone
        .store
        .producers_in_grid(
            "DEMO-T01-V02",
            gridsync_core::store::ProducerSort::Name,
            10,
            0
        )
        .unwrap()
        .is_empty());
    let kept = phone.store.kept_edits().unwrap();
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0].record_json.contains("调岗前未同步的修改"),
        "the unsynced edit survives for export"
    );
    assert!(kept[0].reason.contains(&old_grid));
    // The audit trail names who changed what.
    let audit = w
        .server
        .storage
        .audit_list(&AuditFilter::Person(liaison.id.clone()), 100)
        .unwrap();
    assert!(audit.iter().any(|a| a.action == "enrol"));
}

#[test]
fn audit_lists_changes_by_record_person_and_grid() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let liaison = person_in(&w.data, Role::Liaison, "DEMO-T01-V01");
    let phone = Phone::enrol(&w.server, &w.server.url(), dir.path(), "a", &liaison.id);
    phone.sync().unwrap();
    let p = phone
        .store
        .create_producer(new_producer("审计牧场", &liaison.grids[0], &liaison.id))
        .unwrap();
    phone.sync().unwrap();
    let mut e = phone.store.producer(&p.id).unwrap();
    e.address = "改".into();
    phone.store.update_producer(e).unwrap();
    phone.sync().unwrap();
    let device = phone.store.server_link().unwrap().unwrap().device_id;
    let by_record = w
        .server
        .storage
        .audit_list(&AuditFilter::Record(p.id.clone()), 10)
        .unwrap();
    assert_eq!(
        by_record
            .iter()
            .map(|a| a.action.as_str())
            .collect::<Vec<_>>(),
        ["create", "update"]
    );
    assert!(by_record
        .iter()
        .all(|a| a.person_id == liaison.id && a.device_id.as_deref() == Some(device.as_str())));
    let by_grid = w
        .server
        .storage
        .audit_list(&AuditFilter::Grid(liaison.grids[0].clone()), 10_000)
        .unwrap();
    assert!(by_grid
        .iter()
        .any(|a| a.record_id.as_deref() == Some(p.id.as_str())));
    let by_person = w
        .server
        .storage
        .audit_list(&AuditFilter::Person(liaison.id.clone()), 100)
        .unwrap();
    assert_eq!(
        by_person
            .iter()
            .filter(|a| a.record_id.as_deref() == Some(p.id.as_str()))
            .count(),
        2
    );
}

/// Bad enrolment guesses from `forwarded_for` (as a proxy on 127.0.0.1 reports them):
/// their statuses.
fn guesses(server: &TestServer, forwarded_for: &str, n: usize) -> Vec<u16> {
    let client = reqwest::blocking::Client::new();
    (0..n)
        .map(|i| {
            let body =
                serde_json::json!({"code": format!("ZZZZ-ZZZZ-{i:04}"), "device_name": "guess"});
            client
                .post(format!("{}/v1/enroll", server.url()))
                .header("x-forwarded-for", forwarded_for)
                .json(&body)
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect()
}

#[test]
fn behind_a_trusted_proxy_the_enrolment_limit_counts_phones_not_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &Backend::from_env(),
        |st| st.trusted_proxies = vec!["127.0.0.1".parse().unwrap()],
    );
    // One phone guessing is stopped.
    let first = guesses(&server, "10.0.0.1", 15);
    assert!(first.contains(&429), "{first:?}");
    // Another phone behind the same proxy is not.
    assert_eq!(guesses(&server, "10.0.0.2", 3), vec![401, 401, 401]);
    // A phone cannot escape by claiming another address left of the one the proxy saw.
    assert_eq!(guesses(&server, "10.9.9.9, 10.0.0.1", 1), vec![429]);
    // A server that trusts no proxy ignores the header: everyone shares the peer's limit.
    let plain = TestServer::start(&dir.path().join("plain"));
    let statuses: Vec<u16> = (0..15)
        .flat_map(|i| guesses(&plain, &format!("10.1.0.{i}"), 1))
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}
