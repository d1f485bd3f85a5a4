//! The directory: the producer list (search, filters, pages) and a producer's page (fields,
//! review history, conflicts, field-level change history, visits).
//!
//! Also the list pages' shared pieces (query parameters, pages of 50 rows, grid choices,
//! names of people and devices), used by [`super::patrols`] too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{GridNode, ProducerType, RecordKind, ReviewState, RiskLevel};
use gridsync_core::rules::in_scope;

use super::*;
use crate::api::blocking;
use crate::scope::Scope;
use crate::storage::{DirectoryFilter, PageReq, ProducerRow};

/// Rows on one page of a list.
pub(super) const PAGE_ROWS: u32 = 50;
/// Longest search text, in characters.
pub(super) const MAX_SEARCH_CHARS: usize = 50;
/// Highest page number a list accepts.
const MAX_PAGE_NUMBER: u32 = 100_000;
/// Changes of a producer whose field-level history is shown (the last ones).
pub(super) const HISTORY_CHANGES: usize = 200;
/// Visits listed on a producer's page.
const PRODUCER_VISITS: u32 = 20;

/// The directory's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
        .route("/desk/directory", get(directory))
        .route("/desk/producers/{id}", get(producer))
}

// ---- Shared pieces of the list pages. ----

/// A page's query parameters (the first of a repeated name counts; unknown names are
/// ignored).
pub(super) struct Params(pub(super) Vec<(String, String)>);

impl Params {
    /// A parameter's trimmed value, `None` when absent or empty.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The page number (`page`, from 1).
    pub(super) fn page(&self) -> Result<u32, Refused> {
        match self.get("page") {
            None => Ok(1),
            Some(p) => match p.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_NUMBER).contains(&n) => Ok(n),
                _ => Err(bad_param("page", "页码应为 1 到 100000 之间的整数")),
            },
        }
    }
}

/// The rows of page `page` (from 1).
pub(super) fn page_req(page: u32) -> PageReq {
    PageReq {
        limit: PAGE_ROWS,
        offset: (page - 1) * PAGE_ROWS,
    }
}

/// A page refused before any work (boxed: a response is large).
pub(super) type Refused = Box<Response>;

/// The answer to a query parameter with a value the page does not take.
pub(super) fn bad_param(name: &str, why: &str) -> Refused {
    Box::new(message(
        StatusCode::BAD_REQUEST,
        "查询条件无效",
        &format!("参数 {name} 的值无效：{why}。"),
    ))
}

/// Links to the previous and next page, keeping the filters.
pub(super) struct Pager {
    pub(super) page: u32,
    pub(super) prev: Option<String>,
    pub(super) next: Option<String>,
}

impl Pager {
    /// The pager of `path` with the filters `kept` (name, value; empty values left out).
    pub(super) fn new(path: &str, kept: &[(&str, &str)], page: u32, more: bool) -> Pager {
        let link = |p: u32| {
            let mut q: Vec<String> = kept
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}={}", url_encode(v)))
                .collect();
            if p > 1 {
                q.push(format!("page={p}"));
            }
            if q.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", q.join("&"))
            }
        };
        Pager {
            page,
            prev: (page > 1).then(|| link(page - 1)),
            next: more.then(|| link(page + 1)),
        }
    }
}

/// One choice of a `<select>`.
pub(super) struct Choice {
    pub(super) value: String,
    pub(super) label: String,
    pub(super) selected: bool,
}

impl Choice {
    pub(super) fn list(
        items: impl IntoIterator<Item = (String, String)>,
        current: Option<&str>,
    ) -> Vec<Choice> {
        items
            .into_iter()
            .map(|(value, label)| Choice {
                selected: current == Some(value.as_str()),
                value,
                label,
            })
            .collect()
    }
}

