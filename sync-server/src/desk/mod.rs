//! The desk console's foundation: sign-in for desk staff (county reviewers, supervisors,
//! administrators) under `/desk/`, on the sync API's listener.
//!
//! - Passwords: argon2id ([`password`]), set by `admin set-password` or a one-time link.
//! - Sessions: a random token in the cookie `gridsync_desk` (HttpOnly, SameSite=Strict,
//!   Path=/desk, Secure behind TLS); the server stores only its SHA-256 and ends it after
//!   [`DeskConfig::idle`] without a request, [`DeskConfig::absolute`] after sign-in, at
//!   logout and when the person is deactivated.
//! - CSRF: every POST carries a token compared in constant time with the session's (forms
//!   of a session) or with the `gridsync_desk_form` cookie (sign-in and password-set forms,
//!   a double-submit cookie); without it: 403.
//! - Attempts: per account (locked for [`DeskConfig::lock_for`] after
//!   [`DeskConfig::max_failures`] failures) and per client address (token bucket); an
//!   unknown user, a wrong password and a locked account get the same answer, and an
//!   unknown user costs an argon2 verification too.
//! - Scope: as on the phones, core's `rules::in_scope` over the stored grid tree; a record
//!   outside scope answers exactly as a missing one (404).
//! - Audit: every sign-in, failure, lock, logout and password set; never a password or
//!   token.

mod acceptance;
mod audit_pages;
mod chart;
mod dashboard;
mod directory;
mod duplicates;
mod exports;
pub mod password;
mod patrols;
mod people;
mod review;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gridsync_core::model::{Person, Role};
use serde::Deserialize;

use crate::api::{blocking, client_ip, AppState};
use crate::auth;
use crate::limits::{LogGate, RateLimiter};
use crate::storage::{AuditEntry, DeskSession, Storage, StorageError};

/// The session cookie.
pub const SESSION_COOKIE: &str = "gridsync_desk";
/// The double-submit cookie of the forms shown before a session exists.
pub const FORM_COOKIE: &str = "gridsync_desk_form";
/// Largest form body.
const MAX_FORM_BODY: usize = 16 * 1024;

static DESK_LOG: LogGate = LogGate::new(20);

/// A session's last request is written at most this often.
const TOUCH_EVERY_MS: i64 = 30_000;

/// Limits and lifetimes of desk sign-in.
#[derive(Debug, Clone)]
pub struct DeskConfig {
    /// A session without a request for this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however active.
    pub absolute: Duration,
    /// Failed sign-ins of one account that lock it.
    pub max_failures: i64,
    /// How long a lock lasts.
    pub lock_for: Duration,
    /// Sign-in attempts a minute per client address.
    pub attempts_per_address_per_minute: u32,
    /// Mark cookies Secure even when no trusted proxy says the request came over TLS.
    pub always_secure: bool,
    /// The first year of the township compliance programme (达标 targets: 30 % by the end
    /// of it, 80 % the next year, 100 % from the third; `reports::compliance`).
    pub programme_start_year: i32,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            idle: Duration::from_secs(8 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
            max_failures: 5,
            lock_for: Duration::from_secs(15 * 60),
            attempts_per_address_per_minute: 30,
            always_secure: false,
            programme_start_year: crate::reports::compliance::DEFAULT_PROGRAMME_START_YEAR,
        }
    }
}

/// State of the desk routes.
#[derive(Debug)]
pub struct DeskState {
    app: Arc<AppState>,
    config: DeskConfig,
    per_address: RateLimiter<IpAddr>,
}

/// The desk routes, to merge into the server's router (they get its limits and layers).
pub fn router<S>(app: Arc<AppState>, config: DeskConfig) -> Router<S> {
    let per_address = RateLimiter::per_minute(
        config.attempts_per_address_per_minute.max(1),
        crate::limits::MAX_KEYS,
    );
    let st = Arc::new(DeskState {
        app,
        config,
        per_address,
    });
    Router::new()
        .route("/desk", get(|| async { see_other("/desk/") }))
        .route("/desk/", get(home))
        .route("/desk/login", get(login_form).post(login))
        .route("/desk/logout", post(logout))
        .route(
            "/desk/set-password/{token}",
            get(set_password_form).post(set_password),
        )
        .route("/desk/static/desk.css", get(css))
        .merge(review::routes())
        .merge(directory::routes())
        .merge(duplicates::routes())
        .merge(patrols::routes())
        .merge(people::routes())
        .merge(audit_pages::routes())
        .merge(dashboard::routes())
        .merge(exports::routes())
        .merge(chart::routes())
        .merge(acceptance::routes())
        .fallback(|| async { not_found() })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BODY))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(st)
}

