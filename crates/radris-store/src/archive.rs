//! The archive facade: ingest with durability and group commit, find, retrieve, delete,
//! verify, and crash recovery.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use radris_core::config::DuplicatePolicy;
use radris_core::events::{Event, EventBus};
use radris_core::{AeTitle, TenantId};
use radris_dicom::attrs::{IndexAttributes, index_header_json};
use radris_dicom::part10::{file_meta_bytes, read_layout};
use radris_dicom::query::FindQuery;
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::blob::{BlobStore, StagedBlob};
use crate::crypto::{BlobReader, DataKeys};
use crate::fragments::Fragments;
use crate::index::direct::{DirectWriter, Handoff};
use crate::index::{DeleteLevel, FindRow, Index, InsertOp, InsertOutcome, StoredInstance};
use crate::lock::DataDirLocks;
use radris_core::keys::KeyWrapper;

/// Data sets up to this size are also kept in memory while they arrive and parsed from there;
/// larger ones are parsed back from the staging file.
pub const DEFAULT_IN_MEMORY_LIMIT: usize = 64 << 20;

/// One instance for the group-commit writer: its row, when it is complete (see
/// [`Completion`]), and where the outcome goes.
///
/// With `durable` set, `done` resolves once the hash is known, not once the blob is durable:
/// the blob is written into a spare staging file (its name already durable), and the SQLite
/// writer may commit the row while the blob's fsync runs. The caller acknowledges only
/// after both, and a restart checks every blob still in staging against its row
/// ([`Archive::recover`]): a row whose blob did not reach the disk was never acknowledged
/// and is removed. The sqlx path (PostgreSQL, duplicates, failures) waits for `durable`
/// before it commits, as before.
struct WriteRequest {
    op: InsertOp,
    done: Completion,
    durable: Option<oneshot::Receiver<bool>>,
    reply: Reply,
}

type Reply = oneshot::Sender<Result<InsertOutcome, StoreError>>;

/// Resolves once an instance's blob is durable: `Some` with the SHA-256 if its row went to
/// the writer before the hash was known (empty otherwise), `None` if the blob could not be
/// made durable (see [`Index::insert_batch_completed`]).
type Completion = std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>;

/// The [`Completion`] of a blob that the thread holding `durable`'s sender makes durable
/// (`None`: the caller waits for that itself), and whose hash comes from `sha`'s sender, if
/// it was not known when the row was sent.
fn completion(
    durable: Option<oneshot::Receiver<bool>>,
    sha: Option<oneshot::Receiver<String>>,
) -> Completion {
    Box::pin(async move {
        if let Some(durable) = durable
            && !durable.await.unwrap_or(false)
        {
            return None;
        }
        match sha {
            None => Some(String::new()),
            Some(sha) => sha.await.ok(),
        }
    })
}

struct Inner {
    index: Index,
    blobs: BlobStore,
    writer: mpsc::Sender<WriteRequest>,
    events: EventBus,
    policy: DuplicatePolicy,
    in_memory_limit: std::sync::atomic::AtomicUsize,
    /// Runs each ingest's write and fsync, and its hash, beside its header parse, on the
    /// runtime's pool of blocking threads (kept alive between instances: no thread is made
    /// per instance).
    workers: tokio::runtime::Handle,
    /// This process's hold on the data directory (see [`crate::lock`]), released on drop.
    locks: std::sync::Mutex<Option<DataDirLocks>>,
}

fn create_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
        path: data_dir.display().to_string(),
        source,
    })
}

/// The archive: cheap to clone, shared by DIMSE, HTTP and the CLI.
#[derive(Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

/// What the sender told us about the instance before its data set arrived (C-STORE command,
/// STOW part, Part-10 meta). The data set must agree.
#[derive(Debug, Clone)]
pub struct IngestHint {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    /// The SOP UIDs above must match the data set's (a C-STORE command names the instance).
    /// When false (a Part-10 file's meta group, STOW-RS, import) the data set's own UIDs are
    /// authoritative and a disagreeing meta group is only logged.
    pub strict_uids: bool,
    /// Refuse the instance unless it belongs to this study (STOW-RS to `/studies/{uid}`):
    /// checked before anything reaches the index, so a wrong instance never replaces a
    /// stored one, whatever the duplicate policy.
    pub expected_study: Option<String>,
}

/// A stored (or already present) instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_instance_uid: String,
    /// `false` when an identical SOP Instance UID was already stored and kept.
    pub newly_stored: bool,
}

/// Result of `radris admin verify`.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub ok: u64,
    /// (blob path, reason)
    pub mismatches: Vec<(String, String)>,
    pub missing: Vec<String>,
    pub orphans: Vec<String>,
    /// Staging files no row names (left by a crash before the commit).
    pub staged: Vec<String>,
    /// Blobs whose rows committed but which are still in staging (not an error: they are
    /// read from there, and the next start publishes them).
    pub unpublished: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty()
            && self.missing.is_empty()
            && self.orphans.is_empty()
            && self.staged.is_empty()
    }
}

