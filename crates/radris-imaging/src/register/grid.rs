//! Grids of modality values (f32) with their geometry, and the averaging pyramid.

use rayon::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------------
// Grids (modality values as f32, geometry) and the pyramid
// ---------------------------------------------------------------------------------------------

pub(super) struct Grid {
    pub(super) dims: [usize; 3],
    pub(super) data: Vec<f32>,
    pub(super) spacing: V3,
    pub(super) axes: M3,
    pub(super) origin: V3,
    /// Patient → continuous index.
    pub(super) p2i: M3,
}

impl Grid {
    pub(super) fn from_volume(vol: &Volume, role: Role) -> Result<Grid, RegisterError> {
        if !vol.is_consistent() {
            return Err(RegisterError::BadVolume { role });
        }
        let p2i = vol
            .patient_to_index_matrix()
            .ok_or(RegisterError::BadVolume { role })?;
        let (slope, intercept) = (vol.slope, vol.intercept);
        let n = vol.voxel_count();
        let data = (0..n)
            .into_par_iter()
            .map(|i| (f64::from(vol.voxels.stored(i)) * slope + intercept) as f32)
            .collect();
        Ok(Grid {
            dims: vol.dims,
            data,
            spacing: vol.spacing,
            axes: vol.axes,
            origin: vol.origin,
            p2i,
        })
    }

    pub(super) fn i2p(&self) -> M3 {
        let mut m = [[0.0; 3]; 3];
        for a in 0..3 {
            for (r, row) in m.iter_mut().enumerate() {
                row[a] = self.axes[a][r] * self.spacing[a];
            }
        }
        m
    }

    pub(super) fn index_to_patient(&self, idx: V3) -> V3 {
        add(self.origin, mat_vec(&self.i2p(), idx))
    }

    pub(super) fn mean_spacing(&self) -> f64 {
        (self.spacing[0] + self.spacing[1] + self.spacing[2]) / 3.0
    }

