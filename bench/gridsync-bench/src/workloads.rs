//! The workloads (W1–W10 and storage), run several times against fresh copies of the
//! server database, with their baselines measured in the same run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gridsync_core::model::{
    Answer, AnswerType, AnswerValue, Person, Producer, ProducerType, Record, Role, Visit, YesNoNa,
    DEFAULT_TEMPLATE_ID,
};
use gridsync_core::store::{ProducerSort, Store, DEFAULT_READERS};
use gridsync_core::sync::{enroll, protocol, CancelFlag, HttpTransport, SyncEngine, SyncReport};
use gridsync_server::dataset::DatasetSpec;

use crate::procs::{self, ServerProc};
use crate::report::{self, Samples, Table, Verdict};
use crate::setup::{self, Prepared};
use crate::shaper::{Link, ShapingProxy};
use crate::{amsync, external, floor, reads, R};

/// Options of `gridsync-bench run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// CI size: a township of 5 villages and 150 producers, a banner of 3 small townships,
    /// short local runs.
    #[arg(long)]
    pub small: bool,
    /// Runs per workload; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Working directory (default: a new directory in the system temp dir, removed after).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Keep the working directory.
    #[arg(long)]
    pub keep: bool,
    /// Skip W7 (the banner).
    #[arg(long)]
    pub no_banner: bool,
    /// Skip W4 and W5 (the benchmarks of other crates).
    #[arg(long)]
    pub no_external: bool,
    /// W5 also runs its burst with the server's query tables off
    /// (`GRIDSYNC_NO_QUERY_TABLES=1`), to show what writing them costs a push.
    #[arg(long)]
    pub w5_without_query_tables: bool,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// W8: visits with three photos each (default: a liaison's day, 5; a week is 35, about
    /// an hour over the slow link; 0 skips W8).
    #[arg(long)]
    pub photo_visits: Option<usize>,
    /// Skip W8 and W9 (the photos).
    #[arg(long)]
    pub no_photos: bool,
    /// Run only W8 and W9 (the photos), once.
    #[arg(long)]
    pub only_photos: bool,
    /// Skip W6 and the photos (the slow link: about 25 minutes of the full run).
    #[arg(long)]
    pub no_slow: bool,
    /// Skip the W6 township bootstrap over the cut link (about 12 minutes).
    #[arg(long)]
    pub no_cut: bool,
}

/// The sizes of W8 and W9: visits, photo bytes; devices, photo bytes per device.
#[derive(Debug, Clone, Copy)]
struct PhotoPlan {
    /// Run nothing else.
    only: bool,
    visits: usize,
    size: usize,
    devices: usize,
    device_size: usize,
}

/// The slow link of W6: 300 ms one way, 64 kbit/s each way.
const SLOW_LINK: Link = Link {
    delay: Duration::from_millis(300),
    bytes_per_sec: 64_000.0 / 8.0,
};
/// How often the slow link drops in the W6 cut bootstrap.
const CUT_EVERY: Duration = Duration::from_secs(10);

/// The seed of the benchmark's datasets (the protocol's dictionary is trained on another).
pub const BENCH_SEED: u64 = 7;

fn specs(small: bool) -> (DatasetSpec, DatasetSpec) {
    let town = DatasetSpec::township(BENCH_SEED);
    if small {
        (
            DatasetSpec {
                villages_per_township: 5,
                producers_per_township: 150,
                ..town.clone()
            },
            DatasetSpec {
                townships: 3,
                producers_per_township: 100,
                ..town
            },
        )
    } else {
        (town, DatasetSpec::banner(BENCH_SEED))
    }
}

