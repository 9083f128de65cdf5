//! End to end on the generator's analytic phantoms (`radris_dicom::synth::test_phantoms`):
//! synthetic study → Part-10 bytes → `dicom::frames_from_part10` → `volume::build` →
//! measurement, checked against the ground truth the generator declares. The phantoms are
//! noise-free, so every tolerance below comes from sampling (voxel size, partial volume).

use radris_dicom::DicomError;
use radris_dicom::synth::StudySpec;
use radris_dicom::synth::XorShift;
use radris_dicom::synth::test_phantoms::{
    BEADS, BEADS_BACKGROUND_HU, BEADS_COL, BEADS_ROW, CALCIUM_BACKGROUND_HU, CALCIUM_LESIONS,
    DYNAMIC_ARTERY, DYNAMIC_ARTERY_CURVE, DYNAMIC_PHASES, DYNAMIC_TISSUE, DYNAMIC_TISSUE_CURVE,
    REGISTRATION_SHIFT_MM, REGISTRATION_STRUCTURES, SPHERE, SPHERE_BACKGROUND_HU, TUBE,
    TUBE_BACKGROUND_HU, TestGrid, TestPhantom, registration_pair,
};
use radris_imaging::dicom::{SeriesFrame, frames_from_part10};
use radris_imaging::mpr::{Image, Plane, curved, reslice};
use radris_imaging::quant::{
    AgatstonOptions, Mask, agatston, distance_mm, index_to_patient, region_grow, threshold,
};
use radris_imaging::volume::{BuildOptions, BuildReport, Gap, Volume, VolumeError, build};
use std::f64::consts::PI;

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// Every frame of every instance the study generates, in generation order.
fn frames(spec: &StudySpec) -> Vec<SeriesFrame> {
    let mut out = Vec::new();
    spec.generate(|inst| -> Result<(), DicomError> {
        let f = frames_from_part10(&inst.part10)
            .unwrap_or_else(|e| panic!("{}: {e}", inst.sop_instance_uid));
        out.extend(f);
        Ok(())
    })
    .expect("generate");
    out
}

fn build_frames(frames: Vec<SeriesFrame>) -> (Volume, BuildReport) {
    build(
        frames.into_iter().map(|f| f.slice).collect(),
        &BuildOptions::default(),
    )
    .expect("volume")
}

/// The phantom's study at its default size, built into a volume.
fn volume_of(t: TestPhantom) -> (Volume, BuildReport) {
    build_frames(frames(&t.study("generated")))
}

fn default_grid(t: TestPhantom) -> TestGrid {
    let (s, r, c) = t.default_size();
    t.grid(s, r, c)
}

fn close3(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
    distance_mm(a, b) <= tol
}

/// The volume sits exactly on the grid the generator declared.
fn check_geometry(vol: &Volume, grid: &TestGrid) {
    assert_eq!(
        vol.dims,
        [
            usize::from(grid.cols),
            usize::from(grid.rows),
            grid.slices as usize
        ]
    );
    let want = [
        grid.pixel_spacing[1],
        grid.pixel_spacing[0],
        grid.slice_spacing_mm,
    ];
    for (got, want) in vol.spacing.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "spacing {:?}", vol.spacing);
    }
    assert!(close3(vol.origin, grid.point(0.0, 0.0, 0.0), 1e-3));
    for (axis, want) in vol
        .axes
        .iter()
        .zip([grid.row_dir, grid.col_dir, grid.normal()])
    {
        assert!(close3(*axis, want, 1e-6), "axes {:?}", vol.axes);
    }
}

/// Nearest voxel of a patient point.
fn voxel_of(vol: &Volume, p: [f64; 3]) -> [usize; 3] {
    let idx = vol.patient_to_index(p);
    [0, 1, 2].map(|a| idx[a].round().clamp(0.0, (vol.dims[a] - 1) as f64) as usize)
}

/// Centroid (patient mm) of the voxels in `mask`, weighted by how far each is above
/// `background`: partial-volume voxels count by the fraction of the object they hold.
fn weighted_centroid(vol: &Volume, mask: &Mask, background: f64) -> [f64; 3] {
    let [nx, ny, nz] = vol.dims;
    let (mut sum, mut w) = ([0.0; 3], 0.0);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if !mask.get_ijk([i, j, k]) {
                    continue;
                }
                let weight = f64::from(vol.value(i, j, k)) - background;
                let p = index_to_patient(vol, [i as f64, j as f64, k as f64]);
                for a in 0..3 {
                    sum[a] += weight * p[a];
                }
                w += weight;
            }
        }
    }
    sum.map(|s| s / w)
}

