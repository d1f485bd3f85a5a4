//! Likely duplicates in the local copy, shown before a producer is registered or edited
//! (issue 16: "likely matches in the local copy … shown before saving").
//!
//! The definitions are [`crate::dedupe`]'s: the same unified social credit code, ID number
//! or phone anywhere on the device, or a similar name (same, one edit apart, one containing
//! the other, compared by name core) in the same or a neighbouring grid (siblings under one
//! parent, the grid's children, its parent), with the same reasons and scores as the
//! server's and the import's checks.
//!
//! What makes it fast on a phone holding a whole banner: each producer's query row keeps
//! its keys as compared ([`DuplicateKeys`], columns `dup_credit_code`, `dup_id_number`,
//! `dup_phone`, `name_core`, schema version 6), written wherever the row is materialized
//! (local writes, records received by sync and bootstrap, rebuilds). A check is then three
//! index lookups for the codes and the phone and one scan of the neighbourhood's name cores
//! from the covering index `producers_grid_core`: no document is loaded and no name is
//! reduced to its core again.
//!
//! A tombstone (an entry merged into another, [`Producer::merged_into`]) is stored without
//! keys, so it is never offered as a duplicate.

use std::collections::HashMap;

use rusqlite::types::{Type, Value};
use rusqlite::{params, Connection, OptionalExtension};

use super::Store;
use crate::dedupe::{
    combined_score, core_similarity, name_core, normalize_code, normalize_phone, MatchReason,
};
use crate::model::Producer;
use crate::rules::GridTree;
use crate::Result;

/// Most likely duplicates [`Store::likely_duplicates`] returns (the best ones).
pub const MAX_LIKELY_DUPLICATES: usize = 50;

/// A producer on the device that is likely the same as the entry checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LikelyDuplicate {
    /// Id of the entry on the device.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its grid code.
    pub grid: String,
    /// Its grid's name (empty when the device does not know the grid).
    pub grid_name: String,
    /// Every reason that holds, in the order of [`MatchReason`] (ids: `as_str`, Chinese:
    /// `label_zh`).
    pub reasons: Vec<MatchReason>,
    /// Likelihood out of 100 ([`crate::dedupe::combined_score`] of the reasons).
    pub score: u8,
}

/// The keys of a producer as the check compares them (normalised codes and phone, name
/// core), as its query row stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DuplicateKeys {
    pub(crate) credit_code: Option<String>,
    pub(crate) id_number: Option<String>,
    pub(crate) phone: Option<String>,
    /// Empty when none.
    pub(crate) name_core: String,
}

impl DuplicateKeys {
    /// The keys of an entry being checked.
    pub(crate) fn of(p: &Producer) -> Self {
        DuplicateKeys {
            credit_code: p.credit_code.as_deref().and_then(normalize_code),
            id_number: p.id_number.as_deref().and_then(normalize_code),
            phone: normalize_phone(&p.phone),
            name_core: name_core(&p.name),
        }
    }

    /// The keys stored in a producer's query row: none for a tombstone.
    pub(crate) fn stored(p: &Producer) -> Self {
        if p.merged_into.is_some() {
            return DuplicateKeys::default();
        }
        Self::of(p)
    }
}

/// The values of `dup_credit_code, dup_id_number, dup_phone, name_core` for a producer's
/// query row (the last four of its row values, [`super::documents::row_values`]).
pub(crate) fn key_values(p: &Producer) -> [Value; 4] {
    let k = DuplicateKeys::stored(p);
    let opt = |s: Option<String>| s.map_or(Value::Null, Value::Text);
    [
        opt(k.credit_code),
        opt(k.id_number),
        opt(k.phone),
        Value::Text(k.name_core),
    ]
}

/// The name cores of the neighbourhood of grid `?1` whose parent is `?2` (NULL when the
/// tree does not know one): the grid itself, its parent, the parent's children (siblings)
/// and the grid's children, as [`crate::dedupe::DuplicateIndex`] defines neighbours.
pub(super) const NEIGHBOURHOOD: &str = "SELECT id, name_core FROM producers
     WHERE grid IN (SELECT code FROM grids WHERE parent = ?1 OR parent = ?2
                    UNION SELECT ?1 UNION SELECT ?2)
       AND name_core <> ''";

/// Ids by one normalised key.
pub(super) const BY_KEY: [(&str, MatchReason); 3] = [
    (
        "SELECT id FROM producers WHERE dup_credit_code = ?1",
        MatchReason::CreditCode,
    ),
    (
        "SELECT id FROM producers WHERE dup_id_number = ?1",
        MatchReason::IdNumber,
    ),
    (
        "SELECT id FROM producers WHERE dup_phone = ?1",
        MatchReason::Phone,
    ),
];

impl Store {
    /// The producers on the device that are likely the same as `p` (a new entry before it
    /// is registered, or an edited one before it is saved: the entry itself, by id, is
    /// never its own duplicate), best first (score, then id), at most
    /// [`MAX_LIKELY_DUPLICATES`]. Codes and phone match anywhere on the device, names in
    /// `p`'s grid and its neighbours by the device's grid tree; tombstones never match.
    /// Nothing is written.
    pub fn likely_duplicates(&self, p: &Producer) -> Result<Vec<LikelyDuplicate>> {
        let keys = DuplicateKeys::of(p);
        let parent = self.tree()?.parent_of(&p.grid);
        self.read(|c| matches_in(c, p, &keys, parent.as_deref()))
    }
}

fn matches_in(
    c: &Connection,
    p: &Producer,
    keys: &DuplicateKeys,
    parent: Option<&str>,
) -> Result<Vec<LikelyDuplicate>> {
    let mut found: HashMap<String, Vec<MatchReason>> = HashMap::new();
    let mut note = |id: String, r: MatchReason| {
        let v = found.entry(id).or_default();
        if !v.contains(&r) {
            v.push(r);
        }
    };
    let wanted = [&keys.credit_code, &keys.id_number, &keys.phone];
    for (key, (sql, reason)) in wanted.into_iter().zip(BY_KEY) {
        let Some(key) = key else { continue };
        let mut st = c.prepare_cached(sql)?;
        let ids = st.query_map([key], |r| r.get::<_, String>(0))?;
        for id in ids {
            note(id?, reason);
        }
    }
    if !keys.name_core.is_empty() {
        let mut st = c.prepare_cached(NEIGHBOURHOOD)?;
        let mut rows = st.query(params![p.grid, parent])?;
        while let Some(r) = rows.next()? {
            // Borrowed from the row: only a match allocates.
            let core = r.get_ref(1)?.as_str().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e))
            })?;
            if let Some(reason) = core_similarity(&keys.name_core, core) {
                note(r.get(0)?, reason);
            }
        }
    }
    found.remove(&p.id);
    let mut best: Vec<(String, Vec<MatchReason>, u8)> = found
        .into_iter()
        .map(|(id, mut reasons)| {
            reasons.sort();
            let score = combined_score(&reasons);
            (id, reasons, score)
        })
        .collect();
    best.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    best.truncate(MAX_LIKELY_DUPLICATES);
    let mut st = c.prepare_cached(
        "SELECT p.name, p.grid, COALESCE(g.name, '') FROM producers p
         LEFT JOIN grids g ON g.code = p.grid WHERE p.id = ?1",
    )?;
    let mut out = Vec::with_capacity(best.len());
    for (id, reasons, score) in best {
        let row: Option<(String, String, String)> = st
            .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((name, grid, grid_name)) = row {
            out.push(LikelyDuplicate {
                id,
                name,
                grid,
                grid_name,
                reasons,
                score,
            });
        }
    }
    Ok(out)
}
