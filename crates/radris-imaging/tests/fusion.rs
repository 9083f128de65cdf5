//! Fusion and rigid registration on analytic phantoms with a known transform.

use std::time::Instant;

use radris_imaging::fusion::{ColorMap, Fill, FusionError, fuse, resample_to, resample_to_with};
use radris_imaging::mpr::{Image, Plane, reslice};
use radris_imaging::register::{
    DegreesOfFreedom, InitialTransform, RegisterError, RegisterOptions, RigidTransform,
    register_rigid,
};
use radris_imaging::volume::{Volume, Voxels};

const ID: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
/// Where the phantom's object centre sits in the fixed patient space.
const O: [f64; 3] = [10.0, -5.0, 20.0];

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = sub(a, b);
    (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
}

/// Soft (1 mm logistic) indicator of an ellipsoid.
fn inside(p: [f64; 3], c: [f64; 3], r: [f64; 3]) -> f64 {
    let q = [
        (p[0] - c[0]) / r[0],
        (p[1] - c[1]) / r[1],
        (p[2] - c[2]) / r[2],
    ];
    let s = ((q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt() - 1.0) * r[0].min(r[1]).min(r[2]);
    1.0 / (1.0 + (s / 1.0).exp())
}

/// A CT-like asymmetric phantom in object coordinates (mm from its centre): a body, a
/// bright insert, a dark insert and a "spine".
fn phantom(p: [f64; 3]) -> f64 {
    let body = inside(p, [0.0; 3], [24.0, 18.0, 15.0]);
    let a = inside(p, [8.0, 4.0, -3.0], [6.0, 6.0, 6.0]);
    let b = inside(p, [-9.0, -5.0, 4.0], [5.0, 3.5, 7.0]);
    let spine = inside([p[0], p[1], 0.0], [0.0, 10.0, 0.0], [4.0, 4.0, 1e9]);
    100.0 * body + 200.0 * a - 150.0 * b + 150.0 * spine * body
}

/// A non-monotonic remapping ("another modality").
fn remap(v: f64) -> f64 {
    const LUT: [(f64, f64); 6] = [
        (-60.0, 150.0),
        (0.0, 20.0),
        (50.0, 180.0),
        (100.0, 60.0),
        (200.0, 250.0),
        (320.0, 90.0),
    ];
    let v = v.clamp(LUT[0].0, LUT[5].0);
    let i = LUT.windows(2).position(|w| v <= w[1].0).unwrap_or(4);
    let ((x0, y0), (x1, y1)) = (LUT[i], LUT[i + 1]);
    y0 + (y1 - y0) * (v - x0) / (x1 - x0)
}

/// A grid of `dims` × `spacing` centred at `centre`.
fn grid(
    dims: [usize; 3],
    spacing: [f64; 3],
    centre: [f64; 3],
    f: impl Fn([f64; 3]) -> f32,
) -> Volume {
    let origin = std::array::from_fn(|a| centre[a] - 0.5 * (dims[a] as f64 - 1.0) * spacing[a]);
    Volume::from_fn(dims, spacing, origin, ID, f)
}

fn fixed_volume() -> Volume {
    grid([40, 40, 36], [1.5; 3], O, |p| phantom(sub(p, O)) as f32)
}

/// The phantom seen through `truth` (fixed → moving): `moving(truth(x)) = fixed(x)`, on a
/// different grid around the moved object, values passed through `map`.
fn moving_volume(truth: &RigidTransform, map: fn(f64) -> f64) -> Volume {
    let inv = truth.inverse();
    grid([34, 34, 30], [1.8, 1.8, 2.0], truth.apply(O), move |p| {
        map(phantom(sub(inv.apply(p), O))) as f32
    })
}

/// Landmarks around the object: its centre and the corners of a 40 × 30 × 24 mm box.
fn landmarks() -> Vec<[f64; 3]> {
    let mut v = vec![O];
    for sx in [-20.0, 20.0] {
        for sy in [-15.0, 15.0] {
            for sz in [-12.0, 12.0] {
                v.push([O[0] + sx, O[1] + sy, O[2] + sz]);
            }
        }
    }
    v
}

/// Registers and returns the largest landmark error (mm).
fn check_registration(truth: RigidTransform, map: fn(f64) -> f64, label: &str) -> f64 {
    let fixed = fixed_volume();
    let moving = moving_volume(&truth, map);
    let opts = RegisterOptions::default();
    let started = Instant::now();
    let reg = register_rigid(&fixed, &moving, &opts).expect("registration");
    let elapsed = started.elapsed();
    let worst = landmarks()
        .into_iter()
        .map(|l| dist(reg.transform.apply(l), truth.apply(l)))
        .fold(0.0, f64::max);
    eprintln!(
        "{label}: worst landmark error {worst:.3} mm, translation {:?}, rotation {:.3}°, \
         MI {:.3}, {} evaluations, {:.2?}",
        reg.transform.translation,
        reg.transform.rotation_angle_deg(),
        reg.mutual_information,
        reg.iterations,
        elapsed
    );
    worst
}

#[test]
fn registration_recovers_a_known_translation_within_1_mm() {
    let truth = RigidTransform::translation([7.3, -4.1, 11.6]);
    let worst = check_registration(truth, |v| v, "translation");
    assert!(worst < 1.0, "landmark error {worst} mm");
}

#[test]
fn registration_recovers_translation_and_rotation_within_1_mm_at_landmarks() {
    let truth = RigidTransform::from_euler(
        [
            2.0f64.to_radians(),
            -3.0f64.to_radians(),
            5.0f64.to_radians(),
        ],
        O,
        [7.3, -4.1, 11.6],
    );
    let worst = check_registration(truth, |v| v, "rotation");
    assert!(worst < 1.0, "landmark error {worst} mm");
}

#[test]
fn registration_works_across_modalities() {
    let truth = RigidTransform::from_euler([0.0, 0.0, 5.0f64.to_radians()], O, [-6.2, 9.5, -8.8]);
    let worst = check_registration(truth, remap, "cross-modality");
    assert!(worst < 1.0, "landmark error {worst} mm");
}

#[test]
fn translation_only_keeps_the_initial_rotation() {
    let fixed = fixed_volume();
    let truth = RigidTransform::translation([3.0, 2.0, -4.0]);
    let moving = moving_volume(&truth, |v| v);
    let opts = RegisterOptions {
        samples: 3000,
        levels: 2,
        degrees_of_freedom: DegreesOfFreedom::TranslationOnly,
        initial: InitialTransform::Identity,
        ..Default::default()
    };
    let reg = register_rigid(&fixed, &moving, &opts).expect("registration");
    assert_eq!(reg.transform.rotation, RigidTransform::identity().rotation);
    let err = dist(reg.transform.translation, truth.translation);
    assert!(err < 0.5, "{err} mm: {:?}", reg.transform);
}

#[test]
fn degenerate_inputs_are_refused() {
    let fixed = fixed_volume();
    let flat = grid([16, 16, 16], [2.0; 3], O, |_| 42.0);
    let opts = RegisterOptions::default();
    assert!(matches!(
        register_rigid(&fixed, &flat, &opts),
        Err(RegisterError::ConstantImage { value, .. }) if value == 42.0
    ));
    // Far away and not allowed to look for it: no overlap.
    let far = grid([16, 16, 16], [2.0; 3], [500.0, 0.0, 0.0], |p| p[0] as f32);
    let opts_identity = RegisterOptions {
        initial: InitialTransform::Identity,
        ..Default::default()
    };
    let err = register_rigid(&fixed, &far, &opts_identity).unwrap_err();
    assert!(
        matches!(err, RegisterError::InsufficientOverlap { valid: 0, .. }),
        "{err}"
    );
    let mut broken = fixed.clone();
    broken.voxels = Voxels::F32(vec![0.0; 10]);
    assert!(matches!(
        register_rigid(&broken, &fixed, &opts),
        Err(RegisterError::BadVolume { .. })
    ));
    let bad_bins = RegisterOptions {
        bins: 2,
        ..Default::default()
    };
    assert!(matches!(
        register_rigid(&fixed, &fixed, &bad_bins),
        Err(RegisterError::InvalidOption(_))
    ));
}

#[test]
fn transforms_compose_and_invert() {
    let a = RigidTransform::from_euler([0.1, -0.2, 0.3], [5.0, 6.0, 7.0], [1.0, 2.0, 3.0]);
    let b = RigidTransform::from_euler([-0.3, 0.05, 0.2], [0.0; 3], [-4.0, 0.5, 9.0]);
    let p = [12.0, -3.0, 8.0];
    let ab = a.compose(&b);
    assert!(dist(ab.apply(p), a.apply(b.apply(p))) < 1e-9);
    assert!(dist(a.inverse().apply(a.apply(p)), p) < 1e-9);
    // Rotation about the centre leaves the centre where the translation puts it.
    assert!(dist(a.apply([5.0, 6.0, 7.0]), [6.0, 8.0, 10.0]) < 1e-9);
    let angles = a.euler_angles();
    assert!((angles[0] - 0.1).abs() < 1e-12 && (angles[2] - 0.3).abs() < 1e-12);
    assert!(RigidTransform::identity().rotation_angle_deg().abs() < 1e-9);
}

#[test]
fn resample_with_identity_reproduces_values() {
    let v = fixed_volume();
    let r = resample_to(&v, &v, &RigidTransform::identity());
    assert_eq!((r.dims, r.spacing, r.origin), (v.dims, v.spacing, v.origin));
    let Voxels::F32(data) = &r.voxels else {
        panic!("F32 voxels expected")
    };
    let Voxels::F32(src) = &v.voxels else {
        panic!("F32 voxels expected")
    };
    let worst = data
        .iter()
        .zip(src)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "{worst}");
}

