//! The verification checks against a software authenticator (P-256 and Ed25519 keys of
//! aws-lc-rs, CBOR written by `cbor::tests::encode`).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use super::cbor::tests::{encode, int, text};
use super::cbor::{self, Cbor};
use super::*;

const ORIGIN: &str = "https://pacs.example.org";

fn rp() -> RelyingParty {
    RelyingParty::from_config(None, None, Some(ORIGIN)).expect("valid relying party")
}

/// A software authenticator with one credential.
enum Key {
    P256(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

struct Authenticator {
    key: Key,
    id: Vec<u8>,
}

impl Authenticator {
    fn p256() -> Self {
        Authenticator {
            key: Key::P256(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("keygen"),
            ),
            id: vec![0xc1; 16],
        }
    }

    fn ed25519() -> Self {
        Authenticator {
            key: Key::Ed(Ed25519KeyPair::generate().expect("keygen")),
            id: vec![0xed; 20],
        }
    }

    fn cose_key(&self) -> Vec<u8> {
        match &self.key {
            Key::P256(k) => {
                let p = k.public_key().as_ref();
                encode(&Cbor::Map(vec![
                    (int(1), int(2)),
                    (int(3), int(ES256)),
                    (int(-1), int(1)),
                    (int(-2), Cbor::Bytes(p[1..33].to_vec())),
                    (int(-3), Cbor::Bytes(p[33..65].to_vec())),
                ]))
            }
            Key::Ed(k) => encode(&Cbor::Map(vec![
                (int(1), int(1)),
                (int(3), int(EDDSA)),
                (int(-1), int(6)),
                (int(-2), Cbor::Bytes(k.public_key().as_ref().to_vec())),
            ])),
        }
    }

    fn sign(&self, auth_data: &[u8], client_data: &[u8]) -> Vec<u8> {
        let msg = [auth_data, &Sha256::digest(client_data)[..]].concat();
        match &self.key {
            Key::P256(k) => k
                .sign(&SystemRandom::new(), &msg)
                .expect("sign")
                .as_ref()
                .to_vec(),
            Key::Ed(k) => k.sign(&msg).as_ref().to_vec(),
        }
    }

    fn auth_data(&self, rp_id: &str, flags: u8, count: u32, attested: bool) -> Vec<u8> {
        let mut d = Sha256::digest(rp_id.as_bytes()).to_vec();
        d.push(flags | if attested { FLAG_AT } else { 0 });
        d.extend(count.to_be_bytes());
        if attested {
            d.extend([0u8; 16]);
            d.extend((self.id.len() as u16).to_be_bytes());
            d.extend(&self.id);
            d.extend(self.cose_key());
        }
        d
    }

    fn register(&self, challenge: &[u8], fmt: &str) -> Registration {
        let client = client_data("webauthn.create", challenge, ORIGIN);
        let auth_data = self.auth_data("pacs.example.org", FLAG_UP, 0, true);
        let statement = match fmt {
            "packed" => Cbor::Map(vec![
                (text("alg"), int(self.alg())),
                (
                    text("sig"),
                    Cbor::Bytes(self.sign(&auth_data, client.as_bytes())),
                ),
            ]),
            _ => Cbor::Map(vec![]),
        };
        Registration {
            credential_id: self.id.clone(),
            client_data_json: client.into_bytes(),
            attestation_object: encode(&Cbor::Map(vec![
                (text("fmt"), text(fmt)),
                (text("attStmt"), statement),
                (text("authData"), Cbor::Bytes(auth_data)),
            ])),
        }
    }

    fn alg(&self) -> i64 {
        match self.key {
            Key::P256(_) => ES256,
            Key::Ed(_) => EDDSA,
        }
    }

    /// An assertion; `tweak` may change what is signed before signing.
    fn assert(&self, challenge: &[u8], count: u32, tweak: impl Fn(&mut Signing)) -> Assertion {
        let mut s = Signing {
            rp_id: "pacs.example.org".into(),
            ty: "webauthn.get".into(),
            origin: ORIGIN.into(),
            challenge: challenge.to_vec(),
            flags: FLAG_UP,
            count,
        };
        tweak(&mut s);
        let client = client_data(&s.ty, &s.challenge, &s.origin);
        let auth_data = self.auth_data(&s.rp_id, s.flags, s.count, false);
        Assertion {
            credential_id: self.id.clone(),
            signature: self.sign(&auth_data, client.as_bytes()),
            client_data_json: client.into_bytes(),
            authenticator_data: auth_data,
            user_handle: None,
        }
    }
}

struct Signing {
    rp_id: String,
    ty: String,
    origin: String,
    challenge: Vec<u8>,
    flags: u8,
    count: u32,
}

fn client_data(ty: &str, challenge: &[u8], origin: &str) -> String {
    serde_json::json!({
        "type": ty,
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "origin": origin,
        "crossOrigin": false,
    })
    .to_string()
}

/// Register with `fmt`, then check one assertion against the stored credential.
fn check(
    authenticator: &Authenticator,
    stored_count: u32,
    make: impl Fn(&Authenticator, &[u8]) -> Assertion,
) -> Result<u32, WebauthnError> {
    let challenge = [9u8; 32];
    let new = verify_registration(
        &rp(),
        &challenge,
        &authenticator.register(&challenge, "none"),
    )
    .expect("registration");
    assert_eq!(new.id, authenticator.id);
    assert_eq!(new.algorithm, authenticator.alg());
    let stored = StoredCredential {
        cose_key: new.cose_key,
        sign_count: stored_count,
    };
    let login_challenge = [3u8; 32];
    let a = make(authenticator, &login_challenge);
    verify_assertion(&rp(), &login_challenge, &stored, &a)
}

#[test]
fn good_assertions_verify_with_both_algorithms() {
    for a in [Authenticator::p256(), Authenticator::ed25519()] {
        assert_eq!(check(&a, 4, |a, c| a.assert(c, 5, |_| {})).ok(), Some(5));
        // authenticators without a counter send 0 every time
        assert_eq!(check(&a, 0, |a, c| a.assert(c, 0, |_| {})).ok(), Some(0));
    }
}

#[test]
fn forged_assertions_are_refused() {
    let a = Authenticator::p256();
    let refused = |make: &dyn Fn(&Authenticator, &[u8]) -> Assertion| {
        check(&a, 4, make).expect_err("must be refused")
    };
    assert!(matches!(
        refused(&|a, c| a.assert(c, 5, |s| s.origin = "https://evil.example".into())),
        WebauthnError::WrongOrigin(o) if o == "https://evil.example"
    ));
    assert!(matches!(
        refused(&|a, c| a.assert(c, 5, |s| s.origin = "https://pacs.example.org:8443".into())),
        WebauthnError::WrongOrigin(_)
    ));
    assert!(matches!(
        refused(&|a, _| a.assert(&[4u8; 32], 5, |_| {})),
        WebauthnError::WrongChallenge
    ));
    assert!(matches!(
        refused(&|a, c| a.assert(c, 5, |s| s.rp_id = "example.org".into())),
        WebauthnError::WrongRelyingParty(_)
    ));
    assert!(matches!(
        refused(&|a, c| a.assert(c, 5, |s| s.ty = "webauthn.create".into())),
        WebauthnError::WrongType { .. }
    ));
    assert!(matches!(
        refused(&|a, c| a.assert(c, 5, |s| s.flags = 0)),
        WebauthnError::UserNotPresent
    ));
    // a counter that does not increase: a cloned authenticator
    assert!(matches!(
        refused(&|a, c| a.assert(c, 4, |_| {})),
        WebauthnError::CounterRegression { stored: 4, got: 4 }
    ));
    assert!(matches!(
        refused(&|a, c| a.assert(c, 0, |_| {})),
        WebauthnError::CounterRegression { stored: 4, got: 0 }
    ));
    // a bad signature: one bit of the signed data changed after signing
    assert!(matches!(
        refused(&|a, c| {
            let mut x = a.assert(c, 5, |_| {});
            x.authenticator_data[36] ^= 1;
            x
        }),
        WebauthnError::BadSignature
    ));
    // another key's signature
    let other = Authenticator::p256();
    assert!(matches!(
        refused(&|_, c| other.assert(c, 5, |_| {})),
        WebauthnError::BadSignature
    ));
    // garbage is malformed, never a panic
    assert!(matches!(
        refused(&|a, c| {
            let mut x = a.assert(c, 5, |_| {});
            x.authenticator_data.truncate(20);
            x
        }),
        WebauthnError::Malformed { .. }
    ));
    assert!(matches!(
        refused(&|a, c| {
            let mut x = a.assert(c, 5, |_| {});
            x.client_data_json = b"{\"type\":".to_vec();
            x
        }),
        WebauthnError::Malformed { .. }
    ));
}

#[test]
fn registration_checks() {
    let a = Authenticator::p256();
    let c = [1u8; 32];
    assert!(verify_registration(&rp(), &c, &a.register(&c, "packed")).is_ok());
    assert!(
        verify_registration(&rp(), &c, &Authenticator::ed25519().register(&c, "packed")).is_ok()
    );
    assert!(matches!(
        verify_registration(&rp(), &[2u8; 32], &a.register(&c, "none")),
        Err(WebauthnError::WrongChallenge)
    ));
    assert!(matches!(
        verify_registration(&rp(), &c, &a.register(&c, "tpm")),
        Err(WebauthnError::UnsupportedAttestation(f)) if f == "tpm"
    ));
    // a packed statement signed by another key
    let mut forged = a.register(&c, "packed");
    let honest = Authenticator::p256().register(&c, "packed");
    let other_object = cbor::decode(&honest.attestation_object).expect("cbor");
    let other_sig = cbor::get_text(other_object.as_map().expect("map"), "attStmt").cloned();
    let mut object = cbor::decode(&forged.attestation_object).expect("cbor");
    if let (Cbor::Map(m), Some(s)) = (&mut object, other_sig) {
        m[1].1 = s;
    }
    forged.attestation_object = encode(&object);
    assert!(matches!(
        verify_registration(&rp(), &c, &forged),
        Err(WebauthnError::BadSignature)
    ));
    // rawId that is not the attested id
    let mut lying = a.register(&c, "none");
    lying.credential_id = vec![1, 2, 3];
    assert!(matches!(
        verify_registration(&rp(), &c, &lying),
        Err(WebauthnError::Malformed { .. })
    ));
    // random bytes never panic
    let mut junk = a.register(&c, "none");
    for len in 0..junk.attestation_object.len() {
        let mut cut = junk.clone();
        cut.attestation_object.truncate(len);
        assert!(verify_registration(&rp(), &c, &cut).is_err());
    }
    junk.attestation_object = vec![0xa3; 64];
    assert!(verify_registration(&rp(), &c, &junk).is_err());
}

#[test]
fn relying_party_configuration() {
    let local = RelyingParty::from_config(None, None, None).expect("localhost default");
    assert_eq!(local.id(), "localhost");
    assert!(local.origin_ok("http://localhost:8042"));
    assert!(local.origin_ok("https://localhost"));
    assert!(!local.origin_ok("http://localhost.evil.example:8042"));
    assert!(!local.origin_ok("http://127.0.0.1:8042"));
    let sub =
        RelyingParty::from_config(Some("example.org"), Some("https://pacs.example.org/"), None)
            .expect("subdomain origin");
    assert!(sub.origin_ok("https://pacs.example.org"));
    assert!(!sub.origin_ok("https://other.example.org"));
    for (id, origin) in [
        (Some("127.0.0.1"), None),
        (Some("example.org"), Some("http://pacs.example.org")),
        (
            Some("example.org"),
            Some("https://example.org.evil.example"),
        ),
        (Some("example.org"), None),
    ] {
        assert!(
            RelyingParty::from_config(id, origin, None).is_err(),
            "{id:?} {origin:?}"
        );
    }
}
