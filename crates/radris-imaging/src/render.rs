//! CPU volume rendering: ray casting with transfer functions, orthographic and perspective
//! cameras, and fly-through paths.
//!
//! Rays are cast in voxel index space (the volume's affine geometry, gantry tilt included, is
//! folded into each ray), samples are trilinear, compositing is front to back with opacity
//! corrected for the step length, rays stop once opaque (early ray termination) and skip
//! bricks of voxels the transfer function makes transparent (empty-space skipping).
//!
//! Transfer function opacities are *per millimetre of path*: a sample taken `step` mm apart
//! contributes `1 − (1 − α)^step`.
//!
//! The output is premultiplied RGBA (composited over black): `rgb` is the colour to show on a
//! black background, `a` the accumulated opacity. MIP renders are opaque wherever the ray
//! crosses the volume.

use crate::volume::{Volume, Voxels};
use rayon::prelude::*;
use thiserror::Error;

/// Errors from rendering.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RenderError {
    #[error("image size {0}×{1} is empty or too large")]
    EmptyImage(usize, usize),
    #[error("volume dims {dims:?} hold {expected} voxels but {actual} are stored")]
    VoxelCount {
        dims: [usize; 3],
        expected: usize,
        actual: usize,
    },
    #[error("volume geometry is degenerate (zero spacing or dependent axes)")]
    Geometry,
    #[error("degenerate camera: {0}")]
    Camera(&'static str),
    #[error("transfer function needs at least one control point with finite values")]
    TransferFunction,
    #[error("step length must be positive and finite")]
    Step,
    #[error("the brick grid was built for a volume of other dimensions")]
    GridMismatch,
    #[error("camera path needs at least two distinct points")]
    PathTooShort,
}

type V3 = [f64; 3];

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn scale(a: V3, s: f64) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn norm(a: V3) -> f64 {
    dot(a, a).sqrt()
}
fn normalize(a: V3) -> Option<V3> {
    let n = norm(a);
    (n.is_finite() && n > 1e-12).then(|| scale(a, 1.0 / n))
}
fn finite3(a: V3) -> bool {
    a.iter().all(|x| x.is_finite())
}

/// Row-major 3×3 matrix helpers.
fn mat_vec(m: &[[f64; 3]; 3], v: V3) -> V3 {
    [dot(m[0], v), dot(m[1], v), dot(m[2], v)]
}
fn transpose(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut t = [[0.0; 3]; 3];
    for (r, row) in m.iter().enumerate() {
        for (c, x) in row.iter().enumerate() {
            t[c][r] = *x;
        }
    }
    t
}
fn invert(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let c0 = cross(m[1], m[2]);
    let det = dot(m[0], c0);
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let c1 = cross(m[2], m[0]);
    let c2 = cross(m[0], m[1]);
    // Rows of the inverse are the columns of the adjugate / det.
    let adj_t = [c0, c1, c2]; // columns of the inverse
    Some(transpose(&[
        scale(adj_t[0], 1.0 / det),
        scale(adj_t[1], 1.0 / det),
        scale(adj_t[2], 1.0 / det),
    ]))
}

/// Index → patient: p = origin + M·idx, M's columns = spacing[a]·axes[a].
/// Returns `(M⁻¹)` or an error for degenerate geometry.
fn patient_to_index_matrix(vol: &Volume) -> Result<[[f64; 3]; 3], RenderError> {
    let mut m = [[0.0; 3]; 3];
    for a in 0..3 {
        for (r, row) in m.iter_mut().enumerate() {
            row[a] = vol.axes[a][r] * vol.spacing[a];
        }
    }
    invert(&m).ok_or(RenderError::Geometry)
}

/// One control point of a [`TransferFunction`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlPoint {
    /// Modality value (e.g. HU).
    pub value: f64,
    /// Linear RGB in 0..=1.
    pub color: [f32; 3],
    /// Opacity per millimetre of path, 0..=1.
    pub opacity: f32,
}

/// How rays turn samples into a pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderMode {
    /// Front-to-back emission/absorption compositing with shading.
    Composite,
    /// Maximum intensity projection: the ray's maximum value mapped through the colour ramp
    /// (opacities ignored).
    Mip,
}

/// Piecewise-linear colour and opacity over modality values; constant beyond the end points.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferFunction {
    points: Vec<ControlPoint>,
    pub mode: RenderMode,
}

fn cp(value: f64, color: [f32; 3], opacity: f32) -> ControlPoint {
    ControlPoint {
        value,
        color,
        opacity,
    }
}

impl TransferFunction {
    /// A composite transfer function from control points (sorted here by value).
    pub fn new(mut points: Vec<ControlPoint>) -> Result<Self, RenderError> {
        if points.is_empty()
            || points.iter().any(|p| {
                !p.value.is_finite()
                    || !p.opacity.is_finite()
                    || p.color.iter().any(|c| !c.is_finite())
            })
        {
            return Err(RenderError::TransferFunction);
        }
        for p in &mut points {
            p.opacity = p.opacity.clamp(0.0, 1.0);
            for c in &mut p.color {
                *c = c.clamp(0.0, 1.0);
            }
        }
        points.sort_by(|a, b| a.value.total_cmp(&b.value));
        Ok(Self {
            points,
            mode: RenderMode::Composite,
        })
    }

