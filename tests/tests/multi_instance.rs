//! Scale-out: two server instances on one PostgreSQL database (issue: scale-out).
//!
//! Needs `GRIDSYNC_TEST_POSTGRES` (see `scripts/postgres.sh`); a CI run without it fails.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridsync_core::model::Role;
use gridsync_core::sync::protocol::{self, Cursor, SyncRequest, SyncResponse};
use gridsync_core::sync::{HttpTransport, Transport};
use gridsync_server::storage::testing::test_url_from_env;
use gridsync_tests::*;

/// Two instances sharing one fresh schema.
fn two_instances(dir: &std::path::Path, url: &str) -> (TestServer, TestServer) {
    let a = TestServer::start_with(
        &dir.join("a"),
        "127.0.0.1:0",
        &Backend::Postgres(url.to_string()),
    );
    let b = TestServer::start_sharing(&dir.join("b"), &a);
    (a, b)
}

/// What a device read through raw pulls: every entry, by grid and sequence.
#[derive(Default, Debug)]
struct Reader {
    cursors: BTreeMap<String, (u64, u64)>,
    reference_version: String,
    /// (grid, seq) -> record id (records) or "-id" (departures).
    entries: BTreeMap<(String, u64), String>,
    /// How often each record id arrived.
    arrivals: HashMap<String, u32>,
    pulls: u32,
}

impl Reader {
    fn new(grids: &[String]) -> Reader {
        Reader {
            cursors: grids.iter().map(|g| (g.clone(), (0, 0))).collect(),
            ..Default::default()
        }
    }

    /// One pull page through `transport`; returns whether more waits.
    fn pull(&mut self, transport: &HttpTransport, auth: &str, epoch: &str, page: u32) -> bool {
        let req = SyncRequest {
            epoch: epoch.to_string(),
            reference_version: self.reference_version.clone(),
            push: vec![],
            cursors: self
                .cursors
                .iter()
                .map(|(g, (seq, token))| Cursor {
                    grid: g.clone(),
                    seq: *seq,
                    token: *token,
                })
                .collect(),
            want_full: vec![],
            page_limit: page,
            bare_docs: false,
            page_bytes: 0,
        };
        let answer = transport
            .sync(auth, protocol::encode(&req).unwrap())
            .unwrap();
        let resp: SyncResponse = protocol::decode(&answer).unwrap();
        assert!(!resp.reset, "no reset between instances of one database");
        self.pulls += 1;
        // Known from now on (an answer carrying reference data also asks for another round).
        let new_reference = resp.reference.as_ref().map(|r| r.version.clone());
        for r in &resp.records {
            let (cursor, _) = self.cursors[&r.grid];
            assert!(
                r.seq > cursor,
                "record {} at {}:{} is behind the cursor {cursor}",
                r.id,
                r.grid,
                r.seq
            );
            let prev = self.entries.insert((r.grid.clone(), r.seq), r.id.clone());
            assert!(prev.is_none(), "entry {}:{} arrived twice", r.grid, r.seq);
            *self.arrivals.entry(r.id.clone()).or_default() += 1;
        }
        for d in &resp.departures {
            let prev = self
                .entries
                .insert((d.grid.clone(), d.seq), format!("-{}", d.id));
            assert!(
                prev.is_none(),
                "departure {}:{} arrived twice",
                d.grid,
                d.seq
            );
        }
        for c in &resp.cursors {
            if let Some(cur) = self.cursors.get_mut(&c.grid) {
                assert!(c.seq >= cur.0, "cursor of {} went back", c.grid);
                *cur = (c.seq, c.token);
            }
        }
        match new_reference {
            Some(v) => {
                self.reference_version = v;
                true
            }
            None => resp.more,
        }
    }
}

fn credential(phone: &Phone) -> (String, String) {
    let link = phone.store.server_link().unwrap().unwrap();
    (
        format!("Bearer {}.{}", link.device_id, link.secret),
        link.epoch,
    )
}

