//! Part-10 framing (PS3.10 §7): preamble, `DICM`, the file meta group, then the data set.
//!
//! The archive stores every instance as a Part-10 file whose data set bytes are exactly those
//! received; the meta group is ours. [`read_layout`] finds where the data set starts so that
//! retrieval sends those bytes back untouched.

use std::io::Read;

use dicom_object::meta::{FileMetaTable, FileMetaTableBuilder};

use crate::DicomError;

/// Implementation Class UID written into the file meta of stored objects (UUID-derived, 2.25).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.203949186462651046237766541432879183627";
/// Implementation Version Name written into the file meta of stored objects.
pub const IMPLEMENTATION_VERSION_NAME: &str = "RADRIS_010";

/// The bytes that go before a data set: 128-byte preamble, `DICM` and the meta group.
pub fn file_meta_bytes(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax_uid: &str,
    source_ae: Option<&str>,
) -> Result<Vec<u8>, DicomError> {
    let mut builder = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(transfer_syntax_uid)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
    if let Some(ae) = source_ae {
        builder = builder.source_application_entity_title(ae);
    }
    let meta = builder
        .build()
        .map_err(|e| DicomError::Write(format!("file meta: {e}")))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| DicomError::Write(format!("file meta: {e}")))?;
    Ok(out)
}

/// Where the parts of a Part-10 file are.
#[derive(Debug, Clone)]
pub struct Part10Layout {
    pub meta: FileMetaTable,
    /// Byte offset of the first data set element.
    pub dataset_offset: u64,
}

/// Read the preamble (optional) and the file meta group from the start of a Part-10 stream.
/// Reads exactly up to the first data set element.
pub fn read_layout<R: Read>(mut reader: R) -> Result<Part10Layout, DicomError> {
    let bad = |what: &str| DicomError::NotPart10(what.to_owned());
    let mut head = [0u8; 132];
    reader
        .read_exact(&mut head[..4])
        .map_err(|_| bad("shorter than 4 bytes"))?;
    let mut consumed: u64 = 4;
    if &head[..4] != b"DICM" {
        reader
            .read_exact(&mut head[4..])
            .map_err(|_| bad("shorter than the 128-byte preamble"))?;
        consumed = 132;
        if &head[128..132] != b"DICM" {
            return Err(bad("no DICM magic after the preamble"));
        }
    }
    // walk group 0002 element by element (Explicit VR Little Endian, PS3.10 §7.1)
    let mut meta_bytes: Vec<u8> = b"DICM".to_vec();
    loop {
        let mut tag_vr = [0u8; 8];
        let mut peeked = 0;
        while peeked < 8 {
            match reader.read(&mut tag_vr[peeked..]) {
                Ok(0) => break,
                Ok(n) => peeked += n,
                Err(e) => {
                    return Err(DicomError::Io {
                        path: "<stream>".into(),
                        source: e,
                    });
                }
            }
        }
        if peeked == 0 {
            break; // meta only, empty data set
        }
        if peeked < 8 {
            return Err(bad("truncated file meta element"));
        }
        let group = u16::from_le_bytes([tag_vr[0], tag_vr[1]]);
        if group != 0x0002 {
            // the data set starts here; we consumed 8 bytes of it
            let meta = FileMetaTable::from_reader(meta_bytes.as_slice())
                .map_err(|e| bad(&format!("file meta: {e}")))?;
            return Ok(Part10Layout {
                meta,
                dataset_offset: consumed,
            });
        }
        let vr = [tag_vr[4], tag_vr[5]];
        let len = if crate::wire::has_long_length(&vr) {
            let mut l = [0u8; 4];
            reader
                .read_exact(&mut l)
                .map_err(|_| bad("truncated file meta length"))?;
            meta_bytes.extend_from_slice(&tag_vr);
            meta_bytes.extend_from_slice(&l);
            consumed += 12;
            u32::from_le_bytes(l) as u64
        } else {
            meta_bytes.extend_from_slice(&tag_vr);
            consumed += 8;
            u16::from_le_bytes([tag_vr[6], tag_vr[7]]) as u64
        };
        if len > 1 << 20 {
            return Err(bad("file meta element longer than 1 MiB"));
        }
        let start = meta_bytes.len();
        meta_bytes.resize(start + len as usize, 0);
        reader
            .read_exact(&mut meta_bytes[start..])
            .map_err(|_| bad("truncated file meta value"))?;
        consumed += len;
    }
    let meta = FileMetaTable::from_reader(meta_bytes.as_slice())
        .map_err(|e| bad(&format!("file meta: {e}")))?;
    Ok(Part10Layout {
        meta,
        dataset_offset: consumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_offset() {
        let mut file = file_meta_bytes(
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.3.4",
            "1.2.840.10008.1.2.1",
            Some("MODALITY"),
        )
        .unwrap();
        let meta_len = file.len() as u64;
        file.extend_from_slice(&[0x08, 0x00, 0x16, 0x00, b'U', b'I', 2, 0, b'1', 0]);
        let layout = read_layout(file.as_slice()).unwrap();
        assert_eq!(layout.dataset_offset, meta_len);
        assert_eq!(layout.meta.transfer_syntax(), "1.2.840.10008.1.2.1");
        assert_eq!(layout.meta.media_storage_sop_instance_uid(), "1.2.3.4");
    }

    #[test]
    fn refuses_non_dicom() {
        assert!(read_layout(&b"hello world, this is not DICOM"[..]).is_err());
        assert!(read_layout(&[0u8; 200][..]).is_err());
    }
}
