//! WebAuthn passkeys as a second factor (beside TOTP): the relying-party side of W3C Web
//! Authentication Level 2, §7.1 (registering a new credential) and §7.2 (verifying an
//! authentication assertion).
//!
//! * Algorithms: ES256 (ECDSA P-256 with SHA-256, COSE -7) and EdDSA (Ed25519, COSE -8),
//!   verified with aws-lc-rs, the tree's one crypto provider.
//! * Attestation: we ask for `"none"` and accept `"none"` and self-attested `"packed"`
//!   (signed by the credential key itself). We do not decide trust on the authenticator's
//!   make, so certificate chains (`x5c`) are refused rather than half-checked.
//! * Ceremonies are single use and bound to the account that started them: a registration
//!   challenge expires after [`REGISTRATION_TIMEOUT`], a sign-in (an opaque `mfa_ticket`
//!   handed out after the password was right) after [`LOGIN_TIMEOUT`]. The ticket is spent
//!   by the first attempt, good or bad, so an assertion can never be replayed.
//! * A signature counter that does not increase (when either side is non-zero) means a
//!   cloned authenticator: refused, and the stored counter is only advanced by a
//!   compare-and-swap, so two concurrent assertions with the same counter cannot both pass.
//! * Failed assertions count towards the account lockout of [`Users::login`].
//!
//! ```
//! use radris_auth::webauthn::RelyingParty;
//! let rp = RelyingParty::from_config(None, None, Some("https://pacs.example.org")).unwrap();
//! assert_eq!(rp.id(), "pacs.example.org");
//! assert!(RelyingParty::from_config(None, Some("https://evil.example"), Some("https://pacs.example.org")).is_err());
//! ```

mod cbor;
#[cfg(test)]
mod tests;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use radris_core::TenantId;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use self::verify::parse_client_data;
pub use self::verify::{verify_assertion, verify_registration};
use crate::principal::Principal;
use crate::users::{Users, scopes_of_roles};
use crate::{AuthError, digest, now_millis};

/// How long a registration challenge stays valid (the browser's timeout is the same).
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long the `mfa_ticket` of a password sign-in waits for its passkey assertion.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// COSE algorithm ES256: ECDSA on P-256 with SHA-256 (RFC 9053).
pub const ES256: i64 = -7;
/// COSE algorithm EdDSA (with the Ed25519 curve).
pub const EDDSA: i64 = -8;
/// The algorithms we offer, most preferred first.
pub const ALGORITHMS: &[i64] = &[ES256, EDDSA];

const TICKET_PREFIX: &str = "wmt_";
/// WebAuthn §5.8.3: credential ids are at most 1023 bytes.
const MAX_CREDENTIAL_ID: usize = 1023;
const MAX_NAME: usize = 64;
const MAX_PASSKEYS: i64 = 20;

// authenticator data flags (WebAuthn §6.1)
const FLAG_UP: u8 = 0x01;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// Why a WebAuthn ceremony failed. The client errors name the check that failed (for the
/// audit log; the HTTP layer decides how much of it the caller sees).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebauthnError {
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("clientDataJSON type is {got:?}, expected {expected:?}")]
    WrongType { expected: &'static str, got: String },
    #[error("the challenge is not the one this server issued")]
    WrongChallenge,
    #[error("origin {0:?} is not this relying party's")]
    WrongOrigin(String),
    #[error("the ceremony ran in a cross-origin frame")]
    CrossOrigin,
    #[error("rpIdHash is not SHA-256 of the relying party id {0:?}")]
    WrongRelyingParty(String),
    #[error("the authenticator did not test user presence (UP flag clear)")]
    UserNotPresent,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("signature counter went from {stored} to {got}: possibly a cloned authenticator")]
    CounterRegression { stored: u32, got: u32 },
    #[error("COSE algorithm {0} is not supported (ES256 -7 and EdDSA -8 are)")]
    UnsupportedAlgorithm(i64),
    #[error(
        "attestation format {0:?} is not supported (\"none\" and self-attested \"packed\" are)"
    )]
    UnsupportedAttestation(String),
    #[error("the credential is not a passkey of this account")]
    UnknownCredential,
    #[error("the assertion's user handle is not this credential's")]
    WrongUser,
    #[error("this passkey is already registered")]
    AlreadyRegistered,
    #[error("an account may have at most {MAX_PASSKEYS} passkeys")]
    TooMany,
    #[error("unknown, expired or already used challenge or ticket")]
    NoCeremony,
    #[error("the account is locked or disabled")]
    AccountUnavailable,
    #[error("WebAuthn relying party configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl WebauthnError {
    /// Whether the caller sent something wrong (400/401), not a fault of ours (500).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, WebauthnError::Config(_) | WebauthnError::Auth(_))
    }

    fn malformed(what: &'static str, why: impl Into<String>) -> Self {
        WebauthnError::Malformed {
            what,
            why: why.into(),
        }
    }
}

