//! WebAuthn passkeys over HTTP (the JSON forms of WebAuthn Level 3 §5.1.8/§5.1.9, binary
//! fields as base64url without padding, so browsers can use
//! `PublicKeyCredential.parseCreationOptionsFromJSON` and `credential.toJSON()`).
//!
//! * Registration, for a signed-in person (behind the auth middleware):
//!   `POST /api/v1/auth/webauthn/register/start` → creation options;
//!   `POST /api/v1/auth/webauthn/register/finish {name?, credential}` → the stored passkey;
//!   `GET /api/v1/auth/webauthn/credentials`; `DELETE …/credentials?credential_id=`.
//! * Sign-in: a right password for an account with a passkey answers 401 with a problem
//!   document carrying `mfa_ticket` and the request options (`webauthn`), see
//!   [`passkey_challenge`]; `POST /api/v1/auth/webauthn/login/finish {mfa_ticket,
//!   credential}` (outside the middleware, rate-limited like the password sign-in) opens the
//!   session exactly as the password sign-in does.
//!
//! Every outcome is audited (`auth.webauthn.register`, `.delete`, `.login`) with the check
//! that failed; a failed sign-in tells the caller only that it failed.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use radris_auth::Principal;
use radris_auth::webauthn::{
    ALGORITHMS, Assertion, CredentialInfo, PasskeyLogin, Passkeys, Registration, RelyingParty,
    WebauthnError,
};
use radris_core::TenantId;
use radris_core::audit::{AuditRecord, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::problem::ApiError;
use super::rest::{ApiJson, ApiQuery, Problem};

const PUBLIC_KEY: &str = "public-key";

#[derive(Serialize, ToSchema)]
pub struct RpEntity {
    id: String,
    name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserEntity {
    /// The opaque user handle (base64url), never the user name.
    id: String,
    name: String,
    display_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialParameters {
    #[serde(rename = "type")]
    ty: String,
    /// COSE algorithm: -7 ES256, -8 EdDSA.
    alg: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialDescriptor {
    #[serde(rename = "type")]
    ty: String,
    /// Credential id, base64url.
    id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatorSelection {
    resident_key: String,
    require_resident_key: bool,
    user_verification: String,
}

/// `PublicKeyCredentialCreationOptionsJSON`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreationOptions {
    rp: RpEntity,
    user: UserEntity,
    /// base64url; single use, bound to the signed-in user.
    challenge: String,
    pub_key_cred_params: Vec<CredentialParameters>,
    /// Milliseconds.
    timeout: u64,
    exclude_credentials: Vec<CredentialDescriptor>,
    authenticator_selection: AuthenticatorSelection,
    attestation: String,
}

/// `PublicKeyCredentialRequestOptionsJSON`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestOptions {
    /// base64url; single use, bound to `mfa_ticket`.
    challenge: String,
    /// Milliseconds.
    timeout: u64,
    rp_id: String,
    allow_credentials: Vec<CredentialDescriptor>,
    user_verification: String,
}

/// The 401 answer of `POST /api/v1/auth/login` for an account with a passkey: an RFC 9457
/// problem document with two extension members.
#[derive(Serialize, ToSchema)]
pub struct SecondFactorChallenge {
    #[serde(rename = "type")]
    ty: String,
    title: String,
    status: u16,
    detail: String,
    /// Opaque, single use, valid 2 minutes: send it back to `/api/v1/auth/webauthn/login/finish`.
    mfa_ticket: String,
    /// Pass to `navigator.credentials.get({publicKey: …})` (after base64url decoding).
    webauthn: RequestOptions,
}

/// `AuthenticatorAttestationResponseJSON` (fields we do not need are ignored).
#[derive(Deserialize, ToSchema)]
pub struct AttestationResponse {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "attestationObject")]
    attestation_object: String,
}

/// `RegistrationResponseJSON`, as `credential.toJSON()` gives it.
#[derive(Deserialize, ToSchema)]
pub struct RegistrationCredential {
    id: String,
    #[serde(rename = "rawId")]
    raw_id: Option<String>,
    #[serde(rename = "type")]
    ty: String,
    response: AttestationResponse,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    /// A label for the list (default "passkey"); 1-64 printable characters.
    name: Option<String>,
    credential: RegistrationCredential,
}

/// `AuthenticatorAssertionResponseJSON`.
#[derive(Deserialize, ToSchema)]
pub struct AssertionResponse {
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    signature: String,
    #[serde(rename = "userHandle")]
    user_handle: Option<String>,
}

/// `AuthenticationResponseJSON`.
#[derive(Deserialize, ToSchema)]
pub struct AssertionCredential {
    id: String,
    #[serde(rename = "rawId")]
    raw_id: Option<String>,
    #[serde(rename = "type")]
    ty: String,
    response: AssertionResponse,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    /// From the 401 answer of `POST /api/v1/auth/login`.
    mfa_ticket: String,
    credential: AssertionCredential,
}

/// A registered passkey.
#[derive(Serialize, ToSchema)]
pub struct Passkey {
    /// base64url.
    credential_id: String,
    name: String,
    /// COSE algorithm: -7 ES256, -8 EdDSA.
    algorithm: i64,
    sign_count: u32,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
    /// Milliseconds since the Unix epoch; 0: never used to sign in.
    last_used_at: i64,
}

impl From<CredentialInfo> for Passkey {
    fn from(c: CredentialInfo) -> Self {
        Passkey {
            credential_id: URL_SAFE_NO_PAD.encode(&c.credential_id),
            name: c.name,
            algorithm: c.algorithm,
            sign_count: c.sign_count,
            created_at: c.created_at,
            last_used_at: c.last_used_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PasskeyId {
    /// base64url, as listed.
    credential_id: String,
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
        resource: "/api/v1/auth/webauthn".into(),
        detail: detail.to_owned(),
        source: source.to_owned(),
    });
}

/// The relying party from `[http]` and the passkey store on the index database.
fn passkeys(st: &AppState) -> Result<Passkeys, ApiError> {
    let rp = RelyingParty::from_config(
        st.http.webauthn_rp_id.as_deref(),
        st.http.webauthn_origin.as_deref(),
        st.http.public_url.as_deref(),
    )
    .map_err(|e| ApiError::internal("WebAuthn", e))?;
    Ok(Passkeys::new(
        st.archive.index().pool().clone(),
        st.users.clone(),
        rp,
    ))
}

fn person(p: &Principal) -> Result<&str, ApiError> {
    if p.actor.starts_with("user:") {
        Ok(&p.user)
    } else {
        Err(ApiError::forbidden(
            "a passkey belongs to a person: sign in with a password first",
        ))
    }
}

fn b64(what: &str, s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|_| format!("{what} is not base64url"))
}

/// `rawId` (or `id`), which must agree, of a `public-key` credential.
fn credential_id(ty: &str, id: &str, raw_id: Option<&str>) -> Result<Vec<u8>, String> {
    if ty != PUBLIC_KEY {
        return Err(format!("credential type must be {PUBLIC_KEY:?}"));
    }
    if raw_id.is_some_and(|r| r != id) {
        return Err("credential id and rawId differ".into());
    }
    b64("credential id", raw_id.unwrap_or(id))
}

fn registration(c: &RegistrationCredential) -> Result<Registration, String> {
    Ok(Registration {
        credential_id: credential_id(&c.ty, &c.id, c.raw_id.as_deref())?,
        client_data_json: b64("clientDataJSON", &c.response.client_data_json)?,
        attestation_object: b64("attestationObject", &c.response.attestation_object)?,
    })
}

fn assertion(c: &AssertionCredential) -> Result<Assertion, String> {
    Ok(Assertion {
        credential_id: credential_id(&c.ty, &c.id, c.raw_id.as_deref())?,
        client_data_json: b64("clientDataJSON", &c.response.client_data_json)?,
        authenticator_data: b64("authenticatorData", &c.response.authenticator_data)?,
        signature: b64("signature", &c.response.signature)?,
        user_handle: c
            .response
            .user_handle
            .as_deref()
            .map(|h| b64("userHandle", h))
            .transpose()?,
    })
}

/// A refused registration the caller caused explains itself (it is their own ceremony);
/// anything else is ours.
fn registration_problem(e: WebauthnError) -> ApiError {
    match e {
        WebauthnError::AlreadyRegistered | WebauthnError::TooMany => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
        }
        e if e.is_client_error() => ApiError::bad_request(format!("passkey refused: {e}")),
        e => ApiError::internal("passkey registration", e),
    }
}

