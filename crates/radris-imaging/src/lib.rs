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

pub mod dicom;
pub mod mpr;
pub mod quant;
pub mod render;
pub mod volume;
