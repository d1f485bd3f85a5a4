//! Storage push benchmark: many devices pushing new producers at once straight into the
//! storage (`Storage::apply_push` with the server's real judgement, `push::decide`), without
//! HTTP and without the duplicate check that runs after a push over HTTP. It measures what
//! the storage backend's push costs: its transactions, locks and round trips.
//!
//! `cargo run --release -p gridsync-server --example push_storage -- --backend postgres`
//!
//! Each run seeds a fresh store (a fresh schema of `--database` / `GRIDSYNC_TEST_POSTGRES`,
//! or a temporary SQLite file) with 20 villages and one liaison per device, builds every
//! device's producers as the phone does (`RecordDoc`, one change each), then releases one
//! thread per device at once; each pushes its batches one after another. Printed per run
//! and as medians: records per second, push latency p50/p99, CPU of this process per
//! record, and (PostgreSQL) CPU of the database server's processes per record, read from
//! `/proc` (children of the postmaster named by `--pg-pid-file`; other users of the same
//! database server count too).

use std::sync::{Arc, Barrier};
use std::time::Instant;

use clap::Parser;

#[path = "support/load.rs"]
mod load;

use gridsync_core::model::{Person, Producer};
use gridsync_core::sync::protocol::{PushOutcome, PushRecord};
use gridsync_server::scope::ScopeCache;
use gridsync_server::storage::sqlite::SqliteStorage;
use gridsync_server::storage::testing::ScratchSchema;
use gridsync_server::storage::{Author, Storage};

#[derive(Parser, Debug)]
#[command(about = "gridsync storage push benchmark")]
struct Args {
    /// sqlite or postgres.
    #[arg(long, default_value = "postgres")]
    backend: String,
    /// PostgreSQL URL (default: GRIDSYNC_TEST_POSTGRES).
    #[arg(long)]
    database: Option<String>,
    /// Concurrent devices (one thread each).
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// New records per device.
    #[arg(long, default_value_t = 50)]
    records: usize,
    /// Records per push.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Runs (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// After each burst, run again with the devices arriving evenly at this fraction of the
    /// records per second the burst reached (0: no such runs).
    #[arg(long, default_value_t = 0.7)]
    paced: f64,
    /// The PostgreSQL server's `postmaster.pid` (its first line is the postmaster's pid).
    #[arg(long, default_value = "/tmp/gridsync-pg/postmaster.pid")]
    pg_pid_file: String,
}

/// User and system CPU seconds of one process from its `/proc/PID/stat` (0 if unreadable).
fn cpu_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime, cutime, cstime (children that exited: backends of closed connections).
    (ticks(11) + ticks(12) + ticks(13) + ticks(14)) / 100.0
}

/// The parent pid of a process.
fn ppid_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1).map(str::to_string)
}

/// CPU seconds of the postmaster and its children (exited children are in its cutime).
fn pg_cpu(pid_file: &str) -> f64 {
    let Some(master) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
    else {
        return 0.0;
    };
    let mut total = cpu_of(&master);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.chars().all(|c| c.is_ascii_digit())
                && ppid_of(&name).as_deref() == Some(master.as_str())
            {
                total += cpu_of(&name);
            }
        }
    }
    total
}

#[derive(Debug, Clone)]
struct RunResult {
    rate: f64,
    p50: f64,
    p99: f64,
    cpu_us: f64,
    pg_cpu_us: f64,
}

/// One device's batches: new producers, each one change as the phone makes it.
fn prepare(
    person: &Person,
    device_id: &str,
    args: &Args,
    like: &[Producer],
) -> Result<Vec<Vec<PushRecord>>, String> {
    let actor = gridsync_core::device_actor(device_id);
    let grid = person.grids.first().cloned().unwrap_or_default();
    let mut pushes = Vec::with_capacity(args.records);
    for (i, like) in like.iter().enumerate() {
        pushes.push(load::producer_push(like, i, &grid, &person.id, &actor)?);
    }
    Ok(pushes
        .chunks(args.batch.max(1))
        .map(<[_]>::to_vec)
        .collect())
}

