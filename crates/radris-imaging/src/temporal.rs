//! 4D: series whose slice positions repeat over time (dynamic contrast, perfusion) or over
//! the cardiac cycle (cine). Frames are grouped into phases, each phase built into a
//! [`Volume`], and a region's mean followed across phases (time-intensity curve).
//!
//! Grouping ([`group_phases`]) looks at each slice position (distance along the slice
//! normal) and picks the first key that tells the frames at one position apart:
//!
//! 1. Temporal Position Index / Identifier ([`PhaseKey::TemporalPosition`]): frames with the
//!    same value form a phase; every phase must hold the same number of slices.
//! 2. Trigger Time ([`PhaseKey::TriggerTime`]) and then acquisition time
//!    ([`PhaseKey::AcquisitionTime`]): at each position the frames are ordered by the time
//!    and the n-th frame joins phase n. Times of one phase differ between slices (slices are
//!    acquired one after another, trigger times jitter by a few ms), so equal values cannot
//!    be asked for; every position must hold the same number of frames instead.
//!
//! A series whose positions never repeat is one phase. Phase times ([`Phase::time_s`]) are
//! seconds after the first phase: from Trigger Time when the frames carry distinct ones,
//! else from acquisition time, else the phase ordinal (0, 1, 2 …).
//!
//! ```
//! use radris_imaging::temporal::{TimePoint, enhancement};
//! let curve: Vec<TimePoint> = [100.0, 100.0, 180.0, 240.0, 200.0]
//!     .iter()
//!     .enumerate()
//!     .map(|(i, &mean)| TimePoint {
//!         time_s: 10.0 * i as f64,
//!         mean,
//!         sd: 0.0,
//!         min: mean,
//!         max: mean,
//!         count: 1,
//!     })
//!     .collect();
//! let e = enhancement(&curve, 2).unwrap();
//! assert_eq!((e.peak_enhancement, e.time_to_peak_s), (140.0, 30.0));
//! ```

use rayon::prelude::*;
use thiserror::Error;

use crate::dicom::SeriesFrame;
use crate::mpr::{Image, MprError, Plane, reslice};
use crate::quant::{Mask, QuantError, mask_stats};
use crate::volume::{BuildOptions, Volume, VolumeError, build, cross, dot, normalize};

/// What identifies a phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PhaseKey {
    /// Temporal Position Index (0020,9128) or Temporal Position Identifier (0020,0100).
    TemporalPosition(i64),
    /// Trigger Time (0018,1060) / Nominal Cardiac Trigger Delay Time, ms, the phase's
    /// earliest, rounded to 0.01 ms.
    TriggerTime(f64),
    /// Acquisition time of day, s, the phase's earliest.
    AcquisitionTime(f64),
    /// No temporal key: the series' only phase.
    Single,
}

impl std::fmt::Display for PhaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PhaseKey::TemporalPosition(i) => write!(f, "temporal position {i}"),
            PhaseKey::TriggerTime(ms) => write!(f, "trigger time {ms} ms"),
            PhaseKey::AcquisitionTime(s) => write!(f, "acquisition time {s} s"),
            PhaseKey::Single => f.write_str("single phase"),
        }
    }
}

/// The frames of one phase, sorted along the slice normal.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub key: PhaseKey,
    /// Seconds after the first phase (see the module documentation).
    pub time_s: f64,
    pub frames: Vec<SeriesFrame>,
}

/// One volume per phase, all on the same grid, in time order. Cine = iterate `phases`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Volume4d {
    /// Key, seconds after the first phase, volume.
    pub phases: Vec<(PhaseKey, f64, Volume)>,
}

impl Volume4d {
    pub fn len(&self) -> usize {
        self.phases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }

    /// The volume of phase `i`.
    pub fn phase(&self, i: usize) -> Option<&Volume> {
        self.phases.get(i).map(|(_, _, v)| v)
    }

    /// The key of phase `i`.
    pub fn key(&self, i: usize) -> Option<PhaseKey> {
        self.phases.get(i).map(|(k, _, _)| *k)
    }

    /// Seconds after the first phase of phase `i`.
    pub fn time_s(&self, i: usize) -> Option<f64> {
        self.phases.get(i).map(|(_, t, _)| *t)
    }

