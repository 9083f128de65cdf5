//! The attributes the archive indexes, taken from a parsed header.

use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use radris_core::Uid;

use crate::DicomError;

/// Values of bulk VRs longer than this are left out of the stored JSON header (they are
/// served from the blob instead).
pub const BULK_THRESHOLD: usize = 1024;

/// Patient-level attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientAttrs {
    pub patient_id: String,
    pub issuer: String,
    pub name: String,
    pub birth_date: String,
    pub sex: String,
}

/// Study-level attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyAttrs {
    pub study_uid: Uid,
    pub date: String,
    pub time: String,
    pub accession: String,
    pub study_id: String,
    pub description: String,
    pub referring_physician: String,
}

/// Series-level attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesAttrs {
    pub series_uid: Uid,
    pub modality: String,
    pub number: String,
    pub description: String,
    pub body_part: String,
    pub date: String,
}

/// Instance-level attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceAttrs {
    pub sop_instance_uid: Uid,
    pub sop_class_uid: Uid,
    pub number: String,
}

/// Everything the index keeps about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexAttributes {
    pub patient: PatientAttrs,
    pub study: StudyAttrs,
    pub series: SeriesAttrs,
    pub instance: InstanceAttrs,
}

/// A SOP Instance Reference Macro item: Referenced SOP Class UID and Referenced SOP Instance
/// UID (PS3.3 Table 10-11), as Source Image, Referenced Image and Referenced SOP sequences
/// hold them.
pub fn sop_reference(sop_class_uid: &str, sop_instance_uid: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        dicom_core::DataElement::new(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            dicom_core::PrimitiveValue::from(sop_class_uid),
        ),
        dicom_core::DataElement::new(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            dicom_core::PrimitiveValue::from(sop_instance_uid),
        ),
    ])
}

/// A string attribute, trimmed of DICOM padding; multiple values stay joined by `\`.
/// Values of VR UN (explicit VR files that did not know the attribute) are read as text.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| match (e.vr(), e.value()) {
            (VR::UN | VR::OB, Value::Primitive(p)) => {
                Some(String::from_utf8_lossy(&p.to_bytes()).into_owned())
            }
            (_, v) => v.to_str().ok().map(|s| s.into_owned()),
        })
        .map(|s| s.trim_matches([' ', '\0']).to_owned())
        .unwrap_or_default()
}

/// A study or series UID for an instance that has none, derived from its SOP Instance UID (so
/// the same instance always files under the same UID). The stored bytes keep the original data
/// set; only the index carries the derived UID.
pub fn derived_uid(sop_instance_uid: &Uid, level: &str) -> Uid {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("radris-derived/{level}/{sop_instance_uid}").as_bytes());
    let mut n = [0u8; 16];
    n.copy_from_slice(&d[..16]);
    Uid::parse(&format!("2.25.{}", u128::from_be_bytes(n) >> 1)).expect("2.25 UID is valid")
}

fn uid_or_derived(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
    sop: &Uid,
    level: &str,
) -> Result<Uid, DicomError> {
    if text(obj, tag).is_empty() {
        return Ok(derived_uid(sop, level));
    }
    uid(obj, tag, name)
}

