//! The web viewer's saved work on a study: one annotation document per user and study
//! (`measurements`, `keyImages`, and whatever else the viewer keeps beside them), under
//! `/api/v1/studies/{study_uid}/annotations`.
//!
//! Writes are optimistic: the client sends the version it last read (0: none yet) and gets
//! 409 when someone (another tab) saved in between. The user is the caller's principal, so
//! nobody reads or writes another person's document; the study must exist in the caller's
//! tenant (404 otherwise, which is also what another tenant's study looks like). The auth
//! middleware decides read (GET) or write (PUT) of the study with Cedar and audits both; the
//! handlers add the study and the counts to the audit detail ([`AuditDetail`]).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use radris_auth::Principal;
use radris_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::AuditDetail;
use super::dicomweb::uid;
use super::problem::ApiError;
use super::rest::{ApiJson, Problem};

/// Largest PUT body (bytes).
pub const MAX_BODY_BYTES: usize = 2 << 20;
/// Most measurements one document may hold.
pub const MAX_MEASUREMENTS: usize = 5_000;
/// Most key images one document may hold.
pub const MAX_KEY_IMAGES: usize = 10_000;

/// A user's annotation document of a study as stored.
#[derive(Serialize, ToSchema)]
pub struct Annotations {
    /// Counts saves: 0 when nothing is saved yet. Send it back with the next save.
    version: i64,
    /// When the document was last saved (seconds since the Unix epoch); absent when
    /// nothing is saved yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
    /// An object with the arrays `measurements` and `keyImages` (other members are kept as
    /// they are).
    #[schema(value_type = Object)]
    document: serde_json::Value,
}

/// A save.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotationsPut {
    /// The version the client last read (0: nothing was saved yet).
    version: i64,
    /// An object with the arrays `measurements` (at most 5,000) and `keyImages` (at most
    /// 10,000).
    #[schema(value_type = Object)]
    document: serde_json::Value,
}

/// What a save answers.
#[derive(Serialize, ToSchema)]
pub struct AnnotationsSaved {
    /// The new version, to send with the next save.
    version: i64,
}

fn unprocessable(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
}

/// The counts of a document that has the shape the viewer writes; why not otherwise.
fn check_document(doc: &serde_json::Value) -> Result<(usize, usize), ApiError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| unprocessable("document must be a JSON object"))?;
    let array = |name: &str, max: usize| -> Result<usize, ApiError> {
        let a = obj
            .get(name)
            .and_then(|v| v.as_array())
            .ok_or_else(|| unprocessable(format!("document.{name} must be an array")))?;
        if a.len() > max {
            return Err(unprocessable(format!(
                "document.{name} holds {} entries; at most {max} are accepted",
                a.len()
            )));
        }
        Ok(a.len())
    };
    Ok((
        array("measurements", MAX_MEASUREMENTS)?,
        array("keyImages", MAX_KEY_IMAGES)?,
    ))
}

fn with_detail(body: impl IntoResponse, detail: String) -> Response {
    let mut resp = body.into_response();
    resp.extensions_mut().insert(AuditDetail(detail));
    resp
}

/// The caller's annotation document of a study (an empty one when nothing is saved yet).
#[utoipa::path(get, path = "/api/v1/studies/{study_uid}/annotations", tag = "studies",
    params(("study_uid" = String, Path, description = "Study Instance UID")),
    responses((status = 200, body = Annotations), (status = 400, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_annotations(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(study_uid): Path<String>,
) -> Result<Response, ApiError> {
    let study_uid = uid("study UID", &study_uid)?;
    let index = st.archive.index();
    if index.study_access(&p.tenant, &study_uid).await?.is_none() {
        return Err(ApiError::not_found("no such study"));
    }
    let body = match index.annotations(&p.tenant, &study_uid, &p.user).await? {
        Some(doc) => Annotations {
            version: doc.version,
            updated_at: Some(doc.updated_at.div_euclid(1000)),
            document: serde_json::from_str(&doc.document)
                .map_err(|e| ApiError::internal("reading a stored annotation document", e))?,
        },
        None => Annotations {
            version: 0,
            updated_at: None,
            document: serde_json::json!({"measurements": [], "keyImages": []}),
        },
    };
    let detail = format!("study={study_uid} version={}", body.version);
    Ok(with_detail(Json(body), detail))
}

/// Save the caller's annotation document of a study. 409 when it was saved elsewhere since
/// `version` (nothing is changed then: read it again and merge).
#[utoipa::path(put, path = "/api/v1/studies/{study_uid}/annotations", tag = "studies",
    params(("study_uid" = String, Path, description = "Study Instance UID")),
    request_body = AnnotationsPut,
    responses((status = 200, body = AnnotationsSaved), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn put_annotations(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(study_uid): Path<String>,
    ApiJson(req): ApiJson<AnnotationsPut>,
) -> Result<Response, ApiError> {
    let study_uid = uid("study UID", &study_uid)?;
    if req.version < 0 {
        return Err(unprocessable("version must be 0 or more"));
    }
    let (measurements, key_images) = check_document(&req.document)?;
    let text = serde_json::to_string(&req.document)
        .map_err(|e| ApiError::internal("encoding an annotation document", e))?;
    let expected = (req.version > 0).then_some(req.version);
    let version = st
        .archive
        .index()
        .put_annotations(&p.tenant, &study_uid, &p.user, &text, expected)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::not_found("no such study"),
            StoreError::Conflict { current, .. } => ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "the annotations were saved elsewhere since version {} (stored version {}); \
                     read them again and merge",
                    req.version,
                    current.unwrap_or(0)
                ),
            ),
            e => e.into(),
        })?;
    let detail = format!(
        "study={study_uid} measurements={measurements} key_images={key_images} version={version}"
    );
    Ok(with_detail(Json(AnnotationsSaved { version }), detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_need_both_arrays_within_limits() {
        assert_eq!(
            check_document(&json!({"measurements": [1, 2], "keyImages": [], "x": 1})).unwrap(),
            (2, 0)
        );
        for bad in [
            json!([]),
            json!("x"),
            json!({"measurements": []}),
            json!({"keyImages": []}),
            json!({"measurements": {}, "keyImages": []}),
            json!({"measurements": [], "keyImages": null}),
            json!({"measurements": vec![0; MAX_MEASUREMENTS + 1], "keyImages": []}),
            json!({"measurements": [], "keyImages": vec![0; MAX_KEY_IMAGES + 1]}),
        ] {
            let e = check_document(&bad).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
        assert!(
            check_document(&json!({
                "measurements": vec![0; MAX_MEASUREMENTS],
                "keyImages": vec![0; MAX_KEY_IMAGES]
            }))
            .is_ok()
        );
    }
}
