//! The HTTP API: enrolment, sync, credential rotation, enrolment codes, health.
//! Every request is authenticated (except enrolment, which is rate-limited), every body is
//! bounded, and every record is authorized against what is stored.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gridsync_core::model::{Person, Role};
use gridsync_core::sync::bare;
use gridsync_core::sync::protocol::{
    self, EnrollRequest, EnrollResponse, ErrorBody, RotateResponse, SyncRequest, SyncResponse,
    CONTENT_TYPE, OLDEST_PROTOCOL_VERSION, PROTOCOL_HEADER, PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};

use crate::auth::{self, EnrolLimiter};
use crate::scope::ScopeCache;
use crate::storage::{AuditEntry, Author, Device, FeedRead, Storage, StorageError};

/// Largest JSON body (enrolment, rotation, codes).
pub const MAX_JSON_BODY: usize = 16 * 1024;

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    /// The storage backend.
    pub storage: Arc<dyn Storage>,
    /// Scope cache.
    pub scopes: ScopeCache,
    /// Enrolment rate limiter.
    pub limiter: EnrolLimiter,
    /// Longest time to receive a request body (slow clients get 408).
    pub body_timeout: Duration,
    /// Longest time for a whole request.
    pub request_timeout: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for the enrolment limit).
    pub trusted_proxies: Vec<IpAddr>,
}

impl AppState {
    /// State over a storage backend with default limits.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        AppState {
            storage,
            scopes: ScopeCache::default(),
            limiter: EnrolLimiter::new(10, 120, Duration::from_secs(60)),
            body_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(120),
            trusted_proxies: Vec::new(),
        }
    }
}

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

/// An error answer: status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!("storage error: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            "the server's database failed; try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let (body_timeout, request_timeout) = (state.body_timeout, state.request_timeout);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/enroll", post(enroll))
        .route("/v1/sync", post(sync))
        .route("/v1/device/rotate", post(rotate))
        .route("/v1/enrolment-codes", post(issue_code))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            body_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

async fn healthz(State(st): State<Arc<AppState>>) -> ApiResult<&'static str> {
    let s = st.storage.clone();
    blocking(move || s.epoch().map_err(ApiError::from)).await?;
    Ok("ok")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("request task failed: {e}");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request failed inside the server",
            ))
        }
    }
}

async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let text = format!("{e}");
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            let mut too_large = text.contains("length limit");
            let mut timed_out = text.contains("timeout");
            while let Some(s) = src {
                let m = s.to_string();
                too_large |= m.contains("length limit");
                timed_out |= m.contains("timeout") || m.contains("timed out");
                src = s.source();
            }
            if timed_out {
                Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body arrived too slowly",
                ))
            } else if too_large {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("request body exceeds {limit} bytes"),
                ))
            } else {
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_read",
                    format!("could not read the request body: {text}"),
                ))
            }
        }
    }
}

/// The protocol version a request speaks (header [`PROTOCOL_HEADER`]), one this server
/// serves: [`OLDEST_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`].
fn check_protocol(headers: &HeaderMap) -> ApiResult<u16> {
    match headers.get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok()) {
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_protocol",
            format!("send header {PROTOCOL_HEADER}: {PROTOCOL_VERSION}"),
        )),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(n) if (OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&n) => Ok(n),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_protocol",
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
        |code: &'static str, msg: String| ApiError::new(StatusCode::UNAUTHORIZED, code, msg);
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthorized(
                "missing_credentials",
                "send Authorization: Bearer DEVICE.SECRET".into(),
            )
        })?;
    let (device_id, secret) = auth::parse_bearer(h)
        .ok_or_else(|| unauthorized("bad_credentials", "malformed bearer credential".into()))?;
    let device = storage
        .device(device_id)?
        .ok_or_else(|| unauthorized("bad_credentials", "unknown device or wrong secret".into()))?;
    if let Some(at) = device.revoked_at_ms {
        return Err(unauthorized(
            "device_revoked",
            format!(
                "this device was revoked at {at} ms: {}; enrol again with a new code",
                device.revoked_reason.clone().unwrap_or_default()
            ),
        ));
    }
    let hash = auth::hash_secret(secret);
    if !auth::hashes_equal(&hash, &device.secret_hash) {
        match &device.pending_hash {
            Some(p) if auth::hashes_equal(&hash, p) => {
                storage.promote_pending_secret(&device.id)?
            }
            _ => {
                return Err(unauthorized(
                    "bad_credentials",
                    "unknown device or wrong secret".into(),
                ))
            }
        }
    }
    let person = storage.person(&device.person_id)?.ok_or_else(|| {
        unauthorized(
            "person_inactive",
            "the person of this device is no longer active".into(),
        )
    })?;
    let now = gridsync_core::now_ms();
    if device.last_seen_ms.is_none_or(|t| now - t > 60_000) {
        storage.touch_device(&device.id, now)?;
    }
    Ok((device, person))
}

