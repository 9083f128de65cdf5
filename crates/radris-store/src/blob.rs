//! The blob store on local files.
//!
//! Layout: `<root>/blobs/<tenant>/<study>/<series>/<sop>.<blob-id>.dcm`, staging files in
//! `<root>/staging/<blob-id>.part`. Every file, staging included, is encrypted
//! ([`crate::crypto`]); the SHA-256 and length the index keeps are of the plaintext DICOM file.
//!
//! **Invariant:** a staging file is complete and fsynced (file and directory) before its
//! instance is acknowledged, and renamed into place only after the index committed. Its row
//! may commit before its fsync when the file is a spare (the archive's `WriteRequest`). So
//! after a crash a staging file is either referenced by the index (whole: finish the rename;
//! empty, short or torn: the crash came before the fsync, the instance was never
//! acknowledged, row and file go) or was never acknowledged (delete it): the archive's
//! recovery does that, with [`BlobStore::staging_split`] and [`BlobStore::hash_staged`].
//!
//! **Spares:** a new file's name is durable only once its directory is fsynced, a second
//! device flush on every instance. So staging files are made ahead, empty, a batch at a time
//! with one directory fsync for the batch ([`Spares`]); a blob written into one needs only its
//! own fsync. Empty staging files are spares, never blobs (a sealed blob is never empty: it
//! starts with its encryption header), so [`BlobStore::staged_ids`] leaves them out and a
//! restart takes them back ([`BlobStore::adopt`]).

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use radris_core::TenantId;

use crate::crypto::{BlobReader, DataKeys, SegmentWriter};
use crate::direct_io::{self, StagingFile};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::StoreError;

/// Durable files under one root directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    staging_sync: std::sync::Arc<DirSync>,
    keys: Arc<DataKeys>,
    /// Staging files are written around the page cache ([`crate::direct_io`]).
    direct: bool,
    spares: Arc<Spares>,
}

/// Empty staging files whose names are already durable, made [`SPARE_BATCH`] at a time on a
/// thread of their own when fewer than [`SPARE_LOW`] are left.
///
/// Another process on the same data directory (a CLI import beside the server) may hold some
/// of the same files in its own list after a restart adopted them: a file is taken under an
/// exclusive `flock` and only while still empty, so two writers never share one.
#[derive(Debug, Default)]
struct Spares {
    ids: Mutex<Vec<String>>,
    refilling: AtomicBool,
}

const SPARE_BATCH: usize = 64;
const SPARE_LOW: usize = 16;

impl Spares {
    fn pop(&self) -> (Option<String>, usize) {
        match self.ids.lock() {
            Ok(mut ids) => {
                let id = ids.pop();
                (id, ids.len())
            }
            Err(_) => (None, usize::MAX),
        }
    }

    fn extend(&self, more: Vec<String>) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.extend(more);
        }
    }

    /// Make a batch of empty files in `dir` and fsync it once; then they may be used.
    fn refill(&self, dir: &Path) {
        let mut made = Vec::with_capacity(SPARE_BATCH);
        for _ in 0..SPARE_BATCH {
            let id = uuid::Uuid::now_v7().simple().to_string();
            let path = dir.join(format!("{id}.part"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => made.push(id),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not make a spare staging file");
                    break;
                }
            }
        }
        if !made.is_empty() {
            match sync_dir(dir) {
                Ok(()) => self.extend(made),
                Err(e) => {
                    tracing::warn!(error = %e, "could not make spare staging files durable");
                    for id in made {
                        let _ = fs::remove_file(dir.join(format!("{id}.part")));
                    }
                }
            }
        }
        self.refilling.store(false, Ordering::Release);
    }
}

