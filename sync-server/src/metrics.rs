//! Counters for operators, served as Prometheus text (`GET /metrics`, loopback or
//! `--metrics-allow` addresses only). Fixed label sets and atomics: recording a request
//! takes no lock and no allocation, and no client can create new series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use gridsync_core::sync::protocol::ErrorCode;

/// Routes with their own series; anything else counts as `other`.
pub const ROUTES: [&str; 7] = [
    "/healthz",
    "/v1/enroll",
    "/v1/sync",
    "/v1/device/rotate",
    "/v1/enrolment-codes",
    "/metrics",
    "other",
];

/// Statuses with their own series; anything else counts as `other`.
const STATUSES: [u16; 16] = [
    200, 400, 401, 403, 404, 405, 408, 411, 413, 415, 422, 429, 431, 500, 503, 0,
];

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Reject codes of pushed records (`RejectCode::as_str`); any other counts as `other`.
const REJECT_CODES: [&str; 7] = [
    "invalid",
    "forbidden",
    "workflow",
    "missing_deps",
    "bad_document",
    "too_large",
    "other",
];

/// Codes of refused authentications (`ErrorCode::as_str`); any other counts as `other`.
const AUTH_CODES: [&str; 6] = [
    "missing_credentials",
    "bad_credentials",
    "device_revoked",
    "person_inactive",
    "invalid_code",
    "other",
];

/// Limits that refuse requests (see `docs/limits.md`).
pub const LIMITS: [&str; 5] = [
    "device_rate",
    "enrol_address",
    "enrol_range",
    "metrics_forbidden",
    "attachment_quota",
];

/// Why a connection was closed at once.
pub const CONN_REFUSALS: [&str; 3] = ["total", "per_address", "evicted_unused"];

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