/// A request URI fit for a log line: the token of a password-set link is replaced.
pub fn loggable_uri(uri: &axum::http::Uri) -> String {
    const LINK: &str = "/desk/set-password/";
    if uri.path().starts_with(LINK) {
        format!("{LINK}(token)")
    } else {
        uri.to_string()
    }
}

// ---- Responses ----

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn html(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("desk template failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "服务器内部错误").into_response()
        }
    }
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// A 303 to a location built at run time (its parts encoded with [`url_encode`]).
fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => server_error(),
    }
}

/// Percent-encodes a path segment or a query value: everything but RFC 3986's unreserved
/// characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Template)]
#[template(path = "desk/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    text: &'a str,
    link: &'a str,
    link_text: &'a str,
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    html(
        status,
        &MessagePage {
            title,
            text,
            link: "/desk/",
            link_text: "返回首页",
        },
    )
}

/// The one answer for anything missing or outside the person's scope.
fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "未找到",
        "您要找的页面不存在，或不在您的管辖范围内。",
    )
}

fn forbidden_csrf() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "请求无效",
        "表单已失效或来源不明，请返回页面刷新后重试。",
    )
}

fn server_error() -> Response {
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "服务器错误",
        "服务器暂时无法处理，请稍后重试。",
    )
}

fn storage_error(e: StorageError) -> Response {
    tracing::error!("desk storage error: {e}");
    server_error()
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../templates/desk/desk.css"),
    )
        .into_response()
}

// ---- Cookies and CSRF ----

/// A cookie's value from the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the request reached us over TLS: a trusted proxy says so in
/// `X-Forwarded-Proto` (the server itself speaks plain HTTP).
fn came_over_tls(st: &DeskState, peer: IpAddr, headers: &HeaderMap) -> bool {
    st.config.always_secure
        || (st.app.trusted_proxies.contains(&peer.to_canonical())
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/desk");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn tokens_equal(a: &str, b: &str) -> bool {
    !a.is_empty() && auth::hashes_equal(a, b)
}

/// The double-submit token of a pre-session form: the cookie's, or a new one to set.
fn form_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, FORM_COOKIE) {
        Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (t.to_string(), false)
        }
        _ => (auth::new_secret(), true),
    }
}

fn form_cookie_ok(headers: &HeaderMap, sent: &str) -> bool {
    cookie(headers, FORM_COOKIE).is_some_and(|c| tokens_equal(c, sent))
}

fn audit(storage: &dyn Storage, person_id: &str, action: &str, detail: String) {
    let entry = AuditEntry {
        at_ms: gridsync_core::now_ms(),
        person_id: person_id.to_string(),
        device_id: None,
        record_id: None,
        kind: None,
        grid: None,
        action: action.to_string(),
        detail,
    };
    if let Err(e) = storage.audit(&entry) {
        tracing::error!(action, "desk audit entry not written: {e}");
    }
}

// ---- Sessions ----

/// A signed-in request: its session and person.
#[derive(Debug)]
struct Signed {
    session: DeskSession,
    person: Person,
}

/// The session of a request, if it is live: known, within its idle and absolute limits,
/// of an active desk person. A dead session's row is deleted.
fn current_session(st: &DeskState, headers: &HeaderMap) -> Result<Option<Signed>, StorageError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let storage = st.app.storage.as_ref();
    let hash = auth::hash_secret(token);
    let Some(session) = storage.desk_session(&hash)? else {
        return Ok(None);
    };
    let now = gridsync_core::now_ms();
    let idle_ms = i64::try_from(st.config.idle.as_millis()).unwrap_or(i64::MAX);
    let expired = now >= session.expires_at_ms || now - session.last_seen_ms >= idle_ms;
    let person = if expired {
        None
    } else {
        storage
            .person(&session.person_id)?
            .filter(|p| p.role != Role::Liaison)
    };
    let Some(person) = person else {
        storage.desk_delete_session(&hash)?;
        audit(
            storage,
            &session.person_id,
            "desk_session_ended",
            if expired {
                "expired".into()
            } else {
                "person inactive".into()
            },
        );
        return Ok(None);
    };
    if now - session.last_seen_ms > TOUCH_EVERY_MS {
        storage.desk_touch_session(&hash, now)?;
    }
    Ok(Some(Signed { session, person }))
}

