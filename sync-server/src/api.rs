//! The HTTP API: enrolment, sync, credential rotation, enrolment codes, health, metrics.
//! Every request is authenticated (except enrolment, which is rate-limited), every body is
//! bounded, every device is rate-limited, and every record is authorized against what is
//! stored. The limits are listed in `docs/limits.md`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};
use gridsync_core::model::{Person, Role};
use gridsync_core::sync::bare;
use gridsync_core::sync::protocol::{
    self, EnrollRequest, EnrollResponse, ErrorBody, ErrorCode, RotateResponse, SyncRequest,
    SyncResponse, CONTENT_TYPE, OLDEST_PROTOCOL_VERSION, PROTOCOL_HEADER, PROTOCOL_VERSION,
};
use serde::Deserialize;

use crate::auth::{self, EnrolLimiter, EnrolRefusal};
use crate::conn::ConnLimits;
use crate::limits::{AddrRange, LogGate, RateLimiter};
use crate::metrics::Metrics;
use crate::scope::ScopeCache;
use crate::storage::{
    AuditEntry, Author, Device, FeedRead, PushDecision, Storage, StorageError, StoredRecord,
};

/// Largest JSON body (enrolment, rotation, codes).
pub const MAX_JSON_BODY: usize = 16 * 1024;

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    /// The storage backend.
    pub storage: Arc<dyn Storage>,
    /// Scope cache.
    pub scopes: ScopeCache,
    /// Enrolment rate limiter (per client address and per address range).
    pub limiter: EnrolLimiter,
    /// Request rate limiter per authenticated device.
    pub device_limiter: RateLimiter<String>,
    /// Longest time to receive a request body (slow clients get 408).
    pub body_timeout: Duration,
    /// Longest time for a whole request; a push still being judged then is rolled back.
    pub request_timeout: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for the enrolment limit;
    /// exempt from the per-address connection cap).
    pub trusted_proxies: Vec<IpAddr>,
    /// Connection limits (total, per address, header-read timeout).
    pub connections: ConnLimits,
    /// Addresses besides loopback that may read `/metrics`.
    pub metrics_allow: Vec<AddrRange>,
    /// Counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Largest attachment and each device's quota of attachment bytes.
    pub attachment_limits: crate::storage::AttachmentLimits,
    /// The grid tree the duplicate check after a push uses.
    pub grid_nodes: crate::duplicates::NodeCache,
}

impl AppState {
    /// State over a storage backend with default limits.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        AppState {
            storage,
            scopes: ScopeCache::default(),
            limiter: EnrolLimiter::default(),
            device_limiter: RateLimiter::new(
                crate::limits::DEVICE_RATE_PER_SEC,
                crate::limits::DEVICE_BURST,
                crate::limits::MAX_KEYS,
            ),
            body_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(120),
            trusted_proxies: Vec::new(),
            connections: ConnLimits::default(),
            metrics_allow: Vec::new(),
            metrics: Arc::new(Metrics::default()),
            attachment_limits: crate::storage::AttachmentLimits::default(),
            grid_nodes: crate::duplicates::NodeCache::default(),
        }
    }
}

/// When a request reached the server (set by the router's outermost layer).
#[derive(Debug, Clone, Copy)]
pub struct RequestStart(pub Instant);

/// Log gates: security events are logged one line each, up to a few a second per kind.
static AUTH_LOG: LogGate = LogGate::new(20);
static LIMIT_LOG: LogGate = LogGate::new(20);
static REJECT_LOG: LogGate = LogGate::new(2);
static RESET_LOG: LogGate = LogGate::new(5);

/// The address a request comes from: the peer, or, when the peer is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not itself a trusted proxy (proxies append
/// the address they saw, so entries left of it are the client's own claims and are not
/// believed). A malformed entry counts as the proxy itself.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut ip = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return ip;
        };
        for part in text.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(a) if trusted.contains(&a) => ip = a,
                Ok(a) => return a,
                Err(_) => return ip,
            }
        }
    }
    ip
}

