//! People and devices (administrators only; anyone else gets 404): the people list with a
//! form to add a person, a person's page to assign grids, issue an enrolment code with its
//! QR code, list and revoke devices, and deactivate the person who left.
//!
//! Every check of a person is the admin CLI's ([`crate::admin::check_person`]: fields, grids
//! known to the tree and of a level the role works at); deactivation and revocation are
//! the CLI's functions too. Every action is a POST with the session's CSRF token and is
//! written to the audit trail with the administrator as the actor.
//!
//! The QR code encodes the enrolment code itself (`XXXX-XXXX-XXXX`), as `admin issue-code
//! --qr` and `POST /v1/enrolment-codes` do: the phone's `enroll(server_url, code,
//! device_name)` takes the code as typed or scanned, and the server does not know the
//! address phones reach it by.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gridsync_core::model::{GridNode, Person, Role};
use serde::Deserialize;

use super::*;
use crate::admin::{self, AdminError};
use crate::api::blocking;
use crate::storage::{Device, PersonRow};

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
        .route("/desk/people", get(list).post(add))
        .route("/desk/people/{id}", get(show))
        .route("/desk/people/{id}/grids", post(assign_grids))
        .route("/desk/people/{id}/code", post(issue_code))
        .route(
            "/desk/people/{id}/devices/{device}/revoke",
            post(revoke_device),
        )
        .route("/desk/people/{id}/deactivate", post(deactivate))
}

/// Hours an enrolment code issued here stays valid, unless the form says otherwise.
const DEFAULT_CODE_HOURS: u32 = 72;
/// Longest code lifetime the form accepts (as the API's).
const MAX_CODE_HOURS: u32 = 168;

// ---- Helpers ----

fn person_href(id: &str) -> String {
    format!("/desk/people/{}", url_encode(id))
}

fn redirect(to: String) -> Response {
    match HeaderValue::from_str(&to) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => server_error(),
    }
}

/// Grid codes as typed: separated by commas (either width), 、, semicolons or whitespace.
fn parse_grids(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || matches!(c, ',' | '，' | '、' | ';' | '；'))
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

/// An id typed for a new person: stable ASCII (letters, digits, `-`, `_`, `.`), 1 to 64.
fn id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The signed-in administrator, or the response to give (sign in, or 404 for others).
async fn require_admin(st: &Arc<DeskState>, headers: &HeaderMap) -> Result<Signed, Response> {
    let signed = require_session(st, headers)
        .await
        .map_err(IntoResponse::into_response)?;
    if signed.person.role != Role::Admin {
        return Err(not_found());
    }
    Ok(signed)
}

/// A grid as a list shows it: code and name.
struct GridRef {
    code: String,
    name: String,
}

fn grid_refs(codes: &[String], nodes: &[GridNode]) -> Vec<GridRef> {
    codes
        .iter()
        .map(|c| GridRef {
            code: c.clone(),
            name: nodes
                .iter()
                .find(|n| &n.code == c)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| "（未知网格）".into()),
        })
        .collect()
}

struct RoleOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn role_options(selected: &str) -> Vec<RoleOption> {
    [
        Role::Liaison,
        Role::Supervisor,
        Role::CountyReviewer,
        Role::Admin,
    ]
    .into_iter()
    .map(|r| RoleOption {
        value: r.as_str(),
        label: r.label_zh(),
        selected: r.as_str() == selected,
    })
    .collect()
}

/// What a role's grids must be, for the form's hint.
fn role_hint() -> String {
    [Role::Liaison, Role::Supervisor, Role::CountyReviewer]
        .into_iter()
        .map(|r| {
            let levels = admin::role_levels(r)
                .unwrap_or(&[])
                .iter()
                .map(|l| l.label_zh())
                .collect::<Vec<_>>()
                .join("或");
            format!("{}：{}", r.label_zh(), levels)
        })
        .collect::<Vec<_>>()
        .join("；")
}

