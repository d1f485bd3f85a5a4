//! Sync scenarios against a real server on 127.0.0.1 (issue: sync protocol).

#![allow(clippy::unwrap_used)]

use gridsync_core::model::{
    default_template, Finding, Record, ReviewAction, ReviewState, RiskLevel, Role, Severity, Visit,
};
use gridsync_core::store::Store;
use gridsync_core::sync::protocol::{self, PushOutcome, SyncRequest, SyncResponse};
use gridsync_core::sync::{CancelFlag, SyncEngine, Transport};
use gridsync_tests::*;

fn finding(by: &str, text: &str) -> Finding {
    Finding {
        id: gridsync_core::new_id(),
        item_id: None,
        description: text.into(),
        severity: Severity::Minor,
        photos: vec![],
        recorded_by: by.into(),
        recorded_at_ms: gridsync_core::now_ms(),
    }
}

fn producer_named(store: &Store, grid: &str, n: usize) -> gridsync_core::model::Producer {
    let list = store
        .producers_in_grid(grid, gridsync_core::store::ProducerSort::Name, 100, 0)
        .unwrap();
    store.producer(&list[n].id).unwrap()
}

#[test]
fn three_devices_edit_offline_and_converge_in_any_order() {
    for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(&dir.path().join("server"));
        let data = small_dataset();
        server.load(&data);
        let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
        let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
        let v = liaison.grids[0].clone();
        let a = Phone::enrol(&server, &server.url(), dir.path(), "a", &liaison.id);
        let b = Phone::enrol(&server, &server.url(), dir.path(), "b", &liaison.id);
        let c = Phone::enrol(&server, &server.url(), dir.path(), "c", &supervisor.id);
        for p in [&a, &b, &c] {
            p.sync().unwrap();
        }
        // A draft visit everyone has, to add findings to concurrently.
        let p0 = producer_named(&a.store, &v, 0);
        let t = a.store.template("moa-daily-patrol", 1).unwrap();
        let visit = a
            .store
            .save_visit(Visit::new(
                &p0.id,
                &v,
                &liaison.id,
                &t,
                gridsync_core::now_ms(),
            ))
            .unwrap();
        a.sync().unwrap();
        b.sync().unwrap();
        c.sync().unwrap();

        // Offline edits on all three.
        let mut x = producer_named(&a.store, &v, 0);
        x.phone = "13800000001".into();
        a.store.update_producer(x).unwrap();
        let mut x = producer_named(&a.store, &v, 1);
        x.address = "A改的地址".into();
        a.store.update_producer(x).unwrap();
        let mut vv = a.store.visit(&visit.id).unwrap();
        vv.findings.push(finding(&liaison.id, "A发现：记录缺失"));
        a.store.save_visit(vv).unwrap();

        let mut x = producer_named(&b.store, &v, 0);
        x.owner = "B改的户主".into();
        b.store.update_producer(x).unwrap();
        let mut x = producer_named(&b.store, &v, 2);
        x.products.push("B新增产品".into());
        b.store.update_producer(x).unwrap();
        let mut vv = b.store.visit(&visit.id).unwrap();
        vv.findings.push(finding(&liaison.id, "B发现：兽药混放"));
        b.store.save_visit(vv).unwrap();

        let mut x = producer_named(&c.store, &v, 0);
        x.risk = RiskLevel::High;
        c.store.update_producer(x).unwrap();
        let mut x = producer_named(&c.store, &v, 2);
        x.products.push("C新增产品".into());
        c.store.update_producer(x).unwrap();

        let phones = [&a, &b, &c];
        for round in 0..2 {
            for &i in &order {
                phones[i]
                    .sync()
                    .unwrap_or_else(|e| panic!("round {round} phone {i}: {e}"));
            }
        }
        let sa = snapshot(&a.store);
        let sc = snapshot(&c.store);
        assert_eq!(sa, snapshot(&b.store), "order {order:?}: a and b differ");
        // The supervisor sees the whole township; compare the records the liaison sees.
        for (id, val) in &sa {
            assert_eq!(
                Some(val),
                sc.get(id),
                "order {order:?}: record {id} differs on c"
            );
        }
        let p = producer_named(&a.store, &v, 0);
        assert_eq!(p.phone, "13800000001");
        assert_eq!(p.owner, "B改的户主");
        assert_eq!(p.risk, RiskLevel::High);
        assert_eq!(producer_named(&a.store, &v, 1).address, "A改的地址");
        let p2 = producer_named(&a.store, &v, 2);
        assert!(
            p2.products.contains(&"B新增产品".to_string())
                && p2.products.contains(&"C新增产品".to_string())
        );
        let vv = a.store.visit(&visit.id).unwrap();
        assert_eq!(vv.findings.len(), 2, "both concurrent findings survive");
        assert_eq!(a.store.counts().unwrap().unsynced, 0);
        assert_eq!(c.store.counts().unwrap().unsynced, 0);
    }
}

