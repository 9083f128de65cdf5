//! Quantitative measurements on analytic phantoms.

use radris_imaging::quant::{
    AgatstonOptions, Mask, QuantError, Roi2d, VertebralRoi, agatston, agatston_weight, distance_mm,
    index_to_patient, mask_stats, region_grow, roi_stats_2d, roi_stats_slices, threshold,
    vertebral_bone_density, voxel_distance_mm,
};
use radris_imaging::volume::{Volume, Voxels};
use std::f64::consts::PI;

const ID: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

fn volume_from(dims: [usize; 3], spacing: [f64; 3], f: impl Fn([f64; 3]) -> f64) -> Volume {
    let mut v = Vec::with_capacity(dims[0] * dims[1] * dims[2]);
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = [
                    i as f64 * spacing[0],
                    j as f64 * spacing[1],
                    k as f64 * spacing[2],
                ];
                v.push(f(p) as i16);
            }
        }
    }
    Volume {
        dims,
        spacing,
        origin: [0.0; 3],
        axes: ID,
        voxels: Voxels::I16(v),
        slope: 1.0,
        intercept: 0.0,
    }
}

fn sphere_volume() -> (Volume, [usize; 3]) {
    let spacing = [0.6, 0.7, 1.1];
    let c = [16.0, 17.0, 18.0];
    let vol = volume_from([56, 50, 34], spacing, |p| {
        let d2 = (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2);
        if d2 <= 100.0 { 1000.0 } else { -1000.0 }
    });
    let seed = [
        (c[0] / spacing[0]).round() as usize,
        (c[1] / spacing[1]).round() as usize,
        (c[2] / spacing[2]).round() as usize,
    ];
    (vol, seed)
}

#[test]
fn sphere_volume_by_threshold_and_region_growing() {
    let (vol, seed) = sphere_volume();
    let expected_ml = 4.0 / 3.0 * PI * 1000.0 / 1000.0;
    let t = threshold(&vol, 500.0, 3000.0).unwrap();
    assert!(
        (t.volume_ml / expected_ml - 1.0).abs() < 0.02,
        "{}",
        t.volume_ml
    );
    let g = region_grow(&vol, seed, 500.0, 3000.0).unwrap();
    assert!(
        (g.volume_ml / expected_ml - 1.0).abs() < 0.02,
        "{}",
        g.volume_ml
    );
    assert_eq!(t.mask, g.mask);
    let s = mask_stats(&vol, &g.mask).unwrap();
    assert_eq!((s.mean, s.sd, s.min, s.max), (1000.0, 0.0, 1000.0, 1000.0));
    assert!((s.volume_ml - g.volume_ml).abs() < 1e-12);
    // Seed outside the range grows nothing; out of bounds is an error.
    assert_eq!(
        region_grow(&vol, [0, 0, 0], 500.0, 3000.0)
            .unwrap()
            .mask
            .count(),
        0
    );
    assert_eq!(
        region_grow(&vol, [56, 0, 0], 500.0, 3000.0).map(|_| ()),
        Err(QuantError::IndexOutOfRange([56, 0, 0]))
    );
}

#[test]
fn region_growing_is_six_connected() {
    // Two voxels touching only along an edge are separate regions.
    let vol = volume_from([4, 4, 1], [1.0; 3], |p| {
        if (p[0] == 1.0 && p[1] == 1.0) || (p[0] == 2.0 && p[1] == 2.0) {
            100.0
        } else {
            0.0
        }
    });
    let g = region_grow(&vol, [1, 1, 0], 50.0, 150.0).unwrap();
    assert_eq!(g.mask.count(), 1);
    assert!(g.mask.get_ijk([1, 1, 0]) && !g.mask.get_ijk([2, 2, 0]));
}

