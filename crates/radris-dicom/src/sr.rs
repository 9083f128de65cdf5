//! Radiology reports as DICOM Structured Reports (PS3.3 A.35, PS3.16 templates).
//!
//! A plain input model, [`SrReport`], is turned into one of two SR documents:
//!
//! * [`comprehensive_sr`]: Comprehensive SR (`1.2.840.10008.5.1.4.1.1.88.33`) following
//!   TID 1500 "Measurement Report": language (TID 1204), person observer (TID 1002/1003),
//!   procedure reported, an Image Library (TID 1600) of every referenced image, the
//!   measurements as Measurement Groups (TID 1501) of NUM items (TID 300) with their tracking
//!   identifiers, finding site, derivation and source image (or region on an image), and the
//!   narrative sections and coded findings as TEXT and CODE items of the "Qualitative
//!   Evaluations" container.
//! * [`basic_text_sr`]: Basic Text SR (`1.2.840.10008.5.1.4.1.1.88.11`) following TID 2000
//!   "Basic Diagnostic Imaging Report": one CONTAINER per section heading holding the TEXT,
//!   key images under a "Key Images" heading; no NUM items.
//!
//! Both carry the Patient, General Study, SR Document Series (Modality `SR`), General
//! Equipment (Manufacturer `RADRIS`), SR Document General (completion and verification flags,
//! verifying observer, predecessor documents for an amendment, the referenced request, the
//! referenced images as evidence grouped by study and series) and SR Document Content modules.
//! [`to_part10`] frames a document as an Explicit VR Little Endian Part-10 file;
//! [`read_text`] and [`read_measurements`] read the narrative and the numbers back.
//!
//! Every input string is checked against the length and character rules of its VR, so a
//! report either becomes a valid object or is refused with a typed [`SrError`].

use std::sync::atomic::{AtomicU64, Ordering};

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use crate::DicomError;

/// SOP Class UID of Comprehensive SR Storage.
pub const COMPREHENSIVE_SR: &str = uids::COMPREHENSIVE_SR_STORAGE;
/// SOP Class UID of Basic Text SR Storage.
pub const BASIC_TEXT_SR: &str = uids::BASIC_TEXT_SR_STORAGE;
/// Manufacturer (0008,0070) written into every document.
pub const MANUFACTURER: &str = "RADRIS";
/// UID of the DICOM Content Mapping Resource (DCMR).
const DCMR_UID: &str = "1.2.840.10008.8.1.1";

/// Why a report could not be turned into an SR document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrError {
    #[error("{field} is required")]
    Missing { field: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field}: {source}")]
    Uid {
        field: String,
        #[source]
        source: radris_core::IdError,
    },
    #[error("the report has no content: no sections, measurements or coded findings")]
    Empty,
    #[error(transparent)]
    Dicom(#[from] DicomError),
}

fn invalid(field: &str, reason: impl Into<String>) -> SrError {
    SrError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A coded concept: Code Value, Coding Scheme Designator, Code Meaning (PS3.3 8.8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl Code {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        Code {
            value: value.to_owned(),
            scheme: scheme.to_owned(),
            meaning: meaning.to_owned(),
        }
    }

    fn is(&self, value: &str, scheme: &str) -> bool {
        self.value == value && self.scheme == scheme
    }
}

/// Codes for reports: document titles, section headings (CID 7001, LOINC), units (UCUM).
pub mod codes {
    use super::Code;

    /// LOINC 18748-4, the usual document title (CID 7000).
    pub fn diagnostic_imaging_report() -> Code {
        Code::new("18748-4", "LN", "Diagnostic Imaging Report")
    }
    /// DCM 126000, the root of TID 1500.
    pub fn imaging_measurement_report() -> Code {
        Code::new("126000", "DCM", "Imaging Measurement Report")
    }
    /// Section heading "Findings" (CID 7001).
    pub fn findings() -> Code {
        Code::new("59776-5", "LN", "Findings")
    }
    /// Section heading "Impressions" (CID 7001).
    pub fn impressions() -> Code {
        Code::new("19005-8", "LN", "Impressions")
    }
    /// Section heading "History" (CID 7001).
    pub fn history() -> Code {
        Code::new("11329-0", "LN", "History")
    }
    /// Section heading "Request" (CID 7001).
    pub fn request() -> Code {
        Code::new("55115-0", "LN", "Request")
    }
    /// Section heading "Indications for Procedure" (CID 7001).
    pub fn indications() -> Code {
        Code::new("18785-6", "LN", "Indications for Procedure")
    }
    /// Section heading "Current Procedure Descriptions" (CID 7001).
    pub fn procedure_descriptions() -> Code {
        Code::new("55111-9", "LN", "Current Procedure Descriptions")
    }
    /// Section heading "Conclusions" (CID 7001).
    pub fn conclusions() -> Code {
        Code::new("55110-1", "LN", "Conclusions")
    }
    /// Section heading "Recommendations" (CID 7001).
    pub fn recommendations() -> Code {
        Code::new("18783-1", "LN", "Recommendations")
    }
    /// Section heading "Addendum" (CID 7001).
    pub fn addendum() -> Code {
        Code::new("55107-7", "LN", "Addendum")
    }
    /// Section heading "Key Images" (CID 7001).
    pub fn key_images() -> Code {
        Code::new("55113-5", "LN", "Key Images")
    }
    /// RFC 5646 English (United States), the default language of content.
    pub fn english_us() -> Code {
        Code::new("en-US", "RFC5646", "English (United States)")
    }
    /// SNOMED CT "Imaging procedure" (CID 100), the default procedure reported.
    pub fn imaging_procedure() -> Code {
        Code::new("363679005", "SCT", "Imaging procedure")
    }
    /// SNOMED CT "Long axis".
    pub fn long_axis() -> Code {
        Code::new("103339001", "SCT", "Long axis")
    }
    /// SNOMED CT "Short axis".
    pub fn short_axis() -> Code {
        Code::new("103340004", "SCT", "Short axis")
    }
    /// SNOMED CT "Diameter".
    pub fn diameter() -> Code {
        Code::new("81827009", "SCT", "Diameter")
    }
    /// A UCUM unit whose meaning is its code (`mm`, `cm2`, `[hnsf'U]`, ...).
    pub fn ucum(unit: &str) -> Code {
        Code::new(unit, "UCUM", unit)
    }
    /// UCUM millimetre.
    pub fn millimeter() -> Code {
        Code::new("mm", "UCUM", "millimeter")
    }
}

/// The study the report is about: Patient and General Study module values. Dates are DA
/// (`YYYYMMDD`), times TM (`HHMMSS[.ffffff]`), names PN (`Family^Given`); everything but
/// `study_uid` may be empty (Type 2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyRef {
    pub study_uid: String,
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    /// `M`, `F`, `O` or empty.
    pub sex: String,
    pub accession: String,
    pub study_date: String,
    pub study_time: String,
    pub referring_physician: String,
    pub study_id: String,
    pub study_description: String,
}

/// The author: the person observer of the content (TID 1003).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// PN, e.g. `Reader^Rosa`.
    pub name: String,
    pub organization: Option<String>,
}

/// Who verified (signed) the report: one Verifying Observer Sequence item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// PN.
    pub verifying_observer_name: String,
    /// LO, at most 64 characters.
    pub organization: String,
    /// DT, e.g. `20260912101500` or `20260912101500+0100`.
    pub datetime: String,
}

/// One narrative section: heading (e.g. [`codes::findings`]) and its free text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub heading: Code,
    pub text: String,
}

/// A referenced image (or one frame of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRef {
    /// The image's study; `None` means the report's study.
    pub study_uid: Option<String>,
    pub series_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// 1-based frame number of a multi-frame image.
    pub frame: Option<u32>,
}

/// The shape of a region drawn on an image (Graphic Type of a SCOORD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GraphicType {
    #[default]
    Point,
    Multipoint,
    Polyline,
    Circle,
    Ellipse,
}

impl GraphicType {
    fn as_str(self) -> &'static str {
        match self {
            GraphicType::Point => "POINT",
            GraphicType::Multipoint => "MULTIPOINT",
            GraphicType::Polyline => "POLYLINE",
            GraphicType::Circle => "CIRCLE",
            GraphicType::Ellipse => "ELLIPSE",
        }
    }
}

/// A region on the measurement's image, in image pixel coordinates (column, row), as
/// PS3.3 C.18.6 defines them for each graphic type (a line: two points; a circle: centre and
/// a point on the perimeter; an ellipse: the two end points of each axis).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Region {
    pub graphic_type: GraphicType,
    pub points: Vec<(f32, f32)>,
}

/// One numeric measurement (TID 300) in a measurement group (TID 1501).
///
/// Measurements with the same `tracking_uid` (or, without one, the same `tracking_id`) go into
/// one Measurement Group; the others each get their own, with a tracking identifier and UID
/// made up when not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    /// What was measured, e.g. [`codes::long_axis`].
    pub name: Code,
    pub value: f64,
    /// UCUM unit, e.g. [`codes::millimeter`].
    pub unit: Code,
    pub finding_site: Option<Code>,
    pub tracking_id: Option<String>,
    pub tracking_uid: Option<String>,
    /// The image the measurement was made on ("Source of Measurement").
    pub image: Option<ImageRef>,
    /// Where on `image` (requires `image`).
    pub region: Option<Region>,
    /// How the value was derived (CID 7464, e.g. SCT 255605001 "Minimum").
    pub derivation: Option<Code>,
}