#[test]
fn dropped_connection_mid_page_resumes_without_loss_or_duplication() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let proxy = CuttingProxy::start(server.addr);
    let mut phone = Phone::enrol(&server, &proxy.url(), dir.path(), "s", &supervisor.id);
    phone.transport.attempts = 1;
    let expected = data
        .producers
        .iter()
        .filter(|p| p.grid.starts_with("DEMO-T01"))
        .count()
        + data
            .visits
            .iter()
            .filter(|v| v.grid.starts_with("DEMO-T01"))
            .count();
    // Past a few pages but before the end: the whole sync is about 7 KB of answers in
    // protocol 4 (zstd with its dictionary; it was 9 KB and more in gzip).
    proxy
        .cut_after
        .store(3000, std::sync::atomic::Ordering::SeqCst);
    let err = phone
        .sync_paged(4)
        .expect_err("the cut connection must fail the sync");
    assert!(matches!(err, gridsync_core::Error::Transport(_)), "{err}");
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 1);
    let before = phone.store.record_ids().unwrap().len();
    assert!(
        before > 0 && before < expected,
        "some pages applied before the cut ({before} of {expected})"
    );
    let report = phone.sync_paged(4).unwrap();
    let after = phone.store.record_ids().unwrap();
    assert_eq!(after.len(), expected, "every record arrived");
    assert_eq!(
        report.pulled as usize,
        expected - before,
        "the second sync resumed where the first stopped"
    );
    let mut dedup = after.clone();
    dedup.dedup();
    assert_eq!(dedup, after);
}

fn raw_push(phone: &Phone) -> (Vec<u8>, String) {
    let link = phone.store.server_link().unwrap().unwrap();
    let pending = phone
        .store
        .pending_pushes(100, &Default::default())
        .unwrap();
    let req = SyncRequest {
        epoch: link.epoch.clone(),
        reference_version: String::new(),
        push: pending
            .iter()
            .map(|p| protocol::PushRecord {
                id: p.id.clone(),
                kind: p.kind.tag(),
                changes: p.changes.clone(),
                heads: p.heads.iter().map(|h| h.0).collect(),
            })
            .collect(),
        cursors: vec![],
        want_full: vec![],
        page_limit: 10,
        bare_docs: false,
        page_bytes: 0,
    };
    (
        protocol::encode(&req).unwrap(),
        format!("Bearer {}.{}", link.device_id, link.secret),
    )
}

#[test]
fn the_same_push_delivered_twice_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let v = liaison.grids[0].clone();
    let phone = Phone::enrol(&server, &server.url(), dir.path(), "p", &liaison.id);
    phone.sync().unwrap();
    let p = phone
        .store
        .create_producer(new_producer("重复推送牧场", &v, &liaison.id))
        .unwrap();
    let head_before = server.storage.feed_head(&v).unwrap();
    let (body, auth) = raw_push(&phone);
    for attempt in 0..2 {
        let answer = phone.transport().sync(&auth, body.clone()).unwrap();
        let resp: SyncResponse = protocol::decode(&answer).unwrap();
        assert_eq!(resp.results.len(), 1, "attempt {attempt}");
        assert_eq!(
            resp.results[0].outcome,
            PushOutcome::Accepted,
            "attempt {attempt}"
        );
    }
    assert_eq!(
        server.storage.feed_head(&v).unwrap(),
        head_before + 1,
        "the duplicate took no new sequence"
    );
    let audit = server
        .storage
        .audit_list(
            &gridsync_server::storage::AuditFilter::Record(p.id.clone()),
            10,
        )
        .unwrap();
    assert_eq!(audit.len(), 1, "one stored change, one audit entry");
    // The phone's own sync then has nothing left to push and ends in one round trip.
    phone.sync().unwrap();
    let r = phone.sync().unwrap();
    assert_eq!((r.round_trips, r.pushed, r.pulled), (1, 0, 0));
}

