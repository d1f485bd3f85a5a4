//! Possible duplicates at the desk (疑似重复): the list of open marks in the signed-in
//! person's scope, the section of a producer's page that shows its marks, its merge and
//! the edits carried to it, and the decisions taken there.
//!
//! The marks are written by the server after every push ([`crate::duplicates`]); the desk
//! only reads them and resolves them. A decision is written like every desk decision
//! ([`super::review::push_desk_change`]): `rules::resolve_duplicate` or
//! `rules::settle_carried_edit` on the stored document, one Automerge change signed by the
//! person's desk actor, judged by the phones' rules (only supervisors, county staff and
//! administrators resolve; a crafted form binds no one else). Afterwards the server's
//! bookkeeping runs at once for the entry ([`crate::duplicates::settle`]), so the other
//! entry's mark is closed or marked "merged here" before the page redirects, exactly as
//! after a phone's push.
//!
//! A merge rewrites nothing: the tombstone keeps its fields, history and visits, and
//! points to the surviving entry (`merged_into`). The surviving entry's page lists the
//! tombstones (`q_producers.merged_into`) and their visits together with its own, and the
//! dashboard's coverage counts those visits for it (`storage::tallies`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{Person, Producer, Record, RecordKind};
use gridsync_core::rules;
use gridsync_core::sync::protocol::PushOutcome;
use serde::Deserialize;

use super::directory::{
    datetime, grid_names, list_grids, name_of, page_req, respond, scoped, show_value, Choice,
    Outcome, Pager, Params, Refused, PAGE_ROWS,
};
use super::review::{audit_decision, push_desk_change, DecisionError};
use super::{
    html, message, not_found, redirect, require_post, require_session, server_error, url_encode,
    DeskState, Me,
};
use crate::api::blocking;
use crate::storage::{Storage, StorageError};

/// Most entries with open marks one list or figure reads (each is a document to load).
pub(super) const MAX_OPEN_ENTRIES: u32 = 2_000;

/// The state a form carries for an open mark or an open carried conflict.
const OPEN: &str = "open";

/// The routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
        .route("/desk/duplicates", get(list))
        .route("/desk/producers/{id}/duplicates", post(resolve))
        .route("/desk/producers/{id}/carried", post(carried_post))
}

/// A stored producer and its document (`None`: missing or not a producer).
fn load(storage: &dyn Storage, id: &str) -> Result<Option<(Producer, RecordDoc)>, StorageError> {
    let Some(stored) = storage.record(id)? else {
        return Ok(None);
    };
    if stored.kind != RecordKind::Producer {
        return Ok(None);
    }
    let doc = RecordDoc::load(&stored.doc, &[])
        .map_err(|e| StorageError::Invalid(format!("stored producer {id}: {e}")))?;
    match doc.read() {
        Ok(Record::Producer(p)) => Ok(Some((p, doc))),
        Ok(_) => Ok(None),
        Err(e) => Err(StorageError::Invalid(format!("stored producer {id}: {e}"))),
    }
}

// ---- The open pairs in a scope (the list and the dashboard's figure). ----

/// One side of a pair.
#[derive(Debug, Clone)]
pub(super) struct Side {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) grid: String,
    /// Within the reader's scope (its page can be opened).
    pub(super) in_scope: bool,
}

/// An open possible duplicate, once per pair.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    pub(super) a: Side,
    pub(super) b: Side,
    pub(super) reasons: String,
    pub(super) score: u8,
    pub(super) found_ms: i64,
}

