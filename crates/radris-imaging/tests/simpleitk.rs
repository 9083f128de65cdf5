//! Cross-check of the MPR against SimpleITK: the same volume (anisotropic spacing, rotated
//! grid axes, non-zero origin) resampled on the same oblique planes and slabs by
//! `sitk.Resample` with linear interpolation (`tests/simpleitk_resample.py`).
//!
//! Needs `python3` (or `$RADRIS_PYTHON`) with numpy and SimpleITK (`pip install SimpleITK
//! numpy`); without them the test fails and says so: CI installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use radris_imaging::mpr::{Image, Plane, SlabMode, reslice, slab};
use radris_imaging::volume::{Volume, Voxels};

const DIMS: [usize; 3] = [60, 52, 40];
const SPACING: [f64; 3] = [0.8, 0.65, 1.5];
const ORIGIN: [f64; 3] = [-23.5, 11.25, 40.0];

/// Grid axes: the identity rotated 25° about z, then 15° about x (an oblique acquisition).
fn axes() -> [[f64; 3]; 3] {
    let (a, b) = (25f64.to_radians(), 15f64.to_radians());
    let rz = |p: [f64; 3]| {
        [
            a.cos() * p[0] - a.sin() * p[1],
            a.sin() * p[0] + a.cos() * p[1],
            p[2],
        ]
    };
    let rx = |p: [f64; 3]| {
        [
            p[0],
            b.cos() * p[1] - b.sin() * p[2],
            b.sin() * p[1] + b.cos() * p[2],
        ]
    };
    [
        rx(rz([1.0, 0.0, 0.0])),
        rx(rz([0.0, 1.0, 0.0])),
        rx(rz([0.0, 0.0, 1.0])),
    ]
}

/// Smooth waves plus a blurred-edge ellipsoid, in HU-like units (range about −900..900).
fn field(p: [f64; 3]) -> f64 {
    let c = [0.0, 30.0, 60.0];
    let q = [
        (p[0] - c[0]) / 14.0,
        (p[1] - c[1]) / 11.0,
        (p[2] - c[2]) / 18.0,
    ];
    let r = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt();
    let blob = 500.0 * (1.5 * (1.0 - r)).tanh();
    blob + 200.0 * (0.21 * p[0] + 0.05 * p[2]).sin() + 150.0 * (0.17 * p[1] - 0.11 * p[2]).cos()
}

fn volume_f32() -> Volume {
    Volume::from_fn(DIMS, SPACING, ORIGIN, axes(), |p| field(p) as f32)
}

/// The same field stored as i16 with a CT-like rescale (value = stored − 1024).
fn volume_i16() -> Volume {
    let f = volume_f32();
    let Voxels::F32(v) = &f.voxels else {
        unreachable!("from_fn stores f32")
    };
    Volume {
        voxels: Voxels::I16(v.iter().map(|&x| (x + 1024.0).round() as i16).collect()),
        slope: 1.0,
        intercept: -1024.0,
        ..f
    }
}

fn centre(vol: &Volume) -> [f64; 3] {
    let d = vol.dims;
    vol.index_to_patient([
        (d[0] - 1) as f64 / 2.0,
        (d[1] - 1) as f64 / 2.0,
        (d[2] - 1) as f64 / 2.0,
    ])
}

/// One plane (or slab) to compare.
struct Case {
    name: &'static str,
    plane: Plane,
    /// Slab thickness (mm) and mode; `None` for a plain reslice.
    slab: Option<(f64, SlabMode)>,
}

fn cases(vol: &Volume) -> Vec<Case> {
    let c = centre(vol);
    let shifted = [c[0] + 3.1, c[1] - 2.2, c[2] + 1.7];
    let oblique = |normal, up, size: [usize; 2], px| {
        Plane::oblique(shifted, normal, up, size, px).expect("valid oblique plane")
    };
    vec![
        Case {
            name: "oblique",
            plane: oblique([0.3, -0.5, 0.81], [0.0, 0.0, 1.0], [71, 63], 0.55),
            slab: None,
        },
        Case {
            name: "oblique_steep",
            plane: oblique([0.9, 0.2, -0.35], [0.1, 1.0, 0.3], [64, 80], 0.7),
            slab: None,
        },
        Case {
            name: "axial",
            plane: Plane::axial(c, 80, 72, 0.6),
            slab: None,
        },
        Case {
            name: "slab_average",
            plane: oblique([0.2, 0.4, 0.9], [0.0, 1.0, 0.0], [60, 60], 0.6),
            slab: Some((6.0, SlabMode::Average)),
        },
        Case {
            name: "slab_mip",
            plane: oblique([-0.4, 0.3, 0.85], [0.0, 1.0, 0.0], [60, 60], 0.6),
            slab: Some((5.0, SlabMode::Mip)),
        },
    ]
}

fn json_v3(v: [f64; 3]) -> String {
    format!("[{:?}, {:?}, {:?}]", v[0], v[1], v[2])
}

/// Same sample count as `mpr::slab`: steps no larger than the smallest spacing.
fn slab_samples(vol: &Volume, thickness: f64) -> usize {
    let min_sp = vol.spacing.iter().copied().fold(f64::INFINITY, f64::min);
    (thickness / min_sp).ceil() as usize + 1
}

