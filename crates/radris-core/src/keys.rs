//! The seam between envelope encryption and where master keys live.
//!
//! Stored blobs are encrypted with per-tenant *data keys*; each data key is kept in the index
//! only *wrapped* (encrypted) by a master key, the *key encryption key* (KEK). A
//! [`KeyWrapper`] holds the KEKs: `radris-auth`'s master key file or environment today, a KMS
//! or HSM tomorrow. It never hands a KEK out, only wraps and unwraps.
//!
//! Rotation: a wrapper has one current KEK (new wraps) and may know older ones (unwraps of
//! keys wrapped before a rotation), each named by a stable `kek_id`.

/// Why a key could not be wrapped or unwrapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("master key {0} is not available (was it removed after a rotation?)")]
    UnknownKek(String),
    #[error("a wrapped key failed authentication (wrong master key, or the key row was altered)")]
    Unwrap,
    #[error("key provider: {0}")]
    Provider(String),
}

/// Wraps and unwraps 256-bit data keys with a master key.
pub trait KeyWrapper: Send + Sync {
    /// The KEK new wraps use.
    fn current_kek_id(&self) -> String;
    /// Encrypt `key` under the current KEK, bound to `context` (e.g. the tenant and key id),
    /// so a wrapped key copied to another row does not unwrap. Returns the KEK id used.
    fn wrap(&self, key: &[u8; 32], context: &str) -> Result<(String, Vec<u8>), KeyError>;
    /// Decrypt a key wrapped by KEK `kek_id` for `context`.
    fn unwrap(&self, kek_id: &str, wrapped: &[u8], context: &str) -> Result<[u8; 32], KeyError>;
}
