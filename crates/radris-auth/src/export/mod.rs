//! Audit log export: DICOM PS3.15 A.5 audit messages over syslog (RFC 5424 on TLS, RFC 5425)
//! for an IHE ATNA audit record repository, and FHIR R4 `AuditEvent` JSON for auditors.
//!
//! * [`to_dicom_audit_message`]: one stored record as a PS3.15 A.5 `<AuditMessage>` (the
//!   RFC 3881-derived schema).
//! * [`to_fhir_audit_event`], [`to_fhir_bundle`]: the same record as a FHIR R4 `AuditEvent`,
//!   and a list of records (e.g. the result of [`audit::search`](crate::audit::search)) as a
//!   `Bundle`.
//! * [`syslog_message`], [`octet_counted`]: the RFC 5424 message that carries the XML
//!   (facility 10, MSGID `IHE+RFC-3881`, as IHE ITI-20 asks) and its RFC 5425 framing.
//! * [`SyslogForwarder`]: sends every record, in `seq` order, to an audit repository over one
//!   TLS connection, resuming after a persisted cursor.
//!
//! Both formats are written from one description of the record, so they agree. Every export
//! carries the record's `seq`, chain `hash` and `prev_hash` (a participant object of role
//! 13 "Security Resource", ID type RFC-3881 9 "Report Number", with
//! `ParticipantObjectDetail`/`entity.detail` entries `radris-audit-hash`,
//! `radris-audit-prev-hash`, `radris-audit-action`, `radris-audit-resource`,
//! `radris-audit-detail`), so an exported event can be matched with, and checked against, the
//! tamper-evident log ([`audit::verify`](crate::audit::verify)). The tenant is the
//! `AuditEnterpriseSiteID` (FHIR `source.site`).
//!
//! # Mapping of RADRIS actions to PS3.15 events
//!
//! The HTTP middleware writes `http <METHOD> <route>`; DIMSE, sign-in and CLI code write dotted
//! names. The first matching row wins.
//!
//! | action | EventID (DCM) | EventActionCode | EventTypeCode (DCM) |
//! |---|---|---|---|
//! | `http *` denied for actor `unknown` (no or bad credentials) | 110114 User Authentication | E | – |
//! | `http GET /dicom-web/…/studies`, `…/series`, `…/instances` (QIDO-RS) | 110112 Query | E | – |
//! | `http GET /dicom-web/…` other (WADO-RS, metadata, frames, rendered), `http GET /wado` | 110104 DICOM Instances Transferred | R | – |
//! | `http POST /dicom-web/studies[/{study}]` (STOW-RS) | 110104 DICOM Instances Transferred | C | – |
//! | `http GET /api/v1/audit` | 110101 Audit Log Used | R | – |
//! | `http POST /api/v1/auth/login`, `…/logout` | 110114 User Authentication | E | 110122 Login, 110123 Logout |
//! | `http * /api/v1/auth/…` other (second factor) | 110113 Security Alert | U | 110137 User Security Attributes Changed |
//! | `http * /api/v1/admin/tokens…` | 110113 Security Alert | by method | 110137 User Security Attributes Changed |
//! | `http * /api/v1/admin/…` other | 110113 Security Alert | by method | 110129 Security Configuration |
//! | `http DELETE /api/v1/studies/{uid}` | 110105 DICOM Study Deleted | D | – |
//! | `http DELETE` other (series, instances) | 110103 DICOM Instances Accessed | D | – |
//! | `http GET /api/v1/studies…`, `/series…`, `/patients…` | 110112 Query | E | – |
//! | `http *` other | 110100 Application Activity | by method | – |
//! | `dicomweb.qido.*`, `dimse.c-find` | 110112 Query | E | – |
//! | `dicomweb.wado.*`, `dimse.c-move`, `dimse.c-get` | 110104 DICOM Instances Transferred | R | – |
//! | `dicomweb.stow*`, `dimse.c-store` | 110104 DICOM Instances Transferred | C | – |
//! | `auth.logout*` / `auth.login*` (incl. `auth.login.failed`) | 110114 User Authentication | E | 110123 Logout / 110122 Login |
//! | `auth.*` other (e.g. `auth.token.denied`) | 110114 User Authentication | E | – |
//! | `admin.delete*` | 110105 DICOM Study Deleted | D | – |
//! | `admin.*` other (`admin.keys.rotate`, …) | 110113 Security Alert | E | 110129 Security Configuration |
//! | `audit.*` | 110101 Audit Log Used | R | – |
//! | `dimse.associate` refused / accepted | 110113 Security Alert / 110100 Application Activity | E | 110126 Node Authentication / – |
//! | `rest.*delete*` / `rest.*` other | 110103 DICOM Instances Accessed / 110112 Query | D / E | – |
//! | anything else | 110100 Application Activity | E | – |
//!
//! "by method": GET/HEAD R, POST C, PUT/PATCH U, DELETE D, otherwise E.
//!
//! **Outcome** (EventOutcomeIndicator, FHIR `outcome`): `success` 0, `failure` 4 (minor
//! failure), `denied` 8 (serious failure: the action was refused and terminated); any other
//! stored value 4. 12 (major failure) is not produced: no RADRIS action disables a resource.
//! The record's detail becomes EventOutcomeDescription (FHIR `outcomeDesc`) for failures.
//!
//! **Participants.** The actor is the requesting ActiveParticipant (`UserIsRequestor="true"`,
//! `AlternativeUserID="AETITLES=<AE>"` for `ae:` actors, `UserName` for `user:` actors); its
//! network address comes from the record's source (type 2 IP address, or 1 machine name).
//! The archive (`source_id`) is the second participant. In transfers both carry roles:
//! 110153 Source / 110152 Destination (PS3.15 A.5.3.2).
//!
//! **Objects.** A study UID in the resource (`study <uid>`, `…/studies/<uid>…`) becomes a
//! Study Instance UID object (type 2, role 3, DCM 110180); `patient <id>` a patient (type 1,
//! role 1, RFC-3881 2); queries get a query object (role 24, RFC-3881 10 "Search Criteria",
//! the record's detail as ParticipantObjectQuery, base64); other paths a URI object
//! (RFC-3881 12). The DIMSE records do not carry the SOP Class UID, so the query object is
//! named by the resource text, not by the SOP Class as PS3.15 A.5.3.12 would have it.
//!
//! # Example
//!
//! ```
//! use radris_auth::audit::StoredRecord;
//! use radris_auth::export::{SyslogOrigin, octet_counted, syslog_message, to_fhir_audit_event};
//!
//! let row = StoredRecord {
//!     seq: 7,
//!     at: 1_700_000_000_000,
//!     tenant: "alpha".into(),
//!     actor: "ae:MODALITY".into(),
//!     action: "dimse.c-store".into(),
//!     outcome: "success".into(),
//!     resource: "study 1.2.840.99".into(),
//!     detail: "instances=3".into(),
//!     source: "10.0.0.5:4100".into(),
//!     prev_hash: "00".repeat(32),
//!     hash: "ab".repeat(32),
//! };
//! let origin = SyslogOrigin::new("pacs.example", "radris", "RADRIS@pacs.example");
//! let message = syslog_message(&row, &origin);
//! assert!(message.starts_with("<85>1 2023-11-14T22:13:20.000Z pacs.example radris - IHE+RFC-3881 - \u{feff}<?xml"));
//! let frame = octet_counted(&message);
//! assert!(frame.starts_with(format!("{} <85>1", message.len()).as_bytes()));
//! let fhir = to_fhir_audit_event(&row, "RADRIS@pacs.example");
//! assert_eq!(fhir["type"]["code"], "110104");
//! ```

