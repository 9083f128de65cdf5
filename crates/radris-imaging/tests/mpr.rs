//! MPR and volume building on analytic phantoms.

use radris_imaging::mpr::{Image, Plane, SlabMode, curved, reslice, slab};
use radris_imaging::volume::{
    BuildOptions, Slice, SlicePixels, TiltHandling, Volume, VolumeCache, VolumeError, Voxels, build,
};
use std::sync::Arc;

const ID: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
const SP: [f64; 3] = [0.7, 0.7, 1.25];

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// 1000 inside, 0 outside, a 1 mm linear edge whose 500 contour is exactly at radius `r`.
fn edge(d: f64, r: f64) -> f32 {
    (1000.0 * ((r - d) + 0.5).clamp(0.0, 1.0)) as f32
}

const C: [f64; 3] = [33.0, 33.5, 32.0];
const R: f64 = 20.0;

fn sphere() -> Volume {
    Volume::from_fn([96, 96, 54], SP, [0.0; 3], ID, |p| edge(dist(p, C), R))
}

/// Bilinear value of an image at a fractional pixel.
fn bilinear(img: &Image, x: f64, y: f64) -> f64 {
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let g = |i, j| f64::from(img.get(i, j).expect("inside"));
    let a = g(x0, y0) + (g(x0 + 1, y0) - g(x0, y0)) * fx;
    let b = g(x0, y0 + 1) + (g(x0 + 1, y0 + 1) - g(x0, y0 + 1)) * fx;
    a + (b - a) * fy
}

#[test]
fn trilinear_is_exact_on_a_linear_ramp() {
    let f = |p: [f64; 3]| (3.0 * p[0] - 2.0 * p[1] + 0.5 * p[2] + 7.0) as f32;
    let vol = Volume::from_fn([10, 9, 8], SP, [5.0, -3.0, 2.0], ID, f);
    for &idx in &[
        [0.0, 0.0, 0.0],
        [3.3, 4.7, 2.1],
        [9.0, 8.0, 7.0],
        [8.99, 0.01, 6.5],
    ] {
        let got = vol.sample(idx).expect("inside");
        let want = f(vol.index_to_patient(idx));
        assert!((got - want).abs() < 1e-3, "{idx:?}: {got} vs {want}");
        let back = vol.patient_to_index(vol.index_to_patient(idx));
        assert!(dist(back, idx) < 1e-9);
    }
    assert_eq!(vol.sample([-0.01, 0.0, 0.0]), None);
    assert_eq!(vol.sample([0.0, 8.01, 0.0]), None);
    assert_eq!(vol.sample([f64::NAN, 0.0, 0.0]), None);
    // value() applies the rescale.
    let mut v2 = vol.clone();
    v2.voxels = Voxels::I16(vec![10; 10 * 9 * 8]);
    v2.slope = 2.0;
    v2.intercept = -1024.0;
    assert_eq!(v2.value(1, 2, 3), -1004.0);
}

#[test]
fn oblique_plane_through_three_points_returns_their_values() {
    let f = |p: [f64; 3]| (2.0 * p[0] + 3.0 * p[1] - p[2] + 100.0) as f32;
    let vol = Volume::from_fn([60, 60, 40], SP, [0.0; 3], ID, f);
    let (a, b, c) = ([10.0, 12.0, 15.0], [30.0, 20.0, 30.0], [15.0, 30.0, 25.0]);
    let plane = Plane::from_points(a, b, c, [101, 101], 0.4).expect("plane");
    let img = reslice(&vol, &plane).expect("reslice");
    for p in [a, b, c] {
        let [x, y] = plane.pixel_of(p);
        assert!(
            dist(plane.point_at(x, y), p) < 1e-9,
            "point lies in the plane"
        );
        let got = bilinear(&img, x, y);
        assert!((got - f64::from(f(p))).abs() < 1e-2, "{p:?}: {got}");
    }
    // The same through Plane::oblique with the normal and up hint.
    let n = plane.normal();
    let up = [-plane.v[0], -plane.v[1], -plane.v[2]];
    let p2 = Plane::oblique(plane.origin, n, up, [101, 101], 0.4).expect("oblique");
    assert!(dist(p2.u, plane.u) < 1e-9 && dist(p2.v, plane.v) < 1e-9);
    // Outside the volume → NaN.
    let far = Plane::axial([0.0, 0.0, -50.0], 8, 8, 1.0);
    assert!(
        reslice(&vol, &far)
            .expect("ok")
            .data
            .iter()
            .all(|x| x.is_nan())
    );
}

