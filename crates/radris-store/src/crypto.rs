//! Envelope encryption of every stored blob.
//!
//! * Each tenant has data keys (DEKs, 256 bit), kept in the `data_keys` table only wrapped by
//!   a master key through a [`KeyWrapper`] (key file, environment or a KMS). One DEK per
//!   tenant is *active* (the newest not retired): new blobs use it. Older DEKs stay readable.
//! * Each blob gets its own key: HKDF-SHA256 of the tenant DEK with a random 32-byte salt
//!   from the blob header. So nonces never repeat under one key however many blobs a DEK
//!   protects, and a blob's key says nothing about another's.
//! * The blob is AES-256-GCM in 64 KiB segments (the STREAM construction): segment `i` has
//!   nonce `i ‖ last-flag`, and every segment authenticates the header as associated data.
//!   Reordered, truncated, extended or edited segments, a swapped header, a foreign key:
//!   each fails authentication. Segments allow random access (byte ranges, frames) without
//!   decrypting the whole file.
//!
//! File format (`v1`):
//! ```text
//! header (64 bytes): "RDXBLOB1" | key id (16, UUID) | salt (32) | segment size u32 LE | pad u32 LE
//! padding:           pad zero bytes (pad < S)
//! segments:          AES-256-GCM(plain[i*S .. (i+1)*S]) ‖ tag (16), the last one flagged
//! ```
//! The padding makes a staging file whose length is known ahead end on a block boundary, so
//! every byte of it is written directly (see [`crate::direct_io`]); blobs written without it
//! have pad 0. The pad length is in the header, which every segment authenticates.
//!
//! **Invariant:** no blob is written or read in clear; there is no plaintext fallback.
//!
//! Rotation without downtime: [`DataKeys::rotate`] makes a new active DEK (old blobs keep
//! theirs; `reencrypt` moves them over), [`DataKeys::rewrap_all`] re-wraps every DEK under
//! the current master key after a master key rotation. Readers refresh the key table when
//! they meet a key id they do not know.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use radris_core::TenantId;
use radris_core::keys::{KeyError, KeyWrapper};
use sqlx::{AnyPool, Row};

use crate::StoreError;

const MAGIC: &[u8; 8] = b"RDXBLOB1";
/// Header bytes before the first segment.
pub const HEADER_LEN: u64 = 64;
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
const HKDF_INFO: &[u8] = b"radris blob v1";

fn crypto_err(what: impl std::fmt::Display) -> StoreError {
    StoreError::Crypto(what.to_string())
}

fn fill_random(buf: &mut [u8]) -> Result<(), StoreError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| crypto_err("the random number generator failed"))
}

fn dek_context(tenant: &str, key_id: &str) -> String {
    format!("radris-dek|{tenant}|{key_id}")
}

/// The header of one blob and the AEAD key derived for it.
pub struct BlobKey {
    header: [u8; HEADER_LEN as usize],
    key: LessSafeKey,
}

impl BlobKey {
    fn derive(dek: &[u8; 32], header: [u8; HEADER_LEN as usize]) -> Result<Self, StoreError> {
        let salt = Salt::new(HKDF_SHA256, &header[24..56]);
        let prk = salt.extract(dek);
        let okm = prk
            .expand(&[HKDF_INFO], &AES_256_GCM)
            .map_err(|_| crypto_err("key derivation failed"))?;
        let key = LessSafeKey::new(UnboundKey::from(okm));
        Ok(BlobKey { header, key })
    }

    /// A fresh blob key under data key `key_id`.
    fn fresh(key_id: &uuid::Uuid, dek: &[u8; 32]) -> Result<Self, StoreError> {
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..24].copy_from_slice(key_id.as_bytes());
        fill_random(&mut header[24..56])?;
        header[56..60].copy_from_slice(&(SEGMENT as u32).to_le_bytes());
        Self::derive(dek, header)
    }

    /// The data key this blob key derives from.
    pub fn key_id(&self) -> Option<uuid::Uuid> {
        header_key_id(&self.header)
    }

    fn nonce(index: u64, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&index.to_be_bytes());
        n[8..].copy_from_slice(&u32::from(last).to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
}

/// The key id a blob header names (`None` if it is not a v1 blob header).
pub fn header_key_id(header: &[u8]) -> Option<uuid::Uuid> {
    header_pad(header)?;
    uuid::Uuid::from_slice(&header[8..24]).ok()
}

/// The padding between a v1 blob header and its first segment (`None` if not a v1 header).
fn header_pad(header: &[u8]) -> Option<u64> {
    if header.len() < HEADER_LEN as usize || &header[..8] != MAGIC {
        return None;
    }
    if header[56..60] != (SEGMENT as u32).to_le_bytes() {
        return None;
    }
    let pad = u32::from_le_bytes([header[60], header[61], header[62], header[63]]);
    (pad < SEGMENT as u32).then_some(u64::from(pad))
}

