//! The dashboard (`/desk/dashboard`): every figure of a seeded banner equals a count made
//! here from the seeded records (not by the server's SQL); a supervisor's figures hold only
//! their township; a grid outside the scope is 404; a bad period is 400.

#![allow(clippy::unwrap_used)]

mod desk_support;
use desk_support::*;

use gridsync_core::model::{
    DirectoryReview, ProducerStatus, ReviewAction, ReviewEvent, ReviewState, RiskLevel, Severity,
    Verdict,
};
use gridsync_server::dataset::{generate, Dataset, DatasetSpec};

const DAY: i64 = 86_400_000;
const CHINA: i64 = 8 * 3_600_000;

/// The small banner, with some entries submitted, approved by the township or by the
/// county, and some edited recently.
fn dataset() -> Dataset {
    let mut d = generate(&DatasetSpec {
        seed: 7,
        banner_code: "150000".into(),
        banner_name: "测试旗".into(),
        townships: 2,
        villages_per_township: 2,
        producers_per_township: 30,
        visits_per_producer: 4,
    });
    let sup = d.person(Role::Supervisor).unwrap().id.clone();
    let cty = d.person(Role::CountyReviewer).unwrap().id.clone();
    for (i, p) in d.producers.iter_mut().enumerate() {
        let at = p.created_at_ms + DAY;
        let step = |id: &str, action, by: &str, k: i64, after| ReviewEvent {
            id: format!("{}-{id}", p.id),
            action,
            by: by.to_string(),
            at_ms: at + k,
            state_after: after,
        };
        let submit = step("s", ReviewAction::Submit, "x", 0, ReviewState::Submitted);
        let (state, history) = match i % 5 {
            1 => (ReviewState::Submitted, vec![submit]),
            2 | 3 => (
                ReviewState::TownshipApproved,
                vec![
                    submit,
                    step(
                        "t",
                        ReviewAction::ApproveTownship,
                        &sup,
                        1,
                        ReviewState::TownshipApproved,
                    ),
                ],
            ),
            4 => (
                ReviewState::CountyApproved,
                vec![
                    submit,
                    step(
                        "t",
                        ReviewAction::ApproveTownship,
                        &sup,
                        1,
                        ReviewState::TownshipApproved,
                    ),
                    step(
                        "c",
                        ReviewAction::ApproveCounty,
                        &cty,
                        2,
                        ReviewState::CountyApproved,
                    ),
                ],
            ),
            _ => continue,
        };
        let fingerprint = p.directory_fingerprint();
        p.review = DirectoryReview {
            state,
            approved_fingerprint: (state != ReviewState::Submitted).then_some(fingerprint),
            return_reason: None,
            history,
        };
        if i % 7 == 0 {
            // Recently edited: confirmed this year.
            p.updated_at_ms = gridsync_core::now_ms() - 10 * DAY;
        }
    }
    // Every third producer confirmed for this year (年度确认) by the administrator who
    // seeds the records; the rest are not confirmed this year.
    let adm = d.person(Role::Admin).unwrap().id.clone();
    let now = gridsync_core::now_ms();
    for (i, p) in d.producers.iter_mut().enumerate() {
        if i % 3 == 0 {
            p.confirmations
                .push(gridsync_core::model::YearConfirmation {
                    id: format!("{}-confirmed", p.id),
                    year: gridsync_core::dates::china_year(now),
                    operating: true,
                    by: adm.clone(),
                    at_ms: now - 60_000,
                });
        }
    }
    // Two visits of 2024 with a serious finding (referred to enforcement) and a
    // rectification still open past its deadline.
    let mut n = 0;
    for v in d.visits.iter_mut() {
        if n == 2 || !gridsync_core::dates::china_date(v.started_at_ms).starts_with("2024-0") {
            continue;
        }
        n += 1;
        v.findings.push(gridsync_core::model::Finding {
            id: format!("serious-{n}"),
            item_id: Some("additives".into()),
            description: "非法添加".into(),
            severity: Severity::Serious,
            photos: vec![],
            recorded_by: v.inspector.clone(),
            recorded_at_ms: v.started_at_ms + 60_000,
        });
        v.rectification = Some(gridsync_core::model::Rectification {
            required: true,
            deadline: "2024-10-01".into(),
            notice_number: format!("测整〔2024〕{n}号"),
            resolved_at_ms: None,
        });
    }
    d
}

