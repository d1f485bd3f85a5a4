//! The accept loop: HTTP/1.1 connections served by hyper with a header-read timeout, a
//! cap on open connections in total and per client address, and a pause (never a spin,
//! never an exit) when `accept` fails because the process is out of file descriptors.
//!
//! When the total cap is reached, a new connection takes the place of the oldest one that
//! has not yet sent a whole request head (a half-open or slow connection); only when every
//! open connection has been used is the new one closed at once. So idle connections from
//! many addresses cannot keep phones (or a health check) out.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use gridsync_core::sync::protocol::{ErrorBody, ErrorCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;

use crate::limits::LogGate;
use crate::metrics::Metrics;

/// Open connections the server keeps at most (township server default).
pub const MAX_CONNECTIONS: usize = 4096;
/// Open connections one client address keeps at most.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
/// Longest wait for a request head, on a new connection and between requests of a kept-alive
/// one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause after `accept` fails for want of resources.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Connection limits of a server.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Open connections at most.
    pub max_total: usize,
    /// Open connections per client address at most (trusted proxies are exempt).
    pub max_per_address: usize,
    /// Longest wait for a request head.
    pub header_read_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_total: MAX_CONNECTIONS,
            max_per_address: MAX_CONNECTIONS_PER_ADDRESS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

static REFUSED_LOG: LogGate = LogGate::new(5);
static ACCEPT_LOG: LogGate = LogGate::new(1);

/// The answer to a connection closed at once: `status` and an [`ErrorBody`]
/// `too_many_connections`, like every other error answer.
fn refused_answer(status: &str, message: &str) -> Vec<u8> {
    let body = serde_json::to_string(&ErrorBody {
        error: ErrorCode::TooManyConnections,
        message: message.to_string(),
    })
    .unwrap_or_default();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

static REFUSED_TOTAL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    refused_answer(
        "503 Service Unavailable",
        "the server's connection limit is reached",
    )
});
static REFUSED_ADDRESS: LazyLock<Vec<u8>> = LazyLock::new(|| {
    refused_answer(
        "429 Too Many Requests",
        "too many open connections from your address",
    )
});

/// Open connections, in total and per address, and the ones not yet used (oldest first).
#[derive(Debug, Default)]
struct Tracker {
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    fresh: Mutex<VecDeque<Weak<ConnState>>>,
    idle: tokio::sync::Notify,
}

/// What the accept loop knows of a kept connection.
#[derive(Debug, Default)]
struct ConnState {
    /// A request head has arrived (or the connection was already chosen to make room).
    used: AtomicBool,
    /// Wakes the connection's task to close it.
    evict: tokio::sync::Notify,
}

/// A kept connection; dropping it gives its place back.
#[derive(Debug)]
struct Slot {
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    ip: IpAddr,
    state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut m = self
                .tracker
                .per_address
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
        self.metrics.conn_closed();
        if self.tracker.total.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.tracker.idle.notify_waiters();
        }
    }
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Total,
    PerAddress,
}

impl Tracker {
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &ConnLimits,
        exempt: bool,
        metrics: &Arc<Metrics>,
    ) -> Result<Slot, Refusal> {
        let mut m = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        if !exempt && m.get(&ip).copied().unwrap_or(0) >= limits.max_per_address {
            return Err(Refusal::PerAddress);
        }
        if self.total.load(Ordering::Acquire) >= limits.max_total && !self.evict_oldest_unused() {
            return Err(Refusal::Total);
        }
        *m.entry(ip).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        metrics.conn_opened();
        let state = Arc::new(ConnState::default());
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        if fresh.len() >= 2 * limits.max_total.max(16) {
            fresh.retain(|w| w.upgrade().is_some_and(|c| !c.used.load(Ordering::Acquire)));
        }
        fresh.push_back(Arc::downgrade(&state));
        Ok(Slot {
            tracker: self.clone(),
            metrics: metrics.clone(),
            ip,
            state,
        })
    }

    /// Tells the oldest connection that has not sent a request head to close; `false` when
    /// every open connection has been used.
    fn evict_oldest_unused(&self) -> bool {
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(w) = fresh.pop_front() {
            if let Some(c) = w.upgrade() {
                if !c.used.swap(true, Ordering::AcqRel) {
                    c.evict.notify_one();
                    return true;
                }
            }
        }
        false
    }
}

/// Whether an `accept` error concerns only the connection being accepted (go on at once);
/// anything else (out of file descriptors, memory, buffers) calls for a pause.
fn per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    )
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets connections finish their
/// requests and close.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    (limits, trusted, metrics): (
        ConnLimits,
        Vec<std::net::IpAddr>,
        Arc<crate::metrics::Metrics>,
    ),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tracker = Arc::new(Tracker::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) if per_connection_error(&e) => continue,
            Err(e) => {
                metrics.accept_error();
                if let Some(skipped) = ACCEPT_LOG.pass() {
                    tracing::error!(
                        skipped,
                        "accept failed: {e}; pausing {} ms and serving on",
                        ACCEPT_ERROR_PAUSE.as_millis()
                    );
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let ip = peer.ip().to_canonical();
        let slot = match tracker.admit(ip, &limits, trusted.contains(&ip), &metrics) {
            Ok(s) => s,
            Err(why) => {
                let (name, answer) = match why {
                    Refusal::Total => ("total", REFUSED_TOTAL.as_slice()),
                    Refusal::PerAddress => ("per_address", REFUSED_ADDRESS.as_slice()),
                };
                metrics.conn_refused(name);
                if let Some(skipped) = REFUSED_LOG.pass() {
                    tracing::info!(
                        peer = %ip,
                        cap = name,
                        max_total = limits.max_total,
                        max_per_address = limits.max_per_address,
                        skipped,
                        "connection closed at once: connection limit"
                    );
                }
                // A best-effort answer on the fresh socket's empty send buffer, then close.
                let mut stream = stream;
                let _ = stream.try_write(answer);
                let _ = stream.shutdown().await;
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let header_timeout = limits.header_read_timeout;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let conn_state = slot.state.clone();
            let _slot = slot;
            let used = conn_state.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                used.used.store(true, Ordering::Release);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                tower::ServiceExt::oneshot(app.clone(), req)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
                _ = conn_state.evict.notified() => {
                    metrics.conn_refused("evicted_unused");
                    tracing::debug!(%peer, "unused connection closed to make room");
                    return;
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    metrics.header_timeout();
                    tracing::debug!(%peer, "connection closed: no request head in time");
                } else {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Requests in flight finish; idle connections close at once.
    loop {
        let idle = tracker.idle.notified();
        if tracker.total.load(Ordering::Acquire) == 0 {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), idle).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_answers_have_their_declared_length() {
        for (a, status) in [(&REFUSED_TOTAL, "503"), (&REFUSED_ADDRESS, "429")] {
            let text = std::str::from_utf8(a).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let e: ErrorBody = serde_json::from_str(body).unwrap();
            assert_eq!(e.error, ErrorCode::TooManyConnections);
            assert!(e.message.contains("connection"), "{}", e.message);
        }
    }
}