    /// Phase times, seconds.
    pub fn times_s(&self) -> Vec<f64> {
        self.phases.iter().map(|(_, t, _)| *t).collect()
    }

    /// A cine loop: the same plane resliced in every phase, in order.
    pub fn cine(&self, plane: &Plane) -> Result<Vec<Image>, MprError> {
        self.phases
            .iter()
            .map(|(_, _, v)| reslice(v, plane))
            .collect()
    }
}

/// The region's statistics in one phase, modality units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimePoint {
    pub time_s: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1).
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

/// Summary of a time-intensity curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Enhancement {
    /// Mean of the first `baseline_points` means (before contrast arrives).
    pub baseline: f64,
    /// Highest mean.
    pub peak: f64,
    pub peak_index: usize,
    /// Time of the peak sample after the first time point, s.
    pub time_to_peak_s: f64,
    /// Vertex of the parabola through the peak sample and its neighbours (the sample time
    /// at either end of the curve), s after the first time point: finer than the sampling.
    pub time_to_peak_interpolated_s: f64,
    /// `peak − baseline`.
    pub peak_enhancement: f64,
    /// `100·(peak − baseline)/|baseline|`; `None` for a zero baseline.
    pub relative_enhancement_pct: Option<f64>,
    /// Steepest rise between consecutive points before the peak, units per second (0 when
    /// the peak is the first point).
    pub max_upslope_per_s: f64,
}

/// Why frames cannot be grouped or measured.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum TemporalError {
    #[error("no frames")]
    Empty,
    #[error("{sop_instance_uid} frame {frame}: degenerate Image Orientation (Patient)")]
    BadOrientation {
        sop_instance_uid: String,
        frame: u32,
    },
    #[error(
        "slice position {position_mm:.3} mm holds {frames} frames but no temporal position, \
         trigger time or acquisition time tells them apart"
    )]
    NoTemporalKey { position_mm: f64, frames: usize },
    #[error("phase {phase} ({key}) has {slices} slices, phase 0 has {expected}")]
    InconsistentPhases {
        phase: usize,
        key: PhaseKey,
        slices: usize,
        expected: usize,
    },
    #[error(
        "slice position {position_mm:.3} mm holds {frames} frames, the first position holds \
         {expected}: phases would have different slice counts"
    )]
    InconsistentPositions {
        position_mm: f64,
        frames: usize,
        expected: usize,
    },
    #[error("phase {phase} ({key}): {source}")]
    Volume {
        phase: usize,
        key: PhaseKey,
        #[source]
        source: VolumeError,
    },
    #[error("phase {phase} has a different {what} than phase 0")]
    GeometryMismatch { phase: usize, what: &'static str },
    #[error("phase {phase}: {source}")]
    Quant {
        phase: usize,
        #[source]
        source: QuantError,
    },
    #[error("the mask selects no voxel")]
    EmptyMask,
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
}

/// Slice positions closer than this along the normal (mm) are the same position.
const POSITION_TOLERANCE_MM: f64 = 0.01;

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    TemporalPosition,
    TriggerTime,
    AcquisitionTime,
}

impl KeyKind {
    fn value(self, f: &SeriesFrame) -> Option<f64> {
        match self {
            KeyKind::TemporalPosition => f.temporal_position.map(|v| v as f64),
            KeyKind::TriggerTime => f.trigger_time_ms.filter(|v| v.is_finite()),
            KeyKind::AcquisitionTime => f.acquisition_seconds.filter(|v| v.is_finite()),
        }
    }
}