/// Why a request has no live session.
#[derive(Debug)]
enum NoSession {
    /// None, or it ended: sign in.
    SignIn,
    /// The server failed.
    Error,
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::SignIn => see_other("/desk/login"),
            NoSession::Error => server_error(),
        }
    }
}

/// The signed-in request, or why there is none.
async fn require_session(st: &Arc<DeskState>, headers: &HeaderMap) -> Result<Signed, NoSession> {
    let (st2, headers) = (st.clone(), headers.clone());
    match blocking(move || current_session(&st2, &headers).map_err(Into::into)).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(NoSession::SignIn),
        Err(_) => Err(NoSession::Error),
    }
}

/// The signed-in person as pages show them.
struct Me {
    name: String,
    role: &'static str,
    csrf: String,
    /// Administrators manage people and devices (the nav shows them the link).
    admin: bool,
}

impl Me {
    fn of(s: &Signed) -> Me {
        Me {
            name: s.person.name.clone(),
            role: s.person.role.label_zh(),
            csrf: s.session.csrf_token.clone(),
            admin: s.person.role == Role::Admin,
        }
    }
}

/// The signed-in person of a form's POST: a live session whose CSRF token the form
/// carries. No session or a wrong token: 403.
async fn require_post(
    st: &Arc<DeskState>,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Signed, Response> {
    let signed = require_session(st, headers)
        .await
        .map_err(|_| forbidden_csrf())?;
    if !tokens_equal(&signed.session.csrf_token, csrf) {
        return Err(forbidden_csrf());
    }
    Ok(signed)
}

/// A POST's administrator: [`require_post`], and an administrator (else 404, as for a page
/// that is not there).
async fn require_admin_post(
    st: &Arc<DeskState>,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Signed, Response> {
    let signed = require_post(st, headers, csrf).await?;
    if signed.person.role != Role::Admin {
        return Err(not_found());
    }
    Ok(signed)
}

// ---- Sign-in ----

#[derive(Template)]
#[template(path = "desk/login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

const SIGN_IN_FAILED: &str =
    "用户名或密码不正确，或账户因多次失败已暂时锁定。请稍后重试，或联系系统管理员。";

fn login_page(
    status: StatusCode,
    csrf: &str,
    set: bool,
    secure: bool,
    username: &str,
    error: Option<&str>,
) -> Response {
    let mut resp = html(
        status,
        &LoginPage {
            csrf,
            username,
            error,
        },
    );
    if set {
        resp.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(FORM_COOKIE, csrf, secure, None),
        );
    }
    resp
}

async fn login_form(
    State(st): State<Arc<DeskState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if cookie(&headers, SESSION_COOKIE).is_some() {
        let (st2, h2) = (st.clone(), headers.clone());
        if let Ok(Some(_)) = blocking(move || current_session(&st2, &h2).map_err(Into::into)).await
        {
            return see_other("/desk/");
        }
    }
    let (csrf, set) = form_token(&headers);
    let secure = came_over_tls(&st, addr.ip(), &headers);
    login_page(StatusCode::OK, &csrf, set, secure, "", None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a sign-in attempt came to.
enum SignIn {
    Ok { token: String },
    Failed,
}

async fn login(
    State(st): State<Arc<DeskState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !form_cookie_ok(&headers, &form.csrf) {
        return forbidden_csrf();
    }
    let peer = addr.ip();
    let client = client_ip(peer, &headers, &st.app.trusted_proxies).to_canonical();
    let secure = came_over_tls(&st, peer, &headers);
    let username: String = form.username.trim().chars().take(64).collect();
    if st.per_address.take(&client).is_err() {
        if let Some(skipped) = DESK_LOG.pass() {
            tracing::info!(client = %client, skipped, "desk sign-in refused: address rate limit");
        }
        audit(
            st.app.storage.as_ref(),
            "",
            "desk_sign_in_limited",
            format!("address {client}"),
        );
        let mut resp = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &form.csrf,
            false,
            secure,
            &username,
            Some("登录尝试过于频繁，请一分钟后再试。"),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return resp;
    }
    let st2 = st.clone();
    let name2 = username.clone();
    let password = form.password;
    let result = blocking(move || Ok(sign_in(&st2, &name2, &password, client))).await;
    match result {
        Ok(Ok(SignIn::Ok { token })) => {
            let mut resp = see_other("/desk/");
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, secure, None),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(FORM_COOKIE, "", secure, Some(0)),
            );
            resp
        }
        Ok(Ok(SignIn::Failed)) => login_page(
            StatusCode::UNAUTHORIZED,
            &form.csrf,
            false,
            secure,
            &username,
            Some(SIGN_IN_FAILED),
        ),
        Ok(Err(e)) => storage_error(e),
        Err(_) => server_error(),
    }
}

/// Checks a sign-in and, when it succeeds, starts a session; writes the audit trail.
fn sign_in(
    st: &DeskState,
    username: &str,
    password: &str,
    client: IpAddr,
) -> Result<SignIn, StorageError> {
    let storage = st.app.storage.as_ref();
    let now = gridsync_core::now_ms();
    let Some(account) = storage.desk_account_by_username(username)? else {
        password::burn_time(password);
        // The typed name is not kept: people type passwords into the name field.
        audit(
            storage,
            "",
            "desk_sign_in_failed",
            format!("unknown username, address {client}"),
        );
        log_failure(client, "unknown username");
        return Ok(SignIn::Failed);
    };
    let pid = account.person_id.clone();
    if account.locked_until_ms.is_some_and(|t| t > now) {
        password::burn_time(password);
        audit(
            storage,
            &pid,
            "desk_sign_in_failed",
            format!("account locked, address {client}"),
        );
        log_failure(client, "account locked");
        return Ok(SignIn::Failed);
    }
    if !password::verify(password, &account.password_hash) {
        let lock_ms = i64::try_from(st.config.lock_for.as_millis()).unwrap_or(i64::MAX);
        let r = storage.desk_sign_in_failed(&pid, st.config.max_failures, now + lock_ms)?;
        audit(
            storage,
            &pid,
            "desk_sign_in_failed",
            format!("wrong password, address {client}"),
        );
        log_failure(client, "wrong password");
        if let Some(until) = r.locked_until_ms {
            audit(
                storage,
                &pid,
                "desk_account_locked",
                format!(
                    "{} failed sign-ins; locked until {until} ms",
                    st.config.max_failures
                ),
            );
        }
        return Ok(SignIn::Failed);
    }
    let active = storage.person(&pid)?.filter(|p| p.role != Role::Liaison);
    if active.is_none() {
        audit(
            storage,
            &pid,
            "desk_sign_in_failed",
            format!("person inactive or not a desk role, address {client}"),
        );
        log_failure(client, "person inactive");
        return Ok(SignIn::Failed);
    }
    storage.desk_sign_in_succeeded(&pid)?;
    // Sessions nobody came back to and dead links go at each sign-in. The idle limit counts
    // from a session's last noted request, which is at most a touch interval old.
    let idle_ms = i64::try_from(st.config.idle.as_millis()).unwrap_or(i64::MAX);
    storage.desk_purge(now, idle_ms.saturating_add(TOUCH_EVERY_MS))?;
    let token = auth::new_secret();
    let absolute_ms = i64::try_from(st.config.absolute.as_millis()).unwrap_or(i64::MAX);
    storage.desk_create_session(&DeskSession {
        token_hash: auth::hash_secret(&token),
        person_id: pid.clone(),
        csrf_token: auth::new_secret(),
        created_at_ms: now,
        last_seen_ms: now,
        expires_at_ms: now.saturating_add(absolute_ms),
    })?;
    audit(
        storage,
        &pid,
        "desk_sign_in",
        format!("username {}, address {client}", account.username),
    );
    Ok(SignIn::Ok { token })
}

fn log_failure(client: IpAddr, why: &'static str) {
    if let Some(skipped) = DESK_LOG.pass() {
        tracing::info!(client = %client, why, skipped, "desk sign-in failed");
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(st): State<Arc<DeskState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        // No live session: nothing to end, but a form without its token is still refused.
        Err(_) => return forbidden_csrf(),
    };
    if !tokens_equal(&signed.session.csrf_token, &form.csrf) {
        return forbidden_csrf();
    }
    let secure = came_over_tls(&st, addr.ip(), &headers);
    let st2 = st.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        storage.desk_delete_session(&signed.session.token_hash)?;
        audit(storage, &signed.person.id, "desk_sign_out", String::new());
        Ok(())
    })
    .await;
    if r.is_err() {
        return server_error();
    }
    let mut resp = see_other("/desk/login");
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", secure, Some(0)),
    );
    resp
}

