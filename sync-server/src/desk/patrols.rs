//! Patrols: visits per grid, person, producer, status and dates; a visit's page; open and
//! overdue rectifications.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    default_template, AnswerType, AnswerValue, ChecklistTemplate, Record, RecordKind, Severity,
    TestMethod, Verdict, Visit, VisitStatus, YesNoNa, DEFAULT_TEMPLATE_ID,
};
use gridsync_core::rules::in_scope;

use super::directory::{
    bad_param, datetime, grid_choices, grid_names, list_grids, name_of, page_req, person_names,
    respond, scoped, Choice, Outcome, Pager, Params, Refused, VisitLine,
};
use super::*;
use crate::storage::VisitFilter;

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
        .route("/desk/visits", get(visits))
        .route("/desk/visits/{id}", get(visit))
        .route("/desk/rectifications", get(rectifications))
}

const DAY_MS: i64 = 86_400_000;
const CHINA_OFFSET_MS: i64 = 8 * 3_600_000;

/// The start (ms) of a `YYYY-MM-DD` day in China Standard Time; `None` if it is not a date.
fn china_day_start(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm, the inverse of core::dates).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = days * DAY_MS - CHINA_OFFSET_MS;
    // 2023-02-30 does not come back as itself.
    (gridsync_core::dates::china_date(ms) == s).then_some(ms)
}

/// Today in China Standard Time.
fn china_today() -> String {
    gridsync_core::dates::china_date(gridsync_core::now_ms())
}

// ---- The visit list. ----

struct VisitsQuery {
    grid: Option<String>,
    inspector: Option<String>,
    producer: Option<String>,
    status: Option<VisitStatus>,
    from: Option<String>,
    to: Option<String>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    page: u32,
}

fn short_id(p: &Params, name: &str) -> Result<Option<String>, Refused> {
    match p.get(name) {
        Some(v) if v.chars().count() > 64 => Err(bad_param(name, "过长（最多 64 个字符）")),
        v => Ok(v.map(str::to_string)),
    }
}

impl VisitsQuery {
    fn parse(p: &Params) -> Result<Self, Refused> {
        let status = match p.get("status") {
            None => None,
            Some(s) => Some(VisitStatus::parse(s).ok_or_else(|| {
                bad_param("status", "应为 draft（记录中）或 completed（已完成）")
            })?),
        };
        let day = |name: &str| -> Result<(Option<String>, Option<i64>), Refused> {
            match p.get(name) {
                None => Ok((None, None)),
                Some(d) => match china_day_start(d) {
                    Some(ms) => Ok((Some(d.to_string()), Some(ms))),
                    None => Err(bad_param(name, "日期格式应为 YYYY-MM-DD，例如 2024-03-01")),
                },
            }
        };
        let (from, from_ms) = day("from")?;
        let (to, to_ms) = day("to")?;
        if let (Some(a), Some(b)) = (from_ms, to_ms) {
            if a > b {
                return Err(bad_param("to", "结束日期早于开始日期"));
            }
        }
        Ok(VisitsQuery {
            grid: short_id(p, "grid")?,
            inspector: short_id(p, "inspector")?,
            producer: short_id(p, "producer")?,
            status,
            from,
            to,
            from_ms,
            // The end date is included: visits started before the next day.
            to_ms: to_ms.map(|t| t + DAY_MS),
            page: p.page()?,
        })
    }
}

struct VisitListRow {
    line: VisitLine,
    producer_id: String,
    producer: String,
    grid: String,
}

#[derive(Template)]
#[template(path = "desk/visits.html")]
struct VisitsPage {
    me: Me,
    grids: Vec<Choice>,
    inspectors: Vec<Choice>,
    statuses: Vec<Choice>,
    producer: String,
    producer_name: Option<String>,
    from: String,
    to: String,
    rows: Vec<VisitListRow>,
    pager: Pager,
    filtered: bool,
}

struct VisitsData {
    grids: Vec<Choice>,
    inspectors: Vec<Choice>,
    producer_name: Option<String>,
    rows: Vec<VisitListRow>,
    more: bool,
}