impl Archive {
    /// Open the archive in `data_dir` (index default: SQLite in the same directory), finish or
    /// discard what a crash left in staging, and start the group-commit writer.
    ///
    /// `keys` wraps the tenants' data keys (envelope encryption, see [`crate::crypto`]).
    /// One process serves a directory: another one's [`Archive::open`] gets
    /// [`StoreError::InUse`]; recovery waits for processes [`Archive::attach`]ed to it.
    pub async fn open(
        data_dir: &Path,
        database_url: Option<&str>,
        policy: DuplicatePolicy,
        events: EventBus,
        keys: Arc<dyn KeyWrapper>,
    ) -> Result<Self, StoreError> {
        create_data_dir(data_dir)?;
        let locks = DataDirLocks::serve(data_dir).await?;
        let archive =
            Self::attach_locked(data_dir, database_url, policy, events, keys, locks).await?;
        archive.recover().await?;
        archive.finish_removals().await?;
        let locks = archive.inner.locks.lock().ok().and_then(|mut l| l.take());
        if let Some(locks) = locks {
            let locks = locks.recovered(data_dir).await?;
            if let Ok(mut l) = archive.inner.locks.lock() {
                *l = Some(locks);
            }
        }
        Ok(archive)
    }

    /// Open the archive beside a server that may be running on it (import, admin tools):
    /// like [`Archive::open`] without crash recovery, which only the server may do (the
    /// staging files of its stores in flight are not leftovers).
    pub async fn attach(
        data_dir: &Path,
        database_url: Option<&str>,
        policy: DuplicatePolicy,
        events: EventBus,
        keys: Arc<dyn KeyWrapper>,
    ) -> Result<Self, StoreError> {
        create_data_dir(data_dir)?;
        let locks = DataDirLocks::attach(data_dir).await?;
        Self::attach_locked(data_dir, database_url, policy, events, keys, locks).await
    }

