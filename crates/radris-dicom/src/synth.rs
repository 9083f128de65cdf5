//! The synthetic study generator: realistic-looking but entirely artificial patients, used by
//! `radris demo` (a demo archive) and `radris generate` (test and benchmark data).
//!
//! Pixel data are analytic phantoms (body ellipse, lungs, spine, nodules; skull and brain;
//! PET uptake), so the viewer and the imaging engine have something meaningful to show. UIDs
//! are `2.25` UUID-style values derived from the seed, so the same seed gives the same study.
//!
//! [`test_phantoms`] adds noise-free geometry-test phantoms ([`Phantom::Test`]) with exactly
//! known ground truth (a sphere's volume, bead distances, a curved tube, calcium lesions, a
//! shifted CT/MR pair, a 4D enhancement series), written through the same pipeline so the
//! imaging engine can be tested end to end from Part-10 bytes.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use sha2::{Digest, Sha256};

use crate::DicomError;
use crate::part10::file_meta_bytes;

pub mod test_phantoms;
pub use test_phantoms::TestPhantom;

/// Which phantom a series shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phantom {
    /// Axial chest CT with lungs, spine and pulmonary nodules (HU, signed 16-bit).
    ChestCt,
    /// Axial head CT: skull, brain, ventricles.
    HeadCt,
    /// Axial T2-like MR brain (unsigned 16-bit).
    MrBrain,
    /// A single posteroanterior chest radiograph.
    CrChest,
    /// PET whole-body emission with hot spots (SUV-scaled unsigned 16-bit).
    PetBody,
    /// An analytic geometry-test phantom with known ground truth ([`test_phantoms`]).
    Test(TestPhantom),
}

/// One series to generate.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub phantom: Phantom,
    pub slices: u32,
    pub rows: u16,
    pub cols: u16,
    pub description: String,
    pub number: u32,
}

/// One study to generate.
#[derive(Debug, Clone)]
pub struct StudySpec {
    pub seed: String,
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    pub sex: String,
    pub accession: String,
    pub description: String,
    pub date: String,
    pub time: String,
    pub series: Vec<SeriesSpec>,
}

/// A UID under the `2.25` root derived from a seed (PS3.5 B.2).
pub fn uid_from(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut n = [0u8; 16];
    n.copy_from_slice(&digest[..16]);
    format!("2.25.{}", u128::from_be_bytes(n) >> 1)
}

/// A single-series chest CT study for tests and benchmarks.
pub fn ct_study(slices: u32, rows: u16, cols: u16, seed: &str) -> StudySpec {
    StudySpec {
        seed: format!("ct-{seed}"),
        patient_id: format!("SYN{:06}", u32::from_be_bytes(hash4(seed))),
        patient_name: "SYNTHETIC^CT".into(),
        birth_date: "19600101".into(),
        sex: "O".into(),
        accession: format!("ACC{:07}", u32::from_be_bytes(hash4(seed)) % 10_000_000),
        description: "CT CHEST WITHOUT CONTRAST".into(),
        date: "20260110".into(),
        time: "101500".into(),
        series: vec![SeriesSpec {
            phantom: Phantom::ChestCt,
            slices,
            rows,
            cols,
            description: "Axial 1.0 mm".into(),
            number: 2,
        }],
    }
}

fn hash4(seed: &str) -> [u8; 4] {
    let d = Sha256::digest(seed.as_bytes());
    [d[0], d[1], d[2], d[3]]
}

