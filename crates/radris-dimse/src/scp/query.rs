//! Query and retrieve on an established association: C-FIND responses, C-GET and C-MOVE
//! sub-operations, C-CANCEL between responses.

use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::association::ServerAssociation;
use radris_core::AeTitle;
use radris_dicom::query::{Counters, FindQuery, QueryLevel, response_identifier};
use radris_store::{FindRow, StoreError, StoredInstance};

use super::DimseStream;
use super::{Session, transfer_syntax_of};
use crate::DimseError;
use crate::message::{
    Link, command, el_str, encode_dataset, read_message, response, send_message, status,
};
use crate::scu::{self, ScuOptions, SubopCounts};

impl Session<'_> {
    pub(super) fn find<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        message_id: u16,
        sop_class: &str,
        ts: &str,
        query: &FindQuery,
    ) -> Result<(), DimseError> {
        let rows = match self
            .ctx
            .runtime
            .block_on(self.ctx.archive.find(&self.tenant, query))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "C-FIND failed in the index");
                let rsp = response(
                    command::C_FIND_RSP,
                    sop_class,
                    message_id,
                    status::OUT_OF_RESOURCES,
                    false,
                    vec![],
                );
                return send_message(assoc, pc_id, &rsp, None);
            }
        };
        tracing::debug!(level = query.level.as_str(), matches = rows.len(), "C-FIND");
        let local_ae = self.ctx.directory.local_ae.as_str();
        for row in &rows {
            if cancel_requested(assoc)? {
                tracing::info!("C-FIND cancelled by the requestor");
                let rsp = response(
                    command::C_FIND_RSP,
                    sop_class,
                    message_id,
                    status::CANCEL,
                    false,
                    vec![],
                );
                return send_message(assoc, pc_id, &rsp, None);
            }
            let header = match radris_dicom::attrs::header_from_json(&row.header_json) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(error = %e, "stored header unreadable; match skipped");
                    continue;
                }
            };
            let ident =
                response_identifier(query, &header, &counters_of(query.level, row), local_ae);
            let data = encode_dataset(&ident, ts)?;
            let rsp = response(
                command::C_FIND_RSP,
                sop_class,
                message_id,
                status::PENDING,
                true,
                vec![],
            );
            send_message(assoc, pc_id, &rsp, Some(&data))?;
        }
        let rsp = response(
            command::C_FIND_RSP,
            sop_class,
            message_id,
            status::SUCCESS,
            false,
            vec![],
        );
        send_message(assoc, pc_id, &rsp, None)
    }

    fn instances(&self, query: &FindQuery) -> Result<Vec<StoredInstance>, StoreError> {
        self.ctx
            .runtime
            .block_on(self.ctx.archive.find_instances(&self.tenant, query))
    }

    pub(super) fn get<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        message_id: u16,
        sop_class: &str,
        query: &FindQuery,
    ) -> Result<(), DimseError> {
        let instances = match self.instances(query) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "C-GET failed in the index");
                let rsp = response(
                    command::C_GET_RSP,
                    sop_class,
                    message_id,
                    status::OUT_OF_RESOURCES_SUBOPS,
                    false,
                    vec![],
                );
                return send_message(assoc, pc_id, &rsp, None);
            }
        };
        let mut counts = SubopCounts {
            remaining: u16::try_from(instances.len()).unwrap_or(u16::MAX),
            ..Default::default()
        };
        let mut failed_uids = Vec::new();
        let pcs = assoc.presentation_contexts().to_vec();
        let mut cancelled = false;
        for inst in &instances {
            if cancelled || cancel_requested(assoc)? {
                cancelled = true;
                break;
            }
            counts.remaining = counts.remaining.saturating_sub(1);
            let outcome = self.send_subop(assoc, &pcs, inst, None, &mut cancelled);
            tally(&mut counts, &mut failed_uids, inst, outcome);
            send_pending(
                assoc,
                pc_id,
                command::C_GET_RSP,
                sop_class,
                message_id,
                &counts,
            )?;
        }
        self.final_retrieve_response(
            assoc,
            pc_id,
            command::C_GET_RSP,
            sop_class,
            message_id,
            counts,
            failed_uids,
            cancelled,
        )
    }

    pub(super) fn move_to<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        message_id: u16,
        sop_class: &str,
        query: &FindQuery,
        destination: &str,
    ) -> Result<(), DimseError> {
        let fail = |assoc: &mut ServerAssociation<S>, code: u16, why: &str| {
            tracing::warn!(destination, reason = why, "C-MOVE refused");
            let rsp = response(
                command::C_MOVE_RSP,
                sop_class,
                message_id,
                code,
                false,
                vec![el_str(tags::ERROR_COMMENT, VR::LO, why)],
            );
            send_message(assoc, pc_id, &rsp, None)
        };
        let Some((host, port)) = AeTitle::parse(destination)
            .ok()
            .and_then(|ae| self.ctx.directory.move_destination(&self.tenant, &ae))
        else {
            return fail(
                assoc,
                status::MOVE_DESTINATION_UNKNOWN,
                "move destination unknown",
            );
        };
        let instances = match self.instances(query) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "C-MOVE failed in the index");
                return fail(assoc, status::OUT_OF_RESOURCES_SUBOPS, "index unavailable");
            }
        };
        let mut counts = SubopCounts {
            remaining: u16::try_from(instances.len()).unwrap_or(u16::MAX),
            ..Default::default()
        };
        let mut failed_uids = Vec::new();
        let mut cancelled = false;
        if !instances.is_empty() {
            let mut contexts: Vec<(String, String)> = instances
                .iter()
                .map(|i| (i.sop_class_uid.clone(), i.transfer_syntax.clone()))
                .collect();
            contexts.sort();
            contexts.dedup();
            let mut opts = ScuOptions::new(
                self.ctx.directory.local_ae.as_str(),
                destination,
                &format!("{host}:{port}"),
            );
            // the destination must answer the association request within ARTIM, so that a
            // hung destination fails this C-MOVE before its requestor gives up on us
            opts.timeout = self.ctx.limits.artim_timeout();
            let connected = scu::connect_for_store(&opts, &contexts).and_then(|mut a| {
                a.inner_stream()
                    .set_read_timeout(Some(self.ctx.limits.idle_timeout()))?;
                Ok(a)
            });
            let mut sub = match connected {
                Ok(a) => a,
                Err(e) => {
                    return fail(
                        assoc,
                        status::OUT_OF_RESOURCES_SUBOPS,
                        &format!("cannot reach {destination}: {e}")
                            .chars()
                            .take(64)
                            .collect::<String>(),
                    );
                }
            };
            let pcs = sub.presentation_contexts().to_vec();
            let mut peer_cancel = false;
            for inst in &instances {
                if cancel_requested(assoc)? {
                    cancelled = true;
                    break;
                }
                counts.remaining = counts.remaining.saturating_sub(1);
                let originator = Some((self.calling.as_str().to_owned(), message_id));
                let outcome = self.send_subop(&mut sub, &pcs, inst, originator, &mut peer_cancel);
                tally(&mut counts, &mut failed_uids, inst, outcome);
                send_pending(
                    assoc,
                    pc_id,
                    command::C_MOVE_RSP,
                    sop_class,
                    message_id,
                    &counts,
                )?;
            }
            let _ = sub.release();
        }
        self.final_retrieve_response(
            assoc,
            pc_id,
            command::C_MOVE_RSP,
            sop_class,
            message_id,
            counts,
            failed_uids,
            cancelled,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn final_retrieve_response<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        field: u16,
        sop_class: &str,
        message_id: u16,
        counts: SubopCounts,
        failed_uids: Vec<String>,
        cancelled: bool,
    ) -> Result<(), DimseError> {
        // PS3.4 C.4.2.3.1 / C.4.3.3.1: Failure if every sub-operation failed, Warning if some did
        let code = if cancelled {
            status::CANCEL
        } else if counts.failed > 0 && counts.completed == 0 && counts.warning == 0 {
            status::OUT_OF_RESOURCES_SUBOPS
        } else if counts.failed > 0 || counts.warning > 0 {
            status::WARNING_SUBOPS_FAILED
        } else {
            status::SUCCESS
        };
        let mut extra = counts.elements();
        if !cancelled {
            // PS3.4 C.4.2.1.6: Remaining is only sent with Pending and Cancel
            extra.retain(|e| e.tag() != tags::NUMBER_OF_REMAINING_SUBOPERATIONS);
        }
        if failed_uids.is_empty() {
            let rsp = response(field, sop_class, message_id, code, false, extra);
            send_message(assoc, pc_id, &rsp, None)
        } else {
            let ts = transfer_syntax_of(assoc, pc_id)
                .unwrap_or_else(|| uids::IMPLICIT_VR_LITTLE_ENDIAN.to_owned());
            let ident = InMemDicomObject::from_element_iter([DataElement::new(
                tags::FAILED_SOP_INSTANCE_UID_LIST,
                VR::UI,
                PrimitiveValue::Strs(failed_uids.into_iter().collect()),
            )]);
            let data = encode_dataset(&ident, &ts)?;
            let rsp = response(field, sop_class, message_id, code, true, extra);
            send_message(assoc, pc_id, &rsp, Some(&data))
        }
    }

    /// One C-STORE sub-operation of a C-GET (on the requestor's association) or a C-MOVE
    /// (on the association to the destination): the stored bytes, then the peer's status.
    fn send_subop<L: Link>(
        &mut self,
        link: &mut L,
        pcs: &[dicom_ul::pdu::PresentationContextNegotiated],
        inst: &StoredInstance,
        originator: Option<(String, u16)>,
        cancelled: &mut bool,
    ) -> Result<u16, String> {
        let bytes = self
            .ctx
            .archive
            .read_dataset(inst)
            .map_err(|e| e.to_string())?;
        let msg_id = self.next_id();
        let originator = originator.as_ref().map(|(ae, id)| (ae.as_str(), *id));
        scu::store_subop(link, pcs, inst, &bytes, msg_id, originator, cancelled)
            .map_err(|e| e.to_string())
    }

    fn next_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        id
    }
}

