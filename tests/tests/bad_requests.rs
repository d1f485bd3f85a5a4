//! Hostile and broken requests against a real server: each gets the right status and a
//! message, and the server keeps serving everyone else.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use gridsync_core::model::Role;
use gridsync_core::sync::protocol::{
    self, ErrorBody, ErrorCode, PushOutcome, PushRecord, RejectCode, SyncRequest,
};
use gridsync_tests::*;

struct Api {
    base: String,
    auth: String,
    client: reqwest::blocking::Client,
}

impl Api {
    fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
        let mut rb = self.client.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().expect("send");
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    }

    fn sync(&self, body: Vec<u8>) -> (u16, String) {
        self.post(
            "/v1/sync",
            &[
                ("authorization", &self.auth),
                ("x-gridsync-protocol", "3"),
                ("content-type", protocol::CONTENT_TYPE),
            ],
            body,
        )
    }
}

fn empty_request() -> SyncRequest {
    SyncRequest {
        epoch: String::new(),
        reference_version: String::new(),
        push: vec![],
        cursors: vec![],
        want_full: vec![],
        page_limit: 10,
        bare_docs: false,
        page_bytes: 0,
    }
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    protocol::encode_raw_for_tests(raw)
}

/// The typed code of an error answer's body; the body must be an [`ErrorBody`].
fn error_code(body: &str) -> ErrorCode {
    serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {body}"))
        .error
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let link = phone.store.server_link().unwrap().unwrap();
    let api = Api {
        base: server.url(),
        auth: format!("Bearer {}.{}", link.device_id, link.secret),
        client: reqwest::blocking::Client::new(),
    };
    let good = protocol::encode(&empty_request()).unwrap();

    // Malformed bodies.
    let (s, m) = api.sync(b"this is not gzip".to_vec());
    assert_eq!(s, 400, "{m}");
    assert_eq!(error_code(&m), ErrorCode::MalformedBody);
    assert!(m.contains("gzip"), "{m}");
    let (s, m) = api.sync(gzip(&[0xff; 40]));
    assert_eq!(s, 400, "{m}");
    assert_eq!(error_code(&m), ErrorCode::MalformedBody);
    // Truncated compressed body.
    let (s, m) = api.sync(good[..good.len() / 2].to_vec());
    assert_eq!(s, 400, "{m}");
    assert_eq!(error_code(&m), ErrorCode::MalformedBody);
    // Unknown and missing protocol version.
    let (s, m) = api.post(
        "/v1/sync",
        &[("authorization", &api.auth), ("x-gridsync-protocol", "99")],
        good.clone(),
    );
    assert_eq!(s, 400);
    assert_eq!(error_code(&m), ErrorCode::UnsupportedProtocol);
    assert!(m.contains("99"), "{m}");
    let (s, m) = api.post("/v1/sync", &[("authorization", &api.auth)], good.clone());
    assert_eq!(s, 400);
    assert_eq!(error_code(&m), ErrorCode::MissingProtocol);
    // Missing and wrong credentials.
    let (s, m) = api.post("/v1/sync", &[("x-gridsync-protocol", "3")], good.clone());
    assert_eq!(s, 401);
    assert_eq!(error_code(&m), ErrorCode::MissingCredentials);
    let wrong = format!("Bearer {}.{}", link.device_id, "00".repeat(32));
    let (s, m) = api.post(
        "/v1/sync",
        &[("authorization", &wrong), ("x-gridsync-protocol", "3")],
        good.clone(),
    );
    assert_eq!(s, 401);
    assert_eq!(error_code(&m), ErrorCode::BadCredentials);
    let (s, m) = api.post(
        "/v1/sync",
        &[
            ("authorization", "Bearer garbage"),
            ("x-gridsync-protocol", "3"),
        ],
        good.clone(),
    );
    assert_eq!(s, 401);
    assert_eq!(error_code(&m), ErrorCode::BadCredentials);
    // Another content type.
    let (s, m) = api.post(
        "/v1/sync",
        &[
            ("authorization", &api.auth),
            ("x-gridsync-protocol", "3"),
            ("content-type", "application/json"),
        ],
        good.clone(),
    );
    assert_eq!(s, 415, "{m}");
    assert_eq!(error_code(&m), ErrorCode::ContentType);
    // Oversized body, oversized after decompression, too many records.
    let (s, m) = api.sync(vec![0u8; protocol::MAX_BODY_BYTES + 1]);
    assert_eq!(s, 413, "{m}");
    assert_eq!(error_code(&m), ErrorCode::TooLarge);
    let (s, m) = api.sync(protocol::encode_raw_for_tests(&vec![
        0u8;
        protocol::MAX_DECODED_BYTES
            + 10
    ]));
    assert_eq!(s, 413, "{m}");
    assert_eq!(error_code(&m), ErrorCode::TooLarge);
    let mut many = empty_request();
    many.push = (0..protocol::MAX_PUSH_RECORDS + 1)
        .map(|i| PushRecord {
            id: format!("r{i}"),
            kind: 1,
            changes: vec![],
            heads: vec![[0; 32]],
        })
        .collect();
    let (s, m) = api.sync(protocol::encode(&many).unwrap());
    assert_eq!(s, 413, "{m}");
    assert_eq!(error_code(&m), ErrorCode::TooLarge);
    assert!(m.contains("at most 500"), "{m}");
    // Unknown record kinds and garbage documents are refused per record, with reasons.
    let mut odd = empty_request();
    odd.push = vec![
        PushRecord {
            id: "x1".into(),
            kind: 42,
            changes: vec![1, 2, 3],
            heads: vec![[1; 32]],
        },
        PushRecord {
            id: "x2".into(),
            kind: 1,
            changes: vec![0x85, 0x6f, 0x4a, 0x83, 9, 9],
            heads: vec![[1; 32]],
        },
    ];
    let (s, body) = {
        let r = api
            .client
            .post(format!("{}/v1/sync", api.base))
            .header("authorization", &api.auth)
            .header("x-gridsync-protocol", "3")
            .body(protocol::encode(&odd).unwrap())
            .send()
            .unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    };
    assert_eq!(s, 200);
    let resp: protocol::SyncResponse = protocol::decode(&body).unwrap();
    for r in &resp.results {
        match &r.outcome {
            PushOutcome::Rejected {
                code: RejectCode::BadDocument,
                reason,
            } => assert!(!reason.is_empty()),
            other => panic!("{}: {other:?}", r.id),
        }
    }
    assert!(
        matches!(&resp.results[0].outcome, PushOutcome::Rejected { reason, .. } if reason.contains("kind"))
    );
    // Enrolment: malformed JSON and an oversized body.
    let (s, m) = api.post(
        "/v1/enroll",
        &[("content-type", "application/json")],
        b"{not json".to_vec(),
    );
    assert_eq!(s, 400, "{m}");
    assert_eq!(error_code(&m), ErrorCode::MalformedBody);
    let (s, m) = api.post(
        "/v1/enroll",
        &[("content-type", "application/json")],
        vec![b' '; 20_000],
    );
    assert_eq!(s, 413);
    assert_eq!(error_code(&m), ErrorCode::TooLarge);
    // The same refusals through the phone's own transport arrive typed, not as text.
    let e = phone
        .transport()
        .sync(&api.auth, b"this is not gzip".to_vec())
        .unwrap_err();
    assert!(
        matches!(
            &e,
            gridsync_core::Error::Server {
                status: 400,
                code: ErrorCode::MalformedBody,
                ..
            }
        ),
        "{e:?}"
    );
    let e = phone
        .transport()
        .sync("Bearer garbage", good.clone())
        .unwrap_err();
    assert!(
        matches!(
            &e,
            gridsync_core::Error::Server {
                status: 401,
                code: ErrorCode::BadCredentials,
                ..
            }
        ),
        "{e:?}"
    );
    // After all that, the phone still syncs.
    let p = phone
        .store
        .create_producer(new_producer(
            "仍可同步",
            &phone.person.grids[0],
            &phone.person.id,
        ))
        .unwrap();
    assert_eq!(phone.sync().unwrap().pushed, 1);
    assert!(phone.store.producer(&p.id).is_ok());
}

