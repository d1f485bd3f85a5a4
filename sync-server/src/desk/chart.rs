//! The grid chart pages (网格化管理公示牌): `/desk/chart/{grid}` as a printable page (A4
//! landscape; the console's navigation and forms are not printed) and
//! `/desk/chart/{grid}.pdf` as a PDF, both built from the current assignments on every
//! request ([`crate::reports::chart`]). `/desk/chart` picks a grid.
//!
//! The chart is meant to be posted publicly, but for now it is served only behind desk
//! sign-in, within the person's scope (a grid outside it answers 404 like a missing one);
//! serving it without sign-in is a decision left for later.
//!
//! Administrators get two small forms on the page (not printed): the township's
//! supervising body and a person's duties, checked and audited by the same functions as
//! `admin set-grid-chart` and `admin set-duties`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gridsync_core::model::{GridLevel, Role};
use serde::Deserialize;

use super::directory::{grid_choices, Choice, Params};
use super::*;
use crate::api::blocking;
use crate::reports::chart::{
    self as report, AgencyInput, Chart, ChartError, AGENCY_MISSING, LIAISON_DUTIES, NOBODY,
    STANDARD_DUTIES_CELL, SUPERVISOR_DUTIES,
};

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
        .route("/desk/chart", get(pick))
        .route("/desk/chart/{grid}", get(show))
        .route("/desk/chart/{grid}/agency", post(set_agency))
        .route("/desk/chart/{grid}/duties", post(set_duties))
        .route("/desk/static/chart.css", get(css))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../templates/desk/chart.css"),
    )
        .into_response()
}

// ---- Choosing a grid. ----

#[derive(Template)]
#[template(path = "desk/chart_pick.html")]
struct PickPage {
    me: Me,
    grids: Vec<Choice>,
}

/// `/desk/chart`: the person's one township or village goes straight to its chart;
/// otherwise (or with `?grid=`) a choice among the townships and villages in scope.
async fn pick(
    State(st): State<Arc<DeskState>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let params = Params(params);
    if let Some(g) = params.get("grid") {
        return redirect(&chart_href(g));
    }
    let st2 = st.clone();
    let pid = signed.person.id.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let Some(scope) = st2.app.scopes.scope(storage, &pid)? else {
            return Ok(None);
        };
        let nodes = storage.grids()?;
        let mut readable = scope.readable.clone();
        readable.retain(|c| report::has_chart(&nodes, c));
        Ok(Some((nodes, readable)))
    })
    .await;
    let (nodes, readable) = match r {
        Ok(Some(x)) => x,
        Ok(None) => return not_found(),
        Err(_) => return server_error(),
    };
    let own: Vec<&String> = signed
        .person
        .grids
        .iter()
        .filter(|g| readable.contains(*g))
        .collect();
    if let [only] = own.as_slice() {
        return redirect(&chart_href(only));
    }
    let grids = grid_choices(&nodes, &readable, None);
    html(
        StatusCode::OK,
        &PickPage {
            me: Me::of(&signed),
            grids,
        },
    )
}

fn chart_href(code: &str) -> String {
    format!("/desk/chart/{}", url_encode(code))
}

fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => server_error(),
    }
}

// ---- The chart. ----

struct Row {
    id: String,
    grid: String,
    name: String,
    phone: String,
    duties: String,
    /// The text in the duties form (empty: standard duties).
    own: String,
}

struct Village {
    code: String,
    name: String,
    href: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "desk/chart.html")]
struct ChartPage {
    me: Me,
    title: String,
    code: String,
    township_code: String,
    township_name: String,
    township_href: String,
    is_village: bool,
    pdf_href: String,
    agency: Option<crate::storage::GridChartInfo>,
    agency_missing: &'static str,
    supervisor_duties: &'static str,
    liaison_duties: &'static str,
    nobody: &'static str,
    supervisors: Vec<Row>,
    villages: Vec<Village>,
    built_at: String,
    admin: bool,
    error: Option<String>,
    notice: Option<&'static str>,
    form: AgencyForm,
}

fn row(m: &report::Member, grid: String) -> Row {
    Row {
        id: m.id.clone(),
        grid,
        name: m.name.clone(),
        phone: m.phone.clone(),
        duties: m
            .own_duties
            .clone()
            .unwrap_or_else(|| STANDARD_DUTIES_CELL.into()),
        own: m.own_duties.clone().unwrap_or_default(),
    }
}

fn chart_page(
    signed: &Signed,
    chart: Chart,
    status: StatusCode,
    error: Option<String>,
    notice: Option<&'static str>,
    form: Option<AgencyForm>,
) -> Response {
    let admin = signed.person.role == Role::Admin;
    let form = form.unwrap_or_else(|| match &chart.agency {
        Some(a) => AgencyForm {
            agency: a.agency.clone(),
            address: a.agency_address.clone(),
            phone: a.agency_phone.clone(),
            complaint_phone: a.complaint_phone.clone(),
            csrf: String::new(),
        },
        None => AgencyForm::default(),
    });
    let supervisors = chart
        .supervisors
        .iter()
        .map(|m| row(m, chart.township_name.clone()))
        .collect();
    let villages = chart
        .villages
        .iter()
        .map(|v| Village {
            code: v.code.clone(),
            name: v.name.clone(),
            href: chart_href(&v.code),
            rows: v
                .liaisons
                .iter()
                .map(|m| {
                    let grid = match &m.sub_grid {
                        Some(s) => format!("{}（{s}）", v.name),
                        None => v.name.clone(),
                    };
                    row(m, grid)
                })
                .collect(),
        })
        .collect();
    html(
        status,
        &ChartPage {
            me: Me::of(signed),
            title: chart.title(),
            code: chart.code.clone(),
            township_code: chart.township_code.clone(),
            township_name: chart.township_name.clone(),
            township_href: chart_href(&chart.township_code),
            is_village: chart.level == GridLevel::Village,
            pdf_href: format!("{}.pdf", chart_href(&chart.code)),
            agency: chart.agency.clone(),
            agency_missing: AGENCY_MISSING,
            supervisor_duties: SUPERVISOR_DUTIES,
            liaison_duties: LIAISON_DUTIES,
            nobody: NOBODY,
            supervisors,
            villages,
            built_at: report::built_at(chart.built_at_ms),
            admin,
            error,
            notice,
            form,
        },
    )
}