#[test]
fn resample_through_the_true_transform_matches_the_fixed_volume() {
    let fixed = fixed_volume();
    let truth = RigidTransform::translation([7.3, -4.1, 11.6]);
    let moving = moving_volume(&truth, |v| v);
    let back = resample_to_with(&moving, &fixed, &truth, Fill::Nan);
    let mut worst = 0.0f64;
    let mut inside_count = 0;
    for k in 0..fixed.dims[2] {
        for j in 0..fixed.dims[1] {
            for i in 0..fixed.dims[0] {
                let b = f64::from(back.value(i, j, k));
                if b.is_nan() {
                    continue;
                }
                inside_count += 1;
                worst = worst.max((b - f64::from(fixed.value(i, j, k))).abs());
            }
        }
    }
    // Trilinear interpolation of 1 mm edges on a 1.8–2 mm grid: within a fraction of the
    // 100–450 contrasts.
    assert!(inside_count > fixed.voxel_count() / 2, "{inside_count}");
    assert!(worst < 60.0, "{worst}");
    // Outside the moving volume: the requested fill, or its minimum by default.
    let far = RigidTransform::translation([1000.0, 0.0, 0.0]);
    let filled = resample_to_with(&moving, &fixed, &far, Fill::Value(-1024.0));
    assert_eq!(filled.value(3, 3, 3), -1024.0);
    let min = resample_to(&moving, &fixed, &far);
    assert!(min.value(3, 3, 3) < 1e-3);
}

