//! Dashboard pages: figures with SVG charts drawn on the server, a table beside each, drill-down from banner to township to village to producer.

use std::sync::Arc;

use axum::Router;

use super::DeskState;

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
}
