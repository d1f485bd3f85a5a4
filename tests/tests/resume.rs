//! Resume within a page (issue 19, part 1): pages bounded by bytes and sized by the engine
//! from the link it measured, so a link that drops every few seconds still finishes a
//! bootstrap and loses at most a few seconds of transfer per cut.
//!
//! The link is the benchmark's shaping proxy (`bench/gridsync-bench/src/shaper.rs`,
//! compiled in here) cutting every open connection at a fixed interval. The benchmark runs
//! the real figures (64 kbit/s, 300 ms each way, a cut every 10 s, a whole township); this
//! test runs the same link 5 times faster: every time divided by 5 (60 ms each way, a cut
//! every 2 s, a page target of 0.4 s) and the bit rate multiplied by 5 (320 kbit/s), so
//! pages hold as many bytes as on the real link and as many fit between two cuts, with a
//! smaller dataset (3,000 records instead of 19,500).

#[path = "../../bench/gridsync-bench/src/shaper.rs"]
#[allow(dead_code)]
mod shaper;

use std::time::Duration;

use gridsync_core::model::Role;
use gridsync_core::sync::protocol::{self, Cursor, SyncRequest};
use gridsync_core::sync::{CancelFlag, HttpTransport, SyncEngine};
use gridsync_core::Error;
use gridsync_server::dataset::{generate, DatasetSpec};
use gridsync_tests::{person_in, server_and_liaison, Phone, TestServer};

use shaper::{Link, ShapingProxy};

/// Time scale of the test against the benchmark's link.
const SCALE: u32 = 5;

/// The tests of this file run one at a time: the first measures what a cut link costs in
/// time-scaled seconds, and the others' CPU load beside it (debug builds of a server and a
/// phone each) slows its round trips enough to double what it measures (5 % alone, 10 %
/// beside them in one CI run).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn bootstrap_over_a_link_cut_every_few_seconds_finishes_and_loses_little() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = generate(&DatasetSpec {
        townships: 1,
        villages_per_township: 3,
        producers_per_township: 500,
        visits_per_producer: 5,
        ..DatasetSpec::township(19)
    });
    server.load(&data);
    let town = data.townships().next().unwrap().code.clone();
    let supervisor = person_in(&data, Role::Supervisor, &town);

    let mut expected: Vec<String> = data
        .producers
        .iter()
        .map(|p| p.id.clone())
        .chain(data.visits.iter().map(|v| v.id.clone()))
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 3000);

    let link = Link {
        delay: Duration::from_millis(300 / u64::from(SCALE)),
        bytes_per_sec: f64::from(SCALE) * 64_000.0 / 8.0,
    };
    let cut_every = Duration::from_secs(10) / SCALE;
    let proxy = ShapingProxy::start_cutting(server.addr, link, Some(cut_every)).unwrap();
    let phone = Phone::enrol(&server, &server.url(), dir.path(), "cut", &supervisor.id);
    let mut transport = HttpTransport::new(&proxy.url()).unwrap();
    transport.attempts = 8;
    transport.backoff = Duration::from_millis(20);
    let mut engine = SyncEngine::new(&phone.store, &transport);
    engine.page_target = gridsync_core::sync::DEFAULT_PAGE_TARGET / SCALE;
    engine.first_page_bytes = 16 * 1024;
    engine.min_page_bytes = protocol::MIN_PAGE_BYTES;

    // Sync until one sync finishes, as an app retrying after errors would.
    let mut syncs = 0;
    let report = loop {
        syncs += 1;
        assert!(syncs <= 50, "no sync finished in 50 attempts");
        match engine.sync(&mut |_| {}, &CancelFlag::new()) {
            Ok(r) => break r,
            Err(Error::Transport(e)) => eprintln!("sync {syncs} failed: {e}"),
            Err(e) => panic!("sync failed: {e}"),
        }
    };
    let (down, lost, cuts, mid_answer) = proxy.stats.snapshot();
    drop(proxy);
    let mut got = phone.store.record_ids().unwrap();
    got.sort();
    assert_eq!(got, expected, "the bootstrap brought every record");
    let counts = phone.store.counts().unwrap();
    assert_eq!(
        (
            counts.producers,
            counts.visits,
            counts.corrupt,
            counts.unsynced
        ),
        (500, 2500, 0, 0),
        "{counts:?}"
    );
    let share = lost as f64 / down as f64;
    eprintln!(
        "{} records; received {down} B through the link, {lost} B of them twice ({:.1} %); \
         {cuts} cuts, {mid_answer} in the middle of an answer; {syncs} syncs; last sync {} \
         round trips, last page budget {} B",
        got.len(),
        share * 100.0,
        report.round_trips,
        report.last_page_bytes,
    );
    // The link really dropped, several times in the middle of an answer.
    assert!(cuts >= 5, "only {cuts} cuts");
    assert!(mid_answer >= 2, "only {mid_answer} cuts hit an answer");
    assert!(lost > 0);
    // How much arrives twice depends on where the wall-clock cuts land in the answers, so
    // on how fast this machine serves them: under 10 % in earlier runs, 10.2 % seen once
    // on a loaded one. The W6 cut benchmark measures it; here it must stay small.
    assert!(share <= 0.15, "{:.1} % received twice", share * 100.0);
}

