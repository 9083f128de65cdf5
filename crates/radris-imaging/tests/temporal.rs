//! 4D: phase grouping from hand-made frames, per-phase volumes, cine and time-intensity
//! curves against an analytic (gamma-variate) enhancement.

use radris_imaging::dicom::SeriesFrame;
use radris_imaging::mpr::Plane;
use radris_imaging::quant::Mask;
use radris_imaging::temporal::{
    PhaseKey, TemporalError, TimePoint, build_phases, enhancement, group_phases, peak_enhancement,
    time_intensity_curve, time_to_peak_s,
};
use radris_imaging::volume::{BuildOptions, Slice, SlicePixels};

const COLS: usize = 8;
const ROWS: usize = 7;

/// Temporal attributes of a hand-made frame.
#[derive(Clone, Copy, Default)]
struct Keys {
    temporal_position: Option<i64>,
    trigger_time_ms: Option<f64>,
    acquisition_seconds: Option<f64>,
}

/// A frame at `z` mm (axial, 1 mm pixels) whose pixel (c, r) is `value(c, r)`.
fn frame(z: f64, keys: Keys, value: impl Fn(usize, usize) -> f32) -> SeriesFrame {
    let mut pixels = Vec::with_capacity(COLS * ROWS);
    for r in 0..ROWS {
        for c in 0..COLS {
            pixels.push(value(c, r));
        }
    }
    SeriesFrame {
        slice: Slice {
            position: [-3.5, -3.0, z],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [1.0, 1.0],
            rows: ROWS,
            cols: COLS,
            pixels: SlicePixels::F32(pixels),
            slope: 1.0,
            intercept: 0.0,
            frame_of_reference: "1.2.3".into(),
        },
        sop_instance_uid: format!("1.2.3.{z}"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.4".into(),
        frame: 1,
        instance_number: None,
        temporal_position: keys.temporal_position,
        trigger_time_ms: keys.trigger_time_ms,
        acquisition_seconds: keys.acquisition_seconds,
        temporal_positions: None,
    }
}

/// Deterministic shuffle (Fisher–Yates with an LCG).
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut s = seed;
    for i in (1..v.len()).rev() {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        v.swap(i, (s >> 33) as usize % (i + 1));
    }
}

/// `phases × slices` frames; `keys(phase, slice)`; pixel value = 1000·phase + slice.
fn series(phases: usize, slices: usize, keys: impl Fn(usize, usize) -> Keys) -> Vec<SeriesFrame> {
    let mut v = Vec::new();
    for p in 0..phases {
        for k in 0..slices {
            let value = (1000 * p + k) as f32;
            v.push(frame(2.5 * k as f64, keys(p, k), move |_, _| value));
        }
    }
    shuffle(&mut v, 7);
    v
}

fn first_value(f: &SeriesFrame) -> f32 {
    match &f.slice.pixels {
        SlicePixels::F32(v) => v[0],
        _ => f32::NAN,
    }
}

#[test]
fn groups_by_temporal_position_in_any_order() {
    let frames = series(3, 4, |p, k| Keys {
        temporal_position: Some(p as i64 + 1),
        // Trigger times that jitter per slice: temporal position still decides.
        trigger_time_ms: Some(300.0 * p as f64 + k as f64),
        acquisition_seconds: None,
    });
    let phases = group_phases(frames).expect("phases");
    assert_eq!(phases.len(), 3);
    for (p, phase) in phases.iter().enumerate() {
        assert_eq!(phase.key, PhaseKey::TemporalPosition(p as i64 + 1));
        assert!(
            (phase.time_s - 0.3 * p as f64).abs() < 1e-9,
            "{}",
            phase.time_s
        );
        let values: Vec<f32> = phase.frames.iter().map(first_value).collect();
        let expected: Vec<f32> = (0..4).map(|k| (1000 * p + k) as f32).collect();
        assert_eq!(values, expected, "phase {p} sorted along the normal");
    }
}

#[test]
fn groups_by_trigger_time_with_per_slice_jitter() {
    let frames = series(5, 3, |p, k| Keys {
        trigger_time_ms: Some(45.0 * p as f64 + [0.0, 1.5, -0.7][k] + 10.0),
        ..Keys::default()
    });
    let phases = group_phases(frames).expect("phases");
    assert_eq!(phases.len(), 5);
    for (p, phase) in phases.iter().enumerate() {
        let earliest = 45.0 * p as f64 + 10.0 - 0.7;
        assert_eq!(
            phase.key,
            PhaseKey::TriggerTime((earliest * 100.0f64).round() / 100.0)
        );
        assert!((phase.time_s - 0.045 * p as f64).abs() < 1e-9);
        assert!(
            phase
                .frames
                .iter()
                .all(|f| first_value(f) as usize / 1000 == p)
        );
    }
}