/// The chart of `code` if it is in the person's scope (`None`: unknown, outside the scope
/// or not a township or village).
fn load(st: &DeskState, person_id: &str, code: &str) -> Result<Option<Chart>, StorageError> {
    let storage = st.app.storage.as_ref();
    let Some(scope) = st.app.scopes.scope(storage, person_id)? else {
        return Ok(None);
    };
    if !scope.readable.contains(code) {
        return Ok(None);
    }
    report::build(storage, code)
}

async fn load_async(st: &Arc<DeskState>, person_id: &str, code: &str) -> Result<Option<Chart>, ()> {
    let (st2, pid, code) = (st.clone(), person_id.to_string(), code.to_string());
    blocking(move || Ok(load(&st2, &pid, &code)?))
        .await
        .map_err(|_| ())
}

fn notice_of(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "agency" => Some("监管单位信息已保存。"),
        "duties" => Some("工作职责已保存。"),
        _ => None,
    }
}

async fn show(
    State(st): State<Arc<DeskState>>,
    Path(grid): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let (code, pdf) = match grid.strip_suffix(".pdf") {
        Some(c) => (c.to_string(), true),
        None => (grid, false),
    };
    let chart = match load_async(&st, &signed.person.id, &code).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(),
        Err(()) => return server_error(),
    };
    if pdf {
        let bytes = report::to_pdf(&chart);
        let name = format!("grid-chart-{}.pdf", url_encode(&chart.code));
        let disposition = HeaderValue::from_str(&format!("inline; filename=\"{name}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("inline"));
        return (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/pdf"),
                ),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            bytes,
        )
            .into_response();
    }
    let params = Params(params);
    chart_page(
        &signed,
        chart,
        StatusCode::OK,
        None,
        notice_of(params.get("done")),
        None,
    )
}

// ---- Administrators' forms. ----

#[derive(Debug, Default, Deserialize)]
struct AgencyForm {
    #[serde(default)]
    agency: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    complaint_phone: String,
    #[serde(default)]
    csrf: String,
}

/// What an administrator's change came to.
enum Change {
    Done,
    Missing,
    Refused(String),
}

/// Runs a change on the chart of `code` (in scope: administrators see every grid) and
/// answers: back to the chart, the chart with the refusal, 404 or a server error.
async fn change<F>(
    st: Arc<DeskState>,
    signed: Signed,
    code: String,
    done: &'static str,
    form: Option<AgencyForm>,
    f: F,
) -> Response
where
    F: FnOnce(&dyn Storage, &str, &Chart) -> Result<Change, ChartError> + Send + 'static,
{
    let (st2, pid, code2) = (st.clone(), signed.person.id.clone(), code.clone());
    let r = blocking(move || {
        let Some(chart) = load(&st2, &pid, &code2)? else {
            return Ok(Change::Missing);
        };
        match f(st2.app.storage.as_ref(), &pid, &chart) {
            Ok(c) => Ok(c),
            Err(ChartError::Invalid(p)) => Ok(Change::Refused(p.zh)),
            Err(ChartError::Storage(e)) => Err(e.into()),
        }
    })
    .await;
    match r {
        Ok(Change::Done) => redirect(&format!("{}?done={done}", chart_href(&code))),
        Ok(Change::Missing) => not_found(),
        Ok(Change::Refused(problem)) => match load_async(&st, &signed.person.id, &code).await {
            Ok(Some(chart)) => chart_page(
                &signed,
                chart,
                StatusCode::BAD_REQUEST,
                Some(problem),
                None,
                form,
            ),
            Ok(None) => not_found(),
            Err(()) => server_error(),
        },
        Err(_) => server_error(),
    }
}

async fn set_agency(
    State(st): State<Arc<DeskState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AgencyForm>,
) -> Response {
    let signed = match require_admin_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let input = AgencyInput {
        agency: form.agency.clone(),
        address: form.address.clone(),
        phone: form.phone.clone(),
        complaint_phone: form.complaint_phone.clone(),
    };
    change(
        st,
        signed,
        code,
        "agency",
        Some(form),
        move |storage, by, chart| {
            // A village's form sets its township's supervising body.
            report::set_agency(storage, by, &chart.township_code, &input)?;
            Ok(Change::Done)
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct DutiesForm {
    #[serde(default)]
    person: String,
    #[serde(default)]
    duties: String,
    #[serde(default)]
    csrf: String,
}

async fn set_duties(
    State(st): State<Arc<DeskState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Form(form): Form<DutiesForm>,
) -> Response {
    let signed = match require_admin_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    change(
        st,
        signed,
        code,
        "duties",
        None,
        move |storage, by, chart| {
            // Only someone on this chart.
            if !chart.members().any(|m| m.id == form.person) {
                return Ok(Change::Missing);
            }
            report::set_duties(storage, by, &form.person, &form.duties)?;
            Ok(Change::Done)
        },
    )
    .await
}
