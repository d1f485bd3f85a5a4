//! Crashes (issue: reliability under faults). Real processes are SIGKILLed at random points:
//!
//! - a phone (`phone-worker`, its own process on a real SQLite file) during edits and during
//!   sync: afterwards the file passes `PRAGMA integrity_check`, every edit the worker
//!   acknowledged (`ACK` line) is there, and the next sync converges with a second device;
//! - the server (`gridsync-test-server`, the same code as `gridsync-server serve`) while
//!   several phones push: every push it answered `Accepted` is there after the restart and
//!   every device converges.
//!
//! `GRIDSYNC_CRASH_POINTS` (default 12) sets how many times the phone is killed,
//! `GRIDSYNC_SERVER_KILLS` (default 4) how many times the server is; `GRIDSYNC_CRASH_SEED`
//! fixes the random choices. The full run is `scripts/crash-full.sh`.

// Test code: an unwrap is an assertion, in helpers as in test functions.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{Finding, Record, Role, Severity, VisitStatus};
use gridsync_core::store::{ProducerSort, Store};
use gridsync_core::sync::protocol::{
    self, EnrollRequest, EnrollResponse, PushOutcome, RotateResponse, SyncRequest, SyncResponse,
};
use gridsync_core::sync::{enroll, CancelFlag, HttpTransport, SyncEngine, Transport};
use gridsync_server::dataset::Rng;
use gridsync_server::storage::sqlite::SqliteStorage;
use gridsync_server::storage::Storage;
use gridsync_tests::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn base_seed() -> u64 {
    std::env::var("GRIDSYNC_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        })
}

/// Lines of a child's stdout, read on their own thread (so the pipe never fills).
fn lines_of(child: &mut Child) -> Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every acknowledged edit so far: the last value of each single-valued field and every
/// added element.
#[derive(Debug, Default)]
struct Acks {
    created: BTreeSet<String>,
    fields: BTreeMap<(String, String), String>,
    /// Writes that started after the last acknowledged one of their field and were cut by a
    /// kill: the field may hold any of them instead.
    tried: BTreeMap<(String, String), Vec<String>>,
    products: BTreeSet<(String, String)>,
    findings: BTreeSet<(String, String)>,
    completed: BTreeSet<String>,
    total: usize,
}

impl Acks {
    fn take(&mut self, line: &str) {
        let mut parts = line.splitn(4, ' ');
        let (Some(verb), Some(id), Some(field), Some(value)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if verb == "TRY" {
            self.tried
                .entry((id.to_string(), field.to_string()))
                .or_default()
                .push(value.to_string());
            return;
        }
        if verb != "ACK" {
            return;
        }
        self.tried.remove(&(id.to_string(), field.to_string()));
        self.total += 1;
        let (id, value) = (id.to_string(), value.to_string());
        match field {
            "created" => {
                self.created.insert(id);
            }
            "product" => {
                self.products.insert((id, value));
            }
            "finding" => {
                self.findings.insert((id, value));
            }
            "completed" => {
                self.completed.insert(id);
            }
            other => {
                self.fields.insert((id, other.to_string()), value);
            }
        }
    }

    /// Checks that every acknowledged edit is in the store.
    fn check(&self, store: &Store, point: usize) {
        for id in &self.created {
            store
                .record(id)
                .unwrap_or_else(|e| panic!("point {point}: acknowledged record {id} is gone: {e}"));
        }
        for ((id, field), value) in &self.fields {
            let found = match store
                .record(id)
                .unwrap_or_else(|e| panic!("point {point}: record {id}: {e}"))
            {
                Record::Producer(p) => match field.as_str() {
                    "address" => p.address,
                    "owner" => p.owner,
                    "phone" => p.phone,
                    other => panic!("unknown field {other}"),
                },
                Record::Visit(v) => {
                    let item = field.strip_prefix("note.").expect("note field");
                    v.answers
                        .get(item)
                        .and_then(|a| a.note.clone())
                        .unwrap_or_default()
                }
                Record::Template(_) | Record::Acceptance(_) => {
                    panic!("templates and acceptances are not edited here")
                }
            };
            let cut = self.tried.get(&(id.clone(), field.clone()));
            assert!(&found == value || cut.is_some_and(|c| c.contains(&found)), "point {point}: {id}.{field} lost its acknowledged value {value} (holds {found}, cut writes {cut:?})");
        }
        for (id, name) in &self.products {
            let p = store
                .producer(id)
                .unwrap_or_else(|e| panic!("point {point}: {id}: {e}"));
            assert!(
                p.products.contains(name),
                "point {point}: product {name} of {id} lost"
            );
        }
        for (id, fid) in &self.findings {
            let v = store
                .visit(id)
                .unwrap_or_else(|e| panic!("point {point}: {id}: {e}"));
            assert!(
                v.findings.iter().any(|f| &f.id == fid),
                "point {point}: finding {fid} of {id} lost"
            );
        }
        for id in &self.completed {
            assert_eq!(
                store.visit(id).expect("visit").status,
                VisitStatus::Completed,
                "point {point}: completion of {id} lost"
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillAt {
    /// Right after the process starts (while it opens the store).
    Startup,
    /// A few microseconds to milliseconds after the n-th acknowledged edit.
    Edit,
    /// Some time into the n-th sync.
    Sync,
}

fn sync_store(
    store: &Store,
    transport: &HttpTransport,
) -> gridsync_core::Result<gridsync_core::sync::SyncReport> {
    SyncEngine::new(store, transport).sync(&mut |_| {}, &CancelFlag::new())
}

#[test]
fn phone_killed_during_edits_and_sync_loses_nothing_acknowledged() {
    let points = env_u64("GRIDSYNC_CRASH_POINTS", 12) as usize;
    let seed = base_seed();
    println!("phone crash test: {points} kill points, GRIDSYNC_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server"));
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let phone = Phone::enrol(&server, &server.url(), dir.path(), "crashy", &liaison.id);
    phone.sync().unwrap();
    let observer = Phone::enrol(&server, &server.url(), dir.path(), "observer", &liaison.id);
    observer.sync().unwrap();
    let Phone {
        store,
        path,
        mut transport,
        ..
    } = phone;
    transport.attempts = 2;
    drop(store);

    let mut rng = Rng::new(seed);
    let mut acks = Acks::default();
    let mut killed = HashMap::<&str, usize>::new();
    let started = Instant::now();
    for point in 0..points {
        let mode = match rng.below(10) {
            0 => KillAt::Startup,
            1..=5 => KillAt::Edit,
            _ => KillAt::Sync,
        };
        let nth = 1 + rng.below(if mode == KillAt::Sync { 3 } else { 30 });
        let delay = Duration::from_micros(match mode {
            KillAt::Startup => rng.below(40_000),
            KillAt::Edit => rng.below(3_000),
            KillAt::Sync => rng.below(60_000),
        });
        let mut child = Command::new(env!("CARGO_BIN_EXE_phone-worker"))
            .args([
                "crash",
                path.to_str().unwrap(),
                &seed
                    .wrapping_mul(1000)
                    .wrapping_add(point as u64)
                    .to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("worker.err")).unwrap())
            .spawn()
            .expect("spawn phone-worker");
        let rx = lines_of(&mut child);
        let mut seen = Vec::new();
        let mut count = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        if mode == KillAt::Startup {
            std::thread::sleep(delay);
        } else {
            loop {
                let line = rx
                    .recv_timeout(Duration::from_secs(60))
                    .unwrap_or_else(|_| {
                        panic!(
                            "point {point}: the worker went quiet; saw {seen:?}; stderr: {}",
                            std::fs::read_to_string(dir.path().join("worker.err"))
                                .unwrap_or_default()
                        )
                    });
                assert!(!line.starts_with("FATAL"), "point {point}: {line}");
                let hit = match mode {
                    KillAt::Edit => line.starts_with("ACK "),
                    _ => line == "SYNC-START",
                };
                seen.push(line);
                if hit {
                    count += 1;
                    if count == nth {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "point {point}: no kill point reached"
                );
            }
            std::thread::sleep(delay);
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        // Everything the worker printed before it died is still in the pipe.
        seen.extend(rx.iter());
        let in_sync = seen
            .iter()
            .rev()
            .find(|l| l.starts_with("SYNC-") || l.starts_with("ACK "))
            .is_some_and(|l| l == "SYNC-START");
        let what = match mode {
            KillAt::Startup if seen.is_empty() => "startup",
            _ if in_sync => "sync",
            _ => "edit",
        };
        *killed.entry(what).or_default() += 1;
        for l in &seen {
            assert!(
                !l.starts_with("FATAL") && !l.starts_with("ERR "),
                "point {point}: worker reported {l}"
            );
            acks.take(l);
        }

        assert_eq!(
            integrity_check(&path),
            "ok",
            "point {point}: the store file is damaged"
        );
        let store = Store::open(&path).unwrap_or_else(|e| panic!("point {point}: reopen: {e}"));
        assert!(
            store.corrupt_records().unwrap().is_empty(),
            "point {point}: records set aside as corrupt"
        );
        acks.check(&store, point);
        let report = sync_store(&store, &transport)
            .unwrap_or_else(|e| panic!("point {point}: sync after the crash: {e}"));
        assert!(
            report.rejected.is_empty(),
            "point {point}: rejected {:?}",
            report.rejected
        );
        let counts = store.counts().unwrap();
        assert_eq!(
            (counts.unsynced, counts.rejected),
            (0, 0),
            "point {point}: edits left behind"
        );
        observer.sync().unwrap();
        assert_eq!(
            snapshot(&store),
            snapshot(&observer.store),
            "point {point}: the phone and a second device differ"
        );
        acks.check(&observer.store, point);
    }
    println!(
        "phone crash test: {points} kills ({killed:?}), {} acknowledged edits checked, {:.1} s",
        acks.total,
        started.elapsed().as_secs_f64()
    );
    assert!(acks.total > 0, "the worker never acknowledged an edit");
}

// ---- the server killed while phones push ----

/// The server as a child process on a fixed address.
struct ServerProcess {
    child: Child,
    addr: String,
}

impl ServerProcess {
    fn start(data: &Path, listen: &str) -> ServerProcess {
        for attempt in 0..50 {
            let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-test-server"))
                .args(["--data", data.to_str().unwrap(), "--listen", listen])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn gridsync-test-server");
            let rx = lines_of(&mut child);
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let addr = line
                        .strip_prefix("listening on http://")
                        .unwrap_or_else(|| panic!("unexpected line {line}"))
                        .to_string();
                    return ServerProcess { child, addr };
                }
                Err(_) => {
                    // The port may still be held by the process just killed: try again.
                    child.kill().ok();
                    child.wait().ok();
                    std::thread::sleep(Duration::from_millis(20 * (attempt + 1)));
                }
            }
        }
        panic!("the server did not start on {listen}");
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL server");
        self.child.wait().expect("wait server");
    }
}

/// Records the server answered `Accepted`, with the heads their push carried.
type Acked = Arc<Mutex<Vec<(String, Vec<[u8; 32]>)>>>;

/// An HTTP transport that notes every record the server answered `Accepted`, with the
/// heads that push carried.
struct Recording {
    inner: HttpTransport,
    acked: Acked,
}

impl Transport for Recording {
    fn sync(&self, auth: &str, body: Vec<u8>) -> gridsync_core::Result<Vec<u8>> {
        let req: SyncRequest = protocol::decode(&body)?;
        let answer = self.inner.sync(auth, body)?;
        let resp: SyncResponse = protocol::decode(&answer)?;
        let mut acked = self.acked.lock().unwrap();
        for r in &resp.results {
            if r.outcome == PushOutcome::Accepted {
                let heads = req
                    .push
                    .iter()
                    .find(|p| p.id == r.id)
                    .map(|p| p.heads.clone())
                    .unwrap_or_default();
                acked.push((r.id.clone(), heads));
            }
        }
        Ok(answer)
    }
    fn enroll(&self, req: &EnrollRequest) -> gridsync_core::Result<EnrollResponse> {
        self.inner.enroll(req)
    }
    fn rotate(&self, auth: &str) -> gridsync_core::Result<RotateResponse> {
        self.inner.rotate(auth)
    }
}

struct Pusher {
    store: Store,
    transport: Recording,
    person: String,
    grid: String,
    /// (record id, product name or finding id) of every edit the store accepted.
    markers: Vec<(String, String)>,
}

fn pusher(
    storage: &SqliteStorage,
    url: &str,
    dir: &Path,
    name: &str,
    person: &str,
    acked: &Acked,
) -> Pusher {
    let store = Store::open(dir.join(format!("{name}.db"))).unwrap();
    let mut inner = HttpTransport::new(url).unwrap();
    inner.attempts = 2;
    inner.backoff = Duration::from_millis(30);
    let transport = Recording {
        inner,
        acked: acked.clone(),
    };
    let code = gridsync_server::admin::issue_code(storage, person, "test", 1)
        .unwrap()
        .code;
    let me = enroll(&store, &transport, url, &code, name).unwrap();
    SyncEngine::new(&store, &transport)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    let grid = me.grids[0].clone();
    Pusher {
        store,
        transport,
        person: me.id,
        grid,
        markers: Vec::new(),
    }
}

impl Pusher {
    fn sync(&self) -> gridsync_core::Result<gridsync_core::sync::SyncReport> {
        SyncEngine::new(&self.store, &self.transport).sync(&mut |_| {}, &CancelFlag::new())
    }

    /// One edit with a unique marker: a product on a producer or a finding on a draft visit.
    fn edit(&mut self, rng: &mut Rng, tag: &str) {
        let producers = self
            .store
            .producers_in_grid(&self.grid, ProducerSort::Name, 1000, 0)
            .unwrap();
        if producers.is_empty() {
            return;
        }
        let p = &producers[rng.below(producers.len() as u64) as usize];
        if rng.below(2) == 0 {
            let mut p = self.store.producer(&p.id).unwrap();
            if p.products.len() >= 45 {
                return;
            }
            let name = format!("产品{tag}");
            p.products.push(name.clone());
            self.store.update_producer(p.clone()).unwrap();
            self.markers.push((p.id, name));
        } else {
            let t = self.store.template("moa-daily-patrol", 1).unwrap();
            let drafts: Vec<_> = self
                .store
                .visit_history(&p.id)
                .unwrap()
                .into_iter()
                .filter(|v| v.status == "draft" && v.inspector == self.person)
                .collect();
            let mut v = match drafts.first() {
                Some(d) if rng.below(4) != 0 => self.store.visit(&d.id).unwrap(),
                _ => self
                    .store
                    .save_visit(gridsync_core::model::Visit::new(
                        &p.id,
                        &self.grid,
                        &self.person,
                        &t,
                        gridsync_core::now_ms(),
                    ))
                    .unwrap(),
            };
            if v.findings.len() >= 150 {
                return;
            }
            let fid = format!("f-{tag}");
            v.findings.push(Finding {
                id: fid.clone(),
                item_id: None,
                description: format!("服务器崩溃测试{tag}"),
                severity: Severity::Minor,
                photos: vec![],
                recorded_by: self.person.clone(),
                recorded_at_ms: gridsync_core::now_ms(),
            });
            let vid = v.id.clone();
            self.store.save_visit(v).unwrap();
            self.markers.push((vid, fid));
        }
    }
}

fn has_marker(rec: &Record, marker: &str) -> bool {
    match rec {
        Record::Producer(p) => p.products.iter().any(|x| x == marker),
        Record::Visit(v) => v.findings.iter().any(|f| f.id == marker),
        Record::Template(_) | Record::Acceptance(_) => false,
    }
}

fn server_record(storage: &SqliteStorage, id: &str) -> Option<RecordDoc> {
    storage
        .record(id)
        .unwrap()
        .map(|s| RecordDoc::load(&s.doc, &[]).expect("stored document loads"))
}

#[test]
fn server_killed_during_pushes_keeps_every_acknowledged_push() {
    let kills = env_u64("GRIDSYNC_SERVER_KILLS", 4) as usize;
    let seed = base_seed();
    println!("server crash test: {kills} kills, GRIDSYNC_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("server");
    std::fs::create_dir_all(&data_dir).unwrap();
    let data = small_dataset();
    let storage = SqliteStorage::open(data_dir.join("gridsync.db")).unwrap();
    gridsync_server::demo::load_dataset(&storage, &data).unwrap();
    let mut server = ServerProcess::start(&data_dir, "127.0.0.1:0");
    let addr = server.addr.clone();
    let url = format!("http://{addr}");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let people = [
        person_in(&data, Role::Liaison, "DEMO-T01-V01"),
        person_in(&data, Role::Liaison, "DEMO-T01-V02"),
        person_in(&data, Role::Supervisor, "DEMO-T01"),
    ];
    let pushers: Vec<Pusher> = people
        .iter()
        .enumerate()
        .map(|(i, p)| pusher(&storage, &url, dir.path(), &format!("p{i}"), &p.id, &acked))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let syncing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = pushers
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            let (stop, syncing) = (stop.clone(), syncing.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ ((i as u64 + 1) * 0x1234_5678));
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    for _ in 0..=rng.below(3) {
                        n += 1;
                        p.edit(&mut rng, &format!("{i}x{n}"));
                    }
                    // Failures are expected while the server is down; the next sync retries.
                    syncing.fetch_add(1, Ordering::SeqCst);
                    let _ = p.sync();
                    syncing.fetch_sub(1, Ordering::SeqCst);
                }
                p
            })
        })
        .collect();

    let mut rng = Rng::new(seed);
    let mut during_push = 0;
    for k in 0..kills {
        // Wait until pushes are flowing, then kill at a random moment.
        let before = acked.lock().unwrap().len();
        let wait_until = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() <= before && Instant::now() < wait_until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            acked.lock().unwrap().len() > before,
            "kill {k}: no push was accepted since the last restart"
        );
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        if syncing.load(Ordering::SeqCst) > 0 {
            during_push += 1;
        }
        server.kill();
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        assert_eq!(
            integrity_check(&data_dir.join("gridsync.db")),
            "ok",
            "kill {k}: server database damaged"
        );
        server = ServerProcess::start(&data_dir, &addr);
    }
    stop.store(true, Ordering::SeqCst);
    let pushers: Vec<Pusher> = handles
        .into_iter()
        .map(|h| h.join().expect("pusher thread"))
        .collect();

    // Every device syncs until nothing is left, twice around so everyone pulls everything.
    for round in 0..2 {
        for (i, p) in pushers.iter().enumerate() {
            let mut last = None;
            for _ in 0..5 {
                match p.sync() {
                    Ok(r) => {
                        assert!(
                            r.rejected.is_empty(),
                            "device {i}: rejected {:?}",
                            r.rejected
                        );
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            assert!(last.is_none(), "round {round} device {i}: {last:?}");
        }
    }
    let acked = acked.lock().unwrap().clone();
    for (id, heads) in &acked {
        let mut doc = server_record(&storage, id)
            .unwrap_or_else(|| panic!("acknowledged record {id} is missing after restarts"));
        let heads: Vec<automerge::ChangeHash> =
            heads.iter().map(|h| automerge::ChangeHash(*h)).collect();
        assert!(
            doc.has_heads(&heads),
            "record {id}: acknowledged changes are missing after restarts"
        );
    }
    let mut markers = 0;
    for (i, p) in pushers.iter().enumerate() {
        assert_eq!(
            p.store.counts().unwrap().unsynced,
            0,
            "device {i} has edits left"
        );
        for (id, m) in &p.markers {
            let rec = server_record(&storage, id)
                .unwrap_or_else(|| panic!("record {id} missing on the server"))
                .read()
                .unwrap();
            assert!(
                has_marker(&rec, m),
                "edit {m} of device {i} missing on the server"
            );
            markers += 1;
        }
    }
    // The supervisor's device holds the whole township: every liaison record must match it.
    let sup = snapshot(&pushers[2].store);
    for (i, p) in pushers.iter().enumerate() {
        for (id, v) in snapshot(&p.store) {
            assert_eq!(
                Some(&v),
                sup.get(&id),
                "device {i} and the supervisor differ on {id}"
            );
            let server_json = server_record(&storage, &id)
                .expect("on server")
                .read()
                .unwrap()
                .to_json();
            assert_eq!(v, server_json, "device {i} and the server differ on {id}");
        }
    }
    server.kill();
    assert_eq!(integrity_check(&data_dir.join("gridsync.db")), "ok");
    println!("server crash test: {kills} kills ({during_push} with a sync in flight), {} accepted pushes and {markers} edits checked", acked.len());
}
