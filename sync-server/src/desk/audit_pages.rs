//! The audit trail by record, person and grid (`/desk/audit?record=&person=&grid=`),
//! newest first, 100 entries a page, older pages by an id cursor (`before=`).
//!
//! Scope: administrators see everything. Supervisors and county reviewers see an entry
//! when its grid is in their scope, or (without a grid) its record's current grid is, or
//! (with neither) its person is someone in their scope: themselves, or a person other than
//! an administrator with a grid in their scope. A filter outside scope answers 404, as a
//! missing page does. A grid filter covers the grid and the grids below it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gridsync_core::model::Role;
use gridsync_core::rules::is_within;
use serde::Deserialize;

use super::people::datetime;
use super::*;
use crate::api::blocking;
use crate::storage::{AuditEntry, AuditFilter, PersonRow};

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new().route("/desk/audit", get(audit_page))
}

/// Entries a page.
const PAGE: usize = 100;
/// Entries read from storage at once.
const BATCH: u32 = 500;
/// Entries one request reads at most while looking for visible ones; past that the page
/// ends early and offers to look further.
const MAX_SCAN: usize = 5_000;

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    record: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    grid: String,
    #[serde(default)]
    before: String,
}

struct Line {
    id: i64,
    at: String,
    person: String,
    person_id: String,
    action: String,
    record: Option<String>,
    record_href: Option<String>,
    grid: Option<String>,
    device: Option<String>,
    detail: String,
}

#[derive(Template)]
#[template(path = "desk/audit.html")]
struct AuditPage {
    me: Me,
    record: String,
    person: String,
    grid: String,
    filter_text: Option<String>,
    lines: Vec<Line>,
    older_href: Option<String>,
    /// The page stopped looking before it had a page full.
    scan_stopped: bool,
}

/// Chinese name of an action (the stable identifier as is when unknown).
fn action_label(action: &str) -> String {
    let label = match action {
        "create" => "新建记录",
        "update" => "修改记录",
        "enrol" => "设备注册",
        "rotate" => "更换设备密钥",
        "revoke" => "停用设备",
        "issue_code" | "desk_code_issued" => "发放注册码",
        "desk_sign_in" => "登录工作台",
        "desk_sign_in_failed" => "登录失败",
        "desk_sign_in_limited" => "登录过于频繁",
        "desk_account_locked" => "账户锁定",
        "desk_sign_out" => "退出登录",
        "desk_session_ended" => "登录会话结束",
        "desk_password_set" => "设置密码",
        "desk_link_issued" => "发放密码设置链接",
        "desk_review" => "审核",
        "desk_review_refused" => "审核被拒绝",
        "desk_person_added" => "添加人员",
        "desk_grids_assigned" => "分配网格",
        "deactivate_person" => "停用人员",
        _ => return action.to_string(),
    };
    format!("{label}（{action}）")
}

/// What one request found.
enum Found {
    Page {
        lines: Vec<Line>,
        next: Option<i64>,
        scan_stopped: bool,
        filter_text: Option<String>,
    },
    /// A filter names something missing or outside scope.
    Missing,
    /// The session's person is gone.
    SignIn,
}

/// Who may be shown: everything, or a scope's grids and people.
struct Visibility {
    all: bool,
    me: String,
    readable: HashSet<String>,
    people: HashMap<String, PersonRow>,
    record_grids: HashMap<String, Option<String>>,
}

impl Visibility {
    fn person(&self, id: &str) -> bool {
        self.all
            || id == self.me
            || self.people.get(id).is_some_and(|p| {
                p.role != Role::Admin && p.grids.iter().any(|g| self.readable.contains(g))
            })
    }

    fn record_grid(
        &mut self,
        storage: &dyn crate::storage::Storage,
        id: &str,
    ) -> Result<Option<String>, crate::storage::StorageError> {
        if let Some(g) = self.record_grids.get(id) {
            return Ok(g.clone());
        }
        let g = storage.record(id)?.map(|r| r.grid);
        self.record_grids.insert(id.to_string(), g.clone());
        Ok(g)
    }

    fn entry(
        &mut self,
        storage: &dyn crate::storage::Storage,
        e: &AuditEntry,
    ) -> Result<bool, crate::storage::StorageError> {
        if self.all {
            return Ok(true);
        }
        if let Some(g) = &e.grid {
            return Ok(self.readable.contains(g));
        }
        if let Some(r) = &e.record_id {
            return Ok(self
                .record_grid(storage, r)?
                .is_some_and(|g| self.readable.contains(&g)));
        }
        Ok(self.person(&e.person_id))
    }
}

