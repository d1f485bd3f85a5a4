//! Township acceptance (达标验收) decided at the desk by county staff.
//!
//! `/desk/townships` lists the township-level grids of the person's scope with their
//! compliance in a year (`reports::compliance`), the share of compliant townships of each
//! league and banner against the year's target, and, for county reviewers and
//! administrators, a form per township to record the year's decision with its date and
//! basis. A decision is written as the review queue writes its decisions
//! ([`super::review::push_desk_change`]): an Automerge change of the township's acceptance
//! record for the year, by the person's desk actor, judged by the phones' rules inside the
//! push. So only what core's rules let the person do happens (a supervisor's crafted form
//! is refused, 403), and phones of the township receive the decision at their next sync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    Acceptance, AcceptanceDecision, GridLevel, Person, Record, RecordKind, Role,
};
use gridsync_core::rules;
use gridsync_core::sync::protocol::{PushOutcome, RejectCode};
use serde::Deserialize;

use super::review::{push_desk_change, DecisionError};
use super::{
    html, message, not_found, redirect, require_post, require_session, server_error, url_encode,
    DeskState, Me,
};
use crate::api::blocking;
use crate::reports::compliance::{township_compliance_since, ComplianceSummary};
use crate::storage::{Storage, StorageError};

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
        .route("/desk/townships", get(list))
        .route("/desk/townships/{code}/decision", post(decide))
}

/// The current year in China.
fn this_year() -> i32 {
    gridsync_core::dates::china_date(gridsync_core::now_ms())[..4]
        .parse()
        .unwrap_or(2000)
}

/// Today in China, `YYYY-MM-DD`.
fn today() -> String {
    gridsync_core::dates::china_date(gridsync_core::now_ms())
}

/// A share as the page shows it (one decimal).
fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// One township row of the page.
struct TownshipItem {
    code: String,
    name: String,
    banner: String,
    accepted: bool,
    /// Status label: 达标 / 未达标 / 撤销 / 未验收.
    status: &'static str,
    /// `accepted`, `not_accepted`, `withdrawn` or `none` (a CSS class and test hook).
    status_class: &'static str,
    /// Year of the decision that holds, if any.
    decided_year: Option<i32>,
    decided_on: String,
    decided_by: String,
    note: String,
    /// What the form carries as the state seen of this year's record (its last edit, or
    /// empty when there is none).
    seen: String,
}

/// Share of one league or banner.
struct GroupShare {
    level: &'static str,
    code: String,
    name: String,
    compliant: usize,
    total: usize,
    share: String,
    meets: Option<bool>,
}

#[derive(Template)]
#[template(path = "desk/townships.html")]
struct TownshipsPage {
    me: Me,
    year: i32,
    prev_year: i32,
    next_year: i32,
    today: String,
    can_decide: bool,
    summary_share: String,
    compliant: usize,
    total: usize,
    target: Option<String>,
    meets: Option<bool>,
    groups: Vec<GroupShare>,
    townships: Vec<TownshipItem>,
    decisions: Vec<(&'static str, &'static str)>,
    flash: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    year: Option<i32>,
    #[serde(default)]
    done: Option<String>,
}

fn status_of(d: Option<AcceptanceDecision>) -> (&'static str, &'static str) {
    match d {
        Some(d) => (d.label_zh(), d.as_str()),
        None => ("未验收", "none"),
    }
}

/// What the list needs beyond the summary: the decisions of the year by grid (the form's
/// stale check), every decision that holds (its year and note), names of people and the
/// grid tree for the groups.
struct Loaded {
    summary: ComplianceSummary,
    nodes: Vec<gridsync_core::model::GridNode>,
    names: HashMap<String, String>,
    holding: HashMap<String, crate::storage::acceptance::AcceptanceRow>,
    this_year: HashMap<String, i64>,
}

fn load(
    app: &crate::api::AppState,
    person: &Person,
    year: i32,
    start_year: i32,
) -> Result<Option<Loaded>, StorageError> {
    let storage: &dyn Storage = app.storage.as_ref();
    let Some(scope) = app.scopes.scope(storage, &person.id)? else {
        return Ok(None);
    };
    let mut grids: Vec<String> = scope.readable.iter().cloned().collect();
    grids.sort();
    let summary = township_compliance_since(storage, &grids, year, start_year)?;
    let codes: Vec<String> = summary.townships.iter().map(|t| t.code.clone()).collect();
    let mut holding = HashMap::new();
    let mut this_year = HashMap::new();
    if !codes.is_empty() {
        for row in storage.acceptances(&codes, year)? {
            if row.year == year {
                this_year.insert(row.grid.clone(), row.updated_at_ms);
            }
            holding.insert(row.grid.clone(), row);
        }
    }
    let names = storage
        .people()?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect();
    Ok(Some(Loaded {
        summary,
        nodes: storage.grids()?,
        names,
        holding,
        this_year,
    }))
}

