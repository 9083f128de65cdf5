//! The imaging engine on archived series, shared by `/api/v1/render/…` and `radris render`:
//! a series' volume built from its stored instances (decrypted, decoded, sorted) and kept in
//! an LRU cache keyed by tenant, series and the instances' digests (a changed series is a new
//! key), the view a request describes (MPR plane, slab, curved path, volume-rendering camera),
//! the picture drawn and encoded, and derived series saved back ([`derived`]).

mod curve;
pub mod derived;
mod view;

pub use curve::time_intensity;
pub use view::*;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use radris_core::TenantId;
use radris_imaging::dicom::{self as imaging_dicom, SeriesFrame};
use radris_imaging::register::{self, RegisterOptions, RigidTransform};
use radris_imaging::render::BrickGrid;
use radris_imaging::temporal;
use radris_imaging::volume::{self, BuildOptions, BuildReport, Cache, TiltHandling, Volume, Weigh};
use radris_store::{Archive, StoredInstance};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Largest output side (pixels) a request may ask for.
pub const MAX_SIDE: usize = 2048;

/// Why a picture could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The series cannot be made into a volume (422), with the reason.
    #[error("{0}")]
    NotAVolume(String),
    #[error("{context}: {cause}")]
    Internal {
        context: &'static str,
        cause: String,
    },
}

impl RenderError {
    fn internal(context: &'static str, cause: impl std::fmt::Display) -> Self {
        RenderError::Internal {
            context,
            cause: cause.to_string(),
        }
    }
}

/// One phase of a series (a 3D series has one).
pub struct Phase {
    /// Seconds from the first phase (0 for a 3D series).
    pub time_s: f64,
    pub volume: Volume,
    grid: OnceLock<Result<BrickGrid, String>>,
}

impl Phase {
    fn new(time_s: f64, volume: Volume) -> Phase {
        Phase {
            time_s,
            volume,
            grid: OnceLock::new(),
        }
    }

    /// The brick grid for volume rendering, built on first use.
    fn grid(&self) -> Result<&BrickGrid, RenderError> {
        self.grid
            .get_or_init(|| BrickGrid::new(&self.volume).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| RenderError::NotAVolume(e.clone()))
    }
}

/// A series loaded as one volume per phase, with what the derived objects must cite.
pub struct LoadedSeries {
    /// The cache key (tenant, series, digests of the instances).
    pub key: String,
    pub study_uid: String,
    pub series_uid: String,
    pub phases: Vec<Phase>,
    pub report: BuildReport,
    /// (SOP Class UID, SOP Instance UID) of every source instance.
    pub sources: Vec<(String, String)>,
    /// The first source instance's header without pixel data: patient and study attributes
    /// for derived objects.
    pub header: dicom_object::InMemDicomObject,
}

impl Weigh for LoadedSeries {
    fn bytes(&self) -> usize {
        // brick grids are ~1/256 of the voxels; count the voxels twice over for headroom
        self.phases
            .iter()
            .map(|p| p.volume.voxels.byte_size() + p.volume.voxels.byte_size() / 64)
            .sum()
    }
}

impl LoadedSeries {
    pub fn phase(&self, index: usize) -> Result<&Phase, RenderError> {
        self.phases.get(index).ok_or_else(|| {
            RenderError::BadRequest(format!(
                "phase {index} does not exist: the series has {} phase(s), numbered from 0",
                self.phases.len()
            ))
        })
    }

    pub fn modality(&self) -> String {
        radris_dicom::attrs::text(&self.header, dicom_dictionary_std::tags::MODALITY)
    }

    pub fn frame_of_reference(&self) -> String {
        radris_dicom::attrs::text(
            &self.header,
            dicom_dictionary_std::tags::FRAME_OF_REFERENCE_UID,
        )
    }
}

/// The volumes of archived series, cached.
pub struct Volumes {
    cache: Cache<LoadedSeries>,
    /// Builds in progress, by cache key.
    building: std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<LoadedSeries>>>>>,
    registrations: Cache<Aligned>,
}

/// How an overlay series lies in a base series' patient space.
#[derive(Debug, Clone)]
pub struct Aligned {
    /// Base patient space → overlay patient space.
    pub transform: RigidTransform,
    /// `None` when the two share a frame of reference (identity), else the registration's
    /// mutual information.
    pub mutual_information: Option<f64>,
}

impl Aligned {
    /// `{"rotation": rows, "translation", "mutual_information"}` (null when not registered).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rotation": self.transform.rotation,
            "translation": self.transform.translation,
            "mutual_information": self.mutual_information,
        })
    }
}

impl Weigh for Aligned {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Aligned>()
    }
}

impl Volumes {
    pub fn new(capacity_bytes: usize) -> Self {
        Volumes {
            cache: Cache::new(capacity_bytes),
            registrations: Cache::new(1 << 20),
            building: std::sync::Mutex::default(),
        }
    }