/// The open pairs among the producers of `grids` (each pair once, highest score first),
/// and whether more entries had open marks than were read.
pub(super) fn open_pairs(
    storage: &dyn Storage,
    grids: &[String],
    readable: &std::collections::HashSet<String>,
) -> Result<(Vec<Pair>, bool), StorageError> {
    if grids.is_empty() {
        return Ok((Vec::new(), false));
    }
    let ids = storage.open_duplicate_ids(grids, MAX_OPEN_ENTRIES + 1)?;
    let truncated = ids.len() > MAX_OPEN_ENTRIES as usize;
    let mut pairs: BTreeMap<(String, String), Pair> = BTreeMap::new();
    for id in ids.iter().take(MAX_OPEN_ENTRIES as usize) {
        let Some((p, _)) = load(storage, id)? else {
            continue;
        };
        if p.merged_into.is_some() {
            continue;
        }
        let me = Side {
            id: p.id.clone(),
            name: p.name.clone(),
            grid: p.grid.clone(),
            in_scope: readable.contains(&p.grid),
        };
        for m in p.open_duplicates() {
            let key = if p.id < m.id {
                (p.id.clone(), m.id.clone())
            } else {
                (m.id.clone(), p.id.clone())
            };
            if pairs.contains_key(&key) {
                continue;
            }
            let other = Side {
                id: m.id.clone(),
                name: m.other_name.clone(),
                grid: m.other_grid.clone(),
                in_scope: readable.contains(&m.other_grid),
            };
            let (a, b) = if p.id < m.id {
                (me.clone(), other)
            } else {
                (other, me.clone())
            };
            pairs.insert(
                key,
                Pair {
                    a,
                    b,
                    reasons: crate::duplicates::reasons_zh(&m.reasons),
                    score: m.score,
                    found_ms: m.found_at_ms,
                },
            );
        }
    }
    // The other side's name and grid as the mark recorded them may be old: read the rows.
    let mut out: Vec<Pair> = pairs.into_values().collect();
    for pair in &mut out {
        for side in [&mut pair.a, &mut pair.b] {
            if let Some(row) = storage.query_producer(&side.id)? {
                side.name = row.name;
                side.in_scope = readable.contains(&row.grid);
                side.grid = row.grid;
            }
        }
    }
    out.sort_by(|x, y| {
        y.score
            .cmp(&x.score)
            .then(y.found_ms.cmp(&x.found_ms))
            .then(x.a.id.cmp(&y.a.id))
            .then(x.b.id.cmp(&y.b.id))
    });
    Ok((out, truncated))
}

/// The dashboard's figure: open pairs (each counted once) in total, and per grid (a pair
/// counts for the grid of each of its entries within `grids`).
#[derive(Debug, Clone, Default)]
pub(super) struct OpenFigure {
    pub(super) total: usize,
    pub(super) by_grid: Vec<GridCount>,
    /// More entries had open marks than were read (the counts are a lower bound).
    pub(super) truncated: bool,
}

/// One grid's open pairs.
#[derive(Debug, Clone)]
pub(super) struct GridCount {
    pub(super) code: String,
    pub(super) name: String,
    pub(super) pairs: usize,
    pub(super) link: String,
}

/// [`OpenFigure`] of `grids`.
pub(super) fn open_figure(
    storage: &dyn Storage,
    grids: &[String],
    readable: &std::collections::HashSet<String>,
    names: &HashMap<String, String>,
) -> Result<OpenFigure, StorageError> {
    let (pairs, truncated) = open_pairs(storage, grids, readable)?;
    let counted: std::collections::HashSet<&str> = grids.iter().map(String::as_str).collect();
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pairs {
        let mut seen = std::collections::BTreeSet::new();
        for g in [&p.a.grid, &p.b.grid] {
            if counted.contains(g.as_str()) && seen.insert(g.clone()) {
                *by.entry(g.clone()).or_default() += 1;
            }
        }
    }
    Ok(OpenFigure {
        total: pairs.len(),
        by_grid: by
            .into_iter()
            .map(|(code, pairs)| GridCount {
                name: name_of(names, &code),
                link: format!("/desk/duplicates?grid={}", url_encode(&code)),
                code,
                pairs,
            })
            .collect(),
        truncated,
    })
}

// ---- The list page. ----

struct PairRow {
    a: SideView,
    b: SideView,
    reasons: String,
    score: u8,
    found: String,
}

struct SideView {
    id: String,
    name: String,
    grid: String,
    link: bool,
}

impl SideView {
    fn of(s: Side, names: &HashMap<String, String>) -> SideView {
        SideView {
            grid: format!("{}（{}）", name_of(names, &s.grid), s.grid),
            id: s.id,
            name: s.name,
            link: s.in_scope,
        }
    }
}

#[derive(Template)]
#[template(path = "desk/duplicates.html")]
struct ListPage {
    me: Me,
    grids: Vec<Choice>,
    grid: String,
    rows: Vec<PairRow>,
    total: usize,
    truncated: bool,
    pager: Pager,
}

