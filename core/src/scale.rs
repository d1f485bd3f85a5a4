//! Livestock scale thresholds (规模养殖场标准): which producers count as scale farms, and
//! which hold a herd at or above a threshold while their type says they are not a farm.
//!
//! The defaults are the national table of the Ministry of Agriculture and Rural Affairs
//! (MARA, in force 2025-09-01), one threshold per [`Species`], each on one measure of
//! [`LivestockCount`]: head on hand (存栏, [`LivestockCount::on_hand`]) or head sold per
//! year (年出栏, [`LivestockCount::sold_per_year`]):
//!
//! | species | measure | head |
//! |---|---|---|
//! | pigs 生猪 | sold per year | 500 |
//! | beef cattle 肉牛 | sold per year | 50 |
//! | dairy cows 奶牛 | on hand | 100 |
//! | yaks 牦牛 | on hand | 200 |
//! | sheep and goats 羊 | sold per year | 200 |
//! | horses 马, donkeys 驴, camels 骆驼 | on hand | 50 each |
//! | rabbits 兔 | sold per year | 5,000 |
//! | broilers 肉鸡 | sold per year | 10,000 |
//! | layers 蛋鸡 | on hand | 2,000 |
//! | geese 鹅 | sold per year | 5,000 |
//!
//! A league may override any species (another measure or number, or no threshold at all)
//! with a small JSON or CSV file ([`ScaleOverrides`]); a species without a threshold never
//! makes a producer a scale farm. Crop thresholds are not covered (not verified).
//!
//! Which types count as *scale-capable* ([`scale_capable`]): enterprise (企业), farmers'
//! cooperative (农民专业合作社), family farm (家庭农场), family ranch (家庭牧场) and large
//! grower or herder household (种养大户). A herd at or above a threshold under any other
//! type (small household 散户, input dealer 农资经营主体, purchaser 收购者) is a type
//! mismatch: the entry is probably registered under the wrong type.
//!
//! A league's overrides are set on the server (`gridsync-server admin
//! set-scale-thresholds`), whose query tables and desk console count with them; phones
//! fetch their league's at sync (`GET /v1/scale-thresholds`, when the reference version
//! changes) and assess with `Store::scale_thresholds`, so a phone shows the flag the desk
//! counts (the national table until its first sync).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{LivestockCount, Producer, ProducerType, Species};

/// What a threshold counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Head on hand (存栏).
    OnHand,
    /// Head sold per year (年出栏).
    SoldPerYear,
}

impl Measure {
    /// Stable identifier (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::OnHand => "on_hand",
            Measure::SoldPerYear => "sold_per_year",
        }
    }

    /// Chinese name.
    pub fn label_zh(self) -> &'static str {
        match self {
            Measure::OnHand => "存栏",
            Measure::SoldPerYear => "年出栏",
        }
    }

    /// Parses the stable identifier or the Chinese name.
    pub fn parse(s: &str) -> Option<Self> {
        [Measure::OnHand, Measure::SoldPerYear]
            .into_iter()
            .find(|m| m.as_str() == s || m.label_zh() == s)
    }

    /// The count this measure reads (`None` when not recorded).
    pub fn of(self, c: &LivestockCount) -> Option<u32> {
        match self {
            Measure::OnHand => c.on_hand,
            Measure::SoldPerYear => c.sold_per_year,
        }
    }
}

/// One species' threshold: a producer with at least `head` on `measure` is a scale farm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Threshold {
    /// What is counted.
    pub measure: Measure,
    /// The least head that counts (the comparison is ≥).
    pub head: u32,
}

impl Threshold {
    const fn new(measure: Measure, head: u32) -> Self {
        Threshold { measure, head }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}≥{}", self.measure.label_zh(), self.head)
    }
}

/// The MARA table's threshold of a species (`None`: the table does not cover it).
pub fn mara_threshold(species: Species) -> Option<Threshold> {
    use Measure::{OnHand, SoldPerYear};
    Some(match species {
        Species::Pig => Threshold::new(SoldPerYear, 500),
        Species::BeefCattle => Threshold::new(SoldPerYear, 50),
        Species::DairyCow => Threshold::new(OnHand, 100),
        Species::Yak => Threshold::new(OnHand, 200),
        Species::SheepGoat => Threshold::new(SoldPerYear, 200),
        Species::Horse | Species::Donkey | Species::Camel => Threshold::new(OnHand, 50),
        Species::Rabbit => Threshold::new(SoldPerYear, 5_000),
        Species::Broiler => Threshold::new(SoldPerYear, 10_000),
        Species::Layer => Threshold::new(OnHand, 2_000),
        Species::Goose => Threshold::new(SoldPerYear, 5_000),
    })
}

