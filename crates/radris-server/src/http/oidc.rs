//! Sign-in through an external OpenID Connect provider (`[oidc]`), outside the auth
//! middleware like the password sign-in:
//!
//! * `GET /api/v1/auth/oidc/login` → 303 to the provider, with a short-lived browser-binding
//!   cookie (`radris_oidc`, SameSite=Lax so that it comes back on the provider's redirect);
//! * `GET /api/v1/auth/oidc/callback?code&state` → the code is exchanged and the ID token
//!   verified (`radris_auth::oidc`), the account made on first sign-in, a server-side session
//!   opened exactly as `POST /api/v1/auth/login` does (same `radris_session` cookie), 303 to `/`.
//!
//! Failures are problem documents (400 for an unknown, replayed or foreign state; 401 when the
//! provider or its token says no; 502 when the provider cannot be reached) that name no token
//! content; every outcome is audited as `auth.oidc.login`.

use std::net::SocketAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use radris_auth::oidc::{OidcError, OidcErrorKind, ProviderAnswer};
use radris_auth::users::{ABSOLUTE_LIFETIME, ExternalFailure};
use radris_core::audit::{AuditRecord, Outcome};
use serde::Deserialize;

use super::AppState;
use super::problem::ApiError;
use super::session::COOKIE;

/// The cookie that ties a callback to the browser that started the sign-in.
pub const BINDING_COOKIE: &str = "radris_oidc";
const BINDING_PATH: &str = "/api/v1/auth/oidc";
const ACTION: &str = "auth.oidc.login";

/// What the provider appends to our callback URL. Providers add more (`session_state`…):
/// unknown parameters are ignored.
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: the provider names itself.
    iss: Option<String>,
}

fn audit(
    st: &AppState,
    tenant: &str,
    user: Option<&str>,
    outcome: Outcome,
    detail: &str,
    source: &str,
) {
    st.audit.record(AuditRecord {
        tenant: tenant.to_owned(),
        actor: user.map_or_else(|| "unknown".to_owned(), |u| format!("user:{u}")),
        action: ACTION.to_owned(),
        outcome,
        resource: BINDING_PATH.into(),
        detail: detail.to_owned(),
        source: source.to_owned(),
    });
}

fn not_configured() -> ApiError {
    ApiError::not_found("sign-in through an identity provider is not configured ([oidc])")
}

/// The problem document for a failed sign-in: what the person can do, nothing internal.
fn problem(e: &OidcError) -> ApiError {
    match e.kind() {
        OidcErrorKind::BadRequest => ApiError::bad_request(
            "this sign-in does not match one started in this browser (unknown, expired or already used state): start again",
        ),
        OidcErrorKind::Unauthenticated => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "sign-in through the identity provider failed",
        ),
        OidcErrorKind::ProviderUnavailable => {
            tracing::warn!(error = %e, "OIDC: identity provider unavailable");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "the identity provider could not be reached or answered unexpectedly; try again later",
            )
        }
        _ => ApiError::internal("OIDC sign-in", e),
    }
}

fn outcome_of(e: &OidcError) -> Outcome {
    match e.kind() {
        OidcErrorKind::BadRequest | OidcErrorKind::Unauthenticated => Outcome::Denied,
        _ => Outcome::Failure,
    }
}

fn binding_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == BINDING_COOKIE)
        .map(|(_, v)| v.trim().to_owned())
}

fn clear_binding() -> HeaderValue {
    HeaderValue::from_static(
        "radris_oidc=; Path=/api/v1/auth/oidc; HttpOnly; Secure; SameSite=Lax; Max-Age=0",
    )
}

/// How people can sign in here; public, so the sign-in form offers only what works.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SignInMethods {
    /// Password (then a passkey or TOTP code when the account has one).
    password: bool,
    /// Single sign-on at an identity provider: `GET /api/v1/auth/oidc/login`.
    oidc: bool,
    /// The tenant single sign-on admits into, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc_tenant: Option<String>,
}

/// The sign-in methods this server offers (no credentials needed, nothing about accounts).
#[utoipa::path(get, path = "/api/v1/auth/methods", tag = "auth",
    responses((status = 200, body = SignInMethods)))]
