//! Pixel-level DICOMweb on `radris_dicom::pixel`: transcoding, bulk data, `/frames` (as
//! stored or decoded), `/rendered` and `/thumbnail` (PNG/JPEG with `window`, `viewport`,
//! `quality`), and WADO-URI for legacy clients.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dicom_dictionary_std::uids;
use dicom_object::OpenFileOptions;
use radris_auth::Principal;
use radris_dicom::pixel::{
    self, FileObject, ImageFormat, PixelError, RenderOptions, VoiFunction, Window,
};
use radris_store::StoredInstance;
use radris_store::crypto::BlobReader;

use super::super::AppState;
use super::super::problem::ApiError;
use super::super::rest::ApiQuery;
use super::wado::{PartSource, multipart, one_instance};
use super::{accept, uid};

/// Most frames one request may name.
const MAX_FRAMES_PER_REQUEST: usize = 4096;
const THUMBNAIL_SIZE: u32 = 128;
const EXPLICIT_LE: &str = uids::EXPLICIT_VR_LITTLE_ENDIAN;
const JPEG_BASELINE: &str = uids::JPEG_BASELINE8_BIT;

/// A decrypting reader over a stored instance.
pub(crate) async fn blob(st: &AppState, inst: &StoredInstance) -> Result<BlobReader, ApiError> {
    st.archive
        .open_blob(inst)
        .await
        .map_err(|e| ApiError::internal("opening a stored instance", e))
}

/// Parse a stored instance (blocking: decrypts and parses the whole file).
fn open(blob: BlobReader) -> Result<FileObject, ApiError> {
    let from = radris_store::crypto::ReadFrom {
        reader: &blob,
        pos: 128,
    };
    OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(std::io::BufReader::with_capacity(256 * 1024, from))
        .map_err(|e| ApiError::internal("reading a stored instance", e))
}

impl From<PixelError> for ApiError {
    fn from(e: PixelError) -> Self {
        match &e {
            PixelError::NoPixelData | PixelError::FrameOutOfRange { .. } => {
                ApiError::not_found(e.to_string())
            }
            PixelError::InvalidRequest(_) => ApiError::bad_request(e.to_string()),
            PixelError::UnsupportedSyntax { .. } | PixelError::UnsupportedFormat(_) => {
                ApiError::not_acceptable(e.to_string())
            }
            // the stored object cannot be decoded: say so, it is not a server fault
            _ => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("pixel work", e))?
}

/// An instance re-encoded in transfer syntax `ts`, as Part-10 bytes.
pub(crate) fn transcode_file(blob: BlobReader, ts: &str) -> Result<Bytes, ApiError> {
    let obj = open(blob)?;
    let bytes = match ts {
        EXPLICIT_LE => pixel::to_explicit_vr_le(&obj)?,
        JPEG_BASELINE => pixel::to_jpeg_baseline(&obj, 90)?,
        _ => {
            return Err(ApiError::not_acceptable(format!(
                "transfer syntax {ts} cannot be produced; available: as stored (*), {EXPLICIT_LE}, {JPEG_BASELINE} (8-bit images)"
            )));
        }
    };
    Ok(Bytes::from(bytes))
}

/// The value bytes of a top-level attribute.
pub(crate) fn bulk_value(blob: BlobReader, group: u16, element: u16) -> Result<Bytes, ApiError> {
    let obj = open(blob)?;
    let elem = obj
        .element(dicom_core::Tag(group, element))
        .map_err(|_| ApiError::not_found("the instance has no such attribute"))?;
    match elem.value() {
        dicom_core::value::Value::Primitive(p) => Ok(Bytes::from(p.to_bytes().into_owned())),
        dicom_core::value::Value::PixelSequence(seq) => {
            let mut out = Vec::new();
            for f in seq.fragments() {
                out.extend_from_slice(f);
            }
            Ok(Bytes::from(out))
        }
        dicom_core::value::Value::Sequence(_) => Err(ApiError::bad_request(
            "a sequence has no bulk data; its items are in the metadata",
        )),
    }
}

fn parse_frames(list: &str) -> Result<Vec<u32>, ApiError> {
    let frames: Vec<u32> = list
        .split(',')
        .map(|f| {
            f.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "frame list {list:?}: frames are numbers from 1, separated by commas"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    if frames.is_empty() || frames.len() > MAX_FRAMES_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "name between 1 and {MAX_FRAMES_PER_REQUEST} frames"
        )));
    }
    Ok(frames)
}

