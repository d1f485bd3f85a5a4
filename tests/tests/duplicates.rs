//! Possible duplicates across phones that were offline (issue 16): a real server on
//! 127.0.0.1, phones with real SQLite files. Two liaisons of neighbouring villages register
//! the same cooperative while offline; after syncing, both see the server's mark. A
//! supervisor resolves it ("duplicate of": a tombstone pointing to the other entry, or "not
//! a duplicate": closed for good); an edit of the tombstone made on a phone that had not
//! yet seen the merge is carried to the surviving entry, or left there as a conflict that a
//! person settles; nothing is lost. Crafted pushes cannot forge marks, resolutions or
//! merges.

#![allow(clippy::unwrap_used)]

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    DuplicateMark, DuplicateOutcome, DuplicateResolution, MergedInto, Producer, ProducerType,
    Record, Role,
};
use gridsync_core::sync::protocol::{PushOutcome, RejectCode};
use gridsync_core::Error;
use gridsync_server::storage::Storage;
use gridsync_tests::*;

const V01: &str = "DEMO-T01-V01";
const V02: &str = "DEMO-T01-V02";

struct World {
    _dir: tempfile::TempDir,
    server: TestServer,
    /// Liaison of V01.
    l1: Phone,
    /// Liaison of V02 (a neighbouring village of the same township).
    l2: Phone,
    /// Supervisor of the township.
    sp: Phone,
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
    let l1 = phone("l1", Role::Liaison, V01);
    let l2 = phone("l2", Role::Liaison, V02);
    let sp = phone("sp", Role::Supervisor, "DEMO-T01");
    World {
        _dir: dir,
        server,
        l1,
        l2,
        sp,
    }
}

impl World {
    fn storage(&self) -> &dyn Storage {
        self.server.storage.as_ref()
    }

    fn stored(&self, id: &str) -> Producer {
        stored_in(self.storage(), id).unwrap_or_else(|| panic!("{id} is not stored"))
    }
}

/// The producer `id` as `storage` holds it, `None` if it holds none.
fn stored_in(storage: &dyn Storage, id: &str) -> Option<Producer> {
    let s = storage.record(id).unwrap()?;
    match RecordDoc::load(&s.doc, &[]).unwrap().read().unwrap() {
        Record::Producer(p) => Some(p),
        other => panic!("{id} is a {}", other.kind().as_str()),
    }
}

/// A valid unified social credit code ending in `serial`.
fn credit_code(serial: &str) -> String {
    let first = format!("93150000MA0{serial:0>6}");
    let check = gridsync_core::validate::uscc_check_char(&first).unwrap();
    format!("{first}{check}")
}

fn coop(name: &str, grid: &str, by: &str, code: &str, phone: &str, owner: &str) -> Producer {
    let mut p = new_producer(name, grid, by);
    p.producer_type = ProducerType::Cooperative;
    p.credit_code = Some(code.into());
    p.id_number = None;
    p.phone = phone.into();
    p.owner = owner.into();
    p
}

fn mark_on<'a>(p: &'a Producer, other: &str) -> &'a DuplicateMark {
    p.duplicates
        .iter()
        .find(|m| m.id == other)
        .unwrap_or_else(|| panic!("{} has no mark for {other}: {:?}", p.id, p.duplicates))
}

fn push(phone: &Phone, p: gridsync_core::sync::protocol::PushRecord) -> PushOutcome {
    raw_sync(phone, vec![p], vec![]).unwrap().results[0]
        .outcome
        .clone()
}

#[track_caller]
fn assert_refused(outcome: &PushOutcome, code: RejectCode, what: &str) {
    match outcome {
        PushOutcome::Rejected { code: c, .. } => assert_eq!(*c, code, "{what}: {outcome:?}"),
        PushOutcome::Accepted => panic!("{what}: accepted"),
    }
}

