//! Child processes: a server on a database file, and a phone that enrols and bootstraps.
//! Each is a separate process of this binary so that its peak resident memory (`VmHWM`)
//! is its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridsync_core::store::Store;
use gridsync_core::sync::compress::Codec;
use gridsync_core::sync::protocol::{EnrollRequest, EnrollResponse, RotateResponse};
use gridsync_core::sync::{enroll, CancelFlag, HttpTransport, SyncEngine, Transport};
use gridsync_server::storage::sqlite::SqliteStorage;
use gridsync_server::storage::Storage;
use serde::{Deserialize, Serialize};

use crate::R;

/// Peak resident set size (`VmHWM`) in KiB of a process (`None`: this one).
pub fn peak_rss_kb(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system, every thread, 10 ms resolution) of a process so far, in
/// seconds (`None`: this process).
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU time of the calling thread so far, in seconds (nanosecond resolution).
pub fn thread_cpu_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// The `serve` child: a real gridsync server on a free loopback port until stdin closes.
pub fn serve_main(db: &Path) -> R<()> {
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(db)?);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        let stop = async {
            // The parent closes our stdin to stop us.
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            })
            .await;
        };
        // Every phone of the benchmark enrols from loopback: one address, many devices (W9
        // enrols 50 in a few seconds), as the ingest example allows too.
        let mut state = gridsync_server::api::AppState::new(storage);
        state.limiter = gridsync_server::auth::EnrolLimiter::new(100_000, 100_000);
        gridsync_server::serve_state(listener, Arc::new(state), stop).await
    })?;
    Ok(())
}

/// A running `serve` child.
#[derive(Debug)]
pub struct ServerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Base URL.
    pub url: String,
}

impl ServerProc {
    /// Starts a server on `db` and waits until it listens.
    pub fn start(db: &Path) -> R<ServerProc> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--db")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("server child has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| format!("server child said {line:?} instead of its address"))?
            .to_string();
        Ok(ServerProc { child, stdin, url })
    }

    /// CPU time of the server so far, seconds.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs(Some(self.child.id()))
    }

    /// Peak resident memory of the server so far, KiB.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        peak_rss_kb(Some(self.child.id()))
    }

    /// Stops the server (closes its stdin, then kills it if it has not left in 15 s).
    pub fn stop(mut self) -> R<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> R<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// What the `client` child measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientFigures {
    /// Wall time of the bootstrap sync (after enrolment), seconds.
    pub secs: f64,
    /// CPU time of the phone process during the bootstrap sync, seconds.
    pub cpu_secs: f64,
    /// Wall time of the enrolment call, seconds.
    pub enrol_secs: f64,
    /// HTTP round trips of the sync.
    pub round_trips: u32,
    /// Request bytes (compressed bodies).
    pub bytes_up: u64,
    /// Response bytes (compressed bodies).
    pub bytes_down: u64,
    /// Records pulled and applied.
    pub pulled: u32,
    /// Producers and visits on the phone afterwards.
    pub records: i64,
    /// Peak resident memory of the phone process, KiB.
    pub peak_rss_kb: u64,
    /// The protocol version the sync spoke.
    #[serde(default)]
    pub protocol: u16,
    /// CPU time to decompress every answer of the bootstrap once more after it (the
    /// phone's decompression share of `cpu_secs`), seconds.
    #[serde(default)]
    pub decompress_secs: f64,
    /// The median of that per answer (page), seconds.
    #[serde(default)]
    pub decompress_page_secs: f64,
}

/// An HTTP transport that keeps every sync answer's body, to time their decompression
/// after the bootstrap (the bodies are compressed: about 2 MB for a township).
struct Keeping {
    inner: HttpTransport,
    answers: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Keeping {
    fn keep(&self, answer: Vec<u8>) -> Vec<u8> {
        if let Ok(mut a) = self.answers.lock() {
            a.push(answer.clone());
        }
        answer
    }
}

impl Transport for Keeping {
    fn sync(&self, auth: &str, body: Vec<u8>) -> gridsync_core::Result<Vec<u8>> {
        self.inner.sync(auth, body).map(|a| self.keep(a))
    }
    fn sync_at(&self, auth: &str, version: u16, body: Vec<u8>) -> gridsync_core::Result<Vec<u8>> {
        self.inner
            .sync_at(auth, version, body)
            .map(|a| self.keep(a))
    }
    fn enroll(&self, req: &EnrollRequest) -> gridsync_core::Result<EnrollResponse> {
        self.inner.enroll(req)
    }
    fn rotate(&self, auth: &str) -> gridsync_core::Result<RotateResponse> {
        self.inner.rotate(auth)
    }
}

/// Time to decompress each body on this one thread, idle otherwise (wall clock: the
/// thread CPU clock counts in 10 ms ticks, longer than a page takes): the total and the
/// median per body.
fn decompress_cpu(bodies: &[Vec<u8>]) -> R<(f64, f64)> {
    let mut each = Vec::with_capacity(bodies.len());
    for b in bodies {
        let codec = Codec::sniff(b).ok_or("an answer is neither gzip nor zstd")?;
        let t = Instant::now();
        let raw = codec.decompress(b)?;
        each.push(t.elapsed().as_secs_f64());
        drop(raw);
    }
    Ok((each.iter().sum(), crate::report::median(each)))
}

/// The `client` child: enrol an empty phone and bootstrap it, print the figures as JSON.
pub fn client_main(url: &str, code: &str, db: &Path, name: &str, protocol: u16) -> R<()> {
    if db.exists() {
        return Err(format!("{} already exists; a bootstrap starts empty", db.display()).into());
    }
    let store = Store::open(db)?;
    let transport = Keeping {
        inner: HttpTransport::new(url)?,
        answers: Default::default(),
    };
    let t = Instant::now();
    enroll(&store, &transport, url, code, name)?;
    let enrol_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cpu = cpu_secs(None).unwrap_or(0.0);
    let mut engine = SyncEngine::new(&store, &transport);
    engine.protocol_version = protocol;
    let report = engine.sync(&mut |_| {}, &CancelFlag::new())?;
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = cpu_secs(None).unwrap_or(0.0) - cpu;
    let counts = store.counts()?;
    if !report.rejected.is_empty() || counts.corrupt > 0 {
        return Err(format!("bootstrap was not clean: {report:?}, {counts:?}").into());
    }
    let figures = ClientFigures {
        secs,
        cpu_secs,
        enrol_secs,
        round_trips: report.round_trips,
        bytes_up: report.bytes_up,
        bytes_down: report.bytes_down,
        pulled: report.pulled,
        records: counts.producers + counts.visits,
        peak_rss_kb: peak_rss_kb(None).unwrap_or(0),
        protocol: report.protocol,
        decompress_secs: 0.0,
        decompress_page_secs: 0.0,
    };
    // After the figures above (CPU, peak memory): the answers decompressed once more.
    let answers = std::mem::take(&mut *transport.answers.lock().map_err(|_| "poisoned")?);
    let (total, page) = decompress_cpu(&answers)?;
    let figures = ClientFigures {
        decompress_secs: total,
        decompress_page_secs: page,
        ..figures
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// Runs the `client` child and returns what it measured.
pub fn run_client(url: &str, code: &str, db: &Path, name: &str, protocol: u16) -> R<ClientFigures> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "client", "--url", url, "--code", code, "--name", name, "--db",
        ])
        .arg(db)
        .args(["--protocol", &protocol.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("phone child failed ({})", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("phone child printed no figures")?;
    Ok(serde_json::from_str(line)?)
}
