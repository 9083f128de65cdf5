//! The ray caster: a volume prepared with one transfer function, rays cast per pixel.

use rayon::prelude::*;

use super::bricks::*;
use super::*;

pub(super) const LUT_SIZE: usize = 4096;
/// Bricks per macro-brick edge.
pub(super) const MACRO: usize = 4;
pub(super) const MACRO_VOXELS: usize = MACRO * BRICK;

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

pub(super) fn to_u8(x: f32) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

pub(super) struct Sampler<'d, T> {
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
pub(super) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}
