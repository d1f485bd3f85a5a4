//! Typed columns: the model's enums are written and read as their stable identifiers
//! through rusqlite's `ToSql`/`FromSql` (one implementation, generated below), and a column
//! read with [`column`] reports a value that does not convert as a [`BadRow`] naming the
//! table, the row's key and the column, never as a default.
//!
//! The text written is each enum's `as_str()`, byte for byte what the store wrote before
//! (the same as the serde name for every enum of the model; the tests check it).

use std::borrow::Cow;

use rusqlite::types::{
    FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Type, Value, ValueRef,
};
use rusqlite::Row;

use crate::error::BadRow;
use crate::model::{
    GridKind, GridLevel, ProducerStatus, ProducerType, RecordKind, ReviewState, RiskLevel, Role,
    VisitStatus,
};
use crate::sync::protocol::RejectCode;

use super::attachments::AttachmentState;

/// An enum stored as text: its stable identifier.
pub(crate) trait StoredEnum: Copy + Sized + 'static {
    /// What a value is, for errors (`record kind`).
    const WHAT: &'static str;
    /// Every variant (checked complete at compile time).
    const ALL: &'static [Self];
    /// The identifier written.
    fn ident(self) -> &'static str;
    /// Parses an identifier read back.
    fn from_ident(s: &str) -> Option<Self>;
}

/// Parses by comparing with every variant's identifier (for an enum without `parse`).
fn by_ident<T: StoredEnum>(s: &str) -> Option<T> {
    T::ALL.iter().copied().find(|v| v.ident() == s)
}

/// Longest part of a bad value quoted in an error.
const QUOTE_CHARS: usize = 40;

fn not_a<T: StoredEnum>(what: impl std::fmt::Display) -> FromSqlError {
    FromSqlError::Other(format!("{what} is not a {}", T::WHAT).into())
}

fn from_sql<T: StoredEnum>(v: ValueRef<'_>) -> FromSqlResult<T> {
    let ValueRef::Text(bytes) = v else {
        return Err(not_a::<T>(format_args!(
            "a value of type {}",
            v.data_type()
        )));
    };
    let s = String::from_utf8_lossy(bytes);
    T::from_ident(&s).ok_or_else(|| {
        let quoted: String = s.chars().take(QUOTE_CHARS).collect();
        let cut = if quoted.len() < s.len() { "…" } else { "" };
        not_a::<T>(format_args!("'{quoted}{cut}'"))
    })
}

/// `StoredEnum`, `ToSql`, `FromSql` and `From<_> for Value` for enums with an `as_str`;
/// `parse` is the function that reads an identifier back.
macro_rules! stored_enums {
    ($($t:ident, $what:literal, $parse:expr, [$($v:ident),+ $(,)?];)+) => {$(
        impl StoredEnum for $t {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($t::$v),+];
            fn ident(self) -> &'static str {
                self.as_str()
            }
            fn from_ident(s: &str) -> Option<Self> {
                ($parse)(s)
            }
        }

        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.as_str().as_bytes())))
            }
        }

        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                from_sql(v)
            }
        }

        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Text(v.as_str().to_owned())
            }
        }

        // Does not compile when a variant is missing from `ALL`.
        const _: fn($t) = |v| match v {
            $($t::$v)|+ => {}
        };
    )+};
}

stored_enums! {
    RecordKind, "record kind", RecordKind::parse, [Producer, Visit, Template, Acceptance];
    GridLevel, "grid level", GridLevel::parse, [Region, League, Banner, Township, Village, SubGrid];
    GridKind, "grid kind", GridKind::parse, [Farming, Pastoral, Mixed];
    Role, "role", Role::parse, [Liaison, Supervisor, CountyReviewer, Admin];
    ProducerType, "producer type", ProducerType::parse, [
        Enterprise, Cooperative, FamilyFarm, FamilyRanch, LargeHousehold, SmallHousehold,
        InputDealer, Purchaser,
    ];
    ProducerStatus, "producer status", ProducerStatus::parse, [Active, Closed];
    ReviewState, "review state", ReviewState::parse, [
        Draft, Submitted, TownshipApproved, CountyApproved, Returned,
    ];
    RiskLevel, "risk level", RiskLevel::parse, [Low, Medium, High];
    VisitStatus, "visit status", VisitStatus::parse, [Draft, Completed];
    RejectCode, "reject code", by_ident::<RejectCode>, [
        Invalid, Forbidden, Workflow, MissingDeps, BadDocument, TooLarge,
    ];
    AttachmentState, "attachment state", AttachmentState::parse, [Pending, Uploaded, Cached];
}

/// Column `idx` of `r` as `T`. A stored value that does not convert fails as a conversion
/// failure whose source is a [`BadRow`] naming `table`, the row's key (column `key`) and
/// the column ([`crate::Error::bad_row`] finds it).
/// A JSON list of grid codes, as the `people` table stores a person's grids.
#[derive(Debug)]
pub(crate) struct GridList(pub Vec<String>);

impl FromSql for GridList {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = v.as_str()?;
        serde_json::from_str(text)
            .map(GridList)
            .map_err(|e| FromSqlError::Other(format!("not a JSON list of grid codes: {e}").into()))
    }
}

