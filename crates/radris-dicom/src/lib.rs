//! DICOM objects for RADRIS, on dicom-rs.
//!
//! * [`attrs`]: the attributes the index keeps, extracted from a parsed header, and the
//!   header as DICOM JSON without bulk data.
//! * [`deid`]: de-identification by the PS3.15 Annex E Basic Application Level
//!   Confidentiality Profile (consistent UID remapping, date shifting, burned-in regions).
//! * [`part10`]: Part-10 framing: the file meta group we write in front of a data set received
//!   over the network, and where a stored file's data set starts (so it is sent back
//!   byte-identical).
//! * [`pixel`]: the pixel pipeline: frames as stored, decoded frames, transcoding to Explicit VR
//!   Little Endian or JPEG Baseline, rendering to PNG/JPEG (WADO-RS frames/rendered/thumbnail).
//! * [`query`]: C-FIND/QIDO identifiers parsed into typed matching keys (PS3.4 C.2.2.2).
//! * [`sr`]: radiology reports as DICOM Structured Reports (Comprehensive SR after TID 1500,
//!   Basic Text SR after TID 2000) and their narrative and measurements read back.
//! * [`synth`]: the synthetic study generator behind `radris demo` and `radris generate`.
//!
//! This crate knows nothing about SQL, HTTP or DIMSE.
//!
//! ```
//! use radris_dicom::query::Matcher;
//! use dicom_core::VR;
//! let m = Matcher::parse(VR::PN, "doe*");
//! assert!(m.matches(VR::PN, "DOE^JOHN"));
//! assert!(!m.matches(VR::PN, "SMITH^ANNA"));
//! ```

pub mod attrs;
pub mod deid;
pub mod part10;
pub mod pixel;
pub mod query;
pub mod sr;
pub mod synth;
pub mod wire;
pub mod worklist;

pub use dicom_core::{Tag, VR};
pub use dicom_object::InMemDicomObject;

/// Why a DICOM object was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DicomError {
    #[error("data set could not be parsed: {0}")]
    Parse(String),
    #[error("required attribute {name} ({tag}) is missing or empty")]
    MissingAttribute { name: &'static str, tag: Tag },
    #[error("attribute {name}: {source}")]
    InvalidUid {
        name: &'static str,
        #[source]
        source: radris_core::IdError,
    },
    #[error("unknown or unsupported transfer syntax {0}")]
    TransferSyntax(String),
    #[error("not a DICOM Part-10 file: {0}")]
    NotPart10(String),
    #[error("could not write DICOM: {0}")]
    Write(String),
    #[error(transparent)]
    Pixel(#[from] pixel::PixelError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