/// Bilinear value of an image at a fractional pixel.
fn bilinear(img: &Image, x: f64, y: f64) -> f64 {
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let g = |i, j| f64::from(img.get(i, j).expect("inside the image"));
    let a = g(x0, y0) + (g(x0 + 1, y0) - g(x0, y0)) * fx;
    let b = g(x0, y0 + 1) + (g(x0 + 1, y0 + 1) - g(x0, y0 + 1)) * fx;
    a + (b - a) * fy
}

/// A mask of the voxels whose whole box lies inside a region: `inside(p, margin)` says
/// whether `p` is at least `margin` mm inside.
fn interior_mask(vol: &Volume, margin: f64, inside: impl Fn([f64; 3], f64) -> bool) -> Mask {
    let [nx, ny, nz] = vol.dims;
    let mut mask = Mask::new(vol.dims);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let p = index_to_patient(vol, [i as f64, j as f64, k as f64]);
                if inside(p, margin) {
                    mask.set(i + nx * (j + ny * k), true);
                }
            }
        }
    }
    mask
}

/// Half the diagonal of a voxel's box.
fn half_diagonal(vol: &Volume) -> f64 {
    0.5 * vol.spacing.iter().map(|s| s * s).sum::<f64>().sqrt()
}

// ------------------------------------------------------------------------------------------
// Volume, distance, planes, curved reformat, calcium
// ------------------------------------------------------------------------------------------

#[test]
fn generated_sphere_volume_is_within_two_percent() {
    let (vol, report) = volume_of(TestPhantom::Sphere);
    check_geometry(&vol, &default_grid(TestPhantom::Sphere));
    assert!(report.gaps.is_empty() && !report.uneven && report.tilt_deg == 0.0);
    // stored unsigned with a −1024 intercept: the rescale must be applied
    assert_eq!(vol.intercept, -1024.0);
    let centre = voxel_of(&vol, SPHERE.centre);
    assert_eq!(
        f64::from(vol.value(centre[0], centre[1], centre[2])),
        SPHERE.value
    );
    let half = (SPHERE.value + SPHERE_BACKGROUND_HU) / 2.0;
    let expected = SPHERE.volume_ml();
    let t = threshold(&vol, half, f64::MAX).expect("threshold");
    let g = region_grow(&vol, centre, half, f64::MAX).expect("grow");
    assert_eq!(t.mask, g.mask, "the sphere is the only object");
    let err = g.volume_ml / expected - 1.0;
    eprintln!(
        "sphere: {:.4} mL vs {expected:.4} mL ({:+.3} %)",
        g.volume_ml,
        100.0 * err
    );
    assert!(err.abs() < 0.02, "{} mL vs {expected} mL", g.volume_ml);
}

#[test]
fn generated_bead_distances_are_within_half_a_millimetre() {
    let (vol, _) = volume_of(TestPhantom::Beads);
    // a double-oblique grid: the volume's axes are the Image Orientation, not x/y/z
    check_geometry(&vol, &default_grid(TestPhantom::Beads));
    assert!(close3(vol.axes[0], BEADS_ROW, 1e-6) && close3(vol.axes[1], BEADS_COL, 1e-6));
    let centroids: Vec<[f64; 3]> = BEADS
        .iter()
        .map(|b| {
            // every voxel the bead touches: above the (exact, noise-free) background
            let grown = region_grow(
                &vol,
                voxel_of(&vol, b.centre),
                BEADS_BACKGROUND_HU + 1.0,
                f64::MAX,
            )
            .expect("grow");
            let c = weighted_centroid(&vol, &grown.mask, BEADS_BACKGROUND_HU);
            eprintln!(
                "bead {}: centroid off by {:.3} mm",
                b.value,
                distance_mm(c, b.centre)
            );
            assert!(distance_mm(c, b.centre) < 0.5, "{c:?} vs {:?}", b.centre);
            c
        })
        .collect();
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let want = distance_mm(BEADS[a].centre, BEADS[b].centre);
        let got = distance_mm(centroids[a], centroids[b]);
        eprintln!("beads {a}-{b}: {got:.3} mm vs {want:.3} mm");
        assert!((got - want).abs() < 0.5, "beads {a}-{b}: {got} vs {want}");
    }
}