/// Take `file`, a spare, for writing: only if no one else has (an exclusive, non-blocking
/// `flock` on the descriptor that will be written, held until it is closed) and it is still
/// empty.
fn claim(file: &StagingFile) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_file().as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file` for the duration of the call.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if file.as_file().metadata()?.len() != 0 {
        return Err(std::io::Error::other("no longer empty"));
    }
    Ok(())
}

/// Group fsync of one directory: concurrent callers share one `fsync` that started after
/// they asked, so N stores in flight cost one directory sync, not N.
#[derive(Debug)]
pub struct DirSync {
    dir: PathBuf,
    state: std::sync::Mutex<DirSyncState>,
    done: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct DirSyncState {
    requested: u64,
    completed: u64,
    running: bool,
}

impl DirSync {
    pub fn new(dir: PathBuf) -> Self {
        DirSync {
            dir,
            state: Default::default(),
            done: std::sync::Condvar::new(),
        }
    }

    /// Return once an fsync of the directory that began after this call has completed.
    pub fn sync(&self) -> Result<(), StoreError> {
        let poisoned = |_| StoreError::Io {
            path: self.dir.display().to_string(),
            source: std::io::Error::other("directory sync lock poisoned"),
        };
        let mut st = self.state.lock().map_err(poisoned)?;
        st.requested += 1;
        let mine = st.requested;
        loop {
            if st.completed >= mine {
                return Ok(());
            }
            if !st.running {
                st.running = true;
                let target = st.requested;
                drop(st);
                let result = sync_dir(&self.dir);
                st = self.state.lock().map_err(poisoned)?;
                st.running = false;
                if result.is_ok() {
                    st.completed = st.completed.max(target);
                }
                self.done.notify_all();
                result?;
                continue;
            }
            st = self.done.wait(st).map_err(poisoned)?;
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// fsync a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl BlobStore {
    /// Open (creating the directories of) a blob store under `root`.
    pub fn open(root: &Path, keys: Arc<DataKeys>) -> Result<Self, StoreError> {
        for sub in ["blobs", "staging"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io(&p))?;
        }
        Ok(BlobStore {
            root: root.to_path_buf(),
            staging_sync: std::sync::Arc::new(DirSync::new(root.join("staging"))),
            keys,
            direct: crate::direct_io::supported(&root.join("staging")),
            spares: Arc::default(),
        })
    }

    /// The data keys blobs are encrypted with.
    pub fn keys(&self) -> &Arc<DataKeys> {
        &self.keys
    }

    /// Decrypting reader over a published blob of `tenant`; or, when it is not in place yet,
    /// over its staging file: a row can commit before its blob is renamed into place (and a
    /// publish that failed, or a process killed in between, leaves it there until the next
    /// start's recovery publishes it). The instance is durable and indexed either way.
    pub fn open_reader(&self, rel: &str, tenant: &str) -> Result<BlobReader, StoreError> {
        match BlobReader::open(&self.path_of(rel), &self.keys, tenant) {
            Err(StoreError::Io { source, path })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                match blob_id_of(rel).map(|id| self.staging_path(id)) {
                    Some(staged) if staged.exists() => {
                        BlobReader::open(&staged, &self.keys, tenant)
                    }
                    _ => Err(StoreError::Io { source, path }),
                }
            }
            other => other,
        }
    }

    /// Rewrite a published blob of `tenant` under the tenant's active data key, if it is
    /// under another one. Atomic: a new file beside it, fsynced, renamed over it.
    pub fn reencrypt(&self, rel: &str, tenant: &TenantId) -> Result<bool, StoreError> {
        let path = self.path_of(rel);
        let reader = self.open_reader(rel, tenant.as_str())?;
        let key = self.keys.new_blob_key(tenant)?;
        if reader.key_id() == key.key_id() {
            return Ok(false);
        }
        let tmp = path.with_extension("reencrypt");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let result = (|| {
            let mut w = SegmentWriter::new(file, key);
            let mut buf = vec![0u8; 1 << 20];
            let mut pos = 0u64;
            loop {
                let n = reader.read_at(pos, &mut buf).map_err(io(&path))?;
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n]).map_err(io(&tmp))?;
                pos += n as u64;
            }
            let file = w.finish().map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
            fs::rename(&tmp, &path).map_err(io(&tmp))?;
            match path.parent() {
                Some(dir) => sync_dir(dir),
                None => Ok(()),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| true)
    }

    /// Decrypting reader over a sealed staging file.
    pub fn open_staged(&self, blob_id: &str, tenant: &str) -> Result<BlobReader, StoreError> {
        BlobReader::open(&self.staging_path(blob_id), &self.keys, tenant)
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn staging_path(&self, blob_id: &str) -> PathBuf {
        self.staging_dir().join(format!("{blob_id}.part"))
    }

    /// Absolute path of a blob from its path relative to `blobs/`.
    pub fn path_of(&self, rel: &str) -> PathBuf {
        self.blobs_dir().join(rel)
    }

    /// The id of a blob from its published path (`…/<sop>.<id>.dcm`).
    pub fn id_of(rel: &str) -> Option<&str> {
        blob_id_of(rel)
    }

    /// The relative path a blob gets once committed.
    pub fn final_rel_path(
        tenant: &str,
        study: &str,
        series: &str,
        sop: &str,
        blob_id: &str,
    ) -> String {
        format!("{tenant}/{study}/{series}/{sop}.{blob_id}.dcm")
    }

    /// Start writing a new blob of `tenant` in staging, encrypted under its active data key:
    /// into a spare if there is one (no directory fsync when it is sealed), else a new file.
    pub fn create(&self, tenant: &TenantId) -> Result<StagedBlob, StoreError> {
        let key = self.keys.new_blob_key(tenant)?;
        let (file, id, path, dir_sync) = match self.take_spare() {
            Some((file, id, path)) => (file, id, path, None),
            None => {
                let id = uuid::Uuid::now_v7().simple().to_string();
                let path = self.staging_path(&id);
                let file = StagingFile::create(&path, self.direct).map_err(io(&path))?;
                (file, id, path, Some(self.staging_sync.clone()))
            }
        };
        let align = if self.direct { direct_io::ALIGN } else { 1 };
        Ok(StagedBlob {
            id,
            path,
            dir_sync,
            writer: Some(SegmentWriter::with_alignment(file, key, align)),
            hasher: Some(Sha256::new()),
            len: 0,
        })
    }

    /// A spare opened and claimed, if one is left; asks for more when few are.
    fn take_spare(&self) -> Option<(StagingFile, String, PathBuf)> {
        loop {
            let (id, left) = self.spares.pop();
            if left < SPARE_LOW && !self.spares.refilling.swap(true, Ordering::AcqRel) {
                let (spares, dir) = (self.spares.clone(), self.staging_dir());
                let spawned = std::thread::Builder::new()
                    .name("radris-spares".into())
                    .spawn(move || spares.refill(&dir));
                if spawned.is_err() {
                    self.spares.refilling.store(false, Ordering::Release);
                }
            }
            let id = id?;
            let path = self.staging_path(&id);
            match StagingFile::open_spare(&path, self.direct).and_then(|f| claim(&f).map(|()| f)) {
                Ok(file) => return Some((file, id, path)),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "spare staging file passed over");
                }
            }
        }
    }

    /// After a restart, in one listing of the staging directory: the ids of the empty files
    /// (spares a previous run made ahead, or a spare whose blob never reached the disk) and
    /// of the blobs left there. Only the server does this (in its crash recovery), before it
    /// ingests anything; it gives the spares back with [`BlobStore::adopt`].
    pub fn staging_split(&self) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let (empty, staged): (Vec<_>, Vec<_>) = self
            .staging_entries()?
            .into_iter()
            .partition(|(_, len)| *len == 0);
        Ok((
            empty.into_iter().map(|(id, _)| id).collect(),
            staged.into_iter().map(|(id, _)| id).collect(),
        ))
    }

    /// Use these empty staging files (from [`BlobStore::staging_split`]) as spares again.
    pub fn adopt(&self, spares: Vec<String>) {
        self.spares.extend(spares);
    }

    /// Move a sealed staging file to its final place (after the index committed).
    /// The series directory usually exists (every instance after a series' first): the
    /// rename is tried first, and the directories are made only when it finds none.
    ///
    /// Returns false, and does nothing, when the staging file is gone: a delete or an overwrite
    /// of the instance came after its row committed and removed it ([`BlobStore::remove`]).
    pub fn publish(&self, blob_id: &str, rel: &str) -> Result<bool, StoreError> {
        let from = self.staging_path(blob_id);
        let to = self.path_of(rel);
        match fs::rename(&from, &to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !from.exists() {
                    return Ok(false);
                }
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                match fs::rename(&from, &to) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && !from.exists() => {
                        Ok(false)
                    }
                    Err(e) => Err(io(&from)(e)),
                }
            }
            Err(e) => Err(io(&from)(e)),
        }
    }

    /// Delete a staging file that will never be published.
    pub fn discard(&self, blob_id: &str) {
        let p = self.staging_path(blob_id);
        if let Err(e) = fs::remove_file(&p) {
            tracing::warn!(path = %p.display(), error = %e, "could not remove staging file");
        }
    }

    /// Remove a blob and the directories it leaves empty: its staging file first (its row may
    /// have committed before the rename into place; a publish that comes after then finds
    /// nothing to publish), then the published file.
    pub fn remove(&self, rel: &str) -> Result<(), StoreError> {
        if let Some(id) = blob_id_of(rel) {
            let staged = self.staging_path(id);
            match fs::remove_file(&staged) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&staged)(e)),
            }
        }
        let p = self.path_of(rel);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
        // best effort: prune empty series/study/tenant directories
        let mut dir = p.parent().map(Path::to_path_buf);
        let stop = self.blobs_dir();
        while let Some(d) = dir {
            if d == stop || fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    /// The ids of blobs in staging (after a crash, or being written): not the spares.
    pub fn staged_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .staging_entries()?
            .into_iter()
            .filter(|(_, len)| *len > 0)
            .map(|(id, _)| id)
            .collect())
    }

    /// Every staging file's id and length.
    fn staging_entries(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let dir = self.staging_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match name.strip_suffix(".part") {
                Some(id) => match entry.metadata() {
                    Ok(m) => out.push((id.to_owned(), m.len())),
                    // published (or removed) since the listing: a beside-the-server reader
                    // (`admin verify`) sees the staging directory change under it
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&entry.path())(e)),
                },
                None => {
                    // not ours: leave it, but say so
                    tracing::warn!(file = %name, "unexpected file in staging directory");
                }
            }
        }
        Ok(out)
    }

    /// Every published blob, as paths relative to `blobs/`.
    pub fn list_published(&self) -> Result<Vec<String>, StoreError> {
        let root = self.blobs_dir();
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // a series or study folder emptied and removed since it was listed
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
                Err(e) => return Err(io(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io(&dir))?;
                let p = entry.path();
                if entry.file_type().map_err(io(&p))?.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        Ok(out)
    }

    /// SHA-256 (hex) and length of the plaintext of a published blob of `tenant`,
    /// authenticating every segment on the way.
    pub fn hash_file(&self, rel: &str, tenant: &str) -> Result<(String, u64), StoreError> {
        hash_plaintext(&self.path_of(rel), self.open_reader(rel, tenant)?)
    }

    /// The same of a blob still in staging.
    pub fn hash_staged(&self, blob_id: &str, tenant: &str) -> Result<(String, u64), StoreError> {
        hash_plaintext(
            &self.staging_path(blob_id),
            self.open_staged(blob_id, tenant)?,
        )
    }
}

/// SHA-256 (hex) and length of the plaintext `f` decrypts from the file at `p`.
fn hash_plaintext(p: &Path, mut f: BlobReader) -> Result<(String, u64), StoreError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(p))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(h.finalize()), len))
}

/// A blob being written in staging; hashes as it goes.
pub struct StagedBlob {
    id: String,
    path: PathBuf,
    /// The staging directory, to fsync when the file is new; `None` for a spare, whose name
    /// is already durable.
    dir_sync: Option<Arc<DirSync>>,
    writer: Option<SegmentWriter<StagingFile>>,
    /// `None` while the caller hashes the bytes itself (in parallel with the fsync).
    hasher: Option<Sha256>,
    len: u64,
}

/// SHA-256 (hex) of the concatenation of `parts`.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// A staging file that is complete and durable. `sha256` is empty when hashing was deferred.
#[derive(Debug, Clone)]
pub struct SealedBlob {
    pub id: String,
    pub sha256: String,
    pub len: u64,
}

impl StagedBlob {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the file is a spare made ahead, whose name is already durable: sealing it
    /// needs no directory fsync, and its row may commit before it is sealed (the archive's
    /// recovery checks such blobs).
    pub fn in_spare(&self) -> bool {
        self.dir_sync.is_none()
    }

    /// Stop hashing inline: the caller computes the SHA-256 of exactly the bytes written
    /// (see [`sha256_hex`]) and puts it into the [`SealedBlob`].
    pub fn defer_hash(&mut self) {
        self.hasher = None;
    }

    /// Resume inline hashing after [`StagedBlob::defer_hash`], feeding what was already written.
    pub fn resume_hash(&mut self, written: &[&[u8]]) {
        let mut h = Sha256::new();
        for part in written {
            h.update(part);
        }
        self.hasher = Some(h);
    }

    /// The blob will hold `total` plaintext bytes in all (those written so far included): lets
    /// a staging file written directly end on a block boundary, so none of it goes through
    /// the page cache (see [`SegmentWriter::expect_len`]).
    pub fn expect_len(&mut self, total: u64) {
        if let Some(w) = self.writer.as_mut() {
            w.expect_len(total);
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let w = self.writer.as_mut().ok_or_else(|| StoreError::Io {
            path: self.path.display().to_string(),
            source: std::io::Error::other("write after seal"),
        })?;
        w.write_all(buf).map_err(io(&self.path))?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(buf);
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Flush, fsync the file and the staging directory: after this returns the bytes survive a
    /// crash or power loss.
    pub fn seal(mut self) -> Result<SealedBlob, StoreError> {
        let writer = self.writer.take();
        let result = (|| {
            let w = writer.ok_or_else(|| StoreError::Io {
                path: self.path.display().to_string(),
                source: std::io::Error::other("sealed twice"),
            })?;
            let file = w.finish().map_err(io(&self.path))?;
            file.sync_all().map_err(io(&self.path))?;
            match &self.dir_sync {
                Some(dir) => dir.sync(),
                None => Ok(()),
            }
        })();
        match result {
            Ok(()) => Ok(SealedBlob {
                id: std::mem::take(&mut self.id),
                sha256: self
                    .hasher
                    .take()
                    .map(|h| hex::encode(h.finalize()))
                    .unwrap_or_default(),
                len: self.len,
            }),
            Err(e) => Err(e), // Drop removes the file
        }
    }
}

impl Drop for StagedBlob {
    /// A staged blob dropped without sealing (client vanished, parse failure) leaves nothing.
    fn drop(&mut self) {
        if !self.id.is_empty() {
            self.writer.take();
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// `<id>` of `…/<sop>.<id>.dcm` ([`BlobStore::final_rel_path`]); ids are hex, never dotted.
fn blob_id_of(rel: &str) -> Option<&str> {
    let (_, id) = rel.strip_suffix(".dcm")?.rsplit_once('.')?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &Path) -> BlobStore {
        BlobStore::open(
            dir,
            crate::crypto::tests::test_keys(dir, &["default"]).await,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn seal_publish_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let tenant = TenantId::parse("default").unwrap();
        let mut b = store.create(&tenant).unwrap();
        b.write(b"hello ").unwrap();
        b.write(b"world").unwrap();
        let sealed = b.seal().unwrap();
        assert_eq!(sealed.len, 11);
        assert_eq!(
            sealed.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(store.staged_ids().unwrap(), vec![sealed.id.clone()]);
        let rel = BlobStore::final_rel_path("default", "1.2", "1.2.3", "1.2.3.4", &sealed.id);
        assert!(store.publish(&sealed.id, &rel).unwrap());
        assert!(store.staged_ids().unwrap().is_empty());
        assert_eq!(store.hash_file(&rel, "default").unwrap().0, sealed.sha256);
        let raw = std::fs::read(store.path_of(&rel)).unwrap();
        assert!(!raw.windows(5).any(|w| w == b"hello"), "stored in clear");
        assert_eq!(store.list_published().unwrap(), vec![rel.clone()]);
        store.remove(&rel).unwrap();
        assert!(store.list_published().unwrap().is_empty());
        assert!(!store.blobs_dir().join("default").exists());
    }

    #[tokio::test]
    async fn a_blob_removed_before_its_publish_is_never_published() {
        // a delete or an overwrite that comes between a row's commit and its blob's rename
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let tenant = TenantId::parse("default").unwrap();
        let mut b = store.create(&tenant).unwrap();
        b.write(b"hello").unwrap();
        let sealed = b.seal().unwrap();
        let rel = BlobStore::final_rel_path("default", "1.2", "1.2.3", "1.2.3.4", &sealed.id);
        assert_eq!(BlobStore::id_of(&rel), Some(sealed.id.as_str()));
        // not in place yet: read from staging
        assert_eq!(store.hash_file(&rel, "default").unwrap().0, sealed.sha256);
        store.remove(&rel).unwrap();
        assert!(
            !store.publish(&sealed.id, &rel).unwrap(),
            "nothing to publish"
        );
        assert!(store.list_published().unwrap().is_empty());
        assert!(store.staged_ids().unwrap().is_empty());
        assert!(
            !store.blobs_dir().join("default").exists(),
            "no empty directories made"
        );
    }

    #[test]
    fn concurrent_directory_syncs_are_shared() {
        let dir = tempfile::tempdir().unwrap();
        let sync = std::sync::Arc::new(DirSync::new(dir.path().to_path_buf()));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let sync = sync.clone();
                s.spawn(move || sync.sync().unwrap());
            }
        });
        let st = sync.state.lock().unwrap();
        assert_eq!(st.requested, 8);
        assert_eq!(
            st.completed, 8,
            "every request is covered by a completed sync"
        );
        assert!(!st.running);
    }

    #[tokio::test]
    async fn dropped_blob_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let mut b = store.create(&TenantId::parse("default").unwrap()).unwrap();
        b.write(b"partial").unwrap();
        drop(b);
        assert!(store.staged_ids().unwrap().is_empty());
    }

    /// Wait until the store holds spares (its refill thread is done).
    fn wait_for_spares(store: &BlobStore) -> usize {
        for _ in 0..500 {
            let n = store.spares.ids.lock().unwrap().len();
            if n > 0 && !store.spares.refilling.load(Ordering::Acquire) {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no spares were made");
    }

    #[tokio::test]
    async fn spares_are_made_ahead_used_once_and_taken_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let tenant = TenantId::parse("default").unwrap();
        // none yet: a new file, whose seal fsyncs the directory; a batch is made meanwhile
        let first = store.create(&tenant).unwrap();
        assert!(first.dir_sync.is_some());
        assert_eq!(wait_for_spares(&store), SPARE_BATCH);
        assert!(
            store.staged_ids().unwrap().is_empty(),
            "spares are not blobs"
        );
        let mut sealed = Vec::new();
        for i in 0..3u8 {
            let mut b = store.create(&tenant).unwrap();
            assert!(b.dir_sync.is_none(), "written into a spare");
            b.write(&[i; 5000]).unwrap();
            sealed.push(b.seal().unwrap());
        }
        drop(first);
        let mut staged = store.staged_ids().unwrap();
        staged.sort();
        let mut ids: Vec<String> = sealed.iter().map(|s| s.id.clone()).collect();
        ids.sort();
        assert_eq!(staged, ids, "exactly the sealed blobs");
        for s in &sealed {
            let mut back = Vec::new();
            store
                .open_staged(&s.id, "default")
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back.len(), 5000);
        }
        // a restart takes back the empty ones, never a sealed blob
        let left = store.spares.ids.lock().unwrap().len();
        let again = self::store(dir.path()).await;
        let (empty, mut blobs_left) = again.staging_split().unwrap();
        blobs_left.sort();
        assert_eq!((empty.len(), blobs_left), (left, ids.clone()));
        again.adopt(empty);
        let adopted = again.spares.ids.lock().unwrap().clone();
        assert!(adopted.iter().all(|id| !ids.contains(id)));
    }

    #[tokio::test]
    async fn a_spare_held_or_written_elsewhere_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let staging = dir.path().join("staging");
        let (held, written, free) = ("0001", "0002", "0003");
        for id in [held, written, free] {
            std::fs::write(staging.join(format!("{id}.part")), b"").unwrap();
        }
        let (empty, _) = store.staging_split().unwrap();
        assert_eq!(empty.len(), 3);
        store.adopt(empty);
        // another process holds one, another wrote into one
        let other = StagingFile::open_spare(&staging.join(format!("{held}.part")), false).unwrap();
        claim(&other).unwrap();
        std::fs::write(staging.join(format!("{written}.part")), b"sealed elsewhere").unwrap();
        // the pool is a stack: taken in reverse order of adoption, so make that known
        *store.spares.ids.lock().unwrap() = vec![free.into(), written.into(), held.into()];
        store.spares.refilling.store(true, Ordering::Release); // no refill in this test
        let b = store.create(&TenantId::parse("default").unwrap()).unwrap();
        assert_eq!(b.id(), free);
        assert!(b.dir_sync.is_none());
        assert_eq!(
            std::fs::read(staging.join(format!("{written}.part"))).unwrap(),
            b"sealed elsewhere"
        );
        drop(other);
    }
}