#[test]
fn distances() {
    assert!((distance_mm([0.0, 0.0, 0.0], [3.0, 4.0, 12.0]) - 13.0).abs() < 1e-12);
    let mut vol = volume_from([10, 10, 10], [0.5, 0.8, 2.5], |_| 0.0);
    let d = voxel_distance_mm(&vol, [1.0, 2.0, 3.0], [4.0, 6.0, 7.0]);
    let expected = (1.5f64.powi(2) + 3.2f64.powi(2) + 10.0f64.powi(2)).sqrt();
    assert!((d - expected).abs() < 0.5 && (d - expected).abs() < 1e-9);
    // Rotated axes keep distances.
    let (c, s) = (0.6, 0.8);
    vol.axes = [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]];
    vol.origin = [10.0, -5.0, 3.0];
    assert!((voxel_distance_mm(&vol, [1.0, 2.0, 3.0], [4.0, 6.0, 7.0]) - expected).abs() < 1e-9);
    let p = index_to_patient(&vol, [2.0, 0.0, 0.0]);
    assert!((p[0] - 10.6).abs() < 1e-12 && (p[1] + 4.2).abs() < 1e-12);
}

#[test]
fn uniform_roi_stats_are_exact_and_ellipse_area_is_accurate() {
    let vol = volume_from([200, 200, 3], [0.25, 0.25, 2.0], |_| 42.0);
    let roi = Roi2d::Ellipse {
        center: [25.0, 24.0, 2.0],
        radius_row_mm: 15.0,
        radius_col_mm: 9.0,
    };
    let s = roi_stats_2d(&vol, 1, &roi).unwrap();
    assert_eq!((s.mean, s.sd, s.min, s.max), (42.0, 0.0, 42.0, 42.0));
    let area = PI * 15.0 * 9.0;
    assert!(
        (s.area_mm2 / area - 1.0).abs() < 0.01,
        "{} vs {area}",
        s.area_mm2
    );
    assert!((s.volume_ml - s.area_mm2 * 2.0 / 1000.0).abs() < 1e-12);
    assert_eq!(s.count as f64 * 0.0625, s.area_mm2);
    // A square polygon of 10×10 mm covers 40×40 pixel centres (half-open edges).
    let sq = Roi2d::Polygon(vec![
        [10.1, 10.1, 0.0],
        [20.1, 10.1, 0.0],
        [20.1, 20.1, 0.0],
        [10.1, 20.1, 0.0],
    ]);
    let s = roi_stats_2d(&vol, 0, &sq).unwrap();
    assert_eq!(s.count, 1600);
    assert!((s.area_mm2 - 100.0).abs() < 1e-9);
    // A triangle's area.
    let tri = Roi2d::Polygon(vec![[5.1, 5.1, 0.0], [45.1, 5.1, 0.0], [5.1, 35.1, 0.0]]);
    let s = roi_stats_2d(&vol, 2, &tri).unwrap();
    assert!((s.area_mm2 / 600.0 - 1.0).abs() < 0.01, "{}", s.area_mm2);
    // Errors.
    assert_eq!(
        roi_stats_2d(&vol, 3, &roi),
        Err(QuantError::SliceOutOfRange {
            slice: 3,
            slices: 3
        })
    );
    assert!(matches!(
        roi_stats_2d(&vol, 0, &Roi2d::Polygon(vec![[0.0; 3]; 2])),
        Err(QuantError::Roi(_))
    ));
}

#[test]
fn roi_stats_of_a_ramp() {
    // Values 0..9 along x; a polygon spanning x = 0..9 on one row (centres inside).
    let vol = volume_from([10, 3, 1], [1.0; 3], |p| p[0]);
    let roi = Roi2d::Polygon(vec![
        [-0.5, 0.5, 0.0],
        [9.5, 0.5, 0.0],
        [9.5, 1.5, 0.0],
        [-0.5, 1.5, 0.0],
    ]);
    let s = roi_stats_2d(&vol, 0, &roi).unwrap();
    assert_eq!(s.count, 10);
    assert_eq!((s.mean, s.min, s.max), (4.5, 0.0, 9.0));
    assert!((s.sd - (110.0f64 / 12.0).sqrt()).abs() < 1e-12);
    assert!(matches!(
        mask_stats(&vol, &Mask::new([1, 1, 1])),
        Err(QuantError::MaskDims { .. })
    ));
}

