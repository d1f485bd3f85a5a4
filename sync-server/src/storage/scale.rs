//! Livestock scale thresholds per league (规模养殖场标准, issue 16): the league's overrides
//! of the national table ([`gridsync_core::scale`]), the assessment every producer's
//! query row carries (`q_producers.scale_farm`, `scale_mismatch`), and the counts per grid
//! the desk side shows. Phones fetch their league's overrides (`GET /v1/scale-thresholds`)
//! when the reference version changes, which setting overrides makes it do (the
//! reference generation moves).
//!
//! [`thresholds_of`] is read by [`super::query::materialize`] once per batch of records
//! (one read of the small `scale_thresholds` table; the grid tree is walked only when a
//! league has overrides). Setting a league's overrides recomputes the rows of the league's
//! producers at once, in batches locked as the rebuild locks them.

use std::collections::BTreeMap;

use gridsync_core::scale::{ScaleOverrides, ScaleThresholds};

use super::layer::{Backend, SqlStorage};
use super::query::{self, RebuildReport, REBUILD_BATCH};
use super::sql::{params, Insert, Row, Tx, Ty, Value};
use super::{DumpChunk, DumpSink, StorageError, StorageResult, DUMP_CHUNK_ROWS};

/// A league's overrides as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeagueScale {
    /// The league's grid code.
    pub league: String,
    /// Its changes to the national table.
    pub overrides: ScaleOverrides,
    /// When they were last set.
    pub updated_at_ms: i64,
}

/// Active producers of one grid and how many of them are scale farms or mismatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScaleCount {
    /// Active producers with a query row.
    pub producers: i64,
    /// Of them, scale farms (a herd at or above a threshold of their league).
    pub scale_farms: i64,
    /// Of them, scale herds under a type that is not a farm.
    pub mismatches: i64,
}

/// Scale threshold storage; every [`super::Storage`] has it.
pub trait ScaleStorage {
    /// The overrides of a league, if any were set.
    fn scale_overrides(&self, league: &str) -> StorageResult<Option<LeagueScale>>;
    /// Sets a league's overrides (empty overrides: the national table) and recomputes the
    /// query rows of the producers in the league's subtree; returns what that rebuild did.
    /// The caller checks that `league` is a league-level grid.
    fn set_scale_overrides(
        &self,
        league: &str,
        overrides: &ScaleOverrides,
        now_ms: i64,
    ) -> StorageResult<RebuildReport>;
    /// Per grid of `grids` that has active producers: the counts, by grid code (grids
    /// without active producers are left out).
    fn scale_counts(&self, grids: &[String]) -> StorageResult<BTreeMap<String, ScaleCount>>;
}

#[rustfmt::skip]
const INS_SCALE_THRESHOLDS: Insert = Insert { table: "scale_thresholds", columns: &[("league", Ty::Text), ("overrides", Ty::Text), ("updated_at_ms", Ty::Int)], on_conflict: " ON CONFLICT (league) DO UPDATE SET overrides = excluded.overrides, updated_at_ms = excluded.updated_at_ms" };

fn parse_stored(league: &str, json: &str) -> StorageResult<ScaleOverrides> {
    ScaleOverrides::parse_json(json).map_err(|e| {
        StorageError::BadRow(format!("scale_thresholds, league {league}, overrides: {e}"))
    })
}

fn league_row(r: Row) -> StorageResult<LeagueScale> {
    let league: String = r.get(0)?;
    let json: String = r.get(1)?;
    Ok(LeagueScale {
        overrides: parse_stored(&league, &json)?,
        league,
        updated_at_ms: r.get(2)?,
    })
}

/// A row of `scale_thresholds` as stored (export and import copy it unparsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScale {
    /// The league's grid code.
    pub league: String,
    /// Its overrides, as [`ScaleOverrides::to_json`] wrote them.
    pub overrides: String,
    /// When they were last set.
    pub updated_at_ms: i64,
}

/// Exports the table (a row per league: read whole, sent in chunks of [`DUMP_CHUNK_ROWS`]).
pub(super) fn export(tx: &mut dyn Tx, sink: &mut DumpSink<'_>) -> StorageResult<()> {
    let rows = tx.rows(
        "scale_thresholds",
        "SELECT league, overrides, updated_at_ms FROM scale_thresholds ORDER BY league",
        &[],
        |r| {
            Ok(StoredScale {
                league: r.get(0)?,
                overrides: r.get(1)?,
                updated_at_ms: r.get(2)?,
            })
        },
    )?;
    for c in rows.chunks(DUMP_CHUNK_ROWS) {
        sink(DumpChunk::ScaleThresholds(c.to_vec()))?;
    }
    Ok(())
}

/// The insert and rows of an imported chunk.
pub(super) fn import(rows: &[StoredScale]) -> (&'static Insert, Vec<Vec<Value<'_>>>) {
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                Value::Text(&r.league),
                Value::Text(&r.overrides),
                Value::Int(r.updated_at_ms),
            ]
        })
        .collect();
    (&INS_SCALE_THRESHOLDS, rows)
}

