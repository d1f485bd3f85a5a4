//! Evidence photos against a real server (issue 13): recorded offline, uploaded after the
//! records through a link cut at random bytes, a phone killed mid-upload, bytes flipped in
//! transit, downloads cut and resumed, scope, and a full disk while adding one.

// Test code: an unwrap is an assertion, in helpers as in test functions.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridsync_core::attachment::AttachmentRef;
use gridsync_core::model::{Finding, Role, Severity, Visit};
use gridsync_core::store::AttachmentState;
use gridsync_core::sync::{CancelFlag, HttpTransport, SyncEngine, SyncReport, Transport};
use gridsync_server::dataset::Rng;
use gridsync_server::storage::Storage;
use gridsync_tests::*;
use sha2::{Digest, Sha256};

const MB: usize = 1024 * 1024;

/// A JPEG-looking photo of `size` bytes, different for each `seed`.
fn photo(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    while b.len() < size {
        b.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    b.truncate(size);
    b
}

/// Records a visit to a producer of the phone's grid with a finding showing `photos`.
fn visit_with(
    phone: &Phone,
    data: &gridsync_server::dataset::Dataset,
    refs: &[AttachmentRef],
) -> String {
    let grid = &phone.person.grids[0];
    let producer = data.producers.iter().find(|p| &p.grid == grid).unwrap();
    let template = phone.store.templates().unwrap().remove(0);
    let now = gridsync_core::now_ms();
    let mut v = Visit::new(
        &producer.id,
        &producer.grid,
        &phone.person.id,
        &template,
        now,
    );
    v.findings.push(Finding {
        id: gridsync_core::new_id(),
        item_id: None,
        description: "饲料与兽药混放".into(),
        severity: Severity::Major,
        photos: refs.iter().map(ToString::to_string).collect(),
        recorded_by: phone.person.id.clone(),
        recorded_at_ms: now,
    });
    phone.store.save_visit(v).unwrap().id
}

/// The SHA-256 of what the server holds of an attachment, read in pieces.
fn server_sha(storage: &dyn Storage, sha: &str) -> String {
    let meta = storage.attachment(sha).unwrap().expect("held");
    let mut h = Sha256::new();
    let mut off = 0u64;
    while off < meta.held {
        let piece = storage.read_attachment(sha, off, 256 * 1024).unwrap();
        assert!(!piece.is_empty());
        off += piece.len() as u64;
        h.update(&piece);
    }
    hex::encode(h.finalize())
}

fn complete(storage: &dyn Storage, r: &AttachmentRef) -> bool {
    storage
        .attachment(&r.sha256)
        .unwrap()
        .is_some_and(|m| m.complete)
}

/// Syncs until nothing is pending (each failed or budget-cut sync is followed by another).
fn sync_until_uploaded(phone: &Phone, transport: &HttpTransport) -> Vec<SyncReport> {
    let mut reports = Vec::new();
    let mut last = String::new();
    for _ in 0..200 {
        match SyncEngine::new(&phone.store, transport).sync(&mut |_| {}, &CancelFlag::new()) {
            Ok(r) => {
                last = format!("{r:?}");
                let left = r.attachments_left;
                reports.push(r);
                if left == 0 {
                    return reports;
                }
            }
            // As the app does: wait a moment before syncing again (the server limits a
            // device's request rate).
            Err(e) => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    panic!("the attachments never finished uploading; last sync: {last}");
}

#[test]
fn three_photos_recorded_offline_go_up_through_twenty_cuts_after_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    // Offline: three visits, each with a 2 MB photo.
    let refs: Vec<AttachmentRef> = (0..3)
        .map(|i| {
            phone
                .store
                .add_attachment(&photo(2 * MB, i), Some("image/jpeg"))
                .unwrap()
        })
        .collect();
    let visits: Vec<String> = refs
        .iter()
        .map(|r| visit_with(&phone, &data, std::slice::from_ref(r)))
        .collect();
    let proxy = CuttingProxy::start(server.addr);
    let mut transport = HttpTransport::new(&proxy.url()).unwrap();
    transport.backoff = Duration::from_millis(10);
    transport.attempts = 1;
    let photo_bytes = (3 * 2 * MB) as u64;
    // The first sync is cut inside the first photo: its records are on the server already.
    proxy.cut_up_after.store(600_000, Ordering::SeqCst);
    let _ = SyncEngine::new(&phone.store, &transport).sync(&mut |_| {}, &CancelFlag::new());
    for v in &visits {
        assert!(
            server.storage.record(v).unwrap().is_some(),
            "record {v} accepted first"
        );
    }
    assert!(!complete(server.storage.as_ref(), &refs[0]));
    // Nineteen more cuts at random bytes of the upload.
    let mut rng = Rng::new(7);
    for _ in 0..19 {
        let at = 1_000 + rng.below(250_000) as i64;
        proxy.cut_up_after.store(at, Ordering::SeqCst);
        let _ = SyncEngine::new(&phone.store, &transport).sync(&mut |_| {}, &CancelFlag::new());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 20, "every cut happened");
    proxy.cut_up_after.store(-1, Ordering::SeqCst);
    sync_until_uploaded(&phone, &transport);
    for r in &refs {
        assert!(complete(server.storage.as_ref(), r));
        assert_eq!(server_sha(server.storage.as_ref(), &r.sha256), r.sha256);
    }
    // Nothing the server held was sent again beyond the chunk in flight at each cut (plus
    // the records and the requests' headers).
    let sent = proxy.bytes_up.load(Ordering::SeqCst);
    let allowance = 20 * 256 * 1024 + 400 * 1024;
    assert!(
        sent <= photo_bytes + allowance as u64,
        "{sent} bytes sent for {photo_bytes} bytes of photos"
    );
    let states: Vec<AttachmentState> = phone
        .store
        .attachments()
        .unwrap()
        .iter()
        .map(|a| a.state)
        .collect();
    assert!(
        states.iter().all(|s| *s != AttachmentState::Pending),
        "{states:?}"
    );
}

#[test]
fn a_phone_killed_mid_upload_continues_where_the_server_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let r = phone
        .store
        .add_attachment(&photo(4 * MB, 11), None)
        .unwrap();
    visit_with(&phone, &data, std::slice::from_ref(&r));
    let path = phone.path.clone();
    drop(phone);
    let mut child = Command::new(env!("CARGO_BIN_EXE_phone-worker"))
        .args(["upload", path.to_str().unwrap(), "16384"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    for line in out.lines() {
        let line = line.unwrap();
        eprintln!("worker: {line}");
        if let Some(n) = line.strip_prefix("UP ") {
            if n.parse::<u64>().unwrap() >= MB as u64 {
                break;
            }
        }
        assert!(
            !line.starts_with("SYNC-OK"),
            "the upload finished before the kill"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let held = server.storage.attachment(&r.sha256).unwrap().unwrap();
    assert!(!held.complete && held.held >= MB as u64, "{held:?}");
    // The app starts again and syncs: it sends only what the server lacks (and one chunk).
    let phone = Phone {
        store: gridsync_core::store::Store::open(&path).unwrap(),
        path,
        transport: HttpTransport::new(&server.url()).unwrap(),
        person: person_in(&data, Role::Liaison, "DEMO-T01-V01"),
    };
    let rep = phone.sync().unwrap();
    assert_eq!(rep.attachments_left, 0);
    assert!(
        rep.attachment_bytes_up <= r.size - held.held + 16384,
        "{} bytes sent again for {} missing",
        rep.attachment_bytes_up,
        r.size - held.held
    );
    assert_eq!(server_sha(server.storage.as_ref(), &r.sha256), r.sha256);
}

#[test]
fn bytes_changed_in_transit_are_refused_and_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let r = phone.store.add_attachment(&photo(MB, 21), None).unwrap();
    visit_with(&phone, &data, std::slice::from_ref(&r));
    let proxy = CuttingProxy::start(server.addr);
    let transport = HttpTransport::new(&proxy.url()).unwrap();
    // The record goes up in a few kilobytes; the photo's first chunk (256 KiB) follows, and
    // one bit of it is changed on the way.
    proxy.flip_up_at.store(200_000, Ordering::SeqCst);
    let rep = sync_until_uploaded(&phone, &transport);
    assert_eq!(
        proxy.flip_up_at.load(Ordering::SeqCst),
        -1,
        "a bit was flipped"
    );
    assert_eq!(server_sha(server.storage.as_ref(), &r.sha256), r.sha256);
    let sent: u64 = rep.iter().map(|r| r.attachment_bytes_up).sum();
    assert!(sent > r.size, "the corrupt bytes were sent again ({sent})");
}

#[test]
fn a_phone_in_scope_downloads_through_a_cut_and_one_outside_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let r = phone
        .store
        .add_attachment(&photo(3 * MB, 31), None)
        .unwrap();
    let visit = visit_with(&phone, &data, std::slice::from_ref(&r));
    let rep = phone.sync().unwrap();
    assert_eq!(rep.attachments_left, 0);
    // The township's supervisor sees the visit and opens the photo through a cut link.
    let sup = person_in(&data, Role::Supervisor, "DEMO-T01");
    let proxy = CuttingProxy::start(server.addr);
    let sp = Phone::enrol(&server, &proxy.url(), dir.path(), "sup", &sup.id);
    sp.sync().unwrap();
    assert!(sp.store.visit(&visit).is_ok());
    assert_eq!(
        sp.store.referenced_attachment(&r.sha256).unwrap(),
        Some(r.clone())
    );
    proxy.cut_after.store(1_500_000, Ordering::SeqCst);
    let mut once = HttpTransport::new(&proxy.url()).unwrap();
    once.attempts = 1;
    let first = SyncEngine::new(&sp.store, &once).fetch_attachment(&r.sha256);
    assert!(first.is_err(), "the first download is cut");
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1);
    let (bytes, received) = SyncEngine::new(&sp.store, &once)
        .fetch_attachment_counted(&r.sha256, &CancelFlag::new())
        .unwrap();
    // The second download asked only for what the first did not keep (kept in whole
    // pieces of 1 MiB: at most one piece again).
    assert!(
        received <= r.size - MB as u64 + 1,
        "{received} bytes received again"
    );
    assert_eq!(hex::encode(Sha256::digest(&bytes)), r.sha256);
    let info = sp.store.attachment_info(&r.sha256).unwrap().unwrap();
    assert_eq!(info.state, AttachmentState::Cached);
    // A liaison of another village: neither the record nor the bytes.
    let other = person_in(&data, Role::Liaison, "DEMO-T01-V02");
    let op = Phone::enrol(&server, &server.url(), dir.path(), "other", &other.id);
    op.sync().unwrap();
    // Its phone knows no record naming the photo; asked directly, the server answers 404
    // to every method, with no bytes.
    assert!(matches!(
        SyncEngine::new(&op.store, &op.transport).fetch_attachment(&r.sha256),
        Err(gridsync_core::Error::NotFound { .. })
    ));
    let link = op.store.server_link().unwrap().unwrap();
    let auth = format!("Bearer {}.{}", link.device_id, link.secret);
    match op.transport.attachment_read(&auth, &r.sha256, 0, 1000) {
        Err(gridsync_core::Error::Server { status: 404, .. }) => {}
        other => panic!("outside scope: {other:?}"),
    }
    assert_eq!(
        op.transport.attachment_state(&auth, &r.sha256).unwrap(),
        None
    );
    assert!(op.store.attachment_info(&r.sha256).unwrap().is_none());
}

#[test]
fn a_full_disk_while_adding_a_photo_is_a_clear_error_and_loses_nothing() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, data, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let kept = phone
        .store
        .add_attachment(&photo(200_000, 41), None)
        .unwrap();
    let visit = visit_with(&phone, &data, std::slice::from_ref(&kept));
    let path = phone.path.clone();
    drop(phone);
    let big = dir.path().join("big.jpg");
    std::fs::write(&big, photo(3 * MB, 42)).unwrap();
    // Files may grow to 1 MB at most: the 3 MB photo cannot be written.
    let out = Command::new("prlimit")
        .arg(format!("--fsize={}:", MB))
        .args([
            "sh",
            "-c",
            "trap '' XFSZ; exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_phone-worker"),
            "attach",
            path.to_str().unwrap(),
            big.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ERR "), "{text}");
    assert!(!text.contains("panick"), "{text}");
    let store = gridsync_core::store::Store::open(&path).unwrap();
    let infos = store.attachments().unwrap();
    assert_eq!(infos.len(), 1, "only the photo added before: {infos:?}");
    assert_eq!(store.attachment(&kept.sha256).unwrap(), photo(200_000, 41));
    assert!(store.visit(&visit).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(store.attachment_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with(&kept.sha256))
        .collect();
    assert!(leftovers.is_empty(), "no partial file: {leftovers:?}");
    // With room again the phone syncs its visit and photo.
    let phone = Phone {
        store,
        path,
        transport: HttpTransport::new(&server.url()).unwrap(),
        person: person_in(&data, Role::Liaison, "DEMO-T01-V01"),
    };
    assert_eq!(phone.sync().unwrap().attachments_left, 0);
    assert!(complete(server.storage.as_ref(), &kept));
}
