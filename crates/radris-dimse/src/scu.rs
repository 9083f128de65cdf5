//! The DIMSE service class user: C-STORE sub-operations for C-MOVE/C-GET and the
//! `radris dicom echo|store|find|move|get` admin commands.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_ul::association::{ClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason};
use radris_dicom::part10::read_layout;
use radris_store::StoredInstance;

use crate::DimseError;
use crate::message::{
    Link, Message, command, decode_dataset, el_str, el_u16, el_ui, encode_dataset, get_u16,
    read_message, response, send_message, status,
};
use crate::scp::is_native;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ScuOptions {
    pub calling_ae: String,
    pub called_ae: String,
    pub address: String,
    pub timeout: Duration,
    pub max_pdu_length: u32,
}

impl ScuOptions {
    pub fn new(calling_ae: &str, called_ae: &str, address: &str) -> Self {
        ScuOptions {
            calling_ae: calling_ae.to_owned(),
            called_ae: called_ae.to_owned(),
            address: address.to_owned(),
            timeout: Duration::from_secs(60),
            max_pdu_length: 262_144,
        }
    }
}

/// Sub-operation counters of C-GET/C-MOVE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubopCounts {
    pub remaining: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

impl SubopCounts {
    pub fn elements(&self) -> Vec<DataElement<InMemDicomObject>> {
        vec![
            el_u16(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, self.remaining),
            el_u16(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, self.completed),
            el_u16(tags::NUMBER_OF_FAILED_SUBOPERATIONS, self.failed),
            el_u16(tags::NUMBER_OF_WARNING_SUBOPERATIONS, self.warning),
        ]
    }

    fn from_command(cmd: &InMemDicomObject) -> Self {
        let g = |t| get_u16(cmd, t).unwrap_or(0);
        SubopCounts {
            remaining: g(tags::NUMBER_OF_REMAINING_SUBOPERATIONS),
            completed: g(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
            failed: g(tags::NUMBER_OF_FAILED_SUBOPERATIONS),
            warning: g(tags::NUMBER_OF_WARNING_SUBOPERATIONS),
        }
    }
}

const NATIVE_TS: [&str; 2] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
];

fn establish(
    opts: &ScuOptions,
    builder: ClientAssociationOptions<'_>,
) -> Result<ClientAssociation<TcpStream>, DimseError> {
    let started = std::time::Instant::now();
    let peer = || format!("{}@{}", opts.called_ae, opts.address);
    let mut assoc = builder
        .calling_ae_title(opts.calling_ae.clone())
        .called_ae_title(opts.called_ae.clone())
        .max_pdu_length(opts.max_pdu_length)
        .read_timeout(opts.timeout)
        .write_timeout(opts.timeout)
        .connection_timeout(opts.timeout.min(Duration::from_secs(10)))
        .establish_with(&opts.address)
        .map_err(
            |source| match timed_out(&source, started.elapsed(), opts.timeout) {
                Some(waiting_for) => {
                    tracing::debug!(error = %source, "association request timed out");
                    DimseError::Timeout {
                        peer: peer(),
                        waiting_for,
                        after: opts.timeout,
                    }
                }
                // what dicom-ul says of a connection closed unanswered, or of bytes that are
                // not DICOM (it sniffs them for TLS, and an empty buffer passes)
                None if matches!(source, dicom_ul::association::Error::TlsNotSupported) => {
                    DimseError::NotDicom { peer: peer() }
                }
                None => DimseError::Association {
                    peer: peer(),
                    source: Box::new(source),
                },
            },
        )?;
    assoc.inner_stream().set_nodelay(true)?;
    Ok(assoc)
}