    /// The control points, sorted by value.
    pub fn points(&self) -> &[ControlPoint] {
        &self.points
    }

    /// Colour and opacity (per mm) at a modality value.
    pub fn eval(&self, value: f64) -> ([f32; 3], f32) {
        let p = &self.points;
        let first = p[0];
        if value <= first.value {
            return (first.color, first.opacity);
        }
        for w in p.windows(2) {
            let (a, b) = (w[0], w[1]);
            if value <= b.value {
                let span = b.value - a.value;
                let t = if span > 0.0 {
                    ((value - a.value) / span) as f32
                } else {
                    1.0
                };
                let lerp = |x: f32, y: f32| x + (y - x) * t;
                return (
                    [
                        lerp(a.color[0], b.color[0]),
                        lerp(a.color[1], b.color[1]),
                        lerp(a.color[2], b.color[2]),
                    ],
                    lerp(a.opacity, b.opacity),
                );
            }
        }
        let last = p[p.len() - 1];
        (last.color, last.opacity)
    }

    /// Bone: transparent below ~150 HU, ivory cortical bone.
    pub fn ct_bone() -> Self {
        Self::preset(vec![
            cp(-1024.0, [0.0, 0.0, 0.0], 0.0),
            cp(150.0, [0.75, 0.45, 0.3], 0.0),
            cp(300.0, [0.95, 0.85, 0.7], 0.2),
            cp(700.0, [1.0, 0.95, 0.85], 0.5),
            cp(1500.0, [1.0, 1.0, 0.95], 0.8),
        ])
    }

    /// Soft tissue: fat faint yellow, muscle/organs red, bone white.
    pub fn ct_soft_tissue() -> Self {
        Self::preset(vec![
            cp(-1024.0, [0.0, 0.0, 0.0], 0.0),
            cp(-200.0, [0.8, 0.7, 0.4], 0.0),
            cp(-80.0, [0.9, 0.8, 0.5], 0.01),
            cp(0.0, [0.75, 0.3, 0.25], 0.02),
            cp(80.0, [0.85, 0.45, 0.35], 0.08),
            cp(250.0, [1.0, 0.95, 0.85], 0.3),
            cp(1000.0, [1.0, 1.0, 1.0], 0.6),
        ])
    }

    /// Lung: parenchyma and airway walls; denser tissue faint.
    pub fn ct_lung() -> Self {
        Self::preset(vec![
            cp(-1024.0, [0.0, 0.0, 0.0], 0.0),
            cp(-950.0, [0.5, 0.5, 0.6], 0.0),
            cp(-800.0, [0.7, 0.7, 0.85], 0.03),
            cp(-600.0, [0.9, 0.75, 0.75], 0.08),
            cp(-400.0, [0.9, 0.6, 0.55], 0.0),
            cp(200.0, [0.9, 0.6, 0.55], 0.0),
            cp(400.0, [1.0, 1.0, 0.95], 0.3),
        ])
    }

    /// CT angiography: contrast-filled vessels red, dense bone white.
    pub fn ct_angio() -> Self {
        Self::preset(vec![
            cp(-1024.0, [0.0, 0.0, 0.0], 0.0),
            cp(120.0, [0.6, 0.05, 0.05], 0.0),
            cp(200.0, [0.85, 0.15, 0.1], 0.25),
            cp(450.0, [1.0, 0.75, 0.6], 0.5),
            cp(1000.0, [1.0, 1.0, 1.0], 0.8),
        ])
    }

    /// Maximum intensity projection with a grey window `[lo, hi]` (modality units).
    pub fn mip(lo: f64, hi: f64) -> Result<Self, RenderError> {
        if !(lo.is_finite() && hi.is_finite() && hi > lo) {
            return Err(RenderError::TransferFunction);
        }
        let mut tf = Self::new(vec![cp(lo, [0.0; 3], 1.0), cp(hi, [1.0; 3], 1.0)])?;
        tf.mode = RenderMode::Mip;
        Ok(tf)
    }

    fn preset(points: Vec<ControlPoint>) -> Self {
        // The presets' points are sorted, finite constants.
        Self {
            points,
            mode: RenderMode::Composite,
        }
    }
}

/// A camera in patient space (millimetres, DICOM LPS).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Camera {
    /// Parallel rays along `target − eye`; `view_width_mm` spans the image width. Rays cover
    /// the whole line through the volume (the eye only sets the view centre and direction).
    Orthographic {
        eye: V3,
        target: V3,
        up: V3,
        view_width_mm: f64,
    },
    /// Rays from `eye`; `fov_y_deg` is the vertical field of view. Only what lies in front of
    /// the eye is drawn (fly-through).
    Perspective {
        eye: V3,
        target: V3,
        up: V3,
        fov_y_deg: f64,
    },
}

struct CameraFrame {
    eye: V3,
    forward: V3,
    right: V3,
    up: V3,
}

impl Camera {
    fn frame(&self) -> Result<CameraFrame, RenderError> {
        let (eye, target, up) = match *self {
            Camera::Orthographic {
                eye, target, up, ..
            }
            | Camera::Perspective {
                eye, target, up, ..
            } => (eye, target, up),
        };
        if !(finite3(eye) && finite3(target) && finite3(up)) {
            return Err(RenderError::Camera("non-finite vector"));
        }
        let forward = normalize(sub(target, eye)).ok_or(RenderError::Camera("eye == target"))?;
        let right =
            normalize(cross(forward, up)).ok_or(RenderError::Camera("up parallel to view"))?;
        let up = cross(right, forward);
        Ok(CameraFrame {
            eye,
            forward,
            right,
            up,
        })
    }

