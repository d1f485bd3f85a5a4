//! A headless Chromium for the desk console's browser tests: chromedriver started on a free
//! loopback port, a WebDriver session through fantoccini, and blocking helpers (each call runs
//! on the helper's own single-thread runtime with a time limit, so that the tests stay plain
//! `#[test]` functions next to the blocking phones and servers).

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// Set to `1` by a developer without a browser to let the browser tests pass without running.
/// CI never sets it: there a missing chromedriver fails the test.
pub const NO_BROWSER_ENV: &str = "GRIDSYNC_NO_BROWSER";

/// The desk's session cookie.
const SESSION_COOKIE: &str = "gridsync_desk";

/// Longest wait for one browser command (a page load, a click, a script).
const STEP: Duration = Duration::from_secs(30);

/// Chromium's flags: headless, no sandbox (root in a container), and nothing that reaches
/// for the network on its own (the machine's network is closed).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,768",
];

/// Where screenshots go: `<workspace target dir>/desk-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => workspace.join(t),
        None => workspace.join("target"),
    };
    target.join("desk-screenshots")
}

/// chromedriver as a child process, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    fn start(binary: &str, dir: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join("chromedriver.log");
        let out = std::fs::File::create(&log).expect("chromedriver log");
        let err = out.try_clone().expect("chromedriver log");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let mut driver = Driver { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited ({status}): {}", driver.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}: {}",
                driver.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A signed-out browser on the desk of one server.
pub struct Desk {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    base: String,
    shots: PathBuf,
    // Dropped after the session is closed (see `Drop`): the driver, then the profile.
    driver: Driver,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Desk({} via chromedriver :{})",
            self.base, self.driver.port
        )
    }
}

impl Drop for Desk {
    fn drop(&mut self) {
        // Ending the session quits Chromium; then the driver is killed.
        if let Some(c) = self.client.take() {
            self.rt
                .block_on(async { tokio::time::timeout(STEP, c.close()).await })
                .ok();
        }
    }
}

