//! Replays every input the fuzzers ever kept (issue: reliability under hostile input).
//!
//! `tests/fuzz-regressions/<target>/` holds inputs that once crashed a target or that were
//! written by hand to attack it (bodies that claim gigabytes); `fuzz/seeds/<target>/` holds
//! the valid inputs fuzzing starts from. Each file is fed to the same function the fuzz
//! target runs (`gridsync_tests::FUZZ_TARGETS`); none may panic, and hostile length claims
//! must be refused without reserving the memory they claim.
//!
//! `cargo test -p gridsync-tests --test fuzz_regressions -- --ignored write_fuzz_inputs`
//! rewrites the seeds and the hand-written inputs.

// Test code: an unwrap is an assertion, in helpers as in test functions.
#![allow(clippy::unwrap_used)]

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{default_template, ChecklistTemplate, Record};
use gridsync_core::sync::protocol::{
    self, Cursor, Departure, PullRecord, PushRecord, SyncRequest, SyncResponse,
};
use gridsync_tests::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn every_kept_input_runs_without_panicking() {
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for (name, target) in FUZZ_TARGETS {
        let mut n = 0;
        for dir in [
            root().join("tests/fuzz-regressions").join(name),
            root().join("fuzz/seeds").join(name),
        ] {
            for f in files(&dir) {
                let data = std::fs::read(&f).unwrap();
                n += 1;
                if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(|| target(&data))) {
                    let why = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{name} {}: {why}", f.display()));
                }
            }
        }
        counts.push(format!("{name}: {n}"));
    }
    println!("replayed fuzz inputs: {}", counts.join(", "));
    assert!(
        failures.is_empty(),
        "inputs that panic:\n{}",
        failures.join("\n")
    );
}

