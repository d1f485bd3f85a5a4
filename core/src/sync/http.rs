//! HTTP transport on reqwest (rustls): timeouts, and retries with backoff on network errors.

use std::io::Read;
use std::time::Duration;

use super::attachments::UploadState;
use super::engine::Transport;
use super::protocol::{
    EnrollRequest, EnrollResponse, ErrorBody, ErrorCode, RotateResponse, ScaleThresholdsResponse,
    CALLS_PROTOCOL_VERSION, CONTENT_TYPE, MAX_BODY_BYTES, MAX_SCALE_THRESHOLDS_BYTES,
    PROTOCOL_HEADER, PROTOCOL_VERSION,
};
use crate::attachment::{is_sha256_hex, AttachmentRef};
use crate::{Error, Result};

/// Talks to a gridsync server over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    base: String,
    client: reqwest::blocking::Client,
    /// Attempts per request on network errors (not on answers from the server).
    pub attempts: u32,
    /// First backoff delay; doubled after each failed attempt.
    pub backoff: Duration,
}

impl HttpTransport {
    /// A transport for the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Result<Self> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("gridsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(HttpTransport {
            base: base_url.trim_end_matches('/').to_string(),
            client,
            attempts: 4,
            backoff: Duration::from_millis(250),
        })
    }

    /// Sends with retries; `wait_when_limited` also rides out a `429` (a device's request
    /// rate during sync), which enrolment does not: a refused enrolment is the person's to
    /// retry, not the app's to hammer.
    fn send(
        &self,
        wait_when_limited: bool,
        build: impl Fn() -> reqwest::blocking::RequestBuilder,
    ) -> Result<Vec<u8>> {
        self.exchange(wait_when_limited, build, |_| false)
            .map(|a| a.body)
    }

    /// Like [`HttpTransport::send`], returning the status and headers too; an answer with
    /// a status `keep` accepts comes back as it is instead of as an error.
    pub(crate) fn exchange(
        &self,
        wait_when_limited: bool,
        build: impl Fn() -> reqwest::blocking::RequestBuilder,
        keep: impl Fn(u16) -> bool,
    ) -> Result<Answer> {
        let mut delay = self.backoff;
        let mut last = String::new();
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(delay);
                delay *= 2;
            }
            match build().send() {
                Ok(mut resp) => {
                    let status = resp.status();
                    // Read at most the protocol's body limit: whatever answers (a proxy, a
                    // captive portal) cannot make the phone hold more in memory.
                    let too_large = |n: u64| {
                        Error::Protocol(format!(
                            "the answer of {n} bytes or more exceeds the limit of {MAX_BODY_BYTES} bytes"
                        ))
                    };
                    if let Some(n) = resp.content_length().filter(|n| *n > MAX_BODY_BYTES as u64) {
                        return Err(too_large(n));
                    }
                    let mut body = Vec::new();
                    if let Err(e) = std::io::Read::take(&mut resp, MAX_BODY_BYTES as u64 + 1)
                        .read_to_end(&mut body)
                    {
                        last = e.to_string();
                        continue;
                    }
                    if body.len() > MAX_BODY_BYTES {
                        return Err(too_large(body.len() as u64));
                    }
                    if status.is_success() || keep(status.as_u16()) {
                        return Ok(Answer {
                            status: status.as_u16(),
                            headers: resp.headers().clone(),
                            body,
                        });
                    }
                    let (code, message) = error_body(&body);
                    if status.is_server_error() && status.as_u16() != 501 && status.as_u16() != 507
                    {
                        last = format!("{status} {code}: {message}");
                        continue;
                    }
                    // Rate-limited: wait as long as the server asks (a few seconds at most,
                    // so a sync never stalls long), then try again.
                    if wait_when_limited
                        && status.as_u16() == 429
                        && attempt + 1 < self.attempts.max(1)
                    {
                        let wait = resp
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map_or(delay, Duration::from_secs)
                            .min(Duration::from_secs(5));
                        std::thread::sleep(wait.saturating_sub(delay));
                        last = format!("{status} {code}: {message}");
                        continue;
                    }
                    return Err(Error::Server {
                        status: status.as_u16(),
                        code,
                        message,
                    });
                }
                Err(e) => {
                    last = e.to_string();
                }
            }
        }
        Err(Error::Transport(format!(
            "gave up after {} attempts: {last}",
            self.attempts
        )))
    }

    fn attachment_url(&self, sha: &str) -> Result<String> {
        if !is_sha256_hex(sha) {
            return Err(Error::Invalid(crate::validate::Invalid::new(
                "sha256",
                "is not a SHA-256 in 64 lowercase hex digits",
            )));
        }
        Ok(format!("{}/v1/attachments/{sha}", self.base))
    }
}

