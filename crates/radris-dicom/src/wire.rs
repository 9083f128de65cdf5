//! A structural pre-check of an encoded data set: every defined length must fit inside its
//! container. dicom-rs allocates (and zero-fills) a value's declared length before reading it,
//! so a lying length of 4 GiB in a 1 KiB message would cost 4 GiB of memory; this walk refuses
//! such data first, in linear time and without allocating.

use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::DicomError;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const MAX_DEPTH: usize = 64;

#[derive(Clone, Copy)]
struct Enc {
    explicit: bool,
    big: bool,
}

fn err(pos: usize, what: String) -> DicomError {
    DicomError::Parse(format!("at byte {pos}: {what}"))
}

/// Random access to the encoded bytes: a slice, or a file read with `pread` (headers only).
pub trait Source {
    fn read_into(&self, pos: usize, buf: &mut [u8]) -> bool;
}

impl Source for [u8] {
    fn read_into(&self, pos: usize, buf: &mut [u8]) -> bool {
        match self.get(pos..pos.saturating_add(buf.len())) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
}

/// A data set stored in a file from byte `offset` on.
pub struct FileSource<'a> {
    pub file: &'a std::fs::File,
    pub offset: u64,
}

impl Source for FileSource<'_> {
    fn read_into(&self, pos: usize, buf: &mut [u8]) -> bool {
        use std::os::unix::fs::FileExt;
        self.file
            .read_exact_at(buf, self.offset + pos as u64)
            .is_ok()
    }
}

fn bytes_at<const N: usize, S: Source + ?Sized>(b: &S, pos: usize) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    b.read_into(pos, &mut out).then_some(out)
}