async fn list(
    State(st): State<Arc<DeskState>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let params = Params(params);
    let parsed: Result<(Option<String>, u32), Refused> = (|| {
        let grid = params.get("grid").map(str::to_string);
        if grid.as_ref().is_some_and(|g| g.chars().count() > 64) {
            return Err(super::directory::bad_param("grid", "网格编码过长"));
        }
        Ok((grid, params.page()?))
    })();
    let (grid, page) = match parsed {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        let Some(grids) = list_grids(storage, scope, grid.as_deref())? else {
            return Ok(Outcome::NotFound);
        };
        let (pairs, truncated) = open_pairs(storage, &grids, &scope.readable)?;
        let nodes = storage.grids()?;
        let choices = super::directory::grid_choices(&nodes, &scope.readable, grid.as_deref());
        Ok(Outcome::Page((
            grid,
            page,
            pairs,
            truncated,
            choices,
            grid_names(&nodes),
        )))
    })
    .await;
    respond(r, |(grid, page, pairs, truncated, grids, names)| {
        let total = pairs.len();
        let req = page_req(page);
        let rows: Vec<PairRow> = pairs
            .into_iter()
            .skip(req.offset as usize)
            .take(PAGE_ROWS as usize)
            .map(|p| PairRow {
                a: SideView::of(p.a, &names),
                b: SideView::of(p.b, &names),
                reasons: p.reasons,
                score: p.score,
                found: datetime(p.found_ms),
            })
            .collect();
        let more = (req.offset as usize).saturating_add(rows.len()) < total;
        let grid_s = grid.unwrap_or_default();
        let pager = Pager::new("/desk/duplicates", &[("grid", &grid_s)], page, more);
        html(
            StatusCode::OK,
            &ListPage {
                me: Me::of(&signed),
                grids,
                grid: grid_s,
                rows,
                total,
                truncated,
                pager,
            },
        )
    })
}

// ---- A producer's page: its marks, its merge, the edits carried to it. ----

/// A mark as the producer's page shows it.
pub(super) struct MarkView {
    pub(super) other: String,
    pub(super) other_name: String,
    pub(super) other_grid: String,
    pub(super) other_link: bool,
    pub(super) reasons: String,
    pub(super) score: u8,
    pub(super) found: String,
    /// `None` while open.
    pub(super) outcome: Option<&'static str>,
    pub(super) outcome_id: &'static str,
    pub(super) by: String,
    pub(super) at: String,
    /// An open mark whose other entry was meanwhile merged into a third one: that one's id
    /// and name (this entry cannot be merged into a tombstone; the page says where to look).
    pub(super) other_merged_into: Option<(String, String)>,
}

/// An edit carried here from a tombstone.
pub(super) struct CarriedView {
    pub(super) id: String,
    pub(super) from: String,
    pub(super) from_name: String,
    pub(super) field: String,
    pub(super) label: &'static str,
    pub(super) value: String,
    /// This entry's value now (conflicts).
    pub(super) current: String,
    pub(super) at: String,
    /// Settled by (conflicts settled); empty otherwise.
    pub(super) settled_by: String,
}

/// A tombstone merged into this entry.
pub(super) struct MergedView {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) grid: String,
    /// Its last visit (its visits count for the surviving entry).
    pub(super) last_visit_ms: Option<i64>,
}

/// The tombstone's pointer.
pub(super) struct TombstoneView {
    pub(super) into: String,
    pub(super) into_name: String,
    pub(super) by: String,
    pub(super) at: String,
}

/// The duplicate section of a producer's page.
#[derive(Default)]
pub(super) struct Section {
    pub(super) marks: Vec<MarkView>,
    pub(super) open_marks: usize,
    pub(super) tombstone: Option<TombstoneView>,
    pub(super) merged: Vec<MergedView>,
    pub(super) carried: Vec<CarriedView>,
    pub(super) conflicts: Vec<CarriedView>,
    /// The signed-in person may resolve here (role, and the entry is not a tombstone).
    pub(super) can_resolve: bool,
}

