//! Rigid registration by mutual information, for series that share no Frame of Reference
//! (or whose frames of reference disagree, e.g. a PET/CT pair acquired on separate scanners).
//!
//! The metric is Mattes-style mutual information: the joint histogram of fixed and moving
//! intensities is built from a deterministic random subsample of fixed-volume positions,
//! the fixed intensity binned with a zero-order window and the moving intensity (trilinear,
//! modality units) with a cubic B-spline Parzen window. The cubic window makes the metric
//! differentiable in the six rigid parameters, so each optimiser iteration costs one pass
//! over the samples (value and analytic gradient together) instead of twelve for finite
//! differences. MI relates intensities statistically, not by value, which is what lets a CT
//! register to an MR or PET whose intensities are inverted or remapped arbitrarily.
//!
//! The search runs coarse to fine over an averaging pyramid. Translation starts from the
//! difference of the two volumes' centres of mass (weighted by the distance of each voxel's
//! value from the background, estimated as the median of the border voxels, so the start
//! does not depend on whether the object is brighter or darker than its surroundings);
//! rotation is about the fixed volume's centre of mass. The optimiser is sign-based gradient
//! ascent with a step per parameter (iRprop−) in scaled parameters (rotations in millimetres
//! of arc at the object's radius): a step grows while its derivative keeps its sign and
//! halves when it flips, a move that lowers MI is undone and every step halved, and a level
//! ends when all steps fall below its minimum. Histogram ranges are winsorised at the 0.5 %
//! and 99.5 % quantiles so a few extreme voxels (metal, a PET hot spot) do not squeeze the
//! rest of the image into one bin.
//!
//! Transforms map fixed patient space to moving patient space (DICOM LPS, mm):
//! `moving(T(x)) ≈ fixed(x)`; [`crate::fusion::resample_to`] takes them as they come.

mod grid;
mod metric;
mod rotation;

use thiserror::Error;

use grid::*;
use metric::*;
use rotation::*;

use crate::volume::{V3, Volume, add, dot, invert3, mat_vec, scale, sub};

type M3 = [[f64; 3]; 3];

/// A rigid transform mapping a point of the FIXED volume's patient space to the MOVING
/// volume's patient space: `apply(p) = rotation·p + translation` (rows of `rotation`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RigidTransform {
    /// A proper rotation (orthonormal, determinant +1); rows.
    pub rotation: [[f64; 3]; 3],
    /// Millimetres.
    pub translation: [f64; 3],
}

impl Default for RigidTransform {
    fn default() -> Self {
        RigidTransform::identity()
    }
}

impl RigidTransform {
    /// The identity: fixed and moving share a frame of reference.
    pub fn identity() -> RigidTransform {
        RigidTransform {
            rotation: IDENTITY,
            translation: [0.0; 3],
        }
    }

    /// A pure translation by `t` mm.
    pub fn translation(t: [f64; 3]) -> RigidTransform {
        RigidTransform {
            rotation: IDENTITY,
            translation: t,
        }
    }

    /// Rotation by Euler angles (radians) about `centre`, then translation:
    /// `apply(p) = R·(p − centre) + centre + translation` with `R = Rz(γ)·Ry(β)·Rx(α)` for
    /// `angles_rad = [α, β, γ]` (right-handed rotations about the patient x, y and z axes,
    /// applied x first).
    pub fn from_euler(angles_rad: [f64; 3], centre: [f64; 3], translation: [f64; 3]) -> Self {
        let r = euler_matrix(angles_rad);
        RigidTransform {
            rotation: r,
            translation: add(sub(centre, mat_vec(&r, centre)), translation),
        }
    }

    /// The Euler angles `[α, β, γ]` (radians) of `rotation`, as [`RigidTransform::from_euler`]
    /// takes them; `β` in `[−π/2, π/2]`.
    pub fn euler_angles(&self) -> [f64; 3] {
        matrix_euler(&self.rotation)
    }

    /// Maps a fixed-space point (mm) to moving space.
    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        add(mat_vec(&self.rotation, p), self.translation)
    }

    /// The transform from moving space back to fixed space. Uses the transpose, so
    /// `rotation` must be orthonormal (as every transform made here is).
    pub fn inverse(&self) -> RigidTransform {
        let rt = transpose(&self.rotation);
        RigidTransform {
            rotation: rt,
            translation: scale(mat_vec(&rt, self.translation), -1.0),
        }
    }

    /// `p ↦ self.apply(other.apply(p))`: `other` first, then `self`.
    pub fn compose(&self, other: &RigidTransform) -> RigidTransform {
        RigidTransform {
            rotation: mat_mul(&self.rotation, &other.rotation),
            translation: self.apply(other.translation),
        }
    }

    /// Angle of the rotation part, degrees.
    pub fn rotation_angle_deg(&self) -> f64 {
        let r = &self.rotation;
        let c = ((r[0][0] + r[1][1] + r[2][2] - 1.0) / 2.0).clamp(-1.0, 1.0);
        c.acos().to_degrees()
    }
}

