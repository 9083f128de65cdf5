//! Multiplanar reformatting: orthogonal and oblique planes, thick slabs (MIP/MinIP/average)
//! and curved planar reformation, all trilinear, in modality units (NaN outside the volume).
//!
//! Pixel `(c, r)` of a [`Plane`] (column `c`, row `r`) has its centre at
//! `origin + (c − (width−1)/2)·pixel_mm·u + (r − (height−1)/2)·pixel_mm·v`; `u` points right
//! along a row, `v` down the columns, and the plane normal is `u × v`.

use std::ops::Range;

use rayon::prelude::*;
use thiserror::Error;

use crate::volume::{V3, Volume, Voxels, add, cross, dot, mat_vec, norm, normalize, scale, sub};

#[derive(Debug, Error, Clone, PartialEq)]
pub enum MprError {
    #[error("degenerate plane: {0}")]
    DegeneratePlane(&'static str),
    #[error("volume is inconsistent (voxel count vs dims, or singular axes)")]
    BadVolume,
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    #[error("curved path needs at least two distinct points")]
    PathTooShort,
}

/// An output plane in patient space (mm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    /// Patient position of the centre of the output image.
    pub origin: [f64; 3],
    /// Unit vector along a row (left → right on screen).
    pub u: [f64; 3],
    /// Unit vector down a column (top → bottom on screen).
    pub v: [f64; 3],
    pub width: usize,
    pub height: usize,
    pub pixel_mm: f64,
}

impl Plane {
    /// Axial (LPS): columns go to the patient's left (+x), rows go posterior (+y).
    pub fn axial(center: [f64; 3], width: usize, height: usize, pixel_mm: f64) -> Plane {
        Plane {
            origin: center,
            u: [1.0, 0.0, 0.0],
            v: [0.0, 1.0, 0.0],
            width,
            height,
            pixel_mm,
        }
    }

    /// Coronal: columns to the patient's left (+x), rows go inferior (−z).
    pub fn coronal(center: [f64; 3], width: usize, height: usize, pixel_mm: f64) -> Plane {
        Plane {
            origin: center,
            u: [1.0, 0.0, 0.0],
            v: [0.0, 0.0, -1.0],
            width,
            height,
            pixel_mm,
        }
    }

    /// Sagittal: columns go posterior (+y), rows go inferior (−z).
    pub fn sagittal(center: [f64; 3], width: usize, height: usize, pixel_mm: f64) -> Plane {
        Plane {
            origin: center,
            u: [0.0, 1.0, 0.0],
            v: [0.0, 0.0, -1.0],
            width,
            height,
            pixel_mm,
        }
    }

    /// A plane through `center` with the given normal; `up_hint` (projected into the plane)
    /// points to the top of the image. `size` is `[width, height]`.
    pub fn oblique(
        center: [f64; 3],
        normal: [f64; 3],
        up_hint: [f64; 3],
        size: [usize; 2],
        pixel_mm: f64,
    ) -> Result<Plane, MprError> {
        let n = normalize(normal).ok_or(MprError::DegeneratePlane("zero normal"))?;
        let up = normalize(sub(up_hint, scale(n, dot(up_hint, n))))
            .ok_or(MprError::DegeneratePlane("up hint parallel to the normal"))?;
        let v = scale(up, -1.0);
        let u = cross(v, n);
        Plane {
            origin: center,
            u,
            v,
            width: size[0],
            height: size[1],
            pixel_mm,
        }
        .validated()
    }

    /// The plane through three points, centred on their centroid, `u` along `b − a`,
    /// normal `(b − a) × (c − a)`.
    pub fn from_points(
        a: [f64; 3],
        b: [f64; 3],
        c: [f64; 3],
        size: [usize; 2],
        pixel_mm: f64,
    ) -> Result<Plane, MprError> {
        let u = normalize(sub(b, a)).ok_or(MprError::DegeneratePlane("coincident points"))?;
        let n = normalize(cross(sub(b, a), sub(c, a)))
            .ok_or(MprError::DegeneratePlane("collinear points"))?;
        let v = cross(n, u);
        let origin = scale(add(add(a, b), c), 1.0 / 3.0);
        Plane {
            origin,
            u,
            v,
            width: size[0],
            height: size[1],
            pixel_mm,
        }
        .validated()
    }

