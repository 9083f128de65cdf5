//! The IHE Scheduled Workflow seen from DICOM: Modality Worklist identifiers and answers
//! (PS3.4 K.6), Modality Performed Procedure Step data sets (PS3.4 F.7) and the interface
//! ([`ModalityWorkflow`]) through which the DIMSE services reach the RIS.
//!
//! The RIS (`radris-ris`) implements [`ModalityWorkflow`] on its own records; the DIMSE layer
//! (`radris-dimse`) turns C-FIND / N-CREATE / N-SET messages into the typed values here and
//! answers with what the RIS returns. Neither needs to know the other.

use dicom_core::dictionary::DataDictionary;
use dicom_core::header::{HasLength, Header};
use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;
use radris_core::{AeTitle, TenantId};

use crate::query::Matcher;

/// A Modality Worklist C-FIND identifier, parsed and validated (PS3.4 K.6.1.2). Every key
/// the modality left empty is [`Matcher::Universal`].
#[derive(Debug, Clone)]
pub struct WorklistQuery {
    /// Scheduled Station AE Title (0040,0001), inside the Scheduled Procedure Step Sequence.
    pub station_ae: Matcher,
    /// Scheduled Procedure Step Start Date (0040,0002): single date or range.
    pub start_date: Matcher,
    /// Scheduled Procedure Step Start Time (0040,0003): single time or range.
    pub start_time: Matcher,
    /// Modality (0008,0060) inside the step.
    pub modality: Matcher,
    /// Scheduled Performing Physician's Name (0040,0006), PN rules.
    pub performing_physician: Matcher,
    /// Scheduled Procedure Step Status (0040,0020).
    pub step_status: Matcher,
    /// Scheduled Procedure Step ID (0040,0009).
    pub step_id: Matcher,
    /// Patient ID (0010,0020).
    pub patient_id: Matcher,
    /// Patient's Name (0010,0010), PN rules.
    pub patient_name: Matcher,
    /// Accession Number (0008,0050).
    pub accession: Matcher,
    /// Requested Procedure ID (0040,1001).
    pub requested_procedure_id: Matcher,
    /// The identifier as received: the keys to return, and their order.
    pub requested: InMemDicomObject,
}

/// One scheduled procedure step as the RIS knows it: everything a worklist answer can carry.
/// Dates are DICOM DA (`YYYYMMDD`), times TM (`HHMMSS`), names PN (`FAMILY^GIVEN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorklistItem {
    pub patient_name: String,
    pub patient_id: String,
    /// Issuer of Patient ID (0010,0021).
    pub issuer: String,
    pub birth_date: String,
    pub sex: String,
    pub accession: String,
    /// Study Instance UID the modality must use (assigned when the order is placed).
    pub study_uid: String,
    pub requested_procedure_id: String,
    pub requested_procedure_description: String,
    /// Requested Procedure Code Sequence: (code value, coding scheme designator, meaning).
    pub procedure_code: (String, String, String),
    /// Requested Procedure Priority (0040,1003): `STAT`, `HIGH`, `ROUTINE`…
    pub priority: String,
    pub referring_physician: String,
    /// Reason for the Requested Procedure (0040,1002).
    pub reason: String,
    pub step_id: String,
    pub step_description: String,
    pub station_ae: String,
    pub station_name: String,
    pub modality: String,
    pub start_date: String,
    pub start_time: String,
    pub performing_physician: String,
    /// Scheduled Procedure Step Status (0040,0020): `SCHEDULED`, `ARRIVED`, `READY`, `STARTED`.
    pub step_status: String,
    /// Scheduled Procedure Step Location (0040,0011): the room.
    pub location: String,
    /// Pre-Medication (0040,0012): the preparation the patient needs.
    pub preparation: String,
}

/// Performed Procedure Step Status (0040,0252).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MppsStatus {
    InProgress,
    Completed,
    Discontinued,
}

impl MppsStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MppsStatus::InProgress => "IN PROGRESS",
            MppsStatus::Completed => "COMPLETED",
            MppsStatus::Discontinued => "DISCONTINUED",
        }
    }
}

/// A reference to the scheduled step an MPPS performs (an item of the Scheduled Step
/// Attributes Sequence (0040,0270)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduledStepRef {
    pub accession: String,
    pub step_id: String,
    pub requested_procedure_id: String,
    pub study_uid: String,
}

/// A series performed under an MPPS (Performed Series Sequence (0040,0340)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerformedSeries {
    pub series_uid: String,
    pub modality: String,
    pub sop_instance_uids: Vec<String>,
}

/// An MPPS N-CREATE or N-SET data set, parsed. For N-SET every field is what the modality
/// sent; absent ones are `None` / empty and leave the stored value alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mpps {
    pub status: Option<MppsStatus>,
    pub steps: Vec<ScheduledStepRef>,
    pub patient_id: Option<String>,
    pub station_ae: Option<String>,
    pub modality: Option<String>,
    /// Performed Procedure Step Start Date and Time (DA, TM).
    pub start: Option<(String, String)>,
    /// Performed Procedure Step End Date and Time (DA, TM).
    pub end: Option<(String, String)>,
    pub description: Option<String>,
    /// Performed Procedure Step Discontinuation Reason Code Sequence: the code meaning.
    pub discontinuation_reason: Option<String>,
    pub series: Vec<PerformedSeries>,
}

/// Why the RIS refused a worklist query or an MPPS message. The DIMSE layer maps each kind
/// to its status code (given in each variant's documentation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// A malformed key or attribute value: C-FIND 0xA900, N-CREATE/N-SET 0x0106.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The MPPS names a scheduled step or order the RIS does not know: 0x0110 with comment.
    #[error("unknown scheduled procedure step: {0}")]
    UnknownStep(String),
    /// N-SET on an MPPS that does not exist: 0x0112 (No such SOP Instance).
    #[error("no such performed procedure step: {0}")]
    NoSuchInstance(String),
    /// N-CREATE of an MPPS that exists already: 0x0111 (Duplicate SOP Instance).
    #[error("performed procedure step {0} exists already")]
    Duplicate(String),
    /// The order or step is in a state that does not allow this (an N-SET after COMPLETED,
    /// an MPPS for a cancelled order): 0x0110 with comment.
    #[error("not allowed now: {0}")]
    InvalidState(String),
    /// The RIS could not answer (database down): C-FIND 0xC000, N-* 0x0110.
    #[error("workflow service failed: {0}")]
    Internal(String),
}

impl WorkflowError {
    /// The explanation without the kind's prefix (for a DIMSE Error Comment, which holds 64
    /// characters).
    pub fn detail(&self) -> &str {
        match self {
            WorkflowError::Invalid(m)
            | WorkflowError::UnknownStep(m)
            | WorkflowError::NoSuchInstance(m)
            | WorkflowError::Duplicate(m)
            | WorkflowError::InvalidState(m)
            | WorkflowError::Internal(m) => m,
        }
    }
}

