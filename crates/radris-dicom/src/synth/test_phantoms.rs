//! Geometry-test phantoms: analytic objects with exactly known ground truth, written as
//! ordinary CT and MR series by the same [`StudySpec::generate`] pipeline as the demo
//! phantoms (Image Position/Orientation, Pixel Spacing, Rescale, Frame of Reference, temporal
//! keys), so the imaging engine can be checked end to end: Part-10 bytes → slices → volume →
//! measurement, against numbers that do not come from the code under test.
//!
//! * [`TestPhantom::Sphere`]: a [`SPHERE`] in water (volume), stored unsigned with a
//!   −1024 HU intercept.
//! * [`TestPhantom::Beads`]: three [`BEADS`] (distance, oblique plane) on a double-oblique
//!   grid ([`BEADS_ROW`], [`BEADS_COL`]) with rectangular pixels (0.75 mm between rows,
//!   0.8 mm between columns).
//! * [`TestPhantom::Tube`]: a [`TUBE`] along a circular arc in a tilted plane (curved
//!   reformat).
//! * [`TestPhantom::Calcium`]: [`CALCIUM_LESIONS`], cylinders of 110–450 HU in soft tissue on
//!   3 mm slices (Agatston).
//! * [`TestPhantom::RegistrationCt`] / [`TestPhantom::RegistrationMr`]: the same
//!   [`REGISTRATION_STRUCTURES`] as CT and as a T2-like MR on another grid, the MR content
//!   shifted by [`REGISTRATION_SHIFT_MM`]; [`registration_pair`] puts them in two studies
//!   (two Frames of Reference).
//! * [`TestPhantom::Dynamic`]: a 4D CT perfusion series, [`DYNAMIC_PHASES`] phases, an
//!   artery and a tissue ball enhancing along gamma-variate curves.
//!
//! Every grid is anisotropic (0.8 × 0.8 × 1.25 mm unless said otherwise) with a non-zero
//! origin. Voxels are box averages over their footprint (pixel spacing × slice spacing):
//! voxels near an edge are supersampled 5 × 5 × 5, so partial volume behaves like a scanner's
//! and a half-way threshold recovers the true boundary. The test phantoms are noise-free, so
//! tolerances in tests come from geometry alone.
//!
//! ```
//! use radris_dicom::synth::test_phantoms::{SPHERE, TestPhantom};
//! let spec = TestPhantom::Sphere.study("doc");
//! assert_eq!(spec.instance_count(), 48);
//! assert!((SPHERE.volume_ml() - 7.238).abs() < 1e-3);
//! ```

use std::f64::consts::PI;

use super::{Phantom, SeriesSpec, StudySpec};

mod images;
pub(super) use images::{image_count, put_image};

/// A geometry-test phantom; see the module documentation for the ground truth of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestPhantom {
    Sphere,
    Beads,
    Tube,
    Calcium,
    RegistrationCt,
    RegistrationMr,
    Dynamic,
}

/// A ball: the voxels whose points lie within `radius_mm` of `centre` have `value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ball {
    pub centre: [f64; 3],
    pub radius_mm: f64,
    /// Modality units (HU for CT).
    pub value: f64,
}

impl Ball {
    /// 4/3·π·r³ in mL.
    pub fn volume_ml(&self) -> f64 {
        4.0 / 3.0 * PI * self.radius_mm.powi(3) / 1000.0
    }

    fn signed_distance(&self, p: [f64; 3]) -> f64 {
        norm(sub(p, self.centre)) - self.radius_mm
    }
}

/// A cylinder with its axis along patient z (axial slices cut it into discs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cylinder {
    /// Centre of the axis segment.
    pub centre: [f64; 3],
    pub radius_mm: f64,
    /// Half the length along z.
    pub half_height_mm: f64,
    pub value: f64,
}

impl Cylinder {
    /// Cross-section area π·r² (mm²).
    pub fn area_mm2(&self) -> f64 {
        PI * self.radius_mm * self.radius_mm
    }

    fn contains(&self, p: [f64; 3]) -> bool {
        let (dx, dy) = (p[0] - self.centre[0], p[1] - self.centre[1]);
        dx * dx + dy * dy <= self.radius_mm * self.radius_mm
            && (p[2] - self.centre[2]).abs() <= self.half_height_mm
    }

