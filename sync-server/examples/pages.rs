//! Server-side timings of the desk console's page queries on the query tables, at banner
//! scale (`DatasetSpec::banner`: 10 townships, 15,000 producers, 180,000 visits).
//!
//! `cargo run --release -p gridsync-server --example pages -- --db /tmp/banner.db`
//!
//! The banner is loaded through the validated push path into `--db` when the file does not
//! exist yet (about 2.5 minutes), then reused. The generated producers are all drafts, so
//! one in eight is marked submitted in its query row (for a review queue with entries).
//! Each page query runs `--runs` times on the storage API (a read transaction each, rows
//! mapped to typed rows), with a township or producer picked at random per run; printed:
//! p50 and p99 in milliseconds. Then one rebuild of every query row from the documents.
//!
//! With `--http`, the console's pages are also timed whole, as the server serves them: a
//! server with the desk on loopback over the same file, a county reviewer and a supervisor
//! signed in, each page requested `--runs` times over HTTP (session check, scope, queries,
//! documents read for the producer's history, template rendering, the response read).

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use gridsync_core::model::{ProducerType, RiskLevel};
use gridsync_server::dataset::{generate, DatasetSpec, Rng};
use gridsync_server::storage::sqlite::SqliteStorage;
use gridsync_server::storage::{DirectoryFilter, PageReq, ReviewLevel, Storage, VisitFilter};