/// Peak virtual memory of this process (kB), from /proc.
fn vm_peak_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmPeak:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn bodies_claiming_gigabytes_are_refused_without_reserving_them() {
    let dir = root().join("tests/fuzz-regressions");
    let mut checked = 0;
    for (name, target) in FUZZ_TARGETS {
        for f in files(&dir.join(name)).into_iter().filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("claim-"))
        }) {
            let data = std::fs::read(&f).unwrap();
            let before = vm_peak_kb();
            target(&data);
            if let (Some(a), Some(b)) = (before, vm_peak_kb()) {
                assert!(
                    b.saturating_sub(a) < 512 * 1024,
                    "{}: peak memory grew by {} MB",
                    f.display(),
                    (b - a) / 1024
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "the hand-written claims are missing ({checked}); run write_fuzz_inputs"
    );
    // The decoders say no, rather than succeeding on a body that claims more than it holds.
    for f in files(&dir.join("sync_request"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("claim-"))
    {
        let data = std::fs::read(&f).unwrap();
        let body = &data[1..];
        assert!(
            protocol::decode::<SyncRequest>(body).is_err(),
            "{} decoded",
            f.display()
        );
    }
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(raw).unwrap();
    gz.finish().unwrap()
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

/// Mode byte 1: the fuzz target wraps the rest in gzip; mode 0: the rest is the body.
fn wrapped(raw: &[u8]) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend_from_slice(raw);
    v
}

#[test]
#[ignore = "writes the seed corpus and the hand-written hostile inputs"]
fn write_fuzz_inputs() {
    let seeds = root().join("fuzz/seeds");
    let regress = root().join("tests/fuzz-regressions");
    let (producer, visit) = fuzz_records();
    let p_rec = Record::Producer(producer.clone());
    let v_rec = Record::Visit(visit.clone());
    let mut template = default_template("FZ-B");
    template.template_id = "fz-tpl".into();
    template.id = ChecklistTemplate::record_id("fz-tpl", 1);
    let t_rec = Record::Template(template);
    let p_doc = fuzz_document_bytes(&p_rec);
    let v_doc = fuzz_document_bytes(&v_rec);
    let t_doc = fuzz_document_bytes(&t_rec);
    // Edits on top of the stored documents (what a phone pushes).
    let edit = |doc: &[u8], f: &dyn Fn(&mut Record)| -> (Vec<u8>, Vec<[u8; 32]>) {
        let mut d = RecordDoc::load(doc, &[]).unwrap();
        d.set_actor(&automerge::ActorId::from(vec![2u8; 16]));
        let before = d.heads();
        let mut r = d.read().unwrap();
        f(&mut r);
        d.update(&r, "fz-lia", 1_767_312_000_000).unwrap();
        (
            d.save_after(&before),
            d.heads().iter().map(|h| h.0).collect(),
        )
    };
    let (p_edit, p_heads) = edit(&p_doc, &|r| {
        if let Record::Producer(p) = r {
            p.address = "新地址".into();
            p.products.push("牛肉".into());
        }
    });
    let (v_edit, v_heads) = edit(&v_doc, &|r| {
        if let Record::Visit(v) = r {
            v.findings.push(gridsync_core::model::Finding {
                id: "fz-finding".into(),
                item_id: Some("drug_use".into()),
                description: "兽药混放".into(),
                severity: gridsync_core::model::Severity::Minor,
                photos: vec![],
                recorded_by: "fz-lia".into(),
                recorded_at_ms: 1_767_312_000_000,
            });
        }
    });
    let heads_of = |doc: &[u8]| -> Vec<[u8; 32]> {
        automerge::AutoCommit::load(doc)
            .unwrap()
            .get_heads()
            .iter()
            .map(|h| h.0)
            .collect()
    };

    // document
    let d = seeds.join("document");
    write(&d, "producer", &p_doc);
    write(&d, "visit", &v_doc);
    write(&d, "template", &t_doc);
    write(&d, "producer-edit", &p_edit);
    write(&d, "visit-edit", &v_edit);
    // push: first byte = target (sel % 3: new, stored producer, stored visit) and kind ((sel / 3) % 4)
    let d = seeds.join("push");
    let new_p = {
        let mut p = producer.clone();
        p.id = "0190f5a0-0000-7000-8000-00000000f022".into();
        fuzz_document_bytes(&Record::Producer(p))
    };
    write(&d, "new-producer", &[&[3u8][..], &new_p].concat());
    write(&d, "edit-producer", &[&[4u8][..], &p_edit].concat());
    write(&d, "edit-visit", &[&[8u8][..], &v_edit].concat());
    write(&d, "new-template", &[&[9u8][..], &t_doc].concat());
    // sync_request
    let req = SyncRequest {
        epoch: "0123456789abcdef01234567".into(),
        reference_version: "ref-1".into(),
        push: vec![
            PushRecord {
                id: producer.id.clone(),
                kind: 1,
                changes: p_edit.clone(),
                heads: p_heads.clone(),
            },
            PushRecord {
                id: visit.id.clone(),
                kind: 2,
                changes: v_edit.clone(),
                heads: v_heads.clone(),
            },
        ],
        cursors: vec![
            Cursor {
                grid: "FZ-V".into(),
                seq: 42,
                token: 7,
            },
            Cursor {
                grid: "FZ-B".into(),
                seq: 0,
                token: 0,
            },
        ],
        want_full: vec![producer.id.clone()],
        page_limit: 2000,
        bare_docs: false,
        page_bytes: 0,
    };
    let raw_req = postcard::to_allocvec(&req).unwrap();
    let d = seeds.join("sync_request");
    write(&d, "push-and-cursors", &wrapped(&raw_req));
    write(
        &d,
        "gzip-body",
        &[&[0u8][..], &protocol::encode(&req).unwrap()].concat(),
    );
    // sync_response
    let resp = SyncResponse {
        epoch: "0123456789abcdef01234567".into(),
        reset: false,
        results: vec![gridsync_core::sync::protocol::PushResult {
            id: producer.id.clone(),
            outcome: gridsync_core::sync::protocol::PushOutcome::Accepted,
        }],
        records: vec![
            PullRecord {
                id: producer.id.clone(),
                kind: 1,
                grid: "FZ-V".into(),
                seq: 1,
                full: true,
                bytes: p_doc.clone(),
                heads: heads_of(&p_doc),
            },
            PullRecord {
                id: visit.id.clone(),
                kind: 2,
                grid: "FZ-V".into(),
                seq: 2,
                full: true,
                bytes: v_doc.clone(),
                heads: heads_of(&v_doc),
            },
            PullRecord {
                id: producer.id.clone(),
                kind: 1,
                grid: "FZ-V".into(),
                seq: 3,
                full: false,
                bytes: p_edit.clone(),
                heads: p_heads.clone(),
            },
            PullRecord {
                id: t_rec.id().into(),
                kind: 3,
                grid: "FZ-B".into(),
                seq: 1,
                full: true,
                bytes: t_doc.clone(),
                heads: heads_of(&t_doc),
            },
        ],
        departures: vec![Departure {
            id: visit.id.clone(),
            grid: "FZ-V".into(),
            seq: 4,
            new_grid: "FZ-X".into(),
        }],
        cursors: vec![Cursor {
            grid: "FZ-V".into(),
            seq: 4,
            token: 9,
        }],
        more: false,
        reference: None,
        docs_digest: None,
        server_time_ms: 0,
    };
    let d = seeds.join("sync_response");
    write(&d, "page", &wrapped(&postcard::to_allocvec(&resp).unwrap()));
    write(
        &d,
        "gzip-body",
        &[&[0u8][..], &protocol::encode(&resp).unwrap()].concat(),
    );
    // enrol_json
    let d = seeds.join("enrol_json");
    write(
        &d,
        "request",
        r#"{"code":"ABCD-EFGH-JKLM","device_name":"红米 Note 12"}"#.as_bytes(),
    );
    write(&d, "response", serde_json::json!({"device_id": "d1", "secret": "s", "person": fuzz_people()[1], "epoch": "e"}).to_string().as_bytes());
    write(&d, "rotate", br#"{"secret":"00ff"}"#);
    write(
        &d,
        "error",
        br#"{"error":"too_large","message":"request body exceeds 16384 bytes"}"#,
    );
    write(
        &d,
        "issue-code",
        br#"{"person_id":"fz-lia","ttl_hours":72}"#,
    );
    write(
        &d,
        "bearer",
        b"Bearer 0190f5a0-0000-7000-8000-00000000d001.00ff00ff",
    );
    // grids_csv
    let d = seeds.join("grids_csv");
    write(&d, "tree", "code,name,level,parent,kind\nB,阿巴嘎旗,banner,L,pastoral\nT,别力古台镇,township,B,pastoral\nV,巴彦嘎查,village,T,pastoral\nS,一组,sub_grid,V,mixed\n".as_bytes());
    write(&d, "bom-and-spaces", "\u{feff}code, name ,level,parent,kind\n T2 ,查干淖尔镇,township,B2,牧区\nB2,旗,county,L,半农半牧\n".as_bytes());

    // Hand-written hostile inputs: bodies that claim far more than they hold.
    let d = regress.join("sync_request");
    let claim = |parts: &[&[u8]]| parts.concat();
    write(
        &d,
        "claim-4g-records",
        &wrapped(&claim(&[&[0, 0], &varint(u32::MAX as u64)])),
    );
    write(
        &d,
        "claim-4g-change-bytes",
        &wrapped(&claim(&[
            &[0, 0, 1, 1, b'a', 1],
            &varint(u32::MAX as u64),
            &[1, 2, 3],
        ])),
    );
    write(
        &d,
        "claim-2e63-want-full",
        &wrapped(&claim(&[&[0, 0, 0, 0], &varint(1 << 63)])),
    );
    write(&d, "claim-4g-epoch", &wrapped(&varint(u32::MAX as u64)));
    write(
        &d,
        "claim-33mb-of-zeros",
        &[
            &[0u8][..],
            &gzip(&vec![0u8; protocol::MAX_DECODED_BYTES + 1024 * 1024]),
        ]
        .concat(),
    );
    let d = regress.join("sync_response");
    write(
        &d,
        "claim-4g-records",
        &wrapped(&claim(&[&[0, 0, 0], &varint(u32::MAX as u64)])),
    );
    write(
        &d,
        "claim-4g-document",
        &wrapped(&claim(&[
            &[0, 0, 0, 1, 1, b'a', 1, 1, b'g', 1, 1],
            &varint(u32::MAX as u64),
            &[9, 9],
        ])),
    );
    // An Automerge chunk whose header claims a 4 GB body.
    let d = regress.join("document");
    let mut big = p_doc[..9].to_vec();
    big.extend(varint(u32::MAX as u64));
    big.extend(&p_doc[9..p_doc.len().min(64)]);
    write(&d, "claim-4g-chunk", &big);
    let d = regress.join("push");
    write(&d, "claim-4g-chunk", &[&[4u8][..], &big].concat());
}

/// Peak resident memory of this process (kB), from /proc.
fn vm_hwm_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A "server" on loopback that answers every request with 200 and `size` bytes of zeros,
/// declaring the length or not.
fn flooding_server(size: usize, declare: bool) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = c.read(&mut buf);
                let head = if declare {
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/x-gridsync\r\ncontent-length: {size}\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-gridsync\r\nconnection: close\r\n\r\n".to_string()
                };
                if c.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let zeros = vec![0u8; 65536];
                let mut sent = 0;
                while sent < size {
                    if c.write_all(&zeros).is_err() {
                        return;
                    }
                    sent += zeros.len();
                }
            });
        }
    });
    addr
}

