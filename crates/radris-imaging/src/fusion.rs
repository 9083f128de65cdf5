//! Fusion: a second series (PET, MR, SPECT) shown over a first (usually CT).
//!
//! Two steps. [`resample_to`] brings the second volume onto the first's grid, through a
//! [`RigidTransform`] from the first's patient space to the second's: the identity when both
//! share a Frame of Reference, else the result of [`crate::register::register_rigid`]. Any
//! [`crate::mpr`] plane then cuts both volumes at the same pixels, and [`fuse`] blends the two
//! images: the base through a VOI window to grey, the overlay through a [`ColorMap`] with an
//! opacity. Overlay pixels below the display range, and NaN (outside the overlay volume), stay
//! transparent, so a PET's background does not tint the CT.
//!
//! ```
//! use radris_imaging::fusion::{ColorMap, fuse, resample_to};
//! use radris_imaging::mpr::{Plane, reslice};
//! use radris_imaging::register::RigidTransform;
//! use radris_imaging::volume::Volume;
//!
//! let id = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
//! let ct = Volume::from_fn([16, 16, 8], [1.0; 3], [0.0; 3], id, |p| p[0] as f32 * 10.0);
//! let pet = Volume::from_fn([8, 8, 4], [2.0; 3], [0.0; 3], id, |p| p[1] as f32);
//! let pet_on_ct = resample_to(&pet, &ct, &RigidTransform::identity());
//! let plane = Plane::axial([7.5, 7.5, 4.0], 16, 16, 1.0);
//! let (base, overlay) = (reslice(&ct, &plane).unwrap(), reslice(&pet_on_ct, &plane).unwrap());
//! let rgba = fuse(&base, &overlay, (75.0, 150.0), (2.0, 14.0), ColorMap::Hot, 0.5).unwrap();
//! assert_eq!(rgba.data.len(), 16 * 16 * 4);
//! ```

use rayon::prelude::*;
use thiserror::Error;

use crate::mpr::Image;
use crate::register::RigidTransform;
use crate::render::RgbaImage;
use crate::volume::{V3, Volume, Voxels, add, mat_vec, sub};

/// Value given to reference voxels whose mapped position falls outside the moving volume.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fill {
    /// The moving volume's smallest value (air, or zero uptake): blends in as background.
    #[default]
    Minimum,
    /// NaN: "no data", transparent in [`fuse`].
    Nan,
    /// A given value in modality units.
    Value(f32),
}

/// `moving` sampled (trilinear, modality units) at the centres of `reference`'s voxels,
/// mapped by `transform` (reference patient space → moving patient space). The result has
/// the reference's geometry and `F32` voxels (slope 1, intercept 0); positions outside the
/// moving volume get its minimum. An inconsistent moving volume gives all-NaN.
pub fn resample_to(moving: &Volume, reference: &Volume, transform: &RigidTransform) -> Volume {
    resample_to_with(moving, reference, transform, Fill::Minimum)
}

/// [`resample_to`] with a choice of [`Fill`].
pub fn resample_to_with(
    moving: &Volume,
    reference: &Volume,
    transform: &RigidTransform,
    fill: Fill,
) -> Volume {
    let dims = reference.dims;
    let n = dims[0].saturating_mul(dims[1]).saturating_mul(dims[2]);
    let mut out = Volume {
        dims,
        spacing: reference.spacing,
        origin: reference.origin,
        axes: reference.axes,
        voxels: Voxels::F32(Vec::new()),
        slope: 1.0,
        intercept: 0.0,
    };
    let p2i = match moving.patient_to_index_matrix() {
        Some(m) if moving.is_consistent() => m,
        _ => {
            out.voxels = Voxels::F32(vec![f32::NAN; n]);
            return out;
        }
    };
    let fill = match fill {
        Fill::Minimum => minimum(moving),
        Fill::Nan => f32::NAN,
        Fill::Value(v) => v,
    };
    // Reference index → moving index is affine: A·idx + b.
    let i2p = reference.index_to_patient_matrix();
    let a = mat3_mul(&p2i, &mat3_mul(&transform.rotation, &i2p));
    let b = mat_vec(&p2i, sub(transform.apply(reference.origin), moving.origin));
    let (nx, ny) = (dims[0], dims[1]);
    let mut data = vec![fill; n];
    if nx > 0 && ny > 0 {
        data.par_chunks_mut(nx).enumerate().for_each(|(row, line)| {
            let (j, k) = ((row % ny) as f64, (row / ny) as f64);
            let start = add(b, add(scale_col(&a, 1, j), scale_col(&a, 2, k)));
            for (i, o) in line.iter_mut().enumerate() {
                let idx = add(start, scale_col(&a, 0, i as f64));
                if let Some(v) = sample_tolerant(moving, idx) {
                    *o = v;
                }
            }
        });
    }
    out.voxels = Voxels::F32(data);
    out
}