    fn validated(self) -> Result<Plane, MprError> {
        if self.width == 0 || self.height == 0 {
            return Err(MprError::InvalidParameter("empty plane"));
        }
        if !(self.pixel_mm.is_finite() && self.pixel_mm > 0.0) {
            return Err(MprError::InvalidParameter("pixel_mm must be positive"));
        }
        if !self.origin.iter().all(|x| x.is_finite()) {
            return Err(MprError::InvalidParameter("non-finite origin"));
        }
        let (nu, nv) = (norm(self.u), norm(self.v));
        if (nu - 1.0).abs() > 1e-6 || (nv - 1.0).abs() > 1e-6 || dot(self.u, self.v).abs() > 1e-6 {
            return Err(MprError::DegeneratePlane("u, v must be orthonormal"));
        }
        Ok(self)
    }

    /// Unit normal `u × v`.
    pub fn normal(&self) -> [f64; 3] {
        cross(self.u, self.v)
    }

    /// Patient position of the centre of pixel `(col, row)` (fractional allowed).
    pub fn point_at(&self, col: f64, row: f64) -> [f64; 3] {
        let x = (col - (self.width as f64 - 1.0) / 2.0) * self.pixel_mm;
        let y = (row - (self.height as f64 - 1.0) / 2.0) * self.pixel_mm;
        add(self.origin, add(scale(self.u, x), scale(self.v, y)))
    }

    /// Continuous `(col, row)` of the projection of `p` onto the plane.
    pub fn pixel_of(&self, p: [f64; 3]) -> [f64; 2] {
        let d = sub(p, self.origin);
        [
            dot(d, self.u) / self.pixel_mm + (self.width as f64 - 1.0) / 2.0,
            dot(d, self.v) / self.pixel_mm + (self.height as f64 - 1.0) / 2.0,
        ]
    }
}

/// A float image, row-major, NaN where the plane leaves the volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// Pixel `(x, y)`; `None` out of range.
    pub fn get(&self, x: usize, y: usize) -> Option<f32> {
        (x < self.width && y < self.height).then(|| self.data[x + self.width * y])
    }

    /// DICOM linear VOI window (C.11.2.1.2) to 8-bit; NaN maps to 0.
    pub fn to_gray8(&self, center: f64, width: f64) -> Vec<u8> {
        let w = width.max(1.0);
        let lo = center - 0.5 - (w - 1.0) / 2.0;
        let hi = center - 0.5 + (w - 1.0) / 2.0;
        self.data
            .iter()
            .map(|&x| {
                let x = f64::from(x);
                if x.is_nan() || x <= lo {
                    0
                } else if x > hi || w <= 1.0 {
                    255
                } else {
                    (((x - (center - 0.5)) / (w - 1.0) + 0.5) * 255.0).round() as u8
                }
            })
            .collect()
    }
}

/// Index-space sampling setup shared by the kernels.
struct Grid {
    dims: [usize; 3],
    /// Neighbour offsets along x, y, z (0 on an axis of size 1).
    step: [usize; 3],
    /// Upper bound for the base index per axis (dims−2, or 0 for size 1).
    max_base: [usize; 3],
    /// Largest valid coordinate (dims − 1).
    lim: [f64; 3],
    /// Patient → index.
    m: [[f64; 3]; 3],
    origin: V3,
    slope: f32,
    intercept: f32,
}

impl Grid {
    fn new(vol: &Volume) -> Result<Grid, MprError> {
        // The sampling kernel's unchecked reads rely on every index expression staying below
        // this count without wrapping: `voxel_count` saturates instead of wrapping, and no
        // buffer is `usize::MAX` long, so equality means the product did not overflow.
        if vol.voxel_count() != vol.voxels.len() || vol.voxels.is_empty() {
            return Err(MprError::BadVolume);
        }
        let m = vol.patient_to_index_matrix().ok_or(MprError::BadVolume)?;
        let d = vol.dims;
        let strides = [1, d[0], d[0] * d[1]];
        let mut step = [0; 3];
        let mut max_base = [0; 3];
        let mut lim = [0.0; 3];
        for a in 0..3 {
            step[a] = if d[a] > 1 { strides[a] } else { 0 };
            max_base[a] = d[a].saturating_sub(2);
            lim[a] = (d[a] - 1) as f64;
        }
        Ok(Grid {
            dims: d,
            step,
            max_base,
            lim,
            m,
            origin: vol.origin,
            slope: vol.slope as f32,
            intercept: vol.intercept as f32,
        })
    }

