//! DIMSE services of RADRIS on dicom-ul: the service class provider ([`scp`]: C-ECHO,
//! C-STORE, C-FIND, C-MOVE, C-GET; Modality Worklist C-FIND and MPPS N-CREATE/N-SET through a
//! `radris_dicom::worklist::ModalityWorkflow`; Storage Commitment N-ACTION with its
//! N-EVENT-REPORT on the same or a new association) and the service class user ([`scu`]) that
//! C-MOVE, commitment reports and the `radris dicom` admin commands use.
//!
//! Associations run one per thread on the blocking dicom-ul API (PDUs are read straight into
//! the staging file, so a large instance never sits in memory); index calls cross into the
//! tokio runtime through a [`tokio::runtime::Handle`].
//!
//! **Invariant:** every socket has TCP_NODELAY (a DIMSE round trip otherwise stalls ~40 ms
//! on Nagle + delayed ACK).
//! **Invariant:** the tenant of an association comes from the calling AE title only.
//!
//! ```no_run
//! use radris_dimse::scu::{ScuOptions, echo};
//! let opts = ScuOptions::new("RADRISSCU", "RADRIS", "127.0.0.1:11112");
//! echo(&opts).expect("C-ECHO");
//! ```

pub mod message;
pub mod scp;
pub mod scu;

impl From<std::io::Error> for DimseError {
    /// A socket timeout (`EAGAIN`/`ETIMEDOUT` on a socket with a read or write timeout) is
    /// reported as such, not as "Resource temporarily unavailable".
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => DimseError::TimedOut,
            _ => DimseError::Io(e),
        }
    }
}

/// Why a DIMSE operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DimseError {
    #[error("association with {peer}: {source}")]
    Association {
        peer: String,
        #[source]
        source: Box<dicom_ul::association::Error>,
    },
    /// The peer did not answer in time: an association request (ARTIM) or a message.
    #[error("timed out: no answer from {peer} within {} s ({waiting_for})", after.as_secs())]
    Timeout {
        peer: String,
        waiting_for: &'static str,
        after: std::time::Duration,
    },
    /// The peer closed the connection without answering the association request, or
    /// answered with something that is not a DICOM PDU (a TLS-only port, another protocol).
    #[error(
        "{peer} closed the connection without answering the association request, or answered with something other than DICOM (a TLS-only port?)"
    )]
    NotDicom { peer: String },
    /// A read or write on an association timed out (the socket's timeout, set per use).
    #[error("timed out waiting for the peer (nothing arrived within the association's time limit)")]
    TimedOut,
    #[error("I/O: {0}")]
    Io(std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("DICOM encoding: {0}")]
    Encoding(String),
    #[error("the peer aborted the association")]
    Aborted,
    #[error("the peer released the association")]
    Released,
    #[error("{operation} failed with status {status:#06X}{}", comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    Status {
        operation: &'static str,
        status: u16,
        comment: Option<String>,
    },
}