/// Radius (px) of the above-threshold disc: from its area and from its centre row/column run.
fn disc_radii(img: &Image) -> (f64, f64, f64) {
    let area = img.data.iter().filter(|&&x| x >= 500.0).count() as f64;
    let (cx, cy) = ((img.width - 1) / 2, (img.height - 1) / 2);
    let row_run = (0..img.width)
        .filter(|&x| img.get(x, cy).is_some_and(|v| v >= 500.0))
        .count();
    let col_run = (0..img.height)
        .filter(|&y| img.get(cx, y).is_some_and(|v| v >= 500.0))
        .count();
    (
        (area / std::f64::consts::PI).sqrt(),
        row_run as f64 / 2.0,
        col_run as f64 / 2.0,
    )
}

#[test]
fn orthogonal_planes_through_sphere_centre_show_the_right_disc() {
    let vol = sphere();
    let px = 0.5;
    let want = R / px;
    for plane in [
        Plane::axial(C, 121, 121, px),
        Plane::sagittal(C, 121, 121, px),
        Plane::coronal(C, 121, 121, px),
    ] {
        let img = reslice(&vol, &plane).expect("reslice");
        let (ra, rr, rc) = disc_radii(&img);
        for r in [ra, rr, rc] {
            assert!(
                (r - want).abs() <= 1.0,
                "{plane:?}: radius {r} px vs {want}"
            );
        }
        // Centre pixel is inside.
        assert_eq!(img.get(60, 60), Some(1000.0));
        let g = img.to_gray8(500.0, 1000.0);
        assert_eq!(g[60 + 121 * 60], 255);
        assert_eq!(g[0], 0);
    }
    // An oblique plane through the centre shows the same disc.
    let ob = Plane::oblique(C, [1.0, 2.0, 3.0], [0.0, 0.0, 1.0], [121, 121], px).expect("plane");
    let (ra, _, _) = disc_radii(&reslice(&vol, &ob).expect("reslice"));
    assert!((ra - want).abs() <= 1.0, "oblique radius {ra}");
    // 5 mm off-centre the axial disc shrinks to sqrt(R² − 25).
    let off = Plane::axial([C[0], C[1], C[2] + 5.0], 121, 121, px);
    let (ra, _, _) = disc_radii(&reslice(&vol, &off).expect("reslice"));
    assert!(
        (ra - (R * R - 25.0).sqrt() / px).abs() <= 1.0,
        "off-centre radius {ra}"
    );
}

#[test]
fn slab_mip_of_a_small_dot_equals_its_value() {
    // A 3×3×3-voxel plateau of 800 centred on voxel (20, 21, 12), background −50.
    let centre = [20.0 * SP[0], 21.0 * SP[1], 12.0 * SP[2]];
    let vol = Volume::from_fn([40, 40, 30], SP, [0.0; 3], ID, |p| {
        let inside = (0..3).all(|a| (p[a] - centre[a]).abs() <= SP[a] * 1.01);
        if inside { 800.0 } else { -50.0 }
    });
    // Axial slab of 20 mm whose central plane is 4 mm above the dot, a pixel on the dot.
    let plane = Plane::axial([centre[0], centre[1], centre[2] + 4.0], 31, 31, SP[0]);
    let mip = slab(&vol, &plane, 20.0, SlabMode::Mip).expect("slab");
    assert_eq!(mip.get(15, 15), Some(800.0));
    assert_eq!(mip.get(0, 0), Some(-50.0));
    let minip = slab(&vol, &plane, 20.0, SlabMode::MinIp).expect("slab");
    assert_eq!(minip.get(15, 15), Some(-50.0));
    let avg = slab(&vol, &plane, 20.0, SlabMode::Average).expect("slab");
    let a = avg.get(15, 15).expect("px");
    assert!(a > -50.0 && a < 800.0);
    // A slab that misses the dot does not see it.
    let far = Plane::axial([centre[0], centre[1], centre[2] + 14.0], 31, 31, SP[0]);
    let mip = slab(&vol, &far, 10.0, SlabMode::Mip).expect("slab");
    assert_eq!(mip.get(15, 15), Some(-50.0));
}