/// The grids of a scope in tree order, indented by depth, as choices.
pub(super) fn grid_choices(
    nodes: &[GridNode],
    readable: &HashSet<String>,
    current: Option<&str>,
) -> Vec<Choice> {
    let mut children: HashMap<Option<&str>, Vec<&GridNode>> = HashMap::new();
    for n in nodes.iter().filter(|n| readable.contains(&n.code)) {
        // A grid whose parent is outside the scope is a root of the scope.
        let parent = n.parent.as_deref().filter(|p| readable.contains(*p));
        children.entry(parent).or_default().push(n);
    }
    for c in children.values_mut() {
        c.sort_by(|a, b| a.code.cmp(&b.code));
    }
    let mut out = Vec::new();
    let mut stack: Vec<(&GridNode, usize)> = children
        .get(&None)
        .map(|r| r.iter().rev().map(|n| (*n, 0)).collect())
        .unwrap_or_default();
    while let Some((n, depth)) = stack.pop() {
        out.push((
            n.code.clone(),
            format!("{}{}（{}）", "　".repeat(depth), n.name, n.code),
        ));
        if let Some(c) = children.get(&Some(n.code.as_str())) {
            stack.extend(c.iter().rev().map(|c| (*c, depth + 1)));
        }
    }
    Choice::list(out, current)
}

/// The grids a list covers: the scope, or the subtree of the grid asked for (`None`: that
/// grid is outside the scope or unknown, which answers as missing).
pub(super) fn list_grids(
    storage: &dyn Storage,
    scope: &Scope,
    grid: Option<&str>,
) -> Result<Option<Vec<String>>, StorageError> {
    match grid {
        None => {
            let mut g: Vec<String> = scope.readable.iter().cloned().collect();
            g.sort();
            Ok(Some(g))
        }
        Some(g) if scope.readable.contains(g) => {
            let mut sub = storage.grid_subtree(&[g.to_string()])?;
            sub.retain(|c| scope.readable.contains(c));
            Ok(Some(sub))
        }
        Some(_) => Ok(None),
    }
}

/// Names of people by id (everyone, those who left too: their records stay).
pub(super) fn person_names(storage: &dyn Storage) -> Result<HashMap<String, String>, StorageError> {
    Ok(storage
        .all_people()?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect())
}

/// A person's name, or their id when the person is not known (any more).
pub(super) fn name_of(names: &HashMap<String, String>, id: &str) -> String {
    match names.get(id) {
        Some(n) => n.clone(),
        None if id.is_empty() => "—".into(),
        None => id.to_string(),
    }
}

/// Names of grids by code.
pub(super) fn grid_names(nodes: &[GridNode]) -> HashMap<String, String> {
    nodes
        .iter()
        .map(|n| (n.code.clone(), n.name.clone()))
        .collect()
}

/// A time in ms as date and minute in China Standard Time.
pub(super) fn datetime(ms: i64) -> String {
    let in_day = (ms + 8 * 3_600_000).rem_euclid(86_400_000);
    format!(
        "{} {:02}:{:02}",
        date(ms),
        in_day / 3_600_000,
        in_day / 60_000 % 60
    )
}

/// What a page's work in the blocking pool came to.
pub(super) enum Outcome<T> {
    Page(T),
    NotFound,
}

/// Runs `load` on a blocking thread with the scope of `person_id` (a person who has none any
/// more, deactivated meanwhile, gets the 404 page).
pub(super) async fn scoped<T: Send + 'static>(
    st: &Arc<DeskState>,
    person_id: &str,
    load: impl FnOnce(&dyn Storage, &crate::scope::Scope) -> Result<Outcome<T>, crate::api::ApiError>
        + Send
        + 'static,
) -> Result<Outcome<T>, crate::api::ApiError> {
    let st = st.clone();
    let pid = person_id.to_string();
    blocking(move || {
        let storage = st.app.storage.as_ref();
        let Some(scope) = st.app.scopes.scope(storage, &pid)? else {
            return Ok(Outcome::NotFound);
        };
        load(storage, &scope)
    })
    .await
}

/// Turns the blocking work's result into a response.
pub(super) fn respond<T>(
    r: Result<Outcome<T>, crate::api::ApiError>,
    render: impl FnOnce(T) -> Response,
) -> Response {
    match r {
        Ok(Outcome::Page(t)) => render(t),
        Ok(Outcome::NotFound) => not_found(),
        Err(_) => server_error(),
    }
}

// ---- The directory. ----

/// A producer's row in the directory.
struct DirectoryRow {
    id: String,
    name: String,
    grid: String,
    producer_type: &'static str,
    owner: String,
    phone: String,
    review_state: &'static str,
    risk: &'static str,
    risk_class: &'static str,
    last_visit: String,
}

