//! User accounts and server-side sessions.
//!
//! * Accounts: per tenant, Argon2id hash, roles. Five failed logins lock the account for 15
//!   minutes (counted per account, so spraying one account from many addresses locks it too);
//!   unknown users cost the same Argon2 work as known ones, so timing does not reveal them.
//! * Sessions: a 256-bit random secret in an HttpOnly/Secure/SameSite=Strict cookie; only its
//!   SHA-256 is stored. A session ends after [`IDLE_TIMEOUT`] without a request (HIPAA
//!   automatic logoff) or [`ABSOLUTE_LIFETIME`] after login, or at logout.

use std::time::Duration;

use radris_core::TenantId;
use sqlx::{AnyPool, Row};

use crate::keys::{self, KeyProvider};
use crate::principal::{Principal, Scope, Scopes};
use crate::{AuthError, digest, now_millis, password};

pub const MAX_FAILED_LOGINS: i64 = 5;
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
pub const ABSOLUTE_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const SESSION_PREFIX: &str = "rds_";

/// The roles of the platform. Until Cedar policies land, a role maps to scopes.
pub const ROLES: &[&str] = &[
    "admin",
    "radiologist",
    "technologist",
    "referring",
    "auditor",
    "service",
];

/// Scopes a set of roles grants.
pub fn scopes_of_roles(roles: &str) -> Scopes {
    let mut s = Vec::new();
    for r in roles.split(',').map(str::trim) {
        match r {
            "admin" => s.extend([Scope::Read, Scope::Write, Scope::Delete, Scope::Admin]),
            "radiologist" | "technologist" | "service" => s.extend([Scope::Read, Scope::Write]),
            // referring physicians place orders (write); Cedar keeps them off study writes
            "referring" => s.extend([Scope::Read, Scope::Write]),
            "auditor" => s.push(Scope::Admin),
            _ => {}
        }
    }
    Scopes::of(&s)
}

fn check_roles(roles: &str) -> Result<(), AuthError> {
    for r in roles.split(',').map(str::trim) {
        if !ROLES.contains(&r) {
            return Err(AuthError::Invalid(format!(
                "unknown role {r:?}; roles are {}",
                ROLES.join(", ")
            )));
        }
    }
    Ok(())
}

/// Why a login failed (the HTTP answer is the same 401 for all, the audit record differs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    BadCredentials,
    Locked,
    /// The password was right; the account has TOTP or a passkey and no code was given.
    SecondFactorRequired,
    /// A wrong, expired or already used TOTP or recovery code.
    BadSecondFactor,
}

/// Why [`Users::ensure_external_user`] refused someone the provider vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalFailure {
    /// The name is empty, too long or has control characters.
    BadName,
    /// A local account, or another provider identity, already has this name.
    NameTaken,
    /// The account is disabled in RADRIS.
    Disabled,
}

/// Start of the password column of accounts that sign in through an identity provider.
const EXTERNAL_MARK: &str = "!external:";

/// A TOTP enrolment to show the user once.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// Base32 seed for manual entry.
    pub secret_base32: String,
    /// `otpauth://` URI for authenticator apps (QR code).
    pub uri: String,
}

const TOTP_STEP: u64 = 30;
const RECOVERY_CODES: usize = 10;

fn totp_of(seed: Vec<u8>) -> Result<totp_rs::Totp, AuthError> {
    totp_rs::Builder::new()
        .with_secret(seed)
        .with_step_duration(TOTP_STEP)
        .with_skew(1)
        .build()
        .map_err(|e| AuthError::Invalid(format!("TOTP: {e}")))
}

fn unix_now() -> u64 {
    (now_millis() / 1000).max(0) as u64
}

fn context(tenant: &TenantId, user: &str) -> String {
    format!("totp|{}|{user}", tenant.as_str())
}