// ---- One-time password links ----

#[derive(Template)]
#[template(path = "desk/set_password.html")]
struct SetPasswordPage<'a> {
    name: &'a str,
    username: &'a str,
    token: &'a str,
    csrf: &'a str,
    min_chars: usize,
    error: Option<&'a str>,
}

fn bad_link() -> Response {
    html(
        StatusCode::NOT_FOUND,
        &MessagePage {
            title: "链接无效",
            text: "此链接不存在、已使用或已过期。请联系系统管理员重新发放。",
            link: "/desk/login",
            link_text: "前往登录",
        },
    )
}

/// The person and username of a live link (a link's token is 64 hex digits).
fn link_target(
    storage: &dyn Storage,
    token: &str,
) -> Result<Option<(Person, String)>, StorageError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(pid) = storage.desk_link(&auth::hash_secret(token), gridsync_core::now_ms())? else {
        return Ok(None);
    };
    let Some(person) = storage.person(&pid)?.filter(|p| p.role != Role::Liaison) else {
        return Ok(None);
    };
    let username = storage
        .desk_account(&pid)?
        .map(|a| a.username)
        .unwrap_or_else(|| pid.clone());
    Ok(Some((person, username)))
}

async fn set_password_form(
    State(st): State<Arc<DeskState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let st2 = st.clone();
    let t2 = token.clone();
    let target = match blocking(move || Ok(link_target(st2.app.storage.as_ref(), &t2))).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return storage_error(e),
        Err(_) => return server_error(),
    };
    let Some((person, username)) = target else {
        return bad_link();
    };
    let (csrf, set) = form_token(&headers);
    let mut resp = html(
        StatusCode::OK,
        &SetPasswordPage {
            name: &person.name,
            username: &username,
            token: &token,
            csrf: &csrf,
            min_chars: password::MIN_PASSWORD_CHARS,
            error: None,
        },
    );
    if set {
        let secure = came_over_tls(&st, addr.ip(), &headers);
        resp.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(FORM_COOKIE, &csrf, secure, None),
        );
    }
    resp
}

