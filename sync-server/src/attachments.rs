//! The attachment endpoints (`docs/attachments.md`): `HEAD`, `PATCH` and `GET
//! /v1/attachments/{sha}`. Every request is authenticated and rate-limited like
//! `/v1/sync`. A device learns nothing of an attachment it may neither upload (no record it
//! pushed refers to it) nor download (no record in its scope refers to it): the answer is
//! `404` with no body, the same as for an attachment the server does not hold.
//!
//! An upload body is streamed into the store as it arrives, in pieces of at most
//! [`UPLOAD_PIECE`] bytes (each written and synced), and a piece is also written once it has
//! waited [`UPLOAD_PIECE_WAIT`]: when a link drops mid-request, the server keeps every byte
//! that reached it, and the phone continues from there (tus and the IETF resumable-upload
//! draft allow this). A body may run to the attachment's end, so a phone on a slow link
//! sends long requests and loses only the bytes in flight at a cut. A download is streamed
//! from the store in pieces of [`ATTACHMENT_PIECE`] bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gridsync_core::attachment::{is_sha256_hex, AttachmentRef};
use gridsync_core::sync::protocol::ErrorCode;

use crate::api::{authorize, blocking, ApiError, AppState};
use crate::storage::{AppendOutcome, Device, StorageError, ATTACHMENT_PIECE};

/// Bytes of an upload body gathered before they are written to the store.
pub const UPLOAD_PIECE: usize = 256 * 1024;
/// A piece that waited this long is written even if it is smaller (a slow link).
pub const UPLOAD_PIECE_WAIT: std::time::Duration = std::time::Duration::from_secs(4);
/// The content type of a `PATCH` body.
pub const UPLOAD_CONTENT_TYPE: &str = "application/offset+octet-stream";
/// Offset of the first byte sent, or bytes held.
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
/// Size of the whole attachment.
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
/// `?1` when the server holds the whole attachment, verified; `?0` otherwise.
pub const UPLOAD_COMPLETE: HeaderName = HeaderName::from_static("upload-complete");
/// The attachment's media type, on a `PATCH`.
pub const ATTACHMENT_TYPE: HeaderName = HeaderName::from_static("attachment-type");

type ApiResult<T> = Result<T, ApiError>;

/// The answer to everything a device may not know about: no body.
fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

fn num(v: u64) -> HeaderValue {
    HeaderValue::from(v)
}

/// An answer with the upload's state in its headers.
fn upload_state(status: StatusCode, held: u64, size: Option<u64>, complete: bool) -> Response {
    let mut resp = status.into_response();
    let h = resp.headers_mut();
    h.insert(UPLOAD_OFFSET, num(held));
    if let Some(size) = size {
        h.insert(UPLOAD_LENGTH, num(size));
    }
    h.insert(
        UPLOAD_COMPLETE,
        HeaderValue::from_static(if complete { "?1" } else { "?0" }),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An error answer (an [`ErrorBody`](gridsync_core::sync::protocol::ErrorBody), the shape
/// of every error answer) as a response, for the caller to add headers to.
fn refusal(status: StatusCode, code: ErrorCode, message: String) -> Response {
    ApiError::new(status, code, message).into_response()
}

fn bad_request(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// A header holding a non-negative integer.
fn header_u64(headers: &HeaderMap, name: &HeaderName) -> ApiResult<u64> {
    let v = headers
        .get(name)
        .ok_or_else(|| bad_request(ErrorCode::MissingHeader, format!("send header {name}")))?;
    v.to_str()
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            bad_request(
                ErrorCode::BadHeader,
                format!("header {name} must be a non-negative integer"),
            )
        })
}

/// The grids whose records a person may read.
fn readable(st: &AppState, person_id: &str) -> ApiResult<Vec<String>> {
    let scope = st.scopes.scope(st.storage.as_ref(), person_id)?;
    Ok(scope
        .map(|s| s.readable.iter().cloned().collect())
        .unwrap_or_default())
}

/// Whether the device may download the attachment (a record in its scope refers to it).
fn may_download(st: &AppState, person_id: &str, sha: &str) -> ApiResult<bool> {
    let grids = readable(st, person_id)?;
    let grids: Vec<&str> = grids.iter().map(String::as_str).collect();
    Ok(st.storage.may_download(&grids, sha)?)
}

/// `HEAD /v1/attachments/{sha}`: what the server holds.
pub(crate) async fn head(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    blocking(move || {
        let (device, person) = authorize(&st, addr.ip(), &headers)?;
        if !is_sha256_hex(&sha) {
            return Ok(not_found());
        }
        let Some(meta) = st.storage.attachment(&sha)? else {
            return Ok(not_found());
        };
        let allowed =
            st.storage.may_upload(&device.id, &sha, None)? || may_download(&st, &person.id, &sha)?;
        if !allowed {
            return Ok(not_found());
        }
        Ok(upload_state(
            StatusCode::OK,
            meta.held,
            Some(meta.size),
            meta.complete,
        ))
    })
    .await
}

/// The declared upload of a `PATCH`: offset and the reference it claims.
fn declared(headers: &HeaderMap, sha: &str) -> ApiResult<(u64, AttachmentRef)> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) if ct.trim() == UPLOAD_CONTENT_TYPE => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::ContentType,
                format!("send Content-Type: {UPLOAD_CONTENT_TYPE}"),
            ))
        }
    }
    let offset = header_u64(headers, &UPLOAD_OFFSET)?;
    let size = header_u64(headers, &UPLOAD_LENGTH)?;
    let mime = headers
        .get(&ATTACHMENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| {
            bad_request(
                ErrorCode::MissingHeader,
                format!("send header {ATTACHMENT_TYPE}: the attachment's media type"),
            )
        })?;
    Ok((
        offset,
        AttachmentRef {
            sha256: sha.to_string(),
            size,
            mime: mime.chars().take(100).collect(),
        },
    ))
}