#[test]
fn server_restart_between_push_and_pull() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let v = liaison.grids[0].clone();
    let a = Phone::enrol(&server, &server.url(), dir.path(), "a", &liaison.id);
    let b = Phone::enrol(&server, &server.url(), dir.path(), "b", &liaison.id);
    a.sync().unwrap();
    b.sync().unwrap();
    let p = a
        .store
        .create_producer(new_producer("重启测试牧场", &v, &liaison.id))
        .unwrap();
    let pushed = a.sync().unwrap();
    assert_eq!(pushed.pushed, 1);
    assert_eq!(
        pushed.pulled, 0,
        "the phone's own record is not echoed back to it"
    );
    let server = server.restart();
    let r = b.sync().unwrap();
    assert_eq!(r.pulled, 1);
    assert_eq!(b.store.producer(&p.id).unwrap().name, "重启测试牧场");
    drop(server);
}

#[test]
fn server_restored_from_an_older_copy_gets_back_what_it_lost() {
    for via_backup_command in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("server");
        let server = TestServer::start(&data_dir);
        let data = small_dataset();
        server.load(&data);
        let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
        let v = liaison.grids[0].clone();
        let a = Phone::enrol(&server, &server.url(), dir.path(), "a", &liaison.id);
        let b = Phone::enrol(&server, &server.url(), dir.path(), "b", &liaison.id);
        a.sync().unwrap();
        b.sync().unwrap();
        let old = a
            .store
            .create_producer(new_producer("备份前牧场", &v, &liaison.id))
            .unwrap();
        a.sync().unwrap();
        // The backup.
        let backup = dir.path().join("backup.db");
        // Marked as `admin backup` writes it, or a plain copy of the data (see the harness).
        let server = server.backup(&backup, via_backup_command);
        // Work after the backup, which the restore will lose.
        let lost_a = a
            .store
            .create_producer(new_producer("备份后A牧场", &v, &liaison.id))
            .unwrap();
        a.sync().unwrap();
        b.sync().unwrap();
        let mut e = b.store.producer(&old.id).unwrap();
        e.address = "备份后B修改".into();
        b.store.update_producer(e).unwrap();
        b.sync().unwrap();
        a.sync().unwrap();
        // Restore the older copy.
        let server = server.restore(&backup);
        assert!(
            server.storage.record(&lost_a.id).unwrap().is_none(),
            "the restore lost A's producer"
        );
        let ra = a.sync().unwrap();
        assert!(
            ra.epoch_reset,
            "phone A noticed the restore (backup command: {via_backup_command})"
        );
        let rb = b.sync().unwrap();
        assert!(rb.epoch_reset, "phone B noticed the restore");
        a.sync().unwrap();
        assert!(
            server.storage.record(&lost_a.id).unwrap().is_some(),
            "A re-sent its producer"
        );
        assert_eq!(a.store.producer(&old.id).unwrap().address, "备份后B修改");
        assert_eq!(snapshot(&a.store), snapshot(&b.store));
        let c = Phone::enrol(&server, &server.url(), dir.path(), "c", &liaison.id);
        c.sync().unwrap();
        assert_eq!(
            snapshot(&c.store),
            snapshot(&a.store),
            "a new phone sees everything again"
        );
    }
}

/// Issue 19, part 5: after a restore, a supervisor's phone holding a liaison's visit made
/// after the backup is not left with a rejection it can do nothing about: only the
/// liaison's device may deliver the liaison's changes, so the supervisor's phone waits,
/// and once the liaison's phone has re-sent the visit nothing is rejected or unsynced on
/// any phone.
#[test]
fn after_a_restore_others_changes_wait_for_their_author_without_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let lp = Phone::enrol(&server, &server.url(), dir.path(), "l", &liaison.id);
    let sp = Phone::enrol(&server, &server.url(), dir.path(), "s", &supervisor.id);
    lp.sync().unwrap();
    sp.sync().unwrap();
    let backup = dir.path().join("backup.db");
    let server = server.backup(&backup, true);
    // After the backup: the liaison records a visit, the supervisor's phone receives it.
    let producer = data
        .producers
        .iter()
        .find(|p| p.grid == liaison.grids[0])
        .unwrap();
    let v = Visit::new(
        &producer.id,
        &producer.grid,
        &liaison.id,
        &default_template("builtin"),
        gridsync_core::now_ms(),
    );
    let v = lp.store.save_visit(v).unwrap();
    lp.sync().unwrap();
    sp.sync().unwrap();
    assert!(sp.store.visit(&v.id).is_ok());
    let server = server.restore(&backup);
    assert!(server.storage.record(&v.id).unwrap().is_none());
    // The supervisor's phone syncs first: it may not deliver the liaison's visit, and is
    // not shown a rejection for it.
    let r = sp.sync().unwrap();
    assert!(r.epoch_reset);
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!(r.waiting, 1, "the liaison's visit waits for its author");
    assert!(server.storage.record(&v.id).unwrap().is_none());
    // The liaison's phone re-sends it; the supervisor's phone is then clean too.
    let r = lp.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert!(server.storage.record(&v.id).unwrap().is_some());
    let r = sp.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    for p in [&lp, &sp] {
        let c = p.store.counts().unwrap();
        assert_eq!((c.unsynced, c.rejected), (0, 0), "{}: {c:?}", p.person.id);
        assert!(p.store.rejected_edits().unwrap().is_empty());
    }
    assert_eq!(
        snapshot(&lp.store).get(&v.id),
        snapshot(&sp.store).get(&v.id)
    );
}

