//! WADO-RS (PS3.18 10.4): instances as `multipart/related; type="application/dicom"`
//! streamed from their files, metadata from the stored DICOM JSON headers, bulk data.
//!
//! Transfer syntax: without a `transfer-syntax` parameter, or with `*`, instances are sent
//! as stored (byte for byte, the same file that was received); other syntaxes are produced
//! by the pixel pipeline when it can encode them, else the request gets 406.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use radris_auth::Principal;
use radris_dicom::attrs::BULK_MARK;
use radris_store::StoredInstance;

use super::super::AppState;
use super::super::problem::ApiError;
use super::{accept, base_url, uid};

const CHUNK: usize = 512 * 1024;

/// One part of a multipart response.
pub(crate) enum PartSource {
    /// A stored instance, decrypted as it streams.
    Blob {
        archive: radris_store::Archive,
        inst: StoredInstance,
        content_type: String,
    },
    Bytes {
        bytes: Bytes,
        content_type: String,
        location: Option<String>,
    },
}

/// A streamed `multipart/related` response. Files are read in chunks as the client takes
/// them, so a 1000-instance series never sits in memory.
pub(crate) fn multipart(part_type: &str, parts: Vec<PartSource>) -> Response {
    let boundary = format!("radris-{}", uuid::Uuid::now_v7().simple());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let b = boundary.clone();
    tokio::spawn(async move {
        for part in parts {
            let (head, file) = match part {
                PartSource::Blob {
                    archive,
                    inst,
                    content_type,
                } => {
                    let file = match archive.open_blob(&inst).await {
                        Ok(f) => std::sync::Arc::new(f),
                        Err(e) => {
                            tracing::error!(blob = %inst.blob_path, error = %e, "stored object unreadable during retrieve");
                            let _ = tx
                                .send(Err(std::io::Error::other("stored object unreadable")))
                                .await;
                            return;
                        }
                    };
                    let len = file.len();
                    (
                        format!(
                            "--{b}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
                        ),
                        Some(file),
                    )
                }
                PartSource::Bytes {
                    bytes,
                    content_type,
                    location,
                } => {
                    let loc = location
                        .map(|l| format!("Content-Location: {l}\r\n"))
                        .unwrap_or_default();
                    let head = format!(
                        "--{b}\r\nContent-Type: {content_type}\r\n{loc}Content-Length: {}\r\n\r\n",
                        bytes.len()
                    );
                    if tx.send(Ok(Bytes::from(head))).await.is_err()
                        || tx.send(Ok(bytes)).await.is_err()
                        || tx.send(Ok(Bytes::from_static(b"\r\n"))).await.is_err()
                    {
                        return;
                    }
                    continue;
                }
            };
            if tx.send(Ok(Bytes::from(head))).await.is_err() {
                return;
            }
            if let Some(file) = file {
                let mut pos = 0u64;
                loop {
                    // decryption is CPU work: off the async workers, a chunk at a time
                    let reader = file.clone();
                    let chunk = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; CHUNK];
                        let mut filled = 0;
                        while filled < buf.len() {
                            match reader.read_at(pos + filled as u64, &mut buf[filled..]) {
                                Ok(0) => break,
                                Ok(n) => filled += n,
                                Err(e) => return Err(e),
                            }
                        }
                        buf.truncate(filled);
                        Ok(buf)
                    })
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                    match chunk {
                        Ok(buf) if buf.is_empty() => break,
                        Ok(buf) => {
                            pos += buf.len() as u64;
                            if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "stored object failed decryption during retrieve");
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            }
            if tx.send(Ok(Bytes::from_static(b"\r\n"))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(Bytes::from(format!("--{b}--\r\n")))).await;
    });
    // fused: body layers may poll once more after the end
    let stream =
        futures_util::StreamExt::fuse(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
    let ct = format!("multipart/related; type=\"{part_type}\"; boundary={boundary}");
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&ct).unwrap_or(HeaderValue::from_static("multipart/related")),
        )],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The transfer syntax asked for by `Accept` for `application/dicom` parts: `None` = as stored.
