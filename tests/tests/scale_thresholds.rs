//! A league's livestock scale thresholds reach the phones (issue 16, part 3): a real server
//! on 127.0.0.1, phones with real SQLite files. The administrator lowers the league's beef
//! cattle threshold; at its next sync a liaison's phone fetches it (the reference version
//! covers the overrides, `GET /v1/scale-thresholds`) and assesses a producer whose herd
//! sits exactly on the new threshold as a scale farm, one head below as not, where the
//! national table says neither is; the phone's count of scale farms in its village is the
//! desk's. A change of the overrides reaches the phone at its next sync, so does going back
//! to the national table; a phone speaking protocol 3 gets them too; a transport without
//! the call leaves the phone on the national table.

#![allow(clippy::unwrap_used)]

use gridsync_core::model::{
    GridLevel, LivestockCount, Producer, ProducerStatus, ProducerType, Role, Species,
};
use gridsync_core::scale::{assess, Measure, ScaleThresholds, Threshold};
use gridsync_core::store::{ProducerSort, Store};
use gridsync_core::sync::protocol::{
    EnrollRequest, EnrollResponse, RotateResponse, ScaleThresholdsResponse, CALLS_PROTOCOL_VERSION,
    PROTOCOL_HEADER,
};
use gridsync_core::sync::{CancelFlag, HttpTransport, SyncEngine, SyncReport, Transport};
use gridsync_tests::*;

const V01: &str = "DEMO-T01-V01";
const V02: &str = "DEMO-T01-V02";

/// The league above `grid` in the dataset's tree.
fn league_of(data: &gridsync_server::dataset::Dataset, grid: &str) -> String {
    let mut code = grid.to_string();
    loop {
        let n = data.grids.iter().find(|n| n.code == code).unwrap();
        if n.level == GridLevel::League {
            return code;
        }
        code = n.parent.clone().unwrap();
    }
}

fn cattle(name: &str, t: ProducerType, sold: u32, by: &str) -> Producer {
    let mut p = new_producer(name, V01, by);
    p.producer_type = t;
    p.scale.livestock.insert(
        Species::BeefCattle,
        LivestockCount {
            on_hand: None,
            sold_per_year: Some(sold),
        },
    );
    p
}

fn set(server: &TestServer, league: &str, text: &str) {
    gridsync_server::scale::set_league_thresholds(server.storage.as_ref(), "admin", league, text)
        .unwrap();
}

/// Scale farms among the active producers of `grid` on the phone, by its thresholds.
fn phone_scale_farms(store: &Store, grid: &str) -> i64 {
    let t = store.scale_thresholds().unwrap();
    store
        .producers_in_grid(grid, ProducerSort::Name, 1000, 0)
        .unwrap()
        .iter()
        .filter(|s| s.grid == grid)
        .map(|s| store.producer(&s.id).unwrap())
        .filter(|p| p.status == ProducerStatus::Active && assess(p, &t).is_scale_farm)
        .count() as i64
}

fn beef(store: &Store) -> Option<Threshold> {
    store.scale_thresholds().unwrap().get(Species::BeefCattle)
}

