//! Volumes: voxels on a regular grid placed in patient space (DICOM LPS, millimetres).
//!
//! Geometry: voxel `(i, j, k)` (column, row, slice) has its centre at
//! `origin + i·spacing[0]·axes[0] + j·spacing[1]·axes[1] + k·spacing[2]·axes[2]`, where
//! `axes` are unit vectors: the row direction (Image Orientation's first triplet), the column
//! direction (its second), and the slice direction (the sorted slices' normal).

/// Stored voxel values; `value = stored · slope + intercept` (modality units, e.g. HU).
#[derive(Debug, Clone, PartialEq)]
pub enum Voxels {
    I16(Vec<i16>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

/// A 3D image. `voxels` are in x-fastest order: index = i + dims[0]·(j + dims[1]·k).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Columns, rows, slices.
    pub dims: [usize; 3],
    /// Millimetres between voxel centres along each axis.
    pub spacing: [f64; 3],
    /// Patient-space position of the centre of voxel (0, 0, 0).
    pub origin: [f64; 3],
    /// Unit vectors of the three grid axes in patient space.
    pub axes: [[f64; 3]; 3],
    pub voxels: Voxels,
    pub slope: f64,
    pub intercept: f64,
}

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;

pub(crate) type V3 = [f64; 3];

pub(crate) fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
pub(crate) fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
pub(crate) fn scale(a: V3, s: f64) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
pub(crate) fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
pub(crate) fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
pub(crate) fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}
/// Unit vector, or `None` for a (near) zero or non-finite vector.
pub(crate) fn normalize(a: V3) -> Option<V3> {
    let n = norm(a);
    (n.is_finite() && n > 1e-12).then(|| scale(a, 1.0 / n))
}

/// Inverse of a 3×3 matrix (rows), `None` when singular.
pub(crate) fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let c0 = cross(m[1], m[2]);
    let c1 = cross(m[2], m[0]);
    let c2 = cross(m[0], m[1]);
    let det = dot(m[0], c0);
    if !det.is_finite() || det.abs() < 1e-300 {
        return None;
    }
    let d = 1.0 / det;
    // inverse = adjugate / det; columns of the inverse are c0, c1, c2.
    Some([
        [c0[0] * d, c1[0] * d, c2[0] * d],
        [c0[1] * d, c1[1] * d, c2[1] * d],
        [c0[2] * d, c1[2] * d, c2[2] * d],
    ])
}

pub(crate) fn mat_vec(m: &[[f64; 3]; 3], v: V3) -> V3 {
    [dot(m[0], v), dot(m[1], v), dot(m[2], v)]
}