/// What an association attempt that failed after `elapsed` of a `limit` was waiting for, if
/// it failed because that time ran out: the connection, or the answer to the request. A peer
/// that accepts the connection and never answers makes dicom-ul report anything from "os
/// error 11" to "peer seems to be sending TLS", so a timed-out read is recognised by its
/// error kind, or by that report coming at the limit; a refusal or a close before the limit
/// is not a timeout, however late it comes.
fn timed_out(
    e: &dicom_ul::association::Error,
    elapsed: Duration,
    limit: Duration,
) -> Option<&'static str> {
    use dicom_ul::association::Error as E;
    let io_timeout = |mut cause: Option<&(dyn std::error::Error + 'static)>| {
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                return matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
            cause = c.source();
        }
        false
    };
    match e {
        E::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
            Some("connection")
        }
        E::Connect { .. } | E::ToAddress { .. } => None,
        E::TlsNotSupported if elapsed >= limit => Some("association request"),
        _ if io_timeout(std::error::Error::source(e)) => Some("association request"),
        _ => None,
    }
}

/// Open an association for storing instances of these (SOP class, transfer syntax) pairs. Each
/// pair gets its own presentation context, offering the stored syntax first and the native
/// little-endian syntaxes after it.
pub fn connect_for_store(
    opts: &ScuOptions,
    contexts: &[(String, String)],
) -> Result<ClientAssociation<TcpStream>, DimseError> {
    let mut builder = ClientAssociationOptions::new();
    for (class, ts) in contexts.iter().take(127) {
        let mut list = vec![ts.clone()];
        if is_native(ts) {
            list.extend(NATIVE_TS.iter().filter(|t| *t != ts).map(|t| t.to_string()));
        }
        builder = builder.with_presentation_context(class.clone(), list);
    }
    establish(opts, builder)
}

/// Send one instance as a C-STORE sub-operation and wait for its response. The stored bytes
/// go out untouched when the peer accepted the stored transfer syntax; a native data set is
/// re-encoded into another native syntax when that is all the peer accepted.
pub fn store_subop<L: Link>(
    link: &mut L,
    pcs: &[PresentationContextNegotiated],
    inst: &StoredInstance,
    dataset: &[u8],
    message_id: u16,
    originator: Option<(&str, u16)>,
    cancelled: &mut bool,
) -> Result<u16, DimseError> {
    let accepted = |pc: &&PresentationContextNegotiated| {
        pc.reason == PresentationContextResultReason::Acceptance
            && pc.abstract_syntax.trim_end_matches('\0') == inst.sop_class_uid
    };
    let exact = pcs
        .iter()
        .filter(accepted)
        .find(|pc| pc.transfer_syntax.trim_end_matches('\0') == inst.transfer_syntax);
    let (pc_id, bytes) = match exact {
        Some(pc) => (pc.id, std::borrow::Cow::Borrowed(dataset)),
        None => {
            let alt = pcs
                .iter()
                .filter(accepted)
                .find(|pc| {
                    is_native(pc.transfer_syntax.trim_end_matches('\0'))
                        && is_native(&inst.transfer_syntax)
                })
                .ok_or_else(|| {
                    DimseError::Protocol(format!(
                        "no accepted presentation context for {} in {}",
                        inst.sop_class_uid, inst.transfer_syntax
                    ))
                })?;
            let obj = decode_dataset(dataset, &inst.transfer_syntax)?;
            (
                alt.id,
                std::borrow::Cow::Owned(encode_dataset(
                    &obj,
                    alt.transfer_syntax.trim_end_matches('\0'),
                )?),
            )
        }
    };
    let mut els = vec![
        el_ui(tags::AFFECTED_SOP_CLASS_UID, &inst.sop_class_uid),
        el_u16(tags::COMMAND_FIELD, command::C_STORE_RQ),
        el_u16(tags::MESSAGE_ID, message_id),
        el_u16(tags::PRIORITY, 0),
        el_u16(tags::COMMAND_DATA_SET_TYPE, 0x0000),
        el_ui(tags::AFFECTED_SOP_INSTANCE_UID, &inst.sop_uid),
    ];
    if let Some((ae, id)) = originator {
        els.push(el_str(
            tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
            VR::AE,
            ae,
        ));
        els.push(el_u16(tags::MOVE_ORIGINATOR_MESSAGE_ID, id));
    }
    let cmd = crate::message::command_set(els);
    send_message(link, pc_id, &cmd, Some(&bytes))?;
    loop {
        let rsp = read_message(link)?;
        match rsp.command_field() {
            Some(command::C_STORE_RSP) => {
                return Ok(rsp.status().unwrap_or(status::PROCESSING_FAILURE));
            }
            // a C-CANCEL from the C-GET requestor: finish this sub-operation, then stop
            Some(command::C_CANCEL_RQ) => {
                *cancelled = true;
                continue;
            }
            other => {
                return Err(DimseError::Protocol(format!(
                    "expected C-STORE-RSP, got command {other:?}"
                )));
            }
        }
    }
}

