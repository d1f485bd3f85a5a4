//! Township acceptance (达标验收) against crafted pushes, in the style of
//! `hostile_judgement.rs`: bodies made here with a real device's credential, sent over HTTP
//! to a real server on 127.0.0.1. Only county staff (in their scope) and administrators
//! decide; a supervisor's or a liaison's device is refused whatever it pushes, and nothing
//! is stored. A decision made by the county reaches the township's phones, the liaison's
//! included (their village lies below the township).

#![allow(clippy::unwrap_used)]

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{Acceptance, AcceptanceDecision, Record, Role};
use gridsync_core::sync::protocol::{PushOutcome, RejectCode};
use gridsync_server::storage::Storage;
use gridsync_tests::*;

struct World {
    _dir: tempfile::TempDir,
    server: TestServer,
    /// Liaison of village V01 of township T01.
    lp: Phone,
    /// Supervisor of T01.
    sp: Phone,
    /// County reviewer.
    cp: Phone,
}

const TOWNSHIP: &str = "DEMO-T01";

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
    let sp = phone("supervisor", Role::Supervisor, TOWNSHIP);
    let cp = phone("county", Role::CountyReviewer, "DEMO");
    World {
        _dir: dir,
        server,
        lp,
        sp,
        cp,
    }
}

impl World {
    fn storage(&self) -> &dyn Storage {
        self.server.storage.as_ref()
    }

    fn stored(&self, id: &str) -> Option<Acceptance> {
        let s = self.storage().record(id).unwrap()?;
        match RecordDoc::load(&s.doc, &[]).unwrap().read().unwrap() {
            Record::Acceptance(a) => Some(a),
            other => panic!("{id} is a {}", other.kind().as_str()),
        }
    }
}

fn acceptance(grid: &str, year: i32, by: &str, decision: AcceptanceDecision) -> Acceptance {
    Acceptance {
        id: Acceptance::record_id(grid, year),
        grid: grid.into(),
        year,
        decision,
        decided_on: format!("{year}-12-20"),
        decided_by: by.into(),
        note: "现场核查，材料齐全".into(),
        updated_at_ms: gridsync_core::now_ms(),
    }
}

fn push(phone: &Phone, p: gridsync_core::sync::protocol::PushRecord) -> PushOutcome {
    let r = raw_sync(phone, vec![p], vec![]).unwrap();
    r.results[0].outcome.clone()
}

#[track_caller]
fn assert_refused(outcome: &PushOutcome, code: RejectCode, what: &str) {
    match outcome {
        PushOutcome::Rejected { code: c, .. } => assert_eq!(*c, code, "{what}: {outcome:?}"),
        PushOutcome::Accepted => panic!("{what}: accepted"),
    }
}

