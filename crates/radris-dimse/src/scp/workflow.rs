//! Scheduled workflow on an established association: Modality Worklist C-FIND (PS3.4 K.6)
//! and Modality Performed Procedure Step N-CREATE / N-SET (PS3.4 F.7), answered by the RIS
//! through [`ModalityWorkflow`]; and the dispatch of every N-service request by SOP class.
//!
//! Status codes: a malformed worklist identifier is 0xA900 (Identifier does not match SOP
//! class), a RIS failure 0xC000; MPPS failures follow PS3.4 F.7.2.1.3 / F.7.2.2.3 with an
//! Error Comment (at most 64 characters) on every failure.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::association::ServerAssociation;
use radris_core::Uid;
use radris_core::audit::Outcome;
use radris_dicom::worklist::{Mpps, MppsStatus, WorkflowError, WorklistQuery};

use super::query::cancel_requested;
use super::{DimseStream, Session, transfer_syntax_of};
use crate::DimseError;
use crate::message::{
    command, decode_dataset_within, el_str, el_ui, encode_dataset, get_str, get_u16, response,
    send_message, status,
};

/// The status a [`WorkflowError`] answers an MPPS request with (PS3.4 F.7.2.1.3).
fn mpps_status(e: &WorkflowError) -> u16 {
    match e {
        WorkflowError::Invalid(_) => status::INVALID_ATTRIBUTE_VALUE,
        WorkflowError::NoSuchInstance(_) => status::NO_SUCH_SOP_INSTANCE,
        WorkflowError::Duplicate(_) => status::DUPLICATE_SOP_INSTANCE,
        WorkflowError::UnknownStep(_)
        | WorkflowError::InvalidState(_)
        | WorkflowError::Internal(_) => status::PROCESSING_FAILURE,
    }
}

/// An Error Comment (0000,0902): LO, at most 64 characters.
pub(super) fn error_comment(why: &str) -> dicom_core::DataElement<InMemDicomObject> {
    el_str(
        tags::ERROR_COMMENT,
        VR::LO,
        &why.chars().take(64).collect::<String>(),
    )
}

