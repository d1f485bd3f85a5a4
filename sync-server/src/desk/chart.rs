//! The grid chart pages (printable, and as PDF).

use std::sync::Arc;

use axum::Router;

use super::DeskState;

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
}