    fn to_index(&self, p: V3) -> V3 {
        mat_vec(&self.m, sub(p, self.origin))
    }

    fn dir_to_index(&self, d: V3) -> V3 {
        mat_vec(&self.m, d)
    }

    /// Whether a continuous index lies in the box of voxel centres `[0, dims − 1]`.
    #[inline]
    /// Within the grid, give or take [`EDGE_EPS`]: a plane laid exactly on the first or last
    /// voxel plane (a reformat on the source grid) must not lose it to rounding.
    fn inside(&self, p: V3) -> bool {
        (0..3).all(|a| p[a] >= -EDGE_EPS && p[a] <= self.lim[a] + EDGE_EPS)
    }
}

/// How far (in voxels) outside the grid a sample still counts as on its edge; the clamped
/// loop of [`sample_span`] then reads the edge voxel.
const EDGE_EPS: f64 = 1e-6;

/// Fraction bits of the fixed-point index coordinates the inner loop steps with: integer
/// adds instead of float → integer conversions, and room for 2³⁹ voxels per axis.
const FRAC_BITS: u32 = 24;
const FIX_ONE: f64 = (1u64 << FRAC_BITS) as f64;
const FIX_INV: f32 = 1.0 / (1u64 << FRAC_BITS) as f32;

/// Output tile edge in pixels. Rows are sampled in bands of `TILE_ROWS`, each band column
/// block by column block, so that the samples of neighbouring rows of an oblique plane (which
/// read overlapping voxels) run close together and hit L1 instead of L2/memory. Every span
/// re-anchors its fixed-point position from `f64`, which bounds the stepping drift to
/// `TILE_COLS · 2⁻²⁵` voxel.
const TILE_COLS: usize = 64;
const TILE_ROWS: usize = 8;

/// A straight run of samples in index space: sample `c` sits at `start + c·step`.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: V3,
    step: V3,
}

impl Line {
    #[inline]
    fn at(&self, c: usize) -> V3 {
        let c = c as f64;
        [
            self.start[0] + c * self.step[0],
            self.start[1] + c * self.step[1],
            self.start[2] + c * self.step[2],
        ]
    }

    /// The samples among `0..n` that lie inside the grid (`Grid::inside` of `at(c)`).
    ///
    /// Each coordinate of `at(c)` is monotonic in `c` (rounding is monotonic), so the inside
    /// samples form one range. It is bracketed analytically (clipping the line against the
    /// box, with a margin for rounding) and the ends are then settled with the exact test,
    /// so the inner loops need no bounds test and agree with a per-sample check.
    fn inside_range(&self, g: &Grid, n: usize) -> Range<usize> {
        if n == 0 {
            return 0..0;
        }
        let (mut lo, mut hi) = (0.0f64, (n - 1) as f64);
        for a in 0..3 {
            let (s, d) = (self.start[a], self.step[a]);
            if d == 0.0 {
                if !(s >= -EDGE_EPS && s <= g.lim[a] + EDGE_EPS) {
                    return 0..0;
                }
                continue;
            }
            let (t0, t1) = ((0.0 - s) / d, (g.lim[a] - s) / d);
            lo = lo.max(t0.min(t1) - 2.0);
            hi = hi.min(t0.max(t1) + 2.0);
        }
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return 0..0;
        }
        // lo, hi ∈ [0, n − 1] here, so the conversions are exact.
        let (mut lo, mut hi) = (lo.ceil() as usize, hi.floor() as usize);
        while lo <= hi && !g.inside(self.at(lo)) {
            lo += 1;
        }
        while lo <= hi && !g.inside(self.at(hi)) {
            if hi == 0 {
                return 0..0;
            }
            hi -= 1;
        }
        if lo <= hi { lo..hi + 1 } else { 0..0 }
    }
}

#[inline]
fn to_fixed(x: f64) -> i64 {
    (x * FIX_ONE) as i64
}

