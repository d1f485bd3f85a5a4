//! The narrow seam between the storage algorithms (written once, in `layer.rs`) and a SQL
//! backend: parameters, rows read back with typed columns, and the few operations whose SQL
//! differs between SQLite and PostgreSQL.
//!
//! SQL is written once, in PostgreSQL's placeholder style (`$1`) and in the subset of SQL
//! both databases accept (upserts with `ON CONFLICT … DO UPDATE SET … = excluded.…`,
//! `RETURNING`, `CAST(… AS BIGINT)`). One extension: `IN LIST($n)` tests membership in a
//! [`Value::TextList`]. Each backend rewrites that text to its dialect in [`Tx`].

use gridsync_core::model::{
    GridKind, GridLevel, ProducerStatus, ProducerType, RecordKind, ReviewState, RiskLevel, Role,
    VisitStatus,
};

use super::{StorageError, StorageResult};

/// A parameter bound to a statement.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (narrowed for an INTEGER column of PostgreSQL).
    Int(i64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
    /// A boolean (SQLite stores 0/1).
    Bool(bool),
    /// A list of text values, only for `IN LIST($n)`.
    TextList(&'a [&'a str]),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}
impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}
impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Blob(v)
    }
}
impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl<'a> From<&'a [&'a str]> for Value<'a> {
    fn from(v: &'a [&'a str]) -> Self {
        Value::TextList(v)
    }
}
impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().map_or(Value::Null, Value::Text)
    }
}
impl<'a> From<&'a Option<i64>> for Value<'a> {
    fn from(v: &'a Option<i64>) -> Self {
        v.map_or(Value::Null, Value::Int)
    }
}

/// Stored enums are written as their stable text identifier.
macro_rules! text_enum {
    ($($t:ty => $what:literal),* $(,)?) => {$(
        impl From<$t> for Value<'static> {
            fn from(v: $t) -> Self {
                Value::Text(v.as_str())
            }
        }
        impl FromSql for $t {
            fn from_sql(v: &Cell) -> Result<Self, String> {
                let s = <&str as FromSqlRef>::from_sql_ref(v)?;
                <$t>::parse(s).ok_or_else(|| format!("'{s}' is not {}", $what))
            }
        }
    )*};
}
text_enum!(RecordKind => "a record kind", GridLevel => "a grid level", GridKind => "a grid kind", Role => "a role");
// The query tables' stored enums.
text_enum!(ProducerType => "a producer type", ProducerStatus => "a producer status", ReviewState => "a review state", RiskLevel => "a risk level", VisitStatus => "a visit status");

/// Parameters as a slice of [`Value`]s.
#[macro_export]
#[doc(hidden)]
macro_rules! sql_params {
    ($($v:expr),* $(,)?) => {
        &[$($crate::storage::sql::Value::from($v)),*][..]
    };
}
pub(crate) use sql_params as params;

/// One column of a row read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// Integer (SQLite INTEGER; PostgreSQL INT2/4/8).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// Boolean (PostgreSQL).
    Bool(bool),
}

impl Cell {
    fn describe(&self) -> String {
        match self {
            Cell::Null => "NULL".into(),
            Cell::Int(i) => format!("integer {i}"),
            Cell::Text(s) => format!("text '{}'", s.chars().take(40).collect::<String>()),
            Cell::Blob(b) => format!("{} bytes", b.len()),
            Cell::Bool(b) => format!("boolean {b}"),
        }
    }
}

/// A type read from a column; a value of the wrong shape is an error naming it.
pub trait FromSql: Sized {
    /// Converts a column (the error says what was found).
    fn from_sql(v: &Cell) -> Result<Self, String>;
}

/// A type borrowed from a column.
trait FromSqlRef<'a>: Sized {
    fn from_sql_ref(v: &'a Cell) -> Result<Self, String>;
}

impl<'a> FromSqlRef<'a> for &'a str {
    fn from_sql_ref(v: &'a Cell) -> Result<Self, String> {
        match v {
            Cell::Text(s) => Ok(s),
            other => Err(format!("expected text, found {}", other.describe())),
        }
    }
}