fn descriptors(ids: &[Vec<u8>]) -> Vec<CredentialDescriptor> {
    ids.iter()
        .map(|id| CredentialDescriptor {
            ty: PUBLIC_KEY.into(),
            id: URL_SAFE_NO_PAD.encode(id),
        })
        .collect()
}

/// Start registering a passkey for the signed-in person.
#[utoipa::path(post, path = "/api/v1/auth/webauthn/register/start", tag = "auth",
    responses((status = 200, body = CreationOptions), (status = 403, body = Problem),
        (status = 409, body = Problem)))]
pub async fn register_start(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<CreationOptions>, ApiError> {
    let user = person(&p)?;
    let o = passkeys(&st)?
        .start_registration(&p.tenant, user)
        .await
        .map_err(registration_problem)?;
    Ok(Json(CreationOptions {
        rp: RpEntity {
            id: o.rp_id,
            name: "RADRIS".into(),
        },
        user: UserEntity {
            id: URL_SAFE_NO_PAD.encode(&o.user_handle),
            name: o.user_name.clone(),
            display_name: o.user_name,
        },
        challenge: URL_SAFE_NO_PAD.encode(&o.challenge),
        pub_key_cred_params: ALGORITHMS
            .iter()
            .map(|&alg| CredentialParameters {
                ty: PUBLIC_KEY.into(),
                alg,
            })
            .collect(),
        timeout: o.timeout.as_millis() as u64,
        exclude_credentials: descriptors(&o.exclude),
        authenticator_selection: AuthenticatorSelection {
            resident_key: "discouraged".into(),
            require_resident_key: false,
            user_verification: "preferred".into(),
        },
        attestation: "none".into(),
    }))
}

/// Verify and store the new passkey; from now on a password alone does not sign in.
#[utoipa::path(post, path = "/api/v1/auth/webauthn/register/finish", tag = "auth",
    request_body = RegisterFinish,
    responses((status = 201, body = Passkey), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn register_finish(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<RegisterFinish>,
) -> Result<(StatusCode, Json<Passkey>), ApiError> {
    let user = person(&p)?;
    let (tenant, source) = (p.tenant.as_str(), peer.to_string());
    let denied = |detail: &str| {
        let action = "auth.webauthn.register";
        audit(&st, tenant, user, action, Outcome::Denied, detail, &source);
    };
    let reg = registration(&req.credential).map_err(|m| {
        denied(&m);
        ApiError::bad_request(m)
    })?;
    let name = req.name.as_deref().unwrap_or("passkey");
    match passkeys(&st)?
        .finish_registration(&p.tenant, user, name, &reg)
        .await
    {
        Ok(c) => {
            let c = Passkey::from(c);
            let detail = format!("passkey {:?} added ({})", c.name, c.credential_id);
            let action = "auth.webauthn.register";
            audit(
                &st,
                tenant,
                user,
                action,
                Outcome::Success,
                &detail,
                &source,
            );
            Ok((StatusCode::CREATED, Json(c)))
        }
        Err(e) => {
            if e.is_client_error() {
                denied(&e.to_string());
            }
            Err(registration_problem(e))
        }
    }
}

/// The signed-in person's passkeys (an API token, which is no person, has none).
#[utoipa::path(get, path = "/api/v1/auth/webauthn/credentials", tag = "auth",
    responses((status = 200, body = Vec<Passkey>)))]