/// The demo data set of `radris demo`: chest CT with nodules (300 slices) and its prior a year
/// earlier (100 slices), head CT, MR brain, CR chest and a PET/CT pair, over four patients.
pub fn demo_studies() -> Vec<StudySpec> {
    let s = |phantom, slices, rows, cols, description: &str, number| SeriesSpec {
        phantom,
        slices,
        rows,
        cols,
        description: description.into(),
        number,
    };
    vec![
        StudySpec {
            seed: "demo-chest-ct".into(),
            patient_id: "DEMO0001".into(),
            patient_name: "Lindqvist^Maria".into(),
            birth_date: "19580314".into(),
            sex: "F".into(),
            accession: "DA0001".into(),
            description: "CT CHEST LUNG NODULE FOLLOW-UP".into(),
            date: "20260912".into(),
            time: "083000".into(),
            series: vec![s(Phantom::ChestCt, 300, 512, 512, "Lung 1.0 mm", 3)],
        },
        // the same patient's baseline a year earlier: the prior the viewer hangs beside it
        StudySpec {
            seed: "demo-chest-ct-prior".into(),
            patient_id: "DEMO0001".into(),
            patient_name: "Lindqvist^Maria".into(),
            birth_date: "19580314".into(),
            sex: "F".into(),
            accession: "DA0000".into(),
            description: "CT CHEST LUNG NODULE BASELINE".into(),
            date: "20250910".into(),
            time: "081500".into(),
            series: vec![s(Phantom::ChestCt, 100, 512, 512, "Lung 3 mm", 3)],
        },
        StudySpec {
            seed: "demo-head-ct".into(),
            patient_id: "DEMO0002".into(),
            patient_name: "Okafor^Daniel".into(),
            birth_date: "19711102".into(),
            sex: "M".into(),
            accession: "DA0002".into(),
            description: "CT HEAD WITHOUT CONTRAST".into(),
            date: "20261003".into(),
            time: "221500".into(),
            series: vec![s(Phantom::HeadCt, 40, 512, 512, "Brain 5 mm", 2)],
        },
        StudySpec {
            seed: "demo-mr-brain".into(),
            patient_id: "DEMO0002".into(),
            patient_name: "Okafor^Daniel".into(),
            birth_date: "19711102".into(),
            sex: "M".into(),
            accession: "DA0003".into(),
            description: "MR BRAIN".into(),
            date: "20261005".into(),
            time: "140000".into(),
            series: vec![s(Phantom::MrBrain, 24, 256, 256, "Ax T2", 4)],
        },
        StudySpec {
            seed: "demo-cr-chest".into(),
            patient_id: "DEMO0003".into(),
            patient_name: "Nakamura^Yuki".into(),
            birth_date: "19900527".into(),
            sex: "F".into(),
            accession: "DA0004".into(),
            description: "XR CHEST PA".into(),
            date: "20261101".into(),
            time: "091000".into(),
            series: vec![s(Phantom::CrChest, 1, 1024, 880, "PA", 1)],
        },
        StudySpec {
            seed: "demo-pet-ct".into(),
            patient_id: "DEMO0004".into(),
            patient_name: "Garcia^Luis".into(),
            birth_date: "19650719".into(),
            sex: "M".into(),
            accession: "DA0005".into(),
            description: "PET-CT WHOLE BODY FDG".into(),
            date: "20261120".into(),
            time: "103000".into(),
            series: vec![
                s(Phantom::ChestCt, 80, 256, 256, "CT AC 3 mm", 2),
                s(Phantom::PetBody, 80, 128, 128, "PET AC", 3),
            ],
        },
    ]
}

/// A generated instance: its UIDs and a complete Part-10 file.
pub struct GeneratedInstance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub part10: Vec<u8>,
}

impl StudySpec {
    pub fn study_uid(&self) -> String {
        uid_from(&format!("{}/study", self.seed))
    }

    /// Number of instances the study has (a 4D test phantom has one per slice and phase).
    pub fn instance_count(&self) -> u64 {
        self.series.iter().map(test_phantoms::image_count).sum()
    }

