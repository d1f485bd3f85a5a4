//! The review queue: directory entries awaiting this person's level, approved or returned
//! at the desk.
//!
//! A decision is not a row update. The server writes it the way the person's phone would:
//! an Automerge change to the producer's document, signed by the person's desk actor
//! (`device_actor("desk-<person id>")`) and naming the person, then hands it to the same
//! judgement as a phone's push ([`crate::push::decide`]) inside the same storage call
//! ([`Storage::apply_push`]). So the rules that bind a phone bind the desk (a supervisor
//! cannot approve for the county however the form is crafted), the decision enters the
//! grid's feed and the query tables in one transaction, and phones receive it at their
//! next sync like any other change. A change pushed by a phone meanwhile merges with it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{Person, Record, ReviewAction, ReviewState, Role};
use gridsync_core::rules;
use gridsync_core::sync::protocol::{PushOutcome, PushRecord};
use serde::Deserialize;

use super::{
    audit, date, html, message, not_found, redirect, require_post, require_session, review_label,
    risk_label, server_error, url_encode, DeskState, Me,
};
use crate::api::blocking;
use crate::storage::query::{PageReq, ReviewLevel};
use crate::storage::{Author, Storage, StorageError};

/// Rows per section of the queue page.
const QUEUE_PAGE: u32 = 50;

/// The device id a desk person's decisions are signed as (never a phone's: phones' ids are
/// issued by the server at enrolment and never start with `desk-`).
pub fn desk_device_id(person_id: &str) -> String {
    format!("desk-{person_id}")
}

/// What a desk decision does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve at the level the entry awaits (township or county).
    Approve,
    /// Return to the liaison with a reason.
    Return(String),
}

