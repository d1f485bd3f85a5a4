//! The per-document baseline: Automerge's own sync protocol (`automerge::sync`) run for
//! each record over the same HTTP stack (axum on loopback, reqwest blocking client), one
//! HTTP request per sync-message exchange, per document. A body is gzip'd when that makes
//! it smaller (flag header `x-gz`), so the baseline is not penalized for small messages.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use automerge::sync::{Message, State as SyncState, SyncDoc};
use automerge::AutoCommit;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rusqlite::{params, Connection};

use crate::R;

const GZ_HEADER: &str = "x-gz";
const DOC_HEADER: &str = "x-doc";
const PEER_HEADER: &str = "x-peer";

/// Gzips `raw` if that is smaller; returns the body and whether it is gzip'd.
fn pack(raw: Vec<u8>) -> (Vec<u8>, bool) {
    if raw.len() < 64 {
        return (raw, false);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    if gz.write_all(&raw).is_err() {
        return (raw, false);
    }
    match gz.finish() {
        Ok(z) if z.len() < raw.len() => (z, true),
        _ => (raw, false),
    }
}

fn unpack(body: &[u8], gz: bool) -> std::io::Result<Vec<u8>> {
    if !gz {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

struct AmDoc {
    doc: AutoCommit,
    peers: HashMap<String, SyncState>,
}

struct AmState {
    ids: Vec<String>,
    docs: Mutex<HashMap<String, AmDoc>>,
}

/// The baseline's server: holds the server's documents in memory.
pub struct AmServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AmServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AmServer({})", self.addr)
    }
}

/// Loads every record document of a server database (id, compact bytes).
pub fn server_docs(server_db: &Path) -> R<Vec<(String, Vec<u8>)>> {
    let c = Connection::open_with_flags(server_db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut st =
        c.prepare("SELECT id, doc FROM records WHERE kind IN ('producer', 'visit') ORDER BY id")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

impl AmServer {
    /// Starts the baseline server holding `docs`.
    pub fn start(docs: Vec<(String, Vec<u8>)>) -> R<AmServer> {
        let mut map = HashMap::with_capacity(docs.len());
        let mut ids = Vec::with_capacity(docs.len());
        for (id, bytes) in docs {
            let doc = AutoCommit::load(&bytes)?;
            ids.push(id.clone());
            map.insert(
                id,
                AmDoc {
                    doc,
                    peers: HashMap::new(),
                },
            );
        }
        let state = Arc::new(AmState {
            ids,
            docs: Mutex::new(map),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let app = Router::new()
                    .route("/am/ids", get(list_ids))
                    .route("/am/sync", post(sync_message))
                    .with_state(state);
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        rx.await.ok();
                    })
                    .await;
            });
        });
        Ok(AmServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for AmServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            tx.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

fn bad(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg).into_response()
}

async fn list_ids(State(st): State<Arc<AmState>>) -> Response {
    let (body, gz) = pack(st.ids.join("\n").into_bytes());
    ([(GZ_HEADER, if gz { "1" } else { "0" })], body).into_response()
}

async fn sync_message(State(st): State<Arc<AmState>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, peer, gz) = (
        header(DOC_HEADER),
        header(PEER_HEADER),
        header(GZ_HEADER) == "1",
    );
    let raw = match unpack(&body, gz) {
        Ok(r) => r,
        Err(e) => return bad(format!("body: {e}")),
    };
    let mut docs = st.docs.lock().unwrap_or_else(|p| p.into_inner());
    let Some(d) = docs.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, "no such document").into_response();
    };
    let state = d.peers.entry(peer).or_default();
    if !raw.is_empty() {
        let msg = match Message::decode(&raw) {
            Ok(m) => m,
            Err(e) => return bad(format!("message: {e}")),
        };
        if let Err(e) = d.doc.sync().receive_sync_message(state, msg) {
            return bad(format!("receive: {e}"));
        }
    }
    let reply = d
        .doc
        .sync()
        .generate_sync_message(state)
        .map(Message::encode)
        .unwrap_or_default();
    let (body, gz) = pack(reply);
    ([(GZ_HEADER, if gz { "1" } else { "0" })], body).into_response()
}

/// What the per-document baseline measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct AmFigures {
    /// Wall time, seconds (listing, every exchange, and storing every document).
    pub secs: f64,
    /// HTTP round trips.
    pub round_trips: u64,
    /// Request body bytes.
    pub bytes_up: u64,
    /// Response body bytes.
    pub bytes_down: u64,
    /// Documents synced.
    pub docs: u64,
}

fn exchange(
    client: &reqwest::blocking::Client,
    url: &str,
    id: &str,
    peer: &str,
    msg: Vec<u8>,
    f: &mut AmFigures,
) -> R<Vec<u8>> {
    let (body, gz) = pack(msg);
    f.bytes_up += body.len() as u64;
    let resp = client
        .post(url)
        .header(DOC_HEADER, id)
        .header(PEER_HEADER, peer)
        .header(GZ_HEADER, if gz { "1" } else { "0" })
        .body(body)
        .send()?;
    f.round_trips += 1;
    let status = resp.status();
    let gz = resp
        .headers()
        .get(GZ_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let bytes = resp.bytes()?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)).into());
    }
    f.bytes_down += bytes.len() as u64;
    Ok(unpack(&bytes, gz)?)
}

/// An empty phone syncs every document of the baseline server, one Automerge sync session
/// per document, then stores them all in a new SQLite file in one transaction.
pub fn client_sync(base: &str, out_db: &Path) -> R<AmFigures> {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let mut f = AmFigures::default();
    let peer = format!("phone-{}", gridsync_core::new_id());
    let t = Instant::now();
    let resp = client.get(format!("{base}/am/ids")).send()?;
    f.round_trips += 1;
    let gz = resp
        .headers()
        .get(GZ_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let listing = resp.bytes()?;
    f.bytes_down += listing.len() as u64;
    let listing = String::from_utf8(unpack(&listing, gz)?)?;
    let url = format!("{base}/am/sync");
    let mut done: Vec<(String, AutoCommit)> = Vec::new();
    for id in listing.lines().filter(|l| !l.is_empty()) {
        let mut doc = AutoCommit::new();
        let mut state = SyncState::new();
        let mut server_spoke = true;
        loop {
            let msg = doc.sync().generate_sync_message(&mut state);
            if msg.is_none() && !server_spoke {
                break;
            }
            let reply = exchange(
                &client,
                &url,
                id,
                &peer,
                msg.map(Message::encode).unwrap_or_default(),
                &mut f,
            )?;
            server_spoke = !reply.is_empty();
            if server_spoke {
                doc.sync()
                    .receive_sync_message(&mut state, Message::decode(&reply)?)?;
            }
            if f.round_trips > 100 * (done.len() as u64 + 10) {
                return Err(format!("document {id}: the sync does not converge").into());
            }
        }
        if doc.get_heads().is_empty() {
            return Err(format!("document {id} arrived empty").into());
        }
        done.push((id.to_string(), doc));
    }
    let mut c = Connection::open(out_db)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute_batch("CREATE TABLE docs (id TEXT PRIMARY KEY, doc BLOB NOT NULL)")?;
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare("INSERT INTO docs (id, doc) VALUES (?1, ?2)")?;
        for (id, doc) in &mut done {
            st.execute(params![id.as_str(), doc.save()])?;
        }
    }
    tx.commit()?;
    f.secs = t.elapsed().as_secs_f64();
    f.docs = done.len() as u64;
    Ok(f)
}