/// How frames are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameDelivery {
    /// As stored, with the stored syntax's media type.
    AsStored,
    /// Decoded to Explicit VR Little Endian, `application/octet-stream`.
    Decoded,
}

fn is_native(ts: &str) -> bool {
    radris_dimse::scp::is_native(ts)
}

fn negotiate_frames(headers: &HeaderMap, stored_ts: &str) -> Result<FrameDelivery, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let stored_media = pixel::frame_media_type(stored_ts);
    for r in accept::parse(accept) {
        if r.admits_multipart_of("application/octet-stream") && r.part_type.is_some()
            || r.media == "application/octet-stream"
        {
            match r.transfer_syntax.as_deref() {
                Some("*") => return Ok(FrameDelivery::AsStored),
                None | Some(EXPLICIT_LE) => {
                    return Ok(if is_native(stored_ts) {
                        FrameDelivery::AsStored
                    } else {
                        FrameDelivery::Decoded
                    });
                }
                Some(ts) if ts == stored_ts => return Ok(FrameDelivery::AsStored),
                Some(_) => continue,
            }
        }
        if r.admits_multipart_of(stored_media) {
            match r.transfer_syntax.as_deref() {
                None | Some("*") => return Ok(FrameDelivery::AsStored),
                Some(ts) if ts == stored_ts => return Ok(FrameDelivery::AsStored),
                Some(_) => continue,
            }
        }
    }
    Err(ApiError::not_acceptable(format!(
        "frames of this instance are available as multipart/related; type=\"{stored_media}\" (as stored) or type=\"application/octet-stream\" (decoded)"
    )))
}

/// `/frames/{list}`.
pub async fn frames(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let frames = parse_frames(&list)?;
    let inst = one_instance(&st, &p, &study, &series, &instance).await?;
    let delivery = negotiate_frames(&headers, &inst.transfer_syntax)?;
    let blob = blob(&st, &inst).await?;
    let stored_ts = inst.transfer_syntax.clone();
    let parts = blocking(move || {
        let obj = open(blob)?;
        let mut parts = Vec::with_capacity(frames.len());
        for f in frames {
            let (bytes, content_type) = match delivery {
                FrameDelivery::AsStored => {
                    let (b, media) = pixel::raw_frame(&obj, f)?;
                    (b, format!("{media}; transfer-syntax={stored_ts}"))
                }
                FrameDelivery::Decoded => {
                    let (b, _) = pixel::decoded_frame(&obj, f)?;
                    (
                        b,
                        format!("application/octet-stream; transfer-syntax={EXPLICIT_LE}"),
                    )
                }
            };
            parts.push(PartSource::Bytes {
                bytes: Bytes::from(bytes),
                content_type,
                location: None,
            });
        }
        Ok(parts)
    })
    .await?;
    let part_type = match delivery {
        FrameDelivery::Decoded => "application/octet-stream",
        FrameDelivery::AsStored => pixel::frame_media_type(&inst.transfer_syntax),
    };
    Ok(multipart(part_type, parts))
}

/// Query parameters of `/rendered` and `/thumbnail` (PS3.18 8.3.5).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RenderQuery {
    /// `center,width[,function]`
    window: Option<String>,
    /// `width,height`
    viewport: Option<String>,
    /// 1..100 (JPEG)
    quality: Option<u8>,
    /// Accepted and ignored (no burned-in annotation is added).
    annotation: Option<String>,
    /// Accepted and ignored (UTF-8 is always used).
    charset: Option<String>,
}

