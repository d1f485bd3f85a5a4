//! `bench-local`: the local store against plain rusqlite storing the same records as JSON
//! (one row per record, same WAL + synchronous=FULL settings), side by side in one run.
//!
//! Measures (a) recording a visit with 20 answers durably, one committed transaction per
//! visit (p50 / p99); (b) batch creation of producers (records per second); (c) cold open
//! of a store holding them and listing the first page of a grid's producers; (d) the likely
//! duplicates of a new entry among every producer on the device (`Store::likely_duplicates`,
//! against one indexed SQL lookup by ID number on the same file, and against building
//! `dedupe`'s index from every producer per check); and the bytes stored per visit. Prints
//! medians over several runs and ratios against the baseline.
//!
//! `cargo run --release -p gridsync-examples --bin bench-local -- [--producers N]
//! [--visits N] [--runs N] [--batch N] [--dir PATH]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use gridsync_core::dedupe::{find_duplicates, normalize_code, DedupeEntry};
use gridsync_core::model::{
    Answer, AnswerType, AnswerValue, ChecklistItem, ChecklistTemplate, Finding, GeoPoint, GridKind,
    GridLevel, GridNode, LivestockCount, Person, Producer, ProducerType, ResponsibilityLetter,
    RiskLevel, Role, Severity, Species, Visit, YesNoNa,
};
use gridsync_core::store::{ProducerSort, Store, TreeSnapshot};
use rusqlite::{params, Connection};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const BANNER: &str = "152522";
const TOWNSHIPS: usize = 10;
const VILLAGES_PER_TOWNSHIP: usize = 10;

#[derive(Debug)]
struct Options {
    producers: usize,
    visits: usize,
    runs: usize,
    batch: usize,
    dir: PathBuf,
}

