//! The dashboard's figures for a grid and a period: directory, patrol coverage, rapid tests,
//! findings, rectifications.
//!
//! Computed from the query tables (the storage's [`Tallies`], grouped counts per grid read
//! in one transaction), within the asking person's scope: the grids counted are the subtree
//! of the grid asked for, cut to the scope, and a grid outside the scope has no figures
//! (the caller answers 404). Counts are rolled up to the grid's children ("units"), so a
//! banner's page shows its townships, a township's its villages.
//!
//! Definitions:
//! - directory: every entry (active and closed) by type and effective review state; the
//!   share approved at township level counts entries approved by the township or already by
//!   the county, at county level those approved by the county; not confirmed this year:
//!   active entries without a yearly confirmation (年度确认) for the current year.
//! - patrol coverage: the phone's rule (`due_patrols`) at the end of the period (now, if the
//!   period reaches today): an active producer is covered when its latest visit started
//!   less than its interval before that instant (interval by risk grade, the phone's
//!   defaults: high 30, medium 90, low 365 days); never visited = no visit up to then.
//! - visits by inspector and month: visits started in the period (drafts included).
//! - rapid tests and findings: made or recorded in the period; referrals to enforcement are
//!   serious findings (and the visits they were recorded in).
//! - rectifications: ordered by visits started in the period; resolved, still open, and
//!   open past their deadline (today).

use std::collections::{BTreeMap, HashMap};

use gridsync_core::model::{
    default_template, GridNode, ProducerStatus, ProducerType, ReviewState, RiskLevel,
};

use crate::scope::Scope;
use crate::storage::tallies::Tallies;
use crate::storage::{ProducerRow, Storage, StorageResult, TallyQuery};

const DAY_MS: i64 = 86_400_000;
const CHINA_OFFSET_MS: i64 = 8 * 3_600_000;

/// Longest period, in months.
pub const MAX_MONTHS: usize = 60;
/// Producers never visited listed by name (the count covers all).
pub const NEVER_VISITED_LISTED: u32 = 100;

/// The review states in workflow order.
pub const REVIEW_STATES: [ReviewState; 5] = [
    ReviewState::Draft,
    ReviewState::Submitted,
    ReviewState::Returned,
    ReviewState::TownshipApproved,
    ReviewState::CountyApproved,
];

/// Verdicts in the order the figures show them.
pub const VERDICTS: [&str; 3] = ["pass", "suspect", "fail"];
/// Severities in the order the figures show them.
pub const SEVERITIES: [&str; 3] = ["minor", "major", "serious"];

/// A period of whole days in China Standard Time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// First day (`YYYY-MM-DD`).
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// Start of the first day, ms.
    pub from_ms: i64,
    /// Start of the day after the last, ms.
    pub to_ms: i64,
    /// The months the period touches: (`YYYY-MM`, start of the month or of the period).
    pub months: Vec<(String, i64)>,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_of(y: i64, m: i64, d: i64) -> i64 {
    // Counting from March 1st puts the leap day at the end of the counted year.
    let (y, m) = if m > 2 { (y, m - 3) } else { (y - 1, m + 9) };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Start (ms) of a civil day in China Standard Time.
fn china_start(y: i64, m: i64, d: i64) -> i64 {
    days_of(y, m, d) * DAY_MS - CHINA_OFFSET_MS
}

/// Parses `YYYY-MM-DD` (a real day) to (year, month, day).
fn parse_day(s: &str) -> Option<(i64, i64, i64)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    // A day past the month's end comes back as another date.
    (gridsync_core::dates::china_date(china_start(y, m, d)) == s).then_some((y, m, d))
}