#[derive(Parser, Debug)]
#[command(about = "gridsync page query timings at banner scale")]
struct Args {
    /// The SQLite database (created with the banner when missing).
    #[arg(long)]
    db: PathBuf,
    /// Runs per query.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Also time a rebuild of every query row.
    #[arg(long)]
    rebuild: bool,
    /// Also time the console's pages over HTTP.
    #[arg(long)]
    http: bool,
    /// Also time the dashboard's figures for the whole banner (every figure, a year).
    #[arg(long)]
    dashboard: bool,
    /// Also time the exports of the whole banner (directory and visits, XLSX and CSV) and
    /// their peak memory; when the database exists they run first, before the dataset is
    /// generated in memory, so the peaks are the exports' own.
    #[arg(long)]
    export: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.export && args.db.exists() {
        export_figures(&args)?;
    }
    let data = generate(&DatasetSpec::banner(7));
    if !args.db.exists() {
        let started = Instant::now();
        let s = SqliteStorage::open(&args.db)?;
        gridsync_server::demo::load_dataset(&s, &data)?;
        drop(s);
        let c = rusqlite::Connection::open(&args.db)?;
        c.execute(
            "UPDATE q_producers SET review_state = 'submitted', review_at_ms = created_at_ms
             WHERE substr(id, 1, 1) IN ('0', '1')",
            [],
        )?;
        eprintln!(
            "loaded {} producers and {} visits in {:.1} s",
            data.producers.len(),
            data.visits.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let s = SqliteStorage::open(&args.db)?;
    let snapshot_counts: Vec<(String, i64)> = s.record_counts()?;
    println!(
        "pages: banner {snapshot_counts:?}, {} runs per query, release build",
        args.runs
    );
    let townships: Vec<Vec<String>> = data
        .townships()
        .map(|t| s.grid_subtree(std::slice::from_ref(&t.code)))
        .collect::<Result<_, _>>()?;
    let banner = s.grid_subtree(&[data.banner().code.clone()])?;
    let villages: Vec<String> = data.villages().map(|g| g.code.clone()).collect();
    let inspectors: Vec<String> = data.people.iter().map(|p| p.id.clone()).collect();
    let mut rng = Rng::new(11);
    type Query<'a> = Box<dyn FnMut(&mut Rng) -> usize + 'a>;
    let page = PageReq::first(50);
    let mut queries: Vec<(&str, Query<'_>)> = vec![
        (
            "directory: a township, family ranches of low risk, by name, 50 rows",
            Box::new(|rng| {
                let f = DirectoryFilter {
                    grids: rng.pick(&townships).clone(),
                    producer_type: Some(ProducerType::FamilyRanch),
                    risk: Some(RiskLevel::Low),
                    ..Default::default()
                };
                s.directory(&f, page).expect("page query").rows.len()
            }),
        ),
        (
            "directory: a township, by name, page 10 (offset 450)",
            Box::new(|rng| {
                let f = DirectoryFilter {
                    grids: rng.pick(&townships).clone(),
                    ..Default::default()
                };
                s.directory(
                    &f,
                    PageReq {
                        limit: 50,
                        offset: 450,
                    },
                )
                .expect("page query")
                .rows
                .len()
            }),
        ),
        (
            "directory: the whole banner, search '家庭牧场', 50 rows",
            Box::new(|_| {
                let f = DirectoryFilter {
                    grids: banner.clone(),
                    search: Some("家庭牧场".into()),
                    ..Default::default()
                };
                s.directory(&f, page).expect("page query").rows.len()
            }),
        ),
        (
            "directory: the whole banner, search a phone's last 4 digits",
            Box::new(|rng| {
                let p = rng.pick(&data.producers);
                let f = DirectoryFilter {
                    grids: banner.clone(),
                    search: Some(p.phone[7..].to_string()),
                    ..Default::default()
                };
                s.directory(&f, page).expect("page query").rows.len()
            }),
        ),
        (
            "review queue: a township, township level, 50 rows",
            Box::new(|rng| {
                s.review_queue(
                    rng.pick::<Vec<String>>(&townships),
                    ReviewLevel::Township,
                    page,
                )
                .expect("page query")
                .rows
                .len()
            }),
        ),
        (
            "review queue: the whole banner, township level, 50 rows",
            Box::new(|_| {
                s.review_queue(&banner, ReviewLevel::Township, page)
                    .expect("page query")
                    .rows
                    .len()
            }),
        ),
        (
            "a producer's page: row, review steps, visits (50)",
            Box::new(|rng| {
                let p = rng.pick(&data.producers);
                let row = s.query_producer(&p.id).expect("page query");
                let steps = s.producer_reviews(&p.id).expect("page query");
                let visits = s.producer_visits(&p.id, page).expect("page query");
                usize::from(row.is_some()) + steps.len() + visits.rows.len()
            }),
        ),
        (
            "visits: a village, newest first, 50 rows",
            Box::new(|rng| {
                let f = VisitFilter {
                    grids: vec![rng.pick(&villages).clone()],
                    ..Default::default()
                };
                s.visits(&f, page).expect("page query").rows.len()
            }),
        ),
        (
            "visits: a township, one month (the dataset's last round of patrols), 50 rows",
            Box::new(|rng| {
                let from = gridsync_server::dataset::DATASET_EPOCH_MS - 60 * 86_400_000;
                let f = VisitFilter {
                    grids: rng.pick(&townships).clone(),
                    from_ms: Some(from),
                    to_ms: Some(from + 30 * 86_400_000),
                    ..Default::default()
                };
                s.visits(&f, page).expect("page query").rows.len()
            }),
        ),
        (
            "visits: an inspector in their township, 50 rows",
            Box::new(|rng| {
                let f = VisitFilter {
                    grids: banner.clone(),
                    inspector: Some(rng.pick(&inspectors).clone()),
                    ..Default::default()
                };
                s.visits(&f, page).expect("page query").rows.len()
            }),
        ),
        (
            "visits: a township, newest first, 50 rows (18,000 visits sorted)",
            Box::new(|rng| {
                let f = VisitFilter {
                    grids: rng.pick(&townships).clone(),
                    ..Default::default()
                };
                s.visits(&f, page).expect("page query").rows.len()
            }),
        ),
        (
            "open rectifications: a township, 50 rows",
            Box::new(|rng| {
                s.open_rectifications(
                    rng.pick::<Vec<String>>(&townships),
                    "2026-01-01",
                    false,
                    page,
                )
                .expect("page query")
                .rows
                .len()
            }),
        ),
    ];
    println!("| page query | rows | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (what, q) in queries.iter_mut() {
        // Warm the statement cache and the pages.
        for _ in 0..5 {
            q(&mut rng);
        }
        let mut times = Vec::with_capacity(args.runs);
        let mut rows = 0;
        for _ in 0..args.runs {
            let t = Instant::now();
            rows += q(&mut rng);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {what} | {:.0} | {:.2} | {:.2} |",
            rows as f64 / args.runs as f64,
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    drop(queries);
    if args.http {
        http_pages(&args, &data, &townships)?;
    }
    if args.dashboard {
        dashboard_figures(&s, &data, args.runs)?;
    }
    if args.rebuild {
        let t = Instant::now();
        let r = s.rebuild_query_tables()?;
        println!(
            "rebuild of every query row: {:.1} s ({} records, {} producers, {} visits)",
            t.elapsed().as_secs_f64(),
            r.records,
            r.producers,
            r.visits
        );
    }
    Ok(())
}

/// A signed-in desk client: the session cookie sent by hand.
struct DeskClient {
    http: reqwest::blocking::Client,
    base: String,
    cookie: String,
}

impl DeskClient {
    fn sign_in(
        base: &str,
        username: &str,
        password: &str,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let http = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let form = http.get(format!("{base}/desk/login")).send()?;
        let cookie = |r: &reqwest::blocking::Response, name: &str| -> Option<String> {
            r.headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|c| c.starts_with(&format!("{name}=")))
                .and_then(|c| c.split(';').next())
                .map(str::to_string)
        };
        let form_cookie = cookie(&form, "gridsync_desk_form").ok_or("no form cookie")?;
        let body = form.text()?;
        let csrf = body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .ok_or("no csrf field")?
            .to_string();
        let r = http
            .post(format!("{base}/desk/login"))
            .header("cookie", form_cookie)
            .form(&[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
            ])
            .send()?;
        let session = cookie(&r, "gridsync_desk").ok_or("sign-in failed")?;
        Ok(DeskClient {
            http,
            base: base.to_string(),
            cookie: session,
        })
    }

    /// One page: its body's length; anything but 200 is an error.
    fn get(&self, path: &str) -> Result<usize, String> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.bytes().map_err(|e| e.to_string())?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("{path}: {status}"));
        }
        Ok(body.len())
    }
}