#[test]
fn generated_oblique_plane_through_three_beads_shows_their_values() {
    let (vol, _) = volume_of(TestPhantom::Beads);
    let [a, b, c] = BEADS.map(|b| b.centre);
    let px = 0.25;
    let plane = Plane::from_points(a, b, c, [241, 241], px).expect("plane");
    let img = reslice(&vol, &plane).expect("reslice");
    let half = |v: f64| (v + BEADS_BACKGROUND_HU) / 2.0;
    // pixels at or above half the bead's contrast within 2 r of `centre` on `img`
    let section = |img: &Image, centre: [f64; 2], value: f64, radius: f64| {
        let (cx, cy) = (centre[0].round() as isize, centre[1].round() as isize);
        let reach = (2.0 * radius / px) as isize;
        let mut n = 0;
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                let v = img.get((cx + dx) as usize, (cy + dy) as usize).expect("px");
                if f64::from(v) >= half(value) {
                    n += 1;
                }
            }
        }
        n as f64 * px * px
    };
    let shifted = |mm: f64| {
        let n = plane.normal();
        let origin = [0, 1, 2].map(|a| plane.origin[a] + mm * n[a]);
        reslice(&vol, &Plane { origin, ..plane }).expect("reslice")
    };
    let (above, below) = (shifted(0.75), shifted(-0.75));
    for bead in BEADS {
        let [x, y] = plane.pixel_of(bead.centre);
        assert!(
            close3(plane.point_at(x, y), bead.centre, 1e-9),
            "in the plane"
        );
        let want = TestPhantom::Beads.value_at(bead.centre, 0.0);
        assert_eq!(want, bead.value);
        let got = bilinear(&img, x, y);
        assert!(
            (got - want).abs() < 0.5,
            "{:?}: {got} vs {want}",
            bead.centre
        );
        // The plane cuts the bead through its centre: the largest section, π·r² less the
        // shrinking of a small ball's half-maximum contour under the sampling blur (voxel box
        // and trilinear interpolation, up to ~8 % for r = 3 mm); planes 0.75 mm to either
        // side cut smaller discs (−6 % analytically).
        let area = section(&img, [x, y], bead.value, bead.radius_mm);
        let want_area = PI * bead.radius_mm * bead.radius_mm;
        let (a_above, a_below) = (
            section(&above, [x, y], bead.value, bead.radius_mm),
            section(&below, [x, y], bead.value, bead.radius_mm),
        );
        eprintln!(
            "bead {}: section {area:.2} mm² vs π·r² {want_area:.2} mm², ±0.75 mm: {a_above:.2}, {a_below:.2}",
            bead.value
        );
        assert!(
            (area / want_area - 1.0).abs() < 0.1,
            "{area} vs {want_area}"
        );
        assert!(
            a_above < area && a_below < area,
            "{a_above}, {area}, {a_below}"
        );
    }
    // between the beads the plane shows the background
    let mid = plane.pixel_of(plane.origin);
    assert_eq!(
        TestPhantom::Beads.value_at(plane.origin, 0.0),
        BEADS_BACKGROUND_HU
    );
    assert!((bilinear(&img, mid[0], mid[1]) - BEADS_BACKGROUND_HU).abs() < 0.5);
}

#[test]
fn generated_tube_unrolls_straight_in_a_curved_reformat() {
    let (vol, _) = volume_of(TestPhantom::Tube);
    check_geometry(&vol, &default_grid(TestPhantom::Tube));
    let px = 0.4;
    let path = TUBE.path(361);
    let img = curved(&vol, &path, [0.0, 0.0, 1.0], 16.0, px).expect("curved");
    assert_eq!(img.height, 41);
    assert!((img.width as f64 - (TUBE.length_mm() / px).floor() - 1.0).abs() <= 1.0);
    let mid = img.height / 2;
    let half = (TUBE.value + TUBE_BACKGROUND_HU) / 2.0;
    let want_width = 2.0 * TUBE.radius_mm / px;
    let (mut widths, mut centres) = (Vec::new(), Vec::new());
    for x in 0..img.width {
        let col: Vec<f64> = (0..img.height)
            .map(|y| f64::from(img.get(x, y).expect("px")))
            .collect();
        assert!(
            (col[mid] - TUBE.value).abs() < 0.5,
            "column {x}: centre line {} vs {}",
            col[mid],
            TUBE.value
        );
        widths.push(col.iter().filter(|&&v| v >= half).count() as f64);
        let w: Vec<f64> = col.iter().map(|v| v - TUBE_BACKGROUND_HU).collect();
        let total: f64 = w.iter().sum();
        centres.push(w.iter().enumerate().map(|(y, v)| y as f64 * v).sum::<f64>() / total);
    }
    let range = |v: &[f64]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            })
    };
    let (wlo, whi) = range(&widths);
    let (clo, chi) = range(&centres);
    eprintln!(
        "tube: width {wlo}..{whi} px (want {want_width}), centre row {clo:.3}..{chi:.3} (want {mid})"
    );
    assert!(whi - wlo <= 1.0, "width varies {wlo}..{whi} px");
    assert!(
        (wlo - want_width).abs() <= 1.0 && (whi - want_width).abs() <= 1.0,
        "width {wlo}..{whi} px vs {want_width}"
    );
    assert!(
        (clo - mid as f64).abs() < 0.5 && (chi - mid as f64).abs() < 0.5,
        "centre row {clo}..{chi} vs {mid}"
    );
}