/// The check: two phantoms with a known shift, registered, resampled and fused: the
/// overlay's hot insert lands on the base's insert.
#[test]
fn fusion_of_two_phantoms_with_a_known_shift_recovered_by_registration() {
    let fixed = fixed_volume();
    let shift = [7.3, -4.1, 11.6];
    let truth = RigidTransform::translation(shift);
    // "PET" on a coarser grid: no uptake in air, some in the body, none in the dark
    // insert, much in the bright one.
    let inv = truth.inverse();
    let pet = grid([30, 30, 26], [2.2; 3], truth.apply(O), move |p| {
        let q = sub(inv.apply(p), O);
        let body = inside(q, [0.0; 3], [24.0, 18.0, 15.0]);
        let cold = inside(q, [-9.0, -5.0, 4.0], [5.0, 3.5, 7.0]);
        let hot = inside(q, [8.0, 4.0, -3.0], [6.0, 6.0, 6.0]);
        (2.0 + 60.0 * body * (1.0 - cold) + 500.0 * hot) as f32
    });
    let opts = RegisterOptions::default();
    let reg = register_rigid(&fixed, &pet, &opts).expect("registration");
    let err = dist(reg.transform.translation, shift);
    eprintln!("PET/CT shift error {err:.3} mm");
    assert!(err < 1.0, "recovered {:?}", reg.transform.translation);

    let pet_on_ct = resample_to(&pet, &fixed, &reg.transform);
    let insert = [O[0] + 8.0, O[1] + 4.0, O[2] - 3.0];
    let plane = Plane::axial(insert, 41, 41, 1.0);
    let base = reslice(&fixed, &plane).expect("base");
    let overlay = reslice(&pet_on_ct, &plane).expect("overlay");
    let rgba = fuse(
        &base,
        &overlay,
        (150.0, 400.0),
        (100.0, 800.0),
        ColorMap::Hot,
        1.0,
    )
    .expect("fuse");
    // Insert centre: hot; 12 mm off it (inside the body): grey.
    let c = rgba.pixel(20, 20).expect("pixel");
    assert!(c[0] > 200 && c[0] > c[2], "{c:?}");
    let g = rgba.pixel(8, 20).expect("pixel");
    assert!(g[0] == g[1] && g[1] == g[2], "{g:?}");
}

fn image(width: usize, height: usize, data: Vec<f32>) -> Image {
    Image {
        width,
        height,
        data,
    }
}