/// An answer's status, headers and body.
#[derive(Debug)]
pub(crate) struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn number(&self, name: &str) -> Result<Option<u64>> {
        match self.headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| Error::Protocol(format!("header {name} is not a number"))),
        }
    }

    /// The upload state in the headers (`Upload-Offset`, `Upload-Length`,
    /// `Upload-Complete`).
    fn upload_state(&self) -> Result<UploadState> {
        let offset = self.number("upload-offset")?.ok_or_else(|| {
            Error::Protocol(format!("answer {} without Upload-Offset", self.status))
        })?;
        let complete = self
            .headers
            .get("upload-complete")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "?1");
        Ok(UploadState {
            offset,
            length: self.number("upload-length")?,
            complete,
            discarded: false,
        })
    }
}

impl Transport for HttpTransport {
    fn sync(&self, auth: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        self.sync_at(auth, PROTOCOL_VERSION, body)
    }

    fn sync_at(&self, auth: &str, version: u16, body: Vec<u8>) -> Result<Vec<u8>> {
        let url = format!("{}/v1/sync", self.base);
        self.send(true, || {
            self.client
                .post(&url)
                .header("authorization", auth)
                .header("content-type", CONTENT_TYPE)
                .header(PROTOCOL_HEADER, version.to_string())
                .body(body.clone())
        })
    }

    fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse> {
        let url = format!("{}/v1/enroll", self.base);
        let body = serde_json::to_vec(req).map_err(|e| Error::Protocol(e.to_string()))?;
        let answer = self.send(false, || {
            self.client
                .post(&url)
                .header("content-type", "application/json")
                .header(PROTOCOL_HEADER, CALLS_PROTOCOL_VERSION.to_string())
                .body(body.clone())
        })?;
        serde_json::from_slice(&answer).map_err(|e| Error::Protocol(format!("enrol answer: {e}")))
    }

    fn rotate(&self, auth: &str) -> Result<RotateResponse> {
        let url = format!("{}/v1/device/rotate", self.base);
        let answer = self.send(true, || {
            self.client
                .post(&url)
                .header("authorization", auth)
                .header(PROTOCOL_HEADER, CALLS_PROTOCOL_VERSION.to_string())
        })?;
        serde_json::from_slice(&answer).map_err(|e| Error::Protocol(format!("rotate answer: {e}")))
    }

    fn scale_thresholds(&self, auth: &str) -> Result<Option<ScaleThresholdsResponse>> {
        let url = format!("{}/v1/scale-thresholds", self.base);
        let a = self.exchange(
            true,
            || {
                self.client
                    .get(&url)
                    .header("authorization", auth)
                    .header(PROTOCOL_HEADER, CALLS_PROTOCOL_VERSION.to_string())
            },
            // A server older than the call has no such route.
            |s| s == 404,
        )?;
        if a.status == 404 {
            return Ok(None);
        }
        if a.body.len() > MAX_SCALE_THRESHOLDS_BYTES {
            return Err(Error::Protocol(format!(
                "the scale thresholds answer of {} bytes exceeds the limit of {MAX_SCALE_THRESHOLDS_BYTES} bytes",
                a.body.len()
            )));
        }
        serde_json::from_slice(&a.body)
            .map(Some)
            .map_err(|e| Error::Protocol(format!("scale thresholds answer: {e}")))
    }