#[derive(Deserialize)]
struct SetPasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
    #[serde(default)]
    csrf: String,
}

impl std::fmt::Debug for SetPasswordForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetPasswordForm").finish_non_exhaustive()
    }
}

enum LinkUse {
    Done,
    Gone,
    Refused(Person, String, String),
}

async fn set_password(
    State(st): State<Arc<DeskState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SetPasswordForm>,
) -> Response {
    if !form_cookie_ok(&headers, &form.csrf) {
        return forbidden_csrf();
    }
    let client = client_ip(addr.ip(), &headers, &st.app.trusted_proxies).to_canonical();
    if st.per_address.take(&client).is_err() {
        return message(
            StatusCode::TOO_MANY_REQUESTS,
            "请稍后再试",
            "尝试过于频繁，请一分钟后再试。",
        );
    }
    let st2 = st.clone();
    let t2 = token.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let Some((person, username)) = link_target(storage, &t2)? else {
            return Ok(LinkUse::Gone);
        };
        // Rules first: a mistyped password does not use up the link.
        let problem = if form.password != form.password2 {
            Some("两次输入的密码不一致".to_string())
        } else {
            password::check_new(&form.password).err()
        };
        if let Some(p) = problem {
            return Ok(LinkUse::Refused(person, username, p));
        }
        let hash = password::hash(&form.password).map_err(StorageError::Invalid)?;
        if storage
            .desk_use_link(&auth::hash_secret(&t2), gridsync_core::now_ms())?
            .is_none()
        {
            return Ok(LinkUse::Gone);
        }
        match storage.desk_set_password(&person.id, &username, &hash, gridsync_core::now_ms()) {
            Ok(()) => {}
            Err(StorageError::Invalid(m)) => {
                return Ok(LinkUse::Refused(person, username, format!("无法设置：{m}")))
            }
            Err(e) => return Err(e.into()),
        }
        storage.desk_delete_sessions_of(&person.id)?;
        audit(
            storage,
            &person.id,
            "desk_password_set",
            format!("username {username}, by one-time link, address {client}"),
        );
        Ok(LinkUse::Done)
    })
    .await;
    match r {
        Ok(LinkUse::Done) => html(
            StatusCode::OK,
            &MessagePage {
                title: "密码已设置",
                text: "密码已保存，请使用新密码登录。",
                link: "/desk/login",
                link_text: "前往登录",
            },
        ),
        Ok(LinkUse::Gone) => bad_link(),
        Ok(LinkUse::Refused(person, username, problem)) => html(
            StatusCode::BAD_REQUEST,
            &SetPasswordPage {
                name: &person.name,
                username: &username,
                token: &token,
                csrf: &form_token(&headers).0,
                min_chars: password::MIN_PASSWORD_CHARS,
                error: Some(&problem),
            },
        ),
        Err(_) => server_error(),
    }
}

