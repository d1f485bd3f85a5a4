//! Possible duplicates among producers (疑似重复) in the query tables: the keys the
//! server's check after a push looks up (`q_producers.phone_norm`, `name_core`; the credit
//! code and ID number are columns already), the entry a tombstone was merged into, and the
//! count of open marks (the desk's list). Written by [`super::query::materialize`] with
//! the rest of the producer's row; read by [`crate::duplicates`], which scores the
//! candidates with `gridsync_core::dedupe`.

use gridsync_core::dedupe::{name_core, normalize_code, normalize_phone};
use gridsync_core::model::Producer;

use super::sql::{params, Row, Tx, Value};
use super::StorageResult;

/// Most rows one lookup reads (candidates by one key or by similar names; distinct name
/// cores of a neighbourhood): a village and its siblings hold a few thousand at most.
pub const MAX_CANDIDATES: u32 = 20_000;

/// The derived columns of one producer's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    phone_norm: Option<String>,
    name_core: String,
    open: i64,
}

impl Keys {
    /// The keys of `p`.
    pub fn of(p: &Producer) -> Keys {
        Keys {
            phone_norm: normalize_phone(&p.phone),
            name_core: name_core(&p.name),
            open: i64::try_from(p.open_duplicates().count()).unwrap_or(i64::MAX),
        }
    }

    /// The row values, in the order of the columns `phone_norm, name_core, merged_into,
    /// open_duplicates`.
    pub(crate) fn values<'a>(&'a self, p: &'a Producer) -> [Value<'a>; 4] {
        [
            Value::from(self.phone_norm.as_deref()),
            Value::Text(&self.name_core),
            Value::from(p.merged_into.as_ref().map(|m| m.into.as_str())),
            Value::Int(self.open),
        ]
    }
}

/// What to look up for one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidateQuery {
    /// The entry itself (left out of the answer).
    pub id: String,
    /// Its credit code as stored (compared normalised).
    pub credit_code: Option<String>,
    /// Its ID number as stored.
    pub id_number: Option<String>,
    /// Its phone as entered.
    pub phone: String,
    /// Its own grid and the neighbouring ones, where a similar name counts.
    pub grids: Vec<String>,
    /// The producers of `grids` whose name cores are similar to the entry's (found by the
    /// caller among [`super::Storage::name_cores`]).
    pub similar: Vec<String>,
}

/// A stored producer that may be a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Grid.
    pub grid: String,
    /// Credit code.
    pub credit_code: Option<String>,
    /// ID number.
    pub id_number: Option<String>,
    /// Phone as entered.
    pub phone: String,
    /// Normalised phone as stored.
    pub phone_norm: Option<String>,
    /// Name core as stored (`dedupe::name_core`, computed when the row was written).
    pub name_core: String,
}

fn candidate(r: Row) -> StorageResult<Candidate> {
    Ok(Candidate {
        id: r.get(0)?,
        name: r.get(1)?,
        grid: r.get(2)?,
        credit_code: r.get(3)?,
        id_number: r.get(4)?,
        phone: r.get(5)?,
        phone_norm: r.get(6)?,
        name_core: r.get(7)?,
    })
}

/// The candidates of `q` (see [`super::Storage::duplicate_candidates`]). Codes are stored
/// as validated (upper case, no spaces), so the normalised form finds them; the phone is
/// looked up by its normalised column.
pub(crate) fn candidates(tx: &mut dyn Tx, q: &CandidateQuery) -> StorageResult<Vec<Candidate>> {
    const COLS: &str = "id, name, grid, credit_code, id_number, phone, phone_norm, name_core";
    let mut out: Vec<Candidate> = Vec::new();
    let credit = q.credit_code.as_deref().and_then(normalize_code);
    let idn = q.id_number.as_deref().and_then(normalize_code);
    let phone = normalize_phone(&q.phone);
    let limit = i64::from(MAX_CANDIDATES);
    let keyed: [(&str, Option<&str>); 3] = [
        ("credit_code", credit.as_deref()),
        ("id_number", idn.as_deref()),
        ("phone_norm", phone.as_deref()),
    ];
    for (col, key) in keyed {
        let Some(key) = key else { continue };
        out.extend(tx.rows(
            "q_producers",
            &format!(
                "SELECT {COLS} FROM q_producers
                 WHERE {col} = $1 AND id <> $2 AND merged_into IS NULL LIMIT $3"
            ),
            params![key, q.id.as_str(), limit],
            candidate,
        )?);
    }
    if !q.similar.is_empty() {
        let ids: Vec<&str> = q.similar.iter().map(String::as_str).collect();
        out.extend(tx.rows(
            "q_producers",
            &format!(
                "SELECT {COLS} FROM q_producers
                 WHERE id IN LIST($1) AND id <> $2 AND merged_into IS NULL LIMIT $3"
            ),
            params![ids.as_slice(), q.id.as_str(), limit],
            candidate,
        )?);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

/// The name cores of the producers of `grids`, with their ids (tombstones and empty cores
/// left out; see [`super::Storage::name_cores`]).
pub(crate) fn name_cores(tx: &mut dyn Tx, grids: &[&str]) -> StorageResult<Vec<(String, String)>> {
    tx.rows(
        "q_producers",
        "SELECT name_core, id FROM q_producers
         WHERE grid IN LIST($1) AND name_core <> '' AND merged_into IS NULL LIMIT $2",
        params![grids, i64::from(MAX_CANDIDATES)],
        |r: Row| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Ids of producers of `grids` with open possible-duplicate marks, most recently edited
/// first.
pub(crate) fn open_ids(tx: &mut dyn Tx, grids: &[&str], limit: u32) -> StorageResult<Vec<String>> {
    tx.rows(
        "q_producers",
        "SELECT id FROM q_producers
         WHERE grid IN LIST($1) AND open_duplicates > 0 AND merged_into IS NULL
         ORDER BY updated_at_ms DESC, id LIMIT $2",
        params![grids, i64::from(limit)],
        |r: Row| r.get(0),
    )
}

/// The key that tags the server's own changes ([`crate::signed`]), made on first use and
/// kept in `server_meta` (a backup and a dump carry it, so a restored server still
/// recognises the changes it made before).
/// `create`: make it if there is none (a write; otherwise a read, which answers an empty
/// key when none was made yet: no change verifies under it).
pub(crate) fn change_key(tx: &mut dyn Tx, create: bool) -> StorageResult<Vec<u8>> {
    if create {
        use rand::RngCore;
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        let fresh = hex::encode(fresh);
        tx.execute(
            "INSERT INTO server_meta (key, value) VALUES ('change_key', $1) ON CONFLICT (key) DO NOTHING",
            params![fresh.as_str()],
        )?;
    }
    let v: Option<String> = tx.value(
        "server_meta",
        "SELECT value FROM server_meta WHERE key = 'change_key'",
        params![],
    )?;
    hex::decode(v.unwrap_or_default())
        .map_err(|e| super::StorageError::BadRow(format!("server_meta change_key: {e}")))
}