/// An error answer: status, stable code, message. Its body is an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The stable error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        if let StorageError::Cancelled = e {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TimedOut,
                "the request ran past the server's time limit for one request; nothing of it was stored; try again",
            );
        }
        tracing::error!("storage error: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Storage,
            "the server's database failed; try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Builds the router: these routes and `more` (the attachment endpoints, from `lib.rs`),
/// under the same limits, timeouts and accounting.
pub fn router(state: Arc<AppState>, more: Router<Arc<AppState>>) -> Router {
    let (body_timeout, request_timeout) = (state.body_timeout, state.request_timeout);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/enroll", post(enroll))
        .route("/v1/sync", post(sync))
        .route("/v1/device/rotate", post(rotate))
        .route("/v1/enrolment-codes", post(issue_code))
        .route("/v1/scale-thresholds", get(scale_thresholds))
        .route("/metrics", get(metrics))
        .merge(more)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Outermost layer: notes when the request arrived (its deadline counts from there) and
/// counts it by route, status and time taken.
async fn track(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    req.extensions_mut().insert(RequestStart(start));
    let resp = next.run(req).await;
    st.metrics.request(
        route.as_deref().unwrap_or("other"),
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

/// `GET /metrics`: Prometheus text, only for loopback peers and `--metrics-allow`
/// addresses. A request forwarded by a proxy counts as coming from the address the proxy
/// names if the proxy is trusted, and is refused if it is not (an untrusted proxy on
/// loopback would otherwise hand the metrics to anyone).
async fn metrics(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let peer = addr.ip().to_canonical();
    let forwarded = headers.contains_key("x-forwarded-for");
    let trusted_peer = st.trusted_proxies.contains(&peer);
    let client = client_ip(peer, &headers, &st.trusted_proxies).to_canonical();
    let allowed = (!forwarded || trusted_peer)
        && !headers.contains_key("forwarded")
        && (client.is_loopback() || st.metrics_allow.iter().any(|r| r.contains(client)));
    if !allowed {
        st.metrics.limited("metrics_forbidden");
        if let Some(skipped) = LIMIT_LOG.pass() {
            tracing::info!(peer = %peer, client = %client, skipped, "metrics refused: not loopback or --metrics-allow");
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::MetricsForbidden,
            "metrics are served only to loopback and to addresses given with --metrics-allow",
        ));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response())
}

async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<&'static str> {
    let s = st.storage.clone();
    blocking(move || s.epoch().map_err(ApiError::from)).await?;
    Ok("ok")
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("request task failed: {e}");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the request failed inside the server",
            ))
        }
    }
}

/// Reads a request body of at most `limit` bytes: `413 too_large` past it, `408
/// body_timeout` when it arrives too slowly (the body timeout layer), `400 body_read` when
/// it breaks off. The failure is told by its type, not by its text.
pub(crate) async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    use futures_util::StreamExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("request body exceeds {limit} bytes"),
        )
    };
    // A declared length past the limit is refused before anything is read.
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    if usize::try_from(declared).ok().is_none_or(|n| n > limit) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(bytes) => {
                if buf.len() + bytes.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&bytes);
            }
            Err(e) if is_body_timeout(&e) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::BodyTimeout,
                    "the request body arrived too slowly",
                ))
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BodyRead,
                    format!("could not read the request body: {e}"),
                ))
            }
        }
    }
    Ok(Bytes::from(buf))
}

/// Whether a body error is the body timeout layer's ([`tower_http::timeout::TimeoutError`]),
/// anywhere in its chain of sources.
fn is_body_timeout(e: &axum::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// The protocol version a request speaks (header [`PROTOCOL_HEADER`]), one this server
/// serves: [`OLDEST_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`].
fn check_protocol(headers: &HeaderMap) -> ApiResult<u16> {
    match headers.get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok()) {
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MissingProtocol,
            format!("send header {PROTOCOL_HEADER}: {PROTOCOL_VERSION}"),
        )),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(n) if (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&n) => Ok(n),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedProtocol,
                format!(
                    "protocol version {v} is not supported; this server speaks versions {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
                ),
            )),
        },
    }
}