/// Agatston on the calcium phantom against the analytic score.
///
/// A lesion of peak `h` on background `b` is cut by the 130 HU threshold where a pixel's
/// covered fraction reaches `f = (130 − b)/(h − b)`. For an edge along a pixel axis the
/// counted region is the disc shrunk by `δ = (f − ½)·pixel`: 150 HU lesions lose ~7 % of
/// their area, 450 HU ones gain ~10 % (the plain `π·r²` score is 3 % low). The expectation
/// uses `π(r − δ)²` per slice; what is left is the edge's orientation (δ differs where the
/// edge runs diagonally) and counting pixel centres of a 6–9 pixel radius disc: a few pixels
/// per disc. Tolerances: 6 pixels (1.5 mm²) per lesion and slice, 2 % on the total.
#[test]
fn generated_calcium_phantom_scores_the_analytic_agatston() {
    let (vol, _) = volume_of(TestPhantom::Calcium);
    let grid = default_grid(TestPhantom::Calcium);
    check_geometry(&vol, &grid);
    let opts = AgatstonOptions::default();
    let s = agatston(&vol, &opts).expect("agatston");
    let px = grid.pixel_spacing[0];
    let scale = grid.slice_spacing_mm / opts.reference_thickness_mm.expect("3 mm");
    let (mut nominal, mut expected) = (0.0, 0.0);
    let mut lesions = 0;
    for l in CALCIUM_LESIONS {
        // Agatston 1990: peak 130–199 HU → 1, 200–299 → 2, 300–399 → 3, ≥ 400 → 4
        let weight: u8 = if l.value < 130.0 {
            0
        } else {
            (l.value / 100.0).floor().min(4.0) as u8
        };
        if weight == 0 {
            assert!(
                s.lesions.iter().all(|x| x.peak_hu != l.value),
                "the sub-threshold lesion is not scored"
            );
            continue;
        }
        let slices = (2.0 * l.half_height_mm / grid.slice_spacing_mm).round() as usize;
        let f = (opts.threshold_hu - CALCIUM_BACKGROUND_HU) / (l.value - CALCIUM_BACKGROUND_HU);
        let r_eff = l.radius_mm - (f - 0.5) * px;
        let area = PI * r_eff * r_eff;
        nominal += f64::from(weight) * l.area_mm2() * slices as f64 * scale;
        expected += f64::from(weight) * area * slices as f64 * scale;
        // one lesion on each slice it spans, with its weight and area
        let spanned: Vec<usize> = (0..vol.dims[2])
            .filter(|&k| {
                let z = index_to_patient(&vol, [0.0, 0.0, k as f64])[2];
                (z - l.centre[2]).abs() < l.half_height_mm
            })
            .collect();
        assert_eq!(spanned.len(), slices);
        let found: Vec<_> = s.lesions.iter().filter(|x| x.peak_hu == l.value).collect();
        assert_eq!(
            found.iter().map(|x| x.slice).collect::<Vec<_>>(),
            spanned,
            "{l:?}"
        );
        for x in &found {
            eprintln!(
                "{} HU slice {}: {} mm² vs model {area:.3} ({:+.2} %), nominal {:.3}",
                l.value,
                x.slice,
                x.area_mm2,
                100.0 * (x.area_mm2 / area - 1.0),
                l.area_mm2()
            );
        }
        for x in &found {
            assert_eq!(x.weight, weight);
            assert!(
                (x.area_mm2 - area).abs() <= 6.0 * px * px,
                "{} HU: {} mm² vs {area} mm²",
                l.value,
                x.area_mm2
            );
        }
        lesions += slices;
    }
    assert_eq!(s.lesions.len(), lesions);
    eprintln!(
        "agatston: {:.2} vs expected {expected:.2} ({:+.3} %), nominal π·r² {nominal:.2}",
        s.total,
        100.0 * (s.total / expected - 1.0)
    );
    assert!(
        (s.total / expected - 1.0).abs() < 0.02,
        "{} vs {expected}",
        s.total
    );
}

