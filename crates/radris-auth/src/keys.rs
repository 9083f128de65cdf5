//! The master key and authenticated encryption of small secrets (TOTP seeds today, the blob
//! data keys of envelope encryption next).
//!
//! The key comes from a [`KeyProvider`]: `RADRIS_MASTER_KEY` (64 hex digits) or a key file
//! (`<data dir>/keys/master.key`, created with mode 0600 on first start). A KMS plugs in as
//! another provider. Sealed values are `v1:` + hex(nonce ‖ AES-256-GCM ciphertext+tag), with
//! associated data binding each value to its purpose and owner, so a sealed value copied to
//! another row or column does not open.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::AuthError;

/// Where the master key comes from.
pub trait KeyProvider: Send + Sync {
    fn master_key(&self) -> Result<[u8; 32], AuthError>;
    /// Master keys retired by a rotation: still tried when a value does not open under the
    /// current key (values sealed before the rotation).
    fn previous_keys(&self) -> Vec<[u8; 32]> {
        Vec::new()
    }
}

/// A master key held in memory.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    previous: Vec<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl KeyProvider for MasterKey {
    fn master_key(&self) -> Result<[u8; 32], AuthError> {
        Ok(self.key)
    }
    fn previous_keys(&self) -> Vec<[u8; 32]> {
        self.previous.clone()
    }
}

fn parse_hex_key(text: &str) -> Result<[u8; 32], AuthError> {
    let bytes = hex::decode(text.trim())
        .map_err(|_| AuthError::Invalid("the master key must be 64 hex digits".into()))?;
    bytes
        .try_into()
        .map_err(|_| AuthError::Invalid("the master key must be 64 hex digits".into()))
}

impl MasterKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        MasterKey {
            key,
            previous: Vec::new(),
        }
    }

    /// `RADRIS_MASTER_KEY` if set, else the key file under `data_dir`, created when absent.
    /// Retired keys come from `RADRIS_MASTER_KEY_PREVIOUS` (comma-separated hex) and
    /// `<data dir>/keys/previous/*.key` (where [`rotate_master_key`] puts them).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AuthError> {
        let mut previous = Vec::new();
        if let Ok(text) = std::env::var("RADRIS_MASTER_KEY_PREVIOUS") {
            for k in text.split(',').filter(|k| !k.trim().is_empty()) {
                previous.push(parse_hex_key(k)?);
            }
        }
        let dir = data_dir.join("keys").join("previous");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "key"))
            {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| AuthError::Invalid(format!("{}: {e}", f.display())))?;
                previous.push(parse_hex_key(&text)?);
            }
        }
        if let Ok(text) = std::env::var("RADRIS_MASTER_KEY") {
            return Ok(MasterKey {
                key: parse_hex_key(&text)?,
                previous,
            });
        }
        let (key, created) = key_file(data_dir, "master.key")?;
        if created {
            tracing::warn!(dir = %data_dir.join("keys").display(), "created a new master key: back it up, encrypted secrets cannot be read without it");
        }
        Ok(MasterKey { key, previous })
    }

    /// The retired master keys this provider still opens with.
    pub fn previous(&self) -> &[[u8; 32]] {
        &self.previous
    }
}

/// Rotate the master key file: the current `<data dir>/keys/master.key` moves to
/// `keys/previous/<n>.key` (still used to open values sealed before), a new random key takes
/// its place. Run `radris admin keys rewrap` afterwards so the data keys are wrapped by the
/// new key. Refused when the key comes from `RADRIS_MASTER_KEY` (rotate it where it lives).
pub fn rotate_master_key(data_dir: &Path) -> Result<(), AuthError> {
    if std::env::var("RADRIS_MASTER_KEY").is_ok() {
        return Err(AuthError::Invalid(
            "the master key comes from RADRIS_MASTER_KEY: set the new key there and the old one in RADRIS_MASTER_KEY_PREVIOUS".into(),
        ));
    }
    let keys = data_dir.join("keys");
    let current = keys.join("master.key");
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| AuthError::Invalid(format!("{p}: {e}"))
    };
    if !current.exists() {
        return Err(AuthError::Invalid(
            "there is no master key file to rotate".into(),
        ));
    }
    let prev = keys.join("previous");
    std::fs::create_dir_all(&prev).map_err(io(&prev))?;
    let n = std::fs::read_dir(&prev).map_err(io(&prev))?.count();
    let target = prev.join(format!("{n:04}.key"));
    std::fs::rename(&current, &target).map_err(io(&current))?;
    key_file(data_dir, "master.key")?;
    for d in [&prev, &keys] {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(io(d))?;
    }
    Ok(())
}

