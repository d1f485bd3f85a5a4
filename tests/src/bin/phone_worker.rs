//! `phone-worker`: a phone as its own process, for tests that kill it or starve its disk.
//!
//! - `phone-worker crash STORE SEED`: opens an enrolled store and runs a scripted stream of
//!   edits and syncs (seeded) until it is killed. After every edit that returned `Ok` (the
//!   app would now show it as saved) it prints `ACK <record-id> <field> <value>` and flushes
//!   stdout (before a single-valued field is written it prints `TRY …`: that edit may be
//!   saved and the process killed before its `ACK`); around each sync it prints `SYNC-START` and `SYNC-OK` / `SYNC-ERR <message>`.
//! - `phone-worker fill STORE`: makes large edits until the disk is full, printing `ACK`
//!   lines and then `FULL <error>`; tries a sync (`FULL-SYNC <result>`) and more edits
//!   (`FULL-EDIT <result>`), then waits for a `ROOM` line on stdin (the test has freed
//!   space), edits and syncs again (`ACK …`, `SYNC-OK`) and prints `DONE`.
//! - `phone-worker clock STORE PRODUCER`: run under `faketime` (a phone whose clock is
//!   wrong): records and completes a visit to PRODUCER before syncing (`V1 <id> <started>`),
//!   syncs (`SYNC1 rejected=<n> correction=<ms>`), records a second one (`V2 …`) and
//!   syncs again (`SYNC2 rejected=<n>`).
//! - `phone-worker upload STORE CHUNK`: syncs with attachment appends of CHUNK bytes,
//!   printing `UP <attachment bytes sent>` after each, then `SYNC-OK <left>`; the test kills
//!   it mid-upload.
//! - `phone-worker attach STORE FILE`: adds FILE as an attachment (`ADDED <reference>` or
//!   `ERR <error>`), run under a file-size limit to meet a full disk.
//!
//! Field text is Chinese like the real app's; markers are unique per seed and step.

use std::io::{BufRead, Write};

use gridsync_core::model::{
    Answer, AnswerType, AnswerValue, Finding, Producer, ProducerType, Severity, Visit, VisitStatus,
    YesNoNa,
};
use gridsync_core::store::{ProducerSort, Store};
use gridsync_core::sync::{CancelFlag, HttpTransport, SyncEngine};
use gridsync_server::dataset::Rng;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe means the test is gone; nothing useful is left to do.
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(3);
    }
}

fn open(path: &str) -> Result<(Store, HttpTransport, String, String), String> {
    let store = Store::open(path).map_err(|e| format!("open {path}: {e}"))?;
    let link = store
        .server_link()
        .map_err(|e| e.to_string())?
        .ok_or("the store is not enrolled")?;
    let mut transport = HttpTransport::new(&link.url).map_err(|e| e.to_string())?;
    transport.attempts = 1;
    let me = store.actor().map_err(|e| e.to_string())?;
    let grid = me.grids.first().cloned().ok_or("the person has no grid")?;
    Ok((store, transport, me.person_id, grid))
}

fn sync(store: &Store, transport: &HttpTransport) -> Result<String, String> {
    SyncEngine::new(store, transport)
        .sync(&mut |_| {}, &CancelFlag::new())
        .map(|r| {
            format!(
                "pushed={} pulled={} rejected={}",
                r.pushed,
                r.pulled,
                r.rejected.len()
            )
        })
        .map_err(|e| e.to_string())
}

fn producer(tag: &str, grid: &str, person: &str, phone: &str) -> Producer {
    let mut p = Producer::new(
        format!("崩溃测试户{tag}"),
        ProducerType::FamilyRanch,
        format!("户主{tag}"),
        phone,
        grid,
        person,
        gridsync_core::now_ms(),
    );
    p.id_number = Some("11010519491231002X".into());
    p.address = format!("测试地址{tag}");
    p
}

/// Answers every required item not yet answered (so the visit can be completed).
fn answer_required(v: &mut Visit, template: &gridsync_core::model::ChecklistTemplate) {
    for item in template.items.iter().filter(|i| i.required) {
        if v.answers.contains_key(&item.id) {
            continue;
        }
        let value = match &item.answer {
            AnswerType::Text { .. } => AnswerValue::Text("无".into()),
            _ => AnswerValue::YesNo(YesNoNa::Yes),
        };
        v.answers
            .insert(item.id.clone(), Answer { value, note: None });
    }
}