/// `PATCH /v1/attachments/{sha}`: appends bytes at an offset.
pub(crate) async fn upload(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(sha): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let read_all = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut resp = match upload_body(st, addr, sha, headers, body, read_all.clone()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // Answered before the body was read to its end (refused, or at the wrong offset): the
    // rest of the body is still on the connection, which can serve nothing else.
    if !read_all.load(std::sync::atomic::Ordering::SeqCst) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// [`upload`], noting in `read_all` whether the body was read to its end.
async fn upload_body(
    st: Arc<AppState>,
    addr: SocketAddr,
    sha: String,
    headers: HeaderMap,
    body: Body,
    read_all: Arc<std::sync::atomic::AtomicBool>,
) -> ApiResult<Response> {
    // Authenticate (and rate-limit) before reading the body.
    let st1 = st.clone();
    let h1 = headers.clone();
    let (device, _) = blocking(move || authorize(&st1, addr.ip(), &h1)).await?;
    if !is_sha256_hex(&sha) {
        return Ok(not_found());
    }
    let (offset, r) = declared(&headers, &sha)?;
    let limits = st.attachment_limits;
    if r.size > limits.max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::AttachmentTooLarge,
            format!(
                "the attachment is {} bytes; this server takes at most {}",
                r.size, limits.max_bytes
            ),
        ));
    }
    let (st2, dev2, r2) = (st.clone(), device.id.clone(), r.clone());
    let allowed = blocking(move || {
        Ok(st2
            .storage
            .may_upload(&dev2, &r2.sha256, Some((r2.size, &r2.mime)))?)
    })
    .await?;
    if !allowed {
        return Ok(not_found());
    }
    // Already whole, or held up to another offset: answered before the body is read (a
    // retried request on a slow link must not send its bytes for nothing).
    let (st4, sha4) = (st.clone(), r.sha256.clone());
    let meta = blocking(move || Ok(st4.storage.attachment(&sha4)?)).await?;
    match meta {
        Some(m) if m.complete => {
            return Ok(upload_state(StatusCode::OK, m.size, Some(m.size), true));
        }
        Some(m) if m.held != offset && m.size == r.size && m.mime == r.mime => {
            return Ok(wrong_offset(m.held));
        }
        None if offset != 0 => return Ok(wrong_offset(0)),
        _ => {}
    }
    // A declared length past the attachment's end is refused before any byte is kept.
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|n| offset.checked_add(n).is_none_or(|end| end > r.size)) {
        return Ok(refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::PastEnd,
            format!("the bytes run past the attachment's {} bytes", r.size),
        ));
    }
    stream_into_store(st, device, r, offset, body, read_all).await
}

/// What writing one piece did.
enum Flushed {
    /// Appended this many bytes; the upload goes on.
    Moved(u64, Response),
    /// Complete, corrupt or refused: this is the answer.
    Stop(Response),
}

/// Writes one piece of an upload body at `offset`.
async fn flush(
    st: &Arc<AppState>,
    device: &Arc<Device>,
    r: &Arc<AttachmentRef>,
    offset: u64,
    bytes: Vec<u8>,
) -> ApiResult<Flushed> {
    let n = bytes.len() as u64;
    let (st2, d2, r2) = (st.clone(), device.clone(), r.clone());
    blocking(move || {
        let resp = append(&st2, &d2, &r2, offset, &bytes)?;
        let moved = resp.status() == StatusCode::NO_CONTENT
            && resp.headers().get(UPLOAD_COMPLETE).map(|v| v.as_bytes()) == Some(b"?0");
        Ok(if moved {
            Flushed::Moved(n, resp)
        } else {
            Flushed::Stop(resp)
        })
    })
    .await
}