#[test]
fn a_new_device_bootstraps_a_township_in_few_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = gridsync_server::dataset::generate(&gridsync_server::dataset::DatasetSpec {
        producers_per_township: 150,
        visits_per_producer: 4,
        ..gridsync_server::dataset::DatasetSpec::demo()
    });
    server.load(&data);
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let phone = Phone::enrol(&server, &server.url(), dir.path(), "s", &supervisor.id);
    let r = phone.sync_paged(500).unwrap();
    let expected = data
        .producers
        .iter()
        .filter(|p| p.grid.starts_with("DEMO-T01"))
        .count()
        + data
            .visits
            .iter()
            .filter(|v| v.grid.starts_with("DEMO-T01"))
            .count();
    assert_eq!(r.pulled as usize, expected);
    assert_eq!(phone.store.record_ids().unwrap().len(), expected);
    let pages = expected.div_ceil(500) as u32;
    assert!(
        r.round_trips <= pages + 2,
        "{} round trips for {expected} records",
        r.round_trips
    );
    // Whole documents came bare and were rebuilt byte for byte as the server holds them.
    assert_eq!(r.digest_retries, 0);
    assert_same_documents_as_server(&phone, &server);
    // Nothing from the other township.
    assert!(phone.store.record_ids().unwrap().iter().all(|id| {
        !data
            .producers
            .iter()
            .any(|p| &p.id == id && !p.grid.starts_with("DEMO-T01"))
    }));
    // A second sync has nothing to do: one round trip, under 1 KB.
    let idle = phone.sync().unwrap();
    assert_eq!(idle.round_trips, 1);
    assert!(
        idle.bytes_up + idle.bytes_down < 1024,
        "idle sync used {} bytes",
        idle.bytes_up + idle.bytes_down
    );
}

#[test]
fn a_rejected_edit_stays_visible_with_its_reason_until_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let mut sup = person_in(&data, Role::Supervisor, "DEMO-T01");
    let phone = Phone::enrol(&server, &server.url(), dir.path(), "s", &sup.id);
    phone.sync().unwrap();
    let v = "DEMO-T01-V01";
    let p = producer_named(&phone.store, v, 0);
    let p = phone
        .store
        .review_producer(&p.id, ReviewAction::Submit)
        .unwrap();
    phone.sync().unwrap();
    // On the server the person is demoted to liaison; the phone does not know yet.
    sup.role = Role::Liaison;
    sup.grids = vec![v.into()];
    gridsync_server::admin::add_person(server.storage.as_ref(), &sup).unwrap();
    let approved = phone
        .store
        .review_producer(&p.id, ReviewAction::ApproveTownship)
        .unwrap();
    assert_eq!(approved.review.state, ReviewState::TownshipApproved);
    let r = phone.sync().unwrap();
    assert_eq!(r.rejected.len(), 1, "{r:?}");
    assert!(
        r.rejected[0].1.contains("liaison"),
        "reason names the rule: {}",
        r.rejected[0].1
    );
    let rejected = phone.store.rejected_edits().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].code, "forbidden");
    assert_eq!(phone.store.counts().unwrap().rejected, 1);
    // Still visible on the phone, and not silently re-sent on the next sync.
    assert_eq!(
        phone.store.producer(&p.id).unwrap().review.state,
        ReviewState::TownshipApproved
    );
    let again = phone.sync().unwrap();
    assert_eq!(again.rejected.len(), 0);
    assert_eq!(phone.store.rejected_edits().unwrap().len(), 1);
    // The person discards it: the record goes back to what the server holds.
    phone.store.discard_rejected(&p.id).unwrap();
    assert_eq!(
        phone.store.producer(&p.id).unwrap().review.state,
        ReviewState::Submitted
    );
    assert_eq!(phone.store.counts().unwrap().rejected, 0);
    let stored = server.storage.record(&p.id).unwrap().unwrap();
    let doc = gridsync_core::doc::RecordDoc::load(&stored.doc, &[]).unwrap();
    match doc.read().unwrap() {
        Record::Producer(sp) => assert_eq!(
            sp.review.state,
            ReviewState::Submitted,
            "nothing of the rejected edit was stored"
        ),
        _ => panic!("not a producer"),
    }
}