fn mat3_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            m[r][c] = a[r][0] * b[0][c] + a[r][1] * b[1][c] + a[r][2] * b[2][c];
        }
    }
    m
}

/// Column `c` of `m` times `s`.
fn scale_col(m: &[[f64; 3]; 3], c: usize, s: f64) -> V3 {
    [m[0][c] * s, m[1][c] * s, m[2][c] * s]
}

/// Smallest finite modality value, NaN when none.
fn minimum(vol: &Volume) -> f32 {
    let lo = (0..vol.voxels.len())
        .into_par_iter()
        .map(|i| (f64::from(vol.voxels.stored(i)) * vol.slope + vol.intercept) as f32)
        .filter(|v| v.is_finite())
        .reduce(|| f32::INFINITY, f32::min);
    if lo.is_finite() { lo } else { f32::NAN }
}

/// [`Volume::sample`] accepting positions up to 1e-6 voxel outside (rounding of the
/// identity mapping at the grid's faces).
fn sample_tolerant(vol: &Volume, idx: V3) -> Option<f32> {
    const EPS: f64 = 1e-6;
    let mut p = idx;
    for (x, &n) in p.iter_mut().zip(&vol.dims) {
        let lim = n.saturating_sub(1) as f64;
        if !(*x >= -EPS && *x <= lim + EPS) {
            return None;
        }
        *x = x.clamp(0.0, lim);
    }
    vol.sample(p)
}

// ---------------------------------------------------------------------------------------------
// Colour maps and blending
// ---------------------------------------------------------------------------------------------

/// Colour scales for the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorMap {
    /// Black to white.
    Grayscale,
    /// "Hot iron": black, red, yellow, white.
    #[default]
    Hot,
    /// Jet-like: dark blue, blue, cyan, yellow, red, dark red.
    Rainbow,
    /// The usual PET scale: black, dark blue, purple, red, orange, white.
    Pet,
}

impl ColorMap {
    /// The colour of `t` in `[0, 1]` (clamped); NaN gives black.
    pub fn map(&self, t: f32) -> [u8; 3] {
        if t.is_nan() {
            return [0, 0, 0];
        }
        let t = t.clamp(0.0, 1.0);
        let to8 = |x: f32| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
        match self {
            ColorMap::Grayscale => [to8(t); 3],
            ColorMap::Hot => [to8(3.0 * t), to8(3.0 * t - 1.0), to8(3.0 * t - 2.0)],
            ColorMap::Rainbow => [
                to8(1.5 - (4.0 * t - 3.0).abs()),
                to8(1.5 - (4.0 * t - 2.0).abs()),
                to8(1.5 - (4.0 * t - 1.0).abs()),
            ],
            ColorMap::Pet => {
                const STOPS: [(f32, [f32; 3]); 6] = [
                    (0.0, [0.0, 0.0, 0.0]),
                    (0.2, [0.0, 0.0, 160.0]),
                    (0.4, [160.0, 0.0, 160.0]),
                    (0.6, [255.0, 0.0, 0.0]),
                    (0.8, [255.0, 160.0, 0.0]),
                    (1.0, [255.0, 255.0, 255.0]),
                ];
                let i = STOPS
                    .windows(2)
                    .position(|w| t <= w[1].0)
                    .unwrap_or(STOPS.len() - 2);
                let ((t0, c0), (t1, c1)) = (STOPS[i], STOPS[i + 1]);
                let f = (t - t0) / (t1 - t0);
                std::array::from_fn(|k| (c0[k] + (c1[k] - c0[k]) * f).round() as u8)
            }
        }
    }
}