#[test]
fn the_same_cooperative_registered_offline_twice_is_marked_merged_and_nothing_is_lost() {
    let w = world();
    let code = credit_code("D00001");
    // Offline, each liaison registers the cooperative of the neighbouring village.
    let mut a = coop(
        "阿巴嘎旗浩日沁牧业专业合作社",
        V01,
        &w.l1.person.id,
        &code,
        "13800000001",
        "巴特尔",
    );
    a.address = String::new();
    let a = w.l1.store.create_producer(a).unwrap();
    let b =
        w.l2.store
            .create_producer(coop(
                "浩日沁牧业合作社",
                V02,
                &w.l2.person.id,
                &code,
                "13900000002",
                "其其格",
            ))
            .unwrap();

    // The liaison of V02 patrols its entry (the visit will count for the surviving entry).
    let visit =
        w.l2.store
            .save_visit(gridsync_core::model::Visit::new(
                &b.id,
                V02,
                &w.l2.person.id,
                &gridsync_core::model::default_template("builtin"),
                gridsync_core::now_ms(),
            ))
            .unwrap();

    // The first to sync finds nothing to match; the second is marked in the same round trip
    // (its pull carries its own entry back with the mark), and the first sees its mark at
    // its next sync.
    w.l1.sync().unwrap();
    assert!(w.l1.store.producer(&a.id).unwrap().duplicates.is_empty());
    w.l2.sync().unwrap();
    let b_phone = w.l2.store.producer(&b.id).unwrap();
    let m = mark_on(&b_phone, &a.id);
    assert!(m.reasons.contains(&"credit_code".to_string()), "{m:?}");
    assert!(m.reasons.contains(&"same_name".to_string()), "{m:?}");
    assert_eq!(m.other_name, a.name);
    assert_eq!(m.other_grid, V01);
    assert!(m.resolution.is_none());
    w.l1.sync().unwrap();
    let a_phone = w.l1.store.producer(&a.id).unwrap();
    assert_eq!(mark_on(&a_phone, &b.id).other_name, b.name);
    assert_eq!(a_phone.open_duplicates().count(), 1);
    // The desk's list: both entries have an open mark.
    let grids = vec![V01.to_string(), V02.to_string()];
    let mut open = w.storage().open_duplicate_ids(&grids, 50).unwrap();
    open.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(open, want);

    // A liaison cannot resolve, on the phone or with a crafted push.
    assert!(matches!(
        w.l1.store.resolve_duplicate(&a.id, &b.id, false),
        Err(Error::Forbidden(_))
    ));
    let me = w.l1.person.id.clone();
    let crafted = push_edit_of_stored(w.storage(), &a.id, &w.l1, |r| {
        let Record::Producer(p) = r else {
            unreachable!()
        };
        p.duplicates[0].resolution = Some(DuplicateResolution {
            outcome: DuplicateOutcome::NotDuplicate,
            by: me.clone(),
            at_ms: gridsync_core::now_ms(),
        });
    });
    assert_refused(
        &push(&w.l1, crafted),
        RejectCode::Forbidden,
        "a liaison's resolution",
    );
    assert!(w.stored(&a.id).duplicates[0].resolution.is_none());

    // The liaison of V02, still offline, edits its entry: an address where the other entry
    // has none, and a phone number where the other entry has its own.
    let mut edited = w.l2.store.producer(&b.id).unwrap();
    edited.address = "别力古台镇巴彦嘎查3组".into();
    edited.phone = "13900000003".into();
    w.l2.store.update_producer(edited).unwrap();

    // Meanwhile the supervisor decides that V02's entry is a duplicate of V01's.
    w.sp.sync().unwrap();
    let merged = w.sp.store.resolve_duplicate(&b.id, &a.id, true).unwrap();
    assert_eq!(merged.merged_into.as_ref().unwrap().into, a.id);
    assert!(merged.is_merged());
    let r = w.sp.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    // The other side's mark is mirrored.
    let a_stored = w.stored(&a.id);
    assert_eq!(
        mark_on(&a_stored, &b.id)
            .resolution
            .as_ref()
            .unwrap()
            .outcome,
        DuplicateOutcome::OtherMergedHere
    );
    assert_eq!(
        mark_on(&a_stored, &b.id).resolution.as_ref().unwrap().by,
        w.sp.person.id
    );

    // The offline edit arrives after the merge: it is accepted (its author had not seen the
    // merge) and carried to the surviving entry: the address applied (it had none), the
    // phone left as a conflict (it had its own).
    let r = w.l2.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let a_stored = w.stored(&a.id);
    assert_eq!(a_stored.address, "别力古台镇巴彦嘎查3组");
    assert_eq!(a_stored.phone, "13800000001");
    assert_eq!(
        a_stored.carried_edits.len(),
        2,
        "{:?}",
        a_stored.carried_edits
    );
    let applied = a_stored
        .carried_edits
        .iter()
        .find(|e| e.field == "address")
        .unwrap();
    assert!(applied.applied);
    assert_eq!(applied.from, b.id);
    let conflict = a_stored
        .carried_edits
        .iter()
        .find(|e| e.field == "phone")
        .unwrap()
        .clone();
    assert!(!conflict.applied);
    assert_eq!(conflict.value, "\"13900000003\"");
    // The tombstone keeps the edit too, and records it as carried (it is carried once).
    let b_stored = w.stored(&b.id);
    assert_eq!(b_stored.phone, "13900000003");
    let seen = &b_stored.merged_into.as_ref().unwrap().seen;
    assert_eq!(
        seen.iter().find(|s| s.id == "phone").unwrap().value,
        "\"13900000003\""
    );
    // Another sync carries nothing again.
    w.l2.sync().unwrap();
    assert_eq!(w.stored(&a.id).carried_edits.len(), 2);

    // On the supervisor's phone the tombstone leaves the directory's lists, and its visit
    // is in the surviving entry's history (the visit still names the tombstone).
    w.sp.sync().unwrap();
    let listed: Vec<String> =
        w.sp.store
            .producers_in_grid(
                "DEMO-T01",
                gridsync_core::store::ProducerSort::Name,
                1000,
                0,
            )
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
    assert!(listed.contains(&a.id) && !listed.contains(&b.id));
    let history = w.sp.store.visit_history(&a.id).unwrap();
    assert!(
        history
            .iter()
            .any(|v| v.id == visit.id && v.producer_id == b.id),
        "{history:?}"
    );
    assert!(w
        .sp
        .store
        .search_producers("浩日沁", 10)
        .unwrap()
        .iter()
        .all(|p| p.id != b.id));

    // The liaison's phone now knows the entry is merged and refuses to edit it.
    let b_phone = w.l2.store.producer(&b.id).unwrap();
    assert_eq!(b_phone.merged_into.as_ref().unwrap().into, a.id);
    let mut again = b_phone.clone();
    again.owner = "另一个人".into();
    assert!(matches!(
        w.l2.store.update_producer(again),
        Err(Error::Workflow(_))
    ));
    // A crafted edit made after seeing the merge is refused by the server too.
    let crafted = push_edit_of_stored(w.storage(), &b.id, &w.l2, |r| {
        let Record::Producer(p) = r else {
            unreachable!()
        };
        p.owner = "另一个人".into();
    });
    assert_refused(
        &push(&w.l2, crafted),
        RejectCode::Workflow,
        "an edit of a tombstone made after the merge",
    );

    // The supervisor takes the carried phone number; the conflict closes in their name.
    w.sp.sync().unwrap();
    let a_sp =
        w.sp.store
            .settle_carried_edit(&a.id, &conflict.id, true)
            .unwrap();
    assert_eq!(a_sp.phone, "13900000003");
    let r = w.sp.sync().unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let a_stored = w.stored(&a.id);
    assert_eq!(a_stored.phone, "13900000003");
    let settled = a_stored
        .carried_edits
        .iter()
        .find(|e| e.id == conflict.id)
        .unwrap();
    assert_eq!(settled.settled_by.as_deref(), Some(w.sp.person.id.as_str()));
    // The merge is not undone, and the desk's list holds no open mark any more.
    assert!(w.stored(&b.id).is_merged());
    assert!(w
        .storage()
        .open_duplicate_ids(&grids, 50)
        .unwrap()
        .is_empty());
    // Every phone ends with the server's copy.
    for p in [&w.l1, &w.l2, &w.sp] {
        p.sync().unwrap();
    }
    assert_eq!(w.l1.store.producer(&a.id).unwrap(), w.stored(&a.id));
    assert_eq!(w.sp.store.producer(&b.id).unwrap(), w.stored(&b.id));
}

