//! The audit log for auditors and other systems, in the standard formats:
//! `GET /api/v1/audit/export?format=fhir` (a FHIR R4 `Bundle` of `AuditEvent`s) and
//! `?format=dicom` (DICOM PS3.15 A.5 audit messages, one `<AuditMessage>` per record, in an
//! `<AuditMessages>` element). Same filters as `/api/v1/audit`; admin scope; tenant-scoped.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use radris_auth::Principal;
use radris_auth::export::{BundleType, to_dicom_audit_message, to_fhir_bundle};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::problem::ApiError;
use super::rest::{ApiQuery, Problem};

/// Filters and format of an audit export.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditExportQuery {
    /// `fhir` (default) or `dicom`.
    format: Option<String>,
    actor: Option<String>,
    /// Prefix of the action.
    action: Option<String>,
    /// Substring of the resource.
    resource: Option<String>,
    /// Milliseconds since the Unix epoch, inclusive.
    since: Option<i64>,
    /// Milliseconds since the Unix epoch, exclusive.
    until: Option<i64>,
    /// 1 to 10000, default 1000.
    limit: Option<u32>,
}

/// Export audit records as FHIR AuditEvents or DICOM audit messages.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "admin", params(AuditExportQuery),
    responses((status = 200, description = "application/fhir+json Bundle, or application/xml"),
        (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn export_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<AuditExportQuery>,
) -> Result<Response, ApiError> {
    let limit = match q.limit {
        None => 1000,
        Some(l) if (1..=10_000).contains(&l) => l,
        Some(_) => return Err(ApiError::bad_request("limit must be between 1 and 10000")),
    };
    let format = q.format.as_deref().unwrap_or("fhir");
    if !matches!(format, "fhir" | "dicom") {
        return Err(ApiError::bad_request("format is fhir or dicom"));
    }
    let mut rows = radris_auth::audit::search(
        st.archive.index().pool(),
        p.tenant.as_str(),
        &radris_auth::audit::AuditQuery {
            actor: q.actor,
            action_prefix: q.action,
            resource_contains: q.resource,
            since: q.since,
            until: q.until,
            limit: i64::from(limit),
        },
    )
    .await
    .map_err(|e| ApiError::internal("searching the audit log", e))?;
    rows.sort_by_key(|r| r.seq);
    let source = format!("RADRIS@{}", st.dimse.directory.local_ae.as_str());
    let (body, ct) = if format == "fhir" {
        let bundle = to_fhir_bundle(&rows, &source, BundleType::Searchset);
        (
            serde_json::to_vec(&bundle).map_err(|e| ApiError::internal("encoding FHIR", e))?,
            "application/fhir+json",
        )
    } else {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AuditMessages>\n");
        for r in &rows {
            let msg = to_dicom_audit_message(r, &source);
            // one declaration for the document, none per message
            let body = msg
                .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
                .unwrap_or(&msg);
            xml.push_str(body);
            xml.push('\n');
        }
        xml.push_str("</AuditMessages>\n");
        (xml.into_bytes(), "application/xml")
    };
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(ct))], body).into_response())
}
