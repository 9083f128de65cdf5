//! What a stored audit record means in DICOM PS3.15 A.5 terms: the event, its action code,
//! outcome, who took part in which role and which objects were touched. Both output formats
//! (the XML audit message and the FHIR AuditEvent) are written from this one description, so
//! they cannot drift apart. The mapping table is in the [module doc](super).

use std::net::{IpAddr, SocketAddr};

use radris_core::Uid;

use crate::audit::StoredRecord;

/// A coded value: `csd-code`, `codeSystemName`, `originalText` in the XML; a FHIR Coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Coded {
    pub code: &'static str,
    pub system: CodeSystem,
    pub display: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeSystem {
    /// DICOM Controlled Terminology (PS3.16).
    Dcm,
    /// The RFC 3881 code lists (participant object ID types).
    Rfc3881,
}

impl CodeSystem {
    /// The `codeSystemName` of the XML.
    pub fn name(self) -> &'static str {
        match self {
            CodeSystem::Dcm => "DCM",
            CodeSystem::Rfc3881 => "RFC-3881",
        }
    }

    /// The FHIR `Coding.system`.
    pub fn uri(self) -> &'static str {
        match self {
            CodeSystem::Dcm => "http://dicom.nema.org/resources/ontology/DCM",
            CodeSystem::Rfc3881 => "urn:ietf:rfc:3881",
        }
    }
}

const fn dcm(code: &'static str, display: &'static str) -> Coded {
    Coded {
        code,
        system: CodeSystem::Dcm,
        display,
    }
}

const fn rfc3881(code: &'static str, display: &'static str) -> Coded {
    Coded {
        code,
        system: CodeSystem::Rfc3881,
        display,
    }
}

// Event IDs (PS3.15 A.5.3, CID 400 "Audit Event ID").
pub(crate) const APPLICATION_ACTIVITY: Coded = dcm("110100", "Application Activity");
pub(crate) const AUDIT_LOG_USED: Coded = dcm("110101", "Audit Log Used");
pub(crate) const INSTANCES_ACCESSED: Coded = dcm("110103", "DICOM Instances Accessed");
pub(crate) const INSTANCES_TRANSFERRED: Coded = dcm("110104", "DICOM Instances Transferred");
pub(crate) const STUDY_DELETED: Coded = dcm("110105", "DICOM Study Deleted");
pub(crate) const QUERY: Coded = dcm("110112", "Query");
pub(crate) const SECURITY_ALERT: Coded = dcm("110113", "Security Alert");
pub(crate) const USER_AUTHENTICATION: Coded = dcm("110114", "User Authentication");

// Event type codes (CID 401 "Audit Event Type Code").
pub(crate) const LOGIN: Coded = dcm("110122", "Login");
pub(crate) const LOGOUT: Coded = dcm("110123", "Logout");
pub(crate) const NODE_AUTHENTICATION: Coded = dcm("110126", "Node Authentication");
pub(crate) const SECURITY_CONFIGURATION: Coded = dcm("110129", "Security Configuration");
pub(crate) const USER_SECURITY_ATTRIBUTES_CHANGED: Coded =
    dcm("110137", "User Security Attributes Changed");

// Active participant roles (CID 402 "Audit Active Participant Role ID Code").
pub(crate) const DESTINATION_ROLE: Coded = dcm("110152", "Destination Role ID");
pub(crate) const SOURCE_ROLE: Coded = dcm("110153", "Source Role ID");

// Participant object ID types.
pub(crate) const STUDY_INSTANCE_UID: Coded = dcm("110180", "Study Instance UID");
pub(crate) const PATIENT_NUMBER: Coded = rfc3881("2", "Patient Number");
pub(crate) const REPORT_NUMBER: Coded = rfc3881("9", "Report Number");
pub(crate) const SEARCH_CRITERIA: Coded = rfc3881("10", "Search Criteria");
pub(crate) const URI: Coded = rfc3881("12", "URI");

/// EventActionCode (PS3.15 A.5.1): what was done to the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActionCode {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl ActionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionCode::Create => "C",
            ActionCode::Read => "R",
            ActionCode::Update => "U",
            ActionCode::Delete => "D",
            ActionCode::Execute => "E",
        }
    }

    fn of_method(method: &str) -> ActionCode {
        match method {
            "GET" | "HEAD" => ActionCode::Read,
            "POST" => ActionCode::Create,
            "PUT" | "PATCH" => ActionCode::Update,
            "DELETE" => ActionCode::Delete,
            _ => ActionCode::Execute,
        }
    }
}

