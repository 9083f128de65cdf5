//! The imaging engine on archived series, shared by `/api/v1/render/…` and `radris render`:
//! a series' volume built from its stored instances (decrypted, decoded, sorted) and kept in
//! an LRU cache keyed by tenant, series and the instances' digests (a changed series is a new
//! key), the view a request describes (MPR plane, slab, curved path, volume-rendering camera),
//! the picture drawn and encoded, and derived series saved back ([`derived`]).

pub mod derived;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use radris_core::TenantId;
use radris_dicom::pixel::{self, Image8, ImageFormat};
use radris_imaging::dicom::{self as imaging_dicom, SeriesFrame};
use radris_imaging::fusion::{self, ColorMap};
use radris_imaging::mpr::{self, Image, Plane, SlabMode};
use radris_imaging::quant::Mask;
use radris_imaging::register::{self, RegisterOptions, RigidTransform};
use radris_imaging::render::{self as vr, BrickGrid, Camera, RgbaImage, TransferFunction};
use radris_imaging::temporal::{self, TimePoint};
use radris_imaging::volume::{self, BuildOptions, BuildReport, Cache, TiltHandling, Volume, Weigh};
use radris_store::{Archive, StoredInstance};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
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

// ---------------------------------------------------------------------------------------------
// What to draw
// ---------------------------------------------------------------------------------------------

/// The parameters of a picture, as query parameters (HTTP), JSON (derived series) or flags
/// (CLI). Vectors are comma-separated `x,y,z` in patient millimetres (DICOM LPS).
#[derive(Debug, Clone, Default, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ViewParams {
    /// axial | sagittal | coronal | oblique (default axial).
    #[arg(long)]
    pub plane: Option<String>,
    /// Offset of the plane along its normal from `center`, mm.
    #[arg(long, allow_negative_numbers = true)]
    pub position: Option<f64>,
    /// Centre of the picture `x,y,z` (default: the volume's centre).
    #[arg(long, allow_hyphen_values = true)]
    pub center: Option<String>,
    /// Oblique plane normal `x,y,z`.
    #[arg(long, allow_hyphen_values = true)]
    pub normal: Option<String>,
    /// Direction to the top of the picture `x,y,z` (oblique plane, curved reformat).
    #[arg(long, allow_hyphen_values = true)]
    pub up: Option<String>,
    /// Output size `W,H` or `N` (default: the volume's extent at `pixel`; 512 for 3D).
    #[arg(long)]
    pub size: Option<String>,
    /// Millimetres per output pixel (default: the smallest voxel spacing).
    #[arg(long)]
    pub pixel: Option<f64>,
    /// Slab thickness, mm.
    #[arg(long)]
    pub thickness: Option<f64>,
    /// Slab projection: mip | minip | average (default mip).
    #[arg(long)]
    pub slab: Option<String>,
    /// Curved reformat path: `x,y,z;x,y,z;…` (at least two points).
    #[arg(long, allow_hyphen_values = true)]
    pub points: Option<String>,
    /// Curved reformat: width across the path, mm (default 60).
    #[arg(long)]
    pub width: Option<f64>,
    /// Volume rendering preset: bone | soft | lung | angio | mip (default bone).
    #[arg(long)]
    pub preset: Option<String>,
    /// Volume rendering: rotation about the patient's long axis, degrees (0 = from the front).
    #[arg(long, allow_negative_numbers = true)]
    pub azimuth: Option<f64>,
    /// Volume rendering: elevation, degrees (positive = from above).
    #[arg(long, allow_negative_numbers = true)]
    pub elevation: Option<f64>,
    /// Volume rendering: orthographic | perspective (default orthographic).
    #[arg(long)]
    pub projection: Option<String>,
    /// Volume rendering: magnification (default 1).
    #[arg(long)]
    pub zoom: Option<f64>,
    /// Grey pictures: `center,width` or lung | mediastinum | bone | brain | abdomen
    /// (default: the series' first window, else the picture's range).
    #[arg(long, allow_hyphen_values = true)]
    pub window: Option<String>,
    /// png | jpeg (default png).
    #[arg(long)]
    pub format: Option<String>,
    /// JPEG quality 1..100 (default 90).
    #[arg(long)]
    pub quality: Option<u8>,
    /// Phase of a 4D series, from 0.
    #[arg(long)]
    pub phase: Option<usize>,
    /// Fusion: the overlay series (same study), e.g. PET or MR over CT.
    #[arg(long)]
    pub overlay: Option<String>,
    /// Fusion: overlay values mapped onto the colour map, `lo,hi` (default: its range).
    #[arg(long, allow_hyphen_values = true)]
    pub overlay_range: Option<String>,
    /// Fusion: hot | pet | rainbow | grayscale (default hot).
    #[arg(long)]
    pub colormap: Option<String>,
    /// Fusion: overlay opacity 0..1 (default 0.5).
    #[arg(long)]
    pub opacity: Option<f32>,
    /// Fusion: register the overlay (mutual information) even with a shared frame of
    /// reference (`true`), never (`false`); default: only without one.
    #[arg(long)]
    pub register: Option<bool>,
    /// Time-intensity curve: radius of the spherical region around `center`, mm.
    #[arg(long)]
    pub radius: Option<f64>,
}