/// Trilinear blend of the 2×2×2 cell at linear index `b` (neighbours at `+ox`, `+oy`, `+oz`).
///
/// The caller guarantees `b + ox + oy + oz < data.len()` (see [`sample_span`]).
#[inline(always)]
fn trilerp<T: Copy + Into<f32>>(
    data: &[T],
    b: usize,
    [ox, oy, oz]: [usize; 3],
    fx: f32,
    fy: f32,
    fz: f32,
) -> f32 {
    debug_assert!(b + ox + oy + oz < data.len());
    // SAFETY: every index below is ≤ b + ox + oy + oz, which the caller keeps in bounds.
    let c = |idx: usize| -> f32 { unsafe { *data.get_unchecked(idx) }.into() };
    let c000 = c(b);
    let c100 = c(b + ox);
    let c010 = c(b + oy);
    let c110 = c(b + oy + ox);
    let c001 = c(b + oz);
    let c101 = c(b + oz + ox);
    let c011 = c(b + oz + oy);
    let c111 = c(b + oz + oy + ox);
    let a0 = c000 + (c100 - c000) * fx;
    let a1 = c010 + (c110 - c010) * fx;
    let a2 = c001 + (c101 - c001) * fx;
    let a3 = c011 + (c111 - c011) * fx;
    let b0 = a0 + (a1 - a0) * fy;
    let b1 = a2 + (a3 - a2) * fy;
    b0 + (b1 - b0) * fz
}

/// Samples `out.len()` points of `line` starting at sample `first`; all of them must lie
/// inside the grid (a sub-range of [`Line::inside_range`]). Monomorphised per stored type.
///
/// The position steps in fixed point. Bounds: with base indices `i ≤ max_base[0]`,
/// `j ≤ max_base[1]`, `k ≤ max_base[2]` and neighbour offsets that are 0 on an axis of size 1,
/// `b + ox + oy + oz ≤ (dims[0] − 1) + dims[0]·(dims[1] − 1) + dims[0]·dims[1]·(dims[2] − 1)
/// = voxel count − 1`, and `Grid::new` checked (without overflow) that the buffer holds
/// exactly that count. Spans whose two ends lie in `[0, (max_base + 1)·2^FRAC_BITS)` on every
/// axis have all their samples there (the positions are linear, exact integers), so their
/// base indices need no clamp; other spans (the last voxel plane, rounding at the edges)
/// clamp each base index to `[0, max_base]`, which also gives the last voxel plane a weight
/// of 1 from its lower neighbour, as `Volume::sample` does. Both loops compute the same
/// values wherever both apply.
#[inline]
fn sample_span<T: Copy + Into<f32>>(
    g: &Grid,
    data: &[T],
    line: &Line,
    first: usize,
    out: &mut [f32],
) {
    let sy = g.dims[0];
    let sz = g.dims[0] * g.dims[1];
    let p0 = line.at(first);
    let mut p = p0.map(to_fixed);
    // With two or more inside samples |step| ≤ dims − 1 on every axis, so these fit; the
    // wrapping adds only matter after the last sample of a one-sample span.
    let d = line.step.map(to_fixed);
    let (slope, intercept) = (g.slope, g.intercept);
    let last = i64::try_from(out.len().saturating_sub(1)).unwrap_or(i64::MAX);
    let unclamped = (0..3).all(|a| {
        let top = i64::try_from(g.max_base[a] + 1)
            .ok()
            .and_then(|m| m.checked_mul(1 << FRAC_BITS));
        let end = d[a].checked_mul(last).and_then(|x| x.checked_add(p[a]));
        matches!((top, end), (Some(t), Some(e)) if p[a] >= 0 && e >= 0 && p[a] < t && e < t)
    });
    if unclamped {
        const MASK: i64 = (1 << FRAC_BITS) - 1;
        for o in out.iter_mut() {
            let b = (p[0] >> FRAC_BITS) as usize
                + sy * (p[1] >> FRAC_BITS) as usize
                + sz * (p[2] >> FRAC_BITS) as usize;
            let [fx, fy, fz] = p.map(|x| (x & MASK) as f32 * FIX_INV);
            *o = trilerp(data, b, g.step, fx, fy, fz) * slope + intercept;
            for a in 0..3 {
                p[a] = p[a].wrapping_add(d[a]);
            }
        }
        return;
    }
    let base = |p: i64, max: usize| -> (usize, f32) {
        let i = ((p.max(0) >> FRAC_BITS) as usize).min(max);
        (i, (p - ((i as i64) << FRAC_BITS)) as f32 * FIX_INV)
    };
    for o in out.iter_mut() {
        let (i, fx) = base(p[0], g.max_base[0]);
        let (j, fy) = base(p[1], g.max_base[1]);
        let (k, fz) = base(p[2], g.max_base[2]);
        *o = trilerp(data, i + sy * j + sz * k, g.step, fx, fy, fz) * slope + intercept;
        for a in 0..3 {
            p[a] = p[a].wrapping_add(d[a]);
        }
    }
}