// ------------------------------------------------------------------------------------------
// Slice order and missing slices
// ------------------------------------------------------------------------------------------

#[test]
fn generated_series_builds_the_same_in_any_slice_order() {
    let ordered = frames(&TestPhantom::Beads.study("order"));
    let mut shuffled = ordered.clone();
    let mut rng = XorShift::new(0x5EED);
    for i in (1..shuffled.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        shuffled.swap(i, j);
    }
    assert_ne!(
        shuffled
            .iter()
            .map(|f| f.instance_number)
            .collect::<Vec<_>>(),
        ordered
            .iter()
            .map(|f| f.instance_number)
            .collect::<Vec<_>>()
    );
    let (a, _) = build_frames(ordered);
    let (b, _) = build_frames(shuffled);
    assert_eq!(a, b);
    check_geometry(&b, &default_grid(TestPhantom::Beads));
}

#[test]
fn generated_series_with_a_missing_slice_is_reported() {
    let mut all = frames(&TestPhantom::Sphere.study("gap"));
    let removed = all.remove(20);
    assert_eq!(removed.instance_number, Some(21));
    let slices = |f: &[SeriesFrame]| f.iter().map(|f| f.slice.clone()).collect::<Vec<_>>();
    match build(slices(&all), &BuildOptions::default()) {
        Err(VolumeError::MissingSlices { count, first_after }) => {
            assert_eq!((count, first_after), (1, 19));
        }
        other => panic!("expected a missing slice, got {other:?}"),
    }
    let lenient = BuildOptions {
        allow_gaps: true,
        ..Default::default()
    };
    let (vol, report) = build(slices(&all), &lenient).expect("volume with a gap");
    match report.gaps.as_slice() {
        [
            Gap {
                after: 19,
                step_mm,
                missing: 1,
            },
        ] => assert!((step_mm - 2.5).abs() < 1e-3, "{step_mm}"),
        other => panic!("one gap of one slice after sorted slice 19, got {other:?}"),
    }
    assert_eq!(vol.dims[2], 47);
}

// ------------------------------------------------------------------------------------------
// Registration (CT → MR, known shift) and 4D (time-intensity curves)
// ------------------------------------------------------------------------------------------

#[test]
fn generated_registration_recovers_the_known_shift_across_modalities() {
    use radris_imaging::fusion::{ColorMap, fuse, resample_to};
    use radris_imaging::register::{RegisterOptions, register_rigid};

    let (ct, mr) = registration_pair("generated");
    let (ct_frames, mr_frames) = (frames(&ct), frames(&mr));
    assert_ne!(
        ct_frames[0].slice.frame_of_reference, mr_frames[0].slice.frame_of_reference,
        "two frames of reference"
    );
    let (fixed, _) = build_frames(ct_frames);
    let (moving, _) = build_frames(mr_frames);
    check_geometry(&fixed, &default_grid(TestPhantom::RegistrationCt));
    check_geometry(&moving, &default_grid(TestPhantom::RegistrationMr));
    let reg = register_rigid(&fixed, &moving, &RegisterOptions::default()).expect("register");
    let t = reg.transform;
    // what matters is where the anatomy lands: the displacement at each structure's centre
    // (a rotation about the patient origin would move the translation itself)
    let mut worst: f64 = 0.0;
    for s in REGISTRATION_STRUCTURES {
        let want = [0, 1, 2].map(|a| s.centre[a] + REGISTRATION_SHIFT_MM[a]);
        worst = worst.max(distance_mm(t.apply(s.centre), want));
    }
    let translation_err = distance_mm(t.translation, REGISTRATION_SHIFT_MM);
    eprintln!(
        "registration: translation {:?} (error {translation_err:.3} mm), rotation {:.3}°, \
         worst displacement error {worst:.3} mm",
        t.translation,
        t.rotation_angle_deg()
    );
    assert!(worst < 1.0, "displacement error {worst} mm");
    assert!(t.rotation_angle_deg() < 1.0);
    // fusion: the MR resampled onto the CT shows each structure's MR signal where the CT has it
    let fused = resample_to(&moving, &fixed, &t);
    for s in &REGISTRATION_STRUCTURES[1..] {
        let got = f64::from(fused.sample_patient(s.centre).expect("inside"));
        assert!(
            (got - s.mr_signal).abs() < 0.05 * s.mr_signal.max(100.0),
            "{s:?}: {got}"
        );
    }
    // and the fused picture: an axial plane through the fluid, MR in grey over the CT, the
    // fluid (brightest MR) white where the CT has it
    let fluid = REGISTRATION_STRUCTURES[3];
    let plane = Plane::axial(fluid.centre, 81, 81, 0.5);
    let base = reslice(&fixed, &plane).expect("reslice CT");
    let overlay = reslice(&fused, &plane).expect("reslice MR");
    let rgba = fuse(
        &base,
        &overlay,
        (40.0, 400.0),
        (0.0, fluid.mr_signal),
        ColorMap::Grayscale,
        1.0,
    )
    .expect("fuse");
    let centre = 4 * (40 + 81 * 40);
    assert!(
        rgba.data[centre] >= 250,
        "{:?}",
        &rgba.data[centre..centre + 4]
    );
}

