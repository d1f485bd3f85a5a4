//! Memory and time under attack (issue 12, must-have 5): starts the server as a child
//! process on a demo data set, runs the resource attacks one after another while `/healthz`
//! is polled every 100 ms from another loopback address, and prints the server's peak
//! memory (VmHWM) and the `/healthz` latencies. Exits non-zero if the peak reaches 200 MB,
//! a `/healthz` answer took 1 s or more (or failed), or the server died.
//!
//! ```text
//! cargo build --release -p gridsync-server --bin gridsync-server --example attack
//! target/release/examples/attack [--server target/release/gridsync-server] [--small]
//! ```
//!
//! Attacks: a half-open connection flood (20,000 connects from 100 addresses), `want_full`
//! naming one record 2,000 times, pushes of 7 MiB of incompressible change bytes, a push of
//! a document nested 5,000 maps deep, and a burst of requests over one device's rate limit.
//! Linux only (reads /proc, connects from 127.0.0.0/8 addresses).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use gridsync_core::model::RecordKind;
use gridsync_core::sync::protocol::{self, Cursor, PushRecord, SyncRequest, SyncResponse};

const PEAK_LIMIT_MB: f64 = 200.0;
const HEALTHZ_LIMIT: Duration = Duration::from_secs(1);

struct Sizes {
    flood: usize,
    want_full_requests: usize,
    big_pushes: usize,
    rate_requests: usize,
}

fn connect_from(
    rt: &tokio::runtime::Runtime,
    from: IpAddr,
    to: SocketAddr,
) -> std::io::Result<TcpStream> {
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(from, 0))?;
        let c = tokio::time::timeout(Duration::from_secs(5), s.connect(to))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        let std = c.into_std()?;
        std.set_nonblocking(false)?;
        Ok(std)
    })
}

/// One request on a new connection (`connection: close`): status and body.
fn http(
    stream: std::io::Result<TcpStream>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = stream?;
    s.set_read_timeout(Some(Duration::from_secs(150)))?;
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
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no answer head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut b = &body[..];
        while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
            let n =
                usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
            if n == 0 || b.len() < nl + 2 + n {
                break;
            }
            out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
            b = &b[(nl + 4 + n).min(b.len())..];
        }
        body = out;
    }
    Ok((status, body))
}

fn status_kb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

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

struct Server {
    child: Child,
    addr: SocketAddr,
    codes: Vec<String>,
    _dir: tempfile::TempDir,
}

fn start_server(bin: &str) -> Result<Server, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.path().join("server.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--demo", "--data"])
        .arg(dir.path().join("data"))
        .env("GRIDSYNC_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let mut codes = Vec::new();
    let addr = loop {
        let line = lines
            .next()
            .ok_or("the server exited before listening")?
            .map_err(|e| e.to_string())?;
        if line.starts_with("enrolment code for liaison") {
            if let Some(code) = line.rsplit(": ").next() {
                codes.push(code.trim().to_string());
            }
        }
        if let Some(a) = line.strip_prefix("listening on http://") {
            break a.trim().parse::<SocketAddr>().map_err(|e| e.to_string())?;
        }
    };
    // Keep draining stdout.
    std::thread::spawn(move || for _ in lines {});
    Ok(Server {
        child,
        addr,
        codes,
        _dir: dir,
    })
}

struct Device {
    auth: String,
    epoch: String,
}

fn enrol(addr: SocketAddr, code: &str) -> Result<Device, String> {
    let body = serde_json::json!({"code": code, "device_name": "attacker"}).to_string();
    let (status, b) = http(
        TcpStream::connect(addr),
        "POST",
        "/v1/enroll",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("enrol: {status} {}", String::from_utf8_lossy(&b)));
    }
    let v: serde_json::Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    Ok(Device {
        auth: format!(
            "Bearer {}.{}",
            v["device_id"].as_str().unwrap_or_default(),
            v["secret"].as_str().unwrap_or_default()
        ),
        epoch: v["epoch"].as_str().unwrap_or_default().to_string(),
    })
}

fn sync(addr: SocketAddr, d: &Device, req: &SyncRequest) -> (u16, Vec<u8>) {
    let body = protocol::encode(req).expect("encode");
    http(
        TcpStream::connect(addr),
        "POST",
        "/v1/sync",
        &[
            ("authorization", &d.auth),
            ("x-gridsync-protocol", "3"),
            ("content-type", protocol::CONTENT_TYPE),
        ],
        &body,
    )
    .unwrap_or((0, Vec::new()))
}

