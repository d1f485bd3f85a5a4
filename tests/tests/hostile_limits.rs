//! Resource attacks against a real server on 127.0.0.1 (issue 12, classes 5 to 8): each
//! limit answers with its own status and code, and the server keeps serving everyone else.
//! Limits are set small through the server's state so that every test takes seconds.
//!
//! Several tests connect from other loopback addresses (127.0.0.2, 127.0.1.x, ...): the
//! whole 127.0.0.0/8 range reaches the server on Linux, and the server counts connections
//! per source address.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridsync_core::model::{RecordKind, Role};
use gridsync_core::sync::protocol::{
    self, ErrorBody, ErrorCode, PushOutcome, PushRecord, SyncRequest, SyncResponse,
};
use gridsync_server::api::AppState;
use gridsync_server::storage::{Author, PushDecision};
use gridsync_tests::*;

/// A test world: a server with [`small_dataset`] and a liaison's enrolled phone.
struct World {
    _dir: tempfile::TempDir,
    server: TestServer,
    data: gridsync_server::dataset::Dataset,
    phone: Phone,
}

fn world(configure: impl FnOnce(&mut AppState) + Send + 'static) -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &Backend::from_env(),
        configure,
    );
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let phone = Phone::enrol(&server, &server.url(), dir.path(), "p", &liaison.id);
    World {
        _dir: dir,
        server,
        data,
        phone,
    }
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The typed code of the answer's error body (`Unknown` if it has none).
    fn error_code(&self) -> ErrorCode {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .map(|b| b.error)
            .unwrap_or(ErrorCode::Unknown)
    }
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(from, 0))?;
        let stream = s.connect(to).await?;
        let std = stream.into_std()?;
        std.set_nonblocking(false)?;
        Ok(std)
    })
}

/// Reads one HTTP/1.1 answer (the request said `connection: close`).
fn read_answer(mut s: TcpStream) -> std::io::Result<Answer> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no answer head in {} bytes", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
}

/// Sends one request from loopback address `from` and reads its answer.
fn request_from(
    from: IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut s = connect_from(from, to)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: gridsync\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    read_answer(s)
}