/// Groups a series' frames into phases; see the module documentation for the rules.
pub fn group_phases(frames: Vec<SeriesFrame>) -> Result<Vec<Phase>, TemporalError> {
    let first = frames.first().ok_or(TemporalError::Empty)?;
    let o = first.slice.orientation;
    let normal = normalize([o[0], o[1], o[2]])
        .zip(normalize([o[3], o[4], o[5]]))
        .and_then(|(r, c)| normalize(cross(r, c)))
        .ok_or_else(|| TemporalError::BadOrientation {
            sop_instance_uid: first.sop_instance_uid.clone(),
            frame: first.frame,
        })?;

    // Sort along the normal and cut into positions.
    let mut frames: Vec<(f64, SeriesFrame)> = frames
        .into_iter()
        .map(|f| (dot(f.slice.position, normal), f))
        .collect();
    frames.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut positions: Vec<Vec<(f64, SeriesFrame)>> = Vec::new();
    for (d, f) in frames {
        match positions.last_mut() {
            Some(p)
                if p.last()
                    .is_some_and(|(pd, _)| d - pd <= POSITION_TOLERANCE_MM) =>
            {
                p.push((d, f))
            }
            _ => positions.push(vec![(d, f)]),
        }
    }

    let repeats = positions.iter().any(|p| p.len() > 1);
    if !repeats {
        let frames: Vec<SeriesFrame> = positions.into_iter().flatten().map(|(_, f)| f).collect();
        let key = single_key(&frames);
        return Ok(vec![Phase {
            key,
            time_s: 0.0,
            frames,
        }]);
    }

    let kind = [
        KeyKind::TemporalPosition,
        KeyKind::TriggerTime,
        KeyKind::AcquisitionTime,
    ]
    .into_iter()
    .find(|&k| {
        positions
            .iter()
            .all(|p| distinct(p.iter().map(|(_, f)| k.value(f))))
    });
    let Some(kind) = kind else {
        let worst = positions
            .iter()
            .max_by_key(|p| p.len())
            .map(|p| (p[0].0, p.len()))
            .unwrap_or((0.0, 0));
        return Err(TemporalError::NoTemporalKey {
            position_mm: worst.0,
            frames: worst.1,
        });
    };

    let mut groups: Vec<Vec<(f64, SeriesFrame)>> = Vec::new();
    if kind == KeyKind::TemporalPosition {
        let mut all: Vec<(i64, f64, SeriesFrame)> = positions
            .into_iter()
            .flatten()
            .map(|(d, f)| (f.temporal_position.unwrap_or(0), d, f))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut current: Option<i64> = None;
        for (tp, d, f) in all {
            if current != Some(tp) {
                groups.push(Vec::new());
                current = Some(tp);
            }
            if let Some(g) = groups.last_mut() {
                g.push((d, f));
            }
        }
    } else {
        let expected = positions[0].len();
        for p in &positions {
            if p.len() != expected {
                return Err(TemporalError::InconsistentPositions {
                    position_mm: p[0].0,
                    frames: p.len(),
                    expected,
                });
            }
        }
        groups = (0..expected).map(|_| Vec::new()).collect();
        for mut p in positions {
            p.sort_by(|a, b| {
                let (x, y) = (kind.value(&a.1), kind.value(&b.1));
                x.unwrap_or(0.0).total_cmp(&y.unwrap_or(0.0))
            });
            for (n, frame) in p.into_iter().enumerate() {
                groups[n].push(frame);
            }
        }
    }

    let expected = groups.first().map_or(0, Vec::len);
    let mut phases = Vec::with_capacity(groups.len());
    for (n, g) in groups.into_iter().enumerate() {
        let frames: Vec<SeriesFrame> = g.into_iter().map(|(_, f)| f).collect();
        let key = match kind {
            KeyKind::TemporalPosition => {
                PhaseKey::TemporalPosition(frames[0].temporal_position.unwrap_or(0))
            }
            KeyKind::TriggerTime => {
                PhaseKey::TriggerTime((earliest(&frames, kind) * 100.0).round() / 100.0)
            }
            KeyKind::AcquisitionTime => PhaseKey::AcquisitionTime(earliest(&frames, kind)),
        };
        if frames.len() != expected {
            return Err(TemporalError::InconsistentPhases {
                phase: n,
                key,
                slices: frames.len(),
                expected,
            });
        }
        phases.push(Phase {
            key,
            time_s: 0.0,
            frames,
        });
    }
    assign_times(&mut phases, kind);
    Ok(phases)
}