impl From<sqlx::Error> for WebauthnError {
    fn from(source: sqlx::Error) -> Self {
        WebauthnError::Auth(AuthError::Database {
            what: "a WebAuthn query",
            source,
        })
    }
}

/// Who we are to authenticators: the RP id credentials are scoped to, and the origins
/// whose signatures count.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    id: String,
    origins: Origins,
}

#[derive(Debug, Clone)]
enum Origins {
    Exactly(String),
    /// Development default when nothing is configured: `http(s)://localhost` on any port.
    AnyLocalhostPort,
}

impl RelyingParty {
    /// From `http.webauthn_rp_id`, `http.webauthn_origin` and `http.public_url`: the id
    /// defaults to the public URL's host, else `localhost`; the origin to the public URL's,
    /// else (for `localhost` only) any local port. The origin's host must be the id or
    /// a subdomain of it, and only `localhost` may use plain HTTP (browsers insist too).
    pub fn from_config(
        rp_id: Option<&str>,
        origin: Option<&str>,
        public_url: Option<&str>,
    ) -> Result<Self, WebauthnError> {
        let bad = |m: String| WebauthnError::Config(m);
        let public = public_url
            .map(|u| url::Url::parse(u).map_err(|e| bad(format!("http.public_url {u:?}: {e}"))))
            .transpose()?;
        let id = match (rp_id, public.as_ref().and_then(|u| u.host_str())) {
            (Some(id), _) => id.trim().to_ascii_lowercase(),
            (None, Some(host)) => host.to_ascii_lowercase(),
            (None, None) => "localhost".to_owned(),
        };
        let domain_like = !id.is_empty()
            && id.len() <= 253
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !id.starts_with('.')
            && !id.ends_with('.')
            && id.parse::<std::net::IpAddr>().is_err();
        if !domain_like {
            return Err(bad(format!(
                "relying party id {id:?} must be a domain name (not an IP address)"
            )));
        }
        let origin = match (origin, public) {
            (Some(o), _) => Some(
                url::Url::parse(o).map_err(|e| bad(format!("http.webauthn_origin {o:?}: {e}")))?,
            ),
            (None, Some(p)) => Some(p),
            (None, None) => None,
        };
        let origins = match origin {
            None if id == "localhost" => Origins::AnyLocalhostPort,
            None => {
                return Err(bad(format!(
                    "relying party id {id:?} needs http.webauthn_origin or http.public_url"
                )));
            }
            Some(o) => {
                let host = o.host_str().unwrap_or_default().to_ascii_lowercase();
                if host != id && !host.ends_with(&format!(".{id}")) {
                    return Err(bad(format!(
                        "origin host {host:?} is not relying party id {id:?} nor below it"
                    )));
                }
                let secure = o.scheme() == "https" || (o.scheme() == "http" && host == "localhost");
                if !secure {
                    return Err(bad(format!(
                        "origin {o} must be https (plain http only for localhost)"
                    )));
                }
                Origins::Exactly(o.origin().ascii_serialization())
            }
        };
        Ok(RelyingParty { id, origins })
    }