/// EventOutcomeIndicator (PS3.15 A.5.1, RFC 3881).
pub(crate) fn outcome_indicator(outcome: &str) -> &'static str {
    match outcome {
        "success" => "0",
        // refused by authentication or authorisation: the action was terminated
        "denied" => "8",
        // bad input, storage failure, or an outcome this version does not know
        _ => "4",
    }
}

/// Whether a stored outcome is a success.
pub(crate) fn is_success(outcome: &str) -> bool {
    outcome == "success"
}

/// What kind of thing a participant object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParticipantObject {
    pub id: String,
    pub id_type: Coded,
    /// ParticipantObjectTypeCode: 1 person, 2 system object.
    pub type_code: &'static str,
    /// ParticipantObjectTypeCodeRole: 1 patient, 3 report, 13 security resource, 24 query.
    pub role: &'static str,
    /// The query text (ParticipantObjectQuery, base64 in the XML), for query objects.
    pub query: Option<String>,
    /// `(type, value)` pairs for ParticipantObjectDetail / `entity.detail`.
    pub details: Vec<(&'static str, String)>,
}

/// The requesting participant: the actor of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requestor {
    pub user_id: String,
    /// `AETITLES=<AE>` for DIMSE peers (PS3.15 A.5.2.1).
    pub alternative_user_id: Option<String>,
    /// The person's user name for `user:` actors.
    pub user_name: Option<String>,
    pub network: Option<NetworkAccessPoint>,
    pub role: Option<Coded>,
}

/// NetworkAccessPointID and its type code (1 machine name, 2 IP address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkAccessPoint {
    pub id: String,
    pub type_code: &'static str,
}

/// A stored record described in PS3.15 terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    pub event: Coded,
    pub event_type: Option<Coded>,
    pub action: ActionCode,
    pub outcome: &'static str,
    /// Why it failed (the record's detail), only for failures.
    pub outcome_description: Option<String>,
    pub requestor: Requestor,
    /// The role this server played (source of a retrieve, destination of a store).
    pub archive_role: Option<Coded>,
    /// The tenant, as the enterprise site; `None` when no tenant was established.
    pub site: Option<String>,
    pub objects: Vec<ParticipantObject>,
}

/// Which event a record is, and how the objects are read from its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A search: the resource and detail become a query object.
    Query,
    /// Instances moved between us and the requestor.
    Transfer {
        received: bool,
    },
    /// Instances read, changed or deleted in place.
    Accessed,
    StudyDeleted,
    Authentication,
    SecurityAlert,
    AuditLogUsed,
    Application,
}

fn classify(action: &str, outcome: &str, actor: &str) -> (Shape, ActionCode, Option<Coded>) {
    use ActionCode as A;
    if let Some(rest) = action.strip_prefix("http ") {
        if outcome == "denied" && actor == "unknown" {
            // no, or no valid, credentials: the request failed authentication
            return (Shape::Authentication, A::Execute, None);
        }
        let (method, route) = rest.split_once(' ').unwrap_or((rest, ""));
        return classify_http(method, route);
    }
    // Dotted names. The first matching prefix wins, so longer prefixes come first.
    let table: &[(&str, Shape, A, Option<Coded>)] = &[
        ("dicomweb.qido", Shape::Query, A::Execute, None),
        (
            "dicomweb.wado",
            Shape::Transfer { received: false },
            A::Read,
            None,
        ),
        (
            "dicomweb.stow",
            Shape::Transfer { received: true },
            A::Create,
            None,
        ),
        ("dimse.c-find", Shape::Query, A::Execute, None),
        (
            "dimse.c-store",
            Shape::Transfer { received: true },
            A::Create,
            None,
        ),
        (
            "dimse.c-move",
            Shape::Transfer { received: false },
            A::Read,
            None,
        ),
        (
            "dimse.c-get",
            Shape::Transfer { received: false },
            A::Read,
            None,
        ),
        (
            "auth.logout",
            Shape::Authentication,
            A::Execute,
            Some(LOGOUT),
        ),
        ("auth.login", Shape::Authentication, A::Execute, Some(LOGIN)),
        ("auth.", Shape::Authentication, A::Execute, None),
        ("admin.delete", Shape::StudyDeleted, A::Delete, None),
        (
            "admin.",
            Shape::SecurityAlert,
            A::Execute,
            Some(SECURITY_CONFIGURATION),
        ),
        ("audit.", Shape::AuditLogUsed, A::Read, None),
    ];
    for (prefix, shape, code, ty) in table {
        if action.starts_with(prefix) {
            return (*shape, *code, *ty);
        }
    }
    if action.starts_with("dimse.assoc") {
        // an association refused because the calling AE is not allowed for any tenant
        return if is_success(outcome) {
            (Shape::Application, A::Execute, None)
        } else {
            (Shape::SecurityAlert, A::Execute, Some(NODE_AUTHENTICATION))
        };
    }
    if let Some(rest) = action.strip_prefix("rest.") {
        return if rest.contains("delete") {
            (Shape::Accessed, A::Delete, None)
        } else {
            (Shape::Query, A::Execute, None)
        };
    }
    (Shape::Application, A::Execute, None)
}

