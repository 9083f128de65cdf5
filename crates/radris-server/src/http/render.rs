//! `/api/v1/render/studies/{study_uid}/series/{series_uid}/…`: server-side MPR, slabs,
//! curved reformats and volume renderings of archived series (for thin clients, phones and
//! browsers without fast WebGL), the volume's description, and derived series saved back.
//! Authorised as reads (pictures) or writes (saving) of the study, like every study route;
//! the middleware audits each request and saving writes its own record.
//!
//! * `GET …/volume` — grid, phases and what the build found (gaps, tilt) as JSON.
//! * `GET …/{mpr|slab|curved|vr|fusion}?…` — PNG or JPEG; [`crate::render::ViewParams`] are
//!   the query parameters. The picture's geometry is in `X-Radris-Geometry` (JSON), warnings
//!   about the series in `X-Radris-Warnings`, a fused view's alignment in
//!   `X-Radris-Registration`.
//! * `GET …/tic?center=x,y,z&radius=mm` — the time-intensity curve of a 4D series (JSON).
//! * `POST …/derived` — `{"mode", "params", "description", "count", "step_mm",
//!   "azimuth_step"}`: one picture, or `count` pictures stepping the plane along its normal
//!   (planes) or the camera about the patient's axis (renderings), stored as a new series.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use radris_auth::Principal;
use radris_core::audit::AuditRecord;
use serde::Deserialize;
use std::sync::Arc;

use super::AppState;
use super::problem::ApiError;
use crate::render::{self, Mode, RenderError, ViewParams};

const BASE: &str = "/api/v1/render/studies/{study_uid}/series/{series_uid}";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{BASE}/volume"), get(volume))
        .route(&format!("{BASE}/derived"), post(derived))
        .route(&format!("{BASE}/tic"), get(tic))
        .route(&format!("{BASE}/{{mode}}"), get(picture))
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::NotFound(m) => ApiError::not_found(m),
            RenderError::BadRequest(m) => ApiError::bad_request(m),
            RenderError::NotAVolume(m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the series cannot be shown as a volume: {m}"),
            ),
            e @ RenderError::Internal { .. } => ApiError::internal("rendering", e),
        }
    }
}

fn uids(study: &str, series: &str) -> Result<(), ApiError> {
    for (what, u) in [("study UID", study), ("series UID", series)] {
        radris_core::Uid::parse(u)
            .map_err(|e| ApiError::bad_request(format!("{what} {u:?}: {e}")))?;
    }
    Ok(())
}

async fn load(
    st: &AppState,
    p: &Principal,
    study: &str,
    series: &str,
) -> Result<std::sync::Arc<render::LoadedSeries>, ApiError> {
    uids(study, series)?;
    Ok(st
        .volumes
        .series(&st.archive, &p.tenant, study, series)
        .await?)
}

async fn volume(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let s = load(&st, &p, &study, &series).await?;
    Ok(Json(render::info(&s)).into_response())
}

/// The overlay of a fused view (a series of the same study) and how it lies over the base.
async fn overlay(
    st: &AppState,
    p: &Principal,
    study: &str,
    base: &Arc<render::LoadedSeries>,
    params: &ViewParams,
) -> Result<(Arc<render::LoadedSeries>, Arc<render::Aligned>), ApiError> {
    let uid = params.overlay.as_deref().ok_or_else(|| {
        ApiError::bad_request("fusion needs overlay=<series UID> of the same study")
    })?;
    let over = load(st, p, study, uid).await?;
    let aligned = st.volumes.align(base, &over, params.register).await?;
    Ok((over, aligned))
}

/// `GET …/tic?center=x,y,z&radius=mm`: the time-intensity curve of a 4D series.
async fn tic(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((study, series)): Path<(String, String)>,
    params: Result<Query<ViewParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let s = load(&st, &p, &study, &series).await?;
    let curve = tokio::task::spawn_blocking(move || render::time_intensity(&s, &params))
        .await
        .map_err(|e| ApiError::internal("time-intensity curve", e))??;
    Ok(Json(curve).into_response())
}

