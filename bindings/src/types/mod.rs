//! The records and enums of the API.
//!
//! Where the core's type crosses the FFI as it is, the core derives `uniffi::Record` /
//! `uniffi::Enum` itself (feature `uniffi` of gridsync-core) and it is re-exported here.
//! Hand-written records remain only where the shape differs (maps keyed by enums, tuple
//! variants, string columns of the query tables, JSON values, inputs the core fills in),
//! each with its reason and its conversions. One file per concern: people and grids,
//! producers, checklist templates, visits, queries, sync, attachments.

mod attachment;
mod people;
mod producer;
mod query;
mod sync;
mod template;
mod visit;

pub use attachment::*;
pub use people::*;
pub use producer::*;
pub use query::*;
pub use sync::*;
pub use template::*;
pub use visit::*;
