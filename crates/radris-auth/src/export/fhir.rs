//! The FHIR R4 `AuditEvent` view of a stored record.

use serde_json::{Map, Value, json};

use super::event::{Coded, describe};
use super::{base64, rfc3339_millis};
use crate::audit::StoredRecord;

const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";

/// The `Bundle.type` of [`to_fhir_bundle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleType {
    /// The answer to an auditor's search: `total` and `search.mode = match` are set.
    Searchset,
    /// A plain export of records.
    Collection,
}

/// A stored record as a FHIR R4 `AuditEvent`. `source_id` names this server
/// (`source.observer`); the resource `id` is `radris-audit-<seq>`, stable across exports.
/// The event coding is the same as in [`to_dicom_audit_message`](super::to_dicom_audit_message).
pub fn to_fhir_audit_event(row: &StoredRecord, source_id: &str) -> Value {
    let d = describe(row);
    let mut event = Map::new();
    event.insert("resourceType".into(), json!("AuditEvent"));
    event.insert("id".into(), json!(format!("radris-audit-{}", row.seq)));
    event.insert("type".into(), coding(d.event));
    if let Some(t) = d.event_type {
        event.insert("subtype".into(), json!([coding(t)]));
    }
    event.insert("action".into(), json!(d.action.as_str()));
    event.insert("recorded".into(), json!(rfc3339_millis(row.at)));
    event.insert("outcome".into(), json!(d.outcome));
    if let Some(why) = &d.outcome_description {
        event.insert("outcomeDesc".into(), json!(why));
    }

    let r = &d.requestor;
    let mut requestor = Map::new();
    if let Some(role) = r.role {
        requestor.insert("type".into(), json!({ "coding": [coding(role)] }));
    }
    requestor.insert(
        "who".into(),
        json!({ "identifier": { "value": r.user_id }, "display": r.user_id }),
    );
    if let Some(alt) = &r.alternative_user_id {
        requestor.insert("altId".into(), json!(alt));
    }
    if let Some(name) = &r.user_name {
        requestor.insert("name".into(), json!(name));
    }
    requestor.insert("requestor".into(), json!(true));
    if let Some(nap) = &r.network {
        requestor.insert(
            "network".into(),
            json!({ "address": nap.id, "type": nap.type_code }),
        );
    }
    let mut archive = Map::new();
    if let Some(role) = d.archive_role {
        archive.insert("type".into(), json!({ "coding": [coding(role)] }));
    }
    archive.insert(
        "who".into(),
        json!({ "identifier": { "value": source_id }, "display": source_id }),
    );
    archive.insert("requestor".into(), json!(false));
    event.insert(
        "agent".into(),
        Value::Array(vec![Value::Object(requestor), Value::Object(archive)]),
    );

    let mut source = Map::new();
    if let Some(site) = &d.site {
        source.insert("site".into(), json!(site));
    }
    source.insert(
        "observer".into(),
        json!({ "identifier": { "value": source_id }, "display": source_id }),
    );
    source.insert(
        "type".into(),
        json!([{ "system": SOURCE_TYPE, "code": "4", "display": "Application Server" }]),
    );
    event.insert("source".into(), Value::Object(source));

    let entities = d
        .objects
        .iter()
        .map(|o| {
            let mut e = Map::new();
            e.insert(
                "what".into(),
                json!({ "identifier": { "type": { "coding": [coding(o.id_type)] }, "value": o.id } }),
            );
            let type_display = if o.type_code == "1" {
                "Person"
            } else {
                "System Object"
            };
            e.insert(
                "type".into(),
                json!({ "system": ENTITY_TYPE, "code": o.type_code, "display": type_display }),
            );
            e.insert(
                "role".into(),
                json!({ "system": OBJECT_ROLE, "code": o.role, "display": role_display(o.role) }),
            );
            if let Some(q) = &o.query {
                e.insert("query".into(), json!(base64(q.as_bytes())));
            }
            if !o.details.is_empty() {
                e.insert(
                    "detail".into(),
                    Value::Array(
                        o.details
                            .iter()
                            .map(|(kind, value)| json!({ "type": kind, "valueString": value }))
                            .collect(),
                    ),
                );
            }
            Value::Object(e)
        })
        .collect();
    event.insert("entity".into(), Value::Array(entities));
    Value::Object(event)
}

/// Records as a FHIR `Bundle` of `AuditEvent`s, in the order given.
pub fn to_fhir_bundle(rows: &[StoredRecord], source_id: &str, kind: BundleType) -> Value {
    let entries: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut entry = json!({ "resource": to_fhir_audit_event(r, source_id) });
            if kind == BundleType::Searchset {
                entry["search"] = json!({ "mode": "match" });
            }
            entry
        })
        .collect();
    let mut bundle = json!({ "resourceType": "Bundle" });
    match kind {
        BundleType::Searchset => {
            bundle["type"] = json!("searchset");
            bundle["total"] = json!(entries.len());
        }
        BundleType::Collection => bundle["type"] = json!("collection"),
    }
    bundle["entry"] = Value::Array(entries);
    bundle
}

fn coding(c: Coded) -> Value {
    json!({ "system": c.system.uri(), "code": c.code, "display": c.display })
}