    /// A lower bound of the distance from `p` to the surface.
    fn edge_distance(&self, p: [f64; 3]) -> f64 {
        let rho = (p[0] - self.centre[0]).hypot(p[1] - self.centre[1]);
        let dz = (p[2] - self.centre[2]).abs();
        (rho - self.radius_mm)
            .abs()
            .min((dz - self.half_height_mm).abs())
    }
}

/// A tube of radius `radius_mm` around a circular arc: centre `centre`, radius
/// `ring_radius_mm`, in the plane spanned by the orthonormal `e1`, `e2`, from angle
/// `start_rad` to `end_rad` (measured from `e1` towards `e2`), with round ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TubeArc {
    pub centre: [f64; 3],
    pub e1: [f64; 3],
    pub e2: [f64; 3],
    pub ring_radius_mm: f64,
    pub start_rad: f64,
    pub end_rad: f64,
    pub radius_mm: f64,
    pub value: f64,
}

impl TubeArc {
    /// The centre line at angle `a` (radians).
    pub fn point(&self, a: f64) -> [f64; 3] {
        let r = self.ring_radius_mm;
        add(
            self.centre,
            add(scale(self.e1, r * a.cos()), scale(self.e2, r * a.sin())),
        )
    }

    /// Unit normal of the arc's plane, `e1 × e2`.
    pub fn normal(&self) -> [f64; 3] {
        cross(self.e1, self.e2)
    }

    /// Length of the centre line (mm).
    pub fn length_mm(&self) -> f64 {
        self.ring_radius_mm * (self.end_rad - self.start_rad)
    }

    /// `n ≥ 2` points evenly spaced along the centre line, start to end.
    pub fn path(&self, n: usize) -> Vec<[f64; 3]> {
        let n = n.max(2);
        (0..n)
            .map(|i| {
                let t = i as f64 / (n - 1) as f64;
                self.point(self.start_rad + t * (self.end_rad - self.start_rad))
            })
            .collect()
    }

    /// Distance from `p` to the centre line (arc).
    pub fn centre_line_distance(&self, p: [f64; 3]) -> f64 {
        let q = sub(p, self.centre);
        let (x, y) = (dot(q, self.e1), dot(q, self.e2));
        let h = dot(q, self.normal());
        let a = self.start_rad + (y.atan2(x) - self.start_rad).rem_euclid(2.0 * PI);
        if a <= self.end_rad {
            ((x.hypot(y) - self.ring_radius_mm).powi(2) + h * h).sqrt()
        } else {
            norm(sub(p, self.point(self.start_rad))).min(norm(sub(p, self.point(self.end_rad))))
        }
    }
}

/// An ellipsoid with axes along patient x, y, z and its value in both modalities of the
/// registration pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Structure {
    pub centre: [f64; 3],
    pub semi_axes_mm: [f64; 3],
    pub ct_hu: f64,
    /// T2-like MR signal (arbitrary units).
    pub mr_signal: f64,
}

