//! Sign-in for people: `POST /api/v1/auth/login` checks a password (Argon2id, lockout) and
//! opens a server-side session carried in a `radris_session` cookie (HttpOnly, Secure,
//! SameSite=Strict); `POST /api/v1/auth/logout` ends it. Both are audited here: they run
//! before there is a principal, outside the auth middleware.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use radris_auth::LoginFailure;
use radris_auth::users::{ABSOLUTE_LIFETIME, IDLE_TIMEOUT};
use radris_core::TenantId;
use radris_core::audit::{AuditRecord, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::problem::ApiError;
use super::rest::ApiJson;

pub const COOKIE: &str = "radris_session";

/// Sign-in attempts one network address may make per [`LOGIN_WINDOW`] before it gets 429
/// (on top of the per-account lockout, so one address cannot spray many accounts).
pub const LOGIN_ATTEMPTS: usize = 10;
pub const LOGIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Sliding-window counter of sign-in attempts per address.
#[derive(Default)]
pub struct LoginLimiter {
    seen: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Vec<std::time::Instant>>>,
}

impl LoginLimiter {
    /// Record an attempt; false when the address is over its budget.
    pub fn allow(&self, ip: std::net::IpAddr) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        if seen.len() > 100_000 {
            seen.retain(|_, v| v.last().is_some_and(|t| t.elapsed() < LOGIN_WINDOW));
        }
        let v = seen.entry(ip).or_default();
        v.retain(|t| t.elapsed() < LOGIN_WINDOW);
        if v.len() >= LOGIN_ATTEMPTS {
            return false;
        }
        v.push(std::time::Instant::now());
        true
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    tenant: String,
    user: String,
    password: String,
    /// A 6-digit TOTP code or a recovery code, for accounts with a second factor.
    code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SignedIn {
    tenant: String,
    user: String,
    scopes: Vec<String>,
    /// The session ends after this many seconds without a request.
    idle_timeout_s: u64,
    /// And at the latest this many seconds after sign-in.
    lifetime_s: u64,
}

/// The session secret of a request's cookie, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
}

fn audit(
    st: &AppState,
    tenant: &str,
    user: &str,
    action: &str,
    outcome: Outcome,
    detail: &str,
    source: &str,
) {
    st.audit.record(AuditRecord {
        tenant: tenant.to_owned(),
        actor: format!("user:{user}"),
        action: action.to_owned(),
        outcome,
        resource: "/api/v1/auth".into(),
        detail: detail.to_owned(),
        source: source.to_owned(),
    });
}

/// Sign in with a password; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = SignedIn), (status = 401, body = super::rest::Problem)))]
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let source = peer.to_string();
    if !st.login_limiter.allow(peer.ip()) {
        audit(
            &st,
            "-",
            &req.user,
            "auth.login",
            Outcome::Denied,
            "too many sign-in attempts from this address",
            &source,
        );
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many sign-in attempts; try again within {} s",
                LOGIN_WINDOW.as_secs()
            ),
        );
        e.header = Some((header::RETRY_AFTER, HeaderValue::from_static("60")));
        return Err(e);
    }
    let tenant = TenantId::parse(&req.tenant).map_err(|_| ApiError::unauthorized())?;
    let outcome = st
        .users
        .login(&tenant, &req.user, &req.password, req.code.as_deref())
        .await
        .map_err(|e| ApiError::internal("sign-in", e))?;
    let principal = match outcome {
        Ok(p) => p,
        Err(why) => {
            let detail = match why {
                LoginFailure::BadCredentials => "wrong user name or password",
                LoginFailure::Locked => "account locked after repeated failures",
                LoginFailure::SecondFactorRequired => "second factor required",
                LoginFailure::BadSecondFactor => "wrong, expired or replayed second factor",
            };
            audit(
                &st,
                tenant.as_str(),
                &req.user,
                "auth.login",
                Outcome::Denied,
                detail,
                &source,
            );
            if why == LoginFailure::SecondFactorRequired
                && let Some(challenge) =
                    super::webauthn::passkey_challenge(&st, &tenant, &req.user).await?
            {
                return Ok(challenge);
            }
            let told = if why == LoginFailure::SecondFactorRequired {
                "a second factor is required: send the code of your authenticator app as \"code\""
            } else {
                "sign-in failed: wrong user name, password or code, or the account is locked for a while"
            };
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                detail: told.into(),
                header: None,
            });
        }
    };
    signed_in(&st, &principal, "auth.login", &source).await
}

