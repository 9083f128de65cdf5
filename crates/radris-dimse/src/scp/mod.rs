//! The DIMSE service class provider: one thread per association.
//!
//! Flow of a C-STORE: the command PDV names the SOP instance → the archive opens a staging
//! file → each data PDV is appended as it arrives → on the last fragment the archive parses,
//! fsyncs, indexes (group commit) and publishes → only then the success status goes out.
//!
//! Scheduled workflow ([`workflow`], [`commitment`]): Modality Worklist C-FIND and MPPS
//! N-CREATE/N-SET go to the RIS through [`ScpContext::with_workflow`]; Storage Commitment
//! N-ACTION is answered from the archive, its N-EVENT-REPORT sent on the same association or,
//! for AEs configured so, on a new one after the requesting association ends.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::server::{AccessControl, Negotiation, ServerAssociationOptions};
use dicom_ul::association::{Association, CloseSocket, ServerAssociation};
use dicom_ul::pdu::RequestorRoles;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJServiceUserReason, PDataValueType,
    Pdu, PresentationContextResultReason, UserIdentity,
};
use radris_core::audit::{Audit, AuditRecord, NoAudit, Outcome};
use radris_core::config::{AeDirectory, DimseLimits};
use radris_core::{AeTitle, TenantId};
use radris_dicom::query::{FindQuery, QueryLevel};
use radris_dicom::worklist::ModalityWorkflow;
use radris_store::{Archive, Ingest, IngestHint, StoreError};

mod commitment;
mod query;
mod workflow;

use crate::DimseError;
use crate::message::{
    Link, NO_DATASET, command, decode_command, decode_dataset_within, el_str, el_ui, get_str,
    get_u16, response, send_message, status,
};

/// What the DIMSE service needs from the rest of the server.
pub struct ScpContext {
    pub archive: Archive,
    pub runtime: tokio::runtime::Handle,
    pub directory: Arc<AeDirectory>,
    pub limits: DimseLimits,
    /// Where associations, stores and queries are audited.
    pub audit: Audit,
    /// The RIS behind Modality Worklist and MPPS; without it those SOP classes are refused.
    pub workflow: Option<Arc<dyn ModalityWorkflow>>,
    active: AtomicUsize,
}

impl ScpContext {
    pub fn new(
        archive: Archive,
        runtime: tokio::runtime::Handle,
        directory: AeDirectory,
        limits: DimseLimits,
    ) -> Self {
        ScpContext {
            archive,
            runtime,
            directory: Arc::new(directory),
            limits,
            audit: Arc::new(NoAudit),
            workflow: None,
            active: AtomicUsize::new(0),
        }
    }

    /// Audit into `audit` (the default audits nothing).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = audit;
        self
    }

    /// Serve Modality Worklist C-FIND and MPPS N-CREATE/N-SET from `workflow` (the RIS).
    pub fn with_workflow(mut self, workflow: Arc<dyn ModalityWorkflow>) -> Self {
        self.workflow = Some(workflow);
        self
    }

    /// Associations being served now.
    pub fn active_associations(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// A running DIMSE listener.
pub struct DimseServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept_thread: Option<std::thread::JoinHandle<()>>,
    ctx: Arc<ScpContext>,
}

impl DimseServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting; wait (up to `grace`) for associations in progress to finish, so that a
    /// store in flight completes and is acknowledged.
    pub fn shutdown(mut self, grace: std::time::Duration) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the blocking accept
        let _ = TcpStream::connect(self.local_addr);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + grace;
        while self.ctx.active_associations() > 0 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Start serving plain DICOM on a bound listener.
pub fn start(listener: TcpListener, ctx: Arc<ScpContext>) -> std::io::Result<DimseServer> {
    start_listener(listener, ctx, None)
}

/// Start serving DICOM over TLS (PS3.15 Annex B, the "secure transport connection profile")
/// on a bound listener, conventionally port 2762. The handshake runs on the association's own
/// thread under the ARTIM timeout, so a client that stalls mid-handshake holds one slot for
/// at most that long. With a client CA in `tls`, only clients with a certificate it signed
/// get past the handshake; the calling AE title is still checked against the tenants after it.
pub fn start_tls(
    listener: TcpListener,
    ctx: Arc<ScpContext>,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<DimseServer> {
    start_listener(listener, ctx, Some(tls))
}

fn start_listener(
    listener: TcpListener,
    ctx: Arc<ScpContext>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<DimseServer> {
    let local_addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let ctx2 = ctx.clone();
    let name = if tls.is_some() {
        "dimse-tls-accept"
    } else {
        "dimse-accept"
    };
    let accept_thread = std::thread::Builder::new().name(name.into()).spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            if ctx2.active.load(Ordering::SeqCst) >= ctx2.limits.max_associations {
                tracing::warn!(%peer, limit = ctx2.limits.max_associations, "too many associations; connection refused");
                metrics::counter!("radris_dimse_associations_refused_total", "reason" => "limit").increment(1);
                if tls.is_none() {
                    refuse_busy(stream);
                }
                continue;
            }
            ctx2.active.fetch_add(1, Ordering::SeqCst);
            let ctx3 = ctx2.clone();
            let tls = tls.clone();
            let spawned = std::thread::Builder::new().name("dimse-assoc".into()).spawn(move || {
                let _guard = ActiveGuard(&ctx3.active);
                serve_connection(stream, &ctx3, &peer, tls);
            });
            if let Err(e) = spawned {
                ctx2.active.fetch_sub(1, Ordering::SeqCst);
                tracing::error!(error = %e, "could not start an association thread");
            }
        }
    })?;
    Ok(DimseServer {
        local_addr,
        stop,
        accept_thread: Some(accept_thread),
        ctx,
    })
}

