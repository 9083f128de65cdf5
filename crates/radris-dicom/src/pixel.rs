//! The pixel pipeline: frames as stored, frames decoded, whole objects transcoded to Explicit
//! VR Little Endian, and frames rendered to PNG/JPEG. Behind WADO-RS `/frames`, `/rendered`,
//! `/thumbnail` and `transfer-syntax=` negotiation.
//!
//! * [`pixel_info`]: the image pixel description from the header.
//! * [`raw_frame`]: one frame as stored (a cheap slice copy for native data; the frame's
//!   fragments for encapsulated data) and the media type a DICOMweb frames response carries.
//! * [`decoded_frame`]: one frame as Explicit VR Little Endian would hold it. Codecs: JPEG-LS
//!   (CharLS) and JPEG 2000/HTJ2K (openjp2) through `dicom-transfer-syntax-registry`'s pixel
//!   data readers; JPEG through jpeg-decoder directly (the colour transform must follow the
//!   DICOM header); RLE Lossless here (PS3.5 annex G, any sample size).
//! * [`to_explicit_vr_le`]: the whole object transcoded, as Part-10 bytes.
//! * [`to_jpeg_baseline`]: the whole object as JPEG Baseline (8-bit data only), as Part-10 bytes.
//! * [`render`]: modality LUT, VOI, MONOCHROME1 inversion, colour conversion, viewport scaling,
//!   PNG or JPEG.
//! * [`supported_syntaxes`]: what this build decodes and encodes.
//!
//! Frame numbers are 1-based, as in DICOMweb. Nothing here panics on malformed pixel data:
//! wrong lengths, frames out of range, broken offset tables and unsupported syntaxes all come
//! back as a [`PixelError`] (third-party decoders run under `catch_unwind` as a last guard).
//!
//! Native data is always handed out little endian: a frame of an Explicit VR Big Endian object
//! comes back byte-swapped per sample, as the Explicit VR Little Endian encoding would hold it.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::Codec;
use dicom_encoding::adapters::{PixelDataObject, RawPixelData};
use dicom_encoding::transfer_syntax::{Endianness, TransferSyntaxIndex};
use dicom_object::mem::InMemElement;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::part10::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// The object type the archive hands us: a Part-10 file in memory, meta group included.
pub type FileObject = FileDicomObject<InMemDicomObject>;

/// Largest viewport side [`render`] accepts (pixels).
pub const MAX_VIEWPORT: u32 = 8192;

/// Largest decoded frame this module allocates (bytes); larger frames are refused.
pub const MAX_FRAME_BYTES: u64 = 1 << 30;

/// Why pixel data could not be delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PixelError {
    #[error("object has no Pixel Data (7FE0,0010)")]
    NoPixelData,
    #[error("attribute {name} ({tag}) is missing or invalid: {reason}")]
    Attribute {
        name: &'static str,
        tag: Tag,
        reason: String,
    },
    #[error("frame {frame} is out of range: the object has {frames} frame(s), numbered from 1")]
    FrameOutOfRange { frame: u32, frames: u32 },
    #[error(
        "pixel data truncated: frame {frame} needs bytes {start}..{end} but only {available} are present"
    )]
    Truncated {
        frame: u32,
        start: u64,
        end: u64,
        available: u64,
    },
    #[error("transfer syntax {uid} is not supported for {operation}")]
    UnsupportedSyntax {
        uid: String,
        operation: &'static str,
    },
    #[error("unsupported pixel format: {0}")]
    UnsupportedFormat(String),
    #[error("encapsulated pixel data, frame {frame}: {reason}")]
    Encapsulation { frame: u32, reason: String },
    #[error("could not decode frame {frame} ({transfer_syntax}): {reason}")]
    Decode {
        frame: u32,
        transfer_syntax: String,
        reason: String,
    },
    #[error("could not encode {format}: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
    #[error("invalid render request: {0}")]
    InvalidRequest(String),
}

type Result<T, E = PixelError> = std::result::Result<T, E>;

/// Pixel description read from the header (Image Pixel module, plus the transfer syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelInfo {
    pub rows: u16,
    pub columns: u16,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    /// 0 unsigned, 1 two's complement.
    pub pixel_representation: u16,
    /// Photometric Interpretation, trimmed (`MONOCHROME2`, `RGB`, `YBR_FULL_422`, ...).
    pub photometric: String,
    /// Number of Frames, 1 when absent.
    pub number_of_frames: u32,
    /// 0 interleaved (`RGBRGB`), 1 by plane (`RRGGBB`); 0 when absent.
    pub planar_configuration: u16,
    /// Transfer syntax UID of the object (after decoding: Explicit VR Little Endian).
    pub transfer_syntax: String,
}

impl PixelInfo {
    /// Whether samples are two's complement.
    pub fn is_signed(&self) -> bool {
        self.pixel_representation == 1
    }

    /// Samples one frame holds in native encoding: `rows × columns × samples`, except for
    /// YBR_FULL_422/YBR_PARTIAL_422, which store two samples per pixel (PS3.3 C.7.6.3.1.2).
    fn samples_per_frame(&self) -> u64 {
        let pixels = self.rows as u64 * self.columns as u64;
        if self.samples_per_pixel == 3 && is_422(&self.photometric) {
            pixels * 2
        } else {
            pixels * self.samples_per_pixel as u64
        }
    }

    /// Bits of one frame in native encoding.
    fn frame_bits(&self) -> u64 {
        self.samples_per_frame() * self.bits_allocated as u64
    }

    /// Bytes of one native frame (for Bits Allocated 1, rounded up to whole bytes).
    pub fn native_frame_len(&self) -> u64 {
        self.frame_bits().div_ceil(8)
    }

    /// Refuse what no code path here handles, before touching any data.
    fn validate(&self) -> Result<()> {
        let bad = |name, tag, reason: String| Err(PixelError::Attribute { name, tag, reason });
        if self.rows == 0 || self.columns == 0 {
            return bad(
                "Rows/Columns",
                tags::ROWS,
                format!("{} x {} is empty", self.rows, self.columns),
            );
        }
        if !matches!(self.bits_allocated, 1 | 8 | 16 | 32) {
            return bad(
                "BitsAllocated",
                tags::BITS_ALLOCATED,
                format!("{} (supported: 1, 8, 16, 32)", self.bits_allocated),
            );
        }
        if self.bits_stored == 0 || self.bits_stored > self.bits_allocated {
            return bad(
                "BitsStored",
                tags::BITS_STORED,
                format!(
                    "{} with BitsAllocated {}",
                    self.bits_stored, self.bits_allocated
                ),
            );
        }
        if !matches!(self.samples_per_pixel, 1 | 3) {
            return bad(
                "SamplesPerPixel",
                tags::SAMPLES_PER_PIXEL,
                format!("{} (supported: 1, 3)", self.samples_per_pixel),
            );
        }
        if self.pixel_representation > 1 {
            return bad(
                "PixelRepresentation",
                tags::PIXEL_REPRESENTATION,
                format!("{}", self.pixel_representation),
            );
        }
        if self.bits_allocated == 1 && self.samples_per_pixel != 1 {
            return Err(PixelError::UnsupportedFormat(
                "BitsAllocated 1 with more than one sample per pixel".into(),
            ));
        }
        Ok(())
    }
}

fn is_422(photometric: &str) -> bool {
    matches!(photometric, "YBR_FULL_422" | "YBR_PARTIAL_422")
}

fn attribute_error(name: &'static str, tag: Tag, reason: impl Into<String>) -> PixelError {
    PixelError::Attribute {
        name,
        tag,
        reason: reason.into(),
    }
}

fn required_u16(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<u16> {
    let el = obj
        .get(tag)
        .ok_or_else(|| attribute_error(name, tag, "missing"))?;
    el.to_int::<u16>()
        .map_err(|e| attribute_error(name, tag, e.to_string()))
}

fn optional_u16(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<Option<u16>> {
    match obj.get(tag) {
        None => Ok(None),
        Some(el) if el.value().multiplicity() == 0 => Ok(None),
        Some(el) => el
            .to_int::<u16>()
            .map(Some)
            .map_err(|e| attribute_error(name, tag, e.to_string())),
    }
}

/// Read the pixel description from the header. Fails when a required Image Pixel attribute is
/// missing or unreadable; does not look at the pixel data itself.
pub fn pixel_info(obj: &FileObject) -> Result<PixelInfo> {
    let rows = required_u16(obj, tags::ROWS, "Rows")?;
    let columns = required_u16(obj, tags::COLUMNS, "Columns")?;
    let samples_per_pixel =
        optional_u16(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    let bits_allocated = required_u16(obj, tags::BITS_ALLOCATED, "BitsAllocated")?;
    let bits_stored = optional_u16(obj, tags::BITS_STORED, "BitsStored")?.unwrap_or(bits_allocated);
    let pixel_representation =
        optional_u16(obj, tags::PIXEL_REPRESENTATION, "PixelRepresentation")?.unwrap_or(0);
    let planar_configuration =
        optional_u16(obj, tags::PLANAR_CONFIGURATION, "PlanarConfiguration")?.unwrap_or(0);
    let photometric = match obj.get(tags::PHOTOMETRIC_INTERPRETATION) {
        Some(el) => el
            .to_str()
            .map_err(|e| {
                attribute_error(
                    "PhotometricInterpretation",
                    tags::PHOTOMETRIC_INTERPRETATION,
                    e.to_string(),
                )
            })?
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_owned(),
        None if samples_per_pixel == 1 => "MONOCHROME2".to_owned(),
        None => {
            return Err(attribute_error(
                "PhotometricInterpretation",
                tags::PHOTOMETRIC_INTERPRETATION,
                "missing",
            ));
        }
    };
    let number_of_frames = match obj.get(tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(el) if el.value().multiplicity() == 0 => 1,
        Some(el) => el.to_int::<u32>().map_err(|e| {
            attribute_error("NumberOfFrames", tags::NUMBER_OF_FRAMES, e.to_string())
        })?,
    }
    .max(1);
    Ok(PixelInfo {
        rows,
        columns,
        samples_per_pixel,
        bits_allocated,
        bits_stored,
        pixel_representation,
        photometric,
        number_of_frames,
        planar_configuration,
        transfer_syntax: obj.meta().transfer_syntax().to_owned(),
    })
}

/// The media type of one frame in a DICOMweb frames response for a transfer syntax
/// (PS3.18 table 8.7.3-2): `image/jpeg`, `image/jls`, `image/jp2`, `image/jpx`, `image/jphc`,
/// `image/jxl`, `image/dicom-rle`, the video types, and `application/octet-stream` for native
/// (and deflated) data.
pub fn frame_media_type(transfer_syntax: &str) -> &'static str {
    match transfer_syntax {
        uids::JPEG_BASELINE8_BIT
        | uids::JPEG_EXTENDED12_BIT
        | uids::JPEG_LOSSLESS
        | uids::JPEG_LOSSLESS_SV1 => "image/jpeg",
        uids::JPEGLS_LOSSLESS | uids::JPEGLS_NEAR_LOSSLESS => "image/jls",
        uids::JPEG2000_LOSSLESS | uids::JPEG2000 => "image/jp2",
        uids::JPEG2000MC_LOSSLESS | uids::JPEG2000MC => "image/jpx",
        uids::HTJ2K_LOSSLESS | uids::HTJ2K_LOSSLESS_RPCL | uids::HTJ2K => "image/jphc",
        uids::JPEGXL_LOSSLESS | uids::JPEGXLJPEG_RECOMPRESSION | uids::JPEGXL => "image/jxl",
        uids::RLE_LOSSLESS => "image/dicom-rle",
        uids::MPEG2MPML | uids::MPEG2MPMLF | uids::MPEG2MPHL | uids::MPEG2MPHLF => "video/mpeg2",
        uids::MPEG4HP41
        | uids::MPEG4HP41F
        | uids::MPEG4HP41BD
        | uids::MPEG4HP41BDF
        | uids::MPEG4HP422D
        | uids::MPEG4HP422DF
        | uids::MPEG4HP423D
        | uids::MPEG4HP423DF
        | uids::MPEG4HP42STEREO
        | uids::MPEG4HP42STEREOF => "video/mp4",
        uids::HEVCMP51 | uids::HEVCM10P51 => "video/H265",
        _ => "application/octet-stream",
    }
}

/// 0-based index of a 1-based frame number, checked against Number of Frames.
fn frame_index(info: &PixelInfo, frame: u32) -> Result<usize> {
    if frame == 0 || frame > info.number_of_frames {
        return Err(PixelError::FrameOutOfRange {
            frame,
            frames: info.number_of_frames,
        });
    }
    Ok(frame as usize - 1)
}

fn pixel_element(obj: &FileObject) -> Result<&InMemElement> {
    obj.get(tags::PIXEL_DATA).ok_or(PixelError::NoPixelData)
}

static REGISTRY: TransferSyntaxRegistry = TransferSyntaxRegistry;

/// The transfer syntax of the object, from the registry.
fn registry_ts(
    uid: &str,
    operation: &'static str,
) -> Result<&'static dicom_encoding::TransferSyntax> {
    REGISTRY
        .get(uid)
        .ok_or_else(|| PixelError::UnsupportedSyntax {
            uid: uid.to_owned(),
            operation,
        })
}

fn big_endian(ts_uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(ts_uid)
        .is_some_and(|ts| ts.endianness() == Endianness::Big)
}

// ---------------------------------------------------------------------------------------------
// native pixel data

/// Byte length of a primitive value's binary form.
fn primitive_byte_len(value: &PrimitiveValue) -> Option<usize> {
    use PrimitiveValue as P;
    Some(match value {
        P::Empty => 0,
        P::U8(v) => v.len(),
        P::U16(v) => v.len() * 2,
        P::I16(v) => v.len() * 2,
        P::U32(v) => v.len() * 4,
        P::I32(v) => v.len() * 4,
        P::F32(v) => v.len() * 4,
        P::U64(v) => v.len() * 8,
        P::I64(v) => v.len() * 8,
        P::F64(v) => v.len() * 8,
        _ => return None,
    })
}

/// Size of one value of a binary primitive.
fn primitive_width(value: &PrimitiveValue) -> usize {
    use PrimitiveValue as P;
    match value {
        P::U16(_) | P::I16(_) => 2,
        P::U32(_) | P::I32(_) | P::F32(_) => 4,
        P::U64(_) | P::I64(_) | P::F64(_) => 8,
        _ => 1,
    }
}

/// Bytes `start..end` of the native pixel data stream, in little-endian samples of
/// `sample_bytes` bytes. The in-memory value is typed (OW is read as 16-bit words), so the
/// stream is rebuilt in the file's byte order first and then swapped per sample if that order
/// was big endian. Little endian data on a little-endian machine is borrowed, not copied.
fn native_range(
    value: &PrimitiveValue,
    file_big_endian: bool,
    sample_bytes: usize,
    start: usize,
    end: usize,
) -> Option<Cow<'_, [u8]>> {
    use PrimitiveValue as P;
    if start > end {
        return None;
    }
    if !file_big_endian && cfg!(target_endian = "little") {
        return match value {
            P::U8(_)
            | P::U16(_)
            | P::I16(_)
            | P::U32(_)
            | P::I32(_)
            | P::F32(_)
            | P::U64(_)
            | P::I64(_)
            | P::F64(_)
            | P::Empty => match value.to_bytes() {
                Cow::Borrowed(b) => b.get(start..end).map(Cow::Borrowed),
                Cow::Owned(b) => b.get(start..end).map(|s| Cow::Owned(s.to_vec())),
            },
            _ => None,
        };
    }
    // Big endian swaps bytes within each value of the element's VR (OW: 16-bit words) and
    // within each sample: 8-bit samples in OW come back word-swapped, as pydicom reads them.
    // Work on whole swap units around the range, then cut the range out.
    let width = primitive_width(value);
    let unit = if file_big_endian {
        sample_bytes.max(width)
    } else {
        width
    };
    let total = primitive_byte_len(value)?;
    if end > total {
        return None;
    }
    let (a, b) = (start / unit * unit, (end.div_ceil(unit) * unit).min(total));
    macro_rules! words {
        ($v:expr, $w:expr) => {{
            let mut out = Vec::with_capacity(b - a);
            for x in $v.get(a / $w..b.div_ceil($w))? {
                if file_big_endian {
                    out.extend_from_slice(&x.to_be_bytes());
                } else {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            out
        }};
    }
    let mut out = match value {
        P::Empty => Vec::new(),
        P::U8(v) => v.get(a..b)?.to_vec(),
        P::U16(v) => words!(v, 2),
        P::I16(v) => words!(v, 2),
        P::U32(v) => words!(v, 4),
        P::I32(v) => words!(v, 4),
        P::F32(v) => words!(v, 4),
        P::U64(v) => words!(v, 8),
        P::I64(v) => words!(v, 8),
        P::F64(v) => words!(v, 8),
        _ => return None,
    };
    if file_big_endian && unit > 1 {
        for chunk in out.chunks_exact_mut(unit) {
            chunk.reverse();
        }
    }
    out.truncate(end - a);
    out.drain(..start - a);
    Some(Cow::Owned(out))
}

/// One native frame, little endian, as stored (planar configuration and photometric untouched).
/// Bit-packed frames (Bits Allocated 1) are shifted to start at bit 0 of the first byte.
fn native_frame<'a>(
    info: &PixelInfo,
    value: &'a PrimitiveValue,
    index: usize,
) -> Result<Cow<'a, [u8]>> {
    let frame = index as u32 + 1;
    let available = primitive_byte_len(value).ok_or_else(|| {
        PixelError::UnsupportedFormat("Pixel Data holds text, not binary samples".into())
    })? as u64;
    let file_big_endian = big_endian(&info.transfer_syntax);
    let sample_bytes = (info.bits_allocated as usize).div_ceil(8);
    if info.samples_per_pixel == 3 && is_422(&info.photometric) && !info.columns.is_multiple_of(2) {
        return Err(PixelError::UnsupportedFormat(format!(
            "native {} with an odd number of columns ({})",
            info.photometric, info.columns
        )));
    }
    if info.bits_allocated == 1 {
        let bits = info.frame_bits();
        let first_bit = bits * index as u64;
        let start = first_bit / 8;
        let end = (first_bit + bits).div_ceil(8);
        if end > available {
            return Err(PixelError::Truncated {
                frame,
                start,
                end,
                available,
            });
        }
        let bytes = native_range(value, file_big_endian, 1, start as usize, end as usize).ok_or(
            PixelError::Truncated {
                frame,
                start,
                end,
                available,
            },
        )?;
        let shift = (first_bit % 8) as u32;
        let out_len = bits.div_ceil(8) as usize;
        let mut out = if shift == 0 {
            bytes[..out_len].to_vec()
        } else {
            (0..out_len)
                .map(|i| {
                    let lo = bytes.get(i).copied().unwrap_or(0) >> shift;
                    let hi = bytes.get(i + 1).copied().unwrap_or(0) << (8 - shift);
                    lo | hi
                })
                .collect()
        };
        // clear bits past the frame's end
        let tail = (bits % 8) as u32;
        if tail != 0
            && let Some(last) = out.last_mut()
        {
            *last &= (1u8 << tail) - 1;
        }
        return Ok(Cow::Owned(out));
    }
    let len = info.native_frame_len();
    let start = len * index as u64;
    let end = start + len;
    if end > available {
        return Err(PixelError::Truncated {
            frame,
            start,
            end,
            available,
        });
    }
    native_range(
        value,
        file_big_endian,
        sample_bytes,
        start as usize,
        end as usize,
    )
    .ok_or(PixelError::Truncated {
        frame,
        start,
        end,
        available,
    })
}