    async fn attach_locked(
        data_dir: &Path,
        database_url: Option<&str>,
        policy: DuplicatePolicy,
        events: EventBus,
        keys: Arc<dyn KeyWrapper>,
        locks: DataDirLocks,
    ) -> Result<Self, StoreError> {
        let url = database_url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("index.sqlite").display()));
        let index = Index::open(&url).await?;
        let keys = Arc::new(DataKeys::load(index.pool().clone(), keys).await?);
        let mut tenants = index.tenants().await?;
        tenants.push(TenantId::default_tenant());
        keys.ensure(&tenants).await?;
        let blobs = BlobStore::open(data_dir, keys)?;
        let (tx, rx) = mpsc::channel::<WriteRequest>(1024);
        match index.direct_writer().transpose()? {
            Some(direct) => {
                let (index, rt) = (index.clone(), tokio::runtime::Handle::current());
                std::thread::Builder::new()
                    .name("index-writer".into())
                    .spawn(move || direct_writer_loop(direct, index, rx, rt))
                    .map_err(|source| StoreError::Io {
                        path: "index-writer thread".into(),
                        source,
                    })?;
            }
            None => {
                tokio::spawn(writer_loop(index.clone(), rx));
            }
        }
        let archive = Archive {
            inner: Arc::new(Inner {
                index,
                blobs,
                writer: tx,
                events,
                policy,
                in_memory_limit: std::sync::atomic::AtomicUsize::new(DEFAULT_IN_MEMORY_LIMIT),
                workers: tokio::runtime::Handle::current(),
                locks: std::sync::Mutex::new(Some(locks)),
            }),
        };
        Ok(archive)
    }

    /// Change the size up to which data sets are parsed from memory (bigger ones stream to
    /// disk only and are parsed back from the staging file).
    pub fn set_in_memory_limit(&self, bytes: usize) {
        self.inner
            .in_memory_limit
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// Make sure the tenants exist, each with an active data key. Cheap when they do (no
    /// database round trip once the key is loaded).
    pub async fn ensure_tenants(&self, tenants: &[TenantId]) -> Result<(), StoreError> {
        if self.inner.blobs.keys().have_active(tenants) {
            return Ok(());
        }
        self.inner.index.ensure_tenants(tenants).await?;
        self.inner.blobs.keys().ensure(tenants).await
    }

    /// The tenants' data keys (rotation, re-wrapping, listing).
    pub fn data_keys(&self) -> &Arc<DataKeys> {
        self.inner.blobs.keys()
    }

    /// Decrypting reader over a stored instance (authenticated per 64 KiB segment). Reloads
    /// the key table once if the blob names a key made by another process since start.
    pub async fn open_blob(&self, inst: &StoredInstance) -> Result<BlobReader, StoreError> {
        match self.inner.blobs.open_reader(&inst.blob_path, &inst.tenant) {
            Err(StoreError::UnknownKey(_)) => {
                self.inner.blobs.keys().refresh().await?;
                self.inner.blobs.open_reader(&inst.blob_path, &inst.tenant)
            }
            other => other,
        }
    }

    /// [`Archive::open_blob`] for blocking contexts (DIMSE threads, blocking tasks): no
    /// reload of the key table.
    pub fn open_blob_blocking(&self, inst: &StoredInstance) -> Result<BlobReader, StoreError> {
        self.inner.blobs.open_reader(&inst.blob_path, &inst.tenant)
    }

    /// Re-encrypt every blob of `tenant` that is not under its active data key (after
    /// [`DataKeys::rotate`]): each is decrypted, written again beside itself, fsynced and
    /// renamed over the old file, so readers see either version whole. The plaintext and
    /// hence the indexed SHA-256 do not change. Returns how many blobs were rewritten.
    pub async fn reencrypt(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        let mut rewritten = 0;
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .inner
                .index
                .all_instances(after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), 500)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.tenant.clone(), last.sop_uid.clone()));
            let mine: Vec<StoredInstance> = page
                .into_iter()
                .filter(|i| i.tenant == tenant.as_str())
                .collect();
            let blobs = self.inner.blobs.clone();
            let tenant = tenant.clone();
            rewritten += tokio::task::spawn_blocking(move || {
                let mut n = 0;
                for inst in mine {
                    if blobs.reencrypt(&inst.blob_path, &tenant)? {
                        n += 1;
                    }
                }
                Ok::<_, StoreError>(n)
            })
            .await
            .map_err(|e| StoreError::Database(format!("re-encryption worker: {e}")))??;
        }
        Ok(rewritten)
    }

    /// Staging files left by a crash. Referenced by the index: the row committed; publish the
    /// blob if it is whole (every segment authenticates, and its length and SHA-256 are the
    /// row's), else the row was committed ahead of a fsync that never finished (see
    /// [`WriteRequest`]), was never acknowledged, and goes with the file. Not referenced:
    /// never acknowledged, deleted. Empty ones are spares made ahead: used again, unless a
    /// row names one (its blob never reached the disk).
    async fn recover(&self) -> Result<(), StoreError> {
        let blobs = &self.inner.blobs;
        let (empty, staged) = blobs.staging_split()?;
        let (mut published, mut discarded, mut dropped) = (0, 0, 0);
        let mut spares = Vec::with_capacity(empty.len());
        for id in empty {
            match self.inner.index.instance_of_blob(&id).await? {
                Some(inst) => {
                    self.drop_unacknowledged(&inst, "its staging file is empty")
                        .await?;
                    blobs.discard(&id);
                    dropped += 1;
                }
                None => spares.push(id),
            }
        }
        tracing::debug!(spares = spares.len(), "spare staging files taken back");
        blobs.adopt(spares);
        for id in staged {
            let Some(inst) = self.inner.index.instance_of_blob(&id).await? else {
                blobs.discard(&id);
                discarded += 1;
                continue;
            };
            let whole = match blobs.hash_staged(&id, &inst.tenant) {
                Ok((_, len)) if len as i64 != inst.size_bytes => Err(format!(
                    "{len} bytes in staging, {} in the index",
                    inst.size_bytes
                )),
                Ok((sha, _)) if !inst.sha256.is_empty() && sha != inst.sha256 => Err(format!(
                    "SHA-256 {sha} in staging, {} in the index",
                    inst.sha256
                )),
                Ok(_) => Ok(()),
                // torn: a header or segment that does not authenticate, or a short file
                Err(StoreError::Crypto(why)) => Err(why),
                Err(StoreError::Io { source, .. })
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    Err(source.to_string())
                }
                // could not check it (unknown key, permissions, a failing disk): a row is never
                // removed on that; the server refuses to start and says why
                Err(e) => {
                    tracing::error!(blob = %id, sop = %inst.sop_uid, error = %e, "recovery could not check a staged blob");
                    return Err(e);
                }
            };
            match whole {
                Ok(()) => {
                    if blobs.publish(&id, &inst.blob_path)? {
                        published += 1;
                    }
                }
                Err(why) => {
                    self.drop_unacknowledged(&inst, &why).await?;
                    blobs.discard(&id);
                    dropped += 1;
                }
            }
        }
        if published + discarded + dropped > 0 {
            tracing::warn!(
                published,
                discarded,
                dropped,
                "recovered staging files after an unclean stop"
            );
        }
        Ok(())
    }

    /// Remove the row of an instance whose blob did not reach the disk before a crash.
    async fn drop_unacknowledged(
        &self,
        inst: &StoredInstance,
        why: &str,
    ) -> Result<(), StoreError> {
        tracing::warn!(
            tenant = %inst.tenant,
            sop = %inst.sop_uid,
            reason = why,
            "an instance indexed ahead of its blob's fsync was never acknowledged: removed"
        );
        let tenant = TenantId::parse(&inst.tenant)
            .map_err(|e| StoreError::Database(format!("tenant of {}: {e}", inst.sop_uid)))?;
        self.inner
            .index
            .delete(&tenant, DeleteLevel::Instance, &inst.sop_uid)
            .await
            .map(drop)
    }

    /// Start receiving one instance. Write the data set bytes with [`Ingest::write`], then
    /// [`Ingest::commit`]. Dropping the `Ingest` leaves nothing behind.
    pub fn begin_ingest(
        &self,
        tenant: TenantId,
        source: Option<AeTitle>,
        hint: IngestHint,
    ) -> Result<Ingest, StoreError> {
        let meta = file_meta_bytes(
            &hint.sop_class_uid,
            &hint.sop_instance_uid,
            &hint.transfer_syntax,
            source.as_ref().map(AeTitle::as_str),
        )
        .map_err(|e| StoreError::Mismatch(e.to_string()))?;
        self.begin_ingest_with_meta(tenant, source, hint, meta)
    }

    /// Like [`Archive::begin_ingest`] for a Part-10 file that brings its own preamble and
    /// file meta group (STOW-RS, import): `meta` is kept verbatim except the preamble, which
    /// is always stored as 128 zero bytes (supplied when missing).
    pub fn begin_ingest_with_meta(
        &self,
        tenant: TenantId,
        source: Option<AeTitle>,
        hint: IngestHint,
        meta: Vec<u8>,
    ) -> Result<Ingest, StoreError> {
        let meta = if meta.starts_with(b"DICM") {
            let mut m = vec![0u8; 128];
            m.extend_from_slice(&meta);
            m
        } else {
            // the sender's preamble is replaced by zeros: arbitrary preamble bytes can make a
            // file valid as another format too (a polyglot; PS3.10 §7.5 security note)
            let mut m = meta;
            if m.get(128..132) == Some(b"DICM".as_slice()) {
                m[..128].fill(0);
            }
            m
        };
        let mut blob = self.inner.blobs.create(&tenant)?;
        blob.write(&meta)?;
        // data sets kept in memory are hashed at commit, on a thread beside the fsync and the
        // header parse: hashing as they arrive would keep the sender waiting
        blob.defer_hash();
        Ok(Ingest {
            archive: self.clone(),
            blob: Some(blob),
            meta,
            prefix: Fragments::default(),
            overflow: false,
            tenant,
            source,
            hint,
        })
    }

    /// Store a complete Part-10 file (import, demo). The file's own data set bytes are kept.
    pub fn ingest_part10(&self, tenant: TenantId, bytes: &[u8]) -> Result<Stored, StoreError> {
        let layout = read_layout(bytes).map_err(|e| StoreError::Unparseable(e.to_string()))?;
        let hint = IngestHint {
            sop_class_uid: layout.meta.media_storage_sop_class_uid().to_owned(),
            sop_instance_uid: layout.meta.media_storage_sop_instance_uid().to_owned(),
            transfer_syntax: layout.meta.transfer_syntax().to_owned(),
            strict_uids: false,
            expected_study: None,
        };
        let start = usize::try_from(layout.dataset_offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let mut ingest =
            self.begin_ingest_with_meta(tenant, None, hint, bytes[..start].to_vec())?;
        ingest.write(&bytes[start..])?;
        ingest.commit()
    }

    pub async fn find(&self, tenant: &TenantId, q: &FindQuery) -> Result<Vec<FindRow>, StoreError> {
        self.inner.index.find(tenant, q).await
    }

    pub async fn find_instances(
        &self,
        tenant: &TenantId,
        q: &FindQuery,
    ) -> Result<Vec<StoredInstance>, StoreError> {
        self.inner.index.find_instances(tenant, q).await
    }

    /// Instances of a study / series / instance with their DICOM JSON headers (see
    /// [`Index::instances_of`]).
    pub async fn instances_of(
        &self,
        tenant: &TenantId,
        study_uid: &str,
        series_uid: Option<&str>,
        sop_uid: Option<&str>,
        with_headers: bool,
    ) -> Result<Vec<(StoredInstance, String)>, StoreError> {
        self.inner
            .index
            .instances_of(tenant, study_uid, series_uid, sop_uid, with_headers)
            .await
    }

    /// The stored data set bytes of an instance, exactly as received, and its transfer syntax.
    /// Blocking IO: call from a blocking context.
    pub fn read_dataset(&self, inst: &StoredInstance) -> Result<Vec<u8>, StoreError> {
        let path = self.inner.blobs.path_of(&inst.blob_path);
        let mut bytes = self
            .open_blob_blocking(inst)?
            .read_all()
            .map_err(|e| StoreError::Crypto(format!("{}: {e}", path.display())))?;
        let layout = read_layout(bytes.as_slice())
            .map_err(|e| StoreError::Unparseable(format!("{}: {e}", path.display())))?;
        let start = usize::try_from(layout.dataset_offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        bytes.drain(..start);
        Ok(bytes)
    }

    /// Delete a study, series or instance: index first (one transaction), then the blobs.
    pub async fn delete(
        &self,
        tenant: &TenantId,
        level: DeleteLevel,
        uid: &str,
    ) -> Result<usize, StoreError> {
        if let Some(patient) = self.inner.index.patient_of(tenant, level, uid).await? {
            self.check_hold(tenant, &patient).await?;
        }
        // removals an earlier delete left half done (its process was killed) go first
        self.finish_removals().await?;
        let paths = self.inner.index.delete(tenant, level, uid).await?;
        self.remove_blobs(&paths).await?;
        self.inner.events.publish(Event::Deleted {
            tenant: tenant.clone(),
            uid: radris_core::Uid::parse(uid).map_err(|e| StoreError::Mismatch(e.to_string()))?,
        });
        Ok(paths.len())
    }

    /// Remove the files of deleted rows (queued by the delete's transaction), then unqueue them.
    async fn remove_blobs(&self, paths: &[String]) -> Result<(), StoreError> {
        let (blobs, owned) = (self.inner.blobs.clone(), paths.to_vec());
        tokio::task::spawn_blocking(move || owned.iter().try_for_each(|p| blobs.remove(p)))
            .await
            .map_err(|e| StoreError::Database(format!("blob removal worker: {e}")))??;
        self.inner.index.removals_done(paths).await
    }

    /// Finish the removals a delete committed but did not complete (a crash in between).
    async fn finish_removals(&self) -> Result<(), StoreError> {
        let pending = self.inner.index.pending_removals().await?;
        if !pending.is_empty() {
            tracing::warn!(
                files = pending.len(),
                "removing the files of rows deleted before an unclean stop"
            );
            self.remove_blobs(&pending).await?;
        }
        Ok(())
    }

    async fn check_hold(&self, tenant: &TenantId, patient_id: &str) -> Result<(), StoreError> {
        match self.inner.index.hold_of(tenant, patient_id).await? {
            Some(h) => Err(StoreError::LegalHold {
                patient_id: h.patient_id,
                reason: h.reason,
            }),
            None => Ok(()),
        }
    }

    /// Erase everything stored of a patient (right to erasure): every study, index rows and
    /// blobs. Refused while the patient is under legal hold. Returns the studies and
    /// instances removed.
    pub async fn erase_patient(
        &self,
        tenant: &TenantId,
        patient_id: &str,
    ) -> Result<(usize, usize), StoreError> {
        self.check_hold(tenant, patient_id).await?;
        let studies = self
            .inner
            .index
            .studies_of_patient(tenant, patient_id)
            .await?;
        let mut instances = 0;
        for study in &studies {
            instances += self.delete(tenant, DeleteLevel::Study, study).await?;
        }
        Ok((studies.len(), instances))
    }

    /// Re-hash every object and compare index and blobs. Safe beside a running server: a
    /// blob stored while the index is read is not an orphan, and a staging file counts only
    /// if it is there from start to end and no row names it (a row that names one is an
    /// instance not published yet, served from staging).
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let staged_at_start: HashSet<String> = self.inner.blobs.staged_ids()?.into_iter().collect();
        let mut known: HashSet<String> = HashSet::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .inner
                .index
                .all_instances(after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), 2000)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.tenant.clone(), last.sop_uid.clone()));
            let blobs = self.inner.blobs.clone();
            let checked = tokio::task::spawn_blocking(move || {
                let workers = std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2);
                let chunk = page.len().div_ceil(workers).max(1);
                std::thread::scope(|s| {
                    let handles: Vec<_> = page
                        .chunks(chunk)
                        .map(|part| {
                            let blobs = &blobs;
                            s.spawn(move || {
                                part.iter()
                                    .map(|inst| (inst.blob_path.clone(), check_one(blobs, inst)))
                                    .collect::<Vec<_>>()
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .flat_map(|h| h.join().unwrap_or_default())
                        .collect::<Vec<_>>()
                })
            })
            .await
            .map_err(|e| StoreError::Database(format!("verify worker: {e}")))?;
            for (path, outcome) in checked {
                match outcome {
                    Check::Ok => report.ok += 1,
                    Check::Missing => report.missing.push(path.clone()),
                    Check::Mismatch(why) => report.mismatches.push((path.clone(), why)),
                }
                known.insert(path);
            }
        }
        for rel in self.inner.blobs.list_published()? {
            if !known.contains(&rel) && !self.indexed_blob(BlobStore::id_of(&rel)).await? {
                report.orphans.push(rel);
            }
        }
        for id in self.inner.blobs.staged_ids()? {
            if !staged_at_start.contains(&id) {
                continue; // written while verify ran
            }
            if self.indexed_blob(Some(&id)).await? {
                report.unpublished.push(id);
            } else {
                report.staged.push(id);
            }
        }
        Ok(report)
    }

    /// Whether a row names this blob id.
    async fn indexed_blob(&self, id: Option<&str>) -> Result<bool, StoreError> {
        Ok(match id {
            Some(id) => self.inner.index.instance_of_blob(id).await?.is_some(),
            None => false,
        })
    }
}

