//! Storage Commitment Push Model, SCP side (PS3.4 J.3): N-ACTION-RQ names instances, we
//! answer N-ACTION-RSP at once, check each instance in the archive (indexed for this tenant
//! with the same SOP class, its blob on disk) and send the result as N-EVENT-REPORT-RQ
//! (Event Type 1: all committed; 2: some failed).
//!
//! Where the report goes (PS3.4 J.3.3): on the requesting association, right after the
//! N-ACTION-RSP, unless the calling AE is configured with
//! `storage_commitment_new_association`. A report owed on a new association, or one sent on
//! the requesting association that was never confirmed (the requestor released first, the
//! send failed), goes out after that association ends, from a background thread, to the AE's
//! configured host and port: we propose the Storage Commitment Push Model with an SCP/SCU
//! Role Selection item asking for the SCP role, retry with backoff, and audit the outcome.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, Length, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::association::ServerAssociation;
use radris_core::Uid;
use radris_core::audit::{Audit, AuditRecord, Outcome};
use radris_dicom::query::{FindQuery, Matcher, QueryKey, QueryLevel};
use radris_store::StoredInstance;

use super::workflow::NRequest;
use super::{DimseStream, Session, transfer_syntax_of};
use crate::DimseError;
use crate::message::{command, el_u16, encode_dataset, get_u16, send_message, status};
use crate::scu::{self, ScuOptions};

/// Storage Commitment Request (PS3.4 J.3.2.1.1.1: Action Type ID 1).
const REQUEST_STORAGE_COMMITMENT: u16 = 1;
/// Event Type IDs of the result (PS3.4 J.3.3.1.1).
const ALL_COMMITTED: u16 = 1;
const SOME_FAILED: u16 = 2;

/// Waits before each attempt to deliver a result on a new association.
const DELIVERY_BACKOFF: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(60),
];

/// SOP instances looked up per index query.
const LOOKUP_CHUNK: usize = 500;

/// One referenced instance (Referenced SOP Class UID, Referenced SOP Instance UID).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    class: String,
    instance: String,
}

/// The result of one commitment request: what is safely stored, what is not and why.
#[derive(Debug, Clone)]
pub(super) struct Report {
    transaction_uid: String,
    committed: Vec<Reference>,
    /// With the Failure Reason (0008,1197): 0x0112 no such object instance, 0x0119 class /
    /// instance conflict, 0x0110 processing failure.
    failed: Vec<(Reference, u16)>,
}

impl Report {
    fn event_type(&self) -> u16 {
        if self.failed.is_empty() {
            ALL_COMMITTED
        } else {
            SOME_FAILED
        }
    }

    /// The N-EVENT-REPORT data set (PS3.4 J.3.3.1.1.1, J.3.3.1.1.2).
    fn dataset(&self, retrieve_ae: &str) -> InMemDicomObject {
        let mut obj = InMemDicomObject::from_element_iter([DataElement::new(
            tags::TRANSACTION_UID,
            VR::UI,
            PrimitiveValue::from(self.transaction_uid.as_str()),
        )]);
        let reference = |r: &Reference| {
            [
                DataElement::new(
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    PrimitiveValue::from(r.class.as_str()),
                ),
                DataElement::new(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from(r.instance.as_str()),
                ),
            ]
        };
        if !self.committed.is_empty() {
            let items = self
                .committed
                .iter()
                .map(|r| {
                    let mut item = InMemDicomObject::from_element_iter(reference(r));
                    item.put(DataElement::new(
                        tags::RETRIEVE_AE_TITLE,
                        VR::AE,
                        PrimitiveValue::from(retrieve_ae),
                    ));
                    item
                })
                .collect::<Vec<_>>();
            obj.put(DataElement::new(
                tags::REFERENCED_SOP_SEQUENCE,
                VR::SQ,
                DataSetSequence::new(items, Length::UNDEFINED),
            ));
        }
        if !self.failed.is_empty() {
            let items = self
                .failed
                .iter()
                .map(|(r, reason)| {
                    let mut item = InMemDicomObject::from_element_iter(reference(r));
                    item.put(DataElement::new(
                        tags::FAILURE_REASON,
                        VR::US,
                        dicom_value!(U16, [*reason]),
                    ));
                    item
                })
                .collect::<Vec<_>>();
            obj.put(DataElement::new(
                tags::FAILED_SOP_SEQUENCE,
                VR::SQ,
                DataSetSequence::new(items, Length::UNDEFINED),
            ));
        }
        obj
    }
}