fn negotiate_dicom(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    for r in accept::parse(accept) {
        if r.media == "application/dicom" || r.admits_multipart_of("application/dicom") {
            return Ok(r.transfer_syntax.filter(|t| t != "*"));
        }
    }
    Err(ApiError::not_acceptable(
        "this resource is available as multipart/related; type=\"application/dicom\"",
    ))
}

async fn retrieve(
    state: AppState,
    principal: Principal,
    headers: HeaderMap,
    study: String,
    series: Option<String>,
    instance: Option<String>,
) -> Result<Response, ApiError> {
    let study = uid("study UID", &study)?;
    let series = series.map(|s| uid("series UID", &s)).transpose()?;
    let instance = instance.map(|s| uid("SOP instance UID", &s)).transpose()?;
    let wanted_ts = negotiate_dicom(&headers)?;
    let found = state
        .archive
        .instances_of(
            &principal.tenant,
            &study,
            series.as_deref(),
            instance.as_deref(),
            false,
        )
        .await?;
    if found.is_empty() {
        return Err(ApiError::not_found("no such study, series or instance"));
    }
    if let [(only, _)] = found.as_slice() {
        // one object: a blob that cannot be read is an error status, not a 200 cut short
        state.archive.open_blob(only).await?;
    }
    let mut parts = Vec::with_capacity(found.len());
    for (inst, _) in found {
        match &wanted_ts {
            Some(ts) if *ts != inst.transfer_syntax => {
                let bytes = transcode(&state, &inst, ts).await?;
                parts.push(PartSource::Bytes {
                    bytes,
                    content_type: format!("application/dicom; transfer-syntax={ts}"),
                    location: None,
                });
            }
            _ => parts.push(PartSource::Blob {
                archive: state.archive.clone(),
                content_type: format!(
                    "application/dicom; transfer-syntax={}",
                    inst.transfer_syntax
                ),
                inst,
            }),
        }
    }
    Ok(multipart("application/dicom", parts))
}

/// An instance re-encoded in another transfer syntax.
async fn transcode(state: &AppState, inst: &StoredInstance, ts: &str) -> Result<Bytes, ApiError> {
    let blob = super::pixels::blob(state, inst).await?;
    let ts = ts.to_owned();
    tokio::task::spawn_blocking(move || super::pixels::transcode_file(blob, &ts))
        .await
        .map_err(|e| ApiError::internal("transcoding", e))?
}

pub async fn study(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    retrieve(st, p, headers, study, None, None).await
}

pub async fn series(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    retrieve(st, p, headers, study, Some(series), None).await
}

pub async fn instance(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    retrieve(st, p, headers, study, Some(series), Some(instance)).await
}

/// Metadata: the stored headers joined into one JSON array, bulk references made absolute.
async fn metadata(
    state: AppState,
    principal: Principal,
    headers: HeaderMap,
    study: String,
    series: Option<String>,
    instance: Option<String>,
) -> Result<Response, ApiError> {
    let study = uid("study UID", &study)?;
    let series = series.map(|s| uid("series UID", &s)).transpose()?;
    let instance = instance.map(|s| uid("SOP instance UID", &s)).transpose()?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if !accept::parse(accept).iter().any(|r| {
        matches!(
            r.media.as_str(),
            "*/*" | "application/*" | "application/json" | "application/dicom+json"
        )
    }) {
        return Err(ApiError::not_acceptable(
            "metadata is available as application/dicom+json",
        ));
    }
    let found = state
        .archive
        .instances_of(
            &principal.tenant,
            &study,
            series.as_deref(),
            instance.as_deref(),
            true,
        )
        .await?;
    if found.is_empty() {
        return Err(ApiError::not_found("no such study, series or instance"));
    }
    let base = base_url(&state, &headers);
    let total: usize = found.iter().map(|(_, h)| h.len() + 64).sum();
    let mut body = String::with_capacity(total + 2);
    body.push('[');
    for (i, (inst, header_json)) in found.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        if header_json.contains(BULK_MARK) {
            let replacement = format!(
                "\"BulkDataURI\":\"{base}/studies/{}/series/{}/instances/{}/bulkdata/",
                inst.study_uid, inst.series_uid, inst.sop_uid
            );
            body.push_str(&header_json.replace(BULK_MARK, &replacement));
        } else {
            body.push_str(header_json);
        }
    }
    body.push(']');
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/dicom+json"),
        )],
        body,
    )
        .into_response())
}