#[test]
fn a_client_that_sends_its_body_very_slowly_is_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("server");
    let storage: Arc<dyn gridsync_server::storage::Storage> = Arc::new(
        gridsync_server::storage::sqlite::SqliteStorage::open({
            std::fs::create_dir_all(&data_dir).unwrap();
            data_dir.join("gridsync.db")
        })
        .unwrap(),
    );
    let data = small_dataset();
    gridsync_server::demo::load_dataset(storage.as_ref(), &data).unwrap();
    let mut state = gridsync_server::api::AppState::new(storage.clone());
    state.body_timeout = Duration::from_millis(800);
    let state = Arc::new(state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let t = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                gridsync_server::serve_state(l, state, async {
                    rx.await.ok();
                })
                .await
                .unwrap();
            })
    });
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let code = gridsync_server::admin::issue_code(storage.as_ref(), &liaison.id, "t", 1)
        .unwrap()
        .code;
    let url = format!("http://{addr}");
    let store = gridsync_core::store::Store::open(dir.path().join("p.db")).unwrap();
    let transport = gridsync_core::sync::HttpTransport::new(&url).unwrap();
    gridsync_core::sync::enroll(&store, &transport, &url, &code, "p").unwrap();
    let link = store.server_link().unwrap().unwrap();
    // The slow client: headers announce 1,000 bytes, then a byte every 300 ms.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    write!(
        slow,
        "POST /v1/sync HTTP/1.1\r\nHost: x\r\nauthorization: Bearer {}.{}\r\nx-gridsync-protocol: 1\r\ncontent-length: 1000\r\n\r\n",
        link.device_id, link.secret
    )
    .unwrap();
    let slow_thread = std::thread::spawn(move || {
        for _ in 0..20 {
            if slow.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut answer = String::new();
        slow.set_read_timeout(Some(Duration::from_secs(5))).ok();
        slow.read_to_string(&mut answer).ok();
        answer
    });
    // Meanwhile everyone else is served.
    let started = std::time::Instant::now();
    let r = gridsync_core::sync::SyncEngine::new(&store, &transport)
        .sync(&mut |_| {}, &gridsync_core::sync::CancelFlag::new())
        .unwrap();
    assert!(r.pulled > 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    let answer = slow_thread.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "slow body answered: {answer:?}"
    );
    // Told apart from a broken body by the timeout's error type, not by its text.
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert_eq!(error_code(body), ErrorCode::BodyTimeout, "{answer:?}");
    tx.send(()).ok();
    t.join().unwrap();
}

