//! The livestock scale thresholds of the device's league (规模养殖场标准, issue 16).
//!
//! A league may change the national table ([`ScaleThresholds::mara`]) for its producers;
//! the server keeps those overrides and the sync engine fetches them
//! (`GET /v1/scale-thresholds`, `docs/protocol.md`) whenever the reference data the device
//! holds changes, which it does when the overrides change. They are kept in the `meta`
//! table under [`KEY`], with the reference version they were fetched for: a device whose
//! reference version differs fetches them again at its next sync. A device that never
//! fetched them (not enrolled, or a server without the call) assesses with the national
//! table.

use serde::{Deserialize, Serialize};

use super::{meta, Store};
use crate::scale::{ScaleOverrides, ScaleThresholds};
use crate::{Error, Result};

/// The `meta` key of the league's thresholds.
pub(crate) const KEY: &str = "scale_thresholds";

/// The league thresholds a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeagueScale {
    /// The league (grid code) the overrides belong to; `None` when the device's person is
    /// in no single league (the national table applies).
    pub league: Option<String>,
    /// The league's changes to the national table (empty: none).
    pub overrides: ScaleOverrides,
    /// The reference version they were fetched for.
    pub reference_version: String,
}

/// How [`LeagueScale`] is kept in `meta` (the overrides in their JSON form).
#[derive(Serialize, Deserialize)]
struct Stored {
    league: Option<String>,
    overrides: String,
    reference_version: String,
}

impl Store {
    /// The league's thresholds as last fetched from the server, if ever.
    pub fn league_scale(&self) -> Result<Option<LeagueScale>> {
        let stored: Option<Stored> = self.read(|c| meta::get_json(c, KEY))?;
        stored
            .map(|s| {
                let overrides = ScaleOverrides::parse_json(&s.overrides)
                    .map_err(|e| Error::Document(format!("meta {KEY}: overrides: {e}")))?;
                Ok(LeagueScale {
                    league: s.league,
                    overrides,
                    reference_version: s.reference_version,
                })
            })
            .transpose()
    }

    /// The thresholds this device assesses producers with: the national table with the
    /// overrides of its league, or the national table alone when it holds none.
    pub fn scale_thresholds(&self) -> Result<ScaleThresholds> {
        Ok(match self.league_scale()? {
            Some(l) => ScaleThresholds::with_overrides(&l.overrides),
            None => ScaleThresholds::mara(),
        })
    }

    /// Keeps the league's thresholds fetched for `reference_version`.
    pub(crate) fn set_league_scale(&self, scale: &LeagueScale) -> Result<()> {
        let stored = Stored {
            league: scale.league.clone(),
            overrides: scale.overrides.to_json(),
            reference_version: scale.reference_version.clone(),
        };
        self.write(|tx| meta::set_json(tx, KEY, &stored))
    }

    /// Forgets the league's thresholds (at enrolment: the new person's league is fetched
    /// at the first sync; until then the national table applies).
    pub(crate) fn clear_league_scale(&self) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM meta WHERE key = ?1", [KEY])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::{LivestockCount, Producer, ProducerType, Species};
    use crate::scale::{assess, Measure, Threshold};

    #[test]
    fn national_until_set_then_the_leagues_and_kept_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.league_scale().unwrap(), None);
        assert_eq!(s.scale_thresholds().unwrap(), ScaleThresholds::mara());
        let overrides = ScaleOverrides::parse(
            r#"{"beef_cattle": {"measure": "sold_per_year", "head": 30}, "camel": null}"#,
        )
        .unwrap();
        let l = LeagueScale {
            league: Some("L1".into()),
            overrides: overrides.clone(),
            reference_version: "v1".into(),
        };
        s.set_league_scale(&l).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.league_scale().unwrap(), Some(l));
        let t = s.scale_thresholds().unwrap();
        assert_eq!(t, ScaleThresholds::with_overrides(&overrides));
        assert_eq!(
            t.get(Species::BeefCattle),
            Some(Threshold {
                measure: Measure::SoldPerYear,
                head: 30
            })
        );
        let mut p = Producer::new(
            "牧场",
            ProducerType::FamilyRanch,
            "主",
            "13900000000",
            "G",
            "p1",
            0,
        );
        p.scale.livestock.insert(
            Species::BeefCattle,
            LivestockCount {
                on_hand: None,
                sold_per_year: Some(30),
            },
        );
        assert!(assess(&p, &t).is_scale_farm);
        assert!(!assess(&p, &ScaleThresholds::mara()).is_scale_farm);
        s.clear_league_scale().unwrap();
        assert_eq!(s.league_scale().unwrap(), None);
        assert_eq!(s.scale_thresholds().unwrap(), ScaleThresholds::mara());
    }
}
