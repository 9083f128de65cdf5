//! Pictures saved back into the archive as a new series of the source study.
//!
//! * Planes (MPR and slabs) of a CT series become **derived CT images** (CT Image Storage,
//!   Image Type `DERIVED\SECONDARY\REFORMATTED`), 16-bit HU with their own plane geometry in
//!   the source's frame of reference, so they measure and reformat like any CT.
//! * Everything else (curved reformats, volume renderings, planes of other modalities)
//!   becomes **Secondary Capture** (8-bit grey through the picture's window, or RGB).
//!
//! Every object cites its source: Source Image Sequence (each source instance), the
//! Referenced Series Sequence of the source series, a Derivation Description in words and a
//! Derivation Code Sequence (CID 7203: DCM 113072 multiplanar reformatting, 113073 curved
//! multiplanar reformatting, 113074 volume rendering, 113078 / 113079 maximum / minimum
//! intensity projection).

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use radris_dicom::part10::file_meta_bytes;

use super::{LoadedSeries, Mode, Picture, RenderError, ViewParams};

/// What is saved and how it is described.
pub struct DerivedSeries<'a> {
    pub source: &'a LoadedSeries,
    pub mode: Mode,
    /// Series Description of the new series.
    pub description: String,
    /// Derivation Description: the parameters in words.
    pub derivation: String,
    pub series_uid: String,
    pub series_number: i32,
    /// Slab projection (`mip`, `minip`, `average`) and thickness of slab pictures.
    pub slab: Option<(String, f64)>,
}

fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::now_v7().as_u128())
}

impl<'a> DerivedSeries<'a> {
    pub fn new(
        source: &'a LoadedSeries,
        mode: Mode,
        params: &ViewParams,
        description: String,
        derivation: String,
    ) -> Self {
        let slab = (mode == Mode::Slab).then(|| {
            (
                params.slab.clone().unwrap_or_else(|| "mip".into()),
                params.thickness.unwrap_or(10.0),
            )
        });
        DerivedSeries {
            source,
            mode,
            description,
            derivation,
            series_uid: new_uid(),
            series_number: 9000 + (uuid::Uuid::now_v7().as_u128() % 900) as i32,
            slab,
        }
    }

    /// CID 7203 Image Derivation.
    fn derivation_code(&self) -> (&'static str, &'static str) {
        match (self.mode, self.slab.as_ref().map(|(m, _)| m.as_str())) {
            (Mode::Vr, _) => ("113074", "Volume rendering"),
            (Mode::Curved, _) => ("113073", "Curved multiplanar reformatting"),
            (Mode::Slab, Some("mip")) => ("113078", "Maximum intensity projection"),
            (Mode::Slab, Some("minip")) => ("113079", "Minimum intensity projection"),
            _ => ("113072", "Multiplanar reformatting"),
        }
    }