impl Voxels {
    /// Number of stored voxels.
    pub fn len(&self) -> usize {
        match self {
            Voxels::I16(v) => v.len(),
            Voxels::U16(v) => v.len(),
            Voxels::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes used by the voxel buffer.
    pub fn byte_size(&self) -> usize {
        match self {
            Voxels::I16(v) => v.len() * 2,
            Voxels::U16(v) => v.len() * 2,
            Voxels::F32(v) => v.len() * 4,
        }
    }

    /// Stored (not rescaled) value at a linear index; panics when out of range.
    #[inline]
    pub fn stored(&self, idx: usize) -> f32 {
        match self {
            Voxels::I16(v) => f32::from(v[idx]),
            Voxels::U16(v) => f32::from(v[idx]),
            Voxels::F32(v) => v[idx],
        }
    }
}

impl Volume {
    /// A phantom: `f` receives the patient-space centre of each voxel. Stored as `F32`,
    /// slope 1, intercept 0.
    pub fn from_fn(
        dims: [usize; 3],
        spacing: [f64; 3],
        origin: [f64; 3],
        axes: [[f64; 3]; 3],
        f: impl Fn([f64; 3]) -> f32,
    ) -> Volume {
        let mut vol = Volume {
            dims,
            spacing,
            origin,
            axes,
            voxels: Voxels::F32(Vec::new()),
            slope: 1.0,
            intercept: 0.0,
        };
        let mut v = Vec::with_capacity(dims[0] * dims[1] * dims[2]);
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    v.push(f(vol.index_to_patient([i as f64, j as f64, k as f64])));
                }
            }
        }
        vol.voxels = Voxels::F32(v);
        vol
    }

    /// `dims[0]·dims[1]·dims[2]`, or `usize::MAX` when that overflows (no buffer is that
    /// long, so comparing it with `voxels.len()` is the whole consistency check).
    pub fn voxel_count(&self) -> usize {
        self.dims[0]
            .checked_mul(self.dims[1])
            .and_then(|x| x.checked_mul(self.dims[2]))
            .unwrap_or(usize::MAX)
    }

    /// True when the voxel buffer matches `dims` and the geometry is invertible.
    pub fn is_consistent(&self) -> bool {
        self.voxels.len() == self.voxel_count()
            && self.voxel_count() > 0
            && self.patient_to_index_matrix().is_some()
    }

    /// Rescaled value of voxel `(i, j, k)`; panics when out of range.
    #[inline]
    pub fn value(&self, i: usize, j: usize, k: usize) -> f32 {
        assert!(i < self.dims[0] && j < self.dims[1] && k < self.dims[2]);
        let idx = i + self.dims[0] * (j + self.dims[1] * k);
        (f64::from(self.voxels.stored(idx)) * self.slope + self.intercept) as f32
    }

    /// Index → patient matrix: columns are `spacing[a]·axes[a]` (rows returned).
    pub fn index_to_patient_matrix(&self) -> [[f64; 3]; 3] {
        let mut m = [[0.0; 3]; 3];
        for a in 0..3 {
            for (r, row) in m.iter_mut().enumerate() {
                row[a] = self.axes[a][r] * self.spacing[a];
            }
        }
        m
    }

    /// Patient → index matrix, `None` for degenerate geometry.
    pub fn patient_to_index_matrix(&self) -> Option<[[f64; 3]; 3]> {
        invert3(&self.index_to_patient_matrix())
    }

    /// Continuous voxel index → patient position (mm).
    pub fn index_to_patient(&self, idx: [f64; 3]) -> [f64; 3] {
        add(self.origin, mat_vec(&self.index_to_patient_matrix(), idx))
    }

    /// Patient position (mm) → continuous voxel index; all NaN for degenerate geometry.
    /// Works for non-orthogonal axes too.
    pub fn patient_to_index(&self, p: [f64; 3]) -> [f64; 3] {
        match self.patient_to_index_matrix() {
            Some(m) => mat_vec(&m, sub(p, self.origin)),
            None => [f64::NAN; 3],
        }
    }

    /// Trilinear sample (rescaled) at a continuous voxel index; `None` outside
    /// `[0, dims-1]` (give or take 1e-6) on any axis or for an inconsistent buffer.
    pub fn sample(&self, p: [f64; 3]) -> Option<f32> {
        if self.voxels.len() != self.voxel_count() {
            return None;
        }
        let mut base = [0usize; 3];
        let mut frac = [0.0f64; 3];
        let mut step = [0usize; 3];
        let strides = [1, self.dims[0], self.dims[0] * self.dims[1]];
        for a in 0..3 {
            let n = self.dims[a];
            // a point on the first or last voxel plane must not be lost to rounding
            const EDGE_EPS: f64 = 1e-6;
            let x = p[a];
            if n == 0 || !(x >= -EDGE_EPS && x <= (n - 1) as f64 + EDGE_EPS) {
                return None;
            }
            let x = x.clamp(0.0, (n - 1) as f64);
            let i0 = (x.floor() as usize).min(n.saturating_sub(2));
            base[a] = i0;
            frac[a] = x - i0 as f64;
            step[a] = if n > 1 { strides[a] } else { 0 };
        }
        let b = base[0] + strides[1] * base[1] + strides[2] * base[2];
        let g = |o: usize| f64::from(self.voxels.stored(b + o));
        let (fx, fy, fz) = (frac[0], frac[1], frac[2]);
        let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
        let c00 = lerp(g(0), g(step[0]), fx);
        let c10 = lerp(g(step[1]), g(step[1] + step[0]), fx);
        let c01 = lerp(g(step[2]), g(step[2] + step[0]), fx);
        let c11 = lerp(g(step[2] + step[1]), g(step[2] + step[1] + step[0]), fx);
        let v = lerp(lerp(c00, c10, fy), lerp(c01, c11, fy), fz);
        Some((v * self.slope + self.intercept) as f32)
    }

    /// Trilinear sample at a patient position (mm).
    pub fn sample_patient(&self, p: [f64; 3]) -> Option<f32> {
        self.sample(self.patient_to_index(p))
    }
}