impl Desk {
    /// Starts chromedriver and a headless Chromium with a new empty profile; `base` is the
    /// server's URL (`http://127.0.0.1:port`).
    pub fn start(chromedriver: &str, chromium: &str, base: &str) -> Desk {
        let profile = tempfile::tempdir().expect("profile dir");
        let driver = Driver::start(chromedriver, profile.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            profile.path().join("chromium").display()
        ));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        let url = format!("http://127.0.0.1:{}", driver.port);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(60),
                    ClientBuilder::new(connector)
                        .capabilities(caps)
                        .connect(&url),
                )
                .await
            })
            .unwrap_or_else(|_| panic!("no WebDriver session in 60 s: {}", driver.log_text()))
            .unwrap_or_else(|e| panic!("WebDriver session: {e}; {}", driver.log_text()));
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Desk {
            rt,
            client: Some(client),
            base: base.trim_end_matches('/').to_string(),
            shots,
            driver,
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    /// Runs one browser command to its end, within [`STEP`].
    fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> T {
        match self
            .rt
            .block_on(async { tokio::time::timeout(STEP, fut).await })
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("{what}: {e} (page {})", self.current_url()),
            Err(_) => panic!("{what}: no answer in {STEP:?}"),
        }
    }

    fn current_url(&self) -> String {
        self.rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(5), self.client().current_url()).await
            })
            .ok()
            .and_then(Result::ok)
            .map(|u| u.to_string())
            .unwrap_or_else(|| "?".into())
    }

    /// Opens a page of the server.
    pub fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.run(&format!("open {url}"), self.client().goto(&url));
    }

    /// Path of the page shown.
    pub fn path(&self) -> String {
        self.run("current url", self.client().current_url())
            .path()
            .to_string()
    }

    /// Query string of the page shown.
    pub fn query(&self) -> String {
        self.run("current url", self.client().current_url())
            .query()
            .unwrap_or("")
            .to_string()
    }

    /// Saves the page shown as `<target>/desk-screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.run(&format!("screenshot {name}"), self.client().screenshot());
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Sets the browser window's size (a tablet's, say) for the pages that follow.
    pub fn resize(&self, width: u32, height: u32) {
        self.run(
            &format!("resize to {width}x{height}"),
            self.client().set_window_size(width, height),
        );
    }

    /// Runs a script in the page (a returned promise is awaited) and gives its value.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.run("script", self.client().execute(script, args))
    }

    /// Whether an element matches `css` now.
    pub fn has(&self, css: &str) -> bool {
        !self
            .run(
                &format!("find {css}"),
                self.client().find_all(Locator::Css(css)),
            )
            .is_empty()
    }

    /// Waits (up to [`STEP`]) for an element matching `css`.
    pub fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.run(
            &format!("wait for {css}"),
            self.client()
                .wait()
                .at_most(STEP)
                .for_element(Locator::Css(css)),
        )
    }

    /// An attribute of the element matching `css`.
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let e = self.find(css);
        self.run(&format!("{css} [{name}]"), e.attr(name))
    }

    /// Visible text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.run(&format!("text of {css}"), e.text())
    }

    /// Visible text of the page.
    pub fn body_text(&self) -> String {
        self.text("body")
    }

    /// The page's HTML.
    pub fn source(&self) -> String {
        self.run("page source", self.client().source())
    }

    /// Types into the field matching `css`, replacing what it held.
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.run(&format!("clear {css}"), e.clear());
        self.run(&format!("type into {css}"), e.send_keys(text));
    }

    /// Removes the element matching `css` from the page (it must be there).
    pub fn remove(&self, css: &str) {
        let removed = self.js(
            "const e = document.querySelector(arguments[0]); if (!e) return false; \
             e.remove(); return true;",
            vec![json!(css)],
        );
        assert_eq!(removed, json!(true), "{css} was on the page");
    }

    /// Clicks the submit button of the form matching `form` and waits until the next page
    /// has loaded (a POST answered on the same URL counts: the old document is gone).
    pub fn submit_and_leave(&self, form: &str) {
        self.js("window.__gridsyncOldPage = true; return null;", vec![]);
        let button = self.find(&format!(
            "{form} button:not([type=button]):not([type=reset]), {form} input[type=submit]"
        ));
        self.run(&format!("submit {form}"), button.click());
        let deadline = Instant::now() + STEP;
        loop {
            let loaded = self.js(
                "return window.__gridsyncOldPage === undefined \
                 && document.readyState === 'complete';",
                vec![],
            );
            if loaded == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "submitting {form} led nowhere (still {})",
                self.current_url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// HTTP status of the page shown (Navigation Timing's `responseStatus`).
    pub fn navigation_status(&self) -> u64 {
        let v = self.js(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return n ? n.responseStatus : null;",
            vec![],
        );
        v.as_u64()
            .unwrap_or_else(|| panic!("no navigation status: {v}"))
    }

    /// Status of a GET of `path` by the page with its cookies, redirects not followed (a
    /// redirect answers 0, as fetch shows it).
    pub fn fetch_status(&self, path: &str) -> u64 {
        let v = self.js(
            "return fetch(arguments[0], {redirect: 'manual', credentials: 'same-origin'}) \
             .then(r => r.status);",
            vec![json!(path)],
        );
        v.as_u64().unwrap_or_else(|| panic!("fetch {path}: {v}"))
    }

    /// Signs in on the sign-in page; lands on the home page.
    pub fn sign_in(&self, username: &str, password: &str) {
        if self.path() != "/desk/login" {
            self.goto("/desk/login");
        }
        self.fill("input[name=username]", username);
        self.fill("input[name=password]", password);
        self.submit_and_leave("form[action=\"/desk/login\"]");
        assert_eq!(self.path(), "/desk/", "{username} signed in");
    }

    /// Signs out with the navigation's logout form (from the home page if the page shown has
    /// none, as an error page); lands on the sign-in page.
    pub fn sign_out(&self) {
        const LOGOUT: &str = "form[action=\"/desk/logout\"]";
        if !self.has(LOGOUT) {
            self.goto("/desk/");
        }
        self.submit_and_leave("form[action=\"/desk/logout\"]");
        assert_eq!(self.path(), "/desk/login", "signed out");
    }

    /// Value of the session cookie.
    pub fn session_cookie(&self) -> String {
        let c = self.run(
            "session cookie",
            self.client().get_named_cookie(SESSION_COOKIE),
        );
        c.value().to_string()
    }

    /// Drops every cookie of the browser.
    pub fn delete_cookies(&self) {
        self.run("delete cookies", self.client().delete_all_cookies());
    }

    /// Puts a session cookie back (the page shown must be on the desk), with the attributes
    /// the server gives it. (Without a SameSite fantoccini sends "None", which Chromium
    /// refuses on a cookie that is not Secure; without a domain chromedriver refuses it.)
    pub fn set_session_cookie(&self, value: &str) {
        let url = self.run("current url", self.client().current_url());
        let host = url.host_str().expect("a host");
        let c = fantoccini::cookies::Cookie::parse(format!(
            "{SESSION_COOKIE}={value}; Path=/desk; Domain={host}; HttpOnly; SameSite=Strict"
        ))
        .expect("a cookie");
        self.run("add session cookie", self.client().add_cookie(c));
    }

    /// Selector of the review queue's row of a producer.
    pub fn row(&self, id: &str) -> String {
        format!("table#review-queue tr[data-id=\"{id}\"]")
    }

    /// Takes a decision in the review queue (`action`: "approve" or "return") and checks
    /// the answer: back on the queue with `done=<id>` and a flash message.
    pub fn decide(&self, id: &str, action: &str, reason: Option<&str>) {
        let form = format!("{} form.{action}", self.row(id));
        if let Some(r) = reason {
            self.fill(&format!("{form} input[name=reason]"), r);
        }
        self.submit_and_leave(&form);
        assert_eq!(self.path(), "/desk/reviews", "{action} {id}");
        assert!(
            self.query().split('&').any(|kv| kv == format!("done={id}")),
            "{action} {id}: answered on {}",
            self.current_url()
        );
        assert_eq!(self.navigation_status(), 200);
        let flash = self.text("#flash");
        assert!(!flash.trim().is_empty(), "{action} {id}: a flash message");
    }
}
