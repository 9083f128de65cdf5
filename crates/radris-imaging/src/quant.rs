//! Quantitative measurements in modality units and millimetres: ROI statistics, threshold and
//! region-growing segmentation, distances, the Agatston calcium score and vertebral bone
//! density.
//!
//! 2D ROIs lie on one slice `k` of a volume; their outlines are given in patient mm and
//! projected onto the slice's row/column axes. A voxel belongs to a ROI when its centre lies
//! inside the outline. Areas are `pixel count × pixel area`, volumes `voxel count × voxel
//! volume` (the voxel volume accounts for non-orthogonal axes, e.g. gantry tilt).

use crate::volume::{Volume, Voxels};
use thiserror::Error;

/// Errors from measurements.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QuantError {
    #[error("volume dims {dims:?} hold {expected} voxels but {actual} are stored")]
    VoxelCount {
        dims: [usize; 3],
        expected: usize,
        actual: usize,
    },
    #[error("slice {slice} is outside the volume ({slices} slices)")]
    SliceOutOfRange { slice: usize, slices: usize },
    #[error("voxel {0:?} is outside the volume")]
    IndexOutOfRange([usize; 3]),
    #[error("mask dims {mask:?} differ from volume dims {volume:?}")]
    MaskDims {
        mask: [usize; 3],
        volume: [usize; 3],
    },
    #[error("invalid ROI: {0}")]
    Roi(&'static str),
    #[error("invalid parameter: {0}")]
    Parameter(&'static str),
}

/// Statistics of the voxels inside a region, in modality units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiStats {
    pub count: usize,
    /// `NaN` when `count == 0` (as are `sd`, `min`, `max`).
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single voxel.
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    /// In-plane area: count × pixel area (mm²). For 3D regions, the area summed over slices.
    pub area_mm2: f64,
    /// count × voxel volume, in mL.
    pub volume_ml: f64,
}

/// A 2D region on an axial slice, in patient mm.
#[derive(Debug, Clone, PartialEq)]
pub enum Roi2d {
    /// Vertices (patient mm), projected onto the slice; even-odd inclusion rule.
    Polygon(Vec<[f64; 3]>),
    /// An ellipse centred at `center` (patient mm, projected onto the slice) with semi-axes
    /// along the slice's row direction (`axes[0]`) and column direction (`axes[1]`).
    Ellipse {
        center: [f64; 3],
        radius_row_mm: f64,
        radius_col_mm: f64,
    },
}

/// A voxel mask, one bit per voxel, in the volume's x-fastest order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub dims: [usize; 3],
    bits: Vec<u64>,
}

impl Mask {
    /// An empty mask.
    pub fn new(dims: [usize; 3]) -> Self {
        let n = dims[0] * dims[1] * dims[2];
        Self {
            dims,
            bits: vec![0; n.div_ceil(64)],
        }
    }

    fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// Whether linear voxel index `i` is set (false out of range).
    pub fn get(&self, i: usize) -> bool {
        i < self.len() && self.bits[i / 64] >> (i % 64) & 1 == 1
    }

    /// Whether voxel `(i, j, k)` is set (false out of range).
    pub fn get_ijk(&self, [i, j, k]: [usize; 3]) -> bool {
        i < self.dims[0]
            && j < self.dims[1]
            && k < self.dims[2]
            && self.get(i + self.dims[0] * (j + self.dims[1] * k))
    }

    /// Sets linear voxel index `i` (ignored out of range).
    pub fn set(&mut self, i: usize, on: bool) {
        if i < self.len() {
            if on {
                self.bits[i / 64] |= 1 << (i % 64);
            } else {
                self.bits[i / 64] &= !(1 << (i % 64));
            }
        }
    }

    /// Number of set voxels.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Volume of the set voxels in mL.
    pub fn volume_ml(&self, vol: &Volume) -> f64 {
        self.count() as f64 * voxel_volume_mm3(vol) / 1000.0
    }
}

fn voxel_count(vol: &Volume) -> Result<usize, QuantError> {
    let (expected, actual) = (vol.voxel_count(), vol.voxels.len());
    if expected != actual {
        return Err(QuantError::VoxelCount {
            dims: vol.dims,
            expected,
            actual,
        });
    }
    Ok(actual)
}