/// A new UID under the UUID-derived root `2.25` (PS3.5 B.2): 127 bits from a per-process
/// random key, the clock and a counter, hashed.
pub(super) fn new_uid() -> Uid {
    use sha2::{Digest, Sha256};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let key = *KEY.get_or_init(|| {
        // RandomState is seeded from the operating system's random source
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digest = Sha256::digest(format!("radris-uid/{key}/{now}/{n}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uid::parse(&format!("2.25.{}", u128::from_be_bytes(bytes) >> 1))
        .expect("a 2.25 UID of at most 39 digits is valid")
}

impl Session<'_> {
    /// An N-CREATE / N-SET / N-ACTION request (with its data set, if it had one), dispatched
    /// by SOP class: MPPS to the RIS, Storage Commitment to the archive.
    pub(super) fn on_normalized<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        cmd: &InMemDicomObject,
        bytes: Option<Vec<u8>>,
    ) -> Result<(), DimseError> {
        let field = get_u16(cmd, tags::COMMAND_FIELD).unwrap_or(0);
        let message_id = get_u16(cmd, tags::MESSAGE_ID).unwrap_or(0);
        let (class_tag, instance_tag) = if field == command::N_CREATE_RQ {
            (
                tags::AFFECTED_SOP_CLASS_UID,
                tags::AFFECTED_SOP_INSTANCE_UID,
            )
        } else {
            (
                tags::REQUESTED_SOP_CLASS_UID,
                tags::REQUESTED_SOP_INSTANCE_UID,
            )
        };
        let sop_class = get_str(cmd, class_tag).unwrap_or_default();
        let sop_instance = get_str(cmd, instance_tag).filter(|s| !s.is_empty());
        let req = NRequest {
            pc_id,
            field,
            message_id,
            sop_class,
            sop_instance,
        };
        let ts = transfer_syntax_of(assoc, pc_id).unwrap_or_default();
        let data = match bytes.map(|b| decode_dataset_within(&b, &ts, super::MAX_N_DATASET_BYTES)) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                return req.answer(
                    assoc,
                    status::INVALID_ATTRIBUTE_VALUE,
                    None,
                    Some(&e.to_string()),
                );
            }
        };
        match (req.sop_class.as_str(), field) {
            (uids::MODALITY_PERFORMED_PROCEDURE_STEP, command::N_CREATE_RQ) => {
                self.mpps_create(assoc, req, data)
            }
            (uids::MODALITY_PERFORMED_PROCEDURE_STEP, command::N_SET_RQ) => {
                self.mpps_set(assoc, req, data)
            }
            (uids::STORAGE_COMMITMENT_PUSH_MODEL, command::N_ACTION_RQ) => {
                let action = get_u16(cmd, tags::ACTION_TYPE_ID);
                self.storage_commitment(assoc, req, action, data)
            }
            (uids::MODALITY_PERFORMED_PROCEDURE_STEP | uids::STORAGE_COMMITMENT_PUSH_MODEL, _) => {
                req.answer(
                    assoc,
                    status::UNRECOGNIZED_OPERATION,
                    None,
                    Some("operation not supported for this SOP class"),
                )
            }
            _ => {
                tracing::warn!(sop_class = %req.sop_class, "N-service request for an unsupported SOP class");
                req.answer(
                    assoc,
                    status::NO_SUCH_SOP_CLASS,
                    None,
                    Some("SOP class not supported"),
                )
            }
        }
    }

    /// Modality Worklist C-FIND: one Pending response per scheduled step the RIS returns,
    /// then Success; C-CANCEL between responses stops it (status Cancel).
    pub(super) fn worklist_find<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        message_id: u16,
        sop_class: &str,
        bytes: &[u8],
    ) -> Result<(), DimseError> {
        let started = Instant::now();
        metrics::counter!("radris_dimse_requests_total", "op" => "mwl-find").increment(1);
        let answer = |assoc: &mut ServerAssociation<S>, code: u16, why: Option<&str>| {
            let extra = why.map(error_comment).into_iter().collect();
            let rsp = response(
                command::C_FIND_RSP,
                sop_class,
                message_id,
                code,
                false,
                extra,
            );
            send_message(assoc, pc_id, &rsp, None)
        };
        let Some(workflow) = self.ctx.workflow.clone() else {
            tracing::warn!("Modality Worklist query, but no RIS is configured");
            return answer(
                assoc,
                status::SOP_CLASS_NOT_SUPPORTED,
                Some("modality worklist not configured"),
            );
        };
        let ts = transfer_syntax_of(assoc, pc_id).unwrap_or_default();
        let query = match decode_dataset_within(bytes, &ts, super::MAX_IDENTIFIER_BYTES)
            .map_err(|e| WorkflowError::Invalid(e.to_string()))
            .and_then(|ident| WorklistQuery::from_identifier(&ident))
        {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(reason = %e, "worklist identifier refused");
                self.audit(
                    "dimse.mwl-find",
                    Outcome::Failure,
                    "modality worklist".into(),
                    e.to_string(),
                );
                return answer(assoc, status::DATASET_MISMATCH, Some(&comment(&e)));
            }
        };
        let items = match workflow.worklist(&self.tenant, &self.calling, &query) {
            Ok(items) => items,
            Err(e) => {
                let code = match e {
                    WorkflowError::Invalid(_) => status::DATASET_MISMATCH,
                    _ => status::CANNOT_UNDERSTAND,
                };
                tracing::error!(error = %e, "the RIS could not answer a worklist query");
                self.audit(
                    "dimse.mwl-find",
                    Outcome::Failure,
                    "modality worklist".into(),
                    format!("{} ({e})", query.describe()),
                );
                return answer(assoc, code, Some(&comment(&e)));
            }
        };
        tracing::debug!(matches = items.len(), "Modality Worklist C-FIND");
        let mut sent = 0usize;
        let mut outcome = Ok(());
        for item in &items {
            if cancel_requested(assoc)? {
                tracing::info!("worklist C-FIND cancelled by the requestor");
                outcome = answer(assoc, status::CANCEL, None);
                break;
            }
            let data = encode_dataset(&query.response(item), &ts)?;
            let rsp = response(
                command::C_FIND_RSP,
                sop_class,
                message_id,
                status::PENDING,
                true,
                vec![],
            );
            send_message(assoc, pc_id, &rsp, Some(&data))?;
            sent += 1;
        }
        if sent == items.len() {
            outcome = answer(assoc, status::SUCCESS, None);
        }
        self.audit(
            "dimse.mwl-find",
            if outcome.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            "modality worklist".into(),
            format!("{} matches={sent}", query.describe()),
        );
        metrics::histogram!("radris_dimse_request_seconds", "op" => "mwl-find")
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    fn mpps_create<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        req: NRequest,
        data: Option<InMemDicomObject>,
    ) -> Result<(), DimseError> {
        metrics::counter!("radris_dimse_requests_total", "op" => "mpps-create").increment(1);
        // PS3.4 F.7.2.1: the SCP assigns the instance UID when the SCU did not
        let uid = match &req.sop_instance {
            Some(raw) => match Uid::parse(raw) {
                Ok(uid) => uid,
                Err(e) => {
                    return req.answer(
                        assoc,
                        status::INVALID_OBJECT_INSTANCE,
                        None,
                        Some(&e.to_string()),
                    );
                }
            },
            None => new_uid(),
        };
        let result = self.ctx.workflow.clone().ok_or(None).and_then(|workflow| {
            let data = data.ok_or(Some((
                status::MISSING_ATTRIBUTE,
                "N-CREATE without a data set".to_owned(),
            )))?;
            let mpps = Mpps::from_dataset(&data).map_err(|e| Some(failure(&e)))?;
            match mpps.status {
                Some(MppsStatus::InProgress) => {}
                None => {
                    return Err(Some((
                        status::MISSING_ATTRIBUTE,
                        "PerformedProcedureStepStatus (0040,0252) missing".into(),
                    )));
                }
                Some(other) => {
                    return Err(Some((
                        status::INVALID_ATTRIBUTE_VALUE,
                        format!("N-CREATE with status {}", other.as_str()),
                    )));
                }
            }
            workflow
                .mpps_create(&self.tenant, &self.calling, uid.as_str(), &mpps)
                .map_err(|e| Some(failure(&e)))?;
            Ok(mpps)
        });
        self.finish_mpps(assoc, req, "dimse.mpps-create", &uid, result)
    }

    fn mpps_set<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        req: NRequest,
        data: Option<InMemDicomObject>,
    ) -> Result<(), DimseError> {
        metrics::counter!("radris_dimse_requests_total", "op" => "mpps-set").increment(1);
        let uid = match req.sop_instance.as_deref().map(Uid::parse) {
            Some(Ok(uid)) => uid,
            Some(Err(e)) => {
                return req.answer(
                    assoc,
                    status::INVALID_OBJECT_INSTANCE,
                    None,
                    Some(&e.to_string()),
                );
            }
            None => {
                return req.answer(
                    assoc,
                    status::INVALID_OBJECT_INSTANCE,
                    None,
                    Some("Requested SOP Instance UID missing"),
                );
            }
        };
        let result = self.ctx.workflow.clone().ok_or(None).and_then(|workflow| {
            let data = data.ok_or(Some((
                status::MISSING_ATTRIBUTE,
                "N-SET without a data set".to_owned(),
            )))?;
            let mpps = Mpps::from_dataset(&data).map_err(|e| Some(failure(&e)))?;
            workflow
                .mpps_set(&self.tenant, &self.calling, uid.as_str(), &mpps)
                .map_err(|e| Some(failure(&e)))?;
            Ok(mpps)
        });
        self.finish_mpps(assoc, req, "dimse.mpps-set", &uid, result)
    }

    /// Answer an MPPS request and audit it. `Err(None)`: no RIS is configured.
    fn finish_mpps<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        req: NRequest,
        action: &str,
        uid: &Uid,
        result: Result<Mpps, Option<(u16, String)>>,
    ) -> Result<(), DimseError> {
        let resource = format!("mpps {uid}");
        match result {
            Ok(mpps) => {
                let steps = mpps
                    .steps
                    .iter()
                    .map(|s| format!("{}/{}", s.accession, s.step_id))
                    .collect::<Vec<_>>()
                    .join(",");
                let detail = format!(
                    "status={} steps={steps} series={}",
                    mpps.status.map(MppsStatus::as_str).unwrap_or("-"),
                    mpps.series.len()
                );
                tracing::info!(mpps = %uid, %detail, "{action}");
                self.audit(action, Outcome::Success, resource, detail);
                req.answer(assoc, status::SUCCESS, Some(uid), None)
            }
            Err(None) => {
                tracing::warn!("MPPS request, but no RIS is configured");
                req.answer(
                    assoc,
                    status::NO_SUCH_SOP_CLASS,
                    Some(uid),
                    Some("MPPS not configured"),
                )
            }
            Err(Some((code, why))) => {
                tracing::warn!(mpps = %uid, status = format!("{code:#06X}"), reason = %why, "MPPS request refused");
                self.audit(action, Outcome::Failure, resource, why.clone());
                req.answer(assoc, code, Some(uid), Some(&why))
            }
        }
    }
}