#[test]
fn curved_reformat_straightens_a_tube() {
    // A tube of radius 2 mm along a half circle of radius 22 mm in a tilted plane.
    let centre = [33.0, 33.0, 32.0];
    let n = {
        let v: [f64; 3] = [1.0, 1.0, 2.0];
        let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        [v[0] / l, v[1] / l, v[2] / l]
    };
    // Orthonormal e1, e2 in the circle's plane.
    let e1 = {
        let v = [1.0, -1.0, 0.0];
        let l = 2f64.sqrt();
        [v[0] / l, v[1] / l, v[2] / l]
    };
    let e2 = [
        n[1] * e1[2] - n[2] * e1[1],
        n[2] * e1[0] - n[0] * e1[2],
        n[0] * e1[1] - n[1] * e1[0],
    ];
    let ring = 22.0;
    let tube = 2.0;
    let vol = Volume::from_fn([96, 96, 54], SP, [0.0; 3], ID, |p| {
        let q = [p[0] - centre[0], p[1] - centre[1], p[2] - centre[2]];
        let h = q[0] * n[0] + q[1] * n[1] + q[2] * n[2];
        let r = ((q[0] - h * n[0]).powi(2) + (q[1] - h * n[1]).powi(2) + (q[2] - h * n[2]).powi(2))
            .sqrt();
        edge(((r - ring).powi(2) + h * h).sqrt(), tube)
    });
    let path: Vec<[f64; 3]> = (0..=90)
        .map(|i| {
            let t = std::f64::consts::PI * i as f64 / 90.0;
            let (c, s) = (ring * t.cos(), ring * t.sin());
            [
                centre[0] + c * e1[0] + s * e2[0],
                centre[1] + c * e1[1] + s * e2[1],
                centre[2] + c * e1[2] + s * e2[2],
            ]
        })
        .collect();
    let img = curved(&vol, &path, [0.0, 0.0, 1.0], 20.0, 0.5).expect("curved");
    assert_eq!(img.height, 41);
    let arc = std::f64::consts::PI * ring;
    assert!((img.width as f64 - (arc / 0.5).floor() - 1.0).abs() <= 1.0);
    let mid = (img.height - 1) as f64 / 2.0;
    let mut centres = Vec::new();
    for x in 0..img.width {
        let col: Vec<f64> = (0..img.height)
            .map(|y| f64::from(img.get(x, y).expect("px")).max(0.0))
            .collect();
        let total: f64 = col.iter().sum();
        assert!(total > 0.0, "column {x} sees the tube");
        let c = col
            .iter()
            .enumerate()
            .map(|(y, v)| y as f64 * v)
            .sum::<f64>()
            / total;
        centres.push(c);
        assert_eq!(
            img.get(x, img.height / 2),
            Some(1000.0),
            "column {x} bright in the middle"
        );
        // Band width ≈ tube diameter: the rows ≥ 500 span 4 mm = 8 px (±1).
        let bright = col.iter().filter(|&&v| v >= 500.0).count() as f64;
        assert!(
            (bright - 2.0 * tube / 0.5).abs() <= 1.5,
            "column {x}: {bright} rows"
        );
    }
    let (lo, hi) = centres
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &c| {
            (a.min(c), b.max(c))
        });
    assert!(hi - lo < 1.0, "centre row varies by {}", hi - lo);
    assert!((lo - mid).abs() < 1.0);
}

// ------------------------------------------------------------------------------------------
// build()
// ------------------------------------------------------------------------------------------

const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];

fn field(p: [f64; 3]) -> f64 {
    2.0 * p[0] - p[1] + 0.5 * p[2]
}