pub(crate) fn column<T: FromSql>(
    r: &Row<'_>,
    idx: usize,
    table: &'static str,
    key: usize,
) -> rusqlite::Result<T> {
    checked(r, idx, table, key)?.map_err(|bad| {
        let ty = r.get_ref(idx).map_or(Type::Null, |v| v.data_type());
        rusqlite::Error::FromSqlConversionFailure(idx, ty, Box::new(bad))
    })
}

/// Like [`column`], for a caller that sets a bad row aside rather than failing: the bad
/// value is the inner `Err`, any other failure the outer one.
pub(crate) fn checked<T: FromSql>(
    r: &Row<'_>,
    idx: usize,
    table: &'static str,
    key: usize,
) -> rusqlite::Result<Result<T, BadRow>> {
    let detail = match r.get::<_, T>(idx) {
        Ok(v) => return Ok(Ok(v)),
        Err(rusqlite::Error::FromSqlConversionFailure(_, _, e)) => e.to_string(),
        Err(rusqlite::Error::InvalidColumnType(_, _, ty)) => format!("unexpected {ty} value"),
        Err(rusqlite::Error::IntegralValueOutOfRange(_, n)) => format!("{n} is out of range"),
        Err(e) => return Err(e),
    };
    let key = match r.get_ref(key) {
        Ok(ValueRef::Text(b)) => String::from_utf8_lossy(b).into_owned(),
        Ok(ValueRef::Integer(n)) => n.to_string(),
        _ => "?".to_owned(),
    };
    let column = r
        .as_ref()
        .column_name(idx)
        .map_or(Cow::Borrowed("?"), |c| c.into());
    Ok(Err(BadRow {
        table,
        key,
        column: column.into_owned(),
        detail,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rusqlite::Connection;

    /// Every variant written through `ToSql` reads back through `FromSql` as itself, and
    /// the text stored is its `as_str()`, which is also its serde name (what the store wrote
    /// before through `serde_plain` for the enums without `as_str`).
    fn round_trip<T>(serde_name_too: bool)
    where
        T: StoredEnum + ToSql + FromSql + PartialEq + std::fmt::Debug + serde::Serialize,
        Value: From<T>,
    {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (n INTEGER, v TEXT NOT NULL)")
            .unwrap();
        for (n, v) in T::ALL.iter().enumerate() {
            c.execute(
                "INSERT INTO t (n, v) VALUES (?1, ?2)",
                rusqlite::params![n, v],
            )
            .unwrap();
            let (text, back): (String, T) = c
                .query_row("SELECT v, v FROM t WHERE n = ?1", [n], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!(text, v.ident(), "{v:?}");
            assert_eq!(back, *v);
            assert_eq!(Value::from(*v), Value::Text(text.clone()));
            if serde_name_too {
                assert_eq!(serde_json::to_value(v).unwrap(), text, "{v:?}");
            }
        }
        let bad: rusqlite::Result<T> = c.query_row("SELECT 'spaceship'", [], |r| r.get(0));
        let msg = bad.unwrap_err().to_string();
        assert!(
            msg.ends_with(&format!("'spaceship' is not a {}", T::WHAT)),
            "{msg}"
        );
        let bad: rusqlite::Result<T> = c.query_row("SELECT 7", [], |r| r.get(0));
        let msg = bad.unwrap_err().to_string();
        assert!(
            msg.ends_with(&format!("a value of type Integer is not a {}", T::WHAT)),
            "{msg}"
        );
    }

    #[test]
    fn every_variant_round_trips_as_its_identifier() {
        round_trip::<RecordKind>(true);
        round_trip::<GridLevel>(true);
        round_trip::<GridKind>(true);
        round_trip::<Role>(true);
        round_trip::<ProducerType>(true);
        round_trip::<ProducerStatus>(true);
        round_trip::<ReviewState>(true);
        round_trip::<RiskLevel>(true);
        round_trip::<VisitStatus>(true);
        // Its serde name (`MissingDeps`) is the wire's; the store always wrote `as_str()`.
        round_trip::<RejectCode>(false);
        round_trip::<AttachmentState>(true);
    }

    #[test]
    fn a_bad_value_names_table_key_and_column() {
        let c = Connection::open_in_memory().unwrap();
        let r: rusqlite::Result<GridLevel> =
            c.query_row("SELECT 'g1' AS code, 'planet' AS level", [], |r| {
                column(r, 1, "grids", 0)
            });
        let e = crate::Error::from(r.unwrap_err());
        let bad = e.bad_row().unwrap();
        assert_eq!(
            (bad.table, bad.key.as_str(), bad.column.as_str()),
            ("grids", "g1", "level")
        );
        assert_eq!(bad.detail, "'planet' is not a grid level");
        assert!(e.to_string().contains("grids row g1, column level"), "{e}");
        let long: rusqlite::Result<Result<Role, BadRow>> =
            c.query_row("SELECT 'p1', ?1", [&"x".repeat(100)], |r| {
                checked(r, 1, "people", 0)
            });
        let detail = long.unwrap().unwrap_err().detail;
        assert_eq!(
            detail,
            format!("'{}…' is not a role", "x".repeat(QUOTE_CHARS))
        );
    }
}