/// Groups the frames ([`group_phases`]) and builds one volume per phase with
/// [`crate::volume::build`]; every phase must come out on the same grid.
pub fn build_phases(
    frames: Vec<SeriesFrame>,
    opts: &BuildOptions,
) -> Result<Volume4d, TemporalError> {
    let phases = group_phases(frames)?;
    let built: Vec<Result<(PhaseKey, f64, Volume), TemporalError>> = phases
        .into_par_iter()
        .enumerate()
        .map(|(n, p)| {
            let slices = p.frames.into_iter().map(|f| f.slice).collect();
            build(slices, opts)
                .map(|(v, _)| (p.key, p.time_s, v))
                .map_err(|source| TemporalError::Volume {
                    phase: n,
                    key: p.key,
                    source,
                })
        })
        .collect();
    let phases = built.into_iter().collect::<Result<Vec<_>, _>>()?;
    if let Some((_, _, v0)) = phases.first() {
        for (n, (_, _, v)) in phases.iter().enumerate().skip(1) {
            let near = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3);
            let what = if v.dims != v0.dims {
                Some("grid size")
            } else if !near(&v.spacing, &v0.spacing) {
                Some("voxel spacing")
            } else if !near(&v.origin, &v0.origin) {
                Some("origin")
            } else if !near(v.axes.as_flattened(), v0.axes.as_flattened()) {
                Some("orientation")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(TemporalError::GeometryMismatch { phase: n, what });
            }
        }
    }
    Ok(Volume4d { phases })
}

/// Statistics of the masked voxels in every phase (the mask on the common grid).
pub fn time_intensity_curve(v: &Volume4d, mask: &Mask) -> Result<Vec<TimePoint>, TemporalError> {
    curve_over(v.phases.iter().map(|(_, t, vol)| (*t, vol)), mask)
}

/// [`time_intensity_curve`] over phases held elsewhere: `(seconds, volume)` in time order,
/// all on the mask's grid.
pub fn curve_over<'a>(
    phases: impl IntoIterator<Item = (f64, &'a Volume)>,
    mask: &Mask,
) -> Result<Vec<TimePoint>, TemporalError> {
    let phases: Vec<(f64, &Volume)> = phases.into_iter().collect();
    if phases.is_empty() {
        return Err(TemporalError::Empty);
    }
    if mask.count() == 0 {
        return Err(TemporalError::EmptyMask);
    }
    phases
        .par_iter()
        .enumerate()
        .map(|(phase, (t, vol))| {
            let s =
                mask_stats(vol, mask).map_err(|source| TemporalError::Quant { phase, source })?;
            Ok(TimePoint {
                time_s: *t,
                mean: s.mean,
                sd: s.sd,
                min: s.min,
                max: s.max,
                count: s.count,
            })
        })
        .collect()
}

/// Baseline, peak, time to peak and upslope of a curve; `baseline_points` (at least 1) of
/// the first points form the baseline.
pub fn enhancement(
    curve: &[TimePoint],
    baseline_points: usize,
) -> Result<Enhancement, TemporalError> {
    if curve.is_empty() {
        return Err(TemporalError::Empty);
    }
    if baseline_points == 0 || baseline_points > curve.len() {
        return Err(TemporalError::InvalidParameter(
            "baseline_points must be within 1..=curve length",
        ));
    }
    if curve
        .iter()
        .any(|p| !(p.mean.is_finite() && p.time_s.is_finite()))
    {
        return Err(TemporalError::InvalidParameter(
            "curve holds a non-finite time or mean",
        ));
    }
    let baseline =
        curve[..baseline_points].iter().map(|p| p.mean).sum::<f64>() / baseline_points as f64;
    let (peak_index, peak) =
        curve
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, p)| {
                if p.mean > best.1 { (i, p.mean) } else { best }
            });
    let t0 = curve[0].time_s;
    let tp = curve[peak_index].time_s;
    let interpolated = match (peak_index.checked_sub(1), curve.get(peak_index + 1)) {
        (Some(prev), Some(next)) => {
            let (a, b, c) = (&curve[prev], &curve[peak_index], next);
            let (p, q) = (b.time_s - a.time_s, b.time_s - c.time_s);
            let num = p * p * (b.mean - c.mean) - q * q * (b.mean - a.mean);
            let den = p * (b.mean - c.mean) - q * (b.mean - a.mean);
            if den.abs() > 1e-300 {
                (b.time_s - 0.5 * num / den).clamp(a.time_s, c.time_s)
            } else {
                tp
            }
        }
        _ => tp,
    };
    let max_upslope_per_s = curve[..=peak_index]
        .windows(2)
        .filter(|w| w[1].time_s > w[0].time_s)
        .map(|w| (w[1].mean - w[0].mean) / (w[1].time_s - w[0].time_s))
        .fold(0.0f64, f64::max);
    Ok(Enhancement {
        baseline,
        peak,
        peak_index,
        time_to_peak_s: tp - t0,
        time_to_peak_interpolated_s: interpolated - t0,
        peak_enhancement: peak - baseline,
        relative_enhancement_pct: (baseline != 0.0)
            .then(|| 100.0 * (peak - baseline) / baseline.abs()),
        max_upslope_per_s,
    })
}

