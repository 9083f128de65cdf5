//! HTTP surface of this stage: health, readiness, Prometheus metrics. DICOMweb and the REST
//! API mount here next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use radris_dimse::scp::ScpContext;
use radris_store::Archive;

#[derive(Clone)]
pub struct AppState {
    pub archive: Archive,
    pub metrics: PrometheusHandle,
    pub ready: Arc<AtomicBool>,
    pub dimse: Arc<ScpContext>,
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
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