#[test]
fn league_thresholds_reach_the_phone_and_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    let league = league_of(&data, V01);

    // First sync: the phone holds its league, with no overrides.
    let r = phone.sync().unwrap();
    assert!(r.scale_thresholds_fetched, "{r:?}");
    assert_eq!(r.scale_thresholds_error, None);
    let held = phone.store.league_scale().unwrap().unwrap();
    assert_eq!(held.league.as_deref(), Some(league.as_str()));
    assert!(held.overrides.0.is_empty());
    assert_eq!(
        phone.store.scale_thresholds().unwrap(),
        ScaleThresholds::mara()
    );
    // Nothing changed: nothing fetched.
    let r = phone.sync().unwrap();
    assert!(!r.scale_thresholds_fetched, "{r:?}");

    let by = &phone.person.id;
    let at = phone
        .store
        .create_producer(cattle("阈值上牧场", ProducerType::FamilyRanch, 30, by))
        .unwrap();
    let below = phone
        .store
        .create_producer(cattle("阈值下牧场", ProducerType::FamilyRanch, 29, by))
        .unwrap();
    let household = phone
        .store
        .create_producer(cattle("散户张三", ProducerType::SmallHousehold, 30, by))
        .unwrap();
    phone.sync().unwrap();
    let national = ScaleThresholds::mara();
    for p in [&at, &below, &household] {
        assert!(!assess(p, &national).is_scale_farm, "{}", p.name);
    }

    // The administrator lowers the league's beef cattle threshold to 30 sold a year.
    set(
        &server,
        &league,
        "species,measure,head\nbeef_cattle,sold_per_year,30\n",
    );
    let r = phone.sync().unwrap();
    assert!(r.scale_thresholds_fetched, "{r:?}");
    assert_eq!(
        beef(&phone.store),
        Some(Threshold {
            measure: Measure::SoldPerYear,
            head: 30
        })
    );
    let t = phone.store.scale_thresholds().unwrap();
    let a = assess(&phone.store.producer(&at.id).unwrap(), &t);
    assert!(a.is_scale_farm && !a.type_mismatch, "{a:?}");
    assert!(!assess(&phone.store.producer(&below.id).unwrap(), &t).is_scale_farm);
    let h = assess(&phone.store.producer(&household.id).unwrap(), &t);
    assert!(h.is_scale_farm && h.type_mismatch, "{h:?}");
    // The phone counts what the desk counts.
    let desk = server.storage.scale_counts(&[V01.to_string()]).unwrap();
    assert_eq!(desk[V01].scale_farms, phone_scale_farms(&phone.store, V01));
    assert!(desk[V01].scale_farms >= 2);
    assert!(desk[V01].mismatches >= 1);
    let r = phone.sync().unwrap();
    assert!(!r.scale_thresholds_fetched, "{r:?}");

    // Changed again: 31 head. The producer at 30 is no longer a scale farm on the phone.
    set(
        &server,
        &league,
        r#"{"beef_cattle": {"measure": "sold_per_year", "head": 31}}"#,
    );
    let r = phone.sync().unwrap();
    assert!(r.scale_thresholds_fetched, "{r:?}");
    assert_eq!(beef(&phone.store).map(|t| t.head), Some(31));
    let t = phone.store.scale_thresholds().unwrap();
    assert!(!assess(&phone.store.producer(&at.id).unwrap(), &t).is_scale_farm);
    let desk = server.storage.scale_counts(&[V01.to_string()]).unwrap();
    assert_eq!(desk[V01].scale_farms, phone_scale_farms(&phone.store, V01));

    // Back to the national table (an empty file).
    set(&server, &league, "");
    let r = phone.sync().unwrap();
    assert!(r.scale_thresholds_fetched, "{r:?}");
    assert_eq!(
        phone.store.scale_thresholds().unwrap(),
        ScaleThresholds::mara()
    );
    assert!(phone
        .store
        .league_scale()
        .unwrap()
        .unwrap()
        .overrides
        .0
        .is_empty());

    // Kept across a restart of the app.
    set(&server, &league, "beef_cattle,sold_per_year,30\n");
    phone.sync().unwrap();
    let phone = phone.reopen();
    assert_eq!(beef(&phone.store).map(|t| t.head), Some(30));
}

#[test]
fn a_protocol_3_phone_gets_them_and_a_transport_without_the_call_stays_national() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    let league = league_of(&data, V01);
    set(&server, &league, "beef_cattle,sold_per_year,30\nyak,,\n");

    // An older protocol: the call is the same for every version.
    let mut engine = SyncEngine::new(&phone.store, &phone.transport);
    engine.protocol_version = 3;
    let r = engine.sync(&mut |_| {}, &CancelFlag::new()).unwrap();
    assert_eq!(r.protocol, 3);
    assert!(r.scale_thresholds_fetched, "{r:?}");
    let t = phone.store.scale_thresholds().unwrap();
    assert_eq!(t.get(Species::BeefCattle).map(|t| t.head), Some(30));
    assert_eq!(t.get(Species::Yak), None);

    // A liaison of the neighbouring village (same league) whose transport cannot ask:
    // it syncs, and assesses with the national table.
    let other = person_in(&data, Role::Liaison, V02);
    let p2 = Phone::enrol(&server, &server.url(), dir.path(), "p2", &other.id);
    let without = WithoutCall(p2.transport.clone());
    let r: SyncReport = SyncEngine::new(&p2.store, &without)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert!(r.pulled > 0);
    assert!(r.scale_thresholds_fetched, "{r:?}");
    assert_eq!(
        p2.store.scale_thresholds().unwrap(),
        ScaleThresholds::mara()
    );
    // With the call, its next sync after a change fetches the league's.
    set(&server, &league, "beef_cattle,sold_per_year,35\n");
    let r = p2.sync().unwrap();
    assert!(r.scale_thresholds_fetched, "{r:?}");
    assert_eq!(beef(&p2.store).map(|t| t.head), Some(35));
}

