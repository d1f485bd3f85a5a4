//! The floor: the same records as plain JSON. Its bytes are the records' JSON and that
//! JSON gzip'd; its time is dumping the rows from a server store of JSON rows and
//! bulk-inserting them into a new SQLite file on the client in one durable transaction.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use gridsync_core::model::Record;
use gridsync_server::dataset::Dataset;
use rusqlite::{params, Connection, OpenFlags};

use crate::R;

fn records(data: &Dataset) -> impl Iterator<Item = Record> + '_ {
    data.producers
        .iter()
        .cloned()
        .map(Record::Producer)
        .chain(data.visits.iter().cloned().map(Record::Visit))
}

/// Sum of the records' JSON lengths, and the gzip size of that JSON one record per line
/// (the same gzip level as the sync protocol).
pub fn json_sizes(data: &Dataset) -> R<(u64, u64)> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let mut raw = 0u64;
    for r in records(data) {
        let s = serde_json::to_string(&r.to_json())?;
        raw += s.len() as u64;
        gz.write_all(s.as_bytes())?;
        gz.write_all(b"\n")?;
    }
    Ok((raw, gz.finish()?.len() as u64))
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, kind TEXT NOT NULL,
         grid TEXT NOT NULL, json TEXT NOT NULL);
     CREATE INDEX IF NOT EXISTS records_grid ON records(grid);";

fn open(path: &Path) -> R<Connection> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute_batch(SCHEMA)?;
    Ok(c)
}

/// Builds the floor's server store: one JSON row per record.
pub fn build_server(path: &Path, data: &Dataset) -> R<()> {
    let mut c = open(path)?;
    let tx = c.transaction()?;
    {
        let mut st =
            tx.prepare("INSERT INTO records (id, kind, grid, json) VALUES (?1, ?2, ?3, ?4)")?;
        for r in records(data) {
            st.execute(params![
                r.id(),
                r.kind().as_str(),
                r.grid(),
                serde_json::to_string(&r.to_json())?
            ])?;
        }
    }
    tx.commit()?;
    drop(c);
    crate::setup::checkpoint(path)
}

/// What one floor copy measured.
#[derive(Debug, Clone, Copy)]
pub struct FloorRun {
    /// Seconds from opening the server store to the client's commit.
    pub secs: f64,
    /// Rows copied.
    pub rows: u64,
}

/// Dumps the rows of `grid` and below from the floor's server store and inserts them into
/// a new client file in one transaction (WAL, synchronous=FULL, like the phone's store).
pub fn copy(server: &Path, client: &Path, grid: &str) -> R<FloorRun> {
    let t = Instant::now();
    let src = Connection::open_with_flags(server, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut dst = open(client)?;
    let tx = dst.transaction()?;
    let mut rows = 0u64;
    {
        let mut read = src.prepare(
            "SELECT id, kind, grid, json FROM records WHERE grid = ?1 OR grid LIKE ?1 || '-%'",
        )?;
        let mut write =
            tx.prepare("INSERT INTO records (id, kind, grid, json) VALUES (?1, ?2, ?3, ?4)")?;
        let mut it = read.query([grid])?;
        while let Some(row) = it.next()? {
            write.execute(params![
                row.get_ref(0)?.as_str()?,
                row.get_ref(1)?.as_str()?,
                row.get_ref(2)?.as_str()?,
                row.get_ref(3)?.as_str()?
            ])?;
            rows += 1;
        }
    }
    tx.commit()?;
    Ok(FloorRun {
        secs: t.elapsed().as_secs_f64(),
        rows,
    })
}

/// Average JSON bytes of the rows of one kind in a floor client file.
pub fn avg_json_bytes(client: &Path, kind: &str) -> R<f64> {
    let c = Connection::open_with_flags(client, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(c.query_row(
        "SELECT AVG(length(CAST(json AS BLOB))) FROM records WHERE kind = ?1",
        [kind],
        |r| r.get(0),
    )?)
}
