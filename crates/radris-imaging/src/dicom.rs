//! From DICOM objects to [`Slice`]s: geometry, rescale, decoded pixels and the temporal keys
//! 4D grouping needs. Single-frame images give one [`SeriesFrame`]; enhanced multi-frame
//! objects give one per frame, with geometry from the per-frame or shared functional groups.
//!
//! This is the only module that reads DICOM; the rest of the engine sees voxels and geometry.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use radris_dicom::pixel::{self, FileObject, PixelError, frame_attr};
use thiserror::Error;

use crate::volume::{Slice, SlicePixels};

/// One frame of a series, ready for [`crate::volume::build`], with what identifies it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesFrame {
    pub slice: Slice,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    /// Frame number within its object, from 1.
    pub frame: u32,
    pub instance_number: Option<i64>,
    /// Temporal Position Index (0020,9128) of the frame, else Temporal Position Identifier
    /// (0020,0100) of the image.
    pub temporal_position: Option<i64>,
    /// Trigger Time (0018,1060) or Nominal Cardiac Trigger Delay Time (0020,9153), ms.
    pub trigger_time_ms: Option<f64>,
    /// Acquisition time of day in seconds (Frame Acquisition DateTime or Acquisition Time).
    pub acquisition_seconds: Option<f64>,
    /// Number of Temporal Positions (0020,0105) when declared.
    pub temporal_positions: Option<i64>,
}

/// Why an object gives no frames.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("{sop}: {name} ({tag}) is missing or invalid")]
    Attribute {
        sop: String,
        name: &'static str,
        tag: Tag,
    },
    #[error("{sop}: {reason}")]
    Unsupported { sop: String, reason: String },
    #[error("{sop}: pixel data: {source}")]
    Pixel {
        sop: String,
        #[source]
        source: PixelError,
    },
    #[error("not a DICOM Part-10 object: {0}")]
    Parse(String),
}

