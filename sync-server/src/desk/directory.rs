//! The directory: the producer list (search, filters, pages) and a producer's page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gridsync_core::rules::in_scope;

use super::*;
use crate::api::blocking;

/// The directory's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new().route("/desk/producers/{id}", get(producer))
}

/// A producer's row as the page shows it.
struct ProducerView {
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
}

#[derive(Template)]
#[template(path = "desk/producer.html")]
struct ProducerPage {
    me: Me,
    p: ProducerView,
    grid_name: String,
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
    let st2 = st.clone();
    let pid = signed.person.id.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let Some(scope) = st2.app.scopes.scope(storage, &pid)? else {
            return Ok(None);
        };
        let Some(row) = storage.query_producer(&id)? else {
            return Ok(None);
        };
        // The phones' rule, over the stored grid tree.
        if !in_scope(scope.tree.as_ref(), &scope.actor, &row.grid) {
            return Ok(None);
        }
        let grid_name = storage
            .grids()?
            .into_iter()
            .find(|g| g.code == row.grid)
            .map(|g| g.name)
            .unwrap_or_default();
        Ok(Some((row, grid_name)))
    })
    .await;
    let (row, grid_name) = match r {
        Ok(Some(x)) => x,
        Ok(None) => return not_found(),
        Err(_) => return server_error(),
    };
    let p = ProducerView {
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
    };
    html(
        StatusCode::OK,
        &ProducerPage {
            me: Me::of(&signed),
            p,
            grid_name,
        },
    )
}
