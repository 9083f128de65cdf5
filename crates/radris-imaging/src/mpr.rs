//! Multiplanar reformatting: orthogonal and oblique planes, thick slabs (MIP/MinIP/average)
//! and curved planar reformation, all trilinear, in modality units (NaN outside the volume).
//!
//! Pixel `(c, r)` of a [`Plane`] (column `c`, row `r`) has its centre at
//! `origin + (c − (width−1)/2)·pixel_mm·u + (r − (height−1)/2)·pixel_mm·v`; `u` points right
//! along a row, `v` down the columns, and the plane normal is `u × v`.

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
        if vol.voxels.len() != vol.voxel_count() || vol.voxel_count() == 0 {
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
}

/// Samples `out.len()` points starting at index-space `start`, adding `du` per pixel.
/// Monomorphised per stored type; no enum match in the loop.
#[inline]
fn sample_row<T: Copy + Into<f32>>(g: &Grid, data: &[T], start: V3, du: V3, out: &mut [f32]) {
    let sy = g.dims[0];
    let sz = g.dims[0] * g.dims[1];
    let [ox, oy, oz] = g.step;
    let (mut x, mut y, mut z) = (start[0], start[1], start[2]);
    for o in out.iter_mut() {
        *o = if x >= 0.0 && y >= 0.0 && z >= 0.0 && x <= g.lim[0] && y <= g.lim[1] && z <= g.lim[2]
        {
            let i = (x as usize).min(g.max_base[0]);
            let j = (y as usize).min(g.max_base[1]);
            let k = (z as usize).min(g.max_base[2]);
            let fx = (x - i as f64) as f32;
            let fy = (y - j as f64) as f32;
            let fz = (z - k as f64) as f32;
            let b = i + sy * j + sz * k;
            // All eight indices are < len by construction of max_base/step.
            let c = |idx: usize| -> f32 { data[idx].into() };
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
            (b0 + (b1 - b0) * fz) * g.slope + g.intercept
        } else {
            f32::NAN
        };
        x += du[0];
        y += du[1];
        z += du[2];
    }
}

fn sample_row_dyn(g: &Grid, vox: &Voxels, start: V3, du: V3, out: &mut [f32]) {
    match vox {
        Voxels::I16(d) => sample_row(g, d, start, du, out),
        Voxels::U16(d) => sample_row(g, d, start, du, out),
        Voxels::F32(d) => sample_row(g, d, start, du, out),
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
    let (start, du, dv) = plane_steps(&g, &plane, [0.0; 3]);
    let mut data = vec![0.0f32; plane.width * plane.height];
    data.par_chunks_mut(plane.width)
        .enumerate()
        .for_each(|(r, out)| sample_row_dyn(&g, &vol.voxels, row_start(start, dv, r), du, out));
    Ok(Image {
        width: plane.width,
        height: plane.height,
        data,
    })
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
    let normal = plane.normal();
    let offsets: Vec<f64> = (0..n_samples)
        .map(|s| {
            if n_samples == 1 {
                0.0
            } else {
                -thickness_mm / 2.0 + thickness_mm * s as f64 / (n_samples - 1) as f64
            }
        })
        .collect();
    let (start0, du, dv) = plane_steps(&g, &plane, [0.0; 3]);
    let dn = g.dir_to_index(normal);
    let w = plane.width;
    let mut data = vec![0.0f32; w * plane.height];
    data.par_chunks_mut(w).enumerate().for_each(|(r, out)| {
        let mut tmp = vec![0.0f32; w];
        let mut count = vec![0u32; w];
        let init = match mode {
            SlabMode::Mip => f32::NEG_INFINITY,
            SlabMode::MinIp => f32::INFINITY,
            SlabMode::Average => 0.0,
        };
        out.fill(init);
        let base = row_start(start0, dv, r);
        for &t in &offsets {
            sample_row_dyn(&g, &vol.voxels, add(base, scale(dn, t)), du, &mut tmp);
            for ((o, c), &x) in out.iter_mut().zip(count.iter_mut()).zip(&tmp) {
                if x.is_nan() {
                    continue;
                }
                *c += 1;
                *o = match mode {
                    SlabMode::Mip => o.max(x),
                    SlabMode::MinIp => o.min(x),
                    SlabMode::Average => *o + x,
                };
            }
        }
        for (o, &c) in out.iter_mut().zip(&count) {
            if c == 0 {
                *o = f32::NAN;
            } else if mode == SlabMode::Average {
                *o /= c as f32;
            }
        }
    });
    Ok(Image {
        width: w,
        height: plane.height,
        data,
    })
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
        .for_each(|(out, &(start, step))| sample_row_dyn(&g, &vol.voxels, start, step, out));
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
