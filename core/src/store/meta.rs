//! The `meta` table: one value a key (the device's person, its actor, the server link, the
//! scope, the clock correction), as text or as JSON.

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Error, Result};

/// The value kept under `key`.
pub(crate) fn get(c: &Connection, key: &str) -> Result<Option<String>> {
    Ok(
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?,
    )
}

/// Keeps `value` under `key`, replacing what was there.
pub(crate) fn set(c: &Connection, key: &str, value: &str) -> Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}

/// The JSON value kept under `key`.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    c: &Connection,
    key: &str,
) -> Result<Option<T>> {
    match get(c, key)? {
        Some(s) => {
            Ok(Some(serde_json::from_str(&s).map_err(|e| {
                Error::Document(format!("meta {key}: {e}"))
            })?))
        }
        None => Ok(None),
    }
}

/// Keeps `v` as JSON under `key`.
pub(crate) fn set_json<T: serde::Serialize>(c: &Connection, key: &str, v: &T) -> Result<()> {
    let s = serde_json::to_string(v).map_err(|e| Error::Document(e.to_string()))?;
    set(c, key, &s)
}
