//! Dashboard pages: figures with SVG charts drawn on the server, a table beside each,
//! drill-down from banner to township to village to producer.
//!
//! `GET /desk/dashboard?grid=&from=&to=`: the figures of `reports::figures` for the grid
//! (default: the whole scope) and the period (default: this year up to today). A grid
//! outside the scope answers as missing (404); a bad period is refused (400).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gridsync_core::model::{GridLevel, GridNode};

use super::directory::{bad_param, grid_choices, respond, scoped, Choice, Outcome, Params};
use super::*;
use crate::reports::figures::{
    self, percent, Figures, Period, UnitFigures, REVIEW_STATES, SEVERITIES, VERDICTS,
};
use crate::reports::svg::{self, Bar};

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new().route("/desk/dashboard", get(dashboard))
}

/// Inspectors drawn in the chart (the table lists all).
const CHART_INSPECTORS: usize = 20;

fn pct(p: Option<f64>) -> String {
    match p {
        Some(v) => format!("{v:.1}%"),
        None => "—".into(),
    }
}

/// One drill-down row.
struct UnitView {
    name: String,
    code: String,
    /// Where its name leads: its own dashboard (the grid's own records: its directory).
    link: String,
    /// Its directory.
    dir_link: String,
    own: bool,
    f: UnitFigures,
    township_share: String,
    county_share: String,
    coverage: String,
}

/// A row of a table: its label (and link) and cells.
struct Line {
    label: String,
    link: Option<String>,
    cells: Vec<String>,
}

/// A link of the breadcrumb.
struct Crumb {
    name: String,
    link: String,
}

/// A producer never visited.
struct NeverRow {
    id: String,
    name: String,
    grid: String,
    risk: &'static str,
}

/// The township compliance section (from `reports::compliance`).
struct ComplianceView {
    year: i32,
    compliant: usize,
    total: usize,
    share: String,
    target: String,
    meets: Option<bool>,
    rows: Vec<Line>,
    chart: String,
}

/// The staffing section: grids staffed outside the plan (reports::staffing).
struct StaffingView {
    townships: usize,
    townships_ok: usize,
    villages: usize,
    villages_ok: usize,
    rows: Vec<Line>,
    more: usize,
}

/// Off-plan grids listed on the page at most.
const STAFFING_ROWS: usize = 50;

#[derive(Template)]
#[template(path = "desk/dashboard.html")]
struct DashboardPage {
    me: Me,
    title: String,
    level: &'static str,
    crumbs: Vec<Crumb>,
    grids: Vec<Choice>,
    from: String,
    to: String,
    as_of: String,
    today: String,
    total: UnitFigures,
    total_township_share: String,
    total_county_share: String,
    total_coverage: String,
    units: Vec<UnitView>,
    unit_heading: &'static str,
    coverage_chart: String,
    states: Vec<&'static str>,
    types: Vec<Line>,
    states_total: Vec<String>,
    types_chart: String,
    shares_chart: String,
    months: Vec<Line>,
    months_chart: String,
    inspectors: Vec<Line>,
    month_labels: Vec<String>,
    inspectors_chart: String,
    never: Vec<NeverRow>,
    never_more: bool,
    tests: Vec<Line>,
    tests_chart: String,
    findings: Vec<Line>,
    findings_chart: String,
    rect_chart: String,
    directory_link: String,
    compliance: Option<ComplianceView>,
    staffing: Option<StaffingView>,
    scale: crate::storage::ScaleCount,
    /// Open possible duplicates (疑似重复待处理), pairs counted once.
    duplicates: super::duplicates::OpenFigure,
}

/// The page's parameters, checked.
struct DashboardQuery {
    grid: Option<String>,
    period: Period,
}

impl DashboardQuery {
    fn parse(p: &Params, today: &str) -> Result<Self, super::directory::Refused> {
        let grid = p.get("grid").map(str::to_string);
        if grid.as_ref().is_some_and(|g| g.chars().count() > 64) {
            return Err(bad_param("grid", "网格编码过长"));
        }
        let period = Period::parse(p.get("from"), p.get("to"), today).map_err(|why| {
            let name = if why.contains("开始") { "from" } else { "to" };
            bad_param(name, &why)
        })?;
        Ok(DashboardQuery { grid, period })
    }
}

/// What the page's blocking work gathers.
struct Gathered {
    figures: Figures,
    nodes: Vec<GridNode>,
    choices: Vec<Choice>,
    crumbs: Vec<Crumb>,
    compliance: Option<crate::reports::compliance::ComplianceSummary>,
    staffing: crate::reports::staffing::StaffingReport,
    scale: crate::storage::ScaleCount,
    duplicates: super::duplicates::OpenFigure,
}

