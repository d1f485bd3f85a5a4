//! Checks a form before it is saved: likely duplicates in the local copy (the same credit
//! code, ID number or phone anywhere on the device, a similar name in the same or a
//! neighbouring grid) and the livestock scale assessment (规模养殖) by the thresholds of
//! the device's league (fetched at sync) or the national ones. Local reads, blocking like
//! the other store calls (milliseconds).

use gridsync_core::dedupe::MatchReason;
use gridsync_core::model::Species;
use gridsync_core::scale::{self, ScaleThresholds};
use gridsync_core::store::LikelyDuplicate;

use crate::error::{guard, ApiError};
use crate::store::GridStore;
use crate::types::{NewProducer, Producer};

/// Why an entry looks like the same producer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DuplicateReason {
    /// Stable identifier: `credit_code`, `id_number`, `phone`, `same_name`,
    /// `name_one_edit`, `name_contains`.
    pub id: String,
    /// What field staff read (e.g. 统一社会信用代码相同).
    pub label_zh: String,
}

impl From<MatchReason> for DuplicateReason {
    fn from(r: MatchReason) -> Self {
        DuplicateReason {
            id: r.as_str().into(),
            label_zh: r.label_zh().into(),
        }
    }
}

/// A producer on the device that is likely the same as the entry being registered or
/// edited (`GridStore.likely_duplicates`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DuplicateMatch {
    /// Id of the entry on the device.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its grid code.
    pub grid: String,
    /// Its grid's name (empty when the device does not know the grid).
    pub grid_name: String,
    /// Every reason that holds, strongest kind first.
    pub reasons: Vec<DuplicateReason>,
    /// Likelihood out of 100 (several reasons add up).
    pub score: u8,
}

impl From<LikelyDuplicate> for DuplicateMatch {
    fn from(d: LikelyDuplicate) -> Self {
        DuplicateMatch {
            id: d.id,
            name: d.name,
            grid: d.grid,
            grid_name: d.grid_name,
            reasons: d.reasons.into_iter().map(Into::into).collect(),
            score: d.score,
        }
    }
}

/// A species whose herd reaches its scale threshold.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SpeciesOverThreshold {
    /// The species.
    pub species: Species,
    /// What the threshold counts: `on_hand` (存栏) or `sold_per_year` (年出栏).
    pub measure: String,
    /// The measure in Chinese.
    pub measure_zh: String,
    /// The least head that counts.
    pub threshold: u32,
    /// The producer's head on that measure.
    pub head: u32,
}

/// A producer's livestock assessed against the national scale thresholds (全国规模养殖场
/// 标准; a league's own thresholds apply on the server only).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ScaleAssessment {
    /// At least one species reaches its threshold (规模养殖场).
    pub is_scale_farm: bool,
    /// A scale herd under a type that is not a farm (small household, input dealer,
    /// purchaser): the type is probably wrong.
    pub type_mismatch: bool,
    /// The species that reach their thresholds, in species order.
    pub species_over: Vec<SpeciesOverThreshold>,
    /// One line for field staff, e.g. 规模养殖场（羊 260 年出栏≥200）.
    pub summary_zh: String,
}

/// The scale assessment of a producer by `thresholds`.
fn assess(p: &gridsync_core::model::Producer, thresholds: &ScaleThresholds) -> ScaleAssessment {
    let a = scale::assess(p, thresholds);
    let species_over: Vec<SpeciesOverThreshold> = a
        .species_over
        .iter()
        .map(|o| SpeciesOverThreshold {
            species: o.species,
            measure: o.threshold.measure.as_str().into(),
            measure_zh: o.threshold.measure.label_zh().into(),
            threshold: o.threshold.head,
            head: o.head,
        })
        .collect();
    let summary_zh = if a.is_scale_farm {
        let over: Vec<String> = a
            .species_over
            .iter()
            .map(|o| {
                format!(
                    "{} {} {}≥{}",
                    o.species.label_zh(),
                    o.head,
                    o.threshold.measure.label_zh(),
                    o.threshold.head
                )
            })
            .collect();
        let mismatch = if a.type_mismatch {
            "；主体类型不符，请核实"
        } else {
            ""
        };
        format!("规模养殖场（{}）{mismatch}", over.join("、"))
    } else {
        "未达规模养殖标准".to_string()
    };
    ScaleAssessment {
        is_scale_farm: a.is_scale_farm,
        type_mismatch: a.type_mismatch,
        species_over,
        summary_zh,
    }
}

