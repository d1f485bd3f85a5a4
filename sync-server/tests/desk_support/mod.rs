//! The desk tests' harness: a real server on loopback with seeded grids, people (with desk
//! passwords) and producers, a cookie-keeping client, and the servers' log output.

#![allow(dead_code, unused_imports, clippy::unwrap_used)]

pub use std::collections::BTreeMap;
pub use std::io::Write;
pub use std::sync::{Arc, Mutex, OnceLock};
pub use std::thread::JoinHandle;
pub use std::time::{Duration, Instant};

pub use gridsync_core::model::{
    GridKind, GridLevel, GridNode, Person, Producer, ProducerType, Record, Role,
};
pub use gridsync_server::api::AppState;
pub use gridsync_server::desk::DeskConfig;
pub use gridsync_server::storage::{AuditEntry, AuditFilter, Storage, StorageConfig};
pub use reqwest::blocking::Client;
pub use reqwest::StatusCode;

pub const SUP_PASSWORD: &str = "锡林郭勒-草原密码-01";
pub const CTY_PASSWORD: &str = "阿巴嘎旗-审核密码-02";
pub const ADM_PASSWORD: &str = "系统管理-密码-03xyz";
pub const LINK_PASSWORD: &str = "一次性链接设置-密码04";
pub const WRONG_PASSWORD: &str = "wrong-password-0005";

// ---- Log capture: every log line of the servers of this test binary. ----

#[derive(Clone)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn logs() -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf(Arc::new(Mutex::new(Vec::new())));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// No password of these tests in anything the servers logged.
pub fn assert_no_password_logged() {
    let text = log_text();
    assert!(!text.is_empty(), "the servers logged something");
    for p in [
        SUP_PASSWORD,
        CTY_PASSWORD,
        ADM_PASSWORD,
        LINK_PASSWORD,
        WRONG_PASSWORD,
    ] {
        assert!(!text.contains(p), "a password is in the log");
        let encoded: String = url_encode(p);
        assert!(
            !text.contains(&encoded),
            "an encoded password is in the log"
        );
    }
}

pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---- A server on loopback with seeded grids, people and producers. ----

pub struct Server {
    pub state: Arc<AppState>,
    pub base: String,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub thread: Option<JoinHandle<()>>,
    pub _dir: tempfile::TempDir,
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

impl Server {
    pub fn storage(&self) -> &dyn Storage {
        self.state.storage.as_ref()
    }

    pub fn audit(&self, person: &str) -> Vec<AuditEntry> {
        self.storage()
            .audit_list(&AuditFilter::Person(person.into()), 1000)
            .unwrap()
    }

    pub fn actions(&self, person: &str) -> Vec<String> {
        self.audit(person).into_iter().map(|e| e.action).collect()
    }
}

pub fn node(code: &str, level: GridLevel, parent: Option<&str>) -> GridNode {
    GridNode {
        code: code.into(),
        name: format!("网格{code}"),
        level,
        kind: GridKind::Pastoral,
        parent: parent.map(str::to_string),
    }
}

pub fn person(id: &str, name: &str, role: Role, grids: &[&str]) -> Person {
    Person {
        id: id.into(),
        name: name.into(),
        phone: "13912345678".into(),
        role,
        grids: grids.iter().map(|g| g.to_string()).collect(),
    }
}

pub fn producer(id: &str, name: &str, owner: &str, grid: &str) -> Record {
    let mut p = Producer::new(
        name,
        ProducerType::FamilyRanch,
        owner,
        "13812345678",
        grid,
        "adm",
        1_700_000_000_000,
    );
    p.id = id.into();
    p.id_number = Some("11010519491231002X".into());
    Record::Producer(p)
}

pub fn start(configure: impl FnOnce(&mut AppState, &mut DeskConfig)) -> Server {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let storage = gridsync_server::storage::open_storage(&StorageConfig::Sqlite {
        path: dir.path().join("gridsync.db"),
    })
    .unwrap();
    let s = storage.as_ref();
    s.import_grids(&[
        node("B", GridLevel::Banner, None),
        node("T1", GridLevel::Township, Some("B")),
        node("T1-V1", GridLevel::Village, Some("T1")),
        node("T2", GridLevel::Township, Some("B")),
        node("T2-V1", GridLevel::Village, Some("T2")),
    ])
    .unwrap();
    let adm = person("adm", "管理员甲", Role::Admin, &[]);
    for p in [
        person("sup1", "王丽", Role::Supervisor, &["T1"]),
        person("cty", "巴特尔", Role::CountyReviewer, &["B"]),
        person("liai", "乌日娜", Role::Liaison, &["T1-V1"]),
        adm.clone(),
    ] {
        s.upsert_person(&p).unwrap();
    }
    gridsync_server::admin::seed_records(
        s,
        &adm,
        &[
            producer("P1", "乌兰家庭牧场", "乌兰", "T1-V1"),
            producer("P2", "查干敖包家庭牧场", "查干巴拉", "T2-V1"),
        ],
    )
    .unwrap();
    for (id, user, pw) in [
        ("sup1", "wangli", SUP_PASSWORD),
        ("cty", "bater", CTY_PASSWORD),
        ("adm", "admin", ADM_PASSWORD),
    ] {
        gridsync_server::admin::set_desk_password(s, id, user, pw, "test").unwrap();
    }
    let mut state = AppState::new(storage);
    let mut desk = DeskConfig::default();
    configure(&mut state, &mut desk);
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
            gridsync_server::serve_with_desk(listener, s2, desk, async {
                rx.await.ok();
            })
            .await
            .unwrap();
        });
    });
    Server {
        state,
        base: format!("http://{addr}"),
        stop: Some(tx),
        thread: Some(thread),
        _dir: dir,
    }
}

// ---- A browser: cookies kept by hand, redirects not followed. ----

pub struct Resp {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub location: Option<String>,
    pub body: String,
}

impl Resp {
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }

    /// The hidden CSRF field of the page's (first) form.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

pub struct Browser {
    pub http: Client,
    pub base: String,
    pub cookies: BTreeMap<String, String>,
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Browser {
    pub fn new(s: &Server) -> Browser {
        Browser {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.clone(),
            cookies: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    pub fn send(&mut self, rb: reqwest::blocking::RequestBuilder) -> Resp {
        let mut rb = rb;
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            rb = rb.header("cookie", c.join("; "));
        }
        for (k, v) in &self.headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().unwrap();
        let status = r.status();
        let set_cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        for c in &set_cookies {
            let first = c.split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Resp {
            status,
            set_cookies,
            location,
            body: r.text().unwrap(),
        }
    }

    pub fn get(&mut self, path: &str) -> Resp {
        let rb = self.http.get(format!("{}{path}", self.base));
        self.send(rb)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Resp {
        let rb = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(rb)
    }

    /// Opens the sign-in page and signs in.
    pub fn sign_in(&mut self, username: &str, password: &str) -> Resp {
        let page = self.get("/desk/login");
        assert_eq!(page.status, StatusCode::OK);
        let csrf = page.csrf();
        self.post(
            "/desk/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
            ],
        )
    }
}

pub fn assert_cookie_attributes(c: &str, secure: bool) {
    let parts: Vec<&str> = c.split(';').map(str::trim).collect();
    assert!(parts.contains(&"HttpOnly"), "{c}");
    assert!(parts.contains(&"SameSite=Strict"), "{c}");
    assert!(parts.contains(&"Path=/desk"), "{c}");
    assert_eq!(parts.contains(&"Secure"), secure, "{c}");
}

pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}