/// The duplicate section of producer `p`'s page for `person`, and the tombstones merged
/// into it (their visits are listed with its own).
pub(super) fn section(
    storage: &dyn Storage,
    p: &Producer,
    person: &Person,
    readable: &std::collections::HashSet<String>,
    names: &HashMap<String, String>,
    grids: &HashMap<String, String>,
) -> Result<Section, StorageError> {
    let current_name = |id: &str, fallback: &str| -> Result<(String, String, bool), StorageError> {
        Ok(match storage.query_producer(id)? {
            Some(r) => {
                let ok = readable.contains(&r.grid);
                (r.name, r.grid, ok)
            }
            None => (fallback.to_string(), String::new(), false),
        })
    };
    let mut marks = Vec::new();
    for m in &p.duplicates {
        let (name, grid, link) = current_name(&m.id, &m.other_name)?;
        let other_merged_into = match (&m.resolution, load(storage, &m.id)?) {
            (None, Some((o, _))) => match o.merged_into {
                Some(t) => Some((t.into.clone(), current_name(&t.into, &t.into)?.0)),
                None => None,
            },
            _ => None,
        };
        let grid = if grid.is_empty() {
            m.other_grid.clone()
        } else {
            grid
        };
        marks.push(MarkView {
            other: m.id.clone(),
            other_name: name,
            other_grid: format!("{}（{}）", name_of(grids, &grid), grid),
            other_link: link,
            reasons: crate::duplicates::reasons_zh(&m.reasons),
            score: m.score,
            found: datetime(m.found_at_ms),
            outcome: m.resolution.as_ref().map(|r| r.outcome.label_zh()),
            outcome_id: m.resolution.as_ref().map_or(OPEN, |r| r.outcome.as_str()),
            by: m
                .resolution
                .as_ref()
                .map(|r| name_of(names, &r.by))
                .unwrap_or_default(),
            at: m
                .resolution
                .as_ref()
                .map(|r| datetime(r.at_ms))
                .unwrap_or_default(),
            other_merged_into,
        });
    }
    // Open marks first, then by when they were found.
    marks.sort_by(|a, b| {
        a.outcome
            .is_some()
            .cmp(&b.outcome.is_some())
            .then(b.found.cmp(&a.found))
    });
    let tombstone = match &p.merged_into {
        Some(t) => Some(TombstoneView {
            into_name: current_name(&t.into, &t.into)?.0,
            into: t.into.clone(),
            by: name_of(names, &t.by),
            at: datetime(t.at_ms),
        }),
        None => None,
    };
    let merged: Vec<MergedView> = storage
        .merged_entries(&p.id)?
        .into_iter()
        .map(|r| MergedView {
            grid: format!("{}（{}）", name_of(grids, &r.grid), r.grid),
            last_visit_ms: r.last_visit_ms,
            id: r.id,
            name: r.name,
        })
        .collect();
    let (mut carried, mut conflicts) = (Vec::new(), Vec::new());
    for e in &p.carried_edits {
        let value: Option<serde_json::Value> = serde_json::from_str(&e.value).ok();
        let view = CarriedView {
            id: e.id.clone(),
            from_name: current_name(&e.from, &e.from)?.0,
            from: e.from.clone(),
            label: super::directory::field_label(&e.field),
            field: e.field.clone(),
            value: match &value {
                Some(v) => show_value(Some(v)),
                None => e.value.clone(),
            },
            current: show_value(p.directory_field(&e.field).as_ref()),
            at: datetime(e.at_ms),
            settled_by: e
                .settled_by
                .as_ref()
                .map(|b| name_of(names, b))
                .unwrap_or_default(),
        };
        if !e.applied && e.settled_by.is_none() {
            conflicts.push(view);
        } else {
            carried.push(view);
        }
    }
    Ok(Section {
        open_marks: p.open_duplicates().count(),
        can_resolve: rules::resolves_duplicates(person.role) && p.merged_into.is_none(),
        marks,
        tombstone,
        merged,
        carried,
        conflicts,
    })
}

// ---- Decisions. ----

#[derive(Deserialize)]
struct ResolveForm {
    #[serde(default)]
    csrf: String,
    /// The other entry of the pair.
    #[serde(default)]
    other: String,
    /// `not_duplicate` or `merge`.
    #[serde(default)]
    outcome: String,
    /// The mark's state as the page showed it (`open`).
    #[serde(default)]
    state: String,
}

