//! Evidence photos (issue 13):
//!
//! - **W8**: a liaison's visits with three photos each, recorded offline, synced over the
//!   slow link (300 ms one way, 64 kbit/s) cut every 60 s; the app syncs again whenever a
//!   sync ends with photos left. Measured: seconds until the visits are on the server,
//!   bytes the link carried beyond the photos after the records, and how much of the link's
//!   rate the photos used while they went up.
//! - **W9**: server ingest of photos from many devices at once (each device's visit pushed
//!   first), over loopback: megabytes per second, the p99 of one append, and the server's
//!   peak memory before and after (it must not hold whole attachments).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use gridsync_core::attachment::AttachmentRef;
use gridsync_core::model::{Finding, Person, Role, Severity, Visit, DEFAULT_TEMPLATE_ID};
use gridsync_core::store::{ProducerSort, Store};
use gridsync_core::sync::{enroll, CancelFlag, HttpTransport, SyncEngine, SyncOptions};

use crate::procs::ServerProc;
use crate::report::Samples;
use crate::setup::{self, Prepared};
use crate::shaper::{Link, ShapingProxy};
use crate::R;

/// How often the link drops in W8.
pub const PHOTO_CUT_EVERY: Duration = Duration::from_secs(60);

/// A JPEG-looking photo: the JPEG signature and incompressible bytes (as a real JPEG's
/// entropy-coded data is), different for each `seed`.
pub fn photo(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut b = Vec::with_capacity(size + 8);
    b.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    while b.len() < size {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        b.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    b.truncate(size);
    b
}

/// Records `visits` visits of `person` (one per producer of their grid from `salt` on),
/// each with a finding showing `per_visit` photos of `size` bytes. Returns the references.
pub fn visits_with_photos(
    store: &Store,
    person: &Person,
    visits: usize,
    per_visit: usize,
    size: usize,
    salt: u64,
) -> R<Vec<AttachmentRef>> {
    let grid = person.grids.first().ok_or("the person has no grid")?;
    let producers = store.producers_in_grid(grid, ProducerSort::Name, 500, 0)?;
    if producers.is_empty() {
        return Err(format!("no producers in {grid}").into());
    }
    let template = store.template(DEFAULT_TEMPLATE_ID, 1)?;
    let mut refs = Vec::new();
    for i in 0..visits {
        let p = &producers[i % producers.len()];
        let now = gridsync_core::now_ms();
        let mut v = Visit::new(&p.id, &p.grid, &person.id, &template, now);
        let mut photos = Vec::new();
        for j in 0..per_visit {
            let seed = salt * 1_000_000 + (i * per_visit + j) as u64;
            let r = store.add_attachment(&photo(size, seed), Some("image/jpeg"))?;
            photos.push(r.to_string());
            refs.push(r);
        }
        v.findings.push(Finding {
            id: gridsync_core::new_id(),
            item_id: None,
            description: "兽药与饲料混放，已拍照取证。".into(),
            severity: Severity::Major,
            photos,
            recorded_by: person.id.clone(),
            recorded_at_ms: now,
        });
        store.save_visit(v)?;
    }
    Ok(refs)
}

/// Visits of `grid` the server holds (read from its database file).
fn server_visits(db: &Path, grid: &str) -> R<i64> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(Duration::from_secs(5))?;
    Ok(c.query_row(
        "SELECT COUNT(*) FROM records WHERE kind = 'visit' AND grid = ?1",
        [grid],
        |r| r.get(0),
    )?)
}