/// Why two images cannot be fused.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum FusionError {
    #[error("base is {base:?} pixels but overlay is {overlay:?}")]
    SizeMismatch {
        base: (usize, usize),
        overlay: (usize, usize),
    },
    #[error("{which} image holds {actual} values for {width}×{height} pixels")]
    BadImage {
        which: &'static str,
        width: usize,
        height: usize,
        actual: usize,
    },
    #[error("opacity {0} is not within [0, 1]")]
    Opacity(f32),
    #[error("overlay range ({lo}, {hi}) is not finite and increasing")]
    OverlayRange { lo: f64, hi: f64 },
    #[error("base window (centre {center}, width {width}) is not finite with a positive width")]
    BaseWindow { center: f64, width: f64 },
}

/// Blends `overlay` over `base` (same size, e.g. two [`crate::mpr::reslice`]s of one plane).
///
/// The base goes through the DICOM linear VOI window `base_window = (centre, width)` to grey
/// (NaN → black), as [`Image::to_gray8`]. Overlay values map linearly from
/// `overlay_range = (lo, hi)` to `[0, 1]` of `cmap` (above `hi` clamps); values below `lo`
/// and NaN leave the grey pixel as it is. Elsewhere the pixel is
/// `(1 − opacity)·grey + opacity·colour`: opacity 0 shows the base alone, 1 the colour map
/// alone. The output is opaque (alpha 255).
pub fn fuse(
    base: &Image,
    overlay: &Image,
    base_window: (f64, f64),
    overlay_range: (f64, f64),
    cmap: ColorMap,
    opacity: f32,
) -> Result<RgbaImage, FusionError> {
    for (which, img) in [("base", base), ("overlay", overlay)] {
        if img.data.len() != img.width.saturating_mul(img.height) {
            return Err(FusionError::BadImage {
                which,
                width: img.width,
                height: img.height,
                actual: img.data.len(),
            });
        }
    }
    if (base.width, base.height) != (overlay.width, overlay.height) {
        return Err(FusionError::SizeMismatch {
            base: (base.width, base.height),
            overlay: (overlay.width, overlay.height),
        });
    }
    if !(0.0..=1.0).contains(&opacity) {
        return Err(FusionError::Opacity(opacity));
    }
    let (lo, hi) = overlay_range;
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return Err(FusionError::OverlayRange { lo, hi });
    }
    let (center, width) = base_window;
    if !(center.is_finite() && width.is_finite() && width > 0.0) {
        return Err(FusionError::BaseWindow { center, width });
    }
    let grey = base.to_gray8(center, width);
    let mut data = vec![0u8; grey.len() * 4];
    data.par_chunks_mut(4)
        .zip(grey.par_iter().zip(overlay.data.par_iter()))
        .for_each(|(px, (&g, &v))| {
            let v = f64::from(v);
            let rgb = if v.is_nan() || v < lo {
                [g; 3]
            } else {
                let c = cmap.map(((v - lo) / (hi - lo)) as f32);
                let blend =
                    |c: u8| (f32::from(g) * (1.0 - opacity) + f32::from(c) * opacity).round() as u8;
                [blend(c[0]), blend(c[1]), blend(c[2])]
            };
            px.copy_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
        });
    Ok(RgbaImage {
        width: base.width,
        height: base.height,
        data,
    })
}