/// A Pending C-GET/C-MOVE response with the sub-operation counts so far.
fn send_pending<S: DimseStream>(
    assoc: &mut ServerAssociation<S>,
    pc_id: u8,
    field: u16,
    sop_class: &str,
    message_id: u16,
    counts: &SubopCounts,
) -> Result<(), DimseError> {
    let rsp = response(
        field,
        sop_class,
        message_id,
        status::PENDING,
        false,
        counts.elements(),
    );
    send_message(assoc, pc_id, &rsp, None)
}

fn tally(
    counts: &mut SubopCounts,
    failed_uids: &mut Vec<String>,
    inst: &StoredInstance,
    outcome: Result<u16, String>,
) {
    match outcome {
        Ok(status::SUCCESS) => counts.completed = counts.completed.saturating_add(1),
        Ok(s) if (s & 0xF000) == 0xB000 => counts.warning = counts.warning.saturating_add(1),
        Ok(s) => {
            tracing::warn!(sop_instance = %inst.sop_uid, status = format!("{s:#06X}"), "sub-operation refused by the peer");
            counts.failed = counts.failed.saturating_add(1);
            failed_uids.push(inst.sop_uid.clone());
        }
        Err(e) => {
            tracing::warn!(sop_instance = %inst.sop_uid, error = %e, "sub-operation failed");
            counts.failed = counts.failed.saturating_add(1);
            failed_uids.push(inst.sop_uid.clone());
        }
    }
}