impl Structure {
    /// `Σ (Δ/semi-axis)²`, ≤ 1 inside.
    fn level(&self, p: [f64; 3]) -> f64 {
        (0..3)
            .map(|a| ((p[a] - self.centre[a]) / self.semi_axes_mm[a]).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// Lower bound of the distance to the surface: the level's gradient is at most
    /// 1 / (smallest semi-axis).
    fn edge_distance(&self, p: [f64; 3]) -> f64 {
        let smallest = self
            .semi_axes_mm
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        (self.level(p) - 1.0).abs() * smallest
    }
}

/// A gamma-variate enhancement curve, normalised so its maximum is `peak` at
/// `t0_s + rise_s`: `peak · s^α · e^{α(1 − s)}` with `s = (t − t0) / rise`, 0 before `t0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaVariate {
    pub t0_s: f64,
    pub rise_s: f64,
    pub alpha: f64,
    pub peak: f64,
}

impl GammaVariate {
    /// Enhancement at `t_s` seconds.
    pub fn at(&self, t_s: f64) -> f64 {
        let s = (t_s - self.t0_s) / self.rise_s;
        if s <= 0.0 {
            0.0
        } else {
            self.peak * s.powf(self.alpha) * (self.alpha * (1.0 - s)).exp()
        }
    }
}

/// The sphere of [`TestPhantom::Sphere`], in water ([`SPHERE_BACKGROUND_HU`]).
pub const SPHERE: Ball = Ball {
    centre: [13.63, -21.07, 43.31],
    radius_mm: 12.0,
    value: 200.0,
};
pub const SPHERE_BACKGROUND_HU: f64 = 0.0;

/// The markers of [`TestPhantom::Beads`] in soft tissue ([`BEADS_BACKGROUND_HU`]); each is
/// large enough (3 mm) that trilinear sampling at its centre reads exactly its value.
pub const BEADS: [Ball; 3] = [
    Ball {
        centre: [-42.3, 9.4, -89.4],
        radius_mm: 3.0,
        value: 600.0,
    },
    Ball {
        centre: [-20.3, 7.3, -68.65],
        radius_mm: 3.0,
        value: 900.0,
    },
    Ball {
        centre: [-33.2, 29.3, -75.4],
        radius_mm: 3.0,
        value: 1200.0,
    },
];
pub const BEADS_BACKGROUND_HU: f64 = 40.0;
/// Image Orientation (Patient) of [`TestPhantom::Beads`]: double oblique (36.9° about z,
/// then 16.3° about the row direction); exact in decimal.
pub const BEADS_ROW: [f64; 3] = [0.8, 0.6, 0.0];
pub const BEADS_COL: [f64; 3] = [-0.576, 0.768, 0.28];

/// The tube of [`TestPhantom::Tube`]: three quarters of a circle of radius 20 mm in a plane
/// tilted 36.9° from axial (normal (0, 0.6, 0.8)), tube radius 3 mm, in soft tissue
/// ([`TUBE_BACKGROUND_HU`]).
pub const TUBE: TubeArc = TubeArc {
    centre: [5.37, 9.19, 101.9],
    e1: [1.0, 0.0, 0.0],
    e2: [0.0, 0.8, -0.6],
    ring_radius_mm: 20.0,
    start_rad: -0.25 * PI,
    end_rad: 1.25 * PI,
    radius_mm: 3.0,
    value: 350.0,
};
pub const TUBE_BACKGROUND_HU: f64 = 40.0;

/// The lesions of [`TestPhantom::Calcium`] in soft tissue ([`CALCIUM_BACKGROUND_HU`]): peaks
/// of 150, 250, 350 and 450 HU (Agatston weights 1–4) and a 110 HU one below the 130 HU
/// threshold. The grid's slices are 3 mm thick with boundaries at z = 45 + 3·m mm, and every
/// lesion starts and ends on a boundary, so each is a whole number of slices:
/// 2, 3, 1, 2 (and 8) slices.
pub const CALCIUM_LESIONS: [Cylinder; 5] = [
    Cylinder {
        centre: [-14.0, 13.0, 54.0],
        radius_mm: 4.5,
        half_height_mm: 3.0,
        value: 150.0,
    },
    Cylinder {
        centre: [10.0, 13.0, 58.5],
        radius_mm: 4.0,
        half_height_mm: 4.5,
        value: 250.0,
    },
    Cylinder {
        centre: [-14.0, 37.0, 64.5],
        radius_mm: 3.5,
        half_height_mm: 1.5,
        value: 350.0,
    },
    Cylinder {
        centre: [10.0, 37.0, 60.0],
        radius_mm: 3.0,
        half_height_mm: 3.0,
        value: 450.0,
    },
    Cylinder {
        centre: [-2.0, 25.0, 60.0],
        radius_mm: 4.0,
        half_height_mm: 12.0,
        value: 110.0,
    },
];
pub const CALCIUM_BACKGROUND_HU: f64 = 40.0;

/// The content of the registration pair, later entries drawn over earlier ones: a body, bone,
/// fat, fluid and a lesion. The CT shows `ct_hu`; the MR shows `mr_signal` (a different,
/// non-monotonic mapping: bone dark, fat and fluid bright) with everything moved by
/// [`REGISTRATION_SHIFT_MM`]. Outside the body: −1000 HU, MR 0.
pub const REGISTRATION_STRUCTURES: [Structure; 5] = [
    Structure {
        centre: [10.6, -5.9, -148.7],
        semi_axes_mm: [26.0, 20.0, 27.0],
        ct_hu: 40.0,
        mr_signal: 400.0,
    },
    Structure {
        centre: [0.6, 0.1, -153.7],
        semi_axes_mm: [5.0, 5.0, 9.0],
        ct_hu: 700.0,
        mr_signal: 60.0,
    },
    Structure {
        centre: [19.6, -12.9, -140.7],
        semi_axes_mm: [8.0, 5.0, 7.0],
        ct_hu: -100.0,
        mr_signal: 900.0,
    },
    Structure {
        centre: [16.6, 2.1, -160.7],
        semi_axes_mm: [5.0, 5.0, 5.0],
        ct_hu: 10.0,
        mr_signal: 1600.0,
    },
    Structure {
        centre: [4.6, -13.9, -136.7],
        semi_axes_mm: [4.0, 4.0, 4.0],
        ct_hu: 80.0,
        mr_signal: 700.0,
    },
];
/// How far the MR's content is moved relative to the CT's (mm, patient LPS): a structure at
/// `p` on the CT is at `p + REGISTRATION_SHIFT_MM` on the MR. A rigid registration of the MR
/// (moving) to the CT (fixed) that maps fixed points to moving points therefore has exactly
/// this translation and no rotation.
pub const REGISTRATION_SHIFT_MM: [f64; 3] = [3.7, -2.4, 5.1];
const REGISTRATION_AIR: (f64, f64) = (-1000.0, 0.0);

/// Phases of [`TestPhantom::Dynamic`], [`DYNAMIC_INTERVAL_S`] apart from t = 0.
pub const DYNAMIC_PHASES: u32 = 12;
pub const DYNAMIC_INTERVAL_S: f64 = 2.5;
pub const DYNAMIC_BACKGROUND_HU: f64 = 40.0;
/// The artery of the dynamic phantom (through the whole field of view), baseline `value`,
/// enhanced by [`DYNAMIC_ARTERY_CURVE`].
pub const DYNAMIC_ARTERY: Cylinder = Cylinder {
    centre: [-13.0, 12.0, 30.0],
    radius_mm: 4.0,
    half_height_mm: 100.0,
    value: 40.0,
};
pub const DYNAMIC_ARTERY_CURVE: GammaVariate = GammaVariate {
    t0_s: 3.0,
    rise_s: 5.0,
    alpha: 3.0,
    peak: 300.0,
};
/// The enhancing tissue of the dynamic phantom, baseline `value`, enhanced by
/// [`DYNAMIC_TISSUE_CURVE`].
pub const DYNAMIC_TISSUE: Ball = Ball {
    centre: [1.0, 14.5, 30.5],
    radius_mm: 7.0,
    value: 40.0,
};
pub const DYNAMIC_TISSUE_CURVE: GammaVariate = GammaVariate {
    t0_s: 5.0,
    rise_s: 10.0,
    alpha: 2.0,
    peak: 60.0,
};

/// Where a series' voxels are. Pixel `(col, row)` of slice `k` has its centre at
/// `centre + (col − (cols−1)/2)·pixel_spacing[1]·row_dir + (row − (rows−1)/2)·pixel_spacing[0]·col_dir
///  + (k − (slices−1)/2)·slice_spacing_mm·normal`: the grid is centred on `centre` whatever
/// its size, so a [`SeriesSpec`] with other rows, columns or slices still shows the phantom.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestGrid {
    pub cols: u16,
    pub rows: u16,
    pub slices: u32,
    /// As DICOM writes it: [between rows, between columns] (mm).
    pub pixel_spacing: [f64; 2],
    pub slice_spacing_mm: f64,
    /// Image Orientation (Patient): along a row, down a column.
    pub row_dir: [f64; 3],
    pub col_dir: [f64; 3],
    pub centre: [f64; 3],
}