/// Every document on the phone is byte for byte the server's.
fn assert_same_documents_as_server(phone: &Phone, server: &TestServer) {
    let db = rusqlite::Connection::open(&phone.path).unwrap();
    let mut st = db.prepare("SELECT id, doc FROM records").unwrap();
    let docs: Vec<(String, Vec<u8>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!docs.is_empty());
    let storage = server.storage.clone();
    for (id, doc) in &docs {
        let stored = storage.record(id).unwrap().expect("on the server");
        assert!(
            &stored.doc == doc,
            "document of {id} differs from the server's"
        );
    }
}

/// Flips the first page digest it sees, as a server whose documents hash differently
/// would look to the phone.
struct TamperDigest {
    inner: gridsync_core::sync::HttpTransport,
    tampered: std::sync::atomic::AtomicU32,
}

impl Transport for TamperDigest {
    fn sync(&self, auth: &str, body: Vec<u8>) -> gridsync_core::Result<Vec<u8>> {
        let answer = self.inner.sync(auth, body)?;
        let mut resp: protocol::SyncResponse = protocol::decode(&answer)?;
        if let Some(d) = resp.docs_digest.as_mut() {
            if self
                .tampered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                == 0
            {
                d[0] ^= 1;
                return protocol::encode(&resp);
            }
        }
        Ok(answer)
    }
    fn enroll(
        &self,
        req: &protocol::EnrollRequest,
    ) -> gridsync_core::Result<protocol::EnrollResponse> {
        self.inner.enroll(req)
    }
    fn rotate(&self, auth: &str) -> gridsync_core::Result<protocol::RotateResponse> {
        self.inner.rotate(auth)
    }
}

#[test]
fn a_page_whose_digest_does_not_match_is_fetched_again_with_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, phone) = server_and_liaison(dir.path());
    let tamper = TamperDigest {
        inner: gridsync_core::sync::HttpTransport::new(&server.url()).unwrap(),
        tampered: Default::default(),
    };
    let mut engine = SyncEngine::new(&phone.store, &tamper);
    engine.page_limit = 5;
    let r = engine.sync(&mut |_| {}, &CancelFlag::new()).unwrap();
    // The tampered page was not applied at all, then fetched again with hashes, as was
    // the rest of this sync.
    assert_eq!(r.digest_retries, 1);
    assert_eq!(
        tamper.tampered.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the first page was bare"
    );
    // The same as a phone that synced without the fault, across several pages.
    let control = Phone::enrol(&server, &server.url(), dir.path(), "c", &phone.person.id);
    let c = control.sync_paged(5).unwrap();
    assert_eq!(c.digest_retries, 0);
    assert!(c.round_trips > 2, "the scope spans several pages");
    assert_eq!(r.pulled, c.pulled, "every record arrived once");
    assert_eq!(snapshot(&phone.store), snapshot(&control.store));
    assert_same_documents_as_server(&phone, &server);
    assert_eq!(integrity_check(&phone.path), "ok");
}

