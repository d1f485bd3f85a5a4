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
use gridsync_server::storage::Storage;

/// A server running on 127.0.0.1 with its data directory.
pub struct TestServer {
    /// Data directory.
    pub data: PathBuf,
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Storage handle (shared with the running server).
    pub storage: Arc<SqliteStorage>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestServer({})", self.addr)
    }
}

impl TestServer {
    /// Starts a server on a data directory (created if missing), on a free port.
    pub fn start(data: &Path) -> TestServer {
        Self::start_on(data, "127.0.0.1:0")
    }

    /// Starts a server on a given address.
    pub fn start_on(data: &Path, addr: &str) -> TestServer {
        std::fs::create_dir_all(data).expect("data dir");
        let storage = Arc::new(SqliteStorage::open(data.join("gridsync.db")).expect("open storage"));
        let listener = std::net::TcpListener::bind(addr).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s2: Arc<dyn Storage> = storage.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                gridsync_server::serve(listener, s2, async {
                    rx.await.ok();
                })
                .await
                .expect("serve");
            });
        });
        TestServer { data: data.to_path_buf(), addr, storage, stop: Some(tx), thread: Some(thread) }
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

    /// Restarts on the same data directory and port.
    pub fn restart(mut self) -> TestServer {
        let (data, addr) = (self.data.clone(), self.addr);
        self.shutdown();
        drop(self);
        TestServer::start_on(&data, &addr.to_string())
    }

    /// Loads a dataset (grids, people, records through the push path).
    pub fn load(&self, data: &Dataset) {
        gridsync_server::demo::load_dataset(self.storage.as_ref(), data).expect("load dataset");
    }

    /// Issues an enrolment code for a person.
    pub fn code_for(&self, person_id: &str) -> String {
        gridsync_server::admin::issue_code(self.storage.as_ref(), person_id, "test", 1).expect("issue code").code
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
        Phone { store, path, transport, person }
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
        let Phone { store, path, transport, person } = self;
        drop(store);
        Phone { store: Store::open(&path).expect("reopen"), path, transport, person }
    }
}

/// The small demo-shaped dataset used by most scenarios.
pub fn small_dataset() -> Dataset {
    generate(&DatasetSpec { producers_per_township: 12, visits_per_producer: 2, ..DatasetSpec::demo() })
}

/// A valid new producer in `grid`.
pub fn new_producer(name: &str, grid: &str, by: &str) -> Producer {
    let mut p = Producer::new(name, ProducerType::FamilyRanch, "测试户主", "13912345678", grid, by, gridsync_core::now_ms());
    p.id_number = Some("11010519491231002X".into());
    p.address = "测试地址".into();
    p
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
    /// Cut the next response after this many bytes (0 = never).
    pub cut_after: Arc<std::sync::atomic::AtomicI64>,
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
        let cuts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, n2, s2) = (cut_after.clone(), cuts.clone(), stop.clone());
        listener.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).ok();
                        let (c3, n3) = (c2.clone(), n2.clone());
                        std::thread::spawn(move || proxy_conn(client, target, c3, n3));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        CuttingProxy { addr, cut_after, cuts, stop }
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

fn proxy_conn(mut client: TcpStream, target: SocketAddr, cut_after: Arc<std::sync::atomic::AtomicI64>, cuts: Arc<AtomicUsize>) {
    let Ok(mut server) = TcpStream::connect(target) else { return };
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else { return };
    let up = std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = c2.read(&mut buf) {
            if n == 0 || s2.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        s2.shutdown(std::net::Shutdown::Write).ok();
    });
    let mut buf = [0u8; 16384];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            break;
        }
        let left = cut_after.load(Ordering::SeqCst);
        if left >= 0 && n as i64 >= left {
            cut_after.store(-1, Ordering::SeqCst);
            client.write_all(&buf[..left as usize]).ok();
            cuts.fetch_add(1, Ordering::SeqCst);
            client.shutdown(std::net::Shutdown::Both).ok();
            server.shutdown(std::net::Shutdown::Both).ok();
            break;
        }
        if left >= 0 {
            cut_after.fetch_sub(n as i64, Ordering::SeqCst);
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
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
