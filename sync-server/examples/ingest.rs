//! Ingest benchmark: many phones pushing new records at once into a real server on loopback.
//!
//! `cargo run --release -p gridsync-server --example ingest -- --backend sqlite|postgres|both`
//!
//! Each run starts a fresh server (a temporary data directory, or a fresh schema of the
//! PostgreSQL database in `--database` / `GRIDSYNC_TEST_POSTGRES`), enrols `--devices`
//! liaisons through the HTTP API, lets each build `--records` producers as Automerge changes
//! the way the phone app does (`RecordDoc`), encodes its push requests (`--batch` records
//! each), and then releases all devices at once: each sends its requests one after another
//! over its own HTTP connection. Measured: accepted records per second over the whole burst,
//! and the latency of each push request. With `--backend both` the backends alternate run by
//! run and the medians are printed side by side.
//!
//! After each burst, a fresh server takes the same load again with the devices arriving
//! evenly at `--paced` (default 0.7) of the records per second that burst reached: the
//! latency of a server that is busy but not saturated. Those runs are printed as a second
//! block in the same format. `--spread-ms` replaces the burst by devices arriving evenly
//! over a fixed window (no paced runs then).

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;

#[path = "support/load.rs"]
mod load;

use gridsync_core::model::{Person, Producer};
use gridsync_core::sync::protocol::{self, EnrollRequest, PushOutcome, SyncRequest, SyncResponse};
use gridsync_core::sync::{HttpTransport, Transport};
use gridsync_server::api::AppState;
use gridsync_server::auth::EnrolLimiter;
use gridsync_server::storage::sqlite::SqliteStorage;
use gridsync_server::storage::testing::ScratchSchema;
use gridsync_server::storage::Storage;

#[derive(Parser, Debug)]
#[command(about = "gridsync server ingest benchmark")]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    backend: String,
    /// PostgreSQL URL (default: GRIDSYNC_TEST_POSTGRES, then GRIDSYNC_DATABASE).
    #[arg(long)]
    database: Option<String>,
    /// Concurrent devices.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// New records per device.
    #[arg(long, default_value_t = 50)]
    records: usize,
    /// Records per push request.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Townships of 10 villages the devices (and their producers) are spread over. 7 puts
    /// the default 10,000 producers at about 1,400 a township, a banner's density (the
    /// duplicate check compares each new producer with its township's).
    #[arg(long, default_value_t = 7)]
    townships: usize,
    /// Producers' names: `pool` (the default) draws owners' names from about 6,000 (at a
    /// banner's density nearly half the new producers then have a similar name in their
    /// township and are marked as possible duplicates); `dataset` takes the generator's
    /// (20 surnames x 20 given names: nearly every one is marked, the duplicate check's
    /// worst case); `unique` gives every producer a name like no other (the check runs and
    /// finds nothing: its least cost).
    #[arg(long, default_value = "pool")]
    names: String,
    /// Runs per backend (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Server runtime worker threads.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Spread the devices' first requests evenly over this many milliseconds instead of
    /// releasing them all at once (0): device i starts at i × spread / devices. The latency
    /// then shows service time under a steady arrival rate rather than a burst's queue.
    #[arg(long, default_value_t = 0)]
    spread_ms: u64,
    /// After each burst, run again with the devices arriving evenly at this fraction of the
    /// records per second the burst reached (0: no such runs; ignored with --spread-ms).
    #[arg(long, default_value_t = 0.7)]
    paced: f64,
}

/// One run's figures.
#[derive(Debug, Clone)]
struct RunResult {
    records: usize,
    seconds: f64,
    /// CPU time of this process (server and phones) during the burst.
    cpu_seconds: f64,
    latencies_ms: Vec<f64>,
    /// Producers with an open possible-duplicate mark after the run.
    marked: usize,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    fn pct(&self, p: f64) -> f64 {
        load::percentile(&self.latencies_ms, p)
    }
}

/// User and system CPU time of this process so far (Linux; 0 elsewhere).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A running in-process server and what keeps its data alive.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _keep: Box<dyn std::any::Any>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

