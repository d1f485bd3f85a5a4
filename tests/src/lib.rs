//! Test harness: a real `gridsync-server` on loopback (in-process, own runtime thread),
//! phones as real SQLite stores syncing over HTTP, and a TCP proxy that can cut connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use gridsync_core::model::{Person, Producer, ProducerType, Role};
use gridsync_core::store::Store;
use gridsync_core::sync::{enroll, CancelFlag, HttpTransport, SyncEngine, SyncReport, Transport};
use gridsync_server::dataset::{generate, Dataset, DatasetSpec};
use gridsync_server::storage::sqlite::SqliteStorage;
use gridsync_server::storage::testing::ScratchSchema;
use gridsync_server::storage::{self as st, Storage, StorageConfig, StorageResult};

/// Which storage backend test servers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in the data directory.
    Sqlite,
    /// PostgreSQL at this URL; each server data directory names its own schema.
    Postgres(String),
}

impl Backend {
    /// From the environment: `GRIDSYNC_TEST_BACKEND=sqlite|postgres` if set, else PostgreSQL
    /// when `GRIDSYNC_TEST_POSTGRES` names a database, else SQLite.
    pub fn from_env() -> Backend {
        let url = std::env::var("GRIDSYNC_TEST_POSTGRES")
            .ok()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        match std::env::var("GRIDSYNC_TEST_BACKEND").as_deref() {
            Ok("sqlite") => Backend::Sqlite,
            Ok("postgres") => Backend::Postgres(
                url.expect("GRIDSYNC_TEST_BACKEND=postgres needs GRIDSYNC_TEST_POSTGRES"),
            ),
            _ => url.map(Backend::Postgres).unwrap_or(Backend::Sqlite),
        }
    }
}

/// File in a test server's data directory naming its PostgreSQL schema.
const SCHEMA_FILE: &str = "postgres-schema";

fn copy_to_sqlite_file(from: &dyn Storage, dest: &Path) -> StorageResult<()> {
    std::fs::remove_file(dest).ok();
    let to = SqliteStorage::open(dest)?;
    st::copy_all(from, &to)?;
    Ok(())
}

/// A server running on 127.0.0.1 with its data directory.
pub struct TestServer {
    /// Data directory (SQLite file, or the name of its PostgreSQL schema).
    pub data: PathBuf,
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Storage handle (shared with the running server).
    pub storage: Arc<dyn Storage>,
    /// Backend it runs on.
    pub backend: Backend,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestServer({})", self.addr)
    }
}

impl TestServer {
    /// Starts a server on a data directory (created if missing), on a free port, with the
    /// backend chosen by the environment ([`Backend::from_env`]).
    pub fn start(data: &Path) -> TestServer {
        Self::start_on(data, "127.0.0.1:0")
    }

    /// Starts a server on a given address.
    pub fn start_on(data: &Path, addr: &str) -> TestServer {
        Self::start_with(data, addr, &Backend::from_env())
    }

    /// Starts a server with an explicit backend. With PostgreSQL the data directory holds the
    /// name of the server's schema: a fresh one the first time, the same one on a restart.
    pub fn start_with(data: &Path, addr: &str, backend: &Backend) -> TestServer {
        Self::start_configured(data, addr, backend, |_| {})
    }