fn options() -> BenchResult<Options> {
    let mut o = Options {
        producers: 20_000,
        visits: 300,
        runs: 5,
        batch: 2_000,
        dir: std::env::temp_dir(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--producers" => o.producers = val()?.parse()?,
            "--visits" => o.visits = val()?.parse()?,
            "--runs" => o.runs = val()?.parse()?,
            "--batch" => o.batch = val()?.parse()?,
            "--dir" => o.dir = PathBuf::from(val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if o.producers == 0 || o.visits < 2 || o.runs == 0 || o.batch == 0 {
        return Err("counts must be positive (at least 2 visits)".into());
    }
    Ok(o)
}

fn township(t: usize) -> String {
    format!("{BANNER}{:03}", 101 + t)
}

fn village(t: usize, v: usize) -> String {
    format!("{}{:03}", township(t), 201 + v)
}

fn grid_tree() -> Vec<GridNode> {
    let node = |code: String, name: String, level, parent: Option<&str>| GridNode {
        code,
        name,
        level,
        kind: GridKind::Pastoral,
        parent: parent.map(String::from),
    };
    let mut out = vec![
        node("15".into(), "内蒙古自治区".into(), GridLevel::Region, None),
        node(
            "1525".into(),
            "锡林郭勒盟".into(),
            GridLevel::League,
            Some("15"),
        ),
        node(
            BANNER.into(),
            "阿巴嘎旗".into(),
            GridLevel::Banner,
            Some("1525"),
        ),
    ];
    for t in 0..TOWNSHIPS {
        out.push(node(
            township(t),
            format!("第{}苏木", t + 1),
            GridLevel::Township,
            Some(BANNER),
        ));
        for v in 0..VILLAGES_PER_TOWNSHIP {
            out.push(node(
                village(t, v),
                format!("第{}嘎查", v + 1),
                GridLevel::Village,
                Some(&township(t)),
            ));
        }
    }
    out
}

fn id_number(serial: usize) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: &[u8] = b"10X98765432";
    let first = format!(
        "1525221975{:02}{:02}{:03}",
        1 + serial % 12,
        1 + serial % 28,
        serial % 1000
    );
    let sum: u32 = first
        .bytes()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{first}{}", C[(sum % 11) as usize] as char)
}

const SYLLABLES: [&str; 16] = [
    "巴", "彦", "乌", "兰", "查", "干", "宝", "音", "额", "尔", "敦", "苏", "和", "其", "格", "图",
];

fn name(i: usize) -> String {
    let mut s = String::new();
    let mut n = i;
    for _ in 0..4 {
        s.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    s
}

/// A fully filled-in family ranch (every directory field set).
fn producer(i: usize, now: i64) -> Producer {
    let grid = village(i % TOWNSHIPS, (i / TOWNSHIPS) % VILLAGES_PER_TOWNSHIP);
    let mut p = Producer::new(
        format!("{}家庭牧场", name(i)),
        ProducerType::FamilyRanch,
        name(i / 3 + 7),
        format!("139{:08}", i),
        grid,
        "",
        now,
    );
    p.id_number = Some(id_number(i));
    p.address = format!("阿巴嘎旗{}苏木{}组", i % TOWNSHIPS + 1, i % 9 + 1);
    p.location = Some(GeoPoint {
        lat: 43.5 + (i % 1000) as f64 / 1000.0,
        lon: 114.5 + (i % 700) as f64 / 1000.0,
    });
    p.products = vec!["羊肉".into(), "羊绒".into()];
    p.scale.crop_area_mu = Some(20.0 + (i % 50) as f64);
    p.scale.livestock.insert(
        Species::SheepGoat,
        LivestockCount {
            on_hand: Some(200 + (i % 300) as u32),
            sold_per_year: Some(100 + (i % 150) as u32),
        },
    );
    p.issues_compliance_certificates = i % 2 == 0;
    p.responsibility_letter = Some(ResponsibilityLetter {
        signed_on: "2025-03-18".into(),
    });
    p.risk = [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High][i % 3];
    p
}

/// A template with 20 items: yes/no, numbers and text.
fn template() -> ChecklistTemplate {
    let items = (0..20)
        .map(|n| ChecklistItem {
            id: format!("item_{n:02}"),
            text_zh: format!("巡查项目{}：是否符合要求", n + 1),
            answer: match n % 4 {
                2 => AnswerType::Number {
                    unit: "头".into(),
                    min: Some(0.0),
                    max: None,
                },
                3 => AnswerType::Text { max_chars: 200 },
                _ => AnswerType::YesNoNa,
            },
            required: n < 10,
            applies_to: Vec::new(),
        })
        .collect();
    ChecklistTemplate {
        id: ChecklistTemplate::record_id("bench-20", 1),
        template_id: "bench-20".into(),
        version: 1,
        name_zh: "基准测试巡查表".into(),
        grid: BANNER.into(),
        items,
    }
}

fn visit(p: &Producer, tpl: &ChecklistTemplate, inspector: &str, now: i64) -> Visit {
    let mut v = Visit::new(&p.id, &p.grid, inspector, tpl, now);
    for (n, item) in tpl.items.iter().enumerate() {
        let value = match &item.answer {
            AnswerType::Number { .. } => AnswerValue::Number(12.0 + n as f64),
            AnswerType::Text { .. } => AnswerValue::Text("圈舍卫生良好，用药记录齐全".into()),
            _ => AnswerValue::YesNo(if n % 3 == 0 {
                YesNoNa::No
            } else {
                YesNoNa::Yes
            }),
        };
        let note = (n % 5 == 0).then(|| "已现场告知整改要求".to_string());
        v.answers.insert(item.id.clone(), Answer { value, note });
    }
    v.findings.push(Finding {
        id: gridsync_core::new_id(),
        item_id: Some("item_00".into()),
        description: "休药期未严格执行".into(),
        severity: Severity::Major,
        photos: Vec::new(),
        recorded_by: inspector.into(),
        recorded_at_ms: now,
    });
    v
}

/// The plain baseline: one JSON row per record, the same pragmas as the store.
struct Plain {
    conn: Connection,
}

impl Plain {
    fn open(path: &Path) -> BenchResult<Plain> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS grids (code TEXT PRIMARY KEY, parent TEXT);
             CREATE TABLE IF NOT EXISTS producers (id TEXT PRIMARY KEY, grid TEXT NOT NULL,
                 name TEXT NOT NULL, json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS producers_grid_name ON producers(grid, name);
             CREATE TABLE IF NOT EXISTS visits (id TEXT PRIMARY KEY, producer_id TEXT NOT NULL,
                 started_at_ms INTEGER NOT NULL, json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS visits_producer ON visits(producer_id, started_at_ms);",
        )?;
        Ok(Plain { conn })
    }

    fn grids(&mut self, nodes: &[GridNode]) -> BenchResult<()> {
        let tx = self.conn.transaction()?;
        for n in nodes {
            tx.execute(
                "INSERT OR REPLACE INTO grids (code, parent) VALUES (?1, ?2)",
                params![n.code, n.parent],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    #[inline(never)]
    fn create_producers(&mut self, ps: &[Producer]) -> BenchResult<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO producers (id, grid, name, json) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for p in ps {
                st.execute(params![p.id, p.grid, p.name, serde_json::to_string(p)?])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    #[inline(never)]
    fn save_visit(&mut self, v: &Visit) -> BenchResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT INTO visits (id, producer_id, started_at_ms, json) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            v.id,
            v.producer_id,
            v.started_at_ms,
            serde_json::to_string(v)?
        ])?;
        tx.commit()?;
        Ok(())
    }

    /// The first page of a grid's producers (subtree), decoded.
    fn first_page(&self, grid: &str) -> BenchResult<Vec<Producer>> {
        let mut st = self.conn.prepare_cached(
            "WITH RECURSIVE sub(code) AS (SELECT ?1 UNION SELECT g.code FROM grids g JOIN sub ON g.parent = sub.code)
             SELECT json FROM producers WHERE grid IN (SELECT code FROM sub) ORDER BY name, id LIMIT 50",
        )?;
        let rows = st.query_map([grid], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(serde_json::from_str(&r?)?);
        }
        Ok(out)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn file_bytes(db: &Path) -> u64 {
    let mut total = 0;
    for suffix in ["", "-wal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        total += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    }
    total
}

fn checkpoint(db: &Path) -> BenchResult<()> {
    let c = Connection::open(db)?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// One run's figures; the table shows the median of each over the runs.
#[derive(Debug, Default, Clone)]
struct Figures {
    gs_visit_p50: f64,
    gs_visit_p99: f64,
    pl_visit_p50: f64,
    pl_visit_p99: f64,
    gs_create_rate: f64,
    pl_create_rate: f64,
    gs_open_ms: f64,
    gs_page_ms: f64,
    pl_open_ms: f64,
    pl_page_ms: f64,
    gs_visit_record_bytes: f64,
    pl_visit_record_bytes: f64,
    gs_visit_file_bytes: f64,
    pl_visit_file_bytes: f64,
    gs_producer_record_bytes: f64,
    pl_producer_record_bytes: f64,
    /// (d) `Store::likely_duplicates` of a new entry, median ms.
    gs_dup_ms: f64,
    /// (d) baseline: one indexed SQL lookup of an ID number on the same file, median ms.
    pl_dup_ms: f64,
    /// (d) the same check without stored keys: `dedupe::find_duplicates` over every
    /// producer (an index built per check), median ms.
    naive_dup_ms: f64,
    /// (d) likely duplicates found per check, mean.
    dup_found: f64,
}

/// Entries checked in (d).
const DUP_CHECKS: usize = 101;

/// A new entry to check in (d): for even `k` a name containing an existing producer's in
/// a sibling village (a match), for odd `k` a name nobody has (none); its own phone and
/// ID number.
fn dup_candidate(o: &Options, k: usize, now: i64) -> Producer {
    let j = (k * 7919) % o.producers;
    let mut p = producer(o.producers + k, now);
    let t = j % TOWNSHIPS;
    let v = (j / TOWNSHIPS + 1) % VILLAGES_PER_TOWNSHIP;
    p.grid = village(t, v);
    p.name = if k % 2 == 0 {
        format!("{}牧业专业合作社", name(j))
    } else {
        format!("{}新养殖场", name(o.producers + k))
    };
    p.phone = format!("137{:08}", k);
    p
}

fn one_run(o: &Options, run: usize) -> BenchResult<Figures> {
    let dir = o
        .dir
        .join(format!("gridsync-bench-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(o, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(o: &Options, dir: &Path) -> BenchResult<Figures> {
    let mut f = Figures::default();
    let gs_path = dir.join("gridsync.db");
    let pl_path = dir.join("plain.db");
    let tree = grid_tree();
    let me = Person {
        id: "county-1".into(),
        name: "李娜".into(),
        phone: "13904794444".into(),
        role: Role::CountyReviewer,
        grids: vec![BANNER.into()],
    };
    let now = gridsync_core::now_ms();
    let producers: Vec<Producer> = (0..o.producers).map(|i| producer(i, now)).collect();
    let tpl = template();

    // (b) batch creation.
    let store = Store::open(&gs_path)?;
    store.upsert_grids(&tree)?;
    store.set_profile(&me)?;
    store.save_template(tpl.clone())?;
    let mut plain = Plain::open(&pl_path)?;
    plain.grids(&tree)?;
    let t = Instant::now();
    for chunk in producers.chunks(o.batch) {
        store.create_producers(chunk.to_vec())?;
    }
    f.gs_create_rate = o.producers as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in producers.chunks(o.batch) {
        plain.create_producers(chunk)?;
    }
    f.pl_create_rate = o.producers as f64 / t.elapsed().as_secs_f64();
    if store.counts()?.producers != o.producers as i64 {
        return Err("not every producer was stored".into());
    }

    checkpoint(&gs_path)?;
    checkpoint(&pl_path)?;
    let (gs_before, pl_before) = (file_bytes(&gs_path), file_bytes(&pl_path));

    // (a) visits, each its own durable transaction, interleaved so noise hits both alike.
    let (mut gs_lat, mut pl_lat) = (Vec::new(), Vec::new());
    for i in 0..o.visits {
        let p = &producers[(i * 7919) % producers.len()];
        let v = visit(p, &tpl, &me.id, gridsync_core::now_ms());
        let t = Instant::now();
        plain.save_visit(&v)?;
        pl_lat.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        store.save_visit(v)?;
        gs_lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    gs_lat.sort_by(f64::total_cmp);
    pl_lat.sort_by(f64::total_cmp);
    f.gs_visit_p50 = percentile(&gs_lat, 0.5);
    f.gs_visit_p99 = percentile(&gs_lat, 0.99);
    f.pl_visit_p50 = percentile(&pl_lat, 0.5);
    f.pl_visit_p99 = percentile(&pl_lat, 0.99);

    // Bytes per record.
    let c = Connection::open(&gs_path)?;
    let doc_bytes = |kind: &str| -> BenchResult<f64> {
        Ok(c.query_row(
            "SELECT AVG(length(doc) + COALESCE((SELECT SUM(length(bytes)) FROM record_chunks k WHERE k.id = r.id), 0))
             FROM records r WHERE kind = ?1",
            [kind],
            |r| r.get::<_, f64>(0),
        )?)
    };
    f.gs_visit_record_bytes = doc_bytes("visit")?;
    f.gs_producer_record_bytes = doc_bytes("producer")?;
    f.pl_visit_record_bytes = plain.conn.query_row(
        "SELECT AVG(length(CAST(json AS BLOB))) FROM visits",
        [],
        |r| r.get::<_, f64>(0),
    )?;
    f.pl_producer_record_bytes = plain.conn.query_row(
        "SELECT AVG(length(CAST(json AS BLOB))) FROM producers",
        [],
        |r| r.get::<_, f64>(0),
    )?;
    drop(c);
    drop(store);
    drop(plain);
    checkpoint(&gs_path)?;
    checkpoint(&pl_path)?;
    f.gs_visit_file_bytes = (file_bytes(&gs_path) as f64 - gs_before as f64) / o.visits as f64;
    f.pl_visit_file_bytes = (file_bytes(&pl_path) as f64 - pl_before as f64) / o.visits as f64;

    // (c) cold open (a new connection, as an app start) and the first page of a township.
    let grid = township(3);
    let (mut gs_open, mut gs_page, mut pl_open, mut pl_page) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let s = Store::open(&gs_path)?;
        gs_open.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let page = s.producers_in_grid(&grid, ProducerSort::Name, 50, 0)?;
        gs_page.push(t.elapsed().as_secs_f64() * 1e3);
        if page.len() != 50 {
            return Err(format!("first page has {} rows", page.len()).into());
        }
        drop(s);
        let t = Instant::now();
        let p = Plain::open(&pl_path)?;
        pl_open.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let page = p.first_page(&grid)?;
        pl_page.push(t.elapsed().as_secs_f64() * 1e3);
        if page.len() != 50 {
            return Err(format!("plain first page has {} rows", page.len()).into());
        }
    }
    f.gs_open_ms = median(gs_open);
    f.gs_page_ms = median(gs_page);
    f.pl_open_ms = median(pl_open);
    f.pl_page_ms = median(pl_page);

    // (d) likely duplicates of a new entry before it is saved, against every producer on
    // the device; the baseline is one indexed lookup by ID number on the same file.
    let s = Store::open(&gs_path)?;
    let candidates: Vec<Producer> = (0..DUP_CHECKS).map(|k| dup_candidate(o, k, now)).collect();
    let (mut gs_dup, mut pl_dup) = (Vec::new(), Vec::new());
    let mut found = 0;
    for c in candidates.iter().take(5) {
        s.likely_duplicates(c)?;
    }
    for c in &candidates {
        let t = Instant::now();
        let m = s.likely_duplicates(c)?;
        gs_dup.push(t.elapsed().as_secs_f64() * 1e3);
        found += m.len();
    }
    if found < DUP_CHECKS / 2 {
        return Err(format!("(d) found only {found} likely duplicates").into());
    }
    let c = Connection::open(&gs_path)?;
    let mut st = c.prepare_cached("SELECT id FROM producers WHERE dup_id_number = ?1")?;
    for (k, _) in candidates.iter().enumerate() {
        let existing = &producers[(k * 7919) % o.producers];
        let key = existing.id_number.as_deref().and_then(normalize_code);
        let t = Instant::now();
        let ids: Vec<String> = st
            .query_map([key], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        pl_dup.push(t.elapsed().as_secs_f64() * 1e3);
        if ids.len() != 1 {
            return Err("(d) the baseline lookup found no row".into());
        }
    }
    drop(st);
    drop(c);
    drop(s);
    let snapshot = TreeSnapshot::from_nodes(&tree);
    let entries: Vec<DedupeEntry> = producers.iter().map(DedupeEntry::of).collect();
    let mut naive = Vec::new();
    for c in candidates.iter().take(5) {
        let t = Instant::now();
        find_duplicates(&snapshot, &DedupeEntry::of(c), &entries);
        naive.push(t.elapsed().as_secs_f64() * 1e3);
    }
    f.gs_dup_ms = median(gs_dup);
    f.pl_dup_ms = median(pl_dup);
    f.naive_dup_ms = median(naive);
    f.dup_found = found as f64 / DUP_CHECKS as f64;
    Ok(f)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench-local: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let o = options()?;
    println!(
        "bench-local: {} producers (batches of {}), {} visits with 20 answers, {} runs, in {}",
        o.producers,
        o.batch,
        o.visits,
        o.runs,
        o.dir.display()
    );
    let mut runs = Vec::new();
    for r in 0..o.runs {
        let f = one_run(&o, r)?;
        eprintln!(
            "run {}: visit p50 {:.2}/{:.2} ms, p99 {:.2}/{:.2} ms, create {:.0}/{:.0} per s, open+page {:.2}/{:.2} ms, duplicates {:.2}/{:.3}/{:.1} ms",
            r + 1,
            f.gs_visit_p50,
            f.pl_visit_p50,
            f.gs_visit_p99,
            f.pl_visit_p99,
            f.gs_create_rate,
            f.pl_create_rate,
            f.gs_open_ms + f.gs_page_ms,
            f.pl_open_ms + f.pl_page_ms,
            f.gs_dup_ms,
            f.pl_dup_ms,
            f.naive_dup_ms
        );
        runs.push(f);
    }
    let m = |get: fn(&Figures) -> f64| median(runs.iter().map(get).collect());
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>8}  target",
        "measure (median of runs)", "gridsync", "plain JSON", "ratio"
    );
    let row = |label: &str, g: f64, p: f64, target: &str| {
        println!(
            "{:<44} {:>12.3} {:>12.3} {:>8.2}  {}",
            label,
            g,
            p,
            g / p,
            target
        );
    };
    row(
        "(a) record a visit, p50 ms",
        m(|f| f.gs_visit_p50),
        m(|f| f.pl_visit_p50),
        "",
    );
    let p99 = m(|f| f.gs_visit_p99);
    row(
        "(a) record a visit, p99 ms",
        p99,
        m(|f| f.pl_visit_p99),
        &format!(
            "p99 <= 5 ms: {}",
            if p99 <= 5.0 { "met" } else { "NOT met" }
        ),
    );
    let (gr, pr) = (m(|f| f.gs_create_rate), m(|f| f.pl_create_rate));
    row(
        "(b) create producers, records/s",
        gr,
        pr,
        &format!(
            ">= 10,000/s and >= 1/5 of plain: {}",
            if gr >= 10_000.0 && gr >= pr / 5.0 {
                "met"
            } else {
                "NOT met"
            }
        ),
    );
    row(
        "(c) cold open, ms",
        m(|f| f.gs_open_ms),
        m(|f| f.pl_open_ms),
        "",
    );
    row(
        "(c) first page of 50 (township of ~2,000), ms",
        m(|f| f.gs_page_ms),
        m(|f| f.pl_page_ms),
        "",
    );
    row(
        "(c) open + first page, ms",
        m(|f| f.gs_open_ms + f.gs_page_ms),
        m(|f| f.pl_open_ms + f.pl_page_ms),
        "",
    );
    let dup = m(|f| f.gs_dup_ms);
    row(
        "(d) likely duplicates of a new entry, ms",
        dup,
        m(|f| f.pl_dup_ms),
        &format!(
            "median <= 10 ms: {} (baseline: one indexed SQL lookup by ID number)",
            if dup <= 10.0 { "met" } else { "NOT met" }
        ),
    );
    row(
        "(d) same, index built per check (no keys), ms",
        m(|f| f.naive_dup_ms),
        dup,
        &format!(
            "ratio against the stored keys; {:.1} matches per check",
            m(|f| f.dup_found)
        ),
    );
    row(
        "bytes per visit: record (document vs JSON)",
        m(|f| f.gs_visit_record_bytes),
        m(|f| f.pl_visit_record_bytes),
        "",
    );
    row(
        "bytes per visit: database growth",
        m(|f| f.gs_visit_file_bytes),
        m(|f| f.pl_visit_file_bytes),
        "",
    );
    row(
        "bytes per producer: record",
        m(|f| f.gs_producer_record_bytes),
        m(|f| f.pl_producer_record_bytes),
        "",
    );
    println!();
    println!("ratio = gridsync / plain (for records/s higher is better; for ms and bytes lower is better)");
    Ok(())
}