/// What kind of picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A plane (orthogonal or oblique).
    Mpr,
    /// A thick slab (MIP, MinIP, average).
    Slab,
    /// A curved planar reformat along a path.
    Curved,
    /// A volume rendering.
    Vr,
    /// A plane with a second series over it in colour (PET/CT, MR/CT).
    Fusion,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, RenderError> {
        match s {
            "mpr" => Ok(Mode::Mpr),
            "slab" => Ok(Mode::Slab),
            "curved" => Ok(Mode::Curved),
            "vr" => Ok(Mode::Vr),
            "fusion" => Ok(Mode::Fusion),
            _ => Err(RenderError::BadRequest(format!(
                "unknown mode {s:?}: mpr, slab, curved, vr or fusion"
            ))),
        }
    }
}

/// A drawn picture: modality values on a plane (grey) or a rendering (colour).
pub enum Picture {
    Grey {
        image: Image,
        window: (f64, f64),
        /// Where the picture lies (planes only; a curved reformat has none).
        plane: Option<Plane>,
    },
    Colour(RgbaImage),
}

/// What the client needs to map the picture back to the patient.
#[derive(Debug, Clone, Serialize)]
pub struct Geometry {
    pub width: usize,
    pub height: usize,
    /// Patient position of the centre of pixel (0, 0) (planes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_pixel: Option<[f64; 3]>,
    /// Row and column directions (planes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orientation: Option<[f64; 6]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_mm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<[f64; 2]>,
}

impl Picture {
    pub fn geometry(&self) -> Geometry {
        match self {
            Picture::Grey {
                image,
                window,
                plane,
            } => Geometry {
                width: image.width,
                height: image.height,
                first_pixel: plane.map(|p| p.point_at(0.0, 0.0)),
                orientation: plane.map(|p| [p.u[0], p.u[1], p.u[2], p.v[0], p.v[1], p.v[2]]),
                pixel_mm: plane.map(|p| p.pixel_mm),
                window: Some([window.0, window.1]),
            },
            Picture::Colour(img) => Geometry {
                width: img.width,
                height: img.height,
                first_pixel: None,
                orientation: None,
                pixel_mm: None,
                window: None,
            },
        }
    }

    /// 8-bit pixels: the grey picture through its window, or the rendering's RGB.
    pub fn to_image8(&self) -> Image8 {
        match self {
            Picture::Grey { image, window, .. } => Image8 {
                width: image.width as u32,
                height: image.height as u32,
                channels: 1,
                data: image.to_gray8(window.0, window.1),
            },
            Picture::Colour(img) => Image8 {
                width: img.width as u32,
                height: img.height as u32,
                channels: 3,
                data: img
                    .data
                    .chunks_exact(4)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect(),
            },
        }
    }
}