/// A 5×4 slice at `position`, pixels sampled from `field` (stored as i16·2 with slope 0.5).
fn slice_at(position: [f64; 3], orientation: [f64; 6]) -> Slice {
    let (rows, cols) = (4, 5);
    let ps = [0.8, 0.6]; // row spacing (y), column spacing (x)
    let r = [orientation[0], orientation[1], orientation[2]];
    let c = [orientation[3], orientation[4], orientation[5]];
    let mut px = Vec::new();
    for j in 0..rows {
        for i in 0..cols {
            let p: [f64; 3] = std::array::from_fn(|a| {
                position[a] + i as f64 * ps[1] * r[a] + j as f64 * ps[0] * c[a]
            });
            px.push((field(p) * 2.0).round() as i16);
        }
    }
    Slice {
        position,
        orientation,
        pixel_spacing: ps,
        rows,
        cols,
        pixels: SlicePixels::I16(px),
        slope: 0.5,
        intercept: 0.0,
        frame_of_reference: "1.2.3".into(),
    }
}

fn stack(zs: &[f64]) -> Vec<Slice> {
    zs.iter()
        .map(|&z| slice_at([10.0, 20.0, z], AXIAL))
        .collect()
}

#[test]
fn build_sorts_shuffled_slices_and_computes_spacing() {
    let (vol, rep) = build(
        stack(&[5.0, -2.5, 0.0, 10.0, 2.5, 7.5]),
        &BuildOptions::default(),
    )
    .expect("build");
    assert_eq!(vol.dims, [5, 4, 6]);
    assert_eq!(vol.spacing, [0.6, 0.8, 2.5]);
    assert_eq!(vol.origin, [10.0, 20.0, -2.5]);
    assert!(rep.gaps.is_empty() && !rep.uneven && rep.tilt_deg == 0.0);
    assert_eq!(rep.spacing_mm, 2.5);
    assert!(matches!(vol.voxels, Voxels::I16(_)));
    for k in 0..6 {
        let p = vol.index_to_patient([2.0, 3.0, k as f64]);
        assert!(
            (f64::from(vol.value(2, 3, k)) - field(p)).abs() <= 0.25,
            "slice {k}"
        );
    }
    // Normal pointing the other way (orientation flipped): still sorted along it.
    let flipped = [1.0, 0.0, 0.0, 0.0, -1.0, 0.0];
    let s: Vec<Slice> = [0.0, 5.0, 2.5]
        .iter()
        .map(|&z| slice_at([0.0, 0.0, z], flipped))
        .collect();
    let (vol, _) = build(s, &BuildOptions::default()).expect("build");
    assert_eq!(vol.origin[2], 5.0);
    assert_eq!(vol.axes[2], [0.0, 0.0, -1.0]);
}

#[test]
fn build_reports_a_missing_slice_and_uneven_spacing() {
    let zs = [0.0, 2.5, 5.0, 10.0, 12.5, 15.0];
    let err = build(stack(&zs), &BuildOptions::default()).expect_err("gap");
    assert!(
        matches!(
            err,
            VolumeError::MissingSlices {
                count: 1,
                first_after: 2
            }
        ),
        "{err}"
    );
    let opts = BuildOptions {
        allow_gaps: true,
        ..Default::default()
    };
    let (vol, rep) = build(stack(&zs), &opts).expect("allowed");
    assert_eq!(vol.dims[2], 6);
    assert_eq!(rep.gaps.len(), 1);
    assert_eq!(rep.gaps[0].after, 2);
    assert_eq!(rep.gaps[0].missing, 1);
    assert_eq!(rep.spacing_mm, 2.5);
    let (_, rep) = build(stack(&[0.0, 2.5, 5.0, 7.0, 9.5, 12.0]), &opts).expect("uneven");
    assert!(rep.uneven && rep.gaps.is_empty());
}

