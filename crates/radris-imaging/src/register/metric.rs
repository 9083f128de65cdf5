//! Mattes mutual information with its analytic gradient in the six rigid parameters.

use rayon::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------------
// The metric
// ---------------------------------------------------------------------------------------------

/// Padding bins each side of the moving axis (the cubic window's half-support).
pub(super) const PAD: usize = 2;

pub(super) struct FixedSample {
    /// Patient position (mm) minus the rotation centre.
    pub(super) rel: V3,
    pub(super) bin: usize,
}

pub(super) struct Metric<'a> {
    pub(super) moving: &'a Grid,
    pub(super) samples: Vec<FixedSample>,
    pub(super) centre: V3,
    pub(super) bins: usize,
    /// Moving intensity → continuous bin: `(m − m_min)·inv_width + PAD`.
    pub(super) moving_min: f64,
    pub(super) inv_width: f64,
    /// Scale of the rotation parameters: radians → mm of arc at this radius.
    pub(super) radius: f64,
    /// Which parameters move (3 = translations only).
    pub(super) first_param: usize,
    /// Pyramid level, 0 finest.
    pub(super) level: usize,
    /// A caller's rotation kept while only translations move.
    pub(super) fixed_rotation: Option<M3>,
}

/// Value and gradient (with respect to the raw parameters).
#[derive(Clone, Copy)]
pub(super) struct Eval {
    pub(super) mi: f64,
    pub(super) grad: [f64; 6],
}

/// Per-sample intermediate: fixed bin, continuous moving bin, ∂moving/∂params.
pub(super) struct Hit {
    pub(super) bin: usize,
    pub(super) xi: f64,
    pub(super) dm: [f64; 6],
}