#[derive(Template)]
#[template(path = "desk/directory.html")]
struct DirectoryPage {
    me: Me,
    q: String,
    grids: Vec<Choice>,
    types: Vec<Choice>,
    reviews: Vec<Choice>,
    risks: Vec<Choice>,
    rows: Vec<DirectoryRow>,
    pager: Pager,
    filtered: bool,
    /// Listing the entries merged into another (已合并).
    merged: bool,
}

const REVIEW_STATES: [ReviewState; 5] = [
    ReviewState::Draft,
    ReviewState::Submitted,
    ReviewState::TownshipApproved,
    ReviewState::CountyApproved,
    ReviewState::Returned,
];
const RISKS: [RiskLevel; 3] = [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High];

fn risk_class(r: RiskLevel) -> &'static str {
    match r {
        RiskLevel::Low => "risk-low",
        RiskLevel::Medium => "risk-medium",
        RiskLevel::High => "risk-high",
    }
}

/// The directory's filters, checked.
struct DirectoryQuery {
    search: Option<String>,
    grid: Option<String>,
    producer_type: Option<ProducerType>,
    review_state: Option<ReviewState>,
    risk: Option<RiskLevel>,
    /// Entries merged into another (已合并) instead of the directory's producers.
    merged: bool,
    page: u32,
}

impl DirectoryQuery {
    fn parse(p: &Params) -> Result<Self, Refused> {
        let search = p.get("q").map(str::to_string);
        if let Some(s) = &search {
            let n = s.chars().count();
            if n > MAX_SEARCH_CHARS {
                return Err(Box::new(message(
                    StatusCode::BAD_REQUEST,
                    "搜索内容过长",
                    &format!(
                        "参数 q 的值无效：搜索内容最多 {MAX_SEARCH_CHARS} 个字，您输入了 {n} 个字。请缩短后重试。"
                    ),
                )));
            }
        }
        let grid = p.get("grid").map(str::to_string);
        if grid.as_ref().is_some_and(|g| g.chars().count() > 64) {
            return Err(bad_param("grid", "网格编码过长"));
        }
        let producer_type = match p.get("type") {
            None => None,
            Some(t) => Some(
                ProducerType::parse(t).ok_or_else(|| bad_param("type", "不是已知的主体类型"))?,
            ),
        };
        let review_state = match p.get("review") {
            None => None,
            Some(s) => Some(
                ReviewState::parse(s).ok_or_else(|| bad_param("review", "不是已知的审核状态"))?,
            ),
        };
        let risk = match p.get("risk") {
            None => None,
            Some(r) => {
                Some(RiskLevel::parse(r).ok_or_else(|| bad_param("risk", "不是已知的风险等级"))?)
            }
        };
        let merged = match p.get("merged") {
            None => false,
            Some("1") => true,
            Some(_) => return Err(bad_param("merged", "应为 1（只列出已合并的重复条目）")),
        };
        Ok(DirectoryQuery {
            search,
            grid,
            producer_type,
            review_state,
            risk,
            merged,
            page: p.page()?,
        })
    }
}

