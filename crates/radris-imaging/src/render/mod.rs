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

mod bricks;
mod cast;

pub use bricks::{BRICK, BrickGrid};
pub use cast::Renderer;

use crate::volume::{Volume, Voxels};
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