/// Runs everything and prints the report.
pub fn run(args: &RunArgs) -> R<()> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let root = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("gridsync-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&root)?;
    let result = run_in(args, &root);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

fn run_in(args: &RunArgs, root: &Path) -> R<()> {
    let started = Instant::now();
    let (tspec, bspec) = specs(args.small);
    let load_at_start = load_average();
    eprintln!(
        "gridsync-bench: {} size, {} runs, in {} (load average {load_at_start})",
        if args.small { "small (CI)" } else { "full" },
        args.runs,
        root.display()
    );
    eprintln!("preparing server databases (once per invocation):");
    let town = setup::prepare("township", &tspec, root, true)?;
    let banner = if args.no_banner || args.only_photos {
        None
    } else {
        Some(setup::prepare("banner", &bspec, root, false)?)
    };
    let mut s = Samples::default();
    let runs = if args.only_photos { 1 } else { args.runs };
    for run in 0..runs {
        eprintln!("run {} of {runs}", run + 1);
        let run_dir = root.join(format!("run-{run}"));
        if run_dir.exists() {
            std::fs::remove_dir_all(&run_dir)?;
        }
        std::fs::create_dir_all(&run_dir)?;
        let photos = (!args.no_photos).then_some(if args.small {
            PhotoPlan {
                only: args.only_photos,
                visits: args.photo_visits.unwrap_or(1),
                size: 30_000,
                devices: 10,
                device_size: 200_000,
            }
        } else {
            PhotoPlan {
                only: args.only_photos,
                visits: args.photo_visits.unwrap_or(5),
                size: 300_000,
                devices: 50,
                device_size: 2_000_000,
            }
        });
        let cut = !args.no_cut;
        township_run(&town, &run_dir, run, photos, (!args.no_slow, cut), &mut s)?;
        if let Some(b) = &banner {
            banner_run(b, &run_dir, &mut s)?;
        }
        if !args.keep {
            std::fs::remove_dir_all(&run_dir)?;
        }
    }
    let local = if args.no_external || args.only_photos {
        None
    } else {
        eprintln!("W4: bench-local (examples/src/bin/bench-local.rs)");
        let a: Vec<String> = if args.small {
            ["--producers", "2000", "--visits", "100", "--runs", "3"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            Vec::new()
        };
        external::run_local(&a)?
    };
    let ingest = if args.no_external || args.only_photos {
        None
    } else {
        eprintln!("W5: the ingest example (sync-server/examples/ingest.rs)");
        let backend = if std::env::var("GRIDSYNC_TEST_POSTGRES").is_ok_and(|v| !v.trim().is_empty())
        {
            "both"
        } else {
            "sqlite"
        };
        let mut a: Vec<String> = vec!["--backend".into(), backend.into()];
        let spread = if args.small {
            for x in ["--devices", "40", "--records", "10", "--runs", "1"] {
                a.push(x.into());
            }
            "2000"
        } else {
            "10000"
        };
        // The burst (every device at once), then the same devices arriving over a window.
        let mut out = String::new();
        for extra in [&[][..], &["--spread-ms", spread][..]] {
            let mut a = a.clone();
            a.extend(extra.iter().map(|x| x.to_string()));
            match external::run_ingest(&a, &[]) {
                Ok(Some(o)) => out.push_str(&o),
                Ok(None) => {}
                // A W5 that does not run is a failure of the benchmark, not a footnote.
                Err(e) => return Err(format!("W5: the ingest example failed: {e}").into()),
            }
        }
        (!out.is_empty()).then_some((out, a))
    };
    // The same burst without the query tables (the comparison, same run).
    let ingest_bare = match &ingest {
        Some((_, a)) if args.w5_without_query_tables => {
            eprintln!("W5 again, with GRIDSYNC_NO_QUERY_TABLES=1");
            external::run_ingest(a, &[("GRIDSYNC_NO_QUERY_TABLES", "1")])
                .map_err(|e| format!("W5 without query tables: {e}"))?
        }
        _ => None,
    };
    let ingest = ingest.map(|(out, _)| out);
    let ingest_rows = ingest
        .as_deref()
        .map(external::parse_ingest)
        .unwrap_or_default();
    let mut table = build_table(
        &s,
        &town,
        banner.as_ref(),
        local.as_ref().map(|l| &l.0),
        &ingest_rows,
    );
    if args.only_photos {
        table.rows.retain(|r| r.work == "W8" || r.work == "W9");
    }
    let mut md = String::new();
    md.push_str(&machine());
    md.push_str(&format!(
        "Load average when the run started: {load_at_start}. Wall times grow with other work on the machine; CPU times (user + system of the processes involved) do not, so time targets are judged on both.\n"
    ));
    md.push_str(&format!(
        "\nSize: {}; {} runs; medians. Township: {} records ({} producers, {} visits per producer); banner: {}.\n\n",
        if args.small { "small (CI)" } else { "full" },
        args.runs,
        town.records,
        tspec.producers_per_township,
        tspec.visits_per_producer,
        banner
            .as_ref()
            .map(|b| format!("{} townships, {} records", bspec.townships, b.records))
            .unwrap_or_else(|| "skipped".into())
    ));
    md.push_str(&table.markdown());
    md.push_str(&format!(
        "\nServer seeding through the validated push path (in one process, batches of 500): township {:.0} records/s{}.\n",
        town.records as f64 / town.load_secs,
        banner
            .as_ref()
            .map(|b| format!(", banner {:.0} records/s", b.records as f64 / b.load_secs))
            .unwrap_or_default()
    ));
    match &ingest {
        Some(out) => md.push_str(&format!("\nW5 (ingest example output):\n\n```text\n{}\n```\n", out.trim_end())),
        None if !args.no_external => md.push_str("\nW5: the ingest example (`sync-server/examples/ingest.rs`) was not built; no figures.\n"),
        None => {}
    }
    if let Some(out) = &ingest_bare {
        md.push_str(&format!(
            "\nW5 burst without the query tables (`GRIDSYNC_NO_QUERY_TABLES=1`, same run):\n\n```text\n{}\n```\n",
            out.trim_end()
        ));
    }
    if let Some((_, raw)) = &local {
        md.push_str(&format!(
            "\nW4 (bench-local output):\n\n```text\n{}\n```\n",
            raw.trim_end()
        ));
    }
    let missed = table.missed();
    md.push_str(&format!(
        "\n{} of {} targets missed. Total benchmark time {:.0} s.\n",
        missed.len(),
        table
            .rows
            .iter()
            .filter(|r| r.verdict != Verdict::Info)
            .count(),
        started.elapsed().as_secs_f64()
    ));
    println!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md)?;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .map(|kb| format!("{:.1} GB", kb * 1024.0 / 1e9))
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "Machine: {cores} cores ({cpu}), {mem} memory; {} build; load average {}.\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        load_average()
    )
}

/// The 1-minute load average (other work on the machine skews wall times, not CPU times).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

fn sync(store: &Store, transport: &HttpTransport) -> R<SyncReport> {
    let r = SyncEngine::new(store, transport).sync(&mut |_| {}, &CancelFlag::new())?;
    if !r.rejected.is_empty() {
        return Err(format!("the server rejected edits: {:?}", r.rejected).into());
    }
    Ok(r)
}

/// Enrols a phone (in-process) for `person` and bootstraps it over `url`.
fn phone(
    db: &Path,
    url: &str,
    dir: &Path,
    name: &str,
    person: &Person,
) -> R<(Store, HttpTransport)> {
    let store = Store::open(dir.join(format!("{name}.db")))?;
    let transport = HttpTransport::new(url)?;
    let code = setup::issue_code(db, &person.id)?;
    enroll(&store, &transport, url, &code, name)?;
    sync(&store, &transport)?;
    Ok((store, transport))
}

fn addr_of(url: &str) -> R<SocketAddr> {
    Ok(url.trim_start_matches("http://").parse()?)
}