fn render_options(
    q: &RenderQuery,
    headers: &HeaderMap,
    frame: u32,
    default_viewport: Option<(u32, u32)>,
) -> Result<(RenderOptions, &'static str), ApiError> {
    let _ = (&q.annotation, &q.charset);
    let window = match &q.window {
        None => None,
        Some(w) => {
            let parts: Vec<&str> = w.split(',').map(str::trim).collect();
            let num = |s: &str| {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "window must be center,width[,LINEAR|LINEAR_EXACT|SIGMOID]",
                        )
                    })
            };
            if !(2..=3).contains(&parts.len()) {
                return Err(ApiError::bad_request(
                    "window must be center,width[,LINEAR|LINEAR_EXACT|SIGMOID]",
                ));
            }
            let function = match parts.get(2) {
                None => VoiFunction::Linear,
                Some(f) => VoiFunction::parse(f)
                    .ok_or_else(|| ApiError::bad_request(format!("unknown VOI function {f:?}")))?,
            };
            let width = num(parts[1])?;
            if width <= 0.0 {
                return Err(ApiError::bad_request("window width must be positive"));
            }
            Some(Window {
                center: num(parts[0])?,
                width,
                function,
            })
        }
    };
    let viewport = match &q.viewport {
        None => default_viewport,
        Some(v) => {
            let parts: Vec<u32> = v
                .split(',')
                .map(|s| s.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|_| ApiError::bad_request("viewport must be width,height"))?;
            match parts.as_slice() {
                [w, h]
                    if (1..=pixel::MAX_VIEWPORT).contains(w)
                        && (1..=pixel::MAX_VIEWPORT).contains(h) =>
                {
                    Some((*w, *h))
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "viewport must be width,height between 1 and {}",
                        pixel::MAX_VIEWPORT
                    )));
                }
            }
        }
    };
    let quality = match q.quality {
        None => 90,
        Some(v) if (1..=100).contains(&v) => v,
        Some(_) => return Err(ApiError::bad_request("quality must be between 1 and 100")),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let mut chosen = None;
    for r in accept::parse(accept) {
        chosen = match r.media.as_str() {
            "image/jpeg" | "image/*" | "*/*" => Some((ImageFormat::Jpeg { quality }, "image/jpeg")),
            "image/png" => Some((ImageFormat::Png, "image/png")),
            _ => continue,
        };
        break;
    }
    let (format, media) = chosen.ok_or_else(|| {
        ApiError::not_acceptable("rendered images are available as image/jpeg or image/png")
    })?;
    Ok((
        RenderOptions {
            frame,
            window,
            viewport,
            format,
        },
        media,
    ))
}

async fn render_response(
    st: &AppState,
    inst: &StoredInstance,
    opts: RenderOptions,
    media: &'static str,
) -> Result<Response, ApiError> {
    let blob = blob(st, inst).await?;
    let bytes = blocking(move || Ok(pixel::render(&open(blob)?, &opts)?)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        bytes,
    )
        .into_response())
}

pub async fn instance_rendered(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
    ApiQuery(q): ApiQuery<RenderQuery>,
) -> Result<Response, ApiError> {
    let (opts, media) = render_options(&q, &headers, 1, None)?;
    let inst = one_instance(&st, &p, &study, &series, &instance).await?;
    render_response(&st, &inst, opts, media).await
}

pub async fn frame_rendered(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
    ApiQuery(q): ApiQuery<RenderQuery>,
) -> Result<Response, ApiError> {
    let frames = parse_frames(&list)?;
    let [frame] = frames.as_slice() else {
        return Err(ApiError::bad_request(
            "a rendered frame request names one frame",
        ));
    };
    let (opts, media) = render_options(&q, &headers, *frame, None)?;
    let inst = one_instance(&st, &p, &study, &series, &instance).await?;
    render_response(&st, &inst, opts, media).await
}

pub async fn instance_thumbnail(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series, instance)): Path<(String, String, String)>,
    ApiQuery(q): ApiQuery<RenderQuery>,
) -> Result<Response, ApiError> {
    let (opts, media) = render_options(&q, &headers, 1, Some((THUMBNAIL_SIZE, THUMBNAIL_SIZE)))?;
    let inst = one_instance(&st, &p, &study, &series, &instance).await?;
    render_response(&st, &inst, opts, media).await
}

/// The representative image of a study or series: the middle image of the (first) series.
async fn representative(
    st: &AppState,
    p: &Principal,
    study: &str,
    series: Option<&str>,
) -> Result<StoredInstance, ApiError> {
    let study = uid("study UID", study)?;
    let series = series.map(|s| uid("series UID", s)).transpose()?;
    let all = st
        .archive
        .instances_of(&p.tenant, &study, series.as_deref(), None, true)
        .await?;
    if all.is_empty() {
        return Err(ApiError::not_found("no such study or series"));
    }
    let images: Vec<&StoredInstance> = all
        .iter()
        .filter(|(_, h)| h.contains("\"00280010\""))
        .map(|(i, _)| i)
        .collect();
    let first_series = images.first().map(|i| i.series_uid.clone());
    let same: Vec<&StoredInstance> = images
        .into_iter()
        .filter(|i| Some(&i.series_uid) == first_series.as_ref())
        .collect();
    same.get(same.len() / 2)
        .map(|i| (*i).clone())
        .ok_or_else(|| ApiError::not_found("no image to make a thumbnail of"))
}