async fn picture(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((study, series, mode)): Path<(String, String, String)>,
    params: Result<Query<ViewParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mode = Mode::parse(&mode)?;
    let (format, media) = render::format_of(&params)?;
    let s = load(&st, &p, &study, &series).await?;
    let warnings = render::warnings(&s.report).join("; ");
    let fused = match mode {
        Mode::Fusion => Some(overlay(&st, &p, &study, &s, &params).await?),
        _ => None,
    };
    let registration = fused.as_ref().map(|(_, a)| a.to_json().to_string());
    let (bytes, geometry) = tokio::task::spawn_blocking(move || {
        let pic = match &fused {
            Some((over, aligned)) => render::draw_fused(&s, over, aligned, &params)?,
            None => render::draw(&s, mode, &params)?,
        };
        let geometry = serde_json::to_string(&pic.geometry()).unwrap_or_default();
        Ok::<_, RenderError>((render::encode(&pic, format)?, geometry))
    })
    .await
    .map_err(|e| ApiError::internal("rendering", e))??;
    let mut res = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        bytes,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&geometry) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-radris-geometry"), v);
    }
    if let Some(r) = registration
        && let Ok(v) = HeaderValue::from_str(&r)
    {
        res.headers_mut()
            .insert(HeaderName::from_static("x-radris-registration"), v);
    }
    if !warnings.is_empty()
        && let Ok(v) = HeaderValue::from_str(&warnings)
    {
        res.headers_mut()
            .insert(HeaderName::from_static("x-radris-warnings"), v);
    }
    Ok(res)
}

/// `POST …/derived`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DerivedRequest {
    mode: Mode,
    #[serde(default)]
    params: ViewParams,
    description: Option<String>,
    /// Pictures in the series (default 1, at most 500).
    count: Option<usize>,
    /// Planes: millimetres between consecutive pictures along the normal (default: the
    /// slab thickness, else the pixel size).
    step_mm: Option<f64>,
    /// Renderings: degrees of azimuth between consecutive pictures (default 360 / count).
    azimuth_step: Option<f64>,
}

const MAX_DERIVED: usize = 500;

async fn derived(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((study, series)): Path<(String, String)>,
    body: Result<Json<DerivedRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let count = req.count.unwrap_or(1);
    if count == 0 || count > MAX_DERIVED {
        return Err(ApiError::bad_request(format!("count is 1..{MAX_DERIVED}")));
    }
    if let Some(d) = &req.description
        && (d.len() > 64 || d.chars().any(|c| c.is_control() || c == '\\'))
    {
        return Err(ApiError::bad_request(
            "description: at most 64 characters, no control characters or backslashes",
        ));
    }
    let s = load(&st, &p, &study, &series).await?;
    let fused = match req.mode {
        Mode::Fusion if count == 1 => Some(overlay(&st, &p, &study, &s, &req.params).await?),
        _ => None,
    };
    let archive = st.archive.clone();
    let tenant = p.tenant.clone();
    let (series_uid, sops) = tokio::task::spawn_blocking(move || {
        let pictures = match &fused {
            Some((over, aligned)) => vec![render::draw_fused(&s, over, aligned, &req.params)?],
            None => render::derived_pictures(
                &s,
                req.mode,
                &req.params,
                count,
                req.step_mm,
                req.azimuth_step,
            )?,
        };
        let description = req
            .description
            .unwrap_or_else(|| render::default_description(req.mode, &req.params));
        let derivation = render::derivation_text(req.mode, &req.params, count, req.step_mm);
        let d =
            render::derived::DerivedSeries::new(&s, req.mode, &req.params, description, derivation);
        let mut sops = Vec::with_capacity(pictures.len());
        for (n, pic) in pictures.iter().enumerate() {
            let (sop, bytes) = d.instance(pic, n + 1)?;
            archive
                .ingest_part10(tenant.clone(), &bytes)
                .map_err(|e| RenderError::Internal {
                    context: "storing the derived series",
                    cause: e.to_string(),
                })?;
            sops.push(sop);
        }
        Ok::<_, RenderError>((d.series_uid.clone(), sops))
    })
    .await
    .map_err(|e| ApiError::internal("saving the derived series", e))??;
    st.audit.record(AuditRecord::success(
        p.tenant.as_str(),
        &p.actor,
        "render.derived.store",
        format!("study {study} series {series_uid}"),
        format!("source series {series} instances={}", sops.len()),
        "http",
    ));
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "study_uid": study,
            "series_uid": series_uid,
            "source_series_uid": series,
            "instances": sops,
        })),
    )
        .into_response())
}
