//! The relying-party checks themselves (WebAuthn Level 2 §7.1 and §7.2), pure functions
//! of the bytes the browser sent, the challenge we issued and the key we stored: no
//! database, so every check is unit-tested with a software authenticator (`tests.rs`).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ED25519, ParsedPublicKey};
use sha2::{Digest, Sha256};

use super::cbor::{self, Cbor};
use super::{
    Assertion, EDDSA, ES256, FLAG_AT, FLAG_BE, FLAG_BS, FLAG_ED, FLAG_UP, NewCredential,
    Registration, RelyingParty, StoredCredential, WebauthnError, decode_b64,
};

/// WebAuthn §7.1 for a challenge we issued: client data, rpIdHash, user presence, the
/// attested credential data, the algorithm, and the attestation statement (`none`, or
/// `packed` self attestation verified with the new key).
pub fn verify_registration(
    rp: &RelyingParty,
    challenge: &[u8],
    reg: &Registration,
) -> Result<NewCredential, WebauthnError> {
    check_client_data(rp, &reg.client_data_json, "webauthn.create", challenge)?;
    let object = cbor::decode(&reg.attestation_object)
        .map_err(|e| WebauthnError::malformed("attestationObject", e.to_string()))?;
    let object = object
        .as_map()
        .ok_or_else(|| WebauthnError::malformed("attestationObject", "not a map"))?;
    let field = |name: &'static str| {
        cbor::get_text(object, name)
            .ok_or_else(|| WebauthnError::malformed("attestationObject", format!("no {name}")))
    };
    let fmt = field("fmt")?
        .as_text()
        .ok_or_else(|| WebauthnError::malformed("attestationObject", "fmt is not text"))?;
    let statement = field("attStmt")?
        .as_map()
        .ok_or_else(|| WebauthnError::malformed("attestationObject", "attStmt is not a map"))?;
    let auth_data_bytes = field("authData")?
        .as_bytes()
        .ok_or_else(|| WebauthnError::malformed("attestationObject", "authData is not bytes"))?;
    let auth_data = parse_auth_data(auth_data_bytes)?;
    check_flags(rp, &auth_data)?;
    let Some(attested) = auth_data.attested else {
        return Err(WebauthnError::malformed(
            "authenticatorData",
            "no attested credential data (AT flag clear)",
        ));
    };
    if attested.credential_id != reg.credential_id {
        return Err(WebauthnError::malformed(
            "credential",
            "rawId is not the credential id in the authenticator data",
        ));
    }
    match fmt {
        "none" if statement.is_empty() => {}
        "none" => {
            return Err(WebauthnError::malformed(
                "attStmt",
                "must be empty for fmt \"none\"",
            ));
        }
        "packed" => {
            if cbor::get_text(statement, "x5c").is_some()
                || cbor::get_text(statement, "ecdaaKeyId").is_some()
            {
                return Err(WebauthnError::UnsupportedAttestation(
                    "packed with a certificate chain".into(),
                ));
            }
            let alg = cbor::get_text(statement, "alg").and_then(Cbor::as_int);
            if alg != Some(attested.algorithm) {
                return Err(WebauthnError::malformed(
                    "attStmt",
                    "alg is not the credential's algorithm",
                ));
            }
            let sig = cbor::get_text(statement, "sig")
                .and_then(Cbor::as_bytes)
                .ok_or_else(|| WebauthnError::malformed("attStmt", "no sig"))?;
            verify_signature(&attested.key, auth_data_bytes, &reg.client_data_json, sig)?;
        }
        other => return Err(WebauthnError::UnsupportedAttestation(other.to_owned())),
    }
    Ok(NewCredential {
        id: attested.credential_id,
        cose_key: attested.cose_key,
        algorithm: attested.algorithm,
        sign_count: auth_data.sign_count,
    })
}