impl Period {
    /// The period from `from` to `to` (both `YYYY-MM-DD`, `to` included); by default the
    /// year of `today` up to `today`. `Err`: why the period is refused (in Chinese).
    pub fn parse(from: Option<&str>, to: Option<&str>, today: &str) -> Result<Period, String> {
        let default_from = format!("{}-01-01", today.get(..4).unwrap_or("1970"));
        let from_s = from.unwrap_or(&default_from);
        let to_s = to.unwrap_or(today);
        let (fy, fm, fd) =
            parse_day(from_s).ok_or("开始日期格式应为 YYYY-MM-DD，例如 2024-01-01")?;
        let (ty, tm, td) = parse_day(to_s).ok_or("结束日期格式应为 YYYY-MM-DD，例如 2024-12-31")?;
        let from_ms = china_start(fy, fm, fd);
        let to_ms = china_start(ty, tm, td) + DAY_MS;
        if to_ms <= from_ms {
            return Err("结束日期早于开始日期".into());
        }
        let mut months = vec![(format!("{fy:04}-{fm:02}"), from_ms)];
        let (mut y, mut m) = (fy, fm);
        loop {
            (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let start = china_start(y, m, 1);
            if start >= to_ms {
                break;
            }
            if months.len() == MAX_MONTHS {
                return Err(format!("统计期间最长 {MAX_MONTHS} 个月"));
            }
            months.push((format!("{y:04}-{m:02}"), start));
        }
        Ok(Period {
            from: from_s.to_string(),
            to: to_s.to_string(),
            from_ms,
            to_ms,
            months,
        })
    }
}

/// The figures of one unit (a child grid of the grid asked for, or all of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFigures {
    /// Directory entries (active and closed).
    pub producers: i64,
    /// Active entries.
    pub active: i64,
    /// Entries approved by the township (or already by the county).
    pub township_approved: i64,
    /// Entries approved by the county.
    pub county_approved: i64,
    /// Entries last edited more than a year ago.
    pub not_confirmed: i64,
    /// Active producers visited within their interval.
    pub covered: i64,
    /// Active producers never visited.
    pub never_visited: i64,
    /// Visits started in the period.
    pub visits: i64,
    /// Rapid tests in the period.
    pub tests: i64,
    /// Of them, failed.
    pub tests_failed: i64,
    /// Of them, suspect.
    pub tests_suspect: i64,
    /// Findings in the period.
    pub findings: i64,
    /// Serious findings (referred to enforcement).
    pub serious_findings: i64,
    /// Visits with a serious finding (referrals).
    pub referrals: i64,
    /// Rectifications ordered.
    pub rect_ordered: i64,
    /// Resolved.
    pub rect_resolved: i64,
    /// Still open.
    pub rect_open: i64,
    /// Open past the deadline.
    pub rect_overdue: i64,
}

/// A share as a whole percent (none of none: `None`).
pub fn percent(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

impl UnitFigures {
    /// Share approved at township level, percent.
    pub fn township_share(&self) -> Option<f64> {
        percent(self.township_approved, self.producers)
    }
    /// Share approved at county level, percent.
    pub fn county_share(&self) -> Option<f64> {
        percent(self.county_approved, self.producers)
    }
    /// Patrol coverage, percent of active producers.
    pub fn coverage(&self) -> Option<f64> {
        percent(self.covered, self.active)
    }

    fn add(&mut self, o: &UnitFigures) {
        self.producers += o.producers;
        self.active += o.active;
        self.township_approved += o.township_approved;
        self.county_approved += o.county_approved;
        self.not_confirmed += o.not_confirmed;
        self.covered += o.covered;
        self.never_visited += o.never_visited;
        self.visits += o.visits;
        self.tests += o.tests;
        self.tests_failed += o.tests_failed;
        self.tests_suspect += o.tests_suspect;
        self.findings += o.findings;
        self.serious_findings += o.serious_findings;
        self.referrals += o.referrals;
        self.rect_ordered += o.rect_ordered;
        self.rect_resolved += o.rect_resolved;
        self.rect_open += o.rect_open;
        self.rect_overdue += o.rect_overdue;
    }
}

/// A child grid of the grid asked for, with its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Its code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Records on the grid asked for itself (not below it).
    pub own: bool,
    /// Whether it has grids below it (its own dashboard drills further).
    pub has_children: bool,
    /// Its figures.
    pub figures: UnitFigures,
}

/// Entries of one type by review state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRow {
    /// The type.
    pub producer_type: ProducerType,
    /// Entries per state of [`REVIEW_STATES`].
    pub by_state: [i64; 5],
}

impl TypeRow {
    /// Entries of the type.
    pub fn total(&self) -> i64 {
        self.by_state.iter().sum()
    }
}

/// Visits of one inspector, per month of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectorRow {
    /// Person id.
    pub id: String,
    /// Name (the id when the person is not known any more).
    pub name: String,
    /// Visits per month of [`Period::months`].
    pub by_month: Vec<i64>,
}

impl InspectorRow {
    /// Visits in the period.
    pub fn total(&self) -> i64 {
        self.by_month.iter().sum()
    }
}

/// Rapid tests of one item by verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestItemRow {
    /// Test item.
    pub item: String,
    /// Tests per verdict of [`VERDICTS`].
    pub by_verdict: [i64; 3],
}

/// Findings of one checklist item by severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingItemRow {
    /// Checklist item id (none: not tied to an item).
    pub item_id: Option<String>,
    /// Its label.
    pub label: String,
    /// Findings per severity of [`SEVERITIES`].
    pub by_severity: [i64; 3],
}