#[test]
fn groups_by_acquisition_time_when_slices_are_acquired_in_turn() {
    // Dynamic series: each slice acquired 0.4 s after the previous, a phase every 12 s.
    let frames = series(4, 5, |p, k| Keys {
        acquisition_seconds: Some(36_000.0 + 12.0 * p as f64 + 0.4 * k as f64),
        ..Keys::default()
    });
    let phases = group_phases(frames).expect("phases");
    assert_eq!(phases.len(), 4);
    for (p, phase) in phases.iter().enumerate() {
        assert_eq!(
            phase.key,
            PhaseKey::AcquisitionTime(36_000.0 + 12.0 * p as f64)
        );
        assert!((phase.time_s - 12.0 * p as f64).abs() < 1e-9);
        assert_eq!(phase.frames.len(), 5);
        assert!(
            phase
                .frames
                .iter()
                .all(|f| first_value(f) as usize / 1000 == p)
        );
    }
}

#[test]
fn a_series_without_repeated_positions_is_one_phase() {
    let frames = series(1, 6, |_, k| Keys {
        temporal_position: Some(1),
        acquisition_seconds: Some(100.0 + k as f64),
        ..Keys::default()
    });
    let phases = group_phases(frames).expect("phases");
    assert_eq!(phases.len(), 1);
    assert_eq!(phases[0].key, PhaseKey::TemporalPosition(1));
    assert_eq!(phases[0].time_s, 0.0);
    assert_eq!(phases[0].frames.len(), 6);

    let plain = series(1, 3, |_, _| Keys::default());
    let phases = group_phases(plain).expect("phases");
    assert_eq!(phases[0].key, PhaseKey::Single);
}