pub async fn list_passkeys(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<Passkey>>, ApiError> {
    let Ok(user) = person(&p) else {
        return Ok(Json(Vec::new()));
    };
    let list = passkeys(&st)?
        .list(&p.tenant, user)
        .await
        .map_err(|e| ApiError::internal("listing passkeys", e))?;
    Ok(Json(list.into_iter().map(Passkey::from).collect()))
}

/// Remove one of the signed-in person's passkeys.
#[utoipa::path(delete, path = "/api/v1/auth/webauthn/credentials", tag = "auth",
    params(PasskeyId),
    responses((status = 204), (status = 404, body = Problem), (status = 403, body = Problem)))]
pub async fn delete_passkey(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<PasskeyId>,
) -> Result<StatusCode, ApiError> {
    let user = person(&p)?;
    let id = b64("credential_id", &q.credential_id).map_err(ApiError::bad_request)?;
    let gone = passkeys(&st)?
        .delete(&p.tenant, user, &id)
        .await
        .map_err(|e| ApiError::internal("removing a passkey", e))?;
    if !gone {
        return Err(ApiError::not_found("no such passkey"));
    }
    let detail = format!("passkey removed ({})", URL_SAFE_NO_PAD.encode(&id));
    let (tenant, source) = (p.tenant.as_str(), peer.to_string());
    let action = "auth.webauthn.delete";
    audit(
        &st,
        tenant,
        user,
        action,
        Outcome::Success,
        &detail,
        &source,
    );
    Ok(StatusCode::NO_CONTENT)
}