impl std::fmt::Debug for ResolveForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ResolveForm(other {}, outcome {}, state {})",
            self.other, self.outcome, self.state
        )
    }
}

#[derive(Deserialize)]
struct CarriedForm {
    #[serde(default)]
    csrf: String,
    /// The carried edit.
    #[serde(default)]
    edit: String,
    /// `take` (the carried value) or `keep` (this entry's value).
    #[serde(default)]
    choice: String,
    /// The conflict's state as the page showed it (`open`).
    #[serde(default)]
    state: String,
}

impl std::fmt::Debug for CarriedForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CarriedForm(edit {}, choice {}, state {})",
            self.edit, self.choice, self.state
        )
    }
}

/// Loads producer `id` for `person`'s decision: in scope (else not found), the person may
/// resolve duplicates (else not allowed).
fn for_decision(
    st: &crate::api::AppState,
    person: &Person,
    id: &str,
) -> Result<(Arc<crate::scope::Scope>, Producer, RecordDoc), DecisionError> {
    let storage: &dyn Storage = st.storage.as_ref();
    let scope = st
        .scopes
        .scope(storage, &person.id)?
        .ok_or(DecisionError::NotFound)?;
    let (p, doc) = load(storage, id)?.ok_or(DecisionError::NotFound)?;
    if !rules::in_scope(scope.tree.as_ref(), &scope.actor, &p.grid) {
        return Err(DecisionError::NotFound);
    }
    if !rules::resolves_duplicates(person.role) {
        return Err(DecisionError::NotAllowed(format!(
            "a {} may not resolve possible duplicates",
            person.role.as_str()
        )));
    }
    Ok((scope, p, doc))
}

/// Writes the change and runs the server's bookkeeping for `id` at once.
fn write_and_settle(
    st: &crate::api::AppState,
    scope: &crate::scope::Scope,
    person: &Person,
    doc: RecordDoc,
    p: Producer,
    now: i64,
) -> Result<(), DecisionError> {
    let storage: &dyn Storage = st.storage.as_ref();
    let id = p.id.clone();
    match push_desk_change(storage, scope, person, Some(doc), &Record::Producer(p), now)? {
        PushOutcome::Accepted => {}
        PushOutcome::Rejected { reason, .. } => return Err(DecisionError::NotAllowed(reason)),
    }
    let nodes = st.grid_nodes.get(storage)?;
    crate::duplicates::settle(storage, &nodes, &[id]);
    Ok(())
}

fn core_error(e: gridsync_core::Error) -> DecisionError {
    match e {
        gridsync_core::Error::Invalid(_) => DecisionError::Invalid(e.to_string()),
        other => DecisionError::NotAllowed(other.to_string()),
    }
}

/// Resolves the possible duplicate `other` of producer `id`, which the page showed open
/// (`seen`): "not a duplicate" (`merge == false`) or "duplicate of `other`" (`id` becomes a
/// tombstone pointing to `other`).
pub fn resolve_duplicate(
    st: &crate::api::AppState,
    person: &Person,
    id: &str,
    other: &str,
    merge: bool,
    seen: &str,
) -> Result<(), DecisionError> {
    let (scope, mut p, doc) = for_decision(st, person, id)?;
    let now_state = match (&p.merged_into, p.duplicates.iter().find(|m| m.id == other)) {
        (Some(_), _) => "merged",
        (None, None) => return Err(DecisionError::NotFound),
        (None, Some(m)) => m.resolution.as_ref().map_or(OPEN, |r| r.outcome.as_str()),
    };
    if now_state != seen || seen != OPEN {
        return Err(DecisionError::Stale {
            seen: seen.to_string(),
            now: now_state.to_string(),
        });
    }
    if merge {
        if let Some((o, _)) = load(st.storage.as_ref(), other)? {
            if let Some(t) = o.merged_into {
                return Err(DecisionError::Invalid(format!(
                    "{other} was itself merged into {}: an entry is merged into a producer of \
                     the directory, not into a merged entry",
                    t.into
                )));
            }
        }
    }
    let now = gridsync_core::now_ms();
    rules::resolve_duplicate(&mut p, other, merge, &person.id, now).map_err(core_error)?;
    write_and_settle(st, &scope, person, doc, p, now)
}

