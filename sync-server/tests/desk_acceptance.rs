//! Township acceptance (达标验收) at the desk, against a real server on loopback: the county
//! reviewer records dated decisions, written as Automerge changes by the server for that
//! person and judged by the phones' rules; the compliance of seven townships against the
//! year's target (two accepted: 2/7 = 28.6 % against 30 %); supervisors read only, and
//! their crafted posts are refused by the rules; stale pages, scope and CSRF.

#![allow(clippy::unwrap_used)]

mod desk_support;

use desk_support::*;
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{Acceptance, AcceptanceDecision};
use gridsync_server::reports::compliance::{township_compliance, township_compliance_since};

/// The harness's tree under a league, with seven townships under the banner.
fn seven_townships(s: &Server) {
    let mut nodes = vec![
        node("L", GridLevel::League, None),
        node("B", GridLevel::Banner, Some("L")),
    ];
    for t in ["T3", "T4", "T5", "T6", "T7"] {
        nodes.push(node(t, GridLevel::Township, Some("B")));
    }
    s.storage().import_grids(&nodes).unwrap();
}

/// The township form's fields on the page: (action, seen).
fn township_form(page: &Resp, code: &str) -> Option<(String, String)> {
    let row_at = page
        .body
        .find(&format!("<tr data-code=\"{code}\" data-accepted"))?;
    let row = &page.body[row_at..];
    let row = &row[..row.find("</tr>").unwrap()];
    let form = &row[row.find("<form class=\"acceptance\"")?..];
    let field = |name: &str| {
        form.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(str::to_string)
    };
    let action = form
        .split("action=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    Some((action, field("seen")?))
}

fn row_of<'a>(page: &'a Resp, code: &str) -> &'a str {
    let at = page
        .body
        .find(&format!("<tr data-code=\"{code}\" data-accepted"))
        .unwrap_or_else(|| panic!("no row {code}"));
    let row = &page.body[at..];
    &row[..row.find("</tr>").unwrap()]
}

fn stored(s: &Server, id: &str) -> Option<(Acceptance, RecordDoc)> {
    let rec = s.storage().record(id).unwrap()?;
    let doc = RecordDoc::load(&rec.doc, &[]).unwrap();
    let Record::Acceptance(a) = doc.read().unwrap() else {
        panic!("{id} is not an acceptance")
    };
    Some((a, doc))
}

fn decide(
    b: &mut Browser,
    page: &Resp,
    code: &str,
    year: &str,
    decision: &str,
    on: &str,
    note: &str,
) -> Resp {
    let (action, seen) = township_form(page, code).unwrap();
    let csrf = page.csrf();
    b.post(
        &action,
        &[
            ("csrf", &csrf),
            ("year", year),
            ("seen", &seen),
            ("decision", decision),
            ("decided_on", on),
            ("note", note),
        ],
    )
}