fn counters_of(level: QueryLevel, row: &FindRow) -> Counters {
    match level {
        QueryLevel::Patient => Counters {
            patient_related_studies: Some(row.num_studies),
            patient_related_series: Some(row.num_series),
            patient_related_instances: Some(row.num_instances),
            ..Counters::default()
        },
        QueryLevel::Study => Counters {
            study_related_series: Some(row.num_series),
            study_related_instances: Some(row.num_instances),
            modalities_in_study: Some(row.modalities.clone()),
            ..Counters::default()
        },
        QueryLevel::Series => Counters {
            series_related_instances: Some(row.num_instances),
            ..Counters::default()
        },
        QueryLevel::Image => Counters::default(),
    }
}

/// Whether the requestor sent C-CANCEL-RQ, checked between responses without blocking
/// (PS3.7 §9.3.2.3). Anything else arriving mid-operation is a protocol error: we do not
/// negotiate asynchronous operations.
pub(super) fn cancel_requested<S: DimseStream>(
    assoc: &mut ServerAssociation<S>,
) -> Result<bool, DimseError> {
    // Over TLS this peeks at the raw socket: a record waiting there is, in practice, the
    // C-CANCEL (TLS 1.3 clients send no other records mid-association).
    let stream = assoc.inner_stream().tcp();
    stream.set_nonblocking(true)?;
    let mut probe = [0u8; 1];
    let peeked = stream.peek(&mut probe);
    stream.set_nonblocking(false)?;
    match peeked {
        Ok(0) => Err(DimseError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the requestor closed the connection",
        ))),
        Ok(_) => {
            let msg = read_message(assoc)?;
            match msg.command_field() {
                Some(command::C_CANCEL_RQ) => Ok(true),
                other => Err(DimseError::Protocol(format!(
                    "command {other:?} arrived while an operation was in progress"
                ))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e.into()),
    }
}
