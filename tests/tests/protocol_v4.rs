//! Protocol v4 (zstd with the trained dictionary `records-v1`) beside v3 (gzip), over real
//! HTTP on loopback: the server serves both kinds of phone side by side, each in its own
//! compression, and a v4 phone falls back to v3 against a server that does not speak v4.

// Test code: an unwrap is an assertion, in helpers as in test functions.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use gridsync_core::model::Role;
use gridsync_core::sync::protocol::{self, SyncRequest};
use gridsync_core::sync::{CancelFlag, SyncEngine, SyncReport};
use gridsync_tests::*;

const GZIP: [u8; 2] = [0x1f, 0x8b];
const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn sync_at(phone: &Phone, version: u16) -> SyncReport {
    let mut e = SyncEngine::new(&phone.store, &phone.transport);
    e.protocol_version = version;
    e.sync(&mut |_| {}, &CancelFlag::new()).unwrap()
}

fn assert_same_documents_as_server(phone: &Phone, server: &TestServer) {
    let db = rusqlite::Connection::open(&phone.path).unwrap();
    let mut st = db.prepare("SELECT id, doc FROM records").unwrap();
    let docs: Vec<(String, Vec<u8>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!docs.is_empty());
    for (id, doc) in &docs {
        let stored = server.storage.record(id).unwrap().expect("on the server");
        assert!(
            &stored.doc == doc,
            "document of {id} differs from the server's"
        );
    }
}

/// POSTs a sync body with a protocol header; returns the status and the answer's body.
fn post(server: &TestServer, auth: &str, version: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url()))
        .header("authorization", auth)
        .header(protocol::PROTOCOL_HEADER, version)
        .header("content-type", protocol::CONTENT_TYPE)
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

#[test]
fn v3_and_v4_phones_are_served_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let (server, data, v4) = server_and_liaison(dir.path());
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let v3 = Phone::enrol(&server, &server.url(), dir.path(), "v3", &liaison.id);

    // Both bootstrap the same village, in small pages so that both take several.
    let mut e = SyncEngine::new(&v4.store, &v4.transport);
    e.first_page_bytes = 4096;
    e.max_page_bytes = 8192;
    let r4 = e.sync(&mut |_| {}, &CancelFlag::new()).unwrap();
    let mut e = SyncEngine::new(&v3.store, &v3.transport);
    e.first_page_bytes = 4096;
    e.max_page_bytes = 8192;
    e.protocol_version = 3;
    let r3 = e.sync(&mut |_| {}, &CancelFlag::new()).unwrap();
    assert_eq!((r4.protocol, r3.protocol), (4, 3));
    assert!(r4.pulled > 0);
    assert_eq!(r4.pulled, r3.pulled);
    assert_eq!(r4.round_trips, r3.round_trips);
    assert_same_documents_as_server(&v4, &server);
    assert_same_documents_as_server(&v3, &server);
    assert_eq!(v4.store.counts().unwrap(), v3.store.counts().unwrap());
    // The dictionary's bodies are smaller, both ways.
    assert!(
        r4.bytes_down * 10 < r3.bytes_down * 9,
        "v4 received {} bytes, v3 {}",
        r4.bytes_down,
        r3.bytes_down
    );
    assert!(r4.bytes_up < r3.bytes_up, "{} {}", r4.bytes_up, r3.bytes_up);

    // An edit on the v3 phone reaches the v4 phone and back.
    let mut p = producer_named(&v3, "DEMO-T01-V01");
    p.phone = "13900000003".into();
    v3.store.update_producer(p.clone()).unwrap();
    assert_eq!(sync_at(&v3, 3).pushed, 1);
    assert_eq!(sync_at(&v4, 4).pulled, 1);
    let mut q = v4.store.producer(&p.id).unwrap();
    assert_eq!(q.phone, "13900000003");
    q.phone = "13900000004".into();
    v4.store.update_producer(q).unwrap();
    assert_eq!(sync_at(&v4, 4).pushed, 1);
    assert_eq!(sync_at(&v3, 3).pulled, 1);
    assert_eq!(v3.store.producer(&p.id).unwrap().phone, "13900000004");

    // On the wire: each answer in its version's compression, whatever the request's.
    let link = v3.store.server_link().unwrap().unwrap();
    let auth = format!("Bearer {}.{}", link.device_id, link.secret);
    let req = SyncRequest {
        epoch: String::new(),
        reference_version: String::new(),
        push: vec![],
        cursors: vec![protocol::Cursor {
            grid: "DEMO-T01-V01".into(),
            seq: 0,
            token: 0,
        }],
        want_full: vec![],
        page_limit: 50,
        bare_docs: true,
        page_bytes: 0,
    };
    let (s, v3_answer) = post(
        &server,
        &auth,
        "3",
        protocol::encode_request(&req, 3).unwrap(),
    );
    assert_eq!(s, 200);
    assert!(v3_answer.starts_with(&GZIP));
    let (s, v4_answer) = post(
        &server,
        &auth,
        "4",
        protocol::encode_request(&req, 4).unwrap(),
    );
    assert_eq!(s, 200);
    assert!(v4_answer.starts_with(&ZSTD));
    let a3 = protocol::decode_response(&v3_answer, 3).unwrap();
    let a4 = protocol::decode_response(&v4_answer, 4).unwrap();
    assert_eq!(a3.records, a4.records);
    assert_eq!(a3.docs_digest, a4.docs_digest);
    assert!(v4_answer.len() < v3_answer.len());
    // A v3 answer is gzip level 6 of its message, byte for byte as before v4.
    assert_eq!(protocol::encode_response(&a3, 3).unwrap(), v3_answer);
    // A request's compression is told by its magic number: a gzip'd v4 request and a
    // zstd v3 request are both read (and answered in the header's version).
    let (s, b) = post(
        &server,
        &auth,
        "4",
        protocol::encode_request(&req, 3).unwrap(),
    );
    assert_eq!(s, 200);
    assert!(b.starts_with(&ZSTD));
    let (s, b) = post(
        &server,
        &auth,
        "3",
        protocol::encode_request(&req, 4).unwrap(),
    );
    assert_eq!(s, 200);
    assert!(b.starts_with(&GZIP));
    // Version 5 is refused, naming the versions this server speaks.
    let (s, b) = post(&server, &auth, "5", protocol::encode(&req).unwrap());
    assert_eq!(s, 400);
    let text = String::from_utf8_lossy(&b);
    assert!(text.contains("unsupported_protocol"), "{text}");
    assert!(text.contains("versions 1 to 4"), "{text}");
}