/// A refusal of the admin functions as the page shows it (`None`: the server failed).
fn problem_text(e: AdminError) -> Option<String> {
    match e {
        AdminError::Person(p) => Some(p.zh()),
        AdminError::Invalid(m) => Some(m),
        AdminError::Storage(crate::storage::StorageError::Invalid(m)) => Some(m),
        AdminError::Storage(crate::storage::StorageError::NotFound(m)) => Some(m),
        AdminError::Storage(e) => {
            tracing::error!("desk people: {e}");
            None
        }
        AdminError::Csv { .. } => Some(e.to_string()),
    }
}

// ---- The people list ----

struct PersonLine {
    id: String,
    href: String,
    name: String,
    role: &'static str,
    grids: Vec<GridRef>,
    phone: String,
    active: bool,
    devices: usize,
}

/// What the add form held (kept after a refusal).
#[derive(Debug, Default, Deserialize)]
struct AddForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    grids: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Template)]
#[template(path = "desk/people.html")]
struct PeoplePage {
    me: Me,
    people: Vec<PersonLine>,
    form: AddForm,
    roles: Vec<RoleOption>,
    role_hint: String,
    error: Option<String>,
}

fn person_lines(rows: Vec<PersonRow>, nodes: &[GridNode], devices: &[Device]) -> Vec<PersonLine> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for d in devices.iter().filter(|d| d.revoked_at_ms.is_none()) {
        *counts.entry(d.person_id.as_str()).or_default() += 1;
    }
    let mut lines: Vec<PersonLine> = rows
        .into_iter()
        .map(|p| PersonLine {
            href: person_href(&p.id),
            role: p.role.label_zh(),
            grids: grid_refs(&p.grids, nodes),
            devices: counts.get(p.id.as_str()).copied().unwrap_or(0),
            id: p.id,
            name: p.name,
            phone: p.phone,
            active: p.active,
        })
        .collect();
    // Active people first, each group by id.
    lines.sort_by(|a, b| b.active.cmp(&a.active).then_with(|| a.id.cmp(&b.id)));
    lines
}

type PeopleData = (Vec<PersonRow>, Vec<GridNode>, Vec<Device>);

fn load_people(st: &DeskState) -> Result<PeopleData, crate::api::ApiError> {
    let s = st.app.storage.as_ref();
    Ok((s.all_people()?, s.grids()?, s.devices()?))
}

fn people_page(
    signed: &Signed,
    data: PeopleData,
    form: AddForm,
    error: Option<String>,
) -> Response {
    let (rows, nodes, devices) = data;
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let roles = role_options(if form.role.is_empty() {
        "liaison"
    } else {
        &form.role
    });
    html(
        status,
        &PeoplePage {
            me: Me::of(signed),
            people: person_lines(rows, &nodes, &devices),
            form: AddForm {
                csrf: String::new(),
                ..form
            },
            roles,
            role_hint: role_hint(),
            error,
        },
    )
}