fn start(
    storage: Arc<dyn Storage>,
    threads: usize,
    keep: Box<dyn std::any::Any>,
) -> Result<Server, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut state = AppState::new(storage);
    // Every phone enrols from 127.0.0.1 here; the limiter is for the open internet.
    // So are its connections and requests: the server's limits per address and per device
    // (docs/limits.md) are lifted so that they do not shape the measurement.
    state.limiter = EnrolLimiter::new(100_000, 100_000);
    state.connections.max_total = 100_000;
    state.connections.max_per_address = 100_000;
    state.device_limiter = gridsync_server::limits::RateLimiter::new(1e9, u32::MAX, 1_000_000);
    let state = Arc::new(state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("runtime: {e}");
                return;
            }
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            if let Err(e) = gridsync_server::serve_state(listener, state, async {
                rx.await.ok();
            })
            .await
            {
                eprintln!("serve: {e}");
            }
        });
    });
    Ok(Server {
        addr,
        stop: Some(tx),
        thread: Some(thread),
        _keep: keep,
    })
}

/// A phone ready to push: credential and its encoded requests.
struct Device {
    transport: HttpTransport,
    auth: String,
    bodies: Vec<Vec<u8>>,
    records: usize,
}

fn prepare(
    storage: &dyn Storage,
    url: &str,
    person: &Person,
    batch: usize,
    like: &[Producer],
) -> Result<Device, String> {
    let n = like.len();
    let mut transport = HttpTransport::new(url).map_err(|e| e.to_string())?;
    transport.attempts = 1;
    let code = gridsync_server::admin::issue_code(storage, &person.id, "bench", 1)
        .map_err(|e| e.to_string())?
        .code;
    let enrolled = transport
        .enroll(&EnrollRequest {
            code,
            device_name: format!("bench {}", person.id),
        })
        .map_err(|e| format!("enrol: {e}"))?;
    let auth = format!("Bearer {}.{}", enrolled.device_id, enrolled.secret);
    // First sync of a new phone: it learns its reference data version (not timed).
    let first = SyncRequest {
        epoch: enrolled.epoch.clone(),
        reference_version: String::new(),
        push: vec![],
        cursors: vec![],
        want_full: vec![],
        page_limit: 1,
        bare_docs: false,
        page_bytes: 0,
    };
    let answer = transport
        .sync(&auth, protocol::encode(&first).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let resp: SyncResponse = protocol::decode(&answer).map_err(|e| e.to_string())?;
    let reference_version = resp.reference.map(|r| r.version).unwrap_or_default();
    // The actor the server binds to this device (as the phone adopts it at enrolment).
    let actor = gridsync_core::device_actor(&enrolled.device_id);
    let grid = person.grids.first().cloned().unwrap_or_default();
    let mut pushes = Vec::with_capacity(n);
    for (i, like) in like.iter().enumerate() {
        pushes.push(load::producer_push(like, i, &grid, &person.id, &actor)?);
    }
    let mut bodies = Vec::new();
    for chunk in pushes.chunks(batch.max(1)) {
        let req = SyncRequest {
            epoch: enrolled.epoch.clone(),
            reference_version: reference_version.clone(),
            push: chunk.to_vec(),
            cursors: vec![],
            want_full: vec![],
            page_limit: 1,
            bare_docs: false,
            page_bytes: 0,
        };
        bodies.push(protocol::encode(&req).map_err(|e| e.to_string())?);
    }
    Ok(Device {
        transport,
        auth,
        bodies,
        records: n,
    })
}

/// One run on a fresh server: device `i` of `n` starts `i × spread_ms / n` after the
/// release (0: all at once).
fn run_once(
    backend: &str,
    args: &Args,
    url: Option<&str>,
    spread_ms: u64,
) -> Result<RunResult, String> {
    let (storage, keep): (Arc<dyn Storage>, Box<dyn std::any::Any>) = match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let s =
                SqliteStorage::open(dir.path().join("gridsync.db")).map_err(|e| e.to_string())?;
            (Arc::new(s), Box::new(dir))
        }
        "postgres" => {
            let url =
                url.ok_or("--backend postgres needs --database URL or GRIDSYNC_TEST_POSTGRES")?;
            let schema = ScratchSchema::new(url).map_err(|e| e.to_string())?;
            let s = schema.open().map_err(|e| e.to_string())?;
            (Arc::new(s), Box::new(schema))
        }
        other => return Err(format!("unknown backend {other}")),
    };
    let people = load::seed(storage.as_ref(), args.devices, args.townships)?;
    let server = start(storage.clone(), args.server_threads, keep)?;
    let url = format!("http://{}", server.addr);
    let like = load::identities(people.len() * args.records, &args.names)?;
    if like.len() < people.len() * args.records {
        return Err(format!(
            "the generator made {} producers, {} are needed",
            like.len(),
            people.len() * args.records
        ));
    }
    let mut devices = Vec::with_capacity(people.len());
    for (p, like) in people.iter().zip(like.chunks(args.records.max(1))) {
        devices.push(prepare(storage.as_ref(), &url, p, args.batch, like)?);
    }
    let expected: usize = devices.iter().map(|d| d.records).sum();
    let barrier = Arc::new(Barrier::new(devices.len() + 1));
    let n_devices = devices.len() as u64;
    let handles: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let barrier = barrier.clone();
            let start_after = Duration::from_millis(spread_ms * i as u64 / n_devices.max(1));
            std::thread::spawn(move || -> Result<(Vec<f64>, usize), String> {
                barrier.wait();
                std::thread::sleep(start_after);
                let mut lat = Vec::with_capacity(d.bodies.len());
                let mut accepted = 0;
                for body in d.bodies {
                    let t = Instant::now();
                    let answer = d.transport.sync(&d.auth, body).map_err(|e| e.to_string())?;
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    let resp: SyncResponse =
                        protocol::decode(&answer).map_err(|e| e.to_string())?;
                    for r in resp.results {
                        match r.outcome {
                            PushOutcome::Accepted => accepted += 1,
                            PushOutcome::Rejected { reason, .. } => {
                                return Err(format!("record {} rejected: {reason}", r.id))
                            }
                        }
                    }
                }
                Ok((lat, accepted))
            })
        })
        .collect();
    eprintln!(
        "{}: {} devices, pid {}",
        if spread_ms == 0 { "burst" } else { "spread" },
        args.devices,
        std::process::id()
    );
    barrier.wait();
    let t0 = Instant::now();
    let cpu0 = process_cpu_seconds();
    let mut latencies = Vec::new();
    let mut accepted = 0;
    for h in handles {
        let (lat, n) = h
            .join()
            .map_err(|_| "a device thread panicked".to_string())??;
        latencies.extend(lat);
        accepted += n;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu0;
    if accepted != expected {
        return Err(format!("{accepted} of {expected} records accepted"));
    }
    let stored: i64 = storage
        .record_counts()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|c| c.1)
        .sum();
    if stored as usize != expected {
        return Err(format!("{stored} records stored, {expected} pushed"));
    }
    let mut grids: Vec<String> = people.iter().flat_map(|p| p.grids.clone()).collect();
    grids.sort();
    grids.dedup();
    let marked = storage
        .open_duplicate_ids(&grids, u32::MAX)
        .map_err(|e| e.to_string())?
        .len();
    drop(server);
    Ok(RunResult {
        records: accepted,
        seconds,
        cpu_seconds,
        latencies_ms: latencies,
        marked,
    })
}