fn index(list: &[&str], name: &str) -> usize {
    list.iter()
        .position(|x| *x == name)
        .unwrap_or(list.len() - 1)
}

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    latency: [[AtomicU64; LATENCY_BUCKETS.len()]; ROUTES.len()],
    latency_sum_us: [AtomicU64; ROUTES.len()],
    latency_count: [AtomicU64; ROUTES.len()],
    push_accepted: AtomicU64,
    push_rejected: [AtomicU64; REJECT_CODES.len()],
    push_cancelled: AtomicU64,
    want_full_cut: AtomicU64,
    auth_failures: [AtomicU64; AUTH_CODES.len()],
    limited: [AtomicU64; LIMITS.len()],
    conns_open: AtomicI64,
    conns_accepted: AtomicU64,
    conns_refused: [AtomicU64; CONN_REFUSALS.len()],
    header_timeouts: AtomicU64,
    accept_errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| counters()),
            latency: std::array::from_fn(|_| counters()),
            latency_sum_us: counters(),
            latency_count: counters(),
            push_accepted: AtomicU64::new(0),
            push_rejected: counters(),
            push_cancelled: AtomicU64::new(0),
            want_full_cut: AtomicU64::new(0),
            auth_failures: counters(),
            limited: counters(),
            conns_open: AtomicI64::new(0),
            conns_accepted: AtomicU64::new(0),
            conns_refused: counters(),
            header_timeouts: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// One answered request: its route (a [`ROUTES`] entry), status and duration.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let r = index(&ROUTES, route);
        let s = STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or(STATUSES.len() - 1);
        self.requests[r][s].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(b) = LATENCY_BUCKETS.iter().position(|le| secs <= *le) {
            self.latency[r][b].fetch_add(1, Relaxed);
        }
        self.latency_sum_us[r].fetch_add(took.as_micros() as u64, Relaxed);
        self.latency_count[r].fetch_add(1, Relaxed);
    }

    /// A pushed record accepted.
    pub fn push_accepted(&self) {
        self.push_accepted.fetch_add(1, Relaxed);
    }

    /// A pushed record rejected with `code` (`RejectCode::as_str`).
    pub fn push_rejected(&self, code: &str) {
        self.push_rejected[index(&REJECT_CODES, code)].fetch_add(1, Relaxed);
    }

    /// A push rolled back because its request ran out of time.
    pub fn push_cancelled(&self) {
        self.push_cancelled.fetch_add(1, Relaxed);
    }

    /// A `want_full` list cut by the page's byte budget.
    pub fn want_full_cut(&self) {
        self.want_full_cut.fetch_add(1, Relaxed);
    }

    /// A refused authentication with its answer code.
    pub fn auth_failure(&self, code: ErrorCode) {
        self.auth_failures[index(&AUTH_CODES, code.as_str())].fetch_add(1, Relaxed);
    }

    /// A request refused by a limit (a [`LIMITS`] entry).
    pub fn limited(&self, limit: &str) {
        self.limited[index(&LIMITS, limit)].fetch_add(1, Relaxed);
    }

    /// A connection accepted and kept.
    pub fn conn_opened(&self) {
        self.conns_accepted.fetch_add(1, Relaxed);
        self.conns_open.fetch_add(1, Relaxed);
    }

    /// A kept connection closed.
    pub fn conn_closed(&self) {
        self.conns_open.fetch_sub(1, Relaxed);
    }

    /// A connection closed at once by a cap (a [`CONN_REFUSALS`] entry).
    pub fn conn_refused(&self, why: &str) {
        self.conns_refused[index(&CONN_REFUSALS, why)].fetch_add(1, Relaxed);
    }

    /// A connection closed because its request head did not arrive in time.
    pub fn header_timeout(&self) {
        self.header_timeouts.fetch_add(1, Relaxed);
    }

    /// `accept` failed (out of file descriptors, memory, ...).
    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> i64 {
        self.conns_open.load(Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(16 * 1024);
        let w = &mut o;
        header(
            w,
            "gridsync_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status (status 0: any other).",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            for (s, status) in STATUSES.iter().enumerate() {
                let n = self.requests[r][s].load(Relaxed);
                if n > 0 {
                    let st = if *status == 0 {
                        "other".to_string()
                    } else {
                        status.to_string()
                    };
                    let _ = writeln!(
                        w,
                        "gridsync_http_requests_total{{route=\"{route}\",status=\"{st}\"}} {n}"
                    );
                }
            }
        }
        header(
            w,
            "gridsync_http_request_duration_seconds",
            "histogram",
            "Time from a request's head to its answer, by route.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            let count = self.latency_count[r].load(Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (b, le) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += self.latency[r][b].load(Relaxed);
                let _ = writeln!(
                    w,
                    "gridsync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                w,
                "gridsync_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let sum = self.latency_sum_us[r].load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                w,
                "gridsync_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                w,
                "gridsync_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        header(
            w,
            "gridsync_push_records_total",
            "counter",
            "Pushed records by outcome: accepted, or the reject code.",
        );
        let _ = writeln!(
            w,
            "gridsync_push_records_total{{outcome=\"accepted\"}} {}",
            self.push_accepted.load(Relaxed)
        );
        for (i, code) in REJECT_CODES.iter().enumerate() {
            let _ = writeln!(
                w,
                "gridsync_push_records_total{{outcome=\"{code}\"}} {}",
                self.push_rejected[i].load(Relaxed)
            );
        }
        simple(
            w,
            "gridsync_push_cancelled_total",
            "counter",
            "Pushes rolled back because their request ran out of time (nothing stored).",
            self.push_cancelled.load(Relaxed) as i64,
        );
        simple(
            w,
            "gridsync_want_full_cut_total",
            "counter",
            "Requests whose want_full list was cut by the page's byte budget.",
            self.want_full_cut.load(Relaxed) as i64,
        );
        header(
            w,
            "gridsync_auth_failures_total",
            "counter",
            "Refused authentications by answer code.",
        );
        for (i, code) in AUTH_CODES.iter().enumerate() {
            let _ = writeln!(
                w,
                "gridsync_auth_failures_total{{code=\"{code}\"}} {}",
                self.auth_failures[i].load(Relaxed)
            );
        }
        header(
            w,
            "gridsync_rate_limited_total",
            "counter",
            "Requests refused by a limit (docs/limits.md).",
        );
        for (i, limit) in LIMITS.iter().enumerate() {
            let _ = writeln!(
                w,
                "gridsync_rate_limited_total{{limit=\"{limit}\"}} {}",
                self.limited[i].load(Relaxed)
            );
        }
        simple(
            w,
            "gridsync_open_connections",
            "gauge",
            "HTTP connections open now.",
            self.conns_open.load(Relaxed),
        );
        simple(
            w,
            "gridsync_connections_accepted_total",
            "counter",
            "Connections accepted and served.",
            self.conns_accepted.load(Relaxed) as i64,
        );
        header(
            w,
            "gridsync_connections_refused_total",
            "counter",
            "Connections closed by a cap: at once (total, per_address), or an unused one closed to make room (evicted_unused).",
        );
        for (i, why) in CONN_REFUSALS.iter().enumerate() {
            let _ = writeln!(
                w,
                "gridsync_connections_refused_total{{cap=\"{why}\"}} {}",
                self.conns_refused[i].load(Relaxed)
            );
        }
        simple(
            w,
            "gridsync_header_timeouts_total",
            "counter",
            "Connections closed because a request head did not arrive in time.",
            self.header_timeouts.load(Relaxed) as i64,
        );
        simple(
            w,
            "gridsync_accept_errors_total",
            "counter",
            "Failed accepts (out of file descriptors or memory); the server pauses and goes on.",
            self.accept_errors.load(Relaxed) as i64,
        );
        o
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

fn simple(w: &mut String, name: &str, kind: &str, help: &str, v: i64) {
    header(w, name, kind, help);
    let _ = writeln!(w, "{name} {v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.request("/v1/sync", 200, Duration::from_millis(30));
        m.request("/v1/sync", 429, Duration::from_millis(1));
        m.request("/nope", 418, Duration::from_secs(200));
        m.push_rejected("forbidden");
        m.push_rejected("something_new");
        m.auth_failure(ErrorCode::BadCredentials);
        m.auth_failure(ErrorCode::InvalidCode);
        m.auth_failure(ErrorCode::RateLimited);
        m.limited("device_rate");
        m.limited("attachment_quota");
        m.conn_opened();
        let t = m.render();
        assert!(t.contains("gridsync_http_requests_total{route=\"/v1/sync\",status=\"200\"} 1"));
        assert!(t.contains("gridsync_http_requests_total{route=\"/v1/sync\",status=\"429\"} 1"));
        assert!(t.contains("gridsync_http_requests_total{route=\"other\",status=\"other\"} 1"));
        assert!(t.contains(
            "gridsync_http_request_duration_seconds_bucket{route=\"/v1/sync\",le=\"0.025\"} 1"
        ));
        assert!(t.contains(
            "gridsync_http_request_duration_seconds_bucket{route=\"/v1/sync\",le=\"0.05\"} 2"
        ));
        assert!(t.contains(
            "gridsync_http_request_duration_seconds_bucket{route=\"other\",le=\"120\"} 0"
        ));
        assert!(t.contains(
            "gridsync_http_request_duration_seconds_bucket{route=\"other\",le=\"+Inf\"} 1"
        ));
        assert!(t.contains("gridsync_push_records_total{outcome=\"forbidden\"} 1"));
        assert!(t.contains("gridsync_push_records_total{outcome=\"other\"} 1"));
        assert!(t.contains("gridsync_auth_failures_total{code=\"bad_credentials\"} 1"));
        assert!(t.contains("gridsync_auth_failures_total{code=\"invalid_code\"} 1"));
        assert!(t.contains("gridsync_auth_failures_total{code=\"other\"} 1"));
        assert!(t.contains("gridsync_rate_limited_total{limit=\"device_rate\"} 1"));
        // Each limit has its own series (an attachment quota refusal once counted as
        // `metrics_forbidden`, the last entry).
        assert!(t.contains("gridsync_rate_limited_total{limit=\"attachment_quota\"} 1"));
        assert!(t.contains("gridsync_rate_limited_total{limit=\"metrics_forbidden\"} 0"));
        assert!(t.contains("gridsync_open_connections 1"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