pub async fn series_thumbnail(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<RenderQuery>,
) -> Result<Response, ApiError> {
    let (opts, media) = render_options(&q, &headers, 1, Some((THUMBNAIL_SIZE, THUMBNAIL_SIZE)))?;
    let inst = representative(&st, &p, &study, Some(&series)).await?;
    render_response(&st, &inst, opts, media).await
}

pub async fn study_thumbnail(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Path(study): Path<String>,
    ApiQuery(q): ApiQuery<RenderQuery>,
) -> Result<Response, ApiError> {
    let (opts, media) = render_options(&q, &headers, 1, Some((THUMBNAIL_SIZE, THUMBNAIL_SIZE)))?;
    let inst = representative(&st, &p, &study, None).await?;
    render_response(&st, &inst, opts, media).await
}

/// WADO-URI parameters (PS3.18 9): the legacy single-object GET.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct WadoUriQuery {
    requestType: String,
    studyUID: String,
    seriesUID: String,
    objectUID: String,
    contentType: Option<String>,
    transferSyntax: Option<String>,
    frameNumber: Option<u32>,
    rows: Option<u32>,
    columns: Option<u32>,
    windowCenter: Option<f64>,
    windowWidth: Option<f64>,
    imageQuality: Option<u8>,
    anonymize: Option<String>,
    charset: Option<String>,
}

pub async fn wado_uri(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<WadoUriQuery>,
) -> Result<Response, ApiError> {
    if q.requestType != "WADO" {
        return Err(ApiError::bad_request("requestType must be WADO"));
    }
    if q.anonymize.is_some() {
        return Err(ApiError::bad_request(
            "anonymize is not offered over WADO-URI; use the de-identification export",
        ));
    }
    let _ = &q.charset;
    let inst = one_instance(&st, &p, &q.studyUID, &q.seriesUID, &q.objectUID).await?;
    let content_type = q.contentType.as_deref().unwrap_or("image/jpeg");
    let first = content_type.split(',').next().unwrap_or_default().trim();
    match first {
        "application/dicom" => {
            let blob = blob(&st, &inst).await?;
            let bytes = match q.transferSyntax.as_deref() {
                Some(ts) if ts != inst.transfer_syntax => {
                    let ts = uid("transferSyntax", ts)?;
                    blocking(move || transcode_file(blob, &ts)).await?
                }
                _ => {
                    blocking(move || {
                        blob.read_all()
                            .map(Bytes::from)
                            .map_err(|e| ApiError::internal("reading a stored instance", e))
                    })
                    .await?
                }
            };
            Ok((
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/dicom"),
                )],
                bytes,
            )
                .into_response())
        }
        "image/jpeg" | "image/png" => {
            let window = match (q.windowCenter, q.windowWidth) {
                (Some(c), Some(w)) if w > 0.0 && c.is_finite() && w.is_finite() => Some(Window {
                    center: c,
                    width: w,
                    function: VoiFunction::Linear,
                }),
                (None, None) => None,
                _ => {
                    return Err(ApiError::bad_request(
                        "windowCenter and windowWidth come together; the width must be positive",
                    ));
                }
            };
            let viewport = match (q.rows, q.columns) {
                (None, None) => None,
                (r, c) => {
                    let r = r
                        .unwrap_or(pixel::MAX_VIEWPORT)
                        .clamp(1, pixel::MAX_VIEWPORT);
                    let c = c
                        .unwrap_or(pixel::MAX_VIEWPORT)
                        .clamp(1, pixel::MAX_VIEWPORT);
                    Some((c, r))
                }
            };
            let (format, media) = if first == "image/png" {
                (ImageFormat::Png, "image/png")
            } else {
                let quality = q.imageQuality.unwrap_or(90).clamp(1, 100);
                (ImageFormat::Jpeg { quality }, "image/jpeg")
            };
            let opts = RenderOptions {
                frame: q.frameNumber.unwrap_or(1).max(1),
                window,
                viewport,
                format,
            };
            render_response(&st, &inst, opts, media).await
        }
        other => Err(ApiError::not_acceptable(format!(
            "contentType {other:?} is not offered: use application/dicom, image/jpeg or image/png"
        ))),
    }
}