impl TestGrid {
    /// `row_dir × col_dir`; slices are stacked along it.
    pub fn normal(&self) -> [f64; 3] {
        cross(self.row_dir, self.col_dir)
    }

    /// Patient position (mm) of the centre of pixel `(col, row)` of slice `slice`.
    pub fn point(&self, col: f64, row: f64, slice: f64) -> [f64; 3] {
        let c = (col - (f64::from(self.cols) - 1.0) / 2.0) * self.pixel_spacing[1];
        let r = (row - (f64::from(self.rows) - 1.0) / 2.0) * self.pixel_spacing[0];
        let s = (slice - (f64::from(self.slices) - 1.0) / 2.0) * self.slice_spacing_mm;
        add(
            self.centre,
            add(
                add(scale(self.row_dir, c), scale(self.col_dir, r)),
                scale(self.normal(), s),
            ),
        )
    }

    /// Image Position (Patient) of slice `slice`.
    pub fn image_position(&self, slice: u32) -> [f64; 3] {
        self.point(0.0, 0.0, f64::from(slice))
    }
}

const AXIAL_ROW: [f64; 3] = [1.0, 0.0, 0.0];
const AXIAL_COL: [f64; 3] = [0.0, 1.0, 0.0];
/// Sub-samples per axis for voxels near an edge.
const SUPERSAMPLE: usize = 5;