/// C-ECHO.
pub fn echo(opts: &ScuOptions) -> Result<(), DimseError> {
    let mut assoc = establish(
        opts,
        ClientAssociationOptions::new().with_abstract_syntax(uids::VERIFICATION),
    )?;
    let pc = assoc
        .presentation_contexts()
        .first()
        .map(|p| p.id)
        .unwrap_or(1);
    let cmd = crate::message::command_set(vec![
        el_ui(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION),
        el_u16(tags::COMMAND_FIELD, command::C_ECHO_RQ),
        el_u16(tags::MESSAGE_ID, 1),
        el_u16(tags::COMMAND_DATA_SET_TYPE, crate::message::NO_DATASET),
    ]);
    send_message(&mut assoc, pc, &cmd, None)?;
    let rsp = read_message(&mut assoc)?;
    let _ = assoc.release();
    check_status("C-ECHO", &rsp)
}

fn check_status(operation: &'static str, rsp: &Message) -> Result<(), DimseError> {
    match rsp.status() {
        Some(status::SUCCESS) => Ok(()),
        s => Err(DimseError::Status {
            operation,
            status: s.unwrap_or(0xFFFF),
            comment: crate::message::get_str(&rsp.command, tags::ERROR_COMMENT),
        }),
    }
}

/// Outcome of storing one file.
#[derive(Debug)]
pub struct FileOutcome {
    pub path: PathBuf,
    pub result: Result<(), String>,
}

/// C-STORE Part-10 files over one association (their own transfer syntax, bytes preserved).
pub fn store_files(
    opts: &ScuOptions,
    files: &[PathBuf],
    mut on_done: impl FnMut(&FileOutcome),
) -> Result<Vec<FileOutcome>, DimseError> {
    struct Prepared {
        path: PathBuf,
        inst: StoredInstance,
        dataset: Vec<u8>,
    }
    let mut prepared = Vec::new();
    let mut outcomes = Vec::new();
    for path in files {
        let read = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let layout = read_layout(bytes.as_slice()).map_err(|e| e.to_string())?;
                let start = usize::try_from(layout.dataset_offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                Ok(Prepared {
                    path: path.clone(),
                    inst: StoredInstance {
                        tenant: String::new(),
                        study_uid: String::new(),
                        series_uid: String::new(),
                        sop_uid: layout.meta.media_storage_sop_instance_uid().to_owned(),
                        sop_class_uid: layout.meta.media_storage_sop_class_uid().to_owned(),
                        transfer_syntax: layout.meta.transfer_syntax().to_owned(),
                        blob_path: String::new(),
                        size_bytes: 0,
                        sha256: String::new(),
                    },
                    dataset: bytes[start..].to_vec(),
                })
            });
        match read {
            Ok(p) => prepared.push(p),
            Err(e) => {
                let o = FileOutcome {
                    path: path.clone(),
                    result: Err(e),
                };
                on_done(&o);
                outcomes.push(o);
            }
        }
    }
    if prepared.is_empty() {
        return Ok(outcomes);
    }
    let mut contexts: Vec<(String, String)> = prepared
        .iter()
        .map(|p| (p.inst.sop_class_uid.clone(), p.inst.transfer_syntax.clone()))
        .collect();
    contexts.sort();
    contexts.dedup();
    let mut assoc = connect_for_store(opts, &contexts)?;
    let pcs = assoc.presentation_contexts().to_vec();
    let mut cancelled = false;
    for (i, p) in prepared.into_iter().enumerate() {
        let result = match store_subop(
            &mut assoc,
            &pcs,
            &p.inst,
            &p.dataset,
            (i % 65535 + 1) as u16,
            None,
            &mut cancelled,
        ) {
            Ok(status::SUCCESS) => Ok(()),
            Ok(s) if (s & 0xF000) == 0xB000 => Ok(()),
            Ok(s) => Err(format!("status {s:#06X}")),
            Err(e @ DimseError::Protocol(_)) => Err(e.to_string()),
            Err(e) => return Err(e),
        };
        let o = FileOutcome {
            path: p.path,
            result,
        };
        on_done(&o);
        outcomes.push(o);
    }
    let _ = assoc.release();
    Ok(outcomes)
}