/// The output format a request names.
pub fn format_of(p: &ViewParams) -> Result<(ImageFormat, &'static str), RenderError> {
    match p.format.as_deref().unwrap_or("png") {
        "png" => Ok((ImageFormat::Png, "image/png")),
        "jpeg" | "jpg" => {
            let quality = p.quality.unwrap_or(90);
            if !(1..=100).contains(&quality) {
                return Err(RenderError::BadRequest("quality is 1..100".into()));
            }
            Ok((ImageFormat::Jpeg { quality }, "image/jpeg"))
        }
        other => Err(RenderError::BadRequest(format!(
            "unknown format {other:?}: png or jpeg"
        ))),
    }
}

/// Draw and encode.
pub fn encode(pic: &Picture, format: ImageFormat) -> Result<Vec<u8>, RenderError> {
    pixel::encode_image(&pic.to_image8(), format)
        .map_err(|e| RenderError::internal("encoding the picture", e))
}

fn vec3(name: &str, s: &str) -> Result<[f64; 3], RenderError> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| RenderError::BadRequest(format!("{name} {s:?}: expected x,y,z in mm")))?;
    match v[..] {
        [x, y, z] if v.iter().all(|c| c.is_finite()) => Ok([x, y, z]),
        _ => Err(RenderError::BadRequest(format!(
            "{name} {s:?}: expected three finite numbers x,y,z"
        ))),
    }
}

fn positive(name: &str, v: f64, max: f64) -> Result<f64, RenderError> {
    if v.is_finite() && v > 0.0 && v <= max {
        Ok(v)
    } else {
        Err(RenderError::BadRequest(format!(
            "{name} must be a number in (0, {max}]"
        )))
    }
}

fn size_of(p: &ViewParams, default: [usize; 2]) -> Result<[usize; 2], RenderError> {
    let Some(s) = p.size.as_deref() else {
        return Ok([default[0].clamp(1, MAX_SIDE), default[1].clamp(1, MAX_SIDE)]);
    };
    let parts: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| RenderError::BadRequest(format!("size {s:?}: expected W,H or N")))?;
    let [w, h] = match parts[..] {
        [n] => [n, n],
        [w, h] => [w, h],
        _ => {
            return Err(RenderError::BadRequest(format!(
                "size {s:?}: expected W,H or N"
            )));
        }
    };
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(RenderError::BadRequest(format!(
            "size {s:?}: each side is 1..{MAX_SIDE} pixels"
        )));
    }
    Ok([w, h])
}

/// Named CT windows (centre, width).
fn named_window(name: &str) -> Option<(f64, f64)> {
    Some(match name {
        "lung" => (-600.0, 1500.0),
        "mediastinum" | "soft" => (40.0, 400.0),
        "bone" => (400.0, 1800.0),
        "brain" => (40.0, 80.0),
        "abdomen" => (60.0, 400.0),
        _ => return None,
    })
}

fn window_of(
    p: &ViewParams,
    series: &LoadedSeries,
    img: &Image,
) -> Result<(f64, f64), RenderError> {
    if let Some(w) = p.window.as_deref() {
        if let Some(named) = named_window(w) {
            return Ok(named);
        }
        let v: Vec<f64> = w
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                RenderError::BadRequest(format!(
                    "window {w:?}: center,width or lung, mediastinum, bone, brain, abdomen"
                ))
            })?;
        return match v[..] {
            [c, wd] if c.is_finite() && wd.is_finite() && wd >= 1.0 => Ok((c, wd)),
            _ => Err(RenderError::BadRequest(format!(
                "window {w:?}: a finite centre and a width ≥ 1"
            ))),
        };
    }
    let first = |tag| {
        series
            .header
            .get(tag)
            .and_then(|e| e.to_multi_float64().ok())
            .and_then(|v| v.first().copied())
            .filter(|x| x.is_finite())
    };
    if let (Some(c), Some(w)) = (
        first(dicom_dictionary_std::tags::WINDOW_CENTER),
        first(dicom_dictionary_std::tags::WINDOW_WIDTH),
    ) && w >= 1.0
    {
        return Ok((c, w));
    }
    let (lo, hi) = img
        .data
        .iter()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if lo.is_finite() && hi.is_finite() {
        let (lo, hi) = (f64::from(lo), f64::from(hi));
        Ok(((lo + hi) / 2.0, (hi - lo).max(1.0)))
    } else {
        Ok((0.0, 1.0))
    }
}