/// `http <METHOD> <matched route>`, as the HTTP middleware writes it.
fn classify_http(method: &str, route: &str) -> (Shape, ActionCode, Option<Coded>) {
    use ActionCode as A;
    let by_method = ActionCode::of_method(method);
    let last = route.rsplit('/').next().unwrap_or_default();
    if let Some(web) = route.strip_prefix("/dicom-web/") {
        return match method {
            "POST" => (Shape::Transfer { received: true }, A::Create, None),
            "GET" | "HEAD" if matches!(last, "studies" | "series" | "instances") => {
                (Shape::Query, A::Execute, None)
            }
            "GET" | "HEAD" => (Shape::Transfer { received: false }, A::Read, None),
            "DELETE" if web.starts_with("studies/") && last == "{study}" => {
                (Shape::StudyDeleted, A::Delete, None)
            }
            _ => (Shape::Accessed, by_method, None),
        };
    }
    if route == "/wado" {
        return (Shape::Transfer { received: false }, A::Read, None);
    }
    if route.starts_with("/api/v1/audit") {
        return (Shape::AuditLogUsed, A::Read, None);
    }
    if route.starts_with("/api/v1/auth/") {
        return if route.ends_with("/logout") {
            (Shape::Authentication, A::Execute, Some(LOGOUT))
        } else if route.ends_with("/login") {
            (Shape::Authentication, A::Execute, Some(LOGIN))
        } else {
            // second-factor enrolment and the like
            (
                Shape::SecurityAlert,
                A::Update,
                Some(USER_SECURITY_ATTRIBUTES_CHANGED),
            )
        };
    }
    if route.starts_with("/api/v1/admin/tokens") {
        return (
            Shape::SecurityAlert,
            by_method,
            Some(USER_SECURITY_ATTRIBUTES_CHANGED),
        );
    }
    if route.starts_with("/api/v1/admin") {
        return (
            Shape::SecurityAlert,
            by_method,
            Some(SECURITY_CONFIGURATION),
        );
    }
    if method == "DELETE" && route.starts_with("/api/v1/studies/") {
        return (Shape::StudyDeleted, A::Delete, None);
    }
    if method == "DELETE" {
        return (Shape::Accessed, A::Delete, None);
    }
    if route.starts_with("/api/v1/studies")
        || route.starts_with("/api/v1/series")
        || route.starts_with("/api/v1/patients")
    {
        return (Shape::Query, A::Execute, None);
    }
    (Shape::Application, by_method, None)
}