// ---------------------------------------------------------------------------------------------
// Building from slices
// ---------------------------------------------------------------------------------------------

/// Pixel data of one slice as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum SlicePixels {
    I16(Vec<i16>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

impl SlicePixels {
    fn len(&self) -> usize {
        match self {
            SlicePixels::I16(v) => v.len(),
            SlicePixels::U16(v) => v.len(),
            SlicePixels::F32(v) => v.len(),
        }
    }
    fn get(&self, i: usize) -> f64 {
        match self {
            SlicePixels::I16(v) => f64::from(v[i]),
            SlicePixels::U16(v) => f64::from(v[i]),
            SlicePixels::F32(v) => f64::from(v[i]),
        }
    }
    fn kind(&self) -> u8 {
        match self {
            SlicePixels::I16(_) => 0,
            SlicePixels::U16(_) => 1,
            SlicePixels::F32(_) => 2,
        }
    }
}

/// One 2D image of a series. Multi-frame objects: the caller passes one `Slice` per frame
/// (position/orientation from the per-frame functional groups).
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Image Position (Patient): centre of the first pixel, mm.
    pub position: [f64; 3],
    /// Image Orientation (Patient): row direction then column direction.
    pub orientation: [f64; 6],
    /// Pixel Spacing as DICOM: [row spacing (between rows), column spacing (between columns)].
    pub pixel_spacing: [f64; 2],
    pub rows: usize,
    pub cols: usize,
    /// Row-major, `rows·cols` values.
    pub pixels: SlicePixels,
    pub slope: f64,
    pub intercept: f64,
    pub frame_of_reference: String,
}

/// What to do with gantry tilt (slice positions not along the slice normal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TiltHandling {
    /// Refuse with [`VolumeError::GantryTilt`].
    #[default]
    Refuse,
    /// Resample (bilinear, in-plane) onto an orthogonal grid; the output keeps the slices'
    /// in-plane size, centred on the middle slice, voxels outside any slice get the minimum
    /// value of the series. Voxels become `F32` (rescaled; slope 1, intercept 0).
    Resample,
}

/// Options of [`build`].
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOptions {
    /// Accept missing slices (a step ≥ 1.5× the median): the slices are stacked at the
    /// median spacing without interpolation and the gaps are reported. Otherwise refuse.
    pub allow_gaps: bool,
    pub tilt: TiltHandling,
    /// A step deviating from the median by more than this fraction counts as uneven.
    pub uneven_tolerance: f64,
    /// Tilt angles below this (degrees) are treated as none.
    pub tilt_tolerance_deg: f64,
    /// Spacing used for a single-slice series.
    pub single_slice_spacing: f64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            allow_gaps: false,
            tilt: TiltHandling::Refuse,
            uneven_tolerance: 0.1,
            tilt_tolerance_deg: 0.1,
            single_slice_spacing: 1.0,
        }
    }
}

/// A missing-slice gap: between sorted slices `after` and `after + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub after: usize,
    pub step_mm: f64,
    /// Estimated number of missing slices.
    pub missing: usize,
}

/// What [`build`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BuildReport {
    pub slice_count: usize,
    /// Median step along the normal (mm).
    pub spacing_mm: f64,
    pub min_step_mm: f64,
    pub max_step_mm: f64,
    pub gaps: Vec<Gap>,
    /// Some step (excluding gaps) deviates from the median by more than the tolerance.
    pub uneven: bool,
    /// Gantry tilt angle (degrees), 0 when none.
    pub tilt_deg: f64,
    /// The volume was resampled onto an orthogonal grid because of tilt.
    pub resampled: bool,
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum VolumeError {
    #[error("no slices")]
    Empty,
    #[error("slice {index}: {reason}")]
    BadSlice { index: usize, reason: String },
    #[error("slices have different orientations (slice {index} differs from slice 0)")]
    MixedOrientation { index: usize },
    #[error("slices have different sizes or pixel spacings (slice {index} differs from slice 0)")]
    MixedSize { index: usize },
    #[error("slices belong to different frames of reference ({a:?} vs {b:?})")]
    MixedFrameOfReference { a: String, b: String },
    #[error("two slices share the position {distance_mm:.3} mm along the normal")]
    DuplicatePosition { distance_mm: f64 },
    #[error("{count} missing slice gap(s), first after sorted slice {first_after}")]
    MissingSlices { count: usize, first_after: usize },
    #[error("gantry tilt of {degrees:.2}° (set TiltHandling::Resample to resample)")]
    GantryTilt { degrees: f64 },
}