/// Whether a type may hold a scale herd (see the module's documentation).
pub fn scale_capable(t: ProducerType) -> bool {
    match t {
        ProducerType::Enterprise
        | ProducerType::Cooperative
        | ProducerType::FamilyFarm
        | ProducerType::FamilyRanch
        | ProducerType::LargeHousehold => true,
        ProducerType::SmallHousehold | ProducerType::InputDealer | ProducerType::Purchaser => false,
    }
}

/// A league's changes to the national table: per species another threshold, or `None`
/// for no threshold. Species not named keep the national one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleOverrides(pub BTreeMap<Species, Option<Threshold>>);

/// Why a thresholds file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleParseError {
    /// Line of a CSV file (1 = the first), if the problem is on one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScaleParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ScaleParseError {}

fn refuse(line: Option<usize>, message: impl Into<String>) -> ScaleParseError {
    ScaleParseError {
        line,
        message: message.into(),
    }
}

fn parse_species(s: &str) -> Option<Species> {
    Species::parse(s).or_else(|| Species::ALL.into_iter().find(|sp| sp.label_zh() == s))
}

/// The JSON form of one override: `{"measure": "sold_per_year", "head": 300}` or `null`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonThreshold {
    measure: String,
    head: u32,
}

impl ScaleOverrides {
    /// Parses a thresholds file: JSON when it starts with `{`, CSV otherwise.
    ///
    /// JSON: an object keyed by species (`pig`, or its Chinese name 生猪), each value
    /// `{"measure": "on_hand" | "sold_per_year", "head": N}` or `null` (no threshold).
    ///
    /// CSV: an optional header `species,measure,head`, then one species a line; an empty
    /// head (or `none`, `无`) means no threshold. Measures may be written 存栏 / 年出栏.
    /// A species named twice is refused.
    pub fn parse(text: &str) -> Result<Self, ScaleParseError> {
        let text = text.trim_start_matches('\u{feff}');
        if text.trim_start().starts_with('{') {
            Self::parse_json(text)
        } else {
            Self::parse_csv(text)
        }
    }

    /// Parses the JSON form (see [`ScaleOverrides::parse`]).
    pub fn parse_json(text: &str) -> Result<Self, ScaleParseError> {
        let raw: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| refuse(None, format!("JSON: {e}")))?;
        let mut out = BTreeMap::new();
        for (key, value) in raw {
            let species = parse_species(key.trim())
                .ok_or_else(|| refuse(None, format!("unknown species {key:?}")))?;
            let t = if value.is_null() {
                None
            } else {
                let j: JsonThreshold = serde_json::from_value(value)
                    .map_err(|e| refuse(None, format!("{key}: {e}")))?;
                let measure = Measure::parse(j.measure.trim()).ok_or_else(|| {
                    refuse(
                        None,
                        format!(
                            "{key}: unknown measure {:?} (on_hand or sold_per_year)",
                            j.measure
                        ),
                    )
                })?;
                Some(check_head(None, &key, Threshold::new(measure, j.head))?)
            };
            if out.insert(species, t).is_some() {
                return Err(refuse(None, format!("{key}: species named twice")));
            }
        }
        Ok(ScaleOverrides(out))
    }

    /// Parses the CSV form (see [`ScaleOverrides::parse`]).
    pub fn parse_csv(text: &str) -> Result<Self, ScaleParseError> {
        let mut out = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = Some(i + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if i == 0
                && cells
                    .first()
                    .is_some_and(|c| *c == "species" || *c == "畜种")
            {
                continue;
            }
            if cells.len() > 3 {
                return Err(refuse(n, "expected species,measure,head"));
            }
            let cell = |k: usize| cells.get(k).copied().unwrap_or("");
            let species = parse_species(cell(0))
                .ok_or_else(|| refuse(n, format!("unknown species {:?}", cell(0))))?;
            let head = cell(2);
            let t = if head.is_empty() || head == "none" || head == "无" {
                None
            } else {
                let measure = Measure::parse(cell(1)).ok_or_else(|| {
                    refuse(
                        n,
                        format!("unknown measure {:?} (on_hand or sold_per_year)", cell(1)),
                    )
                })?;
                let head: u32 = head
                    .parse()
                    .map_err(|_| refuse(n, format!("head {head:?} is not a whole number")))?;
                Some(check_head(n, cell(0), Threshold::new(measure, head))?)
            };
            if out.insert(species, t).is_some() {
                return Err(refuse(n, format!("{}: species named twice", cell(0))));
            }
        }
        Ok(ScaleOverrides(out))
    }

    /// The JSON form, keys in species order (how the server stores it).
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        for (s, t) in &self.0 {
            let v = match t {
                Some(t) => serde_json::json!({ "measure": t.measure.as_str(), "head": t.head }),
                None => serde_json::Value::Null,
            };
            m.insert(s.as_str().to_string(), v);
        }
        serde_json::Value::Object(m).to_string()
    }
}