/// Authenticates a device from its bearer credential, checked against the stored hashes.
fn authenticate(storage: &dyn Storage, headers: &HeaderMap) -> ApiResult<(Device, Person)> {
    let unauthorized =
        |code: ErrorCode, msg: String| ApiError::new(StatusCode::UNAUTHORIZED, code, msg);
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized(
                ErrorCode::MissingCredentials,
                "send Authorization: Bearer DEVICE.SECRET".into(),
            )
        })?;
    let (device_id, secret) = auth::parse_bearer(h).ok_or_else(|| {
        unauthorized(
            ErrorCode::BadCredentials,
            "malformed bearer credential".into(),
        )
    })?;
    // An unknown device and a wrong secret get the same answer; only a device that proves
    // its secret learns that, when and why it was revoked.
    let bad = || {
        unauthorized(
            ErrorCode::BadCredentials,
            "unknown device or wrong secret".into(),
        )
    };
    let device = storage.device(device_id)?;
    let hash = auth::hash_secret(secret);
    let Some(device) = device else {
        return Err(bad());
    };
    let current = auth::hashes_equal(&hash, &device.secret_hash);
    let pending = !current
        && device
            .pending_hash
            .as_deref()
            .is_some_and(|p| auth::hashes_equal(&hash, p));
    if !current && !pending {
        return Err(bad());
    }
    if let Some(at) = device.revoked_at_ms {
        return Err(unauthorized(
            ErrorCode::DeviceRevoked,
            format!(
                "this device was revoked at {at} ms: {}; enrol again with a new code",
                device.revoked_reason.clone().unwrap_or_default()
            ),
        ));
    }
    if pending {
        storage.promote_pending_secret(&device.id)?;
    }
    let person = storage.person(&device.person_id)?.ok_or_else(|| {
        unauthorized(
            ErrorCode::PersonInactive,
            "the person of this device is no longer active".into(),
        )
    })?;
    let now = gridsync_core::now_ms();
    if device.last_seen_ms.is_none_or(|t| now - t > 60_000) {
        storage.touch_device(&device.id, now)?;
    }
    Ok((device, person))
}

/// The device id a bearer credential claims, fit for a log line (never the secret).
fn claimed_device(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::parse_bearer)
        .map(|(d, _)| {
            if d.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                d.to_string()
            } else {
                "(malformed)".to_string()
            }
        })
        .unwrap_or_else(|| "(none)".to_string())
}

/// Authenticates a request and applies its device's rate limit. Refusals are counted and
/// logged (device id and client address, no secret).
pub(crate) fn authorize(
    st: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
) -> ApiResult<(Device, Person)> {
    let client = client_ip(peer, headers, &st.trusted_proxies);
    let (device, person) = match authenticate(st.storage.as_ref(), headers) {
        Ok(x) => x,
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED {
                st.metrics.auth_failure(e.code);
                if let Some(skipped) = AUTH_LOG.pass() {
                    tracing::info!(
                        device = %claimed_device(headers),
                        client = %client,
                        code = e.code.as_str(),
                        skipped,
                        "authentication failed"
                    );
                }
            }
            return Err(e);
        }
    };
    if let Err(wait) = st.device_limiter.take(&device.id) {
        st.metrics.limited("device_rate");
        let (rate, burst) = st.device_limiter.rate();
        if let Some(skipped) = LIMIT_LOG.pass() {
            tracing::info!(device = %device.id, client = %client, skipped, "request refused: device rate limit");
        }
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "device rate limit: more than {rate} requests a second (bursts of {burst}) from this device; retry in {} ms",
                wait.as_millis().max(1)
            ),
        )
        .retry_after(wait));
    }
    Ok((device, person))
}

