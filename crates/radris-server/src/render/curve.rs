//! Time-intensity curves of 4D series.

use radris_imaging::quant::Mask;
use radris_imaging::temporal;
use serde::Serialize;

use super::view::{positive, vec3};
use super::{LoadedSeries, RenderError, ViewParams};

/// A time-intensity curve of a 4D series in a sphere of `radius` mm around `center`.
#[derive(Debug, Serialize)]
pub struct Curve {
    pub center: [f64; 3],
    pub radius_mm: f64,
    pub voxels: usize,
    pub points: Vec<CurvePoint>,
    pub baseline: f64,
    pub peak: f64,
    pub peak_enhancement: f64,
    pub time_to_peak_s: f64,
    pub max_upslope_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct CurvePoint {
    pub time_s: f64,
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

pub fn time_intensity(series: &LoadedSeries, p: &ViewParams) -> Result<Curve, RenderError> {
    let center = vec3(
        "center",
        p.center
            .as_deref()
            .ok_or_else(|| RenderError::BadRequest("a curve needs center=x,y,z".into()))?,
    )?;
    let radius = positive("radius", p.radius.unwrap_or(5.0), 100.0)?;
    let vol = &series.phase(0)?.volume;
    let mut mask = Mask::new(vol.dims);
    let c = vol.patient_to_index(center);
    let reach: Vec<f64> = vol.spacing.iter().map(|s| radius / s).collect();
    let range = |a: usize| {
        let lo = (c[a] - reach[a]).floor().max(0.0) as usize;
        let hi = ((c[a] + reach[a]).ceil().max(-1.0) as i64).min(vol.dims[a] as i64 - 1);
        (lo, hi)
    };
    let ((i0, i1), (j0, j1), (k0, k1)) = (range(0), range(1), range(2));
    for k in k0 as i64..=k1 {
        for j in j0 as i64..=j1 {
            for i in i0 as i64..=i1 {
                let q = vol.index_to_patient([i as f64, j as f64, k as f64]);
                let d2: f64 = (0..3).map(|a| (q[a] - center[a]).powi(2)).sum();
                if d2 <= radius * radius {
                    let (i, j, k) = (i as usize, j as usize, k as usize);
                    mask.set(i + vol.dims[0] * (j + vol.dims[1] * k), true);
                }
            }
        }
    }
    if mask.count() == 0 {
        return Err(RenderError::BadRequest(
            "the region lies outside the volume".into(),
        ));
    }
    let curve = temporal::curve_over(
        series.phases.iter().map(|ph| (ph.time_s, &ph.volume)),
        &mask,
    )
    .map_err(|e| RenderError::BadRequest(e.to_string()))?;
    let e = temporal::enhancement(&curve, 1).map_err(|e| RenderError::BadRequest(e.to_string()))?;
    Ok(Curve {
        center,
        radius_mm: radius,
        voxels: mask.count(),
        points: curve
            .iter()
            .map(|t| CurvePoint {
                time_s: t.time_s,
                mean: t.mean,
                sd: t.sd,
                min: t.min,
                max: t.max,
            })
            .collect(),
        baseline: e.baseline,
        peak: e.peak,
        peak_enhancement: e.peak_enhancement,
        time_to_peak_s: e.time_to_peak_interpolated_s,
        max_upslope_per_s: e.max_upslope_per_s,
    })
}