/// A phone talking to something that floods it (a broken proxy, a captive portal, a
/// hostile endpoint) reads at most the protocol's body limit, then gives up with an error.
#[test]
fn a_flooding_server_cannot_make_the_phone_read_more_than_the_body_limit() {
    use gridsync_core::sync::{HttpTransport, Transport};
    for declare in [true, false] {
        let addr = flooding_server(400 * 1024 * 1024, declare);
        let mut t = HttpTransport::new(&format!("http://{addr}")).unwrap();
        t.attempts = 1;
        let before = vm_hwm_kb();
        let started = std::time::Instant::now();
        let r = t.sync("Bearer d.s", vec![1, 2, 3]);
        let grew = vm_hwm_kb()
            .zip(before)
            .map(|(a, b)| a.saturating_sub(b) / 1024);
        println!(
            "declared length {declare}: {:?} after {:?}, peak memory +{grew:?} MB",
            r.as_ref().map(Vec::len),
            started.elapsed()
        );
        assert!(r.is_err(), "a 400 MB answer was accepted");
        assert!(
            grew.is_none_or(|mb| mb < 100),
            "reading the answer took {grew:?} MB"
        );
    }
}

// The `judge` fuzz target (structure-aware pushes judged by `push::decide`); its body is
// shared with `fuzz/fuzz_targets/judge.rs` rather than listed in `FUZZ_TARGETS`.
#[path = "support/judge.rs"]
mod judge;

/// Replays the seeds and the kept inputs of the `judge` target: none may panic (which
/// includes `decide` accepting a push that a liaison may not make).
#[test]
fn judge_inputs_run_without_panicking() {
    let mut failures = Vec::new();
    let mut n = 0;
    for dir in [
        root().join("tests/fuzz-regressions/judge"),
        root().join("fuzz/seeds/judge"),
    ] {
        for f in files(&dir) {
            let data = std::fs::read(&f).unwrap();
            n += 1;
            if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(|| judge::fuzz_judge(&data)))
            {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("judge {}: {why}", f.display()));
            }
        }
    }
    println!("replayed judge inputs: {n}");
    assert!(
        n >= judge::judge_seeds().len(),
        "the judge seeds are missing; run write_judge_seeds"
    );
    assert!(
        failures.is_empty(),
        "inputs that panic:\n{}",
        failures.join("\n")
    );
}

#[test]
#[ignore = "writes the seed corpus of the judge target"]
fn write_judge_seeds() {
    let d = root().join("fuzz/seeds/judge");
    for (name, data) in judge::judge_seeds() {
        write(&d, name, &data);
    }
}