/// Results of this association still to be delivered.
#[derive(Default)]
pub(super) struct Deliveries {
    /// Sent on this association, waiting for the N-EVENT-REPORT-RSP (by our message ID).
    awaiting: Vec<(u16, Report)>,
    /// To send on a new association once this one has ended.
    deferred: Vec<Report>,
}

/// Why a commitment request is refused before anything is checked.
type Refusal = (u16, String);

/// Transaction UID and references of an N-ACTION data set (PS3.4 J.3.2.1.1.1).
fn parse_request(data: Option<&InMemDicomObject>) -> Result<(String, Vec<Reference>), Refusal> {
    let missing = |what: &str| (status::MISSING_ATTRIBUTE, format!("{what} missing"));
    let invalid = |what: String| (status::INVALID_ATTRIBUTE_VALUE, what);
    let data = data.ok_or_else(|| missing("N-ACTION data set"))?;
    let text = |obj: &InMemDicomObject, tag| -> Option<String> {
        obj.get(tag)
            .and_then(|e| e.value().to_str().ok())
            .map(|s| s.trim_matches([' ', '\0']).to_owned())
            .filter(|s| !s.is_empty())
    };
    let transaction =
        text(data, tags::TRANSACTION_UID).ok_or_else(|| missing("Transaction UID"))?;
    Uid::parse(&transaction).map_err(|e| invalid(format!("Transaction UID: {e}")))?;
    let elem = data
        .get(tags::REFERENCED_SOP_SEQUENCE)
        .ok_or_else(|| missing("Referenced SOP Sequence"))?;
    let items = match elem.value() {
        Value::Sequence(seq) => seq.items(),
        Value::Primitive(p) if p.to_str().trim_matches([' ', '\0']).is_empty() => &[],
        _ => return Err(invalid("Referenced SOP Sequence is not a sequence".into())),
    };
    if items.is_empty() {
        return Err(missing("Referenced SOP Sequence item"));
    }
    let mut refs = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let uid = |tag, what: &str| {
            let v = text(item, tag).ok_or_else(|| {
                (
                    status::MISSING_ATTRIBUTE,
                    format!("item {}: {what} missing", n + 1),
                )
            })?;
            Uid::parse(&v).map_err(|e| invalid(format!("item {}: {what}: {e}", n + 1)))?;
            Ok::<_, Refusal>(v)
        };
        refs.push(Reference {
            class: uid(tags::REFERENCED_SOP_CLASS_UID, "SOP Class UID")?,
            instance: uid(tags::REFERENCED_SOP_INSTANCE_UID, "SOP Instance UID")?,
        });
    }
    Ok((transaction, refs))
}

/// What the archive holds of a referenced instance: its SOP class and whether its blob is
/// on disk.
type Held = HashMap<String, (String, bool)>;

/// Compare the references with what the archive holds (`None`: the lookup failed).
fn judge(refs: Vec<Reference>, held: Option<&Held>) -> (Vec<Reference>, Vec<(Reference, u16)>) {
    let mut committed = Vec::new();
    let mut failed = Vec::new();
    for r in refs {
        let Some(held) = held else {
            failed.push((r, status::PROCESSING_FAILURE));
            continue;
        };
        match held.get(&r.instance) {
            None => failed.push((r, status::NO_SUCH_SOP_INSTANCE)),
            Some((class, _)) if *class != r.class => {
                failed.push((r, status::CLASS_INSTANCE_CONFLICT))
            }
            Some((_, true)) => committed.push(r),
            // indexed, but the file is gone: not safely stored
            Some((_, false)) => failed.push((r, status::PROCESSING_FAILURE)),
        }
    }
    (committed, failed)
}