fn producer_named(phone: &Phone, grid: &str) -> gridsync_core::model::Producer {
    let list = phone
        .store
        .producers_in_grid(grid, gridsync_core::store::ProducerSort::Name, 100, 0)
        .unwrap();
    phone.store.producer(&list[0].id).unwrap()
}

/// A server of protocol version 3 as phones meet it: a proxy on loopback in front of the
/// real server that answers a version 4 request as a version 3 server's `check_protocol`
/// does (`400 unsupported_protocol`, naming versions 1 to 3) and forwards everything else.
struct V3Server {
    addr: SocketAddr,
    refused: Arc<AtomicU32>,
    forwarded_v4: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl V3Server {
    fn start(target: SocketAddr) -> V3Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = Arc::new(AtomicU32::new(0));
        let forwarded_v4 = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, f, s) = (refused.clone(), forwarded_v4.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, f) = (r.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(conn, target, &r, &f);
                });
            }
        });
        V3Server {
            addr,
            refused,
            forwarded_v4,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for V3Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request per connection: read the head and the body, refuse version 4 or forward
/// with `connection: close` and copy the answer back.
fn serve_one(
    conn: TcpStream,
    target: SocketAddr,
    refused: &AtomicU32,
    forwarded_v4: &AtomicU32,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut version = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix(&format!("{}:", protocol::PROTOCOL_HEADER)) {
            version = Some(v.trim().to_string());
        }
        if !lower.starts_with("connection:") {
            head.push(line);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut out = conn;
    if version.as_deref() == Some("4") {
        refused.fetch_add(1, Ordering::SeqCst);
        let msg = r#"{"error":"unsupported_protocol","message":"protocol version 4 is not supported; this server speaks versions 1 to 3"}"#;
        write!(
            out,
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}",
            msg.len()
        )?;
        return out.shutdown(Shutdown::Write);
    }
    if body.starts_with(&ZSTD) {
        forwarded_v4.fetch_add(1, Ordering::SeqCst);
    }
    let mut up = TcpStream::connect(target)?;
    for line in &head {
        up.write_all(line.as_bytes())?;
    }
    up.write_all(b"connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    out.write_all(&answer)?;
    out.shutdown(Shutdown::Write)
}

#[test]
fn a_v4_phone_falls_back_to_version_3_on_a_server_that_does_not_speak_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let old = V3Server::start(server.addr);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    // Enrolment and the secret's rotation go through the old server too.
    let phone = Phone::enrol(&server, &old.url(), dir.path(), "p", &liaison.id);
    let report = phone.sync().unwrap();
    assert_eq!(report.protocol, 3, "{report:?}");
    assert!(report.pulled > 0);
    assert_eq!(
        old.refused.load(Ordering::SeqCst),
        1,
        "one refused round trip"
    );
    assert_eq!(
        old.forwarded_v4.load(Ordering::SeqCst),
        0,
        "no zstd body passed"
    );
    assert_same_documents_as_server(&phone, &server);
    // A push through the old server, then another sync: it falls back again (one more
    // refused round trip of a few hundred bytes) and pushes in version 3.
    let mut p = producer_named(&phone, "DEMO-T01-V01");
    p.phone = "13900000005".into();
    phone.store.update_producer(p.clone()).unwrap();
    let report = phone.sync().unwrap();
    assert_eq!((report.protocol, report.pushed), (3, 1));
    assert_eq!(old.refused.load(Ordering::SeqCst), 2);
    let stored = server
        .storage
        .record(&p.id)
        .unwrap()
        .expect("on the server");
    assert!(
        report.pushed == 1 && !stored.doc.is_empty(),
        "the push reached the server"
    );
    // Rotating the secret speaks version 3 as well, which the old server takes.
    SyncEngine::new(&phone.store, &phone.transport)
        .rotate_credential()
        .unwrap();
    assert_eq!(sync_at(&phone, 4).protocol, 3);
    // The same phone straight to the current server speaks version 4 again.
    let mut direct = phone;
    direct.transport = gridsync_core::sync::HttpTransport::new(&server.url()).unwrap();
    let report = direct.sync().unwrap();
    assert_eq!(report.protocol, 4);
    assert_eq!(old.refused.load(Ordering::SeqCst), 3);
}