/// Why a decision was not written.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    /// No such producer, or outside the person's scope (told apart from nothing).
    #[error("no such entry")]
    NotFound,
    /// The entry moved on since the page showed it (another decision, a phone's edit).
    #[error("the entry is now {now}, not {seen} as the page showed")]
    Stale {
        /// The state the page showed.
        seen: String,
        /// The state it is in now.
        now: String,
    },
    /// The person may not take this step (core's rules).
    #[error("{0}")]
    NotAllowed(String),
    /// The decision itself is invalid (an empty or overlong reason).
    #[error("{0}")]
    Invalid(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The review step `decision` takes from `state` for `role`, or why none.
fn step_for(role: Role, state: ReviewState, decision: &Decision) -> Result<ReviewAction, String> {
    let action = match (decision, state) {
        (Decision::Return(reason), _) => ReviewAction::Return(reason.clone()),
        (Decision::Approve, ReviewState::Submitted) => ReviewAction::ApproveTownship,
        (Decision::Approve, ReviewState::TownshipApproved) => ReviewAction::ApproveCounty,
        (Decision::Approve, s) => {
            return Err(format!(
                "an entry that is {} cannot be approved",
                s.as_str()
            ))
        }
    };
    let to = rules::review_transition(state, &action).map_err(|e| e.to_string())?;
    if !rules::review_step_allowed(role, state, to) {
        return Err(format!(
            "a {} may not take an entry from {} to {}",
            role.as_str(),
            state.as_str(),
            to.as_str()
        ));
    }
    Ok(action)
}

/// Writes `person`'s decision on producer `id`, which the page showed in state `seen`, as
/// an Automerge change judged like a phone's push. Returns the state it is in after.
pub fn decide_review(
    st: &crate::api::AppState,
    person: &Person,
    id: &str,
    seen: &str,
    decision: &Decision,
) -> Result<ReviewState, DecisionError> {
    let storage: &dyn Storage = st.storage.as_ref();
    let scope = st
        .scopes
        .scope(storage, &person.id)?
        .ok_or(DecisionError::NotFound)?;
    let stored = storage.record(id)?.ok_or(DecisionError::NotFound)?;
    if stored.kind != gridsync_core::model::RecordKind::Producer
        || !rules::in_scope(scope.tree.as_ref(), &scope.actor, &stored.grid)
    {
        return Err(DecisionError::NotFound);
    }
    let doc = RecordDoc::load(&stored.doc, &[])
        .map_err(|e| StorageError::Invalid(format!("stored producer {id}: {e}")))?;
    let Record::Producer(mut p) = doc
        .read()
        .map_err(|e| StorageError::Invalid(format!("stored producer {id}: {e}")))?
    else {
        return Err(DecisionError::NotFound);
    };
    let state = p.effective_review_state();
    if state.as_str() != seen {
        return Err(DecisionError::Stale {
            seen: seen.to_string(),
            now: state.as_str().to_string(),
        });
    }
    let action = step_for(person.role, state, decision).map_err(DecisionError::NotAllowed)?;
    let now = gridsync_core::now_ms();
    rules::take_review_step(&mut p, action, &person.id, now).map_err(|e| match e {
        gridsync_core::Error::Invalid(_) => DecisionError::Invalid(e.to_string()),
        other => DecisionError::NotAllowed(other.to_string()),
    })?;
    let after = p.review.state;
    match push_desk_change(
        storage,
        &scope,
        person,
        Some(doc),
        &Record::Producer(p),
        now,
    )? {
        PushOutcome::Accepted => Ok(after),
        PushOutcome::Rejected { reason, .. } => Err(DecisionError::NotAllowed(reason)),
    }
}

/// Writes `record` as `person`'s change at the desk and judges it as a phone's push: one
/// Automerge change on `doc` (the stored document; `None` creates the record), signed by the
/// person's desk actor ([`desk_device_id`]) and naming the person, handed to
/// [`crate::push::decide`] inside [`Storage::apply_push`] with the person's `scope`. Every
/// decision made at the desk (review steps, township acceptance) is written this way, so
/// the rules that bind the person's phone bind the desk, and the change enters the grid's
/// feed, the query tables and the audit trail in one transaction.
pub(super) fn push_desk_change(
    storage: &dyn Storage,
    scope: &crate::scope::Scope,
    person: &Person,
    doc: Option<RecordDoc>,
    record: &Record,
    now: i64,
) -> Result<PushOutcome, StorageError> {
    let device = desk_device_id(&person.id);
    let actor = gridsync_core::device_actor(&device);
    let (mut doc, before_heads) = match doc {
        Some(mut doc) => {
            let before_heads = doc.heads();
            doc.set_actor(&actor);
            doc.update(record, &person.id, now)
                .map_err(|e| StorageError::Invalid(format!("writing the decision: {e}")))?;
            (doc, before_heads)
        }
        None => (
            RecordDoc::create(record, &actor, &person.id, now)
                .map_err(|e| StorageError::Invalid(format!("writing the decision: {e}")))?,
            Vec::new(),
        ),
    };
    let push = PushRecord {
        id: record.id().to_string(),
        kind: record.kind().tag(),
        changes: doc.save_after(&before_heads),
        heads: doc.heads().iter().map(|h| h.0).collect(),
    };
    let author = Author {
        person_id: person.id.clone(),
        device_id: None,
    };
    let mut ctx = crate::push::PushContext::new(storage, scope, &device);
    let mut process = |stored: Option<&crate::storage::StoredRecord>, p: &PushRecord| {
        crate::push::decide(&mut ctx, stored, p)
    };
    let results = storage.apply_push(&author, std::slice::from_ref(&push), &mut process)?;
    results
        .into_iter()
        .next()
        .map(|r| r.outcome)
        .ok_or_else(|| StorageError::Invalid("the push returned no result".into()))
}

/// Notes a desk decision in the audit trail: `action` with `Ok`'s detail when written,
/// `<action>_refused` with why when the rules or the page's state refused it (a missing
/// record and a storage failure are not decisions).
pub(super) fn audit_decision(
    storage: &dyn Storage,
    person_id: &str,
    action: &str,
    what: &str,
    result: Result<String, &DecisionError>,
) {
    match result {
        Ok(detail) => audit(storage, person_id, action, detail),
        Err(DecisionError::NotFound | DecisionError::Storage(_)) => {}
        Err(e) => audit(
            storage,
            person_id,
            &format!("{action}_refused"),
            format!("{what}: {e}"),
        ),
    }
}

/// The queue's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
        .route("/desk/reviews", get(queue))
        .route("/desk/reviews/{id}/approve", post(approve))
        .route("/desk/reviews/{id}/return", post(return_entry))
}