async fn directory(
    State(st): State<Arc<DeskState>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let query = match DirectoryQuery::parse(&Params(params)) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        let Some(grids) = list_grids(storage, scope, query.grid.as_deref())? else {
            return Ok(Outcome::NotFound);
        };
        let filter = DirectoryFilter {
            grids,
            search: query.search.clone(),
            producer_type: query.producer_type,
            review_state: query.review_state,
            risk: query.risk,
            merged: query.merged,
            ..DirectoryFilter::default()
        };
        let page = storage.directory(&filter, page_req(query.page))?;
        let nodes = storage.grids()?;
        let choices = grid_choices(&nodes, &scope.readable, query.grid.as_deref());
        Ok(Outcome::Page((query, page, choices, grid_names(&nodes))))
    })
    .await;
    respond(r, |(query, page, grids, names)| {
        let rows = page
            .rows
            .into_iter()
            .map(|p: ProducerRow| DirectoryRow {
                grid: format!("{}（{}）", name_of(&names, &p.grid), p.grid),
                producer_type: p.producer_type.label_zh(),
                review_state: review_label(p.review_state),
                risk: risk_label(p.risk),
                risk_class: risk_class(p.risk),
                last_visit: p.last_visit_ms.map(date).unwrap_or_else(|| "尚无".into()),
                id: p.id,
                name: p.name,
                owner: p.owner,
                phone: p.phone,
            })
            .collect();
        let type_s = query.producer_type.map(|t| t.as_str()).unwrap_or("");
        let review_s = query.review_state.map(|s| s.as_str()).unwrap_or("");
        let risk_s = query.risk.map(|r| r.as_str()).unwrap_or("");
        let q = query.search.clone().unwrap_or_default();
        let grid_s = query.grid.clone().unwrap_or_default();
        let merged_s = if query.merged { "1" } else { "" };
        let pager = Pager::new(
            "/desk/directory",
            &[
                ("q", &q),
                ("grid", &grid_s),
                ("type", type_s),
                ("review", review_s),
                ("risk", risk_s),
                ("merged", merged_s),
            ],
            query.page,
            page.more,
        );
        html(
            StatusCode::OK,
            &DirectoryPage {
                me: Me::of(&signed),
                filtered: !(q.is_empty()
                    && grid_s.is_empty()
                    && type_s.is_empty()
                    && review_s.is_empty()
                    && risk_s.is_empty()
                    && !query.merged),
                merged: query.merged,
                q,
                grids,
                types: Choice::list(
                    ProducerType::ALL.map(|t| (t.as_str().to_string(), t.label_zh().to_string())),
                    query.producer_type.map(|t| t.as_str()),
                ),
                reviews: Choice::list(
                    REVIEW_STATES.map(|s| (s.as_str().to_string(), review_label(s).to_string())),
                    query.review_state.map(|s| s.as_str()),
                ),
                risks: Choice::list(
                    RISKS.map(|r| (r.as_str().to_string(), risk_label(r).to_string())),
                    query.risk.map(|r| r.as_str()),
                ),
                rows,
                pager,
            },
        )
    })
}

// ---- A producer's page. ----

/// A producer's row as the page shows it.
struct ProducerView {
    id: String,
    name: String,
    grid: String,
    producer_type: &'static str,
    owner: String,
    phone: String,
    credit_code: String,
    id_number: String,
    status: &'static str,
    review_state: &'static str,
    risk: &'static str,
    last_visit: String,
    updated: String,
    /// Livestock scale (the league's thresholds).
    scale: &'static str,
}

/// One step of the review history.
struct ReviewStep {
    id: String,
    at: String,
    action: &'static str,
    by: String,
    state_after: &'static str,
    reason: String,
}

/// A field with concurrent values.
struct ConflictView {
    path: String,
    winner: String,
    others: Vec<String>,
}

/// One field changed by one change.
struct HistoryRow {
    hash: String,
    at: String,
    person: String,
    device: String,
    field: String,
    label: &'static str,
    before: String,
    after: String,
}

/// A visit on the producer's page.
pub(super) struct VisitLine {
    pub(super) id: String,
    pub(super) started: String,
    pub(super) inspector: String,
    pub(super) status: &'static str,
    pub(super) findings: i64,
    pub(super) serious: i64,
    pub(super) tests: i64,
    pub(super) failed: i64,
    pub(super) rectification: &'static str,
    /// The entry merged into this one the visit was recorded on (empty: this entry).
    pub(super) via: String,
}

impl VisitLine {
    pub(super) fn of(v: &crate::storage::VisitRow, names: &HashMap<String, String>) -> Self {
        VisitLine {
            id: v.id.clone(),
            started: datetime(v.started_at_ms),
            inspector: name_of(names, &v.inspector),
            status: visit_status_label(v.status),
            findings: v.findings,
            serious: v.serious_findings,
            tests: v.rapid_tests,
            failed: v.failed_tests,
            rectification: if !v.rect_required {
                "—"
            } else if v.rect_open {
                "整改中"
            } else {
                "已整改"
            },
            via: String::new(),
        }
    }
}

pub(super) fn visit_status_label(s: gridsync_core::model::VisitStatus) -> &'static str {
    match s {
        gridsync_core::model::VisitStatus::Draft => "记录中",
        gridsync_core::model::VisitStatus::Completed => "已完成",
    }
}