#[uniffi::export]
impl GridStore {
    /// Producers on the device likely the same as an edited entry, before it is saved
    /// (`producer` as read from the store, with the person's changes): the same credit
    /// code, ID number or phone anywhere on the device, or a similar name in its grid or a
    /// neighbouring one; best first, at most 50. The entry itself is never listed; entries
    /// merged into another are not either. Nothing is written.
    pub fn likely_duplicates(&self, producer: Producer) -> Result<Vec<DuplicateMatch>, ApiError> {
        guard(|| {
            let p: gridsync_core::model::Producer = producer.into();
            Ok(self
                .store
                .likely_duplicates(&p)?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// [`GridStore::likely_duplicates`] of a producer about to be registered (the fields
    /// `create_producer` would take), to show before saving it.
    pub fn likely_duplicates_of_new(
        &self,
        producer: NewProducer,
    ) -> Result<Vec<DuplicateMatch>, ApiError> {
        guard(|| {
            let p = producer.into_core("", gridsync_core::now_ms());
            Ok(self
                .store
                .likely_duplicates(&p)?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// The livestock scale assessment of a stored producer, by the thresholds of the
    /// device's league (fetched at sync: the national table with the league's changes;
    /// the national table alone before the first sync or without a league).
    pub fn scale_assessment(&self, producer_id: String) -> Result<ScaleAssessment, ApiError> {
        guard(|| {
            let p = self.store.producer(&producer_id)?;
            Ok(assess(&p, &self.store.scale_thresholds()?))
        })
    }

    /// The livestock scale assessment of a producer's fields (e.g. of a form before it is
    /// saved) by the thresholds of the device's league, as [`GridStore::scale_assessment`].
    pub fn scale_assessment_of(&self, producer: Producer) -> Result<ScaleAssessment, ApiError> {
        guard(|| Ok(assess(&producer.into(), &self.store.scale_thresholds()?)))
    }

    /// The league whose scale thresholds the device holds and the species it changed from
    /// the national table (`None`: the national table applies).
    pub fn scale_thresholds_league(&self) -> Result<Option<LeagueThresholds>, ApiError> {
        guard(|| {
            Ok(self.store.league_scale()?.and_then(|l| {
                let league = l.league?;
                let t = ScaleThresholds::with_overrides(&l.overrides);
                Some(LeagueThresholds {
                    league,
                    changed: l
                        .overrides
                        .0
                        .keys()
                        .map(|s| SpeciesThreshold {
                            species: *s,
                            measure: t.get(*s).map(|t| t.measure.as_str().to_string()),
                            threshold: t.get(*s).map(|t| t.head),
                        })
                        .collect(),
                })
            }))
        })
    }
}

/// A league's changes to the national scale thresholds, as the device holds them.
#[derive(Debug, Clone, uniffi::Record)]
pub struct LeagueThresholds {
    /// The league's grid code.
    pub league: String,
    /// The species whose threshold the league changed, in species order.
    pub changed: Vec<SpeciesThreshold>,
}

/// One species' threshold in force.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SpeciesThreshold {
    /// The species.
    pub species: Species,
    /// `on_hand` or `sold_per_year`; `None`: the league set no threshold for it.
    pub measure: Option<String>,
    /// The least head that counts; `None` as `measure`.
    pub threshold: Option<u32>,
}

/// The livestock scale assessment of a producer's fields by the national thresholds
/// (without a store; [`GridStore::scale_assessment_of`] uses the device's league's).
#[uniffi::export]
pub fn assess_scale(producer: Producer) -> Result<ScaleAssessment, ApiError> {
    guard(|| Ok(assess(&producer.into(), &ScaleThresholds::mara())))
}