async fn visits(
    State(st): State<Arc<DeskState>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let q = match VisitsQuery::parse(&Params(params)) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let (grid, inspector, producer) = (q.grid.clone(), q.inspector.clone(), q.producer.clone());
    let (status, from_ms, to_ms, page) = (q.status, q.from_ms, q.to_ms, q.page);
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        let Some(grids) = list_grids(storage, scope, grid.as_deref())? else {
            return Ok(Outcome::NotFound);
        };
        // A producer outside the scope answers as a missing one.
        let producer_name = match &producer {
            None => None,
            Some(id) => match storage.query_producer(id)? {
                Some(p) if in_scope(scope.tree.as_ref(), &scope.actor, &p.grid) => Some(p.name),
                _ => return Ok(Outcome::NotFound),
            },
        };
        let filter = VisitFilter {
            grids,
            producer_id: producer.clone(),
            inspector: inspector.clone(),
            from_ms,
            to_ms,
            status,
        };
        let page = storage.visits(&filter, page_req(page))?;
        let names = person_names(storage)?;
        let nodes = storage.grids()?;
        let gnames = grid_names(&nodes);
        let mut producers: HashMap<String, String> = HashMap::new();
        let mut rows = Vec::with_capacity(page.rows.len());
        for v in &page.rows {
            if !producers.contains_key(&v.producer_id) {
                let n = storage
                    .query_producer(&v.producer_id)?
                    .map(|p| p.name)
                    .unwrap_or_else(|| v.producer_id.clone());
                producers.insert(v.producer_id.clone(), n);
            }
            rows.push(VisitListRow {
                line: VisitLine::of(v, &names),
                producer_id: v.producer_id.clone(),
                producer: producers[&v.producer_id].clone(),
                grid: format!("{}（{}）", name_of(&gnames, &v.grid), v.grid),
            });
        }
        // Inspectors: the people whose grids are in the scope (administrators only
        // themselves), as the phones' reference data lists them.
        let mut people: Vec<(String, String)> = scope
            .reference
            .people
            .iter()
            .map(|p| (p.id.clone(), format!("{}（{}）", p.name, p.role.label_zh())))
            .collect();
        people.sort_by(|a, b| a.1.cmp(&b.1));
        if let Some(i) = &inspector {
            if !people.iter().any(|p| &p.0 == i) {
                people.push((i.clone(), name_of(&names, i)));
            }
        }
        Ok(Outcome::Page(VisitsData {
            grids: grid_choices(&nodes, &scope.readable, grid.as_deref()),
            inspectors: Choice::list(people, inspector.as_deref()),
            producer_name,
            rows,
            more: page.more,
        }))
    })
    .await;
    respond(r, |d| {
        let status_s = q.status.map(|s| s.as_str()).unwrap_or("");
        let grid_s = q.grid.clone().unwrap_or_default();
        let insp_s = q.inspector.clone().unwrap_or_default();
        let prod_s = q.producer.clone().unwrap_or_default();
        let from_s = q.from.clone().unwrap_or_default();
        let to_s = q.to.clone().unwrap_or_default();
        let pager = Pager::new(
            "/desk/visits",
            &[
                ("grid", &grid_s),
                ("inspector", &insp_s),
                ("producer", &prod_s),
                ("status", status_s),
                ("from", &from_s),
                ("to", &to_s),
            ],
            q.page,
            d.more,
        );
        html(
            StatusCode::OK,
            &VisitsPage {
                me: Me::of(&signed),
                filtered: [&grid_s, &insp_s, &prod_s, &from_s, &to_s]
                    .iter()
                    .any(|s| !s.is_empty())
                    || !status_s.is_empty(),
                grids: d.grids,
                inspectors: d.inspectors,
                statuses: Choice::list(
                    [VisitStatus::Draft, VisitStatus::Completed].map(|s| {
                        (
                            s.as_str().to_string(),
                            super::directory::visit_status_label(s).to_string(),
                        )
                    }),
                    q.status.map(|s| s.as_str()),
                ),
                producer: prod_s,
                producer_name: d.producer_name,
                from: from_s,
                to: to_s,
                rows: d.rows,
                pager,
            },
        )
    })
}

// ---- A visit's page. ----

struct AnswerView {
    item: String,
    text: String,
    value: String,
    note: String,
    negative: bool,
}

struct FindingView {
    id: String,
    description: String,
    severity: &'static str,
    serious: bool,
    item: String,
    by: String,
    at: String,
    photos: usize,
}

struct TestView {
    id: String,
    sample: String,
    item: String,
    method: &'static str,
    kit: String,
    value: String,
    verdict: &'static str,
    verdict_class: &'static str,
    operator: String,
    at: String,
}