/// Modality value of linear voxel index `i` (caller checked the count).
#[inline]
fn value(vol: &Volume, i: usize) -> f64 {
    let s = match &vol.voxels {
        Voxels::I16(v) => v[i] as f64,
        Voxels::U16(v) => v[i] as f64,
        Voxels::F32(v) => v[i] as f64,
    };
    s * vol.slope + vol.intercept
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Area of one pixel of a slice (mm²), allowing for non-orthogonal row/column axes.
pub fn pixel_area_mm2(vol: &Volume) -> f64 {
    let c = cross(vol.axes[0], vol.axes[1]);
    vol.spacing[0] * vol.spacing[1] * dot(c, c).sqrt()
}

/// Volume of one voxel (mm³), allowing for non-orthogonal axes (gantry tilt).
pub fn voxel_volume_mm3(vol: &Volume) -> f64 {
    let det = dot(vol.axes[0], cross(vol.axes[1], vol.axes[2])).abs();
    vol.spacing[0] * vol.spacing[1] * vol.spacing[2] * det
}

/// Patient-space position (mm) of a (possibly fractional) voxel index.
pub fn index_to_patient(vol: &Volume, idx: [f64; 3]) -> [f64; 3] {
    let mut p = vol.origin;
    for ((x, s), axis) in idx.iter().zip(vol.spacing).zip(vol.axes) {
        for (pr, ar) in p.iter_mut().zip(axis) {
            *pr += x * s * ar;
        }
    }
    p
}

/// Euclidean distance between two patient points, in mm.
pub fn distance_mm(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = sub(a, b);
    dot(d, d).sqrt()
}

/// Distance in mm between two (possibly fractional) voxel indices, through the volume's
/// spacing and axes.
pub fn voxel_distance_mm(vol: &Volume, a: [f64; 3], b: [f64; 3]) -> f64 {
    distance_mm(index_to_patient(vol, a), index_to_patient(vol, b))
}

/// Running statistics (Welford).
#[derive(Default)]
struct Acc {
    n: usize,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Acc {
    fn push(&mut self, x: f64) {
        if self.n == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    fn finish(self, vol: &Volume) -> RoiStats {
        let n = self.n;
        let nan = f64::NAN;
        RoiStats {
            count: n,
            mean: if n > 0 { self.mean } else { nan },
            sd: match n {
                0 => nan,
                1 => 0.0,
                _ => (self.m2 / (n - 1) as f64).max(0.0).sqrt(),
            },
            min: if n > 0 { self.min } else { nan },
            max: if n > 0 { self.max } else { nan },
            area_mm2: n as f64 * pixel_area_mm2(vol),
            volume_ml: n as f64 * voxel_volume_mm3(vol) / 1000.0,
        }
    }
}

/// In-slice coordinates (mm along the row and column axes, from the voxel (0,0) centre).
fn in_plane(vol: &Volume, p: [f64; 3]) -> (f64, f64) {
    let d = sub(p, vol.origin);
    // Solve d ≈ u·a0 + v·a1 (least squares, handles non-orthogonal in-plane axes).
    let (a0, a1) = (vol.axes[0], vol.axes[1]);
    let (g00, g01, g11) = (dot(a0, a0), dot(a0, a1), dot(a1, a1));
    let (b0, b1) = (dot(d, a0), dot(d, a1));
    let det = g00 * g11 - g01 * g01;
    if det.abs() < 1e-12 {
        return (b0, b1);
    }
    ((g11 * b0 - g01 * b1) / det, (g00 * b1 - g01 * b0) / det)
}

/// Calls `f(i, j)` for each pixel of a slice whose centre lies inside `roi`.
fn for_each_in_roi(
    vol: &Volume,
    roi: &Roi2d,
    mut f: impl FnMut(usize, usize),
) -> Result<(), QuantError> {
    let [nx, ny, _] = vol.dims;
    let (sx, sy) = (vol.spacing[0], vol.spacing[1]);
    if !(sx > 0.0 && sy > 0.0) {
        return Err(QuantError::Parameter("spacing must be positive"));
    }
    match roi {
        Roi2d::Ellipse {
            center,
            radius_row_mm: a,
            radius_col_mm: b,
        } => {
            if !(a.is_finite() && b.is_finite() && *a > 0.0 && *b > 0.0)
                || center.iter().any(|c| !c.is_finite())
            {
                return Err(QuantError::Roi("ellipse radii must be positive and finite"));
            }
            let (cu, cv) = in_plane(vol, *center);
            let j0 = ((cv - b) / sy).floor().max(0.0) as usize;
            let j1 = ((cv + b) / sy).ceil().min((ny as f64) - 1.0);
            if j1 < 0.0 {
                return Ok(());
            }
            for j in j0..=(j1 as usize) {
                let dv = (j as f64 * sy - cv) / b;
                let rem = 1.0 - dv * dv;
                if rem < 0.0 {
                    continue;
                }
                let half = a * rem.sqrt();
                let i0 = ((cu - half) / sx).ceil().max(0.0) as usize;
                let i1 = ((cu + half) / sx).floor().min((nx as f64) - 1.0);
                if i1 < 0.0 {
                    continue;
                }
                for i in i0..=(i1 as usize) {
                    let du = (i as f64 * sx - cu) / a;
                    if du * du + dv * dv <= 1.0 {
                        f(i, j);
                    }
                }
            }
        }
        Roi2d::Polygon(pts) => {
            if pts.len() < 3 || pts.iter().flatten().any(|c| !c.is_finite()) {
                return Err(QuantError::Roi(
                    "a polygon needs at least three finite vertices",
                ));
            }
            let uv: Vec<(f64, f64)> = pts.iter().map(|p| in_plane(vol, *p)).collect();
            let vmin = uv.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let vmax = uv.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let j0 = (vmin / sy).ceil().max(0.0) as usize;
            let j1 = (vmax / sy).floor().min((ny as f64) - 1.0);
            if j1 < 0.0 {
                return Ok(());
            }
            let mut xs = Vec::new();
            for j in j0..=(j1 as usize) {
                let v = j as f64 * sy;
                xs.clear();
                for e in 0..uv.len() {
                    let (p, q) = (uv[e], uv[(e + 1) % uv.len()]);
                    if (p.1 <= v) != (q.1 <= v) {
                        xs.push(p.0 + (v - p.1) / (q.1 - p.1) * (q.0 - p.0));
                    }
                }
                xs.sort_by(f64::total_cmp);
                for span in xs.chunks_exact(2) {
                    let i0 = (span[0] / sx).ceil().max(0.0) as usize;
                    let i1 = (span[1] / sx).floor().min((nx as f64) - 1.0);
                    if i1 < 0.0 {
                        continue;
                    }
                    for i in i0..=(i1 as usize) {
                        f(i, j);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Statistics of a 2D ROI on slice `slice`.
pub fn roi_stats_2d(vol: &Volume, slice: usize, roi: &Roi2d) -> Result<RoiStats, QuantError> {
    roi_stats_slices(vol, slice, slice, roi)
}

/// Statistics of the prism (e.g. a cylinder) swept by a 2D ROI over slices
/// `first..=last`.
pub fn roi_stats_slices(
    vol: &Volume,
    first: usize,
    last: usize,
    roi: &Roi2d,
) -> Result<RoiStats, QuantError> {
    voxel_count(vol)?;
    let slices = vol.dims[2];
    for s in [first, last] {
        if s >= slices {
            return Err(QuantError::SliceOutOfRange { slice: s, slices });
        }
    }
    if first > last {
        return Err(QuantError::Parameter("first slice after last"));
    }
    let mut acc = Acc::default();
    let [nx, ny, _] = vol.dims;
    for k in first..=last {
        for_each_in_roi(vol, roi, |i, j| acc.push(value(vol, i + nx * (j + ny * k))))?;
    }
    Ok(acc.finish(vol))
}

/// Statistics of the voxels set in a 3D mask.
pub fn mask_stats(vol: &Volume, mask: &Mask) -> Result<RoiStats, QuantError> {
    let n = voxel_count(vol)?;
    if mask.dims != vol.dims {
        return Err(QuantError::MaskDims {
            mask: mask.dims,
            volume: vol.dims,
        });
    }
    let mut acc = Acc::default();
    for (w, &word) in mask.bits.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let i = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if i < n {
                acc.push(value(vol, i));
            }
        }
    }
    Ok(acc.finish(vol))
}

/// A segmentation result.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    pub mask: Mask,
    pub volume_ml: f64,
}

fn check_range(lo: f64, hi: f64) -> Result<(), QuantError> {
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(QuantError::Parameter(
            "threshold range must satisfy lo <= hi",
        ));
    }
    Ok(())
}

/// All voxels with modality values in `[lo, hi]`.
pub fn threshold(vol: &Volume, lo: f64, hi: f64) -> Result<Segmentation, QuantError> {
    let n = voxel_count(vol)?;
    check_range(lo, hi)?;
    let mut mask = Mask::new(vol.dims);
    for i in 0..n {
        let v = value(vol, i);
        if v >= lo && v <= hi {
            mask.set(i, true);
        }
    }
    let volume_ml = mask.volume_ml(vol);
    Ok(Segmentation { mask, volume_ml })
}

/// Voxels 6-connected to `seed` with modality values in `[lo, hi]`. Empty when the seed's own
/// value is outside the range.
pub fn region_grow(
    vol: &Volume,
    seed: [usize; 3],
    lo: f64,
    hi: f64,
) -> Result<Segmentation, QuantError> {
    voxel_count(vol)?;
    check_range(lo, hi)?;
    let [nx, ny, nz] = vol.dims;
    if seed[0] >= nx || seed[1] >= ny || seed[2] >= nz {
        return Err(QuantError::IndexOutOfRange(seed));
    }
    let mut mask = Mask::new(vol.dims);
    let inside = |i: usize| {
        let v = value(vol, i);
        v >= lo && v <= hi
    };
    let s = seed[0] + nx * (seed[1] + ny * seed[2]);
    let mut stack = Vec::new();
    if inside(s) {
        mask.set(s, true);
        stack.push(s);
    }
    let plane = nx * ny;
    while let Some(c) = stack.pop() {
        let (i, j, k) = (c % nx, (c / nx) % ny, c / plane);
        let mut visit = |m: usize, mask: &mut Mask| {
            if !mask.get(m) && inside(m) {
                mask.set(m, true);
                stack.push(m);
            }
        };
        if i > 0 {
            visit(c - 1, &mut mask);
        }
        if i + 1 < nx {
            visit(c + 1, &mut mask);
        }
        if j > 0 {
            visit(c - nx, &mut mask);
        }
        if j + 1 < ny {
            visit(c + nx, &mut mask);
        }
        if k > 0 {
            visit(c - plane, &mut mask);
        }
        if k + 1 < nz {
            visit(c + plane, &mut mask);
        }
    }
    let volume_ml = mask.volume_ml(vol);
    Ok(Segmentation { mask, volume_ml })
}

/// Agatston scoring parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgatstonOptions {
    /// Lesion threshold (HU), classically 130.
    pub threshold_hu: f64,
    /// Minimum lesion area (mm²) on a slice; lesions with `area ≥ min_area_mm2` count. The
    /// default is 1 mm² (some vendors use 3 pixels or 0.5 mm² instead).
    pub min_area_mm2: f64,
    /// Slice thickness the score is defined for (3 mm). Each slice's score is multiplied by
    /// `slice increment / reference` so that scores from other thicknesses approximate the
    /// 3 mm score (for contiguous slices); set `None` to skip scaling.
    pub reference_thickness_mm: Option<f64>,
}

impl Default for AgatstonOptions {
    fn default() -> Self {
        Self {
            threshold_hu: 130.0,
            min_area_mm2: 1.0,
            reference_thickness_mm: Some(3.0),
        }
    }
}

/// One calcified lesion on one slice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalciumLesion {
    pub slice: usize,
    pub pixels: usize,
    pub area_mm2: f64,
    pub peak_hu: f64,
    /// Density weight 1–4 from the peak.
    pub weight: u8,
    /// area × weight × thickness scale.
    pub score: f64,
}

/// The Agatston score and its lesions.
#[derive(Debug, Clone, PartialEq)]
pub struct AgatstonScore {
    pub total: f64,
    pub lesions: Vec<CalciumLesion>,
}

/// Agatston density weight for a lesion's peak HU (0 below 130 HU).
pub fn agatston_weight(peak_hu: f64) -> u8 {
    match peak_hu {
        p if p >= 400.0 => 4,
        p if p >= 300.0 => 3,
        p if p >= 200.0 => 2,
        p if p >= 130.0 => 1,
        _ => 0,
    }
}

/// Agatston coronary calcium score over the axial slices of `vol` (all of it: restrict the
/// volume or mask non-coronary calcium beforehand). Lesions are 8-connected in-plane
/// components of voxels ≥ `threshold_hu`; the slice thickness is `spacing[2]`.
pub fn agatston(vol: &Volume, opts: &AgatstonOptions) -> Result<AgatstonScore, QuantError> {
    voxel_count(vol)?;
    if !opts.threshold_hu.is_finite() || opts.min_area_mm2.is_nan() || opts.min_area_mm2 < 0.0 {
        return Err(QuantError::Parameter("invalid Agatston threshold or area"));
    }
    let thickness_scale = match opts.reference_thickness_mm {
        Some(r) if r.is_finite() && r > 0.0 => vol.spacing[2] / r,
        Some(_) => {
            return Err(QuantError::Parameter(
                "reference thickness must be positive",
            ));
        }
        None => 1.0,
    };
    let [nx, ny, nz] = vol.dims;
    let px_area = pixel_area_mm2(vol);
    let mut label = vec![false; nx * ny];
    let mut lesions = Vec::new();
    let mut stack = Vec::new();
    for k in 0..nz {
        let base = nx * ny * k;
        label.iter_mut().for_each(|l| *l = false);
        for start in 0..nx * ny {
            // NaN voxels are never calcium.
            let v = value(vol, base + start);
            if label[start] || v.is_nan() || v < opts.threshold_hu {
                continue;
            }
            label[start] = true;
            stack.push(start);
            let (mut pixels, mut peak) = (0usize, f64::NEG_INFINITY);
            while let Some(c) = stack.pop() {
                pixels += 1;
                peak = peak.max(value(vol, base + c));
                let (i, j) = ((c % nx) as isize, (c / nx) as isize);
                for dj in -1..=1isize {
                    for di in -1..=1isize {
                        let (x, y) = (i + di, j + dj);
                        if x < 0 || y < 0 || x >= nx as isize || y >= ny as isize {
                            continue;
                        }
                        let m = x as usize + nx * y as usize;
                        if !label[m] && value(vol, base + m) >= opts.threshold_hu {
                            label[m] = true;
                            stack.push(m);
                        }
                    }
                }
            }
            let area = pixels as f64 * px_area;
            if area < opts.min_area_mm2 {
                continue;
            }
            let weight = agatston_weight(peak);
            lesions.push(CalciumLesion {
                slice: k,
                pixels,
                area_mm2: area,
                peak_hu: peak,
                weight,
                score: area * weight as f64 * thickness_scale,
            });
        }
    }
    let total = lesions.iter().map(|l| l.score).sum();
    Ok(AgatstonScore { total, lesions })
}

/// A vertebral-body ROI: an ellipse (patient mm) swept over slices `first..=last` (a single
/// slice when equal) — the trabecular bone, avoiding the cortex.
#[derive(Debug, Clone, PartialEq)]
pub struct VertebralRoi {
    pub center: [f64; 3],
    pub radius_row_mm: f64,
    pub radius_col_mm: f64,
    pub first_slice: usize,
    pub last_slice: usize,
}

/// Vertebral bone density: ROI statistics (mean HU is the usual opportunistic-screening
/// figure, e.g. L1 trabecular attenuation).
pub fn vertebral_bone_density(vol: &Volume, roi: &VertebralRoi) -> Result<RoiStats, QuantError> {
    roi_stats_slices(
        vol,
        roi.first_slice,
        roi.last_slice,
        &Roi2d::Ellipse {
            center: roi.center,
            radius_row_mm: roi.radius_row_mm,
            radius_col_mm: roi.radius_col_mm,
        },
    )
}