#[test]
fn not_a_duplicate_closes_both_marks_for_good() {
    let w = world();
    let c =
        w.l1.store
            .create_producer(coop(
                "青山家庭牧场",
                V01,
                &w.l1.person.id,
                &credit_code("D00002"),
                "13800000011",
                "乌力吉",
            ))
            .unwrap();
    w.l1.sync().unwrap();
    let d =
        w.l2.store
            .create_producer(coop(
                "青山牧场",
                V02,
                &w.l2.person.id,
                &credit_code("D00003"),
                "13900000012",
                "娜仁",
            ))
            .unwrap();
    w.l2.sync().unwrap();
    let d_phone = w.l2.store.producer(&d.id).unwrap();
    assert_eq!(
        mark_on(&d_phone, &c.id).reasons,
        vec!["same_name".to_string()]
    );

    w.sp.sync().unwrap();
    w.sp.store.resolve_duplicate(&d.id, &c.id, false).unwrap();
    // Resolved once: a second resolution is refused.
    assert!(matches!(
        w.sp.store.resolve_duplicate(&d.id, &c.id, true),
        Err(Error::Workflow(_))
    ));
    w.sp.sync().unwrap();
    let c_stored = w.stored(&c.id);
    let r = mark_on(&c_stored, &d.id).resolution.clone().unwrap();
    assert_eq!(r.outcome, DuplicateOutcome::NotDuplicate);
    assert_eq!(c_stored.open_duplicates().count(), 0);

    // An edit of either entry (a name closer still) does not bring the mark back.
    w.l2.sync().unwrap();
    let mut d2 = w.l2.store.producer(&d.id).unwrap();
    d2.name = "青山家庭牧场".into();
    w.l2.store.update_producer(d2).unwrap();
    w.l2.sync().unwrap();
    let d_stored = w.stored(&d.id);
    assert_eq!(d_stored.duplicates.len(), 1);
    assert_eq!(d_stored.open_duplicates().count(), 0);
    let grids = vec![V01.to_string(), V02.to_string()];
    assert!(w
        .storage()
        .open_duplicate_ids(&grids, 50)
        .unwrap()
        .is_empty());
}