    /// The RP id (a domain), as sent to browsers in `rp.id` / `rpId`.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn origin_ok(&self, origin: &str) -> bool {
        match &self.origins {
            Origins::Exactly(o) => o == origin,
            Origins::AnyLocalhostPort => url::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str() == Some("localhost")
                    && u.origin().ascii_serialization() == origin
            }),
        }
    }

    fn id_hash(&self) -> [u8; 32] {
        Sha256::digest(self.id.as_bytes()).into()
    }
}

/// A new credential as the browser returned it (`AuthenticatorAttestationResponse`),
/// base64url already decoded.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `rawId`.
    pub credential_id: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub attestation_object: Vec<u8>,
}

/// An assertion as the browser returned it (`AuthenticatorAssertionResponse`), decoded.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// `rawId`.
    pub credential_id: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub signature: Vec<u8>,
    pub user_handle: Option<Vec<u8>>,
}

/// What `navigator.credentials.create()` needs (`PublicKeyCredentialCreationOptions`).
#[derive(Debug, Clone)]
pub struct CreationOptions {
    pub rp_id: String,
    pub user_handle: Vec<u8>,
    pub user_name: String,
    pub challenge: Vec<u8>,
    /// The account's passkeys (`excludeCredentials`: no second registration of one).
    pub exclude: Vec<Vec<u8>>,
    pub timeout: Duration,
}

/// What `navigator.credentials.get()` needs (`PublicKeyCredentialRequestOptions`), and the
/// ticket that carries the sign-in to [`Passkeys::finish_login`].
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// Opaque, single use, valid [`LOGIN_TIMEOUT`]; only its SHA-256 is stored.
    pub ticket: String,
    pub rp_id: String,
    pub challenge: Vec<u8>,
    /// The account's passkeys (`allowCredentials`).
    pub allow: Vec<Vec<u8>>,
    pub timeout: Duration,
}

/// A registered passkey, for listing.
#[derive(Debug, Clone)]
pub struct CredentialInfo {
    pub credential_id: Vec<u8>,
    pub name: String,
    /// COSE algorithm.
    pub algorithm: i64,
    pub sign_count: u32,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch; 0 = never used.
    pub last_used_at: i64,
}

/// The result of [`Passkeys::finish_login`].
#[derive(Debug)]
pub enum PasskeyLogin {
    SignedIn(Principal),
    /// `tenant`/`user`: whose ticket it was, when the ticket was known (for the audit log).
    Refused {
        tenant: Option<TenantId>,
        user: Option<String>,
        why: WebauthnError,
    },
}

/// A credential as [`verify_registration`] accepted it.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: Vec<u8>,
    /// The COSE_Key exactly as the authenticator encoded it.
    pub cose_key: Vec<u8>,
    pub algorithm: i64,
    pub sign_count: u32,
}

/// What [`verify_assertion`] checks an assertion against.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    pub cose_key: Vec<u8>,
    pub sign_count: u32,
}

/// The relying party operations on the index database.
#[derive(Clone)]
pub struct Passkeys {
    pool: AnyPool,
    users: Arc<Users>,
    rp: RelyingParty,
}

impl Passkeys {
    pub fn new(pool: AnyPool, users: Arc<Users>, rp: RelyingParty) -> Self {
        Passkeys { pool, users, rp }
    }