async fn list(
    State(st): State<Arc<DeskState>>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let year = q
        .year
        .filter(|y| (2000..=2100).contains(y))
        .unwrap_or_else(this_year);
    let start_year = st.config.programme_start_year;
    let st2 = st.clone();
    let person = signed.person.clone();
    let r = blocking(move || Ok(load(&st2.app, &person, year, start_year)?)).await;
    let loaded = match r {
        Ok(Some(l)) => l,
        Ok(None) => return super::see_other("/desk/login"),
        Err(_) => return server_error(),
    };
    let Loaded {
        summary,
        nodes,
        names,
        mut holding,
        this_year,
    } = loaded;
    let by_code: HashMap<&str, &gridsync_core::model::GridNode> =
        nodes.iter().map(|n| (n.code.as_str(), n)).collect();
    let parent = |code: &str| by_code.get(code).and_then(|n| n.parent.clone());
    let name_of = |code: &str| {
        by_code
            .get(code)
            .map_or(code.to_string(), |n| n.name.clone())
    };
    // Shares of each banner and league above the townships.
    let mut groups: BTreeMap<(u8, String), (usize, usize)> = BTreeMap::new();
    let mut townships = Vec::with_capacity(summary.townships.len());
    for t in &summary.townships {
        let banner = parent(&t.code);
        let league = banner.as_deref().and_then(parent);
        for (rank, g, level) in [
            (0u8, &league, GridLevel::League),
            (1, &banner, GridLevel::Banner),
        ] {
            if let Some(g) = g
                .as_ref()
                .filter(|g| by_code.get(g.as_str()).is_some_and(|n| n.level == level))
            {
                let e = groups.entry((rank, g.clone())).or_default();
                e.0 += usize::from(t.accepted);
                e.1 += 1;
            }
        }
        let row = holding.remove(&t.code);
        let (status, status_class) = status_of(row.as_ref().map(|r| r.decision));
        townships.push(TownshipItem {
            code: t.code.clone(),
            name: t.name.clone(),
            banner: banner.as_deref().map(name_of).unwrap_or_default(),
            accepted: t.accepted,
            status,
            status_class,
            decided_year: row.as_ref().map(|r| r.year),
            decided_on: t.decided_on.clone().unwrap_or_default(),
            decided_by: t
                .decided_by
                .as_ref()
                .map(|p| names.get(p).cloned().unwrap_or_else(|| p.clone()))
                .unwrap_or_default(),
            note: row.map(|r| r.note).unwrap_or_default(),
            seen: this_year
                .get(&t.code)
                .map(|ms| ms.to_string())
                .unwrap_or_default(),
        });
    }
    let meets = |share: f64| summary.target.map(|t| share + 1e-9 >= t);
    let groups = groups
        .into_iter()
        .map(|((rank, code), (compliant, total))| {
            let share = if total == 0 {
                0.0
            } else {
                compliant as f64 / total as f64
            };
            GroupShare {
                level: if rank == 0 { "盟市" } else { "旗县" },
                name: name_of(&code),
                code,
                compliant,
                total,
                share: percent(share),
                meets: meets(share),
            }
        })
        .collect();
    let flash = q.done.as_ref().and_then(|code| {
        townships
            .iter()
            .find(|t| &t.code == code)
            .map(|t| format!("已记录：{}（{} 年）{}", t.name, year, t.status))
    });
    html(
        StatusCode::OK,
        &TownshipsPage {
            me: Me::of(&signed),
            year,
            prev_year: year - 1,
            next_year: year + 1,
            today: today(),
            can_decide: matches!(signed.person.role, Role::CountyReviewer | Role::Admin),
            summary_share: percent(summary.share),
            compliant: summary.compliant,
            total: summary.total,
            target: summary.target.map(percent),
            meets: meets(summary.share),
            groups,
            townships,
            decisions: AcceptanceDecision::ALL
                .iter()
                .map(|d| (d.as_str(), d.label_zh()))
                .collect(),
            flash,
        },
    )
}

