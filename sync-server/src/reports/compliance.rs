//! Township compliance (达标): the county's dated acceptance decisions and the share of
//! compliant townships against the year's target.
//!
//! A township-level grid is compliant in year Y when its latest decision for a year up to Y
//! (one decision record per township and year, `q_acceptances`) is "accepted" (达标): a
//! "not accepted" or "withdrawn" decision of a later year ends an earlier acceptance, and a
//! township never decided on is not compliant.
//!
//! The targets follow the implementation plan: 30 % of townships compliant by the end of
//! the programme's first year, 80 % by the end of the second, 100 % from the third on
//! (consolidation after). The first year is a server setting, `--programme-start-year`
//! (`GRIDSYNC_PROGRAMME_START_YEAR`, default [`DEFAULT_PROGRAMME_START_YEAR`], the plan's
//! 2022); before it there is no target.

use gridsync_core::model::{AcceptanceDecision, GridLevel};

use crate::storage::{Storage, StorageResult};

/// The programme's first year when the server is not told otherwise (the plan: 30 % by the
/// end of 2022, 80 % by the end of 2023, 100 % by the end of 2024).
pub const DEFAULT_PROGRAMME_START_YEAR: i32 = 2022;

/// The share of compliant townships to reach by the end of `year` in a programme whose
/// first year is `start_year`: 30 %, 80 %, then 100 %; `None` before the programme.
pub fn target_for(start_year: i32, year: i32) -> Option<f64> {
    match i64::from(year) - i64::from(start_year) {
        n if n < 0 => None,
        0 => Some(0.30),
        1 => Some(0.80),
        _ => Some(1.0),
    }
}

/// One township's status in a year.
#[derive(Debug, Clone, PartialEq)]
pub struct TownshipCompliance {
    /// Grid code.
    pub code: String,
    /// Grid name.
    pub name: String,
    /// Compliant in the year.
    pub accepted: bool,
    /// Date of the decision that holds (any decision: also a refusal or a withdrawal).
    pub decided_on: Option<String>,
    /// Who took it (person id).
    pub decided_by: Option<String>,
}

/// The compliance of the townships in a scope for a year.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplianceSummary {
    /// The year.
    pub year: i32,
    /// Every township-level grid of the scope, by code.
    pub townships: Vec<TownshipCompliance>,
    /// How many are compliant.
    pub compliant: usize,
    /// How many townships there are.
    pub total: usize,
    /// `compliant / total` (0 without townships).
    pub share: f64,
    /// The year's target share, `None` before the programme.
    pub target: Option<f64>,
}

/// The compliance of the township-level grids among `grids` (the expanded subtree in the
/// person's scope) in `year`, against the target of a programme that started in
/// [`DEFAULT_PROGRAMME_START_YEAR`]; see [`township_compliance_since`].
pub fn township_compliance(
    storage: &dyn Storage,
    grids: &[String],
    year: i32,
) -> StorageResult<ComplianceSummary> {
    township_compliance_since(storage, grids, year, DEFAULT_PROGRAMME_START_YEAR)
}

/// [`township_compliance`] for a programme whose first year is `start_year`.
pub fn township_compliance_since(
    storage: &dyn Storage,
    grids: &[String],
    year: i32,
    start_year: i32,
) -> StorageResult<ComplianceSummary> {
    let wanted: std::collections::HashSet<&str> = grids.iter().map(String::as_str).collect();
    let mut townships: Vec<(String, String)> = storage
        .grids()?
        .into_iter()
        .filter(|n| n.level == GridLevel::Township && wanted.contains(n.code.as_str()))
        .map(|n| (n.code, n.name))
        .collect();
    townships.sort();
    let codes: Vec<String> = townships.iter().map(|t| t.0.clone()).collect();
    // Rows by grid and year: the last row of a grid is its latest decision up to `year`.
    let mut latest: std::collections::HashMap<String, _> = std::collections::HashMap::new();
    if !codes.is_empty() {
        for row in storage.acceptances(&codes, year)? {
            latest.insert(row.grid.clone(), row);
        }
    }
    let townships: Vec<TownshipCompliance> = townships
        .into_iter()
        .map(|(code, name)| {
            let row = latest.remove(&code);
            TownshipCompliance {
                accepted: row
                    .as_ref()
                    .is_some_and(|r| r.decision == AcceptanceDecision::Accepted),
                decided_on: row.as_ref().map(|r| r.decided_on.clone()),
                decided_by: row.map(|r| r.decided_by),
                code,
                name,
            }
        })
        .collect();
    let total = townships.len();
    let compliant = townships.iter().filter(|t| t.accepted).count();
    Ok(ComplianceSummary {
        year,
        townships,
        compliant,
        total,
        share: if total == 0 {
            0.0
        } else {
            compliant as f64 / total as f64
        },
        target: target_for(start_year, year),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_by_programme_year() {
        assert_eq!(target_for(2022, 2021), None);
        assert_eq!(target_for(2022, 2022), Some(0.30));
        assert_eq!(target_for(2022, 2023), Some(0.80));
        assert_eq!(target_for(2022, 2024), Some(1.0));
        assert_eq!(target_for(2022, 2030), Some(1.0));
        assert_eq!(target_for(2025, 2025), Some(0.30));
        assert_eq!(target_for(i32::MIN, i32::MAX), Some(1.0));
        assert_eq!(target_for(i32::MAX, i32::MIN), None);
    }
}