fn uid(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<Uid, DicomError> {
    let raw = text(obj, tag);
    if raw.is_empty() {
        return Err(DicomError::MissingAttribute { name, tag });
    }
    Uid::parse(&raw).map_err(|source| DicomError::InvalidUid { name, source })
}

impl IndexAttributes {
    /// Extract the index attributes. SOP Class and SOP Instance UIDs are required; a missing
    /// Study or Series Instance UID is derived (see [`derived_uid`]); present UIDs must be valid.
    pub fn from_header(obj: &InMemDicomObject) -> Result<Self, DicomError> {
        let sop = uid(obj, tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
        Ok(IndexAttributes {
            patient: PatientAttrs {
                patient_id: text(obj, tags::PATIENT_ID),
                issuer: text(obj, tags::ISSUER_OF_PATIENT_ID),
                name: text(obj, tags::PATIENT_NAME),
                birth_date: text(obj, tags::PATIENT_BIRTH_DATE),
                sex: text(obj, tags::PATIENT_SEX),
            },
            study: StudyAttrs {
                study_uid: uid_or_derived(
                    obj,
                    tags::STUDY_INSTANCE_UID,
                    "StudyInstanceUID",
                    &sop,
                    "study",
                )?,
                date: text(obj, tags::STUDY_DATE),
                time: text(obj, tags::STUDY_TIME),
                accession: text(obj, tags::ACCESSION_NUMBER),
                study_id: text(obj, tags::STUDY_ID),
                description: text(obj, tags::STUDY_DESCRIPTION),
                referring_physician: text(obj, tags::REFERRING_PHYSICIAN_NAME),
            },
            series: SeriesAttrs {
                series_uid: uid_or_derived(
                    obj,
                    tags::SERIES_INSTANCE_UID,
                    "SeriesInstanceUID",
                    &sop,
                    "series",
                )?,
                modality: text(obj, tags::MODALITY),
                number: text(obj, tags::SERIES_NUMBER),
                description: text(obj, tags::SERIES_DESCRIPTION),
                body_part: text(obj, tags::BODY_PART_EXAMINED),
                date: text(obj, tags::SERIES_DATE),
            },
            instance: InstanceAttrs {
                sop_instance_uid: sop,
                sop_class_uid: uid(obj, tags::SOP_CLASS_UID, "SOPClassUID")?,
                number: text(obj, tags::INSTANCE_NUMBER),
            },
        })
    }
}

fn is_bulk(elem: &InMemElement) -> bool {
    if elem.tag() == tags::PIXEL_DATA {
        return true;
    }
    match elem.value() {
        Value::PixelSequence(_) => true,
        Value::Sequence(_) => false,
        Value::Primitive(p) => {
            matches!(
                elem.vr(),
                VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
            ) && p.calculate_byte_len() > BULK_THRESHOLD
        }
    }
}

/// A copy of the header without pixel data and other bulk values (recursively), for the JSON
/// kept in the index.
pub fn strip_bulk(obj: &InMemDicomObject) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(obj.iter().filter(|e| !is_bulk(e)).map(
        |e| match e.value() {
            Value::Sequence(seq) => stripped_sequence(e.tag(), seq.items()),
            _ => e.clone(),
        },
    ))
}

/// A sequence element whose items have their bulk values left out (see [`strip_bulk`]).
fn stripped_sequence(tag: Tag, items: &[InMemDicomObject]) -> InMemElement {
    let items: Vec<InMemDicomObject> = items.iter().map(strip_bulk).collect();
    InMemElement::new(tag, VR::SQ, dicom_core::value::DataSetSequence::from(items))
}

/// The header as DICOM JSON (PS3.18 F.2), bulk data left out.
pub fn header_json(obj: &InMemDicomObject) -> Result<String, DicomError> {
    dicom_json::to_string(&strip_bulk(obj)).map_err(|e| DicomError::Write(e.to_string()))
}

/// The header the index keeps: bulk data left out, UN-encoded index attributes and derived
/// UIDs replaced by the values the index uses, so query responses agree with the index.
///
/// Written straight to the JSON text in tag order (PS3.18 F.2), without an intermediate
/// JSON tree: this runs once per stored instance, on the ingest path.
pub fn index_header_json(
    obj: &InMemDicomObject,
    attrs: &IndexAttributes,
) -> Result<String, DicomError> {
    let mut entries: std::collections::BTreeMap<Tag, HeaderEntry<'_>> = obj
        .iter()
        .filter(|e| !is_bulk(e))
        .map(|e| {
            let entry = match e.value() {
                Value::Sequence(seq) => HeaderEntry::Owned(stripped_sequence(e.tag(), seq.items())),
                _ => HeaderEntry::Element(e),
            };
            (e.tag(), entry)
        })
        .collect();
    for (tag, vr, value) in [
        (
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            attrs.study.study_uid.as_str(),
        ),
        (
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            attrs.series.series_uid.as_str(),
        ),
        (
            tags::SOP_INSTANCE_UID,
            VR::UI,
            attrs.instance.sop_instance_uid.as_str(),
        ),
        (
            tags::SOP_CLASS_UID,
            VR::UI,
            attrs.instance.sop_class_uid.as_str(),
        ),
    ] {
        let value = dicom_core::PrimitiveValue::from(value);
        entries.insert(tag, HeaderEntry::Owned(InMemElement::new(tag, vr, value)));
    }
    for (tag, vr) in [
        (tags::PATIENT_ID, VR::LO),
        (tags::PATIENT_NAME, VR::PN),
        (tags::STUDY_DATE, VR::DA),
        (tags::ACCESSION_NUMBER, VR::SH),
        (tags::MODALITY, VR::CS),
    ] {
        if obj.get(tag).is_some_and(|e| e.vr() == VR::UN) {
            let value = dicom_core::PrimitiveValue::from(text(obj, tag));
            entries.insert(tag, HeaderEntry::Owned(InMemElement::new(tag, vr, value)));
        }
    }
    // bulk values are referenced, not inlined: `bulk:<tag>` becomes a BulkDataURI when the
    // metadata is served
    for e in obj.iter().filter(|e| is_bulk(e)) {
        entries.insert(e.tag(), HeaderEntry::Bulk(e.vr()));
    }
    // the header is parsed up to Pixel Data: an image has it
    if obj.get(tags::ROWS).is_some() && obj.get(tags::PIXEL_DATA).is_none() {
        let bits = text(obj, tags::BITS_ALLOCATED);
        let vr = if bits == "8" || bits == "1" {
            VR::OB
        } else {
            VR::OW
        };
        entries.insert(tags::PIXEL_DATA, HeaderEntry::Bulk(vr));
    }
    serde_json::to_string(&IndexHeader(&entries)).map_err(|e| DicomError::Write(e.to_string()))
}

/// One attribute of [`index_header_json`]'s output.
enum HeaderEntry<'a> {
    /// As parsed.
    Element(&'a InMemElement),
    /// Replaced, or a sequence with its items' bulk values left out.
    Owned(InMemElement),
    /// A bulk value, referenced by its tag.
    Bulk(VR),
}

/// The entries of [`index_header_json`], in tag order, as a DICOM JSON object.
struct IndexHeader<'e, 'a>(&'e std::collections::BTreeMap<Tag, HeaderEntry<'a>>);

impl serde::Serialize for IndexHeader<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (tag, entry) in self.0 {
            let key = dicom_json::DicomJson::from(*tag);
            match entry {
                HeaderEntry::Element(e) => {
                    map.serialize_entry(&key, &dicom_json::DicomJson::from(*e))?
                }
                HeaderEntry::Owned(e) => {
                    map.serialize_entry(&key, &dicom_json::DicomJson::from(e))?
                }
                HeaderEntry::Bulk(vr) => map.serialize_entry(&key, &BulkRef(*tag, *vr))?,
            }
        }
        map.end()
    }
}

