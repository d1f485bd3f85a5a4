//! Yearly confirmation (年度确认) in the query tables: `q_producers.confirmed_year`, the
//! latest year a producer was confirmed for (0 when never; a confirmation of a later year
//! counts for the years before it). Written by [`super::query::materialize`] in the
//! transaction of every accepted push (and of imports and rebuilds); read as the count of
//! active producers not confirmed for a year, per grid, for the dashboard.

use gridsync_core::model::Producer;

use super::sql::{params, Row, Tx};
use super::StorageResult;

/// Writes `confirmed_year` of producers just written to `q_producers`. A producer without
/// confirmations keeps the column's default (0): confirmations are never removed (core's
/// rules refuse it), so a row that had a year is only ever raised.
pub(crate) fn write(tx: &mut dyn Tx, producers: &[&Producer]) -> StorageResult<()> {
    for p in producers {
        if let Some(year) = p.confirmed_year() {
            tx.execute(
                "UPDATE q_producers SET confirmed_year = $2 WHERE id = $1",
                params![p.id.as_str(), i64::from(year)],
            )?;
        }
    }
    Ok(())
}

/// Active producers of each of `grids` not confirmed for `year` (grids with none are left
/// out), by grid code. Read by the index `q_producers_confirmed`.
pub(crate) fn unconfirmed_counts(
    tx: &mut dyn Tx,
    grids: &[&str],
    year: i32,
) -> StorageResult<Vec<(String, i64)>> {
    tx.rows(
        "q_producers",
        "SELECT grid, COUNT(*) FROM q_producers
         WHERE grid IN LIST($1) AND status = 'active' AND confirmed_year < $2
           AND merged_into IS NULL
         GROUP BY grid ORDER BY grid",
        params![grids, i64::from(year)],
        |r: Row| Ok((r.get(0)?, r.get(1)?)),
    )
}
