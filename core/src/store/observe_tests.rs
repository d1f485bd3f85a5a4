//! Reads beside writes, and listeners: a read does not wait for an open write transaction
//! (and does with no readers, the old behaviour); each commit reaches a matching listener
//! once, with its ids; filters by kind, grid (and below) and id; a rolled back
//! transaction tells nothing; removals; listeners may read the store; cancelled
//! subscriptions hear nothing more.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::attachment_tests::Phone;
use super::{ChangeOrigin, ProducerSort, RecordChanges, RecordFilter, Store, StoreOptions};
use crate::model::{Producer, ProducerType, RecordKind};
use crate::Error;

const VILLAGE: &str = "152522101201";
const TOWNSHIP: &str = "152522101";

fn listen(s: &Store, filter: RecordFilter) -> (super::Subscription, Receiver<RecordChanges>) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let sub = s
        .observe_records(filter, move |c| {
            tx.lock().unwrap().send(c.clone()).unwrap();
        })
        .unwrap();
    (sub, rx)
}

fn quiet<T: std::fmt::Debug>(rx: &Receiver<T>) {
    match rx.recv_timeout(Duration::from_millis(300)) {
        // Nothing came, or the listener is gone (cancelled) and never will.
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        other => panic!("expected no event, got {other:?}"),
    }
}

fn next<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(5)).unwrap()
}

fn producer(name: &str) -> Producer {
    let mut p = Producer::new(
        name,
        ProducerType::FamilyRanch,
        "乌云",
        "13904790000",
        VILLAGE,
        "",
        crate::now_ms(),
    );
    let first = format!("93152522MA{:07}", rand::random::<u32>() % 10_000_000);
    let check = crate::validate::uscc_check_char(&first).unwrap();
    p.credit_code = Some(format!("{first}{check}"));
    p
}

/// Holds a write transaction open on another thread until the returned sender is used.
fn hold_write(s: &Arc<Store>) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (started_tx, started) = channel();
    let (release, released) = channel::<()>();
    let s2 = Arc::clone(s);
    let h = std::thread::spawn(move || {
        s2.write(|tx| {
            tx.execute("UPDATE producers SET name = name", [])?;
            started_tx.send(()).unwrap();
            released.recv().unwrap();
            Ok(())
        })
        .unwrap();
    });
    started.recv().unwrap();
    (release, h)
}

#[test]
fn a_read_does_not_wait_for_an_open_write_transaction() {
    let phone = Phone::new();
    let path = phone.path.clone();
    drop(phone.s);
    for readers in [super::DEFAULT_READERS, 0] {
        let s = Arc::new(
            Store::open_with(
                &path,
                StoreOptions {
                    readers,
                    check_at_open: false,
                },
            )
            .unwrap(),
        );
        let (release, writer) = hold_write(&s);
        let (done_tx, done) = channel();
        let s2 = Arc::clone(&s);
        let reader = std::thread::spawn(move || {
            let page = s2
                .producers_in_grid(TOWNSHIP, ProducerSort::Name, 50, 0)
                .unwrap();
            done_tx.send(page.len()).unwrap();
        });
        let during = done.recv_timeout(Duration::from_millis(500));
        release.send(()).unwrap();
        writer.join().unwrap();
        reader.join().unwrap();
        if readers > 0 {
            assert_eq!(during, Ok(1), "the read finished while the write was open");
        } else {
            assert_eq!(
                during,
                Err(RecvTimeoutError::Timeout),
                "with no readers a read waits for the writer"
            );
            assert_eq!(done.recv().unwrap(), 1);
        }
    }
}

