//! Signing a report: the signed content is canonicalised (JSON with sorted object keys, no
//! insignificant whitespace, numbers as serde_json writes them), hashed with SHA-256, and the
//! hash signed with the tenant installation's Ed25519 report-signing key. Verification
//! recomputes all three from the stored canonical text, so a changed byte anywhere fails.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A signature as stored beside the canonical text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sealed {
    /// The canonical JSON that was signed.
    pub canonical: String,
    /// SHA-256 of `canonical`, hex.
    pub sha256: String,
    /// Ed25519 signature of the SHA-256 digest, hex.
    pub signature: String,
    /// First 16 hex digits of SHA-256 of the verifying key: which key signed.
    pub key_id: String,
}

/// Why a stored signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the stored text is not canonical JSON (it was changed after signing)")]
    NotCanonical,
    #[error("the SHA-256 of the stored text does not match the signed one")]
    HashMismatch,
    #[error("the signature does not verify with key {0}")]
    BadSignature(String),
    #[error("signed with key {found}, but this server's key is {expected}")]
    UnknownKey { found: String, expected: String },
    #[error("malformed signature fields: {0}")]
    Malformed(String),
}

/// The canonical form of a JSON value: object keys sorted by their UTF-8 bytes at every
/// level, no insignificant whitespace, strings and numbers as serde_json writes them. The
/// sorting is done here, not left to serde_json's map (whose order depends on a cargo
/// feature another crate of the build may turn on).
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = map.get(k) {
                    write_canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Canonicalise, hash and sign.
pub fn seal(content: &Value, key: &SigningKey) -> Sealed {
    let canonical = canonical(content);
    let digest = Sha256::digest(canonical.as_bytes());
    let signature = key.sign(&digest);
    Sealed {
        sha256: hex::encode(digest),
        signature: hex::encode(signature.to_bytes()),
        key_id: key_id(&key.verifying_key()),
        canonical,
    }
}

/// Check a stored seal against the verifying key.
pub fn verify(s: &Sealed, key: &VerifyingKey) -> Result<(), VerifyError> {
    let parsed: Value =
        serde_json::from_str(&s.canonical).map_err(|_| VerifyError::NotCanonical)?;
    if canonical(&parsed) != s.canonical {
        return Err(VerifyError::NotCanonical);
    }
    let digest = Sha256::digest(s.canonical.as_bytes());
    if hex::encode(digest) != s.sha256 {
        return Err(VerifyError::HashMismatch);
    }
    let expected = key_id(key);
    if s.key_id != expected {
        return Err(VerifyError::UnknownKey {
            found: s.key_id.clone(),
            expected,
        });
    }
    let bytes: [u8; 64] = hex::decode(&s.signature)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?
        .try_into()
        .map_err(|_| VerifyError::Malformed("signature is not 64 bytes".into()))?;
    key.verify(&digest, &Signature::from_bytes(&bytes))
        .map_err(|_| VerifyError::BadSignature(expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        let a = json!({"b": 1, "a": {"d": [1, 2], "c": "x"}});
        assert_eq!(canonical(&a), r#"{"a":{"c":"x","d":[1,2]},"b":1}"#);
    }

    #[test]
    fn a_seal_verifies_and_any_changed_byte_fails() {
        let k = key();
        let s = seal(&json!({"text": "No acute findings.", "version": 1}), &k);
        verify(&s, &k.verifying_key()).unwrap();
        for i in 0..s.canonical.len() {
            let mut bytes = s.canonical.clone().into_bytes();
            bytes[i] ^= 0x01;
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            let t = Sealed {
                canonical: changed,
                ..s.clone()
            };
            assert!(verify(&t, &k.verifying_key()).is_err(), "byte {i}");
        }
        // a signature from another key, or a forged hash, fails too
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(
            verify(&s, &other.verifying_key()),
            Err(VerifyError::UnknownKey { .. })
        ));
        let mut forged = seal(&json!({"text": "x"}), &k);
        forged.canonical = r#"{"text":"y"}"#.into();
        forged.sha256 = hex::encode(Sha256::digest(forged.canonical.as_bytes()));
        assert!(matches!(
            verify(&forged, &k.verifying_key()),
            Err(VerifyError::BadSignature(_))
        ));
    }

    #[test]
    fn reformatted_json_is_not_canonical() {
        let k = key();
        let mut s = seal(&json!({"a": 1}), &k);
        s.canonical = "{ \"a\": 1 }".into();
        assert_eq!(
            verify(&s, &k.verifying_key()),
            Err(VerifyError::NotCanonical)
        );
    }
}
