//! The DICOM PS3.15 A.5.1 audit message (the schema derived from RFC 3881).

use std::fmt::Write as _;

use super::event::{Coded, Described, describe};
use super::{base64, rfc3339_millis};
use crate::audit::StoredRecord;

/// A stored record as a DICOM audit message (`<AuditMessage>`, PS3.15 A.5.1), with an XML
/// declaration and no insignificant whitespace. `source_id` is the AuditSourceID: the name
/// the repository knows this server by (e.g. `RADRIS@pacs.example`).
///
/// Every text comes from the record and is escaped; characters XML 1.0 cannot carry at all
/// (control characters other than tab, line feed and carriage return) become U+FFFD.
pub fn to_dicom_audit_message(row: &StoredRecord, source_id: &str) -> String {
    let d = describe(row);
    let mut x = Xml::default();
    x.raw(r#"<?xml version="1.0" encoding="UTF-8"?><AuditMessage>"#);
    write_event(&mut x, row, &d);
    write_participants(&mut x, &d, source_id);
    x.open("AuditSourceIdentification");
    if let Some(site) = &d.site {
        x.attr("AuditEnterpriseSiteID", site);
    }
    x.attr("AuditSourceID", source_id);
    x.end_open();
    // CID 20 / RFC 3881 audit source type 4: application server process tier
    x.open("AuditSourceTypeCode");
    x.attr("csd-code", "4");
    x.attr("codeSystemName", "DCM");
    x.attr("originalText", "Application Server Process Tier");
    x.end_empty();
    x.raw("</AuditSourceIdentification>");
    for o in &d.objects {
        x.open("ParticipantObjectIdentification");
        x.attr("ParticipantObjectID", &o.id);
        x.attr("ParticipantObjectTypeCode", o.type_code);
        x.attr("ParticipantObjectTypeCodeRole", o.role);
        x.end_open();
        x.coded("ParticipantObjectIDTypeCode", o.id_type);
        if let Some(q) = &o.query {
            x.raw("<ParticipantObjectQuery>");
            x.raw(&base64(q.as_bytes()));
            x.raw("</ParticipantObjectQuery>");
        }
        for (kind, value) in &o.details {
            x.open("ParticipantObjectDetail");
            x.attr("type", kind);
            x.attr("value", &base64(value.as_bytes()));
            x.end_empty();
        }
        x.raw("</ParticipantObjectIdentification>");
    }
    x.raw("</AuditMessage>");
    x.0
}

fn write_event(x: &mut Xml, row: &StoredRecord, d: &Described) {
    x.open("EventIdentification");
    x.attr("EventActionCode", d.action.as_str());
    x.attr("EventDateTime", &rfc3339_millis(row.at));
    x.attr("EventOutcomeIndicator", d.outcome);
    x.end_open();
    x.coded("EventID", d.event);
    if let Some(t) = d.event_type {
        x.coded("EventTypeCode", t);
    }
    if let Some(why) = &d.outcome_description {
        x.raw("<EventOutcomeDescription>");
        x.text(why);
        x.raw("</EventOutcomeDescription>");
    }
    x.raw("</EventIdentification>");
}

fn write_participants(x: &mut Xml, d: &Described, source_id: &str) {
    let r = &d.requestor;
    x.open("ActiveParticipant");
    x.attr("UserID", &r.user_id);
    if let Some(alt) = &r.alternative_user_id {
        x.attr("AlternativeUserID", alt);
    }
    if let Some(name) = &r.user_name {
        x.attr("UserName", name);
    }
    x.attr("UserIsRequestor", "true");
    if let Some(nap) = &r.network {
        x.attr("NetworkAccessPointID", &nap.id);
        x.attr("NetworkAccessPointTypeCode", nap.type_code);
    }
    match r.role {
        Some(role) => {
            x.end_open();
            x.coded("RoleIDCode", role);
            x.raw("</ActiveParticipant>");
        }
        None => x.end_empty(),
    }
    x.open("ActiveParticipant");
    x.attr("UserID", source_id);
    x.attr("UserIsRequestor", "false");
    match d.archive_role {
        Some(role) => {
            x.end_open();
            x.coded("RoleIDCode", role);
            x.raw("</ActiveParticipant>");
        }
        None => x.end_empty(),
    }
}

/// A minimal XML writer: elements are opened and closed by the caller in schema order.
#[derive(Default)]
struct Xml(String);

impl Xml {
    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    fn open(&mut self, name: &str) {
        self.0.push('<');
        self.0.push_str(name);
    }

    fn attr(&mut self, name: &str, value: &str) {
        let _ = write!(self.0, " {name}=\"");
        escape_into(&mut self.0, value, true);
        self.0.push('"');
    }

    fn end_open(&mut self) {
        self.0.push('>');
    }

    fn end_empty(&mut self) {
        self.0.push_str("/>");
    }

    fn text(&mut self, s: &str) {
        escape_into(&mut self.0, s, false);
    }

    /// A CodedValueType element (PS3.15 A.5.1): `csd-code`, `codeSystemName`,
    /// `originalText`.
    fn coded(&mut self, name: &str, c: Coded) {
        self.open(name);
        self.attr("csd-code", c.code);
        self.attr("codeSystemName", c.system.name());
        self.attr("originalText", c.display);
        self.end_empty();
    }
}

/// Escape text for XML 1.0. In attribute values tab, line feed and carriage return are
/// written as character references so attribute-value normalisation keeps them.
pub(crate) fn escape_into(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            // not allowed in XML 1.0, not even as a character reference
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::row;

    /// The message, checked for balance and against the expected fragments.
    fn check(r: &StoredRecord, expected: &[&str]) -> String {
        let xml = to_dicom_audit_message(r, "RADRIS@test");
        assert_well_formed(&xml);
        for e in expected {
            assert!(xml.contains(e), "missing {e}\nin {xml}");
        }
        xml
    }

    /// Tags balance, attributes are quoted, and no raw `<`, `>`, `&` or `'` appears outside
    /// markup or entity references. Enough to catch an escaping or nesting mistake.
    fn assert_well_formed(xml: &str) {
        let body = xml
            .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
            .expect("declaration");
        let mut stack: Vec<String> = Vec::new();
        let mut rest = body;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            check_text(text);
            let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
            let tag = &rest[lt + 1..gt];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "in {xml}");
            } else {
                let empty = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
                let mut attrs = attrs.trim();
                while !attrs.is_empty() {
                    let (_, v) = attrs.split_once("=\"").expect("attribute");
                    let end = v.find('"').expect("closing quote");
                    check_text(&v[..end]);
                    attrs = v[end + 1..].trim_start();
                }
                if !empty {
                    stack.push(name.to_owned());
                }
            }
            rest = &rest[gt + 1..];
        }
        assert!(stack.is_empty() && rest.is_empty(), "unbalanced: {stack:?}");
    }

    fn check_text(t: &str) {
        assert!(!t.contains(['<', '>', '"', '\'']), "unescaped in {t:?}");
        for (i, _) in t.match_indices('&') {
            let entity = &t[i..t[i..].find(';').expect("entity end") + i + 1];
            assert!(
                [
                    "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#9;", "&#10;", "&#13;"
                ]
                .contains(&entity),
                "bad entity {entity}"
            );
        }
    }

    #[test]
    fn a_store_message_in_full() {
        let mut r = row(
            "dimse.c-store",
            "success",
            "study 1.2.840.10008.1",
            "instances=3",
        );
        r.actor = "ae:CT1".into();
        let xml = check(&r, &[]);
        let expected = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><AuditMessage>"#,
            r#"<EventIdentification EventActionCode="C" EventDateTime="2023-11-14T22:13:20.123Z" EventOutcomeIndicator="0">"#,
            r#"<EventID csd-code="110104" codeSystemName="DCM" originalText="DICOM Instances Transferred"/>"#,
            r#"</EventIdentification>"#,
            r#"<ActiveParticipant UserID="ae:CT1" AlternativeUserID="AETITLES=CT1" UserIsRequestor="true" NetworkAccessPointID="10.1.2.3" NetworkAccessPointTypeCode="2">"#,
            r#"<RoleIDCode csd-code="110153" codeSystemName="DCM" originalText="Source Role ID"/></ActiveParticipant>"#,
            r#"<ActiveParticipant UserID="RADRIS@test" UserIsRequestor="false">"#,
            r#"<RoleIDCode csd-code="110152" codeSystemName="DCM" originalText="Destination Role ID"/></ActiveParticipant>"#,
            r#"<AuditSourceIdentification AuditEnterpriseSiteID="alpha" AuditSourceID="RADRIS@test">"#,
            r#"<AuditSourceTypeCode csd-code="4" codeSystemName="DCM" originalText="Application Server Process Tier"/>"#,
            r#"</AuditSourceIdentification>"#,
            r#"<ParticipantObjectIdentification ParticipantObjectID="1.2.840.10008.1" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">"#,
            r#"<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" originalText="Study Instance UID"/>"#,
            r#"</ParticipantObjectIdentification>"#,
            r#"<ParticipantObjectIdentification ParticipantObjectID="42" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="13">"#,
            r#"<ParticipantObjectIDTypeCode csd-code="9" codeSystemName="RFC-3881" originalText="Report Number"/>"#,
            // base64 of "dimse.c-store", 64 × "f", 64 × "0", the resource and the detail
            r#"<ParticipantObjectDetail type="radris-audit-action" value="ZGltc2UuYy1zdG9yZQ=="/>"#,
        );
        assert!(xml.starts_with(expected), "{xml}");
        assert!(xml.ends_with(
            r#"<ParticipantObjectDetail type="radris-audit-detail" value="aW5zdGFuY2VzPTM="/></ParticipantObjectIdentification></AuditMessage>"#
        ));
        let hash_b64 = base64("f".repeat(64).as_bytes());
        assert!(xml.contains(&format!(
            r#"<ParticipantObjectDetail type="radris-audit-hash" value="{hash_b64}"/>"#
        )));
    }

    #[test]
    fn event_ids_for_typical_records() {
        check(
            &row(
                "dicomweb.qido.studies",
                "success",
                "/dicom-web/studies",
                "PatientID=7",
            ),
            &[
                r#"EventActionCode="E""#,
                r#"<EventID csd-code="110112" codeSystemName="DCM" originalText="Query"/>"#,
                r#"ParticipantObjectTypeCodeRole="24""#,
                r#"<ParticipantObjectIDTypeCode csd-code="10" codeSystemName="RFC-3881" originalText="Search Criteria"/>"#,
                // base64 of "PatientID=7"
                "<ParticipantObjectQuery>UGF0aWVudElEPTc=</ParticipantObjectQuery>",
            ],
        );
        check(
            &row(
                "http GET /dicom-web/studies/{study}",
                "success",
                "/dicom-web/studies/1.2.3",
                "status=200",
            ),
            &[
                r#"EventActionCode="R""#,
                r#"csd-code="110104""#,
                r#"ParticipantObjectID="1.2.3""#,
                r#"csd-code="110180""#,
            ],
        );
        let mut login = row(
            "auth.login",
            "denied",
            "/api/v1/auth",
            "wrong user name or password",
        );
        login.actor = "user:mallory".into();
        login.tenant = "-".into();
        let xml = check(
            &login,
            &[
                r#"EventOutcomeIndicator="8""#,
                r#"<EventID csd-code="110114" codeSystemName="DCM" originalText="User Authentication"/>"#,
                r#"<EventTypeCode csd-code="110122" codeSystemName="DCM" originalText="Login"/>"#,
                "<EventOutcomeDescription>wrong user name or password</EventOutcomeDescription>",
                r#"UserID="user:mallory" UserName="mallory""#,
            ],
        );
        assert!(!xml.contains("AuditEnterpriseSiteID"), "no tenant: {xml}");
        check(
            &row(
                "http DELETE /api/v1/studies/{study_uid}",
                "success",
                "/api/v1/studies/1.2.3",
                "status=204",
            ),
            &[
                r#"EventActionCode="D""#,
                r#"<EventID csd-code="110105" codeSystemName="DCM" originalText="DICOM Study Deleted"/>"#,
                r#"ParticipantObjectID="1.2.3""#,
            ],
        );
        check(
            &row(
                "dimse.c-store",
                "failure",
                "refused instances",
                "instances=2",
            ),
            &[
                r#"EventOutcomeIndicator="4""#,
                "<EventOutcomeDescription>instances=2</EventOutcomeDescription>",
            ],
        );
    }

    #[test]
    fn special_characters_are_escaped() {
        let mut r = row(
            "auth.login",
            "denied",
            "/api/v1/auth",
            "bad <&\"'> \u{1} line\nbreak",
        );
        r.actor = "user:<&\"'>".into();
        r.source = "host\"name".into();
        let xml = check(
            &r,
            &[
                r#"UserID="user:&lt;&amp;&quot;&apos;&gt;""#,
                r#"NetworkAccessPointID="host&quot;name" NetworkAccessPointTypeCode="1""#,
                "<EventOutcomeDescription>bad &lt;&amp;&quot;&apos;&gt; \u{fffd} line\nbreak</EventOutcomeDescription>",
            ],
        );
        assert!(!xml.contains('\u{1}'));
        let mut s = String::new();
        escape_into(&mut s, "a\tb\nc\rd", true);
        assert_eq!(s, "a&#9;b&#10;c&#13;d");
    }
}