    /// Generate every instance in order, handing each to `sink`.
    pub fn generate<E>(
        &self,
        mut sink: impl FnMut(GeneratedInstance) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<DicomError>,
    {
        let study_uid = self.study_uid();
        let for_uid = uid_from(&format!("{}/frame-of-reference", self.seed));
        for series in &self.series {
            let series_uid = uid_from(&format!("{}/series/{}", self.seed, series.number));
            let images = u32::try_from(test_phantoms::image_count(series)).unwrap_or(u32::MAX);
            for k in 0..images {
                let sop_uid = uid_from(&format!("{}/series/{}/{}", self.seed, series.number, k));
                let obj = self.instance(series, k, &study_uid, &series_uid, &sop_uid, &for_uid);
                let sop_class = sop_class_of(series.phantom);
                let ts = uids::EXPLICIT_VR_LITTLE_ENDIAN;
                let mut part10 = file_meta_bytes(sop_class, &sop_uid, ts, None)?;
                obj.write_dataset_with_ts(
                    &mut part10,
                    &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
                )
                .map_err(|e| DicomError::Write(e.to_string()))?;
                sink(GeneratedInstance {
                    sop_class_uid: sop_class.to_owned(),
                    sop_instance_uid: sop_uid,
                    study_uid: study_uid.clone(),
                    series_uid: series_uid.clone(),
                    part10,
                })?;
            }
        }
        Ok(())
    }

    fn instance(
        &self,
        series: &SeriesSpec,
        k: u32,
        study_uid: &str,
        series_uid: &str,
        sop_uid: &str,
        for_uid: &str,
    ) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        let mut put = |tag, vr, v: PrimitiveValue| {
            o.put(DataElement::new(tag, vr, v));
        };
        let modality = match series.phantom {
            Phantom::ChestCt | Phantom::HeadCt => "CT",
            Phantom::MrBrain => "MR",
            Phantom::CrChest => "CR",
            Phantom::PetBody => "PT",
            Phantom::Test(t) => t.modality(),
        };
        put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100".into());
        put(
            tags::IMAGE_TYPE,
            VR::CS,
            dicom_value!(Strs, ["ORIGINAL", "PRIMARY", "AXIAL"]),
        );
        put(
            tags::SOP_CLASS_UID,
            VR::UI,
            sop_class_of(series.phantom).into(),
        );
        put(tags::SOP_INSTANCE_UID, VR::UI, sop_uid.into());
        put(tags::STUDY_DATE, VR::DA, self.date.as_str().into());
        put(tags::SERIES_DATE, VR::DA, self.date.as_str().into());
        put(tags::STUDY_TIME, VR::TM, self.time.as_str().into());
        put(
            tags::ACCESSION_NUMBER,
            VR::SH,
            self.accession.as_str().into(),
        );
        put(tags::MODALITY, VR::CS, modality.into());
        put(tags::MANUFACTURER, VR::LO, "RADRIS Synthetic".into());
        put(
            tags::INSTITUTION_NAME,
            VR::LO,
            "RADRIS Demo Hospital".into(),
        );
        put(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            "Referrer^Rita".into(),
        );
        put(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            self.description.as_str().into(),
        );
        put(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            series.description.as_str().into(),
        );
        put(
            tags::PATIENT_NAME,
            VR::PN,
            self.patient_name.as_str().into(),
        );
        put(tags::PATIENT_ID, VR::LO, self.patient_id.as_str().into());
        put(
            tags::PATIENT_BIRTH_DATE,
            VR::DA,
            self.birth_date.as_str().into(),
        );
        put(tags::PATIENT_SEX, VR::CS, self.sex.as_str().into());
        let body_part = match series.phantom {
            Phantom::HeadCt | Phantom::MrBrain => "HEAD",
            Phantom::PetBody => "WHOLEBODY",
            _ => "CHEST",
        };
        put(tags::BODY_PART_EXAMINED, VR::CS, body_part.into());
        put(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.into());
        put(tags::SERIES_INSTANCE_UID, VR::UI, series_uid.into());
        put(tags::STUDY_ID, VR::SH, "1".into());
        put(
            tags::SERIES_NUMBER,
            VR::IS,
            series.number.to_string().into(),
        );
        put(tags::INSTANCE_NUMBER, VR::IS, (k + 1).to_string().into());
        put(tags::FRAME_OF_REFERENCE_UID, VR::UI, for_uid.into());
        put(tags::PATIENT_POSITION, VR::CS, "HFS".into());
        if let Phantom::Test(t) = series.phantom {
            test_phantoms::put_image(&mut o, t, series, k, &self.time);
            return o;
        }

        let (rows, cols) = (series.rows, series.cols);
        let fov = match series.phantom {
            Phantom::HeadCt | Phantom::MrBrain => 240.0,
            Phantom::CrChest => 430.0,
            _ => 380.0,
        };
        let spacing = fov / cols.max(1) as f64;
        let thickness = match series.phantom {
            Phantom::HeadCt => 5.0,
            Phantom::MrBrain => 5.0,
            Phantom::PetBody => 3.0,
            Phantom::ChestCt if series.slices <= 100 => 3.0,
            _ => 1.0,
        };
        let z = -(k as f64) * thickness;
        if series.phantom != Phantom::CrChest {
            put(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                dicom_value!(
                    Strs,
                    [
                        format!("{:.3}", -fov / 2.0),
                        format!("{:.3}", -fov / 2.0),
                        format!("{z:.3}")
                    ]
                ),
            );
            put(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                dicom_value!(Strs, ["1", "0", "0", "0", "1", "0"]),
            );
            put(tags::SLICE_THICKNESS, VR::DS, format!("{thickness}").into());
            put(tags::SLICE_LOCATION, VR::DS, format!("{z:.3}").into());
        }
        put(
            tags::PIXEL_SPACING,
            VR::DS,
            dicom_value!(Strs, [format!("{spacing:.6}"), format!("{spacing:.6}")]),
        );
        put(tags::SAMPLES_PER_PIXEL, VR::US, dicom_value!(U16, [1]));
        put(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2".into(),
        );
        put(tags::ROWS, VR::US, dicom_value!(U16, [rows]));
        put(tags::COLUMNS, VR::US, dicom_value!(U16, [cols]));
        put(tags::BITS_ALLOCATED, VR::US, dicom_value!(U16, [16]));
        let signed = matches!(series.phantom, Phantom::ChestCt | Phantom::HeadCt);
        put(
            tags::BITS_STORED,
            VR::US,
            dicom_value!(U16, [if signed { 16 } else { 12 }]),
        );
        put(
            tags::HIGH_BIT,
            VR::US,
            dicom_value!(U16, [if signed { 15 } else { 11 }]),
        );
        put(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            dicom_value!(U16, [signed as u16]),
        );
        let (center, width, slope) = match series.phantom {
            Phantom::ChestCt => ("-600", "1500", "1"),
            Phantom::HeadCt => ("40", "80", "1"),
            Phantom::MrBrain => ("600", "1200", "1"),
            Phantom::CrChest => ("2048", "4096", "1"),
            Phantom::PetBody => ("5", "10", "0.01"),
            Phantom::Test(_) => ("40", "400", "1"), // drawn by test_phantoms::put_image
        };
        if signed {
            put(tags::RESCALE_INTERCEPT, VR::DS, "0".into());
            put(tags::RESCALE_SLOPE, VR::DS, "1".into());
            put(tags::RESCALE_TYPE, VR::LO, "HU".into());
        } else if series.phantom == Phantom::PetBody {
            put(tags::RESCALE_INTERCEPT, VR::DS, "0".into());
            put(tags::RESCALE_SLOPE, VR::DS, slope.into());
            put(tags::UNITS, VR::CS, "GML".into());
        }
        put(tags::WINDOW_CENTER, VR::DS, center.into());
        put(tags::WINDOW_WIDTH, VR::DS, width.into());

        let rel = if series.slices > 1 {
            k as f64 / (series.slices - 1) as f64
        } else {
            0.5
        };
        let pixels = phantom_pixels(series.phantom, rows, cols, rel, &self.seed);
        let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(bytes.into()),
        ));
        o
    }
}