    /// Start registering a passkey for a signed-in user.
    pub async fn start_registration(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<CreationOptions, WebauthnError> {
        let mine = self.credentials(tenant, user).await?;
        if mine.len() as i64 >= MAX_PASSKEYS {
            return Err(WebauthnError::TooMany);
        }
        // one opaque handle per account (WebAuthn §14.6.1: random, never the user name)
        let user_handle = match mine.first() {
            Some((_, handle)) => handle.clone(),
            None => URL_SAFE_NO_PAD.encode(random::<32>()?),
        };
        let challenge = random::<32>()?;
        let challenge_b64 = URL_SAFE_NO_PAD.encode(challenge);
        self.open_ceremony(
            &digest(&challenge_b64),
            tenant,
            user,
            "register",
            &challenge_b64,
            &user_handle,
            REGISTRATION_TIMEOUT,
        )
        .await?;
        Ok(CreationOptions {
            rp_id: self.rp.id.clone(),
            user_handle: URL_SAFE_NO_PAD
                .decode(&user_handle)
                .map_err(|e| WebauthnError::malformed("stored user handle", e.to_string()))?,
            user_name: user.to_owned(),
            challenge: challenge.to_vec(),
            exclude: mine
                .iter()
                .filter_map(|(id, _)| URL_SAFE_NO_PAD.decode(id).ok())
                .collect(),
            timeout: REGISTRATION_TIMEOUT,
        })
    }

    /// Verify and store a new passkey. The challenge (read from the client data) must be an
    /// open registration of this very account; it is spent whatever the outcome.
    pub async fn finish_registration(
        &self,
        tenant: &TenantId,
        user: &str,
        name: &str,
        reg: &Registration,
    ) -> Result<CredentialInfo, WebauthnError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(WebauthnError::malformed(
                "name",
                format!("must be 1-{MAX_NAME} printable characters"),
            ));
        }
        let client = parse_client_data(&reg.client_data_json)?;
        let challenge = decode_b64("clientDataJSON challenge", &client.challenge)?;
        let handle = digest(&URL_SAFE_NO_PAD.encode(&challenge));
        let (owner_tenant, owner, expected, user_handle) =
            self.spend_ceremony(&handle, "register").await?;
        if owner_tenant != tenant.as_str() || owner != user {
            return Err(WebauthnError::NoCeremony);
        }
        let expected = decode_b64("stored challenge", &expected)?;
        let new = verify_registration(&self.rp, &expected, reg)?;
        if new.id.is_empty() || new.id.len() > MAX_CREDENTIAL_ID {
            return Err(WebauthnError::malformed(
                "credential id",
                "must be 1-1023 bytes",
            ));
        }
        let now = now_millis();
        let added = sqlx::query(
            "INSERT INTO webauthn_credentials (tenant_id, user_name, credential_id, user_handle, public_key, algorithm, sign_count, name, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0) ON CONFLICT (tenant_id, credential_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(URL_SAFE_NO_PAD.encode(&new.id))
        .bind(&user_handle)
        .bind(URL_SAFE_NO_PAD.encode(&new.cose_key))
        .bind(new.algorithm)
        .bind(i64::from(new.sign_count))
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if added == 0 {
            return Err(WebauthnError::AlreadyRegistered);
        }
        Ok(CredentialInfo {
            credential_id: new.id,
            name: name.to_owned(),
            algorithm: new.algorithm,
            sign_count: new.sign_count,
            created_at: now,
            last_used_at: 0,
        })
    }