/// Encrypts a stream of plaintext into the segment format. Segments are sealed into an output
/// buffer that is written out once it holds [`SegmentWriter::FLUSH_AT`] bytes (and at the end),
/// so there are few write calls; `W` needs no buffering of its own. A whole segment inside one
/// `write_all` is sealed from the caller's memory straight into that buffer; only a segment
/// that spans calls (and the last one) is gathered there first and sealed in place. With an
/// alignment (for a file written around the page cache, see [`crate::direct_io`]) every write
/// starts at an aligned address and is a multiple of it, except the file's unaligned tail
/// (none when [`SegmentWriter::expect_len`] was told the length).
pub struct SegmentWriter<W: Write> {
    out: W,
    key: BlobKey,
    /// `buf[base..]`: sealed segments not yet written, then the plaintext of the open segment.
    buf: Vec<u8>,
    /// Where the output starts in `buf` (aligned).
    base: usize,
    align: usize,
    /// Where the open segment starts in `buf`.
    open: usize,
    index: u64,
}

impl<W: Write> SegmentWriter<W> {
    /// Sealed bytes gathered before a write to `out`: a CT or MR image (up to about 1 MiB)
    /// goes out in one write (each write to a staging file is a device request).
    pub const FLUSH_AT: usize = 1024 * 1024;

    pub fn new(out: W, key: BlobKey) -> Self {
        Self::with_alignment(out, key, 1)
    }

    /// Say how many plaintext bytes the blob will hold in all, before anything but the first
    /// bytes of the first segment is written: padding after the header then makes the file end
    /// on an alignment boundary, so with an alignment even its last write is whole blocks. A
    /// different total later only means the tail is written unaligned. Without an alignment,
    /// or once a segment is sealed, this does nothing.
    pub fn expect_len(&mut self, plain_total: u64) {
        let header_end = self.base + HEADER_LEN as usize;
        if self.align <= 1 || self.index > 0 || self.open != header_end {
            return;
        }
        let segments = plain_total.div_ceil(SEGMENT as u64).max(1);
        let file_len = HEADER_LEN + plain_total + segments * TAG as u64;
        let align = self.align as u64;
        let pad = ((align - file_len % align) % align) as usize;
        if pad == 0 {
            return;
        }
        self.key.header[60..64].copy_from_slice(&(pad as u32).to_le_bytes());
        self.buf[self.base..header_end].copy_from_slice(&self.key.header);
        // the open segment's first bytes move up behind the padding
        let gathered = self.buf.len() - self.open;
        self.buf.resize(self.buf.len() + pad, 0);
        self.buf
            .copy_within(self.open..self.open + gathered, self.open + pad);
        self.buf[self.open..self.open + pad].fill(0);
        self.open += pad;
    }

    /// Like [`SegmentWriter::new`], writing `out` in multiples of `align` (a power of two)
    /// from addresses that are multiples of it, except the tail written by `finish`.
    pub fn with_alignment(out: W, key: BlobKey, align: usize) -> Self {
        let align = align.max(1);
        // never grows past this, so the buffer (and its alignment) stays put
        let mut buf: Vec<u8> = Vec::with_capacity(align + Self::FLUSH_AT + SEGMENT + TAG + align);
        let (base, align) = match buf.as_ptr().align_offset(align) {
            off if off < align => (off, align),
            _ => (0, 1), // cannot align: plain writes
        };
        buf.resize(base, 0);
        buf.extend_from_slice(&key.header);
        SegmentWriter {
            out,
            key,
            open: buf.len(),
            buf,
            base,
            align,
            index: 0,
        }
    }

    fn seal_segment(&mut self, last: bool) -> std::io::Result<()> {
        let nonce = BlobKey::nonce(self.index, last);
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(
                nonce,
                Aad::from(&self.key.header[..]),
                &mut self.buf[self.open..],
            )
            .map_err(|_| std::io::Error::other("AES-GCM encryption failed"))?;
        self.buf.extend_from_slice(tag.as_ref());
        self.sealed(last)
    }

    /// Seal `plain`, one whole segment that is not the last, from the caller's memory
    /// straight into the output buffer: no copy of the plaintext first.
    fn seal_segment_from(&mut self, plain: &[u8]) -> std::io::Result<()> {
        debug_assert!(plain.len() == SEGMENT && self.buf.len() == self.open);
        let nonce = BlobKey::nonce(self.index, false);
        // zeroing the room is a store into cache; the copy it replaces read the plaintext
        // from wherever it was received
        self.buf.resize(self.open + SEGMENT + TAG, 0);
        let (out, tag) = self.buf[self.open..].split_at_mut(SEGMENT);
        self.key
            .key
            .seal_out_of_place_scatter(nonce, Aad::from(&self.key.header[..]), plain, out, &[], tag)
            .map_err(|_| std::io::Error::other("AES-GCM encryption failed"))?;
        self.sealed(false)
    }

    /// After a segment is sealed at the end of `buf`: write out what is due.
    fn sealed(&mut self, last: bool) -> std::io::Result<()> {
        self.index += 1;
        let pending = self.buf.len() - self.base;
        if last {
            // the aligned part in one write (direct, for a staging file), then the tail
            let whole = pending - pending % self.align;
            if whole > 0 {
                self.out
                    .write_all(&self.buf[self.base..self.base + whole])?;
            }
            self.out.write_all(&self.buf[self.base + whole..])?;
            self.buf.truncate(self.base);
        } else if pending >= Self::FLUSH_AT {
            // whole aligned blocks now; the rest moves to the front and goes with the next
            let whole = pending - pending % self.align;
            self.out
                .write_all(&self.buf[self.base..self.base + whole])?;
            self.buf.copy_within(self.base + whole.., self.base);
            self.buf.truncate(self.base + pending - whole);
        }
        self.open = self.buf.len();
        Ok(())
    }

