//! The attachment endpoints against a real server on loopback, on each backend: a phone's
//! visit referring to photos is pushed through the real push path, then the endpoints are
//! driven with crafted requests (uploads cut and resumed, wrong offsets, bytes changed in
//! transit, devices outside scope, quota and size limits).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;

use gridsync_core::attachment::AttachmentRef;
use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{
    default_template, Finding, GridKind, GridLevel, GridNode, Person, Producer, Record, Role,
    Severity, Visit,
};
use gridsync_core::sync::protocol::{ErrorBody, ErrorCode, PushOutcome, PushRecord, SyncRequest};
use gridsync_server::api::AppState;
use gridsync_server::storage::testing::{test_url_from_env, ScratchSchema};
use gridsync_server::storage::{open_storage, AttachmentLimits, StorageConfig};
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

const MIB: usize = 1024 * 1024;
/// The quota of the test server (bytes of attachments per device).
const QUOTA: u64 = 3_000_000;

struct Server {
    state: Arc<AppState>,
    url: String,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _keep: Box<dyn std::any::Any>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            tx.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

fn start(config: StorageConfig, keep: Box<dyn std::any::Any>) -> Server {
    let storage = open_storage(&config).unwrap();
    let mut state = AppState::new(storage);
    state.attachment_limits = AttachmentLimits {
        quota_bytes: QUOTA,
        ..AttachmentLimits::default()
    };
    let state = Arc::new(state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s2 = state.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            gridsync_server::serve_state(listener, s2, async {
                rx.await.ok();
            })
            .await
            .unwrap();
        });
    });
    Server {
        state,
        url: format!("http://{addr}"),
        addr,
        stop: Some(tx),
        thread: Some(thread),
        _keep: keep,
    }
}

fn node(code: &str, level: GridLevel, parent: Option<&str>) -> GridNode {
    GridNode {
        code: code.into(),
        name: format!("网格{code}"),
        level,
        kind: GridKind::Mixed,
        parent: parent.map(str::to_string),
    }
}

fn person(id: &str, role: Role, grid: &str) -> Person {
    Person {
        id: id.into(),
        name: format!("人员{id}"),
        phone: "13912345678".into(),
        role,
        grids: vec![grid.into()],
    }
}

/// A device's bearer credential.
struct Cred(String);