/// One run on a fresh store: device `i` of `n` starts `i × spread_ms / n` after the release
/// (0: all at once).
fn run_once(args: &Args, url: Option<&str>, spread_ms: f64) -> Result<RunResult, String> {
    let (storage, _keep): (Arc<dyn Storage>, Box<dyn std::any::Any>) = match args.backend.as_str() {
        "sqlite" => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let s =
                SqliteStorage::open(dir.path().join("gridsync.db")).map_err(|e| e.to_string())?;
            (Arc::new(s), Box::new(dir))
        }
        "postgres" => {
            let url = url.ok_or("--backend postgres needs --database or GRIDSYNC_TEST_POSTGRES")?;
            let schema = ScratchSchema::new(url).map_err(|e| e.to_string())?;
            let s = schema.open().map_err(|e| e.to_string())?;
            (Arc::new(s), Box::new(schema))
        }
        other => return Err(format!("--backend must be sqlite or postgres, not {other}")),
    };
    let people = load::seed(storage.as_ref(), args.devices, 2)?;
    // Identities as the dataset generator makes them (valid ID numbers and credit codes).
    let like = load::identities(args.devices * args.records, "dataset")?;
    if like.len() < args.devices * args.records {
        return Err("the generator made too few producers".into());
    }
    let scopes = ScopeCache::default();
    let mut devices = Vec::with_capacity(people.len());
    for (i, person) in people.iter().enumerate() {
        let device_id = format!("bench-device-{i:04}");
        let scope = scopes
            .scope(storage.as_ref(), &person.id)
            .map_err(|e| e.to_string())?
            .ok_or("no scope")?;
        let mine = &like[i * args.records..(i + 1) * args.records];
        let batches = prepare(person, &device_id, args, mine)?;
        devices.push((person.id.clone(), device_id, scope, batches));
    }
    let total: usize = devices
        .iter()
        .map(|d| d.3.iter().map(Vec::len).sum::<usize>())
        .sum();
    let barrier = Arc::new(Barrier::new(devices.len() + 1));
    let mut threads = Vec::with_capacity(devices.len());
    let n = devices.len().max(1);
    for (k, (person_id, device_id, scope, batches)) in devices.into_iter().enumerate() {
        let delay = std::time::Duration::from_secs_f64(spread_ms * k as f64 / n as f64 / 1000.0);
        let storage = storage.clone();
        let barrier = barrier.clone();
        threads.push(std::thread::spawn(move || -> Result<Vec<f64>, String> {
            let author = Author {
                person_id,
                device_id: Some(device_id.clone()),
            };
            barrier.wait();
            std::thread::sleep(delay);
            let mut lat = Vec::with_capacity(batches.len());
            for b in &batches {
                let t = Instant::now();
                let mut ctx =
                    gridsync_server::push::PushContext::new(storage.as_ref(), &scope, &device_id);
                let mut process = |stored: Option<&gridsync_server::storage::StoredRecord>,
                                   p: &PushRecord| {
                    gridsync_server::push::decide(&mut ctx, stored, p)
                };
                let res = storage
                    .apply_push(&author, b, &mut process)
                    .map_err(|e| e.to_string())?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                if let Some(r) = res
                    .iter()
                    .find(|r| !matches!(r.outcome, PushOutcome::Accepted))
                {
                    return Err(format!("{} not accepted: {:?}", r.id, r.outcome));
                }
            }
            Ok(lat)
        }));
    }
    let cpu0 = cpu_of("self");
    let pg0 = pg_cpu(&args.pg_pid_file);
    let start = Instant::now();
    barrier.wait();
    let mut lat = Vec::new();
    for t in threads {
        lat.extend(t.join().map_err(|_| "a device thread panicked")??);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_of("self") - cpu0;
    let pg = pg_cpu(&args.pg_pid_file) - pg0;
    let stored: i64 = storage
        .record_counts()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|c| c.1)
        .sum();
    if stored as usize != total {
        return Err(format!("{stored} records stored, {total} pushed"));
    }
    Ok(RunResult {
        rate: total as f64 / secs,
        p50: load::percentile(&lat, 50.0),
        p99: load::percentile(&lat, 99.0),
        cpu_us: cpu * 1e6 / total as f64,
        pg_cpu_us: if args.backend == "postgres" {
            pg * 1e6 / total as f64
        } else {
            0.0
        },
    })
}

fn main() {
    let args = Args::parse();
    let url = args
        .database
        .clone()
        .or_else(|| std::env::var("GRIDSYNC_TEST_POSTGRES").ok());
    let mut runs = Vec::new();
    let mut paced = Vec::new();
    let line = |what: &str, r: &RunResult| {
        println!(
            "{what}: {:.0} records/s, push p50 {:.1} ms p99 {:.1} ms, CPU {:.0} µs/record (this process), {:.0} µs/record (database server)",
            r.rate, r.p50, r.p99, r.cpu_us, r.pg_cpu_us
        );
    };
    for i in 0..args.runs.max(1) {
        let r = run_once(&args, url.as_deref(), 0.0).unwrap_or_else(|e| {
            eprintln!("run {}: {e}", i + 1);
            std::process::exit(1)
        });
        line(&format!("burst run {}", i + 1), &r);
        if args.paced > 0.0 {
            // Every record offered over the window at `paced` of the burst's rate.
            let total = (args.devices * args.records) as f64;
            let spread_ms = total / (args.paced * r.rate) * 1000.0;
            let p = run_once(&args, url.as_deref(), spread_ms).unwrap_or_else(|e| {
                eprintln!("paced run {}: {e}", i + 1);
                std::process::exit(1)
            });
            line(
                &format!(
                    "paced run {} ({:.0} records/s offered)",
                    i + 1,
                    args.paced * r.rate
                ),
                &p,
            );
            paced.push(p);
        }
        runs.push(r);
    }
    let summary = |what: &str, runs: &[RunResult]| {
        if runs.is_empty() {
            return;
        }
        println!(
            "{what}, median of {}: {:.0} records/s, p50 {:.1} ms, p99 {:.1} ms, CPU {:.0} µs/record, database server CPU {:.0} µs/record",
            runs.len(),
            load::median(runs.iter().map(|r| r.rate).collect()),
            load::median(runs.iter().map(|r| r.p50).collect()),
            load::median(runs.iter().map(|r| r.p99).collect()),
            load::median(runs.iter().map(|r| r.cpu_us).collect()),
            load::median(runs.iter().map(|r| r.pg_cpu_us).collect()),
        );
    };
    summary("burst", &runs);
    summary(&format!("paced at {:.0} %", args.paced * 100.0), &paced);
}
