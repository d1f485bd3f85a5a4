//! The zstd dictionary of protocol v4 (`core/src/sync/dict/`): trained from the records a
//! bootstrap page carries (`train-dictionary`), and measured on pages of another dataset
//! (`compression`), against gzip and zstd without a dictionary.
//!
//! A sample is one record exactly as a pull page encodes it: the postcard encoding of its
//! `PullRecord`, whole document bare (`gridsync_core::sync::bare`), so the dictionary
//! learns the ids, grid codes and document columns that pages repeat.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use gridsync_core::sync::protocol::PullRecord;
use gridsync_server::dataset::DatasetSpec;
use rusqlite::{Connection, OpenFlags};

use crate::{setup, R};

/// The records of a server database in feed order, each as a pull page encodes it.
fn page_records(server_db: &Path) -> R<Vec<Vec<u8>>> {
    let c = Connection::open_with_flags(server_db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut st =
        c.prepare("SELECT id, kind, grid, seq, doc, heads FROM records ORDER BY grid, seq")?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, kind, grid, seq, doc, heads) in rows {
        let kind = match kind.as_str() {
            "producer" => 1,
            "visit" => 2,
            _ => 3,
        };
        let (bytes, heads) = match gridsync_core::sync::bare::strip(&doc) {
            Some(b) => (b, Vec::new()),
            None => (
                doc,
                heads
                    .chunks_exact(32)
                    .map(|h| {
                        let mut a = [0u8; 32];
                        a.copy_from_slice(h);
                        a
                    })
                    .collect(),
            ),
        };
        let rec = PullRecord {
            id,
            kind,
            grid,
            seq: u64::try_from(seq)?,
            full: true,
            bytes,
            heads,
        };
        out.push(postcard::to_allocvec(&rec)?);
    }
    Ok(out)
}

/// Builds a township's server database for `seed` under `work` and returns its records.
fn township_records(seed: u64, work: &Path) -> R<Vec<Vec<u8>>> {
    let p = setup::prepare(
        &format!("township-{seed}"),
        &DatasetSpec::township(seed),
        work,
        false,
    )?;
    page_records(&p.server_db)
}

/// `train-dictionary`: trains a dictionary of at most `size` bytes on the township of
/// `seed` and writes it to `out`.
pub fn train(seed: u64, size: usize, out: &Path, work: &Path) -> R<()> {
    if seed == crate::workloads::BENCH_SEED {
        return Err(format!(
            "seed {seed} is the benchmark's: train on another so that the benchmark does not measure the training set"
        )
        .into());
    }
    std::fs::create_dir_all(work)?;
    let samples = township_records(seed, work)?;
    let total: usize = samples.iter().map(Vec::len).sum();
    let t = Instant::now();
    let dict = zstd::dict::from_samples(&samples, size)?;
    eprintln!(
        "trained a {} byte dictionary on {} records ({} bytes) of seed {seed} in {:.1} s",
        dict.len(),
        samples.len(),
        total,
        t.elapsed().as_secs_f64()
    );
    std::fs::write(out, &dict)?;
    Ok(())
}

/// Pages of about `budget` bytes of records (at least one record each, at most 2,000).
fn pages(records: &[Vec<u8>], budget: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut page = Vec::new();
    let mut n = 0;
    for r in records {
        page.extend_from_slice(r);
        n += 1;
        if page.len() >= budget || n >= 2000 {
            out.push(std::mem::take(&mut page));
            n = 0;
        }
    }
    if !page.is_empty() {
        out.push(page);
    }
    out
}

fn gzip(raw: &[u8]) -> R<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(raw)?;
    Ok(gz.finish()?)
}

/// `compression`: each page budget (bytes) and codec on the township of `seed`, with
/// `dict` and without, at each zstd level.
pub fn compare(seed: u64, dict: &Path, work: &Path, levels: &[i32], budgets: &[usize]) -> R<()> {
    std::fs::create_dir_all(work)?;
    let dict = std::fs::read(dict)?;
    let records = township_records(seed, work)?;
    let raw: usize = records.iter().map(Vec::len).sum();
    println!(
        "township of seed {seed}: {} records, {raw} bytes as pages carry them; dictionary {} bytes",
        records.len(),
        dict.len()
    );
    println!("| page budget | pages | codec | bytes | compress ms | decompress ms |");
    println!("|---|---|---|---|---|---|");
    for &budget in budgets {
        let pages = pages(&records, budget);
        let row = |name: &str, bodies: R<Vec<Vec<u8>>>, secs: f64, de: f64| -> R<()> {
            let bytes: usize = bodies?.iter().map(Vec::len).sum();
            println!(
                "| {} KiB | {} | {name} | {bytes} | {:.0} | {:.0} |",
                budget / 1024,
                pages.len(),
                secs * 1e3,
                de * 1e3
            );
            Ok(())
        };
        let t = Instant::now();
        let gz: R<Vec<Vec<u8>>> = pages.iter().map(|p| gzip(p)).collect();
        let secs = t.elapsed().as_secs_f64();
        let gz = gz?;
        let t = Instant::now();
        for b in &gz {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&b[..]), &mut out)?;
        }
        let de = t.elapsed().as_secs_f64();
        row("gzip -6", Ok(gz), secs, de)?;
        for &level in levels {
            for with_dict in [false, true] {
                let d: &[u8] = if with_dict { &dict } else { &[] };
                let t = Instant::now();
                let mut c = zstd::bulk::Compressor::with_dictionary(level, d)?;
                let bodies: Vec<Vec<u8>> = pages
                    .iter()
                    .map(|p| c.compress(p))
                    .collect::<std::io::Result<_>>()?;
                let secs = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let mut dc = zstd::bulk::Decompressor::with_dictionary(d)?;
                for (b, p) in bodies.iter().zip(&pages) {
                    let out = dc.decompress(b, p.len())?;
                    if out != *p {
                        return Err("zstd round trip differs".into());
                    }
                }
                let de = t.elapsed().as_secs_f64();
                let name = format!("zstd -{level}{}", if with_dict { " dict" } else { "" });
                row(&name, Ok(bodies), secs, de)?;
            }
        }
    }
    Ok(())
}