fn sop_class_of(p: Phantom) -> &'static str {
    match p {
        Phantom::ChestCt | Phantom::HeadCt => uids::CT_IMAGE_STORAGE,
        Phantom::MrBrain => uids::MR_IMAGE_STORAGE,
        Phantom::CrChest => uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
        Phantom::PetBody => uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
        Phantom::Test(t) if t.modality() == "MR" => uids::MR_IMAGE_STORAGE,
        Phantom::Test(_) => uids::CT_IMAGE_STORAGE,
    }
}

/// Small deterministic noise (xorshift), so images are not flat.
/// A small deterministic generator (xorshift64): phantom noise here, reproducible mutation
/// cases in the robustness tests. Not for anything that needs unpredictability.
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a seed (0 is replaced, xorshift must not start at 0).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-0.5, 0.5).
    fn centred(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }
}

fn inside(x: f64, y: f64, cx: f64, cy: f64, rx: f64, ry: f64) -> bool {
    let (dx, dy) = ((x - cx) / rx, (y - cy) / ry);
    dx * dx + dy * dy <= 1.0
}

/// The phantom's values at relative slice position `rel` (0 = top, 1 = bottom), in stored
/// units (HU for CT). Coordinates are normalised to [-1, 1].
fn phantom_pixels(p: Phantom, rows: u16, cols: u16, rel: f64, seed: &str) -> Vec<i16> {
    let mut noise = XorShift::new(
        u64::from_be_bytes({
            let d = Sha256::digest(format!("{seed}/{rel}").as_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[..8]);
            b
        }) | 1,
    );
    // nodules: (x, y, z, radius) in normalised units
    let nodules = [
        (-0.35, -0.1, 0.40, 0.05),
        (0.38, 0.05, 0.55, 0.035),
        (-0.25, 0.2, 0.70, 0.025),
    ];
    let mut out = Vec::with_capacity(rows as usize * cols as usize);
    for r in 0..rows {
        let y = (r as f64 + 0.5) / rows as f64 * 2.0 - 1.0;
        for c in 0..cols {
            let x = (c as f64 + 0.5) / cols as f64 * 2.0 - 1.0;
            let v: f64 = match p {
                Phantom::ChestCt => {
                    let mut v = -1000.0;
                    if inside(x, y, 0.0, 0.05, 0.85, 0.62) {
                        v = 40.0; // soft tissue
                        if inside(x, y, 0.0, 0.05, 0.8, 0.57)
                            && !inside(x, y, 0.0, 0.05, 0.74, 0.51)
                        {
                            v = 300.0; // ribs ring (simplified)
                        }
                        let lung_h = 0.35 + 0.15 * (1.0 - (rel - 0.5).abs() * 2.0);
                        if inside(x, y, -0.38, 0.0, 0.28, lung_h)
                            || inside(x, y, 0.38, 0.0, 0.28, lung_h)
                        {
                            v = -850.0;
                            for (nx, ny, nz, nr) in nodules {
                                let dz = (rel - nz) * 2.0;
                                let (dx, dy) = (x - nx, y - ny);
                                if dx * dx + dy * dy + dz * dz <= nr * nr {
                                    v = 30.0;
                                }
                            }
                        }
                        if inside(x, y, 0.0, 0.45, 0.09, 0.09) {
                            v = 700.0; // vertebra
                        }
                        if inside(x, y, 0.05, -0.05, 0.18, 0.2) {
                            v = 45.0; // heart
                        }
                    }
                    v + noise.centred() * 20.0
                }
                Phantom::HeadCt => {
                    let mut v = -1000.0;
                    if inside(x, y, 0.0, 0.0, 0.72, 0.86) {
                        v = 1000.0; // skull
                        if inside(x, y, 0.0, 0.0, 0.66, 0.8) {
                            v = if inside(x, y, 0.0, 0.0, 0.5, 0.62) {
                                35.0
                            } else {
                                28.0
                            };
                            if inside(x, y, -0.1, -0.05, 0.06, 0.2)
                                || inside(x, y, 0.1, -0.05, 0.06, 0.2)
                            {
                                v = 8.0; // ventricles
                            }
                        }
                    }
                    v * (1.0 - 0.3 * (rel - 0.5).abs()) + noise.centred() * 6.0
                }
                Phantom::MrBrain => {
                    let mut v = 0.0;
                    if inside(x, y, 0.0, 0.0, 0.7, 0.85) {
                        v = 300.0;
                        if inside(x, y, 0.0, 0.0, 0.64, 0.78) {
                            v = if inside(x, y, 0.0, 0.0, 0.48, 0.6) {
                                700.0
                            } else {
                                900.0
                            };
                            if inside(x, y, -0.1, -0.05, 0.06, 0.2)
                                || inside(x, y, 0.1, -0.05, 0.06, 0.2)
                            {
                                v = 1800.0; // CSF bright on T2
                            }
                        }
                    }
                    (v * (1.0 - 0.4 * (rel - 0.5).abs()) + noise.centred() * 30.0).max(0.0)
                }
                Phantom::CrChest => {
                    let mut v = 3600.0;
                    if inside(x, y, 0.0, 0.1, 0.85, 0.95) {
                        v = 2200.0;
                        if inside(x, y, -0.38, 0.0, 0.3, 0.65) || inside(x, y, 0.38, 0.0, 0.3, 0.65)
                        {
                            v = 900.0;
                        }
                        if inside(x, y, 0.12, 0.25, 0.25, 0.3) {
                            v = 2000.0;
                        }
                        if x.abs() < 0.05 {
                            v = 2600.0;
                        }
                    }
                    (v + noise.centred() * 60.0).clamp(0.0, 4095.0)
                }
                Phantom::PetBody => {
                    let mut v = 0.0;
                    if inside(x, y, 0.0, 0.05, 0.85, 0.62) {
                        v = 100.0;
                        if inside(x, y, 0.05, -0.05, 0.18, 0.2) {
                            v = 400.0;
                        }
                        for (nx, ny, nz, nr) in nodules {
                            let dz = (rel - nz) * 2.0;
                            let (dx, dy) = (x - nx, y - ny);
                            if dx * dx + dy * dy + dz * dz <= (nr * 1.5) * (nr * 1.5) {
                                v = 900.0;
                            }
                        }
                    }
                    (v + noise.centred() * 15.0).max(0.0)
                }
                // drawn by test_phantoms::put_image, never here
                Phantom::Test(_) => 0.0,
            };
            out.push(v.round().clamp(i16::MIN as f64, i16::MAX as f64) as i16);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_valid_and_deterministic() {
        let a = uid_from("x");
        assert_eq!(a, uid_from("x"));
        assert_ne!(a, uid_from("y"));
        assert!(radris_core::Uid::parse(&a).is_ok());
    }

    #[test]
    fn generates_parseable_instances() {
        let spec = ct_study(3, 64, 64, "t");
        let mut n = 0;
        spec.generate(|g| {
            let obj = dicom_object::OpenFileOptions::new()
                .from_reader(&g.part10[128..])
                .map_err(|e| DicomError::Parse(e.to_string()))?;
            let attrs = crate::attrs::IndexAttributes::from_header(&obj)?;
            assert_eq!(attrs.instance.sop_instance_uid.as_str(), g.sop_instance_uid);
            assert_eq!(attrs.series.modality, "CT");
            n += 1;
            Ok::<(), DicomError>(())
        })
        .unwrap();
        assert_eq!(n, 3);
    }

    /// The demo phantoms are pinned byte for byte: `radris demo`, the archive tests and
    /// benchmarks rely on them. Update the digest only for a deliberate change of the demo.
    #[test]
    fn demo_phantom_output_is_pinned() {
        let mut hasher = Sha256::new();
        for (i, phantom) in [
            Phantom::ChestCt,
            Phantom::HeadCt,
            Phantom::MrBrain,
            Phantom::CrChest,
            Phantom::PetBody,
        ]
        .into_iter()
        .enumerate()
        {
            let mut spec = ct_study(3, 24, 20, &format!("pin-{i}"));
            spec.series[0].phantom = phantom;
            spec.series.push(SeriesSpec {
                phantom,
                slices: 120,
                rows: 4,
                cols: 6,
                description: "thin".into(),
                number: 7,
            });
            spec.generate(|g| {
                hasher.update(g.sop_class_uid.as_bytes());
                hasher.update(g.sop_instance_uid.as_bytes());
                hasher.update(g.study_uid.as_bytes());
                hasher.update(g.series_uid.as_bytes());
                hasher.update(&g.part10);
                Ok::<(), DicomError>(())
            })
            .unwrap();
        }
        let digest = hex::encode(hasher.finalize());
        assert_eq!(
            digest,
            "83b435e2692075462f90f955ad013a21aae0b3f04dc2a0aa2fe9bd7e93d55462"
        );
    }

    #[test]
    fn demo_has_the_promised_studies() {
        let demo = demo_studies();
        assert_eq!(demo[0].series[0].slices, 300);
        // the chest CT has a prior of the same patient, earlier
        assert_eq!(demo[1].patient_id, demo[0].patient_id);
        assert!(demo[1].date < demo[0].date);
        let kinds: Vec<Phantom> = demo
            .iter()
            .flat_map(|s| s.series.iter().map(|x| x.phantom))
            .collect();
        for k in [
            Phantom::ChestCt,
            Phantom::HeadCt,
            Phantom::MrBrain,
            Phantom::CrChest,
            Phantom::PetBody,
        ] {
            assert!(kinds.contains(&k));
        }
    }
}