/// Where the search starts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum InitialTransform {
    /// No rotation; translation by the difference of the centres of mass (moving − fixed).
    #[default]
    CentresOfMass,
    /// The identity, e.g. when the frames of reference roughly agree already.
    Identity,
    /// A caller's estimate (e.g. from landmarks or a previous registration).
    Given(RigidTransform),
}

/// Which parameters the optimiser moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DegreesOfFreedom {
    /// Three rotations and three translations.
    #[default]
    Rigid,
    /// Translations only; the rotation of the initial transform is kept.
    TranslationOnly,
}

/// Options of [`register_rigid`].
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterOptions {
    /// Histogram bins per intensity axis (at least 8; the moving axis includes two padding
    /// bins at each end for the B-spline window).
    pub bins: usize,
    /// Pyramid levels; each coarser level halves the grid (2×2×2 averaging) along axes of at
    /// least 16 voxels.
    pub levels: usize,
    /// Metric evaluations per level at most.
    pub max_iterations: usize,
    /// Fixed-volume sample positions per level (fewer when a level has fewer voxels).
    pub samples: usize,
    /// Seed of the sample positions; the same seed gives the same result.
    pub seed: u64,
    pub initial: InitialTransform,
    pub degrees_of_freedom: DegreesOfFreedom,
    /// The finest level stops when its step falls below this (mm of displacement).
    pub min_step_mm: f64,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            bins: 32,
            levels: 3,
            max_iterations: 100,
            samples: 8000,
            seed: 0x5eed_5eed,
            initial: InitialTransform::CentresOfMass,
            degrees_of_freedom: DegreesOfFreedom::Rigid,
            min_step_mm: 0.02,
        }
    }
}

/// What [`register_rigid`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Fixed patient space → moving patient space.
    pub transform: RigidTransform,
    /// Mutual information (nats) at `transform`, on the finest level's samples.
    pub mutual_information: f64,
    /// Metric evaluations over all levels.
    pub iterations: usize,
}

/// Which input an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Fixed,
    Moving,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Fixed => "fixed",
            Role::Moving => "moving",
        })
    }
}

/// Why a registration could not run.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum RegisterError {
    #[error("{role} volume is inconsistent (voxel count vs dims, or singular axes)")]
    BadVolume { role: Role },
    #[error("{role} volume has no intensity variation (all finite voxels equal {value})")]
    ConstantImage { role: Role, value: f64 },
    #[error(
        "only {valid} of {samples} samples fall inside the moving volume at the \
         start of pyramid level {level} (need {required}): the volumes do not overlap"
    )]
    InsufficientOverlap {
        valid: usize,
        samples: usize,
        required: usize,
        /// 0 is the finest (full-resolution) level.
        level: usize,
    },
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
}

