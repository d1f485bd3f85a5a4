//! Export downloads from the console: `/desk/exports` lists the exports with grid (within
//! the person's scope; another grid answers 404) and period filters, and
//! `/desk/exports/{kind}.{xlsx|csv}?grid=&from=&to=` streams one as the response body.
//!
//! The file is written by [`crate::reports::export::write_export`] on a blocking thread
//! into a bounded channel of 64 KiB pieces that the body reads: a slow receiver holds the
//! writer back (memory stays at a few pieces), and one that goes away stops it. The
//! headers go out first; a failure after that aborts the body, so a broken download is
//! never taken for a whole one. Every export is in the audit trail (who, what, which
//! grids and days) before any row is read.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::mpsc;

use super::directory::{bad_param, grid_choices, list_grids, respond, scoped, Choice, Outcome};
use super::directory::{Params, Refused};
use super::*;
use crate::reports::export::{
    file_name, period_of_days, write_export, ExportFormat, ExportKind, ExportRequest,
};
use crate::storage::Period;

/// This part's routes.
pub(super) fn routes() -> Router<Arc<DeskState>> {
    Router::new()
        .route("/desk/exports", get(page))
        .route("/desk/exports/{file}", get(download))
}

/// Exports written at once on this server; more wait for none and are refused (429).
const MAX_RUNNING: usize = 4;
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A slot among the running exports, given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_RUNNING).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes sent to the body at once.
const PIECE: usize = 64 * 1024;
/// Pieces waiting in the channel at most.
const PIECES_IN_FLIGHT: usize = 4;

/// The filters of the page and of a download, checked.
struct ExportQuery {
    grid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    period: Period,
}

impl ExportQuery {
    fn parse(p: &Params) -> Result<Self, Refused> {
        let grid = p.get("grid").map(str::to_string);
        if grid.as_ref().is_some_and(|g| g.chars().count() > 64) {
            return Err(bad_param("grid", "网格编码过长"));
        }
        let from = p.get("from").map(str::to_string);
        let to = p.get("to").map(str::to_string);
        let period = period_of_days(from.as_deref(), to.as_deref()).map_err(|which| {
            if which == "to" && to.as_deref().and_then(china_day).is_some() {
                bad_param("to", "结束日期早于开始日期")
            } else {
                bad_param(which, "日期格式应为 YYYY-MM-DD，例如 2024-03-01")
            }
        })?;
        Ok(ExportQuery {
            grid,
            from,
            to,
            period,
        })
    }

    /// The query string of a download link.
    fn link(&self, kind: ExportKind, format: ExportFormat) -> String {
        let mut q: Vec<String> = Vec::new();
        if let Some(g) = &self.grid {
            q.push(format!("grid={}", url_encode(g)));
        }
        if kind.uses_period() {
            if let Some(f) = &self.from {
                q.push(format!("from={}", url_encode(f)));
            }
            if let Some(t) = &self.to {
                q.push(format!("to={}", url_encode(t)));
            }
        }
        let path = format!("/desk/exports/{}.{}", kind.as_str(), format.ext());
        if q.is_empty() {
            path
        } else {
            format!("{path}?{}", q.join("&"))
        }
    }
}

fn china_day(s: &str) -> Option<i64> {
    crate::reports::export::china_day_start(s)
}

// ---- The page. ----

struct ExportItem {
    kind: &'static str,
    title: &'static str,
    about: &'static str,
    xlsx: String,
    csv: String,
}

#[derive(Template)]
#[template(path = "desk/exports.html")]
struct ExportsPage {
    me: Me,
    grids: Vec<Choice>,
    from: String,
    to: String,
    items: Vec<ExportItem>,
    filtered: bool,
}

async fn page(
    State(st): State<Arc<DeskState>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let query = match ExportQuery::parse(&Params(params)) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        if let Some(g) = &query.grid {
            if !scope.readable.contains(g) {
                return Ok(Outcome::NotFound);
            }
        }
        let nodes = storage.grids()?;
        let choices = grid_choices(&nodes, &scope.readable, query.grid.as_deref());
        Ok(Outcome::Page((query, choices)))
    })
    .await;
    respond(r, |(query, grids)| {
        let items = ExportKind::ALL
            .into_iter()
            .map(|k| ExportItem {
                kind: k.as_str(),
                title: k.title_zh(),
                about: k.about_zh(),
                xlsx: query.link(k, ExportFormat::Xlsx),
                csv: query.link(k, ExportFormat::Csv),
            })
            .collect();
        html(
            StatusCode::OK,
            &ExportsPage {
                me: Me::of(&signed),
                grids,
                filtered: query.grid.is_some() || query.from.is_some() || query.to.is_some(),
                from: query.from.clone().unwrap_or_default(),
                to: query.to.clone().unwrap_or_default(),
                items,
            },
        )
    })
}