#[test]
fn agatston_on_a_calcium_phantom() {
    // 0.5 mm pixels, 3 mm slices, 6 slices.
    // * a 450 HU cylinder r = 3 mm at (10, 10) on slices 1..=4 → weight 4;
    // * a 250 HU disc r = 2 mm at (30, 10) on slice 2 → weight 2;
    // * a 100 HU disc at (10, 30) → ignored;
    // * a 500 HU speck of 2 pixels (0.5 mm² < 1 mm²) at (30, 30) → ignored.
    let vol = volume_from([80, 80, 6], [0.5, 0.5, 3.0], |p| {
        let k = (p[2] / 3.0).round() as usize;
        let in_disc = |cx: f64, cy: f64, r: f64| (p[0] - cx).powi(2) + (p[1] - cy).powi(2) <= r * r;
        if (1..=4).contains(&k) && in_disc(10.0, 10.0, 3.0) {
            450.0
        } else if k == 2 && in_disc(30.0, 10.0, 2.0) {
            250.0
        } else if k == 3 && in_disc(10.0, 30.0, 3.0) {
            100.0
        } else if k == 3 && p[1] == 30.0 && (p[0] == 30.0 || p[0] == 30.5) {
            500.0
        } else {
            40.0
        }
    });
    let px = 0.25;
    let count = |cx: f64, cy: f64, r: f64| {
        let mut n = 0;
        for j in 0..80 {
            for i in 0..80 {
                let (x, y) = (i as f64 * 0.5, j as f64 * 0.5);
                if (x - cx).powi(2) + (y - cy).powi(2) <= r * r {
                    n += 1;
                }
            }
        }
        n as f64
    };
    let a_cyl = count(10.0, 10.0, 3.0) * px;
    let a_250 = count(30.0, 10.0, 2.0) * px;
    assert!((a_cyl / (PI * 9.0) - 1.0).abs() < 0.05);
    let s = agatston(&vol, &AgatstonOptions::default()).unwrap();
    assert_eq!(s.lesions.len(), 5);
    let expected = a_cyl * 4.0 * 4.0 + a_250 * 2.0;
    assert!(
        (s.total - expected).abs() < 1e-9,
        "{} vs {expected}",
        s.total
    );
    assert!(s.lesions.iter().any(|l| l.weight == 2 && l.slice == 2));
    // 1.5 mm slices would halve each slice's contribution.
    let mut thin = vol.clone();
    thin.spacing[2] = 1.5;
    let t = agatston(&thin, &AgatstonOptions::default()).unwrap();
    assert!((t.total - expected / 2.0).abs() < 1e-9);
    let unscaled = AgatstonOptions {
        reference_thickness_mm: None,
        ..Default::default()
    };
    assert!((agatston(&thin, &unscaled).unwrap().total - expected).abs() < 1e-9);
    // A lower minimum area lets the speck in (2 pixels × 0.25 mm² × weight 4).
    let lax = AgatstonOptions {
        min_area_mm2: 0.5,
        ..Default::default()
    };
    assert!((agatston(&vol, &lax).unwrap().total - expected - 2.0).abs() < 1e-9);
}

#[test]
fn agatston_weights() {
    assert_eq!(
        [
            100.0, 130.0, 199.9, 200.0, 299.0, 300.0, 399.0, 400.0, 3000.0
        ]
        .map(agatston_weight),
        [0, 1, 1, 2, 2, 3, 3, 4, 4]
    );
}

#[test]
fn vertebral_bone_density_is_the_mean_in_the_cylinder() {
    // Trabecular 150 HU ellipse inside a 700 HU cortical ring.
    let vol = volume_from([100, 100, 10], [0.5, 0.5, 1.0], |p| {
        let r = ((p[0] - 25.0) / 15.0).powi(2) + ((p[1] - 25.0) / 12.0).powi(2);
        if r <= 1.0 {
            150.0
        } else if r <= 1.4 {
            700.0
        } else {
            0.0
        }
    });
    let roi = VertebralRoi {
        center: [25.0, 25.0, 0.0],
        radius_row_mm: 10.0,
        radius_col_mm: 8.0,
        first_slice: 3,
        last_slice: 6,
    };
    let s = vertebral_bone_density(&vol, &roi).unwrap();
    assert_eq!((s.mean, s.sd), (150.0, 0.0));
    let one = roi_stats_slices(
        &vol,
        3,
        3,
        &Roi2d::Ellipse {
            center: [25.0, 25.0, 0.0],
            radius_row_mm: 10.0,
            radius_col_mm: 8.0,
        },
    )
    .unwrap();
    assert_eq!(s.count, 4 * one.count);
    assert!((s.volume_ml - PI * 10.0 * 8.0 * 4.0 / 1000.0).abs() / s.volume_ml < 0.02);
}