struct RectView {
    required: bool,
    deadline: String,
    notice: String,
    resolved: Option<String>,
    overdue: bool,
}

struct ReviewView {
    by: String,
    at: String,
    comment: String,
}

struct AttachmentView {
    place: String,
    mime: String,
    size: String,
    sha: String,
}

#[derive(Template)]
#[template(path = "desk/visit.html")]
struct VisitPage {
    me: Me,
    id: String,
    producer_id: String,
    producer: String,
    producer_visible: bool,
    grid: String,
    inspector: String,
    template: String,
    started: String,
    ended: String,
    status: &'static str,
    answers: Vec<AnswerView>,
    findings: Vec<FindingView>,
    tests: Vec<TestView>,
    rectification: Option<RectView>,
    follow_up_of: Option<String>,
    follow_up_visit: Option<String>,
    review: Option<ReviewView>,
    acknowledgement: Option<String>,
    attachments: Vec<AttachmentView>,
}

/// The template a visit was recorded with: stored, or the built-in one.
fn template_of(
    storage: &dyn Storage,
    v: &Visit,
) -> Result<Option<ChecklistTemplate>, StorageError> {
    let id = ChecklistTemplate::record_id(&v.template_id, v.template_version);
    if let Some(s) = storage
        .record(&id)?
        .filter(|s| s.kind == RecordKind::Template)
    {
        if let Ok(Record::Template(t)) = RecordDoc::load(&s.doc, &[]).and_then(|d| d.read()) {
            return Ok(Some(t));
        }
    }
    Ok(
        (v.template_id == DEFAULT_TEMPLATE_ID && v.template_version == 1)
            .then(|| default_template("")),
    )
}

fn yes_no_label(v: YesNoNa) -> &'static str {
    match v {
        YesNoNa::Yes => "是",
        YesNoNa::No => "否",
        YesNoNa::NotApplicable => "不适用",
    }
}

fn number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn answer_text(value: &AnswerValue, kind: Option<&AnswerType>) -> String {
    let option = |id: &str| -> String {
        match kind {
            Some(AnswerType::SingleChoice { options } | AnswerType::MultiChoice { options }) => {
                options
                    .iter()
                    .find(|o| o.id == id)
                    .map(|o| o.label_zh.clone())
                    .unwrap_or_else(|| id.to_string())
            }
            _ => id.to_string(),
        }
    };
    match value {
        AnswerValue::YesNo(v) => yes_no_label(*v).into(),
        AnswerValue::Number(n) => match kind {
            Some(AnswerType::Number { unit, .. }) => format!("{} {unit}", number(*n)),
            _ => number(*n),
        },
        AnswerValue::Text(t) => t.clone(),
        AnswerValue::Choice(c) => option(c),
        AnswerValue::Choices(cs) => cs.iter().map(|c| option(c)).collect::<Vec<_>>().join("、"),
        AnswerValue::Photos(ps) => format!("{} 张照片", ps.len()),
    }
}

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Minor => "轻微（当场整改）",
        Severity::Major => "一般（需整改通知）",
        Severity::Serious => "严重（移交综合执法）",
    }
}

fn method_label(m: TestMethod) -> &'static str {
    match m {
        TestMethod::EnzymeInhibition => "酶抑制法",
        TestMethod::ColloidalGold => "胶体金试纸条",
        TestMethod::Other => "其他方法",
    }
}