fn bad(index: usize, reason: &str) -> VolumeError {
    VolumeError::BadSlice {
        index,
        reason: reason.to_string(),
    }
}

/// Builds a volume from a series' slices (any order). See [`BuildOptions`].
pub fn build(
    slices: Vec<Slice>,
    opts: &BuildOptions,
) -> Result<(Volume, BuildReport), VolumeError> {
    let first = slices.first().ok_or(VolumeError::Empty)?;
    let o = first.orientation;
    let row = normalize([o[0], o[1], o[2]]).ok_or_else(|| bad(0, "degenerate orientation"))?;
    let col = normalize([o[3], o[4], o[5]]).ok_or_else(|| bad(0, "degenerate orientation"))?;
    if dot(row, col).abs() > 1e-3 {
        return Err(bad(0, "orientation vectors are not orthogonal"));
    }
    let normal = normalize(cross(row, col)).ok_or_else(|| bad(0, "degenerate orientation"))?;
    let (rows, cols, ps) = (first.rows, first.cols, first.pixel_spacing);
    for (index, s) in slices.iter().enumerate() {
        if s.rows == 0 || s.cols == 0 || s.pixels.len() != s.rows * s.cols {
            return Err(bad(index, "pixel count does not match rows × cols"));
        }
        if !(s.pixel_spacing.iter().all(|v| v.is_finite() && *v > 0.0))
            || !s.position.iter().all(|v| v.is_finite())
            || !s.slope.is_finite()
            || !s.intercept.is_finite()
        {
            return Err(bad(index, "non-finite or non-positive geometry/rescale"));
        }
        let so = s.orientation;
        let r = normalize([so[0], so[1], so[2]]);
        let c = normalize([so[3], so[4], so[5]]);
        match (r, c) {
            (Some(r), Some(c)) if dot(r, row) > 1.0 - 1e-6 && dot(c, col) > 1.0 - 1e-6 => {}
            _ => return Err(VolumeError::MixedOrientation { index }),
        }
        if s.rows != rows
            || s.cols != cols
            || (s.pixel_spacing[0] - ps[0]).abs() > 1e-4
            || (s.pixel_spacing[1] - ps[1]).abs() > 1e-4
        {
            return Err(VolumeError::MixedSize { index });
        }
        if s.frame_of_reference != first.frame_of_reference {
            return Err(VolumeError::MixedFrameOfReference {
                a: first.frame_of_reference.clone(),
                b: s.frame_of_reference.clone(),
            });
        }
    }

    let mut slices = slices;
    slices.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    let d: Vec<f64> = slices.iter().map(|s| dot(s.position, normal)).collect();
    let n = slices.len();
    let steps: Vec<f64> = d.windows(2).map(|w| w[1] - w[0]).collect();
    if let Some(&st) = steps.iter().find(|&&st| st < 1e-3) {
        let i = steps.iter().position(|&x| x == st).unwrap_or(0);
        return Err(VolumeError::DuplicatePosition { distance_mm: d[i] });
    }
    let mut report = BuildReport {
        slice_count: n,
        ..Default::default()
    };
    let spacing_z = if steps.is_empty() {
        opts.single_slice_spacing
    } else {
        let mut sorted = steps.clone();
        sorted.sort_by(f64::total_cmp);
        let m = sorted.len();
        let median = if m % 2 == 1 {
            sorted[m / 2]
        } else {
            0.5 * (sorted[m / 2 - 1] + sorted[m / 2])
        };
        report.min_step_mm = sorted[0];
        report.max_step_mm = sorted[m - 1];
        for (i, &st) in steps.iter().enumerate() {
            if st >= 1.5 * median {
                report.gaps.push(Gap {
                    after: i,
                    step_mm: st,
                    missing: ((st / median).round() as usize).saturating_sub(1).max(1),
                });
            } else if (st - median).abs() > opts.uneven_tolerance * median {
                report.uneven = true;
            }
        }
        median
    };
    report.spacing_mm = spacing_z;
    if !report.gaps.is_empty() && !opts.allow_gaps {
        return Err(VolumeError::MissingSlices {
            count: report.gaps.len(),
            first_after: report.gaps[0].after,
        });
    }

    // Tilt: the in-plane drift of the positions per mm along the normal.
    let p0 = slices[0].position;
    let mut tilt = 0.0f64;
    for (s, &dk) in slices.iter().zip(&d).skip(1) {
        let delta = sub(s.position, p0);
        let along = dk - d[0];
        let lateral = norm(sub(delta, scale(normal, dot(delta, normal))));
        tilt = tilt.max(lateral.atan2(along).to_degrees());
    }
    report.tilt_deg = tilt;
    let tilted = tilt > opts.tilt_tolerance_deg;
    if tilted && opts.tilt == TiltHandling::Refuse {
        return Err(VolumeError::GantryTilt { degrees: tilt });
    }

    let per = rows * cols;
    let axes = [row, col, normal];
    let spacing = [ps[1], ps[0], spacing_z];
    let same_kind = slices.iter().all(|s| {
        s.pixels.kind() == slices[0].pixels.kind()
            && s.slope == slices[0].slope
            && s.intercept == slices[0].intercept
    });

    if !tilted {
        let (slope, intercept) = if same_kind {
            (slices[0].slope, slices[0].intercept)
        } else {
            (1.0, 0.0)
        };
        let voxels = if same_kind {
            match &slices[0].pixels {
                SlicePixels::I16(_) => Voxels::I16(
                    slices
                        .iter()
                        .flat_map(|s| match &s.pixels {
                            SlicePixels::I16(v) => v.as_slice(),
                            _ => &[],
                        })
                        .copied()
                        .collect(),
                ),
                SlicePixels::U16(_) => Voxels::U16(
                    slices
                        .iter()
                        .flat_map(|s| match &s.pixels {
                            SlicePixels::U16(v) => v.as_slice(),
                            _ => &[],
                        })
                        .copied()
                        .collect(),
                ),
                SlicePixels::F32(_) => Voxels::F32(
                    slices
                        .iter()
                        .flat_map(|s| match &s.pixels {
                            SlicePixels::F32(v) => v.as_slice(),
                            _ => &[],
                        })
                        .copied()
                        .collect(),
                ),
            }
        } else {
            let mut v = Vec::with_capacity(per * n);
            for s in &slices {
                v.extend((0..per).map(|i| (s.pixels.get(i) * s.slope + s.intercept) as f32));
            }
            Voxels::F32(v)
        };
        let vol = Volume {
            dims: [cols, rows, n],
            spacing,
            origin: p0,
            axes,
            voxels,
            slope,
            intercept,
        };
        return Ok((vol, report));
    }

    // Resample onto an orthogonal grid: output slice k lies at d[0] + k·spacing_z along the
    // normal; it is interpolated from the nearest source slice(s) along the normal and
    // bilinearly in-plane.
    report.resampled = true;
    let fill = slices
        .iter()
        .flat_map(|s| (0..per).map(move |i| s.pixels.get(i) * s.slope + s.intercept))
        .fold(f64::INFINITY, f64::min) as f32;
    let nz = (((d[n - 1] - d[0]) / spacing_z).round() as usize) + 1;
    let mid = &slices[n / 2];
    let mid_lat = {
        let delta = sub(mid.position, p0);
        sub(delta, scale(normal, dot(delta, normal)))
    };
    let origin = add(p0, mid_lat);
    let mut out = vec![fill; per * nz];
    let bilinear = |s: &Slice, x: f64, y: f64| -> Option<f64> {
        let (xm, ym) = ((cols - 1) as f64, (rows - 1) as f64);
        let eps = 1e-6;
        if !(x >= -eps && y >= -eps && x <= xm + eps && y <= ym + eps) {
            return None;
        }
        let (x, y) = (x.clamp(0.0, xm), y.clamp(0.0, ym));
        let x0 = (x.floor() as usize).min(cols.saturating_sub(2));
        let y0 = (y.floor() as usize).min(rows.saturating_sub(2));
        let x1 = (x0 + 1).min(cols - 1);
        let y1 = (y0 + 1).min(rows - 1);
        let (fx, fy) = (x - x0 as f64, y - y0 as f64);
        let g = |xx: usize, yy: usize| s.pixels.get(xx + cols * yy) * s.slope + s.intercept;
        let a = g(x0, y0) + (g(x1, y0) - g(x0, y0)) * fx;
        let b = g(x0, y1) + (g(x1, y1) - g(x0, y1)) * fx;
        Some(a + (b - a) * fy)
    };
    for k in 0..nz {
        let dk = d[0] + k as f64 * spacing_z;
        // Source slices bracketing dk.
        let hi = d.partition_point(|&x| x < dk).min(n - 1);
        let lo = hi.saturating_sub(1);
        let (a, b, t) = if hi == lo || (d[hi] - dk).abs() < 1e-6 {
            (hi, hi, 0.0)
        } else {
            (lo, hi, (dk - d[lo]) / (d[hi] - d[lo]))
        };
        let plane_origin = add(origin, scale(normal, k as f64 * spacing_z));
        for j in 0..rows {
            for i in 0..cols {
                let p = add(
                    plane_origin,
                    add(scale(row, i as f64 * ps[1]), scale(col, j as f64 * ps[0])),
                );
                let at = |s: &Slice| {
                    let rel = sub(p, s.position);
                    bilinear(s, dot(rel, row) / ps[1], dot(rel, col) / ps[0])
                };
                let v = match (at(&slices[a]), at(&slices[b])) {
                    (Some(x), Some(y)) => Some(x + (y - x) * t),
                    (Some(x), None) if t < 0.5 => Some(x),
                    (None, Some(y)) if t >= 0.5 => Some(y),
                    _ => None,
                };
                if let Some(v) = v {
                    out[i + cols * (j + rows * k)] = v as f32;
                }
            }
        }
    }
    let vol = Volume {
        dims: [cols, rows, nz],
        spacing,
        origin,
        axes,
        voxels: Voxels::F32(out),
        slope: 1.0,
        intercept: 0.0,
    };
    Ok((vol, report))
}