#[derive(Template)]
#[template(path = "desk/producer.html")]
struct ProducerPage {
    me: Me,
    p: ProducerView,
    grid_name: String,
    reviews: Vec<ReviewStep>,
    conflicts: Vec<ConflictView>,
    document_problem: Option<String>,
    history: Vec<HistoryRow>,
    history_total: usize,
    history_compared: usize,
    history_truncated: bool,
    visits: Vec<VisitLine>,
    more_visits: bool,
    dups: super::duplicates::Section,
}

fn action_label(a: &str) -> &'static str {
    match a {
        "submit" => "提交审核",
        "approve_township" => "乡镇审核通过",
        "approve_county" => "旗县审核通过",
        "return" => "退回",
        "edited_after_approval" => "审核后修改",
        "edited_after_return" => "退回后修改",
        _ => "其他",
    }
}

/// Chinese names of a producer's fields (the first segment of a path).
pub(super) fn field_label(path: &str) -> &'static str {
    let top = path.split(['.', '[']).next().unwrap_or("");
    match top {
        "id" => "编号",
        "name" => "名称",
        "producer_type" => "主体类型",
        "credit_code" => "统一社会信用代码",
        "id_number" => "身份证号",
        "owner" => "负责人",
        "phone" => "联系电话",
        "grid" => "所属网格",
        "address" => "地址",
        "location" => "位置",
        "products" => "主要产品",
        "scale" => "生产规模",
        "certifications" => "认证",
        "issues_compliance_certificates" => "开具合格证",
        "responsibility_letter" => "责任书",
        "risk" => "风险等级",
        "status" => "经营状态",
        "review" => "审核",
        "created_by" => "登记人",
        "created_at_ms" => "登记时间",
        _ => "",
    }
}