/// Describe a stored record. Never fails: a record this version cannot place becomes
/// "Application Activity" with its text kept, so nothing is dropped from the export.
pub(crate) fn describe(row: &StoredRecord) -> Described {
    let (shape, action, event_type) = classify(&row.action, &row.outcome, &row.actor);
    let event = match shape {
        Shape::Query => QUERY,
        Shape::Transfer { .. } => INSTANCES_TRANSFERRED,
        Shape::Accessed => INSTANCES_ACCESSED,
        Shape::StudyDeleted => STUDY_DELETED,
        Shape::Authentication => USER_AUTHENTICATION,
        Shape::SecurityAlert => SECURITY_ALERT,
        Shape::AuditLogUsed => AUDIT_LOG_USED,
        Shape::Application => APPLICATION_ACTIVITY,
    };
    // PS3.15 A.5.3.2: in a transfer, the side that sends is the source.
    let (requestor_role, archive_role) = match shape {
        Shape::Transfer { received: true } => (Some(SOURCE_ROLE), Some(DESTINATION_ROLE)),
        Shape::Transfer { received: false } => (Some(DESTINATION_ROLE), Some(SOURCE_ROLE)),
        _ => (None, None),
    };
    let mut objects = Vec::new();
    if let Some(study) = study_uid(&row.resource) {
        objects.push(ParticipantObject {
            id: study,
            id_type: STUDY_INSTANCE_UID,
            type_code: "2",
            role: "3",
            query: None,
            details: Vec::new(),
        });
    } else if let Some(patient) = row.resource.strip_prefix("patient ") {
        objects.push(ParticipantObject {
            id: patient.trim().to_owned(),
            id_type: PATIENT_NUMBER,
            type_code: "1",
            role: "1",
            query: None,
            details: Vec::new(),
        });
    }
    if shape == Shape::Query {
        objects.push(ParticipantObject {
            id: row.resource.clone(),
            id_type: SEARCH_CRITERIA,
            type_code: "2",
            role: "24",
            query: Some(row.detail.clone()),
            details: Vec::new(),
        });
    } else if objects.is_empty() && row.resource.starts_with('/') {
        // a series, an instance or another route: the path names it
        objects.push(ParticipantObject {
            id: row.resource.clone(),
            id_type: URI,
            type_code: "2",
            role: "3",
            query: None,
            details: Vec::new(),
        });
    }
    // The record itself, with its place in the hash chain, so an exported message can be
    // checked against the tamper-evident log.
    let mut chain = vec![
        ("radris-audit-action", row.action.clone()),
        ("radris-audit-hash", row.hash.clone()),
        ("radris-audit-prev-hash", row.prev_hash.clone()),
    ];
    if !row.resource.is_empty() {
        chain.push(("radris-audit-resource", row.resource.clone()));
    }
    if !row.detail.is_empty() {
        chain.push(("radris-audit-detail", row.detail.clone()));
    }
    objects.push(ParticipantObject {
        id: row.seq.to_string(),
        id_type: REPORT_NUMBER,
        type_code: "2",
        role: "13",
        query: None,
        details: chain,
    });
    Described {
        event,
        event_type,
        action,
        outcome: outcome_indicator(&row.outcome),
        outcome_description: (!is_success(&row.outcome)).then(|| {
            if row.detail.is_empty() {
                row.outcome.clone()
            } else {
                row.detail.clone()
            }
        }),
        requestor: requestor(row, requestor_role),
        archive_role,
        site: (row.tenant != "-" && !row.tenant.is_empty()).then(|| row.tenant.clone()),
        objects,
    }
}

fn requestor(row: &StoredRecord, role: Option<Coded>) -> Requestor {
    let actor = if row.actor.is_empty() {
        "unknown"
    } else {
        row.actor.as_str()
    };
    Requestor {
        user_id: actor.to_owned(),
        alternative_user_id: actor
            .strip_prefix("ae:")
            .map(|ae| format!("AETITLES={}", ae.trim())),
        user_name: actor.strip_prefix("user:").map(str::to_owned),
        network: network_access_point(&row.source),
        role,
    }
}

/// The peer of a record's `source`: an IP address (port dropped), a host name, or nothing
/// for `local`/`unknown`.
pub(crate) fn network_access_point(source: &str) -> Option<NetworkAccessPoint> {
    let source = source.trim();
    if source.is_empty() || source == "local" || source == "unknown" || source == "-" {
        return None;
    }
    let ip = source
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| source.parse::<IpAddr>());
    if let Ok(ip) = ip {
        return Some(NetworkAccessPoint {
            id: ip.to_string(),
            type_code: "2",
        });
    }
    Some(NetworkAccessPoint {
        id: source.to_owned(),
        type_code: "1",
    })
}

