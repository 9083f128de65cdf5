//! Privacy operations for the data protection officer (admin scope), under
//! `/api/v1/admin/patients/{patient_id}`:
//!
//! * `GET …/export`: subject access export (GDPR art. 15): a ZIP of every stored instance of
//!   the patient (decrypted, byte-identical to what was received), the audit records that
//!   touched the patient's studies, and a manifest. Streamed; never held in memory.
//! * `PUT …/legal-hold` (`{"reason": "…"}`) and `DELETE …/legal-hold`: a legal hold blocks
//!   every deletion of the patient's data.
//! * `DELETE …`: erasure (GDPR art. 17) of everything stored of the patient, refused with 409
//!   while a hold is in force.
//!
//! Each is audited with its own action (`privacy.export`, `privacy.erase`,
//! `privacy.hold.place`, `privacy.hold.lift`) besides the per-request record.

use std::io::Write;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use radris_auth::{Principal, Scope};
use radris_core::audit::{AuditRecord, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::problem::ApiError;
use super::rest::{ApiJson, Problem};

/// Most audit records an export carries per study.
const AUDIT_PER_STUDY: i64 = 10_000;

fn audit(st: &AppState, p: &Principal, action: &str, patient: &str, detail: String) {
    st.audit.record(AuditRecord {
        tenant: p.tenant.as_str().to_owned(),
        actor: p.actor.clone(),
        action: action.to_owned(),
        outcome: Outcome::Success,
        resource: format!("patient {patient}"),
        detail,
        source: "http".into(),
    });
}

fn check_patient_id(raw: &str) -> Result<&str, ApiError> {
    let id = raw.trim();
    if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "a Patient ID is 1 to 64 characters without control characters",
        ));
    }
    Ok(id)
}

/// A `Write` that hands its bytes to the response body (used from a blocking task).
struct BodyWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| std::io::Error::other("client went away"))?;
        }
        Ok(())
    }
}

type Zip = zip::ZipWriter<zip::write::StreamWriter<BodyWriter>>;
type FillError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed `application/zip` response: `fill` writes the entries on a blocking thread,
/// the body takes them as the client reads. A failure mid-stream cuts the body (the client
/// sees an incomplete download, never a silently short archive) and is logged as `what`.
fn zip_response(
    filename: &str,
    what: &'static str,
    fill: impl FnOnce(&mut Zip) -> Result<(), FillError> + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let writer = BodyWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let result = (|| -> Result<(), FillError> {
            let mut zip = zip::ZipWriter::new_stream(writer);
            fill(&mut zip)?;
            let mut w = zip.finish()?.into_inner();
            w.flush()?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, "{what} failed mid-stream");
            let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    // fused: body layers may poll once more after the end
    let stream =
        futures_util::StreamExt::fuse(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
    let safe: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{safe}\"");
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Serialize)]
struct ManifestStudy {
    study_uid: String,
    instances: usize,
}