#[test]
fn phones_on_different_instances_converge() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(dir.path(), &url);
    let data = small_dataset();
    a.load(&data);
    assert_eq!(
        a.storage.epoch().unwrap(),
        b.storage.epoch().unwrap(),
        "one database, one epoch"
    );
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let v = liaison.grids[0].clone();
    // A code issued through one instance enrols through the other.
    let p1 = Phone::enrol(&a, &b.url(), dir.path(), "p1", &liaison.id);
    let p2 = Phone::enrol(&b, &a.url(), dir.path(), "p2", &liaison.id);
    let sup = Phone::enrol(&a, &b.url(), dir.path(), "sup", &supervisor.id);
    for p in [&p1, &p2, &sup] {
        p.sync().unwrap();
    }
    assert_eq!(snapshot(&p1.store), snapshot(&p2.store));
    // Offline edits on both, one record edited on both.
    let shared = p1
        .store
        .producers_in_grid(&v, gridsync_core::store::ProducerSort::Name, 10, 0)
        .unwrap()[0]
        .id
        .clone();
    let mut x = p1.store.producer(&shared).unwrap();
    x.phone = "13800000001".into();
    p1.store.update_producer(x).unwrap();
    let mut x = p2.store.producer(&shared).unwrap();
    x.address = "经B实例修改".into();
    p2.store.update_producer(x).unwrap();
    let n1 = p1
        .store
        .create_producer(new_producer("甲实例牧场", &v, &liaison.id))
        .unwrap();
    let n2 = p2
        .store
        .create_producer(new_producer("乙实例牧场", &v, &liaison.id))
        .unwrap();
    for _ in 0..2 {
        p1.sync().unwrap();
        p2.sync().unwrap();
        sup.sync().unwrap();
    }
    assert_eq!(snapshot(&p1.store), snapshot(&p2.store));
    let merged = p2.store.producer(&shared).unwrap();
    assert_eq!(
        (merged.phone.as_str(), merged.address.as_str()),
        ("13800000001", "经B实例修改")
    );
    for id in [&n1.id, &n2.id] {
        assert!(
            sup.store.producer(id).is_ok(),
            "the supervisor on instance B has {id}"
        );
        assert!(b.storage.record(id).unwrap().is_some());
    }
    // A device revoked through one instance is refused by the other at once.
    let link = p2.store.server_link().unwrap().unwrap();
    b.storage
        .revoke_device(&link.device_id, "手机丢失", gridsync_core::now_ms())
        .unwrap();
    let err = p2.sync().expect_err("revoked on B, refused by A");
    assert!(
        matches!(
            &err,
            gridsync_core::Error::Server {
                status: 401,
                code: gridsync_core::sync::protocol::ErrorCode::DeviceRevoked,
                ..
            }
        ),
        "{err}"
    );
    // A grid reassignment through one instance reaches scopes cached by the other.
    let mut moved = liaison.clone();
    moved.grids = vec!["DEMO-T01-V02".into()];
    gridsync_server::admin::add_person(b.storage.as_ref(), &moved).unwrap();
    p1.sync().unwrap();
    let profile = p1.store.profile().unwrap().unwrap();
    assert_eq!(
        profile.grids,
        vec!["DEMO-T01-V02".to_string()],
        "instance A saw the change made through B"
    );
}

