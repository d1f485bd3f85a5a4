//! Yearly confirmation (年度确认) on the phone: recorded in the producer's history, kept
//! out of the directory fingerprint (an approval holds), listed per grid by year.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use super::attachment_tests::Phone;
use crate::model::{Person, ProducerStatus, ReviewAction, ReviewState, Role};
use crate::{dates, now_ms, Error};

const VILLAGE: &str = "152522101201";
const TOWNSHIP: &str = "152522101";

fn ids(v: &[super::ProducerSummary]) -> Vec<&str> {
    v.iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn a_confirmation_is_listed_by_year_and_the_next_year_lists_it_again() {
    let ph = Phone::new();
    let year = dates::china_year(now_ms());
    // Never confirmed: unconfirmed this year, in its village and in the township above.
    assert_eq!(
        ids(&ph.s.unconfirmed_producers(VILLAGE, year).unwrap()),
        [ph.pid.as_str()]
    );
    assert_eq!(
        ids(&ph.s.unconfirmed_producers(TOWNSHIP, year).unwrap()),
        [ph.pid.as_str()]
    );

    let p = ph.s.confirm_producer(&ph.pid, year, true).unwrap();
    let c = p.confirmations.last().unwrap();
    assert_eq!(
        (c.year, c.operating, c.by.as_str()),
        (year, true, "liaison-1")
    );
    assert_eq!(p.status, ProducerStatus::Active);
    assert!(ph
        .s
        .unconfirmed_producers(TOWNSHIP, year)
        .unwrap()
        .is_empty());
    // A confirmation counts for the year before too; the year after (the rollover in
    // January) lists the producer again.
    assert!(ph
        .s
        .unconfirmed_producers(VILLAGE, year - 1)
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&ph.s.unconfirmed_producers(VILLAGE, year + 1).unwrap()),
        [ph.pid.as_str()]
    );
    // It travels in the document: read back, and the query row matches it.
    assert_eq!(
        ph.s.producer(&ph.pid).unwrap().confirmations,
        p.confirmations
    );
    let report =
        ph.s.check_integrity(super::IntegrityLevel::Full, false)
            .unwrap();
    assert!(!report.found_problems(), "{report:?}");
}

#[test]
fn a_year_ahead_or_two_back_is_refused_by_name() {
    let ph = Phone::new();
    let year = dates::china_year(now_ms());
    for y in [year + 1, year - 2] {
        match ph.s.confirm_producer(&ph.pid, y, true) {
            Err(Error::Invalid(i)) => assert_eq!(i.field, "year", "{y}"),
            other => panic!("{y}: {other:?}"),
        }
    }
    // Last year may still be confirmed (a round finished after New Year).
    ph.s.confirm_producer(&ph.pid, year - 1, true).unwrap();
    assert!(ph.s.producer(&ph.pid).unwrap().confirmations.len() == 1);
}

#[test]
fn confirming_keeps_an_approval_and_closing_sends_it_back_to_review() {
    let ph = Phone::new();
    let year = dates::china_year(now_ms());
    // The supervisor of the township approves the entry on this phone.
    let sup = Person {
        id: "sup-1".into(),
        name: "其其格".into(),
        phone: "13904792222".into(),
        role: Role::Supervisor,
        grids: vec![TOWNSHIP.into()],
    };
    ph.s.upsert_people(std::slice::from_ref(&sup)).unwrap();
    ph.s.set_profile(&sup).unwrap();
    ph.s.review_producer(&ph.pid, ReviewAction::Submit).unwrap();
    let approved =
        ph.s.review_producer(&ph.pid, ReviewAction::ApproveTownship)
            .unwrap();
    let fingerprint = approved.review.approved_fingerprint.clone().unwrap();

    let p = ph.s.confirm_producer(&ph.pid, year, true).unwrap();
    assert_eq!(p.effective_review_state(), ReviewState::TownshipApproved);
    assert_eq!(p.review, approved.review);
    assert_eq!(p.directory_fingerprint(), fingerprint);
    assert_eq!(p.confirmations.len(), 1);
    let row = &ph
        .s
        .producers_in_grid(VILLAGE, super::ProducerSort::Name, 10, 0)
        .unwrap()[0];
    assert_eq!(row.review_state, "township_approved");

    // Found closed: the status changes through the edit workflow (back to review, the
    // step named), the confirmation says so, and a closed producer is not listed.
    let p = ph.s.confirm_producer(&ph.pid, year, false).unwrap();
    assert_eq!(p.status, ProducerStatus::Closed);
    assert_eq!(p.effective_review_state(), ReviewState::Submitted);
    let step = p.review.history.last().unwrap();
    assert_eq!(
        (&step.action, step.by.as_str()),
        (&ReviewAction::EditedAfterApproval, "sup-1")
    );
    assert_eq!(p.confirmations.len(), 2);
    assert!(!p.confirmations[1].operating);
    assert!(ph
        .s
        .unconfirmed_producers(VILLAGE, year + 1)
        .unwrap()
        .is_empty());
}

#[test]
fn an_edit_keeps_the_confirmations_as_stored() {
    let ph = Phone::new();
    let year = dates::china_year(now_ms());
    ph.s.confirm_producer(&ph.pid, year, true).unwrap();
    let mut p = ph.s.producer(&ph.pid).unwrap();
    p.confirmations.clear();
    p.phone = "13904793333".into();
    let p = ph.s.update_producer(p).unwrap();
    assert_eq!(p.confirmations.len(), 1);
}

#[test]
fn the_unconfirmed_query_reads_its_index() {
    let ph = Phone::new();
    let c = rusqlite::Connection::open(&ph.path).unwrap();
    // The query of `Store::unconfirmed_producers`, planned.
    let sql = "EXPLAIN QUERY PLAN WITH RECURSIVE sub(code) AS (SELECT ?1 UNION SELECT g.code FROM grids g JOIN sub ON g.parent = sub.code)
         SELECT p.id FROM producers p WHERE p.grid IN (SELECT code FROM sub) AND p.status = 'active'
             AND p.confirmed_year < ?2 ORDER BY p.name, p.id";
    let plan: Vec<String> = c
        .prepare(sql)
        .unwrap()
        .query_map(rusqlite::params![TOWNSHIP, 2027], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|l| l
                .contains("INDEX producers_confirmed (grid=? AND status=? AND confirmed_year<?)")),
        "{plan:?}"
    );
}