    /// How `overlay` lies in `base`'s space: identity when they share a frame of reference
    /// and `register` is not forced, else a mutual-information rigid registration (cached).
    pub async fn align(
        &self,
        base: &Arc<LoadedSeries>,
        overlay: &Arc<LoadedSeries>,
        register: Option<bool>,
    ) -> Result<Arc<Aligned>, RenderError> {
        let same_frame = !base.frame_of_reference().is_empty()
            && base.frame_of_reference() == overlay.frame_of_reference();
        if register == Some(false) || (register.is_none() && same_frame) {
            return Ok(Arc::new(Aligned {
                transform: RigidTransform::identity(),
                mutual_information: None,
            }));
        }
        let key = format!("{}|{}", base.key, overlay.key);
        if let Some(hit) = self.registrations.get(&key) {
            return Ok(hit);
        }
        let (b, o) = (Arc::clone(base), Arc::clone(overlay));
        let reg = tokio::task::spawn_blocking(move || {
            register::register_rigid(
                &b.phases[0].volume,
                &o.phases[0].volume,
                &RegisterOptions::default(),
            )
        })
        .await
        .map_err(|e| RenderError::internal("registering the series", e))?
        .map_err(|e| RenderError::NotAVolume(format!("registration failed: {e}")))?;
        Ok(self.registrations.insert(
            &key,
            Arc::new(Aligned {
                transform: reg.transform,
                mutual_information: Some(reg.mutual_information),
            }),
        ))
    }

    /// The series' volume(s): from the cache when the stored instances are unchanged, else
    /// loaded and built (decoding in parallel).
    pub async fn series(
        &self,
        archive: &Archive,
        tenant: &TenantId,
        study_uid: &str,
        series_uid: &str,
    ) -> Result<Arc<LoadedSeries>, RenderError> {
        let instances: Vec<StoredInstance> = archive
            .instances_of(tenant, study_uid, Some(series_uid), None, false)
            .await
            .map_err(|e| RenderError::internal("listing the series", e))?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        if instances.is_empty() {
            return Err(RenderError::NotFound(format!(
                "no series {series_uid} in study {study_uid}"
            )));
        }
        let key = cache_key(tenant, series_uid, &instances);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        // one build per key: requests arriving meanwhile (the viewer's prefetch, then its
        // planes) wait for it instead of building again
        let cell = Arc::clone(
            self.building
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key.clone())
                .or_default(),
        );
        let built = cell
            .get_or_try_init(|| async {
                let archive = archive.clone();
                let mut loaded = tokio::task::spawn_blocking(move || load(&archive, &instances))
                    .await
                    .map_err(|e| RenderError::internal("loading the series", e))??;
                loaded.key.clone_from(&key);
                Ok::<_, RenderError>(self.cache.insert(&key, Arc::new(loaded)))
            })
            .await
            .cloned();
        self.building
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        built
    }

    /// Bytes held by the cache.
    pub fn used_bytes(&self) -> usize {
        self.cache.used_bytes()
    }
}

/// Tenant, series and a digest of (SOP Instance UID, SHA-256) of every instance.
fn cache_key(tenant: &TenantId, series_uid: &str, instances: &[StoredInstance]) -> String {
    let mut ids: Vec<(&str, &str)> = instances
        .iter()
        .map(|i| (i.sop_uid.as_str(), i.sha256.as_str()))
        .collect();
    ids.sort_unstable();
    let mut h = Sha256::new();
    for (sop, sha) in ids {
        h.update(sop.as_bytes());
        h.update([0]);
        h.update(sha.as_bytes());
        h.update([0]);
    }
    format!(
        "{}/{series_uid}/{}",
        tenant.as_str(),
        hex::encode(h.finalize())
    )
}

/// Load and build (blocking; decodes on rayon's pool).
pub fn load(archive: &Archive, instances: &[StoredInstance]) -> Result<LoadedSeries, RenderError> {
    let first = instances
        .first()
        .ok_or_else(|| RenderError::NotFound("the series has no instances".into()))?;
    let decoded: Vec<(Vec<SeriesFrame>, Option<dicom_object::InMemDicomObject>)> = instances
        .par_iter()
        .enumerate()
        .map(|(n, inst)| {
            let bytes = archive
                .open_blob_blocking(inst)
                .and_then(|b| {
                    b.read_all()
                        .map_err(|e| radris_store::StoreError::Crypto(e.to_string()))
                })
                .map_err(|e| RenderError::internal("reading a stored instance", e))?;
            let obj = imaging_dicom::parse_part10(&bytes)
                .map_err(|e| RenderError::NotAVolume(e.to_string()))?;
            let frames = imaging_dicom::frames_from_object(&obj)
                .map_err(|e| RenderError::NotAVolume(e.to_string()))?;
            let header = (n == 0).then(|| radris_dicom::attrs::strip_bulk(&obj));
            Ok((frames, header))
        })
        .collect::<Result<_, RenderError>>()?;
    let mut header = None;
    let mut frames = Vec::new();
    for (f, h) in decoded {
        frames.extend(f);
        header = header.or(h);
    }
    let sources = instances
        .iter()
        .map(|i| (i.sop_class_uid.clone(), i.sop_uid.clone()))
        .collect();
    let (phases, report) = build_phases(frames)?;
    Ok(LoadedSeries {
        key: String::new(),
        study_uid: first.study_uid.clone(),
        series_uid: first.series_uid.clone(),
        phases,
        report,
        sources,
        header: header.unwrap_or_else(dicom_object::InMemDicomObject::new_empty),
    })
}