#[test]
fn the_county_records_decisions_and_the_share_follows_against_the_target() {
    let s = start(|_, d| d.programme_start_year = 2022);
    seven_townships(&s);
    let all = s.storage().grid_subtree(&["L".to_string()]).unwrap();

    let mut cty = Browser::new(&s);
    cty.sign_in("bater", CTY_PASSWORD);
    let page = cty.get("/desk/townships?year=2022");
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for t in ["T1", "T2", "T3", "T4", "T5", "T6", "T7"] {
        assert!(row_of(&page, t).contains("未验收"), "{t}");
    }
    assert!(page.body.contains("data-compliant=\"0\" data-total=\"7\""));
    assert!(page.body.contains("<strong id=\"target\">30.0 %</strong>"));

    // Two townships accepted, one not.
    let feed_before = s.storage().feed_head("T1").unwrap();
    let r = decide(
        &mut cty,
        &page,
        "T1",
        "2022",
        "accepted",
        "2022-11-30",
        "现场验收，资料齐全",
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.location.as_deref(),
        Some("/desk/townships?year=2022&done=T1")
    );
    let page = cty.get(r.location.as_deref().unwrap());
    assert!(page.body.contains("id=\"flash\""), "{}", page.body);
    let r = decide(&mut cty, &page, "T2", "2022", "accepted", "2022-12-05", "");
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = cty.get("/desk/townships?year=2022");
    let r = decide(
        &mut cty,
        &page,
        "T3",
        "2022",
        "not_accepted",
        "2022-12-06",
        "台账不全",
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // Stored as an Automerge change by the reviewer's desk actor, naming the reviewer, in
    // the township's feed and the query table.
    let (a, mut doc) = stored(&s, "acc:T1:2022").unwrap();
    assert_eq!(
        (
            a.decision,
            a.decided_on.as_str(),
            a.decided_by.as_str(),
            a.note.as_str()
        ),
        (
            AcceptanceDecision::Accepted,
            "2022-11-30",
            "cty",
            "现场验收，资料齐全"
        )
    );
    assert_eq!(doc.history().last().unwrap().by, "cty");
    let changes = doc.inner().get_changes(&[]);
    assert_eq!(
        changes.last().unwrap().actor_id(),
        &gridsync_core::device_actor("desk-cty")
    );
    assert!(s.storage().feed_head("T1").unwrap() > feed_before);
    let rows = s.storage().acceptances(&all, 2022).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(s.actions("cty").contains(&"desk_acceptance".to_string()));

    // Seven townships, two accepted: 2/7 = 28.6 % against the first year's 30 %.
    let c = township_compliance_since(s.storage(), &all, 2022, 2022).unwrap();
    assert_eq!((c.compliant, c.total), (2, 7));
    assert!((c.share - 2.0 / 7.0).abs() < 1e-12);
    assert_eq!(c.target, Some(0.30));
    let t1 = c.townships.iter().find(|t| t.code == "T1").unwrap();
    assert!(t1.accepted);
    assert_eq!(t1.decided_on.as_deref(), Some("2022-11-30"));
    assert_eq!(t1.decided_by.as_deref(), Some("cty"));
    let t3 = c.townships.iter().find(|t| t.code == "T3").unwrap();
    assert!(!t3.accepted);
    assert_eq!(t3.decided_on.as_deref(), Some("2022-12-06"));
    // The default programme is the plan's (first year 2022), and only township-level
    // grids count (the banner, the league and villages are in `all` too).
    assert_eq!(township_compliance(s.storage(), &all, 2022).unwrap(), c);
    assert_eq!(
        township_compliance_since(s.storage(), &all, 2021, 2022)
            .unwrap()
            .target,
        None
    );
    let page = cty.get("/desk/townships?year=2022");
    assert!(
        page.body.contains("<strong id=\"share\">28.6 %</strong>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("未达到目标"));
    assert!(row_of(&page, "T1").contains("达标"));
    assert!(row_of(&page, "T3").contains("未达标"));
    // The league's and the banner's shares.
    for code in ["L", "B"] {
        let at = page
            .body
            .find(&format!("<tr data-code=\"{code}\">"))
            .unwrap_or_else(|| panic!("no share of {code}"));
        let row = &page.body[at..];
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(row.contains("28.6 %"), "{row}");
    }

    // The next year: the 2022 acceptances still hold (80 % is the target); a withdrawal
    // of T2 for 2023 ends its acceptance from 2023 on, not in 2022.
    let c = township_compliance_since(s.storage(), &all, 2023, 2022).unwrap();
    assert_eq!((c.compliant, c.target), (2, Some(0.80)));
    let page = cty.get("/desk/townships?year=2023");
    let r = decide(
        &mut cty,
        &page,
        "T2",
        "2023",
        "withdrawn",
        "2023-03-01",
        "复查发现问题",
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let c = township_compliance_since(s.storage(), &all, 2023, 2022).unwrap();
    assert_eq!(c.compliant, 1);
    let t2 = c.townships.iter().find(|t| t.code == "T2").unwrap();
    assert!(!t2.accepted);
    assert_eq!(t2.decided_on.as_deref(), Some("2023-03-01"));
    assert_eq!(
        township_compliance_since(s.storage(), &all, 2022, 2022)
            .unwrap()
            .compliant,
        2
    );

    // A page opened before a decision of the same township and year is stale: 409, and
    // the decision made meanwhile stands.
    let old = cty.get("/desk/townships?year=2024");
    let r = decide(&mut cty, &old, "T4", "2024", "accepted", "2024-06-01", "");
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = decide(
        &mut cty,
        &old,
        "T4",
        "2024",
        "not_accepted",
        "2024-06-02",
        "",
    );
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(
        stored(&s, "acc:T4:2024").unwrap().0.decision,
        AcceptanceDecision::Accepted
    );
    // From a fresh page the same reviewer may change it (a re-inspection).
    let page = cty.get("/desk/townships?year=2024");
    let r = decide(
        &mut cty,
        &page,
        "T4",
        "2024",
        "not_accepted",
        "2024-06-02",
        "复核",
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        stored(&s, "acc:T4:2024").unwrap().0.decision,
        AcceptanceDecision::NotAccepted
    );

    // Bad input: a date that is not one, a decision that is not one, a village.
    let page = cty.get("/desk/townships?year=2025");
    let r = decide(&mut cty, &page, "T5", "2025", "accepted", "2025-13-01", "");
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = decide(&mut cty, &page, "T5", "2025", "maybe", "2025-01-01", "");
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let csrf = page.csrf();
    let r = cty.post(
        "/desk/townships/T1-V1/decision",
        &[
            ("csrf", &csrf),
            ("year", "2025"),
            ("seen", ""),
            ("decision", "accepted"),
            ("decided_on", "2025-01-01"),
        ],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(stored(&s, "acc:T5:2025").is_none());
    assert!(stored(&s, "acc:T1-V1:2025").is_none());

    // The query table is rebuilt from the documents to the same rows.
    let before = s.storage().query_snapshot().unwrap();
    assert_eq!(before.acceptances.len(), 5);
    let report = s.storage().rebuild_query_tables().unwrap();
    assert_eq!(report.acceptances, 5);
    assert_eq!(s.storage().query_snapshot().unwrap(), before);
    assert_no_password_logged();
}

#[test]
fn supervisors_read_only_and_their_crafted_posts_are_refused_by_the_rules() {
    let s = start(|_, _| {});
    // A decision of the county first, so the supervisor has something to read.
    let mut cty = Browser::new(&s);
    cty.sign_in("bater", CTY_PASSWORD);
    let page = cty.get("/desk/townships?year=2024");
    let r = decide(
        &mut cty,
        &page,
        "T1",
        "2024",
        "accepted",
        "2024-10-08",
        "验收合格",
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (before, _) = stored(&s, "acc:T1:2024").unwrap();

    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let page = sup.get("/desk/townships?year=2024");
    assert_eq!(page.status, StatusCode::OK);
    let row = row_of(&page, "T1");
    assert!(row.contains("达标") && row.contains("2024-10-08") && row.contains("巴特尔"));
    assert!(row.contains("验收合格"));
    assert!(!page.body.contains("data-code=\"T2\""), "another township");
    assert!(
        !page.body.contains("<form class=\"acceptance\""),
        "read only for a supervisor"
    );
    assert!(page.body.contains("仅供查看"));

    // A crafted form: the server writes it as the supervisor's change and the rules refuse
    // it (403); nothing changes, and the refusal is in the audit trail.
    let csrf = page.csrf();
    let feed = s.storage().feed_head("T1").unwrap();
    for (year, seen) in [
        ("2024", before.updated_at_ms.to_string()),
        ("2025", String::new()),
    ] {
        let r = sup.post(
            "/desk/townships/T1/decision",
            &[
                ("csrf", &csrf),
                ("year", year),
                ("seen", &seen),
                ("decision", "withdrawn"),
                ("decided_on", "2024-12-01"),
                ("note", "自行撤销"),
            ],
        );
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(
            r.body
                .contains("only county staff and administrators decide"),
            "refused by core's rules: {}",
            r.body
        );
    }
    assert_eq!(stored(&s, "acc:T1:2024").unwrap().0, before);
    assert!(stored(&s, "acc:T1:2025").is_none());
    assert_eq!(s.storage().feed_head("T1").unwrap(), feed);
    assert!(s
        .actions("sup1")
        .contains(&"desk_acceptance_refused".to_string()));

    // Outside the scope: as missing (404). Without the CSRF token: 403 before anything.
    let r = sup.post(
        "/desk/townships/T2/decision",
        &[
            ("csrf", &csrf),
            ("year", "2024"),
            ("seen", ""),
            ("decision", "accepted"),
            ("decided_on", "2024-12-01"),
        ],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = cty.post(
        "/desk/townships/T2/decision",
        &[
            ("csrf", "forged"),
            ("year", "2024"),
            ("seen", ""),
            ("decision", "accepted"),
            ("decided_on", "2024-12-01"),
        ],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(stored(&s, "acc:T2:2024").is_none());

    // Signed out: the list sends to sign-in.
    let mut anon = Browser::new(&s);
    let r = anon.get("/desk/townships");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}