/// Appends the body's bytes as they arrive, a piece at a time. The answer is that of the
/// last append; an append that does not move on (complete, corrupt, refused) answers at
/// once. If the body breaks off (the link dropped), what arrived is kept.
async fn stream_into_store(
    st: Arc<AppState>,
    device: Device,
    r: AttachmentRef,
    mut offset: u64,
    body: Body,
    read_all: Arc<std::sync::atomic::AtomicBool>,
) -> ApiResult<Response> {
    use futures_util::StreamExt;
    let device = Arc::new(device);
    let r = Arc::new(r);
    let mut stream = body.into_data_stream();
    let mut piece: Vec<u8> = Vec::with_capacity(UPLOAD_PIECE);
    let mut since = std::time::Instant::now();
    let mut answered: Option<Response> = None;
    let mut held_back: Option<Bytes> = None;
    loop {
        let next = stream.next().await;
        let (ended, broken) = match &next {
            Some(Ok(frame)) => {
                if piece.len() as u64 + frame.len() as u64 > r.size.saturating_sub(offset) {
                    // More than the attachment has left: keep nothing of this request.
                    return Ok(refusal(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::PastEnd,
                        format!("the bytes run past the attachment's {} bytes", r.size),
                    ));
                }
                // A full piece goes before the frame that would pass it (memory per upload
                // stays at one piece and one frame).
                if !piece.is_empty() && piece.len() + frame.len() > UPLOAD_PIECE {
                    held_back = Some(frame.clone());
                } else {
                    piece.extend_from_slice(frame);
                }
                (false, false)
            }
            Some(Err(_)) => (true, true),
            None => {
                read_all.store(true, std::sync::atomic::Ordering::SeqCst);
                (true, false)
            }
        };
        let due = held_back.is_some()
            || piece.len() >= UPLOAD_PIECE
            || since.elapsed() >= UPLOAD_PIECE_WAIT;
        if !piece.is_empty() && (ended || due) || (ended && answered.is_none() && !broken) {
            let bytes = std::mem::take(&mut piece);
            match flush(&st, &device, &r, offset, bytes).await? {
                Flushed::Moved(n, resp) => {
                    offset += n;
                    answered = Some(resp);
                    since = std::time::Instant::now();
                }
                Flushed::Stop(resp) => return Ok(resp),
            }
        }
        if let Some(frame) = held_back.take() {
            piece.extend_from_slice(&frame);
        }
        if broken {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BodyRead,
                format!("the request body broke off; the server holds {offset} bytes"),
            ));
        }
        if ended {
            return Ok(answered.unwrap_or_else(|| {
                upload_state(StatusCode::NO_CONTENT, offset, Some(r.size), false)
            }));
        }
    }
}

fn append(
    st: &AppState,
    device: &Device,
    r: &AttachmentRef,
    offset: u64,
    bytes: &[u8],
) -> ApiResult<Response> {
    let outcome = st
        .storage
        .append_attachment(&device.id, r, offset, bytes, &st.attachment_limits)
        .map_err(|e| match e {
            StorageError::Invalid(m) => bad_request(ErrorCode::Invalid, m),
            other => other.into(),
        })?;
    Ok(match outcome {
        AppendOutcome::Appended { held } => {
            upload_state(StatusCode::NO_CONTENT, held, Some(r.size), false)
        }
        AppendOutcome::Completed => {
            tracing::info!(device = %device.id, sha256 = %r.sha256, size = r.size, "attachment complete");
            upload_state(StatusCode::NO_CONTENT, r.size, Some(r.size), true)
        }
        AppendOutcome::AlreadyComplete => upload_state(StatusCode::OK, r.size, Some(r.size), true),
        AppendOutcome::WrongOffset { held } => wrong_offset(held),
        AppendOutcome::Declared { size, mime, held } => {
            let mut resp = refusal(
                StatusCode::CONFLICT,
                ErrorCode::AttachmentDeclaredOtherwise,
                format!("an upload of this attachment as {size} bytes of {mime} is under way"),
            );
            resp.headers_mut().insert(UPLOAD_OFFSET, num(held));
            resp.headers_mut().insert(UPLOAD_LENGTH, num(size));
            resp
        }
        AppendOutcome::TooLarge { size, max } => refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::AttachmentTooLarge,
            format!("the attachment is {size} bytes; this server takes at most {max}"),
        ),
        AppendOutcome::OverQuota { used, quota } => {
            st.metrics.limited("attachment_quota");
            refusal(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::AttachmentQuota,
                format!(
                    "this device has uploaded {used} bytes of attachments; {} more would pass its quota of {quota}",
                    r.size
                ),
            )
        }
        AppendOutcome::PastEnd { size } => refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::PastEnd,
            format!("the bytes run past the attachment's {size} bytes"),
        ),
        AppendOutcome::Corrupt { reason } => {
            tracing::info!(device = %device.id, sha256 = %r.sha256, "attachment discarded: {reason}");
            let mut resp = refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::AttachmentCorrupt,
                format!("{reason}; everything held was discarded: start again from byte 0"),
            );
            resp.headers_mut().insert(UPLOAD_OFFSET, num(0));
            resp
        }
    })
}

