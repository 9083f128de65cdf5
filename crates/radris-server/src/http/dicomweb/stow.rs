//! STOW-RS (PS3.18 10.5): `multipart/related; type="application/dicom"` requests, streamed
//! part by part into the archive's ingest (staging file, fsync, index) with the durability
//! of C-STORE. A bad part is listed in `FailedSOPSequence` and never costs the good ones.
//!
//! Memory: a part's bytes go to its staging file as they arrive; only the file meta group
//! (the first few hundred bytes) is buffered to learn the SOP UIDs and transfer syntax.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use radris_auth::Principal;
use radris_store::{IngestHint, StoreError};
use serde_json::{Value, json};

use super::super::AppState;
use super::super::problem::ApiError;
use super::{base_url, uid};

/// Failure reasons (PS3.18 Table 10.5.3-3 / PS3.4 C-STORE statuses).
const PROCESSING_FAILURE: u16 = 0x0110;
const DUPLICATE: u16 = 0x0111;
const OUT_OF_RESOURCES: u16 = 0xA700;
const DATASET_MISMATCH: u16 = 0xA900;
const CANNOT_UNDERSTAND: u16 = 0xC000;
/// The meta group must fit in this much of the part's start.
const META_WINDOW: usize = 64 * 1024;

struct Outcome {
    class_uid: String,
    instance_uid: String,
    study_uid: String,
    series_uid: String,
    /// False when the SOP instance was already stored and kept.
    newly: bool,
    failure: Option<(u16, String)>,
}

/// One audit record per study a STOW-RS request stored into (what the request-level record
/// cannot say), like the DIMSE C-STORE record per study and association.
fn audit_studies(state: &AppState, principal: &Principal, outcomes: &[Outcome]) {
    let mut per_study: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for o in outcomes.iter().filter(|o| !o.study_uid.is_empty()) {
        let e = per_study.entry(o.study_uid.as_str()).or_default();
        if o.failure.is_none() {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    for (study, (stored, refused)) in per_study {
        state.audit.record(radris_core::audit::AuditRecord {
            tenant: principal.tenant.as_str().to_owned(),
            actor: principal.actor.clone(),
            action: "dicomweb.stow".into(),
            outcome: if stored > 0 {
                radris_core::audit::Outcome::Success
            } else {
                radris_core::audit::Outcome::Failure
            },
            resource: format!("study {study}"),
            detail: format!("instances={stored} refused={refused}"),
            source: "http".into(),
        });
    }
}

pub async fn store(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    stow(st, p, headers, None, body).await
}

pub async fn store_in_study(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(study): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let study = uid("study UID", &study)?;
    stow(st, p, headers, Some(study), body).await
}

fn boundary_of(headers: &HeaderMap) -> Result<String, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unsupported_media(
                "Content-Type must be multipart/related; type=\"application/dicom\"",
            )
        })?;
    let mime: mime::Mime = ct
        .parse()
        .map_err(|_| ApiError::unsupported_media(format!("unparseable Content-Type {ct:?}")))?;
    if mime.type_() != mime::MULTIPART || mime.subtype().as_str() != "related" {
        return Err(ApiError::unsupported_media(format!(
            "Content-Type must be multipart/related; type=\"application/dicom\" (got {})",
            mime.essence_str()
        )));
    }
    if let Some(t) = mime.get_param("type")
        && !t.as_str().eq_ignore_ascii_case("application/dicom")
    {
        return Err(ApiError::unsupported_media(format!(
            "only application/dicom parts are accepted (got type={})",
            t.as_str()
        )));
    }
    mime.get_param(mime::BOUNDARY)
        .map(|b| b.as_str().to_owned())
        .ok_or_else(|| ApiError::bad_request("multipart Content-Type without a boundary"))
}