fn verdict_label(v: Verdict) -> (&'static str, &'static str) {
    match v {
        Verdict::Pass => ("合格", "verdict-pass"),
        Verdict::Fail => ("不合格", "verdict-fail"),
        Verdict::Suspect => ("疑似", "verdict-suspect"),
    }
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

fn visit_page(
    storage: &dyn Storage,
    scope: &crate::scope::Scope,
    id: &str,
) -> Result<Option<VisitPageData>, StorageError> {
    let Some(stored) = storage.record(id)?.filter(|s| s.kind == RecordKind::Visit) else {
        return Ok(None);
    };
    if !in_scope(scope.tree.as_ref(), &scope.actor, &stored.grid) {
        return Ok(None);
    }
    let v = match RecordDoc::load(&stored.doc, &[]).and_then(|d| d.read()) {
        Ok(Record::Visit(v)) => v,
        Ok(_) => return Ok(None),
        Err(e) => {
            tracing::warn!(record = id, "desk: stored visit does not read: {e}");
            return Err(StorageError::BadRow(format!("visit {id} does not read")));
        }
    };
    if !in_scope(scope.tree.as_ref(), &scope.actor, &v.grid) {
        return Ok(None);
    }
    let template = template_of(storage, &v)?;
    let producer = storage.query_producer(&v.producer_id)?;
    let names = person_names(storage)?;
    let nodes = storage.grids()?;
    Ok(Some(VisitPageData {
        v,
        template,
        producer: producer.map(|p| {
            let visible = in_scope(scope.tree.as_ref(), &scope.actor, &p.grid);
            (p.name, visible)
        }),
        names,
        grids: grid_names(&nodes),
    }))
}

struct VisitPageData {
    v: Visit,
    template: Option<ChecklistTemplate>,
    producer: Option<(String, bool)>,
    names: HashMap<String, String>,
    grids: HashMap<String, String>,
}

async fn visit(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        Ok(match visit_page(storage, scope, &id)? {
            Some(d) => Outcome::Page(d),
            None => Outcome::NotFound,
        })
    })
    .await;
    respond(r, |d| render_visit(&signed, d))
}

fn render_visit(signed: &Signed, d: VisitPageData) -> Response {
    let VisitPageData {
        v,
        template,
        producer,
        names,
        grids,
    } = d;
    let item_text = |item: &str| -> String {
        template
            .as_ref()
            .and_then(|t| t.item(item))
            .map(|i| i.text_zh.clone())
            .unwrap_or_else(|| item.to_string())
    };
    // Answers in the template's order, then any the template does not name.
    let mut answers = Vec::new();
    let mut shown = std::collections::HashSet::new();
    if let Some(t) = &template {
        for item in &t.items {
            if let Some(a) = v.answers.get(&item.id) {
                shown.insert(item.id.clone());
                answers.push(AnswerView {
                    item: item.id.clone(),
                    text: item.text_zh.clone(),
                    value: answer_text(&a.value, Some(&item.answer)),
                    note: a.note.clone().unwrap_or_default(),
                    negative: matches!(a.value, AnswerValue::YesNo(YesNoNa::No)),
                });
            }
        }
    }
    for (item, a) in &v.answers {
        if !shown.contains(item) {
            answers.push(AnswerView {
                item: item.clone(),
                text: item.clone(),
                value: answer_text(&a.value, None),
                note: a.note.clone().unwrap_or_default(),
                negative: matches!(a.value, AnswerValue::YesNo(YesNoNa::No)),
            });
        }
    }
    let findings = v
        .findings
        .iter()
        .map(|f| FindingView {
            id: f.id.clone(),
            description: f.description.clone(),
            severity: severity_label(f.severity),
            serious: f.severity == Severity::Serious,
            item: f.item_id.as_deref().map(item_text).unwrap_or_default(),
            by: name_of(&names, &f.recorded_by),
            at: datetime(f.recorded_at_ms),
            photos: f.photos.len(),
        })
        .collect();
    let tests = v
        .rapid_tests
        .iter()
        .map(|t| {
            let (verdict, verdict_class) = verdict_label(t.verdict);
            TestView {
                id: t.id.clone(),
                sample: t.sample.clone(),
                item: t.item.clone(),
                method: method_label(t.method),
                kit: t.kit.clone(),
                value: match (t.value, &t.unit) {
                    (Some(x), Some(u)) => format!("{} {u}", number(x)),
                    (Some(x), None) => number(x),
                    _ => "—".into(),
                },
                verdict,
                verdict_class,
                operator: name_of(&names, &t.operator),
                at: datetime(t.tested_at_ms),
            }
        })
        .collect();
    let today = china_today();
    let rectification = v.rectification.as_ref().map(|r| RectView {
        required: r.required,
        deadline: r.deadline.clone(),
        notice: r.notice_number.clone(),
        resolved: r.resolved_at_ms.map(date),
        overdue: r.required && r.resolved_at_ms.is_none() && r.deadline.as_str() < today.as_str(),
    });
    let attachments = gridsync_core::attachment::photo_fields(&v)
        .into_iter()
        .filter_map(|(place, r)| {
            let a: gridsync_core::attachment::AttachmentRef = r.parse().ok()?;
            Some(AttachmentView {
                place,
                mime: a.mime,
                size: size_text(a.size),
                sha: a.sha256.get(..12).unwrap_or(&a.sha256).to_string(),
            })
        })
        .collect();
    let (producer_name, producer_visible) =
        producer.unwrap_or_else(|| (v.producer_id.clone(), false));
    html(
        StatusCode::OK,
        &VisitPage {
            me: Me::of(signed),
            id: v.id.clone(),
            producer_id: v.producer_id.clone(),
            producer: producer_name,
            producer_visible,
            grid: format!("{}（{}）", name_of(&grids, &v.grid), v.grid),
            inspector: name_of(&names, &v.inspector),
            template: match &template {
                Some(t) => format!("{}（第 {} 版）", t.name_zh, t.version),
                None => format!("{}（第 {} 版，未找到）", v.template_id, v.template_version),
            },
            started: datetime(v.started_at_ms),
            ended: v
                .ended_at_ms
                .map(datetime)
                .unwrap_or_else(|| "未结束".into()),
            status: super::directory::visit_status_label(v.status),
            answers,
            findings,
            tests,
            rectification,
            follow_up_of: v.follow_up_of.clone(),
            follow_up_visit: v.follow_up_visit.clone(),
            review: v.review.as_ref().map(|r| ReviewView {
                by: name_of(&names, &r.by),
                at: datetime(r.at_ms),
                comment: r.comment.clone(),
            }),
            acknowledgement: v
                .acknowledgement
                .as_ref()
                .map(|a| format!("{}，{}", a.signed_by, datetime(a.at_ms))),
            attachments,
        },
    )
}