// ---------------------------------------------------------------------------------------------
// encapsulated pixel data

/// Does this fragment start a codestream of the transfer syntax's family? Used to find frame
/// boundaries when there is neither an offset table nor one fragment per frame.
fn starts_codestream(ts: &str, fragment: &[u8]) -> bool {
    match ts {
        uids::JPEG2000_LOSSLESS
        | uids::JPEG2000
        | uids::JPEG2000MC_LOSSLESS
        | uids::JPEG2000MC
        | uids::HTJ2K_LOSSLESS
        | uids::HTJ2K_LOSSLESS_RPCL
        | uids::HTJ2K => {
            fragment.starts_with(&[0xFF, 0x4F, 0xFF, 0x51])
                || fragment.starts_with(&[0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20])
        }
        _ => fragment.starts_with(&[0xFF, 0xD8]),
    }
}

/// The encapsulated bytes of one frame (0-based `index`). Handles, in this order: the Extended
/// Offset Table, one fragment per frame, a single frame in any number of fragments, the Basic
/// Offset Table, and, with none of these, fragments that start a new codestream (JPEG SOI,
/// JPEG 2000 SOC or JP2 signature).
fn encapsulated_frame<'a>(
    obj: &FileObject,
    info: &PixelInfo,
    offset_table: &[u32],
    fragments: &'a [Vec<u8>],
    index: usize,
) -> Result<Cow<'a, [u8]>> {
    let frame = index as u32 + 1;
    let nframes = info.number_of_frames as usize;
    let err = |reason: String| PixelError::Encapsulation { frame, reason };
    if fragments.is_empty() {
        return Err(err("the pixel data sequence has no fragments".into()));
    }
    // start of each fragment's item tag, relative to the first fragment's item tag
    let positions: Vec<u64> = fragments
        .iter()
        .scan(0u64, |pos, f| {
            let here = *pos;
            *pos += 8 + f.len() as u64;
            Some(here)
        })
        .collect();

    if let Some(eot) = obj.get(tags::EXTENDED_OFFSET_TABLE) {
        let offsets =
            ov_values(eot).ok_or_else(|| err("unreadable Extended Offset Table".into()))?;
        let lengths = obj
            .get(tags::EXTENDED_OFFSET_TABLE_LENGTHS)
            .and_then(ov_values);
        if offsets.len() != nframes {
            return Err(err(format!(
                "Extended Offset Table has {} entries for {nframes} frames",
                offsets.len()
            )));
        }
        let offset = offsets[index];
        let k = positions.binary_search(&offset).map_err(|_| {
            err(format!(
                "Extended Offset Table offset {offset} is not a fragment start"
            ))
        })?;
        let fragment = &fragments[k];
        let len = lengths
            .as_ref()
            .and_then(|l| l.get(index).copied())
            .map_or(fragment.len(), |l| (l as usize).min(fragment.len()));
        return Ok(Cow::Borrowed(&fragment[..len]));
    }
    if fragments.len() == nframes {
        return Ok(Cow::Borrowed(&fragments[index]));
    }
    if nframes == 1 {
        return Ok(Cow::Owned(fragments.concat()));
    }
    if fragments.len() < nframes {
        return Err(err(format!(
            "{} fragments for {nframes} frames",
            fragments.len()
        )));
    }
    let ranges: Vec<(usize, usize)> = if !offset_table.is_empty() {
        if offset_table.len() != nframes {
            return Err(err(format!(
                "Basic Offset Table has {} entries for {nframes} frames",
                offset_table.len()
            )));
        }
        let mut starts = Vec::with_capacity(nframes);
        for &o in offset_table {
            let k = positions.binary_search(&(o as u64)).map_err(|_| {
                err(format!(
                    "Basic Offset Table offset {o} is not a fragment start"
                ))
            })?;
            starts.push(k);
        }
        if starts.windows(2).any(|w| w[0] >= w[1]) {
            return Err(err("Basic Offset Table is not increasing".into()));
        }
        bounds(&starts, fragments.len())
    } else {
        let starts: Vec<usize> = fragments
            .iter()
            .enumerate()
            .filter(|(_, f)| starts_codestream(&info.transfer_syntax, f))
            .map(|(k, _)| k)
            .collect();
        if starts.len() != nframes || starts.first() != Some(&0) {
            return Err(err(format!(
                "no offset table and {} fragments for {nframes} frames; found {} codestream starts",
                fragments.len(),
                starts.len()
            )));
        }
        bounds(&starts, fragments.len())
    };
    let (a, b) = ranges[index];
    if b - a == 1 {
        Ok(Cow::Borrowed(&fragments[a]))
    } else {
        Ok(Cow::Owned(fragments[a..b].concat()))
    }
}

fn bounds(starts: &[usize], total: usize) -> Vec<(usize, usize)> {
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(total)))
        .collect()
}

/// 64-bit values of an OV element (Extended Offset Table and its lengths).
fn ov_values(el: &InMemElement) -> Option<Vec<u64>> {
    match el.value().primitive()? {
        PrimitiveValue::U64(v) => Some(v.to_vec()),
        PrimitiveValue::U8(b) if b.len() % 8 == 0 => Some(
            b.chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    u64::from_le_bytes(a)
                })
                .collect(),
        ),
        _ => None,
    }
}

/// One frame exactly as stored (1-based `frame`): the native frame's bytes (little endian) for
/// uncompressed syntaxes, or the frame's encapsulated fragments concatenated. Returns the bytes
/// and the media type of a DICOMweb frames response for the object's transfer syntax
/// ([`frame_media_type`]). For native data this is a slice copy, no decoding.
pub fn raw_frame(obj: &FileObject, frame: u32) -> Result<(Vec<u8>, &'static str)> {
    let info = pixel_info(obj)?;
    info.validate()?;
    let index = frame_index(&info, frame)?;
    match pixel_element(obj)?.value() {
        Value::Primitive(p) => {
            if is_encapsulated_syntax(&info.transfer_syntax) {
                return Err(PixelError::Encapsulation {
                    frame,
                    reason: format!(
                        "transfer syntax {} needs encapsulated pixel data, found native",
                        info.transfer_syntax
                    ),
                });
            }
            let bytes = native_frame(&info, p, index)?;
            Ok((bytes.into_owned(), "application/octet-stream"))
        }
        Value::PixelSequence(seq) => {
            let bytes = encapsulated_frame(obj, &info, seq.offset_table(), seq.fragments(), index)?;
            Ok((bytes.into_owned(), frame_media_type(&info.transfer_syntax)))
        }
        Value::Sequence(_) => Err(PixelError::UnsupportedFormat(
            "Pixel Data is a sequence of items".into(),
        )),
    }
}

fn is_encapsulated_syntax(uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(uid)
        .is_some_and(|ts| ts.is_encapsulated_pixel_data())
}

// ---------------------------------------------------------------------------------------------
// decoding

/// One encapsulated frame presented to a dicom-rs pixel data reader as a single-frame,
/// single-fragment object, so the reader never has to find frames itself.
struct FrameSource<'a> {
    info: &'a PixelInfo,
    data: &'a [u8],
}

impl PixelDataObject for FrameSource<'_> {
    fn transfer_syntax_uid(&self) -> &str {
        &self.info.transfer_syntax
    }
    fn rows(&self) -> Option<u16> {
        Some(self.info.rows)
    }
    fn cols(&self) -> Option<u16> {
        Some(self.info.columns)
    }
    fn samples_per_pixel(&self) -> Option<u16> {
        Some(self.info.samples_per_pixel)
    }
    fn bits_allocated(&self) -> Option<u16> {
        Some(self.info.bits_allocated)
    }
    fn bits_stored(&self) -> Option<u16> {
        Some(self.info.bits_stored)
    }
    fn photometric_interpretation(&self) -> Option<&str> {
        Some(&self.info.photometric)
    }
    fn number_of_frames(&self) -> Option<u32> {
        Some(1)
    }
    fn number_of_fragments(&self) -> Option<u32> {
        Some(1)
    }
    fn fragment(&self, fragment: usize) -> Option<Cow<'_, [u8]>> {
        (fragment == 0).then_some(Cow::Borrowed(self.data))
    }
    fn offset_table(&self) -> Option<Cow<'_, [u32]>> {
        Some(Cow::Borrowed(&[]))
    }
    fn raw_pixel_data(&self) -> Option<RawPixelData> {
        Some(RawPixelData {
            fragments: vec![self.data.to_vec()].into(),
            offset_table: Vec::new().into(),
        })
    }
}

fn is_jpeg_family(ts: &str) -> bool {
    matches!(
        ts,
        uids::JPEG_BASELINE8_BIT
            | uids::JPEG_EXTENDED12_BIT
            | uids::JPEG_LOSSLESS
            | uids::JPEG_LOSSLESS_SV1
    )
}

fn is_jpeg_ls(ts: &str) -> bool {
    matches!(ts, uids::JPEGLS_LOSSLESS | uids::JPEGLS_NEAR_LOSSLESS)
}

fn is_jpeg_2000(ts: &str) -> bool {
    matches!(
        ts,
        uids::JPEG2000_LOSSLESS
            | uids::JPEG2000
            | uids::JPEG2000MC_LOSSLESS
            | uids::JPEG2000MC
            | uids::HTJ2K_LOSSLESS
            | uids::HTJ2K_LOSSLESS_RPCL
            | uids::HTJ2K
    )
}

fn is_lossy_syntax(ts: &str) -> bool {
    matches!(
        ts,
        uids::JPEG_BASELINE8_BIT
            | uids::JPEG_EXTENDED12_BIT
            | uids::JPEGLS_NEAR_LOSSLESS
            | uids::JPEG2000
            | uids::JPEG2000MC
            | uids::HTJ2K
            | uids::JPEGXL
    )
}

/// Whether a JPEG-LS codestream codes its components in separate scans (interleave mode
/// none): CharLS then returns the frame by plane. Reads the first SOS marker segment.
fn jpeg_ls_is_planar(data: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return false;
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if marker == 0xDA {
            // SOS: length, Ns, Ns × (Ci, Tmi), NEAR, ILV, ...
            return data.get(i + 4).is_some_and(|&ns| ns == 1);
        }
        i += 2 + len;
    }
    false
}