/// `peak − baseline` of [`enhancement`].
pub fn peak_enhancement(curve: &[TimePoint], baseline_points: usize) -> Result<f64, TemporalError> {
    enhancement(curve, baseline_points).map(|e| e.peak_enhancement)
}

/// Time of the highest mean after the first point, s, refined by a parabola through the
/// peak and its neighbours ([`Enhancement::time_to_peak_interpolated_s`]).
pub fn time_to_peak_s(curve: &[TimePoint]) -> Result<f64, TemporalError> {
    enhancement(curve, 1).map(|e| e.time_to_peak_interpolated_s)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// All present and pairwise different.
fn distinct(values: impl Iterator<Item = Option<f64>>) -> bool {
    let Some(mut v) = values.collect::<Option<Vec<f64>>>() else {
        return false;
    };
    v.sort_by(f64::total_cmp);
    v.windows(2).all(|w| w[1] - w[0] > 1e-6)
}

fn earliest(frames: &[SeriesFrame], kind: KeyKind) -> f64 {
    frames
        .iter()
        .filter_map(|f| kind.value(f))
        .fold(f64::INFINITY, f64::min)
}

/// The key of a series' only phase: a temporal position or trigger time all frames share.
fn single_key(frames: &[SeriesFrame]) -> PhaseKey {
    let shared = |k: KeyKind| {
        let first = frames.first().and_then(|f| k.value(f))?;
        frames
            .iter()
            .all(|f| k.value(f) == Some(first))
            .then_some(first)
    };
    if let Some(tp) = shared(KeyKind::TemporalPosition) {
        PhaseKey::TemporalPosition(tp as i64)
    } else if let Some(tt) = shared(KeyKind::TriggerTime) {
        PhaseKey::TriggerTime((tt * 100.0).round() / 100.0)
    } else {
        PhaseKey::Single
    }
}

/// Seconds after the first phase: the grouping key's time, else trigger time, else
/// acquisition time (when they differ between phases), else the ordinal.
fn assign_times(phases: &mut [Phase], kind: KeyKind) {
    let candidates = match kind {
        KeyKind::TemporalPosition => [KeyKind::TriggerTime, KeyKind::AcquisitionTime],
        KeyKind::TriggerTime => [KeyKind::TriggerTime, KeyKind::TriggerTime],
        KeyKind::AcquisitionTime => [KeyKind::AcquisitionTime, KeyKind::AcquisitionTime],
    };
    for k in candidates {
        let all_present = phases
            .iter()
            .all(|p| p.frames.iter().all(|f| k.value(f).is_some()));
        if !all_present {
            continue;
        }
        let starts: Vec<f64> = phases.iter().map(|p| earliest(&p.frames, k)).collect();
        if !distinct(starts.iter().map(|&t| Some(t))) {
            continue;
        }
        let t0 = starts[0];
        for (p, t) in phases.iter_mut().zip(&starts) {
            let mut dt = t - t0;
            if k == KeyKind::TriggerTime {
                dt /= 1000.0;
            } else if dt < -43_200.0 {
                // Acquisition crossed midnight.
                dt += 86_400.0;
            }
            p.time_s = dt;
        }
        return;
    }
    for (n, p) in phases.iter_mut().enumerate() {
        p.time_s = n as f64;
    }
}