/// The model SOP classes by operation.
pub fn model_uid(study_root: bool, op: u16) -> &'static str {
    match (study_root, op) {
        (true, command::C_FIND_RQ) => uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
        (false, command::C_FIND_RQ) => uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
        (true, command::C_GET_RQ) => uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
        (false, command::C_GET_RQ) => uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
        (true, _) => uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
        (false, _) => uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
    }
}

/// Build an identifier from `Keyword=value` pairs (value may be empty: a return key).
pub fn identifier_from_keys(
    level: &str,
    keys: &[(String, String)],
) -> Result<InMemDicomObject, DimseError> {
    use dicom_core::dictionary::DataDictionary;
    let dict = dicom_dictionary_std::StandardDataDictionary;
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    for (k, v) in keys {
        let entry = dict
            .by_name(k)
            .ok_or_else(|| DimseError::Encoding(format!("unknown attribute keyword {k:?}")))?;
        let tag = entry.tag.inner();
        let vr = entry.vr.relaxed();
        let value = if v.is_empty() {
            PrimitiveValue::Empty
        } else {
            PrimitiveValue::from(v.as_str())
        };
        obj.put(DataElement::new(tag, vr, value));
    }
    Ok(obj)
}

/// Associate for one query/retrieve model; returns the association and its accepted context.
fn associate_model(
    opts: &ScuOptions,
    model: &str,
) -> Result<(ClientAssociation<TcpStream>, PresentationContextNegotiated), DimseError> {
    let assoc = establish(
        opts,
        ClientAssociationOptions::new().with_presentation_context(model, NATIVE_TS.to_vec()),
    )?;
    let pc = accepted_context(&assoc, model)?;
    Ok((assoc, pc))
}

fn accepted_context(
    assoc: &ClientAssociation<TcpStream>,
    model: &str,
) -> Result<PresentationContextNegotiated, DimseError> {
    assoc
        .presentation_contexts()
        .iter()
        .find(|p| {
            p.reason == PresentationContextResultReason::Acceptance
                && p.abstract_syntax.trim_end_matches('\0') == model
        })
        .cloned()
        .ok_or_else(|| DimseError::Protocol(format!("the peer refused the model {model}")))
}

/// Send a C-FIND/C-GET/C-MOVE request (message ID 1) with its identifier.
fn send_request(
    assoc: &mut ClientAssociation<TcpStream>,
    pc: &PresentationContextNegotiated,
    model: &str,
    field: u16,
    extra: Vec<DataElement<InMemDicomObject>>,
    identifier: &InMemDicomObject,
) -> Result<(), DimseError> {
    let mut els = vec![
        el_ui(tags::AFFECTED_SOP_CLASS_UID, model),
        el_u16(tags::COMMAND_FIELD, field),
        el_u16(tags::MESSAGE_ID, 1),
        el_u16(tags::PRIORITY, 0),
        el_u16(tags::COMMAND_DATA_SET_TYPE, 0),
    ];
    els.extend(extra);
    let cmd = crate::message::command_set(els);
    let data = encode_dataset(identifier, &pc.transfer_syntax)?;
    send_message(assoc, pc.id, &cmd, Some(&data))
}