mod dicom;
mod event;
mod fhir;
mod forward;
mod syslog;

pub use dicom::to_dicom_audit_message;
pub use fhir::{BundleType, to_fhir_audit_event, to_fhir_bundle};
pub use forward::{
    ClientIdentity, Cursor, SyslogConfig, SyslogForwarder, records_after, tls_client_config,
};
pub use syslog::{SyslogOrigin, octet_counted, syslog_message};

use std::path::PathBuf;

/// Why an export or a forward failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("reading {what} from {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in the CA bundle {path}")]
    NoCertificate { path: PathBuf },
    #[error("TLS configuration ({what}): {source}")]
    TlsConfig {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("{name:?} is not a valid TLS server name")]
    ServerName { name: String },
    #[error("connecting to the audit repository {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake was refused: an untrusted or mismatched certificate, a protocol
    /// mismatch, or a client certificate the repository did not accept.
    #[error("TLS handshake with the audit repository {addr} failed: {source}")]
    Tls {
        addr: String,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS handshake with the audit repository {addr} failed: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {seconds} s {what} the audit repository {addr}")]
    Timeout {
        addr: String,
        what: &'static str,
        seconds: u64,
    },
    #[error("sending audit records {first}..={last} to {addr}: {source}")]
    Send {
        addr: String,
        first: i64,
        last: i64,
        #[source]
        source: std::io::Error,
    },
    #[error("audit export cursor {path}: {source}")]
    Cursor {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit export cursor {path} does not hold a sequence number ({content:?}); fix or remove it"
    )]
    CursorCorrupt { path: PathBuf, content: String },
    #[error("database error while {what}: {source}")]
    Database {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

impl ExportError {
    /// Whether the repository's certificate (or ours) was refused during the handshake.
    pub fn is_tls(&self) -> bool {
        matches!(
            self,
            ExportError::Tls { .. } | ExportError::Handshake { .. }
        )
    }

    /// Whether retrying later may succeed (network and repository trouble), as opposed to
    /// a configuration or cursor problem that needs an operator.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ExportError::Connect { .. }
                | ExportError::Timeout { .. }
                | ExportError::Send { .. }
                | ExportError::Handshake { .. }
                | ExportError::Database { .. }
        )
    }

    pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> ExportError {
        move |source| ExportError::Database { what, source }
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC timestamp with milliseconds
/// (`2023-11-14T22:13:20.000Z`): valid as xs:dateTime, FHIR `instant` and RFC 5424
/// TIMESTAMP.
pub(crate) fn rfc3339_millis(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, computed over 400-year
/// eras (146 097 days each), with years starting in March so the leap day comes last.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Standard base64 with padding (RFC 4648 §4), for ParticipantObjectQuery/Detail and FHIR
/// `base64Binary`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::StoredRecord;

    pub(crate) fn row(action: &str, outcome: &str, resource: &str, detail: &str) -> StoredRecord {
        StoredRecord {
            seq: 42,
            at: 1_700_000_000_123,
            tenant: "alpha".into(),
            actor: "token:abc".into(),
            action: action.into(),
            outcome: outcome.into(),
            resource: resource.into(),
            detail: detail.into(),
            source: "10.1.2.3:50000".into(),
            prev_hash: "0".repeat(64),
            hash: "f".repeat(64),
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(4_107_542_399_999),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn base64_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
