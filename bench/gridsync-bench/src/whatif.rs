//! Where a bootstrap's bytes go: the server's documents in feed order, gzip'd in pages of
//! 2,000 as a pull page carries them, as protocol v1 sent them (with their hashes) and as
//! v2 sends them (bare), against the records' JSON in the same pages.

use std::io::Write;
use std::path::Path;

use gridsync_core::doc::RecordDoc;
use rusqlite::{Connection, OpenFlags};

use crate::R;

/// Gzip'd bytes of the pages in each variant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anatomy {
    /// Id, document and heads (what a v1 page carries, without postcard framing).
    pub as_sent: u64,
    /// Id and bare document (what a v2 page carries, without postcard framing).
    pub bare: u64,
    /// Id and the record's JSON (the floor, in feed order).
    pub json: u64,
}

const PAGE: usize = 2000;

fn gz() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6))
}

/// Measures the variants over every producer and visit of a server database.
pub fn anatomy(server_db: &Path) -> R<Anatomy> {
    let c = Connection::open_with_flags(server_db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut st = c.prepare(
        "SELECT id, doc, heads FROM records WHERE kind IN ('producer', 'visit') ORDER BY grid, seq",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut a = Anatomy::default();
    for page in rows.chunks(PAGE) {
        let (mut sent, mut bare, mut json) = (gz(), gz(), gz());
        for (id, doc, heads) in page {
            sent.write_all(id.as_bytes())?;
            sent.write_all(doc)?;
            sent.write_all(heads)?;

            bare.write_all(id.as_bytes())?;
            match gridsync_core::sync::bare::strip(doc) {
                Some(b) => bare.write_all(&b)?,
                None => {
                    bare.write_all(doc)?;
                    bare.write_all(heads)?;
                }
            }

            let record = RecordDoc::load(doc, &[])?.read()?;
            let text = serde_json::to_string(&record.to_json())?;
            json.write_all(id.as_bytes())?;
            json.write_all(text.as_bytes())?;
        }
        a.as_sent += sent.finish()?.len() as u64;
        a.bare += bare.finish()?.len() as u64;
        a.json += json.finish()?.len() as u64;
    }
    Ok(a)
}