    /// Part-10 bytes of instance `number` (from 1) holding `pic`.
    pub fn instance(&self, pic: &Picture, number: usize) -> Result<(String, Vec<u8>), RenderError> {
        let src = &self.source.header;
        let mut o = InMemDicomObject::new_empty();
        // patient, study and equipment of the source
        for tag in [
            tags::SPECIFIC_CHARACTER_SET,
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::ISSUER_OF_PATIENT_ID,
            tags::PATIENT_BIRTH_DATE,
            tags::PATIENT_SEX,
            tags::STUDY_INSTANCE_UID,
            tags::STUDY_DATE,
            tags::STUDY_TIME,
            tags::STUDY_ID,
            tags::ACCESSION_NUMBER,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::STUDY_DESCRIPTION,
            tags::INSTITUTION_NAME,
            tags::BODY_PART_EXAMINED,
            tags::LATERALITY,
            tags::PATIENT_POSITION,
        ] {
            if let Some(e) = src.get(tag) {
                o.put(e.clone());
            }
        }
        for (tag, vr) in [
            (tags::PATIENT_NAME, VR::PN),
            (tags::PATIENT_ID, VR::LO),
            (tags::PATIENT_BIRTH_DATE, VR::DA),
            (tags::PATIENT_SEX, VR::CS),
            (tags::STUDY_DATE, VR::DA),
            (tags::STUDY_TIME, VR::TM),
            (tags::STUDY_ID, VR::SH),
            (tags::ACCESSION_NUMBER, VR::SH),
            (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        ] {
            if o.get(tag).is_none() {
                o.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
            }
        }
        o.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(self.source.study_uid.as_str()),
        ));
        // Laterality is required (type 2C) for paired structures; without a body part a
        // validator cannot tell, so it is present and empty (unknown)
        if o.get(tags::LATERALITY).is_none() && o.get(tags::BODY_PART_EXAMINED).is_none() {
            o.put(DataElement::new(
                tags::LATERALITY,
                VR::CS,
                PrimitiveValue::Empty,
            ));
        }
        let now = chrono::Utc::now();
        let date = now.format("%Y%m%d").to_string();
        let time = now.format("%H%M%S").to_string();
        let sop_uid = new_uid();
        let modality = self.source.modality();
        let ct_plane = modality == "CT"
            && matches!(self.mode, Mode::Mpr | Mode::Slab)
            && matches!(pic, Picture::Grey { plane: Some(_), .. });
        let sop_class = if ct_plane {
            uids::CT_IMAGE_STORAGE
        } else {
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE
        };
        let put = |o: &mut InMemDicomObject, tag: Tag, vr: VR, v: PrimitiveValue| {
            o.put(DataElement::new(tag, vr, v));
        };
        put(&mut o, tags::SOP_CLASS_UID, VR::UI, sop_class.into());
        put(
            &mut o,
            tags::SOP_INSTANCE_UID,
            VR::UI,
            sop_uid.as_str().into(),
        );
        put(
            &mut o,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            self.series_uid.as_str().into(),
        );
        put(
            &mut o,
            tags::SERIES_NUMBER,
            VR::IS,
            self.series_number.to_string().into(),
        );
        put(
            &mut o,
            tags::INSTANCE_NUMBER,
            VR::IS,
            number.to_string().into(),
        );
        put(
            &mut o,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            self.description.as_str().into(),
        );
        put(&mut o, tags::SERIES_DATE, VR::DA, date.as_str().into());
        put(&mut o, tags::SERIES_TIME, VR::TM, time.as_str().into());
        put(&mut o, tags::CONTENT_DATE, VR::DA, date.as_str().into());
        put(&mut o, tags::CONTENT_TIME, VR::TM, time.as_str().into());
        put(
            &mut o,
            tags::INSTANCE_CREATION_DATE,
            VR::DA,
            date.as_str().into(),
        );
        put(
            &mut o,
            tags::INSTANCE_CREATION_TIME,
            VR::TM,
            time.as_str().into(),
        );
        put(&mut o, tags::MANUFACTURER, VR::LO, "RADRIS".into());
        put(
            &mut o,
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            env!("CARGO_PKG_VERSION").into(),
        );
        put(
            &mut o,
            tags::PATIENT_ORIENTATION,
            VR::CS,
            PrimitiveValue::Empty,
        );
        put(
            &mut o,
            tags::DERIVATION_DESCRIPTION,
            VR::ST,
            self.derivation.as_str().into(),
        );
        let (code, meaning) = self.derivation_code();
        o.put(DataElement::new(
            tags::DERIVATION_CODE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![code_item(code, meaning)]),
        ));
        let refs: Vec<InMemDicomObject> = self
            .source
            .sources
            .iter()
            .map(|(class, sop)| radris_dicom::attrs::sop_reference(class, sop))
            .collect();
        o.put(DataElement::new(
            tags::SOURCE_IMAGE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(refs.clone()),
        ));
        let series_ref = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SERIES_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(self.source.series_uid.as_str()),
            ),
            DataElement::new(
                tags::REFERENCED_INSTANCE_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(refs),
            ),
        ]);
        o.put(DataElement::new(
            tags::REFERENCED_SERIES_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![series_ref]),
        ));

        if ct_plane {
            let Picture::Grey {
                image,
                window,
                plane: Some(plane),
            } = pic
            else {
                return Err(RenderError::internal("derived CT", "not a plane"));
            };
            put(&mut o, tags::MODALITY, VR::CS, "CT".into());
            o.put(DataElement::new(
                tags::IMAGE_TYPE,
                VR::CS,
                dicom_value!(Strs, ["DERIVED", "SECONDARY", "REFORMATTED"]),
            ));
            if let Some(e) = src.get(tags::FRAME_OF_REFERENCE_UID) {
                o.put(e.clone());
            }
            put(
                &mut o,
                tags::POSITION_REFERENCE_INDICATOR,
                VR::LO,
                PrimitiveValue::Empty,
            );
            let first = plane.point_at(0.0, 0.0);
            put(&mut o, tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&first));
            put(
                &mut o,
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                ds(&[
                    plane.u[0], plane.u[1], plane.u[2], plane.v[0], plane.v[1], plane.v[2],
                ]),
            );
            put(
                &mut o,
                tags::PIXEL_SPACING,
                VR::DS,
                ds(&[plane.pixel_mm, plane.pixel_mm]),
            );
            let thickness = self.slab.as_ref().map_or(plane.pixel_mm, |(_, t)| *t);
            put(&mut o, tags::SLICE_THICKNESS, VR::DS, ds(&[thickness]));
            put(&mut o, tags::KVP, VR::DS, PrimitiveValue::Empty);
            put(
                &mut o,
                tags::ACQUISITION_NUMBER,
                VR::IS,
                PrimitiveValue::Empty,
            );
            put(&mut o, tags::RESCALE_INTERCEPT, VR::DS, "0".into());
            put(&mut o, tags::RESCALE_SLOPE, VR::DS, "1".into());
            put(&mut o, tags::RESCALE_TYPE, VR::LO, "HU".into());
            put(&mut o, tags::WINDOW_CENTER, VR::DS, ds(&[window.0]));
            put(&mut o, tags::WINDOW_WIDTH, VR::DS, ds(&[window.1]));
            // outside the volume: padding below anything a CT holds
            const PAD: i16 = -3024;
            let px: Vec<u16> = image
                .data
                .iter()
                .map(|&x| {
                    let v = if x.is_finite() {
                        x.round().clamp(-3000.0, 32767.0) as i16
                    } else {
                        PAD
                    };
                    v as u16
                })
                .collect();
            put(
                &mut o,
                tags::PIXEL_PADDING_VALUE,
                VR::SS,
                PrimitiveValue::from(PAD),
            );
            grey16(&mut o, image.width, image.height, px);
        } else {
            put(
                &mut o,
                tags::MODALITY,
                VR::CS,
                if modality.is_empty() {
                    "OT"
                } else {
                    modality.as_str()
                }
                .into(),
            );
            o.put(DataElement::new(
                tags::IMAGE_TYPE,
                VR::CS,
                dicom_value!(Strs, ["DERIVED", "SECONDARY"]),
            ));
            put(&mut o, tags::CONVERSION_TYPE, VR::CS, "WSD".into());
            let img = pic.to_image8();
            let (w, h) = (img.width as u16, img.height as u16);
            put(&mut o, tags::ROWS, VR::US, PrimitiveValue::from(h));
            put(&mut o, tags::COLUMNS, VR::US, PrimitiveValue::from(w));
            put(
                &mut o,
                tags::BITS_ALLOCATED,
                VR::US,
                PrimitiveValue::from(8u16),
            );
            put(
                &mut o,
                tags::BITS_STORED,
                VR::US,
                PrimitiveValue::from(8u16),
            );
            put(&mut o, tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16));
            put(
                &mut o,
                tags::PIXEL_REPRESENTATION,
                VR::US,
                PrimitiveValue::from(0u16),
            );
            put(
                &mut o,
                tags::SAMPLES_PER_PIXEL,
                VR::US,
                PrimitiveValue::from(u16::from(img.channels)),
            );
            if img.channels == 3 {
                put(
                    &mut o,
                    tags::PHOTOMETRIC_INTERPRETATION,
                    VR::CS,
                    "RGB".into(),
                );
                put(
                    &mut o,
                    tags::PLANAR_CONFIGURATION,
                    VR::US,
                    PrimitiveValue::from(0u16),
                );
            } else {
                put(
                    &mut o,
                    tags::PHOTOMETRIC_INTERPRETATION,
                    VR::CS,
                    "MONOCHROME2".into(),
                );
            }
            let mut data = img.data;
            if data.len() % 2 == 1 {
                data.push(0);
            }
            put(&mut o, tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(data));
        }
        let ts = uids::EXPLICIT_VR_LITTLE_ENDIAN;
        let mut bytes = file_meta_bytes(sop_class, &sop_uid, ts, None)
            .map_err(|e| RenderError::internal("encoding the derived object", e))?;
        o.write_dataset_with_ts(
            &mut bytes,
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .map_err(|e| RenderError::internal("encoding the derived object", e))?;
        Ok((sop_uid, bytes))
    }
}

