//! The RIS's records as the API shows them (JSON shapes of `docs/ris-api.md`). Times are
//! milliseconds since the Unix epoch inside, ISO 8601 UTC strings outside ([`Time`]).

use serde::{Deserialize, Serialize, Serializer};

use crate::Priority;
use crate::routing::Rule;
use crate::workflow::OrderState;

/// A point in time (ms since the Unix epoch; 0 = not yet), serialised as ISO 8601 UTC or
/// `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time(pub i64);

impl Time {
    pub fn iso(self) -> Option<String> {
        (self.0 > 0).then(|| {
            chrono::DateTime::from_timestamp_millis(self.0)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default()
        })
    }

    /// Parse an RFC 3339 time (`2026-11-28T09:30:00Z`, offsets allowed).
    pub fn parse(s: &str) -> Option<Time> {
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| Time(t.timestamp_millis()))
    }

    pub fn now() -> Time {
        Time(now_millis())
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.iso() {
            Some(v) => s.serialize_str(&v),
            None => s.serialize_none(),
        }
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Debug, Clone, Serialize)]
pub struct Patient {
    pub id: String,
    pub patient_id: String,
    pub issuer: String,
    pub name: String,
    pub birth_date: String,
    pub sex: String,
    pub merged_into: Option<String>,
    pub links: Vec<String>,
    pub created_at: Time,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPatient {
    pub patient_id: String,
    #[serde(default)]
    pub issuer: String,
    pub name: String,
    #[serde(default)]
    pub birth_date: String,
    #[serde(default)]
    pub sex: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientChange {
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Procedure {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub scheme: String,
    pub name: String,
    pub modality: String,
    #[serde(default)]
    pub body_part: String,
    pub duration_min: i64,
    #[serde(default)]
    pub preparation: String,
    #[serde(default)]
    pub subspecialty: String,
}

/// The patient as an order shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OrderPatient {
    pub id: String,
    pub patient_id: String,
    pub issuer: String,
    pub name: String,
    pub birth_date: String,
    pub sex: String,
}

/// The procedure as an order shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OrderProcedure {
    pub code: String,
    pub name: String,
    pub modality: String,
    pub body_part: String,
    pub duration_min: i64,
    pub subspecialty: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderTimes {
    pub ordered: Time,
    pub scheduled: Time,
    pub arrived: Time,
    pub started: Time,
    pub images_complete: Time,
    pub preliminary: Time,
    #[serde(rename = "final")]
    pub final_: Time,
}

#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: String,
    pub accession: String,
    pub state: OrderState,
    pub priority: Priority,
    pub reason: String,
    pub referring_physician: String,
    pub ordered_by: String,
    pub patient: OrderPatient,
    pub procedure: OrderProcedure,
    pub study_uid: String,
    pub site: String,
    pub appointment: Option<Appointment>,
    pub assigned_to: String,
    pub assigned_group: String,
    pub assignment_reason: String,
    pub claimed_by: String,
    pub escalated_at: Time,
    pub times: OrderTimes,
    pub created_at: Time,
    pub updated_at: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryEntry>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub at: Time,
    pub from: String,
    pub to: String,
    pub actor: String,
    pub detail: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub patient: String,
    pub procedure_code: String,
    pub priority: Priority,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub referring_physician: String,
    #[serde(default)]
    pub accession: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderChange {
    pub priority: Option<Priority>,
    pub reason: Option<String>,
    pub referring_physician: Option<String>,
    pub procedure_code: Option<String>,
}

/// Appointment (scheduled procedure step) states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentState {
    Booked,
    Arrived,
    InProgress,
    Completed,
    NoShow,
    Cancelled,
}

impl AppointmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentState::Booked => "booked",
            AppointmentState::Arrived => "arrived",
            AppointmentState::InProgress => "in_progress",
            AppointmentState::Completed => "completed",
            AppointmentState::NoShow => "no_show",
            AppointmentState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AppointmentState::Booked,
            AppointmentState::Arrived,
            AppointmentState::InProgress,
            AppointmentState::Completed,
            AppointmentState::NoShow,
            AppointmentState::Cancelled,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// Whether the appointment holds its slot.
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            AppointmentState::Booked | AppointmentState::Arrived | AppointmentState::InProgress
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Appointment {
    pub id: String,
    pub order_id: String,
    pub resource_id: String,
    pub resource_name: String,
    pub starts_at: Time,
    pub ends_at: Time,
    pub state: AppointmentState,
    pub accession: String,
    pub patient_name: String,
    pub procedure_name: String,
    pub priority: Priority,
    pub step_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Modality,
    Room,
    Staff,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Modality => "modality",
            ResourceKind::Room => "room",
            ResourceKind::Staff => "staff",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    #[serde(default)]
    pub id: String,
    pub kind: ResourceKind,
    pub name: String,
    #[serde(default)]
    pub modality: String,
    #[serde(default)]
    pub ae_title: String,
    #[serde(default)]
    pub station_name: String,
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub subspecialties: Vec<String>,
    #[serde(default)]
    pub user_name: String,
    /// Opening hours (UTC), `HH:MM`.
    #[serde(default = "default_open_from")]
    pub open_from: String,
    #[serde(default = "default_open_to")]
    pub open_to: String,
}

fn default_open_from() -> String {
    "07:00".into()
}

fn default_open_to() -> String {
    "19:00".into()
}

/// `HH:MM` → minutes after midnight.
pub fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

pub fn hhmm(min: i64) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}

