//! De-identification: the Basic Application Level Confidentiality Profile of PS3.15 Annex E
//! (Table E.1-1), with the options a research export needs.
//!
//! [`deidentify`] takes a parsed Part-10 object and returns a de-identified copy and a
//! [`DeidReport`]; [`deidentify_bytes`] does the same from and to Part-10 bytes (with the
//! structural length check of [`crate::wire`] before anything is parsed).
//!
//! # What is done
//!
//! * Every attribute of [`profile_table`] (Table E.1-1) gets its action, at every nesting
//!   level: the profile applies inside sequence items too, and sequences not in the table are
//!   kept with their items de-identified recursively.
//! * Compound actions are resolved to the least destructive choice that stays conformant for
//!   any IOD ([`Action::resolved`]): `Z/D` → `D`, `X/Z` → `Z`, `X/D` → `D`, `X/Z/D` → `Z`,
//!   `X/Z/U*` → `U`.
//! * `D` (dummy) writes a fixed value that fits the VR (`ANONYMIZED`, `19000101`, `0`, ...);
//!   on a UID it remaps like `U`; on a sequence it keeps the items, de-identified.
//! * `U` maps each UID to `2.25.<128-bit integer>` with a keyed hash ([`remap_uid`]): the same
//!   salt gives the same new UID for the same old one, so studies stay consistent across
//!   instances, exports and references (Referenced SOP Instance UID inside Source Image
//!   Sequence, ...). UIDs under the DICOM root `1.2.840.10008` (well-known frames of reference,
//!   SOP classes, transfer syntaxes) are never remapped, and only attributes the table marks
//!   `U` are touched, so SOP Class UIDs and Referenced SOP Class UIDs stay as they are.
//! * Private attributes (odd groups), curves (`50xx`), overlays (`60xx`) and group lengths
//!   are removed.
//! * Standard attributes that are not in the table are kept (PS3.15 leaves them to the
//!   application; the table lists the ones known to carry identity).
//! * Patient Name and Patient ID (top level) become the caller's pseudonym or one derived from
//!   the keyed hash of the original Patient ID ([`pseudonymous_patient_id`],
//!   [`pseudonymous_patient_name`]); nested ones get the table's action.
//! * Patient Identity Removed (0012,0062) = `YES`, De-identification Method (0012,0063) and
//!   De-identification Method Code Sequence (0012,0064) with the CID 7050 codes of the options
//!   used are added (appended to what an earlier de-identification recorded); Longitudinal
//!   Temporal Information Modified (0028,0303) becomes `MODIFIED` (dates shifted) or `REMOVED`.
//! * The file meta group follows: Media Storage SOP Instance UID = the new SOP Instance UID;
//!   the source, sending and receiving AE titles and private meta information are dropped.
//!
//! # Options
//!
//! * [`TemporalInformation::ModifiedDates`] (Retain Longitudinal Temporal Information with
//!   Modified Dates, code 113107): every DA, and the date part of every DT, the table marks is
//!   shifted by one offset in days per patient (given, or derived from the keyed hash of the
//!   Patient ID, [`date_shift_days`]); times are kept. A date that cannot be parsed falls back
//!   to the basic action of its row. Intervals between dates survive.
//! * [`Descriptors::Clean`] (Clean Descriptors, 113105): the descriptors the table marks `C`
//!   (Study/Series Description, Image Comments, Protocol Name, ...) are kept **present but
//!   empty** (zero items for a code sequence). Free text cannot be proven clean automatically,
//!   so we keep the attribute's presence (which some IODs require) and drop its value rather
//!   than guess; without the option the basic action (mostly `X`) removes them.
//! * [`PatientCharacteristics::Retain`] (113108): sex, age, size, weight, ethnic group,
//!   pregnancy and smoking status are kept.
//! * [`DeidOptions::burned_in_regions`] (Clean Pixel Data, 113101): rectangles blanked in every
//!   frame, see below.
//!
//! # Pixel data
//!
//! Regions are clipped to the image and set, in every frame, to the smallest stored value of
//! that frame (monochrome; black on MONOCHROME2, a uniform value in any case) or to 0 (colour,
//! every sample). Native little-endian data (Implicit/Explicit VR Little Endian, Deflated) is
//! edited in place and keeps its transfer syntax. Anything else (encapsulated: JPEG, JPEG-LS,
//! JPEG 2000, RLE, ...; or Explicit VR Big Endian) is first decoded with
//! [`crate::pixel::to_explicit_vr_le`], so **the output is then Explicit VR Little Endian**
//! (Lossy Image Compression set if the source was lossy); a syntax that cannot be decoded is
//! a [`DeidError::Pixel`]. Burned In Annotation (0028,0301) becomes `NO` only when regions
//! were blanked; otherwise it is left as it was and
//! [`DeidReport::burned_in_annotation_remains`] tells the caller whether the object still
//! declares burned-in text (PS3.15 requires such instances be cleaned or withheld).
//!
//! ```
//! use radris_dicom::deid::{deidentify_bytes, DeidOptions, TemporalInformation};
//! use radris_dicom::synth::ct_study;
//!
//! let mut options = DeidOptions::new(b"a secret of sixteen bytes or more".to_vec());
//! options.temporal = TemporalInformation::ModifiedDates { shift_days: Some(-30) };
//! ct_study(1, 8, 8, "doc").generate(|instance| {
//!     let (bytes, report) = deidentify_bytes(&instance.part10, &options).unwrap();
//!     assert_ne!(report.sop_instance_uid, instance.sop_instance_uid);
//!     assert!(bytes.len() > 132);
//!     Ok::<(), radris_dicom::DicomError>(())
//! }).unwrap();
//! ```

use std::borrow::Cow;

use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemElement;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use sha2::{Digest, Sha256};

use crate::DicomError;
use crate::pixel::{self, FileObject, PixelError};

/// Fewest salt bytes [`deidentify`] accepts. The salt keys every hash (UIDs, pseudonyms, date
/// offsets); with a short or public salt anyone could map a known original UID or Patient ID
/// to its replacement.
pub const MIN_SALT_LEN: usize = 16;

/// Deepest sequence nesting followed (the same bound as [`crate::wire`]).
pub const MAX_DEPTH: usize = 64;

/// What happens to dates and times (PS3.15 E.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemporalInformation {
    /// Basic profile: dates and times get the table's action (removed, emptied or a dummy).
    #[default]
    Remove,
    /// Retain Longitudinal Temporal Information with Modified Dates Option: dates are shifted
    /// by `shift_days` (or by [`date_shift_days`] of the Patient ID when `None`), times kept.
    ModifiedDates { shift_days: Option<i32> },
}

/// What happens to free-text descriptors (PS3.15 E.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Descriptors {
    /// Basic profile: the table's action (mostly removal).
    #[default]
    Remove,
    /// Clean Descriptors Option: the attribute stays, with an empty value.
    Clean,
}

/// What happens to the patient's physical characteristics (PS3.15 E.3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatientCharacteristics {
    /// Basic profile: removed or emptied.
    #[default]
    Remove,
    /// Retain Patient Characteristics Option: sex, age, size, weight, ethnic group, ... kept.
    Retain,
}

/// A rectangle of burned-in annotation, in pixels from the top-left corner of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// How to de-identify. [`DeidOptions::new`] gives the basic profile.
#[derive(Debug, Clone)]
pub struct DeidOptions {
    /// Secret key of every hash ([`remap_uid`], pseudonyms, date offsets); at least
    /// [`MIN_SALT_LEN`] bytes. Keep it to stay consistent across exports; change it to make
    /// a new export unlinkable to earlier ones.
    pub salt: Vec<u8>,
    pub temporal: TemporalInformation,
    pub descriptors: Descriptors,
    pub patient_characteristics: PatientCharacteristics,
    /// Rectangles blanked in every frame (Clean Pixel Data Option); empty: pixels untouched.
    pub burned_in_regions: Vec<Region>,
    /// Replacement Patient Name; `None`: [`pseudonymous_patient_name`] of the Patient ID.
    pub patient_name: Option<String>,
    /// Replacement Patient ID; `None`: [`pseudonymous_patient_id`] of the Patient ID.
    pub patient_id: Option<String>,
}

impl DeidOptions {
    /// The basic profile, no options, keyed with `salt`.
    pub fn new(salt: impl Into<Vec<u8>>) -> Self {
        DeidOptions {
            salt: salt.into(),
            temporal: TemporalInformation::Remove,
            descriptors: Descriptors::Remove,
            patient_characteristics: PatientCharacteristics::Remove,
            burned_in_regions: Vec::new(),
            patient_name: None,
            patient_id: None,
        }
    }
}

/// What [`deidentify`] did to one object (counts over every nesting level).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeidReport {
    /// Attributes removed (table `X`, private, curves, overlays, group lengths).
    pub removed: usize,
    /// Attributes kept with an empty value (table `Z`, cleaned descriptors).
    pub emptied: usize,
    /// Attributes given a dummy value or a pseudonym (table `D`).
    pub replaced: usize,
    /// Date (DA) and date-time (DT) attributes shifted.
    pub dates_shifted: usize,
    /// UID values remapped.
    pub uids_remapped: usize,
    /// Frames whose burned-in regions were blanked.
    pub frames_cleaned: u32,
    /// Whether the pixel data had to be decoded (the output is then Explicit VR Little Endian).
    pub pixel_data_decoded: bool,
    /// The offset applied to dates, when dates were shifted.
    pub date_shift_days: Option<i32>,
    /// Burned In Annotation is still `YES` (no region was cleaned): the caller should withhold
    /// the instance or configure regions (PS3.15 E.3.1).
    pub burned_in_annotation_remains: bool,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    /// The new SOP Instance UID (also the Media Storage SOP Instance UID).
    pub sop_instance_uid: String,
}

/// Why an object could not be de-identified. Nothing here panics on malformed input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeidError {
    #[error("the de-identification salt has {len} bytes; at least {MIN_SALT_LEN} are required")]
    SaltTooShort { len: usize },
    #[error("input refused: {0}")]
    Input(#[source] DicomError),
    #[error("data set could not be parsed: {0}")]
    Parse(String),
    #[error("attribute {tag}: {reason}")]
    Attribute { tag: Tag, reason: String },
    #[error("sequence {tag} is nested deeper than {MAX_DEPTH} levels")]
    TooDeep { tag: Tag },
    #[error("burned-in regions could not be cleaned: {0}")]
    Pixel(#[from] PixelError),
    #[error("could not write the de-identified object: {0}")]
    Write(String),
}

/// An action code of Table E.1-1 (PS3.15 E.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `D`: replace with a non-zero length dummy value consistent with the VR.
    Dummy,
    /// `Z`: replace with a zero length value (or a dummy).
    Empty,
    /// `X`: remove.
    Remove,
    /// `K`: keep (sequences are still cleaned inside).
    Keep,
    /// `C`: clean (see [`Descriptors::Clean`]).
    Clean,
    /// `U`: replace with a non-zero length UID, consistent within the set of instances.
    Uid,
    /// `Z/D`.
    EmptyOrDummy,
    /// `X/Z`.
    RemoveOrEmpty,
    /// `X/D`.
    RemoveOrDummy,
    /// `X/Z/D`.
    RemoveOrEmptyOrDummy,
    /// `X/Z/U*`: for sequences of references: remove, empty, or remap the UIDs inside.
    RemoveOrEmptyOrUid,
}

impl Action {
    /// The code as the table spells it (`X/Z/D`).
    pub fn code(self) -> &'static str {
        match self {
            Action::Dummy => "D",
            Action::Empty => "Z",
            Action::Remove => "X",
            Action::Keep => "K",
            Action::Clean => "C",
            Action::Uid => "U",
            Action::EmptyOrDummy => "Z/D",
            Action::RemoveOrEmpty => "X/Z",
            Action::RemoveOrDummy => "X/D",
            Action::RemoveOrEmptyOrDummy => "X/Z/D",
            Action::RemoveOrEmptyOrUid => "X/Z/U*",
        }
    }

    /// The simple action applied for this code: compound codes become the least destructive
    /// choice valid whatever the attribute's type in the IOD (`Z/D` → `D`, `X/Z` → `Z`,
    /// `X/D` → `D`, `X/Z/D` → `Z`, `X/Z/U*` → `U`); simple codes stay.
    pub fn resolved(self) -> Action {
        match self {
            Action::EmptyOrDummy | Action::RemoveOrDummy => Action::Dummy,
            Action::RemoveOrEmpty | Action::RemoveOrEmptyOrDummy => Action::Empty,
            Action::RemoveOrEmptyOrUid => Action::Uid,
            simple => simple,
        }
    }
}

/// An option column of Table E.1-1 that changes a row's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileOption {
    /// `C` in "Rtn. Long. Modif. Dates": the date is shifted, a time kept.
    RetainLongitudinalModifiedDates,
    /// `C` in "Clean Desc.".
    CleanDescriptors,
    /// `K` in "Rtn. Pat. Chars.".
    RetainPatientCharacteristics,
}

/// One row of Table E.1-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileRow {
    pub tag: Tag,
    /// The attribute keyword (PS3.6).
    pub keyword: &'static str,
    /// The Basic Profile column.
    pub action: Action,
    /// The option column that overrides the basic action, if any.
    pub option: Option<ProfileOption>,
}

