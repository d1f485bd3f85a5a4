//! People, roles and the grid tree: the core's own types, derived in gridsync-core under
//! its `uniffi` feature (no mirror needed).

pub use gridsync_core::model::{GridKind, GridLevel, GridNode, Person, Role};