    fn attachment_state(&self, auth: &str, sha256: &str) -> Result<Option<UploadState>> {
        let url = self.attachment_url(sha256)?;
        let a = self.exchange(
            true,
            || {
                self.client
                    .head(&url)
                    .header("authorization", auth)
                    .header(PROTOCOL_HEADER, CALLS_PROTOCOL_VERSION.to_string())
            },
            |s| s == 404,
        )?;
        if a.status == 404 {
            return Ok(None);
        }
        a.upload_state().map(Some)
    }

    fn attachment_append(
        &self,
        auth: &str,
        r: &AttachmentRef,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadState> {
        let url = self.attachment_url(&r.sha256)?;
        let a = self.exchange(
            true,
            || {
                self.client
                    .patch(&url)
                    .header("authorization", auth)
                    .header(PROTOCOL_HEADER, CALLS_PROTOCOL_VERSION.to_string())
                    .header("upload-offset", offset.to_string())
                    .header("upload-length", r.size.to_string())
                    .header("attachment-type", &r.mime)
                    .header("content-type", "application/offset+octet-stream")
                    .body(bytes.to_vec())
            },
            |s| s == 409 || s == 422,
        )?;
        match a.status {
            422 => Ok(UploadState {
                offset: 0,
                length: Some(r.size),
                complete: false,
                discarded: true,
            }),
            _ => a.upload_state(),
        }
    }

    fn attachment_read(&self, auth: &str, sha256: &str, offset: u64, max: u64) -> Result<Vec<u8>> {
        let url = self.attachment_url(sha256)?;
        let last = offset.saturating_add(max.max(1)) - 1;
        let a = self.exchange(
            true,
            || {
                self.client
                    .get(&url)
                    .header("authorization", auth)
                    .header(PROTOCOL_HEADER, CALLS_PROTOCOL_VERSION.to_string())
                    .header("range", format!("bytes={offset}-{last}"))
            },
            |_| false,
        )?;
        let mut body = a.body;
        if a.status == 200 {
            // The server sent everything: keep the part asked for.
            let from = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(body.len());
            body.drain(..from);
        }
        body.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        Ok(body)
    }
}

/// The code and message of an error answer's body. A body that is not an [`ErrorBody`] (a
/// proxy's page, an empty body) gives [`ErrorCode::Unknown`] and the start of its text.
fn error_body(body: &[u8]) -> (ErrorCode, String) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.error, e.message),
        Err(_) => (
            ErrorCode::Unknown,
            String::from_utf8_lossy(body).chars().take(300).collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_their_typed_code() {
        assert_eq!(
            error_body(br#"{"error":"device_revoked","message":"revoked at 5 ms: lost"}"#),
            (
                ErrorCode::DeviceRevoked,
                "revoked at 5 ms: lost".to_string()
            )
        );
        assert_eq!(
            error_body(br#"{"error":"from_the_future","message":"m"}"#),
            (ErrorCode::Unknown, "m".to_string())
        );
        // Not an error body: a proxy's page, an empty body, a JSON body of another shape.
        assert_eq!(
            error_body(b"<html>502 Bad Gateway</html>"),
            (
                ErrorCode::Unknown,
                "<html>502 Bad Gateway</html>".to_string()
            )
        );
        assert_eq!(error_body(b""), (ErrorCode::Unknown, String::new()));
        let long = "x".repeat(1000);
        assert_eq!(error_body(long.as_bytes()).1.len(), 300);
        assert_eq!(
            error_body(br#"{"error":7,"message":"m"}"#).0,
            ErrorCode::Unknown
        );
    }
}