fn write_inputs(dir: &Path, vol: &Volume, cases: &[Case]) {
    let (dtype, bytes): (&str, Vec<u8>) = match &vol.voxels {
        Voxels::F32(v) => ("float32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Voxels::I16(v) => ("int16", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Voxels::U16(v) => ("uint16", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    std::fs::write(dir.join("volume.raw"), bytes).expect("write volume.raw");
    let planes: Vec<String> = cases
        .iter()
        .map(|c| {
            let p = &c.plane;
            let (thickness, samples, mode) = match c.slab {
                None => (0.0, 1, "none"),
                Some((t, m)) => (
                    t,
                    slab_samples(vol, t),
                    if m == SlabMode::Mip { "max" } else { "mean" },
                ),
            };
            format!(
                "{{\"name\": \"{}\", \"origin\": {}, \"u\": {}, \"v\": {}, \"width\": {}, \
                 \"height\": {}, \"pixel_mm\": {:?}, \"thickness\": {thickness:?}, \
                 \"samples\": {samples}, \"mode\": \"{mode}\"}}",
                c.name,
                json_v3(p.origin),
                json_v3(p.u),
                json_v3(p.v),
                p.width,
                p.height,
                p.pixel_mm
            )
        })
        .collect();
    let header = format!(
        "{{\"dims\": [{}, {}, {}], \"spacing\": {}, \"origin\": {}, \"axes\": [{}, {}, {}], \
         \"dtype\": \"{dtype}\", \"slope\": {:?}, \"intercept\": {:?}, \"planes\": [{}]}}",
        vol.dims[0],
        vol.dims[1],
        vol.dims[2],
        json_v3(vol.spacing),
        json_v3(vol.origin),
        json_v3(vol.axes[0]),
        json_v3(vol.axes[1]),
        json_v3(vol.axes[2]),
        vol.slope,
        vol.intercept,
        planes.join(", ")
    );
    std::fs::write(dir.join("header.json"), header).expect("write header.json");
}

fn run_simpleitk(dir: &Path) {
    let python = std::env::var("RADRIS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/simpleitk_resample.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{python}` ({e}): the SimpleITK comparison needs python3 with \
                 numpy and SimpleITK (`pip install SimpleITK numpy`, or set RADRIS_PYTHON)"
            )
        });
    assert!(
        out.status.success(),
        "`{python} {}` failed ({}); it needs numpy and SimpleITK (`pip install SimpleITK \
         numpy`).\nstdout:\n{}\nstderr:\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_f32(path: &Path, n: usize) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(bytes.len(), 4 * n, "{}: size", path.display());
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Whether `p` (patient mm) lies at least `margin` voxels inside the grid on every axis:
/// away from the edges, where SimpleITK (half a voxel of extrapolation) and the MPR (NaN
/// beyond the outer voxel centres) legitimately differ.
fn well_inside(vol: &Volume, p: [f64; 3], margin: f64) -> bool {
    let idx = vol.patient_to_index(p);
    (0..3).all(|a| idx[a] >= margin && idx[a] <= (vol.dims[a] - 1) as f64 - margin)
}

/// Compares one case; returns (pixels compared, max |diff|).
fn compare(vol: &Volume, case: &Case, ours: &Image, theirs: &[f32], range: f64) -> (usize, f64) {
    let p = &case.plane;
    let n = p.normal();
    let half = case.slab.map_or(0.0, |(t, _)| t / 2.0);
    let (mut compared, mut max_diff, mut worst) = (0, 0.0f64, (0, 0));
    for r in 0..p.height {
        for c in 0..p.width {
            let q = p.point_at(c as f64, r as f64);
            let ends = [-half, half].map(|t| [q[0] + t * n[0], q[1] + t * n[1], q[2] + t * n[2]]);
            if !ends.iter().all(|&e| well_inside(vol, e, 1.0)) {
                continue;
            }
            let a = f64::from(ours.get(c, r).expect("pixel inside the image"));
            let b = f64::from(theirs[c + p.width * r]);
            assert!(
                a.is_finite() && b.is_finite(),
                "{}: pixel ({c}, {r}) well inside the volume: ours {a}, SimpleITK {b}",
                case.name
            );
            compared += 1;
            if (a - b).abs() > max_diff {
                max_diff = (a - b).abs();
                worst = (c, r);
            }
        }
    }
    assert!(
        compared * 4 >= p.width * p.height,
        "{}: only {compared} pixels lie well inside the volume; the case does not test much",
        case.name
    );
    assert!(
        max_diff < 0.005 * range,
        "{}: max |ours − SimpleITK| = {max_diff:.4} at pixel {worst:?} (range {range:.1}, \
         tolerance 0.5%)",
        case.name
    );
    (compared, max_diff)
}

fn check(label: &str, vol: &Volume) {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("radris-simpleitk-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let cases = cases(vol);
    write_inputs(&dir, vol, &cases);
    run_simpleitk(&dir);
    let (lo, hi) = (0..vol.voxel_count()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), i| {
        let x = f64::from(vol.voxels.stored(i)) * vol.slope + vol.intercept;
        (l.min(x), h.max(x))
    });
    let range = hi - lo;
    for case in &cases {
        let ours = match case.slab {
            None => reslice(vol, &case.plane),
            Some((t, mode)) => slab(vol, &case.plane, t, mode),
        }
        .expect("our resampling");
        let theirs = read_f32(
            &dir.join(format!("{}.raw", case.name)),
            case.plane.width * case.plane.height,
        );
        let (n, d) = compare(vol, case, &ours, &theirs, range);
        println!(
            "{label} {}: {n} pixels, max |diff| {d:.5} (range {range:.1})",
            case.name
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oblique_planes_and_slabs_match_simpleitk_on_a_rotated_anisotropic_f32_volume() {
    check("f32", &volume_f32());
}

#[test]
fn oblique_planes_and_slabs_match_simpleitk_on_a_rescaled_i16_volume() {
    check("i16", &volume_i16());
}