#[derive(Debug, Clone, Serialize)]
pub struct Shift {
    pub id: String,
    pub resource_id: String,
    pub starts_at: Time,
    pub ends_at: Time,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unmatched {
    pub study_uid: String,
    pub patient_id: String,
    pub patient_name: String,
    pub accession: String,
    pub study_date: String,
    pub modalities: Vec<String>,
    pub description: String,
    pub reason: String,
    pub received_at: Time,
    pub candidates: Vec<Order>,
}

/// The tenant's routing configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub rules: Vec<Rule>,
    #[serde(default = "default_escalation")]
    pub stat_escalation_minutes: i64,
}

fn default_escalation() -> i64 {
    30
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            rules: Vec::new(),
            stat_escalation_minutes: default_escalation(),
        }
    }
}

/// Reading worklist filters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReadingFilter {
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub modality: Option<String>,
    #[serde(default)]
    pub body_part: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModalityTurnaround {
    pub modality: String,
    pub n: usize,
    pub order_to_scan_min: Option<f64>,
    pub scan_to_preliminary_min: Option<f64>,
    pub preliminary_to_final_min: Option<f64>,
    pub order_to_final_min: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReaderTurnaround {
    pub radiologist: String,
    pub n: usize,
    pub images_to_preliminary_min: Option<f64>,
    pub images_to_final_min: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Turnaround {
    pub by_modality: Vec<ModalityTurnaround>,
    pub by_radiologist: Vec<ReaderTurnaround>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadingLoad {
    pub radiologist: String,
    pub open: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Utilisation {
    pub resource_id: String,
    pub name: String,
    pub booked_min: i64,
    pub open_min: i64,
    pub utilisation: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analytics {
    pub from: Time,
    pub to: Time,
    pub turnaround: Turnaround,
    pub queues: std::collections::BTreeMap<String, i64>,
    pub reading_load: Vec<ReadingLoad>,
    pub utilisation: Vec<Utilisation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AutoScheduleMetrics {
    pub utilisation: f64,
    pub mean_wait_min: f64,
    pub stat_mean_wait_min: f64,
    pub objective: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotPlaced {
    pub order_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AutoScheduled {
    pub placed: Vec<Appointment>,
    pub unplaced: Vec<NotPlaced>,
    pub metrics: AutoScheduleMetrics,
    /// The same batch placed first-fit, for comparison.
    pub first_fit: AutoScheduleMetrics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_iso() {
        let t = Time::parse("2026-11-28T09:30:00Z").unwrap();
        assert_eq!(t.iso().as_deref(), Some("2026-11-28T09:30:00Z"));
        assert_eq!(Time::parse("2026-11-28T10:30:00+01:00"), Some(t));
        assert_eq!(Time(0).iso(), None);
        assert_eq!(Time::parse("28/11/2026"), None);
    }

    #[test]
    fn opening_hours_parse() {
        assert_eq!(parse_hhmm("07:30"), Some(450));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:30"), None);
        assert_eq!(parse_hhmm("7"), None);
        assert_eq!(hhmm(450), "07:30");
    }
}