async fn list(State(st): State<Arc<DeskState>>, headers: HeaderMap) -> Response {
    let signed = match require_admin(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let st2 = st.clone();
    match blocking(move || load_people(&st2)).await {
        Ok(data) => people_page(&signed, data, AddForm::default(), None),
        Err(_) => server_error(),
    }
}

/// What adding came to.
enum Added {
    Done(String),
    Refused(String),
}

async fn add(
    State(st): State<Arc<DeskState>>,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> Response {
    let signed = match require_admin_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let st2 = st.clone();
    let by = signed.person.id.clone();
    let (id, name, phone, role, grids) = (
        form.id.trim().to_string(),
        form.name.trim().to_string(),
        form.phone.trim().to_string(),
        form.role.clone(),
        parse_grids(&form.grids),
    );
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let Some(role) = Role::parse(&role) else {
            return Ok(Added::Refused("请选择角色".into()));
        };
        let id = if id.is_empty() {
            gridsync_core::new_id()
        } else if !id_ok(&id) {
            return Ok(Added::Refused(
                "编号只能使用英文字母、数字、“-”“_”“.”，最长 64 个字符；留空则自动生成".into(),
            ));
        } else {
            id
        };
        // The form adds; it never replaces (or reactivates) someone.
        if storage.all_people()?.iter().any(|p| p.id == id) {
            return Ok(Added::Refused(format!("编号“{id}”已被使用")));
        }
        let p = Person {
            id: id.clone(),
            name,
            phone,
            role,
            grids,
        };
        match admin::add_person(storage, &p) {
            Ok(()) => {}
            Err(e) => {
                return match problem_text(e) {
                    Some(m) => Ok(Added::Refused(m)),
                    None => Err(crate::storage::StorageError::Database(
                        "desk people action failed".into(),
                    )
                    .into()),
                }
            }
        }
        audit(
            storage,
            &by,
            "desk_person_added",
            format!(
                "person {id} ({}), role {}, grids [{}]",
                p.name,
                role.as_str(),
                p.grids.join(", ")
            ),
        );
        Ok(Added::Done(id))
    })
    .await;
    match r {
        Ok(Added::Done(id)) => redirect(format!("{}?done=added", person_href(&id))),
        Ok(Added::Refused(m)) => {
            let st2 = st.clone();
            match blocking(move || load_people(&st2)).await {
                Ok(data) => people_page(&signed, data, form, Some(m)),
                Err(_) => server_error(),
            }
        }
        Err(_) => server_error(),
    }
}

// ---- A person's page ----

struct DeviceLine {
    id: String,
    name: String,
    enrolled: String,
    last_seen: String,
    revoked: Option<String>,
    revoke_action: String,
}

/// A code issued by this request: shown once.
struct Issued {
    code: String,
    expires: String,
    qr_svg: String,
}

#[derive(Template)]
#[template(path = "desk/person.html")]
struct PersonPage {
    me: Me,
    id: String,
    href: String,
    name: String,
    phone: String,
    role: &'static str,
    active: bool,
    is_me: bool,
    grids: Vec<GridRef>,
    grids_text: String,
    desk_username: Option<String>,
    devices: Vec<DeviceLine>,
    issued: Option<Issued>,
    notice: Option<&'static str>,
    error: Option<String>,
    role_hint: String,
    default_hours: u32,
    max_hours: u32,
}

struct PersonData {
    row: PersonRow,
    nodes: Vec<GridNode>,
    devices: Vec<Device>,
    username: Option<String>,
}

fn load_person(st: &DeskState, id: &str) -> Result<Option<PersonData>, crate::api::ApiError> {
    let s = st.app.storage.as_ref();
    let Some(row) = s.all_people()?.into_iter().find(|p| p.id == id) else {
        return Ok(None);
    };
    let mut devices: Vec<Device> = s
        .devices()?
        .into_iter()
        .filter(|d| d.person_id == id)
        .collect();
    devices.sort_by_key(|d| std::cmp::Reverse(d.created_at_ms));
    Ok(Some(PersonData {
        row,
        nodes: s.grids()?,
        devices,
        username: s.desk_account(id)?.map(|a| a.username),
    }))
}

/// The QR code's SVG for inline use: without the XML declaration, with its id.
fn inline_qr(svg: &str) -> String {
    let body = svg.find("<svg").map_or(svg, |at| &svg[at..]);
    body.replacen(
        "<svg",
        "<svg id=\"enrol-qr\" role=\"img\" aria-label=\"注册码二维码\"",
        1,
    )
}