/// (columns, rows, components) from a JPEG-LS SOF55 marker segment.
fn jpeg_ls_geometry(data: &[u8]) -> Option<(u32, u32, u32)> {
    let mut i = 2; // after SOI
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if marker == 0xF7 {
            // Lf, P, Y, X, Nf
            let s = data.get(i + 4..i + 10)?;
            let rows = u16::from_be_bytes([s[1], s[2]]) as u32;
            let cols = u16::from_be_bytes([s[3], s[4]]) as u32;
            return Some((cols, rows, s[5] as u32));
        }
        if marker == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// (columns, rows, components) from the SIZ marker segment of a JPEG 2000 codestream (raw, or
/// inside a JP2 file, whose codestream box holds SOC SIZ).
fn j2k_geometry(data: &[u8]) -> Option<(u32, u32, u32)> {
    let soc = data
        .windows(4)
        .take(4096)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
    // after FF51: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz
    let s = data.get(soc + 4..soc + 4 + 38)?;
    let be32 = |i: usize| u32::from_be_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (x, y, x0, y0) = (be32(4), be32(8), be32(12), be32(16));
    let components = u16::from_be_bytes([s[36], s[37]]) as u32;
    Some((x.checked_sub(x0)?, y.checked_sub(y0)?, components))
}

fn check_geometry(
    codec: &str,
    geometry: Option<(u32, u32, u32)>,
    info: &PixelInfo,
) -> Result<(), String> {
    let (cols, rows, components) =
        geometry.ok_or_else(|| format!("{codec} codestream has no readable frame header"))?;
    let want = (
        info.columns as u32,
        info.rows as u32,
        info.samples_per_pixel as u32,
    );
    if (cols, rows, components) != want {
        return Err(format!(
            "{codec} codestream is {cols}x{rows} with {components} component(s), the DICOM header says {}x{} with {}",
            want.0, want.1, want.2
        ));
    }
    Ok(())
}

/// Whether a JPEG-family codestream ends with its EOI marker (FFD9), allowing the trailing
/// zero padding that makes fragments even.
fn ends_with_eoi(data: &[u8]) -> bool {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    data[..end].ends_with(&[0xFF, 0xD9])
}

/// Interleave a frame stored by plane (`RRR…GGG…BBB…`) into `RGBRGB…`.
fn interleave(data: &[u8], samples: usize, sample_bytes: usize) -> Vec<u8> {
    let plane = data.len() / samples;
    let pixels = plane / sample_bytes;
    let mut out = vec![0u8; data.len()];
    for p in 0..pixels {
        for s in 0..samples {
            let src = s * plane + p * sample_bytes;
            let dst = (p * samples + s) * sample_bytes;
            out[dst..dst + sample_bytes].copy_from_slice(&data[src..src + sample_bytes]);
        }
    }
    out
}

/// Bring samples whose meaningful bits are fewer than the allocated bits into the form a
/// native encoder writes: sign-extended from bit `bits_stored - 1` for signed data, the unused
/// high bits cleared for unsigned data. Codecs hand out the low `bits_stored` bits.
fn normalize_bits(data: &mut [u8], bits_allocated: u16, bits_stored: u16, signed: bool) {
    if bits_stored >= bits_allocated || bits_stored == 0 {
        return;
    }
    match bits_allocated {
        8 => {
            let shift = 8 - bits_stored as u32;
            for b in data.iter_mut() {
                *b = if signed {
                    (((*b << shift) as i8) >> shift) as u8
                } else {
                    *b & (0xFFu8 >> shift)
                };
            }
        }
        16 => {
            let shift = 16 - bits_stored as u32;
            for c in data.chunks_exact_mut(2) {
                let v = u16::from_le_bytes([c[0], c[1]]);
                let v = if signed {
                    (((v << shift) as i16) >> shift) as u16
                } else {
                    v & (0xFFFFu16 >> shift)
                };
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        32 => {
            let shift = 32 - bits_stored as u32;
            for c in data.chunks_exact_mut(4) {
                let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let v = if signed {
                    (((v << shift) as i32) >> shift) as u32
                } else {
                    v & (u32::MAX >> shift)
                };
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {}
    }
}

/// One frame (1-based) decoded to native little-endian bytes: what Explicit VR Little Endian
/// Pixel Data holds for that frame, with samples interleaved (planar configuration 0).
///
/// The returned [`PixelInfo`] describes the bytes: transfer syntax Explicit VR Little Endian,
/// one frame, planar configuration 0, and the photometric interpretation after decoding.
/// JPEG (baseline, extended, lossless) and JPEG 2000 decoders convert YBR colour to RGB, so
/// three-sample frames of those syntaxes come back `RGB` (as dicom-pixeldata reports them);
/// native, RLE, deflated and JPEG-LS data keep their photometric interpretation (a native
/// `YBR_FULL_422` frame stays subsampled). Samples with fewer stored than allocated bits are
/// sign-extended (signed) or masked (unsigned) after a codec; native frames are as stored.
pub fn decoded_frame(obj: &FileObject, frame: u32) -> Result<(Vec<u8>, PixelInfo)> {
    let info = pixel_info(obj)?;
    info.validate()?;
    let index = frame_index(&info, frame)?;
    let sample_bytes = (info.bits_allocated as usize).div_ceil(8);
    let mut out_info = PixelInfo {
        number_of_frames: 1,
        planar_configuration: 0,
        transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN.to_owned(),
        ..info.clone()
    };
    match pixel_element(obj)?.value() {
        Value::Primitive(p) => {
            if is_encapsulated_syntax(&info.transfer_syntax) {
                return Err(PixelError::Encapsulation {
                    frame,
                    reason: format!(
                        "transfer syntax {} needs encapsulated pixel data, found native",
                        info.transfer_syntax
                    ),
                });
            }
            let data = native_frame(&info, p, index)?;
            let data = if info.planar_configuration == 1
                && info.samples_per_pixel > 1
                && !is_422(&info.photometric)
            {
                interleave(&data, info.samples_per_pixel as usize, sample_bytes)
            } else {
                data.into_owned()
            };
            Ok((data, out_info))
        }
        Value::PixelSequence(seq) => {
            let ts_uid = info.transfer_syntax.as_str();
            let encoded =
                encapsulated_frame(obj, &info, seq.offset_table(), seq.fragments(), index)?;
            // codecs hand out every pixel with all its samples, 4:2:2 included
            let expected = info.rows as usize
                * info.columns as usize
                * info.samples_per_pixel as usize
                * sample_bytes;
            if info.bits_allocated == 1 {
                return Err(PixelError::UnsupportedFormat(
                    "encapsulated pixel data with BitsAllocated 1".into(),
                ));
            }
            if expected as u64 > MAX_FRAME_BYTES {
                return Err(PixelError::UnsupportedFormat(format!(
                    "a decoded frame of {expected} bytes exceeds the {MAX_FRAME_BYTES}-byte limit"
                )));
            }
            if ts_uid == uids::ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN {
                let expected = info.native_frame_len() as usize;
                if encoded.len() < expected {
                    return Err(PixelError::Truncated {
                        frame,
                        start: 0,
                        end: expected as u64,
                        available: encoded.len() as u64,
                    });
                }
                let data = &encoded[..expected];
                let data = if info.planar_configuration == 1
                    && info.samples_per_pixel > 1
                    && !is_422(&info.photometric)
                {
                    interleave(data, info.samples_per_pixel as usize, sample_bytes)
                } else {
                    data.to_vec()
                };
                return Ok((data, out_info));
            }
            let decode_err = |reason: String| PixelError::Decode {
                frame,
                transfer_syntax: ts_uid.to_owned(),
                reason,
            };
            let mut data = if ts_uid == uids::RLE_LOSSLESS {
                // dicom-rs's RLE reader stops at 16 bits and panics on a truncated segment;
                // PS3.5 annex G is simple enough to do here
                rle_decode(&encoded, &info).map_err(decode_err)?
            } else if is_jpeg_family(ts_uid) {
                guarded(|| decode_jpeg(&encoded, &info, expected)).map_err(decode_err)?
            } else {
                let ts = registry_ts(ts_uid, "decoding")?;
                // Check the codestream's own header against the DICOM header before a codec
                // allocates what the codestream asks for (a forged size must not make it
                // allocate gigabytes), and refuse truncated JPEG-LS: CharLS spends seconds on a
                // codestream that stops short of its end marker.
                if is_jpeg_ls(ts_uid) {
                    if !ends_with_eoi(&encoded) {
                        return Err(decode_err(
                            "JPEG-LS codestream is truncated (no EOI marker)".into(),
                        ));
                    }
                    check_geometry("JPEG-LS", jpeg_ls_geometry(&encoded), &info)
                        .map_err(decode_err)?;
                } else if is_jpeg_2000(ts_uid) {
                    check_geometry("JPEG 2000", j2k_geometry(&encoded), &info)
                        .map_err(decode_err)?;
                }
                let Codec::EncapsulatedPixelData(Some(reader), _) = ts.codec() else {
                    return Err(PixelError::UnsupportedSyntax {
                        uid: ts_uid.to_owned(),
                        operation: "decoding (no codec in this build)",
                    });
                };
                let src = FrameSource {
                    info: &info,
                    data: &encoded,
                };
                guarded(|| {
                    let mut data = Vec::with_capacity(expected);
                    reader
                        .decode_frame(&src, 0, &mut data)
                        .map_err(|e| error_chain(&e))?;
                    Ok(data)
                })
                .map_err(decode_err)?
            };
            // an 8-bit codestream in 16-bit allocated samples
            if info.bits_allocated == 16 && data.len() * 2 == expected {
                data = data.iter().flat_map(|&b| [b, 0]).collect();
            }
            if data.len() != expected {
                return Err(decode_err(format!(
                    "decoder produced {} bytes, {} x {} x {} samples of {} bits need {expected}",
                    data.len(),
                    info.rows,
                    info.columns,
                    info.samples_per_pixel,
                    info.bits_allocated
                )));
            }
            if is_jpeg_ls(ts_uid) && info.samples_per_pixel > 1 && jpeg_ls_is_planar(&encoded) {
                data = interleave(&data, info.samples_per_pixel as usize, sample_bytes);
            }
            if is_jpeg_family(ts_uid) || is_jpeg_ls(ts_uid) || is_jpeg_2000(ts_uid) {
                normalize_bits(
                    &mut data,
                    info.bits_allocated,
                    info.bits_stored,
                    info.is_signed(),
                );
            }
            if info.samples_per_pixel == 3
                && (is_jpeg_family(ts_uid) || is_jpeg_2000(ts_uid))
                && info.photometric.starts_with("YBR")
            {
                out_info.photometric = "RGB".to_owned();
            }
            Ok((data, out_info))
        }
        Value::Sequence(_) => Err(PixelError::UnsupportedFormat(
            "Pixel Data is a sequence of items".into(),
        )),
    }
}

/// Run a third-party decoder, turning a panic into an error.
fn guarded(f: impl FnOnce() -> Result<Vec<u8>, String>) -> Result<Vec<u8>, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("decoder panicked: {msg}"))
        }
    }
}

/// The Adobe APP14 colour transform flag of a JPEG stream (0 none/RGB, 1 YCbCr, 2 YCCK), if
/// the stream has that marker before its first scan.
fn jpeg_adobe_transform(data: &[u8]) -> Option<u8> {
    let mut i = 2; // after SOI
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xDA {
            return None;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        let segment = data.get(i + 4..i + 2 + len)?;
        if marker == 0xEE && segment.len() >= 12 && segment.starts_with(b"Adobe") {
            return Some(segment[11]);
        }
        i += 2 + len;
    }
    None
}

/// JPEG baseline, extended and lossless with jpeg-decoder, called directly rather than through
/// dicom-rs's adapter so that the colour transform follows the DICOM header: a three-sample
/// frame labelled RGB is taken as RGB unless an Adobe marker says it was coded as YCbCr
/// (PS3.5 8.2.1); YBR frames are converted to RGB. Output is little endian.
fn decode_jpeg(data: &[u8], info: &PixelInfo, expected: usize) -> Result<Vec<u8>, String> {
    use jpeg_decoder::{ColorTransform, PixelFormat};
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(data));
    decoder.set_max_decoding_buffer_size(expected.max(1 << 16) * 2);
    if info.samples_per_pixel == 3
        && info.photometric == "RGB"
        && jpeg_adobe_transform(data) != Some(1)
    {
        decoder.set_color_transform(ColorTransform::RGB);
    }
    decoder.read_info().map_err(|e| format!("JPEG: {e}"))?;
    let meta = decoder.info().ok_or("JPEG: no frame header")?;
    if (meta.width, meta.height) != (info.columns, info.rows) {
        return Err(format!(
            "JPEG frame is {}x{}, the header says {}x{}",
            meta.width, meta.height, info.columns, info.rows
        ));
    }
    let mut pixels = decoder.decode().map_err(|e| format!("JPEG: {e}"))?;
    let samples = match meta.pixel_format {
        PixelFormat::L8 | PixelFormat::L16 => 1,
        PixelFormat::RGB24 => 3,
        PixelFormat::CMYK32 => 4,
    };
    if samples != info.samples_per_pixel {
        return Err(format!(
            "JPEG frame has {samples} components, the header says {}",
            info.samples_per_pixel
        ));
    }
    if meta.pixel_format == PixelFormat::L16 && cfg!(target_endian = "big") {
        for c in pixels.chunks_exact_mut(2) {
            c.swap(0, 1);
        }
    }
    Ok(pixels)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// RLE Lossless (PS3.5 annex G) for any sample size: a 64-byte header of segment offsets,
/// one PackBits segment per byte plane (most significant first, sample by sample). Output is
/// interleaved little endian.
fn rle_decode(data: &[u8], info: &PixelInfo) -> Result<Vec<u8>, String> {
    let header = data.get(..64).ok_or("RLE frame shorter than its header")?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let nsegments = word(0) as usize;
    let sample_bytes = (info.bits_allocated as usize) / 8;
    let samples = info.samples_per_pixel as usize;
    if nsegments != sample_bytes * samples || nsegments > 15 {
        return Err(format!(
            "{nsegments} RLE segments for {samples} samples of {} bits",
            info.bits_allocated
        ));
    }
    let pixels = info.rows as usize * info.columns as usize;
    let mut offsets: Vec<usize> = (0..nsegments).map(|s| word(4 + 4 * s) as usize).collect();
    offsets.push(data.len());
    let mut out = vec![0u8; pixels * samples * sample_bytes];
    for s in 0..samples {
        for b in 0..sample_bytes {
            let seg = s * sample_bytes + b;
            let (from, to) = (offsets[seg], offsets[seg + 1]);
            let segment = data
                .get(from..to.max(from))
                .ok_or_else(|| format!("RLE segment {seg} at {from}..{to} is out of bounds"))?;
            let plane = packbits(segment, pixels)?;
            // segment b holds byte (sample_bytes - 1 - b) of each sample (MSB first)
            let byte = sample_bytes - 1 - b;
            for (p, v) in plane.into_iter().enumerate() {
                out[(p * samples + s) * sample_bytes + byte] = v;
            }
        }
    }
    Ok(out)
}

/// PackBits decoding of one RLE segment into exactly `n` bytes.
fn packbits(src: &[u8], n: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while out.len() < n && i < src.len() {
        let h = src[i] as i8;
        i += 1;
        if h >= 0 {
            let count = h as usize + 1;
            let lit = src
                .get(i..i + count)
                .ok_or("RLE literal run past the end of the segment")?;
            out.extend_from_slice(lit);
            i += count;
        } else if h != -128 {
            let count = 1 - h as isize;
            let v = *src
                .get(i)
                .ok_or("RLE replicate run past the end of the segment")?;
            out.extend(std::iter::repeat_n(v, count as usize));
            i += 1;
        }
    }
    if out.len() < n {
        return Err(format!("RLE segment decoded to {} of {n} bytes", out.len()));
    }
    out.truncate(n);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// transcoding

/// Transcode the whole object to Explicit VR Little Endian and return it as Part-10 bytes
/// (preamble, meta group with the new transfer syntax, data set). Encapsulated pixel data is
/// decoded frame by frame ([`decoded_frame`]); Photometric Interpretation and Planar
/// Configuration follow the decoded frames, the encapsulation attributes (offset tables,
/// total length) are dropped, and Lossy Image Compression is set to `01` when the source
/// syntax was lossy. Native pixel data is carried over as is (byte-swapped from big endian).
/// Objects without pixel data are re-encoded unchanged.
pub fn to_explicit_vr_le(obj: &FileObject) -> Result<Vec<u8>> {
    let mut out = obj.clone();
    if obj.get(tags::PIXEL_DATA).is_some() {
        let info = pixel_info(obj)?;
        info.validate()?;
        let (bytes, decoded) = all_frames_native(obj, &info)?;
        replace_pixel_data(&mut out, &info, bytes, &decoded);
        if is_lossy_syntax(&info.transfer_syntax) {
            out.put(DataElement::new(
                tags::LOSSY_IMAGE_COMPRESSION,
                VR::CS,
                PrimitiveValue::from("01"),
            ));
        }
    }
    finish_part10(
        out,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
}

/// The whole pixel data in native little-endian form, and the description of the result.
fn all_frames_native(obj: &FileObject, info: &PixelInfo) -> Result<(Vec<u8>, PixelInfo)> {
    match pixel_element(obj)?.value() {
        Value::Primitive(p) if !is_encapsulated_syntax(&info.transfer_syntax) => {
            let total = (info.frame_bits() * info.number_of_frames as u64).div_ceil(8);
            let available = primitive_byte_len(p).unwrap_or(0) as u64;
            if total > available {
                return Err(PixelError::Truncated {
                    frame: info.number_of_frames,
                    start: 0,
                    end: total,
                    available,
                });
            }
            let sample_bytes = (info.bits_allocated as usize).div_ceil(8);
            let bytes = native_range(
                p,
                big_endian(&info.transfer_syntax),
                sample_bytes,
                0,
                total as usize,
            )
            .ok_or(PixelError::Truncated {
                frame: info.number_of_frames,
                start: 0,
                end: total,
                available,
            })?;
            let decoded = PixelInfo {
                transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN.to_owned(),
                ..info.clone()
            };
            Ok((bytes.into_owned(), decoded))
        }
        _ => {
            let total = info.rows as u64
                * info.columns as u64
                * info.samples_per_pixel as u64
                * (info.bits_allocated as u64).div_ceil(8)
                * info.number_of_frames as u64;
            if total >= u32::MAX as u64 {
                return Err(PixelError::UnsupportedFormat(format!(
                    "{total} bytes of decoded pixel data do not fit one Explicit VR Little Endian element"
                )));
            }
            let mut all = Vec::with_capacity((total as usize).min(1 << 28));
            let mut decoded = None;
            for f in 1..=info.number_of_frames {
                let (data, i) = decoded_frame(obj, f)?;
                all.extend_from_slice(&data);
                decoded = Some(i);
            }
            let decoded = decoded.ok_or(PixelError::NoPixelData)?;
            Ok((
                all,
                PixelInfo {
                    number_of_frames: info.number_of_frames,
                    ..decoded
                },
            ))
        }
    }
}

fn replace_pixel_data(
    out: &mut FileObject,
    info: &PixelInfo,
    mut bytes: Vec<u8>,
    decoded: &PixelInfo,
) {
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let vr = if info.bits_allocated <= 8 {
        VR::OB
    } else {
        VR::OW
    };
    out.put(DataElement::new(
        tags::PIXEL_DATA,
        vr,
        PrimitiveValue::U8(bytes.into()),
    ));
    for tag in [
        tags::EXTENDED_OFFSET_TABLE,
        tags::EXTENDED_OFFSET_TABLE_LENGTHS,
        tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH,
    ] {
        out.remove_element(tag);
    }
    if decoded.photometric != info.photometric {
        out.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(decoded.photometric.as_str()),
        ));
    }
    if info.samples_per_pixel > 1 {
        out.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(decoded.planar_configuration),
        ));
    }
}