#[test]
fn a_late_commit_is_never_skipped_by_a_cursor() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(dir.path(), &url);
    let data = small_dataset();
    a.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let other = person_in(&data, Role::Liaison, "DEMO-T01-V02");
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let v = liaison.grids[0].clone();
    let v2 = other.grids[0].clone();
    let slow = Phone::enrol(&a, &a.url(), dir.path(), "slow", &liaison.id);
    let fast = Phone::enrol(&b, &b.url(), dir.path(), "fast", &liaison.id);
    let elsewhere = Phone::enrol(&b, &b.url(), dir.path(), "elsewhere", &other.id);
    let reader_phone = Phone::enrol(&b, &b.url(), dir.path(), "reader", &supervisor.id);
    for p in [&slow, &fast, &elsewhere] {
        p.sync().unwrap();
    }
    let (auth, epoch) = credential(&reader_phone);
    let grids = vec![v.clone(), v2.clone()];
    let mut reader = Reader::new(&grids);
    let tb = HttpTransport::new(&b.url()).unwrap();
    while reader.pull(&tb, &auth, &epoch, 50) {}
    let head = b.storage.feed_head(&v).unwrap();
    assert_eq!(reader.cursors[&v].0, head);

    // Instance A takes the next sequence of the village and holds it uncommitted for 3 s.
    let delay = Duration::from_millis(3000);
    a.storage.set_push_commit_delay(delay);
    let late = slow
        .store
        .create_producer(new_producer("迟提交牧场", &v, &liaison.id))
        .unwrap();
    let t0 = Instant::now();
    let slow_push = std::thread::spawn(move || {
        slow.sync().unwrap();
        (slow, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(600));
    // Meanwhile instance B accepts a push into the same village: it waits for A's commit.
    let early = fast
        .store
        .create_producer(new_producer("先到牧场", &v, &liaison.id))
        .unwrap();
    let fast_push = std::thread::spawn(move || {
        let t = Instant::now();
        fast.sync().unwrap();
        (fast, t.elapsed())
    });
    // A push into another village through B does not wait.
    let t = Instant::now();
    elsewhere
        .store
        .create_producer(new_producer("别村牧场", &v2, &other.id))
        .unwrap();
    elsewhere.sync().unwrap();
    let other_grid = t.elapsed();
    // A reader on B during the hold sees neither of the two (the later one waits behind the
    // earlier sequence), but may see the other village.
    std::thread::sleep(Duration::from_millis(400));
    while reader.pull(&tb, &auth, &epoch, 1) {}
    let held = t0.elapsed();
    assert!(
        held < delay,
        "the reader pulled while A held its sequence ({held:?})"
    );
    assert_eq!(
        reader.cursors[&v].0, head,
        "nothing of the village is visible while its next sequence is uncommitted"
    );
    assert!(!reader.arrivals.contains_key(&late.id) && !reader.arrivals.contains_key(&early.id));
    let (_slow, slow_time) = slow_push.join().unwrap();
    let (_fast, fast_time) = fast_push.join().unwrap();
    assert!(slow_time >= delay, "{slow_time:?}");
    assert!(
        fast_time + Duration::from_millis(600) >= delay,
        "B's push into the held village waited: {fast_time:?}"
    );
    assert!(
        other_grid < delay - Duration::from_millis(1000),
        "another village is not held up: {other_grid:?}"
    );
    a.storage.set_push_commit_delay(Duration::ZERO);
    // Afterwards the reader gets both, in sequence order, each once.
    while reader.pull(&tb, &auth, &epoch, 1) {}
    assert_eq!(
        reader.entries.get(&(v.clone(), head + 1)),
        Some(&late.id),
        "the late commit holds the earlier sequence"
    );
    assert_eq!(reader.entries.get(&(v.clone(), head + 2)), Some(&early.id));
    assert_eq!(reader.arrivals[&late.id], 1);
    assert_eq!(reader.arrivals[&early.id], 1);
    assert_eq!(reader.cursors[&v].0, head + 2);
}

#[test]
fn concurrent_pushes_on_both_instances_reach_a_paging_reader_exactly_once() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(dir.path(), &url);
    let data = small_dataset();
    a.load(&data);
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let villages: Vec<String> = ["DEMO-T01-V01", "DEMO-T01-V02"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let liaisons: Vec<_> = villages
        .iter()
        .map(|v| person_in(&data, Role::Liaison, v))
        .collect();
    // Instance A holds every push open a little: commits arrive late and out of step with B.
    a.storage.set_push_commit_delay(Duration::from_millis(15));
    let urls = [a.url(), b.url()];
    let writers = 6;
    let rounds = 8;
    let per_round = 3;
    let mut phones = Vec::new();
    for w in 0..writers {
        let l = &liaisons[w % liaisons.len()];
        let p = Phone::enrol(&a, &urls[w % 2], dir.path(), &format!("w{w}"), &l.id);
        p.sync().unwrap();
        phones.push((p, l.clone()));
    }
    let reader_phone = Phone::enrol(&a, &b.url(), dir.path(), "reader", &supervisor.id);
    let (auth, epoch) = credential(&reader_phone);
    let created = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    // The reader pages (3 records a page) through both instances in turn while writers push.
    let reader = {
        let (done, urls, villages, auth, epoch) = (
            done.clone(),
            urls.clone(),
            villages.clone(),
            auth.clone(),
            epoch.clone(),
        );
        std::thread::spawn(move || {
            let transports = [
                HttpTransport::new(&urls[0]).unwrap(),
                HttpTransport::new(&urls[1]).unwrap(),
            ];
            let mut r = Reader::new(&villages);
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                r.pull(&transports[i % 2], &auth, &epoch, 3);
                i += 1;
            }
            while r.pull(&transports[i % 2], &auth, &epoch, 3) {
                i += 1;
            }
            r
        })
    };
    let handles: Vec<_> = phones
        .into_iter()
        .enumerate()
        .map(|(w, (phone, person))| {
            let created = created.clone();
            std::thread::spawn(move || {
                for round in 0..rounds {
                    for k in 0..per_round {
                        let p = phone
                            .store
                            .create_producer(new_producer(
                                &unlike_name(w, round, k),
                                &person.grids[0],
                                &person.id,
                            ))
                            .unwrap();
                        created.lock().unwrap().insert(p.id);
                    }
                    let r = phone.sync().unwrap();
                    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
                }
                assert_eq!(phone.store.counts().unwrap().unsynced, 0);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let reader = reader.join().unwrap();
    a.storage.set_push_commit_delay(Duration::ZERO);
    let created = created.lock().unwrap().clone();
    assert_eq!(created.len(), writers * rounds * per_round);
    // Every accepted record arrived exactly once; every feed entry 1..=head was seen once.
    for id in &created {
        assert_eq!(
            reader.arrivals.get(id),
            Some(&1),
            "record {id} arrived {:?} times",
            reader.arrivals.get(id)
        );
    }
    for v in &villages {
        let head = a.storage.feed_head(v).unwrap();
        let seen: Vec<u64> = reader
            .entries
            .keys()
            .filter(|(g, _)| g == v)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            reader.cursors[v].0, head,
            "the reader reached the head of {v}"
        );
        // Records never edited sit at their creation sequence: every one of 1..=head is a
        // record the reader got (the dataset's records and the new ones).
        assert_eq!(
            seen,
            (1..=head).collect::<Vec<u64>>(),
            "feed {v} read without a gap"
        );
    }
    assert!(
        reader.pulls > 10,
        "the reader paged while writers pushed ({} pulls)",
        reader.pulls
    );
    // And a phone syncing through the engine holds exactly the server's records.
    reader_phone.sync_paged(7).unwrap();
    let ids: BTreeSet<String> = reader_phone
        .store
        .record_ids()
        .unwrap()
        .into_iter()
        .collect();
    assert!(created.is_subset(&ids));
}

/// A producer name whose core (three characters, one from each list) is like no other's:
/// the server's duplicate check would otherwise mark namesakes, and a marked record is
/// written again, so it would arrive again (legitimately) in the reader's feed.
fn unlike_name(w: usize, round: usize, k: usize) -> String {
    let pick = |set: &str, i: usize| set.chars().nth(i % set.chars().count()).unwrap_or('甲');
    format!(
        "{}{}{}牧场",
        pick("甲乙丙丁戊己庚辛", w),
        pick("子丑寅卯辰巳午未申酉", round),
        pick("金木水火土", k)
    )
}