    /// Append plaintext. A full segment is sealed only when more data follows, so the last
    /// one can carry the last-segment flag.
    pub fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            if self.buf.len() - self.open == SEGMENT {
                self.seal_segment(false)?;
            }
            // a whole segment with more after it is sealed from `data` itself
            if self.buf.len() == self.open && data.len() > SEGMENT {
                let (segment, rest) = data.split_at(SEGMENT);
                self.seal_segment_from(segment)?;
                data = rest;
                continue;
            }
            let take = (SEGMENT - (self.buf.len() - self.open)).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Seal the last segment, write out everything and return the inner writer (not
    /// flushed).
    pub fn finish(mut self) -> std::io::Result<W> {
        self.seal_segment(true)?;
        Ok(self.out)
    }
}

/// Random-access decryption of a stored blob: `Read + Seek`, and positional reads for the
/// structural check of a staged file.
pub struct BlobReader {
    file: File,
    key: BlobKey,
    /// Where the first segment starts (header and padding before it).
    data_start: u64,
    plain_len: u64,
    segments: u64,
    pos: u64,
    cache: Mutex<Option<(u64, Vec<u8>)>>,
    path: String,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("path", &self.path)
            .field("plain_len", &self.plain_len)
            .finish()
    }
}

impl BlobReader {
    /// Open `path`, take its key from `keys` (which must know the header's key id) and check
    /// that the layout is plausible. Authentication happens per segment as it is read.
    pub fn open(path: &Path, keys: &DataKeys, tenant: &str) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let total = file.metadata().map_err(io)?.len();
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| crypto_err(format!("{}: not an encrypted blob", path.display())))?;
        let key_id = header_key_id(&header)
            .ok_or_else(|| crypto_err(format!("{}: not an encrypted blob", path.display())))?;
        let data_start = HEADER_LEN + header_pad(&header).unwrap_or_default();
        let dek = keys.key_blocking(&key_id, tenant)?;
        let key = BlobKey::derive(&dek, header)?;
        let body = total.saturating_sub(data_start);
        let stride = (SEGMENT + TAG) as u64;
        let segments = body.div_ceil(stride);
        let last_len = body - segments.saturating_sub(1) * stride;
        if segments == 0 || last_len < TAG as u64 {
            return Err(crypto_err(format!(
                "{}: truncated encrypted blob",
                path.display()
            )));
        }
        let reader = BlobReader {
            file,
            key,
            data_start,
            plain_len: body - segments * TAG as u64,
            segments,
            pos: 0,
            cache: Mutex::new(None),
            path: path.display().to_string(),
        };
        if reader.plain_len == 0 {
            // nothing will ever be read: authenticate the (empty) last segment now
            reader.segment(0).map_err(|e| crypto_err(e.to_string()))?;
        }
        Ok(reader)
    }

    /// The data key the blob is encrypted under.
    pub fn key_id(&self) -> Option<uuid::Uuid> {
        self.key.key_id()
    }

    /// Plaintext length.
    pub fn len(&self) -> u64 {
        self.plain_len
    }

    pub fn is_empty(&self) -> bool {
        self.plain_len == 0
    }

    fn segment(&self, index: u64) -> std::io::Result<Vec<u8>> {
        let stride = (SEGMENT + TAG) as u64;
        let start = self.data_start + index * stride;
        let last = index + 1 == self.segments;
        let len = if last {
            self.plain_len - index * SEGMENT as u64 + TAG as u64
        } else {
            stride
        };
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, start)?;
        let plain_len = self
            .key
            .key
            .open_in_place(
                BlobKey::nonce(index, last),
                Aad::from(&self.key.header[..]),
                &mut buf,
            )
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: segment {index} failed authentication (tampered, truncated or wrong key)",
                        self.path
                    ),
                )
            })?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// Copy plaintext at `pos` into `out`; returns the bytes copied (0 at the end).
    pub fn read_at(&self, pos: u64, out: &mut [u8]) -> std::io::Result<usize> {
        if pos >= self.plain_len || out.is_empty() {
            return Ok(0);
        }
        let index = pos / SEGMENT as u64;
        let offset = (pos % SEGMENT as u64) as usize;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| std::io::Error::other("blob reader cache poisoned"))?;
        let hit = matches!(&*cache, Some((i, _)) if *i == index);
        if !hit {
            *cache = Some((index, self.segment(index)?));
        }
        let Some((_, seg)) = cache.as_ref() else {
            return Ok(0);
        };
        let avail = seg.get(offset..).unwrap_or_default();
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        Ok(n)
    }

    /// Fill `out` from `pos` completely, or fail.
    pub fn read_exact_at(&self, mut pos: u64, mut out: &mut [u8]) -> std::io::Result<()> {
        while !out.is_empty() {
            let n = self.read_at(pos, out)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            pos += n as u64;
            out = &mut out[n..];
        }
        Ok(())
    }

    /// The whole plaintext.
    pub fn read_all(mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.plain_len as usize);
        self.read_to_end(&mut out)?;
        Ok(out)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // whole segments go straight into the caller's buffer without the cache
        let n = self.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.plain_len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of a blob",
            )),
        }
    }
}