enum Check {
    Ok,
    Missing,
    Mismatch(String),
}

fn check_one(blobs: &BlobStore, inst: &StoredInstance) -> Check {
    match blobs.hash_file(&inst.blob_path, &inst.tenant) {
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Check::Missing
        }
        Err(e) => Check::Mismatch(e.to_string()),
        Ok((hash, len)) if hash != inst.sha256 => Check::Mismatch(format!(
            "SHA-256 {hash} (length {len}) differs from the indexed {}",
            inst.sha256
        )),
        Ok((_, len)) if len as i64 != inst.size_bytes => Check::Mismatch(format!(
            "length {len} differs from the indexed {}",
            inst.size_bytes
        )),
        Ok(_) => Check::Ok,
    }
}

/// A group commit's requests: the first and those already waiting behind it (up to 256).
type Gathered = (
    Vec<InsertOp>,
    Vec<Completion>,
    Vec<Option<oneshot::Receiver<bool>>>,
    Vec<Reply>,
);

fn gather(first: WriteRequest, rx: &mut mpsc::Receiver<WriteRequest>) -> Gathered {
    let mut batch = vec![first];
    while batch.len() < 256 {
        match rx.try_recv() {
            Ok(req) => batch.push(req),
            Err(_) => break,
        }
    }
    metrics::histogram!("radris_index_group_commit_size").record(batch.len() as f64);
    let mut ops = Vec::with_capacity(batch.len());
    let mut pending = Vec::with_capacity(batch.len());
    let mut durables = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for req in batch {
        ops.push(req.op);
        pending.push(req.done);
        durables.push(req.durable);
        replies.push(req.reply);
    }
    (ops, pending, durables, replies)
}