async fn enroll(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<EnrollResponse>> {
    let client = client_ip(addr.ip(), &headers, &st.trusted_proxies);
    if let Err(which) = st.limiter.allow(client) {
        let (per_address, per_range) = st.limiter.limits();
        let (limit, code, message) = match which {
            EnrolRefusal::Address => (
                "enrol_address",
                ErrorCode::EnrolRateLimited,
                format!("enrolment limit per address: more than {per_address} attempts a minute from your address; wait a minute"),
            ),
            EnrolRefusal::Range => (
                "enrol_range",
                ErrorCode::EnrolRangeLimited,
                format!("enrolment limit per network: more than {per_range} attempts a minute from your address range; wait a minute"),
            ),
        };
        st.metrics.limited(limit);
        if let Some(skipped) = LIMIT_LOG.pass() {
            tracing::info!(client = %client, limit, skipped, "enrolment refused: rate limit");
        }
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            .retry_after(Duration::from_secs(60)));
    }
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    let req: EnrollRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedBody,
            format!("enrolment body: {e}"),
        )
    })?;
    if req.device_name.chars().count() > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Invalid,
            "device_name is longer than 100 characters",
        ));
    }
    let storage = st.storage.clone();
    let st2 = st.clone();
    blocking(move || {
        let secret = auth::new_secret();
        let device = Device {
            id: gridsync_core::new_id(),
            person_id: String::new(),
            name: if req.device_name.trim().is_empty() {
                "phone".into()
            } else {
                req.device_name.clone()
            },
            secret_hash: auth::hash_secret(&secret),
            pending_hash: None,
            created_at_ms: gridsync_core::now_ms(),
            last_seen_ms: None,
            revoked_at_ms: None,
            revoked_reason: None,
        };
        let code_hash = auth::hash_secret(&auth::normalize_code(&req.code));
        let person_id = storage
            .redeem_code(&code_hash, device.created_at_ms, &device)?
            .ok_or_else(|| {
                st2.metrics.auth_failure(ErrorCode::InvalidCode);
                if let Some(skipped) = AUTH_LOG.pass() {
                    tracing::info!(client = %client, skipped, "enrolment failed: unknown, used or expired code");
                }
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::InvalidCode,
                    "the enrolment code is unknown, used or expired",
                )
            })?;
        let person = storage.person(&person_id)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::PersonInactive,
                "the person of this code is no longer active",
            )
        })?;
        storage.audit(&AuditEntry {
            at_ms: device.created_at_ms,
            person_id: person.id.clone(),
            device_id: Some(device.id.clone()),
            record_id: None,
            kind: None,
            grid: None,
            action: "enrol".into(),
            detail: format!("device '{}' enrolled", device.name),
        })?;
        tracing::info!(device = %device.id, person = %person.id, "device enrolled");
        Ok(Json(EnrollResponse {
            device_id: device.id,
            secret,
            person,
            epoch: storage.epoch()?,
        }))
    })
    .await
}

async fn rotate(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Json<RotateResponse>> {
    check_protocol(&headers)?;
    let storage = st.storage.clone();
    blocking(move || {
        let (device, person) = authorize(&st, addr.ip(), &headers)?;
        let secret = auth::new_secret();
        storage.set_pending_secret(&device.id, &auth::hash_secret(&secret))?;
        storage.audit(&AuditEntry {
            at_ms: gridsync_core::now_ms(),
            person_id: person.id,
            device_id: Some(device.id),
            record_id: None,
            kind: None,
            grid: None,
            action: "rotate".into(),
            detail: "new secret issued; the old one works until the new one is used".into(),
        })?;
        Ok(Json(RotateResponse { secret }))
    })
    .await
}

/// `GET /v1/scale-thresholds`: the livestock scale thresholds of the device's league
/// (`crate::scale::thresholds_answer`), a few hundred bytes of JSON. Devices ask for it
/// when their reference data changes.
async fn scale_thresholds(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Json<gridsync_core::sync::protocol::ScaleThresholdsResponse>> {
    check_protocol(&headers)?;
    blocking(move || {
        let (_device, person) = authorize(&st, addr.ip(), &headers)?;
        let scope = st
            .scopes
            .scope(st.storage.as_ref(), &person.id)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::PersonInactive,
                    "person is not active",
                )
            })?;
        Ok(Json(crate::scale::thresholds_answer(&scope)))
    })
    .await
}

/// Request to issue an enrolment code (supervisors, county staff, administrators).
#[derive(Debug, Deserialize)]
pub struct IssueCodeRequest {
    /// Person to enrol.
    pub person_id: String,
    /// Lifetime in hours (1..=168).
    pub ttl_hours: Option<u32>,
}

pub use crate::admin::IssuedCode;