#[test]
fn readers_see_each_commit_and_a_failed_read_does_not_leak_a_connection() {
    let phone = Phone::new();
    let s = &phone.s;
    for i in 0..(super::DEFAULT_READERS * 3) {
        let p = s.create_producer(producer(&format!("牧户{i}"))).unwrap();
        // Read-your-writes on whichever reader the pool hands out.
        assert_eq!(s.producer(&p.id).unwrap().name, format!("牧户{i}"));
        // A read that fails in SQLite gives its connection up rather than back.
        let e = s.read(|c| Ok(c.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')", [])?));
        assert!(
            matches!(e, Err(Error::Storage(_))),
            "readers are query-only: {e:?}"
        );
    }
    let all = s
        .producers_in_grid(TOWNSHIP, ProducerSort::Name, 100, 0)
        .unwrap();
    assert_eq!(all.len(), 1 + super::DEFAULT_READERS * 3);
}

#[test]
fn each_commit_reaches_a_matching_listener_once_with_its_ids() {
    let phone = Phone::new();
    let s = &phone.s;
    let (_all, all) = listen(s, RecordFilter::default());
    let (_mine, mine) = listen(
        s,
        RecordFilter {
            id: Some(phone.pid.clone()),
            ..RecordFilter::default()
        },
    );
    let (_visits, visits) = listen(
        s,
        RecordFilter {
            kind: Some(RecordKind::Visit),
            ..RecordFilter::default()
        },
    );
    let (_township, township) = listen(
        s,
        RecordFilter {
            grid: Some(TOWNSHIP.into()),
            kind: Some(RecordKind::Producer),
            ..RecordFilter::default()
        },
    );
    let (_elsewhere, elsewhere) = listen(
        s,
        RecordFilter {
            grid: Some("152522102".into()),
            ..RecordFilter::default()
        },
    );

    // An edit of the existing producer.
    let mut p = s.producer(&phone.pid).unwrap();
    p.address = "嘎查东头".into();
    s.update_producer(p).unwrap();
    for rx in [&all, &mine, &township] {
        let c = next(rx);
        assert_eq!(c.origin, ChangeOrigin::Local);
        assert_eq!(c.ids(), vec![phone.pid.clone()]);
        assert!(!c.records[0].removed);
        assert_eq!(c.records[0].grid, VILLAGE);
    }

    // A batch of three new producers is one commit: one event with three ids.
    let made = s
        .create_producers(vec![producer("甲"), producer("乙"), producer("丙")])
        .unwrap();
    let want: Vec<String> = made.iter().map(|p| p.id.clone()).collect();
    assert_eq!(next(&all).ids(), want);
    assert_eq!(next(&township).ids(), want);

    // A visit reaches the visit listener, not the producer-only one.
    let v = phone.visit_with(&[]).unwrap();
    assert_eq!(next(&visits).ids(), vec![v.id.clone()]);
    assert_eq!(next(&all).ids(), vec![v.id.clone()]);

    for rx in [&all, &mine, &visits, &township, &elsewhere] {
        quiet(rx);
    }
}

#[test]
fn a_rolled_back_write_tells_nothing_and_a_removal_is_told() {
    let phone = Phone::new();
    let s = &phone.s;
    let (_sub, rx) = listen(s, RecordFilter::default());
    let rec = s.record(&phone.pid).unwrap();
    let failed: crate::Result<()> = s.write(|tx| {
        super::documents::materialize(tx, &rec)?;
        Err(Error::Workflow("changed my mind".into()))
    });
    assert!(failed.is_err());
    quiet(&rx);

    s.set_aside(&phone.pid, "test: damaged").unwrap();
    let c = next(&rx);
    assert_eq!(c.ids(), vec![phone.pid.clone()]);
    assert!(c.records[0].removed);
    assert_eq!(c.records[0].kind, RecordKind::Producer);
    assert_eq!(c.records[0].grid, VILLAGE);
}

#[test]
fn a_listener_may_read_the_store_and_a_cancelled_one_hears_nothing() {
    let phone = Phone::new();
    let s = Arc::new(phone.s);
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let reader = Arc::clone(&s);
    let sub = s
        .observe_records(RecordFilter::default(), move |c| {
            // Reading inside the callback: no transaction is open on this thread.
            let names: Vec<String> = c
                .ids()
                .iter()
                .map(|id| reader.producer(id).unwrap().name)
                .collect();
            tx.lock().unwrap().send(names).unwrap();
        })
        .unwrap();
    let p = s.create_producer(producer("额尔敦")).unwrap();
    assert_eq!(next(&rx), vec!["额尔敦".to_string()]);
    sub.cancel();
    let mut p = s.producer(&p.id).unwrap();
    p.address = "新址".into();
    s.update_producer(p).unwrap();
    quiet(&rx);
}

#[test]
fn a_panicking_listener_does_not_stop_the_others() {
    let phone = Phone::new();
    let s = &phone.s;
    let _bad = s
        .observe_records(RecordFilter::default(), |_| panic!("listener bug"))
        .unwrap();
    let (_good, rx) = listen(s, RecordFilter::default());
    for name in ["一", "二"] {
        let p = s.create_producer(producer(name)).unwrap();
        assert_eq!(next(&rx).ids(), vec![p.id]);
    }
}