    /// Orthographic camera looking at the volume's centre from direction `view_dir`, framing
    /// its full extent.
    pub fn fit_orthographic(vol: &Volume, view_dir: V3, up: V3) -> Camera {
        let (centre, diag) = volume_centre_and_diagonal(vol);
        let d = normalize(view_dir).unwrap_or([0.0, 1.0, 0.0]);
        Camera::Orthographic {
            eye: sub(centre, scale(d, diag)),
            target: centre,
            up,
            view_width_mm: diag,
        }
    }
}

fn volume_centre_and_diagonal(vol: &Volume) -> (V3, f64) {
    let mut extent = [0.0; 3];
    for (a, e) in extent.iter_mut().enumerate() {
        *e = vol.dims[a].saturating_sub(1) as f64 * vol.spacing[a];
    }
    let mut centre = vol.origin;
    for (axis, e) in vol.axes.iter().zip(extent) {
        centre = add(centre, scale(*axis, e / 2.0));
    }
    let diag = norm(extent).max(1.0);
    (centre, diag)
}

/// Shading of composited samples; the light sits at the eye (headlight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shading {
    None,
    Lambert,
    Phong,
}

/// Rendering options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderOptions {
    /// Step between samples in mm; `None` = the smallest voxel spacing.
    pub step_mm: Option<f64>,
    /// Stop a ray once its opacity exceeds this.
    pub early_termination: f32,
    /// Skip bricks the transfer function makes transparent.
    pub empty_space_skipping: bool,
    pub shading: Shading,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            step_mm: None,
            early_termination: 0.98,
            empty_space_skipping: true,
            shading: Shading::Phong,
        }
    }
}

/// An 8-bit RGBA image, rows top to bottom, premultiplied over black.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbaImage {
    /// The pixel at column `x`, row `y`, or `None` outside the image.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let o = (y * self.width + x) * 4;
        Some([
            self.data[o],
            self.data[o + 1],
            self.data[o + 2],
            self.data[o + 3],
        ])
    }
}

/// Brick edge in voxels for empty-space skipping.
pub const BRICK: usize = 8;

/// Per-brick min/max of stored values over the voxels a brick's samples interpolate from.
/// Depends on the volume only; build once and reuse across transfer functions.
#[derive(Debug, Clone)]
pub struct BrickGrid {
    dims: [usize; 3],
    bdims: [usize; 3],
    min: Vec<f32>,
    max: Vec<f32>,
    stored_min: f32,
    stored_max: f32,
}

trait Voxel: Copy + Send + Sync {
    fn f(self) -> f32;
}
impl Voxel for i16 {
    #[inline(always)]
    fn f(self) -> f32 {
        self as f32
    }
}
impl Voxel for u16 {
    #[inline(always)]
    fn f(self) -> f32 {
        self as f32
    }
}
impl Voxel for f32 {
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
}

fn check_volume(vol: &Volume) -> Result<(), RenderError> {
    let expected = vol.dims[0]
        .checked_mul(vol.dims[1])
        .and_then(|x| x.checked_mul(vol.dims[2]))
        .unwrap_or(usize::MAX);
    let actual = match &vol.voxels {
        Voxels::I16(v) => v.len(),
        Voxels::U16(v) => v.len(),
        Voxels::F32(v) => v.len(),
    };
    if expected != actual || expected == 0 {
        return Err(RenderError::VoxelCount {
            dims: vol.dims,
            expected,
            actual,
        });
    }
    if !(vol.slope.is_finite() && vol.intercept.is_finite()) || vol.slope == 0.0 {
        return Err(RenderError::Geometry);
    }
    Ok(())
}

impl BrickGrid {
    pub fn new(vol: &Volume) -> Result<Self, RenderError> {
        check_volume(vol)?;
        Ok(match &vol.voxels {
            Voxels::I16(v) => Self::build(v, vol.dims),
            Voxels::U16(v) => Self::build(v, vol.dims),
            Voxels::F32(v) => Self::build(v, vol.dims),
        })
    }

    fn build<T: Voxel>(v: &[T], dims: [usize; 3]) -> Self {
        let bdims = [
            dims[0].div_ceil(BRICK),
            dims[1].div_ceil(BRICK),
            dims[2].div_ceil(BRICK),
        ];
        let per_slab = bdims[0] * bdims[1];
        let slabs: Vec<(Vec<f32>, Vec<f32>)> = (0..bdims[2])
            .into_par_iter()
            .map(|bz| {
                let mut mn = vec![f32::INFINITY; per_slab];
                let mut mx = vec![f32::NEG_INFINITY; per_slab];
                let k0 = bz * BRICK;
                let k1 = (k0 + BRICK).min(dims[2] - 1);
                for k in k0..=k1 {
                    for j in 0..dims[1] {
                        // Voxel j belongs to bricks j/B and (if on a boundary) j/B − 1.
                        let by_hi = (j / BRICK).min(bdims[1] - 1);
                        let by_lo = if j % BRICK == 0 && j > 0 {
                            j / BRICK - 1
                        } else {
                            by_hi
                        };
                        let row = &v[(k * dims[1] + j) * dims[0]..][..dims[0]];
                        for bx in 0..bdims[0] {
                            let i0 = bx * BRICK;
                            let i1 = (i0 + BRICK).min(dims[0] - 1);
                            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                            for x in &row[i0..=i1] {
                                let f = x.f();
                                lo = lo.min(f);
                                hi = hi.max(f);
                            }
                            for by in by_lo..=by_hi {
                                let b = by * bdims[0] + bx;
                                mn[b] = mn[b].min(lo);
                                mx[b] = mx[b].max(hi);
                            }
                        }
                    }
                }
                (mn, mx)
            })
            .collect();
        let mut min = Vec::with_capacity(per_slab * bdims[2]);
        let mut max = Vec::with_capacity(per_slab * bdims[2]);
        for (a, b) in slabs {
            min.extend(a);
            max.extend(b);
        }
        let stored_min = min.iter().copied().fold(f32::INFINITY, f32::min);
        let stored_max = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Self {
            dims,
            bdims,
            min,
            max,
            stored_min,
            stored_max,
        }
    }
}