fn main() {
    let args = Args::parse();
    let url = args
        .database
        .clone()
        .or_else(|| std::env::var("GRIDSYNC_TEST_POSTGRES").ok())
        .or_else(|| std::env::var("GRIDSYNC_DATABASE").ok())
        .filter(|u| !u.trim().is_empty());
    let backends: Vec<&str> = match args.backend.as_str() {
        "both" => vec!["sqlite", "postgres"],
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        other => {
            eprintln!("--backend must be sqlite, postgres or both, not {other}");
            std::process::exit(2);
        }
    };
    let arrival = if args.spread_ms == 0 {
        "released at once".to_string()
    } else {
        format!("arriving evenly over {} ms", args.spread_ms)
    };
    let header = |arrival: &str| {
        format!(
            "ingest: {} devices x {} records ({arrival}), {} records per push, {} runs per backend, {} server threads, {} cores",
            args.devices,
            args.records,
            args.batch,
            args.runs,
            args.server_threads,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        )
    };
    println!("{}", header(&arrival));
    let paced = args.spread_ms == 0 && args.paced > 0.0;
    let mut results: Vec<(&str, Vec<RunResult>)> =
        backends.iter().map(|b| (*b, Vec::new())).collect();
    // The paced runs: their rows are printed after the burst's, as a block of their own.
    let mut paced_results: Vec<(&str, Vec<RunResult>)> =
        backends.iter().map(|b| (*b, Vec::new())).collect();
    let mut paced_lines: Vec<String> = Vec::new();
    for run in 0..args.runs {
        for ((backend, list), (_, paced_list)) in results.iter_mut().zip(paced_results.iter_mut()) {
            let r = match run_once(backend, &args, url.as_deref(), args.spread_ms) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("run {} {backend}: {e}", run + 1);
                    std::process::exit(1);
                }
            };
            println!("{}", run_line(run, backend, &r));
            if paced {
                // Devices arriving evenly so that the records they bring come at the given
                // fraction of what this burst reached.
                let offered = r.rate() * args.paced;
                let spread_ms = (r.records as f64 / offered * 1000.0).round() as u64;
                match run_once(backend, &args, url.as_deref(), spread_ms) {
                    Ok(p) => {
                        paced_lines.push(format!(
                            "{} (offered {:.0} records/s over {} ms)",
                            run_line(run, backend, &p),
                            offered,
                            spread_ms
                        ));
                        paced_list.push(p);
                    }
                    Err(e) => {
                        eprintln!("run {} {backend} paced: {e}", run + 1);
                        std::process::exit(1);
                    }
                }
            }
            list.push(r);
        }
    }
    print_medians(args.runs, &results);
    if paced {
        println!(
            "{}",
            header(&format!(
                "arriving evenly at {:.0} % of the same run's burst rate",
                args.paced * 100.0
            ))
        );
        for l in &paced_lines {
            println!("{l}");
        }
        print_medians(args.runs, &paced_results);
    }
}

