//! Runnable programs on the gridsync core: the field command-line app (`gridsync-field`)
//! and the local-store benchmark (`bench-local`).

pub mod field;
