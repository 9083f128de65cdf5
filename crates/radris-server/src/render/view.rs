//! What a request asks to see (plane, slab, curved path, camera, window, fusion) and the
//! picture drawn from a loaded series.

use radris_dicom::pixel::{self, Image8, ImageFormat};
use radris_imaging::fusion::{self, ColorMap};
use radris_imaging::mpr::{self, Image, Plane, SlabMode};
use radris_imaging::render::{self as vr, Camera, RgbaImage, TransferFunction};
use radris_imaging::volume::Volume;
use serde::{Deserialize, Serialize};

use super::{Aligned, LoadedSeries, MAX_SIDE, RenderError};

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

pub(super) fn vec3(name: &str, s: &str) -> Result<[f64; 3], RenderError> {
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

pub(super) fn positive(name: &str, v: f64, max: f64) -> Result<f64, RenderError> {
    if v.is_finite() && v > 0.0 && v <= max {
        Ok(v)
    } else {
        Err(RenderError::BadRequest(format!(
            "{name} must be a number in (0, {max}]"
        )))
    }
}

pub(super) fn size_of(p: &ViewParams, default: [usize; 2]) -> Result<[usize; 2], RenderError> {
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
pub(super) fn named_window(name: &str) -> Option<(f64, f64)> {
    Some(match name {
        "lung" => (-600.0, 1500.0),
        "mediastinum" | "soft" => (40.0, 400.0),
        "bone" => (400.0, 1800.0),
        "brain" => (40.0, 80.0),
        "abdomen" => (60.0, 400.0),
        _ => return None,
    })
}

pub(super) fn window_of(
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
pub(super) fn centre_and_extent(vol: &Volume, dir: [f64; 3]) -> ([f64; 3], f64) {
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

pub(super) fn min_spacing(vol: &Volume) -> f64 {
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

pub(super) fn transfer_function(name: &str, vol: &Volume) -> Result<TransferFunction, RenderError> {
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

pub(super) fn value_range(vol: &Volume) -> (f64, f64) {
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

pub(super) fn path_of(s: &str) -> Result<Vec<[f64; 3]>, RenderError> {
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