/// A keep-alive `GET /healthz` on `s`: the status, with the connection left open.
fn keepalive_healthz(s: &mut TcpStream) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(b"GET /healthz HTTP/1.1\r\nhost: gridsync\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                return head
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return 0,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// `/metrics` from another loopback address: `None` when the connection is refused.
fn metric_from(from: &str, to: SocketAddr) -> Option<String> {
    let a = request_from(from.parse().unwrap(), to, "GET", "/metrics", &[], b"").ok()?;
    (a.status == 200).then(|| a.text())
}

fn local() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn get(to: SocketAddr, path: &str) -> Answer {
    request_from(local(), to, "GET", path, &[], b"").expect("request")
}

fn bearer(phone: &Phone) -> String {
    let link = phone.store.server_link().unwrap().unwrap();
    format!("Bearer {}.{}", link.device_id, link.secret)
}

/// A sync request as a phone would send it, with `push` and `want_full`.
fn sync_body(phone: &Phone, push: Vec<PushRecord>, want_full: Vec<String>) -> Vec<u8> {
    let link = phone.store.server_link().unwrap().unwrap();
    protocol::encode(&SyncRequest {
        epoch: link.epoch,
        reference_version: String::new(),
        push,
        cursors: vec![],
        want_full,
        page_limit: protocol::MAX_PAGE_RECORDS,
        bare_docs: false,
        page_bytes: 0,
    })
    .unwrap()
}

fn post_sync(to: SocketAddr, auth: &str, body: &[u8]) -> Answer {
    request_from(
        local(),
        to,
        "POST",
        "/v1/sync",
        &[
            ("authorization", auth),
            ("x-gridsync-protocol", "3"),
            ("content-type", protocol::CONTENT_TYPE),
        ],
        body,
    )
    .expect("sync request")
}

/// The value of one sample of the server's metrics (0 when absent).
fn metric(to: SocketAddr, sample: &str) -> f64 {
    let a = get(to, "/metrics");
    assert_eq!(a.status, 200, "{}", a.text());
    a.text()
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// Deterministic incompressible bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Stores a record of `size` bytes directly (the bytes are served as they are stored).
fn store_big(server: &TestServer, id: &str, grid: &str, size: usize, seed: u64) {
    let push = PushRecord {
        id: id.into(),
        kind: RecordKind::Producer.tag(),
        changes: vec![],
        heads: vec![[seed as u8; 32]],
    };
    let doc = noise(size, seed);
    let grid = grid.to_string();
    let r = server
        .storage
        .apply_push(
            &Author {
                person_id: "test".into(),
                device_id: None,
            },
            &[push],
            &mut |_, _| PushDecision::Store {
                kind: RecordKind::Producer,
                grid: grid.clone(),
                doc: doc.clone(),
                heads: vec![seed as u8; 32],
                new_changes: vec![],
                action: "create",
                attachments: vec![],
                record: None,
            },
        )
        .unwrap();
    assert_eq!(r[0].outcome, PushOutcome::Accepted);
}

/// Class 6: a request naming one 1 MB record 2,000 times costs one record; distinct big
/// records stop at the page's byte budget; records outside scope are neither sent nor
/// counted.
#[test]
fn want_full_is_deduplicated_budgeted_and_scoped() {
    let w = world(|_| {});
    let mine = w.phone.person.grids[0].clone();
    let foreign = person_in(&w.data, Role::Liaison, "DEMO-T02").grids[0].clone();
    assert!(!foreign.starts_with(&mine));
    const MB: usize = 1024 * 1024;
    store_big(&w.server, "big-0", &mine, MB, 1);
    let auth = bearer(&w.phone);

    let t = Instant::now();
    let a = post_sync(
        w.server.addr,
        &auth,
        &sync_body(&w.phone, vec![], vec!["big-0".into(); 2000]),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.body.len() < 2 * MB,
        "one record's worth of answer, not 2,000: {} bytes",
        a.body.len()
    );
    let resp: SyncResponse = protocol::decode(&a.body).unwrap();
    let copies = resp.records.iter().filter(|r| r.id == "big-0").count();
    assert_eq!(copies, 1, "the record once, however often it is named");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Eight distinct 1 MB records: the page stops at its budget (~4 MB) and says more.
    let ids: Vec<String> = (1..=8).map(|i| format!("big-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        store_big(&w.server, id, &mine, MB, 10 + i as u64);
    }
    let a = post_sync(
        w.server.addr,
        &auth,
        &sync_body(&w.phone, vec![], ids.clone()),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let resp: SyncResponse = protocol::decode(&a.body).unwrap();
    let wanted = resp
        .records
        .iter()
        .filter(|r| r.id.starts_with("big-"))
        .count();
    let bytes: usize = resp.records.iter().map(|r| r.bytes.len()).sum();
    assert!(
        (1..=5).contains(&wanted),
        "{wanted} whole records in one page"
    );
    assert!(bytes <= protocol::PAGE_BYTE_BUDGET + MB, "{bytes} bytes");
    assert!(resp.more, "a cut want_full list asks for another round");
    assert!(metric(w.server.addr, "gridsync_want_full_cut_total") >= 1.0);

    // Foreign records: never sent, and they change nothing of the answer (not its size,
    // not `more`), however big.
    for i in 0..6 {
        store_big(&w.server, &format!("far-{i}"), &foreign, MB, 30 + i);
    }
    let small = w
        .data
        .producers
        .iter()
        .find(|p| p.grid == mine)
        .unwrap()
        .id
        .clone();
    let ask = |ids: Vec<String>| -> SyncResponse {
        let a = post_sync(w.server.addr, &auth, &sync_body(&w.phone, vec![], ids));
        assert_eq!(a.status, 200, "{}", a.text());
        protocol::decode(&a.body).unwrap()
    };
    let plain = ask(vec![small.clone()]);
    let mut with_foreign: Vec<String> = (0..6).map(|i| format!("far-{i}")).collect();
    with_foreign.insert(3, small.clone());
    with_foreign.push("no-such-record".into());
    let mixed = ask(with_foreign);
    assert!(mixed.records.iter().all(|r| !r.id.starts_with("far-")));
    let ids = |r: &SyncResponse| r.records.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&mixed), ids(&plain));
    assert_eq!(mixed.more, plain.more);
}

/// Class 7: ~20,000 idle connections attempted from 40 addresses while `/healthz` is polled
/// every 100 ms from another address: each answer comes within a second, connections over
/// the per-address cap are closed at once, and the header-read timeout closes the idle
/// ones the server kept.
#[test]
fn half_open_flood_keeps_healthz_answering() {
    let w = world(|s| {
        s.connections.header_read_timeout = Duration::from_secs(2);
    });
    let addr = w.server.addr;
    let sources: Vec<IpAddr> = (1..=40)
        .map(|i| format!("127.0.1.{i}").parse().unwrap())
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let flood = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // Idle connections, the oldest let go beyond 6,000 held (the test process shares
            // its file descriptors with the server).
            let mut held = VecDeque::new();
            let mut attempted = 0usize;
            let mut failed = 0usize;
            for i in 0..20_000usize {
                let from = sources[i % sources.len()];
                let s = tokio::net::TcpSocket::new_v4().unwrap();
                s.bind(SocketAddr::new(from, 0)).unwrap();
                attempted += 1;
                match tokio::time::timeout(Duration::from_secs(2), s.connect(addr)).await {
                    Ok(Ok(c)) => held.push_back(c),
                    _ => failed += 1,
                }
                if held.len() > 6000 {
                    held.pop_front();
                }
            }
            d2.store(true, Ordering::SeqCst);
            // Keep the last ones open while the server times them out.
            tokio::time::sleep(Duration::from_secs(3)).await;
            (attempted, failed)
        })
    });
    let prober: IpAddr = "127.0.0.2".parse().unwrap();
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut max_open = 0f64;
    let started = Instant::now();
    while !done.load(Ordering::SeqCst) || latencies.len() < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "flood too slow"
        );
        if flood.is_finished() && !done.load(Ordering::SeqCst) {
            break;
        }
        let t = Instant::now();
        match request_from(prober, addr, "GET", "/healthz", &[], b"") {
            Ok(a) if a.status == 200 && a.body == b"ok" => latencies.push(t.elapsed()),
            Ok(a) => failures.push(format!("{} {}", a.status, a.text())),
            Err(e) => failures.push(e.to_string()),
        }
        max_open = max_open.max(metric(addr, "gridsync_open_connections"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (attempted, failed) = flood.join().unwrap();
    assert_eq!(attempted, 20_000);
    assert!(failures.is_empty(), "healthz failed: {failures:?}");
    latencies.sort();
    let max = *latencies.last().unwrap();
    eprintln!(
        "{} healthz probes during the flood: median {:?}, max {:?}; {failed} connects failed",
        latencies.len(),
        latencies[latencies.len() / 2],
        max
    );
    // The promise is that the probe keeps being answered during the flood, not a latency
    // target (the flood and the other tests of this binary share two cores): a server that
    // stopped serving would fail the probe or exceed the request timeout by far.
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(250),
        "healthz median {:?}",
        latencies[latencies.len() / 2]
    );
    assert!(max < Duration::from_secs(5), "healthz took {max:?}");
    // Every attempt was either closed at once by the per-address cap or kept (and later
    // closed by the header-read timeout); the server never held more than 64 per source.
    // (How many were refused depends on how fast the flood runs against the timeout.)
    let refused = metric(
        addr,
        "gridsync_connections_refused_total{cap=\"per_address\"}",
    );
    let accepted = metric(addr, "gridsync_connections_accepted_total");
    eprintln!("{refused} refused at once, {accepted} accepted, at most {max_open} open");
    assert!(refused + accepted >= 20_000.0, "{refused} + {accepted}");
    assert!(max_open <= (40 * 64 + 8) as f64, "{max_open} open at once");
    // The server never held more than the per-address cap from each source; the kept idle
    // ones are closed by the header-read timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = metric(addr, "gridsync_open_connections");
        assert!(open <= (40 * 64 + 8) as f64, "{open} open");
        if open <= 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} connections still open");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(metric(addr, "gridsync_header_timeouts_total") >= 40.0);
    // And phones are served as before.
    w.phone.sync().expect("a phone syncs after the flood");
}