#[test]
fn crafted_pushes_cannot_forge_marks_or_merges() {
    let w = world();
    let e =
        w.l1.store
            .create_producer(coop(
                "白音锡勒养殖合作社",
                V01,
                &w.l1.person.id,
                &credit_code("D00004"),
                "13800000021",
                "图雅",
            ))
            .unwrap();
    w.l1.sync().unwrap();
    // A mark written by a device (even a supervisor's) is refused.
    let sp = w.sp.person.id.clone();
    let forged = push_edit_of_stored(w.storage(), &e.id, &w.sp, |r| {
        let Record::Producer(p) = r else {
            unreachable!()
        };
        p.duplicates.push(DuplicateMark {
            id: "someone-else".into(),
            other_name: "某某".into(),
            other_grid: V02.into(),
            reasons: vec!["credit_code".into()],
            score: 95,
            found_at_ms: gridsync_core::now_ms(),
            resolution: None,
        });
    });
    w.sp.sync().unwrap();
    assert_refused(&push(&w.sp, forged), RejectCode::Forbidden, "a forged mark");
    // A merge without a mark resolved as "duplicate of" is refused.
    let forged = push_edit_of_stored(w.storage(), &e.id, &w.sp, |r| {
        let Record::Producer(p) = r else {
            unreachable!()
        };
        p.merged_into = Some(MergedInto {
            into: "someone-else".into(),
            by: sp.clone(),
            at_ms: gridsync_core::now_ms(),
            seen: p.seen_fields(),
        });
    });
    assert_refused(
        &push(&w.sp, forged),
        RejectCode::Workflow,
        "a merge without a mark",
    );
    // A liaison's merge is refused whatever it names.
    let me = w.l1.person.id.clone();
    let forged = push_edit_of_stored(w.storage(), &e.id, &w.l1, |r| {
        let Record::Producer(p) = r else {
            unreachable!()
        };
        p.merged_into = Some(MergedInto {
            into: "someone-else".into(),
            by: me.clone(),
            at_ms: gridsync_core::now_ms(),
            seen: p.seen_fields(),
        });
    });
    assert_refused(
        &push(&w.l1, forged),
        RejectCode::Forbidden,
        "a liaison's merge",
    );
    let stored = w.stored(&e.id);
    assert!(stored.duplicates.is_empty() && stored.merged_into.is_none());
}