impl Session<'_> {
    /// N-ACTION-RQ of the Storage Commitment Push Model.
    pub(super) fn storage_commitment<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        req: NRequest,
        action: Option<u16>,
        data: Option<InMemDicomObject>,
    ) -> Result<(), DimseError> {
        metrics::counter!("radris_dimse_requests_total", "op" => "storage-commitment").increment(1);
        let action_el = el_u16(tags::ACTION_TYPE_ID, action.unwrap_or(0));
        if req.sop_instance.as_deref() != Some(uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE) {
            return req.answer(
                assoc,
                status::NO_SUCH_SOP_INSTANCE,
                None,
                Some("not the Storage Commitment well-known instance"),
            );
        }
        if action != Some(REQUEST_STORAGE_COMMITMENT) {
            return req.answer(
                assoc,
                status::NO_SUCH_ACTION,
                None,
                Some("Action Type ID must be 1"),
            );
        }
        let (transaction, refs) = match parse_request(data.as_ref()) {
            Ok(parsed) => parsed,
            Err((code, why)) => {
                tracing::warn!(status = format!("{code:#06X}"), reason = %why, "storage commitment request refused");
                self.audit(
                    "dimse.storage-commitment",
                    Outcome::Failure,
                    "storage commitment".into(),
                    why.clone(),
                );
                return req.answer_with(assoc, code, None, Some(&why), vec![action_el]);
            }
        };
        req.answer_with(assoc, status::SUCCESS, None, None, vec![action_el])?;

        let requested = refs.len();
        let report = self.check_commitment(transaction, refs);
        let new_association = self
            .ctx
            .directory
            .remote(&self.tenant, &self.calling)
            .is_some_and(|r| r.storage_commitment_new_association && r.address.is_some());
        self.audit(
            "dimse.storage-commitment",
            Outcome::Success,
            format!("transaction {}", report.transaction_uid),
            format!(
                "requested={requested} committed={} failed={} delivery={}",
                report.committed.len(),
                report.failed.len(),
                if new_association {
                    "new-association"
                } else {
                    "same-association"
                }
            ),
        );
        tracing::info!(
            transaction = %report.transaction_uid,
            requested,
            committed = report.committed.len(),
            failed = report.failed.len(),
            "storage commitment checked"
        );
        if new_association {
            self.commitment.deferred.push(report);
            return Ok(());
        }
        // same association: the result right after the N-ACTION-RSP, on its context
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let cmd = crate::message::event_report_request(
            uids::STORAGE_COMMITMENT_PUSH_MODEL,
            uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
            message_id,
            report.event_type(),
        );
        let ts = transfer_syntax_of(assoc, req.pc_id).unwrap_or_default();
        let sent = encode_dataset(&report.dataset(self.ctx.directory.local_ae.as_str()), &ts)
            .and_then(|data| send_message(assoc, req.pc_id, &cmd, Some(&data)));
        match sent {
            Ok(()) => {
                self.commitment.awaiting.push((message_id, report));
                Ok(())
            }
            Err(e) => {
                // try again on a new association once this one is over
                tracing::warn!(error = %e, "storage commitment result not sent on the requesting association");
                self.commitment.deferred.push(report);
                Err(e)
            }
        }
    }

    /// Which referenced instances this tenant holds, safely: indexed with the same SOP class
    /// and with the blob on disk.
    fn check_commitment(&self, transaction_uid: String, refs: Vec<Reference>) -> Report {
        let wanted: Vec<String> = refs
            .iter()
            .map(|r| r.instance.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut held = Held::new();
        let mut lookup_ok = true;
        for chunk in wanted.chunks(LOOKUP_CHUNK) {
            // never empty: an empty list would be universal matching
            let query = FindQuery {
                level: QueryLevel::Image,
                keys: vec![QueryKey {
                    tag: tags::SOP_INSTANCE_UID,
                    vr: VR::UI,
                    matcher: Matcher::List(chunk.to_vec()),
                }],
            };
            match self
                .ctx
                .runtime
                .block_on(self.ctx.archive.find_instances(&self.tenant, &query))
            {
                Ok(found) => {
                    for inst in found {
                        let present = self.blob_present(&inst);
                        held.insert(inst.sop_uid, (inst.sop_class_uid, present));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "storage commitment: index lookup failed");
                    lookup_ok = false;
                    break;
                }
            }
        }
        let (committed, failed) = judge(refs, lookup_ok.then_some(&held));
        Report {
            transaction_uid,
            committed,
            failed,
        }
    }

    fn blob_present(&self, inst: &StoredInstance) -> bool {
        let path = self.ctx.archive.blobs().path_of(&inst.blob_path);
        let present = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
        if !present {
            tracing::error!(sop_instance = %inst.sop_uid, "storage commitment: indexed instance has no blob");
        }
        present
    }

    /// A response to a request we sent on this association (an N-EVENT-REPORT-RSP): noted,
    /// never answered.
    pub(super) fn on_response(&mut self, cmd: &InMemDicomObject) {
        let field = get_u16(cmd, tags::COMMAND_FIELD).unwrap_or(0);
        let id = get_u16(cmd, tags::MESSAGE_ID_BEING_RESPONDED_TO).unwrap_or(0);
        let code = get_u16(cmd, tags::STATUS).unwrap_or(status::PROCESSING_FAILURE);
        let pending = self.commitment.awaiting.iter().position(|(m, _)| *m == id);
        match (field, pending) {
            (command::N_EVENT_REPORT_RSP, Some(i)) => {
                let (_, report) = self.commitment.awaiting.remove(i);
                if code == status::SUCCESS || code & 0xF000 == 0xB000 {
                    tracing::info!(transaction = %report.transaction_uid, "storage commitment result delivered");
                    metrics::counter!("radris_dimse_storage_commitment_reports_total", "outcome" => "delivered", "association" => "same").increment(1);
                } else {
                    tracing::warn!(transaction = %report.transaction_uid, status = format!("{code:#06X}"), "storage commitment result refused by the requestor");
                    metrics::counter!("radris_dimse_storage_commitment_reports_total", "outcome" => "refused", "association" => "same").increment(1);
                }
            }
            _ => tracing::debug!(
                command = format!("{field:#06X}"),
                message_id = id,
                "response to no request of ours; ignored"
            ),
        }
    }

    /// After the association: results never confirmed on it, and those owed on a new
    /// association, go to the calling AE's configured address from a background thread.
    pub(super) fn deliver_commitment_reports(&mut self) {
        let mut reports = std::mem::take(&mut self.commitment.deferred);
        reports.extend(
            std::mem::take(&mut self.commitment.awaiting)
                .into_iter()
                .map(|(_, r)| r),
        );
        if reports.is_empty() {
            return;
        }
        let address = self
            .ctx
            .directory
            .remote(&self.tenant, &self.calling)
            .and_then(|r| r.address.clone());
        for report in reports {
            let Some((host, port)) = address.clone() else {
                tracing::warn!(transaction = %report.transaction_uid, "storage commitment result undeliverable: the calling AE has no configured host and port");
                metrics::counter!("radris_dimse_storage_commitment_reports_total", "outcome" => "undeliverable", "association" => "new").increment(1);
                self.audit(
                    "dimse.storage-commitment",
                    Outcome::Failure,
                    format!("transaction {}", report.transaction_uid),
                    "result not confirmed and no address to send it to".into(),
                );
                continue;
            };
            let delivery = Delivery {
                local_ae: self.ctx.directory.local_ae.as_str().to_owned(),
                remote_ae: self.calling.as_str().to_owned(),
                address: format!("{host}:{port}"),
                tenant: self.tenant.as_str().to_owned(),
                peer: self.peer.clone(),
                audit: self.ctx.audit.clone(),
                report,
            };
            let spawned = std::thread::Builder::new()
                .name("stgcmt-report".into())
                .spawn(move || delivery.run());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a storage commitment delivery thread");
            }
        }
    }
}

