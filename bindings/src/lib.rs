//! uniffi bindings (filled by the bindings issue).