/// W8. `visits` visits with three photos of `size` bytes by the liaison of village
/// `village`, synced through the slow link cut every [`PHOTO_CUT_EVERY`].
pub fn liaison_photos(
    town: &Prepared,
    db: &Path,
    url: &str,
    village: &str,
    link: Link,
    (visits, size): (usize, usize),
    run_dir: &Path,
    s: &mut Samples,
) -> R<()> {
    let lia = town.person(Role::Liaison, village)?;
    let grid = lia.grids.first().cloned().ok_or("no grid")?;
    eprintln!(
        "  W8 {visits} visits with 3 photos of {} KB each over the slow link, cut every {} s",
        size / 1000,
        PHOTO_CUT_EVERY.as_secs()
    );
    let store = Store::open(run_dir.join("liaison-w8.db"))?;
    let direct = HttpTransport::new(url)?;
    let code = setup::issue_code(db, &lia.id)?;
    enroll(&store, &direct, url, &code, "liaison-w8")?;
    SyncEngine::new(&store, &direct).sync(&mut |_| {}, &CancelFlag::new())?;
    let before = server_visits(db, &grid)?;
    let refs = visits_with_photos(&store, &lia, visits, 3, size, 8)?;
    let photo_bytes: u64 = refs.iter().map(|r| r.size).sum();
    let proxy = ShapingProxy::start_cutting(
        url.trim_start_matches("http://").parse()?,
        link,
        Some(PHOTO_CUT_EVERY),
    )?;
    let transport = HttpTransport::new(&proxy.url())?;
    // Watch the server: the moment the visits are all there.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let records_at: Arc<std::sync::Mutex<Option<(f64, u64)>>> = Arc::default();
    let t0 = Instant::now();
    let watcher = {
        let (db, grid, done, at, stats) = (
            db.to_path_buf(),
            grid.clone(),
            done.clone(),
            records_at.clone(),
            proxy.stats.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if server_visits(&db, &grid).unwrap_or(0) >= before + visits as i64 {
                    let up = stats.up.load(Ordering::SeqCst);
                    *at.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((t0.elapsed().as_secs_f64(), up));
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (mut syncs, mut left) = (0u32, u32::MAX);
    while left > 0 {
        syncs += 1;
        if syncs > 500 {
            return Err("W8: the photos did not go up in 500 syncs".into());
        }
        match SyncEngine::new(&store, &transport).sync(&mut |_| {}, &CancelFlag::new()) {
            Ok(r) => left = r.attachments_left,
            Err(e) => eprintln!("    sync {syncs} gave up ({e}); syncing again"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let up_end = proxy.stats.up.load(Ordering::SeqCst);
    let cuts = proxy.stats.cuts.load(Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    watcher.join().ok();
    drop(proxy);
    let (records_secs, up_records) = records_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .ok_or("W8: the visits never reached the server")?;
    let upload_secs = secs - records_secs;
    let extra = up_end
        .saturating_sub(up_records)
        .saturating_sub(photo_bytes);
    eprintln!(
        "    visits on the server after {records_secs:.1} s; photos after {secs:.1} s ({cuts} cuts, {syncs} syncs); {extra} B beyond the photos"
    );
    s.add("w8.records_secs", records_secs);
    s.add("w8.secs", secs);
    s.add("w8.upload_secs", upload_secs);
    s.add("w8.photo_bytes", photo_bytes as f64);
    s.add("w8.extra", extra as f64);
    s.add("w8.cuts", cuts as f64);
    s.add("w8.syncs", f64::from(syncs));
    s.add(
        "w8.link_use",
        photo_bytes as f64 / (upload_secs * link.bytes_per_sec),
    );
    Ok(())
}

/// Pushes one visit with one photo of `size` bytes from each phone (records only: one
/// byte of the photo), then releases them all at once to upload. Returns the bytes
/// uploaded, the seconds, and each append's latency in ms.
fn burst(
    phones: &[(Store, HttpTransport, Person)],
    size: usize,
    salt: u64,
) -> R<(u64, f64, Vec<f64>)> {
    for (i, (store, t, person)) in phones.iter().enumerate() {
        visits_with_photos(store, person, 1, 1, size, salt + i as u64)?;
        let only_records = SyncOptions {
            attachment_budget_bytes: 1,
            attachment_budget_ms: 0,
        };
        SyncEngine::new(store, t).sync_with(&only_records, &mut |_| {}, &CancelFlag::new())?;
    }
    let gate = Barrier::new(phones.len() + 1);
    let (total, secs, lat) = std::thread::scope(|scope| -> R<(u64, f64, Vec<f64>)> {
        let handles: Vec<_> = phones
            .iter()
            .map(|(store, t, _)| {
                let gate = &gate;
                scope.spawn(move || -> Result<(u64, Vec<f64>), String> {
                    gate.wait();
                    let mut last = Instant::now();
                    let mut lat = Vec::new();
                    let r = SyncEngine::new(store, t)
                        .sync(
                            &mut |p| {
                                if p.attachment_bytes_up > 0 {
                                    lat.push(last.elapsed().as_secs_f64() * 1000.0);
                                }
                                last = Instant::now();
                            },
                            &CancelFlag::new(),
                        )
                        .map_err(|e| e.to_string())?;
                    if r.attachments_left != 0 {
                        return Err(format!(
                            "{} photos left: {:?}",
                            r.attachments_left, r.attachment_errors
                        ));
                    }
                    Ok((r.attachment_bytes_up, lat))
                })
            })
            .collect();
        gate.wait();
        let t = Instant::now();
        let (mut total, mut lat) = (0u64, Vec::new());
        for h in handles {
            let (b, l) = h.join().map_err(|_| "an ingest phone panicked")??;
            total += b;
            lat.extend(l);
        }
        Ok((total, t.elapsed().as_secs_f64(), lat))
    })?;
    Ok((total, secs, lat))
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
}

/// W9. `devices` phones (liaisons of the township's villages, several per person) each push
/// a visit with one photo of `size` bytes, then all upload at once; then again with photos
/// four times as large. The server's peak memory after the first burst against after the
/// second shows whether it grows with the size of what is uploaded.
pub fn photo_ingest(
    town: &Prepared,
    db: &Path,
    server: &ServerProc,
    (devices, size): (usize, usize),
    run_dir: &Path,
    s: &mut Samples,
) -> R<()> {
    eprintln!(
        "  W9 photo ingest: {devices} devices at once, one photo of {} KB each, then of {} KB",
        size / 1000,
        4 * size / 1000
    );
    let liaisons: Vec<&Person> = town
        .people
        .iter()
        .filter(|p| p.role == Role::Liaison)
        .collect();
    if liaisons.is_empty() {
        return Err("no liaisons".into());
    }
    let url = server.url.clone();
    let mut phones = Vec::new();
    for i in 0..devices {
        let person = liaisons[i % liaisons.len()];
        let store = Store::open(run_dir.join(format!("ingest-{i}.db")))?;
        let t = HttpTransport::new(&url)?;
        let code = setup::issue_code(db, &person.id)?;
        enroll(&store, &t, &url, &code, &format!("ingest-{i}"))?;
        SyncEngine::new(&store, &t).sync(&mut |_| {}, &CancelFlag::new())?;
        phones.push((store, t, person.clone()));
    }
    let rss_before = server.peak_rss_kb().unwrap_or(0);
    let (b1, secs1, lat1) = burst(&phones, size, 900)?;
    let rss_first = server.peak_rss_kb().unwrap_or(0);
    let (b2, secs2, lat2) = burst(&phones, 4 * size, 5000)?;
    let rss_second = server.peak_rss_kb().unwrap_or(0);
    eprintln!(
        "    {:.0} MB in {secs1:.2} s, then {:.0} MB in {secs2:.2} s; server peak {rss_before} -> {rss_first} -> {rss_second} KiB",
        b1 as f64 / 1e6,
        b2 as f64 / 1e6
    );
    s.add("w9.mb_per_s", b1 as f64 / 1e6 / secs1);
    s.add("w9.bytes", b1 as f64);
    s.add("w9.p99_ms", p99(lat1));
    s.add("w9.mb_per_s_large", b2 as f64 / 1e6 / secs2);
    s.add("w9.bytes_large", b2 as f64);
    s.add("w9.p99_ms_large", p99(lat2));
    s.add("w9.rss_before_kb", rss_before as f64);
    s.add("w9.rss_first_kb", rss_first as f64);
    s.add("w9.rss_second_kb", rss_second as f64);
    Ok(())
}
