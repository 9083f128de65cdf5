//! Per-brick value ranges for empty-space skipping, and the voxel types rays read.

use rayon::prelude::*;

use super::*;

pub const BRICK: usize = 8;

/// Per-brick min/max of stored values over the voxels a brick's samples interpolate from.
/// Depends on the volume only; build once and reuse across transfer functions.
#[derive(Debug, Clone)]
pub struct BrickGrid {
    pub(super) dims: [usize; 3],
    pub(super) bdims: [usize; 3],
    pub(super) min: Vec<f32>,
    pub(super) max: Vec<f32>,
    pub(super) stored_min: f32,
    pub(super) stored_max: f32,
}

pub(super) trait Voxel: Copy + Send + Sync {
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

pub(super) fn check_volume(vol: &Volume) -> Result<(), RenderError> {
    let (expected, actual) = (vol.voxel_count(), vol.voxels.len());
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