/// Table E.1-1 as implemented, sorted by tag. Attributes of the repeating groups (curves
/// `50xx`, overlays `60xx`) and private attributes are handled by group, not listed.
pub fn profile_table() -> &'static [ProfileRow] {
    PROFILE
}

/// The row of `tag`, if the table lists it.
pub fn profile_row(tag: Tag) -> Option<&'static ProfileRow> {
    PROFILE
        .binary_search_by(|row| row.tag.cmp(&tag))
        .ok()
        .and_then(|i| PROFILE.get(i))
}

/// De-identify a parsed Part-10 object (see the module documentation for what is done).
/// The returned report names the new study, series and instance UIDs.
pub fn deidentify(
    obj: FileObject,
    opts: &DeidOptions,
) -> Result<(FileObject, DeidReport), DeidError> {
    if opts.salt.len() < MIN_SALT_LEN {
        return Err(DeidError::SaltTooShort {
            len: opts.salt.len(),
        });
    }
    let mut report = DeidReport::default();
    let (obj, frames_cleaned, decoded) = clean_pixels(obj, &opts.burned_in_regions)?;
    report.frames_cleaned = frames_cleaned;
    report.pixel_data_decoded = decoded;

    let original_patient_id = obj
        .get(tags::PATIENT_ID)
        .and_then(|e| e.to_str().ok())
        .map(|s| trim_value(&s).to_owned())
        .unwrap_or_default();
    let shift_days = match opts.temporal {
        TemporalInformation::Remove => None,
        TemporalInformation::ModifiedDates { shift_days } => {
            Some(shift_days.unwrap_or_else(|| date_shift_days(&opts.salt, &original_patient_id)))
        }
    };
    report.date_shift_days = shift_days;
    let meta = obj.meta().clone();
    let dataset = obj.into_inner();

    let mut walker = Walker {
        opts,
        shift_days,
        report: &mut report,
        patient_name: opts
            .patient_name
            .clone()
            .unwrap_or_else(|| pseudonymous_patient_name(&opts.salt, &original_patient_id)),
        patient_id: opts
            .patient_id
            .clone()
            .unwrap_or_else(|| pseudonymous_patient_id(&opts.salt, &original_patient_id)),
    };
    let mut out = walker.dataset(dataset, 0)?;
    record_method(&mut out, opts, shift_days.is_some(), frames_cleaned > 0);

    if frames_cleaned > 0 {
        out.put(str_element(tags::BURNED_IN_ANNOTATION, VR::CS, "NO"));
    }
    report.burned_in_annotation_remains = out
        .get(tags::BURNED_IN_ANNOTATION)
        .and_then(|e| e.to_str().ok())
        .is_some_and(|v| trim_value(&v).eq_ignore_ascii_case("YES"));
    let first_uid = |tag| {
        out.get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| trim_value(&s).to_owned())
            .filter(|s| !s.is_empty())
    };
    report.study_instance_uid = first_uid(tags::STUDY_INSTANCE_UID);
    report.series_instance_uid = first_uid(tags::SERIES_INSTANCE_UID);
    report.sop_instance_uid = match first_uid(tags::SOP_INSTANCE_UID) {
        Some(uid) => uid,
        None => {
            // no SOP Instance UID in the data set: remap the one the meta group names
            let uid = remap_uid(&opts.salt, trim_value(&meta.media_storage_sop_instance_uid));
            report.uids_remapped += 1;
            uid
        }
    };

    let mut file = out.with_exact_meta(meta);
    let sop_uid = report.sop_instance_uid.clone();
    file.update_meta(|m| {
        m.media_storage_sop_instance_uid = sop_uid;
        m.source_application_entity_title = None;
        m.sending_application_entity_title = None;
        m.receiving_application_entity_title = None;
        m.private_information_creator_uid = None;
        m.private_information = None;
    });
    Ok((file, report))
}

/// De-identify Part-10 bytes (with or without the 128-byte preamble) and return Part-10 bytes.
/// The input passes [`crate::part10::read_layout`] and [`crate::wire::check_structure`] before
/// dicom-rs parses it, so truncated or lying input is an error, never a panic or a huge
/// allocation.
pub fn deidentify_bytes(
    part10: &[u8],
    opts: &DeidOptions,
) -> Result<(Vec<u8>, DeidReport), DeidError> {
    if opts.salt.len() < MIN_SALT_LEN {
        return Err(DeidError::SaltTooShort {
            len: opts.salt.len(),
        });
    }
    let obj = parse_part10(part10)?;
    let (file, report) = deidentify(obj, opts)?;
    let mut out = Vec::new();
    file.write_all(&mut out)
        .map_err(|e| DeidError::Write(e.to_string()))?;
    Ok((out, report))
}

