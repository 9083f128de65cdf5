//! The imaging engine: everything computed from voxels. No IO beyond what callers hand in,
//! no network code.
//!
//! * [`volume`]: a [`volume::Volume`] built from a series' slices (geometry, spacing checks,
//!   gantry tilt, multi-frame), voxels as stored plus the rescale to modality units.
//! * [`dicom`]: DICOM objects to slices (geometry, rescale, decoded pixels, temporal keys);
//!   the only module that reads DICOM.
//! * [`mpr`]: orthogonal, oblique and curved reformats, thick slabs (MIP/MinIP/average).
//! * [`render`]: CPU ray casting with transfer functions and cameras.
//! * [`quant`]: ROI statistics, segmentation volumes, distances, calcium score, bone density.
//! * [`register`]: rigid registration by mutual information, for series without a shared
//!   Frame of Reference (or across modalities).
//! * [`fusion`]: a second series resampled into the first's grid and blended over it with a
//!   colour map and opacity.
//! * [`temporal`]: 4D — frames grouped into phases (temporal position, trigger time,
//!   acquisition time), one volume per phase, cine, time-intensity curves.

pub mod dicom;
pub mod fusion;
pub mod mpr;
pub mod quant;
pub mod register;
pub mod render;
pub mod temporal;
pub mod volume;