/// The whole line into `out` (`out.len()` samples), NaN outside the grid.
fn sample_line<T: Copy + Into<f32>>(g: &Grid, data: &[T], line: &Line, out: &mut [f32]) {
    let inside = line.inside_range(g, out.len());
    out[..inside.start].fill(f32::NAN);
    out[inside.end..].fill(f32::NAN);
    let mut c = inside.start;
    while c < inside.end {
        let e = (c + TILE_COLS).min(inside.end);
        sample_span(g, data, line, c, &mut out[c..e]);
        c = e;
    }
}

/// Index-space start of row 0, per-column step and per-row step for `plane`, shifted by
/// `offset` (mm, patient) .
fn plane_steps(g: &Grid, plane: &Plane, offset: V3) -> (V3, V3, V3) {
    let start = g.to_index(add(plane.point_at(0.0, 0.0), offset));
    let du = g.dir_to_index(scale(plane.u, plane.pixel_mm));
    let dv = g.dir_to_index(scale(plane.v, plane.pixel_mm));
    (start, du, dv)
}

fn row_start(start: V3, dv: V3, r: usize) -> V3 {
    add(start, scale(dv, r as f64))
}

/// Trilinear reslice of `vol` on `plane`, in modality units, NaN outside.
pub fn reslice(vol: &Volume, plane: &Plane) -> Result<Image, MprError> {
    let plane = plane.validated()?;
    let g = Grid::new(vol)?;
    let data = match &vol.voxels {
        Voxels::I16(d) => reslice_typed(&g, d, &plane),
        Voxels::U16(d) => reslice_typed(&g, d, &plane),
        Voxels::F32(d) => reslice_typed(&g, d, &plane),
    };
    Ok(Image {
        width: plane.width,
        height: plane.height,
        data,
    })
}

fn reslice_typed<T: Copy + Into<f32> + Sync>(g: &Grid, vox: &[T], plane: &Plane) -> Vec<f32> {
    let (start, du, dv) = plane_steps(g, plane, [0.0; 3]);
    let w = plane.width;
    let mut data = vec![f32::NAN; w * plane.height];
    data.par_chunks_mut(w * TILE_ROWS)
        .enumerate()
        .for_each(|(band, rows)| {
            let lines: Vec<(Line, Range<usize>)> = (0..rows.len() / w)
                .map(|i| {
                    let line = Line {
                        start: row_start(start, dv, band * TILE_ROWS + i),
                        step: du,
                    };
                    (line, line.inside_range(g, w))
                })
                .collect();
            for c0 in (0..w).step_by(TILE_COLS) {
                let c1 = (c0 + TILE_COLS).min(w);
                for (out, (line, inside)) in rows.chunks_mut(w).zip(&lines) {
                    let (lo, hi) = (inside.start.max(c0), inside.end.min(c1));
                    if lo < hi {
                        sample_span(g, vox, line, lo, &mut out[lo..hi]);
                    }
                }
            }
        });
    data
}

/// How a thick slab combines its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlabMode {
    /// Maximum intensity projection.
    Mip,
    /// Minimum intensity projection.
    MinIp,
    /// Mean of the samples inside the volume.
    Average,
}