async fn issue_code(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<IssuedCode>> {
    check_protocol(&headers)?;
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    let storage = st.storage.clone();
    let st2 = st.clone();
    blocking(move || {
        let (device, issuer) = authorize(&st2, addr.ip(), &headers)?;
        let req: IssueCodeRequest = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::MalformedBody,
                format!("code request: {e}"),
            )
        })?;
        if !matches!(
            issuer.role,
            Role::Supervisor | Role::CountyReviewer | Role::Admin
        ) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "only supervisors, county staff and administrators issue enrolment codes",
            ));
        }
        let scope = st2
            .scopes
            .scope(storage.as_ref(), &issuer.id)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::PersonInactive,
                    "issuer is not active",
                )
            })?;
        let target = storage
            .person(&req.person_id)?
            .filter(|p| !p.grids.is_empty() && p.grids.iter().all(|g| scope.readable.contains(g)))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    "no such person in your scope",
                )
            })?;
        if target.role == Role::Admin && issuer.role != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "only administrators enrol administrators",
            ));
        }
        let ttl = req.ttl_hours.unwrap_or(72).clamp(1, 168);
        let issued = crate::admin::issue_code(storage.as_ref(), &target.id, &issuer.id, ttl)
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, e.to_string())
            })?;
        storage.audit(&AuditEntry {
            at_ms: gridsync_core::now_ms(),
            person_id: issuer.id,
            device_id: Some(device.id),
            record_id: None,
            kind: None,
            grid: None,
            action: "issue_code".into(),
            detail: format!("enrolment code for {}", target.id),
        })?;
        Ok(Json(issued))
    })
    .await
}

fn bad_request(code: ErrorCode, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

async fn sync(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Extension(RequestStart(start)): Extension<RequestStart>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let version = check_protocol(&headers)?;
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        if ct != CONTENT_TYPE {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::ContentType,
                format!("send {CONTENT_TYPE}"),
            ));
        }
    }
    // Authenticate (and rate-limit) before reading a large body.
    let st1 = st.clone();
    let h2 = headers.clone();
    let (device, person) = blocking(move || authorize(&st1, addr.ip(), &h2)).await?;
    // Work for this request stops a little before the client is told it timed out, so
    // that nothing is stored after that answer.
    let margin = (st.request_timeout / 10).min(Duration::from_secs(2));
    let deadline = start + st.request_timeout.saturating_sub(margin);
    let bytes = read_body(body, protocol::MAX_BODY_BYTES).await?;
    let st2 = st.clone();
    blocking(move || {
        let req: SyncRequest =
            protocol::decode_request_body(&bytes, version).map_err(|e| match e.code {
                ErrorCode::TooLarge => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.code, e.message)
                }
                _ => bad_request(e.code, e.message),
            })?;
        protocol::check_request(&req)
            .map_err(|m| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, m))?;
        let resp = handle_sync_until(&st2, &device, &person, req, Some(deadline))?;
        let body = protocol::encode_response(&resp, version).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                e.to_string(),
            )
        })?;
        Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
    })
    .await
}

/// One sync round trip: push, then a pull page (see `docs/protocol.md`).
pub fn handle_sync(
    st: &AppState,
    device: &Device,
    person: &Person,
    req: SyncRequest,
) -> ApiResult<SyncResponse> {
    handle_sync_until(st, device, person, req, None)
}

/// The answer to a request that ran out of time.
fn timed_out(st: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TimedOut,
        format!(
            "request time limit: the request ran past {} s; nothing of it was stored; try again",
            st.request_timeout.as_secs_f64()
        ),
    )
}