/// A hand-made request for the feed of village `DEMO-T01-V01` from its start, from a
/// device that holds the reference data `reference_version`.
fn request(reference_version: &str, page_bytes: u32) -> SyncRequest {
    SyncRequest {
        epoch: String::new(),
        reference_version: reference_version.into(),
        push: vec![],
        cursors: vec![Cursor {
            grid: "DEMO-T01-V01".into(),
            seq: 0,
            token: 0,
        }],
        want_full: vec![],
        page_limit: protocol::MAX_PAGE_RECORDS,
        bare_docs: true,
        page_bytes,
    }
}

#[test]
fn the_server_honours_the_page_byte_budget_and_serves_version_2_with_its_default() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let (server, _, phone) = server_and_liaison(dir.path());
    // The engine measures the clock offset (the same clock here: a few ms at most).
    let report = phone.sync().unwrap();
    let offset = report.clock_offset_ms.expect("an offset measured");
    assert!(offset.abs() < 1_000, "offset {offset} ms on one machine");

    let link = phone.store.server_link().unwrap().unwrap();
    let auth = format!("Bearer {}.{}", link.device_id, link.secret);
    let version = link.reference_version.clone();
    let ask = |page_bytes: u32| {
        let answer = phone
            .transport()
            .sync(
                &auth,
                protocol::encode(&request(&version, page_bytes)).unwrap(),
            )
            .unwrap();
        protocol::decode_response(&answer, protocol::PROTOCOL_VERSION).unwrap()
    };
    let before = gridsync_core::now_ms();
    let whole = ask(0);
    let after = gridsync_core::now_ms();
    assert!(!whole.more, "the village fits the default page");
    assert!(whole.records.len() > 5);
    assert!(
        (before..=after).contains(&whole.server_time_ms),
        "the server's time {} is its clock when it answered ({before}..={after})",
        whole.server_time_ms
    );
    // The smallest budget: a few records, and the rest is left for the next page.
    let small = ask(1);
    assert!(small.more);
    assert!(!small.records.is_empty());
    assert!(small.records.len() < whole.records.len());
    let sent: usize = small
        .records
        .iter()
        .map(|r| r.bytes.len() + r.id.len())
        .sum();
    let last = small.records.last().unwrap();
    assert!(
        sent - last.bytes.len() - last.id.len() < protocol::MIN_PAGE_BYTES as usize,
        "the page stops at the first record past the budget"
    );
    assert_eq!(small.records[..], whole.records[..small.records.len()]);
    assert_eq!(small.cursors[0].seq, last.seq);

    // A version 2 device: no page_bytes in its body, the default page, no server time.
    let mut v2 = postcard::to_allocvec(&request(&version, 0)).unwrap();
    assert_eq!(v2.pop(), Some(0));
    let answer = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url()))
        .header("authorization", &auth)
        .header(protocol::PROTOCOL_HEADER, "2")
        .header("content-type", protocol::CONTENT_TYPE)
        .body(protocol::encode_raw_for_tests(&v2))
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let v2_answer = protocol::decode_response(&answer.bytes().unwrap(), 2).unwrap();
    assert_eq!(v2_answer.server_time_ms, 0);
    assert_eq!(v2_answer.records, whole.records);
    assert!(!v2_answer.more);
}

#[test]
fn pages_grow_on_a_fast_link_and_stay_within_the_app_bounds() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let (server, data, _) = server_and_liaison(dir.path());
    let supervisor = person_in(&data, Role::Supervisor, "DEMO-T01");
    let phone = Phone::enrol(&server, &server.url(), dir.path(), "s", &supervisor.id);
    let mut engine = SyncEngine::new(&phone.store, phone.transport());
    engine.first_page_bytes = 2048;
    engine.min_page_bytes = 2048;
    engine.max_page_bytes = 6000;
    let report = engine.sync(&mut |_| {}, &CancelFlag::new()).unwrap();
    // Loopback is fast: the budget grows from the first page, up to the app's bound and
    // no further.
    assert_eq!(report.last_page_bytes, 6000);
    let records = phone.store.record_ids().unwrap().len();
    assert!(records > 30, "{records} records");
    assert!(
        report.round_trips >= 4,
        "{} round trips",
        report.round_trips
    );
    // The next sync is idle: one round trip.
    let idle = engine.sync(&mut |_| {}, &CancelFlag::new()).unwrap();
    assert_eq!(idle.round_trips, 1);
}