#[test]
fn inconsistent_or_ambiguous_groups_are_refused() {
    // Temporal positions: phase 2 lacks a slice.
    let mut frames = series(3, 4, |p, _| Keys {
        temporal_position: Some(p as i64 + 1),
        ..Keys::default()
    });
    let drop = frames
        .iter()
        .position(|f| f.temporal_position == Some(2))
        .expect("a phase-2 frame");
    frames.remove(drop);
    let err = group_phases(frames).unwrap_err();
    assert!(
        matches!(
            err,
            TemporalError::InconsistentPhases {
                phase: 1,
                key: PhaseKey::TemporalPosition(2),
                slices: 3,
                expected: 4
            }
        ),
        "{err}"
    );

    // Trigger times: one position has an extra frame.
    let mut frames = series(3, 4, |p, _| Keys {
        trigger_time_ms: Some(100.0 * p as f64),
        ..Keys::default()
    });
    frames.push(frame(
        5.0,
        Keys {
            trigger_time_ms: Some(350.0),
            ..Keys::default()
        },
        |_, _| 0.0,
    ));
    let err = group_phases(frames).unwrap_err();
    assert!(
        matches!(
            err,
            TemporalError::InconsistentPositions {
                frames: 4,
                expected: 3,
                ..
            }
        ),
        "{err}"
    );

    // Positions repeat but nothing tells the frames apart.
    let frames = series(2, 3, |_, _| Keys {
        temporal_position: Some(1),
        ..Keys::default()
    });
    let err = group_phases(frames).unwrap_err();
    assert!(
        matches!(err, TemporalError::NoTemporalKey { frames: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("2 frames"), "{err}");

    assert!(matches!(
        group_phases(Vec::new()),
        Err(TemporalError::Empty)
    ));
}

#[test]
fn phases_on_different_grids_are_refused() {
    let mut frames = series(2, 3, |p, _| Keys {
        temporal_position: Some(p as i64),
        ..Keys::default()
    });
    for f in frames.iter_mut().filter(|f| f.temporal_position == Some(1)) {
        f.slice.pixel_spacing = [1.1, 1.1];
    }
    let err = build_phases(frames, &BuildOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            TemporalError::GeometryMismatch {
                phase: 1,
                what: "voxel spacing"
            }
        ),
        "{err}"
    );
}

/// Gamma-variate bolus: `K·(t − t0)^α·e^{−(t − t0)/β}` after `t0`, peak `PEAK` at
/// `t0 + αβ`.
const T0: f64 = 6.0;
const ALPHA: f64 = 3.0;
const BETA: f64 = 3.5;
const PEAK: f64 = 400.0;

fn gamma_variate(t: f64) -> f64 {
    if t <= T0 {
        return 0.0;
    }
    let k = PEAK / ((ALPHA * BETA).powf(ALPHA) * (-ALPHA).exp());
    k * (t - T0).powf(ALPHA) * (-(t - T0) / BETA).exp()
}

/// Tissue before contrast: a ramp, so the region's SD is known and non-zero.
fn base(c: usize, r: usize, k: usize) -> f64 {
    100.0 + 2.0 * c as f64 + 3.0 * r as f64 + k as f64
}

fn in_roi(c: usize, r: usize, k: usize) -> bool {
    (2..6).contains(&c) && (2..5).contains(&r) && (1..3).contains(&k)
}

#[test]
fn time_intensity_curve_recovers_a_gamma_variate_and_its_time_to_peak() {
    // 31 phases, one every 2 s; 4 slices; TP keys and per-slice acquisition times.
    let (phases, slices) = (31, 4);
    let mut frames = Vec::new();
    for p in 0..phases {
        let t = 2.0 * p as f64;
        let enh = gamma_variate(t);
        for k in 0..slices {
            let keys = Keys {
                temporal_position: Some(p as i64 + 1),
                acquisition_seconds: Some(50_000.0 + t + 0.25 * k as f64),
                ..Keys::default()
            };
            frames.push(frame(3.0 * k as f64, keys, move |c, r| {
                let roi = if in_roi(c, r, k) { enh } else { 0.1 * enh };
                (base(c, r, k) + roi) as f32
            }));
        }
    }
    shuffle(&mut frames, 99);
    let v = build_phases(frames, &BuildOptions::default()).expect("4D volume");
    assert_eq!(v.len(), phases);
    let dims = v.phase(0).expect("phase 0").dims;
    assert_eq!(dims, [COLS, ROWS, slices]);
    assert_eq!(v.key(3), Some(PhaseKey::TemporalPosition(4)));
    assert!((v.time_s(30).expect("time") - 60.0).abs() < 1e-9);

    let mut mask = Mask::new(dims);
    let mut roi_base = Vec::new();
    for k in 0..slices {
        for r in 0..ROWS {
            for c in 0..COLS {
                if in_roi(c, r, k) {
                    mask.set(c + COLS * (r + ROWS * k), true);
                    roi_base.push(base(c, r, k));
                }
            }
        }
    }
    let n = roi_base.len() as f64;
    let base_mean = roi_base.iter().sum::<f64>() / n;
    let base_sd = (roi_base
        .iter()
        .map(|b| (b - base_mean).powi(2))
        .sum::<f64>()
        / (n - 1.0))
        .sqrt();

    let curve = time_intensity_curve(&v, &mask).expect("curve");
    assert_eq!(curve.len(), phases);
    for (p, point) in curve.iter().enumerate() {
        let t = 2.0 * p as f64;
        let expected = base_mean + gamma_variate(t);
        assert!((point.time_s - t).abs() < 1e-9);
        assert_eq!(point.count, roi_base.len());
        assert!(
            (point.mean - expected).abs() < 1e-3,
            "t {t}: {} vs {expected}",
            point.mean
        );
        assert!((point.sd - base_sd).abs() < 1e-3);
        let lo = roi_base.iter().copied().fold(f64::INFINITY, f64::min) + gamma_variate(t);
        assert!((point.min - lo).abs() < 1e-3);
    }

    let e = enhancement(&curve, 3).expect("enhancement");
    let true_ttp = T0 + ALPHA * BETA; // 16.5 s
    assert_eq!(e.time_to_peak_s, 16.0);
    assert!(
        (e.time_to_peak_interpolated_s - true_ttp).abs() < 0.3,
        "{}",
        e.time_to_peak_interpolated_s
    );
    assert!((e.baseline - base_mean).abs() < 1e-3);
    assert!((e.peak_enhancement - gamma_variate(16.0)).abs() < 1e-2);
    assert!(e.peak_enhancement > 0.99 * PEAK);
    let pct = e.relative_enhancement_pct.expect("non-zero baseline");
    assert!((pct - 100.0 * e.peak_enhancement / base_mean).abs() < 1e-9);
    assert!(e.max_upslope_per_s > 0.0);
    assert_eq!(
        peak_enhancement(&curve, 3).expect("peak"),
        e.peak_enhancement
    );
    assert_eq!(
        time_to_peak_s(&curve).expect("ttp"),
        e.time_to_peak_interpolated_s
    );

    // Cine: one image per phase; the ROI's centre follows the curve.
    let plane = Plane::axial([0.0, 0.0, 3.0], COLS, ROWS, 1.0);
    let cine = v.cine(&plane).expect("cine");
    assert_eq!(cine.len(), phases);
    let at_peak = cine[8].get(4, 3).expect("pixel");
    let expected = base(4, 3, 1) + gamma_variate(16.0);
    assert!(
        (f64::from(at_peak) - expected).abs() < 1e-2,
        "{at_peak} vs {expected}"
    );
}

#[test]
fn curve_inputs_are_checked() {
    let frames = series(2, 3, |p, _| Keys {
        temporal_position: Some(p as i64),
        ..Keys::default()
    });
    let v = build_phases(frames, &BuildOptions::default()).expect("4D volume");
    let dims = v.phase(0).expect("phase").dims;
    assert!(matches!(
        time_intensity_curve(&v, &Mask::new(dims)),
        Err(TemporalError::EmptyMask)
    ));
    let mut wrong = Mask::new([2, 2, 2]);
    wrong.set(0, true);
    assert!(matches!(
        time_intensity_curve(&v, &wrong),
        Err(TemporalError::Quant { phase: 0, .. })
    ));
    let point = TimePoint {
        time_s: 0.0,
        mean: 1.0,
        sd: 0.0,
        min: 1.0,
        max: 1.0,
        count: 1,
    };
    assert!(matches!(
        enhancement(&[point], 0),
        Err(TemporalError::InvalidParameter(_))
    ));
    assert!(matches!(enhancement(&[], 1), Err(TemporalError::Empty)));
    let e = enhancement(&[point], 1).expect("one point");
    assert_eq!(
        (e.peak_index, e.time_to_peak_s, e.max_upslope_per_s),
        (0, 0.0, 0.0)
    );
}