impl FromSql for String {
    fn from_sql(v: &Cell) -> Result<Self, String> {
        <&str>::from_sql_ref(v).map(str::to_string)
    }
}
impl FromSql for i64 {
    fn from_sql(v: &Cell) -> Result<Self, String> {
        match v {
            Cell::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {}", other.describe())),
        }
    }
}
impl FromSql for u64 {
    fn from_sql(v: &Cell) -> Result<Self, String> {
        let i = i64::from_sql(v)?;
        u64::try_from(i).map_err(|_| format!("expected a non-negative integer, found {i}"))
    }
}
impl FromSql for bool {
    fn from_sql(v: &Cell) -> Result<Self, String> {
        match v {
            Cell::Bool(b) => Ok(*b),
            Cell::Int(0) => Ok(false),
            Cell::Int(1) => Ok(true),
            other => Err(format!("expected a boolean, found {}", other.describe())),
        }
    }
}
impl FromSql for Vec<u8> {
    fn from_sql(v: &Cell) -> Result<Self, String> {
        match v {
            Cell::Blob(b) => Ok(b.clone()),
            other => Err(format!("expected bytes, found {}", other.describe())),
        }
    }
}
impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(v: &Cell) -> Result<Self, String> {
        match v {
            Cell::Null => Ok(None),
            v => T::from_sql(v).map(Some),
        }
    }
}

/// Heads as stored: 32 bytes each, concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heads(pub Vec<[u8; 32]>);

impl FromSql for Heads {
    fn from_sql(v: &Cell) -> Result<Self, String> {
        let Cell::Blob(b) = v else {
            return Err(format!("expected heads, found {}", v.describe()));
        };
        if b.len() % 32 != 0 {
            return Err(format!(
                "heads of {} bytes are not whole 32-byte hashes",
                b.len()
            ));
        }
        Ok(Heads(
            b.chunks_exact(32)
                .map(|c| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    h
                })
                .collect(),
        ))
    }
}

/// A JSON array of text, as the grids of a person are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextArray(pub Vec<String>);

impl FromSql for TextArray {
    fn from_sql(v: &Cell) -> Result<Self, String> {
        let s = <&str>::from_sql_ref(v)?;
        serde_json::from_str(s)
            .map(TextArray)
            .map_err(|e| format!("not a JSON list of text: {e}"))
    }
}

/// A row read back. Columns are taken by position; [`Row::get`] reports a value of the
/// wrong type or shape as [`StorageError::BadRow`] naming the table, the row's key (its
/// first column) and the column.
#[derive(Debug, Clone)]
pub struct Row {
    /// The table the row comes from (for errors).
    pub table: &'static str,
    /// Column names.
    pub names: std::sync::Arc<[String]>,
    /// The values.
    pub cells: Vec<Cell>,
}

impl Row {
    /// Column `i` as `T`.
    pub fn get<T: FromSql>(&self, i: usize) -> StorageResult<T> {
        let cell = self.cells.get(i).unwrap_or(&Cell::Null);
        T::from_sql(cell).map_err(|e| self.bad(i, &e))
    }

    /// Takes column `i` out of the row (no copy of large values).
    pub fn take_blob(&mut self, i: usize) -> StorageResult<Option<Vec<u8>>> {
        match self
            .cells
            .get_mut(i)
            .map(|c| std::mem::replace(c, Cell::Null))
        {
            Some(Cell::Blob(b)) => Ok(Some(b)),
            Some(Cell::Null) | None => Ok(None),
            Some(other) => {
                let e = format!("expected bytes, found {}", other.describe());
                Err(self.bad(i, &e))
            }
        }
    }

    fn bad(&self, i: usize, e: &str) -> StorageError {
        let key = match self.cells.first() {
            Some(Cell::Text(s)) => format!("'{s}'"),
            Some(other) => other.describe(),
            None => "?".into(),
        };
        let col = self.names.get(i).map(String::as_str).unwrap_or("?");
        StorageError::BadRow(format!("{} row {key}, column {col}: {e}", self.table))
    }
}

/// Column types, for bulk inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// TEXT.
    Text,
    /// BIGINT / INTEGER.
    Int,
    /// BLOB / BYTEA.
    Blob,
    /// BOOLEAN (INTEGER 0/1 in SQLite).
    Bool,
}

/// A bulk insert: table, typed columns, and what to do on a key conflict.
#[derive(Debug)]
pub struct Insert {
    /// Table.
    pub table: &'static str,
    /// Columns in the order of each row's values.
    pub columns: &'static [(&'static str, Ty)],
    /// Appended to the statement: empty, or an `ON CONFLICT …` clause.
    pub on_conflict: &'static str,
}