/// Every figure of the dashboard for a grid and a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// The grid asked for (`None`: the whole scope).
    pub grid: Option<GridNode>,
    /// The grids counted: its subtree within the scope.
    pub grids: Vec<String>,
    /// The period.
    pub period: Period,
    /// The instant coverage was judged at.
    pub coverage_at_ms: i64,
    /// Today (`YYYY-MM-DD`).
    pub today: String,
    /// The whole.
    pub total: UnitFigures,
    /// Its units (children, and the grid's own records), in code order.
    pub units: Vec<Unit>,
    /// Directory by type (types without entries left out).
    pub by_type: Vec<TypeRow>,
    /// Entries per review state of [`REVIEW_STATES`].
    pub by_state: [i64; 5],
    /// Visits per month of the period.
    pub visits_by_month: Vec<i64>,
    /// Visits per inspector, most first.
    pub inspectors: Vec<InspectorRow>,
    /// Rapid tests per item, most first.
    pub tests: Vec<TestItemRow>,
    /// Findings per checklist item, most first.
    pub findings: Vec<FindingItemRow>,
    /// Active producers never visited (the first [`NEVER_VISITED_LISTED`] by grid and name).
    pub never_visited: Vec<ProducerRow>,
}

/// The label of a checklist item of the default template (the text before its colon).
pub fn item_label(id: Option<&str>) -> String {
    let Some(id) = id else {
        return "未关联检查项".into();
    };
    let template = default_template("");
    match template.items.iter().find(|i| i.id == id) {
        Some(i) => i
            .text_zh
            .split(['：', ':'])
            .next()
            .unwrap_or(&i.text_zh)
            .to_string(),
        None => id.to_string(),
    }
}

/// The patrol interval per risk grade (low, medium, high), the phone's defaults.
pub fn interval_days() -> [i64; 3] {
    use gridsync_core::store::default_interval_days as d;
    [d(RiskLevel::Low), d(RiskLevel::Medium), d(RiskLevel::High)]
}

/// The figures of `grid` (`None`: the whole scope) for `period`, within `scope`; `None`
/// when the grid is outside the scope or unknown. `now_ms` decides today, the entries not
/// confirmed this year and, when the period reaches it, the instant of coverage.
pub fn figures(
    storage: &dyn Storage,
    scope: &Scope,
    grid: Option<&str>,
    period: &Period,
    now_ms: i64,
) -> StorageResult<Option<Figures>> {
    let nodes = storage.grids()?;
    let by_code: HashMap<&str, &GridNode> = nodes.iter().map(|n| (n.code.as_str(), n)).collect();
    let focus = match grid {
        None => None,
        Some(g) if scope.readable.contains(g) => match by_code.get(g) {
            Some(n) => Some((*n).clone()),
            None => return Ok(None),
        },
        Some(_) => return Ok(None),
    };
    let grids: Vec<String> = match &focus {
        None => {
            let mut g: Vec<String> = scope.readable.iter().cloned().collect();
            g.sort();
            g
        }
        Some(f) => {
            let mut sub = storage.grid_subtree(std::slice::from_ref(&f.code))?;
            sub.retain(|c| scope.readable.contains(c));
            sub
        }
    };
    let today = gridsync_core::dates::china_date(now_ms);
    let reaches_now = period.to_ms > now_ms;
    let coverage_at_ms = period.to_ms.min(now_ms);
    let q = TallyQuery {
        grids: grids.clone(),
        from_ms: period.from_ms,
        to_ms: period.to_ms,
        month_starts: period.months.iter().skip(1).map(|m| m.1).collect(),
        stale_before_ms: now_ms - 365 * DAY_MS,
        coverage_at_ms,
        visits_until_ms: if reaches_now {
            now_ms.saturating_add(gridsync_core::FUTURE_TOLERANCE_MS)
        } else {
            coverage_at_ms - 1
        },
        interval_days: interval_days(),
        today: today.clone(),
        never_visited_limit: NEVER_VISITED_LISTED,
    };
    let t = storage.tallies(&q)?;
    let unconfirmed =
        storage.unconfirmed_counts(&grids, gridsync_core::dates::china_year(now_ms))?;
    let names: HashMap<String, String> = storage
        .people()?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    Ok(Some(assemble(
        &t,
        &nodes,
        &by_code,
        focus,
        &grids,
        period,
        coverage_at_ms,
        today,
        &names,
        &unconfirmed,
    )))
}