async fn stow(
    state: AppState,
    principal: Principal,
    headers: HeaderMap,
    study: Option<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let boundary = boundary_of(&headers)?;
    // a tenant made (by `admin token create`) after this server started has its data key
    // made elsewhere: load it before the first store
    state
        .archive
        .ensure_tenants(std::slice::from_ref(&principal.tenant))
        .await
        .map_err(|e| ApiError::internal("preparing the tenant's data key", e))?;
    let limit = state.http.max_stow_bytes;
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("{TOO_LARGE} ({limit} bytes)"),
        ));
    }
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut mp =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut in_flight: std::collections::VecDeque<(usize, Commit)> =
        std::collections::VecDeque::new();
    let mut framing_error: Option<String> = None;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let PartError::Framing(e) = framing(e);
                framing_error = Some(e);
                break;
            }
        };
        match store_part(&state, &principal, field, study.as_deref()).await {
            Ok(Part::Done(o)) => outcomes.push(o),
            Ok(Part::Committing(o, commit)) => {
                // the commit (parse, fsync, index) runs while the next part is received;
                // the response waits for all of them
                outcomes.push(o);
                in_flight.push_back((outcomes.len() - 1, commit));
                if in_flight.len() > MAX_COMMITS_IN_FLIGHT
                    && let Some((i, c)) = in_flight.pop_front()
                {
                    finish_commit(&mut outcomes[i], c).await;
                }
            }
            Err(PartError::Framing(e)) => {
                framing_error = Some(e);
                break;
            }
        }
    }
    while let Some((i, c)) = in_flight.pop_front() {
        finish_commit(&mut outcomes[i], c).await;
    }
    if framing_error.as_deref() == Some(TOO_LARGE) {
        // the parts before the limit are stored (acknowledged data stays; a retry of the
        // whole request is harmless under keep-first), but the request as a whole failed
        let stored = outcomes.iter().filter(|o| o.failure.is_none()).count();
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("{TOO_LARGE} ({limit} bytes); {stored} instances before the limit were stored"),
        ));
    }
    if outcomes.is_empty() {
        return Err(ApiError::bad_request(match framing_error {
            Some(e) => format!("malformed multipart body: {e}"),
            None => "the request holds no part".into(),
        }));
    }
    audit_studies(&state, &principal, &outcomes);
    // the storing user's site goes on studies that have none (site-scoped policies)
    let stored: Vec<String> = outcomes
        .iter()
        .filter(|o| o.failure.is_none())
        .map(|o| o.study_uid.clone())
        .collect();
    super::super::auth::stamp_site(&state, &principal, stored).await;
    let base = base_url(&state, &headers);
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    for o in &outcomes {
        match &o.failure {
            None => referenced.push(json!({
                "00081150": {"vr": "UI", "Value": [o.class_uid]},
                "00081155": {"vr": "UI", "Value": [o.instance_uid]},
                "00081190": {"vr": "UR", "Value": [format!("{base}/studies/{}/series/{}/instances/{}", o.study_uid, o.series_uid, o.instance_uid)]},
            })),
            Some((code, why)) => {
                tracing::info!(sop = %o.instance_uid, reason = %why, "STOW-RS part refused");
                let mut item = serde_json::Map::new();
                if !o.class_uid.is_empty() {
                    item.insert("00081150".into(), json!({"vr": "UI", "Value": [o.class_uid]}));
                }
                if !o.instance_uid.is_empty() {
                    item.insert("00081155".into(), json!({"vr": "UI", "Value": [o.instance_uid]}));
                }
                item.insert("00081197".into(), json!({"vr": "US", "Value": [code]}));
                // the reason in words (Text Value), for people reading the response
                item.insert("0040A160".into(), json!({"vr": "UT", "Value": [why]}));
                failed.push(Value::Object(item));
            }
        }
    }
    if let Some(e) = &framing_error {
        failed.push(json!({
            "00081197": {"vr": "US", "Value": [CANNOT_UNDERSTAND]},
            "0040A160": {"vr": "UT", "Value": [format!("malformed multipart body after the parts above: {e}")]},
        }));
    }
    let mut resp = serde_json::Map::new();
    if let Some(study) = study.as_ref().or_else(|| {
        outcomes
            .iter()
            .find(|o| o.failure.is_none())
            .map(|o| &o.study_uid)
    }) {
        resp.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [format!("{base}/studies/{study}")]}),
        );
    }
    if !failed.is_empty() {
        resp.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    if !referenced.is_empty() {
        resp.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    let status = if failed.is_empty() {
        StatusCode::OK
    } else if referenced.is_empty() {
        StatusCode::CONFLICT
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/dicom+json"),
        )],
        Value::Object(resp).to_string(),
    )
        .into_response())
}

type Commit = tokio::task::JoinHandle<Result<radris_store::Stored, StoreError>>;

/// Parts received ahead of their commit: enough to keep fsyncs and index transactions
/// grouped, few enough to bound memory (each holds at most one data set).
const MAX_COMMITS_IN_FLIGHT: usize = 8;

enum Part {
    Done(Outcome),
    Committing(Outcome, Commit),
}

async fn finish_commit(outcome: &mut Outcome, commit: Commit) {
    match commit.await {
        Ok(Ok(stored)) => {
            outcome.study_uid = stored.study_uid;
            outcome.series_uid = stored.series_uid;
            outcome.instance_uid = stored.sop_instance_uid;
            outcome.newly = stored.newly_stored;
        }
        Ok(Err(e)) => outcome.failure = Some(reason(&e)),
        Err(e) => {
            tracing::error!(error = %e, "STOW-RS commit task failed");
            outcome.failure = Some((PROCESSING_FAILURE, "internal error while storing".into()));
        }
    }
}