/// A thick slab centred on `plane`, `thickness_mm` along its normal, sampled at steps no
/// larger than the smallest voxel spacing (endpoints included). Samples outside the volume
/// are ignored; a pixel with none is NaN.
pub fn slab(
    vol: &Volume,
    plane: &Plane,
    thickness_mm: f64,
    mode: SlabMode,
) -> Result<Image, MprError> {
    let plane = plane.validated()?;
    if !(thickness_mm.is_finite() && thickness_mm >= 0.0) {
        return Err(MprError::InvalidParameter("slab thickness must be ≥ 0"));
    }
    let g = Grid::new(vol)?;
    let min_sp = vol.spacing.iter().copied().fold(f64::INFINITY, f64::min);
    if !(min_sp.is_finite() && min_sp > 0.0) {
        return Err(MprError::BadVolume);
    }
    let n_samples = if thickness_mm == 0.0 {
        1
    } else {
        (thickness_mm / min_sp).ceil() as usize + 1
    };
    let offsets: Vec<f64> = (0..n_samples)
        .map(|s| {
            if n_samples == 1 {
                0.0
            } else {
                -thickness_mm / 2.0 + thickness_mm * s as f64 / (n_samples - 1) as f64
            }
        })
        .collect();
    let data = match &vol.voxels {
        Voxels::I16(d) => slab_typed(&g, d, &plane, &offsets, mode),
        Voxels::U16(d) => slab_typed(&g, d, &plane, &offsets, mode),
        Voxels::F32(d) => slab_typed(&g, d, &plane, &offsets, mode),
    };
    Ok(Image {
        width: plane.width,
        height: plane.height,
        data,
    })
}

/// Folds one span of samples into the slab accumulators. A NaN sample (NaN stored data) is
/// ignored like a sample outside the volume.
#[inline]
fn accumulate(mode: SlabMode, acc: &mut [f32], count: &mut [u32], samples: &[f32]) {
    let it = acc.iter_mut().zip(count.iter_mut()).zip(samples);
    match mode {
        SlabMode::Mip => {
            for ((o, c), &x) in it {
                if !x.is_nan() {
                    *c += 1;
                    *o = o.max(x);
                }
            }
        }
        SlabMode::MinIp => {
            for ((o, c), &x) in it {
                if !x.is_nan() {
                    *c += 1;
                    *o = o.min(x);
                }
            }
        }
        SlabMode::Average => {
            for ((o, c), &x) in it {
                if !x.is_nan() {
                    *c += 1;
                    *o += x;
                }
            }
        }
    }
}

fn slab_typed<T: Copy + Into<f32> + Sync>(
    g: &Grid,
    vox: &[T],
    plane: &Plane,
    offsets: &[f64],
    mode: SlabMode,
) -> Vec<f32> {
    let (start0, du, dv) = plane_steps(g, plane, [0.0; 3]);
    let dn = g.dir_to_index(plane.normal());
    let w = plane.width;
    let init = match mode {
        SlabMode::Mip => f32::NEG_INFINITY,
        SlabMode::MinIp => f32::INFINITY,
        SlabMode::Average => 0.0,
    };
    let mut data = vec![init; w * plane.height];
    data.par_chunks_mut(w * TILE_ROWS)
        .enumerate()
        .for_each(|(band, rows)| {
            let n_rows = rows.len() / w;
            // Per row of the band, per offset: the shifted line and its inside samples.
            let lines: Vec<(Line, Range<usize>)> = (0..n_rows)
                .flat_map(|i| {
                    let base = row_start(start0, dv, band * TILE_ROWS + i);
                    offsets.iter().map(move |&t| {
                        let line = Line {
                            start: add(base, scale(dn, t)),
                            step: du,
                        };
                        (line, line.inside_range(g, w))
                    })
                })
                .collect();
            let mut count = vec![0u32; rows.len()];
            let mut tmp = [0.0f32; TILE_COLS];
            for c0 in (0..w).step_by(TILE_COLS) {
                let c1 = (c0 + TILE_COLS).min(w);
                for ((out, cnt), row_lines) in rows
                    .chunks_mut(w)
                    .zip(count.chunks_mut(w))
                    .zip(lines.chunks(offsets.len().max(1)))
                {
                    for (line, inside) in row_lines {
                        let (lo, hi) = (inside.start.max(c0), inside.end.min(c1));
                        if lo < hi {
                            let s = &mut tmp[..hi - lo];
                            sample_span(g, vox, line, lo, s);
                            accumulate(mode, &mut out[lo..hi], &mut cnt[lo..hi], s);
                        }
                    }
                }
            }
            for (o, &c) in rows.iter_mut().zip(&count) {
                if c == 0 {
                    *o = f32::NAN;
                } else if mode == SlabMode::Average {
                    *o /= c as f32;
                }
            }
        });
    data
}