#[test]
fn build_refuses_inconsistent_series() {
    let o = BuildOptions::default();
    assert_eq!(build(vec![], &o), Err(VolumeError::Empty));
    let mut s = stack(&[0.0, 2.5, 5.0]);
    s[1] = Slice {
        rows: 2,
        cols: 10,
        ..s[1].clone()
    };
    assert!(matches!(
        build(s, &o),
        Err(VolumeError::MixedSize { index: 1 })
    ));
    let mut s = stack(&[0.0, 2.5, 5.0]);
    s[2].frame_of_reference = "9.9".into();
    assert!(matches!(
        build(s, &o),
        Err(VolumeError::MixedFrameOfReference { .. })
    ));
    let mut s = stack(&[0.0, 2.5, 5.0]);
    s[2].orientation = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];
    assert!(matches!(
        build(s, &o),
        Err(VolumeError::MixedOrientation { index: 2 })
    ));
    let s = stack(&[0.0, 2.5, 2.5, 5.0]);
    assert!(matches!(
        build(s, &o),
        Err(VolumeError::DuplicatePosition { .. })
    ));
    let mut s = stack(&[0.0, 2.5]);
    s[0].pixels = SlicePixels::I16(vec![0; 3]);
    assert!(matches!(
        build(s, &o),
        Err(VolumeError::BadSlice { index: 0, .. })
    ));
}

#[test]
fn gantry_tilt_is_refused_or_resampled() {
    // 15° tilt: each 2.5 mm step along z also moves 2.5·tan 15° mm along y.
    let tan = 15f64.to_radians().tan();
    let zs = [0.0, 2.5, 5.0, 7.5, 10.0];
    let s: Vec<Slice> = zs
        .iter()
        .map(|&z| slice_at([10.0, 20.0 + z * tan, z], AXIAL))
        .collect();
    match build(s.clone(), &BuildOptions::default()) {
        Err(VolumeError::GantryTilt { degrees }) => assert!((degrees - 15.0).abs() < 0.01),
        other => panic!("{other:?}"),
    }
    let opts = BuildOptions {
        tilt: TiltHandling::Resample,
        ..Default::default()
    };
    let (vol, rep) = build(s, &opts).expect("resampled");
    assert!(rep.resampled && (rep.tilt_deg - 15.0).abs() < 0.01);
    assert_eq!(vol.axes, ID);
    assert_eq!(vol.dims, [5, 4, 5]);
    // Every voxel covered by the original slices carries the field at its own position.
    let mut checked = 0;
    for k in 0..5 {
        for j in 0..4 {
            for i in 0..5 {
                let p = vol.index_to_patient([i as f64, j as f64, k as f64]);
                let y_in_slice = p[1] - (20.0 + p[2] * tan);
                if (0.0..=3.0 * 0.8).contains(&y_in_slice) {
                    let v = f64::from(vol.value(i, j, k));
                    assert!(
                        (v - field(p)).abs() < 0.3,
                        "({i},{j},{k}): {v} vs {}",
                        field(p)
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50, "{checked}");
}

#[test]
fn cache_is_lru_by_bytes() {
    let mk = || Volume::from_fn([10, 10, 10], SP, [0.0; 3], ID, |_| 1.0); // 4000 bytes
    let cache = VolumeCache::new(10_000);
    let mut builds = 0;
    let a = cache.get_or_build::<VolumeError>("a", || {
        builds += 1;
        Ok(mk())
    });
    let a = a.expect("a");
    let a2 = cache
        .get_or_build::<VolumeError>("a", || panic!("cached"))
        .expect("a");
    assert!(Arc::ptr_eq(&a, &a2));
    cache
        .get_or_build::<VolumeError>("b", || Ok(mk()))
        .expect("b");
    let _ = cache.get("a"); // a is now more recent than b
    cache
        .get_or_build::<VolumeError>("c", || Ok(mk()))
        .expect("c");
    assert_eq!(cache.len(), 2);
    assert!(cache.get("b").is_none());
    assert!(cache.get("a").is_some() && cache.get("c").is_some());
    assert_eq!(cache.used_bytes(), 8000);
    assert_eq!(builds, 1);
    let err = cache.get_or_build("d", || Err(VolumeError::Empty));
    assert_eq!(err.err(), Some(VolumeError::Empty));
}