async fn enroll(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<EnrollResponse>> {
    if !st
        .limiter
        .allow(client_ip(addr.ip(), &headers, &st.trusted_proxies))
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many enrolment attempts; wait a minute",
        ));
    }
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    let req: EnrollRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            format!("enrolment body: {e}"),
        )
    })?;
    if req.device_name.chars().count() > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "device_name is longer than 100 characters",
        ));
    }
    let storage = st.storage.clone();
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
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_code",
                    "the enrolment code is unknown, used or expired",
                )
            })?;
        let person = storage.person(&person_id)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "person_inactive",
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
    headers: HeaderMap,
) -> ApiResult<Json<RotateResponse>> {
    check_protocol(&headers)?;
    let storage = st.storage.clone();
    blocking(move || {
        let (device, person) = authenticate(storage.as_ref(), &headers)?;
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

/// Request to issue an enrolment code (supervisors, county staff, administrators).
#[derive(Debug, Deserialize)]
pub struct IssueCodeRequest {
    /// Person to enrol.
    pub person_id: String,
    /// Lifetime in hours (1..=168).
    pub ttl_hours: Option<u32>,
}

/// An issued enrolment code with its QR code.
#[derive(Debug, Serialize, Deserialize)]
pub struct IssuedCode {
    /// The code (shown once).
    pub code: String,
    /// Expiry.
    pub expires_at_ms: i64,
    /// QR code of the code as SVG.
    pub qr_svg: String,
}

async fn issue_code(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<IssuedCode>> {
    check_protocol(&headers)?;
    let bytes = read_body(body, MAX_JSON_BODY).await?;
    let storage = st.storage.clone();
    let st2 = st.clone();
    blocking(move || {
        let (device, issuer) = authenticate(storage.as_ref(), &headers)?;
        let req: IssueCodeRequest = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("code request: {e}"),
            )
        })?;
        if !matches!(
            issuer.role,
            Role::Supervisor | Role::CountyReviewer | Role::Admin
        ) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only supervisors, county staff and administrators issue enrolment codes",
            ));
        }
        let scope = st2
            .scopes
            .scope(storage.as_ref(), &issuer.id)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "person_inactive",
                    "issuer is not active",
                )
            })?;
        let target = storage
            .person(&req.person_id)?
            .filter(|p| !p.grids.is_empty() && p.grids.iter().all(|g| scope.readable.contains(g)))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such person in your scope",
                )
            })?;
        if target.role == Role::Admin && issuer.role != Role::Admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only administrators enrol administrators",
            ));
        }
        let ttl = req.ttl_hours.unwrap_or(72).clamp(1, 168);
        let issued = crate::admin::issue_code(storage.as_ref(), &target.id, &issuer.id, ttl)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string()))?;
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

fn bad_request(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

async fn sync(
    State(st): State<Arc<AppState>>,
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
                "content_type",
                format!("send {CONTENT_TYPE}"),
            ));
        }
    }
    // Authenticate before reading a large body.
    let storage = st.storage.clone();
    let h2 = headers.clone();
    let (device, person) = blocking(move || authenticate(storage.as_ref(), &h2)).await?;
    let bytes = read_body(body, protocol::MAX_BODY_BYTES).await?;
    let st2 = st.clone();
    blocking(move || {
        let req: SyncRequest = protocol::decode_request(&bytes, version).map_err(|e| {
            if e.to_string().contains("decompresses to more") {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            } else {
                bad_request("malformed_body", e.to_string())
            }
        })?;
        protocol::check_request(&req)
            .map_err(|m| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", m))?;
        let resp = handle_sync(&st2, &device, &person, req)?;
        let body = protocol::encode_response(&resp, version).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
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
    let storage = st.storage.as_ref();
    let scope = st.scopes.scope(storage, &person.id)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "person_inactive",
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
        let mut process = |stored: Option<&crate::storage::StoredRecord>,
                           p: &protocol::PushRecord| {
            crate::push::decide(storage, &scope, stored, p)
        };
        storage.apply_push(&author, &req.push, &mut process)?
    };
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
    };
    if !req.epoch.is_empty() && req.epoch != epoch {
        resp.reset = true;
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
            // The device followed a history this server does not have: restored from a backup.
            tracing::warn!(device = %device.id, grid = %c.grid, "cursor ahead of the feed; asking the device to reset");
            resp.reset = true;
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
    if !req.want_full.is_empty() {
        for r in storage.full_records(&req.want_full)? {
            let kind = gridsync_core::model::RecordKind::from_tag(r.kind);
            if kind.is_some_and(|k| scope.can_read(k, &r.grid)) {
                resp.records.push(r);
            }
        }
    }
    let limit = req.page_limit.clamp(1, protocol::MAX_PAGE_RECORDS);
    let page = storage.pull(&feeds, limit, protocol::PAGE_BYTE_BUDGET)?;
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
    Ok(resp)
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