fn township_run(
    town: &Prepared,
    run_dir: &Path,
    run: usize,
    photos: Option<PhotoPlan>,
    (slow, cut): (bool, bool),
    s: &mut Samples,
) -> R<()> {
    let db = setup::server_copy(town, run_dir)?;
    let server = ServerProc::start(&db)?;
    let sup = town.person(Role::Supervisor, "")?;
    let township = sup
        .grids
        .first()
        .cloned()
        .ok_or("the supervisor has no grid")?;

    if let Some(plan) = photos.filter(|p| p.only) {
        photo_workloads(town, &db, &server, &township, plan, run_dir, s)?;
        return server.stop();
    }

    // W1: an empty phone (its own process) bootstraps the township.
    eprintln!("  W1 bootstrap of {} records", town.records);
    let code = setup::issue_code(&db, &sup.id)?;
    let phone_db = run_dir.join("supervisor.db");
    let server_cpu = server.cpu_secs().unwrap_or(0.0);
    let c = procs::run_client(
        &server.url,
        &code,
        &phone_db,
        "supervisor-phone",
        protocol::PROTOCOL_VERSION,
    )?;
    s.add(
        "w1.server_cpu",
        server.cpu_secs().unwrap_or(0.0) - server_cpu,
    );
    s.add("w1.phone_cpu", c.cpu_secs);
    if c.records != town.records as i64 {
        return Err(format!(
            "bootstrap brought {} records, expected {}",
            c.records, town.records
        )
        .into());
    }
    s.add("w1.secs", c.secs);
    s.add("w1.rt", f64::from(c.round_trips));
    s.add("w1.up", c.bytes_up as f64);
    s.add("w1.down", c.bytes_down as f64);
    s.add("w1.bytes", (c.bytes_up + c.bytes_down) as f64);
    s.add("w1.phone_kb", c.peak_rss_kb as f64);
    s.add("w1.server_kb", server.peak_rss_kb().unwrap_or(0) as f64);
    s.add("w1.decompress", c.decompress_secs);
    s.add("w1.decompress_page", c.decompress_page_secs);
    s.add("w1.pages", f64::from(c.round_trips));
    // The same bootstrap by a phone of protocol 3 (gzip), side by side (issue 20).
    eprintln!("  W1 again, protocol 3");
    let code = setup::issue_code(&db, &sup.id)?;
    let server_cpu = server.cpu_secs().unwrap_or(0.0);
    let c3 = procs::run_client(
        &server.url,
        &code,
        &run_dir.join("supervisor-v3.db"),
        "supervisor-phone-v3",
        3,
    )?;
    if c3.records != town.records as i64 || c3.protocol != 3 {
        return Err(format!("the protocol 3 bootstrap brought {} records", c3.records).into());
    }
    s.add(
        "w1v3.server_cpu",
        server.cpu_secs().unwrap_or(0.0) - server_cpu,
    );
    s.add("w1v3.phone_cpu", c3.cpu_secs);
    s.add("w1v3.secs", c3.secs);
    s.add("w1v3.bytes", (c3.bytes_up + c3.bytes_down) as f64);
    s.add("w1v3.rt", f64::from(c3.round_trips));
    s.add("w1v3.decompress", c3.decompress_secs);
    s.add("w1v3.decompress_page", c3.decompress_page_secs);

    // W10: a screen's reads during the bootstrap, with read connections and without.
    eprintln!("  W10 reads during a bootstrap");
    for (key, readers) in [("w10", DEFAULT_READERS), ("w10w", 0)] {
        let f = reads::during_bootstrap(&db, &server.url, run_dir, &sup, &township, readers)?;
        s.add(&format!("{key}.list_p50"), reads::quantile(&f.list, 0.5));
        s.add(&format!("{key}.list_p99"), reads::quantile(&f.list, 0.99));
        s.add(&format!("{key}.list_max"), reads::quantile(&f.list, 1.0));
        s.add(
            &format!("{key}.prod_p50"),
            reads::quantile(&f.producer, 0.5),
        );
        s.add(
            &format!("{key}.prod_p99"),
            reads::quantile(&f.producer, 0.99),
        );
        s.add(
            &format!("{key}.reads"),
            (f.list.len() + f.producer.len()) as f64,
        );
        s.add(&format!("{key}.secs"), f.sync_secs);
        s.add(&format!("{key}.rt"), f64::from(f.round_trips));
    }

    // W3: an idle sync right after.
    let store = Store::open(&phone_db)?;
    let transport = HttpTransport::new(&server.url)?;
    let idle = sync(&store, &transport)?;
    s.add("w3.rt", f64::from(idle.round_trips));
    s.add("w3.bytes", (idle.bytes_up + idle.bytes_down) as f64);

    // W2: a liaison edits 10 producers of their village and syncs (push); the supervisor
    // syncs them (pull).
    eprintln!("  W2 incremental, W3 idle");
    let lia = town.person(Role::Liaison, &format!("{township}-V01"))?;
    let (lstore, ltransport) = phone(&db, &server.url, run_dir, "liaison-w2", &lia)?;
    field_work(&lstore, &lia, 0, 10, 0)?;
    let pending = lstore.pending_pushes(1000, &Default::default())?;
    if pending.len() != 10 {
        return Err(format!("{} records pending after 10 edits", pending.len()).into());
    }
    let change_bytes: usize = pending.iter().map(|p| p.changes.len()).sum();
    s.add("w2.change", change_bytes as f64);
    let push = sync(&lstore, &ltransport)?;
    s.add("w2.push_rt", f64::from(push.round_trips));
    s.add("w2.push_bytes", (push.bytes_up + push.bytes_down) as f64);
    s.add("w2.push_up", push.bytes_up as f64);
    let pull = sync(&store, &transport)?;
    // The 10 edits, and whatever the server wrote because of them (possible-duplicate
    // marks of the producers edited).
    if pull.pulled < 10 {
        return Err(format!("the supervisor pulled {} records, expected 10", pull.pulled).into());
    }
    s.add("w2.pulled", f64::from(pull.pulled));
    s.add("w2.pull_rt", f64::from(pull.round_trips));
    s.add("w2.pull_bytes", (pull.bytes_up + pull.bytes_down) as f64);
    s.add("w2.pull_down", pull.bytes_down as f64);
    drop((lstore, ltransport));

    // The floor: the same records as JSON, dumped and bulk-inserted in one transaction.
    eprintln!("  floor: JSON dump and bulk insert");
    let floor_server = town
        .floor_db
        .as_ref()
        .ok_or("the township has no floor store")?;
    let floor_db = run_dir.join("floor-phone.db");
    let cpu = procs::thread_cpu_secs().unwrap_or(0.0);
    let f = floor::copy(floor_server, &floor_db, &township)?;
    s.add("floor.cpu", procs::thread_cpu_secs().unwrap_or(0.0) - cpu);
    if f.rows != town.records as u64 {
        return Err(format!(
            "the floor copied {} rows, expected {}",
            f.rows, town.records
        )
        .into());
    }
    s.add("floor.secs", f.secs);

    // Storage on the phone against the JSON rows.
    drop(store);
    setup::checkpoint(&phone_db)?;
    setup::checkpoint(&floor_db)?;
    let c = rusqlite::Connection::open(&phone_db)?;
    let doc_bytes = |kind: &str| -> R<f64> {
        Ok(c.query_row(
            "SELECT AVG(length(doc) + COALESCE((SELECT SUM(length(bytes)) FROM record_chunks k WHERE k.id = r.id), 0))
             FROM records r WHERE kind = ?1",
            [kind],
            |r| r.get::<_, f64>(0),
        )?)
    };
    s.add("st.visit_doc", doc_bytes("visit")?);
    drop(c);
    s.add("st.visit_json", floor::avg_json_bytes(&floor_db, "visit")?);
    s.add(
        "st.phone_per_record",
        setup::db_bytes(&phone_db) as f64 / town.records as f64,
    );
    s.add(
        "st.floor_per_record",
        setup::db_bytes(&floor_db) as f64 / town.records as f64,
    );
    let (stored, compact, json) = hundred_edits(town, run_dir)?;
    s.add("st.p100_stored", stored as f64);
    s.add("st.p100_compact", compact as f64);
    s.add("st.p100_json", json as f64);

    // Automerge's per-document sync over HTTP, from the same server documents.
    eprintln!(
        "  Automerge per-document sync of {} documents",
        town.records
    );
    let am = amsync::AmServer::start(amsync::server_docs(&town.server_db)?)?;
    let cpu = procs::cpu_secs(None).unwrap_or(0.0);
    let a = amsync::client_sync(&am.url(), &run_dir.join("am-phone.db"))?;
    // This process holds both sides of the baseline: phone and server.
    s.add("am.cpu", procs::cpu_secs(None).unwrap_or(0.0) - cpu);
    drop(am);
    if a.docs != town.records as u64 {
        return Err(format!(
            "Automerge sync brought {} documents, expected {}",
            a.docs, town.records
        )
        .into());
    }
    s.add("am.secs", a.secs);
    s.add("am.rt", a.round_trips as f64);
    s.add("am.bytes", (a.bytes_up + a.bytes_down) as f64);

    if run == 0 {
        let a = crate::whatif::anatomy(&town.server_db)?;
        s.add("anat.sent", a.as_sent as f64);
        s.add("anat.bare", a.bare as f64);
        s.add("anat.json", a.json as f64);
    }

    if slow {
        // W6: a liaison's day and week through the slow link.
        eprintln!("  W6 slow link (300 ms one way, 64 kbit/s)");
        let lia = town.person(Role::Liaison, &format!("{township}-V02"))?;
        let (lstore, _) = phone(&db, &server.url, run_dir, "liaison-w6", &lia)?;
        let proxy = ShapingProxy::start(addr_of(&server.url)?, SLOW_LINK)?;
        for (key, visits, edits, salt) in [("w6.day", 5, 2, 0), ("w6.week", 35, 14, 5)] {
            field_work(&lstore, &lia, visits, edits, salt)?;
            // A new connection each time, as after the phone was out of coverage.
            let slow = HttpTransport::new(&proxy.url())?;
            let t = Instant::now();
            let r = sync(&lstore, &slow)?;
            s.add(&format!("{key}.secs"), t.elapsed().as_secs_f64());
            s.add(&format!("{key}.rt"), f64::from(r.round_trips));
            s.add(&format!("{key}.up"), r.bytes_up as f64);
            s.add(&format!("{key}.down"), r.bytes_down as f64);
            if r.pushed as usize != visits + edits {
                return Err(format!(
                    "{key}: {} records pushed, expected {}",
                    r.pushed,
                    visits + edits
                )
                .into());
            }
        }
        if run == 0 {
            // Once: a liaison's first bootstrap of their village over the slow link.
            let lia = town.person(Role::Liaison, &format!("{township}-V03"))?;
            let lstore = Store::open(run_dir.join("liaison-slow.db"))?;
            let slow = HttpTransport::new(&proxy.url())?;
            let code = setup::issue_code(&db, &lia.id)?;
            let t = Instant::now();
            enroll(&lstore, &slow, &proxy.url(), &code, "liaison-slow")?;
            let r = sync(&lstore, &slow)?;
            s.add("w6.boot.secs", t.elapsed().as_secs_f64());
            s.add("w6.boot.bytes", (r.bytes_up + r.bytes_down) as f64);
            s.add("w6.boot.records", f64::from(r.pulled));
            // The same first bootstrap by a phone of protocol 3 (gzip), for comparison.
            let lstore = Store::open(run_dir.join("liaison-slow-v3.db"))?;
            let code = setup::issue_code(&db, &lia.id)?;
            let t = Instant::now();
            enroll(&lstore, &slow, &proxy.url(), &code, "liaison-slow-v3")?;
            let mut engine = SyncEngine::new(&lstore, &slow);
            engine.protocol_version = 3;
            let r = engine.sync(&mut |_| {}, &CancelFlag::new())?;
            s.add("w6.boot3.secs", t.elapsed().as_secs_f64());
            s.add("w6.boot3.bytes", (r.bytes_up + r.bytes_down) as f64);
            s.add("w6.boot3.rt", f64::from(r.round_trips));
            drop(proxy);
            if cut {
                cut_bootstrap(town, &db, &server.url, &sup, run_dir, s)?;
            }
            if let Some(plan) = photos {
                photo_workloads(town, &db, &server, &township, plan, run_dir, s)?;
            }
        } else {
            drop(proxy);
        }
    }
    server.stop()?;
    Ok(())
}