fn check_head(
    line: Option<usize>,
    species: &str,
    t: Threshold,
) -> Result<Threshold, ScaleParseError> {
    if t.head == 0 {
        return Err(refuse(
            line,
            format!("{species}: a threshold of 0 head makes every producer a scale farm; leave it empty for no threshold"),
        ));
    }
    Ok(t)
}

/// The thresholds in force: the national table with a league's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleThresholds {
    by_species: BTreeMap<Species, Threshold>,
}

impl Default for ScaleThresholds {
    fn default() -> Self {
        Self::mara()
    }
}

impl ScaleThresholds {
    /// The national MARA table.
    pub fn mara() -> Self {
        ScaleThresholds {
            by_species: Species::ALL
                .into_iter()
                .filter_map(|s| mara_threshold(s).map(|t| (s, t)))
                .collect(),
        }
    }

    /// The national table with `overrides` applied.
    pub fn with_overrides(overrides: &ScaleOverrides) -> Self {
        let mut t = Self::mara();
        for (s, o) in &overrides.0 {
            match o {
                Some(o) => t.by_species.insert(*s, *o),
                None => t.by_species.remove(s),
            };
        }
        t
    }

    /// The threshold of a species, if it has one.
    pub fn get(&self, species: Species) -> Option<Threshold> {
        self.by_species.get(&species).copied()
    }

    /// Every species with a threshold, in species order.
    pub fn iter(&self) -> impl Iterator<Item = (Species, Threshold)> + '_ {
        self.by_species.iter().map(|(s, t)| (*s, *t))
    }
}

/// A species whose herd reaches its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeciesOver {
    /// The species.
    pub species: Species,
    /// Its threshold.
    pub threshold: Threshold,
    /// The producer's count on the threshold's measure.
    pub head: u32,
}

/// What [`assess`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleAssessment {
    /// At least one species reaches its threshold.
    pub is_scale_farm: bool,
    /// The species that do, in species order.
    pub species_over: Vec<SpeciesOver>,
    /// A scale herd under a type that is not [`scale_capable`].
    pub type_mismatch: bool,
}