fn build_options() -> BuildOptions {
    BuildOptions {
        // a reader still wants to see a series with a missing slice; the gap is reported
        allow_gaps: true,
        tilt: TiltHandling::Resample,
        ..BuildOptions::default()
    }
}

/// One volume per phase: frames grouped by temporal position when the series repeats
/// its positions over time, else one volume.
fn build_phases(frames: Vec<SeriesFrame>) -> Result<(Vec<Phase>, BuildReport), RenderError> {
    let not = |e: &dyn std::fmt::Display| RenderError::NotAVolume(e.to_string());
    let groups = temporal::group_phases(frames).map_err(|e| not(&e))?;
    if groups.len() <= 1 {
        let slices = groups
            .into_iter()
            .flat_map(|g| g.frames)
            .map(|f| f.slice)
            .collect();
        let (vol, report) = volume::build(slices, &build_options()).map_err(|e| not(&e))?;
        return Ok((vec![Phase::new(0.0, vol)], report));
    }
    // the report of the first phase describes the grid every phase shares
    let first: Vec<_> = groups[0].frames.iter().map(|f| f.slice.clone()).collect();
    let (_, report) = volume::build(first, &build_options()).map_err(|e| not(&e))?;
    let frames = groups.into_iter().flat_map(|g| g.frames).collect();
    let v4 = temporal::build_phases(frames, &build_options()).map_err(|e| not(&e))?;
    let phases = v4
        .phases
        .into_iter()
        .map(|(_, t, v)| Phase::new(t, v))
        .collect();
    Ok((phases, report))
}

/// What `GET …/volume` answers: the grid, the phases and what the build found.
#[derive(Debug, Serialize)]
pub struct VolumeInfo {
    pub study_uid: String,
    pub series_uid: String,
    pub modality: String,
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub origin: [f64; 3],
    pub axes: [[f64; 3]; 3],
    pub phases: Vec<f64>,
    pub slices: usize,
    pub spacing_mm: f64,
    pub gaps: Vec<GapInfo>,
    pub uneven: bool,
    pub tilt_deg: f64,
    pub resampled: bool,
    /// Plain-language warnings for the reader.
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct GapInfo {
    pub after_slice: usize,
    pub step_mm: f64,
    pub missing: usize,
}

pub fn info(series: &LoadedSeries) -> VolumeInfo {
    let v = &series.phases[0].volume;
    let r = &series.report;
    VolumeInfo {
        study_uid: series.study_uid.clone(),
        series_uid: series.series_uid.clone(),
        modality: series.modality(),
        dims: v.dims,
        spacing: v.spacing,
        origin: v.origin,
        axes: v.axes,
        phases: series.phases.iter().map(|p| p.time_s).collect(),
        slices: r.slice_count,
        spacing_mm: r.spacing_mm,
        gaps: r
            .gaps
            .iter()
            .map(|g| GapInfo {
                after_slice: g.after,
                step_mm: g.step_mm,
                missing: g.missing,
            })
            .collect(),
        uneven: r.uneven,
        tilt_deg: r.tilt_deg,
        resampled: r.resampled,
        warnings: warnings(r),
    }
}

/// The build's findings a reader must know about.
pub fn warnings(r: &BuildReport) -> Vec<String> {
    let mut w = Vec::new();
    if !r.gaps.is_empty() {
        let missing: usize = r.gaps.iter().map(|g| g.missing).sum();
        w.push(format!(
            "{missing} slice(s) missing in {} gap(s); reformats show the gaps compressed",
            r.gaps.len()
        ));
    }
    if r.uneven {
        w.push(format!(
            "uneven slice spacing ({:.2}–{:.2} mm)",
            r.min_step_mm, r.max_step_mm
        ));
    }
    if r.resampled {
        w.push(format!(
            "gantry tilt of {:.1}° resampled onto an orthogonal grid",
            r.tilt_deg
        ));
    }
    w
}