fn crash(path: &str, seed: u64) -> Result<(), String> {
    let (store, transport, person, grid) = open(path)?;
    let template = store
        .template("moa-daily-patrol", 1)
        .map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed);
    let mut producers: Vec<String> = store
        .producers_in_grid(&grid, ProducerSort::Name, 10_000, 0)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|p| p.id)
        .collect();
    let mut drafts: Vec<String> = Vec::new();
    for p in &producers {
        for v in store.visit_history(p).map_err(|e| e.to_string())? {
            if v.status == "draft" {
                drafts.push(v.id);
            }
        }
    }
    let yes_no: Vec<String> = template
        .items
        .iter()
        .filter(|i| matches!(i.answer, AnswerType::YesNoNa))
        .map(|i| i.id.clone())
        .collect();
    for step in 0u64.. {
        let tag = format!("{seed}x{step}");
        let phone = format!(
            "139{:08}",
            seed.wrapping_mul(10_007).wrapping_add(step) % 100_000_000
        );
        let roll = rng.below(100);
        let pick = |rng: &mut Rng, v: &[String]| -> Option<String> {
            (!v.is_empty()).then(|| v[rng.below(v.len() as u64) as usize].clone())
        };
        let result: Result<Option<String>, gridsync_core::Error> = (|| {
            Ok(match roll {
                0..=11 => {
                    let p = store.create_producer(producer(&tag, &grid, &person, &phone))?;
                    producers.push(p.id.clone());
                    Some(format!("ACK {} created -", p.id))
                }
                12..=47 => {
                    let Some(id) = pick(&mut rng, &producers) else {
                        return Ok(None);
                    };
                    let mut p = store.producer(&id)?;
                    let (field, value) = match roll {
                        12..=29 => {
                            p.address = format!("地址{tag}");
                            ("address", p.address.clone())
                        }
                        30..=39 => {
                            p.owner = format!("户主{tag}");
                            ("owner", p.owner.clone())
                        }
                        _ => {
                            p.phone = phone.clone();
                            ("phone", p.phone.clone())
                        }
                    };
                    // The edit may be saved and the process killed before it says so.
                    say(&format!("TRY {id} {field} {value}"));
                    store.update_producer(p)?;
                    Some(format!("ACK {id} {field} {value}"))
                }
                48..=61 => {
                    let Some(id) = pick(&mut rng, &producers) else {
                        return Ok(None);
                    };
                    let mut p = store.producer(&id)?;
                    if p.products.len() >= 40 {
                        let p = store.create_producer(producer(&tag, &grid, &person, &phone))?;
                        producers.push(p.id.clone());
                        return Ok(Some(format!("ACK {} created -", p.id)));
                    }
                    let name = format!("产品{tag}");
                    p.products.push(name.clone());
                    store.update_producer(p)?;
                    Some(format!("ACK {id} product {name}"))
                }
                62..=69 => {
                    let Some(pid) = pick(&mut rng, &producers) else {
                        return Ok(None);
                    };
                    let v = store.save_visit(Visit::new(
                        &pid,
                        &grid,
                        &person,
                        &template,
                        gridsync_core::now_ms(),
                    ))?;
                    drafts.push(v.id.clone());
                    Some(format!("ACK {} created -", v.id))
                }
                70..=81 => {
                    let Some(vid) = pick(&mut rng, &drafts) else {
                        return Ok(None);
                    };
                    let mut v = store.visit(&vid)?;
                    if v.findings.len() >= 150 {
                        drafts.retain(|d| d != &vid);
                        return Ok(None);
                    }
                    let fid = format!("f-{tag}");
                    v.findings.push(Finding {
                        id: fid.clone(),
                        item_id: Some("drug_use".into()),
                        description: format!("发现问题{tag}：兽药存放不规范"),
                        severity: Severity::Minor,
                        photos: vec![],
                        recorded_by: person.clone(),
                        recorded_at_ms: gridsync_core::now_ms(),
                    });
                    store.save_visit(v)?;
                    Some(format!("ACK {vid} finding {fid}"))
                }
                82..=87 => {
                    let Some(vid) = pick(&mut rng, &drafts) else {
                        return Ok(None);
                    };
                    let Some(item) = pick(&mut rng, &yes_no) else {
                        return Ok(None);
                    };
                    let mut v = store.visit(&vid)?;
                    let note = format!("备注{tag}");
                    v.answers.insert(
                        item.clone(),
                        Answer {
                            value: AnswerValue::YesNo(YesNoNa::Yes),
                            note: Some(note.clone()),
                        },
                    );
                    say(&format!("TRY {vid} note.{item} {note}"));
                    store.save_visit(v)?;
                    Some(format!("ACK {vid} note.{item} {note}"))
                }
                88..=89 => {
                    let Some(vid) = pick(&mut rng, &drafts) else {
                        return Ok(None);
                    };
                    let mut v = store.visit(&vid)?;
                    if v.status == VisitStatus::Draft {
                        answer_required(&mut v, &template);
                        store.save_visit(v)?;
                        store.complete_visit(&vid)?;
                    }
                    drafts.retain(|d| d != &vid);
                    Some(format!("ACK {vid} completed -"))
                }
                _ => {
                    say("SYNC-START");
                    match sync(&store, &transport) {
                        Ok(r) => say(&format!("SYNC-OK {r}")),
                        Err(e) => say(&format!("SYNC-ERR {e}")),
                    }
                    None
                }
            })
        })();
        match result {
            Ok(Some(line)) => say(&line),
            Ok(None) => {}
            Err(e) => say(&format!("ERR {e}")),
        }
    }
    Ok(())
}

