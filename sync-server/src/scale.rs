//! Livestock scale thresholds per league (规模养殖场标准, issue 16): what
//! `gridsync-server admin set-scale-thresholds` and `admin scale-thresholds` do.
//!
//! A league's overrides of the national MARA table ([`gridsync_core::scale`]) are kept by
//! the server per league grid code; setting them recomputes the query rows of the league's
//! producers at once (`q_producers.scale_farm` / `scale_mismatch`), so the desk's counts
//! follow without a separate `admin rebuild-query-tables`. Setting them also moves the
//! reference generation, so the league's people get new reference data (its version covers
//! the overrides, [`crate::scope::Scope::with_scale_overrides`]) at their next sync, and
//! their phones then fetch the overrides (`GET /v1/scale-thresholds`,
//! [`thresholds_answer`]) and assess with them as the desk counts.

use gridsync_core::model::{GridLevel, Species};
use gridsync_core::rules::GridTree;
use gridsync_core::scale::{mara_threshold, ScaleOverrides, ScaleThresholds};
use gridsync_core::sync::protocol::ScaleThresholdsResponse;

use crate::scope::Scope;

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

/// The league of a person whose grids are `grids`: the league-level grid that is, or is an
/// ancestor of, every one of them. `None` when there is none (no grids, grids above the
/// league level, or grids in several leagues): the national table applies.
pub fn league_of(tree: &dyn GridTree, grids: &[String]) -> Option<String> {
    let mut found: Option<String> = None;
    for g in grids {
        let mut code = g.clone();
        // Bounded: a damaged tree with a cycle still ends.
        let league = (0..64).find_map(|_| {
            if tree.level_of(&code)? == GridLevel::League {
                return Some(Some(code.clone()));
            }
            match tree.parent_of(&code) {
                Some(p) => {
                    code = p;
                    None
                }
                None => Some(None),
            }
        })??;
        match &found {
            Some(f) if *f != league => return None,
            _ => found = Some(league),
        }
    }
    found
}

/// The answer to a device's `GET /v1/scale-thresholds`: its league and that league's
/// overrides, as its scope holds them (the reference version it answers with covers them).
pub fn thresholds_answer(scope: &Scope) -> ScaleThresholdsResponse {
    let overrides = serde_json::from_str(&scope.scale_overrides.to_json())
        .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()));
    ScaleThresholdsResponse {
        reference_version: scope.reference.version.clone(),
        league: scope.league.clone(),
        overrides,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gridsync_core::model::GridNode;
    use gridsync_core::store::TreeSnapshot;

    fn node(code: &str, level: GridLevel, parent: Option<&str>) -> GridNode {
        GridNode {
            code: code.into(),
            name: code.into(),
            level,
            kind: gridsync_core::model::GridKind::Pastoral,
            parent: parent.map(Into::into),
        }
    }

    #[test]
    fn the_league_above_every_grid_or_none() {
        let tree = TreeSnapshot::from_nodes(&[
            node("R", GridLevel::Region, None),
            node("L1", GridLevel::League, Some("R")),
            node("L2", GridLevel::League, Some("R")),
            node("B1", GridLevel::Banner, Some("L1")),
            node("B2", GridLevel::Banner, Some("L2")),
            node("B1b", GridLevel::Banner, Some("L1")),
        ]);
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(league_of(&tree, &g(&["B1"])), Some("L1".into()));
        assert_eq!(
            league_of(&tree, &g(&["B1", "B1b", "L1"])),
            Some("L1".into())
        );
        assert_eq!(league_of(&tree, &g(&["B1", "B2"])), None);
        assert_eq!(league_of(&tree, &g(&["R"])), None);
        assert_eq!(league_of(&tree, &g(&[])), None);
        assert_eq!(league_of(&tree, &g(&["unknown"])), None);
    }
}