/// WebAuthn §7.2 for a challenge we issued and a credential we stored: client data,
/// rpIdHash, user presence, the signature over `authenticatorData ‖ SHA-256(clientDataJSON)`
/// and the signature counter. Returns the new counter.
pub fn verify_assertion(
    rp: &RelyingParty,
    challenge: &[u8],
    stored: &StoredCredential,
    assertion: &Assertion,
) -> Result<u32, WebauthnError> {
    check_client_data(rp, &assertion.client_data_json, "webauthn.get", challenge)?;
    let auth_data = parse_auth_data(&assertion.authenticator_data)?;
    check_flags(rp, &auth_data)?;
    let key = cbor::decode(&stored.cose_key)
        .map_err(|e| WebauthnError::malformed("stored public key", e.to_string()))
        .and_then(|k| parse_cose_key(&k))?;
    verify_signature(
        &key.0,
        &assertion.authenticator_data,
        &assertion.client_data_json,
        &assertion.signature,
    )?;
    let got = auth_data.sign_count;
    if (got != 0 || stored.sign_count != 0) && got <= stored.sign_count {
        return Err(WebauthnError::CounterRegression {
            stored: stored.sign_count,
            got,
        });
    }
    Ok(got)
}

#[derive(serde::Deserialize)]
pub(super) struct ClientData {
    #[serde(rename = "type")]
    ty: String,
    pub(super) challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
}

pub(super) fn parse_client_data(json: &[u8]) -> Result<ClientData, WebauthnError> {
    serde_json::from_slice(json)
        .map_err(|e| WebauthnError::malformed("clientDataJSON", e.to_string()))
}

/// §7.1 steps 7-10 / §7.2 steps 11-14.
fn check_client_data(
    rp: &RelyingParty,
    json: &[u8],
    expected_type: &'static str,
    challenge: &[u8],
) -> Result<(), WebauthnError> {
    let c = parse_client_data(json)?;
    // what the client wrote goes into the audit log: bounded
    let clip = |s: String| s.chars().take(200).collect::<String>();
    if c.ty != expected_type {
        return Err(WebauthnError::WrongType {
            expected: expected_type,
            got: clip(c.ty),
        });
    }
    if decode_b64("clientDataJSON challenge", &c.challenge)? != challenge {
        return Err(WebauthnError::WrongChallenge);
    }
    if !rp.origin_ok(&c.origin) {
        return Err(WebauthnError::WrongOrigin(clip(c.origin)));
    }
    if c.cross_origin == Some(true) {
        return Err(WebauthnError::CrossOrigin);
    }
    Ok(())
}

struct AuthData {
    rp_id_hash: [u8; 32],
    flags: u8,
    sign_count: u32,
    attested: Option<Attested>,
}

struct Attested {
    credential_id: Vec<u8>,
    cose_key: Vec<u8>,
    key: PublicKey,
    algorithm: i64,
}