/// Open a session for a principal that passed sign-in (password and second factor), audit
/// it as `action` and answer with the session cookie: shared by the password and passkey
/// sign-ins so both set exactly the same cookie.
pub(super) async fn signed_in(
    st: &AppState,
    principal: &radris_auth::Principal,
    action: &str,
    source: &str,
) -> Result<Response, ApiError> {
    let tenant = &principal.tenant;
    let secret = st
        .users
        .open_session(principal)
        .await
        .map_err(|e| ApiError::internal("opening a session", e))?;
    audit(
        st,
        tenant.as_str(),
        &principal.user,
        action,
        Outcome::Success,
        "session opened",
        source,
    );
    let cookie = format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        ABSOLUTE_LIFETIME.as_secs()
    );
    let body = SignedIn {
        tenant: tenant.as_str().to_owned(),
        user: principal.user.clone(),
        scopes: principal
            .scopes
            .to_string()
            .split(',')
            .map(str::to_owned)
            .collect(),
        idle_timeout_s: IDLE_TIMEOUT.as_secs(),
        lifetime_s: ABSOLUTE_LIFETIME.as_secs(),
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal("session cookie", e))?,
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// End the session of the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(secret) = session_cookie(&headers) {
        if let Ok(p) = st.users.session(&secret, IDLE_TIMEOUT).await {
            audit(
                &st,
                p.tenant.as_str(),
                &p.user,
                "auth.logout",
                Outcome::Success,
                "session closed",
                &peer.to_string(),
            );
        }
        st.users
            .close_session(&secret)
            .await
            .map_err(|e| ApiError::internal("closing a session", e))?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "radris_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(resp)
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// Base32 seed for manual entry.
    secret: String,
    /// `otpauth://` URI (show as a QR code).
    uri: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Single-use codes for when the device is lost; shown only now.
    recovery_codes: Vec<String>,
}

fn signed_in_user(p: &radris_auth::Principal) -> Result<&str, ApiError> {
    if p.actor.starts_with("user:") {
        Ok(&p.user)
    } else {
        Err(ApiError::forbidden(
            "a second factor belongs to a person: sign in with a password first",
        ))
    }
}

/// Start TOTP enrolment for the signed-in user.
#[utoipa::path(post, path = "/api/v1/auth/totp/enrol", tag = "auth",
    responses((status = 200, body = TotpEnrolment), (status = 403, body = super::rest::Problem)))]
pub async fn totp_enrol(
    State(st): State<AppState>,
    axum::Extension(p): axum::Extension<radris_auth::Principal>,
) -> Result<Json<TotpEnrolment>, ApiError> {
    let user = signed_in_user(&p)?;
    let e = st
        .users
        .totp_enrol(&p.tenant, user)
        .await
        .map_err(|e| ApiError::internal("TOTP enrolment", e))?;
    Ok(Json(TotpEnrolment {
        secret: e.secret_base32,
        uri: e.uri,
    }))
}

/// Confirm TOTP enrolment with a code; from now on sign-in needs a code.
#[utoipa::path(post, path = "/api/v1/auth/totp/confirm", tag = "auth", request_body = TotpCode,
    responses((status = 200, body = RecoveryCodes), (status = 400, body = super::rest::Problem)))]
pub async fn totp_confirm(
    State(st): State<AppState>,
    axum::Extension(p): axum::Extension<radris_auth::Principal>,
    ApiJson(req): ApiJson<TotpCode>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let user = signed_in_user(&p)?;
    let codes = st
        .users
        .totp_confirm(&p.tenant, user, &req.code)
        .await
        .map_err(|e| match e {
            radris_auth::AuthError::Invalid(m) => ApiError::bad_request(m),
            e => ApiError::internal("TOTP confirmation", e),
        })?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}