/// The unit each grid counts in: the child of the focus on its path (the focus itself for
/// its own records); with no focus, the topmost grid of the list on its path.
fn unit_of_grids(
    grids: &[String],
    by_code: &HashMap<&str, &GridNode>,
    focus: Option<&str>,
) -> HashMap<String, String> {
    let listed: std::collections::HashSet<&str> = grids.iter().map(String::as_str).collect();
    let mut out = HashMap::new();
    for g in grids {
        let mut cur = g.as_str();
        let unit = loop {
            if Some(cur) == focus {
                break cur;
            }
            let parent = by_code.get(cur).and_then(|n| n.parent.as_deref());
            match parent {
                Some(p) if Some(p) == focus => break cur,
                Some(p) if focus.is_some() || listed.contains(p) => cur = p,
                _ => break cur,
            }
        };
        out.insert(g.clone(), unit.to_string());
    }
    out
}

/// The figures of the unit `grid` counts in.
fn entry<'a>(
    units: &'a mut BTreeMap<String, UnitFigures>,
    unit_of: &HashMap<String, String>,
    grid: &str,
) -> &'a mut UnitFigures {
    let u = unit_of
        .get(grid)
        .cloned()
        .unwrap_or_else(|| grid.to_string());
    units.entry(u).or_default()
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    t: &Tallies,
    nodes: &[GridNode],
    by_code: &HashMap<&str, &GridNode>,
    focus: Option<GridNode>,
    grids: &[String],
    period: &Period,
    coverage_at_ms: i64,
    today: String,
    names: &HashMap<String, String>,
    unconfirmed: &[(String, i64)],
) -> Figures {
    let focus_code = focus.as_ref().map(|f| f.code.clone());
    let unit_of = unit_of_grids(grids, by_code, focus_code.as_deref());
    let mut units: BTreeMap<String, UnitFigures> = BTreeMap::new();
    // Every child unit is listed, even with nothing in it.
    for u in unit_of.values() {
        if Some(u) != focus_code.as_ref() {
            units.entry(u.clone()).or_default();
        }
    }
    let state_index = |s: &str| REVIEW_STATES.iter().position(|x| x.as_str() == s);
    let mut by_type = [[0i64; 5]; ProducerType::ALL.len()];
    let mut by_state = [0i64; 5];
    // Not confirmed this year: active producers without this year's yearly confirmation.
    for (grid, n) in unconfirmed {
        entry(&mut units, &unit_of, grid).not_confirmed += n;
    }
    for d in &t.directory {
        let u = entry(&mut units, &unit_of, &d.grid);
        u.producers += d.producers;
        if d.status == ProducerStatus::Active.as_str() {
            u.active += d.producers;
        }
        if d.review_state == ReviewState::TownshipApproved.as_str()
            || d.review_state == ReviewState::CountyApproved.as_str()
        {
            u.township_approved += d.producers;
        }
        if d.review_state == ReviewState::CountyApproved.as_str() {
            u.county_approved += d.producers;
        }
        let ty = ProducerType::ALL
            .iter()
            .position(|t| t.as_str() == d.producer_type);
        if let (Some(ty), Some(i)) = (ty, state_index(&d.review_state)) {
            by_type[ty][i] += d.producers;
            by_state[i] += d.producers;
        }
    }
    for c in &t.coverage {
        let u = entry(&mut units, &unit_of, &c.grid);
        u.covered += c.covered;
        u.never_visited += c.never;
    }
    let months = period.months.len();
    let mut visits_by_month = vec![0i64; months];
    let mut inspectors: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for v in &t.visits {
        entry(&mut units, &unit_of, &v.grid).visits += v.visits;
        let m = usize::try_from(v.month).unwrap_or(0).min(months - 1);
        visits_by_month[m] += v.visits;
        inspectors
            .entry(v.inspector.clone())
            .or_insert_with(|| vec![0; months])[m] += v.visits;
    }
    let mut tests: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for x in &t.tests {
        let u = entry(&mut units, &unit_of, &x.grid);
        u.tests += x.tests;
        if x.verdict == "fail" {
            u.tests_failed += x.tests;
        } else if x.verdict == "suspect" {
            u.tests_suspect += x.tests;
        }
        if let Some(i) = VERDICTS.iter().position(|v| *v == x.verdict) {
            tests.entry(x.item.clone()).or_default()[i] += x.tests;
        }
    }
    let mut findings: BTreeMap<Option<String>, [i64; 3]> = BTreeMap::new();
    for x in &t.findings {
        let u = entry(&mut units, &unit_of, &x.grid);
        u.findings += x.findings;
        if x.severity == "serious" {
            u.serious_findings += x.findings;
            u.referrals += x.visits;
        }
        if let Some(i) = SEVERITIES.iter().position(|s| *s == x.severity) {
            findings.entry(x.item_id.clone()).or_default()[i] += x.findings;
        }
    }
    for r in &t.rectifications {
        let u = entry(&mut units, &unit_of, &r.grid);
        u.rect_ordered += r.ordered;
        u.rect_resolved += r.resolved;
        u.rect_open += r.open;
        u.rect_overdue += r.overdue;
    }
    let mut total = UnitFigures::default();
    for f in units.values() {
        total.add(f);
    }
    let has_children = |code: &str| nodes.iter().any(|n| n.parent.as_deref() == Some(code));
    let mut unit_list: Vec<Unit> = units
        .into_iter()
        .map(|(code, figures)| {
            let own = Some(&code) == focus_code.as_ref();
            let name = by_code
                .get(code.as_str())
                .map(|n| n.name.clone())
                .unwrap_or_else(|| code.clone());
            Unit {
                has_children: !own && has_children(&code),
                own,
                name,
                code,
                figures,
            }
        })
        .collect();
    // The grid's own records come last.
    unit_list.sort_by(|a, b| (a.own, &a.code).cmp(&(b.own, &b.code)));
    let mut inspectors: Vec<InspectorRow> = inspectors
        .into_iter()
        .map(|(id, by_month)| InspectorRow {
            name: match names.get(&id) {
                Some(n) => n.clone(),
                None => id.clone(),
            },
            id,
            by_month,
        })
        .collect();
    inspectors.sort_by(|a, b| b.total().cmp(&a.total()).then(a.name.cmp(&b.name)));
    let mut tests: Vec<TestItemRow> = tests
        .into_iter()
        .map(|(item, by_verdict)| TestItemRow { item, by_verdict })
        .collect();
    tests.sort_by(|a, b| {
        let n = |r: &TestItemRow| r.by_verdict.iter().sum::<i64>();
        n(b).cmp(&n(a)).then(a.item.cmp(&b.item))
    });
    let mut findings: Vec<FindingItemRow> = findings
        .into_iter()
        .map(|(item_id, by_severity)| FindingItemRow {
            label: item_label(item_id.as_deref()),
            item_id,
            by_severity,
        })
        .collect();
    findings.sort_by(|a, b| {
        let n = |r: &FindingItemRow| r.by_severity.iter().sum::<i64>();
        n(b).cmp(&n(a)).then(a.item_id.cmp(&b.item_id))
    });
    Figures {
        grid: focus,
        grids: grids.to_vec(),
        period: period.clone(),
        coverage_at_ms,
        today,
        total,
        units: unit_list,
        by_type: ProducerType::ALL
            .into_iter()
            .zip(by_type)
            .filter(|(_, s)| s.iter().any(|n| *n > 0))
            .map(|(producer_type, by_state)| TypeRow {
                producer_type,
                by_state,
            })
            .collect(),
        by_state,
        visits_by_month,
        inspectors,
        tests,
        findings,
        never_visited: t.never_visited.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_split_into_months() {
        let p = Period::parse(Some("2024-01-15"), Some("2024-03-01"), "2024-06-01").unwrap();
        assert_eq!(p.from_ms, 1_705_248_000_000);
        assert_eq!(gridsync_core::dates::china_date(p.to_ms - 1), "2024-03-01");
        assert_eq!(gridsync_core::dates::china_date(p.to_ms), "2024-03-02");
        let months: Vec<&str> = p.months.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(months, ["2024-01", "2024-02", "2024-03"]);
        assert_eq!(
            gridsync_core::dates::china_date(p.months[1].1),
            "2024-02-01"
        );
        assert_eq!(
            gridsync_core::dates::china_date(p.months[1].1 - 1),
            "2024-01-31"
        );
        let d = Period::parse(None, None, "2025-04-30").unwrap();
        assert_eq!(
            (d.from.as_str(), d.to.as_str()),
            ("2025-01-01", "2025-04-30")
        );
        assert_eq!(d.months.len(), 4);
        for bad in [
            (Some("2024-02-30"), None),
            (Some("2024-1-01"), None),
            (None, Some("tomorrow")),
            (Some("2024-03-02"), Some("2024-03-01")),
            (Some("2000-01-01"), Some("2024-01-01")),
        ] {
            assert!(
                Period::parse(bad.0, bad.1, "2024-06-01").is_err(),
                "{bad:?}"
            );
        }
        assert!(Period::parse(Some("2024-02-29"), Some("2024-02-29"), "2024-06-01").is_ok());
    }

    #[test]
    fn checklist_items_have_short_labels() {
        assert_eq!(item_label(Some("drug_use")), "农药兽药使用情况");
        assert_eq!(item_label(Some("unknown")), "unknown");
        assert_eq!(item_label(None), "未关联检查项");
    }
}