    /// Like [`TestServer::start_with`], with the server's state adjusted by `configure`.
    pub fn start_configured(
        data: &Path,
        addr: &str,
        backend: &Backend,
        configure: impl FnOnce(&mut gridsync_server::api::AppState) + Send + 'static,
    ) -> TestServer {
        std::fs::create_dir_all(data).expect("data dir");
        let config = match backend {
            Backend::Sqlite => StorageConfig::Sqlite {
                path: data.join("gridsync.db"),
            },
            Backend::Postgres(url) => {
                let file = data.join(SCHEMA_FILE);
                let schema = match std::fs::read_to_string(&file) {
                    Ok(name) => name.trim().to_string(),
                    Err(_) => {
                        let mut s = ScratchSchema::new(url).expect("create a PostgreSQL schema");
                        s.keep();
                        std::fs::write(&file, s.name()).expect("write schema file");
                        s.name().to_string()
                    }
                };
                StorageConfig::Postgres {
                    url: url.clone(),
                    schema: Some(schema),
                }
            }
        };
        let storage = st::open_storage(&config).expect("open storage");
        let listener = std::net::TcpListener::bind(addr).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s2 = storage.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let mut state = gridsync_server::api::AppState::new(s2);
                configure(&mut state);
                gridsync_server::serve_state(listener, Arc::new(state), async {
                    rx.await.ok();
                })
                .await
                .expect("serve");
            });
        });
        TestServer {
            data: data.to_path_buf(),
            addr,
            storage,
            backend: backend.clone(),
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Starts a second instance on the same PostgreSQL schema as `other` (scale-out), with
    /// its own data directory `data`. Panics unless `other` runs on PostgreSQL.
    pub fn start_sharing(data: &Path, other: &TestServer) -> TestServer {
        let schema = std::fs::read_to_string(other.data.join(SCHEMA_FILE))
            .expect("the other server runs on PostgreSQL");
        std::fs::create_dir_all(data).expect("data dir");
        std::fs::write(data.join(SCHEMA_FILE), schema).expect("write schema file");
        TestServer::start_with(data, "127.0.0.1:0", &other.backend)
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server (graceful) and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            tx.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }

    /// Restarts on the same data directory (and schema) and port.
    pub fn restart(mut self) -> TestServer {
        let (data, addr, backend) = (self.data.clone(), self.addr, self.backend.clone());
        self.shutdown();
        drop(self);
        TestServer::start_with(&data, &addr.to_string(), &backend)
    }

    /// Takes a backup into the SQLite file `to`. `marked`: as `admin backup` writes it (a
    /// server restored from it takes a new epoch); otherwise a plain copy (SQLite: the
    /// database file copied while the server is stopped, so the server is restarted).
    pub fn backup(self, to: &Path, marked: bool) -> TestServer {
        if marked {
            std::fs::remove_file(to).ok();
            self.storage.backup_to(to).expect("backup");
            return self;
        }
        match &self.backend {
            Backend::Sqlite => {
                let (data, addr, backend) = (self.data.clone(), self.addr, self.backend.clone());
                self.stop();
                std::fs::copy(data.join("gridsync.db"), to).expect("copy database file");
                TestServer::start_with(&data, &addr.to_string(), &backend)
            }
            Backend::Postgres(_) => {
                copy_to_sqlite_file(self.storage.as_ref(), to).expect("copy to a SQLite file");
                self
            }
        }
    }

    /// Stops the server, restores the backup file `from` and starts again on the same port.
    /// PostgreSQL: the backup is copied into a new schema (as `admin copy-to` does).
    pub fn restore(self, from: &Path) -> TestServer {
        let (data, addr, backend) = (self.data.clone(), self.addr, self.backend.clone());
        self.stop();
        match &backend {
            Backend::Sqlite => {
                for f in ["gridsync.db-wal", "gridsync.db-shm"] {
                    std::fs::remove_file(data.join(f)).ok();
                }
                std::fs::copy(from, data.join("gridsync.db")).expect("restore database file");
            }
            Backend::Postgres(url) => {
                // Opening the backup takes its new epoch if it was marked.
                let src = SqliteStorage::open(from).expect("open backup");
                let mut schema = ScratchSchema::new(url).expect("new schema");
                schema.keep();
                let target = schema.open().expect("open new schema");
                st::copy_all(&src, &target).expect("copy the backup in");
                std::fs::write(data.join(SCHEMA_FILE), schema.name()).expect("write schema file");
            }
        }
        TestServer::start_with(&data, &addr.to_string(), &backend)
    }

    /// Loads a dataset (grids, people, records through the push path).
    pub fn load(&self, data: &Dataset) {
        gridsync_server::demo::load_dataset(self.storage.as_ref(), data).expect("load dataset");
    }

    /// Issues an enrolment code for a person.
    pub fn code_for(&self, person_id: &str) -> String {
        gridsync_server::admin::issue_code(self.storage.as_ref(), person_id, "test", 1)
            .expect("issue code")
            .code
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A phone: a real store file and a transport.
pub struct Phone {
    /// The store.
    pub store: Store,
    /// Path of the store file.
    pub path: PathBuf,
    /// Transport (HTTP, possibly through a proxy).
    pub transport: HttpTransport,
    /// Person enrolled.
    pub person: Person,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Phone({})", self.person.id)
    }
}

impl Phone {
    /// Enrols a new phone for `person_id` on `url`, storing its database in `dir`.
    pub fn enrol(server: &TestServer, url: &str, dir: &Path, name: &str, person_id: &str) -> Phone {
        let path = dir.join(format!("{name}.db"));
        let store = Store::open(&path).expect("open phone store");
        let mut transport = HttpTransport::new(url).expect("transport");
        transport.backoff = std::time::Duration::from_millis(20);
        let code = server.code_for(person_id);
        let person = enroll(&store, &transport, url, &code, name).expect("enrol");
        Phone {
            store,
            path,
            transport,
            person,
        }
    }

    /// Runs a full sync.
    pub fn sync(&self) -> gridsync_core::Result<SyncReport> {
        SyncEngine::new(&self.store, &self.transport).sync(&mut |_| {}, &CancelFlag::new())
    }

    /// Runs a full sync with a page limit.
    pub fn sync_paged(&self, page: u32) -> gridsync_core::Result<SyncReport> {
        let mut e = SyncEngine::new(&self.store, &self.transport);
        e.page_limit = page;
        e.sync(&mut |_| {}, &CancelFlag::new())
    }

    /// The transport as a trait object.
    pub fn transport(&self) -> &dyn Transport {
        &self.transport
    }

    /// Reopens the store from its file (as after the app was killed).
    pub fn reopen(self) -> Phone {
        let Phone {
            store,
            path,
            transport,
            person,
        } = self;
        drop(store);
        Phone {
            store: Store::open(&path).expect("reopen"),
            path,
            transport,
            person,
        }
    }
}

/// A server on a temporary directory holding [`small_dataset`], and the phone of a
/// liaison of `DEMO-T01-V01` enrolled on it (not yet synced).
pub fn server_and_liaison(dir: &Path) -> (TestServer, Dataset, Phone) {
    let server = TestServer::start(&dir.join("server"));
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let phone = Phone::enrol(&server, &server.url(), dir, "p", &liaison.id);
    (server, data, phone)
}

/// The small demo-shaped dataset used by most scenarios.
pub fn small_dataset() -> Dataset {
    generate(&DatasetSpec {
        producers_per_township: 12,
        visits_per_producer: 2,
        ..DatasetSpec::demo()
    })
}

/// A valid new producer in `grid`, with an ID number and a phone of its own (two test
/// producers sharing them would be marked by the server as possible duplicates).
pub fn new_producer(name: &str, grid: &str, by: &str) -> Producer {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The counter spread over all 64 bits, so that two threads' seeds never meet (a plain
    // XOR of a small counter and the clock did).
    let mut rng = gridsync_server::dataset::Rng::new(
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(std::process::id()).rotate_left(40)
            ^ gridsync_core::now_ms() as u64,
    );
    let mut p = Producer::new(
        name,
        ProducerType::FamilyRanch,
        "测试户主",
        format!("139{:08}", rng.below(100_000_000)),
        grid,
        by,
        gridsync_core::now_ms(),
    );
    p.id_number = Some(gridsync_server::dataset::id_number(&mut rng, "152522"));
    p.address = "测试地址".into();
    p
}

/// Answers every required item of the default template (all "yes", "other" as text), so
/// that a visit can be completed.
pub fn answer_all(v: &mut gridsync_core::model::Visit) {
    use gridsync_core::model::{Answer, AnswerValue, YesNoNa};
    for id in [
        "production_records",
        "input_purchase",
        "drug_use",
        "additives",
        "input_waste",
        "compliance_certificate",
    ] {
        let value = AnswerValue::YesNo(YesNoNa::Yes);
        v.answers.insert(id.into(), Answer { value, note: None });
    }
    let value = AnswerValue::Text("无".into());
    v.answers
        .insert("other".into(), Answer { value, note: None });
}

/// First person of a role in a grid.
pub fn person_in(data: &Dataset, role: Role, grid_prefix: &str) -> Person {
    data.people
        .iter()
        .find(|p| p.role == role && p.grids.iter().any(|g| g.starts_with(grid_prefix)))
        .cloned()
        .expect("person")
}

/// A TCP proxy on loopback that forwards to a target and can cut a response mid-way.
pub struct CuttingProxy {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// Cut the next response after this many bytes (negative = never).
    pub cut_after: Arc<std::sync::atomic::AtomicI64>,
    /// Cut the next request (phone to server) after this many bytes (negative = never).
    pub cut_up_after: Arc<std::sync::atomic::AtomicI64>,
    /// Flip one bit of the phone-to-server stream this many bytes on (negative = never).
    pub flip_up_at: Arc<std::sync::atomic::AtomicI64>,
    /// Bytes forwarded from phones to the server.
    pub bytes_up: Arc<std::sync::atomic::AtomicU64>,
    /// Number of connections cut so far.
    pub cuts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for CuttingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CuttingProxy({})", self.addr)
    }
}