/// Class 7: connections over the per-address cap, and over the total cap, are closed at
/// once with an answer naming the limit; other addresses are still served, and a freed
/// place is usable again.
#[test]
fn connection_caps_per_address_and_in_total() {
    let w = world(|s| {
        s.connections.max_per_address = 8;
        s.connections.max_total = 14;
    });
    let addr = w.server.addr;
    let a: IpAddr = "127.0.0.3".parse().unwrap();
    let mut held: Vec<TcpStream> = (0..8).map(|_| connect_from(a, addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let extra = read_answer(connect_from(a, addr).unwrap()).expect("an answer, then close");
    assert!(t.elapsed() < Duration::from_secs(2), "closed at once");
    assert_eq!(extra.status, 429);
    assert_eq!(extra.error_code(), ErrorCode::TooManyConnections);
    assert!(extra.text().contains("your address"), "{}", extra.text());
    // Another address is served.
    let b: IpAddr = "127.0.0.4".parse().unwrap();
    let ok = request_from(b, addr, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(ok.status, 200);
    // A place given back is usable again.
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let again = request_from(a, addr, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    // Its connection is closed on the server's side too before the total is counted.
    std::thread::sleep(Duration::from_millis(300));
    // The total cap (14). Unused connections make room: with 7 idle ones from A and 6 from
    // C (and the phone's pooled one), a new connection from D is served and the oldest
    // unused one is closed.
    let c: IpAddr = "127.0.0.5".parse().unwrap();
    let others: Vec<TcpStream> = (0..6).map(|_| connect_from(c, addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let d: IpAddr = "127.0.0.6".parse().unwrap();
    let served = request_from(d, addr, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(served.status, 200, "{}", served.text());
    drop(others);
    held.clear();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        metric(
            addr,
            "gridsync_connections_refused_total{cap=\"evicted_unused\"}"
        ) >= 1.0
    );
    // Connections that have all been used are not closed for a newcomer: once the cap is
    // full of them, the next connection is closed at once with 503.
    let mut used = Vec::new();
    let mut refused = None;
    for i in 0..20u8 {
        let from: IpAddr = format!("127.0.2.{}", 1 + i / 7).parse().unwrap();
        let mut s = connect_from(from, addr).unwrap();
        match keepalive_healthz(&mut s) {
            200 => used.push(s),
            status => {
                refused = Some(status);
                break;
            }
        }
    }
    assert_eq!(refused, Some(503), "{} used connections kept", used.len());
    assert!((13..=14).contains(&used.len()), "{}", used.len());
    assert!(
        metric_from("127.0.2.9", addr).is_none(),
        "a metrics request is refused too"
    );
    used.clear();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        metric(
            addr,
            "gridsync_connections_refused_total{cap=\"per_address\"}"
        ),
        1.0
    );
    assert!(metric(addr, "gridsync_connections_refused_total{cap=\"total\"}") >= 2.0);
    w.phone.sync().expect("served after the caps are freed");
}

/// Class 8: a device over its request rate gets 429 `rate_limited` with Retry-After; other
/// devices are served; the device is served again once tokens come back.
#[test]
fn per_device_rate_limit() {
    let w = world(|s| {
        s.device_limiter = gridsync_server::limits::RateLimiter::new(4.0, 5, 1000);
    });
    let addr = w.server.addr;
    let liaison2 = person_in(&w.data, Role::Liaison, "DEMO-T02");
    let dir2 = tempfile::tempdir().unwrap();
    let other = Phone::enrol(&w.server, &w.server.url(), dir2.path(), "q", &liaison2.id);
    let auth = bearer(&w.phone);
    let body = sync_body(&w.phone, vec![], vec![]);
    let statuses: Vec<Answer> = (0..12).map(|_| post_sync(addr, &auth, &body)).collect();
    let ok = statuses.iter().filter(|a| a.status == 200).count();
    let limited: Vec<&Answer> = statuses.iter().filter(|a| a.status == 429).collect();
    assert!((5..=7).contains(&ok), "burst of 5 (plus refills): {ok}");
    assert_eq!(ok + limited.len(), 12);
    let first = limited[0];
    assert_eq!(first.error_code(), ErrorCode::RateLimited);
    assert!(
        first.text().contains("device rate limit"),
        "{}",
        first.text()
    );
    assert!(first.header("retry-after").is_some(), "{:?}", first.headers);
    // Another device is not affected.
    let a = post_sync(addr, &bearer(&other), &sync_body(&other, vec![], vec![]));
    assert_eq!(a.status, 200, "{}", a.text());
    // Tokens come back at the rate.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(post_sync(addr, &auth, &body).status, 200);
    assert!(
        metric(addr, "gridsync_rate_limited_total{limit=\"device_rate\"}") >= limited.len() as f64
    );
}

fn enrol_via_proxy(to: SocketAddr, client: &str, code: &str) -> Answer {
    let body = serde_json::json!({"code": code, "device_name": "guess"}).to_string();
    request_from(
        local(),
        to,
        "POST",
        "/v1/enroll",
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", client),
        ],
        body.as_bytes(),
    )
    .unwrap()
}

/// Class 8: a dozen addresses of one /24 use up that range's enrolment attempts, and a
/// phone of another range still enrols; one address over its own limit is refused by the
/// address limit. Clients are told apart by a trusted proxy's X-Forwarded-For.
#[test]
fn enrolment_limits_per_range_do_not_lock_out_other_ranges() {
    let w = world(|s| {
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.limiter = gridsync_server::auth::EnrolLimiter::new(3, 6);
    });
    let addr = w.server.addr;
    let mut codes = Vec::new();
    for host in 1..=12 {
        let a = enrol_via_proxy(addr, &format!("198.51.100.{host}"), "ZZZZ-ZZZZ-ZZZZ");
        codes.push((a.status, a.error_code()));
    }
    assert!(
        codes[..6]
            .iter()
            .all(|c| c == &(401, ErrorCode::InvalidCode)),
        "{codes:?}"
    );
    assert!(
        codes[6..]
            .iter()
            .all(|c| c == &(429, ErrorCode::EnrolRangeLimited)),
        "{codes:?}"
    );
    // A phone in another range enrols with its code.
    let liaison2 = person_in(&w.data, Role::Liaison, "DEMO-T02");
    let code = w.server.code_for(&liaison2.id);
    let a = enrol_via_proxy(addr, "203.0.113.7", &code);
    assert_eq!(a.status, 200, "{}", a.text());
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert!(v["device_id"].is_string() && v["secret"].is_string());
    // One address over its own limit: the address limit, and its range still has room.
    let statuses: Vec<(u16, ErrorCode)> = (0..4)
        .map(|_| {
            let a = enrol_via_proxy(addr, "203.0.113.8", "ZZZZ-ZZZZ-ZZZZ");
            (a.status, a.error_code())
        })
        .collect();
    assert_eq!(
        statuses[3],
        (429, ErrorCode::EnrolRateLimited),
        "{statuses:?}"
    );
    let a = enrol_via_proxy(addr, "203.0.113.9", "ZZZZ-ZZZZ-ZZZZ");
    assert_eq!((a.status, a.error_code()), (401, ErrorCode::InvalidCode));
    assert!(metric(addr, "gridsync_rate_limited_total{limit=\"enrol_range\"}") >= 6.0);
    assert!(metric(addr, "gridsync_rate_limited_total{limit=\"enrol_address\"}") >= 1.0);
}

/// Class 8: a revoked device learns that it is revoked (with reason and time) only with
/// its valid secret; with a wrong one it gets exactly the answer of an unknown device.
#[test]
fn revoked_device_with_wrong_secret_learns_nothing() {
    let w = world(|_| {});
    let addr = w.server.addr;
    let link = w.phone.store.server_link().unwrap().unwrap();
    w.server
        .storage
        .revoke_device(&link.device_id, "reported lost", gridsync_core::now_ms())
        .unwrap();
    let body = sync_body(&w.phone, vec![], vec![]);
    let right = post_sync(addr, &bearer(&w.phone), &body);
    assert_eq!(right.status, 401);
    assert_eq!(right.error_code(), ErrorCode::DeviceRevoked);
    assert!(right.text().contains("reported lost"), "{}", right.text());
    let wrong_secret = format!("Bearer {}.{}", link.device_id, "0".repeat(64));
    let wrong = post_sync(addr, &wrong_secret, &body);
    let unknown = post_sync(
        addr,
        &format!("Bearer no-such-device.{}", "0".repeat(64)),
        &body,
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error_code(), ErrorCode::BadCredentials);
    assert_eq!(
        wrong.body, unknown.body,
        "the same answer as an unknown device"
    );
    for word in ["revoked", "lost", &link.device_id] {
        assert!(!wrong.text().contains(word), "{}", wrong.text());
    }
    assert!(
        metric(
            addr,
            "gridsync_auth_failures_total{code=\"bad_credentials\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            addr,
            "gridsync_auth_failures_total{code=\"device_revoked\"}"
        ) >= 1.0
    );
}

/// `/metrics`: what it counts, and who may read it.
#[test]
fn metrics_count_what_happens_and_only_loopback_or_allowed_read_them() {
    let w = world(|s| {
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.metrics_allow = vec!["192.0.2.0/24".parse().unwrap()];
    });
    let addr = w.server.addr;
    w.phone.sync().unwrap();
    // A push with one accepted record and one outside the person's scope.
    let mine = w.phone.person.grids[0].clone();
    let foreign = person_in(&w.data, Role::Liaison, "DEMO-T02").grids[0].clone();
    let by = w.phone.person.id.clone();
    let ok = push_new(
        &gridsync_core::model::Record::Producer(new_producer("新户", &mine, &by)),
        &w.phone,
    );
    let bad = push_new(
        &gridsync_core::model::Record::Producer(new_producer("外户", &foreign, &by)),
        &w.phone,
    );
    let resp = raw_sync(&w.phone, vec![ok, bad], vec![]).unwrap();
    assert_eq!(resp.results[0].outcome, PushOutcome::Accepted);
    assert!(matches!(
        resp.results[1].outcome,
        PushOutcome::Rejected { .. }
    ));
    let _ = post_sync(addr, "Bearer nobody.secret", b"");

    let m = get(addr, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain; version=0.0.4"));
    let text = m.text();
    for needle in [
        "gridsync_http_requests_total{route=\"/v1/sync\",status=\"200\"}",
        "gridsync_http_requests_total{route=\"/v1/sync\",status=\"401\"}",
        "gridsync_http_requests_total{route=\"/v1/enroll\",status=\"200\"}",
        "gridsync_http_request_duration_seconds_bucket{route=\"/v1/sync\",le=\"+Inf\"}",
        "gridsync_http_request_duration_seconds_count{route=\"/v1/sync\"}",
        "gridsync_push_records_total{outcome=\"accepted\"} ",
        "gridsync_auth_failures_total{code=\"bad_credentials\"} 1",
        "gridsync_rate_limited_total{limit=\"device_rate\"} 0",
        "gridsync_open_connections ",
        "# TYPE gridsync_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(metric(addr, "gridsync_push_records_total{outcome=\"accepted\"}") >= 1.0);
    let rejected: f64 = ["forbidden", "invalid", "workflow", "other"]
        .iter()
        .map(|c| {
            metric(
                addr,
                &format!("gridsync_push_records_total{{outcome=\"{c}\"}}"),
            )
        })
        .sum();
    assert!(rejected >= 1.0, "{text}");
    assert!(metric(addr, "gridsync_open_connections") >= 1.0);

    // Who may read: loopback, or a client the trusted proxy names inside --metrics-allow.
    let via = |xff: &str| {
        request_from(
            local(),
            addr,
            "GET",
            "/metrics",
            &[("x-forwarded-for", xff)],
            b"",
        )
        .unwrap()
    };
    let outside = via("203.0.113.5");
    assert_eq!(outside.status, 403, "{}", outside.text());
    assert_eq!(outside.error_code(), ErrorCode::MetricsForbidden);
    assert!(!outside.text().contains("gridsync_"));
    assert_eq!(via("192.0.2.77").status, 200);
    let forwarded = request_from(
        local(),
        addr,
        "GET",
        "/metrics",
        &[("forwarded", "for=203.0.113.5")],
        b"",
    )
    .unwrap();
    assert_eq!(forwarded.status, 403);

    // Behind a proxy that is not trusted, forwarded requests are refused even on loopback.
    let w2 = world(|_| {});
    let a = request_from(
        local(),
        w2.server.addr,
        "GET",
        "/metrics",
        &[("x-forwarded-for", "127.0.0.1")],
        b"",
    )
    .unwrap();
    assert_eq!(a.status, 403);
    assert_eq!(get(w2.server.addr, "/metrics").status, 200);
}

/// Class 5: a push still being judged when its request's time is up is rolled back whole:
/// the client is told it failed, and nothing of it is stored, then or later.
#[test]
fn push_cancelled_at_its_deadline_stores_nothing() {
    let w = world(|s| {
        s.request_timeout = Duration::from_millis(100);
    });
    let addr = w.server.addr;
    let grid = w.phone.person.grids[0].clone();
    let by = w.phone.person.id.clone();
    let push: Vec<PushRecord> = (0..500)
        .map(|i| {
            push_new(
                &gridsync_core::model::Record::Producer(new_producer(
                    &format!("户{i}"),
                    &grid,
                    &by,
                )),
                &w.phone,
            )
        })
        .collect();
    let ids: Vec<String> = push.iter().map(|p| p.id.clone()).collect();
    let body = sync_body(&w.phone, push.clone(), vec![]);
    let a = post_sync(addr, &bearer(&w.phone), &body);
    assert!(
        a.status == 408 || (a.status == 503 && a.error_code() == ErrorCode::TimedOut),
        "the client is told it failed: {} {}",
        a.status,
        a.text()
    );
    // The judging goes on in the background until the deadline check stops it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(addr, "gridsync_push_cancelled_total") < 1.0 {
        assert!(Instant::now() < deadline, "the push was never cancelled");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    for id in &ids {
        assert!(
            w.server.storage.record(id).unwrap().is_none(),
            "{id} stored after the client was told the request failed"
        );
    }
    // A push that fits in the time is stored as usual.
    let small = sync_body(&w.phone, push[..2].to_vec(), vec![]);
    let a = post_sync(addr, &bearer(&w.phone), &small);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(w.server.storage.record(&ids[0]).unwrap().is_some());
}