/// C-FIND: all matches.
pub fn find(
    opts: &ScuOptions,
    study_root: bool,
    identifier: &InMemDicomObject,
) -> Result<Vec<InMemDicomObject>, DimseError> {
    let model = model_uid(study_root, command::C_FIND_RQ);
    let (mut assoc, pc) = associate_model(opts, model)?;
    send_request(
        &mut assoc,
        &pc,
        model,
        command::C_FIND_RQ,
        vec![],
        identifier,
    )?;
    let mut out = Vec::new();
    loop {
        let rsp = read_message(&mut assoc)?;
        match rsp.status() {
            Some(status::PENDING) | Some(0xFF01) => {
                if let Some(d) = &rsp.dataset {
                    out.push(decode_dataset(d, &pc.transfer_syntax)?);
                }
            }
            _ => {
                let _ = assoc.release();
                check_status("C-FIND", &rsp)?;
                return Ok(out);
            }
        }
    }
}

/// C-MOVE to `destination`: final sub-operation counts.
pub fn move_to(
    opts: &ScuOptions,
    study_root: bool,
    identifier: &InMemDicomObject,
    destination: &str,
) -> Result<SubopCounts, DimseError> {
    let model = model_uid(study_root, command::C_MOVE_RQ);
    let (mut assoc, pc) = associate_model(opts, model)?;
    let dest = vec![el_str(tags::MOVE_DESTINATION, VR::AE, destination)];
    send_request(&mut assoc, &pc, model, command::C_MOVE_RQ, dest, identifier)?;
    loop {
        let rsp = read_message(&mut assoc)?;
        if rsp.status() == Some(status::PENDING) {
            continue;
        }
        let _ = assoc.release();
        let counts = SubopCounts::from_command(&rsp.command);
        return match rsp.status() {
            Some(status::SUCCESS) | Some(status::WARNING_SUBOPS_FAILED) => Ok(counts),
            _ => check_status("C-MOVE", &rsp).map(|_| counts),
        };
    }
}

/// Storage SOP classes the admin C-GET offers to receive.
const GET_STORAGE_CLASSES: &[&str] = &[
    uids::CT_IMAGE_STORAGE,
    uids::ENHANCED_CT_IMAGE_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::ENHANCED_MR_IMAGE_STORAGE,
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::ULTRASOUND_IMAGE_STORAGE,
    uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
    uids::NUCLEAR_MEDICINE_IMAGE_STORAGE,
    uids::X_RAY_ANGIOGRAPHIC_IMAGE_STORAGE,
    uids::BASIC_TEXT_SR_STORAGE,
    uids::ENHANCED_SR_STORAGE,
    uids::COMPREHENSIVE_SR_STORAGE,
    uids::ENCAPSULATED_PDF_STORAGE,
    uids::RT_PLAN_STORAGE,
    uids::RT_STRUCTURE_SET_STORAGE,
    uids::RT_DOSE_STORAGE,
];