/// Positional reads for `radris_dicom::wire` (the structural check of large staged files).
pub struct ReaderSource<'a> {
    pub reader: &'a BlobReader,
    pub offset: u64,
}

impl radris_dicom::wire::Source for ReaderSource<'_> {
    fn read_into(&self, pos: usize, buf: &mut [u8]) -> bool {
        self.reader
            .read_exact_at(self.offset + pos as u64, buf)
            .is_ok()
    }
}

/// Sequential reads from `pos` over a shared [`BlobReader`].
pub struct ReadFrom<'a> {
    pub reader: &'a BlobReader,
    pub pos: u64,
}

impl Read for ReadFrom<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Master keys held in memory (from a key file or the environment): AES-256-GCM wrapping
/// with the context as associated data. The current key wraps; previous keys (after a
/// master key rotation) still unwrap until [`DataKeys::rewrap_all`] has run.
pub struct MemoryKek {
    current: (String, [u8; 32]),
    previous: Vec<(String, [u8; 32])>,
}

impl MemoryKek {
    pub fn new(key: [u8; 32]) -> Self {
        MemoryKek {
            current: (Self::id_of(&key), key),
            previous: Vec::new(),
        }
    }

    /// Also accept keys wrapped by `old` master keys.
    pub fn with_previous(mut self, old: impl IntoIterator<Item = [u8; 32]>) -> Self {
        self.previous = old.into_iter().map(|k| (Self::id_of(&k), k)).collect();
        self
    }

    /// A public, stable name for a master key (a hash prefix, not the key).
    pub fn id_of(key: &[u8; 32]) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::new()
            .chain_update(b"radris-kek-id")
            .chain_update(key)
            .finalize();
        format!("kek-{}", hex::encode(&d[..8]))
    }

    fn cipher(key: &[u8; 32]) -> Result<LessSafeKey, KeyError> {
        UnboundKey::new(&AES_256_GCM, key)
            .map(LessSafeKey::new)
            .map_err(|_| KeyError::Provider("bad master key length".into()))
    }
}

impl KeyWrapper for MemoryKek {
    fn current_kek_id(&self) -> String {
        self.current.0.clone()
    }

    fn wrap(&self, key: &[u8; 32], context: &str) -> Result<(String, Vec<u8>), KeyError> {
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| KeyError::Provider("random number generator failed".into()))?;
        let mut buf = key.to_vec();
        Self::cipher(&self.current.1)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| KeyError::Provider("wrapping failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend(buf);
        Ok((self.current.0.clone(), out))
    }

    fn unwrap(&self, kek_id: &str, wrapped: &[u8], context: &str) -> Result<[u8; 32], KeyError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|(id, _)| id == kek_id)
            .map(|(_, k)| k)
            .ok_or_else(|| KeyError::UnknownKek(kek_id.to_owned()))?;
        if wrapped.len() < 12 + 32 + TAG {
            return Err(KeyError::Unwrap);
        }
        let (nonce, ct) = wrapped.split_at(12);
        let mut buf = ct.to_vec();
        let plain = Self::cipher(key)?
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Unwrap)?,
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| KeyError::Unwrap)?;
        <[u8; 32]>::try_from(&plain[..]).map_err(|_| KeyError::Unwrap)
    }
}

/// A data key as the table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyInfo {
    pub key_id: String,
    pub tenant: String,
    pub kek_id: String,
    pub created_at: i64,
    pub retired_at: i64,
}

struct Unwrapped {
    tenant: String,
    key: [u8; 32],
}

/// The data keys of all tenants, unwrapped in memory (a few per tenant).
pub struct DataKeys {
    pool: AnyPool,
    wrapper: Arc<dyn KeyWrapper>,
    keys: RwLock<HashMap<uuid::Uuid, Unwrapped>>,
    active: RwLock<HashMap<String, uuid::Uuid>>,
    create: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKeys(…)")
    }
}

fn key_err(e: KeyError) -> StoreError {
    StoreError::Crypto(e.to_string())
}

impl DataKeys {
    /// Load (and unwrap) every data key.
    pub async fn load(pool: AnyPool, wrapper: Arc<dyn KeyWrapper>) -> Result<Self, StoreError> {
        let keys = DataKeys {
            pool,
            wrapper,
            keys: RwLock::default(),
            active: RwLock::default(),
            create: tokio::sync::Mutex::new(()),
        };
        keys.refresh().await?;
        Ok(keys)
    }