fn u16_at<S: Source + ?Sized>(b: &S, pos: usize, big: bool) -> Option<u16> {
    let s: [u8; 2] = bytes_at(b, pos)?;
    Some(if big {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

fn u32_at<S: Source + ?Sized>(b: &S, pos: usize, big: bool) -> Option<u32> {
    let s: [u8; 4] = bytes_at(b, pos)?;
    Some(if big {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

/// Whether an explicit VR header carries a 4-byte length (PS3.5 §7.1.2). Only the VRs with a
/// 2-byte length are listed: an unknown VR code is read the way dicom-rs reads it (as UN, with
/// a 4-byte length), so this walk and the parser agree on every length they see.
pub(crate) fn has_long_length(vr: &[u8]) -> bool {
    !matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

fn is_known_vr(vr: &[u8]) -> bool {
    !has_long_length(vr)
        || matches!(
            vr,
            b"OB"
                | b"OD"
                | b"OF"
                | b"OL"
                | b"OV"
                | b"OW"
                | b"SQ"
                | b"SV"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"UV"
        )
}

/// The most a deflated data set may inflate to. A deflate stream expands up to about 1000
/// times: a few KiB on the wire would otherwise cost GiBs of memory before any length is seen.
pub const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;

/// Check a data set encoded in `ts_uid`. A deflated one is inflated (at most
/// [`MAX_INFLATED_BYTES`]) and walked: the stream must be whole, with nothing after its end.
pub fn check_structure(bytes: &[u8], ts_uid: &str) -> Result<(), DicomError> {
    check_source(bytes, bytes.len(), ts_uid)
}

/// [`check_structure`] over `len` bytes of any [`Source`] (a staging file for large instances).
pub fn check_source<S: Source + ?Sized>(
    bytes: &S,
    len: usize,
    ts_uid: &str,
) -> Result<(), DicomError> {
    check_source_within(bytes, len, ts_uid, MAX_INFLATED_BYTES)
}

/// [`check_source`], a deflated data set inflating to at most `max_inflated` bytes.
pub fn check_source_within<S: Source + ?Sized>(
    bytes: &S,
    len: usize,
    ts_uid: &str,
    max_inflated: usize,
) -> Result<(), DicomError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid.trim_end_matches(['\0', ' ']))
        .ok_or_else(|| DicomError::TransferSyntax(ts_uid.to_owned()))?;
    if matches!(ts.codec(), Codec::Dataset(_)) {
        // Deflated Explicit VR Little Endian (PS3.5 A.5): raw DEFLATE around explicit VR LE
        let inflated = inflate(bytes, len, max_inflated)?;
        return check_walk(
            inflated.as_slice(),
            inflated.len(),
            Enc {
                explicit: true,
                big: false,
            },
        );
    }
    let enc = Enc {
        explicit: ts.uid() != "1.2.840.10008.1.2",
        big: ts.endianness() == Endianness::Big,
    };
    check_walk(bytes, len, enc)
}

fn check_walk<S: Source + ?Sized>(bytes: &S, len: usize, enc: Enc) -> Result<(), DicomError> {
    // File Meta Information belongs to the Part-10 header, never to a data set (PS3.10 7.1):
    // inside one it would change how the stored file is read
    if u16_at(bytes, 0, enc.big) == Some(0x0002) {
        return Err(err(
            0,
            "File Meta Information (group 0002) inside the data set".into(),
        ));
    }
    let end = walk(bytes, 0, len, enc, 0, false)?;
    if end != len {
        return Err(err(end, "unexpected delimiter at the top level".into()));
    }
    Ok(())
}

/// What may follow a deflate stream's end: nothing, one NUL padding to an even length, or the
/// gzip trailer some writers leave (CRC-32 and length of the inflated bytes; pydicom's
/// `image_dfl.dcm` has one), itself possibly padded.
fn deflate_tail_ok<S: Source + ?Sized>(src: &S, pos: usize, len: usize, inflated: &[u8]) -> bool {
    let rest = len - pos;
    let nul_at = |at: usize| bytes_at::<1, S>(src, at) == Some([0]);
    let gzip_trailer = || {
        let mut crc = flate2::Crc::new();
        crc.update(inflated);
        let mut want = [0u8; 8];
        want[..4].copy_from_slice(&crc.sum().to_le_bytes());
        want[4..].copy_from_slice(&(inflated.len() as u32).to_le_bytes());
        bytes_at::<8, S>(src, pos) == Some(want)
    };
    match rest {
        0 => true,
        1 => nul_at(pos),
        8 => gzip_trailer(),
        9 => nul_at(pos + 8) && gzip_trailer(),
        _ => false,
    }
}

/// Inflate the raw DEFLATE stream in `len` bytes of `src`: refused if it is cut short, if bytes
/// follow its end, or if it inflates to more than `max` bytes.
fn inflate<S: Source + ?Sized>(src: &S, len: usize, max: usize) -> Result<Vec<u8>, DicomError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut z = Decompress::new(false);
    let mut out: Vec<u8> = Vec::with_capacity(len.saturating_mul(4).min(max).max(64));
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pos = 0usize;
    loop {
        let n = (len - pos).min(chunk.len());
        if !src.read_into(pos, &mut chunk[..n]) {
            return Err(err(pos, "deflated data set unreadable".into()));
        }
        let mut input = &chunk[..n];
        loop {
            if out.len() == out.capacity() {
                if out.len() >= max {
                    return Err(err(
                        pos,
                        format!("deflated data set inflates to more than {max} bytes"),
                    ));
                }
                out.reserve_exact(out.len().max(64 * 1024).min(max - out.len()));
            }
            let (in_before, out_before) = (z.total_in(), z.total_out());
            let status = z
                .decompress_vec(input, &mut out, FlushDecompress::None)
                .map_err(|e| err(pos, format!("deflated data set is corrupt: {e}")))?;
            let used = (z.total_in() - in_before) as usize;
            input = &input[used..];
            pos += used;
            if status == Status::StreamEnd {
                if !deflate_tail_ok(src, pos, len, &out) {
                    return Err(err(
                        pos,
                        format!("{} bytes after the end of the deflated data set", len - pos),
                    ));
                }
                return Ok(out);
            }
            let room = out.len() < out.capacity();
            if input.is_empty() && room {
                break; // wants more input
            }
            if used == 0 && z.total_out() == out_before && room {
                return Err(err(pos, "deflated data set is corrupt".into()));
            }
        }
        if pos >= len {
            return Err(err(pos, "deflated data set is cut short".into()));
        }
    }
}

/// Walk elements from `pos` to `end`; returns where it stopped (at `end`, or just after a
/// delimiter when `in_undefined` is set).
fn walk<S: Source + ?Sized>(
    b: &S,
    mut pos: usize,
    end: usize,
    enc: Enc,
    depth: usize,
    in_undefined: bool,
) -> Result<usize, DicomError> {
    if depth > MAX_DEPTH {
        return Err(err(pos, "sequences nested deeper than 64".into()));
    }
    while pos < end {
        let group = u16_at(b, pos, enc.big).ok_or_else(|| err(pos, "truncated tag".into()))?;
        let elem = u16_at(b, pos + 2, enc.big).ok_or_else(|| err(pos, "truncated tag".into()))?;
        if group == 0xFFFE {
            // item delimiters always carry a 4-byte length after the tag (implicit encoding)
            let _len = u32_at(b, pos + 4, enc.big)
                .ok_or_else(|| err(pos, "truncated delimiter".into()))?;
            if (elem == 0xE00D || elem == 0xE0DD) && in_undefined {
                return Ok(pos + 8);
            }
            return Err(err(
                pos,
                format!("unexpected (FFFE,{elem:04X}) outside a sequence"),
            ));
        }
        let (vr, len, header): (Option<[u8; 2]>, u32, usize) = if enc.explicit {
            let vr: [u8; 2] =
                bytes_at(b, pos + 4).ok_or_else(|| err(pos, "truncated VR".into()))?;
            if has_long_length(&vr) {
                (
                    Some(vr),
                    u32_at(b, pos + 8, enc.big)
                        .ok_or_else(|| err(pos, "truncated length".into()))?,
                    12,
                )
            } else {
                (
                    Some(vr),
                    u16_at(b, pos + 6, enc.big)
                        .ok_or_else(|| err(pos, "truncated length".into()))?
                        as u32,
                    8,
                )
            }
        } else {
            (
                None,
                u32_at(b, pos + 4, enc.big).ok_or_else(|| err(pos, "truncated length".into()))?,
                8,
            )
        };
        pos += header;
        if len == UNDEFINED {
            let pixel = group == 0x7FE0 && elem == 0x0010;
            // An undefined-length UN (or a VR code nobody knows, which parsers read as UN)
            // holds implicit VR little endian (PS3.5 §6.2.2, CP-246). dicom-rs 0.10 reads its
            // items with the outer encoding instead, takes value bytes for lengths and
            // allocates gigabytes before failing: refuse it here, cheaply.
            if vr.is_some_and(|v| &v == b"UN" || !is_known_vr(&v)) {
                return Err(err(
                    pos,
                    format!(
                        "({group:04X},{elem:04X}) is an undefined-length UN element (CP-246), which the parser cannot read safely"
                    ),
                ));
            }
            let inner = enc;
            pos = items(b, pos, end, inner, depth + 1, pixel, false)?;
        } else {
            let len = len as usize;
            if len > end - pos {
                return Err(err(
                    pos,
                    format!(
                        "({group:04X},{elem:04X}) declares {len} bytes but only {} remain",
                        end - pos
                    ),
                ));
            }
            if vr == Some(*b"SQ") {
                let stop = pos + len;
                let after = items(b, pos, stop, enc, depth + 1, false, true)?;
                if after != stop {
                    return Err(err(
                        after,
                        "sequence ends before its declared length".into(),
                    ));
                }
            }
            pos += len;
        }
    }
    if in_undefined {
        return Err(err(pos, "sequence or item without its delimiter".into()));
    }
    Ok(pos)
}

/// Items of a sequence (or pixel data fragments when `raw`), until a sequence delimiter or,
/// for a defined-length sequence, `end`.
#[allow(clippy::too_many_arguments)]
fn items<S: Source + ?Sized>(
    b: &S,
    mut pos: usize,
    end: usize,
    enc: Enc,
    depth: usize,
    raw: bool,
    defined: bool,
) -> Result<usize, DicomError> {
    while pos < end {
        let group = u16_at(b, pos, enc.big).ok_or_else(|| err(pos, "truncated item tag".into()))?;
        let elem =
            u16_at(b, pos + 2, enc.big).ok_or_else(|| err(pos, "truncated item tag".into()))?;
        let len =
            u32_at(b, pos + 4, enc.big).ok_or_else(|| err(pos, "truncated item length".into()))?;
        if group != 0xFFFE {
            return Err(err(
                pos,
                format!("expected an item, found ({group:04X},{elem:04X})"),
            ));
        }
        pos += 8;
        match elem {
            0xE0DD => return Ok(pos),
            0xE000 if len == UNDEFINED && !raw => pos = walk(b, pos, end, enc, depth + 1, true)?,
            0xE000 if len != UNDEFINED => {
                let len = len as usize;
                if len > end - pos {
                    return Err(err(
                        pos,
                        format!("item declares {len} bytes but only {} remain", end - pos),
                    ));
                }
                if !raw {
                    walk(b, pos, pos + len, enc, depth + 1, false)?;
                }
                pos += len;
            }
            _ => {
                return Err(err(
                    pos,
                    format!("unexpected (FFFE,{elem:04X}) in a sequence"),
                ));
            }
        }
    }
    if !defined {
        return Err(err(
            pos,
            "undefined-length sequence without its delimiter".into(),
        ));
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVRLE: &str = "1.2.840.10008.1.2.1";
    const IVRLE: &str = "1.2.840.10008.1.2";

    fn deflate(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn deflated_data_sets_are_inflated_within_a_bound_and_walked() {
        const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
        let mut ok = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b'B'];
        ok.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 4, 0, 0, 0, 1, 2, 3, 4,
        ]);
        let z = deflate(&ok);
        assert!(check_structure(&z, DEFLATED).is_ok());
        // one NUL may pad the stream to an even length; anything else after its end may not
        let mut padded = z.clone();
        padded.push(0);
        assert!(check_structure(&padded, DEFLATED).is_ok());
        let mut trailing = z.clone();
        trailing.extend_from_slice(&[0, 0]);
        assert!(check_structure(&trailing, DEFLATED).is_err());
        // the gzip trailer (CRC-32, length) some writers leave is accepted, a wrong one is not
        let mut crc = flate2::Crc::new();
        crc.update(&ok);
        let mut gzip = z.clone();
        gzip.extend_from_slice(&crc.sum().to_le_bytes());
        gzip.extend_from_slice(&(ok.len() as u32).to_le_bytes());
        assert!(check_structure(&gzip, DEFLATED).is_ok());
        gzip[z.len()] ^= 1;
        assert!(check_structure(&gzip, DEFLATED).is_err());
        assert!(check_structure(&z[..z.len() / 2], DEFLATED).is_err());
        assert!(check_structure(&[], DEFLATED).is_err());
        // the inflated bytes are walked: a lying length inside is found
        let mut lying = ok.clone();
        lying[18] = 0xFF;
        assert!(check_structure(&deflate(&lying), DEFLATED).is_err());
        // a small stream that inflates past the bound is refused without inflating it all
        let mut bomb = ok.clone();
        bomb.extend_from_slice(&[0xE1, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0, 0, 0x10, 0]);
        bomb.resize(bomb.len() + (1 << 20), 0);
        let z = deflate(&bomb);
        assert!(z.len() < 4096);
        assert!(check_source_within(z.as_slice(), z.len(), DEFLATED, 1 << 20).is_err());
        assert!(check_source_within(z.as_slice(), z.len(), DEFLATED, 2 << 20).is_ok());
    }

    #[test]
    fn file_meta_elements_do_not_belong_in_a_data_set() {
        let ts = b"1.2.840.10008.1.2.2\0";
        let mut meta = vec![0x02, 0x00, 0x10, 0x00, b'U', b'I', ts.len() as u8, 0];
        meta.extend_from_slice(ts);
        meta.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b'B']);
        assert!(check_structure(&meta, EVRLE).is_err());
    }

    #[test]
    fn accepts_well_formed_and_refuses_lying_lengths() {
        // (0010,0010) PN "AB", (7FE0,0010) OB defined length 2
        let mut ok = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b'B'];
        ok.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 2, 0, 0, 0, 1, 2]);
        assert!(check_structure(&ok, EVRLE).is_ok());
        let mut lying = ok.clone();
        lying[18..22].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        assert!(check_structure(&lying, EVRLE).is_err());
        assert!(check_structure(&ok[..ok.len() - 1], EVRLE).is_err());
    }

    #[test]
    fn unknown_vr_codes_are_read_with_a_four_byte_length() {
        // (0010,0010) with VR "XY": a parser reads it as UN with a 4-byte length after two
        // reserved bytes; here those bytes claim ~2 GiB, which must be refused, not allocated
        let d = [
            0x10, 0x00, 0x10, 0x00, b'X', b'Y', 0, 0, 0xf0, 0xff, 0xff, 0x7f, b'A', b'B',
        ];
        assert!(check_structure(&d, EVRLE).is_err());
        let ok = [
            0x10, 0x00, 0x10, 0x00, b'X', b'Y', 0, 0, 2, 0, 0, 0, b'A', b'B',
        ];
        assert!(check_structure(&ok, EVRLE).is_ok());
    }

    #[test]
    fn undefined_length_un_is_refused_before_parsing() {
        // (4453,100C) UN, undefined length, holding an implicit-VR item: what dicom-rs 0.10
        // misreads into a multi-gigabyte allocation (pydicom's UN_sequence.dcm)
        let mut d = vec![
            0x53, 0x44, 0x0c, 0x10, b'U', b'N', 0, 0, 0xff, 0xff, 0xff, 0xff,
        ];
        d.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
        d.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, 2, 0, 0, 0, b'1', 0]);
        d.extend_from_slice(&[0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
        let e = check_structure(&d, EVRLE).unwrap_err().to_string();
        assert!(e.contains("undefined-length UN"), "{e}");
    }

    #[test]
    fn sequences_and_encapsulated_pixel_data() {
        // implicit: (0008,1115) undefined-length SQ with one undefined-length item holding
        // (0008,1150) UI "1\0", then delimiters
        let mut d = vec![0x08, 0x00, 0x15, 0x11, 0xff, 0xff, 0xff, 0xff];
        d.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
        d.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, 2, 0, 0, 0, b'1', 0]);
        d.extend_from_slice(&[0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
        assert!(check_structure(&d, IVRLE).is_ok());
        assert!(
            check_structure(&d[..d.len() - 8], IVRLE).is_err(),
            "missing sequence delimiter"
        );
        // explicit encapsulated pixel data: empty offset table + one 4-byte fragment
        let mut p = vec![
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xff, 0xff, 0xff, 0xff,
        ];
        p.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0]);
        p.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 4, 0, 0, 0, 0xfe, 0xff, 0x00, 0xe0]);
        p.extend_from_slice(&[0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
        assert!(
            check_structure(&p, "1.2.840.10008.1.2.4.50").is_ok(),
            "fragment bytes are not parsed"
        );
    }

    /// Mutations of a valid data set (bit flips, truncations, length rewrites) never panic and
    /// never make the walk read past the buffer; the same seed gives the same cases.
    #[test]
    fn mutated_inputs_never_panic() {
        let mut valid = Vec::new();
        crate::synth::ct_study(1, 8, 8, "fuzz")
            .generate(|g| {
                valid = g.part10;
                Ok::<(), DicomError>(())
            })
            .unwrap();
        let layout = crate::part10::read_layout(valid.as_slice()).unwrap();
        let ds = valid[layout.dataset_offset as usize..].to_vec();
        assert!(check_structure(&ds, EVRLE).is_ok());
        let mut rng = crate::synth::XorShift::new(0x9E37_79B9_7F4A_7C15);
        let mut next = move || rng.next_u64();
        for _ in 0..20_000 {
            let mut m = ds.clone();
            match next() % 3 {
                0 => {
                    let i = (next() as usize) % m.len();
                    m[i] ^= 1 << (next() % 8);
                }
                1 => m.truncate((next() as usize) % m.len()),
                _ => {
                    let i = (next() as usize) % m.len().saturating_sub(4).max(1);
                    let v = (next() as u32).to_le_bytes();
                    m[i..i + 4].copy_from_slice(&v);
                }
            }
            for ts in [EVRLE, IVRLE, "1.2.840.10008.1.2.2"] {
                let _ = check_structure(&m, ts);
            }
        }
    }
}