pub async fn methods(State(st): State<AppState>) -> axum::Json<SignInMethods> {
    axum::Json(SignInMethods {
        password: true,
        oidc: st.oidc.is_some(),
        oidc_tenant: st.oidc.as_ref().map(|o| o.tenant().as_str().to_owned()),
    })
}

/// Start a sign-in at the identity provider (a browser navigation, not an API call).
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let oidc = st.oidc.clone().ok_or_else(not_configured)?;
    let started = match oidc.start().await {
        Ok(s) => s,
        Err(e) => {
            audit(
                &st,
                oidc.tenant().as_str(),
                None,
                outcome_of(&e),
                &e.to_string(),
                &peer.to_string(),
            );
            return Err(problem(&e));
        }
    };
    let location = HeaderValue::from_str(&started.authorize_url)
        .map_err(|e| ApiError::internal("OIDC authorization URL", e))?;
    let cookie = HeaderValue::from_str(&format!(
        "{BINDING_COOKIE}={}; Path={BINDING_PATH}; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
        started.browser_binding,
        radris_auth::oidc::PENDING_LIFETIME.as_secs()
    ))
    .map_err(|e| ApiError::internal("OIDC binding cookie", e))?;
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// The provider sends the browser back here with a code (or an error).
pub async fn callback(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<Callback>, QueryRejection>,
) -> Response {
    let mut resp = match finish(&st, &peer.to_string(), &headers, query).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // the binding is single use, like the state
    resp.headers_mut()
        .append(header::SET_COOKIE, clear_binding());
    resp
}

async fn finish(
    st: &AppState,
    source: &str,
    headers: &HeaderMap,
    query: Result<Query<Callback>, QueryRejection>,
) -> Result<Response, ApiError> {
    let oidc = st.oidc.clone().ok_or_else(not_configured)?;
    let tenant = oidc.tenant().as_str().to_owned();
    let denied = |detail: &str, err: ApiError| {
        audit(st, &tenant, None, Outcome::Denied, detail, source);
        err
    };
    let q = query.map_err(|e| {
        denied(
            "malformed callback",
            ApiError::bad_request(format!("malformed callback parameters: {}", e.body_text())),
        )
    })?;
    let Some(state) = q.state.as_deref().filter(|s| !s.is_empty()) else {
        return Err(denied(
            "callback without state",
            ApiError::bad_request("the callback has no state parameter"),
        ));
    };
    let answer = match (&q.error, &q.code) {
        (Some(e), _) => ProviderAnswer::Error(e),
        (None, Some(c)) => ProviderAnswer::Code(c),
        (None, None) => ProviderAnswer::Code(""),
    };
    let binding = binding_cookie(headers);
    let who = match oidc
        .finish(state, binding.as_deref(), answer, q.iss.as_deref())
        .await
    {
        Ok(who) => who,
        Err(e) => {
            audit(st, &tenant, None, outcome_of(&e), &e.to_string(), source);
            return Err(problem(&e));
        }
    };
    let principal = match st
        .users
        .ensure_external_user(
            &who.tenant,
            &who.user,
            &who.identity,
            who.roles.as_deref(),
            &who.default_roles,
        )
        .await
        .map_err(|e| ApiError::internal("OIDC account", e))?
    {
        Ok(p) => p,
        Err(why) => {
            let detail = match why {
                ExternalFailure::BadName => "the provider's user name is not usable",
                ExternalFailure::NameTaken => {
                    "the user name belongs to a local account or another provider identity"
                }
                ExternalFailure::Disabled => "account disabled",
            };
            audit(
                st,
                &tenant,
                Some(&who.user),
                Outcome::Denied,
                detail,
                source,
            );
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this identity cannot sign in to RADRIS; ask an administrator",
            ));
        }
    };
    let secret = st
        .users
        .open_session(&principal)
        .await
        .map_err(|e| ApiError::internal("opening a session", e))?;
    audit(
        st,
        &tenant,
        Some(&principal.user),
        Outcome::Success,
        &format!("session opened; scopes {}", principal.scopes),
        source,
    );
    // the same cookie as the password sign-in
    let cookie = HeaderValue::from_str(&format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        ABSOLUTE_LIFETIME.as_secs()
    ))
    .map_err(|e| ApiError::internal("session cookie", e))?;
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}