/// One entry of the queue as the page shows it.
struct Entry {
    id: String,
    name: String,
    grid: String,
    producer_type: &'static str,
    owner: String,
    risk: &'static str,
    state: &'static str,
    submitted: String,
    can_approve: bool,
}

/// One level's section of the queue.
struct Section {
    title: &'static str,
    hint: &'static str,
    param: &'static str,
    entries: Vec<Entry>,
    offset: u32,
    prev: Option<u32>,
    next: Option<u32>,
}

#[derive(Template)]
#[template(path = "desk/reviews.html")]
struct QueuePage {
    me: Me,
    sections: Vec<Section>,
    flash: Option<String>,
}

#[derive(Deserialize, Default)]
struct QueueQuery {
    /// Offset in the township section.
    #[serde(default)]
    t: u32,
    /// Offset in the county section.
    #[serde(default)]
    c: u32,
    /// The entry just decided.
    #[serde(default)]
    done: Option<String>,
}

/// The levels a role reviews, each with whether it may approve there.
fn levels(role: Role) -> Vec<(ReviewLevel, bool)> {
    match role {
        Role::Supervisor => vec![(ReviewLevel::Township, true)],
        // The county may return a submitted entry, not approve it for the township.
        Role::CountyReviewer => vec![(ReviewLevel::County, true), (ReviewLevel::Township, false)],
        Role::Admin => vec![(ReviewLevel::Township, true), (ReviewLevel::County, true)],
        Role::Liaison => Vec::new(),
    }
}

async fn queue(
    State(st): State<Arc<DeskState>>,
    Query(q): Query<QueueQuery>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let st2 = st.clone();
    let person = signed.person.clone();
    let done = q.done.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let Some(scope) = st2.app.scopes.scope(storage, &person.id)? else {
            return Ok(None);
        };
        let mut grids: Vec<String> = scope.readable.iter().cloned().collect();
        grids.sort();
        let names: std::collections::HashMap<String, String> = storage
            .grids()?
            .into_iter()
            .map(|g| (g.code, g.name))
            .collect();
        let mut sections = Vec::new();
        for (level, can_approve) in levels(person.role) {
            let (offset, param, title, hint) = match level {
                ReviewLevel::Township => (
                    q.t,
                    "t",
                    "待乡镇（苏木）审核",
                    if can_approve {
                        "协管员提交的主体信息，请核实后审核通过或退回。"
                    } else {
                        "尚待乡镇审核；旗县可直接退回有误的条目。"
                    },
                ),
                ReviewLevel::County => (q.c, "c", "待旗县（区）审核", "乡镇已审核通过的主体信息。"),
            };
            let page = storage.review_queue(
                &grids,
                level,
                PageReq {
                    limit: QUEUE_PAGE,
                    offset,
                },
            )?;
            let state = level.awaiting();
            let entries = page
                .rows
                .into_iter()
                .map(|r| Entry {
                    id: r.id,
                    name: r.name,
                    grid: names.get(&r.grid).cloned().unwrap_or(r.grid),
                    producer_type: r.producer_type.label_zh(),
                    owner: r.owner,
                    risk: risk_label(r.risk),
                    state: state.as_str(),
                    submitted: r.review_at_ms.map(date).unwrap_or_default(),
                    can_approve,
                })
                .collect();
            sections.push(Section {
                title,
                hint,
                param,
                entries,
                offset,
                prev: (offset > 0).then(|| offset.saturating_sub(QUEUE_PAGE)),
                next: page.more.then(|| offset.saturating_add(QUEUE_PAGE)),
            });
        }
        let flash = match done {
            Some(id) => storage
                .query_producer(&id)?
                .filter(|p| scope.readable.contains(&p.grid))
                .map(|p| format!("已处理：{}（{}）", p.name, review_label(p.review_state))),
            None => None,
        };
        Ok(Some((sections, flash)))
    })
    .await;
    match r {
        Ok(Some((sections, flash))) => html(
            StatusCode::OK,
            &QueuePage {
                me: Me::of(&signed),
                sections,
                flash,
            },
        ),
        Ok(None) => super::see_other("/desk/login"),
        Err(_) => server_error(),
    }
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    reason: String,
}