    /// The passkeys of an account, oldest first.
    pub async fn list(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<Vec<CredentialInfo>, WebauthnError> {
        let rows = sqlx::query(
            "SELECT credential_id, name, algorithm, sign_count, created_at, last_used_at FROM webauthn_credentials \
             WHERE tenant_id = $1 AND user_name = $2 ORDER BY created_at, credential_id",
        )
        .bind(tenant.as_str())
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(CredentialInfo {
                    credential_id: URL_SAFE_NO_PAD.decode(&id).unwrap_or_default(),
                    name: r.try_get(1)?,
                    algorithm: r.try_get(2)?,
                    sign_count: u32::try_from(r.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
                    created_at: r.try_get(4)?,
                    last_used_at: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(WebauthnError::from)
    }

    /// Remove one of the account's passkeys; false when it has no such passkey.
    pub async fn delete(
        &self,
        tenant: &TenantId,
        user: &str,
        credential_id: &[u8],
    ) -> Result<bool, WebauthnError> {
        let done = sqlx::query(
            "DELETE FROM webauthn_credentials WHERE tenant_id = $1 AND user_name = $2 AND credential_id = $3",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(URL_SAFE_NO_PAD.encode(credential_id))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// After a right password: the assertion request for an account with passkeys (None
    /// when it has none).
    pub async fn start_login(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<Option<RequestOptions>, WebauthnError> {
        let mine = self.credentials(tenant, user).await?;
        if mine.is_empty() {
            return Ok(None);
        }
        let ticket = format!("{TICKET_PREFIX}{}", hex::encode(random::<32>()?));
        let challenge = random::<32>()?;
        self.open_ceremony(
            &digest(&ticket),
            tenant,
            user,
            "login",
            &URL_SAFE_NO_PAD.encode(challenge),
            "",
            LOGIN_TIMEOUT,
        )
        .await?;
        Ok(Some(RequestOptions {
            ticket,
            rp_id: self.rp.id.clone(),
            challenge: challenge.to_vec(),
            allow: mine
                .iter()
                .filter_map(|(id, _)| URL_SAFE_NO_PAD.decode(id).ok())
                .collect(),
            timeout: LOGIN_TIMEOUT,
        }))
    }

    /// Finish a sign-in with the passkey assertion for a ticket of [`Self::start_login`].
    /// `Err` only for faults of ours; every refusal says why and (when the ticket was
    /// known) whose account it concerned, and counts as a failed login of that account.
    pub async fn finish_login(
        &self,
        ticket: &str,
        assertion: &Assertion,
    ) -> Result<PasskeyLogin, WebauthnError> {
        let refused = |tenant: Option<TenantId>, user: Option<String>, why| {
            Ok(PasskeyLogin::Refused { tenant, user, why })
        };
        if !ticket.starts_with(TICKET_PREFIX) || ticket.len() != TICKET_PREFIX.len() + 64 {
            return refused(None, None, WebauthnError::NoCeremony);
        }
        let (tenant, user, challenge, _) = match self.spend_ceremony(&digest(ticket), "login").await
        {
            Ok(c) => c,
            Err(WebauthnError::NoCeremony) => {
                return refused(None, None, WebauthnError::NoCeremony);
            }
            Err(e) => return Err(e),
        };
        let Ok(tenant) = TenantId::parse(&tenant) else {
            return refused(None, None, WebauthnError::NoCeremony);
        };
        let account = sqlx::query(
            "SELECT roles, locked_until, disabled FROM users WHERE tenant_id = $1 AND user_name = $2",
        )
        .bind(tenant.as_str())
        .bind(&user)
        .fetch_optional(&self.pool)
        .await?;
        let Some(account) = account else {
            return refused(Some(tenant), Some(user), WebauthnError::AccountUnavailable);
        };
        let roles: String = account.try_get(0)?;
        let (locked_until, disabled): (i64, i64) = (account.try_get(1)?, account.try_get(2)?);
        if locked_until > now_millis() || disabled != 0 {
            return refused(Some(tenant), Some(user), WebauthnError::AccountUnavailable);
        }
        match self
            .check_assertion(&tenant, &user, &challenge, assertion)
            .await
        {
            Ok(()) => {}
            Err(why) if why.is_client_error() => {
                self.users.count_failure(&tenant, &user).await?;
                return refused(Some(tenant), Some(user), why);
            }
            Err(e) => return Err(e),
        }
        sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = 0 WHERE tenant_id = $1 AND user_name = $2",
        )
        .bind(tenant.as_str())
        .bind(&user)
        .execute(&self.pool)
        .await?;
        Ok(PasskeyLogin::SignedIn(Principal {
            actor: format!("user:{user}"),
            scopes: scopes_of_roles(&roles),
            tenant,
            user,
        }))
    }

    /// The assertion against the account's credential, and the counter advanced.
    async fn check_assertion(
        &self,
        tenant: &TenantId,
        user: &str,
        challenge: &str,
        assertion: &Assertion,
    ) -> Result<(), WebauthnError> {
        let id = URL_SAFE_NO_PAD.encode(&assertion.credential_id);
        let row = sqlx::query(
            "SELECT public_key, sign_count, user_handle FROM webauthn_credentials \
             WHERE tenant_id = $1 AND user_name = $2 AND credential_id = $3",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(&id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(WebauthnError::UnknownCredential)?;
        let cose_key = decode_b64("stored public key", &row.try_get::<String, _>(0)?)?;
        let stored_count: i64 = row.try_get(1)?;
        let user_handle: String = row.try_get(2)?;
        if let Some(h) = &assertion.user_handle
            && !h.is_empty()
            && URL_SAFE_NO_PAD.encode(h) != user_handle
        {
            return Err(WebauthnError::WrongUser);
        }
        let stored = StoredCredential {
            cose_key,
            sign_count: u32::try_from(stored_count).unwrap_or(u32::MAX),
        };
        let challenge = decode_b64("stored challenge", challenge)?;
        let got = verify_assertion(&self.rp, &challenge, &stored, assertion)?;
        // compare-and-swap: of two assertions racing with one counter value, one wins
        let advanced = sqlx::query(
            "UPDATE webauthn_credentials SET sign_count = $1, last_used_at = $2 \
             WHERE tenant_id = $3 AND credential_id = $4 AND sign_count = $5",
        )
        .bind(i64::from(got))
        .bind(now_millis())
        .bind(tenant.as_str())
        .bind(&id)
        .bind(stored_count)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if advanced != 1 {
            return Err(WebauthnError::CounterRegression {
                stored: stored.sign_count,
                got,
            });
        }
        Ok(())
    }

    /// (credential id, user handle) of each passkey of the account, base64url.
    async fn credentials(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<Vec<(String, String)>, WebauthnError> {
        let rows = sqlx::query(
            "SELECT credential_id, user_handle FROM webauthn_credentials WHERE tenant_id = $1 AND user_name = $2 ORDER BY created_at, credential_id",
        )
        .bind(tenant.as_str())
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(WebauthnError::from)
    }

    #[allow(clippy::too_many_arguments)]
    async fn open_ceremony(
        &self,
        handle: &str,
        tenant: &TenantId,
        user: &str,
        purpose: &str,
        challenge: &str,
        user_handle: &str,
        valid: Duration,
    ) -> Result<(), WebauthnError> {
        let now = now_millis();
        // ceremonies nobody finished: gone a while after they expired
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
            .bind(now - 3_600_000)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (handle_sha256, tenant_id, user_name, purpose, challenge, user_handle, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
        )
        .bind(handle)
        .bind(tenant.as_str())
        .bind(user)
        .bind(purpose)
        .bind(challenge)
        .bind(user_handle)
        .bind(now + valid.as_millis() as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Mark an open, unexpired ceremony used (atomically: one caller wins) and return
    /// (tenant, user, challenge, user handle).
    async fn spend_ceremony(
        &self,
        handle: &str,
        purpose: &str,
    ) -> Result<(String, String, String, String), WebauthnError> {
        let now = now_millis();
        let spent = sqlx::query(
            "UPDATE webauthn_ceremonies SET used_at = $1 WHERE handle_sha256 = $2 AND purpose = $3 AND used_at = 0 AND expires_at > $1",
        )
        .bind(now)
        .bind(handle)
        .bind(purpose)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if spent != 1 {
            return Err(WebauthnError::NoCeremony);
        }
        let row = sqlx::query(
            "SELECT tenant_id, user_name, challenge, user_handle FROM webauthn_ceremonies WHERE handle_sha256 = $1",
        )
        .bind(handle)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        ))
    }
}

/// Whether an account has a passkey (then a password alone does not sign it in).
pub(crate) async fn has_passkeys(
    pool: &AnyPool,
    tenant: &TenantId,
    user: &str,
) -> Result<bool, AuthError> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM webauthn_credentials WHERE tenant_id = $1 AND user_name = $2",
    )
    .bind(tenant.as_str())
    .bind(user)
    .fetch_one(pool)
    .await
    .map_err(AuthError::db("counting passkeys"))?;
    Ok(row
        .try_get::<i64, _>(0)
        .map_err(AuthError::db("counting passkeys"))?
        > 0)
}

fn random<const N: usize>() -> Result<[u8; N], WebauthnError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(b)
}

/// base64url as browsers send it (no padding), padding tolerated.
fn decode_b64(what: &'static str, s: &str) -> Result<Vec<u8>, WebauthnError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|e| WebauthnError::malformed(what, format!("not base64url: {e}")))
}