#[test]
fn a_version_1_device_still_gets_documents_with_their_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, phone) = server_and_liaison(dir.path());
    let link = phone.store.server_link().unwrap().unwrap();
    let post = |version: &str, body: Vec<u8>| {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/v1/sync", server.url()))
            .header(
                "authorization",
                format!("Bearer {}.{}", link.device_id, link.secret),
            )
            .header(protocol::PROTOCOL_HEADER, version)
            .header("content-type", protocol::CONTENT_TYPE)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().unwrap().to_vec()
    };
    let mut req = SyncRequest {
        epoch: String::new(),
        reference_version: String::new(),
        push: vec![],
        cursors: vec![protocol::Cursor {
            grid: "DEMO-T01-V01".into(),
            seq: 0,
            token: 0,
        }],
        want_full: vec![],
        page_limit: 50,
        bare_docs: true,
        page_bytes: 0,
    };
    // Version 1: the request has no bare_docs byte; the answer has no digest and every
    // whole document keeps its heads.
    let mut v1 = postcard::to_allocvec(&req).unwrap();
    assert_eq!(v1.pop(), Some(0), "page_bytes (v3)");
    let v2_body = v1.clone();
    assert_eq!(v1.pop(), Some(1));
    let v1_answer =
        protocol::decode_response(&post("1", protocol::encode_raw_for_tests(&v1)), 1).unwrap();
    assert!(!v1_answer.records.is_empty());
    assert!(v1_answer.docs_digest.is_none());
    for rec in &v1_answer.records {
        assert!(rec.full && !rec.heads.is_empty(), "{}", rec.id);
        let mut doc = automerge::AutoCommit::load(&rec.bytes).unwrap();
        let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
        assert_eq!(heads, rec.heads);
    }
    // Version 2 with bare documents: the same records, smaller, with a digest.
    let v2_answer =
        protocol::decode_response(&post("2", protocol::encode_raw_for_tests(&v2_body)), 2).unwrap();
    assert!(v2_answer.docs_digest.is_some());
    assert_eq!(v2_answer.records.len(), v1_answer.records.len());
    let size = |recs: &[protocol::PullRecord]| {
        recs.iter()
            .map(|r| r.bytes.len() + 32 * r.heads.len())
            .sum::<usize>()
    };
    assert!(size(&v2_answer.records) + 60 * v1_answer.records.len() <= size(&v1_answer.records));
    for (bare, whole) in v2_answer.records.iter().zip(&v1_answer.records) {
        assert!(bare.heads.is_empty());
        let (_, rebuilt) = gridsync_core::sync::bare::rebuild(&bare.bytes).unwrap();
        assert_eq!(rebuilt, whole.bytes);
    }
    // Version 2 without: as version 1, plus an empty digest.
    req.bare_docs = false;
    let plain = protocol::decode_response(&post("2", protocol::encode(&req).unwrap()), 2).unwrap();
    assert!(plain.docs_digest.is_none());
    assert_eq!(plain.records, v1_answer.records);
}

/// A bootstrap in pages of 1 KiB of a township where records were edited after they were
/// created (here: the server's possible-duplicate marks on namesakes): the records whose
/// feed entry comes after the cursor but which entered the grid before it are asked for
/// whole (`want_full`), more of them than one small page holds. The ones the server leaves
/// for the next page must be asked for again, or they are lost for good.
#[test]
fn a_bootstrap_in_small_pages_asks_again_for_what_a_page_left_out() {
    use gridsync_core::sync::{CancelFlag, SyncEngine};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let url = server.url();
    let phone = |name: &str, role: Role, grid: &str| {
        let p = Phone::enrol(
            &server,
            &url,
            dir.path(),
            name,
            &person_in(&data, role, grid).id,
        );
        p.sync().unwrap();
        p
    };
    let l1 = phone("l1", Role::Liaison, "DEMO-T01-V01");
    let l2 = phone("l2", Role::Liaison, "DEMO-T01-V02");
    for _ in 0..8 {
        for l in [&l1, &l2] {
            let grid = l.person.grids[0].clone();
            l.store
                .create_producer(new_producer("乌力吉家庭牧场", &grid, &l.person.id))
                .unwrap();
            l.sync().unwrap();
        }
    }
    let whole = phone("whole", Role::Supervisor, "DEMO-T01");
    let small = Phone::enrol(
        &server,
        &url,
        dir.path(),
        "small",
        &person_in(&data, Role::Supervisor, "DEMO-T01").id,
    );
    let mut e = SyncEngine::new(&small.store, &small.transport);
    e.first_page_bytes = 1024;
    e.min_page_bytes = 1024;
    e.max_page_bytes = 1024;
    let r = e.sync(&mut |_| {}, &CancelFlag::new()).unwrap();
    let want = whole.store.record_ids().unwrap();
    assert!(want.len() > 40, "{} records", want.len());
    assert_eq!(small.store.record_ids().unwrap(), want, "{r:?}");
    assert_eq!(r.pulled as usize, want.len());
}
