//! Livestock scale thresholds per league (规模养殖场标准, issue 16): what
//! `gridsync-server admin set-scale-thresholds` and `admin scale-thresholds` do.
//!
//! A league's overrides of the national MARA table ([`gridsync_core::scale`]) are kept by
//! the server per league grid code; setting them recomputes the query rows of the league's
//! producers at once (`q_producers.scale_farm` / `scale_mismatch`), so the desk's counts
//! follow without a separate `admin rebuild-query-tables`. Phones are not told: the sync
//! protocol's reference data has no place for them (adding one would need a negotiated
//! protocol version), so a phone assesses with the national table.

use gridsync_core::model::{GridLevel, Species};
use gridsync_core::scale::{mara_threshold, ScaleOverrides, ScaleThresholds};

use crate::storage::{AuditEntry, RebuildReport, Storage, StorageError};

/// Why thresholds were not set or shown.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// Input refused.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Checks that `code` is a league-level grid.
fn check_league(storage: &dyn Storage, code: &str) -> Result<(), ScaleError> {
    let nodes = storage.grids()?;
    let node = nodes
        .iter()
        .find(|n| n.code == code)
        .ok_or_else(|| ScaleError::Invalid(format!("no grid '{code}'")))?;
    if node.level != GridLevel::League {
        return Err(ScaleError::Invalid(format!(
            "grid '{code}' is a {}: scale thresholds are set per league",
            node.level.as_str()
        )));
    }
    Ok(())
}

/// Sets a league's overrides from the text of a JSON or CSV file
/// ([`ScaleOverrides::parse`]; an empty file goes back to the national table), recomputes
/// its producers' query rows and writes an audit entry by `by`.
pub fn set_league_thresholds(
    storage: &dyn Storage,
    by: &str,
    league: &str,
    text: &str,
) -> Result<RebuildReport, ScaleError> {
    check_league(storage, league)?;
    let overrides = ScaleOverrides::parse(text).map_err(|e| ScaleError::Invalid(e.to_string()))?;
    let report = storage.set_scale_overrides(league, &overrides, gridsync_core::now_ms())?;
    let entry = AuditEntry {
        at_ms: gridsync_core::now_ms(),
        person_id: by.to_string(),
        device_id: None,
        record_id: None,
        kind: None,
        grid: Some(league.to_string()),
        action: "set_scale_thresholds".to_string(),
        detail: format!("league {league}: overrides {}", overrides.to_json()),
    };
    if let Err(e) = storage.audit(&entry) {
        tracing::error!("scale thresholds audit entry not written: {e}");
    }
    Ok(report)
}

/// The thresholds in force in a league, one species a line (`—`: no threshold), marking
/// those the league changed.
pub fn show_league_thresholds(storage: &dyn Storage, league: &str) -> Result<String, ScaleError> {
    check_league(storage, league)?;
    let stored = storage.scale_overrides(league)?;
    let overrides = stored
        .as_ref()
        .map(|s| s.overrides.clone())
        .unwrap_or_default();
    let t = ScaleThresholds::with_overrides(&overrides);
    let mut out = match &stored {
        Some(s) => format!(
            "scale thresholds of league {league} (set at {} ms; * = changed from the national table)\n",
            s.updated_at_ms
        ),
        None => format!("scale thresholds of league {league}: the national table (MARA)\n"),
    };
    for species in Species::ALL {
        let mark = if overrides.0.contains_key(&species) {
            "*"
        } else {
            " "
        };
        let now = t
            .get(species)
            .map(|t| {
                format!(
                    "{} {} ≥ {}",
                    t.measure.as_str(),
                    t.measure.label_zh(),
                    t.head
                )
            })
            .unwrap_or_else(|| "—".to_string());
        let national = mara_threshold(species)
            .map(|t| format!("{} ≥ {}", t.measure.as_str(), t.head))
            .unwrap_or_else(|| "—".to_string());
        out.push_str(&format!(
            "{mark} {:<12} {:<6} {now:<28} (national: {national})\n",
            species.as_str(),
            species.label_zh()
        ));
    }
    Ok(out)
}