/// A multipart error: over the size limit, or broken framing.
fn framing(e: multer::Error) -> PartError {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            PartError::Framing(TOO_LARGE.into())
        }
        other => PartError::Framing(other.to_string()),
    }
}

/// How an over-size request is told apart from broken framing.
const TOO_LARGE: &str = "the request is larger than http.max_stow_bytes";

enum PartError {
    /// The multipart stream itself broke: no further part can be read.
    Framing(String),
}

fn failed(reason: u16, why: String) -> Outcome {
    Outcome {
        class_uid: String::new(),
        instance_uid: String::new(),
        study_uid: String::new(),
        series_uid: String::new(),
        newly: false,
        failure: Some((reason, why)),
    }
}

/// Drain the rest of a part we refuse, so the next part can be read.
async fn drain(field: &mut multer::Field<'_>) -> Result<(), PartError> {
    while field.chunk().await.map_err(framing)?.is_some() {}
    Ok(())
}

async fn store_part(
    state: &AppState,
    principal: &Principal,
    mut field: multer::Field<'_>,
    study: Option<&str>,
) -> Result<Part, PartError> {
    if let Some(ct) = field.content_type()
        && ct.essence_str() != "application/dicom"
    {
        let why = format!("part of type {} is not application/dicom", ct.essence_str());
        drain(&mut field).await?;
        return Ok(Part::Done(failed(CANNOT_UNDERSTAND, why)));
    }
    // buffer the start of the part until the file meta group can be read
    let mut head: Vec<u8> = Vec::new();
    let mut ended = false;
    while head.len() < META_WINDOW {
        match field.chunk().await.map_err(framing)? {
            Some(c) => head.extend_from_slice(&c),
            None => {
                ended = true;
                break;
            }
        }
    }
    let layout = match radris_dicom::part10::read_layout(head.as_slice()) {
        Ok(l) => l,
        Err(e) => {
            if !ended {
                drain(&mut field).await?;
            }
            return Ok(Part::Done(failed(
                CANNOT_UNDERSTAND,
                format!("the part is not a DICOM Part-10 object: {e}"),
            )));
        }
    };
    let trim = |s: &str| s.trim_end_matches(['\0', ' ']).to_owned();
    let hint = IngestHint {
        sop_class_uid: trim(layout.meta.media_storage_sop_class_uid()),
        sop_instance_uid: trim(layout.meta.media_storage_sop_instance_uid()),
        transfer_syntax: trim(layout.meta.transfer_syntax()),
        strict_uids: false,
        expected_study: study.map(str::to_owned),
    };
    let mut outcome = Outcome {
        class_uid: hint.sop_class_uid.clone(),
        instance_uid: hint.sop_instance_uid.clone(),
        study_uid: String::new(),
        series_uid: String::new(),
        newly: false,
        failure: None,
    };
    let start = usize::try_from(layout.dataset_offset)
        .unwrap_or(usize::MAX)
        .min(head.len());
    let meta = head[..start].to_vec();
    let mut ingest =
        match state
            .archive
            .begin_ingest_with_meta(principal.tenant.clone(), None, hint, meta)
        {
            Ok(i) => i,
            Err(e) => {
                if !ended {
                    drain(&mut field).await?;
                }
                outcome.failure = Some(reason(&e));
                return Ok(Part::Done(outcome));
            }
        };
    let mut write_error: Option<StoreError> = None;
    let first = head.split_off(start);
    if let Err(e) = tokio::task::block_in_place(|| ingest.write_owned(first)) {
        write_error = Some(e);
    }
    if !ended {
        while let Some(chunk) = field.chunk().await.map_err(framing)? {
            if write_error.is_none()
                && let Err(e) = tokio::task::block_in_place(|| ingest.write(&chunk))
            {
                write_error = Some(e);
            }
        }
    }
    if let Some(e) = write_error {
        outcome.failure = Some(reason(&e));
        return Ok(Part::Done(outcome));
    }
    let commit = tokio::task::spawn_blocking(move || ingest.commit());
    Ok(Part::Committing(outcome, commit))
}

fn reason(e: &StoreError) -> (u16, String) {
    let code = match e {
        StoreError::Duplicate(_) => DUPLICATE,
        StoreError::Mismatch(_) => DATASET_MISMATCH,
        StoreError::Unparseable(_) => CANNOT_UNDERSTAND,
        StoreError::TooLarge { .. } => OUT_OF_RESOURCES,
        StoreError::Io { .. } | StoreError::Database(_) => {
            tracing::error!(error = %e, "STOW-RS part could not be stored");
            return (
                PROCESSING_FAILURE,
                "the server could not store the instance".into(),
            );
        }
        _ => PROCESSING_FAILURE,
    };
    (code, e.to_string())
}