fn enrol(s: &Server, http: &Client, person_id: &str) -> (String, Cred) {
    let code = gridsync_server::admin::issue_code(s.state.storage.as_ref(), person_id, "test", 1)
        .unwrap()
        .code;
    let resp: serde_json::Value = http
        .post(format!("{}/v1/enroll", s.url))
        .json(&serde_json::json!({"code": code, "device_name": "test phone"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = resp["device_id"].as_str().unwrap().to_string();
    let secret = resp["secret"].as_str().unwrap();
    (id.clone(), Cred(format!("Bearer {id}.{secret}")))
}

/// `n` bytes of a JPEG whose content differs with `seed`, and its reference.
fn jpeg(n: usize, seed: u8) -> (Vec<u8>, AttachmentRef) {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend((0..n - 4).map(|i| ((i * 7) as u8) ^ seed));
    let r = AttachmentRef::of_bytes(&b, Some("image/jpeg"), u64::MAX).unwrap();
    (b, r)
}

/// Pushes, as `device_id` of `person_id`, a visit of `producer` whose finding shows `photos`,
/// through the server's push judgement.
fn push_visit(
    s: &Server,
    device_id: &str,
    person_id: &str,
    producer: &str,
    photos: &[&AttachmentRef],
) {
    let now = gridsync_core::now_ms();
    let mut v = Visit::new(producer, "V1", person_id, &default_template("builtin"), now);
    v.findings.push(Finding {
        id: gridsync_core::new_id(),
        item_id: None,
        description: "饲料与兽药混放".into(),
        severity: Severity::Minor,
        photos: photos.iter().map(|r| r.to_string()).collect(),
        recorded_by: person_id.into(),
        recorded_at_ms: now,
    });
    let rec = Record::Visit(v);
    let mut d = RecordDoc::create(
        &rec,
        &gridsync_core::device_actor(device_id),
        person_id,
        now,
    )
    .unwrap();
    let push = PushRecord {
        id: rec.id().to_string(),
        kind: rec.kind().tag(),
        changes: d.save(),
        heads: d.heads().iter().map(|h| h.0).collect(),
    };
    let storage = s.state.storage.as_ref();
    let device = storage.device(device_id).unwrap().unwrap();
    let person = storage.person(person_id).unwrap().unwrap();
    let req = SyncRequest {
        epoch: String::new(),
        reference_version: String::new(),
        push: vec![push],
        cursors: Vec::new(),
        want_full: Vec::new(),
        page_limit: 10,
        bare_docs: false,
        page_bytes: 0,
    };
    let resp = gridsync_server::api::handle_sync(&s.state, &device, &person, req).unwrap();
    assert_eq!(
        resp.results[0].outcome,
        PushOutcome::Accepted,
        "{:?}",
        resp.results
    );
}

fn head(http: &Client, s: &Server, c: &Cred, sha: &str) -> Response {
    http.head(format!("{}/v1/attachments/{sha}", s.url))
        .header("Authorization", &c.0)
        .send()
        .unwrap()
}

fn patch(
    http: &Client,
    s: &Server,
    c: &Cred,
    r: &AttachmentRef,
    offset: u64,
    body: Vec<u8>,
) -> Response {
    http.patch(format!("{}/v1/attachments/{}", s.url, r.sha256))
        .header("Authorization", &c.0)
        .header("Upload-Offset", offset.to_string())
        .header("Upload-Length", r.size.to_string())
        .header("Attachment-Type", &r.mime)
        .header("Content-Type", "application/offset+octet-stream")
        .body(body)
        .send()
        .unwrap()
}

fn get(http: &Client, s: &Server, c: &Cred, sha: &str, range: Option<&str>) -> Response {
    let mut req = http
        .get(format!("{}/v1/attachments/{sha}", s.url))
        .header("Authorization", &c.0);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    req.send().unwrap()
}

fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Uploads `bytes` from `from` in chunks of at most 1 MiB; the last answer.
fn upload_from(
    http: &Client,
    s: &Server,
    c: &Cred,
    r: &AttachmentRef,
    bytes: &[u8],
    from: usize,
) -> Response {
    let mut at = from;
    loop {
        let end = (at + MIB).min(bytes.len());
        let resp = patch(http, s, c, r, at as u64, bytes[at..end].to_vec());
        if end == bytes.len() || resp.status() != StatusCode::NO_CONTENT {
            return resp;
        }
        assert_eq!(header(&resp, "upload-offset"), end.to_string());
        assert_eq!(header(&resp, "upload-complete"), "?0");
        at = end;
    }
}

/// A PATCH whose connection is cut after `sent` of its `len` body bytes.
fn cut_patch(s: &Server, c: &Cred, r: &AttachmentRef, offset: u64, body: &[u8], sent: usize) {
    let mut conn = std::net::TcpStream::connect(s.addr).unwrap();
    let head = format!(
        "PATCH /v1/attachments/{} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nUpload-Offset: {offset}\r\nUpload-Length: {}\r\nAttachment-Type: {}\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        r.sha256, s.addr, c.0, r.size, r.mime, body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body[..sent]).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(conn);
    // The server notices the cut and keeps what arrived.
    std::thread::sleep(std::time::Duration::from_millis(200));
}

fn scenario(s: &Server) {
    let storage = s.state.storage.as_ref();
    storage
        .import_grids(&[
            node("B", GridLevel::Banner, None),
            node("T1", GridLevel::Township, Some("B")),
            node("V1", GridLevel::Village, Some("T1")),
            node("V2", GridLevel::Village, Some("T1")),
        ])
        .unwrap();
    let admin = person("p0", Role::Admin, "B");
    for p in [
        admin.clone(),
        person("p1", Role::Liaison, "V1"),
        person("p2", Role::Supervisor, "T1"),
        person("p3", Role::Liaison, "V2"),
    ] {
        gridsync_server::admin::add_person(storage, &p).unwrap();
    }
    let now = gridsync_core::now_ms();
    // A valid producer from the generated dataset, moved into V1.
    let data =
        gridsync_server::dataset::generate(&gridsync_server::dataset::DatasetSpec::township(7));
    let mut producer: Producer = data.producers[0].clone();
    producer.grid = "V1".into();
    producer.created_at_ms = now;
    producer.updated_at_ms = now;
    gridsync_server::admin::seed_records(storage, &admin, &[Record::Producer(producer.clone())])
        .unwrap();
    let http = Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let (d1, liaison) = enrol(s, &http, "p1");
    let (_, supervisor) = enrol(s, &http, "p2");
    let (_, outsider) = enrol(s, &http, "p3");

    let (photo, photo_ref) = jpeg(2 * MIB + 500_000, 1);
    let (sign, sign_ref) = jpeg(200_000, 2);
    let (extra, extra_ref) = jpeg(400_000, 3);
    let (stray, stray_ref) = jpeg(1000, 4);
    push_visit(
        s,
        &d1,
        "p1",
        &producer.id,
        &[&photo_ref, &sign_ref, &extra_ref],
    );

    // Nothing held yet: 404, the client starts at 0.
    assert_eq!(
        head(&http, s, &liaison, &photo_ref.sha256).status(),
        StatusCode::NOT_FOUND
    );
    // Unauthenticated: 401.
    let r = http
        .head(format!("{}/v1/attachments/{}", s.url, photo_ref.sha256))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The first chunk, then a chunk cut in transit: the bytes that reached the server are
    // kept (the phone continues from there).
    let r = patch(&http, s, &liaison, &photo_ref, 0, photo[..MIB].to_vec());
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        (header(&r, "upload-offset"), header(&r, "upload-complete")),
        (MIB.to_string(), "?0".into())
    );
    cut_patch(
        s,
        &liaison,
        &photo_ref,
        MIB as u64,
        &photo[MIB..2 * MIB],
        300_000,
    );
    // HEAD tells where to resume.
    let kept = MIB + 300_000;
    let r = head(&http, s, &liaison, &photo_ref.sha256);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "upload-offset"), kept.to_string());
    assert_eq!(header(&r, "upload-length"), photo.len().to_string());
    assert_eq!(header(&r, "upload-complete"), "?0");
    // A wrong offset: 409 with the server's offset.
    let r = patch(&http, s, &liaison, &photo_ref, 0, photo[..1000].to_vec());
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(header(&r, "upload-offset"), kept.to_string());
    assert_eq!(error_code(r), ErrorCode::OffsetMismatch);
    // A body running past the attachment's end: 400, nothing of it kept.
    let mut past = photo[kept..].to_vec();
    past.push(0);
    let r = patch(&http, s, &liaison, &photo_ref, kept as u64, past);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), ErrorCode::PastEnd);
    assert_eq!(
        header(
            &head(&http, s, &liaison, &photo_ref.sha256),
            "upload-offset"
        ),
        kept.to_string()
    );
    // The rest, from the offset HEAD gave.
    let r = upload_from(&http, s, &liaison, &photo_ref, &photo, kept);
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        (header(&r, "upload-offset"), header(&r, "upload-complete")),
        (photo.len().to_string(), "?1".into())
    );
    let r = head(&http, s, &liaison, &photo_ref.sha256);
    assert_eq!(header(&r, "upload-complete"), "?1");
    // Already complete: 200, the body ignored.
    let r = patch(&http, s, &liaison, &photo_ref, 0, photo[..10].to_vec());
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "upload-complete"), "?1");

    // The supervisor (scope: the township) downloads, whole and in a range.
    let r = get(&http, s, &supervisor, &photo_ref.sha256, None);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    assert_eq!(r.bytes().unwrap().as_ref(), photo.as_slice());
    let r = get(
        &http,
        s,
        &supervisor,
        &photo_ref.sha256,
        Some("bytes=1000000-"),
    );
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 1000000-{}/{}", photo.len() - 1, photo.len())
    );
    assert_eq!(r.bytes().unwrap().as_ref(), &photo[1_000_000..]);
    let r = get(&http, s, &supervisor, &photo_ref.sha256, Some("bytes=5-9"));
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().unwrap().as_ref(), &photo[5..10]);
    let r = get(
        &http,
        s,
        &supervisor,
        &photo_ref.sha256,
        Some(&format!("bytes={}-", photo.len())),
    );
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // It may download, not upload: no record it pushed refers to the photo.
    assert_eq!(
        patch(&http, s, &supervisor, &photo_ref, 0, photo[..10].to_vec()).status(),
        StatusCode::NOT_FOUND
    );

    // A device outside the scope learns nothing: 404, no body, for GET and HEAD alike.
    let r = get(&http, s, &outsider, &photo_ref.sha256, None);
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.bytes().unwrap().is_empty());
    let r = head(&http, s, &outsider, &photo_ref.sha256);
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        head(&http, s, &outsider, &stray_ref.sha256).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&http, s, &outsider, "not-a-hash", None).status(),
        StatusCode::NOT_FOUND
    );

    // Bytes changed in transit: 422 and everything held discarded.
    let mut bad = sign.clone();
    bad[150_000] ^= 0x55;
    let r = patch(&http, s, &liaison, &sign_ref, 0, bad);
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(r), ErrorCode::AttachmentCorrupt);
    assert_eq!(
        head(&http, s, &liaison, &sign_ref.sha256).status(),
        StatusCode::NOT_FOUND
    );
    // An incomplete attachment is not served.
    assert_eq!(
        get(&http, s, &supervisor, &sign_ref.sha256, None).status(),
        StatusCode::NOT_FOUND
    );
    let r = upload_from(&http, s, &liaison, &sign_ref, &sign, 0);
    assert_eq!(header(&r, "upload-complete"), "?1");

    // An attachment no record of this device refers to: 404.
    let r = patch(&http, s, &liaison, &stray_ref, 0, stray.clone());
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.bytes().unwrap().is_empty());
    // Declared with another size than the reference: 404 too.
    let other_size = AttachmentRef {
        size: sign_ref.size + 1,
        ..sign_ref.clone()
    };
    assert_eq!(
        patch(&http, s, &liaison, &other_size, 0, sign[..10].to_vec()).status(),
        StatusCode::NOT_FOUND
    );

    // Over the quota (3,000,000 bytes; 2.7 MB uploaded): 507.
    let r = patch(&http, s, &liaison, &extra_ref, 0, extra[..1000].to_vec());
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(error_code(r), ErrorCode::AttachmentQuota);
    // Above the size limit: 413.
    let huge = AttachmentRef {
        size: 10 * 1024 * 1024 + 1,
        ..extra_ref.clone()
    };
    let r = patch(&http, s, &liaison, &huge, 0, vec![0xFF; 10]);
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r), ErrorCode::AttachmentTooLarge);
    // Not the upload content type: 415; a missing offset: 400.
    let r = http
        .patch(format!("{}/v1/attachments/{}", s.url, extra_ref.sha256))
        .header("Authorization", &liaison.0)
        .header("Upload-Length", extra_ref.size.to_string())
        .header("Attachment-Type", "image/jpeg")
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![1u8])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r), ErrorCode::MissingHeader);
    let r = http
        .patch(format!("{}/v1/attachments/{}", s.url, extra_ref.sha256))
        .header("Authorization", &liaison.0)
        .header("Upload-Offset", "0")
        .header("Upload-Length", extra_ref.size.to_string())
        .header("Attachment-Type", "image/jpeg")
        .body(vec![1u8])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(r), ErrorCode::ContentType);
}

/// The typed code of an error answer, whose body has the one shape of every error answer:
/// `{"error", "message"}` and nothing else.
fn error_code(r: Response) -> ErrorCode {
    let v: serde_json::Value = r.json().unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["error", "message"], "{v}");
    serde_json::from_value::<ErrorBody>(v).unwrap().error
}

#[test]
fn attachments_over_http_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig::Sqlite {
        path: dir.path().join("gridsync.db"),
    };
    let s = start(config, Box::new(dir));
    scenario(&s);
}

#[test]
fn attachments_over_http_on_postgres() {
    let Some(url) = test_url_from_env() else {
        return;
    };
    let schema = ScratchSchema::new(&url).unwrap();
    let config = schema.config();
    let s = start(config, Box::new(schema));
    scenario(&s);
}