/// What the DIMSE worklist and MPPS services need from the RIS. Called on association
/// threads: implementations may block (briefly) on their own runtime.
pub trait ModalityWorkflow: Send + Sync {
    /// The scheduled steps of `tenant` that match `query`, in the order to return them.
    fn worklist(
        &self,
        tenant: &TenantId,
        calling: &AeTitle,
        query: &WorklistQuery,
    ) -> Result<Vec<WorklistItem>, WorkflowError>;

    /// MPPS N-CREATE: the modality started performing (status must be IN PROGRESS).
    fn mpps_create(
        &self,
        tenant: &TenantId,
        calling: &AeTitle,
        mpps_uid: &str,
        mpps: &Mpps,
    ) -> Result<(), WorkflowError>;

    /// MPPS N-SET: progress, completion or discontinuation of an MPPS created before.
    fn mpps_set(
        &self,
        tenant: &TenantId,
        calling: &AeTitle,
        mpps_uid: &str,
        mpps: &Mpps,
    ) -> Result<(), WorkflowError>;
}

// ---------------------------------------------------------------------------------------------
// Worklist identifiers
// ---------------------------------------------------------------------------------------------

/// The Specific Character Set (0008,0005) of every worklist answer we build: UTF-8.
pub const UTF8_CHARACTER_SET: &str = "ISO_IR 192";

/// A matching key: where it sits, its VR and its keyword (for error messages).
struct KeySpec {
    tag: Tag,
    vr: VR,
    name: &'static str,
}

const PATIENT_NAME: KeySpec = KeySpec {
    tag: tags::PATIENT_NAME,
    vr: VR::PN,
    name: "PatientName",
};
const PATIENT_ID: KeySpec = KeySpec {
    tag: tags::PATIENT_ID,
    vr: VR::LO,
    name: "PatientID",
};
const ACCESSION: KeySpec = KeySpec {
    tag: tags::ACCESSION_NUMBER,
    vr: VR::SH,
    name: "AccessionNumber",
};
const REQUESTED_PROCEDURE_ID: KeySpec = KeySpec {
    tag: tags::REQUESTED_PROCEDURE_ID,
    vr: VR::SH,
    name: "RequestedProcedureID",
};
const STATION_AE: KeySpec = KeySpec {
    tag: tags::SCHEDULED_STATION_AE_TITLE,
    vr: VR::AE,
    name: "ScheduledStationAETitle",
};
const START_DATE: KeySpec = KeySpec {
    tag: tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
    vr: VR::DA,
    name: "ScheduledProcedureStepStartDate",
};
const START_TIME: KeySpec = KeySpec {
    tag: tags::SCHEDULED_PROCEDURE_STEP_START_TIME,
    vr: VR::TM,
    name: "ScheduledProcedureStepStartTime",
};
const MODALITY: KeySpec = KeySpec {
    tag: tags::MODALITY,
    vr: VR::CS,
    name: "Modality",
};
const PERFORMING_PHYSICIAN: KeySpec = KeySpec {
    tag: tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME,
    vr: VR::PN,
    name: "ScheduledPerformingPhysicianName",
};
const STEP_STATUS: KeySpec = KeySpec {
    tag: tags::SCHEDULED_PROCEDURE_STEP_STATUS,
    vr: VR::CS,
    name: "ScheduledProcedureStepStatus",
};
const STEP_ID: KeySpec = KeySpec {
    tag: tags::SCHEDULED_PROCEDURE_STEP_ID,
    vr: VR::SH,
    name: "ScheduledProcedureStepID",
};

/// Longest key value we look at; anything longer is not a worklist key (the longest VR
/// among them, PN, allows 64 characters per component group).
const MAX_KEY_CHARS: usize = 1024;

impl WorklistQuery {
    /// Parse and validate a Modality Worklist identifier (PS3.4 K.6.1.2.2). Matching keys
    /// sit at the top level (patient, order) and inside the one item of the Scheduled
    /// Procedure Step Sequence (0040,0100); every other key is only returned.
    ///
    /// Refused with [`WorkflowError::Invalid`]: a date key that is not `YYYYMMDD` or a range
    /// of such dates, a time key that is not `HH[MM[SS[.F…]]]` or a range of such times, more
    /// than one Scheduled Procedure Step item, a sequence where the dictionary expects a value
    /// (or a value where it expects a sequence).
    pub fn from_identifier(obj: &InMemDicomObject) -> Result<WorklistQuery, WorkflowError> {
        check_shapes(obj, "")?;
        let mut q = WorklistQuery {
            station_ae: Matcher::Universal,
            start_date: Matcher::Universal,
            start_time: Matcher::Universal,
            modality: Matcher::Universal,
            performing_physician: Matcher::Universal,
            step_status: Matcher::Universal,
            step_id: Matcher::Universal,
            patient_id: key(obj, &PATIENT_ID)?,
            patient_name: key(obj, &PATIENT_NAME)?,
            accession: key(obj, &ACCESSION)?,
            requested_procedure_id: key(obj, &REQUESTED_PROCEDURE_ID)?,
            requested: obj.clone(),
        };
        if let Some(step) = single_item(obj, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)? {
            q.station_ae = key(step, &STATION_AE)?;
            q.start_date = key(step, &START_DATE)?;
            q.start_time = key(step, &START_TIME)?;
            q.modality = key(step, &MODALITY)?;
            q.performing_physician = key(step, &PERFORMING_PHYSICIAN)?;
            q.step_status = key(step, &STEP_STATUS)?;
            q.step_id = key(step, &STEP_ID)?;
        }
        Ok(q)
    }

    /// Whether a scheduled step matches every key (PS3.4 C.2.2.2: universal, single value,
    /// wildcard, list, range; person names ignore case and trailing empty components; a
    /// single time matches every time within it, `1000` matches `100030`).
    pub fn matches(&self, item: &WorklistItem) -> bool {
        let keys: [(&Matcher, VR, &str); 11] = [
            (&self.patient_name, VR::PN, &item.patient_name),
            (&self.patient_id, VR::LO, &item.patient_id),
            (&self.accession, VR::SH, &item.accession),
            (
                &self.requested_procedure_id,
                VR::SH,
                &item.requested_procedure_id,
            ),
            (&self.station_ae, VR::AE, &item.station_ae),
            (&self.start_date, VR::DA, &item.start_date),
            (&self.start_time, VR::TM, &item.start_time),
            (&self.modality, VR::CS, &item.modality),
            (
                &self.performing_physician,
                VR::PN,
                &item.performing_physician,
            ),
            (&self.step_status, VR::CS, &item.step_status),
            (&self.step_id, VR::SH, &item.step_id),
        ];
        keys.iter().all(|(m, vr, v)| key_matches(m, *vr, v))
    }

