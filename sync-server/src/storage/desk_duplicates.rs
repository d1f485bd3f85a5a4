//! What the desk reads of possible duplicates (疑似重复) beyond the server's own check
//! ([`super::duplicates`]): the entries merged into a surviving one (tombstones whose
//! `q_producers.merged_into` names it), for its page.

use super::query::{producer_row, ProducerRow, PRODUCER_COLS};
use super::sql::{params, Tx};
use super::StorageResult;

/// Most tombstones one surviving entry's page lists.
pub const MAX_MERGED: u32 = 200;

/// The producers merged into `into` (tombstones pointing to it), by name. Read by the
/// partial index `q_producers_merged_into`.
pub(crate) fn merged_entries(tx: &mut dyn Tx, into: &str) -> StorageResult<Vec<ProducerRow>> {
    tx.rows(
        "q_producers",
        &format!(
            "SELECT {PRODUCER_COLS} FROM q_producers
             WHERE merged_into = $1 ORDER BY name, id LIMIT $2"
        ),
        params![into, i64::from(MAX_MERGED)],
        producer_row,
    )
}