/// Registers `moving` to `fixed` with a rigid transform maximising mutual information.
/// See the module documentation for the method.
pub fn register_rigid(
    fixed: &Volume,
    moving: &Volume,
    opts: &RegisterOptions,
) -> Result<Registration, RegisterError> {
    if opts.bins < 8 || opts.bins > 1024 {
        return Err(RegisterError::InvalidOption("bins must be within 8..=1024"));
    }
    if opts.levels == 0 || opts.levels > 8 {
        return Err(RegisterError::InvalidOption("levels must be within 1..=8"));
    }
    if opts.samples < 64 {
        return Err(RegisterError::InvalidOption("samples must be at least 64"));
    }
    if opts.max_iterations == 0 {
        return Err(RegisterError::InvalidOption(
            "max_iterations must be positive",
        ));
    }
    if !(opts.min_step_mm.is_finite() && opts.min_step_mm > 0.0) {
        return Err(RegisterError::InvalidOption("min_step_mm must be positive"));
    }
    let fixed0 = Grid::from_volume(fixed, Role::Fixed)?;
    let moving0 = Grid::from_volume(moving, Role::Moving)?;
    fixed0.range(Role::Fixed)?;
    moving0.range(Role::Moving)?;

    let fixed_com = fixed0.centre_of_mass();
    let centre = fixed_com;
    let initial = match opts.initial {
        InitialTransform::CentresOfMass => {
            RigidTransform::translation(sub(moving0.centre_of_mass(), fixed_com))
        }
        InitialTransform::Identity => RigidTransform::identity(),
        InitialTransform::Given(t) => {
            if !t
                .rotation
                .iter()
                .flatten()
                .chain(&t.translation)
                .all(|v| v.is_finite())
            {
                return Err(RegisterError::InvalidOption(
                    "initial transform is not finite",
                ));
            }
            t
        }
    };
    // Parameters: [α, β, γ, tx, ty, tz] with T(x) = R(α, β, γ)·(x − c) + c + t.
    let angles = matrix_euler(&initial.rotation);
    let t0 = sub(initial.apply(centre), centre);
    let mut params = [angles[0], angles[1], angles[2], t0[0], t0[1], t0[2]];
    // Keep the initial rotation exactly when only translations move.
    let fixed_rotation =
        (opts.degrees_of_freedom == DegreesOfFreedom::TranslationOnly).then_some(initial.rotation);

    // Pyramid, finest first.
    let mut fixed_levels = vec![fixed0];
    let mut moving_levels = vec![moving0];
    for _ in 1..opts.levels {
        let (Some(f), Some(m)) = (fixed_levels.last(), moving_levels.last()) else {
            break;
        };
        let (f, m) = (f.downsample(), m.downsample());
        fixed_levels.push(f);
        moving_levels.push(m);
    }

    let mut iterations = 0;
    let mut final_mi = f64::NAN;
    let levels = fixed_levels.len();
    for level in (0..levels).rev() {
        let fixed = &fixed_levels[level];
        let moving = &moving_levels[level];
        let metric = Metric::new(fixed, moving, centre, opts, level, fixed_rotation)?;
        let voxel = fixed.mean_spacing().max(moving.mean_spacing());
        let start_step = if level + 1 == levels {
            voxel
        } else {
            voxel / 2.0
        };
        let min_step = if level == 0 {
            opts.min_step_mm
        } else {
            (voxel / 10.0).max(opts.min_step_mm)
        };
        let out = optimise(&metric, params, start_step, min_step, opts)?;
        params = out.params;
        iterations += out.evaluations;
        final_mi = out.mi;
    }

    let rotation = match fixed_rotation {
        Some(r) => r,
        None => euler_matrix([params[0], params[1], params[2]]),
    };
    let t = [params[3], params[4], params[5]];
    Ok(Registration {
        transform: RigidTransform {
            rotation,
            translation: sub(add(centre, t), mat_vec(&rotation, centre)),
        },
        mutual_information: final_mi,
        iterations,
    })
}

// ---------------------------------------------------------------------------------------------
// The optimiser
// ---------------------------------------------------------------------------------------------

struct Optimum {
    params: [f64; 6],
    mi: f64,
    evaluations: usize,
}