async fn dashboard(
    State(st): State<Arc<DeskState>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let now = gridsync_core::now_ms();
    let today = gridsync_core::dates::china_date(now);
    let query = match DashboardQuery::parse(&Params(params), &today) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let period = query.period.clone();
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        let Some(figures) =
            figures::figures(storage, scope, query.grid.as_deref(), &query.period, now)?
        else {
            return Ok(Outcome::NotFound);
        };
        let nodes = storage.grids()?;
        let choices = grid_choices(&nodes, &scope.readable, query.grid.as_deref());
        let crumbs = breadcrumb(
            &nodes,
            &scope.readable,
            figures.grid.as_ref(),
            &query.period,
        );
        // ---- Township compliance (reports::compliance, another part of issue 15): the
        // year of the period's end, for the townships counted here. ----
        let year: i32 = figures
            .period
            .to
            .get(..4)
            .and_then(|y| y.parse().ok())
            .unwrap_or(0);
        let compliance = Some(crate::reports::compliance::township_compliance(
            storage,
            &figures.grids,
            year,
        )?)
        .filter(|c| c.total > 0);
        // Staffing against the plan, for the grid shown or the whole scope.
        let roots: Vec<String> = match &figures.grid {
            Some(g) => vec![g.code.clone()],
            None => figures.grids.clone(),
        };
        let staffing = crate::reports::staffing::staffing_of(
            &nodes,
            &storage.people()?,
            &roots,
            &crate::reports::staffing::StaffingPlan::default(),
        );
        // Scale farms by the thresholds of each producer's league (active producers).
        let scale = storage.scale_counts(&figures.grids)?.into_values().fold(
            crate::storage::ScaleCount::default(),
            |mut t, c| {
                t.producers += c.producers;
                t.scale_farms += c.scale_farms;
                t.mismatches += c.mismatches;
                t
            },
        );
        // Open possible duplicates of the grids counted (each pair once).
        let duplicates = super::duplicates::open_figure(
            storage,
            &figures.grids,
            &scope.readable,
            &super::directory::grid_names(&nodes),
        )?;
        Ok(Outcome::Page(Gathered {
            duplicates,
            figures,
            nodes,
            choices,
            crumbs,
            compliance,
            staffing,
            scale,
        }))
    })
    .await;
    respond(r, |g| render(&signed, g, &period))
}

/// Links from the top of the scope down to the grid shown.
fn breadcrumb(
    nodes: &[GridNode],
    readable: &std::collections::HashSet<String>,
    focus: Option<&GridNode>,
    period: &Period,
) -> Vec<Crumb> {
    let by_code: HashMap<&str, &GridNode> = nodes.iter().map(|n| (n.code.as_str(), n)).collect();
    let mut out = Vec::new();
    let mut cur = focus;
    while let Some(n) = cur {
        if !readable.contains(&n.code) {
            break;
        }
        out.push(Crumb {
            name: n.name.clone(),
            link: dashboard_link(Some(&n.code), period),
        });
        cur = n.parent.as_deref().and_then(|p| by_code.get(p).copied());
    }
    out.push(Crumb {
        name: "全部管辖范围".into(),
        link: dashboard_link(None, period),
    });
    out.reverse();
    out
}

fn dashboard_link(grid: Option<&str>, period: &Period) -> String {
    let mut q = Vec::new();
    if let Some(g) = grid {
        q.push(format!("grid={}", url_encode(g)));
    }
    q.push(format!("from={}", url_encode(&period.from)));
    q.push(format!("to={}", url_encode(&period.to)));
    format!("/desk/dashboard?{}", q.join("&"))
}

fn directory_link(grid: &str) -> String {
    format!("/desk/directory?grid={}", url_encode(grid))
}

fn verdict_label(v: &str) -> &'static str {
    match v {
        "pass" => "合格",
        "fail" => "不合格",
        _ => "疑似",
    }
}

fn severity_label(s: &str) -> &'static str {
    match s {
        "minor" => "轻微",
        "major" => "一般",
        _ => "严重（移交执法）",
    }
}