impl TestPhantom {
    pub const ALL: [TestPhantom; 7] = [
        TestPhantom::Sphere,
        TestPhantom::Beads,
        TestPhantom::Tube,
        TestPhantom::Calcium,
        TestPhantom::RegistrationCt,
        TestPhantom::RegistrationMr,
        TestPhantom::Dynamic,
    ];

    /// A short lower-case name, used in seeds and descriptions.
    pub fn name(self) -> &'static str {
        match self {
            TestPhantom::Sphere => "sphere",
            TestPhantom::Beads => "beads",
            TestPhantom::Tube => "tube",
            TestPhantom::Calcium => "calcium",
            TestPhantom::RegistrationCt => "registration-ct",
            TestPhantom::RegistrationMr => "registration-mr",
            TestPhantom::Dynamic => "dynamic",
        }
    }

    /// Modality (0008,0060) of the series.
    pub fn modality(self) -> &'static str {
        match self {
            TestPhantom::RegistrationMr => "MR",
            _ => "CT",
        }
    }

    /// The size [`TestPhantom::study`] uses: (slice positions, rows, columns).
    pub fn default_size(self) -> (u32, u16, u16) {
        match self {
            TestPhantom::Sphere | TestPhantom::Beads => (48, 64, 64),
            TestPhantom::Tube | TestPhantom::RegistrationCt => (56, 80, 80),
            TestPhantom::Calcium => (10, 96, 96),
            TestPhantom::RegistrationMr => (36, 56, 56),
            TestPhantom::Dynamic => (12, 48, 48),
        }
    }

    /// Temporal positions: [`DYNAMIC_PHASES`] for [`TestPhantom::Dynamic`], else 1. A series
    /// has `slices × phases` images, phase-major.
    pub fn phases(self) -> u32 {
        match self {
            TestPhantom::Dynamic => DYNAMIC_PHASES,
            _ => 1,
        }
    }

    /// Time of phase `phase` (from 0) in seconds after the first.
    pub fn time_s(self, phase: u32) -> f64 {
        f64::from(phase) * DYNAMIC_INTERVAL_S
    }

    /// The grid of a series of this phantom with the given size.
    pub fn grid(self, slices: u32, rows: u16, cols: u16) -> TestGrid {
        let (spacing, dz, row_dir, col_dir, centre) = match self {
            TestPhantom::Sphere => ([0.8; 2], 1.25, AXIAL_ROW, AXIAL_COL, [12.5, -20.3, 41.0]),
            // rectangular pixels: 0.75 mm between rows, 0.8 mm between columns
            TestPhantom::Beads => (
                [0.75, 0.8],
                1.25,
                BEADS_ROW,
                BEADS_COL,
                [-30.0, 15.5, -80.0],
            ),
            TestPhantom::Tube => ([0.8; 2], 1.25, AXIAL_ROW, AXIAL_COL, [5.0, 10.0, 100.0]),
            TestPhantom::Calcium => ([0.5; 2], 3.0, AXIAL_ROW, AXIAL_COL, [-2.0, 25.0, 60.0]),
            TestPhantom::RegistrationCt => {
                ([0.8; 2], 1.25, AXIAL_ROW, AXIAL_COL, [10.0, -5.0, -150.0])
            }
            TestPhantom::RegistrationMr => {
                ([1.15; 2], 2.0, AXIAL_ROW, AXIAL_COL, [11.0, -5.5, -150.0])
            }
            TestPhantom::Dynamic => ([0.8; 2], 2.5, AXIAL_ROW, AXIAL_COL, [-5.0, 12.0, 30.0]),
        };
        TestGrid {
            cols,
            rows,
            slices,
            pixel_spacing: spacing,
            slice_spacing_mm: dz,
            row_dir,
            col_dir,
            centre,
        }
    }

    /// The analytic value (modality units) at patient point `p` and time `t_s`, without
    /// partial volume: what an infinitely fine grid would show.
    pub fn value_at(self, p: [f64; 3], t_s: f64) -> f64 {
        match self {
            TestPhantom::Sphere => {
                if SPHERE.signed_distance(p) <= 0.0 {
                    SPHERE.value
                } else {
                    SPHERE_BACKGROUND_HU
                }
            }
            TestPhantom::Beads => BEADS
                .iter()
                .find(|b| b.signed_distance(p) <= 0.0)
                .map_or(BEADS_BACKGROUND_HU, |b| b.value),
            TestPhantom::Tube => {
                if TUBE.centre_line_distance(p) <= TUBE.radius_mm {
                    TUBE.value
                } else {
                    TUBE_BACKGROUND_HU
                }
            }
            TestPhantom::Calcium => CALCIUM_LESIONS
                .iter()
                .find(|c| c.contains(p))
                .map_or(CALCIUM_BACKGROUND_HU, |c| c.value),
            TestPhantom::RegistrationCt => registration_value(p, |s| s.ct_hu, REGISTRATION_AIR.0),
            TestPhantom::RegistrationMr => registration_value(
                sub(p, REGISTRATION_SHIFT_MM),
                |s| s.mr_signal,
                REGISTRATION_AIR.1,
            ),
            TestPhantom::Dynamic => {
                if DYNAMIC_ARTERY.contains(p) {
                    DYNAMIC_ARTERY.value + DYNAMIC_ARTERY_CURVE.at(t_s)
                } else if DYNAMIC_TISSUE.signed_distance(p) <= 0.0 {
                    DYNAMIC_TISSUE.value + DYNAMIC_TISSUE_CURVE.at(t_s)
                } else {
                    DYNAMIC_BACKGROUND_HU
                }
            }
        }
    }

    /// A lower bound of the distance from `p` to the nearest edge (where
    /// [`TestPhantom::value_at`] may jump).
    fn edge_distance(self, p: [f64; 3]) -> f64 {
        match self {
            TestPhantom::Sphere => SPHERE.signed_distance(p).abs(),
            TestPhantom::Beads => BEADS
                .iter()
                .map(|b| b.signed_distance(p).abs())
                .fold(f64::INFINITY, f64::min),
            TestPhantom::Tube => (TUBE.centre_line_distance(p) - TUBE.radius_mm).abs(),
            TestPhantom::Calcium => CALCIUM_LESIONS
                .iter()
                .map(|c| c.edge_distance(p))
                .fold(f64::INFINITY, f64::min),
            TestPhantom::RegistrationCt => registration_edge(p),
            TestPhantom::RegistrationMr => registration_edge(sub(p, REGISTRATION_SHIFT_MM)),
            TestPhantom::Dynamic => DYNAMIC_ARTERY
                .edge_distance(p)
                .min(DYNAMIC_TISSUE.signed_distance(p).abs()),
        }
    }

    /// The voxel value: the mean of [`TestPhantom::value_at`] over the voxel's box
    /// (supersampled near edges, the centre value elsewhere).
    pub fn voxel_value(self, grid: &TestGrid, col: u16, row: u16, slice: u32, t_s: f64) -> f64 {
        let (c, r, k) = (f64::from(col), f64::from(row), f64::from(slice));
        let centre = grid.point(c, r, k);
        let [dy, dx] = grid.pixel_spacing;
        let half_diagonal = 0.5 * (dx * dx + dy * dy + grid.slice_spacing_mm.powi(2)).sqrt();
        if self.edge_distance(centre) > half_diagonal + 1e-9 {
            return self.value_at(centre, t_s);
        }
        let n = SUPERSAMPLE;
        let offset = |i: usize| (i as f64 + 0.5) / n as f64 - 0.5;
        let mut sum = 0.0;
        for a in 0..n {
            for b in 0..n {
                for d in 0..n {
                    sum +=
                        self.value_at(grid.point(c + offset(a), r + offset(b), k + offset(d)), t_s);
                }
            }
        }
        sum / (n * n * n) as f64
    }

    /// A single-series study of this phantom at its default size.
    pub fn study(self, seed: &str) -> StudySpec {
        let (slices, rows, cols) = self.default_size();
        let name = self.name();
        StudySpec {
            seed: format!("test-phantom-{name}-{seed}"),
            patient_id: "PHANTOM01".into(),
            patient_name: "PHANTOM^GEOMETRY".into(),
            birth_date: "20000101".into(),
            sex: "O".into(),
            accession: format!(
                "PH{:06}",
                u32::from_be_bytes(super::hash4(seed)) % 1_000_000
            ),
            description: format!("PHANTOM {}", name.to_uppercase()),
            date: "20260115".into(),
            time: "120000".into(),
            series: vec![SeriesSpec {
                phantom: Phantom::Test(self),
                slices,
                rows,
                cols,
                description: format!("{name} phantom"),
                number: 1,
            }],
        }
    }
}