fn find(st: &DeskState, me: &str, q: &AuditQuery) -> Result<Found, crate::api::ApiError> {
    let storage = st.app.storage.as_ref();
    let Some(scope) = st.app.scopes.scope(storage, me)? else {
        return Ok(Found::SignIn);
    };
    let nodes = storage.grids()?;
    let people: HashMap<String, PersonRow> = storage
        .all_people()?
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let mut vis = Visibility {
        all: scope.actor.role == Role::Admin,
        me: me.to_string(),
        readable: scope.readable.clone(),
        people,
        record_grids: HashMap::new(),
    };
    let (record, person, grid) = (q.record.trim(), q.person.trim(), q.grid.trim());
    let mut filter_text = Vec::new();
    // The grid filter: the grid and those below it.
    let subtree: Option<HashSet<String>> = if grid.is_empty() {
        None
    } else {
        let Some(node) = nodes.iter().find(|n| n.code == grid) else {
            return Ok(Found::Missing);
        };
        if !vis.all && !vis.readable.contains(grid) {
            return Ok(Found::Missing);
        }
        filter_text.push(format!("网格 {}（{}）及其下级网格", node.name, node.code));
        Some(
            nodes
                .iter()
                .filter(|n| is_within(scope.tree.as_ref(), &n.code, grid))
                .map(|n| n.code.clone())
                .collect(),
        )
    };
    if !record.is_empty() {
        if !vis.all
            && !vis
                .record_grid(storage, record)?
                .is_some_and(|g| vis.readable.contains(&g))
        {
            return Ok(Found::Missing);
        }
        filter_text.push(format!("记录 {record}"));
    }
    if !person.is_empty() {
        if !vis.person(person) {
            return Ok(Found::Missing);
        }
        let name = vis
            .people
            .get(person)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        filter_text.push(format!("人员 {name}（{person}）"));
    }
    // The most selective filter goes to storage (each has its index); the rest are checked
    // here, with scope.
    let stored = if !record.is_empty() {
        AuditFilter::Record(record.to_string())
    } else if !person.is_empty() {
        AuditFilter::Person(person.to_string())
    } else {
        match &subtree {
            Some(s) if s.len() == 1 => AuditFilter::Grid(grid.to_string()),
            _ => AuditFilter::All,
        }
    };
    let mut cursor: Option<i64> = q.before.trim().parse::<i64>().ok();
    let mut lines = Vec::new();
    let mut scanned = 0;
    let mut exhausted = false;
    'scan: while scanned < MAX_SCAN {
        let batch = storage.audit_page(&stored, cursor, BATCH)?;
        let n = batch.len();
        for (id, e) in batch {
            scanned += 1;
            cursor = Some(id);
            let wanted = (record.is_empty() || e.record_id.as_deref() == Some(record))
                && (person.is_empty() || e.person_id == person)
                && subtree
                    .as_ref()
                    .is_none_or(|s| e.grid.as_ref().is_some_and(|g| s.contains(g)));
            if wanted && vis.entry(storage, &e)? {
                lines.push(line(id, e, &vis.people, &nodes));
                if lines.len() == PAGE {
                    break 'scan;
                }
            }
        }
        if n < BATCH as usize {
            exhausted = true;
            break;
        }
    }
    let scan_stopped = !exhausted && lines.len() < PAGE;
    Ok(Found::Page {
        lines,
        next: if exhausted { None } else { cursor },
        scan_stopped,
        filter_text: if filter_text.is_empty() {
            None
        } else {
            Some(filter_text.join("；"))
        },
    })
}

fn line(
    id: i64,
    e: AuditEntry,
    people: &HashMap<String, PersonRow>,
    nodes: &[gridsync_core::model::GridNode],
) -> Line {
    let person = match people.get(&e.person_id) {
        Some(p) => p.name.clone(),
        None if e.person_id.is_empty() => "（未知用户）".into(),
        None if e.person_id == "admin-cli" => "管理命令行".into(),
        None => "（未知人员）".into(),
    };
    let record_href = match (e.kind.as_deref(), e.record_id.as_deref()) {
        (Some("producer"), Some(r)) => Some(format!("/desk/producers/{}", url_encode(r))),
        _ => None,
    };
    let grid = e.grid.map(|g| match nodes.iter().find(|n| n.code == g) {
        Some(n) => format!("{}（{}）", n.name, g),
        None => g,
    });
    Line {
        id,
        at: datetime(e.at_ms),
        person,
        person_id: e.person_id,
        action: action_label(&e.action),
        record: e.record_id,
        record_href,
        grid,
        device: e.device_id,
        detail: e.detail,
    }
}

/// The query string of a page: the filters given and the cursor.
fn older_href(q: &AuditQuery, before: i64) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("record", &q.record),
        ("person", &q.person),
        ("grid", &q.grid),
    ] {
        let v = v.trim();
        if !v.is_empty() {
            parts.push(format!("{k}={}", url_encode(v)));
        }
    }
    parts.push(format!("before={before}"));
    format!("/desk/audit?{}", parts.join("&"))
}

async fn audit_page(
    State(st): State<Arc<DeskState>>,
    Query(q): Query<AuditQuery>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let st2 = st.clone();
    let me = signed.person.id.clone();
    let q = Arc::new(q);
    let q2 = q.clone();
    match blocking(move || find(&st2, &me, &q2)).await {
        Ok(Found::Page {
            lines,
            next,
            scan_stopped,
            filter_text,
        }) => html(
            StatusCode::OK,
            &AuditPage {
                me: Me::of(&signed),
                record: q.record.trim().to_string(),
                person: q.person.trim().to_string(),
                grid: q.grid.trim().to_string(),
                filter_text,
                lines,
                older_href: next.map(|n| older_href(&q, n)),
                scan_stopped,
            },
        ),
        Ok(Found::Missing) => not_found(),
        Ok(Found::SignIn) => NoSession::SignIn.into_response(),
        Err(_) => server_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_pages_keep_the_filters() {
        let q = AuditQuery {
            record: String::new(),
            person: "王 丽".into(),
            grid: "T1".into(),
            before: "99".into(),
        };
        assert_eq!(
            older_href(&q, 42),
            "/desk/audit?person=%E7%8E%8B%20%E4%B8%BD&grid=T1&before=42"
        );
        assert_eq!(action_label("revoke"), "停用设备（revoke）");
        assert_eq!(action_label("something_new"), "something_new");
    }
}