impl FrameError {
    fn unsupported(sop: &str, reason: impl Into<String>) -> Self {
        FrameError::Unsupported {
            sop: sop.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Parse Part-10 bytes (preamble optional).
pub fn parse_part10(bytes: &[u8]) -> Result<FileObject, FrameError> {
    let from = if bytes.get(128..132) == Some(b"DICM".as_slice()) {
        &bytes[128..]
    } else {
        bytes
    };
    dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(from)
        .map_err(|e| FrameError::Parse(e.to_string()))
}

/// Frames of Part-10 bytes; see [`frames_from_object`].
pub fn frames_from_part10(bytes: &[u8]) -> Result<Vec<SeriesFrame>, FrameError> {
    frames_from_object(&parse_part10(bytes)?)
}

fn text(el: Option<&InMemElement>) -> Option<String> {
    el?.to_str()
        .ok()
        .map(|s| {
            s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_owned()
        })
        .filter(|s| !s.is_empty())
}

fn floats(el: Option<&InMemElement>) -> Option<Vec<f64>> {
    let v = el?.to_multi_float64().ok()?;
    v.iter().all(|x| x.is_finite()).then_some(v)
}

fn float(el: Option<&InMemElement>) -> Option<f64> {
    floats(el)?.first().copied()
}

fn int(el: Option<&InMemElement>) -> Option<i64> {
    el?.to_int::<i64>().ok()
}

/// `HHMMSS.FFFFFF` (or the time part of a DT) as seconds of the day.
fn seconds_of_day(s: &str) -> Option<f64> {
    let t = s.get(8..).filter(|_| s.len() > 8 && !s.contains(':'));
    let t = t.unwrap_or(s);
    let t = t.split(['+', '-']).next()?;
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    let hh: f64 = hms.get(0..2)?.parse().ok()?;
    let mm: f64 = hms.get(2..4).map_or(Some(0.0), |v| v.parse().ok())?;
    let ss: f64 = hms.get(4..6).map_or(Some(0.0), |v| v.parse().ok())?;
    let f: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    Some(hh * 3600.0 + mm * 60.0 + ss + f)
}

/// Every frame of one object as a [`SeriesFrame`]: Image Position/Orientation (Patient),
/// Pixel Spacing, Rescale Slope/Intercept and Frame of Reference, from the per-frame or
/// shared functional groups of enhanced objects or the top level of classic ones; pixels
/// decoded through `radris_dicom::pixel` (every transfer syntax it knows). Monochrome only;
/// colour, 1-bit and objects without plane geometry are refused with the reason.
pub fn frames_from_object(obj: &FileObject) -> Result<Vec<SeriesFrame>, FrameError> {
    let sop = text(obj.get(tags::SOP_INSTANCE_UID)).unwrap_or_default();
    let sop_class = text(obj.get(tags::SOP_CLASS_UID)).unwrap_or_default();
    let info = pixel::pixel_info(obj).map_err(|source| FrameError::Pixel {
        sop: sop.clone(),
        source,
    })?;
    if info.samples_per_pixel != 1 || !info.photometric.starts_with("MONOCHROME") {
        return Err(FrameError::unsupported(
            &sop,
            format!(
                "{} with {} samples per pixel: volumes are monochrome",
                info.photometric, info.samples_per_pixel
            ),
        ));
    }
    if !matches!(info.bits_allocated, 8 | 16 | 32) {
        return Err(FrameError::unsupported(
            &sop,
            format!("{} bits allocated", info.bits_allocated),
        ));
    }
    let missing = |name, tag| FrameError::Attribute {
        sop: sop.clone(),
        name,
        tag,
    };
    let frame_of_reference = text(obj.get(tags::FRAME_OF_REFERENCE_UID)).unwrap_or_default();
    let instance_number = int(obj.get(tags::INSTANCE_NUMBER));
    let temporal_positions = int(obj.get(tags::NUMBER_OF_TEMPORAL_POSITIONS));
    let image_temporal = int(obj.get(tags::TEMPORAL_POSITION_IDENTIFIER));
    let image_trigger = float(obj.get(tags::TRIGGER_TIME));
    let image_time = text(obj.get(tags::ACQUISITION_TIME))
        .or_else(|| text(obj.get(tags::CONTENT_TIME)))
        .and_then(|t| seconds_of_day(&t));
    let mut out = Vec::with_capacity(info.number_of_frames as usize);
    for index in 0..info.number_of_frames as usize {
        let position = floats(frame_attr(
            obj,
            index,
            tags::PLANE_POSITION_SEQUENCE,
            tags::IMAGE_POSITION_PATIENT,
        ))
        .filter(|v| v.len() == 3)
        .ok_or_else(|| missing("ImagePositionPatient", tags::IMAGE_POSITION_PATIENT))?;
        let orientation = floats(frame_attr(
            obj,
            index,
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        ))
        .filter(|v| v.len() == 6)
        .ok_or_else(|| missing("ImageOrientationPatient", tags::IMAGE_ORIENTATION_PATIENT))?;
        let spacing = floats(frame_attr(
            obj,
            index,
            tags::PIXEL_MEASURES_SEQUENCE,
            tags::PIXEL_SPACING,
        ))
        .filter(|v| v.len() == 2)
        .ok_or_else(|| missing("PixelSpacing", tags::PIXEL_SPACING))?;
        let transform = tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE;
        let slope = float(frame_attr(obj, index, transform, tags::RESCALE_SLOPE)).unwrap_or(1.0);
        let intercept =
            float(frame_attr(obj, index, transform, tags::RESCALE_INTERCEPT)).unwrap_or(0.0);
        let content = tags::FRAME_CONTENT_SEQUENCE;
        let temporal_position = int(frame_attr(
            obj,
            index,
            content,
            tags::TEMPORAL_POSITION_INDEX,
        ))
        .or(image_temporal);
        let trigger_time_ms = float(frame_attr(
            obj,
            index,
            tags::CARDIAC_SYNCHRONIZATION_SEQUENCE,
            tags::NOMINAL_CARDIAC_TRIGGER_DELAY_TIME,
        ))
        .or(image_trigger);
        let acquisition_seconds = text(frame_attr(
            obj,
            index,
            content,
            tags::FRAME_ACQUISITION_DATE_TIME,
        ))
        .and_then(|t| seconds_of_day(&t))
        .or(image_time);
        let frame = index as u32 + 1;
        let (bytes, decoded) =
            pixel::decoded_frame(obj, frame).map_err(|source| FrameError::Pixel {
                sop: sop.clone(),
                source,
            })?;
        let pixels = to_pixels(&bytes, decoded.bits_allocated, decoded.is_signed())
            .ok_or_else(|| FrameError::unsupported(&sop, "decoded frame has an odd length"))?;
        out.push(SeriesFrame {
            slice: Slice {
                position: [position[0], position[1], position[2]],
                orientation: [
                    orientation[0],
                    orientation[1],
                    orientation[2],
                    orientation[3],
                    orientation[4],
                    orientation[5],
                ],
                pixel_spacing: [spacing[0], spacing[1]],
                rows: info.rows as usize,
                cols: info.columns as usize,
                pixels,
                slope,
                intercept,
                frame_of_reference: frame_of_reference.clone(),
            },
            sop_instance_uid: sop.clone(),
            sop_class_uid: sop_class.clone(),
            frame,
            instance_number,
            temporal_position,
            trigger_time_ms,
            acquisition_seconds,
            temporal_positions,
        });
    }
    Ok(out)
}

/// Little-endian decoded samples as volume pixels: 16-bit as is, 8-bit widened, 32-bit as
/// f32 (integers converted exactly up to 2^24).
fn to_pixels(bytes: &[u8], bits: u16, signed: bool) -> Option<SlicePixels> {
    Some(match (bits, signed) {
        (8, false) => SlicePixels::U16(bytes.iter().map(|&b| u16::from(b)).collect()),
        (8, true) => SlicePixels::I16(bytes.iter().map(|&b| i16::from(b as i8)).collect()),
        (16, _) if !bytes.len().is_multiple_of(2) => return None,
        (16, true) => SlicePixels::I16(
            bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        (16, false) => SlicePixels::U16(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        (32, _) if !bytes.len().is_multiple_of(4) => return None,
        (32, true) => SlicePixels::F32(
            bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
        ),
        (32, false) => SlicePixels::F32(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{BuildOptions, build};
    use dicom_object::InMemDicomObject;
    use radris_dicom::synth;

    #[test]
    fn generated_ct_series_builds_a_volume() {
        let spec = synth::ct_study(12, 64, 64, "dicom-adapter");
        let mut frames = Vec::new();
        spec.generate(|inst| -> Result<(), radris_dicom::DicomError> {
            let f = frames_from_part10(&inst.part10).expect("frames");
            frames.extend(f);
            Ok(())
        })
        .expect("generate");
        assert_eq!(frames.len(), 12);
        assert!(frames.iter().all(|f| f.frame == 1 && f.slice.rows == 64));
        let slices = frames.into_iter().rev().map(|f| f.slice).collect();
        let (vol, report) = build(slices, &BuildOptions::default()).expect("volume");
        assert_eq!(vol.dims, [64, 64, 12]);
        assert_eq!(report.slice_count, 12);
        assert!(report.gaps.is_empty());
    }

    /// An enhanced multi-frame object: orientation and spacing in the shared functional
    /// groups, positions, rescale and temporal indices per frame.
    fn enhanced(frames: u16) -> Vec<u8> {
        use dicom_core::value::{DataSetSequence, PrimitiveValue};
        use dicom_core::{DataElement, VR};
        let el = |tag, vr, v: PrimitiveValue| DataElement::new(tag, vr, v);
        let item = |seq, inner: Vec<DataElement<InMemDicomObject>>| {
            el_seq(seq, vec![InMemDicomObject::from_element_iter(inner)])
        };
        fn el_seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
            DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
        }
        let ds = |s: &str| PrimitiveValue::from(s);
        let shared = InMemDicomObject::from_element_iter([
            item(
                tags::PIXEL_MEASURES_SEQUENCE,
                vec![el(tags::PIXEL_SPACING, VR::DS, ds("0.5\\0.5"))],
            ),
            item(
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![el(
                    tags::IMAGE_ORIENTATION_PATIENT,
                    VR::DS,
                    ds("1\\0\\0\\0\\1\\0"),
                )],
            ),
        ]);
        let per_frame: Vec<InMemDicomObject> = (0..frames)
            .map(|f| {
                InMemDicomObject::from_element_iter([
                    item(
                        tags::PLANE_POSITION_SEQUENCE,
                        vec![el(
                            tags::IMAGE_POSITION_PATIENT,
                            VR::DS,
                            ds(&format!("-1\\-1\\{}", 2 * f)),
                        )],
                    ),
                    item(
                        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                        vec![
                            el(tags::RESCALE_SLOPE, VR::DS, ds("2")),
                            el(tags::RESCALE_INTERCEPT, VR::DS, ds("-100")),
                        ],
                    ),
                    item(
                        tags::FRAME_CONTENT_SEQUENCE,
                        vec![el(
                            tags::TEMPORAL_POSITION_INDEX,
                            VR::UL,
                            PrimitiveValue::from(u32::from(f % 2 + 1)),
                        )],
                    ),
                ])
            })
            .collect();
        let pixels: Vec<u16> = (0..frames * 4 * 4).collect();
        let mut o = InMemDicomObject::from_element_iter([
            el(
                tags::SOP_CLASS_UID,
                VR::UI,
                ds("1.2.840.10008.5.1.4.1.1.2.1"),
            ),
            el(tags::SOP_INSTANCE_UID, VR::UI, ds("1.2.3.4")),
            el(tags::FRAME_OF_REFERENCE_UID, VR::UI, ds("1.2.3.5")),
            el(tags::NUMBER_OF_FRAMES, VR::IS, ds(&frames.to_string())),
            el(tags::ROWS, VR::US, PrimitiveValue::from(4u16)),
            el(tags::COLUMNS, VR::US, PrimitiveValue::from(4u16)),
            el(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
            el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, ds("MONOCHROME2")),
            el(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
            el(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16)),
            el(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16)),
            el(
                tags::PIXEL_REPRESENTATION,
                VR::US,
                PrimitiveValue::from(0u16),
            ),
            el(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
        ]);
        o.put(el_seq(
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![shared],
        ));
        o.put(el_seq(
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            per_frame,
        ));
        let ts = dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN;
        let mut bytes = radris_dicom::part10::file_meta_bytes(
            "1.2.840.10008.5.1.4.1.1.2.1",
            "1.2.3.4",
            ts,
            None,
        )
        .expect("meta");
        o.write_dataset_with_ts(
            &mut bytes,
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .expect("write");
        bytes
    }

    #[test]
    fn enhanced_multi_frame_gives_a_slice_per_frame() {
        let frames = frames_from_part10(&enhanced(6)).expect("frames");
        assert_eq!(frames.len(), 6);
        for (f, fr) in frames.iter().enumerate() {
            assert_eq!(fr.frame, f as u32 + 1);
            assert_eq!(fr.slice.position, [-1.0, -1.0, 2.0 * f as f64]);
            assert_eq!(fr.slice.orientation, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
            assert_eq!(fr.slice.pixel_spacing, [0.5, 0.5]);
            assert_eq!((fr.slice.slope, fr.slice.intercept), (2.0, -100.0));
            assert_eq!(fr.temporal_position, Some(f as i64 % 2 + 1));
            match &fr.slice.pixels {
                SlicePixels::U16(p) => assert_eq!(p[0], 16 * f as u16),
                other => panic!("{other:?}"),
            }
        }
        let slices = frames.into_iter().map(|f| f.slice).collect();
        let (vol, _) = build(slices, &BuildOptions::default()).expect("volume");
        assert_eq!(vol.dims, [4, 4, 6]);
        assert_eq!(vol.spacing, [0.5, 0.5, 2.0]);
        assert_eq!(vol.value(1, 0, 2), (33 * 2 - 100) as f32);
    }

    #[test]
    fn times_of_day() {
        assert_eq!(seconds_of_day("101500"), Some(36900.0));
        assert_eq!(seconds_of_day("101500.5"), Some(36900.5));
        assert_eq!(seconds_of_day("20260110101500.25"), Some(36900.25));
        assert_eq!(seconds_of_day("10"), Some(36000.0));
        assert_eq!(seconds_of_day("xx"), None);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            frames_from_part10(b"not dicom"),
            Err(FrameError::Parse(_))
        ));
    }
}
