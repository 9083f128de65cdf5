//! Radiology reports.
//!
//! * [`template`]: IHE MRRT-style HTML5 report templates (text, number, choice and date
//!   fields, coded concepts), parsed, validated and rendered; the starter library.
//! * [`lungrads`]: the Lung-RADS category computed from entered nodule findings.
//! * [`pdf`]: the printable PDF of a report.
//! * [`model`]: the one report model and its lifecycle (draft → preliminary → final →
//!   amended by addendum).
//! * [`sign`]: canonical JSON, SHA-256 and Ed25519 signatures of signed versions.
//! * [`outputs`]: a signed version as DICOM SR (TID 1500 / Basic Text) and as PDF.
//! * [`demo`]: signed reports of the demo department's studies.
//! * [`peer`]: RADPEER-style peer review and the quality figures.
//! * [`service`]: [`service::Reports`], the reports on the index, tied to the RIS order.

pub mod demo;
pub mod lungrads;
pub mod model;
pub mod outputs;
pub mod pdf;
pub mod peer;
pub mod service;
pub mod sign;
pub mod template;