const LUT_SIZE: usize = 4096;
/// Bricks per macro-brick edge.
const MACRO: usize = 4;
const MACRO_VOXELS: usize = MACRO * BRICK;

/// A volume prepared for rendering with one transfer function and step: the colour/opacity
/// lookup table in stored units and the per-brick transparency flags.
pub struct Renderer<'a> {
    vol: &'a Volume,
    m_inv: [[f64; 3]; 3],
    /// Rows of M⁻ᵀ, to turn index-space gradients into patient-space normals.
    m_inv_t: [[f64; 3]; 3],
    mode: RenderMode,
    step_mm: f64,
    opts: RenderOptions,
    lut_min: f32,
    lut_scale: f32,
    /// Colour rgb and step-corrected alpha per LUT bin.
    lut: Vec<[f32; 4]>,
    bdims: [usize; 3],
    /// Per brick: may the brick change the pixel? (Composite: some bin in its range has
    /// alpha > 0. MIP: always true; MIP skipping uses `brick_max`.)
    brick_visible: Vec<bool>,
    brick_max: Vec<f32>,
    /// The same per macro brick of `MACRO`³ bricks (two-level skipping).
    mdims: [usize; 3],
    macro_visible: Vec<bool>,
    macro_max: Vec<f32>,
    /// MIP: stored-value floor below which values map to the window's bottom.
    mip_floor: f32,
    /// MIP: once a ray reaches this stored value its pixel cannot change (the volume's
    /// maximum, or the ramp's top), so the ray stops.
    mip_ceiling: f32,
    /// Index-space box (per axis `[lo, hi]`) outside which no sample can change a pixel: the
    /// voxel range of the bricks that are visible (composite) or exceed `mip_floor` (MIP),
    /// widened by one voxel. `None` when there are none. Rays are clipped to it before
    /// stepping, so the air around a body costs nothing.
    focus: Option<[[f64; 2]; 3]>,
}

impl<'a> Renderer<'a> {
    /// Prepares `vol` for rendering with `tf`, building the brick grid.
    pub fn new(
        vol: &'a Volume,
        tf: &TransferFunction,
        opts: RenderOptions,
    ) -> Result<Self, RenderError> {
        let grid = BrickGrid::new(vol)?;
        Self::with_grid(vol, &grid, tf, opts)
    }