#[test]
fn generated_dynamic_series_follows_the_gamma_variate() {
    use radris_imaging::temporal::{PhaseKey, build_phases, time_intensity_curve};

    let mut all = frames(&TestPhantom::Dynamic.study("generated"));
    assert_eq!(
        all.len(),
        DYNAMIC_PHASES as usize * TestPhantom::Dynamic.default_size().0 as usize
    );
    // arrival order must not matter
    all.reverse();
    let v4 = build_phases(all, &BuildOptions::default()).expect("4D");
    assert_eq!(v4.len(), DYNAMIC_PHASES as usize);
    for (n, (key, t, vol)) in v4.phases.iter().enumerate() {
        assert_eq!(*key, PhaseKey::TemporalPosition(n as i64 + 1));
        assert!(
            (t - TestPhantom::Dynamic.time_s(n as u32)).abs() < 1e-6,
            "{t}"
        );
        check_geometry(vol, &default_grid(TestPhantom::Dynamic));
    }
    let vol = v4.phase(0).expect("phase 0");
    let in_plane = 0.5 * vol.spacing[0].hypot(vol.spacing[1]);
    let artery = interior_mask(vol, in_plane, |p, m| {
        (p[0] - DYNAMIC_ARTERY.centre[0]).hypot(p[1] - DYNAMIC_ARTERY.centre[1]) + m
            <= DYNAMIC_ARTERY.radius_mm
    });
    let tissue = interior_mask(vol, half_diagonal(vol), |p, m| {
        distance_mm(p, DYNAMIC_TISSUE.centre) + m <= DYNAMIC_TISSUE.radius_mm
    });
    assert!(artery.count() > 100 && tissue.count() > 100);
    for (name, mask, baseline, curve) in [
        (
            "artery",
            &artery,
            DYNAMIC_ARTERY.value,
            DYNAMIC_ARTERY_CURVE,
        ),
        (
            "tissue",
            &tissue,
            DYNAMIC_TISSUE.value,
            DYNAMIC_TISSUE_CURVE,
        ),
    ] {
        let tic = time_intensity_curve(&v4, mask).expect("curve");
        assert_eq!(tic.len(), DYNAMIC_PHASES as usize);
        let mut worst: f64 = 0.0;
        for p in &tic {
            let want = baseline + curve.at(p.time_s);
            // whole-voxel interiors hold the curve's value rounded to whole HU
            worst = worst.max((p.mean - want).abs());
            assert!(p.sd < 1e-9, "{name}: uniform inside at {} s", p.time_s);
        }
        eprintln!("{name}: worst TIC error {worst:.3} HU");
        assert!(worst <= 0.5 + 1e-6, "{name}: {worst} HU");
        // the peak phase is the sample nearest the declared peak time
        let peak = tic
            .iter()
            .max_by(|a, b| a.mean.total_cmp(&b.mean))
            .expect("points");
        assert!(
            (peak.time_s - (curve.t0_s + curve.rise_s)).abs()
                <= TestPhantom::Dynamic.time_s(1) / 2.0 + 1e-9,
            "{name}: peak at {} s",
            peak.time_s
        );
    }
}