// ---- Pages ----

struct GridItem {
    code: String,
    name: String,
    level: &'static str,
}

#[derive(Template)]
#[template(path = "desk/home.html")]
struct HomePage {
    me: Me,
    scope_text: &'static str,
    grids: Vec<GridItem>,
    readable: usize,
}

async fn home(State(st): State<Arc<DeskState>>, headers: HeaderMap) -> Response {
    let signed = match require_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let st2 = st.clone();
    let pid = signed.person.id.clone();
    let r = blocking(move || {
        let storage = st2.app.storage.as_ref();
        let scope = st2.app.scopes.scope(storage, &pid)?;
        Ok((storage.grids()?, scope))
    })
    .await;
    let (nodes, scope) = match r {
        Ok((n, Some(s))) => (n, s),
        Ok((_, None)) => return see_other("/desk/login"),
        Err(_) => return server_error(),
    };
    let grids = signed
        .person
        .grids
        .iter()
        .filter_map(|g| nodes.iter().find(|n| &n.code == g))
        .map(|n| GridItem {
            code: n.code.clone(),
            name: n.name.clone(),
            level: n.level.label_zh(),
        })
        .collect();
    let scope_text = match signed.person.role {
        Role::Admin => "您可以查看全部网格的数据。",
        Role::CountyReviewer => "您可以查看本旗县（区）全部网格的数据。",
        _ => "您可以查看本乡镇（苏木）全部网格的数据。",
    };
    html(
        StatusCode::OK,
        &HomePage {
            me: Me::of(&signed),
            scope_text,
            grids,
            readable: scope.readable.len(),
        },
    )
}

/// A time in ms as a date (China Standard Time, UTC+8).
fn date(ms: i64) -> String {
    gridsync_core::dates::china_date(ms)
}

fn review_label(s: gridsync_core::model::ReviewState) -> &'static str {
    use gridsync_core::model::ReviewState::*;
    match s {
        Draft => "草稿",
        Submitted => "待乡镇审核",
        TownshipApproved => "乡镇已审核，待旗县审核",
        CountyApproved => "旗县已审核",
        Returned => "已退回",
    }
}

fn risk_label(r: gridsync_core::model::RiskLevel) -> &'static str {
    use gridsync_core::model::RiskLevel::*;
    match r {
        Low => "低",
        Medium => "中",
        High => "高",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_not_logged() {
        let uri: axum::http::Uri = "/desk/set-password/abcdef0123".parse().unwrap();
        assert_eq!(loggable_uri(&uri), "/desk/set-password/(token)");
        let uri: axum::http::Uri = "/v1/sync?x=1".parse().unwrap();
        assert_eq!(loggable_uri(&uri), "/v1/sync?x=1");
    }

    #[test]
    fn dates_in_china_time() {
        assert_eq!(date(0), "1970-01-01");
        // 2024-02-29 16:00 UTC is 2024-03-01 00:00 in China.
        assert_eq!(date(1_709_222_400_000), "2024-03-01");
        assert_eq!(date(1_709_222_399_999), "2024-02-29");
    }

    #[test]
    fn values_are_percent_encoded_but_unreserved_characters() {
        assert_eq!(url_encode("T1-V_1.a~"), "T1-V_1.a~");
        assert_eq!(url_encode("a b&c/é"), "a%20b%26c%2F%C3%A9");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gridsync_desk=xyz; b="),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        assert_eq!(cookie(&h, "gridsync"), None);
        let c = set_cookie(SESSION_COOKIE, "t", true, None);
        assert_eq!(
            c.to_str().unwrap(),
            "gridsync_desk=t; HttpOnly; SameSite=Strict; Path=/desk; Secure"
        );
    }
}