/// [`handle_sync`] with a deadline: a push still being judged when it passes is rolled back
/// whole ([`PushDecision::Cancelled`]) and the request answers `503 timed_out`.
pub fn handle_sync_until(
    st: &AppState,
    device: &Device,
    person: &Person,
    req: SyncRequest,
    deadline: Option<Instant>,
) -> ApiResult<SyncResponse> {
    let storage = st.storage.as_ref();
    let late = || deadline.is_some_and(|d| Instant::now() >= d);
    let scope = st.scopes.scope(storage, &person.id)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::PersonInactive,
            "the person of this device is no longer active",
        )
    })?;
    let epoch = storage.epoch()?;
    let author = Author {
        person_id: person.id.clone(),
        device_id: Some(device.id.clone()),
    };
    let results = if req.push.is_empty() {
        Vec::new()
    } else {
        let mut ctx = crate::push::PushContext::new(storage, &scope, &device.id);
        let mut process = |stored: Option<&StoredRecord>, p: &protocol::PushRecord| {
            if late() {
                return PushDecision::Cancelled;
            }
            let decision = crate::push::decide(&mut ctx, stored, p);
            // Judged past the deadline: the client has been (or is about to be) told that
            // the request failed, so none of it may be stored.
            if late() {
                return PushDecision::Cancelled;
            }
            decision
        };
        match storage.apply_push(&author, &req.push, &mut process) {
            Ok(r) => r,
            Err(StorageError::Cancelled) => {
                st.metrics.push_cancelled();
                tracing::info!(device = %device.id, records = req.push.len(), "push rolled back: the request ran out of time");
                return Err(timed_out(st));
            }
            Err(e) => return Err(e.into()),
        }
    };
    count_push_outcomes(st, device, &results);
    // Possible duplicates among the producers just accepted, resolutions mirrored, edits of
    // merged entries carried (`crate::duplicates`): written before the pull below, so this
    // device receives its own entries' marks in this round trip.
    crate::duplicates::after_push(storage, &st.grid_nodes, &req.push, &results);
    if late() {
        return Err(timed_out(st));
    }
    let mut resp = SyncResponse {
        epoch: epoch.clone(),
        reset: false,
        results,
        records: Vec::new(),
        departures: Vec::new(),
        cursors: Vec::new(),
        more: false,
        reference: None,
        docs_digest: None,
        server_time_ms: 0,
    };
    if !req.epoch.is_empty() && req.epoch != epoch {
        resp.reset = true;
        resp.server_time_ms = gridsync_core::now_ms();
        return Ok(resp);
    }
    let mut feeds = Vec::new();
    for c in &req.cursors {
        let templates_only = if scope.readable.contains(&c.grid) {
            false
        } else if scope.template_grids.contains(&c.grid) {
            true
        } else {
            continue;
        };
        if !storage.cursor_valid(&c.grid, c.seq, c.token)? {
            // The device followed a history this server does not have: restored from a
            // backup (or a made-up cursor: logged at a bounded rate).
            if let Some(skipped) = RESET_LOG.pass() {
                tracing::info!(device = %device.id, grid = %c.grid, skipped, "cursor not in this server's feed; asking the device to reset");
            }
            resp.reset = true;
            resp.server_time_ms = gridsync_core::now_ms();
            return Ok(resp);
        }
        feeds.push(FeedRead {
            grid: c.grid.clone(),
            after: c.seq,
            templates_only,
        });
    }
    feeds.sort_by(|a, b| a.grid.cmp(&b.grid));
    if req.reference_version != scope.reference.version {
        resp.reference = Some(scope.reference.clone());
        let known: std::collections::HashSet<&str> =
            req.cursors.iter().map(|c| c.grid.as_str()).collect();
        if scope
            .readable
            .iter()
            .chain(&scope.template_grids)
            .any(|g| !known.contains(g.as_str()))
        {
            resp.more = true;
        }
    }
    let limit = req.page_limit.clamp(1, protocol::MAX_PAGE_RECORDS);
    // The device sizes its pages to its link (protocol v3); 0 asks for the default.
    let budget = match req.page_bytes {
        0 => protocol::PAGE_BYTE_BUDGET,
        n => n.clamp(protocol::MIN_PAGE_BYTES, protocol::PAGE_BYTE_BUDGET as u32) as usize,
    };
    let (wanted, want_bytes, want_cut) = want_full(st, &scope, &req.want_full, limit, budget)?;
    if want_cut {
        st.metrics.want_full_cut();
        resp.more = true;
    }
    let wanted_count = wanted.len() as u32;
    resp.records.extend(wanted);
    let page = if wanted_count >= limit || want_bytes >= budget {
        crate::storage::PullPage {
            more: true,
            ..Default::default()
        }
    } else {
        storage.pull(&feeds, limit - wanted_count, budget - want_bytes)?
    };
    // Records this request just pushed and nobody else has changed since are not echoed
    // back: the device has every change (its acknowledged heads are the stored heads);
    // the cursor still moves past them.
    let mut echo: std::collections::HashMap<&str, Vec<[u8; 32]>> = std::collections::HashMap::new();
    for (p, r) in req.push.iter().zip(&resp.results) {
        if r.outcome == protocol::PushOutcome::Accepted {
            let mut h = p.heads.clone();
            h.sort();
            echo.insert(p.id.as_str(), h);
        }
    }
    resp.records.extend(page.records.into_iter().filter(|r| {
        let Some(pushed) = echo.get(r.id.as_str()) else {
            return true;
        };
        let mut h = r.heads.clone();
        h.sort();
        &h != pushed
    }));
    resp.departures = page.departures;
    resp.cursors = page
        .cursors
        .into_iter()
        .map(|(grid, seq, token)| protocol::Cursor { grid, seq, token })
        .collect();
    resp.more |= page.more;
    if req.bare_docs {
        strip_documents(&mut resp);
    }
    resp.server_time_ms = gridsync_core::now_ms();
    Ok(resp)
}