/// For the password sign-in: when the account has passkeys, the 401 answer that asks for
/// one (a fresh single-use challenge and `mfa_ticket`); None when it has none.
pub async fn passkey_challenge(
    st: &AppState,
    tenant: &TenantId,
    user: &str,
) -> Result<Option<Response>, ApiError> {
    let Some(o) = passkeys(st)?
        .start_login(tenant, user)
        .await
        .map_err(|e| ApiError::internal("starting a passkey sign-in", e))?
    else {
        return Ok(None);
    };
    let status = StatusCode::UNAUTHORIZED;
    let body = SecondFactorChallenge {
        ty: "about:blank".into(),
        title: super::problem::title(status).into(),
        status: status.as_u16(),
        detail: "a second factor is required: sign the \"webauthn\" challenge with your passkey \
                 and send it with \"mfa_ticket\" to POST /api/v1/auth/webauthn/login/finish \
                 (or, with TOTP enrolled, send its code as \"code\")"
            .into(),
        mfa_ticket: o.ticket,
        webauthn: RequestOptions {
            challenge: URL_SAFE_NO_PAD.encode(&o.challenge),
            timeout: o.timeout.as_millis() as u64,
            rp_id: o.rp_id,
            allow_credentials: descriptors(&o.allow),
            user_verification: "preferred".into(),
        },
    };
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Ok(Some(resp))
}

/// Finish a password sign-in with a passkey; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/webauthn/login/finish", tag = "auth",
    request_body = LoginFinish,
    responses((status = 200, body = super::session::SignedIn), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn login_finish(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginFinish>,
) -> Result<Response, ApiError> {
    let source = peer.to_string();
    let action = "auth.webauthn.login";
    if !st.login_limiter.allow(peer.ip()) {
        let detail = "too many sign-in attempts from this address";
        audit(
            &st,
            "-",
            "unknown",
            action,
            Outcome::Denied,
            detail,
            &source,
        );
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many sign-in attempts; try again within {} s",
                super::session::LOGIN_WINDOW.as_secs()
            ),
        );
        e.header = Some((header::RETRY_AFTER, HeaderValue::from_static("60")));
        return Err(e);
    }
    let a = assertion(&req.credential).map_err(|m| {
        let detail = format!("malformed passkey assertion: {m}");
        audit(
            &st,
            "-",
            "unknown",
            action,
            Outcome::Denied,
            &detail,
            &source,
        );
        ApiError::bad_request(m)
    })?;
    match passkeys(&st)?.finish_login(&req.mfa_ticket, &a).await {
        Ok(PasskeyLogin::SignedIn(p)) => super::session::signed_in(&st, &p, action, &source).await,
        Ok(PasskeyLogin::Refused { tenant, user, why }) => {
            let tenant = tenant.as_ref().map_or("-", TenantId::as_str);
            let user = user.as_deref().unwrap_or("unknown");
            let detail = format!("passkey refused: {why}");
            audit(&st, tenant, user, action, Outcome::Denied, &detail, &source);
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "passkey sign-in failed: the assertion was refused, or the ticket is unknown, \
                 expired or already used; sign in with your password again",
            ))
        }
        Err(e) => Err(ApiError::internal("passkey sign-in", e)),
    }
}