/// W8 and W9 (`photos.rs`).
fn photo_workloads(
    town: &Prepared,
    db: &Path,
    server: &ServerProc,
    township: &str,
    plan: PhotoPlan,
    run_dir: &Path,
    s: &mut Samples,
) -> R<()> {
    if plan.visits > 0 {
        crate::photos::liaison_photos(
            town,
            db,
            &server.url,
            &format!("{township}-V04"),
            SLOW_LINK,
            (plan.visits, plan.size),
            run_dir,
            s,
        )?;
    }
    crate::photos::photo_ingest(
        town,
        db,
        server,
        (plan.devices, plan.device_size),
        run_dir,
        s,
    )
}

/// W6 cut: the supervisor's township bootstrap over the slow link, every connection cut
/// every 10 s; the app syncs again whenever a sync gives up.
fn cut_bootstrap(
    town: &Prepared,
    db: &Path,
    url: &str,
    sup: &Person,
    run_dir: &Path,
    s: &mut Samples,
) -> R<()> {
    eprintln!(
        "  W6 township bootstrap ({} records) over the slow link, cut every {} s",
        town.records,
        CUT_EVERY.as_secs()
    );
    let proxy = ShapingProxy::start_cutting(addr_of(url)?, SLOW_LINK, Some(CUT_EVERY))?;
    let store = Store::open(run_dir.join("supervisor-cut.db"))?;
    let code = setup::issue_code(db, &sup.id)?;
    enroll(
        &store,
        &HttpTransport::new(url)?,
        url,
        &code,
        "supervisor-cut",
    )?;
    let transport = HttpTransport::new(&proxy.url())?;
    let t = Instant::now();
    let (mut syncs, mut round_trips) = (0u32, 0u32);
    loop {
        syncs += 1;
        let mut this = 0;
        let r = SyncEngine::new(&store, &transport)
            .sync(&mut |p| this = p.round_trips, &CancelFlag::new());
        match r {
            Ok(r) => {
                round_trips += r.round_trips;
                break;
            }
            Err(gridsync_core::Error::Transport(e)) if syncs < 200 => {
                round_trips += this;
                eprintln!("    sync {syncs} gave up ({e}); syncing again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let (down, lost, cuts, mid) = proxy.stats.snapshot();
    drop(proxy);
    eprintln!(
        "    {secs:.1} s, {down} B received, {lost} B twice, {cuts} cuts ({mid} mid-answer), {syncs} syncs, {round_trips} round trips"
    );
    // The township's records and the visits W6 pushed before.
    let counts = store.counts()?;
    let records = (counts.producers + counts.visits) as usize;
    if records < town.records || counts.unsynced != 0 {
        return Err(format!(
            "the cut bootstrap brought {records} producers and visits, expected {} and more",
            town.records
        )
        .into());
    }
    s.add("w6.cut.secs", secs);
    s.add("w6.cut.down", down as f64);
    s.add("w6.cut.lost", lost as f64);
    s.add("w6.cut.cuts", cuts as f64);
    s.add("w6.cut.mid", mid as f64);
    s.add("w6.cut.syncs", f64::from(syncs));
    s.add("w6.cut.rt", f64::from(round_trips));
    s.add("w6.cut.records", records as f64);
    Ok(())
}

fn banner_run(banner: &Prepared, run_dir: &Path, s: &mut Samples) -> R<()> {
    eprintln!("  W7 banner bootstrap of {} records", banner.records);
    let db = setup::server_copy(banner, run_dir)?;
    let server = ServerProc::start(&db)?;
    let county = banner.person(Role::CountyReviewer, "")?;
    let code = setup::issue_code(&db, &county.id)?;
    let phone_db = run_dir.join("county.db");
    let c = procs::run_client(
        &server.url,
        &code,
        &phone_db,
        "county-phone",
        protocol::PROTOCOL_VERSION,
    )?;
    if c.records != banner.records as i64 {
        return Err(format!(
            "banner bootstrap brought {} records, expected {}",
            c.records, banner.records
        )
        .into());
    }
    s.add("w7.secs", c.secs);
    s.add("w7.phone_cpu", c.cpu_secs);
    s.add("w7.rt", f64::from(c.round_trips));
    s.add("w7.bytes", (c.bytes_up + c.bytes_down) as f64);
    s.add("w7.phone_kb", c.peak_rss_kb as f64);
    s.add("w7.server_kb", server.peak_rss_kb().unwrap_or(0) as f64);
    let store = Store::open(&phone_db)?;
    let idle = sync(&store, &HttpTransport::new(&server.url)?)?;
    s.add("w7.idle_rt", f64::from(idle.round_trips));
    s.add("w7.idle_bytes", (idle.bytes_up + idle.bytes_down) as f64);
    drop(store);
    setup::checkpoint(&phone_db)?;
    s.add("w7.phone_db", setup::db_bytes(&phone_db) as f64);
    server.stop()?;
    std::fs::remove_file(&db)?;
    Ok(())
}

/// A liaison's field work on their phone: `visits` completed visits (every applicable
/// item answered) and `edits` producer edits, on the village's producers from `salt` on.
fn field_work(store: &Store, person: &Person, visits: usize, edits: usize, salt: usize) -> R<()> {
    let grid = person.grids.first().ok_or("the liaison has no grid")?;
    let producers = store.producers_in_grid(grid, ProducerSort::Name, 500, 0)?;
    if producers.len() < edits.max(1) {
        return Err(format!(
            "{} producers in {grid}, fewer than {edits} to edit",
            producers.len()
        )
        .into());
    }
    let template = store.template(DEFAULT_TEMPLATE_ID, 1)?;
    let now = gridsync_core::now_ms();
    for i in 0..visits {
        let p = store.producer(&producers[(salt + i) % producers.len()].id)?;
        let mut v = Visit::new(&p.id, &p.grid, &person.id, &template, now);
        for item in template
            .items
            .iter()
            .filter(|it| it.applies(p.producer_type))
        {
            let value = match &item.answer {
                AnswerType::Text { .. } => AnswerValue::Text("圈舍卫生良好，档案齐全。".into()),
                AnswerType::Photo => {
                    AnswerValue::Photos(vec![format!("photo/{}.jpg", gridsync_core::new_id())])
                }
                AnswerType::Number { .. } => AnswerValue::Number(12.0),
                _ => AnswerValue::YesNo(YesNoNa::Yes),
            };
            v.answers
                .insert(item.id.clone(), Answer { value, note: None });
        }
        let v = store.save_visit(v)?;
        store.complete_visit(&v.id)?;
    }
    for i in 0..edits {
        // Distinct producers.
        let k = (salt + visits + i) % producers.len();
        let mut p = store.producer(&producers[k].id)?;
        p.phone = format!("139{:08}", (now as usize / 1000 + i * 7919) % 100_000_000);
        for c in p.scale.livestock.values_mut() {
            c.on_hand = Some(c.on_hand.unwrap_or(0) + 5);
        }
        store.update_producer(p)?;
    }
    Ok(())
}

/// A producer edited 100 times on a phone: (stored bytes, compacted save, JSON bytes).
fn hundred_edits(town: &Prepared, run_dir: &Path) -> R<(usize, usize, usize)> {
    let lia = town.person(Role::Liaison, "")?;
    let grid = lia
        .grids
        .first()
        .cloned()
        .ok_or("the liaison has no grid")?;
    let path = run_dir.join("edits.db");
    let store = Store::open(&path)?;
    store.upsert_grids(&town.grids)?;
    store.set_profile(&lia)?;
    let now = gridsync_core::now_ms();
    let mut p = Producer::new(
        "巴特尔家庭牧场",
        ProducerType::FamilyRanch,
        "巴特尔",
        "13912345678",
        &grid,
        &lia.id,
        now,
    );
    p.id_number = Some("11010519491231002X".into());
    p.address = "别力古台镇巴彦嘎查东3公里".into();
    p.products = vec!["羊肉".into()];
    let id = store.create_producer(p)?.id;
    for i in 0..100usize {
        let mut p = store.producer(&id)?;
        match i % 4 {
            0 => p.phone = format!("1391234{:04}", i),
            1 => p.address = format!("别力古台镇巴彦嘎查东{}公里", i + 4),
            2 => {
                let c = p
                    .scale
                    .livestock
                    .entry(gridsync_core::model::Species::SheepGoat)
                    .or_default();
                c.on_hand = Some(100 + i as u32);
            }
            _ => {
                if p.products.len() > 1 {
                    p.products.pop();
                } else {
                    p.products.push("羊绒".into());
                }
            }
        }
        store.update_producer(p)?;
    }
    let json = serde_json::to_string(&Record::Producer(store.producer(&id)?).to_json())?.len();
    drop(store);
    let c = rusqlite::Connection::open(&path)?;
    let (doc, chunks): (Vec<u8>, Vec<Vec<u8>>) = {
        let doc: Vec<u8> =
            c.query_row("SELECT doc FROM records WHERE id = ?1", [&id], |r| r.get(0))?;
        let mut st = c.prepare("SELECT bytes FROM record_chunks WHERE id = ?1 ORDER BY n")?;
        let chunks = st
            .query_map([&id], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<Vec<u8>>>>()?;
        (doc, chunks)
    };
    let stored = doc.len() + chunks.iter().map(Vec::len).sum::<usize>();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let compact = gridsync_core::doc::RecordDoc::load(&doc, &refs)?
        .save()
        .len();
    Ok((stored, compact, json))
}

fn build_table(
    s: &Samples,
    town: &Prepared,
    banner: Option<&Prepared>,
    local: Option<&Vec<external::LocalRow>>,
    ingest: &[external::IngestRow],
) -> Table {
    use report::{bytes, count, fewer, mem_kb, ms, ratio, secs};
    let mut t = Table::default();
    let n = town.records;
    let floor_bytes = town.json_gzip_bytes as f64;

    // W1
    let (w1, fl, am) = (s.med("w1.secs"), s.med("floor.secs"), s.med("am.secs"));
    let (w1c, flc, amc) = (
        s.med("w1.phone_cpu") + s.med("w1.server_cpu"),
        s.med("floor.cpu"),
        s.med("am.cpu"),
    );
    t.row(
        "W1",
        &format!(
            "bootstrap a township ({n} records) onto an empty phone over loopback HTTP: CPU time, phone {} + server {}",
            secs(s.med("w1.phone_cpu")),
            secs(s.med("w1.server_cpu"))
        ),
        secs(w1c),
        format!("floor (JSON rows dumped and inserted in one transaction): {}", secs(flc)),
        ratio(w1c, flc),
        "≤ 3× floor",
        Verdict::of(w1c <= 3.0 * flc),
    );
    t.row(
        "W1",
        "… wall time",
        secs(w1),
        format!("floor: {}", secs(fl)),
        ratio(w1, fl),
        "≤ 3× floor",
        Verdict::of(w1 <= 3.0 * fl),
    );
    t.row(
        "W1",
        &format!(
            "… wall time (CPU time {}) against per-document Automerge sync",
            secs(w1c)
        ),
        secs(w1),
        format!(
            "Automerge sync per document: {} (CPU {})",
            secs(am),
            secs(amc)
        ),
        ratio(w1, am),
        "",
        Verdict::Info,
    );
    let b = s.med("w1.bytes");
    t.row(
        "W1",
        &format!(
            "… bytes (up {} + down {})",
            bytes(s.med("w1.up")),
            bytes(s.med("w1.down"))
        ),
        bytes(b),
        format!(
            "floor: JSON gzip'd {} (raw JSON {})",
            bytes(floor_bytes),
            bytes(town.json_bytes as f64)
        ),
        ratio(b, floor_bytes),
        "≤ 1.5× floor",
        Verdict::of(b <= 1.5 * floor_bytes),
    );
    if s.has("w1v3.bytes") {
        // Protocol 4 (zstd, dictionary) against 3 (gzip), the same bootstrap (issue 20).
        let b3 = s.med("w1v3.bytes");
        t.row(
            "W1",
            "… bytes, protocol 4 (zstd with the records-v1 dictionary) against the floor",
            bytes(b),
            format!("floor: JSON gzip'd {}", bytes(floor_bytes)),
            ratio(b, floor_bytes),
            "≤ 1.0× floor (stretch 0.8×)",
            Verdict::of(b <= floor_bytes),
        );
        t.row(
            "W1",
            &format!(
                "… bytes, protocol 3 (gzip) phone on the same server ({} round trips)",
                count(s.med("w1v3.rt"))
            ),
            bytes(b3),
            format!("floor: JSON gzip'd {}", bytes(floor_bytes)),
            ratio(b3, floor_bytes),
            "",
            Verdict::Info,
        );
        t.row(
            "W1",
            &format!(
                "… CPU, protocol 4: phone {} + server {}; protocol 3: phone {} + server {}",
                secs(s.med("w1.phone_cpu")),
                secs(s.med("w1.server_cpu")),
                secs(s.med("w1v3.phone_cpu")),
                secs(s.med("w1v3.server_cpu"))
            ),
            secs(s.med("w1.phone_cpu") + s.med("w1.server_cpu")),
            format!(
                "protocol 3: {}",
                secs(s.med("w1v3.phone_cpu") + s.med("w1v3.server_cpu"))
            ),
            ratio(
                s.med("w1.phone_cpu") + s.med("w1.server_cpu"),
                s.med("w1v3.phone_cpu") + s.med("w1v3.server_cpu"),
            ),
            "",
            Verdict::Info,
        );
        t.row(
            "W1",
            &format!(
                "… the phone's decompression CPU, protocol 4 (zstd): per page (median of {}) {}",
                count(s.med("w1.pages")),
                ms(s.med("w1.decompress_page") * 1e3)
            ),
            secs(s.med("w1.decompress")),
            format!(
                "protocol 3 (gzip): {} (per page {})",
                secs(s.med("w1v3.decompress")),
                ms(s.med("w1v3.decompress_page") * 1e3)
            ),
            ratio(s.med("w1.decompress"), s.med("w1v3.decompress")),
            "",
            Verdict::Info,
        );
    }
    if s.has("anat.sent") {
        // Where the bytes go (run 1): pages of documents against variants, all gzip'd alike.
        let (sent, bare, json) = (s.med("anat.sent"), s.med("anat.bare"), s.med("anat.json"));
        t.row(
            "W1",
            "… where the bytes go: the pages' ids and documents gzip'd without postcard framing, as protocol v2 sends them (bare)",
            bytes(bare),
            format!("the same records as JSON, same order and pages: {}", bytes(json)),
            ratio(bare, json),
            "",
            Verdict::Info,
        );
        t.row(
            "W1",
            "… the same pages as protocol v1 sent them (documents with checksums and head hashes, and the heads again)",
            bytes(sent),
            format!("{:.0} B per record more than v2", (sent - bare) / n as f64),
            ratio(sent, json),
            "",
            Verdict::Info,
        );
    }
    let amb = s.med("am.bytes");
    t.row(
        "W1",
        "… bytes against per-document Automerge sync",
        bytes(b),
        format!("Automerge sync per document: {}", bytes(amb)),
        fewer(b, amb),
        "≥ 3× fewer",
        Verdict::of(amb >= 3.0 * b),
    );
    let (rt, amrt) = (s.med("w1.rt"), s.med("am.rt"));
    t.row(
        "W1",
        "… round trips",
        count(rt),
        format!("Automerge sync per document: {}", count(amrt)),
        fewer(rt, amrt),
        "≥ 20× fewer",
        Verdict::of(amrt >= 20.0 * rt),
    );
    t.row(
        "W1",
        "… peak memory, phone process",
        mem_kb(s.med("w1.phone_kb")),
        String::new(),
        String::new(),
        "",
        Verdict::Info,
    );
    t.row(
        "W1",
        "… peak memory, server process",
        mem_kb(s.med("w1.server_kb")),
        String::new(),
        String::new(),
        "",
        Verdict::Info,
    );

    // W2
    let change = s.med("w2.change");
    let budget = 2.0 * change + 1000.0;
    for (key, what) in [
        ("w2.pull", "10 records changed by another phone, pulled"),
        ("w2.push", "10 local edits pushed"),
    ] {
        let rt = s.med(&format!("{key}_rt"));
        t.row(
            "W2",
            &format!("incremental, {what}: round trips"),
            count(rt),
            String::new(),
            String::new(),
            "≤ 2",
            Verdict::of(rt <= 2.0),
        );
        let b = s.med(&format!("{key}_bytes"));
        t.row(
            "W2",
            "… bytes (up + down)",
            bytes(b),
            format!(
                "change bytes (Automerge chunks of the edits): {}",
                bytes(change)
            ),
            ratio(b, change),
            &format!("≤ 2× change + 1 KB = {}", bytes(budget)),
            Verdict::of(b <= budget),
        );
    }

    // W3
    let rt = s.med("w3.rt");
    t.row(
        "W3",
        "idle sync: round trips",
        count(rt),
        String::new(),
        String::new(),
        "1",
        Verdict::of(rt <= 1.0),
    );
    let b = s.med("w3.bytes");
    t.row(
        "W3",
        "idle sync: bytes (up + down)",
        bytes(b),
        String::new(),
        String::new(),
        "≤ 1 KB",
        Verdict::of(b <= 1000.0),
    );

    // W4
    if let Some(rows) = local {
        for r in rows.iter().filter(|r| {
            r.label.starts_with("(a)")
                || r.label.starts_with("(b)")
                || r.label.contains("database growth")
        }) {
            let unit_ms = r.label.ends_with("ms");
            let fmt = |v: f64| {
                if unit_ms {
                    report::ms(v)
                } else if r.label.contains("bytes") {
                    bytes(v)
                } else {
                    format!("{v:.0}")
                }
            };
            let verdict = if r.target.ends_with("NOT met") {
                Verdict::Missed
            } else if r.target.ends_with("met") {
                Verdict::Met
            } else {
                Verdict::Info
            };
            let target = r
                .target
                .rsplit_once(':')
                .map(|x| x.0.to_string())
                .unwrap_or_default();
            t.row(
                "W4",
                &format!("local write (bench-local): {}", r.label),
                fmt(r.gridsync),
                format!("plain rusqlite + JSON: {}", fmt(r.plain)),
                ratio(r.gridsync, r.plain),
                &target,
                verdict,
            );
        }
    }

    // W5
    for r in ingest {
        let burst = r.sizes.contains("released at once");
        let judged = |ok: bool| {
            if burst {
                Verdict::of(ok)
            } else {
                Verdict::Info
            }
        };
        t.row(
            "W5",
            &format!("server ingest (ingest example), {}: {}", r.backend, r.sizes),
            format!("{:.0} records/s", r.rate),
            String::new(),
            String::new(),
            if burst { "≥ 5,000 records/s" } else { "" },
            judged(r.rate >= 5000.0),
        );
        t.row(
            "W5",
            &format!(
                "… push request latency p99 (p50 {:.1} ms; {:.0} µs of process CPU per record)",
                r.p50_ms, r.cpu_us
            ),
            format!("{:.1} ms", r.p99_ms),
            String::new(),
            String::new(),
            if burst { "≤ 250 ms" } else { "" },
            judged(r.p99_ms <= 250.0),
        );
    }

    // W6
    for (key, what, limit) in [
        (
            "w6.day",
            "a liaison's day (5 visits, 2 producer edits)",
            5.0,
        ),
        ("w6.week", "a liaison's week (35 visits, 14 edits)", 20.0),
    ] {
        let v = s.med(&format!("{key}.secs"));
        t.row(
            "W6",
            &format!(
                "slow link (300 ms one way, 64 kbit/s): {what}: seconds to sync ({} round trips, up {}, down {})",
                count(s.med(&format!("{key}.rt"))),
                bytes(s.med(&format!("{key}.up"))),
                bytes(s.med(&format!("{key}.down")))
            ),
            secs(v),
            String::new(),
            String::new(),
            &format!("≤ {limit} s"),
            Verdict::of(v <= limit),
        );
    }
    if s.has("w6.boot.secs") {
        t.row(
            "W6",
            &format!(
                "… a liaison's first bootstrap of their village ({} records, {}) over the slow link (1 run)",
                count(s.med("w6.boot.records")),
                bytes(s.med("w6.boot.bytes"))
            ),
            secs(s.med("w6.boot.secs")),
            String::new(),
            String::new(),
            "",
            Verdict::Info,
        );
    }
    if s.has("w6.boot3.secs") {
        let (v4, v3) = (s.med("w6.boot.secs"), s.med("w6.boot3.secs"));
        t.row(
            "W6",
            &format!(
                "… the same village bootstrap, protocol 4 ({}) against protocol 3 ({}, {} round trips) (1 run each)",
                bytes(s.med("w6.boot.bytes")),
                bytes(s.med("w6.boot3.bytes")),
                count(s.med("w6.boot3.rt"))
            ),
            secs(v4),
            format!("protocol 3: {}", secs(v3)),
            ratio(v4, v3),
            "≤ 10 s",
            Verdict::of(v4 <= 10.0),
        );
    }
    if s.has("w6.cut.secs") {
        let (down, lost) = (s.med("w6.cut.down"), s.med("w6.cut.lost"));
        let share = lost / down;
        t.row(
            "W6",
            &format!(
                "… a township bootstrap ({} records) over the slow link cut every {} s: bytes received twice, of {} received ({} cuts, {} of them mid-answer; {} round trips, {} syncs, 1 run)",
                count(s.med("w6.cut.records")),
                CUT_EVERY.as_secs(),
                bytes(down),
                count(s.med("w6.cut.cuts")),
                count(s.med("w6.cut.mid")),
                count(s.med("w6.cut.rt")),
                count(s.med("w6.cut.syncs")),
            ),
            format!("{:.1} %", share * 100.0),
            String::new(),
            String::new(),
            "≤ 10 %",
            Verdict::of(share <= 0.10),
        );
        t.row(
            "W6",
            "… its wall time (finished; the link alone needs the bytes received / 8 kB/s)",
            secs(s.med("w6.cut.secs")),
            format!("link floor: {}", secs(down / SLOW_LINK.bytes_per_sec)),
            ratio(s.med("w6.cut.secs"), down / SLOW_LINK.bytes_per_sec),
            "",
            Verdict::Info,
        );
    }

    // W8, W9
    if s.has("w8.secs") {
        let photo = s.med("w8.photo_bytes");
        let v = s.med("w8.records_secs");
        t.row(
            "W8",
            &format!(
                "a liaison's visits with 3 photos each ({} of photos) over the slow link cut every {} s: seconds until the visits are on the server (1 run)",
                bytes(photo),
                crate::photos::PHOTO_CUT_EVERY.as_secs()
            ),
            secs(v),
            String::new(),
            String::new(),
            "≤ 20 s",
            Verdict::of(v <= 20.0),
        );
        let extra = s.med("w8.extra");
        t.row(
            "W8",
            &format!(
                "… bytes the link carried beyond the photos after the visits ({} cuts, {} syncs; request headers included)",
                count(s.med("w8.cuts")),
                count(s.med("w8.syncs"))
            ),
            format!("{:.2} %", extra / photo * 100.0),
            bytes(extra),
            String::new(),
            "≤ 1 %",
            Verdict::of(extra <= photo * 0.01),
        );
        let usage = s.med("w8.link_use");
        t.row(
            "W8",
            &format!(
                "… link use while the photos went up ({} of photos in {}; 64 kbit/s carries 8 kB/s)",
                bytes(photo),
                secs(s.med("w8.upload_secs"))
            ),
            format!("{:.1} %", usage * 100.0),
            String::new(),
            String::new(),
            "≥ 90 %",
            Verdict::of(usage >= 0.90),
        );
    }
    if s.has("w9.mb_per_s") {
        for (sfx, what) in [("", "photos"), ("_large", "photos four times as large")] {
            t.row(
                "W9",
                &format!(
                    "server ingest from many devices at once over loopback, {what} ({} in all; the visits pushed before): MB/s (1 run)",
                    bytes(s.med(&format!("w9.bytes{sfx}")))
                ),
                format!("{:.1} MB/s", s.med(&format!("w9.mb_per_s{sfx}"))),
                String::new(),
                String::new(),
                "",
                Verdict::Info,
            );
            t.row(
                "W9",
                "… one append's latency, p99",
                ms(s.med(&format!("w9.p99_ms{sfx}"))),
                String::new(),
                String::new(),
                "",
                Verdict::Info,
            );
        }
        let first = (s.med("w9.rss_first_kb") - s.med("w9.rss_before_kb")) * 1024.0;
        let grew = (s.med("w9.rss_second_kb") - s.med("w9.rss_first_kb")) * 1024.0;
        t.row(
            "W9",
            &format!(
                "… the server's peak memory grew, in the second burst, by (the first, from {}, by {}: buffers of the connections and threads)",
                mem_kb(s.med("w9.rss_before_kb")),
                bytes(first.max(0.0))
            ),
            bytes(grew.max(0.0)),
            format!("uploaded in it: {}", bytes(s.med("w9.bytes_large"))),
            ratio(grew.max(0.0), s.med("w9.bytes_large")),
            "≤ 1/10 (memory does not grow with the photos)",
            Verdict::of(grew <= s.med("w9.bytes_large") / 10.0),
        );
    }

    // W10
    for (what, key) in [
        ("the township's first page of 50 producers", "list"),
        ("a producer's page (the producer and its visits)", "prod"),
    ] {
        let (p99, before) = (
            s.med(&format!("w10.{key}_p99")),
            s.med(&format!("w10w.{key}_p99")),
        );
        t.row(
            "W10",
            &format!(
                "{what}, read on a second thread every 2 ms during a township bootstrap ({} round trips, {} reads, {}): p99 (p50 {})",
                count(s.med("w10.rt")),
                count(s.med("w10.reads")),
                secs(s.med("w10.secs")),
                ms(s.med(&format!("w10.{key}_p50")))
            ),
            ms(p99),
            format!(
                "reads on the writer connection (before the read pool): p99 {} (p50 {}, bootstrap {})",
                ms(before),
                ms(s.med(&format!("w10w.{key}_p50"))),
                secs(s.med("w10w.secs"))
            ),
            ratio(p99, before),
            "≤ 20 ms",
            Verdict::of(p99 <= 20.0),
        );
    }
    t.row(
        "W10",
        "… the slowest first page of 50 producers during the bootstrap",
        ms(s.med("w10.list_max")),
        format!("on the writer: {}", ms(s.med("w10w.list_max"))),
        ratio(s.med("w10.list_max"), s.med("w10w.list_max")),
        "",
        Verdict::Info,
    );

    // W7
    if let Some(b) = banner {
        let v = s.med("w7.secs");
        t.row(
            "W7",
            &format!(
                "banner ({} records) onto a county reviewer's phone: wall time (phone CPU {})",
                b.records,
                secs(s.med("w7.phone_cpu"))
            ),
            secs(v),
            String::new(),
            String::new(),
            "",
            Verdict::Info,
        );
        let by = s.med("w7.bytes");
        t.row(
            "W7",
            &format!("… bytes ({} round trips)", count(s.med("w7.rt"))),
            bytes(by),
            format!("floor: JSON gzip'd {}", bytes(b.json_gzip_bytes as f64)),
            ratio(by, b.json_gzip_bytes as f64),
            "",
            Verdict::Info,
        );
        let pm = s.med("w7.phone_kb");
        t.row(
            "W7",
            "… peak memory, phone process",
            mem_kb(pm),
            String::new(),
            String::new(),
            "≤ 150 MB",
            Verdict::of(pm * 1024.0 <= 150e6),
        );
        let sm = s.med("w7.server_kb");
        t.row(
            "W7",
            "… peak memory, server process",
            mem_kb(sm),
            String::new(),
            String::new(),
            "≤ 200 MB",
            Verdict::of(sm * 1024.0 <= 200e6),
        );
        t.row(
            "W7",
            &format!(
                "… idle sync afterwards ({} round trips)",
                count(s.med("w7.idle_rt"))
            ),
            bytes(s.med("w7.idle_bytes")),
            String::new(),
            String::new(),
            "",
            Verdict::Info,
        );
        t.row(
            "W7",
            "… phone database size",
            bytes(s.med("w7.phone_db")),
            String::new(),
            String::new(),
            "",
            Verdict::Info,
        );
    }

    // Storage
    let (pr, fr) = (s.med("st.phone_per_record"), s.med("st.floor_per_record"));
    t.row(
        "Storage",
        "phone database bytes per record after the township bootstrap (documents, query tables, indexes)",
        bytes(pr),
        format!("plain SQLite of the JSON rows: {}", bytes(fr)),
        ratio(pr, fr),
        "≤ 2×",
        Verdict::of(pr <= 2.0 * fr),
    );
    let (vd, vj) = (s.med("st.visit_doc"), s.med("st.visit_json"));
    t.row(
        "Storage",
        "a visit's Automerge document",
        bytes(vd),
        format!("its JSON: {}", bytes(vj)),
        ratio(vd, vj),
        "≤ 2×",
        Verdict::of(vd <= 2.0 * vj),
    );
    let (st, co, js) = (
        s.med("st.p100_stored"),
        s.med("st.p100_compact"),
        s.med("st.p100_json"),
    );
    t.row(
        "Storage",
        &format!(
            "a producer after 100 edits: stored (save + chunks; compacted save {})",
            bytes(co)
        ),
        bytes(st),
        format!("its JSON: {}", bytes(js)),
        ratio(st, js),
        "",
        Verdict::Info,
    );
    t
}