impl<'a> Metric<'a> {
    pub(super) fn new(
        fixed: &Grid,
        moving: &'a Grid,
        centre: V3,
        opts: &RegisterOptions,
        level: usize,
        fixed_rotation: Option<M3>,
    ) -> Result<Metric<'a>, RegisterError> {
        let (f_lo, f_hi) = fixed.histogram_range(Role::Fixed)?;
        let (m_lo, m_hi) = moving.histogram_range(Role::Moving)?;
        let bins = opts.bins;
        let voxels = fixed.data.len();
        let n = opts.samples.min(voxels);
        let mut rng = SplitMix(opts.seed ^ (level as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let i2p = fixed.i2p();
        let lim = fixed.dims.map(|d| (d - 1) as f64);
        let mut samples = Vec::with_capacity(n);
        let mut r2 = 0.0;
        for _ in 0..n {
            let idx = [
                rng.unit() * lim[0],
                rng.unit() * lim[1],
                rng.unit() * lim[2],
            ];
            let Some(f) = fixed.sample(idx) else {
                continue;
            };
            let p = add(fixed.origin, mat_vec(&i2p, idx));
            let rel = sub(p, centre);
            r2 += dot(rel, rel);
            let t = ((f - f_lo) / (f_hi - f_lo)).clamp(0.0, 1.0);
            let bin = ((t * bins as f64) as usize).min(bins - 1);
            samples.push(FixedSample { rel, bin });
        }
        if samples.is_empty() {
            return Err(RegisterError::ConstantImage {
                role: Role::Fixed,
                value: f64::NAN,
            });
        }
        let radius = (r2 / samples.len() as f64).sqrt().max(1.0);
        let width = (m_hi - m_lo) / (bins - 2 * PAD - 1) as f64;
        Ok(Metric {
            moving,
            samples,
            centre,
            bins,
            moving_min: m_lo,
            inv_width: 1.0 / width,
            radius,
            first_param: match opts.degrees_of_freedom {
                DegreesOfFreedom::Rigid => 0,
                DegreesOfFreedom::TranslationOnly => 3,
            },
            fixed_rotation,
            level,
        })
    }

    pub(super) fn required(&self) -> usize {
        (self.samples.len() / 20).max(32).min(self.samples.len())
    }

    /// MI and its gradient at `params`, or the number of valid samples when too few fall
    /// inside the moving volume.
    pub(super) fn evaluate(&self, params: &[f64; 6]) -> Result<Eval, usize> {
        let angles = [params[0], params[1], params[2]];
        let (rot, drot) = match self.fixed_rotation {
            Some(r) => (r, [[[0.0; 3]; 3]; 3]),
            None => (euler_matrix(angles), euler_derivatives(angles)),
        };
        let shift = add(self.centre, [params[3], params[4], params[5]]);
        let m = self.moving;
        let p2i_t = transpose(&m.p2i);
        let b = self.bins;
        let hits: Vec<Hit> = self
            .samples
            .par_iter()
            .filter_map(|s| {
                let y = add(mat_vec(&rot, s.rel), shift);
                let idx = mat_vec(&m.p2i, sub(y, m.origin));
                let (v, gi) = m.sample_grad(idx)?;
                let xi = (v - self.moving_min) * self.inv_width + PAD as f64;
                let (lo, hi) = (PAD as f64, (b - PAD - 1) as f64);
                let mut dm = [0.0; 6];
                // Winsorised values are constant under small moves: no gradient.
                if xi > lo && xi < hi {
                    let gp = mat_vec(&p2i_t, gi);
                    for k in 0..3 {
                        dm[k] = dot(gp, mat_vec(&drot[k], s.rel));
                        dm[k + 3] = gp[k];
                    }
                }
                Some(Hit {
                    bin: s.bin,
                    xi: xi.clamp(lo, hi),
                    dm,
                })
            })
            .collect();
        if hits.len() < self.required() {
            return Err(hits.len());
        }
        // Joint histogram (rows: fixed bins, columns: moving bins).
        let joint = hits
            .par_chunks(1024)
            .map(|chunk| {
                let mut h = vec![0.0f64; b * b];
                for hit in chunk {
                    let k0 = hit.xi.floor() as usize - 1;
                    for k in k0..k0 + 4 {
                        h[hit.bin * b + k] += bspline3(k as f64 - hit.xi);
                    }
                }
                h
            })
            .reduce(
                || vec![0.0; b * b],
                |mut a, h| {
                    a.iter_mut().zip(&h).for_each(|(x, y)| *x += y);
                    a
                },
            );
        let alpha = 1.0 / hits.len() as f64;
        let mut pf = vec![0.0f64; b];
        let mut pm = vec![0.0f64; b];
        for i in 0..b {
            for k in 0..b {
                let p = joint[i * b + k] * alpha;
                pf[i] += p;
                pm[k] += p;
            }
        }
        let mut mi = 0.0;
        // log(p(ι,κ)/p_m(κ)) where defined.
        let mut log_ratio = vec![0.0f64; b * b];
        for i in 0..b {
            for k in 0..b {
                let p = joint[i * b + k] * alpha;
                if p > 1e-16 && pm[k] > 1e-16 && pf[i] > 1e-16 {
                    mi += p * (p / (pf[i] * pm[k])).ln();
                    log_ratio[i * b + k] = (p / pm[k]).ln();
                }
            }
        }
        // ∂MI/∂μ = Σ ∂p(ι,κ)/∂μ · log(p(ι,κ)/p_m(κ)), with
        // ∂p/∂μ = α Σ_x β0(ι − ξf) · (−β3'(κ − ξm)) · ∂ξm/∂μ.
        let first = self.first_param;
        let grad = hits
            .par_chunks(1024)
            .map(|chunk| {
                let mut g = [0.0f64; 6];
                for hit in chunk {
                    let k0 = hit.xi.floor() as usize - 1;
                    let mut w = 0.0;
                    for k in k0..k0 + 4 {
                        w -= dbspline3(k as f64 - hit.xi) * log_ratio[hit.bin * b + k];
                    }
                    for (gk, d) in g.iter_mut().zip(&hit.dm).skip(first) {
                        *gk += w * d;
                    }
                }
                g
            })
            .reduce(
                || [0.0; 6],
                |mut a, g| {
                    a.iter_mut().zip(&g).for_each(|(x, y)| *x += y);
                    a
                },
            );
        let grad = grad.map(|g| g * alpha * self.inv_width);
        Ok(Eval { mi, grad })
    }
}

/// Cubic B-spline, support (−2, 2).
pub(super) fn bspline3(u: f64) -> f64 {
    let a = u.abs();
    if a < 1.0 {
        2.0 / 3.0 - a * a + 0.5 * a * a * a
    } else if a < 2.0 {
        let t = 2.0 - a;
        t * t * t / 6.0
    } else {
        0.0
    }
}

pub(super) fn dbspline3(u: f64) -> f64 {
    let a = u.abs();
    if a < 1.0 {
        -2.0 * u + 1.5 * u * a
    } else if a < 2.0 {
        let t = 2.0 - a;
        -0.5 * t * t * u.signum()
    } else {
        0.0
    }
}

/// Deterministic generator for the sample positions (SplitMix64).
pub(super) struct SplitMix(u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