/// The volume's centre and its extent along `dir` (mm).
fn centre_and_extent(vol: &Volume, dir: [f64; 3]) -> ([f64; 3], f64) {
    let mut centre = vol.origin;
    let mut extent = 0.0;
    for a in 0..3 {
        let len = vol.dims[a].saturating_sub(1) as f64 * vol.spacing[a];
        for (c, axis) in centre.iter_mut().zip(vol.axes[a]) {
            *c += axis * len / 2.0;
        }
        let d = vol.axes[a][0] * dir[0] + vol.axes[a][1] * dir[1] + vol.axes[a][2] * dir[2];
        extent += (d * len).abs();
    }
    (centre, extent)
}

fn min_spacing(vol: &Volume) -> f64 {
    vol.spacing.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The plane a request names: orientation, centre, offset, size and pixel size.
pub fn plane_of(p: &ViewParams, vol: &Volume) -> Result<Plane, RenderError> {
    let pixel = match p.pixel {
        Some(px) => positive("pixel", px, 100.0)?,
        None => min_spacing(vol),
    };
    let kind = p.plane.as_deref().unwrap_or("axial");
    let (u, v) = match kind {
        "axial" => ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        "coronal" => ([1.0, 0.0, 0.0], [0.0, 0.0, -1.0]),
        "sagittal" => ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0]),
        "oblique" => {
            let normal = vec3(
                "normal",
                p.normal.as_deref().ok_or_else(|| {
                    RenderError::BadRequest("an oblique plane needs normal=x,y,z".into())
                })?,
            )?;
            let up = match p.up.as_deref() {
                Some(s) => vec3("up", s)?,
                None => [0.0, 0.0, 1.0],
            };
            let probe = Plane::oblique([0.0; 3], normal, up, [1, 1], 1.0)
                .or_else(|_| Plane::oblique([0.0; 3], normal, [0.0, 1.0, 0.0], [1, 1], 1.0))
                .map_err(|e| RenderError::BadRequest(format!("oblique plane: {e}")))?;
            (probe.u, probe.v)
        }
        other => {
            return Err(RenderError::BadRequest(format!(
                "unknown plane {other:?}: axial, sagittal, coronal or oblique"
            )));
        }
    };
    let (vol_centre, ext_u) = centre_and_extent(vol, u);
    let (_, ext_v) = centre_and_extent(vol, v);
    let mut centre = match p.center.as_deref() {
        Some(s) => vec3("center", s)?,
        None => vol_centre,
    };
    let n = [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ];
    if let Some(pos) = p.position {
        if !pos.is_finite() {
            return Err(RenderError::BadRequest("position must be finite".into()));
        }
        for c in 0..3 {
            centre[c] += n[c] * pos;
        }
    }
    let default = [
        (ext_u / pixel).round() as usize + 1,
        (ext_v / pixel).round() as usize + 1,
    ];
    let [w, h] = size_of(p, default)?;
    Ok(Plane {
        origin: centre,
        u,
        v,
        width: w,
        height: h,
        pixel_mm: pixel,
    })
}

fn transfer_function(name: &str, vol: &Volume) -> Result<TransferFunction, RenderError> {
    Ok(match name {
        "bone" => TransferFunction::ct_bone(),
        "soft" | "soft-tissue" => TransferFunction::ct_soft_tissue(),
        "lung" => TransferFunction::ct_lung(),
        "angio" => TransferFunction::ct_angio(),
        "mip" => {
            // the modality's range: HU for CT, the stored range otherwise
            let (lo, hi) = value_range(vol);
            TransferFunction::mip(lo, hi).map_err(|e| RenderError::BadRequest(e.to_string()))?
        }
        other => {
            return Err(RenderError::BadRequest(format!(
                "unknown preset {other:?}: bone, soft, lung, angio or mip"
            )));
        }
    })
}