/// The thresholds in force for each of `grids` whose league has overrides (the others use
/// [`ScaleThresholds::mara`]), by grid code.
pub(super) fn thresholds_of(
    tx: &mut dyn Tx,
    grids: &[&str],
) -> StorageResult<BTreeMap<String, ScaleThresholds>> {
    let leagues: Vec<LeagueScale> = tx.rows(
        "scale_thresholds",
        "SELECT league, overrides, updated_at_ms FROM scale_thresholds",
        &[],
        league_row,
    )?;
    if leagues.is_empty() || grids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let by_league: BTreeMap<String, ScaleThresholds> = leagues
        .iter()
        .map(|l| {
            (
                l.league.clone(),
                ScaleThresholds::with_overrides(&l.overrides),
            )
        })
        .collect();
    // Each grid with its ancestors (UNION: a damaged tree with a cycle still ends).
    let pairs: Vec<(String, String)> = tx.rows(
        "grids",
        "WITH RECURSIVE up(start, code, parent, level) AS (
            SELECT code, code, parent, level FROM grids WHERE code IN LIST($1)
            UNION SELECT up.start, g.code, g.parent, g.level FROM grids g JOIN up ON g.code = up.parent)
         SELECT start, code FROM up WHERE level = 'league'",
        params![grids],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(pairs
        .into_iter()
        .filter_map(|(grid, league)| by_league.get(&league).map(|t| (grid, t.clone())))
        .collect())
}

impl<B: Backend> ScaleStorage for SqlStorage<B> {
    fn scale_overrides(&self, league: &str) -> StorageResult<Option<LeagueScale>> {
        self.backend().single(false, |tx| {
            tx.row(
                "scale_thresholds",
                "SELECT league, overrides, updated_at_ms FROM scale_thresholds WHERE league = $1",
                params![league],
                league_row,
            )
        })
    }

    fn set_scale_overrides(
        &self,
        league: &str,
        overrides: &ScaleOverrides,
        now_ms: i64,
    ) -> StorageResult<RebuildReport> {
        let json = overrides.to_json();
        self.backend().write(|tx| {
            // The league's people get new reference data (its version covers the
            // overrides) and their phones fetch the overrides.
            super::layer::bump_generation(tx)?;
            if overrides.0.is_empty() {
                tx.execute(
                    "DELETE FROM scale_thresholds WHERE league = $1",
                    params![league],
                )?;
                Ok(())
            } else {
                tx.insert_rows(
                    &INS_SCALE_THRESHOLDS,
                    &[vec![
                        Value::Text(league),
                        Value::Text(&json),
                        Value::Int(now_ms),
                    ]],
                )
            }
        })?;
        // The league's producers, a batch at a time, rebuilt from their documents as the
        // rebuild does (locked against concurrent pushes).
        let grids: Vec<String> = self.backend().read(|tx| query::subtree(tx, &[league]))?;
        let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
        let mut report = RebuildReport::default();
        if grids.is_empty() {
            return Ok(report);
        }
        let mut after = String::new();
        loop {
            let mut batch = report.clone();
            let last = super::layer::retry_conflicts(|| {
                batch = report.clone();
                self.backend().write(|tx| {
                    let ids: Vec<(String, gridsync_core::model::RecordKind)> = tx.rows(
                        "records",
                        "SELECT id, kind FROM records
                         WHERE kind = 'producer' AND grid IN LIST($1) AND id > $2
                         ORDER BY id LIMIT $3",
                        &[
                            Value::TextList(&grids),
                            Value::Text(&after),
                            Value::Int(REBUILD_BATCH as i64),
                        ],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    let locked: Vec<&str> = ids.iter().map(|i| i.0.as_str()).collect();
                    self.backend().lock_records(tx, &locked)?;
                    query::rebuild_batch(tx, &ids, &mut batch)?;
                    Ok(ids.last().map(|i| i.0.clone()))
                })
            })?;
            report = batch;
            match last {
                Some(id) => after = id,
                None => break,
            }
        }
        Ok(report)
    }

    fn scale_counts(&self, grids: &[String]) -> StorageResult<BTreeMap<String, ScaleCount>> {
        if grids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
        let rows: Vec<(String, ScaleCount)> = self.backend().read(|tx| {
            tx.rows(
                "q_producers",
                "SELECT grid, COUNT(*),
                    SUM(CASE WHEN scale_farm THEN 1 ELSE 0 END),
                    SUM(CASE WHEN scale_mismatch THEN 1 ELSE 0 END)
                 FROM q_producers
                 WHERE status = 'active' AND grid IN LIST($1) AND merged_into IS NULL
                 GROUP BY grid",
                params![grids.as_slice()],
                |r| {
                    Ok((
                        r.get(0)?,
                        ScaleCount {
                            producers: r.get(1)?,
                            scale_farms: r.get(2)?,
                            mismatches: r.get(3)?,
                        },
                    ))
                },
            )
        })?;
        Ok(rows.into_iter().collect())
    }
}