fn finish_part10(mut out: FileObject, ts: &dicom_encoding::TransferSyntax) -> Result<Vec<u8>> {
    out.update_meta(|m| {
        m.set_transfer_syntax(ts);
        m.implementation_class_uid = IMPLEMENTATION_CLASS_UID.to_owned();
        m.implementation_version_name = Some(IMPLEMENTATION_VERSION_NAME.to_owned());
    });
    let mut bytes = Vec::new();
    out.write_all(&mut bytes).map_err(|e| PixelError::Encode {
        format: "Part-10",
        reason: error_chain(&e),
    })?;
    Ok(bytes)
}

/// Transcode the whole object to JPEG Baseline (1.2.840.10008.1.2.4.50) at `quality` (1..=100),
/// as Part-10 bytes. Only 8-bit data (Bits Allocated 8) qualifies; colour frames are coded as
/// YCbCr 4:2:2 (`YBR_FULL_422`), one fragment per frame with a Basic Offset Table. Lossy Image
/// Compression, its ratio and method are recorded.
pub fn to_jpeg_baseline(obj: &FileObject, quality: u8) -> Result<Vec<u8>> {
    if !(1..=100).contains(&quality) {
        return Err(PixelError::InvalidRequest(format!(
            "JPEG quality {quality} is outside 1..=100"
        )));
    }
    let info = pixel_info(obj)?;
    info.validate()?;
    if info.bits_allocated != 8 {
        return Err(PixelError::UnsupportedFormat(format!(
            "JPEG Baseline needs 8-bit samples, the object has BitsAllocated {}",
            info.bits_allocated
        )));
    }
    let mut fragments = Vec::with_capacity(info.number_of_frames as usize);
    let mut offsets = Vec::with_capacity(info.number_of_frames as usize);
    let mut position = 0u64;
    let mut raw_total = 0u64;
    let mut photometric = info.photometric.clone();
    for f in 1..=info.number_of_frames {
        let (data, decoded) = decoded_frame(obj, f)?;
        raw_total += data.len() as u64;
        let (pixels, color) = match (decoded.samples_per_pixel, decoded.photometric.as_str()) {
            (1, "MONOCHROME1" | "MONOCHROME2") => (data, jpeg_encoder::ColorType::Luma),
            (3, "RGB") => (data, jpeg_encoder::ColorType::Rgb),
            (3, "YBR_FULL" | "YBR_FULL_422") => {
                (ybr_to_rgb(&data, &decoded)?, jpeg_encoder::ColorType::Rgb)
            }
            (_, pi) => {
                return Err(PixelError::UnsupportedFormat(format!(
                    "JPEG Baseline from {pi}"
                )));
            }
        };
        let mut coded = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut coded, quality);
        if color == jpeg_encoder::ColorType::Rgb {
            encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_1);
            photometric = "YBR_FULL_422".to_owned();
        }
        encoder
            .encode(&pixels, info.columns, info.rows, color)
            .map_err(|e| PixelError::Encode {
                format: "JPEG",
                reason: e.to_string(),
            })?;
        if coded.len() % 2 == 1 {
            coded.push(0);
        }
        offsets.push(u32::try_from(position).map_err(|_| PixelError::Encode {
            format: "JPEG",
            reason: "encapsulated frames exceed 4 GiB".into(),
        })?);
        position += 8 + coded.len() as u64;
        fragments.push(coded);
    }
    let coded_total: u64 = fragments.iter().map(|f| f.len() as u64).sum();
    let mut out = obj.clone();
    out.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
            offsets, fragments,
        )),
    ));
    for tag in [
        tags::EXTENDED_OFFSET_TABLE,
        tags::EXTENDED_OFFSET_TABLE_LENGTHS,
        tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH,
    ] {
        out.remove_element(tag);
    }
    out.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(photometric.as_str()),
    ));
    if info.samples_per_pixel > 1 {
        out.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    }
    out.put(DataElement::new(
        tags::LOSSY_IMAGE_COMPRESSION,
        VR::CS,
        PrimitiveValue::from("01"),
    ));
    let ratio = raw_total as f64 / coded_total.max(1) as f64;
    append_lossy(&mut out, ratio);
    finish_part10(
        out,
        &dicom_transfer_syntax_registry::entries::JPEG_BASELINE.erased(),
    )
}

/// Append this compression step to Lossy Image Compression Ratio and Method (PS3.3 C.7.6.1.1.5).
fn append_lossy(out: &mut FileObject, ratio: f64) {
    let mut ratios: Vec<String> = out
        .get(tags::LOSSY_IMAGE_COMPRESSION_RATIO)
        .and_then(|e| e.to_multi_str().ok().map(|v| v.to_vec()))
        .unwrap_or_default();
    let mut methods: Vec<String> = out
        .get(tags::LOSSY_IMAGE_COMPRESSION_METHOD)
        .and_then(|e| e.to_multi_str().ok().map(|v| v.to_vec()))
        .unwrap_or_default();
    let mut r = format!("{ratio:.4}");
    r.truncate(16);
    ratios.push(r);
    methods.push("ISO_10918_1".to_owned());
    out.put(DataElement::new(
        tags::LOSSY_IMAGE_COMPRESSION_RATIO,
        VR::DS,
        PrimitiveValue::Strs(ratios.into()),
    ));
    out.put(DataElement::new(
        tags::LOSSY_IMAGE_COMPRESSION_METHOD,
        VR::CS,
        PrimitiveValue::Strs(methods.into()),
    ));
}

// ---------------------------------------------------------------------------------------------
// rendering

/// VOI LUT Function (PS3.3 C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

impl VoiFunction {
    /// Parse the defined terms (`LINEAR`, `LINEAR_EXACT`, `SIGMOID`), case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "LINEAR" => Some(Self::Linear),
            "LINEAR_EXACT" => Some(Self::LinearExact),
            "SIGMOID" => Some(Self::Sigmoid),
            _ => None,
        }
    }
}

/// A VOI window in modality units (after Rescale or the Modality LUT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

/// Output image format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// 8-bit grayscale or RGB PNG, fast compression.
    #[default]
    Png,
    /// Baseline JPEG, quality 1..=100.
    Jpeg { quality: u8 },
}

/// What [`render`] should produce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderOptions {
    /// 1-based frame number.
    pub frame: u32,
    /// Explicit window; otherwise the object's first window, its VOI LUT, or the frame's range.
    pub window: Option<Window>,
    /// Fit into (width, height) keeping the aspect ratio; otherwise the stored size.
    pub viewport: Option<(u32, u32)>,
    pub format: ImageFormat,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            frame: 1,
            window: None,
            viewport: None,
            format: ImageFormat::Png,
        }
    }
}

/// An 8-bit image ready to encode: 1 (gray) or 3 (RGB) channels, interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image8 {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

/// Render one frame for WADO-RS `/rendered` and `/thumbnail`.
///
/// Grayscale: stored values (masked/sign-extended to Bits Stored) → Modality LUT Sequence or
/// Rescale Slope/Intercept (per-frame and shared functional groups first, then the top level)
/// → VOI: the requested window, else the object's first Window Center/Width with its VOI LUT
/// Function, else its first VOI LUT, else the frame's min..max → 8 bits, inverted for
/// MONOCHROME1. Colour: RGB as is, YBR_FULL/YBR_FULL_422 converted to RGB, PALETTE COLOR
/// through its lookup tables; 16-bit colour is scaled to 8 bits. Then the viewport fit (area
/// averaging when shrinking, bilinear when enlarging) and PNG or JPEG encoding.
pub fn render(obj: &FileObject, options: &RenderOptions) -> Result<Vec<u8>> {
    let image = render_image(obj, options)?;
    encode_image(&image, options.format)
}

/// [`render`] without the final encoding: the 8-bit pixels.
pub fn render_image(obj: &FileObject, options: &RenderOptions) -> Result<Image8> {
    if let Some(w) = &options.window {
        check_window(w)?;
    }
    if let Some((w, h)) = options.viewport
        && (w == 0 || h == 0 || w > MAX_VIEWPORT || h > MAX_VIEWPORT)
    {
        return Err(PixelError::InvalidRequest(format!(
            "viewport {w}x{h} outside 1..={MAX_VIEWPORT}"
        )));
    }
    if let ImageFormat::Jpeg { quality } = options.format
        && !(1..=100).contains(&quality)
    {
        return Err(PixelError::InvalidRequest(format!(
            "JPEG quality {quality} is outside 1..=100"
        )));
    }
    let (data, info) = decoded_frame(obj, options.frame)?;
    let index = options.frame as usize - 1;
    let (w, h) = (info.columns as u32, info.rows as u32);
    if let Some((vw, vh)) = options.viewport {
        let (ow, _) = fit(w, h, vw, vh);
        // the horizontal pass keeps rows x output width x 3 floats
        if h as u64 * ow as u64 * 3 * 4 > MAX_FRAME_BYTES {
            return Err(PixelError::InvalidRequest(format!(
                "viewport {vw}x{vh} is too large for a {w}x{h} frame"
            )));
        }
    }
    let image = match (info.samples_per_pixel, info.photometric.as_str()) {
        (1, "PALETTE COLOR") => Image8 {
            width: w,
            height: h,
            channels: 3,
            data: palette_to_rgb(obj, &data, &info)?,
        },
        (1, pi) => {
            let values = stored_values(&data, &info);
            let mut gray = grayscale(
                obj,
                index,
                &values,
                info.is_signed(),
                options.window.as_ref(),
            )?;
            if pi == "MONOCHROME1" {
                for v in gray.iter_mut() {
                    *v = 255 - *v;
                }
            }
            Image8 {
                width: w,
                height: h,
                channels: 1,
                data: gray,
            }
        }
        (3, "RGB" | "YBR_ICT" | "YBR_RCT") => Image8 {
            width: w,
            height: h,
            channels: 3,
            data: to_8bit(&data, &info),
        },
        (3, "YBR_FULL" | "YBR_FULL_422") => Image8 {
            width: w,
            height: h,
            channels: 3,
            data: ybr_to_rgb(&data, &info)?,
        },
        (spp, pi) => {
            return Err(PixelError::UnsupportedFormat(format!(
                "rendering {pi} with {spp} samples per pixel"
            )));
        }
    };
    Ok(match options.viewport {
        Some((vw, vh)) => {
            let (ow, oh) = fit(w, h, vw, vh);
            if (ow, oh) == (w, h) {
                image
            } else {
                Image8 {
                    width: ow,
                    height: oh,
                    channels: image.channels,
                    data: resize(&image.data, w, h, image.channels as usize, ow, oh),
                }
            }
        }
        None => image,
    })
}

fn check_window(w: &Window) -> Result<()> {
    let ok = w.center.is_finite()
        && w.width.is_finite()
        && match w.function {
            VoiFunction::Linear => w.width >= 1.0,
            VoiFunction::LinearExact | VoiFunction::Sigmoid => w.width > 0.0,
        };
    if ok {
        Ok(())
    } else {
        Err(PixelError::InvalidRequest(format!(
            "window center {} width {} ({:?}): width must be >= 1 for LINEAR, > 0 otherwise",
            w.center, w.width, w.function
        )))
    }
}

/// Output size fitting (w, h) into the viewport (vw, vh), keeping the aspect ratio.
pub fn fit(w: u32, h: u32, vw: u32, vh: u32) -> (u32, u32) {
    let scale = (vw as f64 / w as f64).min(vh as f64 / h as f64);
    let ow = ((w as f64 * scale).round() as u32).clamp(1, vw);
    let oh = ((h as f64 * scale).round() as u32).clamp(1, vh);
    (ow, oh)
}

/// Stored values of a decoded single-sample frame, masked or sign-extended to Bits Stored.
fn stored_values(data: &[u8], info: &PixelInfo) -> Vec<i64> {
    let bs = info.bits_stored as u32;
    let signed = info.is_signed();
    let fix = |v: u64, width: u32| -> i64 {
        let bits = bs.min(width);
        let v = if bits >= 64 {
            v
        } else {
            v & ((1u64 << bits) - 1)
        };
        if signed && bits < 64 && v & (1u64 << (bits - 1)) != 0 {
            v as i64 - (1i64 << bits)
        } else {
            v as i64
        }
    };
    match info.bits_allocated {
        1 => {
            let n = info.rows as usize * info.columns as usize;
            (0..n)
                .map(|i| ((data.get(i / 8).copied().unwrap_or(0) >> (i % 8)) & 1) as i64)
                .collect()
        }
        8 => data.iter().map(|&b| fix(b as u64, 8)).collect(),
        16 => data
            .chunks_exact(2)
            .map(|c| fix(u16::from_le_bytes([c[0], c[1]]) as u64, 16))
            .collect(),
        _ => data
            .chunks_exact(4)
            .map(|c| fix(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64, 32))
            .collect(),
    }
}

/// Find an attribute for a frame (`index` from 0): in the per-frame functional group item,
/// then the shared functional groups (inside the macro sequence `macro_seq`), then at the top
/// level.
pub fn frame_attr<'a>(
    obj: &'a InMemDicomObject,
    index: usize,
    macro_seq: Tag,
    tag: Tag,
) -> Option<&'a InMemElement> {
    let in_group =
        |group: Option<&'a InMemDicomObject>| group?.get(macro_seq)?.items()?.first()?.get(tag);
    let per_frame = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.get(index));
    let shared = obj
        .get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.first());
    in_group(per_frame)
        .or_else(|| in_group(shared))
        .or_else(|| obj.get(tag))
}