    /// Re-read the key table (keys made by another process: rotation, an import tool).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, tenant_id, kek_id, wrapped, created_at, retired_at FROM data_keys ORDER BY created_at, key_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading data keys", e))?;
        let mut keys = HashMap::new();
        let mut active = HashMap::new();
        for row in rows {
            let get = |c: &str| -> Result<String, StoreError> {
                row.try_get::<String, _>(c)
                    .map_err(|e| StoreError::db("reading data keys", e))
            };
            let key_id = get("key_id")?;
            let tenant = get("tenant_id")?;
            let kek_id = get("kek_id")?;
            let wrapped = hex::decode(get("wrapped")?)
                .map_err(|_| crypto_err(format!("data key {key_id}: wrapped value is not hex")))?;
            let retired: i64 = row
                .try_get("retired_at")
                .map_err(|e| StoreError::db("reading data keys", e))?;
            let id = uuid::Uuid::parse_str(&key_id)
                .map_err(|_| crypto_err(format!("data key id {key_id:?} is not a UUID")))?;
            let key = self
                .wrapper
                .unwrap(&kek_id, &wrapped, &dek_context(&tenant, &key_id))
                .map_err(|e| crypto_err(format!("data key {key_id} of tenant {tenant}: {e}")))?;
            if retired == 0 {
                // newest wins (rows are ordered by creation)
                active.insert(tenant.clone(), id);
            }
            keys.insert(id, Unwrapped { tenant, key });
        }
        if let (Ok(mut k), Ok(mut a)) = (self.keys.write(), self.active.write()) {
            *k = keys;
            *a = active;
        }
        Ok(())
    }

    /// Make sure each tenant has an active data key.
    pub async fn ensure(&self, tenants: &[TenantId]) -> Result<(), StoreError> {
        for t in tenants {
            if self.active_id(t.as_str()).is_none() {
                let _guard = self.create.lock().await;
                self.refresh().await?;
                if self.active_id(t.as_str()).is_none() {
                    self.insert_new(t.as_str()).await?;
                }
            }
        }
        Ok(())
    }

    async fn insert_new(&self, tenant: &str) -> Result<uuid::Uuid, StoreError> {
        let id = uuid::Uuid::now_v7();
        let mut key = [0u8; 32];
        fill_random(&mut key)?;
        let (kek_id, wrapped) = self
            .wrapper
            .wrap(&key, &dek_context(tenant, &id.to_string()))
            .map_err(key_err)?;
        sqlx::query(
            "INSERT INTO data_keys (key_id, tenant_id, kek_id, wrapped, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(id.to_string())
        .bind(tenant)
        .bind(&kek_id)
        .bind(hex::encode(&wrapped))
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("storing a data key", e))?;
        self.refresh().await?;
        Ok(id)
    }

    /// A new active data key for `tenant`; the previous ones are retired (still readable).
    /// New blobs use the new key at once in this process, within a refresh elsewhere.
    pub async fn rotate(&self, tenant: &TenantId) -> Result<uuid::Uuid, StoreError> {
        let _guard = self.create.lock().await;
        sqlx::query("UPDATE data_keys SET retired_at = $1 WHERE tenant_id = $2 AND retired_at = 0")
            .bind(now_millis())
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db("retiring data keys", e))?;
        self.insert_new(tenant.as_str()).await
    }

    /// Re-wrap every data key under the wrapper's current master key (after a master key
    /// rotation; the old master key can be dropped afterwards). Returns how many changed.
    pub async fn rewrap_all(&self) -> Result<usize, StoreError> {
        let current = self.wrapper.current_kek_id();
        let rows = sqlx::query("SELECT key_id, tenant_id, kek_id FROM data_keys")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::db("reading data keys", e))?;
        let mut changed = 0;
        for row in rows {
            let get = |c: &str| -> Result<String, StoreError> {
                row.try_get::<String, _>(c)
                    .map_err(|e| StoreError::db("reading data keys", e))
            };
            let (key_id, tenant, kek) = (get("key_id")?, get("tenant_id")?, get("kek_id")?);
            if kek == current {
                continue;
            }
            let id = uuid::Uuid::parse_str(&key_id)
                .map_err(|_| crypto_err(format!("data key id {key_id:?} is not a UUID")))?;
            let key = self.key_blocking_inner(&id, &tenant)?;
            let (kek_id, wrapped) = self
                .wrapper
                .wrap(&key, &dek_context(&tenant, &key_id))
                .map_err(key_err)?;
            sqlx::query("UPDATE data_keys SET kek_id = $1, wrapped = $2 WHERE key_id = $3")
                .bind(&kek_id)
                .bind(hex::encode(&wrapped))
                .bind(&key_id)
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db("re-wrapping a data key", e))?;
            changed += 1;
        }
        Ok(changed)
    }

    /// The data keys of a tenant, oldest first.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<DataKeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, tenant_id, kek_id, created_at, retired_at FROM data_keys WHERE tenant_id = $1 ORDER BY created_at, key_id",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading data keys", e))?;
        rows.iter()
            .map(|r| {
                let e = |e| StoreError::db("reading data keys", e);
                Ok(DataKeyInfo {
                    key_id: r.try_get("key_id").map_err(e)?,
                    tenant: r.try_get("tenant_id").map_err(e)?,
                    kek_id: r.try_get("kek_id").map_err(e)?,
                    created_at: r.try_get("created_at").map_err(e)?,
                    retired_at: r.try_get("retired_at").map_err(e)?,
                })
            })
            .collect()
    }

    /// Whether every tenant has an active key loaded.
    pub fn have_active(&self, tenants: &[TenantId]) -> bool {
        tenants.iter().all(|t| self.active_id(t.as_str()).is_some())
    }

    fn active_id(&self, tenant: &str) -> Option<uuid::Uuid> {
        self.active.read().ok().and_then(|a| a.get(tenant).copied())
    }

    /// A fresh blob key under the tenant's active data key (from memory; never blocks).
    pub fn new_blob_key(&self, tenant: &TenantId) -> Result<BlobKey, StoreError> {
        let id = self.active_id(tenant.as_str()).ok_or_else(|| {
            crypto_err(format!(
                "tenant {tenant} has no data key (is it configured?)"
            ))
        })?;
        let dek = self.key_blocking_inner(&id, tenant.as_str())?;
        BlobKey::fresh(&id, &dek)
    }

    fn key_blocking_inner(&self, id: &uuid::Uuid, tenant: &str) -> Result<[u8; 32], StoreError> {
        let keys = self
            .keys
            .read()
            .map_err(|_| crypto_err("data key cache poisoned"))?;
        match keys.get(id) {
            Some(k) if k.tenant == tenant => Ok(k.key),
            Some(_) => Err(crypto_err(format!(
                "data key {id} belongs to another tenant than {tenant}"
            ))),
            None => Err(StoreError::UnknownKey(id.to_string())),
        }
    }

    /// The data key `id` of `tenant` from memory. An unknown id is
    /// [`StoreError::UnknownKey`]: refresh ([`DataKeys::refresh`]) and retry.
    pub fn key_blocking(&self, id: &uuid::Uuid, tenant: &str) -> Result<[u8; 32], StoreError> {
        self.key_blocking_inner(id, tenant)
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub struct TestWrapper(pub [u8; 32], pub &'static str);

    impl KeyWrapper for TestWrapper {
        fn current_kek_id(&self) -> String {
            self.1.to_owned()
        }
        fn wrap(&self, key: &[u8; 32], context: &str) -> Result<(String, Vec<u8>), KeyError> {
            let (_, w) = MemoryKek::new(self.0).wrap(key, context)?;
            Ok((self.1.to_owned(), w))
        }
        fn unwrap(&self, kek: &str, wrapped: &[u8], context: &str) -> Result<[u8; 32], KeyError> {
            if kek != self.1 {
                return Err(KeyError::UnknownKek(kek.into()));
            }
            let m = MemoryKek::new(self.0);
            m.unwrap(&m.current_kek_id(), wrapped, context)
        }
    }

    fn write_blob(path: &Path, key: BlobKey, plain: &[u8], chunk: usize) {
        let mut w = SegmentWriter::new(File::create(path).unwrap(), key);
        for c in plain.chunks(chunk.max(1)) {
            w.write_all(c).unwrap();
        }
        if plain.is_empty() {
            w.write_all(&[]).unwrap();
        }
        w.finish().unwrap().sync_all().unwrap();
    }

    /// Data keys for `tenants` in a SQLite index under `dir`.
    pub(crate) async fn test_keys(dir: &Path, tenants: &[&str]) -> Arc<DataKeys> {
        let url = format!("sqlite://{}", dir.join("keys.sqlite").display());
        let index = crate::Index::open(&url).await.unwrap();
        let keys = DataKeys::load(
            index.pool().clone(),
            Arc::new(TestWrapper([7; 32], "kek-1")),
        )
        .await
        .unwrap();
        let tenants: Vec<TenantId> = tenants
            .iter()
            .map(|t| TenantId::parse(t).unwrap())
            .collect();
        keys.ensure(&tenants).await.unwrap();
        Arc::new(keys)
    }

    async fn keys() -> (tempfile::TempDir, Arc<DataKeys>) {
        let dir = tempfile::tempdir().unwrap();
        let keys = test_keys(dir.path(), &["a", "b"]).await;
        (dir, keys)
    }

    #[tokio::test]
    async fn round_trip_at_every_size_and_random_access() {
        let (dir, keys) = keys().await;
        let a = TenantId::parse("a").unwrap();
        for size in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 17] {
            let plain: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("b{size}"));
            write_blob(&path, keys.new_blob_key(&a).unwrap(), &plain, 1000);
            let on_disk = std::fs::read(&path).unwrap();
            if size > 64 {
                assert!(
                    !on_disk.windows(64).any(|w| w == &plain[..64]),
                    "plaintext visible on disk"
                );
            }
            let r = BlobReader::open(&path, &keys, "a").unwrap();
            assert_eq!(r.len(), size as u64);
            if size > 10 {
                let mut mid = vec![0u8; 10];
                r.read_exact_at(size as u64 - 10, &mut mid).unwrap();
                assert_eq!(mid, plain[size - 10..]);
            }
            assert_eq!(r.read_all().unwrap(), plain, "size {size}");
        }
    }

    /// Whole segments sealed from the caller's memory make the same bytes as segments gathered
    /// and sealed in place, however the plaintext is split across calls.
    #[test]
    fn sealing_from_the_callers_memory_matches_sealing_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[56..60].copy_from_slice(&(SEGMENT as u32).to_le_bytes());
        let dek = [7u8; 32];
        let size = 20 * SEGMENT + 3; // past FLUSH_AT: a write in the middle, then the tail
        let plain: Vec<u8> = (0..size).map(|i| (i * 13 % 241) as u8).collect();
        let mut files = Vec::new();
        for chunk in [1000, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5, size] {
            let path = dir.path().join(format!("c{chunk}"));
            write_blob(&path, BlobKey::derive(&dek, header).unwrap(), &plain, chunk);
            files.push((chunk, std::fs::read(&path).unwrap()));
        }
        let (_, reference) = &files[0];
        for (chunk, bytes) in &files[1..] {
            assert!(
                bytes == reference,
                "chunks of {chunk} differ from chunks of 1000"
            );
        }
    }

    /// The writer of staging files: aligned blocks, written around the page cache where the
    /// file system allows, make the same blob as plain writes.
    #[tokio::test]
    async fn aligned_writes_to_a_direct_staging_file_round_trip() {
        use crate::direct_io::supported;
        let (dir, keys) = keys().await;
        let a = TenantId::parse("a").unwrap();
        let direct = supported(dir.path());
        for size in [
            0,
            1,
            SEGMENT,
            4 * SEGMENT - 50,
            4 * SEGMENT + 1,
            9 * SEGMENT + 4097,
            20 * SEGMENT + 3,
        ] {
            for chunk in [1000, 300_000] {
                let plain: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
                let path = dir.path().join(format!("d{size}-{chunk}"));
                let mut w = staging_writer(&path, direct, &keys, &a);
                for c in plain.chunks(chunk) {
                    w.write_all(c).unwrap();
                }
                w.finish().unwrap().sync_all().unwrap();
                let reference = dir.path().join(format!("p{size}-{chunk}"));
                write_blob(&reference, keys.new_blob_key(&a).unwrap(), &plain, chunk);
                assert_eq!(
                    std::fs::metadata(&path).unwrap().len(),
                    std::fs::metadata(&reference).unwrap().len()
                );
                let r = BlobReader::open(&path, &keys, "a").unwrap();
                assert_eq!(r.read_all().unwrap(), plain, "size {size}, chunk {chunk}");
            }
        }
    }

    /// A staging file whose length is said ahead is padded to end on a block: written
    /// directly to its last byte, and read back the same, whatever the chunks.
    #[tokio::test]
    async fn a_staging_file_of_known_length_is_padded_and_written_directly() {
        use crate::direct_io::{ALIGN, supported};
        let (dir, keys) = keys().await;
        let a = TenantId::parse("a").unwrap();
        let direct = supported(dir.path());
        for size in [0, 1, 300, SEGMENT, 8 * SEGMENT + 13_000, 20 * SEGMENT + 3] {
            for chunk in [300, 200_000] {
                let plain: Vec<u8> = (0..size).map(|i| (i * 11 % 239) as u8).collect();
                let path = dir.path().join(format!("x{size}-{chunk}"));
                let mut w = staging_writer(&path, direct, &keys, &a);
                // the first bytes may already be written, as a file meta group is
                let (first, rest) = plain.split_at(size.min(132));
                w.write_all(first).unwrap();
                w.expect_len(size as u64);
                for c in rest.chunks(chunk) {
                    w.write_all(c).unwrap();
                }
                let file = w.finish().unwrap();
                file.sync_all().unwrap();
                let on_disk = std::fs::metadata(&path).unwrap().len();
                if direct {
                    assert_eq!(on_disk % ALIGN as u64, 0, "size {size}: {on_disk} bytes");
                    assert!(!file.wrote_through_cache(), "size {size}, chunk {chunk}");
                }
                let r = BlobReader::open(&path, &keys, "a").unwrap();
                assert_eq!(r.len(), size as u64);
                assert_eq!(r.read_all().unwrap(), plain, "size {size}, chunk {chunk}");
            }
        }
        // the pad length is authenticated: another one fails to open or to decrypt
        let path = dir.path().join(format!("x{}-300", 8 * SEGMENT + 13_000));
        let mut bytes = std::fs::read(&path).unwrap();
        let pad = u32::from_le_bytes(bytes[60..64].try_into().unwrap());
        assert_ne!(pad, 0, "this size needs padding");
        bytes[60..64].copy_from_slice(&(pad - 1).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let read = BlobReader::open(&path, &keys, "a")
            .ok()
            .and_then(|r| r.read_all().ok());
        assert!(read.is_none(), "a changed pad length must not read");
    }

    /// A writer of a new staging file at `path`, aligned as for direct writes.
    fn staging_writer(
        path: &Path,
        direct: bool,
        keys: &DataKeys,
        tenant: &TenantId,
    ) -> SegmentWriter<crate::direct_io::StagingFile> {
        let file = crate::direct_io::StagingFile::create(path, direct).unwrap();
        SegmentWriter::with_alignment(
            file,
            keys.new_blob_key(tenant).unwrap(),
            crate::direct_io::ALIGN,
        )
    }

    #[tokio::test]
    async fn tampering_truncation_and_foreign_keys_fail() {
        let (dir, keys) = keys().await;
        let a = TenantId::parse("a").unwrap();
        let plain = vec![42u8; 2 * SEGMENT + 5];
        let path = dir.path().join("blob");
        write_blob(&path, keys.new_blob_key(&a).unwrap(), &plain, 4096);
        let good = std::fs::read(&path).unwrap();
        // every flipped byte (header, any segment, any tag) fails on read
        for pos in [0usize, 9, 30, 58, 64, 100, SEGMENT + 70, good.len() - 1] {
            let mut bad = good.clone();
            bad[pos] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let read = BlobReader::open(&path, &keys, "a")
                .and_then(|r| r.read_all().map_err(|e| StoreError::Crypto(e.to_string())));
            assert!(read.is_err(), "flipped byte {pos} went unnoticed");
        }
        // truncated at a segment boundary: the last-segment flag catches it
        std::fs::write(&path, &good[..HEADER_LEN as usize + SEGMENT + TAG]).unwrap();
        assert!(
            BlobReader::open(&path, &keys, "a")
                .unwrap()
                .read_all()
                .is_err()
        );
        // the blob of tenant a cannot be opened as tenant b's
        std::fs::write(&path, &good).unwrap();
        assert!(BlobReader::open(&path, &keys, "b").is_err());
        assert_eq!(
            BlobReader::open(&path, &keys, "a")
                .unwrap()
                .read_all()
                .unwrap(),
            plain
        );
    }

    #[tokio::test]
    async fn rotation_keeps_old_blobs_readable_and_rewrap_changes_the_kek() {
        let (dir, keys) = keys().await;
        let a = TenantId::parse("a").unwrap();
        let old = dir.path().join("old");
        write_blob(&old, keys.new_blob_key(&a).unwrap(), b"before rotation", 7);
        let before = keys.list(&a).await.unwrap();
        let new_id = keys.rotate(&a).await.unwrap();
        let after = keys.list(&a).await.unwrap();
        assert_eq!(after.len(), before.len() + 1);
        assert!(after.iter().filter(|k| k.retired_at == 0).count() == 1);
        assert_eq!(after.last().unwrap().key_id, new_id.to_string());
        let new = dir.path().join("new");
        write_blob(&new, keys.new_blob_key(&a).unwrap(), b"after rotation", 7);
        assert_eq!(
            header_key_id(&std::fs::read(&new).unwrap()).unwrap(),
            new_id
        );
        assert_eq!(
            BlobReader::open(&old, &keys, "a")
                .unwrap()
                .read_all()
                .unwrap(),
            b"before rotation"
        );
        // master key rotation: a wrapper that knows both KEKs re-wraps everything
        struct Both(TestWrapper, TestWrapper);
        impl KeyWrapper for Both {
            fn current_kek_id(&self) -> String {
                self.1.current_kek_id()
            }
            fn wrap(&self, k: &[u8; 32], c: &str) -> Result<(String, Vec<u8>), KeyError> {
                self.1.wrap(k, c)
            }
            fn unwrap(&self, kek: &str, w: &[u8], c: &str) -> Result<[u8; 32], KeyError> {
                self.0
                    .unwrap(kek, w, c)
                    .or_else(|_| self.1.unwrap(kek, w, c))
            }
        }
        let both = DataKeys::load(
            keys.pool.clone(),
            Arc::new(Both(
                TestWrapper([7; 32], "kek-1"),
                TestWrapper([9; 32], "kek-2"),
            )),
        )
        .await
        .unwrap();
        assert_eq!(both.rewrap_all().await.unwrap(), 3);
        // only the new master key is needed now
        let only_new = DataKeys::load(keys.pool.clone(), Arc::new(TestWrapper([9; 32], "kek-2")))
            .await
            .unwrap();
        assert_eq!(
            BlobReader::open(&old, &only_new, "a")
                .unwrap()
                .read_all()
                .unwrap(),
            b"before rotation"
        );
        // and a wrong master key cannot load the table at all
        assert!(
            DataKeys::load(keys.pool.clone(), Arc::new(TestWrapper([1; 32], "kek-2")))
                .await
                .is_err()
        );
    }
}

