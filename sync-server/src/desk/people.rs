//! People and devices: add a person, assign grids, enrolment codes with their QR
//! code, devices listed and revoked, a person deactivated.

use std::sync::Arc;

use axum::Router;

use super::DeskState;

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
}