/// Wait for each request's completion, in order.
async fn completed(pending: Vec<Completion>) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(pending.len());
    for d in pending {
        out.push(d.await);
    }
    out
}

/// `done`, then the blobs' durability where the completions left it out: what the sqlx
/// path needs before it commits (a blob that did not become durable fails its op).
async fn and_durable(
    done: impl std::future::Future<Output = Vec<Option<String>>>,
    durables: Vec<Option<oneshot::Receiver<bool>>>,
) -> Vec<Option<String>> {
    let mut out = done.await;
    for (slot, durable) in out.iter_mut().zip(durables) {
        if let Some(durable) = durable
            && !durable.await.unwrap_or(false)
        {
            *slot = None;
        }
    }
    out
}

fn reply(replies: Vec<Reply>, results: Vec<Result<InsertOutcome, StoreError>>) {
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// The group-commit writer on sqlx (PostgreSQL, in-memory SQLite): the rows go in while the
/// blobs' fsyncs (and maybe hashes) finish; the commit waits for all of them.
async fn writer_loop(index: Index, mut rx: mpsc::Receiver<WriteRequest>) {
    while let Some(first) = rx.recv().await {
        let (ops, pending, durables, replies) = gather(first, &mut rx);
        let done = and_durable(completed(pending), durables);
        let results = index.insert_batch_completed(&ops, done).await;
        reply(replies, results);
    }
}

/// The group-commit writer on an SQLite file: the same, on its own thread and connection
/// ([`crate::index::direct`]), committing rows of blobs in spares without waiting for their
/// fsync (see [`WriteRequest`]); what that path hands back is finished by the sqlx one.
fn direct_writer_loop(
    mut direct: DirectWriter,
    index: Index,
    mut rx: mpsc::Receiver<WriteRequest>,
    rt: tokio::runtime::Handle,
) {
    while let Some(first) = rx.blocking_recv() {
        let (ops, pending, durables, replies) = gather(first, &mut rx);
        let results = match direct.insert_batch(&ops, completed(pending), |f| rt.block_on(f)) {
            Ok(results) => results,
            Err(Handoff::Pending(done)) => {
                rt.block_on(index.insert_batch_completed(&ops, and_durable(done, durables)))
            }
            Err(Handoff::Done(done)) => rt.block_on(
                index.insert_batch_completed(&ops, and_durable(std::future::ready(done), durables)),
            ),
        };
        reply(replies, results);
    }
}

/// Where [`Ingest::analyse`] reads a data set from.
enum DataSet<'a> {
    /// Kept in memory as it arrived.
    InMemory(&'a Fragments),
    /// Too big for memory: the sealed staging file, read through its decrypting reader.
    Staged(&'a BlobReader),
}

/// One instance being received.
pub struct Ingest {
    archive: Archive,
    blob: Option<StagedBlob>,
    /// Our file meta group (with preamble), to parse the header as a Part-10 stream.
    meta: Vec<u8>,
    /// The data set while it is in memory.
    prefix: Fragments,
    overflow: bool,
    tenant: TenantId,
    source: Option<AeTitle>,
    hint: IngestHint,
}

impl Ingest {
    /// Append data set bytes as they arrive, taking the buffer: in memory, the fragment is
    /// kept as it is (see [`Fragments`]).
    pub fn write_owned(&mut self, data: Vec<u8>) -> Result<(), StoreError> {
        if self.fits_in_memory(data.len()) {
            self.prefix.push(data);
            return Ok(());
        }
        self.write(&data)
    }

    /// Whether `more` bytes still keep the data set in memory.
    fn fits_in_memory(&self, more: usize) -> bool {
        let limit = self
            .archive
            .inner
            .in_memory_limit
            .load(std::sync::atomic::Ordering::Relaxed);
        !self.overflow && self.blob.is_some() && self.prefix.len().saturating_add(more) <= limit
    }

    /// Append data set bytes as they arrive. A data set that fits in memory is only kept
    /// there until [`Ingest::commit`] writes it (on the thread that fsyncs it), so receiving
    /// is just the socket reads; a bigger one streams to its staging file from the point it
    /// outgrows memory.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if self.fits_in_memory(data.len()) {
            self.prefix.push(data.to_vec());
            return Ok(());
        }
        let blob = self.blob.as_mut().ok_or(StoreError::ShuttingDown)?;
        if !self.overflow {
            self.overflow = true;
            blob.resume_hash(&[&self.meta]);
            for part in std::mem::take(&mut self.prefix).parts() {
                blob.write(part)?;
            }
        }
        blob.write(data)
    }

    /// Parse the header (everything before Pixel Data) and check it against the request.
    /// In memory, the structural check first proves every length fits (no truncation, no
    /// lying lengths) without allocating.
    fn analyse(&self, data: DataSet<'_>) -> Result<(IndexAttributes, String), StoreError> {
        let opts = OpenFileOptions::new().read_until(tags::PIXEL_DATA);
        let parsed = match data {
            DataSet::InMemory(data) => {
                radris_dicom::wire::check_source(data, data.len(), &self.hint.transfer_syntax)?;
                let meta = self.meta.get(128..).unwrap_or_default();
                opts.read_preamble(dicom_object::file::ReadPreamble::Never)
                    .from_reader(meta.chain(data.reader()))
            }
            DataSet::Staged(reader) => {
                let offset = self.meta.len() as u64;
                let len =
                    usize::try_from(reader.len().saturating_sub(offset)).unwrap_or(usize::MAX);
                let src = crate::crypto::ReaderSource { reader, offset };
                radris_dicom::wire::check_source(&src, len, &self.hint.transfer_syntax)?;
                let r = crate::crypto::ReadFrom { reader, pos: 128 };
                opts.read_preamble(dicom_object::file::ReadPreamble::Never)
                    .from_reader(std::io::BufReader::new(r))
            }
        };
        let obj = parsed
            .map(|f| f.into_inner())
            .map_err(|e| StoreError::Unparseable(e.to_string()))?;
        if obj.iter().next().is_none() {
            return Err(StoreError::Unparseable("empty data set".into()));
        }
        let attrs = IndexAttributes::from_header(&obj)?;
        if let Some(study) = &self.hint.expected_study
            && attrs.study.study_uid.as_str() != study.as_str()
        {
            return Err(StoreError::Mismatch(format!(
                "the instance belongs to study {}, not {study}",
                attrs.study.study_uid
            )));
        }
        let trimmed = |s: &str| s.trim_end_matches(['\0', ' ']).to_owned();
        let uid_mismatch =
            if attrs.instance.sop_instance_uid.as_str() != trimmed(&self.hint.sop_instance_uid) {
                Some(format!(
                    "SOP Instance UID in the data set ({}) differs from the request ({})",
                    attrs.instance.sop_instance_uid, self.hint.sop_instance_uid
                ))
            } else if attrs.instance.sop_class_uid.as_str() != trimmed(&self.hint.sop_class_uid) {
                Some(format!(
                    "SOP Class UID in the data set ({}) differs from the request ({})",
                    attrs.instance.sop_class_uid, self.hint.sop_class_uid
                ))
            } else {
                None
            };
        match uid_mismatch {
            Some(why) if self.hint.strict_uids => return Err(StoreError::Mismatch(why)),
            Some(why) => {
                tracing::warn!(reason = %why, "file meta group disagrees with the data set; the data set's UIDs are used")
            }
            None => {}
        }
        let header = index_header_json(&obj, &attrs)?;
        Ok((attrs, header))
    }

    /// Parse and validate, make durable, index (group commit), publish. Returns only when the
    /// instance survives a crash. Blocking: call from a blocking thread.
    ///
    /// In memory, three things run at once: writing and fsyncing the staging file, and the
    /// SHA-256, each on a worker of the runtime's blocking pool, and the header parse here.
    /// The row goes to the writer as soon as the header is parsed, so it is written while the
    /// hash and the fsync run; the hash is set on it before the commit. The transaction
    /// commits after the fsync, except for a blob in a spare on the SQLite writer, whose
    /// fsync runs beside the commit (see [`WriteRequest`]); either way this returns only once
    /// both are done, and a row whose blob then failed to become durable is deleted.
    pub fn commit(mut self) -> Result<Stored, StoreError> {
        let mut clock = PhaseClock::start();
        let blob = self.blob.take().ok_or(StoreError::ShuttingDown)?;
        let pending = if self.overflow {
            0
        } else {
            self.prefix.len() as u64
        };
        let (blob_id, len) = (blob.id().to_owned(), blob.len() + pending);
        let (indexed, sealed) = if self.overflow {
            // too big for memory: seal first, then parse the header back from the staging
            // file through the decrypting reader
            match blob.seal() {
                Ok(sealed) => {
                    let indexed = self
                        .archive
                        .inner
                        .blobs
                        .open_staged(&sealed.id, self.tenant.as_str())
                        .and_then(|r| self.analyse(DataSet::Staged(&r)))
                        .and_then(|(attrs, header)| {
                            clock.lap("parse");
                            let op =
                                self.insert_op(&attrs, header, &sealed.id, len, &sealed.sha256);
                            let done = Box::pin(std::future::ready(Some(String::new())));
                            self.index(op, done, None).map(|outcome| (attrs, outcome))
                        });
                    (indexed, Ok(sealed))
                }
                Err(e) => (Err(StoreError::ShuttingDown), Err(e)),
            }
        } else {
            // the data set is shared by the three: the fsync and the hash run on the pool
            let data = Arc::new(std::mem::take(&mut self.prefix));
            // in a spare, the row may commit before the blob's fsync (see [`WriteRequest`])
            let early = blob.in_spare();
            let (durable, durable_rx) = oneshot::channel();
            let (sealed_tx, sealed_rx) = oneshot::channel();
            {
                let data = data.clone();
                self.archive.inner.workers.spawn_blocking(move || {
                    let mut blob = blob;
                    blob.expect_len(len);
                    let sealed = data
                        .parts()
                        .try_for_each(|part| blob.write(part))
                        .and_then(|()| blob.seal());
                    let _ = durable.send(sealed.is_ok());
                    let _ = sealed_tx.send(sealed);
                });
            }
            let (sha, sha_rx) = oneshot::channel();
            {
                let (meta, data) = (self.meta.clone(), data.clone());
                self.archive.inner.workers.spawn_blocking(move || {
                    let parts: Vec<&[u8]> = std::iter::once(meta.as_slice())
                        .chain(data.parts())
                        .collect();
                    let _ = sha.send(crate::blob::sha256_hex(&parts));
                });
            }
            let indexed = self
                .analyse(DataSet::InMemory(&data))
                .and_then(|(attrs, header)| {
                    clock.lap("parse");
                    // the row goes to the writer now; the hash follows before the commit
                    let op = self.insert_op(&attrs, header, &blob_id, len, "");
                    let (done, durable) = if early {
                        (completion(None, Some(sha_rx)), Some(durable_rx))
                    } else {
                        (completion(Some(durable_rx), Some(sha_rx)), None)
                    };
                    self.index(op, done, durable)
                        .map(|outcome| (attrs, outcome))
                });
            // a worker that panicked or never ran sent nothing: nothing was indexed, and the
            // staging file went with the blob
            let sealed = sealed_rx.blocking_recv().unwrap_or_else(|_| {
                Err(StoreError::Io {
                    path: "staging".into(),
                    source: std::io::Error::other("the fsync worker stopped"),
                })
            });
            (indexed, sealed)
        };
        clock.lap("index_fsync");
        let inner = &self.archive.inner;
        let ((attrs, outcome), sealed) = match (indexed, sealed) {
            (Ok(indexed), Ok(sealed)) => (indexed, sealed),
            (Err(e), Ok(sealed)) => {
                inner.blobs.discard(&sealed.id);
                return Err(e);
            }
            // committed ahead of the fsync, which failed: the row names a blob that is not
            // durable, and goes (the staging file went with the blob). A duplicate of this
            // instance acknowledged meanwhile under KeepFirst goes with it: an fsync error
            // means a failing disk, and the client is told this store failed.
            (Ok((attrs, InsertOutcome::Inserted)), Err(e)) => {
                let sop = attrs.instance.sop_instance_uid.as_str();
                let removed = inner.workers.block_on(inner.index.delete(
                    &self.tenant,
                    DeleteLevel::Instance,
                    sop,
                ));
                if let Err(undo) = removed {
                    tracing::error!(sop, error = %undo, "could not remove the row of an instance whose blob failed to become durable; `radris admin verify` reports it as missing");
                }
                return Err(e);
            }
            // the index refused to commit without the fsync; the staging file is gone
            (_, Err(e)) => return Err(e),
        };
        let rel = BlobStore::final_rel_path(
            self.tenant.as_str(),
            attrs.study.study_uid.as_str(),
            attrs.series.series_uid.as_str(),
            attrs.instance.sop_instance_uid.as_str(),
            &sealed.id,
        );
        // The row is committed and the blob durable in staging: the instance is stored. A
        // publish that fails leaves it there, read from staging until the next start's
        // recovery renames it; one that finds the staging file gone was overtaken by a delete
        // or an overwrite of the instance, which removed it.
        let publish = |id: &str| match inner.blobs.publish(id, &rel) {
            Ok(placed) => placed,
            Err(e) => {
                tracing::error!(blob = %id, error = %e, "could not move a stored blob into place; it is served from staging until the next start publishes it");
                true
            }
        };
        let newly_stored = match outcome {
            InsertOutcome::Inserted => publish(&sealed.id),
            InsertOutcome::Replaced { old_blob_path } => {
                let placed = publish(&sealed.id);
                inner.blobs.remove(&old_blob_path)?;
                let old = [old_blob_path];
                inner.workers.block_on(inner.index.removals_done(&old))?;
                placed
            }
            InsertOutcome::KeptExisting => {
                inner.blobs.discard(&sealed.id);
                false
            }
        };
        clock.lap("publish");
        if newly_stored {
            inner.events.publish(Event::InstanceStored {
                tenant: self.tenant.clone(),
                study_uid: attrs.study.study_uid.clone(),
                series_uid: attrs.series.series_uid.clone(),
                sop_instance_uid: attrs.instance.sop_instance_uid.clone(),
                source: self.source.clone(),
            });
        }
        Ok(Stored {
            study_uid: attrs.study.study_uid.as_str().to_owned(),
            series_uid: attrs.series.series_uid.as_str().to_owned(),
            sop_instance_uid: attrs.instance.sop_instance_uid.as_str().to_owned(),
            newly_stored,
        })
    }

    /// The index row of this instance, its blob `blob_id` of `len` plaintext bytes.
    fn insert_op(
        &self,
        attrs: &IndexAttributes,
        header_json: String,
        blob_id: &str,
        len: u64,
        sha256: &str,
    ) -> InsertOp {
        InsertOp {
            tenant: self.tenant.clone(),
            attrs: attrs.clone(),
            transfer_syntax: self
                .hint
                .transfer_syntax
                .trim_end_matches(['\0', ' '])
                .to_owned(),
            blob_id: blob_id.to_owned(),
            blob_path: BlobStore::final_rel_path(
                self.tenant.as_str(),
                attrs.study.study_uid.as_str(),
                attrs.series.series_uid.as_str(),
                attrs.instance.sop_instance_uid.as_str(),
                blob_id,
            ),
            size_bytes: len,
            sha256: sha256.to_owned(),
            source_ae: self
                .source
                .as_ref()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            header_json,
            policy: self.archive.inner.policy,
        }
    }

    /// Hand `op` to the group-commit writer and wait for its outcome; the writer commits once
    /// `done` says the blob survives a crash (and brings its hash, if `op` has none yet), or,
    /// given `durable`, once the hash is there (see [`WriteRequest`]).
    fn index(
        &self,
        op: InsertOp,
        done: Completion,
        durable: Option<oneshot::Receiver<bool>>,
    ) -> Result<InsertOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.archive
            .inner
            .writer
            .blocking_send(WriteRequest {
                op,
                done,
                durable,
                reply,
            })
            .map_err(|_| StoreError::ShuttingDown)?;
        outcome
            .blocking_recv()
            .map_err(|_| StoreError::ShuttingDown)?
    }
}

/// Times the phases of an ingest into `radris_ingest_phase_seconds{phase}`.
struct PhaseClock(std::time::Instant);

impl PhaseClock {
    fn start() -> Self {
        PhaseClock(std::time::Instant::now())
    }

    fn lap(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        metrics::histogram!("radris_ingest_phase_seconds", "phase" => phase)
            .record((now - self.0).as_secs_f64());
        self.0 = now;
    }
}