/// `{"vr": .., "BulkDataURI": "bulk:GGGGEEEE"}` (see [`BULK_MARK`]).
struct BulkRef(Tag, VR);

impl serde::Serialize for BulkRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Tag(g, e) = self.0;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("vr", self.1.to_string())?;
        map.serialize_entry("BulkDataURI", &format!("bulk:{g:04X}{e:04X}"))?;
        map.end()
    }
}

/// Prefix of the bulk data references kept in stored headers (see [`index_header_json`]).
pub const BULK_MARK: &str = "\"BulkDataURI\":\"bulk:";

/// Parse a header kept as DICOM JSON.
pub fn header_from_json(json: &str) -> Result<InMemDicomObject, DicomError> {
    dicom_json::from_str(json).map_err(|e| DicomError::Parse(format!("stored JSON header: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::PrimitiveValue;

    fn sample() -> InMemDicomObject {
        InMemDicomObject::from_element_iter([
            InMemElement::new(tags::PATIENT_NAME, VR::PN, "Doe^John "),
            InMemElement::new(tags::PATIENT_ID, VR::LO, "P1"),
            InMemElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3\0"),
            InMemElement::new(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4"),
            InMemElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4.5"),
            InMemElement::new(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
            InMemElement::new(tags::MODALITY, VR::CS, "CT"),
            InMemElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U8(vec![0u8; 4096].into()),
            ),
        ])
    }

    #[test]
    fn extracts_and_trims() {
        let a = IndexAttributes::from_header(&sample()).unwrap();
        assert_eq!(a.patient.name, "Doe^John");
        assert_eq!(a.study.study_uid.as_str(), "1.2.3");
        assert_eq!(a.series.modality, "CT");
    }

    #[test]
    fn missing_and_invalid_uids_are_refused() {
        let mut o = sample();
        o.remove_element(tags::STUDY_INSTANCE_UID);
        let derived = IndexAttributes::from_header(&o).unwrap();
        assert!(derived.study.study_uid.as_str().starts_with("2.25."));
        assert_eq!(
            derived.study.study_uid,
            IndexAttributes::from_header(&o).unwrap().study.study_uid
        );
        o.remove_element(tags::SOP_INSTANCE_UID);
        assert!(matches!(
            IndexAttributes::from_header(&o),
            Err(DicomError::MissingAttribute { .. })
        ));
        o.put(InMemElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.abc"));
        assert!(matches!(
            IndexAttributes::from_header(&o),
            Err(DicomError::InvalidUid { .. })
        ));
    }

    #[test]
    fn un_values_read_as_text() {
        let mut o = sample();
        o.put(InMemElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UN,
            PrimitiveValue::U8(b"1.2.9".to_vec().into()),
        ));
        let a = IndexAttributes::from_header(&o).unwrap();
        assert_eq!(a.study.study_uid.as_str(), "1.2.9");
    }

    #[test]
    fn json_header_leaves_out_bulk_and_round_trips() {
        let json = header_json(&sample()).unwrap();
        assert!(!json.contains("7FE00010"));
        let back = header_from_json(&json).unwrap();
        assert_eq!(text(&back, tags::PATIENT_ID), "P1");
    }
    /// What [`index_header_json`] must produce, the slow way: the stripped header as a JSON
    /// tree, the index's values put in, bulk references added.
    fn reference_index_header(
        obj: &InMemDicomObject,
        attrs: &IndexAttributes,
    ) -> serde_json::Value {
        let mut h = strip_bulk(obj);
        for (tag, value) in [
            (tags::STUDY_INSTANCE_UID, attrs.study.study_uid.as_str()),
            (tags::SERIES_INSTANCE_UID, attrs.series.series_uid.as_str()),
            (
                tags::SOP_INSTANCE_UID,
                attrs.instance.sop_instance_uid.as_str(),
            ),
            (tags::SOP_CLASS_UID, attrs.instance.sop_class_uid.as_str()),
        ] {
            h.put(InMemElement::new(tag, VR::UI, PrimitiveValue::from(value)));
        }
        if obj.get(tags::PATIENT_ID).is_some_and(|e| e.vr() == VR::UN) {
            let id = PrimitiveValue::from(text(obj, tags::PATIENT_ID));
            h.put(InMemElement::new(tags::PATIENT_ID, VR::LO, id));
        }
        let mut json = dicom_json::to_value(&h).unwrap();
        let map = json.as_object_mut().unwrap();
        for e in obj.iter().filter(|e| is_bulk(e)) {
            let key = format!("{:04X}{:04X}", e.tag().group(), e.tag().element());
            let uri = format!("bulk:{key}");
            map.insert(
                key,
                serde_json::json!({"vr": e.vr().to_string(), "BulkDataURI": uri}),
            );
        }
        if obj.get(tags::ROWS).is_some() && obj.get(tags::PIXEL_DATA).is_none() {
            map.insert(
                "7FE00010".into(),
                serde_json::json!({"vr": "OW", "BulkDataURI": "bulk:7FE00010"}),
            );
        }
        json
    }

    #[test]
    fn index_header_is_the_stripped_header_with_index_values_and_bulk_references() {
        let with_pixels = sample();
        let mut without_pixels = sample();
        without_pixels.remove_element(tags::PIXEL_DATA);
        without_pixels.put(InMemElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(512_u16),
        ));
        without_pixels.put(InMemElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(16_u16),
        ));
        let mut rich = sample();
        // an UN-encoded index attribute, a derived study UID, a large private OB value, a
        // sequence whose item holds a bulk value and a small one
        rich.put(InMemElement::new(
            tags::PATIENT_ID,
            VR::UN,
            PrimitiveValue::U8(b"P 9 ".to_vec().into()),
        ));
        rich.remove_element(tags::STUDY_INSTANCE_UID);
        rich.put(InMemElement::new(
            Tag(0x0009, 0x1010),
            VR::OB,
            PrimitiveValue::U8(vec![7u8; 4000].into()),
        ));
        rich.put(InMemElement::new(
            Tag(0x0009, 0x1011),
            VR::OB,
            PrimitiveValue::U8(vec![1u8, 2].into()),
        ));
        let item = InMemDicomObject::from_element_iter([
            InMemElement::new(tags::CODE_VALUE, VR::SH, "T-1234"),
            InMemElement::new(
                tags::ICON_IMAGE_SEQUENCE,
                VR::OB,
                PrimitiveValue::U8(vec![3u8; 3000].into()),
            ),
        ]);
        rich.put(InMemElement::new(
            tags::ANATOMIC_REGION_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![item]),
        ));
        rich.put(InMemElement::new(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            "-125.5\\-30\\12.25",
        ));
        for obj in [with_pixels, without_pixels, rich] {
            let attrs = IndexAttributes::from_header(&obj).unwrap();
            let json = index_header_json(&obj, &attrs).unwrap();
            let got: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(got, reference_index_header(&obj, &attrs), "{json}");
            // tag order (PS3.18 F.2.1.1)
            let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
            let positions: Vec<usize> = keys
                .iter()
                .map(|k| json.find(&format!("\"{k}\":")).unwrap())
                .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
            assert!(json.contains(BULK_MARK));
            assert!(
                !json.contains("InlineBinary\":\"Bwc"),
                "bulk inlined: {json}"
            );
        }
    }
}