    /// The answer for one matching step: exactly the keys the identifier asked for, in its
    /// structure (the Scheduled Procedure Step Sequence and the code sequences with the keys
    /// their items asked for; a sequence asked for with no item gets every key we know),
    /// filled from `item`, zero-length where the RIS has no value. Specific Character Set is
    /// `ISO_IR 192` when it was asked for or when a value is not ASCII.
    pub fn response(&self, item: &WorklistItem) -> InMemDicomObject {
        let mut non_ascii = false;
        let mut out = fill(&self.requested, Level::Top, item, &mut non_ascii);
        if non_ascii || self.requested.get(tags::SPECIFIC_CHARACTER_SET).is_some() {
            out.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from(UTF8_CHARACTER_SET),
            ));
        }
        out
    }

    /// The matching keys that are not universal, `Keyword=value`, for audit records.
    pub fn describe(&self) -> String {
        let keys: [(&str, &Matcher); 11] = [
            (PATIENT_NAME.name, &self.patient_name),
            (PATIENT_ID.name, &self.patient_id),
            (ACCESSION.name, &self.accession),
            (REQUESTED_PROCEDURE_ID.name, &self.requested_procedure_id),
            (STATION_AE.name, &self.station_ae),
            (START_DATE.name, &self.start_date),
            (START_TIME.name, &self.start_time),
            (MODALITY.name, &self.modality),
            (PERFORMING_PHYSICIAN.name, &self.performing_physician),
            (STEP_STATUS.name, &self.step_status),
            (STEP_ID.name, &self.step_id),
        ];
        keys.iter()
            .filter(|(_, m)| !m.is_universal())
            .map(|(name, m)| format!("{name}={}", describe_matcher(m)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn describe_matcher(m: &Matcher) -> String {
    match m {
        Matcher::Universal => "*".into(),
        Matcher::Single(s) | Matcher::Wildcard(s) => s.clone(),
        Matcher::Range { from, to } => format!(
            "{}-{}",
            from.as_deref().unwrap_or(""),
            to.as_deref().unwrap_or("")
        ),
        Matcher::List(vs) => vs.join("\\"),
    }
}

fn invalid(msg: impl Into<String>) -> WorkflowError {
    WorkflowError::Invalid(msg.into())
}

/// A value cut short for an error message (a hostile identifier must not make it long).
fn shown(raw: &str) -> String {
    let mut s: String = raw.chars().take(24).collect();
    if raw.chars().count() > 24 {
        s.push('…');
    }
    s
}

/// Every element of `obj` (and of its items, recursively) must have the shape its tag has in
/// the dictionary: a sequence for an SQ attribute, a value otherwise.
fn check_shapes(obj: &InMemDicomObject, path: &str) -> Result<(), WorkflowError> {
    let dict = StandardDataDictionary;
    for elem in obj.iter() {
        let tag = elem.tag();
        if tag.group() == 0x0002 || tag.group() == 0x0000 {
            continue;
        }
        let entry = dict.by_tag(tag);
        let name = entry.map(|e| e.alias).unwrap_or("attribute");
        let expects_sequence = entry.map(|e| e.vr.relaxed() == VR::SQ);
        match (elem.value(), expects_sequence) {
            (Value::Sequence(_), Some(false)) => {
                return Err(invalid(format!(
                    "{path}{name} {tag} is a sequence; a value is expected"
                )));
            }
            (Value::Sequence(seq), _) => {
                for item in seq.items() {
                    check_shapes(item, &format!("{path}{name} > "))?;
                }
            }
            (Value::Primitive(p), Some(true)) if !p.is_empty() => {
                return Err(invalid(format!(
                    "{path}{name} {tag} holds a value; a sequence is expected"
                )));
            }
            (Value::PixelSequence(_), _) => {
                return Err(invalid(format!(
                    "{path}{name} {tag}: encapsulated data in an identifier"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The only item of a sequence key, if it has one. More than one item is refused (PS3.4
/// C.2.2.2.6: a sequence matching key holds one item).
fn single_item(
    obj: &InMemDicomObject,
    tag: Tag,
) -> Result<Option<&InMemDicomObject>, WorkflowError> {
    let Some(elem) = obj.get(tag) else {
        return Ok(None);
    };
    match elem.value() {
        Value::Sequence(seq) => match seq.items() {
            [] => Ok(None),
            [item] => Ok(Some(item)),
            more => Err(invalid(format!(
                "{} {tag} has {} items; a query holds at most one",
                StandardDataDictionary
                    .by_tag(tag)
                    .map(|e| e.alias)
                    .unwrap_or("sequence"),
                more.len()
            ))),
        },
        Value::Primitive(p) if p.is_empty() => Ok(None),
        _ => Err(invalid(format!("{tag} must be a sequence"))),
    }
}

/// The matcher of one key; absent or empty is universal. Dates and times are validated.
fn key(obj: &InMemDicomObject, spec: &KeySpec) -> Result<Matcher, WorkflowError> {
    let Some(elem) = obj.get(spec.tag) else {
        return Ok(Matcher::Universal);
    };
    let raw = match elem.value() {
        Value::Primitive(p) => p.to_str().into_owned(),
        _ => {
            return Err(invalid(format!(
                "{} {} is a sequence; a value is expected",
                spec.name, spec.tag
            )));
        }
    };
    if raw.chars().count() > MAX_KEY_CHARS {
        return Err(invalid(format!("{} is too long", spec.name)));
    }
    match spec.vr {
        VR::DA => check_range_key(spec.name, &raw, is_date, "date", "YYYYMMDD")?,
        VR::TM => check_range_key(spec.name, &raw, is_time, "time", "HHMMSS")?,
        _ => {}
    }
    Ok(Matcher::parse(spec.vr, &raw))
}

/// A DA/TM key: universal, one value, or a range with at least one end (PS3.4 C.2.2.2.5).
/// Wildcards other than a lone `*` and value lists are not allowed on dates and times.
fn check_range_key(
    name: &str,
    raw: &str,
    valid: fn(&str) -> bool,
    what: &str,
    format: &str,
) -> Result<(), WorkflowError> {
    let v = raw.trim_matches([' ', '\0']);
    if v.is_empty() || v == "*" {
        return Ok(());
    }
    let ok = match v.split_once('-') {
        None => valid(v),
        Some((from, to)) => {
            let (from, to) = (from.trim(), to.trim());
            (!from.is_empty() || !to.is_empty())
                && (from.is_empty() || valid(from))
                && (to.is_empty() || valid(to))
        }
    };
    if ok {
        Ok(())
    } else {
        // the most telling part first: DIMSE cuts the Error Comment at 64 characters
        Err(invalid(format!(
            "{name} {:?}: bad {what} (want {format} or a range)",
            shown(v)
        )))
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYYMMDD` with a real month and a day of 1–31.
pub fn is_date(s: &str) -> bool {
    if s.len() != 8 || !all_digits(s) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    matches!((num(4..6), num(6..8)), (Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d))
}

/// `HH`, `HHMM`, `HHMMSS` or `HHMMSS.F` to `HHMMSS.FFFFFF` (PS3.5 6.2, TM), in range.
pub fn is_time(s: &str) -> bool {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    if !matches!(whole.len(), 2 | 4 | 6) || !all_digits(whole) {
        return false;
    }
    if let Some(f) = frac
        && (whole.len() != 6 || f.len() > 6 || !all_digits(f))
    {
        return false;
    }
    let num = |r: std::ops::Range<usize>| whole.get(r).and_then(|x| x.parse::<u32>().ok());
    let hh_ok = num(0..2).is_some_and(|h| h < 24);
    let mm_ok = whole.len() < 4 || num(2..4).is_some_and(|m| m < 60);
    // 60 seconds: a leap second
    let ss_ok = whole.len() < 6 || num(4..6).is_some_and(|s| s <= 60);
    hh_ok && mm_ok && ss_ok
}

fn key_matches(m: &Matcher, vr: VR, stored: &str) -> bool {
    match (m, vr) {
        (Matcher::Universal, _) => true,
        // `10` is the hour from 10:00:00 to 10:59:59.999999
        (Matcher::Single(t), VR::TM) => Matcher::Range {
            from: Some(t.clone()),
            to: Some(t.clone()),
        }
        .matches(vr, stored),
        // names: trailing empty components do not count (query::normalise)
        (m, vr) => m.matches(vr, stored),
    }
}

/// Where in the worklist answer a data set sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Step,
    Code,
}

/// What fills one answer key.
enum Source<'a> {
    Text(VR, &'a str),
    /// The procedure code as a code sequence.
    Code,
    /// The Scheduled Procedure Step Sequence.
    Step,
}

fn source<'a>(level: Level, item: &'a WorklistItem, tag: Tag) -> Option<Source<'a>> {
    use Source::{Code, Step, Text};
    let (code_value, scheme, meaning) = &item.procedure_code;
    Some(match (level, tag) {
        (Level::Top, tags::PATIENT_NAME) => Text(VR::PN, &item.patient_name),
        (Level::Top, tags::PATIENT_ID) => Text(VR::LO, &item.patient_id),
        (Level::Top, tags::ISSUER_OF_PATIENT_ID) => Text(VR::LO, &item.issuer),
        (Level::Top, tags::PATIENT_BIRTH_DATE) => Text(VR::DA, &item.birth_date),
        (Level::Top, tags::PATIENT_SEX) => Text(VR::CS, &item.sex),
        (Level::Top, tags::ACCESSION_NUMBER) => Text(VR::SH, &item.accession),
        (Level::Top, tags::STUDY_INSTANCE_UID) => Text(VR::UI, &item.study_uid),
        (Level::Top, tags::REQUESTED_PROCEDURE_ID) => Text(VR::SH, &item.requested_procedure_id),
        (Level::Top, tags::REQUESTED_PROCEDURE_DESCRIPTION) => {
            Text(VR::LO, &item.requested_procedure_description)
        }
        (Level::Top, tags::REQUESTED_PROCEDURE_CODE_SEQUENCE) => Code,
        (Level::Top, tags::REQUESTED_PROCEDURE_PRIORITY) => Text(VR::SH, &item.priority),
        (Level::Top, tags::REFERRING_PHYSICIAN_NAME) => Text(VR::PN, &item.referring_physician),
        (Level::Top, tags::REASON_FOR_THE_REQUESTED_PROCEDURE) => Text(VR::LO, &item.reason),
        (Level::Top, tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE) => Step,
        (Level::Step, tags::SCHEDULED_STATION_AE_TITLE) => Text(VR::AE, &item.station_ae),
        (Level::Step, tags::SCHEDULED_PROCEDURE_STEP_START_DATE) => Text(VR::DA, &item.start_date),
        (Level::Step, tags::SCHEDULED_PROCEDURE_STEP_START_TIME) => Text(VR::TM, &item.start_time),
        (Level::Step, tags::MODALITY) => Text(VR::CS, &item.modality),
        (Level::Step, tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME) => {
            Text(VR::PN, &item.performing_physician)
        }
        (Level::Step, tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION) => {
            Text(VR::LO, &item.step_description)
        }
        (Level::Step, tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE) => Code,
        (Level::Step, tags::SCHEDULED_PROCEDURE_STEP_ID) => Text(VR::SH, &item.step_id),
        (Level::Step, tags::SCHEDULED_STATION_NAME) => Text(VR::SH, &item.station_name),
        (Level::Step, tags::SCHEDULED_PROCEDURE_STEP_LOCATION) => Text(VR::SH, &item.location),
        (Level::Step, tags::PRE_MEDICATION) => Text(VR::LO, &item.preparation),
        (Level::Step, tags::SCHEDULED_PROCEDURE_STEP_STATUS) => Text(VR::CS, &item.step_status),
        (Level::Code, tags::CODE_VALUE) => Text(VR::SH, code_value),
        (Level::Code, tags::CODING_SCHEME_DESIGNATOR) => Text(VR::SH, scheme),
        (Level::Code, tags::CODE_MEANING) => Text(VR::LO, meaning),
        _ => return None,
    })
}

/// The keys returned for a sequence asked for with no item (PS3.4 C.2.2.2.6: universal
/// sequence matching returns the whole item).
const STEP_KEYS: [Tag; 12] = [
    tags::MODALITY,
    tags::SCHEDULED_STATION_AE_TITLE,
    tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
    tags::SCHEDULED_PROCEDURE_STEP_START_TIME,
    tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME,
    tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION,
    tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE,
    tags::SCHEDULED_PROCEDURE_STEP_ID,
    tags::SCHEDULED_STATION_NAME,
    tags::SCHEDULED_PROCEDURE_STEP_LOCATION,
    tags::PRE_MEDICATION,
    tags::SCHEDULED_PROCEDURE_STEP_STATUS,
];
const CODE_KEYS: [Tag; 3] = [
    tags::CODE_VALUE,
    tags::CODING_SCHEME_DESIGNATOR,
    tags::CODE_MEANING,
];

/// The identifier (or item) `requested` answered from `item` at `level`.
fn fill(
    requested: &InMemDicomObject,
    level: Level,
    item: &WorklistItem,
    non_ascii: &mut bool,
) -> InMemDicomObject {
    let mut out = InMemDicomObject::new_empty();
    for elem in requested.iter() {
        let tag = elem.tag();
        if tag == tags::SPECIFIC_CHARACTER_SET || tag.group() == 0x0002 || tag.group() == 0x0000 {
            continue;
        }
        let asked_item = match elem.value() {
            Value::Sequence(seq) => Some(seq.items().first()),
            _ => None,
        };
        match source(level, item, tag) {
            Some(Source::Text(vr, v)) => {
                *non_ascii |= !v.is_ascii();
                out.put(text_element(tag, vr, v));
            }
            Some(Source::Step) => {
                let sub = sub_item(
                    asked_item.flatten(),
                    &STEP_KEYS,
                    Level::Step,
                    item,
                    non_ascii,
                );
                out.put(sequence(tag, vec![sub]));
            }
            Some(Source::Code) => {
                let (v, s, m) = &item.procedure_code;
                let items = if v.is_empty() && s.is_empty() && m.is_empty() {
                    Vec::new()
                } else {
                    vec![sub_item(
                        asked_item.flatten(),
                        &CODE_KEYS,
                        Level::Code,
                        item,
                        non_ascii,
                    )]
                };
                out.put(sequence(tag, items));
            }
            None => match asked_item {
                Some(_) => {
                    out.put(sequence(tag, Vec::new()));
                }
                None => {
                    out.put(DataElement::new(tag, elem.vr(), PrimitiveValue::Empty));
                }
            },
        }
    }
    out
}

/// One item of an answered sequence: the keys its requested item named, or all of `keys`.
fn sub_item(
    asked: Option<&InMemDicomObject>,
    keys: &[Tag],
    level: Level,
    item: &WorklistItem,
    non_ascii: &mut bool,
) -> InMemDicomObject {
    match asked {
        Some(asked) => fill(asked, level, item, non_ascii),
        None => {
            let mut all = InMemDicomObject::new_empty();
            for &tag in keys {
                let vr = StandardDataDictionary
                    .by_tag(tag)
                    .map(|e| e.vr.relaxed())
                    .unwrap_or(VR::LO);
                if vr == VR::SQ {
                    all.put(sequence(tag, Vec::new()));
                } else {
                    all.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
                }
            }
            fill(&all, level, item, non_ascii)
        }
    }
}

fn text_element(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
    if v.is_empty() {
        DataElement::new(tag, vr, PrimitiveValue::Empty)
    } else {
        DataElement::new(tag, vr, PrimitiveValue::from(v))
    }
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        VR::SQ,
        DataSetSequence::new(items, dicom_core::Length::UNDEFINED),
    )
}

// ---------------------------------------------------------------------------------------------
// Modality Performed Procedure Step data sets
// ---------------------------------------------------------------------------------------------

impl MppsStatus {
    /// Parse a Performed Procedure Step Status value (PS3.3 C.4.14, defined terms).
    pub fn parse(raw: &str) -> Result<MppsStatus, WorkflowError> {
        match raw.trim_matches([' ', '\0']) {
            "IN PROGRESS" => Ok(MppsStatus::InProgress),
            "COMPLETED" => Ok(MppsStatus::Completed),
            "DISCONTINUED" => Ok(MppsStatus::Discontinued),
            other => Err(invalid(format!(
                "PerformedProcedureStepStatus {:?} is not IN PROGRESS, COMPLETED or DISCONTINUED",
                shown(other)
            ))),
        }
    }
}

impl Mpps {
    /// Parse an MPPS N-CREATE or N-SET data set (PS3.4 F.7.2). Absent attributes stay `None`
    /// or empty (an N-SET leaves them as they are). Refused with [`WorkflowError::Invalid`]:
    /// an unknown status, a malformed date or time, a sequence where a value is expected or
    /// a value where a sequence is expected.
    pub fn from_dataset(obj: &InMemDicomObject) -> Result<Mpps, WorkflowError> {
        check_shapes(obj, "")?;
        let status = match opt_text(obj, tags::PERFORMED_PROCEDURE_STEP_STATUS)? {
            Some(s) => Some(MppsStatus::parse(&s)?),
            None => None,
        };
        let mut steps = Vec::new();
        for item in items(obj, tags::SCHEDULED_STEP_ATTRIBUTES_SEQUENCE) {
            steps.push(ScheduledStepRef {
                accession: text(item, tags::ACCESSION_NUMBER)?,
                step_id: text(item, tags::SCHEDULED_PROCEDURE_STEP_ID)?,
                requested_procedure_id: text(item, tags::REQUESTED_PROCEDURE_ID)?,
                study_uid: text(item, tags::STUDY_INSTANCE_UID)?,
            });
        }
        let modality = opt_text(obj, tags::MODALITY)?;
        let date_time = |date: Tag, time: Tag, what: &str| -> Result<_, WorkflowError> {
            let d = opt_text(obj, date)?;
            let t = opt_text(obj, time)?;
            if let Some(d) = &d
                && !is_date(d)
            {
                return Err(invalid(format!(
                    "{what} date {:?} is not YYYYMMDD",
                    shown(d)
                )));
            }
            if let Some(t) = &t
                && !is_time(t)
            {
                return Err(invalid(format!("{what} time {:?} is not HHMMSS", shown(t))));
            }
            Ok(match (d, t) {
                (None, None) => None,
                (d, t) => Some((d.unwrap_or_default(), t.unwrap_or_default())),
            })
        };
        let start = date_time(
            tags::PERFORMED_PROCEDURE_STEP_START_DATE,
            tags::PERFORMED_PROCEDURE_STEP_START_TIME,
            "PerformedProcedureStepStart",
        )?;
        let end = date_time(
            tags::PERFORMED_PROCEDURE_STEP_END_DATE,
            tags::PERFORMED_PROCEDURE_STEP_END_TIME,
            "PerformedProcedureStepEnd",
        )?;
        let discontinuation_reason = match items(
            obj,
            tags::PERFORMED_PROCEDURE_STEP_DISCONTINUATION_REASON_CODE_SEQUENCE,
        )
        .first()
        {
            Some(code) => opt_text(code, tags::CODE_MEANING)?,
            None => None,
        };
        let mut series = Vec::new();
        for item in items(obj, tags::PERFORMED_SERIES_SEQUENCE) {
            let mut sop_instance_uids = Vec::new();
            for reference in items(item, tags::REFERENCED_IMAGE_SEQUENCE)
                .iter()
                .chain(items(
                    item,
                    tags::REFERENCED_NON_IMAGE_COMPOSITE_SOP_INSTANCE_SEQUENCE,
                ))
            {
                let uid = text(reference, tags::REFERENCED_SOP_INSTANCE_UID)?;
                if !uid.is_empty() {
                    sop_instance_uids.push(uid);
                }
            }
            let own_modality = text(item, tags::MODALITY)?;
            series.push(PerformedSeries {
                series_uid: text(item, tags::SERIES_INSTANCE_UID)?,
                modality: if own_modality.is_empty() {
                    modality.clone().unwrap_or_default()
                } else {
                    own_modality
                },
                sop_instance_uids,
            });
        }
        Ok(Mpps {
            status,
            steps,
            patient_id: opt_text(obj, tags::PATIENT_ID)?,
            station_ae: opt_text(obj, tags::PERFORMED_STATION_AE_TITLE)?,
            modality,
            start,
            end,
            description: opt_text(obj, tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION)?,
            discontinuation_reason,
            series,
        })
    }
}

/// The items of a sequence attribute (none when absent or zero-length; shapes are checked
/// before).
fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

/// A text value, trimmed; `None` when the attribute is absent or zero-length.
fn opt_text(obj: &InMemDicomObject, tag: Tag) -> Result<Option<String>, WorkflowError> {
    let Some(elem) = obj.get(tag) else {
        return Ok(None);
    };
    match elem.value() {
        Value::Primitive(p) => {
            let v = p.to_str();
            let v = v.trim_matches([' ', '\0']);
            if v.chars().count() > MAX_KEY_CHARS {
                return Err(invalid(format!("{tag} is too long")));
            }
            Ok((!v.is_empty()).then(|| v.to_owned()))
        }
        _ => Err(invalid(format!("{tag} is a sequence; a value is expected"))),
    }
}

/// A text value, trimmed; empty when absent.
fn text(obj: &InMemDicomObject, tag: Tag) -> Result<String, WorkflowError> {
    Ok(opt_text(obj, tag)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
        text_element(tag, vr, v)
    }

    /// An identifier: top-level keys, and `step` keys inside one SPS item (no item if `None`).
    fn identifier(top: &[(Tag, VR, &str)], step: Option<&[(Tag, VR, &str)]>) -> InMemDicomObject {
        let mut obj =
            InMemDicomObject::from_element_iter(top.iter().map(|(t, vr, v)| el(*t, *vr, v)));
        if let Some(step) = step {
            let item =
                InMemDicomObject::from_element_iter(step.iter().map(|(t, vr, v)| el(*t, *vr, v)));
            obj.put(sequence(
                tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
                vec![item],
            ));
        }
        obj
    }

    fn item() -> WorklistItem {
        WorklistItem {
            patient_name: "Müller^Anna".into(),
            patient_id: "P001".into(),
            issuer: "HOSP".into(),
            birth_date: "19700101".into(),
            sex: "F".into(),
            accession: "ACC001".into(),
            study_uid: "1.2.3.4".into(),
            requested_procedure_id: "RP001".into(),
            requested_procedure_description: "CT chest".into(),
            procedure_code: (
                "CTCHEST".into(),
                "99RADRIS".into(),
                "CT of the chest".into(),
            ),
            priority: "ROUTINE".into(),
            referring_physician: "Ref^Doc".into(),
            reason: "cough".into(),
            step_id: "SPS001".into(),
            step_description: "CT chest without contrast".into(),
            station_ae: "CT1".into(),
            station_name: "CT room 1".into(),
            modality: "CT".into(),
            start_date: "20240315".into(),
            start_time: "093000".into(),
            performing_physician: "Tech^Tom".into(),
            step_status: "SCHEDULED".into(),
            location: "ROOM1".into(),
            preparation: "none".into(),
        }
    }

    /// Parse `ident`, then assert whether [`item`] matches.
    fn check_match(ident: InMemDicomObject, expect: bool) {
        let q = WorklistQuery::from_identifier(&ident).expect("identifier parses");
        assert_eq!(q.matches(&item()), expect, "{}", q.describe());
    }

    fn check_invalid(ident: InMemDicomObject, needle: &str) {
        match WorklistQuery::from_identifier(&ident) {
            Err(WorkflowError::Invalid(why)) => {
                assert!(why.contains(needle), "{why:?} should mention {needle:?}")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn step(k: &[(Tag, VR, &str)]) -> InMemDicomObject {
        identifier(&[], Some(k))
    }

    #[test]
    fn empty_identifier_matches_everything() {
        check_match(InMemDicomObject::new_empty(), true);
        check_match(
            identifier(
                &[
                    (tags::PATIENT_NAME, VR::PN, ""),
                    (tags::PATIENT_ID, VR::LO, ""),
                ],
                Some(&[]),
            ),
            true,
        );
    }

    #[test]
    fn top_level_keys() {
        check_match(
            identifier(&[(tags::PATIENT_ID, VR::LO, "P001")], None),
            true,
        );
        check_match(
            identifier(&[(tags::PATIENT_ID, VR::LO, "P002")], None),
            false,
        );
        check_match(
            identifier(&[(tags::ACCESSION_NUMBER, VR::SH, "ACC*")], None),
            true,
        );
        check_match(
            identifier(&[(tags::REQUESTED_PROCEDURE_ID, VR::SH, "RP00?")], None),
            true,
        );
        check_match(
            identifier(&[(tags::REQUESTED_PROCEDURE_ID, VR::SH, "RP0")], None),
            false,
        );
    }

    #[test]
    fn person_names_ignore_case_and_trailing_components() {
        check_match(
            identifier(&[(tags::PATIENT_NAME, VR::PN, "müller*")], None),
            true,
        );
        check_match(
            identifier(&[(tags::PATIENT_NAME, VR::PN, "MÜLLER^ANNA^^")], None),
            true,
        );
        check_match(
            identifier(&[(tags::PATIENT_NAME, VR::PN, "Meier*")], None),
            false,
        );
        check_match(
            step(&[(
                tags::SCHEDULED_PERFORMING_PHYSICIAN_NAME,
                VR::PN,
                "tech^tom",
            )]),
            true,
        );
    }

    #[test]
    fn step_keys() {
        check_match(
            step(&[(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, "CT1")]),
            true,
        );
        check_match(
            step(&[(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, "MR1")]),
            false,
        );
        check_match(
            step(&[(tags::SCHEDULED_STATION_AE_TITLE, VR::AE, "MR1\\CT1")]),
            true,
        );
        check_match(step(&[(tags::MODALITY, VR::CS, "CT")]), true);
        check_match(step(&[(tags::MODALITY, VR::CS, "MR")]), false);
        check_match(
            step(&[(tags::SCHEDULED_PROCEDURE_STEP_STATUS, VR::CS, "SCHEDULED")]),
            true,
        );
        check_match(
            step(&[(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, "SPS002")]),
            false,
        );
    }

    #[test]
    fn date_and_time_ranges() {
        let d = tags::SCHEDULED_PROCEDURE_STEP_START_DATE;
        let t = tags::SCHEDULED_PROCEDURE_STEP_START_TIME;
        check_match(step(&[(d, VR::DA, "20240315")]), true);
        check_match(step(&[(d, VR::DA, "20240316")]), false);
        check_match(step(&[(d, VR::DA, "20240301-20240331")]), true);
        check_match(step(&[(d, VR::DA, "20240316-20240331")]), false);
        check_match(step(&[(d, VR::DA, "20240315-")]), true);
        check_match(step(&[(d, VR::DA, "-20240314")]), false);
        check_match(step(&[(t, VR::TM, "0900-1000")]), true);
        check_match(step(&[(t, VR::TM, "1000-")]), false);
        check_match(step(&[(t, VR::TM, "-0930")]), true);
        // a single time is everything within it
        check_match(step(&[(t, VR::TM, "09")]), true);
        check_match(step(&[(t, VR::TM, "0930")]), true);
        check_match(step(&[(t, VR::TM, "0931")]), false);
        check_match(
            step(&[(d, VR::DA, "20240315"), (t, VR::TM, "1000-1200")]),
            false,
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let d = tags::SCHEDULED_PROCEDURE_STEP_START_DATE;
        let t = tags::SCHEDULED_PROCEDURE_STEP_START_TIME;
        for bad in [
            "2024-03-15",
            "20241315",
            "2024031",
            "today",
            "2024*",
            "-",
            "20240301-x",
        ] {
            check_invalid(step(&[(d, VR::DA, bad)]), "ScheduledProcedureStepStartDate");
        }
        for bad in ["25", "0960", "9:30", "093000.1234567", "1000-2500", "12*"] {
            check_invalid(step(&[(t, VR::TM, bad)]), "ScheduledProcedureStepStartTime");
        }
        // two step items
        let mut two = InMemDicomObject::new_empty();
        two.put(sequence(
            tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
            vec![InMemDicomObject::new_empty(), InMemDicomObject::new_empty()],
        ));
        check_invalid(two, "2 items");
        // a sequence where a value is expected
        let mut seq_for_value = InMemDicomObject::new_empty();
        seq_for_value.put(sequence(
            tags::PATIENT_ID,
            vec![InMemDicomObject::new_empty()],
        ));
        check_invalid(seq_for_value, "a value is expected");
        // and the other way round
        check_invalid(
            identifier(
                &[(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE, VR::LO, "CT1")],
                None,
            ),
            "a sequence is expected",
        );
        // the universal date is fine
        assert!(WorklistQuery::from_identifier(&step(&[(d, VR::DA, "*")])).is_ok());
    }

    fn str_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
        obj.get(tag).map(|e| {
            e.value()
                .to_str()
                .map(|s| s.into_owned())
                .unwrap_or_default()
        })
    }

    #[test]
    fn response_returns_exactly_the_asked_keys() {
        let mut ident = identifier(
            &[
                (tags::PATIENT_NAME, VR::PN, ""),
                (tags::PATIENT_ID, VR::LO, "P001"),
                (tags::ACCESSION_NUMBER, VR::SH, ""),
                (tags::STUDY_INSTANCE_UID, VR::UI, ""),
                (tags::REQUESTED_PROCEDURE_PRIORITY, VR::SH, ""),
                (tags::PATIENT_WEIGHT, VR::DS, ""),
            ],
            Some(&[
                (tags::MODALITY, VR::CS, ""),
                (tags::SCHEDULED_PROCEDURE_STEP_START_DATE, VR::DA, ""),
                (tags::SCHEDULED_STATION_NAME, VR::SH, ""),
            ]),
        );
        ident.put(sequence(
            tags::REQUESTED_PROCEDURE_CODE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([el(
                tags::CODE_VALUE,
                VR::SH,
                "",
            )])],
        ));
        let q = WorklistQuery::from_identifier(&ident).unwrap();
        let rsp = q.response(&item());
        let got: Vec<Tag> = rsp.iter().map(|e| e.tag()).collect();
        assert_eq!(
            got,
            vec![
                tags::SPECIFIC_CHARACTER_SET, // non-ASCII name
                tags::ACCESSION_NUMBER,
                tags::PATIENT_NAME,
                tags::PATIENT_ID,
                tags::PATIENT_WEIGHT,
                tags::STUDY_INSTANCE_UID,
                tags::REQUESTED_PROCEDURE_CODE_SEQUENCE,
                tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE,
                tags::REQUESTED_PROCEDURE_PRIORITY,
            ]
        );
        assert_eq!(
            str_of(&rsp, tags::SPECIFIC_CHARACTER_SET).as_deref(),
            Some("ISO_IR 192")
        );
        assert_eq!(
            str_of(&rsp, tags::PATIENT_NAME).as_deref(),
            Some("Müller^Anna")
        );
        assert_eq!(str_of(&rsp, tags::PATIENT_WEIGHT).as_deref(), Some(""));
        assert_eq!(
            str_of(&rsp, tags::REQUESTED_PROCEDURE_PRIORITY).as_deref(),
            Some("ROUTINE")
        );
        let code = &rsp
            .get(tags::REQUESTED_PROCEDURE_CODE_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap()[0];
        assert_eq!(code.iter().count(), 1);
        assert_eq!(str_of(code, tags::CODE_VALUE).as_deref(), Some("CTCHEST"));
        let sps = &rsp
            .get(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap()[0];
        let sps_tags: Vec<Tag> = sps.iter().map(|e| e.tag()).collect();
        assert_eq!(
            sps_tags,
            vec![
                tags::MODALITY,
                tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
                tags::SCHEDULED_STATION_NAME
            ]
        );
        assert_eq!(
            str_of(sps, tags::SCHEDULED_STATION_NAME).as_deref(),
            Some("CT room 1")
        );
    }

    #[test]
    fn empty_sequences_return_every_key_and_ascii_answers_have_no_charset() {
        let mut ident = InMemDicomObject::new_empty();
        ident.put(sequence(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE, vec![]));
        ident.put(el(tags::PATIENT_ID, VR::LO, ""));
        let q = WorklistQuery::from_identifier(&ident).unwrap();
        let mut it = item();
        it.patient_name = "Doe^John".into();
        it.procedure_code = Default::default();
        let rsp = q.response(&it);
        assert!(rsp.get(tags::SPECIFIC_CHARACTER_SET).is_none());
        let sps = &rsp
            .get(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap()[0];
        assert_eq!(sps.iter().count(), STEP_KEYS.len());
        assert_eq!(str_of(sps, tags::PRE_MEDICATION).as_deref(), Some("none"));
        assert_eq!(
            str_of(sps, tags::SCHEDULED_PROCEDURE_STEP_LOCATION).as_deref(),
            Some("ROOM1")
        );
        // no procedure code: a zero-length protocol code sequence
        assert_eq!(
            sps.get(tags::SCHEDULED_PROTOCOL_CODE_SEQUENCE)
                .and_then(|e| e.items())
                .map(|i| i.len()),
            Some(0)
        );
        // the character set is returned when asked for, even for ASCII answers
        ident.put(el(tags::SPECIFIC_CHARACTER_SET, VR::CS, ""));
        let q = WorklistQuery::from_identifier(&ident).unwrap();
        assert!(q.response(&it).get(tags::SPECIFIC_CHARACTER_SET).is_some());
    }

    #[test]
    fn describe_names_the_keys() {
        let q = WorklistQuery::from_identifier(&step(&[
            (tags::MODALITY, VR::CS, "CT"),
            (
                tags::SCHEDULED_PROCEDURE_STEP_START_DATE,
                VR::DA,
                "20240301-20240331",
            ),
        ]))
        .unwrap();
        assert_eq!(
            q.describe(),
            "ScheduledProcedureStepStartDate=20240301-20240331 Modality=CT"
        );
    }

    fn mpps_dataset(status: &str) -> InMemDicomObject {
        let mut obj = InMemDicomObject::from_element_iter([
            el(tags::PERFORMED_PROCEDURE_STEP_STATUS, VR::CS, status),
            el(tags::PATIENT_ID, VR::LO, "P001"),
            el(tags::PERFORMED_STATION_AE_TITLE, VR::AE, "CT1"),
            el(tags::MODALITY, VR::CS, "CT"),
            el(
                tags::PERFORMED_PROCEDURE_STEP_START_DATE,
                VR::DA,
                "20240315",
            ),
            el(tags::PERFORMED_PROCEDURE_STEP_START_TIME, VR::TM, "093512"),
            el(
                tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION,
                VR::LO,
                "CT chest",
            ),
        ]);
        obj.put(sequence(
            tags::SCHEDULED_STEP_ATTRIBUTES_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                el(tags::ACCESSION_NUMBER, VR::SH, "ACC001"),
                el(tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, "SPS001"),
                el(tags::REQUESTED_PROCEDURE_ID, VR::SH, "RP001"),
                el(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4"),
            ])],
        ));
        obj
    }

    #[test]
    fn mpps_create_data_set() {
        let m = Mpps::from_dataset(&mpps_dataset("IN PROGRESS")).unwrap();
        assert_eq!(m.status, Some(MppsStatus::InProgress));
        assert_eq!(
            m.steps,
            vec![ScheduledStepRef {
                accession: "ACC001".into(),
                step_id: "SPS001".into(),
                requested_procedure_id: "RP001".into(),
                study_uid: "1.2.3.4".into(),
            }]
        );
        assert_eq!(m.patient_id.as_deref(), Some("P001"));
        assert_eq!(m.station_ae.as_deref(), Some("CT1"));
        assert_eq!(m.start, Some(("20240315".into(), "093512".into())));
        assert_eq!(m.end, None);
        assert_eq!(m.description.as_deref(), Some("CT chest"));
        assert!(m.series.is_empty());
    }

    #[test]
    fn mpps_set_data_set_with_series_and_discontinuation() {
        let mut obj = InMemDicomObject::from_element_iter([
            el(
                tags::PERFORMED_PROCEDURE_STEP_STATUS,
                VR::CS,
                "DISCONTINUED",
            ),
            el(tags::PERFORMED_PROCEDURE_STEP_END_DATE, VR::DA, "20240315"),
            el(tags::PERFORMED_PROCEDURE_STEP_END_TIME, VR::TM, "094000"),
            el(tags::MODALITY, VR::CS, "CT"),
        ]);
        obj.put(sequence(
            tags::PERFORMED_PROCEDURE_STEP_DISCONTINUATION_REASON_CODE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                el(tags::CODE_VALUE, VR::SH, "110514"),
                el(
                    tags::CODE_MEANING,
                    VR::LO,
                    "Incorrect worklist entry selected",
                ),
            ])],
        ));
        let image = |uid: &str| {
            InMemDicomObject::from_element_iter([
                el(
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    "1.2.840.10008.5.1.4.1.1.2",
                ),
                el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, uid),
            ])
        };
        let mut series = InMemDicomObject::from_element_iter([el(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.3.4.5",
        )]);
        series.put(sequence(
            tags::REFERENCED_IMAGE_SEQUENCE,
            vec![image("1.2.3.4.5.1"), image("1.2.3.4.5.2")],
        ));
        obj.put(sequence(tags::PERFORMED_SERIES_SEQUENCE, vec![series]));
        let m = Mpps::from_dataset(&obj).unwrap();
        assert_eq!(m.status, Some(MppsStatus::Discontinued));
        assert_eq!(m.end, Some(("20240315".into(), "094000".into())));
        assert_eq!(
            m.discontinuation_reason.as_deref(),
            Some("Incorrect worklist entry selected")
        );
        assert_eq!(
            m.series,
            vec![PerformedSeries {
                series_uid: "1.2.3.4.5".into(),
                modality: "CT".into(),
                sop_instance_uids: vec!["1.2.3.4.5.1".into(), "1.2.3.4.5.2".into()],
            }]
        );
        // an N-SET that only names the status leaves everything else alone
        let only = InMemDicomObject::from_element_iter([el(
            tags::PERFORMED_PROCEDURE_STEP_STATUS,
            VR::CS,
            "COMPLETED",
        )]);
        let m = Mpps::from_dataset(&only).unwrap();
        assert_eq!(
            m,
            Mpps {
                status: Some(MppsStatus::Completed),
                ..Mpps::default()
            }
        );
    }

    #[test]
    fn mpps_refusals() {
        for bad in ["DONE", "in progress", "COMPLETE"] {
            assert!(matches!(
                Mpps::from_dataset(&mpps_dataset(bad)),
                Err(WorkflowError::Invalid(_))
            ));
        }
        let mut bad_date = mpps_dataset("IN PROGRESS");
        bad_date.put(el(
            tags::PERFORMED_PROCEDURE_STEP_START_DATE,
            VR::DA,
            "2024-03-15",
        ));
        assert!(matches!(
            Mpps::from_dataset(&bad_date),
            Err(WorkflowError::Invalid(_))
        ));
        let mut seq_for_value = mpps_dataset("IN PROGRESS");
        seq_for_value.put(sequence(tags::PATIENT_ID, vec![]));
        assert!(matches!(
            Mpps::from_dataset(&seq_for_value),
            Err(WorkflowError::Invalid(_))
        ));
    }
}