/// The server's audit signing key (Ed25519): `<data dir>/keys/audit-signing.key` (the seed
/// as hex, mode 0600), created on first start.
pub fn audit_signing_key(data_dir: &Path) -> Result<ed25519_dalek::SigningKey, AuthError> {
    let (seed, _) = key_file(data_dir, "audit-signing.key")?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// The Ed25519 key that signs radiology reports (created on first use, `keys/report-signing.key`).
pub fn report_signing_key(data_dir: &Path) -> Result<ed25519_dalek::SigningKey, AuthError> {
    let (seed, _) = key_file(data_dir, "report-signing.key")?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// Read a 32-byte key kept as hex in `<data dir>/keys/<name>`, or create it (random, mode
/// 0600, fsynced) when absent. Returns the key and whether it was just created.
fn key_file(data_dir: &Path, name: &str) -> Result<([u8; 32], bool), AuthError> {
    let dir = data_dir.join("keys");
    let path = dir.join(name);
    let io = |e: std::io::Error| AuthError::Invalid(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((parse_hex_key(&text)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).map_err(io)?;
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| AuthError::Random(e.to_string()))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&path).map_err(io)?;
            std::io::Write::write_all(&mut f, hex::encode(key).as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((key, true))
        }
        Err(e) => Err(io(e)),
    }
}

/// Encrypt `plain` for `context` (e.g. `totp|tenant|user`).
pub fn seal(keys: &dyn KeyProvider, context: &str, plain: &[u8]) -> Result<String, AuthError> {
    let key = keys.master_key()?;
    let cipher = Aes256Gcm::new_from_slice(&key)
        .map_err(|_| AuthError::Invalid("master key length".into()))?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| AuthError::Random(e.to_string()))?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plain,
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| AuthError::Invalid("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(format!("v1:{}", hex::encode(out)))
}

/// Decrypt a value sealed for `context`; any change to it, or another context, fails.
pub fn open(keys: &dyn KeyProvider, context: &str, sealed: &str) -> Result<Vec<u8>, AuthError> {
    let bad = || AuthError::Invalid("a sealed secret failed authentication".into());
    let raw = sealed
        .strip_prefix("v1:")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(bad)?;
    if raw.len() < 12 + 16 {
        return Err(bad());
    }
    let nonce: [u8; 12] = raw[..12].try_into().map_err(|_| bad())?;
    for key in std::iter::once(keys.master_key()?).chain(keys.previous_keys()) {
        let cipher = Aes256Gcm::new_from_slice(&key)
            .map_err(|_| AuthError::Invalid("master key length".into()))?;
        if let Ok(plain) = cipher.decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &raw[12..],
                aad: context.as_bytes(),
            },
        ) {
            return Ok(plain);
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let k = MasterKey::from_bytes([7; 32]);
        let s = seal(&k, "totp|t|u", b"secret seed").unwrap();
        assert!(!s.contains("secret"));
        assert_eq!(open(&k, "totp|t|u", &s).unwrap(), b"secret seed");
        assert!(open(&k, "totp|t|v", &s).is_err(), "another owner");
        assert!(open(&MasterKey::from_bytes([8; 32]), "totp|t|u", &s).is_err());
        let mut flipped = s.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(open(&k, "totp|t|u", &String::from_utf8(flipped).unwrap()).is_err());
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_create(dir.path()).unwrap();
        let b = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.key, b.key);
    }
}
