//! Patrols: visits per producer, grid and person; a visit's page; open and overdue
//! rectifications.

use std::sync::Arc;

use axum::Router;

use super::DeskState;

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
}