/// One transaction (or, for single statements, one connection) of a backend.
pub trait Tx {
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> StorageResult<u64>;
    /// Runs a query and hands each row to `each`, in order.
    fn query(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[Value<'_>],
        each: &mut dyn FnMut(Row) -> StorageResult<()>,
    ) -> StorageResult<()>;
    /// Like [`Tx::query`] for a whole table without parameters, read in bounded batches
    /// (exports).
    fn stream(
        &mut self,
        table: &'static str,
        sql: &str,
        each: &mut dyn FnMut(Row) -> StorageResult<()>,
    ) -> StorageResult<()> {
        self.query(table, sql, &[], each)
    }
    /// Inserts rows, in order (SQLite: one cached statement per row; PostgreSQL: one
    /// statement over arrays).
    fn insert_rows(&mut self, ins: &Insert, rows: &[Vec<Value<'_>>]) -> StorageResult<()>;
}

impl dyn Tx + '_ {
    /// Every row, mapped.
    pub fn rows<T>(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[Value<'_>],
        mut map: impl FnMut(Row) -> StorageResult<T>,
    ) -> StorageResult<Vec<T>> {
        let mut out = Vec::new();
        self.query(table, sql, params, &mut |r| {
            out.push(map(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, mapped, if there is one.
    pub fn row<T>(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnOnce(Row) -> StorageResult<T>,
    ) -> StorageResult<Option<T>> {
        let mut first = None;
        self.query(table, sql, params, &mut |r| {
            if first.is_none() {
                first = Some(r);
            }
            Ok(())
        })?;
        first.map(map).transpose()
    }

    /// The first column of the first row, if there is a row.
    pub fn value<T: FromSql>(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[Value<'_>],
    ) -> StorageResult<Option<T>> {
        self.row(table, sql, params, |r| r.get(0))
    }
}

/// Rewrites shared SQL for SQLite: `$n` → `?n`, `IN LIST($n)` → a `json_each` of the list
/// bound as JSON text (see [`sqlite_value`]).
pub fn to_sqlite(sql: &str) -> String {
    let sql = sql.replace("IN LIST($", "IN (SELECT value FROM json_each($");
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut open_list = false;
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
            continue;
        }
        out.push(c);
        if out.ends_with("json_each(") {
            open_list = true;
        }
        if open_list && c == ')' {
            // Close the sub-select opened by the rewrite of `IN LIST(`.
            out.push(')');
            open_list = false;
        }
    }
    out
}

/// Rewrites shared SQL for PostgreSQL: `IN LIST($n)` → `= ANY($n)`.
pub fn to_postgres(sql: &str) -> String {
    if !sql.contains("IN LIST(") {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find("IN LIST(") {
        out.push_str(&rest[..i]);
        out.push_str("= ANY(");
        rest = &rest[i + "IN LIST(".len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects() {
        assert_eq!(
            to_sqlite("SELECT a FROM t WHERE id IN LIST($1) AND g = $2 AND s > $12"),
            "SELECT a FROM t WHERE id IN (SELECT value FROM json_each(?1)) AND g = ?2 AND s > ?12"
        );
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE id IN LIST($1) AND g = $2"),
            "SELECT a FROM t WHERE id = ANY($1) AND g = $2"
        );
    }

    #[test]
    fn bad_values_name_table_row_and_column() {
        let r = Row {
            table: "records",
            names: vec!["id".to_string(), "kind".to_string(), "heads".to_string()].into(),
            cells: vec![
                Cell::Text("r1".into()),
                Cell::Text("spaceship".into()),
                Cell::Blob(vec![0; 33]),
            ],
        };
        let e = r.get::<RecordKind>(1).unwrap_err().to_string();
        assert!(
            e.contains("records row 'r1', column kind: 'spaceship' is not a record kind"),
            "{e}"
        );
        let e = r.get::<Heads>(2).unwrap_err().to_string();
        assert!(e.contains("column heads") && e.contains("33 bytes"), "{e}");
        let e = r.get::<i64>(0).unwrap_err().to_string();
        assert!(e.contains("expected an integer, found text 'r1'"), "{e}");
        assert_eq!(r.get::<Option<i64>>(7).unwrap(), None);
    }
}