fn start_with(d: &Dataset) -> Server {
    let s = start(|_, _| {});
    gridsync_server::demo::load_dataset(s.storage(), d).unwrap();
    for (role, user) in [(Role::Supervisor, "dsup"), (Role::CountyReviewer, "dcty")] {
        let id = &d.person(role).unwrap().id;
        gridsync_server::admin::set_desk_password(s.storage(), id, user, CTY_PASSWORD, "test")
            .unwrap();
    }
    s
}

/// Start of a `YYYY-MM-DD` day in China Standard Time (a test-side conversion).
fn day_ms(s: &str) -> i64 {
    let (y, m, d): (i64, i64, i64) = (
        s[..4].parse().unwrap(),
        s[5..7].parse().unwrap(),
        s[8..10].parse().unwrap(),
    );
    let mut days = 0i64;
    for yy in 1970..y {
        days += if (yy % 4 == 0 && yy % 100 != 0) || yy % 400 == 0 {
            366
        } else {
            365
        };
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let lengths = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += lengths[..(m - 1) as usize].iter().sum::<i64>() + d - 1;
    days * DAY - CHINA
}

fn month_of(ms: i64) -> String {
    gridsync_core::dates::china_date(ms)[..7].to_string()
}

/// The cell texts of each row of the table with this id: first cell → the rest.
fn table(body: &str, id: &str) -> BTreeMap<String, Vec<String>> {
    let start = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let t = &body[start..];
    let t = &t[..t.find("</table>").unwrap()];
    let t = &t[t.find("<tbody>").unwrap()..];
    let mut out = BTreeMap::new();
    for row in t.split("<tr").skip(1) {
        let cells: Vec<String> = row
            .split("<td")
            .skip(1)
            .map(|c| {
                let c = &c[c.find('>').unwrap() + 1..];
                let c = &c[..c.find("</td>").unwrap_or(c.len())];
                // Text without tags.
                let mut text = String::new();
                let mut in_tag = false;
                for ch in c.chars() {
                    match ch {
                        '<' => in_tag = true,
                        '>' => in_tag = false,
                        ch if !in_tag => text.push(ch),
                        _ => {}
                    }
                }
                text.trim().to_string()
            })
            .collect();
        if let Some((first, rest)) = cells.split_first() {
            out.insert(first.clone(), rest.to_vec());
        }
    }
    out
}

/// The text of the element with this id.
fn by_id(body: &str, id: &str) -> String {
    let at = body
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &body[at + id.len() + 6..];
    rest[..rest.find('<').unwrap()].to_string()
}

fn pct(part: usize, whole: usize) -> String {
    if whole == 0 {
        "—".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn s<T: ToString>(v: T) -> String {
    v.to_string()
}

/// Every figure the page shows, counted here from the records of the grids `grids`.
fn check_figures(d: &Dataset, grids: &[String], body: &str, from: &str, to: &str) {
    let now = gridsync_core::now_ms();
    let (from_ms, to_ms) = (day_ms(from), day_ms(to) + DAY);
    let in_grids = |g: &String| grids.contains(g);
    let producers: Vec<_> = d.producers.iter().filter(|p| in_grids(&p.grid)).collect();
    let visits: Vec<_> = d.visits.iter().filter(|v| in_grids(&v.grid)).collect();
    let in_period = |t: i64| t >= from_ms && t < to_ms;

    // Directory.
    let state = |p: &&gridsync_core::model::Producer| p.effective_review_state();
    let township_ok = producers
        .iter()
        .filter(|p| {
            matches!(
                state(p),
                ReviewState::TownshipApproved | ReviewState::CountyApproved
            )
        })
        .count();
    let county_ok = producers
        .iter()
        .filter(|p| state(p) == ReviewState::CountyApproved)
        .count();
    assert!(
        township_ok > county_ok && county_ok > 0,
        "the seed approves some"
    );
    assert_eq!(by_id(body, "sum-producers"), s(producers.len()));
    let active: Vec<_> = producers
        .iter()
        .filter(|p| p.status == ProducerStatus::Active)
        .collect();
    assert_eq!(by_id(body, "sum-active"), s(active.len()));
    assert_eq!(
        by_id(body, "township-share"),
        pct(township_ok, producers.len())
    );
    assert_eq!(by_id(body, "county-share"), pct(county_ok, producers.len()));
    let this_year = gridsync_core::dates::china_year(now);
    let unconfirmed = producers
        .iter()
        .filter(|p| p.status == ProducerStatus::Active)
        .filter(|p| !p.confirmations.iter().any(|c| c.year >= this_year))
        .count();
    assert!(unconfirmed > 0 && unconfirmed < producers.len());
    assert_eq!(by_id(body, "not-confirmed"), s(unconfirmed));
    let types = table(body, "types");
    for t in gridsync_core::model::ProducerType::ALL {
        let of: Vec<_> = producers.iter().filter(|p| p.producer_type == t).collect();
        if of.is_empty() {
            assert!(!types.contains_key(t.label_zh()));
            continue;
        }
        // Columns: draft, submitted, returned, township approved, county approved, total.
        let by = |st: ReviewState| s(of.iter().filter(|p| state(p) == st).count());
        assert_eq!(
            types[t.label_zh()],
            vec![
                by(ReviewState::Draft),
                by(ReviewState::Submitted),
                by(ReviewState::Returned),
                by(ReviewState::TownshipApproved),
                by(ReviewState::CountyApproved),
                s(of.len())
            ],
            "{t:?}"
        );
    }

    // Patrol coverage: the phone's rule at the end of the period (or now).
    let at = to_ms.min(now);
    let until = if to_ms > now {
        now + gridsync_core::FUTURE_TOLERANCE_MS
    } else {
        at - 1
    };
    let mut covered = 0;
    let mut never = 0;
    for p in &active {
        let last = d
            .visits
            .iter()
            .filter(|v| v.producer_id == p.id && v.started_at_ms <= until)
            .map(|v| v.started_at_ms)
            .max();
        let days = match p.risk {
            RiskLevel::High => 30,
            RiskLevel::Medium => 90,
            RiskLevel::Low => 365,
        };
        match last {
            None => never += 1,
            Some(l) if (at - l) / DAY < days => covered += 1,
            Some(_) => {}
        }
    }
    assert_eq!(by_id(body, "sum-coverage"), pct(covered, active.len()));
    assert_eq!(by_id(body, "never-count"), s(never));

    // Visits by month and by inspector.
    let period_visits: Vec<_> = visits
        .iter()
        .filter(|v| in_period(v.started_at_ms))
        .collect();
    assert_eq!(by_id(body, "sum-visits"), s(period_visits.len()));
    let months = table(body, "months");
    let mut by_month: BTreeMap<String, usize> = BTreeMap::new();
    for v in &period_visits {
        *by_month.entry(month_of(v.started_at_ms)).or_default() += 1;
    }
    for (m, cells) in &months {
        assert_eq!(
            cells,
            &vec![s(by_month.get(m).copied().unwrap_or(0))],
            "{m}"
        );
    }
    for m in by_month.keys() {
        assert!(
            months.contains_key(m),
            "every month with visits is listed: {m}"
        );
    }
    let inspectors = table(body, "inspectors");
    let mut by_person: BTreeMap<String, usize> = BTreeMap::new();
    for v in &period_visits {
        let name = d
            .people
            .iter()
            .find(|p| p.id == v.inspector)
            .map(|p| p.name.clone())
            .unwrap();
        *by_person.entry(name).or_default() += 1;
    }
    if by_person.is_empty() {
        assert!(inspectors.contains_key("本期无巡查记录。"));
    } else {
        assert_eq!(inspectors.len(), by_person.len());
    }
    for (name, n) in &by_person {
        assert_eq!(inspectors[name].last().unwrap(), &s(n), "{name}");
    }

    // Rapid tests by item and verdict (pass, suspect, fail, total).
    let tests: Vec<_> = visits
        .iter()
        .flat_map(|v| &v.rapid_tests)
        .filter(|t| in_period(t.tested_at_ms))
        .collect();
    assert_eq!(by_id(body, "sum-tests"), s(tests.len()));
    let shown = table(body, "tests");
    let mut items: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for t in &tests {
        let k = match t.verdict {
            Verdict::Pass => 0,
            Verdict::Suspect => 1,
            Verdict::Fail => 2,
        };
        items.entry(&t.item).or_default()[k] += 1;
    }
    assert_eq!(shown.len(), items.len().max(usize::from(items.is_empty())));
    for (item, n) in &items {
        assert_eq!(
            shown[*item],
            vec![s(n[0]), s(n[1]), s(n[2]), s(n.iter().sum::<usize>())],
            "{item}"
        );
    }

    // Findings by checklist item and severity; referrals.
    let findings: Vec<_> = visits
        .iter()
        .flat_map(|v| v.findings.iter().map(move |f| (v, f)))
        .filter(|(_, f)| in_period(f.recorded_at_ms))
        .collect();
    assert_eq!(by_id(body, "sum-findings"), s(findings.len()));
    let shown = table(body, "findings");
    let mut per_item: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for (_, f) in &findings {
        let label = match f.item_id.as_deref() {
            Some("drug_use") => "农药兽药使用情况".to_string(),
            Some("additives") => "保鲜剂、防腐剂、添加剂使用情况是否合规".to_string(),
            Some(other) => other.to_string(),
            None => "未关联检查项".to_string(),
        };
        let k = match f.severity {
            Severity::Minor => 0,
            Severity::Major => 1,
            Severity::Serious => 2,
        };
        per_item.entry(label).or_default()[k] += 1;
    }
    for (label, n) in &per_item {
        assert_eq!(
            shown[label],
            vec![s(n[0]), s(n[1]), s(n[2]), s(n.iter().sum::<usize>())],
            "{label}"
        );
    }
    let referred: std::collections::BTreeSet<&str> = findings
        .iter()
        .filter(|(_, f)| f.severity == Severity::Serious)
        .map(|(v, _)| v.id.as_str())
        .collect();
    assert_eq!(by_id(body, "sum-referrals"), s(referred.len()));

    // Rectifications ordered by the period's visits.
    let today = gridsync_core::dates::china_date(now);
    let ordered: Vec<_> = period_visits
        .iter()
        .filter_map(|v| v.rectification.as_ref().filter(|r| r.required))
        .collect();
    let resolved = ordered
        .iter()
        .filter(|r| r.resolved_at_ms.is_some())
        .count();
    let open: Vec<_> = ordered
        .iter()
        .filter(|r| r.resolved_at_ms.is_none())
        .collect();
    let overdue = open
        .iter()
        .filter(|r| r.deadline.as_str() < today.as_str())
        .count();
    let rect = table(body, "rectifications");
    let (first, rest) = rect.iter().next().unwrap();
    let mut row = vec![first.clone()];
    row.extend(rest.iter().cloned());
    assert_eq!(
        row,
        vec![
            s(ordered.len()),
            s(resolved),
            s(open.len()),
            s(overdue),
            s(referred.len())
        ]
    );
    assert_eq!(by_id(body, "sum-overdue"), s(overdue));
}

fn subtree(d: &Dataset, root: &str) -> Vec<String> {
    let mut out = vec![root.to_string()];
    let mut i = 0;
    while i < out.len() {
        let kids: Vec<String> = d
            .grids
            .iter()
            .filter(|g| g.parent.as_deref() == Some(out[i].as_str()))
            .map(|g| g.code.clone())
            .collect();
        out.extend(kids);
        i += 1;
    }
    out
}

#[test]
fn banner_figures_equal_counts_of_the_seeded_records() {
    let d = dataset();
    let srv = start_with(&d);
    let mut b = Browser::new(&srv);
    assert_eq!(
        b.sign_in("dcty", CTY_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    let banner = d.banner().code.clone();
    let (from, to) = ("2024-01-01", "2024-12-31");
    let r = b.get(&format!(
        "/desk/dashboard?grid={banner}&from={from}&to={to}"
    ));
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check_figures(&d, &subtree(&d, &banner), &r.body, from, to);
    for id in ["sum-visits", "sum-tests", "sum-findings"] {
        assert_ne!(by_id(&r.body, id), "0", "the seeded year has {id}");
    }
    for id in ["sum-referrals", "sum-overdue"] {
        assert_eq!(by_id(&r.body, id), "2", "{id}");
    }
    // Drill-down: each township's row links to its own dashboard, whose figures are its
    // own; a village's page lists its producers with links to their pages.
    let units = table(&r.body, "units");
    let townships: Vec<_> = d.townships().collect();
    assert_eq!(units.len(), townships.len());
    for t in &townships {
        let row = &units[&t.name];
        let count = d
            .producers
            .iter()
            .filter(|p| subtree(&d, &t.code).contains(&p.grid))
            .count();
        assert_eq!(row[0], s(count), "{}", t.name);
        let body = r.body.replace("&#38;", "&amp;");
        assert!(body.contains(&format!(
            "href=\"/desk/dashboard?grid={}&amp;from={from}&amp;to={to}\"",
            t.code
        )));
        let rt = b.get(&format!(
            "/desk/dashboard?grid={}&from={from}&to={to}",
            t.code
        ));
        assert_eq!(rt.status, StatusCode::OK);
        check_figures(&d, &subtree(&d, &t.code), &rt.body, from, to);
    }
    let village = d.villages().next().unwrap().code.clone();
    let rv = b.get(&format!(
        "/desk/dashboard?grid={village}&from=2025-06-01&to=2025-12-31"
    ));
    assert_eq!(rv.status, StatusCode::OK);
    check_figures(
        &d,
        std::slice::from_ref(&village),
        &rv.body,
        "2025-06-01",
        "2025-12-31",
    );
    assert!(rv.body.contains(&format!("/desk/directory?grid={village}")));
    // A period that reaches today judges coverage now; every chart is inline SVG.
    let rn = b.get(&format!("/desk/dashboard?grid={banner}"));
    assert_eq!(rn.status, StatusCode::OK);
    let year = gridsync_core::dates::china_date(gridsync_core::now_ms());
    check_figures(
        &d,
        &subtree(&d, &banner),
        &rn.body,
        &format!("{}-01-01", &year[..4]),
        &year,
    );
    assert!(rn.body.matches("<svg ").count() >= 7);
    assert!(!rn.body.contains("<script"));
    // The nav links to the dashboard.
    assert!(b.get("/desk/").body.contains("href=\"/desk/dashboard\""));
}

#[test]
fn a_supervisor_sees_only_their_township_and_bad_requests_are_refused() {
    let d = dataset();
    let srv = start_with(&d);
    let sup = d.person(Role::Supervisor).unwrap().clone();
    let own = sup.grids[0].clone();
    let other = d.townships().find(|t| t.code != own).unwrap().code.clone();
    let mut b = Browser::new(&srv);
    assert_eq!(
        b.sign_in("dsup", CTY_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    let (from, to) = ("2023-06-01", "2025-05-31");
    // Without a grid: the whole scope, which is their township only.
    let r = b.get(&format!("/desk/dashboard?from={from}&to={to}"));
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    check_figures(&d, &subtree(&d, &own), &r.body, from, to);
    let other_names: Vec<&str> = d
        .grids
        .iter()
        .filter(|g| subtree(&d, &other).contains(&g.code))
        .map(|g| g.name.as_str())
        .collect();
    for n in other_names {
        assert!(
            !table(&r.body, "units").contains_key(n),
            "{n} is not theirs"
        );
    }
    // Another township, the banner, an unknown grid: as missing.
    for g in [other.as_str(), d.banner().code.as_str(), "nowhere"] {
        let r = b.get(&format!("/desk/dashboard?grid={g}"));
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{g}");
        assert!(!r.body.contains("sum-producers"));
    }
    // Bad periods.
    for q in [
        "from=2024-13-01",
        "from=2024-02-30",
        "to=yesterday",
        "from=2024-05-02&to=2024-05-01",
        "from=2000-01-01&to=2024-01-01",
    ] {
        let r = b.get(&format!("/desk/dashboard?{q}"));
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
    }
    // Signed out: to the sign-in page.
    let mut anon = Browser::new(&srv);
    assert_eq!(anon.get("/desk/dashboard").status, StatusCode::SEE_OTHER);
}

/// The staffing section against the plan: on the harness's banner T1 has its supervisor
/// and T1-V1 its liaison, T2 and T2-V1 have nobody; a second supervisor for T1 is within
/// the plan, a third is over it. The supervisor's page counts only T1.
#[test]
fn staffing_against_the_plan_on_the_dashboard() {
    let s = start(|_, _| {});
    let mut cty = Browser::new(&s);
    cty.sign_in("bater", CTY_PASSWORD);
    let page = cty.get("/desk/dashboard");
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("id=\"staffing\""),
        "the staffing section"
    );
    let text = page.body.clone();
    assert!(
        text.contains("乡镇（苏木）2 个，按要求配备监管员的 <strong>1</strong> 个；嘎查村 2 个，按要求配备协管员的 <strong>1</strong> 个"),
        "{}",
        &text[text.find("id=\"staffing\"").unwrap()..]
    );
    let off = table(&page.body, "staffing-off-plan");
    assert_eq!(off.len(), 2, "{off:?}");
    assert_eq!(off["网格T2"], ["监管员", "1–2", "0", "未配备"]);
    assert_eq!(off["网格T2-V1"], ["协管员", "1–2", "0", "未配备"]);

    for (id, name) in [("sup2", "第二监管员"), ("sup3", "第三监管员")] {
        s.storage()
            .upsert_person(&person(id, name, Role::Supervisor, &["T1"]))
            .unwrap();
        let page = cty.get("/desk/dashboard");
        let off = table(&page.body, "staffing-off-plan");
        if id == "sup2" {
            assert!(!off.contains_key("网格T1"), "two are within the plan");
        } else {
            assert_eq!(off["网格T1"], ["监管员", "1–2", "3", "超出配备"]);
        }
    }

    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let page = sup.get("/desk/dashboard");
    let off = table(&page.body, "staffing-off-plan");
    assert!(
        off.keys().all(|k| k.starts_with("网格T1")),
        "only the supervisor's township: {off:?}"
    );
}

/// Scale farms on the dashboard: a household selling 200 sheep and goats a year is a scale
/// farm by the national table and a type mismatch; one selling 199 is neither; a family
/// ranch at 250 is a scale farm without a mismatch.
#[test]
fn scale_farms_and_type_mismatches_on_the_dashboard() {
    use gridsync_core::model::{LivestockCount, Species};
    let s = start(|_, _| {});
    let herd = |id: &str, name: &str, t: ProducerType, sold: u32| {
        let Record::Producer(mut p) = producer(id, name, "巴图", "T1-V1") else {
            unreachable!()
        };
        p.producer_type = t;
        p.scale.livestock.insert(
            Species::SheepGoat,
            LivestockCount {
                on_hand: None,
                sold_per_year: Some(sold),
            },
        );
        Record::Producer(p)
    };
    let adm = s.storage().person("adm").unwrap().unwrap();
    gridsync_server::admin::seed_records(
        s.storage(),
        &adm,
        &[
            herd("H1", "巴图散户", ProducerType::SmallHousehold, 200),
            herd("H2", "其其格散户", ProducerType::SmallHousehold, 199),
            herd("H3", "图雅家庭牧场", ProducerType::FamilyRanch, 250),
        ],
    )
    .unwrap();
    let mut sup = Browser::new(&s);
    sup.sign_in("wangli", SUP_PASSWORD);
    let page = sup.get("/desk/dashboard");
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(by_id(&page.body, "scale-farms"), "2");
    assert_eq!(by_id(&page.body, "scale-mismatches"), "1");
}