/// `409`: the server holds `held` bytes; the client continues from there.
fn wrong_offset(held: u64) -> Response {
    let mut resp = refusal(
        StatusCode::CONFLICT,
        ErrorCode::OffsetMismatch,
        format!("the server holds {held} bytes of this attachment; continue from there"),
    );
    resp.headers_mut().insert(UPLOAD_OFFSET, num(held));
    resp.headers_mut()
        .insert(UPLOAD_COMPLETE, HeaderValue::from_static("?0"));
    resp
}

/// What a `Range` header asks of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// Everything (no header, or one this server does not serve as a range: several
    /// ranges, or malformed, which HTTP says to ignore).
    Whole,
    /// Bytes `from..to` (end exclusive).
    Part(u64, u64),
    /// Starts at or past the end (`416`).
    Unsatisfiable,
}

/// Parses `bytes=<from>-`, `bytes=<from>-<to>` or `bytes=-<last n>`.
pub fn parse_range(value: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = value.map(str::trim).and_then(|v| v.strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let parse = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if a.trim().is_empty() {
        return match parse(b) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(n) if size > 0 => RangeAsk::Part(size - n.min(size), size),
            Some(_) => RangeAsk::Unsatisfiable,
            None => RangeAsk::Whole,
        };
    }
    let Some(from) = parse(a) else {
        return RangeAsk::Whole;
    };
    let to = if b.trim().is_empty() {
        size
    } else {
        match parse(b) {
            Some(last) if last >= from => last.saturating_add(1).min(size),
            _ => return RangeAsk::Whole,
        }
    };
    if from >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(from, to)
}

/// `GET /v1/attachments/{sha}`: the bytes (or a range of them), streamed in pieces.
pub(crate) async fn download(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(sha): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let st1 = st.clone();
    let (sha2, h1) = (sha.clone(), headers.clone());
    let meta = blocking(move || {
        let (_, person) = authorize(&st1, addr.ip(), &h1)?;
        if !is_sha256_hex(&sha2) {
            return Ok(None);
        }
        let Some(meta) = st1.storage.attachment(&sha2)?.filter(|m| m.complete) else {
            return Ok(None);
        };
        Ok(may_download(&st1, &person.id, &sha2)?.then_some(meta))
    })
    .await?;
    let Some(meta) = meta else {
        return Ok(not_found());
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, from, to) = match parse_range(range, meta.size) {
        RangeAsk::Whole => (StatusCode::OK, 0, meta.size),
        RangeAsk::Part(from, to) => (StatusCode::PARTIAL_CONTENT, from, to),
        RangeAsk::Unsatisfiable => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let storage = st.storage.clone();
    let name = sha.clone();
    let pieces = futures_util::stream::unfold(from, move |at| {
        let storage = storage.clone();
        let name = name.clone();
        async move {
            if at >= to {
                return None;
            }
            let want = (to - at).min(ATTACHMENT_PIECE as u64) as usize;
            let read =
                tokio::task::spawn_blocking(move || storage.read_attachment(&name, at, want)).await;
            let piece = match read {
                Ok(Ok(b)) if !b.is_empty() => b,
                Ok(Ok(_)) => {
                    return Some((Err(std::io::Error::other("attachment ended early")), to))
                }
                Ok(Err(e)) => return Some((Err(std::io::Error::other(e.to_string())), to)),
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), to)),
            };
            let next = at + piece.len() as u64;
            Some((Ok(Bytes::from(piece)), next))
        }
    });
    let mut resp = Response::new(Body::from_stream(pieces));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&meta.mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, num(to - from));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", meta.sha256)) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {from}-{}/{}", to - 1, meta.size)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=4-"), 10), RangeAsk::Part(4, 10));
        assert_eq!(parse_range(Some("bytes=4-5"), 10), RangeAsk::Part(4, 6));
        assert_eq!(parse_range(Some("bytes=4-99"), 10), RangeAsk::Part(4, 10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeAsk::Part(7, 10));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-4"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=1-2,4-5"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=x-"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=1-"), 10), RangeAsk::Whole);
    }
}
