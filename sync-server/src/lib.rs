//! The gridsync sync server: authoritative copy of every grid, per-grid feeds, and who may
//! see and change what. `main.rs` is the command line; this library is what tests embed.

pub mod admin;
pub mod api;
pub mod attachments;
pub mod auth;
pub mod conn;
pub mod dataset;
pub mod demo;
pub mod desk;
pub mod duplicates;
pub mod import;
pub mod limits;
pub mod metrics;
pub mod push;
pub mod reports;
pub mod scale;
pub mod scope;
pub mod signed;
pub mod storage;

use std::sync::Arc;

/// Serves the API on a bound listener until `shutdown` resolves; requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    storage: Arc<dyn storage::Storage>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_state(listener, Arc::new(api::AppState::new(storage)), shutdown).await
}

/// Serves with a prepared state (tests shorten its timeouts and limits): the accept loop
/// of [`conn::serve`] with its connection caps and header-read timeout.
pub async fn serve_state(
    listener: tokio::net::TcpListener,
    state: Arc<api::AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_desk(listener, state, desk::DeskConfig::default(), shutdown).await
}

/// [`serve_state`] with the desk console's limits and lifetimes given (tests shorten them).
pub async fn serve_with_desk(
    listener: tokio::net::TcpListener,
    state: Arc<api::AppState>,
    desk: desk::DeskConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Request spans name the URI, except the secret part of a desk link.
    let trace = tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!(
                "request",
                method = %req.method(),
                uri = %desk::loggable_uri(req.uri()),
                version = ?req.version(),
            )
        },
    );
    let app = router_with_desk(state.clone(), desk).layer(trace);
    let conns = (
        state.connections.clone(),
        state.trusted_proxies.clone(),
        state.metrics.clone(),
    );
    conn::serve(listener, app, conns, shutdown).await
}

/// The routes: the sync API ([`api`]), the attachment endpoints ([`attachments`]) and the
/// desk console under `/desk/` ([`desk`]).
pub fn router(state: Arc<api::AppState>) -> axum::Router {
    router_with_desk(state, desk::DeskConfig::default())
}

/// [`router`] with the desk console's configuration.
pub fn router_with_desk(state: Arc<api::AppState>, desk: desk::DeskConfig) -> axum::Router {
    use axum::routing::get;
    let more = axum::Router::new()
        .route(
            "/v1/attachments/{sha}",
            get(attachments::download)
                .head(attachments::head)
                .patch(attachments::upload),
        )
        .merge(desk::router(state.clone(), desk));
    api::router(state, more)
}
