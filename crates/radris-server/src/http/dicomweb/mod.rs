//! DICOMweb (PS3.18) under `/dicom-web`: QIDO-RS search, WADO-RS retrieve, STOW-RS store,
//! and WADO-URI for legacy clients. Every route sits behind the auth middleware; handlers get
//! the caller's [`Principal`](radris_auth::Principal) and use its tenant for every lookup.

mod accept;
mod pixels;
mod qido;
mod stow;
mod wado;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use radris_core::Uid;

use super::AppState;
use super::problem::ApiError;

/// Read routes (QIDO, WADO): short requests, under the request timeout.
pub fn read_routes() -> Router<AppState> {
    Router::new()
        .route("/dicom-web/studies", get(qido::studies))
        .route("/dicom-web/series", get(qido::all_series))
        .route("/dicom-web/instances", get(qido::all_instances))
        .route("/dicom-web/studies/{study}/series", get(qido::study_series))
        .route(
            "/dicom-web/studies/{study}/instances",
            get(qido::study_instances),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances",
            get(qido::series_instances),
        )
        .route("/dicom-web/studies/{study}", get(wado::study))
        .route(
            "/dicom-web/studies/{study}/series/{series}",
            get(wado::series),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}",
            get(wado::instance),
        )
        .route(
            "/dicom-web/studies/{study}/metadata",
            get(wado::study_metadata),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/metadata",
            get(wado::series_metadata),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(wado::instance_metadata),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
            get(wado::bulkdata),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(pixels::frames),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(pixels::instance_rendered),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(pixels::frame_rendered),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            get(pixels::instance_thumbnail),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/thumbnail",
            get(pixels::series_thumbnail),
        )
        .route("/dicom-web/studies/{study}/thumbnail", get(pixels::study_thumbnail))
        .route("/wado", get(pixels::wado_uri))
}

/// STOW-RS: long uploads, streamed, not under the request timeout.
pub fn store_routes() -> Router<AppState> {
    Router::new()
        .route("/dicom-web/studies", post(stow::store))
        .route("/dicom-web/studies/{study}", post(stow::store_in_study))
}

/// A UID from a path or parameter, validated.
pub(crate) fn uid(what: &str, raw: &str) -> Result<String, ApiError> {
    Uid::parse(raw)
        .map(|u| u.as_str().to_owned())
        .map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// The DICOMweb root clients reach us at: the configured public URL, else from `Host`.
pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.http.public_url {
        return format!("{}/dicom-web", u.trim_end_matches('/'));
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = if state.tls { "https" } else { "http" };
    format!("{scheme}://{host}/dicom-web")
}