/// Settles the carried edit `edit` of producer `id`, which the page showed open (`seen`):
/// take the carried value (`take`) or keep this entry's.
pub fn settle_carried(
    st: &crate::api::AppState,
    person: &Person,
    id: &str,
    edit: &str,
    take: bool,
    seen: &str,
) -> Result<(), DecisionError> {
    let (scope, mut p, doc) = for_decision(st, person, id)?;
    let now_state = match p.carried_edits.iter().find(|e| e.id == edit) {
        None => return Err(DecisionError::NotFound),
        Some(e) if e.applied => "applied",
        Some(e) if e.settled_by.is_some() => "settled",
        Some(_) => OPEN,
    };
    if now_state != seen || seen != OPEN {
        return Err(DecisionError::Stale {
            seen: seen.to_string(),
            now: now_state.to_string(),
        });
    }
    let now = gridsync_core::now_ms();
    rules::settle_carried_edit(&mut p, edit, take, &person.id, now).map_err(core_error)?;
    write_and_settle(st, &scope, person, doc, p, now)
}

/// The answer to a refused decision.
fn refused(e: DecisionError) -> Response {
    match e {
        DecisionError::NotFound => not_found(),
        DecisionError::Stale { .. } => message(
            StatusCode::CONFLICT,
            "该条目已有变化",
            "打开页面后，该疑似重复已由他人处理，或该条目已被合并。请返回主体页面刷新后再处理。",
        ),
        DecisionError::NotAllowed(why) => message(
            StatusCode::FORBIDDEN,
            "无权处理疑似重复",
            &format!("只有乡镇监管员、旗县审核人员和系统管理员可以处理疑似重复：{why}"),
        ),
        DecisionError::Invalid(why) => message(
            StatusCode::BAD_REQUEST,
            "处理内容有误",
            &format!("请检查后重试：{why}"),
        ),
        DecisionError::Storage(_) => server_error(),
    }
}

async fn resolve(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ResolveForm>,
) -> Response {
    let signed = match require_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let merge = match form.outcome.as_str() {
        "not_duplicate" => false,
        "merge" => true,
        _ => return message(
            StatusCode::BAD_REQUEST,
            "处理内容有误",
            "参数 outcome 的值无效：应为 not_duplicate（不是重复）或 merge（是重复，并入对方）。",
        ),
    };
    let st2 = st.clone();
    let person = signed.person.clone();
    let id2 = id.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let r = resolve_duplicate(&st2.app, &person, &id2, &form.other, merge, &form.state);
        let what = format!(
            "{id2} {} {}",
            if merge {
                "merged into"
            } else {
                "not a duplicate of"
            },
            form.other
        );
        audit_decision(
            storage,
            &person.id,
            "desk_duplicate",
            &what,
            r.as_ref().map(|_| what.clone()),
        );
        Ok(r)
    })
    .await;
    match r {
        Ok(Ok(())) => redirect(&format!("/desk/producers/{}", url_encode(&id))),
        Ok(Err(e)) => refused(e),
        Err(_) => server_error(),
    }
}

async fn carried_post(
    State(st): State<Arc<DeskState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CarriedForm>,
) -> Response {
    let signed = match require_post(&st, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let take = match form.choice.as_str() {
        "take" => true,
        "keep" => false,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "处理内容有误",
                "参数 choice 的值无效：应为 take（采用带入的值）或 keep（保留本条的值）。",
            )
        }
    };
    let st2 = st.clone();
    let person = signed.person.clone();
    let id2 = id.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let r = settle_carried(&st2.app, &person, &id2, &form.edit, take, &form.state);
        let what = format!(
            "{id2} carried edit {} {}",
            form.edit,
            if take { "taken" } else { "kept" }
        );
        audit_decision(
            storage,
            &person.id,
            "desk_carried_edit",
            &what,
            r.as_ref().map(|_| what.clone()),
        );
        Ok(r)
    })
    .await;
    match r {
        Ok(Ok(())) => redirect(&format!("/desk/producers/{}", url_encode(&id))),
        Ok(Err(e)) => refused(e),
        Err(_) => server_error(),
    }
}