    /// Prepares with a brick grid already built for `vol` (so switching presets is cheap).
    pub fn with_grid(
        vol: &'a Volume,
        grid: &BrickGrid,
        tf: &TransferFunction,
        opts: RenderOptions,
    ) -> Result<Self, RenderError> {
        check_volume(vol)?;
        if grid.dims != vol.dims {
            return Err(RenderError::GridMismatch);
        }
        if tf.points.is_empty() {
            return Err(RenderError::TransferFunction);
        }
        let m_inv = patient_to_index_matrix(vol)?;
        let min_spacing = vol.spacing.iter().copied().fold(f64::INFINITY, f64::min);
        let step_mm = opts.step_mm.unwrap_or(min_spacing);
        if !(step_mm.is_finite() && step_mm > 0.0) {
            return Err(RenderError::Step);
        }
        let lut_min = grid.stored_min;
        let range = (grid.stored_max - grid.stored_min).max(1e-6);
        let lut_scale = (LUT_SIZE - 1) as f32 / range;
        let (slope, intercept) = (vol.slope, vol.intercept);
        let lut: Vec<[f32; 4]> = (0..LUT_SIZE)
            .map(|b| {
                let stored = lut_min as f64 + b as f64 / lut_scale as f64;
                let (c, a) = tf.eval(stored * slope + intercept);
                let a = match tf.mode {
                    RenderMode::Composite => {
                        if a <= 0.0 {
                            0.0
                        } else {
                            1.0 - (1.0 - a as f64).powf(step_mm) as f32
                        }
                    }
                    RenderMode::Mip => 1.0,
                };
                [c[0], c[1], c[2], a]
            })
            .collect();
        // Prefix count of visible bins, for O(1) range queries.
        let mut prefix = vec![0u32; LUT_SIZE + 1];
        for (b, e) in lut.iter().enumerate() {
            prefix[b + 1] = prefix[b] + u32::from(e[3] > 0.0);
        }
        let bin =
            |s: f32| -> usize { (((s - lut_min) * lut_scale).max(0.0) as usize).min(LUT_SIZE - 1) };
        let brick_visible: Vec<bool> = grid
            .min
            .iter()
            .zip(&grid.max)
            .map(|(&lo, &hi)| {
                // Pad by a bin each side against rounding in interpolation.
                let a = bin(lo).saturating_sub(1);
                let b = (bin(hi) + 1).min(LUT_SIZE - 1);
                prefix[b + 1] - prefix[a] > 0
            })
            .collect();
        // MIP: the ramp's bottom in stored units; values below it render like it.
        let lowest = tf.points[0].value;
        let mip_floor = if slope > 0.0 {
            ((lowest - intercept) / slope) as f32
        } else {
            f32::NEG_INFINITY
        };
        let highest = tf.points[tf.points.len() - 1].value;
        let mip_ceiling = if slope > 0.0 {
            grid.stored_max.min(((highest - intercept) / slope) as f32)
        } else {
            grid.stored_max
        };
        let m_inv_t = transpose(&m_inv);
        let bdims = grid.bdims;
        let mdims = bdims.map(|b| b.div_ceil(MACRO));
        let mut macro_visible = vec![false; mdims[0] * mdims[1] * mdims[2]];
        let mut macro_max = vec![f32::NEG_INFINITY; macro_visible.len()];
        for bz in 0..bdims[2] {
            for by in 0..bdims[1] {
                for bx in 0..bdims[0] {
                    let b = bx + bdims[0] * (by + bdims[1] * bz);
                    let m = bx / MACRO + mdims[0] * (by / MACRO + mdims[1] * (bz / MACRO));
                    macro_visible[m] |= brick_visible[b];
                    macro_max[m] = macro_max[m].max(grid.max[b]);
                }
            }
        }
        // A sample outside `focus` reads only voxels of bricks that cannot matter: along
        // the clipped axis its 2×2×2 cell lies in a brick beyond the interesting range
        // (bricks share their boundary voxels), so its value is within that brick's
        // min/max: transparent (composite) or not above `mip_floor` (MIP).
        let mut focus: Option<[[f64; 2]; 3]> = None;
        for bz in 0..bdims[2] {
            for by in 0..bdims[1] {
                for bx in 0..bdims[0] {
                    let b = bx + bdims[0] * (by + bdims[1] * bz);
                    let matters = match tf.mode {
                        RenderMode::Composite => brick_visible[b],
                        RenderMode::Mip => grid.max[b] > mip_floor,
                    };
                    if !matters {
                        continue;
                    }
                    let f = focus.get_or_insert([[f64::INFINITY, f64::NEG_INFINITY]; 3]);
                    for (a, bi) in [bx, by, bz].into_iter().enumerate() {
                        let lo = (bi * BRICK) as f64;
                        let hi = ((bi + 1) * BRICK).min(vol.dims[a] - 1) as f64;
                        f[a][0] = f[a][0].min(lo - 1.0);
                        f[a][1] = f[a][1].max(hi + 1.0);
                    }
                }
            }
        }
        Ok(Self {
            focus,
            vol,
            m_inv,
            m_inv_t,
            mode: tf.mode,
            step_mm,
            opts,
            lut_min,
            lut_scale,
            lut,
            bdims: grid.bdims,
            brick_visible,
            brick_max: grid.max.clone(),
            mdims,
            macro_visible,
            macro_max,
            mip_floor,
            mip_ceiling,
        })
    }

    /// Renders a `width`×`height` image.
    pub fn render(
        &self,
        camera: &Camera,
        width: usize,
        height: usize,
    ) -> Result<RgbaImage, RenderError> {
        if width == 0 || height == 0 {
            return Err(RenderError::EmptyImage(width, height));
        }
        let frame = camera.frame()?;
        let aspect = height as f64 / width as f64;
        let (half_w, perspective) = match *camera {
            Camera::Orthographic { view_width_mm, .. } => {
                if !(view_width_mm.is_finite() && view_width_mm > 0.0) {
                    return Err(RenderError::Camera("view width must be positive"));
                }
                (view_width_mm / 2.0, false)
            }
            Camera::Perspective { fov_y_deg, .. } => {
                if !(fov_y_deg.is_finite() && fov_y_deg > 0.0 && fov_y_deg < 179.0) {
                    return Err(RenderError::Camera("field of view must be in (0, 179)°"));
                }
                ((fov_y_deg.to_radians() / 2.0).tan() / aspect, true)
            }
        };
        let half_h = half_w * aspect;
        let bytes = width
            .checked_mul(height)
            .and_then(|x| x.checked_mul(4))
            .ok_or(RenderError::EmptyImage(width, height))?;
        let mut data = vec![0u8; bytes];
        let vol = self.vol;
        data.par_chunks_mut(width * 4)
            .enumerate()
            .for_each(|(y, row)| {
                let v = (0.5 - (y as f64 + 0.5) / height as f64) * 2.0 * half_h;
                for x in 0..width {
                    let u = ((x as f64 + 0.5) / width as f64 - 0.5) * 2.0 * half_w;
                    let (origin, dir) = if perspective {
                        let d = add(
                            frame.forward,
                            add(scale(frame.right, u), scale(frame.up, v)),
                        );
                        (frame.eye, normalize(d).unwrap_or(frame.forward))
                    } else {
                        (
                            add(frame.eye, add(scale(frame.right, u), scale(frame.up, v))),
                            frame.forward,
                        )
                    };
                    let px = match &vol.voxels {
                        Voxels::I16(d) => self.cast(d, origin, dir, perspective),
                        Voxels::U16(d) => self.cast(d, origin, dir, perspective),
                        Voxels::F32(d) => self.cast(d, origin, dir, perspective),
                    };
                    row[x * 4..x * 4 + 4].copy_from_slice(&px);
                }
            });
        Ok(RgbaImage {
            width,
            height,
            data,
        })
    }