#[cfg(test)]
mod throughput {
    use super::tests::test_keys;
    use super::*;

    /// Prints encryption and authenticated-decryption throughput (no assertion on time).
    #[tokio::test]
    async fn prints_throughput() {
        let dir = tempfile::tempdir().unwrap();
        let keys = test_keys(dir.path(), &["t"]).await;
        let t = TenantId::parse("t").unwrap();
        let plain = vec![7u8; 32 << 20];
        let path = dir.path().join("big");
        let start = std::time::Instant::now();
        let mut w = SegmentWriter::new(
            Vec::with_capacity(plain.len() + (1 << 20)),
            keys.new_blob_key(&t).unwrap(),
        );
        w.write_all(&plain).unwrap();
        let out = w.finish().unwrap();
        let enc = start.elapsed();
        std::fs::write(&path, &out).unwrap();
        let start = std::time::Instant::now();
        let back = BlobReader::open(&path, &keys, "t")
            .unwrap()
            .read_all()
            .unwrap();
        let dec = start.elapsed();
        assert_eq!(back.len(), plain.len());
        let mb = plain.len() as f64 / (1 << 20) as f64;
        println!(
            "blob crypto: encrypt {:.0} MiB/s, decrypt+authenticate {:.0} MiB/s",
            mb / enc.as_secs_f64(),
            mb / dec.as_secs_f64()
        );
    }
}