/// The accounts and sessions tables.
#[derive(Clone)]
pub struct Users {
    pool: AnyPool,
    /// A valid hash to verify against when the user does not exist.
    dummy_hash: String,
    keys: std::sync::Arc<dyn KeyProvider>,
    /// Argon2id verifications running at once (each takes tens of ms of CPU and ~19 MiB):
    /// bounded, and off the async workers.
    hashing: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Users {
    pub fn new(pool: AnyPool, keys: std::sync::Arc<dyn KeyProvider>) -> Result<Self, AuthError> {
        Ok(Users {
            pool,
            dummy_hash: password::hash("unused dummy password for timing")?,
            keys,
            hashing: std::sync::Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            )),
        })
    }

    /// Verify a password against a PHC hash on a blocking thread, at most one per CPU at a
    /// time (a burst of sign-ins queues instead of stalling every request).
    async fn verify_password(&self, password_text: &str, hash: &str) -> bool {
        let Ok(_permit) = self.hashing.clone().acquire_owned().await else {
            return false;
        };
        let (p, h) = (password_text.to_owned(), hash.to_owned());
        tokio::task::spawn_blocking(move || password::verify(&p, &h))
            .await
            .unwrap_or(false)
    }

    /// Create an account. Fails if it exists or the password breaks the rules.
    pub async fn create(
        &self,
        tenant: &TenantId,
        user: &str,
        password_text: &str,
        roles: &str,
    ) -> Result<(), AuthError> {
        let user = user.trim();
        if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
            return Err(AuthError::Invalid(
                "user name must be 1-128 printable characters".into(),
            ));
        }
        check_roles(roles)?;
        password::check_policy(user, password_text)?;
        let hash = password::hash(password_text)?;
        let done = sqlx::query(
            "INSERT INTO users (tenant_id, user_name, password_hash, roles, created_at, failed_logins, locked_until, disabled) \
             VALUES ($1, $2, $3, $4, $5, 0, 0, 0) ON CONFLICT (tenant_id, user_name) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(hash)
        .bind(roles)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("creating a user"))?
        .rows_affected();
        if done == 0 {
            return Err(AuthError::Invalid(format!(
                "user {user} already exists in tenant {tenant}"
            )));
        }
        Ok(())
    }

    /// Whether a tenant has any user (bootstrap creates the first administrator only).
    pub async fn any_user(&self, tenant: &TenantId) -> Result<bool, AuthError> {
        let row = sqlx::query("SELECT COUNT(*) FROM users WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(AuthError::db("counting users"))?;
        Ok(row
            .try_get::<i64, _>(0)
            .map_err(AuthError::db("counting users"))?
            > 0)
    }

    /// Whether a tenant has an account with the `admin` role (bootstrap creates the first
    /// administrator only; other accounts, such as the demo user, do not count).
    pub async fn any_admin(&self, tenant: &TenantId) -> Result<bool, AuthError> {
        let rows = sqlx::query("SELECT roles FROM users WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(AuthError::db("listing roles"))?;
        for r in rows {
            let roles: String = r.try_get(0).map_err(AuthError::db("listing roles"))?;
            if roles.split(',').any(|x| x.trim() == "admin") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Check a password; on success the principal, on failure why (for the audit log).
    pub async fn login(
        &self,
        tenant: &TenantId,
        user: &str,
        password_text: &str,
        second_factor: Option<&str>,
    ) -> Result<Result<Principal, LoginFailure>, AuthError> {
        let row = sqlx::query(
            "SELECT password_hash, roles, failed_logins, locked_until, disabled, totp_sealed FROM users WHERE tenant_id = $1 AND user_name = $2",
        )
        .bind(tenant.as_str())
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(AuthError::db("reading a user"))?;
        let Some(row) = row else {
            let _ = self.verify_password(password_text, &self.dummy_hash).await;
            return Ok(Err(LoginFailure::BadCredentials));
        };
        let s = |i| {
            row.try_get::<String, _>(i)
                .map_err(AuthError::db("reading a user"))
        };
        let n = |i| {
            row.try_get::<i64, _>(i)
                .map_err(AuthError::db("reading a user"))
        };
        let (hash, roles, locked_until, disabled) = (s(0)?, s(1)?, n(3)?, n(4)?);
        let totp_sealed = s(5)?;
        let now = now_millis();
        if locked_until > now {
            let _ = self.verify_password(password_text, &self.dummy_hash).await;
            return Ok(Err(LoginFailure::Locked));
        }
        // an account of an external identity provider has no password: the same Argon2
        // work as a wrong one (timing), and always a failure
        let external = hash.starts_with(EXTERNAL_MARK);
        let against = if external { &self.dummy_hash } else { &hash };
        if disabled != 0 || !self.verify_password(password_text, against).await || external {
            self.count_failure(tenant, user).await?;
            return Ok(Err(LoginFailure::BadCredentials));
        }
        // a passkey is a second factor too: without TOTP, the code path fails and the HTTP
        // layer offers the passkey challenge (crate::webauthn)
        if !totp_sealed.is_empty()
            || crate::webauthn::has_passkeys(&self.pool, tenant, user).await?
        {
            let Some(code) = second_factor.map(str::trim).filter(|c| !c.is_empty()) else {
                return Ok(Err(LoginFailure::SecondFactorRequired));
            };
            if totp_sealed.is_empty()
                || !self
                    .second_factor_ok(tenant, user, &totp_sealed, code)
                    .await?
            {
                self.count_failure(tenant, user).await?;
                return Ok(Err(LoginFailure::BadSecondFactor));
            }
        }
        sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = 0 WHERE tenant_id = $1 AND user_name = $2",
        )
        .bind(tenant.as_str())
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("resetting failed logins"))?;
        Ok(Ok(Principal {
            tenant: tenant.clone(),
            actor: format!("user:{user}"),
            user: user.to_owned(),
            scopes: scopes_of_roles(&roles),
        }))
    }

    pub(crate) async fn count_failure(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<(), AuthError> {
        sqlx::query(
            // a lock that has run out starts a fresh count (the first failure after it does
            // not lock again at once). Parameters first appear in order: SQLite numbers
            // `$N` by first appearance.
            "UPDATE users SET \
             failed_logins = CASE WHEN locked_until <> 0 AND locked_until <= $1 THEN 1 ELSE failed_logins + 1 END, \
             locked_until = CASE WHEN locked_until <> 0 AND locked_until <= $1 THEN 0 \
                                 WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END \
             WHERE tenant_id = $4 AND user_name = $5",
        )
        .bind(now_millis())
        .bind(MAX_FAILED_LOGINS)
        .bind(now_millis() + LOCKOUT.as_millis() as i64)
        .bind(tenant.as_str())
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("counting a failed login"))?;
        Ok(())
    }

    /// A TOTP code (each 30 s step usable once: a replayed code is refused) or an unused
    /// recovery code (then spent).
    async fn second_factor_ok(
        &self,
        tenant: &TenantId,
        user: &str,
        sealed: &str,
        code: &str,
    ) -> Result<bool, AuthError> {
        if code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()) {
            let seed = keys::open(self.keys.as_ref(), &context(tenant, user), sealed)?;
            let Some(step) = totp_of(seed)?.check(code, unix_now()) else {
                return Ok(false);
            };
            let step = i64::try_from(step).unwrap_or(i64::MAX);
            // consume the step atomically: only one login per step, no replay
            let used = sqlx::query(
                "UPDATE users SET totp_last_step = $1 WHERE tenant_id = $2 AND user_name = $3 AND totp_last_step < $1",
            )
            .bind(step)
            .bind(tenant.as_str())
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(AuthError::db("recording a TOTP step"))?
            .rows_affected();
            return Ok(used == 1);
        }
        let spent = sqlx::query(
            "UPDATE mfa_recovery SET used_at = $1 WHERE tenant_id = $2 AND user_name = $3 AND code_sha256 = $4 AND used_at = 0",
        )
        .bind(now_millis())
        .bind(tenant.as_str())
        .bind(user)
        .bind(digest(&normalise_recovery(code)))
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("spending a recovery code"))?
        .rows_affected();
        Ok(spent == 1)
    }

    /// Start TOTP enrolment: a new seed, sealed with the master key, pending until confirmed.
    pub async fn totp_enrol(&self, tenant: &TenantId, user: &str) -> Result<Enrolment, AuthError> {
        let mut seed = [0u8; 20];
        getrandom::fill(&mut seed).map_err(|e| AuthError::Random(e.to_string()))?;
        let sealed = keys::seal(self.keys.as_ref(), &context(tenant, user), &seed)?;
        let done = sqlx::query(
            "UPDATE users SET totp_pending = $1 WHERE tenant_id = $2 AND user_name = $3",
        )
        .bind(sealed)
        .bind(tenant.as_str())
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("starting TOTP enrolment"))?
        .rows_affected();
        if done == 0 {
            return Err(AuthError::Unauthenticated);
        }
        let b32 = totp_rs::Secret::from(seed.to_vec()).to_base32();
        let label: String = user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-@".contains(*c))
            .collect();
        Ok(Enrolment {
            uri: format!(
                "otpauth://totp/RADRIS:{label}?secret={b32}&issuer=RADRIS&algorithm=SHA1&digits=6&period={TOTP_STEP}"
            ),
            secret_base32: b32,
        })
    }

    /// Confirm enrolment with a code from the app; returns the single-use recovery codes
    /// (shown once, stored only as SHA-256).
    pub async fn totp_confirm(
        &self,
        tenant: &TenantId,
        user: &str,
        code: &str,
    ) -> Result<Vec<String>, AuthError> {
        let row =
            sqlx::query("SELECT totp_pending FROM users WHERE tenant_id = $1 AND user_name = $2")
                .bind(tenant.as_str())
                .bind(user)
                .fetch_optional(&self.pool)
                .await
                .map_err(AuthError::db("reading TOTP enrolment"))?
                .ok_or(AuthError::Unauthenticated)?;
        let pending: String = row
            .try_get(0)
            .map_err(AuthError::db("reading TOTP enrolment"))?;
        if pending.is_empty() {
            return Err(AuthError::Invalid("no TOTP enrolment is pending".into()));
        }
        let seed = keys::open(self.keys.as_ref(), &context(tenant, user), &pending)?;
        let step = totp_of(seed)?
            .check(code.trim(), unix_now())
            .ok_or_else(|| {
                AuthError::Invalid("the code does not match; check the device clock".into())
            })?;
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        let mut tx = self.pool.begin().await.map_err(AuthError::db("begin"))?;
        // only the enrolment this code was checked against is confirmed: a second enrolment
        // racing with this one leaves the row unchanged, and this confirmation fails
        let updated = sqlx::query(
            "UPDATE users SET totp_sealed = totp_pending, totp_pending = '', totp_last_step = $1 WHERE tenant_id = $2 AND user_name = $3 AND totp_pending = $4",
        )
        .bind(i64::try_from(step).unwrap_or(i64::MAX))
        .bind(tenant.as_str())
        .bind(user)
        .bind(&pending)
        .execute(&mut *tx)
        .await
        .map_err(AuthError::db("enabling TOTP"))?;
        if updated.rows_affected() != 1 {
            return Err(AuthError::Invalid(
                "the enrolment changed while it was being confirmed; enrol again".into(),
            ));
        }
        sqlx::query("DELETE FROM mfa_recovery WHERE tenant_id = $1 AND user_name = $2")
            .bind(tenant.as_str())
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(AuthError::db("replacing recovery codes"))?;
        for _ in 0..RECOVERY_CODES {
            let mut raw = [0u8; 5];
            getrandom::fill(&mut raw).map_err(|e| AuthError::Random(e.to_string()))?;
            let code = hex::encode(raw);
            let shown = format!("{}-{}", &code[..5], &code[5..]);
            sqlx::query(
                "INSERT INTO mfa_recovery (tenant_id, user_name, code_sha256, used_at) VALUES ($1, $2, $3, 0)",
            )
            .bind(tenant.as_str())
            .bind(user)
            .bind(digest(&code))
            .execute(&mut *tx)
            .await
            .map_err(AuthError::db("storing recovery codes"))?;
            codes.push(shown);
        }
        tx.commit().await.map_err(AuthError::db("enabling TOTP"))?;
        Ok(codes)
    }

    /// Open a session for a logged-in principal; returns the cookie secret.
    pub async fn open_session(&self, p: &Principal) -> Result<String, AuthError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| AuthError::Random(e.to_string()))?;
        let secret = format!("{SESSION_PREFIX}{}", hex::encode(raw));
        let now = now_millis();
        sqlx::query(
            "INSERT INTO sessions (session_sha256, tenant_id, user_name, created_at, last_seen, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $4, $5, 0)",
        )
        .bind(digest(&secret))
        .bind(p.tenant.as_str())
        .bind(&p.user)
        .bind(now)
        .bind(now + ABSOLUTE_LIFETIME.as_millis() as i64)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("opening a session"))?;
        Ok(secret)
    }

    /// The principal of a live session (and the session is touched: idle time restarts).
    pub async fn session(&self, secret: &str, idle: Duration) -> Result<Principal, AuthError> {
        if !secret.starts_with(SESSION_PREFIX) || secret.len() != SESSION_PREFIX.len() + 64 {
            return Err(AuthError::Unauthenticated);
        }
        let key = digest(secret);
        let now = now_millis();
        let row = sqlx::query(
            "SELECT s.tenant_id, s.user_name, s.last_seen, s.expires_at, s.revoked_at, u.roles, u.disabled \
             FROM sessions s JOIN users u ON u.tenant_id = s.tenant_id AND u.user_name = s.user_name \
             WHERE s.session_sha256 = $1",
        )
        .bind(&key)
        .fetch_optional(&self.pool)
        .await
        .map_err(AuthError::db("reading a session"))?
        .ok_or(AuthError::Unauthenticated)?;
        let s = |i| {
            row.try_get::<String, _>(i)
                .map_err(AuthError::db("reading a session"))
        };
        let n = |i| {
            row.try_get::<i64, _>(i)
                .map_err(AuthError::db("reading a session"))
        };
        let (last_seen, expires_at, revoked_at, disabled) = (n(2)?, n(3)?, n(4)?, n(6)?);
        if revoked_at != 0
            || disabled != 0
            || expires_at <= now
            || now - last_seen > idle.as_millis() as i64
        {
            return Err(AuthError::Unauthenticated);
        }
        // touching at most every few seconds keeps writes off the hot path
        if now - last_seen > 5_000 {
            sqlx::query("UPDATE sessions SET last_seen = $1 WHERE session_sha256 = $2")
                .bind(now)
                .bind(&key)
                .execute(&self.pool)
                .await
                .map_err(AuthError::db("touching a session"))?;
        }
        let tenant = TenantId::parse(&s(0)?).map_err(|_| AuthError::Unauthenticated)?;
        let user = s(1)?;
        Ok(Principal {
            tenant,
            actor: format!("user:{user}"),
            user,
            scopes: scopes_of_roles(&s(5)?),
        })
    }

    /// The account of a person an external identity provider (OIDC) vouched for, created on
    /// first sign-in. `identity` names them at the provider (issuer and subject, hashed into
    /// the password column as a `!external:` mark, which no password matches), so a provider
    /// user can never take over a local account, nor another provider user's, by choosing
    /// its name. `roles`: `Some` sets them at every sign-in (the provider is the source),
    /// `None` keeps those of an existing account and gives a new one `default_roles`.
    pub async fn ensure_external_user(
        &self,
        tenant: &TenantId,
        user: &str,
        identity: &str,
        roles: Option<&str>,
        default_roles: &str,
    ) -> Result<Result<Principal, ExternalFailure>, AuthError> {
        let user = user.trim();
        if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
            return Ok(Err(ExternalFailure::BadName));
        }
        let initial = roles.unwrap_or(default_roles);
        check_roles(initial)?;
        let mark = format!("{EXTERNAL_MARK}{}", digest(identity));
        sqlx::query(
            "INSERT INTO users (tenant_id, user_name, password_hash, roles, created_at, failed_logins, locked_until, disabled) \
             VALUES ($1, $2, $3, $4, $5, 0, 0, 0) ON CONFLICT (tenant_id, user_name) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(&mark)
        .bind(initial)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("creating an external user"))?;
        let row = sqlx::query(
            "SELECT password_hash, roles, disabled FROM users WHERE tenant_id = $1 AND user_name = $2",
        )
        .bind(tenant.as_str())
        .bind(user)
        .fetch_one(&self.pool)
        .await
        .map_err(AuthError::db("reading an external user"))?;
        let hash: String = row
            .try_get(0)
            .map_err(AuthError::db("reading an external user"))?;
        let mut current: String = row
            .try_get(1)
            .map_err(AuthError::db("reading an external user"))?;
        let disabled: i64 = row
            .try_get(2)
            .map_err(AuthError::db("reading an external user"))?;
        if hash != mark {
            return Ok(Err(ExternalFailure::NameTaken));
        }
        if disabled != 0 {
            return Ok(Err(ExternalFailure::Disabled));
        }
        if let Some(r) = roles.filter(|r| *r != current) {
            sqlx::query("UPDATE users SET roles = $1 WHERE tenant_id = $2 AND user_name = $3")
                .bind(r)
                .bind(tenant.as_str())
                .bind(user)
                .execute(&self.pool)
                .await
                .map_err(AuthError::db("updating the roles of an external user"))?;
            current = r.to_owned();
        }
        Ok(Ok(Principal {
            tenant: tenant.clone(),
            actor: format!("user:{user}"),
            user: user.to_owned(),
            scopes: scopes_of_roles(&current),
        }))
    }

    /// End a session (logout).
    pub async fn close_session(&self, secret: &str) -> Result<(), AuthError> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE session_sha256 = $2 AND revoked_at = 0",
        )
        .bind(now_millis())
        .bind(digest(secret))
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("closing a session"))?;
        Ok(())
    }

    // ---- Cedar attributes of accounts (roles, site, person name) ----

    /// The authorisation profile of an account, if `user` is one in `tenant`.
    pub async fn profile(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<Option<Profile>, AuthError> {
        let row = sqlx::query(
            "SELECT roles, site, person_name, disabled FROM users WHERE tenant_id = $1 AND user_name = $2",
        )
        .bind(tenant.as_str())
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(AuthError::db("reading a user's profile"))?;
        let Some(r) = row else { return Ok(None) };
        let s = |i| {
            r.try_get::<String, _>(i)
                .map_err(AuthError::db("reading a user's profile"))
        };
        Ok(Some(Profile {
            roles: s(0)?,
            site: s(1)?,
            person_name: s(2)?,
            disabled: r
                .try_get::<i64, _>(3)
                .map_err(AuthError::db("reading a user's profile"))?
                != 0,
        }))
    }

    /// Change an account's roles, site or person name (`None` keeps the value); whether the
    /// account exists. Roles must be known ([`ROLES`]); site and name at most 128 printable
    /// characters.
    pub async fn set_profile(
        &self,
        tenant: &TenantId,
        user: &str,
        roles: Option<&str>,
        site: Option<&str>,
        person_name: Option<&str>,
    ) -> Result<bool, AuthError> {
        if let Some(r) = roles {
            check_roles(r)?;
        }
        for (what, v) in [("site", site), ("person_name", person_name)] {
            if v.is_some_and(|v| v.len() > 128 || v.chars().any(char::is_control)) {
                return Err(AuthError::Invalid(format!(
                    "{what} must be at most 128 printable characters"
                )));
            }
        }
        let Some(current) = self.profile(tenant, user).await? else {
            return Ok(false);
        };
        let roles = roles.map_or(current.roles, |r| {
            r.split(',').map(str::trim).collect::<Vec<_>>().join(",")
        });
        let site = site.map_or(current.site, |s| s.trim().to_owned());
        let person_name = person_name.map_or(current.person_name, |p| p.trim().to_owned());
        sqlx::query(
            "UPDATE users SET roles = $1, site = $2, person_name = $3, person_name_norm = $4 \
             WHERE tenant_id = $5 AND user_name = $6",
        )
        .bind(&roles)
        .bind(&site)
        .bind(&person_name)
        .bind(person_name_norm(&person_name))
        .bind(tenant.as_str())
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("updating a user's profile"))?;
        Ok(true)
    }

    /// The accounts whose person name is `referring_norm` (a study's ReferringPhysicianName,
    /// trimmed and upper-cased as the index stores it): the study's referrers.
    pub async fn named(
        &self,
        tenant: &TenantId,
        referring_norm: &str,
    ) -> Result<Vec<String>, AuthError> {
        if referring_norm.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT user_name FROM users WHERE tenant_id = $1 AND person_name_norm = $2 ORDER BY user_name",
        )
        .bind(tenant.as_str())
        .bind(referring_norm)
        .fetch_all(&self.pool)
        .await
        .map_err(AuthError::db("finding users by person name"))?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>(0)
                    .map_err(AuthError::db("finding users by person name"))
            })
            .collect()
    }

    /// Every account of the tenant that has a person name, by normalised name (for
    /// filtering study lists without a query per study).
    pub async fn all_named(
        &self,
        tenant: &TenantId,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, AuthError> {
        let rows = sqlx::query(
            "SELECT person_name_norm, user_name FROM users WHERE tenant_id = $1 AND person_name_norm <> ''",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(AuthError::db("listing person names"))?;
        let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
        for r in &rows {
            let name: String = r
                .try_get(0)
                .map_err(AuthError::db("listing person names"))?;
            let user: String = r
                .try_get(1)
                .map_err(AuthError::db("listing person names"))?;
            out.entry(name).or_default().push(user);
        }
        Ok(out)
    }
}

/// An account's attributes for authorisation ([`Users::profile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Comma separated role names.
    pub roles: String,
    /// '' for none.
    pub site: String,
    /// As DICOM spells it (`Family^Given`); '' for none.
    pub person_name: String,
    pub disabled: bool,
}

/// A person name as the index compares it (the index's `referring_norm`):
/// [`radris_core::person_name_key`].
pub fn person_name_norm(name: &str) -> String {
    radris_core::person_name_key(name)
}

fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}
