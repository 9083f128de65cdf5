//! Identity and access for RADRIS.
//!
//! * [`token`]: scoped, revocable API tokens. Only their SHA-256 is stored; the secret is shown
//!   once, at creation.
//! * [`principal`]: who is calling ([`Principal`]): tenant, actor and [`Scopes`]. The tenant of
//!   every request comes from here, never from the request itself.
//! * [`users`]: accounts (Argon2id, [`password`] rules, lockout) and server-side sessions.
//! * [`webauthn`]: passkeys as a second factor (WebAuthn Level 2 relying party, ES256/EdDSA).
//! * [`oidc`]: sign-in through an external OpenID Connect provider (code flow with PKCE).
//! * [`audit`]: the append-only audit log. Each record carries the hash of the one before it,
//!   so [`audit::verify`] finds a record that was edited, deleted, inserted or moved.
//! * [`export`]: the audit log as DICOM PS3.15 A.5 audit messages over syslog (RFC 5424 on
//!   TLS) to an IHE ATNA repository, with a resumable forwarder, and as FHIR AuditEvents.
//! * [`policy`]: authorisation with Cedar policies per tenant (roles, relationship rules,
//!   break-glass emergency access), validated against a schema before they take effect.
//!
//! The tables live in the index database (migration 2 of `radris-store`); this crate works on
//! the pool the index opened, so SQLite and PostgreSQL are both supported.

pub mod audit;
pub mod export;
pub mod keys;
pub mod oidc;
pub mod password;
pub mod policy;
pub mod principal;
pub mod token;
pub mod users;
pub mod webauthn;

pub use audit::AuditLog;
pub use principal::{Principal, Scope, Scopes};
pub use token::Tokens;
pub use users::{LoginFailure, Users};

/// Why an authentication or an audit operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials, or credentials that do not match a live token. Deliberately vague:
    /// the caller learns nothing about which part was wrong.
    #[error("missing, unknown, expired or revoked credentials")]
    Unauthenticated,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("database error while {what}: {source}")]
    Database {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("random number generator failed: {0}")]
    Random(String),
}

impl AuthError {
    pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> AuthError {
        move |source| AuthError::Database { what, source }
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SHA-256 of a secret as hex: what the token and session tables store.
pub(crate) fn digest(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}