/// One result to send on a new association.
struct Delivery {
    local_ae: String,
    remote_ae: String,
    address: String,
    tenant: String,
    peer: String,
    audit: Audit,
    report: Report,
}

impl Delivery {
    fn run(self) {
        let span = tracing::info_span!("storage_commitment_delivery", remote = %self.remote_ae, tenant = %self.tenant, transaction = %self.report.transaction_uid);
        let _enter = span.enter();
        let mut opts = ScuOptions::new(&self.local_ae, &self.remote_ae, &self.address);
        opts.timeout = Duration::from_secs(30);
        let dataset = self.report.dataset(&self.local_ae);
        let mut last_error = String::new();
        for (attempt, wait) in DELIVERY_BACKOFF.iter().enumerate() {
            std::thread::sleep(*wait);
            match scu::report_storage_commitment(&opts, self.report.event_type(), &dataset) {
                Ok(code) if code == status::SUCCESS || code & 0xF000 == 0xB000 => {
                    tracing::info!(
                        attempt,
                        "storage commitment result delivered on a new association"
                    );
                    metrics::counter!("radris_dimse_storage_commitment_reports_total", "outcome" => "delivered", "association" => "new").increment(1);
                    self.audit(
                        Outcome::Success,
                        format!("result delivered on a new association to {}", self.address),
                    );
                    return;
                }
                Ok(code) => {
                    // an answer, not a transport failure: sending again would not change it
                    tracing::warn!(
                        status = format!("{code:#06X}"),
                        "storage commitment result refused by the requestor"
                    );
                    metrics::counter!("radris_dimse_storage_commitment_reports_total", "outcome" => "refused", "association" => "new").increment(1);
                    self.audit(
                        Outcome::Failure,
                        format!("result refused with status {code:#06X}"),
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "storage commitment result not delivered; will retry");
                    metrics::counter!("radris_dimse_storage_commitment_reports_total", "outcome" => "retry", "association" => "new").increment(1);
                    last_error = e.to_string();
                }
            }
        }
        tracing::error!(error = %last_error, "storage commitment result not delivered; giving up");
        metrics::counter!("radris_dimse_storage_commitment_reports_total", "outcome" => "failed", "association" => "new").increment(1);
        self.audit(
            Outcome::Failure,
            format!(
                "result not delivered to {} after {} attempts: {last_error}",
                self.address,
                DELIVERY_BACKOFF.len()
            ),
        );
    }