pub async fn study_metadata(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(study): Path<String>,
) -> Result<Response, ApiError> {
    metadata(st, p, headers, study, None, None).await
}

pub async fn series_metadata(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    metadata(st, p, headers, study, Some(series), None).await
}

pub async fn instance_metadata(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    metadata(st, p, headers, study, Some(series), Some(instance)).await
}

/// The instance a frame/bulk/rendered request names, or 404.
pub(crate) async fn one_instance(
    state: &AppState,
    principal: &Principal,
    study: &str,
    series: &str,
    instance: &str,
) -> Result<StoredInstance, ApiError> {
    let study = uid("study UID", study)?;
    let series = uid("series UID", series)?;
    let instance = uid("SOP instance UID", instance)?;
    state
        .archive
        .instances_of(
            &principal.tenant,
            &study,
            Some(&series),
            Some(&instance),
            false,
        )
        .await?
        .into_iter()
        .next()
        .map(|(i, _)| i)
        .ok_or_else(|| ApiError::not_found("no such instance"))
}

/// Bulk data of a top-level attribute (`/bulkdata/7FE00010` for Pixel Data).
pub async fn bulkdata(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series, instance, tag)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let inst = one_instance(&st, &p, &study, &series, &instance).await?;
    if tag.len() != 8 || !tag.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "bulk data is addressed by an 8-digit hexadecimal tag",
        ));
    }
    let g = u16::from_str_radix(&tag[..4], 16).unwrap_or_default();
    let e = u16::from_str_radix(&tag[4..], 16).unwrap_or_default();
    let blob = super::pixels::blob(&st, &inst).await?;
    let bytes = tokio::task::spawn_blocking(move || super::pixels::bulk_value(blob, g, e))
        .await
        .map_err(|e| ApiError::internal("reading bulk data", e))??;
    let (bytes, status, content_range) = match byte_range(&headers, bytes.len())? {
        None => (bytes, axum::http::StatusCode::OK, None),
        Some((start, end)) => (
            bytes.slice(start..=end),
            axum::http::StatusCode::PARTIAL_CONTENT,
            Some(format!("bytes {start}-{end}/{}", bytes.len())),
        ),
    };
    let mut resp = multipart(
        "application/octet-stream",
        vec![PartSource::Bytes {
            bytes,
            content_type: "application/octet-stream".into(),
            location: None,
        }],
    );
    *resp.status_mut() = status;
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::CONTENT_RANGE, cr);
    }
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(resp)
}

/// A single `Range: bytes=a-b` (or `a-`, or `-n`) over a value of `len` bytes, inclusive.
/// Several ranges are not offered (the whole value is sent); an unsatisfiable range is 416.
pub(crate) fn byte_range(
    headers: &HeaderMap,
    len: usize,
) -> Result<Option<(usize, usize)>, ApiError> {
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let unsatisfiable = || {
        ApiError::new(
            axum::http::StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range {raw:?} is outside the {len} bytes of the value"),
        )
    };
    // RFC 9110 §14.2: other units and malformed ranges are ignored (the whole value is
    // sent); only a well-formed range outside the value is unsatisfiable
    let Some(spec) = raw.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let num = |s: &str| s.trim().parse::<usize>().ok();
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => match (num(a), num(b)) {
            (Some(x), Some(y)) => (x, y.min(len.saturating_sub(1))),
            _ => return Ok(None),
        },
        (false, true) => match num(a) {
            Some(x) => (x, len.saturating_sub(1)),
            None => return Ok(None),
        },
        (true, false) => match num(b) {
            Some(0) => return Err(unsatisfiable()),
            Some(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            None => return Ok(None),
        },
        (true, true) => return Ok(None),
    };
    if len == 0 || start >= len || start > end {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}
