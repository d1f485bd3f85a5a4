//! The review queue: entries awaiting this person's level; decisions written as
//! Automerge changes by the server for that person, judged as a phone's push.

use std::sync::Arc;

use axum::Router;

use super::DeskState;

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
}
