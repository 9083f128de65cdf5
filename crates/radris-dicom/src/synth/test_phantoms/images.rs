//! Test phantoms as DICOM images: plane geometry, image pixel module, rescale, temporal keys
//! and the box-averaged voxels of [`TestPhantom::voxel_value`].

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::{AXIAL_COL, AXIAL_ROW, TestPhantom, dot};
use crate::synth::{Phantom, SeriesSpec};

/// How a phantom's values are stored.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Storage {
    signed: bool,
    bits_stored: u16,
    /// `Some((slope, intercept))` writes Rescale Slope/Intercept/Type.
    rescale: Option<(f64, f64)>,
    window: (f64, f64),
}

impl TestPhantom {
    fn storage(self) -> Storage {
        match self {
            // the common unsigned CT encoding: stored = HU + 1024
            TestPhantom::Sphere => Storage {
                signed: false,
                bits_stored: 12,
                rescale: Some((1.0, -1024.0)),
                window: (100.0, 400.0),
            },
            TestPhantom::RegistrationMr => Storage {
                signed: false,
                bits_stored: 12,
                rescale: None,
                window: (800.0, 1600.0),
            },
            TestPhantom::Calcium => Storage {
                signed: true,
                bits_stored: 16,
                rescale: Some((1.0, 0.0)),
                window: (300.0, 800.0),
            },
            _ => Storage {
                signed: true,
                bits_stored: 16,
                rescale: Some((1.0, 0.0)),
                window: (40.0, 400.0),
            },
        }
    }
}

/// Number of images of a series: slice positions × temporal positions.
pub(in crate::synth) fn image_count(series: &SeriesSpec) -> u64 {
    match series.phantom {
        Phantom::Test(t) => u64::from(series.slices) * u64::from(t.phases()),
        _ => u64::from(series.slices),
    }
}

/// `HHMMSS` plus `seconds`, as `HHMMSS.FFFFFF` (within the day), `None` if unparsable.
fn time_plus(time: &str, seconds: f64) -> Option<String> {
    let field = |r: std::ops::Range<usize>| time.get(r)?.parse::<u32>().ok();
    let base = f64::from(field(0..2)? * 3600 + field(2..4)? * 60 + field(4..6)?);
    let t = (base + seconds).rem_euclid(86_400.0);
    let whole = t.floor() as u32;
    let micros = ((t - t.floor()) * 1e6).round() as u32;
    Some(format!(
        "{:02}{:02}{:02}.{:06}",
        whole / 3600,
        whole / 60 % 60,
        whole % 60,
        micros.min(999_999)
    ))
}

fn ds3(v: [f64; 3], decimals: usize) -> PrimitiveValue {
    dicom_value!(
        Strs,
        [
            format!("{:.*}", decimals, v[0]),
            format!("{:.*}", decimals, v[1]),
            format!("{:.*}", decimals, v[2])
        ]
    )
}

