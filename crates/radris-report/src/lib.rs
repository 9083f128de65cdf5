//! Radiology reports.
//!
//! * [`template`]: IHE MRRT-style HTML5 report templates (text, number, choice and date
//!   fields, coded concepts), parsed, validated and rendered; the starter library.
//! * [`lungrads`]: the Lung-RADS category computed from entered nodule findings.
//! * [`pdf`]: the printable PDF of a report.

pub mod lungrads;
pub mod pdf;
pub mod template;