#[test]
fn only_county_staff_decide_township_acceptance() {
    let w = world();
    let id = Acceptance::record_id(TOWNSHIP, 2024);

    // The supervisor's device pushes an acceptance of its own township, naming itself or
    // the county reviewer as the one who decided: refused by the rules, nothing stored.
    for by in [&w.sp.person.id, &w.cp.person.id] {
        let a = acceptance(TOWNSHIP, 2024, by, AcceptanceDecision::Accepted);
        let out = push(&w.sp, push_new(&Record::Acceptance(a), &w.sp));
        assert_refused(&out, RejectCode::Forbidden, "a supervisor's acceptance");
    }
    // The liaison's device: the township is not even in its scope.
    let a = acceptance(
        TOWNSHIP,
        2024,
        &w.lp.person.id,
        AcceptanceDecision::Accepted,
    );
    let out = push(&w.lp, push_new(&Record::Acceptance(a), &w.lp));
    assert_refused(&out, RejectCode::Forbidden, "a liaison's acceptance");
    assert!(w.stored(&id).is_none(), "nothing stored");

    // The county reviewer may not decide on a village, nor name someone else, nor file the
    // decision under another record id.
    let village = &w.lp.person.grids[0];
    let a = acceptance(village, 2024, &w.cp.person.id, AcceptanceDecision::Accepted);
    let out = push(&w.cp, push_new(&Record::Acceptance(a), &w.cp));
    assert_refused(&out, RejectCode::Invalid, "an acceptance of a village");
    let a = acceptance(
        TOWNSHIP,
        2024,
        &w.sp.person.id,
        AcceptanceDecision::Accepted,
    );
    let out = push(&w.cp, push_new(&Record::Acceptance(a), &w.cp));
    assert_refused(
        &out,
        RejectCode::Forbidden,
        "a decision naming another person",
    );
    let mut a = acceptance(
        TOWNSHIP,
        2024,
        &w.cp.person.id,
        AcceptanceDecision::Accepted,
    );
    a.id = "acc:somewhere-else".into();
    let out = push(&w.cp, push_new(&Record::Acceptance(a), &w.cp));
    assert_refused(&out, RejectCode::Invalid, "an acceptance under another id");

    // The county reviewer's phone records it: accepted, in the township's feed.
    let a = acceptance(
        TOWNSHIP,
        2024,
        &w.cp.person.id,
        AcceptanceDecision::Accepted,
    );
    w.cp.store.save_acceptance(a).unwrap();
    let r = w.cp.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let stored = w.stored(&id).unwrap();
    assert_eq!(stored.decision, AcceptanceDecision::Accepted);
    let rows = w
        .storage()
        .acceptances(&[TOWNSHIP.to_string()], 2024)
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].decided_by, w.cp.person.id);

    // The supervisor and the liaison receive it (the liaison from the township above).
    for p in [&w.sp, &w.lp] {
        p.sync().unwrap();
        let got = p.store.acceptances(TOWNSHIP).unwrap();
        assert_eq!(got.len(), 1, "{}", p.person.id);
        assert_eq!(got[0], stored, "{}", p.person.id);
        // A kind without a query table on the phone: a full check finds nothing amiss.
        let check = p
            .store
            .check_integrity(gridsync_core::store::IntegrityLevel::Full, false)
            .unwrap();
        assert!(check.tables.is_empty(), "{:?}", check.tables);
        assert!(check.documents_checked > 0);
    }

    // A supervisor's change of the stored decision (withdrawing it, as itself or in the
    // county reviewer's name) is refused; the decision stands.
    for by in [w.sp.person.id.clone(), w.cp.person.id.clone()] {
        let p = push_edit_of_stored(w.storage(), &id, &w.sp, |r| {
            let Record::Acceptance(a) = r else {
                unreachable!()
            };
            a.decision = AcceptanceDecision::Withdrawn;
            a.decided_by = by.clone();
        });
        assert_refused(
            &push(&w.sp, p),
            RejectCode::Forbidden,
            "a supervisor's withdrawal",
        );
    }
    // A change of the township or the year is refused even for the county reviewer.
    let p = push_edit_of_stored(w.storage(), &id, &w.cp, |r| {
        let Record::Acceptance(a) = r else {
            unreachable!()
        };
        a.year = 2025;
        a.id = Acceptance::record_id(&a.grid, 2025);
    });
    assert!(matches!(push(&w.cp, p), PushOutcome::Rejected { .. }));
    assert_eq!(w.stored(&id).unwrap(), stored, "the decision stands");

    // The phone's own write path refuses the supervisor as the server does.
    let a = acceptance(
        TOWNSHIP,
        2025,
        &w.sp.person.id,
        AcceptanceDecision::Accepted,
    );
    assert!(matches!(
        w.sp.store.save_acceptance(a),
        Err(gridsync_core::Error::Forbidden(_))
    ));

    // The county reviewer withdraws it: accepted, and the phones follow.
    let p = push_edit_of_stored(w.storage(), &id, &w.cp, |r| {
        let Record::Acceptance(a) = r else {
            unreachable!()
        };
        a.decision = AcceptanceDecision::Withdrawn;
    });
    assert_eq!(push(&w.cp, p), PushOutcome::Accepted);
    w.lp.sync().unwrap();
    assert_eq!(
        w.lp.store.acceptances(TOWNSHIP).unwrap()[0].decision,
        AcceptanceDecision::Withdrawn
    );
    let rows = w
        .storage()
        .acceptances(&[TOWNSHIP.to_string()], 2030)
        .unwrap();
    assert_eq!(rows[0].decision, AcceptanceDecision::Withdrawn);
}
