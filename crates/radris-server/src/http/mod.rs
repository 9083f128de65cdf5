//! The HTTP service: health, readiness and metrics (open), DICOMweb and the REST API (behind
//! [`auth::require`]: authenticated, scope-checked, tenant-scoped and audited), and the web
//! application's static files at `/` ([`webapp`]: public, no patient data).
//!
//! Hygiene for every protected route: request body limit (STOW-RS streams and has its own),
//! request timeout (not for STOW-RS), CORS from the configuration, compression of JSON.

pub mod annotations;
pub mod audit_export;
pub mod auth;
pub mod dicomweb;
pub mod oidc;
pub mod policy;
pub mod privacy;
pub mod problem;
pub mod render;
pub mod reports;
pub mod rest;
pub mod ris;
pub mod session;
pub mod webapp;
pub mod webauthn;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use radris_auth::Tokens;
use radris_core::audit::Audit;
use radris_core::config::HttpConfig;
use radris_dimse::scp::ScpContext;
use radris_store::Archive;
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

#[derive(Clone)]
pub struct AppState {
    pub archive: Archive,
    pub metrics: PrometheusHandle,
    pub ready: Arc<AtomicBool>,
    pub dimse: Arc<ScpContext>,
    pub tokens: Arc<Tokens>,
    pub users: Arc<radris_auth::Users>,
    pub login_limiter: Arc<session::LoginLimiter>,
    /// Sign-in through an external OpenID Connect provider (`[oidc]`); None: off.
    pub oidc: Option<Arc<radris_auth::oidc::Oidc>>,
    pub audit: Audit,
    /// The `[http]` options; `web_dir` is the folder actually served (resolved at start:
    /// `webapp::resolve_web_dir`), `None` when there is no build.
    pub http: Arc<HttpConfig>,
    /// Whether clients reach us over TLS (for the URLs we hand out).
    pub tls: bool,
    /// Secret behind de-identification salts (derived from the master key): a tenant's
    /// de-identified exports are consistent per project and unlinkable across projects.
    pub deid_key: Arc<[u8; 32]>,
    /// Cedar authorisation: per-tenant policies and break-glass grants (see `auth.rs`).
    pub policy: radris_auth::policy::PolicyEngine,
    /// The RIS (orders, scheduling, worklists) on the same index.
    pub ris: radris_ris::Ris,
    /// Reports (templates, drafts, signed versions) on the same index.
    pub reports: radris_report::service::Reports,
    /// Series volumes for `/api/v1/render/…` (LRU by memory).
    pub volumes: Arc<crate::render::Volumes>,
}

/// Install the Prometheus recorder once per process.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let h = PrometheusBuilder::new().install_recorder()?;
    Ok(HANDLE.get_or_init(|| h).clone())
}

pub fn router(state: AppState) -> Router {
    let cfg = state.http.clone();
    let reads = dicomweb::read_routes()
        .layer(DefaultBodyLimit::max(
            usize::try_from(cfg.max_body_bytes).unwrap_or(usize::MAX),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_s.max(1)),
        ));
    let (api, openapi) = rest::routes().split_for_parts();
    let api = api
        .merge(ris::routes())
        .merge(reports::routes())
        .merge(render::routes())
        .layer(DefaultBodyLimit::max(
            usize::try_from(cfg.max_body_bytes).unwrap_or(usize::MAX),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_s.max(1)),
        ));
    let sign_in = Router::new()
        .route("/api/v1/auth/login", axum::routing::post(session::login))
        .route("/api/v1/auth/logout", axum::routing::post(session::logout))
        .route("/api/v1/auth/methods", get(oidc::methods))
        .route("/api/v1/auth/oidc/login", get(oidc::login))
        .route("/api/v1/auth/oidc/callback", get(oidc::callback))
        .route(
            "/api/v1/auth/webauthn/login/finish",
            axum::routing::post(webauthn::login_finish),
        )
        .layer(DefaultBodyLimit::max(16 * 1024));
    let protected = reads
        .merge(api)
        .merge(dicomweb::store_routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require));
    let compress = CompressionLayer::new()
        .quality(CompressionLevel::Fastest)
        .compress_when(
            DefaultPredicate::new()
                .and(NotForContentType::new("multipart/related"))
                .and(NotForContentType::new("application/dicom"))
                .and(NotForContentType::new("application/zip"))
                .and(NotForContentType::new("image/")),
        );
    let hsts = state.tls;
    let web = webapp::WebApp::new(cfg.web_dir.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(protected)
        .merge(sign_in)
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
        // the web application at `/` (unknown paths of the server's own stay JSON 404s)
        .fallback(move |req: axum::extract::Request| web.clone().serve(req))
        .layer(compress)
        .layer(cors(&cfg))
        .layer(middleware::from_fn(no_store_for_api))
        .layer(middleware::map_response(
            move |mut res: axum::response::Response| async move {
                // over HTTPS, browsers must never fall back to plain HTTP (one year, RFC 6797)
                if hsts {
                    res.headers_mut().insert(
                        axum::http::header::STRICT_TRANSPORT_SECURITY,
                        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
                    );
                }
                res
            },
        ))
        .with_state(state)
}

/// API answers (tokens, TOTP secrets, recovery codes, patient data) must not be kept by
/// browsers or shared caches: `Cache-Control: no-store` unless a handler chose otherwise.
async fn no_store_for_api(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    if api
        && !res
            .headers()
            .contains_key(axum::http::header::CACHE_CONTROL)
    {
        res.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    res
}

fn cors(cfg: &HttpConfig) -> CorsLayer {
    let origins: Vec<HeaderValue> = cfg
        .cors_origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "ignoring an invalid CORS origin");
                None
            }
        })
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::PUT])
        .allow_headers([header::AUTHORIZATION, header::ACCEPT, header::CONTENT_TYPE])
        .expose_headers([header::WARNING, header::CONTENT_LOCATION])
        .max_age(Duration::from_secs(600))
}

/// Ready when the index answers and we are not shutting down.
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if !s.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match sqlx::query("SELECT 1")
        .execute(s.archive.index().pool())
        .await
    {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::error!(error = %e, "readiness: index unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "index unavailable")
        }
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("radris_dimse_associations_active").set(s.dimse.active_associations() as f64);
    metrics::gauge!("radris_render_volume_cache_bytes").set(s.volumes.used_bytes() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