// ---- Rectifications. ----

struct RectRow {
    id: String,
    deadline: String,
    overdue: bool,
    producer_id: String,
    producer: String,
    grid: String,
    notice: String,
    visited: String,
    inspector: String,
}

#[derive(Template)]
#[template(path = "desk/rectifications.html")]
struct RectificationsPage {
    me: Me,
    today: String,
    overdue_only: bool,
    rows: Vec<RectRow>,
    pager: Pager,
}

async fn rectifications(
    State(st): State<Arc<DeskState>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let params = Params(params);
    let overdue_only = match params.get("overdue") {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return *bad_param("overdue", "应为 1（只看逾期）或 0"),
    };
    let page = match params.page() {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let today = china_today();
    let today2 = today.clone();
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        let Some(grids) = list_grids(storage, scope, None)? else {
            return Ok(Outcome::NotFound);
        };
        let found = storage.open_rectifications(&grids, &today2, overdue_only, page_req(page))?;
        let names = person_names(storage)?;
        let gnames = grid_names(&storage.grids()?);
        let rows: Vec<RectRow> = found
            .rows
            .into_iter()
            .map(|r| {
                let v = r.visit;
                RectRow {
                    deadline: v.rect_deadline.clone().unwrap_or_default(),
                    overdue: r.overdue,
                    producer: if r.producer_name.is_empty() {
                        v.producer_id.clone()
                    } else {
                        r.producer_name
                    },
                    grid: format!("{}（{}）", name_of(&gnames, &v.grid), v.grid),
                    notice: v.rect_notice.clone().unwrap_or_default(),
                    visited: date(v.started_at_ms),
                    inspector: name_of(&names, &v.inspector),
                    producer_id: v.producer_id,
                    id: v.id,
                }
            })
            .collect();
        Ok(Outcome::Page((rows, found.more)))
    })
    .await;
    respond(r, |(rows, more)| {
        let pager = Pager::new(
            "/desk/rectifications",
            &[("overdue", if overdue_only { "1" } else { "" })],
            page,
            more,
        );
        html(
            StatusCode::OK,
            &RectificationsPage {
                me: Me::of(&signed),
                today,
                overdue_only,
                rows,
                pager,
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_days_parse_and_round_trip() {
        assert_eq!(china_day_start("1970-01-01"), Some(-CHINA_OFFSET_MS));
        // 2024-03-01 00:00 in China is 2024-02-29 16:00 UTC.
        assert_eq!(china_day_start("2024-03-01"), Some(1_709_222_400_000));
        assert_eq!(
            china_day_start("2024-02-29"),
            Some(1_709_222_400_000 - DAY_MS)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "20240301",
            "２０２４-03-01",
            "",
        ] {
            assert_eq!(china_day_start(bad), None, "{bad}");
        }
    }
}
