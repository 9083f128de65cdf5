//! Pixel-level DICOMweb: transcoding, bulk data, frames, rendered images and thumbnails, on
//! `radris_dicom::pixel`.

use std::path::Path;

use bytes::Bytes;
use dicom_object::OpenFileOptions;

use super::super::problem::ApiError;

fn open(path: &Path) -> Result<dicom_object::DefaultDicomObject, ApiError> {
    OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| ApiError::internal("reading a stored instance", e))
}

/// An instance re-encoded in transfer syntax `ts`, as Part-10 bytes.
pub(crate) fn transcode_file(path: &Path, ts: &str) -> Result<Bytes, ApiError> {
    let _obj = open(path)?;
    Err(ApiError::not_acceptable(format!(
        "transcoding to {ts} is not available"
    )))
}

/// The value bytes of a top-level attribute.
pub(crate) fn bulk_value(path: &Path, group: u16, element: u16) -> Result<Bytes, ApiError> {
    let obj = open(path)?;
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