// ---------------------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------------------

/// What a [`Cache`] weighs its entries by.
pub trait Weigh {
    /// Bytes the value keeps alive.
    fn bytes(&self) -> usize;
}

impl Weigh for Volume {
    fn bytes(&self) -> usize {
        self.voxels.byte_size()
    }
}

struct CacheEntry<T> {
    value: Arc<T>,
    bytes: usize,
    last_use: u64,
}

struct CacheInner<T> {
    map: HashMap<String, CacheEntry<T>>,
    used: usize,
    tick: u64,
}

/// A thread-safe LRU cache keyed by a string (e.g. the series UID), bounded by the bytes
/// its values weigh. A value larger than the capacity is returned but not kept. Builds run
/// outside the lock, so two threads missing the same key may both build.
pub struct Cache<T> {
    capacity_bytes: usize,
    inner: Mutex<CacheInner<T>>,
}

/// The cache of volumes.
pub type VolumeCache = Cache<Volume>;

impl<T: Weigh> Cache<T> {
    pub fn new(capacity_bytes: usize) -> Self {
        Cache {
            capacity_bytes,
            inner: Mutex::new(CacheInner {
                map: HashMap::new(),
                used: 0,
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached value, refreshing its recency.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        g.map.get_mut(key).map(|e| {
            e.last_use = tick;
            Arc::clone(&e.value)
        })
    }

    /// The cached value or the result of `build` (then cached).
    pub fn get_or_build<E>(
        &self,
        key: &str,
        build: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if let Some(v) = self.get(key) {
            return Ok(v);
        }
        let value = Arc::new(build()?);
        Ok(self.insert(key, value))
    }

    /// Inserts (or replaces) a value, evicting the least recently used ones.
    pub fn insert(&self, key: &str, value: Arc<T>) -> Arc<T> {
        let bytes = value.bytes();
        if bytes > self.capacity_bytes {
            return value;
        }
        let mut g = self.lock();
        if let Some(old) = g.map.remove(key) {
            g.used -= old.bytes;
        }
        while g.used + bytes > self.capacity_bytes {
            let victim = g
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(k, _)| k.clone());
            match victim.and_then(|k| g.map.remove(&k)) {
                Some(e) => g.used -= e.bytes,
                None => break,
            }
        }
        g.tick += 1;
        let last_use = g.tick;
        g.used += bytes;
        g.map.insert(
            key.to_string(),
            CacheEntry {
                value: Arc::clone(&value),
                bytes,
                last_use,
            },
        );
        value
    }

    pub fn remove(&self, key: &str) -> Option<Arc<T>> {
        let mut g = self.lock();
        let e = g.map.remove(key)?;
        g.used -= e.bytes;
        Some(e.value)
    }

    /// Bytes currently held.
    pub fn used_bytes(&self) -> usize {
        self.lock().used
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