fn render(signed: &Signed, g: Gathered, period: &Period) -> Response {
    let f = &g.figures;
    let level = f.grid.as_ref().map(|n| n.level);
    let title = match &f.grid {
        Some(n) => format!("{} 数据看板", n.name),
        None => "数据看板".to_string(),
    };
    let unit_heading = match level {
        None => "管辖网格",
        Some(GridLevel::Region) => "盟市",
        Some(GridLevel::League) => "旗县",
        Some(GridLevel::Banner) => "苏木乡镇",
        Some(GridLevel::Township) => "嘎查村",
        Some(_) => "下级网格",
    };
    let units: Vec<UnitView> = f
        .units
        .iter()
        .map(|u| UnitView {
            name: if u.own {
                format!("{}（本级）", u.name)
            } else {
                u.name.clone()
            },
            // A unit drills into its own dashboard (a village's lists its producers never
            // visited); the grid's own records are in its directory.
            link: if u.own {
                directory_link(&u.code)
            } else {
                dashboard_link(Some(&u.code), period)
            },
            dir_link: directory_link(&u.code),
            code: u.code.clone(),
            own: u.own,
            township_share: pct(u.figures.township_share()),
            county_share: pct(u.figures.county_share()),
            coverage: pct(u.figures.coverage()),
            f: u.figures.clone(),
        })
        .collect();
    let coverage_chart = svg::bars(
        "巡查覆盖率（按网格）",
        &f.units
            .iter()
            .map(|u| Bar {
                label: u.name.clone(),
                values: vec![u.figures.coverage().unwrap_or(0.0)],
                note: pct(u.figures.coverage()),
            })
            .collect::<Vec<_>>(),
        Some(100.0),
        &[],
    );
    let shares_chart = svg::bars(
        "审核通过率（按网格）",
        &f.units
            .iter()
            .flat_map(|u| {
                [
                    Bar {
                        label: format!("{} 乡镇", u.name),
                        values: vec![u.figures.township_share().unwrap_or(0.0)],
                        note: pct(u.figures.township_share()),
                    },
                    Bar {
                        label: format!("{} 旗县", u.name),
                        values: vec![0.0, u.figures.county_share().unwrap_or(0.0)],
                        note: pct(u.figures.county_share()),
                    },
                ]
            })
            .collect::<Vec<_>>(),
        Some(100.0),
        &["乡镇审核通过", "旗县审核通过"],
    );
    let state_labels: Vec<&'static str> = REVIEW_STATES.iter().map(|s| review_label(*s)).collect();
    let types: Vec<Line> = f
        .by_type
        .iter()
        .map(|t| Line {
            label: t.producer_type.label_zh().to_string(),
            link: None,
            cells: t
                .by_state
                .iter()
                .map(|n| n.to_string())
                .chain([t.total().to_string()])
                .collect(),
        })
        .collect();
    let types_chart = svg::bars(
        "主体类型与审核状态",
        &f.by_type
            .iter()
            .map(|t| Bar {
                label: t.producer_type.label_zh().to_string(),
                values: t.by_state.iter().map(|n| *n as f64).collect(),
                note: t.total().to_string(),
            })
            .collect::<Vec<_>>(),
        None,
        &state_labels,
    );
    let months: Vec<Line> = f
        .period
        .months
        .iter()
        .zip(&f.visits_by_month)
        .map(|((m, _), n)| Line {
            label: m.clone(),
            link: None,
            cells: vec![n.to_string()],
        })
        .collect();
    let months_chart = svg::line(
        "巡查次数（按月）",
        &f.period
            .months
            .iter()
            .zip(&f.visits_by_month)
            .map(|((m, _), n)| (m.clone(), *n as f64))
            .collect::<Vec<_>>(),
    );
    let inspectors: Vec<Line> = f
        .inspectors
        .iter()
        .map(|i| Line {
            label: i.name.clone(),
            link: None,
            cells: i
                .by_month
                .iter()
                .map(|n| n.to_string())
                .chain([i.total().to_string()])
                .collect(),
        })
        .collect();
    let inspectors_chart = svg::bars(
        "巡查次数（按巡查人）",
        &f.inspectors
            .iter()
            .take(CHART_INSPECTORS)
            .map(|i| Bar {
                label: i.name.clone(),
                values: vec![i.total() as f64],
                note: i.total().to_string(),
            })
            .collect::<Vec<_>>(),
        None,
        &[],
    );
    let never: Vec<NeverRow> = f
        .never_visited
        .iter()
        .map(|p| NeverRow {
            id: p.id.clone(),
            name: p.name.clone(),
            grid: g
                .nodes
                .iter()
                .find(|n| n.code == p.grid)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| p.grid.clone()),
            risk: risk_label(p.risk),
        })
        .collect();
    let verdict_names: Vec<&str> = VERDICTS.iter().map(|v| verdict_label(v)).collect();
    let tests: Vec<Line> = f
        .tests
        .iter()
        .map(|t| Line {
            label: t.item.clone(),
            link: None,
            cells: t
                .by_verdict
                .iter()
                .map(|n| n.to_string())
                .chain([t.by_verdict.iter().sum::<i64>().to_string()])
                .collect(),
        })
        .collect();
    let tests_chart = svg::bars(
        "速测结果（按检测项目）",
        &f.tests
            .iter()
            .map(|t| Bar {
                label: t.item.clone(),
                values: t.by_verdict.iter().map(|n| *n as f64).collect(),
                note: t.by_verdict.iter().sum::<i64>().to_string(),
            })
            .collect::<Vec<_>>(),
        None,
        &verdict_names,
    );
    let severity_names: Vec<&str> = SEVERITIES.iter().map(|s| severity_label(s)).collect();
    let findings: Vec<Line> = f
        .findings
        .iter()
        .map(|x| Line {
            label: x.label.clone(),
            link: None,
            cells: x
                .by_severity
                .iter()
                .map(|n| n.to_string())
                .chain([x.by_severity.iter().sum::<i64>().to_string()])
                .collect(),
        })
        .collect();
    let findings_chart = svg::bars(
        "发现问题（按检查项）",
        &f.findings
            .iter()
            .map(|x| Bar {
                label: x.label.clone(),
                values: x.by_severity.iter().map(|n| *n as f64).collect(),
                note: x.by_severity.iter().sum::<i64>().to_string(),
            })
            .collect::<Vec<_>>(),
        None,
        &severity_names,
    );
    let t = &f.total;
    let rect_chart = svg::bars(
        "整改情况",
        &[
            ("下达整改", t.rect_ordered),
            ("已整改", t.rect_resolved),
            ("未完成", t.rect_open),
            ("已逾期", t.rect_overdue),
            ("移交执法", t.referrals),
        ]
        .iter()
        .map(|(l, n)| Bar {
            label: (*l).to_string(),
            values: vec![*n as f64],
            note: n.to_string(),
        })
        .collect::<Vec<_>>(),
        None,
        &[],
    );
    let compliance = g.compliance.map(|c| {
        let target = c.target.map(|t| t * 100.0);
        ComplianceView {
            year: c.year,
            compliant: c.compliant,
            total: c.total,
            share: pct(percent(c.compliant as i64, c.total as i64)),
            target: pct(target),
            meets: target.map(|t| c.share * 100.0 + 1e-9 >= t),
            chart: svg::bars(
                "乡镇达标率与目标",
                &[
                    Bar {
                        label: "已达标".into(),
                        values: vec![c.share * 100.0],
                        note: pct(Some(c.share * 100.0)),
                    },
                    Bar {
                        label: "年度目标".into(),
                        values: vec![0.0, target.unwrap_or(0.0)],
                        note: pct(target),
                    },
                ],
                Some(100.0),
                &[],
            ),
            rows: c
                .townships
                .iter()
                .map(|t| Line {
                    label: t.name.clone(),
                    link: Some(dashboard_link(Some(&t.code), period)),
                    cells: vec![
                        if t.accepted { "已达标" } else { "未达标" }.to_string(),
                        t.decided_on.clone().unwrap_or_else(|| "—".into()),
                    ],
                })
                .collect(),
        }
    });
    let states_total = f
        .by_state
        .iter()
        .map(|n| n.to_string())
        .chain([t.producers.to_string()])
        .collect();
    let sum = g.staffing.summary;
    let off: Vec<&crate::reports::staffing::GridStaffing> = g.staffing.off_plan().collect();
    let staffing = (sum.townships + sum.villages > 0).then(|| StaffingView {
        townships: sum.townships,
        townships_ok: sum.townships_ok,
        villages: sum.villages,
        villages_ok: sum.villages_ok,
        more: off.len().saturating_sub(STAFFING_ROWS),
        rows: off
            .iter()
            .take(STAFFING_ROWS)
            .map(|s| Line {
                label: s.name.clone(),
                link: Some(format!("/desk/chart/{}", s.code)),
                cells: vec![
                    s.role.label_zh().to_string(),
                    format!("{}–{}", s.min, s.max),
                    s.people.len().to_string(),
                    s.issue.map(|i| i.label_zh()).unwrap_or("").to_string(),
                ],
            })
            .collect(),
    });
    html(
        StatusCode::OK,
        &DashboardPage {
            me: Me::of(signed),
            title,
            level: level.map(|l| l.label_zh()).unwrap_or("全部管辖范围"),
            crumbs: g.crumbs,
            grids: g.choices,
            from: f.period.from.clone(),
            to: f.period.to.clone(),
            as_of: date(f.coverage_at_ms - 1),
            today: f.today.clone(),
            total_township_share: pct(t.township_share()),
            total_county_share: pct(t.county_share()),
            total_coverage: pct(t.coverage()),
            total: t.clone(),
            units,
            unit_heading,
            coverage_chart,
            states: state_labels,
            types,
            states_total,
            types_chart,
            shares_chart,
            months,
            months_chart,
            month_labels: f.period.months.iter().map(|m| m.0.clone()).collect(),
            inspectors,
            inspectors_chart,
            never_more: (never.len() as i64) < t.never_visited,
            never,
            tests,
            tests_chart,
            findings,
            findings_chart,
            rect_chart,
            directory_link: match &f.grid {
                Some(n) => directory_link(&n.code),
                None => "/desk/directory".into(),
            },
            compliance,
            staffing,
            scale: g.scale,
            duplicates: g.duplicates,
        },
    )
}