    /// Casts one ray (patient-space origin and unit direction).
    fn cast<T: Voxel>(&self, data: &[T], origin: V3, dir: V3, from_eye: bool) -> [u8; 4] {
        let dims = self.vol.dims;
        let o = mat_vec(&self.m_inv, sub(origin, self.vol.origin));
        let d = mat_vec(&self.m_inv, dir);
        // Clip against the box of voxel centres [0, dims−1].
        let (mut t0, mut t1) = (f64::NEG_INFINITY, f64::INFINITY);
        for a in 0..3 {
            let hi = (dims[a] - 1) as f64;
            if d[a].abs() < 1e-12 {
                if o[a] < 0.0 || o[a] > hi {
                    return [0; 4];
                }
            } else {
                let (ta, tb) = ((0.0 - o[a]) / d[a], (hi - o[a]) / d[a]);
                t0 = t0.max(ta.min(tb));
                t1 = t1.min(ta.max(tb));
            }
        }
        if from_eye {
            t0 = t0.max(0.0);
        }
        if !(t0.is_finite() && t1.is_finite()) || t1 < t0 {
            return [0; 4];
        }
        let dt = self.step_mm;
        let n_steps = ((t1 - t0) / dt).floor() as usize + 1;
        // Samples n_first..n_end can matter (see `focus`), with one sample of slack each
        // side; sample positions stay base + n·step, so clipping cannot move them.
        let (n_first, n_end) = if self.opts.empty_space_skipping {
            let Some(f) = self.focus else {
                return self.finish_empty();
            };
            let (mut a0, mut a1) = (t0, t1);
            for a in 0..3 {
                if d[a].abs() < 1e-12 {
                    if o[a] < f[a][0] || o[a] > f[a][1] {
                        return self.finish_empty();
                    }
                } else {
                    let (ta, tb) = ((f[a][0] - o[a]) / d[a], (f[a][1] - o[a]) / d[a]);
                    a0 = a0.max(ta.min(tb));
                    a1 = a1.min(ta.max(tb));
                }
            }
            if a0.is_nan() || a1.is_nan() || a0 > a1 {
                return self.finish_empty();
            }
            let first = ((a0 - t0) / dt).floor() - 1.0;
            let end = ((a1 - t0) / dt).ceil() + 2.0;
            (
                first.max(0.0) as usize,
                (end.max(0.0) as usize).min(n_steps),
            )
        } else {
            (0, n_steps)
        };
        let sampler = Sampler { data, dims };
        let skip = self.opts.empty_space_skipping;
        let (bdims, mdims) = (self.bdims, self.mdims);
        let inv_d = [1.0 / d[0], 1.0 / d[1], 1.0 / d[2]];
        let inv_dt = 1.0 / dt;
        // Whole-voxel coordinates of p (clamped at 0), converted once per cell test and shared
        // by the macro-brick and brick lookups.
        let voxel_of = |p: [f32; 3]| -> [usize; 3] { p.map(|x| x.max(0.0) as usize) };
        let cell = |v: [usize; 3], size: usize, cd: [usize; 3]| -> [usize; 3] {
            [
                (v[0] / size).min(cd[0] - 1),
                (v[1] / size).min(cd[1] - 1),
                (v[2] / size).min(cd[2] - 1),
            ]
        };
        let flat =
            |c: [usize; 3], cd: [usize; 3]| -> usize { c[0] + cd[0] * (c[1] + cd[1] * c[2]) };
        // Index of the first sample at or after the exit of cell `c` (brick or macro brick,
        // edge `size`) that sample n lies in.
        let next_after = |n: usize, c: [usize; 3], size: usize| -> usize {
            let mut t_exit = f64::INFINITY;
            for a in 0..3 {
                if d[a] > 1e-12 {
                    t_exit = t_exit.min((((c[a] + 1) * size) as f64 - o[a]) * inv_d[a]);
                } else if d[a] < -1e-12 {
                    t_exit = t_exit.min(((c[a] * size) as f64 - o[a]) * inv_d[a]);
                }
            }
            let m = (t_exit - t0) * inv_dt;
            if m.is_finite() && m > n as f64 {
                // ⌈m⌉ without a libm call (the baseline x86-64 target has no `roundsd`);
                // m > n ≥ 0, so truncation is the floor.
                let f = m as usize;
                let c = if (f as f64) < m { f + 1 } else { f };
                c.max(n + 1)
            } else {
                n + 1
            }
        };
        // Sample n sits at base + n·step (the same formula whether or not bricks are skipped,
        // so skipping cannot move samples).
        let base = [
            (o[0] + t0 * d[0]) as f32,
            (o[1] + t0 * d[1]) as f32,
            (o[2] + t0 * d[2]) as f32,
        ];
        let step = [(dt * d[0]) as f32, (dt * d[1]) as f32, (dt * d[2]) as f32];
        let pos = |n: usize| -> [f32; 3] {
            let n = n as f32;
            [
                base[0] + n * step[0],
                base[1] + n * step[1],
                base[2] + n * step[2],
            ]
        };
        match self.mode {
            RenderMode::Mip => {
                let mut best = self.mip_floor;
                let mut n = n_first;
                // Samples run brick by brick: the skip tests happen once per brick entered,
                // not per sample. A sample of the run that rounding places in a neighbouring
                // brick is still bounded by that brick's max, so taking it cannot change the
                // maximum where the per-sample test would have skipped it.
                'ray: while n < n_end {
                    let p = pos(n);
                    let (end, cap) = if skip {
                        let v = voxel_of(p);
                        let mc = cell(v, MACRO_VOXELS, mdims);
                        if self.macro_max[flat(mc, mdims)] <= best {
                            n = next_after(n, mc, MACRO_VOXELS);
                            continue;
                        }
                        let bc = cell(v, BRICK, bdims);
                        let cap = self.brick_max[flat(bc, bdims)];
                        if cap <= best {
                            n = next_after(n, bc, BRICK);
                            continue;
                        }
                        (next_after(n, bc, BRICK).min(n_end), cap)
                    } else {
                        (n_end, f32::INFINITY)
                    };
                    let mut next = end;
                    for m in n..end {
                        best = best.max(sampler.trilinear(pos(m)));
                        if best >= self.mip_ceiling {
                            break 'ray;
                        }
                        if best >= cap {
                            // The brick cannot raise the maximum any more: back to the
                            // per-brick tests, which skip the rest of it.
                            next = m + 1;
                            break;
                        }
                    }
                    n = next;
                }
                let e = self.lut[self.bin(best)];
                [to_u8(e[0]), to_u8(e[1]), to_u8(e[2]), 255]
            }
            RenderMode::Composite => {
                let (mut r, mut g, mut b, mut acc) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
                let light = [-dir[0], -dir[1], -dir[2]];
                let mut n = n_first;
                // Brick by brick as for MIP: a sample that rounding places in an invisible
                // neighbouring brick has zero opacity there, so taking it changes nothing.
                'ray: while n < n_end {
                    let p = pos(n);
                    let end = if skip {
                        let v = voxel_of(p);
                        let mc = cell(v, MACRO_VOXELS, mdims);
                        if !self.macro_visible[flat(mc, mdims)] {
                            n = next_after(n, mc, MACRO_VOXELS);
                            continue;
                        }
                        let bc = cell(v, BRICK, bdims);
                        if !self.brick_visible[flat(bc, bdims)] {
                            n = next_after(n, bc, BRICK);
                            continue;
                        }
                        next_after(n, bc, BRICK).min(n_end)
                    } else {
                        n_end
                    };
                    for m in n..end {
                        let p = pos(m);
                        let e = self.lut[self.bin(sampler.trilinear(p))];
                        let a = e[3];
                        if a > 0.0 {
                            let (diff, spec) = match self.opts.shading {
                                Shading::None => (1.0, 0.0),
                                sh => self.shade(&sampler, p, light, sh == Shading::Phong),
                            };
                            let w = (1.0 - acc) * a;
                            r += w * (e[0] * diff + spec);
                            g += w * (e[1] * diff + spec);
                            b += w * (e[2] * diff + spec);
                            acc += w;
                            if acc > self.opts.early_termination {
                                break 'ray;
                            }
                        }
                    }
                    n = end;
                }
                [to_u8(r), to_u8(g), to_u8(b), to_u8(acc)]
            }
        }
    }

    /// The pixel of a ray that crosses the volume but nothing that can show.
    fn finish_empty(&self) -> [u8; 4] {
        match self.mode {
            RenderMode::Mip => {
                let e = self.lut[self.bin(self.mip_floor)];
                [to_u8(e[0]), to_u8(e[1]), to_u8(e[2]), 255]
            }
            RenderMode::Composite => [0; 4],
        }
    }

    #[inline(always)]
    fn bin(&self, s: f32) -> usize {
        (((s - self.lut_min) * self.lut_scale).max(0.0) as usize).min(LUT_SIZE - 1)
    }

    /// Diffuse factor and specular term (headlight) at `p`.
    fn shade<T: Voxel>(&self, s: &Sampler<T>, p: [f32; 3], light: V3, phong: bool) -> (f32, f32) {
        let g = [
            s.trilinear([p[0] + 1.0, p[1], p[2]]) - s.trilinear([p[0] - 1.0, p[1], p[2]]),
            s.trilinear([p[0], p[1] + 1.0, p[2]]) - s.trilinear([p[0], p[1] - 1.0, p[2]]),
            s.trilinear([p[0], p[1], p[2] + 1.0]) - s.trilinear([p[0], p[1], p[2] - 1.0]),
        ];
        // ∇_patient f = M⁻ᵀ ∇_index f.
        let gi = [g[0] as f64, g[1] as f64, g[2] as f64];
        let gp = mat_vec(&self.m_inv_t, gi);
        let Some(nrm) = normalize(gp) else {
            return (1.0, 0.0); // homogeneous: unshaded
        };
        let ndl = dot(nrm, light).abs() as f32;
        let diffuse = 0.25 + 0.75 * ndl;
        // Headlight: the half vector is the light direction.
        let spec = if phong { 0.3 * ndl.powi(24) } else { 0.0 };
        (diffuse, spec)
    }
}