fn first_f64(el: Option<&InMemElement>) -> Option<f64> {
    el?.to_multi_float64()
        .ok()?
        .first()
        .copied()
        .filter(|v| v.is_finite())
}

/// A lookup table (Modality or VOI LUT, PS3.3 C.11.1): descriptor (entries, first mapped
/// value, bits) and data.
struct Lut {
    first: i64,
    bits: u32,
    data: Vec<u16>,
}

impl Lut {
    fn from_item(item: &InMemDicomObject, signed: bool) -> Option<Lut> {
        let desc = item.get(tags::LUT_DESCRIPTOR)?.to_multi_int::<i64>().ok()?;
        let (entries, first, bits) = (*desc.first()?, *desc.get(1)?, *desc.get(2)?);
        let entries = if entries == 0 {
            65536
        } else {
            entries as usize
        };
        let el = item.get(tags::LUT_DATA)?;
        let data: Vec<u16> = match el.value().primitive()? {
            PrimitiveValue::U8(b) if bits <= 8 && b.len() >= entries => {
                b.iter().map(|&v| v as u16).collect()
            }
            p => p
                .to_multi_int::<i64>()
                .ok()?
                .into_iter()
                .map(|v| v as u16)
                .collect(),
        };
        if data.is_empty() || !(1..=16).contains(&bits) {
            return None;
        }
        // the descriptor's first value is US or SS (PS3.3 C.11.1.1.1): for signed pixel data a
        // value read as US above 32767 stands for a negative one
        let first = if signed && (32768..65536).contains(&first) {
            first - 65536
        } else {
            first
        };
        Some(Lut {
            first,
            bits: bits as u32,
            data: data.into_iter().take(entries).collect(),
        })
    }

    fn get(&self, x: i64) -> f64 {
        let last = self.data.len() as i64 - 1;
        let i = (x - self.first).clamp(0, last);
        self.data[i as usize] as f64
    }
}

/// The modality transform of a frame.
enum Modality {
    Rescale { slope: f64, intercept: f64 },
    Lut(Lut),
}

impl Modality {
    fn of(obj: &InMemDicomObject, index: usize, signed: bool) -> Modality {
        if let Some(lut) = obj
            .get(tags::MODALITY_LUT_SEQUENCE)
            .and_then(|e| e.items())
            .and_then(|i| i.first())
            .and_then(|item| Lut::from_item(item, signed))
        {
            return Modality::Lut(lut);
        }
        let seq = tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE;
        let slope = first_f64(frame_attr(obj, index, seq, tags::RESCALE_SLOPE))
            .filter(|s| *s != 0.0)
            .unwrap_or(1.0);
        let intercept =
            first_f64(frame_attr(obj, index, seq, tags::RESCALE_INTERCEPT)).unwrap_or(0.0);
        Modality::Rescale { slope, intercept }
    }

    fn apply(&self, x: i64) -> f64 {
        match self {
            Modality::Rescale { slope, intercept } => x as f64 * slope + intercept,
            Modality::Lut(l) => l.get(x),
        }
    }
}

/// The VOI transform of a frame, to [0, 1].
enum Voi {
    Window(Window),
    Lut(Lut),
    Range { min: f64, max: f64 },
}