fn role_display(role: &str) -> &'static str {
    match role {
        "1" => "Patient",
        "3" => "Report",
        "13" => "Security Resource",
        "24" => "Query",
        _ => "Resource",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::row;

    #[test]
    fn query_event_in_full() {
        let r = row("dimse.c-find", "success", "level STUDY", "PatientID=7");
        let got = to_fhir_audit_event(&r, "RADRIS@test");
        let dcm = "http://dicom.nema.org/resources/ontology/DCM";
        let expected = json!({
            "resourceType": "AuditEvent",
            "id": "radris-audit-42",
            "type": { "system": dcm, "code": "110112", "display": "Query" },
            "action": "E",
            "recorded": "2023-11-14T22:13:20.123Z",
            "outcome": "0",
            "agent": [
                {
                    "who": { "identifier": { "value": "token:abc" }, "display": "token:abc" },
                    "requestor": true,
                    "network": { "address": "10.1.2.3", "type": "2" }
                },
                {
                    "who": { "identifier": { "value": "RADRIS@test" }, "display": "RADRIS@test" },
                    "requestor": false
                }
            ],
            "source": {
                "site": "alpha",
                "observer": { "identifier": { "value": "RADRIS@test" }, "display": "RADRIS@test" },
                "type": [{ "system": SOURCE_TYPE, "code": "4", "display": "Application Server" }]
            },
            "entity": [
                {
                    "what": { "identifier": {
                        "type": { "coding": [{ "system": "urn:ietf:rfc:3881", "code": "10", "display": "Search Criteria" }] },
                        "value": "level STUDY"
                    } },
                    "type": { "system": ENTITY_TYPE, "code": "2", "display": "System Object" },
                    "role": { "system": OBJECT_ROLE, "code": "24", "display": "Query" },
                    "query": "UGF0aWVudElEPTc="
                },
                {
                    "what": { "identifier": {
                        "type": { "coding": [{ "system": "urn:ietf:rfc:3881", "code": "9", "display": "Report Number" }] },
                        "value": "42"
                    } },
                    "type": { "system": ENTITY_TYPE, "code": "2", "display": "System Object" },
                    "role": { "system": OBJECT_ROLE, "code": "13", "display": "Security Resource" },
                    "detail": [
                        { "type": "radris-audit-action", "valueString": "dimse.c-find" },
                        { "type": "radris-audit-hash", "valueString": "f".repeat(64) },
                        { "type": "radris-audit-prev-hash", "valueString": "0".repeat(64) },
                        { "type": "radris-audit-resource", "valueString": "level STUDY" },
                        { "type": "radris-audit-detail", "valueString": "PatientID=7" }
                    ]
                }
            ]
        });
        assert_eq!(
            got,
            expected,
            "{}",
            serde_json::to_string_pretty(&got).unwrap_or_default()
        );
    }

    #[test]
    fn codes_for_store_login_and_delete() {
        let mut store = row("dimse.c-store", "success", "study 1.2.3", "instances=1");
        store.actor = "ae:CT1".into();
        let e = to_fhir_audit_event(&store, "S");
        assert_eq!(e["type"]["code"], "110104");
        assert_eq!(e["action"], "C");
        assert_eq!(e["agent"][0]["altId"], "AETITLES=CT1");
        assert_eq!(e["agent"][0]["type"]["coding"][0]["code"], "110153");
        assert_eq!(e["agent"][1]["type"]["coding"][0]["code"], "110152");
        assert_eq!(e["entity"][0]["what"]["identifier"]["value"], "1.2.3");
        assert_eq!(
            e["entity"][0]["what"]["identifier"]["type"]["coding"][0]["code"],
            "110180"
        );
        assert_eq!(e["entity"][0]["role"]["code"], "3");

        let mut login = row("auth.login", "denied", "/api/v1/auth", "account locked");
        login.tenant = "-".into();
        let e = to_fhir_audit_event(&login, "S");
        assert_eq!(e["type"]["code"], "110114");
        assert_eq!(e["subtype"][0]["code"], "110122");
        assert_eq!(e["outcome"], "8");
        assert_eq!(e["outcomeDesc"], "account locked");
        assert!(e["source"].get("site").is_none());

        let del = row(
            "http DELETE /api/v1/studies/{study_uid}",
            "failure",
            "/api/v1/studies/1.2.3",
            "status=500",
        );
        let e = to_fhir_audit_event(&del, "S");
        assert_eq!(e["type"]["code"], "110105");
        assert_eq!(e["action"], "D");
        assert_eq!(e["outcome"], "4");

        let mut patient = row("rest.patient", "success", "patient P-1", "");
        patient.seq = 9;
        let e = to_fhir_audit_event(&patient, "S");
        assert_eq!(e["entity"][0]["type"]["code"], "1");
        assert_eq!(e["entity"][0]["role"]["code"], "1");
        assert_eq!(e["entity"][0]["what"]["identifier"]["value"], "P-1");
    }

    #[test]
    fn bundles() {
        let rows = [
            row("auth.login", "success", "/api/v1/auth", "session opened"),
            row("auth.logout", "success", "/api/v1/auth", "session closed"),
        ];
        let b = to_fhir_bundle(&rows, "S", BundleType::Searchset);
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 2);
        assert_eq!(b["entry"][1]["resource"]["subtype"][0]["code"], "110123");
        assert_eq!(b["entry"][0]["search"]["mode"], "match");
        let b = to_fhir_bundle(&rows, "S", BundleType::Collection);
        assert_eq!(b["type"], "collection");
        assert!(b.get("total").is_none());
        assert!(b["entry"][0].get("search").is_none());
        assert_eq!(
            to_fhir_bundle(&[], "S", BundleType::Collection)["entry"],
            json!([])
        );
    }
}