/// Status and comment of a refused MPPS request.
fn failure(e: &WorkflowError) -> (u16, String) {
    (mpps_status(e), comment(e))
}

/// The Error Comment for a refusal: an invalid request explains itself; the other kinds keep
/// their prefix ("unknown scheduled procedure step: …"), which says what went wrong.
fn comment(e: &WorkflowError) -> String {
    match e {
        WorkflowError::Invalid(m) => m.clone(),
        other => other.to_string(),
    }
}

/// What an N-service response needs from its request.
pub(super) struct NRequest {
    pub pc_id: u8,
    pub field: u16,
    pub message_id: u16,
    pub sop_class: String,
    /// The Affected (N-CREATE) or Requested SOP Instance UID, when the request had one.
    pub sop_instance: Option<String>,
}

impl NRequest {
    /// Send the response: Affected SOP Class UID, Affected SOP Instance UID (`instance`, or
    /// the request's), the status, and an Error Comment on failures.
    pub fn answer<S: DimseStream>(
        &self,
        assoc: &mut ServerAssociation<S>,
        code: u16,
        instance: Option<&Uid>,
        why: Option<&str>,
    ) -> Result<(), DimseError> {
        self.answer_with(assoc, code, instance, why, vec![])
    }

    pub fn answer_with<S: DimseStream>(
        &self,
        assoc: &mut ServerAssociation<S>,
        code: u16,
        instance: Option<&Uid>,
        why: Option<&str>,
        mut extra: Vec<dicom_core::DataElement<InMemDicomObject>>,
    ) -> Result<(), DimseError> {
        let instance = instance
            .map(|u| u.as_str().to_owned())
            .or_else(|| self.sop_instance.clone());
        if let Some(uid) = instance {
            extra.push(el_ui(tags::AFFECTED_SOP_INSTANCE_UID, &uid));
        }
        if let Some(why) = why {
            extra.push(error_comment(why));
        }
        let rsp = response(
            self.field | 0x8000,
            &self.sop_class,
            self.message_id,
            code,
            false,
            extra,
        );
        send_message(assoc, self.pc_id, &rsp, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_uids_are_valid_and_distinct() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("2.25."));
        assert!(a.as_str().len() <= 64);
    }

    #[test]
    fn workflow_errors_map_to_mpps_statuses() {
        let check = |e: WorkflowError, s: u16| assert_eq!(mpps_status(&e), s, "{e}");
        check(WorkflowError::Invalid("x".into()), 0x0106);
        check(WorkflowError::UnknownStep("x".into()), 0x0110);
        check(WorkflowError::NoSuchInstance("x".into()), 0x0112);
        check(WorkflowError::Duplicate("x".into()), 0x0111);
        check(WorkflowError::InvalidState("x".into()), 0x0110);
        check(WorkflowError::Internal("x".into()), 0x0110);
        let long = "a".repeat(100);
        let c = error_comment(&long);
        assert_eq!(c.value().to_str().unwrap().len(), 64);
    }
}