/// Image `k` (phase-major: phase `k / slices`, slice position `k % slices`) of a test-phantom
/// series: plane geometry, image pixel module, rescale, temporal keys and pixel data. The
/// patient, study and series attributes are already in `o`.
pub(in crate::synth) fn put_image(
    o: &mut InMemDicomObject,
    t: TestPhantom,
    series: &SeriesSpec,
    k: u32,
    study_time: &str,
) {
    let mut put = |tag, vr, v: PrimitiveValue| {
        o.put(DataElement::new(tag, vr, v));
    };
    let grid = t.grid(series.slices, series.rows, series.cols);
    let positions = series.slices.max(1);
    let (phase, slice) = (k / positions, k % positions);
    let axial = grid.row_dir == AXIAL_ROW && grid.col_dir == AXIAL_COL;
    put(
        tags::IMAGE_TYPE,
        VR::CS,
        dicom_value!(
            Strs,
            ["ORIGINAL", "PRIMARY", if axial { "AXIAL" } else { "OTHER" }]
        ),
    );
    let position = grid.image_position(slice);
    put(tags::IMAGE_POSITION_PATIENT, VR::DS, ds3(position, 4));
    let (r, c) = (grid.row_dir, grid.col_dir);
    put(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        dicom_value!(
            Strs,
            [
                format!("{}", r[0]),
                format!("{}", r[1]),
                format!("{}", r[2]),
                format!("{}", c[0]),
                format!("{}", c[1]),
                format!("{}", c[2])
            ]
        ),
    );
    let dz = format!("{}", grid.slice_spacing_mm);
    put(tags::SLICE_THICKNESS, VR::DS, dz.as_str().into());
    put(tags::SPACING_BETWEEN_SLICES, VR::DS, dz.as_str().into());
    put(
        tags::SLICE_LOCATION,
        VR::DS,
        format!("{:.4}", dot(position, grid.normal())).into(),
    );
    put(
        tags::PIXEL_SPACING,
        VR::DS,
        dicom_value!(
            Strs,
            [
                format!("{}", grid.pixel_spacing[0]),
                format!("{}", grid.pixel_spacing[1])
            ]
        ),
    );
    let st = t.storage();
    put(tags::SAMPLES_PER_PIXEL, VR::US, dicom_value!(U16, [1]));
    put(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    put(tags::ROWS, VR::US, dicom_value!(U16, [series.rows]));
    put(tags::COLUMNS, VR::US, dicom_value!(U16, [series.cols]));
    put(tags::BITS_ALLOCATED, VR::US, dicom_value!(U16, [16]));
    put(
        tags::BITS_STORED,
        VR::US,
        dicom_value!(U16, [st.bits_stored]),
    );
    put(
        tags::HIGH_BIT,
        VR::US,
        dicom_value!(U16, [st.bits_stored - 1]),
    );
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        dicom_value!(U16, [u16::from(st.signed)]),
    );
    let (slope, intercept) = st.rescale.unwrap_or((1.0, 0.0));
    if st.rescale.is_some() {
        put(
            tags::RESCALE_INTERCEPT,
            VR::DS,
            format!("{intercept}").into(),
        );
        put(tags::RESCALE_SLOPE, VR::DS, format!("{slope}").into());
        put(tags::RESCALE_TYPE, VR::LO, "HU".into());
    }
    put(
        tags::WINDOW_CENTER,
        VR::DS,
        format!("{}", st.window.0).into(),
    );
    put(
        tags::WINDOW_WIDTH,
        VR::DS,
        format!("{}", st.window.1).into(),
    );
    let time_s = t.time_s(phase);
    if t.phases() > 1 {
        put(
            tags::TEMPORAL_POSITION_IDENTIFIER,
            VR::IS,
            (phase + 1).to_string().into(),
        );
        put(
            tags::NUMBER_OF_TEMPORAL_POSITIONS,
            VR::IS,
            t.phases().to_string().into(),
        );
        put(
            tags::TRIGGER_TIME,
            VR::DS,
            format!("{}", time_s * 1000.0).into(),
        );
    }
    if let Some(acquired) = time_plus(study_time, time_s) {
        put(tags::ACQUISITION_TIME, VR::TM, acquired.into());
    }

    let (lo, hi) = if st.signed {
        (f64::from(i16::MIN), f64::from(i16::MAX))
    } else {
        (0.0, f64::from((1u32 << st.bits_stored) - 1))
    };
    let mut bytes = Vec::with_capacity(usize::from(series.rows) * usize::from(series.cols) * 2);
    for row in 0..series.rows {
        for col in 0..series.cols {
            let v = t.voxel_value(&grid, col, row, slice, time_s);
            let stored = ((v - intercept) / slope).round().clamp(lo, hi);
            let word = if st.signed {
                (stored as i16).to_le_bytes()
            } else {
                (stored as u16).to_le_bytes()
            };
            bytes.extend_from_slice(&word);
        }
    }
    o.remove_element(tags::BODY_PART_EXAMINED);
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(bytes.into()),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_add_within_the_day() {
        assert_eq!(time_plus("120000", 2.5).as_deref(), Some("120002.500000"));
        assert_eq!(time_plus("235959", 2.0).as_deref(), Some("000001.000000"));
        assert_eq!(time_plus("12", 1.0), None);
    }
}