impl std::fmt::Debug for DecisionForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecisionForm(state {})", self.state)
    }
}

async fn approve(
    st: State<Arc<DeskState>>,
    id: Path<String>,
    headers: HeaderMap,
    form: Form<DecisionForm>,
) -> Response {
    decide_page(st, id, headers, form, false).await
}

async fn return_entry(
    st: State<Arc<DeskState>>,
    id: Path<String>,
    headers: HeaderMap,
    form: Form<DecisionForm>,
) -> Response {
    decide_page(st, id, headers, form, true).await
}

async fn decide_page(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<DecisionForm>,
    returning: bool,
) -> Response {
    let signed = match require_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let decision = if returning {
        let reason = form.reason.trim().to_string();
        if reason.is_empty() {
            return message(
                StatusCode::BAD_REQUEST,
                "请填写退回原因",
                "退回时必须说明原因（reason），协管员将在手机上看到它。",
            );
        }
        Decision::Return(reason)
    } else {
        Decision::Approve
    };
    let st2 = st.clone();
    let person = signed.person.clone();
    let id2 = id.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let r = decide_review(&st2.app, &person, &id2, &form.state, &decision);
        let what = match &decision {
            Decision::Approve => "approve".to_string(),
            Decision::Return(reason) => format!("return: {reason}"),
        };
        let done = r
            .as_ref()
            .map(|after| format!("{id2} {what} -> {}", after.as_str()));
        audit_decision(
            storage,
            &person.id,
            "desk_review",
            &format!("{id2} {what}"),
            done,
        );
        Ok(r)
    })
    .await;
    match r {
        Ok(Ok(_)) => redirect(&format!("/desk/reviews?done={}", url_encode(&id))),
        Ok(Err(DecisionError::NotFound)) => not_found(),
        Ok(Err(DecisionError::Stale { now, .. })) => message(
            StatusCode::CONFLICT,
            "该条目已有变化",
            &format!(
                "打开页面后，该条目已变为“{}”（可能已由他人审核，或协管员修改了信息）。请返回待审核列表刷新后再处理。",
                ReviewState::parse(&now).map(review_label).unwrap_or("未知")
            ),
        ),
        Ok(Err(DecisionError::NotAllowed(why))) => message(
            StatusCode::FORBIDDEN,
            "无权进行此审核",
            &format!("审核规则不允许此操作：{why}"),
        ),
        Ok(Err(DecisionError::Invalid(why))) => message(
            StatusCode::BAD_REQUEST,
            "审核内容有误",
            &format!("请检查后重试：{why}"),
        ),
        Ok(Err(DecisionError::Storage(_))) | Err(_) => server_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desk_takes_only_the_steps_of_the_role() {
        use ReviewState::*;
        let ret = Decision::Return("名称有误".into());
        assert_eq!(
            step_for(Role::Supervisor, Submitted, &Decision::Approve),
            Ok(ReviewAction::ApproveTownship)
        );
        assert!(step_for(Role::Supervisor, TownshipApproved, &Decision::Approve).is_err());
        assert!(step_for(Role::Supervisor, TownshipApproved, &ret).is_err());
        assert!(step_for(Role::CountyReviewer, Submitted, &Decision::Approve).is_err());
        assert_eq!(
            step_for(Role::CountyReviewer, TownshipApproved, &Decision::Approve),
            Ok(ReviewAction::ApproveCounty)
        );
        assert!(step_for(Role::CountyReviewer, Submitted, &ret).is_ok());
        assert!(step_for(Role::Admin, Draft, &Decision::Approve).is_err());
    }

    #[test]
    fn ids_are_encoded_for_the_redirect() {
        assert_eq!(url_encode("a-1_b.c"), "a-1_b.c");
        assert_eq!(url_encode("a b&c"), "a%20b%26c");
    }
}