fn request(d: &Device) -> SyncRequest {
    SyncRequest {
        epoch: d.epoch.clone(),
        reference_version: String::new(),
        push: vec![],
        cursors: vec![],
        want_full: vec![],
        page_limit: protocol::MAX_PAGE_RECORDS,
        bare_docs: false,
        page_bytes: 0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let small = args.iter().any(|a| a == "--small");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let bin = args
        .iter()
        .position(|a| a == "--server")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| format!("{target}/release/gridsync-server"));
    let sizes = if small {
        Sizes {
            flood: 3_000,
            want_full_requests: 3,
            big_pushes: 2,
            rate_requests: 300,
        }
    } else {
        Sizes {
            flood: 20_000,
            want_full_requests: 20,
            big_pushes: 10,
            rate_requests: 3_000,
        }
    };
    match run(&bin, &sizes) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("attack: {e}");
            std::process::exit(2);
        }
    }
}

fn run(bin: &str, sizes: &Sizes) -> Result<bool, String> {
    let mut server = start_server(bin)?;
    let addr = server.addr;
    let pid = server.child.id();
    let code = server
        .codes
        .first()
        .ok_or("no liaison code printed")?
        .clone();
    let dev = enrol(addr, &code)?;
    println!(
        "server pid {pid} on {addr}; baseline RSS {:.1} MB",
        status_kb(pid, "VmRSS:") / 1024.0
    );

    // /healthz every 100 ms from 127.0.0.1 (the flood comes from 127.0.3.x), on a new
    // connection each time.
    let stop = Arc::new(AtomicBool::new(false));
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let fails: Arc<Mutex<Vec<String>>> = Arc::default();
    let prober = {
        let (stop, lat, fails) = (stop.clone(), lat.clone(), fails.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            let _ = &rt;
            let began = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                match http(TcpStream::connect(addr), "GET", "/healthz", &[], b"") {
                    Ok((200, b)) if b == b"ok" => {
                        let took = t.elapsed();
                        if took > Duration::from_millis(250) {
                            println!(
                                "    slow /healthz at {:.1} s: {:.0} ms",
                                began.elapsed().as_secs_f64(),
                                took.as_secs_f64() * 1e3
                            );
                        }
                        lat.lock().expect("lock").push(took)
                    }
                    Ok((s, b)) => fails
                        .lock()
                        .expect("lock")
                        .push(format!("{s} {}", String::from_utf8_lossy(&b))),
                    Err(e) => fails.lock().expect("lock").push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let phase = |name: &str, t: Instant| {
        println!(
            "  {name:<34} {:>6.1} s   RSS now {:>6.1} MB, peak {:>6.1} MB",
            t.elapsed().as_secs_f64(),
            status_kb(pid, "VmRSS:") / 1024.0,
            status_kb(pid, "VmHWM:") / 1024.0
        );
    };

    // 1. Half-open flood from 100 addresses.
    let t = Instant::now();
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut held = std::collections::VecDeque::new();
        let mut failed = 0;
        for i in 0..sizes.flood {
            let from: IpAddr = format!("127.0.3.{}", 1 + i % 100)
                .parse()
                .map_err(|e| format!("{e}"))?;
            match connect_from(&rt, from, addr) {
                Ok(s) => held.push_back(s),
                Err(_) => failed += 1,
            }
            if held.len() > 8_000 {
                held.pop_front();
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        println!(
            "  half-open flood: {} connects attempted, {failed} failed",
            sizes.flood
        );
    }
    phase("half-open flood", t);

    // 2. want_full amplification: the biggest record in scope named 2,000 times.
    let t = Instant::now();
    let mut req = request(&dev);
    let (_, b) = sync(addr, &dev, &req);
    let first: SyncResponse = protocol::decode(&b).map_err(|e| format!("bootstrap: {e}"))?;
    let grids = first.reference.map(|r| r.readable).unwrap_or_default();
    req.cursors = grids
        .iter()
        .map(|g| Cursor {
            grid: g.clone(),
            seq: 0,
            token: 0,
        })
        .collect();
    let (_, b) = sync(addr, &dev, &req);
    let page: SyncResponse = protocol::decode(&b).map_err(|e| format!("page: {e}"))?;
    let biggest = page
        .records
        .iter()
        .max_by_key(|r| r.bytes.len())
        .ok_or("no records")?;
    println!(
        "  want_full of {} ({} bytes) x 2,000",
        biggest.id,
        biggest.bytes.len()
    );
    let mut wf = request(&dev);
    wf.want_full = vec![biggest.id.clone(); 2000];
    for _ in 0..sizes.want_full_requests {
        let (s, b) = sync(addr, &dev, &wf);
        if s != 200 {
            println!("    want_full answered {s} ({} bytes)", b.len());
        }
    }
    phase("want_full x 2,000", t);

    // 3. Big pushes: 7 MiB of incompressible change bytes each.
    let t = Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..sizes.big_pushes {
        let mut r = request(&dev);
        r.push = (0..7)
            .map(|j| PushRecord {
                id: format!("big-{i}-{j}"),
                kind: RecordKind::Producer.tag(),
                changes: noise(
                    protocol::MAX_RECORD_CHANGE_BYTES - 64,
                    (i * 7 + j + 1) as u64,
                ),
                heads: vec![[j as u8; 32]],
            })
            .collect();
        let (s, _) = sync(addr, &dev, &r);
        *statuses.entry(s).or_insert(0) += 1;
    }
    println!("  big pushes answered {statuses:?}");
    phase("big pushes (7 MiB each)", t);

    // 4. A document nested 5,000 maps deep.
    let t = Instant::now();
    let mut doc = automerge::AutoCommit::new();
    let mut obj = automerge::ROOT;
    for _ in 0..5_000 {
        obj = doc
            .put_object(&obj, "n", automerge::ObjType::Map)
            .map_err(|e| e.to_string())?;
    }
    let mut r = request(&dev);
    r.push = vec![PushRecord {
        id: "nested-1".into(),
        kind: RecordKind::Producer.tag(),
        changes: doc.save(),
        heads: doc.get_heads().iter().map(|h| h.0).collect(),
    }];
    let (s, b) = sync(addr, &dev, &r);
    let outcome = protocol::decode::<SyncResponse>(&b)
        .ok()
        .and_then(|x| x.results.first().map(|r| format!("{:?}", r.outcome)))
        .unwrap_or_default();
    println!(
        "  nested push answered {s}: {}",
        outcome.chars().take(160).collect::<String>()
    );
    phase("push nested 5,000 deep", t);

    // 5. Requests over the device's rate limit, from 4 threads.
    let t = Instant::now();
    let counts: Arc<Mutex<std::collections::BTreeMap<u16, usize>>> = Arc::default();
    let dev = Arc::new(dev);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (counts, dev) = (counts.clone(), dev.clone());
            let n = sizes.rate_requests / 4;
            std::thread::spawn(move || {
                let r = request(&dev);
                for _ in 0..n {
                    let (s, _) = sync(addr, &dev, &r);
                    *counts.lock().expect("lock").entry(s).or_insert(0) += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "worker panicked")?;
    }
    println!(
        "  rate-limited requests answered {:?}",
        counts.lock().expect("lock")
    );
    phase("requests over the rate limit", t);

    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    prober.join().map_err(|_| "prober panicked")?;
    let alive = server
        .child
        .try_wait()
        .map_err(|e| e.to_string())?
        .is_none();
    let peak_mb = status_kb(pid, "VmHWM:") / 1024.0;
    let _ = server.child.kill();
    let _ = server.child.wait();

    let mut l = lat.lock().expect("lock").clone();
    l.sort();
    let fails = fails.lock().expect("lock").clone();
    let median = l.get(l.len() / 2).copied().unwrap_or_default();
    let max = l.last().copied().unwrap_or_default();
    println!();
    println!("peak server RSS (VmHWM): {peak_mb:.1} MB (limit {PEAK_LIMIT_MB} MB)");
    println!(
        "/healthz: {} answers, median {:.1} ms, max {:.1} ms, {} failed (limit {} ms)",
        l.len(),
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        fails.len(),
        HEALTHZ_LIMIT.as_millis()
    );
    for f in fails.iter().take(5) {
        println!("  healthz failure: {f}");
    }
    let ok = alive
        && peak_mb < PEAK_LIMIT_MB
        && max < HEALTHZ_LIMIT
        && fails.is_empty()
        && !l.is_empty();
    if !alive {
        println!("FAIL: the server died");
    }
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