/// A JSON value as the page shows it (`None`: the field did not exist).
pub(super) fn show_value(v: Option<&serde_json::Value>) -> String {
    let s = match v {
        None => return "（无）".into(),
        Some(serde_json::Value::Null) => return "（空）".into(),
        Some(serde_json::Value::String(s)) if s.is_empty() => return "（空）".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    const MAX: usize = 200;
    if s.chars().count() > MAX {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    } else {
        s
    }
}

/// Devices by their Automerge actor (hex), as the history names them.
fn device_names(storage: &dyn Storage) -> Result<HashMap<String, String>, StorageError> {
    let mut out: HashMap<String, String> = storage
        .devices()?
        .into_iter()
        .map(|d| {
            let label = if d.id.starts_with("desk-") {
                "工作台".to_string()
            } else if d.name.is_empty() {
                d.id.clone()
            } else {
                format!("{}（{}）", d.name, d.id)
            };
            (gridsync_core::device_actor(&d.id).to_hex_string(), label)
        })
        .collect();
    out.insert(
        gridsync_core::device_actor(crate::push::SEED_DEVICE).to_hex_string(),
        "系统导入".into(),
    );
    Ok(out)
}

/// The device of an actor: a known device, the desk (decisions taken on the console are
/// signed by `desk-…` devices), or an unknown one.
fn device_of(devices: &HashMap<String, String>, actor: &str, person: &str) -> String {
    if let Some(d) = devices.get(actor) {
        return d.clone();
    }
    // Desk decisions: the console signs as `desk-<person>` (or another `desk-` id).
    let desk = gridsync_core::device_actor(&format!("desk-{person}")).to_hex_string();
    if desk == actor {
        return "工作台".into();
    }
    format!("未知设备（{}）", actor.get(..8).unwrap_or(actor))
}

/// Everything a producer's page shows, read in the blocking pool.
struct ProducerData {
    row: ProducerRow,
    grid_name: String,
    reviews: Vec<ReviewStep>,
    conflicts: Vec<ConflictView>,
    document_problem: Option<String>,
    history: Vec<HistoryRow>,
    history_total: usize,
    history_compared: usize,
    visits: Vec<VisitLine>,
    more_visits: bool,
    dups: super::duplicates::Section,
}

fn producer_data(
    storage: &dyn Storage,
    scope: &Scope,
    person: &gridsync_core::model::Person,
    id: &str,
) -> Result<Option<ProducerData>, StorageError> {
    let Some(mut row) = storage.query_producer(id)? else {
        return Ok(None);
    };
    // The phones' rule, over the stored grid tree.
    if !in_scope(scope.tree.as_ref(), &scope.actor, &row.grid) {
        return Ok(None);
    }
    let grids = grid_names(&storage.grids()?);
    let grid_name = grids.get(&row.grid).cloned().unwrap_or_default();
    let names = person_names(storage)?;
    let mut reviews: Vec<ReviewStep> = storage
        .producer_reviews(id)?
        .into_iter()
        .map(|r| ReviewStep {
            at: datetime(r.at_ms),
            action: action_label(&r.action),
            by: name_of(&names, &r.by),
            state_after: review_label(r.state_after),
            reason: r.reason.unwrap_or_default(),
            id: r.event_id,
        })
        .collect();
    let mut conflicts = Vec::new();
    let mut history = Vec::new();
    let (mut history_total, mut history_compared) = (0, 0);
    let mut document_problem = None;
    let mut dups = super::duplicates::Section::default();
    let stored = storage
        .record(id)?
        .filter(|s| s.kind == RecordKind::Producer);
    match stored.map(|s| RecordDoc::load(&s.doc, &[])) {
        None => document_problem = Some("未找到该主体的文档。".to_string()),
        Some(Err(e)) => {
            tracing::warn!(record = id, "desk: stored document does not load: {e}");
            document_problem = Some("该主体的文档无法读取。".to_string());
        }
        Some(Ok(mut doc)) => {
            // Yearly confirmations (年度确认) live in the document, beside the review steps.
            if let Ok(gridsync_core::model::Record::Producer(p)) = doc.read() {
                dups = super::duplicates::section(
                    storage,
                    &p,
                    person,
                    &scope.readable,
                    &names,
                    &grids,
                )?;
                reviews.extend(p.confirmations.into_iter().map(|c| ReviewStep {
                    at: datetime(c.at_ms),
                    action: if c.operating {
                        "年度确认：仍在经营"
                    } else {
                        "年度确认：已停产注销"
                    },
                    by: name_of(&names, &c.by),
                    state_after: "—",
                    reason: format!("{} 年度", c.year),
                    id: c.id,
                }));
                reviews.sort_by(|a, b| a.at.cmp(&b.at));
            }
            match doc.conflicts() {
                Ok(cs) => {
                    conflicts = cs
                        .into_iter()
                        .map(|c| ConflictView {
                            path: c.path,
                            winner: show_value(Some(&c.winner)),
                            others: c.others.iter().map(|o| show_value(Some(o))).collect(),
                        })
                        .collect()
                }
                Err(e) => {
                    tracing::warn!(record = id, "desk: conflicts not read: {e}");
                    document_problem = Some("该主体的冲突无法读取。".to_string());
                }
            }
            match gridsync_core::history::field_history(doc.inner(), HISTORY_CHANGES) {
                Ok(h) => {
                    history_total = h.total_changes;
                    history_compared = h.compared_changes;
                    let devices = device_names(storage)?;
                    history = h
                        .entries
                        .into_iter()
                        .rev()
                        // Every edit writes the edit time; a field that appears empty
                        // says nothing.
                        .filter(|e| e.field != "updated_at_ms")
                        .filter(|e| {
                            !(e.before.is_none()
                                && matches!(e.after, Some(serde_json::Value::Null)))
                        })
                        .map(|e| HistoryRow {
                            at: datetime(e.at_ms),
                            person: name_of(&names, &e.person),
                            device: device_of(&devices, &e.actor, &e.person),
                            label: field_label(&e.field),
                            before: show_value(e.before.as_ref()),
                            after: show_value(e.after.as_ref()),
                            field: e.field,
                            hash: e.hash,
                        })
                        .collect();
                }
                Err(e) => {
                    tracing::warn!(record = id, "desk: history not read: {e}");
                    document_problem = Some("该主体的修改记录无法读取。".to_string());
                }
            }
        }
    }
    // Visits: this entry's and those of the entries merged into it as its duplicates. A
    // merge rewrites nothing: a tombstone's visits (and the rectifications they ordered)
    // stay recorded on the tombstone and are linked to the surviving entry through the
    // tombstone's pointer (`merged_into`), read here.
    row.last_visit_ms = dups
        .merged
        .iter()
        .map(|m| m.last_visit_ms)
        .fold(row.last_visit_ms, Option::max);
    let page = storage.producer_visits(id, PageReq::first(PRODUCER_VISITS))?;
    let mut more_visits = page.more;
    let mut rows: Vec<(crate::storage::VisitRow, String)> =
        page.rows.into_iter().map(|v| (v, String::new())).collect();
    for m in &dups.merged {
        let page = storage.producer_visits(&m.id, PageReq::first(PRODUCER_VISITS))?;
        more_visits |= page.more;
        rows.extend(page.rows.into_iter().map(|v| (v, m.name.clone())));
    }
    rows.sort_by(|(a, _), (b, _)| b.started_at_ms.cmp(&a.started_at_ms).then(a.id.cmp(&b.id)));
    if rows.len() > PRODUCER_VISITS as usize {
        rows.truncate(PRODUCER_VISITS as usize);
        more_visits = true;
    }
    let visits = rows
        .iter()
        .map(|(v, via)| VisitLine {
            via: via.clone(),
            ..VisitLine::of(v, &names)
        })
        .collect();
    Ok(Some(ProducerData {
        row,
        grid_name,
        reviews,
        conflicts,
        document_problem,
        history,
        history_total,
        history_compared,
        visits,
        more_visits,
        dups,
    }))
}

async fn producer(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let person = signed.person.clone();
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        Ok(match producer_data(storage, scope, &person, &id)? {
            Some(d) => Outcome::Page(d),
            None => Outcome::NotFound,
        })
    })
    .await;
    respond(r, |d| {
        let row = d.row;
        let p = ProducerView {
            id: row.id,
            name: row.name,
            grid: row.grid,
            producer_type: row.producer_type.label_zh(),
            owner: row.owner,
            phone: row.phone,
            credit_code: row.credit_code.unwrap_or_else(|| "—".into()),
            id_number: row.id_number.unwrap_or_else(|| "—".into()),
            status: match row.status {
                gridsync_core::model::ProducerStatus::Active => "在营",
                gridsync_core::model::ProducerStatus::Closed => "已停业",
            },
            review_state: review_label(row.review_state),
            risk: risk_label(row.risk),
            last_visit: row.last_visit_ms.map(date).unwrap_or_else(|| "尚无".into()),
            updated: date(row.updated_at_ms),
            scale: match (row.scale_farm, row.scale_mismatch) {
                (_, true) => "达到规模养殖标准，但主体类型不符（请核实主体类型）",
                (true, false) => "规模养殖场",
                (false, false) => "未达规模养殖标准",
            },
        };
        html(
            StatusCode::OK,
            &ProducerPage {
                me: Me::of(&signed),
                p,
                grid_name: d.grid_name,
                reviews: d.reviews,
                conflicts: d.conflicts,
                document_problem: d.document_problem,
                history: d.history,
                history_total: d.history_total,
                history_compared: d.history_compared,
                history_truncated: d.history_compared < d.history_total,
                visits: d.visits,
                more_visits: d.more_visits,
                dups: d.dups,
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_links() {
        assert_eq!(url_encode("乌兰 a&b"), "%E4%B9%8C%E5%85%B0%20a%26b");
        let p = Pager::new("/desk/directory", &[("q", "乌"), ("grid", "")], 2, true);
        assert_eq!(p.prev.as_deref(), Some("/desk/directory?q=%E4%B9%8C"));
        assert_eq!(
            p.next.as_deref(),
            Some("/desk/directory?q=%E4%B9%8C&page=3")
        );
        let p = Pager::new("/desk/visits", &[], 1, false);
        assert!(p.prev.is_none() && p.next.is_none());
        assert_eq!(datetime(0), "1970-01-01 08:00");
        assert_eq!(show_value(None), "（无）");
        assert_eq!(show_value(Some(&serde_json::json!("x"))), "x");
        assert_eq!(show_value(Some(&serde_json::json!(["a"]))), "[\"a\"]");
        assert_eq!(field_label("review.history[e1]"), "审核");
    }
}