#[test]
fn hostile_zstd_bodies_get_clear_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, phone) = server_and_liaison(dir.path());
    phone.sync().unwrap();
    let link = phone.store.server_link().unwrap().unwrap();
    let api = Api {
        base: server.url(),
        auth: format!("Bearer {}.{}", link.device_id, link.secret),
        client: reqwest::blocking::Client::new(),
    };
    let v4 = |body: Vec<u8>| {
        api.post(
            "/v1/sync",
            &[
                ("authorization", &api.auth),
                ("x-gridsync-protocol", "4"),
                ("content-type", protocol::CONTENT_TYPE),
            ],
            body,
        )
    };
    let good = protocol::encode_request(&empty_request(), 4).unwrap();
    assert_eq!(v4(good.clone()).0, 200);
    // A zstd bomb: 40 MB of zeros in a few kB, refused past the decoded limit.
    let bomb = protocol::encode_raw_at_for_tests(&vec![0u8; protocol::MAX_DECODED_BYTES + 1024], 4);
    assert!(bomb.len() < 64 * 1024);
    let (s, m) = v4(bomb);
    assert_eq!(s, 413, "{m}");
    assert_eq!(error_code(&m), ErrorCode::TooLarge);
    assert!(m.contains("decompresses to more than"), "{m}");
    // Compressed with a dictionary the server does not hold: named.
    let ours = gridsync_core::sync::compress::RECORDS_V1
        .id()
        .unwrap()
        .get()
        .to_le_bytes();
    let at = 5 + good[5..12].windows(4).position(|w| w == ours).unwrap();
    let mut foreign = good.clone();
    foreign[at..at + 4].copy_from_slice(&777u32.to_le_bytes());
    let (s, m) = v4(foreign);
    assert_eq!(s, 400, "{m}");
    assert_eq!(error_code(&m), ErrorCode::MalformedBody);
    assert!(
        m.contains("dictionary id 777") && m.contains("records-v1"),
        "{m}"
    );
    // Truncated frames.
    for cut in [5, good.len() / 2, good.len() - 1] {
        let (s, m) = v4(good[..cut].to_vec());
        assert_eq!(s, 400, "cut at {cut}: {m}");
        assert_eq!(error_code(&m), ErrorCode::MalformedBody);
        assert!(m.contains("zstd"), "{m}");
    }
    // A frame asking for a 2 GiB window.
    let mut huge_window = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (31 - 10) << 3];
    huge_window.extend([0u8; 16]);
    let (s, m) = v4(huge_window);
    assert_eq!((s, error_code(&m)), (400, ErrorCode::MalformedBody), "{m}");
    // Valid zstd of bytes that are no message.
    let (s, m) = v4(protocol::encode_raw_at_for_tests(&[0xff; 40], 4));
    assert_eq!((s, error_code(&m)), (400, ErrorCode::MalformedBody), "{m}");
    assert!(m.contains("malformed message"), "{m}");
    // The server still serves the same phone, in version 4.
    assert_eq!(v4(good).0, 200);
    assert_eq!(phone.sync().unwrap().protocol, 4);
}