#[test]
fn fuse_blends_grey_and_colour_by_opacity() {
    let base = image(2, 2, vec![-1000.0, 40.0, 1000.0, f32::NAN]);
    let overlay = image(2, 2, vec![10.0, f32::NAN, 0.5, 7.5]);
    let window = (40.0, 400.0);
    let grey = base.to_gray8(window.0, window.1);
    let range = (1.0, 10.0);

    let none = fuse(&base, &overlay, window, range, ColorMap::Hot, 0.0).expect("fuse");
    for (i, g) in grey.iter().enumerate() {
        assert_eq!(&none.data[i * 4..i * 4 + 4], &[*g, *g, *g, 255]);
    }

    let full = fuse(&base, &overlay, window, range, ColorMap::Rainbow, 1.0).expect("fuse");
    // (0,0): 10 = top of the range → the map's last colour.
    assert_eq!(full.pixel(0, 0), Some([128, 0, 0, 255]));
    assert_eq!(ColorMap::Rainbow.map(1.0), [128, 0, 0]);
    // (1,0): NaN overlay → base grey; (0,1): below the range → base grey.
    assert_eq!(full.pixel(1, 0), Some([grey[1], grey[1], grey[1], 255]));
    assert_eq!(full.pixel(0, 1), Some([grey[2], grey[2], grey[2], 255]));
    // (1,1): 7.5 → t = 13/18 of the map, over a NaN (black) base.
    let c = ColorMap::Rainbow.map(6.5 / 9.0);
    assert_eq!(full.pixel(1, 1), Some([c[0], c[1], c[2], 255]));

    let half = fuse(&base, &overlay, window, range, ColorMap::Grayscale, 0.5).expect("fuse");
    let expect = ((f32::from(grey[0]) + 255.0) / 2.0).round() as u8;
    assert_eq!(half.pixel(0, 0), Some([expect, expect, expect, 255]));
}

#[test]
fn colour_maps_run_from_dark_to_bright() {
    for cmap in [
        ColorMap::Grayscale,
        ColorMap::Hot,
        ColorMap::Rainbow,
        ColorMap::Pet,
    ] {
        let lo = cmap.map(0.0);
        let hi = cmap.map(1.0);
        let sum = |c: [u8; 3]| c.iter().map(|&x| u32::from(x)).sum::<u32>();
        assert!(sum(lo) < 200, "{cmap:?} {lo:?}");
        assert_ne!(hi, lo, "{cmap:?}");
        if cmap != ColorMap::Rainbow {
            assert!(sum(hi) > sum(lo), "{cmap:?}");
        }
        assert_eq!(cmap.map(f32::NAN), [0, 0, 0]);
        assert_eq!(cmap.map(-5.0), lo);
        assert_eq!(cmap.map(5.0), hi);
    }
    assert_eq!(ColorMap::Hot.map(1.0), [255, 255, 255]);
    assert_eq!(ColorMap::Pet.map(0.6), [255, 0, 0]);
    assert_eq!(ColorMap::Grayscale.map(0.5), [128, 128, 128]);
}

#[test]
fn fuse_refuses_mismatched_or_invalid_input() {
    let a = image(2, 2, vec![0.0; 4]);
    let b = image(3, 2, vec![0.0; 6]);
    let w = (40.0, 400.0);
    assert!(matches!(
        fuse(&a, &b, w, (0.0, 1.0), ColorMap::Hot, 0.5),
        Err(FusionError::SizeMismatch { .. })
    ));
    assert!(matches!(
        fuse(&a, &a, w, (0.0, 1.0), ColorMap::Hot, 1.5),
        Err(FusionError::Opacity(_))
    ));
    assert!(matches!(
        fuse(&a, &a, w, (1.0, 1.0), ColorMap::Hot, 0.5),
        Err(FusionError::OverlayRange { .. })
    ));
    assert!(matches!(
        fuse(&a, &a, (0.0, f64::NAN), (0.0, 1.0), ColorMap::Hot, 0.5),
        Err(FusionError::BaseWindow { .. })
    ));
    let short = image(2, 2, vec![0.0; 3]);
    assert!(matches!(
        fuse(&short, &a, w, (0.0, 1.0), ColorMap::Hot, 0.5),
        Err(FusionError::BadImage { which: "base", .. })
    ));
}

/// Random rigid motions (shifts up to 15 mm, rotations up to 8–10° per axis), half of them
/// across "modalities": every one within 1 mm at the landmarks.
#[test]
fn registration_converges_for_random_rigid_motions() {
    let mut state = 12345u64;
    let mut uniform = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let mut worst_of_all = 0.0f64;
    for case in 0..8 {
        let t = [uniform() * 15.0, uniform() * 15.0, uniform() * 12.0];
        let a = [
            uniform() * 8f64.to_radians(),
            uniform() * 8f64.to_radians(),
            uniform() * 10f64.to_radians(),
        ];
        let truth = RigidTransform::from_euler(a, O, t);
        let map: fn(f64) -> f64 = if case % 2 == 0 { |v| v } else { remap };
        let worst = check_registration(truth, map, &format!("random case {case}"));
        worst_of_all = worst_of_all.max(worst);
    }
    assert!(worst_of_all < 1.0, "worst landmark error {worst_of_all} mm");
}