/// One run's line.
fn run_line(run: usize, backend: &str, r: &RunResult) -> String {
    format!(
        "run {} {:<8} {:>6} records in {:>6.2} s = {:>7.0} records/s; push p50 {:>7.1} ms, p99 {:>7.1} ms; {:.0} us CPU of this process per record; {} producers marked as possible duplicates",
        run + 1,
        backend,
        r.records,
        r.seconds,
        r.rate(),
        r.pct(50.0),
        r.pct(99.0),
        r.cpu_seconds * 1e6 / r.records as f64,
        r.marked
    )
}

/// The medians table of a block of runs.
fn print_medians(runs: usize, results: &[(&str, Vec<RunResult>)]) {
    println!();
    println!("medians over {runs} runs:");
    println!(
        "{:<10} {:>12} {:>14} {:>14} {:>16}",
        "backend", "records/s", "push p50 ms", "push p99 ms", "CPU us/record"
    );
    for (backend, list) in results {
        println!(
            "{:<10} {:>12.0} {:>14.1} {:>14.1} {:>16.0}",
            backend,
            load::median(list.iter().map(RunResult::rate).collect()),
            load::median(list.iter().map(|r| r.pct(50.0)).collect()),
            load::median(list.iter().map(|r| r.pct(99.0)).collect()),
            load::median(
                list.iter()
                    .map(|r| r.cpu_seconds * 1e6 / r.records as f64)
                    .collect()
            )
        );
    }
}