#[test]
fn after_a_restore_the_phones_hand_back_the_servers_own_changes() {
    let w = world();
    // The backup is taken before the pair exists (marked as `admin backup` writes it).
    let backup = w._dir.path().join("backup.db");
    let World {
        _dir,
        server,
        l1,
        l2,
        sp,
    } = w;
    let server = server.backup(&backup, true);
    let code = credit_code("D00005");
    let a = l1
        .store
        .create_producer(coop(
            "巴彦查干牧业合作社",
            V01,
            &l1.person.id,
            &code,
            "13800000031",
            "额尔敦",
        ))
        .unwrap();
    l1.sync().unwrap();
    let b = l2
        .store
        .create_producer(coop(
            "巴彦查干合作社",
            V02,
            &l2.person.id,
            &code,
            "13900000032",
            "萨仁",
        ))
        .unwrap();
    l2.sync().unwrap();
    l1.sync().unwrap();
    // Each phone edits its entry after receiving the server's mark: these edits depend on
    // the server's change.
    let mut e = l1.store.producer(&a.id).unwrap();
    assert_eq!(e.open_duplicates().count(), 1);
    e.address = "恢复前的地址".into();
    l1.store.update_producer(e).unwrap();
    l1.sync().unwrap();

    // The server is restored from the older backup: the pair, the marks and the edit are
    // gone from it.
    let server = server.restore(&backup);
    assert!(stored_in(server.storage.as_ref(), &a.id).is_none());
    for p in [&l1, &l2, &l1, &l2] {
        let r = p.sync().unwrap();
        assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    }
    // The phones handed everything back, the server's own changes included (their tags
    // verify), so nothing waits.
    let storage = server.storage.as_ref();
    for id in [&a.id, &b.id] {
        let p = stored_in(storage, id).expect("handed back");
        assert_eq!(p.duplicates.len(), 1, "{id}: {:?}", p.duplicates);
    }
    assert_eq!(l1.store.counts().unwrap().unsynced, 0);
    assert_eq!(l2.store.counts().unwrap().unsynced, 0);
    assert_eq!(stored_in(storage, &a.id).unwrap().address, "恢复前的地址");
    // A change under the server's actor with a made-up tag is still refused: the crafted
    // push is told to wait for its author, and nothing is stored.
    let forged = {
        let stored = server.storage.record(&a.id).unwrap().unwrap();
        let mut doc = RecordDoc::load(&stored.doc, &[]).unwrap();
        doc.set_actor(&gridsync_core::device_actor(
            gridsync_server::duplicates::SERVER_DEVICE,
        ));
        let before = doc.heads();
        let mut rec = doc.read().unwrap();
        let Record::Producer(p) = &mut rec else {
            unreachable!()
        };
        p.duplicates[0].resolution = Some(DuplicateResolution {
            outcome: DuplicateOutcome::NotDuplicate,
            by: sp.person.id.clone(),
            at_ms: gridsync_core::now_ms(),
        });
        doc.update(
            &rec,
            &format!("gridsync-server#{}", "ab".repeat(32)),
            gridsync_core::now_ms(),
        )
        .unwrap();
        gridsync_core::sync::protocol::PushRecord {
            id: a.id.clone(),
            kind: rec.kind().tag(),
            changes: doc.save_after(&before),
            heads: doc.heads().iter().map(|h| h.0).collect(),
        }
    };
    assert_refused(
        &push(&l1, forged),
        RejectCode::MissingDeps,
        "a forged server change",
    );
    assert!(stored_in(storage, &a.id).unwrap().duplicates[0]
        .resolution
        .is_none());
    drop(server);
}

#[test]
fn namesakes_pushed_together_are_paired_once_and_a_check_marks_at_most_its_bound() {
    use gridsync_server::duplicates::MAX_NEW_MARKS;
    let w = world();
    // Offline, a liaison registers eight ranches of herders all called 乌力吉 (their codes
    // and phones differ): one push carries them all.
    let n = 8;
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let mut p = new_producer("乌力吉家庭牧场", V01, &w.l1.person.id);
            p.owner = format!("乌力吉{i}");
            w.l1.store.create_producer(p).unwrap().id
        })
        .collect();
    w.l1.sync().unwrap();
    let mut pairs = std::collections::BTreeSet::new();
    for id in &ids {
        let p = w.stored(id);
        let mut seen = std::collections::BTreeSet::new();
        for m in &p.duplicates {
            assert!(
                seen.insert(m.id.clone()),
                "{id} is marked twice for {}",
                m.id
            );
            assert_eq!(m.reasons, vec!["same_name".to_string()]);
            // Both sides of every pair.
            let other = w.stored(&m.id);
            assert_eq!(mark_on(&other, id).id, *id);
            pairs.insert(if *id < m.id {
                (id.clone(), m.id.clone())
            } else {
                (m.id.clone(), id.clone())
            });
        }
        assert!(!p.duplicates.is_empty(), "{id} has no mark");
    }
    // Each entry's check added at most its bound.
    assert!(pairs.len() <= n * MAX_NEW_MARKS, "{} pairs", pairs.len());
    // The liaison's phone holds the server's marks after that same sync's pull.
    assert!(!w.l1.store.producer(&ids[0]).unwrap().duplicates.is_empty());

    // A ninth namesake, pushed alone later, is marked against the bound's number of them.
    let ninth =
        w.l2.store
            .create_producer(new_producer("乌力吉家庭牧场", V02, &w.l2.person.id))
            .unwrap();
    w.l2.sync().unwrap();
    let stored = w.stored(&ninth.id);
    assert_eq!(
        stored.duplicates.len(),
        MAX_NEW_MARKS,
        "{:?}",
        stored.duplicates
    );
    for m in &stored.duplicates {
        assert!(ids.contains(&m.id));
        assert_eq!(mark_on(&w.stored(&m.id), &ninth.id).id, ninth.id);
    }
}