/// Sign-based gradient ascent with a step per parameter (iRprop−), in scaled parameters
/// (rotations × radius, so every step is millimetres of displacement).
///
/// Each parameter moves by its own step in the direction of its partial derivative; the
/// step grows by 1.2 while the derivative keeps its sign and halves when it flips (and that
/// parameter rests for one iteration). A move that lowers MI, or leaves too few samples in
/// the moving volume, is undone and every step halved, so MI never decreases. Rotation and
/// translation are strongly coupled (a rotation about the centre of mass moves the edges
/// like a translation); per-parameter steps follow that valley where one normalised
/// gradient step, halved at each turn, stops short of the optimum.
fn optimise(
    metric: &Metric<'_>,
    start: [f64; 6],
    start_step: f64,
    min_step: f64,
    opts: &RegisterOptions,
) -> Result<Optimum, RegisterError> {
    let r = metric.radius;
    let scales = [r, r, r, 1.0, 1.0, 1.0];
    let first = metric.first_param;
    let mut params = start;
    let mut current =
        metric
            .evaluate(&params)
            .map_err(|valid| RegisterError::InsufficientOverlap {
                valid,
                samples: metric.samples.len(),
                required: metric.required(),
                level: metric.level,
            })?;
    let mut evaluations = 1;
    let mut step = [start_step; 6];
    let mut previous = [0.0f64; 6];
    while evaluations < opts.max_iterations && step[first..].iter().any(|&s| s >= min_step) {
        let mut direction = [0.0f64; 6];
        for k in first..6 {
            let sign = match current.grad[k] {
                g if g > 0.0 => 1.0,
                g if g < 0.0 => -1.0,
                _ => 0.0,
            };
            if sign * previous[k] > 0.0 {
                step[k] = (step[k] * 1.2).min(4.0 * start_step);
                direction[k] = sign;
            } else if sign * previous[k] < 0.0 {
                step[k] *= 0.5;
            } else {
                direction[k] = sign;
            }
        }
        if direction.iter().all(|&d| d == 0.0) && previous.iter().all(|&d| d == 0.0) {
            break; // a flat metric: nowhere to go
        }
        let trial: [f64; 6] =
            std::array::from_fn(|k| params[k] + direction[k] * step[k] / scales[k]);
        evaluations += 1;
        match metric.evaluate(&trial) {
            Ok(next) if next.mi >= current.mi => {
                params = trial;
                current = next;
                previous = direction;
            }
            // Worse, or off the moving volume: stay, shorten every step.
            _ => {
                step.iter_mut().for_each(|s| *s *= 0.5);
                previous = [0.0; 6];
            }
        }
    }
    Ok(Optimum {
        params,
        mi: current.mi,
        evaluations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euler_round_trip_and_derivatives() {
        let a = [0.1, -0.2, 0.3];
        let r = euler_matrix(a);
        let back = matrix_euler(&r);
        for k in 0..3 {
            assert!((back[k] - a[k]).abs() < 1e-12);
        }
        let d = euler_derivatives(a);
        for k in 0..3 {
            let mut ap = a;
            ap[k] += 1e-6;
            let rp = euler_matrix(ap);
            for i in 0..3 {
                for j in 0..3 {
                    let fd = (rp[i][j] - r[i][j]) / 1e-6;
                    assert!((fd - d[k][i][j]).abs() < 1e-5, "{k} {i} {j}");
                }
            }
        }
    }

    fn blob(p: V3) -> f32 {
        let d2 = |c: V3, r: f64| {
            ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2)) / (r * r)
        };
        (100.0 * (-d2([12.0, 14.0, 11.0], 6.0)).exp() + 60.0 * (-d2([18.0, 10.0, 13.0], 4.0)).exp())
            as f32
    }

    #[test]
    fn analytic_gradient_matches_finite_differences() {
        let id = IDENTITY;
        let fixed = Volume::from_fn([24, 24, 20], [1.2; 3], [0.0; 3], id, blob);
        let moving = Volume::from_fn([22, 22, 20], [1.3, 1.3, 1.4], [0.5; 3], id, |p| {
            200.0 - 1.5 * blob(sub(p, [1.0, -0.5, 0.7]))
        });
        let (f, m) = (
            Grid::from_volume(&fixed, Role::Fixed).unwrap(),
            Grid::from_volume(&moving, Role::Moving).unwrap(),
        );
        let opts = RegisterOptions {
            samples: 3000,
            ..Default::default()
        };
        let metric = Metric::new(&f, &m, f.centre_of_mass(), &opts, 0, None).unwrap();
        let p = [0.02, -0.03, 0.01, 0.6, -0.2, 0.4];
        let e = metric.evaluate(&p).unwrap();
        assert!(e.mi > 0.1, "{}", e.mi);
        for k in 0..6 {
            let h = if k < 3 { 1e-4 } else { 1e-3 };
            let (mut a, mut b) = (p, p);
            a[k] += h;
            b[k] -= h;
            let fd =
                (metric.evaluate(&a).unwrap().mi - metric.evaluate(&b).unwrap().mi) / (2.0 * h);
            let tol = 0.05 * fd.abs().max(e.grad[k].abs()) + 1e-3;
            assert!(
                (fd - e.grad[k]).abs() < tol,
                "param {k}: fd {fd} analytic {}",
                e.grad[k]
            );
        }
    }

    #[test]
    fn bspline_partition_of_unity() {
        for x in [2.0f64, 2.3, 7.5, 10.99] {
            let k0 = x.floor() as usize - 1;
            let s: f64 = (k0..k0 + 4).map(|k| bspline3(k as f64 - x)).sum();
            let ds: f64 = (k0..k0 + 4).map(|k| dbspline3(k as f64 - x)).sum();
            assert!((s - 1.0).abs() < 1e-12 && ds.abs() < 1e-12);
        }
        let h = 1e-6;
        for u in [-1.7, -0.4, 0.3, 1.2] {
            let fd = (bspline3(u + h) - bspline3(u - h)) / (2.0 * h);
            assert!((fd - dbspline3(u)).abs() < 1e-6);
        }
    }
}