/// The report an amended report replaces (Predecessor Documents Sequence).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Predecessor {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
}

/// A radiology report, ready to be written as an SR document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SrReport {
    pub study: StudyRef,
    /// A new `2.25` UID when `None`.
    pub series_uid: Option<String>,
    /// A new `2.25` UID when `None`.
    pub sop_instance_uid: Option<String>,
    pub series_number: u32,
    pub instance_number: u32,
    /// Content Date (DA) of the report.
    pub content_date: String,
    /// Content Time (TM) of the report.
    pub content_time: String,
    /// Document title of the Basic Text SR, e.g. [`codes::diagnostic_imaging_report`]
    /// (the Comprehensive SR's title is TID 1500's "Imaging Measurement Report").
    pub title: Code,
    /// Language of the content (TID 1204); English (United States) when `None`.
    pub language: Option<Code>,
    /// Procedure reported (TID 1500, CID 100); [`codes::imaging_procedure`] when `None`.
    pub procedure: Option<Code>,
    pub author: Person,
    /// `Some`: Verification Flag VERIFIED with this observer; `None`: UNVERIFIED.
    pub verified: Option<Verification>,
    /// Completion Flag COMPLETE (true) or PARTIAL.
    pub complete: bool,
    pub sections: Vec<Section>,
    pub measurements: Vec<Measurement>,
    /// (concept, value) pairs, e.g. (Finding, Pulmonary nodule).
    pub coded_findings: Vec<(Code, Code)>,
    pub key_images: Vec<ImageRef>,
    /// The report this one amends.
    pub predecessor: Option<Predecessor>,
}

// ---------------------------------------------------------------------------------------------
// input checks

fn check_chars(field: &str, value: &str, allow_backslash: bool) -> Result<(), SrError> {
    if let Some(c) = value
        .chars()
        .find(|&c| (c.is_control() && c != '\u{1b}') || (!allow_backslash && c == '\\'))
    {
        return Err(invalid(field, format!("character {c:?} is not allowed")));
    }
    Ok(())
}

/// A single-line string of at most `max` characters (LO 64, SH 16, ...); may be empty.
fn check_line(field: &str, value: &str, max: usize) -> Result<(), SrError> {
    if value.chars().count() > max {
        return Err(invalid(field, format!("longer than {max} characters")));
    }
    check_chars(field, value, false)
}

fn check_required_line(field: &str, value: &str, max: usize) -> Result<(), SrError> {
    if value.trim().is_empty() {
        return Err(SrError::Missing {
            field: field.to_owned(),
        });
    }
    check_line(field, value, max)
}

/// A person name (PN): up to three component groups of at most 64 characters, each with at
/// most five `^`-separated components.
fn check_pn(field: &str, value: &str) -> Result<(), SrError> {
    check_chars(field, value, false)?;
    let groups: Vec<&str> = value.split('=').collect();
    if groups.len() > 3 {
        return Err(invalid(field, "more than three component groups"));
    }
    for g in groups {
        if g.chars().count() > 64 {
            return Err(invalid(
                field,
                "a component group is longer than 64 characters",
            ));
        }
        if g.split('^').count() > 5 {
            return Err(invalid(field, "more than five components"));
        }
    }
    Ok(())
}

fn check_uid(field: &str, value: &str) -> Result<String, SrError> {
    radris_core::Uid::parse(value)
        .map(|u| u.as_str().to_owned())
        .map_err(|source| SrError::Uid {
            field: field.to_owned(),
            source,
        })
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// DA: `YYYYMMDD`.
fn check_da(field: &str, value: &str, required: bool) -> Result<(), SrError> {
    if value.is_empty() && !required {
        return Ok(());
    }
    let ok = value.len() == 8 && all_digits(value) && {
        let m: u32 = value[4..6].parse().unwrap_or(0);
        let d: u32 = value[6..8].parse().unwrap_or(0);
        (1..=12).contains(&m) && (1..=31).contains(&d)
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format!("{value:?} is not a date YYYYMMDD")))
    }
}

/// TM: `HH[MM[SS[.F{1,6}]]]`.
fn check_tm(field: &str, value: &str, required: bool) -> Result<(), SrError> {
    if value.is_empty() && !required {
        return Ok(());
    }
    let (hms, frac) = match value.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (value, None),
    };
    let ok = matches!(hms.len(), 2 | 4 | 6)
        && all_digits(hms)
        && hms[..2].parse::<u32>().is_ok_and(|h| h < 24)
        && (hms.len() < 4 || hms[2..4].parse::<u32>().is_ok_and(|m| m < 60))
        && (hms.len() < 6 || hms[4..6].parse::<u32>().is_ok_and(|s| s < 61))
        && frac.is_none_or(|f| hms.len() == 6 && (1..=6).contains(&f.len()) && all_digits(f));
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format!("{value:?} is not a time HHMMSS")))
    }
}

/// DT: `YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]`.
fn check_dt(field: &str, value: &str) -> Result<(), SrError> {
    let bad = || {
        invalid(
            field,
            format!("{value:?} is not a date-time YYYYMMDDHHMMSS"),
        )
    };
    let (main, zone) = match value.find(['+', '-']) {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    if zone.is_some_and(|z| z.len() != 4 || !all_digits(z)) {
        return Err(bad());
    }
    let (digits, frac) = match main.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (main, None),
    };
    if !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) || !all_digits(digits) {
        return Err(bad());
    }
    if frac.is_some_and(|f| digits.len() != 14 || !(1..=6).contains(&f.len()) || !all_digits(f)) {
        return Err(bad());
    }
    if digits.len() >= 8 {
        check_da(field, &digits[..8], true).map_err(|_| bad())?;
    }
    if digits.len() >= 10 {
        check_tm(field, &digits[8..], true).map_err(|_| bad())?;
    }
    Ok(())
}

fn check_code(field: &str, c: &Code) -> Result<(), SrError> {
    if c.value.trim().is_empty() {
        return Err(SrError::Missing {
            field: format!("{field}.value"),
        });
    }
    check_chars(&format!("{field}.value"), &c.value, false)?;
    check_required_line(&format!("{field}.scheme"), &c.scheme, 16)?;
    check_required_line(&format!("{field}.meaning"), &c.meaning, 64)
}

fn check_text(field: &str, value: &str) -> Result<(), SrError> {
    if value.trim().is_empty() {
        return Err(SrError::Missing {
            field: field.to_owned(),
        });
    }
    if value.contains('\0') {
        return Err(invalid(field, "contains a NUL character"));
    }
    Ok(())
}

