//! Wrong clocks (issue 19, part 4): phones whose clocks are ten years ahead and ten years
//! behind, each a `phone-worker` process run under `faketime`, record visits before and
//! after their first sync against a real server on 127.0.0.1. The server refuses dates
//! beyond its tolerance, each phone measures its offset and dates what it records next by
//! the server's clock, and the patrol schedule on every phone is left as it should be.
//!
//! Needs `faketime` (Debian `faketime`; `scripts/test-all.sh` installs it).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use gridsync_core::model::Role;
use gridsync_tests::*;

const YEAR_MS: i64 = 365 * 86_400_000;
const DAY_MS: i64 = 86_400_000;

struct Run {
    v1: (String, i64),
    sync1_rejected: usize,
    correction: i64,
    v2: (String, i64),
    sync2_rejected: usize,
}

fn field<'a>(lines: &'a [String], tag: &str) -> Vec<&'a str> {
    lines
        .iter()
        .find(|l| l.starts_with(tag))
        .unwrap_or_else(|| panic!("no {tag} line in {lines:?}"))
        .split_whitespace()
        .collect()
}

fn num(kv: &str) -> i64 {
    kv.split('=').nth(1).unwrap().parse().unwrap()
}

fn run_skewed(skew: &str, store: &std::path::Path, producer: &str) -> Run {
    let out = Command::new("faketime")
        .arg("-f")
        .arg(skew)
        .arg(env!("CARGO_BIN_EXE_phone-worker"))
        .arg("clock")
        .arg(store)
        .arg(producer)
        .output()
        .expect("run faketime (Debian package faketime)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "phone-worker under faketime {skew}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let v1 = field(&lines, "V1 ");
    let s1 = field(&lines, "SYNC1 ");
    let v2 = field(&lines, "V2 ");
    let s2 = field(&lines, "SYNC2 ");
    Run {
        v1: (v1[1].to_string(), v1[2].parse().unwrap()),
        sync1_rejected: num(s1[1]) as usize,
        correction: num(s1[2]),
        v2: (v2[1].to_string(), v2[2].parse().unwrap()),
        sync2_rejected: num(s2[1]) as usize,
    }
}

#[test]
fn phones_ten_years_ahead_and_behind_leave_the_patrol_schedule_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let village = liaison.grids[0].clone();
    let producer = data
        .producers
        .iter()
        .find(|p| p.grid == village)
        .unwrap()
        .clone();
    let sp = Phone::enrol(
        &server,
        &server.url(),
        dir.path(),
        "sup",
        &person_in(&data, Role::Supervisor, "DEMO-T01").id,
    );
    sp.sync().unwrap();
    let due_of = |p: &Phone| {
        p.store
            .due_patrols(&village, gridsync_core::now_ms())
            .unwrap()
            .into_iter()
            .map(|d| (d.producer.id, d.producer.last_visit_ms))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = due_of(&sp);

    let mut runs = Vec::new();
    for (name, skew) in [("ahead", "+3650d"), ("behind", "-3650d")] {
        let phone = Phone::enrol(&server, &server.url(), dir.path(), name, &liaison.id);
        phone.sync().unwrap();
        let path = phone.path.clone();
        drop(phone);
        let started = gridsync_core::now_ms();
        let run = run_skewed(skew, &path, &producer.id);
        let now = gridsync_core::now_ms();
        let sign = if name == "ahead" { 1 } else { -1 };
        // Before its first sync the phone dates by its own clock.
        assert!(
            (run.v1.1 - (started + sign * 3650 * DAY_MS)).abs() < DAY_MS,
            "{name}: V1 dated {}",
            run.v1.1
        );
        // The sync measured its clock against the server's…
        assert!(
            (run.correction + sign * 3650 * DAY_MS).abs() < DAY_MS,
            "{name}: correction {}",
            run.correction
        );
        // …and what it recorded next is dated by the server's clock.
        assert!(
            run.v2.1 >= started - 60_000 && run.v2.1 <= now + 60_000,
            "{name}: V2 dated {}, real time {started}..{now}",
            run.v2.1
        );
        assert_eq!(
            run.sync2_rejected, 0,
            "{name}: the corrected visit is accepted"
        );
        assert!(server.storage.record(&run.v2.0).unwrap().is_some());
        let v1_stored = server.storage.record(&run.v1.0).unwrap().is_some();
        if name == "ahead" {
            // A visit dated ten years ahead is refused, and stays on its phone, visible.
            assert_eq!(run.sync1_rejected, 1, "{name}: V1 refused as future-dated");
            assert!(!v1_stored);
            let store = gridsync_core::store::Store::open(&path).unwrap();
            let rejected = store.rejected_edits().unwrap();
            // Opening the store took its clock correction into this process: undo it
            // before the in-process server dates anything.
            gridsync_core::set_clock_correction_ms(0);
            assert!(
                rejected
                    .iter()
                    .any(|r| r.id == run.v1.0 && r.reason.contains("ahead of the server")),
                "{rejected:?}"
            );
            // Its own schedule ignores the future-dated visit.
            let due = store
                .due_patrols(&village, gridsync_core::now_ms())
                .unwrap();
            gridsync_core::set_clock_correction_ms(0);
            if let Some(d) = due.iter().find(|d| d.producer.id == producer.id) {
                assert!(d.producer.last_visit_ms.unwrap_or(0) <= now + DAY_MS);
            }
        } else {
            // A visit dated ten years back is only old: accepted, and it moves nothing.
            assert_eq!(run.sync1_rejected, 0, "{name}");
            assert!(v1_stored);
        }
        runs.push(run);
    }
    // The supervisor's schedule: the producer was visited today (the corrected visits),
    // not ten years ahead; every other producer is as it was.
    sp.sync().unwrap();
    let after = due_of(&sp);
    assert!(
        !after.contains_key(&producer.id),
        "the producer visited today is not due"
    );
    let summary = sp
        .store
        .producers_in_grid(
            &village,
            gridsync_core::store::ProducerSort::Name,
            10_000,
            0,
        )
        .unwrap()
        .into_iter()
        .find(|p| p.id == producer.id)
        .unwrap();
    let last = summary.last_visit_ms.unwrap();
    assert!(
        (last - gridsync_core::now_ms()).abs() < DAY_MS,
        "last visit {last} is not today"
    );
    assert!(last < gridsync_core::now_ms() + YEAR_MS);
    for (id, last) in &before {
        if *id != producer.id {
            assert_eq!(
                after.get(id),
                Some(last),
                "producer {id} moved in the schedule"
            );
        }
    }
}