/// C-GET into `out_dir` (files named by SOP Instance UID): final counts.
pub fn get(
    opts: &ScuOptions,
    study_root: bool,
    identifier: &InMemDicomObject,
    out_dir: &Path,
) -> Result<SubopCounts, DimseError> {
    std::fs::create_dir_all(out_dir)?;
    let model = model_uid(study_root, command::C_GET_RQ);
    let mut builder =
        ClientAssociationOptions::new().with_presentation_context(model, NATIVE_TS.to_vec());
    for class in GET_STORAGE_CLASSES {
        builder = builder
            .with_presentation_context(
                *class,
                vec![
                    uids::EXPLICIT_VR_LITTLE_ENDIAN,
                    uids::IMPLICIT_VR_LITTLE_ENDIAN,
                    uids::JPEG_BASELINE8_BIT,
                    uids::JPEG_LOSSLESS_SV1,
                    uids::JPEG2000_LOSSLESS,
                    uids::RLE_LOSSLESS,
                ],
            )
            .with_role_selection(*class, false, true);
    }
    let mut assoc = establish(opts, builder)?;
    let pcs = assoc.presentation_contexts().to_vec();
    let pc = accepted_context(&assoc, model)?;
    send_request(
        &mut assoc,
        &pc,
        model,
        command::C_GET_RQ,
        vec![],
        identifier,
    )?;
    loop {
        let msg = read_message(&mut assoc)?;
        match msg.command_field() {
            Some(command::C_STORE_RQ) => {
                let sop = crate::message::get_str(&msg.command, tags::AFFECTED_SOP_INSTANCE_UID)
                    .unwrap_or_default();
                let class = crate::message::get_str(&msg.command, tags::AFFECTED_SOP_CLASS_UID)
                    .unwrap_or_default();
                let ts = pcs
                    .iter()
                    .find(|p| p.id == msg.pc_id)
                    .map(|p| p.transfer_syntax.trim_end_matches('\0').to_owned())
                    .unwrap_or_default();
                let code = match (radris_core::Uid::parse(&sop), &msg.dataset) {
                    (Ok(uid), Some(ds)) => {
                        let written = radris_dicom::part10::file_meta_bytes(
                            &class,
                            uid.as_str(),
                            &ts,
                            Some(&opts.called_ae),
                        )
                        .map_err(|e| std::io::Error::other(e.to_string()))
                        .and_then(|mut f| {
                            f.extend_from_slice(ds);
                            std::fs::write(out_dir.join(format!("{}.dcm", uid.as_str())), f)
                        });
                        if written.is_ok() {
                            status::SUCCESS
                        } else {
                            status::OUT_OF_RESOURCES
                        }
                    }
                    _ => status::CANNOT_UNDERSTAND,
                };
                let id = get_u16(&msg.command, tags::MESSAGE_ID).unwrap_or(0);
                let rsp = response(
                    command::C_STORE_RSP,
                    &class,
                    id,
                    code,
                    false,
                    vec![el_ui(tags::AFFECTED_SOP_INSTANCE_UID, &sop)],
                );
                send_message(&mut assoc, msg.pc_id, &rsp, None)?;
            }
            Some(command::C_GET_RSP) if msg.status() == Some(status::PENDING) => {}
            Some(command::C_GET_RSP) => {
                let _ = assoc.release();
                let counts = SubopCounts::from_command(&msg.command);
                return match msg.status() {
                    Some(status::SUCCESS) | Some(status::WARNING_SUBOPS_FAILED) => Ok(counts),
                    _ => check_status("C-GET", &msg).map(|_| counts),
                };
            }
            other => {
                return Err(DimseError::Protocol(format!(
                    "unexpected command {other:?} during C-GET"
                )));
            }
        }
    }
}

/// Send a Storage Commitment result (PS3.4 J.3.3) to the AE that asked for it, on a new
/// association that we open: the Storage Commitment Push Model context is proposed with an
/// SCP/SCU Role Selection item for the SCP role only (we, the requestor, act as the
/// commitment SCP; PS3.4 J.3.3 and PS3.7 D.3.3.4). A peer that ignores role selection still
/// gets the report: the default roles are answered without a role item, and the N-EVENT-REPORT
/// goes out on the accepted context either way. Returns the peer's N-EVENT-REPORT-RSP status.
pub fn report_storage_commitment(
    opts: &ScuOptions,
    event_type: u16,
    report: &InMemDicomObject,
) -> Result<u16, DimseError> {
    let class = uids::STORAGE_COMMITMENT_PUSH_MODEL;
    let builder = ClientAssociationOptions::new()
        .with_presentation_context(class, NATIVE_TS.to_vec())
        .with_role_selection(class, false, true);
    let mut assoc = establish(opts, builder)?;
    let pc = match accepted_context(&assoc, class) {
        Ok(pc) => pc,
        Err(e) => {
            let _ = assoc.release();
            return Err(e);
        }
    };
    let cmd = crate::message::event_report_request(
        class,
        uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
        1,
        event_type,
    );
    let data = encode_dataset(report, pc.transfer_syntax.trim_end_matches('\0'))?;
    send_message(&mut assoc, pc.id, &cmd, Some(&data))?;
    let rsp = read_message(&mut assoc)?;
    let _ = assoc.release();
    match rsp.command_field() {
        Some(command::N_EVENT_REPORT_RSP) => Ok(rsp.status().unwrap_or(status::PROCESSING_FAILURE)),
        other => Err(DimseError::Protocol(format!(
            "expected N-EVENT-REPORT-RSP, got command {other:?}"
        ))),
    }
}

/// Unused import guard for dicom_value in some cfgs.
#[allow(dead_code)]
fn _value_macro_in_scope() -> PrimitiveValue {
    dicom_value!(U16, [0])
}