#[test]
fn the_call_needs_a_device_credential_and_a_protocol_version() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    let league = league_of(&data, V01);
    set(&server, &league, "beef_cattle,sold_per_year,30\n");
    let url = format!("{}/v1/scale-thresholds", server.url());
    let client = reqwest::blocking::Client::new();
    let r = client
        .get(&url)
        .header(PROTOCOL_HEADER, CALLS_PROTOCOL_VERSION.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"], "missing_credentials");
    let r = client
        .get(&url)
        .header(PROTOCOL_HEADER, CALLS_PROTOCOL_VERSION.to_string())
        .header("authorization", "Bearer nobody.wrong")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let link = phone.store.server_link().unwrap().unwrap();
    let auth = format!("Bearer {}.{}", link.device_id, link.secret);
    let r = client
        .get(&url)
        .header("authorization", &auth)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"], "missing_protocol");
    // The answer names the league and its overrides, and the version the phone gets.
    let answer = phone.transport.scale_thresholds(&auth).unwrap().unwrap();
    assert_eq!(answer.league.as_deref(), Some(league.as_str()));
    assert_eq!(
        answer.overrides,
        serde_json::json!({"beef_cattle": {"measure": "sold_per_year", "head": 30}})
    );
    phone.sync().unwrap();
    let link = phone.store.server_link().unwrap().unwrap();
    assert_eq!(answer.reference_version, link.reference_version);
}

/// An HTTP transport whose scale thresholds call always fails (the link drops).
struct FailingCall(HttpTransport);

impl Transport for FailingCall {
    fn sync(&self, auth: &str, body: Vec<u8>) -> gridsync_core::Result<Vec<u8>> {
        self.0.sync(auth, body)
    }
    fn sync_at(&self, auth: &str, version: u16, body: Vec<u8>) -> gridsync_core::Result<Vec<u8>> {
        self.0.sync_at(auth, version, body)
    }
    fn enroll(&self, req: &EnrollRequest) -> gridsync_core::Result<EnrollResponse> {
        self.0.enroll(req)
    }
    fn rotate(&self, auth: &str) -> gridsync_core::Result<RotateResponse> {
        self.0.rotate(auth)
    }
    fn scale_thresholds(
        &self,
        _auth: &str,
    ) -> gridsync_core::Result<Option<ScaleThresholdsResponse>> {
        Err(gridsync_core::Error::Transport("connection reset".into()))
    }
}

#[test]
fn a_failed_fetch_keeps_what_the_phone_had_and_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    let league = league_of(&data, V01);
    set(
        &server,
        &league,
        "beef_cattle,sold_per_year,30
",
    );
    phone.sync().unwrap();
    assert_eq!(beef(&phone.store).map(|t| t.head), Some(30));

    set(
        &server,
        &league,
        "beef_cattle,sold_per_year,40
",
    );
    let failing = FailingCall(phone.transport.clone());
    let p = phone
        .store
        .create_producer(cattle(
            "断网牧场",
            ProducerType::FamilyRanch,
            30,
            &phone.person.id,
        ))
        .unwrap();
    let r = SyncEngine::new(&phone.store, &failing)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    // The records part stands; the thresholds stay what they were.
    assert_eq!(r.pushed, 1, "{r:?}");
    assert!(server.storage.record(&p.id).unwrap().is_some());
    assert!(!r.scale_thresholds_fetched);
    assert!(
        r.scale_thresholds_error
            .as_deref()
            .is_some_and(|e| e.contains("connection reset")),
        "{r:?}"
    );
    assert_eq!(beef(&phone.store).map(|t| t.head), Some(30));
    // The next sync brings no new reference data, yet fetches them.
    let r = phone.sync().unwrap();
    assert!(r.scale_thresholds_fetched, "{r:?}");
    assert_eq!(beef(&phone.store).map(|t| t.head), Some(40));
}

/// An HTTP transport that does not know the scale thresholds call (as apps built before
/// it, or in-process transports): the trait's default answers `None`.
struct WithoutCall(HttpTransport);

impl Transport for WithoutCall {
    fn sync(&self, auth: &str, body: Vec<u8>) -> gridsync_core::Result<Vec<u8>> {
        self.0.sync(auth, body)
    }
    fn sync_at(&self, auth: &str, version: u16, body: Vec<u8>) -> gridsync_core::Result<Vec<u8>> {
        self.0.sync_at(auth, version, body)
    }
    fn enroll(&self, req: &EnrollRequest) -> gridsync_core::Result<EnrollResponse> {
        self.0.enroll(req)
    }
    fn rotate(&self, auth: &str) -> gridsync_core::Result<RotateResponse> {
        self.0.rotate(auth)
    }
}