/// Assesses a producer's herd against `thresholds`: a species counts when its count on
/// the threshold's measure is at least the threshold (≥). Counts not recorded never
/// count. The status (active or closed) is not looked at.
pub fn assess(producer: &Producer, thresholds: &ScaleThresholds) -> ScaleAssessment {
    let species_over: Vec<SpeciesOver> = producer
        .scale
        .livestock
        .iter()
        .filter_map(|(species, count)| {
            let threshold = thresholds.get(*species)?;
            let head = threshold.measure.of(count)?;
            (head >= threshold.head).then_some(SpeciesOver {
                species: *species,
                threshold,
                head,
            })
        })
        .collect();
    let is_scale_farm = !species_over.is_empty();
    ScaleAssessment {
        is_scale_farm,
        type_mismatch: is_scale_farm && !scale_capable(producer.producer_type),
        species_over,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn producer(t: ProducerType, herd: &[(Species, LivestockCount)]) -> Producer {
        let mut p = Producer::new("测试", t, "主", "13900000000", "G", "p1", 0);
        p.scale.livestock = herd.iter().copied().collect();
        p
    }

    fn on_hand(n: u32) -> LivestockCount {
        LivestockCount {
            on_hand: Some(n),
            sold_per_year: None,
        }
    }

    fn sold(n: u32) -> LivestockCount {
        LivestockCount {
            on_hand: None,
            sold_per_year: Some(n),
        }
    }

    fn count(m: Measure, n: u32) -> LivestockCount {
        match m {
            Measure::OnHand => on_hand(n),
            Measure::SoldPerYear => sold(n),
        }
    }

    #[test]
    fn every_species_at_its_threshold_counts_and_one_below_does_not() {
        let mara = ScaleThresholds::mara();
        for species in Species::ALL {
            let t = mara_threshold(species).unwrap();
            assert_eq!(mara.get(species), Some(t));
            let at = assess(
                &producer(
                    ProducerType::FamilyRanch,
                    &[(species, count(t.measure, t.head))],
                ),
                &mara,
            );
            assert!(at.is_scale_farm, "{species:?} at {}", t.head);
            assert_eq!(
                at.species_over,
                vec![SpeciesOver {
                    species,
                    threshold: t,
                    head: t.head
                }]
            );
            assert!(!at.type_mismatch);
            let below = assess(
                &producer(
                    ProducerType::FamilyRanch,
                    &[(species, count(t.measure, t.head - 1))],
                ),
                &mara,
            );
            assert_eq!(below, ScaleAssessment::default(), "{species:?} below");
        }
    }

    #[test]
    fn boundaries_of_both_measure_kinds() {
        let mara = ScaleThresholds::mara();
        let farm = |herd: &[(Species, LivestockCount)]| {
            assess(&producer(ProducerType::Enterprise, herd), &mara)
        };
        // Sold per year: pigs 500.
        assert!(farm(&[(Species::Pig, sold(500))]).is_scale_farm);
        assert!(!farm(&[(Species::Pig, sold(499))]).is_scale_farm);
        // On hand: dairy cows 100.
        assert!(farm(&[(Species::DairyCow, on_hand(100))]).is_scale_farm);
        assert!(!farm(&[(Species::DairyCow, on_hand(99))]).is_scale_farm);
        // The other measure never counts: 10,000 pigs on hand, none sold.
        assert!(!farm(&[(Species::Pig, on_hand(10_000))]).is_scale_farm);
        assert!(!farm(&[(Species::DairyCow, sold(10_000))]).is_scale_farm);
        // Nothing recorded.
        assert!(!farm(&[(Species::Yak, LivestockCount::default())]).is_scale_farm);
        // Several species: only those at their thresholds are named.
        let a = farm(&[
            (Species::Horse, on_hand(50)),
            (Species::Camel, on_hand(49)),
            (Species::SheepGoat, sold(200)),
        ]);
        let named: Vec<Species> = a.species_over.iter().map(|o| o.species).collect();
        assert_eq!(named, vec![Species::SheepGoat, Species::Horse]);
    }

    #[test]
    fn a_scale_herd_under_a_household_type_is_a_mismatch() {
        let mara = ScaleThresholds::mara();
        let herd = [(Species::SheepGoat, sold(200))];
        for t in ProducerType::ALL {
            let a = assess(&producer(t, &herd), &mara);
            assert!(a.is_scale_farm);
            assert_eq!(a.type_mismatch, !scale_capable(t), "{t:?}");
        }
        assert!(!scale_capable(ProducerType::SmallHousehold));
        assert!(scale_capable(ProducerType::LargeHousehold));
        // Below the threshold a small household is fine.
        let a = assess(
            &producer(
                ProducerType::SmallHousehold,
                &[(Species::SheepGoat, sold(199))],
            ),
            &mara,
        );
        assert!(!a.type_mismatch && !a.is_scale_farm);
    }

    #[test]
    fn overrides_change_remove_and_round_trip() {
        let o = ScaleOverrides::parse(
            r#"{"sheep_goat": {"measure": "on_hand", "head": 300}, "骆驼": null}"#,
        )
        .unwrap();
        let t = ScaleThresholds::with_overrides(&o);
        assert_eq!(
            t.get(Species::SheepGoat),
            Some(Threshold::new(Measure::OnHand, 300))
        );
        assert_eq!(t.get(Species::Camel), None);
        assert_eq!(t.get(Species::Pig), mara_threshold(Species::Pig));
        let p = producer(
            ProducerType::FamilyRanch,
            &[(Species::SheepGoat, on_hand(300))],
        );
        assert!(assess(&p, &t).is_scale_farm);
        assert!(!assess(&p, &ScaleThresholds::mara()).is_scale_farm);
        let camels = producer(
            ProducerType::SmallHousehold,
            &[(Species::Camel, on_hand(80))],
        );
        assert_eq!(assess(&camels, &t), ScaleAssessment::default());
        assert_eq!(ScaleOverrides::parse(&o.to_json()).unwrap(), o);

        let csv = "\u{feff}species,measure,head\nsheep_goat,on_hand,300\n骆驼,,\n";
        assert_eq!(ScaleOverrides::parse(csv).unwrap(), o);
        let zh = "羊,存栏,300\ncamel,,none\n";
        assert_eq!(ScaleOverrides::parse(zh).unwrap(), o);
    }

    #[test]
    fn bad_files_are_refused() {
        for (text, line) in [
            ("pig,sold_per_year,abc", Some(1)),
            ("species,measure,head\nunicorn,on_hand,5", Some(2)),
            ("pig,weight,5", Some(1)),
            ("pig,on_hand,0", Some(1)),
            ("pig,on_hand,5\npig,on_hand,6", Some(2)),
            ("pig,on_hand,5,extra", Some(1)),
            (r#"{"pig": {"measure": "on_hand"}}"#, None),
            (r#"{"pig": {"measure": "on_hand", "head": -1}}"#, None),
            (r#"{"unicorn": null}"#, None),
            ("{", None),
        ] {
            let e = ScaleOverrides::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
        }
    }
}