/// The replacement of `uid` under `salt`: `2.25.` and the decimal of a 128-bit UUID (version
/// 8, RFC 9562) made of HMAC-SHA-256(salt, uid). Deterministic, so every instance and every
/// reference to the same UID maps alike; without the salt it can be neither inverted nor
/// recomputed from a known UID. Trailing padding (space, NUL) is ignored.
pub fn remap_uid(salt: &[u8], uid: &str) -> String {
    let mac = hmac_sha256(salt, &[b"radris-deid/uid\0", trim_value(uid).as_bytes()]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&mac[..16]);
    b[6] = (b[6] & 0x0F) | 0x80; // version 8
    b[8] = (b[8] & 0x3F) | 0x80; // variant 10
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// The pseudonymous Patient ID of `patient_id` under `salt`: `ANON` and 16 hex digits of the
/// keyed hash (the same patient always gets the same one).
pub fn pseudonymous_patient_id(salt: &[u8], patient_id: &str) -> String {
    format!("ANON{}", pseudonym_hex(salt, patient_id))
}

/// The pseudonymous Patient Name for `patient_id` under `salt`: `ANON^` and the same 16 hex
/// digits as [`pseudonymous_patient_id`].
pub fn pseudonymous_patient_name(salt: &[u8], patient_id: &str) -> String {
    format!("ANON^{}", pseudonym_hex(salt, patient_id))
}

/// The per-patient date offset under `salt`, in `-365..=-1` days (dates move into the past,
/// by the same amount for every instance of the patient).
pub fn date_shift_days(salt: &[u8], patient_id: &str) -> i32 {
    let mac = hmac_sha256(
        salt,
        &[
            b"radris-deid/date-shift\0",
            trim_value(patient_id).as_bytes(),
        ],
    );
    let n = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
    -((n % 365) as i32) - 1
}

// ---------------------------------------------------------------------------------------------
// Table E.1-1

const fn row(
    group: u16,
    element: u16,
    keyword: &'static str,
    action: Action,
    option: Option<ProfileOption>,
) -> ProfileRow {
    ProfileRow {
        tag: Tag(group, element),
        keyword,
        action,
        option,
    }
}

const NONE: Option<ProfileOption> = None;
const DATES: Option<ProfileOption> = Some(ProfileOption::RetainLongitudinalModifiedDates);
const DESCRIPTORS: Option<ProfileOption> = Some(ProfileOption::CleanDescriptors);
const PATIENT: Option<ProfileOption> = Some(ProfileOption::RetainPatientCharacteristics);

/// Table E.1-1 (PS3.15, Basic Profile column and the three option columns used here).
static PROFILE: &[ProfileRow] = {
    use Action as A;
    &[
        row(
            0x0004,
            0x1511,
            "ReferencedSOPInstanceUIDInFile",
            A::Uid,
            NONE,
        ),
        row(
            0x0008,
            0x0012,
            "InstanceCreationDate",
            A::RemoveOrDummy,
            DATES,
        ),
        row(
            0x0008,
            0x0013,
            "InstanceCreationTime",
            A::RemoveOrEmptyOrDummy,
            DATES,
        ),
        row(0x0008, 0x0014, "InstanceCreatorUID", A::Uid, NONE),
        row(0x0008, 0x0015, "InstanceCoercionDateTime", A::Remove, DATES),
        row(0x0008, 0x0017, "AcquisitionUID", A::Uid, NONE),
        row(0x0008, 0x0018, "SOPInstanceUID", A::Uid, NONE),
        row(0x0008, 0x0020, "StudyDate", A::Empty, DATES),
        row(0x0008, 0x0021, "SeriesDate", A::RemoveOrDummy, DATES),
        row(0x0008, 0x0022, "AcquisitionDate", A::RemoveOrEmpty, DATES),
        row(0x0008, 0x0023, "ContentDate", A::EmptyOrDummy, DATES),
        row(0x0008, 0x0024, "OverlayDate", A::Remove, DATES),
        row(0x0008, 0x0025, "CurveDate", A::Remove, DATES),
        row(
            0x0008,
            0x002A,
            "AcquisitionDateTime",
            A::RemoveOrDummy,
            DATES,
        ),
        row(0x0008, 0x0030, "StudyTime", A::Empty, DATES),
        row(0x0008, 0x0031, "SeriesTime", A::RemoveOrDummy, DATES),
        row(0x0008, 0x0032, "AcquisitionTime", A::RemoveOrEmpty, DATES),
        row(0x0008, 0x0033, "ContentTime", A::EmptyOrDummy, DATES),
        row(0x0008, 0x0034, "OverlayTime", A::Remove, DATES),
        row(0x0008, 0x0035, "CurveTime", A::Remove, DATES),
        row(0x0008, 0x0050, "AccessionNumber", A::Empty, NONE),
        row(
            0x0008,
            0x0051,
            "IssuerOfAccessionNumberSequence",
            A::Remove,
            NONE,
        ),
        row(0x0008, 0x0058, "FailedSOPInstanceUIDList", A::Uid, NONE),
        row(
            0x0008,
            0x0080,
            "InstitutionName",
            A::RemoveOrEmptyOrDummy,
            NONE,
        ),
        row(0x0008, 0x0081, "InstitutionAddress", A::Remove, NONE),
        row(
            0x0008,
            0x0082,
            "InstitutionCodeSequence",
            A::RemoveOrEmptyOrDummy,
            NONE,
        ),
        row(0x0008, 0x0090, "ReferringPhysicianName", A::Empty, NONE),
        row(0x0008, 0x0092, "ReferringPhysicianAddress", A::Remove, NONE),
        row(
            0x0008,
            0x0094,
            "ReferringPhysicianTelephoneNumbers",
            A::Remove,
            NONE,
        ),
        row(
            0x0008,
            0x0096,
            "ReferringPhysicianIdentificationSequence",
            A::Remove,
            NONE,
        ),
        row(0x0008, 0x009C, "ConsultingPhysicianName", A::Empty, NONE),
        row(
            0x0008,
            0x009D,
            "ConsultingPhysicianIdentificationSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0008,
            0x010D,
            "ContextGroupExtensionCreatorUID",
            A::Uid,
            NONE,
        ),
        row(0x0008, 0x0201, "TimezoneOffsetFromUTC", A::Remove, DATES),
        row(0x0008, 0x1010, "StationName", A::RemoveOrEmptyOrDummy, NONE),
        row(0x0008, 0x1030, "StudyDescription", A::Remove, DESCRIPTORS),
        row(0x0008, 0x103E, "SeriesDescription", A::Remove, DESCRIPTORS),
        row(
            0x0008,
            0x1040,
            "InstitutionalDepartmentName",
            A::Remove,
            NONE,
        ),
        row(
            0x0008,
            0x1041,
            "InstitutionalDepartmentTypeCodeSequence",
            A::Remove,
            NONE,
        ),
        row(0x0008, 0x1048, "PhysiciansOfRecord", A::Remove, NONE),
        row(
            0x0008,
            0x1049,
            "PhysiciansOfRecordIdentificationSequence",
            A::Remove,
            NONE,
        ),
        row(0x0008, 0x1050, "PerformingPhysicianName", A::Remove, NONE),
        row(
            0x0008,
            0x1052,
            "PerformingPhysicianIdentificationSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0008,
            0x1060,
            "NameOfPhysiciansReadingStudy",
            A::Remove,
            NONE,
        ),
        row(
            0x0008,
            0x1062,
            "PhysiciansReadingStudyIdentificationSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0008,
            0x1070,
            "OperatorsName",
            A::RemoveOrEmptyOrDummy,
            NONE,
        ),
        row(
            0x0008,
            0x1072,
            "OperatorIdentificationSequence",
            A::RemoveOrDummy,
            NONE,
        ),
        row(
            0x0008,
            0x1080,
            "AdmittingDiagnosesDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(
            0x0008,
            0x1084,
            "AdmittingDiagnosesCodeSequence",
            A::Remove,
            DESCRIPTORS,
        ),
        row(
            0x0008,
            0x1110,
            "ReferencedStudySequence",
            A::RemoveOrEmpty,
            NONE,
        ),
        row(
            0x0008,
            0x1111,
            "ReferencedPerformedProcedureStepSequence",
            A::RemoveOrEmptyOrDummy,
            NONE,
        ),
        row(0x0008, 0x1120, "ReferencedPatientSequence", A::Remove, NONE),
        row(
            0x0008,
            0x1140,
            "ReferencedImageSequence",
            A::RemoveOrEmptyOrUid,
            NONE,
        ),
        row(0x0008, 0x1155, "ReferencedSOPInstanceUID", A::Uid, NONE),
        row(0x0008, 0x1195, "TransactionUID", A::Uid, NONE),
        row(
            0x0008,
            0x2111,
            "DerivationDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(
            0x0008,
            0x2112,
            "SourceImageSequence",
            A::RemoveOrEmptyOrUid,
            NONE,
        ),
        row(0x0008, 0x3010, "IrradiationEventUID", A::Uid, NONE),
        row(
            0x0008,
            0x4000,
            "IdentifyingComments",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0008, 0x9123, "CreatorVersionUID", A::Uid, NONE),
        row(0x0010, 0x0010, "PatientName", A::Empty, NONE),
        row(0x0010, 0x0020, "PatientID", A::Empty, NONE),
        row(0x0010, 0x0021, "IssuerOfPatientID", A::Remove, NONE),
        row(0x0010, 0x0030, "PatientBirthDate", A::Empty, NONE),
        row(0x0010, 0x0032, "PatientBirthTime", A::Remove, NONE),
        row(
            0x0010,
            0x0033,
            "PatientBirthDateInAlternativeCalendar",
            A::Remove,
            NONE,
        ),
        row(
            0x0010,
            0x0034,
            "PatientDeathDateInAlternativeCalendar",
            A::Remove,
            NONE,
        ),
        row(
            0x0010,
            0x0035,
            "PatientAlternativeCalendar",
            A::Remove,
            NONE,
        ),
        row(0x0010, 0x0040, "PatientSex", A::Empty, PATIENT),
        row(
            0x0010,
            0x0050,
            "PatientInsurancePlanCodeSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0010,
            0x0101,
            "PatientPrimaryLanguageCodeSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0010,
            0x0102,
            "PatientPrimaryLanguageModifierCodeSequence",
            A::Remove,
            NONE,
        ),
        row(0x0010, 0x1000, "OtherPatientIDs", A::Remove, NONE),
        row(0x0010, 0x1001, "OtherPatientNames", A::Remove, NONE),
        row(0x0010, 0x1002, "OtherPatientIDsSequence", A::Remove, NONE),
        row(0x0010, 0x1005, "PatientBirthName", A::Remove, NONE),
        row(0x0010, 0x1010, "PatientAge", A::Remove, PATIENT),
        row(0x0010, 0x1020, "PatientSize", A::Remove, PATIENT),
        row(
            0x0010,
            0x1021,
            "PatientSizeCodeSequence",
            A::Remove,
            PATIENT,
        ),
        row(0x0010, 0x1030, "PatientWeight", A::Remove, PATIENT),
        row(0x0010, 0x1040, "PatientAddress", A::Remove, NONE),
        row(
            0x0010,
            0x1050,
            "InsurancePlanIdentification",
            A::Remove,
            NONE,
        ),
        row(0x0010, 0x1060, "PatientMotherBirthName", A::Remove, NONE),
        row(0x0010, 0x1080, "MilitaryRank", A::Remove, NONE),
        row(0x0010, 0x1081, "BranchOfService", A::Remove, NONE),
        row(0x0010, 0x1090, "MedicalRecordLocator", A::Remove, NONE),
        row(
            0x0010,
            0x1100,
            "ReferencedPatientPhotoSequence",
            A::Remove,
            NONE,
        ),
        row(0x0010, 0x2000, "MedicalAlerts", A::Remove, DESCRIPTORS),
        row(0x0010, 0x2110, "Allergies", A::Remove, DESCRIPTORS),
        row(0x0010, 0x2150, "CountryOfResidence", A::Remove, NONE),
        row(0x0010, 0x2152, "RegionOfResidence", A::Remove, NONE),
        row(0x0010, 0x2154, "PatientTelephoneNumbers", A::Remove, NONE),
        row(0x0010, 0x2155, "PatientTelecomInformation", A::Remove, NONE),
        row(0x0010, 0x2160, "EthnicGroup", A::Remove, PATIENT),
        row(0x0010, 0x2180, "Occupation", A::Remove, DESCRIPTORS),
        row(0x0010, 0x21A0, "SmokingStatus", A::Remove, PATIENT),
        row(
            0x0010,
            0x21B0,
            "AdditionalPatientHistory",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0010, 0x21C0, "PregnancyStatus", A::Remove, PATIENT),
        row(0x0010, 0x21D0, "LastMenstrualDate", A::Remove, DATES),
        row(
            0x0010,
            0x21F0,
            "PatientReligiousPreference",
            A::Remove,
            NONE,
        ),
        row(
            0x0010,
            0x2203,
            "PatientSexNeutered",
            A::RemoveOrEmpty,
            PATIENT,
        ),
        row(0x0010, 0x2297, "ResponsiblePerson", A::Remove, NONE),
        row(0x0010, 0x2299, "ResponsibleOrganization", A::Remove, NONE),
        row(0x0010, 0x4000, "PatientComments", A::Remove, DESCRIPTORS),
        row(
            0x0018,
            0x0010,
            "ContrastBolusAgent",
            A::EmptyOrDummy,
            DESCRIPTORS,
        ),
        row(
            0x0018,
            0x1000,
            "DeviceSerialNumber",
            A::RemoveOrEmptyOrDummy,
            NONE,
        ),
        row(0x0018, 0x1002, "DeviceUID", A::Uid, NONE),
        row(0x0018, 0x1004, "PlateID", A::Remove, NONE),
        row(0x0018, 0x1005, "GeneratorID", A::Remove, NONE),
        row(0x0018, 0x1007, "CassetteID", A::Remove, NONE),
        row(0x0018, 0x1008, "GantryID", A::Remove, NONE),
        row(0x0018, 0x100A, "UDISequence", A::Remove, NONE),
        row(0x0018, 0x1012, "DateOfSecondaryCapture", A::Remove, DATES),
        row(
            0x0018,
            0x1030,
            "ProtocolName",
            A::RemoveOrDummy,
            DESCRIPTORS,
        ),
        row(0x0018, 0x1042, "ContrastBolusStartTime", A::Remove, DATES),
        row(0x0018, 0x1043, "ContrastBolusStopTime", A::Remove, DATES),
        row(
            0x0018,
            0x1072,
            "RadiopharmaceuticalStartTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0018,
            0x1073,
            "RadiopharmaceuticalStopTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0018,
            0x1078,
            "RadiopharmaceuticalStartDateTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0018,
            0x1079,
            "RadiopharmaceuticalStopDateTime",
            A::Remove,
            DATES,
        ),
        row(0x0018, 0x1200, "DateOfLastCalibration", A::Remove, DATES),
        row(
            0x0018,
            0x1400,
            "AcquisitionDeviceProcessingDescription",
            A::RemoveOrDummy,
            DESCRIPTORS,
        ),
        row(0x0018, 0x2042, "TargetUID", A::Uid, NONE),
        row(
            0x0018,
            0x4000,
            "AcquisitionComments",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0018, 0x700A, "DetectorID", A::RemoveOrDummy, NONE),
        row(
            0x0018,
            0x700C,
            "DateOfLastDetectorCalibration",
            A::Dummy,
            DATES,
        ),
        row(
            0x0018,
            0x9074,
            "FrameAcquisitionDateTime",
            A::RemoveOrDummy,
            DATES,
        ),
        row(
            0x0018,
            0x9151,
            "FrameReferenceDateTime",
            A::RemoveOrDummy,
            DATES,
        ),
        row(
            0x0018,
            0x9424,
            "AcquisitionProtocolDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(
            0x0018,
            0x9516,
            "StartAcquisitionDateTime",
            A::RemoveOrDummy,
            DATES,
        ),
        row(
            0x0018,
            0x9517,
            "EndAcquisitionDateTime",
            A::RemoveOrDummy,
            DATES,
        ),
        row(0x0018, 0x9701, "DecayCorrectionDateTime", A::Remove, DATES),
        row(
            0x0018,
            0xA003,
            "ContributionDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0020, 0x000D, "StudyInstanceUID", A::Uid, NONE),
        row(0x0020, 0x000E, "SeriesInstanceUID", A::Uid, NONE),
        row(0x0020, 0x0010, "StudyID", A::Empty, NONE),
        row(0x0020, 0x0052, "FrameOfReferenceUID", A::Uid, NONE),
        row(
            0x0020,
            0x0200,
            "SynchronizationFrameOfReferenceUID",
            A::Uid,
            NONE,
        ),
        row(0x0020, 0x3401, "ModifyingDeviceID", A::Remove, NONE),
        row(
            0x0020,
            0x3404,
            "ModifyingDeviceManufacturer",
            A::Remove,
            NONE,
        ),
        row(
            0x0020,
            0x3406,
            "ModifiedImageDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0020, 0x4000, "ImageComments", A::Remove, DESCRIPTORS),
        row(0x0020, 0x9158, "FrameComments", A::Remove, DESCRIPTORS),
        row(0x0020, 0x9161, "ConcatenationUID", A::Uid, NONE),
        row(0x0020, 0x9164, "DimensionOrganizationUID", A::Uid, NONE),
        row(
            0x0028,
            0x1214,
            "LargePaletteColorLookupTableUID",
            A::Uid,
            NONE,
        ),
        row(
            0x0028,
            0x4000,
            "ImagePresentationComments",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0028, 0x7FE0, "PixelDataProviderURL", A::Remove, NONE),
        row(0x0032, 0x0012, "StudyIDIssuer", A::Remove, NONE),
        row(0x0032, 0x0032, "StudyVerifiedDate", A::Remove, DATES),
        row(0x0032, 0x0033, "StudyVerifiedTime", A::Remove, DATES),
        row(0x0032, 0x0034, "StudyReadDate", A::Remove, DATES),
        row(0x0032, 0x0035, "StudyReadTime", A::Remove, DATES),
        row(0x0032, 0x1000, "ScheduledStudyStartDate", A::Remove, DATES),
        row(0x0032, 0x1001, "ScheduledStudyStartTime", A::Remove, DATES),
        row(0x0032, 0x1020, "ScheduledStudyLocation", A::Remove, NONE),
        row(
            0x0032,
            0x1021,
            "ScheduledStudyLocationAETitle",
            A::Remove,
            NONE,
        ),
        row(0x0032, 0x1030, "ReasonForStudy", A::Remove, DESCRIPTORS),
        row(0x0032, 0x1032, "RequestingPhysician", A::Remove, NONE),
        row(0x0032, 0x1033, "RequestingService", A::Remove, NONE),
        row(0x0032, 0x1040, "StudyArrivalDate", A::Remove, DATES),
        row(0x0032, 0x1041, "StudyArrivalTime", A::Remove, DATES),
        row(0x0032, 0x1050, "StudyCompletionDate", A::Remove, DATES),
        row(0x0032, 0x1051, "StudyCompletionTime", A::Remove, DATES),
        row(
            0x0032,
            0x1060,
            "RequestedProcedureDescription",
            A::RemoveOrEmpty,
            DESCRIPTORS,
        ),
        row(
            0x0032,
            0x1070,
            "RequestedContrastAgent",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0032, 0x4000, "StudyComments", A::Remove, DESCRIPTORS),
        row(
            0x0038,
            0x0004,
            "ReferencedPatientAliasSequence",
            A::Remove,
            NONE,
        ),
        row(0x0038, 0x0010, "AdmissionID", A::Remove, NONE),
        row(0x0038, 0x0011, "IssuerOfAdmissionID", A::Remove, NONE),
        row(
            0x0038,
            0x0014,
            "IssuerOfAdmissionIDSequence",
            A::Remove,
            NONE,
        ),
        row(0x0038, 0x0016, "RouteOfAdmissions", A::Remove, NONE),
        row(
            0x0038,
            0x001E,
            "ScheduledPatientInstitutionResidence",
            A::Remove,
            NONE,
        ),
        row(0x0038, 0x0020, "AdmittingDate", A::Remove, DATES),
        row(0x0038, 0x0021, "AdmittingTime", A::Remove, DATES),
        row(
            0x0038,
            0x0040,
            "DischargeDiagnosisDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0038, 0x0050, "SpecialNeeds", A::Remove, DESCRIPTORS),
        row(0x0038, 0x0060, "ServiceEpisodeID", A::Remove, NONE),
        row(0x0038, 0x0061, "IssuerOfServiceEpisodeID", A::Remove, NONE),
        row(
            0x0038,
            0x0062,
            "ServiceEpisodeDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0038, 0x0300, "CurrentPatientLocation", A::Remove, NONE),
        row(
            0x0038,
            0x0400,
            "PatientInstitutionResidence",
            A::Remove,
            NONE,
        ),
        row(0x0038, 0x0500, "PatientState", A::Remove, DESCRIPTORS),
        row(0x0038, 0x4000, "VisitComments", A::Remove, DESCRIPTORS),
        row(0x0040, 0x0001, "ScheduledStationAETitle", A::Remove, NONE),
        row(
            0x0040,
            0x0002,
            "ScheduledProcedureStepStartDate",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x0003,
            "ScheduledProcedureStepStartTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x0004,
            "ScheduledProcedureStepEndDate",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x0005,
            "ScheduledProcedureStepEndTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x0006,
            "ScheduledPerformingPhysicianName",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x0007,
            "ScheduledProcedureStepDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0040, 0x0009, "ScheduledProcedureStepID", A::Remove, NONE),
        row(
            0x0040,
            0x000B,
            "ScheduledPerformingPhysicianIdentificationSequence",
            A::Remove,
            NONE,
        ),
        row(0x0040, 0x0010, "ScheduledStationName", A::Remove, NONE),
        row(
            0x0040,
            0x0011,
            "ScheduledProcedureStepLocation",
            A::Remove,
            NONE,
        ),
        row(0x0040, 0x0012, "PreMedication", A::Remove, NONE),
        row(0x0040, 0x0241, "PerformedStationAETitle", A::Remove, NONE),
        row(0x0040, 0x0242, "PerformedStationName", A::Remove, NONE),
        row(0x0040, 0x0243, "PerformedLocation", A::Remove, NONE),
        row(
            0x0040,
            0x0244,
            "PerformedProcedureStepStartDate",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x0245,
            "PerformedProcedureStepStartTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x0250,
            "PerformedProcedureStepEndDate",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x0251,
            "PerformedProcedureStepEndTime",
            A::Remove,
            DATES,
        ),
        row(0x0040, 0x0253, "PerformedProcedureStepID", A::Remove, NONE),
        row(
            0x0040,
            0x0254,
            "PerformedProcedureStepDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0040, 0x0275, "RequestAttributesSequence", A::Remove, NONE),
        row(
            0x0040,
            0x0280,
            "CommentsOnThePerformedProcedureStep",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0040, 0x0512, "ContainerIdentifier", A::Dummy, NONE),
        row(0x0040, 0x0551, "SpecimenIdentifier", A::Dummy, NONE),
        row(0x0040, 0x0554, "SpecimenUID", A::Uid, NONE),
        row(
            0x0040,
            0x0555,
            "AcquisitionContextSequence",
            A::Remove,
            NONE,
        ),
        row(0x0040, 0x1001, "RequestedProcedureID", A::Remove, NONE),
        row(
            0x0040,
            0x1002,
            "ReasonForTheRequestedProcedure",
            A::Remove,
            DESCRIPTORS,
        ),
        row(
            0x0040,
            0x1004,
            "PatientTransportArrangements",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x1005,
            "RequestedProcedureLocation",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x1010,
            "NamesOfIntendedRecipientsOfResults",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x1011,
            "IntendedRecipientsOfResultsIdentificationSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x1101,
            "PersonIdentificationCodeSequence",
            A::Dummy,
            NONE,
        ),
        row(0x0040, 0x1102, "PersonAddress", A::Remove, NONE),
        row(0x0040, 0x1103, "PersonTelephoneNumbers", A::Remove, NONE),
        row(0x0040, 0x1104, "PersonTelecomInformation", A::Remove, NONE),
        row(
            0x0040,
            0x1400,
            "RequestedProcedureComments",
            A::Remove,
            DESCRIPTORS,
        ),
        row(
            0x0040,
            0x2001,
            "ReasonForTheImagingServiceRequest",
            A::Remove,
            DESCRIPTORS,
        ),
        row(0x0040, 0x2008, "OrderEnteredBy", A::Remove, NONE),
        row(0x0040, 0x2009, "OrderEntererLocation", A::Remove, NONE),
        row(0x0040, 0x2010, "OrderCallbackPhoneNumber", A::Remove, NONE),
        row(
            0x0040,
            0x2011,
            "OrderCallbackTelecomInformation",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x2016,
            "PlacerOrderNumberImagingServiceRequest",
            A::Empty,
            NONE,
        ),
        row(
            0x0040,
            0x2017,
            "FillerOrderNumberImagingServiceRequest",
            A::Empty,
            NONE,
        ),
        row(
            0x0040,
            0x2400,
            "ImagingServiceRequestComments",
            A::Remove,
            DESCRIPTORS,
        ),
        row(
            0x0040,
            0x3001,
            "ConfidentialityConstraintOnPatientDataDescription",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x4005,
            "ScheduledProcedureStepStartDateTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x4010,
            "ScheduledProcedureStepModificationDateTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x4011,
            "ExpectedCompletionDateTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x4023,
            "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID",
            A::Uid,
            NONE,
        ),
        row(
            0x0040,
            0x4025,
            "ScheduledStationNameCodeSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x4027,
            "ScheduledStationGeographicLocationCodeSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x4028,
            "PerformedStationNameCodeSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x4030,
            "PerformedStationGeographicLocationCodeSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x4034,
            "ScheduledHumanPerformersSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x4035,
            "ActualHumanPerformersSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0x4036,
            "HumanPerformerOrganization",
            A::Remove,
            NONE,
        ),
        row(0x0040, 0x4037, "HumanPerformerName", A::Remove, NONE),
        row(
            0x0040,
            0x4050,
            "PerformedProcedureStepStartDateTime",
            A::Remove,
            DATES,
        ),
        row(
            0x0040,
            0x4051,
            "PerformedProcedureStepEndDateTime",
            A::Remove,
            DATES,
        ),
        row(0x0040, 0xA027, "VerifyingOrganization", A::Remove, NONE),
        row(0x0040, 0xA073, "VerifyingObserverSequence", A::Dummy, NONE),
        row(0x0040, 0xA075, "VerifyingObserverName", A::Dummy, NONE),
        row(0x0040, 0xA078, "AuthorObserverSequence", A::Remove, NONE),
        row(0x0040, 0xA07A, "ParticipantSequence", A::Remove, NONE),
        row(
            0x0040,
            0xA07C,
            "CustodialOrganizationSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0xA088,
            "VerifyingObserverIdentificationCodeSequence",
            A::Empty,
            NONE,
        ),
        row(0x0040, 0xA120, "DateTime", A::Dummy, DATES),
        row(0x0040, 0xA121, "Date", A::Dummy, DATES),
        row(0x0040, 0xA122, "Time", A::Dummy, DATES),
        row(0x0040, 0xA123, "PersonName", A::Dummy, NONE),
        row(0x0040, 0xA124, "UID", A::Uid, NONE),
        row(0x0040, 0xA160, "TextValue", A::Remove, DESCRIPTORS),
        row(0x0040, 0xA171, "ObservationUID", A::Uid, NONE),
        row(
            0x0040,
            0xA172,
            "ReferencedObservationUIDTrial",
            A::Uid,
            NONE,
        ),
        row(0x0040, 0xA192, "ObservationDateTrial", A::Remove, DATES),
        row(0x0040, 0xA193, "ObservationTimeTrial", A::Remove, DATES),
        row(0x0040, 0xA307, "CurrentObserverTrial", A::Remove, NONE),
        row(
            0x0040,
            0xA360,
            "PredecessorDocumentsSequence",
            A::Remove,
            NONE,
        ),
        row(0x0040, 0xA370, "ReferencedRequestSequence", A::Remove, NONE),
        row(
            0x0040,
            0xA375,
            "CurrentRequestedProcedureEvidenceSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0xA385,
            "PertinentOtherEvidenceSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0040,
            0xA525,
            "IdenticalDocumentsSequence",
            A::Remove,
            NONE,
        ),
        row(0x0040, 0xA730, "ContentSequence", A::Remove, NONE),
        row(
            0x0040,
            0xDB0C,
            "TemplateExtensionOrganizationUID",
            A::Uid,
            NONE,
        ),
        row(0x0040, 0xDB0D, "TemplateExtensionCreatorUID", A::Uid, NONE),
        row(0x0050, 0x0020, "DeviceDescription", A::Remove, NONE),
        row(0x0064, 0x0003, "SourceFrameOfReferenceUID", A::Uid, NONE),
        row(0x0070, 0x0001, "GraphicAnnotationSequence", A::Dummy, NONE),
        row(0x0070, 0x0084, "ContentCreatorName", A::Empty, NONE),
        row(
            0x0070,
            0x0086,
            "ContentCreatorIdentificationCodeSequence",
            A::Remove,
            NONE,
        ),
        row(0x0070, 0x031A, "FiducialUID", A::Uid, NONE),
        row(
            0x0070,
            0x1101,
            "PresentationDisplayCollectionUID",
            A::Uid,
            NONE,
        ),
        row(
            0x0070,
            0x1102,
            "PresentationSequenceCollectionUID",
            A::Uid,
            NONE,
        ),
        row(0x0088, 0x0140, "StorageMediaFileSetUID", A::Uid, NONE),
        row(0x0088, 0x0200, "IconImageSequence", A::Remove, NONE),
        row(0x0088, 0x0904, "TopicTitle", A::Remove, NONE),
        row(0x0088, 0x0906, "TopicSubject", A::Remove, NONE),
        row(0x0088, 0x0910, "TopicAuthor", A::Remove, NONE),
        row(0x0088, 0x0912, "TopicKeywords", A::Remove, NONE),
        row(0x0400, 0x0100, "DigitalSignatureUID", A::Remove, NONE),
        row(
            0x0400,
            0x0402,
            "ReferencedDigitalSignatureSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0400,
            0x0403,
            "ReferencedSOPInstanceMACSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0400,
            0x0550,
            "ModifiedAttributesSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x0400,
            0x0561,
            "OriginalAttributesSequence",
            A::Remove,
            NONE,
        ),
        row(0x2030, 0x0020, "TextString", A::Remove, DESCRIPTORS),
        row(0x3006, 0x0002, "StructureSetLabel", A::Dummy, NONE),
        row(0x3006, 0x0004, "StructureSetName", A::Remove, DESCRIPTORS),
        row(0x3006, 0x0008, "StructureSetDate", A::Remove, DATES),
        row(0x3006, 0x0009, "StructureSetTime", A::Remove, DATES),
        row(
            0x3006,
            0x0024,
            "ReferencedFrameOfReferenceUID",
            A::Uid,
            NONE,
        ),
        row(0x3006, 0x00C2, "RelatedFrameOfReferenceUID", A::Uid, NONE),
        row(0x3008, 0x0054, "FirstTreatmentDate", A::Remove, DATES),
        row(0x3008, 0x0105, "SourceSerialNumber", A::Remove, NONE),
        row(0x3008, 0x0250, "TreatmentDate", A::Remove, DATES),
        row(0x3008, 0x0251, "TreatmentTime", A::Remove, DATES),
        row(0x300A, 0x0002, "RTPlanLabel", A::Dummy, NONE),
        row(0x300A, 0x0003, "RTPlanName", A::Remove, DESCRIPTORS),
        row(0x300A, 0x0006, "RTPlanDate", A::Remove, DATES),
        row(0x300A, 0x0007, "RTPlanTime", A::Remove, DATES),
        row(0x300A, 0x0013, "DoseReferenceUID", A::Uid, NONE),
        row(0x300E, 0x0008, "ReviewerName", A::RemoveOrEmpty, NONE),
        row(0x4000, 0x0010, "Arbitrary", A::Remove, NONE),
        row(0x4000, 0x4000, "TextComments", A::Remove, DESCRIPTORS),
        row(0x4008, 0x0042, "ResultsIDIssuer", A::Remove, NONE),
        row(0x4008, 0x0102, "InterpretationRecorder", A::Remove, NONE),
        row(0x4008, 0x010A, "InterpretationTranscriber", A::Remove, NONE),
        row(0x4008, 0x010B, "InterpretationText", A::Remove, DESCRIPTORS),
        row(0x4008, 0x010C, "InterpretationAuthor", A::Remove, NONE),
        row(
            0x4008,
            0x0111,
            "InterpretationApproverSequence",
            A::Remove,
            NONE,
        ),
        row(
            0x4008,
            0x0114,
            "PhysicianApprovingInterpretation",
            A::Remove,
            NONE,
        ),
        row(
            0x4008,
            0x0115,
            "InterpretationDiagnosisDescription",
            A::Remove,
            DESCRIPTORS,
        ),
        row(
            0x4008,
            0x0118,
            "ResultsDistributionListSequence",
            A::Remove,
            NONE,
        ),
        row(0x4008, 0x0119, "DistributionName", A::Remove, NONE),
        row(0x4008, 0x011A, "DistributionAddress", A::Remove, NONE),
        row(0x4008, 0x0202, "InterpretationIDIssuer", A::Remove, NONE),
        row(0x4008, 0x0300, "Impressions", A::Remove, DESCRIPTORS),
        row(0x4008, 0x4000, "ResultsComments", A::Remove, DESCRIPTORS),
        row(0x4FFE, 0x0001, "MACParametersSequence", A::Remove, NONE),
        row(0xFFFA, 0xFFFA, "DigitalSignaturesSequence", A::Remove, NONE),
        row(0xFFFC, 0xFFFC, "DataSetTrailingPadding", A::Remove, NONE),
    ]
};

// ---------------------------------------------------------------------------------------------
// input

fn parse_part10(bytes: &[u8]) -> Result<FileObject, DeidError> {
    let start = if bytes.get(..4) == Some(b"DICM".as_slice()) {
        0
    } else if bytes.get(128..132) == Some(b"DICM".as_slice()) {
        128
    } else {
        return Err(DeidError::Input(DicomError::NotPart10(
            "no DICM magic at byte 0 or 128".into(),
        )));
    };
    let layout = crate::part10::read_layout(bytes).map_err(DeidError::Input)?;
    let dataset = usize::try_from(layout.dataset_offset)
        .ok()
        .and_then(|offset| bytes.get(offset..))
        .ok_or_else(|| DeidError::Input(DicomError::NotPart10("data set offset".into())))?;
    crate::wire::check_structure(dataset, layout.meta.transfer_syntax())
        .map_err(DeidError::Input)?;
    let from = bytes.get(start..).unwrap_or_default();
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(from)
        .map_err(|e| DeidError::Parse(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// attributes

/// What is done to one element, after the options are applied to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Remove,
    Empty,
    Dummy,
    Keep,
    Uid,
    ShiftDate,
}

fn basic_op(action: Action) -> Op {
    match action.resolved() {
        Action::Remove => Op::Remove,
        Action::Dummy => Op::Dummy,
        Action::Uid => Op::Uid,
        Action::Keep => Op::Keep,
        // `C` and `Z` (and nothing else: `resolved` returns simple codes)
        _ => Op::Empty,
    }
}

struct Walker<'a> {
    opts: &'a DeidOptions,
    shift_days: Option<i32>,
    report: &'a mut DeidReport,
    patient_name: String,
    patient_id: String,
}

impl Walker<'_> {
    fn op_for(&self, row: &ProfileRow) -> Op {
        match (row.option, self.opts) {
            (Some(ProfileOption::RetainLongitudinalModifiedDates), _)
                if self.shift_days.is_some() =>
            {
                Op::ShiftDate
            }
            (Some(ProfileOption::CleanDescriptors), o) if o.descriptors == Descriptors::Clean => {
                Op::Empty
            }
            (Some(ProfileOption::RetainPatientCharacteristics), o)
                if o.patient_characteristics == PatientCharacteristics::Retain =>
            {
                Op::Keep
            }
            _ => basic_op(row.action),
        }
    }

    fn dataset(
        &mut self,
        obj: InMemDicomObject,
        depth: usize,
    ) -> Result<InMemDicomObject, DeidError> {
        let mut out = InMemDicomObject::new_empty();
        for element in obj {
            if let Some(kept) = self.element(element, depth)? {
                out.put(kept);
            }
        }
        Ok(out)
    }

    fn element(
        &mut self,
        element: InMemElement,
        depth: usize,
    ) -> Result<Option<InMemElement>, DeidError> {
        let tag = element.tag();
        let vr = element.vr();
        if tag.group() % 2 == 1 || tag.element() == 0 || is_curve_or_overlay(tag) {
            self.report.removed += 1;
            return Ok(None);
        }
        if depth == 0 && tag == tags::PATIENT_NAME {
            self.report.replaced += 1;
            return Ok(Some(str_element(tag, vr, &self.patient_name)));
        }
        if depth == 0 && tag == tags::PATIENT_ID {
            self.report.replaced += 1;
            return Ok(Some(str_element(tag, vr, &self.patient_id)));
        }
        let Some(row) = profile_row(tag) else {
            return self.keep(element, depth).map(Some);
        };
        let op = self.op_for(row);
        self.apply(op, row, element, depth)
    }

    fn apply(
        &mut self,
        op: Op,
        row: &ProfileRow,
        element: InMemElement,
        depth: usize,
    ) -> Result<Option<InMemElement>, DeidError> {
        let tag = element.tag();
        let vr = element.vr();
        match op {
            Op::Remove => {
                self.report.removed += 1;
                Ok(None)
            }
            Op::Empty => {
                self.report.emptied += 1;
                Ok(Some(empty_element(tag, vr)))
            }
            Op::Keep => self.keep(element, depth).map(Some),
            Op::Dummy if vr == VR::SQ => {
                // a dummy sequence: its items, de-identified
                self.report.replaced += 1;
                self.keep(element, depth).map(Some)
            }
            Op::Dummy if vr != VR::UI => {
                self.report.replaced += 1;
                Ok(Some(dummy_element(tag, vr)))
            }
            Op::Dummy | Op::Uid => {
                if vr == VR::SQ {
                    return self.keep(element, depth).map(Some);
                }
                if vr == VR::UN {
                    // UIDs we cannot read cannot be remapped, and must not stay
                    self.report.removed += 1;
                    return Ok(None);
                }
                self.remap(element).map(Some)
            }
            Op::ShiftDate => {
                let Some(days) = self.shift_days else {
                    return self.apply(basic_op(row.action), row, element, depth);
                };
                if vr == VR::UN {
                    return self.apply(basic_op(row.action), row, element, depth);
                }
                if !matches!(vr, VR::DA | VR::DT) {
                    // times (TM) and time zone offsets are kept by the option
                    return self.keep(element, depth).map(Some);
                }
                match shift_element(&element, days) {
                    Some(shifted) => {
                        self.report.dates_shifted += 1;
                        Ok(Some(shifted))
                    }
                    // not a date we can read: no safe way to keep it
                    None => self.apply(basic_op(row.action), row, element, depth),
                }
            }
        }
    }

    /// Keep an element; a sequence keeps its items, each de-identified.
    fn keep(&mut self, element: InMemElement, depth: usize) -> Result<InMemElement, DeidError> {
        let tag = element.tag();
        let vr = element.vr();
        match element.into_value() {
            Value::Sequence(seq) => {
                if depth + 1 > MAX_DEPTH {
                    return Err(DeidError::TooDeep { tag });
                }
                let length = seq.length();
                let mut items = Vec::with_capacity(seq.items().len());
                for item in seq.into_items() {
                    items.push(self.dataset(item, depth + 1)?);
                }
                // item lengths changed: write the sequence with undefined length unless empty
                let length = if items.is_empty() {
                    length
                } else {
                    Length::UNDEFINED
                };
                Ok(DataElement::new(
                    tag,
                    vr,
                    Value::new_sequence(items, length),
                ))
            }
            value => Ok(DataElement::new(tag, vr, value)),
        }
    }

    /// Replace every UID value of a UI element by [`remap_uid`] (well-known UIDs kept).
    fn remap(&mut self, element: InMemElement) -> Result<InMemElement, DeidError> {
        let tag = element.tag();
        let vr = element.vr();
        if element.value().multiplicity() == 0 {
            return Ok(element);
        }
        let values = element.to_multi_str().map_err(|e| DeidError::Attribute {
            tag,
            reason: format!("a UID to remap is not text: {e}"),
        })?;
        let mut out = Vec::with_capacity(values.len());
        for value in values.iter() {
            let value = trim_value(value);
            if value.is_empty() || value.starts_with("1.2.840.10008.") {
                out.push(value.to_owned());
            } else {
                self.report.uids_remapped += 1;
                out.push(remap_uid(&self.opts.salt, value));
            }
        }
        Ok(DataElement::new(
            tag,
            vr,
            PrimitiveValue::Strs(out.into_iter().collect()),
        ))
    }
}

fn is_curve_or_overlay(tag: Tag) -> bool {
    let g = tag.group();
    (0x5000..=0x501E).contains(&g) || (0x6000..=0x601E).contains(&g)
}

fn trim_value(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

fn str_element(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn empty_element(tag: Tag, vr: VR) -> InMemElement {
    if vr == VR::SQ {
        DataElement::new(
            tag,
            vr,
            Value::new_sequence(Vec::<InMemDicomObject>::new(), Length(0)),
        )
    } else {
        DataElement::new(tag, vr, PrimitiveValue::Empty)
    }
}

/// A dummy value of the element's VR (PS3.15 E.1.1 `D`): non-empty, valid, meaningless.
fn dummy_element(tag: Tag, vr: VR) -> InMemElement {
    let text = |s: &str| DataElement::new(tag, vr, PrimitiveValue::from(s));
    match vr {
        VR::AE => text("ANONYMOUS"),
        VR::AS => text("000D"),
        VR::CS | VR::LO | VR::LT | VR::SH | VR::ST | VR::UC | VR::UT | VR::PN => text("ANONYMIZED"),
        VR::DA => text("19000101"),
        VR::DT => text("19000101000000"),
        VR::TM => text("000000"),
        VR::DS | VR::IS => text("0"),
        VR::US => DataElement::new(tag, vr, PrimitiveValue::from(0u16)),
        VR::SS => DataElement::new(tag, vr, PrimitiveValue::from(0i16)),
        VR::UL => DataElement::new(tag, vr, PrimitiveValue::from(0u32)),
        VR::SL => DataElement::new(tag, vr, PrimitiveValue::from(0i32)),
        VR::UV => DataElement::new(tag, vr, PrimitiveValue::from(0u64)),
        VR::SV => DataElement::new(tag, vr, PrimitiveValue::from(0i64)),
        VR::FL => DataElement::new(tag, vr, PrimitiveValue::from(0f32)),
        VR::FD => DataElement::new(tag, vr, PrimitiveValue::from(0f64)),
        // binary, UR, AT, UN: nothing meaningful fits; an empty value carries nothing
        _ => empty_element(tag, vr),
    }
}

/// Record how the object was de-identified (PS3.15 E.1.1 items 6 and 7, CID 7050).
fn record_method(
    out: &mut InMemDicomObject,
    opts: &DeidOptions,
    dates_shifted: bool,
    pixels_cleaned: bool,
) {
    let mut codes = vec![("113100", "Basic Application Confidentiality Profile")];
    if dates_shifted {
        codes.push((
            "113107",
            "Retain Longitudinal Temporal Information Modified Dates Option",
        ));
    }
    if opts.descriptors == Descriptors::Clean {
        codes.push(("113105", "Clean Descriptors Option"));
    }
    if opts.patient_characteristics == PatientCharacteristics::Retain {
        codes.push(("113108", "Retain Patient Characteristics Option"));
    }
    if pixels_cleaned {
        codes.push(("113101", "Clean Pixel Data Option"));
    }

    let mut methods: Vec<String> = out
        .get(tags::DEIDENTIFICATION_METHOD)
        .and_then(|e| e.to_multi_str().ok())
        .map(|v| {
            v.iter()
                .map(|s| trim_value(s).to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    methods.push("RADRIS PS3.15 Annex E Basic Profile".to_owned());
    methods.extend(
        codes
            .iter()
            .skip(1)
            .map(|(_, meaning)| (*meaning).to_owned()),
    );
    out.put(DataElement::new(
        tags::DEIDENTIFICATION_METHOD,
        VR::LO,
        PrimitiveValue::Strs(methods.into_iter().collect()),
    ));

    let mut items: Vec<InMemDicomObject> = out
        .get(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
        .and_then(|e| e.items())
        .map(|items| items.to_vec())
        .unwrap_or_default();
    for (value, meaning) in codes {
        let mut item = InMemDicomObject::new_empty();
        item.put(str_element(tags::CODE_VALUE, VR::SH, value));
        item.put(str_element(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"));
        item.put(str_element(tags::CODE_MEANING, VR::LO, meaning));
        items.push(item);
    }
    out.put(DataElement::new(
        tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
        VR::SQ,
        Value::new_sequence(items, Length::UNDEFINED),
    ));
    out.put(str_element(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"));
    out.put(str_element(
        tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
        VR::CS,
        if dates_shifted { "MODIFIED" } else { "REMOVED" },
    ));
}

// ---------------------------------------------------------------------------------------------
// dates

fn shift_element(element: &InMemElement, days: i32) -> Option<InMemElement> {
    let vr = element.vr();
    if element.value().multiplicity() == 0 {
        return Some(element.clone());
    }
    let values = element.to_multi_str().ok()?;
    let shifted = values
        .iter()
        .map(|v| match vr {
            VR::DA => shift_date(trim_value(v), days),
            _ => shift_datetime(trim_value(v), days),
        })
        .collect::<Option<Vec<String>>>()?;
    Some(DataElement::new(
        element.tag(),
        vr,
        PrimitiveValue::Strs(shifted.into_iter().collect()),
    ))
}

/// Shift a DA value (`YYYYMMDD`, or the ACR-NEMA `YYYY.MM.DD`) by `days`; `None` when it is
/// not a valid date. An empty value stays empty.
fn shift_date(value: &str, days: i32) -> Option<String> {
    if value.is_empty() {
        return Some(String::new());
    }
    let digits: Cow<str> = if value.len() == 10 && value.as_bytes().get(4) == Some(&b'.') {
        Cow::Owned(value.replace('.', ""))
    } else {
        Cow::Borrowed(value)
    };
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = parse_ymd(&digits)?;
    format_shifted(y, m, d, days)
}

/// Shift the date part of a DT value (`YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]`) by `days`,
/// keeping its precision and everything after the date. Year or month precision is shifted
/// from the first day of the period.
fn shift_datetime(value: &str, days: i32) -> Option<String> {
    if value.is_empty() {
        return Some(String::new());
    }
    let digits = value.bytes().take_while(|b| b.is_ascii_digit()).count();
    let precision = match digits {
        4 | 5 => 4,
        6 | 7 => 6,
        n if n >= 8 => 8,
        _ => return None,
    };
    let date = value.get(..precision)?;
    let rest = value.get(precision..)?;
    let padded = match precision {
        4 => format!("{date}0101"),
        6 => format!("{date}01"),
        _ => date.to_owned(),
    };
    let (y, m, d) = parse_ymd(&padded)?;
    let shifted = format_shifted(y, m, d, days)?;
    Some(format!("{}{rest}", shifted.get(..precision)?))
}

fn parse_ymd(s: &str) -> Option<(i64, u32, u32)> {
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(4..6)?.parse().ok()?;
    let d: u32 = s.get(6..8)?.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some((y, m, d))
}

fn format_shifted(y: i64, m: u32, d: u32, days: i32) -> Option<String> {
    let (y, m, d) = civil_from_days(days_from_civil(y, m, d) + i64::from(days));
    (0..=9999)
        .contains(&y)
        .then(|| format!("{y:04}{m:02}{d:02}"))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------------
// keyed hashing

/// HMAC-SHA-256 (RFC 2104) of the concatenated `parts` under `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn pseudonym_hex(salt: &[u8], patient_id: &str) -> String {
    let mac = hmac_sha256(
        salt,
        &[b"radris-deid/patient\0", trim_value(patient_id).as_bytes()],
    );
    hex::encode_upper(&mac[..8])
}

// ---------------------------------------------------------------------------------------------
// pixel data

/// Transfer syntaxes whose Pixel Data is native and little endian once parsed.
fn native_little_endian(ts: &str) -> bool {
    matches!(
        trim_value(ts),
        uids::IMPLICIT_VR_LITTLE_ENDIAN
            | uids::EXPLICIT_VR_LITTLE_ENDIAN
            | uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    )
}

/// Blank `regions` in every frame. Returns the object, the number of frames cleaned and
/// whether the pixel data had to be decoded first.
fn clean_pixels(obj: FileObject, regions: &[Region]) -> Result<(FileObject, u32, bool), DeidError> {
    if regions.is_empty() || obj.get(tags::PIXEL_DATA).is_none() {
        return Ok((obj, 0, false));
    }
    let native = native_little_endian(obj.meta().transfer_syntax())
        && obj
            .get(tags::PIXEL_DATA)
            .is_some_and(|e| matches!(e.value(), Value::Primitive(_)));
    let (mut obj, decoded) = if native {
        (obj, false)
    } else {
        let bytes = pixel::to_explicit_vr_le(&obj)?;
        (parse_part10(&bytes)?, true)
    };
    let info = pixel::pixel_info(&obj)?;
    let layout = PixelLayout::new(&info)?;
    let Some(element) = obj.take(tags::PIXEL_DATA) else {
        return Err(PixelError::NoPixelData.into());
    };
    let vr = element.vr();
    let mut data = match element.into_value() {
        Value::Primitive(p) => little_endian_bytes(p)?,
        _ => {
            return Err(DeidError::Attribute {
                tag: tags::PIXEL_DATA,
                reason: "still encapsulated after decoding".into(),
            });
        }
    };
    let needed = layout
        .frame_bits
        .saturating_mul(u64::from(info.number_of_frames))
        .div_ceil(8);
    if (data.len() as u64) < needed {
        return Err(PixelError::Truncated {
            frame: info.number_of_frames,
            start: 0,
            end: needed,
            available: data.len() as u64,
        }
        .into());
    }
    let mut cleaned = 0;
    for frame in 0..info.number_of_frames {
        if layout.blank_frame(&mut data, frame, regions)? {
            cleaned += 1;
        }
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        vr,
        PrimitiveValue::U8(data.into()),
    ));
    Ok((obj, cleaned, decoded))
}

/// The little-endian bytes of a native Pixel Data value, whatever type dicom-rs read it as.
fn little_endian_bytes(value: PrimitiveValue) -> Result<Vec<u8>, DeidError> {
    use PrimitiveValue as P;
    Ok(match value {
        P::Empty => Vec::new(),
        P::U8(v) => v.into_vec(),
        P::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        P::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        _ => {
            return Err(DeidError::Attribute {
                tag: tags::PIXEL_DATA,
                reason: "Pixel Data holds text".into(),
            });
        }
    })
}

/// Where the samples of native frames are.
struct PixelLayout {
    rows: u64,
    columns: u64,
    samples: u64,
    /// Bytes per sample; 0 for Bits Allocated 1.
    sample_bytes: u64,
    planar: bool,
    bits_stored: u32,
    signed: bool,
    frame_bits: u64,
}

impl PixelLayout {
    fn new(info: &pixel::PixelInfo) -> Result<Self, PixelError> {
        let unsupported = |what: String| Err(PixelError::UnsupportedFormat(what));
        if info.rows == 0 || info.columns == 0 {
            return unsupported(format!("{} x {} pixels", info.rows, info.columns));
        }
        if !matches!(info.bits_allocated, 1 | 8 | 16 | 32) {
            return unsupported(format!("Bits Allocated {}", info.bits_allocated));
        }
        if !matches!(info.samples_per_pixel, 1 | 3)
            || (info.bits_allocated == 1 && info.samples_per_pixel != 1)
        {
            return unsupported(format!(
                "Samples per Pixel {} with Bits Allocated {}",
                info.samples_per_pixel, info.bits_allocated
            ));
        }
        if matches!(
            info.photometric.as_str(),
            "YBR_FULL_422" | "YBR_PARTIAL_422"
        ) {
            return unsupported(format!("native {} (subsampled chroma)", info.photometric));
        }
        let bits_stored = u32::from(info.bits_stored.clamp(1, info.bits_allocated));
        let (rows, columns, samples) = (
            u64::from(info.rows),
            u64::from(info.columns),
            u64::from(info.samples_per_pixel),
        );
        Ok(PixelLayout {
            rows,
            columns,
            samples,
            sample_bytes: u64::from(info.bits_allocated / 8),
            planar: info.planar_configuration == 1,
            bits_stored,
            signed: info.pixel_representation == 1,
            frame_bits: rows * columns * samples * u64::from(info.bits_allocated),
        })
    }

    /// Blank the regions of frame `frame` (0-based); whether any pixel was inside.
    fn blank_frame(
        &self,
        data: &mut [u8],
        frame: u32,
        regions: &[Region],
    ) -> Result<bool, DeidError> {
        let clipped: Vec<(u64, u64, u64, u64)> = regions
            .iter()
            .filter_map(|r| {
                let x0 = u64::from(r.x).min(self.columns);
                let y0 = u64::from(r.y).min(self.rows);
                let x1 = (u64::from(r.x) + u64::from(r.width)).min(self.columns);
                let y1 = (u64::from(r.y) + u64::from(r.height)).min(self.rows);
                (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1))
            })
            .collect();
        if clipped.is_empty() {
            return Ok(false);
        }
        let pixels = self.rows * self.columns;
        let out_of_range = || DeidError::Attribute {
            tag: tags::PIXEL_DATA,
            reason: format!("frame {} lies outside the pixel data", frame + 1),
        };
        if self.sample_bytes == 0 {
            // Bits Allocated 1: bit i of the data set is pixel i, least significant bit first
            let first = u64::from(frame) * pixels;
            for &(x0, y0, x1, y1) in &clipped {
                for y in y0..y1 {
                    for x in x0..x1 {
                        let bit = first + y * self.columns + x;
                        let byte = usize::try_from(bit / 8).map_err(|_| out_of_range())?;
                        let b = data.get_mut(byte).ok_or_else(out_of_range)?;
                        *b &= !(1u8 << (bit % 8));
                    }
                }
            }
            return Ok(true);
        }
        let sb = self.sample_bytes as usize;
        let frame_start = u64::from(frame) * pixels * self.samples * self.sample_bytes;
        let frame_len = pixels * self.samples * self.sample_bytes;
        let range = usize::try_from(frame_start)
            .ok()
            .zip(usize::try_from(frame_start + frame_len).ok())
            .ok_or_else(out_of_range)?;
        let frame_data = data.get_mut(range.0..range.1).ok_or_else(out_of_range)?;
        let fill: [u8; 4] = if self.samples == 1 {
            self.minimum_sample(frame_data)
        } else {
            [0; 4]
        };
        let fill = fill.get(..sb).ok_or_else(out_of_range)?;
        for &(x0, y0, x1, y1) in &clipped {
            for s in 0..self.samples {
                for y in y0..y1 {
                    for x in x0..x1 {
                        let index = if self.planar {
                            s * pixels + y * self.columns + x
                        } else {
                            (y * self.columns + x) * self.samples + s
                        };
                        let at = usize::try_from(index * self.sample_bytes)
                            .map_err(|_| out_of_range())?;
                        frame_data
                            .get_mut(at..at + sb)
                            .ok_or_else(out_of_range)?
                            .copy_from_slice(fill);
                    }
                }
            }
        }
        Ok(true)
    }

    /// The stored bytes (little endian, padded to 4) of the smallest sample of a monochrome
    /// frame, comparing the Bits Stored value with its sign.
    fn minimum_sample(&self, frame: &[u8]) -> [u8; 4] {
        let sb = self.sample_bytes as usize;
        let mask: u32 = if self.bits_stored >= 32 {
            u32::MAX
        } else {
            (1u32 << self.bits_stored) - 1
        };
        let mut best: Option<(i64, [u8; 4])> = None;
        for chunk in frame.chunks_exact(sb) {
            let mut raw = [0u8; 4];
            if let Some(dst) = raw.get_mut(..sb) {
                dst.copy_from_slice(chunk);
            }
            let stored = u32::from_le_bytes(raw) & mask;
            let value = if self.signed
                && self.bits_stored < 64
                && stored >> (self.bits_stored - 1) & 1 == 1
            {
                i64::from(stored) - (1i64 << self.bits_stored)
            } else {
                i64::from(stored)
            };
            if best.is_none_or(|(v, _)| value < v) {
                best = Some((value, raw));
            }
        }
        best.map(|(_, raw)| raw).unwrap_or([0; 4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    use dicom_dictionary_std::StandardDataDictionary;
    use dicom_object::meta::FileMetaTableBuilder;

    const SALT: &[u8] = b"test salt, sixteen bytes or more";

    fn std_vr(tag: Tag) -> Option<VR> {
        StandardDataDictionary.by_tag(tag).map(|e| e.vr().relaxed())
    }

    fn file(obj: InMemDicomObject, ts: &str) -> FileObject {
        let sop_class =
            text(&obj, tags::SOP_CLASS_UID).unwrap_or_else(|| uids::CT_IMAGE_STORAGE.into());
        let sop = text(&obj, tags::SOP_INSTANCE_UID).unwrap_or_else(|| "1.2.3.999".into());
        obj.with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(sop)
                .transfer_syntax(ts)
                .source_application_entity_title("HOSPITAL_PACS"),
        )
        .unwrap()
    }

    fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
        obj.get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| trim_value(&s).to_owned())
    }

    fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
        obj.put(str_element(tag, vr, value));
    }

    fn item_with(elements: Vec<InMemElement>) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(elements)
    }

    fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
        DataElement::new(tag, VR::SQ, Value::new_sequence(items, Length::UNDEFINED))
    }

    /// A CT header with every row of Table E.1-1 filled with a recognisable value of its VR,
    /// plus references in sequences, a private block, an overlay and a curve.
    fn rich_instance(study: &str, sop: &str, patient_id: &str) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        for (n, row) in profile_table().iter().enumerate() {
            let Some(vr) = std_vr(row.tag) else { continue };
            let element = match vr {
                VR::SQ => seq(
                    row.tag,
                    vec![item_with(vec![str_element(
                        tags::CODE_VALUE,
                        VR::SH,
                        "SECRET",
                    )])],
                ),
                VR::DA => str_element(row.tag, vr, "20200115"),
                VR::DT => str_element(row.tag, vr, "20200115103000.5+0100"),
                VR::TM => str_element(row.tag, vr, "103000"),
                VR::UI => str_element(row.tag, vr, &format!("1.2.826.0.1.99.{n}")),
                VR::PN => str_element(row.tag, vr, "SECRET^PERSON"),
                VR::AS => str_element(row.tag, vr, "042Y"),
                VR::DS | VR::IS => str_element(row.tag, vr, "42"),
                VR::US => DataElement::new(row.tag, vr, PrimitiveValue::from(42u16)),
                VR::UL => DataElement::new(row.tag, vr, PrimitiveValue::from(42u32)),
                VR::FD => DataElement::new(row.tag, vr, PrimitiveValue::from(42f64)),
                VR::OB | VR::OW | VR::UN => {
                    DataElement::new(row.tag, vr, PrimitiveValue::U8(vec![1, 2].into()))
                }
                VR::AT => continue,
                _ => str_element(row.tag, vr, "SECRET"),
            };
            o.put(element);
        }
        put(&mut o, tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
        put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, sop);
        put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, study);
        put(
            &mut o,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &format!("{study}.1"),
        );
        put(
            &mut o,
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &format!("{study}.2"),
        );
        put(&mut o, tags::PATIENT_ID, VR::LO, patient_id);
        put(&mut o, tags::PATIENT_NAME, VR::PN, "DOE^JANE");
        put(&mut o, tags::STUDY_DESCRIPTION, VR::LO, "CT CHEST DOE JANE");
        put(&mut o, tags::MODALITY, VR::CS, "CT");
        put(&mut o, tags::BURNED_IN_ANNOTATION, VR::CS, "YES");
        // references: the instance UID is remapped, the class UID kept
        o.put(seq(
            tags::SOURCE_IMAGE_SEQUENCE,
            vec![item_with(vec![
                str_element(
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    uids::CT_IMAGE_STORAGE,
                ),
                str_element(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &format!("{study}.3.7"),
                ),
            ])],
        ));
        // an unlisted sequence: kept, the profile applies inside
        o.put(seq(
            tags::PERFORMED_PROTOCOL_CODE_SEQUENCE,
            vec![item_with(vec![
                str_element(tags::CODE_VALUE, VR::SH, "P1"),
                str_element(tags::INSTITUTION_NAME, VR::LO, "ST ELSEWHERE"),
                str_element(tags::OPERATORS_NAME, VR::PN, "OPERATOR^OTTO"),
                str_element(tags::STUDY_DATE, VR::DA, "20200115"),
            ])],
        ));
        put(&mut o, Tag(0x0009, 0x0010), VR::LO, "ACME PRIVATE");
        put(&mut o, Tag(0x0009, 0x1001), VR::LO, "DOE^JANE 1960");
        o.put(DataElement::new(
            Tag(0x6000, 0x0010),
            VR::US,
            PrimitiveValue::from(8u16),
        ));
        o.put(DataElement::new(
            Tag(0x6000, 0x3000),
            VR::OW,
            PrimitiveValue::U8(vec![0xFF; 8].into()),
        ));
        put(&mut o, Tag(0x5000, 0x0005), VR::US, "2");
        o
    }

    fn deid(
        obj: InMemDicomObject,
        opts: &DeidOptions,
    ) -> (InMemDicomObject, DeidReport, FileObject) {
        let (out, report) = deidentify(file(obj, uids::EXPLICIT_VR_LITTLE_ENDIAN), opts).unwrap();
        (out.clone().into_inner(), report, out)
    }

    fn codes(obj: &InMemDicomObject) -> Vec<String> {
        obj.get(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap_or_default()
            .iter()
            .filter_map(|i| text(i, tags::CODE_VALUE))
            .collect()
    }

    /// Assert every row of the table got its (resolved) action.
    fn check_rows(
        input: &InMemDicomObject,
        out: &InMemDicomObject,
        op_of: impl Fn(&ProfileRow) -> Op,
    ) {
        let mut wrong = Vec::new();
        for row in profile_table() {
            let Some(before) = input.get(row.tag) else {
                continue;
            };
            if [tags::PATIENT_NAME, tags::PATIENT_ID].contains(&row.tag) {
                continue; // pseudonyms, checked apart
            }
            let after = out.get(row.tag);
            let ok = match (op_of(row), after) {
                (Op::Remove, None) => true,
                (Op::Empty, Some(a)) => a.value().multiplicity() == 0,
                (Op::Keep, Some(a)) => a.value() == before.value() || a.vr() == VR::SQ,
                (Op::Dummy | Op::Uid, Some(a)) if a.vr() == VR::SQ => true,
                (Op::Dummy | Op::Uid | Op::ShiftDate, Some(a)) => {
                    a.value().multiplicity() > 0 && a.value() != before.value()
                }
                _ => false,
            };
            if !ok {
                wrong.push(format!(
                    "{} {} {:?} -> {:?}",
                    row.tag,
                    row.keyword,
                    op_of(row),
                    after
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "rows not handled as the table says:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn table_is_sorted_and_matches_the_dictionary() {
        let table = profile_table();
        assert!(table.len() > 300, "{} rows", table.len());
        for pair in table.windows(2) {
            assert!(
                pair[0].tag < pair[1].tag,
                "{} before {}",
                pair[0].keyword,
                pair[1].keyword
            );
        }
        let mismatched: Vec<String> = table
            .iter()
            .filter_map(|row| {
                let Some(alias) = StandardDataDictionary.by_tag(row.tag).map(|e| e.alias()) else {
                    return Some(format!(
                        "{} {} (not in the dictionary)",
                        row.tag, row.keyword
                    ));
                };
                (alias != row.keyword)
                    .then(|| format!("{} {} (dictionary: {alias})", row.tag, row.keyword))
            })
            .collect();
        assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
        assert_eq!(
            profile_row(tags::ACCESSION_NUMBER).map(|r| r.action),
            Some(Action::Empty)
        );
        assert_eq!(profile_row(tags::SOP_CLASS_UID), None);
    }

    #[test]
    fn compound_codes_resolve_to_the_least_destructive_conformant_choice() {
        assert_eq!(Action::EmptyOrDummy.resolved(), Action::Dummy);
        assert_eq!(Action::RemoveOrEmpty.resolved(), Action::Empty);
        assert_eq!(Action::RemoveOrDummy.resolved(), Action::Dummy);
        assert_eq!(Action::RemoveOrEmptyOrDummy.resolved(), Action::Empty);
        assert_eq!(Action::RemoveOrEmptyOrUid.resolved(), Action::Uid);
        assert_eq!(Action::Remove.resolved(), Action::Remove);
        assert_eq!(Action::RemoveOrEmptyOrUid.code(), "X/Z/U*");
    }

    #[test]
    fn basic_profile_applies_every_row() {
        let input = rich_instance("1.2.826.0.1.7", "1.2.826.0.1.7.9", "PID-123");
        let opts = DeidOptions::new(SALT);
        let (out, report, file) = deid(input.clone(), &opts);
        check_rows(&input, &out, |row| basic_op(row.action));

        // pseudonyms from the keyed hash of the Patient ID
        assert_eq!(
            text(&out, tags::PATIENT_ID),
            Some(pseudonymous_patient_id(SALT, "PID-123"))
        );
        assert_eq!(
            text(&out, tags::PATIENT_NAME),
            Some(pseudonymous_patient_name(SALT, "PID-123"))
        );
        assert!(!pseudonymous_patient_id(SALT, "PID-123").contains("123"));
        // spot checks of the table
        assert_eq!(text(&out, tags::ACCESSION_NUMBER).as_deref(), Some(""));
        assert_eq!(
            text(&out, tags::CONTENT_DATE).as_deref(),
            Some("19000101"),
            "Z/D -> D"
        );
        assert_eq!(
            text(&out, tags::INSTITUTION_NAME).as_deref(),
            Some(""),
            "X/Z/D -> Z"
        );
        assert!(out.get(tags::STUDY_DESCRIPTION).is_none());
        assert!(
            out.get(tags::OTHER_PATIENT_I_DS_SEQUENCE).is_none(),
            "X on a sequence"
        );
        assert_eq!(
            text(&out, tags::SOP_CLASS_UID).as_deref(),
            Some(uids::CT_IMAGE_STORAGE)
        );
        // private, overlay and curve groups gone
        assert!(out.iter().all(|e| e.tag().group() % 2 == 0));
        assert!(out.iter().all(|e| !is_curve_or_overlay(e.tag())));
        // inside sequences
        let source = out
            .get(tags::SOURCE_IMAGE_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap();
        assert_eq!(
            text(&source[0], tags::REFERENCED_SOP_CLASS_UID).as_deref(),
            Some(uids::CT_IMAGE_STORAGE)
        );
        assert_eq!(
            text(&source[0], tags::REFERENCED_SOP_INSTANCE_UID),
            Some(remap_uid(SALT, "1.2.826.0.1.7.3.7"))
        );
        let protocol = out
            .get(tags::PERFORMED_PROTOCOL_CODE_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap();
        assert_eq!(text(&protocol[0], tags::CODE_VALUE).as_deref(), Some("P1"));
        assert_eq!(
            text(&protocol[0], tags::INSTITUTION_NAME).as_deref(),
            Some("")
        );
        assert_eq!(
            text(&protocol[0], tags::OPERATORS_NAME).as_deref(),
            Some("")
        );
        assert_eq!(text(&protocol[0], tags::STUDY_DATE).as_deref(), Some(""));
        // what the profile records
        assert_eq!(
            text(&out, tags::PATIENT_IDENTITY_REMOVED).as_deref(),
            Some("YES")
        );
        assert_eq!(
            text(&out, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
            Some("REMOVED")
        );
        assert_eq!(codes(&out), ["113100"]);
        assert!(text(&out, tags::DEIDENTIFICATION_METHOD).is_some());
        assert!(report.burned_in_annotation_remains, "no region was cleaned");
        assert!(
            report.removed > 100 && report.emptied > 5 && report.uids_remapped > 20,
            "{report:?}"
        );
        // meta follows
        assert_eq!(
            file.meta().media_storage_sop_instance_uid,
            report.sop_instance_uid
        );
        assert_eq!(report.sop_instance_uid, remap_uid(SALT, "1.2.826.0.1.7.9"));
        assert_eq!(file.meta().source_application_entity_title, None);
    }

    #[test]
    fn uids_are_consistent_within_a_salt_and_differ_across_salts() {
        let a = deid(
            rich_instance("1.2.826.0.1.7", "1.2.826.0.1.7.9", "P"),
            &DeidOptions::new(SALT),
        )
        .1;
        let b = deid(
            rich_instance("1.2.826.0.1.7", "1.2.826.0.1.7.10", "P"),
            &DeidOptions::new(SALT),
        )
        .1;
        let other = DeidOptions::new(b"another secret salt of 16+ bytes".to_vec());
        let c = deid(
            rich_instance("1.2.826.0.1.7", "1.2.826.0.1.7.9", "P"),
            &other,
        )
        .1;
        assert_eq!(a.study_instance_uid, b.study_instance_uid);
        assert_eq!(a.series_instance_uid, b.series_instance_uid);
        assert_ne!(a.sop_instance_uid, b.sop_instance_uid);
        assert_ne!(a.study_instance_uid, c.study_instance_uid);
        assert_ne!(a.study_instance_uid.as_deref(), Some("1.2.826.0.1.7"));
        for uid in [
            remap_uid(SALT, "1.2.3"),
            remap_uid(&[0xFF; 100], "9"),
            remap_uid(SALT, ""),
        ] {
            assert!(uid.len() <= 64 && uid.starts_with("2.25."), "{uid}");
            assert!(radris_core::Uid::parse(&uid).is_ok(), "{uid}");
        }
        assert_eq!(remap_uid(SALT, "1.2.3\0"), remap_uid(SALT, "1.2.3"));
        assert!(matches!(
            deidentify(
                file(
                    InMemDicomObject::new_empty(),
                    uids::EXPLICIT_VR_LITTLE_ENDIAN
                ),
                &DeidOptions::new(b"short".to_vec())
            ),
            Err(DeidError::SaltTooShort { len: 5 })
        ));
    }

    #[test]
    fn well_known_uids_are_not_remapped() {
        let mut o = InMemDicomObject::new_empty();
        put(
            &mut o,
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            "1.2.840.10008.1.4.1.1",
        );
        put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, "1.2.826.0.1.5");
        let (out, report, _) = deid(o, &DeidOptions::new(SALT));
        assert_eq!(
            text(&out, tags::FRAME_OF_REFERENCE_UID).as_deref(),
            Some("1.2.840.10008.1.4.1.1")
        );
        assert_eq!(report.uids_remapped, 1);
    }

    #[test]
    fn modified_dates_option_shifts_dates_by_one_offset_per_patient() {
        let input = rich_instance("1.2.826.0.1.7", "1.2.826.0.1.7.9", "PID-123");
        let mut opts = DeidOptions::new(SALT);
        opts.temporal = TemporalInformation::ModifiedDates {
            shift_days: Some(-20),
        };
        let (out, report, _) = deid(input.clone(), &opts);
        check_rows(&input, &out, |row| match row.option {
            Some(ProfileOption::RetainLongitudinalModifiedDates) => {
                let vr = std_vr(row.tag);
                if matches!(vr, Some(VR::DA | VR::DT)) {
                    Op::ShiftDate
                } else {
                    Op::Keep
                }
            }
            _ => basic_op(row.action),
        });
        assert_eq!(text(&out, tags::STUDY_DATE).as_deref(), Some("20191226"));
        assert_eq!(text(&out, tags::CONTENT_DATE).as_deref(), Some("20191226"));
        assert_eq!(
            text(&out, tags::ACQUISITION_DATE_TIME).as_deref(),
            Some("20191226103000.5+0100")
        );
        assert_eq!(
            text(&out, tags::STUDY_TIME).as_deref(),
            Some("103000"),
            "times kept"
        );
        assert_eq!(
            text(&out, tags::PATIENT_BIRTH_DATE).as_deref(),
            Some(""),
            "Z regardless"
        );
        let protocol = out
            .get(tags::PERFORMED_PROTOCOL_CODE_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap();
        assert_eq!(
            text(&protocol[0], tags::STUDY_DATE).as_deref(),
            Some("20191226"),
            "nested too"
        );
        assert_eq!(
            text(&out, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).as_deref(),
            Some("MODIFIED")
        );
        assert_eq!(codes(&out), ["113100", "113107"]);
        assert_eq!(report.date_shift_days, Some(-20));
        assert!(report.dates_shifted > 20);

        // derived offset: one per patient, in -365..=-1
        opts.temporal = TemporalInformation::ModifiedDates { shift_days: None };
        let a = deid(rich_instance("1.2.3", "1.2.3.1", "PID-123"), &opts)
            .1
            .date_shift_days;
        let b = deid(rich_instance("1.2.4", "1.2.4.1", "PID-123"), &opts)
            .1
            .date_shift_days;
        assert_eq!(a, b);
        assert_eq!(a, Some(date_shift_days(SALT, "PID-123")));
        for id in ["", "a", "b", "PID-1", "PID-2", "x".repeat(100).as_str()] {
            assert!((-365..=-1).contains(&date_shift_days(SALT, id)));
        }
    }

    #[test]
    fn date_arithmetic() {
        assert_eq!(shift_date("20240301", -1).as_deref(), Some("20240229"));
        assert_eq!(shift_date("20230301", -1).as_deref(), Some("20230228"));
        assert_eq!(shift_date("20000101", -365).as_deref(), Some("19990101"));
        assert_eq!(shift_date("1999.12.31", 1).as_deref(), Some("20000101"));
        assert_eq!(shift_date("", -5).as_deref(), Some(""));
        for bad in [
            "2024023",
            "20240230",
            "20241301",
            "2024-03-01",
            "abcdefgh",
            "20240101-20240201",
        ] {
            assert_eq!(shift_date(bad, -1), None, "{bad}");
        }
        assert_eq!(shift_datetime("2020", -1).as_deref(), Some("2019"));
        assert_eq!(shift_datetime("202003", -1).as_deref(), Some("202002"));
        assert_eq!(
            shift_datetime("20200301235959", -1).as_deref(),
            Some("20200229235959")
        );
        assert_eq!(
            shift_datetime("20200301+0100", -1).as_deref(),
            Some("20200229+0100")
        );
        assert_eq!(shift_datetime("20", -1), None);
        for z in [-800_000i64, -1, 0, 1, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn unparseable_dates_fall_back_to_the_basic_action() {
        let mut o = InMemDicomObject::new_empty();
        put(&mut o, tags::STUDY_DATE, VR::DA, "2020-01-15");
        put(&mut o, tags::ACQUISITION_DATE, VR::DA, "garbage");
        let mut opts = DeidOptions::new(SALT);
        opts.temporal = TemporalInformation::ModifiedDates {
            shift_days: Some(-3),
        };
        let (out, _, _) = deid(o, &opts);
        assert_eq!(text(&out, tags::STUDY_DATE).as_deref(), Some(""));
        assert_eq!(
            text(&out, tags::ACQUISITION_DATE).as_deref(),
            Some(""),
            "X/Z -> Z"
        );
    }

    #[test]
    fn clean_descriptors_and_patient_characteristics_options() {
        let mut input = rich_instance("1.2.826.0.1.7", "1.2.826.0.1.7.9", "PID-123");
        put(&mut input, tags::PATIENT_SEX, VR::CS, "F");
        let mut opts = DeidOptions::new(SALT);
        opts.descriptors = Descriptors::Clean;
        opts.patient_characteristics = PatientCharacteristics::Retain;
        opts.patient_name = Some("SUBJECT^001".into());
        opts.patient_id = Some("SUBJECT-001".into());
        let (out, _, _) = deid(input.clone(), &opts);
        check_rows(&input, &out, |row| match row.option {
            Some(ProfileOption::CleanDescriptors) => Op::Empty,
            Some(ProfileOption::RetainPatientCharacteristics) => Op::Keep,
            _ => basic_op(row.action),
        });
        assert_eq!(text(&out, tags::STUDY_DESCRIPTION).as_deref(), Some(""));
        assert_eq!(text(&out, tags::SERIES_DESCRIPTION).as_deref(), Some(""));
        assert_eq!(text(&out, tags::IMAGE_COMMENTS).as_deref(), Some(""));
        assert_eq!(text(&out, tags::PATIENT_SEX).as_deref(), Some("F"));
        assert_eq!(text(&out, tags::PATIENT_AGE).as_deref(), Some("042Y"));
        assert_eq!(
            text(&out, tags::PATIENT_NAME).as_deref(),
            Some("SUBJECT^001")
        );
        assert_eq!(text(&out, tags::PATIENT_ID).as_deref(), Some("SUBJECT-001"));
        assert_eq!(codes(&out), ["113100", "113105", "113108"]);
    }

    fn pixel_values(obj: &InMemDicomObject) -> Vec<u8> {
        let el = obj.get(tags::PIXEL_DATA).unwrap();
        little_endian_bytes(el.value().primitive().unwrap().clone()).unwrap()
    }

    /// Sample (x, y) of frame `f` in an 8-bit or 16-bit monochrome buffer.
    fn sample(
        data: &[u8],
        cols: usize,
        rows: usize,
        bytes: usize,
        f: usize,
        x: usize,
        y: usize,
    ) -> i32 {
        let at = ((f * rows + y) * cols + x) * bytes;
        match bytes {
            1 => data[at] as i32,
            _ => i16::from_le_bytes([data[at], data[at + 1]]) as i32,
        }
    }

    #[test]
    fn regions_are_blanked_in_native_pixel_data() {
        let mut part10 = Vec::new();
        crate::synth::ct_study(1, 16, 16, "deid")
            .generate(|g| {
                part10 = g.part10;
                Ok::<(), DicomError>(())
            })
            .unwrap();
        let original = parse_part10(&part10).unwrap();
        let before = pixel_values(&original);
        let min = (0..256)
            .map(|i| sample(&before, 16, 16, 2, 0, i % 16, i / 16))
            .min()
            .unwrap();
        let mut opts = DeidOptions::new(SALT);
        opts.burned_in_regions = vec![Region {
            x: 2,
            y: 3,
            width: 4,
            height: 5,
        }];
        let (out, report) = deidentify(original, &opts).unwrap();
        let after = pixel_values(&out);
        assert_eq!(after.len(), before.len());
        for y in 0..16 {
            for x in 0..16 {
                let inside = (2..6).contains(&x) && (3..8).contains(&y);
                let (b, a) = (
                    sample(&before, 16, 16, 2, 0, x, y),
                    sample(&after, 16, 16, 2, 0, x, y),
                );
                if inside {
                    assert_eq!(a, min, "({x},{y})")
                } else {
                    assert_eq!(a, b, "({x},{y})")
                }
            }
        }
        assert_eq!(report.frames_cleaned, 1);
        assert!(!report.pixel_data_decoded);
        assert_eq!(
            out.meta().transfer_syntax(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        assert_eq!(
            text(&out, tags::BURNED_IN_ANNOTATION).as_deref(),
            Some("NO")
        );
        assert!(codes(&out).contains(&"113101".to_owned()));
    }

    fn mono8(frames: &[Vec<u8>], cols: u16, rows: u16) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        put(
            &mut o,
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        );
        put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, "1.2.826.0.1.8");
        put(
            &mut o,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2",
        );
        put(
            &mut o,
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            &frames.len().to_string(),
        );
        for (tag, v) in [
            (tags::ROWS, rows),
            (tags::COLUMNS, cols),
            (tags::SAMPLES_PER_PIXEL, 1),
            (tags::BITS_ALLOCATED, 8),
            (tags::BITS_STORED, 8),
            (tags::HIGH_BIT, 7),
            (tags::PIXEL_REPRESENTATION, 0),
        ] {
            o.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        }
        o
    }

    fn gradient(frame: u8, cols: usize, rows: usize) -> Vec<u8> {
        (0..cols * rows)
            .map(|i| 10 + frame * 50 + (i % 40) as u8)
            .collect()
    }

    #[test]
    fn regions_are_clipped_and_applied_to_every_frame() {
        let frames = vec![gradient(0, 8, 6), gradient(1, 8, 6)];
        let mut o = mono8(&frames, 8, 6);
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(frames.concat().into()),
        ));
        let mut opts = DeidOptions::new(SALT);
        opts.burned_in_regions = vec![
            Region {
                x: 6,
                y: 4,
                width: 100,
                height: 100,
            },
            Region {
                x: 50,
                y: 0,
                width: 1,
                height: 1,
            },
        ];
        let (out, report, _) = deid(o, &opts);
        let after = pixel_values(&out);
        for (f, frame) in frames.iter().enumerate() {
            let min = *frame.iter().min().unwrap() as i32;
            for y in 0..6 {
                for x in 0..8 {
                    let expect = if x >= 6 && y >= 4 {
                        min
                    } else {
                        frame[y * 8 + x] as i32
                    };
                    assert_eq!(
                        sample(&after, 8, 6, 1, f, x, y),
                        expect,
                        "frame {f} ({x},{y})"
                    );
                }
            }
        }
        assert_eq!(report.frames_cleaned, 2);
    }

    /// RLE Lossless (PS3.5 G.3) of 8-bit monochrome frames: one segment, literal runs only.
    fn rle_frame(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + frame.len() * 2);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&64u32.to_le_bytes());
        out.resize(64, 0);
        for run in frame.chunks(128) {
            out.push((run.len() - 1) as u8);
            out.extend_from_slice(run);
        }
        if out.len() % 2 == 1 {
            out.push(0x80);
        }
        out
    }

    #[test]
    fn encapsulated_pixel_data_is_decoded_then_blanked() {
        let frames = vec![gradient(0, 10, 4), gradient(2, 10, 4)];
        let mut o = mono8(&frames, 10, 4);
        let fragments: Vec<Vec<u8>> = frames.iter().map(|f| rle_frame(f)).collect();
        o.put(InMemElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
                Vec::<u32>::new(),
                fragments,
            )),
        ));
        let mut opts = DeidOptions::new(SALT);
        opts.burned_in_regions = vec![Region {
            x: 0,
            y: 0,
            width: 3,
            height: 2,
        }];
        let (out, report) = deidentify(file(o, uids::RLE_LOSSLESS), &opts).unwrap();
        assert!(report.pixel_data_decoded);
        assert_eq!(report.frames_cleaned, 2);
        assert_eq!(
            out.meta().transfer_syntax(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        let after = pixel_values(&out);
        for (f, frame) in frames.iter().enumerate() {
            let min = *frame.iter().min().unwrap() as i32;
            for y in 0..4 {
                for x in 0..10 {
                    let expect = if x < 3 && y < 2 {
                        min
                    } else {
                        frame[y * 10 + x] as i32
                    };
                    assert_eq!(
                        sample(&after, 10, 4, 1, f, x, y),
                        expect,
                        "frame {f} ({x},{y})"
                    );
                }
            }
        }
        // undecodable encapsulated data is an error, not a panic
        let mut bad = mono8(&frames, 10, 4);
        bad.put(InMemElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            Value::PixelSequence(dicom_core::value::PixelFragmentSequence::new(
                Vec::<u32>::new(),
                vec![vec![1u8, 2, 3, 4]],
            )),
        ));
        assert!(matches!(
            deidentify(file(bad, uids::RLE_LOSSLESS), &opts),
            Err(DeidError::Pixel(_))
        ));
    }

    #[test]
    fn bytes_round_trip_as_valid_part10() {
        let mut instance = None;
        crate::synth::ct_study(1, 8, 8, "bytes")
            .generate(|g| {
                instance = Some(g);
                Ok::<(), DicomError>(())
            })
            .unwrap();
        let g = instance.unwrap();
        let (bytes, report) = deidentify_bytes(&g.part10, &DeidOptions::new(SALT)).unwrap();
        let back = parse_part10(&bytes).unwrap();
        assert_eq!(
            back.meta().media_storage_sop_instance_uid(),
            report.sop_instance_uid
        );
        assert_eq!(
            text(&back, tags::SOP_INSTANCE_UID),
            Some(report.sop_instance_uid.clone())
        );
        assert_eq!(
            text(&back, tags::STUDY_INSTANCE_UID),
            Some(remap_uid(SALT, &g.study_uid))
        );
        assert_eq!(
            text(&back, tags::PATIENT_IDENTITY_REMOVED).as_deref(),
            Some("YES")
        );
        assert_eq!(
            text(&back, tags::SOP_CLASS_UID),
            Some(g.sop_class_uid.clone())
        );
        assert!(
            back.get(tags::INSTITUTION_NAME)
                .is_none_or(|e| e.value().multiplicity() == 0)
        );
        // without the preamble too
        let (again, _) = deidentify_bytes(&g.part10[128..], &DeidOptions::new(SALT)).unwrap();
        assert_eq!(again, bytes, "deterministic");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut part10 = Vec::new();
        crate::synth::ct_study(1, 8, 8, "bad")
            .generate(|g| {
                part10 = g.part10;
                Ok::<(), DicomError>(())
            })
            .unwrap();
        let opts = DeidOptions::new(SALT);
        // a cut on an element boundary leaves a shorter, valid data set; anywhere else it is
        // an error; never a panic
        let mut refused = 0;
        for cut in 0..part10.len() - 1 {
            if deidentify_bytes(&part10[..cut], &opts).is_err() {
                refused += 1;
            }
        }
        assert!(
            refused > part10.len() * 9 / 10,
            "{refused} of {}",
            part10.len()
        );
        assert!(
            deidentify_bytes(&part10[..part10.len() - 10], &opts).is_err(),
            "inside Pixel Data"
        );
        assert!(
            deidentify_bytes(&part10[..150], &opts).is_err(),
            "inside the meta group"
        );
        assert!(deidentify_bytes(b"not dicom at all", &opts).is_err());
        assert!(deidentify_bytes(&[0u8; 300], &opts).is_err());
        // a lying length inside the data set
        let mut lying = part10.clone();
        let n = lying.len();
        lying[n - 200..n - 196].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F]);
        let _ = deidentify_bytes(&lying, &opts); // must not panic
    }

    #[test]
    fn nesting_is_bounded() {
        let mut inner = InMemDicomObject::new_empty();
        for _ in 0..(MAX_DEPTH + 2) {
            inner = item_with(vec![seq(
                tags::PERFORMED_PROTOCOL_CODE_SEQUENCE,
                vec![inner],
            )]);
        }
        let result = deidentify(
            file(inner, uids::EXPLICIT_VR_LITTLE_ENDIAN),
            &DeidOptions::new(SALT),
        );
        assert!(matches!(result, Err(DeidError::TooDeep { .. })));
    }
}