fn value_range(vol: &Volume) -> (f64, f64) {
    let n = vol.voxels.len();
    let step = (n / 100_000).max(1);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in (0..n).step_by(step) {
        let x = f64::from(vol.voxels.stored(i)) * vol.slope + vol.intercept;
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

/// The camera of a volume rendering: around the volume's centre, from the front at azimuth
/// and elevation 0, head up.
pub fn camera_of(p: &ViewParams, vol: &Volume) -> Result<Camera, RenderError> {
    let az = p.azimuth.unwrap_or(0.0).to_radians();
    let el = p.elevation.unwrap_or(0.0).to_radians();
    if !(az.is_finite() && el.is_finite()) || el.abs() >= std::f64::consts::FRAC_PI_2 {
        return Err(RenderError::BadRequest(
            "azimuth must be finite and elevation within (-90, 90) degrees".into(),
        ));
    }
    let zoom = match p.zoom {
        Some(z) => positive("zoom", z, 100.0)?,
        None => 1.0,
    };
    // from the front (anterior, −y in LPS) looking posterior; azimuth turns about +z
    let dir = [-az.sin() * el.cos(), az.cos() * el.cos(), -el.sin()];
    let (centre, _) = centre_and_extent(vol, [1.0, 0.0, 0.0]);
    let diag = (0..3)
        .map(|a| {
            let l = vol.dims[a].saturating_sub(1) as f64 * vol.spacing[a];
            l * l
        })
        .sum::<f64>()
        .sqrt()
        .max(1.0);
    let up = [0.0, 0.0, 1.0];
    let eye = [
        centre[0] - dir[0] * diag * 1.5,
        centre[1] - dir[1] * diag * 1.5,
        centre[2] - dir[2] * diag * 1.5,
    ];
    match p.projection.as_deref().unwrap_or("orthographic") {
        "orthographic" => Ok(Camera::Orthographic {
            eye,
            target: centre,
            up,
            view_width_mm: diag / zoom,
        }),
        "perspective" => Ok(Camera::Perspective {
            eye,
            target: centre,
            up,
            fov_y_deg: (2.0 * (0.5 / 1.5f64).atan().to_degrees() / zoom).clamp(1.0, 120.0),
        }),
        other => Err(RenderError::BadRequest(format!(
            "unknown projection {other:?}: orthographic or perspective"
        ))),
    }
}

fn path_of(s: &str) -> Result<Vec<[f64; 3]>, RenderError> {
    let pts: Vec<[f64; 3]> = s
        .split(';')
        .filter(|x| !x.trim().is_empty())
        .map(|x| vec3("points", x))
        .collect::<Result<_, _>>()?;
    if pts.len() < 2 || pts.len() > 1000 {
        return Err(RenderError::BadRequest(
            "points: between 2 and 1000 points x,y,z;x,y,z;…".into(),
        ));
    }
    Ok(pts)
}

/// Draw `mode` of `series` as `p` describes.
pub fn draw(series: &LoadedSeries, mode: Mode, p: &ViewParams) -> Result<Picture, RenderError> {
    let phase = series.phase(p.phase.unwrap_or(0))?;
    let vol = &phase.volume;
    let bad = |e: mpr::MprError| RenderError::BadRequest(e.to_string());
    let grey = |image: Image, plane: Option<Plane>| -> Result<Picture, RenderError> {
        let window = window_of(p, series, &image)?;
        Ok(Picture::Grey {
            image,
            window,
            plane,
        })
    };
    match mode {
        Mode::Mpr => {
            let plane = plane_of(p, vol)?;
            grey(mpr::reslice(vol, &plane).map_err(bad)?, Some(plane))
        }
        Mode::Slab => {
            let plane = plane_of(p, vol)?;
            let thickness = positive("thickness", p.thickness.unwrap_or(10.0), 500.0)?;
            let how = match p.slab.as_deref().unwrap_or("mip") {
                "mip" => SlabMode::Mip,
                "minip" => SlabMode::MinIp,
                "average" | "avg" => SlabMode::Average,
                other => {
                    return Err(RenderError::BadRequest(format!(
                        "unknown slab {other:?}: mip, minip or average"
                    )));
                }
            };
            grey(
                mpr::slab(vol, &plane, thickness, how).map_err(bad)?,
                Some(plane),
            )
        }
        Mode::Curved => {
            let path = path_of(p.points.as_deref().ok_or_else(|| {
                RenderError::BadRequest("a curved reformat needs points=x,y,z;x,y,z;…".into())
            })?)?;
            let up = match p.up.as_deref() {
                Some(s) => vec3("up", s)?,
                None => [0.0, 0.0, 1.0],
            };
            let width = positive("width", p.width.unwrap_or(60.0), 1000.0)?;
            let pixel = match p.pixel {
                Some(px) => positive("pixel", px, 100.0)?,
                None => min_spacing(vol),
            };
            let img = mpr::curved(vol, &path, up, width, pixel).map_err(bad)?;
            if img.width > 4 * MAX_SIDE || img.height > MAX_SIDE {
                return Err(RenderError::BadRequest(
                    "the curved reformat would be too large: use a larger pixel".into(),
                ));
            }
            grey(img, None)
        }
        Mode::Fusion => Err(RenderError::BadRequest(
            "fusion needs overlay=<series UID> of the same study".into(),
        )),
        Mode::Vr => {
            let [w, h] = size_of(p, [512, 512])?;
            let tf = transfer_function(p.preset.as_deref().unwrap_or("bone"), vol)?;
            let camera = camera_of(p, vol)?;
            let renderer =
                vr::Renderer::with_grid(vol, phase.grid()?, &tf, vr::RenderOptions::default())
                    .map_err(|e| RenderError::NotAVolume(e.to_string()))?;
            let img = renderer
                .render(&camera, w, h)
                .map_err(|e| RenderError::BadRequest(e.to_string()))?;
            Ok(Picture::Colour(img))
        }
    }
}

/// A plane of `base` with the same plane of `overlay` (placed by `aligned`) over it in
/// colour: PET/CT or MR/CT fusion.
pub fn draw_fused(
    base: &LoadedSeries,
    overlay: &LoadedSeries,
    aligned: &Aligned,
    p: &ViewParams,
) -> Result<Picture, RenderError> {
    let vol = &base.phase(p.phase.unwrap_or(0))?.volume;
    let ovol = &overlay.phase(0)?.volume;
    let plane = plane_of(p, vol)?;
    let t = &aligned.transform;
    let o = t.apply([0.0; 3]);
    let turn = |d: [f64; 3]| {
        let e = t.apply(d);
        [e[0] - o[0], e[1] - o[1], e[2] - o[2]]
    };
    let moved = Plane {
        origin: t.apply(plane.origin),
        u: turn(plane.u),
        v: turn(plane.v),
        ..plane
    };
    let bad = |e: mpr::MprError| RenderError::BadRequest(e.to_string());
    let base_img = mpr::reslice(vol, &plane).map_err(bad)?;
    let over = mpr::reslice(ovol, &moved).map_err(bad)?;
    let window = window_of(p, base, &base_img)?;
    let range = match p.overlay_range.as_deref() {
        Some(r) => {
            let v: Vec<f64> = r
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| RenderError::BadRequest(format!("overlay_range {r:?}: lo,hi")))?;
            match v[..] {
                [lo, hi] if lo.is_finite() && hi.is_finite() && hi > lo => (lo, hi),
                _ => {
                    return Err(RenderError::BadRequest(format!(
                        "overlay_range {r:?}: two finite numbers lo < hi"
                    )));
                }
            }
        }
        None => {
            // the overlay's range, its lowest tenth transparent (background, no uptake)
            let (lo, hi) = value_range(ovol);
            (lo + (hi - lo) * 0.1, hi)
        }
    };
    let cmap = match p.colormap.as_deref().unwrap_or("hot") {
        "hot" => ColorMap::Hot,
        "pet" => ColorMap::Pet,
        "rainbow" => ColorMap::Rainbow,
        "grayscale" | "gray" | "grey" => ColorMap::Grayscale,
        other => {
            return Err(RenderError::BadRequest(format!(
                "unknown colormap {other:?}: hot, pet, rainbow or grayscale"
            )));
        }
    };
    let img = fusion::fuse(
        &base_img,
        &over,
        window,
        range,
        cmap,
        p.opacity.unwrap_or(0.5),
    )
    .map_err(|e| RenderError::BadRequest(e.to_string()))?;
    Ok(Picture::Colour(img))
}

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
    let curve: Vec<TimePoint> = series
        .phases
        .iter()
        .map(|ph| {
            let s = radris_imaging::quant::mask_stats(&ph.volume, &mask)
                .map_err(|e| RenderError::BadRequest(e.to_string()))?;
            Ok(TimePoint {
                time_s: ph.time_s,
                mean: s.mean,
                sd: s.sd,
                min: s.min,
                max: s.max,
                count: s.count,
            })
        })
        .collect::<Result<_, RenderError>>()?;
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

/// The pictures of a derived series: `count` planes stepped `step_mm` along the normal
/// (centred on the requested plane), or `count` renderings turned `azimuth_step` degrees.
pub fn derived_pictures(
    series: &LoadedSeries,
    mode: Mode,
    p: &ViewParams,
    count: usize,
    step_mm: Option<f64>,
    azimuth_step: Option<f64>,
) -> Result<Vec<Picture>, RenderError> {
    if count == 1 {
        return Ok(vec![draw(series, mode, p)?]);
    }
    match mode {
        Mode::Mpr | Mode::Slab => {
            let vol = &series.phase(p.phase.unwrap_or(0))?.volume;
            let step = match step_mm {
                Some(s) => positive("step_mm", s, 500.0)?,
                None if mode == Mode::Slab => p.thickness.unwrap_or(10.0),
                None => p.pixel.unwrap_or_else(|| min_spacing(vol)),
            };
            let base = p.position.unwrap_or(0.0);
            let half = (count as f64 - 1.0) / 2.0;
            (0..count)
                .map(|i| {
                    let q = ViewParams {
                        position: Some(base + (i as f64 - half) * step),
                        ..p.clone()
                    };
                    draw(series, mode, &q)
                })
                .collect()
        }
        Mode::Vr => {
            let step = azimuth_step.unwrap_or(360.0 / count as f64);
            if !step.is_finite() {
                return Err(RenderError::BadRequest(
                    "azimuth_step must be finite".into(),
                ));
            }
            let base = p.azimuth.unwrap_or(0.0);
            (0..count)
                .map(|i| {
                    let q = ViewParams {
                        azimuth: Some(base + i as f64 * step),
                        ..p.clone()
                    };
                    draw(series, mode, &q)
                })
                .collect()
        }
        Mode::Curved | Mode::Fusion => Err(RenderError::BadRequest(
            "curved reformats and fused views are saved one picture at a time (count 1)".into(),
        )),
    }
}

/// Series Description of a derived series when the request names none.
pub fn default_description(mode: Mode, p: &ViewParams) -> String {
    let plane = p.plane.as_deref().unwrap_or("axial");
    match mode {
        Mode::Mpr => format!("MPR {plane}"),
        Mode::Slab => format!(
            "{} {plane} {} mm",
            p.slab.as_deref().unwrap_or("mip").to_uppercase(),
            p.thickness.unwrap_or(10.0)
        ),
        Mode::Curved => "Curved reformat".into(),
        Mode::Vr => format!("3D {}", p.preset.as_deref().unwrap_or("bone")),
        Mode::Fusion => format!("Fusion {plane}"),
    }
    .chars()
    .take(64)
    .collect()
}

/// Derivation Description: how the pictures were made, in words (at most 1024 characters).
pub fn derivation_text(mode: Mode, p: &ViewParams, count: usize, step_mm: Option<f64>) -> String {
    let mut t = match mode {
        Mode::Mpr => format!(
            "RADRIS trilinear reformat, plane {}",
            p.plane.as_deref().unwrap_or("axial")
        ),
        Mode::Slab => format!(
            "RADRIS slab {} thickness {} mm, plane {}",
            p.slab.as_deref().unwrap_or("mip"),
            p.thickness.unwrap_or(10.0),
            p.plane.as_deref().unwrap_or("axial")
        ),
        Mode::Curved => format!(
            "RADRIS curved planar reformat along {}, width {} mm",
            p.points.as_deref().unwrap_or(""),
            p.width.unwrap_or(60.0)
        ),
        Mode::Fusion => format!(
            "RADRIS fusion of series {} over this series, plane {}, opacity {}",
            p.overlay.as_deref().unwrap_or(""),
            p.plane.as_deref().unwrap_or("axial"),
            p.opacity.unwrap_or(0.5)
        ),
        Mode::Vr => format!(
            "RADRIS volume rendering, preset {}, azimuth {} elevation {}",
            p.preset.as_deref().unwrap_or("bone"),
            p.azimuth.unwrap_or(0.0),
            p.elevation.unwrap_or(0.0)
        ),
    };
    if count > 1 {
        t.push_str(&format!(
            "; {count} pictures{}",
            step_mm
                .map(|s| format!(" {s} mm apart"))
                .unwrap_or_default()
        ));
    }
    t.chars().take(1024).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cube() -> Volume {
        Volume::from_fn(
            [20, 30, 10],
            [1.0, 0.5, 2.0],
            [-10.0, -7.5, 100.0],
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            |p| p[2] as f32,
        )
    }

    #[test]
    fn default_planes_cover_the_volume() {
        let v = cube();
        let p = plane_of(&ViewParams::default(), &v).expect("axial");
        assert_eq!((p.width, p.height), (39, 30));
        assert!((p.origin[2] - 109.0).abs() < 1e-9);
        let q = ViewParams {
            plane: Some("coronal".into()),
            position: Some(2.0),
            ..Default::default()
        };
        let c = plane_of(&q, &v).expect("coronal");
        assert_eq!((c.width, c.height), (39, 37));
        // the coronal normal is +y: the centre (y = −0.25) moved 2 mm
        assert!((c.origin[1] - 1.75).abs() < 1e-9, "{:?}", c.origin);
    }

    #[test]
    fn bad_parameters_are_refused_with_the_reason() {
        let v = cube();
        for (q, needle) in [
            (
                ViewParams {
                    plane: Some("diagonal".into()),
                    ..Default::default()
                },
                "unknown plane",
            ),
            (
                ViewParams {
                    plane: Some("oblique".into()),
                    ..Default::default()
                },
                "normal",
            ),
            (
                ViewParams {
                    size: Some("0,5".into()),
                    ..Default::default()
                },
                "size",
            ),
            (
                ViewParams {
                    center: Some("1,2".into()),
                    ..Default::default()
                },
                "center",
            ),
            (
                ViewParams {
                    pixel: Some(-1.0),
                    ..Default::default()
                },
                "pixel",
            ),
        ] {
            match plane_of(&q, &v) {
                Err(RenderError::BadRequest(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("expected a refusal naming {needle}, got {:?}", other.ok()),
            }
        }
        let cam = ViewParams {
            elevation: Some(95.0),
            ..Default::default()
        };
        assert!(matches!(
            camera_of(&cam, &v),
            Err(RenderError::BadRequest(_))
        ));
    }

    #[test]
    fn named_and_numeric_windows() {
        assert_eq!(named_window("lung"), Some((-600.0, 1500.0)));
        assert_eq!(named_window("nope"), None);
    }
}
