//! Where a bootstrap's bytes go: the server's documents in feed order, gzip'd in pages of
//! 2,000 as a pull page carries them, against variants that show what the documents'
//! hashes cost and what a bootstrap built from the records' JSON would send.

use std::io::Write;
use std::path::Path;

use gridsync_core::doc::RecordDoc;
use rusqlite::{Connection, OpenFlags};

use crate::R;

/// Gzip'd bytes of the pages in each variant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anatomy {
    /// Id, document and heads (what a page carries, without postcard framing).
    pub as_sent: u64,
    /// The same with the head hashes and chunk checksums zeroed (as if they compressed).
    pub hashes_zeroed: u64,
    /// Id and the record's JSON (the floor, in feed order).
    pub json: u64,
    /// Id, JSON and the 32-byte heads (documents rebuilt on the phone and checked).
    pub json_heads: u64,
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
        let (mut sent, mut zeroed, mut json, mut json_heads) = (gz(), gz(), gz(), gz());
        for (id, doc, heads) in page {
            sent.write_all(id.as_bytes())?;
            sent.write_all(doc)?;
            sent.write_all(heads)?;

            let mut z = doc.clone();
            // A chunk starts with 4 magic bytes and a 4-byte checksum.
            for b in z.iter_mut().skip(4).take(4) {
                *b = 0;
            }
            for h in heads.chunks(32) {
                if let Some(at) = z.windows(h.len()).position(|w| w == h) {
                    z[at..at + h.len()].fill(0);
                }
            }
            zeroed.write_all(id.as_bytes())?;
            zeroed.write_all(&z)?;

            let record = RecordDoc::load(doc, &[])?.read()?;
            let text = serde_json::to_string(&record.to_json())?;
            json.write_all(id.as_bytes())?;
            json.write_all(text.as_bytes())?;
            json_heads.write_all(id.as_bytes())?;
            json_heads.write_all(text.as_bytes())?;
            json_heads.write_all(heads)?;
        }
        a.as_sent += sent.finish()?.len() as u64;
        a.hashes_zeroed += zeroed.finish()?.len() as u64;
        a.json += json.finish()?.len() as u64;
        a.json_heads += json_heads.finish()?.len() as u64;
    }
    Ok(a)
}