fn to_u8(x: f32) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

struct Sampler<'d, T> {
    data: &'d [T],
    dims: [usize; 3],
}

impl<T: Voxel> Sampler<'_, T> {
    /// Trilinear sample at index-space `p` (clamped to the grid), in stored units.
    #[inline(always)]
    fn trilinear(&self, p: [f32; 3]) -> f32 {
        let [nx, ny, nz] = self.dims;
        let cl = |x: f32, n: usize| -> (usize, usize, f32) {
            let x = x.clamp(0.0, (n - 1) as f32);
            let i0 = (x as usize).min(n.saturating_sub(2));
            let i1 = (i0 + 1).min(n - 1);
            (i0, i1, x - i0 as f32)
        };
        let (x0, x1, fx) = cl(p[0], nx);
        let (y0, y1, fy) = cl(p[1], ny);
        let (z0, z1, fz) = cl(p[2], nz);
        let d = self.data;
        let idx = |x: usize, y: usize, z: usize| x + nx * (y + ny * z);
        // In bounds: the coordinates are clamped to the grid and `check_volume` saw
        // `data.len() == nx·ny·nz`.
        let at = |i: usize| d[i].f();
        let c00 = lerp(at(idx(x0, y0, z0)), at(idx(x1, y0, z0)), fx);
        let c10 = lerp(at(idx(x0, y1, z0)), at(idx(x1, y1, z0)), fx);
        let c01 = lerp(at(idx(x0, y0, z1)), at(idx(x1, y0, z1)), fx);
        let c11 = lerp(at(idx(x0, y1, z1)), at(idx(x1, y1, z1)), fx);
        lerp(lerp(c00, c10, fy), lerp(c01, c11, fy), fz)
    }
}