/// The console's pages over HTTP, whole.
fn http_pages(
    args: &Args,
    data: &gridsync_server::dataset::Dataset,
    townships: &[Vec<String>],
) -> Result<(), Box<dyn std::error::Error>> {
    use gridsync_core::model::Role;
    let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::new(SqliteStorage::open(&args.db)?);
    const PASSWORD: &str = "bench-password-0001";
    let county = data
        .person(Role::CountyReviewer)
        .ok_or("no county reviewer")?;
    let supervisor = data.person(Role::Supervisor).ok_or("no supervisor")?;
    gridsync_server::admin::set_desk_password(
        storage.as_ref(),
        &county.id,
        "bench-county",
        PASSWORD,
        "bench",
    )?;
    gridsync_server::admin::set_desk_password(
        storage.as_ref(),
        &supervisor.id,
        "bench-sup",
        PASSWORD,
        "bench",
    )?;
    let state = std::sync::Arc::new(gridsync_server::api::AppState::new(storage));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            gridsync_server::serve_state(listener, state, async {
                stopped.await.ok();
            })
            .await
            .expect("serve");
        });
    });
    let cty = DeskClient::sign_in(&base, "bench-county", PASSWORD)?;
    let sup = DeskClient::sign_in(&base, "bench-sup", PASSWORD)?;
    let township_codes: Vec<&String> = townships.iter().filter_map(|t| t.first()).collect();
    let mut rng = Rng::new(17);
    type Page<'a> = Box<dyn FnMut(&mut Rng) -> Result<usize, String> + 'a>;
    let mut pages: Vec<(&str, Page<'_>)> = vec![
        (
            "directory page: a township, family ranches of low risk, 50 rows (county reviewer)",
            Box::new(|rng| {
                let t = rng.pick(&township_codes);
                cty.get(&format!("/desk/directory?grid={t}&type=family_ranch&risk=low"))
            }),
        ),
        (
            "directory page: the whole banner, 50 rows by name (county reviewer)",
            Box::new(|_| cty.get("/desk/directory")),
        ),
        (
            "review queue page: the banner, county and township levels, 50 rows each (county reviewer)",
            Box::new(|_| cty.get("/desk/reviews")),
        ),
        (
            "review queue page: the township, 50 rows (supervisor)",
            Box::new(|_| sup.get("/desk/reviews")),
        ),
        (
            "a producer's page: fields, review and field-level history, conflicts, visits",
            Box::new(|rng| {
                let p = rng.pick(&data.producers);
                cty.get(&format!("/desk/producers/{}", p.id))
            }),
        ),
        (
            "a visit's page: answers, findings, rapid tests, rectification",
            Box::new(|rng| {
                let v = rng.pick(&data.visits);
                cty.get(&format!("/desk/visits/{}", v.id))
            }),
        ),
        (
            "open rectifications page: the banner, 50 rows (county reviewer)",
            Box::new(|_| cty.get("/desk/rectifications")),
        ),
    ];
    println!();
    println!("| page over HTTP | KB | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (what, page) in pages.iter_mut() {
        for _ in 0..5 {
            page(&mut rng)?;
        }
        let mut times = Vec::with_capacity(args.runs);
        let mut bytes = 0;
        for _ in 0..args.runs {
            let t = Instant::now();
            bytes += page(&mut rng)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {what} | {:.1} | {:.2} | {:.2} |",
            bytes as f64 / args.runs as f64 / 1024.0,
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    drop(pages);
    stop.send(()).ok();
    server.join().ok();
    Ok(())
}

/// A line of `/proc/self/status` in kB (`VmHWM`: the peak resident set, `VmRSS`: now).
fn status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak resident set to the current one (Linux: `5` to `clear_refs`).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Counts the bytes written and drops them.
struct Counted(u64);

impl std::io::Write for Counted {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exports the directory and the visits of every grid as XLSX and CSV to a counting sink:
/// time, rows, bytes, and the process's peak resident set before and during each.
fn export_figures(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    use gridsync_server::reports::export::{write_export, ExportFormat, ExportKind, ExportRequest};
    let s = SqliteStorage::open(&args.db)?;
    let mut grids: Vec<String> = s.grids()?.into_iter().map(|g| g.code).collect();
    grids.sort();
    println!(
        "exports of the whole banner ({} grids), release build; peak RSS before {} kB (now {} kB)",
        grids.len(),
        status_kb("VmHWM:").unwrap_or(0),
        status_kb("VmRSS:").unwrap_or(0)
    );
    for format in [ExportFormat::Xlsx, ExportFormat::Csv] {
        for kind in [ExportKind::Directory, ExportKind::Visits] {
            let reset = reset_peak();
            let before = status_kb("VmHWM:").unwrap_or(0);
            let req = ExportRequest {
                kind,
                format,
                grids: grids.clone(),
                period: Default::default(),
                today: gridsync_core::dates::china_date(gridsync_core::now_ms()),
            };
            let mut out = Counted(0);
            let t = Instant::now();
            let done = write_export(&s, &req, &mut out)?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "export {} {}: {} rows, {:.1} MB, {:.2} s ({:.0} rows/s); peak RSS {} kB before, {} kB after{}",
                kind.as_str(),
                format.ext(),
                done.rows,
                out.0 as f64 / 1e6,
                secs,
                done.rows as f64 / secs,
                before,
                status_kb("VmHWM:").unwrap_or(0),
                if reset { " (peak reset before)" } else { " (peak not resettable: process-wide)" }
            );
        }
    }
    Ok(())
}

/// The dashboard's figures for the whole banner (`reports::figures`: every tally in one
/// read transaction, rolled up to the townships), for a county reviewer of the banner:
/// the last full year of the dataset and this year to date; medians and maxima in ms.
fn dashboard_figures(
    s: &SqliteStorage,
    data: &gridsync_server::dataset::Dataset,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use gridsync_server::reports::figures::{figures, Period};
    let nodes = s.grids()?;
    let people = s.people()?;
    let county = data
        .person(gridsync_core::model::Role::CountyReviewer)
        .ok_or("no county reviewer")?;
    let tree = std::sync::Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes));
    let scope = gridsync_server::scope::Scope::compute(&nodes, &people, county, tree);
    let now = gridsync_core::now_ms();
    let today = gridsync_core::dates::china_date(now);
    let banner = data.banner().code.clone();
    println!();
    println!("| dashboard figures, whole banner | p50 ms | max ms | visits counted |");
    println!("|---|---:|---:|---:|");
    for (what, from, to) in [
        ("2025 (a full year)", Some("2025-01-01"), Some("2025-12-31")),
        ("this year to date", None, None),
    ] {
        let period = Period::parse(from, to, &today)?;
        let mut times = Vec::with_capacity(runs);
        let mut visits = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let f = figures(s, &scope, Some(&banner), &period, now)?.ok_or("out of scope")?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            visits = f.total.visits;
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {what} | {:.1} | {:.1} | {visits} |",
            percentile(&times, 0.5),
            times[times.len() - 1]
        );
    }
    Ok(())
}