// ---- Downloads. ----

/// A `Write` that hands the body 64 KiB pieces through a bounded channel (blocking when
/// the body is behind); fails once the body is gone.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
    sent: u64,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.sent += piece.len() as u64;
        self.tx
            .blocking_send(Ok(Bytes::from(piece)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "receiver gone"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = PIECE - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= PIECE {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_buf()
    }
}

/// `Content-Disposition` of a download: an ASCII name for old clients and the Chinese
/// one as RFC 5987 `filename*`.
fn disposition(ascii: &str, name: &str) -> HeaderValue {
    let v = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        url_encode(name)
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Characters of a grid code kept in the ASCII file name.
fn ascii_part(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect()
}

async fn download(
    State(st): State<Arc<DeskState>>,
    Path(file): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some((kind, format)) = file
        .split_once('.')
        .and_then(|(k, f)| Some((ExportKind::parse(k)?, ExportFormat::parse(f)?)))
    else {
        return not_found();
    };
    let query = match ExportQuery::parse(&Params(params)) {
        Ok(q) => q,
        Err(r) => return *r,
    };
    let Some(slot) = Slot::take() else {
        let mut resp = message(
            StatusCode::TOO_MANY_REQUESTS,
            "请稍后再试",
            "正在生成的导出文件过多，请稍后再试。",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return resp;
    };
    let pid = signed.person.id.clone();
    let grid = query.grid.clone();
    let (from, to) = (query.from.clone(), query.to.clone());
    let period = if kind.uses_period() {
        query.period
    } else {
        Period::default()
    };
    let r = scoped(&st, &signed.person.id, move |storage, scope| {
        let Some(grids) = list_grids(storage, scope, grid.as_deref())? else {
            return Ok(Outcome::NotFound);
        };
        let days = if kind.uses_period() {
            format!(
                ", days {} to {}",
                from.as_deref().unwrap_or("(any)"),
                to.as_deref().unwrap_or("(any)")
            )
        } else {
            String::new()
        };
        let entry = AuditEntry {
            at_ms: gridsync_core::now_ms(),
            person_id: pid.clone(),
            device_id: None,
            record_id: None,
            kind: None,
            grid: grid.clone(),
            action: "desk_export".into(),
            detail: format!(
                "{} as {}, {} ({} grids){days}",
                kind.as_str(),
                format.ext(),
                grid.as_deref()
                    .map_or("whole scope".to_string(), |g| format!("grid {g} and below")),
                grids.len()
            ),
        };
        // No audit entry, no export.
        storage.audit(&entry)?;
        Ok(Outcome::Page(grids))
    })
    .await;
    let grids = match r {
        Ok(Outcome::Page(g)) => g,
        Ok(Outcome::NotFound) => return not_found(),
        Err(_) => return server_error(),
    };
    let req = ExportRequest {
        kind,
        format,
        grids,
        period,
        today: gridsync_core::dates::china_date(gridsync_core::now_ms()),
    };
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(PIECES_IN_FLIGHT);
    let storage = st.app.storage.clone();
    let person = signed.person.id.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let started = std::time::Instant::now();
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(PIECE),
            sent: 0,
        };
        let r = write_export(storage.as_ref(), &req, &mut out).and_then(|done| {
            out.flush()?;
            Ok(done)
        });
        match r {
            Ok(done) => tracing::info!(
                person = %person,
                kind = req.kind.as_str(),
                format = req.format.ext(),
                rows = done.rows,
                bytes = out.sent,
                secs = started.elapsed().as_secs_f64(),
                "desk export written"
            ),
            Err(e) => {
                tracing::warn!(
                    person = %person,
                    kind = req.kind.as_str(),
                    format = req.format.ext(),
                    "desk export stopped: {e}"
                );
                // The body ends with an error: the client sees a broken download.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let name = file_name(
        kind,
        format,
        query.grid.as_deref(),
        query.from.as_deref(),
        query.to.as_deref(),
    );
    let ascii = match query.grid.as_deref().map(ascii_part) {
        Some(g) if !g.is_empty() => format!("gridsync-{}-{g}.{}", kind.as_str(), format.ext()),
        _ => format!("gridsync-{}.{}", kind.as_str(), format.ext()),
    };
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition(&ascii, &name));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_in_headers() {
        let v = disposition("gridsync-visits.csv", "巡查_1.csv");
        assert_eq!(
            v.to_str().unwrap(),
            "attachment; filename=\"gridsync-visits.csv\"; filename*=UTF-8''%E5%B7%A1%E6%9F%A5_1.csv"
        );
        assert_eq!(ascii_part("15a-b\"/x"), "15a-bx");
    }
}