    fn audit(&self, outcome: Outcome, detail: String) {
        self.audit.record(AuditRecord {
            tenant: self.tenant.clone(),
            actor: format!("ae:{}", self.remote_ae),
            action: "dimse.storage-commitment".into(),
            outcome,
            resource: format!("transaction {}", self.report.transaction_uid),
            detail,
            source: self.peer.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use radris_dicom::attrs::sop_reference as reference;

    fn request(transaction: Option<&str>, items: Vec<InMemDicomObject>) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        if let Some(t) = transaction {
            obj.put(DataElement::new(
                tags::TRANSACTION_UID,
                VR::UI,
                PrimitiveValue::from(t),
            ));
        }
        obj.put(DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::new(items, Length::UNDEFINED),
        ));
        obj
    }

    #[test]
    fn request_validation() {
        let ok = request(
            Some("1.2.3"),
            vec![reference("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4")],
        );
        let (t, refs) = parse_request(Some(&ok)).unwrap();
        assert_eq!(t, "1.2.3");
        assert_eq!(refs.len(), 1);
        let code = |obj: Option<&InMemDicomObject>| parse_request(obj).unwrap_err().0;
        assert_eq!(code(None), status::MISSING_ATTRIBUTE);
        assert_eq!(
            code(Some(&request(None, vec![reference("1.2", "1.3")]))),
            status::MISSING_ATTRIBUTE
        );
        assert_eq!(
            code(Some(&request(Some("1.2.3"), vec![]))),
            status::MISSING_ATTRIBUTE
        );
        assert_eq!(
            code(Some(&request(
                Some("not a uid"),
                vec![reference("1.2", "1.3")]
            ))),
            status::INVALID_ATTRIBUTE_VALUE
        );
        assert_eq!(
            code(Some(&request(Some("1.2.3"), vec![reference("1.2", "x.y")]))),
            status::INVALID_ATTRIBUTE_VALUE
        );
    }

    #[test]
    fn judging_and_the_event_report() {
        let r = |c: &str, i: &str| Reference {
            class: c.into(),
            instance: i.into(),
        };
        let held: Held = [
            ("1.1".into(), ("9.9".into(), true)),
            ("1.2".into(), ("9.9".into(), true)),
            ("1.4".into(), ("9.9".into(), false)),
        ]
        .into();
        let refs = vec![
            r("9.9", "1.1"),
            r("9.8", "1.2"),
            r("9.9", "1.3"),
            r("9.9", "1.4"),
        ];
        let (committed, failed) = judge(refs.clone(), Some(&held));
        assert_eq!(committed, vec![r("9.9", "1.1")]);
        assert_eq!(
            failed,
            vec![
                (r("9.8", "1.2"), 0x0119),
                (r("9.9", "1.3"), 0x0112),
                (r("9.9", "1.4"), 0x0110)
            ]
        );
        let (committed, failed) = judge(refs, None);
        assert!(committed.is_empty() && failed.iter().all(|(_, c)| *c == 0x0110));

        let report = Report {
            transaction_uid: "1.2.3".into(),
            committed: vec![r("9.9", "1.1")],
            failed: vec![(r("9.9", "1.3"), 0x0112)],
        };
        assert_eq!(report.event_type(), 2);
        let ds = report.dataset("RADRIS");
        let ok = ds
            .get(tags::REFERENCED_SOP_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap();
        assert_eq!(
            ok[0]
                .get(tags::RETRIEVE_AE_TITLE)
                .unwrap()
                .value()
                .to_str()
                .unwrap(),
            "RADRIS"
        );
        let bad = ds
            .get(tags::FAILED_SOP_SEQUENCE)
            .and_then(|e| e.items())
            .unwrap();
        assert_eq!(
            bad[0]
                .get(tags::FAILURE_REASON)
                .unwrap()
                .value()
                .to_int::<u16>()
                .unwrap(),
            0x0112
        );
        let all = Report {
            failed: vec![],
            ..report
        };
        assert_eq!(all.event_type(), 1);
        assert!(
            all.dataset("RADRIS")
                .get(tags::FAILED_SOP_SEQUENCE)
                .is_none()
        );
    }
}