fn grey16(o: &mut InMemDicomObject, w: usize, h: usize, px: Vec<u16>) {
    let put = |o: &mut InMemDicomObject, tag: Tag, vr: VR, v: PrimitiveValue| {
        o.put(DataElement::new(tag, vr, v));
    };
    put(
        o,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    put(
        o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    put(o, tags::ROWS, VR::US, PrimitiveValue::from(h as u16));
    put(o, tags::COLUMNS, VR::US, PrimitiveValue::from(w as u16));
    put(o, tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
    put(o, tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16));
    put(o, tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16));
    put(
        o,
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(px.into()),
    ));
}

fn ds(v: &[f64]) -> PrimitiveValue {
    // DS holds at most 16 characters per value
    let s: Vec<String> = v
        .iter()
        .map(|x| {
            let mut t = format!("{x:.6}");
            while t.contains('.') && (t.ends_with('0') || t.ends_with('.')) {
                t.pop();
            }
            if t == "-0" {
                t = "0".into();
            }
            t.truncate(16);
            t
        })
        .collect();
    PrimitiveValue::Strs(s.into())
}

fn code_item(value: &str, meaning: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
        DataElement::new(
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            PrimitiveValue::from("DCM"),
        ),
        DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit() {
        match ds(&[-0.0, 1.5, 123456.123456789, -1e-9]) {
            PrimitiveValue::Strs(s) => {
                assert_eq!(s.to_vec(), vec!["0", "1.5", "123456.123457", "0"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