fn person_page(
    signed: &Signed,
    data: PersonData,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<String>,
    issued: Option<Issued>,
) -> Response {
    let PersonData {
        row,
        nodes,
        devices,
        username,
    } = data;
    let href = person_href(&row.id);
    let devices = devices
        .into_iter()
        .map(|d| DeviceLine {
            revoke_action: format!("{href}/devices/{}/revoke", url_encode(&d.id)),
            enrolled: datetime(d.created_at_ms),
            last_seen: d
                .last_seen_ms
                .map(datetime)
                .unwrap_or_else(|| "尚未同步".into()),
            revoked: d.revoked_at_ms.map(|at| {
                format!(
                    "已于 {} 停用：{}",
                    datetime(at),
                    d.revoked_reason.unwrap_or_default()
                )
            }),
            id: d.id,
            name: d.name,
        })
        .collect();
    html(
        status,
        &PersonPage {
            me: Me::of(signed),
            is_me: row.id == signed.person.id,
            grids: grid_refs(&row.grids, &nodes),
            grids_text: row.grids.join(", "),
            role: row.role.label_zh(),
            href,
            id: row.id,
            name: row.name,
            phone: row.phone,
            active: row.active,
            desk_username: username,
            devices,
            issued,
            notice,
            error,
            role_hint: role_hint(),
            default_hours: DEFAULT_CODE_HOURS,
            max_hours: MAX_CODE_HOURS,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
struct Done {
    #[serde(default)]
    done: String,
}

fn notice_of(done: &str) -> Option<&'static str> {
    Some(match done {
        "added" => "人员已添加。",
        "grids" => "网格分配已保存。",
        "revoked" => "设备已停用，它的下一次同步将被拒绝。",
        "deactivated" => "人员已停用：其设备不能再同步，工作台登录已结束，已有记录保留。",
        _ => return None,
    })
}

async fn show(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    Query(done): Query<Done>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_admin(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let st2 = st.clone();
    match blocking(move || load_person(&st2, &id)).await {
        Ok(Some(data)) => person_page(
            &signed,
            data,
            StatusCode::OK,
            notice_of(&done.done),
            None,
            None,
        ),
        Ok(None) => not_found(),
        Err(_) => server_error(),
    }
}

/// What an action on a person came to.
enum Outcome {
    /// Done: go back to the page with this notice.
    Done(&'static str),
    /// Refused: show the page with this message.
    Refused(String),
    /// A code was issued: show it once.
    Issued(Issued),
    /// No such person (or device of theirs).
    Missing,
}

/// Runs an administrator's action on a person and answers: a redirect to the page, the
/// page with a refusal or a new code, 404, or a server error.
async fn act<F>(st: Arc<DeskState>, signed: Signed, id: String, f: F) -> Response
where
    F: FnOnce(&dyn crate::storage::Storage, &str) -> Result<Outcome, AdminError> + Send + 'static,
{
    let st2 = st.clone();
    let id2 = id.clone();
    let by = signed.person.id.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        if !storage.all_people()?.iter().any(|p| p.id == id2) {
            return Ok(Outcome::Missing);
        }
        match f(storage, &by) {
            Ok(o) => Ok(o),
            Err(e) => match problem_text(e) {
                Some(m) => Ok(Outcome::Refused(m)),
                None => Err(crate::storage::StorageError::Database(
                    "desk people action failed".into(),
                )
                .into()),
            },
        }
    })
    .await;
    let (status, error, issued) = match r {
        Ok(Outcome::Done(done)) => return redirect(format!("{}?done={done}", person_href(&id))),
        Ok(Outcome::Missing) => return not_found(),
        Ok(Outcome::Refused(m)) => (StatusCode::BAD_REQUEST, Some(m), None),
        Ok(Outcome::Issued(i)) => (StatusCode::OK, None, Some(i)),
        Err(_) => return server_error(),
    };
    let st2 = st.clone();
    match blocking(move || load_person(&st2, &id)).await {
        Ok(Some(data)) => person_page(&signed, data, status, None, error, issued),
        Ok(None) => not_found(),
        Err(_) => server_error(),
    }
}

#[derive(Debug, Deserialize)]
struct GridsForm {
    #[serde(default)]
    grids: String,
    #[serde(default)]
    csrf: String,
}

async fn assign_grids(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<GridsForm>,
) -> Response {
    let signed = match require_admin_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let grids = parse_grids(&form.grids);
    let id2 = id.clone();
    act(st, signed, id, move |storage, by| {
        let Some(mut p) = storage.person(&id2)? else {
            return Ok(Outcome::Refused("该人员已停用，不能分配网格".into()));
        };
        let before = std::mem::replace(&mut p.grids, grids);
        admin::add_person(storage, &p)?;
        audit(
            storage,
            by,
            "desk_grids_assigned",
            format!(
                "person {} ({}): [{}] -> [{}]",
                p.id,
                p.name,
                before.join(", "),
                p.grids.join(", ")
            ),
        );
        Ok(Outcome::Done("grids"))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct CodeForm {
    #[serde(default)]
    hours: String,
    #[serde(default)]
    csrf: String,
}

async fn issue_code(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let signed = match require_admin_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let hours = match form.hours.trim() {
        "" => Some(DEFAULT_CODE_HOURS),
        h => h
            .parse::<u32>()
            .ok()
            .filter(|h| (1..=MAX_CODE_HOURS).contains(h)),
    };
    let id2 = id.clone();
    act(st, signed, id, move |storage, by| {
        let Some(hours) = hours else {
            return Ok(Outcome::Refused(format!(
                "有效期须为 1 到 {MAX_CODE_HOURS} 小时"
            )));
        };
        if storage.person(&id2)?.is_none() {
            return Ok(Outcome::Refused("该人员已停用，不能发放注册码".into()));
        }
        let issued = admin::issue_code(storage, &id2, by, hours)?;
        audit(
            storage,
            by,
            "desk_code_issued",
            format!("enrolment code for person {id2}, valid {hours} h"),
        );
        Ok(Outcome::Issued(Issued {
            code: issued.code,
            expires: datetime(issued.expires_at_ms),
            qr_svg: inline_qr(&issued.qr_svg),
        }))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

async fn revoke_device(
    State(st): State<Arc<DeskState>>,
    Path((id, device)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let signed = match require_admin_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reason = form.reason.trim().to_string();
    let id2 = id.clone();
    act(st, signed, id, move |storage, by| {
        let Some(d) = storage.device(&device)?.filter(|d| d.person_id == id2) else {
            return Ok(Outcome::Missing);
        };
        if reason.is_empty() || reason.chars().count() > 200 {
            return Ok(Outcome::Refused("请填写停用原因（最多 200 字）".into()));
        }
        if d.revoked_at_ms.is_some() {
            return Ok(Outcome::Refused("该设备已停用".into()));
        }
        admin::revoke_device(storage, &d.id, &reason, by)?;
        Ok(Outcome::Done("revoked"))
    })
    .await
}

async fn deactivate(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = match require_admin_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let id2 = id.clone();
    act(st, signed, id, move |storage, by| {
        if id2 == by {
            return Ok(Outcome::Refused("不能停用自己的账户".into()));
        }
        if storage.person(&id2)?.is_none() {
            return Ok(Outcome::Refused("该人员已停用".into()));
        }
        admin::deactivate_person(storage, &id2, by)?;
        Ok(Outcome::Done("deactivated"))
    })
    .await
}

/// A time in ms as date and minute, China Standard Time (UTC+8).
pub(super) fn datetime(ms: i64) -> String {
    let minutes = (ms + 8 * 3_600_000).rem_euclid(86_400_000) / 60_000;
    format!("{} {:02}:{:02}", date(ms), minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_split_on_any_separator() {
        assert_eq!(
            parse_grids(" T1, T2，T3、T4;T5\nT6  "),
            ["T1", "T2", "T3", "T4", "T5", "T6"]
        );
        assert!(parse_grids(" , ").is_empty());
    }

    #[test]
    fn times_in_china() {
        assert_eq!(datetime(0), "1970-01-01 08:00");
        assert_eq!(datetime(1_709_222_399_999), "2024-02-29 23:59");
    }

    #[test]
    fn qr_inline_has_its_id_and_no_declaration() {
        let svg = inline_qr("<?xml version=\"1.0\"?><svg xmlns=\"x\"><path/></svg>");
        assert!(svg.starts_with("<svg id=\"enrol-qr\""), "{svg}");
        assert_eq!(url_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