/// Answer a connection over the association limit with A-ASSOCIATE-RJ (rejected-transient,
/// service-provider, local-limit-exceeded: PS3.8 9.3.4) instead of a bare close, without
/// waiting on it.
fn refuse_busy(stream: TcpStream) {
    answer_and_close(stream, &[0x03, 0x00, 0, 0, 0, 4, 0x00, 0x02, 0x03, 0x02]);
}

/// Send one last PDU (or none) and close, without waiting on the peer: what the requestor
/// already sent is read first (so the close is a FIN, not a reset that could discard the
/// answer), the answer written, the socket shut.
fn answer_and_close(mut stream: TcpStream, answer: &[u8]) {
    use std::io::{Read, Write};
    if stream.set_nonblocking(true).is_ok() {
        // what a refused first message left (up to MAX_FIRST_MESSAGE) or a few PDUs
        let mut sink = [0u8; 16 * 1024];
        for _ in 0..(MAX_FIRST_MESSAGE / sink.len() + 1) {
            if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
    let _ = stream.set_nonblocking(false);
    if !answer.is_empty() {
        let _ = stream.write_all(answer);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// The byte streams an association runs on: plain TCP or TLS over TCP.
pub trait DimseStream: std::io::Read + std::io::Write + CloseSocket + Send {
    /// The TCP socket underneath (timeouts, non-blocking peeks).
    fn tcp(&self) -> &TcpStream;
}

impl DimseStream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl DimseStream for dicom_ul::association::server::TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

struct ActiveGuard<'a>(&'a AtomicUsize);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Association acceptance: the called AE must be ours, the calling AE must map to a tenant.
struct AeAccess {
    directory: Arc<AeDirectory>,
    audit: Audit,
    peer: String,
}

impl AccessControl for AeAccess {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            tracing::warn!(
                called = called_ae_title.trim(),
                calling = calling_ae_title.trim(),
                "association rejected: called AE title is not ours"
            );
            metrics::counter!("radris_dimse_associations_rejected_total", "reason" => "called_ae")
                .increment(1);
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        let known = AeTitle::parse(calling_ae_title)
            .ok()
            .and_then(|ae| self.directory.tenant_of(&ae));
        if known.is_none() {
            self.audit.record(AuditRecord {
                tenant: "-".into(),
                actor: format!("ae:{}", calling_ae_title.trim()),
                action: "dimse.associate".into(),
                outcome: Outcome::Denied,
                resource: format!("called AE {}", called_ae_title.trim()),
                detail: "calling AE title not allowed for any tenant".into(),
                source: self.peer.clone(),
            });
            tracing::warn!(
                calling = calling_ae_title.trim(),
                "association rejected: calling AE title not allowed for any tenant"
            );
            metrics::counter!("radris_dimse_associations_rejected_total", "reason" => "calling_ae")
                .increment(1);
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

/// SCP/SCU role selection: accept what the requestor proposes (C-GET needs the SCU to act as
/// storage SCP on the same association).
struct AcceptRoles;

impl Negotiation for AcceptRoles {
    fn negotiate_roles(
        &self,
        _sop_class_uid: &str,
        scu_role: bool,
        scp_role: bool,
    ) -> Option<RequestorRoles> {
        Some(RequestorRoles {
            scu: scu_role,
            scp: scp_role,
        })
    }
}

fn serve_connection(
    stream: TcpStream,
    ctx: &ScpContext,
    peer: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(%peer, error = %e, "could not set TCP_NODELAY");
    }
    let options = ServerAssociationOptions::new()
        .ae_access_control(AeAccess {
            directory: ctx.directory.clone(),
            audit: ctx.audit.clone(),
            peer: peer.to_owned(),
        })
        .with_negotiation(AcceptRoles)
        .ae_title(ctx.directory.local_ae.as_str().to_owned())
        .promiscuous(true)
        .max_pdu_length(ctx.limits.max_pdu_length)
        .read_timeout(ctx.limits.artim_timeout())
        .write_timeout(ctx.limits.idle_timeout());
    // ARTIM (PS3.8 §9.1.5) is enforced here, before dicom-ul reads: it must not block on a
    // half-sent PDU, and with TLS support compiled in it spins on a connection that closes or
    // times out before a complete first message (its TLS sniffing loops on end-of-file).
    let first = match await_first_message(&stream, ctx.limits.artim_timeout(), tls.is_some()) {
        Ok(first) => first,
        Err(why) => {
            tracing::info!(%peer, reason = why, "connection closed before an association request");
            metrics::counter!("radris_dimse_associations_failed_total").increment(1);
            if why == FIRST_MESSAGE_TOO_LARGE && tls.is_none() {
                // rejected-permanent, service-provider (ACSE), no reason given
                answer_and_close(stream, &[0x03, 0x00, 0, 0, 0, 4, 0x00, 0x01, 0x02, 0x01]);
            } else {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            return;
        }
    };
    // In plain TCP the first PDU is screened here: dicom-ul's acceptor closes the socket
    // without a word on a malformed request, and answers A-RELEASE-RQ with A-RELEASE-RP.
    if let Some(refusal) = tls.is_none().then(|| screen_first_pdu(&first)).flatten() {
        refuse_first_pdu(stream, peer, &refusal);
        return;
    }
    match tls {
        None => match options.establish(stream) {
            Ok(assoc) => serve_association(assoc, ctx, peer, "tcp"),
            Err(e) => not_established(peer, &e),
        },
        Some(config) => match options.tls_config(config).establish_tls(stream) {
            Ok(assoc) => serve_association(assoc, ctx, peer, "tls"),
            Err(e) => not_established(peer, &e),
        },
    }
}

/// Largest first message we wait for: an A-ASSOCIATE-RQ or a TLS record (ClientHello). 128
/// presentation contexts of 16 transfer syntaxes each make about 140 KiB.
const MAX_FIRST_MESSAGE: usize = 256 << 10;
const FIRST_MESSAGE_TOO_LARGE: &str = "first message too large";

/// The whole first message must fit the socket's receive buffer to be peeked at (the kernel
/// starts it at 128 KiB): make room for a larger one.
fn make_room(stream: &TcpStream, needed: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let size = libc::c_int::try_from(needed.saturating_mul(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: a valid descriptor for the duration of the call, and a c_int option value
        // of the size given.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                std::ptr::from_ref(&size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not enlarge the receive buffer");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (stream, needed);
}

/// Wait, without consuming anything, until the socket holds one complete first message: an
/// A-ASSOCIATE-RQ PDU (6-byte header with a 32-bit length) or, for TLS, one TLS record
/// (5-byte header with a 16-bit length), and return a copy of it. Fails when `deadline`
/// passes, the peer closes, or the announced length is absurd.
fn await_first_message(
    stream: &TcpStream,
    deadline: std::time::Duration,
    tls: bool,
) -> Result<Vec<u8>, &'static str> {
    let end = Instant::now() + deadline;
    let header = if tls { 5 } else { 6 };
    let mut buf = vec![0u8; header];
    let mut seen = 0;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("ARTIM timer expired");
        }
        stream
            .set_read_timeout(Some(left.min(std::time::Duration::from_millis(250))))
            .map_err(|_| "socket error")?;
        let n = match stream.peek(&mut buf) {
            Ok(0) => return Err("peer closed the connection"),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return Err("socket error"),
        };
        if n >= header {
            let body = if tls {
                usize::from(u16::from_be_bytes([buf[3], buf[4]]))
            } else {
                u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]) as usize
            };
            let needed = header.saturating_add(body);
            if needed > MAX_FIRST_MESSAGE {
                return Err(FIRST_MESSAGE_TOO_LARGE);
            }
            if n >= needed {
                // TLS: the record must hold a whole ClientHello (type 1); one spread over
                // several records would make dicom-ul's acceptor wait for more, and spin
                // if the peer then closes. Real clients send it in one record.
                if tls {
                    let whole_hello = buf[0] == 0x16
                        && buf.get(5) == Some(&1)
                        && buf.get(6..9).is_some_and(|l| {
                            let len = (usize::from(l[0]) << 16)
                                | (usize::from(l[1]) << 8)
                                | usize::from(l[2]);
                            len + 4 <= body
                        });
                    if !whole_hello {
                        return Err("not a TLS ClientHello in one record");
                    }
                }
                buf.truncate(needed);
                return Ok(buf);
            }
            if buf.len() < needed {
                if needed > 64 << 10 {
                    make_room(stream, needed);
                }
                buf.resize(needed, 0);
                continue;
            }
        }
        if n == seen {
            // part of the message is here, the rest is not: do not spin on peek
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        seen = n;
    }
}

/// Why the first PDU of a connection is refused before dicom-ul sees it.
#[derive(Debug, PartialEq, Eq)]
struct FirstPduRefusal {
    /// A-ABORT reason (PS3.8 9.3.8, source service-provider), or `None` to close without a
    /// word (the requestor itself sent A-ABORT: PS3.8 9.2 AA-2).
    abort_reason: Option<u8>,
    why: String,
}

/// PS3.8 9.2, state Sta2: a connection may only open with a well-formed A-ASSOCIATE-RQ. Any
/// other PDU is answered with A-ABORT (AA-1): reason 1 for an unknown PDU type, 2 for a PDU
/// that has no place here (A-RELEASE-RQ, P-DATA-TF, an A-ASSOCIATE-AC from the requestor), 6
/// for a request that does not parse (missing application context, unknown item, a length
/// that lies). An A-ABORT is answered by closing the connection (AA-2).
fn screen_first_pdu(pdu: &[u8]) -> Option<FirstPduRefusal> {
    let refuse = |abort_reason, why: String| Some(FirstPduRefusal { abort_reason, why });
    match pdu.first() {
        Some(0x01) => {}
        Some(0x07) => return refuse(None, "A-ABORT before any association".into()),
        Some(&t @ 0x02..=0x06) => {
            return refuse(Some(2), format!("{} before any association", pdu_name(t)));
        }
        Some(t) => return refuse(Some(1), format!("unrecognized PDU type 0x{t:02X}")),
        None => return refuse(Some(6), "empty PDU".into()),
    }
    match dicom_ul::pdu::read_pdu(pdu, dicom_ul::pdu::MAXIMUM_PDU_SIZE, false) {
        Ok(Some(_)) => None,
        Ok(None) => refuse(
            Some(6),
            "A-ASSOCIATE-RQ shorter than its header says".into(),
        ),
        Err(e) => refuse(Some(6), format!("malformed A-ASSOCIATE-RQ: {e}")),
    }
}

fn pdu_name(pdu_type: u8) -> &'static str {
    match pdu_type {
        0x01 => "A-ASSOCIATE-RQ",
        0x02 => "A-ASSOCIATE-AC",
        0x03 => "A-ASSOCIATE-RJ",
        0x04 => "P-DATA-TF",
        0x05 => "A-RELEASE-RQ",
        0x06 => "A-RELEASE-RP",
        0x07 => "A-ABORT",
        _ => "unknown PDU",
    }
}

/// Answer a refused first PDU with A-ABORT (or nothing, after the requestor's own A-ABORT),
/// close, and log why.
fn refuse_first_pdu(stream: TcpStream, peer: &str, refusal: &FirstPduRefusal) {
    tracing::warn!(%peer, reason = %refusal.why, "connection aborted before an association");
    metrics::counter!("radris_dimse_associations_failed_total").increment(1);
    match refusal.abort_reason {
        Some(reason) => {
            answer_and_close(stream, &[0x07, 0x00, 0, 0, 0, 4, 0x00, 0x00, 0x02, reason])
        }
        None => answer_and_close(stream, &[]),
    }
}

/// What makes a negotiated request malformed (PS3.8 9.3.2): no presentation context at all,
/// an even context ID (only odd IDs 1–255 exist), the same ID twice, an abstract syntax longer
/// than a UID can be. dicom-ul accepts these; the association is aborted right after.
fn malformed_contexts(pcs: &[dicom_ul::pdu::PresentationContextNegotiated]) -> Option<String> {
    if pcs.is_empty() {
        return Some("no presentation context".into());
    }
    let mut seen = std::collections::HashSet::new();
    for pc in pcs {
        if pc.id % 2 == 0 {
            return Some(format!("presentation context ID {} is even", pc.id));
        }
        if !seen.insert(pc.id) {
            return Some(format!("presentation context ID {} proposed twice", pc.id));
        }
        if pc.abstract_syntax.trim_end_matches(['\0', ' ']).len() > 64 {
            return Some(format!(
                "abstract syntax of {} characters in context {}",
                pc.abstract_syntax.len(),
                pc.id
            ));
        }
    }
    None
}

fn not_established(peer: &str, e: &dicom_ul::association::Error) {
    tracing::warn!(%peer, error = %e, "association not established");
    metrics::counter!("radris_dimse_associations_failed_total").increment(1);
}

fn serve_association<S: DimseStream>(
    mut assoc: ServerAssociation<S>,
    ctx: &ScpContext,
    peer: &str,
    transport: &'static str,
) {
    let calling = assoc.peer_ae_title().trim().to_owned();
    let Some((ae, tenant)) = AeTitle::parse(&calling)
        .ok()
        .and_then(|ae| ctx.directory.tenant_of(&ae).map(|t| (ae, t)))
    else {
        let _ = assoc.abort();
        return;
    };
    if let Some(why) = malformed_contexts(assoc.presentation_contexts()) {
        tracing::warn!(%peer, %calling, reason = %why, "association aborted: malformed A-ASSOCIATE-RQ");
        metrics::counter!("radris_dimse_associations_failed_total").increment(1);
        let _ = assoc.abort();
        return;
    }
    if let Err(e) = assoc
        .inner_stream()
        .tcp()
        .set_read_timeout(Some(ctx.limits.idle_timeout()))
    {
        tracing::warn!(%peer, error = %e, "could not set the idle timeout");
    }
    metrics::counter!("radris_dimse_associations_total").increment(1);
    let span =
        tracing::info_span!("association", calling = %ae, tenant = %tenant, %peer, transport);
    let _enter = span.enter();
    tracing::debug!("association established");
    let mut session = Session {
        ctx,
        tenant,
        calling: ae,
        peer: peer.to_owned(),
        state: State::Idle,
        next_message_id: 1,
        stored: BTreeMap::new(),
        refused: 0,
        commitment: Default::default(),
    };
    let ended = session.run(&mut assoc);
    session.audit_stores();
    // Storage Commitment results owed on a new association go out now that the requestor
    // has released (or the association broke)
    session.deliver_commitment_reports();
    match ended {
        Ok(()) | Err(DimseError::Released) => tracing::debug!("association released"),
        Err(DimseError::Aborted) => tracing::info!("association aborted by the peer"),
        Err(e) => {
            tracing::warn!(error = %e, "association ended with an error; aborting");
            let _ = assoc.send(&Pdu::AbortRQ {
                source: AbortRQSource::ServiceProvider(
                    AbortRQServiceProviderReason::ReasonNotSpecified,
                ),
            });
        }
    }
}

enum State {
    Idle,
    /// Collecting a command set's fragments.
    Command {
        pc_id: u8,
        bytes: Vec<u8>,
    },
    /// Receiving a C-STORE data set into the archive.
    Store(Box<StoreInProgress>),
    /// Receiving the identifier of C-FIND/C-GET/C-MOVE, the data set of N-CREATE/N-SET/
    /// N-ACTION, or a data set we only swallow (an unsupported request, a response).
    Identifier {
        pc_id: u8,
        command: InMemDicomObject,
        bytes: Vec<u8>,
    },
}

struct StoreInProgress {
    pc_id: u8,
    message_id: u16,
    sop_class: String,
    sop_instance: String,
    ingest: Option<Ingest>,
    error: Option<(u16, String)>,
    received: u64,
    started: Instant,
}

/// Largest identifier (C-FIND/GET/MOVE data set) we accept.
pub(crate) const MAX_IDENTIFIER_BYTES: usize = 1 << 20;

/// Largest N-service data set we accept: a Storage Commitment request for a study of tens of
/// thousands of instances is a few MiB.
pub(crate) const MAX_N_DATASET_BYTES: usize = 32 << 20;

struct Session<'a> {
    ctx: &'a ScpContext,
    tenant: TenantId,
    calling: AeTitle,
    peer: String,
    state: State,
    next_message_id: u16,
    /// Instances stored on this association per study, for the audit record at its end.
    stored: BTreeMap<String, u64>,
    refused: u64,
    /// Storage Commitment results sent and not yet confirmed, or owed on a new association.
    commitment: commitment::Deliveries,
}

fn store_error_status(e: &StoreError) -> u16 {
    match e {
        StoreError::Unparseable(_) => status::CANNOT_UNDERSTAND,
        StoreError::Mismatch(_) | StoreError::Duplicate(_) => status::DATASET_MISMATCH,
        StoreError::TooLarge { .. } => status::OUT_OF_RESOURCES,
        _ => status::OUT_OF_RESOURCES,
    }
}

/// Presentation context `pc_id`, if it was accepted.
fn accepted_context<S: DimseStream>(
    assoc: &ServerAssociation<S>,
    pc_id: u8,
) -> Option<&dicom_ul::pdu::PresentationContextNegotiated> {
    assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == pc_id && pc.reason == PresentationContextResultReason::Acceptance)
}