/// Writes `person`'s decision on township `code` for `year`; `seen` is the last edit of the
/// year's record as the page showed it (empty: none). The rules decide who may.
#[allow(clippy::too_many_arguments)]
pub fn decide_acceptance(
    st: &crate::api::AppState,
    person: &Person,
    code: &str,
    year: i32,
    seen: &str,
    decision: AcceptanceDecision,
    decided_on: &str,
    note: &str,
) -> Result<Acceptance, DecisionError> {
    let storage: &dyn Storage = st.storage.as_ref();
    let scope = st
        .scopes
        .scope(storage, &person.id)?
        .ok_or(DecisionError::NotFound)?;
    let tree = scope.tree.as_ref();
    if rules::GridTree::level_of(tree, code) != Some(GridLevel::Township)
        || !rules::in_scope(tree, &scope.actor, code)
    {
        return Err(DecisionError::NotFound);
    }
    let id = Acceptance::record_id(code, year);
    let (doc, now_seen) = match storage.record(&id)? {
        Some(stored) => {
            if stored.kind != RecordKind::Acceptance {
                return Err(DecisionError::NotFound);
            }
            let doc = RecordDoc::load(&stored.doc, &[])
                .map_err(|e| StorageError::Invalid(format!("stored acceptance {id}: {e}")))?;
            let Record::Acceptance(a) = doc
                .read()
                .map_err(|e| StorageError::Invalid(format!("stored acceptance {id}: {e}")))?
            else {
                return Err(DecisionError::NotFound);
            };
            (Some(doc), a.updated_at_ms.to_string())
        }
        None => (None, String::new()),
    };
    if now_seen != seen {
        return Err(DecisionError::Stale {
            seen: seen.to_string(),
            now: now_seen,
        });
    }
    let now = gridsync_core::now_ms();
    let a = Acceptance {
        id,
        grid: code.to_string(),
        year,
        decision,
        decided_on: decided_on.to_string(),
        decided_by: person.id.clone(),
        note: note.to_string(),
        updated_at_ms: now,
    };
    match push_desk_change(
        storage,
        &scope,
        person,
        doc,
        &Record::Acceptance(a.clone()),
        now,
    )? {
        PushOutcome::Accepted => Ok(a),
        PushOutcome::Rejected {
            code: RejectCode::Invalid,
            reason,
        } => Err(DecisionError::Invalid(reason)),
        PushOutcome::Rejected { reason, .. } => Err(DecisionError::NotAllowed(reason)),
    }
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    year: String,
    #[serde(default)]
    seen: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    decided_on: String,
    #[serde(default)]
    note: String,
}

impl std::fmt::Debug for DecisionForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecisionForm({} {})", self.year, self.decision)
    }
}

async fn decide(
    State(st): State<Arc<DeskState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Form(form): Form<DecisionForm>,
) -> Response {
    let signed = match require_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(year) = form
        .year
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|y| (2000..=2100).contains(y))
    else {
        return message(
            StatusCode::BAD_REQUEST,
            "验收年度有误",
            "请选择 2000 至 2100 年之间的年度。",
        );
    };
    let Some(decision) = AcceptanceDecision::parse(form.decision.trim()) else {
        return message(
            StatusCode::BAD_REQUEST,
            "请选择验收结论",
            "验收结论须为“达标”“未达标”或“撤销”之一。",
        );
    };
    let st2 = st.clone();
    let person = signed.person.clone();
    let code2 = code.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let decided_on = form.decided_on.trim();
        let note = form.note.trim();
        let r = decide_acceptance(
            &st2.app,
            &person,
            &code2,
            year,
            form.seen.trim(),
            decision,
            decided_on,
            note,
        );
        let what = format!("{code2} {year} {} {decided_on}", decision.as_str());
        let done = r.as_ref().map(|_| what.clone());
        super::review::audit_decision(storage, &person.id, "desk_acceptance", &what, done);
        Ok(r)
    })
    .await;
    match r {
        Ok(Ok(_)) => redirect(&format!(
            "/desk/townships?year={year}&done={}",
            url_encode(&code)
        )),
        Ok(Err(DecisionError::NotFound)) => not_found(),
        Ok(Err(DecisionError::Stale { .. })) => message(
            StatusCode::CONFLICT,
            "该乡镇的验收结论已有变化",
            "打开页面后，该乡镇本年度的验收结论已由他人修改。请返回列表刷新后再处理。",
        ),
        Ok(Err(DecisionError::NotAllowed(why))) => message(
            StatusCode::FORBIDDEN,
            "无权作出验收结论",
            &format!("达标验收由旗县审核人员作出：{why}"),
        ),
        Ok(Err(DecisionError::Invalid(why))) => message(
            StatusCode::BAD_REQUEST,
            "验收内容有误",
            &format!("请检查后重试：{why}"),
        ),
        Ok(Err(DecisionError::Storage(_))) | Err(_) => server_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_codes_as_shown() {
        assert_eq!(percent(2.0 / 7.0), "28.6 %");
        assert_eq!(percent(1.0), "100.0 %");
        assert_eq!(url_encode("T1-V_1.a"), "T1-V_1.a");
        assert_eq!(url_encode("a b"), "a%20b");
    }
}
