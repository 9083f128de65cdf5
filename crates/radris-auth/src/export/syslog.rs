//! RFC 5424 syslog messages carrying the DICOM audit message (IHE ITI-20 "Record Audit
//! Event"), and the RFC 5425 octet-counting frame they travel in over TLS.

use super::event::is_success;
use super::{rfc3339_millis, to_dicom_audit_message};
use crate::audit::StoredRecord;

/// Facility 10, "security/authorization messages", as IHE ATNA asks.
const FACILITY: u8 = 10;
/// Notice, for successful actions.
const NOTICE: u8 = 5;
/// Warning, for refused and failed ones.
const WARNING: u8 = 4;
/// The MSGID IHE ITI-20 prescribes for DICOM/RFC 3881 audit messages.
pub const MSGID: &str = "IHE+RFC-3881";

/// Who sends: the RFC 5424 HOSTNAME and APP-NAME, and the DICOM AuditSourceID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogOrigin {
    /// HOSTNAME: this machine's FQDN (or IP address). Up to 255 printable ASCII characters;
    /// others are replaced by `_`.
    pub hostname: String,
    /// APP-NAME, e.g. `radris`. Up to 48 printable ASCII characters.
    pub app_name: String,
    /// AuditSourceID of the XML, e.g. `RADRIS@pacs.example`.
    pub source_id: String,
}

impl SyslogOrigin {
    pub fn new(
        hostname: impl Into<String>,
        app_name: impl Into<String>,
        source_id: impl Into<String>,
    ) -> Self {
        SyslogOrigin {
            hostname: hostname.into(),
            app_name: app_name.into(),
            source_id: source_id.into(),
        }
    }
}

/// The RFC 5424 message for one record:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - IHE+RFC-3881 - BOM<?xml …><AuditMessage>…`.
///
/// PRI is facility 10 with severity 5 (notice) for successes and 4 (warning) for refused
/// or failed actions, i.e. `<85>` or `<84>`. TIMESTAMP is the record's time in UTC with
/// milliseconds; PROCID and STRUCTURED-DATA are the NILVALUE `-`; MSG is the UTF-8 BOM
/// followed by [`to_dicom_audit_message`]. The message has no trailing newline (RFC 5425
/// frames it by length).
pub fn syslog_message(row: &StoredRecord, origin: &SyslogOrigin) -> String {
    let severity = if is_success(&row.outcome) {
        NOTICE
    } else {
        WARNING
    };
    format!(
        "<{}>1 {} {} {} - {MSGID} - \u{feff}{}",
        u16::from(FACILITY) * 8 + u16::from(severity),
        rfc3339_millis(row.at),
        header_field(&origin.hostname, 255),
        header_field(&origin.app_name, 48),
        to_dicom_audit_message(row, &origin.source_id)
    )
}

/// RFC 5425 §4.3 octet-counting framing: `MSG-LEN SP SYSLOG-MSG`, where MSG-LEN is the
/// message's length in bytes (not characters).
pub fn octet_counted(message: &str) -> Vec<u8> {
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(message.as_bytes());
    frame
}

/// A header field: printable US-ASCII (33..=126) only, at most `max` characters, `-` when
/// empty (RFC 5424 §6.2).
fn header_field(value: &str, max: usize) -> String {
    let cleaned: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "-".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::row;

    fn check(outcome: &str, origin: &SyslogOrigin, expected_header: &str) {
        let r = row("auth.login", outcome, "/api/v1/auth", "x");
        let message = syslog_message(&r, origin);
        let xml = to_dicom_audit_message(&r, &origin.source_id);
        assert_eq!(message, format!("{expected_header}\u{feff}{xml}"));
        let frame = octet_counted(&message);
        let (len, rest) = std::str::from_utf8(&frame)
            .unwrap_or_default()
            .split_once(' ')
            .unwrap_or_default();
        assert_eq!(len.parse::<usize>().ok(), Some(rest.len()));
        assert_eq!(rest, message);
        // the BOM is three bytes: the count is in bytes
        assert_eq!(rest.len(), message.chars().count() + 2);
    }

    #[test]
    fn header_and_framing() {
        let origin = SyslogOrigin::new("pacs.example", "radris", "RADRIS@pacs");
        check(
            "success",
            &origin,
            "<85>1 2023-11-14T22:13:20.123Z pacs.example radris - IHE+RFC-3881 - ",
        );
        check(
            "denied",
            &origin,
            "<84>1 2023-11-14T22:13:20.123Z pacs.example radris - IHE+RFC-3881 - ",
        );
        check(
            "failure",
            &SyslogOrigin::new("", "my app é", "S"),
            "<84>1 2023-11-14T22:13:20.123Z - my_app__ - IHE+RFC-3881 - ",
        );
        assert_eq!(header_field(&"a".repeat(60), 48).len(), 48);
    }

    #[test]
    fn exact_frame_for_a_short_message() {
        assert_eq!(octet_counted("<85>1 x"), b"7 <85>1 x".to_vec());
        assert_eq!(octet_counted("é"), "2 é".as_bytes().to_vec());
    }
}
