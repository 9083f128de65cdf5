//! The archive's storage: a durable blob store on local files ([`blob`]), the index on sqlx
//! ([`index`]: SQLite or PostgreSQL), and the [`Archive`] facade that ingests, finds,
//! retrieves, deletes and verifies instances.
//!
//! **Invariant:** an ingest reports success only after the blob is fsynced and the index
//! transaction committed (see [`archive::Ingest::commit`]).
//! This crate knows nothing about DIMSE or HTTP.
//!
//! ```no_run
//! # async fn demo() -> Result<(), radris_store::StoreError> {
//! use radris_store::Archive;
//! let master = std::sync::Arc::new(radris_store::crypto::MemoryKek::new([7; 32]));
//! let archive = Archive::open(std::path::Path::new("/tmp/radris"), None, Default::default(),
//!     radris_core::events::EventBus::default(), master).await?;
//! let report = archive.verify().await?;
//! assert!(report.is_clean());
//! # Ok(()) }
//! ```

pub mod archive;
pub mod blob;
pub mod crypto;
pub mod direct_io;
pub mod fragments;
pub mod index;
mod lock;
mod schema;

pub use archive::{Archive, Ingest, IngestHint, Stored, VerifyReport};
pub use index::{
    AnnotationDoc, DeleteLevel, FindRow, Index, InstanceSummary, LegalHold, Page, PatientSummary,
    SeriesSummary, StoredInstance, StudyFilter, StudySort, StudySummary,
};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("index: {0}")]
    Database(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("the data set cannot be understood: {0}")]
    Unparseable(String),
    #[error("the data set does not match the request: {0}")]
    Mismatch(String),
    #[error("SOP Instance {0} is already stored and the duplicate policy is reject")]
    Duplicate(String),
    #[error("instance larger than the configured limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0} not found")]
    NotFound(String),
    #[error("the archive is shutting down")]
    ShuttingDown,
    /// Another `radris serve` holds the data directory.
    #[error(
        "{0} is already served by another radris process (its serve.lock is held): one server per data directory"
    )]
    InUse(String),
    /// Encryption or authenticated decryption failed: a tampered or truncated blob, a
    /// wrong or missing key. Never shows key material.
    #[error("encryption: {0}")]
    Crypto(String),
    /// The patient's data is under legal hold: nothing of it may be deleted.
    #[error("patient {patient_id} is under legal hold ({reason}); lift the hold first")]
    LegalHold { patient_id: String, reason: String },
    /// A blob names a data key this process has not loaded (made elsewhere moments ago).
    #[error("data key {0} is not loaded")]
    UnknownKey(String),
    /// An optimistic-concurrency write named another version than the stored one (`None`:
    /// no document); nothing was written.
    #[error("version conflict: expected {}, stored {}", show_version(*.expected), show_version(*.current))]
    Conflict {
        expected: Option<i64>,
        current: Option<i64>,
    },
}

fn show_version(v: Option<i64>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

impl From<radris_dicom::DicomError> for StoreError {
    fn from(e: radris_dicom::DicomError) -> Self {
        StoreError::Unparseable(e.to_string())
    }
}

impl StoreError {
    fn db(what: &str, e: sqlx::Error) -> Self {
        StoreError::Database(format!("{what}: {e}"))
    }

    /// Whether the sender's data was at fault (as opposed to our storage).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StoreError::Unparseable(_)
                | StoreError::Mismatch(_)
                | StoreError::Duplicate(_)
                | StoreError::TooLarge { .. }
        )
    }
}