/// Curved planar reformation along a patient-space polyline, straightened: column `c` is the
/// point at arc length `c·pixel_mm`; row `r` is offset by `((height−1)/2 − r)·pixel_mm` along
/// `up` made perpendicular to the local tangent (row 0 on the `up` side). A tube following the
/// path therefore unrolls into a straight horizontal band through the middle row.
/// `height = 2·round(width_mm / (2·pixel_mm)) + 1`.
pub fn curved(
    vol: &Volume,
    path: &[[f64; 3]],
    up: [f64; 3],
    width_mm: f64,
    pixel_mm: f64,
) -> Result<Image, MprError> {
    if !(pixel_mm.is_finite() && pixel_mm > 0.0) {
        return Err(MprError::InvalidParameter("pixel_mm must be positive"));
    }
    if !(width_mm.is_finite() && width_mm >= 0.0) {
        return Err(MprError::InvalidParameter("width_mm must be ≥ 0"));
    }
    if !path.iter().flatten().all(|x| x.is_finite()) {
        return Err(MprError::InvalidParameter("non-finite path point"));
    }
    let g = Grid::new(vol)?;
    // Drop repeated points, build cumulative arc length.
    let mut pts: Vec<V3> = Vec::with_capacity(path.len());
    for &p in path {
        if pts.last().is_none_or(|&q| norm(sub(p, q)) > 1e-9) {
            pts.push(p);
        }
    }
    if pts.len() < 2 {
        return Err(MprError::PathTooShort);
    }
    let mut cum = vec![0.0];
    for w in pts.windows(2) {
        let l = cum.last().copied().unwrap_or(0.0) + norm(sub(w[1], w[0]));
        cum.push(l);
    }
    let total = cum.last().copied().unwrap_or(0.0);
    let ncols = (total / pixel_mm).floor() as usize + 1;
    let half = (width_mm / (2.0 * pixel_mm)).round() as usize;
    let nrows = 2 * half + 1;
    let at = |s: f64| -> V3 {
        let s = s.clamp(0.0, total);
        let seg = cum.partition_point(|&c| c <= s).clamp(1, pts.len() - 1) - 1;
        let len = cum[seg + 1] - cum[seg];
        let t = if len > 0.0 { (s - cum[seg]) / len } else { 0.0 };
        add(pts[seg], scale(sub(pts[seg + 1], pts[seg]), t))
    };
    // Centre point and the (index-space) row step of each column.
    let h = 0.5 * pixel_mm;
    let mut cols_geo = Vec::with_capacity(ncols);
    let mut last_w: Option<V3> = None;
    for c in 0..ncols {
        let s = c as f64 * pixel_mm;
        let p = at(s);
        let tangent = normalize(sub(at(s + h), at(s - h))).unwrap_or([0.0; 3]);
        let w = normalize(sub(up, scale(tangent, dot(up, tangent))))
            .or(last_w)
            .ok_or(MprError::DegeneratePlane("up is parallel to the path"))?;
        last_w = Some(w);
        let top = add(p, scale(w, half as f64 * pixel_mm));
        cols_geo.push((g.to_index(top), g.dir_to_index(scale(w, -pixel_mm))));
    }
    // Sample column-wise (each column is a straight line in index space), then transpose.
    let mut colmajor = vec![0.0f32; ncols * nrows];
    colmajor
        .par_chunks_mut(nrows)
        .zip(cols_geo.par_iter())
        .for_each(|(out, &(start, step))| {
            let line = Line { start, step };
            match &vol.voxels {
                Voxels::I16(d) => sample_line(&g, d, &line, out),
                Voxels::U16(d) => sample_line(&g, d, &line, out),
                Voxels::F32(d) => sample_line(&g, d, &line, out),
            }
        });
    let mut data = vec![0.0f32; ncols * nrows];
    for c in 0..ncols {
        for r in 0..nrows {
            data[c + ncols * r] = colmajor[r + nrows * c];
        }
    }
    Ok(Image {
        width: ncols,
        height: nrows,
        data,
    })
}