/// The abstract syntax (SOP class) negotiated for presentation context `pc_id`.
fn abstract_syntax_of<S: DimseStream>(assoc: &ServerAssociation<S>, pc_id: u8) -> Option<String> {
    accepted_context(assoc, pc_id)
        .map(|pc| pc.abstract_syntax.trim_end_matches(['\0', ' ']).to_owned())
}

fn transfer_syntax_of<S: DimseStream>(assoc: &ServerAssociation<S>, pc_id: u8) -> Option<String> {
    accepted_context(assoc, pc_id)
        .map(|pc| pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_owned())
}

impl Session<'_> {
    fn run<S: DimseStream>(&mut self, assoc: &mut ServerAssociation<S>) -> Result<(), DimseError> {
        loop {
            let pdu = assoc.receive_pdu()?;
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        self.on_pdv(
                            assoc,
                            pdv.presentation_context_id,
                            pdv.value_type,
                            pdv.is_last,
                            pdv.data,
                        )?;
                    }
                }
                Pdu::ReleaseRQ => {
                    if !matches!(self.state, State::Idle) {
                        tracing::warn!(
                            "release requested in the middle of a message; the partial message is dropped"
                        );
                    }
                    assoc.send_pdu(&Pdu::ReleaseRP)?;
                    return Ok(());
                }
                Pdu::AbortRQ { .. } => return Err(DimseError::Aborted),
                other => {
                    return Err(DimseError::Protocol(format!(
                        "unexpected {} during association",
                        crate::message::pdu_name(&other)
                    )));
                }
            }
        }
    }

    fn on_pdv<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        kind: PDataValueType,
        is_last: bool,
        data: Vec<u8>,
    ) -> Result<(), DimseError> {
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, kind) {
            (State::Idle, PDataValueType::Command) => {
                if transfer_syntax_of(assoc, pc_id).is_none() {
                    return Err(DimseError::Protocol(format!(
                        "P-DATA on presentation context {pc_id}, which was not accepted"
                    )));
                }
                if is_last {
                    self.on_command(assoc, pc_id, decode_command(&data)?)?;
                } else {
                    self.state = State::Command { pc_id, bytes: data };
                }
            }
            (
                State::Command {
                    pc_id: p,
                    mut bytes,
                },
                PDataValueType::Command,
            ) if p == pc_id => {
                bytes.extend_from_slice(&data);
                if bytes.len() > MAX_IDENTIFIER_BYTES {
                    return Err(DimseError::Protocol("command set larger than 1 MiB".into()));
                }
                if is_last {
                    self.on_command(assoc, pc_id, decode_command(&bytes)?)?;
                } else {
                    self.state = State::Command { pc_id, bytes };
                }
            }
            (State::Store(mut st), PDataValueType::Data) if st.pc_id == pc_id => {
                st.received += data.len() as u64;
                if st.received > self.ctx.limits.max_instance_bytes && st.error.is_none() {
                    st.ingest = None; // drops the staging file
                    st.error = Some((
                        status::OUT_OF_RESOURCES,
                        format!(
                            "instance larger than {} bytes",
                            self.ctx.limits.max_instance_bytes
                        ),
                    ));
                }
                if let Some(ingest) = st.ingest.as_mut()
                    && let Err(e) = ingest.write_owned(data)
                {
                    tracing::error!(error = %e, "could not write to staging");
                    st.error = Some((store_error_status(&e), e.to_string()));
                    st.ingest = None;
                }
                if is_last {
                    self.finish_store(assoc, *st)?;
                } else {
                    self.state = State::Store(st);
                }
            }
            (
                State::Identifier {
                    pc_id: p,
                    command,
                    mut bytes,
                },
                PDataValueType::Data,
            ) if p == pc_id => {
                bytes.extend_from_slice(&data);
                let limit = match get_u16(&command, tags::COMMAND_FIELD) {
                    Some(command::N_ACTION_RQ | command::N_CREATE_RQ | command::N_SET_RQ) => {
                        MAX_N_DATASET_BYTES
                    }
                    _ => MAX_IDENTIFIER_BYTES,
                };
                if bytes.len() > limit {
                    return Err(DimseError::Protocol(format!(
                        "data set larger than {limit} bytes"
                    )));
                }
                if is_last {
                    self.on_identifier(assoc, pc_id, command, bytes)?;
                } else {
                    self.state = State::Identifier {
                        pc_id,
                        command,
                        bytes,
                    };
                }
            }
            (_, kind) => {
                return Err(DimseError::Protocol(format!(
                    "unexpected {} fragment on presentation context {pc_id}",
                    if kind == PDataValueType::Command {
                        "command"
                    } else {
                        "data"
                    }
                )));
            }
        }
        Ok(())
    }

    fn on_command<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        cmd: InMemDicomObject,
    ) -> Result<(), DimseError> {
        let field = get_u16(&cmd, tags::COMMAND_FIELD)
            .ok_or_else(|| DimseError::Protocol("command without Command Field".into()))?;
        let has_data = get_u16(&cmd, tags::COMMAND_DATA_SET_TYPE).is_some_and(|t| t != NO_DATASET);
        let message_id = get_u16(&cmd, tags::MESSAGE_ID).unwrap_or(0);
        let sop_class = get_str(&cmd, tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
        match field {
            command::C_ECHO_RQ => {
                metrics::counter!("radris_dimse_requests_total", "op" => "echo").increment(1);
                let rsp = response(
                    command::C_ECHO_RSP,
                    &sop_class,
                    message_id,
                    status::SUCCESS,
                    false,
                    vec![],
                );
                send_message(assoc, pc_id, &rsp, None)
            }
            command::C_STORE_RQ if has_data => {
                let sop_instance =
                    get_str(&cmd, tags::AFFECTED_SOP_INSTANCE_UID).unwrap_or_default();
                let ts = transfer_syntax_of(assoc, pc_id).unwrap_or_default();
                let mut st = StoreInProgress {
                    pc_id,
                    message_id,
                    sop_class: sop_class.clone(),
                    sop_instance: sop_instance.clone(),
                    ingest: None,
                    error: None,
                    received: 0,
                    started: Instant::now(),
                };
                let context = abstract_syntax_of(assoc, pc_id).unwrap_or_default();
                if let Err(e) = radris_core::Uid::parse(&sop_instance)
                    .and_then(|_| radris_core::Uid::parse(&sop_class))
                {
                    st.error = Some((status::CANNOT_UNDERSTAND, e.to_string()));
                } else if context != sop_class {
                    // a message travels on the context negotiated for its SOP class (PS3.7
                    // 9.1.1.1, PS3.8 7.1.1.13): the context's transfer syntax is agreed for it
                    st.error = Some((
                        status::SOP_CLASS_NOT_SUPPORTED,
                        format!(
                            "SOP class {sop_class} sent on the presentation context of {context}"
                        ),
                    ));
                } else {
                    let hint = IngestHint {
                        sop_class_uid: sop_class,
                        sop_instance_uid: sop_instance,
                        transfer_syntax: ts,
                        strict_uids: true,
                        expected_study: None,
                    };
                    match self.ctx.archive.begin_ingest(
                        self.tenant.clone(),
                        Some(self.calling.clone()),
                        hint,
                    ) {
                        Ok(i) => st.ingest = Some(i),
                        Err(e) => st.error = Some((store_error_status(&e), e.to_string())),
                    }
                }
                self.state = State::Store(Box::new(st));
                Ok(())
            }
            command::C_FIND_RQ | command::C_GET_RQ | command::C_MOVE_RQ if has_data => {
                self.state = State::Identifier {
                    pc_id,
                    command: cmd,
                    bytes: Vec::new(),
                };
                Ok(())
            }
            command::C_CANCEL_RQ => Ok(()), // nothing in progress to cancel between messages
            command::N_CREATE_RQ | command::N_SET_RQ | command::N_ACTION_RQ if has_data => {
                self.state = State::Identifier {
                    pc_id,
                    command: cmd,
                    bytes: Vec::new(),
                };
                Ok(())
            }
            command::N_CREATE_RQ | command::N_SET_RQ | command::N_ACTION_RQ => {
                self.on_normalized(assoc, pc_id, &cmd, None)
            }
            // a response to a request we sent (N-EVENT-REPORT-RSP): handled, never answered
            response if command::is_response(response) => {
                if has_data {
                    self.state = State::Identifier {
                        pc_id,
                        command: cmd,
                        bytes: Vec::new(),
                    };
                } else {
                    self.on_response(&cmd);
                }
                Ok(())
            }
            other => {
                tracing::warn!(
                    command = format!("{other:#06X}"),
                    "unsupported DIMSE command"
                );
                let rsp_field = other | 0x8000;
                let rsp = response(
                    rsp_field,
                    &sop_class,
                    message_id,
                    status::UNRECOGNIZED_OPERATION,
                    false,
                    vec![el_str(
                        tags::ERROR_COMMENT,
                        VR::LO,
                        "operation not supported",
                    )],
                );
                if has_data {
                    // swallow the data set that follows, then answer
                    self.state = State::Identifier {
                        pc_id,
                        command: cmd,
                        bytes: Vec::new(),
                    };
                    return Ok(());
                }
                send_message(assoc, pc_id, &rsp, None)
            }
        }
    }

    fn finish_store<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        mut st: StoreInProgress,
    ) -> Result<(), DimseError> {
        metrics::histogram!("radris_ingest_phase_seconds", "phase" => "receive")
            .record(st.started.elapsed().as_secs_f64());
        let result = match (st.error.take(), st.ingest.take()) {
            (Some(err), _) => Err(err),
            (None, Some(ingest)) => match ingest.commit() {
                Ok(stored) => Ok(stored),
                Err(e) => Err((store_error_status(&e), e.to_string())),
            },
            (None, None) => Err((status::PROCESSING_FAILURE, "no ingest".into())),
        };
        let (code, comment) = match result {
            Ok(stored) => {
                *self.stored.entry(stored.study_uid.clone()).or_default() += 1;
                metrics::counter!("radris_dimse_store_total", "outcome" => if stored.newly_stored { "stored" } else { "duplicate_kept" }).increment(1);
                metrics::histogram!("radris_dimse_store_seconds")
                    .record(st.started.elapsed().as_secs_f64());
                metrics::counter!("radris_dimse_store_bytes_total").increment(st.received);
                (status::SUCCESS, None)
            }
            Err((code, comment)) => {
                tracing::warn!(sop_instance = %st.sop_instance, status = format!("{code:#06X}"), reason = %comment, "C-STORE refused");
                self.refused += 1;
                metrics::counter!("radris_dimse_store_total", "outcome" => "refused").increment(1);
                (code, Some(comment))
            }
        };
        let mut extra = vec![el_ui(tags::AFFECTED_SOP_INSTANCE_UID, &st.sop_instance)];
        if let Some(c) = comment {
            extra.push(el_str(
                tags::ERROR_COMMENT,
                VR::LO,
                &c.chars().take(64).collect::<String>(),
            ));
        }
        let rsp = response(
            command::C_STORE_RSP,
            &st.sop_class,
            st.message_id,
            code,
            false,
            extra,
        );
        send_message(assoc, st.pc_id, &rsp, None)
    }

    fn on_identifier<S: DimseStream>(
        &mut self,
        assoc: &mut ServerAssociation<S>,
        pc_id: u8,
        cmd: InMemDicomObject,
        bytes: Vec<u8>,
    ) -> Result<(), DimseError> {
        let field = get_u16(&cmd, tags::COMMAND_FIELD).unwrap_or(0);
        let message_id = get_u16(&cmd, tags::MESSAGE_ID).unwrap_or(0);
        let sop_class = get_str(&cmd, tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
        if command::is_response(field) {
            self.on_response(&cmd); // its data set is not needed
            return Ok(());
        }
        if matches!(
            field,
            command::N_CREATE_RQ | command::N_SET_RQ | command::N_ACTION_RQ
        ) {
            return self.on_normalized(assoc, pc_id, &cmd, Some(bytes));
        }
        if field == command::C_FIND_RQ
            && sop_class == uids::MODALITY_WORKLIST_INFORMATION_MODEL_FIND
        {
            return self.worklist_find(assoc, pc_id, message_id, &sop_class, &bytes);
        }
        let rsp_field = field | 0x8000;
        let fail = |assoc: &mut ServerAssociation<S>, code: u16, why: &str| {
            tracing::warn!(
                status = format!("{code:#06X}"),
                reason = why,
                "request refused"
            );
            let rsp = response(
                rsp_field,
                &sop_class,
                message_id,
                code,
                false,
                vec![el_str(
                    tags::ERROR_COMMENT,
                    VR::LO,
                    &why.chars().take(64).collect::<String>(),
                )],
            );
            send_message(assoc, pc_id, &rsp, None)
        };
        if !matches!(
            field,
            command::C_FIND_RQ | command::C_GET_RQ | command::C_MOVE_RQ
        ) {
            return fail(
                assoc,
                status::UNRECOGNIZED_OPERATION,
                "operation not supported",
            );
        }
        let model = QueryModel::of(field, &sop_class);
        let Some(model) = model else {
            return fail(
                assoc,
                status::SOP_CLASS_NOT_SUPPORTED,
                "SOP class not supported",
            );
        };
        let ts = transfer_syntax_of(assoc, pc_id).unwrap_or_default();
        let identifier = match decode_dataset_within(&bytes, &ts, MAX_IDENTIFIER_BYTES) {
            Ok(i) => i,
            Err(e) => return fail(assoc, status::CANNOT_UNDERSTAND, &e.to_string()),
        };
        let query = match FindQuery::from_identifier(&identifier) {
            Ok(q) => q,
            Err(e) => return fail(assoc, status::DATASET_MISMATCH, &e.to_string()),
        };
        if model == QueryModel::StudyRoot && query.level == QueryLevel::Patient {
            return fail(
                assoc,
                status::DATASET_MISMATCH,
                "PATIENT level is not part of the Study Root model",
            );
        }
        // a retrieve selects by unique keys only: an empty Study Instance UID is not "all"
        let query = if field == command::C_FIND_RQ {
            query
        } else {
            match query.retrieve_keys(model == QueryModel::PatientRoot) {
                Ok(q) => q,
                Err(e) => return fail(assoc, status::DATASET_MISMATCH, &e.to_string()),
            }
        };
        let started = Instant::now();
        let result = match field {
            command::C_FIND_RQ => self.find(assoc, pc_id, message_id, &sop_class, &ts, &query),
            command::C_GET_RQ => self.get(assoc, pc_id, message_id, &sop_class, &query),
            _ => {
                let dest = get_str(&cmd, tags::MOVE_DESTINATION).unwrap_or_default();
                self.move_to(assoc, pc_id, message_id, &sop_class, &query, &dest)
            }
        };
        let op = match field {
            command::C_FIND_RQ => "find",
            command::C_GET_RQ => "get",
            _ => "move",
        };
        metrics::counter!("radris_dimse_requests_total", "op" => op).increment(1);
        self.audit(
            &format!("dimse.c-{op}"),
            if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            format!("level {}", query.level.as_str()),
            describe_query(&query),
        );
        metrics::histogram!("radris_dimse_request_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// The query/retrieve information models we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryModel {
    PatientRoot,
    StudyRoot,
}

impl QueryModel {
    fn of(field: u16, sop_class: &str) -> Option<Self> {
        let (patient, study) = match field {
            command::C_FIND_RQ => (
                uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
                uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            ),
            command::C_GET_RQ => (
                uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
                uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
            ),
            _ => (
                uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
                uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
            ),
        };
        if sop_class == patient {
            Some(QueryModel::PatientRoot)
        } else if sop_class == study {
            Some(QueryModel::StudyRoot)
        } else {
            None
        }
    }
}

/// Whether a transfer syntax keeps pixel data native (so a data set can be re-encoded into
/// another native syntax without decoding pixels).
pub fn is_native(ts_uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(ts_uid)
        .is_some_and(|ts| !ts.is_encapsulated_pixel_data())
}

impl Session<'_> {
    fn audit(&self, action: &str, outcome: Outcome, resource: String, detail: String) {
        self.ctx.audit.record(AuditRecord {
            tenant: self.tenant.as_str().to_owned(),
            actor: format!("ae:{}", self.calling.as_str()),
            action: action.to_owned(),
            outcome,
            resource,
            detail,
            source: self.peer.clone(),
        });
    }

    /// One audit record per study received on this association (PS3.15 A.5.3.2 "DICOM
    /// Instances Transferred" is per study), plus one for refused instances.
    fn audit_stores(&mut self) {
        for (study, n) in std::mem::take(&mut self.stored) {
            self.audit(
                "dimse.c-store",
                Outcome::Success,
                format!("study {study}"),
                format!("instances={n}"),
            );
        }
        if self.refused > 0 {
            self.audit(
                "dimse.c-store",
                Outcome::Failure,
                "refused instances".into(),
                format!("instances={}", self.refused),
            );
        }
    }
}

/// The matching keys of a query, for the audit log (`Tag=value` of every non-universal key).
fn describe_query(q: &FindQuery) -> String {
    q.keys
        .iter()
        .filter(|k| !k.matcher.is_universal())
        .map(|k| format!("{}={:?}", k.tag, k.matcher))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::{AssociationRQ, Pdu, PresentationContextProposed, UserVariableItem};

    fn request() -> Vec<u8> {
        let rq = Pdu::AssociationRQ(AssociationRQ {
            protocol_version: 1,
            calling_ae_title: "SCU".into(),
            called_ae_title: "RADRIS".into(),
            application_context_name: "1.2.840.10008.3.1.1.1".into(),
            presentation_contexts: vec![PresentationContextProposed {
                id: 1,
                abstract_syntax: "1.2.840.10008.1.1".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            }],
            user_variables: vec![UserVariableItem::MaxLength(16384)],
        });
        let mut out = Vec::new();
        dicom_ul::pdu::write_pdu(&mut out, &rq).expect("encodes");
        out
    }

    fn reason(pdu: &[u8]) -> Option<Option<u8>> {
        screen_first_pdu(pdu).map(|r| r.abort_reason)
    }

    #[test]
    fn a_well_formed_request_passes() {
        assert_eq!(screen_first_pdu(&request()), None);
    }

    #[test]
    fn other_first_pdus_are_aborted_or_closed() {
        // A-RELEASE-RQ, P-DATA-TF: unexpected PDU
        assert_eq!(reason(&[5, 0, 0, 0, 0, 4, 0, 0, 0, 0]), Some(Some(2)));
        let pdata = [4, 0, 0, 0, 0, 8, 0, 0, 0, 4, 1, 3, 0, 0];
        assert_eq!(reason(&pdata), Some(Some(2)));
        // an A-ASSOCIATE-AC from the requestor: the request's body under type 2
        let mut ac = request();
        ac[0] = 2;
        assert_eq!(reason(&ac), Some(Some(2)));
        // unknown PDU type
        assert_eq!(reason(&[9, 0, 0, 0, 0, 2, 0, 0]), Some(Some(1)));
        // A-ABORT: close without answering
        assert_eq!(reason(&[7, 0, 0, 0, 0, 4, 0, 0, 0, 0]), Some(None));
    }

    #[test]
    fn malformed_requests_are_aborted() {
        let good = request();
        // the application context item (first item, at offset 74) turned into an unknown type
        assert_eq!(good[74], 0x10);
        let mut unknown_item = good.clone();
        unknown_item[74] = 0x77;
        assert_eq!(reason(&unknown_item), Some(Some(6)));
        // an item length pointing past the end of the PDU
        let mut lying = good.clone();
        lying[76..78].copy_from_slice(&0xFFF0u16.to_be_bytes());
        assert_eq!(reason(&lying), Some(Some(6)));
        // a request cut short of its fixed part
        let mut short = good[..40].to_vec();
        short[2..6].copy_from_slice(&34u32.to_be_bytes());
        assert_eq!(reason(&short), Some(Some(6)));
    }
}