impl Voi {
    fn apply(&self, x: f64) -> f64 {
        match self {
            Voi::Window(w) => window_unit(x, w),
            Voi::Lut(l) => {
                let max = ((1u32 << l.bits) - 1) as f64;
                (l.get(x.round() as i64) / max).clamp(0.0, 1.0)
            }
            Voi::Range { min, max } => {
                if max > min {
                    ((x - min) / (max - min)).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// The VOI functions of PS3.3 C.11.2.1.2, with output range [0, 1].
pub fn window_unit(x: f64, w: &Window) -> f64 {
    let (c, width) = (w.center, w.width);
    match w.function {
        VoiFunction::Linear => {
            let lo = c - 0.5 - (width - 1.0) / 2.0;
            let hi = c - 0.5 + (width - 1.0) / 2.0;
            if x <= lo {
                0.0
            } else if x > hi {
                1.0
            } else {
                (x - (c - 0.5)) / (width - 1.0) + 0.5
            }
        }
        VoiFunction::LinearExact => {
            if x <= c - width / 2.0 {
                0.0
            } else if x > c + width / 2.0 {
                1.0
            } else {
                (x - c) / width + 0.5
            }
        }
        VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / width).exp()),
    }
}

fn object_window(obj: &InMemDicomObject, index: usize) -> Option<Window> {
    let seq = tags::FRAME_VOILUT_SEQUENCE;
    let center = first_f64(frame_attr(obj, index, seq, tags::WINDOW_CENTER))?;
    let width = first_f64(frame_attr(obj, index, seq, tags::WINDOW_WIDTH))?;
    let function = frame_attr(obj, index, seq, tags::VOILUT_FUNCTION)
        .and_then(|e| e.to_str().ok())
        .and_then(|s| VoiFunction::parse(&s))
        .unwrap_or_default();
    let w = Window {
        center,
        width,
        function,
    };
    check_window(&w).ok().map(|_| w)
}

/// Modality LUT, VOI and quantisation of a grayscale frame to 8 bits.
fn grayscale(
    obj: &InMemDicomObject,
    index: usize,
    values: &[i64],
    signed: bool,
    window: Option<&Window>,
) -> Result<Vec<u8>> {
    let (Some(&min), Some(&max)) = (values.iter().min(), values.iter().max()) else {
        return Ok(Vec::new());
    };
    let modality = Modality::of(obj, index, signed);
    // a VOI LUT indexes modality output, which is signed when rescaling can go negative
    let modality_signed = match &modality {
        Modality::Rescale { slope, intercept } => {
            signed || (min as f64 * slope + intercept).min(max as f64 * slope + intercept) < 0.0
        }
        Modality::Lut(_) => false,
    };
    let voi = if let Some(w) = window {
        Voi::Window(*w)
    } else if let Some(w) = object_window(obj, index) {
        Voi::Window(w)
    } else if let Some(lut) = obj
        .get(tags::VOILUT_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|i| i.first())
        .and_then(|item| Lut::from_item(item, modality_signed))
    {
        Voi::Lut(lut)
    } else {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        match &modality {
            Modality::Rescale { .. } => {
                for x in [modality.apply(min), modality.apply(max)] {
                    lo = lo.min(x);
                    hi = hi.max(x);
                }
            }
            Modality::Lut(_) => {
                for &v in values {
                    let x = modality.apply(v);
                    lo = lo.min(x);
                    hi = hi.max(x);
                }
            }
        }
        Voi::Range { min: lo, max: hi }
    };
    let quantise = |v: i64| {
        (voi.apply(modality.apply(v)) * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8
    };
    // a table over the value range pays off when the range is not larger than the frame
    let span = (max - min) as u64;
    if span < (values.len() as u64).max(1 << 16) {
        let lut: Vec<u8> = (min..=max).map(quantise).collect();
        Ok(values.iter().map(|&v| lut[(v - min) as usize]).collect())
    } else {
        Ok(values.iter().map(|&v| quantise(v)).collect())
    }
}

/// Colour samples to 8 bits (16-bit colour scaled down from Bits Stored).
fn to_8bit(data: &[u8], info: &PixelInfo) -> Vec<u8> {
    match info.bits_allocated {
        8 => data.to_vec(),
        16 => {
            let shift = info.bits_stored.saturating_sub(8) as u32;
            let mask = if info.bits_stored >= 16 {
                u16::MAX
            } else {
                (1u16 << info.bits_stored) - 1
            };
            data.chunks_exact(2)
                .map(|c| ((u16::from_le_bytes([c[0], c[1]]) & mask) >> shift).min(255) as u8)
                .collect()
        }
        _ => {
            let shift = info.bits_stored.saturating_sub(8) as u32;
            data.chunks_exact(4)
                .map(|c| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) >> shift).min(255) as u8)
                .collect()
        }
    }
}

/// YBR_FULL (and native YBR_FULL_422, chroma shared by pixel pairs) to RGB, PS3.3 C.7.6.3.1.2.
fn ybr_to_rgb(data: &[u8], info: &PixelInfo) -> Result<Vec<u8>> {
    let bytes = to_8bit(data, info);
    let pixels = info.rows as usize * info.columns as usize;
    let convert = |y: u8, cb: u8, cr: u8| {
        let (y, cb, cr) = (y as f32, cb as f32 - 128.0, cr as f32 - 128.0);
        let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        [
            c(y + 1.402 * cr),
            c(y - 0.344_136 * cb - 0.714_136 * cr),
            c(y + 1.772 * cb),
        ]
    };
    let mut out = Vec::with_capacity(pixels * 3);
    if is_422(&info.photometric) && bytes.len() == pixels * 2 {
        // Y1 Y2 Cb Cr per pixel pair
        for q in bytes.chunks_exact(4) {
            out.extend_from_slice(&convert(q[0], q[2], q[3]));
            out.extend_from_slice(&convert(q[1], q[2], q[3]));
        }
    } else if bytes.len() == pixels * 3 {
        for p in bytes.chunks_exact(3) {
            out.extend_from_slice(&convert(p[0], p[1], p[2]));
        }
    } else {
        return Err(PixelError::UnsupportedFormat(format!(
            "{} frame of {} bytes for {pixels} pixels",
            info.photometric,
            bytes.len()
        )));
    }
    Ok(out)
}

/// PALETTE COLOR through the red, green and blue lookup tables (PS3.3 C.7.6.3.1.5).
fn palette_to_rgb(obj: &InMemDicomObject, data: &[u8], info: &PixelInfo) -> Result<Vec<u8>> {
    let table = |desc: Tag, lut: Tag, segmented: Tag, name: &'static str| -> Result<Lut> {
        if obj.get(segmented).is_some() && obj.get(lut).is_none() {
            return Err(PixelError::UnsupportedFormat(format!(
                "segmented palette colour lookup tables ({name})"
            )));
        }
        let d = obj
            .get(desc)
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .filter(|d| d.len() == 3)
            .ok_or_else(|| attribute_error(name, desc, "missing or not 3 values"))?;
        let entries = if d[0] == 0 { 65536 } else { d[0] as usize };
        let el = obj
            .get(lut)
            .ok_or_else(|| attribute_error(name, lut, "missing"))?;
        let raw = el
            .value()
            .to_bytes()
            .map_err(|e| attribute_error(name, lut, e.to_string()))?;
        let bits = d[2] as u32;
        // 16-bit entries, or 8-bit entries (sometimes stored one per 16-bit word)
        let values: Vec<u16> = if bits == 8 && raw.len() == entries {
            raw.iter().map(|&b| b as u16).collect()
        } else {
            raw.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        let data: Vec<u16> = if bits == 8 {
            values.iter().map(|v| v & 0xFF).collect()
        } else {
            values.iter().map(|v| v >> 8).collect()
        };
        if data.is_empty() {
            return Err(attribute_error(name, lut, "empty"));
        }
        Ok(Lut {
            first: d[1],
            bits: 8,
            data,
        })
    };
    let r = table(
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "RedPaletteColorLookupTable",
    )?;
    let g = table(
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "GreenPaletteColorLookupTable",
    )?;
    let b = table(
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        "BluePaletteColorLookupTable",
    )?;
    let unsigned = PixelInfo {
        pixel_representation: 0,
        ..info.clone()
    };
    let values = stored_values(data, &unsigned);
    let mut out = Vec::with_capacity(values.len() * 3);
    for v in values {
        out.extend_from_slice(&[r.get(v) as u8, g.get(v) as u8, b.get(v) as u8]);
    }
    Ok(out)
}

/// Resampling weights from `n` input samples to `m` output samples: area averaging when
/// shrinking, bilinear interpolation when enlarging.
fn weights(n: usize, m: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n as f64 / m as f64;
    (0..m)
        .map(|o| {
            if scale >= 1.0 {
                let (a, b) = (o as f64 * scale, (o + 1) as f64 * scale);
                let mut w = Vec::new();
                let mut i = a.floor() as usize;
                while (i as f64) < b && i < n {
                    let overlap = (b.min(i as f64 + 1.0) - a.max(i as f64)) / scale;
                    if overlap > 0.0 {
                        w.push((i, overlap as f32));
                    }
                    i += 1;
                }
                w
            } else {
                let x = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (n - 1) as f64);
                let i = x.floor() as usize;
                let f = (x - i as f64) as f32;
                if i + 1 < n && f > 0.0 {
                    vec![(i, 1.0 - f), (i + 1, f)]
                } else {
                    vec![(i, 1.0)]
                }
            }
        })
        .collect()
}

/// Separable resize of an interleaved 8-bit image.
fn resize(src: &[u8], w: u32, h: u32, channels: usize, ow: u32, oh: u32) -> Vec<u8> {
    let (w, h, ow, oh) = (w as usize, h as usize, ow as usize, oh as usize);
    let wx = weights(w, ow);
    let wy = weights(h, oh);
    // horizontal pass into f32
    let mut tmp = vec![0f32; h * ow * channels];
    for y in 0..h {
        let row = &src[y * w * channels..(y + 1) * w * channels];
        let out = &mut tmp[y * ow * channels..(y + 1) * ow * channels];
        for (x, ws) in wx.iter().enumerate() {
            for c in 0..channels {
                out[x * channels + c] = ws
                    .iter()
                    .map(|&(i, wt)| row[i * channels + c] as f32 * wt)
                    .sum();
            }
        }
    }
    // vertical pass
    let stride = ow * channels;
    let mut out = vec![0u8; oh * stride];
    for (y, ws) in wy.iter().enumerate() {
        let dst = &mut out[y * stride..(y + 1) * stride];
        for (k, d) in dst.iter_mut().enumerate() {
            let v: f32 = ws.iter().map(|&(i, wt)| tmp[i * stride + k] * wt).sum();
            *d = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Encode an 8-bit image as PNG (fast compression) or baseline JPEG.
pub fn encode_image(image: &Image8, format: ImageFormat) -> Result<Vec<u8>> {
    match format {
        ImageFormat::Png => {
            let mut out = Vec::new();
            let mut enc = png::Encoder::new(&mut out, image.width, image.height);
            enc.set_color(if image.channels == 3 {
                png::ColorType::Rgb
            } else {
                png::ColorType::Grayscale
            });
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            let err = |e: png::EncodingError| PixelError::Encode {
                format: "PNG",
                reason: e.to_string(),
            };
            let mut writer = enc.write_header().map_err(err)?;
            writer.write_image_data(&image.data).map_err(err)?;
            writer.finish().map_err(err)?;
            Ok(out)
        }
        ImageFormat::Jpeg { quality } => {
            if !(1..=100).contains(&quality) {
                return Err(PixelError::InvalidRequest(format!(
                    "JPEG quality {quality} is outside 1..=100"
                )));
            }
            let (w, h) = (u16::try_from(image.width), u16::try_from(image.height));
            let (Ok(w), Ok(h)) = (w, h) else {
                return Err(PixelError::Encode {
                    format: "JPEG",
                    reason: format!("{}x{} exceeds 65535", image.width, image.height),
                });
            };
            let mut out = Vec::new();
            let encoder = jpeg_encoder::Encoder::new(&mut out, quality);
            let color = if image.channels == 3 {
                jpeg_encoder::ColorType::Rgb
            } else {
                jpeg_encoder::ColorType::Luma
            };
            encoder
                .encode(&image.data, w, h, color)
                .map_err(|e| PixelError::Encode {
                    format: "JPEG",
                    reason: e.to_string(),
                })?;
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// capabilities

/// Transfer syntaxes this build handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxSupport {
    /// [`decoded_frame`], [`to_explicit_vr_le`] and [`render`] accept objects in these.
    pub decode: Vec<&'static str>,
    /// [`to_explicit_vr_le`] and [`to_jpeg_baseline`] produce these.
    pub encode: Vec<&'static str>,
}

/// Which transfer syntaxes this build decodes and encodes, sorted by UID: the native ones and
/// those the codec registry has a reader for. Caveats the list cannot express: JPEG Extended
/// (1.2.840.10008.1.2.4.51) decodes 8-bit process 2 only, not 12-bit process 4 (jpeg-decoder
/// has no 12-bit DCT); HTJ2K comes from openjp2's HT decoder and has not met a real file here.
pub fn supported_syntaxes() -> SyntaxSupport {
    let no_pixels = [
        uids::JPIP_REFERENCED,
        uids::JPIP_REFERENCED_DEFLATE,
        uids::JPIPHTJ2K_REFERENCED,
        uids::JPIPHTJ2K_REFERENCED_DEFLATE,
    ];
    let mut decode: Vec<&'static str> = TransferSyntaxRegistry
        .iter()
        .filter(|ts| !no_pixels.contains(&ts.uid()))
        .filter(|ts| {
            matches!(
                ts.codec(),
                Codec::None | Codec::Dataset(Some(_)) | Codec::EncapsulatedPixelData(Some(_), _)
            )
        })
        .map(|ts| ts.uid())
        .collect();
    decode.sort_unstable();
    decode.dedup();
    SyntaxSupport {
        decode,
        encode: vec![uids::EXPLICIT_VR_LITTLE_ENDIAN, uids::JPEG_BASELINE8_BIT],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Phantom, SeriesSpec, XorShift, ct_study};
    use dicom_core::dicom_value;
    use dicom_object::meta::FileMetaTableBuilder;

    const SC: &str = "1.2.840.10008.5.1.4.1.1.7";

    /// Header of a test image; pixel data is added by the caller.
    fn header(
        rows: u16,
        cols: u16,
        spp: u16,
        ba: u16,
        bs: u16,
        signed: bool,
        pi: &str,
    ) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        let mut us = |tag, v: u16| o.put(DataElement::new(tag, VR::US, dicom_value!(U16, [v])));
        us(tags::ROWS, rows);
        us(tags::COLUMNS, cols);
        us(tags::SAMPLES_PER_PIXEL, spp);
        us(tags::BITS_ALLOCATED, ba);
        us(tags::BITS_STORED, bs);
        us(tags::HIGH_BIT, bs - 1);
        us(tags::PIXEL_REPRESENTATION, signed as u16);
        if spp > 1 {
            us(tags::PLANAR_CONFIGURATION, 0);
        }
        o.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(SC),
        ));
        o.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3.4.5"),
        ));
        o.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(pi),
        ));
        o
    }

    fn put_str(o: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
        o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    }

    fn with_native(mut o: InMemDicomObject, frames: u32, data: Vec<u8>, ts: &str) -> FileObject {
        if frames > 1 {
            put_str(&mut o, tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string());
        }
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(data.into()),
        ));
        o.with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
            .unwrap()
    }

    fn with_fragments(
        mut o: InMemDicomObject,
        frames: u32,
        bot: Vec<u32>,
        fragments: Vec<Vec<u8>>,
        ts: &str,
    ) -> FileObject {
        if frames > 1 {
            put_str(&mut o, tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string());
        }
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
                bot, fragments,
            )),
        ));
        o.with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
            .unwrap()
    }

    fn le16(values: &[i32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|&v| (v as u16).to_le_bytes())
            .collect()
    }

    /// A generated instance of the synthetic studies, parsed as the archive would.
    fn synthetic(phantom: Phantom, rows: u16, cols: u16) -> FileObject {
        let mut spec = ct_study(1, rows, cols, "pixel");
        spec.series = vec![SeriesSpec {
            phantom,
            slices: 1,
            rows,
            cols,
            description: "t".into(),
            number: 1,
        }];
        let mut out = None;
        spec.generate(|g| {
            out = Some(
                dicom_object::OpenFileOptions::new()
                    .from_reader(&g.part10[128..])
                    .unwrap(),
            );
            Ok::<(), crate::DicomError>(())
        })
        .unwrap();
        out.unwrap()
    }

    fn gray(obj: &FileObject, window: Option<Window>) -> Vec<u8> {
        render_image(
            obj,
            &RenderOptions {
                window,
                ..Default::default()
            },
        )
        .unwrap()
        .data
    }

    fn png_size(png: &[u8]) -> (u32, u32) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let be = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
        (be(16), be(20))
    }

    // ---- header and frames

    #[test]
    fn pixel_info_of_a_synthetic_ct() {
        let obj = synthetic(Phantom::ChestCt, 32, 48);
        let info = pixel_info(&obj).unwrap();
        assert_eq!(
            (info.rows, info.columns, info.samples_per_pixel),
            (32, 48, 1)
        );
        assert_eq!(
            (
                info.bits_allocated,
                info.bits_stored,
                info.pixel_representation
            ),
            (16, 16, 1)
        );
        assert_eq!(info.photometric, "MONOCHROME2");
        assert_eq!(info.number_of_frames, 1);
        assert_eq!(info.transfer_syntax, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        assert_eq!(info.native_frame_len(), 32 * 48 * 2);
    }

    #[test]
    fn missing_attributes_are_typed_errors() {
        let mut o = header(2, 2, 1, 8, 8, false, "MONOCHROME2");
        o.remove_element(tags::ROWS);
        let obj = with_native(o, 1, vec![0; 4], uids::EXPLICIT_VR_LITTLE_ENDIAN);
        assert!(
            matches!(pixel_info(&obj), Err(PixelError::Attribute { tag, .. }) if tag == tags::ROWS)
        );
        let o = header(2, 2, 1, 8, 8, false, "MONOCHROME2")
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
            .unwrap();
        assert!(matches!(raw_frame(&o, 1), Err(PixelError::NoPixelData)));
        let obj = with_native(
            header(2, 2, 1, 12, 12, false, "MONOCHROME2"),
            1,
            vec![0; 8],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        assert!(matches!(
            decoded_frame(&obj, 1),
            Err(PixelError::Attribute {
                name: "BitsAllocated",
                ..
            })
        ));
    }

    #[test]
    fn raw_frame_of_native_data_is_the_stored_bytes() {
        let obj = synthetic(Phantom::MrBrain, 16, 16);
        let stored = obj
            .get(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .to_bytes()
            .unwrap()
            .into_owned();
        let (bytes, media) = raw_frame(&obj, 1).unwrap();
        assert_eq!(media, "application/octet-stream");
        assert_eq!(bytes, stored);
        let (decoded, info) = decoded_frame(&obj, 1).unwrap();
        assert_eq!(decoded, stored);
        assert_eq!(info.transfer_syntax, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    }

    #[test]
    fn multi_frame_raw_frame_slices_each_frame() {
        let frame_len = 3 * 5 * 2;
        let data: Vec<u8> = (0..4u8).flat_map(|f| vec![f * 10 + 1; frame_len]).collect();
        let obj = with_native(
            header(3, 5, 1, 16, 16, false, "MONOCHROME2"),
            4,
            data,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        for f in 1..=4u32 {
            let (bytes, _) = raw_frame(&obj, f).unwrap();
            assert_eq!(bytes, vec![(f as u8 - 1) * 10 + 1; frame_len], "frame {f}");
        }
    }

    #[test]
    fn frame_out_of_range_is_an_error() {
        let obj = with_native(
            header(2, 2, 1, 8, 8, false, "MONOCHROME2"),
            3,
            vec![0; 12],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        for f in [0, 4, u32::MAX] {
            assert!(matches!(
                raw_frame(&obj, f),
                Err(PixelError::FrameOutOfRange { frames: 3, .. })
            ));
            assert!(matches!(
                decoded_frame(&obj, f),
                Err(PixelError::FrameOutOfRange { .. })
            ));
            let opts = RenderOptions {
                frame: f,
                ..Default::default()
            };
            assert!(matches!(
                render(&obj, &opts),
                Err(PixelError::FrameOutOfRange { .. })
            ));
        }
    }

    #[test]
    fn truncated_pixel_data_is_an_error_not_a_panic() {
        // three 4x4 16-bit frames need 96 bytes; give 70
        let obj = with_native(
            header(4, 4, 1, 16, 12, false, "MONOCHROME2"),
            3,
            vec![7; 70],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        assert!(raw_frame(&obj, 1).is_ok());
        assert!(raw_frame(&obj, 2).is_ok());
        let err = raw_frame(&obj, 3).unwrap_err();
        assert!(
            matches!(
                err,
                PixelError::Truncated {
                    frame: 3,
                    start: 64,
                    end: 96,
                    available: 70
                }
            ),
            "{err}"
        );
        assert!(matches!(
            decoded_frame(&obj, 3),
            Err(PixelError::Truncated { .. })
        ));
        assert!(
            render(
                &obj,
                &RenderOptions {
                    frame: 3,
                    ..Default::default()
                }
            )
            .is_err()
        );
        assert!(matches!(
            to_explicit_vr_le(&obj),
            Err(PixelError::Truncated { .. })
        ));
        // and an empty Pixel Data
        let obj = with_native(
            header(4, 4, 1, 16, 12, false, "MONOCHROME2"),
            1,
            vec![],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        assert!(matches!(
            raw_frame(&obj, 1),
            Err(PixelError::Truncated { .. })
        ));
    }

    #[test]
    fn one_bit_frames_are_unpacked_from_any_bit_offset() {
        // 3x3 frames of 9 bits each: frame 2 starts at bit 9
        let bits: Vec<u8> = (0..27).map(|i| ((i * 7) % 3 == 0) as u8).collect();
        let mut packed = vec![0u8; 4];
        for (i, b) in bits.iter().enumerate() {
            packed[i / 8] |= b << (i % 8);
        }
        let obj = with_native(
            header(3, 3, 1, 1, 1, false, "MONOCHROME2"),
            3,
            packed,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        for f in 0..3 {
            let (bytes, _) = raw_frame(&obj, f as u32 + 1).unwrap();
            assert_eq!(bytes.len(), 2);
            let got: Vec<u8> = (0..9).map(|i| (bytes[i / 8] >> (i % 8)) & 1).collect();
            assert_eq!(got, bits[f * 9..f * 9 + 9], "frame {}", f + 1);
            assert_eq!(bytes[1] & !1, 0, "bits after the frame are cleared");
        }
        let img = render_image(
            &obj,
            &RenderOptions {
                frame: 2,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            img.data
                .iter()
                .map(|&v| (v == 255) as u8)
                .collect::<Vec<_>>(),
            bits[9..18]
        );
    }

    #[test]
    fn planar_configuration_1_is_interleaved_when_decoded() {
        let mut o = header(1, 2, 3, 8, 8, false, "RGB");
        o.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            dicom_value!(U16, [1]),
        ));
        let obj = with_native(
            o,
            1,
            vec![1, 2, 10, 20, 100, 200],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        assert_eq!(raw_frame(&obj, 1).unwrap().0, vec![1, 2, 10, 20, 100, 200]);
        let (d, info) = decoded_frame(&obj, 1).unwrap();
        assert_eq!(d, vec![1, 10, 100, 2, 20, 200]);
        assert_eq!(info.planar_configuration, 0);
    }

    // ---- encapsulated data

    fn fake_jpeg(n: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.resize(len, n);
        v
    }

    #[test]
    fn encapsulated_frames_one_fragment_per_frame_and_basic_offset_table() {
        let frames = [fake_jpeg(1, 10), fake_jpeg(2, 6), fake_jpeg(3, 8)];
        let o = header(8, 8, 1, 8, 8, false, "MONOCHROME2");
        let obj = with_fragments(
            o.clone(),
            3,
            vec![],
            frames.to_vec(),
            uids::JPEG_BASELINE8_BIT,
        );
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                raw_frame(&obj, i as u32 + 1).unwrap(),
                (f.clone(), "image/jpeg")
            );
        }
        // frames of two fragments each, located by the Basic Offset Table
        let mut fragments = Vec::new();
        let mut bot = Vec::new();
        let mut pos = 0;
        for f in &frames {
            bot.push(pos);
            let (a, b) = f.split_at(4);
            for part in [a, b] {
                pos += 8 + part.len() as u32;
                fragments.push(part.to_vec());
            }
        }
        let obj = with_fragments(
            o.clone(),
            3,
            bot.clone(),
            fragments.clone(),
            uids::JPEG_BASELINE8_BIT,
        );
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                raw_frame(&obj, i as u32 + 1).unwrap().0,
                *f,
                "BOT frame {}",
                i + 1
            );
        }
        // the same without a BOT: frames start at SOI markers
        let obj = with_fragments(
            o.clone(),
            3,
            vec![],
            fragments.clone(),
            uids::JPEG_BASELINE8_BIT,
        );
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                raw_frame(&obj, i as u32 + 1).unwrap().0,
                *f,
                "marker frame {}",
                i + 1
            );
        }
        // a broken BOT (offset not at a fragment) is an error
        let obj = with_fragments(
            o.clone(),
            3,
            vec![0, 3, 40],
            fragments.clone(),
            uids::JPEG_BASELINE8_BIT,
        );
        assert!(matches!(
            raw_frame(&obj, 2),
            Err(PixelError::Encapsulation { .. })
        ));
        // as are too few fragments
        let obj = with_fragments(
            o.clone(),
            3,
            vec![],
            frames[..2].to_vec(),
            uids::JPEG_BASELINE8_BIT,
        );
        assert!(matches!(
            raw_frame(&obj, 1),
            Err(PixelError::Encapsulation { .. })
        ));
        // a single frame in several fragments is their concatenation
        let obj = with_fragments(
            o,
            1,
            vec![],
            vec![vec![1, 2], vec![3, 4]],
            uids::JPEGLS_LOSSLESS,
        );
        assert_eq!(raw_frame(&obj, 1).unwrap(), (vec![1, 2, 3, 4], "image/jls"));
    }

    #[test]
    fn extended_offset_table_locates_frames() {
        let frames = vec![vec![1u8; 6], vec![2u8; 10]];
        let mut o = header(2, 2, 1, 8, 8, false, "MONOCHROME2");
        o.put(DataElement::new(
            tags::EXTENDED_OFFSET_TABLE,
            VR::OV,
            PrimitiveValue::U64(vec![0u64, 14].into()),
        ));
        o.put(DataElement::new(
            tags::EXTENDED_OFFSET_TABLE_LENGTHS,
            VR::OV,
            PrimitiveValue::U64(vec![6u64, 9].into()),
        ));
        let obj = with_fragments(o, 2, vec![], frames, uids::JPEG2000);
        assert_eq!(raw_frame(&obj, 1).unwrap(), (vec![1; 6], "image/jp2"));
        assert_eq!(
            raw_frame(&obj, 2).unwrap().0,
            vec![2; 9],
            "length from the EOT lengths"
        );
    }

    #[test]
    fn encapsulated_uncompressed_decodes_across_fragments() {
        let o = header(2, 3, 1, 16, 16, true, "MONOCHROME2");
        let f1 = le16(&[1, -2, 3, -4, 5, -6]);
        let f2 = le16(&[-7, 8, -9, 10, -11, 12]);
        let fragments = vec![f1[..4].to_vec(), f1[4..].to_vec(), f2.clone()];
        let obj = with_fragments(
            o,
            2,
            vec![0, 28],
            fragments,
            uids::ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN,
        );
        assert_eq!(decoded_frame(&obj, 1).unwrap().0, f1);
        assert_eq!(decoded_frame(&obj, 2).unwrap().0, f2);
        assert_eq!(raw_frame(&obj, 2).unwrap().1, "application/octet-stream");
    }

    /// RLE Lossless with literal runs only (enough for a decoder test).
    fn rle_encode(samples: &[u8], spp: usize, sample_bytes: usize) -> Vec<u8> {
        let nseg = spp * sample_bytes;
        let pixels = samples.len() / nseg;
        let mut segments = Vec::new();
        for s in 0..spp {
            for b in 0..sample_bytes {
                let byte = sample_bytes - 1 - b;
                let plane: Vec<u8> = (0..pixels)
                    .map(|p| samples[(p * spp + s) * sample_bytes + byte])
                    .collect();
                let mut seg = Vec::new();
                for run in plane.chunks(128) {
                    seg.push(run.len() as u8 - 1);
                    seg.extend_from_slice(run);
                }
                if seg.len() % 2 == 1 {
                    seg.push(0x80); // no-op
                }
                segments.push(seg);
            }
        }
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(&(nseg as u32).to_le_bytes());
        let mut pos = 64u32;
        for (i, seg) in segments.iter().enumerate() {
            out[4 + 4 * i..8 + 4 * i].copy_from_slice(&pos.to_le_bytes());
            pos += seg.len() as u32;
        }
        for seg in segments {
            out.extend(seg);
        }
        out
    }

    #[test]
    fn rle_frames_decode_for_16_and_32_bits() {
        let f16 = le16(&[0, 1000, -1000, 32767, -32768, 7]);
        let obj = with_fragments(
            header(2, 3, 1, 16, 16, true, "MONOCHROME2"),
            1,
            vec![],
            vec![rle_encode(&f16, 1, 2)],
            uids::RLE_LOSSLESS,
        );
        assert_eq!(decoded_frame(&obj, 1).unwrap().0, f16);
        assert_eq!(raw_frame(&obj, 1).unwrap().1, "image/dicom-rle");
        let f32: Vec<u8> = [1u32, 70000, u32::MAX, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let obj = with_fragments(
            header(2, 2, 1, 32, 32, false, "MONOCHROME2"),
            1,
            vec![],
            vec![rle_encode(&f32, 1, 4)],
            uids::RLE_LOSSLESS,
        );
        assert_eq!(decoded_frame(&obj, 1).unwrap().0, f32);
        // a frame whose header promises more than it holds
        let mut bad = rle_encode(&f32, 1, 4);
        bad.truncate(70);
        let obj = with_fragments(
            header(2, 2, 1, 32, 32, false, "MONOCHROME2"),
            1,
            vec![],
            vec![bad],
            uids::RLE_LOSSLESS,
        );
        assert!(matches!(
            decoded_frame(&obj, 1),
            Err(PixelError::Decode { .. })
        ));
    }

    #[test]
    fn garbage_codestreams_are_decode_errors() {
        let mut rng = XorShift::new(7);
        let noise: Vec<u8> = (0..300).map(|_| rng.next_u64() as u8).collect();
        for (ts, head) in [
            (
                uids::JPEG_BASELINE8_BIT,
                vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B],
            ),
            (uids::JPEG_LOSSLESS_SV1, vec![0xFF, 0xD8, 0xFF, 0xC3]),
            (
                uids::JPEGLS_LOSSLESS,
                vec![0xFF, 0xD8, 0xFF, 0xF7, 0x00, 0x0B],
            ),
            (
                uids::JPEG2000_LOSSLESS,
                vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29],
            ),
            (uids::RLE_LOSSLESS, vec![2, 0, 0, 0, 64, 0, 0, 0]),
        ] {
            for tail in [&noise[..0], &noise[..10], &noise[..]] {
                let mut frame = head.clone();
                frame.extend_from_slice(tail);
                let obj = with_fragments(
                    header(16, 16, 1, 8, 8, false, "MONOCHROME2"),
                    1,
                    vec![],
                    vec![frame],
                    ts,
                );
                assert!(
                    decoded_frame(&obj, 1).is_err(),
                    "{ts} with {} bytes",
                    head.len() + tail.len()
                );
            }
        }
        // an unknown transfer syntax cannot be decoded (but its frames can be handed out)
        let obj = with_fragments(
            header(2, 2, 1, 8, 8, false, "MONOCHROME2"),
            1,
            vec![],
            vec![vec![1, 2]],
            "1.2.3.4.5.6",
        );
        assert!(matches!(
            decoded_frame(&obj, 1),
            Err(PixelError::UnsupportedSyntax { .. })
        ));
        assert_eq!(raw_frame(&obj, 1).unwrap().0, vec![1, 2]);
    }

    /// JPEG-LS frames made by the registry's CharLS writer, then truncated and corrupted: every
    /// variant decodes or fails with an error, none panics.
    #[test]
    fn mutated_jpeg_ls_and_jpeg_frames_never_panic() {
        let native = synthetic(Phantom::ChestCt, 24, 24);
        let info = pixel_info(&native).unwrap();
        let (pixels, _) = decoded_frame(&native, 1).unwrap();
        let ts = registry_ts(uids::JPEGLS_LOSSLESS, "test").unwrap();
        let Codec::EncapsulatedPixelData(_, Some(writer)) = ts.codec() else {
            panic!("no JPEG-LS writer in this build");
        };
        let src = FrameSource {
            info: &info,
            data: &pixels,
        };
        let mut jls = Vec::new();
        writer
            .encode_frame(&src, 0, Default::default(), &mut jls)
            .unwrap();
        let header_jls = header(24, 24, 1, 16, 16, true, "MONOCHROME2");
        let good = with_fragments(
            header_jls.clone(),
            1,
            vec![],
            vec![jls.clone()],
            uids::JPEGLS_LOSSLESS,
        );
        assert_eq!(
            decoded_frame(&good, 1).unwrap().0,
            pixels,
            "lossless round trip"
        );

        let gray8: Vec<u8> = (0..64 * 64).map(|i| (i % 251) as u8).collect();
        let obj8 = with_native(
            header(64, 64, 1, 8, 8, false, "MONOCHROME2"),
            1,
            gray8,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        let jpeg_file = to_jpeg_baseline(&obj8, 80).unwrap();
        let jpeg_obj = dicom_object::OpenFileOptions::new()
            .from_reader(&jpeg_file[128..])
            .unwrap();
        let jpeg = raw_frame(&jpeg_obj, 1).unwrap().0;

        let mut rng = XorShift::new(42);
        for (ts, stream, head) in [
            (uids::JPEGLS_LOSSLESS, &jls, header_jls),
            (
                uids::JPEG_BASELINE8_BIT,
                &jpeg,
                header(64, 64, 1, 8, 8, false, "MONOCHROME2"),
            ),
        ] {
            for case in 0..60 {
                let mut s = stream.clone();
                if case % 3 == 0 {
                    s.truncate(rng.next_u64() as usize % s.len());
                } else {
                    for _ in 0..1 + case % 5 {
                        let i = rng.next_u64() as usize % s.len();
                        s[i] = rng.next_u64() as u8;
                    }
                }
                let obj = with_fragments(head.clone(), 1, vec![], vec![s], ts);
                let t = std::time::Instant::now();
                let _ = decoded_frame(&obj, 1);
                assert!(
                    t.elapsed().as_secs_f64() < 1.0,
                    "{ts} case {case}: {:?}",
                    t.elapsed()
                );
            }
        }
    }

    /// Codestreams whose own header disagrees with the DICOM header are refused before a codec
    /// allocates for them; so are frames beyond the size limit.
    #[test]
    fn forged_codestream_sizes_are_refused_before_decoding() {
        let native = synthetic(Phantom::ChestCt, 16, 16);
        let info = pixel_info(&native).unwrap();
        let (pixels, _) = decoded_frame(&native, 1).unwrap();
        let Codec::EncapsulatedPixelData(_, Some(writer)) =
            registry_ts(uids::JPEGLS_LOSSLESS, "test").unwrap().codec()
        else {
            panic!("no JPEG-LS writer in this build");
        };
        let mut jls = Vec::new();
        writer
            .encode_frame(
                &FrameSource {
                    info: &info,
                    data: &pixels,
                },
                0,
                Default::default(),
                &mut jls,
            )
            .unwrap();
        assert_eq!(jpeg_ls_geometry(&jls), Some((16, 16, 1)));
        let sof = jls.windows(2).position(|w| w == [0xFF, 0xF7]).unwrap();
        jls[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // 65535 x 65535
        let obj = with_fragments(
            header(16, 16, 1, 16, 16, true, "MONOCHROME2"),
            1,
            vec![],
            vec![jls],
            uids::JPEGLS_LOSSLESS,
        );
        let err = decoded_frame(&obj, 1).unwrap_err();
        assert!(err.to_string().contains("65535x65535"), "{err}");

        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        for v in [0x0010_0000u32, 0x0010_0000, 0, 0, 64, 64, 0, 0] {
            j2k.extend_from_slice(&v.to_be_bytes());
        }
        j2k.extend_from_slice(&[0x00, 0x01, 0x0F, 0x01, 0x01, 0xFF, 0xD9]);
        assert_eq!(j2k_geometry(&j2k), Some((1 << 20, 1 << 20, 1)));
        let obj = with_fragments(
            header(16, 16, 1, 16, 16, true, "MONOCHROME2"),
            1,
            vec![],
            vec![j2k],
            uids::JPEG2000_LOSSLESS,
        );
        assert!(matches!(
            decoded_frame(&obj, 1),
            Err(PixelError::Decode { .. })
        ));

        let gray8: Vec<u8> = vec![100; 32 * 32];
        let obj8 = with_native(
            header(32, 32, 1, 8, 8, false, "MONOCHROME2"),
            1,
            gray8,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        let jpeg_file = to_jpeg_baseline(&obj8, 80).unwrap();
        let jpeg_obj = dicom_object::OpenFileOptions::new()
            .from_reader(&jpeg_file[128..])
            .unwrap();
        let jpeg = raw_frame(&jpeg_obj, 1).unwrap().0;
        let obj = with_fragments(
            header(32, 64, 1, 8, 8, false, "MONOCHROME2"),
            1,
            vec![],
            vec![jpeg],
            uids::JPEG_BASELINE8_BIT,
        );
        assert!(
            decoded_frame(&obj, 1)
                .unwrap_err()
                .to_string()
                .contains("32x32")
        );

        // 65535 x 65535 RGB 16-bit frames are 25 GB: refused, not allocated
        let obj = with_fragments(
            header(65535, 65535, 3, 16, 16, false, "RGB"),
            1,
            vec![],
            vec![vec![0xFF, 0xD8]],
            uids::JPEG_LOSSLESS_SV1,
        );
        assert!(matches!(
            decoded_frame(&obj, 1),
            Err(PixelError::UnsupportedFormat(_))
        ));
    }

    // ---- transcoding

    #[test]
    fn explicit_le_transcoding_of_native_and_encapsulated_objects() {
        let native = synthetic(Phantom::ChestCt, 8, 8);
        let bytes = to_explicit_vr_le(&native).unwrap();
        let back = dicom_object::OpenFileOptions::new()
            .from_reader(&bytes[128..])
            .unwrap();
        assert_eq!(
            back.meta().transfer_syntax(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        assert_eq!(
            decoded_frame(&back, 1).unwrap(),
            decoded_frame(&native, 1).unwrap()
        );

        let f = le16(&[5, 6, 7, 8]);
        let mut o = header(2, 2, 1, 16, 16, false, "MONOCHROME2");
        put_str(&mut o, tags::PATIENT_NAME, VR::PN, "KEEP^ME");
        let rle = with_fragments(
            o,
            2,
            vec![],
            vec![rle_encode(&f, 1, 2), rle_encode(&f, 1, 2)],
            uids::RLE_LOSSLESS,
        );
        let bytes = to_explicit_vr_le(&rle).unwrap();
        let back = dicom_object::OpenFileOptions::new()
            .from_reader(&bytes[128..])
            .unwrap();
        assert_eq!(
            back.meta().transfer_syntax(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        assert_eq!(
            back.meta().implementation_class_uid(),
            IMPLEMENTATION_CLASS_UID
        );
        assert_eq!(raw_frame(&back, 2).unwrap().0, f);
        assert_eq!(
            back.get(tags::PATIENT_NAME).unwrap().to_str().unwrap(),
            "KEEP^ME"
        );
        assert!(back.get(tags::LOSSY_IMAGE_COMPRESSION).is_none());
    }

    #[test]
    fn jpeg_baseline_transcoding_of_8_bit_data() {
        let px: Vec<u8> = (0..32 * 32).map(|i| ((i % 32) * 8) as u8).collect();
        let obj = with_native(
            header(32, 32, 1, 8, 8, false, "MONOCHROME2"),
            1,
            px.clone(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        let bytes = to_jpeg_baseline(&obj, 95).unwrap();
        let back = dicom_object::OpenFileOptions::new()
            .from_reader(&bytes[128..])
            .unwrap();
        assert_eq!(back.meta().transfer_syntax(), uids::JPEG_BASELINE8_BIT);
        assert_eq!(
            back.get(tags::LOSSY_IMAGE_COMPRESSION)
                .unwrap()
                .to_str()
                .unwrap(),
            "01"
        );
        let (d, _) = decoded_frame(&back, 1).unwrap();
        let max = d
            .iter()
            .zip(&px)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(max <= 12, "JPEG q95 error {max}");
        // colour goes in as YBR_FULL_422
        let rgb: Vec<u8> = (0..16 * 16 * 3).map(|i| (i * 5 % 256) as u8).collect();
        let obj = with_native(
            header(16, 16, 3, 8, 8, false, "RGB"),
            1,
            rgb,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        let back = to_jpeg_baseline(&obj, 90).unwrap();
        let back = dicom_object::OpenFileOptions::new()
            .from_reader(&back[128..])
            .unwrap();
        assert_eq!(pixel_info(&back).unwrap().photometric, "YBR_FULL_422");
        assert_eq!(decoded_frame(&back, 1).unwrap().1.photometric, "RGB");
        // 16-bit data is refused
        assert!(matches!(
            to_jpeg_baseline(&synthetic(Phantom::ChestCt, 8, 8), 90),
            Err(PixelError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            to_jpeg_baseline(&obj, 0),
            Err(PixelError::InvalidRequest(_))
        ));
    }

    // ---- rendering

    #[test]
    fn voi_functions_follow_ps3_3() {
        let w = |center, width, function| Window {
            center,
            width,
            function,
        };
        // LINEAR, c=40 w=80: 0 at x <= -0.5, 1 above 78.5... per C.11.2.1.2.1
        let lin = w(40.0, 80.0, VoiFunction::Linear);
        assert_eq!(window_unit(-0.5, &lin), 0.0);
        assert_eq!(window_unit(79.5, &lin), 1.0);
        assert!((window_unit(39.5, &lin) - 0.5).abs() < 1e-12);
        assert!(window_unit(20.0, &lin) > 0.0 && window_unit(20.0, &lin) < 0.5);
        // LINEAR_EXACT: exactly the ramp from c - w/2 to c + w/2
        let exact = w(40.0, 80.0, VoiFunction::LinearExact);
        assert_eq!(window_unit(0.0, &exact), 0.0);
        assert_eq!(window_unit(40.0, &exact), 0.5);
        assert_eq!(window_unit(60.0, &exact), 0.75);
        assert_eq!(window_unit(80.0, &exact), 1.0);
        // SIGMOID: 0.5 at the centre, symmetric, 1/(1+e^-4) one width out
        let sig = w(40.0, 80.0, VoiFunction::Sigmoid);
        assert!((window_unit(40.0, &sig) - 0.5).abs() < 1e-12);
        assert!((window_unit(120.0, &sig) - 1.0 / (1.0 + (-4.0f64).exp())).abs() < 1e-12);
        assert!((window_unit(0.0, &sig) + window_unit(80.0, &sig) - 1.0).abs() < 1e-12);
        // width 1 LINEAR is a threshold, not a division by zero
        let thr = w(10.0, 1.0, VoiFunction::Linear);
        assert_eq!((window_unit(9.5, &thr), window_unit(9.6, &thr)), (0.0, 1.0));
        assert_eq!(
            VoiFunction::parse("linear_exact"),
            Some(VoiFunction::LinearExact)
        );
        assert_eq!(VoiFunction::parse("GAMMA"), None);
    }

    /// A 1x4 16-bit object with stored values 0, 100, 200, 300.
    fn ramp(pi: &str, extra: impl FnOnce(&mut InMemDicomObject)) -> FileObject {
        let mut o = header(1, 4, 1, 16, 16, false, pi);
        extra(&mut o);
        with_native(
            o,
            1,
            le16(&[0, 100, 200, 300]),
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        )
    }

    #[test]
    fn rescale_then_window() {
        let obj = ramp("MONOCHROME2", |o| {
            put_str(o, tags::RESCALE_SLOPE, VR::DS, "0.01");
            put_str(o, tags::RESCALE_INTERCEPT, VR::DS, "0");
        });
        // values 0, 1, 2, 3 after rescale; LINEAR_EXACT c=2 w=2 maps 1 -> 0, 2 -> .5, 3 -> 1
        let win = Window {
            center: 2.0,
            width: 2.0,
            function: VoiFunction::LinearExact,
        };
        assert_eq!(gray(&obj, Some(win)), vec![0, 0, 128, 255]);
        // an intercept moves the window
        let obj = ramp("MONOCHROME2", |o| {
            put_str(o, tags::RESCALE_SLOPE, VR::DS, "1");
            put_str(o, tags::RESCALE_INTERCEPT, VR::DS, "-1000");
        });
        let win = Window {
            center: -800.0,
            width: 200.0,
            function: VoiFunction::LinearExact,
        };
        assert_eq!(gray(&obj, Some(win)), vec![0, 0, 128, 255]);
    }

    #[test]
    fn window_from_the_object_then_min_max() {
        let obj = ramp("MONOCHROME2", |o| {
            o.put(DataElement::new(
                tags::WINDOW_CENTER,
                VR::DS,
                dicom_value!(Strs, ["200", "0"]),
            ));
            o.put(DataElement::new(
                tags::WINDOW_WIDTH,
                VR::DS,
                dicom_value!(Strs, ["200", "10"]),
            ));
            put_str(o, tags::VOILUT_FUNCTION, VR::CS, "LINEAR_EXACT");
        });
        assert_eq!(
            gray(&obj, None),
            vec![0, 0, 128, 255],
            "first window, with its function"
        );
        let requested = Window {
            center: 150.0,
            width: 300.0,
            function: VoiFunction::LinearExact,
        };
        assert_eq!(
            gray(&obj, Some(requested)),
            vec![0, 85, 170, 255],
            "request overrides"
        );
        let obj = ramp("MONOCHROME2", |_| {});
        assert_eq!(
            gray(&obj, None),
            vec![0, 85, 170, 255],
            "min..max without a window"
        );
    }

    #[test]
    fn monochrome1_is_inverted() {
        let m2 = gray(&ramp("MONOCHROME2", |_| {}), None);
        let m1 = gray(&ramp("MONOCHROME1", |_| {}), None);
        assert_eq!(m1, m2.iter().map(|v| 255 - v).collect::<Vec<_>>());
        assert_eq!(m1, vec![255, 170, 85, 0]);
    }

    #[test]
    fn modality_and_voi_lut_sequences() {
        let lut_item = |first: u16, data: &[u16]| {
            let mut item = InMemDicomObject::new_empty();
            item.put(DataElement::new(
                tags::LUT_DESCRIPTOR,
                VR::US,
                dicom_value!(U16, [data.len() as u16, first, 16]),
            ));
            item.put(DataElement::new(
                tags::LUT_DATA,
                VR::US,
                PrimitiveValue::U16(data.to_vec().into()),
            ));
            item
        };
        let obj = ramp("MONOCHROME2", |o| {
            // modality LUT: 0..=300 -> reversed steps; entries for 0, 100 (clamped beyond)
            let mut data = vec![0u16; 301];
            for (i, d) in data.iter_mut().enumerate() {
                *d = 300 - i as u16;
            }
            o.put(DataElement::new(
                tags::MODALITY_LUT_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![lut_item(0, &data)]),
            ));
        });
        // modality output 300, 200, 100, 0; min..max VOI
        assert_eq!(gray(&obj, None), vec![255, 170, 85, 0]);
        let obj = ramp("MONOCHROME2", |o| {
            let data: Vec<u16> = (0..=300).map(|i| if i < 150 { 0 } else { 65535 }).collect();
            o.put(DataElement::new(
                tags::VOILUT_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![lut_item(0, &data)]),
            ));
        });
        assert_eq!(gray(&obj, None), vec![0, 0, 255, 255]);
    }

    #[test]
    fn per_frame_functional_groups_drive_rescale_and_window() {
        let group = |slope: &str, center: &str| {
            let mut pvt = InMemDicomObject::new_empty();
            put_str(&mut pvt, tags::RESCALE_SLOPE, VR::DS, slope);
            put_str(&mut pvt, tags::RESCALE_INTERCEPT, VR::DS, "0");
            let mut voi = InMemDicomObject::new_empty();
            put_str(&mut voi, tags::WINDOW_CENTER, VR::DS, center);
            put_str(&mut voi, tags::WINDOW_WIDTH, VR::DS, "2");
            put_str(&mut voi, tags::VOILUT_FUNCTION, VR::CS, "LINEAR_EXACT");
            let mut g = InMemDicomObject::new_empty();
            g.put(DataElement::new(
                tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![pvt]),
            ));
            g.put(DataElement::new(
                tags::FRAME_VOILUT_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![voi]),
            ));
            g
        };
        let mut o = header(1, 4, 1, 16, 16, false, "MONOCHROME2");
        o.put(DataElement::new(
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![group("0.01", "2"), group("0.02", "4")]),
        ));
        let frame = le16(&[0, 100, 200, 300]);
        let obj = with_native(
            o,
            2,
            [frame.clone(), frame].concat(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        let r = |f| {
            render_image(
                &obj,
                &RenderOptions {
                    frame: f,
                    ..Default::default()
                },
            )
            .unwrap()
            .data
        };
        assert_eq!(r(1), vec![0, 0, 128, 255]);
        // frame 2: values 0, 2, 4, 6, window 3..5
        assert_eq!(r(2), vec![0, 0, 128, 255]);
    }

    #[test]
    fn signed_values_with_fewer_stored_bits() {
        // 12-bit signed stored in 16 bits with garbage in the high nibble: -1 (0xFFF), 2047, -2048
        let obj = with_native(
            header(1, 3, 1, 16, 12, true, "MONOCHROME2"),
            1,
            vec![0xFF, 0xAF, 0xFF, 0x57, 0x00, 0x38],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        assert_eq!(
            stored_values(
                &decoded_frame(&obj, 1).unwrap().0,
                &pixel_info(&obj).unwrap()
            ),
            vec![-1, 2047, -2048]
        );
        let win = Window {
            center: 0.0,
            width: 4096.0,
            function: VoiFunction::LinearExact,
        };
        assert_eq!(gray(&obj, Some(win)), vec![127, 255, 0]);
        let mut data = vec![0x0F, 0xF8]; // bits beyond 12 set, 12-bit value 0x80F
        normalize_bits(&mut data, 16, 12, true);
        assert_eq!(i16::from_le_bytes([data[0], data[1]]), 0x80F - 0x1000);
        let mut data = vec![0x0F, 0xF8];
        normalize_bits(&mut data, 16, 12, false);
        assert_eq!(u16::from_le_bytes([data[0], data[1]]), 0x80F);
    }

    #[test]
    fn colour_rendering_rgb_ybr_and_palette() {
        let rgb = with_native(
            header(1, 2, 3, 8, 8, false, "RGB"),
            1,
            vec![255, 0, 0, 0, 0, 255],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        let img = render_image(&rgb, &RenderOptions::default()).unwrap();
        assert_eq!(
            (img.channels, img.data.clone()),
            (3, vec![255, 0, 0, 0, 0, 255])
        );
        // YBR_FULL red: Y 76, Cb 85, Cr 255
        let ybr = with_native(
            header(1, 1, 3, 8, 8, false, "YBR_FULL"),
            1,
            vec![76, 85, 255, 0],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        let px = render_image(&ybr, &RenderOptions::default()).unwrap().data;
        assert!(px[0] >= 253 && px[1] <= 2 && px[2] <= 2, "{px:?}");
        // native YBR_FULL_422: Y1 Y2 Cb Cr
        let ybr422 = with_native(
            header(1, 2, 3, 8, 8, false, "YBR_FULL_422"),
            1,
            vec![0, 255, 128, 128],
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        assert_eq!(raw_frame(&ybr422, 1).unwrap().0.len(), 4);
        let px = render_image(&ybr422, &RenderOptions::default())
            .unwrap()
            .data;
        assert_eq!(px, vec![0, 0, 0, 255, 255, 255]);
        // PALETTE COLOR, 16-bit entries, first mapped value 10
        let mut o = header(1, 3, 1, 8, 8, false, "PALETTE COLOR");
        for (desc, data, v) in [
            (
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                [0xFFFFu16, 0, 0],
            ),
            (
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                [0, 0xFFFF, 0],
            ),
            (
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                [0, 0, 0xFFFF],
            ),
        ] {
            o.put(DataElement::new(
                desc,
                VR::US,
                dicom_value!(U16, [3, 10, 16]),
            ));
            o.put(DataElement::new(
                data,
                VR::OW,
                PrimitiveValue::U16(v.to_vec().into()),
            ));
        }
        let pal = with_native(o, 1, vec![10, 11, 200, 0], uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let px = render_image(&pal, &RenderOptions::default()).unwrap().data;
        assert_eq!(
            px,
            vec![255, 0, 0, 0, 255, 0, 0, 0, 255],
            "values past the table clamp to its end"
        );
    }

    #[test]
    fn viewport_keeps_the_aspect_ratio() {
        assert_eq!(fit(512, 256, 128, 128), (128, 64));
        assert_eq!(fit(880, 1024, 200, 200), (172, 200));
        assert_eq!(fit(64, 64, 512, 256), (256, 256), "enlarging");
        assert_eq!(fit(4000, 1, 100, 100), (100, 1), "never zero");
        let cr = synthetic(Phantom::CrChest, 100, 88);
        let png = render(
            &cr,
            &RenderOptions {
                viewport: Some((50, 50)),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(png_size(&png), (44, 50));
        let jpg = render(
            &cr,
            &RenderOptions {
                viewport: Some((40, 30)),
                format: ImageFormat::Jpeg { quality: 80 },
                ..Default::default()
            },
        )
        .unwrap();
        let mut dec = jpeg_decoder::Decoder::new(&jpg[..]);
        dec.decode().unwrap();
        let info = dec.info().unwrap();
        assert_eq!((info.width, info.height), (26, 30));
        for bad in [(0, 10), (10, 0), (MAX_VIEWPORT + 1, 10)] {
            assert!(matches!(
                render(
                    &cr,
                    &RenderOptions {
                        viewport: Some(bad),
                        ..Default::default()
                    }
                ),
                Err(PixelError::InvalidRequest(_))
            ));
        }
        assert!(matches!(
            render(
                &cr,
                &RenderOptions {
                    format: ImageFormat::Jpeg { quality: 0 },
                    ..Default::default()
                }
            ),
            Err(PixelError::InvalidRequest(_))
        ));
        let bad = Window {
            center: 0.0,
            width: 0.5,
            function: VoiFunction::Linear,
        };
        assert!(matches!(
            render(
                &cr,
                &RenderOptions {
                    window: Some(bad),
                    ..Default::default()
                }
            ),
            Err(PixelError::InvalidRequest(_))
        ));
    }

    #[test]
    fn resampling_averages_areas_and_interpolates() {
        // 4x1 -> 2x1 averages pairs; 2x1 -> 4x1 interpolates
        assert_eq!(resize(&[0, 100, 200, 250], 4, 1, 1, 2, 1), vec![50, 225]);
        assert_eq!(resize(&[0, 200], 2, 1, 1, 4, 1), vec![0, 50, 150, 200]);
        // 3 -> 2 weighs partial pixels: [0, 90, 180] -> [(0 + 45)/1.5, (45 + 180)/1.5]
        assert_eq!(resize(&[0, 90, 180], 3, 1, 1, 2, 1), vec![30, 150]);
        // channels stay apart
        assert_eq!(
            resize(&[10, 20, 30, 50, 60, 70], 2, 1, 3, 1, 1),
            vec![30, 40, 50]
        );
    }

    #[test]
    fn media_types_and_capabilities() {
        assert_eq!(frame_media_type(uids::JPEG_BASELINE8_BIT), "image/jpeg");
        assert_eq!(frame_media_type(uids::JPEG_LOSSLESS_SV1), "image/jpeg");
        assert_eq!(frame_media_type(uids::JPEGLS_NEAR_LOSSLESS), "image/jls");
        assert_eq!(frame_media_type(uids::JPEG2000_LOSSLESS), "image/jp2");
        assert_eq!(frame_media_type(uids::JPEG2000MC), "image/jpx");
        assert_eq!(frame_media_type(uids::HTJ2K), "image/jphc");
        assert_eq!(frame_media_type(uids::RLE_LOSSLESS), "image/dicom-rle");
        assert_eq!(
            frame_media_type(uids::EXPLICIT_VR_LITTLE_ENDIAN),
            "application/octet-stream"
        );
        assert_eq!(
            frame_media_type(uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN),
            "application/octet-stream"
        );
        let s = supported_syntaxes();
        for uid in [
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            "1.2.840.10008.1.2.2", // Explicit VR Big Endian (retired)
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
            uids::RLE_LOSSLESS,
            uids::JPEG_BASELINE8_BIT,
            uids::JPEG_LOSSLESS_SV1,
            uids::JPEGLS_LOSSLESS,
            uids::JPEG2000_LOSSLESS,
            uids::HTJ2K_LOSSLESS,
        ] {
            assert!(s.decode.contains(&uid), "{uid}");
        }
        assert!(!s.decode.contains(&uids::JPIP_REFERENCED));
        assert_eq!(
            s.encode,
            vec![uids::EXPLICIT_VR_LITTLE_ENDIAN, uids::JPEG_BASELINE8_BIT]
        );
    }

    /// The WADO-RS targets: ≥ 600 frames/s of 512×512 16-bit native frames, and a 512×512 CT
    /// frame rendered to PNG in a few ms. Timings are printed; the assertions leave a wide
    /// margin for a loaded test machine.
    #[test]
    fn frame_and_render_throughput() {
        let frames = 20u32;
        let frame_len = 512 * 512 * 2;
        let data: Vec<u8> = (0..frames as usize * frame_len)
            .map(|i| (i / 7) as u8)
            .collect();
        let obj = with_native(
            header(512, 512, 1, 16, 16, true, "MONOCHROME2"),
            frames,
            data,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        let t = std::time::Instant::now();
        let mut total = 0;
        for i in 0..600 {
            total += raw_frame(&obj, i % frames + 1).unwrap().0.len();
        }
        let raw = t.elapsed();
        assert_eq!(total, 600 * frame_len);
        let ct = synthetic(Phantom::ChestCt, 512, 512);
        let t = std::time::Instant::now();
        let n = 10;
        let mut size = 0;
        for _ in 0..n {
            size = render(&ct, &RenderOptions::default()).unwrap().len();
        }
        let png = t.elapsed() / n;
        let t = std::time::Instant::now();
        render(
            &ct,
            &RenderOptions {
                viewport: Some((128, 128)),
                format: ImageFormat::Jpeg { quality: 85 },
                ..Default::default()
            },
        )
        .unwrap();
        let thumb = t.elapsed();
        eprintln!(
            "600 raw 512x512x16 frames: {raw:?} ({:.0} frames/s); 512x512 CT -> PNG: {png:?} ({size} bytes); -> 128px JPEG thumbnail: {thumb:?}",
            600.0 / raw.as_secs_f64()
        );
        assert!(raw.as_secs_f64() < 1.0, "raw frames: {raw:?} for 600");
        assert!(png.as_secs_f64() < 0.25, "PNG render: {png:?}");
    }
}