#[inline(always)]
fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Renders `vol` with `tf` seen by `camera` (builds the brick grid each call; use
/// [`Renderer`] to render several frames of one volume).
pub fn render(
    vol: &Volume,
    camera: &Camera,
    tf: &TransferFunction,
    width: usize,
    height: usize,
    opts: RenderOptions,
) -> Result<RgbaImage, RenderError> {
    Renderer::new(vol, tf, opts)?.render(camera, width, height)
}

/// A fly-through path: the eye moves along a polyline (patient mm) and looks at the point
/// `look_ahead_mm` further along it (past the end, along the last segment's direction).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraPath {
    points: Vec<V3>,
    /// Cumulative arc length at each point.
    lengths: Vec<f64>,
    pub up: V3,
    pub fov_y_deg: f64,
    pub look_ahead_mm: f64,
}

impl CameraPath {
    pub fn new(
        points: Vec<V3>,
        up: V3,
        fov_y_deg: f64,
        look_ahead_mm: f64,
    ) -> Result<Self, RenderError> {
        if points.iter().any(|p| !finite3(*p)) {
            return Err(RenderError::Camera("non-finite path point"));
        }
        // Drop repeated points so that every segment has a direction.
        let mut pts: Vec<V3> = Vec::with_capacity(points.len());
        for p in points {
            if pts.last().is_none_or(|q| norm(sub(p, *q)) > 1e-9) {
                pts.push(p);
            }
        }
        if pts.len() < 2 {
            return Err(RenderError::PathTooShort);
        }
        if !(look_ahead_mm.is_finite() && look_ahead_mm > 0.0) {
            return Err(RenderError::Camera("look-ahead must be positive"));
        }
        let mut lengths = vec![0.0];
        for w in pts.windows(2) {
            let l = lengths[lengths.len() - 1] + norm(sub(w[1], w[0]));
            lengths.push(l);
        }
        Ok(Self {
            points: pts,
            lengths,
            up,
            fov_y_deg,
            look_ahead_mm,
        })
    }

    /// Total length in mm.
    pub fn length(&self) -> f64 {
        self.lengths[self.lengths.len() - 1]
    }

    /// The point at arc length `s` (extrapolated linearly beyond either end).
    pub fn point_at(&self, s: f64) -> V3 {
        let n = self.points.len();
        let seg = match self.lengths.iter().position(|&l| l > s) {
            Some(0) => 0,
            Some(i) => i - 1,
            None => n - 2,
        }
        .min(n - 2);
        let (a, b) = (self.points[seg], self.points[seg + 1]);
        let (la, lb) = (self.lengths[seg], self.lengths[seg + 1]);
        let t = (s - la) / (lb - la);
        add(a, scale(sub(b, a), t))
    }

    /// The camera at arc length `s` (clamped to the path).
    pub fn camera_at(&self, s: f64) -> Camera {
        let s = s.clamp(0.0, self.length());
        Camera::Perspective {
            eye: self.point_at(s),
            target: self.point_at(s + self.look_ahead_mm),
            up: self.up,
            fov_y_deg: self.fov_y_deg,
        }
    }

    /// `n` cameras evenly spaced from the start to the end of the path.
    pub fn frames(&self, n: usize) -> Vec<Camera> {
        match n {
            0 => Vec::new(),
            1 => vec![self.camera_at(0.0)],
            _ => (0..n)
                .map(|i| self.camera_at(self.length() * i as f64 / (n - 1) as f64))
                .collect(),
        }
    }
}