/// The registration pair: a CT study (fixed) and an MR study (moving, content shifted by
/// [`REGISTRATION_SHIFT_MM`], other grid) of the same patient; two studies, so two Frames of
/// Reference.
pub fn registration_pair(seed: &str) -> (StudySpec, StudySpec) {
    let ct = TestPhantom::RegistrationCt.study(seed);
    let mut mr = TestPhantom::RegistrationMr.study(seed);
    mr.date = "20260116".into();
    (ct, mr)
}

fn registration_value(p: [f64; 3], of: impl Fn(&Structure) -> f64, outside: f64) -> f64 {
    REGISTRATION_STRUCTURES
        .iter()
        .rev()
        .find(|s| s.level(p) <= 1.0)
        .map_or(outside, of)
}

fn registration_edge(p: [f64; 3]) -> f64 {
    REGISTRATION_STRUCTURES
        .iter()
        .map(|s| s.edge_distance(p))
        .fold(f64::INFINITY, f64::min)
}

fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DicomError;
    use dicom_dictionary_std::tags;

    /// The header of every image of a phantom, parsed back.
    fn headers(spec: &StudySpec) -> Vec<dicom_object::DefaultDicomObject> {
        let mut out = Vec::new();
        spec.generate(|g| {
            let obj = dicom_object::OpenFileOptions::new()
                .from_reader(&g.part10[128..])
                .map_err(|e| DicomError::Parse(e.to_string()))?;
            out.push(obj);
            Ok::<(), DicomError>(())
        })
        .expect("generate");
        out
    }

    fn text(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> String {
        obj.element(tag)
            .expect("present")
            .to_str()
            .expect("text")
            .trim()
            .to_owned()
    }

    #[test]
    fn grids_are_consistent_and_keep_the_objects_inside() {
        for t in TestPhantom::ALL {
            let (s, r, c) = t.default_size();
            let g = t.grid(s, r, c);
            assert!(dot(g.row_dir, g.col_dir).abs() < 1e-12, "{t:?}");
            assert!((norm(g.row_dir) - 1.0).abs() < 1e-12, "{t:?}");
            assert!((norm(g.col_dir) - 1.0).abs() < 1e-12, "{t:?}");
            assert!(g.centre.iter().any(|&x| x != 0.0), "non-zero origin");
            // the centre of the middle voxel (odd sizes) or between (even) is the centre
            let mid = g.point(
                (f64::from(c) - 1.0) / 2.0,
                (f64::from(r) - 1.0) / 2.0,
                (f64::from(s) - 1.0) / 2.0,
            );
            assert!(norm(sub(mid, g.centre)) < 1e-9);
        }
        // each bead lies inside the oblique grid with a margin
        let (s, r, c) = TestPhantom::Beads.default_size();
        let g = TestPhantom::Beads.grid(s, r, c);
        for b in BEADS {
            let d = sub(b.centre, g.centre);
            let half = [
                f64::from(c - 1) / 2.0 * g.pixel_spacing[1],
                f64::from(r - 1) / 2.0 * g.pixel_spacing[0],
                f64::from(s - 1) / 2.0 * g.slice_spacing_mm,
            ];
            for (axis, h) in [g.row_dir, g.col_dir, g.normal()].into_iter().zip(half) {
                assert!(dot(d, axis).abs() + b.radius_mm + 2.0 < h, "{b:?}");
            }
        }
        // calcium lesions start and end on slice boundaries
        let (s, r, c) = TestPhantom::Calcium.default_size();
        let g = TestPhantom::Calcium.grid(s, r, c);
        let first_boundary = g.image_position(0)[2] - g.slice_spacing_mm / 2.0;
        for l in CALCIUM_LESIONS {
            for z in [
                l.centre[2] - l.half_height_mm,
                l.centre[2] + l.half_height_mm,
            ] {
                let m = (z - first_boundary) / g.slice_spacing_mm;
                assert!((m - m.round()).abs() < 1e-9, "{l:?}");
            }
        }
    }

    #[test]
    fn gamma_variate_peaks_where_declared() {
        let g = DYNAMIC_ARTERY_CURVE;
        assert_eq!(g.at(0.0), 0.0);
        assert!((g.at(g.t0_s + g.rise_s) - g.peak).abs() < 1e-9);
        assert!(g.at(g.t0_s + g.rise_s - 0.1) < g.peak);
        assert!(g.at(g.t0_s + g.rise_s + 0.1) < g.peak);
    }

    #[test]
    fn tube_distance_follows_the_arc_and_its_round_ends() {
        let mid = TUBE.point(0.5 * PI);
        assert!(TUBE.centre_line_distance(mid) < 1e-9);
        let off = add(mid, scale(TUBE.normal(), 2.0));
        assert!((TUBE.centre_line_distance(off) - 2.0).abs() < 1e-9);
        // beyond the end the nearest point is the end itself
        let end = TUBE.point(TUBE.end_rad);
        let past = TUBE.point(TUBE.end_rad + 0.1);
        assert!((TUBE.centre_line_distance(past) - norm(sub(past, end))).abs() < 1e-9);
        assert!((TUBE.length_mm() - 1.5 * PI * 20.0).abs() < 1e-9);
        let path = TUBE.path(10);
        assert!(norm(sub(path[0], TUBE.point(TUBE.start_rad))) < 1e-9);
        assert!(norm(sub(path[9], end)) < 1e-9);
    }

    #[test]
    fn partial_volume_is_the_covered_fraction() {
        // a voxel straddling the sphere's edge holds a value between the two sides; one deep
        // inside or outside holds the exact value
        let t = TestPhantom::Sphere;
        let (s, r, c) = t.default_size();
        let g = t.grid(s, r, c);
        let inside = t.voxel_value(&g, 32, 31, 25, 0.0);
        assert_eq!(inside, SPHERE.value);
        assert_eq!(t.voxel_value(&g, 0, 0, 0, 0.0), SPHERE_BACKGROUND_HU);
        let mut partial = 0;
        for col in 0..c {
            let v = t.voxel_value(&g, col, 31, 25, 0.0);
            if v > SPHERE_BACKGROUND_HU && v < SPHERE.value {
                partial += 1;
            }
        }
        assert!(partial >= 2, "edge voxels on a row through the sphere");
    }

    #[test]
    fn dynamic_series_carries_temporal_keys() {
        let mut spec = TestPhantom::Dynamic.study("unit");
        spec.series[0].slices = 2;
        spec.series[0].rows = 8;
        spec.series[0].cols = 8;
        assert_eq!(spec.instance_count(), 2 * u64::from(DYNAMIC_PHASES));
        let objs = headers(&spec);
        assert_eq!(objs.len(), 2 * DYNAMIC_PHASES as usize);
        let last = &objs[objs.len() - 1];
        assert_eq!(
            text(last, tags::TEMPORAL_POSITION_IDENTIFIER),
            DYNAMIC_PHASES.to_string()
        );
        assert_eq!(
            text(last, tags::NUMBER_OF_TEMPORAL_POSITIONS),
            DYNAMIC_PHASES.to_string()
        );
        assert_eq!(text(last, tags::TRIGGER_TIME), "27500");
        assert_eq!(text(last, tags::ACQUISITION_TIME), "120027.500000");
        // the same two positions in every phase
        assert_eq!(
            text(&objs[0], tags::IMAGE_POSITION_PATIENT),
            text(&objs[2], tags::IMAGE_POSITION_PATIENT)
        );
        assert_ne!(
            text(&objs[0], tags::IMAGE_POSITION_PATIENT),
            text(&objs[1], tags::IMAGE_POSITION_PATIENT)
        );
    }

    #[test]
    fn test_phantoms_are_ordinary_ct_and_mr_images() {
        let (ct, mr) = registration_pair("unit");
        assert_ne!(ct.study_uid(), mr.study_uid());
        for (mut spec, modality) in [
            (ct, "CT"),
            (mr, "MR"),
            (TestPhantom::Beads.study("unit"), "CT"),
        ] {
            spec.series[0].slices = 2;
            let objs = headers(&spec);
            let o = &objs[1];
            assert_eq!(text(o, tags::MODALITY), modality);
            assert!(!text(o, tags::FRAME_OF_REFERENCE_UID).is_empty());
            let attrs = crate::attrs::IndexAttributes::from_header(o).expect("index");
            assert_eq!(attrs.series.modality, modality);
        }
        let beads = headers(&TestPhantom::Beads.study("iop"));
        assert_eq!(
            text(&beads[0], tags::IMAGE_ORIENTATION_PATIENT),
            "0.8\\0.6\\0\\-0.576\\0.768\\0.28"
        );
        assert!(text(&beads[0], tags::IMAGE_TYPE).ends_with("OTHER"));
    }
}