fn fill(path: &str) -> Result<(), String> {
    let (store, transport, person, grid) = open(path)?;
    let template = store
        .template("moa-daily-patrol", 1)
        .map_err(|e| e.to_string())?;
    let long = "兽药与饲料混放，未单独上锁，记录不全。".repeat(40);
    let mut visit = store
        .save_visit(Visit::new(
            store
                .producers_in_grid(&grid, ProducerSort::Name, 1, 0)
                .map_err(|e| e.to_string())?
                .first()
                .map(|p| p.id.clone())
                .ok_or("no producer")?,
            &grid,
            &person,
            &template,
            gridsync_core::now_ms(),
        ))
        .map_err(|e| e.to_string())?;
    say(&format!("ACK {} created -", visit.id));
    let mut n = 0u64;
    let edit = |n: u64, visit: &mut Visit| -> Result<String, gridsync_core::Error> {
        if n.is_multiple_of(3) {
            let mut p = producer(&format!("fill{n}"), &grid, &person, &format!("138{:08}", n));
            p.address = format!("{n}号{}", "很长的地址".repeat(35));
            let p = store.create_producer(p)?;
            return Ok(format!("ACK {} created -", p.id));
        }
        if visit.findings.len() >= 150 {
            *visit = store.save_visit(Visit::new(
                &visit.producer_id,
                &grid,
                &person,
                &template,
                gridsync_core::now_ms(),
            ))?;
        }
        let mut v = visit.clone();
        let fid = format!("fill-{n}");
        v.findings.push(Finding {
            id: fid.clone(),
            item_id: None,
            description: format!("{n}{long}"),
            severity: Severity::Major,
            photos: vec![],
            recorded_by: person.clone(),
            recorded_at_ms: gridsync_core::now_ms(),
        });
        *visit = store.save_visit(v)?;
        Ok(format!("ACK {} finding {fid}", visit.id))
    };
    let err = loop {
        n += 1;
        match edit(n, &mut visit) {
            Ok(line) => say(&line),
            Err(e) => break e,
        }
        if n > 200_000 {
            return Err("the disk never filled up".into());
        }
    };
    say(&format!("FULL {err}"));
    match sync(&store, &transport) {
        Ok(r) => say(&format!("FULL-SYNC ok {r}")),
        Err(e) => say(&format!("FULL-SYNC err {e}")),
    }
    // The visit in memory may be ahead of the store after a failed save; re-read it.
    visit = store
        .visit(&visit.id)
        .map_err(|e| format!("re-read visit: {e}"))?;
    for _ in 0..3 {
        n += 1;
        match edit(n, &mut visit) {
            Ok(line) => say(&line),
            Err(e) => say(&format!("FULL-EDIT {e}")),
        }
    }
    visit = store
        .visit(&visit.id)
        .map_err(|e| format!("re-read visit: {e}"))?;
    say("WAITING");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() != "ROOM" {
        return Err(format!("expected ROOM, got {line:?}"));
    }
    for _ in 0..5 {
        n += 1;
        let line = edit(n, &mut visit).map_err(|e| format!("edit after space returned: {e}"))?;
        say(&line);
    }
    let r = sync(&store, &transport).map_err(|e| format!("sync after space returned: {e}"))?;
    say(&format!("SYNC-OK {r}"));
    let counts = store.counts().map_err(|e| e.to_string())?;
    say(&format!(
        "COUNTS unsynced={} rejected={} corrupt={}",
        counts.unsynced, counts.rejected, counts.corrupt
    ));
    say("DONE");
    Ok(())
}