/// Subject access export: everything stored of one patient as a ZIP.
#[utoipa::path(get, path = "/api/v1/admin/patients/{patient_id}/export", tag = "privacy",
    params(("patient_id" = String, Path, description = "Patient ID")),
    responses((status = 200, content_type = "application/zip", description = "ZIP: dicom/…, audit.json, annotations.json, manifest.json"),
        (status = 404, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn export_patient(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(patient_id): Path<String>,
) -> Result<Response, ApiError> {
    let patient = check_patient_id(&patient_id)?.to_owned();
    let studies = st
        .archive
        .index()
        .studies_of_patient(&p.tenant, &patient)
        .await?;
    if studies.is_empty() {
        return Err(ApiError::not_found("no data stored for this patient"));
    }
    let mut instances = Vec::new();
    let mut manifest_studies = Vec::new();
    let mut audit_rows = std::collections::BTreeMap::new();
    // what viewer users saved about the images (measurements, key images) is personal data too
    let mut annotations = Vec::new();
    for study in &studies {
        for (user, doc) in st
            .archive
            .index()
            .annotations_of_study(&p.tenant, study)
            .await?
        {
            let document: serde_json::Value = serde_json::from_str(&doc.document)
                .map_err(|e| ApiError::internal("reading an annotation document", e))?;
            annotations.push(serde_json::json!({
                "study_uid": study,
                "user": user,
                "version": doc.version,
                "updated_at_ms": doc.updated_at,
                "document": document,
            }));
        }
        let found = st
            .archive
            .instances_of(&p.tenant, study, None, None, false)
            .await?;
        manifest_studies.push(ManifestStudy {
            study_uid: study.clone(),
            instances: found.len(),
        });
        instances.extend(found.into_iter().map(|(i, _)| i));
        let rows = radris_auth::audit::search(
            st.archive.index().pool(),
            p.tenant.as_str(),
            &radris_auth::audit::AuditQuery {
                actor: None,
                action_prefix: None,
                resource_contains: Some(study.clone()),
                since: None,
                until: None,
                limit: AUDIT_PER_STUDY,
            },
        )
        .await
        .map_err(|e| ApiError::internal("reading the audit log", e))?;
        for r in rows {
            audit_rows.insert(r.seq, r);
        }
    }
    let manifest = serde_json::json!({
        "patient_id": patient,
        "tenant": p.tenant.as_str(),
        "generated_at_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        "requested_by": p.actor,
        "studies": manifest_studies,
        "instances": instances.len(),
        "audit_records": audit_rows.len(),
        "annotation_documents": annotations.len(),
        "reports": "none stored: structured reporting is not part of this version",
    });
    let audit_json = serde_json::to_vec_pretty(&audit_rows.into_values().collect::<Vec<_>>())
        .map_err(|e| ApiError::internal("encoding the audit extract", e))?;
    let annotations_json = serde_json::to_vec_pretty(&annotations)
        .map_err(|e| ApiError::internal("encoding the annotations", e))?;
    let manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ApiError::internal("encoding the manifest", e))?;
    let mut readers = Vec::with_capacity(instances.len());
    for inst in &instances {
        readers.push((inst.clone(), st.archive.open_blob(inst).await?));
    }
    audit(
        &st,
        &p,
        "privacy.export",
        &patient,
        format!(
            "subject access export: {} studies, {} instances",
            studies.len(),
            instances.len()
        ),
    );
    let filename = format!("patient-{patient}.zip");
    Ok(zip_response(
        &filename,
        "subject access export",
        move |zip| {
            let stored = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(true);
            let deflated = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file("manifest.json", deflated)?;
            zip.write_all(&manifest_json)?;
            zip.start_file("audit.json", deflated)?;
            zip.write_all(&audit_json)?;
            zip.start_file("annotations.json", deflated)?;
            zip.write_all(&annotations_json)?;
            let mut buf = vec![0u8; 1 << 20];
            for (inst, reader) in readers {
                zip.start_file(
                    format!(
                        "dicom/{}/{}/{}.dcm",
                        inst.study_uid, inst.series_uid, inst.sop_uid
                    ),
                    stored,
                )?;
                let mut pos = 0u64;
                loop {
                    let n = reader.read_at(pos, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    zip.write_all(&buf[..n])?;
                    pos += n as u64;
                }
            }
            Ok(())
        },
    ))
}

/// A legal hold request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Why the data must be kept (case number, regulation); at least 5 characters.
    pub reason: String,
}

/// A legal hold in force.
#[derive(Serialize, ToSchema)]
pub struct HoldView {
    pub patient_id: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at_ms: i64,
}

/// Place (or update) a legal hold on a patient's data.
#[utoipa::path(put, path = "/api/v1/admin/patients/{patient_id}/legal-hold", tag = "privacy",
    params(("patient_id" = String, Path, description = "Patient ID")),
    request_body = HoldRequest,
    responses((status = 200, body = HoldView), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn place_hold(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(patient_id): Path<String>,
    ApiJson(req): ApiJson<HoldRequest>,
) -> Result<axum::Json<HoldView>, ApiError> {
    let patient = check_patient_id(&patient_id)?;
    let reason = req.reason.trim();
    if reason.chars().count() < 5 || reason.len() > 500 {
        return Err(ApiError::bad_request(
            "a legal hold needs a reason of 5 to 500 characters",
        ));
    }
    st.archive
        .index()
        .place_hold(&p.tenant, patient, reason, &p.actor)
        .await?;
    audit(
        &st,
        &p,
        "privacy.hold.place",
        patient,
        format!("reason: {reason}"),
    );
    let hold = st
        .archive
        .index()
        .hold_of(&p.tenant, patient)
        .await?
        .ok_or_else(|| ApiError::internal("reading back a legal hold", "missing"))?;
    Ok(axum::Json(HoldView {
        patient_id: hold.patient_id,
        reason: hold.reason,
        placed_by: hold.placed_by,
        placed_at_ms: hold.placed_at,
    }))
}

/// Lift a legal hold.
#[utoipa::path(delete, path = "/api/v1/admin/patients/{patient_id}/legal-hold", tag = "privacy",
    params(("patient_id" = String, Path, description = "Patient ID")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn lift_hold(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(patient_id): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    let patient = check_patient_id(&patient_id)?;
    if !st.archive.index().lift_hold(&p.tenant, patient).await? {
        return Err(ApiError::not_found("no legal hold on this patient"));
    }
    audit(&st, &p, "privacy.hold.lift", patient, String::new());
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// What an erasure removed.
#[derive(Serialize, ToSchema)]
pub struct Erased {
    pub studies: usize,
    pub instances: usize,
}

/// Erase everything stored of a patient. 409 while a legal hold is in force. Needs the
/// `delete` scope besides `admin`.
#[utoipa::path(delete, path = "/api/v1/admin/patients/{patient_id}", tag = "privacy",
    params(("patient_id" = String, Path, description = "Patient ID")),
    responses((status = 200, body = Erased), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn erase_patient(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(patient_id): Path<String>,
) -> Result<axum::Json<Erased>, ApiError> {
    let patient = check_patient_id(&patient_id)?;
    if !p.can(Scope::Delete) {
        return Err(ApiError::forbidden("erasure needs the 'delete' scope"));
    }
    let (studies, instances) = match st.archive.erase_patient(&p.tenant, patient).await {
        Ok(r) => r,
        Err(e @ radris_store::StoreError::LegalHold { .. }) => {
            st.audit.record(AuditRecord {
                tenant: p.tenant.as_str().to_owned(),
                actor: p.actor.clone(),
                action: "privacy.erase".into(),
                outcome: Outcome::Denied,
                resource: format!("patient {patient}"),
                detail: "refused: legal hold".into(),
                source: "http".into(),
            });
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    if studies == 0 {
        return Err(ApiError::not_found("no data stored for this patient"));
    }
    audit(
        &st,
        &p,
        "privacy.erase",
        patient,
        format!("erased {studies} studies, {instances} instances"),
    );
    Ok(axum::Json(Erased { studies, instances }))
}

/// De-identified export of a study (PS3.15 Annex E basic profile and the options asked
/// for): a ZIP of the de-identified instances and `report.json`. Instances that cannot be
/// de-identified, or that still declare burned-in annotation, are withheld and listed.
/// The report names only new identifiers: the export holds no key back to the originals.
#[utoipa::path(post, path = "/api/v1/admin/studies/{study_uid}/deidentify", tag = "privacy",
    params(("study_uid" = String, Path, description = "Study Instance UID")),
    request_body = crate::deid::DeidRequest,
    responses((status = 200, content_type = "application/zip", description = "ZIP: deidentified/…, report.json"),
        (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn deidentify_study(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(study_uid): Path<String>,
    ApiJson(req): ApiJson<crate::deid::DeidRequest>,
) -> Result<Response, ApiError> {
    let study = radris_core::Uid::parse(study_uid.trim())
        .map_err(|e| ApiError::bad_request(format!("study UID: {e}")))?;
    let project = req.project().map_err(ApiError::bad_request)?.to_owned();
    let salt = crate::deid::salt(&st.deid_key, p.tenant.as_str(), &project);
    let options = req.options(salt).map_err(ApiError::bad_request)?;
    let found = st
        .archive
        .instances_of(&p.tenant, study.as_str(), None, None, false)
        .await?;
    if found.is_empty() {
        return Err(ApiError::not_found("no such study"));
    }
    let mut readers = Vec::with_capacity(found.len());
    for (inst, _) in &found {
        readers.push(st.archive.open_blob(inst).await?);
    }
    st.audit.record(AuditRecord {
        tenant: p.tenant.as_str().to_owned(),
        actor: p.actor.clone(),
        action: "privacy.deidentify".into(),
        outcome: Outcome::Success,
        resource: format!("study {study}"),
        detail: format!("project {project}: {} instances", found.len()),
        source: "http".into(),
    });
    let include_burned_in = req.include_burned_in;
    Ok(zip_response(
        "deidentified.zip",
        "de-identified export",
        move |zip| {
            let stored = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(true);
            let mut written = Vec::new();
            let mut withheld = Vec::new();
            for (n, reader) in readers.into_iter().enumerate() {
                let bytes = reader.read_all()?;
                match radris_dicom::deid::deidentify_bytes(&bytes, &options) {
                    Ok((_, report))
                        if report.burned_in_annotation_remains && !include_burned_in =>
                    {
                        withheld.push(serde_json::json!({
                        "instance": n,
                        "reason": "declares burned-in annotation; give burned_in_regions or include_burned_in",
                    }));
                    }
                    Ok((clean, report)) => {
                        zip.start_file(
                            format!(
                                "deidentified/{}/{}/{}.dcm",
                                report.study_instance_uid.as_deref().unwrap_or("unknown"),
                                report.series_instance_uid.as_deref().unwrap_or("unknown"),
                                report.sop_instance_uid
                            ),
                            stored,
                        )?;
                        zip.write_all(&clean)?;
                        written.push(serde_json::json!({
                            "sop_instance_uid": report.sop_instance_uid,
                            "removed": report.removed,
                            "emptied": report.emptied,
                            "replaced": report.replaced,
                            "dates_shifted": report.dates_shifted,
                            "uids_remapped": report.uids_remapped,
                            "frames_cleaned": report.frames_cleaned,
                        }));
                    }
                    Err(e) => withheld.push(serde_json::json!({
                        "instance": n,
                        "reason": e.to_string(),
                    })),
                }
            }
            let report = serde_json::json!({
                "profile": "PS3.15 Annex E Basic Application Level Confidentiality Profile",
                "project": project,
                "instances": written,
                "withheld": withheld,
            });
            zip.start_file(
                "report.json",
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated),
            )?;
            zip.write_all(&serde_json::to_vec_pretty(&report)?)?;
            Ok(())
        },
    ))
}