fn check_image(field: &str, img: &ImageRef) -> Result<(), SrError> {
    if let Some(s) = &img.study_uid {
        check_uid(&format!("{field}.study_uid"), s)?;
    }
    check_uid(&format!("{field}.series_uid"), &img.series_uid)?;
    check_uid(&format!("{field}.sop_class_uid"), &img.sop_class_uid)?;
    check_uid(&format!("{field}.sop_instance_uid"), &img.sop_instance_uid)?;
    match img.frame {
        Some(0) => Err(invalid(
            &format!("{field}.frame"),
            "frame numbers start at 1",
        )),
        Some(f) if f > 1 && SINGLE_FRAME_CLASSES.contains(&img.sop_class_uid.as_str()) => {
            Err(invalid(
                &format!("{field}.frame"),
                format!(
                    "{} is a single-frame SOP class: reference the image without a frame",
                    img.sop_class_uid
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The reference as written: frame 1 of a single-frame image is the image itself, referenced
/// without a frame number.
fn normalized(img: &ImageRef) -> ImageRef {
    let mut img = img.clone();
    if SINGLE_FRAME_CLASSES.contains(&img.sop_class_uid.as_str()) {
        img.frame = None;
    }
    img
}

/// Image SOP classes that cannot hold more than one frame: a Referenced Frame Number is not
/// allowed in references to them (PS3.3 C.17.3.2.1).
const SINGLE_FRAME_CLASSES: &[&str] = &[
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DIGITAL_INTRA_ORAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_INTRA_ORAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::CT_IMAGE_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::ULTRASOUND_IMAGE_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
];

fn check_region(field: &str, region: &Region) -> Result<Vec<f32>, SrError> {
    let n = region.points.len();
    let ok = match region.graphic_type {
        GraphicType::Point => n == 1,
        GraphicType::Multipoint => n >= 1,
        GraphicType::Polyline => n >= 2,
        GraphicType::Circle => n == 2,
        GraphicType::Ellipse => n == 4,
    };
    if !ok {
        return Err(invalid(
            field,
            format!(
                "{} points do not make a {}",
                n,
                region.graphic_type.as_str()
            ),
        ));
    }
    let mut data = Vec::with_capacity(n * 2);
    for &(c, r) in &region.points {
        if !c.is_finite() || !r.is_finite() {
            return Err(invalid(field, "coordinates must be finite"));
        }
        data.push(c);
        data.push(r);
    }
    Ok(data)
}

/// The checks shared by both kinds of document.
fn check_report(r: &SrReport) -> Result<(), SrError> {
    let s = &r.study;
    check_uid("study.study_uid", &s.study_uid)?;
    check_line("study.patient_id", &s.patient_id, 64)?;
    check_pn("study.patient_name", &s.patient_name)?;
    check_da("study.birth_date", &s.birth_date, false)?;
    if !matches!(s.sex.as_str(), "" | "M" | "F" | "O") {
        return Err(invalid("study.sex", "must be M, F, O or empty"));
    }
    check_line("study.accession", &s.accession, 16)?;
    check_da("study.study_date", &s.study_date, false)?;
    check_tm("study.study_time", &s.study_time, false)?;
    check_pn("study.referring_physician", &s.referring_physician)?;
    check_line("study.study_id", &s.study_id, 16)?;
    check_line("study.study_description", &s.study_description, 64)?;
    if let Some(u) = &r.series_uid {
        check_uid("series_uid", u)?;
    }
    if let Some(u) = &r.sop_instance_uid {
        check_uid("sop_instance_uid", u)?;
    }
    check_da("content_date", &r.content_date, true)?;
    check_tm("content_time", &r.content_time, true)?;
    if let Some(l) = &r.language {
        check_code("language", l)?;
    }
    if r.author.name.trim().is_empty() {
        return Err(SrError::Missing {
            field: "author.name".into(),
        });
    }
    check_pn("author.name", &r.author.name)?;
    if let Some(o) = &r.author.organization {
        check_text("author.organization", o)?;
    }
    if let Some(v) = &r.verified {
        if v.verifying_observer_name.trim().is_empty() {
            return Err(SrError::Missing {
                field: "verified.verifying_observer_name".into(),
            });
        }
        check_pn(
            "verified.verifying_observer_name",
            &v.verifying_observer_name,
        )?;
        check_required_line("verified.organization", &v.organization, 64)?;
        check_dt("verified.datetime", &v.datetime)?;
        if !r.complete {
            // PS3.3 C.17.2.1: only a COMPLETE document may be VERIFIED
            return Err(invalid(
                "verified",
                "a PARTIAL (incomplete) report cannot be VERIFIED",
            ));
        }
    }
    for (i, sec) in r.sections.iter().enumerate() {
        check_code(&format!("sections[{i}].heading"), &sec.heading)?;
        check_text(&format!("sections[{i}].text"), &sec.text)?;
    }
    for (i, img) in r.key_images.iter().enumerate() {
        check_image(&format!("key_images[{i}]"), img)?;
    }
    if let Some(p) = &r.predecessor {
        check_uid("predecessor.study_uid", &p.study_uid)?;
        check_uid("predecessor.series_uid", &p.series_uid)?;
        check_uid("predecessor.sop_instance_uid", &p.sop_instance_uid)?;
        check_uid("predecessor.sop_class_uid", &p.sop_class_uid)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// the content tree

#[derive(Debug, Clone)]
enum Content {
    Container {
        template: Option<&'static str>,
    },
    Text(String),
    Code(Code),
    Num {
        value: f64,
        unit: Code,
    },
    PName(String),
    UidRef(String),
    Image(ImageRef),
    Scoord {
        graphic_type: GraphicType,
        data: Vec<f32>,
    },
}

/// A content item and its children, before encoding.
#[derive(Debug, Clone)]
struct Node {
    rel: &'static str,
    concept: Option<Code>,
    content: Content,
    children: Vec<Node>,
}

const CONTAINS: &str = "CONTAINS";
const HAS_OBS_CONTEXT: &str = "HAS OBS CONTEXT";
const HAS_CONCEPT_MOD: &str = "HAS CONCEPT MOD";
const INFERRED_FROM: &str = "INFERRED FROM";
const SELECTED_FROM: &str = "SELECTED FROM";

impl Node {
    fn new(rel: &'static str, concept: Option<Code>, content: Content) -> Self {
        Node {
            rel,
            concept,
            content,
            children: Vec::new(),
        }
    }
    fn container(rel: &'static str, concept: Code, template: Option<&'static str>) -> Self {
        Node::new(rel, Some(concept), Content::Container { template })
    }
    fn code(rel: &'static str, concept: Code, value: Code) -> Self {
        Node::new(rel, Some(concept), Content::Code(value))
    }
    fn text(rel: &'static str, concept: Code, value: &str) -> Self {
        Node::new(rel, Some(concept), Content::Text(value.to_owned()))
    }
    fn with(mut self, children: Vec<Node>) -> Self {
        self.children.extend(children);
        self
    }
}

fn dcm(value: &str, meaning: &str) -> Code {
    Code::new(value, "DCM", meaning)
}

fn put_str(o: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    let v = if value.is_empty() {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    o.put(DataElement::new(tag, vr, v));
}

fn put_seq(o: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    o.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// A Code Sequence item (PS3.3 Table 8.8-1a): values over 16 characters go into Long Code
/// Value, URLs and URNs into URN Code Value.
fn code_item(c: &Code) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    if c.value.chars().count() <= 16 {
        put_str(&mut o, tags::CODE_VALUE, VR::SH, &c.value);
    } else if c.value.starts_with("urn:") || c.value.contains("://") {
        put_str(&mut o, tags::URN_CODE_VALUE, VR::UR, &c.value);
    } else {
        put_str(&mut o, tags::LONG_CODE_VALUE, VR::UC, &c.value);
    }
    put_str(&mut o, tags::CODING_SCHEME_DESIGNATOR, VR::SH, &c.scheme);
    put_str(&mut o, tags::CODE_MEANING, VR::LO, &c.meaning);
    o
}

fn template_item(tid: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put_str(&mut o, tags::MAPPING_RESOURCE, VR::CS, "DCMR");
    put_str(&mut o, tags::MAPPING_RESOURCE_UID, VR::UI, DCMR_UID);
    put_str(&mut o, tags::TEMPLATE_IDENTIFIER, VR::CS, tid);
    o
}

/// Decimal String of at most 16 characters; `true` when it holds `v` exactly.
///
/// The shortest exact form when it fits, else the closest of the fixed-point and the
/// exponent forms that fit (PS3.5 6.2: DS is at most 16 bytes).
fn format_ds(v: f64) -> (String, bool) {
    let plain = format!("{v}");
    if plain.len() <= 16 {
        // Display writes the shortest string that parses back to the same f64
        return (plain, true);
    }
    fn trimmed(mantissa: &str) -> &str {
        if mantissa.contains('.') {
            mantissa.trim_end_matches('0').trim_end_matches('.')
        } else {
            mantissa
        }
    }
    let fits = |s: &String| s.len() <= 16 && s.parse::<f64>().is_ok_and(f64::is_finite);
    let fixed = (0..=17usize)
        .rev()
        .map(|p| trimmed(&format!("{v:.p$}")).to_owned())
        .find(fits);
    // rounding up near f64::MAX must not overflow to infinity: `fits` parses each candidate
    let exponent = (0..=15usize)
        .rev()
        .map(|p| {
            let s = format!("{v:.p$e}");
            match s.split_once('e') {
                Some((m, e)) => format!("{}e{e}", trimmed(m)),
                None => s,
            }
        })
        .find(fits);
    let error = |s: &String| s.parse::<f64>().map_or(f64::INFINITY, |b| (b - v).abs());
    let s = match (fixed, exponent) {
        (Some(f), Some(e)) => {
            if error(&f) <= error(&e) {
                f
            } else {
                e
            }
        }
        (Some(f), None) => f,
        (None, Some(e)) => e,
        (None, None) => format!("{v:.0e}"),
    };
    let exact = s.parse::<f64>().is_ok_and(|back| back == v);
    (s, exact)
}

/// Encode a content item into `o` (the data set itself for the root, which has no
/// relationship type).
fn encode(node: &Node, o: &mut InMemDicomObject, root: bool) {
    if !root {
        put_str(o, tags::RELATIONSHIP_TYPE, VR::CS, node.rel);
    }
    if let Some(c) = &node.concept {
        put_seq(o, tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code_item(c)]);
    }
    let value_type = match &node.content {
        Content::Container { template } => {
            put_str(o, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
            if let Some(tid) = template {
                put_seq(o, tags::CONTENT_TEMPLATE_SEQUENCE, vec![template_item(tid)]);
            }
            "CONTAINER"
        }
        Content::Text(t) => {
            put_str(o, tags::TEXT_VALUE, VR::UT, t);
            "TEXT"
        }
        Content::Code(c) => {
            put_seq(o, tags::CONCEPT_CODE_SEQUENCE, vec![code_item(c)]);
            "CODE"
        }
        Content::Num { value, unit } => {
            let mut mv = InMemDicomObject::new_empty();
            put_seq(
                &mut mv,
                tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
                vec![code_item(unit)],
            );
            let (ds, exact) = format_ds(*value);
            put_str(&mut mv, tags::NUMERIC_VALUE, VR::DS, &ds);
            if !exact {
                mv.put(DataElement::new(
                    tags::FLOATING_POINT_VALUE,
                    VR::FD,
                    dicom_value!(F64, [*value]),
                ));
            }
            put_seq(o, tags::MEASURED_VALUE_SEQUENCE, vec![mv]);
            "NUM"
        }
        Content::PName(p) => {
            put_str(o, tags::PERSON_NAME, VR::PN, p);
            "PNAME"
        }
        Content::UidRef(u) => {
            put_str(o, tags::UID, VR::UI, u);
            "UIDREF"
        }
        Content::Image(img) => {
            let mut r = crate::attrs::sop_reference(&img.sop_class_uid, &img.sop_instance_uid);
            if let Some(f) = img.frame {
                put_str(
                    &mut r,
                    tags::REFERENCED_FRAME_NUMBER,
                    VR::IS,
                    &f.to_string(),
                );
            }
            put_seq(o, tags::REFERENCED_SOP_SEQUENCE, vec![r]);
            "IMAGE"
        }
        Content::Scoord { graphic_type, data } => {
            o.put(DataElement::new(
                tags::GRAPHIC_DATA,
                VR::FL,
                PrimitiveValue::F32(data.iter().copied().collect()),
            ));
            put_str(o, tags::GRAPHIC_TYPE, VR::CS, graphic_type.as_str());
            "SCOORD"
        }
    };
    put_str(o, tags::VALUE_TYPE, VR::CS, value_type);
    if !node.children.is_empty() {
        let items = node
            .children
            .iter()
            .map(|child| {
                let mut item = InMemDicomObject::new_empty();
                encode(child, &mut item, false);
                item
            })
            .collect();
        put_seq(o, tags::CONTENT_SEQUENCE, items);
    }
}

// ---------------------------------------------------------------------------------------------
// building the documents

static UID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh `2.25` UID: a hash of the report's study, the time, the process and a counter.
fn fresh_uid(study_uid: &str, what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = UID_COUNTER.fetch_add(1, Ordering::Relaxed);
    crate::synth::uid_from(&format!(
        "radris-sr/{study_uid}/{what}/{nanos}/{}/{n}",
        std::process::id()
    ))
}

/// The images of one series, in order of first reference, without repeats.
struct SeriesRefs {
    study_uid: String,
    series_uid: String,
    images: Vec<ImageRef>,
}

/// Group images by study and series, keeping the order of first reference; an image
/// referenced twice (same SOP instance and frame) is listed once.
fn group_images<'a>(
    report_study: &str,
    images: impl Iterator<Item = &'a ImageRef>,
) -> Vec<SeriesRefs> {
    let mut out: Vec<SeriesRefs> = Vec::new();
    for img in images {
        let img = normalized(img);
        let study = img.study_uid.as_deref().unwrap_or(report_study);
        let idx = match out
            .iter()
            .position(|s| s.study_uid == study && s.series_uid == img.series_uid)
        {
            Some(i) => i,
            None => {
                out.push(SeriesRefs {
                    study_uid: study.to_owned(),
                    series_uid: img.series_uid.clone(),
                    images: Vec::new(),
                });
                out.len() - 1
            }
        };
        let series = &mut out[idx];
        if !series
            .images
            .iter()
            .any(|i| i.sop_instance_uid == img.sop_instance_uid && i.frame == img.frame)
        {
            series.images.push(img);
        }
    }
    out
}

/// Hierarchical SOP Instance Reference Macro items (PS3.3 Table C.17-3), one per study.
fn evidence_items(series: &[&SeriesRefs]) -> Vec<InMemDicomObject> {
    let mut studies: Vec<(&str, Vec<InMemDicomObject>)> = Vec::new();
    for s in series {
        let mut series_item = InMemDicomObject::new_empty();
        put_str(
            &mut series_item,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &s.series_uid,
        );
        let mut sops: Vec<InMemDicomObject> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for img in &s.images {
            if seen.contains(&img.sop_instance_uid.as_str()) {
                continue;
            }
            seen.push(&img.sop_instance_uid);
            let sop = crate::attrs::sop_reference(&img.sop_class_uid, &img.sop_instance_uid);
            sops.push(sop);
        }
        put_seq(&mut series_item, tags::REFERENCED_SOP_SEQUENCE, sops);
        match studies.iter_mut().find(|(uid, _)| *uid == s.study_uid) {
            Some((_, items)) => items.push(series_item),
            None => studies.push((&s.study_uid, vec![series_item])),
        }
    }
    studies
        .into_iter()
        .map(|(study_uid, series_items)| {
            let mut o = InMemDicomObject::new_empty();
            put_str(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, study_uid);
            put_seq(&mut o, tags::REFERENCED_SERIES_SEQUENCE, series_items);
            o
        })
        .collect()
}

/// Language (TID 1204) and person observer (TID 1002/1003) items of the root.
fn context_items(r: &SrReport) -> Vec<Node> {
    let language = r.language.clone().unwrap_or_else(codes::english_us);
    let mut out = vec![
        Node::code(
            HAS_CONCEPT_MOD,
            dcm("121049", "Language of Content Item and Descendants"),
            language,
        ),
        Node::code(
            HAS_OBS_CONTEXT,
            dcm("121005", "Observer Type"),
            dcm("121006", "Person"),
        ),
        Node::new(
            HAS_OBS_CONTEXT,
            Some(dcm("121008", "Person Observer Name")),
            Content::PName(r.author.name.clone()),
        ),
    ];
    if let Some(org) = &r.author.organization {
        out.push(Node::text(
            HAS_OBS_CONTEXT,
            dcm("121009", "Person Observer's Organization Name"),
            org,
        ));
    }
    out
}

/// The modules both documents share; the content tree is encoded into the result afterwards.
fn document(
    r: &SrReport,
    sop_class: &str,
    images: &[SeriesRefs],
) -> Result<InMemDicomObject, SrError> {
    let s = &r.study;
    let study_uid = check_uid("study.study_uid", &s.study_uid)?;
    let series_uid = match &r.series_uid {
        Some(u) => check_uid("series_uid", u)?,
        None => fresh_uid(&study_uid, "series"),
    };
    let sop_uid = match &r.sop_instance_uid {
        Some(u) => check_uid("sop_instance_uid", u)?,
        None => fresh_uid(&study_uid, "instance"),
    };
    let mut o = InMemDicomObject::new_empty();
    // SOP Common
    put_str(&mut o, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &sop_uid);
    put_str(
        &mut o,
        tags::INSTANCE_CREATION_DATE,
        VR::DA,
        &r.content_date,
    );
    put_str(
        &mut o,
        tags::INSTANCE_CREATION_TIME,
        VR::TM,
        &r.content_time,
    );
    // Patient
    put_str(&mut o, tags::PATIENT_NAME, VR::PN, &s.patient_name);
    put_str(&mut o, tags::PATIENT_ID, VR::LO, &s.patient_id);
    put_str(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, &s.birth_date);
    put_str(&mut o, tags::PATIENT_SEX, VR::CS, &s.sex);
    // General Study
    put_str(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, &study_uid);
    put_str(&mut o, tags::STUDY_DATE, VR::DA, &s.study_date);
    put_str(&mut o, tags::STUDY_TIME, VR::TM, &s.study_time);
    put_str(
        &mut o,
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        &s.referring_physician,
    );
    put_str(&mut o, tags::STUDY_ID, VR::SH, &s.study_id);
    put_str(&mut o, tags::ACCESSION_NUMBER, VR::SH, &s.accession);
    if !s.study_description.is_empty() {
        put_str(
            &mut o,
            tags::STUDY_DESCRIPTION,
            VR::LO,
            &s.study_description,
        );
    }
    // SR Document Series
    put_str(&mut o, tags::MODALITY, VR::CS, "SR");
    put_str(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, &series_uid);
    put_str(
        &mut o,
        tags::SERIES_NUMBER,
        VR::IS,
        &r.series_number.to_string(),
    );
    put_seq(
        &mut o,
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        vec![],
    );
    // General Equipment
    put_str(&mut o, tags::MANUFACTURER, VR::LO, MANUFACTURER);
    put_str(
        &mut o,
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        env!("CARGO_PKG_VERSION"),
    );
    // SR Document General
    put_str(
        &mut o,
        tags::INSTANCE_NUMBER,
        VR::IS,
        &r.instance_number.to_string(),
    );
    put_str(&mut o, tags::CONTENT_DATE, VR::DA, &r.content_date);
    put_str(&mut o, tags::CONTENT_TIME, VR::TM, &r.content_time);
    put_str(
        &mut o,
        tags::COMPLETION_FLAG,
        VR::CS,
        if r.complete { "COMPLETE" } else { "PARTIAL" },
    );
    match &r.verified {
        Some(v) => {
            put_str(&mut o, tags::VERIFICATION_FLAG, VR::CS, "VERIFIED");
            let mut item = InMemDicomObject::new_empty();
            put_str(
                &mut item,
                tags::VERIFYING_OBSERVER_NAME,
                VR::PN,
                &v.verifying_observer_name,
            );
            put_seq(
                &mut item,
                tags::VERIFYING_OBSERVER_IDENTIFICATION_CODE_SEQUENCE,
                vec![],
            );
            put_str(
                &mut item,
                tags::VERIFYING_ORGANIZATION,
                VR::LO,
                &v.organization,
            );
            put_str(&mut item, tags::VERIFICATION_DATE_TIME, VR::DT, &v.datetime);
            put_seq(&mut o, tags::VERIFYING_OBSERVER_SEQUENCE, vec![item]);
        }
        None => put_str(&mut o, tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"),
    }
    if let Some(p) = &r.predecessor {
        let pred = SeriesRefs {
            study_uid: p.study_uid.clone(),
            series_uid: p.series_uid.clone(),
            images: vec![ImageRef {
                study_uid: Some(p.study_uid.clone()),
                series_uid: p.series_uid.clone(),
                sop_class_uid: p.sop_class_uid.clone(),
                sop_instance_uid: p.sop_instance_uid.clone(),
                frame: None,
            }],
        };
        put_seq(
            &mut o,
            tags::PREDECESSOR_DOCUMENTS_SEQUENCE,
            evidence_items(&[&pred]),
        );
    }
    if !s.accession.is_empty() {
        // the order this report answers (Referenced Request Sequence, Type 1C)
        let mut req = InMemDicomObject::new_empty();
        put_str(&mut req, tags::STUDY_INSTANCE_UID, VR::UI, &study_uid);
        put_seq(&mut req, tags::REFERENCED_STUDY_SEQUENCE, vec![]);
        put_str(&mut req, tags::ACCESSION_NUMBER, VR::SH, &s.accession);
        put_str(
            &mut req,
            tags::PLACER_ORDER_NUMBER_IMAGING_SERVICE_REQUEST,
            VR::LO,
            "",
        );
        put_str(
            &mut req,
            tags::FILLER_ORDER_NUMBER_IMAGING_SERVICE_REQUEST,
            VR::LO,
            "",
        );
        put_str(&mut req, tags::REQUESTED_PROCEDURE_ID, VR::SH, &s.study_id);
        put_str(
            &mut req,
            tags::REQUESTED_PROCEDURE_DESCRIPTION,
            VR::LO,
            &s.study_description,
        );
        put_seq(&mut req, tags::REQUESTED_PROCEDURE_CODE_SEQUENCE, vec![]);
        put_seq(&mut o, tags::REFERENCED_REQUEST_SEQUENCE, vec![req]);
    }
    put_seq(&mut o, tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]);
    let (current, other): (Vec<&SeriesRefs>, Vec<&SeriesRefs>) =
        images.iter().partition(|g| g.study_uid == study_uid);
    if !current.is_empty() {
        put_seq(
            &mut o,
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            evidence_items(&current),
        );
    }
    if !other.is_empty() {
        put_seq(
            &mut o,
            tags::PERTINENT_OTHER_EVIDENCE_SEQUENCE,
            evidence_items(&other),
        );
    }
    Ok(o)
}

/// Specific Character Set ISO_IR 192 (UTF-8) when any value is not ASCII.
fn set_character_set(o: &mut InMemDicomObject) {
    fn non_ascii(o: &InMemDicomObject) -> bool {
        o.iter().any(|e| match e.value() {
            Value::Primitive(PrimitiveValue::Str(s)) => !s.is_ascii(),
            Value::Primitive(PrimitiveValue::Strs(v)) => v.iter().any(|s| !s.is_ascii()),
            Value::Sequence(seq) => seq.items().iter().any(non_ascii),
            _ => false,
        })
    }
    if non_ascii(o) {
        put_str(o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    }
}

fn finish(mut o: InMemDicomObject, root: &Node) -> InMemDicomObject {
    encode(root, &mut o, true);
    set_character_set(&mut o);
    o
}

/// The SOURCE of a measurement (TID 320): the image, or a region SELECTED FROM it.
fn source_node(i: usize, m: &Measurement) -> Result<Option<Node>, SrError> {
    let source = dcm("121112", "Source of Measurement");
    match (&m.image, &m.region) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(SrError::Missing {
            field: format!("measurements[{i}].image (a region needs its image)"),
        }),
        (Some(img), None) => {
            check_image(&format!("measurements[{i}].image"), img)?;
            Ok(Some(Node::new(
                INFERRED_FROM,
                Some(source),
                Content::Image(normalized(img)),
            )))
        }
        (Some(img), Some(region)) => {
            check_image(&format!("measurements[{i}].image"), img)?;
            let data = check_region(&format!("measurements[{i}].region"), region)?;
            let scoord = Node::new(
                INFERRED_FROM,
                Some(source),
                Content::Scoord {
                    graphic_type: region.graphic_type,
                    data,
                },
            );
            Ok(Some(scoord.with(vec![Node::new(
                SELECTED_FROM,
                None,
                Content::Image(normalized(img)),
            )])))
        }
    }
}

/// The Measurement Groups (TID 1501) of the report's measurements.
fn measurement_groups(r: &SrReport, sop_uid_seed: &str) -> Result<Vec<Node>, SrError> {
    // group by tracking UID, else tracking identifier, else one group per measurement
    let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for (i, m) in r.measurements.iter().enumerate() {
        let key = m
            .tracking_uid
            .as_ref()
            .map(|u| format!("uid:{u}"))
            .or_else(|| m.tracking_id.as_ref().map(|t| format!("id:{t}")));
        match key
            .as_ref()
            .and_then(|k| groups.iter_mut().find(|(gk, _)| gk.as_ref() == Some(k)))
        {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (g, (_, members)) in groups.iter().enumerate() {
        let first = &r.measurements[members[0]];
        let tracking_id = first
            .tracking_id
            .clone()
            .or_else(|| {
                members
                    .iter()
                    .find_map(|&i| r.measurements[i].tracking_id.clone())
            })
            .unwrap_or_else(|| format!("Measurement group {}", g + 1));
        check_text(
            &format!("measurements[{}].tracking_id", members[0]),
            &tracking_id,
        )?;
        let tracking_uid = match members
            .iter()
            .find_map(|&i| r.measurements[i].tracking_uid.as_ref())
        {
            Some(u) => check_uid(&format!("measurements[{}].tracking_uid", members[0]), u)?,
            None => crate::synth::uid_from(&format!("{sop_uid_seed}/tracking/{tracking_id}/{g}")),
        };
        // a finding site all members share is said once, on the group
        let shared_site = first.finding_site.as_ref().filter(|site| {
            members
                .iter()
                .all(|&i| r.measurements[i].finding_site.as_ref() == Some(*site))
        });
        let mut group = Node::container(CONTAINS, dcm("125007", "Measurement Group"), Some("1501"))
            .with(vec![
                Node::text(
                    HAS_OBS_CONTEXT,
                    dcm("112039", "Tracking Identifier"),
                    &tracking_id,
                ),
                Node::new(
                    HAS_OBS_CONTEXT,
                    Some(dcm("112040", "Tracking Unique Identifier")),
                    Content::UidRef(tracking_uid),
                ),
            ]);
        if let Some(site) = shared_site {
            check_code(&format!("measurements[{}].finding_site", members[0]), site)?;
            group.children.push(Node::code(
                HAS_CONCEPT_MOD,
                Code::new("363698007", "SCT", "Finding Site"),
                site.clone(),
            ));
        }
        for &i in members {
            let m = &r.measurements[i];
            check_code(&format!("measurements[{i}].name"), &m.name)?;
            check_code(&format!("measurements[{i}].unit"), &m.unit)?;
            if !m.value.is_finite() {
                return Err(invalid(
                    &format!("measurements[{i}].value"),
                    "must be a finite number",
                ));
            }
            let mut num = Node::new(
                CONTAINS,
                Some(m.name.clone()),
                Content::Num {
                    value: m.value,
                    unit: m.unit.clone(),
                },
            );
            // TID 300 order: derivation, finding site, then the source
            if let Some(d) = &m.derivation {
                check_code(&format!("measurements[{i}].derivation"), d)?;
                num.children.push(Node::code(
                    HAS_CONCEPT_MOD,
                    dcm("121401", "Derivation"),
                    d.clone(),
                ));
            }
            if shared_site.is_none()
                && let Some(site) = &m.finding_site
            {
                check_code(&format!("measurements[{i}].finding_site"), site)?;
                num.children.push(Node::code(
                    HAS_CONCEPT_MOD,
                    Code::new("363698007", "SCT", "Finding Site"),
                    site.clone(),
                ));
            }
            if let Some(src) = source_node(i, m)? {
                num.children.push(src);
            }
            group.children.push(num);
        }
        out.push(group);
    }
    Ok(out)
}

/// A Comprehensive SR following TID 1500 "Measurement Report".
///
/// ```text
/// CONTAINER (126000, DCM, "Imaging Measurement Report")           [TID 1500]
///   HAS CONCEPT MOD  CODE   Language of Content Item and Descendants
///   HAS OBS CONTEXT  CODE   Observer Type = Person
///   HAS OBS CONTEXT  PNAME  Person Observer Name
///   HAS OBS CONTEXT  TEXT   Person Observer's Organization Name   (if given)
///   HAS CONCEPT MOD  CODE   Procedure reported
///   CONTAINS CONTAINER Image Library                               [TID 1600]
///     CONTAINS CONTAINER Image Library Group  (one per series)
///       CONTAINS IMAGE
///   CONTAINS CONTAINER Imaging Measurements
///     CONTAINS CONTAINER Measurement Group                         [TID 1501]
///       HAS OBS CONTEXT  TEXT    Tracking Identifier
///       HAS OBS CONTEXT  UIDREF  Tracking Unique Identifier
///       HAS CONCEPT MOD  CODE    Finding Site
///       CONTAINS NUM  (measurement, UCUM unit)                     [TID 300]
///         HAS CONCEPT MOD CODE Derivation
///         INFERRED FROM IMAGE Source of Measurement
///           (or INFERRED FROM SCOORD Source of Measurement, SELECTED FROM IMAGE)
///   CONTAINS CONTAINER Qualitative Evaluations
///     CONTAINS CODE  (coded findings)
///     CONTAINS TEXT  (section heading: section text)
/// ```
pub fn comprehensive_sr(r: &SrReport) -> Result<InMemDicomObject, SrError> {
    check_report(r)?;
    // TID 1500 needs Imaging Measurements or Qualitative Evaluations; images alone are not a
    // measurement report
    if r.sections.is_empty() && r.measurements.is_empty() && r.coded_findings.is_empty() {
        return Err(SrError::Empty);
    }
    let procedure = r.procedure.clone().unwrap_or_else(codes::imaging_procedure);
    check_code("procedure", &procedure)?;
    for (i, (concept, value)) in r.coded_findings.iter().enumerate() {
        check_code(&format!("coded_findings[{i}].0"), concept)?;
        check_code(&format!("coded_findings[{i}].1"), value)?;
    }
    let images = group_images(
        &r.study.study_uid,
        r.measurements
            .iter()
            .filter_map(|m| m.image.as_ref())
            .chain(r.key_images.iter()),
    );
    let o = document(r, COMPREHENSIVE_SR, &images)?;
    let sop_uid = crate::attrs::text(&o, tags::SOP_INSTANCE_UID);

    let mut root = Node::container(CONTAINS, codes::imaging_measurement_report(), Some("1500"))
        .with(context_items(r));
    root.children.push(Node::code(
        HAS_CONCEPT_MOD,
        dcm("121058", "Procedure reported"),
        procedure,
    ));
    if !images.is_empty() {
        let groups = images
            .iter()
            .map(|series| {
                Node::container(CONTAINS, dcm("126200", "Image Library Group"), None).with(
                    series
                        .images
                        .iter()
                        .map(|img| Node::new(CONTAINS, None, Content::Image(img.clone())))
                        .collect(),
                )
            })
            .collect();
        root.children.push(
            Node::container(CONTAINS, dcm("111028", "Image Library"), Some("1600")).with(groups),
        );
    }
    if !r.measurements.is_empty() {
        root.children.push(
            Node::container(CONTAINS, dcm("126010", "Imaging Measurements"), None)
                .with(measurement_groups(r, &sop_uid)?),
        );
    }
    if !r.coded_findings.is_empty() || !r.sections.is_empty() {
        let mut qual = Node::container(
            CONTAINS,
            Code::new("C0034375", "UMLS", "Qualitative Evaluations"),
            None,
        );
        for (concept, value) in &r.coded_findings {
            qual.children
                .push(Node::code(CONTAINS, concept.clone(), value.clone()));
        }
        for sec in &r.sections {
            qual.children
                .push(Node::text(CONTAINS, sec.heading.clone(), &sec.text));
        }
        root.children.push(qual);
    }
    Ok(finish(o, &root))
}

/// The Diagnostic Imaging Report Element (CID 7002) that goes under a heading (CID 7001);
/// a heading not known here names its own TEXT.
fn element_for_heading(h: &Code) -> Code {
    let known: &[(&str, &str, Code)] = &[
        ("59776-5", "LN", dcm("121071", "Finding")),
        ("121070", "DCM", dcm("121071", "Finding")),
        ("19005-8", "LN", dcm("121073", "Impression")),
        ("121072", "DCM", dcm("121073", "Impression")),
        ("55110-1", "LN", dcm("121077", "Conclusion")),
        ("121076", "DCM", dcm("121077", "Conclusion")),
        ("18783-1", "LN", dcm("121075", "Recommendation")),
        ("121074", "DCM", dcm("121075", "Recommendation")),
        ("55111-9", "LN", dcm("121065", "Procedure Description")),
        ("121064", "DCM", dcm("121065", "Procedure Description")),
        ("18834-2", "LN", dcm("121069", "Previous Finding")),
        ("121068", "DCM", dcm("121069", "Previous Finding")),
    ];
    known
        .iter()
        .find(|(v, s, _)| h.is(v, s))
        .map(|(_, _, c)| c.clone())
        .unwrap_or_else(|| h.clone())
}

/// A Basic Text SR following TID 2000 "Basic Diagnostic Imaging Report".
///
/// ```text
/// CONTAINER title                                                  [TID 2000]
///   HAS CONCEPT MOD  CODE   Language of Content Item and Descendants
///   HAS OBS CONTEXT  CODE   Observer Type = Person
///   HAS OBS CONTEXT  PNAME  Person Observer Name
///   HAS OBS CONTEXT  TEXT   Person Observer's Organization Name   (if given)
///   CONTAINS CONTAINER heading        (one per section)
///     CONTAINS TEXT  Finding / Impression / ... (the heading's element)
///   CONTAINS CONTAINER Key Images     (if any)
///     CONTAINS IMAGE Best illustration of finding
/// ```
///
/// Measurements and coded findings are not part of this document; use [`comprehensive_sr`].
pub fn basic_text_sr(r: &SrReport) -> Result<InMemDicomObject, SrError> {
    check_report(r)?;
    if r.sections.is_empty() && r.key_images.is_empty() {
        return Err(SrError::Empty);
    }
    check_code("title", &r.title)?;
    let images = group_images(&r.study.study_uid, r.key_images.iter());
    let o = document(r, BASIC_TEXT_SR, &images)?;
    let mut root = Node::container(CONTAINS, r.title.clone(), Some("2000")).with(context_items(r));
    for sec in &r.sections {
        root.children.push(
            Node::container(CONTAINS, sec.heading.clone(), None).with(vec![Node::text(
                CONTAINS,
                element_for_heading(&sec.heading),
                &sec.text,
            )]),
        );
    }
    if !r.key_images.is_empty() {
        let mut key = Node::container(CONTAINS, codes::key_images(), None);
        for img in images.iter().flat_map(|s| s.images.iter()) {
            // TID 2001: purpose of reference from CID 7003
            key.children.push(Node::new(
                CONTAINS,
                Some(dcm("121080", "Best illustration of finding")),
                Content::Image(img.clone()),
            ));
        }
        root.children.push(key);
    }
    Ok(finish(o, &root))
}

/// The SR document as a Part-10 file (preamble, meta group, Explicit VR Little Endian).
pub fn to_part10(obj: &InMemDicomObject) -> Result<Vec<u8>, SrError> {
    let sop_class = crate::attrs::text(obj, tags::SOP_CLASS_UID);
    let sop_uid = crate::attrs::text(obj, tags::SOP_INSTANCE_UID);
    if sop_class.is_empty() {
        return Err(SrError::Missing {
            field: "SOP Class UID (0008,0016)".into(),
        });
    }
    if sop_uid.is_empty() {
        return Err(SrError::Missing {
            field: "SOP Instance UID (0008,0018)".into(),
        });
    }
    let ts = uids::EXPLICIT_VR_LITTLE_ENDIAN;
    let mut out = crate::part10::file_meta_bytes(&sop_class, &sop_uid, ts, None)?;
    obj.write_dataset_with_ts(
        &mut out,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .map_err(|e| DicomError::Write(e.to_string()))?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// reading back

fn items(o: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    o.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

fn string(o: &InMemDicomObject, tag: Tag) -> String {
    crate::attrs::text(o, tag)
}

fn concept_meaning(item: &InMemDicomObject, tag: Tag) -> String {
    items(item, tag)
        .first()
        .map(|c| string(c, tags::CODE_MEANING))
        .unwrap_or_default()
}

fn concept_code(item: &InMemDicomObject, tag: Tag) -> Option<Code> {
    let c = items(item, tag).first()?;
    let mut value = string(c, tags::CODE_VALUE);
    if value.is_empty() {
        value = string(c, tags::LONG_CODE_VALUE);
    }
    if value.is_empty() {
        value = string(c, tags::URN_CODE_VALUE);
    }
    Some(Code {
        value,
        scheme: string(c, tags::CODING_SCHEME_DESIGNATOR),
        meaning: string(c, tags::CODE_MEANING),
    })
}

/// The narrative of an SR document: (heading meaning, text) for every TEXT item the
/// document CONTAINS, in document order. The heading is the enclosing section container's
/// meaning, or the TEXT item's own concept name when it sits directly in the document root or
/// in the "Qualitative Evaluations" container. Observation context (observer organisation,
/// tracking identifiers) is not narrative and is left out.
pub fn read_text(obj: &InMemDicomObject) -> Vec<(String, String)> {
    fn walk(node: &InMemDicomObject, heading: Option<&str>, out: &mut Vec<(String, String)>) {
        for item in items(node, tags::CONTENT_SEQUENCE) {
            if string(item, tags::RELATIONSHIP_TYPE) != CONTAINS {
                continue;
            }
            match string(item, tags::VALUE_TYPE).as_str() {
                "TEXT" => {
                    let own = concept_meaning(item, tags::CONCEPT_NAME_CODE_SEQUENCE);
                    let text = string(item, tags::TEXT_VALUE);
                    out.push((heading.map(str::to_owned).unwrap_or(own), text));
                }
                "CONTAINER" => {
                    let is_qualitative = concept_code(item, tags::CONCEPT_NAME_CODE_SEQUENCE)
                        .is_some_and(|c| c.is("C0034375", "UMLS"));
                    let meaning = concept_meaning(item, tags::CONCEPT_NAME_CODE_SEQUENCE);
                    let h = if is_qualitative {
                        None
                    } else {
                        Some(meaning.as_str())
                    };
                    walk(item, h, out);
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(obj, None, &mut out);
    out
}

/// A NUM item read back from an SR document.
#[derive(Debug, Clone, PartialEq)]
pub struct NumValue {
    pub name: Code,
    pub value: f64,
    pub unit: Code,
}

/// Every NUM item of an SR document, in document order. The Floating Point Value is used
/// when present, the Numeric Value otherwise; items without a value are left out.
pub fn read_measurements(obj: &InMemDicomObject) -> Vec<NumValue> {
    fn walk(node: &InMemDicomObject, out: &mut Vec<NumValue>) {
        for item in items(node, tags::CONTENT_SEQUENCE) {
            if string(item, tags::VALUE_TYPE) == "NUM"
                && let Some(mv) = items(item, tags::MEASURED_VALUE_SEQUENCE).first()
            {
                let fd = mv
                    .get(tags::FLOATING_POINT_VALUE)
                    .and_then(|e| e.to_float64().ok());
                let ds = string(mv, tags::NUMERIC_VALUE).parse::<f64>().ok();
                if let (Some(value), Some(name), Some(unit)) = (
                    fd.or(ds),
                    concept_code(item, tags::CONCEPT_NAME_CODE_SEQUENCE),
                    concept_code(mv, tags::MEASUREMENT_UNITS_CODE_SEQUENCE),
                ) {
                    out.push(NumValue { name, value, unit });
                }
            }
            walk(item, out);
        }
    }
    let mut out = Vec::new();
    walk(obj, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";

    fn img(n: u32) -> ImageRef {
        ImageRef {
            study_uid: None,
            series_uid: "1.2.826.0.1.3680043.9.7.2".into(),
            sop_class_uid: CT.into(),
            sop_instance_uid: format!("1.2.826.0.1.3680043.9.7.2.{n}"),
            frame: None,
        }
    }

    fn report() -> SrReport {
        SrReport {
            study: StudyRef {
                study_uid: "1.2.826.0.1.3680043.9.7.1".into(),
                patient_id: "P1".into(),
                patient_name: "Doe^Jane".into(),
                birth_date: "19700101".into(),
                sex: "F".into(),
                accession: "A1".into(),
                study_date: "20260912".into(),
                study_time: "083000".into(),
                referring_physician: "Referrer^Rita".into(),
                study_id: "1".into(),
                study_description: "CT CHEST".into(),
            },
            series_number: 900,
            instance_number: 1,
            content_date: "20260912".into(),
            content_time: "101500".into(),
            title: codes::diagnostic_imaging_report(),
            author: Person {
                name: "Reader^Rosa".into(),
                organization: Some("RADRIS Hospital".into()),
            },
            complete: true,
            sections: vec![
                Section {
                    heading: codes::findings(),
                    text: "Nodule in the right upper lobe.".into(),
                },
                Section {
                    heading: codes::impressions(),
                    text: "Stable.".into(),
                },
            ],
            measurements: vec![
                Measurement {
                    name: codes::long_axis(),
                    value: 12.5,
                    unit: codes::millimeter(),
                    finding_site: Some(Code::new("45653009", "SCT", "Upper lobe of lung")),
                    tracking_id: Some("Nodule 1".into()),
                    image: Some(img(10)),
                    region: Some(Region {
                        graphic_type: GraphicType::Polyline,
                        points: vec![(10.0, 20.0), (30.0, 40.0)],
                    }),
                    ..Default::default()
                },
                Measurement {
                    name: codes::short_axis(),
                    value: 0.1 + 0.2,
                    unit: codes::millimeter(),
                    finding_site: Some(Code::new("45653009", "SCT", "Upper lobe of lung")),
                    tracking_id: Some("Nodule 1".into()),
                    image: Some(img(10)),
                    derivation: Some(Code::new("255605001", "SCT", "Minimum")),
                    ..Default::default()
                },
                Measurement {
                    name: codes::diameter(),
                    value: 4.0,
                    unit: codes::millimeter(),
                    image: Some(ImageRef {
                        sop_class_uid: uids::ENHANCED_CT_IMAGE_STORAGE.into(),
                        frame: Some(3),
                        ..img(11)
                    }),
                    ..Default::default()
                },
            ],
            coded_findings: vec![(
                dcm("121071", "Finding"),
                Code::new("27925004", "SCT", "Nodule"),
            )],
            key_images: vec![img(10), img(12)],
            ..Default::default()
        }
    }

    /// One line per content item: depth, relationship, value type, concept code value.
    fn outline(o: &InMemDicomObject) -> Vec<String> {
        fn walk(node: &InMemDicomObject, depth: usize, out: &mut Vec<String>) {
            for item in items(node, tags::CONTENT_SEQUENCE) {
                let concept = concept_code(item, tags::CONCEPT_NAME_CODE_SEQUENCE)
                    .map(|c| c.value)
                    .unwrap_or_else(|| "-".into());
                out.push(format!(
                    "{}{} {} {}",
                    ">".repeat(depth),
                    string(item, tags::RELATIONSHIP_TYPE),
                    string(item, tags::VALUE_TYPE),
                    concept
                ));
                walk(item, depth + 1, out);
            }
        }
        let mut out = Vec::new();
        walk(o, 1, &mut out);
        out
    }

    #[test]
    fn comprehensive_tree_follows_tid_1500() {
        let o = comprehensive_sr(&report()).unwrap();
        assert_eq!(string(&o, tags::SOP_CLASS_UID), COMPREHENSIVE_SR);
        assert_eq!(string(&o, tags::VALUE_TYPE), "CONTAINER");
        assert_eq!(string(&o, tags::CONTINUITY_OF_CONTENT), "SEPARATE");
        let root = concept_code(&o, tags::CONCEPT_NAME_CODE_SEQUENCE).unwrap();
        assert!(root.is("126000", "DCM"));
        let tid = items(&o, tags::CONTENT_TEMPLATE_SEQUENCE);
        assert_eq!(string(&tid[0], tags::TEMPLATE_IDENTIFIER), "1500");
        assert_eq!(string(&tid[0], tags::MAPPING_RESOURCE), "DCMR");
        let expected = [
            ">HAS CONCEPT MOD CODE 121049",
            ">HAS OBS CONTEXT CODE 121005",
            ">HAS OBS CONTEXT PNAME 121008",
            ">HAS OBS CONTEXT TEXT 121009",
            ">HAS CONCEPT MOD CODE 121058",
            ">CONTAINS CONTAINER 111028",
            ">>CONTAINS CONTAINER 126200",
            ">>>CONTAINS IMAGE -",
            ">>>CONTAINS IMAGE -",
            ">>>CONTAINS IMAGE -",
            ">CONTAINS CONTAINER 126010",
            ">>CONTAINS CONTAINER 125007",
            ">>>HAS OBS CONTEXT TEXT 112039",
            ">>>HAS OBS CONTEXT UIDREF 112040",
            ">>>HAS CONCEPT MOD CODE 363698007",
            ">>>CONTAINS NUM 103339001",
            ">>>>INFERRED FROM SCOORD 121112",
            ">>>>>SELECTED FROM IMAGE -",
            ">>>CONTAINS NUM 103340004",
            ">>>>HAS CONCEPT MOD CODE 121401",
            ">>>>INFERRED FROM IMAGE 121112",
            ">>CONTAINS CONTAINER 125007",
            ">>>HAS OBS CONTEXT TEXT 112039",
            ">>>HAS OBS CONTEXT UIDREF 112040",
            ">>>CONTAINS NUM 81827009",
            ">>>>INFERRED FROM IMAGE 121112",
            ">CONTAINS CONTAINER C0034375",
            ">>CONTAINS CODE 121071",
            ">>CONTAINS TEXT 59776-5",
            ">>CONTAINS TEXT 19005-8",
        ];
        assert_eq!(outline(&o), expected);
        // the measurement groups carry TID 1501
        let groups = items(
            &items(&o, tags::CONTENT_SEQUENCE)[6],
            tags::CONTENT_SEQUENCE,
        );
        let tid = items(&groups[0], tags::CONTENT_TEMPLATE_SEQUENCE);
        assert_eq!(string(&tid[0], tags::TEMPLATE_IDENTIFIER), "1501");
        // the frame number travels with the image
        assert_eq!(
            items(&groups[1], tags::CONTENT_SEQUENCE)[2]
                .get(tags::CONTENT_SEQUENCE)
                .and_then(|e| e.items())
                .and_then(|i| i.first())
                .map(|img| {
                    string(
                        &items(img, tags::REFERENCED_SOP_SEQUENCE)[0],
                        tags::REFERENCED_FRAME_NUMBER,
                    )
                }),
            Some("3".to_owned())
        );
    }

    #[test]
    fn numbers_units_and_text_read_back() {
        let r = report();
        let o = comprehensive_sr(&r).unwrap();
        let nums = read_measurements(&o);
        assert_eq!(nums.len(), 3);
        for (n, m) in nums.iter().zip(&r.measurements) {
            assert_eq!(n.value, m.value);
            assert_eq!(n.unit, m.unit);
            assert_eq!(n.name, m.name);
        }
        // 0.1 + 0.2 does not fit a 16-character DS exactly: Floating Point Value is added
        let mv = &items(
            &items(
                &items(
                    &items(&o, tags::CONTENT_SEQUENCE)[6],
                    tags::CONTENT_SEQUENCE,
                )[0],
                tags::CONTENT_SEQUENCE,
            )[4],
            tags::MEASURED_VALUE_SEQUENCE,
        )[0];
        assert!(mv.get(tags::FLOATING_POINT_VALUE).is_some());
        let text = read_text(&o);
        assert_eq!(
            text,
            vec![
                ("Findings".to_owned(), r.sections[0].text.clone()),
                ("Impressions".to_owned(), r.sections[1].text.clone()),
            ]
        );
        let basic = basic_text_sr(&r).unwrap();
        assert_eq!(read_text(&basic), text);
        assert!(read_measurements(&basic).is_empty());
    }

    #[test]
    fn basic_text_tree_follows_tid_2000() {
        let o = basic_text_sr(&report()).unwrap();
        assert_eq!(string(&o, tags::SOP_CLASS_UID), BASIC_TEXT_SR);
        assert!(
            concept_code(&o, tags::CONCEPT_NAME_CODE_SEQUENCE)
                .unwrap()
                .is("18748-4", "LN")
        );
        let expected = [
            ">HAS CONCEPT MOD CODE 121049",
            ">HAS OBS CONTEXT CODE 121005",
            ">HAS OBS CONTEXT PNAME 121008",
            ">HAS OBS CONTEXT TEXT 121009",
            ">CONTAINS CONTAINER 59776-5",
            ">>CONTAINS TEXT 121071",
            ">CONTAINS CONTAINER 19005-8",
            ">>CONTAINS TEXT 121073",
            ">CONTAINS CONTAINER 55113-5",
            ">>CONTAINS IMAGE 121080",
            ">>CONTAINS IMAGE 121080",
        ];
        assert_eq!(outline(&o), expected);
    }

    #[test]
    fn document_modules_and_flags() {
        let mut r = report();
        let o = comprehensive_sr(&r).unwrap();
        assert_eq!(string(&o, tags::MODALITY), "SR");
        assert_eq!(string(&o, tags::MANUFACTURER), "RADRIS");
        assert_eq!(string(&o, tags::COMPLETION_FLAG), "COMPLETE");
        assert_eq!(string(&o, tags::VERIFICATION_FLAG), "UNVERIFIED");
        assert!(o.get(tags::VERIFYING_OBSERVER_SEQUENCE).is_none());
        assert!(o.get(tags::SPECIFIC_CHARACTER_SET).is_none());
        assert!(o.get(tags::PREDECESSOR_DOCUMENTS_SEQUENCE).is_none());
        // evidence: one study, one series, three distinct images
        let ev = items(&o, tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE);
        assert_eq!(ev.len(), 1);
        let series = items(&ev[0], tags::REFERENCED_SERIES_SEQUENCE);
        assert_eq!(series.len(), 1);
        assert_eq!(items(&series[0], tags::REFERENCED_SOP_SEQUENCE).len(), 3);
        assert!(o.get(tags::PERTINENT_OTHER_EVIDENCE_SEQUENCE).is_none());

        r.complete = false;
        let o = comprehensive_sr(&r).unwrap();
        assert_eq!(string(&o, tags::COMPLETION_FLAG), "PARTIAL");
        r.complete = true;
        r.verified = Some(Verification {
            verifying_observer_name: "Signer^Sam".into(),
            organization: "RADRIS Hospital".into(),
            datetime: "20260912103000".into(),
        });
        r.study.patient_name = "Müller^Jürgen".into();
        r.predecessor = Some(Predecessor {
            study_uid: r.study.study_uid.clone(),
            series_uid: "1.2.3.9".into(),
            sop_instance_uid: "1.2.3.9.1".into(),
            sop_class_uid: COMPREHENSIVE_SR.into(),
        });
        r.key_images.push(ImageRef {
            study_uid: Some("1.2.3.77".into()),
            ..img(99)
        });
        let o = comprehensive_sr(&r).unwrap();
        assert_eq!(string(&o, tags::COMPLETION_FLAG), "COMPLETE");
        assert_eq!(string(&o, tags::VERIFICATION_FLAG), "VERIFIED");
        let v = items(&o, tags::VERIFYING_OBSERVER_SEQUENCE);
        assert_eq!(string(&v[0], tags::VERIFYING_OBSERVER_NAME), "Signer^Sam");
        assert_eq!(string(&o, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        let p = items(&o, tags::PREDECESSOR_DOCUMENTS_SEQUENCE);
        assert_eq!(string(&p[0], tags::STUDY_INSTANCE_UID), r.study.study_uid);
        let other = items(&o, tags::PERTINENT_OTHER_EVIDENCE_SEQUENCE);
        assert_eq!(string(&other[0], tags::STUDY_INSTANCE_UID), "1.2.3.77");
    }

    #[test]
    fn uids_are_fresh_unless_given() {
        let mut r = report();
        let a = comprehensive_sr(&r).unwrap();
        let b = comprehensive_sr(&r).unwrap();
        assert_ne!(
            string(&a, tags::SOP_INSTANCE_UID),
            string(&b, tags::SOP_INSTANCE_UID)
        );
        r.sop_instance_uid = Some("1.2.3.4.5".into());
        r.series_uid = Some("1.2.3.4".into());
        let c = basic_text_sr(&r).unwrap();
        assert_eq!(string(&c, tags::SOP_INSTANCE_UID), "1.2.3.4.5");
        assert_eq!(string(&c, tags::SERIES_INSTANCE_UID), "1.2.3.4");
    }

    #[test]
    fn refuses_bad_input() {
        let mut r = report();
        r.study.study_uid = "not a uid".into();
        assert!(matches!(comprehensive_sr(&r), Err(SrError::Uid { .. })));
        let mut r = report();
        r.measurements[0].value = f64::NAN;
        assert!(matches!(comprehensive_sr(&r), Err(SrError::Invalid { .. })));
        let mut r = report();
        r.measurements[0].image = None;
        assert!(matches!(comprehensive_sr(&r), Err(SrError::Missing { .. })));
        let mut r = report();
        r.measurements[0].unit.meaning = "x".repeat(65);
        assert!(matches!(comprehensive_sr(&r), Err(SrError::Invalid { .. })));
        let mut r = report();
        r.study.patient_name = "Doe\\Jane".into();
        assert!(matches!(basic_text_sr(&r), Err(SrError::Invalid { .. })));
        let mut r = report();
        r.content_date = "2026-09-12".into();
        assert!(matches!(basic_text_sr(&r), Err(SrError::Invalid { .. })));
        let mut r = report();
        r.verified = Some(Verification {
            verifying_observer_name: "Signer^Sam".into(),
            organization: "H".into(),
            datetime: "yesterday".into(),
        });
        assert!(matches!(basic_text_sr(&r), Err(SrError::Invalid { .. })));
        let mut r = report();
        r.sections.clear();
        r.measurements.clear();
        r.coded_findings.clear();
        assert!(matches!(comprehensive_sr(&r), Err(SrError::Empty)));
        assert!(
            basic_text_sr(&r).is_ok(),
            "key images alone make a Basic Text SR"
        );
        r.key_images.clear();
        assert!(matches!(basic_text_sr(&r), Err(SrError::Empty)));
        let mut r = report();
        r.sections[0].text = "  ".into();
        assert!(matches!(basic_text_sr(&r), Err(SrError::Missing { .. })));
        let mut r = report();
        r.measurements[0].image = Some(ImageRef {
            frame: Some(2),
            ..img(10)
        });
        assert!(matches!(comprehensive_sr(&r), Err(SrError::Invalid { .. })));
        let mut r = report();
        r.verified = Some(Verification {
            verifying_observer_name: "Signer^Sam".into(),
            organization: "H".into(),
            datetime: "20260912103000".into(),
        });
        r.complete = false;
        assert!(matches!(basic_text_sr(&r), Err(SrError::Invalid { .. })));
        let mut r = report();
        r.measurements[0].region = Some(Region {
            graphic_type: GraphicType::Circle,
            points: vec![(1.0, 1.0)],
        });
        assert!(matches!(comprehensive_sr(&r), Err(SrError::Invalid { .. })));
    }

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        for v in [
            0.0,
            12.5,
            -3.25,
            0.1 + 0.2,
            1e21,
            -1.234_567_890_123_456_7e-20,
            123_456_789.123_456_79,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let (s, exact) = format_ds(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().unwrap();
            if exact {
                assert_eq!(back, v);
            } else {
                assert!(((back - v) / v).abs() < 1e-8, "{s} vs {v}");
            }
        }
        assert_eq!(format_ds(12.5), ("12.5".to_owned(), true));
        assert_eq!(format_ds(0.1 + 0.2), ("0.3".to_owned(), false));
        assert_eq!(format_ds(1e21), ("1e21".to_owned(), true));
        assert_eq!(format_ds(1.0 / 3.0).0, "0.33333333333333");
    }

    #[test]
    fn long_code_values_use_long_code_value() {
        let item = code_item(&Code::new("12345678901234567", "SCT", "Long"));
        assert!(item.get(tags::CODE_VALUE).is_none());
        assert_eq!(string(&item, tags::LONG_CODE_VALUE), "12345678901234567");
        let item = code_item(&Code::new("urn:example:code:1", "X", "Urn"));
        assert_eq!(string(&item, tags::URN_CODE_VALUE), "urn:example:code:1");
    }

    #[test]
    fn part10_parses_back() {
        let mut r = report();
        r.study.patient_name = "Ødegård^Åse".into();
        r.sections[0].text = "Ünïcödé text ✓".into();
        let o = comprehensive_sr(&r).unwrap();
        let bytes = to_part10(&o).unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
        let back = dicom_object::OpenFileOptions::new()
            .from_reader(&bytes[128..])
            .unwrap();
        assert_eq!(string(&back, tags::PATIENT_NAME), "Ødegård^Åse");
        let text = read_text(&back);
        assert_eq!(text[0].1, "Ünïcödé text ✓");
        assert_eq!(read_measurements(&back), read_measurements(&o));
        assert_eq!(back.meta().media_storage_sop_class_uid(), COMPREHENSIVE_SR);
    }
}