impl CuttingProxy {
    /// Starts a proxy to `target`.
    pub fn start(target: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let cut_after = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        let cut_up_after = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        let cuts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, n2, s2) = (cut_after.clone(), cuts.clone(), stop.clone());
        let u2 = cut_up_after.clone();
        let flip_up_at = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        let bytes_up = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (f2, b2) = (flip_up_at.clone(), bytes_up.clone());
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).ok();
                        let cut = Cuts {
                            down: c2.clone(),
                            up: u2.clone(),
                            count: n2.clone(),
                            flip_up: f2.clone(),
                            bytes_up: b2.clone(),
                        };
                        std::thread::spawn(move || proxy_conn(client, target, cut));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        CuttingProxy {
            addr,
            cut_after,
            cut_up_after,
            flip_up_at,
            bytes_up,
            cuts,
            stop,
        }
    }

    /// URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Where a proxied connection is cut: bytes left in each direction, and the cut counter.
struct Cuts {
    down: Arc<std::sync::atomic::AtomicI64>,
    up: Arc<std::sync::atomic::AtomicI64>,
    count: Arc<AtomicUsize>,
    flip_up: Arc<std::sync::atomic::AtomicI64>,
    bytes_up: Arc<std::sync::atomic::AtomicU64>,
}

/// What a pump does to the bytes it forwards, besides cutting.
#[derive(Default)]
struct Tamper {
    /// Flip a bit this many bytes on (negative = never).
    flip_at: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// Counts the bytes forwarded.
    counted: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// Copies `from` to `to` until the end, or until `left` bytes (when not negative) have
/// passed: then both connections are shut and the cut counted.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    left: &std::sync::atomic::AtomicI64,
    count: &AtomicUsize,
    other: &TcpStream,
    tamper: Tamper,
) {
    let mut buf = [0u8; 16384];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Some(flip) = &tamper.flip_at {
            let at = flip.load(Ordering::SeqCst);
            if at >= 0 && (at as usize) < n {
                buf[at as usize] ^= 0x01;
                flip.store(-1, Ordering::SeqCst);
            } else if at >= 0 {
                flip.fetch_sub(n as i64, Ordering::SeqCst);
            }
        }
        if let Some(c) = &tamper.counted {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
        let l = left.load(Ordering::SeqCst);
        if l >= 0 && n as i64 >= l {
            left.store(-1, Ordering::SeqCst);
            to.write_all(&buf[..l as usize]).ok();
            count.fetch_add(1, Ordering::SeqCst);
            to.shutdown(std::net::Shutdown::Both).ok();
            from.shutdown(std::net::Shutdown::Both).ok();
            other.shutdown(std::net::Shutdown::Both).ok();
            return;
        }
        if l >= 0 {
            left.fetch_sub(n as i64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    to.shutdown(std::net::Shutdown::Write).ok();
}

fn proxy_conn(client: TcpStream, target: SocketAddr, cut: Cuts) {
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let (Ok(c2), Ok(s2), Ok(c3)) = (client.try_clone(), server.try_clone(), client.try_clone())
    else {
        return;
    };
    let (up_left, count) = (cut.up.clone(), cut.count.clone());
    let tamper = Tamper {
        flip_at: Some(cut.flip_up.clone()),
        counted: Some(cut.bytes_up.clone()),
    };
    let up = std::thread::spawn(move || pump(c2, s2, &up_left, &count, &c3, tamper));
    let Ok(s3) = server.try_clone() else {
        return;
    };
    pump(
        server,
        client,
        &cut.down,
        &cut.count,
        &s3,
        Tamper::default(),
    );
    up.join().ok();
}

/// Every record on a phone as JSON, by id (records that fail to load show their error).
pub fn snapshot(store: &Store) -> std::collections::BTreeMap<String, serde_json::Value> {
    store
        .record_ids()
        .expect("ids")
        .into_iter()
        .map(|id| {
            let v = match store.record(&id) {
                Ok(r) => r.to_json(),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            (id, v)
        })
        .collect()
}

/// Sends one hand-made sync request with a phone's credential and decodes the answer.
pub fn raw_sync(
    phone: &Phone,
    push: Vec<gridsync_core::sync::protocol::PushRecord>,
    cursors: Vec<gridsync_core::sync::protocol::Cursor>,
) -> gridsync_core::Result<gridsync_core::sync::protocol::SyncResponse> {
    use gridsync_core::sync::protocol;
    let link = phone.store.server_link()?.expect("enrolled");
    let req = protocol::SyncRequest {
        epoch: link.epoch.clone(),
        reference_version: String::new(),
        push,
        cursors,
        want_full: vec![],
        page_limit: protocol::MAX_PAGE_RECORDS,
        bare_docs: false,
        page_bytes: 0,
    };
    let auth = format!("Bearer {}.{}", link.device_id, link.secret);
    let answer = phone.transport().sync(&auth, protocol::encode(&req)?)?;
    protocol::decode(&answer)
}

/// Changes that turn the server's copy of a record into `edit(record)`, as a push signed
/// by `phone` (its person and its device's actor).
pub fn push_edit_of_stored(
    storage: &dyn gridsync_server::storage::Storage,
    id: &str,
    phone: &Phone,
    edit: impl FnOnce(&mut gridsync_core::model::Record),
) -> gridsync_core::sync::protocol::PushRecord {
    push_edit_of_stored_as(storage, id, &phone.person.id, &phone.store.actor_id(), edit)
}

/// Like [`push_edit_of_stored`], signed by any person and actor.
pub fn push_edit_of_stored_as(
    storage: &dyn gridsync_server::storage::Storage,
    id: &str,
    person: &str,
    actor: &automerge::ActorId,
    edit: impl FnOnce(&mut gridsync_core::model::Record),
) -> gridsync_core::sync::protocol::PushRecord {
    let stored = storage.record(id).expect("storage").expect("record exists");
    let mut doc = gridsync_core::doc::RecordDoc::load(&stored.doc, &[]).expect("load");
    doc.set_actor(actor);
    let before = doc.heads();
    let mut rec = doc.read().expect("read");
    edit(&mut rec);
    doc.update(&rec, person, gridsync_core::now_ms())
        .expect("update");
    gridsync_core::sync::protocol::PushRecord {
        id: id.to_string(),
        kind: rec.kind().tag(),
        changes: doc.save_after(&before),
        heads: doc.heads().iter().map(|h| h.0).collect(),
    }
}

/// A push creating a new record from scratch, signed by `phone`.
pub fn push_new(
    rec: &gridsync_core::model::Record,
    phone: &Phone,
) -> gridsync_core::sync::protocol::PushRecord {
    let mut doc = gridsync_core::doc::RecordDoc::create(
        rec,
        &phone.store.actor_id(),
        &phone.person.id,
        gridsync_core::now_ms(),
    )
    .expect("create");
    gridsync_core::sync::protocol::PushRecord {
        id: rec.id().to_string(),
        kind: rec.kind().tag(),
        changes: doc.save(),
        heads: doc.heads().iter().map(|h| h.0).collect(),
    }
}

/// `PRAGMA integrity_check` of a SQLite file, on a connection of its own ("ok" when sound).
pub fn integrity_check(path: &Path) -> String {
    let conn = match rusqlite::Connection::open(path) {
        Ok(c) => c,
        Err(e) => return format!("cannot open {}: {e}", path.display()),
    };
    conn.busy_timeout(std::time::Duration::from_secs(30)).ok();
    let rows = conn.prepare("PRAGMA integrity_check").and_then(|mut st| {
        st.query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()
    });
    match rows {
        Ok(r) => r.join("; "),
        Err(e) => format!("integrity_check failed: {e}"),
    }
}

/// Fuzz target: a sync request body as the server receives it. The first byte picks raw
/// bytes (gzip parsing) or the rest wrapped in gzip (postcard parsing); a decoded request is
/// checked for limits and must survive an encode/decode round trip unchanged.
pub fn fuzz_sync_request(data: &[u8]) {
    use gridsync_core::sync::protocol::{self, SyncRequest};
    let body = fuzz_body(data);
    if let Ok(req) = protocol::decode::<SyncRequest>(&body) {
        let _ = protocol::check_request(&req);
        let again: SyncRequest =
            protocol::decode(&protocol::encode(&req).expect("re-encode")).expect("re-decode");
        assert_eq!(
            again, req,
            "a decoded request does not survive a round trip"
        );
    }
}

/// Fuzz target: a sync response body as a phone receives it; a decoded response is applied
/// to a fresh phone store (in memory, holding the scope of grid `FZ-V`), as the engine
/// does, and every record is read back.
pub fn fuzz_sync_response(data: &[u8]) {
    use gridsync_core::sync::protocol::{self, SyncResponse};
    let body = fuzz_body(data);
    if let Ok(resp) = protocol::decode::<SyncResponse>(&body) {
        let store = fuzz_phone();
        let _ = store.apply_page(&resp);
        for id in store.record_ids().unwrap_or_default() {
            if let Ok(r) = store.record(&id) {
                let _ = r.to_json();
            }
            let _ = store.conflicts(&id);
        }
    }
}

/// A phone store in memory that holds the scope of a liaison of `FZ-V`.
pub fn fuzz_phone() -> Store {
    use gridsync_core::sync::protocol::{Reference, SyncResponse};
    let store = Store::open_in_memory().expect("in-memory store");
    let me = fuzz_people()[1].clone();
    let reference = Reference {
        version: "fz".into(),
        me: me.clone(),
        grids: fuzz_grids(),
        readable: vec!["FZ-V".into()],
        template_grids: vec!["FZ-B".into(), "FZ-L".into(), "FZ-R".into(), "FZ-T".into()],
        people: fuzz_people(),
    };
    store.set_profile(&me).expect("profile");
    let resp = SyncResponse {
        epoch: "e".into(),
        reset: false,
        results: vec![],
        records: vec![],
        departures: vec![],
        cursors: vec![],
        more: false,
        reference: Some(reference),
        docs_digest: None,
        server_time_ms: 0,
    };
    store.apply_page(&resp).expect("reference");
    store
}

/// Fuzz target: document bytes from outside (a pulled whole document or change chunks):
/// `load_received`, `RecordDoc::load` (whole and split into a save plus a chunk),
/// changes applied onto an existing record as a pulled page does, and the bare form of
/// protocol v2 (`sync::bare`: rebuilt documents load strictly; a stripped document
/// rebuilds with the same heads).
pub fn fuzz_document(data: &[u8]) {
    use gridsync_core::doc::{load_received, RecordDoc};
    let inspect = |d: &mut RecordDoc| {
        if let Ok(r) = d.read() {
            let _ = gridsync_core::validate::validate_record(&r);
        }
        let _ = d.conflicts();
        let _ = d.history();
        let _ = d.missing_deps();
    };
    if let Ok(mut d) = load_received(data) {
        inspect(&mut d);
    }
    if let Ok(mut d) = RecordDoc::load(data, &[]) {
        inspect(&mut d);
    }
    if data.len() > 1 {
        let k = 1 + data[0] as usize % (data.len() - 1);
        if let Ok(mut d) = RecordDoc::load(&data[1..k], &[&data[k..]]) {
            inspect(&mut d);
        }
    }
    let mut base = FUZZ_DOC.with(|d| RecordDoc::load(d, &[]).expect("the fixed document loads"));
    if base.apply(data).is_ok() {
        inspect(&mut base);
    }
    // The same bytes as a bare document (protocol v2), and the bare form of whatever
    // document they are: a rebuilt document must load strictly, as the store loads it.
    if let Ok((mut d, bytes)) = gridsync_core::sync::bare::rebuild(data) {
        inspect(&mut d);
        assert!(
            RecordDoc::load(&bytes, &[]).is_ok(),
            "a rebuilt bare document does not load"
        );
    }
    if let (Some(stripped), Ok(mut whole)) = (
        gridsync_core::sync::bare::strip(data),
        RecordDoc::load(data, &[]),
    ) {
        let (mut rebuilt, _) = gridsync_core::sync::bare::rebuild(&stripped)
            .expect("a document that loads rebuilds from its bare form");
        assert_eq!(rebuilt.heads(), whole.heads());
    }
}

/// Fuzz target: a pushed record judged by the server (`push::decide`) against a fixed
/// server holding a producer and a visit, for a liaison of grid `FZ-V`. The first byte
/// picks the target (new record, the stored producer, the stored visit) and the kind tag;
/// the rest is the change bytes; the pushed heads are the heads those bytes produce.
pub fn fuzz_push(data: &[u8]) {
    use gridsync_core::sync::protocol::PushRecord;
    let Some((&sel, changes)) = data.split_first() else {
        return;
    };
    FUZZ_SERVER.with(|(storage, scope, producer, visit, _dir)| {
        let id = match sel % 3 {
            0 => "0190f5a0-0000-7000-8000-00000000f022".to_string(),
            1 => producer.clone(),
            _ => visit.clone(),
        };
        let stored = storage.record(&id).ok().flatten();
        let mut doc = match &stored {
            Some(s) => automerge::AutoCommit::load(&s.doc).expect("stored document loads"),
            None => automerge::AutoCommit::new(),
        };
        let heads = match doc.load_incremental(changes) {
            Ok(_) => doc.get_heads().iter().map(|h| h.0).collect(),
            Err(_) => vec![[0u8; 32]],
        };
        let push = PushRecord {
            id,
            kind: (sel / 3) % 4,
            changes: changes.to_vec(),
            heads,
        };
        let mut ctx =
            gridsync_server::push::PushContext::new(storage.as_ref(), scope, FUZZ_LIAISON_DEVICE);
        let _ = gridsync_server::push::decide(&mut ctx, stored.as_ref(), &push);
    });
}

/// Fuzz target: JSON bodies of enrolment and device calls (both directions) and the
/// bearer header.
pub fn fuzz_enrol_json(data: &[u8]) {
    use gridsync_core::sync::protocol::{EnrollRequest, EnrollResponse, ErrorBody, RotateResponse};
    if let Ok(req) = serde_json::from_slice::<EnrollRequest>(data) {
        let code = gridsync_server::auth::normalize_code(&req.code);
        let _ = gridsync_server::auth::hash_secret(&code);
        let _ = req.device_name.chars().count();
    }
    let _ = serde_json::from_slice::<EnrollResponse>(data);
    let _ = serde_json::from_slice::<RotateResponse>(data);
    let _ = serde_json::from_slice::<ErrorBody>(data);
    let _ = serde_json::from_slice::<gridsync_server::api::IssueCodeRequest>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = gridsync_server::auth::parse_bearer(s);
    }
}

/// Fuzz target: a grid CSV file (`admin import-grids`), against a small existing tree.
pub fn fuzz_grids_csv(data: &[u8]) {
    use gridsync_core::model::{GridKind, GridLevel, GridNode};
    let existing = [
        GridNode {
            code: "R".into(),
            name: "内蒙古自治区".into(),
            level: GridLevel::Region,
            kind: GridKind::Mixed,
            parent: None,
        },
        GridNode {
            code: "L".into(),
            name: "锡林郭勒盟".into(),
            level: GridLevel::League,
            kind: GridKind::Pastoral,
            parent: Some("R".into()),
        },
    ];
    if let Ok(nodes) = gridsync_server::admin::parse_grids_csv("fuzz.csv", data, &existing) {
        for n in &nodes {
            n.validate().expect("parsed nodes are valid");
        }
    }
}

/// A fuzz target: a name and the function it runs on each input.
pub type FuzzTarget = (&'static str, fn(&[u8]));

/// Every fuzz target by name, for the regression replay.
pub const FUZZ_TARGETS: [FuzzTarget; 6] = [
    ("sync_request", fuzz_sync_request),
    ("sync_response", fuzz_sync_response),
    ("document", fuzz_document),
    ("push", fuzz_push),
    ("enrol_json", fuzz_enrol_json),
    ("grids_csv", fuzz_grids_csv),
];

/// A fuzz input as a body: the first byte says how the rest travels: odd, gzip'd (protocol
/// 1 to 3); 2 modulo 4, zstd with the protocol 4 dictionary; otherwise as it is (which
/// reaches both decoders' handling of broken frames).
fn fuzz_body(data: &[u8]) -> Vec<u8> {
    match data.split_first() {
        Some((m, rest)) if m & 1 == 1 => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(rest).expect("gzip into memory");
            gz.finish().expect("gzip into memory")
        }
        Some((m, rest)) if m & 3 == 2 => {
            gridsync_core::sync::protocol::encode_raw_at_for_tests(rest, 4)
        }
        Some((_, rest)) => rest.to_vec(),
        None => Vec::new(),
    }
}

/// The fuzz world's grid tree: region, league, banner, township, village `FZ-V`.
pub fn fuzz_grids() -> Vec<gridsync_core::model::GridNode> {
    use gridsync_core::model::{GridKind, GridLevel, GridNode};
    let n = |code: &str, level, parent: Option<&str>| GridNode {
        code: code.into(),
        name: format!("网格{code}"),
        level,
        kind: GridKind::Pastoral,
        parent: parent.map(String::from),
    };
    vec![
        n("FZ-R", GridLevel::Region, None),
        n("FZ-L", GridLevel::League, Some("FZ-R")),
        n("FZ-B", GridLevel::Banner, Some("FZ-L")),
        n("FZ-T", GridLevel::Township, Some("FZ-B")),
        n("FZ-V", GridLevel::Village, Some("FZ-T")),
    ]
}

/// The fuzz world's people: an administrator and a liaison of `FZ-V`.
pub fn fuzz_people() -> Vec<Person> {
    vec![
        Person {
            id: "fz-admin".into(),
            name: "管理员".into(),
            phone: "13900000000".into(),
            role: Role::Admin,
            grids: vec!["FZ-B".into()],
        },
        Person {
            id: "fz-lia".into(),
            name: "协管员".into(),
            phone: "13900000001".into(),
            role: Role::Liaison,
            grids: vec!["FZ-V".into()],
        },
    ]
}

/// A valid producer and a draft visit of it in `FZ-V`, with fixed ids and times.
pub fn fuzz_records() -> (Producer, gridsync_core::model::Visit) {
    const T: i64 = 1_767_225_600_000;
    let mut p = new_producer("模糊测试牧场", "FZ-V", "fz-lia");
    p.id = "0190f5a0-0000-7000-8000-00000000f001".into();
    p.products = vec!["羊肉".into()];
    (p.created_at_ms, p.updated_at_ms) = (T, T);
    let mut v = gridsync_core::model::Visit::new(
        &p.id,
        "FZ-V",
        "fz-lia",
        &gridsync_core::model::default_template("builtin"),
        T,
    );
    v.id = "0190f5a0-0000-7000-8000-00000000f002".into();
    (p, v)
}

/// The device under which the fuzz server's records were pushed.
pub const FUZZ_SEED_DEVICE: &str = "fz-seed";
/// The device of the fuzz server's liaison (`fuzz_push` judges pushes from it).
pub const FUZZ_LIAISON_DEVICE: &str = "fz-liaison";

/// The document of a fuzz record, byte for byte the same in every process (fixed actor
/// and time), so that seed inputs built on it apply in any fuzzing run.
pub fn fuzz_document_bytes(r: &gridsync_core::model::Record) -> Vec<u8> {
    gridsync_core::doc::RecordDoc::create(
        r,
        &gridsync_core::device_actor(FUZZ_SEED_DEVICE),
        "fz-admin",
        1_767_225_600_000,
    )
    .expect("create")
    .save()
}

thread_local! {
    static FUZZ_DOC: Vec<u8> = fuzz_document_bytes(&gridsync_core::model::Record::Producer(fuzz_records().0));

    #[allow(clippy::type_complexity)]
    static FUZZ_SERVER: (Arc<SqliteStorage>, gridsync_server::scope::Scope, String, String, tempfile::TempDir) = {
        use gridsync_core::model::Record;
        let dir = tempfile::Builder::new().prefix("gridsync-fuzz").tempdir().expect("fuzz dir");
        let path = dir.path().join("server.db");
        let storage = Arc::new(SqliteStorage::open(&path).expect("fuzz storage"));
        storage.import_grids(&fuzz_grids()).expect("grids");
        let people = fuzz_people();
        for p in &people {
            gridsync_server::admin::add_person(storage.as_ref(), p).expect("person");
        }
        let (p, v) = fuzz_records();
        let (pid, vid) = (p.id.clone(), v.id.clone());
        let nodes = fuzz_grids();
        let tree = Arc::new(gridsync_core::store::TreeSnapshot::from_nodes(&nodes));
        let admin = gridsync_server::scope::Scope::compute(&nodes, &people, &people[0], tree.clone());
        let pushes: Vec<gridsync_core::sync::protocol::PushRecord> = [Record::Producer(p), Record::Visit(v)]
            .iter()
            .map(|r| {
                let bytes = fuzz_document_bytes(r);
                let heads = automerge::AutoCommit::load(&bytes).expect("load").get_heads().iter().map(|h| h.0).collect();
                gridsync_core::sync::protocol::PushRecord { id: r.id().to_string(), kind: r.kind().tag(), changes: bytes, heads }
            })
            .collect();
        let author = gridsync_server::storage::Author { person_id: "fz-admin".into(), device_id: None };
        let results = storage
            .apply_push(&author, &pushes, &mut {
                let mut ctx = gridsync_server::push::PushContext::new(storage.as_ref(), &admin, FUZZ_SEED_DEVICE);
                move |stored, p| gridsync_server::push::decide(&mut ctx, stored, p)
            })
            .expect("seed records");
        assert!(results.iter().all(|r| r.outcome == gridsync_core::sync::protocol::PushOutcome::Accepted), "{results:?}");
        let scope = gridsync_server::scope::Scope::compute(&nodes, &people, &people[1], tree);
        (storage, scope, pid, vid, dir)
    };
}