/// Whole documents a device asked for (`want_full`), each id once, only records it may
/// read, inside the page's record and byte budgets (`limit`, `budget`): the first record
/// always, then records while the page has room. Records outside the person's scope are
/// skipped without counting, so the answer says nothing about them. Returns the records, their bytes and
/// whether the list was cut.
fn want_full(
    st: &AppState,
    scope: &crate::scope::Scope,
    ids: &[String],
    limit: u32,
    budget: usize,
) -> ApiResult<(Vec<protocol::PullRecord>, usize, bool)> {
    /// Ids read from storage at a time: bounds what is held beyond the budget.
    const BATCH: usize = 8;
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = ids
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect();
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for batch in unique.chunks(BATCH) {
        for r in st.storage.full_records(batch)? {
            let kind = gridsync_core::model::RecordKind::from_tag(r.kind);
            if !kind.is_some_and(|k| scope.can_read(k, &r.grid)) {
                continue;
            }
            if !out.is_empty() && (bytes >= budget || out.len() as u32 >= limit) {
                return Ok((out, bytes, true));
            }
            bytes += r.bytes.len() + r.heads.len() * 32 + r.id.len();
            out.push(r);
        }
    }
    Ok((out, bytes, false))
}

/// Counts pushed records by outcome; rejections are logged at debug level one by one and
/// summed up at most a few lines a second (a hostile phone cannot flood the log).
fn count_push_outcomes(st: &AppState, device: &Device, results: &[protocol::PushResult]) {
    let mut rejected = 0usize;
    let mut first = None;
    for r in results {
        match &r.outcome {
            protocol::PushOutcome::Accepted => st.metrics.push_accepted(),
            protocol::PushOutcome::Rejected { code, reason } => {
                st.metrics.push_rejected(code.as_str());
                tracing::debug!(device = %device.id, record = %r.id, code = code.as_str(), "push rejected: {reason}");
                rejected += 1;
                first.get_or_insert(code.as_str());
            }
        }
    }
    if rejected > 0 {
        if let Some(skipped) = REJECT_LOG.pass() {
            tracing::info!(
                device = %device.id,
                rejected,
                of = results.len(),
                first_code = first.unwrap_or_default(),
                skipped_lines = skipped,
                "pushed records rejected"
            );
        }
    }
}

/// Sends the page's whole documents bare (protocol v2, `gridsync_core::sync::bare`): each
/// loses its checksum and head hashes, which the device derives again and checks against
/// the page digest. A document that is not one plain chunk keeps its hashes.
fn strip_documents(resp: &mut SyncResponse) {
    let mut digest = bare::PageDigest::new();
    let mut any = false;
    for rec in resp.records.iter_mut().filter(|r| r.full) {
        if let Some(stripped) = bare::strip(&rec.bytes) {
            digest.add_raw(&rec.id, rec.heads.iter());
            rec.bytes = stripped;
            rec.heads.clear();
            any = true;
        }
    }
    if any {
        resp.docs_digest = Some(digest.finish());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let inner: IpAddr = "10.0.0.8".parse().unwrap();
        let phone: IpAddr = "203.0.113.7".parse().unwrap();
        let trusted = [proxy, inner];
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(client_ip(phone, &xff(&["198.51.100.1"]), &trusted), phone);
        // From the proxy: the address it saw (the last entry).
        assert_eq!(
            client_ip(proxy, &xff(&["1.2.3.4, 203.0.113.7"]), &trusted),
            phone
        );
        // Through two trusted proxies, in one header or several.
        assert_eq!(
            client_ip(proxy, &xff(&["203.0.113.7, 10.0.0.8"]), &trusted),
            phone
        );
        assert_eq!(
            client_ip(proxy, &xff(&["203.0.113.7", "10.0.0.8"]), &trusted),
            phone
        );
        // No header, or garbage where the proxy's entry should be: the proxy itself.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(
            client_ip(proxy, &xff(&["203.0.113.7, not-an-ip"]), &trusted),
            proxy
        );
    }
}