fn clock(path: &str, producer: &str) -> Result<(), String> {
    let (store, transport, person, _) = open(path)?;
    let template = store
        .template("moa-daily-patrol", 1)
        .map_err(|e| e.to_string())?;
    let grid = store.producer(producer).map_err(|e| e.to_string())?.grid;
    let visit = |n: u32| -> Result<(), String> {
        let mut v = Visit::new(producer, &grid, &person, &template, gridsync_core::now_ms());
        answer_required(&mut v, &template);
        let v = store.save_visit(v).map_err(|e| e.to_string())?;
        let v = store.complete_visit(&v.id).map_err(|e| e.to_string())?;
        say(&format!("V{n} {} {}", v.id, v.started_at_ms));
        Ok(())
    };
    let sync = |n: u32| -> Result<(), String> {
        let r = SyncEngine::new(&store, &transport)
            .sync(&mut |_| {}, &CancelFlag::new())
            .map_err(|e| e.to_string())?;
        let correction = store.clock_correction().map_err(|e| e.to_string())?;
        say(&format!(
            "SYNC{n} rejected={} correction={correction}",
            r.rejected.len()
        ));
        Ok(())
    };
    visit(1)?;
    sync(1)?;
    visit(2)?;
    sync(2)
}

fn upload(path: &str, chunk: usize) -> Result<(), String> {
    let (store, mut transport, ..) = open(path)?;
    // Rides out the server's request-rate limit as the app does.
    transport.attempts = 6;
    let mut engine = SyncEngine::new(&store, &transport);
    engine.attachment_chunk = chunk;
    // Appends of exactly CHUNK bytes, so that the test can stop it part-way.
    engine.attachment_chunk_target = std::time::Duration::ZERO;
    let mut last = 0;
    let r = engine
        .sync(
            &mut |p| {
                if p.attachment_bytes_up != last {
                    last = p.attachment_bytes_up;
                    say(&format!("UP {last}"));
                }
            },
            &CancelFlag::new(),
        )
        .map_err(|e| e.to_string())?;
    say(&format!("SYNC-OK {}", r.attachments_left));
    Ok(())
}

fn attach(path: &str, file: &str) -> Result<(), String> {
    let store = Store::open(path).map_err(|e| format!("open {path}: {e}"))?;
    match store.add_attachment_file(std::path::Path::new(file), None) {
        Ok(r) => say(&format!("ADDED {r}")),
        Err(e) => say(&format!("ERR {e}")),
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("crash"), Some(path)) => {
            let seed = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
            crash(path, seed)
        }
        (Some("fill"), Some(path)) => fill(path),
        (Some("clock"), Some(path)) => match args.get(3) {
            Some(producer) => clock(path, producer),
            None => Err("usage: phone-worker clock STORE PRODUCER".into()),
        },
        (Some("upload"), Some(path)) => {
            let chunk = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64 * 1024);
            upload(path, chunk)
        }
        (Some("attach"), Some(path)) => match args.get(3) {
            Some(file) => attach(path, file),
            None => Err("usage: phone-worker attach STORE FILE".into()),
        },
        _ => Err(
            "usage: phone-worker crash STORE SEED | fill STORE | clock STORE PRODUCER | upload STORE CHUNK | attach STORE FILE"
                .into(),
        ),
    };
    if let Err(e) = result {
        say(&format!("FATAL {e}"));
        std::process::exit(1);
    }
}
