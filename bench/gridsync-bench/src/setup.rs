//! Building the server databases once per invocation: the deterministic dataset loaded
//! through the validated push path, copied fresh for every run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gridsync_core::model::{GridNode, Person, Role};
use gridsync_server::dataset::{generate, DatasetSpec};
use gridsync_server::storage::sqlite::SqliteStorage;

use crate::floor;
use crate::R;

/// A server database built from a dataset, ready to be copied for each run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Directory holding the built files.
    pub dir: PathBuf,
    /// The server's SQLite file (to copy, never served directly).
    pub server_db: PathBuf,
    /// The floor's server store: the same records as JSON rows (township only).
    pub floor_db: Option<PathBuf>,
    /// Seconds it took to load the records through the push path.
    pub load_secs: f64,
    /// Producers and visits.
    pub records: usize,
    /// Sum of the records' JSON lengths.
    pub json_bytes: u64,
    /// Gzip size of the records' JSON, one per line.
    pub json_gzip_bytes: u64,
    /// People of the dataset.
    pub people: Vec<Person>,
    /// Grid tree of the dataset.
    pub grids: Vec<GridNode>,
}

impl Prepared {
    /// First person with a role whose grid starts with `grid_prefix`.
    pub fn person(&self, role: Role, grid_prefix: &str) -> R<Person> {
        self.people
            .iter()
            .find(|p| p.role == role && p.grids.iter().any(|g| g.starts_with(grid_prefix)))
            .cloned()
            .ok_or_else(|| format!("the dataset has no {role:?} in {grid_prefix}").into())
    }
}

/// Generates a dataset and loads it into a new server database under `root/name`.
pub fn prepare(name: &str, spec: &DatasetSpec, root: &Path, with_floor: bool) -> R<Prepared> {
    let dir = root.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let data = generate(spec);
    let gen_secs = t.elapsed().as_secs_f64();
    let records = data.producers.len() + data.visits.len();
    let server_db = dir.join("gridsync.db");
    let t = Instant::now();
    {
        let storage = SqliteStorage::open(&server_db)?;
        gridsync_server::demo::load_dataset(&storage, &data)?;
    }
    let load_secs = t.elapsed().as_secs_f64();
    checkpoint(&server_db)?;
    let (json_bytes, json_gzip_bytes) = floor::json_sizes(&data)?;
    let floor_db = if with_floor {
        let p = dir.join("floor-server.db");
        floor::build_server(&p, &data)?;
        Some(p)
    } else {
        None
    };
    eprintln!(
        "  {name}: {records} records generated in {gen_secs:.1} s, loaded through the push path in {load_secs:.1} s ({:.0} records/s)",
        records as f64 / load_secs
    );
    Ok(Prepared {
        dir,
        server_db,
        floor_db,
        load_secs,
        records,
        json_bytes,
        json_gzip_bytes,
        people: data.people,
        grids: data.grids,
    })
}

/// Folds the write-ahead log into the database file so that one file is a whole copy.
pub fn checkpoint(db: &Path) -> R<()> {
    let c = rusqlite::Connection::open(db)?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// A fresh copy of the prepared server database in `run_dir`.
pub fn server_copy(p: &Prepared, run_dir: &Path) -> R<PathBuf> {
    let dir = run_dir.join(format!(
        "server-{}",
        p.dir.file_name().and_then(|n| n.to_str()).unwrap_or("data")
    ));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("gridsync.db");
    std::fs::copy(&p.server_db, &db)?;
    Ok(db)
}

/// Issues a one-time enrolment code for `person` on a server database (it may be served).
pub fn issue_code(db: &Path, person: &str) -> R<String> {
    let storage = SqliteStorage::open(db)?;
    Ok(gridsync_server::admin::issue_code(&storage, person, "bench", 1)?.code)
}

/// Size of a SQLite database with its write-ahead log.
pub fn db_bytes(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|s| {
            std::fs::metadata(format!("{}{s}", db.display()))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}