    /// Finite min and max; refuses a constant (or all non-finite) volume.
    pub(super) fn range(&self, role: Role) -> Result<(f64, f64), RegisterError> {
        let (lo, hi) = self
            .data
            .par_iter()
            .filter(|v| v.is_finite())
            .fold(
                || (f32::INFINITY, f32::NEG_INFINITY),
                |(lo, hi), &v| (lo.min(v), hi.max(v)),
            )
            .reduce(
                || (f32::INFINITY, f32::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            );
        if !(lo.is_finite() && hi.is_finite()) || hi - lo <= 0.0 {
            return Err(RegisterError::ConstantImage {
                role,
                value: if lo.is_finite() {
                    f64::from(lo)
                } else {
                    f64::NAN
                },
            });
        }
        Ok((f64::from(lo), f64::from(hi)))
    }

    /// The histogram range: the 0.5 % and 99.5 % quantiles of the finite values
    /// (winsorising, so a few very bright voxels, e.g. a PET hot spot or metal, do not
    /// squeeze the rest of the image into one bin), or the full range when those coincide.
    pub(super) fn histogram_range(&self, role: Role) -> Result<(f64, f64), RegisterError> {
        let (lo, hi) = self.range(role)?;
        let mut v: Vec<f32> = self
            .data
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let n = v.len();
        let q = |v: &mut Vec<f32>, f: f64| {
            let i = ((n - 1) as f64 * f).round() as usize;
            f64::from(*v.select_nth_unstable_by(i, f32::total_cmp).1)
        };
        let (qlo, qhi) = (q(&mut v, 0.005), q(&mut v, 0.995));
        Ok(if qhi > qlo { (qlo, qhi) } else { (lo, hi) })
    }

    /// Median of the border voxels: the background the object stands out from.
    pub(super) fn background(&self) -> f64 {
        let [nx, ny, nz] = self.dims;
        let border_of = |idx: usize| {
            let (i, j, k) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
            i == 0 || j == 0 || k == 0 || i + 1 == nx || j + 1 == ny || k + 1 == nz
        };
        let mut border: Vec<f32> = self
            .data
            .iter()
            .enumerate()
            .filter(|&(idx, v)| v.is_finite() && border_of(idx))
            .map(|(_, &v)| v)
            .collect();
        if border.is_empty() {
            return 0.0;
        }
        let mid = border.len() / 2;
        let (_, m, _) = border.select_nth_unstable_by(mid, f32::total_cmp);
        f64::from(*m)
    }

    /// Centre of mass (patient mm) weighted by `|value − background|`; the grid centre when
    /// nothing differs from the background.
    pub(super) fn centre_of_mass(&self) -> V3 {
        let bg = self.background();
        let [nx, ny, _] = self.dims;
        let (w, s) = self
            .data
            .par_iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .fold(
                || (0.0f64, [0.0f64; 3]),
                |(w, s), (idx, &v)| {
                    let wt = (f64::from(v) - bg).abs();
                    let (i, j, k) = (idx % nx, (idx / nx) % ny, idx / (nx * ny));
                    (w + wt, add(s, scale([i as f64, j as f64, k as f64], wt)))
                },
            )
            .reduce(|| (0.0, [0.0; 3]), |a, b| (a.0 + b.0, add(a.1, b.1)));
        let idx = if w > 0.0 && w.is_finite() {
            scale(s, 1.0 / w)
        } else {
            self.dims.map(|n| (n as f64 - 1.0) / 2.0)
        };
        self.index_to_patient(idx)
    }

    /// 2×2×2 block average along axes of at least 16 voxels (odd remainders dropped).
    pub(super) fn downsample(&self) -> Grid {
        let f: [usize; 3] = self.dims.map(|n| if n >= 16 { 2 } else { 1 });
        if f == [1, 1, 1] {
            return Grid {
                dims: self.dims,
                data: self.data.clone(),
                spacing: self.spacing,
                axes: self.axes,
                origin: self.origin,
                p2i: self.p2i,
            };
        }
        let nd = [
            self.dims[0] / f[0],
            self.dims[1] / f[1],
            self.dims[2] / f[2],
        ];
        let [nx, ny, _] = self.dims;
        let inv = 1.0 / (f[0] * f[1] * f[2]) as f32;
        let data: Vec<f32> = (0..nd[0] * nd[1] * nd[2])
            .into_par_iter()
            .map(|o| {
                let (i, j, k) = (o % nd[0], (o / nd[0]) % nd[1], o / (nd[0] * nd[1]));
                let mut s = 0.0f32;
                for dk in 0..f[2] {
                    for dj in 0..f[1] {
                        for di in 0..f[0] {
                            let (x, y, z) = (i * f[0] + di, j * f[1] + dj, k * f[2] + dk);
                            s += self.data[x + nx * (y + ny * z)];
                        }
                    }
                }
                s * inv
            })
            .collect();
        let offset = f.map(|n| (n as f64 - 1.0) / 2.0);
        let origin = self.index_to_patient(offset);
        let spacing = [
            self.spacing[0] * f[0] as f64,
            self.spacing[1] * f[1] as f64,
            self.spacing[2] * f[2] as f64,
        ];
        let mut g = Grid {
            dims: nd,
            data,
            spacing,
            axes: self.axes,
            origin,
            p2i: self.p2i,
        };
        // Same axes, larger spacing: the inverse exists whenever the finer one did.
        g.p2i = invert3(&g.i2p()).unwrap_or(self.p2i);
        g
    }

    /// Trilinear value at a continuous index, `None` outside (with a 1e-6 voxel tolerance).
    pub(super) fn sample(&self, x: V3) -> Option<f64> {
        self.sample_grad(x).map(|(v, _)| v)
    }

    /// Trilinear value and its gradient with respect to the index, `None` outside.
    pub(super) fn sample_grad(&self, x: V3) -> Option<(f64, V3)> {
        const EPS: f64 = 1e-6;
        let mut base = [0usize; 3];
        let mut frac = [0.0f64; 3];
        let mut step = [0usize; 3];
        let strides = [1, self.dims[0], self.dims[0] * self.dims[1]];
        for a in 0..3 {
            let n = self.dims[a];
            let lim = (n - 1) as f64;
            if !(x[a] >= -EPS && x[a] <= lim + EPS) {
                return None;
            }
            let xa = x[a].clamp(0.0, lim);
            let i0 = (xa as usize).min(n.saturating_sub(2));
            base[a] = i0;
            frac[a] = xa - i0 as f64;
            step[a] = if n > 1 { strides[a] } else { 0 };
        }
        let b = base[0] + strides[1] * base[1] + strides[2] * base[2];
        let d = &self.data;
        let g = |o: usize| f64::from(d[b + o]);
        let [sx, sy, sz] = step;
        let (c000, c100, c010, c110) = (g(0), g(sx), g(sy), g(sy + sx));
        let (c001, c101, c011, c111) = (g(sz), g(sz + sx), g(sz + sy), g(sz + sy + sx));
        let [fx, fy, fz] = frac;
        let a0 = c000 + (c100 - c000) * fx;
        let a1 = c010 + (c110 - c010) * fx;
        let a2 = c001 + (c101 - c001) * fx;
        let a3 = c011 + (c111 - c011) * fx;
        let b0 = a0 + (a1 - a0) * fy;
        let b1 = a2 + (a3 - a2) * fy;
        let v = b0 + (b1 - b0) * fz;
        if !v.is_finite() {
            return None;
        }
        // d/dx: differences along x, interpolated in y and z; likewise for y and z.
        let dx0 = (c100 - c000) + ((c110 - c010) - (c100 - c000)) * fy;
        let dx1 = (c101 - c001) + ((c111 - c011) - (c101 - c001)) * fy;
        let gx = if sx > 0 { dx0 + (dx1 - dx0) * fz } else { 0.0 };
        let gy = if sy > 0 {
            (a1 - a0) + ((a3 - a2) - (a1 - a0)) * fz
        } else {
            0.0
        };
        let gz = if sz > 0 { b1 - b0 } else { 0.0 };
        Some((v, [gx, gy, gz]))
    }
}