/// Authenticator data (§6.1): rpIdHash (32), flags (1), signCount (4, big endian), then
/// attested credential data (AT) and extensions (ED), nothing after.
fn parse_auth_data(b: &[u8]) -> Result<AuthData, WebauthnError> {
    let bad = |why: &str| WebauthnError::malformed("authenticatorData", why);
    let fixed = b.get(..37).ok_or_else(|| bad("shorter than 37 bytes"))?;
    let mut rp_id_hash = [0u8; 32];
    rp_id_hash.copy_from_slice(&fixed[..32]);
    let flags = fixed[32];
    let sign_count = u32::from_be_bytes([fixed[33], fixed[34], fixed[35], fixed[36]]);
    let mut rest = &b[37..];
    if flags & FLAG_BS != 0 && flags & FLAG_BE == 0 {
        return Err(bad("backed up (BS) but not backup eligible (BE)"));
    }
    let attested = if flags & FLAG_AT != 0 {
        // aaguid (16) and the credential id length (2)
        let head = rest
            .get(..18)
            .ok_or_else(|| bad("attested credential data truncated"))?;
        let id_len = usize::from(u16::from_be_bytes([head[16], head[17]]));
        let credential_id = rest
            .get(18..18 + id_len)
            .ok_or_else(|| bad("credential id truncated"))?
            .to_vec();
        rest = &rest[18 + id_len..];
        let (key, used) = cbor::decode_prefix(rest)
            .map_err(|e| WebauthnError::malformed("credential public key", e.to_string()))?;
        let cose_key = rest[..used].to_vec();
        rest = &rest[used..];
        let (key, algorithm) = parse_cose_key(&key)?;
        Some(Attested {
            credential_id,
            cose_key,
            key,
            algorithm,
        })
    } else {
        None
    };
    if flags & FLAG_ED != 0 {
        let (ext, used) = cbor::decode_prefix(rest)
            .map_err(|e| WebauthnError::malformed("authenticator extensions", e.to_string()))?;
        if ext.as_map().is_none() {
            return Err(bad("extensions are not a map"));
        }
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(AuthData {
        rp_id_hash,
        flags,
        sign_count,
        attested,
    })
}

fn check_flags(rp: &RelyingParty, d: &AuthData) -> Result<(), WebauthnError> {
    if d.rp_id_hash != rp.id_hash() {
        return Err(WebauthnError::WrongRelyingParty(rp.id.clone()));
    }
    if d.flags & FLAG_UP == 0 {
        return Err(WebauthnError::UserNotPresent);
    }
    Ok(())
}

enum PublicKey {
    Es256(ParsedPublicKey),
    EdDsa(ParsedPublicKey),
}

/// A COSE_Key (RFC 9052 §7, RFC 9053): EC2 P-256 for ES256, OKP Ed25519 for EdDSA.
fn parse_cose_key(v: &Cbor) -> Result<(PublicKey, i64), WebauthnError> {
    let bad = |why: &str| WebauthnError::malformed("credential public key", why);
    let map = v.as_map().ok_or_else(|| bad("not a map"))?;
    let int = |k| cbor::get_int(map, k).and_then(Cbor::as_int);
    let bytes = |k| cbor::get_int(map, k).and_then(Cbor::as_bytes);
    let alg = int(3).ok_or_else(|| bad("no alg"))?;
    match alg {
        ES256 => {
            // kty EC2, crv P-256, x and y 32 bytes each
            if int(1) != Some(2) || int(-1) != Some(1) {
                return Err(bad("ES256 needs kty EC2 and crv P-256"));
            }
            let (Some(x), Some(y)) = (bytes(-2), bytes(-3)) else {
                return Err(bad("no x or y"));
            };
            if x.len() != 32 || y.len() != 32 {
                return Err(bad("x and y must be 32 bytes"));
            }
            let point = [&[4u8][..], x, y].concat();
            ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
                .map(|k| (PublicKey::Es256(k), alg))
                .map_err(|_| bad("not a point on P-256"))
        }
        EDDSA => {
            // kty OKP, crv Ed25519
            if int(1) != Some(1) || int(-1) != Some(6) {
                return Err(bad("EdDSA needs kty OKP and crv Ed25519"));
            }
            let x = bytes(-2).filter(|x| x.len() == 32);
            let x = x.ok_or_else(|| bad("x must be 32 bytes"))?;
            ParsedPublicKey::new(&ED25519, x)
                .map(|k| (PublicKey::EdDsa(k), alg))
                .map_err(|_| bad("not an Ed25519 key"))
        }
        other => Err(WebauthnError::UnsupportedAlgorithm(other)),
    }
}

/// The signature over `authenticatorData ‖ SHA-256(clientDataJSON)` (§6.3.3, §7.2 step 20).
fn verify_signature(
    key: &PublicKey,
    auth_data: &[u8],
    client_data_json: &[u8],
    signature: &[u8],
) -> Result<(), WebauthnError> {
    let mut signed = Vec::with_capacity(auth_data.len() + 32);
    signed.extend_from_slice(auth_data);
    signed.extend_from_slice(&Sha256::digest(client_data_json));
    let (PublicKey::Es256(k) | PublicKey::EdDsa(k)) = key;
    k.verify_sig(&signed, signature)
        .map_err(|_| WebauthnError::BadSignature)
}