/// The Study Instance UID a resource names: `study <uid>` (DIMSE) or a path with
/// `/studies/<uid>` (DICOMweb, REST).
pub(crate) fn study_uid(resource: &str) -> Option<String> {
    let candidate = if let Some(uid) = resource.strip_prefix("study ") {
        uid
    } else {
        let mut segments = resource.split('/');
        segments.find(|s| *s == "studies")?;
        segments.next()?
    };
    Uid::parse(candidate).ok().map(|u| u.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(action: &str, outcome: &str, event: Coded, code: ActionCode, ty: Option<Coded>) {
        let (shape, a, t) = classify(action, outcome, "a");
        let got = describe(&StoredRecord {
            seq: 1,
            at: 0,
            tenant: "t".into(),
            actor: "a".into(),
            action: action.into(),
            outcome: outcome.into(),
            resource: String::new(),
            detail: String::new(),
            source: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
        });
        assert_eq!(
            (got.event, a, t),
            (event, code, ty),
            "{action} ({outcome}) classified as {shape:?}"
        );
    }

    #[test]
    fn actions_map_to_dicom_events() {
        use ActionCode::*;
        let ok = "success";
        check("dicomweb.qido.studies", ok, QUERY, Execute, None);
        check(
            "dicomweb.wado.instance",
            ok,
            INSTANCES_TRANSFERRED,
            Read,
            None,
        );
        check("dicomweb.stow", ok, INSTANCES_TRANSFERRED, Create, None);
        check("dimse.c-find", ok, QUERY, Execute, None);
        check("dimse.c-store", ok, INSTANCES_TRANSFERRED, Create, None);
        check("dimse.c-move", ok, INSTANCES_TRANSFERRED, Read, None);
        check("dimse.c-get", ok, INSTANCES_TRANSFERRED, Read, None);
        check(
            "dimse.associate",
            "denied",
            SECURITY_ALERT,
            Execute,
            Some(NODE_AUTHENTICATION),
        );
        check("auth.login", ok, USER_AUTHENTICATION, Execute, Some(LOGIN));
        check(
            "auth.login.failed",
            "denied",
            USER_AUTHENTICATION,
            Execute,
            Some(LOGIN),
        );
        check(
            "auth.logout",
            ok,
            USER_AUTHENTICATION,
            Execute,
            Some(LOGOUT),
        );
        check(
            "auth.token.denied",
            "denied",
            USER_AUTHENTICATION,
            Execute,
            None,
        );
        check("admin.delete", ok, STUDY_DELETED, Delete, None);
        check(
            "admin.keys.rotate",
            ok,
            SECURITY_ALERT,
            Execute,
            Some(SECURITY_CONFIGURATION),
        );
        check("rest.studies", ok, QUERY, Execute, None);
        check("rest.study.delete", ok, INSTANCES_ACCESSED, Delete, None);
        check("something.new", ok, APPLICATION_ACTIVITY, Execute, None);
        // what the HTTP middleware writes
        check("http GET /dicom-web/studies", ok, QUERY, Execute, None);
        check(
            "http GET /dicom-web/studies/{study}/series/{series}/instances",
            ok,
            QUERY,
            Execute,
            None,
        );
        check(
            "http GET /dicom-web/studies/{study}/series/{series}/instances/{instance}",
            ok,
            INSTANCES_TRANSFERRED,
            Read,
            None,
        );
        check(
            "http GET /dicom-web/studies/{study}/metadata",
            ok,
            INSTANCES_TRANSFERRED,
            Read,
            None,
        );
        check("http GET /wado", ok, INSTANCES_TRANSFERRED, Read, None);
        check(
            "http POST /dicom-web/studies",
            ok,
            INSTANCES_TRANSFERRED,
            Create,
            None,
        );
        check(
            "http DELETE /api/v1/studies/{study_uid}",
            ok,
            STUDY_DELETED,
            Delete,
            None,
        );
        check(
            "http DELETE /api/v1/series/{series_uid}",
            ok,
            INSTANCES_ACCESSED,
            Delete,
            None,
        );
        check("http GET /api/v1/studies", ok, QUERY, Execute, None);
        check("http GET /api/v1/patients", ok, QUERY, Execute, None);
        check("http GET /api/v1/audit", ok, AUDIT_LOG_USED, Read, None);
        check(
            "http POST /api/v1/admin/tokens",
            ok,
            SECURITY_ALERT,
            Create,
            Some(USER_SECURITY_ATTRIBUTES_CHANGED),
        );
        check(
            "http POST /api/v1/auth/totp/enrol",
            ok,
            SECURITY_ALERT,
            Update,
            Some(USER_SECURITY_ATTRIBUTES_CHANGED),
        );
        assert_eq!(
            classify("http GET /dicom-web/studies", "denied", "unknown"),
            (Shape::Authentication, Execute, None)
        );
        check(
            "http GET /api/v1/whoami",
            ok,
            APPLICATION_ACTIVITY,
            Read,
            None,
        );
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome_indicator("success"), "0");
        assert_eq!(outcome_indicator("failure"), "4");
        assert_eq!(outcome_indicator("denied"), "8");
        assert_eq!(outcome_indicator("something else"), "4");
    }

    #[test]
    fn study_uids_and_peers() {
        assert_eq!(study_uid("study 1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(
            study_uid("/dicom-web/studies/1.2.840.1/series/1.2.3").as_deref(),
            Some("1.2.840.1")
        );
        assert_eq!(study_uid("/dicom-web/studies"), None);
        assert_eq!(study_uid("/dicom-web/studies/not a uid"), None);
        assert_eq!(study_uid("refused instances"), None);
        let nap = |s| network_access_point(s).map(|n| (n.id, n.type_code));
        assert_eq!(nap("10.0.0.7:4242"), Some(("10.0.0.7".into(), "2")));
        assert_eq!(nap("[::1]:443"), Some(("::1".into(), "2")));
        assert_eq!(nap("192.168.1.1"), Some(("192.168.1.1".into(), "2")));
        assert_eq!(
            nap("modality.example"),
            Some(("modality.example".into(), "1"))
        );
        assert_eq!(nap("local"), None);
        assert_eq!(nap("unknown"), None);
    }
}
