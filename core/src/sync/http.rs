//! HTTP transport on reqwest (rustls): timeouts, and retries with backoff on network errors.

use std::io::Read;
use std::time::Duration;

use super::engine::Transport;
use super::protocol::{
    EnrollRequest, EnrollResponse, ErrorBody, RotateResponse, CONTENT_TYPE, MAX_BODY_BYTES,
    PROTOCOL_HEADER, PROTOCOL_VERSION,
};
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
                    if status.is_success() {
                        return Ok(body);
                    }
                    let message = serde_json::from_slice::<ErrorBody>(&body)
                        .map(|e| format!("{}: {}", e.error, e.message))
                        .unwrap_or_else(|_| {
                            String::from_utf8_lossy(&body).chars().take(300).collect()
                        });
                    if status.is_server_error() && status.as_u16() != 501 {
                        last = format!("{status}: {message}");
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
                        last = format!("{status}: {message}");
                        continue;
                    }
                    return Err(Error::Server {
                        status: status.as_u16(),
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
}

impl Transport for HttpTransport {
    fn sync(&self, auth: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        let url = format!("{}/v1/sync", self.base);
        self.send(true, || {
            self.client
                .post(&url)
                .header("authorization", auth)
                .header("content-type", CONTENT_TYPE)
                .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
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
                .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
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
                .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
        })?;
        serde_json::from_slice(&answer).map_err(|e| Error::Protocol(format!("rotate answer: {e}")))
    }
}
